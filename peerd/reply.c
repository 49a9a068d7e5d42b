/* reply.c: every message the reactor sends to a client or a peer leaves
 * through here: the replies to what arrived on the ROUTER or an accepted
 * link (to a struct origin), and the messages to other members (their link
 * or DEALER). One function, transport_send, picks the transport: an
 * accepted link, a member's link, or a ZeroMQ socket through this round's
 * cork (batch.h; straight onto the socket before the cork exists and after
 * it is gone). Owns no state of its own; never decodes what arrives.
 * Reactor thread only.
 *
 *   handler --reply_status/_busy/_body/_send(origin)--+
 *                                                     +--> transport_send --> link | cork | socket
 *   forward, peers, catalog --reply_send_member(m)----+
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "peerd.h"

/* Where one message goes. */
enum transport { TO_ACCEPTED_LINK, TO_MEMBER_LINK, TO_SOCKET };

struct route {
	enum transport via;
	void *sock;	      /* TO_SOCKET: the ROUTER or a member's DEALER */
	const uint8_t *ident; /* TO_ACCEPTED_LINK, and a ROUTER peer's routing id */
	size_t ident_len;
	struct member *m; /* TO_MEMBER_LINK */
};

/* The one place the transport is chosen. Without may_batch the message goes
 * now (a link writes it at once; the cork sends it after what is queued for
 * the destination); with it, at the end of the round with the rest.
 * payload is moved (closed) as by wire_send. */
static int transport_send(const struct route *to, const Pv__Header *h, zmq_msg_t *payload,
			  int may_batch)
{
	switch (to->via) {
	case TO_ACCEPTED_LINK:
		return linkset_reply(to->ident, to->ident_len, h, payload, !may_batch);
	case TO_MEMBER_LINK:
		return linkset_send(to->m, h, payload, !may_batch);
	case TO_SOCKET:
		break;
	}
	if (!srv->cork) /* start-up or shutdown */
		return wire_send(to->sock, to->ident, to->ident_len, h, payload);
	return batch_cork_send(srv->cork, to->sock, to->ident, to->ident_len, h, payload,
			       may_batch);
}

void reply_origin(struct origin *o, const uint8_t *ident, size_t ident_len)
{
	if (ident_len > sizeof(o->ident))
		ident_len = sizeof(o->ident);
	memcpy(o->ident, ident, ident_len);
	o->len = ident_len;
	o->via = linkset_is_ident(ident, ident_len) ? ORIGIN_LINK : ORIGIN_ROUTER;
}

void reply_header(Pv__Header *r, uint32_t op, uint64_t req_id, int status)
{
	wire_header_init(r);
	r->op = op;
	r->req_id = req_id;
	r->status = status;
	r->server_id = srv->cfg.id;
	r->catalog_version = srv->version;
}

int reply_send(const struct origin *to, const Pv__Header *r, zmq_msg_t *data, int may_batch)
{
	struct route rt = {
	    .via = to->via == ORIGIN_LINK ? TO_ACCEPTED_LINK : TO_SOCKET,
	    .sock = srv->router,
	    .ident = to->ident,
	    .ident_len = to->len,
	};

	return transport_send(&rt, r, data, may_batch);
}

static void reply_status_v(const struct origin *to, const Pv__Header *h, int status,
			   uint64_t retry_after_ms, const char *fmt, va_list ap)
{
	Pv__Header r;
	char msg[PV_MAX_MESSAGE];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	reply_header(&r, h ? h->op : 0, h ? h->req_id : 0, status);
	r.message = msg;
	r.retry_after_ms = retry_after_ms;
	if (h)
		r.volume = h->volume;
	if (reply_send(to, &r, NULL, h && batch_supported(h->version)) < 0)
		pv_debug("reply to a client failed: %m");
}

void reply_status(const struct origin *to, const Pv__Header *h, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_status_v(to, h, status, 0, fmt, ap);
	va_end(ap);
}

void reply_busy(const struct origin *to, const Pv__Header *h, uint64_t retry_after_ms,
		const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_status_v(to, h, PV_ST_BUSY, retry_after_ms, fmt, ap);
	va_end(ap);
}

void reply_body(const struct origin *to, const Pv__Header *h, int status, const char *msg,
		const ProtobufCMessage *body)
{
	Pv__Header r;
	zmq_msg_t m;

	reply_header(&r, h ? h->op : 0, h ? h->req_id : 0, status);
	r.message = (char *)(msg ? msg : "");
	if (h)
		r.volume = h->volume;
	if (body && wire_body_msg(&m, body) < 0)
		return;
	reply_send(to, &r, body ? &m : NULL, 0);
}

int reply_send_member(struct member *m, Pv__Header *h, zmq_msg_t *payload,
		      const ProtobufCMessage *body)
{
	/* small data requests of a round travel together (BATCH, or one write
	 * on a link); anything else goes at once */
	int small =
	    !body && h->length < BATCH_IO_MAX && (h->op == PV_OP_READ || h->op == PV_OP_WRITE);
	struct route rt = {.via = TO_MEMBER_LINK, .m = m};
	zmq_msg_t msg;

	if (!peers_via_link(m)) {
		if (!m->sock) {
			if (payload)
				zmq_msg_close(payload);
			errno = ENOTCONN;
			return -1;
		}
		rt.via = TO_SOCKET;
		rt.sock = m->sock;
		/* a DEALER batches only for a member that speaks 1.1 */
		small = small && batch_supported(m->proto_version);
	}
	h->server_id = srv->cfg.id;
	h->catalog_version = srv->version;
	if (body) {
		if (wire_body_msg(&msg, body) < 0)
			return -1;
		payload = &msg;
	}
	return transport_send(&rt, h, payload, small);
}
