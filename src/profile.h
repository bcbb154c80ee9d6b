/*
 * Stage timing (options.profile): per-stage latency histograms of the consumer's
 * groups and the append-to-durable latency of every batch.
 *
 * Producers stamp each batch's enqueue time into a side array indexed by the batch's
 * sequence number (handed out with its ring reservation); the ring holds at most
 * `slots` frames at once, so a slot is never reused while its batch is queued.  The
 * consumer reads the stamps in ring order and records into the histograms under
 * `lock`, which readers (ringlog_latency) take to copy them.
 */
#ifndef RL_PROFILE_H
#define RL_PROFILE_H

#include "histogram.h"
#include "ringlog.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

struct rl_profile {
	int on;
	uint64_t *enqueue_ns; /* by batch sequence number % slots */
	uint64_t slots;
	uint64_t consumer_seq; /* sequence number of the next frame the consumer takes */
	pthread_mutex_t lock;
	struct rl_hist hist[RINGLOG_STAGES];
};

static inline uint64_t rl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Set up for a ring of `ring_bytes` (0 or -ENOMEM); a no-op when !on. */
int rl_profile_init(struct rl_profile *p, int on, uint64_t ring_bytes);
void rl_profile_free(struct rl_profile *p);

/* Consumer: the stamps of a group of `batches` frames taken in order, and the times
 * of its stages; records every stage and each batch's end-to-end latency. */
struct rl_group_times {
	uint64_t first_seq;
	uint32_t batches;
	uint64_t taken, submitted, write_done, sync_done, woken;
};
void rl_profile_group(struct rl_profile *p, const struct rl_group_times *t);

int rl_profile_read(struct rl_profile *p, struct ringlog_latency *out, int reset);
uint64_t rl_profile_percentile(struct rl_profile *p, unsigned stage, double pct);

#endif
