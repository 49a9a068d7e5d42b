/* conn.c: fused's connections to the servers, the only file that touches
 * ZeroMQ sockets and links. Owns the context, one DEALER per server in use
 * (with a monitor that reports a dropped connection), the link to a server
 * that has one (include/link.h), the cork that batches a round's sends
 * (batch.h), the poll of one round, receiving, reconnecting, the shared
 * memory offer (SHM_ATTACH) and the pings' transport. What a reply means is
 * part.c's; which server a volume goes to is catalog.c's.
 *
 * Client thread only (and client_new's caller before the thread starts).
 *
 * A server with work outstanding that sends nothing back for FUSED_DEAD_MS,
 * or whose connection drops, is reconnected: its socket is closed and opened
 * again (its volumes move to another holder if any) and everything that was
 * in flight to it is sent again with the same req_id.
 *
 * With a client key (fused --auth: fused_key) a link first runs the
 * handshake of linkauth.h with the client's link key (pv_client_link_key)
 * and its public key as id, then TLS if the server asks for it; a server
 * that refuses the key is logged once and reached by ZeroMQ (CURVE) only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sodium.h>
#include <unistd.h>

#include "auth.h"
#include "batch.h"
#include "client_int.h"
#include "link.h"
#include "pvlog.h"
#include "util.h"

#define RECV_BATCH	 256	/* messages taken from one socket per round */
#define HANDSHAKE_MS	 5000	/* a link's handshake must be done within this */
#define REFUSED_RETRY_MS 600000 /* a server that refused our key is asked again after this */

const struct pv_key *fused_key; /* fused --auth (main.c), or NULL */

/* What a refused CURVE handshake means, for the log and the mount's error. */
#define HANDSHAKE_EVENTS                                                                           \
	(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |             \
	 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

/* Presents this host's client key (fused --auth) and expects the group's. */
static int socket_auth(void *s)
{
	if (!fused_key)
		return 0;
	if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, fused_key->client.group_public,
			   PV_KEY_BYTES) < 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, fused_key->client.public_key, PV_KEY_BYTES) <
		0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, fused_key->client.secret_key, PV_KEY_BYTES) < 0)
		return -1;
	return 0;
}

static void *socket_open(struct client *c, const char *address)
{
	int zero = 0, ivl = 100, ivl_max = 1000;
	void *s = zmq_socket(c->zctx, ZMQ_DEALER);

	if (!s) {
		pv_err("cannot create a socket for %s: %s", address, zmq_strerror(errno));
		return NULL;
	}
	if (zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl)) < 0 ||
	    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max)) < 0 ||
	    wire_socket_limit(s) < 0 || socket_auth(s) < 0) {
		pv_err("cannot set socket options for %s: %s", address, zmq_strerror(errno));
		goto fail;
	}
	if (zmq_connect(s, address) < 0) {
		pv_err("cannot connect to %s: %s", address, zmq_strerror(errno));
		goto fail;
	}
	return s;
fail:
	zmq_close(s);
	return NULL;
}

/* Opens s's DEALER and a monitor that reports when its connection drops
 * (a restarted peerd answers pings again within FUSED_DEAD_MS, but what was
 * in flight on the old connection is lost). 0, or -1 (logged). */
static int conn_open(struct client *c, struct conn *s)
{
	char ep[64];
	int zero = 0;

	s->sock = socket_open(c, s->address);
	if (!s->sock)
		return -1;
	snprintf(ep, sizeof(ep), "inproc://fused-monitor-%llu",
		 (unsigned long long)c->next_mon_id++);
	if (zmq_socket_monitor(s->sock, ep, ZMQ_EVENT_DISCONNECTED | HANDSHAKE_EVENTS) < 0 ||
	    !(s->mon = zmq_socket(c->zctx, ZMQ_PAIR)) ||
	    zmq_setsockopt(s->mon, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_connect(s->mon, ep) < 0) {
		/* not fatal: the silence rule still finds a dead server */
		pv_warn("cannot monitor the connection to %s: %s", s->address, zmq_strerror(errno));
		if (s->mon)
			zmq_close(s->mon);
		s->mon = NULL;
	}
	return 0;
}

static void conn_close(struct client *c, struct conn *s)
{
	if (s->sock)
		batch_cork_flush_socket(c->cork, s->sock);
	if (s->mon) {
		zmq_socket_monitor(s->sock, NULL, 0);
		zmq_close(s->mon);
		s->mon = NULL;
	}
	if (s->sock)
		zmq_close(s->sock);
	s->sock = NULL;
	link_destroy(&s->link);
	s->link_up = 0;
}

/* A refused handshake: said once per server, and kept for the error of a
 * mount that gets no catalog. */
static void handshake_failed(struct client *c, struct conn *s, uint16_t event, uint32_t value)
{
	char why[256];

	if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
		snprintf(why, sizeof(why),
			 "server %s refused this host's key (status %u): it is revoked, unknown "
			 "to the group, or made for another group; see 'peerctl client list'",
			 s->address, value);
	else if (!fused_key)
		snprintf(why, sizeof(why),
			 "server %s wants a key (the group runs with --auth): give fused --auth "
			 "FILE, a client key made by 'peerctl client add NAME'",
			 s->address);
	else
		snprintf(why, sizeof(why),
			 "server %s failed the key handshake: it is not a server of the group this "
			 "key was made for, or it runs without --auth",
			 s->address);
	if (!s->auth_logged)
		pv_err("%s", why);
	s->auth_logged = 1;
	snprintf(c->auth_error, sizeof(c->auth_error), "%s", why);
}

/* Whether s's connection dropped since the last call (drains the events). */
static int conn_disconnected(struct client *c, struct conn *s)
{
	int dropped = 0;

	for (;;) {
		zmq_msg_t ev;
		int more;

		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, s->mon, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return dropped;
		}
		if (zmq_msg_size(&ev) >= 6) {
			uint16_t event;
			uint32_t value;

			memcpy(&event, zmq_msg_data(&ev), sizeof(event));
			memcpy(&value, (char *)zmq_msg_data(&ev) + 2, sizeof(value));
			if (event == ZMQ_EVENT_DISCONNECTED)
				dropped = 1;
			else if (event & HANDSHAKE_EVENTS)
				handshake_failed(c, s, event, value);
		}
		more = zmq_msg_more(&ev);
		zmq_msg_close(&ev);
		while (more) { /* the endpoint frame */
			zmq_msg_init(&ev);
			more = zmq_msg_recv(&ev, s->mon, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&ev);
			zmq_msg_close(&ev);
		}
	}
}

/* ---- links (include/link.h) -------------------------------------------- */

/* A server that advertises a link address (in the catalog) is talked to on
 * a TCP connection of our own once it is up, read and written by this
 * thread: no ZeroMQ IO thread on either side. Until then, and whenever it
 * fails, the DEALER carries everything as before. */

/* s's link address as the catalog gives it (a changed one replaces the
 * link at the next scan: this may run inside that link's read). */
void conn_link_address(struct client *c, struct conn *s)
{
	const char *addr = "";

	for (size_t i = 0; i < c->n_members; i++)
		if (strcmp(c->members[i].address, s->address) == 0)
			addr = c->members[i].link;
	/* "" may only mean the answering server has not heard s yet (it just
	 * started): keep what we know; a dead address fails on its own */
	if (!addr[0] || strcmp(addr, s->link_address) == 0)
		return;
	snprintf(s->link_address, sizeof(s->link_address), "%s", addr);
	s->link_failures = 0;
	s->link_retry_ms = 0;
}

/* Starts connecting to s's link address. */
static void link_start(struct conn *s, uint64_t now)
{
	int fd = link_connect(s->link_address);

	if (fd < 0) { /* EINVAL: not an address we can link to; retried rarely */
		s->link_retry_ms = now + (errno == EINVAL ? 60000 : 1000);
		return;
	}
	s->link_retry_ms = now + 60000; /* unless it works or fails sooner */
	s->link = link_new(fd);
	s->link_up = 0;
	snprintf(s->link_to, sizeof(s->link_to), "%s", s->link_address);
}

/* s's link failed or is stale (why): closed, tried again later (1, 2, 4
 * ... 64 s: the count is reset only by an answer on a link); what was in
 * flight on it goes again by the DEALER, with the same request ids. The
 * catalog is asked for again: a restarted server listens elsewhere. */
static void link_lost(struct client *c, struct conn *s, const char *why)
{
	int was_up = s->link_up;
	unsigned shift = s->link_failures < 6 ? s->link_failures : 6;
	unsigned inflight = 0;

	link_destroy(&s->link);
	s->link_up = 0;
	s->link_failures++;
	s->link_retry_ms = pv_now_ms() + (1000u << shift);
	if (!was_up) {
		pv_debug("server %s: link to %s not made: %s", s->address, s->link_to, why);
		catalog_request(c, CATALOG_TIMEOUT_MS);
		return;
	}
	for (struct part *p = c->all.next; p != &c->all; p = p->next)
		inflight += p->conn == s && p->on_link;
	if (inflight)
		pv_warn("server %s: link to %s lost with %u requests on it (%s); they go again "
			"by ZeroMQ, as everything until the link is up again",
			s->address, s->link_to, inflight, why);
	else
		pv_info("server %s: link to %s closed (%s); ZeroMQ until it is up again",
			s->address, s->link_to, why);
	part_resend(c, s, 1);
	/* it bound our memory to the link: offer it again on the DEALER */
	conn_attach(c, s);
	catalog_request(c, CATALOG_TIMEOUT_MS);
}

/* s's link is connected (and authenticated): requests go there. */
static void link_up(struct client *c, struct conn *s)
{
	s->link_up = 1;
	pv_info("server %s: link to %s up%s; requests go there", s->address, s->link_to,
		!fused_key		  ? ""
		: link_encrypted(s->link) ? " (authenticated, encrypted)"
					  : " (authenticated)");
	/* the server binds our shared memory to the connection it came on */
	conn_attach(c, s);
}

/* Runs the handshake of s's link: up when done; a refusal of our key is
 * logged once and the link tried again only after REFUSED_RETRY_MS (ZeroMQ
 * carries everything meanwhile: the key may be added to the catalog);
 * another failure is a link failure. */
static void link_handshake_step(struct client *c, struct conn *s)
{
	char err[256];
	int rc = link_handshake(s->link, NULL, NULL, err, sizeof(err));

	if (rc > 0)
		return;
	if (rc == 0) {
		s->link_refused = 0;
		link_up(c, s);
		return;
	}
	if (link_refused(s->link)) {
		if (!s->link_refused)
			pv_warn("server %s: link to %s %s; requests to it keep to ZeroMQ",
				s->address, s->link_to, err);
		s->link_refused = 1;
		link_lost(c, s, err);
		s->link_retry_ms = pv_now_ms() + REFUSED_RETRY_MS;
		return;
	}
	link_lost(c, s, err);
}

/* s's link connect finished (writable): the handshake (with a key), up,
 * or failed. */
static void link_connected(struct client *c, struct conn *s)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(link_fd(s->link), SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e) {
		link_lost(c, s, strerror(e ? e : errno));
		return;
	}
	if (fused_key && fused_key->kind == PV_KEY_CLIENT) {
		uint8_t key[PV_KEY_BYTES];

		if (pv_client_link_key(&fused_key->client, key) < 0) {
			pv_warn("server %s: the client key's group key is not a valid public "
				"key: no links, ZeroMQ only",
				s->address);
			link_lost(c, s, "no link key");
			s->link_retry_ms = UINT64_MAX; /* no key: never */
			return;
		}
		link_auth_connect(s->link, fused_key->client.public_key, key, 0);
		sodium_memzero(key, sizeof(key));
		link_handshake_step(c, s);
		return;
	}
	link_up(c, s);
}

/* Sends h (+ payload, moved) to s: on its link when up (written at the end
 * of the round with what else the round queued when batch, else at once),
 * else by the cork (batched when batch). 0, or -1 with errno. */
int conn_send(struct client *c, struct conn *s, const Pv__Header *h, zmq_msg_t *payload, int batch)
{
	uint8_t buf[PV_MAX_HEADER];
	size_t n;

	if (!s->link_up)
		return batch_cork_send(c->cork, s->sock, NULL, 0, h, payload, batch);
	n = wire_header_pack(h, buf);
	if (n == 0) {
		if (payload)
			zmq_msg_close(payload);
		return -1;
	}
	/* unbounded like the DEALER (ZMQ_SNDHWM 0): the kernel's max_background
	 * bounds what is in flight */
	if (link_queue_unbounded(s->link, buf, n, payload) < 0)
		return -1;
	if (!batch) /* a failure shows again at conn_flush, which drops the link */
		link_flush(s->link);
	return 0;
}

/* The server at address, connected on first use; NULL if that fails. */
struct conn *conn_get(struct client *c, const char *address)
{
	struct conn *s;

	for (s = c->conns; s; s = s->next)
		if (strcmp(s->address, address) == 0)
			return s;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->address = strdup(address))) {
		pv_err("out of memory");
		free(s);
		return NULL;
	}
	if (conn_open(c, s) < 0) {
		free(s->address);
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < c->n_members; i++)
		if (strcmp(c->members[i].address, address) == 0)
			s->member_id = c->members[i].id;
	conn_link_address(c, s);
	s->local = conn_is_local(address);
	s->last_rx_ms = pv_now_ms();
	s->next = c->conns;
	c->conns = s;
	pv_debug("connected to %s", address);
	conn_attach(c, s);
	return s;
}

static int conn_in_use(struct client *c, struct conn *s)
{
	int routed = 0;

	for (size_t i = 0; i < c->n_vols; i++) {
		if (c->vols[i].conn == s)
			return 1;
		routed |= c->vols[i].conn != NULL;
	}
	/* the catalog server is pinged (to learn of catalog changes) only while
	 * no volume is routed anywhere: otherwise the pings to the servers in
	 * use carry the catalog version, and a server holding nothing of ours
	 * should not count us as its client */
	return s == c->cat_conn && !routed;
}

/* Whether a server address is on this host: ipc://, a loopback address, or
 * an address of one of this host's interfaces. Numeric addresses only (no
 * name lookup on the client thread); "localhost" counts as local. The
 * shared memory's token is only ever sent to such servers, and fused
 * keeps to a holder of its volume on this host (catalog.c). */
int conn_is_local(const char *address)
{
	struct addrinfo hints, *ai = NULL;
	struct ifaddrs *ifs = NULL;
	char host[256];
	const char *colon;
	size_t len;
	int local = 0;

	if (strncmp(address, "ipc://", 6) == 0)
		return 1;
	if (strncmp(address, "tcp://", 6) != 0)
		return 0;
	address += 6;
	colon = strrchr(address, ':');
	len = colon ? (size_t)(colon - address) : strlen(address);
	if (len && address[0] == '[' && address[len - 1] == ']') {
		address++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(host))
		return 0;
	memcpy(host, address, len);
	host[len] = '\0';
	if (strcmp(host, "localhost") == 0)
		return 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return 0;
	if (ai->ai_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;

		local = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	} else if (ai->ai_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ai->ai_addr;

		local = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
	}
	if (!local && getifaddrs(&ifs) == 0) {
		for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
			if (!i->ifa_addr || i->ifa_addr->sa_family != ai->ai_family)
				continue;
			if (ai->ai_family == AF_INET)
				local =
				    ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr ==
				    ((const struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr;
			else
				local =
				    !memcmp(&((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
					    &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
					    sizeof(struct in6_addr));
		}
		freeifaddrs(ifs);
	}
	freeaddrinfo(ai);
	return local;
}

/* Offers s our shared memory (PV_OP_SHM_ATTACH) if we have some and s is
 * on this host; the reply sets s->shm. */
void conn_attach(struct client *c, struct conn *s)
{
	Pv__ShmAttach a = PV__SHM_ATTACH__INIT;
	const uint8_t *token;
	const char *path;

	s->shm = SHM_NONE;
	if (!c->shm || !shm_enabled() || !s->sock)
		return;
	if (!s->local) {
		s->shm = SHM_REFUSED; /* its token stays here */
		if (!s->shm_logged)
			pv_info("server %s: block data goes by socket (not on this host)",
				s->address);
		s->shm_logged = 1;
		return;
	}
	shm_describe(&path, &a.size, &token);
	a.path = (char *)path;
	a.token.data = (uint8_t *)token;
	a.token.len = PV_SHM_TOKEN;
	a.passed = s->shm_passed;
	if (part_session(c, s, PV_OP_SHM_ATTACH, NULL, &a.base) == 0)
		s->shm = SHM_PENDING;
}

/* The pass socket a refused SHM_ATTACH's answer names (a peerd of another
 * user, which may not open our memory by path), copied into path; 1 if
 * there is one and the memfd was not passed to s yet. */
static int pass_hint(const struct conn *s, const struct answer *a, char *path, size_t len)
{
	Pv__ShmAttach *hint;
	int got;

	if (a->h->status == PV_ST_OK || !a->data || a->extra || s->shm_passes >= 3)
		return 0;
	hint = (Pv__ShmAttach *)wire_body_decode(&pv__shm_attach__descriptor,
						 zmq_msg_data(a->data), zmq_msg_size(a->data));
	if (!hint)
		return 0;
	got = hint->path && hint->path[0] && strlen(hint->path) < len;
	if (got)
		memcpy(path, hint->path, strlen(hint->path) + 1);
	pv__shm_attach__free_unpacked(hint, NULL);
	return got;
}

/* The answer to SHM_ATTACH: whether s mapped our shared memory. Refused
 * with a pass socket named: the memfd goes there, and SHM_ATTACH again
 * with "passed". */
void conn_attach_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a)
{
	const Pv__Header *h = a->h;
	char path[128], err[256];
	int pass = pass_hint(s, a, path, sizeof(path));

	part_free(c, p);
	if (pass) {
		s->shm_passes++;
		s->shm_passed = shm_pass(path, err, sizeof(err)) == 0;
		if (s->shm_passed) {
			pv_info("server %s runs as another user: our shared memory passed over its "
				"pass socket %s",
				s->address, path);
			conn_attach(c, s);
			if (s->shm == SHM_PENDING)
				return; /* its answer decides */
		} else {
			pv_info("server %s: cannot pass it our shared memory: %s", s->address,
				err);
		}
	}
	s->shm = h->status == PV_ST_OK ? SHM_ON : SHM_REFUSED;
	if (s->shm == SHM_ON)
		s->shm_passes = 0;
	if (!s->shm_logged) {
		if (s->shm == SHM_ON)
			pv_info("server %s is on this host: block data goes through shared "
				"memory",
				s->address);
		else
			pv_info("server %s: block data goes by socket (shared memory: %s)",
				s->address, h->message[0] ? h->message : "refused");
	}
	s->shm_logged = 1;
}

/* Sends a PING with the volumes this mount has open through s. */
void conn_ping(struct client *c, struct conn *s)
{
	Pv__ClientState st = PV__CLIENT_STATE__INIT;
	static char host[256];
	char *names[64];
	size_t n = 0;

	if (!s->sock)
		return;
	if (!host[0] && gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	st.host = host;
	for (struct open_vol *o = c->opens; o && n < sizeof(names) / sizeof(names[0]);
	     o = o->next) {
		struct vol_view *v = catalog_volume(c, o->name);

		/* an open of a deleted volume does not hold its successor */
		if (v && v->conn == s && v->attr.id == o->id)
			names[n++] = o->name;
	}
	st.n_open_volumes = n;
	st.open_volumes = names;
	st.local = s->local;
	/* a server does not move a client the group moved lately */
	if (c->moved_ms) {
		uint64_t ago = (pv_now_ms() - c->moved_ms) / 1000 + 1;

		st.moved_ago_s = ago < UINT32_MAX ? (uint32_t)ago : UINT32_MAX;
	}
	if (part_session(c, s, PV_OP_PING, NULL, &st.base) == 0)
		s->next_ping_ms = pv_now_ms() + FUSED_PING_MS;
}

/* Takes what s has to give: [header][data?][extra frames...]. */
static void receive(struct client *c, struct conn *s)
{
	for (int n = 0; n < RECV_BATCH; n++) {
		zmq_msg_t hdr, data, x;
		int have_data = 0, extra = 0, more;

		zmq_msg_init(&hdr);
		if (zmq_msg_recv(&hdr, s->sock, ZMQ_DONTWAIT) < 0) {
			if (errno != EAGAIN && errno != EINTR)
				pv_warn("receive from %s: %s", s->address, zmq_strerror(errno));
			zmq_msg_close(&hdr);
			return;
		}
		s->last_rx_ms = pv_now_ms();
		more = zmq_msg_more(&hdr);
		zmq_msg_init(&data);
		if (more) { /* parts of one message arrive together: no wait */
			if (zmq_msg_recv(&data, s->sock, 0) >= 0)
				have_data = 1;
			more = have_data && zmq_msg_more(&data);
		}
		while (more) {
			zmq_msg_init(&x);
			more = zmq_msg_recv(&x, s->sock, 0) >= 0 && zmq_msg_more(&x);
			zmq_msg_close(&x);
			extra++;
		}
		part_reply(c, s, zmq_msg_data(&hdr), zmq_msg_size(&hdr), have_data ? &data : NULL,
			   extra, 0);
		zmq_msg_close(&hdr);
		zmq_msg_close(&data);
	}
}

/* Whose link link_record reads. */
struct link_ctx {
	struct client *c;
	struct conn *s;
};

/* A reply that came on s's link. */
static void link_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct link_ctx *x = arg;

	x->s->last_rx_ms = pv_now_ms();
	x->s->link_failures = 0; /* it answers: the link works */
	part_reply(x->c, x->s, hdr, hdr_len, data, 0, 0);
}

/* Takes what s's link has to give. */
static void link_input(struct client *c, struct conn *s)
{
	struct link_ctx x = {c, s};
	char err[256];

	if (link_read(s->link, link_record, &x, err, sizeof(err)) < 0)
		link_lost(c, s, err);
}

/* s went silent or its connection dropped (why says which): open its socket
 * again, move its volumes to another holder if there is one, and send again
 * everything that was in flight to it, with the same req_ids. */
static void conn_reconnect(struct client *c, struct conn *s, uint64_t now, const char *why)
{
	unsigned inflight = s->outstanding, resent = 0, moved = 0;

	conn_close(c, s);
	conn_open(c, s);
	s->shm = SHM_NONE;
	s->wait_start_ms = now;
	s->last_rx_ms = now;
	for (size_t i = 0; i < c->n_vols; i++) {
		struct vol_view *v = &c->vols[i];
		struct conn *alt;

		if (v->conn == s && (alt = catalog_other_holder(c, v, s))) {
			v->conn = alt;
			moved++;
		}
	}
	resent = part_resend(c, s, 0);
	conn_attach(c, s);
	pv_warn("server %s: %s with %u requests outstanding; reconnected, %u re-sent, %u "
		"volumes moved to another holder",
		s->address, why, inflight, resent, moved);
}

/* Per-server timers, every SCAN_MS once the catalog is known: a server
 * with work outstanding and nothing back for FUSED_DEAD_MS is reconnected;
 * servers in use are pinged; links are replaced or made. */
void conn_timers(struct client *c, uint64_t now)
{
	for (struct conn *s = c->conns; s; s = s->next) {
		uint64_t since =
		    s->wait_start_ms > s->last_rx_ms ? s->wait_start_ms : s->last_rx_ms;

		/* since may be after now: parts re-sent by run_timers (this round)
		 * started the wait after now was read */
		if (s->outstanding && since < now && now - since >= FUSED_DEAD_MS)
			conn_reconnect(c, s, now, "nothing back for 3 s");
		if (now >= s->next_ping_ms && conn_in_use(c, s))
			conn_ping(c, s);
		if (s->link && strcmp(s->link_to, s->link_address) != 0)
			link_lost(c, s, "the server gives another link address now");
		else if (s->link && link_handshaking(s->link) &&
			 now - link_handshake_started(s->link) >= HANDSHAKE_MS)
			link_lost(c, s, "no handshake answer within 5 s");
		if (c->links && s->sock && s->link_address[0] && !s->link &&
		    now >= s->link_retry_ms)
			link_start(s, now);
	}
}

/* Sends what this round queued; parts whose send failed wait and go again,
 * as a part whose send fails at once does (part_send). */
void conn_flush(struct client *c)
{
	struct batch_drop d;

	/* links first: a failed one sends its parts again by the cork */
	for (struct conn *s = c->conns; s; s = s->next)
		if (s->link_up && link_pending(s->link) && link_flush(s->link) < 0) {
			char why[160];

			snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
			link_lost(c, s, why);
		}
	batch_cork_flush(c->cork);
	while (batch_cork_next_drop(c->cork, &d)) {
		struct part *p = part_find(c, d.req_id);

		/* (sent again since, on a new connection: that copy stands) */
		if (!p || !p->conn || p->conn->sock != d.sock)
			continue;
		if (client_warn_allowed(c))
			pv_warn("cannot send %s to %s; trying again", wire_op_name(p->op),
				p->conn->address);
		part_unsend(c, p);
		p->shm_sent = 0; /* never left: the server did not see the slot */
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
	}
}

/* Waits up to timeout_ms for the sockets (and the eventfd and /dev/fuse),
 * then takes what arrived. Call after conn_flush: it may drop a link, and
 * the links' events are chosen here. */
void conn_poll(struct client *c, long timeout_ms)
{
	zmq_pollitem_t items[400];
	struct conn *conns[400];
	int is_link[400];
	size_t n = 0;
	int rc, ffd;

	items[n].socket = NULL;
	items[n].fd = c->efd;
	items[n].events = ZMQ_POLLIN;
	is_link[n] = 0;
	conns[n++] = NULL;
	for (struct conn *s = c->conns; s && n + 4 <= 400; s = s->next) {
		if (!s->sock)
			continue;
		items[n].socket = s->sock;
		items[n].events = ZMQ_POLLIN;
		is_link[n] = 0;
		conns[n++] = s;
		if (s->mon) {
			items[n].socket = s->mon;
			items[n].events = ZMQ_POLLIN;
			is_link[n] = 0;
			conns[n++] = s;
		}
		if (s->link) {
			items[n].socket = NULL;
			items[n].fd = link_fd(s->link);
			items[n].events =
			    link_handshaking(s->link) ? link_handshake_events(s->link)
			    : !s->link_up	      ? ZMQ_POLLOUT
					  : ZMQ_POLLIN | (link_pending(s->link) ? ZMQ_POLLOUT : 0);
			is_link[n] = 1;
			conns[n++] = s;
		}
	}
	ffd = loop_fuse_fd();
	if (ffd >= 0) { /* the kernel's requests: see loop.c */
		items[n].socket = NULL;
		items[n].fd = ffd;
		items[n].events = ZMQ_POLLIN;
		is_link[n] = 0;
		conns[n++] = NULL;
	}
	rc = zmq_poll(items, n, timeout_ms);
	if (rc < 0) {
		if (errno != EINTR)
			pv_warn("zmq_poll: %s", zmq_strerror(errno));
		return;
	}
	if (items[0].revents & ZMQ_POLLIN) {
		uint64_t v;

		if (read(c->efd, &v, sizeof(v)) < 0) {
			/* EAGAIN: someone else's wake-up already taken */
		}
	}
	for (size_t i = 1; i < n; i++) {
		struct conn *s = conns[i];

		if (!s) { /* /dev/fuse, last: replies above freed their slots */
			if (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) /* ERR: unmounted */
				loop_fuse_ready();
		} else if (is_link[i]) {
			/* the link may have been replaced during this round */
			if (!items[i].revents || !s->link || link_fd(s->link) != items[i].fd)
				continue;
			if (link_handshaking(s->link))
				link_handshake_step(c, s);
			else if (!s->link_up && (items[i].revents & (ZMQ_POLLOUT | ZMQ_POLLERR)))
				link_connected(c, s);
			else if (s->link_up && (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
				link_input(c, s);
			else if (s->link_up && (items[i].revents & ZMQ_POLLOUT) &&
				 link_flush(s->link) < 0)
				link_lost(c, s, "send failed");
		} else if (!(items[i].revents & ZMQ_POLLIN)) {
			continue;
		} else if (items[i].socket == s->sock) {
			receive(c, s);
		} else if (items[i].socket == s->mon && conn_disconnected(c, s) && s->outstanding &&
			   c->have_catalog) {
			conn_reconnect(c, s, pv_now_ms(), "connection lost");
		}
	}
}

/* Creates the ZeroMQ context and the cork; 0, or -1 (logged). */
int conn_init(struct client *c)
{
	c->zctx = zmq_ctx_new();
	if (!c->zctx) {
		pv_err("cannot create a ZeroMQ context: %s", zmq_strerror(errno));
		return -1;
	}
	c->cork = batch_cork_new();
	if (!c->cork) {
		pv_err("out of memory");
		return -1;
	}
	return 0;
}

/* Sends what the last round queued, closes every connection and ends the
 * ZeroMQ context. */
void conn_fini(struct client *c)
{
	struct conn *s, *next;

	batch_cork_free(c->cork); /* sends what the last round queued */
	c->cork = NULL;
	for (s = c->conns; s; s = next) {
		next = s->next;
		conn_close(c, s);
		free(s->address);
		free(s);
	}
	c->conns = NULL;
	if (c->zctx)
		zmq_ctx_term(c->zctx);
	c->zctx = NULL;
}
