/* Replication slots: named positions in the log directory that retention respects. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A log of 60 waited batches of 2 x 400 bytes over 4 KiB segments, reopened. */
static struct ringlog *make(const char *dir, uint64_t *last)
{
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	for (int i = 0; i < 60; i++) {
		*last = tu_append_tagged(log, (uint64_t)i, 2, 400) + 1;
		assert_int_equal(ringlog_wait(log, *last), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
	return tu_open(dir, &o);
}

static void creates_advances_and_keeps_a_position(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	struct ringlog_slot *s;
	assert_int_equal(ringlog_slot_open(dir, "ship-1", 0, 0, &s), -ENOENT);
	assert_null(s);
	assert_int_equal(ringlog_slot_open(dir, "ship-1", 1, 5, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 5);
	assert_int_equal(ringlog_slot_advance(s, 5), 0);
	assert_int_equal(ringlog_slot_advance(s, 9), 0);
	assert_int_equal(ringlog_slot_advance(s, 8), -EINVAL); /* never backwards */
	assert_non_null(strstr(ringlog_last_error(), "SLOT.ship-1"));
	assert_int_equal(ringlog_slot_lsn(s), 9);
	ringlog_slot_close(s);
	/* Opening an existing one, with create or without, finds where it was. */
	assert_int_equal(ringlog_slot_open(dir, "ship-1", 1, 1, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 9);
	ringlog_slot_close(s);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(ringlog_slot_open(dir, "ship-1", 0, 0, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 9);
	ringlog_slot_close(s);
	/* The log ignores the file: it recovers and checks as before. */
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(ringlog_slot_drop(dir, "ship-1"), 0);
	assert_int_equal(ringlog_slot_drop(dir, "ship-1"), -ENOENT);
	assert_int_equal(ringlog_slot_open(dir, "ship-1", 0, 0, &s), -ENOENT);
	ringlog_slot_close(NULL);
}

static void rejects_bad_names(void **state)
{
	const char *dir = *state;
	struct ringlog_slot *s;
	const char *bad[] = {"", ".", "..", "a/b", "a b", "x\n",
			     "01234567890123456789012345678901234567890123456789012345678901234"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ringlog_slot_open(dir, bad[i], 1, 0, &s), -EINVAL);
		assert_non_null(strstr(ringlog_last_error(), "slot name"));
		assert_int_equal(ringlog_slot_drop(dir, bad[i]), -EINVAL);
	}
	assert_int_equal(ringlog_slot_open(dir, NULL, 1, 0, &s), -EINVAL);
	/* 64 characters is the longest. */
	assert_int_equal(ringlog_slot_open(dir, "0123456789012345678901234567890123456789012345678"
						"901234567890123",
					   1, 0, &s),
			 0);
	ringlog_slot_close(s);
	char missing[4096];
	snprintf(missing, sizeof(missing), "%s/not-there", dir);
	assert_int_equal(ringlog_slot_open(missing, "a", 1, 0, &s), -ENOENT);
	assert_int_equal(ringlog_slot_drop(missing, "a"), -ENOENT);
}

static void retention_stops_at_the_oldest_slot(void **state)
{
	const char *dir = *state;
	uint64_t last;
	struct ringlog *log = make(dir, &last);
	uint64_t *segs;
	size_t n = tu_segments(dir, &segs);
	assert_true(n >= 8);
	/* Two slots; the older one is inside the 3rd segment. */
	struct ringlog_slot *a, *b;
	assert_int_equal(ringlog_slot_open(dir, "a", 1, segs[2] + 1, &a), 0);
	assert_int_equal(ringlog_slot_open(dir, "b", 1, segs[6], &b), 0);
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	assert_int_equal(st.retention_held, 0);
	/* Asked to drop everything: only what slot a released goes (the first two whole
	 * segments; the 3rd holds LSNs above a's position). */
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), 2);
	ringlog_stats(log, &st);
	assert_int_equal(st.retention_held, 1);
	assert_int_equal(st.retention_held_lsn, segs[2] + 2);
	uint64_t cnt, first, end;
	assert_int_equal(tu_read_all(dir, 0, &cnt, &first, &end, 1), 0);
	assert_int_equal(first, segs[2]);
	/* A request below every slot is not held. */
	assert_int_equal(ringlog_truncate_before(log, segs[2]), 0);
	ringlog_stats(log, &st);
	assert_int_equal(st.retention_held, 1);
	/* a moves on: b is now the oldest. */
	assert_int_equal(ringlog_slot_advance(a, last), 0);
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), 4);
	assert_int_equal(tu_read_all(dir, 0, &cnt, &first, &end, 1), 0);
	assert_int_equal(first, segs[6]);
	/* b dropped: nothing holds any more. */
	ringlog_slot_close(b);
	assert_int_equal(ringlog_slot_drop(dir, "b"), 0);
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), (int)(n - 7));
	ringlog_slot_close(a);
	assert_int_equal(ringlog_close(log), 0);
	free(segs);
}

static void a_damaged_slot_holds_everything(void **state)
{
	const char *dir = *state;
	uint64_t last;
	struct ringlog *log = make(dir, &last);
	struct ringlog_slot *s;
	assert_int_equal(ringlog_slot_open(dir, "s", 1, last, &s), 0);
	ringlog_slot_close(s);
	/* One flipped bit in its position: the CRC no longer matches. */
	uint8_t byte = 0x40;
	tu_write_at(tu_path(dir, "SLOT.s"), 9, &byte, 1);
	uint64_t *before;
	size_t n = tu_segments(dir, &before);
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), 0);
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	assert_int_equal(st.retention_held, 1);
	assert_int_equal(st.retention_held_lsn, 1);
	uint64_t *after;
	assert_int_equal(tu_segments(dir, &after), n);
	free(after);
	/* Opened, it reads as 0 and may be advanced again, which repairs it. */
	assert_int_equal(ringlog_slot_open(dir, "s", 0, 0, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 0);
	assert_int_equal(ringlog_slot_advance(s, last), 0);
	ringlog_slot_close(s);
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), (int)(n - 1));
	assert_int_equal(ringlog_close(log), 0);
	free(before);
}

static void a_leftover_temporary_file_is_no_slot(void **state)
{
	const char *dir = *state;
	uint64_t last;
	struct ringlog *log = make(dir, &last);
	/* What a crash in the middle of creating slot "x" leaves: an empty temporary. */
	FILE *f = fopen(tu_path(dir, "new.SLOT.x"), "w");
	assert_non_null(f);
	fclose(f);
	uint64_t *segs;
	size_t n = tu_segments(dir, &segs);
	assert_int_equal(ringlog_truncate_before(log, UINT64_MAX), (int)(n - 1));
	/* Creating x again goes through it. */
	struct ringlog_slot *s;
	assert_int_equal(ringlog_slot_open(dir, "x", 1, 3, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 3);
	ringlog_slot_close(s);
	struct stat sb;
	assert_int_equal(stat(tu_path(dir, "new.SLOT.x"), &sb), -1);
	assert_int_equal(ringlog_close(log), 0);
	free(segs);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(creates_advances_and_keeps_a_position),
	    TU_DIR_TEST(rejects_bad_names),
	    TU_DIR_TEST(retention_stops_at_the_oldest_slot),
	    TU_DIR_TEST(a_damaged_slot_holds_everything),
	    TU_DIR_TEST(a_leftover_temporary_file_is_no_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
