/*
 * The durable LSN, published across processes: the contents of the log directory's LOCK
 * file (the file the writer flock()s; kept there so that publishing adds no directory
 * entry: on a nearly full XFS a rename into a directory that has to grow fails).
 *
 *   off size field
 *     0    4 magic        "RLDU" (0x55444c52)
 *     4    2 version      2
 *     6    2 size         64
 *     8    8 log_id       the log's id
 *    16    8 durable_lsn  the last LSN durable (rewritten in place by the writer)
 *    24    8 check        ~durable_lsn
 *    32   32 reserved     zero
 *
 * The writer rewrites the whole file at open with the recovered end and syncs it; after
 * every group's fdatasync it pwrite()s durable_lsn and check together (16 bytes, one
 * call) without syncing: on the disk the file then only ever holds a value that was
 * durable, and the page cache shows every reader the current one.
 *
 * The writer never stores through a shared mapping: dirtying a mapped page of a file on a
 * full copy-on-write filesystem (btrfs) raises SIGBUS, where pwrite() returns ENOSPC.
 * Readers map the file read-only.  A pwrite() may be seen half done; a value is taken
 * only when check matches it (a copy that tears between old and new bytes makes them
 * disagree), else it is read again.  Readers wait with inotify (IN_MODIFY, raised by
 * every pwrite), or poll every millisecond where inotify is unavailable.
 */
#ifndef RL_PUBLISHED_H
#define RL_PUBLISHED_H

#include <stdint.h>

#define RL_PUBLISHED_NAME "LOCK"
#define RL_PUBLISHED_MAGIC 0x55444c52u
#define RL_PUBLISHED_VERSION 2u
#define RL_PUBLISHED_BYTES 64u

struct rl_published {
	int fd;
	const uint8_t *map; /* reader: RL_PUBLISHED_BYTES, read-only; NULL otherwise */
	int notify_fd;	    /* reader: inotify on the file, or -1 (then waiting polls) */
	uint64_t last;	    /* writer: the value last written; reader: last good read */
	int write_err;	    /* writer: the last pwrite's error, 0 if it went through */
};

/* Writer, at open (holding the flock): rewrite LOCK in dir_fd for `log_id` at
 * `durable_lsn`, sync it and its directory entry.  Returns 0 or -errno
 * (ringlog_last_error() set). */
int rl_published_create(int dir_fd, uint64_t log_id, uint64_t durable_lsn,
			struct rl_published *p);
/* Writer: publish a new durable LSN.  A failed write (ENOSPC on a full copy-on-write
 * filesystem) is kept in write_err and the next call writes again; readers meanwhile
 * see an older, still durable, value. */
void rl_published_set(struct rl_published *p, uint64_t durable_lsn);

/* Reader: map LOCK of dir_fd read-only.  Returns 0 with *log_id; -ENOENT when no writer
 * of this version ever opened the log (no LOCK, or an empty one); -EBADMSG; -errno. */
int rl_published_map(int dir_fd, struct rl_published *p, uint64_t *log_id);
/* Reader: the published durable LSN (a value that does not check out for 1000 reads in
 * a row, a damaged file, gives the last good one). */
uint64_t rl_published_get(struct rl_published *p);
/* Reader: wait until the published LSN is at least `lsn`, at most timeout_ns (< 0: no
 * limit).  Returns 0 or -ETIMEDOUT. */
int rl_published_wait(struct rl_published *p, uint64_t lsn, int64_t timeout_ns);

void rl_published_close(struct rl_published *p);

#endif
