/* check_placement.c: unit tests for the pure parts of peerd/placement.c:
 * freezing a volume's initial layout (placement_freeze_layout: the servers
 * and the weights catalog.c would lay the pages out with, a removed
 * member's recorded weight, a layout frozen already left alone) and what
 * placement_tick decides for a volume (placement_decide: pages off a
 * draining or disallowed server to the largest deficit, weight shares while
 * balancing, moves under way counted, balanced only at exactly the share).
 * No server state: srv stays NULL. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

/* A catalog with members 1..n (weight id) and one volume on servers 1..n. */
static Pv__Catalog *catalog_of(size_t n)
{
	Pv__Catalog *c = calloc(1, sizeof(*c));
	Pv__VolumeInfo *vi = malloc(sizeof(*vi));

	pv__catalog__init(c);
	pv__volume_info__init(vi);
	c->members = calloc(n, sizeof(*c->members));
	vi->servers = calloc(n, sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		Pv__Member *m = malloc(sizeof(*m));

		pv__member__init(m);
		m->id = (uint32_t)i + 1;
		m->weight = m->id;
		c->members[c->n_members++] = m;
		vi->servers[vi->n_servers++] = m->id;
	}
	vi->name = strdup("v");
	c->volumes = calloc(1, sizeof(*c->volumes));
	c->volumes[c->n_volumes++] = vi;
	return c;
}

START_TEST(freeze_takes_servers_and_weights)
{
	Pv__Catalog *c = catalog_of(3);
	Pv__VolumeInfo *vi = c->volumes[0];

	c->members[1]->weight = 0; /* as catalog.c: at least 1 */
	ck_assert_int_eq(placement_freeze_layout(c, vi), 0);
	ck_assert_uint_eq(vi->n_layout_servers, 3);
	ck_assert_uint_eq(vi->n_layout_weights, 3);
	for (size_t i = 0; i < 3; i++)
		ck_assert_uint_eq(vi->layout_servers[i], i + 1);
	ck_assert_uint_eq(vi->layout_weights[0], 1);
	ck_assert_uint_eq(vi->layout_weights[1], 1);
	ck_assert_uint_eq(vi->layout_weights[2], 3);

	/* frozen once: later weights and servers do not change it */
	c->members[2]->weight = 9;
	vi->servers[0] = 7;
	ck_assert_int_eq(placement_freeze_layout(c, vi), 0);
	ck_assert_uint_eq(vi->layout_servers[0], 1);
	ck_assert_uint_eq(vi->layout_weights[2], 3);
	catalog_pb_free(c);
}
END_TEST

START_TEST(freeze_removed_member_weight)
{
	Pv__Catalog *c = catalog_of(2);
	Pv__VolumeInfo *vi = c->volumes[0];
	Pv__RemovedMember *r = malloc(sizeof(*r));

	/* server 3 left; the volume still lists it with its recorded weight */
	pv__removed_member__init(r);
	r->id = 3;
	r->weight = 5;
	c->removed = calloc(1, sizeof(*c->removed));
	c->removed[c->n_removed++] = r;
	vi->servers = realloc(vi->servers, 3 * sizeof(uint32_t));
	vi->servers[vi->n_servers++] = 3;
	ck_assert_int_eq(placement_freeze_layout(c, vi), 0);
	ck_assert_uint_eq(vi->n_layout_servers, 3);
	ck_assert_uint_eq(vi->layout_servers[2], 3);
	ck_assert_uint_eq(vi->layout_weights[2], 5);
	catalog_pb_free(c);
}
END_TEST

/* An input: npages over servers ids[n] (weights, owned), this server self. */
static struct placement_input input(uint64_t npages, uint32_t self, size_t n, const uint32_t *ids,
				    const uint32_t *weights, const uint64_t *owned)
{
	struct placement_input in;

	memset(&in, 0, sizeof(in));
	in.npages = npages;
	in.self = self;
	in.all_up = 1;
	in.n = n;
	in.self_off = 1;
	for (size_t i = 0; i < n; i++) {
		in.ids[i] = ids[i];
		in.weights[i] = weights[i];
		in.owned[i] = owned[i];
		if (ids[i] == self) {
			in.self_owned = owned[i];
			in.self_off = !weights[i];
		}
	}
	return in;
}

START_TEST(decide_off_server)
{
	static const uint32_t ids[] = {1, 2, 3}, w[] = {1, 1, 0};
	static const uint64_t owned[] = {40, 50, 10};
	struct placement_input in = input(100, 3, 3, ids, w, owned);
	uint32_t to;
	uint64_t share;

	/* server 3 drains: its pages go to the largest deficit (1: 50 - 40) */
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_MOVE);
	ck_assert_uint_eq(to, 1);
	ck_assert_uint_eq(share, 0);
	/* moves into 1 under way count: then 2 */
	in.owned[0] = 50;
	in.owned[1] = 45;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_MOVE);
	ck_assert_uint_eq(to, 2);
	/* not among the volume's servers at all */
	in = input(100, 4, 3, ids, w, owned);
	in.self_owned = 5;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_MOVE);
	/* nobody can take them (the others down or draining) */
	in.weights[0] = in.weights[1] = 0;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_NO_TARGET);
	ck_assert_uint_eq(to, 0);
}
END_TEST

START_TEST(decide_shares)
{
	static const uint32_t ids[] = {1, 2, 3, 4}, w[] = {1, 1, 1, 1};
	static const uint64_t owned[] = {34, 33, 33, 0};
	struct placement_input in = input(100, 1, 4, ids, w, owned);
	uint32_t to;
	uint64_t share;

	/* not balancing: an admin's page moves are left alone */
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_NOTHING);
	/* set-servers added server 4: 1 holds 34, its share is 25 */
	in.balancing = 1;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_MOVE);
	ck_assert_uint_eq(to, 4);
	ck_assert_uint_eq(share, 25);
	/* exactly at its share, every server up: balanced */
	in.self_owned = in.owned[0] = 25;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_BALANCED);
	/* ... not while an allowed server is down (its share would come back) */
	in.all_up = 0;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_NOTHING);
	in.all_up = 1;
	/* below its share it keeps looking (an overshoot may still come) */
	in.self_owned = in.owned[0] = 24;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_NOTHING);
	/* above its share but the others' deficits are covered by moves under
	 * way: wait */
	in.self_owned = in.owned[0] = 26;
	in.owned[1] = in.owned[2] = in.owned[3] = 25;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_NOTHING);
	/* weights: 1, 1, 1, 3 -> 17, 17, 16, 50 (largest remainder, earlier first) */
	in.weights[3] = 3;
	in.self_owned = in.owned[0] = 34;
	in.owned[1] = in.owned[2] = 33;
	in.owned[3] = 0;
	ck_assert_int_eq(placement_decide(&in, &to, &share), PLACE_MOVE);
	ck_assert_uint_eq(share, 17);
	ck_assert_uint_eq(to, 4);
}
END_TEST

/* A move counts as under way until this server knows its switch, whatever
 * state it is in: the page must count at exactly one server at every
 * moment, or placement moves one page too many (seen once: a source
 * started a fifth move while its switched move's route was being
 * recorded, and one server ended with a page beyond its share). */
START_TEST(move_under_way_by_epoch)
{
	struct migrate_info mv = {.page = 3, .from = 2, .to = 4, .epoch = 5};

	/* queued, copying, switching: under way while the page is at epoch 5 */
	for (enum mig_state st = MIG_QUEUED; st <= MIG_SWITCHING; st++) {
		mv.state = st;
		ck_assert(placement_move_under_way(&mv, 5));
		/* the route came before the heartbeat that says so: done */
		ck_assert(!placement_move_under_way(&mv, 6));
	}
	/* switched at the source, its route not recorded yet (the owner here
	 * is still the source): under way */
	mv.state = MIG_SWITCHED;
	ck_assert(placement_move_under_way(&mv, 5));
	/* the route is known here: the target owns the page, counted there */
	ck_assert(!placement_move_under_way(&mv, 6));
	/* a switched move still listed while the page moved on again */
	ck_assert(!placement_move_under_way(&mv, 9));
	/* a target's own view of a move in never counts (the source's does) */
	mv.state = MIG_IN;
	ck_assert(!placement_move_under_way(&mv, 5));
}
END_TEST

static Suite *placement_suite(void)
{
	Suite *s = suite_create("placement");
	TCase *t = tcase_create("pure");

	tcase_add_test(t, freeze_takes_servers_and_weights);
	tcase_add_test(t, freeze_removed_member_weight);
	tcase_add_test(t, decide_off_server);
	tcase_add_test(t, decide_shares);
	tcase_add_test(t, move_under_way_by_epoch);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(placement_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
