/* catalog.c: the group catalog (members, volumes, version) as this server
 * holds it. The committed catalog is kept as a pv.Catalog (the form it has
 * on disk and on the wire) and mirrored into struct member / struct volume
 * for the data path; per volume a cache of the connection table (holders)
 * and of the pages owned here. Owns: looking volumes and members up;
 * checking a catalog (catalog_check) and installing it (from LMDB at start,
 * committed by a change here or by a peer, fetched while catching up);
 * catching up (CAT_FETCH) when a heartbeat shows a member ahead; the
 * catalog's hash and finding a member that holds another catalog under the
 * same version (divergence, with --resync-catalog to repair it); routing the
 * peer messages of the catalog protocols to their files. Not here: the
 * two-phase change (change.c), joining (join.c), volume create/delete
 * (volume_admin.c). Reactor thread only. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peerd.h"

static Pv__Catalog *committed;

/* catch-up */
static uint64_t fetch_sent_ms;
/* divergence: last logged */
static uint64_t diverged_logged_ms;

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
	snap_volume_free(v);
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

/* holders[] (ascending, so every server lists them alike) from the owned
 * counts. */
static void holders_from_counts(struct volume *vol)
{
	vol->nholders = 0;
	vol->owned_here = 0;
	for (size_t i = 0; i < vol->nowned; i++) {
		if (!vol->owned_count[i])
			continue;
		if (vol->owned_ids[i] == srv->cfg.id)
			vol->owned_here = vol->owned_count[i];
		vol->holders[vol->nholders++] = vol->owned_ids[i];
	}
	for (size_t i = 1; i < vol->nholders; i++)
		for (size_t k = i; k > 0 && vol->holders[k - 1] > vol->holders[k]; k--) {
			uint32_t t = vol->holders[k];

			vol->holders[k] = vol->holders[k - 1];
			vol->holders[k - 1] = t;
		}
}

/* The slot of server id in vol's owned counts (added if new), or -1. */
static int owned_slot(struct volume *vol, uint32_t id)
{
	for (size_t i = 0; i < vol->nowned; i++)
		if (vol->owned_ids[i] == id)
			return (int)i;
	for (size_t i = 0; i < vol->nowned; i++)
		if (!vol->owned_count[i]) {
			vol->owned_ids[i] = id;
			return (int)i;
		}
	if (vol->nowned == PEERD_MAX_MEMBERS)
		return -1;
	vol->owned_ids[vol->nowned] = id;
	vol->owned_count[vol->nowned] = 0;
	return (int)vol->nowned++;
}

void catalog_routes_changed(struct volume *vol)
{
	uint32_t last = 0;
	int slot = -1;

	vol->nowned = 0;
	for (uint64_t p = 0; p < vol->npages; p++) {
		uint32_t id = vol->owner[p];

		if (slot < 0 || id != last) {
			slot = owned_slot(vol, id);
			last = id;
		}
		if (slot >= 0)
			vol->owned_count[slot]++;
	}
	holders_from_counts(vol);
}

void catalog_route_set(struct volume *vol, uint64_t page, uint32_t owner, uint32_t epoch)
{
	int from = owned_slot(vol, vol->owner[page]);
	int to = owned_slot(vol, owner);

	if (from >= 0 && vol->owned_count[from])
		vol->owned_count[from]--;
	if (to >= 0)
		vol->owned_count[to]++;
	vol->owner[page] = owner;
	vol->epoch[page] = epoch;
	holders_from_counts(vol);
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

const Pv__Catalog *catalog_committed(void)
{
	return committed;
}

void catalog_pb_free(Pv__Catalog *c)
{
	if (c)
		pv__catalog__free_unpacked(c, NULL);
}

void catalog_volume_usage(struct volume *v, uint64_t *written, uint64_t *bytes, uint32_t *open)
{
	store_stat(v, &v->written, &v->bytes);
	*written = v->written;
	*bytes = v->bytes;
	*open = clients_open_count(v->name);
	for (size_t i = 0; i < srv->nmembers; i++) {
		Pv__Heartbeat *hb = srv->members[i].last_hb;

		if (srv->members[i].id == srv->cfg.id || !hb)
			continue;
		for (size_t j = 0; j < hb->n_volumes; j++) {
			if (strcmp(hb->volumes[j]->name, v->name))
				continue;
			*written += hb->volumes[j]->pages_written;
			*bytes += hb->volumes[j]->bytes;
			*open += hb->volumes[j]->open_clients;
		}
	}
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
		if (m->id == srv->cfg.id && linkset_address(self, sizeof(self)) == 0)
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
		{
			uint64_t written;
			uint32_t open;

			catalog_volume_usage(v, &written, &vi->allocated, &open);
		}
	}
	return c;
}

char *catalog_strdup(const char *s)
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
	uint32_t weights[PEERD_MAX_MEMBERS], layout[PEERD_MAX_MEMBERS];
	size_t nlayout;
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
	v->balance_gen = vi->balance_gen;
	v->nservers = vi->n_servers < PEERD_MAX_MEMBERS ? vi->n_servers : PEERD_MAX_MEMBERS;
	memcpy(v->servers, vi->servers, v->nservers * sizeof(uint32_t));
	v->owner = calloc(v->npages, sizeof(uint32_t));
	v->epoch = calloc(v->npages, sizeof(uint32_t));
	if (!v->owner || !v->epoch)
		goto fail;

	/* the routing table: stored, or the initial layout */
	if (meta_get("routes", v->name, &rt_buf, &rt_len) == 0) {
		Pv__RoutingTable *rt = pv__routing_table__unpack(NULL, rt_len, rt_buf);

		if (rt && rt->volume_id == v->id && rt->n_owner == v->npages &&
		    (rt->n_epoch == v->npages || rt->n_epoch == 0)) {
			/* the initial layout as stored at creation; entries of pages
			 * moved since are applied over it (migrate_load) */
			memcpy(v->owner, rt->owner, v->npages * sizeof(uint32_t));
			for (uint64_t p = 0; p < rt->n_epoch; p++)
				v->epoch[p] = (uint32_t)rt->epoch[p];
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
	if (vi->n_layout_servers && vi->n_layout_servers == vi->n_layout_weights &&
	    vi->n_layout_servers <= PEERD_MAX_MEMBERS) {
		/* frozen at creation (or before the first set-servers/set-weight):
		 * the same layout whatever the members' weights are now */
		nlayout = vi->n_layout_servers;
		memcpy(layout, vi->layout_servers, nlayout * sizeof(uint32_t));
		for (size_t i = 0; i < nlayout; i++)
			weights[i] = vi->layout_weights[i] ? vi->layout_weights[i] : 1;
	} else {
		nlayout = v->nservers;
		memcpy(layout, v->servers, nlayout * sizeof(uint32_t));
		for (size_t i = 0; i < nlayout; i++) {
			weights[i] = 1;
			for (size_t j = 0; j < c->n_members; j++)
				if (c->members[j]->id == layout[i])
					weights[i] =
					    c->members[j]->weight ? c->members[j]->weight : 1;
			/* a server gone keeps its pages (lost, or none if it left) */
			for (size_t j = 0; j < c->n_removed; j++)
				if (c->removed[j]->id == layout[i])
					weights[i] =
					    c->removed[j]->weight ? c->removed[j]->weight : 1;
		}
	}
	if (v->nservers == 0) {
		v->servers[0] = srv->cfg.id;
		v->nservers = 1;
	}
	if (nlayout == 0) {
		layout[0] = srv->cfg.id;
		nlayout = 1;
		weights[0] = 1;
	}
	if (pv_layout(v->npages, layout, weights, nlayout, v->owner) < 0)
		goto fail;
	catalog_routes_changed(v);
	return v;
fail:
	free(v->owner);
	free(v->epoch);
	free(v);
	return NULL;
}

static int in_list(struct volume *const *list, size_t n, const struct volume *v)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == v)
			return 1;
	return 0;
}

/* Whether vi's snapshots are sound: valid unique names, ids rising and
 * given out (at most snapshot_seq), a chunk size snap.c can use. */
static int snapshots_check(const Pv__VolumeInfo *vi, char *err, size_t errlen)
{
	char why[256];

	if (vi->n_snapshots > SNAP_MAX ||
	    (vi->chunk_size && (vi->chunk_size % PV_SECTOR || vi->chunk_size < SNAP_CHUNK_MIN ||
				vi->chunk_size > vi->page_size))) {
		snprintf(err, errlen, "volume %s: %zu snapshots or chunk size %u out of range",
			 vi->name, vi->n_snapshots, vi->chunk_size);
		return 0;
	}
	for (size_t j = 0; j < vi->n_snapshots; j++) {
		const Pv__SnapshotInfo *s = vi->snapshots[j];

		if (!s->name || !pv_valid_name(s->name, why, sizeof(why))) {
			snprintf(err, errlen, "volume %s snapshot %zu: %s", vi->name, j,
				 s->name ? why : "no name");
			return 0;
		}
		if (!s->id || s->id > vi->snapshot_seq ||
		    (j && s->id <= vi->snapshots[j - 1]->id)) {
			snprintf(err, errlen, "volume %s snapshot %s: id %llu out of order",
				 vi->name, s->name, (unsigned long long)s->id);
			return 0;
		}
		for (size_t k = 0; k < j; k++)
			if (!strcmp(vi->snapshots[k]->name, s->name)) {
				snprintf(err, errlen, "volume %s: snapshot %s listed twice",
					 vi->name, s->name);
				return 0;
			}
	}
	return 1;
}

/* Whether a catalog from a peer (or from LMDB) is one this server can
 * install: every volume name is a valid name (it becomes a file name under
 * the data directory: no '/', no '..'), unique, and sizes and page sizes are
 * what volume create allows. 1, or 0 with the reason in err. */
int catalog_check(const Pv__Catalog *c, char *err, size_t errlen)
{
	char why[256]; /* pv_valid_name: an escaped name and its reason */

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
		if (!pv_valid_page_size(vi->page_size, NULL, 0)) {
			snprintf(err, errlen, "volume %s: page size %u out of range", vi->name,
				 vi->page_size);
			return 0;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->volumes[j]->name, vi->name)) {
				snprintf(err, errlen, "volume %s listed twice", vi->name);
				return 0;
			}
		if (!snapshots_check(vi, err, errlen))
			return 0;
	}
	return auth_catalog_check(c, err, errlen);
}

/* Writes c, the routing tables of the new volumes and the removal of those
 * of the removed names in one LMDB transaction. Returns 0 or -1. */
static int persist(const Pv__Catalog *c, struct volume *const *newvols, size_t nnew,
		   const char *const *removed, size_t nremoved)
{
	size_t len = pv__catalog__get_packed_size(c);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	if (!buf)
		return -1;
	pv__catalog__pack(c, buf);
	rc = meta_put_catalog(buf, len, newvols, nnew, removed, nremoved);
	free(buf);
	return rc;
}

/* Once c is persisted: makes list (n volumes, which holds the nnew newvols)
 * the volume list; volumes not in it are deleted with their data file, new
 * ones this server may hold get their data file opened. Takes the list's
 * references. */
static void relink(const Pv__Catalog *c, struct volume **list, size_t n, struct volume **newvols,
		   size_t nnew)
{
	/* committed: drop the old list, link the new one */
	for (struct volume *v = srv->volumes, *next; v; v = next) {
		next = v->next;
		if (!in_list(list, n, v)) {
			v->deleted = 1;
			store_remove(v->name);
			snap_volume_removed(v);
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
}

/* Makes the volumes of c this server's: reuses those that stay, makes the
 * new ones, persists c, deletes those gone. Returns 0 or -1 (then nothing
 * changed). */
static int install_volumes(const Pv__Catalog *c)
{
	struct volume **list = calloc(c->n_volumes + 1, sizeof(*list));
	struct volume **newvols = calloc(c->n_volumes + 1, sizeof(*newvols));
	const char **removed = NULL;
	size_t n = 0, nnew = 0, nremoved = 0, nold = 0;
	int rc = -1;

	for (struct volume *v = srv->volumes; v; v = v->next)
		nold++;
	removed = calloc(nold + 1, sizeof(*removed));
	if (!list || !newvols || !removed)
		goto out;
	/* the new volume list, reusing the volumes that stay (not relinked yet:
	 * they are still on the old list) */
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		struct volume *v = catalog_volume(vi->name);

		if (v && v->id == vi->id) {
			/* what a change may edit of a volume: its allowed servers
			 * (set-servers) and placement generation */
			v->nservers =
			    vi->n_servers < PEERD_MAX_MEMBERS ? vi->n_servers : PEERD_MAX_MEMBERS;
			memcpy(v->servers, vi->servers, v->nservers * sizeof(uint32_t));
			if (!v->nservers) {
				v->servers[0] = srv->cfg.id;
				v->nservers = 1;
			}
			v->balance_gen = vi->balance_gen;
			volume_get(v);
		} else {
			v = volume_from_pb(c, vi);
			if (v && snap_volume_init(v, vi) < 0)
				volume_put(&v);
			if (!v)
				goto out;
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
	if (persist(c, newvols, nnew, removed, nremoved) < 0)
		goto out;
	relink(c, list, n, newvols, nnew);
	for (size_t i = 0; i < c->n_volumes; i++)
		snap_catalog_sync(list[i], c->volumes[i]); /* snapshots made or deleted */
	rc = 0;
out:
	for (size_t i = 0; rc < 0 && list && i < n; i++)
		volume_put(&list[i]);
	free(list);
	free(newvols);
	free(removed);
	return rc;
}

/* Makes the members of c this server's, keeping the sockets and liveness of
 * those that stay; closes those of the members gone. */
static void install_members(const Pv__Catalog *c)
{
	struct member old[PEERD_MAX_MEMBERS];
	size_t nold = srv->nmembers;

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
		m->draining = c->members[i]->draining;
	}
	for (size_t j = 0; j < nold; j++) {
		if (old[j].sock) {
			batch_cork_flush_socket(srv->cork, old[j].sock);
			zmq_close(old[j].sock);
		}
		linkset_member_drop(&old[j], NULL); /* no longer a member */
		if (old[j].last_hb)
			pv__heartbeat__free_unpacked(old[j].last_hb, NULL);
	}
}

void catalog_hash(const Pv__Catalog *c, uint8_t *out)
{
	size_t n = pv__catalog__get_packed_size(c);
	uint8_t small[4096], *buf = n <= sizeof(small) ? small : malloc(n);

	if (!buf)
		abort(); /* a catalog's size; out of memory here is fatal */
	pv__catalog__pack(c, buf);
	crypto_generichash(out, PEERD_CATALOG_HASH_LEN, buf, n, NULL, 0);
	if (buf != small)
		free(buf);
}

char *catalog_hash_hex(const uint8_t *hash, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", hash[i]);
	out[2 * n] = 0;
	return out;
}

int catalog_install(Pv__Catalog **cp, const char *why)
{
	Pv__Catalog *c = *cp;
	char bad[256];

	*cp = NULL;
	if (!catalog_check(c, bad, sizeof(bad))) {
		pv_err("catalog version %llu (%s) refused: %s; keeping version %llu",
		       (unsigned long long)c->version, why, bad, (unsigned long long)srv->version);
		catalog_pb_free(c);
		return -1;
	}
	for (size_t i = 0; i <= c->n_members; i++) {
		if (i == c->n_members)
			return remove_gone(&c, why); /* this server left or was removed */
		if (c->members[i]->id == srv->cfg.id)
			break;
	}
	if (install_volumes(c) < 0) {
		catalog_pb_free(c);
		return -1;
	}
	install_members(c);
	catalog_pb_free(committed);
	committed = c;
	srv->version = c->version;
	catalog_hash(c, srv->catalog_hash);
	snprintf(srv->group_id, sizeof(srv->group_id), "%s", c->group_id);
	auth_catalog_installed();
	{
		char hex[17];

		pv_info("catalog version %llu (hash %s) installed: %zu members, %zu volumes (%s)",
			(unsigned long long)c->version, catalog_hash_hex(srv->catalog_hash, 8, hex),
			c->n_members, c->n_volumes, why);
	}
	peers_connect();
	return 0;
}

int catalog_adopt(const Pv__Catalog *c, const char *why)
{
	Pv__Catalog *copy = catalog_pb_copy(c);

	if (!copy)
		return -1;
	return catalog_install(&copy, why);
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

Pv__Catalog *catalog_group_of_one(void)
{
	Pv__Member *self = malloc(sizeof(*self));
	Pv__Catalog *c = malloc(sizeof(*c));
	Pv__Member **list = malloc(sizeof(*list));
	char gid[33];

	if (!c || !self || !list) {
		free(self);
		free(c);
		free(list);
		return NULL;
	}
	pv__catalog__init(c);
	pv__member__init(self);
	random_hex(gid, 16);
	c->version = 1;
	c->group_id = catalog_strdup(gid);
	c->next_volume_id = 1;
	self->id = srv->cfg.id;
	self->address = catalog_strdup(srv->cfg.listen);
	self->weight = srv->cfg.weight;
	self->capacity = store_free();
	list[0] = self;
	c->members = list;
	c->n_members = 1;
	pv_info("formed group %s of one server", gid);
	return c;
}

int catalog_load(void)
{
	void *buf;
	size_t len;
	int rc = meta_get("catalog", "catalog", &buf, &len);
	Pv__Catalog *c;

	if (rc < 0)
		return -1;
	if (sodium_init() < 0) {
		pv_err("libsodium does not initialize");
		return -1;
	}
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
		c = catalog_group_of_one(); /* a new server */
		if (!c)
			return -1;
	}
	remove_load();
	if (catalog_install(&c, rc == 0 ? "loaded" : "new") < 0)
		return -1;
	if (rc == 0)
		store_sweep(); /* a failure is logged; the volumes are served anyway */
	return 0;
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
	join_free();
	change_free();
}

/* ---- catching up ---- */

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

/* The answer to our CAT_FETCH: adopts the catalog if it is newer. */
static void fetched(struct member *m, const void *body, size_t len)
{
	Pv__Catalog *c =
	    body ? (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor, body, len) : NULL;

	fetch_sent_ms = 0;
	if (c && !strcmp(c->group_id, srv->group_id)) {
		uint8_t hash[PEERD_CATALOG_HASH_LEN];
		int resync;
		char why[96];

		catalog_hash(c, hash);
		resync = srv->cfg.resync_catalog && c->version >= srv->version &&
			 memcmp(hash, srv->catalog_hash, sizeof(hash));
		if (c->version > srv->version || resync) {
			snprintf(why, sizeof(why), "%s server %u",
				 resync ? "--resync-catalog: replaced by the catalog of"
					: "caught up from",
				 m->id);
			if (catalog_adopt(c, why) == 0 && resync)
				srv->cfg.resync_catalog = 0;
		}
	}
	if (c)
		pv__catalog__free_unpacked(c, NULL);
}

/* ---- divergence: two catalogs under one version ---- */

/* srv->catalog_diverged from the members' flags; logs the divergence with
 * m (once a minute). */
static void diverged_update(const struct member *m)
{
	int any = 0;

	for (size_t i = 0; i < srv->nmembers; i++)
		any |= srv->members[i].catalog_diverged;
	if (!any && srv->catalog_diverged)
		pv_warn("catalog: every member agrees with this server's catalog version %llu "
			"again; catalog changes are possible again",
			(unsigned long long)srv->version);
	srv->catalog_diverged = any;
	if (m && m->catalog_diverged &&
	    (!diverged_logged_ms || pv_now_ms() - diverged_logged_ms >= PEERD_DIVERGED_LOG_MS)) {
		char mine[2 * PEERD_CATALOG_HASH_LEN + 1], theirs[2 * PEERD_CATALOG_HASH_LEN + 1];

		diverged_logged_ms = pv_now_ms();
		pv_err(
		    "CATALOG DIVERGED: server %u holds catalog version %llu hash %s, but server %u "
		    "(%s) holds version %llu hash %s; catalog changes are refused until an "
		    "administrator resolves it (restart the member(s) in the minority with "
		    "--resync-catalog; docs/architecture.md, 'Catalog and membership')",
		    srv->cfg.id, (unsigned long long)srv->version,
		    catalog_hash_hex(srv->catalog_hash, PEERD_CATALOG_HASH_LEN, mine), m->id,
		    m->address, (unsigned long long)m->catalog_version,
		    catalog_hash_hex(m->catalog_hash, PEERD_CATALOG_HASH_LEN, theirs));
	}
}

void catalog_peer_seen(struct member *m)
{
	int same_version = m->catalog_version == srv->version;
	int differs = m->has_catalog_hash &&
		      memcmp(m->catalog_hash, srv->catalog_hash, PEERD_CATALOG_HASH_LEN);

	if (m->catalog_version > srv->version ||
	    (srv->cfg.resync_catalog && same_version && differs)) {
		catalog_fetch_from(m);
		return;
	}
	if (!same_version || !m->has_catalog_hash)
		return; /* nothing to compare (a member behind catches up) */
	if (!differs && srv->cfg.resync_catalog) {
		pv_info("--resync-catalog: server %u holds the same catalog (version %llu); "
			"nothing to replace",
			m->id, (unsigned long long)srv->version);
		srv->cfg.resync_catalog = 0;
	}
	m->catalog_diverged = differs;
	diverged_update(m);
}

void catalog_diverged_with(uint32_t id, uint64_t version, const uint8_t *hash)
{
	struct member *m = catalog_member(id);

	if (!m || version != srv->version)
		return;
	m->catalog_version = version;
	memcpy(m->catalog_hash, hash, PEERD_CATALOG_HASH_LEN);
	m->has_catalog_hash = 1;
	m->catalog_diverged = 1;
	diverged_update(m);
}

/* ---- peer messages, to their protocol ---- */

void catalog_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	if (h->op == PV_OP_JOIN) {
		join_peer_op(from, h, body, len);
		return;
	}
	if (h->op == PV_OP_CAT_FETCH) {
		reply_body(from, h, PV_ST_OK, NULL, &committed->base);
		return;
	}
	change_peer_op(from, h, body, len);
}

void catalog_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	if (h->op == PV_OP_CAT_FETCH) {
		fetched(m, body, len);
		return;
	}
	change_peer_reply(m, h);
}

void catalog_tick(void *arg)
{
	change_tick();
	join_tick();
}
