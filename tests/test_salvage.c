/*
 * Salvage recovery (RINGLOG_RECOVER_SKIP_CORRUPTED), one kind of damage at a time:
 * what is kept, what is lost (exactly the damaged batches), the holes that stand
 * for them, what the other modes and readers make of a salvaged log, and every way
 * salvage can fail.  tests/test_powerloss_salvage.c adds random damage and interrupted
 * salvages.
 *
 * The log: 40 batches of 3 records of 100 bytes (batch b = LSNs 3b+1..3b+3, tag b),
 * each waited for, in 4192-byte segments: 12 frames of 344 bytes per segment, from
 * offset 64.  It is written buffered, so that every segment has this layout (with
 * direct I/O a pad aligns each segment's first frame, wherever the ring is); the
 * cases at the end cover what direct I/O and prepared files leave on disk.
 */
#include "testutil.h"

#include "format.h"
#include "recovery.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define NB 40
#define NREC 3
#define RLEN 100
#define FRAME ((uint64_t)RINGLOG_FRAME_BYTES(NREC, NREC * RLEN)) /* 344 */
#define PER_SEG 12
#define SKIP RINGLOG_RECOVER_SKIP_CORRUPTED

static struct ringlog_options g_opts;

static void make_log(const char *dir)
{
	tu_options(&g_opts, RL_SEG_HEADER_BYTES + PER_SEG * FRAME, 1u << 16);
	g_opts.io_mode = RINGLOG_IO_BUFFERED;
	struct ringlog *log = tu_open(dir, &g_opts);
	for (uint64_t b = 0; b < NB; b++) {
		uint64_t lsn = tu_append_tagged(log, b, NREC, RLEN);
		assert_int_equal(lsn, NREC * b + 1);
		assert_int_equal(ringlog_wait(log, lsn + NREC - 1), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_int_equal(n, (NB + PER_SEG - 1) / PER_SEG);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(lsns[k], NREC * PER_SEG * k + 1);
	free(lsns);
}

/* Segment k (0-based) and the offset of batch b's frame in it. */
static const char *seg_of(const char *dir, uint64_t b)
{
	return tu_segment_path(dir, NREC * PER_SEG * (b / PER_SEG) + 1);
}
static uint64_t off_of(uint64_t b)
{
	return RL_SEG_HEADER_BYTES + FRAME * (b % PER_SEG);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void flip(const char *path, uint64_t off)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);
	assert_true(off < len);
	uint8_t b = buf[off] ^ 0x5a;
	tu_write_at(path, off, &b, 1);
	free(buf);
}

/* Write a segment file named by `name_lsn` holding only a header of this log (the
 * first segment's log id) that names `first_lsn`; its path into `path`. */
static void header_only_segment(const char *dir, uint64_t name_lsn, uint64_t first_lsn,
				char path[4096])
{
	size_t len;
	uint8_t *h0 = slurp(seg_of(dir, 0), &len);
	struct rl_seg_header h = {first_lsn, rl_get64(h0 + 16), first_lsn - 1, 0};
	free(h0);
	uint8_t hdr[RL_SEG_HEADER_BYTES];
	rl_seg_header_encode(&h, hdr);
	snprintf(path, 4096, "%s", tu_segment_path(dir, name_lsn));
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	close(fd);
}

/* Rename the last segment (batches 36..39, LSNs 109..120) to the name of LSN 110:
 * misnamed.  Its new path into `wrong`. */
static void misname_last(const char *dir, char wrong[4096])
{
	char last[4096];
	snprintf(last, sizeof(last), "%s", seg_of(dir, 36));
	snprintf(wrong, 4096, "%s", tu_segment_path(dir, NREC * 36 + 2));
	assert_int_equal(rename(last, wrong), 0);
}

/*
 * Read the whole log: every record must be batch b's (right LSN, contents, batch
 * fields) for a b in [0, nb) that is not lost[], in order, and every such batch must
 * be there whole.  Then a clean end.
 */
static void expect_batches(const char *dir, uint64_t nb, const char *lost)
{
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	uint8_t want[RLEN];
	for (uint64_t b = 0; b < nb; b++) {
		if (lost[b])
			continue;
		for (unsigned i = 0; i < NREC; i++) {
			int got = ringlog_reader_next(r, &rec);
			if (got != 1)
				fail_msg("batch %llu record %u: reader_next = %d (%s)",
					 (unsigned long long)b, i, got, ringlog_last_error());
			assert_int_equal(rec.lsn, NREC * b + 1 + i);
			assert_int_equal(rec.batch_first_lsn, NREC * b + 1);
			assert_int_equal(rec.batch_nrecs, NREC);
			assert_int_equal(rec.len, RLEN);
			tu_fill_record(want, RLEN, b, i);
			assert_memory_equal(rec.data, want, RLEN);
		}
	}
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	ringlog_reader_close(r);
}

/* What a salvage must report. */
struct salvaged {
	uint64_t damage_lsn, damage_offset;
	const char *damage_file; /* path of the damaged segment */
	uint64_t lost_lsns, cut_bytes, next_lsn;
	uint32_t holes, set_aside, rewritten;
};

static void expect_report(const struct ringlog_recovery *r, const struct salvaged *s)
{
	assert_int_equal(r->mode, SKIP);
	assert_int_equal(r->damage, -EBADMSG);
	const char *base = strrchr(s->damage_file, '/') + 1;
	assert_string_equal(r->damage_file, base);
	assert_int_equal(r->damage_offset, s->damage_offset);
	assert_int_equal(r->damage_lsn, s->damage_lsn);
	assert_true(r->damage_reason[0] != '\0');
	assert_int_equal(r->lost_lsns, s->lost_lsns);
	assert_int_equal(r->holes, s->holes);
	assert_int_equal(r->set_aside_segments, s->set_aside);
	assert_int_equal(r->rewritten_headers, s->rewritten);
	assert_int_equal(r->cut_bytes, s->cut_bytes);
	assert_int_equal(r->dropped_segments, 0);
	assert_int_equal(r->last_lsn, s->next_lsn - 1);
	for (size_t i = 0; i < sizeof(r->reserved) / sizeof(r->reserved[0]); i++)
		assert_int_equal(r->reserved[i], 0);
	assert_int_equal(r->reserved_pad, 0);
}

/*
 * The whole salvage cycle on a damaged log: the default mode would refuse it (or,
 * with `tail_only`, cut it), ringlog_check(SKIP) predicts and changes nothing, the
 * open does what it predicted, the log then reads back as expected, is clean for
 * every mode, salvages to no change a second time, and takes appends at the LSN
 * after the last one kept.
 */
static void salvage_and_check(const char *dir, const struct salvaged *s, const char *lost,
			      int tail_only)
{
	size_t len0, len1;
	char *before = tu_dir_digest(dir, &len0);
	struct ringlog_recovery check;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_TOLERATE_TAIL, &check),
			 tail_only ? 0 : -EBADMSG);
	assert_int_equal(ringlog_check(dir, SKIP, &check), 0);
	struct ringlog *log;
	char *after = tu_dir_digest(dir, &len1);
	assert_int_equal(len0, len1);
	assert_memory_equal(before, after, len0);
	free(before);
	free(after);
	expect_report(&check, s);

	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	log = tu_open(dir, &o);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_recovery_report(log, &rep), 0);
	assert_memory_equal(&rep, &check, sizeof(rep));
	assert_int_equal(ringlog_next_lsn(log), s->next_lsn);
	assert_int_equal(ringlog_close(log), 0);
	expect_batches(dir, NB, lost);

	/* Clean now, for every mode; a second salvage finds nothing to do. */
	for (uint32_t m = 0; m <= SKIP; m++) {
		assert_int_equal(ringlog_check(dir, m, &rep), 0);
		assert_int_equal(rep.damage, 0);
		assert_int_equal(rep.holes, 0);
		assert_int_equal(rep.lost_lsns, s->lost_lsns); /* the holes are there */
		assert_int_equal(rep.cut_bytes, 0);
		assert_int_equal(rep.last_lsn, s->next_lsn - 1);
	}
	/* Appends go on after the last LSN kept, holes never reused, and survive. */
	log = tu_open(dir, &g_opts);
	uint64_t lsn = tu_append_tagged(log, 7777, 2, 50);
	assert_int_equal(lsn, s->next_lsn);
	assert_int_equal(ringlog_wait(log, lsn + 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(dir, &g_opts);
	assert_int_equal(ringlog_next_lsn(log), s->next_lsn + 2);
	assert_int_equal(ringlog_close(log), 0);
}

/* The hole frame salvage wrote at `off` of `path`. */
static void expect_hole_at(const char *path, uint64_t off, uint64_t frame_len, uint64_t first,
			   uint64_t nrecs)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);
	assert_true(off + frame_len <= len);
	struct rl_frame_info info;
	uint64_t log_id = rl_get64(buf + 16);
	assert_int_equal(rl_get32(buf + off), RL_HOLE_MAGIC);
	assert_int_equal(rl_frame_check(buf + off, len - off, first, log_id, &info), RL_FRAME_OK);
	assert_int_equal(info.hole, 1);
	assert_int_equal(info.frame_len, frame_len);
	assert_int_equal(info.nrecs, nrecs);
	free(buf);
}

static void flipped_byte_in_a_sealed_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s", seg_of(dir, 17));
	size_t len;
	uint8_t *orig = slurp(path, &len);
	flip(path, off_of(17) + 200); /* inside a record of batch 17 */
	char lost[NB] = {0};
	lost[17] = 1;
	struct salvaged s = {.damage_lsn = NREC * 17 + 1, .damage_offset = off_of(17),
			     .damage_file = path, .lost_lsns = NREC, .holes = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(path, off_of(17), FRAME, NREC * 17 + 1, NREC);
	/* Only the hole's 32 bytes changed: the damaged bytes after them are kept. */
	size_t len2;
	uint8_t *now = slurp(path, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(now, orig, off_of(17));
	assert_memory_equal(now + off_of(17) + 32, orig + off_of(17) + 32, 200 - 32);
	assert_memory_equal(now + off_of(18), orig + off_of(18), len - off_of(18));
	free(orig);
	free(now);
}

static void damage_in_the_last_segment_keeps_the_frames_after_it(void **state)
{
	const char *dir = *state;
	make_log(dir);
	/* Batches 36..39 are in the last segment: damage 37's length field, and tear the
	 * last frame (39). */
	char path[4096];
	snprintf(path, sizeof(path), "%s", seg_of(dir, 37));
	flip(path, off_of(37) + 9);
	tu_truncate(path, off_of(39) + 100);
	char lost[NB] = {0};
	lost[37] = lost[39] = 1;
	struct salvaged s = {.damage_lsn = NREC * 37 + 1, .damage_offset = off_of(37),
			     .damage_file = path, .lost_lsns = NREC, .holes = 1,
			     .cut_bytes = 100, .next_lsn = NREC * 39 + 1};
	salvage_and_check(dir, &s, lost, 1);
	expect_hole_at(path, off_of(37), FRAME, NREC * 37 + 1, NREC);
}

static void missing_middle_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg0[4096], seg2[4096];
	snprintf(seg0, sizeof(seg0), "%s", seg_of(dir, 0));
	snprintf(seg2, sizeof(seg2), "%s", seg_of(dir, 24));
	assert_int_equal(unlink(seg_of(dir, 12)), 0);
	char lost[NB] = {0};
	memset(lost + 12, 1, PER_SEG);
	uint64_t end0 = off_of(0) + PER_SEG * FRAME;
	struct salvaged s = {.damage_lsn = NREC * 12 + 1, .damage_offset = end0,
			     .damage_file = seg0, .lost_lsns = NREC * PER_SEG, .holes = 1,
			     .rewritten = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	/* A 32-byte hole ends segment 0; segment 2's header chains to it. */
	expect_hole_at(seg0, end0, 32, NREC * 12 + 1, NREC * PER_SEG);
	size_t len;
	uint8_t *h0 = slurp(seg0, &len), *h2;
	assert_int_equal(len, end0 + 32);
	size_t len2;
	h2 = slurp(seg2, &len2);
	struct rl_seg_header hdr;
	assert_int_equal(rl_seg_header_decode(h2, &hdr), 0);
	assert_int_equal(hdr.prev_tail_crc, rl_get32(h0 + end0 + 4));
	free(h0);
	free(h2);
}

/* A same-named segment of another log takes segment 1's place: it is set aside
 * (renamed, bytes intact), and its LSNs become a hole. */
static void foreign_segment_set_aside(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	char seg1[4096], alien[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	snprintf(alien, sizeof(alien), "%s", seg_of(other, 12));
	size_t alen;
	uint8_t *abytes = slurp(alien, &alen);
	assert_int_equal(rename(alien, seg1), 0);
	char lost[NB] = {0};
	memset(lost + 12, 1, PER_SEG);
	char seg0[4096];
	snprintf(seg0, sizeof(seg0), "%s", seg_of(dir, 0));
	struct salvaged s = {.damage_lsn = NREC * 12 + 1, .damage_offset = 0,
			     .damage_file = seg1, .lost_lsns = NREC * PER_SEG, .holes = 1,
			     .set_aside = 1, .rewritten = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", seg1);
	size_t len;
	uint8_t *kept = slurp(aside, &len);
	assert_int_equal(len, alen);
	assert_memory_equal(kept, abytes, len);
	assert_int_equal(access(seg1, F_OK), -1);
	free(kept);
	free(abytes);
	tu_rmrf(other);
	free(other);
}

/* A segment of this log whose first LSN is implausibly far after the end of the
 * others (2^50) is set aside, not joined with 2^50 LSNs of holes. */
static void far_segment_set_aside(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char far[4096];
	header_only_segment(dir, 1ull << 50, 1ull << 50, far);
	char lost[NB] = {0};
	struct salvaged s = {.damage_lsn = 1ull << 50, .damage_offset = 0, .damage_file = far,
			     .set_aside = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", far);
	assert_int_equal(access(aside, F_OK), 0);
}

static void invalid_header_written_again(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	size_t len;
	uint8_t *orig = slurp(seg1, &len);
	flip(seg1, 20); /* the log id: the header CRC fails */
	char lost[NB] = {0};
	struct salvaged s = {.damage_lsn = NREC * 12 + 1, .damage_offset = 0,
			     .damage_file = seg1, .rewritten = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	size_t len2;
	uint8_t *now = slurp(seg1, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(now, orig, len); /* the header is exactly what it was */
	free(orig);
	free(now);
}

/* A middle segment emptied (0 bytes): a header is written into it, its LSNs become
 * a hole at its end, and the next segment chains to that hole.  (The read-only check
 * must predict this too: the fuzzer found it scanning a file shorter than a header.) */
static void empty_middle_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	tu_truncate(seg1, 0);
	char lost[NB] = {0};
	memset(lost + 12, 1, PER_SEG);
	struct salvaged s = {.damage_lsn = NREC * 12 + 1, .damage_offset = 0,
			     .damage_file = seg1, .lost_lsns = NREC * PER_SEG, .holes = 1,
			     .rewritten = 2, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(seg1, RL_SEG_HEADER_BYTES, 32, NREC * 12 + 1, NREC * PER_SEG);
	assert_int_equal(tu_file_size(seg1), RL_SEG_HEADER_BYTES + 32);
}

/* The first segment's header is the one damaged: the log id comes from the next. */
static void invalid_first_header(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg0[4096];
	snprintf(seg0, sizeof(seg0), "%s", seg_of(dir, 0));
	flip(seg0, 0);
	char lost[NB] = {0};
	struct salvaged s = {.damage_lsn = 1, .damage_offset = 0, .damage_file = seg0,
			     .rewritten = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

static void truncated_sealed_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096], seg2[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	snprintf(seg2, sizeof(seg2), "%s", seg_of(dir, 24));
	uint64_t size = tu_file_size(seg1);
	tu_truncate(seg1, off_of(16) + 50);
	char lost[NB] = {0};
	memset(lost + 16, 1, 8); /* batches 16..23 */
	struct salvaged s = {.damage_lsn = NREC * 16 + 1, .damage_offset = off_of(16),
			     .damage_file = seg1, .lost_lsns = NREC * 8, .holes = 1,
			     .cut_bytes = 50, .rewritten = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(seg1, off_of(16), 32, NREC * 16 + 1, NREC * 8);
	assert_int_equal(tu_file_size(seg1), off_of(16) + 32);
	assert_true(size > off_of(16));
}

/* A copy of an older frame of the same segment, CRC intact, over batch 20's: its
 * LSN gives it away; only batch 20 is lost. */
static void stale_frame_copy(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	size_t len;
	uint8_t *buf = slurp(seg1, &len);
	tu_write_at(seg1, off_of(20), buf + off_of(14), FRAME);
	free(buf);
	char lost[NB] = {0};
	lost[20] = 1;
	struct salvaged s = {.damage_lsn = NREC * 20 + 1, .damage_offset = off_of(20),
			     .damage_file = seg1, .lost_lsns = NREC, .holes = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

/* Several damaged frames in a row make one hole. */
static void adjacent_damage_makes_one_hole(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	static const uint8_t junk[3 * FRAME];
	tu_write_at(seg1, off_of(13) + 8, junk, 3 * FRAME - 16);
	char lost[NB] = {0};
	lost[13] = lost[14] = lost[15] = 1;
	struct salvaged s = {.damage_lsn = NREC * 13 + 1, .damage_offset = off_of(13),
			     .damage_file = seg1, .lost_lsns = 3 * NREC, .holes = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(seg1, off_of(13), 3 * FRAME, NREC * 13 + 1, 3 * NREC);
}

/* A well-formed frame of this log inside a damaged stretch, whose LSN is far beyond
 * what the stretch could have held, is not taken as the place to go on from. */
static void implausible_lsn_is_not_a_resync_point(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s", seg_of(dir, 37));
	size_t len;
	uint8_t *buf = slurp(path, &len);
	uint64_t log_id = rl_get64(buf + 16);
	free(buf);
	uint8_t f[40] = {0};
	rl_frame_header_fill(f, sizeof(f), 1, NREC * 37 + 1 + 1000000, log_id);
	rl_put32(f + 32, 4);
	memcpy(f + 36, "far!", 4);
	rl_frame_seal(f);
	rl_put32(f, RL_FRAME_MAGIC);
	flip(path, off_of(37) + 100);
	tu_write_at(path, off_of(38), f, sizeof(f));
	char lost[NB] = {0};
	lost[37] = lost[38] = 1;
	struct salvaged s = {.damage_lsn = NREC * 37 + 1, .damage_offset = off_of(37),
			     .damage_file = path, .lost_lsns = 2 * NREC, .holes = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 1);
	expect_hole_at(path, off_of(37), 2 * FRAME, NREC * 37 + 1, 2 * NREC);
}

/* Retention removed segment 1, and another log's segment 1 was copied in: the log id
 * most headers carry wins, the stranger is set aside, nothing of this log is lost
 * (the review's first case). */
static void foreign_first_segment_after_retention(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	assert_int_equal(unlink(seg_of(dir, 0)), 0);
	char seg0[4096];
	snprintf(seg0, sizeof(seg0), "%s", seg_of(dir, 0));
	assert_int_equal(rename(seg_of(other, 0), seg0), 0);
	char lost[NB] = {0};
	memset(lost, 1, PER_SEG); /* gone with retention, not lost to damage */
	struct salvaged s = {.damage_lsn = 1, .damage_offset = 0, .damage_file = seg0,
			     .set_aside = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	tu_rmrf(other);
	free(other);
}

/* The first segment's header damaged and another log's segment 2 copied in: the
 * first is this log's (its frames say so) and gets its header back; the stranger is
 * set aside and its LSNs become a hole (the review's second case). */
static void damaged_header_and_a_foreign_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	char seg0[4096], seg1[4096];
	snprintf(seg0, sizeof(seg0), "%s", seg_of(dir, 0));
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	flip(seg0, 20);
	assert_int_equal(rename(seg_of(other, 12), seg1), 0);
	char lost[NB] = {0};
	memset(lost + 12, 1, PER_SEG);
	struct salvaged s = {.damage_lsn = 1, .damage_offset = 0, .damage_file = seg0,
			     .lost_lsns = NREC * PER_SEG, .holes = 1, .set_aside = 1,
			     .rewritten = 2, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	tu_rmrf(other);
	free(other);
}

/* The last segment renamed (misnamed): it is set aside, and since it holds this log's
 * LSNs past the end of what is kept, holes for them end the log -- they are not
 * handed out again (the review's fifth case). */
static void misnamed_last_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char wrong[4096], seg2[4096];
	snprintf(seg2, sizeof(seg2), "%s", seg_of(dir, 24));
	misname_last(dir, wrong);
	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	struct salvaged s = {.damage_lsn = NREC * 36 + 2, .damage_offset = 0,
			     .damage_file = wrong, .lost_lsns = NREC * (NB - 36), .holes = 1,
			     .set_aside = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(seg2, off_of(24) + PER_SEG * FRAME, 32, NREC * 36 + 1, NREC * (NB - 36));
}

/* One segment of this log and one of another, as many of each: the oldest segment's
 * log wins the tie, as in the other modes (point-in-time keeps the same), and the
 * other is set aside (the review's tie case). */
static void two_logs_tied_the_oldest_wins(void **state)
{
	const char *dir = *state;
	char *other = tu_tmpdir();
	struct ringlog_options o;
	tu_options(&o, 1u << 20, 1u << 16);
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 0, NREC, RLEN) + 2), 0);
	assert_int_equal(ringlog_close(log), 0);
	make_log(other);
	char from[4096], to[4096];
	snprintf(from, sizeof(from), "%s", seg_of(other, 12));
	snprintf(to, sizeof(to), "%s", tu_segment_path(dir, 37));
	assert_int_equal(rename(from, to), 0);
	char lost[NB];
	memset(lost, 1, NB);
	lost[0] = 0;
	/* LSNs 4..36 were never written: the hole for them is the gap before the
	 * stranger's name, which point-in-time would also drop. */
	struct salvaged s = {.damage_lsn = 37, .damage_offset = 0, .damage_file = to,
			     .set_aside = 1, .next_lsn = NREC + 1};
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_POINT_IN_TIME, &rep), 0);
	assert_int_equal(rep.last_lsn, NREC);
	salvage_and_check(dir, &s, lost, 0);
	tu_rmrf(other);
	free(other);
}

/* Whose a segment with an invalid header is, is told by the first frame in it that
 * passes its CRC -- not by a first frame header that is itself damaged. */
static void invalid_header_ownership_from_a_checked_frame(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	/* This log's segment 2: header and the log id of its first frame damaged.
	 * Kept: its second frame says it is this log's; only the first batch is lost. */
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	flip(seg1, 20);
	flip(seg1, off_of(12) + 26);
	/* The other log's segment 3 in place of this log's, header and first frame
	 * magic damaged: set aside, not kept and cut. */
	char seg2[4096];
	snprintf(seg2, sizeof(seg2), "%s", seg_of(dir, 24));
	assert_int_equal(rename(seg_of(other, 24), seg2), 0);
	size_t alen;
	uint8_t *alien = slurp(seg2, &alen);
	flip(seg2, 20);
	flip(seg2, off_of(24));
	alien[20] ^= 0x5a;
	alien[off_of(24)] ^= 0x5a;
	char lost[NB] = {0};
	lost[12] = 1;
	memset(lost + 24, 1, PER_SEG);
	struct salvaged s = {.damage_lsn = NREC * 12 + 1, .damage_offset = 0,
			     .damage_file = seg1, .lost_lsns = NREC * (1 + PER_SEG), .holes = 2,
			     .set_aside = 1, .rewritten = 2, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", seg2);
	size_t len;
	uint8_t *kept = slurp(aside, &len);
	assert_int_equal(len, alen);
	assert_memory_equal(kept, alien, len);
	free(kept);
	free(alien);
	tu_rmrf(other);
	free(other);
}

/* A misnamed last segment whose first frame is damaged still claims the LSNs of the
 * frames after it (its frames are read as salvage reads them). */
static void misnamed_last_segment_with_damage_claims_its_lsns(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char wrong[4096];
	misname_last(dir, wrong);
	flip(wrong, off_of(36) + 100);
	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	struct salvaged s = {.damage_lsn = NREC * 36 + 2, .damage_offset = 0,
			     .damage_file = wrong, .lost_lsns = NREC * (NB - 36), .holes = 1,
			     .set_aside = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

/* A misnamed last segment whose header is also damaged: its frames say it holds LSNs
 * before its name, so it is set aside as misnamed (not kept and cut) and claims them
 * (the third review's second case). */
static void misnamed_last_segment_with_invalid_header(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char wrong[4096];
	misname_last(dir, wrong);
	flip(wrong, 20);
	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	struct salvaged s = {.damage_lsn = NREC * 36 + 2, .damage_offset = 0,
			     .damage_file = wrong, .lost_lsns = NREC * (NB - 36), .holes = 1,
			     .set_aside = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

/* The last segment's header and first frame damaged, and that frame's record holds
 * a whole valid frame of another log: ownership goes by this log's frames first, so
 * the segment is kept (the third review's third case). */
static void another_logs_frame_inside_a_record(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char last[4096];
	snprintf(last, sizeof(last), "%s", seg_of(dir, 36));
	flip(last, 20);
	uint8_t f[40] = {0};
	rl_frame_header_fill(f, sizeof(f), 1, 5, 0x5eed5eed5eedull);
	rl_put32(f + 32, 4);
	memcpy(f + 36, "else", 4);
	rl_frame_seal(f);
	rl_put32(f, RL_FRAME_MAGIC);
	tu_write_at(last, off_of(36) + 40, f, sizeof(f)); /* inside batch 36's record */
	char lost[NB] = {0};
	lost[36] = 1;
	struct salvaged s = {.damage_lsn = NREC * 36 + 1, .damage_offset = 0,
			     .damage_file = last, .lost_lsns = NREC, .holes = 1, .rewritten = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

/* A segment with an invalid header that starts inside the LSNs of the one before
 * (an overlap) is set aside, and the LSNs it holds past the end are claimed. */
static void overlapping_last_segment_with_invalid_header(void **state)
{
	const char *dir = *state;
	make_log(dir);
	/* The last segment (batches 36..39) copied in under the name of LSN 100 (inside
	 * segment 3's LSNs 73..108), its header damaged; the real last one removed. */
	char last[4096], inside[4096];
	snprintf(last, sizeof(last), "%s", seg_of(dir, 36));
	snprintf(inside, sizeof(inside), "%s", tu_segment_path(dir, 100));
	size_t len;
	uint8_t *buf = slurp(last, &len);
	assert_int_equal(unlink(last), 0);
	int fd = open(inside, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	flip(inside, 20);
	/* Its frames start at LSN 109 but the name says 100: read from the name, the
	 * first frame fails the LSN rule and salvage's search skips to LSN 109 (9 LSNs
	 * on, plausible after 344 bytes), so it claims LSNs up to 120. */
	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	char seg2[4096];
	snprintf(seg2, sizeof(seg2), "%s", seg_of(dir, 24));
	struct salvaged s = {.damage_lsn = 100, .damage_offset = 0, .damage_file = inside,
			     .lost_lsns = NREC * (NB - 36), .holes = 1, .set_aside = 1,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	expect_hole_at(seg2, off_of(24) + PER_SEG * FRAME, 32, NREC * 36 + 1, NREC * (NB - 36));
}

static void open_close_skip(const char *dir)
{
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_close(log), 0);
}

/* Three segments set aside -- another log's, a far one and a misnamed one whose LSNs
 * end the log -- and the salvage interrupted before any subset of the renames: every
 * such directory salvages to the same bytes and names as the uninterrupted run. */
static void interrupted_renames_converge(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	char from[4200], to[4096];
	/* another log's segment under a name of its own between this log's 2nd and 3rd */
	snprintf(from, sizeof(from), "%s", seg_of(other, 12));
	snprintf(to, sizeof(to), "%s", tu_segment_path(dir, 55));
	assert_int_equal(rename(from, to), 0);
	/* this log's last segment misnamed, and a segment of it far beyond the rest */
	misname_last(dir, to);
	header_only_segment(dir, 1ull << 50, 1ull << 50, to);

	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", tu_segment_path(dir, 55));
	struct salvaged s = {.damage_lsn = 55, .damage_offset = 0, .damage_file = seg1,
			     .lost_lsns = NREC * (NB - 36), .holes = 1, .set_aside = 3,
			     .next_lsn = NREC * NB + 1};
	char *work = tu_tmpdir();
	char cmd[8400];
	tu_copy_dir(dir, work); /* the damaged log */
	salvage_and_check(dir, &s, lost, 0);
	size_t rlen;
	char *done = tu_dir_digest(dir, &rlen);
	const uint64_t aside[3] = {55, NREC * 36 + 2, 1ull << 50};
	for (unsigned mask = 0; mask < 8; mask++) {
		/* the salvaged log, with the renames in `mask` not yet made */
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir '%s' && cp -a '%s'/. '%s'/", work,
			 work, dir, work);
		assert_int_equal(system(cmd), 0);
		for (unsigned k = 0; k < 3; k++) {
			if (!(mask & (1u << k)))
				continue;
			snprintf(to, sizeof(to), "%s", tu_segment_path(work, aside[k]));
			snprintf(from, sizeof(from), "%s.salvaged", to);
			assert_int_equal(rename(from, to), 0);
		}
		open_close_skip(work);
		size_t wlen;
		char *again = tu_dir_digest(work, &wlen);
		if (wlen != rlen || memcmp(again, done, rlen) != 0)
			fail_msg("renames %u not made: the second salvage ends elsewhere", mask);
		free(again);
	}
	free(done);
	tu_rmrf(work);
	free(work);
	tu_rmrf(other);
	free(other);
}

/* Two set-aside segments of this log: the misnamed last one (LSNs 109..120) and a
 * header-only one whose header names 2^50.  The far claim is ignored, the near one
 * still ends the log with holes (the fourth review's second case). */
static void far_claim_does_not_void_a_near_one(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char wrong[4096], odd[4096];
	misname_last(dir, wrong);
	header_only_segment(dir, 500, 1ull << 50, odd);
	char lost[NB] = {0};
	memset(lost + 36, 1, NB - 36);
	struct salvaged s = {.damage_lsn = NREC * 36 + 2, .damage_offset = 0,
			     .damage_file = wrong, .lost_lsns = NREC * (NB - 36), .holes = 1,
			     .set_aside = 2, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
}

/* A damaged stretch longer than a hole may be takes several holes in a row (the
 * limit is lowered here from 4 GiB to 256 bytes); the first carries the LSNs.  And a
 * salvage interrupted after the later holes, before the first, ends the same. */
static void long_damage_takes_several_holes(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	static const uint8_t junk[3 * FRAME];
	tu_write_at(seg1, off_of(13) + 8, junk, 3 * FRAME - 16);
	size_t dlen;
	uint8_t *damaged = slurp(seg1, &dlen);
	char lost[NB] = {0};
	lost[13] = lost[14] = lost[15] = 1;
	uint64_t saved = rl_salvage_max_hole_bytes;
	rl_salvage_max_hole_bytes = 256;
	/* 1032 bytes: one of 136 with the LSNs, then seven of 128. */
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, SKIP, &rep), 0);
	open_close_skip(dir);
	size_t len;
	uint8_t *done = slurp(seg1, &len);
	/* Interrupted before the first hole (written last), after any number of the
	 * others (written in order): salvaging again gives the same bytes. */
	for (int k = 0; k <= 7; k++) {
		uint8_t *mix = malloc(len);
		memcpy(mix, damaged, len);
		memcpy(mix + off_of(13) + 136, done + off_of(13) + 136, 128 * (size_t)k);
		tu_write_at(seg1, 0, mix, len);
		open_close_skip(dir);
		size_t len2;
		uint8_t *again = slurp(seg1, &len2);
		assert_int_equal(len2, len);
		if (memcmp(again, done, len) != 0)
			fail_msg("interrupted after %d of the holes: a different result", k);
		free(again);
		free(mix);
	}
	tu_write_at(seg1, 0, damaged, dlen);
	struct salvaged s = {.damage_lsn = NREC * 13 + 1, .damage_offset = off_of(13),
			     .damage_file = seg1, .lost_lsns = 3 * NREC, .holes = 8,
			     .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 0);
	rl_salvage_max_hole_bytes = saved;
	expect_hole_at(seg1, off_of(13), 136, NREC * 13 + 1, 3 * NREC);
	for (int k = 0; k < 7; k++)
		expect_hole_at(seg1, off_of(13) + 136 + 128 * k, 128, NREC * 16 + 1, 0);
	free(done);
	free(damaged);
}

/* A damaged stretch with `forged` forged frame headers (this log's id, the LSN due,
 * a length of about 1 MiB, a wrong CRC) at its start, before the last segment's last
 * three frames.  Returns the path of that segment (static buffer). */
static const char *forge_headers(const char *dir, size_t forged, size_t region)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s", seg_of(dir, 36));
	size_t len;
	uint8_t *orig = slurp(path, &len);
	uint64_t log_id = rl_get64(orig + 16);
	size_t nlen = off_of(37) + region + (len - off_of(37));
	uint8_t *buf = calloc(1, nlen);
	assert_non_null(buf);
	memcpy(buf, orig, off_of(37));
	memcpy(buf + off_of(37) + region, orig + off_of(37), len - off_of(37));
	for (size_t k = 0; k < forged; k++) { /* 32 bytes apart: whole headers */
		uint8_t *f = buf + off_of(37) + 32 * k;
		rl_put32(f, RL_FRAME_MAGIC);
		rl_put32(f + 4, 0xdeadbeef);
		rl_frame_header_fill(f, (uint32_t)(region - 32 * forged), 1, NREC * 37 + 1, log_id);
	}
	tu_write_at(path, 0, buf, nlen);
	free(buf);
	free(orig);
	return path;
}

/* 20 forged headers: each costs a 1 MiB CRC check, within the search's budget; the
 * real frames after them are found. */
static void forged_headers_within_the_budget(void **state)
{
	const char *dir = *state;
	make_log(dir);
	const size_t region = 1u << 20;
	const char *path = forge_headers(dir, 20, region);
	char lost[NB] = {0};
	struct salvaged s = {.damage_lsn = NREC * 37 + 1, .damage_offset = off_of(37),
			     .damage_file = path, .holes = 1, .next_lsn = NREC * NB + 1};
	salvage_and_check(dir, &s, lost, 1);
	expect_hole_at(path, off_of(37), region, NREC * 37 + 1, 0);
}

/* 100 forged headers of about 1 MiB each would take more than the budget (64 MiB + 4
 * bytes per byte of the segment): salvage refuses, naming the place, rather than
 * decide without looking, and changes nothing. */
static void forged_headers_beyond_the_budget_refuse(void **state)
{
	const char *dir = *state;
	make_log(dir);
	forge_headers(dir, 100, 1u << 20);
	size_t len0, len1;
	char *before = tu_dir_digest(dir, &len0);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, SKIP, &rep), -EBADMSG);
	assert_string_equal(rep.damage_file, "00000000000000000109.rlog");
	assert_int_equal(rep.damage_offset, off_of(37));
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "budget"));
	char *after = tu_dir_digest(dir, &len1);
	assert_int_equal(len1, len0);
	assert_memory_equal(after, before, len0);
	free(before);
	free(after);
}

/* A reader asked for an LSN inside a hole starts after it; the batch fields of what
 * it returns are the real batches'. */
static void reader_starts_after_a_hole(void **state)
{
	const char *dir = *state;
	make_log(dir);
	flip(seg_of(dir, 5), off_of(5) + 40);
	flip(seg_of(dir, 6), off_of(6) + 40);
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = tu_open(dir, &o);
	/* A live reader too: the hole is durable, so it is skipped, not waited on. */
	struct ringlog_reader *live;
	assert_int_equal(ringlog_reader_open_live(log, NREC * 5 + 2, &live), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(live, &rec), 1);
	assert_int_equal(rec.lsn, NREC * 7 + 1);
	ringlog_reader_close(live);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, NREC * 6 + 3, &r), 0);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, NREC * 7 + 1);
	assert_int_equal(rec.batch_first_lsn, NREC * 7 + 1);
	ringlog_reader_close(r);
	assert_int_equal(ringlog_reader_open(dir, NREC * 4 + 3, &r), 0);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, NREC * 4 + 3);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, NREC * 7 + 1); /* the jump over LSNs 16..21 */
	ringlog_reader_close(r);
}

/* ---- how salvage fails ---- */

static void no_header_identifies_the_log(void **state)
{
	const char *dir = *state;
	make_log(dir);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	for (size_t k = 0; k < n; k++)
		flip(tu_segment_path(dir, lsns[k]), 60);
	free(lsns);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, SKIP, &rep), -EBADMSG);
	assert_string_equal(rep.damage_file, "00000000000000000001.rlog");
	assert_non_null(strstr(rep.damage_reason, "identifies the log"));
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_null(log);
	assert_non_null(strstr(ringlog_last_error(), "00000000000000000001.rlog"));
}

/* A write that fails (here: past RLIMIT_FSIZE) fails the open with its errno and a
 * message naming the file; the log is left for a later salvage to finish. */
static void write_failure_fails_the_open(void **state)
{
	const char *dir = *state;
	make_log(dir);
	flip(seg_of(dir, 17), off_of(17) + 200);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1024; /* below the hole's offset */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = NULL;
	int err = ringlog_open(dir, &o, &log);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(err, -EFBIG);
	assert_null(log);
	assert_non_null(strstr(ringlog_last_error(), "hole"));
	assert_non_null(strstr(ringlog_last_error(), "00000000000000000037.rlog"));
	char lost[NB] = {0};
	lost[17] = 1;
	struct salvaged s = {.damage_lsn = NREC * 17 + 1, .damage_offset = off_of(17),
			     .damage_file = seg_of(dir, 17), .lost_lsns = NREC, .holes = 1,
			     .next_lsn = NREC * NB + 1};
	char path[4096];
	snprintf(path, sizeof(path), "%s", seg_of(dir, 17));
	s.damage_file = path;
	salvage_and_check(dir, &s, lost, 0);
}

/* No free name to set a foreign segment aside under: -EEXIST, nothing renamed. */
static void no_name_to_set_aside(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char *other = tu_tmpdir();
	make_log(other);
	char seg1[4096];
	snprintf(seg1, sizeof(seg1), "%s", seg_of(dir, 12));
	assert_int_equal(rename(seg_of(other, 12), seg1), 0);
	char name[4300];
	for (int k = 0; k <= 1000; k++) {
		if (k == 0)
			snprintf(name, sizeof(name), "%s.salvaged", seg1);
		else
			snprintf(name, sizeof(name), "%s.salvaged.%d", seg1, k);
		int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		assert_true(fd >= 0);
		close(fd);
	}
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP;
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EEXIST);
	assert_non_null(strstr(ringlog_last_error(), "set"));
	assert_int_equal(access(seg1, F_OK), 0);
	tu_rmrf(other);
	free(other);
}

static void unknown_mode_is_rejected(void **state)
{
	const char *dir = *state;
	make_log(dir);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, SKIP + 1, &rep), -EINVAL);
	struct ringlog_options o = g_opts;
	o.recovery_mode = SKIP + 1;
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
}

/* Each test starts with the test seam at its default, whatever the one before did. */
static int setup(void **state)
{
	rl_salvage_max_hole_bytes = RL_HOLE_MAX_BYTES;
	return tu_setup_dir(state);
}
#define SALVAGE_TEST(f) cmocka_unit_test_setup_teardown(f, setup, tu_teardown_dir)

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    SALVAGE_TEST(flipped_byte_in_a_sealed_segment),
	    SALVAGE_TEST(damage_in_the_last_segment_keeps_the_frames_after_it),
	    SALVAGE_TEST(missing_middle_segment),
	    SALVAGE_TEST(foreign_segment_set_aside),
	    SALVAGE_TEST(far_segment_set_aside),
	    SALVAGE_TEST(invalid_header_written_again),
	    SALVAGE_TEST(invalid_first_header),
	    SALVAGE_TEST(empty_middle_segment),
	    SALVAGE_TEST(truncated_sealed_segment),
	    SALVAGE_TEST(stale_frame_copy),
	    SALVAGE_TEST(adjacent_damage_makes_one_hole),
	    SALVAGE_TEST(implausible_lsn_is_not_a_resync_point),
	    SALVAGE_TEST(foreign_first_segment_after_retention),
	    SALVAGE_TEST(damaged_header_and_a_foreign_segment),
	    SALVAGE_TEST(misnamed_last_segment),
	    SALVAGE_TEST(two_logs_tied_the_oldest_wins),
	    SALVAGE_TEST(invalid_header_ownership_from_a_checked_frame),
	    SALVAGE_TEST(misnamed_last_segment_with_damage_claims_its_lsns),
	    SALVAGE_TEST(overlapping_last_segment_with_invalid_header),
	    SALVAGE_TEST(misnamed_last_segment_with_invalid_header),
	    SALVAGE_TEST(another_logs_frame_inside_a_record),
	    SALVAGE_TEST(interrupted_renames_converge),
	    SALVAGE_TEST(far_claim_does_not_void_a_near_one),
	    SALVAGE_TEST(long_damage_takes_several_holes),
	    SALVAGE_TEST(forged_headers_within_the_budget),
	    SALVAGE_TEST(forged_headers_beyond_the_budget_refuse),
	    SALVAGE_TEST(reader_starts_after_a_hole),
	    SALVAGE_TEST(no_header_identifies_the_log),
	    SALVAGE_TEST(write_failure_fails_the_open),
	    SALVAGE_TEST(no_name_to_set_aside),
	    SALVAGE_TEST(unknown_mode_is_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
