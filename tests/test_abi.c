/*
 * The shared library's ABI: it exports exactly the functions the header marks
 * RINGLOG_API (nothing internal leaks), under the version node RINGLOG_0, with the
 * SONAME libringlog.so.<major>; and the public structs have the sizes the header
 * promises never to change.
 */
#include "testutil.h"

#include "ringlog_nats.h" /* (its structs only: nothing of libringlog-nats is linked) */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char root[PATH_MAX], build[PATH_MAX + 8];

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names declared "RINGLOG_API <type> <name>(" in the header, sorted. */
static size_t header_api(char **names, size_t cap)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/include/ringlog.h", root);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[512];
	size_t n = 0;
	while (fgets(line, sizeof(line), f) && n < cap) {
		if (strncmp(line, "RINGLOG_API ", 12) != 0)
			continue;
		char *paren = strchr(line, '(');
		assert_non_null(paren);
		char *end = paren;
		while (end > line && (end[-1] == '_' || (end[-1] >= 'a' && end[-1] <= 'z') ||
				      (end[-1] >= '0' && end[-1] <= '9')))
			end--;
		names[n++] = strndup(end, (size_t)(paren - end));
	}
	fclose(f);
	qsort(names, n, sizeof(*names), cmp_str);
	return n;
}

static size_t exported(char **names, size_t cap, const char *version)
{
	char cmd[PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s/libringlog.so'", build);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char line[512];
	size_t n = 0;
	while (fgets(line, sizeof(line), p) && n < cap) {
		char addr[64], type[8], sym[256];
		if (sscanf(line, "%63s %7s %255s", addr, type, sym) != 3 || strcmp(type, "T") != 0)
			continue;
		char *at = strstr(sym, "@@");
		assert_non_null(at); /* every export is versioned */
		assert_string_equal(at + 2, version);
		*at = '\0';
		names[n++] = strdup(sym);
	}
	pclose(p);
	qsort(names, n, sizeof(*names), cmp_str);
	return n;
}

static void exports_match_the_header(void **state)
{
	(void)state;
	char *want[128], *got[128];
	size_t nw = header_api(want, 128), ng = exported(got, 128, "RINGLOG_0");
	assert_true(nw >= 18);
	for (size_t i = 0; i < nw || i < ng; i++) {
		const char *w = i < nw ? want[i] : "(none)", *g = i < ng ? got[i] : "(none)";
		if (strcmp(w, g) != 0)
			fail_msg("header declares %s but the library exports %s", w, g);
	}
	for (size_t i = 0; i < nw; i++)
		free(want[i]);
	for (size_t i = 0; i < ng; i++)
		free(got[i]);
}

static void soname_has_the_major_version(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd),
		 "readelf -d '%s/libringlog.so' | grep -q 'SONAME.*\\[libringlog.so.%d\\]'", build,
		 RINGLOG_VERSION_MAJOR);
	assert_int_equal(system(cmd), 0);
}

/* The USDT probes are in the library (zero cost until traced). */
static void usdt_probes_are_present(void **state)
{
	(void)state;
	static const char *probes[] = {"append",    "group_submit", "write_done",
				       "sync_done", "rotate",	    "fail"};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char cmd[PATH_MAX + 256];
		snprintf(cmd, sizeof(cmd),
			 "readelf -n '%s/libringlog.so' | grep -A2 'stapsdt' | "
			 "grep -A1 'Provider: ringlog' | grep -qx '    Name: %s'",
			 build, probes[i]);
		if (system(cmd) != 0)
			fail_msg("probe ringlog:%s is missing from libringlog.so", probes[i]);
	}
}

static void structs_keep_their_size(void **state)
{
	(void)state;
	/* Fields are only ever added by taking space from `reserved`. */
	assert_int_equal(sizeof(struct ringlog_options), 128);
	assert_int_equal(sizeof(struct ringlog_stats), 256);
	assert_int_equal(sizeof(struct ringlog_record), 32);
	assert_int_equal(sizeof(struct ringlog_frame), 32);
	assert_int_equal(sizeof(struct ringlog_recovery), 232);
	assert_int_equal(sizeof(struct ringlog_repair_action), 184);
	assert_int_equal(sizeof(struct ringlog_latency_stage), 72);
	/* Stages are added by taking an entry of the room RINGLOG_STAGES_MAX leaves. */
	assert_true(RINGLOG_STAGES <= RINGLOG_STAGES_MAX);
	assert_int_equal(RINGLOG_STAGES_MAX, 10);
	assert_int_equal(sizeof(struct ringlog_latency), 784);
	/* libringlog-nats's public structs, which grow from their reserved words too. */
	assert_int_equal(sizeof(struct ringlog_nats_options), 112);
	assert_int_equal(sizeof(struct ringlog_nats_stats), 232);
	assert_int_equal(sizeof(struct ringlog_nats_restore_stats), 120);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	*strrchr(self, '/') = '\0'; /* .../tests */
	snprintf(build, sizeof(build), "%s/..", self);
	/* The source tree: the nearest parent holding include/ringlog.h. */
	snprintf(root, sizeof(root), "%s", self);
	for (;;) {
		char probe[PATH_MAX + 32];
		snprintf(probe, sizeof(probe), "%s/include/ringlog.h", root);
		if (access(probe, R_OK) == 0)
			break;
		char *slash = strrchr(root, '/');
		if (!slash || slash == root)
			return 1;
		*slash = '\0';
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(exports_match_the_header),
	    cmocka_unit_test(soname_has_the_major_version),
	    cmocka_unit_test(usdt_probes_are_present),
	    cmocka_unit_test(structs_keep_their_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
