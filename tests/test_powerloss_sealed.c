/*
 * Damage in sealed segments (tests/powerloss.h): a flipped byte, a truncation, bytes
 * after the last frame, a deleted middle segment, a same-named segment of another
 * log; and a point-in-time repair interrupted between its steps.
 */
#include "powerloss.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- 5. damage in sealed segments ---- */

/* Damage in sealed segment s, as placed by the caller: refused by TOLERATE_TAIL and
 * ABSOLUTE (nothing changed), repaired by POINT_IN_TIME. */
static void sealed_case(struct world *w, const struct snap *d, const struct expect *e)
{
	EXPECT_INT(verify_mode(w, d, e, TOLERATE, 0), 0);
	EXPECT_INT(verify_mode(w, d, e, ABSOLUTE, 0), 0);
	verify_mode(w, d, e, PIT, 1);
}


static void sealed_segment_damage(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;

	/* A flipped byte anywhere in a sealed segment (its header now and then). */
	for (unsigned it = 0; it < iters(30); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t off =
		    it % 6 == 0 ? below(&w->rng, HDR) : sg->size / 4 + below(&w->rng, sg->size / 2);
		uint8_t x = (uint8_t)(1 + below(&w->rng, 255));
		SCEN("sealed %s: byte %" PRIu64 " of %" PRIu64 " ^= 0x%02x", sg->name, off,
		     sg->size, x);
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_seg(&d, s)->data[off] ^= x;
		struct expect e = expect_at_byte(w, s, off);
		sealed_case(w, &d, &e);
		snap_free(&d);
	}
	/* The first segment's header: even point-in-time has nothing to keep. */
	SCEN("sealed %s: header byte 9 flipped", w->seg[0].name);
	struct snap d;
	snap_clone(&w->snap, &d);
	snap_seg(&d, 0)->data[9] ^= 0x40;
	struct expect e0 = expect_at_byte(w, 0, 9);
	EXPECT_INT(verify_mode(w, &d, &e0, PIT, 0), 0);
	snap_free(&d);

	/* Truncated: inside its header, at a frame boundary, mid-frame. */
	for (unsigned it = 0; it < iters(24); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t c;
		if (it % 4 == 0)
			c = below(&w->rng, HDR);
		else if (it % 4 == 1 && sg->nfr > 0)
			c = sg->fr[below(&w->rng, sg->nfr)].off; /* a boundary, HDR included */
		else
			c = HDR + below(&w->rng, sg->size - HDR);
		SCEN("sealed %s truncated to %" PRIu64 " of %" PRIu64 " bytes", sg->name, c,
		     sg->size);
		snap_clone(&w->snap, &d);
		file_resize(snap_seg(&d, s), c);
		struct expect e = {.damaged = 1, .dfile = s};
		if (c < HDR) {
			e.dlsn = sg->first_lsn;
			e.reason = "invalid segment header";
		} else {
			uint64_t b = boundary_le(w, s, c);
			e.dlsn = lsn_at(w, s, b);
			if (b != c) {
				e.doff = b;
			} else { /* the segment is valid: the next one does not follow it */
				e.dfile = s + 1;
				e.reason = "missing or truncated";
			}
		}
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* Bytes after a sealed segment's last frame (zeros, then garbage). */
	for (unsigned it = 0; it < iters(6); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t extra = 1 + below(&w->rng, 300);
		SCEN("sealed %s: %" PRIu64 " %s bytes appended", sg->name, extra,
		     it % 2 ? "garbage" : "zero");
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, s);
		file_resize(f, f->size + extra);
		for (uint64_t i = 0; it % 2 && i < extra; i++)
			f->data[sg->size + i] = (uint8_t)(0x80 | (i * 7));
		struct expect e = {
		    .damaged = 1, .dfile = s, .doff = sg->size, .dlsn = lsn_at(w, s, sg->size)};
		if (it % 2 == 0)
			e.reason = "bytes after the last frame";
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* Under sanitizers, only the first, a middle and the last candidate segment. */
#define SOME(s, first, last)                                                                       \
	(!SCN_SANITIZED || (s) == (first) || (s) == (last) || (s) == ((first) + (last)) / 2)
	/* A middle segment deleted: its successor does not chain. */
	for (size_t s = 1; s < L; s++) {
		if (!SOME(s, 1, L - 1))
			continue;
		SCEN("middle segment %s deleted", w->seg[s].name);
		snap_clone(&w->snap, &d);
		snap_remove(&d, (size_t)snap_find(&d, w->seg[s].name));
		struct expect e = {.damaged = 1,
				   .dfile = s,
				   .doff = 0,
				   .dlsn = w->seg[s].first_lsn,
				   .reason = "missing"};
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* A segment replaced by the same-named segment of another log written with the
	 * same batches: same names, sizes and records; another log id. */
	SCEN("building another log with the same batches");
	write_batches(w, w->other, 0, w->nb);
	struct snap other;
	snap_load(w->other, &other, 0);
	for (size_t s = 1; s <= L; s++) {
		if (!SOME(s, 1, L))
			continue;
		ssize_t p = snap_find(&other, w->seg[s].name);
		EXPECT(p >= 0);
		EXPECT_U64(other.f[p].size, w->seg[s].size);
		EXPECT(lo_get64(other.f[p].data + 16) != w->log_id);
		SCEN("%s replaced by the same-named segment of another log", w->seg[s].name);
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, s);
		free(f->data);
		f->data = malloc(other.f[p].size);
		assert_non_null(f->data);
		memcpy(f->data, other.f[p].data, other.f[p].size);
		struct expect e = {.damaged = 1,
				   .dfile = s,
				   .doff = 0,
				   .dlsn = w->seg[s].first_lsn,
				   .reason = "another log"};
		sealed_case(w, &d, &e);
		snap_free(&d);
	}
	snap_free(&other);
}

/* A point-in-time repair interrupted after any of its steps (cut the damaged segment,
 * then remove the later ones newest first): the same mode finishes it with the same
 * result, and the default mode refuses until it has. */
static void interrupted_point_in_time_repair(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	for (unsigned it = 0; it < iters(4); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		const struct frame *fr = &sg->fr[below(&w->rng, sg->nfr)];
		uint64_t dlsn = w->b[fr->batch].first_lsn;
		size_t later = L - s;
		for (size_t removed = 0; removed <= later; removed++) {
			SCEN("point-in-time repair of %s at %" PRIu64 " interrupted: cut done, "
			     "%zu of %zu later segments removed",
			     sg->name, fr->off, removed, later);
			struct snap d;
			snap_clone(&w->snap, &d);
			file_resize(snap_seg(&d, s), fr->off);
			for (size_t j = 0; j < removed; j++)
				snap_remove(&d, (size_t)snap_find(&d, w->seg[L - j].name));
			struct expect e = {.dlsn = dlsn};
			if (removed < later) {
				e.damaged = 1;
				e.dfile = s + 1;
				e.reason = "missing or truncated";
				EXPECT_INT(verify_mode(w, &d, &e, TOLERATE, 0), 0);
			} else {
				EXPECT_INT(verify_mode(w, &d, &e, TOLERATE, 0), 1);
			}
			verify_mode(w, &d, &e, PIT, 1);
			snap_free(&d);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(sealed_segment_damage, pl_setup, pl_teardown),
	    cmocka_unit_test_setup_teardown(interrupted_point_in_time_repair, pl_setup, pl_teardown),
	};
	return pl_run("test_powerloss_sealed", tests, sizeof(tests) / sizeof(tests[0]));
}
