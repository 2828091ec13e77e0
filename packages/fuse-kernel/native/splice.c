/*
 * READ replies spliced from the store's file to the kernel.
 *
 * Answering a READ with pread + writev copies the bytes twice: out of the store file's page cache
 * into a buffer of ours, and from it into the pages the kernel hands the reader. Splicing moves
 * references instead: the reply's header is written into a pipe, the file's pages are spliced in
 * behind it (no copy), and the pipe is spliced to /dev/fuse in one call, where the kernel copies
 * them once into the reader's pages. libfuse does the same where it can.
 *
 * - The whole reply must sit in the pipe before the kernel takes it (/dev/fuse takes a message in
 *   one splice), so a pipe is grown to hold the largest READ: a page per slot, one for the header
 *   and one for each page of data. Beyond /proc/sys/fs/pipe-max-size (1 MiB by default) that needs
 *   CAP_SYS_RESOURCE, which is why the adapter's reads are 1 MiB less a page; a thread whose pipe
 *   cannot grow, and a reply that needs more slots than its pipe has (a direct read starting
 *   inside a page), are answered with pread + writev.
 * - The two call sites (a server thread's READ, and the host's answer from the store, which must
 *   claim its request between reading and sending) share file_reply_ready and file_reply_send:
 *   the bytes are made ready first (spliced into the pipe, or read into a buffer), then sent.
 * - Each server thread has its own pipe (a thread-local one, closed when the thread ends), and the
 *   host's answers from the store (sw_reply_local) use the server's, under local_mu.
 * - A splice that fails part way leaves bytes in the pipe that belong to no reply: the pipe is
 *   closed and made again at the next READ. Where the store's file system or the kernel refuses
 *   the splice itself (EINVAL), splicing is turned off for the mount and the log says so once; the
 *   READ is then answered with pread + writev, as every later one is.
 * - A present chunk's bytes never change in the store's file (a chunk is written once, before it
 *   is marked present; a replaced content file is a new inode), so a page referenced from the
 *   pipe is the page the reply means.
 */
#define _GNU_SOURCE
#include "server-internal.h"

void splice_close(sw_pipe *p) {
  if (p->r >= 0) close(p->r);
  if (p->w >= 0) close(p->w);
  p->r = p->w = -1;
}

/*
 * 1 when `p` is open and can hold a reply of `want` bytes at `offset`; 0 otherwise (the caller
 * reads instead). A pipe holds a page per slot: the header takes one, and the file's pages one
 * each, so a reply that starts inside a page (a direct read) needs a slot more than its size says;
 * counted here, so such a read costs no splice that could not finish.
 */
static int pipe_ready(sw_server *s, sw_pipe *p, uint64_t offset, size_t want) {
  if (p->capacity == SIZE_MAX) return 0;
  if (p->r < 0) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return 0;
    p->r = fds[0];
    p->w = fds[1];
    size_t wanted = s->max_read + (size_t)sysconf(_SC_PAGESIZE);
    int got = fcntl(p->w, F_SETPIPE_SZ, (int)wanted);
    if (got < 0 || (size_t)got < wanted) {
      /* EPERM above pipe-max-size without CAP_SYS_RESOURCE: this thread reads instead, for good */
      splice_close(p);
      p->capacity = SIZE_MAX;
      return 0;
    }
    p->capacity = (size_t)got;
  }
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t slots = 1 + ((size_t)(offset % page) + want + page - 1) / page;
  return slots <= p->capacity / page;
}

static void refused(sw_server *s, const char *what, int error) {
  int on = 1;
  if (atomic_compare_exchange_strong(&s->splice_reads, &on, 0)) {
    host_log(s, SW_LOG_WARN, "the kernel refused to splice %s (%s): reads are copied through the server from now on", what, strerror(error));
  }
}

/*
 * Puts a READ's whole reply into `p`: the header for `unique`, then `want` bytes of `file` at
 * `offset`. 1 when it is there; 0 when not (splicing off, no pipe, a short or failed read), with
 * the pipe emptied, and the caller answers with pread + writev.
 */
static int splice_fill(sw_server *s, sw_pipe *p, uint64_t unique, int file, uint64_t offset, size_t want) {
  if (!atomic_load(&s->splice_reads) || !pipe_ready(s, p, offset, want)) return 0;
  struct fuse_out_header out = { .len = (uint32_t)(sizeof out + want), .error = 0, .unique = unique };
  ssize_t put;
  do {
    put = write(p->w, &out, sizeof out);
  } while (put < 0 && errno == EINTR);
  if (put != (ssize_t)sizeof out) {
    splice_close(p);
    return 0;
  }
  loff_t at = (loff_t)offset;
  size_t left = want;
  while (left > 0) {
    ssize_t moved = splice(file, &at, p->w, NULL, left, SPLICE_F_NONBLOCK);
    if (moved < 0 && errno == EINTR) continue;
    if (moved <= 0) {
      if (moved < 0 && errno == EINVAL) refused(s, "the store's file into a pipe", errno);
      splice_close(p);
      return 0;
    }
    left -= (size_t)moved;
  }
  return 1;
}

/*
 * Sends the reply splice_fill put in `p` to the kernel. 0, or -errno when the kernel did not take
 * it (ENOENT: the request was interrupted and is gone); the pipe is emptied either way.
 */
static int splice_send(sw_server *s, sw_pipe *p, int fd, size_t want) {
  size_t total = sizeof(struct fuse_out_header) + want;
  ssize_t sent;
  /* no SPLICE_F_MOVE: a kernel that moves the pages into the reader's file instead of copying
   * them would take them out of the store file's page cache */
  do {
    sent = splice(p->r, NULL, fd, NULL, total, 0);
  } while (sent < 0 && errno == EINTR);
  if (sent == (ssize_t)total) return 0;
  int error = sent < 0 ? errno : EIO;
  if (error == EINVAL) refused(s, "a reply to /dev/fuse", error);
  /* what the kernel left in the pipe belongs to no reply */
  splice_close(p);
  return -error;
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

int file_reply_ready(sw_server *s, sw_pipe *p, uint8_t *buf, uint64_t unique, int file, uint64_t offset, size_t want) {
  if (splice_fill(s, p, unique, file, offset, want)) return FILE_REPLY_SPLICED;
  return pread_all(file, buf, want, offset) == 0 ? FILE_REPLY_READ : -EIO;
}

int file_reply_send(sw_server *s, sw_pipe *p, uint8_t *buf, int ready, int fd, uint64_t unique, int file, uint64_t offset, size_t want) {
  if (ready == FILE_REPLY_SPLICED) {
    int sent = splice_send(s, p, fd, want);
    if (sent == 0) atomic_fetch_add(&s->stats.reads_spliced, 1);
    if (sent == 0 || sent == -ENOENT) {
      atomic_fetch_add(&s->stats.bytes_local, want);
      return sent;
    }
    /* the kernel refused the spliced reply and still waits for one: read the bytes and copy them */
    if (pread_all(file, buf, want, offset) != 0) {
      reply_error(fd, unique, EIO);
      return -EIO;
    }
  }
  atomic_fetch_add(&s->stats.bytes_local, want);
  return send_reply(fd, unique, 0, buf, want, NULL, 0) == -ENOENT ? -ENOENT : 0;
}

void file_reply_drop(sw_pipe *p, int ready) {
  if (ready == FILE_REPLY_SPLICED) splice_close(p);
}
