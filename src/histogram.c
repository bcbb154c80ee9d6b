/*
 * Log-linear histogram buckets.
 *
 * Values are split into groups by their highest set bit.  Group 0 holds
 * [0, 2^11) with one bucket per value.  Group g >= 1 holds [2^(g+10), 2^(g+11))
 * in 2^10 buckets of width 2^g: a value's bucket is its top 11 bits.  The bucket
 * index of v in group g is g * 2^10 + (v >> g), so the groups tile one array of
 * RL_HIST_BUCKETS counts with no gaps, and the index costs one count-leading-zeros
 * and a shift.
 *
 * Precision: a bucket of width 2^g starts at or above 2^10 * 2^g, so every value
 * in it is within 2^g - 1 < 1/1024 of its lowest value: 3 significant decimal
 * digits everywhere, and exact below 2^11.  With 32 groups the top bucket ends at
 * RL_HIST_MAX_VALUE = 2^42 - 1 (over 73 minutes in ns); larger values are
 * counted in the top bucket.
 */
#include "histogram.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RL_HIST_SUB (UINT64_C(1) << RL_HIST_SUB_BITS)

/* Bucket of v; v <= RL_HIST_MAX_VALUE. */
static size_t rl_hist_index(uint64_t v)
{
	unsigned g = 63 - (unsigned)__builtin_clzll(v | RL_HIST_SUB) - RL_HIST_SUB_BITS;

	return ((size_t)g << RL_HIST_SUB_BITS) + (size_t)(v >> g);
}

/* Lowest value of bucket i and its width. */
static uint64_t rl_hist_lowest(size_t i, uint64_t *width)
{
	unsigned g = i >> RL_HIST_SUB_BITS ? (unsigned)(i >> RL_HIST_SUB_BITS) - 1 : 0;

	*width = UINT64_C(1) << g;
	return (uint64_t)(i - ((size_t)g << RL_HIST_SUB_BITS)) << g;
}

/* Highest value equivalent to bucket i, clamped to the max; the top bucket is open. */
static uint64_t rl_hist_highest(const struct rl_hist *h, size_t i)
{
	uint64_t width, v = rl_hist_lowest(i, &width) + (width - 1);

	if (i == RL_HIST_BUCKETS - 1 || v > h->max)
		v = h->max;
	return v;
}

int rl_hist_init(struct rl_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->counts = calloc(RL_HIST_BUCKETS, sizeof(*h->counts));
	if (!h->counts)
		return -ENOMEM;
	h->min = UINT64_MAX;
	return 0;
}

void rl_hist_free(struct rl_hist *h)
{
	free(h->counts);
	h->counts = NULL;
}

void rl_hist_reset(struct rl_hist *h)
{
	memset(h->counts, 0, RL_HIST_BUCKETS * sizeof(*h->counts));
	h->total = 0;
	h->min = UINT64_MAX;
	h->max = 0;
	h->clamped = 0;
}

void rl_hist_record_n(struct rl_hist *h, uint64_t value, uint64_t n)
{
	if (n == 0)
		return;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
	if (value > RL_HIST_MAX_VALUE) {
		value = RL_HIST_MAX_VALUE;
		h->clamped += n;
	}
	h->counts[rl_hist_index(value)] += n;
	h->total += n;
}

void rl_hist_record(struct rl_hist *h, uint64_t value)
{
	rl_hist_record_n(h, value, 1);
}

void rl_hist_merge(struct rl_hist *dst, const struct rl_hist *src)
{
	if (src->total == 0)
		return;
	for (size_t i = 0; i < RL_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->total += src->total;
	dst->clamped += src->clamped;
}

uint64_t rl_hist_count(const struct rl_hist *h)
{
	return h->total;
}

uint64_t rl_hist_clamped(const struct rl_hist *h)
{
	return h->clamped;
}

uint64_t rl_hist_min(const struct rl_hist *h)
{
	return h->total ? h->min : 0;
}

uint64_t rl_hist_max(const struct rl_hist *h)
{
	return h->max;
}

/* Representative of bucket i for the moments: its midpoint, clamped to [min, max]. */
static double rl_hist_mid(const struct rl_hist *h, size_t i)
{
	uint64_t width, lo = rl_hist_lowest(i, &width);
	double v = (double)lo + (double)(width - 1) / 2;

	if (v < (double)h->min)
		v = (double)h->min;
	if (v > (double)h->max)
		v = (double)h->max;
	return v;
}

double rl_hist_mean(const struct rl_hist *h)
{
	double sum = 0;

	if (h->total == 0)
		return 0;
	for (size_t i = 0; i < RL_HIST_BUCKETS; i++)
		if (h->counts[i])
			sum += (double)h->counts[i] * rl_hist_mid(h, i);
	return sum / (double)h->total;
}

double rl_hist_stddev(const struct rl_hist *h)
{
	double mean = rl_hist_mean(h), sum = 0;

	if (h->total == 0)
		return 0;
	for (size_t i = 0; i < RL_HIST_BUCKETS; i++) {
		if (h->counts[i]) {
			double d = rl_hist_mid(h, i) - mean;
			sum += (double)h->counts[i] * d * d;
		}
	}
	return sqrt(sum / (double)h->total);
}

/* 1-based rank of the sample at percentile p of a non-empty histogram. */
static uint64_t rl_hist_rank(uint64_t total, double p)
{
	double r;

	if (!(p > 0))
		p = 0;
	if (p > 100)
		p = 100;
	r = ceil(p * (double)total / 100);
	if (r < 1)
		return 1;
	if (r >= (double)total)
		return total;
	return (uint64_t)r;
}

/*
 * A walk over the buckets in value order: *next is the next bucket to add, *seen
 * the samples in the buckets before it (start both at 0).  Advances to the bucket
 * holding the rank-th smallest sample and returns its index; ranks must not
 * decrease along a walk and must be in [1, total].
 */
static size_t rl_hist_walk(const struct rl_hist *h, size_t *next, uint64_t *seen, uint64_t rank)
{
	size_t i = *next;

	while (*seen < rank && i < RL_HIST_BUCKETS)
		*seen += h->counts[i++];
	*next = i;
	return i - 1;
}

uint64_t rl_hist_percentile(const struct rl_hist *h, double p)
{
	size_t next = 0;
	uint64_t seen = 0;

	if (h->total == 0)
		return 0;
	return rl_hist_highest(h, rl_hist_walk(h, &next, &seen, rl_hist_rank(h->total, p)));
}

static int rl_hist_io_error(void)
{
	return errno > 0 ? -errno : -EIO;
}

int rl_hist_write_hgrm(const struct rl_hist *h, FILE *out, double unit_divisor, int ticks_per_half)
{
	size_t next = 0;
	uint64_t seen = 0;
	double span = 50; /* half the distance from the current halving to 100% */

	if (!(unit_divisor > 0) || ticks_per_half < 1)
		return -EINVAL;
	if (fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		    "1/(1-Percentile)") < 0)
		return rl_hist_io_error();
	while (h->total && seen < h->total) {
		for (int t = 0; t < ticks_per_half && seen < h->total; t++) {
			double level = 100 - 2 * span + span * t / ticks_per_half;
			size_t i;

			if (level >= 100)
				goto last;
			i = rl_hist_walk(h, &next, &seen, rl_hist_rank(h->total, level));
			if (fprintf(out, "%12.3f %2.12f %10" PRIu64 " %14.2f\n",
				    (double)rl_hist_highest(h, i) / unit_divisor, level / 100, seen,
				    100 / (100 - level)) < 0)
				return rl_hist_io_error();
		}
		span /= 2;
	}
last:
	if (h->total && fprintf(out, "%12.3f %2.12f %10" PRIu64 "\n", (double)h->max / unit_divisor,
				1.0, h->total) < 0)
		return rl_hist_io_error();
	if (fprintf(out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n",
		    rl_hist_mean(h) / unit_divisor, rl_hist_stddev(h) / unit_divisor) < 0 ||
	    fprintf(out, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n",
		    (double)h->max / unit_divisor, h->total) < 0 ||
	    fprintf(out, "#[Buckets = %12d, SubBuckets     = %12d]\n", RL_HIST_GROUPS,
		    2 << RL_HIST_SUB_BITS) < 0 ||
	    fflush(out) != 0)
		return rl_hist_io_error();
	return 0;
}
