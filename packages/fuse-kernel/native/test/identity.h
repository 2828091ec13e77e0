/* The identity of a file at a path, as the host passes it to the server (for the test programs). */
#ifndef SWARM_FUSE_TEST_IDENTITY_H
#define SWARM_FUSE_TEST_IDENTITY_H

#include "../server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static inline sw_identity identity_of(const char *path) {
  struct statx st;
  sw_identity id = { 0 };
  if (statx(AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &st) == 0) {
    id.dev = makedev(st.stx_dev_major, st.stx_dev_minor);
    id.ino = st.stx_ino;
    if (st.stx_mask & STATX_BTIME) id.birth_ns = (uint64_t)st.stx_btime.tv_sec * 1000000000ull + st.stx_btime.tv_nsec;
  }
  return id;
}

#endif
