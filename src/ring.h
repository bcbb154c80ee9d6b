/*
 * The submission ring: many producers, one consumer.
 *
 * The ring is one page-aligned byte buffer whose bytes are exactly the bytes that go
 * to the segment file: producers encode whole frames in place, and the consumer
 * writes a run of consecutive frames straight from the ring (it is also the
 * io_uring registered buffer).  Positions are monotonic 64-bit byte counts; the
 * offset in the buffer is pos & mask.  The buffer is mapped twice, back to back, so
 * the `capacity` bytes from any offset are contiguous in memory: a frame or a group
 * never wraps, and nothing needs padding at the end of the buffer.
 *
 *   tail <= scan <= head,  head - tail <= capacity
 *   [tail, scan)  bytes the consumer still needs: frames in groups in flight, and the
 *                 written bytes of a partial block that the next group writes again
 *   [scan, head)  reserved frames, published or still being filled
 *
 * Reservation (a mutex held for a few instructions, never across a copy) hands out
 * the byte range and the LSNs together, so ring order = LSN order = file order.
 * Under the same lock it zeroes the magic word of every entry it creates, then
 * publishes the new head.  A producer publishes its frame by storing the frame
 * magic last; the consumer looks only below the published head, at entry starts,
 * so it sees either zero or a real magic -- never stale bytes from an earlier lap
 * or from inside a record.
 */
#ifndef RL_RING_H
#define RL_RING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct rl_reservation {
	uint64_t pos;	    /* ring position of the frame */
	uint8_t *frame;	    /* where to encode it */
	uint64_t first_lsn; /* LSN of its first record */
	uint64_t seq;	    /* batch sequence number: 0, 1, 2, ... in ring order */
};

struct rl_ring {
	uint8_t *buf;	   /* 2 * capacity bytes: the same pages mapped twice */
	uint64_t capacity; /* power of two */
	uint64_t mask;

	/* Producer side, under reserve_lock. */
	_Alignas(64) pthread_mutex_t reserve_lock;
	uint64_t head;		       /* bytes reserved */
	uint64_t next_lsn;	       /* next LSN to hand out */
	uint64_t next_seq;	       /* next batch sequence number */
	_Atomic uint64_t head_pub;     /* head, for the consumer: entries below it are reserved */
	_Atomic uint64_t next_lsn_pub; /* next_lsn, readable without the lock */

	/* Consumer side. */
	_Alignas(64) _Atomic uint64_t tail; /* bytes released: free for producers */

	/* Wakeups (see ring.c for the protocol). */
	_Alignas(64) _Atomic uint32_t consumer_idle;
	int wake_fd; /* eventfd the consumer sleeps on (through io_uring) */
	_Alignas(64) _Atomic uint32_t space_waiters;
	_Atomic uint32_t space_seq;
	_Atomic uint64_t full_waits; /* reservations that found the ring full */
};

/* Allocate a ring of at least `bytes` (rounded up to a power of two, >= 4096), whose
 * first frame will be reserved at position `pos` with LSN `next_lsn`, with the bytes
 * [tail, pos) held for the consumer (tail <= pos, pos - tail < capacity / 2), and its
 * wake eventfd.  Returns 0 or -errno. */
int rl_ring_init(struct rl_ring *r, uint64_t bytes, uint64_t next_lsn, uint64_t pos,
		 uint64_t tail);
void rl_ring_destroy(struct rl_ring *r);

/*
 * Reserve `frame_bytes` (a multiple of 8, <= capacity / 2) and `nrecs` LSNs.
 * `error` is the log's sticky error word: while it is non-zero nothing is
 * reserved and its value is returned.  When the ring is full: with `block`, sleep
 * until the consumer frees space; without, return -EAGAIN.  With `expect_lsn` (not
 * 0), reserve only if the next LSN is that one: else -ESTALE, with out->first_lsn
 * set to the next LSN.
 */
int rl_ring_reserve(struct rl_ring *r, uint32_t frame_bytes, uint32_t nrecs, int block,
		    uint64_t expect_lsn, _Atomic int *error, struct rl_reservation *out);

/* Make a filled frame visible to the consumer by storing its magic (`magic`: a frame's,
 * or a hole's for a hole copied from another log) and wake the consumer if it sleeps.
 * No system call unless the consumer announced it sleeps. */
void rl_ring_publish(struct rl_ring *r, const struct rl_reservation *res, uint32_t magic);

/* Consumer: what is at `pos` (the start of a frame, or the reserved head)?  Returns
 * 0 if nothing is published there yet; else the frame's aligned byte length. */
uint32_t rl_ring_peek(const struct rl_ring *r, uint64_t pos);

/* Where position `pos` is in memory; up to `capacity` bytes from there are contiguous. */
static inline uint8_t *rl_ring_at(const struct rl_ring *r, uint64_t pos)
{
	return r->buf + (pos & r->mask);
}

/* Consumer: the bytes [tail, upto) are no longer needed; free them and wake producers
 * waiting for space. */
void rl_ring_release(struct rl_ring *r, uint64_t upto);

/*
 * Consumer, before sleeping on wake_fd: announce it, then look at `pos` once more.
 * Returns 1 if the caller should sleep (a publish will signal wake_fd), 0 if an entry
 * is there or *stop is set (rl_ring_kick() must follow every store to *stop).
 */
int rl_ring_prepare_sleep(struct rl_ring *r, uint64_t pos, _Atomic int *stop);
/* Wake the consumer whatever it waits for (close). */
void rl_ring_kick(struct rl_ring *r);
/* Wake every producer sleeping for space (after a failure). */
void rl_ring_wake_producers(struct rl_ring *r);

#endif
