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

/* ---- one kind of damage at a time, table-driven ---- */

/* What a case's damage function leaves for its expectations and later checks. */
struct scene {
	const char *dir;
	char file[4096];   /* the file the first damage is reported in */
	char extra[4096];  /* a second file the checks look at */
	char *other;	   /* another log's directory, if the case made one */
	uint8_t *saved;	   /* bytes saved before the damage, for the checks */
	size_t saved_len;
};

#define OFF(b) (RL_SEG_HEADER_BYTES + FRAME * ((b) % PER_SEG))
#define SEG_END (RL_SEG_HEADER_BYTES + PER_SEG * FRAME) /* end of a full segment */
/* Batches [a, b) as a bit set. */
#define BATCHES(a, b) ((~0ull >> (64 - ((b) - (a)))) << (a))
#define BATCH(a) (1ull << (a))

struct salvage_case {
	const char *name;
	void (*damage)(struct scene *sc); /* make_log has run; fills sc->file */
	uint64_t damage_lsn, damage_offset, lost_lsns, cut_bytes, next_lsn;
	uint32_t holes, set_aside, rewritten;
	uint64_t lost;	      /* batches lost */
	int tail_only;	      /* the default mode would only cut a torn tail */
	void (*check)(struct scene *sc); /* what else must hold after the salvage */
};

static void save(struct scene *sc, const char *path)
{
	sc->saved = slurp(path, &sc->saved_len);
}

static void copy_path(char out[4096], const char *path)
{
	snprintf(out, 4096, "%s", path);
}

/* Another log, made like this one, for its segments. */
static void make_other(struct scene *sc)
{
	sc->other = tu_tmpdir();
	make_log(sc->other);
}

/* A byte inside a record of batch 17 (sealed segment 1). */
static void d_flipped_byte(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 17));
	save(sc, sc->file);
	flip(sc->file, OFF(17) + 200);
}
/* Only the hole's 32 bytes changed: the damaged bytes after them are kept. */
static void c_flipped_byte(struct scene *sc)
{
	expect_hole_at(sc->file, OFF(17), FRAME, NREC * 17 + 1, NREC);
	size_t len;
	uint8_t *now = slurp(sc->file, &len);
	assert_int_equal(len, sc->saved_len);
	assert_memory_equal(now, sc->saved, OFF(17));
	assert_memory_equal(now + OFF(17) + 32, sc->saved + OFF(17) + 32, 200 - 32);
	assert_memory_equal(now + OFF(18), sc->saved + OFF(18), len - OFF(18));
	free(now);
}

/* Batches 36..39 are in the last segment: damage 37's length field, and tear the
 * last frame (39).  The frames after the damage are kept. */
static void d_last_segment(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 37));
	flip(sc->file, OFF(37) + 9);
	tu_truncate(sc->file, OFF(39) + 100);
}
static void c_last_segment(struct scene *sc)
{
	expect_hole_at(sc->file, OFF(37), FRAME, NREC * 37 + 1, NREC);
}

static void d_missing_middle(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 0));
	copy_path(sc->extra, seg_of(sc->dir, 24));
	assert_int_equal(unlink(seg_of(sc->dir, 12)), 0);
}
/* A 32-byte hole ends segment 0; segment 2's header chains to it. */
static void c_missing_middle(struct scene *sc)
{
	expect_hole_at(sc->file, SEG_END, 32, NREC * 12 + 1, NREC * PER_SEG);
	size_t len0, len2;
	uint8_t *h0 = slurp(sc->file, &len0), *h2 = slurp(sc->extra, &len2);
	assert_int_equal(len0, SEG_END + 32);
	struct rl_seg_header hdr;
	assert_int_equal(rl_seg_header_decode(h2, &hdr), 0);
	assert_int_equal(hdr.prev_tail_crc, rl_get32(h0 + SEG_END + 4));
	free(h0);
	free(h2);
}

/* A same-named segment of another log in segment 1's place. */
static void d_foreign_segment(struct scene *sc)
{
	make_other(sc);
	copy_path(sc->file, seg_of(sc->dir, 12));
	save(sc, seg_of(sc->other, 12));
	assert_int_equal(rename(seg_of(sc->other, 12), sc->file), 0);
}
/* Set aside: renamed, bytes intact. */
static void c_set_aside_intact(struct scene *sc)
{
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", sc->file);
	size_t len;
	uint8_t *kept = slurp(aside, &len);
	assert_int_equal(len, sc->saved_len);
	assert_memory_equal(kept, sc->saved, len);
	assert_int_equal(access(sc->file, F_OK), -1);
	free(kept);
}

/* A segment of this log whose first LSN is 2^50, far after the others. */
static void d_far_segment(struct scene *sc)
{
	header_only_segment(sc->dir, 1ull << 50, 1ull << 50, sc->file);
}
static void c_far_segment(struct scene *sc)
{
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", sc->file);
	assert_int_equal(access(aside, F_OK), 0);
}

/* Segment 1's log id flipped: the header CRC fails. */
static void d_invalid_header(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 12));
	save(sc, sc->file);
	flip(sc->file, 20);
}
/* The header is written again exactly as it was. */
static void c_invalid_header(struct scene *sc)
{
	size_t len;
	uint8_t *now = slurp(sc->file, &len);
	assert_int_equal(len, sc->saved_len);
	assert_memory_equal(now, sc->saved, len);
	free(now);
}

static void d_invalid_first_header(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 0));
	flip(sc->file, 0);
}

/* Segment 1 emptied (0 bytes).  (The read-only check must predict this too: the
 * fuzzer found it scanning a file shorter than a header.) */
static void d_empty_middle(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 12));
	tu_truncate(sc->file, 0);
}
/* A header is written into it, its LSNs become a hole after it. */
static void c_empty_middle(struct scene *sc)
{
	expect_hole_at(sc->file, RL_SEG_HEADER_BYTES, 32, NREC * 12 + 1, NREC * PER_SEG);
	assert_int_equal(tu_file_size(sc->file), RL_SEG_HEADER_BYTES + 32);
}

/* Segment 1 cut 50 bytes into batch 16. */
static void d_truncated_sealed(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 12));
	assert_true(tu_file_size(sc->file) > OFF(16));
	tu_truncate(sc->file, OFF(16) + 50);
}
static void c_truncated_sealed(struct scene *sc)
{
	expect_hole_at(sc->file, OFF(16), 32, NREC * 16 + 1, NREC * 8);
	assert_int_equal(tu_file_size(sc->file), OFF(16) + 32);
}

/* A copy of an older frame of the same segment, CRC intact, over batch 20's: its
 * LSN gives it away. */
static void d_stale_frame_copy(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 12));
	size_t len;
	uint8_t *buf = slurp(sc->file, &len);
	tu_write_at(sc->file, OFF(20), buf + OFF(14), FRAME);
	free(buf);
}

/* Batches 13..15 overwritten: several damaged frames in a row make one hole. */
static void d_adjacent_damage(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 12));
	static const uint8_t junk[3 * FRAME];
	tu_write_at(sc->file, OFF(13) + 8, junk, 3 * FRAME - 16);
}
static void c_adjacent_damage(struct scene *sc)
{
	expect_hole_at(sc->file, OFF(13), 3 * FRAME, NREC * 13 + 1, 3 * NREC);
}

/* A well-formed frame of this log inside a damaged stretch, whose LSN is far beyond
 * what the stretch could have held, is not taken as the place to go on from. */
static void d_implausible_lsn(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 37));
	size_t len;
	uint8_t *buf = slurp(sc->file, &len);
	uint64_t log_id = rl_get64(buf + 16);
	free(buf);
	uint8_t f[40] = {0};
	rl_frame_header_fill(f, sizeof(f), 1, NREC * 37 + 1 + 1000000, log_id);
	rl_put32(f + 32, 4);
	memcpy(f + 36, "far!", 4);
	rl_frame_seal(f);
	rl_put32(f, RL_FRAME_MAGIC);
	flip(sc->file, OFF(37) + 100);
	tu_write_at(sc->file, OFF(38), f, sizeof(f));
}
static void c_implausible_lsn(struct scene *sc)
{
	expect_hole_at(sc->file, OFF(37), 2 * FRAME, NREC * 37 + 1, 2 * NREC);
}

/* Retention removed segment 0 and another log's segment 0 was copied in: the log id
 * most headers carry wins, the stranger is set aside, nothing of this log is lost
 * (batches 0..11 went with retention). */
static void d_foreign_first_after_retention(struct scene *sc)
{
	make_other(sc);
	assert_int_equal(unlink(seg_of(sc->dir, 0)), 0);
	copy_path(sc->file, seg_of(sc->dir, 0));
	assert_int_equal(rename(seg_of(sc->other, 0), sc->file), 0);
}

/* The first segment's header damaged and another log's segment 1 copied in: the first
 * is this log's (its frames say so) and gets its header back; the stranger is set
 * aside and its LSNs become a hole. */
static void d_damaged_header_and_foreign(struct scene *sc)
{
	make_other(sc);
	copy_path(sc->file, seg_of(sc->dir, 0));
	flip(sc->file, 20);
	char from[4096];
	copy_path(from, seg_of(sc->other, 12)); /* (seg_of's buffer is static) */
	assert_int_equal(rename(from, seg_of(sc->dir, 12)), 0);
}

/* The last segment renamed to the name of LSN 110: set aside, and since it holds
 * this log's LSNs past the end of what is kept, holes for them end the log -- they
 * are not handed out again. */
static void d_misnamed_last(struct scene *sc)
{
	copy_path(sc->extra, seg_of(sc->dir, 24));
	misname_last(sc->dir, sc->file);
}
static void c_holes_end_the_log(struct scene *sc)
{
	expect_hole_at(sc->extra, OFF(24) + PER_SEG * FRAME, 32, NREC * 36 + 1, NREC * (NB - 36));
}

/* ... whose first frame is damaged: it still claims the LSNs of the frames after
 * it (its frames are read as salvage reads them). */
static void d_misnamed_last_damaged(struct scene *sc)
{
	misname_last(sc->dir, sc->file);
	flip(sc->file, OFF(36) + 100);
}

/* ... whose header is damaged too: its frames say it holds LSNs before its name, so
 * it is set aside as misnamed (not kept and cut) and claims them. */
static void d_misnamed_last_invalid_header(struct scene *sc)
{
	misname_last(sc->dir, sc->file);
	flip(sc->file, 20);
}

/* Whose a segment with an invalid header is, is told by the first frame in it that
 * passes its CRC -- not by a first frame header that is itself damaged.  This log's
 * segment 1: header and the log id of its first frame damaged; kept, since its
 * second frame says it is this log's.  The other log's segment 2 in place of this
 * log's, header and first frame magic damaged: set aside, not kept and cut. */
static void d_ownership_from_checked_frame(struct scene *sc)
{
	make_other(sc);
	copy_path(sc->file, seg_of(sc->dir, 12));
	flip(sc->file, 20);
	flip(sc->file, OFF(12) + 26);
	char seg2[4096];
	copy_path(seg2, seg_of(sc->dir, 24));
	assert_int_equal(rename(seg_of(sc->other, 24), seg2), 0);
	save(sc, seg2);
	flip(seg2, 20);
	flip(seg2, OFF(24));
	sc->saved[20] ^= 0x5a;
	sc->saved[OFF(24)] ^= 0x5a;
	copy_path(sc->extra, seg2);
}
static void c_ownership_from_checked_frame(struct scene *sc)
{
	char aside[4200];
	snprintf(aside, sizeof(aside), "%s.salvaged", sc->extra);
	size_t len;
	uint8_t *kept = slurp(aside, &len);
	assert_int_equal(len, sc->saved_len);
	assert_memory_equal(kept, sc->saved, len);
	free(kept);
}

/* The last segment's header and first frame damaged, and that frame's record holds a
 * whole valid frame of another log: ownership goes by this log's frames first, so the
 * segment is kept. */
static void d_other_logs_frame_in_a_record(struct scene *sc)
{
	copy_path(sc->file, seg_of(sc->dir, 36));
	flip(sc->file, 20);
	uint8_t f[40] = {0};
	rl_frame_header_fill(f, sizeof(f), 1, 5, 0x5eed5eed5eedull);
	rl_put32(f + 32, 4);
	memcpy(f + 36, "else", 4);
	rl_frame_seal(f);
	rl_put32(f, RL_FRAME_MAGIC);
	tu_write_at(sc->file, OFF(36) + 40, f, sizeof(f)); /* inside batch 36's record */
}

/* The last segment (batches 36..39) copied in under the name of LSN 100 (inside
 * segment 2's LSNs 73..108), its header damaged, the real last one removed: an
 * overlap, set aside.  Its frames start at LSN 109 but the name says 100: read from
 * the name, the first frame fails the LSN rule and salvage's search skips to LSN 109
 * (9 LSNs on, plausible after 344 bytes), so it claims LSNs up to 120. */
static void d_overlapping_last(struct scene *sc)
{
	char last[4096];
	copy_path(last, seg_of(sc->dir, 36));
	copy_path(sc->file, tu_segment_path(sc->dir, 100));
	copy_path(sc->extra, seg_of(sc->dir, 24));
	size_t len;
	uint8_t *buf = slurp(last, &len);
	assert_int_equal(unlink(last), 0);
	int fd = open(sc->file, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	flip(sc->file, 20);
}

/* Two set-aside segments of this log: the misnamed last one (LSNs 109..120) and a
 * header-only one whose header names 2^50.  The far claim is ignored; the near one
 * still ends the log with holes. */
static void d_far_claim_and_near_claim(struct scene *sc)
{
	misname_last(sc->dir, sc->file);
	header_only_segment(sc->dir, 500, 1ull << 50, sc->extra);
}

static const struct salvage_case cases[] = {
    {"flipped byte in a sealed segment", d_flipped_byte, NREC * 17 + 1, OFF(17), NREC, 0,
     NREC * NB + 1, 1, 0, 0, BATCH(17), 0, c_flipped_byte},
    {"damage in the last segment keeps the frames after it", d_last_segment, NREC * 37 + 1,
     OFF(37), NREC, 100, NREC * 39 + 1, 1, 0, 0, BATCH(37) | BATCH(39), 1, c_last_segment},
    {"missing middle segment", d_missing_middle, NREC * 12 + 1, SEG_END, NREC * PER_SEG, 0,
     NREC * NB + 1, 1, 0, 1, BATCHES(12, 24), 0, c_missing_middle},
    {"foreign segment set aside", d_foreign_segment, NREC * 12 + 1, 0, NREC * PER_SEG, 0,
     NREC * NB + 1, 1, 1, 1, BATCHES(12, 24), 0, c_set_aside_intact},
    {"far segment set aside", d_far_segment, 1ull << 50, 0, 0, 0, NREC * NB + 1, 0, 1, 0, 0, 0,
     c_far_segment},
    {"invalid header written again", d_invalid_header, NREC * 12 + 1, 0, 0, 0, NREC * NB + 1,
     0, 0, 1, 0, 0, c_invalid_header},
    {"invalid first header", d_invalid_first_header, 1, 0, 0, 0, NREC * NB + 1, 0, 0, 1, 0, 0,
     NULL},
    {"empty middle segment", d_empty_middle, NREC * 12 + 1, 0, NREC * PER_SEG, 0,
     NREC * NB + 1, 1, 0, 2, BATCHES(12, 24), 0, c_empty_middle},
    {"truncated sealed segment", d_truncated_sealed, NREC * 16 + 1, OFF(16), NREC * 8, 50,
     NREC * NB + 1, 1, 0, 1, BATCHES(16, 24), 0, c_truncated_sealed},
    {"stale frame copy", d_stale_frame_copy, NREC * 20 + 1, OFF(20), NREC, 0, NREC * NB + 1, 1,
     0, 0, BATCH(20), 0, NULL},
    {"adjacent damage makes one hole", d_adjacent_damage, NREC * 13 + 1, OFF(13), 3 * NREC, 0,
     NREC * NB + 1, 1, 0, 0, BATCHES(13, 16), 0, c_adjacent_damage},
    {"implausible LSN is not a resync point", d_implausible_lsn, NREC * 37 + 1, OFF(37),
     2 * NREC, 0, NREC * NB + 1, 1, 0, 0, BATCH(37) | BATCH(38), 1, c_implausible_lsn},
    {"foreign first segment after retention", d_foreign_first_after_retention, 1, 0, 0, 0,
     NREC * NB + 1, 0, 1, 0, BATCHES(0, 12), 0, NULL},
    {"damaged header and a foreign segment", d_damaged_header_and_foreign, 1, 0,
     NREC * PER_SEG, 0, NREC * NB + 1, 1, 1, 2, BATCHES(12, 24), 0, NULL},
    {"misnamed last segment", d_misnamed_last, NREC * 36 + 2, 0, NREC * (NB - 36), 0,
     NREC * NB + 1, 1, 1, 0, BATCHES(36, NB), 0, c_holes_end_the_log},
    {"misnamed last segment with damage claims its LSNs", d_misnamed_last_damaged,
     NREC * 36 + 2, 0, NREC * (NB - 36), 0, NREC * NB + 1, 1, 1, 0, BATCHES(36, NB), 0, NULL},
    {"misnamed last segment with an invalid header", d_misnamed_last_invalid_header,
     NREC * 36 + 2, 0, NREC * (NB - 36), 0, NREC * NB + 1, 1, 1, 0, BATCHES(36, NB), 0, NULL},
    {"invalid header: ownership from a checked frame", d_ownership_from_checked_frame,
     NREC * 12 + 1, 0, NREC * (1 + PER_SEG), 0, NREC * NB + 1, 2, 1, 2,
     BATCH(12) | BATCHES(24, 36), 0, c_ownership_from_checked_frame},
    {"another log's frame inside a record", d_other_logs_frame_in_a_record, NREC * 36 + 1, 0,
     NREC, 0, NREC * NB + 1, 1, 0, 1, BATCH(36), 0, NULL},
    {"overlapping last segment with an invalid header", d_overlapping_last, 100, 0,
     NREC * (NB - 36), 0, NREC * NB + 1, 1, 1, 0, BATCHES(36, NB), 0, c_holes_end_the_log},
    {"a far claim does not void a near one", d_far_claim_and_near_claim, NREC * 36 + 2, 0,
     NREC * (NB - 36), 0, NREC * NB + 1, 1, 2, 0, BATCHES(36, NB), 0, NULL},
};

/* Every case of the table on a fresh log, each in a directory of its own. */
static void each_kind_of_damage(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct salvage_case *c = &cases[i];
		print_message("  %s\n", c->name);
		struct scene sc = {.dir = tu_tmpdir()};
		make_log(sc.dir);
		c->damage(&sc);
		char lost[NB];
		for (unsigned b = 0; b < NB; b++)
			lost[b] = (char)(c->lost >> b & 1);
		struct salvaged s = {.damage_lsn = c->damage_lsn, .damage_offset = c->damage_offset,
				     .damage_file = sc.file, .lost_lsns = c->lost_lsns,
				     .cut_bytes = c->cut_bytes, .next_lsn = c->next_lsn,
				     .holes = c->holes, .set_aside = c->set_aside,
				     .rewritten = c->rewritten};
		salvage_and_check(sc.dir, &s, lost, c->tail_only);
		if (c->check)
			c->check(&sc);
		free(sc.saved);
		if (sc.other) {
			tu_rmrf(sc.other);
			free(sc.other);
		}
		tu_rmrf(sc.dir);
		free((char *)sc.dir);
	}
}

/* One segment of this log and one of another, as many of each: the oldest segment's
 * log wins the tie, as in the other modes (point-in-time keeps the same), and the
 * other is set aside. */
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
	    SALVAGE_TEST(each_kind_of_damage),
	    SALVAGE_TEST(two_logs_tied_the_oldest_wins),
	    SALVAGE_TEST(interrupted_renames_converge),
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
