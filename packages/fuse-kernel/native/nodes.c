/*
 * The inode table of the server, fed by the host, and the store's files behind its nodes.
 *
 * - A model's directories, files, sizes, modes and backing paths are added once when the model is
 *   first looked up, so LOOKUP, GETATTR, OPENDIR/READDIR of model directories never wait on the
 *   host. Directories marked dynamic (the root, `by-cid`, name directories) ask the host, as names
 *   move and resolve at the origin.
 * - A backing path alone names no file for long: a content path is a hash of the chunk list, so a
 *   model evicted and added back gets a new, sparse file at the same path. The host says which
 *   file it saw (device, inode, birth time: inode numbers are reused); the server opens the path
 *   and checks it found that file before it reads a byte or hands it to the kernel, and serves
 *   through the host otherwise. What it opened is reference-counted: a handle opened on a
 *   complete file keeps that file (its bytes stay right after an unlink) for its whole life. On
 *   eviction (sw_evict) the host's word about those files is dropped, and the kernel is told to
 *   drop its pages and attributes of them (from a thread that answers no request: dropping a page
 *   waits on reads of it in flight).
 * - Opens served here (passthrough, local) hold their model from eviction through the host, which
 *   hears only when a model (the top non-dynamic directory above the file) goes from no open
 *   file to one (SW_EV_OPENED, with the file's inode) and when it has had none for
 *   `hold_grace` seconds (SW_EV_CLOSED, with the model's inode; sw_expire's timer sends it). A
 *   walk that opens and closes a checkpoint's thousands of files one after another then costs
 *   the host two notices, not two per file; the guarantee is unchanged, as the hold is taken
 *   before the first open is answered and let go only after the last open has ended.
 */
#define _GNU_SOURCE
#include "server-internal.h"

/* ---- nodes ------------------------------------------------------------------------------ */

static uint64_t name_hash(uint64_t parent, const char *name) {
  uint64_t h = 1469598103934665603ull ^ (parent * 0x9e3779b97f4a7c15ull);
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  return h;
}

node *node_at(sw_server *s, uint64_t ino) {
  if (ino == 0 || ino >= s->nnodes) return NULL;
  return s->nodes[ino];
}

node *find_child(sw_server *s, uint64_t parent, const char *name) {
  if (s->nbuckets == 0) return NULL;
  uint64_t ino = s->buckets[name_hash(parent, name) & (s->nbuckets - 1)];
  while (ino != 0) {
    node *n = s->nodes[ino];
    if (n->parent == parent && strcmp(n->name, name) == 0) return n;
    ino = n->hnext;
  }
  return NULL;
}

int rehash(sw_server *s, size_t nbuckets) {
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

backing *backing_ref(backing *b) {
  if (b != NULL) atomic_fetch_add(&b->refs, 1);
  return b;
}

void backing_unref(backing *b) {
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

void free_node(node *n) {
  if (n == NULL) return;
  free(n->name);
  free(n->target);
  free(n->backing_path);
  free(n->chunk_ends);
  free(n->present);
  free(n->children);
  free(n);
}

node *new_node(sw_server *s) {
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
int range_present(const node *n, uint64_t offset, uint64_t end) {
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
  out->reads_spliced = s->stats.reads_spliced;
  out->splice_reads = s->splice_reads;
  pthread_mutex_lock(&s->open_mu);
  out->passthrough = s->passthrough;
  pthread_mutex_unlock(&s->open_mu);
}

/* ---- attributes ------------------------------------------------------------------------- */

static uint32_t type_bits(int kind) {
  return kind == SW_DIR ? S_IFDIR : kind == SW_LINK ? S_IFLNK : S_IFREG;
}

void fill_attr(const node *n, struct fuse_attr *a) {
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

void split_timeout(double seconds, uint64_t *whole, uint32_t *nsec) {
  if (!(seconds > 0)) seconds = 0;
  if (seconds > 1e9) seconds = 1e9;
  *whole = (uint64_t)seconds;
  *nsec = (uint32_t)((seconds - (double)*whole) * 1e9);
}

void fill_entry(const node *n, struct fuse_entry_out *e) {
  memset(e, 0, sizeof *e);
  e->nodeid = n->ino;
  e->generation = 1;
  split_timeout(n->entry_timeout, &e->entry_valid, &e->entry_valid_nsec);
  split_timeout(n->attr_timeout, &e->attr_valid, &e->attr_valid_nsec);
  fill_attr(n, &e->attr);
}

/* ---- store files and open counts ------------------------------------------------------- */

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
int backing_get(sw_server *s, node *n, backing **out) {
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
node *model_of(sw_server *s, node *n) {
  node *m = n;
  for (int depth = 0; depth < 256; depth++) {
    node *p = node_at(s, m->parent);
    if (p == NULL || p == m || p->dynamic) break;
    m = p;
  }
  return m;
}

/* Under open_mu: one more open served here in the model `m`; 1 when the host must be told to hold it. */
int model_open(sw_server *s, node *m) {
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
void end_open(sw_server *s, int fd, uint64_t ino, int mode) {
  pthread_rwlock_rdlock(&s->table);
  pthread_mutex_lock(&s->open_mu);
  node *n = node_at(s, ino);
  uint64_t let_go = n != NULL ? drop_open(s, fd, n, mode) : 0;
  pthread_mutex_unlock(&s->open_mu);
  pthread_rwlock_unlock(&s->table);
  if (let_go != 0) host_notice(s, SW_EV_CLOSED, let_go, 0, 0, 0);
}
