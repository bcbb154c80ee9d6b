/*
 * A multi-threaded service that logs each request before answering it: every worker
 * appends its request as one batch and waits until it is durable.  Concurrent
 * workers share fdatasyncs (group commit) without coordinating.
 *
 *   cc service.c $(pkg-config --cflags --libs ringlog) -o service && ./service DIR
 */
#include <ringlog.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 8
#define REQUESTS 200

static struct ringlog *wal;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < REQUESTS; i++) {
		char key[32], value[64];
		snprintf(key, sizeof(key), "user:%ld:%d", id, i);
		snprintf(value, sizeof(value), "balance=%d", i * 10);
		/* One request = one atomic batch of two records. */
		struct iovec recs[2] = {{key, strlen(key)}, {value, strlen(value)}};
		uint64_t lsn;
		int err = ringlog_append(wal, recs, 2, &lsn);
		if (!err)
			err = ringlog_wait(wal, lsn + 1); /* durable: now answer the client */
		if (err) {
			fprintf(stderr, "worker %ld: %s (%s)\n", id, ringlog_strerror(err),
				ringlog_last_error());
			return (void *)1;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "service-wal";
	int err = ringlog_open(dir, NULL, &wal);
	if (err) {
		fprintf(stderr, "open %s: %s (%s)\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return 1;
	}
	uint64_t first = ringlog_next_lsn(wal);
	pthread_t t[WORKERS];
	for (long i = 0; i < WORKERS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	int failed = 0;
	for (int i = 0; i < WORKERS; i++) {
		void *rc;
		pthread_join(t[i], &rc);
		failed |= rc != NULL;
	}
	struct ringlog_stats st;
	ringlog_stats(wal, &st);
	printf("logged %d requests as LSNs %llu..%llu with %llu fdatasyncs\n", WORKERS * REQUESTS,
	       (unsigned long long)first, (unsigned long long)ringlog_durable_lsn(wal),
	       (unsigned long long)st.fdatasyncs);
	err = ringlog_close(wal);
	return failed || err ? 1 : 0;
}
