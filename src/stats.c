/*
 * What a running log reports about itself: ringlog_stats (counters the consumer,
 * the ring and the preparer keep) and ringlog_latency (the stage histograms of
 * profile.c, when the log was opened with options.profile).
 */
#include "log_internal.h"

#include "errors.h"

#include <string.h>

RINGLOG_API int ringlog_stats(struct ringlog *log, struct ringlog_stats *out)
{
	memset(out, 0, sizeof(*out));
#define LOAD(c) atomic_load_explicit(&log->c, memory_order_relaxed)
	out->batches = LOAD(st_batches);
	out->records = LOAD(st_records);
	out->bytes = LOAD(st_bytes);
	out->groups = LOAD(st_groups);
	out->writes = LOAD(st_writes);
	out->fdatasyncs = LOAD(st_fdatasyncs);
	out->retries = LOAD(st_retries);
	out->rotations = LOAD(st_rotations);
	out->segment_first_lsn = LOAD(st_segment_first_lsn);
	out->ring_full_waits = LOAD(ring.full_waits);
	out->bytes_written = LOAD(st_bytes_written);
	out->segments_prepared = LOAD(pool.prepared);
	out->segments_recycled = LOAD(pool.recycled);
	out->rotation_waits = LOAD(pool.waits);
	out->prepared_ready = LOAD(pool.ready_now);
	out->retention_held = LOAD(st_retention_held);
	out->retention_held_lsn = LOAD(st_retention_held_lsn);
#undef LOAD
	out->direct_io = (uint64_t)log->direct;
	out->io_align = log->align;
	out->pipeline_depth = log->opts.pipeline_depth;
	out->durable_lsn = ringlog_durable_lsn(log);
	out->next_lsn = ringlog_next_lsn(log);
	return 0;
}

RINGLOG_API int ringlog_latency(struct ringlog *log, struct ringlog_latency *out, int reset)
{
	int err = rl_profile_read(&log->profile, out, reset);
	return err ? rl_fail(err, "latency: the log was opened without options.profile") : 0;
}

RINGLOG_API uint64_t ringlog_latency_percentile(struct ringlog *log, unsigned stage, double p)
{
	return rl_profile_percentile(&log->profile, stage, p);
}
