/*
 * Segment files: listing a log directory, creating a segment, and scanning the
 * frames of one segment file (shared by recovery and the reader).
 */
#ifndef RL_SEGMENT_H
#define RL_SEGMENT_H

#include "format.h"

#include <stddef.h>
#include <stdint.h>

/* The segment being appended to (owned by the consumer once the log is open). */
struct rl_segment {
	int fd;
	uint64_t first_lsn;
	uint64_t size;	   /* bytes durable in the file = offset of the next write */
	uint32_t last_crc; /* crc field of its last frame, 0 if it has none */
};

/* Sorted first LSNs of the segment files in dir_fd.  *lsns is malloc'd (may be NULL
 * when *n is 0).  Returns 0 or -errno. */
int rl_seg_list(int dir_fd, uint64_t **lsns, size_t *n);

/* pwrite all of buf at off (retrying EINTR and short writes).  Returns 0 or -errno. */
int rl_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* fsync a directory.  Returns 0 or -errno. */
int rl_dir_fsync(int dir_fd);

/*
 * Create the segment file for header `h` (O_EXCL), write its header and make its
 * directory entry durable.  The header itself becomes durable with the first
 * fdatasync of the file.  Returns 0 and fills *seg, or -errno (the file is removed
 * again if it was created).
 */
int rl_seg_create(int dir_fd, const struct rl_seg_header *h, struct rl_segment *seg);

/* Reads the frames of one segment file in order, through a bounded window. */
struct rl_seg_scan {
	int fd;
	uint64_t file_size;
	uint64_t off;	     /* offset of the next frame */
	uint64_t expect_lsn; /* LSN the next frame must start with */
	uint64_t log_id;
	/* the last frame returned by rl_scan_next */
	const uint8_t *frame;
	struct rl_frame_info info;
	/* read window */
	uint8_t *buf;
	size_t cap;
	uint64_t win_off;
	size_t win_len;
};

/* Start scanning the frames of `fd`, whose header says `h`, right after the header.
 * Does not take ownership of fd.  Returns 0 or -errno (fstat). */
int rl_scan_init(struct rl_seg_scan *s, int fd, const struct rl_seg_header *h);
void rl_scan_free(struct rl_seg_scan *s);
/* Re-read the file size (the file may have grown); drops the read window. */
int rl_scan_refresh(struct rl_seg_scan *s);

/*
 * Next frame.  Returns 1 with s->frame / s->info set (valid until the next call; of
 * a hole, s->info.hole, only the 32-byte header is there) and s->off, s->expect_lsn
 * advanced past it; 0 when no valid frame starts at s->off,
 * with *why saying what is there (RL_FRAME_END: clean end of the data); or -errno on
 * a read error or -ENOMEM.
 */
int rl_scan_next(struct rl_seg_scan *s, enum rl_frame_status *why);

/* Whether a frame or hole header of this log (any LSN) that fits in the file starts
 * at `off`: 1 with *info filled, 0 if not, or -errno.  Reads 32 bytes at most (a hole
 * is then fully checked; a frame's records and CRC are not). */
int rl_scan_peek(struct rl_seg_scan *s, uint64_t off, struct rl_frame_info *info);

/* The first frame or hole at or after `from` that passes every check but the LSN
 * rule: of log `prefer` if there is one (prefer != 0), else of any log.  Returns 1
 * with its *log_id, *lsn (first LSN) and offset *at; 0 if there is none; -E2BIG if
 * checking it would take more than `budget` bytes of frames; or -errno. */
int rl_scan_find_any(struct rl_seg_scan *s, uint64_t from, uint64_t budget, uint64_t prefer,
		     uint64_t *log_id, uint64_t *lsn, uint64_t *at);

/* Read and decode the header of segment fd.  Returns 0, -EBADMSG (short or invalid
 * header: *file_size tells which) or -errno. */
int rl_seg_read_header(int fd, struct rl_seg_header *h, uint64_t *file_size);

#endif
