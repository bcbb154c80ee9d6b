/*
 * The short path: bounded spinning instead of sleeping, where a wait is expected to
 * be short.  A sleep costs a system call on the waking side and a wake-up (tens of
 * microseconds on a virtual machine) on the sleeping one; at one or two threads
 * those hand-offs are as long as the device's own write and fdatasync.
 *
 * Who spins, and only when work is in sight:
 *  - a thread in ringlog_wait (or a live reader's wait): for about twice a group's
 *    usual submit-to-durable time (log->group_ns, an average the consumer keeps), at
 *    most options.spin_us, and only if no more threads wait than log->spin_slots (one
 *    per CPU the consumer does not need: with more waiters the CPUs are busy and a
 *    spinner would take a core the others need) and a slot is free; and not while most
 *    recent spins timed out (log->spin_score), but to re-probe now and then;
 *  - the consumer, when its pipeline just emptied, one to spin_slots threads were
 *    waiting for the group it retired (a closed loop of few threads), and the next
 *    group has usually come within RL_IDLE_SPIN_MAX_NS of an empty pipeline (an
 *    average the consumer keeps): for the next append, at most options.spin_us and
 *    RL_IDLE_SPIN_MAX_NS.
 * options.spin_us = 0 never spins.
 */
#ifndef RL_SPIN_H
#define RL_SPIN_H

#include <stdint.h>

/* The waiters' success score: each spin adds 1/8 of the distance to the maximum when
 * it ended with its LSN durable, loses 1/8 when it timed out.  Below the minimum
 * (most spins time out: groups take longer than the budget, as in an open loop at a
 * low rate) a waiter spins only once in RL_SPIN_PROBE_EVERY waits, to notice a
 * change. */
#define RL_SPIN_SCORE_MAX 256u
#define RL_SPIN_SCORE_MIN 96u
#define RL_SPIN_PROBE_EVERY 16u

/* Longest the consumer spins for the next append after a retire. */
#define RL_IDLE_SPIN_MAX_NS 50000u
/* Polls of the watched word between two clock reads. */
#define RL_SPIN_POLLS 32

static inline void rl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Fold a new sample into an average kept as a 1/8 exponential moving one. */
static inline uint64_t rl_ewma8(uint64_t avg, uint64_t sample)
{
	return avg == 0 ? sample : avg - avg / 8 + sample / 8;
}

#endif
