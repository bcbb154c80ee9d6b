/*
 * Segment files: listing a log directory, starting and sealing a segment, and
 * scanning the entries of one segment file (shared by recovery, salvage and the
 * reader).  Every file operation goes through file_io.h.
 */
#ifndef RL_SEGMENT_H
#define RL_SEGMENT_H

#include "file_io.h"
#include "format.h"

#include <stddef.h>
#include <stdint.h>

/* The segment being appended to (owned by the consumer once the log is open). */
struct rl_segment {
	int fd;
	uint64_t first_lsn;
	uint64_t size;	   /* offset after its last entry = where the next frame goes */
	uint32_t last_crc; /* crc field of its last entry, 0 if it has none */
};

/* Sorted first LSNs of the segment files in dir_fd.  *lsns is malloc'd (may be NULL
 * when *n is 0).  Returns 0 or -errno. */
int rl_seg_list(int dir_fd, uint64_t **lsns, size_t *n);

/* Name of the file a segment is built under when no prepared file is used. */
#define RL_SEG_BUILD_NAME "segment.new"

/*
 * Make file `from` (a prepared pool file, or NULL: create RL_SEG_BUILD_NAME empty)
 * the segment of header `h`: write its header -- followed, when data_off > 64, by a
 * pad entry covering [64, data_off) so that the first frame goes at data_off --
 * make that durable, rename the file to the segment's name (never replacing one) and
 * make the directory entry durable.  So a file under a segment name always has its
 * valid header on disk.  With *direct the file is opened with O_DIRECT (cleared if
 * the filesystem refuses it) and the header block is written `align` bytes at a time.
 * Returns 0 and fills *seg (size = data_off), or -errno with ringlog_last_error()
 * set (`from` is left as it was, or removed if it was created here).
 */
int rl_seg_start(int dir_fd, const char *from, const struct rl_seg_header *h, uint32_t data_off,
		 int *direct, uint32_t align, struct rl_segment *seg);

/* Seal a full segment: cut off whatever follows its last entry (a prepared file's
 * unused zeros or stale bytes) and make that durable, so that a sealed segment ends
 * exactly at the end of its last entry.  Returns 0 or -errno. */
int rl_seg_seal(const struct rl_segment *seg);

/*
 * The tail of a last segment: bytes after its last valid entry at `end`, where LSN
 * `lsn` is due.  They are a torn tail when they hold what a writer of this log wrote
 * at or after `lsn`: a frame, hole or pad header of this log with such an LSN, at any
 * 8-byte offset.  Anything else is stale (zeros of a prepared file, a recycled file's
 * earlier frames, bytes an aligned write carried past its last frame, the rest of a
 * frame overwritten by a shorter one, fewer than 32 bytes of a header) and the
 * segment ends cleanly: nothing there can ever pass for a frame.  Returns 1 with *torn_end
 * set to where the torn bytes end (the file size at most), 0 if the tail is clean, or
 * -errno.  Reads the rest of the file.
 */
int rl_seg_torn_tail(int fd, uint64_t log_id, uint64_t end, uint64_t lsn, uint64_t *torn_end);

/* Cut a last segment at `end` durably: zero [end, torn_end), or truncate the file at
 * `end` when torn_end reaches its size, then fdatasync.  Returns 0 or -errno. */
int rl_seg_cut(int fd, const char *name, uint64_t end, uint64_t torn_end);

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
	size_t next_read; /* bytes the next window read asks for (see window()) */
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

/*
 * The verdict on one segment file (fd, whose header says `h`): its entries scanned to
 * the first that is not valid, and whether where they end is damage.  A sealed
 * segment (`is_last` 0) must end exactly at the end of its file; the last one ends
 * cleanly unless a torn tail follows (rl_seg_torn_tail).  Returns 0 with *out filled,
 * or -errno (a read error).
 */
struct rl_seg_verdict {
	uint64_t frames, records; /* valid frames and their records */
	uint64_t holes, lost;	  /* holes and the LSNs they stand for */
	uint64_t end;		  /* offset after the last valid entry */
	uint64_t next_lsn;	  /* the LSN due at `end` */
	uint32_t last_crc;	  /* crc field of the last valid entry, 0 if none */
	uint64_t file_size;
	int damaged;		  /* what follows `end` is damage (a torn tail, if last) */
	uint64_t cut_end;	  /* if damaged: where it ends (the file size when sealed) */
	const char *reason;	  /* if damaged: what is there */
};
int rl_seg_judge(int fd, const struct rl_seg_header *h, int is_last, struct rl_seg_verdict *out);

/*
 * The chain rule: why a segment file named by `name_lsn`, whose header read gave
 * `read` (0, or -EBADMSG: invalid) and *h, cannot be the next segment of the log, or
 * NULL if it can.  `first`: it is the first segment (which sets the log id); else
 * `log_id`, `expect` and `prev_crc` are the log's id, the LSN due after the previous
 * segment and the crc field of its last entry.  Recovery and ringlog-dump both judge
 * by it.
 */
const char *rl_seg_header_problem(int read, const struct rl_seg_header *h, uint64_t name_lsn,
				  int first, uint64_t log_id, uint64_t expect, uint32_t prev_crc);

/* Read and decode the header of segment fd.  Returns 0, -EBADMSG (short or invalid
 * header: *file_size tells which) or -errno. */
int rl_seg_read_header(int fd, struct rl_seg_header *h, uint64_t *file_size);

#endif
