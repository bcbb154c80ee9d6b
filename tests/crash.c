/* The crash-torture harness.  Contract in crash.h. */
#include "crash.h"

#include "fsimage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* ---------------------------------------------------------------------------------
 * Tags and payloads.  A batch's tag names the incarnation (cycle) that wrote it, the
 * thread and the thread's batch number; its record count and every record's length
 * and bytes are functions of the tag, so any batch found in the log can be checked
 * completely. */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t make_tag(unsigned inc, unsigned thread, uint32_t batch)
{
	return (uint64_t)(inc & 0xffff) << 40 | (uint64_t)(thread & 0xff) << 32 | batch;
}

static unsigned tag_inc(uint64_t tag)
{
	return (unsigned)(tag >> 40) & 0xffff;
}

static unsigned tag_thread(uint64_t tag)
{
	return (unsigned)(tag >> 32) & 0xff;
}

static uint32_t tag_batch(uint64_t tag)
{
	return (uint32_t)tag;
}

static unsigned tag_nrecs(uint64_t tag)
{
	return 1 + (unsigned)(mix64(tag) % MAX_RECS);
}

static unsigned rec_len(uint64_t tag, unsigned i)
{
	return MIN_REC_LEN +
	       (unsigned)(mix64(tag ^ ((uint64_t)i + 1) << 56) % (MAX_REC_LEN - MIN_REC_LEN + 1));
}

static void tag_str(char *buf, size_t size, uint64_t tag)
{
	snprintf(buf, size, "inc %u thread %u batch %" PRIu32, tag_inc(tag), tag_thread(tag),
		 tag_batch(tag));
}

/* --------------------------------------------------------------------------------
 * Seeded PRNG (splitmix64) for every random choice of the parent. */

uint64_t g_seed;
uint64_t g_rng;

static uint64_t rnd(void)
{
	g_rng += 0x9e3779b97f4a7c15ull;
	uint64_t z = g_rng;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --------------------------------------------------------------------------------
 * Lists of batches: (first LSN, record count, tag). */

struct batch {
	uint64_t lsn;
	uint64_t tag;
	uint32_t nrecs;
};

struct batches {
	struct batch *v;
	size_t n, cap;
};

static void batches_add(struct batches *b, uint64_t lsn, uint32_t nrecs, uint64_t tag)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 1024;
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		if (!b->v)
			abort();
	}
	b->v[b->n++] = (struct batch){lsn, tag, nrecs};
}

static void batches_free(struct batches *b)
{
	free(b->v);
	*b = (struct batches){0};
}

static int cmp_batch(const void *a, const void *b)
{
	const struct batch *x = a, *y = b;
	if (x->lsn != y->lsn)
		return x->lsn < y->lsn ? -1 : 1;
	return x->tag < y->tag ? -1 : x->tag > y->tag;
}

static void batches_sort(struct batches *b)
{
	if (b->n > 1)
		qsort(b->v, b->n, sizeof(*b->v), cmp_batch);
}

/* --------------------------------------------------------------------------------
 * Checking a stream of records as a reader returns them.  Used for the full scan
 * after recovery and by the follower thread, so it reports instead of asserting. */

struct scan {
	uint64_t next_lsn;			/* LSN the next record must carry */
	uint64_t b_first, b_tag;		/* the batch being read */
	uint32_t b_n, b_done;			/* its records, and how many were read */
	unsigned key;				/* 2 * incarnation (+1 for its marker) */
	uint32_t next_batch[CHILD_THREADS + 1]; /* per thread of that incarnation */
	uint64_t records, batches;
	uint8_t expect[MAX_REC_LEN];
	char why[320];
};

static void scan_init(struct scan *s, uint64_t from_lsn)
{
	memset(s, 0, sizeof(*s));
	s->next_lsn = from_lsn;
}

/* 1: the record completes a batch (s->b_* describe it); 0: more of the batch follow;
 * -1: a violation (s->why says which). */
static int scan_record(struct scan *s, const struct ringlog_record *rec)
{
	char t[64];
	if (rec->lsn != s->next_lsn) {
		snprintf(s->why, sizeof(s->why),
			 "record LSN %" PRIu64 " where %" PRIu64 " was expected (LSNs not dense)",
			 rec->lsn, s->next_lsn);
		return -1;
	}
	if (rec->len < MIN_REC_LEN || rec->len > MAX_REC_LEN) {
		snprintf(s->why, sizeof(s->why), "record %" PRIu64 " has length %u, never written",
			 rec->lsn, rec->len);
		return -1;
	}
	const uint8_t *p = rec->data;
	uint64_t tag = 0;
	uint32_t idx = 0;
	for (int k = 0; k < 8; k++)
		tag |= (uint64_t)p[k] << (8 * k);
	for (int k = 0; k < 4; k++)
		idx |= (uint32_t)p[8 + k] << (8 * k);
	if (s->b_done == s->b_n) {
		/* A new batch must start here. */
		unsigned th = tag_thread(tag);
		if (rec->batch_first_lsn != rec->lsn || idx != 0) {
			tag_str(t, sizeof(t), tag);
			snprintf(s->why, sizeof(s->why),
				 "record %" PRIu64 " (%s, index %" PRIu32
				 ") starts no batch (batch_first_lsn %" PRIu64 "): a torn batch",
				 rec->lsn, t, idx, rec->batch_first_lsn);
			return -1;
		}
		if (th >= CHILD_THREADS && th != MARKER_THREAD) {
			tag_str(t, sizeof(t), tag);
			snprintf(s->why, sizeof(s->why),
				 "record %" PRIu64 " carries an impossible tag "
				 "(%s)",
				 rec->lsn, t);
			return -1;
		}
		if (rec->batch_nrecs != tag_nrecs(tag)) {
			tag_str(t, sizeof(t), tag);
			snprintf(s->why, sizeof(s->why),
				 "batch at %" PRIu64 " (%s) says %u records, "
				 "%u were appended",
				 rec->lsn, t, rec->batch_nrecs, tag_nrecs(tag));
			return -1;
		}
		/* The log is a prefix of each incarnation's LSN order: its batches come after
		 * the previous cycle's, its marker after them, and each thread's batches in
		 * order with none missing. */
		unsigned key = 2 * tag_inc(tag) + (th == MARKER_THREAD);
		unsigned slot = th == MARKER_THREAD ? CHILD_THREADS : th;
		if (key < s->key) {
			tag_str(t, sizeof(t), tag);
			snprintf(s->why, sizeof(s->why),
				 "batch at %" PRIu64 " (%s) comes after a "
				 "batch of a later incarnation or its marker",
				 rec->lsn, t);
			return -1;
		}
		if (key > s->key) {
			s->key = key;
			memset(s->next_batch, 0, sizeof(s->next_batch));
		}
		if (tag_batch(tag) != s->next_batch[slot]) {
			tag_str(t, sizeof(t), tag);
			snprintf(s->why, sizeof(s->why),
				 "batch at %" PRIu64 " (%s) where that thread's "
				 "batch %" PRIu32
				 " was expected (lost, duplicated or reordered batch)",
				 rec->lsn, t, s->next_batch[slot]);
			return -1;
		}
		s->next_batch[slot]++;
		s->b_first = rec->lsn;
		s->b_tag = tag;
		s->b_n = rec->batch_nrecs;
		s->b_done = 0;
	} else if (rec->batch_first_lsn != s->b_first || rec->batch_nrecs != s->b_n ||
		   tag != s->b_tag || idx != s->b_done) {
		char bt[64];
		tag_str(bt, sizeof(bt), s->b_tag);
		tag_str(t, sizeof(t), tag);
		snprintf(s->why, sizeof(s->why),
			 "record %" PRIu64 " (%s, index %" PRIu32 ", batch "
			 "%" PRIu64 "/%u) inside batch %" PRIu64
			 " (%s, %u records, %u read): a torn "
			 "or mixed batch",
			 rec->lsn, t, idx, rec->batch_first_lsn, rec->batch_nrecs, s->b_first, bt,
			 s->b_n, s->b_done);
		return -1;
	}
	unsigned len = rec_len(tag, idx);
	if (rec->len != len) {
		tag_str(t, sizeof(t), tag);
		snprintf(s->why, sizeof(s->why),
			 "record %" PRIu64 " (%s, index %" PRIu32 ") has "
			 "length %u, %u was appended",
			 rec->lsn, t, idx, rec->len, len);
		return -1;
	}
	tu_fill_record(s->expect, len, tag, idx);
	if (memcmp(s->expect, rec->data, len) != 0) {
		tag_str(t, sizeof(t), tag);
		snprintf(s->why, sizeof(s->why),
			 "record %" PRIu64 " (%s, index %" PRIu32 ") has "
			 "corrupt contents",
			 rec->lsn, t, idx);
		return -1;
	}
	s->next_lsn++;
	s->records++;
	if (++s->b_done < s->b_n)
		return 0;
	s->batches++;
	return 1;
}

/* The end of what was read: no batch may be left half read. */
static int scan_end(struct scan *s)
{
	if (s->b_done == s->b_n)
		return 0;
	char t[64];
	tag_str(t, sizeof(t), s->b_tag);
	snprintf(s->why, sizeof(s->why),
		 "the log ends inside batch %" PRIu64 " (%s) after %u of "
		 "its %u records",
		 s->b_first, t, s->b_done, s->b_n);
	return -1;
}

/* --------------------------------------------------------------------------------
 * The child: open the log, append from CHILD_THREADS threads forever, report every
 * acknowledged batch.  It exits only when killed (or on an error, reported first). */

enum { MSG_OPENED = 1, MSG_ACK = 2, MSG_ERROR = 3 };

struct msg {
	uint32_t kind;
	uint32_t nrecs; /* MSG_ACK: records; MSG_ERROR: the thread (MARKER_THREAD: main) */
	uint64_t lsn;	/* MSG_ACK: first LSN; MSG_OPENED: next LSN; MSG_ERROR: -error */
	uint64_t tag;	/* MSG_ACK: the tag; MSG_ERROR: which call failed (see below) */
};
_Static_assert(sizeof(struct msg) <= PIPE_BUF, "a message must be written atomically");

enum { CALL_OPEN = 1, CALL_APPEND, CALL_WAIT };

static void child_send(int fd, uint32_t kind, uint32_t nrecs, uint64_t lsn, uint64_t tag)
{
	struct msg m = {kind, nrecs, lsn, tag};
	ssize_t n;
	do
		n = write(fd, &m, sizeof(m)); /* at most PIPE_BUF: all or nothing */
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(m))
		_exit(4);
}

static _Noreturn void child_fail(int fd, unsigned thread, int call, int err)
{
	fprintf(stderr, "crash child: thread %u: %s: %s: %s\n", thread,
		call == CALL_OPEN     ? "ringlog_open"
		: call == CALL_APPEND ? "ringlog_append"
				      : "ringlog_wait",
		ringlog_strerror(err), ringlog_last_error());
	child_send(fd, MSG_ERROR, thread, (uint64_t)(int64_t)err, (uint64_t)call);
	_exit(2);
}

struct appender {
	struct ringlog *log;
	int fd;
	unsigned inc, id;
	unsigned window; /* batches kept in flight before waiting (1: closed loop) */
	int wait_newest; /* full window: wait for the newest (acknowledges all of them) */
	int try_first;	 /* ringlog_try_append, blocking append on -EAGAIN */
	int timed;	 /* ringlog_wait_timeout instead of ringlog_wait */
	uint8_t data[MAX_RECS][MAX_REC_LEN];
};

static void *child_appender(void *arg)
{
	struct appender *a = arg;
	struct batch win[WINDOW_MAX];
	unsigned head = 0, count = 0;
	struct iovec iov[MAX_RECS];
	for (uint32_t b = 0;; b++) {
		uint64_t tag = make_tag(a->inc, a->id, b);
		unsigned n = tag_nrecs(tag);
		for (unsigned i = 0; i < n; i++) {
			iov[i].iov_base = a->data[i];
			iov[i].iov_len = rec_len(tag, i);
			tu_fill_record(a->data[i], (unsigned)iov[i].iov_len, tag, i);
		}
		uint64_t first = 0;
		int err = -EAGAIN;
		if (a->try_first)
			err = ringlog_try_append(a->log, iov, n, &first);
		if (err == -EAGAIN)
			err = ringlog_append(a->log, iov, n, &first);
		if (err)
			child_fail(a->fd, a->id, CALL_APPEND, err);
		win[(head + count++) % WINDOW_MAX] = (struct batch){first, tag, n};
		if (count < a->window)
			continue;
		/* Wait for the oldest batch, or for the newest (which covers all of them). */
		const struct batch *w =
		    &win[(a->wait_newest ? head + count - 1 : head) % WINDOW_MAX];
		uint64_t last = w->lsn + w->nrecs - 1;
		err = a->timed ? ringlog_wait_timeout(a->log, last, 60ll * 1000000000)
			       : ringlog_wait(a->log, last);
		if (err)
			child_fail(a->fd, a->id, CALL_WAIT, err);
		unsigned acked = a->wait_newest ? count : 1;
		for (unsigned k = 0; k < acked; k++) {
			const struct batch *d = &win[head];
			child_send(a->fd, MSG_ACK, d->nrecs, d->lsn, d->tag);
			head = (head + 1) % WINDOW_MAX;
			count--;
		}
	}
	return NULL;
}

static _Noreturn void child_main(const char *dir, const struct ringlog_options *o, int fd,
				 unsigned inc, pid_t parent)
{
	signal(SIGPIPE, SIG_IGN);
	/* Never outlive the parent, whatever happens to it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(5);
	struct ringlog *log = NULL;
	int err = ringlog_open(dir, o, &log);
	if (err)
		child_fail(fd, MARKER_THREAD, CALL_OPEN, err);
	child_send(fd, MSG_OPENED, 0, ringlog_next_lsn(log), 0);
	static struct appender a[CHILD_THREADS];
	pthread_t t[CHILD_THREADS];
	for (unsigned i = 0; i < CHILD_THREADS; i++) {
		a[i] = (struct appender){.log = log, .fd = fd, .inc = inc, .id = i, .window = 1};
		switch (i % 4) {
		case 0: /* closed loop */
			break;
		case 1: /* closed loop, try_append first, timed waits */
			a[i].try_first = 1;
			a[i].timed = 1;
			break;
		case 2: /* several in flight, wait on the oldest */
			a[i].window = 6;
			break;
		case 3: /* many in flight, one wait for the newest acknowledges them all */
			a[i].window = WINDOW_MAX;
			a[i].wait_newest = 1;
			break;
		}
		if (pthread_create(&t[i], NULL, child_appender, &a[i]) != 0)
			_exit(6);
	}
	for (unsigned i = 0; i < CHILD_THREADS; i++)
		pthread_join(t[i], NULL);
	_exit(7); /* not reached: appenders only stop by exiting */
}

/* --------------------------------------------------------------------------------
 * Harness state.  Globals so that the teardown can kill and reap the child, stop the
 * follower and remove the directory whatever assertion failed. */

struct follower {
	const char *dir;
	_Atomic int stop; /* set once the writer is dead: read to the end, then stop */
	struct scan scan;
	struct batches seen; /* batches returned whole */
	int bad;	     /* scan.why, or the reader's error in msg */
	char msg[400];
};


struct inbox {
	int fd;
	unsigned inc;
	uint8_t buf[64 * sizeof(struct msg)];
	size_t have;
	int opened, eof, child_error;
	uint64_t open_lsn, opened_at;
	struct msg error;
	uint64_t acks, max_acked_lsn;
};

static pid_t g_child = -1;
char *g_dir;
char *g_mnt; /* the loop-mounted filesystem g_dir is on, or NULL */
struct ringlog *g_log;
static struct follower g_follow;
static pthread_t g_follow_thread;
static int g_follow_running;
static struct batches g_acked; /* every acknowledged batch so far, all incarnations */
static struct inbox *g_inbox;  /* this cycle's pipe from the child */

static int reap(pid_t pid, int *status, uint64_t timeout_ns)
{
	uint64_t end = now_ns() + timeout_ns;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ns() > end)
			return -ETIMEDOUT;
		sleep_ns(1000000);
	}
}

static void follower_stop(void)
{
	if (!g_follow_running)
		return;
	atomic_store(&g_follow.stop, 1);
	pthread_join(g_follow_thread, NULL);
	g_follow_running = 0;
}

int crash_teardown(void **state)
{
	(void)state;
	if (g_child > 0) {
		int status;
		kill(g_child, SIGKILL);
		if (reap(g_child, &status, 60ull * 1000000000) != 0)
			fprintf(stderr, "crash: child %d did not die within 60 s of SIGKILL\n",
				(int)g_child);
		g_child = -1;
	}
	follower_stop();
	batches_free(&g_follow.seen);
	if (g_log) {
		ringlog_close(g_log);
		g_log = NULL;
	}
	batches_free(&g_acked);
	if (g_inbox) {
		close(g_inbox->fd);
		free(g_inbox);
		g_inbox = NULL;
	}
	if (g_dir) {
		tu_rmrf(g_dir);
		free(g_dir);
		g_dir = NULL;
	}
	if (g_mnt) {
		tu_fs_unmount(g_mnt);
		free(g_mnt);
		g_mnt = NULL;
	}
	return 0;
}

/* --------------------------------------------------------------------------------
 * The follower: a reader in the parent that follows the log while the child writes. */

static void *follow(void *arg)
{
	struct follower *f = arg;
	struct ringlog_reader *r = NULL;
	int err = ringlog_reader_open(f->dir, 0, &r);
	if (err) {
		snprintf(f->msg, sizeof(f->msg), "ringlog_reader_open: %s: %s",
			 ringlog_strerror(err), ringlog_last_error());
		f->bad = 1;
		return NULL;
	}
	scan_init(&f->scan, 1);
	struct ringlog_record rec;
	for (;;) {
		int stop = atomic_load(&f->stop);
		int got = ringlog_reader_next(r, &rec);
		if (got < 0) {
			snprintf(f->msg, sizeof(f->msg),
				 "ringlog_reader_next after LSN %" PRIu64 ": %s: %s",
				 f->scan.next_lsn - 1, ringlog_strerror(got), ringlog_last_error());
			f->bad = 1;
			break;
		}
		if (got == 0) {
			if (stop)
				break; /* a whole pass after the writer died */
			sleep_ns(200000);
			continue;
		}
		int done = scan_record(&f->scan, &rec);
		if (done < 0) {
			snprintf(f->msg, sizeof(f->msg), "reader returned bad data: %s",
				 f->scan.why);
			f->bad = 1;
			break;
		}
		if (done)
			batches_add(&f->seen, f->scan.b_first, f->scan.b_n, f->scan.b_tag);
	}
	if (!f->bad && scan_end(&f->scan) < 0) {
		snprintf(f->msg, sizeof(f->msg), "reader stopped inside a batch: %s", f->scan.why);
		f->bad = 1;
	}
	ringlog_reader_close(r);
	return NULL;
}

/* --------------------------------------------------------------------------------
 * One cycle: run a child, kill it, recover and check. */

static void inbox_take(struct inbox *in, const struct msg *m)
{
	char t[64];
	switch (m->kind) {
	case MSG_OPENED:
		if (in->opened)
			fail_msg("crash (seed %" PRIu64 "): child reported two opens", g_seed);
		in->opened = 1;
		in->open_lsn = m->lsn;
		in->opened_at = now_ns();
		return;
	case MSG_ACK:
		tag_str(t, sizeof(t), m->tag);
		if (!in->opened || tag_inc(m->tag) != in->inc ||
		    tag_thread(m->tag) >= CHILD_THREADS || m->nrecs != tag_nrecs(m->tag) ||
		    m->lsn < in->open_lsn || m->lsn == 0)
			fail_msg("crash (seed %" PRIu64
				 "): child acknowledged an impossible batch: LSN "
				 "%" PRIu64 ", %u records, %s (log opened at LSN %" PRIu64 ")",
				 g_seed, m->lsn, m->nrecs, t, in->open_lsn);
		batches_add(&g_acked, m->lsn, m->nrecs, m->tag);
		in->acks++;
		if (m->lsn + m->nrecs - 1 > in->max_acked_lsn)
			in->max_acked_lsn = m->lsn + m->nrecs - 1;
		return;
	case MSG_ERROR:
		in->child_error = 1;
		in->error = *m;
		return;
	default:
		fail_msg("crash (seed %" PRIu64 "): garbled message from the child (kind %u)",
			 g_seed, m->kind);
	}
}

/* Read what the pipe has.  Returns at EAGAIN or end of file (in->eof). */
static void inbox_drain(struct inbox *in)
{
	for (;;) {
		ssize_t n = read(in->fd, in->buf + in->have, sizeof(in->buf) - in->have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			fail_msg("crash: reading the pipe: %s", strerror(errno));
		if (n == 0) {
			if (in->have != 0)
				fail_msg("crash (seed %" PRIu64 "): %zu bytes of a partial message "
					 "from the child",
					 g_seed, in->have);
			in->eof = 1;
			return;
		}
		in->have += (size_t)n;
		size_t off = 0;
		for (; in->have - off >= sizeof(struct msg); off += sizeof(struct msg)) {
			struct msg m;
			memcpy(&m, in->buf + off, sizeof(m));
			inbox_take(in, &m);
		}
		memmove(in->buf, in->buf + off, in->have - off);
		in->have -= off;
	}
}

/* The scan just completed a batch: every batch of `want` (sorted by LSN) up to its
 * first LSN must be that very batch.  *j walks `want`. */
static void expect_batch(const struct batches *want, size_t *j, const struct scan *s,
			 const char *what, unsigned cycle)
{
	char t[64], bt[64];
	tag_str(bt, sizeof(bt), s->b_tag);
	for (; *j < want->n && want->v[*j].lsn <= s->b_first; (*j)++) {
		const struct batch *w = &want->v[*j];
		tag_str(t, sizeof(t), w->tag);
		if (w->lsn < s->b_first)
			fail_msg("crash (seed %" PRIu64 ", cycle %u): %s batch at LSN %" PRIu64
				 " (%s, %u records) is missing: the log has batch %" PRIu64
				 " (%s) there or after it",
				 g_seed, cycle, what, w->lsn, t, w->nrecs, s->b_first, bt);
		if (w->tag != s->b_tag || w->nrecs != s->b_n)
			fail_msg("crash (seed %" PRIu64 ", cycle %u): %s batch at LSN %" PRIu64
				 " (%s, %u records) was replaced by %s (%u records)",
				 g_seed, cycle, what, w->lsn, t, w->nrecs, bt, s->b_n);
	}
}

static void expect_none_left(const struct batches *want, size_t j, uint64_t last, const char *what,
			     unsigned cycle)
{
	if (j < want->n) {
		char t[64];
		tag_str(t, sizeof(t), want->v[j].tag);
		fail_msg("crash (seed %" PRIu64 ", cycle %u): %s batch at LSN %" PRIu64 " (%s, %u "
			 "records) is missing: the log ends at LSN %" PRIu64 " (%zu such batches "
			 "missing)",
			 g_seed, cycle, what, want->v[j].lsn, t, want->v[j].nrecs, last,
			 want->n - j);
	}
}

/* The whole recovered log: dense from 1, every batch whole and valid and in order,
 * every acknowledged batch (and every batch the follower saw) at its LSN. */
static uint64_t verify_log(const char *dir, unsigned cycle, struct batches *seen)
{
	batches_sort(&g_acked);
	if (seen)
		batches_sort(seen);
	struct ringlog_reader *r = NULL;
	int err = ringlog_reader_open(dir, 0, &r);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): ringlog_reader_open: %s: %s", g_seed,
			 cycle, ringlog_strerror(err), ringlog_last_error());
	static struct scan s;
	scan_init(&s, 1);
	size_t ja = 0, js = 0;
	struct ringlog_record rec;
	int got;
	while ((got = ringlog_reader_next(r, &rec)) == 1) {
		int done = scan_record(&s, &rec);
		if (done < 0) {
			ringlog_reader_close(r);
			fail_msg("crash (seed %" PRIu64 ", cycle %u): after recovery: %s", g_seed,
				 cycle, s.why);
		}
		if (done) {
			expect_batch(&g_acked, &ja, &s, "acknowledged", cycle);
			if (seen)
				expect_batch(seen, &js, &s, "follower-seen", cycle);
		}
	}
	ringlog_reader_close(r);
	if (got < 0)
		fail_msg("crash (seed %" PRIu64
			 ", cycle %u): ringlog_reader_next after LSN %" PRIu64 ": %s: %s",
			 g_seed, cycle, s.next_lsn - 1, ringlog_strerror(got),
			 ringlog_last_error());
	if (scan_end(&s) < 0)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): after recovery: %s", g_seed, cycle,
			 s.why);
	expect_none_left(&g_acked, ja, s.next_lsn - 1, "acknowledged", cycle);
	if (seen)
		expect_none_left(seen, js, s.next_lsn - 1, "follower-seen", cycle);
	return s.records;
}

/* Append the marker batch of `tag` with the parent's handle and wait for it; it is
 * acknowledged then. */
uint64_t append_marker(struct ringlog *log, uint64_t tag, unsigned cycle)
{
	unsigned n = tag_nrecs(tag);
	struct iovec iov[MAX_RECS];
	static uint8_t data[MAX_RECS][MAX_REC_LEN];
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = data[i];
		iov[i].iov_len = rec_len(tag, i);
		tu_fill_record(data[i], (unsigned)iov[i].iov_len, tag, i);
	}
	uint64_t lsn = 0;
	int err = ringlog_append(log, iov, n, &lsn);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): marker append: %s: %s", g_seed, cycle,
			 ringlog_strerror(err), ringlog_last_error());
	err = ringlog_wait(log, lsn + n - 1);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): marker wait: %s: %s", g_seed, cycle,
			 ringlog_strerror(err), ringlog_last_error());
	batches_add(&g_acked, lsn, n, tag);
	return lsn;
}

static void pick_options(struct ringlog_options *o)
{
	static const uint32_t rings[] = {64 << 10, 256 << 10, 1 << 20};
	tu_options(o, SEGMENT_BYTES, rings[rnd_below(3)]);
	o->pipeline_depth = 1 + rnd_below(4);
	o->no_registered_buffer = rnd_below(4) == 0;
}

void run_cycle(unsigned cycle, int with_follower, struct totals *tot)
{
	const char *dir = g_dir;
	struct ringlog_options o;
	pick_options(&o);
	/* Kill at a random instant: usually counted from the child's open (so it has
	 * appended for a while), sometimes from the fork (so it may die in recovery). */
	int early = !with_follower && rnd_below(4) == 0;
	uint64_t delay_ns =
	    early ? rnd_below(EARLY_KILL_MAX_US + 1) * 1000ull
		  : (KILL_MIN_MS + rnd_below(KILL_MAX_MS - KILL_MIN_MS + 1)) * 1000000ull;

	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child_main(dir, &o, fds[1], cycle, parent);
	}
	g_child = pid;
	close(fds[1]);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	struct inbox *in = calloc(1, sizeof(*in));
	assert_non_null(in);
	g_inbox = in;
	in->fd = fds[0];
	in->inc = cycle;
	uint64_t forked = now_ns();

	if (with_follower) {
		batches_free(&g_follow.seen);
		g_follow = (struct follower){.dir = dir};
		assert_int_equal(pthread_create(&g_follow_thread, NULL, follow, &g_follow), 0);
		g_follow_running = 1;
	}

	/* Collect acknowledgements until the kill is due. */
	const uint64_t open_timeout = 120ull * 1000000000;
	for (;;) {
		uint64_t now = now_ns();
		uint64_t due = early	    ? forked + delay_ns
			       : in->opened ? in->opened_at + delay_ns
					    : forked + open_timeout;
		if (now >= due) {
			if (!early && !in->opened)
				fail_msg("crash (seed %" PRIu64
					 ", cycle %u): the child did not open the "
					 "log within 120 s",
					 g_seed, cycle);
			break;
		}
		struct pollfd p = {.fd = in->fd, .events = POLLIN};
		uint64_t left_ms = (due - now + 999999) / 1000000;
		int pr = poll(&p, 1, (int)(left_ms < 100 ? left_ms : 100));
		if (pr < 0 && errno != EINTR)
			fail_msg("crash: poll: %s", strerror(errno));
		inbox_drain(in);
		if (in->eof)
			break; /* the child died on its own */
	}
	int killed = !in->eof;
	uint64_t kill_ms = (now_ns() - forked) / 1000000;
	if (killed)
		assert_int_equal(kill(pid, SIGKILL), 0);
	int status = 0;
	int err = reap(pid, &status, 60ull * 1000000000);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): child %d not reaped within 60 s of "
			 "SIGKILL: %s",
			 g_seed, cycle, (int)pid, strerror(-err));
	g_child = -1;
	/* Everything it wrote before dying is in the pipe now; no writer is left. */
	while (!in->eof)
		inbox_drain(in);
	if (in->child_error)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): the child failed: thread %u: %s: %s "
			 "(its stderr has the detail)",
			 g_seed, cycle, in->error.nrecs,
			 in->error.tag == CALL_OPEN	? "ringlog_open"
			 : in->error.tag == CALL_APPEND ? "ringlog_append"
							: "ringlog_wait",
			 ringlog_strerror((int)(int64_t)in->error.lsn));
	if (!killed || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): the child ended by itself (status "
			 "0x%x) before it was killed",
			 g_seed, cycle, (unsigned)status);
	tot->kills++;
	tot->early_kills += (unsigned)early;
	tot->killed_before_open += (unsigned)!in->opened;
	tot->acked_batches += in->acks;
	if (kill_ms > tot->max_kill_ms)
		tot->max_kill_ms = kill_ms;

	struct batches *seen = NULL;
	if (with_follower) {
		follower_stop();
		if (g_follow.bad)
			fail_msg("crash (seed %" PRIu64 ", cycle %u): follower: %s", g_seed, cycle,
				 g_follow.msg);
		/* Acknowledged batches were in the files before the kill. */
		if (g_follow.scan.next_lsn - 1 < in->max_acked_lsn)
			fail_msg("crash (seed %" PRIu64 ", cycle %u): the follower read up to LSN "
				 "%" PRIu64 " but LSN %" PRIu64 " was acknowledged",
				 g_seed, cycle, g_follow.scan.next_lsn - 1, in->max_acked_lsn);
		seen = &g_follow.seen;
		tot->follower_batches += g_follow.seen.n;
	}

	uint64_t check_start = now_ns();
	/* 1. A read-only check agrees that an open would succeed; then recover. */
	struct ringlog_recovery rep;
	err = ringlog_check(dir, RINGLOG_RECOVER_TOLERATE_TAIL, &rep);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): ringlog_check: %s: %s", g_seed, cycle,
			 ringlog_strerror(err), ringlog_last_error());
	struct ringlog_options po;
	ringlog_options_init(&po);
	po.segment_bytes = SEGMENT_BYTES;
	err = ringlog_open(dir, &po, &g_log);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): ringlog_open after the kill: %s: %s",
			 g_seed, cycle, ringlog_strerror(err), ringlog_last_error());
	assert_int_equal(ringlog_recovery_report(g_log, &rep), 0);
	uint64_t cut = rep.cut_bytes;
	tot->tails_cut += cut != 0;
	uint64_t next = ringlog_next_lsn(g_log);
	if (next <= in->max_acked_lsn)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): recovered log ends at LSN %" PRIu64
			 " but LSN %" PRIu64 " was acknowledged",
			 g_seed, cycle, next - 1, in->max_acked_lsn);
	assert_int_equal(ringlog_durable_lsn(g_log), next - 1);
	assert_int_equal(rep.last_lsn, next - 1);

	/* 2 and 3.  The reader reads the files while the recovered, idle writer is open. */
	uint64_t records = verify_log(dir, cycle, seen);
	assert_int_equal(records, next - 1);

	/* 4. A marker appended after recovery must be acknowledged and last. */
	uint64_t mtag = make_tag(cycle, MARKER_THREAD, 0);
	unsigned mn = tag_nrecs(mtag);
	uint64_t mlsn = append_marker(g_log, mtag, cycle);
	assert_int_equal(mlsn, next);
	err = ringlog_close(g_log);
	g_log = NULL;
	assert_int_equal(err, 0);
	/* A clean close leaves nothing to repair. */
	err = ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep);
	if (err)
		fail_msg("crash (seed %" PRIu64 ", cycle %u): damage after a clean close: %s: %s",
			 g_seed, cycle, ringlog_strerror(err), ringlog_last_error());
	assert_int_equal(rep.last_lsn, mlsn + mn - 1);

	tot->cycles++;
	tot->log_records = mlsn + mn - 1;
	if (getenv("RINGLOG_CRASH_VERBOSE"))
		printf("crash: cycle %u: %skill after %" PRIu64 " ms%s, %" PRIu64 " acks (max LSN "
		       "%" PRIu64 "), recovered to LSN %" PRIu64 " (cut %" PRIu64
		       " bytes), depth %u, "
		       "ring %u KiB, checks took %" PRIu64 " ms\n",
		       cycle, early ? "early " : "", kill_ms, in->opened ? "" : " (before open)",
		       in->acks, in->max_acked_lsn, next - 1, cut, o.pipeline_depth,
		       o.ring_bytes >> 10, (now_ns() - check_start) / 1000000);
	close(in->fd);
	free(in);
	g_inbox = NULL;
}

double budget_seconds(void)
{
	const char *s = getenv("RINGLOG_CRASH_SECONDS");
	double v = s && *s ? strtod(s, NULL) : 0;
	return v > 0 ? v : DEFAULT_SECONDS;
}

/* Cycles of append / SIGKILL / recover / check in g_dir, for `secs` seconds or
 * `max_cycles`, whichever ends first; at least `min_cycles` must run. */
void run_cycles(const char *where, double secs, unsigned max_cycles, unsigned min_cycles)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
	struct totals tot = {0};
	for (unsigned cycle = 1; cycle <= max_cycles && now_ns() < end; cycle++)
		run_cycle(cycle, 0, &tot);
	uint64_t records = 0;
	for (size_t i = 0; i < g_acked.n; i++)
		records += g_acked.v[i].nrecs;
	uint64_t *segs;
	size_t nseg = tu_segments(g_dir, &segs);
	free(segs);
	printf("crash%s: %u cycles in %.1f s (budget %.0f s): %u kills (%u counted from the fork, "
	       "%u before the log was open, latest %" PRIu64 " ms), %" PRIu64 " acknowledged "
	       "batches (%zu with the markers, %" PRIu64 " records), %u recoveries cut a torn "
	       "tail; the log holds %" PRIu64 " records in %zu segments\n",
	       where, tot.cycles, (double)(now_ns() - start) / 1e9, secs, tot.kills,
	       tot.early_kills, tot.killed_before_open, tot.max_kill_ms, tot.acked_batches,
	       g_acked.n, records, tot.tails_cut, tot.log_records, nseg);
	if (tot.cycles < min_cycles)
		fail_msg("crash%s: only %u cycles ran within %.0f s (at least %u needed); raise "
			 "RINGLOG_CRASH_SECONDS",
			 where, tot.cycles, secs, min_cycles);
}

void crash_start(const char *name)
{
	tu_require_uring();
	const char *s = getenv("RINGLOG_CRASH_SEED");
	if (s && *s)
		g_seed = strtoull(s, NULL, 0);
	else
		g_seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() << 20 ^ now_ns();
	printf("%s: seed %" PRIu64 " (replay with RINGLOG_CRASH_SEED=%" PRIu64 ")\n", name,
	       g_seed, g_seed);
	fflush(stdout);
}
