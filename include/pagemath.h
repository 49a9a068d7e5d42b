/* pagemath.h: how a byte range of a volume maps onto pages and their owners,
 * and how pages are first laid out over servers. Pure functions
 * (proto/pagemath.c), unit tested in tests/unit/check_pagemath.c. */
#ifndef PV_PAGEMATH_H
#define PV_PAGEMATH_H

#include <stddef.h>
#include <stdint.h>

/* One run of a request: bytes of it that go to one owner as one part. */
struct pv_span {
	uint64_t page;	  /* page of its first byte */
	uint64_t offset;  /* byte offset in the volume */
	uint64_t length;  /* bytes */
	uint64_t buf_off; /* offset of this run in the request's buffer */
	uint32_t owner;	  /* owner of its pages (owner[page]) */
};

/* Number of pages of a volume of size bytes (the last may be partial). */
static inline uint64_t pv_page_count(uint64_t size, uint32_t page_size)
{
	return size / page_size + (size % page_size != 0);
}

/* The run of [offset, offset+length) that starts pos bytes into it
 * (pos < length), by the routing table owner[] (which covers every page of
 * the range): the run extends over the following pages with the same owner.
 * The pages of self make one run however many there are (one local job);
 * another owner's run ends at the end of its page (a forwarded part stays
 * within one page). The request path walks a range with it:
 *   for (pos = 0; pos < length; pos += s.length)
 *           s = pv_span_at(owner, page_size, offset, length, pos, self);
 * Pure. */
struct pv_span pv_span_at(const uint32_t *owner, uint32_t page_size, uint64_t offset,
			  uint64_t length, uint64_t pos, uint32_t self);

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

/* Page migration (peerd/migrate.c): a page moves from its source A to its
 * target B piece by piece (the seed's Table 2). With piece k in transit,
 * where piece p of the page is served: */
enum pv_piece_at {
	PV_PIECE_SOURCE, /* p > k: not copied yet, at A only */
	PV_PIECE_BOTH,	 /* p == k: read at A; written at A and at B (dual write) */
	PV_PIECE_TARGET, /* p < k: copied, read and written at B only */
};
/* Where piece p is served while piece k is in transit (k = npieces: every
 * piece copied, the page is switching). Pure. */
static inline enum pv_piece_at pv_piece_at(uint32_t p, uint32_t k)
{
	return p < k ? PV_PIECE_TARGET : p == k ? PV_PIECE_BOTH : PV_PIECE_SOURCE;
}

/* Routing entries merge by epoch: 1 if an entry of epoch replaces one of
 * cur (a higher epoch wins, never a lower or equal one). Pure. */
static inline int pv_route_newer(uint64_t cur, uint64_t epoch)
{
	return epoch > cur;
}

/* Splits npages over n servers in proportion to weights (largest
 * remainder; ties go to the earlier server), into out[0..n). Weights of 0
 * get nothing; if every weight is 0, out is all 0. Pure. */
void pv_apportion(uint64_t npages, const uint32_t *weights, size_t n, uint64_t *out);

#endif
