/* catalog.c: fused's view of the catalog: the volumes with their routes
 * (the server each one's requests go to: at start the one the group
 * proposes, a holder on this host unless it is overloaded, or --server;
 * later the one a PING answer names, catalog_move) and their snapshots, the
 * members, the published list the FUSE threads read (each volume's file,
 * then its snapshots' VOL@NAME files: snapfile.c), the volumes' mapping
 * state (vmap.c holds the mappings), and fetching the catalog (CATALOG
 * requests, rotating to another server when one fails). Sockets are
 * conn.c's.
 *
 * Client thread only, except the published list (c->pub, under c->lock).
 * The catalog is read at start (client_new, in the caller's thread, before
 * the client thread exists), on demand from lookup/readdir, and whenever a
 * PING reply carries a different catalog version.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "pvlog.h"
#include "util.h"

#define MAP_RETRY_MS 60000 /* after a refusal or no answer, ask again then */

/* The catalog's member id, or NULL. */
const struct member *catalog_member(struct client *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (c->members[i].id == id)
			return &c->members[i];
	return NULL;
}

/* The member id of s, from the replies or the catalog's member list. */
uint32_t catalog_member_of(struct client *c, struct conn *s)
{
	if (!s->member_id)
		for (size_t i = 0; i < c->n_members; i++)
			if (strcmp(c->members[i].address, s->address) == 0)
				s->member_id = c->members[i].id;
	return s->member_id;
}

/* The catalog's volume called name, or NULL. */
struct vol_view *catalog_volume(struct client *c, const char *name)
{
	for (size_t i = 0; i < c->n_vols; i++)
		if (strcmp(c->vols[i].attr.name, name) == 0)
			return &c->vols[i];
	return NULL;
}

/* Whether v has the snapshot of id snap_id. */
int catalog_has_snapshot(const struct vol_view *v, uint64_t snap_id)
{
	for (size_t i = 0; i < v->n_snaps; i++)
		if (v->snaps[i] == snap_id)
			return 1;
	return 0;
}

/* Sends a catalog request to the catalog server unless one is in flight. */
void catalog_request(struct client *c, uint64_t timeout_ms)
{
	struct part *p;

	if (c->cat_part || !c->cat_conn)
		return;
	p = part_new(c, PV_OP_CATALOG, NULL, NULL, 0, 0, 0, timeout_ms);
	if (!p) {
		catalog_ended(c, 0);
		return;
	}
	c->cat_part = p;
	part_send(c, p, c->cat_conn);
}

/* Picks another catalog server: the --group addresses, then the members. */
static void catalog_rotate(struct client *c)
{
	size_t n = c->n_group + c->n_members;
	const char *addr;
	struct conn *s;

	for (size_t tries = 0; tries < n; tries++) {
		size_t i = c->cat_next++ % n;

		addr = i < c->n_group ? c->group[i] : c->members[i - c->n_group].address;
		if (c->cat_conn && strcmp(addr, c->cat_conn->address) == 0)
			continue;
		s = conn_get(c, addr);
		if (s) {
			pv_info("asking %s for the catalog from now on", s->address);
			c->cat_conn = s;
			return;
		}
	}
}

/* A catalog fetch ended: wake the threads waiting in client_catalog_refresh. */
void catalog_ended(struct client *c, int ok)
{
	if (!ok && c->have_catalog)
		catalog_rotate(c);
	pthread_mutex_lock(&c->lock);
	c->cat_seq++;
	c->cat_tried_ms = pv_now_ms();
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static int holds(const uint32_t *holders, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (holders[i] == id)
			return 1;
	return 0;
}

/* The server for volume v (its holders, the group's advice), read from
 * server from: pick_route's choice (--server; a holder on this host that
 * is not overloaded; the group's least loaded; from). */
static struct conn *choose_route(struct client *c, struct conn *from, const struct vol_view *v)
{
	struct pick_holder h[64];
	size_t n = v->n_holders < 64 ? v->n_holders : 64;
	uint32_t forced = 0, id;
	const struct member *m;
	struct conn *s;

	for (size_t i = 0; i < n; i++) {
		m = catalog_member(c, v->holders[i]);
		h[i].id = v->holders[i];
		h[i].known = m != NULL;
		h[i].local = m && m->local;
		h[i].over = m && m->over;
	}
	for (size_t i = 0; c->server && i < c->n_members; i++)
		if (strcmp(c->members[i].address, c->server) == 0)
			forced = c->members[i].id;
	id = pick_route(h, n, forced, v->advised, catalog_member_of(c, from), c->client_id);
	if (!id || id == catalog_member_of(c, from))
		return from;
	m = catalog_member(c, id);
	s = m ? conn_get(c, m->address) : NULL;
	return s ? s : from;
}

/* Another holder of v than dead (the next one in its list), or NULL. */
struct conn *catalog_other_holder(struct client *c, struct vol_view *v, struct conn *dead)
{
	size_t start = 0;
	uint32_t dead_id = catalog_member_of(c, dead);

	for (size_t i = 0; i < v->n_holders; i++)
		if (v->holders[i] == dead_id)
			start = i + 1;
	for (size_t k = 0; k < v->n_holders; k++) {
		const struct member *m = catalog_member(c, v->holders[(start + k) % v->n_holders]);
		struct conn *s;

		if (!m || m->id == dead_id || strcmp(m->address, dead->address) == 0)
			continue;
		s = conn_get(c, m->address);
		if (s)
			return s;
	}
	return NULL;
}

void catalog_move(struct client *c, struct conn *s, uint32_t to, const char *why)
{
	const struct member *m = catalog_member(c, to);
	struct conn *t = m ? conn_get(c, m->address) : NULL;
	unsigned moved = 0, inflight = 0;

	if (!t || t == s) {
		pv_warn("server %s asks this client to use server %u, %s; staying (%s)", s->address,
			to, t ? "which it is" : "not a member it can reach", why);
		return;
	}
	for (size_t i = 0; i < c->n_vols; i++) {
		struct vol_view *v = &c->vols[i];

		if (v->conn != s || !holds(v->holders, v->n_holders, to))
			continue;
		v->conn = t;
		v->draining = 1;
		moved++;
	}
	if (!moved) {
		pv_info("server %s asks this client to use server %u (%s): it holds none of the "
			"volumes sent there; staying",
			s->address, to, why);
		return;
	}
	/* what is in flight to s for those volumes is answered first (or
	 * re-sent as after a failure): a write there ends before an
	 * overlapping one goes to t */
	for (struct part *p = c->all.next; p != &c->all; p = p->next) {
		struct vol_view *v;

		if (!p->call || p->conn != s || p->drain || !(v = catalog_volume(c, p->volume)) ||
		    !v->draining || v->conn != t)
			continue;
		p->drain = 1;
		c->drain_left++;
		inflight++;
	}
	c->draining = 1;
	c->moved_ms = pv_now_ms();
	pv_info("server %s asks this client to use server %s (%s): %u volume(s) move there; %u "
		"request(s) in flight to %s end first",
		s->address, t->address, why, moved, inflight, s->address);
	/* both know at once which volumes this client sends them */
	conn_ping(c, t);
	conn_ping(c, s);
	part_drained(c); /* nothing in flight: the move is done */
}

static void vols_free(struct vol_view *vols, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(vols[i].holders);
		free(vols[i].snaps);
		vmap_put(vols[i].map.m);
	}
	free(vols);
}

static void members_free(struct member *members, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(members[i].address);
		free(members[i].link);
	}
	free(members);
}

/* Routes the new catalog's vols (read from server from): a route that
 * still works is kept, with the volume's mapping; new ones follow
 * choose_route. */
static void route(struct client *c, struct conn *from, struct vol_view *vols, size_t n_vols)
{
	for (size_t i = 0; i < n_vols; i++) {
		struct vol_view *v = &vols[i], *old = catalog_volume(c, v->attr.name);

		if (old && old->attr.id == v->attr.id && old->conn &&
		    (v->n_holders == 0 ||
		     holds(v->holders, v->n_holders, catalog_member_of(c, old->conn))))
			v->conn = old->conn; /* keep a working route */
		else
			v->conn = choose_route(c, from, v);
		/* (a move's drain goes on: a volume gone or new ends none) */
		v->draining = old && old->attr.id == v->attr.id && old->draining;
		if (!old || old->conn != v->conn)
			pv_debug("volume %s: requests go to %s", v->attr.name, v->conn->address);
		if (old && old->attr.id == v->attr.id && old->attr.size == v->attr.size) {
			/* the same volume: its mapping goes on (the old is not freed) */
			v->map = old->map;
			memset(&old->map, 0, sizeof(old->map));
		}
	}
}

/* Replaces the catalog with the pv.Catalog in buf, answered by from.
 * Returns 0, or -1 (logged) leaving the old catalog. Routes that still work
 * are kept; new ones follow choose_route. */
static int catalog_apply(struct client *c, struct conn *from, const void *buf, size_t len)
{
	Pv__Catalog *cat = (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor, buf, len);
	struct member *members = NULL;
	struct vol_view *vols = NULL;
	struct volume_attr *pub = NULL;
	size_t n_members = 0, n_vols = 0, n_files = 0, n_snaps = 0;
	char err[PV_MAX_MESSAGE];

	if (!cat) {
		pv_warn("catalog from %s does not decode", from->address);
		return -1;
	}
	for (size_t i = 0; i < cat->n_volumes; i++)
		n_snaps += cat->volumes[i]->n_snapshots;
	members = calloc(cat->n_members + 1, sizeof(*members));
	vols = calloc(cat->n_volumes + 1, sizeof(*vols));
	pub = calloc(cat->n_volumes + n_snaps + 1, sizeof(*pub));
	if (!members || !vols || !pub)
		goto nomem;
	for (size_t i = 0; i < cat->n_members; i++) {
		Pv__Member *m = cat->members[i];

		if (!m->id || !m->address[0]) {
			pv_warn("catalog from %s: member without id or address ignored",
				from->address);
			continue;
		}
		members[n_members].id = m->id;
		members[n_members].over = m->clients_over;
		members[n_members].local = conn_is_local(m->address);
		if (!(members[n_members].address = strdup(m->address)) ||
		    !(members[n_members].link = strdup(c->links && m->link ? m->link : "")))
			goto nomem;
		n_members++;
	}
	for (size_t i = 0; i < cat->n_volumes; i++) {
		Pv__VolumeInfo *vi = cat->volumes[i];
		struct vol_view *v = &vols[n_vols];

		if (!pv_valid_name(vi->name, err, sizeof(err)) ||
		    !pv_valid_volume_size(vi->size, UINT64_MAX, err, sizeof(err))) {
			char shown[PV_ESCAPE_NAME];

			pv_warn("catalog from %s: volume '%s' ignored: %s", from->address,
				vi->name
				    ? pv_escape(vi->name, strlen(vi->name), shown, sizeof(shown))
				    : "",
				err);
			continue;
		}
		snprintf(v->attr.name, sizeof(v->attr.name), "%s", vi->name);
		v->attr.id = vi->id;
		v->attr.size = vi->size;
		v->attr.page_size = vi->page_size;
		v->attr.created = vi->created;
		v->attr.allocated = vi->allocated;
		v->advised = vi->client_server;
		if (vi->n_holders) {
			v->holders = malloc(vi->n_holders * sizeof(*v->holders));
			if (!v->holders)
				goto nomem;
			memcpy(v->holders, vi->holders, vi->n_holders * sizeof(*v->holders));
			v->n_holders = vi->n_holders;
		}
		pub[n_files++] = v->attr;
		if (vi->n_snapshots && !(v->snaps = calloc(vi->n_snapshots, sizeof(*v->snaps))))
			goto nomem;
		for (size_t k = 0; k < vi->n_snapshots; k++) {
			if (snapfile_attr(&v->attr, vi->snapshots[k], &pub[n_files], err,
					  sizeof(err)) < 0) {
				pv_warn("catalog from %s: a snapshot of volume %s ignored: %s",
					from->address, v->attr.name, err);
				continue;
			}
			v->snaps[v->n_snaps++] = vi->snapshots[k]->id;
			n_files++;
		}
		n_vols++;
	}

	/* nothing fails from here on; routes are picked against the new members */
	members_free(c->members, c->n_members);
	c->members = members;
	c->n_members = n_members;
	for (struct conn *s = c->conns; s; s = s->next) {
		catalog_member_of(c, s);
		conn_link_address(c, s);
	}
	route(c, from, vols, n_vols);
	vols_free(c->vols, c->n_vols);
	c->vols = vols;
	c->n_vols = n_vols;
	if (c->cat_version != cat->version)
		pv_debug("catalog version %llu from %s: %zu volumes, %zu members",
			 (unsigned long long)cat->version, from->address, n_vols, n_members);
	c->cat_version = cat->version;
	c->have_catalog = 1;
	pthread_mutex_lock(&c->lock);
	free(c->pub);
	c->pub = pub;
	c->n_pub = n_files;
	pthread_mutex_unlock(&c->lock);
	pv__catalog__free_unpacked(cat, NULL);
	return 0;

nomem:
	pv_err("out of memory reading the catalog");
	members_free(members, n_members);
	if (vols)
		vols_free(vols, n_vols + 1);
	free(pub);
	pv__catalog__free_unpacked(cat, NULL);
	return -1;
}

/* On a READ of volume v to s: sets PV_F_MAP when v's mapping is of s's data
 * file and holds the range (s then answers without data what it holds in
 * memory), the part keeping a reference on it until the answer; asks s for
 * its data file when v has no mapping yet. */
void catalog_map_flags(struct client *c, struct part *p, struct conn *s, struct vol_view *v,
		       Pv__Header *h)
{
	struct vol_map *vm = v ? &v->map : NULL;

	vmap_put(p->map); /* a re-send names the mapping of now */
	p->map = NULL;
	if (!c->map || !v || s->shm != SHM_ON || !s->member_id)
		return;
	if (vm->m && vm->server != s->member_id) {
		/* its requests go to another server now: that file is not it */
		vmap_put(vm->m);
		vm->m = NULL;
		vm->state = MAP_NONE;
	}
	if (vm->m) {
		if (vmap_ptr(vm->m, p->offset, p->length)) {
			h->flags |= PV_F_MAP;
			h->map_dev = vm->m->dev;
			h->map_ino = vm->m->ino;
			vmap_get(vm->m);
			p->map = vm->m;
		}
		return;
	}
	if (vm->state == MAP_PENDING || (vm->state == MAP_REFUSED && pv_now_ms() < vm->retry_ms))
		return;
	if (part_session(c, s, PV_OP_MAP_VOLUME, v->attr.name, NULL) == 0)
		vm->state = MAP_PENDING;
}

/* The answer to MAP_VOLUME: maps the data file it names, or notes the
 * refusal (asked again after MAP_RETRY_MS). */
static void map_answered(struct client *c, struct conn *s, const struct part *p,
			 const Pv__Header *h, zmq_msg_t *data, int extra)
{
	struct vol_view *v = catalog_volume(c, p->volume);
	Pv__VolumeMap *m = NULL;
	char err[PATH_MAX + 160] = "";

	if (!v || v->map.m || v->map.state != MAP_PENDING)
		return;
	v->map.state = MAP_REFUSED;
	v->map.retry_ms = pv_now_ms() + MAP_RETRY_MS;
	if (h->status != PV_ST_OK)
		snprintf(err, sizeof(err), "%s%s%s", wire_status_name(h->status),
			 h->message[0] ? ": " : "", h->message);
	else if (!data || extra ||
		 !(m = (Pv__VolumeMap *)wire_body_decode(&pv__volume_map__descriptor,
							 zmq_msg_data(data), zmq_msg_size(data))))
		snprintf(err, sizeof(err), "its answer does not decode");
	else if (!h->server_id)
		snprintf(err, sizeof(err), "its answer names no server");
	else if (m->volume_id != v->attr.id || m->size != v->attr.size)
		snprintf(err, sizeof(err),
			 "its file is of volume id %llu of %llu bytes, the catalog's %llu of "
			 "%llu bytes",
			 (unsigned long long)m->volume_id, (unsigned long long)m->size,
			 (unsigned long long)v->attr.id, (unsigned long long)v->attr.size);
	else if ((v->map.m = vmap_open(m->path, m->dev, m->ino, v->attr.size, err, sizeof(err))))
		v->map.server = h->server_id;
	if (v->map.m)
		pv_info("volume %s: READ data held in memory by server %s is copied out of its "
			"data file, mapped read-only",
			v->attr.name, s->address);
	else
		pv_info("volume %s: READ data of server %s comes through it (its data file is "
			"not mapped: %s); asked again in %u s",
			v->attr.name, s->address, err, MAP_RETRY_MS / 1000);
	if (m)
		pv__volume_map__free_unpacked(m, NULL);
}

/* A MAP_VOLUME request ended without an answer: ask again later. */
void catalog_map_unanswered(struct client *c, const struct part *p)
{
	struct vol_view *v = catalog_volume(c, p->volume);

	if (v && !v->map.m && v->map.state == MAP_PENDING) {
		v->map.state = MAP_REFUSED;
		v->map.retry_ms = pv_now_ms() + MAP_RETRY_MS;
	}
}

/* The answer to MAP_VOLUME (a row of part.c's table). */
void catalog_map_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	map_answered(c, s, p, a->h, a->data, a->extra);
	part_free(c, p);
}

/* The answer to CATALOG (a row of part.c's table): installs the catalog, or
 * keeps the old one. */
void catalog_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	const Pv__Header *h = a->h;
	int ok = h->status == PV_ST_OK && a->data && !a->extra &&
		 catalog_apply(c, s, zmq_msg_data(a->data), zmq_msg_size(a->data)) == 0;

	if (h->status != PV_ST_OK)
		pv_warn("catalog request to %s: %s %s", s->address, wire_status_name(h->status),
			h->message);
	else if (!a->data)
		pv_warn("catalog reply from %s has no body", s->address);
	part_free(c, p);
	catalog_ended(c, ok);
}

/* Frees the volumes, members and published list. */
void catalog_free(struct client *c)
{
	vols_free(c->vols, c->n_vols);
	members_free(c->members, c->n_members);
	free(c->pub);
	c->vols = NULL;
	c->members = NULL;
	c->pub = NULL;
	c->n_vols = c->n_members = c->n_pub = 0;
}
