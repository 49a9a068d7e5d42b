/* link.c: peer links (link.h): records on a non-blocking stream socket.
 * The send queue is a list of segments: small things (headers, data up to
 * SMALL_DATA) are copied into shared byte buffers, larger data frames are
 * kept as the caller's messages (no copy) and handed to writev in place.
 * The receive side reads into one buffer and cuts records out of it (small
 * data is copied out into a message of its own); data over BIG_DATA is read
 * straight into its message once the record's header is in, so block data
 * from a remote host is not copied on the way in either.
 *
 * That message is allocated before its data arrives, so a sender could make
 * a server hold memory it never fills: one that stops mid-record. Three
 * rules bound it. The header must pass link_admit first (a pv.Header whose
 * lengths agree with the data); the memory held by partly received records
 * of all links is bounded (link_mem_limit: a record past the bound waits
 * unread, never taken from another); and whoever owns the links closes one
 * that stalls mid-record (peerd: linkset.c). Memory of a record dropped
 * half-received is given back to the system (link_mem_trim).
 *
 * In an authenticated group a link first runs the handshake of linkauth.h
 * (link_auth_connect / link_auth_accept, then link_handshake until done);
 * its messages are read exactly (never a byte past one), so what follows,
 * records or TLS, starts clean on the socket. With encryption the two IO
 * points (link_flush, read_some) go through GnuTLS (TLS 1.3, PSK): a round
 * is corked into TLS records of up to TLS_BATCH bytes, and what GnuTLS has
 * decrypted but not handed over is taken before link_read returns, so that
 * polling the socket stays enough. Without a key none of this runs: one
 * test of a field per call. */
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <sodium.h>

#include "link.h"
#include "linkauth.h"
#include "util.h"

#define SEG_BYTES  (64u << 10) /* a byte segment's size */
#define SMALL_DATA 4096	       /* data frames up to this are copied */
#define IOV_BATCH  64	       /* iovecs per writev */
#define RBUF_START (256u << 10)
#define READS_MAX  8 /* reads per link_read call */
#define RECORD_MAX (8 + PV_MAX_HEADER + LINK_DATA_MAX)
#define BIG_DATA   LINK_ADMIT_MIN /* larger data is read straight into its message */
#define TLS_BATCH  (256u << 10)	  /* bytes corked into TLS records at once */
/* TLS 1.3 only, a pre-shared key with an ephemeral ECDHE exchange (forward
 * secrecy); GnuTLS's default ciphers (AES-GCM, ChaCha20-Poly1305). */
#define TLS_PRIORITY                                                                               \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"  \
	"+CHACHA20-POLY1305"

/* Handshake states (linkauth.h); HS_NONE: records flow. */
enum hs_state {
	HS_NONE = 0,
	HS_C_HELLO,	/* connector: writing HELLO */
	HS_C_CHALLENGE, /* reading CHALLENGE (or REFUSE) */
	HS_C_FINISH,	/* writing FINISH */
	HS_A_HELLO,	/* acceptor: reading HELLO */
	HS_A_CHALLENGE, /* writing CHALLENGE */
	HS_A_FINISH,	/* reading FINISH */
	HS_TLS,		/* the TLS handshake */
	HS_FAILED,
};

/* Link memory (link.h) of the process. Atomic only so that a program with
 * links in more than one thread counts right; each link is one thread's. */
static size_t mem_limit; /* 0: no bound */
static atomic_size_t mem_held;
static atomic_int mem_dropped; /* a link holding memory was destroyed */

/* The queue array is grown with realloc and slid with memmove, which moves
 * the zmq_msg_t inside bitwise: libzmq's own zmq_msg_move does no more for
 * the large messages kept here (data over SMALL_DATA: a pointer to
 * reference-counted content; inline small messages are copied instead). */
struct seg {
	int is_msg;
	zmq_msg_t msg; /* is_msg: the data, written in place */
	uint8_t *buf;  /* else: bytes [off, len) still to write */
	size_t cap, len, off;
};

struct link {
	int fd;
	struct seg *segs; /* queue: segs[head..nsegs) */
	size_t head, nsegs, cap_segs;
	size_t pending; /* bytes queued, not written */
	uint8_t *rbuf;	/* received bytes [roff, rlen) not yet parsed */
	int big_on;	/* a record with data over BIG_DATA is being read: */
	int big_wait;	/* its header is in, link memory is not: not read */
	zmq_msg_t big;	/* its data, big_have bytes of it so far, */
	size_t big_have;
	uint8_t big_hdr[PV_MAX_HEADER]; /* and its header */
	size_t big_hl;
	size_t rcap, roff, rlen;
	uint64_t sent, received, bytes_in;
	/* authentication (a group with keys) */
	enum hs_state hs;
	int acceptor, encrypt_self; /* the flag this side sends */
	int refused;		    /* the acceptor refused us (REFUSE) */
	uint64_t hs_started_ms;
	struct linkauth auth;
	uint8_t hs_buf[LINKAUTH_MSG_MAX]; /* the message being read or written */
	size_t hs_len, hs_off;
	/* encryption */
	gnutls_session_t tls; /* NULL: plain */
	gnutls_psk_client_credentials_t pskc;
	gnutls_psk_server_credentials_t psks;
	uint8_t psk[PV_KEY_BYTES];
	char psk_id[65];
	/* GnuTLS's transport (tls_push, tls_pull): what it wrote and the
	 * socket did not take yet, and what was read from the socket and it
	 * did not take yet; a round is one sendmsg and one read, not two
	 * calls per 16 KiB TLS record */
	uint8_t *tout, *tin;
	size_t tout_cap, tout_off, tout_len;
	size_t tin_off, tin_len;
	int tin_hold; /* tls_pull takes nothing more from the socket */
};

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int link_admit(const void *hdr, size_t hdr_len, size_t data_len, char *err, size_t errlen)
{
	Pv__Header *h;
	char why[200];
	int rc = -1;

	if (data_len <= LINK_ADMIT_MIN)
		return 0;
	if (wire_header_decode(hdr, hdr_len, &h, why, sizeof(why)) != PV_ST_OK) {
		snprintf(err, errlen, "record with %zu bytes of data: %s", data_len, why);
		return -1;
	}
	switch (h->op) {
	case PV_OP_READ:
	case PV_OP_WRITE:
		if (h->length != data_len)
			snprintf(err, errlen, "%s of %u bytes with %zu bytes of data",
				 wire_op_name(h->op), h->length, data_len);
		else
			rc = 0;
		break;
	case PV_OP_TRIM:
	case PV_OP_FLUSH:
		snprintf(err, errlen, "%s with %zu bytes of data (it carries none)",
			 wire_op_name(h->op), data_len);
		break;
	case PV_OP_BATCH:
		if (data_len > BATCH_BYTES_MAX)
			snprintf(err, errlen, "BATCH of %zu bytes (at most %u allowed)", data_len,
				 BATCH_BYTES_MAX);
		else
			rc = 0;
		break;
	default:
		if (data_len > PV_MAX_BODY)
			snprintf(err, errlen, "%s body of %zu bytes (at most %u allowed)",
				 wire_op_name(h->op), data_len, PV_MAX_BODY);
		else
			rc = 0;
		break;
	}
	wire_header_free(h);
	return rc;
}

void link_mem_limit(size_t bytes)
{
	mem_limit = bytes;
}

size_t link_mem_held(void)
{
	return atomic_load(&mem_held);
}

/* Takes n bytes of link memory if the bound allows; 1 taken, 0 not. */
static int mem_take(size_t n)
{
	size_t held = atomic_load(&mem_held);

	do {
		if (mem_limit && (held > mem_limit || n > mem_limit - held))
			return 0;
	} while (!atomic_compare_exchange_weak(&mem_held, &held, held + n));
	return 1;
}

static void mem_give(size_t n)
{
	atomic_fetch_sub(&mem_held, n);
}

int link_mem_trim(void)
{
	if (!atomic_exchange(&mem_dropped, 0))
		return 0;
	malloc_trim(0);
	return 1;
}

int link_parse(const void *buf, size_t len, struct batch_record *r, size_t *used, char *err,
	       size_t errlen)
{
	const uint8_t *p = buf;
	uint32_t hl, dl;
	size_t need;

	if (len < 8)
		return 0;
	hl = get_le32(p);
	dl = get_le32(p + 4);
	if (hl == 0 || hl > PV_MAX_HEADER) {
		snprintf(err, errlen, "record header of %u bytes (1..%u allowed)", hl,
			 PV_MAX_HEADER);
		return -1;
	}
	if (dl != BATCH_NO_DATA && dl > LINK_DATA_MAX) {
		snprintf(err, errlen, "record data of %u bytes (at most %u allowed)", dl,
			 LINK_DATA_MAX);
		return -1;
	}
	if (dl != BATCH_NO_DATA && dl > LINK_ADMIT_MIN && len >= 8 + (size_t)hl &&
	    link_admit(p + 8, hl, dl, err, errlen) < 0)
		return -1;
	need = 8 + (size_t)hl + (dl == BATCH_NO_DATA ? 0 : dl);
	if (len < need)
		return 0;
	r->hdr = p + 8;
	r->hdr_len = hl;
	r->data = dl == BATCH_NO_DATA ? NULL : p + 8 + hl;
	r->data_len = dl == BATCH_NO_DATA ? 0 : dl;
	*used = need;
	return 1;
}

void link_tune(int fd)
{
	int one = 1, idle = 10, intvl = 5, cnt = 3;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

int link_connect(const char *address)
{
	struct sockaddr_in sa;
	char host[64], *end;
	const char *h = address + 6, *colon = strrchr(address, ':');
	unsigned long port;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (strncmp(address, "tcp://", 6) || !colon || colon < h ||
	    (size_t)(colon - h) >= sizeof(host))
		goto bad;
	memcpy(host, h, (size_t)(colon - h));
	host[colon - h] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    sa.sin_addr.s_addr == htonl(INADDR_ANY))
		goto bad;
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	link_tune(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
bad:
	errno = EINVAL;
	return -1;
}

struct link *link_new(int fd)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l) {
		close(fd);
		return NULL;
	}
	l->fd = fd;
	return l;
}

static void seg_release(struct seg *s)
{
	if (s->is_msg)
		zmq_msg_close(&s->msg);
	else
		free(s->buf);
}

void link_destroy(struct link **lp)
{
	struct link *l = lp ? *lp : NULL;

	if (!l)
		return;
	for (size_t i = l->head; i < l->nsegs; i++)
		seg_release(&l->segs[i]);
	free(l->segs);
	if (l->big_on) {
		mem_give(zmq_msg_size(&l->big));
		zmq_msg_close(&l->big);
		atomic_store(&mem_dropped, 1);
	}
	free(l->rbuf);
	if (l->tls)
		gnutls_deinit(l->tls);
	free(l->tout);
	free(l->tin);
	if (l->pskc)
		gnutls_psk_free_client_credentials(l->pskc);
	if (l->psks)
		gnutls_psk_free_server_credentials(l->psks);
	sodium_memzero(&l->auth, sizeof(l->auth));
	sodium_memzero(l->psk, sizeof(l->psk));
	if (l->fd >= 0)
		close(l->fd);
	free(l);
	*lp = NULL;
}

int link_fd(const struct link *l)
{
	return l->fd;
}

size_t link_pending(const struct link *l)
{
	return l->pending + (l->tout_len - l->tout_off);
}

uint64_t link_sent(const struct link *l)
{
	return l->sent;
}

uint64_t link_received(const struct link *l)
{
	return l->received;
}

uint64_t link_bytes_in(const struct link *l)
{
	return l->bytes_in;
}

size_t link_mem(const struct link *l)
{
	return l->big_on ? zmq_msg_size(&l->big) : 0;
}

int link_partial(const struct link *l)
{
	return l->big_on || l->rlen > l->roff;
}

int link_waiting(const struct link *l)
{
	return l->big_wait;
}

int link_input_wanted(const struct link *l)
{
	size_t held;

	if (!l->big_wait || !mem_limit)
		return 1;
	held = atomic_load(&mem_held);
	return held <= mem_limit &&
	       get_le32(l->rbuf + l->roff + 4) <= mem_limit - held; /* big_wait: lengths in */
}

/* A free slot at the end of the queue, or NULL. */
static struct seg *seg_add(struct link *l)
{
	if (l->head == l->nsegs)
		l->head = l->nsegs = 0;
	if (l->nsegs == l->cap_segs) {
		size_t cap;
		struct seg *s;

		if (l->head > 0) { /* slide the live part down first */
			memmove(l->segs, l->segs + l->head, (l->nsegs - l->head) * sizeof(*s));
			l->nsegs -= l->head;
			l->head = 0;
		}
		if (l->nsegs == l->cap_segs) {
			cap = l->cap_segs ? l->cap_segs * 2 : 16;
			s = realloc(l->segs, cap * sizeof(*s));
			if (!s)
				return NULL;
			l->segs = s;
			l->cap_segs = cap;
		}
	}
	memset(&l->segs[l->nsegs], 0, sizeof(l->segs[0]));
	return &l->segs[l->nsegs++];
}

/* Room for n more bytes in the last byte segment (a new one if needed:
 * exactly n bytes when alone says nothing else follows soon, the header of
 * a large data frame; else SEG_BYTES for the small records after it). */
static uint8_t *bytes_add(struct link *l, size_t n, int alone)
{
	struct seg *s = l->nsegs > l->head ? &l->segs[l->nsegs - 1] : NULL;

	if (!s || s->is_msg || s->cap - s->len < n) {
		size_t cap = n > SEG_BYTES || alone ? n : SEG_BYTES;
		uint8_t *buf = malloc(cap);

		if (!buf)
			return NULL;
		s = seg_add(l);
		if (!s) {
			free(buf);
			return NULL;
		}
		s->buf = buf;
		s->cap = cap;
	}
	s->len += n;
	return s->buf + s->len - n;
}

static int queue(struct link *l, const void *hdr, size_t hdr_len, zmq_msg_t *data, int bounded)
{
	size_t dl = data ? zmq_msg_size(data) : 0;
	size_t small = data && dl <= SMALL_DATA ? dl : 0;
	uint8_t *p;

	if (hdr_len == 0 || hdr_len > PV_MAX_HEADER || dl > LINK_DATA_MAX) {
		errno = EMSGSIZE;
		goto fail;
	}
	if (bounded && l->pending + 8 + hdr_len + dl > LINK_QUEUE_MAX) {
		errno = ENOBUFS;
		goto fail;
	}
	p = bytes_add(l, 8 + hdr_len + small, data && dl > small);
	if (!p) {
		errno = ENOMEM;
		goto fail;
	}
	put_le32(p, (uint32_t)hdr_len);
	put_le32(p + 4, data ? (uint32_t)dl : BATCH_NO_DATA);
	memcpy(p + 8, hdr, hdr_len);
	if (small)
		memcpy(p + 8 + hdr_len, zmq_msg_data(data), small);
	if (data && dl > small) {
		struct seg *s = seg_add(l);

		if (!s) {
			/* the header is queued: take it back */
			l->segs[l->nsegs - 1].len -= 8 + hdr_len;
			errno = ENOMEM;
			goto fail;
		}
		s->is_msg = 1;
		zmq_msg_init(&s->msg);
		zmq_msg_move(&s->msg, data);
		zmq_msg_close(data);
	} else if (data) {
		zmq_msg_close(data);
	}
	l->pending += 8 + hdr_len + dl;
	l->sent++;
	return 0;
fail:
	if (data)
		zmq_msg_close(data);
	return -1;
}

int link_queue(struct link *l, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	return queue(l, hdr, hdr_len, data, 1);
}

int link_queue_unbounded(struct link *l, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	return queue(l, hdr, hdr_len, data, 0);
}

static size_t seg_left(struct seg *s, uint8_t **p)
{
	if (s->is_msg) {
		*p = (uint8_t *)zmq_msg_data(&s->msg) + s->off;
		return zmq_msg_size(&s->msg) - s->off;
	}
	*p = s->buf + s->off;
	return s->len - s->off;
}

/* writev without SIGPIPE on a socket whose peer is gone (EPIPE instead,
 * in any program); plain writev on anything else (a pipe in tests). */
static ssize_t write_iov(int fd, struct iovec *iov, int n)
{
	struct msghdr mh;
	ssize_t w;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)n;
	w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0 && errno == ENOTSOCK)
		w = writev(fd, iov, n);
	return w;
}

/* w bytes of the queue went out (to the socket, or into TLS records):
 * released, and the segment written in part advanced. */
static void consumed(struct link *l, size_t w)
{
	l->pending -= w;
	while (l->head < l->nsegs) {
		struct seg *s = &l->segs[l->head];
		uint8_t *p;
		size_t left = seg_left(s, &p);

		if (w < left) {
			s->off += w;
			break;
		}
		w -= left;
		/* a byte segment still being filled stays (it is the last);
		 * everything else written is released */
		if (!s->is_msg && l->head == l->nsegs - 1) {
			s->off = s->len = 0;
			break;
		}
		seg_release(s);
		l->head++;
	}
}

/* Writes buf[*off, *len) to fd: 1 all written (both reset to 0), 0 not
 * yet (EAGAIN; *off advanced), -1 failed (errno). */
static int buf_write(int fd, uint8_t *buf, size_t *off, size_t *len)
{
	while (*off < *len) {
		struct iovec v = {buf + *off, *len - *off};
		ssize_t w = write_iov(fd, &v, 1);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w < 0)
			return -1;
		*off += (size_t)w;
	}
	*off = *len = 0;
	return 1;
}

/* Writes what GnuTLS produced (tout) to the socket: as buf_write. */
static int tout_write(struct link *l)
{
	return buf_write(l->fd, l->tout, &l->tout_off, &l->tout_len);
}

/* link_flush with TLS: up to TLS_BATCH bytes of the queue at a time are
 * corked into records (GnuTLS copies and encrypts them into tout: the
 * queue lets go at once) and written; what the socket does not take stays
 * in tout for the next call (link_pending counts it). */
static int tls_flush(struct link *l)
{
	for (;;) {
		size_t put = 0;
		int rc = tout_write(l);

		if (rc <= 0)
			return rc < 0 ? -1 : 1;
		if (l->pending == 0)
			return 0;
		gnutls_record_cork(l->tls);
		while (l->pending > 0 && put < TLS_BATCH) {
			uint8_t *p;
			size_t left = seg_left(&l->segs[l->head], &p);
			ssize_t r;

			if (left > TLS_BATCH - put)
				left = TLS_BATCH - put;
			r = left ? gnutls_record_send(l->tls, p, left) : 0;
			if (r < 0)
				break;
			put += (size_t)r;
			consumed(l, (size_t)r);
		}
		/* tls_push takes everything: this does not wait */
		if (gnutls_record_uncork(l->tls, GNUTLS_RECORD_WAIT) < 0) {
			errno = ENOMEM;
			return -1;
		}
	}
}

int link_flush(struct link *l)
{
	if (l->hs != HS_NONE) /* nothing goes before the handshake is done */
		return link_pending(l) > 0;
	if (l->tls)
		return tls_flush(l);
	while (l->pending > 0) {
		struct iovec iov[IOV_BATCH];
		int n = 0;
		ssize_t w;

		for (size_t i = l->head; i < l->nsegs && n < IOV_BATCH; i++) {
			uint8_t *p;
			size_t left = seg_left(&l->segs[i], &p);

			if (left == 0)
				continue;
			iov[n].iov_base = p;
			iov[n++].iov_len = left;
		}
		w = write_iov(l->fd, iov, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (w < 0)
			return -1;
		consumed(l, (size_t)w);
	}
	return 0;
}

/* Makes room to read: the unparsed bytes moved to the front, the buffer
 * grown to hold a record of need bytes. Returns 0 or -1 (out of memory). */
static int rbuf_room(struct link *l, size_t need)
{
	if (l->roff > 0) {
		memmove(l->rbuf, l->rbuf + l->roff, l->rlen - l->roff);
		l->rlen -= l->roff;
		l->roff = 0;
	}
	if (need > l->rcap || !l->rbuf) {
		size_t cap = need > RBUF_START ? need : RBUF_START;
		uint8_t *b = realloc(l->rbuf, cap);

		if (!b)
			return -1;
		l->rbuf = b;
		l->rcap = cap;
	}
	return 0;
}

/* Bytes the record at the start of the unparsed bytes needs in the buffer:
 * its whole size once its lengths are there (link_parse checked them;
 * only the header when the data is over BIG_DATA: big_start reads that
 * into a message of its own), else RBUF_START. */
static size_t record_need(const struct link *l)
{
	uint32_t dl;

	if (l->rlen - l->roff < 8)
		return RBUF_START;
	dl = get_le32(l->rbuf + l->roff + 4);
	if (dl != BATCH_NO_DATA && dl > BIG_DATA) /* only its header: big_start */
		dl = 0;
	return 8 + (size_t)get_le32(l->rbuf + l->roff) + (dl == BATCH_NO_DATA ? 0 : dl);
}

/* The unparsed bytes start a record whose data is over BIG_DATA and whose
 * header is all there (link_parse admitted it): its data goes into a
 * message of its own, read straight into it from now on (no copy through
 * the buffer), once link memory allows (else big_wait is set and the link
 * is not read). Returns 0 (begun, waiting, or not such a record) or -1
 * (out of memory). */
static int big_start(struct link *l, char *err, size_t errlen)
{
	const uint8_t *p = l->rbuf + l->roff;
	size_t avail = l->rlen - l->roff;
	uint32_t hl, dl;

	if (avail < 8)
		return 0;
	hl = get_le32(p); /* link_parse checked both lengths */
	dl = get_le32(p + 4);
	l->big_wait = 0;
	if (dl == BATCH_NO_DATA || dl <= BIG_DATA || avail < 8 + (size_t)hl)
		return 0;
	if (!mem_take(dl)) {
		l->big_wait = 1;
		return 0;
	}
	if (zmq_msg_init_size(&l->big, dl) < 0) {
		mem_give(dl);
		snprintf(err, errlen, "out of memory for a record of %u bytes", dl);
		return -1;
	}
	memcpy(l->big_hdr, p + 8, hl);
	l->big_hl = hl;
	l->big_have = avail - 8 - hl; /* less than dl: the record is not complete */
	memcpy(zmq_msg_data(&l->big), p + 8 + hl, l->big_have);
	l->big_on = 1;
	l->roff = l->rlen = 0;
	return 0;
}

/* Delivers every complete record in the buffer; -1 if one is malformed. */
static int deliver(struct link *l, link_record_fn fn, void *arg, size_t *need, char *err,
		   size_t errlen)
{
	for (;;) {
		struct batch_record r;
		size_t used;
		int rc = link_parse(l->rbuf + l->roff, l->rlen - l->roff, &r, &used, err, errlen);
		zmq_msg_t data;

		if (rc < 0)
			return -1;
		if (rc == 0) {
			if (big_start(l, err, errlen) < 0)
				return -1;
			/* else the whole record must fit, once its lengths are known */
			*need = record_need(l);
			return 0;
		}
		if (r.data) {
			if (zmq_msg_init_size(&data, r.data_len) < 0) {
				snprintf(err, errlen, "out of memory for a record of %zu bytes",
					 r.data_len);
				return -1;
			}
			memcpy(zmq_msg_data(&data), r.data, r.data_len);
		}
		l->roff += used;
		l->received++;
		fn(arg, r.hdr, r.hdr_len, r.data ? &data : NULL);
		if (r.data)
			zmq_msg_close(&data);
	}
}

/* Whether GnuTLS holds input not yet taken: decrypted, or read from the
 * socket (tin). */
static int tls_buffered(const struct link *l)
{
	return l->tls && (l->tin_off < l->tin_len || gnutls_record_check_pending(l->tls) > 0);
}

/* gnutls_record_recv into buf until it is full or nothing more is there:
 * as read_some. */
static ssize_t tls_read(struct link *l, uint8_t *buf, size_t len, char *err, size_t errlen)
{
	size_t got = 0;
	int warnings = 0;

	while (got < len) {
		ssize_t n = gnutls_record_recv(l->tls, buf + got, len - got);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED || got > 0)
			break; /* the end or an error shows again at the next call */
		if (n < 0 && !gnutls_error_is_fatal((int)n) && ++warnings <= 16)
			continue; /* a warning alert: the stream goes on */
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			snprintf(err, errlen, "the other side closed the link");
		else
			snprintf(err, errlen, "TLS receive failed: %s", gnutls_strerror((int)n));
		return -1;
	}
	return (ssize_t)got;
}

/* read(2) (or TLS) of up to len bytes: > 0 bytes read, 0 nothing there
 * (EAGAIN), -1 the end of the stream or an error (err says which). */
static ssize_t read_some(struct link *l, void *buf, size_t len, char *err, size_t errlen)
{
	if (l->tls)
		return tls_read(l, buf, len, err, errlen);
	for (;;) {
		ssize_t n = read(l->fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			snprintf(err, errlen, "receive failed: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			snprintf(err, errlen, "the other side closed the link");
			return -1;
		}
		return n;
	}
}

int link_buffered(const struct link *l)
{
	return tls_buffered(l);
}

int link_read(struct link *l, link_record_fn fn, void *arg, char *err, size_t errlen)
{
	/* what a record begun in an earlier call needs: its start may fill
	 * the buffer, which must then grow before the read (a read of 0
	 * bytes would look like the end of the stream) */
	size_t need = record_need(l);

	if (l->hs != HS_NONE) {
		snprintf(err, errlen, "records before the handshake is done");
		return -1;
	}
	l->tin_hold = 0;
	if (l->big_wait && big_start(l, err, errlen) < 0)
		return -1;
	if (l->big_wait) { /* nothing is read, but a peer gone is seen */
		uint8_t b;
		ssize_t n = recv(l->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			       errno != ENOTSOCK)) {
			snprintf(err, errlen, "%s while a record waited for link memory",
				 n == 0 ? "the other side closed the link" : strerror(errno));
			return -1;
		}
		return 0;
	}
	/* with TLS, past READS_MAX until what was read from the socket is
	 * taken (without reading it again: tin_hold), for the socket's
	 * readiness says nothing about that */
	for (int i = 0; !l->big_wait && (i < READS_MAX || tls_buffered(l)); i++) {
		ssize_t n;

		l->tin_hold = i >= READS_MAX;
		if (l->big_on) {
			size_t size = zmq_msg_size(&l->big);

			n = read_some(l, (uint8_t *)zmq_msg_data(&l->big) + l->big_have,
				      size - l->big_have, err, errlen);
			if (n <= 0)
				return (int)n;
			l->bytes_in += (size_t)n;
			l->big_have += (size_t)n;
			if (l->big_have < size)
				continue;
			l->big_on = 0;
			mem_give(size); /* the message is the receiver's now */
			l->received++;
			fn(arg, l->big_hdr, l->big_hl, &l->big);
			zmq_msg_close(&l->big);
			need = record_need(l);
			continue;
		}
		if (need > RECORD_MAX)
			need = RECORD_MAX;
		if ((!l->rbuf || l->rcap - l->rlen < 4096 || need > l->rcap - l->roff) &&
		    rbuf_room(l, need) < 0) {
			snprintf(err, errlen, "out of memory for the receive buffer");
			return -1;
		}
		n = read_some(l, l->rbuf + l->rlen, l->rcap - l->rlen, err, errlen);
		if (n <= 0)
			return (int)n;
		l->bytes_in += (size_t)n;
		l->rlen += (size_t)n;
		if (deliver(l, fn, arg, &need, err, errlen) < 0)
			return -1;
		if (l->roff == l->rlen)
			l->roff = l->rlen = 0;
	}
	return 0;
}

/* ---- the handshake (linkauth.h) and TLS ------------------------------ */

void link_auth_connect(struct link *l, const uint8_t id[PV_KEY_BYTES],
		       const uint8_t key[PV_KEY_BYTES], int encrypt)
{
	l->acceptor = 0;
	l->encrypt_self = encrypt;
	l->hs_len = linkauth_hello(&l->auth, id, key, encrypt ? LINKAUTH_F_ENCRYPT : 0, l->hs_buf);
	l->hs_off = 0;
	l->hs = HS_C_HELLO;
	l->hs_started_ms = pv_now_ms();
}

void link_auth_accept(struct link *l, int encrypt)
{
	l->acceptor = 1;
	l->encrypt_self = encrypt;
	l->hs_len = l->hs_off = 0;
	l->hs = HS_A_HELLO;
	l->hs_started_ms = pv_now_ms();
}

int link_handshaking(const struct link *l)
{
	return l->hs != HS_NONE;
}

uint64_t link_handshake_started(const struct link *l)
{
	return l->hs_started_ms;
}

int link_refused(const struct link *l)
{
	return l->refused;
}

int link_encrypted(const struct link *l)
{
	return l->tls != NULL;
}

const uint8_t *link_peer_id(const struct link *l)
{
	return l->auth.id;
}

short link_handshake_events(const struct link *l)
{
	switch (l->hs) {
	case HS_C_HELLO:
	case HS_C_FINISH:
	case HS_A_CHALLENGE:
		return ZMQ_POLLOUT;
	case HS_TLS: /* (tls_push never blocks: only tout waits to be written) */
		return l->tout_off < l->tout_len ? ZMQ_POLLOUT : ZMQ_POLLIN;
	default:
		return ZMQ_POLLIN;
	}
}

/* Room for an error nobody reads (the best-effort REFUSE). */
#define PV_LINK_ERR_SCRATCH 128

/* Writes the rest of hs_buf: 1 all written, 0 not yet, -1 failed. */
static int hs_write(struct link *l, char *err, size_t errlen)
{
	int rc = buf_write(l->fd, l->hs_buf, &l->hs_off, &l->hs_len);

	if (rc < 0)
		snprintf(err, errlen, "handshake send failed: %s", strerror(errno));
	return rc;
}

/* Reads one handshake message into hs_buf, exactly (not a byte more) and
 * decodes it into m: 1 done, 0 not yet, -1 failed or malformed. */
static int hs_read(struct link *l, struct linkauth_msg *m, char *err, size_t errlen)
{
	for (;;) {
		int need = linkauth_need(l->hs_buf, l->hs_len, err, errlen);
		size_t want;
		ssize_t n;

		if (need < 0)
			return -1;
		want = need ? (size_t)need : LINKAUTH_HEAD;
		if (l->hs_len == want)
			break;
		n = read_some(l, l->hs_buf + l->hs_len, want - l->hs_len, err, errlen);
		if (n <= 0)
			return (int)n;
		l->bytes_in += (size_t)n;
		l->hs_len += (size_t)n;
	}
	l->hs_off = l->hs_len;
	if (linkauth_decode(l->hs_buf, l->hs_len, m, err, errlen) < 0)
		return -1;
	l->hs_len = l->hs_off = 0;
	return 1;
}

/* The server's PSK callback: the key of this link's handshake. */
static int psk_lookup(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
	struct link *l = gnutls_session_get_ptr(s);

	if (!l || strcmp(username, l->psk_id) != 0)
		return -1;
	key->data = gnutls_malloc(PV_KEY_BYTES);
	if (!key->data)
		return -1;
	memcpy(key->data, l->psk, PV_KEY_BYTES);
	key->size = PV_KEY_BYTES;
	return 0;
}

/* GnuTLS's push: appends to tout (written by tout_write); never fails but
 * for memory. */
static ssize_t tls_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int n)
{
	struct link *l = ptr;
	size_t total = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (l->tout_len + total > l->tout_cap) {
		size_t cap = l->tout_cap ? l->tout_cap : TLS_BATCH + (16u << 10);
		uint8_t *b;

		while (cap < l->tout_len + total)
			cap *= 2;
		b = realloc(l->tout, cap);
		if (!b) {
			gnutls_transport_set_errno(l->tls, ENOMEM);
			return -1;
		}
		l->tout = b;
		l->tout_cap = cap;
	}
	for (int i = 0; i < n; i++) {
		memcpy(l->tout + l->tout_len, iov[i].iov_base, iov[i].iov_len);
		l->tout_len += iov[i].iov_len;
	}
	return (ssize_t)total;
}

/* GnuTLS's pull: from tin, refilled by one read of up to TLS_BATCH. */
static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct link *l = ptr;
	size_t k;

	if (l->tin_off == l->tin_len) {
		ssize_t n;

		if (l->tin_hold) {
			gnutls_transport_set_errno(l->tls, EAGAIN);
			return -1;
		}
		if (!l->tin && !(l->tin = malloc(TLS_BATCH))) {
			gnutls_transport_set_errno(l->tls, ENOMEM);
			return -1;
		}
		do
			n = read(l->fd, l->tin, TLS_BATCH);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			gnutls_transport_set_errno(l->tls, errno == EWOULDBLOCK ? EAGAIN : errno);
			return -1;
		}
		if (n == 0)
			return 0;
		l->tin_off = 0;
		l->tin_len = (size_t)n;
	}
	k = l->tin_len - l->tin_off < len ? l->tin_len - l->tin_off : len;
	memcpy(buf, l->tin + l->tin_off, k);
	l->tin_off += k;
	if (l->tin_off == l->tin_len)
		l->tin_off = l->tin_len = 0;
	return (ssize_t)k;
}

/* GnuTLS's wait for input (its handshake asks): tin, else the socket. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct link *l = ptr;
	struct pollfd p = {l->fd, POLLIN, 0};

	if (l->tin_off < l->tin_len)
		return 1;
	return poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

/* Sets up this side's TLS session over the socket. 0, or -1 with err. */
static int tls_start(struct link *l, char *err, size_t errlen)
{
	unsigned flags = (l->acceptor ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK |
			 GNUTLS_NO_TICKETS | GNUTLS_NO_SIGNAL;
	gnutls_datum_t k;
	int rc;

	linkauth_psk(&l->auth, l->psk, l->psk_id);
	k.data = l->psk;
	k.size = PV_KEY_BYTES;
	rc = gnutls_init(&l->tls, flags);
	if (rc < 0) {
		l->tls = NULL;
		goto fail;
	}
	gnutls_session_set_ptr(l->tls, l);
	if (l->acceptor) {
		rc = gnutls_psk_allocate_server_credentials(&l->psks);
		if (rc < 0)
			goto fail;
		gnutls_psk_set_server_credentials_function(l->psks, psk_lookup);
		rc = gnutls_credentials_set(l->tls, GNUTLS_CRD_PSK, l->psks);
	} else {
		rc = gnutls_psk_allocate_client_credentials(&l->pskc);
		if (rc < 0)
			goto fail;
		rc = gnutls_psk_set_client_credentials(l->pskc, l->psk_id, &k, GNUTLS_PSK_KEY_RAW);
		if (rc >= 0)
			rc = gnutls_credentials_set(l->tls, GNUTLS_CRD_PSK, l->pskc);
	}
	if (rc >= 0)
		rc = gnutls_priority_set_direct(l->tls, TLS_PRIORITY, NULL);
	if (rc < 0)
		goto fail;
	gnutls_transport_set_ptr(l->tls, l);
	gnutls_transport_set_vec_push_function(l->tls, tls_push);
	gnutls_transport_set_pull_function(l->tls, tls_pull);
	gnutls_transport_set_pull_timeout_function(l->tls, tls_pull_timeout);
	return 0;
fail:
	snprintf(err, errlen, "cannot start TLS: %s", gnutls_strerror(rc));
	return -1;
}

/* The handshake is done: TLS next, or records. */
static int hs_done(struct link *l, char *err, size_t errlen)
{
	if (!linkauth_encrypt(&l->auth)) {
		l->hs = HS_NONE;
		return 0;
	}
	if (tls_start(l, err, errlen) < 0)
		return -1;
	l->hs = HS_TLS;
	return 1;
}

/* One step of the handshake: as link_handshake, HS_FAILED set by it. */
static int hs_step(struct link *l, link_lookup_fn lookup, void *arg, char *err, size_t errlen)
{
	struct linkauth_msg m;
	uint8_t key[PV_KEY_BYTES];
	int rc;

	for (;;) {
		switch (l->hs) {
		case HS_NONE:
			return 0;
		case HS_C_HELLO:
		case HS_A_CHALLENGE:
			rc = hs_write(l, err, errlen);
			if (rc <= 0)
				return rc < 0 ? -1 : 1;
			l->hs = l->hs == HS_C_HELLO ? HS_C_CHALLENGE : HS_A_FINISH;
			break;
		case HS_C_CHALLENGE:
			rc = hs_read(l, &m, err, errlen);
			if (rc <= 0)
				return rc < 0 ? -1 : 1;
			if (m.type == LINKAUTH_REFUSE) {
				snprintf(err, errlen, "refused: %s", m.reason);
				l->refused = 1;
				return -1;
			}
			rc = linkauth_finish(&l->auth, &m, l->hs_buf, err, errlen);
			if (rc < 0)
				return -1;
			l->hs_len = (size_t)rc;
			l->hs_off = 0;
			l->hs = HS_C_FINISH;
			break;
		case HS_C_FINISH:
			rc = hs_write(l, err, errlen);
			if (rc <= 0)
				return rc < 0 ? -1 : 1;
			if (hs_done(l, err, errlen) < 0)
				return -1;
			break; /* on to HS_NONE, or TLS's first step */
		case HS_A_HELLO:
			rc = hs_read(l, &m, err, errlen);
			if (rc <= 0)
				return rc < 0 ? -1 : 1;
			if (m.type != LINKAUTH_HELLO) {
				snprintf(err, errlen,
					 "handshake message %u where a hello was "
					 "expected",
					 m.type);
				return -1;
			}
			if (lookup(arg, m.id, key, err, errlen) < 0) {
				/* told once, best effort: the link closes anyway */
				l->hs_len = linkauth_refuse(err, l->hs_buf);
				l->hs_off = 0;
				hs_write(l, (char[PV_LINK_ERR_SCRATCH]){0}, PV_LINK_ERR_SCRATCH);
				memcpy(l->auth.id, m.id, PV_KEY_BYTES); /* for the caller */
				return -1;
			}
			l->hs_len = linkauth_challenge(
			    &l->auth, &m, key, l->encrypt_self ? LINKAUTH_F_ENCRYPT : 0, l->hs_buf);
			sodium_memzero(key, sizeof(key));
			l->hs_off = 0;
			l->hs = HS_A_CHALLENGE;
			break;
		case HS_A_FINISH:
			rc = hs_read(l, &m, err, errlen);
			if (rc <= 0)
				return rc < 0 ? -1 : 1;
			if (linkauth_check_finish(&l->auth, &m, err, errlen) < 0)
				return -1;
			if (hs_done(l, err, errlen) < 0)
				return -1;
			break; /* on to HS_NONE, or TLS's first step */
		case HS_TLS:
			if (tout_write(l) < 0) {
				snprintf(err, errlen, "TLS handshake send failed: %s",
					 strerror(errno));
				return -1;
			}
			rc = gnutls_handshake(l->tls);
			if (tout_write(l) < 0) {
				snprintf(err, errlen, "TLS handshake send failed: %s",
					 strerror(errno));
				return -1;
			}
			if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
				return 1;
			if (rc < 0 && gnutls_error_is_fatal(rc)) {
				snprintf(err, errlen, "TLS handshake failed: %s",
					 gnutls_strerror(rc));
				return -1;
			}
			if (rc < 0)
				break; /* a warning: go on */
			sodium_memzero(l->psk, sizeof(l->psk));
			l->hs = HS_NONE;
			return 0;
		case HS_FAILED:
			snprintf(err, errlen, "the handshake failed");
			return -1;
		}
	}
}

int link_handshake(struct link *l, link_lookup_fn lookup, void *arg, char *err, size_t errlen)
{
	int rc = hs_step(l, lookup, arg, err, errlen);

	if (rc < 0)
		l->hs = HS_FAILED;
	return rc;
}
