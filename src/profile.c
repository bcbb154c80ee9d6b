/* Stage timing; the scheme is described in profile.h. */
#include "profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The smallest frame is 40 bytes (header, one length, padding). */
#define RL_MIN_FRAME_BYTES 40

int rl_profile_init(struct rl_profile *p, int on, uint64_t ring_bytes)
{
	memset(p, 0, sizeof(*p));
	if (!on)
		return 0;
	p->slots = ring_bytes / RL_MIN_FRAME_BYTES + 1;
	p->enqueue_ns = calloc(p->slots, sizeof(*p->enqueue_ns));
	if (!p->enqueue_ns)
		return -ENOMEM;
	for (int i = 0; i < RINGLOG_STAGES; i++)
		if (rl_hist_init(&p->hist[i])) {
			rl_profile_free(p);
			return -ENOMEM;
		}
	pthread_mutex_init(&p->lock, NULL);
	p->on = 1;
	return 0;
}

void rl_profile_free(struct rl_profile *p)
{
	for (int i = 0; i < RINGLOG_STAGES; i++)
		rl_hist_free(&p->hist[i]);
	free(p->enqueue_ns);
	if (p->on)
		pthread_mutex_destroy(&p->lock);
	memset(p, 0, sizeof(*p));
}

static uint64_t since(uint64_t from, uint64_t to)
{
	return to > from ? to - from : 0;
}

void rl_profile_group(struct rl_profile *p, const struct rl_group_times *t)
{
	uint64_t first = p->enqueue_ns[t->first_seq % p->slots];
	pthread_mutex_lock(&p->lock);
	rl_hist_record(&p->hist[RINGLOG_STAGE_QUEUE], since(first, t->taken));
	rl_hist_record(&p->hist[RINGLOG_STAGE_SUBMIT], since(t->taken, t->submitted));
	rl_hist_record(&p->hist[RINGLOG_STAGE_WRITE], since(t->submitted, t->write_done));
	rl_hist_record(&p->hist[RINGLOG_STAGE_SYNC], since(t->write_done, t->sync_done));
	rl_hist_record(&p->hist[RINGLOG_STAGE_WAKE], since(t->sync_done, t->woken));
	for (uint32_t i = 0; i < t->batches; i++)
		rl_hist_record(&p->hist[RINGLOG_STAGE_END_TO_END],
			       since(p->enqueue_ns[(t->first_seq + i) % p->slots], t->woken));
	pthread_mutex_unlock(&p->lock);
}

int rl_profile_read(struct rl_profile *p, struct ringlog_latency *out, int reset)
{
	memset(out, 0, sizeof(*out));
	if (!p->on)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < RINGLOG_STAGES; i++) {
		const struct rl_hist *h = &p->hist[i];
		struct ringlog_latency_stage *s = &out->stage[i];
		s->count = rl_hist_count(h);
		s->mean_ns = (uint64_t)rl_hist_mean(h);
		s->p50_ns = rl_hist_percentile(h, 50);
		s->p90_ns = rl_hist_percentile(h, 90);
		s->p99_ns = rl_hist_percentile(h, 99);
		s->p999_ns = rl_hist_percentile(h, 99.9);
		s->max_ns = rl_hist_max(h);
		if (reset)
			rl_hist_reset(&p->hist[i]);
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

uint64_t rl_profile_percentile(struct rl_profile *p, unsigned stage, double pct)
{
	if (!p->on || stage >= RINGLOG_STAGES)
		return 0;
	pthread_mutex_lock(&p->lock);
	uint64_t v = rl_hist_percentile(&p->hist[stage], pct);
	pthread_mutex_unlock(&p->lock);
	return v;
}
