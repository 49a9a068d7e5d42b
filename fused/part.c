/* part.c: parts, the wire requests a call is made of, and their replies.
 * Owns the table of parts by request id, the list of all parts and the
 * waiting list, what a part holds (a shared memory slot, a reference on a
 * mapping), sending a part to the server its volume is routed to, and the
 * table from op to what its answer does (as peerd's ops table). The one
 * mapping from a reply status to an errno is here. Sockets and links are
 * conn.c's; routes are catalog.c's.
 *
 * Client thread only.
 *
 *   call (client.c) -> part_new -> part_send --conn_send()--> server
 *                                                                |
 *   fuse_reply_* <- part_done <- answers[op] <- part_reply <-----+
 *   (last part)                                 (conn.c: DEALER, link, BATCH)
 *
 * Failures: MOVED, BUSY and UNAVAILABLE are retried until the part's
 * deadline (--timeout after it was made); NO_SHM is sent again by socket
 * while the shared memory is offered again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "client_int.h"
#include "pvlog.h"
#include "util.h"

/* The one mapping from a reply status to an errno. */
static int status_errno(int32_t status)
{
	switch (status) {
	case PV_ST_OK:
		return 0;
	case PV_ST_NO_VOLUME:
		return ENOENT;
	case PV_ST_OUT_OF_RANGE:
		return EFBIG;
	case PV_ST_IO_ERROR:
		return EIO;
	case PV_ST_BAD_REQUEST:
		return EINVAL;
	case PV_ST_VERSION:
		return EPROTO;
	case PV_ST_NO_SPACE:
		return ENOSPC;
	case PV_ST_REFUSED:
		return EPERM;
	default: /* MOVED, BUSY, UNAVAILABLE after the deadline; unknown codes */
		return EIO;
	}
}

/* The part with request id req_id (in flight or waiting), or NULL. */
struct part *part_find(struct client *c, uint64_t req_id)
{
	struct part *p;

	for (p = c->hash[req_id & (HASH_SIZE - 1)]; p; p = p->hnext)
		if (p->req_id == req_id)
			return p;
	return NULL;
}

/* A new part of call (NULL: a session request), due within timeout_ms; not
 * sent yet. NULL (logged) when out of memory. */
struct part *part_new(struct client *c, uint32_t op, struct call *call, const char *volume,
		      uint64_t vol_id, uint64_t offset, uint32_t length, uint64_t timeout_ms)
{
	struct part *p = calloc(1, sizeof(*p));
	struct part **b;

	if (!p) {
		pv_err("out of memory");
		return NULL;
	}
	p->req_id = c->next_req_id++;
	p->op = op;
	p->call = call;
	snprintf(p->volume, sizeof(p->volume), "%s", volume ? volume : "");
	p->vol_id = vol_id;
	p->offset = offset;
	p->length = length;
	p->deadline_ms = pv_now_ms() + timeout_ms;
	b = &c->hash[p->req_id & (HASH_SIZE - 1)];
	p->hnext = *b;
	*b = p;
	p->next = &c->all;
	p->prev = c->all.prev;
	c->all.prev->next = p;
	c->all.prev = p;
	return p;
}

/* Takes p off its server (if in flight) without touching the waiting list;
 * a part the drain of a move waited for is no longer waited for. */
void part_unsend(struct client *c, struct part *p)
{
	if (p->conn) {
		p->conn->outstanding--;
		p->conn = NULL;
	}
	if (p->drain) {
		p->drain = 0;
		c->drain_left--;
	}
}

/* Holds p (a data part of a draining volume) until the drain ends. */
static void part_hold(struct client *c, struct part *p)
{
	p->held = 1;
	p->held_next = NULL;
	*c->held_tail = p;
	c->held_tail = &p->held_next;
}

/* Takes p off the held list (it ends before the drain does). */
static void part_unhold(struct client *c, struct part *p)
{
	struct part **pp;

	if (!p->held)
		return;
	for (pp = &c->held; *pp && *pp != p; pp = &(*pp)->held_next)
		;
	if (*pp)
		*pp = p->held_next;
	for (c->held_tail = &c->held; *c->held_tail; c->held_tail = &(*c->held_tail)->held_next)
		;
	p->held = 0;
	p->held_next = NULL;
}

/* Once no part of a move's drain is in flight: its volumes stop draining
 * and the parts held meanwhile are sent, in the order they were made. */
void part_drained(struct client *c)
{
	struct part *p, *next;

	if (c->drain_left || !c->draining)
		return;
	for (size_t i = 0; i < c->n_vols; i++)
		c->vols[i].draining = 0;
	c->draining = 0;
	p = c->held;
	c->held = NULL;
	c->held_tail = &c->held;
	for (; p; p = next) {
		next = p->held_next;
		p->held = 0;
		p->held_next = NULL;
		part_send(c, p, NULL);
	}
}

/* The slot p's data is in: its own (READ) or its call's (WRITE). */
static void *part_slot(const struct part *p)
{
	return p->op == PV_OP_READ ? p->slot : p->op == PV_OP_WRITE ? p->call->slot : NULL;
}

/* p's server may still touch p's slot (p was abandoned while it had it):
 * the slot is never used again. */
static void part_abandon_slot(struct part *p)
{
	if (!p->shm_sent)
		return;
	shm_slot_quarantine(part_slot(p));
	p->shm_sent = 0;
	if (p->op == PV_OP_READ)
		p->slot = NULL;
}

/* Frees p with what it holds, without answering its call. */
void part_free(struct client *c, struct part *p)
{
	struct part **pp;

	part_abandon_slot(p);
	if (p->slot)
		shm_slot_put(p->slot);
	if (p->op == PV_OP_SHM_ATTACH && p->conn && p->conn->shm == SHM_PENDING)
		p->conn->shm = SHM_NONE; /* unanswered: the next NO_SHM asks again */
	if (p->op == PV_OP_MAP_VOLUME)
		catalog_map_unanswered(c, p);
	vmap_put(p->map);
	part_unsend(c, p);
	part_unhold(c, p);
	for (pp = &c->hash[p->req_id & (HASH_SIZE - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == p) {
			*pp = p->hnext;
			break;
		}
	for (pp = &c->waiting; *pp; pp = &(*pp)->wnext)
		if (*pp == p) {
			*pp = p->wnext;
			break;
		}
	p->prev->next = p->next;
	p->next->prev = p->prev;
	if (c->cat_part == p)
		c->cat_part = NULL;
	free(p);
}

/* Frees a call that will not be answered (again). */
void part_call_free(struct call *call)
{
	if (call->kind == CALL_WRITE)
		zmq_msg_close(&call->data);
	free(call);
}

/* Answers a call whose parts are all done (READ answers in read_answered). */
void part_call_finish(struct call *call)
{
	if (call->err)
		fuse_reply_err(call->req, call->err);
	else if (call->kind == CALL_WRITE)
		fuse_reply_write(call->req, call->length);
	else
		fuse_reply_err(call->req, 0);
	part_call_free(call);
}

/* Ends part p with errno err (0: success) and answers its call when it was
 * the last part. */
void part_done(struct client *c, struct part *p, int err)
{
	struct call *call = p->call;
	int was_catalog = (p == c->cat_part);

	part_free(c, p);
	if (was_catalog)
		catalog_ended(c, 0);
	if (!call)
		return;
	if (err && !call->err)
		call->err = err;
	if (--call->parts_left == 0)
		part_call_finish(call);
}

/* Ends a data part whose volume is gone from the catalog (v NULL), is
 * another volume of the same name (deleted and created again since the file
 * was opened), or (a snapshot's READ) has no snapshot of its id any more:
 * the handle is stale, its IO fails (ESTALE; the loop device reports an I/O
 * error) and never reaches the new volume. */
static void part_stale(struct client *c, struct part *p, const struct vol_view *v)
{
	if (v && v->attr.id == p->vol_id && p->snap_id) {
		if (client_warn_allowed(c))
			pv_warn("READ of a snapshot of volume %s at %llu fails: snapshot id %llu "
				"was deleted",
				p->volume, (unsigned long long)p->offset,
				(unsigned long long)p->snap_id);
		part_done(c, p, ESTALE);
		return;
	}
	if (!p->vol_id) {
		pv_debug("%s of volume %s: no such volume in the catalog", wire_op_name(p->op),
			 p->volume);
		part_done(c, p, ENOENT);
		return;
	}
	if (client_warn_allowed(c)) {
		if (v)
			pv_warn("%s of volume %s at %llu fails: the file was opened on volume id "
				"%llu, deleted since (volume %s now is id %llu); close and open "
				"it again",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				(unsigned long long)p->vol_id, p->volume,
				(unsigned long long)v->attr.id);
		else
			pv_warn("%s of volume %s at %llu fails: volume id %llu was deleted",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				(unsigned long long)p->vol_id);
	}
	part_done(c, p, ESTALE);
}

/* Whether a server of this protocol version reads snapshots
 * (Header.snapshot_id, 1.5). */
static int snapshots_supported(uint32_t version)
{
	return (version >> 16) == PV_PROTO_MAJOR && (version & 0xffff) >= 5;
}

/* This client's low-water mark (Header.client_done_below): every request
 * with a smaller id was answered and is never sent again, so a server that
 * meets a late copy of one (a stalled server that wakes with it) refuses
 * it. Request ids grow and parts join the list of all parts at its end, so
 * its head is the oldest part still outstanding. */
static uint64_t done_below(const struct client *c)
{
	return c->all.next != &c->all ? c->all.next->req_id : c->next_req_id;
}

/* Parks p until when (capped at its deadline), then sends it again. */
void part_wait(struct client *c, struct part *p, uint64_t when)
{
	part_unsend(c, p);
	p->retry_ms = when < p->deadline_ms ? when : p->deadline_ms;
	p->wnext = c->waiting;
	c->waiting = p;
}

/* Sends p to the server its volume is routed to (PING and CATALOG parts:
 * to s). Failures to send park it for a retry; a volume that is gone ends
 * it with ENOENT. */
void part_send(struct client *c, struct part *p, struct conn *s)
{
	struct vol_view *v = NULL;
	Pv__Header h;
	zmq_msg_t m;
	int rc, batch;

	if (p->call) {
		v = catalog_volume(c, p->volume);
		if (!v || (p->vol_id && v->attr.id != p->vol_id) ||
		    (p->snap_id && !catalog_has_snapshot(v, p->snap_id))) {
			part_stale(c, p, v);
			return;
		}
		s = v->conn;
		if (v->draining) {
			/* its requests to the server it moved from end first */
			part_hold(c, p);
			return;
		}
	}
	if (!s || !s->sock) {
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
		return;
	}
	if (p->snap_id && s->proto_version && !snapshots_supported(s->proto_version)) {
		/* it would read the volume instead: the field is new in 1.5 */
		if (client_warn_allowed(c))
			pv_warn("READ of a snapshot of volume %s fails: server %s speaks protocol "
				"%u.%u, which has no snapshots",
				p->volume, s->address, s->proto_version >> 16,
				s->proto_version & 0xffff);
		part_done(c, p, EIO);
		return;
	}
	/* data parts of one round to one server travel together */
	batch = p->call && p->length < BATCH_IO_MAX && batch_supported(s->proto_version);
	wire_header_init(&h);
	h.op = p->op;
	h.req_id = p->req_id;
	h.volume = p->volume;
	h.volume_id = p->vol_id; /* a server refuses another volume of this name */
	h.snapshot_id = p->snap_id;
	h.offset = p->offset;
	h.length = p->length;
	h.client_id = c->client_id;
	h.client_done_below = done_below(c);
	h.catalog_version = c->cat_version;
	/* this client's clock: a server that meets two copies of one request
	 * (a re-send on a new connection) answers the later one */
	h.timestamp = pv_now_ms();
	if (p->call)
		h.flags = p->call->flags;
	/* a snapshot's bytes come in the answer's data frame: peerd's shared
	 * memory and mapped-read paths serve the volume's current data */
	if (s->shm == SHM_ON && p->op == PV_OP_READ && !p->snap_id && p->length >= FUSED_SHM_MIN &&
	    !p->slot)
		p->slot = shm_slot_get(); /* NULL when all are in use: by socket */
	if (p->op == PV_OP_READ && !p->snap_id)
		catalog_map_flags(c, p, s, v, &h);
	if (s->shm == SHM_ON && part_slot(p)) {
		/* the server takes the data from our memory (WRITE) or puts it
		 * there (READ) */
		h.flags |= PV_F_SHM;
		h.shm_offset = p->op == PV_OP_WRITE ? shm_offset(zmq_msg_data(&p->call->data))
						    : shm_offset(p->slot);
		rc = conn_send(c, s, &h, NULL, batch);
	} else if (p->op == PV_OP_WRITE) {
		zmq_msg_init(&m);
		if (zmq_msg_copy(&m, &p->call->data) < 0) { /* shares the buffer */
			pv_err("zmq_msg_copy: %s", zmq_strerror(errno));
			zmq_msg_close(&m);
			part_done(c, p, EIO);
			return;
		}
		rc = conn_send(c, s, &h, &m, batch);
	} else {
		rc = conn_send(c, s, &h, NULL, batch);
	}
	if (rc < 0) {
		if (client_warn_allowed(c))
			pv_warn("cannot send %s to %s: %s", wire_op_name(p->op), s->address,
				zmq_strerror(errno));
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
		return;
	}
	p->conn = s;
	p->on_link = s->link_up;
	p->shm_sent = (h.flags & PV_F_SHM) != 0;
	if (s->outstanding++ == 0)
		s->wait_start_ms = pv_now_ms();
}

/* Sends h with a protobuf body to s, now, after what this round queued for
 * it. */
static int send_body(struct client *c, struct conn *s, const Pv__Header *h,
		     const ProtobufCMessage *body)
{
	zmq_msg_t m;

	if (wire_body_msg(&m, body) < 0)
		return -1;
	return conn_send(c, s, h, &m, 0);
}

/* Sends a session request (PING, SHM_ATTACH, MAP_VOLUME) about volume (or
 * NULL) with body (or NULL) to s as a part of its own, answered in
 * part_reply; 0, or -1 (not sent, logged at debug). */
int part_session(struct client *c, struct conn *s, uint32_t op, const char *volume,
		 const ProtobufCMessage *body)
{
	struct part *p = part_new(c, op, NULL, volume, 0, 0, 0, 2 * FUSED_DEAD_MS);
	Pv__Header h;

	if (!p)
		return -1;
	wire_header_init(&h);
	h.op = op;
	h.req_id = p->req_id;
	h.client_id = c->client_id;
	h.client_done_below = done_below(c);
	h.catalog_version = c->cat_version;
	h.volume = p->volume;
	if (body ? send_body(c, s, &h, body) < 0 : conn_send(c, s, &h, NULL, 0) < 0) {
		pv_debug("cannot send %s to %s: %s", wire_op_name(op), s->address,
			 zmq_strerror(errno));
		part_free(c, p);
		return -1;
	}
	p->conn = s;
	p->on_link = s->link_up;
	if (s->outstanding++ == 0)
		s->wait_start_ms = pv_now_ms();
	return 0;
}

/* Sends again what is in flight to s (link_only: only what went on its
 * link), with the same request ids; the slots those parts used are never
 * reused (s may still touch them). Session requests (pings, catalog,
 * attach) are failed instead. Returns how many were sent again. */
unsigned part_resend(struct client *c, struct conn *s, int link_only)
{
	unsigned resent = 0;
	struct part *p, *next;

	for (p = c->all.next; p != &c->all; p = next) {
		next = p->next;
		if (p->conn != s || (link_only && !p->on_link))
			continue;
		part_unsend(c, p);
		if (!p->call) { /* pings, catalog and attach requests are not re-sent */
			part_done(c, p, EIO);
			continue;
		}
		part_abandon_slot(p);
		part_send(c, p, NULL);
		resent++;
	}
	return resent;
}

/* reply_data's done for an answer out of a mapping. */
static void map_answer_done(void *m)
{
	vmap_put(m);
}

/* The answer to a READ: its bytes are in the server's data file (mapped),
 * in our shared memory slot, or in the data frame. */
static void read_answered(struct client *c, struct part *p, const Pv__Header *h, zmq_msg_t *data,
			  int extra, int in_shm)
{
	struct call *call = p->call;
	void *slot = p->slot;

	if (h->flags & PV_F_MAP) {
		/* the bytes are in the server's data file, which this READ named
		 * (the answer says which: a late answer to an earlier copy may
		 * name another) */
		struct vmap *m = p->map;
		const void *src;

		if (data || extra || !m || h->map_dev != m->dev || h->map_ino != m->ino) {
			pv_debug("READ of volume %s at %llu answered from a mapping it does not "
				 "name now; sent again",
				 p->volume, (unsigned long long)p->offset);
			part_wait(c, p, pv_now_ms());
			return;
		}
		src = vmap_ptr(m, p->offset, p->length); /* inside: checked at sending */
		p->map = NULL;				 /* its reference goes with the answer */
		part_free(c, p);
		reply_data(call->req, src, call->length, map_answer_done, m);
		part_call_free(call);
		return;
	}
	if (in_shm && !data && !extra && (h->flags & PV_F_SHM)) {
		/* peerd put the data into our slot; free again once answered */
		p->slot = NULL;
		part_free(c, p);
		reply_data(call->req, slot, call->length, shm_slot_put, slot);
		part_call_free(call);
		return;
	}
	if (!data || extra || zmq_msg_size(data) != p->length) {
		if (client_warn_allowed(c))
			pv_warn("READ of volume %s at %llu: reply carries %zu bytes, wanted %u",
				p->volume, (unsigned long long)p->offset,
				data ? zmq_msg_size(data) : 0, p->length);
		part_done(c, p, EIO);
		return;
	}
	part_free(c, p);
	fuse_reply_buf(call->req, zmq_msg_data(data), zmq_msg_size(data));
	part_call_free(call);
}

/* MOVED: one page's routing entry is newer elsewhere (a page moved, or is
 * moving). The entry server learns the owner's entry from that answer
 * (peerd/migrate.c), so the volume's connection stays where it is: the
 * catalog is asked for again and p goes again soon, through v->conn. */
static void io_moved(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	pv_debug("%s #%llu of '%s' at %llu via %s: MOVED (owner %u, epoch %llu)%s%s; retrying",
		 wire_op_name(p->op), (unsigned long long)p->req_id, p->volume,
		 (unsigned long long)p->offset, s->address, a->h->new_owner,
		 (unsigned long long)a->h->epoch, a->h->message[0] ? ": " : "", a->h->message);
	catalog_request(c, CATALOG_TIMEOUT_MS);
	part_wait(c, p, a->now + 20);
}

/* A status that ends p with an error (status_errno; ESTALE when the
 * volume the file was opened on is gone). */
static void io_failed(struct client *c, struct conn *s, struct part *p, const Pv__Header *h)
{
	int e = status_errno(h->status);

	if (h->status == PV_ST_VERSION) {
		pv_err("server %s speaks another protocol version: %s", s->address, h->message);
	} else if (h->status == PV_ST_NO_VOLUME) {
		catalog_request(c, CATALOG_TIMEOUT_MS);
		if (p->vol_id) {
			/* the volume this file was opened on is gone */
			e = ESTALE;
			if (client_warn_allowed(c))
				pv_warn("%s of volume %s at %llu via %s: %s", wire_op_name(p->op),
					p->volume, (unsigned long long)p->offset, s->address,
					h->message);
		}
	} else if (h->status != PV_ST_OUT_OF_RANGE && client_warn_allowed(c)) {
		pv_warn("%s of volume %s at %llu via %s: %s%s%s", wire_op_name(p->op), p->volume,
			(unsigned long long)p->offset, s->address, wire_status_name(h->status),
			h->message[0] ? ": " : "", h->message);
	}
	part_done(c, p, e);
}

/* The answer to READ, WRITE, FLUSH or TRIM: done, failed, or sent again
 * later, by its status. */
static void io_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	const Pv__Header *h = a->h;

	switch (h->status) {
	case PV_ST_OK:
		if (p->op == PV_OP_READ)
			read_answered(c, p, h, a->data, a->extra, a->in_shm);
		else
			part_done(c, p, 0);
		break;
	case PV_ST_NO_SHM: /* it forgot our memory (restarted, or unused a while) */
		pv_debug("server %s: %s", s->address, h->message);
		if (s->shm != SHM_PENDING)
			conn_attach(c, s);
		part_wait(c, p, a->now); /* by socket until the attach is answered */
		break;
	case PV_ST_MOVED:
		io_moved(c, s, p, a);
		break;
	case PV_ST_BUSY: {
		uint64_t ms = h->retry_after_ms;

		ms = ms < 1 ? 1 : ms > 10000 ? 10000 : ms;
		part_wait(c, p, a->now + ms);
		break;
	}
	case PV_ST_UNAVAILABLE:
		part_wait(c, p, a->now + FUSED_UNAVAILABLE_MS);
		break;
	case PV_ST_RESTAMP:
		/* a write stamped before a timestamp-mode snapshot's cut came
		 * too late: sent again now, its entry server stamps it anew
		 * from a clock past the cut (this answer's hlc, merged) */
		part_wait(c, p, a->now);
		break;
	default:
		io_failed(c, s, p, h);
		break;
	}
}

/* The answer to PING: a catalog newer than ours is asked for; a server
 * that carries more than its share of client traffic names another to
 * use (use_server). */
static void ping_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	part_free(c, p);
	if (a->h->status != PV_ST_OK)
		return;
	if (a->h->catalog_version && a->h->catalog_version != c->cat_version)
		catalog_request(c, CATALOG_TIMEOUT_MS);
	if (a->h->use_server)
		catalog_move(c, s, a->h->use_server, a->h->message);
}

/* What the answer to each op fused sends does (one row per op, as in
 * peerd's ops table, peerd/ops.c). */
static const struct answer_row {
	uint32_t op;
	void (*fn)(struct client *c, struct conn *s, struct part *p, const struct answer *a);
} answers[] = {
    {PV_OP_READ, io_answered},
    {PV_OP_WRITE, io_answered},
    {PV_OP_FLUSH, io_answered},
    {PV_OP_TRIM, io_answered},
    {PV_OP_PING, ping_answered},
    {PV_OP_SHM_ATTACH, conn_attach_answered},
    {PV_OP_MAP_VOLUME, catalog_map_answered},
    {PV_OP_CATALOG, catalog_answered},
};

/* Hands a's part to the row of its op (parts are made only for the ops in
 * the table). */
static void answer(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
		if (answers[i].op == p->op) {
			answers[i].fn(c, s, p, a);
			return;
		}
	pv_err("reply %s #%llu from %s: fused has no use for it", wire_op_name(p->op),
	       (unsigned long long)p->req_id, s->address);
	part_done(c, p, EIO);
}

static void handle_batch(struct client *c, struct conn *s, zmq_msg_t *data);

/* Handles one reply from s: [header hb/hl][data?][extra more frames];
 * in_batch: a record of a BATCH (which holds no BATCH). */
void part_reply(struct client *c, struct conn *s, const void *hb, size_t hl, zmq_msg_t *data,
		int extra, int in_batch)
{
	struct answer a = {.data = data, .extra = extra, .now = pv_now_ms()};
	Pv__Header *h;
	struct part *p;
	char err[256];
	int st;

	st = wire_header_decode(hb, hl, &h, err, sizeof(err));
	if (st == PV_ST_VERSION) {
		if (!s->version_logged)
			pv_err("server %s speaks another protocol version (%s); this fused "
			       "speaks %d.%d",
			       s->address, err, PV_PROTO_MAJOR, PV_PROTO_MINOR);
		s->version_logged = 1;
		return;
	}
	if (st != PV_ST_OK) {
		if (client_warn_allowed(c))
			pv_warn("bad reply from %s ignored: %s", s->address, err);
		return;
	}
	if (h->server_id && s->member_id != h->server_id)
		s->member_id = h->server_id;
	s->proto_version = h->version;
	if (h->op == PV_OP_BATCH) {
		if (h->status != PV_ST_OK)
			pv_warn("server %s refused a batch of requests (%s: %s); they are sent "
				"again when they time out",
				s->address, wire_status_name(h->status), h->message);
		else if (extra || in_batch)
			pv_warn("bad reply from %s ignored: %s", s->address,
				in_batch ? "BATCH inside a BATCH" : "BATCH of more than 2 frames");
		else
			handle_batch(c, s, data);
		goto out;
	}
	p = part_find(c, h->req_id);
	if (!p || p->conn != s || p->op != h->op) {
		pv_debug("reply %s #%llu from %s matches nothing in flight; ignored",
			 wire_op_name(h->op), (unsigned long long)h->req_id, s->address);
		goto out;
	}
	part_unsend(c, p);
	a.in_shm = p->shm_sent;
	if (a.in_shm && (h->flags & PV_F_SHM_LOST))
		part_abandon_slot(p); /* an owner behind s may still touch the slot */
	p->shm_sent = 0;	      /* it answered: done with the slot */
	if (h->status != PV_ST_OK && h->status != PV_ST_BUSY && h->status != PV_ST_MOVED &&
	    h->status != PV_ST_UNAVAILABLE && h->status != PV_ST_NO_SHM &&
	    h->status != PV_ST_RESTAMP)
		pv_debug("%s #%llu of '%s' at %llu: %s%s%s", wire_op_name(p->op),
			 (unsigned long long)p->req_id, p->volume, (unsigned long long)p->offset,
			 wire_status_name(h->status), h->message[0] ? ": " : "", h->message);
	a.h = h;
	answer(c, s, p, &a);
out:
	wire_header_free(h);
}

/* Where a BATCH's records came from, for batch_record. */
struct batch_ctx {
	struct client *c;
	struct conn *s;
};

static void batch_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct batch_ctx *x = arg;

	part_reply(x->c, x->s, hdr, hdr_len, data, 0, 1);
}

/* A BATCH of replies from s: checked whole, then each record handled as a
 * reply of its own. */
static void handle_batch(struct client *c, struct conn *s, zmq_msg_t *data)
{
	struct batch_ctx x = {c, s};
	char err[256];

	if (batch_each(data, batch_record, &x, err, sizeof(err)) < 0 && client_warn_allowed(c))
		pv_warn("BATCH of replies from %s not (all) taken: %s; those requests are sent "
			"again when they time out",
			s->address, err);
}
