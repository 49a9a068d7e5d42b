/* ops.c: the table from opcode to handler for everything that arrives on
 * the ROUTER socket or an accepted link, from clients and from peers.
 * Adding an operation is one row plus its function. Decodes and validates
 * the header first: a malformed frame is answered BAD_REQUEST (or VERSION),
 * counted and logged with the sender's address, and changes nothing. Who
 * sent a message travels as a struct origin; every answer goes through
 * reply.c. Reactor thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peerd.h"

typedef void (*op_fn)(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload);

struct op_row {
	uint32_t op;
	int members_only; /* only a member of the group may send it */
	op_fn fn;
};

static uint64_t bad_frames, batches_in, batch_records_in;
static uint64_t maps_given; /* MAP_VOLUME answers */

uint64_t ops_bad_frames(void)
{
	return bad_frames;
}

uint64_t ops_batches_received(void)
{
	return batches_in;
}

uint64_t ops_batch_records_received(void)
{
	return batch_records_in;
}

static void op_data(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	if (remove_self_state()) { /* removed from the group: its data is stale */
		reply_status(from, h, PV_ST_REFUSED, "%s", remove_self_state());
		if (payload)
			zmq_msg_close(payload);
		return;
	}
	request_start(from, h, payload);
}

static void op_catalog(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	Pv__Catalog *c = catalog_pb(1);

	if (!c) {
		reply_status(from, h, PV_ST_BUSY, "server out of memory");
		return;
	}
	connbal_catalog(c, h->client_id); /* which holder this client should use */
	reply_body(from, h, PV_ST_OK, NULL, &c->base);
	catalog_pb_free(c);
}

static void op_ping(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	Pv__ClientState *st = NULL;

	if (payload) {
		st = (Pv__ClientState *)wire_body_decode(
		    &pv__client_state__descriptor, zmq_msg_data(payload), zmq_msg_size(payload));
		if (!st) {
			reply_status(from, h, PV_ST_BAD_REQUEST, "PING body does not decode");
			return;
		}
	}
	if (h->client_id) {
		clients_ping(h->client_id, h->version, st);
		/* an idle client's answered requests, for late copies */
		clients_done_below(h->client_id, h->client_done_below, pv_now_ms());
	}
	if (st)
		pv__client_state__free_unpacked(st, NULL);
	{
		Pv__Header r;
		char why[PV_MAX_MESSAGE] = "";

		reply_header(&r, h->op, h->req_id, PV_ST_OK);
		/* an overloaded server tells one client to use another holder */
		r.use_server =
		    h->client_id ? connbal_ping(h->client_id, h->version, why, sizeof(why)) : 0;
		r.message = why;
		reply_send(from, &r, NULL, 0);
	}
}

static void op_shm_attach(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	Pv__ShmAttach *a = NULL;
	char err[PV_MAX_MESSAGE] = "";
	int st;

	if (payload)
		a = (Pv__ShmAttach *)wire_body_decode(&pv__shm_attach__descriptor,
						      zmq_msg_data(payload), zmq_msg_size(payload));
	if (!a) {
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "SHM_ATTACH body missing or does not decode");
		return;
	}
	/* peers send their own id; fused sends none */
	st = shm_attach(h->client_id, from, h->server_id != 0, a, err, sizeof(err));
	if (st != PV_ST_OK)
		pv_debug("client %016llx: shared memory refused: %s",
			 (unsigned long long)h->client_id, err);
	pv__shm_attach__free_unpacked(a, NULL);
	{
		Pv__Header r; /* with the client id: a peer asked for it */
		Pv__ShmAttach hint = PV__SHM_ATTACH__INIT;
		zmq_msg_t body;
		int with = 0;

		reply_header(&r, h->op, h->req_id, st);
		r.client_id = h->client_id;
		r.message = err;
		/* a fused of another user: it may pass its memfd instead */
		hint.path = (char *)shm_pass_hint();
		if (st != PV_ST_OK && hint.path && !h->server_id)
			with = wire_body_msg(&body, &hint.base) == 0;
		reply_send(from, &r, with ? &body : NULL, 0);
	}
}

/* A client on this host (its shared memory is mapped here, so it is) asks
 * for the volume's data file, to map it and copy READ data out of it itself
 * (PV_F_MAP in request.c). The path is this process's descriptor under /proc:
 * it names the very file this server has open, whatever the data directory
 * is called. */
static void op_map_volume(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	Pv__VolumeMap m = PV__VOLUME_MAP__INIT;
	struct volume *vol = catalog_volume(h->volume);
	struct shm_region *r;
	char path[64];

	if (!vol) {
		reply_status(from, h, PV_ST_NO_VOLUME, "no volume '%s'", h->volume);
		return;
	}
	if (!request_volume_matches(from, h, vol))
		return;
	r = h->client_id && !h->hops ? shm_get(h->client_id, from) : NULL;
	if (!r) {
		reply_status(from, h, PV_ST_NO_SHM,
			     "MAP_VOLUME is for clients on this host whose shared memory "
			     "server %u has mapped (SHM_ATTACH first)",
			     srv->cfg.id);
		return;
	}
	shm_put(r);
	if (vol->fd < 0 && store_open(vol) < 0) {
		reply_status(from, h, PV_ST_IO_ERROR,
			     "volume %s: data file cannot be opened on server %u", vol->name,
			     srv->cfg.id);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), vol->fd);
	m.path = path;
	m.dev = vol->dev;
	m.ino = vol->ino;
	m.size = vol->size;
	m.volume_id = vol->id;
	maps_given++;
	pv_info("volume %s: client %016llx on this host maps its data file (%s) read-only "
		"and copies READ data held in memory out of it",
		vol->name, (unsigned long long)h->client_id, path);
	reply_body(from, h, PV_ST_OK, NULL, &m.base);
}

uint64_t ops_maps_given(void)
{
	return maps_given;
}

static void op_heartbeat(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	peers_heartbeat(from, h, payload ? zmq_msg_data(payload) : NULL,
			payload ? zmq_msg_size(payload) : 0);
}

static void op_catalog_peer(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	catalog_peer_op(from, h, payload ? zmq_msg_data(payload) : NULL,
			payload ? zmq_msg_size(payload) : 0);
}

static void op_migrate_peer(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	migrate_peer_op(from, h, payload ? zmq_msg_data(payload) : NULL,
			payload ? zmq_msg_size(payload) : 0);
}

static void op_snap_peer(const struct origin *from, const Pv__Header *h, zmq_msg_t *payload)
{
	snap_peer_op(from, h, payload ? zmq_msg_data(payload) : NULL,
		     payload ? zmq_msg_size(payload) : 0);
}

static const struct op_row ops[] = {
    {PV_OP_READ, 0, op_data},
    {PV_OP_WRITE, 0, op_data},
    {PV_OP_FLUSH, 0, op_data},
    {PV_OP_TRIM, 0, op_data},
    {PV_OP_CATALOG, 0, op_catalog},
    {PV_OP_PING, 0, op_ping},
    {PV_OP_SHM_ATTACH, 0, op_shm_attach},
    {PV_OP_MAP_VOLUME, 0, op_map_volume},
    {PV_OP_HEARTBEAT, 0, op_heartbeat}, /* checks membership itself */
    {PV_OP_CAT_PREPARE, 1, op_catalog_peer},
    {PV_OP_CAT_COMMIT, 1, op_catalog_peer},
    {PV_OP_CAT_ABORT, 1, op_catalog_peer},
    {PV_OP_CAT_FETCH, 1, op_catalog_peer},
    {PV_OP_JOIN, 0, op_catalog_peer},
    {PV_OP_ROUTES, 1, op_migrate_peer},
    {PV_OP_ROUTE_UPDATE, 1, op_migrate_peer},
    {PV_OP_MIG_BEGIN, 1, op_migrate_peer},
    {PV_OP_MIG_SWITCH, 1, op_migrate_peer},
    {PV_OP_MIG_REQUEST, 1, op_migrate_peer},
    {PV_OP_MIG_ABORT, 1, op_migrate_peer},
    {PV_OP_MIG_SNAP, 1, op_migrate_peer},
    {PV_OP_SNAP_HOLD, 1, op_snap_peer},
    {PV_OP_SNAP_RELEASE, 1, op_snap_peer},
    {PV_OP_SNAP_DIFF, 1, op_snap_peer},
    {PV_OP_SNAP_ROLLBACK, 1, op_snap_peer},
};

static void refuse(const struct origin *from, zmq_msg_t *first, const Pv__Header *h, int status,
		   const char *why)
{
	const char *addr = first ? zmq_msg_gets(first, "Peer-Address") : "a peer link";

	bad_frames++;
	if (bad_frames <= 100 || bad_frames % 1000 == 0)
		pv_warn("refused a message from %s: %s (%s; %llu refused so far)",
			addr ? addr : "a local peer", why, wire_status_name(status),
			(unsigned long long)bad_frames);
	reply_status(from, h, status, "%s", why);
}

/* Whether the sender's role lets it do h (docs/security.md): a revoked
 * client nothing; a client no server-to-server op (members_only, JOIN,
 * HEARTBEAT) and no forwarded part (hops > 0). Refuses it if not. */
static int auth_refuses(const struct origin *from, zmq_msg_t *first, const Pv__Header *h,
			int members_only)
{
	const char *why = NULL;

	if (from->role == AUTH_OPEN || from->role == AUTH_SERVER)
		return 0;
	if (from->role == AUTH_NOBODY)
		why = "this client's key was revoked (or the connection has no key)";
	else if (members_only || h->op == PV_OP_JOIN || h->op == PV_OP_HEARTBEAT)
		why = "a client key cannot send server-to-server messages";
	else if (h->hops > 0)
		why = "a client key cannot send forwarded parts";
	if (!why)
		return 0;
	{
		char err[300];

		snprintf(err, sizeof(err), "%s refused: %s", wire_op_name(h->op), why);
		refuse(from, first, h, PV_ST_REFUSED, err);
	}
	return 1;
}

/* Acts on one message [header][payload?] whose header frame is hdr;
 * first is the frame it came in (for the sender's address in logs). */
static void dispatch_one(const struct origin *from, zmq_msg_t *first, const void *hdr,
			 size_t hdr_len, zmq_msg_t *payload, int in_batch);

/* Where a BATCH's records came from, for dispatch_record. */
struct batch_ctx {
	const struct origin *from;
	zmq_msg_t *first;
};

static void dispatch_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct batch_ctx *x = arg;

	dispatch_one(x->from, x->first, hdr, hdr_len, data, 1);
}

/* A BATCH: checked whole first (a malformed one is refused and nothing in
 * it is done), then every record handled as its own message. */
static void dispatch_batch(const struct origin *from, zmq_msg_t *first, const Pv__Header *h,
			   zmq_msg_t *payload)
{
	struct batch_ctx x = {from, first};
	char err[256], why[300];
	int n = batch_each(payload, dispatch_record, &x, err, sizeof(err));

	if (n == -1) {
		snprintf(why, sizeof(why), "malformed BATCH: %s", err);
		refuse(from, first, h, PV_ST_BAD_REQUEST, why);
		return;
	}
	if (n == -2) {
		pv_err("BATCH of requests cut short (%s); the clients retry the rest", err);
		return;
	}
	batches_in++;
	batch_records_in += n;
}

static void dispatch_one(const struct origin *from, zmq_msg_t *first, const void *hdr,
			 size_t hdr_len, zmq_msg_t *payload, int in_batch)
{
	Pv__Header *h = NULL;
	char err[256];
	int st;

	st = wire_header_decode(hdr, hdr_len, &h, err, sizeof(err));
	if (st != PV_ST_OK) {
		refuse(from, first, NULL, st, err);
		return;
	}
	if (h->op == PV_OP_BATCH) {
		if (in_batch)
			refuse(from, first, h, PV_ST_BAD_REQUEST, "BATCH inside a BATCH");
		else
			dispatch_batch(from, first, h, payload);
		wire_header_free(h);
		return;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (ops[i].op != h->op)
			continue;
		if (auth_refuses(from, first, h, ops[i].members_only))
			break;
		if (ops[i].members_only &&
		    (!catalog_member(h->server_id) || h->server_id == srv->cfg.id)) {
			char why[200];

			remove_not_member(h->server_id, why, sizeof(why)); /* maybe removed */
			snprintf(err, sizeof(err), "%s refused: %s", wire_op_name(h->op), why);
			refuse(from, first, h, PV_ST_REFUSED, err);
			break;
		}
		ops[i].fn(from, h, payload);
		break;
	}
	wire_header_free(h);
}

void ops_dispatch_record(const uint8_t *ident, size_t ident_len, enum auth_role role,
			 const void *hdr, size_t hdr_len, zmq_msg_t *payload)
{
	struct origin from;

	reply_origin(&from, ident, ident_len);
	from.role = role;
	dispatch_one(&from, NULL, hdr, hdr_len, payload, 0);
}

void ops_dispatch(const uint8_t *ident, size_t ident_len, zmq_msg_t *frames, size_t nframes)
{
	struct origin from;

	reply_origin(&from, ident, ident_len);
	from.role = auth_router_role(&frames[0]);
	if (nframes > 2) {
		refuse(&from, &frames[0], NULL, PV_ST_BAD_REQUEST, "message of more than 2 frames");
		return;
	}
	dispatch_one(&from, &frames[0], zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
		     nframes > 1 ? &frames[1] : NULL, 0);
}

/* Receives one message from the ROUTER: identity then up to 3 frames (more
 * are read and dropped; dispatch refuses them). Returns 0, or -1 if none. */
static int router_one(void)
{
	zmq_msg_t ident, frames[3];
	size_t n = 0, total = 0;
	int more;

	zmq_msg_init(&ident);
	if (zmq_msg_recv(&ident, srv->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&ident);
		return -1;
	}
	more = zmq_msg_more(&ident);
	while (more) {
		zmq_msg_t *f = &frames[n < 3 ? n : 2];

		if (n >= 3)
			zmq_msg_close(f);
		zmq_msg_init(f);
		if (zmq_msg_recv(f, srv->router, 0) < 0) {
			zmq_msg_close(f);
			break;
		}
		more = zmq_msg_more(f);
		if (n < 3)
			n++;
		total++;
	}
	if (n > 0 && zmq_msg_size(&ident) <= PV_MAX_IDENTITY)
		ops_dispatch(zmq_msg_data(&ident), zmq_msg_size(&ident), frames, total);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
	zmq_msg_close(&ident);
	return 0;
}

void ops_router_input(void *arg)
{
	for (int i = 0; i < PEERD_RECV_BATCH && router_one() == 0; i++)
		;
}
