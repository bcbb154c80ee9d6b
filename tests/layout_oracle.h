/*
 * The tests' own reading of docs/format.md, independent of src/format.c: what the
 * power-loss tests (tests/powerloss.c) and the fuzz target (tests/fuzz/fuzz_log.c)
 * expect of the bytes on disk.  It shares no code with the library, so that a
 * mistake in the library's format code is not repeated here.  Plain C, no cmocka.
 */
#ifndef RL_TEST_LAYOUT_ORACLE_H
#define RL_TEST_LAYOUT_ORACLE_H

#include <stdint.h>

#define LO_SEG_MAGIC 0x47534c52u   /* "RLSG" */
#define LO_FRAME_MAGIC 0x52464c52u /* "RLFR" */
#define LO_HOLE_MAGIC 0x4c484c52u  /* "RLHL" */
#define LO_PAD_MAGIC 0x44504c52u   /* "RLPD" */
#define LO_SEG_HEADER 64u
#define LO_ENTRY_HEADER 32u
#define LO_FRAME_MAX (256u << 20)

uint32_t lo_get32(const uint8_t *p);
uint64_t lo_get64(const uint8_t *p);

/* An entry header (frame, hole or pad) as docs/format.md lays it out. */
struct lo_entry {
	uint32_t magic, crc, len, nrecs;
	uint64_t first_lsn, log_id;
};
void lo_entry_read(const uint8_t *p, struct lo_entry *e);

/* A segment header's fields (not checked). */
struct lo_seg_header {
	uint32_t magic;
	uint64_t first_lsn, log_id, prev_last_lsn;
	uint32_t prev_tail_crc;
};
void lo_seg_header_read(const uint8_t *p, struct lo_seg_header *h);

/*
 * The end-of-log rule (docs/format.md, "The end of a segment"): the bytes of a last
 * segment after its last valid entry at `end`, where LSN `lsn` is due, are a torn
 * tail only if they hold, at an 8-byte offset, a frame, hole or pad header of log
 * `log_id` whose first LSN is at least `lsn`.  Returns where the torn bytes end (the
 * end of the last such entry: its length if plausible, else its 32 header bytes; the
 * file size at most), or 0 when the tail is clean.  `data` holds the whole file.
 */
uint64_t lo_torn_end(const uint8_t *data, uint64_t size, uint64_t end, uint64_t log_id,
		     uint64_t lsn);

#endif
