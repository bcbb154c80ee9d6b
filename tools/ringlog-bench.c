/*
 * ringlog-bench: drive a ringlog from many submitter threads and report durable
 * throughput and append-to-durable latency.
 *
 * Latency of a batch = from its append (closed loop, or batches in flight) or its
 * intended submit time (open loop, --rate: so a stall delays the schedule and shows
 * up in the latency instead of hiding it) to the moment its thread saw it durable.
 * Each thread records into its own histogram; they are merged at the end.
 * Throughput counts batches appended in the measured window, over the time from
 * the window's start until the last of them was durable.
 */
#include "bench_common.h"
#include "latency_plot.h"
#include "ringlog.h"
#include "ringlog_nats.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct pending {
	uint64_t last_lsn;
	uint64_t start_ns;
	uint64_t bytes;
	int measured;
};

static struct {
	struct bench_opts o;
	struct ringlog *log;
	_Atomic int phase;
	_Atomic int64_t batches_left; /* --batches: measured batches still to append */
	_Atomic unsigned running;
	uint64_t t_start; /* when the threads started (open-loop schedules) */
} g;

struct worker {
	struct bench_thread t;
	pthread_t thread;
	struct pending *q; /* FIFO of batches awaiting durability */
	unsigned head, count;
};

static void complete(struct worker *w, const struct pending *p, uint64_t now)
{
	if (p->measured) {
		rl_hist_record(&w->t.hist, now - p->start_ns);
		w->t.batches++;
		w->t.records += g.o.records_per_batch;
		w->t.bytes += p->bytes;
	}
	atomic_fetch_add_explicit(&w->t.progress, 1, memory_order_relaxed);
}

/* Retire every queued batch that is durable now. */
static void reap(struct worker *w)
{
	uint64_t durable = ringlog_durable_lsn(g.log);
	if (w->count == 0 || w->q[w->head].last_lsn > durable)
		return;
	uint64_t now = bench_now_ns();
	while (w->count > 0 && w->q[w->head].last_lsn <= durable) {
		complete(w, &w->q[w->head], now);
		w->head = (w->head + 1) % g.o.inflight;
		w->count--;
	}
}

/* Wait (at most timeout_ns, < 0 forever) for the oldest queued batch, then reap. */
static int wait_oldest(struct worker *w, int64_t timeout_ns)
{
	int err = ringlog_wait_timeout(g.log, w->q[w->head].last_lsn, timeout_ns);
	if (err && err != -ETIMEDOUT)
		return err;
	reap(w);
	return 0;
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	const struct bench_opts *o = &g.o;
	size_t payload_len = (size_t)o->records_per_batch * o->record_max;
	uint8_t *payload = malloc(payload_len ? payload_len : 1);
	struct iovec *iov = calloc(o->records_per_batch, sizeof(*iov));
	w->q = calloc(o->inflight, sizeof(*w->q));
	if (!payload || !iov || !w->q) {
		w->t.err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < payload_len; i++) /* incompressible-ish bytes, made once */
		payload[i] = (uint8_t)(bench_record_size(
		    &(struct bench_opts){.record_min = 0, .record_max = 255}, &w->t));
	uint64_t period = o->rate > 0 ? (uint64_t)(1e9 * o->threads / o->rate) : 0;
	uint64_t next = g.t_start + (period * w->t.id) / o->threads; /* staggered schedules */
	for (;;) {
		int phase = atomic_load_explicit(&g.phase, memory_order_relaxed);
		if (phase == BENCH_STOP)
			break;
		if (phase == BENCH_MEASURE && o->batches &&
		    atomic_fetch_sub_explicit(&g.batches_left, 1, memory_order_relaxed) <= 0)
			break;
		while (w->count == o->inflight)
			if ((w->t.err = wait_oldest(w, -1)) != 0)
				goto out;
		uint64_t start = bench_now_ns();
		if (period) {
			while (start < next) {
				if (w->count > 0) {
					if ((w->t.err = wait_oldest(w, (int64_t)(next - start))) !=
					    0)
						goto out;
				} else {
					struct timespec ts = {(time_t)(next / 1000000000),
							      (long)(next % 1000000000)};
					clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				}
				start = bench_now_ns();
			}
			if (start >= next + period)
				w->t.late++;
			start = next; /* latency counts from the intended time */
			next += period;
		}
		uint64_t bytes = 0;
		for (unsigned r = 0; r < o->records_per_batch; r++) {
			uint32_t len = bench_record_size(o, &w->t);
			iov[r].iov_base = payload + (size_t)r * o->record_max;
			iov[r].iov_len = len;
			bytes += len;
		}
		uint64_t first;
		int err = ringlog_append(g.log, iov, o->records_per_batch, &first);
		if (err) {
			w->t.err = err;
			goto out;
		}
		w->q[(w->head + w->count) % o->inflight] = (struct pending){
		    first + o->records_per_batch - 1, start, bytes, phase == BENCH_MEASURE};
		w->count++;
		reap(w);
	}
	while (w->count > 0 && !w->t.err)
		w->t.err = wait_oldest(w, -1);
	w->t.finished_ns = bench_now_ns();
out:
	if (w->t.err)
		snprintf(w->t.errmsg, sizeof(w->t.errmsg), "%s", ringlog_last_error());
	free(payload);
	free(iov);
	atomic_fetch_sub(&g.running, 1);
	return NULL;
}

static const char *stage_names[RINGLOG_STAGES] = {
    "queue", "submit", "write", "fdatasync", "wake", "end to end",
};

static uint64_t stage_pct(void *arg, double p)
{
	return ringlog_latency_percentile(g.log, (unsigned)(uintptr_t)arg, p);
}

static uint64_t hist_pct(void *arg, double p)
{
	return rl_hist_percentile(arg, p);
}

/* The stage table (print), or its JSON members (json != NULL). */
static void print_stages(const struct ringlog_latency *l, char *json, size_t cap, int print)
{
	double e2e = (double)l->stage[RINGLOG_STAGE_END_TO_END].mean_ns;
	size_t used = json ? (size_t)snprintf(json, cap, ",\"stages_us\":{") : cap;
	if (print)
		printf("  stages (library, per group; end to end per batch), us:\n"
		       "    %-12s %10s %10s %10s %10s %10s %10s %8s\n",
		       "stage", "count", "mean", "p50", "p99", "p99.9", "max", "share");
	for (int i = 0; i < RINGLOG_STAGES; i++) {
		const struct ringlog_latency_stage *st = &l->stage[i];
		double share = e2e > 0 ? 100.0 * (double)st->mean_ns / e2e : 0;
		if (print)
			printf("    %-12s %10" PRIu64
			       " %10.1f %10.1f %10.1f %10.1f %10.1f %7.1f%%\n",
			       stage_names[i], st->count, st->mean_ns / 1e3, st->p50_ns / 1e3,
			       st->p99_ns / 1e3, st->p999_ns / 1e3, st->max_ns / 1e3, share);
		if (used < cap)
			used += (size_t)snprintf(
			    json + used, cap - used,
			    "%s\"%s\":{\"count\":%" PRIu64 ",\"mean\":%.3f,"
			    "\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}",
			    i ? "," : "",
			    i == RINGLOG_STAGE_END_TO_END ? "end_to_end" : stage_names[i],
			    st->count, st->mean_ns / 1e3, st->p50_ns / 1e3, st->p99_ns / 1e3,
			    st->p999_ns / 1e3, st->max_ns / 1e3);
	}
	if (json && used < cap)
		snprintf(json + used, cap - used, "}");
}

static int write_plot(struct worker *w)
{
	struct rl_hist all;
	if (rl_hist_init(&all))
		return -1;
	for (unsigned i = 0; i < g.o.threads; i++)
		rl_hist_merge(&all, &w[i].t.hist);
	struct plot_curve c[RINGLOG_STAGES + 1];
	int n = 0;
	c[n++] = (struct plot_curve){"end to end (submitter)", hist_pct, &all};
	static const int order[] = {RINGLOG_STAGE_END_TO_END, RINGLOG_STAGE_QUEUE,
				    RINGLOG_STAGE_SUBMIT,     RINGLOG_STAGE_WRITE,
				    RINGLOG_STAGE_SYNC,	      RINGLOG_STAGE_WAKE};
	static const char *labels[] = {
	    "end to end (library)", "queue", "submit", "write", "fdatasync", "wake"};
	for (int i = 0; i < 6; i++)
		c[n++] = (struct plot_curve){labels[i], stage_pct, (void *)(uintptr_t)order[i]};
	char title[200];
	snprintf(title, sizeof(title), "ringlog latency: %u threads, %u x %u B per batch, %s",
		 g.o.threads, g.o.records_per_batch, g.o.record_max,
		 g.o.rate > 0	     ? "open loop"
		 : g.o.inflight == 1 ? "closed loop"
				     : "batches in flight");
	FILE *f = fopen(g.o.plot, "w");
	int rc = !f || plot_latency_svg(f, title, c, n) != 0 ? -1 : 0;
	if (f && fclose(f) != 0)
		rc = -1;
	rl_hist_free(&all);
	return rc;
}

static void counters(struct bench_counters *c)
{
	struct ringlog_stats st;
	ringlog_stats(g.log, &st);
	*c = (struct bench_counters){st.batches, st.records, st.bytes, st.fdatasyncs};
}

/* Sleep until `until` (ns), ticking the progress line and interval lines. */
static void tick_until(uint64_t until, int (*done)(void), struct bench_counters *prev,
		       uint64_t *last_tick)
{
	uint64_t step = g.o.interval_s > 0 ? (uint64_t)(g.o.interval_s * 1e9) : 250000000ull;
	if (step > 250000000ull && isatty(STDERR_FILENO))
		step = 250000000ull;
	for (;;) {
		uint64_t now = bench_now_ns();
		if ((until && now >= until) || (done && done()))
			return;
		uint64_t wake = *last_tick + step;
		if (until && wake > until)
			wake = until;
		if (done && wake > now + 2000000)
			wake = now + 2000000; /* notice the end within 2 ms */
		if (wake > now)
			usleep((useconds_t)((wake - now) / 1000));
		now = bench_now_ns();
		if (now >= *last_tick + step) {
			struct bench_counters c;
			counters(&c);
			bench_tick(&g.o, (double)(now - g.t_start) / 1e9, &c, prev,
				   (double)(now - *last_tick) / 1e9, 0);
			*last_tick = now;
		}
	}
}

static int all_done(void)
{
	return atomic_load(&g.running) == 0;
}

/* --retain-segments N: as a service that checkpoints would, keep only the newest N
 * segments, calling ringlog_truncate_before as rotations happen (retention recycles
 * the removed files when --recycle is given). */
static void *run_retention(void *arg)
{
	(void)arg;
	enum { MAX_KEEP = 1024 };
	static uint64_t firsts[MAX_KEEP + 1];
	unsigned n = 0, keep = g.o.retain < MAX_KEEP ? g.o.retain : MAX_KEEP;
	while (!all_done()) {
		struct ringlog_stats st;
		ringlog_stats(g.log, &st);
		if (n == 0 || firsts[n - 1] != st.segment_first_lsn) {
			if (n == keep + 1) {
				memmove(firsts, firsts + 1, keep * sizeof(firsts[0]));
				n--;
			}
			firsts[n++] = st.segment_first_lsn;
			if (n == keep + 1 && ringlog_truncate_before(g.log, firsts[1]) < 0)
				fprintf(stderr, "%s: truncate_before: %s\n", g.o.tool,
					ringlog_last_error());
		}
		usleep(2000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(&g.o, argc, argv,
		    "Load generator for ringlog: appends from many threads and reports durable\n"
		    "throughput and latency (append to durable), fio/wrk2/db_bench style.");
	struct bench_opts *o = &g.o;
	if (bench_prepare_dir(o))
		return 1;
	struct ringlog_options lo;
	ringlog_options_init(&lo);
	lo.segment_bytes = o->segment_bytes;
	if (o->pipeline_depth)
		lo.pipeline_depth = o->pipeline_depth;
	lo.ring_bytes = o->ring_bytes;
	lo.profile = (uint32_t)o->profile;
	if (o->io_mode >= 0)
		lo.io_mode = (uint32_t)o->io_mode;
	if (o->prepared >= 0)
		lo.prepared_segments = (uint32_t)o->prepared;
	if (o->recycle >= 0)
		lo.recycle_segments = (uint32_t)o->recycle;
	if (o->spin_us >= 0)
		lo.spin_us = (uint32_t)o->spin_us;
	uint64_t frame = RINGLOG_FRAME_BYTES(o->records_per_batch,
					     (uint64_t)o->records_per_batch * o->record_max);
	if (frame > lo.max_batch_bytes) {
		uint64_t ring = lo.ring_bytes;
		while (ring < 2 * frame && ring < (1u << 30))
			ring <<= 1;
		if (frame > RINGLOG_MAX_BATCH_BYTES_LIMIT || ring < 2 * frame) {
			fprintf(stderr, "%s: a batch of %" PRIu64 " bytes is too large\n", o->tool,
				frame);
			bench_cleanup(o);
			return 2;
		}
		lo.max_batch_bytes = (uint32_t)frame;
		lo.ring_bytes = (uint32_t)ring;
	}
	int err = ringlog_open(o->dir, &lo, &g.log);
	if (err) {
		fprintf(stderr, "%s: cannot open %s: %s\n  %s\n", o->tool, o->dir,
			ringlog_strerror(err), ringlog_last_error());
		bench_cleanup(o);
		return 1;
	}
	/* Measure the steady state: the preparer first zero-fills its files (a service
	 * does that once, at startup); that writing would otherwise share the disk with
	 * the measured appends. */
	uint64_t prep0 = bench_now_ns();
	struct ringlog_stats ps;
	ringlog_stats(g.log, &ps);
	unsigned want = o->prepared >= 0 ? (unsigned)o->prepared : 2;
	while (ps.prepared_ready < want && bench_now_ns() - prep0 < 60000000000ull) {
		usleep(1000);
		ringlog_stats(g.log, &ps);
	}
	if (!o->quiet && ps.prepared_ready)
		printf("ringlog-bench: %" PRIu64 " prepared segment files ready after %.2f s; "
		       "measuring from now\n",
		       ps.prepared_ready, (double)(bench_now_ns() - prep0) / 1e9);
	int rc = 0;
	struct ringlog_nats_shipper *ship = NULL;
	if (o->ship) {
		struct ringlog_nats_options no;
		ringlog_nats_options_init(&no);
		no.servers = o->ship;
		no.stream = o->ship_stream;
		no.replicas = o->ship_replicas;
		/* Retention (--retain-segments) goes on as shipping allows, not 6 min later. */
		no.slot_hold_ms = RINGLOG_NATS_SLOT_HOLD_NONE;
		err = ringlog_nats_shipper_start(g.log, &no, &ship);
		if (err) {
			fprintf(stderr, "%s: --ship %s: %s\n  %s\n", o->tool, o->ship,
				ringlog_strerror(err), ringlog_last_error());
			ringlog_close(g.log);
			bench_cleanup(o);
			return 1;
		}
	}
	struct worker *w = calloc(o->threads, sizeof(*w));
	atomic_store(&g.batches_left, (int64_t)o->batches);
	atomic_store(&g.phase, o->warmup_s > 0 ? BENCH_WARMUP : BENCH_MEASURE);
	struct bench_result r = {0};
	struct ringlog_stats s0, s1;
	/* Without warmup the window opens before the first append. */
	ringlog_stats(g.log, &s0);
	getrusage(RUSAGE_SELF, &r.ru0);
	g.t_start = bench_now_ns();
	uint64_t t0 = g.t_start;
	atomic_store(&g.running, o->threads);
	pthread_t retainer;
	if (o->retain)
		pthread_create(&retainer, NULL, run_retention, NULL);
	for (unsigned i = 0; i < o->threads; i++) {
		w[i].t.id = i;
		w[i].t.rng = 0x9e3779b97f4a7c15ull * (i + 1);
		if (rl_hist_init(&w[i].t.hist)) {
			fprintf(stderr, "%s: out of memory\n", o->tool);
			return 1;
		}
		pthread_create(&w[i].thread, NULL, run_worker, &w[i]);
	}
	struct bench_counters prev;
	counters(&prev);
	uint64_t last_tick = g.t_start;
	if (o->warmup_s > 0)
		tick_until(g.t_start + (uint64_t)(o->warmup_s * 1e9), all_done, &prev, &last_tick);

	if (o->warmup_s > 0) {
		struct ringlog_latency discard;
		if (o->profile) /* the stage histograms cover the measured window only */
			ringlog_latency(g.log, &discard, 1);
		ringlog_stats(g.log, &s0);
		getrusage(RUSAGE_SELF, &r.ru0);
		t0 = bench_now_ns();
		atomic_store(&g.phase, BENCH_MEASURE);
	}
	if (o->duration_s > 0) {
		tick_until(t0 + (uint64_t)(o->duration_s * 1e9), all_done, &prev, &last_tick);
		atomic_store(&g.phase, BENCH_STOP);
	}
	tick_until(0, all_done, &prev, &last_tick);
	for (unsigned i = 0; i < o->threads; i++)
		pthread_join(w[i].thread, NULL);
	if (o->retain)
		pthread_join(retainer, NULL);
	getrusage(RUSAGE_SELF, &r.ru1);
	struct bench_thread **ts = calloc(o->threads, sizeof(*ts));
	for (unsigned i = 0; i < o->threads; i++)
		ts[i] = &w[i].t;
	uint64_t t1 = bench_window_end(ts, o->threads);
	ringlog_stats(g.log, &s1);
	bench_tick(o, (double)(t1 - g.t_start) / 1e9, &prev, &prev, 1, 1);
	static char ship_json[1024];
	if (ship) {
		/* What the appends made durable, in the stream: how long after the window. */
		int werr = ringlog_nats_shipper_wait(ship, 120ll * 1000 * 1000 * 1000);
		uint64_t caught = bench_now_ns();
		struct ringlog_nats_stats ns;
		ringlog_nats_shipper_stats(ship, &ns);
		double secs = (double)(caught - ns.started_ns) / 1e9;
		if (!o->quiet)
			printf("ringlog-bench: shipped to LSN %" PRIu64 " (%s) in %" PRIu64
			       " messages, %.1f MB, %.1f MB/s from the shipper's start until "
			       "caught up %.2f s after the window; ack p50 %.2f ms p99 %.2f ms; %" PRIu64
			       " retries, %" PRIu64 " duplicates\n",
			       ns.shipped_lsn, werr ? ringlog_strerror(werr) : "caught up",
			       ns.messages, (double)ns.bytes / 1e6, (double)ns.bytes / 1e6 / secs,
			       (double)(caught - t1) / 1e9, (double)ns.ack_p50_ns / 1e6,
			       (double)ns.ack_p99_ns / 1e6, ns.retries, ns.duplicates);
		snprintf(ship_json, sizeof(ship_json),
			 ",\"ship\":{\"caught_up\":%s,\"shipped_lsn\":%" PRIu64
			 ",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
			 ",\"mb_per_s\":%.2f,\"catch_up_s\":%.3f,\"ack_p50_ms\":%.3f,"
			 "\"ack_p99_ms\":%.3f,\"retries\":%" PRIu64 ",\"duplicates\":%" PRIu64 "}",
			 werr ? "false" : "true", ns.shipped_lsn, ns.messages, ns.bytes,
			 (double)ns.bytes / 1e6 / secs, (double)(caught - t1) / 1e9,
			 (double)ns.ack_p50_ns / 1e6, (double)ns.ack_p99_ns / 1e6, ns.retries,
			 ns.duplicates);
		err = ringlog_nats_shipper_stop(ship);
		if (err || werr) {
			fprintf(stderr, "%s: shipping: %s\n", o->tool,
				ringlog_strerror(err ? err : werr));
			rc = 1;
		}
	}
	r.elapsed_s = (double)(t1 - t0) / 1e9;
	r.fsyncs = s1.fdatasyncs - s0.fdatasyncs;
	r.log_bytes = s1.bytes - s0.bytes;

	struct ringlog_latency lat;
	static char stages_json[2048], extra[3800];
	int profiled = o->profile && ringlog_latency(g.log, &lat, 0) == 0;
	if (!o->quiet)
		printf("ringlog-bench: %s writes aligned to %" PRIu64 " bytes, %" PRIu64
		       " groups in flight at most; %" PRIu64 " bytes written for %" PRIu64
		       " bytes of frames; %" PRIu64 " rotations (%" PRIu64 " waited for a prepared "
		       "file), %" PRIu64 " segment files zero-filled, %" PRIu64 " recycled\n",
		       s1.direct_io ? "O_DIRECT" : "buffered", s1.io_align, s1.pipeline_depth,
		       s1.bytes_written - s0.bytes_written, s1.bytes - s0.bytes,
		       s1.rotations - s0.rotations, s1.rotation_waits - s0.rotation_waits,
		       s1.segments_prepared - s0.segments_prepared,
		       s1.segments_recycled - s0.segments_recycled);
	if (o->plot && write_plot(w) != 0) {
		fprintf(stderr, "%s: cannot write %s\n", o->tool, o->plot);
		rc = 1;
	}
	for (unsigned i = 0; i < o->threads; i++)
		if (w[i].t.err) {
			fprintf(stderr, "%s: thread %u: %s\n  %s\n", o->tool, i,
				ringlog_strerror(w[i].t.err), w[i].t.errmsg);
			rc = 1;
		}
	err = ringlog_close(g.log);
	if (err) {
		fprintf(stderr, "%s: close: %s\n", o->tool, ringlog_strerror(err));
		rc = 1;
	}
	if (profiled)
		print_stages(&lat, stages_json, sizeof(stages_json), 0);
	snprintf(extra, sizeof(extra),
		 ",\"pipeline_depth\":%" PRIu64 ",\"direct_io\":%s,\"io_align\":%" PRIu64
		 ",\"bytes_written\":%" PRIu64 ",\"rotations\":%" PRIu64
		 ",\"rotation_waits\":%" PRIu64 ",\"segments_prepared\":%" PRIu64
		 ",\"segments_recycled\":%" PRIu64 "%s%s",
		 s1.pipeline_depth, s1.direct_io ? "true" : "false", s1.io_align,
		 s1.bytes_written - s0.bytes_written, s1.rotations - s0.rotations,
		 s1.rotation_waits - s0.rotation_waits, s1.segments_prepared - s0.segments_prepared,
		 s1.segments_recycled - s0.segments_recycled, profiled ? stages_json : "",
		 ship_json);
	r.extra_json = extra;
	if (bench_report(o, ts, &r))
		rc = 1;
	if (profiled && !o->quiet)
		print_stages(&lat, NULL, 0, 1);
	free(ts);
	bench_cleanup(o);
	for (unsigned i = 0; i < o->threads; i++) {
		rl_hist_free(&w[i].t.hist);
		free(w[i].q);
	}
	free(w);
	return rc;
}
