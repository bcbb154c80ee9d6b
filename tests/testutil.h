/* Helpers shared by the test programs (cmocka). */
#ifndef RL_TESTUTIL_H
#define RL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ringlog.h"

/* Exit 77 (skipped) with a message if io_uring cannot be set up here, unless
 * RINGLOG_REQUIRE_URING is set in the environment (CI on a machine that has it),
 * where that is a failure. */
void tu_require_uring(void);

/* cmocka setup/teardown: *state is a fresh temporary directory, removed after. */
int tu_setup_dir(void **state);
int tu_teardown_dir(void **state);
/* A cmocka test that gets a fresh directory in *state. */
#define TU_DIR_TEST(f) cmocka_unit_test_setup_teardown(f, tu_setup_dir, tu_teardown_dir)

/* A fresh directory under $TMPDIR (or /tmp); removed by tu_rmrf. Caller frees. */
char *tu_tmpdir(void);
void tu_rmrf(const char *dir);
/* dir + "/" + name into a static buffer (one at a time). */
const char *tu_path(const char *dir, const char *name);
uint64_t tu_file_size(const char *path);
/* Segment first LSNs in dir (sorted); returns the count. *lsns malloc'd. */
size_t tu_segments(const char *dir, uint64_t **lsns);
/* Path of the segment whose first LSN is `first_lsn` (static buffer, one at a time). */
const char *tu_segment_path(const char *dir, uint64_t first_lsn);
/* Path of the last segment in dir (static buffer). */
const char *tu_last_segment(const char *dir);

/* Where the entries of the segment file at `path` start (after its header and a leading
 * pad, if any) and end (after the last valid one: a prepared segment file is longer). */
uint64_t tu_data_start(const char *path);
uint64_t tu_data_end(const char *path);
/* The alignment of the log's writes (ringlog_stats: 1 when buffered). */
uint32_t tu_io_align(struct ringlog *log);
/* Round v up to a multiple of a. */
uint64_t tu_round_up(uint64_t v, uint64_t a);

/* Options with small sizes so tests rotate and fill rings quickly. */
void tu_options(struct ringlog_options *o, uint64_t segment_bytes, uint32_t ring_bytes);
/* Open or fail the test, printing ringlog_last_error(). */
struct ringlog *tu_open(const char *dir, const struct ringlog_options *o);

/* Append one batch of `nrecs` records whose contents are derived from (tag, i) and
 * checkable with tu_record_ok; returns the first LSN (fails the test on error). */
uint64_t tu_append_tagged(struct ringlog *log, uint64_t tag, unsigned nrecs, unsigned len);
void tu_fill_record(uint8_t *buf, unsigned len, uint64_t tag, unsigned i);
/* 1 if data looks like a record made by tu_fill_record (any tag). */
int tu_record_ok(const void *data, unsigned len);

/* Read the whole log: number of records, first and last LSN; asserts density and
 * that every record passes tu_record_ok when `tagged`.  Returns reader_next's
 * final result (0 at a clean end). */
int tu_read_all(const char *dir, uint64_t from, uint64_t *count, uint64_t *first, uint64_t *last,
		int tagged);

/* Every file of `dir` but the preparer's pool.* files (how many exist at a close
 * depends on when its thread ran), in name order, each name followed by its bytes:
 * compare two to see whether two directories hold the same log.  *len: its size. */
char *tu_dir_digest(const char *dir, size_t *len);
/* Copy every file of `from` into the directory `to` (which must exist). */
void tu_copy_dir(const char *from, const char *to);

/* Overwrite / append raw bytes in a file. */
void tu_write_at(const char *path, uint64_t off, const void *data, size_t len);
void tu_truncate(const char *path, uint64_t size);

#endif
