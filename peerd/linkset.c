/* linkset.c: this server's set of links (one link's record stream is
 * proto/link.c, include/link.h): a TCP listener other members connect to,
 * the links accepted on it (peers' requests arrive there and their replies
 * go back the same way) and one outgoing link per member that advertises a
 * link address in its heartbeats. Once a member's outgoing link is up,
 * everything this server sends to it goes there instead of the ZeroMQ
 * DEALER; the DEALER stays for the time before and after (a member without
 * links, or a link that failed, is reached as before). Reactor thread only.
 * An accepted link stands for a ROUTER connection: it has an identity
 * (LINK_IDENT_LEN bytes: 0x00, slot, generation), which ZeroMQ never gives
 * (its own are 5 bytes) and a client cannot choose (ZeroMQ refuses
 * identities that start with 0x00). reply.c sends to such an identity here,
 * so every handler answers a link as it answers a ZeroMQ peer.  A link that
 * fails is retired, not freed, until the next round of the reactor
 * (linkset_reap): a failure may be found inside a handler that was called by
 * that link's own read.  Anyone may connect, before saying who it is; what
 * one connection can make this server hold is bounded: records are admitted
 * before memory is taken for their data and that memory is bounded for all
 * links together (link.h, --link-memory), an address holds at most --link-
 * per-source links, and a link stalled mid-record (or waiting for link
 * memory) for LINKSET_STALL_MS is closed.
 *
 * In a group with keys (auth_on) every link starts with the handshake of
 * linkauth.h (docs/security.md, "Links"): an accepted link is read for
 * nothing else until it is done, within LINKSET_HANDSHAKE_MS; a stranger
 * (garbage, no key, a wrong or revoked key, too slow) is refused through
 * auth_refused_link (counted, logged with its address) and closed. Its
 * records then carry the role its key has (AUTH_SERVER, AUTH_CLIENT).
 * Links this server opens present its member key (auth_link_self). With
 * --encrypt on, TLS follows (link.c). Without keys nothing of this runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sodium.h>
#include <unistd.h>

#include "link.h"
#include "peerd.h"

#define ACCEPT_MAX     LINKSET_ACCEPT_MAX
#define LINK_IDENT_LEN 9
#define READ_PAUSE     (16u << 20)  /* an accepted link with this much queued is not read */
#define IDLE_MAX_MS    (600 * 1000) /* an accepted link silent this long is closed */

struct accepted {
	struct link *l;
	uint32_t gen;
	uint64_t last_rx_ms;
	uint64_t bytes_in;    /* link_bytes_in when last seen, */
	uint64_t progress_ms; /* and when it last grew (or nothing was asked) */
	struct in_addr src;
	char from[64];
	enum auth_role role; /* AUTH_OPEN without keys; else once the key is known */
};

static int listen_fd = -1;
static char bound_host[64]; /* "" for any address */
static uint16_t bound_port;
static struct accepted acc[ACCEPT_MAX];
static uint32_t next_gen = 1;
static struct link **retired;
static size_t nretired, cap_retired;
static uint64_t listen_paused_until; /* accept failed for want of fds */
static uint64_t accept_warned_ms, source_warned_ms;
static uint64_t sent_gone, received_gone; /* counters of links freed */
static uint64_t hs_done_in, hs_done_out;  /* handshakes completed */

/* poll slots of this round: what linkset_poll_fill put where */
enum slot_kind { SLOT_LISTEN, SLOT_ACCEPTED, SLOT_MEMBER };
static struct {
	enum slot_kind kind;
	uint32_t idx; /* accepted slot, or member id */
} slots[1 + ACCEPT_MAX + PEERD_MAX_MEMBERS];

static void retire(struct link **lp)
{
	struct link *l = *lp;

	if (!l)
		return;
	sent_gone += link_sent(l);
	received_gone += link_received(l);
	*lp = NULL;
	if (nretired == cap_retired) {
		size_t cap = cap_retired ? 2 * cap_retired : 64;
		struct link **r = realloc(retired, cap * sizeof(*r));

		if (!r) { /* only when the caller is not reading it: rare enough */
			link_destroy(&l);
			return;
		}
		retired = r;
		cap_retired = cap;
	}
	retired[nretired++] = l;
}

void linkset_reap(void)
{
	for (size_t i = 0; i < nretired; i++)
		link_destroy(&retired[i]);
	nretired = 0;
}

/* Splits "tcp://HOST:PORT" into an IPv4 address; 0 or -1. */
static int parse_tcp(const char *addr, struct sockaddr_in *sa, char *host, size_t hostlen)
{
	const char *h = addr, *colon;
	char buf[64];
	unsigned long port;
	char *end;

	if (strncmp(h, "tcp://", 6))
		return -1;
	h += 6;
	colon = strrchr(h, ':');
	if (!colon || (size_t)(colon - h) >= sizeof(buf))
		return -1;
	memcpy(buf, h, (size_t)(colon - h));
	buf[colon - h] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (*end || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!strcmp(buf, "*") || !strcmp(buf, "0.0.0.0")) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		buf[0] = '\0';
	} else if (inet_pton(AF_INET, buf, &sa->sin_addr) != 1) {
		return -1;
	}
	if (host)
		snprintf(host, hostlen, "%s", buf);
	return 0;
}

int linkset_open(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int one = 1;

	if (srv->cfg.link_port < 0)
		return 0;
	if (parse_tcp(srv->cfg.listen, &sa, bound_host, sizeof(bound_host)) < 0) {
		pv_info("peer links off: %s is not an IPv4 address (peers use ZeroMQ)",
			srv->cfg.listen);
		return 0;
	}
	sa.sin_port = htons((uint16_t)srv->cfg.link_port);
	link_mem_limit(srv->cfg.link_memory);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		goto fail;
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 64) < 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&sa, &len) < 0)
		goto fail;
	bound_port = ntohs(sa.sin_port);
	pv_info("peer links: listening on tcp://%s:%u (clients and peers send requests there "
		"once they know it)",
		bound_host[0] ? bound_host : "*", bound_port);
	return 0;
fail:
	pv_err("cannot open the peer link listener on %s port %d: %m; choose another "
	       "--link-port, or --link-port off",
	       srv->cfg.listen, srv->cfg.link_port);
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	return -1;
}

int linkset_address(char *out, size_t len)
{
	struct member *self = catalog_self();
	struct sockaddr_in sa;
	char host[64];

	if (listen_fd < 0)
		return -1;
	if (bound_host[0]) {
		snprintf(host, sizeof(host), "%s", bound_host);
	} else if (!self || parse_tcp(self->address, &sa, host, sizeof(host)) < 0 || !host[0]) {
		return -1; /* bound to any address and no member address to name */
	}
	snprintf(out, len, "tcp://%s:%u", host, bound_port);
	return 0;
}

void linkset_close(void)
{
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l) {
			link_flush(acc[i].l);
			link_destroy(&acc[i].l);
		}
	for (size_t i = 0; i < srv->nmembers; i++)
		linkset_member_drop(&srv->members[i], NULL);
	linkset_reap();
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	free(retired);
	retired = NULL;
	cap_retired = 0;
}

int linkset_is_ident(const uint8_t *ident, size_t len)
{
	return len == LINK_IDENT_LEN && ident[0] == 0;
}

static struct accepted *accepted_of(const uint8_t *ident, size_t len)
{
	uint32_t idx, gen;

	if (!linkset_is_ident(ident, len))
		return NULL;
	memcpy(&idx, ident + 1, 4);
	memcpy(&gen, ident + 5, 4);
	if (idx >= ACCEPT_MAX || !acc[idx].l || acc[idx].gen != gen)
		return NULL;
	return &acc[idx];
}

/* Queues h (+ payload); an answer past the queue's bound too (the link is
 * then not read until it drains: linkset_poll_fill). With now, writes what is
 * queued at once (a failure there is found again by linkset_flush, which
 * closes the link). */
static int queue_header(struct link *l, const Pv__Header *h, zmq_msg_t *payload, int now,
			int answer)
{
	uint8_t buf[PV_MAX_HEADER];
	size_t n = wire_header_pack(h, buf);

	if (n == 0) {
		if (payload)
			zmq_msg_close(payload);
		return -1;
	}
	if ((answer ? link_queue_unbounded(l, buf, n, payload) : link_queue(l, buf, n, payload)) <
	    0)
		return -1;
	if (now)
		link_flush(l);
	return 0;
}

int linkset_reply(const uint8_t *ident, size_t ident_len, const Pv__Header *h, zmq_msg_t *payload,
		  int now)
{
	struct accepted *a = accepted_of(ident, ident_len);

	if (!a) {
		/* the link closed: like a ROUTER's unroutable reply, dropped */
		if (payload)
			zmq_msg_close(payload);
		errno = EHOSTUNREACH;
		return -1;
	}
	return queue_header(a->l, h, payload, now, 1);
}

int linkset_send(struct member *m, const Pv__Header *h, zmq_msg_t *payload, int now)
{
	return queue_header(m->link, h, payload, now, 0);
}

/* m's link failed: the next attempt waits 1, 2, 4 ... 64 s. */
static void backoff(struct member *m)
{
	unsigned shift = m->link_failures < 6 ? m->link_failures : 6;

	m->link_failures++;
	m->link_retry_ms = pv_now_ms() + (1000u << shift);
}

void linkset_member_drop(struct member *m, const char *why)
{
	if (!m->link)
		return;
	if (why)
		pv_warn("peer %u: link to %s closed: %s; messages go by ZeroMQ until it is "
			"up again",
			m->id, m->link_address, why);
	retire(&m->link);
	if (m->link_up) {
		forward_link_lost(m->id);
		shm_peer_reset(m->id); /* clients' memory is offered again on the new path */
	}
	m->link_up = 0;
	if (why)
		backoff(m);
}

void linkset_member_address(struct member *m, const char *address)
{
	if (!strcmp(m->link_address, address))
		return;
	linkset_member_drop(m, m->link ? "it advertises a new address" : NULL);
	snprintf(m->link_address, sizeof(m->link_address), "%s", address);
}

void linkset_connect(struct member *m)
{
	int fd;

	if (m->link || !m->link_address[0] || listen_fd < 0 || pv_now_ms() < m->link_retry_ms)
		return;
	fd = link_connect(m->link_address);
	if (fd < 0) {
		pv_debug("peer %u: link to %s: connect failed: %m", m->id, m->link_address);
		backoff(m);
		return;
	}
	m->link = link_new(fd);
	m->link_up = 0;
}

/* Accepted links open from the address a. */
static size_t linkset_from(struct in_addr a)
{
	size_t n = 0;

	for (size_t i = 0; i < ACCEPT_MAX; i++)
		n += acc[i].l && acc[i].src.s_addr == a.s_addr;
	return n;
}

/* Takes one connection from the listener; 0, or -1 when there is none or
 * taking it failed (the caller stops for this round). */
static int accept_one(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = accept4(listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	uint64_t now = pv_now_ms();
	size_t i;

	if (fd < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return -1;
		/* out of descriptors (EMFILE, ENFILE) or memory: the connection
		 * stays queued and the listener readable; stop looking at it for
		 * a second instead of spinning */
		listen_paused_until = now + 1000;
		if (now - accept_warned_ms >= 60000) {
			accept_warned_ms = now;
			pv_warn("peer links: cannot take a connection: %m; raise the open "
				"files limit (LimitNOFILE) if this server has many clients");
		}
		return -1;
	}
	if (linkset_from(sa.sin_addr) >= (size_t)srv->cfg.link_per_source) {
		if (now - source_warned_ms >= 60000) {
			source_warned_ms = now;
			pv_warn("peer links: %s holds %d links already (--link-per-source); "
				"another refused (it uses ZeroMQ)",
				inet_ntoa(sa.sin_addr), srv->cfg.link_per_source);
		}
		close(fd);
		return 0;
	}
	for (i = 0; i < ACCEPT_MAX && acc[i].l; i++)
		;
	if (i == ACCEPT_MAX) {
		if (now - accept_warned_ms >= 60000) {
			accept_warned_ms = now;
			pv_warn("peer links: %d links open already; one from %s refused (it "
				"uses ZeroMQ)",
				ACCEPT_MAX, inet_ntoa(sa.sin_addr));
		}
		close(fd);
		return 0;
	}
	link_tune(fd);
	acc[i].l = link_new(fd);
	if (!acc[i].l)
		return -1;
	acc[i].gen = next_gen++;
	acc[i].last_rx_ms = now;
	acc[i].bytes_in = 0;
	acc[i].progress_ms = now;
	acc[i].src = sa.sin_addr;
	snprintf(acc[i].from, sizeof(acc[i].from), "%s:%u", inet_ntoa(sa.sin_addr),
		 ntohs(sa.sin_port));
	acc[i].role = AUTH_OPEN;
	if (auth_on()) {
		acc[i].role = AUTH_NOBODY; /* until the handshake says */
		link_auth_accept(acc[i].l, srv->cfg.encrypt);
	}
	pv_debug("peer links: link from %s accepted", acc[i].from);
	return 0;
}

struct accepted_ctx {
	uint8_t ident[LINK_IDENT_LEN];
};

static void accepted_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct accepted_ctx *x = arg;
	uint32_t idx;

	memcpy(&idx, x->ident + 1, 4);
	ops_dispatch_record(x->ident, LINK_IDENT_LEN, acc[idx].role, hdr, hdr_len, data);
}

static const char *role_name(enum auth_role r)
{
	return r == AUTH_SERVER ? "a member" : r == AUTH_CLIENT ? "a client" : "nobody";
}

/* The key of the connector of an accepted link (link_lookup_fn): its role
 * is kept for its records. */
static int accepted_lookup(void *arg, const uint8_t id[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES],
			   char *why, size_t whylen)
{
	struct accepted *a = arg;
	enum auth_role r = auth_link_lookup(id, key, why, whylen);

	if (r != AUTH_SERVER && r != AUTH_CLIENT)
		return -1;
	a->role = r;
	return 0;
}

/* An accepted link refused: counted and logged with its address (the
 * IP: auth_refused_link rate-limits), closed. */
static void accepted_refuse(uint32_t idx, const char *why)
{
	auth_refused_link(acc[idx].from, why);
	acc[idx].role = AUTH_NOBODY;
	retire(&acc[idx].l);
}

/* Runs the handshake of accepted link idx; 1 when it is done (records may
 * be read), 0 while it runs or when it failed (the link is closed). */
static int accepted_handshake(uint32_t idx)
{
	char err[256];
	int rc = link_handshake(acc[idx].l, accepted_lookup, &acc[idx], err, sizeof(err));

	if (rc < 0) {
		accepted_refuse(idx, err);
		return 0;
	}
	if (rc > 0)
		return 0;
	hs_done_in++;
	pv_debug("peer links: link from %s: %s, %s", acc[idx].from, role_name(acc[idx].role),
		 link_encrypted(acc[idx].l) ? "encrypted" : "authenticated");
	return 1;
}

static void accepted_input(uint32_t idx)
{
	struct accepted_ctx x;
	char err[256];

	x.ident[0] = 0;
	memcpy(x.ident + 1, &idx, 4);
	memcpy(x.ident + 5, &acc[idx].gen, 4);
	acc[idx].last_rx_ms = pv_now_ms();
	if (link_handshaking(acc[idx].l) && !accepted_handshake(idx))
		return; /* (done: records may have come with it, read on) */
	if (link_read(acc[idx].l, accepted_record, &x, err, sizeof(err)) < 0) {
		pv_debug("peer links: link from %s closed: %s", acc[idx].from, err);
		retire(&acc[idx].l);
		return;
	}
	/* the record handlers may have closed it (linkset_reply finds it gone) */
	if (acc[idx].l && link_bytes_in(acc[idx].l) != acc[idx].bytes_in) {
		acc[idx].bytes_in = link_bytes_in(acc[idx].l);
		acc[idx].progress_ms = acc[idx].last_rx_ms;
	}
}

static void member_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct member *m = catalog_member((uint32_t)(uintptr_t)arg);

	if (m) {
		m->link_failures = 0; /* it answers: the link works */
		peers_reply_record(m, hdr, hdr_len, data);
	}
}

static void member_input(struct member *m)
{
	struct link *l = m->link;
	char err[256];

	if (link_read(l, member_record, (void *)(uintptr_t)m->id, err, sizeof(err)) < 0) {
		/* the member table may have been rebuilt by what was read:
		 * whoever holds l now loses it */
		for (size_t i = 0; i < srv->nmembers; i++)
			if (srv->members[i].link == l)
				linkset_member_drop(&srv->members[i], err);
	}
}

/* m's link is connected (and authenticated): messages go there now. */
static void member_up(struct member *m)
{
	m->link_up = 1;
	shm_peer_reset(m->id); /* offer clients' memory again, on the link */
	pv_info("peer %u: link to %s up%s; messages to it go there", m->id, m->link_address,
		!auth_on()		  ? ""
		: link_encrypted(m->link) ? " (authenticated, encrypted)"
					  : " (authenticated)");
}

/* Runs the handshake of m's link; up when it is done, dropped (with the
 * peer's refusal or the failure, backing off) when it fails. */
static void member_handshake(struct member *m)
{
	char err[256], why[300];
	int rc = link_handshake(m->link, NULL, NULL, err, sizeof(err));

	if (rc > 0)
		return;
	if (rc == 0) {
		hs_done_out++;
		member_up(m);
		return;
	}
	snprintf(why, sizeof(why), "%s%s",
		 link_refused(m->link) ? "the peer " : "handshake: ", err);
	linkset_member_drop(m, why);
}

static void member_writable(struct member *m)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (m->link_up)
		return;
	if (getsockopt(link_fd(m->link), SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e) {
		pv_debug("peer %u: link to %s not made: %s", m->id, m->link_address,
			 strerror(e ? e : errno));
		retire(&m->link);
		backoff(m);
		return;
	}
	if (auth_on()) { /* connected: the handshake first */
		uint8_t id[PV_KEY_BYTES], key[PV_KEY_BYTES];

		auth_link_self(id, key);
		link_auth_connect(m->link, id, key, srv->cfg.encrypt);
		sodium_memzero(key, sizeof(key));
		member_handshake(m);
		return;
	}
	member_up(m);
}

size_t linkset_poll_fill(zmq_pollitem_t *items, size_t max, void *arg)
{
	size_t n = 0;

	if (listen_fd < 0)
		return 0;
	if (n < max && pv_now_ms() >= listen_paused_until) {
		slots[n].kind = SLOT_LISTEN;
		items[n].socket = NULL;
		items[n].fd = listen_fd;
		items[n++].events = ZMQ_POLLIN;
	}
	for (uint32_t i = 0; i < ACCEPT_MAX && n < max; i++) {
		struct link *l = acc[i].l;
		int paused;

		if (!l)
			continue;
		slots[n].kind = SLOT_ACCEPTED;
		slots[n].idx = i;
		items[n].socket = NULL;
		items[n].fd = link_fd(l);
		/* answers are never refused: a client that does not read them
		 * gets no more requests read until they drain; but a record
		 * holding link memory is read to its end, so that the memory
		 * held always belongs to records that can complete (link.h) */
		paused = link_pending(l) >= READ_PAUSE && !link_mem(l);
		if (paused) /* its stall clock stops: this server stopped it */
			acc[i].progress_ms = pv_now_ms();
		if (link_handshaking(l))
			items[n++].events = link_handshake_events(l);
		else
			items[n++].events = (!paused && link_input_wanted(l) ? ZMQ_POLLIN : 0) |
					    (link_pending(l) ? ZMQ_POLLOUT : 0);
	}
	for (size_t i = 0; i < srv->nmembers && n < max; i++) {
		struct member *m = &srv->members[i];

		if (!m->link)
			continue;
		slots[n].kind = SLOT_MEMBER;
		slots[n].idx = m->id;
		items[n].socket = NULL;
		items[n].fd = link_fd(m->link);
		items[n++].events = link_handshaking(m->link) ? link_handshake_events(m->link)
				    : !m->link_up	      ? ZMQ_POLLOUT
						  : (link_input_wanted(m->link) ? ZMQ_POLLIN : 0) |
							(link_pending(m->link) ? ZMQ_POLLOUT : 0);
	}
	return n;
}

void linkset_poll_done(const zmq_pollitem_t *items, size_t n, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		short ev = items[i].revents;
		struct member *m;

		if (!ev)
			continue;
		switch (slots[i].kind) {
		case SLOT_LISTEN:
			for (int k = 0; k < 16 && accept_one() == 0; k++)
				;
			break;
		case SLOT_ACCEPTED:
			if (!acc[slots[i].idx].l || link_fd(acc[slots[i].idx].l) != items[i].fd)
				break;
			if ((ev & (ZMQ_POLLIN | ZMQ_POLLERR)) ||
			    link_handshaking(acc[slots[i].idx].l))
				accepted_input(slots[i].idx);
			else if ((ev & ZMQ_POLLOUT) && link_flush(acc[slots[i].idx].l) < 0)
				retire(&acc[slots[i].idx].l);
			break;
		case SLOT_MEMBER:
			m = catalog_member(slots[i].idx);
			if (!m || !m->link || link_fd(m->link) != items[i].fd)
				break; /* dropped or replaced during this round */
			if (link_handshaking(m->link))
				member_handshake(m);
			else if (!m->link_up && (ev & (ZMQ_POLLOUT | ZMQ_POLLERR)))
				member_writable(m);
			if (m->link && m->link_up && (ev & (ZMQ_POLLIN | ZMQ_POLLERR)))
				member_input(m);
			break;
		}
	}
}

/* Reads links whose input GnuTLS holds decrypted while polling the socket
 * would not show it (link_buffered: only after waiting for link memory). */
static void read_buffered(void)
{
	for (uint32_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l && link_buffered(acc[i].l) && link_input_wanted(acc[i].l))
			accepted_input(i);
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->link && m->link_up && link_buffered(m->link) && link_input_wanted(m->link))
			member_input(m);
	}
}

void linkset_flush(void)
{
	if (auth_on()) /* (either side may ask for TLS) */
		read_buffered();
	/* members first: a failed one fails its parts, whose answers to
	 * clients on links then go out below */
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->link && m->link_up && link_pending(m->link) && link_flush(m->link) < 0) {
			char why[128];

			snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
			linkset_member_drop(m, why);
		}
	}
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l && link_pending(acc[i].l) && link_flush(acc[i].l) < 0) {
			pv_debug("peer links: link from %s failed: %m", acc[i].from);
			retire(&acc[i].l);
		}
}

/* Closes accepted links stalled mid-record for LINKSET_STALL_MS: the sender
 * stopped (or waits on purpose), or the link waited that long for link
 * memory (the others hold it; the client falls back to ZeroMQ). Each is
 * logged once, the first few of a round one by one. */
static void close_stalled(uint64_t now)
{
	size_t closed = 0, mem = 0;

	for (size_t i = 0; i < ACCEPT_MAX; i++) {
		struct link *l = acc[i].l;

		if (!l)
			continue;
		if (!link_partial(l)) {
			acc[i].progress_ms = now;
			continue;
		}
		if (now - acc[i].progress_ms < LINKSET_STALL_MS)
			continue;
		if (++closed <= 5 && link_waiting(l))
			pv_warn("peer links: link from %s closed: it waited %d s for link "
				"memory (--link-memory, %zu bytes held by records partly "
				"received); it falls back to ZeroMQ",
				acc[i].from, LINKSET_STALL_MS / 1000, link_mem_held());
		else if (closed <= 5)
			pv_warn("peer links: link from %s closed: stalled mid-record, nothing "
				"received for %d s",
				acc[i].from, LINKSET_STALL_MS / 1000);
		mem += link_mem(l);
		retire(&acc[i].l);
	}
	if (closed > 5)
		pv_warn("peer links: %zu more links stalled mid-record closed (%zu in all, "
			"holding %zu bytes)",
			closed - 5, closed, mem);
}

/* Closes links whose handshake takes longer than LINKSET_HANDSHAKE_MS:
 * accepted ones are refused (a connection that never says who it is),
 * outgoing ones dropped and tried again later. */
static void close_slow_handshakes(uint64_t now)
{
	char why[128];

	snprintf(why, sizeof(why), "no handshake within %d s", LINKSET_HANDSHAKE_MS / 1000);
	for (uint32_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l && link_handshaking(acc[i].l) &&
		    now - link_handshake_started(acc[i].l) >= LINKSET_HANDSHAKE_MS)
			accepted_refuse(i, why);
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->link && link_handshaking(m->link) &&
		    now - link_handshake_started(m->link) >= LINKSET_HANDSHAKE_MS)
			linkset_member_drop(m, why);
	}
}

void linkset_auth_changed(void)
{
	for (uint32_t i = 0; i < ACCEPT_MAX; i++) {
		struct link *l = acc[i].l;

		if (!l || acc[i].role != AUTH_CLIENT || auth_client_ok(link_peer_id(l)))
			continue;
		pv_warn("peer links: link from %s closed: its client key was revoked (or "
			"removed from the catalog)",
			acc[i].from);
		acc[i].role = AUTH_NOBODY;
		retire(&acc[i].l);
	}
}

void linkset_auth_stats(uint64_t *handshaking, uint64_t *encrypted, uint64_t *done_in,
			uint64_t *done_out)
{
	*handshaking = *encrypted = 0;
	*done_in = hs_done_in;
	*done_out = hs_done_out;
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l) {
			*handshaking += link_handshaking(acc[i].l);
			*encrypted += link_encrypted(acc[i].l);
		}
	for (size_t i = 0; i < srv->nmembers; i++)
		if (srv->members[i].link) {
			*handshaking += link_handshaking(srv->members[i].link);
			*encrypted += link_encrypted(srv->members[i].link);
		}
}

void linkset_tick(void *arg)
{
	uint64_t now = pv_now_ms();

	if (auth_on())
		close_slow_handshakes(now);
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l && now - acc[i].last_rx_ms > IDLE_MAX_MS) {
			pv_info("peer links: link from %s closed: nothing received for %d s",
				acc[i].from, IDLE_MAX_MS / 1000);
			retire(&acc[i].l);
		}
	close_stalled(now);
	/* memory of records dropped half-received goes back to the system
	 * (those of this round when the reactor reaps them; the next tick) */
	if (link_mem_trim())
		pv_debug("peer links: memory of records dropped half-received given back");
}

void linkset_stats(uint64_t *up, uint64_t *accepted, uint64_t *sent, uint64_t *received)
{
	*up = *accepted = 0;
	*sent = sent_gone;
	*received = received_gone;
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l) {
			(*accepted)++;
			*sent += link_sent(acc[i].l);
			*received += link_received(acc[i].l);
		}
	for (size_t i = 0; i < srv->nmembers; i++)
		if (srv->members[i].link) {
			*up += srv->members[i].link_up;
			*sent += link_sent(srv->members[i].link);
			*received += link_received(srv->members[i].link);
		}
}
