/* check_batch.c: the BATCH payload codec (batch_check, batch_next,
 * batch_put) and the cork that fills it: what a receiver sees for one,
 * several and too many queued messages, the order per destination, and
 * the drop callback when a socket refuses a send. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "batch.h"

/* Encodes a header with op and req_id into buf; returns its length. */
static size_t make_header(uint8_t *buf, uint32_t op, uint64_t req_id)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = op;
	h.req_id = req_id;
	h.volume = "vol";
	return pv__header__pack(&h, buf);
}

/* A payload of three records: READ 1 (no data), WRITE 2 (5 bytes), WRITE 3
 * (0 bytes of data, which is not the same as none). */
static size_t three_records(uint8_t *out)
{
	uint8_t hb[PV_MAX_HEADER];
	size_t n = 0, hl;

	hl = make_header(hb, PV_OP_READ, 1);
	n += batch_put(out + n, hb, hl, NULL, 0, 0);
	hl = make_header(hb, PV_OP_WRITE, 2);
	n += batch_put(out + n, hb, hl, "hello", 5, 1);
	hl = make_header(hb, PV_OP_WRITE, 3);
	n += batch_put(out + n, hb, hl, "", 0, 1);
	return n;
}

static uint64_t record_req_id(const struct batch_record *r)
{
	Pv__Header *h = NULL;
	char err[128];
	uint64_t id;

	ck_assert_int_eq(wire_header_decode(r->hdr, r->hdr_len, &h, err, sizeof(err)), PV_ST_OK);
	id = h->req_id;
	wire_header_free(h);
	return id;
}

START_TEST(codec_roundtrip)
{
	uint8_t buf[4096];
	size_t len = three_records(buf), off = 0;
	struct batch_record r;
	char err[128];

	ck_assert_int_eq(batch_check(buf, len, err, sizeof(err)), 3);
	ck_assert_int_eq(batch_next(buf, len, &off, &r), 1);
	ck_assert_uint_eq(record_req_id(&r), 1);
	ck_assert_ptr_null(r.data);
	ck_assert_int_eq(batch_next(buf, len, &off, &r), 1);
	ck_assert_uint_eq(record_req_id(&r), 2);
	ck_assert_uint_eq(r.data_len, 5);
	ck_assert_mem_eq(r.data, "hello", 5);
	ck_assert_int_eq(batch_next(buf, len, &off, &r), 1);
	ck_assert_uint_eq(record_req_id(&r), 3);
	ck_assert_ptr_nonnull(r.data);
	ck_assert_uint_eq(r.data_len, 0);
	ck_assert_int_eq(batch_next(buf, len, &off, &r), 0);
	ck_assert_uint_eq(off, len);
}
END_TEST

START_TEST(codec_refuses_malformed)
{
	uint8_t buf[4096], bad[4096];
	size_t len = three_records(buf);
	char err[128];

	ck_assert_int_eq(batch_check(NULL, 0, err, sizeof(err)), -1);
	ck_assert_int_eq(batch_check(buf, 0, err, sizeof(err)), -1);
	/* every truncation is refused, never read past */
	for (size_t cut = 1; cut < len; cut++) {
		uint8_t *copy = malloc(cut);
		int n;

		memcpy(copy, buf, cut);
		n = batch_check(copy, cut, err, sizeof(err));
		free(copy);
		/* a cut at a record boundary is a shorter valid batch */
		if (n > 0)
			ck_assert_int_lt(n, 3);
		else
			ck_assert_int_eq(n, -1);
	}
	/* header length 0 */
	memcpy(bad, buf, len);
	memset(bad, 0, 4);
	ck_assert_int_eq(batch_check(bad, len, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "header of 0 bytes"));
	/* header length over PV_MAX_HEADER */
	memcpy(bad, buf, len);
	bad[0] = 0x01;
	bad[1] = 0x10; /* 4097 */
	ck_assert_int_eq(batch_check(bad, len, err, sizeof(err)), -1);
	/* data length over PV_MAX_IO (not the no-data marker) */
	memcpy(bad, buf, len);
	bad[4] = 0xfe;
	bad[5] = 0xff;
	bad[6] = 0xff;
	bad[7] = 0xff;
	ck_assert_int_eq(batch_check(bad, len, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "data of"));
	/* data longer than what is left */
	memcpy(bad, buf, len);
	bad[4] = 0x00;
	bad[5] = 0x10;
	bad[6] = 0x00;
	bad[7] = 0x00;
	ck_assert_int_eq(batch_check(bad, len, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "left"));
}
END_TEST

START_TEST(codec_record_limit)
{
	uint8_t hb[PV_MAX_HEADER];
	size_t hl = make_header(hb, PV_OP_READ, 9), n = 0;
	uint8_t *buf = malloc((BATCH_RECORDS_MAX + 1) * batch_record_size(hl, 0));
	char err[128];

	for (int i = 0; i < BATCH_RECORDS_MAX; i++)
		n += batch_put(buf + n, hb, hl, NULL, 0, 0);
	ck_assert_int_eq(batch_check(buf, n, err, sizeof(err)), BATCH_RECORDS_MAX);
	n += batch_put(buf + n, hb, hl, NULL, 0, 0);
	ck_assert_int_eq(batch_check(buf, n, err, sizeof(err)), -1);
	free(buf);
}
END_TEST

START_TEST(version_gate)
{
	ck_assert(!batch_supported(0));
	ck_assert(!batch_supported(1u << 16));	    /* 1.0 */
	ck_assert(batch_supported((1u << 16) | 1)); /* 1.1 */
	ck_assert(batch_supported((1u << 16) | 7));
	ck_assert(!batch_supported((2u << 16) | 1)); /* another major */
	ck_assert(batch_supported(PV_PROTO_VERSION));
}
END_TEST

/* ---- the cork, over an inproc PAIR ------------------------------------- */

struct link {
	void *ctx, *a, *b;
};

static void link_open(struct link *l, const char *ep)
{
	l->ctx = zmq_ctx_new();
	l->a = zmq_socket(l->ctx, ZMQ_PAIR);
	l->b = zmq_socket(l->ctx, ZMQ_PAIR);
	ck_assert_int_eq(zmq_bind(l->b, ep), 0);
	ck_assert_int_eq(zmq_connect(l->a, ep), 0);
}

static void link_close(struct link *l)
{
	zmq_close(l->a);
	zmq_close(l->b);
	zmq_ctx_term(l->ctx);
}

/* Receives one message [header][data?]; returns its header, the data in
 * *data (closed by the caller) if *has_data. */
static Pv__Header *recv_msg(void *s, zmq_msg_t *data, int *has_data)
{
	zmq_msg_t hdr;
	Pv__Header *h = NULL;
	char err[128];

	zmq_msg_init(&hdr);
	ck_assert_int_ge(zmq_msg_recv(&hdr, s, ZMQ_DONTWAIT), 0);
	*has_data = zmq_msg_more(&hdr);
	ck_assert_int_eq(
	    wire_header_decode(zmq_msg_data(&hdr), zmq_msg_size(&hdr), &h, err, sizeof(err)),
	    PV_ST_OK);
	zmq_msg_close(&hdr);
	zmq_msg_init(data);
	if (*has_data) {
		ck_assert_int_ge(zmq_msg_recv(data, s, 0), 0);
		ck_assert(!zmq_msg_more(data));
	}
	return h;
}

static int nothing_waiting(void *s)
{
	zmq_msg_t m;
	int rc;

	zmq_msg_init(&m);
	rc = zmq_msg_recv(&m, s, ZMQ_DONTWAIT);
	zmq_msg_close(&m);
	return rc < 0 && errno == EAGAIN;
}

static int has_data_unused;

static int send_one(struct batch_cork *k, void *sock, uint32_t op, uint64_t id, size_t data_len,
		    int may_batch)
{
	Pv__Header h;
	zmq_msg_t m;

	wire_header_init(&h);
	h.op = op;
	h.req_id = id;
	h.volume = "vol";
	if (op != PV_OP_WRITE)
		return batch_cork_send(k, sock, NULL, 0, &h, NULL, may_batch);
	ck_assert_int_eq(zmq_msg_init_size(&m, data_len), 0);
	memset(zmq_msg_data(&m), (int)(id & 0xff), data_len);
	return batch_cork_send(k, sock, NULL, 0, &h, &m, may_batch);
}

START_TEST(cork_one_message_goes_as_itself)
{
	struct batch_cork *k = batch_cork_new();
	struct link l;
	zmq_msg_t d;
	Pv__Header *h;
	int has;

	link_open(&l, "inproc://cork-one");
	ck_assert_int_eq(send_one(k, l.a, PV_OP_WRITE, 7, 4096, 1), 0);
	ck_assert(nothing_waiting(l.b)); /* queued until the flush */
	batch_cork_flush(k);
	h = recv_msg(l.b, &d, &has);
	ck_assert_uint_eq(h->op, PV_OP_WRITE);
	ck_assert_uint_eq(h->req_id, 7);
	ck_assert(has);
	ck_assert_uint_eq(zmq_msg_size(&d), 4096);
	ck_assert_uint_eq(((uint8_t *)zmq_msg_data(&d))[4095], 7);
	zmq_msg_close(&d);
	wire_header_free(h);
	ck_assert(nothing_waiting(l.b));
	ck_assert_uint_eq(batch_cork_batches(k), 0);
	batch_cork_free(k);
	link_close(&l);
}
END_TEST

START_TEST(cork_several_become_one_batch)
{
	struct batch_cork *k = batch_cork_new();
	struct batch_record r;
	struct link l;
	zmq_msg_t d;
	Pv__Header *h;
	size_t off = 0;
	char err[128];
	int has;

	link_open(&l, "inproc://cork-several");
	ck_assert_int_eq(send_one(k, l.a, PV_OP_WRITE, 1, 4096, 1), 0);
	ck_assert_int_eq(send_one(k, l.a, PV_OP_READ, 2, 0, 1), 0);
	ck_assert_int_eq(send_one(k, l.a, PV_OP_WRITE, 3, 100, 1), 0);
	batch_cork_flush(k);
	h = recv_msg(l.b, &d, &has);
	ck_assert_uint_eq(h->op, PV_OP_BATCH);
	ck_assert_uint_eq(h->length, 3);
	ck_assert(has);
	wire_header_free(h);
	ck_assert_int_eq(batch_check(zmq_msg_data(&d), zmq_msg_size(&d), err, sizeof(err)), 3);
	for (uint64_t want = 1; want <= 3; want++) {
		ck_assert(batch_next(zmq_msg_data(&d), zmq_msg_size(&d), &off, &r));
		ck_assert_uint_eq(record_req_id(&r), want);
		if (want == 2) {
			ck_assert_ptr_null(r.data);
		} else {
			ck_assert_uint_eq(r.data_len, want == 1 ? 4096 : 100);
			ck_assert_uint_eq(r.data[r.data_len - 1], want);
		}
	}
	zmq_msg_close(&d);
	ck_assert(nothing_waiting(l.b));
	ck_assert_uint_eq(batch_cork_batches(k), 1);
	ck_assert_uint_eq(batch_cork_records(k), 3);
	batch_cork_free(k);
	link_close(&l);
}
END_TEST

START_TEST(cork_keeps_order_with_unbatched)
{
	struct batch_cork *k = batch_cork_new();
	struct link l;
	zmq_msg_t d;
	Pv__Header *h;
	int has;

	link_open(&l, "inproc://cork-order");
	ck_assert_int_eq(send_one(k, l.a, PV_OP_READ, 1, 0, 1), 0);
	ck_assert_int_eq(send_one(k, l.a, PV_OP_READ, 2, 0, 1), 0);
	/* too large to batch: what is queued goes first, then this one */
	ck_assert_int_eq(send_one(k, l.a, PV_OP_WRITE, 3, BATCH_PART_MAX + 1, 1), 0);
	/* not batchable (may_batch 0): the same */
	ck_assert_int_eq(send_one(k, l.a, PV_OP_READ, 4, 0, 1), 0);
	ck_assert_int_eq(send_one(k, l.a, PV_OP_FLUSH, 5, 0, 0), 0);
	h = recv_msg(l.b, &d, &has);
	ck_assert_uint_eq(h->op, PV_OP_BATCH);
	wire_header_free(h);
	zmq_msg_close(&d);
	h = recv_msg(l.b, &d, &has);
	ck_assert_uint_eq(h->req_id, 3);
	ck_assert_uint_eq(zmq_msg_size(&d), BATCH_PART_MAX + 1);
	wire_header_free(h);
	zmq_msg_close(&d);
	h = recv_msg(l.b, &d, &has); /* a lone queued message: as itself */
	ck_assert_uint_eq(h->req_id, 4);
	wire_header_free(h);
	zmq_msg_close(&d);
	h = recv_msg(l.b, &d, &has);
	ck_assert_uint_eq(h->req_id, 5);
	wire_header_free(h);
	zmq_msg_close(&d);
	ck_assert(nothing_waiting(l.b));
	batch_cork_flush(k); /* nothing left */
	ck_assert(nothing_waiting(l.b));
	batch_cork_free(k);
	link_close(&l);
}
END_TEST

START_TEST(cork_splits_at_the_size_limit)
{
	struct batch_cork *k = batch_cork_new();
	struct link l;
	unsigned n = 2 * (BATCH_BYTES_MAX / BATCH_PART_MAX) + 1, msgs = 0;
	uint64_t next = 1;

	link_open(&l, "inproc://cork-split");
	for (unsigned i = 1; i <= n; i++)
		ck_assert_int_eq(send_one(k, l.a, PV_OP_WRITE, i, BATCH_PART_MAX, 1), 0);
	batch_cork_flush(k);
	while (next <= n) {
		struct batch_record r;
		zmq_msg_t d;
		size_t off = 0;
		Pv__Header *h = recv_msg(l.b, &d, &has_data_unused);

		msgs++;
		if (h->op == PV_OP_BATCH) {
			ck_assert_uint_le(zmq_msg_size(&d), BATCH_BYTES_MAX);
			while (batch_next(zmq_msg_data(&d), zmq_msg_size(&d), &off, &r))
				ck_assert_uint_eq(record_req_id(&r), next++);
		} else {
			ck_assert_uint_eq(h->req_id, next++);
		}
		wire_header_free(h);
		zmq_msg_close(&d);
	}
	ck_assert_uint_ge(msgs, 3); /* no BATCH over the limit: split */
	ck_assert(nothing_waiting(l.b));
	batch_cork_free(k);
	link_close(&l);
}
END_TEST

/* The next drop the cork kept: its request id (on sock), or 0 if none. */
static uint64_t next_drop(struct batch_cork *k, void *sock)
{
	struct batch_drop d;

	if (!batch_cork_next_drop(k, &d))
		return 0;
	ck_assert_ptr_eq(d.sock, sock);
	return d.req_id;
}

START_TEST(cork_reports_what_it_could_not_send)
{
	struct batch_cork *k = batch_cork_new();
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
	int immediate = 1;

	/* a DEALER with nobody connected and ZMQ_IMMEDIATE refuses sends */
	zmq_setsockopt(s, ZMQ_IMMEDIATE, &immediate, sizeof(immediate));
	ck_assert_int_eq(zmq_connect(s, "tcp://127.0.0.1:9"), 0);
	ck_assert_int_eq(send_one(k, s, PV_OP_WRITE, 11, 512, 1), 0);
	batch_cork_flush(k); /* one: sent alone, refused */
	ck_assert_uint_eq(next_drop(k, s), 11);
	ck_assert_uint_eq(next_drop(k, s), 0);
	ck_assert_int_eq(send_one(k, s, PV_OP_WRITE, 12, 512, 1), 0);
	ck_assert_int_eq(send_one(k, s, PV_OP_READ, 13, 0, 1), 0);
	batch_cork_flush(k); /* two: one BATCH, refused */
	ck_assert_uint_eq(next_drop(k, s), 12);
	ck_assert_uint_eq(next_drop(k, s), 13);
	ck_assert_uint_eq(next_drop(k, s), 0);
	ck_assert_uint_eq(batch_cork_dropped(k), 3);
	/* a message sent at once reports its failure to the caller */
	ck_assert_int_eq(send_one(k, s, PV_OP_FLUSH, 14, 0, 0), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_uint_eq(next_drop(k, s), 0);
	batch_cork_free(k);
	zmq_close(s);
	zmq_ctx_term(ctx);
}
END_TEST

/* batch_each: every record in order, its data without a copy, kept past
 * the call and past the BATCH message itself; nothing for a malformed one. */
struct seen {
	int n;
	uint64_t ids[4];
	zmq_msg_t kept[4];
	int has[4];
};

static void see(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct seen *x = arg;
	struct batch_record r = {.hdr = hdr, .hdr_len = hdr_len};

	ck_assert_int_lt(x->n, 4);
	x->ids[x->n] = record_req_id(&r);
	zmq_msg_init(&x->kept[x->n]);
	x->has[x->n] = data != NULL;
	if (data)
		zmq_msg_move(&x->kept[x->n], data);
	x->n++;
}

START_TEST(each_record_without_copy)
{
	uint8_t buf[4096];
	size_t len = three_records(buf);
	struct seen x = {0};
	zmq_msg_t payload;
	const uint8_t *base;
	char err[128];

	ck_assert_int_eq(zmq_msg_init_size(&payload, len), 0);
	memcpy(zmq_msg_data(&payload), buf, len);
	base = zmq_msg_data(&payload);
	ck_assert_int_eq(batch_each(&payload, see, &x, err, sizeof(err)), 3);
	zmq_msg_close(&payload); /* the records' data outlive it */
	ck_assert_int_eq(x.n, 3);
	ck_assert_uint_eq(x.ids[0], 1);
	ck_assert_uint_eq(x.ids[1], 2);
	ck_assert_uint_eq(x.ids[2], 3);
	ck_assert(!x.has[0]);
	ck_assert(x.has[1] && x.has[2]);
	ck_assert_uint_eq(zmq_msg_size(&x.kept[1]), 5);
	ck_assert_mem_eq(zmq_msg_data(&x.kept[1]), "hello", 5);
	/* inside the BATCH's own memory: no copy */
	ck_assert((const uint8_t *)zmq_msg_data(&x.kept[1]) > base &&
		  (const uint8_t *)zmq_msg_data(&x.kept[1]) < base + len);
	ck_assert_uint_eq(zmq_msg_size(&x.kept[2]), 0);
	for (int i = 0; i < 3; i++)
		zmq_msg_close(&x.kept[i]);

	/* malformed: refused, fn never runs */
	memset(&x, 0, sizeof(x));
	ck_assert_int_eq(zmq_msg_init_size(&payload, len - 3), 0);
	memcpy(zmq_msg_data(&payload), buf, len - 3);
	ck_assert_int_eq(batch_each(&payload, see, &x, err, sizeof(err)), -1);
	ck_assert_int_eq(x.n, 0);
	zmq_msg_close(&payload);
	ck_assert_int_eq(batch_each(NULL, see, &x, err, sizeof(err)), -1);
	ck_assert_int_eq(x.n, 0);
}
END_TEST

static Suite *batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *codec = tcase_create("codec");
	TCase *cork = tcase_create("cork");

	tcase_add_test(codec, codec_roundtrip);
	tcase_add_test(codec, codec_refuses_malformed);
	tcase_add_test(codec, codec_record_limit);
	tcase_add_test(codec, version_gate);
	tcase_add_test(codec, each_record_without_copy);
	tcase_add_test(cork, cork_one_message_goes_as_itself);
	tcase_add_test(cork, cork_several_become_one_batch);
	tcase_add_test(cork, cork_keeps_order_with_unbatched);
	tcase_add_test(cork, cork_splits_at_the_size_limit);
	tcase_add_test(cork, cork_reports_what_it_could_not_send);
	suite_add_tcase(s, codec);
	suite_add_tcase(s, cork);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(batch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
