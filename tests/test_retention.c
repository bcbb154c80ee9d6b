/* Retention (ringlog_truncate_before): whole old segments go, oldest first, and the
 * log stays readable and recoverable, also after a crash in the middle. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A log of 60 waited batches of 2 x 400 bytes over 4 KiB segments. */
static struct ringlog *make(const char *dir, struct ringlog_options *o, uint64_t *last)
{
	tu_options(o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, o);
	for (int i = 0; i < 60; i++) {
		*last = tu_append_tagged(log, (uint64_t)i, 2, 400) + 1;
		assert_int_equal(ringlog_wait(log, *last), 0);
	}
	/* Close and reopen: the consumer may rotate right after the last group, and a
	 * reopen settles that (close drains; open rotates a full last segment itself). */
	assert_int_equal(ringlog_close(log), 0);
	return tu_open(dir, o);
}

static void removes_whole_old_segments_only(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last;
	struct ringlog *log = make(dir, &o, &last);
	uint64_t *before;
	size_t n = tu_segments(dir, &before);
	assert_true(n >= 8);
	/* Keep everything from inside the 4th segment: the first 3 go, the 4th stays. */
	uint64_t keep = before[3] + 1;
	assert_int_equal(ringlog_truncate_before(log, keep), 3);
	uint64_t *after;
	assert_int_equal(tu_segments(dir, &after), n - 3);
	assert_int_equal(after[0], before[3]);
	free(after);
	/* Idempotent; a boundary LSN removes the segment that ends right before it. */
	assert_int_equal(ringlog_truncate_before(log, keep), 0);
	assert_int_equal(ringlog_truncate_before(log, before[5]), 2);
	/* The segment being written always stays, whatever the LSN. */
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), (int)(n - 6));
	assert_int_equal(tu_segments(dir, &after), 1);
	assert_int_equal(after[0], before[n - 1]);
	free(after);
	/* Appends go on; the reader starts at the first record kept. */
	uint64_t l = tu_append_tagged(log, 99, 1, 10);
	assert_int_equal(l, last + 1);
	assert_int_equal(ringlog_wait(log, l), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t cnt, first, end;
	assert_int_equal(tu_read_all(dir, 0, &cnt, &first, &end, 1), 0);
	assert_int_equal(first, before[n - 1]);
	assert_int_equal(end, l);
	free(before);
}

static void removed_lsn_is_a_clear_error_and_reopen_works(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last;
	struct ringlog *log = make(dir, &o, &last);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(ringlog_truncate_before(log, lsns[2]) == 2);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, lsns[1], &r), -ENOENT);
	assert_non_null(strstr(ringlog_last_error(), "retention"));
	assert_int_equal(ringlog_reader_open(dir, lsns[2], &r), 0);
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
	/* Count now: the consumer may have rotated after the last wait returned. */
	uint64_t *kept;
	size_t nk = tu_segments(dir, &kept);
	free(kept);
	/* Recovery accepts a log whose first segment is not LSN 1. */
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_next_lsn(log), last + 1);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_recovery_report(log, &rep), 0);
	assert_int_equal(rep.first_lsn, lsns[2]);
	assert_int_equal(rep.last_lsn, last);
	assert_int_equal(rep.segments, nk);
	assert_true(nk == n - 2 || nk == n - 1);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(ringlog_close(log), 0);
	free(lsns);
}

static void reader_behind_retention_gets_enoent(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last;
	struct ringlog *log = make(dir, &o, &last);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(n >= 6);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	/* Retention removes the reader's segment and the next ones under it. */
	assert_int_equal(ringlog_truncate_before(log, lsns[4]), 4);
	int got;
	uint64_t seen = 1;
	while ((got = ringlog_reader_next(r, &rec)) == 1)
		seen++;
	assert_int_equal(got, -ENOENT); /* gone by retention, not damaged */
	assert_non_null(strstr(ringlog_last_error(), "retention"));
	assert_int_equal(seen, lsns[1] - lsns[0]); /* it finished the open segment */
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
	free(lsns);
}

static void crash_in_the_middle_of_retention(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last;
	struct ringlog *log = make(dir, &o, &last);
	assert_int_equal(ringlog_close(log), 0);
	/* Retention removes oldest first: a crash after one removal leaves the rest. */
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_int_equal(unlink(tu_segment_path(dir, lsns[0])), 0);
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_next_lsn(log), last + 1);
	assert_int_equal(ringlog_truncate_before(log, lsns[3]), 2); /* finishes the job */
	assert_int_equal(ringlog_close(log), 0);
	uint64_t cnt, first, end;
	assert_int_equal(tu_read_all(dir, 0, &cnt, &first, &end, 1), 0);
	assert_int_equal(first, lsns[3]);
	assert_int_equal(end, last);
	(void)n;
	free(lsns);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(removes_whole_old_segments_only),
	    TU_DIR_TEST(removed_lsn_is_a_clear_error_and_reopen_works),
	    TU_DIR_TEST(reader_behind_retention_gets_enoent),
	    TU_DIR_TEST(crash_in_the_middle_of_retention),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
