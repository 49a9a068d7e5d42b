/* check_balance.c: unit tests for the load monitor (peerd/load.c: the
 * decaying rates, counting pages, sequential share and the top pages of a
 * summary) and the rebalancer's decision (peerd/balance.c balance_decide,
 * pure): nothing on a balanced or idle table, the right page to the right
 * server, weights, allowed servers, free space, and no A->B->A on a table
 * that flips between two near-equal states. The global srv of peerd stays
 * NULL here. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

START_TEST(decay)
{
	double r = 0;

	/* a step: after 10 s at tau 10, 1 - 1/e of it */
	for (int i = 0; i < 10; i++)
		r = load_decay(r, 100, 0, 10);
	ck_assert_double_eq_tol(r, 100 * (1 - exp(-1)), 0.01);
	/* steady: converges to the rate */
	for (int i = 0; i < 200; i++)
		r = load_decay(r, 100, 0, 10);
	ck_assert_double_eq_tol(r, 100, 0.01);
	/* 9 s quiet, then a quiet second: 10 s of decay */
	ck_assert_double_eq_tol(load_decay(100, 0, 9, 10), 100 * exp(-1), 0.01);
	/* the 60 s window moves slower */
	ck_assert_double_lt(load_decay(0, 100, 0, 60), load_decay(0, 100, 0, 10));
}
END_TEST

START_TEST(counting)
{
	struct volume v;
	const Pv__LoadSummary *s;

	memset(&v, 0, sizeof(v));
	v.id = 7;
	v.page_size = 1 << 20;
	snprintf(v.name, sizeof(v.name), "v");
	for (int sec = 0; sec < 20; sec++) {
		/* page 3: 100 sequential 4 KiB reads a second (client 0x42,
		 * and every fourth one client 0x43); page 5: 10 random writes
		 * (client 0x43); one write across pages 8 and 9 (no client:
		 * a migration's piece) */
		for (int i = 0; i < 100; i++)
			load_part(&v, PV_OP_READ, 3 * (1 << 20) + (uint64_t)i * 4096, 4096,
				  i % 4 ? 0x42 : 0x43);
		for (int i = 0; i < 10; i++)
			load_part(&v, PV_OP_WRITE,
				  5 * (1 << 20) + (uint64_t)((i * 37) % 256) * 4096, 4096, 0x43);
		load_part(&v, PV_OP_WRITE, 9 * (1 << 20) - 4096, 8192, 0);
		load_done(PV_OP_READ, 0x42, 0, 4096, load_now_us());
		load_tick(NULL);
	}
	s = load_summary(NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_double_eq_tol(s->r10->read_ops, 100 * (1 - exp(-2)), 1);
	ck_assert_double_eq_tol(s->r10->write_ops, 11 * (1 - exp(-2)), 0.5);
	ck_assert_uint_eq(s->n_pages, 4);
	/* hottest first: page 3, then page 5 */
	ck_assert_uint_eq(s->pages[0]->volume_id, 7);
	ck_assert_uint_eq(s->pages[0]->page, 3);
	ck_assert_uint_eq(s->pages[1]->page, 5);
	/* page 3 is read sequentially, page 5 not */
	ck_assert_double_gt(s->pages[0]->r10->seq_share, 0.95);
	ck_assert_double_lt(s->pages[1]->r10->seq_share, 0.2);
	/* who hits them: page 3 mostly 0x42, then 0x43; page 5 0x43 alone;
	 * nobody's the migration's */
	ck_assert_uint_eq(s->pages[0]->n_clients, 2);
	ck_assert_uint_eq(s->pages[0]->clients[0], 0x42);
	ck_assert_uint_eq(s->pages[0]->clients[1], 0x43);
	ck_assert_uint_eq(s->pages[1]->n_clients, 1);
	ck_assert_uint_eq(s->pages[1]->clients[0], 0x43);
	ck_assert_uint_eq(s->pages[2]->n_clients + s->pages[3]->n_clients, 0);
	/* the client traffic: the one request a second client 0x42 sent */
	ck_assert_double_eq_tol(s->client_r10->read_ops, 1 - exp(-2), 0.05);
	ck_assert_uint_eq(s->n_volumes, 1);
	ck_assert_str_eq(s->volumes[0]->name, "v");
	ck_assert_uint_eq(s->n_clients, 1);
	ck_assert_uint_eq(s->clients[0]->client_id, 0x42);
	/* quiet: the rates fall, the pages stay listed while warm */
	for (int sec = 0; sec < 30; sec++)
		load_tick(NULL);
	s = load_summary(NULL);
	ck_assert_double_lt(s->r10->read_ops, 100 * exp(-2.9));
	ck_assert_uint_eq(s->pages[0]->page, 3);
	load_free();
}
END_TEST

/* This server's rates as of the others' folds: a rising load, a fold
 * every 30 ms; each fold is found again by its time, and the nearest one
 * to a time between two. */
START_TEST(self_at_fold)
{
	struct volume v;
	uint64_t at[LOAD_SELF_FOLDS];
	float r[LOAD_SELF_FOLDS];

	memset(&v, 0, sizeof(v));
	v.id = 9;
	v.page_size = 1 << 20;
	ck_assert_ptr_null(load_self_at(0, 0));
	for (int k = 0; k < LOAD_SELF_FOLDS; k++) {
		for (int i = 0; i < 100 * (k + 1); i++)
			load_part(&v, PV_OP_READ, 0, 4096, 0);
		load_tick(NULL);
		at[k] = load_summary(NULL)->at_ms;
		r[k] = load_summary(NULL)->r10->read_ops;
		usleep(30000);
	}
	for (int k = 0; k < LOAD_SELF_FOLDS; k++)
		ck_assert_float_eq(load_self_at(at[k], 0)->read_ops, r[k]);
	ck_assert_float_eq(load_self_at(at[1] + 10, 0)->read_ops, r[1]);
	ck_assert_float_lt(load_self_at(at[0], 0)->read_ops, r[LOAD_SELF_FOLDS - 1]);
	load_free();
}
END_TEST

/* A table of n servers (weight 1, plenty of room), self the first. */
static void table(struct balance_input *in, size_t n, const double *loads)
{
	memset(in, 0, sizeof(*in));
	in->n = n;
	in->self = 0;
	in->threshold = 0.25;
	in->floor = 50;
	for (size_t i = 0; i < n; i++) {
		in->s[i].id = (uint32_t)i + 1;
		in->s[i].weight = 1;
		in->s[i].load = loads[i];
		in->s[i].free = 1ull << 40;
	}
}

static void page(struct balance_input *in, uint64_t pg, double load)
{
	struct balance_page *p = &in->p[in->npages++];

	p->volume_id = 1;
	p->page = pg;
	p->load = load;
	p->page_size = 4 << 20;
	p->allowed = ~0ull;
}

START_TEST(balanced_and_idle)
{
	struct balance_input in;
	struct balance_decision d;

	table(&in, 3, (double[]){100, 100, 100});
	page(&in, 1, 50);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_IDLE); /* at its share */
	table(&in, 3, (double[]){1000, 900, 800});
	page(&in, 1, 500);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_FAIR); /* 1.11 x fair */
	/* an idle group: everything on one server, but under the floor */
	table(&in, 3, (double[]){30, 0, 0});
	page(&in, 1, 30);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_IDLE);
	table(&in, 3, (double[]){0, 0, 0});
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_IDLE);
}
END_TEST

START_TEST(right_page)
{
	struct balance_input in;
	struct balance_decision d;

	/* 300 on self, fair 100: the 150 page would overload its target
	 * (1.5), the 50 one helps least; the 100 one it is */
	table(&in, 3, (double[]){300, 0, 0});
	page(&in, 10, 150);
	page(&in, 11, 100);
	page(&in, 12, 50);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.p[d.page].page, 11);
	ck_assert(d.to == 1 || d.to == 2);
	ck_assert_double_eq_tol(d.share, 1.0, 1e-9);
	ck_assert_double_eq_tol(d.fair, 1.0 / 3, 1e-9);
	ck_assert_double_eq_tol(d.page_share, 1.0 / 3, 1e-9);
	/* to the least loaded */
	table(&in, 3, (double[]){300, 60, 0});
	page(&in, 11, 80);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.s[d.to].id, 3);
}
END_TEST

START_TEST(weights_allowed_space)
{
	struct balance_input in;
	struct balance_decision d;

	/* weights 1, 1, 3: fair 40, 40, 120 of 200; a 60 page overloads
	 * server 2 (1.5) but fits server 3 */
	table(&in, 3, (double[]){200, 0, 0});
	in.s[2].weight = 3;
	page(&in, 1, 60);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.s[d.to].id, 3);
	/* server 3 not allowed for the page: no move helps */
	in.p[0].allowed = 0x3;
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_OVER);
	/* server 3 allowed but without room */
	in.p[0].allowed = ~0ull;
	in.s[2].free = in.p[0].page_size;
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_OVER);
	/* server 3 down or draining (weight 0): out of the fair shares too,
	 * which are 100 and 100 now: server 2 takes it */
	in.s[2].free = 1ull << 40;
	in.s[2].weight = 0;
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.s[d.to].id, 2);
}
END_TEST

START_TEST(no_flip_flop)
{
	struct balance_input in;
	struct balance_decision d;

	/* two servers, 1300 and 700 in two pages of 650 on the first: moving
	 * one would make the second 1350 (over 1.25): a flip; no move */
	table(&in, 2, (double[]){1300, 700});
	page(&in, 1, 650);
	page(&in, 2, 650);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_OVER);
	/* the flipped table, judged by the other server: no move either */
	table(&in, 2, (double[]){700, 1300});
	in.self = 1;
	page(&in, 3, 650);
	page(&in, 4, 650);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_OVER);
	/* 200 / 0 with 120 + 80: one move, after which neither moves back */
	table(&in, 2, (double[]){200, 0});
	page(&in, 1, 120);
	page(&in, 2, 80);
	ck_assert_int_eq(balance_decide(&in, &d), BALANCE_MOVE);
	{
		double moved = in.p[d.page].load;

		table(&in, 2, (double[]){200 - moved, moved});
		page(&in, 9, 200 - moved);
		ck_assert_int_ne(balance_decide(&in, &d), BALANCE_MOVE);
		table(&in, 2, (double[]){moved, 200 - moved});
		page(&in, 9, moved);
		ck_assert_int_ne(balance_decide(&in, &d), BALANCE_MOVE);
	}
}
END_TEST

static Suite *balance_suite(void)
{
	Suite *s = suite_create("balance");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, decay);
	tcase_add_test(tc, counting);
	tcase_add_test(tc, self_at_fold);
	tcase_add_test(tc, balanced_and_idle);
	tcase_add_test(tc, right_page);
	tcase_add_test(tc, weights_allowed_space);
	tcase_add_test(tc, no_flip_flop);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(balance_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
