/*
 * A read-only FUSE server for the model view, speaking the kernel protocol on /dev/fuse.
 *
 * Why not libfuse: Debian's libfuse 3 predates passthrough, and libfuse 2 (fuse-native) caps
 * requests at 128 KiB and sends each to Node's main thread. Here:
 *
 * - The inode table lives in C and is fed by the host (nodes.c); requests are answered on the
 *   addon's worker threads (requests.c), and only what the table cannot answer is passed up to
 *   the host. What the files share, and the order their locks are taken in, is in
 *   server-internal.h.
 * - Every request passed to the host has a deadline (sw_expire, from a thread of the addon): a
 *   host that does not answer (its thread stuck or busy) costs the reader EIO, not an
 *   uninterruptible sleep, and the late answer is refused.
 */
#define _GNU_SOURCE
#include "server-internal.h"

/* ---- host calls ------------------------------------------------------------------------- */

void host_log(sw_server *s, int level, const char *fmt, ...) {
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

void host_notice(sw_server *s, int kind, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size) {
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
int send_reply(int fd, uint64_t unique, int error, const void *a, size_t alen, const void *b, size_t blen) {
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

void reply_error(int fd, uint64_t unique, int error) {
  send_reply(fd, unique, error, NULL, 0, NULL, 0);
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
  s->local_pipe = (sw_pipe){ .r = -1, .w = -1, .capacity = 0 };
  atomic_init(&s->splice_reads, s->options.splice_reads ? 1 : 0);
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
    free_entries(s->handles[i].entries, s->handles[i].nentries);
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
  splice_close(&s->local_pipe);
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
int slot_release(sw_server *s, uint32_t token, uint64_t unique, pending *out) {
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

int upcall(sw_server *s, int kind, int fd, const struct fuse_in_header *in, uint64_t ino, uint64_t host_handle, uint64_t offset, uint32_t size, uint32_t flags, const char *text) {
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
uint64_t handle_new(sw_server *s, int mode, uint64_t ino, uint64_t host_handle, backing *b, dir_entry *entries, size_t nentries) {
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
int handle_get(sw_server *s, uint64_t fh, unsigned modes, handle *out) {
  pthread_mutex_lock(&s->slots_mu);
  int ok = fh >= 1 && fh <= s->nhandles && ((1u << s->handles[fh - 1].mode) & modes) != 0;
  if (ok) {
    *out = s->handles[fh - 1];
    backing_ref(out->b);
  }
  pthread_mutex_unlock(&s->slots_mu);
  return ok;
}

int handle_take(sw_server *s, uint64_t fh, unsigned modes, handle *out) {
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

void free_entries(dir_entry *entries, size_t count) {
  for (size_t i = 0; i < count; i++) free(entries[i].name);
  free(entries);
}

/* ---- deadlines -------------------------------------------------------------------------- */

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
