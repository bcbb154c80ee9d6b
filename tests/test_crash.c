/*
 * Crash torture in a temporary directory (tests/crash.h): many cycles of appends from
 * several threads of a child, SIGKILL at a random instant, recovery and the checks.
 */
#include "crash.h"

static void crash_cycles(void **state)
{
	(void)state;
	g_rng = g_seed;
	g_dir = tu_tmpdir();
	run_cycles("", budget_seconds(), MAX_CYCLES, MIN_CYCLES);
}

int main(void)
{
	crash_start("crash");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(crash_cycles, crash_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
