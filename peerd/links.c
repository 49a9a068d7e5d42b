/* links.c: this server's peer links (include/link.h): a TCP listener other
 * members connect to, the links accepted on it (peers' requests arrive
 * there and their replies go back the same way) and one outgoing link per
 * member that advertises a link address in its heartbeats. Once a member's
 * outgoing link is up, everything this server sends to it goes there
 * instead of the ZeroMQ DEALER; the DEALER stays for the time before and
 * after (a member without links, or a link that failed, is reached as
 * before). Reactor thread only.
 *
 * An accepted link stands for a ROUTER connection: it has an identity
 * (LINK_IDENT_LEN bytes: 0x00, slot, generation), which ZeroMQ never
 * gives (its own are 5 bytes) and a client cannot choose (ZeroMQ refuses
 * identities that start with 0x00). ops_send sends to such an identity
 * here, so every handler answers a link as it answers a ZeroMQ peer.
 *
 * A link that fails is retired, not freed, until the next round of the
 * reactor (links_reap): a failure may be found inside a handler that was
 * called by that link's own read. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "peerd.h"

#define ACCEPT_MAX     LINKS_ACCEPT_MAX
#define LINK_IDENT_LEN 9
#define RETIRED_MAX    (ACCEPT_MAX + PEERD_MAX_MEMBERS)

struct accepted {
	struct link *l;
	uint32_t gen;
	char from[64];
};

static int listen_fd = -1;
static char bound_host[64]; /* "" for any address */
static uint16_t bound_port;
static struct accepted acc[ACCEPT_MAX];
static uint32_t next_gen = 1;
static struct link *retired[RETIRED_MAX];
static size_t nretired;
static uint64_t sent_gone, received_gone; /* counters of links freed */

/* poll slots of this round: what links_poll_fill put where */
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
	if (nretired == RETIRED_MAX)
		links_reap();
	retired[nretired++] = l;
	*lp = NULL;
}

void links_reap(void)
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

int links_open(void)
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

int links_address(char *out, size_t len)
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

void links_close(void)
{
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l) {
			link_flush(acc[i].l);
			link_destroy(&acc[i].l);
		}
	for (size_t i = 0; i < srv->nmembers; i++)
		links_member_drop(&srv->members[i], NULL);
	links_reap();
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
}

int links_is_ident(const uint8_t *ident, size_t len)
{
	return len == LINK_IDENT_LEN && ident[0] == 0;
}

static struct accepted *accepted_of(const uint8_t *ident, size_t len)
{
	uint32_t idx, gen;

	if (!links_is_ident(ident, len))
		return NULL;
	memcpy(&idx, ident + 1, 4);
	memcpy(&gen, ident + 5, 4);
	if (idx >= ACCEPT_MAX || !acc[idx].l || acc[idx].gen != gen)
		return NULL;
	return &acc[idx];
}

/* Queues h (+ payload); with now, writes what is queued at once (a failure
 * there is found again by links_flush, which closes the link). */
static int queue_header(struct link *l, const Pv__Header *h, zmq_msg_t *payload, int now)
{
	uint8_t buf[PV_MAX_HEADER];
	size_t n = wire_header_pack(h, buf);

	if (n == 0) {
		if (payload)
			zmq_msg_close(payload);
		return -1;
	}
	if (link_queue(l, buf, n, payload) < 0)
		return -1;
	if (now)
		link_flush(l);
	return 0;
}

int links_reply(const uint8_t *ident, size_t ident_len, const Pv__Header *h, zmq_msg_t *payload,
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
	return queue_header(a->l, h, payload, now);
}

int links_send(struct member *m, const Pv__Header *h, zmq_msg_t *payload, int now)
{
	return queue_header(m->link, h, payload, now);
}

void links_member_drop(struct member *m, const char *why)
{
	if (!m->link)
		return;
	if (why)
		pv_warn("peer %u: link to %s closed: %s; messages go by ZeroMQ until it is "
			"up again",
			m->id, m->link_address, why);
	retire(&m->link);
	if (m->link_up)
		forward_link_lost(m->id);
	m->link_up = 0;
}

void links_member_address(struct member *m, const char *address)
{
	if (!strcmp(m->link_address, address))
		return;
	links_member_drop(m, m->link ? "it advertises a new address" : NULL);
	snprintf(m->link_address, sizeof(m->link_address), "%s", address);
}

void links_connect(struct member *m)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	if (m->link || !m->link_address[0] || listen_fd < 0)
		return;
	if (parse_tcp(m->link_address, &sa, NULL, 0) < 0 || sa.sin_addr.s_addr == INADDR_ANY) {
		pv_debug("peer %u: link address %s not usable", m->id, m->link_address);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pv_warn("peer %u: cannot open a link socket: %m", m->id);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		pv_debug("peer %u: link to %s: connect failed: %m", m->id, m->link_address);
		close(fd);
		return;
	}
	m->link = link_new(fd);
	m->link_up = 0;
}

static void accept_one(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = accept4(listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int one = 1;
	size_t i;

	if (fd < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			pv_warn("peer links: accept failed: %m");
		return;
	}
	for (i = 0; i < ACCEPT_MAX && acc[i].l; i++)
		;
	if (i == ACCEPT_MAX) {
		pv_warn("peer links: %d links open already; one from %s refused", ACCEPT_MAX,
			inet_ntoa(sa.sin_addr));
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	acc[i].l = link_new(fd);
	if (!acc[i].l)
		return;
	acc[i].gen = next_gen++;
	snprintf(acc[i].from, sizeof(acc[i].from), "%s:%u", inet_ntoa(sa.sin_addr),
		 ntohs(sa.sin_port));
	pv_debug("peer links: link from %s accepted", acc[i].from);
}

struct accepted_ctx {
	uint8_t ident[LINK_IDENT_LEN];
};

static void accepted_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct accepted_ctx *x = arg;

	ops_dispatch_record(x->ident, LINK_IDENT_LEN, hdr, hdr_len, data);
}

static void accepted_input(uint32_t idx)
{
	struct accepted_ctx x;
	char err[256];

	x.ident[0] = 0;
	memcpy(x.ident + 1, &idx, 4);
	memcpy(x.ident + 5, &acc[idx].gen, 4);
	if (link_read(acc[idx].l, accepted_record, &x, err, sizeof(err)) < 0) {
		pv_debug("peer links: link from %s closed: %s", acc[idx].from, err);
		retire(&acc[idx].l);
	}
}

static void member_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct member *m = catalog_member((uint32_t)(uintptr_t)arg);

	if (m)
		peers_reply_record(m, hdr, hdr_len, data);
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
				links_member_drop(&srv->members[i], err);
	}
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
		return;
	}
	m->link_up = 1;
	pv_info("peer %u: link to %s up; messages to it go there", m->id, m->link_address);
}

size_t links_poll_fill(zmq_pollitem_t *items, size_t max)
{
	size_t n = 0;

	if (listen_fd < 0)
		return 0;
	if (n < max) {
		slots[n].kind = SLOT_LISTEN;
		items[n].socket = NULL;
		items[n].fd = listen_fd;
		items[n++].events = ZMQ_POLLIN;
	}
	for (uint32_t i = 0; i < ACCEPT_MAX && n < max; i++) {
		if (!acc[i].l)
			continue;
		slots[n].kind = SLOT_ACCEPTED;
		slots[n].idx = i;
		items[n].socket = NULL;
		items[n].fd = link_fd(acc[i].l);
		items[n++].events = ZMQ_POLLIN | (link_pending(acc[i].l) ? ZMQ_POLLOUT : 0);
	}
	for (size_t i = 0; i < srv->nmembers && n < max; i++) {
		struct member *m = &srv->members[i];

		if (!m->link)
			continue;
		slots[n].kind = SLOT_MEMBER;
		slots[n].idx = m->id;
		items[n].socket = NULL;
		items[n].fd = link_fd(m->link);
		items[n++].events = !m->link_up
					? ZMQ_POLLOUT
					: ZMQ_POLLIN | (link_pending(m->link) ? ZMQ_POLLOUT : 0);
	}
	return n;
}

void links_poll_done(const zmq_pollitem_t *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		short ev = items[i].revents;
		struct member *m;

		if (!ev)
			continue;
		switch (slots[i].kind) {
		case SLOT_LISTEN:
			for (int k = 0; k < 16; k++)
				accept_one();
			break;
		case SLOT_ACCEPTED:
			if (acc[slots[i].idx].l && link_fd(acc[slots[i].idx].l) == items[i].fd)
				accepted_input(slots[i].idx);
			break;
		case SLOT_MEMBER:
			m = catalog_member(slots[i].idx);
			if (!m || !m->link || link_fd(m->link) != items[i].fd)
				break; /* dropped or replaced during this round */
			if (ev & (ZMQ_POLLOUT | ZMQ_POLLERR))
				member_writable(m);
			if (m->link && m->link_up && (ev & (ZMQ_POLLIN | ZMQ_POLLERR)))
				member_input(m);
			break;
		}
	}
}

void links_flush(void)
{
	for (size_t i = 0; i < ACCEPT_MAX; i++)
		if (acc[i].l && link_pending(acc[i].l) && link_flush(acc[i].l) < 0) {
			pv_debug("peer links: link from %s failed: %m", acc[i].from);
			retire(&acc[i].l);
		}
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->link && m->link_up && link_pending(m->link) && link_flush(m->link) < 0) {
			char why[128];

			snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
			links_member_drop(m, why);
		}
	}
}

void links_stats(uint64_t *up, uint64_t *accepted, uint64_t *sent, uint64_t *received)
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
