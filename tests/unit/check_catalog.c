/* check_catalog.c: unit tests for peerd/catalog.c, the group catalog, with
 * the change protocol (change.c) and volume create (volume_admin.c) it runs
 * alone: the group of one a new data directory forms, volume create as a
 * two-phase commit with no other member (it commits synchronously, no
 * reactor timer), the refusals of volume create (its starter's
 * catalog_done_fn is then never called), the routing table of a volume
 * spread over weighted members and its persistence in LMDB ("routes"),
 * adopting a newer
 * catalog (volumes that go are deleted with their data file, those that stay
 * keep their struct), and the protobuf views (catalog_pb, catalog_pb_copy).
 * Each test gets a fresh data directory under $TMPDIR (or /tmp) with its own
 * LMDB environment; the global srv of peerd is a stub set up here, with a
 * ZeroMQ context for the peer sockets but no control socket: the end of a
 * command goes to the test's catalog_done_fn (hear). The decisions of the
 * change protocol (change.c: what a participant does with a COMMIT, until
 * when a coordinator may commit, the retry budgets, transaction ids unique
 * across restarts) are pure functions, tested in a case of their own. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peerd.h"

#define PAGE   (64u << 10)
#define NPAGES 64u

struct server *srv; /* defined by peerd/main.c, which is not linked here */
static struct server server;
static char dir[256];
/* "no servers listed": the control socket always passes its array, never
 * NULL (memcpy of a NULL source is undefined even for 0 bytes) */
static const uint32_t none[1];

/* What the starter of a volume command heard (its catalog_done_fn). */
struct heard {
	int calls;
	int ok;
	struct volume *vol;
	int why;
	char err[PV_MAX_MESSAGE];
};

static void hear(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	struct heard *h = arg;

	h->calls++;
	h->ok = ok;
	h->vol = vol;
	h->why = why;
	snprintf(h->err, sizeof(h->err), "%s", err ? err : "");
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	memset(&server, 0, sizeof(server));
	if (!tmp || !*tmp || strlen(tmp) > sizeof(dir) - 32)
		tmp = "/tmp";
	snprintf(dir, sizeof(dir), "%s/check_catalog.XXXXXX", tmp);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	server.cfg.id = 1;
	snprintf(server.cfg.listen, sizeof(server.cfg.listen), "tcp://127.0.0.1:1");
	snprintf(server.cfg.data_dir, sizeof(server.cfg.data_dir), "%s", dir);
	server.cfg.weight = 1;
	server.cfg.max_volume_size = (uint64_t)1 << 40;
	server.lock_fd = -1;
	srv = &server;
	srv->zctx = zmq_ctx_new();
	ck_assert_ptr_nonnull(srv->zctx);
	srv->control = NULL;
	srv->router = NULL;
	ck_assert_int_eq(meta_open(dir), 0);
	ck_assert_int_eq(catalog_load(), 0);
}

static void teardown(void)
{
	char cmd[sizeof(dir) + 16];

	catalog_free();
	meta_close();
	if (srv->zctx)
		zmq_ctx_term(srv->zctx);
	srv->zctx = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "check_catalog: could not remove %s\n", dir);
}

/* Frees the catalog in memory, forgets what install set in srv and loads it
 * again from LMDB, as a restarted server does. */
static void reload(void)
{
	catalog_free();
	srv->version = 0;
	memset(srv->group_id, 0, sizeof(srv->group_id));
	srv->next_volume_id = 0;
	ck_assert_int_eq(catalog_load(), 0);
}

static void data_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/volumes/%s.vol", dir, name);
}

static int is_hex32(const char *s)
{
	if (strlen(s) != 32)
		return 0;
	for (size_t i = 0; i < 32; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

/* A pv.Catalog built on the stack for catalog_adopt (which copies it). */
struct cat_builder {
	Pv__Catalog c;
	Pv__Member m[8];
	Pv__Member *mp[8];
	char addr[8][64];
	Pv__VolumeInfo v[8];
	Pv__VolumeInfo *vp[8];
	uint32_t servers[8][8];
};

static void cb_init(struct cat_builder *b, uint64_t version)
{
	memset(b, 0, sizeof(*b));
	pv__catalog__init(&b->c);
	b->c.version = version;
	b->c.group_id = srv->group_id;
	b->c.members = b->mp;
	b->c.volumes = b->vp;
	b->c.next_volume_id = 1;
}

static void cb_member(struct cat_builder *b, uint32_t id, uint32_t weight)
{
	size_t i = b->c.n_members++;

	pv__member__init(&b->m[i]);
	b->m[i].id = id;
	snprintf(b->addr[i], sizeof(b->addr[i]), "tcp://127.0.0.1:%u", id);
	b->m[i].address = b->addr[i];
	b->m[i].weight = weight;
	b->m[i].capacity = (uint64_t)1 << 40;
	b->mp[i] = &b->m[i];
}

static void cb_volume(struct cat_builder *b, const char *name, uint64_t id, uint64_t npages,
		      const uint32_t *servers, size_t nservers)
{
	size_t i = b->c.n_volumes++;

	pv__volume_info__init(&b->v[i]);
	b->v[i].name = (char *)name;
	b->v[i].id = id;
	b->v[i].size = npages * PAGE;
	b->v[i].page_size = PAGE;
	b->v[i].created = 1700000000;
	memcpy(b->servers[i], servers, nservers * sizeof(uint32_t));
	b->v[i].servers = b->servers[i];
	b->v[i].n_servers = nservers;
	b->vp[i] = &b->v[i];
	if (id >= b->c.next_volume_id)
		b->c.next_volume_id = id + 1;
}

/* The stored routing table of name, decoded (free with free_unpacked), or NULL. */
static Pv__RoutingTable *stored_routes(const char *name)
{
	void *buf;
	size_t len;
	Pv__RoutingTable *rt;

	if (meta_get("routes", name, &buf, &len) != 0)
		return NULL;
	rt = pv__routing_table__unpack(NULL, len, buf);
	free(buf);
	return rt;
}

static uint8_t *pack_catalog(const Pv__Catalog *c, size_t *len)
{
	uint8_t *buf;

	*len = pv__catalog__get_packed_size(c);
	buf = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(pv__catalog__pack(c, buf), *len);
	return buf;
}

START_TEST(new_group_of_one)
{
	struct member *self;
	char gid[sizeof(srv->group_id)];
	Pv__Catalog *c;

	ck_assert_uint_eq(srv->version, 1);
	ck_assert_uint_eq(srv->nmembers, 1);
	ck_assert_ptr_null(srv->volumes);
	self = catalog_self();
	ck_assert_ptr_nonnull(self);
	ck_assert_ptr_eq(self, &srv->members[0]);
	ck_assert_uint_eq(self->id, 1);
	ck_assert_str_eq(self->address, "tcp://127.0.0.1:1");
	ck_assert_uint_eq(self->weight, 1);
	ck_assert_ptr_null(self->sock); /* no socket to oneself */
	ck_assert_ptr_null(catalog_member(2));
	ck_assert_msg(is_hex32(srv->group_id), "group id '%s' is not 32 hex characters",
		      srv->group_id);

	/* the protobuf form agrees */
	c = catalog_pb(0);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->version, 1);
	ck_assert_str_eq(c->group_id, srv->group_id);
	ck_assert_uint_eq(c->n_members, 1);
	ck_assert_uint_eq(c->members[0]->id, 1);
	ck_assert_uint_eq(c->n_volumes, 0);
	catalog_pb_free(c);

	/* a restart finds the same group, not a new one */
	snprintf(gid, sizeof(gid), "%s", srv->group_id);
	reload();
	ck_assert_uint_eq(srv->version, 1);
	ck_assert_str_eq(srv->group_id, gid);
	ck_assert_uint_eq(srv->nmembers, 1);
	ck_assert_uint_eq(catalog_self()->id, 1);
	ck_assert_str_eq(catalog_self()->address, "tcp://127.0.0.1:1");
}
END_TEST

START_TEST(volume_create_alone)
{
	char err[PV_MAX_MESSAGE] = "";
	char path[PATH_MAX + 512];
	struct volume *v;
	struct stat st;
	Pv__Catalog *c;
	uint32_t holders[PEERD_MAX_MEMBERS];
	struct heard heard = {0};

	ck_assert_int_eq(catalog_volume_create("alpha", (uint64_t)NPAGES * PAGE, PAGE, none, 0,
					       hear, &heard, err, sizeof(err)),
			 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(heard.calls, 1);
	ck_assert_int_eq(heard.ok, 1);
	ck_assert_ptr_eq(heard.vol, catalog_volume("alpha"));
	ck_assert_int_eq(catalog_locked(), 0);
	/* committed synchronously: no other member, no reactor timer */
	ck_assert_uint_eq(srv->version, 2);
	v = catalog_volume("alpha");
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_eq(srv->volumes, v);
	ck_assert_ptr_null(v->next);
	ck_assert_uint_eq(v->id, 1);
	ck_assert_uint_eq(v->size, (uint64_t)NPAGES * PAGE);
	ck_assert_uint_eq(v->page_size, PAGE);
	ck_assert_uint_eq(v->npages, NPAGES);
	ck_assert_uint_eq(v->nservers, 1);
	ck_assert_uint_eq(v->servers[0], 1);
	for (uint64_t p = 0; p < v->npages; p++) {
		ck_assert_uint_eq(v->owner[p], 1);
		ck_assert_uint_eq(v->epoch[p], 0);
	}
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 1);
	ck_assert_uint_eq(holders[0], 1);
	/* this server holds it: its sparse data file is open */
	ck_assert_int_ge(v->fd, 0);
	data_path("alpha", path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, v->size);

	c = catalog_pb(0);
	ck_assert_uint_eq(c->version, 2);
	ck_assert_uint_eq(c->n_volumes, 1);
	ck_assert_str_eq(c->volumes[0]->name, "alpha");
	ck_assert_uint_eq(c->next_volume_id, 2);
	catalog_pb_free(c);

	/* a second volume gets the next id */
	ck_assert_int_eq(catalog_volume_create("beta", (uint64_t)4 * PAGE, PAGE, none, 0, hear,
					       &heard, err, sizeof(err)),
			 0);
	ck_assert_int_eq(heard.calls, 2);
	ck_assert_int_eq(heard.ok, 1);
	ck_assert_uint_eq(srv->version, 3);
	ck_assert_ptr_nonnull(catalog_volume("beta"));

	/* a taken name is refused as such (EEXIST), a missing one as ENOENT */
	ck_assert_int_eq(catalog_volume_create("beta", (uint64_t)4 * PAGE, PAGE, none, 0, hear,
					       &heard, err, sizeof(err)),
			 -EEXIST);
	ck_assert_str_eq(err, "volume 'beta' already exists");
	ck_assert_int_eq(catalog_volume_delete("nope", 0, 0, hear, &heard, err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "no volume 'nope'");
	ck_assert_int_eq(heard.calls, 2);
	err[0] = '\0';
	ck_assert_uint_eq(catalog_volume("beta")->id, 2);
	ck_assert_ptr_eq(catalog_volume("alpha"), v);
}
END_TEST

/* Volume create refused before any change: a reason, no new version. */
static void refused(const char *name, uint64_t size, uint32_t page_size, const uint32_t *servers,
		    size_t nservers, const char *what)
{
	char err[PV_MAX_MESSAGE] = "";
	uint64_t version = srv->version;
	size_t nvols = 0;
	struct heard heard = {0};
	Pv__Catalog *c;

	for (struct volume *v = srv->volumes; v; v = v->next)
		nvols++;
	ck_assert_msg(catalog_volume_create(name, size, page_size, servers, nservers, hear, &heard,
					    err, sizeof(err)) < 0,
		      "%s: accepted", what);
	ck_assert_msg(heard.calls == 0, "%s: refused, and its done called", what);
	ck_assert_msg(err[0] != 0, "%s: refused without a reason", what);
	ck_assert_msg(srv->version == version, "%s: catalog version %llu -> %llu", what,
		      (unsigned long long)version, (unsigned long long)srv->version);
	c = catalog_pb(0);
	ck_assert_uint_eq(c->version, version);
	ck_assert_uint_eq(c->n_volumes, nvols);
	catalog_pb_free(c);
	ck_assert_int_eq(catalog_locked(), 0);
}

START_TEST(volume_create_refusals)
{
	char err[PV_MAX_MESSAGE] = "";
	char longname[PV_MAX_NAME + 2];
	const uint32_t unknown[] = {1, 7};
	const uint32_t twice[] = {1, 1};
	const uint64_t size = (uint64_t)NPAGES * PAGE;
	struct heard heard = {0};

	ck_assert_int_eq(
	    catalog_volume_create("alpha", size, PAGE, none, 0, hear, &heard, err, sizeof(err)), 0);
	ck_assert_uint_eq(srv->version, 2);

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	refused("bad/name", size, PAGE, none, 0, "name with '/'");
	refused("", size, PAGE, none, 0, "empty name");
	refused(".hidden", size, PAGE, none, 0, "name starting with '.'");
	refused("-opt", size, PAGE, none, 0, "name starting with '-'");
	refused(longname, size, PAGE, none, 0, "name too long");
	refused("gamma", 0, PAGE, none, 0, "size 0");
	refused("gamma", size + 100, PAGE, none, 0, "size not a multiple of 512");
	refused("gamma", srv->cfg.max_volume_size + 512, PAGE, none, 0, "size over the maximum");
	refused("gamma", size, PAGE + 100, none, 0, "page size not a multiple of 512");
	refused("gamma", size, 4096, none, 0, "page size below the minimum");
	refused("alpha", size, PAGE, none, 0, "duplicate name");
	refused("gamma", size, PAGE, unknown, 2, "unknown server 7");
	refused("gamma", size, PAGE, twice, 2, "server listed twice");
	ck_assert_ptr_null(catalog_volume("gamma"));
	ck_assert_ptr_null(catalog_volume("bad/name"));

	/* and a valid one still goes through afterwards */
	ck_assert_int_eq(
	    catalog_volume_create("gamma", size, PAGE, twice, 1, hear, &heard, err, sizeof(err)),
	    0);
	ck_assert_int_eq(heard.calls, 2);
	ck_assert_int_eq(heard.ok, 1);
	ck_assert_uint_eq(srv->version, 3);
	ck_assert_ptr_nonnull(catalog_volume("gamma"));
}
END_TEST

/* Adopts version 2 of the group with members 1, 2, 3 of weights 1, 1, 2 and
 * volume "spread" (NPAGES pages) over all three. */
static struct volume *adopt_spread(void)
{
	struct cat_builder b;
	const uint32_t all[] = {1, 2, 3};
	char gid[sizeof(srv->group_id)];

	snprintf(gid, sizeof(gid), "%s", srv->group_id);
	cb_init(&b, 2);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	cb_member(&b, 3, 2);
	cb_volume(&b, "spread", 1, NPAGES, all, 3);
	ck_assert_int_eq(catalog_adopt(&b.c, "test"), 0);
	ck_assert_uint_eq(srv->version, 2);
	ck_assert_str_eq(srv->group_id, gid);
	ck_assert_uint_eq(srv->nmembers, 3);
	return catalog_volume("spread");
}

START_TEST(routing_table_weighted)
{
	struct volume *v = adopt_spread();
	uint32_t count[4] = {0}, owner[NPAGES], holders[PEERD_MAX_MEMBERS];
	Pv__RoutingTable *rt;
	size_t longest = 0, run = 0;

	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(v->npages, NPAGES);
	ck_assert_uint_eq(v->nservers, 3);
	for (uint64_t p = 0; p < v->npages; p++) {
		ck_assert_msg(v->owner[p] >= 1 && v->owner[p] <= 3, "page %llu owned by %u",
			      (unsigned long long)p, v->owner[p]);
		count[v->owner[p]]++;
		/* interleaved: no server owns a long run of consecutive pages */
		run = p && v->owner[p] == v->owner[p - 1] ? run + 1 : 1;
		if (run > longest)
			longest = run;
	}
	ck_assert_uint_eq(count[1] + count[2] + count[3], NPAGES);
	ck_assert_int_le(abs((int)count[1] - (int)NPAGES / 4), 1);
	ck_assert_int_le(abs((int)count[2] - (int)NPAGES / 4), 1);
	ck_assert_int_le(abs((int)count[3] - (int)NPAGES / 2), 1);
	ck_assert_msg(longest <= 2, "a server owns %zu consecutive pages", longest);
	/* ... and every 4 consecutive pages touch every server */
	for (uint64_t p = 0; p + 4 <= v->npages; p++) {
		int seen[4] = {0};

		for (uint64_t q = p; q < p + 4; q++)
			seen[v->owner[q]] = 1;
		ck_assert_msg(seen[1] && seen[2] && seen[3], "pages %llu-%llu miss a server",
			      (unsigned long long)p, (unsigned long long)p + 3);
	}
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 3);
	ck_assert_uint_eq(holders[0], 1);
	ck_assert_uint_eq(holders[1], 2);
	ck_assert_uint_eq(holders[2], 3);
	/* at most max servers are written and counted */
	ck_assert_uint_eq(catalog_holders(v, holders, 1), 1);
	ck_assert_uint_eq(holders[0], 1);
	/* the other members get a socket, this one none */
	ck_assert_ptr_null(catalog_member(1)->sock);
	ck_assert_ptr_nonnull(catalog_member(2)->sock);
	ck_assert_ptr_nonnull(catalog_member(3)->sock);
	ck_assert_uint_eq(catalog_member(3)->weight, 2);

	/* the table is in LMDB as it is in memory */
	rt = stored_routes("spread");
	ck_assert_ptr_nonnull(rt);
	ck_assert_str_eq(rt->volume, "spread");
	ck_assert_uint_eq(rt->n_owner, NPAGES);
	ck_assert_uint_eq(rt->n_epoch, 0); /* the initial layout: every epoch 0 */
	ck_assert_mem_eq(rt->owner, v->owner, NPAGES * sizeof(uint32_t));
	pv__routing_table__free_unpacked(rt, NULL);

	/* a restart loads the same table */
	memcpy(owner, v->owner, sizeof(owner));
	reload();
	ck_assert_uint_eq(srv->version, 2);
	ck_assert_uint_eq(srv->nmembers, 3);
	v = catalog_volume("spread");
	ck_assert_ptr_nonnull(v);
	ck_assert_mem_eq(v->owner, owner, sizeof(owner));
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 3);
	ck_assert_uint_eq(holders[0], 1);
	ck_assert_uint_eq(holders[1], 2);
	ck_assert_uint_eq(holders[2], 3);
}
END_TEST

/* The routing table after a restart is the stored one, not a recomputed
 * initial layout: a table changed in LMDB (as a migration leaves it) is the
 * one loaded. */
START_TEST(routing_table_from_lmdb)
{
	struct volume *v = adopt_spread();
	Pv__RoutingTable rt = PV__ROUTING_TABLE__INIT;
	uint32_t owner[NPAGES];
	uint64_t epoch[NPAGES];
	uint8_t *buf;
	size_t len;

	ck_assert_ptr_nonnull(v);
	memcpy(owner, v->owner, sizeof(owner));
	memset(epoch, 0, sizeof(epoch));
	owner[0] = owner[0] == 2 ? 1 : 2; /* page 0 moved */
	epoch[0] = 7;
	owner[NPAGES - 1] = 3;
	epoch[NPAGES - 1] = 9;
	rt.volume = "spread";
	rt.volume_id = v->id;
	rt.n_owner = NPAGES;
	rt.owner = owner;
	rt.n_epoch = NPAGES;
	rt.epoch = epoch;
	len = pv__routing_table__get_packed_size(&rt);
	buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	pv__routing_table__pack(&rt, buf);
	ck_assert_int_eq(meta_put("routes", "spread", buf, len), 0);
	free(buf);

	reload();
	v = catalog_volume("spread");
	ck_assert_ptr_nonnull(v);
	ck_assert_mem_eq(v->owner, owner, sizeof(owner));
	for (size_t p = 0; p < NPAGES; p++)
		ck_assert_uint_eq(v->epoch[p], epoch[p]); /* 32 bits in memory */
}
END_TEST

/* A page changing owner in memory (catalog_route_set, as a migration's
 * switch or a routing update does it) keeps the connection table and the
 * pages owned here right without a recount; a heard entry (ROUTE_UPDATE,
 * MOVED: migrate_route_learn) is taken only if its epoch is newer, and
 * never makes a page this server's. */
START_TEST(route_set_on_installed_catalog)
{
	struct volume *v = adopt_spread();
	uint32_t holders[PEERD_MAX_MEMBERS];
	uint64_t mine = 0, p1 = NPAGES, p3 = NPAGES;

	ck_assert_ptr_nonnull(v);
	for (uint64_t p = 0; p < NPAGES; p++) {
		mine += v->owner[p] == 1;
		if (v->owner[p] == 1 && p1 == NPAGES)
			p1 = p;
		if (v->owner[p] == 3 && p3 == NPAGES)
			p3 = p;
	}
	ck_assert_uint_eq(v->owned_here, mine);
	ck_assert_uint_lt(p1, NPAGES);
	ck_assert_uint_lt(p3, NPAGES);

	/* one of this server's pages moves to 2 (epoch 1) */
	catalog_route_set(v, p1, 2, 1);
	ck_assert_uint_eq(v->owner[p1], 2);
	ck_assert_uint_eq(v->epoch[p1], 1);
	ck_assert_uint_eq(v->owned_here, mine - 1);
	/* one of 3's comes here */
	catalog_route_set(v, p3, 1, 1);
	ck_assert_uint_eq(v->owned_here, mine);
	/* every page of server 2 moves to 3: 2 is no longer a holder */
	for (uint64_t p = 0; p < NPAGES; p++)
		if (v->owner[p] == 2)
			catalog_route_set(v, p, 3, v->epoch[p] + 1);
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 2);
	ck_assert_uint_eq(holders[0], 1);
	ck_assert_uint_eq(holders[1], 3);
	/* and one back: 2 is again, in order */
	catalog_route_set(v, p1, 2, v->epoch[p1] + 1);
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 3);
	ck_assert_uint_eq(holders[0], 1);
	ck_assert_uint_eq(holders[1], 2);
	ck_assert_uint_eq(holders[2], 3);
	ck_assert_uint_eq(v->owned_here, mine); /* p1 left, p3 came */

	/* heard entries: a lower or equal epoch is ignored, a higher taken;
	 * an entry naming this server is never taken by hearsay */
	ck_assert_uint_eq(v->epoch[p1], 3);
	ck_assert_int_eq(migrate_route_learn(v, p1, 3, 2), 0);
	ck_assert_int_eq(migrate_route_learn(v, p1, 3, 3), 0);
	ck_assert_uint_eq(v->owner[p1], 2);
	ck_assert_int_eq(migrate_route_learn(v, p1, 1, 9), 0);
	ck_assert_uint_eq(v->owner[p1], 2);
	ck_assert_uint_eq(v->owned_here, mine);
	ck_assert_int_eq(migrate_route_learn(v, p1, 3, 5), 1);
	ck_assert_uint_eq(v->owner[p1], 3);
	ck_assert_uint_eq(v->epoch[p1], 5);
	ck_assert_int_eq(migrate_route_learn(v, p1, 2, 4), 0); /* late, older */
	ck_assert_uint_eq(v->owner[p1], 3);
	ck_assert_uint_eq(catalog_holders(v, holders, PEERD_MAX_MEMBERS), 2);
	ck_assert_uint_eq(holders[0], 1);
	ck_assert_uint_eq(holders[1], 3);
}
END_TEST

/* A catalog from a peer whose volume name would leave the data directory
 * (or is otherwise unusable) is refused whole: the version stays, no file is
 * made anywhere. */
START_TEST(adopt_refuses_bad_names)
{
	static const char *const bad[] = {"../escape", "a/b", "..", ".hidden", "", "-x"};
	struct cat_builder b;
	const uint32_t self[] = {1};
	char path[PATH_MAX + 512];
	uint64_t before = srv->version;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cb_init(&b, before + 1);
		cb_member(&b, 1, 1);
		cb_volume(&b, "fine", 1, 8, self, 1);
		cb_volume(&b, bad[i], 2, 8, self, 1);
		ck_assert_msg(catalog_adopt(&b.c, "test bad name") < 0, "'%s' adopted", bad[i]);
		ck_assert_uint_eq(srv->version, before);
		ck_assert_ptr_null(catalog_volume("fine"));
	}
	snprintf(path, sizeof(path), "%s/escape.vol", srv->cfg.data_dir);
	ck_assert_int_ne(access(path, F_OK), 0);
	/* the same name twice, a zero size, a bad page size */
	cb_init(&b, before + 1);
	cb_member(&b, 1, 1);
	cb_volume(&b, "twice", 1, 8, self, 1);
	cb_volume(&b, "twice", 2, 8, self, 1);
	ck_assert_int_lt(catalog_adopt(&b.c, "test twice"), 0);
	cb_init(&b, before + 1);
	cb_member(&b, 1, 1);
	cb_volume(&b, "empty", 1, 0, self, 1);
	ck_assert_int_lt(catalog_adopt(&b.c, "test empty"), 0);
	cb_init(&b, before + 1);
	cb_member(&b, 1, 1);
	cb_volume(&b, "odd", 1, 8, self, 1);
	b.v[0].page_size = 1000;
	ck_assert_int_lt(catalog_adopt(&b.c, "test page size"), 0);
	ck_assert_uint_eq(srv->version, before);
	/* and a good one still goes in */
	cb_init(&b, before + 1);
	cb_member(&b, 1, 1);
	cb_volume(&b, "fine", 1, 8, self, 1);
	ck_assert_int_eq(catalog_adopt(&b.c, "test good"), 0);
	ck_assert_ptr_nonnull(catalog_volume("fine"));
}
END_TEST

START_TEST(adopt_newer_version)
{
	struct cat_builder b;
	const uint32_t self[] = {1}, two[] = {2}, all[] = {1, 2, 4};
	struct volume *keep, *drop, *other, *fresh;
	uint32_t owner[8];
	char path[PATH_MAX + 512];
	uint8_t data[512], got[512];
	Pv__RoutingTable *rt;

	cb_init(&b, 2);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	cb_volume(&b, "keep", 1, 8, self, 1);
	cb_volume(&b, "drop", 2, 8, self, 1);
	cb_volume(&b, "other", 3, 8, two, 1);
	ck_assert_int_eq(catalog_adopt(&b.c, "test v2"), 0);
	ck_assert_uint_eq(srv->version, 2);
	keep = catalog_volume("keep");
	drop = catalog_volume("drop");
	other = catalog_volume("other");
	ck_assert_ptr_nonnull(keep);
	ck_assert_ptr_nonnull(drop);
	ck_assert_ptr_nonnull(other);
	ck_assert_int_ge(keep->fd, 0);
	ck_assert_int_ge(drop->fd, 0);
	ck_assert_int_eq(other->fd, -1); /* not this server's: no data file */
	memcpy(owner, keep->owner, sizeof(owner));
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	ck_assert_int_eq(pwrite(keep->fd, data, sizeof(data), PAGE + 4096), (ssize_t)sizeof(data));
	data_path("drop", path, sizeof(path));
	ck_assert_int_eq(access(path, F_OK), 0);
	/* a request still using "drop" holds a reference */
	volume_get(drop);

	/* version 3: member 2 gets weight 3, member 4 joins, "drop" is gone,
	 * "fresh" is new */
	cb_init(&b, 3);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 3);
	cb_member(&b, 4, 1);
	cb_volume(&b, "other", 3, 8, two, 1);
	cb_volume(&b, "keep", 1, 8, self, 1);
	cb_volume(&b, "fresh", 4, 12, all, 3);
	ck_assert_int_eq(catalog_adopt(&b.c, "test v3"), 0);

	ck_assert_uint_eq(srv->version, 3);
	ck_assert_uint_eq(srv->nmembers, 3);
	ck_assert_ptr_nonnull(catalog_member(4));
	ck_assert_ptr_nonnull(catalog_member(4)->sock);
	ck_assert_uint_eq(catalog_member(2)->weight, 3);
	/* "drop": out of the catalog, flagged, its file and routes gone */
	ck_assert_ptr_null(catalog_volume("drop"));
	ck_assert_int_eq(drop->deleted, 1);
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(stored_routes("drop"));
	volume_put(&drop);
	ck_assert_ptr_null(drop);
	/* "keep" and "other": the same structs, the same table, the same data */
	ck_assert_ptr_eq(catalog_volume("keep"), keep);
	ck_assert_ptr_eq(catalog_volume("other"), other);
	ck_assert_int_eq(keep->deleted, 0);
	ck_assert_int_eq(keep->refs, 1);
	ck_assert_mem_eq(keep->owner, owner, sizeof(owner));
	ck_assert_int_ge(keep->fd, 0);
	ck_assert_int_eq(pread(keep->fd, got, sizeof(got), PAGE + 4096), (ssize_t)sizeof(got));
	ck_assert_mem_eq(got, data, sizeof(data));
	data_path("keep", path, sizeof(path));
	ck_assert_int_eq(access(path, F_OK), 0);
	/* "fresh": a new volume laid out over its servers */
	fresh = catalog_volume("fresh");
	ck_assert_ptr_nonnull(fresh);
	ck_assert_uint_eq(fresh->npages, 12);
	ck_assert_int_ge(fresh->fd, 0);
	rt = stored_routes("fresh");
	ck_assert_ptr_nonnull(rt);
	ck_assert_uint_eq(rt->n_owner, 12);
	ck_assert_mem_eq(rt->owner, fresh->owner, 12 * sizeof(uint32_t));
	pv__routing_table__free_unpacked(rt, NULL);
	/* the volume list follows the catalog's order */
	ck_assert_ptr_eq(srv->volumes, other);
	ck_assert_ptr_eq(other->next, keep);
	ck_assert_ptr_eq(keep->next, fresh);
	ck_assert_ptr_null(fresh->next);

	/* and the change is what a restart finds */
	reload();
	ck_assert_uint_eq(srv->version, 3);
	ck_assert_ptr_null(catalog_volume("drop"));
	ck_assert_ptr_nonnull(catalog_volume("keep"));
	ck_assert_mem_eq(catalog_volume("keep")->owner, owner, sizeof(owner));
	ck_assert_ptr_nonnull(catalog_volume("fresh"));
}
END_TEST

START_TEST(pb_holders_and_copy)
{
	struct cat_builder b;
	const uint32_t all[] = {1, 2, 3}, two[] = {2};
	Pv__Catalog *c, *plain, *copy;
	uint8_t *b1, *b2;
	size_t l1, l2;

	cb_init(&b, 2);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	cb_member(&b, 3, 2);
	cb_volume(&b, "spread", 1, NPAGES, all, 3);
	cb_volume(&b, "solo", 2, 4, two, 1);
	ck_assert_int_eq(catalog_adopt(&b.c, "test"), 0);

	c = catalog_pb(1);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->version, 2);
	ck_assert_str_eq(c->group_id, srv->group_id);
	ck_assert_uint_eq(c->n_members, 3);
	ck_assert_uint_eq(c->n_volumes, 2);
	ck_assert_str_eq(c->volumes[0]->name, "spread");
	ck_assert_uint_eq(c->volumes[0]->n_holders, 3);
	ck_assert_uint_eq(c->volumes[0]->holders[0], 1);
	ck_assert_uint_eq(c->volumes[0]->holders[1], 2);
	ck_assert_uint_eq(c->volumes[0]->holders[2], 3);
	ck_assert_uint_eq(c->volumes[0]->n_servers, 3);
	ck_assert_str_eq(c->volumes[1]->name, "solo");
	ck_assert_uint_eq(c->volumes[1]->n_holders, 1);
	ck_assert_uint_eq(c->volumes[1]->holders[0], 2);

	/* without holders: none, the committed catalog is not changed by the
	 * first call */
	plain = catalog_pb(0);
	ck_assert_ptr_nonnull(plain);
	ck_assert_uint_eq(plain->volumes[0]->n_holders, 0);
	ck_assert_uint_eq(plain->volumes[1]->n_holders, 0);

	/* a deep copy packs to the same bytes, holders included */
	copy = catalog_pb_copy(c);
	ck_assert_ptr_nonnull(copy);
	ck_assert_ptr_ne(copy, c);
	ck_assert_ptr_ne(copy->volumes[0], c->volumes[0]);
	b1 = pack_catalog(c, &l1);
	b2 = pack_catalog(copy, &l2);
	ck_assert_uint_eq(l1, l2);
	ck_assert_mem_eq(b1, b2, l1);
	ck_assert_uint_eq(copy->volumes[0]->n_holders, 3);
	free(b1);
	free(b2);
	catalog_pb_free(copy);

	copy = catalog_pb_copy(plain);
	ck_assert_ptr_nonnull(copy);
	b1 = pack_catalog(plain, &l1);
	b2 = pack_catalog(copy, &l2);
	ck_assert_uint_eq(l1, l2);
	ck_assert_mem_eq(b1, b2, l1);
	free(b1);
	free(b2);
	/* and adopting the committed catalog's own copy changes nothing */
	ck_assert_int_eq(catalog_adopt(copy, "same"), 0);
	ck_assert_uint_eq(srv->version, 2);
	catalog_pb_free(copy);
	catalog_pb_free(plain);
	catalog_pb_free(c);
	catalog_pb_free(NULL);
}
END_TEST

START_TEST(same_name_new_id)
{
	/* a member that missed "delete vol; create vol" catches up: the new
	 * volume must get its own layout, stored under the name */
	struct cat_builder b;
	const uint32_t both[] = {1, 2}, one[] = {1};
	struct volume *v;
	Pv__RoutingTable *rt;

	cb_init(&b, 2);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	cb_volume(&b, "vol", 1, 8, both, 2);
	ck_assert_int_eq(catalog_adopt(&b.c, "test"), 0);
	v = catalog_volume("vol");
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(v->owner[1], 2);

	cb_init(&b, 3);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	cb_volume(&b, "vol", 5, 8, one, 1);
	ck_assert_int_eq(catalog_adopt(&b.c, "test"), 0);
	v = catalog_volume("vol");
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(v->id, 5);
	for (uint64_t p = 0; p < 8; p++)
		ck_assert_uint_eq(v->owner[p], 1);
	rt = stored_routes("vol");
	ck_assert_ptr_nonnull(rt);
	ck_assert_uint_eq(rt->volume_id, 5);
	ck_assert_uint_eq(rt->n_owner, 8);
	for (size_t p = 0; p < 8; p++)
		ck_assert_uint_eq(rt->owner[p], 1);
	pv__routing_table__free_unpacked(rt, NULL);

	reload();
	v = catalog_volume("vol");
	ck_assert_ptr_nonnull(v);
	for (uint64_t p = 0; p < 8; p++)
		ck_assert_uint_eq(v->owner[p], 1);
}
END_TEST

/* A group of two (this server, 1, and server 2, which never answers), at
 * version 2. */
static void adopt_pair(void)
{
	struct cat_builder b;

	cb_init(&b, 2);
	cb_member(&b, 1, 1);
	cb_member(&b, 2, 1);
	ck_assert_int_eq(catalog_adopt(&b.c, "test pair"), 0);
	ck_assert_uint_eq(srv->nmembers, 2);
}

/* defect 7: a change waiting to try again (this server busy with another)
 * hears its end when peerd stops, as the one in progress does */
START_TEST(shutdown_ends_waiting_changes)
{
	char err[PV_MAX_MESSAGE] = "";
	struct heard first = {0}, second = {0};

	adopt_pair();
	/* server 2 never answers: the first change waits for it */
	ck_assert_int_eq(catalog_volume_create("first", (uint64_t)NPAGES * PAGE, PAGE, none, 0,
					       hear, &first, err, sizeof(err)),
			 0);
	ck_assert_int_eq(first.calls, 0);
	ck_assert_int_eq(catalog_locked(), 1);
	/* the second finds this server busy and waits to try again */
	ck_assert_int_eq(catalog_volume_create("second", (uint64_t)NPAGES * PAGE, PAGE, none, 0,
					       hear, &second, err, sizeof(err)),
			 0);
	ck_assert_int_eq(second.calls, 0);
	catalog_free();
	ck_assert_int_eq(first.calls, 1);
	ck_assert_int_eq(first.ok, 0);
	ck_assert_int_eq(second.calls, 1);
	ck_assert_int_eq(second.ok, 0);
}
END_TEST

/* The catalog hash: the same content gives the same hash (also after a
 * restart), another content another; srv holds the committed one's. */
START_TEST(catalog_hash_by_content)
{
	uint8_t h1[PEERD_CATALOG_HASH_LEN], h2[PEERD_CATALOG_HASH_LEN];
	uint8_t before[PEERD_CATALOG_HASH_LEN];
	Pv__Catalog *copy;
	char hex[2 * PEERD_CATALOG_HASH_LEN + 1];

	catalog_hash(catalog_committed(), h1);
	ck_assert_mem_eq(h1, srv->catalog_hash, sizeof(h1));
	copy = catalog_pb_copy(catalog_committed());
	ck_assert_ptr_nonnull(copy);
	catalog_hash(copy, h2);
	ck_assert_mem_eq(h1, h2, sizeof(h1));
	copy->next_volume_id++;
	catalog_hash(copy, h2);
	ck_assert_mem_ne(h1, h2, sizeof(h1));
	catalog_pb_free(copy);
	ck_assert_uint_eq(strlen(catalog_hash_hex(h1, PEERD_CATALOG_HASH_LEN, hex)), 64);

	adopt_pair();
	ck_assert_mem_ne(h1, srv->catalog_hash, sizeof(h1));
	memcpy(before, srv->catalog_hash, sizeof(before));
	reload();
	ck_assert_mem_eq(before, srv->catalog_hash, sizeof(before));
}
END_TEST

/* A member that shows another hash under our version: divergence, flagged
 * and refusing changes; the same hash again clears it. */
START_TEST(divergence_found_and_cleared)
{
	char err[PV_MAX_MESSAGE] = "";
	struct heard heard = {0};
	struct member *m;

	adopt_pair();
	m = catalog_member(2);
	ck_assert_ptr_nonnull(m);
	m->catalog_version = srv->version;
	m->has_catalog_hash = 1;
	memcpy(m->catalog_hash, srv->catalog_hash, sizeof(m->catalog_hash));
	catalog_peer_seen(m);
	ck_assert_int_eq(srv->catalog_diverged, 0);
	m->catalog_hash[0] ^= 1;
	catalog_peer_seen(m);
	ck_assert_int_eq(m->catalog_diverged, 1);
	ck_assert_int_eq(srv->catalog_diverged, 1);
	ck_assert_int_eq(catalog_volume_create("gamma", (uint64_t)NPAGES * PAGE, PAGE, none, 0,
					       hear, &heard, err, sizeof(err)),
			 0);
	ck_assert_int_eq(heard.calls, 1);
	ck_assert_int_eq(heard.ok, 0);
	ck_assert_ptr_nonnull(strstr(heard.err, "different catalogs"));
	ck_assert_int_eq(catalog_locked(), 0);
	/* a member at another version is not compared */
	m->catalog_version = srv->version - 1;
	catalog_peer_seen(m);
	ck_assert_int_eq(srv->catalog_diverged, 1);
	m->catalog_version = srv->version;
	m->catalog_hash[0] ^= 1;
	catalog_peer_seen(m);
	ck_assert_int_eq(srv->catalog_diverged, 0);
}
END_TEST

/* ---- the decisions of change.c (pure) ---- */

static const uint8_t hash_a[PEERD_CATALOG_HASH_LEN] = {0xaa};
static const uint8_t hash_b[PEERD_CATALOG_HASH_LEN] = {0xbb};

/* What a participant does with a COMMIT: only the transaction it holds
 * prepared (defect 1: it applied any COMMIT of version + 1), only while its
 * lock holds; a resent COMMIT of what it installed is answered OK (defect
 * 2), one of another catalog under its version is not applied. */
START_TEST(commit_verdicts)
{
	static const struct change_lock held = {.txid = 77, .until_ms = 10000}, none = {0};
	static const struct {
		const struct change_lock *lk;
		uint64_t now, my_version;
		const uint8_t *my_hash;
		uint64_t txid, version;
		enum change_verdict want;
	} cases[] = {
	    {&held, 5000, 5, hash_a, 77, 6, CHANGE_APPLY},
	    {&held, 5000, 5, hash_a, 78, 6, CHANGE_NOT_PREPARED},
	    {&none, 5000, 5, hash_a, 78, 6, CHANGE_NOT_PREPARED},
	    {&none, 5000, 5, hash_a, 0, 6, CHANGE_NOT_PREPARED},
	    {&held, 10000, 5, hash_a, 77, 6, CHANGE_LOCK_EXPIRED},
	    {&held, 20000, 5, hash_a, 77, 6, CHANGE_LOCK_EXPIRED},
	    {&none, 5000, 6, hash_b, 77, 6, CHANGE_HAVE_IT},
	    {&none, 5000, 6, hash_a, 77, 6, CHANGE_NOT_PREPARED},
	    {&held, 5000, 6, hash_a, 77, 6, CHANGE_WRONG_VERSION},
	    {&held, 5000, 5, hash_a, 77, 7, CHANGE_WRONG_VERSION},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(change_commit_verdict(cases[i].lk, cases[i].now, cases[i].my_version,
						    cases[i].my_hash, cases[i].txid,
						    cases[i].version, hash_b) == cases[i].want,
			      "case %zu", i);
}
END_TEST

/* defect 1: a coordinator that stalled past its lock must not commit; the
 * margin keeps its decision well inside the participants' lock */
START_TEST(coordinator_commits_only_within_its_lock)
{
	uint64_t t0 = 1000000;
	uint64_t last = PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS;

	ck_assert_int_gt(PEERD_LOCK_MARGIN_MS, 0);
	ck_assert_int_lt(PEERD_TXN_TIMEOUT_MS, PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS);
	ck_assert_int_eq(change_may_commit(t0, t0), 1);
	ck_assert_int_eq(change_may_commit(t0, t0 + last - 1), 1);
	ck_assert_int_eq(change_may_commit(t0, t0 + last), 0);
	ck_assert_int_eq(change_may_commit(t0, t0 + 15000), 0);
}
END_TEST

/* defect 4: waiting for a busy server does not use up the conflict
 * retries, and the reverse */
START_TEST(retry_budgets_are_separate)
{
	struct change_tries t = {0};

	for (int i = 0; i < 20; i++)
		ck_assert_int_ge(change_retry_delay(&t, 0, (unsigned)i), 50);
	for (int i = 0; i < CHANGE_MAX_CONFLICTS; i++)
		ck_assert_int_ge(change_retry_delay(&t, 1, (unsigned)i), 50);
	ck_assert_int_eq(change_retry_delay(&t, 1, 0), -1);
	/* busy waits go on after the conflicts are spent */
	ck_assert_int_ge(change_retry_delay(&t, 0, 0), 50);
	t.busy_waits = CHANGE_MAX_BUSY_WAITS;
	ck_assert_int_eq(change_retry_delay(&t, 0, 0), -1);
	/* a busy wait covers a participant's whole lock */
	ck_assert_int_ge((int64_t)CHANGE_MAX_BUSY_WAITS * 50, PEERD_LOCK_TIMEOUT_MS);
}
END_TEST

/* The first txid of a process started afresh, as a restarted peerd. */
static uint64_t first_txid_of_new_process(void)
{
	int fd[2];
	pid_t pid;
	uint64_t id = 0;
	int st;

	ck_assert_int_eq(pipe(fd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t mine = change_new_txid();

		_exit(write(fd[1], &mine, sizeof(mine)) == sizeof(mine) ? 0 : 1);
	}
	close(fd[1]);
	ck_assert_int_eq(read(fd[0], &id, sizeof(id)), sizeof(id));
	close(fd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return id;
}

/* defect 5: a restarted coordinator must not reuse the txid of a lock a
 * participant still holds */
START_TEST(txids_unique_across_restarts)
{
	uint64_t a = first_txid_of_new_process(), b = first_txid_of_new_process();
	uint64_t seen[256];

	ck_assert_uint_ne(a, 0);
	ck_assert_uint_ne(b, 0);
	ck_assert_uint_ne(a, b);
	for (size_t i = 0; i < 256; i++) {
		seen[i] = change_new_txid();
		ck_assert_uint_ne(seen[i], 0);
		for (size_t j = 0; j < i; j++)
			ck_assert_uint_ne(seen[i], seen[j]);
	}
}
END_TEST

static Suite *catalog_suite(void)
{
	Suite *s = suite_create("catalog");
	TCase *tc = tcase_create("catalog");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, new_group_of_one);
	tcase_add_test(tc, volume_create_alone);
	tcase_add_test(tc, volume_create_refusals);
	tcase_add_test(tc, routing_table_weighted);
	tcase_add_test(tc, routing_table_from_lmdb);
	tcase_add_test(tc, route_set_on_installed_catalog);
	tcase_add_test(tc, adopt_refuses_bad_names);
	tcase_add_test(tc, adopt_newer_version);
	tcase_add_test(tc, pb_holders_and_copy);
	tcase_add_test(tc, same_name_new_id);
	tcase_add_test(tc, shutdown_ends_waiting_changes);
	tcase_add_test(tc, catalog_hash_by_content);
	tcase_add_test(tc, divergence_found_and_cleared);
	suite_add_tcase(s, tc);
	tc = tcase_create("change decisions");
	tcase_add_test(tc, commit_verdicts);
	tcase_add_test(tc, coordinator_commits_only_within_its_lock);
	tcase_add_test(tc, retry_budgets_are_separate);
	tcase_add_test(tc, txids_unique_across_restarts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(catalog_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
