/*
 * Submission ring.  Layout and ordering rules are in ring.h.
 *
 * Sleeping and waking.  Two "Dekker" handshakes: each side stores, then loads what
 * the other side stores, all four accesses seq_cst, so they fall in one total order
 * and at least one side sees the other's store (no fences needed, which TSan could
 * not check):
 *
 *   consumer idle:   consumer: idle = 1; look at pos; sleep on wake_fd (an io_uring
 *                              read of the eventfd) unless something is there
 *                    producer: store magic; if idle: the one that clears it
 *                              signals wake_fd
 *   ring full:       producer: seq = space_seq; waiters++; re-read tail;
 *                              sleep on space_seq unless space appeared
 *                    consumer: store tail; if waiters: bump space_seq, wake all
 *
 * A wake that races with the sleeper's own check is harmless: FUTEX_WAIT sees the
 * bumped sequence and returns at once, and a signalled eventfd stays readable, so
 * the worst case is one spurious wake-up.
 */
#include "ring.h"

#include "format.h"
#include "futex.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static uint32_t *magic_word(const struct rl_ring *r, uint64_t pos)
{
	return (uint32_t *)rl_ring_at(r, pos);
}

/* One memfd mapped twice, back to back, into a reserved range of 2 * cap bytes. */
static uint8_t *map_twice(uint64_t cap)
{
	int fd = memfd_create("ringlog-ring", MFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	uint8_t *base = MAP_FAILED;
	if (ftruncate(fd, (off_t)cap) == 0)
		base = mmap(NULL, 2 * cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base != MAP_FAILED) {
		for (int i = 0; i < 2; i++) {
			void *p = mmap(base + i * cap, cap, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0);
			if (p == MAP_FAILED) {
				int err = errno;
				munmap(base, 2 * cap);
				base = MAP_FAILED;
				errno = err;
				break;
			}
		}
	}
	int err = errno;
	close(fd);
	errno = err;
	return base == MAP_FAILED ? NULL : base;
}

int rl_ring_init(struct rl_ring *r, uint64_t bytes, uint64_t next_lsn, uint64_t pos,
		 uint64_t tail)
{
	memset(r, 0, sizeof(*r));
	uint64_t cap = 4096;
	while (cap < bytes)
		cap <<= 1;
	assert(tail <= pos && pos - tail < cap / 2);
	uint8_t *p = map_twice(cap);
	if (!p)
		return -errno;
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0) {
		int err = -errno;
		munmap(p, 2 * cap);
		return err;
	}
	r->buf = p;
	r->capacity = cap;
	r->mask = cap - 1;
	r->next_lsn = next_lsn;
	r->head = pos;
	atomic_init(&r->head_pub, pos);
	atomic_init(&r->tail, tail);
	atomic_init(&r->next_lsn_pub, next_lsn);
	pthread_mutex_init(&r->reserve_lock, NULL);
	return 0;
}

void rl_ring_destroy(struct rl_ring *r)
{
	if (r->buf) {
		munmap(r->buf, 2 * r->capacity);
		close(r->wake_fd);
		pthread_mutex_destroy(&r->reserve_lock);
		r->buf = NULL;
	}
}

int rl_ring_reserve(struct rl_ring *r, uint32_t frame_bytes, uint32_t nrecs, int block,
		    uint64_t expect_lsn, _Atomic int *error, struct rl_reservation *out)
{
	assert(frame_bytes % RL_FRAME_ALIGN == 0 && frame_bytes <= r->capacity / 2);
	int counted_wait = 0;
	pthread_mutex_lock(&r->reserve_lock);
	for (;;) {
		int err = atomic_load_explicit(error, memory_order_acquire);
		if (err != 0) {
			pthread_mutex_unlock(&r->reserve_lock);
			return err;
		}
		if (expect_lsn && r->next_lsn != expect_lsn) {
			out->first_lsn = r->next_lsn;
			pthread_mutex_unlock(&r->reserve_lock);
			return -ESTALE;
		}
		uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (r->head + frame_bytes - tail <= r->capacity) {
			out->pos = r->head;
			out->frame = rl_ring_at(r, out->pos);
			/* Whatever an earlier lap left here must not read as published. */
			__atomic_store_n(magic_word(r, out->pos), 0, __ATOMIC_RELAXED);
			out->first_lsn = r->next_lsn;
			out->seq = r->next_seq++;
			r->head += frame_bytes;
			r->next_lsn += nrecs;
			atomic_store_explicit(&r->head_pub, r->head, memory_order_seq_cst);
			atomic_store_explicit(&r->next_lsn_pub, r->next_lsn, memory_order_release);
			pthread_mutex_unlock(&r->reserve_lock);
			return 0;
		}
		if (!counted_wait) {
			atomic_fetch_add_explicit(&r->full_waits, 1, memory_order_relaxed);
			counted_wait = 1;
		}
		if (!block) {
			pthread_mutex_unlock(&r->reserve_lock);
			return -EAGAIN;
		}
		uint32_t seq = atomic_load_explicit(&r->space_seq, memory_order_seq_cst);
		uint64_t head = r->head;
		atomic_fetch_add_explicit(&r->space_waiters, 1, memory_order_seq_cst);
		pthread_mutex_unlock(&r->reserve_lock);
		tail = atomic_load_explicit(&r->tail, memory_order_seq_cst);
		/* head may move meanwhile; a stale value only costs one more loop. */
		if (head + frame_bytes - tail > r->capacity && !atomic_load(error))
			rl_futex_wait(&r->space_seq, seq);
		atomic_fetch_sub_explicit(&r->space_waiters, 1, memory_order_seq_cst);
		pthread_mutex_lock(&r->reserve_lock);
	}
}

void rl_ring_publish(struct rl_ring *r, const struct rl_reservation *res, uint32_t magic)
{
	__atomic_store_n((uint32_t *)res->frame, magic, __ATOMIC_SEQ_CST);
	if (atomic_load_explicit(&r->consumer_idle, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&r->consumer_idle, 0, memory_order_seq_cst))
		rl_ring_kick(r);
}

uint32_t rl_ring_peek(const struct rl_ring *r, uint64_t pos)
{
	/* seq_cst (plain loads on x86) for the idle handshake. */
	if (pos >= atomic_load_explicit(&r->head_pub, memory_order_seq_cst))
		return 0;
	uint32_t magic = __atomic_load_n(magic_word(r, pos), __ATOMIC_SEQ_CST);
	if (magic != RL_FRAME_MAGIC && magic != RL_HOLE_MAGIC)
		return 0;
	return (uint32_t)rl_align_frame(rl_entry_len(rl_ring_at(r, pos)));
}

void rl_ring_release(struct rl_ring *r, uint64_t upto)
{
	assert(upto >= atomic_load_explicit(&r->tail, memory_order_relaxed) &&
	       upto <= atomic_load_explicit(&r->head_pub, memory_order_relaxed));
	atomic_store_explicit(&r->tail, upto, memory_order_seq_cst);
	if (atomic_load_explicit(&r->space_waiters, memory_order_seq_cst))
		rl_futex_bump_wake_all(&r->space_seq);
}

int rl_ring_prepare_sleep(struct rl_ring *r, uint64_t pos, _Atomic int *stop)
{
	atomic_store_explicit(&r->consumer_idle, 1, memory_order_seq_cst);
	if (!atomic_load(stop) && rl_ring_peek(r, pos) == 0)
		return 1;
	atomic_store_explicit(&r->consumer_idle, 0, memory_order_seq_cst);
	return 0;
}

void rl_ring_kick(struct rl_ring *r)
{
	uint64_t one = 1;
	/* Cannot fail short of a counter overflow, which would leave it readable. */
	(void)!write(r->wake_fd, &one, sizeof(one));
}

void rl_ring_wake_producers(struct rl_ring *r)
{
	rl_futex_bump_wake_all(&r->space_seq);
}
