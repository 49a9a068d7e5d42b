/* check_link.c: peer links (link.h): the record parser (link_parse) on
 * complete, truncated, malformed and back-to-back records, and a link over
 * a socketpair: what is queued arrives once, in order, byte for byte,
 * through partial writes, tiny reads and records larger than the receive
 * buffer; refusals (EMSGSIZE, ENOBUFS) close the data; a closed peer and a
 * malformed stream end the link after what came before was delivered; the
 * counters; link_destroy. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "link.h"

/* Links of the "auth" and "tls" cases run the handshake first (linkauth.h):
 * 0 none, 1 authenticated, 2 encrypted. */
static int auth_mode;
static const uint8_t link_key[PV_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t link_id[PV_KEY_BYTES] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static int lookup_key(void *arg, const uint8_t id[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES],
		      char *why, size_t whylen)
{
	const uint8_t *k = arg;

	if (memcmp(id, link_id, PV_KEY_BYTES)) {
		snprintf(why, whylen, "unknown key");
		return -1;
	}
	memcpy(key, k, PV_KEY_BYTES);
	return 0;
}

/* Runs the handshake between a (connector, encrypt if enc) and b
 * (acceptor, its link key k) to its end: the results of both sides. */
static void handshake(struct link *a, struct link *b, int enc, const uint8_t *k, int *ra, int *rb,
		      char *ea, char *eb)
{
	int rounds = 0;

	link_auth_connect(a, link_id, link_key, enc);
	link_auth_accept(b, 0);
	*ra = *rb = 1;
	while (*ra == 1 || *rb == 1) {
		if (*ra == 1)
			*ra = link_handshake(a, NULL, NULL, ea, 256);
		if (*rb == 1)
			*rb = link_handshake(b, lookup_key, (void *)k, eb, 256);
		ck_assert_int_lt(++rounds, 10000);
		if (*ra == -1 || *rb == -1) /* the owner closes a failed link */
			break;
	}
}

static void set_auth(void)
{
	auth_mode = 1;
}

static void set_tls(void)
{
	auth_mode = 2;
}

static void set_plain(void)
{
	auth_mode = 0;
}

#define NO_DATA ((size_t)-1)

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* The header bytes of message id: a pv.Header with req_id id and a
 * message of a pattern, (id * 37) % 300 characters, of op CATALOG (whose
 * body may be of any size up to PV_MAX_BODY: link_admit takes records of
 * every size the tests send). Returns the length. */
static size_t make_hdr(uint8_t *buf, unsigned id)
{
	Pv__Header h;
	char msg[301];
	size_t n = (id * 37u) % 300, len;

	wire_header_init(&h);
	h.hlc = 0; /* the same bytes on every call */
	h.op = PV_OP_CATALOG;
	h.req_id = id;
	for (size_t k = 0; k < n; k++)
		msg[k] = (char)('a' + (id * 13u + k * 7u) % 26);
	msg[n] = '\0';
	h.message = msg;
	len = wire_header_pack(&h, buf);
	ck_assert_uint_gt(len, 0);
	return len;
}

/* A header of op (READ, WRITE, ...) with length len; returns its size. */
static size_t make_op_hdr(uint8_t *buf, uint32_t op, uint32_t len)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = op;
	h.req_id = 1;
	h.volume = "vol";
	h.length = len;
	return wire_header_pack(&h, buf);
}

static uint8_t data_byte(unsigned id, size_t j)
{
	return (uint8_t)(j + (j >> 8) * 3 + (j >> 16) * 5 + id * 11u);
}

static void fill_data(uint8_t *p, unsigned id, size_t len)
{
	for (size_t j = 0; j < len; j++)
		p[j] = data_byte(id, j);
}

/* Appends the raw record of message id (data_len NO_DATA: none) to out;
 * returns its size. */
static size_t put_record(uint8_t *out, unsigned id, size_t data_len)
{
	size_t hl = make_hdr(out + 8, id);

	put32(out, (uint32_t)hl);
	put32(out + 4, data_len == NO_DATA ? 0xffffffffu : (uint32_t)data_len);
	if (data_len == NO_DATA)
		return 8 + hl;
	fill_data(out + 8 + hl, id, data_len);
	return 8 + hl + data_len;
}

/* Counts the data messages whose content was released. */
static int data_freed;

static void count_free(void *data, void *hint)
{
	(void)hint;
	free(data);
	data_freed++;
}

/* A data message of message id that counts its release. */
static void make_msg(zmq_msg_t *m, unsigned id, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(p);
	fill_data(p, id, len);
	ck_assert_int_eq(zmq_msg_init_data(m, p, len, count_free, NULL), 0);
}

/* Queues message id with data_len bytes of data (NO_DATA: none). */
static int queue_one(struct link *l, unsigned id, size_t data_len)
{
	uint8_t hb[PV_MAX_HEADER];
	size_t hl = make_hdr(hb, id);
	zmq_msg_t m;

	if (data_len == NO_DATA)
		return link_queue(l, hb, hl, NULL);
	make_msg(&m, id, data_len);
	return link_queue(l, hb, hl, &m);
}

/* What a receiver expects: message i of want has id i and want[i] bytes
 * of data (NO_DATA: none); got counts what arrived. */
struct rx {
	const size_t *want;
	size_t nwant;
	size_t got;
};

static void check_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct rx *x = arg;
	uint8_t hb[PV_MAX_HEADER];
	unsigned id = (unsigned)x->got;
	size_t hl = make_hdr(hb, id);

	ck_assert_uint_lt(x->got, x->nwant);
	ck_assert_uint_eq(hdr_len, hl);
	ck_assert_mem_eq(hdr, hb, hl);
	if (x->want[id] == NO_DATA) {
		ck_assert_ptr_null(data);
	} else {
		const uint8_t *p;

		ck_assert_ptr_nonnull(data);
		ck_assert_uint_eq(zmq_msg_size(data), x->want[id]);
		p = zmq_msg_data(data);
		for (size_t j = 0; j < x->want[id]; j++)
			if (p[j] != data_byte(id, j))
				ck_abort_msg("record %u: data byte %zu is %u, not %u", id, j, p[j],
					     data_byte(id, j));
	}
	x->got++;
}

struct pair {
	int a, b;
	struct link *la, *lb;
};

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A socketpair, both ends non-blocking; buf > 0 sets SO_SNDBUF and
 * SO_RCVBUF on both. Links on both ends if links. */
static void pair_open(struct pair *p, int buf, int links)
{
	int fds[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	for (int i = 0; i < 2; i++) {
		set_nonblock(fds[i]);
		if (buf > 0) {
			ck_assert_int_eq(
			    setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf)), 0);
			ck_assert_int_eq(
			    setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)), 0);
		}
	}
	p->a = fds[0];
	p->b = fds[1];
	p->la = links ? link_new(p->a) : NULL;
	p->lb = links ? link_new(p->b) : NULL;
	if (links) {
		ck_assert_ptr_nonnull(p->la);
		ck_assert_ptr_nonnull(p->lb);
		ck_assert_int_eq(link_fd(p->la), p->a);
		ck_assert_int_eq(link_fd(p->lb), p->b);
	}
	if (links && auth_mode) {
		char ea[256] = "", eb[256] = "";
		int ra, rb;

		handshake(p->la, p->lb, auth_mode == 2, link_key, &ra, &rb, ea, eb);
		ck_assert_msg(ra == 0 && rb == 0, "handshake: %d %s / %d %s", ra, ea, rb, eb);
		ck_assert_int_eq(link_encrypted(p->la), auth_mode == 2);
		ck_assert_int_eq(link_encrypted(p->lb), auth_mode == 2);
		ck_assert_mem_eq(link_peer_id(p->lb), link_id, PV_KEY_BYTES);
	}
}

static void pair_close(struct pair *p)
{
	link_destroy(&p->la);
	link_destroy(&p->lb);
	ck_assert_ptr_null(p->la);
	ck_assert_ptr_null(p->lb);
}

/* Flushes p->la and reads p->lb until x has all it wants and nothing is
 * pending; pending must never grow. */
static void pump(struct pair *p, struct rx *x)
{
	char err[256];
	size_t last = link_pending(p->la);
	int stuck = 0;

	for (;;) {
		size_t before = x->got;
		int f = link_flush(p->la);

		ck_assert_int_ge(f, 0);
		ck_assert_int_eq(f == 0, link_pending(p->la) == 0);
		ck_assert_uint_le(link_pending(p->la), last);
		last = link_pending(p->la);
		err[0] = 0;
		ck_assert_msg(link_read(p->lb, check_record, x, err, sizeof(err)) == 0,
			      "link_read: %s", err);
		if (f == 0 && x->got == x->nwant)
			break;
		if (x->got == before && link_pending(p->la) == last) {
			struct pollfd pfd[2] = {{p->a, POLLOUT, 0}, {p->b, POLLIN, 0}};

			ck_assert_msg(++stuck < 1000, "no progress: %zu of %zu, %zu pending",
				      x->got, x->nwant, link_pending(p->la));
			poll(pfd, 2, 10);
		} else {
			stuck = 0;
		}
	}
	ck_assert_uint_eq(x->got, x->nwant);
	ck_assert_uint_eq(link_pending(p->la), 0);
	ck_assert_uint_eq(link_received(p->lb), x->nwant);
}

/* Writes len raw bytes to fd (non-blocking: waits for room). */
static void write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *q = buf;

	while (len > 0) {
		ssize_t w = write(fd, q, len);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pfd = {fd, POLLOUT, 0};

			ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
			continue;
		}
		ck_assert_int_gt(w, 0);
		q += w;
		len -= (size_t)w;
	}
}

/* --- link_parse --- */

START_TEST(parse_complete_records)
{
	uint8_t buf[8 + PV_MAX_HEADER + 5000];
	struct batch_record r;
	char err[128];
	size_t n, used;

	n = put_record(buf, 7, NO_DATA); /* no data */
	used = 0;
	ck_assert_int_eq(link_parse(buf, n, &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, n);
	ck_assert_ptr_eq(r.hdr, buf + 8);
	ck_assert_uint_eq(r.hdr_len, n - 8);
	ck_assert_ptr_null(r.data);
	ck_assert_uint_eq(r.data_len, 0);

	n = put_record(buf, 8, 4321); /* data */
	ck_assert_int_eq(link_parse(buf, n, &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, n);
	ck_assert_ptr_eq(r.hdr, buf + 8);
	ck_assert_uint_eq(r.hdr_len, n - 8 - 4321);
	ck_assert_ptr_eq(r.data, buf + 8 + r.hdr_len);
	ck_assert_uint_eq(r.data_len, 4321);
	ck_assert_uint_eq(r.data[4320], data_byte(8, 4320));

	n = put_record(buf, 9, 0); /* data of 0 bytes: not the same as none */
	ck_assert_int_eq(link_parse(buf, n, &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, n);
	ck_assert_ptr_nonnull(r.data);
	ck_assert_uint_eq(r.data_len, 0);

	/* bytes after the record are not part of it */
	n = put_record(buf, 10, 3);
	memset(buf + n, 0xee, 100);
	ck_assert_int_eq(link_parse(buf, n + 100, &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, n);
	ck_assert_uint_eq(r.data_len, 3);

	/* the largest header */
	put32(buf, PV_MAX_HEADER);
	put32(buf + 4, 0xffffffffu);
	memset(buf + 8, 'h', PV_MAX_HEADER);
	ck_assert_int_eq(link_parse(buf, 8 + PV_MAX_HEADER, &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, 8 + PV_MAX_HEADER);
	ck_assert_uint_eq(r.hdr_len, PV_MAX_HEADER);
}
END_TEST

START_TEST(parse_truncated_needs_more)
{
	uint8_t buf[8 + PV_MAX_HEADER + 5000];
	struct batch_record r;
	char err[128];
	size_t sizes[] = {NO_DATA, 0, 1, 4096}, used_any;

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n = put_record(buf, (unsigned)(20 + s), sizes[s]), used = 0;

		for (size_t len = 0; len < n; len++)
			ck_assert_msg(link_parse(buf, len, &r, &used, err, sizeof(err)) == 0,
				      "record of %zu bytes cut at %zu", n, len);
		ck_assert_int_eq(link_parse(buf, n, &r, &used, err, sizeof(err)), 1);
		ck_assert_uint_eq(used, n);
	}
	/* lengths within the limits but the bytes not there yet: wait */
	put32(buf, (uint32_t)make_hdr(buf + 8, 7));
	put32(buf + 4, LINK_DATA_MAX);
	ck_assert_int_eq(
	    link_parse(buf, 8 + make_hdr(buf + 8, 7) + 1000, &r, &used_any, err, sizeof(err)), 0);
}
END_TEST

/* One malformed record: refused with a reason as soon as its 8 length
 * bytes are there, whatever follows. */
static void expect_malformed(uint32_t hl, uint32_t dl)
{
	uint8_t buf[64];
	struct batch_record r;
	char err[128];
	size_t used;

	memset(buf, 'x', sizeof(buf));
	put32(buf, hl);
	put32(buf + 4, dl);
	for (size_t len = 8; len <= sizeof(buf); len += 8) {
		err[0] = 0;
		ck_assert_msg(link_parse(buf, len, &r, &used, err, sizeof(err)) == -1,
			      "hl %u dl %u accepted", hl, dl);
		ck_assert_msg(err[0] != 0, "hl %u dl %u: no reason", hl, dl);
	}
}

START_TEST(parse_refuses_malformed)
{
	expect_malformed(0, 0xffffffffu);
	expect_malformed(0, 10);
	expect_malformed(PV_MAX_HEADER + 1, 0xffffffffu);
	expect_malformed(0xffffffffu, 0xffffffffu);
	expect_malformed(0x80000000u, 0);
	expect_malformed(10, LINK_DATA_MAX + 1);
	expect_malformed(10, 0xfffffffeu);
	expect_malformed(PV_MAX_HEADER + 1, LINK_DATA_MAX + 1);
}
END_TEST

START_TEST(parse_back_to_back)
{
	size_t sizes[] = {NO_DATA, 17, 0, NO_DATA, 4096, 1};
	size_t n = sizeof(sizes) / sizeof(sizes[0]);
	uint8_t *buf = malloc(n * (8 + PV_MAX_HEADER + 4096));
	size_t len = 0, off = 0, ends[6];
	struct batch_record r;
	char err[128];

	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < n; i++) {
		len += put_record(buf + len, (unsigned)i, sizes[i]);
		ends[i] = len;
	}
	for (size_t i = 0; i < n; i++) {
		size_t used = 0;
		uint8_t hb[PV_MAX_HEADER];
		size_t hl = make_hdr(hb, (unsigned)i);

		ck_assert_int_eq(link_parse(buf + off, len - off, &r, &used, err, sizeof(err)), 1);
		ck_assert_uint_eq(off + used, ends[i]);
		ck_assert_uint_eq(r.hdr_len, hl);
		ck_assert_mem_eq(r.hdr, hb, hl);
		if (sizes[i] == NO_DATA) {
			ck_assert_ptr_null(r.data);
		} else {
			ck_assert_ptr_eq(r.data, r.hdr + hl);
			ck_assert_uint_eq(r.data_len, sizes[i]);
		}
		off += used;
	}
	ck_assert_uint_eq(off, len);
	ck_assert_int_eq(link_parse(buf + off, 0, &r, &off, err, sizeof(err)), 0);
	free(buf);
}
END_TEST

/* --- the link over a socketpair --- */

/* Queues want[0..n) on p->la (sent counts them) and pumps them over. */
static void send_all(struct pair *p, const size_t *want, size_t n)
{
	struct rx x = {want, n, 0};
	uint64_t sent = link_sent(p->la);

	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(queue_one(p->la, (unsigned)i, want[i]), 0);
	ck_assert_uint_eq(link_sent(p->la), sent + n);
	ck_assert_uint_eq(link_received(p->lb), 0);
	pump(p, &x);
}

START_TEST(roundtrip_no_data)
{
	struct pair p;
	size_t n = 5000, *want = malloc(n * sizeof(*want));
	size_t bytes = 0;
	uint8_t hb[PV_MAX_HEADER];

	ck_assert_ptr_nonnull(want);
	for (size_t i = 0; i < n; i++) {
		want[i] = NO_DATA;
		bytes += 8 + make_hdr(hb, (unsigned)i);
	}
	pair_open(&p, 0, 1);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(queue_one(p.la, (unsigned)i, NO_DATA), 0);
	ck_assert_uint_eq(link_pending(p.la), bytes); /* nothing written yet */
	{
		struct rx x = {want, n, 0};

		pump(&p, &x);
	}
	ck_assert_uint_eq(link_sent(p.la), n);
	pair_close(&p);
	free(want);
}
END_TEST

START_TEST(roundtrip_small_data)
{
	struct pair p;
	size_t n = 3000, *want = malloc(n * sizeof(*want));

	ck_assert_ptr_nonnull(want);
	for (size_t i = 0; i < n; i++)
		want[i] = i % 7 == 0 ? 4096 : (i * 131) % 4097; /* 0..4096 */
	pair_open(&p, 0, 1);
	data_freed = 0;
	send_all(&p, want, n);
	ck_assert_int_eq(data_freed, (int)n); /* every data message closed */
	pair_close(&p);
	free(want);
}
END_TEST

START_TEST(roundtrip_large_data)
{
	struct pair p;
	size_t want[] = {1u << 20, LINK_DATA_MAX, 4097, LINK_DATA_MAX, 65536, 1u << 20};
	size_t n = sizeof(want) / sizeof(want[0]);

	pair_open(&p, 0, 1);
	data_freed = 0;
	send_all(&p, want, n);
	ck_assert_int_eq(data_freed, (int)n);
	pair_close(&p);
}
END_TEST

/* Mixed sizes; the second time queued while earlier ones are still being
 * written (queueing behind a partly written queue). */
START_TEST(roundtrip_mixed)
{
	struct pair p;
	size_t n = 2000, *want = malloc(n * sizeof(*want));
	struct rx x = {NULL, 0, 0};
	char err[256];

	ck_assert_ptr_nonnull(want);
	for (size_t i = 0; i < n; i++) {
		switch (i % 10) {
		case 0:
		case 3:
		case 7:
			want[i] = NO_DATA;
			break;
		case 5:
			want[i] = i % 1000 == 5 ? LINK_DATA_MAX : 4097 + (i * 97) % 100000;
			break;
		case 9:
			want[i] = i % 300 == 9 ? (1u << 20) : 0;
			break;
		default:
			want[i] = (i * 53) % 4097;
		}
	}
	pair_open(&p, 0, 1);
	data_freed = 0;
	x.want = want;
	x.nwant = n;
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(queue_one(p.la, (unsigned)i, want[i]), 0);
		if (i % 37 == 0) { /* a little goes out now and then */
			ck_assert_int_ge(link_flush(p.la), 0);
			ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
		}
	}
	pump(&p, &x);
	ck_assert_uint_eq(link_sent(p.la), n);
	pair_close(&p);
	free(want);
}
END_TEST

/* A small socket buffer: flush leaves some queued, pending only falls and
 * reaches 0 once the reader drains it all, in order. */
START_TEST(partial_writes)
{
	struct pair p;
	size_t n = 400, *want = malloc(n * sizeof(*want));
	struct rx x;
	size_t last, total = 0;
	char err[256];
	int rounds = 0;

	ck_assert_ptr_nonnull(want);
	for (size_t i = 0; i < n; i++)
		want[i] = i % 3 == 0 ? NO_DATA : i % 3 == 1 ? (i * 71) % 4097 : 5000 + i * 11;
	pair_open(&p, 4096, 1);
	data_freed = 0;
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(queue_one(p.la, (unsigned)i, want[i]), 0);
	total = last = link_pending(p.la);
	ck_assert_int_eq(link_flush(p.la), 1); /* the socket is full */
	if (auth_mode < 2) /* (TLS: the first record may not be out whole) */
		ck_assert_uint_lt(link_pending(p.la), total);
	ck_assert_uint_gt(link_pending(p.la), 0);
	ck_assert_int_eq(link_flush(p.la), 1); /* again: still full, nothing lost */
	x.want = want;
	x.nwant = n;
	x.got = 0;
	last = link_pending(p.la);
	while (x.got < n) {
		int f;

		ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
		f = link_flush(p.la);
		ck_assert_int_ge(f, 0);
		ck_assert_uint_le(link_pending(p.la), last);
		ck_assert_int_eq(f == 0, link_pending(p.la) == 0);
		last = link_pending(p.la);
		ck_assert_int_lt(++rounds, 100000);
	}
	ck_assert_int_gt(rounds, 10); /* it did take many partial writes */
	ck_assert_uint_eq(link_pending(p.la), 0);
	ck_assert_int_eq(link_flush(p.la), 0);
	ck_assert_int_eq(data_freed, (int)(n - (n + 2) / 3));
	ck_assert_uint_eq(link_received(p.lb), n);
	pair_close(&p);
	free(want);
}
END_TEST

/* link_queue takes the data in every case: copied (small) or kept until
 * written (large), and closed when refused. */
START_TEST(queue_takes_the_data)
{
	struct pair p;
	uint8_t hb[PV_MAX_HEADER + 1];
	zmq_msg_t m;
	size_t want[] = {NO_DATA, 100, 100000, LINK_DATA_MAX};
	struct rx x = {want, 4, 0};
	struct batch_record r;
	char err[128];
	size_t pending, used;
	uint8_t raw[8 + PV_MAX_HEADER];
	ssize_t got = 0, n;

	memset(hb, 'h', sizeof(hb));
	pair_open(&p, 0, 1);
	data_freed = 0;
	ck_assert_int_eq(queue_one(p.la, 0, NO_DATA), 0);
	ck_assert_int_eq(queue_one(p.la, 1, 100), 0);
	ck_assert_int_eq(data_freed, 1); /* small: copied, released at once */
	ck_assert_int_eq(queue_one(p.la, 2, 100000), 0);
	ck_assert_int_eq(queue_one(p.la, 3, LINK_DATA_MAX), 0);
	ck_assert_int_eq(data_freed, 1); /* large: kept until written */

	/* refused: EMSGSIZE, the data closed, nothing queued */
	pending = link_pending(p.la);

	make_msg(&m, 9, 5000);
	errno = 0;
	ck_assert_int_eq(link_queue(p.la, hb, 0, &m), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	make_msg(&m, 9, 10);
	errno = 0;
	ck_assert_int_eq(link_queue(p.la, hb, PV_MAX_HEADER + 1, &m), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	errno = 0;
	ck_assert_int_eq(link_queue(p.la, hb, 0, NULL), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	make_msg(&m, 9, LINK_DATA_MAX + 1);
	errno = 0;
	ck_assert_int_eq(link_queue(p.la, hb, 10, &m), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_int_eq(data_freed, 4);
	ck_assert_uint_eq(link_pending(p.la), pending);
	ck_assert_uint_eq(link_sent(p.la), 4);

	pump(&p, &x); /* the refused ones never show up */
	ck_assert_int_eq(data_freed, 6);

	/* the largest header is fine: read it raw from the other end */
	ck_assert_int_eq(link_queue(p.la, hb, PV_MAX_HEADER, NULL), 0);
	ck_assert_int_eq(link_flush(p.la), 0);
	while (got < (ssize_t)sizeof(raw)) {
		struct pollfd pfd = {p.b, POLLIN, 0};

		ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
		n = read(p.b, raw + got, sizeof(raw) - (size_t)got);
		ck_assert_int_gt(n, 0);
		got += n;
	}
	ck_assert_int_eq(link_parse(raw, sizeof(raw), &r, &used, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, sizeof(raw));
	ck_assert_uint_eq(r.hdr_len, PV_MAX_HEADER);
	ck_assert_mem_eq(r.hdr, hb, PV_MAX_HEADER);
	ck_assert_ptr_null(r.data);
	pair_close(&p);
}
END_TEST

/* Past LINK_QUEUE_MAX bytes queued, link_queue refuses (ENOBUFS, the data
 * closed) until the queue drains; exactly LINK_QUEUE_MAX is allowed. */
START_TEST(queue_limit)
{
	struct pair p;
	size_t want[70], sum = 0, fill;
	unsigned n = 0;
	uint8_t hb[PV_MAX_HEADER];
	struct rx x = {want, 0, 0};

	pair_open(&p, 0, 1);
	data_freed = 0;
	for (;;) {
		size_t size = 8 + make_hdr(hb, n) + (1u << 20);

		ck_assert_uint_lt(n, 70);
		if (queue_one(p.la, n, 1u << 20) < 0) {
			ck_assert_int_eq(errno, ENOBUFS);
			ck_assert_uint_gt(sum + size, LINK_QUEUE_MAX);
			break;
		}
		want[n++] = 1u << 20;
		sum += size;
		ck_assert_uint_eq(link_pending(p.la), sum);
	}
	/* 64 of them are a little more than LINK_QUEUE_MAX (64 MiB) */
	ck_assert_uint_eq(n, (LINK_QUEUE_MAX >> 20) - 1);
	ck_assert_int_eq(data_freed, 1); /* the refused one */
	ck_assert_uint_eq(link_sent(p.la), n);
	/* what is left fits exactly; then not a byte more */
	fill = LINK_QUEUE_MAX - sum - 8 - make_hdr(hb, n);
	ck_assert_int_eq(queue_one(p.la, n, fill), 0);
	want[n++] = fill;
	ck_assert_uint_eq(link_pending(p.la), LINK_QUEUE_MAX);
	errno = 0;
	ck_assert_int_eq(queue_one(p.la, n, NO_DATA), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	errno = 0;
	ck_assert_int_eq(queue_one(p.la, n, 10), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert_int_eq(data_freed, 2);
	ck_assert_uint_eq(link_sent(p.la), n);
	/* the unbounded queue (answers, fused's requests) still takes it */
	{
		size_t hl = make_hdr(hb, n);

		ck_assert_int_eq(link_queue_unbounded(p.la, hb, hl, NULL), 0);
		want[n++] = NO_DATA;
		ck_assert_uint_eq(link_pending(p.la), LINK_QUEUE_MAX + 8 + hl);
		ck_assert_uint_eq(link_sent(p.la), n);
	}

	x.nwant = n;
	pump(&p, &x); /* drained: accepted again */
	ck_assert_int_eq(data_freed, (int)n + 1); /* the last one had no data */
	ck_assert_int_eq(queue_one(p.la, n, 1u << 20), 0);
	want[n++] = 1u << 20;
	ck_assert_int_eq(queue_one(p.la, n, NO_DATA), 0);
	want[n++] = NO_DATA;
	x.nwant = n;
	pump(&p, &x);
	ck_assert_uint_eq(link_sent(p.la), n);
	pair_close(&p);
}
END_TEST

/* The peer closes: what it sent before arrives, then -1 with a reason. */
START_TEST(peer_closes)
{
	struct pair p;
	size_t want[] = {NO_DATA, 1000, 20000, 0};
	struct rx x = {want, 4, 0};
	char err[256];
	int rc = 0, calls = 0;

	pair_open(&p, 1 << 20, 1);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(queue_one(p.la, i, want[i]), 0);
	while (link_flush(p.la) != 0) {
		struct pollfd pfd = {p.a, POLLOUT, 0};

		ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	}
	link_destroy(&p.la);
	ck_assert_ptr_null(p.la);
	while (rc == 0) {
		err[0] = 0;
		rc = link_read(p.lb, check_record, &x, err, sizeof(err));
		ck_assert_int_lt(++calls, 100);
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_msg(err[0] != 0, "no reason given");
	ck_assert_uint_eq(x.got, 4);
	ck_assert_uint_eq(link_received(p.lb), 4);
	pair_close(&p);
}
END_TEST

/* The peer closes in the middle of a record: the part is not delivered. */
START_TEST(peer_closes_mid_record)
{
	struct pair p;
	size_t want[] = {5, 3000};
	struct rx x = {want, 2, 0};
	uint8_t raw[2 * (8 + PV_MAX_HEADER + 3000)];
	size_t len, first;
	char err[256];

	pair_open(&p, 0, 0);
	p.lb = link_new(p.b);
	first = put_record(raw, 0, 5);
	len = first + put_record(raw + first, 1, 3000);
	write_all(p.a, raw, len - 100);
	ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
	ck_assert_uint_eq(x.got, 1);
	close(p.a);
	err[0] = 0;
	ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), -1);
	ck_assert_msg(err[0] != 0, "no reason given");
	ck_assert_uint_eq(x.got, 1);
	link_destroy(&p.lb);
}
END_TEST

/* A record with data over 64 KiB (read straight into its own message once
 * its header is in) cut off by the peer after its header and part of its
 * data: not delivered, -1 with a reason; destroying the link then frees
 * the part read (the sanitizer build checks for the leak). And one that
 * completes in many small writes is delivered once, byte for byte. */
START_TEST(big_record_cut_and_whole)
{
	size_t big = 300000, len, first;
	uint8_t *raw = malloc(2 * (8 + PV_MAX_HEADER + big));
	char err[256];

	ck_assert_ptr_nonnull(raw);
	for (int cut = 1; cut >= 0; cut--) {
		struct pair p;
		size_t want[] = {big, 7};
		struct rx x = {want, 2, 0};

		pair_open(&p, 0, 0);
		p.lb = link_new(p.b);
		first = put_record(raw, 0, big);
		len = first + put_record(raw + first, 1, 7);
		if (cut) {
			write_all(p.a, raw, first / 3);
			ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
			close(p.a);
			err[0] = 0;
			ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), -1);
			ck_assert_msg(err[0] != 0, "no reason given");
			ck_assert_uint_eq(x.got, 0);
			link_destroy(&p.lb);
			continue;
		}
		for (size_t off = 0; off < len; off += 4096) {
			size_t n = len - off < 4096 ? len - off : 4096;

			write_all(p.a, raw + off, n);
			ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
			ck_assert_uint_eq(x.got, off + n >= first ? (off + n >= len ? 2 : 1) : 0);
		}
		ck_assert_uint_eq(link_received(p.lb), 2);
		close(p.a);
		link_destroy(&p.lb);
	}
	free(raw);
}
END_TEST

/* Raw bytes with a malformed record after two good ones: both delivered,
 * then -1 with a reason; also when the bad one comes in a later read. */
START_TEST(malformed_stream)
{
	uint32_t bad[][2] = {{0, 0xffffffffu},
			     {0, 12},
			     {PV_MAX_HEADER + 1, 0xffffffffu},
			     {20, LINK_DATA_MAX + 1},
			     {0xffffffffu, 0xffffffffu}};

	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		for (int later = 0; later < 2; later++) {
			struct pair p;
			size_t want[] = {200, NO_DATA};
			struct rx x = {want, 2, 0};
			uint8_t raw[2 * (8 + PV_MAX_HEADER) + 200 + 64];
			size_t len;
			char err[256];

			pair_open(&p, 0, 0);
			p.lb = link_new(p.b);
			len = put_record(raw, 0, 200);
			len += put_record(raw + len, 1, NO_DATA);
			if (later) {
				write_all(p.a, raw, len);
				ck_assert_int_eq(
				    link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
				ck_assert_uint_eq(x.got, 2);
				len = 0;
			}
			put32(raw + len, bad[b][0]);
			put32(raw + len + 4, bad[b][1]);
			memset(raw + len + 8, 'z', 56);
			write_all(p.a, raw, len + 64);
			err[0] = 0;
			ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), -1);
			ck_assert_msg(err[0] != 0, "bad record %zu: no reason given", b);
			ck_assert_uint_eq(x.got, 2);
			ck_assert_uint_eq(link_received(p.lb), 2);
			close(p.a);
			link_destroy(&p.lb);
		}
	}
}
END_TEST

/* Records written one byte at a time: each delivered once, exactly when
 * its last byte is there. */
START_TEST(one_byte_at_a_time)
{
	struct pair p;
	size_t want[] = {300, NO_DATA, 0, 5000, NO_DATA};
	size_t n = sizeof(want) / sizeof(want[0]), ends[5], len = 0;
	struct rx x = {want, n, 0};
	uint8_t *raw = malloc(n * (8 + PV_MAX_HEADER) + 6000);
	char err[256];

	ck_assert_ptr_nonnull(raw);
	for (size_t i = 0; i < n; i++) {
		len += put_record(raw + len, (unsigned)i, want[i]);
		ends[i] = len;
	}
	pair_open(&p, 0, 0);
	p.lb = link_new(p.b);
	for (size_t k = 0; k < len; k++) {
		size_t done = 0;

		write_all(p.a, raw + k, 1);
		err[0] = 0;
		ck_assert_msg(link_read(p.lb, check_record, &x, err, sizeof(err)) == 0,
			      "byte %zu: %s", k, err);
		while (done < n && ends[done] <= k + 1)
			done++;
		ck_assert_uint_eq(x.got, done);
		/* and again with nothing new: nothing more */
		ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), 0);
		ck_assert_uint_eq(x.got, done);
	}
	ck_assert_uint_eq(x.got, n);
	ck_assert_uint_eq(link_received(p.lb), n);
	close(p.a);
	link_destroy(&p.lb);
	free(raw);
}
END_TEST

/* Both directions at once, each with its own counters. */
START_TEST(both_directions_and_counters)
{
	struct pair p, q;
	size_t want[200];
	struct rx ab = {want, 200, 0}, ba = {want, 100, 0};
	char err[256];
	int rounds = 0;

	for (size_t i = 0; i < 200; i++)
		want[i] = i % 4 == 0 ? NO_DATA : i % 4 == 1 ? 50 : i % 4 == 2 ? 70000 : 4096;
	pair_open(&p, 0, 1);
	ck_assert_uint_eq(link_sent(p.la), 0);
	ck_assert_uint_eq(link_received(p.la), 0);
	ck_assert_uint_eq(link_pending(p.la), 0);
	ck_assert_int_eq(link_flush(p.la), 0); /* nothing to write */
	ck_assert_int_eq(link_read(p.la, check_record, &ab, err, sizeof(err)), 0);
	ck_assert_uint_eq(ab.got, 0);
	for (unsigned i = 0; i < 200; i++)
		ck_assert_int_eq(queue_one(p.la, i, want[i]), 0);
	for (unsigned i = 0; i < 100; i++)
		ck_assert_int_eq(queue_one(p.lb, i, want[i]), 0);
	while (ab.got < 200 || ba.got < 100) {
		ck_assert_int_ge(link_flush(p.la), 0);
		ck_assert_int_ge(link_flush(p.lb), 0);
		ck_assert_int_eq(link_read(p.lb, check_record, &ab, err, sizeof(err)), 0);
		ck_assert_int_eq(link_read(p.la, check_record, &ba, err, sizeof(err)), 0);
		ck_assert_int_lt(++rounds, 100000);
	}
	ck_assert_uint_eq(link_sent(p.la), 200);
	ck_assert_uint_eq(link_received(p.lb), 200);
	ck_assert_uint_eq(link_sent(p.lb), 100);
	ck_assert_uint_eq(link_received(p.la), 100);
	ck_assert_uint_eq(link_pending(p.la), 0);
	ck_assert_uint_eq(link_pending(p.lb), 0);
	/* another link is not affected */
	pair_open(&q, 0, 1);
	ck_assert_uint_eq(link_sent(q.la), 0);
	ck_assert_uint_eq(link_received(q.lb), 0);
	pair_close(&q);
	pair_close(&p);
}
END_TEST

START_TEST(destroy)
{
	struct link *l = NULL;
	struct pair p;
	size_t want[50];
	struct rx x = {want, 50, 0};
	char err[256];
	uint8_t c;
	int calls = 0;

	link_destroy(&l); /* no link */
	ck_assert_ptr_null(l);
	link_destroy(NULL);

	/* nothing flushed: the data released, the socket closed */
	pair_open(&p, 0, 1);
	data_freed = 0;
	ck_assert_int_eq(queue_one(p.la, 0, 100000), 0);
	ck_assert_int_eq(queue_one(p.la, 1, NO_DATA), 0);
	ck_assert_int_eq(queue_one(p.la, 2, LINK_DATA_MAX), 0);
	ck_assert_int_eq(queue_one(p.la, 3, 10), 0);
	ck_assert_int_eq(data_freed, 1);
	link_destroy(&p.la);
	ck_assert_ptr_null(p.la);
	ck_assert_int_eq(data_freed, 3);
	ck_assert_int_eq(read(p.b, &c, 1), 0); /* end of stream */
	pair_close(&p);

	/* partly flushed */
	pair_open(&p, 4096, 1);
	data_freed = 0;
	for (unsigned i = 0; i < 50; i++) {
		want[i] = i % 2 ? 30000 : NO_DATA;
		ck_assert_int_eq(queue_one(p.la, i, want[i]), 0);
	}
	ck_assert_int_eq(link_flush(p.la), 1);
	link_destroy(&p.la);
	ck_assert_ptr_null(p.la);
	ck_assert_int_eq(data_freed, 25);
	/* what was written arrives, the rest does not, then the end */
	while (link_read(p.lb, check_record, &x, err, sizeof(err)) == 0)
		ck_assert_int_lt(++calls, 100);
	ck_assert_uint_lt(x.got, 50);
	pair_close(&p);
	pair_close(&p); /* again: both NULL */
}
END_TEST

/* A record larger than the receive buffer whose start fills that buffer
 * exactly on the last read a link_read call makes: the next call must
 * read on, not take a read of 0 bytes for the end of the stream. Fed
 * through a pipe (whose size can be raised without privileges) by the
 * callback: small records chain one read each, then the big one's first
 * prefix bytes. Swept over the number of reads before it and the prefix
 * size, so that it hits link.c's READS_MAX and RBUF_START whatever they
 * are (up to 16 reads, 512 KiB). */
struct chain {
	struct rx x;
	int wfd;
	const uint8_t *raw;
	const size_t *ends; /* end of record i in raw */
	size_t small, prefix, written;
};

static void chain_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct chain *c = arg;
	size_t to;

	check_record(&c->x, hdr, hdr_len, data);
	if (c->x.got < c->small) /* the next small record */
		to = c->ends[c->x.got];
	else if (c->x.got == c->small) /* the start of the big one */
		to = c->ends[c->small - 1] + c->prefix;
	else
		return;
	write_all(c->wfd, c->raw + c->written, to - c->written);
	c->written = to;
}

START_TEST(record_across_calls)
{
	size_t want[17], ends[17], len = 0;
	size_t big = 3u << 20;
	uint8_t *raw = malloc(16 * (8 + PV_MAX_HEADER) + 8 + PV_MAX_HEADER + big);
	size_t prefixes[] = {64u << 10, 128u << 10, 256u << 10, 512u << 10};

	ck_assert_ptr_nonnull(raw);
	for (size_t small = 1; small <= 16; small++) {
		for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
			struct chain c;
			struct link *l;
			int fds[2], calls = 0;
			char err[256];

			len = 0;
			for (size_t i = 0; i < small; i++) {
				want[i] = NO_DATA;
				len += put_record(raw + len, (unsigned)i, NO_DATA);
				ends[i] = len;
			}
			want[small] = big;
			len += put_record(raw + len, (unsigned)small, big);
			ends[small] = len;

			ck_assert_int_eq(pipe2(fds, O_NONBLOCK), 0);
			if (fcntl(fds[1], F_SETPIPE_SZ, 1 << 20) < (1 << 20)) {
				close(fds[0]);
				close(fds[1]);
				free(raw);
				return; /* pipe-max-size too small: nothing to test */
			}
			memset(&c, 0, sizeof(c));
			c.x.want = want;
			c.x.nwant = small + 1;
			c.wfd = fds[1];
			c.raw = raw;
			c.ends = ends;
			c.small = small;
			c.prefix = prefixes[k];
			c.written = ends[0];
			l = link_new(fds[0]);
			ck_assert_ptr_nonnull(l);
			write_all(c.wfd, raw, c.written);
			while (c.x.got < small + 1) {
				size_t more = len - c.written;

				err[0] = 0;
				ck_assert_msg(link_read(l, chain_record, &c, err, sizeof(err)) == 0,
					      "%zu small records, %zu KiB: %s", small,
					      c.prefix >> 10, err);
				if (c.x.got == small + 1)
					break;
				if (c.x.got == small && more > 0) { /* the rest of the big one */
					if (more > (512u << 10))
						more = 512u << 10;
					write_all(c.wfd, raw + c.written, more);
					c.written += more;
				}
				ck_assert_int_lt(++calls, 1000);
			}
			ck_assert_uint_eq(c.written, len);
			ck_assert_uint_eq(link_received(l), small + 1);
			close(fds[1]);
			link_destroy(&l);
		}
	}
	free(raw);
}
END_TEST

/* --- what a record may make the receiver hold (link.h: link_admit, link
 * memory) --- */

/* link_admit: data up to LINK_ADMIT_MIN needs nothing; more needs a header
 * that decodes, whose op carries data and whose length agrees. */
START_TEST(admit_rule)
{
	uint8_t h[PV_MAX_HEADER];
	char err[256];
	const size_t big = 8u << 20;
	size_t n;

	ck_assert_int_eq(link_admit("junk", 4, LINK_ADMIT_MIN, err, sizeof(err)), 0);
	err[0] = 0;
	ck_assert_int_eq(link_admit("junk", 4, LINK_ADMIT_MIN + 1, err, sizeof(err)), -1);
	ck_assert_msg(err[0] != 0, "no reason");
	n = make_op_hdr(h, PV_OP_WRITE, (uint32_t)big);
	ck_assert_int_eq(link_admit(h, n, big, err, sizeof(err)), 0);
	ck_assert_int_eq(link_admit(h, n, big - 1, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_WRITE, 4096);
	ck_assert_int_eq(link_admit(h, n, big, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_WRITE, 0);
	ck_assert_int_eq(link_admit(h, n, big, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_READ, 1u << 20);
	ck_assert_int_eq(link_admit(h, n, 1u << 20, err, sizeof(err)), 0);
	ck_assert_int_eq(link_admit(h, n, 2u << 20, err, sizeof(err)), -1);
	/* over PV_MAX_IO: the header itself is refused */
	n = make_op_hdr(h, PV_OP_WRITE, PV_MAX_IO + 1);
	ck_assert_int_eq(link_admit(h, n, PV_MAX_IO + 1, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_TRIM, 1u << 20);
	ck_assert_int_eq(link_admit(h, n, 1u << 20, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_FLUSH, 0);
	ck_assert_int_eq(link_admit(h, n, 1u << 20, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_BATCH, 3);
	ck_assert_int_eq(link_admit(h, n, BATCH_BYTES_MAX, err, sizeof(err)), 0);
	ck_assert_int_eq(link_admit(h, n, BATCH_BYTES_MAX + 1, err, sizeof(err)), -1);
	n = make_op_hdr(h, PV_OP_CATALOG, 0);
	ck_assert_int_eq(link_admit(h, n, PV_MAX_BODY, err, sizeof(err)), 0);
	/* an unknown op, or another major version: refused */
	n = make_op_hdr(h, 999, 0);
	ck_assert_int_eq(link_admit(h, n, 1u << 20, err, sizeof(err)), -1);
	{
		Pv__Header v;

		wire_header_init(&v);
		v.version = (PV_PROTO_MAJOR + 1) << 16;
		v.op = PV_OP_CATALOG;
		n = wire_header_pack(&v, h);
		ck_assert_int_eq(link_admit(h, n, 1u << 20, err, sizeof(err)), -1);
	}
}
END_TEST

/* The 8 length bytes and the header of a record with data_len bytes of data
 * (none of the data). Returns the size. */
static size_t put_head(uint8_t *out, const uint8_t *hdr, size_t hl, uint32_t data_len)
{
	put32(out, (uint32_t)hl);
	put32(out + 4, data_len);
	memcpy(out + 8, hdr, hl);
	return 8 + hl;
}

/* A record announcing 8 MiB of data after a header that does not decode, or
 * whose length disagrees with the data, is refused as soon as the header is
 * in: link_parse says -1, link_read ends the link without waiting for (or
 * taking memory for) the data. A good header is admitted and its memory
 * counted as link memory until the record is delivered. */
START_TEST(refused_before_allocation)
{
	uint8_t raw[8 + PV_MAX_HEADER + 1000], h[PV_MAX_HEADER];
	const uint32_t big = 8u << 20;
	struct batch_record r;
	size_t used, n, hl;
	char err[256];

	for (int k = 0; k < 4; k++) {
		struct pair p;
		size_t nothing[] = {0};
		struct rx x = {nothing, 0, 0};

		if (k == 0) {
			memset(h, 0xff, 40); /* field 31, wire type 7: no pv.Header */
			hl = 40;
		} else if (k == 1) {
			hl = make_op_hdr(h, PV_OP_WRITE, 4096); /* says 4 KiB */
		} else if (k == 2) {
			hl = make_op_hdr(h, PV_OP_READ, big / 2);
		} else {
			hl = make_op_hdr(h, PV_OP_TRIM, big);
		}
		n = put_head(raw, h, hl, big);
		memset(raw + n, 'd', 1000);
		err[0] = 0;
		ck_assert_int_eq(link_parse(raw, n, &r, &used, err, sizeof(err)), -1);
		ck_assert_msg(err[0] != 0, "case %d: no reason", k);
		pair_open(&p, 0, 0);
		p.lb = link_new(p.b);
		write_all(p.a, raw, n + 1000);
		err[0] = 0;
		ck_assert_msg(link_read(p.lb, check_record, &x, err, sizeof(err)) == -1,
			      "case %d: a record of 8 MiB with a bad header was taken", k);
		ck_assert_msg(err[0] != 0, "case %d: no reason", k);
		ck_assert_uint_eq(link_mem_held(), 0);
		ck_assert_uint_eq(x.got, 0);
		link_destroy(&p.lb);
		close(p.a);
	}
	/* a WRITE of 8 MiB that says so: admitted, its memory held */
	{
		struct pair p;
		size_t nothing[] = {0};
		struct rx x = {nothing, 0, 0};

		hl = make_op_hdr(h, PV_OP_WRITE, big);
		n = put_head(raw, h, hl, big);
		ck_assert_int_eq(link_parse(raw, n, &r, &used, err, sizeof(err)), 0);
		pair_open(&p, 0, 0);
		p.lb = link_new(p.b);
		write_all(p.a, raw, n + 1000);
		ck_assert_msg(link_read(p.lb, check_record, &x, err, sizeof(err)) == 0, "%s", err);
		ck_assert_uint_eq(link_mem_held(), big);
		ck_assert_uint_eq(link_mem(p.lb), big);
		ck_assert_int_eq(link_partial(p.lb), 1);
		link_destroy(&p.lb);
		ck_assert_uint_eq(link_mem_held(), 0);
		close(p.a);
	}
}
END_TEST

struct count {
	size_t n, bytes;
};

static void count_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct count *c = arg;

	(void)hdr;
	(void)hdr_len;
	c->n++;
	c->bytes += data ? zmq_msg_size(data) : 0;
}

/* Sends the rest of a record (n bytes) through p while reading it. */
static void finish(struct pair *p, size_t n, struct count *c)
{
	static uint8_t chunk[65536];
	char err[256];

	memset(chunk, 'z', sizeof(chunk));
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
		ssize_t w = write(p->a, chunk, k);

		if (w > 0)
			n -= (size_t)w;
		ck_assert_msg(link_read(p->lb, count_record, c, err, sizeof(err)) == 0, "%s", err);
	}
	for (int i = 0; i < 100 && link_partial(p->lb); i++)
		ck_assert_msg(link_read(p->lb, count_record, c, err, sizeof(err)) == 0, "%s", err);
}

/* With link memory bounded at 3 MiB, a second record of 2 MiB while one
 * holds 2 MiB waits: nothing of it is read past its header, link memory
 * stays at 2 MiB, the link asks not to be polled; when the first record
 * completes the second goes on and completes. A link holding memory that
 * is destroyed gives it back (and link_mem_trim trims once); a waiting
 * link whose peer closes ends with a reason. */
START_TEST(mem_bound_waits)
{
	const uint32_t two = 2u << 20;
	uint8_t raw[8 + PV_MAX_HEADER], h[PV_MAX_HEADER];
	struct pair a, b, c;
	struct count ca = {0, 0}, cb = {0, 0};
	size_t n, hl = make_op_hdr(h, PV_OP_WRITE, two);
	char err[256];

	link_mem_limit(3u << 20);
	n = put_head(raw, h, hl, two);
	pair_open(&a, 0, 0);
	a.lb = link_new(a.b);
	pair_open(&b, 0, 0);
	b.lb = link_new(b.b);
	write_all(a.a, raw, n);
	ck_assert_int_eq(link_read(a.lb, count_record, &ca, err, sizeof(err)), 0);
	ck_assert_uint_eq(link_mem_held(), two);
	ck_assert_int_eq(link_input_wanted(a.lb), 1);
	write_all(b.a, raw, n);
	ck_assert_int_eq(link_read(b.lb, count_record, &cb, err, sizeof(err)), 0);
	ck_assert_int_eq(link_waiting(b.lb), 1);
	write_all(b.a, "0123456789", 10);
	ck_assert_int_eq(link_input_wanted(b.lb), 0);
	ck_assert_uint_eq(link_mem(b.lb), 0);
	ck_assert_uint_eq(link_mem_held(), two);
	/* called anyway: it reads nothing (the 10 bytes stay in the socket) */
	ck_assert_int_eq(link_read(b.lb, count_record, &cb, err, sizeof(err)), 0);
	{
		int q = 0;

		ck_assert_int_eq(ioctl(b.b, FIONREAD, &q), 0);
		ck_assert_int_eq(q, 10);
	}
	finish(&a, two, &ca);
	ck_assert_uint_eq(ca.n, 1);
	ck_assert_uint_eq(ca.bytes, two);
	ck_assert_uint_eq(link_mem_held(), 0);
	ck_assert_int_eq(link_input_wanted(b.lb), 1);
	ck_assert_int_eq(link_read(b.lb, count_record, &cb, err, sizeof(err)), 0);
	ck_assert_int_eq(link_waiting(b.lb), 0);
	ck_assert_uint_eq(link_mem_held(), two);
	finish(&b, two - 10, &cb);
	ck_assert_uint_eq(cb.n, 1);
	ck_assert_uint_eq(cb.bytes, two);
	ck_assert_uint_eq(link_mem_held(), 0);
	link_mem_trim();

	/* destroyed while holding: given back, trimmed once */
	pair_open(&c, 0, 0);
	c.lb = link_new(c.b);
	write_all(c.a, raw, n);
	ck_assert_int_eq(link_read(c.lb, count_record, &cb, err, sizeof(err)), 0);
	ck_assert_uint_eq(link_mem_held(), two);
	ck_assert_int_eq(link_mem_trim(), 0);
	link_destroy(&c.lb);
	ck_assert_uint_eq(link_mem_held(), 0);
	ck_assert_int_eq(link_mem_trim(), 1);
	ck_assert_int_eq(link_mem_trim(), 0);
	close(c.a);

	/* a waiting link whose peer goes away ends */
	write_all(a.a, raw, n);
	ck_assert_int_eq(link_read(a.lb, count_record, &ca, err, sizeof(err)), 0);
	write_all(b.a, raw, n);
	ck_assert_int_eq(link_read(b.lb, count_record, &cb, err, sizeof(err)), 0);
	ck_assert_int_eq(link_waiting(b.lb), 1);
	close(b.a);
	err[0] = 0;
	ck_assert_int_eq(link_read(b.lb, count_record, &cb, err, sizeof(err)), -1);
	ck_assert_msg(err[0] != 0, "no reason");
	link_destroy(&b.lb);
	link_destroy(&a.lb);
	close(a.a);
	ck_assert_uint_eq(link_mem_held(), 0);
	link_mem_limit(0);
}
END_TEST

/* TLS and link memory: a 2 MiB record that waits for memory behind a
 * small one (so that TLS records and the receive buffer do not line up:
 * GnuTLS may hold decrypted bytes while it waits, link_buffered) goes on
 * once memory is free, with only what link_read takes (the owner calls it
 * again when link_buffered and link_input_wanted say so), and arrives
 * whole. */
START_TEST(tls_mem_wait)
{
	const uint32_t two = 2u << 20;
	uint8_t raw[8 + PV_MAX_HEADER], h[PV_MAX_HEADER];
	struct pair a, b;
	struct count ca = {0, 0}, cb = {0, 0};
	size_t n, hl = make_op_hdr(h, PV_OP_WRITE, two);
	char err[256];
	zmq_msg_t m;
	int rounds = 0;

	link_mem_limit(3u << 20);
	n = put_head(raw, h, hl, two);
	auth_mode = 0;
	pair_open(&a, 0, 0);
	a.lb = link_new(a.b);
	write_all(a.a, raw, n);
	ck_assert_int_eq(link_read(a.lb, count_record, &ca, err, sizeof(err)), 0);
	ck_assert_uint_eq(link_mem_held(), two);
	auth_mode = 2;
	pair_open(&b, 0, 1);
	ck_assert_int_eq(queue_one(b.la, 0, 777), 0);
	make_msg(&m, 1, two);
	ck_assert_int_eq(link_queue(b.la, h, hl, &m), 0);
	while (!link_waiting(b.lb)) {
		ck_assert_int_ge(link_flush(b.la), 0);
		ck_assert_msg(link_read(b.lb, count_record, &cb, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_lt(++rounds, 10000);
	}
	ck_assert_uint_eq(cb.n, 1); /* the small one */
	ck_assert_uint_eq(link_mem_held(), two);
	ck_assert_int_eq(link_input_wanted(b.lb), 0);
	finish(&a, two - (n - 8 - hl), &ca);
	ck_assert_uint_eq(ca.n, 1);
	ck_assert_int_eq(link_input_wanted(b.lb), 1);
	while (cb.n < 2) {
		ck_assert_int_ge(link_flush(b.la), 0);
		ck_assert_msg(link_read(b.lb, count_record, &cb, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_lt(++rounds, 100000);
	}
	ck_assert_uint_eq(cb.bytes, 777 + two);
	ck_assert_int_eq(link_buffered(b.lb), 0);
	ck_assert_uint_eq(link_mem_held(), 0);
	pair_close(&b);
	link_destroy(&a.lb);
	close(a.a);
	link_mem_limit(0);
	auth_mode = 0;
}
END_TEST

/* --- the handshake (linkauth.h) over a socketpair --- */

START_TEST(handshake_wrong_key)
{
	struct pair p;
	uint8_t other[PV_KEY_BYTES] = {42};
	char ea[256] = "", eb[256] = "";
	int ra, rb;

	pair_open(&p, 0, 1);
	handshake(p.la, p.lb, 0, other, &ra, &rb, ea, eb);
	ck_assert_int_eq(ra, -1); /* the acceptor could not prove the key */
	ck_assert_ptr_nonnull(strstr(ea, "does not hold"));
	ck_assert_int_eq(link_refused(p.la), 0);
	ck_assert_int_eq(rb, 1); /* waits for the proof, then sees the connector go */
	link_destroy(&p.la);
	ck_assert_int_eq(link_handshake(p.lb, lookup_key, (void *)other, eb, sizeof(eb)), -1);
	ck_assert_ptr_nonnull(strstr(eb, "closed"));
	pair_close(&p);
}
END_TEST

START_TEST(handshake_refused)
{
	struct pair p;
	char ea[256] = "", eb[256] = "";
	int ra = 1, rb = 1;

	pair_open(&p, 0, 1);
	link_auth_connect(p.la, link_key, link_key, 1); /* an id the lookup does not know */
	link_auth_accept(p.lb, 0);
	for (int i = 0; i < 100 && (ra == 1 || rb == 1); i++) {
		if (ra == 1)
			ra = link_handshake(p.la, NULL, NULL, ea, sizeof(ea));
		if (rb == 1)
			rb = link_handshake(p.lb, lookup_key, (void *)link_key, eb, sizeof(eb));
	}
	ck_assert_int_eq(rb, -1);
	ck_assert_str_eq(eb, "unknown key");
	ck_assert_int_eq(ra, -1);
	ck_assert_int_eq(link_refused(p.la), 1);
	ck_assert_str_eq(ea, "refused: unknown key");
	pair_close(&p);
}
END_TEST

/* Garbage, or records without a handshake: refused at the first bytes,
 * nothing delivered; records queued on a link still in its handshake do
 * not go out. */
START_TEST(handshake_garbage)
{
	struct pair p;
	char err[256];
	uint8_t hb[PV_MAX_HEADER], rec[8 + PV_MAX_HEADER];
	size_t hl = make_hdr(hb, 1);
	struct rx x = {NULL, 0, 0};

	pair_open(&p, 0, 1);
	link_auth_accept(p.lb, 0);
	put32(rec, (uint32_t)hl);
	put32(rec + 4, 0xffffffffu);
	memcpy(rec + 8, hb, hl);
	write_all(p.a, rec, 8 + hl);
	ck_assert_int_eq(link_handshake(p.lb, lookup_key, (void *)link_key, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a link handshake"));
	ck_assert_int_eq(link_read(p.lb, check_record, &x, err, sizeof(err)), -1);
	ck_assert_uint_eq(x.got, 0);
	pair_close(&p);

	pair_open(&p, 0, 1);
	link_auth_accept(p.lb, 0);
	write_all(p.a, "PVLA\1\1\0\7garbage", 15);
	ck_assert_int_eq(link_handshake(p.lb, lookup_key, (void *)link_key, err, sizeof(err)), -1);
	pair_close(&p);

	/* half a hello: waits (the owner's clock bounds it) */
	pair_open(&p, 0, 1);
	link_auth_accept(p.lb, 0);
	ck_assert_uint_gt(link_handshake_started(p.lb), 0);
	write_all(p.a, "PVLA\1\1\0", 7);
	ck_assert_int_eq(link_handshake(p.lb, lookup_key, (void *)link_key, err, sizeof(err)), 1);
	ck_assert_int_eq(link_handshake_events(p.lb), ZMQ_POLLIN);
	ck_assert_int_eq(link_handshaking(p.lb), 1);
	pair_close(&p);

	/* a connector's records wait for the handshake */
	pair_open(&p, 0, 1);
	link_auth_connect(p.la, link_id, link_key, 0);
	ck_assert_int_eq(queue_one(p.la, 1, NO_DATA), 0);
	ck_assert_int_eq(link_flush(p.la), 1);
	{
		uint8_t b[64];

		ck_assert_int_eq(read(p.b, b, sizeof(b)), -1); /* nothing was written */
		ck_assert_int_eq(errno, EAGAIN);
	}
	pair_close(&p);
}
END_TEST

static Suite *link_suite(void)
{
	Suite *s = suite_create("link");
	TCase *parse = tcase_create("parse");
	TCase *stream = tcase_create("stream");

	tcase_add_test(parse, parse_complete_records);
	tcase_add_test(parse, parse_truncated_needs_more);
	tcase_add_test(parse, parse_refuses_malformed);
	tcase_add_test(parse, parse_back_to_back);
	tcase_set_timeout(stream, 60);
	tcase_add_test(stream, roundtrip_no_data);
	tcase_add_test(stream, roundtrip_small_data);
	tcase_add_test(stream, roundtrip_large_data);
	tcase_add_test(stream, roundtrip_mixed);
	tcase_add_test(stream, partial_writes);
	tcase_add_test(stream, queue_takes_the_data);
	tcase_add_test(stream, queue_limit);
	tcase_add_test(stream, peer_closes);
	tcase_add_test(stream, peer_closes_mid_record);
	tcase_add_test(stream, big_record_cut_and_whole);
	tcase_add_test(stream, malformed_stream);
	tcase_add_test(stream, one_byte_at_a_time);
	tcase_add_test(stream, both_directions_and_counters);
	tcase_add_test(stream, destroy);
	tcase_add_test(stream, record_across_calls);
	tcase_add_test(stream, admit_rule);
	tcase_add_test(stream, refused_before_allocation);
	tcase_add_test(stream, mem_bound_waits);
	suite_add_tcase(s, parse);
	suite_add_tcase(s, stream);
	/* the same streams after the handshake, then with TLS */
	for (int mode = 1; mode <= 2; mode++) {
		TCase *tc = tcase_create(mode == 1 ? "auth" : "tls");

		tcase_set_timeout(tc, 60);
		tcase_add_checked_fixture(tc, mode == 1 ? set_auth : set_tls, set_plain);
		tcase_add_test(tc, roundtrip_no_data);
		tcase_add_test(tc, roundtrip_small_data);
		tcase_add_test(tc, roundtrip_large_data);
		tcase_add_test(tc, roundtrip_mixed);
		tcase_add_test(tc, partial_writes);
		tcase_add_test(tc, peer_closes);
		tcase_add_test(tc, both_directions_and_counters);
		suite_add_tcase(s, tc);
	}
	{
		TCase *hs = tcase_create("handshake");

		tcase_add_test(hs, handshake_wrong_key);
		tcase_add_test(hs, handshake_refused);
		tcase_add_test(hs, handshake_garbage);
		tcase_add_test(hs, tls_mem_wait);
		suite_add_tcase(s, hs);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(link_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN); /* as peerd: a write to a closed peer fails */
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
