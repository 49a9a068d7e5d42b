/* check_clients.c: unit tests for the clients' low-water marks of
 * peerd/clients.c, which refuse late copies of writes (issue 12, defect 3):
 * the pure decision clients_is_late, and the table of marks
 * (clients_done_below: the largest mark counts, nothing recorded for
 * unknown values; clients_marks_expire; the bound on its size). The
 * refusal itself is covered end to end (late-write). The global srv of
 * peerd stays NULL here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

START_TEST(is_late)
{
	/* below the mark: answered already */
	ck_assert(clients_is_late(4, 5));
	ck_assert(clients_is_late(1, UINT64_MAX));
	/* at or above it: still outstanding (or not sent yet) */
	ck_assert(!clients_is_late(5, 5));
	ck_assert(!clients_is_late(6, 5));
	/* 0 is unknown (senders before 1.3): never late */
	ck_assert(!clients_is_late(0, 5));
	ck_assert(!clients_is_late(4, 0));
	ck_assert(!clients_is_late(0, 0));
}
END_TEST

START_TEST(largest_mark_counts)
{
	const uint64_t a = 0x1234, b = 0x5678;

	ck_assert_uint_eq(clients_done_below(a, 10, 1000), 10);
	ck_assert_uint_eq(clients_marks_count(), 1);
	/* a copy sent earlier carries a smaller mark: the larger stays */
	ck_assert_uint_eq(clients_done_below(a, 7, 1001), 10);
	ck_assert_uint_eq(clients_done_below(a, 0, 1002), 10); /* a peer before 1.3 */
	ck_assert_uint_eq(clients_done_below(a, 12, 1003), 12);
	ck_assert(clients_is_late(11, clients_done_below(a, 3, 1004)));
	ck_assert(!clients_is_late(12, clients_done_below(a, 3, 1005)));
	/* clients are apart */
	ck_assert_uint_eq(clients_done_below(b, 2, 1006), 2);
	ck_assert_uint_eq(clients_done_below(a, 0, 1007), 12);
	ck_assert_uint_eq(clients_marks_count(), 2);
	/* nothing recorded for client 0 (peers) or without a mark */
	ck_assert_uint_eq(clients_done_below(0, 99, 1008), 99);
	ck_assert_uint_eq(clients_done_below(0x9999, 0, 1009), 0);
	ck_assert_uint_eq(clients_marks_count(), 2);
	clients_free();
	ck_assert_uint_eq(clients_marks_count(), 0);
	ck_assert_uint_eq(clients_done_below(a, 0, 1010), 0);
}
END_TEST

START_TEST(expiry)
{
	const uint64_t t0 = 5000;

	clients_done_below(1, 10, t0);
	clients_done_below(2, 20, t0);
	/* renewed by any request that carries a mark, even a smaller one */
	clients_done_below(2, 5, t0 + PEERD_MARK_EXPIRE_MS / 2);
	clients_marks_expire(t0 + PEERD_MARK_EXPIRE_MS);
	ck_assert_uint_eq(clients_marks_count(), 2);
	clients_marks_expire(t0 + PEERD_MARK_EXPIRE_MS + 1);
	ck_assert_uint_eq(clients_marks_count(), 1);
	ck_assert_uint_eq(clients_done_below(1, 0, t0 + PEERD_MARK_EXPIRE_MS + 2), 0); /* gone */
	ck_assert_uint_eq(clients_done_below(2, 0, t0 + PEERD_MARK_EXPIRE_MS + 2), 20);
	/* a clock read before the mark's renewal expires nothing */
	clients_marks_expire(t0);
	ck_assert_uint_eq(clients_marks_count(), 1);
	clients_marks_expire(t0 + 3 * PEERD_MARK_EXPIRE_MS);
	ck_assert_uint_eq(clients_marks_count(), 0);
	clients_free();
}
END_TEST

START_TEST(bounded)
{
	for (uint64_t id = 1; id <= PEERD_MARKS_MAX; id++)
		clients_done_below(id, 100, 1000);
	ck_assert_uint_eq(clients_marks_count(), PEERD_MARKS_MAX);
	/* full: a new client is not recorded (its own mark still answers),
	 * known ones go on */
	ck_assert_uint_eq(clients_done_below(PEERD_MARKS_MAX + 1, 7, 1001), 7);
	ck_assert_uint_eq(clients_marks_count(), PEERD_MARKS_MAX);
	ck_assert_uint_eq(clients_done_below(1, 200, 1002), 200);
	clients_marks_expire(1000 + PEERD_MARK_EXPIRE_MS + 1); /* all but client 1 */
	ck_assert_uint_eq(clients_marks_count(), 1);
	ck_assert_uint_eq(clients_done_below(PEERD_MARKS_MAX + 1, 7, 1003), 7);
	ck_assert_uint_eq(clients_marks_count(), 2);
	clients_free();
}
END_TEST

static Suite *clients_suite(void)
{
	Suite *s = suite_create("clients");
	TCase *tc = tcase_create("marks");

	tcase_add_test(tc, is_late);
	tcase_add_test(tc, largest_mark_counts);
	tcase_add_test(tc, expiry);
	tcase_add_test(tc, bounded);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(clients_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
