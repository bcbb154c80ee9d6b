/*
 * naive-append: the classic appender the project grew from, as a reproducible
 * baseline.  Each batch: take one lock, write the batch (length-prefixed records)
 * at the end of the current file with pwrite, fdatasync, rotate if the file reached
 * the cap, release the lock.  Closed loop only; same flags and report as
 * ringlog-bench, so tools/compare can set them side by side.
 */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	struct bench_opts o;
	pthread_mutex_t lock;
	int fd;
	uint64_t off, file_no;
	uint64_t fsyncs, log_bytes; /* under lock: for the interval lines */
	_Atomic int phase;
	_Atomic int64_t batches_left;
	_Atomic unsigned running;
} g;

/* Under the lock. */
static int open_next_file(void)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%08" PRIu64 ".log", g.o.dir, ++g.file_no);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int dfd = open(g.o.dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (g.fd >= 0)
		close(g.fd);
	g.fd = fd;
	g.off = 0;
	return 0;
}

static int append_batch(const uint8_t *buf, size_t len)
{
	int err = 0;
	pthread_mutex_lock(&g.lock);
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(g.fd, buf + done, len - done, (off_t)(g.off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			goto out;
		}
		done += (size_t)n;
	}
	g.off += len;
	if (fdatasync(g.fd) < 0) {
		err = -errno;
		goto out;
	}
	g.fsyncs++;
	g.log_bytes += len;
	if (g.off >= g.o.segment_bytes)
		err = open_next_file();
out:
	pthread_mutex_unlock(&g.lock);
	return err;
}

static void *run_worker(void *arg)
{
	struct bench_thread *t = arg;
	const struct bench_opts *o = &g.o;
	size_t cap = (size_t)o->records_per_batch * (4 + (size_t)o->record_max);
	uint8_t *buf = malloc(cap ? cap : 1);
	if (!buf) {
		t->err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cap; i++)
		buf[i] = (uint8_t)(i * 131 + t->id);
	for (;;) {
		int phase = atomic_load(&g.phase);
		if (phase == BENCH_STOP)
			break;
		if (phase == BENCH_MEASURE && o->batches &&
		    atomic_fetch_sub(&g.batches_left, 1) <= 0)
			break;
		size_t len = 0;
		uint64_t bytes = 0;
		for (unsigned r = 0; r < o->records_per_batch; r++) {
			uint32_t n = bench_record_size(o, t);
			memcpy(buf + len, &n, 4); /* the record's length, then its bytes */
			len += 4 + n;
			bytes += n;
		}
		uint64_t start = bench_now_ns();
		t->err = append_batch(buf, len);
		if (t->err) {
			snprintf(t->errmsg, sizeof(t->errmsg), "%s", strerror(-t->err));
			break;
		}
		if (phase == BENCH_MEASURE) {
			rl_hist_record(&t->hist, bench_now_ns() - start);
			t->fsyncs++; /* append_batch made exactly one */
			t->log_bytes += len;
			t->batches++;
			t->records += o->records_per_batch;
			t->bytes += bytes;
		}
		atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
	}
	t->finished_ns = bench_now_ns();
out:
	free(buf);
	atomic_fetch_sub(&g.running, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(&g.o, argc, argv,
		    "Baseline appender: one lock, one pwrite and one fdatasync per batch\n"
		    "(closed loop; --inflight, --rate and the log options do not apply).");
	if (g.o.ship) {
		fprintf(stderr, "%s: --ship is a ringlog-bench flag\n", g.o.tool);
		return 2;
	}
	struct bench_opts *o = &g.o;
	if (o->inflight != 1 || o->rate > 0) {
		fprintf(stderr, "%s: only the closed loop is supported (no --inflight, --rate)\n",
			o->tool);
		return 2;
	}
	if (bench_prepare_dir(o))
		return 1;
	pthread_mutex_init(&g.lock, NULL);
	g.fd = -1;
	int err = open_next_file();
	if (err) {
		fprintf(stderr, "%s: cannot create a file in %s: %s\n", o->tool, o->dir,
			strerror(-err));
		return 1;
	}
	struct bench_thread *t = calloc(o->threads, sizeof(*t));
	pthread_t *th = calloc(o->threads, sizeof(*th));
	atomic_store(&g.batches_left, (int64_t)o->batches);
	atomic_store(&g.phase, o->warmup_s > 0 ? BENCH_WARMUP : BENCH_MEASURE);
	atomic_store(&g.running, o->threads);
	struct bench_result r = {0};
	uint64_t t_start = bench_now_ns(), t0 = t_start;
	if (o->warmup_s <= 0)
		getrusage(RUSAGE_SELF, &r.ru0);
	for (unsigned i = 0; i < o->threads; i++) {
		t[i].id = i;
		t[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		if (rl_hist_init(&t[i].hist))
			return 1;
		pthread_create(&th[i], NULL, run_worker, &t[i]);
	}
	if (o->warmup_s > 0) {
		usleep((useconds_t)(o->warmup_s * 1e6));
		getrusage(RUSAGE_SELF, &r.ru0);
		t0 = bench_now_ns();
		atomic_store(&g.phase, BENCH_MEASURE);
	}
	pthread_mutex_lock(&g.lock);
	uint64_t f0 = g.fsyncs, b0 = g.log_bytes;
	pthread_mutex_unlock(&g.lock);
	struct bench_counters prev = {0}, now;
	uint64_t last = t0;
	while (atomic_load(&g.running) > 0) {
		uint64_t step = o->interval_s > 0 ? (uint64_t)(o->interval_s * 1e9) : 250000000ull;
		usleep(2000);
		uint64_t n = bench_now_ns();
		if (o->duration_s > 0 && n - t0 >= (uint64_t)(o->duration_s * 1e9))
			atomic_store(&g.phase, BENCH_STOP);
		if (n - last >= step) {
			pthread_mutex_lock(&g.lock);
			uint64_t b = g.fsyncs - f0; /* one fdatasync per batch */
			now = (struct bench_counters){b, b * o->records_per_batch, g.log_bytes - b0,
						      b};
			pthread_mutex_unlock(&g.lock);
			bench_tick(o, (double)(n - t_start) / 1e9, &now, &prev,
				   (double)(n - last) / 1e9, 0);
			last = n;
		}
	}
	for (unsigned i = 0; i < o->threads; i++)
		pthread_join(th[i], NULL);
	getrusage(RUSAGE_SELF, &r.ru1);
	struct bench_thread **ts = calloc(o->threads, sizeof(*ts));
	for (unsigned i = 0; i < o->threads; i++)
		ts[i] = &t[i];
	uint64_t t1 = bench_window_end(ts, o->threads);
	bench_tick(o, 0, &prev, &prev, 1, 1);
	r.elapsed_s = (double)(t1 - t0) / 1e9;
	for (unsigned i = 0; i < o->threads; i++) {
		r.fsyncs += t[i].fsyncs;
		r.log_bytes += t[i].log_bytes;
	}
	int rc = 0;
	for (unsigned i = 0; i < o->threads; i++)
		if (t[i].err) {
			fprintf(stderr, "%s: thread %u: %s\n", o->tool, i, t[i].errmsg);
			rc = 1;
		}
	close(g.fd);
	if (bench_report(o, ts, &r))
		rc = 1;
	bench_cleanup(o);
	for (unsigned i = 0; i < o->threads; i++)
		rl_hist_free(&t[i].hist);
	free(ts);
	free(t);
	free(th);
	return rc;
}
