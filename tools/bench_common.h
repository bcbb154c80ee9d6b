/*
 * What ringlog-bench and naive-append share: the workload flags, per-thread
 * latency histograms, and the report (human summary, JSON, .hgrm).
 */
#ifndef RL_BENCH_COMMON_H
#define RL_BENCH_COMMON_H

#include "histogram.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

struct bench_opts {
	const char *tool;
	char *dir;	 /* NULL: a fresh temporary directory */
	int keep;	 /* keep the directory afterwards */
	int dir_created; /* this run created dir (only then is it removed) */
	FILE *json_file; /* --json FILE, open for the interval lines and the result */
	unsigned threads;
	unsigned records_per_batch;
	uint32_t record_min, record_max;
	double duration_s; /* 0 when --batches is used */
	uint64_t batches;  /* total across threads, 0 when --duration is used */
	double warmup_s;
	uint64_t segment_bytes;
	unsigned inflight; /* batches a thread may have outstanding */
	double rate;	   /* open loop: batches/s in total, 0 = closed loop */
	double interval_s; /* per-interval lines, 0 = none */
	const char *json;  /* NULL, "-" or a path */
	const char *hgrm;
	unsigned pipeline_depth; /* 0: the library's default */
	uint32_t ring_bytes;
	int io_mode;		 /* enum ringlog_io_mode, -1: the library's default */
	int prepared;		 /* options.prepared_segments, -1: default */
	int recycle;		 /* options.recycle_segments, -1: default */
	int spin_us;		 /* options.spin_us, -1: default */
	unsigned retain;	 /* keep this many segments (ringlog_truncate_before), 0: all */
	int quiet;
	int profile;	  /* --profile: the library's stage breakdown */
	const char *plot; /* --plot FILE.svg */
	const char *ship; /* --ship URLS: an in-process shipper into NATS (ringlog-bench) */
	const char *ship_stream;
	unsigned ship_replicas;
};

/* Parse the shared flags; `extra` lists tool-specific flags for --help.  Exits on
 * --help (0) or a bad flag (2). */
void bench_parse(struct bench_opts *o, int argc, char **argv, const char *usage_intro);

/* Parse "64k", "1M", "2G" (powers of 1024) or a plain number; -1 on error. */
int64_t bench_parse_size(const char *s);

uint64_t bench_now_ns(void);

/* Per-thread state and results. */
struct bench_thread {
	unsigned id;
	struct rl_hist hist; /* latency of batches appended in the measured window, ns */
	uint64_t batches, records, bytes; /* completed in the window */
	uint64_t late;			  /* open loop: submissions that started behind schedule */
	uint64_t fsyncs, log_bytes;	  /* naive-append: its own fdatasyncs and bytes, measured */
	uint64_t rng;
	int err;
	char errmsg[256];	   /* ringlog_last_error() of the failing call, copied */
	_Atomic uint64_t progress; /* completed batches, for the live line */
	uint64_t finished_ns;	   /* when its last batch was durable: the window's end */
};

/* Phases: warmup (nothing recorded), measure, stop. */
enum { BENCH_WARMUP, BENCH_MEASURE, BENCH_STOP };

/* The random record sizes and a payload buffer big enough for a batch. */
uint32_t bench_record_size(const struct bench_opts *o, struct bench_thread *t);

/* The end of the measured window: the latest finished_ns. */
uint64_t bench_window_end(struct bench_thread *const *threads, unsigned n);

/* Totals from the engine, for the report. */
struct bench_result {
	double elapsed_s;   /* measured window */
	uint64_t fsyncs;    /* fdatasyncs issued in the window */
	uint64_t log_bytes; /* bytes written to the log files in the window */
	struct rusage ru0, ru1;
	const char *extra_json; /* more ,"key":value members for the result, or NULL */
};

/* Print the summary (stdout), the JSON (if asked) and the .hgrm (if asked).
 * Returns 0 or 1 if an output file could not be written. */
int bench_report(const struct bench_opts *o, struct bench_thread *const *threads,
		 const struct bench_result *r);

/* The run's directory: --dir (created if missing) or a fresh temporary one.
 * bench_cleanup removes it only if this run created it, and not with --keep. */
int bench_prepare_dir(struct bench_opts *o);
void bench_cleanup(const struct bench_opts *o);

/* Live progress on stderr when it is a terminal, and --interval lines. `sample` is
 * called each tick to read (batches, records, bytes, fsyncs) so far. */
struct bench_counters {
	uint64_t batches, records, bytes, fsyncs;
};
void bench_tick(const struct bench_opts *o, double t, const struct bench_counters *now,
		struct bench_counters *prev, double dt, int final);

#endif
