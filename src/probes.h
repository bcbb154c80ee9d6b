/*
 * USDT probes (provider "ringlog"), for bpftrace, perf and SystemTap; see
 * docs/profiling.md.  Each is a single nop in the code until a tracer attaches.
 * Built without <sys/sdt.h> (Debian: systemtap-sdt-dev) they compile to nothing.
 */
#ifndef RL_PROBES_H
#define RL_PROBES_H

#if defined(__has_include)
#if __has_include(<sys/sdt.h>)
#include <sys/sdt.h>
#define RL_HAVE_SDT 1
#endif
#endif

#ifdef RL_HAVE_SDT
/* append(first_lsn, nrecs, frame_bytes) */
#define RL_PROBE_APPEND(lsn, n, bytes) DTRACE_PROBE3(ringlog, append, lsn, n, bytes)
/* group_submit(first_lsn, last_lsn, bytes, file_offset) */
#define RL_PROBE_GROUP_SUBMIT(first, last, bytes, off)                                             \
	DTRACE_PROBE4(ringlog, group_submit, first, last, bytes, off)
/* write_done(last_lsn, result, write_ns) */
#define RL_PROBE_WRITE_DONE(last, res, ns) DTRACE_PROBE3(ringlog, write_done, last, res, ns)
/* sync_done(last_lsn, result, sync_ns, bytes) */
#define RL_PROBE_SYNC_DONE(last, res, ns, bytes)                                                   \
	DTRACE_PROBE4(ringlog, sync_done, last, res, ns, bytes)
/* rotate(next_first_lsn, sealed_bytes, rotate_ns) */
#define RL_PROBE_ROTATE(lsn, bytes, ns) DTRACE_PROBE3(ringlog, rotate, lsn, bytes, ns)
/* fail(error, durable_lsn) */
#define RL_PROBE_FAIL(err, durable) DTRACE_PROBE2(ringlog, fail, err, durable)
#else
#define RL_PROBE_APPEND(lsn, n, bytes) ((void)0)
#define RL_PROBE_GROUP_SUBMIT(first, last, bytes, off) ((void)0)
#define RL_PROBE_WRITE_DONE(last, res, ns) ((void)0)
#define RL_PROBE_SYNC_DONE(last, res, ns, bytes) ((void)0)
#define RL_PROBE_ROTATE(lsn, bytes, ns) ((void)0)
#define RL_PROBE_FAIL(err, durable) ((void)0)
#endif

#endif
