/* Seeded scenario tests' shared state and PRNG.  Contract in scenario.h. */
#include "scenario.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t g_seed;
char g_what[400];

unsigned iters(unsigned n)
{
	return SCN_SANITIZED ? (n + 4) / 5 : n;
}

uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

uint64_t pick_seed(const char *env)
{
	const char *v = getenv(env);
	if (v && *v)
		return strtoull(v, NULL, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t s =
	    (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
	return rnd(&s);
}
