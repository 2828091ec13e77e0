/*
 * The kernel's requests, and the host's answers to those passed up to it.
 *
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
 *   gets EINVAL (or nothing, for requests without replies) and is counted. Most requests begin
 *   the same way, with take_body (the fixed part of the body) and node_for (the node, of the kind
 *   the request needs, under the table's lock), so each check is written once.
 */
#define _GNU_SOURCE
#include "server-internal.h"

#define SW_ANY 0

/*
 * The fixed part of a request's body, copied out (the kernel's buffer need not be aligned for
 * it); 0 when the body is shorter, which is counted as malformed and answered EINVAL.
 */
static int take_body(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen, void *out, size_t size) {
  if (blen < size) {
    atomic_fetch_add(&s->stats.malformed, 1);
    reply_error(fd, in->unique, EINVAL);
    return 0;
  }
  memcpy(out, body, size);
  return 1;
}

/*
 * The node the request names, with the table's read lock held, when it is of `kind` (SW_ANY:
 * whatever it is). Otherwise the lock is let go, the request answered (ENOENT; or ENOTDIR where
 * a directory was needed, EISDIR or ELOOP where a file was, EINVAL where a link was) and NULL
 * returned.
 */
static node *node_for(sw_server *s, int fd, const struct fuse_in_header *in, int kind) {
  pthread_rwlock_rdlock(&s->table);
  node *n = node_at(s, in->nodeid);
  int error = n == NULL ? ENOENT
    : kind == SW_ANY || n->kind == kind ? 0
    : kind == SW_DIR ? ENOTDIR
    : kind == SW_FILE ? (n->kind == SW_DIR ? EISDIR : ELOOP)
    : EINVAL;
  if (error == 0) return n;
  pthread_rwlock_unlock(&s->table);
  reply_error(fd, in->unique, error);
  return NULL;
}

/* "." and ".." of the directory `ino`, a listing's first two entries; 0 when out of memory */
static int dot_entries(dir_entry *entries, uint64_t ino, uint64_t parent) {
  entries[0] = (dir_entry){ .ino = ino, .type = DT_DIR_, .name = strdup(".") };
  entries[1] = (dir_entry){ .ino = parent != 0 ? parent : ino, .type = DT_DIR_, .name = strdup("..") };
  return entries[0].name != NULL && entries[1].name != NULL;
}

/* A copy of the upcall `token` while it is pending as the request `unique` of `opcode`: 0, -EINVAL for a token out of range, else -ENOENT. */
static int slot_peek(sw_server *s, uint32_t token, uint64_t unique, uint32_t opcode, pending *out) {
  if (token >= MAX_PENDING) return -EINVAL;
  pthread_mutex_lock(&s->slots_mu);
  *out = s->pending[token];
  pthread_mutex_unlock(&s->slots_mu);
  return out->used && out->unique == unique && out->opcode == opcode ? 0 : -ENOENT;
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
  /*
   * Initialised before the reply goes out: the kernel releases the requests that waited for INIT
   * as soon as it has the reply, and another thread may read one before this thread runs again
   * (a stat of the fresh mount answered EIO on a loaded machine).
   */
  atomic_store(&s->initialised, 1);
  /* before 7.23 the reply was 24 bytes */
  send_reply(fd, in->unique, 0, &out, out.minor < 23 ? 24 : sizeof out, NULL, 0);
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
  node *parent = node_for(s, fd, in, SW_DIR);
  if (parent == NULL) return;
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
  node *n = node_for(s, fd, in, SW_ANY);
  if (n == NULL) return;
  struct fuse_attr_out out;
  memset(&out, 0, sizeof out);
  split_timeout(n->attr_timeout, &out.attr_valid, &out.attr_valid_nsec);
  fill_attr(n, &out.attr);
  pthread_rwlock_unlock(&s->table);
  send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
}

static void do_readlink(sw_server *s, int fd, const struct fuse_in_header *in, uint8_t *scratch, size_t slen) {
  node *n = node_for(s, fd, in, SW_LINK);
  if (n == NULL) return;
  int error = n->target == NULL ? EINVAL : 0;
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

static void do_open(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  struct fuse_open_in open_in;
  if (!take_body(s, fd, in, body, blen, &open_in, sizeof open_in)) return;
  if ((open_in.flags & O_ACCMODE) != O_RDONLY || (open_in.flags & (O_TRUNC | O_CREAT)) != 0) {
    reply_error(fd, in->unique, EROFS);
    return;
  }
  node *n = node_for(s, fd, in, SW_FILE);
  if (n == NULL) return;
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

/* this server thread's pipe for spliced replies (splice.c), closed by sw_thread_end */
static __thread sw_pipe thread_pipe = { -1, -1, 0 };

void sw_thread_end(void) {
  splice_close(&thread_pipe);
  thread_pipe.capacity = 0;
}


static void do_read(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen, uint8_t *scratch, size_t slen) {
  struct fuse_read_in read_in;
  if (!take_body(s, fd, in, body, blen, &read_in, sizeof read_in)) return;
  atomic_fetch_add(&s->stats.reads, 1);
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
  int ready = file_reply_ready(s, &thread_pipe, scratch, in->unique, b->fd, read_in.offset, want);
  int rc = ready < 0 ? ready : file_reply_send(s, &thread_pipe, scratch, ready, fd, in->unique, b->fd, read_in.offset, want);
  backing_unref(b);
  if (rc == -EIO) {
    host_log(s, SW_LOG_WARN, "short read of the store's file for inode %llu at %llu (%zu bytes)", (unsigned long long)h.ino, (unsigned long long)read_in.offset, want);
    if (ready < 0) reply_error(fd, in->unique, EIO);
    return;
  }
  if (h.mode == H_HOST && !complete) host_notice(s, SW_EV_READ, h.ino, h.host_handle, read_in.offset, (uint32_t)want);
}

static void do_release(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  struct fuse_release_in release_in;
  if (!take_body(s, fd, in, body, blen, &release_in, sizeof release_in)) return;
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

static uint32_t dirent_type(int kind) {
  return kind == SW_DIR ? DT_DIR_ : kind == SW_LINK ? DT_LNK_ : DT_REG_;
}

static void do_opendir(sw_server *s, int fd, const struct fuse_in_header *in) {
  node *n = node_for(s, fd, in, SW_DIR);
  if (n == NULL) return;
  if (n->dynamic) {
    pthread_rwlock_unlock(&s->table);
    if (upcall(s, SW_UP_OPENDIR, fd, in, in->nodeid, 0, 0, 0, 0, NULL) != 0) reply_error(fd, in->unique, EIO);
    return;
  }
  size_t count = n->nchildren + 2;
  dir_entry *entries = calloc(count, sizeof *entries);
  int ok = entries != NULL;
  if (ok) {
    ok = dot_entries(entries, n->ino, n->parent);
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
  struct fuse_read_in read_in;
  if (!take_body(s, fd, in, body, blen, &read_in, sizeof read_in)) return;
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
  struct fuse_release_in release_in;
  if (!take_body(s, fd, in, body, blen, &release_in, sizeof release_in)) return;
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
  struct fuse_getxattr_in x;
  if (!take_body(s, fd, in, body, blen, &x, sizeof x)) return;
  if (!list) {
    reply_error(fd, in->unique, ENODATA);
    return;
  }
  if (x.size == 0) {
    struct fuse_getxattr_out out = { .size = 0 };
    send_reply(fd, in->unique, 0, &out, sizeof out, NULL, 0);
  } else {
    send_reply(fd, in->unique, 0, NULL, 0, NULL, 0);
  }
}

static void do_access(sw_server *s, int fd, const struct fuse_in_header *in, const uint8_t *body, size_t blen) {
  struct fuse_access_in a;
  if (!take_body(s, fd, in, body, blen, &a, sizeof a)) return;
  if (node_for(s, fd, in, SW_ANY) == NULL) return;
  pthread_rwlock_unlock(&s->table);
  reply_error(fd, in->unique, (a.mask & W_OK) ? EROFS : 0);
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
  int rc = slot_peek(s, token, unique, FUSE_LOOKUP, &p);
  if (rc != 0) return rc;
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
  int rc = slot_peek(s, token, unique, FUSE_OPEN, &p);
  if (rc != 0) return rc;
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
  if (length > s->max_read) return -EINVAL;
  int rc = slot_peek(s, token, unique, FUSE_READ, &p);
  if (rc != 0) return rc;
  if (slot_release(s, token, unique, &p) != 0) return -ENOENT;
  send_reply(p.fd, p.unique, 0, data, length, NULL, 0);
  return 0;
}

int sw_reply_dir(sw_server *s, uint32_t token, uint64_t unique, const char *const *names, size_t count) {
  pending p;
  if (count > (1u << 20)) return -EINVAL;
  for (size_t i = 0; i < count; i++) {
    if (names[i] == NULL || names[i][0] == '\0' || strlen(names[i]) > MAX_NAME || strchr(names[i], '/') != NULL) return -EINVAL;
  }
  int rc = slot_peek(s, token, unique, FUSE_OPENDIR, &p);
  if (rc != 0) return rc;
  dir_entry *entries = calloc(count + 2, sizeof *entries);
  if (entries == NULL) return -ENOMEM;
  uint64_t ino = p.ino;
  int good = 1;
  pthread_rwlock_rdlock(&s->table);
  node *dir = node_at(s, ino);
  good = dot_entries(entries, ino, dir != NULL ? dir->parent : 0);
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
  pending p;
  int rc = slot_peek(s, token, unique, FUSE_READ, &p);
  if (rc != 0) return rc;
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
  int ready = s->local_buf != NULL ? file_reply_ready(s, &s->local_pipe, s->local_buf, p.unique, b->fd, p.offset, want) : -ENOMEM;
  /* the request is claimed only once its bytes are ready: a file that cannot be read leaves it to the host */
  pending taken;
  if (ready >= 0 && slot_release(s, token, unique, &taken) == 0) {
    file_reply_send(s, &s->local_pipe, s->local_buf, ready, taken.fd, taken.unique, b->fd, p.offset, want);
    rc = 0;
  } else if (ready >= 0) {
    file_reply_drop(&s->local_pipe, ready);
    rc = -ENOENT;
  } else {
    rc = ready;
  }
  backing_unref(b);
  pthread_mutex_unlock(&s->local_mu);
  return rc == -ENOENT ? rc : rc != 0 ? -EIO : 0;
}
