/*
 * The consumer thread: group commit, durability, rotation.
 *
 * A group is the run of frames published contiguously in the ring when the
 * consumer looks; it is written with one write from the registered ring buffer at
 * the segment's end, linked to an fdatasync.  Up to `pipeline_depth` groups are in
 * flight at once (concurrent fdatasyncs overlap on real devices), each covered by
 * its own fdatasync, and they are retired strictly in order.
 *
 * Loop:
 *   FILL     while fewer than pipeline_depth groups are in flight and the segment
 *            is below its cap: COLLECT a group and submit its write + fdatasync
 *   SLEEP    wait in io_uring for a completion, or (if FILL could take more) for a
 *            producer to signal the wake eventfd
 *   COMPLETE account a completion to its group: short write or cancelled sync ->
 *            resubmit what is missing; EINTR/EAGAIN -> retry (bounded); any other
 *            error -> FAILED
 *   RETIRE   while the oldest group is complete: publish its durability, free its
 *            ring space
 *   ROTATE   once the segment reached its cap, no more groups go to it; when the
 *            last of them retires, start the next segment
 *   FAILED   latch the error, wake everyone, stop (fail-stop)
 */
#include "log_internal.h"

#include "errors.h"
#include "futex.h"
#include "probes.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Bound on EINTR/EAGAIN/zero-progress resubmissions of one group. */
#define RL_MAX_RETRIES 64

struct group {
	uint64_t start;	  /* ring position of its first byte */
	uint64_t end;	  /* ring position after its last byte (pads skipped included) */
	uint32_t len;	  /* bytes to write, starting at start */
	uint32_t batches; /* frames in it */
	uint64_t records;
	uint64_t last_lsn; /* LSN of its last record */
	uint32_t last_crc; /* CRC of its last frame */
	/* in flight */
	int fd;		   /* segment file it goes to */
	uint64_t file_off; /* where in it */
	uint32_t done;	   /* bytes known written */
	unsigned pending;  /* completions outstanding */
	unsigned retries;  /* no-progress resubmissions */
	int synced;	   /* an fdatasync issued after `done` reached len completed */
	int complete;	   /* written in full and synced: may retire */
	int fatal;	   /* the error that fails the log, or 0 */
	const char *what;  /* the operation that failed */
	uint64_t first_lsn;
	struct rl_group_times t; /* stage times (options.profile) */
};

void rl_log_fail(struct ringlog *log, int err, const char *msg)
{
	assert(err < 0);
	/* Codes the API gives its own meaning (ring full, another writer, bad
	 * argument, ...) would mislead as the log's error: report -EIO, keeping the
	 * original in the message. */
	char buf[320];
	if (err == -EAGAIN || err == -EBUSY || err == -EINVAL || err == -EMSGSIZE ||
	    err == -ETIMEDOUT || err == -EINTR) {
		snprintf(buf, sizeof(buf), "%s [%s]", msg, strerrordesc_np(-err));
		msg = buf;
		err = -EIO;
	}
	int expected = 0;
	RL_PROBE_FAIL(err, atomic_load(&log->durable_lsn));
	if (atomic_load(&log->error) == 0) {
		snprintf(log->fail_msg, sizeof(log->fail_msg), "%s", msg);
		/* seq_cst: whoever reads the error also sees fail_msg, and the waiter
		 * handshake in rl_wake_waiters below holds for the error as well. */
		atomic_compare_exchange_strong_explicit(&log->error, &expected, err,
							memory_order_seq_cst, memory_order_seq_cst);
	}
	rl_wake_waiters(log, 0, 0);
	rl_ring_wake_producers(&log->ring);
	if (atomic_load(&log->event_fd_used)) {
		uint64_t one = 1;
		(void)!write(log->event_fd, &one, sizeof(one));
	}
}

/* COLLECT: the longest run of published frames at log->scan that is contiguous in
 * memory.  Returns 0 if there is none (leading pads are skipped all the same). */
static int collect(struct ringlog *log, struct group *g)
{
	struct rl_ring *r = &log->ring;
	int is_pad;
	uint32_t len;
	memset(g, 0, sizeof(*g));
	g->start = log->scan;
	while ((len = rl_ring_peek(r, log->scan, &is_pad)) != 0) {
		if (is_pad) {
			if (g->len)
				break; /* the group ends at the end of the buffer */
			log->scan += len;
			g->start = log->scan;
			continue;
		}
		const uint8_t *f = rl_ring_at(r, log->scan);
		if (!g->first_lsn)
			g->first_lsn = rl_get64(f + 16);
		g->last_lsn = rl_get64(f + 16) + rl_get32(f + 12) - 1;
		g->last_crc = rl_get32(f + 4);
		g->batches++;
		g->records += rl_get32(f + 12);
		g->len += len;
		log->scan += len;
		if ((log->scan & r->mask) == 0)
			break; /* the next frame starts at the buffer's beginning */
	}
	g->end = log->scan;
	if (g->len) {
		/* Frames are taken in ring order, so sequence numbers follow on. */
		g->t.first_seq = log->profile.consumer_seq;
		g->t.batches = g->batches;
		log->profile.consumer_seq += g->batches;
		if (log->profile.on)
			g->t.taken = rl_now_ns();
	}
	return g->len != 0;
}

static int retryable(int res)
{
	return res == -EINTR || res == -EAGAIN;
}

/* Submit what group `g` (pipeline slot `tag`) still needs: the write of its missing
 * bytes with a linked fdatasync, or the fdatasync alone.  Returns 0 or -errno. */
static int submit_group(struct ringlog *log, struct group *g, unsigned tag)
{
	const uint8_t *src = rl_ring_at(&log->ring, g->start);
	int need_write = g->done < g->len;
	int err = need_write ? rl_io_write_sync(&log->io, g->fd, src + g->done, g->len - g->done,
						g->file_off + g->done, 1, tag)
			     : rl_io_sync(&log->io, g->fd, tag);
	if (err) {
		g->what = "io_uring submit";
		return err;
	}
	g->pending = need_write ? 2 : 1;
	g->synced = 0;
	if (log->profile.on && !g->t.submitted)
		g->t.submitted = rl_now_ns();
	RL_PROBE_GROUP_SUBMIT(g->first_lsn, g->last_lsn, g->len - g->done, g->file_off + g->done);
	rl_count(&log->st_writes, (uint64_t)need_write);
	rl_count(&log->st_fdatasyncs, 1);
	return 0;
}

/* COMPLETE: account one completion of group g. */
static void complete_one(struct ringlog *log, struct group *g, enum rl_io_op op, int res)
{
	g->pending--;
	uint64_t now = log->profile.on ? rl_now_ns() : 0;
	if (op == RL_IO_WRITE) {
		g->t.write_done = now;
		RL_PROBE_WRITE_DONE(g->last_lsn, res, now ? now - g->t.submitted : 0);
	} else {
		g->t.sync_done = now;
		RL_PROBE_SYNC_DONE(g->last_lsn, res, now ? now - g->t.write_done : 0, g->len);
	}
	if (op == RL_IO_WRITE) {
		assert(res <= (int)(g->len - g->done));
		if (res > 0) {
			g->done += (uint32_t)res;
		} else if (res == 0 || retryable(res)) {
			g->retries++; /* no progress: resubmit, within the bound */
		} else if (!g->fatal) {
			g->fatal = res;
			g->what = "write";
		}
	} else if (res == 0) {
		g->synced = 1;
	} else if (res != -ECANCELED && !retryable(res)) {
		/* fsyncgate: after a failed fdatasync the pages may be marked clean;
		 * retrying could report success for lost data. */
		if (!g->fatal) {
			g->fatal = res;
			g->what = "fdatasync";
		}
	} else {
		g->retries++; /* retried: EINTR/EAGAIN, or cancelled by a broken link */
	}
}

/* After the last pending completion of g: done, failed, or resubmit.  Returns 0 or
 * the -errno that fails the log. */
static int settle(struct ringlog *log, struct group *g, unsigned tag)
{
	if (g->fatal)
		return g->fatal;
	if (g->done == g->len && g->synced) {
		g->complete = 1;
		return 0;
	}
	/* A short write broke the link, so its fdatasync was cancelled and synced
	 * nothing: resubmit the remainder with a new linked fdatasync.  A write that
	 * completed but whose fdatasync did not: resubmit the fdatasync. */
	rl_count(&log->st_retries, 1);
	if (g->retries > RL_MAX_RETRIES) {
		g->what = g->done < g->len ? "write (no progress after retries)"
					   : "fdatasync (retried too often)";
		return -EIO;
	}
	return submit_group(log, g, tag);
}

void rl_wake_waiters(struct ringlog *log, uint64_t from, uint64_t to)
{
	/* Pairs with rl_wait_durable: it counts itself in, then re-reads durable_lsn; this
	 * stored durable_lsn (or the error) first, then reads the count, all seq_cst. */
	uint64_t n = to - from;
	int all = from == to || n >= RL_WAIT_BUCKETS;
	for (uint64_t i = 0; i < (all ? RL_WAIT_BUCKETS : n); i++) {
		struct rl_wait_bucket *b = &log->wait[all ? i : (from + 1 + i) % RL_WAIT_BUCKETS];
		if (atomic_load_explicit(&b->waiters, memory_order_seq_cst))
			rl_futex_bump_wake_all(&b->seq);
	}
}

/* DURABLE: the one place durable_lsn moves. */
static void publish_durable(struct ringlog *log, const struct group *g)
{
	log->seg.size += g->len;
	log->seg.last_crc = g->last_crc;
	rl_count(&log->st_groups, 1);
	rl_count(&log->st_batches, g->batches);
	rl_count(&log->st_records, g->records);
	rl_count(&log->st_bytes, g->len);
	uint64_t before = atomic_load_explicit(&log->durable_lsn, memory_order_relaxed);
	atomic_store_explicit(&log->durable_lsn, g->last_lsn, memory_order_seq_cst);
	rl_wake_waiters(log, before, g->last_lsn);
	/* seq_cst pairs with ringlog_event_fd()'s store: a caller that enables the
	 * eventfd after this advance sees the new durable LSN instead. */
	if (atomic_load_explicit(&log->event_fd_used, memory_order_seq_cst)) {
		uint64_t one = 1;
		(void)!write(log->event_fd, &one, sizeof(one));
	}
}

/* ROTATE: close the full segment (all of it is durable) and start the next one,
 * named by the next LSN.  Returns 0 or -errno. */
static int rotate(struct ringlog *log, uint64_t next_lsn, char *msg, size_t msg_len)
{
	struct rl_seg_header h = {
	    .first_lsn = next_lsn,
	    .log_id = log->log_id,
	    .prev_last_lsn = next_lsn - 1,
	    .prev_tail_crc = log->seg.last_crc,
	};
	struct rl_segment next;
	uint64_t t0 = rl_now_ns();
	int err = rl_seg_create(log->dir_fd, &h, &next);
	RL_PROBE_ROTATE(next_lsn, log->seg.size, rl_now_ns() - t0);
	if (err) {
		snprintf(msg, msg_len, "creating segment %020" PRIu64 ".rlog: %s", next_lsn,
			 strerrordesc_np(-err));
		return err;
	}
	close(log->seg.fd);
	log->seg = next;
	rl_count(&log->st_rotations, 1);
	atomic_store_explicit(&log->st_segment_first_lsn, next.first_lsn, memory_order_relaxed);
	return 0;
}

static void fail_group(struct ringlog *log, const struct group *g, int err)
{
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "%s of %" PRIu32 " bytes at offset %" PRIu64 " of %020" PRIu64
		 ".rlog failed: %s; LSNs after %" PRIu64 " are not acknowledged",
		 g->what, g->len, g->file_off, log->seg.first_lsn, strerrordesc_np(-err),
		 atomic_load(&log->durable_lsn));
	rl_log_fail(log, err, msg);
}

/* The pipeline: slots [head, head + count) modulo RL_MAX_PIPELINE_DEPTH. */
struct pipeline {
	struct group g[RL_MAX_PIPELINE_DEPTH];
	unsigned head, count;
	uint64_t submitted; /* segment offset after the last group submitted */
	int wake_armed;	    /* the wake eventfd read is queued */
};

/* FAILED: wait for whatever is still in flight before the ring is torn down, so no
 * write of this instance can land after a reopen has cut or rewritten the file. */
static void drain(struct ringlog *log, struct pipeline *p)
{
	if (p->wake_armed)
		rl_ring_kick(&log->ring); /* completes the wake read */
	for (;;) {
		int busy = p->wake_armed;
		for (unsigned i = 0; i < RL_MAX_PIPELINE_DEPTH; i++)
			busy |= p->g[i].pending != 0;
		if (!busy)
			return;
		enum rl_io_op op;
		unsigned tag;
		int res;
		if (rl_io_wait(&log->io, &op, &tag, &res))
			return;
		if (op == RL_IO_WAKE)
			p->wake_armed = 0;
		else if (tag < RL_MAX_PIPELINE_DEPTH && p->g[tag].pending)
			p->g[tag].pending--;
	}
}

static void run(struct ringlog *log)
{
	struct pipeline p = {.submitted = log->seg.size};
	unsigned depth = log->opts.pipeline_depth;
	char msg[256];
	for (;;) {
		/* FILL */
		while (p.count < depth && p.submitted < log->opts.segment_bytes) {
			unsigned tag = (p.head + p.count) % RL_MAX_PIPELINE_DEPTH;
			struct group *g = &p.g[tag];
			if (!collect(log, g))
				break;
			g->fd = log->seg.fd;
			g->file_off = p.submitted;
			p.submitted += g->len;
			p.count++;
			int err = submit_group(log, g, tag);
			if (err) {
				fail_group(log, g, err);
				goto out;
			}
		}
		if (p.count == 0) {
			if (p.submitted >= log->opts.segment_bytes) {
				/* ROTATE.  A batch never straddles segments: no group goes
				 * to a segment once it reached the cap, and the next one is
				 * started only after the last of them is durable. */
				int err = rotate(log, atomic_load(&log->durable_lsn) + 1, msg,
						 sizeof(msg));
				if (err) {
					rl_log_fail(log, err, msg);
					goto out;
				}
				p.submitted = log->seg.size;
				continue;
			}
			/* Free skipped pads right away: producers may wait for that space. */
			if (log->scan !=
			    atomic_load_explicit(&log->ring.tail, memory_order_relaxed))
				rl_ring_release(&log->ring, log->scan);
			/* Appends have all returned before close (the API contract), so an
			 * empty ring at close means everything queued is durable. */
			if (atomic_load(&log->closing))
				goto out;
		}

		/* SLEEP.  With room in the pipeline, also wake for new work: announce the
		 * sleep before every wait (a completion clears the announcement). */
		if (p.count < depth && p.submitted < log->opts.segment_bytes) {
			if (!rl_ring_prepare_sleep(&log->ring, log->scan, &log->closing)) {
				if (p.count == 0 || !atomic_load(&log->closing))
					continue; /* work arrived, or closing with nothing in flight
						   */
			} else if (!p.wake_armed) {
				int err = rl_io_arm_wake(&log->io, log->ring.wake_fd);
				if (err) {
					rl_log_fail(log, err,
						    "io_uring: arming the wake-up read failed");
					goto out;
				}
				p.wake_armed = 1;
			}
		}
		enum rl_io_op op;
		unsigned tag;
		int res;
		int err = rl_io_wait(&log->io, &op, &tag, &res);
		if (err) {
			rl_log_fail(log, err, "io_uring: waiting for completions failed");
			goto out;
		}
		atomic_store_explicit(&log->ring.consumer_idle, 0, memory_order_relaxed);
		if (op == RL_IO_WAKE) {
			p.wake_armed = 0;
			if (res < 0 && res != -EAGAIN && res != -EINTR) {
				rl_log_fail(log, res, "io_uring: reading the wake eventfd failed");
				goto out;
			}
			continue;
		}

		/* COMPLETE */
		struct group *g = &p.g[tag];
		assert(tag < RL_MAX_PIPELINE_DEPTH && g->pending > 0);
		complete_one(log, g, op, res);
		if (g->pending == 0) {
			err = settle(log, g, tag);
			if (err) {
				fail_group(log, g, err);
				goto out;
			}
		}
		/* RETIRE, in order: a group is acknowledged only after every group before
		 * it, since each fdatasync covers only its own group's write. */
		while (p.count > 0 && p.g[p.head].complete) {
			g = &p.g[p.head];
			publish_durable(log, g);
			if (log->profile.on) {
				/* Before the release: the batches' stamps are still valid. */
				g->t.woken = rl_now_ns();
				rl_profile_group(&log->profile, &g->t);
			}
			rl_ring_release(&log->ring, g->end);
			g->complete = 0;
			p.head = (p.head + 1) % RL_MAX_PIPELINE_DEPTH;
			p.count--;
		}
	}
out:
	drain(log, &p);
}

void *rl_consumer_main(void *arg)
{
	struct ringlog *log = arg;
	log->start_err = rl_io_init(&log->io, log->ring.buf, log->ring.capacity,
				    (int)log->opts.no_registered_buffer);
	sem_post(&log->started);
	if (log->start_err)
		return NULL;
	run(log);
	rl_io_exit(&log->io);
	return NULL;
}
