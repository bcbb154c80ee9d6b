#include "tool_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t tool_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tool_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

const char *tool_human_bytes(uint64_t b, char buf[32])
{
	if (b < 1000)
		snprintf(buf, 32, "%" PRIu64 " B", b);
	else if (b < 1000000)
		snprintf(buf, 32, "%.1f kB", (double)b / 1e3);
	else if (b < 1000000000)
		snprintf(buf, 32, "%.2f MB", (double)b / 1e6);
	else
		snprintf(buf, 32, "%.2f GB", (double)b / 1e9);
	return buf;
}

int tool_name_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(extra, *s)))
			return 0;
	return 1;
}

static sigset_t g_signals;
static volatile int *g_flag;
static const char *g_first_msg, *g_second_msg;

static void say(const char *msg)
{
	if (msg && write(STDERR_FILENO, msg, strlen(msg)) < 0) {
		/* nothing to do about it */
	}
}

static void *signal_thread(void *arg)
{
	(void)arg;
	int sig;
	for (int n = 0; sigwait(&g_signals, &sig) == 0; n++) {
		if (n == 0) {
			say(g_first_msg);
			__atomic_store_n(g_flag, sig, __ATOMIC_RELEASE);
			continue;
		}
		say(g_second_msg);
		signal(sig, SIG_DFL);
		pthread_sigmask(SIG_UNBLOCK, &g_signals, NULL);
		raise(sig);
	}
	return NULL;
}

void tool_take_signals(volatile int *flag, const char *first_msg, const char *second_msg)
{
	g_flag = flag;
	g_first_msg = first_msg;
	g_second_msg = second_msg;
	sigemptyset(&g_signals);
	sigaddset(&g_signals, SIGINT);
	sigaddset(&g_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &g_signals, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, signal_thread, NULL) != 0) {
		fprintf(stderr, "cannot start the signal thread\n");
		exit(1);
	}
	pthread_detach(t);
}
