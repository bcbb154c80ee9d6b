/*
 * The consumer thread: group commit, durability, rotation.
 *
 * A group is the run of frames published contiguously in the ring when the
 * consumer looks; it is written with one write from the registered ring buffer at
 * the segment's end, linked to an fdatasync.  The write is aligned (log->align): it
 * starts at the block the group's first frame is in -- writing again, from the ring,
 * the bytes of the previous group that share that block -- and ends at the end of
 * the block its last frame ends in (the bytes after that frame are whatever the ring
 * holds there; the next group writes them again).  A ring position and its file
 * offset are congruent modulo the alignment (log->seg_delta), so the write is one
 * aligned range of the ring and of the file: zero-copy O_DIRECT.
 *
 * Up to `pipeline_depth` groups are in flight at once, each covered by its own
 * fdatasync, and they are retired strictly in order.  A group whose first block is
 * the previous group's last is submitted only once that write has completed: two
 * writes of one block in flight could land in either order.
 *
 * Loop:
 *   FILL     while fewer than pipeline_depth groups are in flight, the segment has
 *            room and no write of a shared block is in flight: COLLECT a group and
 *            submit its write + fdatasync
 *   SLEEP    wait in io_uring for a completion, or (if FILL could take more) for a
 *            producer to signal the wake eventfd
 *   COMPLETE account a completion to its group: short write or cancelled sync ->
 *            resubmit what is missing; EINTR/EAGAIN -> retry (bounded); any other
 *            error -> FAILED
 *   RETIRE   while the oldest group is complete: publish its durability, free its
 *            ring space
 *   ROTATE   once a published frame does not fit in the rest of the segment, no
 *            more groups go to it; when the last of them retires, seal it (cut off
 *            the prepared bytes after its last frame) and start the next segment
 *            from a prepared file
 *   FAILED   latch the error, wake everyone, stop (fail-stop)
 */
#include "log_internal.h"

#include "errors.h"
#include "futex.h"
#include "probes.h"
#include "spin.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Bound on EINTR/EAGAIN/zero-progress resubmissions of one group. */
#define RL_MAX_RETRIES 64

struct group {
	uint64_t start;	  /* ring position of its first frame */
	uint64_t end;	  /* ring position after its last frame */
	uint32_t batches; /* frames in it */
	uint64_t records;
	uint64_t last_lsn; /* LSN of its last record */
	uint32_t last_crc; /* CRC of its last frame */
	/* The write: ring [wpos, wpos + wlen), aligned, to the file at file_off. */
	uint64_t wpos;
	uint32_t wlen;
	int fd;		   /* segment file it goes to */
	uint64_t file_off; /* file offset of wpos */
	uint32_t done;	   /* bytes of wlen known written */
	uint32_t from;	   /* where the write in flight started (done rounded down) */
	uint64_t submit_ns; /* when it was first submitted (the short path's average) */
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

/*
 * COLLECT: the longest run of published frames at log->scan that fits in the
 * segment.  A batch never straddles segments: a frame that does not fit in the rest
 * of this one sets *full and waits for the next, unless the segment holds no frame
 * (`seg_empty`): a batch larger than a segment then has one of its own.  Returns 0
 * if there is no frame to take.
 */
static int collect(struct ringlog *log, struct group *g, int seg_empty, int *full)
{
	struct rl_ring *r = &log->ring;
	uint32_t len;
	memset(g, 0, sizeof(*g));
	g->start = log->scan;
	while ((len = rl_ring_peek(r, log->scan)) != 0) {
		if (log->scan + len + log->seg_delta > log->opts.segment_bytes &&
		    !(seg_empty && g->batches == 0)) {
			*full = 1;
			break;
		}
		const uint8_t *f = rl_ring_at(r, log->scan);
		if (!g->first_lsn)
			g->first_lsn = rl_entry_first_lsn(f);
		g->last_lsn = rl_entry_first_lsn(f) + rl_entry_nrecs(f) - 1;
		g->last_crc = rl_entry_crc(f);
		g->batches++;
		g->records += rl_entry_records(f); /* (a hole copied from another log: none) */
		log->scan += len;
		/* One write moves at most half the ring (and stays far below 4 GiB). */
		if (log->scan - g->start >= r->capacity / 2)
			break;
	}
	g->end = log->scan;
	/* The ring's order (ring.h): what the consumer scanned lies between what it
	 * released and what producers published. */
	assert(atomic_load_explicit(&r->tail, memory_order_relaxed) <= log->scan &&
	       log->scan <= atomic_load_explicit(&r->head_pub, memory_order_relaxed));
	if (!g->batches)
		return 0;
	uint64_t a = log->align;
	g->wpos = g->start / a * a;
	g->wlen = (uint32_t)((g->end + a - 1) / a * a - g->wpos);
	g->fd = log->seg.fd;
	g->file_off = g->wpos + log->seg_delta;
	/* Frames are taken in ring order, so sequence numbers follow on. */
	g->t.first_seq = log->profile.consumer_seq;
	g->t.batches = g->batches;
	log->profile.consumer_seq += g->batches;
	if (log->profile.on)
		g->t.taken = rl_now_ns();
	return 1;
}

static int retryable(int res)
{
	return res == -EINTR || res == -EAGAIN;
}

/* Submit what group `g` (pipeline slot `tag`) still needs: the write of its missing
 * bytes (from the block the written part ends in) with a linked fdatasync, or the
 * fdatasync alone.  Returns 0 or -errno. */
static int submit_group(struct ringlog *log, struct group *g, unsigned tag)
{
	int need_write = g->done < g->wlen;
	g->from = g->done / log->align * log->align;
	const uint8_t *src = rl_ring_at(&log->ring, g->wpos) + g->from;
	uint32_t len = g->wlen - g->from;
	int err = need_write ? rl_io_write_sync(&log->io, g->fd, src, len, g->file_off + g->from, 1,
						tag)
			     : rl_io_sync(&log->io, g->fd, tag);
	if (err) {
		g->what = "io_uring submit";
		return err;
	}
	g->pending = need_write ? 2 : 1;
	g->synced = 0;
	if (!g->submit_ns)
		g->submit_ns = rl_now_ns();
	if (log->profile.on && !g->t.submitted)
		g->t.submitted = rl_now_ns();
	RL_PROBE_GROUP_SUBMIT(g->first_lsn, g->last_lsn, need_write ? len : 0, g->file_off + g->from);
	rl_count(&log->st_writes, (uint64_t)need_write);
	rl_count(&log->st_bytes_written, need_write ? len : 0);
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
		RL_PROBE_SYNC_DONE(g->last_lsn, res, now ? now - g->t.write_done : 0, g->wlen);
	}
	if (op == RL_IO_WRITE) {
		assert(res <= (int)(g->wlen - g->from));
		if (res > 0) {
			g->done = g->from + (uint32_t)res;
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
	if (g->done == g->wlen && g->synced) {
		g->complete = 1;
		return 0;
	}
	/* A short write broke the link, so its fdatasync was cancelled and synced
	 * nothing: resubmit the remainder with a new linked fdatasync.  A write that
	 * completed but whose fdatasync did not: resubmit the fdatasync. */
	rl_count(&log->st_retries, 1);
	if (g->retries > RL_MAX_RETRIES) {
		g->what = g->done < g->wlen ? "write (no progress after retries)"
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

/* The one place durable_lsn moves. */
static void publish_durable(struct ringlog *log, const struct group *g)
{
	log->seg.size = g->end + log->seg_delta;
	log->seg.last_crc = g->last_crc;
	rl_count(&log->st_groups, 1);
	rl_count(&log->st_batches, g->batches);
	rl_count(&log->st_records, g->records);
	rl_count(&log->st_bytes, g->end - g->start);
	uint64_t before = atomic_load_explicit(&log->durable_lsn, memory_order_relaxed);
	atomic_store_explicit(&log->durable_lsn, g->last_lsn, memory_order_seq_cst);
	rl_wake_waiters(log, before, g->last_lsn);
	rl_published_set(&log->published, g->last_lsn); /* and for other processes */
	/* seq_cst pairs with ringlog_event_fd()'s store: a caller that enables the
	 * eventfd after this advance sees the new durable LSN instead. */
	if (atomic_load_explicit(&log->event_fd_used, memory_order_seq_cst)) {
		uint64_t one = 1;
		(void)!write(log->event_fd, &one, sizeof(one));
	}
}

int rl_start_segment(struct ringlog *log, uint64_t first_lsn, uint32_t prev_crc, uint64_t pos,
		     int *waited)
{
	*waited = 0;
	struct rl_seg_header h = {
	    .first_lsn = first_lsn,
	    .log_id = log->log_id,
	    .prev_last_lsn = first_lsn - 1,
	    .prev_tail_crc = prev_crc,
	};
	/* The first frame goes where its file offset is congruent to `pos`, after a pad
	 * that leaves the header's block to the header. */
	uint64_t a = log->align;
	uint32_t data_off = a > 1 ? (uint32_t)((RL_SEG_HEADER_BYTES + RL_FRAME_HEADER_BYTES + a - 1) /
					       a * a + pos % a)
				  : RL_SEG_HEADER_BYTES;
	char pool_name[RL_POOL_NAME_MAX];
	const char *from = NULL;
	if (log->pool.started) {
		int err = rl_pool_take(&log->pool, first_lsn, pool_name, waited);
		if (err)
			return err;
		from = pool_name;
	}
	int direct = log->direct;
	struct rl_segment seg;
	int err = rl_seg_start(log->dir_fd, from, &h, data_off, &direct, (uint32_t)a, &seg);
	if (err)
		return err;
	if (direct != log->direct) {
		close(seg.fd);
		return rl_fail(-EINVAL, "segment %020" PRIu64 ".rlog refused O_DIRECT", first_lsn);
	}
	log->seg = seg;
	log->seg_delta = seg.size - pos;
	atomic_store_explicit(&log->st_segment_first_lsn, first_lsn, memory_order_relaxed);
	return 0;
}

/* ROTATE: seal the full segment (all of it is durable) and start the next one,
 * named by the next LSN.  Returns 0 or -errno with ringlog_last_error() set. */
static int rotate(struct ringlog *log)
{
	/* The full segment holds at least one LSN, so the next one has another name. */
	assert(atomic_load(&log->durable_lsn) + 1 > log->seg.first_lsn);
	uint64_t t0 = rl_now_ns();
	struct rl_segment old = log->seg;
	int waited = 0;
	int err = rl_seg_seal(&old);
	if (!err)
		err = rl_start_segment(log, atomic_load(&log->durable_lsn) + 1, old.last_crc,
				       log->scan, &waited);
	if (waited)
		atomic_fetch_add_explicit(&log->pool.waits, 1, memory_order_relaxed);
	RL_PROBE_ROTATE(log->seg.first_lsn, old.size, rl_now_ns() - t0);
	if (err)
		return err;
	close(old.fd);
	rl_count(&log->st_rotations, 1);
	return 0;
}

static void fail_group(struct ringlog *log, const struct group *g, int err)
{
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "%s of %" PRIu32 " bytes at offset %" PRIu64 " of %020" PRIu64
		 ".rlog failed: %s; LSNs after %" PRIu64 " are not acknowledged",
		 g->what, g->wlen, g->file_off, log->seg.first_lsn, strerrordesc_np(-err),
		 atomic_load(&log->durable_lsn));
	rl_log_fail(log, err, msg);
}

/* The pipeline: slots [head, head + count) modulo RL_MAX_PIPELINE_DEPTH. */
struct pipeline {
	struct group g[RL_MAX_PIPELINE_DEPTH];
	unsigned head, count;
	int seg_full;	/* a published frame does not fit in the segment: rotate */
	int seg_empty;	/* no group went to the segment yet */
	int wake_armed; /* the wake eventfd read is queued */
	int idle_spin;	/* a group someone waited for just retired: spin for the next */
	uint64_t idle_since; /* when the pipeline last emptied (0: it has not since) */
	uint64_t idle_gap;   /* average time from then to the next group */
};

/* The short path (spin.h): with nothing in flight, right after a retire that someone
 * waited for, look for the next append for a moment before sleeping.  Returns 1 if a
 * frame was published (or the log is closing) meanwhile. */
static int idle_spin(struct ringlog *log)
{
	uint64_t budget = log->spin_max_ns < RL_IDLE_SPIN_MAX_NS ? log->spin_max_ns
								  : RL_IDLE_SPIN_MAX_NS;
	uint64_t until = rl_now_ns() + budget;
	do {
		for (int i = 0; i < RL_SPIN_POLLS; i++) {
			if (rl_ring_peek(&log->ring, log->scan) != 0 ||
			    atomic_load_explicit(&log->closing, memory_order_relaxed))
				return 1;
			rl_cpu_relax();
		}
	} while (rl_now_ns() < until);
	return 0;
}

/* Whether FILL may take another group now. */
static int can_fill(const struct ringlog *log, const struct pipeline *p)
{
	if (p->count >= log->opts.pipeline_depth || p->seg_full)
		return 0;
	if (p->count == 0)
		return 1;
	/* The next group's first block is the last one's if that ends inside a block:
	 * it must wait until that write is complete. */
	const struct group *last = &p->g[(p->head + p->count - 1) % RL_MAX_PIPELINE_DEPTH];
	return last->end % log->align == 0 || last->done == last->wlen;
}

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
	struct pipeline p = {.seg_empty = log->seg_empty};
	for (;;) {
		/* FILL */
		while (can_fill(log, &p)) {
			unsigned tag = (p.head + p.count) % RL_MAX_PIPELINE_DEPTH;
			struct group *g = &p.g[tag];
			if (!collect(log, g, p.seg_empty, &p.seg_full))
				break;
			if (p.idle_since) {
				/* How soon work follows an empty pipeline: the idle spin's guide. */
				p.idle_gap = rl_ewma8(p.idle_gap, rl_now_ns() - p.idle_since);
				p.idle_since = 0;
			}
			p.seg_empty = 0;
			p.count++;
			int err = submit_group(log, g, tag);
			if (err) {
				fail_group(log, g, err);
				goto out;
			}
		}
		if (p.count == 0) {
			if (p.seg_full) {
				/* ROTATE.  A batch never straddles segments: no group goes
				 * to a segment once a frame did not fit, and the next one is
				 * started only after the last of them is durable. */
				int err = rotate(log);
				if (err) {
					rl_log_fail(log, err, ringlog_last_error());
					goto out;
				}
				p.seg_full = 0;
				p.seg_empty = 1;
				continue;
			}
			/* Appends have all returned before close (the API contract), so an
			 * empty ring at close means everything queued is durable. */
			if (atomic_load(&log->closing))
				goto out;
			if (p.idle_spin) {
				p.idle_spin = 0;
				if (idle_spin(log))
					continue;
			}
		}

		/* SLEEP.  When FILL could take more, also wake for new work: announce the
		 * sleep before every wait (a completion clears the announcement). */
		if (can_fill(log, &p)) {
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
			atomic_store_explicit(&log->group_ns,
					      rl_ewma8(atomic_load_explicit(&log->group_ns,
									    memory_order_relaxed),
						       rl_now_ns() - g->submit_ns),
					      memory_order_relaxed);
			/* A closed loop of few threads: its next append is moments away (as
			 * the gaps seen so far say: not in an open loop at a low rate). */
			uint32_t waiting =
			    atomic_load_explicit(&log->waiting, memory_order_relaxed);
			p.idle_spin = log->spin_max_ns && waiting && waiting <= log->spin_slots &&
				      p.idle_gap < RL_IDLE_SPIN_MAX_NS;
			if (log->profile.on) {
				/* Before the release: the batches' stamps are still valid. */
				g->t.woken = rl_now_ns();
				rl_profile_group(&log->profile, &g->t);
			}
			/* Keep the written part of its last block: the next group writes it
			 * again. */
			rl_ring_release(&log->ring, g->end / log->align * log->align);
			g->complete = 0;
			p.head = (p.head + 1) % RL_MAX_PIPELINE_DEPTH;
			p.count--;
			if (p.count == 0)
				p.idle_since = rl_now_ns();
		}
	}
out:
	drain(log, &p);
}

void *rl_consumer_main(void *arg)
{
	struct ringlog *log = arg;
	rl_faults_enter(log->faults); /* this log's fault tables, if it has its own */
	log->start_err = rl_io_init(&log->io, log->ring.buf, 2 * log->ring.capacity,
				    (int)log->opts.no_registered_buffer);
	sem_post(&log->started);
	if (log->start_err)
		return NULL;
	run(log);
	rl_io_exit(&log->io);
	return NULL;
}
