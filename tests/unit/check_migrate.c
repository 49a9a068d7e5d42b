/* check_migrate.c: unit tests for the pure parts of page migration: where
 * the source sends each part of a page it is moving out (migrate_route, the
 * seed's Table 2) in every state, including a state loaded back from a
 * move's record after a restart; where a piece is served relative to the
 * piece in transit (pv_piece_at); how routing entries merge by epoch
 * (pv_route_newer, also over chains of updates arriving out of order); how
 * pages are shared out over servers by weight (pv_apportion); and the O(1)
 * bookkeeping of owned pages when a page changes owner (catalog_route_set:
 * owned counts, the connection table, the pages owned here), checked
 * against a recount after every change. The move itself (copy, dual
 * writes, crash resume) is covered end to end (tests/e2e/migrate-*.sh).
 * No files, no sockets: the global srv of peerd is a stub that only names
 * this server. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pagemath.h"
#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */
static struct server server;

#define SELF 1u /* this server's id in the routing cases */

static const uint32_t ops[] = {PV_OP_READ, PV_OP_WRITE, PV_OP_TRIM};
static const enum mig_state states[] = {MIG_QUEUED,    MIG_BEGIN,    MIG_COPYING,
					MIG_SWITCHING, MIG_SWITCHED, MIG_IN};
#define NSTATES (sizeof(states) / sizeof(states[0]))
#define NOPS	(sizeof(ops) / sizeof(ops[0]))

static void setup(void)
{
	memset(&server, 0, sizeof(server));
	server.cfg.id = SELF;
	srv = &server;
}

static void teardown(void)
{
	srv = NULL;
}

static const char *route_name(enum mig_route r)
{
	switch (r) {
	case MIG_ROUTE_LOCAL:
		return "LOCAL";
	case MIG_ROUTE_TARGET:
		return "TARGET";
	case MIG_ROUTE_BOTH:
		return "BOTH";
	}
	return "?";
}

/* What Table 2 says, written out independently of migrate.c: before the
 * first piece starts everything stays at A; with piece k in transit,
 * pieces below k are at B only, piece k is read at A and written at A and
 * B, pieces above k stay at A; from the switch on everything is at B. The
 * target's own record (MIG_IN) routes nothing back to A: what reaches the
 * target for the page is its to serve. */
static enum mig_route table2(enum mig_state st, uint32_t p, uint32_t k, uint32_t op)
{
	switch (st) {
	case MIG_QUEUED:
	case MIG_BEGIN:
		return MIG_ROUTE_LOCAL;
	case MIG_COPYING:
		if (p < k)
			return MIG_ROUTE_TARGET;
		if (p > k)
			return MIG_ROUTE_LOCAL;
		return op == PV_OP_READ ? MIG_ROUTE_LOCAL : MIG_ROUTE_BOTH;
	case MIG_SWITCHING:
	case MIG_SWITCHED:
	case MIG_IN:
		return MIG_ROUTE_TARGET;
	}
	ck_abort_msg("state %d not in the table", (int)st);
	return MIG_ROUTE_LOCAL;
}

/* Every state, every piece p of pages of 1 to 9 pieces, every piece in
 * transit k (k = pieces: every piece copied), READ, WRITE and TRIM. */
START_TEST(route_every_state_piece_and_op)
{
	for (size_t s = 0; s < NSTATES; s++)
		for (uint32_t n = 1; n <= 9; n++)
			for (uint32_t k = 0; k <= n; k++)
				for (uint32_t p = 0; p < n; p++)
					for (size_t o = 0; o < NOPS; o++) {
						enum mig_route got =
						    migrate_route(states[s], p, k, ops[o]);
						enum mig_route want =
						    table2(states[s], p, k, ops[o]);

						if (got != want)
							ck_abort_msg(
							    "%s of piece %u (of %u) with piece %u "
							    "in transit, state %s: %s, want %s",
							    wire_op_name(ops[o]), p, n, k,
							    migrate_state_name(states[s]),
							    route_name(got), route_name(want));
					}
}
END_TEST

/* Table 2 as the seed prints it, for a page of 4 pieces: one row per
 * stage, one letter per piece (A: at the source, B: at the target, 2: at
 * both), reads and writes. "Finish move, piece j" is the same routing as
 * "start move, piece j + 1". */
START_TEST(route_table2_rows)
{
	static const struct {
		enum mig_state st;
		uint32_t k;
		const char *reads, *writes;
	} rows[] = {
	    {MIG_QUEUED, 0, "AAAA", "AAAA"},	/* 1: not started */
	    {MIG_BEGIN, 0, "AAAA", "AAAA"},	/* the target prepares */
	    {MIG_COPYING, 0, "AAAA", "2AAA"},	/* 2: start move, piece 1 */
	    {MIG_COPYING, 1, "BAAA", "B2AA"},	/* 3/4: finish 1, start 2 */
	    {MIG_COPYING, 2, "BBAA", "BB2A"},	/* 5: finish 2, start 3 */
	    {MIG_COPYING, 3, "BBBA", "BBB2"},	/* ... */
	    {MIG_COPYING, 4, "BBBB", "BBBB"},	/* every piece copied */
	    {MIG_SWITCHING, 4, "BBBB", "BBBB"}, /* n: routing table updated */
	    {MIG_SWITCHED, 4, "BBBB", "BBBB"},
	};
	static const char letter[] = {
	    [MIG_ROUTE_LOCAL] = 'A', [MIG_ROUTE_TARGET] = 'B', [MIG_ROUTE_BOTH] = '2'};

	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		char reads[5] = "", writes[5] = "", trims[5] = "";

		for (uint32_t p = 0; p < 4; p++) {
			reads[p] = letter[migrate_route(rows[r].st, p, rows[r].k, PV_OP_READ)];
			writes[p] = letter[migrate_route(rows[r].st, p, rows[r].k, PV_OP_WRITE)];
			trims[p] = letter[migrate_route(rows[r].st, p, rows[r].k, PV_OP_TRIM)];
		}
		ck_assert_msg(!strcmp(reads, rows[r].reads) && !strcmp(writes, rows[r].writes) &&
				  !strcmp(trims, rows[r].writes),
			      "row %zu (%s, piece %u): reads %s writes %s trims %s, want reads %s "
			      "writes (and trims) %s",
			      r, migrate_state_name(rows[r].st), rows[r].k, reads, writes, trims,
			      rows[r].reads, rows[r].writes);
	}
}
END_TEST

/* Over the whole life of a move (queued, starting, copying piece 0 .. n,
 * switching, switched) each piece's writes go A ... A, then both exactly
 * once (the stage that copies it), then B ... B: never back to A after B
 * had it alone, never from A to B without a dual-write stage in between
 * (B would miss the writes made while the piece was read). And at every
 * stage a READ goes where every WRITE of that stage went: it sees the
 * latest data. */
START_TEST(route_each_piece_moves_once)
{
	for (uint32_t n = 1; n <= 16; n++) {
		for (uint32_t p = 0; p < n; p++) {
			char life[32] = "";
			size_t len = 0;
			enum mig_state st[40];
			uint32_t kk[40];
			size_t stages = 0;

			st[stages] = MIG_QUEUED, kk[stages++] = 0;
			st[stages] = MIG_BEGIN, kk[stages++] = 0;
			for (uint32_t k = 0; k <= n; k++)
				st[stages] = MIG_COPYING, kk[stages++] = k;
			st[stages] = MIG_SWITCHING, kk[stages++] = n;
			st[stages] = MIG_SWITCHED, kk[stages++] = n;
			for (size_t i = 0; i < stages; i++) {
				for (size_t o = 1; o < NOPS; o++) {
					enum mig_route w = migrate_route(st[i], p, kk[i], ops[o]);
					enum mig_route r =
					    migrate_route(st[i], p, kk[i], PV_OP_READ);

					ck_assert_msg(r != MIG_ROUTE_BOTH,
						      "a READ of piece %u goes to both", p);
					ck_assert_msg(
					    w == MIG_ROUTE_BOTH || w == r,
					    "stage %zu, piece %u of %u: %s goes %s but READ "
					    "%s",
					    i, p, n, wire_op_name(ops[o]), route_name(w),
					    route_name(r));
				}
				enum mig_route w = migrate_route(st[i], p, kk[i], PV_OP_WRITE);
				char c = w == MIG_ROUTE_LOCAL  ? 'A'
					 : w == MIG_ROUTE_BOTH ? '2'
							       : 'B';

				if (!len || life[len - 1] != c)
					life[len++] = c;
			}
			life[len] = 0;
			ck_assert_msg(
			    !strcmp(life, "A2B"),
			    "piece %u of %u: writes go %s over the move, want A, then both "
			    "once, then B",
			    p, n, life);
		}
	}
}
END_TEST

/* After a restart each side knows only its move's record (LMDB: state and
 * piece in transit, pv.Migration). Routing from the record loaded back is
 * the routing before the crash, at every stage: a move resumes from the
 * piece in transit with the same split, never from the start. */
START_TEST(route_after_restart_from_every_stage)
{
	const uint32_t n = 6;

	for (size_t s = 0; s < NSTATES; s++)
		for (uint32_t k = 0; k <= n; k++) {
			Pv__Migration rec = PV__MIGRATION__INIT, *back;
			uint8_t buf[256];
			size_t len;

			rec.volume = "vol";
			rec.volume_id = 7;
			rec.page = 12;
			rec.source = 1;
			rec.target = 2;
			rec.piece_size = 64u << 10;
			rec.pieces = n;
			rec.piece = k;
			rec.epoch = 3;
			rec.state = (uint32_t)states[s];
			len = pv__migration__get_packed_size(&rec);
			ck_assert_uint_le(len, sizeof(buf));
			pv__migration__pack(&rec, buf);
			back = pv__migration__unpack(NULL, len, buf);
			ck_assert_ptr_nonnull(back);
			ck_assert_uint_eq(back->state, (uint32_t)states[s]);
			ck_assert_uint_eq(back->piece, k);
			ck_assert_uint_eq(back->pieces, n);
			for (uint32_t p = 0; p < n; p++)
				for (size_t o = 0; o < NOPS; o++)
					ck_assert_msg(
					    migrate_route((enum mig_state)back->state, p,
							  back->piece, ops[o]) ==
						migrate_route(states[s], p, k, ops[o]),
					    "state %s piece %u in transit: %s of piece %u "
					    "routed otherwise after a restart",
					    migrate_state_name(states[s]), k, wire_op_name(ops[o]),
					    p);
			pv__migration__free_unpacked(back, NULL);
		}
}
END_TEST

START_TEST(state_names)
{
	for (size_t i = 0; i < NSTATES; i++) {
		const char *a = migrate_state_name(states[i]);

		ck_assert_ptr_nonnull(a);
		ck_assert_msg(a[0] && strcmp(a, "unknown"), "state %d has no name", (int)states[i]);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(a, migrate_state_name(states[j]));
	}
	ck_assert_str_eq(migrate_state_name((enum mig_state)99), "unknown");
}
END_TEST

START_TEST(piece_at)
{
	ck_assert_int_eq(pv_piece_at(0, 0), PV_PIECE_BOTH);
	ck_assert_int_eq(pv_piece_at(1, 0), PV_PIECE_SOURCE);
	ck_assert_int_eq(pv_piece_at(0, 1), PV_PIECE_TARGET);
	ck_assert_int_eq(pv_piece_at(5, 5), PV_PIECE_BOTH);
	ck_assert_int_eq(pv_piece_at(4, 5), PV_PIECE_TARGET);
	ck_assert_int_eq(pv_piece_at(6, 5), PV_PIECE_SOURCE);
	/* k = pieces: every piece copied */
	for (uint32_t p = 0; p < 64; p++)
		ck_assert_int_eq(pv_piece_at(p, 64), PV_PIECE_TARGET);
	/* the extremes of 32 bits */
	ck_assert_int_eq(pv_piece_at(UINT32_MAX, UINT32_MAX), PV_PIECE_BOTH);
	ck_assert_int_eq(pv_piece_at(UINT32_MAX - 1, UINT32_MAX), PV_PIECE_TARGET);
	ck_assert_int_eq(pv_piece_at(UINT32_MAX, 0), PV_PIECE_SOURCE);
	ck_assert_int_eq(pv_piece_at(0, UINT32_MAX), PV_PIECE_TARGET);
	/* exactly one piece is in transit, those below it at B, above at A */
	for (uint32_t k = 0; k < 40; k++)
		for (uint32_t p = 0; p < 40; p++)
			ck_assert_int_eq(pv_piece_at(p, k), p < k    ? PV_PIECE_TARGET
							    : p == k ? PV_PIECE_BOTH
								     : PV_PIECE_SOURCE);
}
END_TEST

START_TEST(route_newer)
{
	ck_assert_int_eq(pv_route_newer(0, 1), 1);
	ck_assert_int_eq(pv_route_newer(0, 0), 0); /* equal: kept */
	ck_assert_int_eq(pv_route_newer(5, 5), 0);
	ck_assert_int_eq(pv_route_newer(5, 4), 0); /* lower: never */
	ck_assert_int_eq(pv_route_newer(5, 0), 0);
	ck_assert_int_eq(pv_route_newer(5, 6), 1);
	ck_assert_int_eq(pv_route_newer(1, 1000000), 1);
	ck_assert_int_eq(pv_route_newer(UINT32_MAX, (uint64_t)UINT32_MAX + 1), 1);
	ck_assert_int_eq(pv_route_newer(UINT64_MAX - 1, UINT64_MAX), 1);
	ck_assert_int_eq(pv_route_newer(UINT64_MAX, UINT64_MAX - 1), 0);
	ck_assert_int_eq(pv_route_newer(UINT64_MAX, 0), 0);
}
END_TEST

/* A volume built by hand: npages pages laid out over servers 1, 2, 3 of
 * weights 1, 1, 2, the counts computed as a catalog install does. */
static struct volume *volume_new(uint64_t npages)
{
	static const uint32_t servers[] = {1, 2, 3}, weights[] = {1, 1, 2};
	struct volume *v = calloc(1, sizeof(*v));

	ck_assert_ptr_nonnull(v);
	snprintf(v->name, sizeof(v->name), "vol");
	v->npages = npages;
	v->page_size = 1u << 20;
	v->size = npages << 20;
	v->fd = -1;
	v->owner = calloc(npages, sizeof(*v->owner));
	v->epoch = calloc(npages, sizeof(*v->epoch));
	ck_assert_ptr_nonnull(v->owner);
	ck_assert_ptr_nonnull(v->epoch);
	ck_assert_int_eq(pv_layout(npages, servers, weights, 3, v->owner), 0);
	catalog_routes_changed(v);
	return v;
}

static void volume_free(struct volume *v)
{
	free(v->owner);
	free(v->epoch);
	free(v);
}

/* The counts catalog_route_set keeps must be those of a recount: pages
 * owned here, the connection table (every server owning a page, once,
 * ascending), each holder's count. */
static void check_counts(const struct volume *v, const char *when)
{
	uint64_t count[256] = {0}, here = 0;
	uint32_t holders[PEERD_MAX_MEMBERS];
	size_t nholders = 0, n;

	for (uint64_t p = 0; p < v->npages; p++) {
		ck_assert_uint_lt(v->owner[p], 256);
		count[v->owner[p]]++;
	}
	for (uint32_t id = 0; id < 256; id++)
		if (count[id])
			nholders++;
	here = count[srv->cfg.id];
	ck_assert_msg(v->owned_here == here, "%s: owned_here %llu, recount %llu", when,
		      (unsigned long long)v->owned_here, (unsigned long long)here);
	n = catalog_holders(v, holders, PEERD_MAX_MEMBERS);
	ck_assert_msg(n == nholders, "%s: %zu holders, recount %zu", when, n, nholders);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(count[holders[i]] > 0, "%s: holder %u owns no page", when,
			      holders[i]);
		if (i)
			ck_assert_msg(holders[i - 1] < holders[i],
				      "%s: holders not ascending (%u then %u)", when,
				      holders[i - 1], holders[i]);
	}
	for (size_t i = 0; i < v->nowned; i++)
		if (v->owned_count[i])
			ck_assert_msg(v->owned_count[i] == count[v->owned_ids[i]],
				      "%s: server %u counted %llu pages, recount %llu", when,
				      v->owned_ids[i], (unsigned long long)v->owned_count[i],
				      (unsigned long long)count[v->owned_ids[i]]);
}

START_TEST(route_set_keeps_counts)
{
	struct volume *v = volume_new(100);
	uint32_t holders[PEERD_MAX_MEMBERS];
	char when[64];

	check_counts(v, "initial layout");
	ck_assert_uint_eq(v->owned_here, 25);

	/* an epoch bump without a new owner changes no count */
	catalog_route_set(v, 0, v->owner[0], 1);
	check_counts(v, "same owner");
	ck_assert_uint_eq(v->epoch[0], 1);
	ck_assert_uint_eq(v->owned_here, 25);

	/* every page of server 1 (this one) to 2: none owned here, 1 no
	 * longer a holder */
	for (uint64_t p = 0; p < v->npages; p++)
		if (v->owner[p] == SELF)
			catalog_route_set(v, p, 2, v->epoch[p] + 1);
	check_counts(v, "server 1 emptied");
	ck_assert_uint_eq(v->owned_here, 0);
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 2);
	ck_assert_uint_eq(holders[0], 2);
	ck_assert_uint_eq(holders[1], 3);

	/* a server that held nothing gains one page: a holder, in order */
	catalog_route_set(v, 50, 4, v->epoch[50] + 1);
	check_counts(v, "server 4 gains page 50");
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 3);
	ck_assert_uint_eq(holders[2], 4);
	catalog_route_set(v, 51, SELF, v->epoch[51] + 1);
	check_counts(v, "server 1 gains page 51");
	ck_assert_uint_eq(v->owned_here, 1);
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 4);
	ck_assert_uint_eq(holders[0], 1);

	/* many random moves, among many more servers over time than there
	 * are slots at once (a slot freed is used again) */
	srandom(13);
	for (int i = 0; i < 20000; i++) {
		uint64_t p = (uint64_t)random() % v->npages;
		uint32_t to = 1 + (uint32_t)((i / 500 + random() % 4) % 200);

		catalog_route_set(v, p, to, v->epoch[p] + 1);
		if (i % 97 == 0) {
			snprintf(when, sizeof(when), "random move %d", i);
			check_counts(v, when);
		}
	}
	check_counts(v, "after the random moves");

	/* the recount agrees with the counts kept */
	{
		struct volume copy = *v;

		catalog_routes_changed(&copy);
		ck_assert_uint_eq(copy.owned_here, v->owned_here);
		ck_assert_uint_eq(copy.nholders, v->nholders);
		ck_assert_mem_eq(copy.holders, v->holders, v->nholders * sizeof(uint32_t));
	}
	volume_free(v);
}
END_TEST

/* A receiver's merge (migrate_route_learn's rule on a table in memory):
 * take an entry if its epoch is newer. */
static void merge(struct volume *v, uint64_t page, uint32_t owner, uint64_t epoch)
{
	if (pv_route_newer(v->epoch[page], epoch))
		catalog_route_set(v, page, owner, (uint32_t)epoch);
}

/* A page moves 1 -> 2 -> 3 -> 2 -> 3 -> 2 -> 3 (epochs 1..6): whatever
 * order the six updates arrive in, every receiver ends at epoch 6 and
 * owner 3, and a stale update arriving last changes nothing. */
START_TEST(route_chain_out_of_order)
{
	static const uint32_t owner_at[] = {0, 2, 3, 2, 3, 2, 3 /* epoch 6 */};
	uint32_t order[6] = {1, 2, 3, 4, 5, 6};
	unsigned perms = 0;

	/* every permutation of 6 (Heap's algorithm, iterative) */
	uint32_t c[6] = {0};
	size_t i = 0;

	for (;;) {
		struct volume *v = volume_new(8);
		uint64_t page = 3;

		for (size_t j = 0; j < 6; j++)
			merge(v, page, owner_at[order[j]], order[j]);
		ck_assert_uint_eq(v->epoch[page], 6);
		ck_assert_uint_eq(v->owner[page], owner_at[6]);
		check_counts(v, "after a chain");
		/* a late copy of any older entry changes nothing */
		for (uint32_t e = 0; e <= 6; e++)
			merge(v, page, 9, e);
		ck_assert_uint_eq(v->owner[page], owner_at[6]);
		ck_assert_uint_eq(v->epoch[page], 6);
		volume_free(v);
		perms++;

		while (i < 6 && c[i] >= i) {
			c[i] = 0;
			i++;
		}
		if (i >= 6)
			break;
		{
			size_t a = i % 2 ? c[i] : 0;
			uint32_t t = order[a];

			order[a] = order[i];
			order[i] = t;
		}
		c[i]++;
		i = 0;
	}
	ck_assert_uint_eq(perms, 720);
}
END_TEST

/* The reference for pv_apportion: floors, then one more page to each of the
 * largest remainders (ties to the earlier server). */
static void apportion_ref(uint64_t npages, const uint32_t *w, size_t n, uint64_t *out)
{
	unsigned __int128 total = 0;
	uint64_t given = 0;
	int extra[64] = {0};

	ck_assert_uint_le(n, 64);
	for (size_t i = 0; i < n; i++)
		total += w[i];
	for (size_t i = 0; i < n; i++) {
		out[i] = total ? (uint64_t)((unsigned __int128)npages * w[i] / total) : 0;
		given += out[i];
	}
	while (total && given < npages) {
		size_t best = n;
		unsigned __int128 best_rem = 0;

		for (size_t i = 0; i < n; i++) {
			unsigned __int128 rem = (unsigned __int128)npages * w[i] % total;

			if (!w[i] || extra[i])
				continue;
			if (best == n || rem > best_rem)
				best = i, best_rem = rem;
		}
		ck_assert_uint_lt(best, n);
		extra[best] = 1;
		out[best]++;
		given++;
	}
}

/* out: the sum is npages (unless every weight is 0), each share is the
 * floor or the ceiling of npages * w / total, a weight of 0 gets 0, and it
 * is the reference's. */
static void check_apportion(uint64_t npages, const uint32_t *w, size_t n)
{
	uint64_t out[64], want[64];
	unsigned __int128 total = 0, sum = 0;

	ck_assert_uint_le(n, 64);
	for (size_t i = 0; i < n; i++) {
		total += w[i];
		out[i] = 0xdeadbeef;
	}
	pv_apportion(npages, w, n, out);
	apportion_ref(npages, w, n, want);
	for (size_t i = 0; i < n; i++) {
		unsigned __int128 exact_num = (unsigned __int128)npages * w[i];

		sum += out[i];
		if (!w[i] || !total) {
			ck_assert_msg(out[i] == 0, "npages %llu: weight 0 of server %zu got %llu",
				      (unsigned long long)npages, i, (unsigned long long)out[i]);
			continue;
		}
		ck_assert_msg((unsigned __int128)out[i] * total <= exact_num + total - 1 &&
				  (unsigned __int128)out[i] * total + total > exact_num,
			      "npages %llu: server %zu (weight %u of %llu) got %llu, not its "
			      "proportion",
			      (unsigned long long)npages, i, w[i], (unsigned long long)total,
			      (unsigned long long)out[i]);
		ck_assert_msg(out[i] == want[i],
			      "npages %llu, %zu servers: server %zu got %llu, largest remainder "
			      "gives %llu",
			      (unsigned long long)npages, n, i, (unsigned long long)out[i],
			      (unsigned long long)want[i]);
	}
	ck_assert_msg(sum == (total ? npages : 0), "npages %llu over %zu servers: sum %llu",
		      (unsigned long long)npages, n, (unsigned long long)sum);
}

/* pv_apportion(npages, w[0..n)) must be want[0..n). */
static void expect_shares(uint64_t npages, const uint32_t *w, size_t n, const uint64_t *want)
{
	uint64_t out[8];

	for (size_t i = 0; i < n; i++)
		out[i] = 0xdeadbeef;
	pv_apportion(npages, w, n, out);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(out[i] == want[i],
			      "%llu pages over %zu servers: server %zu got %llu, want %llu",
			      (unsigned long long)npages, n, i, (unsigned long long)out[i],
			      (unsigned long long)want[i]);
}

#define W(...) ((const uint32_t[]){__VA_ARGS__})
#define N(...) ((const uint64_t[]){__VA_ARGS__})

START_TEST(apportion_cases)
{
	uint64_t out[1] = {99};

	/* one page over three equal servers: the first; weights 1, 2, 1: the
	 * second */
	expect_shares(1, W(1, 1, 1), 3, N(1, 0, 0));
	expect_shares(1, W(1, 2, 1), 3, N(0, 1, 0));
	/* ties to the earlier server */
	expect_shares(2, W(1, 1, 1), 3, N(1, 1, 0));
	expect_shares(5, W(1, 1, 1, 1), 4, N(2, 1, 1, 1));
	/* exact shares; the largest remainder, not the earliest server: 4
	 * over 1, 2 is 1.33, 2.67; 11 over 3, 1, 3 is 4.71, 1.57, 4.71 */
	expect_shares(10, W(1, 1, 3), 3, N(2, 2, 6));
	expect_shares(4, W(1, 2), 2, N(1, 3));
	expect_shares(11, W(3, 1, 3), 3, N(5, 1, 5));
	expect_shares(8, W(1, 3, 1, 3), 4, N(1, 3, 1, 3));
	expect_shares(6, W(3, 1, 3), 3, N(3, 1, 2)); /* 2.57, 0.86, 2.57 */
	/* a volume of 64 pages over 4 equal servers: a quarter each */
	expect_shares(64, W(1, 1, 1, 1), 4, N(16, 16, 16, 16));
	/* weights of 0 get nothing, the others share all; all 0: all 0 */
	expect_shares(7, W(0, 1, 0, 1), 4, N(0, 4, 0, 3));
	expect_shares(7, W(0, 0), 2, N(0, 0));
	/* no pages */
	expect_shares(0, W(1, 5, 2), 3, N(0, 0, 0));
	/* no servers: nothing written, no crash */
	pv_apportion(7, W(1), 0, out);
	ck_assert_uint_eq(out[0], 99);
}
END_TEST

START_TEST(apportion_huge)
{
	static const uint32_t w3[] = {1, 1, 1}, wbig[] = {UINT32_MAX, 1, 7},
			      wmax[] = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX};
	static const uint64_t sizes[] = {
	    (uint64_t)1 << 63, ((uint64_t)1 << 63) - 1, ((uint64_t)1 << 63) + 12345,
	    UINT64_MAX,	       UINT64_MAX - 2,		((uint64_t)1 << 62) + 1,
	    (uint64_t)1 << 32, ((uint64_t)1 << 32) + 1, 16777216ull * 4 /* 64 TiB/4 MiB */
	};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		check_apportion(sizes[i], w3, 3);
		check_apportion(sizes[i], wbig, 3);
		check_apportion(sizes[i], wmax, 4);
	}
	/* 2^63 + 1 over three equal servers: 3 divides it, no remainder */
	{
		uint64_t out[3];

		pv_apportion(((uint64_t)1 << 63) + 1, w3, 3, out);
		ck_assert_uint_eq(out[0] + out[1] + out[2], ((uint64_t)1 << 63) + 1);
		ck_assert_uint_eq(out[0], 3074457345618258603ull);
		ck_assert_uint_eq(out[1], 3074457345618258603ull);
		ck_assert_uint_eq(out[2], 3074457345618258603ull);
	}
}
END_TEST

START_TEST(apportion_random)
{
	srandom(1313);
	for (int t = 0; t < 20000; t++) {
		uint32_t w[16];
		size_t n = 1 + (size_t)random() % 16;
		uint64_t npages = (uint64_t)random() % (t % 3 ? 100 : 100000);

		for (size_t i = 0; i < n; i++)
			w[i] = (uint32_t)(random() % 4 ? random() % 8 : 0);
		check_apportion(npages, w, n);
	}
}
END_TEST

static Suite *migrate_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("routing during a move");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, route_every_state_piece_and_op);
	tcase_add_test(tc, route_table2_rows);
	tcase_add_test(tc, route_each_piece_moves_once);
	tcase_add_test(tc, route_after_restart_from_every_stage);
	tcase_add_test(tc, state_names);
	tcase_add_test(tc, piece_at);
	suite_add_tcase(s, tc);
	tc = tcase_create("routing entries");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, route_newer);
	tcase_add_test(tc, route_set_keeps_counts);
	tcase_add_test(tc, route_chain_out_of_order);
	suite_add_tcase(s, tc);
	tc = tcase_create("apportion");
	tcase_add_test(tc, apportion_cases);
	tcase_add_test(tc, apportion_huge);
	tcase_add_test(tc, apportion_random);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(migrate_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
