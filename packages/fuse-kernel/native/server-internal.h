/*
 * What the server's files share (not the addon's interface, which is server.h): the structures of
 * the node table, the handles and the upcalls pending, and the calls one file makes into another.
 *
 * - server.c: the server's life, calls to the host, replies to the kernel, pending upcalls and
 *   handles, and the deadlines of what the host was asked.
 * - nodes.c: the inode table the host feeds, the store's files behind it and the open counts
 *   that decide passthrough and the models' holds.
 * - requests.c: the kernel's requests, and the host's answers to those passed up.
 *
 * Locking: `table` (rwlock) guards nodes, names, identities and presence bits; `open_mu` guards
 * open counts, nodes' backing files and ids; `slots_mu` guards pending upcalls and handles. The
 * order is table, then open_mu; slots_mu is never held with either taken after it.
 */
#ifndef SWARM_FUSE_SERVER_INTERNAL_H
#define SWARM_FUSE_SERVER_INTERNAL_H

#include "server.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 4096
#define MAX_NAME 255
#define MAX_PATH_LEN 4096
#define DT_DIR_ 4
#define DT_REG_ 8
#define DT_LNK_ 10
#define DT_UNKNOWN_ 0
#define UNKNOWN_INO 0xffffffffull
#define OUR_MINOR 40 /* the lowest minor the passthrough replies assume */

/* An open backing file, shared by a node and the handles reading it; freed with its last reference. */
typedef struct backing {
  int fd;
  atomic_int refs;
} backing;

typedef struct node {
  uint64_t ino, parent;
  int kind;
  uint32_t mode;
  uint64_t size;
  uint32_t uid, gid;
  int64_t mtime;
  double entry_timeout, attr_timeout;
  int dynamic;
  int complete;
  char *name;
  char *target;
  char *backing_path;
  sw_identity identity;
  uint64_t *chunk_ends;
  uint8_t *present;
  uint32_t nchunks;
  /* children of a directory, in the order added */
  uint64_t *children;
  size_t nchildren, children_cap;
  uint64_t hnext; /* next inode in the same name bucket */
  /* under open_mu */
  backing *backing; /* the file `identity` names, once opened and checked */
  int backing_id;
  uint32_t pass_opens, normal_opens;
  /* a model directory: its files' opens served here (passthrough, local), and whether the host holds it */
  uint32_t model_opens;
  int held;
  uint64_t idle_since; /* sw_now_ns when model_opens last went to 0 */
} node;

enum handle_mode { H_FREE = 0, H_PASS, H_LOCAL, H_HOST, H_DIR };

typedef struct dir_entry {
  uint64_t ino;
  uint32_t type;
  char *name;
} dir_entry;

typedef struct handle {
  int mode;
  uint64_t ino;
  uint64_t host_handle;
  /* H_LOCAL: the backing file as it was when opened complete; it stays right whatever the store does */
  backing *b;
  dir_entry *entries;
  size_t nentries;
} handle;

/* A pipe a READ's reply is assembled in and sent from (splice.c); -1: none yet. */
typedef struct sw_pipe {
  int r, w;
  /* 0: not tried; SIZE_MAX: could not be made large enough for a reply (pread + writev instead) */
  size_t capacity;
} sw_pipe;

typedef struct pending {
  int used;
  int fd;
  uint32_t opcode;
  uint64_t unique;
  uint64_t ino;
  /* READ: the range, checked against the file's size when it was passed up */
  uint64_t offset;
  uint32_t size;
  uint64_t deadline; /* sw_now_ns; 0: none */
} pending;

struct sw_server {
  sw_options options;
  sw_host host;
  pthread_rwlock_t table;
  node **nodes; /* by inode; 0 is unused */
  size_t nnodes, nodes_cap;
  uint64_t *buckets;
  size_t nbuckets;
  pthread_mutex_t open_mu;
  /* under open_mu: models held by the host (only with a grace; without one a hold ends with its last open) */
  uint64_t *held;
  size_t nheld, held_cap;
  int passthrough; /* negotiated and not refused */
  int passthrough_logged;
  pthread_mutex_t slots_mu;
  pending pending[MAX_PENDING];
  uint32_t next_slot;
  handle *handles;
  size_t nhandles, handles_cap;
  size_t free_hint;
  sw_statfs statfs;
  /* for sw_reply_local, which only the host's one thread calls */
  pthread_mutex_t local_mu;
  uint8_t *local_buf;
  sw_pipe local_pipe;
  /* options.splice_reads, until the kernel or the store's file system refuses a splice */
  atomic_int splice_reads;
  atomic_int initialised;
  uint32_t max_read;
  struct {
    atomic_ullong requests, reads, reads_host, bytes_local, lookups_host, opens_passthrough, opens_local, opens_host, malformed;
    atomic_ullong timeouts, stale_backing, evictions, reads_spliced;
  } stats;
};

#pragma GCC visibility push(hidden)

/* server.c */
void host_log(sw_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void host_notice(sw_server *s, int kind, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size);
int send_reply(int fd, uint64_t unique, int error, const void *a, size_t alen, const void *b, size_t blen);
void reply_error(int fd, uint64_t unique, int error);
int slot_release(sw_server *s, uint32_t token, uint64_t unique, pending *out);
int upcall(sw_server *s, int kind, int fd, const struct fuse_in_header *in, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size, uint32_t flags, const char *text);
uint64_t handle_new(sw_server *s, int mode, uint64_t ino, uint64_t host_handle, backing *b, dir_entry *entries, size_t nentries);
int handle_get(sw_server *s, uint64_t fh, unsigned modes, handle *out);
int handle_take(sw_server *s, uint64_t fh, unsigned modes, handle *out);
void free_entries(dir_entry *entries, size_t count);

/* splice.c: a READ's reply from the store's file */
enum { FILE_REPLY_READ = 0, FILE_REPLY_SPLICED = 1 };
/*
 * Makes the reply's `want` bytes at `offset` of `file` ready to send: spliced into `p` with the
 * header for `unique` (FILE_REPLY_SPLICED), or read into `buf` (FILE_REPLY_READ); -EIO when the
 * file could not be read (a short read), nothing held.
 */
int file_reply_ready(sw_server *s, sw_pipe *p, uint8_t *buf, uint64_t unique, int file, uint64_t offset, size_t want);
/*
 * Sends a reply file_reply_ready made ready (`ready`: what it returned) and counts it: 0, -ENOENT
 * when the request was interrupted and is gone, -EIO when a spliced reply the kernel refused could
 * not be read again for a copy (the request is then answered EIO).
 */
int file_reply_send(sw_server *s, sw_pipe *p, uint8_t *buf, int ready, int fd, uint64_t unique, int file, uint64_t offset, size_t want);
/* Lets go of a reply made ready and not sent (its request was taken by another answer). */
void file_reply_drop(sw_pipe *p, int ready);
void splice_close(sw_pipe *p);

/* nodes.c */
node *node_at(sw_server *s, uint64_t ino);
node *find_child(sw_server *s, uint64_t parent, const char *name);
node *new_node(sw_server *s);
void free_node(node *n);
int rehash(sw_server *s, size_t nbuckets);
backing *backing_ref(backing *b);
void backing_unref(backing *b);
int backing_get(sw_server *s, node *n, backing **out);
int range_present(const node *n, uint64_t offset, uint64_t end);
void fill_attr(const node *n, struct fuse_attr *a);
void fill_entry(const node *n, struct fuse_entry_out *e);
void split_timeout(double seconds, uint64_t *whole, uint32_t *nsec);
node *model_of(sw_server *s, node *n);
int model_open(sw_server *s, node *m);
void end_open(sw_server *s, int fd, uint64_t ino, int mode);

#pragma GCC visibility pop

#endif
