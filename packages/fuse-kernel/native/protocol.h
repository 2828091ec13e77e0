/*
 * The parts of the FUSE kernel protocol this server speaks, on top of the system's <linux/fuse.h>.
 *
 * Debian bookworm ships protocol 7.38; kernels from 6.9 speak 7.40+ with passthrough. What 7.38
 * lacks is defined here, and every struct whose size the kernel checks is asserted at compile
 * time, so a header mismatch fails the build instead of corrupting replies.
 */
#ifndef SWARM_FUSE_PROTOCOL_H
#define SWARM_FUSE_PROTOCOL_H

#include <linux/fuse.h>
#include <linux/ioctl.h>
#include <stdint.h>

/* 7.36: flags2 in INIT is read only when flags carries FUSE_INIT_EXT */
#ifndef FUSE_INIT_EXT
#define FUSE_INIT_EXT (1u << 30)
#endif
/* 7.40: passthrough, offered in INIT's flags2 (bit 37 of the 64-bit flag word) */
#define SW_FUSE_PASSTHROUGH_FLAGS2 (1u << (37 - 32))
#define SW_FOPEN_PASSTHROUGH (1u << 7)
#ifndef FOPEN_KEEP_CACHE
#define FOPEN_KEEP_CACHE (1u << 1)
#endif
#ifndef FUSE_STATX
#define FUSE_STATX 52
#endif

/* INIT reply as of 7.40: max_stack_depth follows flags2; 64 bytes in every version since 7.23 */
struct sw_init_out {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint16_t request_timeout;
  uint16_t unused[11];
};

/* INIT request as of 7.36 (older kernels send only the first 16 bytes) */
struct sw_init_in {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;
  uint32_t unused[11];
};

/* OPEN reply as of 7.40: the padding became the backing id */
struct sw_open_out {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};

struct sw_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

#define SW_FUSE_DEV_IOC_MAGIC 229
#define SW_FUSE_DEV_IOC_CLONE _IOR(SW_FUSE_DEV_IOC_MAGIC, 0, uint32_t)
#define SW_FUSE_DEV_IOC_BACKING_OPEN _IOW(SW_FUSE_DEV_IOC_MAGIC, 1, struct sw_backing_map)
#define SW_FUSE_DEV_IOC_BACKING_CLOSE _IOW(SW_FUSE_DEV_IOC_MAGIC, 2, uint32_t)

_Static_assert(sizeof(struct fuse_in_header) == 40, "fuse_in_header");
_Static_assert(sizeof(struct fuse_out_header) == 16, "fuse_out_header");
_Static_assert(sizeof(struct sw_init_out) == 64, "fuse_init_out");
_Static_assert(sizeof(struct sw_init_in) == 64, "fuse_init_in");
_Static_assert(sizeof(struct sw_open_out) == 16, "fuse_open_out");
_Static_assert(sizeof(struct sw_backing_map) == 16, "fuse_backing_map");
_Static_assert(sizeof(struct fuse_attr) == 88, "fuse_attr");
_Static_assert(sizeof(struct fuse_entry_out) == 128, "fuse_entry_out");
_Static_assert(sizeof(struct fuse_attr_out) == 104, "fuse_attr_out");
_Static_assert(sizeof(struct fuse_read_in) == 40, "fuse_read_in");
_Static_assert(sizeof(struct fuse_open_in) == 8, "fuse_open_in");
_Static_assert(sizeof(struct fuse_release_in) == 24, "fuse_release_in");
_Static_assert(sizeof(struct fuse_kstatfs) == 80, "fuse_kstatfs");
_Static_assert(sizeof(struct fuse_dirent) == 24, "fuse_dirent");
_Static_assert(sizeof(struct fuse_direntplus) == 152, "fuse_direntplus");

#endif
