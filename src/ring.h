/*
 * The submission ring: many producers, one consumer.
 *
 * The ring is one page-aligned byte buffer whose bytes are exactly the bytes that go
 * to the segment file: producers encode whole frames in place, and the consumer
 * writes a run of consecutive frames straight from the ring (it is also the
 * io_uring registered buffer).  Positions are monotonic 64-bit byte counts; the
 * offset in the buffer is pos & mask.
 *
 *   tail <= scan <= head,  head - tail <= capacity
 *   [tail, scan)  frames the consumer has taken into a group in flight
 *   [scan, head)  reserved frames, published or still being filled
 *
 * Reservation (a mutex held for a few instructions, never across a copy) hands out
 * the byte range and the LSNs together, so ring order = LSN order = file order.
 * Under the same lock it zeroes the magic word of every entry it creates, then
 * publishes the new head.  A producer publishes its frame by storing the frame
 * magic last; the consumer looks only below the published head, at entry starts,
 * so it sees either zero or a real magic -- never stale bytes from an earlier lap
 * or from inside a record.  A frame
 * never wraps: when it does not fit before the end of the buffer the producer also
 * reserves the rest of the buffer as a pad, which the consumer skips (pads never
 * reach the disk).
 */
#ifndef RL_RING_H
#define RL_RING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RL_PAD_MAGIC 0x44415052u /* "RPAD": ring only, never written to a file */

struct rl_reservation {
	uint64_t pos;	    /* ring position of the frame */
	uint8_t *frame;	    /* where to encode it */
	uint64_t first_lsn; /* LSN of its first record */
	uint64_t seq;	    /* batch sequence number: 0, 1, 2, ... in ring order */
	uint8_t *pad;	    /* a pad to publish before the frame, or NULL */
};

struct rl_ring {
	uint8_t *buf;
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
 * first LSN will be `next_lsn`, and its wake eventfd.  Returns 0 or -errno. */
int rl_ring_init(struct rl_ring *r, uint64_t bytes, uint64_t next_lsn);
void rl_ring_destroy(struct rl_ring *r);

/*
 * Reserve `frame_bytes` (a multiple of 8, <= capacity / 2) and `nrecs` LSNs.
 * `error` is the log's sticky error word: while it is non-zero nothing is
 * reserved and its value is returned.  When the ring is full: with `block`, sleep
 * until the consumer frees space; without, return -EAGAIN.
 */
int rl_ring_reserve(struct rl_ring *r, uint32_t frame_bytes, uint32_t nrecs, int block,
		    _Atomic int *error, struct rl_reservation *out);

/* Make a filled frame (and its pad, if any) visible to the consumer and wake it if
 * it sleeps.  No system call unless the consumer announced it sleeps. */
void rl_ring_publish(struct rl_ring *r, const struct rl_reservation *res);

/* Consumer: what is at `pos` (the start of an entry, or the reserved head)?  Returns
 * 0 if nothing is published there yet; else the entry's aligned byte length, with
 * *is_pad set. */
uint32_t rl_ring_peek(const struct rl_ring *r, uint64_t pos, int *is_pad);

static inline uint8_t *rl_ring_at(const struct rl_ring *r, uint64_t pos)
{
	return r->buf + (pos & r->mask);
}

/* Consumer: the bytes [tail, upto) have been written; free them and wake producers
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
