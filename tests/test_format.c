/* On-disk format: CRC, segment header, frame validity rule, segment names. */
#include "testutil.h"

#include "format.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void crc32c_known_vector(void **state)
{
	(void)state;
	assert_int_equal(rl_crc32c("123456789", 9), 0xe3069283u);
	assert_int_equal(rl_crc32c("", 0), 0);
}

static void segment_header_round_trip_and_damage(void **state)
{
	(void)state;
	struct rl_seg_header h = {.first_lsn = 42,
				  .log_id = 0x1122334455667788ull,
				  .prev_last_lsn = 41,
				  .prev_tail_crc = 0xdeadbeef},
			     d;
	uint8_t buf[RL_SEG_HEADER_BYTES];
	rl_seg_header_encode(&h, buf);
	assert_memory_equal(buf, "RLSG", 4);
	assert_int_equal(rl_seg_header_decode(buf, &d), 0);
	assert_int_equal(d.first_lsn, 42);
	assert_int_equal(d.log_id, h.log_id);
	assert_int_equal(d.prev_last_lsn, 41);
	assert_int_equal(d.prev_tail_crc, 0xdeadbeef);
	for (unsigned i = 0; i < sizeof(buf); i++) {
		uint8_t copy[RL_SEG_HEADER_BYTES];
		memcpy(copy, buf, sizeof(copy));
		copy[i] ^= 0x10;
		assert_int_equal(rl_seg_header_decode(copy, &d), -EBADMSG);
	}
	h.prev_last_lsn = 7; /* must be first_lsn - 1 */
	rl_seg_header_encode(&h, buf);
	assert_int_equal(rl_seg_header_decode(buf, &d), -EBADMSG);
}

/* Build a frame as the ring does: header, records, zero padding, seal, magic. */
static uint32_t build(uint8_t *f, uint64_t lsn, uint64_t log_id, unsigned nrecs,
		      const unsigned *lens)
{
	uint32_t pos = RL_FRAME_HEADER_BYTES;
	for (unsigned i = 0; i < nrecs; i++) {
		rl_put32(f + pos, lens[i]);
		for (unsigned k = 0; k < lens[i]; k++)
			f[pos + 4 + k] = (uint8_t)(i * 13 + k);
		pos += 4 + lens[i];
	}
	uint32_t len = (uint32_t)rl_align_frame(pos);
	memset(f + pos, 0, len - pos);
	rl_frame_header_fill(f, len, nrecs, lsn, log_id);
	rl_frame_seal(f);
	rl_put32(f, RL_FRAME_MAGIC);
	return len;
}

static void frame_valid_and_records(void **state)
{
	(void)state;
	uint8_t f[256];
	unsigned lens[] = {5, 0, 17};
	uint32_t len = build(f, 100, 9, 3, lens);
	assert_int_equal(len % 8, 0);
	assert_int_equal(len, RINGLOG_FRAME_BYTES(3, 22));
	struct rl_frame_info info;
	assert_int_equal(rl_frame_check(f, len, 100, 9, &info), RL_FRAME_OK);
	assert_int_equal(info.nrecs, 3);
	assert_int_equal(info.first_lsn, 100);
	assert_int_equal(rl_frame_check(f, len, 0, 9, &info), RL_FRAME_OK);
	struct rl_record_cursor pos = {0, 0};
	uint32_t n;
	const uint8_t *d;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(rl_frame_next_record(f, &info, &pos, &d, &n), 1);
		assert_int_equal(n, lens[i]);
		if (n)
			assert_int_equal(d[n - 1], (uint8_t)(i * 13 + n - 1));
	}
	assert_int_equal(rl_frame_next_record(f, &info, &pos, &d, &n), 0);
}

static void every_flipped_bit_is_detected(void **state)
{
	(void)state;
	uint8_t f[256], copy[256];
	unsigned lens[] = {40, 3};
	uint32_t len = build(f, 7, 1234, 2, lens);
	struct rl_frame_info info;
	for (uint32_t i = 0; i < len; i++)
		for (int b = 0; b < 8; b++) {
			memcpy(copy, f, len);
			copy[i] ^= (uint8_t)(1u << b);
			assert_int_not_equal(rl_frame_check(copy, len, 7, 1234, &info),
					     RL_FRAME_OK);
		}
}

static void stale_and_truncated_frames(void **state)
{
	(void)state;
	uint8_t f[256];
	unsigned lens[] = {30};
	uint32_t len = build(f, 50, 77, 1, lens);
	struct rl_frame_info info;
	/* An intact frame from another log, or from another place in this log. */
	assert_int_equal(rl_frame_check(f, len, 50, 78, &info), RL_FRAME_BAD_LOG_ID);
	assert_int_equal(rl_frame_check(f, len, 49, 77, &info), RL_FRAME_BAD_LSN);
	/* LSNs that would wrap past 2^64 - 1, or start at 0, are never valid. */
	uint8_t w[256];
	unsigned two[] = {1, 1};
	uint32_t wl = build(w, UINT64_MAX, 77, 2, two);
	assert_int_equal(rl_frame_check(w, wl, 0, 77, &info), RL_FRAME_BAD_LSN);
	wl = build(w, 0, 77, 2, two);
	assert_int_equal(rl_frame_check(w, wl, 0, 77, &info), RL_FRAME_BAD_LSN);
	/* Torn: fewer bytes than the frame. */
	assert_int_equal(rl_frame_check(f, len - 1, 50, 77, &info), RL_FRAME_TRUNCATED);
	assert_int_equal(rl_frame_check(f, 10, 50, 77, &info), RL_FRAME_TRUNCATED);
	/* Zeroes, or nothing: the end. */
	uint8_t zero[64] = {0};
	assert_int_equal(rl_frame_check(zero, sizeof(zero), 50, 77, &info), RL_FRAME_END);
	assert_int_equal(rl_frame_check(zero, 5, 50, 77, &info), RL_FRAME_END);
	assert_int_equal(rl_frame_check(zero, 0, 50, 77, &info), RL_FRAME_END);
	/* Garbage is not the end. */
	uint8_t junk[64];
	memset(junk, 0xa5, sizeof(junk));
	assert_int_equal(rl_frame_check(junk, sizeof(junk), 50, 77, &info), RL_FRAME_BAD_MAGIC);
}

static void implausible_lengths_rejected_before_reading(void **state)
{
	(void)state;
	uint8_t f[64];
	unsigned lens[] = {8};
	build(f, 1, 1, 1, lens);
	struct rl_frame_info info;
	/* Huge length: rejected from the header alone (no allocation, no read). */
	rl_put32(f + 8, 0xfffffff8u);
	assert_int_equal(rl_frame_check_header(f, 1, 1, &info), RL_FRAME_BAD_LENGTH);
	rl_put32(f + 8, 45); /* not a multiple of 8 */
	assert_int_equal(rl_frame_check_header(f, 1, 1, &info), RL_FRAME_BAD_LENGTH);
	rl_put32(f + 8, 48);
	rl_put32(f + 12, 0); /* no records */
	assert_int_equal(rl_frame_check_header(f, 1, 1, &info), RL_FRAME_BAD_LENGTH);
	rl_put32(f + 12, 5); /* 5 lengths cannot fit in 48 bytes */
	assert_int_equal(rl_frame_check_header(f, 1, 1, &info), RL_FRAME_BAD_LENGTH);
}

static void record_lengths_must_tile_the_frame(void **state)
{
	(void)state;
	uint8_t f[128];
	unsigned lens[] = {8};
	uint32_t len = build(f, 1, 1, 1, lens); /* 32 + 4 + 8 = 44 -> 48 */
	struct rl_frame_info info;
	rl_put32(f + 32, 100); /* record runs past the frame, CRC made valid again */
	rl_frame_seal(f);
	assert_int_equal(rl_frame_check(f, len, 1, 1, &info), RL_FRAME_BAD_RECORDS);
	rl_put32(f + 32, 0); /* leaves 12 bytes unused: more than padding */
	rl_frame_seal(f);
	assert_int_equal(rl_frame_check(f, len, 1, 1, &info), RL_FRAME_BAD_RECORDS);
	rl_put32(f + 32, 8); /* valid again, then dirty the padding */
	f[46] = 1;
	rl_frame_seal(f);
	assert_int_equal(rl_frame_check(f, len, 1, 1, &info), RL_FRAME_BAD_RECORDS);
}

static void segment_names(void **state)
{
	(void)state;
	char name[RL_SEG_NAME_LEN + 1];
	uint64_t v;
	rl_seg_name(name, 1);
	assert_string_equal(name, "00000000000000000001.rlog");
	assert_int_equal(rl_seg_name_parse(name, &v), 1);
	assert_int_equal(v, 1);
	rl_seg_name(name, UINT64_MAX - 1);
	assert_int_equal(rl_seg_name_parse(name, &v), 1);
	assert_true(v == UINT64_MAX - 1);
	rl_seg_name(name, UINT64_MAX); /* no header can start there: not a segment */
	assert_int_equal(rl_seg_name_parse(name, &v), 0);
	const char *bad[] = {"1.rlog",
			     "000000000000000000001.rlog",
			     "0000000000000000000a.rlog",
			     "00000000000000000000.rlog",
			     "99999999999999999999.rlog",
			     "00000000000000000001.rlo",
			     "00000000000000000001.rlog.tmp",
			     "LOCK"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rl_seg_name_parse(bad[i], &v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(crc32c_known_vector),
	    cmocka_unit_test(segment_header_round_trip_and_damage),
	    cmocka_unit_test(frame_valid_and_records),
	    cmocka_unit_test(every_flipped_bit_is_detected),
	    cmocka_unit_test(stale_and_truncated_frames),
	    cmocka_unit_test(implausible_lengths_rejected_before_reading),
	    cmocka_unit_test(record_lengths_must_tile_the_frame),
	    cmocka_unit_test(segment_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
