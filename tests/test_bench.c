/*
 * The benchmark tools, run for real on tiny workloads: their JSON must parse, carry
 * the documented keys, and its counts must add up.  No timing is asserted.
 */
#include "testutil.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tools_dir[PATH_MAX + 8];

/* --- a minimal JSON validator with dotted-key lookup of numbers --- */
struct js {
	const char *p;
	char path[256];
	const char *want; /* dotted key to find */
	double found;
	int hit;
};

static void ws(struct js *j)
{
	while (isspace((unsigned char)*j->p))
		j->p++;
}

static int value(struct js *j);

static int string(struct js *j, char *out, size_t cap)
{
	if (*j->p != '"')
		return 0;
	size_t n = 0;
	for (j->p++; *j->p && *j->p != '"'; j->p++) {
		if (*j->p == '\\' && j->p[1])
			j->p++;
		if (n + 1 < cap)
			out[n++] = *j->p;
	}
	if (*j->p != '"')
		return 0;
	j->p++;
	out[n] = '\0';
	return 1;
}

static int object(struct js *j)
{
	j->p++; /* { */
	ws(j);
	if (*j->p == '}')
		return j->p++, 1;
	for (;;) {
		char key[64];
		ws(j);
		if (!string(j, key, sizeof(key)))
			return 0;
		ws(j);
		if (*j->p++ != ':')
			return 0;
		size_t len = strlen(j->path);
		snprintf(j->path + len, sizeof(j->path) - len, "%s%s", len ? "." : "", key);
		ws(j);
		if (!value(j))
			return 0;
		j->path[len] = '\0';
		ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == '}')
			return j->p++, 1;
		return 0;
	}
}

static int value(struct js *j)
{
	char tmp[256];
	if (*j->p == '{')
		return object(j);
	if (*j->p == '"')
		return string(j, tmp, sizeof(tmp));
	if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "null", 4))
		return j->p += 4, 1;
	if (!strncmp(j->p, "false", 5))
		return j->p += 5, 1;
	char *end;
	double d = strtod(j->p, &end);
	if (end == j->p)
		return 0;
	if (j->want && strcmp(j->path, j->want) == 0) {
		j->found = d;
		j->hit = 1;
	}
	j->p = end;
	return 1;
}

/* Parse `text`; returns 1 if valid JSON (an object), with *out = number at key. */
static int json_get(const char *text, const char *key, double *out)
{
	struct js j = {.p = text, .want = key};
	ws(&j);
	if (*j.p != '{' || !object(&j))
		return 0;
	ws(&j);
	if (*j.p != '\0')
		return 0;
	if (key) {
		if (!j.hit)
			fail_msg("JSON has no number at %s", key);
		*out = j.found;
	}
	return 1;
}

static double num(const char *text, const char *key)
{
	double v = 0;
	assert_true(json_get(text, key, &v));
	return v;
}

static char *run_json(const char *tool, const char *args)
{
	char *dir = tu_tmpdir();
	char cmd[16384], out[4200];
	snprintf(out, sizeof(out), "%s/result.json", dir);
	snprintf(cmd, sizeof(cmd), "'%s/%s' %s --dir '%s/log' --json '%s' > '%s/stdout' 2>&1",
		 tools_dir, tool, args, dir, out, dir);
	int rc = system(cmd);
	if (rc != 0) {
		snprintf(cmd, sizeof(cmd), "cat '%s/stdout'", dir);
		(void)!system(cmd);
		fail_msg("%s exited with %d", tool, rc);
	}
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	tu_rmrf(dir);
	free(dir);
	return strdup(buf);
}

static void check_common(const char *js, double rpb, double size)
{
	double batches = num(js, "batches"), records = num(js, "records");
	assert_true(batches > 0);
	assert_true(records == batches * rpb);
	assert_true(num(js, "bytes") == records * size);
	assert_true(num(js, "latency_us.count") == batches);
	double elapsed = num(js, "elapsed_s");
	assert_true(elapsed > 0);
	double bps = num(js, "batches_per_sec");
	assert_true(bps > 0.99 * batches / elapsed && bps < 1.01 * batches / elapsed);
	assert_true(num(js, "records_per_sec") > 0);
	assert_true(num(js, "mb_per_sec") > 0);
	assert_true(num(js, "fsyncs") > 0);
	assert_true(num(js, "log_bytes") >= num(js, "bytes"));
	const char *order[] = {"latency_us.min", "latency_us.p50",  "latency_us.p90",
			       "latency_us.p99", "latency_us.p999", "latency_us.p9999"};
	for (int i = 1; i < 6; i++)
		assert_true(num(js, order[i - 1]) <= num(js, order[i]));
	assert_true(num(js, "latency_us.p9999") <= num(js, "latency_us.max") * 1.001);
	assert_true(num(js, "latency_us.mean") > 0);
	assert_true(num(js, "cpu_user_s") >= 0 && num(js, "cpu_sys_s") >= 0);
	assert_true(num(js, "workload.records_per_batch") == rpb);
}

static void bench_closed_loop_json_adds_up(void **state)
{
	(void)state;
	char *js = run_json("ringlog-bench",
			    "--threads 3 --records-per-batch 4 --record-size 64 --duration 0.5 "
			    "--warmup 0.2 --segment-size 256k");
	check_common(js, 4, 64);
	assert_true(num(js, "workload.threads") == 3);
	/* Closed loop: at most one batch per thread per fdatasync. */
	assert_true(num(js, "batches") <= 3 * num(js, "fsyncs") + 3);
	free(js);
}

static void bench_batches_mode_counts_exactly(void **state)
{
	(void)state;
	char *js =
	    run_json("ringlog-bench",
		     "--threads 2 --inflight 8 --batches 500 --warmup 0 --record-size 10:300");
	assert_true(num(js, "batches") == 500);
	assert_true(num(js, "records") == 500);
	assert_true(num(js, "workload.record_size_min") == 10);
	assert_true(num(js, "workload.record_size_max") == 300);
	double bytes = num(js, "bytes");
	assert_true(bytes >= 500 * 10 && bytes <= 500 * 300);
	free(js);
}

static void bench_open_loop_reports_rate(void **state)
{
	(void)state;
	char *js = run_json("ringlog-bench",
			    "--threads 2 --rate 400 --inflight 64 --duration 0.5 --warmup 0.1");
	check_common(js, 1, 100);
	assert_true(num(js, "offered_rate") == 400);
	assert_true(num(js, "achieved_rate") > 0);
	free(js);
}

static void naive_append_json_adds_up(void **state)
{
	(void)state;
	char *js = run_json("naive-append", "--threads 2 --records-per-batch 2 --record-size 50 "
					    "--duration 0.3 --warmup 0");
	check_common(js, 2, 50);
	assert_true(num(js, "fsyncs") == num(js, "batches")); /* one fdatasync per batch */
	free(js);
}

/* A --dir the user gave is never removed, and its contents stay. */
static void users_directory_is_kept(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	char cmd[PATH_MAX + 8192];
	snprintf(cmd, sizeof(cmd),
		 "echo precious > '%s/keep.txt' && '%s/ringlog-bench' --dir '%s' "
		 "--duration 0.2 --warmup 0 --quiet && '%s/naive-append' --dir '%s' --duration 0.2 "
		 "--warmup 0 --quiet && grep -q precious '%s/keep.txt' && ls '%s' | grep -q rlog",
		 dir, tools_dir, dir, tools_dir, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	tu_rmrf(dir);
	free(dir);
}

static void bad_flags_are_rejected(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 256];
	snprintf(cmd, sizeof(cmd), "'%s/ringlog-bench' --record-size 9:3 >/dev/null 2>&1",
		 tools_dir);
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "'%s/ringlog-bench' --bogus >/dev/null 2>&1", tools_dir);
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "'%s/ringlog-bench' --help | grep -q -- --inflight", tools_dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s/naive-append' --inflight 4 >/dev/null 2>&1", tools_dir);
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

int main(int argc, char **argv)
{
	(void)argc;
	tu_require_uring();
	/* The tools sit one directory above this test program. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(tools_dir, sizeof(tools_dir), "%s/..", self);
	(void)argv;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(bench_closed_loop_json_adds_up),
	    cmocka_unit_test(bench_batches_mode_counts_exactly),
	    cmocka_unit_test(bench_open_loop_reports_rate),
	    cmocka_unit_test(naive_append_json_adds_up),
	    cmocka_unit_test(users_directory_is_kept),
	    cmocka_unit_test(bad_flags_are_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
