/*
 * ringlog-demo: append from several threads into a log directory, wait for
 * durability, then read everything back and check it.  A first look at the library.
 *
 *   ringlog-demo [--dir DIR] [--threads N] [--seconds S] [--record-size B]
 *                [--records-per-batch K] [--inflight W]
 */
#include "ringlog.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct config {
	const char *dir;
	unsigned threads, record_size, per_batch, inflight, depth;
	double seconds;
};

struct worker {
	struct ringlog *log;
	const struct config *cfg;
	unsigned id;
	uint64_t batches, records, bytes;
	int err;
	pthread_t thread;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Record contents: "t<thread> b<batch> r<record>" padded with a pattern, so the
 * read-back can check every byte came from somewhere sensible. */
static void fill(char *buf, unsigned size, unsigned t, uint64_t b, unsigned r)
{
	int n = snprintf(buf, size, "t%u b%" PRIu64 " r%u ", t, b, r);
	for (unsigned i = n > 0 ? (unsigned)n : 0; i < size; i++)
		buf[i] = (char)('a' + (i % 26));
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	const struct config *c = w->cfg;
	char *data = malloc((size_t)c->record_size * c->per_batch + 1);
	struct iovec *iov = calloc(c->per_batch, sizeof(*iov));
	uint64_t *pending = calloc(c->inflight, sizeof(*pending));
	if (!data || !iov || !pending) {
		w->err = -ENOMEM;
		goto out;
	}
	double end = now() + c->seconds;
	unsigned head = 0, count = 0;
	while (now() < end) {
		for (unsigned r = 0; r < c->per_batch; r++) {
			iov[r].iov_base = data + (size_t)r * c->record_size;
			iov[r].iov_len = c->record_size;
			fill(iov[r].iov_base, c->record_size, w->id, w->batches, r);
		}
		if (count == c->inflight) { /* window full: wait for the oldest batch */
			w->err = ringlog_wait(w->log, pending[head]);
			if (w->err)
				goto out;
			head = (head + 1) % c->inflight;
			count--;
		}
		uint64_t first;
		w->err = ringlog_append(w->log, iov, c->per_batch, &first);
		if (w->err)
			goto out;
		pending[(head + count++) % c->inflight] = first + c->per_batch - 1;
		w->batches++;
		w->records += c->per_batch;
		w->bytes += (uint64_t)c->per_batch * c->record_size;
	}
	while (count > 0 && !w->err) {
		w->err = ringlog_wait(w->log, pending[head]);
		head = (head + 1) % c->inflight;
		count--;
	}
out:
	free(data);
	free(iov);
	free(pending);
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ringlog-demo [options]\n"
	    "Append from several threads into a ringlog directory, then read it back.\n\n"
	    "  --dir DIR               log directory (default ./ringlog-data)\n"
	    "  --threads N             appending threads (default 4)\n"
	    "  --seconds S             how long to append (default 3)\n"
	    "  --record-size B         bytes per record (default 100)\n"
	    "  --records-per-batch K   records per atomic batch (default 8)\n"
	    "  --inflight W            batches a thread may have awaiting durability (default 32)\n"
	    "  --pipeline-depth D      group commits in flight at once (default 1)\n"
	    "  --help\n");
}

int main(int argc, char **argv)
{
	struct config c = {"./ringlog-data", 4, 100, 8, 32, 1, 3.0};
	static const struct option opts[] = {
	    {"dir", required_argument, 0, 'd'},
	    {"threads", required_argument, 0, 't'},
	    {"seconds", required_argument, 0, 's'},
	    {"record-size", required_argument, 0, 'r'},
	    {"records-per-batch", required_argument, 0, 'k'},
	    {"inflight", required_argument, 0, 'w'},
	    {"pipeline-depth", required_argument, 0, 'p'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			c.dir = optarg;
			break;
		case 't':
			c.threads = (unsigned)atoi(optarg);
			break;
		case 's':
			c.seconds = atof(optarg);
			break;
		case 'r':
			c.record_size = (unsigned)atoi(optarg);
			break;
		case 'k':
			c.per_batch = (unsigned)atoi(optarg);
			break;
		case 'w':
			c.inflight = (unsigned)atoi(optarg);
			break;
		case 'p':
			c.depth = (unsigned)atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (c.threads == 0 || c.per_batch == 0 || c.inflight == 0 || c.seconds <= 0) {
		usage(stderr);
		return 2;
	}

	struct ringlog *log;
	struct ringlog_options lo;
	ringlog_options_init(&lo);
	lo.pipeline_depth = c.depth;
	int err = ringlog_open(c.dir, &lo, &log);
	if (err) {
		fprintf(stderr, "ringlog-demo: cannot open %s: %s\n  %s\n", c.dir,
			ringlog_strerror(err), ringlog_last_error());
		return 1;
	}
	uint64_t start_lsn = ringlog_next_lsn(log);
	printf("ringlog-demo: %s opened, next LSN %" PRIu64 "; %u threads appending %u x %u-byte "
	       "records per batch for %.1f s\n",
	       c.dir, start_lsn, c.threads, c.per_batch, c.record_size, c.seconds);

	struct worker *w = calloc(c.threads, sizeof(*w));
	double t0 = now();
	for (unsigned i = 0; i < c.threads; i++) {
		w[i] = (struct worker){.log = log, .cfg = &c, .id = i};
		pthread_create(&w[i].thread, NULL, run_worker, &w[i]);
	}
	uint64_t batches = 0, records = 0, bytes = 0;
	for (unsigned i = 0; i < c.threads; i++) {
		pthread_join(w[i].thread, NULL);
		batches += w[i].batches;
		records += w[i].records;
		bytes += w[i].bytes;
		if (w[i].err && !err)
			err = w[i].err;
	}
	double secs = now() - t0;
	uint64_t durable = ringlog_durable_lsn(log);
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	int cerr = ringlog_close(log);
	if (err || cerr) {
		fprintf(stderr, "ringlog-demo: append failed: %s\n  %s\n",
			ringlog_strerror(err ? err : cerr), ringlog_last_error());
		return 1;
	}
	printf("wrote    %" PRIu64 " batches, %" PRIu64 " records, %.1f MB in %.2f s\n", batches,
	       records, bytes / 1e6, secs);
	printf("durable  %.0f records/s, %.0f batches/s, %.1f MB/s; LSNs %" PRIu64 "..%" PRIu64
	       "\n",
	       records / secs, batches / secs, bytes / 1e6 / secs, start_lsn, durable);

	printf("groups   %" PRIu64 " write+fdatasync groups (%.0f/s), %.1f batches and %.1f KiB "
	       "per fdatasync; %" PRIu64 " rotations, %" PRIu64 " ring-full waits\n",
	       st.groups, st.groups / secs, st.groups ? (double)st.batches / st.groups : 0,
	       st.groups ? st.bytes / 1024.0 / st.groups : 0, st.rotations, st.ring_full_waits);

	/* Read back what this run wrote. */
	struct ringlog_reader *r;
	err = ringlog_reader_open(c.dir, start_lsn, &r);
	if (err) {
		fprintf(stderr, "ringlog-demo: reader: %s\n  %s\n", ringlog_strerror(err),
			ringlog_last_error());
		return 1;
	}
	struct ringlog_record rec;
	uint64_t seen = 0, expect = start_lsn;
	while ((err = ringlog_reader_next(r, &rec)) == 1) {
		if (rec.lsn != expect++ || rec.len != c.record_size ||
		    (rec.len >= 2 && ((const char *)rec.data)[0] != 't')) {
			fprintf(stderr, "ringlog-demo: unexpected record at LSN %" PRIu64 "\n",
				rec.lsn);
			return 1;
		}
		seen++;
	}
	ringlog_reader_close(r);
	if (err < 0 || seen != records) {
		fprintf(stderr, "ringlog-demo: read back %" PRIu64 " of %" PRIu64 " records (%s)\n",
			seen, records, err < 0 ? ringlog_strerror(err) : "count mismatch");
		return 1;
	}
	printf("verified %" PRIu64 " records read back in LSN order from %s\n", seen, c.dir);
	free(w);
	return 0;
}
