/* batch.c: the BATCH payload codec and the cork that fills it (batch.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

#define CORK_DESTS 64

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

/* Reads the record at *off; 1 and fills r, 0 at the end, -1 (reason in
 * err) if it does not fit. */
static int record_at(const uint8_t *b, size_t len, size_t *off, struct batch_record *r, char *err,
		     size_t errlen)
{
	uint32_t hl, dl;
	size_t rest = len - *off, need;

	if (*off == len)
		return 0;
	if (rest < 8) {
		snprintf(err, errlen, "record at byte %zu: %zu bytes, less than its 8-byte prefix",
			 *off, rest);
		return -1;
	}
	hl = get32(b + *off);
	dl = get32(b + *off + 4);
	if (hl == 0 || hl > PV_MAX_HEADER) {
		snprintf(err, errlen, "record at byte %zu: header of %u bytes (1..%d)", *off, hl,
			 PV_MAX_HEADER);
		return -1;
	}
	if (dl != BATCH_NO_DATA && dl > PV_MAX_IO) {
		snprintf(err, errlen, "record at byte %zu: data of %u bytes over %u", *off, dl,
			 PV_MAX_IO);
		return -1;
	}
	need = 8 + (size_t)hl + (dl == BATCH_NO_DATA ? 0 : dl);
	if (need > rest) {
		snprintf(err, errlen, "record at byte %zu: needs %zu bytes, %zu left", *off, need,
			 rest);
		return -1;
	}
	r->hdr = b + *off + 8;
	r->hdr_len = hl;
	r->data = dl == BATCH_NO_DATA ? NULL : r->hdr + hl;
	r->data_len = dl == BATCH_NO_DATA ? 0 : dl;
	*off += need;
	return 1;
}

int batch_check(const void *buf, size_t len, char *err, size_t errlen)
{
	struct batch_record r;
	size_t off = 0;
	int n = 0, rc;

	if (!buf || len == 0) {
		snprintf(err, errlen, "empty batch");
		return -1;
	}
	while ((rc = record_at(buf, len, &off, &r, err, errlen)) == 1) {
		if (++n > BATCH_RECORDS_MAX) {
			snprintf(err, errlen, "more than %d records", BATCH_RECORDS_MAX);
			return -1;
		}
	}
	return rc < 0 ? -1 : n;
}

int batch_next(const void *buf, size_t len, size_t *off, struct batch_record *r)
{
	char err[128];

	return record_at(buf, len, off, r, err, sizeof(err)) == 1;
}

size_t batch_put(uint8_t *buf, const void *hdr, size_t hdr_len, const void *data, size_t data_len,
		 int has_data)
{
	put32(buf, (uint32_t)hdr_len);
	put32(buf + 4, has_data ? (uint32_t)data_len : BATCH_NO_DATA);
	memcpy(buf + 8, hdr, hdr_len);
	if (has_data && data_len)
		memcpy(buf + 8 + hdr_len, data, data_len);
	return batch_record_size(hdr_len, has_data ? data_len : 0);
}

/* A BATCH message shared by the record messages made from it: the last
 * one to go (on any thread: ZeroMQ frees a sent message in its IO thread)
 * closes it. */
struct hold {
	zmq_msg_t msg;
	atomic_int refs;
};

static void hold_unref(void *data, void *hint)
{
	struct hold *b = hint;

	(void)data;
	if (atomic_fetch_sub(&b->refs, 1) == 1) {
		zmq_msg_close(&b->msg);
		free(b);
	}
}

int batch_each(zmq_msg_t *payload, batch_record_fn fn, void *arg, char *err, size_t errlen)
{
	const uint8_t *b = payload ? zmq_msg_data(payload) : NULL;
	size_t len = payload ? zmq_msg_size(payload) : 0, off = 0;
	struct batch_record r;
	struct hold *hold;
	int n = batch_check(b, len, err, errlen), done = 0;

	if (n < 0)
		return -1;
	hold = malloc(sizeof(*hold));
	if (!hold) {
		snprintf(err, errlen, "out of memory for %d records", n);
		return -2;
	}
	zmq_msg_init(&hold->msg);
	zmq_msg_copy(&hold->msg, payload); /* shares the buffer (a reference) */
	atomic_init(&hold->refs, 1);	   /* this function's own */
	b = zmq_msg_data(&hold->msg);	   /* (the same bytes) */
	while (batch_next(b, len, &off, &r)) {
		zmq_msg_t d;

		if (r.data) {
			atomic_fetch_add(&hold->refs, 1);
			if (zmq_msg_init_data(&d, (void *)r.data, r.data_len, hold_unref, hold) <
			    0) {
				atomic_fetch_sub(&hold->refs, 1);
				snprintf(err, errlen, "out of memory after %d of %d records", done,
					 n);
				n = -2;
				break;
			}
		}
		fn(arg, r.hdr, r.hdr_len, r.data ? &d : NULL);
		if (r.data)
			zmq_msg_close(&d);
		done++;
	}
	hold_unref(NULL, hold);
	return n;
}

/* ---- the cork ---------------------------------------------------------- */

/* What one round queued for one destination. The records are in buf; the
 * first record's data stays in first_data (not copied) while it is the
 * only one, so a lone message goes out exactly as without a cork. */
struct dest {
	void *sock;
	uint8_t ident[PV_MAX_IDENTITY];
	size_t ident_len;
	unsigned count;
	uint8_t *buf;
	size_t len, cap;
	zmq_msg_t first_data;
	int first_has_data;
};

struct batch_cork {
	struct dest d[CORK_DESTS];
	size_t n;
	uint64_t batches, records, dropped;
	struct batch_drop drops[BATCH_DROPS_MAX]; /* a ring: head, count */
	size_t drop_head, ndrops;
};

/* Keeps one refused message (its header) for batch_cork_next_drop. */
static void note_drop(struct batch_cork *k, void *sock, const void *hdr, size_t hdr_len)
{
	Pv__Header *h = NULL;
	char err[64];
	struct batch_drop *d;

	k->dropped++;
	if (wire_header_decode(hdr, hdr_len, &h, err, sizeof(err)) != PV_ST_OK)
		return;
	if (k->ndrops == BATCH_DROPS_MAX) { /* the oldest is only counted */
		k->drop_head = (k->drop_head + 1) % BATCH_DROPS_MAX;
		k->ndrops--;
	}
	d = &k->drops[(k->drop_head + k->ndrops++) % BATCH_DROPS_MAX];
	d->sock = sock;
	d->req_id = h->req_id;
	d->hops = h->hops;
	wire_header_free(h);
}

/* note_drop for every record of buf. */
static void dropped(struct batch_cork *k, void *sock, const uint8_t *buf, size_t len)
{
	struct batch_record r;
	size_t off = 0;

	while (batch_next(buf, len, &off, &r))
		note_drop(k, sock, r.hdr, r.hdr_len);
}

int batch_cork_next_drop(struct batch_cork *k, struct batch_drop *d)
{
	if (!k || !k->ndrops)
		return 0;
	*d = k->drops[k->drop_head];
	k->drop_head = (k->drop_head + 1) % BATCH_DROPS_MAX;
	k->ndrops--;
	return 1;
}

struct batch_cork *batch_cork_new(void)
{
	return calloc(1, sizeof(struct batch_cork));
}

static void free_buf(void *data, void *hint)
{
	(void)hint;
	free(data);
}

static void dest_send(struct batch_cork *k, struct dest *d)
{
	const void *ident = d->ident_len ? d->ident : NULL;

	if (d->count == 1) {
		/* alone: [header][data?] exactly as it was queued */
		if (wire_send_packed(d->sock, ident, d->ident_len, d->buf + 8, get32(d->buf),
				     d->first_has_data ? &d->first_data : NULL) < 0)
			note_drop(k, d->sock, d->buf + 8, get32(d->buf));
	} else {
		uint8_t hb[PV_MAX_HEADER];
		Pv__Header bh;
		zmq_msg_t m;
		size_t hl;

		wire_header_init(&bh);
		bh.op = PV_OP_BATCH;
		bh.length = d->count;
		hl = pv__header__pack(&bh, hb); /* a bare header: a few bytes */
		if (zmq_msg_init_data(&m, d->buf, d->len, free_buf, NULL) < 0) {
			dropped(k, d->sock, d->buf, d->len);
		} else {
			d->buf = NULL; /* the message owns it now */
			d->cap = 0;
			if ((ident && zmq_send(d->sock, ident, d->ident_len,
					       ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
			    zmq_send(d->sock, hb, hl, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
			    zmq_msg_send(&m, d->sock, ZMQ_DONTWAIT) < 0) {
				dropped(k, d->sock, zmq_msg_data(&m), zmq_msg_size(&m));
				zmq_msg_close(&m);
			} else {
				k->batches++;
				k->records += d->count;
			}
		}
	}
	d->count = 0;
	d->len = 0;
	d->first_has_data = 0;
}

static void dest_release(struct dest *d)
{
	free(d->buf);
	d->buf = NULL;
	d->cap = 0;
}

void batch_cork_flush(struct batch_cork *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++) {
		if (k->d[i].count)
			dest_send(k, &k->d[i]);
		/* keep a buffer only while it is small; the next round starts
		 * a new one */
		if (k->d[i].cap > (256u << 10))
			dest_release(&k->d[i]);
	}
	/* destinations are found again next round; keep their buffers */
	for (size_t i = 0; i < k->n; i++)
		if (k->d[i].count == 0 && !k->d[i].buf)
			k->d[i].sock = NULL;
}

void batch_cork_flush_socket(struct batch_cork *k, void *sock)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++)
		if (k->d[i].sock == sock) {
			if (k->d[i].count)
				dest_send(k, &k->d[i]);
			k->d[i].sock = NULL; /* the socket is going away */
		}
}

void batch_cork_free(struct batch_cork *k)
{
	if (!k)
		return;
	batch_cork_flush(k);
	for (size_t i = 0; i < k->n; i++)
		dest_release(&k->d[i]);
	free(k);
}

static struct dest *dest_find(struct batch_cork *k, void *sock, const void *ident, size_t ident_len,
			      int create)
{
	struct dest *free_d = NULL;

	for (size_t i = 0; i < k->n; i++) {
		struct dest *d = &k->d[i];

		if (d->sock == sock && d->ident_len == ident_len &&
		    (ident_len == 0 || memcmp(d->ident, ident, ident_len) == 0))
			return d;
		if (!free_d && d->count == 0)
			free_d = d;
	}
	if (!create)
		return NULL;
	if (!free_d) {
		if (k->n < CORK_DESTS) {
			free_d = &k->d[k->n++];
		} else {
			batch_cork_flush(k);
			free_d = &k->d[0];
		}
	}
	free_d->sock = sock;
	free_d->ident_len = ident_len;
	if (ident_len)
		memcpy(free_d->ident, ident, ident_len);
	return free_d;
}

static int dest_reserve(struct dest *d, size_t more)
{
	size_t cap = d->cap ? d->cap : (64u << 10);
	uint8_t *b;

	if (d->len + more <= d->cap)
		return 0;
	while (cap < d->len + more)
		cap *= 2;
	b = realloc(d->buf, cap);
	if (!b)
		return -1;
	d->buf = b;
	d->cap = cap;
	return 0;
}

int batch_cork_send(struct batch_cork *k, void *sock, const void *ident, size_t ident_len,
		    const Pv__Header *h, zmq_msg_t *payload, int may_batch)
{
	size_t dl = payload ? zmq_msg_size(payload) : 0, hl = pv__header__get_packed_size(h);
	struct dest *d;
	uint8_t hdr[PV_MAX_HEADER];

	if (!k)
		return wire_send(sock, ident, ident_len, h, payload);
	if (!may_batch || dl > BATCH_PART_MAX || hl > PV_MAX_HEADER ||
	    ident_len > PV_MAX_IDENTITY) {
		d = dest_find(k, sock, ident, ident_len, 0);
		if (d && d->count)
			dest_send(k, d);
		return wire_send(sock, ident, ident_len, h, payload);
	}
	d = dest_find(k, sock, ident, ident_len, 1);
	if (d->count && (d->count >= BATCH_RECORDS_MAX ||
			 d->len + (d->first_has_data ? zmq_msg_size(&d->first_data) : 0) +
				 batch_record_size(hl, dl) >
			     BATCH_BYTES_MAX))
		dest_send(k, d);
	if (d->count == 1 && d->first_has_data) {
		/* a second record: the first one's data joins the buffer */
		size_t fl = zmq_msg_size(&d->first_data);

		if (dest_reserve(d, fl) < 0)
			goto alone;
		memcpy(d->buf + d->len, zmq_msg_data(&d->first_data), fl);
		d->len += fl;
		zmq_msg_close(&d->first_data);
		d->first_has_data = 0;
	}
	if (dest_reserve(d, batch_record_size(hl, dl)) < 0)
		goto alone;
	pv__header__pack(h, hdr);
	if (d->count == 0 && payload) {
		/* first record: header now, data kept aside (batch.h) */
		put32(d->buf, (uint32_t)hl);
		put32(d->buf + 4, (uint32_t)dl);
		memcpy(d->buf + 8, hdr, hl);
		d->len = 8 + hl;
		zmq_msg_init(&d->first_data);
		zmq_msg_move(&d->first_data, payload);
		zmq_msg_close(payload);
		d->first_has_data = 1;
	} else {
		d->len += batch_put(d->buf + d->len, hdr, hl,
				    payload ? zmq_msg_data(payload) : NULL, dl, payload != NULL);
		if (payload)
			zmq_msg_close(payload);
	}
	d->count++;
	return 0;
alone:
	if (d->count)
		dest_send(k, d);
	return wire_send(sock, ident, ident_len, h, payload);
}

uint64_t batch_cork_batches(const struct batch_cork *k)
{
	return k ? k->batches : 0;
}

uint64_t batch_cork_records(const struct batch_cork *k)
{
	return k ? k->records : 0;
}

uint64_t batch_cork_dropped(const struct batch_cork *k)
{
	return k ? k->dropped : 0;
}
