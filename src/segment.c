/* Segment files.  Contracts in segment.h; the byte layout in format.c. */
#include "segment.h"

#include "errors.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read window: large enough that a scan makes few system calls. */
#define RL_SCAN_WINDOW (1u << 20)
#define RL_SCAN_TAIL_READ (16u << 10) /* the first read after a refresh */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int rl_seg_list(int dir_fd, uint64_t **lsns, size_t *n)
{
	*lsns = NULL;
	*n = 0;
	int fd = dup(dir_fd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return err;
	}
	rewinddir(d);
	size_t cap = 0;
	int err = 0;
	struct dirent *de;
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		uint64_t lsn;
		if (!rl_seg_name_parse(de->d_name, &lsn))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *p = realloc(*lsns, cap * sizeof(**lsns));
			if (!p) {
				err = -ENOMEM;
				break;
			}
			*lsns = p;
		}
		(*lsns)[(*n)++] = lsn;
	}
	if (!err && errno)
		err = -errno;
	closedir(d);
	if (err) {
		free(*lsns);
		*lsns = NULL;
		*n = 0;
		return err;
	}
	if (*n > 1)
		qsort(*lsns, *n, sizeof(**lsns), cmp_u64);
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int rl_seg_start(int dir_fd, const char *from, const struct rl_seg_header *h, uint32_t data_off,
		 int *direct, uint32_t align, struct rl_segment *seg)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, h->first_lsn);
	const char *src = from ? from : RL_SEG_BUILD_NAME;
	int fd = rl_file_open_rw(dir_fd, src, from ? 0 : O_CREAT | O_TRUNC, direct, 1);
	if (fd < 0)
		return rl_fail(fd, "opening %s to start segment %s", src, name);
	if (!from) {
		int cow = rl_file_set_nocow(fd, src); /* as prepared files are (pool.c) */
		if (cow < 0) {
			close(fd);
			rl_file_unlink(dir_fd, src);
			return rl_fail(cow, "marking %s no-copy-on-write", src);
		}
	}
	/* The header block: the header, then a pad up to the first frame. */
	int pad = data_off > RL_SEG_HEADER_BYTES;
	size_t blk = RL_SEG_HEADER_BYTES + (pad ? RL_FRAME_HEADER_BYTES : 0);
	if (*direct)
		blk = (size_t)align_up(blk, align);
	assert(!pad || (data_off >= blk && data_off - RL_SEG_HEADER_BYTES >= RL_FRAME_HEADER_BYTES));
	uint8_t *buf = NULL;
	int err = -posix_memalign((void **)&buf, align > 4096 ? align : 4096, blk);
	uint32_t crc = 0;
	if (!err) {
		memset(buf, 0, blk);
		rl_seg_header_encode(h, buf);
		if (pad)
			crc = rl_pad_encode(buf + RL_SEG_HEADER_BYTES, data_off - RL_SEG_HEADER_BYTES,
					    h->first_lsn, h->log_id);
		err = rl_file_pwrite(fd, src, buf, blk, 0);
		if (err)
			err = rl_fail(err, "writing the header of segment %s into %s", name, src);
	}
	free(buf);
	if (!err && (err = rl_file_fdatasync(fd, src)) != 0)
		err = rl_fail(err, "fdatasync of %s (segment %s)", src, name);
	if (!err && (err = rl_file_rename(dir_fd, src, name, 1)) != 0)
		err = rl_fail(err, "renaming %s to %s", src, name);
	if (err) {
		close(fd);
		if (!from)
			rl_file_unlink(dir_fd, src);
		return err;
	}
	/* Renamed: whatever happens now, the file is the segment. */
	if ((err = rl_dir_sync(dir_fd)) != 0) {
		close(fd);
		return rl_fail(err, "fsync of the log directory after creating %s", name);
	}
	seg->fd = fd;
	seg->first_lsn = h->first_lsn;
	seg->size = pad ? data_off : RL_SEG_HEADER_BYTES;
	seg->last_crc = crc;
	return 0;
}

int rl_seg_seal(const struct rl_segment *seg)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, seg->first_lsn);
	int64_t size = rl_file_size(seg->fd);
	if (size < 0)
		return rl_fail((int)size, "sealing %s: fstat", name);
	if ((uint64_t)size <= seg->size)
		return 0;
	int err = rl_file_truncate(seg->fd, name, seg->size);
	if (err)
		return rl_fail(err, "sealing %s: ftruncate at offset %" PRIu64, name, seg->size);
	err = rl_file_fdatasync(seg->fd, name);
	return err ? rl_fail(err, "sealing %s: fdatasync after the cut at offset %" PRIu64, name,
			     seg->size)
		   : 0;
}

/* Bytes of the tail read at a time by rl_seg_torn_tail. */
#define RL_TAIL_CHUNK (1u << 20)

int rl_seg_torn_tail(int fd, uint64_t log_id, uint64_t end, uint64_t lsn, uint64_t *torn_end)
{
	int64_t fsize = rl_file_size(fd);
	if (fsize < 0)
		return (int)fsize;
	uint64_t size = (uint64_t)fsize;
	*torn_end = 0;
	if (end >= size)
		return 0;
	uint8_t *buf = malloc(RL_TAIL_CHUNK + RL_FRAME_HEADER_BYTES);
	if (!buf)
		return -ENOMEM;
	int err = 0;
	/* Headers at every 8-byte offset from `end`; chunks overlap by a header so that
	 * none is split between two reads. */
	for (uint64_t at = end; at < size && !err; at += RL_TAIL_CHUNK) {
		size_t want = size - at < RL_TAIL_CHUNK + RL_FRAME_HEADER_BYTES
				  ? (size_t)(size - at)
				  : RL_TAIL_CHUNK + RL_FRAME_HEADER_BYTES;
		ssize_t got = rl_file_pread(fd, buf, want, at);
		if (got < 0) {
			err = (int)got;
			break;
		}
		for (size_t i = 0; i + RL_FRAME_HEADER_BYTES <= (size_t)got && i < RL_TAIL_CHUNK;
		     i += RL_FRAME_ALIGN) {
			if (!rl_frame_is_from(buf + i, log_id, lsn))
				continue;
			uint64_t len = rl_entry_len(buf + i);
			if (len < RL_FRAME_HEADER_BYTES || len > RL_FRAME_MAX_BYTES)
				len = RL_FRAME_HEADER_BYTES;
			uint64_t stop = at + i + len < size ? at + i + len : size;
			if (stop > *torn_end)
				*torn_end = stop;
		}
	}
	free(buf);
	return err ? err : *torn_end != 0;
}

int rl_seg_cut(int fd, const char *name, uint64_t end, uint64_t torn_end)
{
	int64_t size = rl_file_size(fd);
	if (size < 0)
		return rl_fail((int)size, "recovery: fstat of %s", name);
	int err = 0;
	const char *how = "ftruncate";
	if (torn_end >= (uint64_t)size) {
		err = rl_file_truncate(fd, name, end);
	} else {
		static const uint8_t zeros[64 << 10];
		how = "writing zeros";
		for (uint64_t at = end; at < torn_end && !err; at += sizeof(zeros)) {
			size_t n = torn_end - at < sizeof(zeros) ? (size_t)(torn_end - at)
								  : sizeof(zeros);
			err = rl_file_pwrite(fd, name, zeros, n, at);
		}
	}
	if (!err) {
		how = "fdatasync";
		err = rl_file_fdatasync(fd, name);
	}
	return err ? rl_fail(err, "recovery: cutting %s at offset %" PRIu64 ": %s", name, end, how)
		   : 0;
}

int rl_seg_judge(int fd, const struct rl_seg_header *h, int is_last, struct rl_seg_verdict *out)
{
	memset(out, 0, sizeof(*out));
	struct rl_seg_scan scan;
	int err = rl_scan_init(&scan, fd, h);
	if (err)
		return err;
	enum rl_frame_status why;
	while ((err = rl_scan_next(&scan, &why)) == 1) {
		out->last_crc = scan.info.crc;
		if (scan.info.pad)
			continue;
		if (scan.info.hole) {
			out->holes++;
			out->lost += scan.info.nrecs;
		} else {
			out->frames++;
			out->records += scan.info.nrecs;
		}
	}
	rl_scan_free(&scan);
	if (err < 0)
		return err;
	out->end = scan.off;
	out->next_lsn = scan.expect_lsn;
	out->file_size = scan.file_size;
	out->cut_end = scan.file_size;
	out->damaged = why != RL_FRAME_END || out->end != out->file_size;
	if (out->damaged && is_last) {
		/* Only a torn tail is damage in the last segment; stale bytes are not. */
		out->damaged = rl_seg_torn_tail(fd, h->log_id, out->end, out->next_lsn, &out->cut_end);
		if (out->damaged < 0)
			return out->damaged;
	}
	if (out->damaged)
		out->reason = why != RL_FRAME_END ? rl_frame_status_str(why)
			      : is_last		  ? "a frame written after a gap (torn write)"
						  : "bytes after the last frame";
	return 0;
}

int rl_seg_read_header(int fd, struct rl_seg_header *h, uint64_t *file_size)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*file_size = (uint64_t)st.st_size;
	uint8_t hdr[RL_SEG_HEADER_BYTES];
	if (*file_size < RL_SEG_HEADER_BYTES)
		return -EBADMSG;
	ssize_t n;
	do
		n = pread(fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(hdr))
		return -EBADMSG;
	return rl_seg_header_decode(hdr, h);
}

int rl_scan_init(struct rl_seg_scan *s, int fd, const struct rl_seg_header *h)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->off = RL_SEG_HEADER_BYTES;
	s->expect_lsn = h->first_lsn;
	s->log_id = h->log_id;
	return rl_scan_refresh(s);
}

void rl_scan_free(struct rl_seg_scan *s)
{
	free(s->buf);
	s->buf = NULL;
}

int rl_scan_refresh(struct rl_seg_scan *s)
{
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		return -errno;
	s->file_size = (uint64_t)st.st_size;
	s->win_len = 0;
	/* A refresh means the reader is at the end of what it had: most of a big read from
	 * here would be a prepared file's zeros, read again at every poll.  Start small. */
	s->next_read = RL_SCAN_TAIL_READ;
	return 0;
}

/* Make [off, off + want) readable in the window if the file has it; returns the
 * number of bytes from off that are (<= want), or -errno. */
static int64_t window(struct rl_seg_scan *s, uint64_t off, uint64_t want)
{
	if (off >= s->file_size)
		return 0;
	if (want > s->file_size - off)
		want = s->file_size - off;
	if (off >= s->win_off && off + want <= s->win_off + s->win_len)
		return (int64_t)want;
	size_t step = s->next_read ? s->next_read : RL_SCAN_WINDOW;
	size_t need = want > step ? (size_t)want : step;
	s->next_read = step * 2 < RL_SCAN_WINDOW ? step * 2 : RL_SCAN_WINDOW; /* grows back */
	if (need > s->cap) {
		uint8_t *p = realloc(s->buf, need);
		if (!p)
			return -ENOMEM;
		s->buf = p;
		s->cap = need;
	}
	uint64_t len = s->file_size - off < need ? s->file_size - off : need;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(s->fd, s->buf + got, len - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break; /* the file shrank under us: treat as its end */
		got += (size_t)n;
	}
	s->win_off = off;
	s->win_len = got;
	return (int64_t)(want < got ? want : got);
}

int rl_scan_peek(struct rl_seg_scan *s, uint64_t off, struct rl_frame_info *info)
{
	int64_t have = window(s, off, RL_FRAME_HEADER_BYTES);
	if (have < 0)
		return (int)have;
	if (have < RL_FRAME_HEADER_BYTES)
		return 0;
	const uint8_t *p = s->buf + (off - s->win_off);
	if (rl_frame_check_header(p, 0, s->log_id, info) != RL_FRAME_OK)
		return 0;
	return info->frame_len <= s->file_size - off;
}

/* One pass of rl_scan_find_any: frames of log `want` only, or of any log if 0. */
static int find_frame(struct rl_seg_scan *s, uint64_t from, uint64_t want, uint64_t *budget,
		      uint64_t *log_id, uint64_t *lsn, uint64_t *at)
{
	for (uint64_t p = from; p + RL_FRAME_HEADER_BYTES <= s->file_size; p += RL_FRAME_ALIGN) {
		int64_t have = window(s, p, RL_FRAME_HEADER_BYTES);
		if (have < 0)
			return (int)have;
		const uint8_t *f = s->buf + (p - s->win_off);
		if (!rl_is_entry_magic(rl_entry_magic(f)))
			continue;
		uint64_t id = rl_entry_log_id(f);
		struct rl_frame_info info;
		if ((want && id != want) || rl_frame_check_header(f, 0, id, &info) != RL_FRAME_OK ||
		    info.frame_len > s->file_size - p)
			continue;
		if (!info.hole) {
			if (info.frame_len > *budget)
				return -E2BIG;
			*budget -= info.frame_len;
			have = window(s, p, info.frame_len);
			if (have < 0)
				return (int)have;
			f = s->buf + (p - s->win_off);
			if (rl_frame_check(f, (uint64_t)have, 0, id, &info) != RL_FRAME_OK)
				continue;
		}
		*log_id = id;
		*lsn = info.first_lsn;
		*at = p;
		return 1;
	}
	return 0;
}

int rl_scan_find_any(struct rl_seg_scan *s, uint64_t from, uint64_t budget, uint64_t prefer,
		     uint64_t *log_id, uint64_t *lsn, uint64_t *at)
{
	int got = prefer ? find_frame(s, from, prefer, &budget, log_id, lsn, at) : 0;
	return got ? got : find_frame(s, from, 0, &budget, log_id, lsn, at);
}

int rl_scan_next(struct rl_seg_scan *s, enum rl_frame_status *why)
{
	int64_t have = window(s, s->off, RL_FRAME_HEADER_BYTES);
	if (have < 0)
		return (int)have;
	if (have == 0) {
		*why = RL_FRAME_END;
		return 0;
	}
	const uint8_t *p = s->buf + (s->off - s->win_off);
	if (have < RL_FRAME_HEADER_BYTES) {
		*why = rl_frame_check(p, (uint64_t)have, s->expect_lsn, s->log_id, &s->info);
		return 0;
	}
	enum rl_frame_status st = rl_frame_check_header(p, s->expect_lsn, s->log_id, &s->info);
	if (st != RL_FRAME_OK) {
		*why = st;
		return 0;
	}
	/* The length is plausible (<= RL_FRAME_MAX_BYTES unless a hole); never read or
	 * allocate past the end of the file for it. */
	if (s->info.frame_len > s->file_size - s->off) {
		*why = RL_FRAME_TRUNCATED;
		return 0;
	}
	if (s->info.hole)
		goto accept; /* fully checked with its header; its body is never read */
	have = window(s, s->off, s->info.frame_len);
	if (have < 0)
		return (int)have;
	p = s->buf + (s->off - s->win_off);
	st = rl_frame_check(p, (uint64_t)have, s->expect_lsn, s->log_id, &s->info);
	if (st != RL_FRAME_OK) {
		*why = st;
		return 0;
	}
accept:
	s->frame = p;
	s->off += s->info.frame_len;
	s->expect_lsn += s->info.nrecs;
	*why = RL_FRAME_OK;
	return 1;
}

const char *rl_seg_header_problem(int read, const struct rl_seg_header *h, uint64_t name_lsn,
				 int first, uint64_t log_id, uint64_t expect, uint32_t prev_crc)
{
	if (read == -EBADMSG)
		return "invalid segment header";
	if (h->first_lsn != name_lsn)
		return "segment header names another first LSN than the file name";
	if (!first && h->log_id != log_id)
		return "segment belongs to another log (log id mismatch)";
	if (!first && h->first_lsn != expect)
		return "segment does not start after the previous one (missing or truncated "
		       "segment)";
	if (!first && h->prev_tail_crc != prev_crc)
		return "segment does not chain to the previous one (its last frame differs)";
	return NULL;
}
