/*
 * Seeded scenario tests (tests/powerloss.c and its programs, tests/test_prepared.c):
 * the run's seed and the scenario being checked, named in every failure; checks
 * that name both; a PRNG; fewer iterations under sanitizers.
 */
#ifndef RL_TEST_SCENARIO_H
#define RL_TEST_SCENARIO_H

#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SCN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(undefined_behavior_sanitizer)
#define SCN_SANITIZED 1
#endif
#endif
#ifndef SCN_SANITIZED
#define SCN_SANITIZED 0
#endif

extern uint64_t g_seed;	 /* printed at the start; the program's *_SEED variable repeats it */
extern char g_what[400]; /* the scenario being checked, for failure messages */

#define SCEN(...) snprintf(g_what, sizeof(g_what), __VA_ARGS__)

#define EXPECT(c)                                                                                  \
	do {                                                                                       \
		if (!(c))                                                                          \
			fail_msg("%s:%d: expected %s [scenario: %s; seed 0x%016" PRIx64 "]",       \
				 __FILE__, __LINE__, #c, g_what, g_seed);                          \
	} while (0)

#define EXPECT_U64(a, b)                                                                           \
	do {                                                                                       \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                   \
		if (a_ != b_)                                                                      \
			fail_msg("%s:%d: %s == %s: %" PRIu64 " != %" PRIu64                        \
				 " [scenario: %s; seed 0x%016" PRIx64 "]",                         \
				 __FILE__, __LINE__, #a, #b, a_, b_, g_what, g_seed);              \
	} while (0)

#define EXPECT_INT(a, b)                                                                           \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			fail_msg(                                                                  \
			    "%s:%d: %s == %s: %lld != %lld [scenario: %s; last ringlog error: "    \
			    "%s; seed 0x%016" PRIx64 "]",                                          \
			    __FILE__, __LINE__, #a, #b, a_, b_, g_what, ringlog_last_error(),      \
			    g_seed);                                                               \
	} while (0)

/* n, or a fifth of it under sanitizers (where every open and scan costs far more). */
unsigned iters(unsigned n);
/* splitmix64 */
uint64_t rnd(uint64_t *s);
/* Uniform in [0, n); 0 when n is 0. */
uint64_t below(uint64_t *s, uint64_t n);
/* The seed: environment variable `env` (0x... or decimal) if set, else from the clock
 * and the pid. */
uint64_t pick_seed(const char *env);

#endif
