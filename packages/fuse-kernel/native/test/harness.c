/*
 * Feeds the request parser malformed, truncated and random requests, as a kernel never would,
 * and answers upcalls with wrong tokens and bad arguments. Built with AddressSanitizer and
 * UndefinedBehaviorSanitizer by the package's tests: any read or write out of bounds, any use
 * after free and any leak aborts the run.
 *
 *   harness <scratch dir> [iterations] [seed]
 *
 * Replies go to /dev/null, as the kernel's side does not matter here; the requests that pass the
 * checks go through the real code paths (table lookups, pread of a real backing file, handles).
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

#define MAX_REQUEST (1u << 17)

static sw_upcall *upcalls[1024];
static size_t nupcalls;
static uint64_t rng_state;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void on_upcall(void *ctx, sw_upcall *u) {
  (void)ctx;
  if (nupcalls < sizeof upcalls / sizeof upcalls[0]) upcalls[nupcalls++] = u;
  else free(u);
}

/* Answers what was passed up: sometimes correctly, sometimes with the wrong token, unique or kind. */
static void answer_upcalls(sw_server *s, uint64_t file_ino) {
  static const char *names[] = { "a", "b", "c" };
  static const char *bad_names[] = { "ok", "has/slash" };
  for (size_t i = 0; i < nupcalls; i++) {
    sw_upcall *u = upcalls[i];
    uint32_t token = (rng() % 4 == 0) ? (uint32_t)rng() : u->token;
    uint64_t unique = (rng() % 4 == 0) ? rng() : u->unique;
    uint8_t data[4096];
    memset(data, 0xab, sizeof data);
    switch (rng() % 8) {
      case 7: sw_reply_local(s, token, unique); break;
      case 0: sw_reply_error(s, token, unique, (int)(rng() % 5000) - 10); break;
      case 1: sw_reply_entry(s, token, unique, rng() % 2 ? file_ino : rng()); break;
      case 2: sw_reply_open(s, token, unique, rng()); break;
      case 3: sw_reply_data(s, token, unique, data, rng() % 2 ? rng() % sizeof data : (size_t)rng()); break;
      case 4: sw_reply_dir(s, token, unique, names, 3); break;
      case 5: sw_reply_dir(s, token, unique, bad_names, 2); break;
      default: break; /* never answered */
    }
    /* whatever happened above, a correct answer of the right kind closes it */
    switch (u->kind) {
      case SW_UP_LOOKUP: sw_reply_entry(s, u->token, u->unique, file_ino); break;
      case SW_UP_OPENDIR: sw_reply_dir(s, u->token, u->unique, names, 3); break;
      case SW_UP_OPEN: sw_reply_open(s, u->token, u->unique, 7); break;
      case SW_UP_READ:
        if (rng() % 2 == 0 || sw_reply_local(s, u->token, u->unique) != 0) sw_reply_data(s, u->token, u->unique, data, u->size < sizeof data ? u->size : sizeof data);
        break;
      default: break;
    }
    free(u);
  }
  nupcalls = 0;
}

static size_t request(uint8_t *buf, uint32_t opcode, uint64_t nodeid, const void *body, size_t blen) {
  static uint64_t unique = 1;
  struct fuse_in_header in = { .len = (uint32_t)(sizeof in + blen), .opcode = opcode, .unique = unique++, .nodeid = nodeid };
  memcpy(buf, &in, sizeof in);
  if (blen > 0) memcpy(buf + sizeof in, body, blen);
  return sizeof in + blen;
}

/* Sends `buf` as is, then every truncation of it with the header's length patched to match, then random flips. */
static void mutate_and_send(sw_server *s, int fd, const uint8_t *buf, size_t len, uint8_t *scratch, size_t slen) {
  uint8_t copy[MAX_REQUEST];
  sw_handle(s, fd, buf, len, scratch, slen);
  for (size_t cut = 0; cut < len; cut++) {
    memcpy(copy, buf, len);
    if (cut >= 4) {
      uint32_t patched = (uint32_t)cut;
      memcpy(copy, &patched, 4);
    }
    sw_handle(s, fd, copy, cut, scratch, slen);
  }
  for (int round = 0; round < 8; round++) {
    memcpy(copy, buf, len);
    int flips = 1 + (int)(rng() % 4);
    for (int f = 0; f < flips; f++) copy[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
    /* keep the length honest half the time, so the body parsers see the flips */
    if (round % 2 == 0) {
      uint32_t honest = (uint32_t)len;
      memcpy(copy, &honest, 4);
    }
    sw_handle(s, fd, copy, len, scratch, slen);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: harness <scratch dir> [iterations] [seed]\n");
    return 2;
  }
  long iterations = argc > 2 ? atol(argv[2]) : 2000;
  rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 88172645463325252ull;
  if (rng_state == 0) rng_state = 1;

  char backing[4096];
  snprintf(backing, sizeof backing, "%s/backing.bin", argv[1]);
  int bfd = open(backing, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (bfd < 0) {
    perror("backing file");
    return 2;
  }
  static uint8_t content[3 << 20];
  for (size_t i = 0; i < sizeof content; i++) content[i] = (uint8_t)(i * 31);
  if (write(bfd, content, sizeof content) != (ssize_t)sizeof content) return 2;
  close(bfd);

  int out = open("/dev/null", O_WRONLY);
  sw_options options = { .max_read = 1u << 20, .passthrough = 1, .max_stack_depth = 1, .root_timeout = 1 };
  sw_host host = { .upcall = on_upcall, .ctx = NULL };
  sw_server *s = sw_server_new(&options, &host);
  if (s == NULL || out < 0) return 2;
  size_t slen = sw_scratch_size(s);
  uint8_t *scratch = malloc(slen);

  /* a tree: /by-cid (dynamic), /by-cid/m (static) with a complete file, a partial one and a link */
  uint64_t by_cid, model, complete, partial, cold, link;
  sw_node_init dir = { .kind = SW_DIR, .mode = 0555, .dynamic = 1, .entry_timeout = 1, .attr_timeout = 1 };
  sw_node_init static_dir = { .kind = SW_DIR, .mode = 0555, .entry_timeout = 60, .attr_timeout = 60 };
  uint64_t ends[3] = { 1 << 20, 2 << 20, 3 << 20 };
  sw_identity id = identity_of(backing);
  sw_node_init whole = { .kind = SW_FILE, .mode = 0444, .size = sizeof content, .backing_path = backing, .identity = id, .complete = 1 };
  sw_node_init part = { .kind = SW_FILE, .mode = 0444, .size = sizeof content, .backing_path = backing, .identity = id, .chunk_ends = ends, .nchunks = 3 };
  sw_node_init lnk = { .kind = SW_LINK, .mode = 0777, .target = "by-cid/m" };
  if (sw_set_node(s, SW_ROOT_INO, "by-cid", &dir, &by_cid) || sw_set_node(s, by_cid, "m", &static_dir, &model) ||
      sw_set_node(s, model, "whole.bin", &whole, &complete) || sw_set_node(s, model, "part.bin", &part, &partial) ||
      sw_set_node(s, model, "cold.bin", &part, &cold) ||
      sw_set_node(s, SW_ROOT_INO, "name", &lnk, &link)) {
    fprintf(stderr, "building the tree failed\n");
    return 1;
  }
  sw_mark_present(s, partial, 0, 1);

  /* the table refuses bad nodes */
  sw_node_init bad_chunks = part;
  uint64_t unordered[3] = { 2 << 20, 1 << 20, 3 << 20 };
  bad_chunks.chunk_ends = unordered;
  uint64_t ignored;
  int refused = sw_set_node(s, model, "bad.bin", &bad_chunks, &ignored) == -EINVAL &&
                sw_set_node(s, model, "a/b", &whole, &ignored) == -EINVAL &&
                sw_set_node(s, model, "..", &whole, &ignored) == -EINVAL &&
                sw_set_node(s, complete, "child", &whole, &ignored) == -ENOTDIR &&
                sw_set_node(s, 999999, "x", &whole, &ignored) == -ENOENT &&
                sw_mark_present(s, 999999, 0, 1) == -ENOENT &&
                sw_set_complete(s, model) == -EINVAL;
  if (!refused) {
    fprintf(stderr, "the table accepted a bad node\n");
    return 1;
  }

  uint8_t buf[MAX_REQUEST];
  struct sw_init_in init = { .major = 7, .minor = 45, .max_readahead = 1 << 20, .flags = FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_MAX_PAGES, .flags2 = SW_FUSE_PASSTHROUGH_FLAGS2 };
  /* before INIT everything else is refused */
  struct fuse_getattr_in getattr_in = { 0 };
  sw_handle(s, out, buf, request(buf, FUSE_GETATTR, SW_ROOT_INO, &getattr_in, sizeof getattr_in), scratch, slen);
  sw_handle(s, out, buf, request(buf, FUSE_INIT, 0, &init, sizeof init), scratch, slen);
  if (!sw_initialised(s)) {
    fprintf(stderr, "INIT was not accepted\n");
    return 1;
  }

  for (long it = 0; it < iterations; it++) {
    /* a DESTROY or a mangled INIT among the noise leaves the server refusing everything: start it again */
    if (!sw_initialised(s)) sw_handle(s, out, buf, request(buf, FUSE_INIT, 0, &init, sizeof init), scratch, slen);
    uint64_t nodes[] = { SW_ROOT_INO, by_cid, model, complete, partial, cold, link, 0, rng() };
    uint64_t node = nodes[rng() % (sizeof nodes / sizeof nodes[0])];
    size_t len;
    switch (rng() % 16) {
      case 0: {
        const char *names[] = { "whole.bin", "part.bin", "missing", "m", "name" };
        const char *name = names[rng() % 5];
        len = request(buf, FUSE_LOOKUP, node, name, strlen(name) + 1);
        break;
      }
      case 1: len = request(buf, FUSE_GETATTR, node, &getattr_in, sizeof getattr_in); break;
      case 2: {
        struct fuse_open_in o = { .flags = (uint32_t)(rng() % 4 == 0 ? rng() : 0) };
        len = request(buf, FUSE_OPEN, node, &o, sizeof o);
        break;
      }
      case 3: case 4: {
        uint64_t offsets[] = { 0, 4095, 1 << 20, (3 << 20) - 1, 3 << 20, UINT64_MAX, (uint64_t)INT64_MAX + 1, rng() };
        uint32_t sizes[] = { 0, 1, 4096, 1 << 20, (1 << 20) + 1, UINT32_MAX, (uint32_t)rng() };
        struct fuse_read_in r = { .fh = rng() % 12, .offset = offsets[rng() % 8], .size = sizes[rng() % 7] };
        uint64_t files[] = { complete, partial, cold };
        len = request(buf, FUSE_READ, rng() % 4 == 0 ? node : files[rng() % 3], &r, sizeof r);
        break;
      }
      case 5: {
        struct fuse_release_in r = { .fh = rng() % 12 };
        len = request(buf, rng() % 2 ? FUSE_RELEASE : FUSE_RELEASEDIR, node, &r, sizeof r);
        break;
      }
      case 6: {
        struct fuse_open_in o = { 0 };
        len = request(buf, FUSE_OPENDIR, node, &o, sizeof o);
        break;
      }
      case 7: {
        struct fuse_read_in r = { .fh = rng() % 12, .offset = rng() % 2 ? rng() % 8 : rng(), .size = rng() % 2 ? 4096 : (uint32_t)rng() };
        len = request(buf, FUSE_READDIR, node, &r, sizeof r);
        break;
      }
      case 8: len = request(buf, FUSE_READLINK, node, NULL, 0); break;
      case 9: {
        uint8_t x[64] = { 0 };
        struct fuse_getxattr_in g = { .size = (uint32_t)(rng() % 3 == 0 ? 0 : rng()) };
        memcpy(x, &g, sizeof g);
        memcpy(x + sizeof g, "user.a", 7);
        len = request(buf, rng() % 2 ? FUSE_GETXATTR : FUSE_LISTXATTR, node, x, sizeof g + 7);
        break;
      }
      case 10: {
        struct fuse_access_in a = { .mask = (uint32_t)(rng() % 8) };
        len = request(buf, FUSE_ACCESS, node, &a, sizeof a);
        break;
      }
      case 11: {
        uint8_t body[256];
        struct fuse_batch_forget_in b = { .count = (uint32_t)(rng() % 2 ? 3 : rng()) };
        memcpy(body, &b, sizeof b);
        len = request(buf, FUSE_BATCH_FORGET, node, body, sizeof b + 3 * sizeof(struct fuse_forget_one));
        break;
      }
      case 12: {
        uint32_t writes[] = { FUSE_WRITE, FUSE_SETATTR, FUSE_MKDIR, FUSE_CREATE, FUSE_RENAME2, FUSE_SYMLINK, FUSE_UNLINK };
        uint8_t body[128] = { 0 };
        len = request(buf, writes[rng() % 7], node, body, rng() % sizeof body);
        break;
      }
      case 13: len = request(buf, FUSE_STATFS, node, NULL, 0); break;
      case 14: {
        /* opcodes nobody sends, and INIT again */
        uint32_t opcode = rng() % 2 ? (uint32_t)(rng() % 200) : FUSE_INIT;
        uint8_t body[80];
        for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)rng();
        len = request(buf, opcode, node, body, rng() % sizeof body);
        break;
      }
      default: {
        /* pure noise, with a header length that may lie */
        len = (size_t)(rng() % 512);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rng();
        break;
      }
    }
    if (len == 0) {
      sw_handle(s, out, buf, 0, scratch, slen);
      continue;
    }
    mutate_and_send(s, out, buf, len, scratch, slen);
    if (rng() % 3 == 0) sw_mark_present(s, partial, rng() % (4 << 20), rng() % (2 << 20));
    answer_upcalls(s, complete);
  }

  /* INIT must be answered even when truncated to its pre-7.36 size, and re-INIT after DESTROY */
  sw_handle(s, out, buf, request(buf, FUSE_DESTROY, 0, NULL, 0), scratch, slen);
  sw_handle(s, out, buf, request(buf, FUSE_INIT, 0, &init, 16), scratch, slen);

  sw_stats stats;
  sw_get_stats(s, &stats);
  printf("{\"requests\":%llu,\"malformed\":%llu,\"reads\":%llu,\"readsForwarded\":%llu,\"bytesReadLocally\":%llu}\n",
         (unsigned long long)stats.requests, (unsigned long long)stats.malformed, (unsigned long long)stats.reads,
         (unsigned long long)stats.reads_host, (unsigned long long)stats.bytes_local);
  answer_upcalls(s, complete);
  sw_server_free(s);
  free(scratch);
  close(out);
  unlink(backing);
  return 0;
}
