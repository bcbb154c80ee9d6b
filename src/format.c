/*
 * The ringlog on-disk format (version 2; version 1 is the same without pads, and is
 * read as well).  All integers are little-endian.
 *
 * A log is a directory.  Its segments are files named by the LSN of their first
 * record as 20 decimal digits plus ".rlog" ("00000000000000000001.rlog").  Other
 * files (the LOCK file, pool files being prepared or ready for reuse) are ignored by
 * recovery and readers.
 *
 * Segment = a 64-byte header, then entries back to back, each a multiple of 8 bytes:
 * frames (one batch each), holes (LSNs lost to damage) and pads (bytes skipped).
 *
 *   Segment header
 *   off size field
 *     0    4 magic          "RLSG" (0x47534c52)
 *     4    2 version        2 (1: written before pads existed)
 *     6    2 header_bytes   64
 *     8    8 first_lsn      LSN of the first record in this segment (= the name)
 *    16    8 log_id         random, chosen when the log was created; every
 *                           segment and frame of the log carries it
 *    24    8 prev_last_lsn  last LSN of the previous segment (first_lsn - 1)
 *    32    4 prev_tail_crc  crc field of the previous segment's last entry, 0 if none
 *    36   24 reserved       zero
 *    60    4 header_crc     CRC32C of bytes 0..59
 *
 *   Frame (one batch)
 *   off size field
 *     0    4 magic          "RLFR" (0x52464c52)
 *     4    4 crc            CRC32C of bytes 8 .. frame_len-1 (rest of header,
 *                           records and padding)
 *     8    4 frame_len      total bytes of the frame, header included, multiple of 8
 *    12    4 nrecs          records in the batch, >= 1
 *    16    8 first_lsn      LSN of the batch's first record
 *    24    8 log_id         the segment header's log_id
 *    32    . records        nrecs times { u32 len; u8 data[len] }, then 0..7 zero
 *                           bytes of padding up to frame_len
 *
 *   Hole (LSNs lost to damage; written only by salvage recovery) and
 *   pad (bytes the writer skipped to align its direct I/O; no LSN)
 *   off size field
 *     0    4 magic          hole "RLHL" (0x4c484c52), pad "RLPD" (0x44504c52)
 *     4    4 crc            CRC32C of bytes 8 .. 31 (the header only)
 *     8    4 frame_len      bytes the entry covers, header included: a multiple
 *                           of 8, at least 32
 *    12    4 nrecs          hole: LSNs it stands for (0 or more), no record of
 *                           them survives; pad: 0
 *    16    8 first_lsn      the first of them; for a pad, the LSN due there
 *    24    8 log_id         the segment header's log_id
 *    32    . whatever was there; never read
 *
 * A hole or pad is valid if its magic matches, frame_len is a multiple of 8 and at
 * least 32, off + frame_len <= the file size, log_id and first_lsn obey the same rules
 * as a frame's (nrecs may be 0; a pad's must be 0), and the CRC matches.  It advances
 * the expected LSN by nrecs like a frame, and its CRC field chains like a frame's.
 *
 * A frame at offset `off` of a segment is valid if and only if: its magic matches;
 * 32 + 4 * nrecs <= frame_len, frame_len is a multiple of 8, at most RL_FRAME_MAX_BYTES
 * and off + frame_len <= the file size; log_id equals the segment's; first_lsn is not
 * 0, first_lsn + nrecs does not pass 2^64 - 1, and first_lsn equals the LSN that
 * follows the previous frame (or the segment's first_lsn); the
 * CRC matches; and the record lengths end inside the frame with fewer than 8 bytes,
 * all zero, left over.  Stale bytes from another log or an older place in this log
 * fail the log_id or LSN test even when their CRC is intact.
 */
#include "format.h"

#include "ringlog.h"

#include <errno.h>
#include <inttypes.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <string.h>

/* The public header states the same layout (RINGLOG_FRAME_BYTES, struct ringlog_frame
 * for ringlog_append_frame): it must not drift from this one. */
_Static_assert(RL_FRAME_HEADER_BYTES == RINGLOG_FRAME_HEADER_BYTES,
	       "ringlog.h and format.h disagree on the frame header size");
_Static_assert(RINGLOG_FRAME_BYTES(1, 1) == RL_FRAME_HEADER_BYTES + 8 &&
		   RINGLOG_FRAME_BYTES(2, 8) == RL_FRAME_HEADER_BYTES + 16,
	       "RINGLOG_FRAME_BYTES does not compute what rl_frame_header_fill lays out");
_Static_assert(RL_ENTRY_LOG_ID + 8 == RL_FRAME_HEADER_BYTES,
	       "the entry header's fields do not fill its 32 bytes");

static uint32_t crc32c_extend(uint32_t raw, const void *data, size_t len)
{
	/* ISA-L takes an int length; feed huge buffers in pieces. */
	const unsigned char *p = data;
	while (len > 0) {
		int n = len > (1u << 30) ? (1 << 30) : (int)len;
		raw = crc32_iscsi((unsigned char *)p, n, raw);
		p += n;
		len -= (size_t)n;
	}
	return raw;
}

uint32_t rl_crc32c(const void *data, size_t len)
{
	return crc32c_extend(0xffffffffu, data, len) ^ 0xffffffffu;
}

void rl_seg_header_encode(const struct rl_seg_header *h, uint8_t out[RL_SEG_HEADER_BYTES])
{
	memset(out, 0, RL_SEG_HEADER_BYTES);
	rl_put32(out + 0, RL_SEG_MAGIC);
	out[4] = RL_FORMAT_VERSION & 0xff;
	out[5] = RL_FORMAT_VERSION >> 8;
	out[6] = RL_SEG_HEADER_BYTES & 0xff;
	out[7] = RL_SEG_HEADER_BYTES >> 8;
	rl_put64(out + 8, h->first_lsn);
	rl_put64(out + 16, h->log_id);
	rl_put64(out + 24, h->prev_last_lsn);
	rl_put32(out + 32, h->prev_tail_crc);
	rl_put32(out + 60, rl_crc32c(out, 60));
}

int rl_seg_header_decode(const uint8_t in[RL_SEG_HEADER_BYTES], struct rl_seg_header *h)
{
	if (rl_get32(in) != RL_SEG_MAGIC)
		return -EBADMSG;
	unsigned version = in[4] | in[5] << 8;
	if (version < 1 || version > RL_FORMAT_VERSION || (in[6] | in[7] << 8) != RL_SEG_HEADER_BYTES)
		return -EBADMSG;
	if (rl_get32(in + 60) != rl_crc32c(in, 60))
		return -EBADMSG;
	h->first_lsn = rl_get64(in + 8);
	h->log_id = rl_get64(in + 16);
	h->prev_last_lsn = rl_get64(in + 24);
	h->prev_tail_crc = rl_get32(in + 32);
	if (h->first_lsn == 0 || h->first_lsn == UINT64_MAX || h->prev_last_lsn != h->first_lsn - 1)
		return -EBADMSG;
	return 0;
}

void rl_frame_header_fill(uint8_t *frame, uint32_t frame_len, uint32_t nrecs, uint64_t first_lsn,
			  uint64_t log_id)
{
	rl_put32(frame + RL_ENTRY_LEN, frame_len);
	rl_put32(frame + RL_ENTRY_NRECS, nrecs);
	rl_put64(frame + RL_ENTRY_FIRST_LSN, first_lsn);
	rl_put64(frame + RL_ENTRY_LOG_ID, log_id);
}

uint32_t rl_frame_seal(uint8_t *frame)
{
	uint32_t len = rl_entry_len(frame);
	uint32_t crc = rl_crc32c(frame + RL_ENTRY_LEN, len - RL_ENTRY_LEN);
	rl_put32(frame + RL_ENTRY_CRC, crc);
	return crc;
}

static uint32_t skip_encode(uint8_t out[RL_FRAME_HEADER_BYTES], uint32_t magic, uint32_t frame_len,
			    uint32_t nrecs, uint64_t first_lsn, uint64_t log_id)
{
	rl_put32(out + RL_ENTRY_MAGIC, magic);
	rl_frame_header_fill(out, frame_len, nrecs, first_lsn, log_id);
	uint32_t crc = rl_crc32c(out + RL_ENTRY_LEN, RL_FRAME_HEADER_BYTES - RL_ENTRY_LEN);
	rl_put32(out + RL_ENTRY_CRC, crc);
	return crc;
}

uint32_t rl_hole_encode(uint8_t out[RL_FRAME_HEADER_BYTES], uint32_t frame_len, uint32_t nrecs,
			uint64_t first_lsn, uint64_t log_id)
{
	return skip_encode(out, RL_HOLE_MAGIC, frame_len, nrecs, first_lsn, log_id);
}

uint32_t rl_pad_encode(uint8_t out[RL_FRAME_HEADER_BYTES], uint32_t frame_len, uint64_t lsn,
		       uint64_t log_id)
{
	return skip_encode(out, RL_PAD_MAGIC, frame_len, 0, lsn, log_id);
}

int rl_frame_is_from(const uint8_t *hdr, uint64_t log_id, uint64_t lsn)
{
	return rl_is_entry_magic(rl_entry_magic(hdr)) && rl_entry_log_id(hdr) == log_id &&
	       rl_entry_first_lsn(hdr) >= lsn;
}

/* LSN rules shared by frames and holes. */
static enum rl_frame_status check_lsn(const struct rl_frame_info *info, uint64_t expect_lsn)
{
	/* LSN 0 is never used, and the records' LSNs may not wrap past 2^64 - 1. */
	if (info->first_lsn == 0 || info->first_lsn > UINT64_MAX - info->nrecs)
		return RL_FRAME_BAD_LSN;
	if (expect_lsn != 0 && info->first_lsn != expect_lsn)
		return RL_FRAME_BAD_LSN;
	return RL_FRAME_OK;
}

static void read_header(const uint8_t *hdr, struct rl_frame_info *info)
{
	info->crc = rl_entry_crc(hdr);
	info->frame_len = rl_entry_len(hdr);
	info->nrecs = rl_entry_nrecs(hdr);
	info->first_lsn = rl_entry_first_lsn(hdr);
	info->hole = 0;
	info->pad = 0;
}

static enum rl_frame_status check_hole(const uint8_t *hdr, uint64_t expect_lsn, uint64_t log_id,
				       struct rl_frame_info *info)
{
	read_header(hdr, info);
	info->hole = 1;
	info->pad = rl_entry_magic(hdr) == RL_PAD_MAGIC;
	if (info->frame_len % RL_FRAME_ALIGN != 0 || info->frame_len < RL_FRAME_HEADER_BYTES ||
	    (info->pad && info->nrecs != 0))
		return RL_FRAME_BAD_LENGTH;
	if (rl_entry_log_id(hdr) != log_id)
		return RL_FRAME_BAD_LOG_ID;
	enum rl_frame_status st = check_lsn(info, expect_lsn);
	if (st != RL_FRAME_OK)
		return st;
	if (rl_crc32c(hdr + RL_ENTRY_LEN, RL_FRAME_HEADER_BYTES - RL_ENTRY_LEN) != info->crc)
		return RL_FRAME_BAD_CRC;
	return RL_FRAME_OK;
}

enum rl_frame_status rl_frame_check_header(const uint8_t *hdr, uint64_t expect_lsn, uint64_t log_id,
					   struct rl_frame_info *info)
{
	uint32_t magic = rl_entry_magic(hdr);
	if (magic == RL_HOLE_MAGIC || magic == RL_PAD_MAGIC)
		return check_hole(hdr, expect_lsn, log_id, info);
	if (magic != RL_FRAME_MAGIC) {
		/* Zeroes where a frame would start: nothing was written here. */
		static const uint8_t zero[RL_FRAME_HEADER_BYTES];
		return memcmp(hdr, zero, sizeof(zero)) == 0 ? RL_FRAME_END : RL_FRAME_BAD_MAGIC;
	}
	read_header(hdr, info);
	if (info->frame_len % RL_FRAME_ALIGN != 0 || info->frame_len > RL_FRAME_MAX_BYTES ||
	    info->nrecs == 0 ||
	    (uint64_t)RL_FRAME_HEADER_BYTES + 4ull * info->nrecs > info->frame_len)
		return RL_FRAME_BAD_LENGTH;
	if (rl_entry_log_id(hdr) != log_id)
		return RL_FRAME_BAD_LOG_ID;
	return check_lsn(info, expect_lsn);
}

enum rl_frame_status rl_frame_check(const uint8_t *buf, uint64_t avail, uint64_t expect_lsn,
				    uint64_t log_id, struct rl_frame_info *info)
{
	if (avail < RL_FRAME_HEADER_BYTES) {
		for (uint64_t i = 0; i < avail; i++)
			if (buf[i] != 0)
				return RL_FRAME_TRUNCATED;
		return RL_FRAME_END;
	}
	enum rl_frame_status st = rl_frame_check_header(buf, expect_lsn, log_id, info);
	if (st != RL_FRAME_OK)
		return st;
	if (info->frame_len > avail)
		return RL_FRAME_TRUNCATED;
	if (info->hole)
		return RL_FRAME_OK; /* its CRC covers the header only, checked above */
	if (rl_crc32c(buf + RL_ENTRY_LEN, info->frame_len - RL_ENTRY_LEN) != info->crc)
		return RL_FRAME_BAD_CRC;
	/* The record lengths must tile the frame exactly (up to zero padding). */
	uint64_t pos = RL_FRAME_HEADER_BYTES;
	for (uint32_t i = 0; i < info->nrecs; i++) {
		if (pos + 4 > info->frame_len)
			return RL_FRAME_BAD_RECORDS;
		pos += 4 + (uint64_t)rl_get32(buf + pos);
		if (pos > info->frame_len)
			return RL_FRAME_BAD_RECORDS;
	}
	if (info->frame_len - pos >= RL_FRAME_ALIGN)
		return RL_FRAME_BAD_RECORDS;
	for (; pos < info->frame_len; pos++)
		if (buf[pos] != 0)
			return RL_FRAME_BAD_RECORDS;
	return RL_FRAME_OK;
}

int rl_frame_next_record(const uint8_t *frame, const struct rl_frame_info *info,
			 struct rl_record_cursor *cur, const uint8_t **data, uint32_t *len)
{
	if (info->hole || cur->index >= info->nrecs)
		return 0;
	if (cur->pos == 0)
		cur->pos = RL_FRAME_HEADER_BYTES;
	uint32_t n = rl_get32(frame + cur->pos);
	*data = frame + cur->pos + 4;
	*len = n;
	cur->pos += 4 + n;
	cur->index++;
	return 1;
}

const char *rl_frame_status_str(enum rl_frame_status st)
{
	switch (st) {
	case RL_FRAME_OK:
		return "valid frame";
	case RL_FRAME_END:
		return "end of data (zeroes or nothing)";
	case RL_FRAME_TRUNCATED:
		return "frame runs past the end of the file (torn write)";
	case RL_FRAME_BAD_MAGIC:
		return "bad frame magic";
	case RL_FRAME_BAD_LENGTH:
		return "implausible frame length or record count";
	case RL_FRAME_BAD_LOG_ID:
		return "frame belongs to another log (log id mismatch)";
	case RL_FRAME_BAD_LSN:
		return "frame LSN does not follow the previous frame";
	case RL_FRAME_BAD_CRC:
		return "frame checksum mismatch";
	case RL_FRAME_BAD_RECORDS:
		return "record lengths do not fit the frame";
	}
	return "unknown frame status";
}

void rl_seg_name(char out[RL_SEG_NAME_LEN + 1], uint64_t first_lsn)
{
	snprintf(out, RL_SEG_NAME_LEN + 1, "%020" PRIu64 RL_SEG_SUFFIX, first_lsn);
}

int rl_seg_name_parse(const char *name, uint64_t *first_lsn)
{
	if (strlen(name) != RL_SEG_NAME_LEN || strcmp(name + 20, RL_SEG_SUFFIX) != 0)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	/* Neither 0 nor 2^64 - 1 can start a segment (rl_seg_header_decode agrees). */
	if (v == 0 || v == UINT64_MAX)
		return 0;
	*first_lsn = v;
	return 1;
}
