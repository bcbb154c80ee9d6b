/* Latency histogram: percentiles against exact ones from sorted samples, .hgrm output. */
#include "testutil.h"

#include "histogram.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONE_HOUR_NS UINT64_C(3600000000000)

static const double pcts[] = {0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 99.999, 100};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: deterministic pseudo-random numbers. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [lo, hi]. */
static uint64_t rnd_range(uint64_t lo, uint64_t hi)
{
	return lo + rnd() % (hi - lo + 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The smallest sample v such that at least p% of the samples are <= v. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p)
{
	double r = ceil(p * (double)n / 100);
	size_t rank = r < 1 ? 1 : r > (double)n ? n : (size_t)r;

	return sorted[rank - 1];
}

/* got is the reported value for a sample that is exactly `exact`: within 0.1% (+1). */
static void assert_close(uint64_t got, uint64_t exact)
{
	uint64_t diff = got > exact ? got - exact : exact - got;

	if (diff > exact / 1000 + 1)
		fail_msg("got %" PRIu64 ", exact %" PRIu64, got, exact);
}

static void init(struct rl_hist *h)
{
	assert_int_equal(rl_hist_init(h), 0);
}

/* Record the samples (none above RL_HIST_MAX_VALUE) and check every statistic
 * against the exact one. */
static void check_samples(const uint64_t *samples, size_t n)
{
	struct rl_hist h;
	uint64_t *sorted = malloc(n * sizeof(*sorted));
	double sum = 0, sq = 0, mean, sd;

	assert_non_null(sorted);
	init(&h);
	for (size_t i = 0; i < n; i++)
		rl_hist_record(&h, samples[i]);
	memcpy(sorted, samples, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_u64);

	assert_int_equal(rl_hist_count(&h), n);
	assert_int_equal(rl_hist_clamped(&h), 0);
	assert_int_equal(rl_hist_min(&h), sorted[0]);
	assert_int_equal(rl_hist_max(&h), sorted[n - 1]);
	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
		uint64_t exact = exact_percentile(sorted, n, pcts[k]);
		uint64_t got = rl_hist_percentile(&h, pcts[k]);

		assert_close(got, exact);
		assert_true(got >= exact); /* highest equivalent value */
	}
	assert_int_equal(rl_hist_percentile(&h, 100), sorted[n - 1]);

	for (size_t i = 0; i < n; i++)
		sum += (double)samples[i];
	mean = sum / (double)n;
	for (size_t i = 0; i < n; i++)
		sq += ((double)samples[i] - mean) * ((double)samples[i] - mean);
	sd = sqrt(sq / (double)n);
	assert_true(fabs(rl_hist_mean(&h) - mean) <= mean / 2048 + 1e-9 * mean + 1e-9);
	assert_true(fabs(rl_hist_stddev(&h) - sd) <=
		    (double)sorted[n - 1] / 2048 + 1e-9 * (double)sorted[n - 1] + 1e-9);

	rl_hist_free(&h);
	free(sorted);
}

static void precision_over_whole_range(void **state)
{
	struct rl_hist h;
	uint64_t prev = 0;

	(void)state;
	init(&h);
	for (uint64_t v = 0; v <= RL_HIST_MAX_VALUE; v = v < 4200 ? v + 1 : v + v / 97 + 1) {
		uint64_t got;

		rl_hist_reset(&h);
		rl_hist_record(&h, v);
		rl_hist_record(&h, RL_HIST_MAX_VALUE); /* so the max does not clamp v's bucket */
		got = rl_hist_percentile(&h, 0);
		if (v < 2048)
			assert_int_equal(got, v);
		if (got < v || got - v > v / 1000)
			fail_msg("value %" PRIu64 " reported as %" PRIu64, v, got);
		assert_true(got >= prev);
		prev = got;
	}
	for (unsigned bits = 11; bits <= 42; bits++) {
		uint64_t lo = UINT64_C(1) << (bits - 1), hi = (UINT64_C(1) << bits) - 1;
		uint64_t edge[] = {lo, lo + 1, hi - 1, hi};

		for (unsigned k = 0; k < 24; k++) {
			uint64_t v = k < 4 ? edge[k] : rnd_range(lo, hi), got;

			rl_hist_reset(&h);
			rl_hist_record(&h, v);
			rl_hist_record(&h, RL_HIST_MAX_VALUE);
			got = rl_hist_percentile(&h, 0);
			if (got < v || got - v > v / 1000)
				fail_msg("value %" PRIu64 " reported as %" PRIu64, v, got);
		}
	}
	rl_hist_free(&h);
}

static void uniform_one_to_million(void **state)
{
	size_t n = 1000000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct rl_hist h;

	(void)state;
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = i + 1;
	check_samples(v, n);

	init(&h);
	for (size_t i = 0; i < n; i++)
		rl_hist_record(&h, v[i]);
	assert_int_equal(rl_hist_count(&h), n);
	assert_int_equal(rl_hist_min(&h), 1);
	assert_int_equal(rl_hist_max(&h), 1000000);
	assert_close(rl_hist_percentile(&h, 50), 500000);
	assert_close(rl_hist_percentile(&h, 99), 990000);
	assert_close(rl_hist_percentile(&h, 99.9), 999000);
	assert_int_equal(rl_hist_percentile(&h, 100), 1000000);
	assert_true(fabs(rl_hist_mean(&h) - 500000.5) <= 500000.5 / 2048);
	rl_hist_free(&h);
	free(v);
}

static void bimodal(void **state)
{
	size_t n = 100000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct rl_hist h;

	(void)state;
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = i % 10 ? rnd_range(20000, 80000) : rnd_range(5000000, 50000000);
	check_samples(v, n);

	init(&h);
	for (size_t i = 0; i < n; i++)
		rl_hist_record(&h, v[i]);
	assert_true(rl_hist_percentile(&h, 50) <= 80080);
	assert_true(rl_hist_percentile(&h, 89) <= 80080);
	assert_true(rl_hist_percentile(&h, 91) >= 5000000);
	rl_hist_free(&h);
	free(v);
}

static void single_value(void **state)
{
	uint64_t v = 123456789;
	struct rl_hist h;

	(void)state;
	check_samples(&v, 1);
	init(&h);
	rl_hist_record(&h, v);
	assert_int_equal(rl_hist_percentile(&h, 0), v);
	assert_int_equal(rl_hist_percentile(&h, 50), v);
	assert_int_equal(rl_hist_percentile(&h, 100), v);
	assert_true(rl_hist_mean(&h) == (double)v);
	assert_true(rl_hist_stddev(&h) == 0);
	rl_hist_free(&h);
}

static void empty(void **state)
{
	struct rl_hist h;

	(void)state;
	init(&h);
	assert_int_equal(rl_hist_count(&h), 0);
	assert_int_equal(rl_hist_min(&h), 0);
	assert_int_equal(rl_hist_max(&h), 0);
	assert_int_equal(rl_hist_percentile(&h, 0), 0);
	assert_int_equal(rl_hist_percentile(&h, 50), 0);
	assert_int_equal(rl_hist_percentile(&h, 100), 0);
	assert_true(rl_hist_mean(&h) == 0);
	assert_true(rl_hist_stddev(&h) == 0);
	rl_hist_free(&h);
	rl_hist_free(&h); /* idempotent */
}

static void small_values_are_exact(void **state)
{
	uint64_t v[3000];
	struct rl_hist h;

	(void)state;
	for (size_t i = 0; i < 3000; i++)
		v[i] = i % 2048; /* 0 included */
	check_samples(v, 3000);
	init(&h);
	for (size_t i = 0; i < 3000; i++)
		rl_hist_record(&h, v[i]);
	assert_int_equal(rl_hist_min(&h), 0);
	assert_int_equal(rl_hist_percentile(&h, 0), 0);
	qsort(v, 3000, sizeof(v[0]), cmp_u64);
	for (unsigned p = 1; p <= 100; p++)
		assert_int_equal(rl_hist_percentile(&h, p), exact_percentile(v, 3000, p));
	rl_hist_free(&h);
}

static void near_one_hour(void **state)
{
	size_t n = 20000;
	uint64_t *v = malloc(n * sizeof(*v));

	(void)state;
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = rnd_range(ONE_HOUR_NS - ONE_HOUR_NS / 6, ONE_HOUR_NS + ONE_HOUR_NS / 6);
	v[0] = ONE_HOUR_NS;
	v[1] = RL_HIST_MAX_VALUE;
	check_samples(v, n);
	free(v);
}

static void clamping_above_max(void **state)
{
	struct rl_hist h;

	(void)state;
	init(&h);
	rl_hist_record(&h, RL_HIST_MAX_VALUE);
	assert_int_equal(rl_hist_clamped(&h), 0);
	assert_int_equal(rl_hist_percentile(&h, 100), RL_HIST_MAX_VALUE);

	rl_hist_reset(&h);
	for (unsigned i = 0; i < 1000; i++)
		rl_hist_record(&h, ONE_HOUR_NS);
	rl_hist_record(&h, RL_HIST_MAX_VALUE + 1);
	rl_hist_record(&h, 10 * ONE_HOUR_NS);
	rl_hist_record(&h, UINT64_MAX);
	assert_int_equal(rl_hist_count(&h), 1003);
	assert_int_equal(rl_hist_clamped(&h), 3);
	assert_int_equal(rl_hist_min(&h), ONE_HOUR_NS);
	assert_true(rl_hist_max(&h) == UINT64_MAX);
	assert_close(rl_hist_percentile(&h, 50), ONE_HOUR_NS);
	assert_close(rl_hist_percentile(&h, 99.7), ONE_HOUR_NS);
	assert_true(rl_hist_percentile(&h, 99.8) > RL_HIST_MAX_VALUE / 2);
	assert_true(rl_hist_percentile(&h, 100) == UINT64_MAX);
	assert_true(rl_hist_mean(&h) <= (double)RL_HIST_MAX_VALUE);
	rl_hist_free(&h);
}

static void assert_same(const struct rl_hist *a, const struct rl_hist *b)
{
	assert_memory_equal(a->counts, b->counts, RL_HIST_BUCKETS * sizeof(*a->counts));
	assert_int_equal(rl_hist_count(a), rl_hist_count(b));
	assert_int_equal(rl_hist_clamped(a), rl_hist_clamped(b));
	assert_int_equal(rl_hist_min(a), rl_hist_min(b));
	assert_true(rl_hist_max(a) == rl_hist_max(b));
	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++)
		assert_true(rl_hist_percentile(a, pcts[k]) == rl_hist_percentile(b, pcts[k]));
	assert_true(rl_hist_mean(a) == rl_hist_mean(b));
	assert_true(rl_hist_stddev(a) == rl_hist_stddev(b));
}

static void merge_equals_recording_all(void **state)
{
	struct rl_hist a, b, all, e;

	(void)state;
	init(&a);
	init(&b);
	init(&all);
	init(&e);
	for (unsigned i = 0; i < 50000; i++) {
		uint64_t x = rnd_range(1000, 2000000), y = rnd_range(3, 5000) << (i % 30);

		rl_hist_record(&a, x);
		rl_hist_record(&b, y);
		rl_hist_record(&all, x);
		rl_hist_record(&all, y);
	}
	rl_hist_record(&b, 2 * ONE_HOUR_NS);
	rl_hist_record(&all, 2 * ONE_HOUR_NS);

	rl_hist_merge(&e, &a); /* into an empty one */
	assert_same(&e, &a);
	rl_hist_merge(&a, &b);
	assert_same(&a, &all);
	rl_hist_reset(&e);
	rl_hist_merge(&a, &e); /* an empty one changes nothing */
	assert_same(&a, &all);
	rl_hist_free(&a);
	rl_hist_free(&b);
	rl_hist_free(&all);
	rl_hist_free(&e);
}

static void reset(void **state)
{
	struct rl_hist h, fresh;

	(void)state;
	init(&h);
	init(&fresh);
	for (uint64_t v = 1; v < 100000; v += 7)
		rl_hist_record(&h, v * 1000);
	rl_hist_record(&h, UINT64_MAX);
	rl_hist_reset(&h);
	assert_same(&h, &fresh);
	assert_int_equal(rl_hist_max(&h), 0);
	assert_int_equal(rl_hist_percentile(&h, 50), 0);
	rl_hist_record(&h, 5);
	assert_int_equal(rl_hist_min(&h), 5);
	assert_int_equal(rl_hist_max(&h), 5);
	assert_int_equal(rl_hist_count(&h), 1);
	rl_hist_free(&h);
	rl_hist_free(&fresh);
}

static void record_n(void **state)
{
	static const uint64_t vals[] = {0,	1,	   999,		2047,	   2048,
					123456, 987654321, ONE_HOUR_NS, UINT64_MAX};
	struct rl_hist a, b;

	(void)state;
	init(&a);
	init(&b);
	for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
		rl_hist_record_n(&a, vals[k], 1000 + k);
		for (size_t i = 0; i < 1000 + k; i++)
			rl_hist_record(&b, vals[k]);
	}
	assert_same(&a, &b);
	rl_hist_reset(&a);
	rl_hist_record(&a, 7);
	rl_hist_record_n(&a, 3, 0);
	rl_hist_record_n(&a, 9, 0);
	assert_int_equal(rl_hist_count(&a), 1);
	assert_int_equal(rl_hist_min(&a), 7);
	assert_int_equal(rl_hist_max(&a), 7);
	rl_hist_free(&a);
	rl_hist_free(&b);
}

static void mean_stddev_known_set(void **state)
{
	static const uint64_t set[] = {2, 4, 4, 4, 5, 5, 7, 9}; /* mean 5, stddev 2 */
	const uint64_t scale = 1000003;
	struct rl_hist h;
	double mean;

	(void)state;
	init(&h);
	for (size_t i = 0; i < 8; i++)
		rl_hist_record(&h, set[i]);
	assert_true(rl_hist_mean(&h) == 5);
	assert_true(rl_hist_stddev(&h) == 2);
	rl_hist_reset(&h);
	for (size_t i = 0; i < 8; i++)
		rl_hist_record(&h, set[i] * scale);
	assert_true(fabs(rl_hist_mean(&h) - 5.0 * scale) <= 5.0 * scale / 2048);
	assert_true(fabs(rl_hist_stddev(&h) - 2.0 * scale) <= 9.0 * scale / 2048);

	/* Every sample at the bottom (then the top) of its bucket: the worst cases. */
	for (uint64_t top = 0; top <= 1; top++) {
		rl_hist_reset(&h);
		for (uint64_t k = 0; k < 1024; k++)
			rl_hist_record(&h, ((1024 + k) << 20) + top * ((1 << 20) - 1));
		mean = (1024 + 511.5) * (1 << 20) + top * ((1 << 20) - 1);
		assert_true(fabs(rl_hist_mean(&h) - mean) <= mean / 2048);
	}
	rl_hist_free(&h);
}

/* Parse an .hgrm stream; checks its shape and returns the number of data rows. */
static unsigned check_hgrm(FILE *f, const struct rl_hist *h, double divisor, const uint64_t *sorted)
{
	char line[256], c[4][32];
	double prev_val = -1, prev_pct = -1, last_pct = -1, mean, sd, max;
	uint64_t prev_cnt = 0, last_cnt = 0, count;
	unsigned rows = 0, last_fields = 0;
	int buckets, sub;

	rewind(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(sscanf(line, "%31s %31s %31s %31s", c[0], c[1], c[2], c[3]), 4);
	assert_string_equal(c[0], "Value");
	assert_string_equal(c[1], "Percentile");
	assert_string_equal(c[2], "TotalCount");
	assert_string_equal(c[3], "1/(1-Percentile)");
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(line, "\n");
	while (fgets(line, sizeof(line), f) && line[0] != '#') {
		double val, pct, inv;
		uint64_t cnt;
		int k = sscanf(line, "%lf %lf %" SCNu64 " %lf", &val, &pct, &cnt, &inv);

		assert_true(k == 3 || k == 4);
		assert_true(last_fields != 3); /* only the last row lacks 1/(1-p) */
		assert_true(val >= prev_val && pct >= prev_pct && cnt >= prev_cnt);
		assert_true(pct >= 0 && pct <= 1 && cnt <= rl_hist_count(h));
		if (k == 4)
			assert_true(fabs(inv - 1 / (1 - pct)) <= 0.006 + 1e-6 * inv);
		if (sorted) {
			uint64_t exact = exact_percentile(sorted, rl_hist_count(h), pct * 100);
			double diff = fabs(val * divisor - (double)exact);

			assert_true(diff <= (double)exact / 1000 + 1 + divisor / 1000);
		}
		prev_val = val;
		prev_pct = last_pct = pct;
		prev_cnt = last_cnt = cnt;
		last_fields = (unsigned)k;
		rows++;
	}
	assert_int_equal(last_fields, 3);
	assert_true(last_pct == 1.0);
	assert_int_equal(last_cnt, rl_hist_count(h));
	assert_true(fabs(prev_val - (double)rl_hist_max(h) / divisor) <= 0.0005);

	assert_int_equal(sscanf(line, "#[Mean = %lf, StdDeviation = %lf]", &mean, &sd), 2);
	assert_true(fabs(mean - rl_hist_mean(h) / divisor) <= 0.0005);
	assert_true(fabs(sd - rl_hist_stddev(h) / divisor) <= 0.0005);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(sscanf(line, "#[Max = %lf, Total count = %" SCNu64 "]", &max, &count), 2);
	assert_true(fabs(max - (double)rl_hist_max(h) / divisor) <= 0.0005);
	assert_int_equal(count, rl_hist_count(h));
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(sscanf(line, "#[Buckets = %d, SubBuckets = %d]", &buckets, &sub), 2);
	assert_true(buckets > 0 && sub > 0);
	assert_null(fgets(line, sizeof(line), f));
	return rows;
}

static void hgrm_output_parses(void **state)
{
	size_t n = 1000000;
	uint64_t *sorted = malloc(n * sizeof(*sorted));
	struct rl_hist h;
	char line[256];
	int seen_half = 0, seen_95 = 0;
	FILE *f = tmpfile();
	unsigned rows;

	(void)state;
	assert_non_null(sorted);
	assert_non_null(f);
	init(&h);
	for (size_t i = 0; i < n; i++) {
		sorted[i] = i + 1;
		rl_hist_record(&h, i + 1);
	}
	assert_int_equal(rl_hist_write_hgrm(&h, f, 1000.0, 5), 0);
	rows = check_hgrm(f, &h, 1000.0, sorted);
	assert_true(rows > 20 && rows < 200);
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		double val, pct;

		if (sscanf(line, "%lf %lf", &val, &pct) != 2)
			continue;
		if (pct == 0.5) {
			seen_half = 1;
			assert_true(fabs(val - 500.0) <= 0.5 + 0.001);
		}
		if (pct == 0.95) {
			seen_95 = 1;
			assert_true(fabs(val - 950.0) <= 0.95 + 0.001);
		}
	}
	assert_true(seen_half && seen_95);
	fclose(f);

	/* One value: the 0% row and the 100% row. */
	f = tmpfile();
	assert_non_null(f);
	rl_hist_reset(&h);
	rl_hist_record(&h, 42);
	assert_int_equal(rl_hist_write_hgrm(&h, f, 1.0, 5), 0);
	assert_int_equal(check_hgrm(f, &h, 1.0, NULL), 2);
	fclose(f);
	rl_hist_free(&h);
	free(sorted);
}

static void hgrm_errors(void **state)
{
	struct rl_hist h;
	FILE *f;

	(void)state;
	init(&h);
	rl_hist_record(&h, 1000);
	f = fopen("/dev/null", "r");
	assert_non_null(f);
	assert_int_equal(rl_hist_write_hgrm(&h, f, 1.0, 5), -EBADF);
	assert_int_equal(rl_hist_write_hgrm(&h, f, 0.0, 5), -EINVAL);
	assert_int_equal(rl_hist_write_hgrm(&h, f, 1.0, 0), -EINVAL);
	fclose(f);
	f = fopen("/dev/full", "w");
	if (f) {
		assert_int_equal(rl_hist_write_hgrm(&h, f, 1.0, 5), -ENOSPC);
		fclose(f);
	}
	rl_hist_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(precision_over_whole_range),
	    cmocka_unit_test(uniform_one_to_million),
	    cmocka_unit_test(bimodal),
	    cmocka_unit_test(single_value),
	    cmocka_unit_test(empty),
	    cmocka_unit_test(small_values_are_exact),
	    cmocka_unit_test(near_one_hour),
	    cmocka_unit_test(clamping_above_max),
	    cmocka_unit_test(merge_equals_recording_all),
	    cmocka_unit_test(reset),
	    cmocka_unit_test(record_n),
	    cmocka_unit_test(mean_stddev_known_set),
	    cmocka_unit_test(hgrm_output_parses),
	    cmocka_unit_test(hgrm_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
