/*
 * Crash torture with a reader (tests/crash.h): a thread of the parent follows the log
 * while the child writes, and must only ever return whole, valid batches, see every
 * acknowledged batch, and find what it saw still there after recovery.
 */
#include "crash.h"

#include <inttypes.h>
#include <stdio.h>

/* Kill the writer while a reader in this process follows the log. */
static void crash_with_follower(void **state)
{
	(void)state;
	g_rng = g_seed ^ 0x5deece66dull;
	g_dir = tu_tmpdir();
	/* The log exists before the first child, so the follower can open it at once. */
	struct ringlog_options po;
	ringlog_options_init(&po);
	po.segment_bytes = SEGMENT_BYTES;
	g_log = tu_open(g_dir, &po);
	assert_int_equal(append_marker(g_log, make_tag(0, MARKER_THREAD, 0), 0), 1);
	assert_int_equal(ringlog_close(g_log), 0);
	g_log = NULL;
	struct totals tot = {0};
	for (unsigned cycle = 1; cycle <= FOLLOW_CYCLES; cycle++)
		run_cycle(cycle, 1, &tot);
	printf("crash: follower: %u cycles, %u kills, %" PRIu64 " acknowledged batches, the "
	       "follower read %" PRIu64 " whole batches in all\n",
	       tot.cycles, tot.kills, tot.acked_batches, tot.follower_batches);
	assert_int_equal(tot.cycles, FOLLOW_CYCLES);
}

int main(void)
{
	crash_start("crash follower");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(crash_with_follower, crash_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
