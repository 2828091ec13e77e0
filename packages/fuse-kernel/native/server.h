/*
 * The FUSE request server, without Node: an inode table fed by the host, request parsing and
 * replies (server.c, nodes.c, requests.c). The N-API glue (addon.c) owns threads, the mount and
 * the calls into JavaScript; the test harness (test/harness.c) drives the server alone under
 * AddressSanitizer.
 */
#ifndef SWARM_FUSE_SERVER_H
#define SWARM_FUSE_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sw_server sw_server;

enum sw_kind { SW_DIR = 1, SW_FILE = 2, SW_LINK = 3 };

enum sw_upcall_kind {
  /* requests the host must answer through sw_reply_* with the upcall's token and unique */
  SW_UP_LOOKUP = 1,  /* ino = parent, text = name */
  SW_UP_OPENDIR = 2, /* ino */
  SW_UP_OPEN = 3,    /* ino, flags */
  SW_UP_READ = 4,    /* ino, handle, offset, size */
  /* notices that need no answer */
  SW_EV_READ = 5,    /* bytes of a host-opened file served here: ino, handle, offset, size */
  SW_EV_RELEASE = 6, /* handle */
  SW_EV_LOG = 7,     /* level, text */
  /*
   * a model's first open served here (passthrough or local; not passed up): the file's ino; and,
   * once none has been open for hold_grace, its end: the model directory's ino
   */
  SW_EV_OPENED = 8,
  SW_EV_CLOSED = 9
};

enum sw_log_level { SW_LOG_DEBUG = 0, SW_LOG_INFO = 1, SW_LOG_WARN = 2 };

#define SW_TEXT_MAX 512

typedef struct sw_upcall {
  int kind;
  uint32_t token;
  uint64_t unique;
  uint64_t ino;
  uint64_t handle;
  uint64_t offset;
  uint32_t size;
  uint32_t flags;
  int level;
  char text[SW_TEXT_MAX];
} sw_upcall;

typedef struct sw_host {
  /* must not block; takes ownership of `u` (free() it) */
  void (*upcall)(void *ctx, sw_upcall *u);
  void *ctx;
} sw_host;

typedef struct sw_options {
  /* largest READ answered, bytes (the kernel is told max_pages from it) */
  uint32_t max_read;
  /* try kernel passthrough for complete files */
  int passthrough;
  /*
   * answer READs served from the store's file by splicing its pages through a pipe to the kernel
   * (one copy, into the reader's pages) rather than pread + writev (two, through this process)
   */
  int splice_reads;
  /* 1, or 2 when the store sits on a stacking file system (overlayfs) */
  uint32_t max_stack_depth;
  double root_timeout;
  /* seconds a request passed to the host may wait for its answer before it is answered EIO (0: for ever) */
  double request_timeout;
  /*
   * seconds a model stays held (SW_EV_CLOSED not sent) after its last open served here ends;
   * the holds are let go by sw_expire, so 0 (let go at once) unless the host calls it
   */
  double hold_grace;
} sw_options;

/*
 * Which file a backing path must name: the store replaces a content file (a model evicted and
 * added back) at the same path, so a path alone could lead to a new, sparse file.
 */
typedef struct sw_identity {
  uint64_t dev; /* as st_dev (makedev) */
  uint64_t ino; /* 0: unknown, nothing is read from the backing file */
  /* birth time in ns since the epoch, 0 where the file system records none: inode numbers are reused */
  uint64_t birth_ns;
} sw_identity;

typedef struct sw_node_init {
  int kind;
  uint32_t mode; /* permission bits; the type comes from kind */
  uint64_t size;
  uint32_t uid, gid;
  int64_t mtime;
  double entry_timeout, attr_timeout;
  /* directories: lookups and listings ask the host each time */
  int dynamic;
  const char *target;       /* links */
  const char *backing_path; /* files: the store's content file */
  sw_identity identity;     /* files: the backing file as the host saw it */
  int complete;             /* files: every byte is in the backing file */
  const uint64_t *chunk_ends; /* files not complete: end offset of each chunk, ascending */
  uint32_t nchunks;
} sw_node_init;

typedef struct sw_statfs {
  uint64_t blocks, files;
  uint32_t bsize;
} sw_statfs;

typedef struct sw_stats {
  uint64_t requests, reads, reads_host, bytes_local, lookups_host;
  uint64_t opens_passthrough, opens_local, opens_host;
  uint64_t malformed;
  uint64_t timeouts;      /* requests passed to the host and answered EIO at their deadline */
  uint64_t stale_backing; /* backing files that were not the file the host named; served through the host */
  uint64_t evictions;     /* files whose content the host said was gone */
  uint64_t reads_spliced; /* READs answered by splicing the store's file to the kernel */
  int passthrough; /* still enabled */
  int splice_reads; /* still enabled */
} sw_stats;

#define SW_ROOT_INO 1

sw_server *sw_server_new(const sw_options *options, const sw_host *host);
void sw_server_free(sw_server *s);

/* Adds or updates the child `name` of `parent`; a changed kind makes a new inode. 0 or -errno. */
int sw_set_node(sw_server *s, uint64_t parent, const char *name, const sw_node_init *init, uint64_t *ino);
/* Updates a node in place (e.g. the root). */
int sw_update_node(sw_server *s, uint64_t ino, const sw_node_init *init);
int sw_set_complete(sw_server *s, uint64_t ino);
/*
 * Sets where a file's bytes are (backing_path, identity, complete, chunk_ends of `init`). A
 * different file than before starts with nothing present.
 */
int sw_set_content(sw_server *s, uint64_t ino, const sw_node_init *init);
/*
 * The content of every file under `ino` (a file, or a directory and all below it) is gone from
 * the store: nothing is read from those backing files any more, and opens and reads go to the
 * host. Open handles keep the files they opened. The inodes are written to `inos` (up to `max`)
 * for invalidating the kernel's caches; returns how many files there were.
 */
size_t sw_evict(sw_server *s, uint64_t ino, uint64_t *inos, size_t max);
/* Tells the kernel to drop its cache of an inode's pages and attributes (from a thread that serves no request). */
int sw_notify_inval_inode(int fd, uint64_t ino);
/* Tells the kernel to forget the entry `name` in directory `parent`. */
int sw_notify_inval_entry(int fd, uint64_t parent, const char *name);
/*
 * Answers EIO to every request passed to the host whose deadline is before `now_ns` (sw_now_ns);
 * returns how many. Also lets go of models idle for `hold_grace`.
 */
size_t sw_expire(sw_server *s, uint64_t now_ns);
/* CLOCK_MONOTONIC in ns, the clock of deadlines */
uint64_t sw_now_ns(void);
/* Marks the chunks overlapping [offset, offset + length) as present in the backing file. */
int sw_mark_present(sw_server *s, uint64_t ino, uint64_t offset, uint64_t length);
void sw_set_statfs(sw_server *s, const sw_statfs *st);
void sw_get_stats(sw_server *s, sw_stats *out);

/* Answers one request read from `fd` (replies go back to the same fd). */
void sw_handle(sw_server *s, int fd, const uint8_t *request, size_t length, uint8_t *scratch, size_t scratch_length);
/* The scratch a worker needs for sw_handle. */
size_t sw_scratch_size(const sw_server *s);
/* A thread that called sw_handle lets go of what it kept for spliced replies; call as it ends. */
void sw_thread_end(void);
/* Whether INIT has been answered and DESTROY not yet received. */
int sw_initialised(sw_server *s);

/* Answers to upcalls. Each returns 0, or -errno when the token is unknown or the arguments bad. */
int sw_reply_error(sw_server *s, uint32_t token, uint64_t unique, int error);
int sw_reply_entry(sw_server *s, uint32_t token, uint64_t unique, uint64_t ino);
int sw_reply_open(sw_server *s, uint32_t token, uint64_t unique, uint64_t handle);
int sw_reply_data(sw_server *s, uint32_t token, uint64_t unique, const void *data, size_t length);
int sw_reply_dir(sw_server *s, uint32_t token, uint64_t unique, const char *const *names, size_t count);
/*
 * Answers a passed-up READ from the backing file here, now that the host has marked its chunks
 * present; -EAGAIN when they are not all present after all (the host then answers itself).
 */
int sw_reply_local(sw_server *s, uint32_t token, uint64_t unique);

#endif
