/* pagemath.h: how a byte range of a volume maps onto pages, and how pages are
 * first laid out over servers. Pure functions (proto/pagemath.c), unit
 * tested in tests/unit/check_pagemath.c. */
#ifndef PV_PAGEMATH_H
#define PV_PAGEMATH_H

#include <stddef.h>
#include <stdint.h>

/* One page-sized piece of a request. */
struct pv_span {
	uint64_t page;	  /* page index in the volume */
	uint64_t offset;  /* byte offset in the volume */
	uint64_t length;  /* bytes, never crossing a page boundary */
	uint64_t buf_off; /* offset of this span in the request's buffer */
};

/* Number of pages of a volume of size bytes (the last may be partial). */
static inline uint64_t pv_page_count(uint64_t size, uint32_t page_size)
{
	return size / page_size + (size % page_size != 0);
}

/* Page holding byte offset. */
static inline uint64_t pv_page_of(uint64_t offset, uint32_t page_size)
{
	return offset / page_size;
}

/* Splits [offset, offset+length) at page boundaries into at most max spans.
 * Returns the number of spans the range needs (may exceed max: then only max
 * were written). length 0 gives 0 spans. */
size_t pv_split(uint64_t offset, uint64_t length, uint32_t page_size, struct pv_span *out,
		size_t max);

/* 1 if [offset, offset+length) is inside the npages pages of owner[] and
 * every page it touches is owned by self; 0 otherwise (and for length 0). */
int pv_range_owned(const uint32_t *owner, uint64_t npages, uint32_t page_size, uint64_t offset,
		   uint64_t length, uint32_t self);

/* Lays npages pages over n servers in proportion to weights, interleaved so
 * that consecutive pages go to different servers (smooth weighted round
 * robin). servers[i] has weights[i] >= 1. Writes owner[0..npages). Same
 * inputs always give the same layout: every member computes it alike.
 * Returns 0, or -1 if n == 0 or a weight is 0. */
int pv_layout(uint64_t npages, const uint32_t *servers, const uint32_t *weights, size_t n,
	      uint32_t *owner);

#endif
