/*
 * Small helpers the command-line tools share (ringlog-dump, ringlog-ship,
 * ringlog-restore): time, JSON strings, byte counts, names, and taking SIGINT/SIGTERM
 * in a thread of their own.
 */
#ifndef RINGLOG_TOOL_COMMON_H
#define RINGLOG_TOOL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t tool_now_ns(void);

/* Print `s` to stdout as a JSON string, quotes included. */
void tool_json_str(const char *s);

/* Bytes with a decimal unit into buf: "812 B", "12.3 kB", "4.56 MB", "1.20 GB". */
const char *tool_human_bytes(uint64_t b, char buf[32]);

/* Whether `s` is 1..max letters, digits and characters of `extra`. */
int tool_name_ok(const char *s, const char *extra, size_t max);

/*
 * Block SIGINT and SIGTERM (call it before any other thread exists: threads inherit
 * the mask, so the library's and libnats's threads never see them) and take them in a
 * thread of their own: the first is stored in *flag with an atomic store (after
 * printing `first_msg` to stderr, if not NULL); a second prints `second_msg` and ends
 * the process by that signal at once.  Exits with status 1 if the thread cannot start.
 */
void tool_take_signals(volatile int *flag, const char *first_msg, const char *second_msg);

#endif
