/* check_wire.c: unit tests for proto/wire.c: header encode/decode and its
 * validation (version, op, limits, overflow, name and message lengths), op
 * and status names, and wire_send/wire_send_body over inproc ZeroMQ pairs
 * (frame layout, payload moved and closed, failures). Each test makes and
 * ends its own ZeroMQ context. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "wire.h"

/* A header with every field set to a distinct value that is not a
 * default, so that a field lost or swapped in a round trip shows. */
static void full_header(Pv__Header *h, char *volume, char *message)
{
	wire_header_init(h);
	h->op = PV_OP_WRITE;
	h->req_id = 0x0102030405060708ull;
	h->volume = volume;
	h->offset = 0x0000123456789a00ull;
	h->length = 65536;
	h->epoch = 0xfedcba9876543210ull;
	h->hops = 2;
	h->status = PV_ST_MOVED;
	h->flags = PV_F_FUA;
	h->timestamp = 0x1122334455667788ull;
	h->client_id = 0x99aabbccddeeff00ull;
	h->message = message;
	h->server_id = 0xabcdef01u;
	h->catalog_version = 424242;
	h->new_owner = 17;
	h->retry_after_ms = 250;
}

/* Packs h into buf (at least PV_MAX_HEADER * 4 bytes); returns the size. */
static size_t pack(const Pv__Header *h, uint8_t *buf)
{
	size_t n = pv__header__get_packed_size(h);

	ck_assert_uint_le(n, PV_MAX_HEADER * 4);
	ck_assert_uint_eq(pv__header__pack(h, buf), n);
	return n;
}

/* Decodes buf expecting status want; on PV_ST_OK returns the header (free
 * it), otherwise checks that a reason was given and returns NULL. */
static Pv__Header *decode_expect(const void *buf, size_t len, int want)
{
	char err[256];
	Pv__Header *out = (Pv__Header *)&out; /* not NULL: must be cleared */
	int st;

	memset(err, 0, sizeof(err));
	st = wire_header_decode(buf, len, &out, err, sizeof(err));
	ck_assert_msg(st == want, "decode gave %s (%s), want %s", wire_status_name(st), err,
		      wire_status_name(want));
	if (st == PV_ST_OK) {
		ck_assert_ptr_nonnull(out);
		return out;
	}
	ck_assert_ptr_null(out);
	ck_assert_msg(err[0] != '\0', "%s without a reason", wire_status_name(st));
	return NULL;
}

/* Encodes h and decodes it expecting want; frees what decodes. */
static void roundtrip_expect(const Pv__Header *h, int want)
{
	static uint8_t buf[PV_MAX_HEADER * 4];
	size_t n = pack(h, buf);

	wire_header_free(decode_expect(buf, n, want));
}

START_TEST(header_init)
{
	Pv__Header h;

	memset(&h, 0x5a, sizeof(h));
	wire_header_init(&h);
	ck_assert_uint_eq(h.version, PV_PROTO_VERSION);
	ck_assert_uint_eq(h.version >> 16, PV_PROTO_MAJOR);
	ck_assert_uint_eq(h.op, 0);
	ck_assert_uint_eq(h.req_id, 0);
	ck_assert_uint_eq(h.length, 0);
	ck_assert_int_eq(h.status, PV_ST_OK);
	ck_assert_str_eq(h.volume, "");
	ck_assert_str_eq(h.message, "");
}
END_TEST

START_TEST(header_roundtrip_every_field)
{
	char volume[] = "vol-1.img";
	char message[] = "page 7 moved to server 17";
	uint8_t buf[PV_MAX_HEADER * 4];
	Pv__Header h, *d;
	size_t n;

	full_header(&h, volume, message);
	n = pack(&h, buf);
	d = decode_expect(buf, n, PV_ST_OK);
	ck_assert_uint_eq(d->version, PV_PROTO_VERSION);
	ck_assert_uint_eq(d->op, PV_OP_WRITE);
	ck_assert_uint_eq(d->req_id, 0x0102030405060708ull);
	ck_assert_str_eq(d->volume, "vol-1.img");
	ck_assert_uint_eq(d->offset, 0x0000123456789a00ull);
	ck_assert_uint_eq(d->length, 65536);
	ck_assert_uint_eq(d->epoch, 0xfedcba9876543210ull);
	ck_assert_uint_eq(d->hops, 2);
	ck_assert_int_eq(d->status, PV_ST_MOVED);
	ck_assert_uint_eq(d->flags, PV_F_FUA);
	ck_assert_uint_eq(d->timestamp, 0x1122334455667788ull);
	ck_assert_uint_eq(d->client_id, 0x99aabbccddeeff00ull);
	ck_assert_str_eq(d->message, "page 7 moved to server 17");
	ck_assert_uint_eq(d->server_id, 0xabcdef01u);
	ck_assert_uint_eq(d->catalog_version, 424242);
	ck_assert_uint_eq(d->new_owner, 17);
	ck_assert_uint_eq(d->retry_after_ms, 250);
	wire_header_free(d);

	/* negative status survives too */
	h.status = -5;
	n = pack(&h, buf);
	d = decode_expect(buf, n, PV_ST_OK);
	ck_assert_int_eq(d->status, -5);
	wire_header_free(d);
}
END_TEST

START_TEST(header_minimal)
{
	Pv__Header h;

	/* a bare PING: version and op only */
	wire_header_init(&h);
	h.op = PV_OP_PING;
	roundtrip_expect(&h, PV_ST_OK);
}
END_TEST

START_TEST(header_rejects_bad_frames)
{
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					  0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t bad_wiretype[] = {0x0f, 0x01}; /* field 1, wire type 7 */
	static const uint8_t zero_tag[] = {0x00, 0x01};
	uint8_t buf[PV_MAX_HEADER * 4];
	Pv__Header h;
	size_t n;

	decode_expect("", 0, PV_ST_BAD_REQUEST);
	decode_expect(garbage, sizeof(garbage), PV_ST_BAD_REQUEST);
	decode_expect(bad_wiretype, sizeof(bad_wiretype), PV_ST_BAD_REQUEST);
	decode_expect(zero_tag, sizeof(zero_tag), PV_ST_BAD_REQUEST);

	/* a valid header cut short anywhere inside its last field */
	full_header(&h, "vol", "");
	h.retry_after_ms = 0; /* the last field is then new_owner */
	n = pack(&h, buf);
	decode_expect(buf, n - 1, PV_ST_BAD_REQUEST);

	/* a string whose length runs past the end of the frame */
	{
		static const uint8_t over[] = {0x08, 0x80, 0x80, 0x04, 0x22, 0x7f, 'a'};

		decode_expect(over, sizeof(over), PV_ST_BAD_REQUEST);
	}
}
END_TEST

/* Appends an unknown length-delimited field 100 of size pad to an encoded
 * header (decoders keep unknown fields), so the frame reaches any size. */
static size_t pad_frame(uint8_t *buf, size_t n, size_t pad)
{
	buf[n++] = 0xa2; /* field 100, wire type 2: tag varint 0x322 */
	buf[n++] = 0x06;
	do {
		uint8_t b = pad & 0x7f;

		pad >>= 7;
		buf[n++] = b | (pad ? 0x80 : 0);
	} while (pad);
	return n;
}

START_TEST(header_frame_size_limit)
{
	uint8_t buf[PV_MAX_HEADER * 4];
	Pv__Header h, *d;
	size_t base, n, pad;

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.length = 4096;
	base = pack(&h, buf);

	/* find the padding that makes the frame exactly PV_MAX_HEADER bytes */
	for (pad = PV_MAX_HEADER - base - 5;; pad++) {
		n = pad_frame(buf, base, pad);
		if (n + pad >= PV_MAX_HEADER)
			break;
	}
	ck_assert_uint_eq(n + pad, PV_MAX_HEADER);
	memset(buf + n, 'p', pad);
	d = decode_expect(buf, PV_MAX_HEADER, PV_ST_OK);
	ck_assert_uint_eq(d->op, PV_OP_READ);
	ck_assert_uint_eq(d->length, 4096);
	wire_header_free(d);

	/* one byte more */
	n = pad_frame(buf, base, pad + 1);
	memset(buf + n, 'p', pad + 1);
	ck_assert_uint_eq(n + pad + 1, PV_MAX_HEADER + 1);
	decode_expect(buf, PV_MAX_HEADER + 1, PV_ST_BAD_REQUEST);
	/* and far more */
	n = pad_frame(buf, base, 3 * PV_MAX_HEADER);
	memset(buf + n, 'p', 3 * PV_MAX_HEADER);
	decode_expect(buf, n + 3 * PV_MAX_HEADER, PV_ST_BAD_REQUEST);
}
END_TEST

START_TEST(header_version)
{
	Pv__Header h;

	full_header(&h, "v", "");
	/* another minor version of this major is accepted */
	h.version = (PV_PROTO_MAJOR << 16) | 7;
	roundtrip_expect(&h, PV_ST_OK);
	h.version = (PV_PROTO_MAJOR << 16) | 0xffff;
	roundtrip_expect(&h, PV_ST_OK);
	/* another major is refused as VERSION, not misread */
	h.version = (uint32_t)(PV_PROTO_MAJOR + 1) << 16;
	roundtrip_expect(&h, PV_ST_VERSION);
	h.version = 0xffff0000u | PV_PROTO_MINOR;
	roundtrip_expect(&h, PV_ST_VERSION);
	/* a header without a version (major 0) */
	h.version = 0;
	roundtrip_expect(&h, PV_ST_VERSION);
	h.version = PV_PROTO_MINOR + 1;
	roundtrip_expect(&h, PV_ST_VERSION);
}
END_TEST

START_TEST(header_version_error_names_versions)
{
	uint8_t buf[64];
	char err[256] = "";
	Pv__Header h, *out;
	size_t n;

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.version = (2u << 16) | 3;
	n = pack(&h, buf);
	ck_assert_int_eq(wire_header_decode(buf, n, &out, err, sizeof(err)), PV_ST_VERSION);
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(err, "2.3") != NULL, "error '%s' does not name version 2.3", err);
}
END_TEST

START_TEST(header_ops)
{
	static const uint32_t known[] = {
	    PV_OP_READ,		 PV_OP_WRITE,	   PV_OP_FLUSH,	       PV_OP_TRIM,
	    PV_OP_CATALOG,	 PV_OP_PING,	   PV_OP_HEARTBEAT,    PV_OP_CAT_PREPARE,
	    PV_OP_CAT_COMMIT,	 PV_OP_CAT_ABORT,  PV_OP_CAT_FETCH,    PV_OP_ROUTES,
	    PV_OP_JOIN,		 PV_OP_SHM_ATTACH, PV_OP_MAP_VOLUME,   PV_OP_BATCH,
	    PV_OP_ROUTE_UPDATE,	 PV_OP_MIG_BEGIN,  PV_OP_MIG_SWITCH,   PV_OP_MIG_REQUEST,
	    PV_OP_MIG_ABORT,	 PV_OP_SNAP_HOLD,  PV_OP_SNAP_RELEASE, PV_OP_SNAP_DIFF,
	    PV_OP_SNAP_ROLLBACK, PV_OP_MIG_SNAP};
	static const uint32_t unknown[] = {0, 6, 15, 20, 63, 81, 255, 0x10001, UINT32_MAX};
	Pv__Header h;

	wire_header_init(&h);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		h.op = known[i];
		roundtrip_expect(&h, PV_ST_OK);
	}
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		h.op = unknown[i];
		roundtrip_expect(&h, PV_ST_BAD_REQUEST);
	}
}
END_TEST

START_TEST(header_length_limit)
{
	static const uint32_t io_ops[] = {PV_OP_READ, PV_OP_WRITE, PV_OP_FLUSH, PV_OP_CATALOG};
	Pv__Header h;

	wire_header_init(&h);
	for (size_t i = 0; i < sizeof(io_ops) / sizeof(io_ops[0]); i++) {
		h.op = io_ops[i];
		h.length = PV_MAX_IO;
		roundtrip_expect(&h, PV_ST_OK);
		h.length = PV_MAX_IO + 1;
		roundtrip_expect(&h, PV_ST_BAD_REQUEST);
		h.length = UINT32_MAX;
		roundtrip_expect(&h, PV_ST_BAD_REQUEST);
	}
	/* TRIM may cover more than one IO */
	h.op = PV_OP_TRIM;
	h.length = PV_MAX_IO + 1;
	roundtrip_expect(&h, PV_ST_OK);
	h.length = UINT32_MAX;
	roundtrip_expect(&h, PV_ST_OK);
}
END_TEST

START_TEST(header_offset_overflow)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.offset = UINT64_MAX;
	h.length = 1;
	roundtrip_expect(&h, PV_ST_BAD_REQUEST);
	h.offset = UINT64_MAX - 4095;
	h.length = 4097;
	roundtrip_expect(&h, PV_ST_BAD_REQUEST);
	/* ending exactly at the top of the range does not overflow */
	h.offset = UINT64_MAX - 4096;
	h.length = 4096;
	roundtrip_expect(&h, PV_ST_OK);
	h.offset = UINT64_MAX;
	h.length = 0;
	roundtrip_expect(&h, PV_ST_OK);
	/* TRIM, whose length is not capped by PV_MAX_IO */
	h.op = PV_OP_TRIM;
	h.offset = UINT64_MAX - 100;
	h.length = UINT32_MAX;
	roundtrip_expect(&h, PV_ST_BAD_REQUEST);
}
END_TEST

START_TEST(header_string_limits)
{
	char name[PV_MAX_NAME + 2];
	char message[PV_MAX_MESSAGE + 2];
	Pv__Header h;

	memset(name, 'v', sizeof(name));
	memset(message, 'm', sizeof(message));
	name[PV_MAX_NAME] = '\0';
	message[PV_MAX_MESSAGE] = '\0';
	full_header(&h, name, message);
	roundtrip_expect(&h, PV_ST_OK);

	name[PV_MAX_NAME] = 'v';
	name[PV_MAX_NAME + 1] = '\0';
	roundtrip_expect(&h, PV_ST_BAD_REQUEST);

	name[PV_MAX_NAME] = '\0';
	message[PV_MAX_MESSAGE] = 'm';
	message[PV_MAX_MESSAGE + 1] = '\0';
	roundtrip_expect(&h, PV_ST_BAD_REQUEST);
}
END_TEST

START_TEST(header_err_buffer_small)
{
	char err[8];
	Pv__Header *out;

	/* a short err buffer is truncated and terminated, never overrun */
	memset(err, 'z', sizeof(err));
	ck_assert_int_eq(wire_header_decode("", 0, &out, err, 4), PV_ST_BAD_REQUEST);
	ck_assert_uint_eq(strlen(err), 3);
	ck_assert_int_eq(err[4], 'z');
	/* and no buffer at all is fine */
	ck_assert_int_eq(wire_header_decode("", 0, &out, NULL, 0), PV_ST_BAD_REQUEST);
	ck_assert_ptr_null(out);
	wire_header_free(NULL);
}
END_TEST

START_TEST(op_names)
{
	static const struct {
		uint32_t op;
		const char *name;
	} rows[] = {
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
	int known = 0;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		ck_assert_str_eq(wire_op_name(rows[i].op), rows[i].name);
		ck_assert_int_ne(wire_op_known(rows[i].op), 0);
	}
	ck_assert_str_eq(wire_op_name(0), "UNKNOWN");
	ck_assert_str_eq(wire_op_name(6), "UNKNOWN");
	ck_assert_str_eq(wire_op_name(99), "UNKNOWN");
	ck_assert_str_eq(wire_op_name(UINT32_MAX), "UNKNOWN");
	ck_assert_int_eq(wire_op_known(0), 0);
	ck_assert_int_eq(wire_op_known(UINT32_MAX), 0);
	/* exactly the table's ops are known in 0..1023 */
	for (uint32_t op = 0; op < 1024; op++)
		known += wire_op_known(op) != 0;
	ck_assert_int_eq(known, (int)(sizeof(rows) / sizeof(rows[0])));
}
END_TEST

START_TEST(status_names)
{
	static const char *const want[] = {
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

	ck_assert_int_eq(sizeof(want) / sizeof(want[0]), PV_ST__COUNT);
	for (int st = 0; st < PV_ST__COUNT; st++) {
		ck_assert_ptr_nonnull(wire_status_name(st));
		ck_assert_str_eq(wire_status_name(st), want[st]);
	}
	ck_assert_str_eq(wire_status_name(PV_ST__COUNT), "UNKNOWN");
	ck_assert_str_eq(wire_status_name(-1), "UNKNOWN");
	ck_assert_str_eq(wire_status_name(INT32_MIN), "UNKNOWN");
	ck_assert_str_eq(wire_status_name(INT32_MAX), "UNKNOWN");
}
END_TEST

/* ---- wire_send over inproc sockets ---- */

struct pair {
	void *ctx;
	void *a; /* sender */
	void *b; /* receiver */
};

/* Opens a connected pair; ident, when not NULL, is a's routing id. */
static void pair_open(struct pair *p, int type_a, int type_b, const char *endpoint,
		      const char *ident)
{
	int linger = 0, timeout = 5000;

	p->ctx = zmq_ctx_new();
	ck_assert_ptr_nonnull(p->ctx);
	p->a = zmq_socket(p->ctx, type_a);
	p->b = zmq_socket(p->ctx, type_b);
	ck_assert_ptr_nonnull(p->a);
	ck_assert_ptr_nonnull(p->b);
	zmq_setsockopt(p->a, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(p->b, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(p->a, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(p->b, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	if (ident)
		ck_assert_int_eq(zmq_setsockopt(p->a, ZMQ_ROUTING_ID, ident, strlen(ident)), 0);
	ck_assert_int_eq(zmq_bind(p->b, endpoint), 0);
	ck_assert_int_eq(zmq_connect(p->a, endpoint), 0);
}

static void pair_close(struct pair *p)
{
	zmq_close(p->a);
	zmq_close(p->b);
	zmq_ctx_term(p->ctx);
}

/* Receives one frame into msg (initialised here); returns whether more
 * frames follow. */
static int recv_frame(void *sock, zmq_msg_t *msg)
{
	int more;
	size_t len = sizeof(more);

	zmq_msg_init(msg);
	ck_assert_msg(zmq_msg_recv(msg, sock, 0) >= 0, "recv: %s", zmq_strerror(zmq_errno()));
	ck_assert_int_eq(zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len), 0);
	return more;
}

/* Receives a header frame and decodes it (must be PV_ST_OK). */
static Pv__Header *recv_header(void *sock, int *more)
{
	zmq_msg_t msg;
	Pv__Header *h;

	*more = recv_frame(sock, &msg);
	h = decode_expect(zmq_msg_data(&msg), zmq_msg_size(&msg), PV_ST_OK);
	zmq_msg_close(&msg);
	return h;
}

/* Whether nothing more is waiting on sock. */
static int nothing_waiting(void *sock)
{
	zmq_msg_t msg;
	int rc;

	zmq_msg_init(&msg);
	rc = zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT);
	zmq_msg_close(&msg);
	return rc < 0 && zmq_errno() == EAGAIN;
}

static int frees;	 /* calls of count_free */
static void *freed_data; /* its last data argument */
static void count_free(void *data, void *hint)
{
	frees++;
	freed_data = data;
	free(data);
}

/* A payload message of n bytes of a pattern, freed through count_free. */
static void *make_payload(zmq_msg_t *msg, size_t n, uint8_t seed)
{
	uint8_t *data = malloc(n);

	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(seed + i * 7);
	ck_assert_int_eq(zmq_msg_init_data(msg, data, n, count_free, NULL), 0);
	return data;
}

static void check_pattern(const zmq_msg_t *msg, size_t n, uint8_t seed)
{
	const uint8_t *d = zmq_msg_data((zmq_msg_t *)msg);

	ck_assert_uint_eq(zmq_msg_size((zmq_msg_t *)msg), n);
	for (size_t i = 0; i < n; i++)
		if (d[i] != (uint8_t)(seed + i * 7))
			ck_abort_msg("payload byte %zu differs", i);
}

START_TEST(send_header_only_pair)
{
	struct pair p;
	Pv__Header h, *r;
	int more;

	pair_open(&p, ZMQ_PAIR, ZMQ_PAIR, "inproc://wire-hdr", NULL);
	full_header(&h, "vol", "msg");
	h.op = PV_OP_FLUSH;
	ck_assert_int_eq(wire_send(p.a, NULL, 0, &h, NULL), 0);
	r = recv_header(p.b, &more);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(r->op, PV_OP_FLUSH);
	ck_assert_uint_eq(r->req_id, h.req_id);
	ck_assert_str_eq(r->volume, "vol");
	ck_assert_str_eq(r->message, "msg");
	wire_header_free(r);
	ck_assert(nothing_waiting(p.b));
	pair_close(&p);
}
END_TEST

START_TEST(send_payload_pair)
{
	struct pair p;
	Pv__Header h, *r;
	zmq_msg_t payload, got;
	void *data;
	int more;

	frees = 0;
	freed_data = NULL;
	pair_open(&p, ZMQ_PAIR, ZMQ_PAIR, "inproc://wire-payload", NULL);
	wire_header_init(&h);
	h.op = PV_OP_WRITE;
	h.req_id = 77;
	h.length = 128 * 1024;
	data = make_payload(&payload, 128 * 1024, 3);
	ck_assert_int_eq(wire_send(p.a, NULL, 0, &h, &payload), 0);
	/* the payload was moved: the caller's message is empty */
	ck_assert_uint_eq(zmq_msg_size(&payload), 0);

	r = recv_header(p.b, &more);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(r->req_id, 77);
	ck_assert_uint_eq(r->op, PV_OP_WRITE);
	wire_header_free(r);
	ck_assert_int_eq(recv_frame(p.b, &got), 0);
	check_pattern(&got, 128 * 1024, 3);
	/* zero copy: inproc hands over the very buffer that was sent */
	ck_assert_ptr_eq(zmq_msg_data(&got), data);
	ck_assert_int_eq(frees, 0);
	zmq_msg_close(&got);
	/* freed exactly once, when the receiver is done */
	ck_assert_int_eq(frees, 1);
	ck_assert_ptr_eq(freed_data, data);
	ck_assert(nothing_waiting(p.b));
	pair_close(&p);
}
END_TEST

START_TEST(send_dealer_router_both_ways)
{
	struct pair p;
	Pv__Header h, *r;
	zmq_msg_t payload, ident, got;
	int more;

	frees = 0;
	pair_open(&p, ZMQ_DEALER, ZMQ_ROUTER, "inproc://wire-dr", "client-1");

	/* DEALER -> ROUTER: [ident][header][payload] arrives */
	wire_header_init(&h);
	h.op = PV_OP_WRITE;
	h.req_id = 1;
	make_payload(&payload, 4096, 9);
	ck_assert_int_eq(wire_send(p.a, NULL, 0, &h, &payload), 0);
	ck_assert_int_eq(recv_frame(p.b, &ident), 1);
	ck_assert_uint_eq(zmq_msg_size(&ident), 8);
	ck_assert_mem_eq(zmq_msg_data(&ident), "client-1", 8);
	r = recv_header(p.b, &more);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(r->req_id, 1);
	wire_header_free(r);
	ck_assert_int_eq(recv_frame(p.b, &got), 0);
	check_pattern(&got, 4096, 9);
	zmq_msg_close(&got);

	/* ROUTER -> DEALER with the identity: [header][payload] arrives */
	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.req_id = 2;
	h.status = PV_ST_OK;
	make_payload(&payload, 1000, 21);
	ck_assert_int_eq(wire_send(p.b, zmq_msg_data(&ident), zmq_msg_size(&ident), &h, &payload),
			 0);
	r = recv_header(p.a, &more);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(r->req_id, 2);
	ck_assert_uint_eq(r->op, PV_OP_READ);
	wire_header_free(r);
	ck_assert_int_eq(recv_frame(p.a, &got), 0);
	check_pattern(&got, 1000, 21);
	zmq_msg_close(&got);

	/* ROUTER -> DEALER, header only */
	h.req_id = 3;
	ck_assert_int_eq(wire_send(p.b, zmq_msg_data(&ident), zmq_msg_size(&ident), &h, NULL), 0);
	r = recv_header(p.a, &more);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(r->req_id, 3);
	wire_header_free(r);
	ck_assert(nothing_waiting(p.a));
	zmq_msg_close(&ident);
	pair_close(&p);
	ck_assert_int_eq(frees, 2);
}
END_TEST

START_TEST(send_body)
{
	struct pair p;
	Pv__Header h, *r;
	Pv__ClientState cs = PV__CLIENT_STATE__INIT, *got_cs;
	char *vols[] = {"alpha", "beta"};
	zmq_msg_t body;
	int more;

	pair_open(&p, ZMQ_DEALER, ZMQ_ROUTER, "inproc://wire-body", NULL);
	wire_header_init(&h);
	h.op = PV_OP_PING;
	h.req_id = 5;
	cs.n_open_volumes = 2;
	cs.open_volumes = vols;
	ck_assert_int_eq(wire_send_body(p.a, NULL, 0, &h, &cs.base), 0);
	{
		zmq_msg_t ident;

		ck_assert_int_eq(recv_frame(p.b, &ident), 1);
		zmq_msg_close(&ident);
	}
	r = recv_header(p.b, &more);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(r->op, PV_OP_PING);
	wire_header_free(r);
	ck_assert_int_eq(recv_frame(p.b, &body), 0);
	got_cs = pv__client_state__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
	ck_assert_ptr_nonnull(got_cs);
	ck_assert_uint_eq(got_cs->n_open_volumes, 2);
	ck_assert_str_eq(got_cs->open_volumes[0], "alpha");
	ck_assert_str_eq(got_cs->open_volumes[1], "beta");
	pv__client_state__free_unpacked(got_cs, NULL);
	zmq_msg_close(&body);

	/* an empty body is still its own (empty) frame */
	cs.n_open_volumes = 0;
	ck_assert_int_eq(wire_send_body(p.a, NULL, 0, &h, &cs.base), 0);
	{
		zmq_msg_t ident;

		ck_assert_int_eq(recv_frame(p.b, &ident), 1);
		zmq_msg_close(&ident);
	}
	r = recv_header(p.b, &more);
	ck_assert_int_eq(more, 1);
	wire_header_free(r);
	ck_assert_int_eq(recv_frame(p.b, &body), 0);
	ck_assert_uint_eq(zmq_msg_size(&body), 0);
	zmq_msg_close(&body);
	pair_close(&p);
}
END_TEST

START_TEST(send_body_too_large)
{
	struct pair p;
	Pv__Header h;
	Pv__ClientState cs = PV__CLIENT_STATE__INIT;
	char *big = malloc(PV_MAX_BODY + 1);

	ck_assert_ptr_nonnull(big);
	memset(big, 'b', PV_MAX_BODY);
	big[PV_MAX_BODY] = '\0';
	cs.n_open_volumes = 1;
	cs.open_volumes = &big;
	pair_open(&p, ZMQ_PAIR, ZMQ_PAIR, "inproc://wire-bigbody", NULL);
	wire_header_init(&h);
	h.op = PV_OP_PING;
	errno = 0;
	ck_assert_int_eq(wire_send_body(p.a, NULL, 0, &h, &cs.base), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert(nothing_waiting(p.b));
	free(big);
	pair_close(&p);
}
END_TEST

START_TEST(send_header_too_large_closes_payload)
{
	struct pair p;
	Pv__Header h;
	zmq_msg_t payload;
	char *msg = malloc(PV_MAX_HEADER + 100);

	ck_assert_ptr_nonnull(msg);
	memset(msg, 'm', PV_MAX_HEADER + 99);
	msg[PV_MAX_HEADER + 99] = '\0';
	frees = 0;
	pair_open(&p, ZMQ_PAIR, ZMQ_PAIR, "inproc://wire-bighdr", NULL);
	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.message = msg;
	make_payload(&payload, 512, 1);
	errno = 0;
	ck_assert_int_eq(wire_send(p.a, NULL, 0, &h, &payload), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	/* the payload was closed (and so freed) although nothing was sent */
	ck_assert_int_eq(frees, 1);
	ck_assert(nothing_waiting(p.b));
	/* without payload too */
	errno = 0;
	ck_assert_int_eq(wire_send(p.a, NULL, 0, &h, NULL), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	free(msg);
	pair_close(&p);
}
END_TEST

START_TEST(send_would_block_closes_payload)
{
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0;
	Pv__Header h;
	zmq_msg_t payload;

	/* a DEALER with no peer cannot queue: the send fails at once */
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	frees = 0;
	wire_header_init(&h);
	h.op = PV_OP_WRITE;
	make_payload(&payload, 4096, 2);
	errno = 0;
	ck_assert_int_eq(wire_send(s, NULL, 0, &h, &payload), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(frees, 1);
	errno = 0;
	ck_assert_int_eq(wire_send(s, NULL, 0, &h, NULL), -1);
	ck_assert_int_eq(errno, EAGAIN);
	zmq_close(s);
	zmq_ctx_term(ctx);
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *hdr = tcase_create("header");
	TCase *names = tcase_create("names");
	TCase *send = tcase_create("send");

	tcase_add_test(hdr, header_init);
	tcase_add_test(hdr, header_roundtrip_every_field);
	tcase_add_test(hdr, header_minimal);
	tcase_add_test(hdr, header_rejects_bad_frames);
	tcase_add_test(hdr, header_frame_size_limit);
	tcase_add_test(hdr, header_version);
	tcase_add_test(hdr, header_version_error_names_versions);
	tcase_add_test(hdr, header_ops);
	tcase_add_test(hdr, header_length_limit);
	tcase_add_test(hdr, header_offset_overflow);
	tcase_add_test(hdr, header_string_limits);
	tcase_add_test(hdr, header_err_buffer_small);
	tcase_add_test(names, op_names);
	tcase_add_test(names, status_names);
	tcase_add_test(send, send_header_only_pair);
	tcase_add_test(send, send_payload_pair);
	tcase_add_test(send, send_dealer_router_both_ways);
	tcase_add_test(send, send_body);
	tcase_add_test(send, send_body_too_large);
	tcase_add_test(send, send_header_too_large_closes_payload);
	tcase_add_test(send, send_would_block_closes_payload);
	suite_add_tcase(s, hdr);
	suite_add_tcase(s, names);
	suite_add_tcase(s, send);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
