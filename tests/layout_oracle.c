/* The tests' reading of the on-disk format.  Contract in layout_oracle.h. */
#include "layout_oracle.h"

uint32_t lo_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t lo_get64(const uint8_t *p)
{
	return (uint64_t)lo_get32(p) | (uint64_t)lo_get32(p + 4) << 32;
}

void lo_entry_read(const uint8_t *p, struct lo_entry *e)
{
	e->magic = lo_get32(p);
	e->crc = lo_get32(p + 4);
	e->len = lo_get32(p + 8);
	e->nrecs = lo_get32(p + 12);
	e->first_lsn = lo_get64(p + 16);
	e->log_id = lo_get64(p + 24);
}

void lo_seg_header_read(const uint8_t *p, struct lo_seg_header *h)
{
	h->magic = lo_get32(p);
	h->first_lsn = lo_get64(p + 8);
	h->log_id = lo_get64(p + 16);
	h->prev_last_lsn = lo_get64(p + 24);
	h->prev_tail_crc = lo_get32(p + 32);
}

uint64_t lo_torn_end(const uint8_t *data, uint64_t size, uint64_t end, uint64_t log_id,
		     uint64_t lsn)
{
	uint64_t torn = 0;
	for (uint64_t x = end; x + LO_ENTRY_HEADER <= size; x += 8) {
		struct lo_entry e;
		lo_entry_read(data + x, &e);
		if ((e.magic != LO_FRAME_MAGIC && e.magic != LO_HOLE_MAGIC &&
		     e.magic != LO_PAD_MAGIC) ||
		    e.log_id != log_id || e.first_lsn < lsn)
			continue;
		uint64_t len = e.len < LO_ENTRY_HEADER || e.len > LO_FRAME_MAX ? LO_ENTRY_HEADER
										: e.len;
		uint64_t stop = x + len < size ? x + len : size;
		if (stop > torn)
			torn = stop;
	}
	return torn;
}
