/*
 * A coverage-guided fuzz target for the request parser and what it reaches (server.c, nodes.c,
 * requests.c), for libFuzzer:
 *
 *   clang -fsanitize=fuzzer,address,undefined native/test/fuzz.c native/server.c native/nodes.c native/requests.c -o fuzz
 *   ./fuzz -max_total_time=60 work-corpus native/test/corpus
 *
 * and, built with -DSW_FUZZ_STANDALONE by any C compiler, a runner that feeds it the files
 * named on its command line (the package's tests run the committed corpus that way under gcc's
 * sanitizers).
 *
 * Each input is a fresh server with a small tree (a dynamic directory, a model directory with a
 * complete file, a file being filled and a link) after a well-formed INIT, then a sequence of
 * records:
 *
 *   [op] [len lo] [len hi] [len bytes]   op < 0x80: the bytes are one request, as read from
 *                                        /dev/fuse (their header may lie about their length)
 *   [op]                                 op >= 0x80: the host answers what is pending, in a way
 *                                        op picks (right, wrong token, error, data, local, never)
 *
 * Node ids are fixed: 1 root, 2 by-cid, 3 the model, 4 whole.bin, 5 part.bin, 6 the link.
 * Replies go to /dev/null.
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
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MAX_UPCALLS 256
#define BACKING_SIZE (2u << 20)

static sw_upcall *upcalls[MAX_UPCALLS];
static size_t nupcalls;
static char backing[256];
static sw_identity identity;
static int devnull = -1;
static uint8_t *scratch;

static void on_upcall(void *ctx, sw_upcall *u) {
  (void)ctx;
  if (nupcalls < MAX_UPCALLS) upcalls[nupcalls++] = u;
  else free(u);
}

static void remove_backing(void) {
  unlink(backing);
}

static void setup_once(void) {
  if (devnull >= 0) return;
  atexit(remove_backing);
  devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  snprintf(backing, sizeof backing, "/tmp/swarm-fuzz-backing-%d", (int)getpid());
  int fd = open(backing, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  static uint8_t content[BACKING_SIZE];
  for (size_t i = 0; i < sizeof content; i++) content[i] = (uint8_t)(i * 7);
  if (fd < 0 || write(fd, content, sizeof content) != (ssize_t)sizeof content) abort();
  close(fd);
  identity = identity_of(backing);
  if (identity.ino == 0) abort();
  scratch = malloc(1u << 20);
}

/* Answers every pending upcall as `how` says; the well-formed answer always follows, so none stays pending. */
static void answer(sw_server *s, uint8_t how) {
  static const char *names[] = { "a", "b" };
  static uint8_t data[8192];
  for (size_t i = 0; i < nupcalls; i++) {
    sw_upcall *u = upcalls[i];
    uint32_t token = (how & 1) ? u->token ^ (how >> 1) : u->token;
    switch ((how >> 4) & 7) {
      case 0: sw_reply_error(s, token, u->unique, (int)(how & 0x0f) + 1); break;
      case 1: sw_reply_entry(s, token, u->unique, how & 7); break;
      case 2: sw_reply_open(s, token, u->unique, how); break;
      case 3: sw_reply_data(s, token, u->unique, data, u->size < sizeof data ? u->size : sizeof data); break;
      case 4: sw_reply_local(s, token, u->unique); break;
      case 5: sw_reply_dir(s, token, u->unique, names, 2); break;
      case 6: sw_expire(s, sw_now_ns() + 10000000000ull); break;
      default: break;
    }
    switch (u->kind) {
      case SW_UP_LOOKUP: sw_reply_entry(s, u->token, u->unique, 4); break;
      case SW_UP_OPENDIR: sw_reply_dir(s, u->token, u->unique, names, 2); break;
      case SW_UP_OPEN: sw_reply_open(s, u->token, u->unique, 1); break;
      case SW_UP_READ:
        if (sw_reply_local(s, u->token, u->unique) != 0) sw_reply_data(s, u->token, u->unique, data, u->size < sizeof data ? u->size : sizeof data);
        break;
      default: break;
    }
    free(u);
  }
  nupcalls = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
  setup_once();
  sw_options options = { .max_read = 1u << 20, .passthrough = 1, .max_stack_depth = 1, .root_timeout = 1, .request_timeout = 5 };
  sw_host host = { .upcall = on_upcall, .ctx = NULL };
  sw_server *s = sw_server_new(&options, &host);
  if (s == NULL) return 0;
  uint64_t by_cid, model, whole, part, link;
  uint64_t ends[2] = { 1u << 20, 2u << 20 };
  sw_node_init dynamic_dir = { .kind = SW_DIR, .mode = 0555, .dynamic = 1, .entry_timeout = 1, .attr_timeout = 1 };
  sw_node_init dir = { .kind = SW_DIR, .mode = 0555, .entry_timeout = 60, .attr_timeout = 60 };
  sw_node_init complete = { .kind = SW_FILE, .mode = 0444, .size = BACKING_SIZE, .backing_path = backing, .identity = identity, .complete = 1 };
  sw_node_init filling = { .kind = SW_FILE, .mode = 0444, .size = BACKING_SIZE, .backing_path = backing, .identity = identity, .chunk_ends = ends, .nchunks = 2 };
  sw_node_init lnk = { .kind = SW_LINK, .mode = 0777, .target = "by-cid/m" };
  if (sw_set_node(s, SW_ROOT_INO, "by-cid", &dynamic_dir, &by_cid) || sw_set_node(s, by_cid, "m", &dir, &model) ||
      sw_set_node(s, model, "whole.bin", &complete, &whole) || sw_set_node(s, model, "part.bin", &filling, &part) ||
      sw_set_node(s, SW_ROOT_INO, "name", &lnk, &link)) abort();
  sw_mark_present(s, part, 0, 1);
  uint8_t request[sizeof(struct fuse_in_header) + sizeof(struct sw_init_in)];
  struct sw_init_in init = { .major = 7, .minor = 45, .max_readahead = 1 << 20, .flags = FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_MAX_PAGES, .flags2 = SW_FUSE_PASSTHROUGH_FLAGS2 };
  struct fuse_in_header in = { .len = sizeof request, .opcode = FUSE_INIT, .unique = 1 };
  memcpy(request, &in, sizeof in);
  memcpy(request + sizeof in, &init, sizeof init);
  sw_handle(s, devnull, request, sizeof request, scratch, 1u << 20);

  size_t at = 0;
  while (at < size) {
    uint8_t op = input[at++];
    if (op >= 0x80) {
      answer(s, op);
      continue;
    }
    if (size - at < 2) break;
    size_t len = (size_t)input[at] | ((size_t)input[at + 1] << 8);
    at += 2;
    if (len > size - at) len = size - at;
    /* a private copy of exactly `len` bytes, so a read past the request is caught */
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) break;
    memcpy(copy, input + at, len);
    sw_handle(s, devnull, copy, len, scratch, 1u << 20);
    free(copy);
    at += len;
  }
  answer(s, 0x0f);
  /* evicting the model and replacing its content are part of the life of a tree too */
  uint64_t inos[8];
  sw_evict(s, model, inos, 8);
  sw_set_content(s, whole, &filling);
  sw_server_free(s);
  return 0;
}

#ifdef SW_FUZZ_STANDALONE
/* Runs each file named on the command line through the target once. */
int main(int argc, char **argv) {
  size_t ran = 0;
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (f == NULL) {
      perror(argv[i]);
      return 2;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *exact = malloc(n > 0 ? n : 1);
    memcpy(exact, buf, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    ran++;
  }
  free(scratch);
  if (devnull >= 0) close(devnull);
  printf("{\"inputs\":%zu}\n", ran);
  return 0;
}
#endif
