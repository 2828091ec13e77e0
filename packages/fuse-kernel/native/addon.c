/*
 * Node-API glue for the FUSE server: mounting with mount(2), worker threads that read /dev/fuse
 * (one cloned descriptor each, so replies go back on the descriptor the request came from), and
 * the one thread-safe function through which the server asks JavaScript for what only it knows.
 * Everything the kernel sends is parsed in requests.c.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "protocol.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <time.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 16
/* a request buffer must hold the largest request the kernel may send (a WRITE of max_write) */
#define REQUEST_BUFFER (1u << 20) + 4096

typedef struct state {
  sw_server *server;
  napi_threadsafe_function tsfn;
  int session_fd;
  atomic_int workers; /* reading /dev/fuse still; the deadline thread stops after the last */
  int drop_sys_admin;
  double request_timeout;
  int unrefed;
  /*
   * The JS object, the thread-safe function, and each thread (workers, the deadline thread) hold
   * one; freed at 0. A thread may outlive the thread-safe function (the environment is torn down
   * at exit while threads still run): `stopping`, under `stop_lock`, says it is gone, and no
   * thread touches it after.
   */
  atomic_int refs;
  pthread_rwlock_t stop_lock;
  int stopping;
} state;

typedef struct worker {
  state *st;
  int fd;
} worker;

#define CHECK(call)                                                              \
  do {                                                                           \
    if ((call) != napi_ok) {                                                     \
      napi_throw_error(env, "ERR_FUSE_ADDON", "N-API call failed: " #call);      \
      return NULL;                                                               \
    }                                                                            \
  } while (0)

static napi_value throw_errno(napi_env env, int error, const char *what) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  napi_value msg, err, code;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_int32(env, error, &code);
  napi_set_named_property(env, err, "errno", code);
  napi_throw(env, err);
  return NULL;
}

static void state_unref(state *st) {
  if (atomic_fetch_sub(&st->refs, 1) > 1) return;
  sw_server_free(st->server);
  pthread_rwlock_destroy(&st->stop_lock);
  free(st);
}

/* A thread is done: gives back its hold on the thread-safe function (unless that is gone) and its reference. */
static void thread_done(state *st) {
  pthread_rwlock_rdlock(&st->stop_lock);
  if (!st->stopping) napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
  pthread_rwlock_unlock(&st->stop_lock);
  state_unref(st);
}

/* ---- calls into JavaScript -------------------------------------------------------------- */

static void set_number(napi_env env, napi_value obj, const char *key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, obj, key, v);
}

static void call_js(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  sw_upcall *u = data;
  if (env != NULL && callback != NULL) {
    napi_value obj, text, undefined, result;
    napi_create_object(env, &obj);
    set_number(env, obj, "kind", u->kind);
    set_number(env, obj, "token", u->token);
    set_number(env, obj, "unique", (double)u->unique);
    set_number(env, obj, "ino", (double)u->ino);
    set_number(env, obj, "handle", (double)u->handle);
    set_number(env, obj, "offset", (double)u->offset);
    set_number(env, obj, "size", u->size);
    set_number(env, obj, "flags", u->flags);
    set_number(env, obj, "level", u->level);
    napi_create_string_utf8(env, u->text, NAPI_AUTO_LENGTH, &text);
    napi_set_named_property(env, obj, "text", text);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, callback, 1, &obj, &result);
  }
  free(u);
}

static void upcall(void *ctx, sw_upcall *u) {
  state *st = ctx;
  pthread_rwlock_rdlock(&st->stop_lock);
  int sent = !st->stopping && napi_call_threadsafe_function(st->tsfn, u, napi_tsfn_nonblocking) == napi_ok;
  pthread_rwlock_unlock(&st->stop_lock);
  /* shutting down: a request passed up now is never answered, which the kernel resolves on abort */
  if (!sent) free(u);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state *st = data;
  pthread_rwlock_wrlock(&st->stop_lock);
  st->stopping = 1;
  pthread_rwlock_unlock(&st->stop_lock);
  state_unref(st);
}

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state_unref(data);
}

/* ---- workers ---------------------------------------------------------------------------- */

/* Drops CAP_SYS_ADMIN from this thread only: passthrough then fails as without the capability. */
static void drop_sys_admin(void) {
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct caps[2];
  if (syscall(SYS_capget, &header, caps) != 0) return;
  caps[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
  caps[CAP_SYS_ADMIN / 32].permitted &= ~(1u << (CAP_SYS_ADMIN % 32));
  syscall(SYS_capset, &header, caps);
}

static void *work(void *arg) {
  worker *w = arg;
  state *st = w->st;
  if (st->drop_sys_admin) drop_sys_admin();
  uint8_t *request = malloc(REQUEST_BUFFER);
  size_t scratch_size = sw_scratch_size(st->server);
  uint8_t *scratch = malloc(scratch_size);
  while (request != NULL && scratch != NULL) {
    ssize_t got = read(w->fd, request, REQUEST_BUFFER);
    if (got < 0) {
      /* ENOENT: the request was interrupted before we read it */
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      break; /* ENODEV: unmounted */
    }
    sw_handle(st->server, w->fd, request, (size_t)got, scratch, scratch_size);
  }
  free(request);
  free(scratch);
  sw_thread_end();
  if (w->fd != st->session_fd) close(w->fd);
  free(w);
  atomic_fetch_sub(&st->workers, 1);
  thread_done(st);
  return NULL;
}

/*
 * Answers EIO to requests the host has not answered by their deadline. On its own thread, so a
 * host that never answers (its thread busy or stuck) leaves no reader in uninterruptible sleep.
 */
static void *expire(void *arg) {
  state *st = arg;
  /* a quarter of the deadline between checks, so a request waits at most 1.25 × it (and 1 s more at most) */
  double interval = st->request_timeout / 4;
  if (interval > 1) interval = 1;
  if (interval < 0.01) interval = 0.01;
  struct timespec pause = { .tv_sec = (time_t)interval, .tv_nsec = (long)((interval - (double)(time_t)interval) * 1e9) };
  for (;;) {
    nanosleep(&pause, NULL);
    pthread_rwlock_rdlock(&st->stop_lock);
    int go_on = !st->stopping && atomic_load(&st->workers) > 0;
    if (go_on) sw_expire(st->server, sw_now_ns());
    pthread_rwlock_unlock(&st->stop_lock);
    if (!go_on) break;
  }
  thread_done(st);
  return NULL;
}

typedef struct inval_job {
  int fd;
  uint64_t parent;
  char name[256];
  size_t count;
  uint64_t inos[];
} inval_job;

/*
 * Tells the kernel to drop what it caches of evicted files. Never on a thread that answers
 * requests, nor on JavaScript's: dropping a page waits for reads of it in flight, which those
 * threads answer.
 */
static void *invalidate(void *arg) {
  inval_job *job = arg;
  for (size_t i = 0; i < job->count; i++) sw_notify_inval_inode(job->fd, job->inos[i]);
  if (job->name[0] != '\0') sw_notify_inval_entry(job->fd, job->parent, job->name);
  free(job);
  return NULL;
}

/* ---- exported functions ----------------------------------------------------------------- */

static int get_bool(napi_env env, napi_value obj, const char *key, int fallback) {
  napi_value v;
  bool present = false, value = false;
  if (napi_has_named_property(env, obj, key, &present) != napi_ok || !present) return fallback;
  napi_get_named_property(env, obj, key, &v);
  if (napi_get_value_bool(env, v, &value) != napi_ok) return fallback;
  return value;
}

static double get_number(napi_env env, napi_value obj, const char *key, double fallback) {
  napi_value v;
  bool present = false;
  double value = fallback;
  if (napi_has_named_property(env, obj, key, &present) != napi_ok || !present) return fallback;
  napi_get_named_property(env, obj, key, &v);
  if (napi_get_value_double(env, v, &value) != napi_ok) return fallback;
  return value;
}

/* a malloc'd copy of a string property (NULL when absent or not a string) */
static char *get_string(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  bool present = false;
  size_t length = 0;
  if (napi_has_named_property(env, obj, key, &present) != napi_ok || !present) return NULL;
  napi_get_named_property(env, obj, key, &v);
  if (napi_get_value_string_utf8(env, v, NULL, 0, &length) != napi_ok) return NULL;
  char *text = malloc(length + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, v, text, length + 1, &length);
  return text;
}

static state *unwrap(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL || ((state *)data)->server == NULL) {
    napi_throw_type_error(env, "ERR_FUSE_ADDON", "not a mounted FUSE server");
    return NULL;
  }
  return data;
}

/* mount({ mountpoint, threads, maxRead, passthrough, splice, maxStackDepth, allowOther, rootTimeout, dropSysAdmin }, onUpcall) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mount(options, onUpcall)");
    return NULL;
  }
  char *mountpoint = get_string(env, argv[0], "mountpoint");
  if (mountpoint == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "options.mountpoint must be a string");
    return NULL;
  }
  int threads = (int)get_number(env, argv[0], "threads", 4);
  if (threads < 1) threads = 1;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  sw_options options = {
    /* 1 MiB less a page: a reply then fits a 1 MiB pipe and is spliced (splice.c) */
    .max_read = (uint32_t)get_number(env, argv[0], "maxRead", (1 << 20) - 4096),
    .passthrough = get_bool(env, argv[0], "passthrough", 1),
    .splice_reads = get_bool(env, argv[0], "splice", 1),
    .max_stack_depth = (uint32_t)get_number(env, argv[0], "maxStackDepth", 1),
    .root_timeout = get_number(env, argv[0], "rootTimeout", 1),
    .request_timeout = get_number(env, argv[0], "requestTimeout", 30),
  };
  if (!(options.request_timeout >= 0 && options.request_timeout <= 86400)) options.request_timeout = 30;
  /* a model stays held this long after its last open, so a walk over its files is not one hold per file */
  options.hold_grace = get_number(env, argv[0], "holdGrace", 2);
  if (!(options.hold_grace >= 0 && options.hold_grace <= 60)) options.hold_grace = 2;
  /* the holds are let go by the timer thread that expires requests: none without it */
  if (options.request_timeout == 0) options.hold_grace = 0;
  state *st = calloc(1, sizeof *st);
  if (st == NULL) {
    free(mountpoint);
    return throw_errno(env, ENOMEM, "mount");
  }
  st->drop_sys_admin = get_bool(env, argv[0], "dropSysAdmin", 0);
  st->request_timeout = options.request_timeout;
  sw_host host = { .upcall = upcall, .ctx = st };
  st->server = sw_server_new(&options, &host);
  int fd = st->server == NULL ? -1 : open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int error = st->server == NULL ? ENOMEM : errno;
    sw_server_free(st->server);
    free(st);
    free(mountpoint);
    return throw_errno(env, error, "opening /dev/fuse");
  }
  st->session_fd = fd;
  char data[256];
  snprintf(data, sizeof data, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,default_permissions%s", fd, getuid(), getgid(),
           get_bool(env, argv[0], "allowOther", 0) ? ",allow_other" : "");
  if (mount("swarm", mountpoint, "fuse.swarm", MS_NOSUID | MS_NODEV | MS_RDONLY | MS_NOATIME, data) != 0) {
    int error = errno;
    close(fd);
    sw_server_free(st->server);
    free(st);
    char what[512];
    snprintf(what, sizeof what, "mount(2) of %s", mountpoint);
    free(mountpoint);
    return throw_errno(env, error, what);
  }
  napi_value name, external;
  napi_create_string_utf8(env, "swarm-fuse", NAPI_AUTO_LENGTH, &name);
  atomic_init(&st->refs, 2);
  pthread_rwlock_init(&st->stop_lock, NULL);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, (size_t)threads, st, tsfn_finalize, NULL, call_js, &st->tsfn) != napi_ok) {
    umount2(mountpoint, MNT_DETACH);
    close(fd);
    sw_server_free(st->server);
    free(st);
    free(mountpoint);
    napi_throw_error(env, "ERR_FUSE_ADDON", "could not create the thread-safe function");
    return NULL;
  }
  /* while mounted, the process stays alive to serve it (unref() lets go once unmounted) */
  int started = 0;
  for (int i = 0; i < threads; i++) {
    worker *w = calloc(1, sizeof *w);
    int wfd = fd;
    if (w != NULL && i > 0) {
      wfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
      uint32_t session = (uint32_t)fd;
      if (wfd >= 0 && ioctl(wfd, SW_FUSE_DEV_IOC_CLONE, &session) != 0) {
        close(wfd);
        wfd = -1;
      }
    }
    pthread_t thread;
    if (w == NULL || wfd < 0) {
      free(w);
      napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
      continue;
    }
    w->st = st;
    w->fd = wfd;
    atomic_fetch_add(&st->workers, 1);
    atomic_fetch_add(&st->refs, 1);
    if (pthread_create(&thread, NULL, work, w) != 0) {
      atomic_fetch_sub(&st->workers, 1);
      atomic_fetch_sub(&st->refs, 1);
      if (wfd != fd) close(wfd);
      free(w);
      napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
      continue;
    }
    pthread_detach(thread);
    started++;
  }
  free(mountpoint);
  if (started == 0) return throw_errno(env, EAGAIN, "starting FUSE threads");
  pthread_t expirer;
  if (options.request_timeout > 0 && napi_acquire_threadsafe_function(st->tsfn) == napi_ok) {
    atomic_fetch_add(&st->refs, 1);
    if (pthread_create(&expirer, NULL, expire, st) == 0) {
      pthread_detach(expirer);
    } else {
      atomic_fetch_sub(&st->refs, 1);
      napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
    }
  }
  CHECK(napi_create_external(env, st, external_finalize, NULL, &external));
  return external;
}

/* a bigint (or a safe integer) property as uint64; absent is 0; -1 when it is neither */
static int get_u64(napi_env env, napi_value obj, const char *key, uint64_t *out) {
  napi_value v;
  bool present = false, lossless = false;
  napi_valuetype type;
  *out = 0;
  if (napi_has_named_property(env, obj, key, &present) != napi_ok || !present) return 0;
  napi_get_named_property(env, obj, key, &v);
  if (napi_typeof(env, v, &type) != napi_ok) return -1;
  if (type == napi_undefined) return 0;
  if (type == napi_bigint) return napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless ? 0 : -1;
  double value = -1;
  if (type != napi_number || napi_get_value_double(env, v, &value) != napi_ok || !(value >= 0 && value <= 9007199254740991.0)) return -1;
  *out = (uint64_t)value;
  return 0;
}

static int node_init_from(napi_env env, napi_value obj, sw_node_init *init, char **target, char **backing, uint64_t **ends) {
  *target = get_string(env, obj, "target");
  *backing = get_string(env, obj, "backingPath");
  *ends = NULL;
  memset(init, 0, sizeof *init);
  init->kind = (int)get_number(env, obj, "kind", 0);
  init->mode = (uint32_t)get_number(env, obj, "mode", 0444);
  double size = get_number(env, obj, "size", 0);
  if (!(size >= 0 && size <= 9007199254740991.0)) return -1;
  init->size = (uint64_t)size;
  init->uid = (uint32_t)get_number(env, obj, "uid", 0);
  init->gid = (uint32_t)get_number(env, obj, "gid", 0);
  init->mtime = (int64_t)get_number(env, obj, "mtime", 0);
  init->entry_timeout = get_number(env, obj, "entryTimeout", 1);
  init->attr_timeout = get_number(env, obj, "attrTimeout", 1);
  init->dynamic = get_bool(env, obj, "dynamic", 0);
  init->complete = get_bool(env, obj, "complete", 0);
  init->target = *target;
  init->backing_path = *backing;
  if (get_u64(env, obj, "backingDev", &init->identity.dev) != 0 || get_u64(env, obj, "backingIno", &init->identity.ino) != 0 ||
      get_u64(env, obj, "backingBirthNs", &init->identity.birth_ns) != 0) return -1;
  napi_value v;
  bool present = false, is_array = false;
  if (napi_has_named_property(env, obj, "chunkEnds", &present) == napi_ok && present) {
    napi_get_named_property(env, obj, "chunkEnds", &v);
    napi_is_array(env, v, &is_array);
    if (!is_array) return -1;
    uint32_t count = 0;
    napi_get_array_length(env, v, &count);
    if (count > 0) {
      *ends = malloc(count * sizeof **ends);
      if (*ends == NULL) return -1;
      for (uint32_t i = 0; i < count; i++) {
        napi_value item;
        double end = -1;
        napi_get_element(env, v, i, &item);
        napi_get_value_double(env, item, &end);
        if (!(end >= 0 && end <= 9007199254740991.0)) return -1;
        (*ends)[i] = (uint64_t)end;
      }
    }
    init->chunk_ends = *ends;
    init->nchunks = count;
  }
  return 0;
}

/* setNode(server, parentIno, name, init) → ino */
static napi_value js_set_node(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  state *st = argc == 4 ? unwrap(env, argv[0]) : NULL;
  if (st == NULL) return NULL;
  double parent = 0;
  char name[512];
  size_t length = 0;
  if (napi_get_value_double(env, argv[1], &parent) != napi_ok || napi_get_value_string_utf8(env, argv[2], name, sizeof name, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "setNode(server, parent, name, init)");
    return NULL;
  }
  sw_node_init init;
  char *target, *backing;
  uint64_t *ends;
  int rc = node_init_from(env, argv[3], &init, &target, &backing, &ends);
  uint64_t ino = 0;
  if (rc == 0) rc = sw_set_node(st->server, (uint64_t)parent, name, &init, &ino);
  else rc = -EINVAL;
  free(target);
  free(backing);
  free(ends);
  if (rc != 0) return throw_errno(env, -rc, "setNode");
  napi_value result;
  napi_create_double(env, (double)ino, &result);
  return result;
}

static state *numbers(napi_env env, napi_callback_info info, size_t want, double *out, napi_value *rest);

/* (server, ino, init): applies `init` to the inode with `apply` (sw_update_node or sw_set_content) */
static napi_value node_call(napi_env env, napi_callback_info info, int kind, int (*apply)(sw_server *, uint64_t, const sw_node_init *), const char *what) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  state *st = argc == 3 ? unwrap(env, argv[0]) : NULL;
  if (st == NULL) return NULL;
  double ino = 0;
  napi_get_value_double(env, argv[1], &ino);
  sw_node_init init;
  char *target, *backing;
  uint64_t *ends;
  int rc = node_init_from(env, argv[2], &init, &target, &backing, &ends);
  if (kind != 0) init.kind = kind;
  rc = rc == 0 ? apply(st->server, (uint64_t)ino, &init) : -EINVAL;
  free(target);
  free(backing);
  free(ends);
  if (rc != 0) return throw_errno(env, -rc, what);
  return NULL;
}

/* setContent(server, ino, { size, backingPath, backingDev, backingIno, backingBirthNs, complete, chunkEnds }) */
static napi_value js_set_content(napi_env env, napi_callback_info info) {
  return node_call(env, info, SW_FILE, sw_set_content, "setContent");
}

/* evict(server, ino, parentIno, name): the files under `ino` are gone from the store; the kernel forgets them and the entry `name` */
static napi_value js_evict(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value name_value;
  state *st = numbers(env, info, 2, a, &name_value);
  if (st == NULL) return NULL;
  char name[256] = "";
  size_t length = 0;
  if (name_value != NULL && napi_get_value_string_utf8(env, name_value, name, sizeof name, &length) != napi_ok) name[0] = '\0';
  size_t capacity = 4096, count = 0;
  inval_job *job = NULL;
  for (;;) {
    free(job);
    job = malloc(sizeof *job + capacity * sizeof job->inos[0]);
    if (job == NULL) break;
    /* evicting again is harmless: a bigger model is walked twice */
    count = sw_evict(st->server, (uint64_t)a[0], job->inos, capacity);
    if (count <= capacity) break;
    capacity = count;
  }
  if (job == NULL) count = sw_evict(st->server, (uint64_t)a[0], NULL, 0);
  if (job != NULL) {
    job->fd = st->session_fd;
    job->parent = (uint64_t)a[1];
    job->count = count;
    snprintf(job->name, sizeof job->name, "%s", name);
    pthread_t thread;
    if (pthread_create(&thread, NULL, invalidate, job) == 0) pthread_detach(thread);
    else free(job);
  }
  napi_value result;
  napi_create_double(env, (double)count, &result);
  return result;
}

static napi_value js_update_node(napi_env env, napi_callback_info info) {
  return node_call(env, info, 0, sw_update_node, "updateNode");
}

/* numbers(server, a, b, …): the leading numeric arguments */
static state *numbers(napi_env env, napi_callback_info info, size_t want, double *out, napi_value *rest) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want + 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "missing arguments");
    return NULL;
  }
  state *st = unwrap(env, argv[0]);
  if (st == NULL) return NULL;
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_double(env, argv[i + 1], &out[i]) != napi_ok || !(out[i] >= 0)) {
      napi_throw_type_error(env, "ERR_INVALID_ARG", "arguments must be non-negative numbers");
      return NULL;
    }
  }
  if (rest != NULL) *rest = argc > want + 1 ? argv[want + 1] : NULL;
  return st;
}

static napi_value rc_result(napi_env env, int rc, const char *what) {
  if (rc != 0) return throw_errno(env, -rc, what);
  return NULL;
}

static napi_value js_set_complete(napi_env env, napi_callback_info info) {
  double a[1];
  state *st = numbers(env, info, 1, a, NULL);
  return st == NULL ? NULL : rc_result(env, sw_set_complete(st->server, (uint64_t)a[0]), "setComplete");
}

static napi_value js_mark_present(napi_env env, napi_callback_info info) {
  double a[3];
  state *st = numbers(env, info, 3, a, NULL);
  return st == NULL ? NULL : rc_result(env, sw_mark_present(st->server, (uint64_t)a[0], (uint64_t)a[1], (uint64_t)a[2]), "markPresent");
}

static napi_value js_set_statfs(napi_env env, napi_callback_info info) {
  double a[2];
  state *st = numbers(env, info, 2, a, NULL);
  if (st == NULL) return NULL;
  sw_statfs statfs = { .blocks = (uint64_t)a[0], .files = (uint64_t)a[1], .bsize = 4096 };
  sw_set_statfs(st->server, &statfs);
  return NULL;
}

/* Replies are best effort: a request the kernel gave up on (interrupted) is simply gone. */
static napi_value reply_result(napi_env env, int rc) {
  napi_value result;
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

static napi_value js_reply_error(napi_env env, napi_callback_info info) {
  double a[3];
  state *st = numbers(env, info, 3, a, NULL);
  return st == NULL ? NULL : reply_result(env, sw_reply_error(st->server, (uint32_t)a[0], (uint64_t)a[1], (int)a[2]));
}

static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  double a[3];
  state *st = numbers(env, info, 3, a, NULL);
  return st == NULL ? NULL : reply_result(env, sw_reply_entry(st->server, (uint32_t)a[0], (uint64_t)a[1], (uint64_t)a[2]));
}

static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  double a[3];
  state *st = numbers(env, info, 3, a, NULL);
  return st == NULL ? NULL : reply_result(env, sw_reply_open(st->server, (uint32_t)a[0], (uint64_t)a[1], (uint64_t)a[2]));
}

static napi_value js_reply_local(napi_env env, napi_callback_info info) {
  double a[2];
  state *st = numbers(env, info, 2, a, NULL);
  return st == NULL ? NULL : reply_result(env, sw_reply_local(st->server, (uint32_t)a[0], (uint64_t)a[1]));
}

static napi_value js_reply_data(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value buffer;
  state *st = numbers(env, info, 2, a, &buffer);
  if (st == NULL) return NULL;
  void *data = NULL;
  size_t length = 0;
  bool is_typed = false;
  napi_typedarray_type type;
  napi_value arraybuffer;
  size_t offset;
  if (buffer == NULL || napi_is_typedarray(env, buffer, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, buffer, &type, &length, &data, &arraybuffer, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "replyData(server, token, unique, Uint8Array)");
    return NULL;
  }
  return reply_result(env, sw_reply_data(st->server, (uint32_t)a[0], (uint64_t)a[1], data, length));
}

static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value list;
  state *st = numbers(env, info, 2, a, &list);
  if (st == NULL) return NULL;
  bool is_array = false;
  if (list == NULL || napi_is_array(env, list, &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "replyDir(server, token, unique, names)");
    return NULL;
  }
  uint32_t count = 0;
  napi_get_array_length(env, list, &count);
  char **names = calloc(count + 1, sizeof *names);
  int rc = names == NULL ? -ENOMEM : 0;
  for (uint32_t i = 0; rc == 0 && i < count; i++) {
    napi_value item;
    size_t length = 0;
    napi_get_element(env, list, i, &item);
    if (napi_get_value_string_utf8(env, item, NULL, 0, &length) != napi_ok) {
      rc = -EINVAL;
      break;
    }
    names[i] = malloc(length + 1);
    if (names[i] == NULL) rc = -ENOMEM;
    else napi_get_value_string_utf8(env, item, names[i], length + 1, &length);
  }
  if (rc == 0) rc = sw_reply_dir(st->server, (uint32_t)a[0], (uint64_t)a[1], (const char *const *)names, count);
  for (uint32_t i = 0; names != NULL && i < count; i++) free(names[i]);
  free(names);
  if (rc == -EINVAL) {
    napi_throw_range_error(env, "ERR_INVALID_ARG", "replyDir: a name is empty, too long or contains '/'");
    return NULL;
  }
  return reply_result(env, rc);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  double none[1];
  state *st = numbers(env, info, 0, none, NULL);
  if (st == NULL) return NULL;
  sw_stats stats;
  sw_get_stats(st->server, &stats);
  napi_value obj, passthrough;
  napi_create_object(env, &obj);
  set_number(env, obj, "requests", (double)stats.requests);
  set_number(env, obj, "reads", (double)stats.reads);
  set_number(env, obj, "readsForwarded", (double)stats.reads_host);
  set_number(env, obj, "bytesReadLocally", (double)stats.bytes_local);
  set_number(env, obj, "lookupsForwarded", (double)stats.lookups_host);
  set_number(env, obj, "opensPassthrough", (double)stats.opens_passthrough);
  set_number(env, obj, "opensLocal", (double)stats.opens_local);
  set_number(env, obj, "opensForwarded", (double)stats.opens_host);
  set_number(env, obj, "malformed", (double)stats.malformed);
  set_number(env, obj, "requestTimeouts", (double)stats.timeouts);
  set_number(env, obj, "staleBacking", (double)stats.stale_backing);
  set_number(env, obj, "evictions", (double)stats.evictions);
  set_number(env, obj, "readsSpliced", (double)stats.reads_spliced);
  napi_get_boolean(env, stats.passthrough != 0, &passthrough);
  napi_set_named_property(env, obj, "passthrough", passthrough);
  napi_value splice_reads;
  napi_get_boolean(env, stats.splice_reads != 0, &splice_reads);
  napi_set_named_property(env, obj, "spliceReads", splice_reads);
  return obj;
}

/* unref(server): the mount no longer keeps the process alive (threads serving files still held open may go on) */
static napi_value js_unref(napi_env env, napi_callback_info info) {
  double none[1];
  state *st = numbers(env, info, 0, none, NULL);
  if (st == NULL) return NULL;
  if (!st->unrefed) {
    st->unrefed = 1;
    napi_unref_threadsafe_function(env, st->tsfn);
  }
  return NULL;
}

/* unmount(mountpoint): a lazy unmount (MNT_DETACH), so files still held do not block it */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t length = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "unmount(mountpoint)");
    return NULL;
  }
  if (umount2(path, MNT_DETACH) != 0) return throw_errno(env, errno, "umount2");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
    { "mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL },
    { "setNode", NULL, js_set_node, NULL, NULL, NULL, napi_default, NULL },
    { "updateNode", NULL, js_update_node, NULL, NULL, NULL, napi_default, NULL },
    { "setComplete", NULL, js_set_complete, NULL, NULL, NULL, napi_default, NULL },
    { "setContent", NULL, js_set_content, NULL, NULL, NULL, napi_default, NULL },
    { "evict", NULL, js_evict, NULL, NULL, NULL, napi_default, NULL },
    { "markPresent", NULL, js_mark_present, NULL, NULL, NULL, napi_default, NULL },
    { "setStatfs", NULL, js_set_statfs, NULL, NULL, NULL, napi_default, NULL },
    { "replyError", NULL, js_reply_error, NULL, NULL, NULL, napi_default, NULL },
    { "replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL },
    { "replyOpen", NULL, js_reply_open, NULL, NULL, NULL, napi_default, NULL },
    { "replyData", NULL, js_reply_data, NULL, NULL, NULL, napi_default, NULL },
    { "replyLocal", NULL, js_reply_local, NULL, NULL, NULL, napi_default, NULL },
    { "replyDir", NULL, js_reply_dir, NULL, NULL, NULL, napi_default, NULL },
    { "stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL },
    { "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL },
    { "unref", NULL, js_unref, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
