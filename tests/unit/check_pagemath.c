/* check_pagemath.c: unit tests for proto/pagemath.c: how a byte range
 * becomes runs by owner (pv_span_at), how pages are first laid out over
 * servers (pv_layout), which ranges are all on one server (pv_range_owned)
 * and the page count of pagemath.h.
 * Pure functions: no files, no sockets. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pagemath.h"

#define PS	 4096u	    /* page size used by most cases */
#define BIG_PS	 (4u << 20) /* the default page size */
#define SELF	 1u	    /* this server in the owner tables below */
#define MAXPAGES 64

/* An owner table of MAXPAGES pages, every page owned by server o. */
static void owners_all(uint32_t *owner, uint32_t o)
{
	for (size_t i = 0; i < MAXPAGES; i++)
		owner[i] = o;
}

/* Walks [offset, offset+length) with pv_span_at as the request path does;
 * writes at most max runs to out and returns how many there were. */
static size_t walk(const uint32_t *owner, uint32_t ps, uint64_t offset, uint64_t length,
		   struct pv_span *out, size_t max)
{
	size_t n = 0;

	for (uint64_t pos = 0; pos < length; n++) {
		struct pv_span s = pv_span_at(owner, ps, offset, length, pos, SELF);

		if (s.length == 0)
			ck_abort_msg("span_at(%llu, %llu, pos %llu) is empty",
				     (unsigned long long)offset, (unsigned long long)length,
				     (unsigned long long)pos);
		if (n < max)
			out[n] = s;
		pos += s.length;
	}
	return n;
}

/* Checks every property a walk must have: runs are contiguous, cover
 * exactly [offset, offset+length), name their first page and its owner,
 * hold pages of that one owner, never cross a page boundary unless local,
 * and no two local runs touch (they would have been one). Check reports
 * each ck_assert to its parent process, so the many random cases test
 * quietly and only a violation calls into Check. */
#define INVARIANT(cond)                                                                            \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg("walk(%llu, %llu, %u) run %zu of %zu: %s",                    \
				     (unsigned long long)offset, (unsigned long long)length, ps,   \
				     i, n, #cond);                                                 \
	} while (0)

static void check_invariants(const uint32_t *owner, uint64_t offset, uint64_t length, uint32_t ps,
			     const struct pv_span *s, size_t n)
{
	uint64_t sum = 0;
	size_t i = 0;

	INVARIANT(n > 0 || length == 0);
	for (i = 0; i < n; i++) {
		uint64_t last = (s[i].offset + s[i].length - 1) / ps;

		INVARIANT(s[i].length > 0);
		INVARIANT(s[i].offset == offset + sum);
		INVARIANT(s[i].buf_off == sum);
		INVARIANT(s[i].page == s[i].offset / ps);
		INVARIANT(s[i].owner == owner[s[i].page]);
		for (uint64_t p = s[i].page; p <= last; p++)
			INVARIANT(owner[p] == s[i].owner);
		/* a forwarded part stays within its page */
		INVARIANT(s[i].owner == SELF || last == s[i].page);
		/* a local run takes every following local page */
		INVARIANT(i == 0 || s[i].owner != SELF || s[i - 1].owner != SELF);
		sum += s[i].length;
	}
	INVARIANT(sum == length);
}

/* A range over an owner table and the runs it must become. owners gives
 * the owners of the first pages, one digit each; later pages are owned by
 * rest. */
struct walk_case {
	const char *what;
	uint32_t ps;
	const char *owners;
	uint32_t rest;
	uint64_t offset, length;
	size_t n;
	struct pv_span runs[6]; /* page, offset, length, buf_off, owner */
};

static const struct walk_case walks[] = {
    /* every page elsewhere: one run per page touched */
    {"inside one page", PS, "", 2, 100, 200, 1, {{0, 100, 200, 0, 2}}},
    {"a whole page", PS, "", 2, 3 * PS, PS, 1, {{3, 3 * PS, PS, 0, 2}}},
    {"the last byte of a page", PS, "", 2, PS - 1, 1, 1, {{0, PS - 1, 1, 0, 2}}},
    {"across a boundary", PS, "", 2, 4000, 200, 2, {{0, 4000, 96, 0, 2}, {1, 4096, 104, 96, 2}}},
    {"two bytes on a boundary", PS, "", 2, PS - 1, 2, 2, {{0, PS - 1, 1, 0, 2}, {1, PS, 1, 1, 2}}},
    {"many pages",
     PS,
     "",
     2,
     1000,
     5 * PS,
     6,
     {{0, 1000, PS - 1000, 0, 2},
      {1, PS, PS, PS - 1000, 2},
      {2, 2 * PS, PS, 2 * PS - 1000, 2},
      {3, 3 * PS, PS, 3 * PS - 1000, 2},
      {4, 4 * PS, PS, 4 * PS - 1000, 2},
      {5, 5 * PS, 1000, 5 * PS - 1000, 2}}},
    {"from mid-page to a boundary",
     PS,
     "",
     2,
     PS / 2,
     PS + PS / 2,
     2,
     {{0, PS / 2, PS / 2, 0, 2}, {1, PS, PS, PS / 2, 2}}},
    {"a partial last page",
     PS,
     "",
     2,
     2 * PS,
     PS + 10,
     2,
     {{2, 2 * PS, PS, 0, 2}, {3, 3 * PS, 10, PS, 2}}},
    /* pages here make one run, one local job, however many */
    {"local pages merge", PS, "", SELF, 1000, 5 * PS, 1, {{0, 1000, 5 * PS, 0, SELF}}},
    {"every page here", PS, "", SELF, 0, MAXPAGES *PS, 1, {{0, 0, MAXPAGES *PS, 0, SELF}}},
    {"local, inside one page", PS, "", SELF, 7 * PS + 3, 10, 1, {{7, 7 * PS + 3, 10, 0, SELF}}},
    /* owners change: local stretches merge, remote pages stay apart, even
     * two neighbours of the same remote owner */
    {"mixed owners",
     PS,
     "112213111",
     0,
     100,
     9 * PS - 200,
     6,
     {{0, 100, 2 * PS - 100, 0, SELF},
      {2, 2 * PS, PS, 2 * PS - 100, 2},
      {3, 3 * PS, PS, 3 * PS - 100, 2},
      {4, 4 * PS, PS, 4 * PS - 100, SELF},
      {5, 5 * PS, PS, 5 * PS - 100, 3},
      {6, 6 * PS, 3 * PS - 100, 6 * PS - 100, SELF}}},
    {"from a remote page into a local one",
     PS,
     "112213111",
     0,
     3 * PS + 5,
     PS + 10,
     2,
     {{3, 3 * PS + 5, PS - 5, 0, 2}, {4, 4 * PS, 15, PS - 5, SELF}}},
    /* a page size that is a multiple of 512 but not a power of two */
    {"odd page size",
     1536,
     "",
     2,
     1000,
     4000,
     4,
     {{0, 1000, 536, 0, 2},
      {1, 1536, 1536, 536, 2},
      {2, 3072, 1536, 2072, 2},
      {3, 4608, 392, 3608, 2}}},
    {"odd page size, local middle",
     1536,
     "2112",
     2,
     1000,
     4000,
     3,
     {{0, 1000, 536, 0, 2}, {1, 1536, 3072, 536, SELF}, {3, 4608, 392, 3608, 2}}},
    {"the default page size",
     BIG_PS,
     "",
     2,
     BIG_PS - 7,
     2 * BIG_PS,
     3,
     {{0, BIG_PS - 7, 7, 0, 2},
      {1, BIG_PS, BIG_PS, 7, 2},
      {2, 2 * BIG_PS, BIG_PS - 7, BIG_PS + 7, 2}}},
};

START_TEST(walk_cases)
{
	const struct walk_case *c = &walks[_i];
	uint32_t owner[MAXPAGES];
	struct pv_span s[MAXPAGES];
	size_t n;

	owners_all(owner, c->rest);
	for (size_t p = 0; c->owners[p]; p++)
		owner[p] = (uint32_t)(c->owners[p] - '0');
	n = walk(owner, c->ps, c->offset, c->length, s, MAXPAGES);
	ck_assert_msg(n == c->n, "%s: %zu runs, not %zu", c->what, n, c->n);
	for (size_t i = 0; i < n; i++) {
		const struct pv_span *r = &c->runs[i];

		ck_assert_msg(
		    s[i].page == r->page && s[i].offset == r->offset && s[i].length == r->length &&
			s[i].buf_off == r->buf_off && s[i].owner == r->owner,
		    "%s: run %zu is page %llu, %llu+%llu at %llu of server %u", c->what, i,
		    (unsigned long long)s[i].page, (unsigned long long)s[i].offset,
		    (unsigned long long)s[i].length, (unsigned long long)s[i].buf_off, s[i].owner);
	}
	check_invariants(owner, c->offset, c->length, c->ps, s, n);
}
END_TEST

/* pv_span_at from a position inside the range (the walk's later steps). */
START_TEST(span_at_inside)
{
	uint32_t owner[MAXPAGES] = {SELF, SELF, 2, 2, SELF, 3, SELF, SELF, SELF};
	struct pv_span s = pv_span_at(owner, PS, 100, 9 * PS - 200, 4 * PS - 100, SELF);

	ck_assert_uint_eq(s.page, 4);
	ck_assert_uint_eq(s.offset, 4 * PS);
	ck_assert_uint_eq(s.length, PS);
	ck_assert_uint_eq(s.buf_off, 4 * PS - 100);
	ck_assert_uint_eq(s.owner, SELF);
}
END_TEST

/* Many pseudo-random ranges over random owner tables (fixed seed): the
 * properties hold for all. */
START_TEST(invariants_random)
{
	static const uint32_t sizes[] = {512, 1536, 4096, 65536, 4u << 20};
	uint32_t owner[MAXPAGES];
	struct pv_span s[MAXPAGES];
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 20000; i++) {
		uint32_t ps;
		uint64_t off, len;
		size_t n;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ps = sizes[x % 5];
		for (size_t p = 0; p < MAXPAGES; p++)
			owner[p] = (uint32_t)(x >> (p % 60)) % 3 + 1; /* SELF, 2 or 3 */
		off = (x >> 8) % (32ull * ps);
		len = (x >> 3) % (32ull * ps) + 1;
		n = walk(owner, ps, off, len, s, MAXPAGES);
		check_invariants(owner, off, len, ps, s, n);
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

START_TEST(page_count)
{
	ck_assert_uint_eq(pv_page_count(0, PS), 0);
	ck_assert_uint_eq(pv_page_count(1, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS - 1, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS, PS), 1);
	ck_assert_uint_eq(pv_page_count(PS + 1, PS), 2);
	ck_assert_uint_eq(pv_page_count(10ull << 30, BIG_PS), 2560);
	ck_assert_uint_eq(pv_page_count((10ull << 30) + 512, BIG_PS), 2561);
	ck_assert_uint_eq(pv_page_count(1ull << 60, BIG_PS), 1ull << 38);
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

	tcase_add_loop_test(split, walk_cases, 0, sizeof(walks) / sizeof(walks[0]));
	tcase_add_test(split, span_at_inside);
	tcase_add_test(split, invariants_random);
	tcase_add_test(layout, layout_single_server);
	tcase_add_test(layout, layout_equal_weights_interleave);
	tcase_add_test(layout, layout_weighted_proportions);
	tcase_add_test(layout, layout_no_consecutive_with_equal_weights);
	tcase_add_test(layout, layout_deterministic);
	tcase_add_test(layout, layout_rejects_bad_input);
	tcase_add_test(layout, layout_large_weights);
	tcase_add_test(count, page_count);
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
