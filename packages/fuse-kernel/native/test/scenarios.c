/*
 * Drives the server through sequences a kernel and a store really produce, and checks every
 * reply it writes (on a socketpair, one message per reply):
 *
 * - the name table under many names: rehashes while names are added, then lookups of every
 *   name and of names that are not there (a node linked to itself once made these spin);
 * - a complete file whose store file is replaced at the same path (a model evicted and added
 *   back as a new, sparse file), with and without the host saying so, while open and while
 *   closed: every read answers the model's bytes or EIO, never the new file's zeros; handles
 *   opened before keep their file;
 * - the deadline: a request passed to the host and never answered gets EIO, and the late answer
 *   is refused;
 * - the hold on a model: a walk that opens and closes its files one after another tells the host
 *   once when the first opens and once when none has been open for the grace, never while one is.
 *
 *   scenarios <scratch dir>
 *
 * Prints "ok" and exits 0, or names the failed check and exits 1. Built with AddressSanitizer
 * and UndefinedBehaviorSanitizer by the package's tests.
 */
#define _GNU_SOURCE
#include "../server.h"
#include "../protocol.h"
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define SIZE (3u << 20)
#define MAX_UPCALLS 64

static sw_upcall *upcalls[MAX_UPCALLS];
static size_t nupcalls;
static int failures;
static uint64_t next_unique = 1;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      failures++;                                          \
    }                                                      \
  } while (0)

static void on_upcall(void *ctx, sw_upcall *u) {
  (void)ctx;
  if (nupcalls < MAX_UPCALLS) upcalls[nupcalls++] = u;
  else free(u);
}

/* the last upcall of `kind` passed up since the last call, or NULL; the caller frees it */
static sw_upcall *take_upcall(int kind) {
  sw_upcall *found = NULL;
  for (size_t i = 0; i < nupcalls; i++) {
    if (upcalls[i]->kind == kind && found == NULL) found = upcalls[i];
    else free(upcalls[i]);
  }
  nupcalls = 0;
  return found;
}

static uint8_t *request_buf;
static uint8_t *scratch;
static size_t scratch_len;
static uint8_t reply[(1u << 20) + 4096];

/* Sends one request; returns its unique. */
static uint64_t send_request(sw_server *s, int fd, uint32_t opcode, uint64_t nodeid, const void *body, size_t blen) {
  struct fuse_in_header in = { .len = (uint32_t)(sizeof in + blen), .opcode = opcode, .unique = next_unique++, .nodeid = nodeid };
  memcpy(request_buf, &in, sizeof in);
  if (blen > 0) memcpy(request_buf + sizeof in, body, blen);
  sw_handle(s, fd, request_buf, sizeof in + blen, scratch, scratch_len);
  return in.unique;
}

/* The next reply on `peer` (non-blocking): its length, or -1 when there is none. */
static ssize_t next_reply(int peer, struct fuse_out_header *out) {
  ssize_t got = recv(peer, reply, sizeof reply, MSG_DONTWAIT);
  if (got < (ssize_t)sizeof *out) return -1;
  memcpy(out, reply, sizeof *out);
  return got;
}

static uint64_t do_open(sw_server *s, int fd, int peer, uint64_t ino, int *error) {
  struct fuse_open_in o = { .flags = O_RDONLY };
  uint64_t unique = send_request(s, fd, FUSE_OPEN, ino, &o, sizeof o);
  struct fuse_out_header out;
  if (next_reply(peer, &out) < 0) {
    *error = -1; /* no reply yet: passed up */
    return 0;
  }
  *error = -out.error;
  struct sw_open_out open_out;
  memcpy(&open_out, reply + sizeof out, sizeof open_out);
  return out.unique == unique && out.error == 0 ? open_out.fh : 0;
}

/* READ of [offset, offset + size): 0 with the bytes in `reply` after the header, -errno, or 1 when passed up */
static int do_read(sw_server *s, int fd, int peer, uint64_t ino, uint64_t fh, uint64_t offset, uint32_t size, const uint8_t **data) {
  struct fuse_read_in r = { .fh = fh, .offset = offset, .size = size };
  send_request(s, fd, FUSE_READ, ino, &r, sizeof r);
  struct fuse_out_header out;
  ssize_t got = next_reply(peer, &out);
  if (got < 0) return 1;
  if (out.error != 0) return out.error;
  *data = reply + sizeof out;
  return (size_t)got - sizeof out == size ? 0 : -EIO;
}

static void write_file(const char *path, const uint8_t *bytes, size_t size, int sparse) {
  int f = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (f < 0 || (sparse ? ftruncate(f, (off_t)size) : (write(f, bytes, size) == (ssize_t)size ? 0 : -1)) != 0) {
    perror(path);
    exit(2);
  }
  close(f);
}

/*
 * Replaces the file at `path` with a new, empty (sparse) one, as a store that evicts a model and
 * adds it back does. Made beside it and renamed over it, so the two exist at once and the new one
 * cannot get the old one's inode number: unlinked first, the number could be reused within the
 * same tick of the file system's clock, and the two would be the same file to anyone who looks.
 */
static void replace_with_sparse(const char *path, size_t size) {
  char fresh[4200];
  snprintf(fresh, sizeof fresh, "%s.new", path);
  write_file(fresh, NULL, size, 1);
  if (rename(fresh, path) != 0) {
    perror(fresh);
    exit(2);
  }
}

/* A read through `fh` must give the model's bytes, or EIO; never other bytes. Passed-up reads are answered by the "host" with the right bytes. */
static void expect_model_bytes(sw_server *s, int fd, int peer, uint64_t ino, uint64_t fh, const uint8_t *model, const char *what) {
  for (uint64_t offset = 0; offset < SIZE; offset += 1u << 20) {
    const uint8_t *data = NULL;
    int rc = do_read(s, fd, peer, ino, fh, offset, 1u << 20, &data);
    if (rc == 1) {
      sw_upcall *u = take_upcall(SW_UP_READ);
      CHECK(u != NULL, "%s: a read was neither answered nor passed up", what);
      if (u == NULL) continue;
      CHECK(u->offset == offset, "%s: passed up the wrong range", what);
      sw_reply_data(s, u->token, u->unique, model + u->offset, u->size);
      free(u);
      struct fuse_out_header out;
      ssize_t got = next_reply(peer, &out);
      CHECK(got == (ssize_t)(sizeof out + (1u << 20)) && memcmp(reply + sizeof out, model + offset, 1u << 20) == 0, "%s: the host's bytes did not reach the reader", what);
    } else if (rc == 0) {
      CHECK(memcmp(data, model + offset, 1u << 20) == 0, "%s: wrong bytes at %llu (zeros from the replaced file?)", what, (unsigned long long)offset);
    } else {
      CHECK(rc == -EIO, "%s: read failed with %d, not EIO", what, rc);
    }
  }
}

static void names_scenario(sw_server *s, int fd, int peer) {
  uint64_t root;
  sw_node_init dir = { .kind = SW_DIR, .mode = 0555, .entry_timeout = 60, .attr_timeout = 60 };
  CHECK(sw_set_node(s, SW_ROOT_INO, "names", &dir, &root) == 0, "names directory");
  uint64_t dirs[16];
  char name[64];
  for (int d = 0; d < 16; d++) {
    snprintf(name, sizeof name, "d%d", d);
    CHECK(sw_set_node(s, root, name, &dir, &dirs[d]) == 0, "directory %d", d);
  }
  sw_node_init file = { .kind = SW_FILE, .mode = 0444, .size = 1 };
  uint64_t ino;
  /* 20,000 names: the table doubles many times while they are added */
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "shard_%d.zarr", i);
    CHECK(sw_set_node(s, dirs[i % 16], name, &file, &ino) == 0, "file %d", i);
  }
  for (int i = 0; i < 20000; i++) {
    for (int missing = 0; missing < 2; missing++) {
      snprintf(name, sizeof name, missing ? "absent_%d" : "shard_%d.zarr", i);
      send_request(s, fd, FUSE_LOOKUP, dirs[i % 16], name, strlen(name) + 1);
      struct fuse_out_header out;
      struct fuse_entry_out e;
      ssize_t got = next_reply(peer, &out);
      memcpy(&e, reply + sizeof out, sizeof e);
      CHECK(got == (ssize_t)(sizeof out + sizeof e) && out.error == 0 && (missing ? e.nodeid == 0 : e.nodeid != 0), "lookup of %s", name);
    }
  }
}

static void replaced_scenario(sw_server *s, int fd, int peer, const char *dir, int tell) {
  static uint8_t model[SIZE];
  for (size_t i = 0; i < SIZE; i++) model[i] = (uint8_t)(i * 131 + 7 + tell);
  char path[4096];
  snprintf(path, sizeof path, "%s/content-%d", dir, tell);
  write_file(path, model, SIZE, 0);
  uint64_t ends[3] = { 1u << 20, 2u << 20, 3u << 20 };
  sw_node_init init = { .kind = SW_FILE, .mode = 0444, .size = SIZE, .backing_path = path, .identity = identity_of(path), .complete = 1 };
  uint64_t ino;
  char name[32];
  snprintf(name, sizeof name, "model-%d.bin", tell);
  CHECK(sw_set_node(s, SW_ROOT_INO, name, &init, &ino) == 0, "file node");
  int error;
  uint64_t before = do_open(s, fd, peer, ino, &error);
  CHECK(before != 0, "open of the complete file was not served here (%d)", error);
  expect_model_bytes(s, fd, peer, ino, before, model, "before eviction");

  /* evicted and added back: the same path now names a new, empty file */
  replace_with_sparse(path, SIZE);
  if (tell) {
    uint64_t inos[4];
    CHECK(sw_evict(s, ino, inos, 4) == 1 && inos[0] == ino, "eviction of one file");
    sw_node_init again = { .kind = SW_FILE, .size = SIZE, .backing_path = path, .identity = identity_of(path), .chunk_ends = ends, .nchunks = 3 };
    CHECK(sw_set_content(s, ino, &again) == 0, "the new content file");
  }
  /* the handle opened before keeps the file it opened, which has every byte */
  expect_model_bytes(s, fd, peer, ino, before, model, tell ? "old handle, host told" : "old handle, host not told");

  /* a new open must not read the new file as if it were complete: it goes to the host */
  uint64_t after = do_open(s, fd, peer, ino, &error);
  sw_upcall *u = take_upcall(SW_UP_OPEN);
  if (after != 0) {
    /* served here: only from the file opened before (still open), never from the new one */
    CHECK(!tell, "a new open was served here after the host said the file was gone");
    expect_model_bytes(s, fd, peer, ino, after, model, "new handle served here");
    struct fuse_release_in rel = { .fh = after };
    struct fuse_out_header out;
    send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
    next_reply(peer, &out);
  } else {
    CHECK(error == -1 && u != NULL, "a new open failed (%d) instead of going to the host", error);
  }
  if (u != NULL) {
    sw_reply_open(s, u->token, u->unique, 42);
    free(u);
    struct fuse_out_header out;
    struct sw_open_out open_out;
    CHECK(next_reply(peer, &out) > 0 && out.error == 0, "the host's open did not reach the opener");
    memcpy(&open_out, reply + sizeof out, sizeof open_out);
    expect_model_bytes(s, fd, peer, ino, open_out.fh, model, tell ? "new handle, host told" : "new handle, host not told");
    struct fuse_release_in rel = { .fh = open_out.fh };
    send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
    next_reply(peer, &out);
  }
  struct fuse_release_in rel = { .fh = before };
  send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
  struct fuse_out_header out;
  next_reply(peer, &out);
  (void)take_upcall(0);

  /* a file replaced by one with the very same inode number (reused) is told apart by its birth time */
  sw_identity old = identity_of(path);
  old.birth_ns += 1;
  sw_node_init reused = { .kind = SW_FILE, .mode = 0444, .size = SIZE, .backing_path = path, .identity = old, .complete = 1 };
  CHECK(sw_set_content(s, ino, &reused) == 0, "set content");
  if (old.birth_ns > 1) {
    do_open(s, fd, peer, ino, &error);
    CHECK(error == -1, "a file with another birth time was served as complete");
    u = take_upcall(SW_UP_OPEN);
    if (u != NULL) {
      sw_reply_error(s, u->token, u->unique, ENOENT);
      free(u);
      next_reply(peer, &out);
    }
  }
  unlink(path);
}

/* The finding as it was: complete, opened and closed, evicted and added back as sparse, opened again without a word to the server. */
static void replaced_while_closed_scenario(sw_server *s, int fd, int peer, const char *dir) {
  static uint8_t model[SIZE];
  for (size_t i = 0; i < SIZE; i++) model[i] = (uint8_t)(i * 17 + 3);
  char path[4096];
  snprintf(path, sizeof path, "%s/content-closed", dir);
  write_file(path, model, SIZE, 0);
  sw_node_init init = { .kind = SW_FILE, .mode = 0444, .size = SIZE, .backing_path = path, .identity = identity_of(path), .complete = 1 };
  uint64_t ino;
  CHECK(sw_set_node(s, SW_ROOT_INO, "closed.bin", &init, &ino) == 0, "file node");
  int error;
  uint64_t fh = do_open(s, fd, peer, ino, &error);
  CHECK(fh != 0, "open of the complete file");
  expect_model_bytes(s, fd, peer, ino, fh, model, "first open");
  struct fuse_release_in rel = { .fh = fh };
  struct fuse_out_header out;
  send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
  next_reply(peer, &out);
  (void)take_upcall(0);
  replace_with_sparse(path, SIZE);
  fh = do_open(s, fd, peer, ino, &error);
  CHECK(fh == 0 && error == -1, "the replaced file was opened as the complete one");
  sw_upcall *u = take_upcall(SW_UP_OPEN);
  if (u != NULL) {
    sw_reply_open(s, u->token, u->unique, 9);
    free(u);
    struct sw_open_out open_out;
    next_reply(peer, &out);
    memcpy(&open_out, reply + sizeof out, sizeof open_out);
    expect_model_bytes(s, fd, peer, ino, open_out.fh, model, "after replacement");
    rel.fh = open_out.fh;
    send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
    next_reply(peer, &out);
  }
  (void)take_upcall(0);
  unlink(path);
}

static void deadline_scenario(sw_server *s, int fd, int peer, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/lazy", dir);
  write_file(path, NULL, SIZE, 1);
  uint64_t ends[3] = { 1u << 20, 2u << 20, 3u << 20 };
  sw_node_init init = { .kind = SW_FILE, .mode = 0444, .size = SIZE, .backing_path = path, .identity = identity_of(path), .chunk_ends = ends, .nchunks = 3 };
  uint64_t ino;
  CHECK(sw_set_node(s, SW_ROOT_INO, "lazy.bin", &init, &ino) == 0, "lazy node");
  int error;
  do_open(s, fd, peer, ino, &error);
  sw_upcall *u = take_upcall(SW_UP_OPEN);
  CHECK(error == -1 && u != NULL, "the open of a file not local was not passed up");
  if (u == NULL) return;
  sw_reply_open(s, u->token, u->unique, 7);
  free(u);
  struct fuse_out_header out;
  struct sw_open_out open_out;
  next_reply(peer, &out);
  memcpy(&open_out, reply + sizeof out, sizeof open_out);
  const uint8_t *data;
  CHECK(do_read(s, fd, peer, ino, open_out.fh, 0, 4096, &data) == 1, "the read was not passed up");
  u = take_upcall(SW_UP_READ);
  CHECK(u != NULL, "no read upcall");
  /* before the deadline nothing happens; after it the reader gets EIO, once */
  CHECK(sw_expire(s, sw_now_ns()) == 0, "expired before its deadline");
  CHECK(next_reply(peer, &out) < 0, "answered before its deadline");
  CHECK(sw_expire(s, sw_now_ns() + 3000000000ull) == 1, "not expired after its deadline");
  CHECK(next_reply(peer, &out) > 0 && out.error == -EIO, "the reader did not get EIO at the deadline");
  CHECK(sw_expire(s, sw_now_ns() + 6000000000ull) == 0, "expired twice");
  if (u != NULL) {
    CHECK(sw_reply_data(s, u->token, u->unique, "late", 4) == -ENOENT, "a late answer was taken");
    free(u);
  }
  CHECK(next_reply(peer, &out) < 0, "a second reply reached the kernel");
  /* an open that is never answered ends too, and does not leave the file counted as open */
  do_open(s, fd, peer, ino, &error);
  CHECK(sw_expire(s, sw_now_ns() + 3000000000ull) == 1, "open not expired");
  CHECK(next_reply(peer, &out) > 0 && out.error == -EIO, "the opener did not get EIO");
  sw_stats stats;
  sw_get_stats(s, &stats);
  CHECK(stats.timeouts == 2, "timeouts counted: %llu", (unsigned long long)stats.timeouts);
  (void)take_upcall(0);
  struct fuse_release_in rel = { .fh = open_out.fh };
  send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
  next_reply(peer, &out);
  (void)take_upcall(0);
  unlink(path);
}

/* How many upcalls of `kind` were passed up since the last call (all are freed); the inode of the last in `ino`. */
static size_t count_upcalls(int kind, uint64_t *ino) {
  size_t count = 0;
  for (size_t i = 0; i < nupcalls; i++) {
    if (upcalls[i]->kind == kind) {
      count++;
      if (ino != NULL) *ino = upcalls[i]->ino;
    }
    free(upcalls[i]);
  }
  nupcalls = 0;
  return count;
}

static void release(sw_server *s, int fd, int peer, uint64_t ino, uint64_t fh) {
  struct fuse_release_in rel = { .fh = fh };
  struct fuse_out_header out;
  send_request(s, fd, FUSE_RELEASE, ino, &rel, sizeof rel);
  CHECK(next_reply(peer, &out) > 0 && out.error == 0, "RELEASE");
}

/* `s` has a hold grace of 2 s */
static void hold_scenario(sw_server *s, int fd, int peer, const char *dir) {
  static uint8_t bytes[4096];
  char path[4096];
  snprintf(path, sizeof path, "%s/small", dir);
  write_file(path, bytes, sizeof bytes, 0);
  sw_node_init model_init = { .kind = SW_DIR, .mode = 0555 };
  uint64_t model, sub, files[3];
  CHECK(sw_set_node(s, SW_ROOT_INO, "model", &model_init, &model) == 0, "model directory");
  CHECK(sw_set_node(s, model, "sub", &model_init, &sub) == 0, "directory in the model");
  sw_node_init init = { .kind = SW_FILE, .mode = 0444, .size = sizeof bytes, .backing_path = path, .identity = identity_of(path), .complete = 1 };
  const char *names[3] = { "a", "b", "c" };
  for (int i = 0; i < 3; i++) CHECK(sw_set_node(s, i == 0 ? model : sub, names[i], &init, &files[i]) == 0, "file node");
  (void)count_upcalls(0, NULL);
  uint64_t told = 0;
  int error;
  /* a walk: each file opened and released before the next */
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 3; i++) {
      uint64_t fh = do_open(s, fd, peer, files[i], &error);
      CHECK(fh != 0, "open of a complete file in the model");
      release(s, fd, peer, files[i], fh);
    }
  }
  CHECK(count_upcalls(SW_EV_OPENED, &told) == 1 && told == files[0], "the host was told of the model's first open once, with the file");
  sw_expire(s, sw_now_ns());
  CHECK(count_upcalls(SW_EV_CLOSED, NULL) == 0, "the model was let go within the grace");
  /* an open file keeps it held whatever the time */
  uint64_t fh = do_open(s, fd, peer, files[2], &error);
  sw_expire(s, sw_now_ns() + 10000000000ull);
  CHECK(count_upcalls(SW_EV_CLOSED, NULL) == 0 && count_upcalls(SW_EV_OPENED, NULL) == 0, "the host heard of an open of a held model, or it was let go with a file open");
  release(s, fd, peer, files[2], fh);
  sw_expire(s, sw_now_ns() + 1000000000ull);
  CHECK(count_upcalls(SW_EV_CLOSED, NULL) == 0, "the model was let go within the grace");
  sw_expire(s, sw_now_ns() + 3000000000ull);
  CHECK(count_upcalls(SW_EV_CLOSED, &told) == 1 && told == model, "the model was not let go once, by its inode, after the grace");
  sw_expire(s, sw_now_ns() + 6000000000ull);
  CHECK(count_upcalls(SW_EV_CLOSED, NULL) == 0, "the model was let go twice");
  /* and the next open holds it again */
  fh = do_open(s, fd, peer, files[1], &error);
  CHECK(count_upcalls(SW_EV_OPENED, &told) == 1 && told == files[1], "a model let go was not held again on its next open");
  release(s, fd, peer, files[1], fh);
  sw_expire(s, sw_now_ns() + 3000000000ull);
  CHECK(count_upcalls(SW_EV_CLOSED, &told) == 1 && told == model, "the model was not let go after its second hold");
  unlink(path);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: scenarios <scratch dir>\n");
    return 2;
  }
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) return 2;
  int bufsize = 8 << 20;
  setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
  sw_options options = { .max_read = 1u << 20, .passthrough = 1, .max_stack_depth = 1, .root_timeout = 1, .request_timeout = 2 };
  sw_host host = { .upcall = on_upcall, .ctx = NULL };
  sw_server *s = sw_server_new(&options, &host);
  if (s == NULL) return 2;
  scratch_len = sw_scratch_size(s);
  scratch = malloc(scratch_len);
  request_buf = malloc(1u << 16);
  struct sw_init_in init = { .major = 7, .minor = 45, .max_readahead = 1 << 20, .flags = FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_MAX_PAGES, .flags2 = SW_FUSE_PASSTHROUGH_FLAGS2 };
  send_request(s, pair[0], FUSE_INIT, 0, &init, sizeof init);
  struct fuse_out_header out;
  CHECK(next_reply(pair[1], &out) > 0 && out.error == 0, "INIT");

  names_scenario(s, pair[0], pair[1]);
  replaced_scenario(s, pair[0], pair[1], argv[1], 0);
  replaced_scenario(s, pair[0], pair[1], argv[1], 1);
  replaced_while_closed_scenario(s, pair[0], pair[1], argv[1]);
  deadline_scenario(s, pair[0], pair[1], argv[1]);
  {
    sw_options held = options;
    held.hold_grace = 2;
    sw_server *hs = sw_server_new(&held, &host);
    if (hs == NULL) return 2;
    send_request(hs, pair[0], FUSE_INIT, 0, &init, sizeof init);
    CHECK(next_reply(pair[1], &out) > 0 && out.error == 0, "INIT");
    hold_scenario(hs, pair[0], pair[1], argv[1]);
    (void)count_upcalls(0, NULL);
    sw_server_free(hs);
  }

  sw_stats stats;
  sw_get_stats(s, &stats);
  CHECK(stats.stale_backing >= 2, "stale backing files counted: %llu", (unsigned long long)stats.stale_backing);
  (void)take_upcall(0);
  sw_server_free(s);
  free(scratch);
  free(request_buf);
  close(pair[0]);
  close(pair[1]);
  if (failures > 0) return 1;
  printf("ok\n");
  return 0;
}
