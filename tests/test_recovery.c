/*
 * Recovery on open: torn tails cut (and appends after them survive the next
 * recovery), sealed-segment damage refused, chain breaks detected, torn rotations
 * repaired, unrelated files ignored.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Write `batches` batches of 3 records of 100 bytes, each waited for (so each is its
 * own group and small segments rotate), and close.  Returns the last LSN. */
static uint64_t make_log(const char *dir, const struct ringlog_options *o, int batches)
{
	struct ringlog *log = tu_open(dir, o);
	uint64_t last = 0;
	for (int i = 0; i < batches; i++) {
		last = tu_append_tagged(log, (uint64_t)i, 3, 100) + 2;
		assert_int_equal(ringlog_wait(log, last), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
	return last;
}

#define FRAME ((uint64_t)RINGLOG_FRAME_BYTES(3, 300)) /* 344 */

/* Reopen, check the log ends at `last`, append one batch and check it survives the
 * next recovery too. */
static void reopen_expect(const char *dir, const struct ringlog_options *o, uint64_t last)
{
	struct ringlog *log = tu_open(dir, o);
	assert_int_equal(ringlog_next_lsn(log), last + 1);
	uint64_t lsn = tu_append_tagged(log, 999, 2, 50);
	assert_int_equal(lsn, last + 1);
	assert_int_equal(ringlog_wait(log, lsn + 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(dir, o);
	assert_int_equal(ringlog_next_lsn(log), last + 3);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, end;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &end, 1), 0);
	assert_int_equal(end, last + 2);
	assert_int_equal(n, last + 2);
}

static void torn_tail_cut_at_every_length_of_last_frame(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 5);
	const char *seg = tu_last_segment(dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s", seg);
	/* A file cut short by a crash while it grew (as segments are without prepared
	 * files): keep its data, and cut it at every length inside the last frame. */
	uint64_t full = tu_data_end(path);
	assert_int_equal(full, tu_data_start(path) + 5 * FRAME);
	/* Keep a copy of the file to restore between cuts. */
	int fd = open(path, O_RDONLY);
	char *orig = malloc(full);
	assert_int_equal(read(fd, orig, full), (ssize_t)full);
	close(fd);
	for (uint64_t cut = full - FRAME + 1; cut < full; cut++) { /* every torn length */
		tu_truncate(path, 0);
		tu_write_at(path, 0, orig, cut);
		struct ringlog *log = tu_open(dir, NULL);
		assert_int_equal(ringlog_next_lsn(log), last - 2); /* the torn batch is gone */
		assert_int_equal(ringlog_close(log), 0);
		/* A torn frame whose header is there is cut durably; fewer than its 32
		 * header bytes can never pass for a frame and are left to be overwritten. */
		assert_int_equal(tu_file_size(path),
				 cut - (full - FRAME) >= RINGLOG_FRAME_HEADER_BYTES ? full - FRAME : cut);
		assert_int_equal(tu_data_end(path), full - FRAME);
	}
	free(orig);
	reopen_expect(dir, NULL, last - 3);
}

/* A torn write inside a prepared segment (the file keeps its size): the torn frame
 * is zeroed in place, durably, and the prepared blocks after it stay. */
static void torn_tail_in_a_prepared_segment_is_zeroed(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 5);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	uint64_t size = tu_file_size(path), end = tu_data_end(path);
	assert_true(size > end); /* a prepared file */
	/* Tear the last frame: its second half is gone (zeros). */
	char zero[FRAME] = {0};
	tu_write_at(path, end - FRAME / 2, zero, FRAME / 2);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep), -EBADMSG);
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_TOLERATE_TAIL, &rep), 0);
	assert_int_equal(rep.cut_bytes, FRAME);
	assert_int_equal(rep.damage_offset, end - FRAME);
	struct ringlog *log = tu_open(dir, NULL);
	assert_int_equal(ringlog_next_lsn(log), last - 2);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(tu_file_size(path), size); /* not truncated */
	assert_int_equal(tu_data_end(path), end - FRAME);
	uint8_t hdr[32];
	int fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, hdr, sizeof(hdr), (off_t)(end - FRAME)), 32);
	close(fd);
	assert_memory_equal(hdr, zero, sizeof(hdr)); /* the torn frame's header is gone */
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	reopen_expect(dir, NULL, last - 3);
}

/* Bytes after the last frame that no writer of this log put there at the LSNs due
 * (junk, zeros, stale frames) are not a torn tail: the log ends before them and
 * nothing is cut; appends overwrite them. */
static void garbage_and_zeroes_after_the_tail(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 4);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	uint64_t end = tu_data_end(path);
	char junk[700];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 7 + 3);
	tu_write_at(path, end, junk, sizeof(junk));
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(rep.cut_bytes, 0);
	struct ringlog *log = tu_open(dir, NULL);
	assert_int_equal(ringlog_next_lsn(log), last + 1);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(tu_data_end(path), end);
	/* Zeroes (preallocated or zero-filled space) are an end, not a frame. */
	char zero[4096] = {0};
	tu_write_at(path, end, zero, sizeof(zero));
	reopen_expect(dir, NULL, last);
}

static void flipped_byte_in_last_frame_drops_it(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 4);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	uint64_t size = tu_data_end(path);
	char b = 0x5a;
	tu_write_at(path, size - 100, &b, 1);
	reopen_expect(dir, NULL, last - 3);
}

static void stale_frame_copy_is_not_live_data(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 3);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	uint64_t size = tu_data_end(path);
	/* Append an intact copy of the first frame after the end: its CRC is valid but
	 * its LSN is not the next one. */
	char frame[FRAME];
	int fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, frame, FRAME, (off_t)tu_data_start(path)), FRAME);
	close(fd);
	tu_write_at(path, size, frame, FRAME);
	reopen_expect(dir, NULL, last);
}

static void sealed_segment_damage_refuses_open(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	make_log(dir, &o, 40);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(n >= 3);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[0]));
	char b = 0x01;
	uint64_t second = tu_data_start(path) + FRAME;
	tu_write_at(path, second + 10, &b, 1); /* inside the second frame */
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_null(log);
	assert_non_null(strstr(ringlog_last_error(), "00000000000000000001.rlog"));
	char at[64];
	snprintf(at, sizeof(at), "offset %llu ", (unsigned long long)second);
	assert_non_null(strstr(ringlog_last_error(), at));
	/* The reader refuses it too, once it reaches the damage. */
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	int err;
	uint64_t got = 0;
	while ((err = ringlog_reader_next(r, &rec)) == 1)
		got++;
	assert_int_equal(err, -EBADMSG);
	assert_int_equal(got, 3); /* the first frame's records only */
	ringlog_reader_close(r);
	/* Nothing was modified by the refused open. */
	free(lsns);
	assert_int_equal(tu_segments(dir, &lsns), n);
	free(lsns);
}

static void truncated_sealed_segment_refuses_open(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	make_log(dir, &o, 40);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[1]));
	tu_truncate(path, tu_file_size(path) - FRAME); /* a whole frame missing */
	struct ringlog *log;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "missing or truncated"));
	(void)n;
	free(lsns);
}

static void missing_middle_segment_detected(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	make_log(dir, &o, 40);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(n >= 3);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[1]));
	assert_int_equal(unlink(path), 0);
	struct ringlog *log;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "missing"));
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	int err;
	while ((err = ringlog_reader_next(r, &rec)) == 1)
		;
	assert_int_equal(err, -EBADMSG);
	ringlog_reader_close(r);
	free(lsns);
}

static void segment_from_another_log_detected(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	make_log(dir, &o, 40);
	char *other = tu_tmpdir();
	make_log(other, &o, 40); /* same names and LSNs, different log id */
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	char cmd[8400];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s/'", tu_segment_path(other, lsns[1]), dir);
	assert_int_equal(system(cmd), 0);
	struct ringlog *log;
	assert_int_equal(ringlog_open(dir, &o, &log), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "another log"));
	tu_rmrf(other);
	free(other);
	(void)n;
	free(lsns);
}

static void torn_rotation_header_repaired(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	uint64_t last = make_log(dir, &o, 30);
	/* A crash right after creating the next segment, before its header reached the
	 * disk: an empty or partial file named by the next LSN. */
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_segment_path(dir, last + 1));
	/* Force the crash state: the last segment sealed (cut at its last frame, as a
	 * rotation does first) and a torn successor. */
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_close(log), 0);
	char prev[4096];
	snprintf(prev, sizeof(prev), "%s", tu_last_segment(dir));
	tu_truncate(prev, tu_data_end(prev));
	if (access(path, F_OK) != 0) {
		int fd = open(path, O_CREAT | O_WRONLY, 0644);
		assert_true(fd >= 0);
		close(fd);
	}
	tu_truncate(path, 20);
	reopen_expect(dir, &o, last);
	assert_true(tu_file_size(path) > 64);
}

static void unrelated_files_ignored(void **state)
{
	const char *dir = *state;
	uint64_t last = make_log(dir, NULL, 3);
	const char *names[] = {"README.txt", "123.rlog", "00000000000000000001.rlog.tmp",
			       "x00000000000000000002.rlog"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		FILE *f = fopen(tu_path(dir, names[i]), "w");
		assert_non_null(f);
		fputs("not a segment", f);
		fclose(f);
	}
	reopen_expect(dir, NULL, last);
	assert_int_equal(tu_file_size(tu_path(dir, "README.txt")), 13);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(torn_tail_cut_at_every_length_of_last_frame),
	    TU_DIR_TEST(torn_tail_in_a_prepared_segment_is_zeroed),
	    TU_DIR_TEST(garbage_and_zeroes_after_the_tail),
	    TU_DIR_TEST(flipped_byte_in_last_frame_drops_it),
	    TU_DIR_TEST(stale_frame_copy_is_not_live_data),
	    TU_DIR_TEST(sealed_segment_damage_refuses_open),
	    TU_DIR_TEST(truncated_sealed_segment_refuses_open),
	    TU_DIR_TEST(missing_middle_segment_detected),
	    TU_DIR_TEST(segment_from_another_log_detected),
	    TU_DIR_TEST(torn_rotation_header_repaired),
	    TU_DIR_TEST(unrelated_files_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
