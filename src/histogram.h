/*
 * A log-linear latency histogram of uint64_t values with 3 significant decimal
 * digits (the layout and the precision guarantee are described in histogram.c).
 *
 * One histogram per thread: nothing here is synchronised.  Merge per-thread
 * histograms into one (from a single thread) to report.
 */
#ifndef RL_HISTOGRAM_H
#define RL_HISTOGRAM_H

#include <stdint.h>
#include <stdio.h>

#define RL_HIST_SUB_BITS 10 /* 2^10 sub-buckets per power of two above 2^10 */
#define RL_HIST_GROUPS 32   /* group 0: [0, 2^11); group g >= 1: [2^(g+10), 2^(g+11)) */
#define RL_HIST_BUCKETS ((RL_HIST_GROUPS + 1) << RL_HIST_SUB_BITS)
/* Largest value recorded without clamping: 2^42 - 1 ns, about 73 minutes. */
#define RL_HIST_MAX_VALUE ((UINT64_C(1) << (RL_HIST_GROUPS + RL_HIST_SUB_BITS)) - 1)

struct rl_hist {
	uint64_t *counts; /* RL_HIST_BUCKETS counts, allocated by rl_hist_init */
	uint64_t total;	  /* samples recorded */
	uint64_t min;	  /* smallest value recorded, UINT64_MAX when empty */
	uint64_t max;	  /* largest value recorded (before clamping), 0 when empty */
	uint64_t clamped; /* samples above RL_HIST_MAX_VALUE */
};

/* An empty histogram; its only allocation.  0 or -ENOMEM (then *h is safe to free). */
int rl_hist_init(struct rl_hist *h);
/* Release what init allocated; safe on a zeroed or already freed histogram. */
void rl_hist_free(struct rl_hist *h);
/* Back to empty, keeping the allocation. */
void rl_hist_reset(struct rl_hist *h);

/*
 * Count `value` once (n times).  O(1), no allocation, no locks.  Values above
 * RL_HIST_MAX_VALUE land in the top bucket and are counted in `clamped`; min and
 * max stay exact.  Recording n == 0 samples changes nothing.
 */
void rl_hist_record(struct rl_hist *h, uint64_t value);
void rl_hist_record_n(struct rl_hist *h, uint64_t value, uint64_t n);
/* Add every sample of src to dst (dst == src doubles it). */
void rl_hist_merge(struct rl_hist *dst, const struct rl_hist *src);

uint64_t rl_hist_count(const struct rl_hist *h);
/* Samples recorded above RL_HIST_MAX_VALUE. */
uint64_t rl_hist_clamped(const struct rl_hist *h);
/* Exact smallest / largest value recorded; 0 if empty. */
uint64_t rl_hist_min(const struct rl_hist *h);
uint64_t rl_hist_max(const struct rl_hist *h);

/*
 * Mean and population standard deviation, computed from each bucket's midpoint
 * clamped to [min, max] (0 if empty).  Every representative is within 1/2048 of
 * the samples it stands for, so the mean is within mean/2048 and the standard
 * deviation within max/2048 of the exact figures (clamped samples count as
 * RL_HIST_MAX_VALUE).
 */
double rl_hist_mean(const struct rl_hist *h);
double rl_hist_stddev(const struct rl_hist *h);

/*
 * The value at percentile p (clamped to [0, 100]; NaN counts as 0): the bucket
 * holding the ceil(p% * count)-th smallest sample (at least the 1st), reported as
 * the highest value equivalent to that bucket and clamped to the exact max.  So
 * the result is never below the exact percentile and exceeds it by less than
 * 1/1000 of it (unless clamped samples are involved); p = 100 gives the max.  The
 * top bucket is open-ended: if it holds the percentile, the max is returned.
 * 0 if empty.  O(RL_HIST_BUCKETS).
 */
uint64_t rl_hist_percentile(const struct rl_hist *h, double p);

/*
 * Write the distribution in HdrHistogram's percentile distribution (.hgrm) text
 * format: a header line (Value, Percentile, TotalCount, 1/(1-Percentile)) and a
 * blank line; one row per percentile tick, where each halving of the distance to
 * 100% takes `ticks_per_half` equal steps (0%, 10%, ... 50%, 55%, ... for 5),
 * until the row that reaches the largest bucket, then a final 100% row (without
 * the last column); then the #[Mean ...], #[Max ...] and #[Buckets ...] lines.
 * Values (and mean, stddev, max) are divided by unit_divisor and printed with 3
 * decimals; percentiles as fractions.  Flushes out.
 * 0, -EINVAL (unit_divisor not > 0, ticks_per_half < 1) or -errno of a write error.
 */
int rl_hist_write_hgrm(const struct rl_hist *h, FILE *out, double unit_divisor, int ticks_per_half);

#endif
