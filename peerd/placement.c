/* placement.c: where pages should be, and the moves that get them there
 * (docs/architecture.md, "Placement"). Two halves:
 *
 * - The administrator's catalog changes (change.c, like volume_admin.c):
 *   a volume's allowed servers (volume set-servers), a member's weight
 *   (group set-weight), a member draining (server evacuate), the group's
 *   migration settings (peerctl set migrate.max-mbps, migrate pause). Each
 *   build first freezes the initial layout of every volume that lacks one
 *   (placement_freeze_layouts), so that the layout every server computes
 *   from the catalog never changes when servers or weights do.
 *
 * - placement_tick, every PEERD_TICK_MS on every server (a move of an
 *   unwritten page takes milliseconds: once a second would cap an
 *   evacuation at a page a second): if a page this server
 *   owns should be elsewhere (this server is draining or not allowed for
 *   the volume; or the volume's balance_gen asks for weight shares and this
 *   server holds more than its share), it starts one move (migrate.c). A
 *   server only ever looks at the pages it owns, so two servers never fight
 *   over a page, and the owner alone decides where its page goes.
 *
 * Reactor thread only; placement_freeze_layout and placement_decide are
 * pure (unit tested). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

#define PLACEMENT_LOG_MS    60000 /* a refusal is logged this often per volume */
#define PLACEMENT_MOVES_MAX 256	  /* moves in the group looked at per tick */

/* ---- the frozen initial layout (pure) ---- */

/* The weight the initial layout gives server id in catalog c: what
 * catalog.c volume_from_pb uses when a volume has no frozen layout (the
 * member's weight, or the removed member's, at least 1). */
static uint32_t layout_weight(const Pv__Catalog *c, uint32_t id)
{
	uint32_t w = 1;

	for (size_t j = 0; j < c->n_members; j++)
		if (c->members[j]->id == id)
			w = c->members[j]->weight ? c->members[j]->weight : 1;
	for (size_t j = 0; j < c->n_removed; j++)
		if (c->removed[j]->id == id)
			w = c->removed[j]->weight ? c->removed[j]->weight : 1;
	return w;
}

int placement_freeze_layout(const Pv__Catalog *c, Pv__VolumeInfo *vi)
{
	uint32_t *servers, *weights;

	if (vi->n_layout_servers && vi->n_layout_servers == vi->n_layout_weights)
		return 0; /* frozen already */
	if (!vi->n_servers)
		return 0; /* none to freeze (no catalog has such a volume) */
	servers = malloc(vi->n_servers * sizeof(*servers));
	weights = malloc(vi->n_servers * sizeof(*weights));
	if (!servers || !weights) {
		free(servers);
		free(weights);
		return -1;
	}
	for (size_t i = 0; i < vi->n_servers; i++) {
		servers[i] = vi->servers[i];
		weights[i] = layout_weight(c, vi->servers[i]);
	}
	free(vi->layout_servers);
	free(vi->layout_weights);
	vi->layout_servers = servers;
	vi->layout_weights = weights;
	vi->n_layout_servers = vi->n_layout_weights = vi->n_servers;
	return 0;
}

/* Freezes the layout of every volume of c that lacks one. 0, or -1 with
 * err. */
static int freeze_layouts(Pv__Catalog *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n_volumes; i++)
		if (placement_freeze_layout(c, c->volumes[i]) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	return 0;
}

/* ---- the changes ---- */

enum place_kind { PLACE_SET_SERVERS, PLACE_SET_WEIGHT, PLACE_DRAIN, PLACE_SETTINGS };

/* A placement command, the arg of its change. */
struct place_arg {
	enum place_kind kind;
	char name[PV_MAX_NAME + 1]; /* set-servers: the volume */
	uint32_t servers[PEERD_MAX_MEMBERS];
	size_t nservers;
	uint32_t id;		   /* set-weight, drain: the member */
	uint32_t weight;	   /* set-weight */
	int on;			   /* drain: 1 evacuate, 0 cancel */
	struct group_settings set; /* settings: the fields >= 0 */
	int why;		   /* the kind of a refusal in build: ENOENT or 0 */
	catalog_done_fn done;
	void *done_arg;
};

static Pv__VolumeInfo *pb_volume(const Pv__Catalog *c, const char *name)
{
	for (size_t i = 0; i < c->n_volumes; i++)
		if (!strcmp(c->volumes[i]->name, name))
			return c->volumes[i];
	return NULL;
}

static Pv__Member *pb_member(const Pv__Catalog *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (c->members[i]->id == id)
			return c->members[i];
	return NULL;
}

static int id_listed(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* Pages of vol owned by server id (the counts catalog_route_set keeps). */
static uint64_t owned_by(const struct volume *vol, uint32_t id)
{
	for (size_t i = 0; i < vol->nowned; i++)
		if (vol->owned_ids[i] == id)
			return vol->owned_count[i];
	return 0;
}

/* Whether servers[n] may become the allowed servers of volume name in
 * catalog c: members, listed once, at least one not draining, and no
 * server left out that is down and still owns pages of it (it could not
 * move them). 1, or 0 with err (why: ENOENT for no such volume). */
static int servers_ok(const Pv__Catalog *c, const char *name, const uint32_t *servers, size_t n,
		      int *why, char *err, size_t errlen)
{
	struct volume *vol = catalog_volume(name);
	size_t usable = 0;

	*why = 0;
	if (!vol || !pb_volume(c, name)) {
		snprintf(err, errlen, "no volume '%s'", name);
		*why = ENOENT;
		return 0;
	}
	if (n == 0) {
		snprintf(err, errlen, "volume %s needs at least one server", name);
		return 0;
	}
	if (n > PEERD_MAX_MEMBERS) {
		snprintf(err, errlen, "too many servers listed (at most %d)", PEERD_MAX_MEMBERS);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const Pv__Member *m = pb_member(c, servers[i]);

		if (!m) {
			remove_not_member(servers[i], err, errlen);
			return 0;
		}
		if (id_listed(servers, i, servers[i])) {
			snprintf(err, errlen, "server %u is listed twice", servers[i]);
			return 0;
		}
		usable += !m->draining;
	}
	if (!usable) {
		snprintf(err, errlen,
			 "every server listed is draining (being evacuated); list one that is "
			 "not, or cancel an evacuation: 'peerctl server evacuate ID --cancel'");
		return 0;
	}
	for (size_t i = 0; i < vol->nowned; i++) {
		uint32_t id = vol->owned_ids[i];
		const struct member *m = catalog_member(id);

		if (!vol->owned_count[i] || id_listed(servers, n, id) || !m || m->up)
			continue;
		snprintf(err, errlen,
			 "server %u is down and owns %llu pages of volume %s: left out of the "
			 "volume's servers, it could not move them; start it again first (or "
			 "keep it in the list)",
			 id, (unsigned long long)vol->owned_count[i], name);
		return 0;
	}
	return 1;
}

static int set_servers_build(struct place_arg *a, Pv__Catalog *next, char *err, size_t errlen)
{
	Pv__VolumeInfo *vi;
	uint32_t *list;

	if (!servers_ok(next, a->name, a->servers, a->nservers, &a->why, err, errlen))
		return -1;
	vi = pb_volume(next, a->name);
	list = malloc(a->nservers * sizeof(*list));
	if (!list) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(list, a->servers, a->nservers * sizeof(*list));
	free(vi->servers);
	vi->servers = list;
	vi->n_servers = a->nservers;
	vi->balance_gen++;
	return 0;
}

/* Whether id is a member in c: 1 (*why 0), or 0 with err (*why ENOENT). */
static int member_known(const Pv__Catalog *c, uint32_t id, int *why, char *err, size_t errlen)
{
	*why = 0;
	if (pb_member(c, id))
		return 1;
	remove_not_member(id, err, errlen);
	*why = ENOENT;
	return 0;
}

/* Whether member id of c may have weight w: 1, or 0 with err (why). */
static int weight_ok(const Pv__Catalog *c, uint32_t id, uint32_t w, int *why, char *err,
		     size_t errlen)
{
	if (!member_known(c, id, why, err, errlen))
		return 0;
	if (w < 1 || w > PLACEMENT_MAX_WEIGHT) {
		snprintf(err, errlen, "weight %u is out of range: 1 to %d", w,
			 PLACEMENT_MAX_WEIGHT);
		return 0;
	}
	return 1;
}

static int set_weight_build(struct place_arg *a, Pv__Catalog *next, char *err, size_t errlen)
{
	if (!weight_ok(next, a->id, a->weight, &a->why, err, errlen))
		return -1;
	pb_member(next, a->id)->weight = a->weight;
	for (size_t i = 0; i < next->n_volumes; i++) {
		Pv__VolumeInfo *vi = next->volumes[i];

		if (id_listed(vi->servers, vi->n_servers, a->id))
			vi->balance_gen++;
	}
	return 0;
}

/* Whether member id of c may start (on) or stop draining: 1, or 0 with err
 * (why). */
static int drain_ok(const Pv__Catalog *c, uint32_t id, int on, int *why, char *err, size_t errlen)
{
	size_t others = 0;

	if (!member_known(c, id, why, err, errlen))
		return 0;
	if (!on)
		return 1;
	for (size_t i = 0; i < c->n_members; i++)
		others += c->members[i]->id != id && !c->members[i]->draining;
	if (!others) {
		snprintf(err, errlen,
			 "server %u is the last member that is not draining: its pages would have "
			 "nowhere to go; join a server first (peerctl group join), or cancel "
			 "another evacuation",
			 id);
		return 0;
	}
	return 1;
}

static int drain_build(struct place_arg *a, Pv__Catalog *next, char *err, size_t errlen)
{
	if (!drain_ok(next, a->id, a->on, &a->why, err, errlen))
		return -1;
	pb_member(next, a->id)->draining = a->on;
	return 0;
}

static int place_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct place_arg *a = arg;

	a->why = 0;
	if (freeze_layouts(next, err, errlen) < 0)
		return -1;
	switch (a->kind) {
	case PLACE_SET_SERVERS:
		return set_servers_build(a, next, err, errlen);
	case PLACE_SET_WEIGHT:
		return set_weight_build(a, next, err, errlen);
	case PLACE_DRAIN:
		return drain_build(a, next, err, errlen);
	case PLACE_SETTINGS:
		if (a->set.max_mbps >= 0)
			next->migrate_max_mbps = (uint32_t)a->set.max_mbps;
		if (a->set.paused >= 0)
			next->migrate_paused = a->set.paused;
		if (a->set.balance_off >= 0)
			next->balance_off = a->set.balance_off;
		if (a->set.threshold_pm >= 0)
			next->balance_threshold_pm = (uint32_t)a->set.threshold_pm;
		if (a->set.interval_s >= 0)
			next->balance_interval_s = (uint32_t)a->set.interval_s;
		return 0;
	}
	return -1;
}

static void place_done(void *arg, int ok, const char *err)
{
	struct place_arg *a = arg;

	a->done(a->done_arg, ok,
		ok && a->kind == PLACE_SET_SERVERS ? catalog_volume(a->name) : NULL,
		ok ? 0 : a->why, err);
	free(a);
}

/* A placement command of kind answering done(done_arg); NULL (err) if out
 * of memory. */
static struct place_arg *place_arg_new(enum place_kind kind, catalog_done_fn done, void *done_arg,
				       char *err, size_t errlen)
{
	struct place_arg *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->kind = kind;
	a->done = done;
	a->done_arg = done_arg;
	a->set = (struct group_settings)GROUP_SETTINGS_UNCHANGED;
	return a;
}

int catalog_volume_set_servers(const char *name, const uint32_t *servers, size_t n,
			       catalog_done_fn done, void *arg, char *err, size_t errlen)
{
	struct place_arg *a;
	int why;

	if (!servers_ok(catalog_committed(), name, servers, n, &why, err, errlen))
		return why ? -why : -1;
	a = place_arg_new(PLACE_SET_SERVERS, done, arg, err, errlen);
	if (!a)
		return -1;
	snprintf(a->name, sizeof(a->name), "%s", name);
	memcpy(a->servers, servers, n * sizeof(*servers));
	a->nservers = n;
	return change_start(
	    change_new(0, place_build, place_done, a, "volume %s: allowed servers set", name), a,
	    err, errlen);
}

int catalog_member_set_weight(uint32_t id, uint32_t weight, catalog_done_fn done, void *arg,
			      char *err, size_t errlen)
{
	struct place_arg *a;
	int why;

	if (!weight_ok(catalog_committed(), id, weight, &why, err, errlen))
		return why ? -why : -1;
	a = place_arg_new(PLACE_SET_WEIGHT, done, arg, err, errlen);
	if (!a)
		return -1;
	a->id = id;
	a->weight = weight;
	return change_start(
	    change_new(0, place_build, place_done, a, "server %u: weight %u", id, weight), a, err,
	    errlen);
}

int catalog_member_drain(uint32_t id, int on, catalog_done_fn done, void *arg, char *err,
			 size_t errlen)
{
	struct place_arg *a;
	int why;

	if (!drain_ok(catalog_committed(), id, on, &why, err, errlen))
		return why ? -why : -1;
	a = place_arg_new(PLACE_DRAIN, done, arg, err, errlen);
	if (!a)
		return -1;
	a->id = id;
	a->on = on;
	return change_start(change_new(0, place_build, place_done, a, "server %u: %s", id,
				       on ? "evacuate (draining)" : "evacuation cancelled"),
			    a, err, errlen);
}

int catalog_settings(const struct group_settings *set, catalog_done_fn done, void *arg, char *err,
		     size_t errlen)
{
	struct place_arg *a;

	if (set->max_mbps > PLACEMENT_MAX_MBPS) {
		snprintf(err, errlen,
			 "migrate.max-mbps %lld is out of range: 0 (the default, %d) "
			 "to %d",
			 (long long)set->max_mbps, MIGRATE_MBPS_DEFAULT, PLACEMENT_MAX_MBPS);
		return -1;
	}
	if (set->threshold_pm > BALANCE_MAX_THRESHOLD || set->interval_s > BALANCE_MAX_INTERVAL) {
		snprintf(err, errlen, "balance setting out of range");
		return -1;
	}
	a = place_arg_new(PLACE_SETTINGS, done, arg, err, errlen);
	if (!a)
		return -1;
	a->set = *set;
	return change_start(change_new(0, place_build, place_done, a, "group settings:%s%s%s%s%s",
				       set->max_mbps >= 0 ? " bandwidth limit" : "",
				       set->paused > 0 ? " paused"
				       : !set->paused  ? " resumed"
						       : "",
				       set->balance_off > 0 ? " rebalancer off"
				       : !set->balance_off  ? " rebalancer on"
							    : "",
				       set->threshold_pm >= 0 ? " balance threshold" : "",
				       set->interval_s >= 0 ? " balance interval" : ""),
			    a, err, errlen);
}

/* ---- where a page goes (pure) ---- */

enum placement_verdict placement_decide(const struct placement_input *in, uint32_t *to,
					uint64_t *share)
{
	uint64_t desired[PEERD_MAX_MEMBERS];
	size_t best = in->n, self = in->n;

	*to = 0;
	*share = 0;
	if (!in->n || in->n > PEERD_MAX_MEMBERS)
		return in->self_off ? PLACE_NO_TARGET : PLACE_NOTHING;
	pv_apportion(in->npages, in->weights, in->n, desired);
	for (size_t i = 0; i < in->n; i++) {
		if (in->ids[i] == in->self) {
			self = i;
			continue;
		}
		if (!in->weights[i] || desired[i] <= in->owned[i])
			continue;
		if (best == in->n || desired[i] - in->owned[i] > desired[best] - in->owned[best])
			best = i;
	}
	if (best < in->n)
		*to = in->ids[best];
	if (in->self_off || self == in->n)
		return best < in->n ? PLACE_MOVE : PLACE_NO_TARGET;
	if (!in->balancing)
		return PLACE_NOTHING;
	*share = desired[self];
	if (in->self_owned > desired[self])
		/* no deficit left: moves into the others are under way */
		return best < in->n ? PLACE_MOVE : PLACE_NOTHING;
	/* exactly at its share, every server counted: balanced. Below it, this
	 * server keeps looking (a few sums a second): a move in flight from
	 * another server may still overshoot its share, and then it sheds the
	 * page it got too many */
	return in->self_owned == desired[self] && in->all_up ? PLACE_BALANCED : PLACE_NOTHING;
}

int placement_move_under_way(const struct migrate_info *mv, uint32_t epoch_now)
{
	return mv->state != MIG_IN && epoch_now <= mv->epoch;
}

/* ---- the tick ---- */

/* When a refusal was last logged, per volume id (a few slots, the oldest
 * reused). */
static struct {
	uint64_t vol_id;
	uint64_t at_ms;
} logged[16];

/* Whether a refusal about vol may be logged now (once a minute per
 * volume); records it. */
static int may_log(const struct volume *vol)
{
	uint64_t now = pv_now_ms();
	size_t k = 0;

	for (size_t i = 0; i < sizeof(logged) / sizeof(logged[0]); i++) {
		if (logged[i].vol_id == vol->id) {
			k = i;
			break;
		}
		if (logged[i].at_ms < logged[k].at_ms)
			k = i;
	}
	if (logged[k].vol_id == vol->id && now - logged[k].at_ms < PLACEMENT_LOG_MS)
		return 0;
	logged[k].vol_id = vol->id;
	logged[k].at_ms = now;
	return 1;
}

/* Moves of vol into (in 1) or out of (in 0) server id in progress, among
 * the group's moves. */
static uint64_t moving(const struct migrate_info *moves, size_t n, const struct volume *vol,
		       uint32_t id, int in)
{
	uint64_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += moves[i].volume_id == vol->id && (in ? moves[i].to : moves[i].from) == id &&
		     moves[i].page < vol->npages &&
		     placement_move_under_way(&moves[i], vol->epoch[moves[i].page]);
	return k;
}

/* What server id of vol counts for placement: the pages it owns plus
 * those moving into it; for this server also minus those moving out of it
 * (placement starts more than one move, each decided with the others
 * done). Another server's moves out are not subtracted: it sheds pages
 * because it holds more than its share, and counted below it, it would
 * look like a target for the very pages it sheds. */
static uint64_t owned_after(const struct volume *vol, const struct migrate_info *moves, size_t n,
			    uint32_t id)
{
	uint64_t have = owned_by(vol, id) + moving(moves, n, vol, id, 1);
	uint64_t leaving = id == srv->cfg.id ? moving(moves, n, vol, id, 0) : 0;

	return have > leaving ? have - leaving : 0;
}

/* What placement_decide needs of vol, as this server sees it. */
static void decide_input(const struct volume *vol, const struct migrate_info *moves, size_t nmoves,
			 struct placement_input *in)
{
	const struct member *self = catalog_self();

	memset(in, 0, sizeof(*in));
	in->npages = vol->npages;
	in->self = srv->cfg.id;
	/* moves under way count as done: placement starts more than one at a
	 * time (PLACEMENT_OUT_MAX) */
	in->self_owned = owned_after(vol, moves, nmoves, srv->cfg.id);
	in->self_off =
	    (self && self->draining) || !id_listed(vol->servers, vol->nservers, srv->cfg.id);
	in->balancing = vol->balance_gen > vol->balanced_gen;
	in->all_up = 1;
	in->n = vol->nservers;
	for (size_t i = 0; i < vol->nservers; i++) {
		const struct member *m = catalog_member(vol->servers[i]);

		in->ids[i] = vol->servers[i];
		if (m && m->up && !m->draining)
			in->weights[i] = m->weight ? m->weight : 1;
		if (m && !m->draining && !m->up)
			in->all_up = 0;
		in->owned[i] = owned_after(vol, moves, nmoves, vol->servers[i]);
	}
}

/* The first page of vol owned here and not moving, or npages. */
static uint64_t page_to_move(const struct volume *vol)
{
	for (uint64_t p = 0; p < vol->npages; p++)
		if (vol->owner[p] == srv->cfg.id && !migrate_page_state(vol, p, NULL))
			return p;
	return vol->npages;
}

/* Starts moving a page of vol to server to, for the reason why. 1 if a
 * move started, else 0 (logged once a minute). */
static int start_move(struct volume *vol, uint32_t to, const char *why)
{
	char err[PV_MAX_MESSAGE];
	uint64_t page = page_to_move(vol);

	if (page == vol->npages)
		return 0; /* every page it owns is moving already */
	if (migrate_start(vol, page, to, 0, err, sizeof(err)) < 0) {
		if (may_log(vol))
			pv_warn("placement: volume %s page %llu %u->%u (%s) refused: %s", vol->name,
				(unsigned long long)page, srv->cfg.id, to, why, err);
		return 0;
	}
	pv_info("placement: volume %s page %llu %u->%u: %s", vol->name, (unsigned long long)page,
		srv->cfg.id, to, why);
	return 1;
}

/* Whether vol may need a page moved off this server now: it owns some, and
 * this server is draining, not allowed, or the volume asks for shares
 * (cheap: the steady state costs this per volume and tick). */
static int worth_a_look(const struct volume *vol, int draining)
{
	return vol->owned_here && !vol->deleted &&
	       (draining || vol->balance_gen > vol->balanced_gen ||
		!id_listed(vol->servers, vol->nservers, srv->cfg.id));
}

/* Looks at vol: rule off (this server should hold none of it) or balance.
 * 1 if a move started. */
static int place_volume(struct volume *vol, int off, const struct migrate_info *moves,
			size_t nmoves)
{
	struct placement_input in;
	enum placement_verdict v;
	uint32_t to;
	uint64_t share;
	char why[160];

	if (!worth_a_look(vol, catalog_self() && catalog_self()->draining))
		return 0;
	decide_input(vol, moves, nmoves, &in);
	if (in.self_off != off)
		return 0;
	v = placement_decide(&in, &to, &share);
	switch (v) {
	case PLACE_NOTHING:
		return 0;
	case PLACE_BALANCED:
		/* in memory only: after a restart this server checks again,
		 * which only ever moves pages it holds beyond its share */
		vol->balanced_gen = vol->balance_gen;
		return 0;
	case PLACE_NO_TARGET:
		if (may_log(vol))
			pv_warn("placement: volume %s: server %u should hold none of its %llu "
				"pages here, but none of the volume's servers is up and not "
				"draining to take them",
				vol->name, srv->cfg.id, (unsigned long long)vol->owned_here);
		return 0;
	case PLACE_MOVE:
		break;
	}
	if (off && catalog_self() && catalog_self()->draining)
		snprintf(why, sizeof(why), "server %u is draining", srv->cfg.id);
	else if (off)
		snprintf(why, sizeof(why), "server %u is not among the volume's servers",
			 srv->cfg.id);
	else
		snprintf(why, sizeof(why), "server %u holds %llu pages, its share is %llu",
			 srv->cfg.id, (unsigned long long)vol->owned_here,
			 (unsigned long long)share);
	return start_move(vol, to, why);
}

#define PLACEMENT_OUT_MAX 2

/* Starts the first move placement asks for: pages that should not be here
 * at all first, then weight shares. 1 if one started. */
static int place_one(struct migrate_info *moves)
{
	size_t nmoves = migrate_list(moves, PLACEMENT_MOVES_MAX);

	for (int off = 1; off >= 0; off--)
		for (struct volume *v = srv->volumes; v; v = v->next)
			if (place_volume(v, off, moves, nmoves))
				return 1;
	return 0;
}

void placement_tick(void *arg)
{
	static struct migrate_info moves[PLACEMENT_MOVES_MAX];
	const Pv__Catalog *c = catalog_committed();
	const struct member *self = catalog_self();
	struct volume *v;

	(void)arg;
	/* PLACEMENT_OUT_MAX moves out at a time (the engine runs 2 at once: one
	 * copies while the other waits for its target's fdatasync); nothing
	 * while paused, removed, or before the members' heartbeats say who is
	 * up */
	if (!c || !self || c->migrate_paused || remove_self_state() ||
	    migrate_out_count() >= PLACEMENT_OUT_MAX ||
	    pv_now_ms() - srv->started_ms < PEERD_DOWN_AFTER_MS)
		return;
	for (v = srv->volumes; v && !worth_a_look(v, self->draining); v = v->next)
		;
	if (!v)
		return;
	/* up to PLACEMENT_OUT_MAX moves, each decided with the ones started
	 * before it counted as done */
	while (migrate_out_count() < PLACEMENT_OUT_MAX && place_one(moves))
		;
}
