/*
 * The reader: a cursor over the records of a log directory, read-only.
 *
 * It follows the same validity rules as recovery (format.c) but repairs nothing.
 * While a writer appends, the last segment may end in a frame being written: that
 * is "the end for now" (0), and a later call picks it up once it is whole.  A
 * segment that has a successor is sealed, so damage there is -EBADMSG.
 *
 * A live reader (ringlog_reader_open_live) belongs to the writing process and is
 * bounded by the log's durable LSN: a frame is returned only once all of it is
 * durable (frames are durable whole, since groups hold whole frames).
 */
#include "log_internal.h"

#include "errors.h"
#include "published.h"
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

struct ringlog_reader {
	int dir_fd;
	struct ringlog *log; /* live readers: the log whose durable LSN bounds them */
	struct rl_published published; /* RINGLOG_READ_DURABLE: the writer's, across processes */
	uint64_t published_id;
	uint64_t next_lsn;   /* LSN of the record the next call would return */
	uint64_t from_lsn;
	uint64_t log_id;
	int seg_fd;	    /* current segment, -1 before the first */
	uint64_t pending_first; /* seg_fd < 0: the segment to enter once it has a header */
	uint64_t seg_first; /* its first LSN */
	struct rl_seg_scan scan;
	int in_frame; /* records of scan.frame remain */
	struct rl_record_cursor rec;
	uint64_t rec_lsn;  /* LSN of the next record of the frame */
	uint32_t prev_crc; /* CRC of the last frame read (for the chain check) */
	uint8_t hole[RL_FRAME_HEADER_BYTES]; /* ringlog_reader_next_frame: a hole, rebuilt */
};

/* Smallest segment whose first LSN is > after, or the largest <= at_most (mode 1). */
static int find_segment(int dir_fd, uint64_t key, int at_most, uint64_t *found)
{
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(dir_fd, &lsns, &n);
	if (err)
		return err;
	int hit = 0;
	for (size_t i = 0; i < n; i++) {
		if (at_most ? lsns[i] <= key : lsns[i] > key) {
			*found = lsns[i];
			hit = 1;
			if (!at_most)
				break;
		}
	}
	if (at_most && !hit && n > 0 && key <= 1) {
		*found = lsns[0]; /* "from the beginning": the first segment kept */
		hit = 1;
	}
	free(lsns);
	return hit;
}

/* Open segment `first` and check it against what came before.  Returns 1 when
 * switched, 0 if its header is not there yet (being created), or -errno. */
static int enter_segment(struct ringlog_reader *r, uint64_t first)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, first);
	int fd = rl_file_open(r->dir_fd, name, O_RDONLY);
	if (fd < 0)
		return rl_fail(fd, "reader: opening %s", name);
	struct rl_seg_header h;
	uint64_t size;
	int err = rl_seg_read_header(fd, &h, &size);
	uint64_t later;
	int has_later = err == -EBADMSG ? find_segment(r->dir_fd, first, 0, &later) : 1;
	if (has_later < 0) {
		close(fd);
		return rl_fail(has_later, "reader: listing the log directory");
	}
	if (err == -EBADMSG && size <= RL_SEG_HEADER_BYTES && has_later == 0) {
		close(fd);
		/* The last segment, being created (or torn by a crash): nothing in it yet.
		 * A reader that starts there looks again on its next call. */
		if (r->seg_fd < 0)
			r->pending_first = first;
		return 0;
	}
	if (err) {
		close(fd);
		return err == -EBADMSG ? rl_fail(err, "reader: %s: invalid segment header", name)
				       : rl_fail(err, "reader: reading %s", name);
	}
	if (h.first_lsn != first ||
	    (r->seg_fd >= 0 && (h.log_id != r->log_id || h.prev_tail_crc != r->prev_crc))) {
		close(fd);
		return rl_fail(-EBADMSG,
			       "reader: %s does not follow the previous segment "
			       "(wrong first LSN, log id or chain CRC)",
			       name);
	}
	if (r->seg_fd >= 0) {
		close(r->seg_fd);
		rl_scan_free(&r->scan);
	}
	r->seg_fd = fd;
	r->seg_first = first;
	r->log_id = h.log_id;
	err = rl_scan_init(&r->scan, fd, &h);
	return err ? rl_fail(err, "reader: fstat of %s", name) : 1;
}

static int reader_open(int dir_fd, const char *dir, uint64_t from_lsn, struct ringlog *log,
		       uint32_t flags, struct ringlog_reader **out)
{
	*out = NULL;
	struct ringlog_reader *r = calloc(1, sizeof(*r));
	if (!r) {
		close(dir_fd);
		return rl_fail(-ENOMEM, "allocating a reader");
	}
	r->seg_fd = -1;
	r->published.fd = r->published.notify_fd = -1;
	r->dir_fd = dir_fd;
	r->log = log;
	if (log)
		atomic_fetch_add(&log->live_readers, 1); /* ringlog_reader_close undoes it */
	r->from_lsn = from_lsn;
	int err;
	if (flags & RINGLOG_READ_DURABLE) {
		err = rl_published_map(dir_fd, &r->published, &r->published_id);
		if (err) {
			err = rl_fail(err, "reader: %s/" RL_PUBLISHED_NAME "%s", dir,
				      err == -ENOENT ? " is missing or empty (no writer of this version "
						       "opened the log yet)"
				      : err == -EBADMSG ? " does not hold a durable LSN of this format"
							: "");
			goto fail;
		}
	}
	uint64_t first;
	err = find_segment(r->dir_fd, from_lsn, 1, &first);
	if (err <= 0) {
		err = err < 0 ? rl_fail(err, "reader: listing %s", dir)
			      : rl_fail(-ENOENT,
					"reader: %s holds no segment with LSN %" PRIu64
					" (no log there, or retention removed it)",
					dir, from_lsn);
		goto fail;
	}
	err = enter_segment(r, first);
	if (err < 0)
		goto fail;
	r->next_lsn = from_lsn > first ? from_lsn : first;
	*out = r;
	return 0;
fail:
	ringlog_reader_close(r);
	return err;
}

RINGLOG_API int ringlog_reader_open(const char *dir, uint64_t from_lsn, struct ringlog_reader **out)
{
	if (!dir || !out)
		return rl_fail(-EINVAL, "reader_open: dir and out must not be NULL");
	*out = NULL;
	int dir_fd = rl_dir_open("reader", dir, 0);
	if (dir_fd < 0)
		return dir_fd;
	return reader_open(dir_fd, dir, from_lsn, NULL, 0, out);
}

RINGLOG_API int ringlog_reader_open_ex(const char *dir, uint64_t from_lsn, uint32_t flags,
				       struct ringlog_reader **out)
{
	if (!dir || !out)
		return rl_fail(-EINVAL, "reader_open_ex: dir and out must not be NULL");
	*out = NULL;
	if (flags & ~RINGLOG_READ_DURABLE)
		return rl_fail(-EINVAL, "reader_open_ex: unknown flags 0x%x", flags);
	int dir_fd = rl_dir_open("reader", dir, 0);
	if (dir_fd < 0)
		return dir_fd;
	return reader_open(dir_fd, dir, from_lsn, NULL, flags, out);
}

RINGLOG_API int ringlog_reader_open_live(struct ringlog *log, uint64_t from_lsn,
					 struct ringlog_reader **out)
{
	if (!log || !out)
		return rl_fail(-EINVAL, "reader_open_live: log and out must not be NULL");
	*out = NULL;
	int dir_fd = fcntl(log->dir_fd, F_DUPFD_CLOEXEC, 0);
	if (dir_fd < 0)
		return rl_fail(-errno, "reader: dup of the log directory");
	return reader_open(dir_fd, "the log directory", from_lsn, log, 0, out);
}

RINGLOG_API int ringlog_reader_wait(struct ringlog_reader *r, int64_t timeout_ns)
{
	if (r->published.map) {
		int err = rl_published_wait(&r->published, r->next_lsn, timeout_ns);
		return err ? rl_fail(err, "reader_wait: LSN %" PRIu64 " not published durable "
					  "within %" PRId64 " ns",
				     r->next_lsn, timeout_ns)
			   : 0;
	}
	if (!r->log)
		return rl_fail(-EINVAL, "reader_wait: only a live reader, or one opened with "
					"RINGLOG_READ_DURABLE, can wait");
	return rl_wait_durable(r->log, r->next_lsn, timeout_ns);
}

/* The durable LSN bounding this reader: the log's (live), the writer's published one
 * (RINGLOG_READ_DURABLE), or none (UINT64_MAX). */
static uint64_t durable_bound(struct ringlog_reader *r)
{
	if (r->log)
		return ringlog_durable_lsn(r->log);
	if (r->published.map)
		return r->published_id == r->log_id ? rl_published_get(&r->published) : 0;
	return UINT64_MAX;
}

RINGLOG_API uint64_t ringlog_reader_durable_lsn(struct ringlog_reader *r)
{
	return durable_bound(r);
}

/* Whether retention removed the segment this reader has open: its name is gone, or
 * names another file now (the file was recycled into the pool, and may be growing or
 * be another segment already).  What the reader then sees in it is not damage. */
static int removed_under_reader(const struct ringlog_reader *r)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, r->seg_first);
	struct stat mine, now;
	if (fstat(r->seg_fd, &mine) < 0)
		return 0;
	if (fstatat(r->dir_fd, name, &now, 0) < 0)
		return errno == ENOENT;
	return now.st_ino != mine.st_ino || now.st_dev != mine.st_dev;
}

static int removed_error(const struct ringlog_reader *r)
{
	return rl_fail(-ENOENT,
		       "reader: retention removed segment %020" PRIu64
		       ".rlog (LSNs from %" PRIu64 ") while this reader was behind",
		       r->seg_first, r->scan.expect_lsn);
}

/* At the end of the current segment: move to the next one if it exists.  Returns 2
 * when a frame of this segment turned up after all, 1 after moving to the next
 * segment, 0 at the end of the log (for now), or -errno. */
static int advance(struct ringlog_reader *r, enum rl_frame_status why)
{
	uint64_t next;
	int err = find_segment(r->dir_fd, r->seg_first, 0, &next);
	if (err < 0)
		return rl_fail(err, "reader: listing the log directory");
	if (err == 0)
		return 0;
	/* A successor exists: this segment is sealed, unless retention took it away
	 * (recycled files change under the reader: not damage). */
	if (removed_under_reader(r))
		return removed_error(r);
	/* A successor exists, so the writer finished this segment before creating it:
	 * look once more at its now final size, then it must end cleanly. */
	err = rl_scan_refresh(&r->scan);
	if (err)
		return rl_fail(err, "reader: fstat");
	int got = rl_scan_next(&r->scan, &why);
	if (got != 0)
		return got < 0 ? got : 2;
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, r->seg_first);
	if (why != RL_FRAME_END || r->scan.off != r->scan.file_size)
		return rl_fail(-EBADMSG,
			       "reader: sealed segment %s is damaged at offset %" PRIu64 ": %s",
			       name, r->scan.off, rl_frame_status_str(why));
	if (next != r->scan.expect_lsn) {
		/* If this segment itself is gone from the directory, retention removed what
		 * followed it while we read: the records are gone, not damaged. */
		if (faccessat(r->dir_fd, name, F_OK, 0) != 0 && errno == ENOENT)
			return rl_fail(-ENOENT,
				       "reader: retention removed LSNs %" PRIu64 "..%" PRIu64
				       " while this reader was behind",
				       r->scan.expect_lsn, next - 1);
		return rl_fail(-EBADMSG,
			       "reader: %s ends at LSN %" PRIu64 " but the next segment "
			       "starts at %" PRIu64 " (missing segment)",
			       name, r->scan.expect_lsn - 1, next);
	}
	return enter_segment(r, next);
}

/* Load the next entry (frame or hole; pads are skipped by neither, see callers) into
 * r->scan.frame / r->scan.info, within the durable bound.  Returns 1, 0 at the end of
 * the log for now, or -errno. */
static int next_entry(struct ringlog_reader *r)
{
	if (r->seg_fd < 0) {
		int err = enter_segment(r, r->pending_first);
		if (err <= 0)
			return err;
	}
	for (;;) {
		enum rl_frame_status why;
		uint64_t off = r->scan.off, expect = r->scan.expect_lsn;
		int got = rl_scan_next(&r->scan, &why);
		if (got == 0) {
			/* The writer may have appended since the size was read. */
			int err = rl_scan_refresh(&r->scan);
			if (err)
				return rl_fail(err, "reader: fstat");
			got = rl_scan_next(&r->scan, &why);
		}
		if (got == 0) {
			got = advance(r, why);
			if (got == 1)
				continue; /* now in the next segment */
			if (got == 2)
				got = 1;
		}
		if (got < 0)
			return got == -EIO || got == -ENOMEM ? rl_fail(got, "reader: reading")
							     : got;
		if (got == 0)
			return 0;
		if (r->scan.expect_lsn - 1 > durable_bound(r)) {
			/* Not durable yet: leave the frame for a later call. */
			r->scan.off = off;
			r->scan.expect_lsn = expect;
			return 0;
		}
		r->prev_crc = r->scan.info.crc;
		return 1;
	}
}

RINGLOG_API int ringlog_reader_next(struct ringlog_reader *r, struct ringlog_record *rec)
{
	for (;;) {
		if (r->in_frame) {
			const uint8_t *data;
			uint32_t len;
			if (rl_frame_next_record(r->scan.frame, &r->scan.info, &r->rec, &data,
						 &len)) {
				uint64_t lsn = r->rec_lsn++;
				if (lsn < r->from_lsn)
					continue;
				r->next_lsn = lsn + 1;
				rec->lsn = lsn;
				rec->data = data;
				rec->len = len;
				rec->batch_nrecs = r->scan.info.nrecs;
				rec->batch_first_lsn = r->scan.info.first_lsn;
				return 1;
			}
			r->in_frame = 0;
		}
		int got = next_entry(r);
		if (got <= 0)
			return got;
		r->in_frame = 1;
		r->rec = (struct rl_record_cursor){.pos = 0, .index = 0};
		r->rec_lsn = r->scan.info.first_lsn;
	}
}

RINGLOG_API int ringlog_reader_next_frame(struct ringlog_reader *r, struct ringlog_frame *f)
{
	if (!r || !f)
		return rl_fail(-EINVAL, "reader_next_frame: NULL argument");
	if (r->in_frame && r->rec.index > 0)
		return rl_fail(-EINVAL, "reader_next_frame: ringlog_reader_next() returned part "
					"of the current frame; frames are read whole or not at all");
	for (;;) {
		int got = r->in_frame ? 1 : next_entry(r);
		r->in_frame = 0;
		if (got <= 0)
			return got;
		const struct rl_frame_info *i = &r->scan.info;
		if (i->pad || (i->hole && i->nrecs == 0))
			continue; /* no LSN of its own */
		if (i->first_lsn + i->nrecs <= r->from_lsn)
			continue; /* wholly before the starting point */
		r->next_lsn = i->first_lsn + i->nrecs;
		f->first_lsn = i->first_lsn;
		f->nrecs = i->nrecs;
		if (i->hole) {
			/* Only the header: the LSNs it stands for, without the damaged bytes it
			 * covers here (a 32-byte hole says the same anywhere). */
			rl_hole_encode(r->hole, RL_FRAME_HEADER_BYTES, i->nrecs, i->first_lsn,
				       r->log_id);
			f->bytes = r->hole;
			f->len = RL_FRAME_HEADER_BYTES;
			f->kind = RINGLOG_FRAME_HOLE;
		} else {
			f->bytes = r->scan.frame;
			f->len = i->frame_len;
			f->kind = RINGLOG_FRAME_BATCH;
		}
		return 1;
	}
}

RINGLOG_API void ringlog_reader_close(struct ringlog_reader *r)
{
	if (!r)
		return;
	if (r->seg_fd >= 0) {
		close(r->seg_fd);
		rl_scan_free(&r->scan);
	}
	if (r->dir_fd >= 0)
		close(r->dir_fd);
	rl_published_close(&r->published);
	if (r->log)
		atomic_fetch_sub(&r->log->live_readers, 1);
	free(r);
}
