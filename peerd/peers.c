/* peers.c: membership at run time: one DEALER per other member (connected
 * to its ROUTER), heartbeats every second carrying this server's catalog
 * version and usage, up/down state of each member, and the dispatch of the
 * replies that come back on those DEALERs. Reactor thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

static uint64_t next_id = 1;

uint64_t peers_next_id(void)
{
	return next_id++;
}

int peers_connect(void)
{
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		int linger = 0, immediate = 1, hwm = 100000;

		if (m->id == srv->cfg.id || m->sock)
			continue;
		m->sock = zmq_socket(srv->zctx, ZMQ_DEALER);
		if (!m->sock) {
			pv_err("peer %u: cannot create socket: %s", m->id, zmq_strerror(errno));
			return -1;
		}
		zmq_setsockopt(m->sock, ZMQ_LINGER, &linger, sizeof(linger));
		/* queue nothing for a member that is not connected: a send fails and
		 * the request is answered UNAVAILABLE instead of waiting unseen */
		zmq_setsockopt(m->sock, ZMQ_IMMEDIATE, &immediate, sizeof(immediate));
		zmq_setsockopt(m->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
		zmq_setsockopt(m->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
		wire_socket_limit(m->sock);
		if (auth_member_socket(m->sock) < 0 || zmq_connect(m->sock, m->address) < 0) {
			pv_err("peer %u: cannot connect to %s: %s", m->id, m->address,
			       zmq_strerror(errno));
			zmq_close(m->sock);
			m->sock = NULL;
			return -1;
		}
		pv_info("peer %u: connecting to %s", m->id, m->address);
	}
	return 0;
}

int peers_via_link(const struct member *m)
{
	return m->link && m->link_up;
}

void peers_tick(void *arg)
{
	Pv__Heartbeat hb = PV__HEARTBEAT__INIT;
	Pv__VolumeStat stats[256], *statp[256];
	static uint64_t snap_ids[256][SNAP_MAX], snap_bytes[256][SNAP_MAX];
	uint64_t now = pv_now_ms(), pages = 0, bytes = 0;
	char link[64];
	size_t n = 0;

	for (struct volume *v = srv->volumes; v; v = v->next) {
		store_stat(v, &v->written, &v->bytes);
		pages += v->owned_here;
		bytes += v->bytes;
		if (n < 256) {
			pv__volume_stat__init(&stats[n]);
			stats[n].name = v->name;
			stats[n].pages_written = v->written;
			stats[n].bytes = v->bytes;
			stats[n].open_clients = clients_open_count(v->name);
			stats[n].n_snapshot_ids = stats[n].n_snapshot_bytes =
			    snap_usage(v, snap_ids[n], snap_bytes[n], SNAP_MAX);
			stats[n].snapshot_ids = snap_ids[n];
			stats[n].snapshot_bytes = snap_bytes[n];
			statp[n] = &stats[n];
			n++;
		}
	}
	hb.server_id = srv->cfg.id;
	hb.catalog_version = srv->version;
	hb.catalog_hash.data = srv->catalog_hash;
	hb.catalog_hash.len = sizeof(srv->catalog_hash);
	hb.pages = pages;
	hb.bytes = bytes;
	hb.free = store_free();
	hb.n_volumes = n;
	hb.volumes = statp;
	if (linkset_address(link, sizeof(link)) == 0)
		hb.link = link;
	migrate_heartbeat_fill(&hb);
	/* static, rebuilt by load_tick: not freed with the heartbeat */
	hb.load = (Pv__LoadSummary *)load_summary(catalog_self());
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		Pv__Header h;

		if (m->id == srv->cfg.id) {
			m->pages = pages;
			m->bytes = bytes;
			m->free = hb.free;
			m->up = 1;
			continue;
		}
		if (m->up && now - m->last_heard_ms > PEERD_DOWN_AFTER_MS) {
			m->up = 0;
			pv_warn("peer %u (%s) is down: no heartbeat for %d s; its pages wait for "
				"it",
				m->id, m->address, PEERD_DOWN_AFTER_MS / 1000);
			linkset_member_drop(m, "the member is down");
		}
		if (m->up)
			linkset_connect(m);
		wire_header_init(&h);
		h.op = PV_OP_HEARTBEAT;
		h.req_id = peers_next_id();
		if (reply_send_member(m, &h, NULL, &hb.base) < 0 && errno != EAGAIN)
			pv_debug("peer %u: heartbeat not sent: %m", m->id);
	}
	migrate_heartbeat_free(&hb);
}

void peers_heartbeat(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	struct member *m = catalog_member(h->server_id);
	Pv__Heartbeat *hb;

	if (!m || m->id == srv->cfg.id) {
		remove_heartbeat_refuse(from, h); /* removed, left, stranger */
		return;
	}
	hb = body ? (Pv__Heartbeat *)wire_body_decode(&pv__heartbeat__descriptor, body, len) : NULL;
	if (!hb) {
		reply_status(from, h, PV_ST_BAD_REQUEST, "heartbeat body does not decode");
		return;
	}
	if (!m->up)
		pv_info("peer %u (%s) is up (catalog version %llu)", m->id, m->address,
			(unsigned long long)hb->catalog_version);
	if (!m->up)
		migrate_routes_fetch(m); /* pages it moved while we did not hear it */
	m->up = 1;
	m->last_heard_ms = pv_now_ms();
	m->catalog_version = hb->catalog_version;
	m->pages = hb->pages;
	m->bytes = hb->bytes;
	m->free = hb->free;
	if (m->last_hb)
		pv__heartbeat__free_unpacked(m->last_hb, NULL);
	m->last_hb = hb;
	m->last_hb_ms = m->last_heard_ms;
	linkset_member_address(m, hb->link ? hb->link : "");
	m->has_catalog_hash = hb->catalog_hash.len == sizeof(m->catalog_hash);
	if (m->has_catalog_hash)
		memcpy(m->catalog_hash, hb->catalog_hash.data, sizeof(m->catalog_hash));
	catalog_peer_seen(m);
}

/* One reply from m (a record of a BATCH, or a message of its own). */
static void reply_one(struct member *m, const Pv__Header *h, zmq_msg_t *payload)
{
	switch (h->op) {
	case PV_OP_READ:
	case PV_OP_WRITE:
	case PV_OP_FLUSH:
	case PV_OP_TRIM:
		if (forward_reply(m, h, payload))
			break;
		/* not a forwarded part: a migration's piece copy (migrate.c) */
		__attribute__((fallthrough));
	case PV_OP_ROUTES:
	case PV_OP_ROUTE_UPDATE:
	case PV_OP_MIG_BEGIN:
	case PV_OP_MIG_SWITCH:
	case PV_OP_MIG_REQUEST:
	case PV_OP_MIG_ABORT:
	case PV_OP_MIG_SNAP:
		migrate_peer_reply(m, h, payload ? zmq_msg_data(payload) : NULL,
				   payload ? zmq_msg_size(payload) : 0);
		break;
	case PV_OP_SHM_ATTACH:
		shm_peer_answer(m->id, h);
		break;
	case PV_OP_SNAP_HOLD:
	case PV_OP_SNAP_RELEASE:
	case PV_OP_SNAP_DIFF:
	case PV_OP_SNAP_ROLLBACK:
		snap_peer_reply(m, h, payload ? zmq_msg_data(payload) : NULL,
				payload ? zmq_msg_size(payload) : 0);
		break;
	case PV_OP_CAT_PREPARE:
	case PV_OP_CAT_COMMIT:
	case PV_OP_CAT_ABORT:
	case PV_OP_CAT_FETCH:
		catalog_peer_reply(m, h, payload ? zmq_msg_data(payload) : NULL,
				   payload ? zmq_msg_size(payload) : 0);
		break;
	case PV_OP_HEARTBEAT: /* answered only when refused: are we removed? */
		if (h->status == PV_ST_REFUSED)
			remove_heartbeat_refused(m, h, payload ? zmq_msg_data(payload) : NULL,
						 payload ? zmq_msg_size(payload) : 0);
		break;
	default:
		if (h->status == PV_ST_REFUSED)
			pv_warn("peer %u (%s) refused %s: %s", m->id, m->address,
				wire_op_name(h->op), h->message);
		break;
	}
}

static void reply_batch(struct member *m, zmq_msg_t *payload);

/* One reply from m as header bytes (a BATCH record, or from its link). */
static void reply_bytes(struct member *m, const void *hdr, size_t hdr_len, zmq_msg_t *data,
			int in_batch)
{
	Pv__Header *h = NULL;
	char err[256];

	if (wire_header_decode(hdr, hdr_len, &h, err, sizeof(err)) != PV_ST_OK) {
		pv_warn("peer %u (%s): unreadable reply%s: %s", m->id, m->address,
			in_batch ? " in a BATCH" : "", err);
		return;
	}
	m->last_heard_ms = pv_now_ms();
	if (h->op == PV_OP_BATCH && in_batch)
		pv_warn("peer %u (%s): BATCH inside a BATCH ignored", m->id, m->address);
	else if (h->op == PV_OP_BATCH)
		reply_batch(m, data);
	else
		reply_one(m, h, data);
	wire_header_free(h);
}

void peers_reply_record(struct member *m, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	reply_bytes(m, hdr, hdr_len, data, 0);
}

/* A BATCH of replies from m: checked whole, then each record in turn. */
static void reply_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	reply_bytes(arg, hdr, hdr_len, data, 1);
}

static void reply_batch(struct member *m, zmq_msg_t *payload)
{
	char err[256];

	if (batch_each(payload, reply_record, m, err, sizeof(err)) < 0)
		pv_warn("peer %u (%s): BATCH of replies %s: %s", m->id, m->address,
			"not (all) taken; their requests time out", err);
}

/* What peers_poll_fill polled: the member behind each item, and the catalog
 * version then (a catalog change rebuilds the member table: its DEALERs
 * are polled again next round). */
static struct member *polled[PEERD_MAX_MEMBERS];
static uint64_t polled_version;
static size_t polled_nmembers;

size_t peers_poll_fill(zmq_pollitem_t *items, size_t max, void *arg)
{
	size_t n = 0;

	for (size_t i = 0; i < srv->nmembers && n < max; i++) {
		if (!srv->members[i].sock)
			continue;
		polled[n] = &srv->members[i];
		items[n].socket = srv->members[i].sock;
		items[n++].events = ZMQ_POLLIN;
	}
	polled_version = srv->version;
	polled_nmembers = srv->nmembers;
	return n;
}

void peers_poll_done(const zmq_pollitem_t *items, size_t n, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		if (srv->version != polled_version || srv->nmembers != polled_nmembers)
			return; /* the member table was rebuilt */
		if (!(items[i].revents & ZMQ_POLLIN))
			continue;
		for (int k = 0; k < PEERD_RECV_BATCH; k++) {
			int events = 0;
			size_t sz = sizeof(events);

			peers_input(polled[i]);
			if (srv->version != polled_version)
				return;
			if (zmq_getsockopt(polled[i]->sock, ZMQ_EVENTS, &events, &sz) < 0 ||
			    !(events & ZMQ_POLLIN))
				break;
		}
	}
}

void peers_input(struct member *m)
{
	zmq_msg_t frames[3];
	size_t n = 0;
	int more = 1;
	Pv__Header *h = NULL;
	char err[256];

	while (more) {
		zmq_msg_t *f = &frames[n < 3 ? n : 2];

		if (n >= 3)
			zmq_msg_close(f);
		zmq_msg_init(f);
		if (zmq_msg_recv(f, m->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(f);
			if (n == 0)
				return;
			break;
		}
		more = zmq_msg_more(f);
		if (n < 3)
			n++;
	}
	if (wire_header_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &h, err,
			       sizeof(err)) != PV_ST_OK) {
		pv_warn("peer %u (%s): unreadable reply: %s", m->id, m->address, err);
		goto out;
	}
	m->last_heard_ms = pv_now_ms();
	m->proto_version = h->version;
	if (h->op == PV_OP_BATCH && h->status != PV_ST_OK)
		pv_warn("peer %u (%s) refused a BATCH of parts (%s: %s); they time out and "
			"the clients retry",
			m->id, m->address, wire_status_name(h->status), h->message);
	else if (h->op == PV_OP_BATCH)
		reply_batch(m, n > 1 ? &frames[1] : NULL);
	else
		reply_one(m, h, n > 1 ? &frames[1] : NULL);
out:
	wire_header_free(h);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
}
