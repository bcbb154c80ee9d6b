/*
 * The consumer thread: group commit, durability, rotation.
 *
 * One loop, one group in flight at a time:
 *
 *   COLLECT  take every frame published contiguously from `scan` (stopping at the
 *            end of the buffer or at a pad): that run of bytes is the group
 *   IDLE     nothing published: sleep until a producer publishes or close kicks
 *   WRITE    one write of the whole group from the registered ring buffer at the
 *            segment's end, with a linked fdatasync; resubmit remainders after short
 *            writes and retry EINTR/EAGAIN (bounded)
 *   DURABLE  the fdatasync covering the whole group completed: publish durable_lsn,
 *            wake waiters, free the ring space
 *   ROTATE   only now, if the segment reached its soft cap: create the next one
 *   FAILED   any other error: latch it, wake everyone, stop (fail-stop)
 *
 * While a group is in WRITE, producers keep filling the ring; the next COLLECT
 * takes all of it, so the group size adapts to the load.
 */
#include "log_internal.h"

#include "errors.h"
#include "futex.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Bound on EINTR/EAGAIN/zero-progress resubmissions of one group. */
#define RL_MAX_RETRIES 64

struct group {
	uint64_t start;     /* ring position of its first byte */
	uint64_t end;       /* ring position after its last byte (pads skipped included) */
	uint32_t len;       /* bytes to write, starting at start */
	uint32_t batches;   /* frames in it */
	uint64_t records;
	uint64_t last_lsn;  /* LSN of its last record */
	uint32_t last_crc;  /* CRC of its last frame */
};

void rl_log_fail(struct ringlog *log, int err, const char *msg)
{
	assert(err < 0);
	int expected = 0;
	if (atomic_load(&log->error) == 0) {
		snprintf(log->fail_msg, sizeof(log->fail_msg), "%s", msg);
		/* Release: whoever reads the error also sees fail_msg. */
		atomic_compare_exchange_strong_explicit(&log->error, &expected, err,
							memory_order_release, memory_order_relaxed);
	}
	rl_futex_bump_wake_all(&log->durable_seq);
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
	return g->len != 0;
}

static int retryable(int res)
{
	return res == -EINTR || res == -EAGAIN;
}

/* WRITE: write the group at the segment's end and fdatasync it.  Returns 0 once an
 * fdatasync that started after the whole group was written has completed, else
 * the -errno that fails the log (with *what naming the operation). */
static int write_group(struct ringlog *log, const struct group *g, const char **what)
{
	const uint8_t *src = rl_ring_at(&log->ring, g->start);
	uint32_t done = 0;   /* bytes known written */
	int need_write = 1;  /* a write (of [done, len)) must be (re)submitted */
	unsigned retries = 0;
	for (;;) {
		int err = need_write ? rl_io_write_sync(&log->io, log->seg.fd, src + done,
							g->len - done, log->seg.size + done, 1)
				     : rl_io_sync(&log->io, log->seg.fd);
		if (err) {
			*what = "io_uring submit";
			return err;
		}
		rl_count(&log->st_writes, need_write);
		rl_count(&log->st_fdatasyncs, 1);
		int synced = 0, fatal = 0;
		for (int pending = need_write ? 2 : 1; pending > 0; pending--) {
			enum rl_io_op op;
			int res;
			err = rl_io_wait(&log->io, &op, &res);
			if (err) {
				*what = "io_uring wait";
				return err;
			}
			if (op == RL_IO_WRITE) {
				assert(res <= (int)(g->len - done));
				if (res > 0) {
					done += (uint32_t)res;
				} else if (res == 0 || retryable(res)) {
					retries++; /* no progress: resubmit, within the bound */
				} else if (!fatal) {
					fatal = res;
					*what = "write";
				}
			} else if (res == 0) {
				synced = 1;
			} else if (res != -ECANCELED && !retryable(res) && !fatal) {
				/* fsyncgate: after a failed fdatasync the pages may be marked
				 * clean; retrying could report success for lost data. */
				fatal = res;
				*what = "fdatasync";
			} else if (res != -ECANCELED) {
				retries++;
			}
		}
		if (fatal)
			return fatal;
		if (done == g->len && synced)
			return 0;
		/* A short write broke the link, so its fdatasync was cancelled and synced
		 * nothing: resubmit the remainder with a new linked fdatasync.  A write
		 * that completed but whose fdatasync did not: resubmit the fdatasync. */
		need_write = done < g->len;
		rl_count(&log->st_retries, 1);
		if (retries > RL_MAX_RETRIES) {
			*what = need_write ? "write (no progress after retries)"
					   : "fdatasync (retried too often)";
			return -EIO;
		}
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
	atomic_store_explicit(&log->durable_lsn, g->last_lsn, memory_order_seq_cst);
	if (atomic_load_explicit(&log->durable_waiters, memory_order_seq_cst))
		rl_futex_bump_wake_all(&log->durable_seq);
	if (atomic_load_explicit(&log->event_fd_used, memory_order_relaxed)) {
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
	int err = rl_seg_create(log->dir_fd, &h, &next);
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

void *rl_consumer_main(void *arg)
{
	struct ringlog *log = arg;
	log->start_err = rl_io_init(&log->io, log->ring.buf, log->ring.capacity,
				    (int)log->opts.no_registered_buffer);
	sem_post(&log->started);
	if (log->start_err)
		return NULL;

	char msg[256];
	for (;;) {
		struct group g;
		if (!collect(log, &g)) {
			/* Free skipped pads right away: producers may wait for that space. */
			if (log->scan != atomic_load_explicit(&log->ring.tail, memory_order_relaxed))
				rl_ring_release(&log->ring, log->scan);
			/* Appends have all returned before close (the API contract), so an
			 * empty ring at close means everything queued is durable. */
			if (atomic_load(&log->closing))
				break;
			rl_ring_wait_for_work(&log->ring, log->scan, &log->closing);
			continue;
		}
		const char *what = "";
		int err = write_group(log, &g, &what);
		if (err) {
			snprintf(msg, sizeof(msg),
				 "%s of %" PRIu32 " bytes at offset %" PRIu64 " of %020" PRIu64
				 ".rlog failed: %s; LSNs after %" PRIu64 " are not acknowledged",
				 what, g.len, log->seg.size, log->seg.first_lsn, strerrordesc_np(-err),
				 atomic_load(&log->durable_lsn));
			rl_log_fail(log, err, msg);
			break;
		}
		publish_durable(log, &g);
		rl_ring_release(&log->ring, g.end);
		/* A batch never straddles segments: rotation happens only here, after the
		 * fdatasync of the group that reached the cap, and between groups. */
		if (log->seg.size >= log->opts.segment_bytes) {
			err = rotate(log, g.last_lsn + 1, msg, sizeof(msg));
			if (err) {
				rl_log_fail(log, err, msg);
				break;
			}
		}
	}
	rl_io_exit(&log->io);
	return NULL;
}
