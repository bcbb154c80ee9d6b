/*
 * Power loss at the end of the log (tests/powerloss.h): the last segment cut at
 * arbitrary offsets (in the header, at frame boundaries, mid-frame), its tail zeroed
 * and zeros appended after it, a byte flipped in one of its last frames, and whole
 * trailing segments lost; in the first three recovery modes.
 */
#include "powerloss.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- 1. the last segment cut at arbitrary offsets ---- */

static void cut_last_segment(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	uint64_t offs[1024];
	size_t n = 0;
	const uint64_t fixed[] = {0, 31, 63, HDR, HDR + 8, HDR + 32,
				  1, 7,	 32, 33,  HDR + 1, HDR + 31};
	size_t nfixed = SCN_SANITIZED ? 6 : sizeof(fixed) / sizeof(fixed[0]);
	for (size_t i = 0; i < nfixed; i++)
		offs[n++] = fixed[i];
	for (size_t i = 0; i < sg->nfr; i++) { /* at, just after and inside every frame */
		const struct frame *f = &sg->fr[i];
		const uint64_t rel[] = {f->len, 33, f->len - 1, 8};
		size_t nrel = !SCN_SANITIZED ? sizeof(rel) / sizeof(rel[0]) : i % 2 ? 1 : 2;
		for (size_t j = 0; j < nrel && n < 600; j++)
			offs[n++] = f->off + rel[j];
	}
	for (unsigned i = 0; i < iters(90); i++) /* and anywhere */
		offs[n++] = below(&w->rng, sg->size + 1);
	printf("    %s: %" PRIu64 " bytes, %zu frames; %zu cuts\n", sg->name, sg->size, sg->nfr, n);
	unsigned at_boundary = 0, torn = 0, in_header = 0;
	for (size_t k = 0; k < n; k++) {
		uint64_t c = offs[k];
		if (c > sg->size)
			continue;
		SCEN("%s cut to %" PRIu64 " of %" PRIu64 " bytes", sg->name, c, sg->size);
		struct snap d;
		snap_clone(&w->snap, &d);
		file_resize(snap_seg(&d, L), c);
		struct expect e = {.dfile = L};
		if (c < HDR) {
			e.torn_rotation = 1;
			e.dlsn = sg->first_lsn;
			in_header++;
		} else {
			uint64_t b = boundary_le(w, L, c);
			e.dlsn = lsn_at(w, L, b);
			if (b != c) {
				e.damaged = 1;
				e.doff = b;
				torn++;
			} else {
				at_boundary++;
			}
		}
		/* With an append and a reopen after the recovery for every other cut. */
		verify_mode(w, &d, &e, TOLERATE, k % 2 == 0 || !e.damaged);
		/* ABSOLUTE opens exactly at frame boundaries, refuses every other cut (but
		 * one inside a frame's header, which cannot pass for a frame). */
		int opened = verify_mode(w, &d, &e, ABSOLUTE, 1);
		struct expect se = e;
		settle_tail(w, &d, &se);
		EXPECT_INT(opened, !se.damaged && !se.torn_rotation);
		if (k % 4 == 0)
			verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
	printf("    cuts in the header %u, at a frame boundary %u, mid-frame %u\n", in_header,
	       at_boundary, torn);
	EXPECT(in_header > 0 && at_boundary > 0 && torn > 0);
}

/* ---- 2. a zeroed tail, zeros after the end ---- */

static void zeroed_tail(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	const struct file *orig = snap_seg(&w->snap, L);
	uint64_t frames_bytes = sg->size - HDR;
	unsigned count = iters(45);
	for (unsigned it = 0; it < count; it++) {
		uint64_t zero = 0, extend = 0;
		switch (it % 5) {
		case 0:
			zero = 1 + below(&w->rng, 64);
			break;
		case 1:
			zero = 1 + below(&w->rng, frames_bytes);
			break;
		case 2:
			extend = 1 + below(&w->rng, 4096);
			break;
		case 3:
			zero = 1 + below(&w->rng, 600 < frames_bytes ? 600 : frames_bytes);
			extend = 1 + below(&w->rng, 4096);
			break;
		default:
			zero = frames_bytes;
			extend = below(&w->rng, 2) * 512;
			break;
		}
		SCEN("%s: last %" PRIu64 " of %" PRIu64 " bytes zeroed, %" PRIu64
		     " zero bytes appended",
		     sg->name, zero, sg->size, extend);
		struct snap d;
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, L);
		memset(f->data + f->size - zero, 0, zero);
		file_resize(f, f->size + extend);
		/* The frames that are still intact (zero padding may have been zeroed again)
		 * are kept; the first that changed, and all after it, are not. */
		uint64_t b = sg->size;
		for (size_t i = 0; i < sg->nfr; i++)
			if (memcmp(orig->data + sg->fr[i].off, f->data + sg->fr[i].off,
				   sg->fr[i].len) != 0) {
				b = sg->fr[i].off;
				break;
			}
		struct expect e = {.dfile = L, .dlsn = lsn_at(w, L, b)};
		if (b != f->size) {
			e.damaged = 1;
			e.doff = b;
			if (b == sg->size)
				e.reason = "bytes after the last frame";
		}
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, 0);
		if (it % 3 == 0)
			verify_mode(w, &d, &e, PIT, it % 2);
		snap_free(&d);
	}
	/* The whole last segment zeroed, header included, and longer than a header: not a
	 * torn rotation by the rule in src/recovery.c (at most a header's worth of bytes),
	 * so damage outside the frames: refused by default, dropped by point-in-time. */
	SCEN("%s wholly zeroed (%" PRIu64 " bytes)", sg->name, sg->size);
	struct snap d;
	snap_clone(&w->snap, &d);
	struct file *f = snap_seg(&d, L);
	memset(f->data, 0, f->size);
	struct expect e = {.damaged = 1,
			   .dfile = L,
			   .doff = 0,
			   .dlsn = sg->first_lsn,
			   .reason = "invalid segment header"};
	for (uint32_t m = 0; m < 3; m++)
		verify_mode(w, &d, &e, m, m == PIT);
	/* ... while the same file with at most 64 (zero) bytes is a torn rotation. */
	for (uint64_t len = 0; len <= HDR; len += 32) {
		SCEN("%s zeroed and %" PRIu64 " bytes long", sg->name, len);
		file_resize(f, len);
		struct expect t = {.torn_rotation = 1, .dfile = L, .dlsn = sg->first_lsn};
		for (uint32_t m = 0; m < 3; m++)
			verify_mode(w, &d, &t, m, m != ABSOLUTE);
	}
	snap_free(&d);
}

/* ---- 3. a flipped byte in one of the last frames ---- */

static void flipped_byte_near_the_end(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	unsigned count = iters(45);
	size_t last_k = sg->nfr < 4 ? sg->nfr : 4;
	for (unsigned it = 0; it < count; it++) {
		const struct frame *fr = &sg->fr[sg->nfr - 1 - below(&w->rng, last_k)];
		/* The header fields, the first record's length, or anywhere in the frame. */
		uint64_t rel = it % 3 == 0 ? below(&w->rng, 36) : below(&w->rng, fr->len);
		uint8_t x = (uint8_t)(1 + below(&w->rng, 255));
		SCEN("%s: byte %" PRIu64 " (frame at %" PRIu64 ", +%" PRIu64 ") ^= 0x%02x",
		     sg->name, fr->off + rel, fr->off, rel, x);
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_seg(&d, L)->data[fr->off + rel] ^= x;
		struct expect e = {
		    .damaged = 1, .dfile = L, .doff = fr->off, .dlsn = w->b[fr->batch].first_lsn};
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, 0);
		if (it % 3 == 1)
			verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
}

/* ---- 4. whole trailing segments lost ---- */

static void trailing_segments_dropped(void **state)
{
	struct world *w = *state;
	for (size_t k = 1; k < w->nseg; k++) {
		size_t left = w->nseg - k;
		SCEN("last %zu of %zu segments deleted", k, w->nseg);
		struct snap d;
		snap_clone(&w->snap, &d);
		for (size_t j = 0; j < k; j++)
			snap_remove(&d, (size_t)snap_find(&d, w->seg[w->nseg - 1 - j].name));
		/* Nothing marks a segment as the last one: every mode opens with the prefix. */
		struct expect e = {.dlsn = w->seg[left].first_lsn};
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, k % 2);
		verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(cut_last_segment, pl_setup, pl_teardown),
	    cmocka_unit_test_setup_teardown(zeroed_tail, pl_setup, pl_teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_near_the_end, pl_setup, pl_teardown),
	    cmocka_unit_test_setup_teardown(trailing_segments_dropped, pl_setup, pl_teardown),
	};
	return pl_run("test_powerloss_tail", tests, sizeof(tests) / sizeof(tests[0]));
}
