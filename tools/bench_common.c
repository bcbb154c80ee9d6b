/* Shared flags, report and helpers of the benchmark tools (bench_common.h). */
#include "bench_common.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t bench_parse_size(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	double mult = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1024.0;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1024.0 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1024.0 * 1024 * 1024;
		end++;
		break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0')
		return -1;
	return (int64_t)(v * mult);
}

static void usage(FILE *f, const struct bench_opts *o, const char *intro)
{
	fprintf(
	    f,
	    "usage: %s [options]\n%s\n\n"
	    "Workload:\n"
	    "  --dir DIR               log directory (default: a fresh temporary directory);\n"
	    "                          removed afterwards only if this run created it\n"
	    "  --keep                  keep the directory even if this run created it\n"
	    "  --threads N             submitter threads (default 1)\n"
	    "  --records-per-batch K   records in each atomic batch (default 1)\n"
	    "  --record-size B|MIN:MAX bytes per record, fixed or uniform in [MIN,MAX] (default "
	    "100)\n"
	    "  --duration S            measure for S seconds (default 5) ...\n"
	    "  --batches N             ... or until N batches in total are durable\n"
	    "  --warmup S              run S seconds before measuring (default 1)\n"
	    "  --segment-size BYTES    segment soft cap (default 64M)\n"
	    "Load model:\n"
	    "  --inflight N            batches each thread may have awaiting durability;\n"
	    "                          1 = closed loop (default 1)\n"
	    "  --rate R                open loop: R batches/s in total on a fixed schedule;\n"
	    "                          latency counts from the intended submit time\n"
	    "Output:\n"
	    "  --json FILE|-           results as JSON; with --interval, JSON Lines: one object\n"
	    "                          per interval, then the result\n"
	    "  --interval S            a line every S seconds\n"
	    "  --hgrm FILE             latency distribution, HdrHistogram percentile format (us)\n"
	    "  --quiet                 no human summary (with --json -)\n"
	    "Log options (ringlog-bench; default: the library's defaults):\n"
	    "  --pipeline-depth D      group commits in flight\n"
	    "  --ring-size BYTES       submission ring (default 16M)\n"
	    "  --io-mode M             auto (O_DIRECT where it works), direct, buffered\n"
	    "  --prepared N            segment files kept ready ahead (0: grow segments)\n"
	    "  --recycle N             reuse up to N segments removed by retention\n"
	    "  --retain-segments N     keep only the newest N segments (ringlog_truncate_before\n"
	    "                          as the log grows, as a service that checkpoints would)\n"
	    "  --spin-us N             longest a waiter or the consumer spins (0: never)\n"
	    "Profiling (ringlog-bench):\n"
	    "  --profile               time the library's stages (queue, submit, write,\n"
	    "                          fdatasync, wake) and print where the latency goes\n"
	    "  --plot FILE.svg         draw the latency percentile distribution (end to end\n"
	    "                          and each stage); implies --profile\n"
	    "Shipping (ringlog-bench; see ringlog-ship(1)):\n"
	    "  --ship URLS             ship the log into NATS JetStream from this process\n"
	    "                          while appending (ringlog_nats_shipper_start), and\n"
	    "                          report what it shipped\n"
	    "  --ship-stream NAME      the stream (default ringlog-bench)\n"
	    "  --ship-replicas N       its replicas when created (default 3)\n"
	    "Sizes take k/M/G suffixes (powers of 1024).\n",
	    o->tool, intro);
}

static double parse_positive(const char *flag, const char *v)
{
	char *end;
	double d = strtod(v, &end);
	if (*end != '\0' || d < 0) {
		fprintf(stderr, "bad value for %s: %s\n", flag, v);
		exit(2);
	}
	return d;
}

void bench_parse(struct bench_opts *o, int argc, char **argv, const char *usage_intro)
{
	*o = (struct bench_opts){
	    .tool = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0],
	    .threads = 1,
	    .records_per_batch = 1,
	    .record_min = 100,
	    .record_max = 100,
	    .duration_s = 5,
	    .warmup_s = 1,
	    .segment_bytes = 64ull << 20,
	    .inflight = 1,
	    .ring_bytes = 16u << 20,
	    .io_mode = -1,
	    .prepared = -1,
	    .recycle = -1,
	    .spin_us = -1,
	    .ship_stream = "ringlog-bench",
	    .ship_replicas = 3,
	};
	enum {
		O_DIR = 256,
		O_KEEP,
		O_THREADS,
		O_RPB,
		O_RS,
		O_DUR,
		O_BATCHES,
		O_WARM,
		O_SEG,
		O_INFL,
		O_RATE,
		O_JSON,
		O_INT,
		O_HGRM,
		O_QUIET,
		O_DEPTH,
		O_RING,
		O_PROFILE,
		O_PLOT,
		O_IO_MODE,
		O_PREPARED,
		O_RECYCLE,
		O_RETAIN,
		O_SPIN,
		O_SHIP,
		O_SHIP_STREAM,
		O_SHIP_REPLICAS,
		O_HELP
	};
	static const struct option lo[] = {
	    {"dir", 1, 0, O_DIR},
	    {"keep", 0, 0, O_KEEP},
	    {"threads", 1, 0, O_THREADS},
	    {"records-per-batch", 1, 0, O_RPB},
	    {"record-size", 1, 0, O_RS},
	    {"duration", 1, 0, O_DUR},
	    {"batches", 1, 0, O_BATCHES},
	    {"warmup", 1, 0, O_WARM},
	    {"segment-size", 1, 0, O_SEG},
	    {"inflight", 1, 0, O_INFL},
	    {"rate", 1, 0, O_RATE},
	    {"json", 1, 0, O_JSON},
	    {"interval", 1, 0, O_INT},
	    {"hgrm", 1, 0, O_HGRM},
	    {"quiet", 0, 0, O_QUIET},
	    {"pipeline-depth", 1, 0, O_DEPTH},
	    {"ring-size", 1, 0, O_RING},
	    {"profile", 0, 0, O_PROFILE},
	    {"plot", 1, 0, O_PLOT},
	    {"io-mode", 1, 0, O_IO_MODE},
	    {"prepared", 1, 0, O_PREPARED},
	    {"recycle", 1, 0, O_RECYCLE},
	    {"retain-segments", 1, 0, O_RETAIN},
	    {"spin-us", 1, 0, O_SPIN},
	    {"ship", 1, 0, O_SHIP},
	    {"ship-stream", 1, 0, O_SHIP_STREAM},
	    {"ship-replicas", 1, 0, O_SHIP_REPLICAS},
	    {"help", 0, 0, O_HELP},
	    {0, 0, 0, 0},
	};
	int c;
	int64_t v;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_DIR:
			o->dir = strdup(optarg);
			break;
		case O_KEEP:
			o->keep = 1;
			break;
		case O_THREADS:
			o->threads = (unsigned)parse_positive("--threads", optarg);
			break;
		case O_RPB:
			o->records_per_batch =
			    (unsigned)parse_positive("--records-per-batch", optarg);
			break;
		case O_RS: {
			char *colon = strchr(optarg, ':');
			if (colon)
				*colon = '\0';
			int64_t lo_ = bench_parse_size(optarg);
			int64_t hi_ = colon ? bench_parse_size(colon + 1) : lo_;
			if (lo_ < 0 || hi_ < lo_ || hi_ > (64 << 20)) {
				fprintf(stderr, "bad --record-size (B or MIN:MAX, at most 64M)\n");
				exit(2);
			}
			o->record_min = (uint32_t)lo_;
			o->record_max = (uint32_t)hi_;
			break;
		}
		case O_DUR:
			o->duration_s = parse_positive("--duration", optarg);
			o->batches = 0;
			break;
		case O_BATCHES:
			o->batches = (uint64_t)parse_positive("--batches", optarg);
			o->duration_s = 0;
			break;
		case O_WARM:
			o->warmup_s = parse_positive("--warmup", optarg);
			break;
		case O_SEG:
			if ((v = bench_parse_size(optarg)) < 4096) {
				fprintf(stderr, "bad --segment-size (at least 4k)\n");
				exit(2);
			}
			o->segment_bytes = (uint64_t)v;
			break;
		case O_INFL:
			o->inflight = (unsigned)parse_positive("--inflight", optarg);
			break;
		case O_RATE:
			o->rate = parse_positive("--rate", optarg);
			break;
		case O_JSON:
			o->json = optarg;
			break;
		case O_INT:
			o->interval_s = parse_positive("--interval", optarg);
			break;
		case O_HGRM:
			o->hgrm = optarg;
			break;
		case O_QUIET:
			o->quiet = 1;
			break;
		case O_DEPTH:
			o->pipeline_depth = (unsigned)parse_positive("--pipeline-depth", optarg);
			break;
		case O_RING:
			if ((v = bench_parse_size(optarg)) <= 0 || v > (1 << 30)) {
				fprintf(stderr, "bad --ring-size\n");
				exit(2);
			}
			o->ring_bytes = (uint32_t)v;
			break;
		case O_PROFILE:
			o->profile = 1;
			break;
		case O_PLOT:
			o->plot = optarg;
			o->profile = 1;
			break;
		case O_IO_MODE:
			o->io_mode = strcmp(optarg, "auto") == 0	   ? 0
				     : strcmp(optarg, "direct") == 0   ? 1
				     : strcmp(optarg, "buffered") == 0 ? 2
								       : -2;
			if (o->io_mode == -2) {
				fprintf(stderr, "bad --io-mode (auto, direct or buffered)\n");
				exit(2);
			}
			break;
		case O_PREPARED:
			o->prepared = (int)parse_positive("--prepared", optarg);
			break;
		case O_RECYCLE:
			o->recycle = (int)parse_positive("--recycle", optarg);
			break;
		case O_RETAIN:
			o->retain = (unsigned)parse_positive("--retain-segments", optarg);
			break;
		case O_SPIN:
			o->spin_us = (int)parse_positive("--spin-us", optarg);
			break;
		case O_SHIP:
			o->ship = optarg;
			break;
		case O_SHIP_STREAM:
			o->ship_stream = optarg;
			break;
		case O_SHIP_REPLICAS:
			o->ship_replicas = (unsigned)parse_positive("--ship-replicas", optarg);
			break;
		case O_HELP:
		case 'h':
			usage(stdout, o, usage_intro);
			exit(0);
		default:
			usage(stderr, o, usage_intro);
			exit(2);
		}
	}
	if (optind < argc || o->threads == 0 || o->records_per_batch == 0 || o->inflight == 0 ||
	    (o->duration_s <= 0 && o->batches == 0)) {
		usage(stderr, o, usage_intro);
		exit(2);
	}
}

uint32_t bench_record_size(const struct bench_opts *o, struct bench_thread *t)
{
	if (o->record_min == o->record_max)
		return o->record_min;
	t->rng ^= t->rng << 13; /* xorshift64 */
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return o->record_min + (uint32_t)(t->rng % (o->record_max - o->record_min + 1));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

int bench_prepare_dir(struct bench_opts *o)
{
	if (o->json && strcmp(o->json, "-") != 0) {
		o->json_file = fopen(o->json, "w");
		if (!o->json_file) {
			fprintf(stderr, "%s: cannot write %s: %s\n", o->tool, o->json,
				strerror(errno));
			return -errno;
		}
	}
	if (o->dir) {
		if (mkdir(o->dir, 0755) == 0)
			o->dir_created = 1;
		else if (errno != EEXIST) {
			fprintf(stderr, "%s: mkdir %s: %s\n", o->tool, o->dir, strerror(errno));
			return -errno;
		}
		return 0;
	}
	const char *base = getenv("TMPDIR");
	char *path;
	if (asprintf(&path, "%s/ringlog-bench-XXXXXX", base && *base ? base : "/var/tmp") < 0)
		return -ENOMEM;
	if (!mkdtemp(path)) {
		int err = -errno;
		fprintf(stderr, "%s: mkdtemp %s: %s\n", o->tool, path, strerror(errno));
		free(path);
		return err;
	}
	o->dir = path;
	o->dir_created = 1;
	return 0;
}

void bench_cleanup(const struct bench_opts *o)
{
	if (!o->keep && o->dir && o->dir_created)
		nftw(o->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void bench_tick(const struct bench_opts *o, double t, const struct bench_counters *now,
		struct bench_counters *prev, double dt, int final)
{
	double b = (double)(now->batches - prev->batches) / dt;
	double r = (double)(now->records - prev->records) / dt;
	double mb = (double)(now->bytes - prev->bytes) / 1e6 / dt;
	double f = (double)(now->fsyncs - prev->fsyncs) / dt;
	if (o->interval_s > 0 && !final) {
		if (o->json)
			fprintf(o->json_file ? o->json_file : stdout,
				"{\"interval_end_s\":%.3f,\"batches_per_sec\":%.1f,\"records_per_"
				"sec\":%.1f,"
				"\"mb_per_sec\":%.3f,\"fsyncs_per_sec\":%.1f}\n",
				t, b, r, mb, f);
		else
			printf("[%7.2fs] %10.0f batches/s %11.0f records/s %8.2f MB/s %8.0f "
			       "fsyncs/s\n",
			       t, b, r, mb, f);
		fflush(stdout);
	}
	if (isatty(STDERR_FILENO) && !o->quiet) {
		if (final)
			fprintf(stderr, "\r\033[K");
		else
			fprintf(stderr,
				"\r\033[K[%6.1fs] %.0f batches/s, %.0f records/s, %.1f MB/s", t, b,
				r, mb);
	}
	*prev = *now;
}

uint64_t bench_window_end(struct bench_thread *const *threads, unsigned n)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < n; i++)
		if (threads[i]->finished_ns > end)
			end = threads[i]->finished_ns;
	return end;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int bench_report(const struct bench_opts *o, struct bench_thread *const *threads,
		 const struct bench_result *r)
{
	struct rl_hist all;
	if (rl_hist_init(&all))
		return 1;
	uint64_t batches = 0, records = 0, bytes = 0, late = 0;
	for (unsigned i = 0; i < o->threads; i++) {
		rl_hist_merge(&all, &threads[i]->hist);
		batches += threads[i]->batches;
		records += threads[i]->records;
		bytes += threads[i]->bytes;
		late += threads[i]->late;
	}
	double s = r->elapsed_s > 0 ? r->elapsed_s : 1e-9;
	double us = 1000.0;
	double user = tv_s(r->ru1.ru_utime) - tv_s(r->ru0.ru_utime);
	double sys = tv_s(r->ru1.ru_stime) - tv_s(r->ru0.ru_stime);
	long csw = (r->ru1.ru_nvcsw + r->ru1.ru_nivcsw) - (r->ru0.ru_nvcsw + r->ru0.ru_nivcsw);
	double achieved = (double)batches / s;
	int saturated = o->rate > 0 && achieved < 0.95 * o->rate;
	const double ps[] = {50, 90, 99, 99.9, 99.99};
	uint64_t pv[5];
	for (int i = 0; i < 5; i++)
		pv[i] = rl_hist_percentile(&all, ps[i]);

	if (!o->quiet) {
		char size[64];
		if (o->record_min == o->record_max)
			snprintf(size, sizeof(size), "%" PRIu32, o->record_min);
		else
			snprintf(size, sizeof(size), "%" PRIu32 "..%" PRIu32, o->record_min,
				 o->record_max);
		printf("%s: %u threads, %u x %s-byte records per batch, %s\n", o->tool, o->threads,
		       o->records_per_batch, size,
		       o->rate > 0	  ? "open loop"
		       : o->inflight == 1 ? "closed loop"
					  : "batches in flight");
		printf("  throughput  %.0f batches/s, %.0f records/s, %.2f MB/s of records over "
		       "%.2f s\n",
		       achieved, (double)records / s, (double)bytes / 1e6 / s, s);
		printf("  fdatasync   %" PRIu64
		       " (%.0f/s), %.1f KiB and %.1f batches per fdatasync\n",
		       r->fsyncs, (double)r->fsyncs / s,
		       r->fsyncs ? (double)r->log_bytes / 1024.0 / (double)r->fsyncs : 0,
		       r->fsyncs ? (double)batches / (double)r->fsyncs : 0);
		printf(
		    "  latency us  min %.1f  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
		    "p99.99 %.1f  max %.1f\n",
		    rl_hist_min(&all) / us, rl_hist_mean(&all) / us, pv[0] / us, pv[1] / us,
		    pv[2] / us, pv[3] / us, pv[4] / us, rl_hist_max(&all) / us);
		printf("  cpu         user %.2f s, system %.2f s, %.2f us per record, %ld context "
		       "switches\n",
		       user, sys, records ? (user + sys) * 1e6 / (double)records : 0, csw);
		if (o->rate > 0)
			printf("  rate        offered %.0f batches/s, achieved %.0f%s; %" PRIu64
			       " submissions behind schedule\n",
			       o->rate, achieved,
			       saturated ? " (SATURATED: the log cannot keep up)" : "", late);
	}
	int rc = 0;
	if (o->json) {
		FILE *f = o->json_file ? o->json_file : stdout;
		if (!f) {
			fprintf(stderr, "%s: cannot write %s: %s\n", o->tool, o->json,
				strerror(errno));
			rc = 1;
		} else {
			fprintf(
			    f,
			    "{\"tool\":\"%s\",\"workload\":{\"threads\":%u,\"records_per_batch\":%"
			    "u,"
			    "\"record_size_min\":%" PRIu32 ",\"record_size_max\":%" PRIu32 ","
			    "\"inflight\":%u,\"rate\":%.1f,\"duration_s\":%.3f,\"batches_target\":"
			    "%" PRIu64 ",\"warmup_s\":%.3f,\"segment_bytes\":%" PRIu64
			    ",\"pipeline_depth\":%u},"
			    "\"elapsed_s\":%.6f,\"batches\":%" PRIu64 ",\"records\":%" PRIu64
			    ",\"bytes\":%" PRIu64
			    ",\"batches_per_sec\":%.1f,\"records_per_sec\":%.1f,"
			    "\"mb_per_sec\":%.3f,\"fsyncs\":%" PRIu64 ",\"fsyncs_per_sec\":%.1f,"
			    "\"log_bytes\":%" PRIu64 ",\"bytes_per_fsync\":%.1f,"
			    "\"latency_us\":{\"count\":%" PRIu64
			    ",\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,"
			    "\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"p9999\":%.3f,\"max\":%.3f},"
			    "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_us_per_record\":%.3f,"
			    "\"context_switches\":%ld,"
			    "\"offered_rate\":%.1f,\"achieved_rate\":%.1f,\"late_submissions\":"
			    "%" PRIu64 ",\"saturated\":%s%s}\n",
			    o->tool, o->threads, o->records_per_batch, o->record_min, o->record_max,
			    o->inflight, o->rate, o->duration_s, o->batches, o->warmup_s,
			    o->segment_bytes, o->pipeline_depth, s, batches, records, bytes,
			    achieved, (double)records / s, (double)bytes / 1e6 / s, r->fsyncs,
			    (double)r->fsyncs / s, r->log_bytes,
			    r->fsyncs ? (double)r->log_bytes / (double)r->fsyncs : 0,
			    rl_hist_count(&all), rl_hist_min(&all) / us, rl_hist_mean(&all) / us,
			    pv[0] / us, pv[1] / us, pv[2] / us, pv[3] / us, pv[4] / us,
			    rl_hist_max(&all) / us, user, sys,
			    records ? (user + sys) * 1e6 / (double)records : 0, csw, o->rate, achieved, late,
			    saturated ? "true" : "false", r->extra_json ? r->extra_json : "");
			if (f != stdout && fclose(f) != 0)
				rc = 1;
		}
	}
	if (o->hgrm) {
		FILE *f = fopen(o->hgrm, "w");
		if (!f || rl_hist_write_hgrm(&all, f, 1000.0, 5) != 0) {
			fprintf(stderr, "%s: cannot write %s\n", o->tool, o->hgrm);
			rc = 1;
		}
		if (f && fclose(f) != 0)
			rc = 1;
	}
	rl_hist_free(&all);
	return rc;
}
