/* check_remove.c: unit tests for the pure parts of peerd/remove.c: the next
 * catalog without a member (remove_build_next: the member goes, the others
 * keep their order, a record of its id, address, weight and the version that
 * removed it, one record per id), finding a record (remove_find) and
 * counting a member's pages in a routing table (remove_lost_pages). No
 * server state: srv stays NULL. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

/* A catalog at version v with members 1..n (weights 10 * id). */
static Pv__Catalog *catalog_of(size_t n, uint64_t v)
{
	Pv__Catalog *c = calloc(1, sizeof(*c));

	pv__catalog__init(c);
	c->version = v;
	c->group_id = strdup("g");
	c->members = calloc(n, sizeof(*c->members));
	for (size_t i = 0; i < n; i++) {
		Pv__Member *m = malloc(sizeof(*m));

		pv__member__init(m);
		m->id = (uint32_t)i + 1;
		m->weight = 10 * m->id;
		m->address = malloc(32);
		snprintf(m->address, 32, "tcp://127.0.0.%zu:7100", i + 1);
		c->members[c->n_members++] = m;
	}
	return c;
}

START_TEST(build_next_removes)
{
	Pv__Catalog *c = catalog_of(4, 7);
	char err[PV_MAX_MESSAGE];
	const Pv__RemovedMember *r;

	ck_assert_int_eq(remove_build_next(c, 2, 0, err, sizeof(err)), 0);
	ck_assert_uint_eq(c->n_members, 3);
	ck_assert_uint_eq(c->members[0]->id, 1);
	ck_assert_uint_eq(c->members[1]->id, 3);
	ck_assert_uint_eq(c->members[2]->id, 4);
	r = remove_find(c, 2);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->address, "tcp://127.0.0.2:7100");
	ck_assert_uint_eq(r->weight, 20);
	ck_assert_uint_eq(r->version, 7);
	ck_assert_int_eq(r->left, 0);
	ck_assert_ptr_null(remove_find(c, 1));

	/* the last one leaves */
	c->version = 8;
	ck_assert_int_eq(remove_build_next(c, 4, 1, err, sizeof(err)), 0);
	ck_assert_uint_eq(c->n_members, 2);
	ck_assert_uint_eq(c->n_removed, 2);
	ck_assert_int_eq(remove_find(c, 4)->left, 1);
	ck_assert_uint_eq(remove_find(c, 4)->version, 8);
	pv__catalog__free_unpacked(c, NULL);
}
END_TEST

START_TEST(build_next_refuses)
{
	Pv__Catalog *c = catalog_of(2, 3);
	char err[PV_MAX_MESSAGE];

	ck_assert_int_eq(remove_build_next(c, 9, 0, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "server 9 is not a member of the group");
	ck_assert_int_eq(remove_build_next(c, 1, 0, err, sizeof(err)), 0);
	ck_assert_int_eq(remove_build_next(c, 2, 0, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "server 2 is the only member of the group");
	ck_assert_uint_eq(c->n_members, 1);
	ck_assert_uint_eq(c->n_removed, 1);
	pv__catalog__free_unpacked(c, NULL);
}
END_TEST

START_TEST(one_record_per_id)
{
	Pv__Catalog *c = catalog_of(3, 5);
	char err[PV_MAX_MESSAGE];
	Pv__Member *back = malloc(sizeof(*back));

	ck_assert_int_eq(remove_build_next(c, 3, 1, err, sizeof(err)), 0);
	/* it joins again (join.c drops the record; here it is kept to check
	 * that a second removal replaces it) */
	pv__member__init(back);
	back->id = 3;
	back->address = strdup("tcp://127.0.0.9:7100");
	c->members[c->n_members++] = back;
	c->version = 9;
	ck_assert_int_eq(remove_build_next(c, 3, 0, err, sizeof(err)), 0);
	ck_assert_uint_eq(c->n_removed, 1);
	ck_assert_str_eq(remove_find(c, 3)->address, "tcp://127.0.0.9:7100");
	ck_assert_uint_eq(remove_find(c, 3)->version, 9);
	ck_assert_int_eq(remove_find(c, 3)->left, 0);
	pv__catalog__free_unpacked(c, NULL);
}
END_TEST

START_TEST(lost_pages)
{
	uint32_t owner[] = {1, 2, 3, 1, 2, 3, 3, 3};

	ck_assert_uint_eq(remove_lost_pages(owner, 8, 3), 4);
	ck_assert_uint_eq(remove_lost_pages(owner, 8, 1), 2);
	ck_assert_uint_eq(remove_lost_pages(owner, 8, 7), 0);
	ck_assert_uint_eq(remove_lost_pages(owner, 0, 1), 0);
	ck_assert_ptr_null(remove_find(NULL, 1));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("remove");
	TCase *t = tcase_create("pure");
	SRunner *r;
	int failed;

	tcase_add_test(t, build_next_removes);
	tcase_add_test(t, build_next_refuses);
	tcase_add_test(t, one_record_per_id);
	tcase_add_test(t, lost_pages);
	suite_add_tcase(s, t);
	r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? 1 : 0;
}
