/*
 * The on-disk format: segment headers, frames, file names.  The byte layout is
 * documented at the top of format.c and in docs/format.md.
 */
#ifndef RL_FORMAT_H
#define RL_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RL_SEG_MAGIC 0x47534c52u   /* "RLSG" little-endian */
#define RL_FRAME_MAGIC 0x52464c52u /* "RLFR" little-endian */
#define RL_HOLE_MAGIC 0x4c484c52u  /* "RLHL" little-endian: LSNs lost to damage */
#define RL_PAD_MAGIC 0x44504c52u   /* "RLPD" little-endian: bytes to skip, no LSN */
#define RL_FORMAT_VERSION 2u	    /* written; version 1 (no pads) is read too */
#define RL_SEG_HEADER_BYTES 64u
#define RL_FRAME_HEADER_BYTES 32u
#define RL_FRAME_ALIGN 8u
/* Largest frame a reader accepts; a length field above it is damage, not a frame. */
#define RL_FRAME_MAX_BYTES (256u << 20)
/* Largest hole frame: any multiple of 8 that fits the 32-bit length field. */
#define RL_HOLE_MAX_BYTES 0xfffffff8u
/* "00000000000000000001.rlog" */
#define RL_SEG_NAME_LEN 25u
#define RL_SEG_SUFFIX ".rlog"

struct rl_seg_header {
	uint64_t first_lsn;	/* LSN of the segment's first record */
	uint64_t log_id;	/* random id of the log, shared by all its segments */
	uint64_t prev_last_lsn; /* last LSN of the previous segment (first_lsn - 1) */
	uint32_t prev_tail_crc; /* CRC field of the previous segment's last frame, or 0 */
};

/* What rl_frame_check() found at an offset. */
enum rl_frame_status {
	RL_FRAME_OK = 0,
	RL_FRAME_END,	    /* zero bytes, or fewer than a header: nothing (more) written */
	RL_FRAME_TRUNCATED, /* a plausible header whose frame runs past the data given */
	RL_FRAME_BAD_MAGIC,
	RL_FRAME_BAD_LENGTH,
	RL_FRAME_BAD_LOG_ID,
	RL_FRAME_BAD_LSN,
	RL_FRAME_BAD_CRC,
	RL_FRAME_BAD_RECORDS,
};

struct rl_frame_info {
	uint32_t frame_len; /* bytes, a multiple of 8, header included */
	uint32_t nrecs;	    /* records; for a hole, the LSNs it stands for (may be 0) */
	uint64_t first_lsn;
	uint32_t crc;
	uint32_t hole; /* 1: no records (a hole frame written by salvage, or a pad) */
	uint32_t pad;  /* 1: a pad (bytes the writer skipped), also hole = 1 */
};

static inline uint64_t rl_align_frame(uint64_t n)
{
	return (n + RL_FRAME_ALIGN - 1) & ~(uint64_t)(RL_FRAME_ALIGN - 1);
}

/* CRC32C (Castagnoli), standard init and final xor: crc("123456789") = 0xe3069283. */
uint32_t rl_crc32c(const void *data, size_t len);

void rl_seg_header_encode(const struct rl_seg_header *h, uint8_t out[RL_SEG_HEADER_BYTES]);
/* Returns 0, or -EBADMSG if `in` is not a valid header of this format. */
int rl_seg_header_decode(const uint8_t in[RL_SEG_HEADER_BYTES], struct rl_seg_header *h);

/* Frame header fields other than magic and crc; the CRC is filled in by
 * rl_frame_seal() once the records are in place. */
void rl_frame_header_fill(uint8_t *frame, uint32_t frame_len, uint32_t nrecs, uint64_t first_lsn,
			  uint64_t log_id);
/* Compute the frame's CRC over bytes [8, frame_len) and store it.  Does not write
 * the magic: the ring publishes a frame by storing the magic last. */
uint32_t rl_frame_seal(uint8_t *frame);

/* Encode a hole frame's 32-byte header: `nrecs` LSNs from `first_lsn` are lost and
 * the hole covers `frame_len` bytes (the header and whatever follows it).  Returns
 * its CRC (the chain value of the hole when it is a segment's last frame). */
uint32_t rl_hole_encode(uint8_t out[RL_FRAME_HEADER_BYTES], uint32_t frame_len, uint32_t nrecs,
			uint64_t first_lsn, uint64_t log_id);

/* Encode a pad's 32-byte header: the entry covers `frame_len` bytes (>= 32, a multiple
 * of 8) from where it starts, holds no record, and stands at LSN `lsn` (the one due
 * there).  Returns its CRC. */
uint32_t rl_pad_encode(uint8_t out[RL_FRAME_HEADER_BYTES], uint32_t frame_len, uint64_t lsn,
		       uint64_t log_id);

/* Whether the 32 bytes at `hdr` are a frame, hole or pad header of log `log_id` whose
 * first LSN is at least `lsn`: written by this log at or after that LSN (used to tell
 * a torn tail from stale bytes after it).  Checks no CRC. */
int rl_frame_is_from(const uint8_t *hdr, uint64_t log_id, uint64_t lsn);

/*
 * Check the frame at `buf`, of which `avail` bytes are readable.  When
 * `expect_lsn` is non-zero the frame must start at that LSN; `log_id` must match.
 * Fills *info on RL_FRAME_OK.  Never reads past buf + avail.
 */
enum rl_frame_status rl_frame_check(const uint8_t *buf, uint64_t avail, uint64_t expect_lsn,
				    uint64_t log_id, struct rl_frame_info *info);
/* Only the header: plausibility of the 32 header bytes (magic, length, log id,
 * LSN).  Lets a reader learn how much to read before the full check.  A hole is
 * fully checked here (its CRC covers only its header). */
enum rl_frame_status rl_frame_check_header(const uint8_t *hdr, uint64_t expect_lsn, uint64_t log_id,
					   struct rl_frame_info *info);
const char *rl_frame_status_str(enum rl_frame_status st);

/* Cursor over the records of a frame that passed rl_frame_check(). */
struct rl_record_cursor {
	uint32_t pos;	/* byte offset of the next record's length */
	uint32_t index; /* records returned so far */
};
/* Start with a zeroed cursor.  Returns 1 with (*data, *len) set, or 0 after the
 * frame's last record (padding never reads as a record; a hole has no records). */
int rl_frame_next_record(const uint8_t *frame, const struct rl_frame_info *info,
			 struct rl_record_cursor *cur, const uint8_t **data, uint32_t *len);

/* Segment file names. */
void rl_seg_name(char out[RL_SEG_NAME_LEN + 1], uint64_t first_lsn);
/* 1 and *first_lsn if `name` is a segment name, else 0. */
int rl_seg_name_parse(const char *name, uint64_t *first_lsn);

static inline void rl_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void rl_put64(uint8_t *p, uint64_t v)
{
	rl_put32(p, (uint32_t)v);
	rl_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t rl_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rl_get64(const uint8_t *p)
{
	return (uint64_t)rl_get32(p) | (uint64_t)rl_get32(p + 4) << 32;
}

/*
 * The fields of an entry header (frame, hole or pad; the layout is at the top of
 * format.c), read without checking anything: for code that holds an entry already
 * checked (the ring's frames, a frame that passed rl_frame_check) or that only
 * looks for where one might start.  No other file spells out these offsets.
 */
enum {
	RL_ENTRY_MAGIC = 0,
	RL_ENTRY_CRC = 4,
	RL_ENTRY_LEN = 8,
	RL_ENTRY_NRECS = 12,
	RL_ENTRY_FIRST_LSN = 16,
	RL_ENTRY_LOG_ID = 24,
};
static inline uint32_t rl_entry_magic(const uint8_t *e)
{
	return rl_get32(e + RL_ENTRY_MAGIC);
}
static inline uint32_t rl_entry_crc(const uint8_t *e)
{
	return rl_get32(e + RL_ENTRY_CRC);
}
static inline uint32_t rl_entry_len(const uint8_t *e)
{
	return rl_get32(e + RL_ENTRY_LEN);
}
/* LSNs the entry stands for: a frame's records, a hole's lost LSNs, 0 for a pad. */
static inline uint32_t rl_entry_nrecs(const uint8_t *e)
{
	return rl_get32(e + RL_ENTRY_NRECS);
}
static inline uint64_t rl_entry_first_lsn(const uint8_t *e)
{
	return rl_get64(e + RL_ENTRY_FIRST_LSN);
}
static inline uint64_t rl_entry_log_id(const uint8_t *e)
{
	return rl_get64(e + RL_ENTRY_LOG_ID);
}
/* Whether `magic` is a frame's, a hole's or a pad's. */
static inline int rl_is_entry_magic(uint32_t magic)
{
	return magic == RL_FRAME_MAGIC || magic == RL_HOLE_MAGIC || magic == RL_PAD_MAGIC;
}
/* Records a reader gets from the entry: a frame's nrecs, none from a hole or pad. */
static inline uint32_t rl_entry_records(const uint8_t *e)
{
	return rl_entry_magic(e) == RL_FRAME_MAGIC ? rl_entry_nrecs(e) : 0;
}
/* Encode one record (its length, then its bytes) at `p`; returns where the next goes. */
static inline uint8_t *rl_record_put(uint8_t *p, const void *data, uint32_t len)
{
	rl_put32(p, len);
	memcpy(p + 4, data, len);
	return p + 4 + len;
}

#endif
