/* wire.c: framing of the peervol protocol: header encode/decode with
 * validation, op and status names, and multipart sends. Pure functions plus
 * ZeroMQ sends on a socket the caller owns; thread-safe, no global state. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "hlc.h"
#include "link.h"
#include "wire.h"

struct name_row {
	int code;
	const char *name;
};

static const struct name_row op_names[] = {
    {PV_OP_READ, "READ"},
    {PV_OP_WRITE, "WRITE"},
    {PV_OP_FLUSH, "FLUSH"},
    {PV_OP_TRIM, "TRIM"},
    {PV_OP_BATCH, "BATCH"},
    {PV_OP_CATALOG, "CATALOG"},
    {PV_OP_PING, "PING"},
    {PV_OP_SHM_ATTACH, "SHM_ATTACH"},
    {PV_OP_MAP_VOLUME, "MAP_VOLUME"},
    {PV_OP_HEARTBEAT, "HEARTBEAT"},
    {PV_OP_CAT_PREPARE, "CAT_PREPARE"},
    {PV_OP_CAT_COMMIT, "CAT_COMMIT"},
    {PV_OP_CAT_ABORT, "CAT_ABORT"},
    {PV_OP_CAT_FETCH, "CAT_FETCH"},
    {PV_OP_ROUTES, "ROUTES"},
    {PV_OP_JOIN, "JOIN"},
    {PV_OP_ROUTE_UPDATE, "ROUTE_UPDATE"},
    {PV_OP_MIG_BEGIN, "MIG_BEGIN"},
    {PV_OP_MIG_SWITCH, "MIG_SWITCH"},
    {PV_OP_MIG_REQUEST, "MIG_REQUEST"},
    {PV_OP_MIG_ABORT, "MIG_ABORT"},
    {PV_OP_SNAP_HOLD, "SNAP_HOLD"},
    {PV_OP_SNAP_RELEASE, "SNAP_RELEASE"},
    {PV_OP_SNAP_DIFF, "SNAP_DIFF"},
    {PV_OP_SNAP_ROLLBACK, "SNAP_ROLLBACK"},
    {PV_OP_MIG_SNAP, "MIG_SNAP"},
};

static const char *const status_names[PV_ST__COUNT] = {
    [PV_ST_OK] = "OK",
    [PV_ST_NO_VOLUME] = "NO_VOLUME",
    [PV_ST_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [PV_ST_MOVED] = "MOVED",
    [PV_ST_BUSY] = "BUSY",
    [PV_ST_IO_ERROR] = "IO_ERROR",
    [PV_ST_BAD_REQUEST] = "BAD_REQUEST",
    [PV_ST_VERSION] = "VERSION",
    [PV_ST_NO_SPACE] = "NO_SPACE",
    [PV_ST_UNAVAILABLE] = "UNAVAILABLE",
    [PV_ST_REFUSED] = "REFUSED",
    [PV_ST_NO_SHM] = "NO_SHM",
    [PV_ST_RESTAMP] = "RESTAMP",
};

const char *wire_op_name(uint32_t op)
{
	for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
		if ((uint32_t)op_names[i].code == op)
			return op_names[i].name;
	return "UNKNOWN";
}

int wire_op_known(uint32_t op)
{
	return strcmp(wire_op_name(op), "UNKNOWN") != 0;
}

const char *wire_status_name(int32_t status)
{
	if (status < 0 || status >= PV_ST__COUNT)
		return "UNKNOWN";
	return status_names[status];
}

/* This process's hybrid logical clock: every header it sends carries it
 * (wire_header_init), every header it decodes advances it. */
static _Atomic uint64_t clock_hlc;

uint64_t wire_hlc_now(void)
{
	uint64_t old = clock_hlc, wall = pv_wall_ms(), next;

	do
		next = hlc_next(old, wall);
	while (!atomic_compare_exchange_weak(&clock_hlc, &old, next));
	return next;
}

void wire_hlc_seen(uint64_t seen)
{
	uint64_t old = clock_hlc, wall, next;

	/* every decoded header comes here: most carry nothing newer, and
	 * those cost no clock read */
	if (seen <= old)
		return;
	wall = pv_wall_ms();
	do {
		next = hlc_merge(old, seen, wall);
		if (next == old)
			return;
	} while (!atomic_compare_exchange_weak(&clock_hlc, &old, next));
}

void wire_header_init(Pv__Header *h)
{
	pv__header__init(h);
	h->version = PV_PROTO_VERSION;
	h->hlc = wire_hlc_now();
}

/* Whether m and the messages inside it carry no unknown field numbered 0. */
static int message_clean(const ProtobufCMessage *m, int depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	if (depth > 16)
		return 0;
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *arr =
			    *(ProtobufCMessage *const *const *)(base + f->offset);

			for (size_t j = 0; j < n; j++)
				if (arr[j] && !message_clean(arr[j], depth + 1))
					return 0;
		} else {
			const ProtobufCMessage *sub =
			    *(ProtobufCMessage *const *)(base + f->offset);

			if (sub && !message_clean(sub, depth + 1))
				return 0;
		}
	}
	return 1;
}

ProtobufCMessage *wire_body_decode(const ProtobufCMessageDescriptor *desc, const void *buf,
				   size_t len)
{
	ProtobufCMessage *m;

	if (!buf || len > PV_MAX_BODY)
		return NULL;
	m = protobuf_c_message_unpack(desc, NULL, len, buf);
	if (m && !message_clean(m, 0)) {
		protobuf_c_message_free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

int wire_header_decode(const void *buf, size_t len, Pv__Header **out, char *err, size_t errlen)
{
	Pv__Header *h;

	*out = NULL;
	if (len == 0 || len > PV_MAX_HEADER) {
		snprintf(err, errlen, "header frame of %zu bytes (allowed 1..%d)", len,
			 PV_MAX_HEADER);
		return PV_ST_BAD_REQUEST;
	}
	h = pv__header__unpack(NULL, len, buf);
	if (!h) {
		snprintf(err, errlen, "header frame does not decode");
		return PV_ST_BAD_REQUEST;
	}
	wire_hlc_seen(h->hlc); /* a clock too far ahead is ignored (hlc_merge) */
	if (!message_clean(&h->base, 0)) {
		snprintf(err, errlen, "header frame has a field numbered 0");
		goto bad;
	}
	if (h->version >> 16 != PV_PROTO_MAJOR) {
		snprintf(err, errlen, "protocol version %u.%u, this server speaks %d.x",
			 h->version >> 16, h->version & 0xffff, PV_PROTO_MAJOR);
		wire_header_free(h);
		return PV_ST_VERSION;
	}
	if (!wire_op_known(h->op)) {
		snprintf(err, errlen, "unknown op %u", h->op);
		goto bad;
	}
	if (strlen(h->volume) > PV_MAX_NAME) {
		snprintf(err, errlen, "volume name longer than %d", PV_MAX_NAME);
		goto bad;
	}
	if (strlen(h->message) > PV_MAX_MESSAGE) {
		snprintf(err, errlen, "message longer than %d", PV_MAX_MESSAGE);
		goto bad;
	}
	if (h->op != PV_OP_TRIM && h->length > PV_MAX_IO) {
		snprintf(err, errlen, "length %u over the maximum %u", h->length, PV_MAX_IO);
		goto bad;
	}
	if (h->offset > UINT64_MAX - h->length) {
		snprintf(err, errlen, "offset %llu + length %u overflows",
			 (unsigned long long)h->offset, h->length);
		goto bad;
	}
	*out = h;
	return PV_ST_OK;
bad:
	wire_header_free(h);
	return PV_ST_BAD_REQUEST;
}

int wire_socket_limit(void *sock)
{
	int64_t max = PV_MAX_FRAME;

	return zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof(max));
}

void wire_header_free(Pv__Header *h)
{
	if (h)
		pv__header__free_unpacked(h, NULL);
}

int wire_send_packed(void *sock, const void *ident, size_t ident_len, const void *hdr,
		     size_t hdr_len, void *payload_msg)
{
	zmq_msg_t *payload = payload_msg;
	int more = payload != NULL;

	if ((ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
	    zmq_send(sock, hdr, hdr_len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0 ||
	    (payload && zmq_msg_send(payload, sock, ZMQ_DONTWAIT) < 0)) {
		int e = errno;

		if (payload)
			zmq_msg_close(payload);
		errno = e;
		return -1;
	}
	return 0;
}

size_t wire_header_pack(const Pv__Header *h, uint8_t *buf)
{
	size_t n = pv__header__get_packed_size(h);

	if (n > PV_MAX_HEADER) {
		errno = EMSGSIZE;
		return 0;
	}
	return pv__header__pack(h, buf);
}

int wire_send(void *sock, const void *ident, size_t ident_len, const Pv__Header *h,
	      void *payload_msg)
{
	uint8_t buf[PV_MAX_HEADER];
	size_t n = wire_header_pack(h, buf);

	if (n == 0) {
		if (payload_msg)
			zmq_msg_close(payload_msg);
		return -1;
	}
	return wire_send_packed(sock, ident, ident_len, buf, n, payload_msg);
}

int wire_body_msg(void *msg_out, const ProtobufCMessage *body)
{
	zmq_msg_t *msg = msg_out;
	size_t n = protobuf_c_message_get_packed_size(body);

	if (n > PV_MAX_BODY) {
		errno = EMSGSIZE;
		return -1;
	}
	if (zmq_msg_init_size(msg, n) < 0)
		return -1;
	protobuf_c_message_pack(body, zmq_msg_data(msg));
	return 0;
}

int wire_send_body(void *sock, const void *ident, size_t ident_len, const Pv__Header *h,
		   const ProtobufCMessage *body)
{
	zmq_msg_t msg;

	if (wire_body_msg(&msg, body) < 0)
		return -1;
	return wire_send(sock, ident, ident_len, h, &msg);
}
