/* The submission ring on its own: reservation, LSNs, wrap (no padding), full, wakeups. */
#include "testutil.h"

#include "format.h"
#include "ring.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic int no_error;

/* Reserve, encode a minimal valid-looking frame of `bytes`, publish. */
static int put(struct rl_ring *r, uint32_t bytes, uint32_t nrecs, int block, uint64_t *lsn)
{
	struct rl_reservation res;
	int err = rl_ring_reserve(r, bytes, nrecs, block, 0, &no_error, &res);
	if (err)
		return err;
	rl_frame_header_fill(res.frame, bytes, nrecs, res.first_lsn, 1);
	rl_ring_publish(r, &res, RL_FRAME_MAGIC);
	if (lsn)
		*lsn = res.first_lsn;
	return 0;
}

static void lsns_dense_and_frames_in_order(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 10, 0, 0), 0);
	uint64_t lsn;
	assert_int_equal(put(&r, 64, 3, 0, &lsn), 0);
	assert_int_equal(lsn, 10);
	assert_int_equal(put(&r, 128, 1, 0, &lsn), 0);
	assert_int_equal(lsn, 13);
	assert_int_equal(atomic_load(&r.next_lsn_pub), 14);
	assert_int_equal(rl_ring_peek(&r, 0), 64);
	assert_int_equal(rl_ring_peek(&r, 64), 128);
	assert_int_equal(rl_ring_peek(&r, 192), 0); /* nothing published there */
	rl_ring_release(&r, 192);
	assert_int_equal(atomic_load(&r.tail), 192);
	rl_ring_destroy(&r);
}

/* Bytes that look like a frame magic -- beyond the reserved head, or left inside a
 * record by an earlier lap -- never read as published. */
static void stale_magic_is_never_published(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 1, 0, 0), 0);
	/* Beyond head: a magic and a length, as a record's data could leave them. */
	rl_put32(r.buf + 512, RL_FRAME_MAGIC);
	rl_put32(r.buf + 520, 64);
	assert_int_equal(rl_ring_peek(&r, 512), 0);
	/* One 2048-byte frame whose payload is full of magics, published and released. */
	struct rl_reservation res;
	assert_int_equal(rl_ring_reserve(&r, 2048, 1, 0, 0, &no_error, &res), 0);
	for (uint32_t off = 32; off < 2048; off += 8) {
		rl_put32(res.frame + off, RL_FRAME_MAGIC);
		rl_put32(res.frame + off + 4, 8);
	}
	rl_frame_header_fill(res.frame, 2048, 1, res.first_lsn, 1);
	rl_ring_publish(&r, &res, RL_FRAME_MAGIC);
	assert_int_equal(rl_ring_peek(&r, 0), 2048);
	rl_ring_release(&r, 2048);
	/* The next lap: reservations start inside the old payload.  Reserved but not
	 * yet published, they must read as nothing. */
	for (int i = 0; i < 4; i++) {
		struct rl_reservation x;
		assert_int_equal(rl_ring_reserve(&r, 1024, 1, 0, 0, &no_error, &x), 0);
		assert_int_equal(rl_ring_peek(&r, x.pos), 0);
		rl_frame_header_fill(x.frame, 1024, 1, x.first_lsn, 1);
		rl_ring_publish(&r, &x, RL_FRAME_MAGIC);
		assert_int_equal(rl_ring_peek(&r, x.pos), 1024);
		rl_ring_release(&r, x.pos + 1024);
	}
	rl_ring_destroy(&r);
}

/* A frame that does not fit before the end of the buffer continues after it: the
 * buffer is mapped twice, so its bytes are contiguous in memory and nothing is padded
 * (every ring byte reaches the file). */
static void full_ring_and_wrap_without_pad(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 1, 0, 0), 0);
	assert_int_equal(r.capacity, 4096);
	/* 3 x 1200 = 3600 fit; a 4th does not. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(put(&r, 1200, 1, 0, NULL), 0);
	assert_int_equal(put(&r, 1200, 1, 0, NULL), -EAGAIN);
	/* Free the first two: 2400 free; the next frame starts 496 bytes before the end
	 * of the buffer and wraps. */
	rl_ring_release(&r, 2400);
	struct rl_reservation res;
	assert_int_equal(rl_ring_reserve(&r, 1200, 1, 0, 0, &no_error, &res), 0);
	assert_int_equal(res.pos, 3600);
	assert_int_equal(res.first_lsn, 4);
	assert_ptr_equal(res.frame, r.buf + 3600);
	/* Its last bytes are the buffer's first ones (the second mapping). */
	memset(res.frame, 0xab, 1200);
	assert_int_equal(r.buf[0], 0xab);
	assert_int_equal(r.buf[1200 - 496 - 1], 0xab);
	rl_frame_header_fill(res.frame, 1200, 1, res.first_lsn, 1);
	rl_ring_publish(&r, &res, RL_FRAME_MAGIC);
	assert_int_equal(rl_ring_peek(&r, 3600), 1200);
	/* Used: 1200 (third) + 1200 = 2400; 1200 more fit, then no more. */
	assert_int_equal(put(&r, 1200, 1, 0, NULL), 0);
	assert_int_equal(put(&r, 1200, 1, 0, NULL), -EAGAIN);
	rl_ring_destroy(&r);
}

/* The ring can start anywhere, holding bytes before its first frame for the
 * consumer (the written part of a block it will write again). */
static void starts_at_a_position_with_held_bytes(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 7, 300, 0), 0);
	assert_int_equal(r.head, 300);
	assert_int_equal(atomic_load(&r.tail), 0);
	struct rl_reservation res;
	assert_int_equal(rl_ring_reserve(&r, 2048, 1, 0, 0, &no_error, &res), 0);
	assert_int_equal(res.pos, 300);
	assert_int_equal(res.first_lsn, 7);
	/* 300 + 2 x 2048 would fit a free ring, but the 300 held bytes are not free. */
	assert_int_equal(rl_ring_reserve(&r, 2048, 1, 0, 0, &no_error, &res), -EAGAIN);
	rl_ring_release(&r, 300);
	assert_int_equal(rl_ring_reserve(&r, 2048, 1, 0, 0, &no_error, &res), 0);
	assert_int_equal(res.pos, 2348);
	rl_ring_destroy(&r);
}

/* A reservation that expects a first LSN (a frame copied whole) gets it or nothing. */
static void reservation_at_an_expected_lsn(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 5, 0, 0), 0);
	struct rl_reservation res;
	assert_int_equal(rl_ring_reserve(&r, 64, 2, 0, 6, &no_error, &res), -ESTALE);
	assert_int_equal(res.first_lsn, 5); /* the next one, said back */
	assert_int_equal(r.head, 0);	    /* nothing reserved */
	assert_int_equal(atomic_load(&r.next_lsn_pub), 5);
	assert_int_equal(rl_ring_reserve(&r, 64, 2, 0, 5, &no_error, &res), 0);
	assert_int_equal(res.first_lsn, 5);
	assert_int_equal(atomic_load(&r.next_lsn_pub), 7);
	rl_ring_destroy(&r);
}

static void sticky_error_stops_reservations(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 1, 0, 0), 0);
	_Atomic int err = -EIO;
	struct rl_reservation res;
	assert_int_equal(rl_ring_reserve(&r, 64, 1, 1, 0, &err, &res), -EIO);
	assert_int_equal(atomic_load(&r.next_lsn_pub), 1); /* no LSN handed out */
	rl_ring_destroy(&r);
}

struct blocked {
	struct rl_ring *r;
	_Atomic int done;
	_Atomic int *error;
	int result;
};

static void *blocked_put(void *arg)
{
	struct blocked *b = arg;
	struct rl_reservation res;
	b->result = rl_ring_reserve(b->r, 2048, 1, 1, 0, b->error, &res);
	if (b->result == 0) {
		rl_frame_header_fill(res.frame, 2048, 1, res.first_lsn, 1);
		rl_ring_publish(b->r, &res, RL_FRAME_MAGIC);
	}
	atomic_store(&b->done, 1);
	return NULL;
}

static void blocking_reserve_waits_for_space(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 1, 0, 0), 0);
	assert_int_equal(put(&r, 2048, 1, 0, NULL), 0);
	assert_int_equal(put(&r, 2048, 1, 0, NULL), 0);
	struct blocked b = {.r = &r, .error = &no_error};
	pthread_t t;
	pthread_create(&t, NULL, blocked_put, &b);
	usleep(50 * 1000);
	assert_int_equal(atomic_load(&b.done), 0); /* still waiting: ring full */
	rl_ring_release(&r, 2048);
	pthread_join(t, NULL);
	assert_int_equal(b.result, 0);
	rl_ring_destroy(&r);
}

static void blocked_producer_woken_by_failure(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 4096, 1, 0, 0), 0);
	assert_int_equal(put(&r, 2048, 1, 0, NULL), 0);
	assert_int_equal(put(&r, 2048, 1, 0, NULL), 0);
	_Atomic int err = 0;
	struct blocked b = {.r = &r, .error = &err};
	pthread_t t;
	pthread_create(&t, NULL, blocked_put, &b);
	usleep(50 * 1000);
	assert_int_equal(atomic_load(&b.done), 0);
	atomic_store(&err, -ENOSPC);
	rl_ring_wake_producers(&r);
	pthread_join(t, NULL);
	assert_int_equal(b.result, -ENOSPC);
	rl_ring_destroy(&r);
}

/* Many producers, one consumer: every frame arrives once, in LSN order. */
struct stress {
	struct rl_ring *r;
	unsigned id;
	unsigned count;
};

static void *stress_producer(void *arg)
{
	struct stress *s = arg;
	for (unsigned i = 0; i < s->count; i++) {
		uint32_t nrecs = 1 + (i % 5);
		uint32_t bytes = (uint32_t)rl_align_frame(32 + 8 * ((i * 7 + s->id) % 60));
		struct rl_reservation res;
		int err = rl_ring_reserve(s->r, bytes, nrecs, 1, 0, &no_error, &res);
		if (err)
			abort();
		rl_frame_header_fill(res.frame, bytes, nrecs, res.first_lsn, s->id);
		rl_ring_publish(s->r, &res, RL_FRAME_MAGIC);
	}
	return NULL;
}

static void many_producers_one_consumer(void **state)
{
	(void)state;
	struct rl_ring r;
	assert_int_equal(rl_ring_init(&r, 8192, 1, 0, 0), 0);
	enum { P = 4, N = 20000 };
	struct stress s[P];
	pthread_t t[P];
	for (unsigned i = 0; i < P; i++) {
		s[i] = (struct stress){&r, i, N};
		pthread_create(&t[i], NULL, stress_producer, &s[i]);
	}
	_Atomic int stop = 0;
	uint64_t pos = 0, expect_lsn = 1, frames = 0;
	while (frames < (uint64_t)P * N) {
		uint32_t len = rl_ring_peek(&r, pos);
		if (len == 0) {
			if (rl_ring_prepare_sleep(&r, pos, &stop)) {
				struct pollfd pfd = {.fd = r.wake_fd, .events = POLLIN};
				uint64_t v;
				poll(&pfd, 1, -1);
				(void)!read(r.wake_fd, &v, sizeof(v));
			}
			continue;
		}
		const uint8_t *f = rl_ring_at(&r, pos);
		assert_int_equal(rl_get64(f + 16), expect_lsn);
		assert_int_equal(rl_get32(f + 8), len);
		expect_lsn += rl_get32(f + 12);
		frames++;
		pos += len;
		rl_ring_release(&r, pos);
	}
	for (unsigned i = 0; i < P; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&r.next_lsn_pub), expect_lsn);
	rl_ring_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lsns_dense_and_frames_in_order),
	    cmocka_unit_test(stale_magic_is_never_published),
	    cmocka_unit_test(full_ring_and_wrap_without_pad),
	    cmocka_unit_test(starts_at_a_position_with_held_bytes),
	    cmocka_unit_test(reservation_at_an_expected_lsn),
	    cmocka_unit_test(sticky_error_stops_reservations),
	    cmocka_unit_test(blocking_reserve_waits_for_space),
	    cmocka_unit_test(blocked_producer_woken_by_failure),
	    cmocka_unit_test(many_producers_one_consumer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
