/* check_hlc.c: unit tests for the hybrid logical clock (proto/hlc.c and the
 * process clock of proto/wire.c): stamps rise even when the wall clock
 * stands still or goes back; a stamp taken after seeing one is later than
 * it whatever the local wall clock says (the rule timestamp-mode snapshots
 * rest on); a stamp too far in the future is not merged; the wall part
 * follows the wall clock. */
#include <check.h>
#include <stdlib.h>

#include "hlc.h"
#include "wire.h"

START_TEST(next_rises)
{
	uint64_t c = 0, prev;

	c = hlc_next(c, 1000);
	ck_assert_uint_eq(c, hlc_of_ms(1000));
	prev = c;
	c = hlc_next(c, 1000); /* the wall clock stands still */
	ck_assert_uint_gt(c, prev);
	ck_assert_uint_eq(hlc_ms(c), 1000);
	prev = c;
	c = hlc_next(c, 900); /* ... or goes back */
	ck_assert_uint_gt(c, prev);
	c = hlc_next(c, 2000); /* the wall clock moves on: counter 0 again */
	ck_assert_uint_eq(c, hlc_of_ms(2000));
}
END_TEST

START_TEST(merge_orders_causally)
{
	/* host B's wall clock is 5 s behind A's: after B sees A's stamp, its
	 * next stamp is still later */
	uint64_t a = hlc_next(0, 100000), b = hlc_next(0, 95000);

	b = hlc_merge(b, a, 95000);
	ck_assert_uint_eq(b, a);
	ck_assert_uint_gt(hlc_next(b, 95000), a);
	/* an older stamp changes nothing */
	ck_assert_uint_eq(hlc_merge(b, a - 5, 95000), b);
	/* a stamp more than HLC_MAX_AHEAD_MS ahead is ignored */
	ck_assert_uint_eq(hlc_merge(b, hlc_of_ms(95000 + HLC_MAX_AHEAD_MS + 1), 95000), b);
	ck_assert_uint_eq(hlc_merge(b, UINT64_MAX, 95000), b);
}
END_TEST

START_TEST(process_clock)
{
	uint64_t s1 = wire_hlc_now(), s2, wall = pv_wall_ms();
	Pv__Header h;

	s2 = wire_hlc_now();
	ck_assert_uint_gt(s2, s1);
	ck_assert_uint_le(hlc_ms(s2), wall + 1000);
	/* seeing a stamp 2 s ahead: the next one is later */
	wire_hlc_seen(hlc_of_ms(wall + 2000) + 7);
	ck_assert_uint_gt(wire_hlc_now(), hlc_of_ms(wall + 2000) + 7);
	/* every header carries the clock */
	wire_header_init(&h);
	ck_assert_uint_gt(h.hlc, hlc_of_ms(wall + 2000));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hlc");
	TCase *tc = tcase_create("clock");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, next_rises);
	tcase_add_test(tc, merge_orders_causally);
	tcase_add_test(tc, process_clock);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
