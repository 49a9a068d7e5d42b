/* check_fused_pick.c: unit tests for the holder fused sends a volume's
 * requests to when it routes the volume (fused/pick.c, pure): --server
 * wins if it holds the volume; a holder on this host is kept unless it is
 * over its fair share of client traffic; else the group's advice (the
 * least loaded); servers that give none: the server asked, else one by
 * client id. */
#include <check.h>
#include <stdlib.h>

#include "fused.h"

/* Three holders 1, 2, 3, known, on other hosts, not over. */
static void holders(struct pick_holder *h)
{
	for (int i = 0; i < 3; i++) {
		h[i].id = (uint32_t)i + 1;
		h[i].known = 1;
		h[i].local = 0;
		h[i].over = 0;
	}
}

START_TEST(advice_followed)
{
	struct pick_holder h[3];

	holders(h);
	/* the group's least loaded, wherever the catalog came from */
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 1, 7), 2);
	ck_assert_uint_eq(pick_route(h, 3, 0, 3, 9, 7), 3);
	/* advice of a server that is not a holder (or unknown) is ignored */
	ck_assert_uint_eq(pick_route(h, 3, 0, 9, 1, 7), 1);
	h[1].known = 0;
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 1, 7), 1);
	ck_assert_uint_eq(pick_route(h, 0, 0, 2, 1, 7), 0);
}
END_TEST

START_TEST(no_advice)
{
	struct pick_holder h[3];

	holders(h);
	/* servers before 1.5, or no figures: the server asked if it holds */
	ck_assert_uint_eq(pick_route(h, 3, 0, 0, 3, 7), 3);
	/* else one by client id */
	ck_assert_uint_eq(pick_route(h, 3, 0, 0, 9, 7), h[7 % 3].id);
	ck_assert_uint_eq(pick_route(h, 3, 0, 0, 9, 8), h[8 % 3].id);
}
END_TEST

START_TEST(forced)
{
	struct pick_holder h[3];

	holders(h);
	h[2].local = 1;
	/* --server wins over advice and a local holder */
	ck_assert_uint_eq(pick_route(h, 3, 1, 2, 2, 7), 1);
	/* unless it holds nothing of the volume */
	ck_assert_uint_eq(pick_route(h, 3, 9, 2, 2, 7), 3);
}
END_TEST

START_TEST(local_kept_unless_over)
{
	struct pick_holder h[3];

	holders(h);
	h[2].local = 1;
	/* a holder on this host is kept though another is less loaded */
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 1, 7), 3);
	/* ... while it is not over its fair share of client traffic */
	h[2].over = 1;
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 1, 7), 2);
	/* several on this host (tests on 127.0.0.x): the advice if it is one,
	 * else the server asked if it is one, else the first */
	holders(h);
	for (int i = 0; i < 3; i++)
		h[i].local = 1;
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 3, 7), 2);
	ck_assert_uint_eq(pick_route(h, 3, 0, 0, 3, 7), 3);
	ck_assert_uint_eq(pick_route(h, 3, 0, 0, 9, 7), 1);
	h[1].over = 1; /* the advised one is over (figures a heartbeat apart) */
	ck_assert_uint_eq(pick_route(h, 3, 0, 2, 3, 7), 3);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fused_pick");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, advice_followed);
	tcase_add_test(tc, no_advice);
	tcase_add_test(tc, forced);
	tcase_add_test(tc, local_kept_unless_over);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
