/*
 * A read-only FUSE server for the model view, speaking the kernel protocol on /dev/fuse.
 *
 * Why not libfuse: Debian's libfuse 3 predates passthrough, and libfuse 2 (fuse-native) caps
 * requests at 128 KiB and sends each to Node's main thread. Here:
 *
 * - The inode table lives in C and is fed by the host (JavaScript): a model's directories, files,
 *   sizes, modes and backing paths are added once when the model is first looked up, so LOOKUP,
 *   GETATTR, OPENDIR/READDIR of model directories never wait on the host. Directories marked
 *   dynamic (the root, `by-cid`, name directories) ask the host, as names move and resolve at the
 *   origin.
 * - OPEN of a file complete in the store registers the store's file with the kernel
 *   (FUSE_DEV_IOC_BACKING_OPEN) and replies FOPEN_PASSTHROUGH: the kernel then reads the backing
 *   file itself and no READ reaches us. All opens of one inode must use one mode, so an inode
 *   with a normal open keeps opening normally until that open is released; an inode with a
 *   passthrough open keeps its backing id (the kernel looks it up after our reply) until its last
 *   release. When the kernel refuses (EPERM without CAP_SYS_ADMIN, an older kernel) passthrough is
 *   turned off for the mount, said once in the log, and files are read here instead.
 * - READ of a complete file, or of ranges whose chunks the host marked present, is one pread of
 *   the backing file on the worker thread. Only ranges with missing chunks go to the host, which
 *   fetches them (peers first, then the origin) and answers with the bytes.
 * - Every length and offset from the kernel is checked before use; a request that does not parse
 *   gets EINVAL (or nothing, for requests without replies) and is counted.
 * - A backing path alone names no file for long: a content path is a hash of the chunk list, so a
 *   model evicted and added back gets a new, sparse file at the same path. The host says which
 *   file it saw (device, inode, birth time: inode numbers are reused); the server opens the path
 *   and checks it found that file before it reads a byte or hands it to the kernel, and serves
 *   through the host otherwise. What it opened is reference-counted: a handle opened on a
 *   complete file keeps that file (its bytes stay right after an unlink) for its whole life. On
 *   eviction (sw_evict) the host's word about those files is dropped, and the kernel is told to
 *   drop its pages and attributes of them (from a thread that answers no request: dropping a page
 *   waits on reads of it in flight).
 * - Every request passed to the host has a deadline (sw_expire, from a thread of the addon): a
 *   host that does not answer (its thread stuck or busy) costs the reader EIO, not an
 *   uninterruptible sleep, and the late answer is refused.
 * - Opens served here (passthrough, local) hold their model from eviction through the host, which
 *   hears only when a model (the top non-dynamic directory above the file) goes from no open
 *   file to one (SW_EV_OPENED, with the file's inode) and when it has had none for
 *   `hold_grace` seconds (SW_EV_CLOSED, with the model's inode; sw_expire's timer sends it). A
 *   walk that opens and closes a checkpoint's thousands of files one after another then costs
 *   the host two notices, not two per file; the guarantee is unchanged, as the hold is taken
 *   before the first open is answered and let go only after the last open has ended.
 *
 * Locking: `table` (rwlock) guards nodes, names, identities and presence bits; `open_mu` guards
 * open counts, nodes' backing files and ids; `slots_mu` guards pending upcalls and handles. The
 * order is table, then open_mu; slots_mu is never held with either taken after it.
 */
#define _GNU_SOURCE
#include "server.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
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
  atomic_int initialised;
  uint32_t max_read;
  struct {
    atomic_ullong requests, reads, reads_host, bytes_local, lookups_host, opens_passthrough, opens_local, opens_host, malformed;
    atomic_ullong timeouts, stale_backing, evictions;
  } stats;
};

/* ---- host calls ------------------------------------------------------------------------- */

static void host_log(sw_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void host_log(sw_server *s, int level, const char *fmt, ...) {
  if (s->host.upcall == NULL) return;
  sw_upcall *u = calloc(1, sizeof *u);
  if (u == NULL) return;
  u->kind = SW_EV_LOG;
  u->level = level;
  va_list args;
  va_start(args, fmt);
  vsnprintf(u->text, sizeof u->text, fmt, args);
  va_end(args);
  s->host.upcall(s->host.ctx, u);
}

static void host_notice(sw_server *s, int kind, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size) {
  if (s->host.upcall == NULL) return;
  sw_upcall *u = calloc(1, sizeof *u);
  if (u == NULL) return;
  u->kind = kind;
  u->ino = ino;
  u->handle = host_handle;
  u->offset = offset;
  u->size = size;
  s->host.upcall(s->host.ctx, u);
}

/* ---- replies ---------------------------------------------------------------------------- */

/* 0, or -errno when the kernel did not take the reply (ENOENT: the request was interrupted and is gone) */
static int send_reply(int fd, uint64_t unique, int error, const void *a, size_t alen, const void *b, size_t blen) {
  struct fuse_out_header out = { .len = (uint32_t)(sizeof out + alen + blen), .error = error ? -error : 0, .unique = unique };
  struct iovec iov[3] = { { &out, sizeof out }, { (void *)a, alen }, { (void *)b, blen } };
  int count = 1 + (alen > 0) + (blen > 0);
  if (alen == 0 && blen > 0) { iov[1] = iov[2]; }
  ssize_t written;
  do {
    written = writev(fd, iov, count);
  } while (written < 0 && errno == EINTR);
  return written < 0 ? -errno : 0;
}

static void reply_error(int fd, uint64_t unique, int error) {
  send_reply(fd, unique, error, NULL, 0, NULL, 0);
}

/* ---- nodes ------------------------------------------------------------------------------ */

static uint64_t name_hash(uint64_t parent, const char *name) {
  uint64_t h = 1469598103934665603ull ^ (parent * 0x9e3779b97f4a7c15ull);
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  return h;
}

static node *node_at(sw_server *s, uint64_t ino) {
  if (ino == 0 || ino >= s->nnodes) return NULL;
  return s->nodes[ino];
}

static node *find_child(sw_server *s, uint64_t parent, const char *name) {
  if (s->nbuckets == 0) return NULL;
  uint64_t ino = s->buckets[name_hash(parent, name) & (s->nbuckets - 1)];
  while (ino != 0) {
    node *n = s->nodes[ino];
    if (n->parent == parent && strcmp(n->name, name) == 0) return n;
    ino = n->hnext;
  }
  return NULL;
}

static int rehash(sw_server *s, size_t nbuckets) {
  uint64_t *buckets = calloc(nbuckets, sizeof *buckets);
  if (buckets == NULL) return -ENOMEM;
  for (size_t i = 1; i < s->nnodes; i++) {
    node *n = s->nodes[i];
    if (n == NULL || n->name == NULL) continue;
    size_t b = name_hash(n->parent, n->name) & (nbuckets - 1);
    n->hnext = buckets[b];
    buckets[b] = n->ino;
  }
  free(s->buckets);
  s->buckets = buckets;
  s->nbuckets = nbuckets;
  return 0;
}

static void unhash(sw_server *s, node *n) {
  if (n->name == NULL || s->nbuckets == 0) return;
  uint64_t *link = &s->buckets[name_hash(n->parent, n->name) & (s->nbuckets - 1)];
  while (*link != 0) {
    if (*link == n->ino) {
      *link = n->hnext;
      return;
    }
    link = &s->nodes[*link]->hnext;
  }
}

static char *dup_or_null(const char *text) {
  return text == NULL ? NULL : strdup(text);
}

static backing *backing_ref(backing *b) {
  if (b != NULL) atomic_fetch_add(&b->refs, 1);
  return b;
}

static void backing_unref(backing *b) {
  if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1) {
    close(b->fd);
    free(b);
  }
}

static int same_identity(const sw_identity *a, const sw_identity *b) {
  return a->dev == b->dev && a->ino == b->ino && a->birth_ns == b->birth_ns;
}

/* Checks what may go wrong in `init` before anything is changed. */
static int check_init(const sw_node_init *init) {
  if (init->kind != SW_DIR && init->kind != SW_FILE && init->kind != SW_LINK) return -EINVAL;
  if (init->kind == SW_LINK && (init->target == NULL || strlen(init->target) >= MAX_PATH_LEN)) return -EINVAL;
  if (init->backing_path != NULL && strlen(init->backing_path) >= MAX_PATH_LEN) return -EINVAL;
  if (init->nchunks > 0) {
    if (init->chunk_ends == NULL) return -EINVAL;
    for (uint32_t i = 0; i < init->nchunks; i++) {
      if (init->chunk_ends[i] > init->size || (i > 0 && init->chunk_ends[i] <= init->chunk_ends[i - 1])) return -EINVAL;
    }
  }
  return 0;
}

/*
 * Applies the content part of `init` (backing path, identity, complete, chunks) to the file `n`,
 * under the table's write lock; on failure `n` is unchanged. A backing file other than the one
 * before (another path or identity: the store replaced it) starts with nothing present, and the
 * descriptor of the old one is let go (handles that opened it keep their own reference).
 */
static int apply_content(sw_server *s, node *n, const sw_node_init *init) {
  char *backing_path = dup_or_null(init->backing_path);
  int same_file = init->backing_path != NULL && n->backing_path != NULL && strcmp(n->backing_path, init->backing_path) == 0 &&
                  same_identity(&n->identity, &init->identity);
  int keep_chunks = same_file && n->nchunks == init->nchunks && n->chunk_ends != NULL && init->nchunks > 0 &&
                    memcmp(n->chunk_ends, init->chunk_ends, init->nchunks * sizeof *n->chunk_ends) == 0;
  uint64_t *ends = NULL;
  uint8_t *present = NULL;
  if (init->nchunks > 0 && !keep_chunks) {
    ends = malloc(init->nchunks * sizeof *ends);
    present = calloc(init->nchunks, 1);
    if (ends != NULL) memcpy(ends, init->chunk_ends, init->nchunks * sizeof *ends);
  }
  if ((init->backing_path != NULL && backing_path == NULL) || (init->nchunks > 0 && !keep_chunks && (ends == NULL || present == NULL))) {
    free(backing_path);
    free(ends);
    free(present);
    return -ENOMEM;
  }
  if (same_file) {
    free(backing_path);
    /* the same file only fills: what was complete stays so */
    n->complete = n->complete || init->complete;
  } else {
    free(n->backing_path);
    n->backing_path = backing_path;
    n->identity = init->identity;
    n->complete = init->complete && backing_path != NULL;
    pthread_mutex_lock(&s->open_mu);
    backing_unref(n->backing);
    n->backing = NULL;
    pthread_mutex_unlock(&s->open_mu);
  }
  if (!keep_chunks) {
    free(n->chunk_ends);
    free(n->present);
    n->chunk_ends = ends;
    n->present = present;
    n->nchunks = init->nchunks;
  }
  return 0;
}

/* Applies `init` to `n`; on failure `n` is unchanged. */
static int apply(sw_server *s, node *n, const sw_node_init *init) {
  int rc = check_init(init);
  if (rc != 0) return rc;
  char *target = dup_or_null(init->target);
  if (init->target != NULL && target == NULL) return -ENOMEM;
  if (init->kind == SW_FILE) {
    rc = apply_content(s, n, init);
    if (rc != 0) {
      free(target);
      return rc;
    }
  }
  n->kind = init->kind;
  n->mode = init->mode & 07777;
  n->size = init->size;
  n->uid = init->uid;
  n->gid = init->gid;
  n->mtime = init->mtime;
  n->entry_timeout = init->entry_timeout;
  n->attr_timeout = init->attr_timeout;
  n->dynamic = init->kind == SW_DIR && init->dynamic;
  free(n->target);
  n->target = target;
  return 0;
}

static void free_node(node *n) {
  if (n == NULL) return;
  free(n->name);
  free(n->target);
  free(n->backing_path);
  free(n->chunk_ends);
  free(n->present);
  free(n->children);
  free(n);
}

static node *new_node(sw_server *s) {
  if (s->nnodes == s->nodes_cap) {
    size_t cap = s->nodes_cap * 2;
    node **nodes = realloc(s->nodes, cap * sizeof *nodes);
    if (nodes == NULL) return NULL;
    s->nodes = nodes;
    s->nodes_cap = cap;
  }
  node *n = calloc(1, sizeof *n);
  if (n == NULL) return NULL;
  n->ino = s->nnodes;
  n->backing_id = -1;
  s->nodes[s->nnodes++] = n;
  return n;
}

static int add_child(node *parent, uint64_t ino) {
  if (parent->nchildren == parent->children_cap) {
    size_t cap = parent->children_cap == 0 ? 8 : parent->children_cap * 2;
    uint64_t *children = realloc(parent->children, cap * sizeof *children);
    if (children == NULL) return -ENOMEM;
    parent->children = children;
    parent->children_cap = cap;
  }
  parent->children[parent->nchildren++] = ino;
  return 0;
}

static void remove_child(node *parent, uint64_t ino) {
  for (size_t i = 0; i < parent->nchildren; i++) {
    if (parent->children[i] == ino) {
      memmove(&parent->children[i], &parent->children[i + 1], (parent->nchildren - i - 1) * sizeof *parent->children);
      parent->nchildren--;
      return;
    }
  }
}

int sw_set_node(sw_server *s, uint64_t parent_ino, const char *name, const sw_node_init *init, uint64_t *ino) {
  if (name == NULL || name[0] == '\0' || strlen(name) > MAX_NAME || strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return -EINVAL;
  pthread_rwlock_wrlock(&s->table);
  int rc = 0;
  node *parent = node_at(s, parent_ino);
  if (parent == NULL || parent->kind != SW_DIR) {
    rc = parent == NULL ? -ENOENT : -ENOTDIR;
    goto out;
  }
  node *n = find_child(s, parent_ino, name);
  if (n != NULL && n->kind != init->kind) {
    /* a name that changed kind is a new inode; the old one stays valid for the kernel's handles */
    unhash(s, n);
    remove_child(parent, n->ino);
    free(n->name);
    n->name = NULL;
    n = NULL;
  }
  if (n != NULL) {
    rc = apply(s, n, init);
    if (rc == 0) *ino = n->ino;
    goto out;
  }
  node scratch = { .backing_id = -1 };
  rc = apply(s, &scratch, init);
  if (rc != 0) goto out;
  char *copy = strdup(name);
  n = copy == NULL ? NULL : new_node(s);
  if (n == NULL || add_child(parent, n->ino) != 0) {
    if (n != NULL) s->nodes[--s->nnodes] = NULL;
    free(n);
    free(copy);
    free(scratch.target);
    free(scratch.backing_path);
    free(scratch.chunk_ends);
    free(scratch.present);
    rc = -ENOMEM;
    goto out;
  }
  uint64_t assigned = n->ino;
  *n = scratch;
  n->ino = assigned;
  n->parent = parent_ino;
  n->name = copy;
  /*
   * A rehash links every named node, this one included: linking it again after one would make it
   * its own successor, and a lookup of any other name in its bucket would loop for ever.
   */
  int linked = (s->nnodes * 4) > (s->nbuckets * 3) && rehash(s, s->nbuckets * 2) == 0;
  if (!linked) {
    /* no rehash needed, or none could be had (keep the old table: longer chains, still correct) */
    size_t b = name_hash(parent_ino, copy) & (s->nbuckets - 1);
    n->hnext = s->buckets[b];
    s->buckets[b] = n->ino;
  }
  *ino = n->ino;
out:
  pthread_rwlock_unlock(&s->table);
  return rc;
}

int sw_update_node(sw_server *s, uint64_t ino, const sw_node_init *init) {
  pthread_rwlock_wrlock(&s->table);
  node *n = node_at(s, ino);
  int rc = n == NULL ? -ENOENT : (n->kind != init->kind ? -EINVAL : apply(s, n, init));
  pthread_rwlock_unlock(&s->table);
  return rc;
}

int sw_set_content(sw_server *s, uint64_t ino, const sw_node_init *init) {
  pthread_rwlock_wrlock(&s->table);
  node *n = node_at(s, ino);
  int rc = 0;
  if (n == NULL) rc = -ENOENT;
  else if (n->kind != SW_FILE || init->kind != SW_FILE || init->size != n->size) rc = -EINVAL;
  else rc = check_init(init);
  if (rc == 0) rc = apply_content(s, n, init);
  pthread_rwlock_unlock(&s->table);
  return rc;
}

/* under the table's write lock */
static void evict_tree(sw_server *s, node *n, uint64_t *inos, size_t max, size_t *count, int depth) {
  if (n->kind == SW_FILE) {
    if (n->complete || n->identity.ino != 0) atomic_fetch_add(&s->stats.evictions, 1);
    n->complete = 0;
    if (n->present != NULL) memset(n->present, 0, n->nchunks);
    n->identity = (sw_identity){ 0 };
    pthread_mutex_lock(&s->open_mu);
    backing_unref(n->backing);
    n->backing = NULL;
    pthread_mutex_unlock(&s->open_mu);
    if (*count < max) inos[*count] = n->ino;
    (*count)++;
    return;
  }
  /* a path is at most MAX_PATH_LEN long, so this depth is never reached by a real tree */
  if (n->kind != SW_DIR || depth > MAX_PATH_LEN / 2) return;
  for (size_t i = 0; i < n->nchildren; i++) {
    node *child = node_at(s, n->children[i]);
    if (child != NULL) evict_tree(s, child, inos, max, count, depth + 1);
  }
}

size_t sw_evict(sw_server *s, uint64_t ino, uint64_t *inos, size_t max) {
  size_t count = 0;
  pthread_rwlock_wrlock(&s->table);
  node *n = node_at(s, ino);
  if (n != NULL) evict_tree(s, n, inos, max, &count, 0);
  pthread_rwlock_unlock(&s->table);
  return count;
}

static int send_notify(int fd, int code, const void *a, size_t alen, const void *b, size_t blen) {
  struct fuse_out_header out = { .len = (uint32_t)(sizeof out + alen + blen), .error = code, .unique = 0 };
  struct iovec iov[3] = { { &out, sizeof out }, { (void *)a, alen }, { (void *)b, blen } };
  ssize_t written;
  do {
    written = writev(fd, iov, blen > 0 ? 3 : 2);
  } while (written < 0 && errno == EINTR);
  return written < 0 ? -errno : 0;
}

int sw_notify_inval_inode(int fd, uint64_t ino) {
  /* offset 0, length 0: the attributes and every cached page */
  struct fuse_notify_inval_inode_out out = { .ino = ino, .off = 0, .len = 0 };
  return send_notify(fd, FUSE_NOTIFY_INVAL_INODE, &out, sizeof out, NULL, 0);
}

int sw_notify_inval_entry(int fd, uint64_t parent, const char *name) {
  size_t length = strlen(name);
  if (length == 0 || length > MAX_NAME) return -EINVAL;
  struct fuse_notify_inval_entry_out out = { .parent = parent, .namelen = (uint32_t)length };
  /* the kernel wants the name's terminating NUL too */
  return send_notify(fd, FUSE_NOTIFY_INVAL_ENTRY, &out, sizeof out, name, length + 1);
}

uint64_t sw_now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

int sw_set_complete(sw_server *s, uint64_t ino) {
  pthread_rwlock_wrlock(&s->table);
  node *n = node_at(s, ino);
  int rc = 0;
  if (n == NULL) rc = -ENOENT;
  else if (n->kind != SW_FILE || n->backing_path == NULL) rc = -EINVAL;
  else if (n->identity.ino != 0) n->complete = 1;
  pthread_rwlock_unlock(&s->table);
  return rc;
}

/* index of the chunk holding byte `offset` */
static uint32_t chunk_at(const node *n, uint64_t offset) {
  uint32_t lo = 0, hi = n->nchunks;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (n->chunk_ends[mid] <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

int sw_mark_present(sw_server *s, uint64_t ino, uint64_t offset, uint64_t length) {
  pthread_rwlock_wrlock(&s->table);
  node *n = node_at(s, ino);
  int rc = 0;
  if (n == NULL) rc = -ENOENT;
  else if (n->kind != SW_FILE || n->backing_path == NULL) rc = -EINVAL;
  else if (length > 0 && offset < n->size && n->nchunks > 0) {
    uint64_t end = length > n->size - offset ? n->size : offset + length;
    for (uint32_t i = chunk_at(n, offset); i < n->nchunks; i++) {
      n->present[i] = 1;
      if (n->chunk_ends[i] >= end) break;
    }
  }
  pthread_rwlock_unlock(&s->table);
  return rc;
}

/* under the table lock: every chunk under [offset, end) present */
static int range_present(const node *n, uint64_t offset, uint64_t end) {
  if (n->complete) return 1;
  if (n->nchunks == 0 || n->present == NULL) return 0;
  for (uint32_t i = chunk_at(n, offset); i < n->nchunks; i++) {
    if (!n->present[i]) return 0;
    if (n->chunk_ends[i] >= end) return 1;
  }
  return 1;
}

void sw_set_statfs(sw_server *s, const sw_statfs *st) {
  pthread_rwlock_wrlock(&s->table);
  s->statfs = *st;
  pthread_rwlock_unlock(&s->table);
}

void sw_get_stats(sw_server *s, sw_stats *out) {
  out->requests = s->stats.requests;
  out->reads = s->stats.reads;
  out->reads_host = s->stats.reads_host;
  out->bytes_local = s->stats.bytes_local;
  out->lookups_host = s->stats.lookups_host;
  out->opens_passthrough = s->stats.opens_passthrough;
  out->opens_local = s->stats.opens_local;
  out->opens_host = s->stats.opens_host;
  out->malformed = s->stats.malformed;
  out->timeouts = s->stats.timeouts;
  out->stale_backing = s->stats.stale_backing;
  out->evictions = s->stats.evictions;
  pthread_mutex_lock(&s->open_mu);
  out->passthrough = s->passthrough;
  pthread_mutex_unlock(&s->open_mu);
}

/* ---- server ----------------------------------------------------------------------------- */

sw_server *sw_server_new(const sw_options *options, const sw_host *host) {
  sw_server *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->options = *options;
  if (s->options.max_read < 4096) s->options.max_read = 4096;
  if (s->options.max_read > (1u << 20)) s->options.max_read = 1u << 20;
  if (s->options.max_stack_depth < 1 || s->options.max_stack_depth > 2) s->options.max_stack_depth = 1;
  s->max_read = s->options.max_read;
  s->host = *host;
  pthread_rwlock_init(&s->table, NULL);
  pthread_mutex_init(&s->open_mu, NULL);
  pthread_mutex_init(&s->slots_mu, NULL);
  pthread_mutex_init(&s->local_mu, NULL);
  s->nodes_cap = 64;
  s->nodes = calloc(s->nodes_cap, sizeof *s->nodes);
  s->nnodes = 1;
  s->statfs.bsize = 4096;
  node *root = s->nodes == NULL ? NULL : new_node(s);
  if (root == NULL || rehash(s, 64) != 0) {
    sw_server_free(s);
    return NULL;
  }
  root->kind = SW_DIR;
  root->mode = 0555;
  root->dynamic = 1;
  root->entry_timeout = root->attr_timeout = options->root_timeout;
  return s;
}

void sw_server_free(sw_server *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->nnodes; i++) {
    node *n = s->nodes[i];
    if (n != NULL) backing_unref(n->backing);
    free_node(n);
  }
  for (size_t i = 0; i < s->nhandles; i++) {
    for (size_t j = 0; j < s->handles[i].nentries; j++) free(s->handles[i].entries[j].name);
    free(s->handles[i].entries);
    backing_unref(s->handles[i].b);
  }
  free(s->handles);
  free(s->held);
  free(s->nodes);
  free(s->buckets);
  pthread_rwlock_destroy(&s->table);
  pthread_mutex_destroy(&s->open_mu);
  pthread_mutex_destroy(&s->slots_mu);
  pthread_mutex_destroy(&s->local_mu);
  free(s->local_buf);
  free(s);
}

size_t sw_scratch_size(const sw_server *s) {
  return s->max_read;
}

int sw_initialised(sw_server *s) {
  return atomic_load(&s->initialised);
}

/* ---- pending upcalls and handles -------------------------------------------------------- */

static int slot_take(sw_server *s, int fd, uint32_t opcode, uint64_t unique, uint64_t ino, uint32_t *token) {
  pthread_mutex_lock(&s->slots_mu);
  for (uint32_t tries = 0; tries < MAX_PENDING; tries++) {
    uint32_t i = (s->next_slot + tries) % MAX_PENDING;
    if (!s->pending[i].used) {
      s->pending[i] = (pending){ .used = 1, .fd = fd, .opcode = opcode, .unique = unique, .ino = ino };
      s->next_slot = (i + 1) % MAX_PENDING;
      *token = i;
      pthread_mutex_unlock(&s->slots_mu);
      return 0;
    }
  }
  pthread_mutex_unlock(&s->slots_mu);
  return -EAGAIN;
}

/* Removes and returns a pending upcall, checking it is the one the host means. */
static int slot_release(sw_server *s, uint32_t token, uint64_t unique, pending *out) {
  if (token >= MAX_PENDING) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  pending *p = &s->pending[token];
  if (!p->used || p->unique != unique) {
    pthread_mutex_unlock(&s->slots_mu);
    return -ENOENT;
  }
  *out = *p;
  p->used = 0;
  pthread_mutex_unlock(&s->slots_mu);
  return 0;
}

static int upcall(sw_server *s, int kind, int fd, const struct fuse_in_header *in, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size, uint32_t flags, const char *text) {
  uint32_t token;
  if (slot_take(s, fd, in->opcode, in->unique, ino, &token) != 0) return -EAGAIN;
  double timeout = s->options.request_timeout;
  pthread_mutex_lock(&s->slots_mu);
  s->pending[token].offset = offset;
  s->pending[token].size = size;
  s->pending[token].deadline = timeout > 0 ? sw_now_ns() + (uint64_t)(timeout * 1e9) : 0;
  pthread_mutex_unlock(&s->slots_mu);
  sw_upcall *u = calloc(1, sizeof *u);
  if (u == NULL || s->host.upcall == NULL) {
    pending discard;
    slot_release(s, token, in->unique, &discard);
    free(u);
    return -EIO;
  }
  u->kind = kind;
  u->token = token;
  u->unique = in->unique;
  u->ino = ino;
  u->handle = host_handle;
  u->offset = offset;
  u->size = size;
  u->flags = flags;
  if (text != NULL) snprintf(u->text, sizeof u->text, "%s", text);
  s->host.upcall(s->host.ctx, u);
  return 0;
}

/* a new handle's index + 1 (0: none could be had) */
static uint64_t handle_new(sw_server *s, int mode, uint64_t ino, uint64_t host_handle, backing *b, dir_entry *entries, size_t nentries) {
  pthread_mutex_lock(&s->slots_mu);
  size_t i = s->free_hint;
  while (i < s->nhandles && s->handles[i].mode != H_FREE) i++;
  if (i == s->nhandles) {
    if (s->nhandles == s->handles_cap) {
      size_t cap = s->handles_cap == 0 ? 64 : s->handles_cap * 2;
      handle *handles = realloc(s->handles, cap * sizeof *handles);
      if (handles == NULL) {
        pthread_mutex_unlock(&s->slots_mu);
        return 0;
      }
      s->handles = handles;
      s->handles_cap = cap;
    }
    s->nhandles++;
  }
  s->handles[i] = (handle){ .mode = mode, .ino = ino, .host_handle = host_handle, .b = b, .entries = entries, .nentries = nentries };
  s->free_hint = i + 1;
  pthread_mutex_unlock(&s->slots_mu);
  return (uint64_t)i + 1;
}

/* a copy of the handle `fh` names, if it is one of `modes` (bit mask of 1 << mode); the caller unrefs out->b */
static int handle_get(sw_server *s, uint64_t fh, unsigned modes, handle *out) {
  pthread_mutex_lock(&s->slots_mu);
  int ok = fh >= 1 && fh <= s->nhandles && ((1u << s->handles[fh - 1].mode) & modes) != 0;
  if (ok) {
    *out = s->handles[fh - 1];
    backing_ref(out->b);
  }
  pthread_mutex_unlock(&s->slots_mu);
  return ok;
}

static int handle_take(sw_server *s, uint64_t fh, unsigned modes, handle *out) {
  pthread_mutex_lock(&s->slots_mu);
  int ok = fh >= 1 && fh <= s->nhandles && ((1u << s->handles[fh - 1].mode) & modes) != 0;
  if (ok) {
    *out = s->handles[fh - 1];
    s->handles[fh - 1] = (handle){ .mode = H_FREE };
    if (fh - 1 < s->free_hint) s->free_hint = fh - 1;
  }
  pthread_mutex_unlock(&s->slots_mu);
  return ok;
}

/* ---- attributes ------------------------------------------------------------------------- */

static uint32_t type_bits(int kind) {
  return kind == SW_DIR ? S_IFDIR : kind == SW_LINK ? S_IFLNK : S_IFREG;
}

static void fill_attr(const node *n, struct fuse_attr *a) {
  memset(a, 0, sizeof *a);
  a->ino = n->ino;
  a->size = n->kind == SW_LINK && n->target != NULL ? strlen(n->target) : n->size;
  a->blocks = (a->size + 511) / 512;
  a->atime = a->mtime = a->ctime = (uint64_t)n->mtime;
  a->mode = type_bits(n->kind) | n->mode;
  a->nlink = n->kind == SW_DIR ? 2 : 1;
  a->uid = n->uid;
  a->gid = n->gid;
  a->blksize = 1u << 20;
}

static void split_timeout(double seconds, uint64_t *whole, uint32_t *nsec) {
  if (!(seconds > 0)) seconds = 0;
  if (seconds > 1e9) seconds = 1e9;
  *whole = (uint64_t)seconds;
  *nsec = (uint32_t)((seconds - (double)*whole) * 1e9);
}

static void fill_entry(const node *n, struct fuse_entry_out *e) {
  memset(e, 0, sizeof *e);
  e->nodeid = n->ino;
  e->generation = 1;
  split_timeout(n->entry_timeout, &e->entry_valid, &e->entry_valid_nsec);
  split_timeout(n->attr_timeout, &e->attr_valid, &e->attr_valid_nsec);
  fill_attr(n, &e->attr);
}

/* ---- requests --------------------------------------------------------------------------- */

static void do_init(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  if (blen < 16) {
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct sw_init_in init = { 0 };
  memcpy(&init, body, blen < sizeof init ? blen : sizeof init);
  struct sw_init_out out = { 0 };
  out.major = FUSE_KERNEL_VERSION;
  out.minor = FUSE_KERNEL_MINOR_VERSION > OUR_MINOR ? FUSE_KERNEL_MINOR_VERSION : OUR_MINOR;
  if (init.major != FUSE_KERNEL_VERSION) {
    /* a kernel speaking another major version gets ours and decides */
    send_reply(fd, in->unique, 0, &out, 8, NULL, 0);
    return;
  }
  if (init.minor < out.minor) out.minor = init.minor;
  uint32_t want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT | FUSE_DO_READDIRPLUS;
  out.flags = init.flags & want;
  int passthrough = 0;
  if (s->options.passthrough && (init.flags & FUSE_INIT_EXT) && blen >= 20 && (init.flags2 & SW_FUSE_PASSTHROUGH_FLAGS2)) {
    out.flags2 = SW_FUSE_PASSTHROUGH_FLAGS2;
    out.max_stack_depth = s->options.max_stack_depth;
    passthrough = 1;
  }
  out.max_readahead = init.max_readahead < s->max_read ? init.max_readahead : s->max_read;
  out.max_write = 4096;
  out.time_gran = 1;
  out.max_pages = (uint16_t)(s->max_read / 4096);
  out.max_background = 64;
  out.congestion_threshold = 48;
  pthread_mutex_lock(&s->open_mu);
  s->passthrough = passthrough;
  pthread_mutex_unlock(&s->open_mu);
  if (s->options.passthrough && !passthrough) host_log(s, SW_LOG_WARN, "the kernel does not offer passthrough (it needs Linux 6.9+ and CAP_SYS_ADMIN when mounting): complete files are read through this process");
  /* before 7.23 the reply was 24 bytes */
  send_reply(fd, in->unique, 0, &out, out.minor < 23 ? 24 : sizeof out, NULL, 0);
  atomic_store(&s->initialised, 1);
}

static void do_lookup(sw_server *s, int fd, const struct fuse_in_header *in, const char *name, size_t nlen) {
  if (nlen == 0 || memchr(name, '\0', nlen) == NULL) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  if (strlen(name) > MAX_NAME) {
    reply_error(fd, in->unique, ENAMETOOLONG);
    return;
  }
  pthread_rwlock_rdlock(&s->table);
  node *parent = node_at(s, in->nodeid);
  if (parent == NULL || parent->kind != SW_DIR) {
    int error = parent == NULL ? ENOENT : ENOTDIR;
    pthread_rwlock_unlock(&s->table);
    reply_error(fd, in->unique, error);
    return;
  }
  if (parent->dynamic) {
    pthread_rwlock_unlock(&s->table);
    atomic_fetch_add(&s->stats.lookups_host, 1);
    if (upcall(s, SW_UP_LOOKUP, fd, in, in->nodeid, 0, 0, 0, 0, name) != 0) reply_error(fd, in->unique, EIO);
    return;
  }
  node *n = find_child(s, in->nodeid, name);
  struct fuse_entry_out e;
  if (n != NULL) {
    fill_entry(n, &e);
  } else {
    /* a negative entry the kernel may cache as long as the directory: model directories never change */
    memset(&e, 0, sizeof e);
    split_timeout(parent->entry_timeout, &e.entry_valid, &e.entry_valid_nsec);
  }
  pthread_rwlock_unlock(&s->table);
  send_reply(fd, in->unique, 0, &e, sizeof e, NULL, 0);
}

static void do_getattr(sw_server *s, int fd, const struct fuse_in_header *in) {
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, in->nodeid);
  if (n == NULL) {
    pthread_rwlock_unlock(&s->table);
    reply_error(fd, in->unique, ENOENT);
    return;
  }
  struct fuse_attr_out out;
  memset(&out, 0, sizeof out);
  split_timeout(n->attr_timeout, &out.attr_valid, &out.attr_valid_nsec);
  fill_attr(n, &out.attr);
  pthread_rwlock_unlock(&s->table);
  send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
}

static void do_readlink(sw_server *s, int fd, const struct fuse_in_header *in, uint8_t *scratch, size_t slen) {
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, in->nodeid);
  int error = n == NULL ? ENOENT : (n->kind != SW_LINK || n->target == NULL) ? EINVAL : 0;
  size_t len = 0;
  if (error == 0) {
    len = strlen(n->target);
    if (len > slen) error = ENAMETOOLONG;
    else memcpy(scratch, n->target, len);
  }
  pthread_rwlock_unlock(&s->table);
  if (error) reply_error(fd, in->unique, error);
  else send_reply(fd, in->unique, 0, scratch, len, NULL, 0);
}

/* whether the open file `fd` is the file `id` names */
static int identity_matches(int fd, const sw_identity *id) {
  struct statx st;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &st) != 0) return 0;
  if (makedev(st.stx_dev_major, st.stx_dev_minor) != id->dev || st.stx_ino != id->ino) return 0;
  if (id->birth_ns != 0 && (st.stx_mask & STATX_BTIME)) {
    uint64_t birth = (uint64_t)st.stx_btime.tv_sec * 1000000000ull + st.stx_btime.tv_nsec;
    if (birth != id->birth_ns) return 0;
  }
  return 1;
}

/*
 * Under open_mu: a reference to the node's backing file, opened and checked on first use.
 * -ESTALE when the file at the path is not the one the host named (the store replaced it: a
 * model evicted and added back), or the host named none; the caller then lets the host serve.
 */
static int backing_get(sw_server *s, node *n, backing **out) {
  if (n->backing != NULL) {
    *out = backing_ref(n->backing);
    return 0;
  }
  if (n->backing_path == NULL || n->identity.ino == 0) return -ESTALE;
  int fd = open(n->backing_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    /* gone: evicted, and the host has not said so yet */
    if (error != ENOENT) host_log(s, SW_LOG_WARN, "cannot open the store's file %s: %s", n->backing_path, strerror(error));
    atomic_fetch_add(&s->stats.stale_backing, 1);
    return -ESTALE;
  }
  backing *b = malloc(sizeof *b);
  if (b == NULL || !identity_matches(fd, &n->identity)) {
    if (b != NULL) {
      atomic_fetch_add(&s->stats.stale_backing, 1);
      host_log(s, SW_LOG_DEBUG, "the store's file %s is not the one it was (replaced): served through the host", n->backing_path);
    }
    free(b);
    close(fd);
    return b == NULL ? -ENOMEM : -ESTALE;
  }
  b->fd = fd;
  atomic_init(&b->refs, 2); /* the node's and the caller's */
  n->backing = b;
  *out = b;
  return 0;
}

/* Under the table's lock: the model directory a node is in (itself, when its parent is dynamic). */
static node *model_of(sw_server *s, node *n) {
  node *m = n;
  for (int depth = 0; depth < 256; depth++) {
    node *p = node_at(s, m->parent);
    if (p == NULL || p == m || p->dynamic) break;
    m = p;
  }
  return m;
}

/* Under open_mu: one more open served here in the model `m`; 1 when the host must be told to hold it. */
static int model_open(sw_server *s, node *m) {
  if (m->model_opens++ > 0 || m->held) return 0;
  m->held = 1;
  if (s->options.hold_grace > 0) {
    if (s->nheld == s->held_cap) {
      size_t cap = s->held_cap == 0 ? 16 : s->held_cap * 2;
      uint64_t *grown = realloc(s->held, cap * sizeof *grown);
      /* no room to remember it: it is let go with its last open, as with no grace */
      if (grown == NULL) return 1;
      s->held = grown;
      s->held_cap = cap;
    }
    s->held[s->nheld++] = m->ino;
  }
  return 1;
}

/* Under open_mu: an open served here in `m` ended; the model's inode when the host must let it go now, else 0. */
static uint64_t model_close(sw_server *s, node *m) {
  if (m->model_opens == 0 || --m->model_opens > 0) return 0;
  m->idle_since = sw_now_ns();
  for (size_t i = 0; i < s->nheld; i++) {
    if (s->held[i] == m->ino) return 0; /* the timer lets it go after the grace */
  }
  m->held = 0;
  return m->ino;
}

/* Under open_mu: one open of `n` in `mode` ends. The model's inode when the host must let it go now, else 0. */
static uint64_t drop_open(sw_server *s, int fd, node *n, int mode) {
  uint64_t let_go = 0;
  if (mode == H_PASS) {
    if (n->pass_opens > 0 && --n->pass_opens == 0 && n->backing_id >= 0) {
      uint32_t id = (uint32_t)n->backing_id;
      ioctl(fd, SW_FUSE_DEV_IOC_BACKING_CLOSE, &id);
      n->backing_id = -1;
    }
  } else if (n->normal_opens > 0) {
    n->normal_opens--;
  }
  if (mode == H_PASS || mode == H_LOCAL) let_go = model_close(s, model_of(s, n));
  if (n->pass_opens == 0 && n->normal_opens == 0) {
    backing_unref(n->backing);
    n->backing = NULL;
  }
  return let_go;
}

/* drop_open with the locks taken, and the host told when it must let the model go now */
static void end_open(sw_server *s, int fd, uint64_t ino, int mode) {
  pthread_rwlock_rdlock(&s->table);
  pthread_mutex_lock(&s->open_mu);
  node *n = node_at(s, ino);
  uint64_t let_go = n != NULL ? drop_open(s, fd, n, mode) : 0;
  pthread_mutex_unlock(&s->open_mu);
  pthread_rwlock_unlock(&s->table);
  if (let_go != 0) host_notice(s, SW_EV_CLOSED, let_go, 0, 0, 0);
}

static void do_open(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  if (blen < sizeof(struct fuse_open_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct fuse_open_in open_in;
  memcpy(&open_in, body, sizeof open_in);
  if ((open_in.flags & O_ACCMODE) != O_RDONLY || (open_in.flags & (O_TRUNC | O_CREAT)) != 0) {
    reply_error(fd, in->unique, EROFS);
    return;
  }
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, in->nodeid);
  if (n == NULL || n->kind != SW_FILE) {
    int error = n == NULL ? ENOENT : n->kind == SW_DIR ? EISDIR : ELOOP;
    pthread_rwlock_unlock(&s->table);
    reply_error(fd, in->unique, error);
    return;
  }
  uint64_t ino = n->ino;
  pthread_mutex_lock(&s->open_mu);
  backing *b = NULL;
  /*
   * The inode's passthrough opens share the backing file they were registered with (the kernel
   * requires one per inode), which was complete then and stays so even if the store lets it go.
   */
  int forward = !n->complete && n->pass_opens == 0;
  if (!forward && n->pass_opens == 0 && backing_get(s, n, &b) != 0) forward = 1;
  if (forward) {
    /* the host opens it (prefetch, fetches): counted as a normal open from now, so no passthrough starts meanwhile */
    n->normal_opens++;
    pthread_mutex_unlock(&s->open_mu);
    pthread_rwlock_unlock(&s->table);
    atomic_fetch_add(&s->stats.opens_host, 1);
    if (upcall(s, SW_UP_OPEN, fd, in, ino, 0, 0, 0, open_in.flags, NULL) != 0) {
      end_open(s, fd, ino, H_HOST);
      reply_error(fd, in->unique, EIO);
    }
    return;
  }
  int mode = H_LOCAL;
  if (n->pass_opens > 0) {
    mode = H_PASS;
  } else if (n->normal_opens == 0 && s->passthrough) {
    struct sw_backing_map map = { .fd = b->fd };
    int id = ioctl(fd, SW_FUSE_DEV_IOC_BACKING_OPEN, &map);
    if (id >= 0) {
      n->backing_id = id;
      mode = H_PASS;
    } else {
      int why = errno;
      s->passthrough = 0;
      if (!s->passthrough_logged) {
        s->passthrough_logged = 1;
        host_log(s, SW_LOG_WARN, "the kernel refused passthrough (%s%s): complete files are read through this process from now on", strerror(why),
                 why == EPERM ? "; it needs CAP_SYS_ADMIN" : "");
      }
    }
  }
  /* a local handle keeps the file it opened; a passthrough one needs nothing once the kernel has it */
  backing *kept = mode == H_LOCAL ? b : NULL;
  if (mode != H_LOCAL) backing_unref(b);
  uint64_t fh = handle_new(s, mode, ino, 0, kept, NULL, 0);
  int first = 0;
  if (fh != 0) {
    if (mode == H_PASS) n->pass_opens++;
    else n->normal_opens++;
    first = model_open(s, model_of(s, n));
  } else {
    backing_unref(kept);
    if (n->pass_opens == 0 && n->normal_opens == 0) {
      backing_unref(n->backing);
      n->backing = NULL;
    }
  }
  int backing_id = n->backing_id;
  pthread_mutex_unlock(&s->open_mu);
  pthread_rwlock_unlock(&s->table);
  if (fh == 0) {
    reply_error(fd, in->unique, ENOMEM);
    return;
  }
  if (first) host_notice(s, SW_EV_OPENED, ino, 0, 0, 0);
  struct sw_open_out out = { .fh = fh };
  if (mode == H_PASS) {
    out.open_flags = SW_FOPEN_PASSTHROUGH;
    out.backing_id = backing_id;
    atomic_fetch_add(&s->stats.opens_passthrough, 1);
  } else {
    out.open_flags = FOPEN_KEEP_CACHE;
    atomic_fetch_add(&s->stats.opens_local, 1);
  }
  if (send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0) != 0) {
    /* the opener gave up: no RELEASE will come for this handle */
    handle gone;
    if (handle_take(s, fh, (1u << H_PASS) | (1u << H_LOCAL), &gone)) {
      backing_unref(gone.b);
      end_open(s, fd, gone.ino, gone.mode);
    }
  }
}

/* Reads exactly `want` bytes at `offset`; 0, or -EIO on a short read. */
static int pread_all(int fd, uint8_t *into, size_t want, uint64_t offset) {
  size_t done = 0;
  while (done < want) {
    ssize_t got = pread(fd, into + done, want - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -EIO;
    done += (size_t)got;
  }
  return 0;
}

static void do_read(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen, uint8_t *scratch, size_t slen) {
  if (blen < sizeof(struct fuse_read_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  atomic_fetch_add(&s->stats.reads, 1);
  struct fuse_read_in read_in;
  memcpy(&read_in, body, sizeof read_in);
  handle h;
  if (!handle_get(s, read_in.fh, (1u << H_PASS) | (1u << H_LOCAL) | (1u << H_HOST), &h)) {
    reply_error(fd, in->unique, EBADF);
    return;
  }
  backing *b = h.b; /* the handle's own reference, or the node's file taken below */
  int error = 0;
  if (h.ino != in->nodeid) error = EBADF;
  else if (read_in.offset > (uint64_t)INT64_MAX) error = EINVAL;
  size_t want = read_in.size;
  if (want > slen) want = slen;
  pthread_rwlock_rdlock(&s->table);
  node *n = error != 0 ? NULL : node_at(s, h.ino);
  if (error == 0 && (n == NULL || n->kind != SW_FILE)) error = EBADF;
  if (error != 0 || read_in.offset >= n->size || want == 0) {
    pthread_rwlock_unlock(&s->table);
    backing_unref(b);
    if (error != 0) reply_error(fd, in->unique, error);
    else send_reply(fd, in->unique, 0, NULL, 0, NULL, 0);
    return;
  }
  if (want > n->size - read_in.offset) want = (size_t)(n->size - read_in.offset);
  int complete = n->complete;
  /* a local handle's file was complete when opened; others read here only what is present in the node's file */
  int here = b != NULL || range_present(n, read_in.offset, read_in.offset + want);
  if (here && b == NULL) {
    pthread_mutex_lock(&s->open_mu);
    if (backing_get(s, n, &b) != 0) here = 0;
    pthread_mutex_unlock(&s->open_mu);
  }
  pthread_rwlock_unlock(&s->table);
  if (!here) {
    if (h.mode != H_HOST) {
      /* nothing else can answer for a handle the host never saw */
      reply_error(fd, in->unique, EIO);
      return;
    }
    atomic_fetch_add(&s->stats.reads_host, 1);
    if (upcall(s, SW_UP_READ, fd, in, h.ino, h.host_handle, read_in.offset, (uint32_t)want, 0, NULL) != 0) reply_error(fd, in->unique, EIO);
    return;
  }
  int rc = pread_all(b->fd, scratch, want, read_in.offset);
  backing_unref(b);
  if (rc != 0) {
    host_log(s, SW_LOG_WARN, "short read of the store's file for inode %llu at %llu (%zu bytes)", (unsigned long long)h.ino, (unsigned long long)read_in.offset, want);
    reply_error(fd, in->unique, EIO);
    return;
  }
  atomic_fetch_add(&s->stats.bytes_local, want);
  send_reply(fd, in->unique, 0, scratch, want, NULL, 0);
  if (h.mode == H_HOST && !complete) host_notice(s, SW_EV_READ, h.ino, h.host_handle, read_in.offset, (uint32_t)want);
}

static void do_release(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  if (blen < sizeof(struct fuse_release_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct fuse_release_in release_in;
  memcpy(&release_in, body, sizeof release_in);
  handle h;
  if (!handle_take(s, release_in.fh, (1u << H_PASS) | (1u << H_LOCAL) | (1u << H_HOST), &h)) {
    reply_error(fd, in->unique, EBADF);
    return;
  }
  backing_unref(h.b);
  end_open(s, fd, h.ino, h.mode);
  reply_error(fd, in->unique, 0);
  if (h.mode == H_HOST) host_notice(s, SW_EV_RELEASE, h.ino, h.host_handle, 0, 0);
}

static void free_entries(dir_entry *entries, size_t count) {
  for (size_t i = 0; i < count; i++) free(entries[i].name);
  free(entries);
}

static uint32_t dirent_type(int kind) {
  return kind == SW_DIR ? DT_DIR_ : kind == SW_LINK ? DT_LNK_ : DT_REG_;
}

static void do_opendir(sw_server *s, int fd, const struct fuse_in_header *in) {
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, in->nodeid);
  if (n == NULL || n->kind != SW_DIR) {
    int error = n == NULL ? ENOENT : ENOTDIR;
    pthread_rwlock_unlock(&s->table);
    reply_error(fd, in->unique, error);
    return;
  }
  if (n->dynamic) {
    pthread_rwlock_unlock(&s->table);
    if (upcall(s, SW_UP_OPENDIR, fd, in, in->nodeid, 0, 0, 0, 0, NULL) != 0) reply_error(fd, in->unique, EIO);
    return;
  }
  size_t count = n->nchildren + 2;
  dir_entry *entries = calloc(count, sizeof *entries);
  int ok = entries != NULL;
  if (ok) {
    entries[0] = (dir_entry){ .ino = n->ino, .type = DT_DIR_, .name = strdup(".") };
    entries[1] = (dir_entry){ .ino = n->parent != 0 ? n->parent : n->ino, .type = DT_DIR_, .name = strdup("..") };
    ok = entries[0].name != NULL && entries[1].name != NULL;
    for (size_t i = 0; ok && i < n->nchildren; i++) {
      node *child = s->nodes[n->children[i]];
      entries[i + 2] = (dir_entry){ .ino = child->ino, .type = dirent_type(child->kind), .name = strdup(child->name) };
      ok = entries[i + 2].name != NULL;
    }
  }
  pthread_rwlock_unlock(&s->table);
  uint64_t fh = ok ? handle_new(s, H_DIR, in->nodeid, 0, NULL, entries, count) : 0;
  if (fh == 0) {
    if (entries != NULL) free_entries(entries, count);
    reply_error(fd, in->unique, ENOMEM);
    return;
  }
  struct sw_open_out out = { .fh = fh, .open_flags = FOPEN_KEEP_CACHE };
  send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
}

/*
 * READDIR, and READDIRPLUS: each entry with its attributes, as a lookup would give them, so a
 * walk that opens every file of a checkpoint costs no LOOKUP per file. Entries the table does not
 * know (names of dynamic directories not looked up yet) and "." and ".." go without (nodeid 0).
 */
static void do_readdir(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen, uint8_t *scratch, size_t slen, int plus) {
  if (blen < sizeof(struct fuse_read_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct fuse_read_in read_in;
  memcpy(&read_in, body, sizeof read_in);
  size_t room = read_in.size < slen ? read_in.size : slen;
  size_t used = 0;
  /* the entries stay owned by the handle; the kernel never releases a directory while reading it */
  pthread_rwlock_rdlock(&s->table);
  pthread_mutex_lock(&s->slots_mu);
  uint64_t fh = read_in.fh;
  if (fh < 1 || fh > s->nhandles || s->handles[fh - 1].mode != H_DIR || s->handles[fh - 1].ino != in->nodeid) {
    pthread_mutex_unlock(&s->slots_mu);
    pthread_rwlock_unlock(&s->table);
    reply_error(fd, in->unique, EBADF);
    return;
  }
  handle *h = &s->handles[fh - 1];
  for (uint64_t i = read_in.offset; i < h->nentries; i++) {
    const dir_entry *e = &h->entries[i];
    size_t namelen = strlen(e->name);
    size_t head = plus ? sizeof(struct fuse_entry_out) : 0;
    size_t record = FUSE_DIRENT_ALIGN(head + FUSE_NAME_OFFSET + namelen);
    if (used + record > room) break;
    memset(scratch + used, 0, record);
    if (plus) {
      int dot = strcmp(e->name, ".") == 0 || strcmp(e->name, "..") == 0;
      const node *n = dot || e->ino == UNKNOWN_INO ? NULL : node_at(s, e->ino);
      struct fuse_entry_out entry;
      if (n != NULL) fill_entry(n, &entry);
      else memset(&entry, 0, sizeof entry);
      memcpy(scratch + used, &entry, sizeof entry);
    }
    struct fuse_dirent *d = (struct fuse_dirent *)(scratch + used + head);
    d->ino = e->ino;
    d->off = i + 1;
    d->namelen = (uint32_t)namelen;
    d->type = e->type;
    memcpy(d->name, e->name, namelen);
    used += record;
  }
  pthread_mutex_unlock(&s->slots_mu);
  pthread_rwlock_unlock(&s->table);
  send_reply(fd, in->unique, 0, scratch, used, NULL, 0);
}

static void do_releasedir(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  if (blen < sizeof(struct fuse_release_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct fuse_release_in release_in;
  memcpy(&release_in, body, sizeof release_in);
  handle h;
  if (!handle_take(s, release_in.fh, 1u << H_DIR, &h)) {
    reply_error(fd, in->unique, EBADF);
    return;
  }
  free_entries(h.entries, h.nentries);
  reply_error(fd, in->unique, 0);
}

static void do_statfs(sw_server *s, int fd, const struct fuse_in_header *in) {
  struct fuse_statfs_out out;
  memset(&out, 0, sizeof out);
  pthread_rwlock_rdlock(&s->table);
  out.st.blocks = s->statfs.blocks;
  out.st.files = s->statfs.files;
  out.st.bsize = out.st.frsize = s->statfs.bsize;
  pthread_rwlock_unlock(&s->table);
  out.st.namelen = MAX_NAME;
  send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
}

static void do_getxattr(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen, int list) {
  if (blen < sizeof(struct fuse_getxattr_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  if (!list) {
    reply_error(fd, in->unique, ENODATA);
    return;
  }
  struct fuse_getxattr_in x;
  memcpy(&x, body, sizeof x);
  if (x.size == 0) {
    struct fuse_getxattr_out out = { .size = 0 };
    send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
  } else {
    send_reply(fd, in->unique, 0, NULL, 0, NULL, 0);
  }
}

static void do_access(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  if (blen < sizeof(struct fuse_access_in)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return;
  }
  struct fuse_access_in a;
  memcpy(&a, body, sizeof a);
  pthread_rwlock_rdlock(&s->table);
  int exists = node_at(s, in->nodeid) != NULL;
  pthread_rwlock_unlock(&s->table);
  reply_error(fd, in->unique, !exists ? ENOENT : (a.mask & W_OK) ? EROFS : 0);
}

void sw_handle(sw_server *s, int fd, const uint8_t *request, size_t length, uint8_t *scratch, size_t slen) {
  atomic_fetch_add(&s->stats.requests, 1);
  if (length < sizeof(struct fuse_in_header)) {
    atomic_fetch_add(&s->stats.malformed, 1);
    return;
  }
  struct fuse_in_header in;
  memcpy(&in, request, sizeof in);
  if (in.len != length) {
    atomic_fetch_add(&s->stats.malformed, 1);
    if (in.opcode != FUSE_FORGET && in.opcode != FUSE_BATCH_FORGET && in.opcode != FUSE_INTERRUPT) reply_error(fd, in.unique, EINVAL);
    return;
  }
  const uint8_t *body = request + sizeof in;
  size_t blen = length - sizeof in;
  if (!atomic_load(&s->initialised) && in.opcode != FUSE_INIT) {
    reply_error(fd, in.unique, EIO);
    return;
  }
  switch (in.opcode) {
    case FUSE_INIT: do_init(s, fd, &in, body, blen); break;
    case FUSE_LOOKUP: do_lookup(s, fd, &in, (const char *)body, blen); break;
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
      /* no reply: inodes live as long as the server; a read the kernel gave up on is answered anyway */
      break;
    case FUSE_GETATTR: do_getattr(s, fd, &in); break;
    case FUSE_READLINK: do_readlink(s, fd, &in, scratch, slen); break;
    case FUSE_OPEN: do_open(s, fd, &in, body, blen); break;
    case FUSE_READ: do_read(s, fd, &in, body, blen, scratch, slen); break;
    case FUSE_RELEASE: do_release(s, fd, &in, body, blen); break;
    case FUSE_OPENDIR: do_opendir(s, fd, &in); break;
    case FUSE_READDIR: do_readdir(s, fd, &in, body, blen, scratch, slen, 0); break;
    case FUSE_READDIRPLUS: do_readdir(s, fd, &in, body, blen, scratch, slen, 1); break;
    case FUSE_RELEASEDIR: do_releasedir(s, fd, &in, body, blen); break;
    case FUSE_STATFS: do_statfs(s, fd, &in); break;
    case FUSE_GETXATTR: do_getxattr(s, fd, &in, body, blen, 0); break;
    case FUSE_LISTXATTR: do_getxattr(s, fd, &in, body, blen, 1); break;
    case FUSE_ACCESS: do_access(s, fd, &in, body, blen); break;
    case FUSE_FLUSH:
      /* nothing to flush on a read-only mount: ENOSYS makes the kernel stop sending it, one request less per close */
      reply_error(fd, in.unique, ENOSYS);
      break;
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
      reply_error(fd, in.unique, 0);
      break;
    case FUSE_SETATTR:
    case FUSE_SYMLINK:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_WRITE:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_CREATE:
    case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
      reply_error(fd, in.unique, EROFS);
      break;
    case FUSE_DESTROY:
      atomic_store(&s->initialised, 0);
      reply_error(fd, in.unique, 0);
      break;
    default:
      reply_error(fd, in.unique, ENOSYS);
      break;
  }
}

/* ---- answers from the host -------------------------------------------------------------- */

int sw_reply_error(sw_server *s, uint32_t token, uint64_t unique, int error) {
  if (error <= 0 || error > 4095) return -EINVAL;
  pending p;
  int rc = slot_release(s, token, unique, &p);
  if (rc != 0) return rc;
  if (p.opcode == FUSE_OPEN) end_open(s, p.fd, p.ino, H_HOST);
  reply_error(p.fd, p.unique, error);
  return 0;
}

int sw_reply_entry(sw_server *s, uint32_t token, uint64_t unique, uint64_t ino) {
  pending p;
  if (token >= MAX_PENDING) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  int ok = s->pending[token].used && s->pending[token].unique == unique && s->pending[token].opcode == FUSE_LOOKUP;
  pthread_mutex_unlock(&s->slots_mu);
  if (!ok) return -ENOENT;
  struct fuse_entry_out e;
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, ino);
  if (n != NULL) fill_entry(n, &e);
  pthread_rwlock_unlock(&s->table);
  if (n == NULL) return -ENOENT;
  if (slot_release(s, token, unique, &p) != 0) return -ENOENT;
  send_reply(p.fd, p.unique, 0, &e, sizeof e, NULL, 0);
  return 0;
}

int sw_reply_open(sw_server *s, uint32_t token, uint64_t unique, uint64_t host_handle) {
  pending p;
  if (token >= MAX_PENDING) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  int ok = s->pending[token].used && s->pending[token].unique == unique && s->pending[token].opcode == FUSE_OPEN;
  pthread_mutex_unlock(&s->slots_mu);
  if (!ok) return -ENOENT;
  if (slot_release(s, token, unique, &p) != 0) return -ENOENT;
  /* the open was counted as normal when it was passed up */
  uint64_t fh = handle_new(s, H_HOST, p.ino, host_handle, NULL, NULL, 0);
  if (fh == 0) {
    end_open(s, p.fd, p.ino, H_HOST);
    reply_error(p.fd, p.unique, ENOMEM);
    return -ENOMEM;
  }
  struct sw_open_out out = { .fh = fh, .open_flags = FOPEN_KEEP_CACHE };
  if (send_reply(p.fd, p.unique, 0, &out, sizeof out, NULL, 0) != 0) {
    /* the opener gave up: no RELEASE will come for this handle, so it ends here */
    handle gone;
    if (handle_take(s, fh, 1u << H_HOST, &gone)) end_open(s, p.fd, p.ino, H_HOST);
    return -ENOENT;
  }
  return 0;
}

int sw_reply_data(sw_server *s, uint32_t token, uint64_t unique, const void *data, size_t length) {
  pending p;
  if (token >= MAX_PENDING) return -EINVAL;
  if (length > s->max_read) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  int ok = s->pending[token].used && s->pending[token].unique == unique && s->pending[token].opcode == FUSE_READ;
  pthread_mutex_unlock(&s->slots_mu);
  if (!ok) return -ENOENT;
  if (slot_release(s, token, unique, &p) != 0) return -ENOENT;
  send_reply(p.fd, p.unique, 0, data, length, NULL, 0);
  return 0;
}

int sw_reply_dir(sw_server *s, uint32_t token, uint64_t unique, const char *const *names, size_t count) {
  pending p;
  if (token >= MAX_PENDING || count > (1u << 20)) return -EINVAL;
  for (size_t i = 0; i < count; i++) {
    if (names[i] == NULL || names[i][0] == '\0' || strlen(names[i]) > MAX_NAME || strchr(names[i], '/') != NULL) return -EINVAL;
  }
  pthread_mutex_lock(&s->slots_mu);
  int ok = s->pending[token].used && s->pending[token].unique == unique && s->pending[token].opcode == FUSE_OPENDIR;
  pthread_mutex_unlock(&s->slots_mu);
  if (!ok) return -ENOENT;
  dir_entry *entries = calloc(count + 2, sizeof *entries);
  if (entries == NULL) return -ENOMEM;
  pthread_mutex_lock(&s->slots_mu);
  uint64_t ino = s->pending[token].ino;
  pthread_mutex_unlock(&s->slots_mu);
  int good = 1;
  pthread_rwlock_rdlock(&s->table);
  node *dir = node_at(s, ino);
  entries[0] = (dir_entry){ .ino = ino, .type = DT_DIR_, .name = strdup(".") };
  entries[1] = (dir_entry){ .ino = dir != NULL && dir->parent != 0 ? dir->parent : ino, .type = DT_DIR_, .name = strdup("..") };
  good = entries[0].name != NULL && entries[1].name != NULL;
  for (size_t i = 0; good && i < count; i++) {
    node *child = find_child(s, ino, names[i]);
    entries[i + 2] = (dir_entry){ .ino = child != NULL ? child->ino : UNKNOWN_INO, .type = child != NULL ? dirent_type(child->kind) : DT_UNKNOWN_, .name = strdup(names[i]) };
    good = entries[i + 2].name != NULL;
  }
  pthread_rwlock_unlock(&s->table);
  if (!good) {
    free_entries(entries, count + 2);
    return -ENOMEM;
  }
  if (slot_release(s, token, unique, &p) != 0) {
    free_entries(entries, count + 2);
    return -ENOENT;
  }
  uint64_t fh = handle_new(s, H_DIR, p.ino, 0, NULL, entries, count + 2);
  if (fh == 0) {
    free_entries(entries, count + 2);
    reply_error(p.fd, p.unique, ENOMEM);
    return -ENOMEM;
  }
  struct sw_open_out out = { .fh = fh };
  send_reply(p.fd, p.unique, 0, &out, sizeof out, NULL, 0);
  return 0;
}

int sw_reply_local(sw_server *s, uint32_t token, uint64_t unique) {
  if (token >= MAX_PENDING) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  pending p = s->pending[token];
  pthread_mutex_unlock(&s->slots_mu);
  if (!p.used || p.unique != unique || p.opcode != FUSE_READ) return -ENOENT;
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, p.ino);
  int here = n != NULL && n->kind == SW_FILE && p.offset < n->size && p.size <= n->size - p.offset && range_present(n, p.offset, p.offset + p.size);
  backing *b = NULL;
  if (here) {
    pthread_mutex_lock(&s->open_mu);
    if (backing_get(s, n, &b) != 0) b = NULL;
    pthread_mutex_unlock(&s->open_mu);
  }
  pthread_rwlock_unlock(&s->table);
  /* not (all) here after all, or not in the file the host named: the host answers as it would have */
  if (b == NULL) return -EAGAIN;
  pthread_mutex_lock(&s->local_mu);
  if (s->local_buf == NULL) s->local_buf = malloc(s->max_read);
  size_t want = p.size < s->max_read ? p.size : s->max_read;
  int rc = s->local_buf != NULL ? pread_all(b->fd, s->local_buf, want, p.offset) : -ENOMEM;
  backing_unref(b);
  pending taken;
  if (rc == 0 && slot_release(s, token, unique, &taken) == 0) {
    atomic_fetch_add(&s->stats.bytes_local, want);
    send_reply(taken.fd, taken.unique, 0, s->local_buf, want, NULL, 0);
  } else if (rc == 0) {
    rc = -ENOENT;
  }
  pthread_mutex_unlock(&s->local_mu);
  return rc == -ENOENT ? rc : rc != 0 ? -EIO : 0;
}

/* Lets go of models with no open file served here for the grace: the host hears once per model, not per file. */
static void release_idle(sw_server *s, uint64_t now_ns) {
  uint64_t grace = (uint64_t)(s->options.hold_grace * 1e9);
  for (;;) {
    uint64_t idle[64];
    size_t count = 0;
    pthread_rwlock_rdlock(&s->table);
    pthread_mutex_lock(&s->open_mu);
    for (size_t i = 0; i < s->nheld && count < 64;) {
      node *m = node_at(s, s->held[i]);
      if (m == NULL || (m->model_opens == 0 && now_ns - m->idle_since >= grace)) {
        if (m != NULL) m->held = 0;
        idle[count++] = s->held[i];
        s->held[i] = s->held[--s->nheld];
      } else {
        i++;
      }
    }
    pthread_mutex_unlock(&s->open_mu);
    pthread_rwlock_unlock(&s->table);
    for (size_t i = 0; i < count; i++) host_notice(s, SW_EV_CLOSED, idle[i], 0, 0, 0);
    if (count < 64) return;
  }
}

size_t sw_expire(sw_server *s, uint64_t now_ns) {
  size_t total = 0;
  if (s->options.hold_grace > 0) release_idle(s, now_ns);
  for (;;) {
    pending expired[64];
    size_t count = 0;
    pthread_mutex_lock(&s->slots_mu);
    for (uint32_t i = 0; i < MAX_PENDING && count < 64; i++) {
      pending *p = &s->pending[i];
      if (p->used && p->deadline != 0 && p->deadline <= now_ns) {
        expired[count++] = *p;
        p->used = 0;
      }
    }
    pthread_mutex_unlock(&s->slots_mu);
    for (size_t i = 0; i < count; i++) {
      if (expired[i].opcode == FUSE_OPEN) end_open(s, expired[i].fd, expired[i].ino, H_HOST);
      reply_error(expired[i].fd, expired[i].unique, EIO);
      atomic_fetch_add(&s->stats.timeouts, 1);
    }
    if (count > 0) host_log(s, SW_LOG_WARN, "%zu request(s) passed to the host got no answer in %.0f s: answered EIO", count, s->options.request_timeout);
    total += count;
    if (count < 64) return total;
  }
}
