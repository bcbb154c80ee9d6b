/*
 * A single-threaded event loop (epoll) that completes requests when their LSN
 * becomes durable, using ringlog_event_fd(): the loop never blocks in ringlog_wait.
 *
 *   cc event_loop.c $(pkg-config --cflags --libs ringlog) -o event_loop && ./event_loop DIR
 */
#include <ringlog.h>

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define REQUESTS 1000

struct request {
	int id;
	uint64_t lsn; /* the request is answered once this LSN is durable */
};

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "event-loop-wal";
	struct ringlog *wal;
	int err = ringlog_open(dir, NULL, &wal);
	if (err) {
		fprintf(stderr, "open %s: %s (%s)\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int efd = ringlog_event_fd(wal);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = efd};
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);

	/* Requests arrive (here: all at once) and are logged without waiting. */
	static struct request pending[REQUESTS];
	int head = 0, tail = 0, answered = 0;
	for (int i = 0; i < REQUESTS; i++) {
		char body[48];
		int n = snprintf(body, sizeof(body), "request %d", i);
		struct iovec rec = {body, (size_t)n};
		if ((err = ringlog_append(wal, &rec, 1, &pending[tail].lsn)) != 0)
			break;
		pending[tail++].id = i;
	}
	/* The loop: whenever the eventfd fires, answer every request now durable. */
	while (!err && answered < tail) {
		struct epoll_event out;
		if (epoll_wait(ep, &out, 1, 5000) <= 0) {
			fprintf(stderr, "no durability event within 5 s\n");
			return 1;
		}
		uint64_t count;
		(void)!read(efd, &count, sizeof(count)); /* reset it, then look again */
		if ((err = ringlog_error(wal)) != 0)
			break;
		uint64_t durable = ringlog_durable_lsn(wal);
		while (head < tail && pending[head].lsn <= durable) {
			head++; /* here a real server would send the reply */
			answered++;
		}
	}
	if (err) {
		fprintf(stderr, "log failed: %s (%s)\n", ringlog_strerror(err),
			ringlog_last_error());
		return 1;
	}
	printf("answered %d requests, each after its LSN was durable\n", answered);
	close(ep);
	return ringlog_close(wal) ? 1 : 0;
}
