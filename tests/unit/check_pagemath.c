/* check_pagemath.c: unit tests for proto/pagemath.c: how a byte range is
 * split at page boundaries (pv_split), how pages are first laid out over
 * servers (pv_layout), and the page count/index helpers of pagemath.h.
 * Pure functions: no files, no sockets. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pagemath.h"

#define PS	 4096u	    /* page size used by most cases */
#define BIG_PS	 (4u << 20) /* the default page size */
#define SENTINEL 0xa5a5a5a5a5a5a5a5ull

static void fill_sentinel(struct pv_span *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s[i].page = s[i].offset = s[i].length = s[i].buf_off = SENTINEL;
}

static void expect_span(const struct pv_span *s, uint64_t page, uint64_t offset, uint64_t length,
			uint64_t buf_off)
{
	ck_assert_uint_eq(s->page, page);
	ck_assert_uint_eq(s->offset, offset);
	ck_assert_uint_eq(s->length, length);
	ck_assert_uint_eq(s->buf_off, buf_off);
}

/* Checks every property a split must have: spans are contiguous, cover
 * exactly [offset, offset+length), never cross a page boundary, name their
 * page, and their buffer offsets follow the lengths. Check reports each
 * ck_assert to its parent process, so the many random cases test quietly
 * and only a violation calls into Check. */
#define INVARIANT(cond)                                                                            \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg("split(%llu, %llu, %u) span %zu of %zu: %s",                  \
				     (unsigned long long)offset, (unsigned long long)length, ps,   \
				     i, n, #cond);                                                 \
	} while (0)

static void check_split_invariants(uint64_t offset, uint64_t length, uint32_t ps,
				   const struct pv_span *s, size_t n)
{
	uint64_t sum = 0;
	uint64_t first = offset / ps, last = (offset + length - 1) / ps;
	size_t i = 0;

	INVARIANT(n == (length ? last - first + 1 : 0));
	for (i = 0; i < n; i++) {
		INVARIANT(s[i].length > 0);
		INVARIANT(s[i].length <= ps);
		INVARIANT(s[i].offset == offset + sum);
		INVARIANT(s[i].buf_off == sum);
		INVARIANT(s[i].page == s[i].offset / ps);
		INVARIANT(s[i].page == first + i);
		/* does not cross into the next page */
		INVARIANT((s[i].offset + s[i].length - 1) / ps == s[i].page);
		/* every span but the first starts at a page boundary */
		INVARIANT(i == 0 || s[i].offset % ps == 0);
		sum += s[i].length;
	}
	INVARIANT(sum == length);
}

START_TEST(split_within_one_page)
{
	struct pv_span s[4];

	fill_sentinel(s, 4);
	ck_assert_uint_eq(pv_split(100, 200, PS, s, 4), 1);
	expect_span(&s[0], 0, 100, 200, 0);
	ck_assert_uint_eq(s[1].page, SENTINEL);

	/* a whole page from its start is one span */
	ck_assert_uint_eq(pv_split(3 * PS, PS, PS, s, 4), 1);
	expect_span(&s[0], 3, 3 * PS, PS, 0);

	/* the last byte of a page */
	ck_assert_uint_eq(pv_split(PS - 1, 1, PS, s, 4), 1);
	expect_span(&s[0], 0, PS - 1, 1, 0);
}
END_TEST

START_TEST(split_crossing_one_boundary)
{
	struct pv_span s[4];

	fill_sentinel(s, 4);
	ck_assert_uint_eq(pv_split(4000, 200, PS, s, 4), 2);
	expect_span(&s[0], 0, 4000, 96, 0);
	expect_span(&s[1], 1, 4096, 104, 96);
	ck_assert_uint_eq(s[2].page, SENTINEL);

	/* two bytes straddling the boundary */
	ck_assert_uint_eq(pv_split(PS - 1, 2, PS, s, 4), 2);
	expect_span(&s[0], 0, PS - 1, 1, 0);
	expect_span(&s[1], 1, PS, 1, 1);
}
END_TEST

START_TEST(split_crossing_many_boundaries)
{
	struct pv_span s[8];

	fill_sentinel(s, 8);
	ck_assert_uint_eq(pv_split(1000, 5 * PS, PS, s, 8), 6);
	expect_span(&s[0], 0, 1000, PS - 1000, 0);
	for (int i = 1; i < 5; i++)
		expect_span(&s[i], i, (uint64_t)i * PS, PS, (uint64_t)i * PS - 1000);
	expect_span(&s[5], 5, 5 * PS, 1000, 5 * PS - 1000);
	ck_assert_uint_eq(s[6].page, SENTINEL);
	check_split_invariants(1000, 5 * PS, PS, s, 6);
}
END_TEST

START_TEST(split_exactly_at_boundaries)
{
	struct pv_span s[4];

	fill_sentinel(s, 4);
	ck_assert_uint_eq(pv_split(PS, 2 * PS, PS, s, 4), 2);
	expect_span(&s[0], 1, PS, PS, 0);
	expect_span(&s[1], 2, 2 * PS, PS, PS);
	ck_assert_uint_eq(s[2].page, SENTINEL);

	/* ends exactly at a boundary from mid-page */
	ck_assert_uint_eq(pv_split(PS / 2, PS + PS / 2, PS, s, 4), 2);
	expect_span(&s[0], 0, PS / 2, PS / 2, 0);
	expect_span(&s[1], 1, PS, PS, PS / 2);
}
END_TEST

START_TEST(split_length_zero)
{
	struct pv_span s[2];

	fill_sentinel(s, 2);
	ck_assert_uint_eq(pv_split(12345, 0, PS, s, 2), 0);
	ck_assert_uint_eq(s[0].page, SENTINEL);
	ck_assert_uint_eq(s[0].length, SENTINEL);
	/* out may be NULL when nothing is to be written */
	ck_assert_uint_eq(pv_split(0, 0, PS, NULL, 0), 0);
}
END_TEST

START_TEST(split_partial_last_page)
{
	struct pv_span s[4];

	fill_sentinel(s, 4);
	ck_assert_uint_eq(pv_split(2 * PS, PS + 10, PS, s, 4), 2);
	expect_span(&s[0], 2, 2 * PS, PS, 0);
	expect_span(&s[1], 3, 3 * PS, 10, PS);
}
END_TEST

START_TEST(split_max_truncates)
{
	struct pv_span s[4];

	fill_sentinel(s, 4);
	/* needs 5 spans, room for 2: returns 5, writes only 2 */
	ck_assert_uint_eq(pv_split(100, 4 * PS, PS, s, 2), 5);
	expect_span(&s[0], 0, 100, PS - 100, 0);
	expect_span(&s[1], 1, PS, PS, PS - 100);
	ck_assert_uint_eq(s[2].page, SENTINEL);
	ck_assert_uint_eq(s[2].offset, SENTINEL);
	ck_assert_uint_eq(s[2].length, SENTINEL);
	ck_assert_uint_eq(s[2].buf_off, SENTINEL);

	/* max 0: only counts */
	ck_assert_uint_eq(pv_split(100, 4 * PS, PS, NULL, 0), 5);
	/* exactly enough room */
	fill_sentinel(s, 4);
	ck_assert_uint_eq(pv_split(0, 3 * PS, PS, s, 3), 3);
	expect_span(&s[2], 2, 2 * PS, PS, 2 * PS);
	ck_assert_uint_eq(s[3].page, SENTINEL);
}
END_TEST

START_TEST(split_large_offsets_and_odd_page_size)
{
	struct pv_span s[8];
	uint64_t off = (1ull << 50) + 77;

	/* default page size far into a large volume */
	ck_assert_uint_eq(pv_split(off, 2 * BIG_PS, BIG_PS, s, 8), 3);
	check_split_invariants(off, 2 * BIG_PS, BIG_PS, s, 3);
	ck_assert_uint_eq(s[0].page, off / BIG_PS);

	/* a page size that is a multiple of 512 but not a power of two */
	ck_assert_uint_eq(pv_split(1000, 4000, 1536, s, 8), 4);
	expect_span(&s[0], 0, 1000, 536, 0);
	expect_span(&s[1], 1, 1536, 1536, 536);
	expect_span(&s[2], 2, 3072, 1536, 2072);
	expect_span(&s[3], 3, 4608, 392, 3608);

	/* the range that ends at the last byte of the address space */
	ck_assert_uint_eq(pv_split(UINT64_MAX - PS, PS + 1, PS, s, 8), 2);
	check_split_invariants(UINT64_MAX - PS, PS + 1, PS, s, 2);
}
END_TEST

/* Many pseudo-random ranges (fixed seed): the properties hold for all. */
START_TEST(split_invariants_random)
{
	static const uint32_t sizes[] = {512, 1536, 4096, 65536, 4u << 20};
	struct pv_span s[64];
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 20000; i++) {
		uint32_t ps;
		uint64_t off, len;
		size_t n;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ps = sizes[x % 5];
		off = (x >> 8) % (1ull << 40);
		len = (x >> 3) % (40ull * ps) + 1;
		n = pv_split(off, len, ps, s, 64);
		if (n > 64)
			ck_abort_msg("split(%llu, %llu, %u) needs %zu spans",
				     (unsigned long long)off, (unsigned long long)len, ps, n);
		check_split_invariants(off, len, ps, s, n);
	}
}
END_TEST

START_TEST(layout_single_server)
{
	uint32_t servers[] = {7}, weights[] = {3};
	uint32_t owner[10];

	memset(owner, 0xff, sizeof(owner));
	ck_assert_int_eq(pv_layout(10, servers, weights, 1, owner), 0);
	for (int i = 0; i < 10; i++)
		ck_assert_uint_eq(owner[i], 7);
}
END_TEST

START_TEST(layout_equal_weights_interleave)
{
	uint32_t servers[] = {1, 2, 3}, weights[] = {1, 1, 1};
	uint32_t owner[9];
	static const uint32_t want[] = {1, 2, 3, 1, 2, 3, 1, 2, 3};

	ck_assert_int_eq(pv_layout(9, servers, weights, 3, owner), 0);
	for (int i = 0; i < 9; i++)
		ck_assert_uint_eq(owner[i], want[i]);

	/* the same with other equal weights and server ids that are not 0..n */
	uint32_t servers2[] = {40, 10, 30}, weights2[] = {5, 5, 5};
	static const uint32_t want2[] = {40, 10, 30, 40, 10, 30};

	ck_assert_int_eq(pv_layout(6, servers2, weights2, 3, owner), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_uint_eq(owner[i], want2[i]);
}
END_TEST

/* Counts how many of owner[0..n) are id. */
static uint64_t count_of(const uint32_t *owner, uint64_t n, uint32_t id)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += owner[i] == id;
	return c;
}

START_TEST(layout_weighted_proportions)
{
	uint32_t servers[] = {1, 2, 3}, weights[] = {1, 1, 2};
	uint32_t *owner = malloc(1000 * sizeof(*owner));
	uint64_t a, b, c;

	ck_assert_ptr_nonnull(owner);
	memset(owner, 0xff, 1000 * sizeof(*owner));
	ck_assert_int_eq(pv_layout(1000, servers, weights, 3, owner), 0);
	a = count_of(owner, 1000, 1);
	b = count_of(owner, 1000, 2);
	c = count_of(owner, 1000, 3);
	ck_assert_uint_eq(a + b + c, 1000);
	ck_assert_uint_ge(a, 249);
	ck_assert_uint_le(a, 251);
	ck_assert_uint_ge(b, 249);
	ck_assert_uint_le(b, 251);
	ck_assert_uint_ge(c, 499);
	ck_assert_uint_le(c, 501);

	/* the exact layout is pinned: every member, of any version, must
	 * compute the same one (smooth weighted round robin, ties to the
	 * first server) */
	{
		static const uint32_t want[] = {3, 1, 2, 3, 3, 1, 2, 3};

		for (int i = 0; i < 8; i++)
			ck_assert_uint_eq(owner[i], want[i]);
	}

	/* every prefix stays close to the proportions (smooth, not blocks) */
	for (uint64_t p = 1; p <= 1000; p++) {
		int64_t c3 = (int64_t)count_of(owner, p, 3);

		if (llabs(c3 * 2 - (int64_t)p) > 2)
			ck_abort_msg("server 3 owns %lld of the first %llu pages", (long long)c3,
				     (unsigned long long)p);
	}
	free(owner);
}
END_TEST

START_TEST(layout_no_consecutive_with_equal_weights)
{
	uint32_t servers[8], weights[8];
	uint32_t owner[200];

	for (size_t n = 2; n <= 8; n++) {
		for (size_t i = 0; i < n; i++) {
			servers[i] = 100 + (uint32_t)i;
			weights[i] = 4;
		}
		ck_assert_int_eq(pv_layout(200, servers, weights, n, owner), 0);
		for (int p = 1; p < 200; p++)
			if (owner[p] == owner[p - 1])
				ck_abort_msg("%zu servers: pages %d and %d both on %u", n, p - 1, p,
					     owner[p]);
		for (size_t i = 0; i < n; i++) {
			uint64_t k = count_of(owner, 200, servers[i]);

			ck_assert_uint_ge(k, 200 / n);
			ck_assert_uint_le(k, 200 / n + 1);
		}
	}
}
END_TEST

START_TEST(layout_deterministic)
{
	uint32_t servers[] = {9, 4, 6, 2}, weights[] = {3, 1, 7, 2};
	uint32_t a[500], b[500];

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	ck_assert_int_eq(pv_layout(500, servers, weights, 4, a), 0);
	ck_assert_int_eq(pv_layout(500, servers, weights, 4, b), 0);
	ck_assert_mem_eq(a, b, sizeof(a));
	/* a shorter layout is a prefix of a longer one */
	ck_assert_int_eq(pv_layout(123, servers, weights, 4, b), 0);
	ck_assert_mem_eq(a, b, 123 * sizeof(a[0]));
	/* every owner is one of the servers */
	for (int i = 0; i < 500; i++)
		ck_assert(a[i] == 9 || a[i] == 4 || a[i] == 6 || a[i] == 2);
}
END_TEST

START_TEST(layout_rejects_bad_input)
{
	uint32_t servers[] = {1, 2, 3}, weights[] = {1, 0, 1};
	uint32_t owner[4] = {77, 77, 77, 77};

	ck_assert_int_eq(pv_layout(4, servers, weights, 3, owner), -1);
	ck_assert_int_eq(pv_layout(4, servers, weights, 0, owner), -1);
	ck_assert_uint_eq(owner[0], 77);
	/* weight 0 at the first or last position too */
	weights[1] = 1;
	weights[0] = 0;
	ck_assert_int_eq(pv_layout(4, servers, weights, 3, owner), -1);
	weights[0] = 1;
	weights[2] = 0;
	ck_assert_int_eq(pv_layout(4, servers, weights, 3, owner), -1);
	ck_assert_uint_eq(owner[0], 77);
	/* zero pages is fine and writes nothing */
	weights[2] = 1;
	ck_assert_int_eq(pv_layout(0, servers, weights, 3, owner), 0);
	ck_assert_uint_eq(owner[0], 77);
}
END_TEST

START_TEST(layout_large_weights)
{
	uint32_t servers[] = {1, 2}, weights[] = {UINT32_MAX, UINT32_MAX};
	uint32_t owner[6];

	ck_assert_int_eq(pv_layout(6, servers, weights, 2, owner), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_uint_eq(owner[i], (uint32_t)(i % 2 + 1));
}
END_TEST

START_TEST(page_count_and_page_of)
{
	ck_assert_uint_eq(pv_page_count(0, PS), 0);
	ck_assert_uint_eq(pv_page_count(1, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS - 1, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS + 1, PS), 2);
	ck_assert_uint_eq(pv_page_count(10ull << 30, BIG_PS), 2560);
	ck_assert_uint_eq(pv_page_count((10ull << 30) + 512, BIG_PS), 2561);
	ck_assert_uint_eq(pv_page_count(1ull << 60, BIG_PS), 1ull << 38);

	ck_assert_uint_eq(pv_page_of(0, PS), 0);
	ck_assert_uint_eq(pv_page_of(PS - 1, PS), 0);
	ck_assert_uint_eq(pv_page_of(PS, PS), 1);
	ck_assert_uint_eq(pv_page_of(5 * PS + 7, PS), 5);
	ck_assert_uint_eq(pv_page_of(UINT64_MAX, BIG_PS), UINT64_MAX / BIG_PS);
	ck_assert_uint_eq(pv_page_of(1000, 1536), 0);
	ck_assert_uint_eq(pv_page_of(1536, 1536), 1);
}
END_TEST

/* pv_range_owned: whether a READ may be left to the client's mapping of
 * this server's data file (every byte on this server). */
START_TEST(range_owned)
{
	const uint32_t owner[] = {1, 1, 2, 1, 1, 1};
	const uint64_t n = sizeof(owner) / sizeof(owner[0]);

	/* inside one page, and across two pages of the same owner */
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 0, 1, 1), 1);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 0, 2 * PS, 1), 1);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, PS - 512, 1024, 1), 1);
	/* one byte on another server's page is enough to refuse */
	ck_assert_int_eq(pv_range_owned(owner, n, PS, PS, PS + 1, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 2 * PS - 1, 1, 1), 1);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 2 * PS - 1, 2, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 2 * PS, PS, 2), 1);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 2 * PS, PS, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 3 * PS, 3 * PS, 1), 1);
	/* past the last page, length 0, wrap-around, page size 0 */
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 3 * PS, 3 * PS + 1, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 6 * PS, 1, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, 0, 0, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, UINT64_MAX, 2, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, PS, UINT64_MAX - 1, UINT64_MAX, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, n, 0, 0, 1, 1), 0);
	ck_assert_int_eq(pv_range_owned(owner, 0, PS, 0, 1, 1), 0);
}
END_TEST

static Suite *pagemath_suite(void)
{
	Suite *s = suite_create("pagemath");
	TCase *split = tcase_create("split");
	TCase *layout = tcase_create("layout");
	TCase *count = tcase_create("count");

	tcase_add_test(split, split_within_one_page);
	tcase_add_test(split, split_crossing_one_boundary);
	tcase_add_test(split, split_crossing_many_boundaries);
	tcase_add_test(split, split_exactly_at_boundaries);
	tcase_add_test(split, split_length_zero);
	tcase_add_test(split, split_partial_last_page);
	tcase_add_test(split, split_max_truncates);
	tcase_add_test(split, split_large_offsets_and_odd_page_size);
	tcase_add_test(split, split_invariants_random);
	tcase_add_test(layout, layout_single_server);
	tcase_add_test(layout, layout_equal_weights_interleave);
	tcase_add_test(layout, layout_weighted_proportions);
	tcase_add_test(layout, layout_no_consecutive_with_equal_weights);
	tcase_add_test(layout, layout_deterministic);
	tcase_add_test(layout, layout_rejects_bad_input);
	tcase_add_test(layout, layout_large_weights);
	tcase_add_test(count, page_count_and_page_of);
	tcase_add_test(count, range_owned);
	suite_add_tcase(s, split);
	suite_add_tcase(s, layout);
	suite_add_tcase(s, count);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pagemath_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
