/* catalog.c: the group catalog (members, volumes, version) and its changes.
 * The committed catalog is kept as a pv.Catalog (the form it has on disk and
 * on the wire) and mirrored into struct member / struct volume for the data
 * path. A change is a two-phase commit run by the server that got the
 * command:
 *
 *   coordinator                      every other member
 *   lock, build version v+1
 *   --CAT_PREPARE(change)-------->   validate, lock
 *   <-------------------OK/refuse-   (BUSY if locked by another change)
 *   all OK:  --CAT_COMMIT------->    persist (LMDB), install, unlock
 *   else:    --CAT_ABORT-------->    unlock; on BUSY the coordinator retries
 *
 * A member that missed a commit sees a higher version in a heartbeat and
 * fetches the catalog (CAT_FETCH). Reactor thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "peerd.h"

static Pv__Catalog *committed;

/* coordinator state: one change at a time */
struct txn {
	struct catalog_cmd *cmd;
	Pv__CatalogChange change;
	Pv__Catalog *proposal;
	uint64_t txid;
	uint32_t waiting[PEERD_MAX_MEMBERS];
	size_t nwaiting;
	uint32_t participants[PEERD_MAX_MEMBERS];
	size_t nparticipants;
	uint32_t unsent[PEERD_MAX_MEMBERS]; /* PREPARE not queued yet: retried */
	size_t nunsent;
	int failed;
	int conflict;
	char err[PV_MAX_MESSAGE];
	uint64_t deadline;
};
static struct txn *cur;
static uint64_t txn_counter;

/* participant lock */
static uint64_t lock_txid;
static uint64_t lock_until;

/* catch-up */
static uint64_t fetch_sent_ms;

/* join (this server joining a group) */
static void *join_sock;
static uint8_t join_ident[PV_MAX_IDENTITY];
static size_t join_ident_len;
static uint64_t join_deadline;
static char join_addr[256];

/* ---- volumes ---- */

void volume_get(struct volume *v)
{
	v->refs++;
}

void volume_put(struct volume **vp)
{
	struct volume *v = *vp;

	*vp = NULL;
	if (!v || --v->refs > 0)
		return;
	store_close(v);
	free(v->written_map);
	free(v->owner);
	free(v->epoch);
	free(v);
}

struct volume *catalog_volume(const char *name)
{
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

struct member *catalog_member(uint32_t id)
{
	for (size_t i = 0; i < srv->nmembers; i++)
		if (srv->members[i].id == id)
			return &srv->members[i];
	return NULL;
}

struct member *catalog_self(void)
{
	return catalog_member(srv->cfg.id);
}

size_t catalog_holders(const struct volume *vol, uint32_t *out, size_t max)
{
	size_t n = vol->nholders < max ? vol->nholders : max;

	memcpy(out, vol->holders, n * sizeof(*out));
	return n;
}

void catalog_routes_changed(struct volume *vol)
{
	uint32_t last = 0;

	vol->nholders = 0;
	vol->owned_here = 0;
	for (uint64_t p = 0; p < vol->npages; p++) {
		uint32_t id = vol->owner[p];
		size_t i;

		vol->owned_here += id == srv->cfg.id;
		if (p > 0 && id == last)
			continue;
		last = id;
		for (i = 0; i < vol->nholders && vol->holders[i] != id; i++)
			;
		if (i == vol->nholders && i < PEERD_MAX_MEMBERS)
			vol->holders[vol->nholders++] = id;
	}
	/* ascending, so every server lists them alike */
	for (size_t i = 1; i < vol->nholders; i++)
		for (size_t k = i; k > 0 && vol->holders[k - 1] > vol->holders[k]; k--) {
			uint32_t t = vol->holders[k];

			vol->holders[k] = vol->holders[k - 1];
			vol->holders[k - 1] = t;
		}
}

int catalog_locked(void)
{
	return lock_txid && pv_now_ms() < lock_until;
}

/* ---- protobuf helpers ---- */

Pv__Catalog *catalog_pb_copy(const Pv__Catalog *c)
{
	size_t n = pv__catalog__get_packed_size(c);
	uint8_t *buf = malloc(n ? n : 1);
	Pv__Catalog *copy;

	if (!buf)
		return NULL;
	pv__catalog__pack(c, buf);
	copy = pv__catalog__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

void catalog_pb_free(Pv__Catalog *c)
{
	if (c)
		pv__catalog__free_unpacked(c, NULL);
}

Pv__Catalog *catalog_pb(int for_client)
{
	Pv__Catalog *c = catalog_pb_copy(committed);

	if (!c || !for_client)
		return c;
	for (size_t i = 0; i < c->n_members; i++) {
		struct member *m = catalog_member(c->members[i]->id);
		char self[64], *link;

		if (!m)
			continue;
		if (m->id == srv->cfg.id && links_address(self, sizeof(self)) == 0)
			link = strdup(self);
		else if (m->id != srv->cfg.id && m->link_address[0])
			link = strdup(m->link_address);
		else
			continue;
		if (link)
			c->members[i]->link = link; /* freed with the catalog */
	}
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		struct volume *v = catalog_volume(vi->name);

		if (!v)
			continue;
		vi->holders = malloc(PEERD_MAX_MEMBERS * sizeof(uint32_t));
		if (!vi->holders)
			continue;
		vi->n_holders = catalog_holders(v, vi->holders, PEERD_MAX_MEMBERS);
	}
	return c;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d)
		abort(); /* tiny allocation; out of memory here is fatal */
	return d;
}

/* ---- installing a committed catalog ---- */

static struct volume *volume_from_pb(const Pv__Catalog *c, const Pv__VolumeInfo *vi)
{
	struct volume *v = calloc(1, sizeof(*v));
	uint32_t weights[PEERD_MAX_MEMBERS];
	void *rt_buf = NULL;
	size_t rt_len = 0;

	if (!v)
		return NULL;
	v->refs = 1;
	v->fd = -1;
	snprintf(v->name, sizeof(v->name), "%s", vi->name);
	v->id = vi->id;
	v->size = vi->size;
	v->page_size = vi->page_size;
	v->npages = pv_page_count(vi->size, vi->page_size);
	v->created = vi->created;
	v->nservers = vi->n_servers < PEERD_MAX_MEMBERS ? vi->n_servers : PEERD_MAX_MEMBERS;
	memcpy(v->servers, vi->servers, v->nservers * sizeof(uint32_t));
	v->owner = calloc(v->npages, sizeof(uint32_t));
	v->epoch = calloc(v->npages, sizeof(uint64_t));
	if (!v->owner || !v->epoch)
		goto fail;

	/* the routing table: stored, or the initial layout */
	if (meta_get("routes", v->name, &rt_buf, &rt_len) == 0) {
		Pv__RoutingTable *rt = pv__routing_table__unpack(NULL, rt_len, rt_buf);

		if (rt && rt->volume_id == v->id && rt->n_owner == v->npages &&
		    rt->n_epoch == v->npages) {
			memcpy(v->owner, rt->owner, v->npages * sizeof(uint32_t));
			memcpy(v->epoch, rt->epoch, v->npages * sizeof(uint64_t));
			pv__routing_table__free_unpacked(rt, NULL);
			free(rt_buf);
			catalog_routes_changed(v);
			return v;
		}
		if (rt && rt->volume_id != v->id)
			pv_info("volume %s: stored routing table is of an earlier volume of that "
				"name (id %llu); using the initial layout",
				v->name, (unsigned long long)rt->volume_id);
		else
			pv_warn("volume %s: stored routing table does not match; using the initial "
				"layout",
				v->name);
		if (rt)
			pv__routing_table__free_unpacked(rt, NULL);
		free(rt_buf);
	}
	for (size_t i = 0; i < v->nservers; i++) {
		weights[i] = 1;
		for (size_t j = 0; j < c->n_members; j++)
			if (c->members[j]->id == v->servers[i])
				weights[i] = c->members[j]->weight ? c->members[j]->weight : 1;
	}
	if (v->nservers == 0) {
		v->servers[0] = srv->cfg.id;
		v->nservers = 1;
		weights[0] = 1;
	}
	if (pv_layout(v->npages, v->servers, weights, v->nservers, v->owner) < 0)
		goto fail;
	catalog_routes_changed(v);
	return v;
fail:
	free(v->owner);
	free(v->epoch);
	free(v);
	return NULL;
}

/* Persists c (and routing tables of new volumes) and makes it the catalog in
 * memory. Takes ownership of c. Returns 0 or -1 (then nothing changed). */
static int in_list(struct volume *const *list, size_t n, const struct volume *v)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == v)
			return 1;
	return 0;
}

/* Whether a catalog from a peer (or from LMDB) is one this server can
 * install: every volume name is a valid name (it becomes a file name under
 * the data directory: no '/', no '..'), unique, and sizes and page sizes are
 * what volume create allows. 1, or 0 with the reason in err. */
static int catalog_check(const Pv__Catalog *c, char *err, size_t errlen)
{
	char why[160];

	for (size_t i = 0; i < c->n_volumes; i++) {
		const Pv__VolumeInfo *vi = c->volumes[i];

		if (!vi->name || !pv_valid_name(vi->name, why, sizeof(why))) {
			snprintf(err, errlen, "volume %zu: %s", i, vi->name ? why : "no name");
			return 0;
		}
		if (!pv_valid_volume_size(vi->size, UINT64_MAX, why, sizeof(why))) {
			snprintf(err, errlen, "volume %s: %s", vi->name, why);
			return 0;
		}
		if (vi->page_size % PV_SECTOR || vi->page_size < PV_MIN_PAGE_SIZE ||
		    vi->page_size > PV_MAX_PAGE_SIZE) {
			snprintf(err, errlen, "volume %s: page size %u out of range", vi->name,
				 vi->page_size);
			return 0;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->volumes[j]->name, vi->name)) {
				snprintf(err, errlen, "volume %s listed twice", vi->name);
				return 0;
			}
	}
	return 1;
}

static int install(Pv__Catalog *c, const char *why)
{
	char bad[256];

	if (!catalog_check(c, bad, sizeof(bad))) {
		pv_err("catalog version %llu (%s) refused: %s; keeping version %llu",
		       (unsigned long long)c->version, why, bad, (unsigned long long)srv->version);
		catalog_pb_free(c);
		return -1;
	}
	struct volume **list = calloc(c->n_volumes + 1, sizeof(*list));
	struct volume **newvols = calloc(c->n_volumes + 1, sizeof(*newvols));
	const char **removed = NULL;
	size_t n = 0, nnew = 0, nremoved = 0, nold = 0;
	uint8_t *buf;
	size_t len;
	int rc;

	for (struct volume *v = srv->volumes; v; v = v->next)
		nold++;
	removed = calloc(nold + 1, sizeof(*removed));
	if (!list || !newvols || !removed)
		goto fail;
	/* the new volume list, reusing the volumes that stay (not relinked yet:
	 * they are still on the old list) */
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		struct volume *v = catalog_volume(vi->name);

		if (v && v->id == vi->id) {
			volume_get(v);
		} else {
			v = volume_from_pb(c, vi);
			if (!v)
				goto fail;
			newvols[nnew++] = v;
		}
		list[n++] = v;
	}
	for (struct volume *v = srv->volumes; v; v = v->next) {
		int renamed = 0;

		/* a name deleted and created again: its key now holds the new
		 * volume's routing table, which must not be deleted */
		for (size_t i = 0; i < nnew; i++)
			renamed |= !strcmp(newvols[i]->name, v->name);
		if (!in_list(list, n, v) && !renamed)
			removed[nremoved++] = v->name;
	}
	len = pv__catalog__get_packed_size(c);
	buf = malloc(len ? len : 1);
	if (!buf)
		goto fail;
	pv__catalog__pack(c, buf);
	rc = meta_put_catalog(buf, len, newvols, nnew, removed, nremoved);
	free(buf);
	if (rc < 0)
		goto fail;

	/* committed: drop the old list, link the new one */
	for (struct volume *v = srv->volumes, *next; v; v = next) {
		next = v->next;
		if (!in_list(list, n, v)) {
			v->deleted = 1;
			store_remove(v->name);
			pv_info("volume %s deleted (catalog version %llu)", v->name,
				(unsigned long long)c->version);
		}
		volume_put(&v); /* the old list's reference */
	}
	srv->volumes = NULL;
	for (size_t i = n; i-- > 0;) {
		list[i]->next = srv->volumes;
		srv->volumes = list[i];
	}
	for (size_t i = 0; i < nnew; i++) {
		struct volume *v = newvols[i];

		for (size_t j = 0; j < v->nservers; j++)
			if (v->servers[j] == srv->cfg.id)
				store_open(v);
		pv_info("volume %s present: %llu bytes, %llu pages of %u bytes (catalog version "
			"%llu)",
			v->name, (unsigned long long)v->size, (unsigned long long)v->npages,
			v->page_size, (unsigned long long)c->version);
	}
	free(list);
	free(newvols);
	free(removed);

	/* members: keep sockets and liveness of those that stay */
	struct member old[PEERD_MAX_MEMBERS];

	nold = srv->nmembers;
	memcpy(old, srv->members, sizeof(old));
	srv->nmembers = 0;
	for (size_t i = 0; i < c->n_members && i < PEERD_MAX_MEMBERS; i++) {
		struct member *m = &srv->members[srv->nmembers++];

		memset(m, 0, sizeof(*m));
		m->id = c->members[i]->id;
		snprintf(m->address, sizeof(m->address), "%s", c->members[i]->address);
		m->weight = c->members[i]->weight;
		m->capacity = c->members[i]->capacity;
		for (size_t j = 0; j < nold; j++) {
			if (old[j].id == m->id && !strcmp(old[j].address, m->address)) {
				*m = old[j];
				m->weight = c->members[i]->weight;
				old[j].sock = NULL;
				old[j].last_hb = NULL;
				old[j].link = NULL;
			}
		}
	}
	for (size_t j = 0; j < nold; j++) {
		if (old[j].sock) {
			batch_cork_flush_socket(srv->cork, old[j].sock);
			zmq_close(old[j].sock);
		}
		links_member_drop(&old[j], NULL); /* no longer a member */
		if (old[j].last_hb)
			pv__heartbeat__free_unpacked(old[j].last_hb, NULL);
	}
	catalog_pb_free(committed);
	committed = c;
	srv->version = c->version;
	snprintf(srv->group_id, sizeof(srv->group_id), "%s", c->group_id);
	pv_info("catalog version %llu installed: %zu members, %zu volumes (%s)",
		(unsigned long long)c->version, c->n_members, c->n_volumes, why);
	peers_connect();
	return 0;
fail:
	for (size_t i = 0; list && i < n; i++)
		volume_put(&list[i]);
	free(list);
	free(newvols);
	free(removed);
	catalog_pb_free(c);
	return -1;
}

int catalog_adopt(const Pv__Catalog *c, const char *why)
{
	Pv__Catalog *copy = catalog_pb_copy(c);

	if (!copy)
		return -1;
	return install(copy, why);
}

static void random_hex(char *out, size_t bytes)
{
	uint8_t raw[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	memset(raw, 0, sizeof(raw));
	if (fd >= 0) {
		if (read(fd, raw, bytes) < 0)
			raw[0] = (uint8_t)getpid();
		close(fd);
	}
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
}

int catalog_load(void)
{
	void *buf;
	size_t len;
	int rc = meta_get("catalog", "catalog", &buf, &len);
	Pv__Catalog *c;

	if (rc < 0)
		return -1;
	if (rc == 0) {
		c = pv__catalog__unpack(NULL, len, buf);
		free(buf);
		if (!c) {
			pv_err("the stored catalog in %s/meta does not decode; restore the data "
			       "directory from backup",
			       srv->cfg.data_dir);
			return -1;
		}
	} else {
		/* a new server: a group of one */
		Pv__Member *self = malloc(sizeof(*self));
		char gid[33];

		c = malloc(sizeof(*c));
		if (!c || !self)
			return -1;
		pv__catalog__init(c);
		pv__member__init(self);
		random_hex(gid, 16);
		c->version = 1;
		c->group_id = xstrdup(gid);
		c->next_volume_id = 1;
		self->id = srv->cfg.id;
		self->address = xstrdup(srv->cfg.listen);
		self->weight = srv->cfg.weight;
		self->capacity = store_free();
		c->members = malloc(sizeof(*c->members));
		if (!c->members)
			return -1;
		c->members[0] = self;
		c->n_members = 1;
		pv_info("new data directory: formed group %s of one server", gid);
	}
	return install(c, rc == 0 ? "loaded" : "new");
}

void catalog_free(void)
{
	while (srv->volumes) {
		struct volume *next = srv->volumes->next;

		volume_put(&srv->volumes);
		srv->volumes = next;
	}
	for (size_t i = 0; i < srv->nmembers; i++) {
		if (srv->members[i].sock) {
			batch_cork_flush_socket(srv->cork, srv->members[i].sock);
			zmq_close(srv->members[i].sock);
		}
		if (srv->members[i].last_hb)
			pv__heartbeat__free_unpacked(srv->members[i].last_hb, NULL);
	}
	srv->nmembers = 0;
	catalog_pb_free(committed);
	committed = NULL;
	if (join_sock)
		zmq_close(join_sock);
	join_sock = NULL;
	if (cur) {
		catalog_pb_free(cur->proposal);
		free(cur->cmd->arg);
		free(cur->cmd);
		free(cur);
		cur = NULL;
	}
}

/* ---- two-phase commit: coordinator ---- */

/* Sends a change message to member id. Returns 0, or -1 if it could not be
 * queued (not connected yet, or down). */
static int send_change(uint32_t id, uint32_t op, const Pv__CatalogChange *ch)
{
	struct member *m = catalog_member(id);
	Pv__Header h;

	if (!m)
		return -1;
	wire_header_init(&h);
	h.op = op;
	h.req_id = ch->txid;
	if (reply_send_member(m, &h, NULL, &ch->base) < 0) {
		pv_debug("catalog: %s to server %u (%s) not sent yet: %m", wire_op_name(op), id,
			 m->address);
		return -1;
	}
	return 0;
}

static void txn_finish(void);
static void txn_begin(void *arg);

static void txn_retry(void *arg)
{
	txn_begin(arg);
}

static void txn_end(int ok, const char *err)
{
	struct txn *t = cur;
	struct catalog_cmd *cmd = t->cmd;

	cur = NULL;
	if (lock_txid == t->txid)
		lock_txid = 0;
	if (!ok && t->conflict && cmd->attempt < 8) {
		uint64_t delay = 50 + (uint64_t)(rand() % 200) * cmd->attempt;

		pv_info("catalog change '%s' conflicted with another; retrying in %llu ms",
			cmd->what, (unsigned long long)delay);
		catalog_pb_free(t->proposal);
		free(t);
		reactor_after(delay, txn_retry, cmd);
		return;
	}
	if (ok)
		pv_info("catalog change '%s' committed as version %llu", cmd->what,
			(unsigned long long)srv->version);
	else
		pv_warn("catalog change '%s' refused: %s", cmd->what, err);
	cmd->done(cmd, ok, err);
	free(cmd);
	catalog_pb_free(t->proposal);
	free(t);
}

static void txn_begin(void *arg)
{
	struct catalog_cmd *cmd = arg;
	struct txn *t;
	char err[PV_MAX_MESSAGE];

	cmd->attempt++;
	if (cur || catalog_locked()) {
		if (cmd->attempt < 100) {
			reactor_after(50 + rand() % 50, txn_retry, cmd);
			return;
		}
		cmd->done(cmd, 0, "another catalog change is in progress; try again");
		free(cmd);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->proposal = catalog_pb_copy(committed))) {
		free(t);
		cmd->done(cmd, 0, "out of memory");
		free(cmd);
		return;
	}
	t->cmd = cmd;
	t->proposal->version = committed->version + 1;
	if (cmd->build(cmd, t->proposal, err, sizeof(err)) < 0) {
		catalog_pb_free(t->proposal);
		free(t);
		pv_info("catalog change '%s' refused: %s", cmd->what, err);
		cmd->done(cmd, 0, err);
		free(cmd);
		return;
	}
	cur = t;
	t->txid = ((uint64_t)srv->cfg.id << 40) | ++txn_counter;
	pv__catalog_change__init(&t->change);
	t->change.txid = t->txid;
	t->change.coordinator = srv->cfg.id;
	t->change.what = cmd->what;
	t->change.catalog = t->proposal;
	t->change.force = cmd->force;
	lock_txid = t->txid;
	lock_until = pv_now_ms() + PEERD_LOCK_TIMEOUT_MS;
	t->deadline = pv_now_ms() + PEERD_TXN_TIMEOUT_MS;

	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->id == srv->cfg.id)
			continue;
		if (!m->up && m->last_heard_ms &&
		    pv_now_ms() - m->last_heard_ms > PEERD_DOWN_AFTER_MS) {
			snprintf(t->err, sizeof(t->err),
				 "server %u (%s) is down; a catalog change needs every member; "
				 "nothing was changed",
				 m->id, m->address);
			txn_end(0, t->err);
			return;
		}
		t->participants[t->nparticipants++] = m->id;
		t->waiting[t->nwaiting++] = m->id;
	}
	for (size_t i = 0; i < t->nparticipants; i++)
		if (send_change(t->participants[i], PV_OP_CAT_PREPARE, &t->change) < 0)
			t->unsent[t->nunsent++] = t->participants[i];
	if (t->nwaiting == 0)
		txn_finish();
}

static void txn_finish(void)
{
	struct txn *t = cur;

	if (t->failed) {
		for (size_t i = 0; i < t->nparticipants; i++)
			send_change(t->participants[i], PV_OP_CAT_ABORT, &t->change);
		txn_end(0, t->err);
		return;
	}
	for (size_t i = 0; i < t->nparticipants; i++)
		send_change(t->participants[i], PV_OP_CAT_COMMIT, &t->change);
	/* install takes ownership of the proposal */
	Pv__Catalog *p = t->proposal;

	t->proposal = NULL;
	if (install(p, t->cmd->what) < 0) {
		txn_end(0, "the change was committed by the other members but could not be "
			   "recorded here; this server will catch up from its peers");
		return;
	}
	txn_end(1, NULL);
}

/* Called every reactor tick: times out a change waiting for answers, and
 * the join of this server. */
void catalog_tick(void)
{
	/* a member connected a moment ago (e.g. just joined) gets its PREPARE
	 * as soon as the connection is up */
	for (size_t i = 0; cur && i < cur->nunsent;) {
		if (send_change(cur->unsent[i], PV_OP_CAT_PREPARE, &cur->change) == 0)
			cur->unsent[i] = cur->unsent[--cur->nunsent];
		else
			i++;
	}
	if (cur && pv_now_ms() > cur->deadline) {
		char names[256] = "";
		size_t off = 0;

		for (size_t i = 0; i < cur->nwaiting; i++) {
			struct member *m = catalog_member(cur->waiting[i]);

			off += snprintf(names + off, sizeof(names) - off, "%sserver %u (%s)",
					i ? ", " : "", cur->waiting[i], m ? m->address : "?");
			if (off >= sizeof(names))
				break;
		}
		cur->failed = 1;
		cur->conflict = 0;
		snprintf(cur->err, sizeof(cur->err),
			 "no answer from %s within %d s; a catalog change needs every member; "
			 "nothing was changed",
			 names, PEERD_TXN_TIMEOUT_MS / 1000);
		txn_finish();
	}
	if (join_sock && pv_now_ms() > join_deadline) {
		char msg[400];

		snprintf(msg, sizeof(msg),
			 "no answer from %s within 10 s; is a peerd listening there?", join_addr);
		control_reply(join_ident, join_ident_len, 0, NULL, msg);
		zmq_close(join_sock);
		join_sock = NULL;
	}
}

void catalog_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	if (h->op == PV_OP_CAT_FETCH) {
		Pv__Catalog *c =
		    body ? (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor, body, len)
			 : NULL;

		fetch_sent_ms = 0;
		if (c && c->version > srv->version && !strcmp(c->group_id, srv->group_id)) {
			char why[64];

			snprintf(why, sizeof(why), "caught up from server %u", m->id);
			catalog_adopt(c, why);
		}
		if (c)
			pv__catalog__free_unpacked(c, NULL);
		return;
	}
	if (h->op != PV_OP_CAT_PREPARE || !cur || h->req_id != cur->txid)
		return; /* commit/abort acks and late answers */
	for (size_t i = 0; i < cur->nwaiting; i++) {
		if (cur->waiting[i] != m->id)
			continue;
		cur->waiting[i] = cur->waiting[--cur->nwaiting];
		if (h->status != PV_ST_OK && !cur->failed) {
			cur->failed = 1;
			cur->conflict = h->status == PV_ST_BUSY;
			snprintf(cur->err, sizeof(cur->err), "server %u refused: %s", m->id,
				 h->message);
		}
		if (cur->nwaiting == 0)
			txn_finish();
		return;
	}
}

void catalog_change(struct catalog_cmd *cmd)
{
	cmd->attempt = 0;
	txn_begin(cmd);
}

/* Asks member m for its catalog when it is ahead of us. */
void catalog_fetch_from(struct member *m)
{
	Pv__Header h;

	if (fetch_sent_ms && pv_now_ms() - fetch_sent_ms < 2000)
		return;
	fetch_sent_ms = pv_now_ms();
	wire_header_init(&h);
	h.op = PV_OP_CAT_FETCH;
	h.req_id = peers_next_id();
	reply_send_member(m, &h, NULL, NULL);
}

/* ---- two-phase commit: participant ---- */

static int validate_change(const Pv__CatalogChange *ch, char *err, size_t errlen)
{
	const Pv__Catalog *c = ch->catalog;

	if (!c) {
		snprintf(err, errlen, "change without a catalog");
		return PV_ST_BAD_REQUEST;
	}
	if (strcmp(c->group_id, srv->group_id)) {
		snprintf(err, errlen, "server %u is in another group", srv->cfg.id);
		return PV_ST_REFUSED;
	}
	if (c->version <= srv->version) {
		snprintf(err, errlen, "stale change: server %u is at catalog version %llu",
			 srv->cfg.id, (unsigned long long)srv->version);
		return PV_ST_BUSY;
	}
	if (c->version > srv->version + 1) {
		snprintf(err, errlen, "server %u is behind (catalog version %llu) and catching up",
			 srv->cfg.id, (unsigned long long)srv->version);
		return PV_ST_BUSY;
	}
	if (!catalog_check(c, err, errlen))
		return PV_ST_BAD_REQUEST;
	/* new volumes this server may hold must fit in its file system */
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		int mine = vi->n_servers == 0;

		if (catalog_volume(vi->name))
			continue;
		for (size_t j = 0; j < vi->n_servers; j++)
			mine |= vi->servers[j] == srv->cfg.id;
		if (mine && !store_can_hold(vi->size, err, errlen))
			return PV_ST_REFUSED;
	}
	/* volumes removed by the change must not be open through this server */
	for (struct volume *v = srv->volumes; v; v = v->next) {
		int kept = 0;
		uint32_t open;

		for (size_t i = 0; i < c->n_volumes; i++)
			kept |= !strcmp(c->volumes[i]->name, v->name) && c->volumes[i]->id == v->id;
		open = clients_open_count(v->name);
		if (!kept && open && !ch->force) {
			snprintf(err, errlen,
				 "volume %s is open by %u client(s) through server %u; unmount or "
				 "detach it, or use --force",
				 v->name, open, srv->cfg.id);
			return PV_ST_REFUSED;
		}
	}
	return PV_ST_OK;
}

static void join_done(struct catalog_cmd *cmd, int ok, const char *err)
{
	Pv__Header h;
	struct origin to;

	reply_origin(&to, cmd->ident, cmd->ident_len);
	wire_header_init(&h);
	h.op = PV_OP_JOIN;
	h.req_id = *(uint64_t *)cmd->arg;
	if (ok) {
		reply_body(&to, &h, PV_ST_OK, NULL, &committed->base);
	} else {
		reply_body(&to, &h, PV_ST_REFUSED, err, NULL);
	}
	free(cmd->arg);
}

static int join_build(struct catalog_cmd *cmd, Pv__Catalog *next, char *err, size_t errlen)
{
	Pv__Member *nm = (Pv__Member *)((uint64_t *)cmd->arg + 1);
	Pv__Member *m;
	Pv__Member **arr;

	for (size_t i = 0; i < next->n_members; i++) {
		if (next->members[i]->id == nm->id) {
			snprintf(err, errlen, "server id %u is already a member (%s)", nm->id,
				 next->members[i]->address);
			return -1;
		}
		if (!strcmp(next->members[i]->address, nm->address)) {
			snprintf(err, errlen, "address %s is already used by server %u",
				 nm->address, next->members[i]->id);
			return -1;
		}
	}
	if (next->n_members >= PEERD_MAX_MEMBERS) {
		snprintf(err, errlen, "the group is full (%d members)", PEERD_MAX_MEMBERS);
		return -1;
	}
	m = malloc(sizeof(*m));
	arr = realloc(next->members, (next->n_members + 1) * sizeof(*arr));
	if (!m || !arr) {
		free(m);
		if (arr)
			next->members = arr;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	next->members = arr;
	pv__member__init(m);
	m->id = nm->id;
	m->address = xstrdup(nm->address);
	m->weight = nm->weight ? nm->weight : 1;
	m->capacity = nm->capacity;
	next->members[next->n_members++] = m;
	return 0;
}

static void peer_join(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	Pv__Member *nm =
	    body ? (Pv__Member *)wire_body_decode(&pv__member__descriptor, body, len) : NULL;
	struct catalog_cmd *cmd;
	uint64_t *arg;

	if (!nm || nm->id == 0 || strlen(nm->address) == 0 ||
	    strlen(nm->address) >= sizeof(((struct member *)0)->address)) {
		reply_body(from, h, PV_ST_BAD_REQUEST, "JOIN without a valid member", NULL);
		if (nm)
			pv__member__free_unpacked(nm, NULL);
		return;
	}
	cmd = calloc(1, sizeof(*cmd));
	arg = calloc(1, sizeof(uint64_t) + sizeof(Pv__Member) + 256);
	if (!cmd || !arg) {
		free(cmd);
		free(arg);
		pv__member__free_unpacked(nm, NULL);
		return;
	}
	/* arg: request id, then a flat copy of the member */
	arg[0] = h->req_id;
	Pv__Member *copy = (Pv__Member *)(arg + 1);
	char *addr = (char *)(copy + 1);

	pv__member__init(copy);
	copy->id = nm->id;
	copy->weight = nm->weight;
	copy->capacity = nm->capacity;
	snprintf(addr, 256, "%s", nm->address);
	copy->address = addr;
	pv__member__free_unpacked(nm, NULL);
	cmd->build = join_build;
	cmd->done = join_done;
	cmd->arg = arg;
	if (from->len)
		memcpy(cmd->ident, from->ident, from->len);
	cmd->ident_len = from->len;
	snprintf(cmd->what, sizeof(cmd->what), "add server %u (%s)", copy->id, copy->address);
	catalog_change(cmd);
}

void catalog_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	Pv__CatalogChange *ch;
	char err[PV_MAX_MESSAGE];
	int st;

	if (h->op == PV_OP_JOIN) {
		peer_join(from, h, body, len);
		return;
	}
	if (h->op == PV_OP_CAT_FETCH) {
		reply_body(from, h, PV_ST_OK, NULL, &committed->base);
		return;
	}
	ch = body
		 ? (Pv__CatalogChange *)wire_body_decode(&pv__catalog_change__descriptor, body, len)
		 : NULL;
	if (!ch || !ch->catalog) {
		reply_body(from, h, PV_ST_BAD_REQUEST, "catalog change does not decode", NULL);
		if (ch)
			pv__catalog_change__free_unpacked(ch, NULL);
		return;
	}
	switch (h->op) {
	case PV_OP_CAT_PREPARE:
		if (catalog_locked() && lock_txid != ch->txid) {
			snprintf(err, sizeof(err), "server %u is busy with another catalog change",
				 srv->cfg.id);
			st = PV_ST_BUSY;
		} else {
			st = validate_change(ch, err, sizeof(err));
		}
		if (st == PV_ST_OK) {
			lock_txid = ch->txid;
			lock_until = pv_now_ms() + PEERD_LOCK_TIMEOUT_MS;
			err[0] = 0;
		} else if (ch->catalog->version > srv->version + 1) {
			struct member *m = catalog_member(h->server_id);

			if (m)
				catalog_fetch_from(m);
		}
		reply_body(from, h, st, err, NULL);
		break;
	case PV_OP_CAT_COMMIT:
		if (ch->catalog->version == srv->version + 1 &&
		    !strcmp(ch->catalog->group_id, srv->group_id)) {
			char why[200];

			snprintf(why, sizeof(why), "%s, by server %u", ch->what, ch->coordinator);
			catalog_adopt(ch->catalog, why);
		}
		if (lock_txid == ch->txid)
			lock_txid = 0;
		reply_body(from, h, PV_ST_OK, NULL, NULL);
		break;
	case PV_OP_CAT_ABORT:
		if (lock_txid == ch->txid)
			lock_txid = 0;
		reply_body(from, h, PV_ST_OK, NULL, NULL);
		break;
	}
	pv__catalog_change__free_unpacked(ch, NULL);
}

/* ---- this server joining a group ---- */

/* The socket of a join in progress, for the reactor to poll (or NULL). */
void *catalog_join_socket(void)
{
	return join_sock;
}

/* Starts joining the group at address; the control client is answered when
 * it is done. Returns 0, or -1 with err. */
int catalog_join_start(const char *address, const uint8_t *ident, size_t ident_len, char *err,
		       size_t errlen)
{
	Pv__Member me = PV__MEMBER__INIT;
	Pv__Header h;
	int linger = 0;

	if (join_sock) {
		snprintf(err, errlen, "a join is already in progress");
		return -1;
	}
	if (srv->nmembers > 1) {
		snprintf(err, errlen, "this server is already in a group of %zu members",
			 srv->nmembers);
		return -1;
	}
	if (srv->volumes) {
		snprintf(err, errlen,
			 "this server has volumes; only a server without volumes can join a group");
		return -1;
	}
	if (!strcmp(address, srv->cfg.listen)) {
		snprintf(err, errlen, "%s is this server's own address", address);
		return -1;
	}
	join_sock = zmq_socket(srv->zctx, ZMQ_DEALER);
	if (!join_sock || zmq_setsockopt(join_sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_connect(join_sock, address) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", address, zmq_strerror(errno));
		if (join_sock)
			zmq_close(join_sock);
		join_sock = NULL;
		return -1;
	}
	memcpy(join_ident, ident, ident_len);
	join_ident_len = ident_len;
	join_deadline = pv_now_ms() + 10000;
	snprintf(join_addr, sizeof(join_addr), "%s", address);
	me.id = srv->cfg.id;
	me.address = srv->cfg.listen;
	me.weight = srv->cfg.weight;
	me.capacity = store_free();
	wire_header_init(&h);
	h.op = PV_OP_JOIN;
	h.req_id = peers_next_id();
	h.server_id = srv->cfg.id;
	if (wire_send_body(join_sock, NULL, 0, &h, &me.base) < 0) {
		snprintf(err, errlen, "cannot send to %s: %s", address, zmq_strerror(errno));
		zmq_close(join_sock);
		join_sock = NULL;
		return -1;
	}
	pv_info("joining the group at %s", address);
	return 0;
}

/* Handles the answer on the join socket. */
void catalog_join_input(void)
{
	zmq_msg_t frames[2];
	size_t n = 0;
	int more = 1;
	Pv__Header *h = NULL;
	char err[256];

	while (more && n < 2) {
		zmq_msg_init(&frames[n]);
		if (zmq_msg_recv(&frames[n], join_sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&frames[n]);
			break;
		}
		more = zmq_msg_more(&frames[n]);
		n++;
	}
	if (n == 0)
		return;
	if (wire_header_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &h, err,
			       sizeof(err)) != PV_ST_OK) {
		char msg[700];

		snprintf(msg, sizeof(msg), "the server at %s answered something unreadable: %s",
			 join_addr, err);
		control_reply(join_ident, join_ident_len, 0, NULL, msg);
	} else if (h->status != PV_ST_OK) {
		char msg[800];

		snprintf(msg, sizeof(msg), "join refused by %s: %s", join_addr, h->message);
		control_reply(join_ident, join_ident_len, 0, NULL, msg);
	} else {
		Pv__Catalog *c = NULL;

		if (n > 1)
			c = (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor,
							    zmq_msg_data(&frames[1]),
							    zmq_msg_size(&frames[1]));
		int rc = -1;

		if (c) {
			char why[300];

			snprintf(why, sizeof(why), "joined the group at %s", join_addr);
			rc = catalog_adopt(c, why);
			pv__catalog__free_unpacked(c, NULL);
		}
		if (rc == 0)
			control_reply(join_ident, join_ident_len, 1, control_group_json(), NULL);
		else
			control_reply(join_ident, join_ident_len, 0, NULL,
				      "joined, but the group's catalog could not be recorded here");
	}
	wire_header_free(h);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
	zmq_close(join_sock);
	join_sock = NULL;
}

/* ---- volume create and delete ---- */

struct volume_arg {
	char name[PV_MAX_NAME + 1];
	uint64_t size;
	uint32_t page_size;
	uint32_t servers[PEERD_MAX_MEMBERS];
	size_t nservers;
};

/* A catalog command for volume name, answering the control client ident;
 * its arg is a zeroed struct volume_arg with the name set. NULL (with err)
 * if out of memory. */
static struct catalog_cmd *volume_cmd_new(const char *name, catalog_build_fn build,
					  catalog_done_fn done, const uint8_t *ident,
					  size_t ident_len, char *err, size_t errlen)
{
	struct catalog_cmd *cmd = calloc(1, sizeof(*cmd));
	struct volume_arg *a = calloc(1, sizeof(*a));

	if (!cmd || !a) {
		free(cmd);
		free(a);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(a->name, sizeof(a->name), "%s", name);
	cmd->build = build;
	cmd->done = done;
	cmd->arg = a;
	if (ident_len)
		memcpy(cmd->ident, ident, ident_len);
	cmd->ident_len = ident_len;
	return cmd;
}

static int create_build(struct catalog_cmd *cmd, Pv__Catalog *next, char *err, size_t errlen)
{
	struct volume_arg *a = cmd->arg;
	Pv__VolumeInfo *vi, **arr;

	for (size_t i = 0; i < next->n_volumes; i++) {
		if (!strcmp(next->volumes[i]->name, a->name)) {
			snprintf(err, errlen, "volume '%s' already exists", a->name);
			return -1;
		}
	}
	vi = malloc(sizeof(*vi));
	arr = realloc(next->volumes, (next->n_volumes + 1) * sizeof(*arr));
	if (arr)
		next->volumes = arr;
	if (!vi || !arr || !(vi->servers = malloc(PEERD_MAX_MEMBERS * sizeof(uint32_t)))) {
		free(vi);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uint32_t *servers = vi->servers;

	pv__volume_info__init(vi);
	vi->servers = servers;
	vi->name = xstrdup(a->name);
	vi->id = next->next_volume_id ? next->next_volume_id : 1;
	next->next_volume_id = vi->id + 1;
	vi->size = a->size;
	vi->page_size = a->page_size;
	vi->created = pv_wall_s();
	if (a->nservers) {
		memcpy(vi->servers, a->servers, a->nservers * sizeof(uint32_t));
		vi->n_servers = a->nservers;
	} else {
		for (size_t i = 0; i < next->n_members && i < PEERD_MAX_MEMBERS; i++)
			vi->servers[i] = next->members[i]->id;
		vi->n_servers =
		    next->n_members < PEERD_MAX_MEMBERS ? next->n_members : PEERD_MAX_MEMBERS;
	}
	next->volumes[next->n_volumes++] = vi;
	return 0;
}

static void create_done(struct catalog_cmd *cmd, int ok, const char *err)
{
	struct volume_arg *a = cmd->arg;
	struct volume *v = ok ? catalog_volume(a->name) : NULL;

	if (v)
		control_reply(cmd->ident, cmd->ident_len, 1, control_volume_json(v, 0), NULL);
	else
		control_reply(cmd->ident, cmd->ident_len, 0, NULL,
			      err ? err : "volume vanished after its creation");
	free(a);
}

int catalog_volume_create(const char *name, uint64_t size, uint32_t page_size,
			  const uint32_t *servers, size_t nservers, const uint8_t *ident,
			  size_t ident_len, char *err, size_t errlen)
{
	struct catalog_cmd *cmd;
	struct volume_arg *a;
	uint64_t free_bytes = 0;
	int free_known = 1;

	if (!pv_valid_name(name, err, errlen))
		return -1;
	if (!pv_valid_volume_size(size, srv->cfg.max_volume_size, err, errlen))
		return -1;
	if (page_size == 0)
		page_size = PV_DEFAULT_PAGE_SIZE;
	if (page_size % PV_SECTOR || page_size < PV_MIN_PAGE_SIZE || page_size > PV_MAX_PAGE_SIZE) {
		snprintf(err, errlen,
			 "page size %u must be a multiple of %u between %u and %u bytes", page_size,
			 PV_SECTOR, PV_MIN_PAGE_SIZE, PV_MAX_PAGE_SIZE);
		return -1;
	}
	if (catalog_volume(name)) {
		snprintf(err, errlen, "volume '%s' already exists", name);
		return -1;
	}
	if (nservers > PEERD_MAX_MEMBERS) {
		snprintf(err, errlen, "too many servers listed");
		return -1;
	}
	for (size_t i = 0; i < nservers; i++) {
		if (!catalog_member(servers[i])) {
			snprintf(err, errlen,
				 "server %u is not a member of the group (see 'peerctl "
				 "group show')",
				 servers[i]);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (servers[j] == servers[i]) {
				snprintf(err, errlen, "server %u is listed twice", servers[i]);
				return -1;
			}
		}
	}
	/* the servers' free space must hold the whole volume */
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		int allowed = nservers == 0;

		for (size_t j = 0; j < nservers; j++)
			allowed |= servers[j] == m->id;
		if (!allowed)
			continue;
		if (m->id == srv->cfg.id)
			free_bytes += store_free();
		else if (m->free)
			free_bytes += m->free;
		else if (m->capacity)
			free_bytes += m->capacity; /* no heartbeat yet: free space at join */
		else
			free_known = 0;
	}
	if (free_known && size > free_bytes) {
		char a1[32], a2[32];

		snprintf(err, errlen,
			 "volume of %s is larger than the free space of its servers (%s)",
			 pv_format_size(size, a1, sizeof(a1)),
			 pv_format_size(free_bytes, a2, sizeof(a2)));
		return -1;
	}
	if (!free_known) {
		snprintf(err, errlen,
			 "the free space of the volume's servers is not known yet (a server has "
			 "just started or joined); try again in a few seconds");
		return -1;
	}
	if (!store_can_hold(size, err, errlen))
		return -1;
	cmd = volume_cmd_new(name, create_build, create_done, ident, ident_len, err, errlen);
	if (!cmd)
		return -1;
	a = cmd->arg;
	a->size = size;
	a->page_size = page_size;
	if (nservers)
		memcpy(a->servers, servers, nservers * sizeof(uint32_t));
	a->nservers = nservers;
	snprintf(cmd->what, sizeof(cmd->what), "create volume %s of %llu bytes", name,
		 (unsigned long long)size);
	catalog_change(cmd);
	return 0;
}

static int delete_build(struct catalog_cmd *cmd, Pv__Catalog *next, char *err, size_t errlen)
{
	struct volume_arg *a = cmd->arg;
	uint32_t open;

	for (size_t i = 0; i < next->n_volumes; i++) {
		if (strcmp(next->volumes[i]->name, a->name))
			continue;
		open = clients_open_count(a->name);
		if (open && !cmd->force) {
			snprintf(err, errlen,
				 "volume %s is open by %u client(s) through server %u; unmount or "
				 "detach it, or use --force",
				 a->name, open, srv->cfg.id);
			return -1;
		}
		pv__volume_info__free_unpacked(next->volumes[i], NULL);
		next->volumes[i] = next->volumes[--next->n_volumes];
		return 0;
	}
	snprintf(err, errlen, "no volume '%s'", a->name);
	return -1;
}

static void delete_done(struct catalog_cmd *cmd, int ok, const char *err)
{
	struct volume_arg *a = cmd->arg;

	if (ok) {
		json_t *r = json_pack("{s:s}", "name", a->name);

		control_reply(cmd->ident, cmd->ident_len, 1, r, NULL);
	} else {
		control_reply(cmd->ident, cmd->ident_len, 0, NULL, err);
	}
	free(a);
}

int catalog_volume_delete(const char *name, int force, const uint8_t *ident, size_t ident_len,
			  char *err, size_t errlen)
{
	struct catalog_cmd *cmd;

	if (!catalog_volume(name)) {
		snprintf(err, errlen, "no volume '%s'", name);
		return -1;
	}
	cmd = volume_cmd_new(name, delete_build, delete_done, ident, ident_len, err, errlen);
	if (!cmd)
		return -1;
	cmd->force = force;
	snprintf(cmd->what, sizeof(cmd->what), "delete volume %s%s", name,
		 force ? " (forced)" : "");
	catalog_change(cmd);
	return 0;
}
