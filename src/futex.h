/* Thin futex wrappers: the ring and the waiters sleep on 32-bit sequence words. */
#ifndef RL_FUTEX_H
#define RL_FUTEX_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *word == expected (returns at once otherwise, or on a spurious wake). */
static inline void rl_futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

/* As rl_futex_wait, giving up at the CLOCK_MONOTONIC instant *deadline. */
static inline void rl_futex_wait_until(_Atomic uint32_t *word, uint32_t expected,
				       const struct timespec *deadline)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE, expected, deadline, NULL,
		FUTEX_BITSET_MATCH_ANY);
}

static inline void rl_futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Bump a sequence word and wake everyone sleeping on it. */
static inline void rl_futex_bump_wake_all(_Atomic uint32_t *word)
{
	atomic_fetch_add_explicit(word, 1, memory_order_seq_cst);
	rl_futex_wake(word, INT_MAX);
}

#endif
