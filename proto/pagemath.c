/* pagemath.c: a range's runs by owner and the initial page layout (see
 * pagemath.h). Pure; unit tested in tests/unit/check_pagemath.c. */
#include "pagemath.h"

struct pv_span pv_span_at(const uint32_t *owner, uint32_t page_size, uint64_t offset,
			  uint64_t length, uint64_t pos, uint32_t self)
{
	struct pv_span s = {.offset = offset + pos, .buf_off = pos};
	uint64_t end = pos;

	s.page = s.offset / page_size;
	s.owner = owner[s.page];
	while (end < length) {
		uint64_t o = offset + end;
		uint64_t in_page = page_size - o % page_size;

		if (owner[o / page_size] != s.owner)
			break;
		end += in_page < length - end ? in_page : length - end;
		if (s.owner != self)
			break; /* forwarded parts stay within one page */
	}
	s.length = end - pos;
	return s;
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

void pv_apportion(uint64_t npages, const uint32_t *weights, size_t n, uint64_t *out)
{
	uint64_t total = 0, given = 0;

	for (size_t i = 0; i < n; i++) {
		total += weights[i];
		out[i] = 0;
	}
	if (!total)
		return;
	for (size_t i = 0; i < n; i++) {
		/* floor(npages * w / total), exact for any npages */
		out[i] = (uint64_t)((unsigned __int128)npages * weights[i] / total);
		given += out[i];
	}
	/* fewer than n pages are left: one each to the largest remainders
	 * (npages * w mod total), ties to the earlier server */
	for (; given < npages; given++) {
		size_t best = n;
		uint64_t best_rem = 0;

		for (size_t i = 0; i < n; i++) {
			uint64_t rem = (uint64_t)((unsigned __int128)npages * weights[i] % total);
			uint64_t floor_i =
			    (uint64_t)((unsigned __int128)npages * weights[i] / total);

			if (!weights[i] || out[i] > floor_i)
				continue; /* none, or already given its extra page */
			if (best == n || rem > best_rem) {
				best = i;
				best_rem = rem;
			}
		}
		if (best == n)
			break;
		out[best]++;
	}
}
