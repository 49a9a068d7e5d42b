/* pagemath.c: page splitting and initial page layout (see pagemath.h). */
#include "pagemath.h"

size_t pv_split(uint64_t offset, uint64_t length, uint32_t page_size, struct pv_span *out,
		size_t max)
{
	size_t n = 0;
	uint64_t done = 0;

	while (done < length) {
		uint64_t off = offset + done;
		uint64_t in_page = page_size - off % page_size;
		uint64_t len = length - done < in_page ? length - done : in_page;

		if (n < max) {
			out[n].page = off / page_size;
			out[n].offset = off;
			out[n].length = len;
			out[n].buf_off = done;
		}
		n++;
		done += len;
	}
	return n;
}

int pv_layout(uint64_t npages, const uint32_t *servers, const uint32_t *weights, size_t n,
	      uint32_t *owner)
{
	int64_t current[256] = {0};
	int64_t total = 0;

	if (n == 0 || n > 256)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (weights[i] == 0)
			return -1;
		total += weights[i];
	}
	for (uint64_t p = 0; p < npages; p++) {
		size_t best = 0;

		for (size_t i = 0; i < n; i++) {
			current[i] += weights[i];
			if (current[i] > current[best])
				best = i;
		}
		current[best] -= total;
		owner[p] = servers[best];
	}
	return 0;
}

int pv_range_owned(const uint32_t *owner, uint64_t npages, uint32_t page_size, uint64_t offset,
		   uint64_t length, uint32_t self)
{
	uint64_t first, last;

	if (!length || !page_size || offset + length < offset)
		return 0;
	first = offset / page_size;
	last = (offset + length - 1) / page_size;
	if (last >= npages)
		return 0;
	for (uint64_t p = first; p <= last; p++)
		if (owner[p] != self)
			return 0;
	return 1;
}
