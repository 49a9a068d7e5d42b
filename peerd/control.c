/* control.c: the control socket that peerctl talks to (docs/control-protocol.md):
 * a ZeroMQ ROUTER on ipc://PATH, file mode 0600; one JSON request frame in,
 * one JSON reply frame out. A request is checked by control_parse
 * (control_parse.c: pure, fuzzed) and run by its row in the handlers table.
 * Commands that change the catalog answer later: they hand the catalog code
 * (volume_admin.c, join.c) a catalog_done_fn and a struct pending, and the
 * answer is built here when it is called. The only file of peerd that builds
 * JSON. Reactor thread only. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "peerd.h"

/* Runs a checked command: returns 0 (answer now: *result), 1 (answered
 * later), or with err: -ENOENT (no such volume or member), -EEXIST (the
 * name is taken) or -1. */
typedef int (*cmd_fn)(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
		      json_t **result, char *err, size_t errlen);

/* ---- replies ---- */

/* The reply's "code" for a refusal of kind why (an errno: ENOENT, EEXIST),
 * or NULL: none. */
static const char *error_code(int why)
{
	return why == ENOENT ? "not_found" : why == EEXIST ? "exists" : NULL;
}

/* Sends the answer to the control client ident: ok with result (stolen), or
 * the error, of kind why (error_code). */
static void control_reply(const uint8_t *ident, size_t ident_len, int ok, json_t *json_result,
			  int why, const char *err)
{
	json_t *r = ok ? json_pack("{s:b,s:o}", "ok", 1, "result",
				   json_result ? (json_t *)json_result : json_object())
		       : json_pack("{s:b,s:s}", "ok", 0, "error", err ? err : "failed");

	if (r && !ok && error_code(why))
		json_object_set_new(r, "code", json_string(error_code(why)));
	char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;

	if (!text) {
		pv_err("control: cannot encode a reply");
		json_decref(r);
		return;
	}
	if (zmq_send(srv->control, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->control, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->control, text, strlen(text), ZMQ_DONTWAIT) < 0)
		pv_debug("control: reply not sent: %s", zmq_strerror(errno));
	free(text);
	json_decref(r);
}

/* ---- views ---- */

static json_t *id_array(const uint32_t *ids, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

/* ---- moves ---- */

#define CONTROL_MOVES_MAX 1024 /* moves in the group shown */

/* JSON of a move (a new reference). */
static json_t *move_json(const struct migrate_info *m)
{
	return json_pack("{s:s,s:I,s:i,s:i,s:i,s:i,s:i,s:s,s:I,s:I,s:i,s:s}", "volume", m->volume,
			 "page", (json_int_t)m->page, "from", (int)m->from, "to", (int)m->to,
			 "piece", (int)m->piece, "pieces", (int)m->pieces, "piece_size",
			 (int)m->piece_size, "state", migrate_state_name(m->state), "started",
			 (json_int_t)m->started, "bytes_copied", (json_int_t)m->bytes_copied,
			 "rate_kbps", (int)m->rate_kbps, "stuck", m->stuck);
}

/* The group's moves (migrate_list), malloc'd, *n of them; NULL (and *n
 * 0) if out of memory. */
static struct migrate_info *moves_get(size_t *n)
{
	struct migrate_info *m = calloc(CONTROL_MOVES_MAX, sizeof(*m));

	*n = m ? migrate_list(m, CONTROL_MOVES_MAX) : 0;
	return m;
}

static int by_page(const void *a, const void *b)
{
	const struct migrate_info *x = a, *y = b;

	if (x->page != y->page)
		return x->page < y->page ? -1 : 1;
	/* the source's record of a move before the target's */
	return (x->state == MIG_IN) - (y->state == MIG_IN);
}

/* The moves of v in the group, one per page, by page (malloc'd: free
 * it), *n of them; with transit, only those before the switch (a page
 * switched is the target's, the source is only punching its copy). */
static struct migrate_info *volume_moves(const struct volume *v, int transit, size_t *n)
{
	struct migrate_info *m = moves_get(n);
	size_t k = 0;

	for (size_t i = 0; i < *n; i++)
		if (m[i].volume_id == v->id && m[i].page < v->npages &&
		    (!transit || m[i].state != MIG_SWITCHED))
			m[k++] = m[i];
	if (k > 1)
		qsort(m, k, sizeof(*m), by_page);
	*n = 0;
	for (size_t i = 0; i < k; i++)
		if (!*n || m[*n - 1].page != m[i].page)
			m[(*n)++] = m[i];
	return m;
}

/* The routing table of v as runs of pages with one owner and epoch; a
 * page in transit is a run of its own with "moving" (a new reference). */
static json_t *routing_json(const struct volume *v)
{
	size_t nm, k = 0;
	struct migrate_info *mv = volume_moves(v, 1, &nm);
	json_t *runs = json_array();
	uint64_t first = 0;

	for (uint64_t p = 1; p <= v->npages; p++) {
		int first_moving = k < nm && mv[k].page == first;
		json_t *run;

		if (p < v->npages && !first_moving && !(k < nm && mv[k].page == p) &&
		    v->owner[p] == v->owner[first] && v->epoch[p] == v->epoch[first])
			continue;
		run = json_pack("{s:I,s:I,s:i,s:I}", "first_page", (json_int_t)first, "last_page",
				(json_int_t)(p - 1), "owner", (int)v->owner[first], "epoch",
				(json_int_t)v->epoch[first]);
		if (run && first_moving) {
			json_object_set_new(run, "moving",
					    json_pack("{s:i,s:i,s:i,s:i,s:s}", "from",
						      (int)mv[k].from, "to", (int)mv[k].to, "piece",
						      (int)mv[k].piece, "pieces", (int)mv[k].pieces,
						      "state", migrate_state_name(mv[k].state)));
			k++;
		}
		json_array_append_new(runs, run);
		first = p;
	}
	free(mv);
	return runs;
}

/* JSON of a volume (a new reference). */
static json_t *volume_json(struct volume *v, int routing)
{
	uint32_t holders[PEERD_MAX_MEMBERS];
	size_t nh = catalog_holders(v, holders, PEERD_MAX_MEMBERS);
	uint64_t written = 0, bytes = 0;
	uint32_t open;
	json_t *o;

	catalog_volume_usage(v, &written, &bytes, &open);
	o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:i,s:I}", "name", v->name, "id",
		      (json_int_t)v->id, "size", (json_int_t)v->size, "page_size",
		      (json_int_t)v->page_size, "pages", (json_int_t)v->npages, "pages_written",
		      (json_int_t)written, "bytes_allocated", (json_int_t)bytes, "servers",
		      id_array(v->servers, v->nservers), "holders", id_array(holders, nh),
		      "open_clients", (int)open, "created", (json_int_t)v->created);
	if (o) { /* pages whose owner was removed: lost (remove.c) */
		uint64_t lost = 0;
		const Pv__Catalog *c = catalog_committed();

		for (size_t i = 0; c && i < c->n_removed; i++)
			if (!c->removed[i]->left)
				lost += remove_lost_pages(v->owner, v->npages, c->removed[i]->id);
		json_object_set_new(o, "pages_lost", json_integer((json_int_t)lost));
	}
	if (o) { /* the clients that have it open through this server */
		uint64_t ids[64];
		const char *hosts[64];
		size_t n = clients_open_by(v->name, ids, hosts, 64);
		json_t *by = json_array();
		char hex[17];

		for (size_t i = 0; i < n; i++) {
			snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)ids[i]);
			json_array_append_new(by, json_pack("{s:s,s:s,s:i}", "client", hex, "host",
							    hosts[i], "server", (int)srv->cfg.id));
		}
		json_object_set_new(o, "open_by", by);
	}
	if (o && routing)
		json_object_set_new(o, "routing", routing_json(v));
	return o;
}

/* JSON of the group (a new reference). */
static json_t *group_json(void)
{
	json_t *members = json_array(), *removed = json_array(), *g;
	const Pv__Catalog *c = catalog_committed();

	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		uint64_t pages = 0;
		const char *state = m->id == srv->cfg.id ? "self" : m->up ? "up" : "down";

		for (struct volume *v = srv->volumes; v; v = v->next)
			for (size_t k = 0; k < v->nowned; k++)
				pages += v->owned_ids[k] == m->id ? v->owned_count[k] : 0;
		int self = m->id == srv->cfg.id;
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1] = "";

		if (self || m->has_catalog_hash)
			catalog_hash_hex(self ? srv->catalog_hash : m->catalog_hash,
					 PEERD_CATALOG_HASH_LEN, hash);
		json_array_append_new(
		    members,
		    json_pack("{s:i,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:s,s:b,s:b}", "id", (int)m->id,
			      "address", m->address, "weight", (int)m->weight, "state", state,
			      "pages", (json_int_t)pages, "bytes", (json_int_t)m->bytes, "free",
			      (json_int_t)m->free, "catalog_version",
			      (json_int_t)(self ? srv->version : m->catalog_version),
			      "catalog_hash", hash, "catalog_diverged", m->catalog_diverged,
			      "draining", m->draining));
	}
	{
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1];

		g = json_pack("{s:s,s:I,s:s,s:b,s:o}", "group_id", srv->group_id, "catalog_version",
			      (json_int_t)srv->version, "catalog_hash",
			      catalog_hash_hex(srv->catalog_hash, PEERD_CATALOG_HASH_LEN, hash),
			      "catalog_diverged", srv->catalog_diverged, "members", members);
	}
	/* servers gone: left, or removed with their pages lost */
	for (size_t i = 0; c && i < c->n_removed; i++)
		json_array_append_new(removed,
				      json_pack("{s:i,s:s,s:I,s:s}", "id", (int)c->removed[i]->id,
						"address", c->removed[i]->address, "version",
						(json_int_t)c->removed[i]->version, "how",
						c->removed[i]->left ? "left" : "removed"));
	json_object_set_new(g, "removed", removed);
	return g;
}

/* ---- answers to commands that end later ---- */

/* A command waiting for its catalog change: whom to answer, about what. */
struct pending {
	uint8_t ident[PV_MAX_IDENTITY];
	size_t ident_len;
	char name[PV_MAX_NAME + 1]; /* volume.delete: the volume */
	struct control_cmd cmd;	    /* placement commands and page.move: what was asked */
	uint64_t pages;		    /* page.move: pages asked to move */
};

static struct pending *pending_new(const uint8_t *ident, size_t ident_len, const char *name,
				   char *err, size_t errlen)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(p->ident, ident, ident_len);
	p->ident_len = ident_len;
	snprintf(p->name, sizeof(p->name), "%s", name);
	return p;
}

/* Answers p (result when ok, else err of kind why; nobody when err is NULL: peerd is
 * stopping) and frees it. */
static void pending_end(struct pending *p, int ok, json_t *result, int why, const char *err)
{
	if (ok)
		control_reply(p->ident, p->ident_len, 1, result, 0, NULL);
	else if (err)
		control_reply(p->ident, p->ident_len, 0, NULL, why, err);
	free(p);
}

/* catalog_done_fn of volume.create, volume.delete and group.join */
static void volume_created(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	pending_end(arg, ok, ok ? volume_json(vol, 0) : NULL, why, err);
}

static void volume_deleted(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	struct pending *p = arg;

	pending_end(p, ok, ok ? json_pack("{s:s}", "name", p->name) : NULL, why, err);
}

static void group_joined(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	pending_end(arg, ok, ok ? group_json() : NULL, why, err);
}

/* JSON of what member id owned: [{"volume", "pages"}...] (a new reference). */
static json_t *pages_of(uint32_t id)
{
	json_t *a = json_array();

	for (struct volume *v = srv->volumes; v; v = v->next) {
		uint64_t n = remove_lost_pages(v->owner, v->npages, id);

		if (n)
			json_array_append_new(
			    a, json_pack("{s:s,s:I}", "volume", v->name, "pages", (json_int_t)n));
	}
	return a;
}

/* catalog_done_fn of group.remove and group.leave; p->name holds the id */
static void member_removed(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	struct pending *p = arg;
	uint32_t id = (uint32_t)strtoul(p->name, NULL, 10);
	const Pv__RemovedMember *r = remove_record(id);

	pending_end(p, ok,
		    ok ? json_pack("{s:i,s:s,s:I,s:o}", "id", (int)id, "address",
				   r ? r->address : "", "catalog_version",
				   (json_int_t)(r ? r->version : srv->version), "lost",
				   r && !r->left ? pages_of(id) : json_array())
		       : NULL,
		    why, err);
}

/* The result of a placement command p once its change committed (vol:
 * volume.set_servers' volume), a new reference. */
static json_t *placement_result(const struct pending *p, struct volume *vol)
{
	const struct control_cmd *c = &p->cmd;
	const Pv__Catalog *cat = catalog_committed();
	json_t *vols;

	switch (c->op) {
	case CONTROL_SERVER_EVACUATE:
		return json_pack("{s:i,s:b}", "id", (int)c->id, "draining", !c->cancel);
	case CONTROL_VOLUME_SET_SERVERS:
		return vol ? volume_json(vol, 0) : json_pack("{s:s}", "name", c->name);
	case CONTROL_GROUP_SET_WEIGHT:
		vols = json_array();
		for (struct volume *v = srv->volumes; v; v = v->next)
			for (size_t i = 0; i < v->nservers; i++)
				if (v->servers[i] == c->id)
					json_array_append_new(vols, json_string(v->name));
		return json_pack("{s:i,s:i,s:o}", "id", (int)c->id, "weight", (int)c->weight,
				 "volumes", vols);
	case CONTROL_CONFIG_SET:
		if (c->key == CONTROL_KEY_BALANCE_THRESHOLD)
			return json_pack("{s:s,s:f}", "key", "balance.threshold", "value",
					 c->value / 1000.0);
		if (c->key == CONTROL_KEY_BALANCE_INTERVAL)
			return json_pack("{s:s,s:i}", "key", "balance.interval", "value",
					 (int)c->value);
		return json_pack("{s:s,s:i,s:i}", "key", "migrate.max-mbps", "value", (int)c->value,
				 "max_mbps", c->value ? (int)c->value : MIGRATE_MBPS_DEFAULT);
	case CONTROL_BALANCE_ON:
	case CONTROL_BALANCE_OFF:
		return json_pack("{s:b}", "on", cat && !cat->balance_off);
	default: /* migrate.pause, migrate.resume */
		return json_pack("{s:b}", "paused", cat && cat->migrate_paused);
	}
}

/* catalog_done_fn of the placement commands */
static void placement_changed(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	struct pending *p = arg;

	pending_end(p, ok, ok ? placement_result(p, vol) : NULL, why, err);
}

/* The answer to page.move p: pages asked to move, and already on the target. */
static json_t *page_move_result(const struct pending *p)
{
	const struct control_cmd *c = &p->cmd;

	return json_pack("{s:s,s:I,s:I,s:i,s:I,s:I}", "volume", c->name, "first",
			 (json_int_t)c->first, "last", (json_int_t)c->last, "to", (int)c->to,
			 "pages", (json_int_t)p->pages, "already",
			 (json_int_t)(c->last - c->first + 1 - p->pages));
}

/* migrate_done_fn of page.move */
static void page_moved(void *arg, int ok, const char *err)
{
	struct pending *p = arg;

	pending_end(p, ok, ok ? page_move_result(p) : NULL, 0, err);
}

/* ---- commands ---- */

static int cmd_status(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
		      json_t **result, char *err, size_t errlen)
{
	uint64_t links_up, links_in, link_sent, link_received;
	char link_addr[64] = "";

	linkset_stats(&links_up, &links_in, &link_sent, &link_received);
	if (linkset_address(link_addr, sizeof(link_addr)) < 0)
		link_addr[0] = '\0';
	*result = json_pack(
	    "{s:i,s:s,s:s,s:I,s:s,s:I,s:s,s:I,s:I,s:I,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,"
	    "s:I,s:I,s:I,s:I,s:b}",
	    "server_id", (int)srv->cfg.id, "address", srv->cfg.listen, "version", PV_VERSION_STRING,
	    "catalog_version", (json_int_t)srv->version, "group_id", srv->group_id, "uptime_s",
	    (json_int_t)((pv_now_ms() - srv->started_ms) / 1000), "data_dir", srv->cfg.data_dir,
	    "requests_in_flight", (json_int_t)request_inflight(), "parts_forwarded_in_flight",
	    (json_int_t)forward_inflight(), "bad_frames", (json_int_t)ops_bad_frames(), "clients",
	    (int)clients_count(), "shm_clients", (int)shm_count(), "batches_sent",
	    (json_int_t)batch_cork_batches(srv->cork), "batch_records_sent",
	    (json_int_t)batch_cork_records(srv->cork), "batches_received",
	    (json_int_t)ops_batches_received(), "batch_records_received",
	    (json_int_t)ops_batch_records_received(), "sends_dropped",
	    (json_int_t)batch_cork_dropped(srv->cork), "peer_link_address", link_addr,
	    "peer_links_up", (json_int_t)links_up, "peer_links_accepted", (json_int_t)links_in,
	    "link_records_sent", (json_int_t)link_sent, "link_records_received",
	    (json_int_t)link_received, "data_files_mapped", (json_int_t)ops_maps_given(),
	    "reads_mapped", (json_int_t)request_reads_mapped(), "data_free",
	    (json_int_t)store_free(), "disk_full", store_disk_full());
	if (*result) {
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1];

		json_object_set_new(
		    *result, "catalog_hash",
		    json_string(catalog_hash_hex(srv->catalog_hash, PEERD_CATALOG_HASH_LEN, hash)));
		json_object_set_new(*result, "catalog_diverged",
				    json_boolean(srv->catalog_diverged));
	}
	/* membership: "member", or "removed" with why (remove.c) */
	json_object_set_new(*result, "state",
			    json_string(remove_self_state() ? "removed" : "member"));
	json_object_set_new(*result, "migrations_out", json_integer(migrate_out_count()));
	/* docs/security.md */
	json_object_set_new(*result, "auth",
			    json_string(!auth_on()		 ? "off (unauthenticated group)"
					: srv->cfg.encrypt ? "keys; links encrypted"
							   : "keys; links not encrypted"));
	json_object_set_new(*result, "auth_refused", json_integer((json_int_t)auth_refused()));
	if (auth_on()) {
		uint64_t hs, enc, in, out;

		linkset_auth_stats(&hs, &enc, &in, &out);
		json_object_set_new(*result, "link_handshaking", json_integer((json_int_t)hs));
		json_object_set_new(*result, "links_encrypted", json_integer((json_int_t)enc));
		json_object_set_new(*result, "link_handshakes_in", json_integer((json_int_t)in));
		json_object_set_new(*result, "link_handshakes_out", json_integer((json_int_t)out));
	}
	if (remove_self_state())
		json_object_set_new(*result, "removed", json_string(remove_self_state()));
	return 0;
}

static int cmd_volume_create(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);

	if (!p)
		return -1;
	int rc = catalog_volume_create(c->name, c->size, c->page_size, c->servers, c->nservers,
				       volume_created, p, err, errlen);

	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

static int cmd_volume_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	json_t *a = json_array();

	for (struct volume *v = srv->volumes; v; v = v->next)
		json_array_append_new(a, volume_json(v, 0));
	*result = json_pack("{s:o}", "volumes", a);
	return 0;
}

static int cmd_volume_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	struct volume *v = catalog_volume(c->name);

	if (!v) {
		snprintf(err, errlen, "no volume '%s'", c->name);
		return -ENOENT;
	}
	*result = volume_json(v, c->routing);
	return 0;
}

static int cmd_volume_delete(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);

	if (!p)
		return -1;
	int rc = catalog_volume_delete(c->name, c->force, c->with_snapshots, volume_deleted, p, err, errlen);

	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

static int cmd_group_init(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	/* every server starts as a group of one; init confirms it */
	if (srv->nmembers > 1) {
		snprintf(err, errlen, "this server is already in a group of %zu members",
			 srv->nmembers);
		return -1;
	}
	*result = group_json();
	return 0;
}

static int cmd_group_join(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, "", err, errlen);

	if (!p)
		return -1;
	if (catalog_join_start(c->address, c->timeout, group_joined, p, err, errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_group_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	*result = group_json();
	return 0;
}

static int cmd_group_remove(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			    json_t **result, char *err, size_t errlen)
{
	char id[16];
	struct pending *p;
	int rc;

	snprintf(id, sizeof(id), "%u", c->id);
	p = pending_new(ident, ident_len, id, err, errlen);
	if (!p)
		return -1;
	rc = catalog_member_remove(c->id, c->op == CONTROL_GROUP_LEAVE, c->force, member_removed, p,
				   err, errlen);
	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

/* The volume and page range of c checked against the catalog: the
 * volume, or NULL with err (*rc -ENOENT: no such volume; -1: no such page). */
static struct volume *volume_pages(const struct control_cmd *c, int *rc, char *err, size_t errlen)
{
	struct volume *v = catalog_volume(c->name);

	*rc = -ENOENT;
	if (!v) {
		snprintf(err, errlen, "no volume '%s'", c->name);
		return NULL;
	}
	*rc = -1;
	if (c->last >= v->npages) {
		snprintf(err, errlen,
			 "volume %s has %llu pages (0 to %llu): page %llu does not exist", v->name,
			 (unsigned long long)v->npages, (unsigned long long)(v->npages - 1),
			 (unsigned long long)c->last);
		return NULL;
	}
	return v;
}

static int cmd_page_move(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			 json_t **result, char *err, size_t errlen)
{
	struct pending *p;
	struct volume *v;
	uint64_t n = 0;
	int rc;

	if (!(v = volume_pages(c, &rc, err, errlen)))
		return rc;
	if (!catalog_member(c->to)) {
		remove_not_member(c->to, err, errlen);
		return -ENOENT;
	}
	if (c->piece_size > v->page_size) {
		snprintf(err, errlen, "piece size %u is larger than volume %s's page size %u",
			 c->piece_size, v->name, v->page_size);
		return -1;
	}
	for (uint64_t pg = c->first; pg <= c->last; pg++)
		n += v->owner[pg] != c->to;
	if (!(p = pending_new(ident, ident_len, c->name, err, errlen)))
		return -1;
	p->cmd = *c;
	p->pages = n; /* 0: every page sits on the target (unless one is leaving it:
		       * migrate_request refuses that) */
	if (migrate_request(c->name, c->first, c->last, c->to, c->piece_size, page_moved, p, err,
			    errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_page_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			 json_t **result, char *err, size_t errlen)
{
	struct migrate_info info, *mv = NULL;
	struct volume *v;
	json_t *moving = json_null();
	size_t n = 0;
	int rc;

	if (!(v = volume_pages(c, &rc, err, errlen)))
		return rc;
	if (migrate_page_state(v, c->first, &info)) {
		moving = move_json(&info);
	} else {
		mv = volume_moves(v, 0, &n);
		for (size_t i = 0; i < n; i++)
			if (mv[i].page == c->first)
				moving = move_json(&mv[i]);
		free(mv);
	}
	*result = json_pack("{s:s,s:I,s:i,s:I,s:o}", "volume", v->name, "page",
			    (json_int_t)c->first, "owner", (int)v->owner[c->first], "epoch",
			    (json_int_t)v->epoch[c->first], "moving", moving);
	return 0;
}

static int cmd_migration_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			      json_t **result, char *err, size_t errlen)
{
	const Pv__Catalog *cat = catalog_committed();
	size_t n;
	struct migrate_info *mv = moves_get(&n);
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, move_json(&mv[i]));
	free(mv);
	*result = json_pack(
	    "{s:o,s:b,s:i}", "migrations", a, "paused", cat && cat->migrate_paused, "max_mbps",
	    cat && cat->migrate_max_mbps ? (int)cat->migrate_max_mbps : MIGRATE_MBPS_DEFAULT);
	return 0;
}

/* server.evacuate, volume.set_servers, group.set_weight, config.set,
 * migrate.pause, migrate.resume, balance.on and balance.off: catalog
 * changes (placement.c) */
static int cmd_placement(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			 json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);
	struct group_settings set;
	int rc = -1;

	if (!p)
		return -1;
	p->cmd = *c;
	switch (c->op) {
	case CONTROL_SERVER_EVACUATE:
		rc = catalog_member_drain(c->id, !c->cancel, placement_changed, p, err, errlen);
		break;
	case CONTROL_VOLUME_SET_SERVERS:
		rc = catalog_volume_set_servers(c->name, c->servers, c->nservers, placement_changed,
						p, err, errlen);
		break;
	case CONTROL_GROUP_SET_WEIGHT:
		rc = catalog_member_set_weight(c->id, c->weight, placement_changed, p, err, errlen);
		break;
	default: /* the group's settings */
		set = (struct group_settings)GROUP_SETTINGS_UNCHANGED;
		if (c->op == CONTROL_CONFIG_SET && c->key == CONTROL_KEY_BALANCE_THRESHOLD)
			set.threshold_pm = c->value;
		else if (c->op == CONTROL_CONFIG_SET && c->key == CONTROL_KEY_BALANCE_INTERVAL)
			set.interval_s = c->value;
		else if (c->op == CONTROL_CONFIG_SET)
			set.max_mbps = c->value;
		else if (c->op == CONTROL_BALANCE_ON || c->op == CONTROL_BALANCE_OFF)
			set.balance_off = c->op == CONTROL_BALANCE_OFF;
		else
			set.paused = c->op == CONTROL_MIGRATE_PAUSE;
		rc = catalog_settings(&set, placement_changed, p, err, errlen);
		break;
	}
	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

/* ---- load ---- */

/* Rates r as fields of o (IOPS, MB/s, sequential share, mean latency). */
static void rates_json(json_t *o, const Pv__LoadRates *r)
{
	Pv__LoadRates zero = PV__LOAD_RATES__INIT;

	if (!r)
		r = &zero;
	json_object_set_new(o, "read_iops", json_real(r->read_ops));
	json_object_set_new(o, "write_iops", json_real(r->write_ops));
	json_object_set_new(o, "other_iops", json_real(r->other_ops));
	json_object_set_new(o, "read_mbps", json_real(r->read_bytes / 1e6));
	json_object_set_new(o, "write_mbps", json_real(r->write_bytes / 1e6));
	json_object_set_new(o, "seq", json_real(r->seq_share));
	json_object_set_new(o, "lat_us", json_real(r->lat_us));
	json_object_set_new(o, "load", json_real(load_units(r)));
}

static const char *volume_name(uint64_t id)
{
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (v->id == id)
			return v->name;
	return NULL;
}

/* Client ids as an array of 16 hex digit strings. */
static json_t *client_ids_json(const uint64_t *ids, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		char id[20];

		snprintf(id, sizeof(id), "%016llx", (unsigned long long)ids[i]);
		json_array_append_new(a, json_string(id));
	}
	return a;
}

/* One member's line of load.show, with its shares (load_shares). */
static json_t *server_load_json(const struct member *m, const Pv__LoadSummary *s,
				const struct load_share *sh)
{
	json_t *o =
	    json_pack("{s:i,s:s,s:b,s:i,s:b,s:b,s:I}", "id", (int)m->id, "address", m->address,
		      "up", m->up, "weight", (int)(m->weight ? m->weight : 1), "draining",
		      m->draining, "figures", s != NULL, "pages_owned", (json_int_t)m->pages);

	rates_json(o, s ? s->r10 : NULL);
	json_object_set_new(o, "share", json_real(sh->share));
	json_object_set_new(o, "fair_share", json_real(sh->fair));
	if (s) {
		json_t *r60 = json_object();

		rates_json(r60, s->r60);
		json_object_set_new(o, "r60", r60);
		json_object_set_new(o, "p99_us", json_integer(s->p99_us));
		json_object_set_new(o, "clients", json_integer(s->clients_total));
		json_object_set_new(o, "clients_connected", json_integer(s->clients_connected));
		json_object_set_new(o, "client_load",
				    json_real(s->client_r10 ? load_units(s->client_r10) : 0));
		json_object_set_new(o, "forwarded_iops",
				    json_real(s->fwd10 ? s->fwd10->read_ops + s->fwd10->write_ops +
							     s->fwd10->other_ops
						       : 0));
		json_object_set_new(o, "at_ms", json_integer((json_int_t)s->at_ms));
	}
	return o;
}

static int cmd_load_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			 json_t **result, char *err, size_t errlen)
{
	json_t *servers = json_array(), *pages = json_array(), *clients = json_array(),
	       *vols = json_array();
	struct load_share sh[PEERD_MAX_MEMBERS];
	double total = load_shares(sh);
	json_t *o;

	for (size_t k = 0; k < srv->nmembers; k++) {
		const struct member *m = &srv->members[k];
		const Pv__LoadSummary *s = load_summary(m);

		json_array_append_new(servers, server_load_json(m, s, &sh[k]));
		for (size_t j = 0; s && j < s->n_pages; j++) {
			const Pv__PageLoad *pl = s->pages[j];
			const char *name = volume_name(pl->volume_id);
			struct volume *v = name ? catalog_volume(name) : NULL;

			if (!v)
				continue;
			o = json_pack("{s:s,s:I,s:i,s:i}", "volume", name, "page",
				      (json_int_t)pl->page, "server", (int)m->id, "owner",
				      pl->page < v->npages ? (int)v->owner[pl->page] : 0);
			rates_json(o, pl->r10);
			json_object_set_new(o, "clients",
					    client_ids_json(pl->clients, pl->n_clients));
			json_array_append_new(pages, o);
		}
		for (size_t j = 0; s && j < s->n_clients; j++) {
			const Pv__ClientLoad *cl = s->clients[j];
			char id[20];

			json_t *vl = json_array();

			snprintf(id, sizeof(id), "%016llx", (unsigned long long)cl->client_id);
			for (size_t k = 0; k < cl->n_volumes; k++)
				json_array_append_new(vl, json_string(cl->volumes[k]));
			o = json_pack("{s:s,s:s,s:i,s:b,s:b,s:o}", "client", id, "host",
				      cl->host ? cl->host : "", "server", (int)m->id, "connected",
				      cl->connected, "local", cl->local, "volumes", vl);
			rates_json(o, cl->r10);
			json_array_append_new(clients, o);
		}
		for (size_t j = 0; s && j < s->n_volumes; j++) {
			o = json_pack("{s:s,s:i}", "volume",
				      s->volumes[j]->name ? s->volumes[j]->name : "", "server",
				      (int)m->id);
			rates_json(o, s->volumes[j]->r10);
			json_array_append_new(vols, o);
		}
	}
	*result = json_pack("{s:i,s:I,s:f,s:o,s:o,s:o,s:o}", "server_id", (int)srv->cfg.id, "at_ms",
			    (json_int_t)pv_wall_s() * 1000, "total_load", total, "servers", servers,
			    "volumes", vols, "pages", pages, "clients", clients);
	return 0;
}

static int cmd_balance_status(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			      json_t **result, char *err, size_t errlen)
{
	struct balance_status st;
	json_t *recent = json_array();
	const char *cstate;
	unsigned cover;

	balance_status(&st);
	connbal_status(&cstate, &cover);
	for (size_t k = 0; k < srv->nmembers; k++) {
		const Pv__LoadSummary *s = load_summary(&srv->members[k]);

		for (size_t j = 0; s && j < s->n_decisions; j++)
			json_array_append_new(
			    recent, json_pack("{s:i,s:s}", "server", (int)srv->members[k].id,
					      "text", s->decisions[j] ? s->decisions[j] : ""));
	}
	*result = json_pack("{s:b,s:b,s:f,s:i,s:f,s:s,s:i,s:i,s:s,s:i,s:o}", "on", st.on, "monitor",
			    load_enabled, "threshold", st.threshold, "interval_s",
			    (int)st.interval_s, "floor", LOAD_FLOOR, "state", st.state, "over",
			    (int)st.over, "moves_out", (int)migrate_out_count(), "clients_state",
			    st.on && load_enabled ? cstate : "off", "clients_over", (int)cover,
			    "recent", recent);
	return 0;
}

/* ---- snapshots ---- */

static const Pv__VolumeInfo *volume_info(const char *name)
{
	const Pv__Catalog *cat = catalog_committed();

	for (size_t i = 0; cat && i < cat->n_volumes; i++)
		if (!strcmp(cat->volumes[i]->name, name))
			return cat->volumes[i];
	return NULL;
}

/* JSON of snapshot si of volume vi (a new reference); with servers: the
 * bytes each server preserved. */
static json_t *snapshot_json(const Pv__VolumeInfo *vi, const Pv__SnapshotInfo *si, int servers)
{
	struct volume *v = catalog_volume(vi->name);
	uint32_t ids[PEERD_MAX_MEMBERS];
	uint64_t per[PEERD_MAX_MEMBERS];
	uint64_t bytes = v ? snap_preserved_group(v, si->id, ids, per) : 0;
	json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:I}", "volume", vi->name, "name",
			      si->name, "id", (json_int_t)si->id, "mode", si->mode ? si->mode : "",
			      "created", (json_int_t)si->created, "preserved", (json_int_t)bytes,
			      "size", (json_int_t)vi->size);

	if (o && servers) {
		json_t *a = json_array();

		for (size_t i = 0; v && i < srv->nmembers; i++)
			json_array_append_new(a, json_pack("{s:i,s:I}", "id", (int)ids[i],
							   "preserved", (json_int_t)per[i]));
		json_object_set_new(o, "servers", a);
		json_object_set_new(o, "chunk_size",
				    json_integer(vi->chunk_size ? vi->chunk_size
								: SNAP_CHUNK_DEFAULT));
	}
	return o;
}

static void snapshot_made(void *arg, int ok, const char *volume, const Pv__SnapshotInfo *si,
			  uint64_t pause_ms, int why, const char *err)
{
	const Pv__VolumeInfo *vi = ok ? volume_info(volume) : NULL;
	json_t *r = vi && si ? snapshot_json(vi, si, 0) : NULL;

	if (r)
		json_object_set_new(r, "pause_ms", json_integer((json_int_t)pause_ms));
	pending_end(arg, ok, r ? r : ok ? json_object() : NULL, why, err);
}

static void snapshot_deleted(void *arg, int ok, const char *volume, const Pv__SnapshotInfo *si,
			     uint64_t pause_ms, int why, const char *err)
{
	pending_end(arg, ok, ok ? json_object() : NULL, why, err);
}

static int cmd_snapshot_create(const uint8_t *ident, size_t ident_len,
			       const struct control_cmd *c, json_t **result, char *err,
			       size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);
	int rc;

	if (!p)
		return -1;
	if (c->op == CONTROL_SNAPSHOT_CREATE)
		rc = snap_create(c->name, c->snap, c->mode, c->timeout_ms, snapshot_made, p, err,
				 errlen);
	else
		rc = snap_delete(c->name, c->snap, snapshot_deleted, p, err, errlen);
	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

static void snapshot_diffed(void *arg, int ok, const uint64_t *ranges, size_t n, int why,
			    const char *err)
{
	json_t *a = json_array();
	uint64_t bytes = 0;

	for (size_t i = 0; ok && i < n; i++) {
		json_array_append_new(a, json_pack("{s:I,s:I}", "offset", (json_int_t)ranges[2 * i],
						   "length", (json_int_t)ranges[2 * i + 1]));
		bytes += ranges[2 * i + 1];
	}
	if (!ok) {
		json_decref(a);
		pending_end(arg, 0, NULL, why, err);
		return;
	}
	pending_end(arg, 1, json_pack("{s:o,s:I}", "ranges", a, "bytes", (json_int_t)bytes), 0,
		    NULL);
}

static void snapshot_rolled_back(void *arg, int ok, const uint64_t *ranges, size_t n, int why,
				 const char *err)
{
	pending_end(arg, ok, ok ? json_object() : NULL, why, err);
}

static int cmd_snapshot_diff(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);
	int rc;

	if (!p)
		return -1;
	if (c->op == CONTROL_SNAPSHOT_ROLLBACK)
		rc = snap_rollback(c->name, c->snap, c->force, snapshot_rolled_back, p, err,
				   errlen);
	else
		rc = snap_diff(c->name, c->snap, c->from, snapshot_diffed, p, err, errlen);
	if (rc < 0) {
		free(p);
		return rc;
	}
	return 1;
}

static int cmd_snapshot_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	const Pv__Catalog *cat = catalog_committed();
	json_t *a;

	if (c->name[0] && !volume_info(c->name)) {
		snprintf(err, errlen, "no volume '%s'", c->name);
		return -ENOENT;
	}
	if (c->op == CONTROL_SNAPSHOT_SHOW) {
		const Pv__VolumeInfo *vi = volume_info(c->name);

		for (size_t j = 0; j < vi->n_snapshots; j++) {
			if (!strcmp(vi->snapshots[j]->name, c->snap)) {
				*result = snapshot_json(vi, vi->snapshots[j], 1);
				return 0;
			}
		}
		snprintf(err, errlen, "volume %s has no snapshot '%s'", c->name, c->snap);
		return -ENOENT;
	}
	a = json_array();
	for (size_t i = 0; cat && i < cat->n_volumes; i++) {
		const Pv__VolumeInfo *vi = cat->volumes[i];

		if (c->name[0] && strcmp(vi->name, c->name))
			continue;
		for (size_t j = 0; j < vi->n_snapshots; j++)
			json_array_append_new(a, snapshot_json(vi, vi->snapshots[j], 0));
	}
	*result = json_pack("{s:o}", "snapshots", a);
	return 0;
}

/* ---- client keys (auth.c) ---- */

static void client_changed(void *arg, int ok, int why, const char *err)
{
	struct pending *p = arg;
	json_t *r = NULL;

	if (ok) {
		uint8_t pub[PV_KEY_BYTES];
		char hex[2 * PV_KEY_BYTES + 1];

		auth_group_public(pub);
		pv_hex(pub, PV_KEY_BYTES, hex);
		r = json_pack("{s:s,s:s,s:I}", "name", p->cmd.client, "group_public", hex,
			      "catalog_version", (json_int_t)srv->version);
	}
	pending_end(p, ok, r, why, err);
}

static int cmd_client_change(const uint8_t *ident, size_t ident_len,
			     const struct control_cmd *c, json_t **result, char *err,
			     size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, "", err, errlen);

	(void)result;
	if (!p)
		return -1;
	p->cmd = *c;
	if (auth_client_change(c->op == CONTROL_CLIENT_ADD, c->client,
			       c->op == CONTROL_CLIENT_ADD ? c->client_key : NULL, client_changed, p,
			       err, errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_client_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	const Pv__Catalog *cat = catalog_committed();
	json_t *a = json_array();
	uint8_t pub[PV_KEY_BYTES];
	char fp[17];

	(void)ident, (void)ident_len, (void)c, (void)err, (void)errlen;
	for (size_t i = 0; cat && i < cat->n_clients; i++) {
		const Pv__ClientKey *k = cat->clients[i];

		pv_key_fingerprint(k->public_key.data, fp);
		json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:b,s:I}", "name", k->name,
						   "fingerprint", fp, "added_version",
						   (json_int_t)k->added_version, "revoked",
						   k->revoked, "revoked_version",
						   (json_int_t)k->revoked_version));
	}
	auth_group_public(pub);
	pv_key_fingerprint(pub, fp);
	*result = json_pack("{s:b,s:s,s:I,s:o}", "authenticated", auth_on(), "group_fingerprint",
			    auth_on() ? fp : "", "refused_connections", (json_int_t)auth_refused(),
			    "clients", a);
	return 0;
}

static const cmd_fn handlers[CONTROL_NCMDS] = {
    [CONTROL_STATUS] = cmd_status,
    [CONTROL_VOLUME_CREATE] = cmd_volume_create,
    [CONTROL_VOLUME_LIST] = cmd_volume_list,
    [CONTROL_VOLUME_SHOW] = cmd_volume_show,
    [CONTROL_VOLUME_DELETE] = cmd_volume_delete,
    [CONTROL_GROUP_INIT] = cmd_group_init,
    [CONTROL_GROUP_JOIN] = cmd_group_join,
    [CONTROL_GROUP_SHOW] = cmd_group_show,
    [CONTROL_GROUP_REMOVE] = cmd_group_remove,
    [CONTROL_GROUP_LEAVE] = cmd_group_remove,
    [CONTROL_PAGE_MOVE] = cmd_page_move,
    [CONTROL_PAGE_SHOW] = cmd_page_show,
    [CONTROL_MIGRATION_LIST] = cmd_migration_list,
    [CONTROL_SERVER_EVACUATE] = cmd_placement,
    [CONTROL_VOLUME_SET_SERVERS] = cmd_placement,
    [CONTROL_GROUP_SET_WEIGHT] = cmd_placement,
    [CONTROL_CONFIG_SET] = cmd_placement,
    [CONTROL_MIGRATE_PAUSE] = cmd_placement,
    [CONTROL_MIGRATE_RESUME] = cmd_placement,
    [CONTROL_LOAD_SHOW] = cmd_load_show,
    [CONTROL_BALANCE_STATUS] = cmd_balance_status,
    [CONTROL_BALANCE_ON] = cmd_placement,
    [CONTROL_BALANCE_OFF] = cmd_placement,
    [CONTROL_SNAPSHOT_CREATE] = cmd_snapshot_create,
    [CONTROL_SNAPSHOT_LIST] = cmd_snapshot_list,
    [CONTROL_SNAPSHOT_SHOW] = cmd_snapshot_list,
    [CONTROL_SNAPSHOT_DELETE] = cmd_snapshot_create,
    [CONTROL_SNAPSHOT_DIFF] = cmd_snapshot_diff,
    [CONTROL_SNAPSHOT_ROLLBACK] = cmd_snapshot_diff,
    [CONTROL_CLIENT_ADD] = cmd_client_change,
    [CONTROL_CLIENT_LIST] = cmd_client_list,
    [CONTROL_CLIENT_REVOKE] = cmd_client_change,
};

/* ---- socket ---- */

static int socket_in_use(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return 0;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc == 0;
}

int control_open(void)
{
	char endpoint[PATH_MAX + 8], dir[PATH_MAX];
	char *slash;
	int linger = 0;

	if (strlen(srv->cfg.control) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		pv_err("control socket path %s is too long (max %zu)", srv->cfg.control,
		       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", srv->cfg.control);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			pv_err("cannot create directory %s for the control socket: %m", dir);
			return -1;
		}
	}
	if (socket_in_use(srv->cfg.control)) {
		pv_err("control socket %s is in use by another process; give this peerd its "
		       "own --control path",
		       srv->cfg.control);
		return -1;
	}
	unlink(srv->cfg.control);
	srv->control = zmq_socket(srv->zctx, ZMQ_ROUTER);
	snprintf(endpoint, sizeof(endpoint), "ipc://%s", srv->cfg.control);
	if (!srv->control ||
	    zmq_setsockopt(srv->control, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_bind(srv->control, endpoint) < 0) {
		pv_err("cannot bind control socket %s: %s", srv->cfg.control, zmq_strerror(errno));
		return -1;
	}
	if (chmod(srv->cfg.control, 0600) < 0) {
		pv_err("cannot make control socket %s private: %m", srv->cfg.control);
		return -1;
	}
	return 0;
}

void control_close(void)
{
	if (srv->control) {
		zmq_close(srv->control);
		unlink(srv->cfg.control);
	}
	srv->control = NULL;
}

void control_input(void *arg)
{
	for (int k = 0; k < 64; k++) {
		zmq_msg_t frames[4];
		size_t n = 0;
		int more = 1, rc;
		json_t *result = NULL;
		struct control_cmd cmd;
		char err[PV_MAX_MESSAGE] = "";
		const uint8_t *ident;
		size_t ident_len;

		while (more) {
			zmq_msg_t *f = &frames[n < 4 ? n : 3];

			if (n >= 4)
				zmq_msg_close(f);
			zmq_msg_init(f);
			if (zmq_msg_recv(f, srv->control, ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(f);
				break;
			}
			more = zmq_msg_more(f);
			if (n < 4)
				n++;
		}
		if (n == 0)
			return;
		/* REQ framing: [identity][empty][json] */
		if (n != 3 || zmq_msg_size(&frames[1]) != 0 ||
		    zmq_msg_size(&frames[0]) > PV_MAX_IDENTITY) {
			pv_warn("control: malformed request ignored");
			goto next;
		}
		ident = zmq_msg_data(&frames[0]);
		ident_len = zmq_msg_size(&frames[0]);

		/* control_parse refuses (and so answers) an over-long request too */
		if (control_parse(zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]),
				  srv->cfg.max_volume_size, &cmd, err, sizeof(err)) < 0) {
			if (cmd.cmd) /* a known command with bad arguments */
				pv_info("control: %s refused: %s", cmd.cmd, err);
			control_reply(ident, ident_len, 0, NULL, 0, err);
			goto next;
		}
		if (remove_self_state() && cmd.op != CONTROL_STATUS &&
		    cmd.op != CONTROL_GROUP_SHOW && cmd.op != CONTROL_VOLUME_LIST &&
		    cmd.op != CONTROL_VOLUME_SHOW && cmd.op != CONTROL_PAGE_SHOW &&
		    cmd.op != CONTROL_MIGRATION_LIST) {
			snprintf(err, sizeof(err), "%s; this server no longer serves the group",
				 remove_self_state());
			rc = -1;
		} else {
			rc = handlers[cmd.op](ident, ident_len, &cmd, &result, err, sizeof(err));
		}
		if (rc == 0) {
			control_reply(ident, ident_len, 1, result, 0, NULL);
		} else if (rc < 0) {
			pv_info("control: %s refused: %s", cmd.cmd, err);
			control_reply(ident, ident_len, 0, NULL, -rc, err);
		}
	next:
		for (size_t j = 0; j < n; j++)
			zmq_msg_close(&frames[j]);
	}
}
