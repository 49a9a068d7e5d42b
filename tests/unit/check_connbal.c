/* check_connbal.c: unit tests for client connection balancing's decisions
 * (peerd/connbal.c, pure): which holder a client is given at connect
 * (connbal_pick: least loaded by weight, the server asked within the
 * floor, then fewest clients, allowed servers), whether a server is over
 * (connbal_over), and which client an overloaded server moves
 * (connbal_decide): nothing on a balanced or idle table, the right client
 * to the right server, weights, cool-down, a client on the server's host
 * kept unless nothing else helps, and no A->B->A. The global srv of peerd
 * stays NULL here. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define ALL (~0ull)

/* n servers (weight 1, no clients), self the first; loads as given. */
static void table(struct connbal_input *in, size_t n, const double *loads)
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
	}
}

/* A client of self with load, on another host, not cooling, allowed
 * everywhere. */
static struct connbal_client *client(struct connbal_input *in, uint64_t id, double load)
{
	struct connbal_client *c = &in->c[in->nclients++];

	memset(c, 0, sizeof(*c));
	c->id = id;
	c->load = load;
	c->allowed = ALL;
	return c;
}

START_TEST(pick_least_loaded)
{
	struct connbal_input in;

	table(&in, 3, (double[]){1000, 400, 700});
	/* the least loaded, wherever the client asked */
	ck_assert_uint_eq(connbal_pick(&in, ALL, 0, 7), 1);
	ck_assert_uint_eq(connbal_pick(&in, ALL, 2, 7), 1);
	/* only among the volume's holders */
	ck_assert_uint_eq(connbal_pick(&in, 0x5, 0, 7), 2);
	ck_assert_uint_eq(connbal_pick(&in, 0x1, 0, 7), 0);
	ck_assert_uint_eq(connbal_pick(&in, 0, 0, 7), 3); /* none: in.n */
	/* a server that takes no clients (draining, holds nothing) is never
	 * given */
	in.s[1].weight = 0;
	ck_assert_uint_eq(connbal_pick(&in, ALL, 0, 7), 2);
	in.s[1].weight = 1;
	/* weights: 1000 on weight 3 is less for its weight than 400 on 1 */
	in.s[0].weight = 3;
	ck_assert_uint_eq(connbal_pick(&in, ALL, 2, 7), 0);
}
END_TEST

START_TEST(pick_ties)
{
	struct connbal_input in;
	unsigned seen[3] = {0, 0, 0};

	/* an idle group: the server asked keeps the client (as before) */
	table(&in, 3, (double[]){0, 0, 0});
	ck_assert_uint_eq(connbal_pick(&in, ALL, 1, 7), 1);
	ck_assert_uint_eq(connbal_pick(&in, ALL, 2, 8), 2);
	/* loads within the floor of the least are no reason to leave it */
	table(&in, 3, (double[]){40, 0, 10});
	ck_assert_uint_eq(connbal_pick(&in, ALL, 0, 7), 0);
	table(&in, 3, (double[]){60, 0, 10});
	ck_assert_uint_ne(connbal_pick(&in, ALL, 0, 7), 0);
	/* the server asked holds nothing of the volume: the fewest clients */
	table(&in, 3, (double[]){0, 0, 0});
	in.s[1].clients = 3;
	in.s[2].clients = 1;
	ck_assert_uint_eq(connbal_pick(&in, 0x6, 0, 7), 2);
	/* ... for their weight */
	in.s[1].weight = 4;
	ck_assert_uint_eq(connbal_pick(&in, 0x6, 0, 7), 1);
	/* and a tie of everything spreads clients by their ids */
	table(&in, 3, (double[]){0, 0, 0});
	for (uint64_t id = 1; id <= 300; id++)
		seen[connbal_pick(&in, 0x6, 0, id)]++;
	ck_assert_uint_eq(seen[0], 0);
	ck_assert_uint_gt(seen[1], 100);
	ck_assert_uint_gt(seen[2], 100);
}
END_TEST

START_TEST(over)
{
	struct connbal_input in;

	table(&in, 3, (double[]){1000, 500, 500}); /* 50%, fair 33% */
	ck_assert_int_eq(connbal_over(&in, 0), 1);
	ck_assert_int_eq(connbal_over(&in, 1), 0);
	table(&in, 3, (double[]){40, 0, 0}); /* all of it, but under the floor */
	ck_assert_int_eq(connbal_over(&in, 0), 0);
	table(&in, 3, (double[]){1000, 900, 800}); /* 1.11 x fair */
	ck_assert_int_eq(connbal_over(&in, 0), 0);
	/* weight 2: its fair share is 1000 of 2000 */
	table(&in, 3, (double[]){1000, 500, 500});
	in.s[0].weight = 2;
	ck_assert_int_eq(connbal_over(&in, 0), 0);
}
END_TEST

START_TEST(nothing_when_balanced)
{
	struct connbal_input in;
	struct connbal_decision d;

	table(&in, 3, (double[]){1000, 900, 800});
	client(&in, 1, 500);
	client(&in, 2, 500);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_FAIR);
	/* an idle group: one server has every client, under the floor */
	table(&in, 3, (double[]){40, 0, 0});
	client(&in, 1, 20);
	client(&in, 2, 20);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_IDLE);
	table(&in, 3, (double[]){0, 0, 0});
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_IDLE);
	/* self takes no clients (draining): never judged */
	table(&in, 3, (double[]){3000, 0, 0});
	client(&in, 1, 3000);
	in.s[0].weight = 0;
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_IDLE);
}
END_TEST

START_TEST(two_clients_on_one)
{
	struct connbal_input in;
	struct connbal_decision d;

	/* the e2e case: two equal clients on server 1 of three */
	table(&in, 3, (double[]){2000, 0, 30});
	client(&in, 0xa, 1000);
	client(&in, 0xb, 1000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(d.to, 1); /* the least loaded */
	ck_assert_double_eq_tol(d.share, 2000 / 2030.0, 1e-9);
	ck_assert_double_eq_tol(d.fair, 1 / 3.0, 1e-9);
	ck_assert_double_eq_tol(d.client_share, 1000 / 2030.0, 1e-9);
	/* then: one each on 1 and 2; moving the other to 3 would only move
	 * the imbalance: server 1 stays over, and nothing moves */
	table(&in, 3, (double[]){1000, 1000, 30});
	client(&in, 0xb, 1000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_OVER);
	/* nor does server 2 (its client came lately, and would not help) */
	in.self = 1;
	in.c[0].id = 0xa;
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_OVER);
	in.c[0].cooling = 1;
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_OVER);
	/* one client carrying everything has nowhere to go */
	table(&in, 3, (double[]){2000, 0, 0});
	client(&in, 0xa, 2000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_OVER);
}
END_TEST

START_TEST(right_client_right_server)
{
	struct connbal_input in;
	struct connbal_decision d;

	/* 3000 on self: clients of 1500, 1000, 500; others at 1000 and 500.
	 * Fair 1500. The 1000 to server 3 leaves 2000 (1.33) and 1500 (1.0);
	 * the 500 to server 3: 2500 (1.67); the 1500: 1.0 and 2000 (1.33). */
	table(&in, 3, (double[]){3000, 1000, 500});
	client(&in, 1, 1500);
	client(&in, 2, 1000);
	client(&in, 3, 500);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.c[d.client].id, 2);
	ck_assert_uint_eq(d.to, 2);
	/* a client that can only go where its volumes are */
	in.c[1].allowed = 0x3; /* self and server 2 */
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_ne(in.c[d.client].id, 2);
}
END_TEST

START_TEST(weights)
{
	struct connbal_input in;
	struct connbal_decision d;

	/* server 3 weighs 2: fair shares 750, 750, 1500 of 3000; it takes the
	 * client although it carries more than server 2 */
	table(&in, 3, (double[]){2000, 400, 600});
	in.s[2].weight = 2;
	client(&in, 1, 1000);
	client(&in, 2, 1000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(d.to, 2);
	/* self weighs 3 (fair 1800 of 3000): within its threshold */
	table(&in, 3, (double[]){2000, 400, 600});
	in.s[0].weight = 3;
	client(&in, 1, 1000);
	client(&in, 2, 1000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_FAIR);
}
END_TEST

START_TEST(cooldown)
{
	struct connbal_input in;
	struct connbal_decision d;

	table(&in, 3, (double[]){2000, 0, 0});
	client(&in, 1, 1000)->cooling = 1;
	client(&in, 2, 1000);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.c[d.client].id, 2);
	in.c[1].cooling = 1; /* both moved here lately: they stay */
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_OVER);
}
END_TEST

START_TEST(local_kept)
{
	struct connbal_input in;
	struct connbal_decision d;

	/* a client on this server's host is kept while another helps, even
	 * one that helps less */
	table(&in, 3, (double[]){2200, 0, 0});
	client(&in, 1, 1100)->local = 1;
	client(&in, 2, 700);
	client(&in, 3, 400);
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(in.c[d.client].id, 2);
	/* not overloaded: it stays */
	table(&in, 3, (double[]){900, 800, 800});
	client(&in, 1, 900)->local = 1;
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_FAIR);
	/* overloaded with local clients only: one goes */
	table(&in, 3, (double[]){2000, 0, 0});
	client(&in, 1, 1000)->local = 1;
	client(&in, 2, 1000)->local = 1;
	ck_assert_int_eq(connbal_decide(&in, &d), BALANCE_MOVE);
	ck_assert_uint_eq(d.to, 1);
}
END_TEST

START_TEST(no_ping_pong)
{
	struct connbal_input in;
	struct connbal_decision d;
	double other[2] = {1100, 900};
	int at = 0, moves = 0; /* client 9 starts on server 1 (index 0) */

	/* two servers with a client each, and client 9 that may move; the
	 * loads flip around even each interval: it moves once at most, and
	 * never back */
	for (int round = 0; round < 20; round++) {
		double jitter = round % 2 ? 60 : -60;
		double o[2] = {other[0] + jitter, other[1] - jitter};

		table(&in, 2, (double[]){o[0] + (at == 0 ? 400 : 0), o[1] + (at == 1 ? 400 : 0)});
		in.self = (size_t)at;
		client(&in, 9, 400);
		client(&in, 1, o[at]);
		if (connbal_decide(&in, &d) == BALANCE_MOVE) {
			ck_assert_uint_eq(in.c[d.client].id, 9);
			at = (int)d.to;
			moves++;
		}
		/* and the other server, judging itself, never sends its own */
		table(&in, 2, (double[]){o[0] + (at == 0 ? 400 : 0), o[1] + (at == 1 ? 400 : 0)});
		in.self = (size_t)(1 - at);
		client(&in, 1, o[1 - at]);
		ck_assert_int_ne(connbal_decide(&in, &d), BALANCE_MOVE);
	}
	ck_assert_int_le(moves, 1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("connbal");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, pick_least_loaded);
	tcase_add_test(tc, pick_ties);
	tcase_add_test(tc, over);
	tcase_add_test(tc, nothing_when_balanced);
	tcase_add_test(tc, two_clients_on_one);
	tcase_add_test(tc, right_client_right_server);
	tcase_add_test(tc, weights);
	tcase_add_test(tc, cooldown);
	tcase_add_test(tc, local_kept);
	tcase_add_test(tc, no_ping_pong);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
