/* client.c: fused's side of the wire. The only file that speaks ZeroMQ: it
 * owns the context, one DEALER socket per server in use, the catalog and the
 * routing of each volume to a server, and every request in flight.
 *
 * Threads: the client thread (client_main) owns all sockets and all state
 * below "client thread only". FUSE worker threads call client_read/_write/
 * _flush/_trim/_volume_opened, which only build a struct call and append it
 * to a mutex-protected queue, then poke an eventfd that the client thread
 * polls with zmq_poll. The client thread sends the call as one or more
 * parts (wire requests) and answers the FUSE request with fuse_reply_* when
 * the last part is done. Nothing blocks per data request.
 *
 *   fs.c (any thread)        client thread                      peerd
 *   client_write() --queue--> call -> part(req_id) --DEALER--> ROUTER
 *                             hash[req_id] <------------------- reply
 *                             fuse_reply_write()
 *
 * Failures: MOVED, BUSY and UNAVAILABLE are retried until the part's
 * deadline (--timeout after it was made). A server with work outstanding
 * that sends nothing back for FUSED_DEAD_MS is declared dead: its socket is
 * closed and opened again (its volumes move to another holder if any) and
 * everything that was in flight to it is sent again with the same req_id.
 * The catalog is read at start (client_new, in the caller's thread, before
 * the client thread exists), on demand from lookup/readdir, and whenever a
 * PING reply carries a different catalog version.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "fused.h"
#include "link.h"
#include "pvlog.h"
#include "util.h"

#define HASH_SIZE	   4096 /* buckets of the req_id table (power of 2) */
#define CATALOG_TIMEOUT_MS 2000 /* a catalog refresh that takes longer failed */
#define SCAN_MS		   100	/* deadline scan period */
#define RECV_BATCH	   256	/* messages taken from one socket per round */

static __thread int on_client_thread; /* set in client_main */

enum call_kind { CALL_READ, CALL_WRITE, CALL_FLUSH, CALL_TRIM, CALL_OPEN, CALL_CLOSE };

/* One FUSE-level operation, from the FUSE thread that made it to its reply.
 * Made by a FUSE thread, owned by the client thread once queued. */
struct call {
	enum call_kind kind;
	fuse_req_t req;		      /* NULL for OPEN/CLOSE */
	char volume[PV_MAX_NAME + 1]; /* "" with FLUSH: every open volume */
	uint64_t vol_id;	      /* the volume's id when the file was opened */
	uint64_t offset;
	uint64_t length;
	uint32_t flags;
	zmq_msg_t data;	     /* WRITE only: the bytes */
	void *slot;	     /* WRITE: the shared memory slot data lies in, or NULL */
	struct call *next;   /* submission queue; guarded by client.lock */
	unsigned parts_left; /* client thread only */
	int err;	     /* first error of a part; client thread only */
};

/* One peerd we talk to. Client thread only. */
struct conn {
	char *address;
	uint32_t member_id;	/* 0 until known */
	void *sock;		/* DEALER; NULL if it could not be opened */
	void *mon;		/* PAIR receiving sock's disconnect events, or NULL */
	unsigned outstanding;	/* parts in flight here */
	uint64_t wait_start_ms; /* when outstanding last rose from 0 */
	uint64_t last_rx_ms;	/* when anything last came back */
	uint64_t next_ping_ms;
	int version_logged;
	int shm;		/* enum shm_state: whether it mapped our shared memory */
	int shm_logged;		/* the outcome of the first attach was logged */
	uint32_t proto_version; /* of its last reply; 0 until one came */
	char link_address[64];	/* its peer link listener (catalog), or "" */
	struct link *link;	/* the link to it (link.h), or NULL */
	char link_to[64];	/* the address link was made to */
	int link_up;		/* connected: everything to it goes there */
	uint64_t link_retry_ms; /* no new link before then */
	unsigned link_failures; /* in a row: the retry backs off */
	struct conn *next;
};

/* One wire request. Client thread only. */
struct part {
	uint64_t req_id;
	uint32_t op;
	struct call *call; /* NULL for PING and CATALOG */
	char volume[PV_MAX_NAME + 1];
	uint64_t vol_id; /* data parts: the id of the volume opened (Header.volume_id) */
	uint64_t offset;
	uint32_t length;
	struct conn *conn; /* in flight there; NULL while waiting */
	uint64_t deadline_ms;
	uint64_t retry_ms;	  /* while waiting: when to send again */
	struct part *hnext;	  /* hash chain */
	struct part *prev, *next; /* list of all parts */
	struct part *wnext;	  /* waiting list */
	void *slot;		  /* READ: shared memory slot for the data, or NULL */
	int shm_sent;		  /* in flight with PV_F_SHM: conn may touch the slot */
	int on_link;		  /* in flight on conn's link (not its DEALER) */
	struct vmap *map;	  /* READ sent with PV_F_MAP: the mapping it names
				   * (a reference), or NULL */
};

enum shm_state { SHM_NONE, SHM_PENDING, SHM_ON, SHM_REFUSED };

/* A volume's mapping of its server's data file (map.c): m while mapped,
 * else where asking for it stands. */
enum map_state { MAP_NONE, MAP_PENDING, MAP_REFUSED };
#define MAP_RETRY_MS 60000 /* after a refusal or no answer, ask again then */

struct vol_map {
	struct vmap *m;	   /* the mapping (one reference), or NULL */
	uint32_t server;   /* with m: the member whose data file it is */
	int state;	   /* without m: enum map_state */
	uint64_t retry_ms; /* MAP_REFUSED: ask again then */
};

struct member {
	uint32_t id;
	char *address;
	char *link; /* its link address, "" if none */
};

/* The client thread's view of a catalog volume, with its route. */
struct vol_view {
	struct volume_attr attr;
	uint32_t *holders;
	size_t n_holders;
	struct conn *conn; /* where its requests go */
	struct vol_map map;
};

struct open_vol {
	char name[PV_MAX_NAME + 1];
	uint64_t id; /* opened as this volume id (a deleted one's opens stay until released) */
	unsigned count;
	struct open_vol *next;
};

struct client {
	/* set before the client thread starts, read-only afterwards */
	char **group;
	size_t n_group;
	uint64_t timeout_ms;
	uint64_t client_id;
	int shm;   /* offer the shared memory (shm.c) to servers */
	int links; /* use the servers' links (link.h) */
	int map;   /* map data files of servers on this host (map.c) */
	void *zctx;
	int efd;
	pthread_t thread;
	int started;

	/* guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct call *q_head, **q_tail;
	int stopping;
	int cat_wanted;
	uint64_t cat_seq;	 /* bumped when a catalog fetch ends */
	uint64_t cat_tried_ms;	 /* when the last fetch ended (0: never) */
	struct volume_attr *pub; /* published volume list */
	size_t n_pub;

	/* client thread only */
	struct conn *conns;
	struct conn *cat_conn; /* where catalog requests go */
	size_t cat_next;	/* next candidate when cat_conn fails */
	int have_catalog;
	uint64_t cat_version;
	struct part *cat_part; /* catalog request in flight, or NULL */
	struct member *members;
	size_t n_members;
	struct vol_view *vols;
	size_t n_vols;
	struct open_vol *opens;
	struct part *hash[HASH_SIZE];
	struct part all; /* sentinel of the list of all parts */
	struct part *waiting;
	uint64_t next_req_id;
	uint64_t next_mon_id;
	uint64_t next_scan_ms;
	uint64_t last_warn_ms;
	unsigned warn_suppressed;
	struct batch_cork *cork; /* what one round sends, batched (batch.h) */
};

/* ---- small helpers ---------------------------------------------------- */

/* The one mapping from a reply status to an errno. */
static int status_errno(int32_t status)
{
	switch (status) {
	case PV_ST_OK:
		return 0;
	case PV_ST_NO_VOLUME:
		return ENOENT;
	case PV_ST_OUT_OF_RANGE:
		return EFBIG;
	case PV_ST_IO_ERROR:
		return EIO;
	case PV_ST_BAD_REQUEST:
		return EINVAL;
	case PV_ST_VERSION:
		return EPROTO;
	case PV_ST_NO_SPACE:
		return ENOSPC;
	case PV_ST_REFUSED:
		return EPERM;
	default: /* MOVED, BUSY, UNAVAILABLE after the deadline; unknown codes */
		return EIO;
	}
}

/* Rate-limits per-request warnings to one line a second. */
static int warn_allowed(struct client *c)
{
	uint64_t now = pv_now_ms();

	if (now - c->last_warn_ms < 1000) {
		c->warn_suppressed++;
		return 0;
	}
	if (c->warn_suppressed)
		pv_warn("(%u similar messages suppressed)", c->warn_suppressed);
	c->warn_suppressed = 0;
	c->last_warn_ms = now;
	return 1;
}

static void wake(struct client *c)
{
	uint64_t one = 1;

	if (write(c->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the client thread wakes anyway */
	}
}

/* ---- servers ---------------------------------------------------------- */

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
	    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max)) < 0) {
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
	if (zmq_socket_monitor(s->sock, ep, ZMQ_EVENT_DISCONNECTED) < 0 ||
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

/* Whether s's connection dropped since the last call (drains the events). */
static int conn_disconnected(struct conn *s)
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
		if (zmq_msg_size(&ev) >= 2) {
			uint16_t event;

			memcpy(&event, zmq_msg_data(&ev), sizeof(event));
			if (event == ZMQ_EVENT_DISCONNECTED)
				dropped = 1;
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

static void send_attach(struct client *c, struct conn *s);
static void conn_reconnect(struct client *c, struct conn *s, uint64_t now, const char *why);

/* ---- links (include/link.h) -------------------------------------------- */

/* A server that advertises a link address (in the catalog) is talked to on
 * a TCP connection of our own once it is up, read and written by this
 * thread: no ZeroMQ IO thread on either side. Until then, and whenever it
 * fails, the DEALER carries everything as before. */

/* s's link address as the catalog gives it (a changed one replaces the
 * link at the next scan: this may run inside that link's read). */
static void conn_link_address(struct client *c, struct conn *s)
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

static unsigned resend_parts(struct client *c, struct conn *s, int link_only);
static void request_catalog(struct client *c, uint64_t timeout_ms);

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
		request_catalog(c, CATALOG_TIMEOUT_MS);
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
	resend_parts(c, s, 1);
	/* it bound our memory to the link: offer it again on the DEALER */
	send_attach(c, s);
	request_catalog(c, CATALOG_TIMEOUT_MS);
}

/* s's link connect finished (writable): up, or failed. */
static void link_connected(struct client *c, struct conn *s)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(link_fd(s->link), SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e) {
		link_lost(c, s, strerror(e ? e : errno));
		return;
	}
	s->link_up = 1;
	pv_info("server %s: link to %s up; requests go there", s->address, s->link_to);
	/* the server binds our shared memory to the connection it came on */
	send_attach(c, s);
}

/* Sends h (+ payload, moved) to s: on its link when up (written at the end
 * of the round with what else the round queued when batch, else at once),
 * else by the cork (batched when batch). 0, or -1 with errno. */
static int conn_send(struct client *c, struct conn *s, const Pv__Header *h, zmq_msg_t *payload,
		       int batch)
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
	if (!batch) /* a failure shows again at flush_sends, which drops the link */
		link_flush(s->link);
	return 0;
}

/* The server at address, connected on first use; NULL if that fails. */
static struct conn *conn_get(struct client *c, const char *address)
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
	s->last_rx_ms = pv_now_ms();
	s->next = c->conns;
	c->conns = s;
	pv_debug("connected to %s", address);
	send_attach(c, s);
	return s;
}

static const struct member *member_find(struct client *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (c->members[i].id == id)
			return &c->members[i];
	return NULL;
}

/* The member id of s, from the replies or the catalog's member list. */
static uint32_t conn_member(struct client *c, struct conn *s)
{
	if (!s->member_id)
		for (size_t i = 0; i < c->n_members; i++)
			if (strcmp(c->members[i].address, s->address) == 0)
				s->member_id = c->members[i].id;
	return s->member_id;
}

static struct vol_view *volume_find(struct client *c, const char *name)
{
	for (size_t i = 0; i < c->n_vols; i++)
		if (strcmp(c->vols[i].attr.name, name) == 0)
			return &c->vols[i];
	return NULL;
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

/* ---- parts ------------------------------------------------------------ */

static struct part *hash_find(struct client *c, uint64_t req_id)
{
	struct part *p;

	for (p = c->hash[req_id & (HASH_SIZE - 1)]; p; p = p->hnext)
		if (p->req_id == req_id)
			return p;
	return NULL;
}

static struct part *part_new(struct client *c, uint32_t op, struct call *call, const char *volume,
			     uint64_t vol_id, uint64_t offset, uint32_t length, uint64_t timeout_ms)
{
	struct part *p = calloc(1, sizeof(*p));
	struct part **b;

	if (!p) {
		pv_err("out of memory");
		return NULL;
	}
	p->req_id = c->next_req_id++;
	p->op = op;
	p->call = call;
	snprintf(p->volume, sizeof(p->volume), "%s", volume ? volume : "");
	p->vol_id = vol_id;
	p->offset = offset;
	p->length = length;
	p->deadline_ms = pv_now_ms() + timeout_ms;
	b = &c->hash[p->req_id & (HASH_SIZE - 1)];
	p->hnext = *b;
	*b = p;
	p->next = &c->all;
	p->prev = c->all.prev;
	c->all.prev->next = p;
	c->all.prev = p;
	return p;
}

/* Takes p off its server (if in flight) without touching the waiting list. */
static void part_unsend(struct part *p)
{
	if (p->conn) {
		p->conn->outstanding--;
		p->conn = NULL;
	}
}

/* The slot p's data is in: its own (READ) or its call's (WRITE). */
static void *part_slot(const struct part *p)
{
	return p->op == PV_OP_READ ? p->slot : p->op == PV_OP_WRITE ? p->call->slot : NULL;
}

/* p's server may still touch p's slot (p was abandoned while it had it):
 * the slot is never used again. */
static void part_abandon_slot(struct part *p)
{
	if (!p->shm_sent)
		return;
	shm_slot_quarantine(part_slot(p));
	p->shm_sent = 0;
	if (p->op == PV_OP_READ)
		p->slot = NULL;
}

static void map_unanswered(struct client *c, const struct part *p);

static void part_free(struct client *c, struct part *p)
{
	struct part **pp;

	part_abandon_slot(p);
	if (p->slot)
		shm_slot_put(p->slot);
	if (p->op == PV_OP_SHM_ATTACH && p->conn && p->conn->shm == SHM_PENDING)
		p->conn->shm = SHM_NONE; /* unanswered: the next NO_SHM asks again */
	if (p->op == PV_OP_MAP_VOLUME)
		map_unanswered(c, p);
	vmap_put(p->map);
	part_unsend(p);
	for (pp = &c->hash[p->req_id & (HASH_SIZE - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == p) {
			*pp = p->hnext;
			break;
		}
	for (pp = &c->waiting; *pp; pp = &(*pp)->wnext)
		if (*pp == p) {
			*pp = p->wnext;
			break;
		}
	p->prev->next = p->next;
	p->next->prev = p->prev;
	if (c->cat_part == p)
		c->cat_part = NULL;
	free(p);
}

static void call_free(struct call *call)
{
	if (call->kind == CALL_WRITE)
		zmq_msg_close(&call->data);
	free(call);
}

/* Answers a call whose parts are all done (READ answers in reply_read). */
static void call_finish(struct call *call)
{
	if (call->err)
		fuse_reply_err(call->req, call->err);
	else if (call->kind == CALL_WRITE)
		fuse_reply_write(call->req, call->length);
	else
		fuse_reply_err(call->req, 0);
	call_free(call);
}

static void catalog_ended(struct client *c, int ok);

/* Ends part p with errno err (0: success) and answers its call when it was
 * the last part. */
static void part_done(struct client *c, struct part *p, int err)
{
	struct call *call = p->call;
	int was_catalog = (p == c->cat_part);

	part_free(c, p);
	if (was_catalog)
		catalog_ended(c, 0);
	if (!call)
		return;
	if (err && !call->err)
		call->err = err;
	if (--call->parts_left == 0)
		call_finish(call);
}

/* Ends a data part whose volume is gone from the catalog (v NULL) or is
 * another volume of the same name (deleted and created again since the file
 * was opened): the handle is stale, its IO fails (ESTALE; the loop device
 * reports an I/O error) and never reaches the new volume. */
static void part_stale(struct client *c, struct part *p, const struct vol_view *v)
{
	if (!p->vol_id) {
		pv_debug("%s of volume %s: no such volume in the catalog", wire_op_name(p->op),
			 p->volume);
		part_done(c, p, ENOENT);
		return;
	}
	if (warn_allowed(c)) {
		if (v)
			pv_warn("%s of volume %s at %llu fails: the file was opened on volume id "
				"%llu, deleted since (volume %s now is id %llu); close and open "
				"it again",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				(unsigned long long)p->vol_id, p->volume,
				(unsigned long long)v->attr.id);
		else
			pv_warn("%s of volume %s at %llu fails: volume id %llu was deleted",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				(unsigned long long)p->vol_id);
	}
	part_done(c, p, ESTALE);
}

/* Parks p until when (capped at its deadline), then sends it again. */
static void part_wait(struct client *c, struct part *p, uint64_t when)
{
	part_unsend(p);
	p->retry_ms = when < p->deadline_ms ? when : p->deadline_ms;
	p->wnext = c->waiting;
	c->waiting = p;
}

static void send_ping(struct client *c, struct conn *s);
static void map_read_flags(struct client *c, struct part *p, struct conn *s,
			   struct vol_view *v, Pv__Header *h);

/* Sends p to the server its volume is routed to (PING and CATALOG parts:
 * to s). Failures to send park it for a retry; a volume that is gone ends
 * it with ENOENT. */
static void part_send(struct client *c, struct part *p, struct conn *s)
{
	struct vol_view *v = NULL;
	Pv__Header h;
	zmq_msg_t m;
	int rc, batch;

	if (p->call) {
		v = volume_find(c, p->volume);
		if (!v || (p->vol_id && v->attr.id != p->vol_id)) {
			part_stale(c, p, v);
			return;
		}
		s = v->conn;
	}
	if (!s || !s->sock) {
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
		return;
	}
	/* data parts of one round to one server travel together */
	batch = p->call && p->length < BATCH_IO_MAX && batch_supported(s->proto_version);
	wire_header_init(&h);
	h.op = p->op;
	h.req_id = p->req_id;
	h.volume = p->volume;
	h.volume_id = p->vol_id; /* a server refuses another volume of this name */
	h.offset = p->offset;
	h.length = p->length;
	h.client_id = c->client_id;
	h.catalog_version = c->cat_version;
	/* this client's clock: a server that meets two copies of one request
	 * (a re-send on a new connection) answers the later one */
	h.timestamp = pv_now_ms();
	if (p->call)
		h.flags = p->call->flags;
	if (s->shm == SHM_ON && p->op == PV_OP_READ && p->length >= FUSED_SHM_MIN && !p->slot)
		p->slot = shm_slot_get(); /* NULL when all are in use: by socket */
	if (p->op == PV_OP_READ)
		map_read_flags(c, p, s, v, &h);
	if (s->shm == SHM_ON && part_slot(p)) {
		/* the server takes the data from our memory (WRITE) or puts it
		 * there (READ) */
		h.flags |= PV_F_SHM;
		h.shm_offset = p->op == PV_OP_WRITE ? shm_offset(zmq_msg_data(&p->call->data))
						    : shm_offset(p->slot);
		rc = conn_send(c, s, &h, NULL, batch);
	} else if (p->op == PV_OP_WRITE) {
		zmq_msg_init(&m);
		if (zmq_msg_copy(&m, &p->call->data) < 0) { /* shares the buffer */
			pv_err("zmq_msg_copy: %s", zmq_strerror(errno));
			zmq_msg_close(&m);
			part_done(c, p, EIO);
			return;
		}
		rc = conn_send(c, s, &h, &m, batch);
	} else {
		rc = conn_send(c, s, &h, NULL, batch);
	}
	if (rc < 0) {
		if (warn_allowed(c))
			pv_warn("cannot send %s to %s: %s", wire_op_name(p->op), s->address,
				zmq_strerror(errno));
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
		return;
	}
	p->conn = s;
	p->on_link = s->link_up;
	p->shm_sent = (h.flags & PV_F_SHM) != 0;
	if (s->outstanding++ == 0)
		s->wait_start_ms = pv_now_ms();
}

/* Sends h with a protobuf body to s, now, after what this round queued for
 * it. */
static int send_body(struct client *c, struct conn *s, const Pv__Header *h,
		     const ProtobufCMessage *body)
{
	zmq_msg_t m;

	if (wire_body_msg(&m, body) < 0)
		return -1;
	return conn_send(c, s, h, &m, 0);
}

/* Sends a session request (PING, SHM_ATTACH, MAP_VOLUME) about volume (or
 * NULL) with body (or NULL) to s as a part of its own, answered in
 * handle_reply; 0, or -1 (not sent, logged at debug). */
static int send_session_op(struct client *c, struct conn *s, uint32_t op, const char *volume,
			   const ProtobufCMessage *body)
{
	struct part *p = part_new(c, op, NULL, volume, 0, 0, 0, 2 * FUSED_DEAD_MS);
	Pv__Header h;

	if (!p)
		return -1;
	wire_header_init(&h);
	h.op = op;
	h.req_id = p->req_id;
	h.client_id = c->client_id;
	h.catalog_version = c->cat_version;
	h.volume = p->volume;
	if (body ? send_body(c, s, &h, body) < 0 : conn_send(c, s, &h, NULL, 0) < 0) {
		pv_debug("cannot send %s to %s: %s", wire_op_name(op), s->address,
			 zmq_strerror(errno));
		part_free(c, p);
		return -1;
	}
	p->conn = s;
	p->on_link = s->link_up;
	if (s->outstanding++ == 0)
		s->wait_start_ms = pv_now_ms();
	return 0;
}

/* Whether a server address is on this host: ipc://, a loopback address, or
 * an address of one of this host's interfaces. Numeric addresses only (no
 * name lookup on the client thread); "localhost" counts as local. The
 * shared memory's token is only ever sent to such servers. */
static int address_is_local(const char *address)
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
static void send_attach(struct client *c, struct conn *s)
{
	Pv__ShmAttach a = PV__SHM_ATTACH__INIT;
	const uint8_t *token;
	const char *path;

	s->shm = SHM_NONE;
	if (!c->shm || !shm_enabled() || !s->sock)
		return;
	if (!address_is_local(s->address)) {
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
	if (send_session_op(c, s, PV_OP_SHM_ATTACH, NULL, &a.base) == 0)
		s->shm = SHM_PENDING;
}

/* ---- mapped reads (map.c) --------------------------------------------- */

/* On a READ of volume v to s: sets PV_F_MAP when v's mapping is of s's data
 * file and holds the range (s then answers without data what it holds in
 * memory), the part keeping a reference on it until the answer; asks s for
 * its data file when v has no mapping yet. */
static void map_read_flags(struct client *c, struct part *p, struct conn *s,
			   struct vol_view *v, Pv__Header *h)
{
	struct vol_map *vm = v ? &v->map : NULL;

	vmap_put(p->map); /* a re-send names the mapping of now */
	p->map = NULL;
	if (!c->map || !v || s->shm != SHM_ON || !s->member_id)
		return;
	if (vm->m && vm->server != s->member_id) {
		/* its requests go to another server now: that file is not it */
		vmap_put(vm->m);
		vm->m = NULL;
		vm->state = MAP_NONE;
	}
	if (vm->m) {
		if (vmap_ptr(vm->m, p->offset, p->length)) {
			h->flags |= PV_F_MAP;
			h->map_dev = vm->m->dev;
			h->map_ino = vm->m->ino;
			vmap_get(vm->m);
			p->map = vm->m;
		}
		return;
	}
	if (vm->state == MAP_PENDING || (vm->state == MAP_REFUSED && pv_now_ms() < vm->retry_ms))
		return;
	if (send_session_op(c, s, PV_OP_MAP_VOLUME, v->attr.name, NULL) == 0)
		vm->state = MAP_PENDING;
}

/* The answer to MAP_VOLUME: maps the data file it names, or notes the
 * refusal (asked again after MAP_RETRY_MS). */
static void map_answered(struct client *c, struct conn *s, const struct part *p,
			 const Pv__Header *h, zmq_msg_t *data, int extra)
{
	struct vol_view *v = volume_find(c, p->volume);
	Pv__VolumeMap *m = NULL;
	char err[PATH_MAX + 160] = "";

	if (!v || v->map.m || v->map.state != MAP_PENDING)
		return;
	v->map.state = MAP_REFUSED;
	v->map.retry_ms = pv_now_ms() + MAP_RETRY_MS;
	if (h->status != PV_ST_OK)
		snprintf(err, sizeof(err), "%s%s%s", wire_status_name(h->status),
			 h->message[0] ? ": " : "", h->message);
	else if (!data || extra ||
		 !(m = (Pv__VolumeMap *)wire_body_decode(&pv__volume_map__descriptor,
							 zmq_msg_data(data), zmq_msg_size(data))))
		snprintf(err, sizeof(err), "its answer does not decode");
	else if (!h->server_id)
		snprintf(err, sizeof(err), "its answer names no server");
	else if (m->volume_id != v->attr.id || m->size != v->attr.size)
		snprintf(err, sizeof(err),
			 "its file is of volume id %llu of %llu bytes, the catalog's %llu of "
			 "%llu bytes",
			 (unsigned long long)m->volume_id, (unsigned long long)m->size,
			 (unsigned long long)v->attr.id, (unsigned long long)v->attr.size);
	else if ((v->map.m = vmap_open(m->path, m->dev, m->ino, v->attr.size, err, sizeof(err))))
		v->map.server = h->server_id;
	if (v->map.m)
		pv_info("volume %s: READ data held in memory by server %s is copied out of its "
			"data file, mapped read-only",
			v->attr.name, s->address);
	else
		pv_info("volume %s: READ data of server %s comes through it (its data file is "
			"not mapped: %s); asked again in %u s",
			v->attr.name, s->address, err, MAP_RETRY_MS / 1000);
	if (m)
		pv__volume_map__free_unpacked(m, NULL);
}

/* A MAP_VOLUME request ended without an answer: ask again later. */
static void map_unanswered(struct client *c, const struct part *p)
{
	struct vol_view *v = volume_find(c, p->volume);

	if (v && !v->map.m && v->map.state == MAP_PENDING) {
		v->map.state = MAP_REFUSED;
		v->map.retry_ms = pv_now_ms() + MAP_RETRY_MS;
	}
}

/* reply_data's done for an answer out of a mapping. */
static void map_answer_done(void *m)
{
	vmap_put(m);
}

/* ---- catalog ---------------------------------------------------------- */

/* Sends a catalog request to the catalog server unless one is in flight. */
static void request_catalog(struct client *c, uint64_t timeout_ms)
{
	struct part *p;

	if (c->cat_part || !c->cat_conn)
		return;
	p = part_new(c, PV_OP_CATALOG, NULL, NULL, 0, 0, 0, timeout_ms);
	if (!p) {
		catalog_ended(c, 0);
		return;
	}
	c->cat_part = p;
	part_send(c, p, c->cat_conn);
}

/* Picks another catalog server: the --group addresses, then the members. */
static void catalog_rotate(struct client *c)
{
	size_t n = c->n_group + c->n_members;
	const char *addr;
	struct conn *s;

	for (size_t tries = 0; tries < n; tries++) {
		size_t i = c->cat_next++ % n;

		addr = i < c->n_group ? c->group[i] : c->members[i - c->n_group].address;
		if (c->cat_conn && strcmp(addr, c->cat_conn->address) == 0)
			continue;
		s = conn_get(c, addr);
		if (s) {
			pv_info("asking %s for the catalog from now on", s->address);
			c->cat_conn = s;
			return;
		}
	}
}

/* A catalog fetch ended: wake the threads waiting in client_catalog_refresh. */
static void catalog_ended(struct client *c, int ok)
{
	if (!ok && c->have_catalog)
		catalog_rotate(c);
	pthread_mutex_lock(&c->lock);
	c->cat_seq++;
	c->cat_tried_ms = pv_now_ms();
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static int holds(const uint32_t *holders, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (holders[i] == id)
			return 1;
	return 0;
}

/* The server for a volume with these holders, read from server from. */
static struct conn *pick_route(struct client *c, struct conn *from, const uint32_t *holders,
				 size_t n)
{
	const struct member *m;
	struct conn *s;

	if (n == 0 || holds(holders, n, conn_member(c, from)))
		return from;
	m = member_find(c, holders[c->client_id % n]);
	if (m && (s = conn_get(c, m->address)))
		return s;
	return from;
}

/* Another holder of v than dead (the next one in its list), or NULL. */
static struct conn *other_holder(struct client *c, struct vol_view *v, struct conn *dead)
{
	size_t start = 0;
	uint32_t dead_id = conn_member(c, dead);

	for (size_t i = 0; i < v->n_holders; i++)
		if (v->holders[i] == dead_id)
			start = i + 1;
	for (size_t k = 0; k < v->n_holders; k++) {
		const struct member *m = member_find(c, v->holders[(start + k) % v->n_holders]);
		struct conn *s;

		if (!m || m->id == dead_id || strcmp(m->address, dead->address) == 0)
			continue;
		s = conn_get(c, m->address);
		if (s)
			return s;
	}
	return NULL;
}

static void vols_free(struct vol_view *vols, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(vols[i].holders);
		vmap_put(vols[i].map.m);
	}
	free(vols);
}

static void members_free(struct member *members, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(members[i].address);
		free(members[i].link);
	}
	free(members);
}

/* Replaces the catalog with the pv.Catalog in buf, answered by from.
 * Returns 0, or -1 (logged) leaving the old catalog. Routes that still work
 * are kept; new ones follow pick_route. */
static int catalog_apply(struct client *c, struct conn *from, const void *buf, size_t len)
{
	Pv__Catalog *cat = (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor, buf, len);
	struct member *members = NULL;
	struct vol_view *vols = NULL;
	struct volume_attr *pub = NULL;
	size_t n_members = 0, n_vols = 0;
	char err[128];

	if (!cat) {
		pv_warn("catalog from %s does not decode", from->address);
		return -1;
	}
	members = calloc(cat->n_members + 1, sizeof(*members));
	vols = calloc(cat->n_volumes + 1, sizeof(*vols));
	pub = calloc(cat->n_volumes + 1, sizeof(*pub));
	if (!members || !vols || !pub)
		goto nomem;
	for (size_t i = 0; i < cat->n_members; i++) {
		Pv__Member *m = cat->members[i];

		if (!m->id || !m->address[0]) {
			pv_warn("catalog from %s: member without id or address ignored",
				from->address);
			continue;
		}
		members[n_members].id = m->id;
		if (!(members[n_members].address = strdup(m->address)) ||
		    !(members[n_members].link = strdup(c->links && m->link ? m->link : "")))
			goto nomem;
		n_members++;
	}
	for (size_t i = 0; i < cat->n_volumes; i++) {
		Pv__VolumeInfo *vi = cat->volumes[i];
		struct vol_view *v = &vols[n_vols];

		if (!pv_valid_name(vi->name, err, sizeof(err)) ||
		    !pv_valid_volume_size(vi->size, UINT64_MAX, err, sizeof(err))) {
			pv_warn("catalog from %s: volume '%.64s' ignored: %s", from->address,
				vi->name, err);
			continue;
		}
		snprintf(v->attr.name, sizeof(v->attr.name), "%s", vi->name);
		v->attr.id = vi->id;
		v->attr.size = vi->size;
		v->attr.page_size = vi->page_size;
		if (vi->n_holders) {
			v->holders = malloc(vi->n_holders * sizeof(*v->holders));
			if (!v->holders)
				goto nomem;
			memcpy(v->holders, vi->holders, vi->n_holders * sizeof(*v->holders));
			v->n_holders = vi->n_holders;
		}
		pub[n_vols] = v->attr;
		n_vols++;
	}

	/* nothing fails from here on; routes are picked against the new members */
	members_free(c->members, c->n_members);
	c->members = members;
	c->n_members = n_members;
	for (struct conn *s = c->conns; s; s = s->next) {
		conn_member(c, s);
		conn_link_address(c, s);
	}
	for (size_t i = 0; i < n_vols; i++) {
		struct vol_view *v = &vols[i], *old = volume_find(c, v->attr.name);

		if (old && old->attr.id == v->attr.id && old->conn &&
		    (v->n_holders == 0 ||
		     holds(v->holders, v->n_holders, conn_member(c, old->conn))))
			v->conn = old->conn; /* keep a working route */
		else
			v->conn = pick_route(c, from, v->holders, v->n_holders);
		if (!old || old->conn != v->conn)
			pv_debug("volume %s: requests go to %s", v->attr.name, v->conn->address);
		if (old && old->attr.id == v->attr.id && old->attr.size == v->attr.size) {
			/* the same volume: its mapping goes on (the old is not freed) */
			v->map = old->map;
			memset(&old->map, 0, sizeof(old->map));
		}
	}
	vols_free(c->vols, c->n_vols);
	c->vols = vols;
	c->n_vols = n_vols;
	if (c->cat_version != cat->version)
		pv_debug("catalog version %llu from %s: %zu volumes, %zu members",
			 (unsigned long long)cat->version, from->address, n_vols, n_members);
	c->cat_version = cat->version;
	c->have_catalog = 1;
	pthread_mutex_lock(&c->lock);
	free(c->pub);
	c->pub = pub;
	c->n_pub = n_vols;
	pthread_mutex_unlock(&c->lock);
	pv__catalog__free_unpacked(cat, NULL);
	return 0;

nomem:
	pv_err("out of memory reading the catalog");
	members_free(members, n_members);
	if (vols)
		vols_free(vols, n_vols + 1);
	free(pub);
	pv__catalog__free_unpacked(cat, NULL);
	return -1;
}

/* ---- pings ------------------------------------------------------------ */

/* Sends a PING with the volumes this mount has open through s. */
static void send_ping(struct client *c, struct conn *s)
{
	Pv__ClientState st = PV__CLIENT_STATE__INIT;
	char *names[64];
	size_t n = 0;

	if (!s->sock)
		return;
	for (struct open_vol *o = c->opens; o && n < sizeof(names) / sizeof(names[0]);
	     o = o->next) {
		struct vol_view *v = volume_find(c, o->name);

		/* an open of a deleted volume does not hold its successor */
		if (v && v->conn == s && v->attr.id == o->id)
			names[n++] = o->name;
	}
	st.n_open_volumes = n;
	st.open_volumes = names;
	if (send_session_op(c, s, PV_OP_PING, NULL, &st.base) == 0)
		s->next_ping_ms = pv_now_ms() + FUSED_PING_MS;
}

/* ---- replies ---------------------------------------------------------- */

static void reply_read(struct client *c, struct part *p, const Pv__Header *h, zmq_msg_t *data,
		       int extra, int in_shm)
{
	struct call *call = p->call;
	void *slot = p->slot;

	if (h->flags & PV_F_MAP) {
		/* the bytes are in the server's data file, which this READ named
		 * (the answer says which: a late answer to an earlier copy may
		 * name another) */
		struct vmap *m = p->map;
		const void *src;

		if (data || extra || !m || h->map_dev != m->dev || h->map_ino != m->ino) {
			pv_debug("READ of volume %s at %llu answered from a mapping it does not "
				 "name now; sent again",
				 p->volume, (unsigned long long)p->offset);
			part_wait(c, p, pv_now_ms());
			return;
		}
		src = vmap_ptr(m, p->offset, p->length); /* inside: checked at sending */
		p->map = NULL; /* its reference goes with the answer */
		part_free(c, p);
		reply_data(call->req, src, call->length, map_answer_done, m);
		call_free(call);
		return;
	}
	if (in_shm && !data && !extra && (h->flags & PV_F_SHM)) {
		/* peerd put the data into our slot; free again once answered */
		p->slot = NULL;
		part_free(c, p);
		reply_data(call->req, slot, call->length, shm_slot_put, slot);
		call_free(call);
		return;
	}
	if (!data || extra || zmq_msg_size(data) != p->length) {
		if (warn_allowed(c))
			pv_warn("READ of volume %s at %llu: reply carries %zu bytes, wanted %u",
				p->volume, (unsigned long long)p->offset,
				data ? zmq_msg_size(data) : 0, p->length);
		part_done(c, p, EIO);
		return;
	}
	part_free(c, p);
	fuse_reply_buf(call->req, zmq_msg_data(data), zmq_msg_size(data));
	call_free(call);
}

static void handle_batch(struct client *c, struct conn *s, zmq_msg_t *data);

static void handle_reply(struct client *c, struct conn *s, const void *hb, size_t hl,
			 zmq_msg_t *data, int extra, int in_batch)
{
	Pv__Header *h;
	struct part *p;
	char err[256];
	int st, e, in_shm;
	uint64_t now = pv_now_ms();

	st = wire_header_decode(hb, hl, &h, err, sizeof(err));
	if (st == PV_ST_VERSION) {
		if (!s->version_logged)
			pv_err("server %s speaks another protocol version (%s); this fused "
			       "speaks %d.%d",
			       s->address, err, PV_PROTO_MAJOR, PV_PROTO_MINOR);
		s->version_logged = 1;
		return;
	}
	if (st != PV_ST_OK) {
		if (warn_allowed(c))
			pv_warn("bad reply from %s ignored: %s", s->address, err);
		return;
	}
	if (h->server_id && s->member_id != h->server_id)
		s->member_id = h->server_id;
	s->proto_version = h->version;
	if (h->op == PV_OP_BATCH) {
		if (h->status != PV_ST_OK)
			pv_warn("server %s refused a batch of requests (%s: %s); they are sent "
				"again when they time out",
				s->address, wire_status_name(h->status), h->message);
		else if (extra || in_batch)
			pv_warn("bad reply from %s ignored: %s", s->address,
				in_batch ? "BATCH inside a BATCH" : "BATCH of more than 2 frames");
		else
			handle_batch(c, s, data);
		goto out;
	}
	p = hash_find(c, h->req_id);
	if (!p || p->conn != s || p->op != h->op) {
		pv_debug("reply %s #%llu from %s matches nothing in flight; ignored",
			 wire_op_name(h->op), (unsigned long long)h->req_id, s->address);
		goto out;
	}
	part_unsend(p);
	in_shm = p->shm_sent;
	if (in_shm && (h->flags & PV_F_SHM_LOST))
		part_abandon_slot(p); /* an owner behind s may still touch the slot */
	p->shm_sent = 0;	      /* it answered: done with the slot */
	if (h->status != PV_ST_OK && h->status != PV_ST_BUSY && h->status != PV_ST_MOVED &&
	    h->status != PV_ST_UNAVAILABLE && h->status != PV_ST_NO_SHM)
		pv_debug("%s #%llu of '%s' at %llu: %s%s%s", wire_op_name(p->op),
			 (unsigned long long)p->req_id, p->volume, (unsigned long long)p->offset,
			 wire_status_name(h->status), h->message[0] ? ": " : "", h->message);

	if (p->op == PV_OP_PING) {
		part_free(c, p);
		if (h->status == PV_ST_OK && h->catalog_version &&
		    h->catalog_version != c->cat_version)
			request_catalog(c, CATALOG_TIMEOUT_MS);
		goto out;
	}
	if (p->op == PV_OP_MAP_VOLUME) {
		map_answered(c, s, p, h, data, extra);
		part_free(c, p);
		goto out;
	}
	if (p->op == PV_OP_SHM_ATTACH) {
		part_free(c, p);
		s->shm = h->status == PV_ST_OK ? SHM_ON : SHM_REFUSED;
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
		goto out;
	}
	if (p->op == PV_OP_CATALOG) {
		int ok = h->status == PV_ST_OK && data && !extra &&
			 catalog_apply(c, s, zmq_msg_data(data), zmq_msg_size(data)) == 0;

		if (h->status != PV_ST_OK)
			pv_warn("catalog request to %s: %s %s", s->address,
				wire_status_name(h->status), h->message);
		else if (!data)
			pv_warn("catalog reply from %s has no body", s->address);
		part_free(c, p);
		catalog_ended(c, ok);
		goto out;
	}

	switch (h->status) {
	case PV_ST_OK:
		if (p->op == PV_OP_READ)
			reply_read(c, p, h, data, extra, in_shm);
		else
			part_done(c, p, 0);
		break;
	case PV_ST_NO_SHM: /* it forgot our memory (restarted, or unused a while) */
		pv_debug("server %s: %s", s->address, h->message);
		if (s->shm != SHM_PENDING)
			send_attach(c, s);
		part_wait(c, p, now); /* by socket until the attach is answered */
		break;
	case PV_ST_MOVED: {
		const struct member *m = member_find(c, h->new_owner);
		struct vol_view *v = volume_find(c, p->volume);
		struct conn *to = m ? conn_get(c, m->address) : NULL;

		if (v && to && v->conn != to) {
			pv_info("volume %s: %s says MOVED, going to %s", v->attr.name, s->address,
				to->address);
			v->conn = to;
		}
		request_catalog(c, CATALOG_TIMEOUT_MS);
		part_wait(c, p, now + 20);
		break;
	}
	case PV_ST_BUSY: {
		uint64_t ms = h->retry_after_ms;

		ms = ms < 1 ? 1 : ms > 10000 ? 10000 : ms;
		part_wait(c, p, now + ms);
		break;
	}
	case PV_ST_UNAVAILABLE:
		part_wait(c, p, now + FUSED_UNAVAILABLE_MS);
		break;
	default:
		e = status_errno(h->status);
		if (h->status == PV_ST_VERSION) {
			pv_err("server %s speaks another protocol version: %s", s->address,
			       h->message);
		} else if (h->status == PV_ST_NO_VOLUME) {
			request_catalog(c, CATALOG_TIMEOUT_MS);
			if (p->vol_id) {
				/* the volume this file was opened on is gone */
				e = ESTALE;
				if (warn_allowed(c))
					pv_warn("%s of volume %s at %llu via %s: %s",
						wire_op_name(p->op), p->volume,
						(unsigned long long)p->offset, s->address,
						h->message);
			}
		} else if (h->status != PV_ST_OUT_OF_RANGE && warn_allowed(c)) {
			pv_warn("%s of volume %s at %llu via %s: %s%s%s", wire_op_name(p->op),
				p->volume, (unsigned long long)p->offset, s->address,
				wire_status_name(h->status), h->message[0] ? ": " : "", h->message);
		}
		part_done(c, p, e);
		break;
	}
out:
	wire_header_free(h);
}

struct batch_ctx {
	struct client *c;
	struct conn *s;
};

static void reply_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct batch_ctx *x = arg;

	handle_reply(x->c, x->s, hdr, hdr_len, data, 0, 1);
}

/* A BATCH of replies from s: checked whole, then each record handled as a
 * reply of its own. */
static void handle_batch(struct client *c, struct conn *s, zmq_msg_t *data)
{
	struct batch_ctx x = {c, s};
	char err[256];

	if (batch_each(data, reply_record, &x, err, sizeof(err)) < 0 && warn_allowed(c))
		pv_warn("BATCH of replies from %s not (all) taken: %s; those requests are sent "
			"again when they time out",
			s->address, err);
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
		handle_reply(c, s, zmq_msg_data(&hdr), zmq_msg_size(&hdr), have_data ? &data : NULL,
			     extra, 0);
		zmq_msg_close(&hdr);
		zmq_msg_close(&data);
	}
}

/* A reply that came on s's link. */
static void link_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct batch_ctx *x = arg;

	x->s->last_rx_ms = pv_now_ms();
	x->s->link_failures = 0; /* it answers: the link works */
	handle_reply(x->c, x->s, hdr, hdr_len, data, 0, 0);
}

/* Takes what s's link has to give. */
static void link_input(struct client *c, struct conn *s)
{
	struct batch_ctx x = {c, s};
	char err[256];

	if (link_read(s->link, link_record, &x, err, sizeof(err)) < 0)
		link_lost(c, s, err);
}

/* ---- timers ----------------------------------------------------------- */

/* s went silent or its connection dropped (why says which): open its socket
 * again, move its volumes to another holder if there is one, and send again
 * everything that was in flight to it, with the same req_ids. */
/* Sends again what is in flight to s (link_only: only what went on its
 * link), with the same request ids; the slots those parts used are never
 * reused (s may still touch them). Session requests (pings, catalog,
 * attach) are failed instead. Returns how many were sent again. */
static unsigned resend_parts(struct client *c, struct conn *s, int link_only)
{
	unsigned resent = 0;
	struct part *p, *next;

	for (p = c->all.next; p != &c->all; p = next) {
		next = p->next;
		if (p->conn != s || (link_only && !p->on_link))
			continue;
		part_unsend(p);
		if (!p->call) { /* pings, catalog and attach requests are not re-sent */
			part_done(c, p, EIO);
			continue;
		}
		part_abandon_slot(p);
		part_send(c, p, NULL);
		resent++;
	}
	return resent;
}

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

		if (v->conn == s && (alt = other_holder(c, v, s))) {
			v->conn = alt;
			moved++;
		}
	}
	resent = resend_parts(c, s, 0);
	send_attach(c, s);
	pv_warn("server %s: %s with %u requests outstanding; reconnected, %u re-sent, %u "
		"volumes moved to another holder",
		s->address, why, inflight, resent, moved);
}

static void run_timers(struct client *c, uint64_t now)
{
	struct part *p, *next, **pp;
	struct part *due = NULL;

	/* parked parts whose time has come */
	for (pp = &c->waiting; *pp;) {
		p = *pp;
		if (p->retry_ms <= now) {
			*pp = p->wnext;
			p->wnext = due;
			due = p;
		} else {
			pp = &p->wnext;
		}
	}
	for (p = due; p; p = next) {
		next = p->wnext;
		p->wnext = NULL;
		if (now >= p->deadline_ms) {
			if (p->call && warn_allowed(c))
				pv_warn("%s of volume %s at %llu: no answer within %llu s",
					wire_op_name(p->op), p->volume,
					(unsigned long long)p->offset,
					(unsigned long long)c->timeout_ms / 1000);
			part_done(c, p, EIO);
		} else {
			part_send(c, p, c->cat_conn);
		}
	}
	if (now < c->next_scan_ms)
		return;
	c->next_scan_ms = now + SCAN_MS;

	/* parts in flight past their deadline */
	for (p = c->all.next; p != &c->all; p = next) {
		next = p->next;
		if (!p->conn || now < p->deadline_ms)
			continue;
		if (p->call && warn_allowed(c))
			pv_warn("%s of volume %s at %llu via %s: no answer within %llu s",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				p->conn->address, (unsigned long long)c->timeout_ms / 1000);
		part_done(c, p, EIO);
	}
	if (!c->have_catalog)
		return;
	for (struct conn *s = c->conns; s; s = s->next) {
		uint64_t since =
		    s->wait_start_ms > s->last_rx_ms ? s->wait_start_ms : s->last_rx_ms;

		/* since may be after now: parts re-sent above (this round)
		 * started the wait after now was read */
		if (s->outstanding && since < now && now - since >= FUSED_DEAD_MS)
			conn_reconnect(c, s, now, "nothing back for 3 s");
		if (now >= s->next_ping_ms && conn_in_use(c, s))
			send_ping(c, s);
		if (s->link && strcmp(s->link_to, s->link_address) != 0)
			link_lost(c, s, "the server gives another link address now");
		if (c->links && s->sock && s->link_address[0] && !s->link &&
		    now >= s->link_retry_ms)
			link_start(s, now);
	}
}

/* Sends what this round queued; parts whose send failed wait and go again,
 * as a part whose send fails at once does (part_send). */
static void flush_sends(struct client *c)
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
		struct part *p = hash_find(c, d.req_id);

		/* (sent again since, on a new connection: that copy stands) */
		if (!p || !p->conn || p->conn->sock != d.sock)
			continue;
		if (warn_allowed(c))
			pv_warn("cannot send %s to %s; trying again", wire_op_name(p->op),
				p->conn->address);
		part_unsend(p);
		p->shm_sent = 0; /* never left: the server did not see the slot */
		part_wait(c, p, pv_now_ms() + FUSED_UNAVAILABLE_MS);
	}
}

/* Milliseconds until the next timer, at most max_ms. */
static long next_timeout(struct client *c, uint64_t now, long max_ms)
{
	long t = max_ms;

	if (c->next_scan_ms > now && (long)(c->next_scan_ms - now) < t)
		t = c->next_scan_ms - now;
	for (struct part *p = c->waiting; p; p = p->wnext)
		if (p->retry_ms <= now)
			t = 0;
		else if ((long)(p->retry_ms - now) < t)
			t = p->retry_ms - now;
	return t < 0 ? 0 : t;
}

/* One round: timers, then wait up to max_ms for the sockets (and the
 * eventfd), then take what arrived. */
static void loop_once(struct client *c, long max_ms)
{
	zmq_pollitem_t items[400];
	struct conn *conns[400];
	int is_link[400];
	size_t n = 0;
	uint64_t now = pv_now_ms();
	int rc, ffd;

	run_timers(c, now);
	items[n].socket = NULL;
	items[n].fd = c->efd;
	items[n].events = ZMQ_POLLIN;
	is_link[n] = 0;
	conns[n++] = NULL;
	flush_sends(c); /* before the links' events are chosen: it may drop one */
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
			    !s->link_up ? ZMQ_POLLOUT
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
	rc = zmq_poll(items, n, next_timeout(c, now, max_ms));
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
			if (!s->link_up && (items[i].revents & (ZMQ_POLLOUT | ZMQ_POLLERR)))
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
		} else if (items[i].socket == s->mon && conn_disconnected(s) && s->outstanding &&
			   c->have_catalog) {
			conn_reconnect(c, s, pv_now_ms(), "connection lost");
		}
	}
}

/* ---- calls from FUSE threads ------------------------------------------ */

static void open_count(struct client *c, const char *name, uint64_t id, int delta)
{
	struct open_vol **oo, *o;
	struct vol_view *v;

	for (oo = &c->opens; *oo; oo = &(*oo)->next)
		if ((*oo)->id == id && strcmp((*oo)->name, name) == 0)
			break;
	o = *oo;
	if (!o && delta > 0) {
		o = calloc(1, sizeof(*o));
		if (!o) {
			pv_err("out of memory");
			return;
		}
		snprintf(o->name, sizeof(o->name), "%s", name);
		o->id = id;
		*oo = o;
	}
	if (!o)
		return;
	if (delta > 0)
		o->count++;
	else if (o->count)
		o->count--;
	if (!o->count) {
		*oo = o->next;
		free(o);
	}
	v = volume_find(c, name);
	if (v && v->conn)
		send_ping(c, v->conn);
}

/* Turns a queued call into parts and sends them. */
static void call_start(struct client *c, struct call *call)
{
	struct part *p;
	uint64_t off, end;

	switch (call->kind) {
	case CALL_OPEN:
	case CALL_CLOSE:
		open_count(c, call->volume, call->vol_id, call->kind == CALL_OPEN ? 1 : -1);
		call_free(call);
		return;
	case CALL_READ:
	case CALL_WRITE:
		call->parts_left = 1;
		p = part_new(c, call->kind == CALL_READ ? PV_OP_READ : PV_OP_WRITE, call,
			     call->volume, call->vol_id, call->offset, call->length, c->timeout_ms);
		if (!p)
			break;
		part_send(c, p, NULL);
		return;
	case CALL_TRIM:
		call->parts_left = 1; /* held until every part is made */
		end = call->offset + call->length;
		for (off = call->offset; off < end; off += FUSED_TRIM_PART) {
			uint64_t n = end - off < FUSED_TRIM_PART ? end - off : FUSED_TRIM_PART;

			p = part_new(c, PV_OP_TRIM, call, call->volume, call->vol_id, off, n,
				     c->timeout_ms);
			if (!p) {
				call->err = ENOMEM;
				break;
			}
			call->parts_left++;
			part_send(c, p, NULL);
		}
		if (--call->parts_left == 0)
			call_finish(call);
		return;
	case CALL_FLUSH:
		call->parts_left = 1;
		if (call->volume[0]) {
			p = part_new(c, PV_OP_FLUSH, call, call->volume, call->vol_id, 0, 0,
				     c->timeout_ms);
			if (p) {
				call->parts_left++;
				part_send(c, p, NULL);
			} else {
				call->err = ENOMEM;
			}
		} else {
			for (struct open_vol *o = c->opens; o; o = o->next) {
				p = part_new(c, PV_OP_FLUSH, call, o->name, o->id, 0, 0,
					     c->timeout_ms);
				if (!p) {
					call->err = ENOMEM;
					break;
				}
				call->parts_left++;
				part_send(c, p, NULL);
			}
		}
		if (--call->parts_left == 0)
			call_finish(call);
		return;
	}
	fuse_reply_err(call->req, ENOMEM);
	call_free(call);
}

/* Hands call to the client thread, or answers EIO if it has stopped. On
 * the client thread itself (loop_fuse_ready) the call starts at once. */
static void submit(struct client *c, struct call *call)
{
	int was_empty;

	if (on_client_thread) {
		call_start(c, call);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (c->stopping) {
		pthread_mutex_unlock(&c->lock);
		if (call->req)
			fuse_reply_err(call->req, EIO);
		call_free(call);
		return;
	}
	call->next = NULL;
	was_empty = !c->q_head;
	*c->q_tail = call;
	c->q_tail = &call->next;
	pthread_mutex_unlock(&c->lock);
	if (was_empty) /* else the wake-up of the first one is still pending */
		wake(c);
}

static struct call *call_new(fuse_req_t req, enum call_kind kind, const struct volume_attr *vol,
			     uint64_t off, uint64_t len)
{
	struct call *call = calloc(1, sizeof(*call));

	if (!call) {
		pv_err("out of memory");
		if (req)
			fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	call->kind = kind;
	call->req = req;
	if (vol) {
		snprintf(call->volume, sizeof(call->volume), "%s", vol->name);
		call->vol_id = vol->id;
	}
	call->offset = off;
	call->length = len;
	return call;
}

void client_read(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		 uint32_t len)
{
	struct call *call = call_new(req, CALL_READ, vol, off, len);

	if (call)
		submit(c, call);
}

/* zmq_msg_init_data's free function for a receive buffer from loop.c */
static void free_taken(void *data, void *hint)
{
	(void)data;
	free(hint);
}

/* ... and for a shared memory slot */
static void put_slot(void *data, void *hint)
{
	(void)data;
	shm_slot_put(hint);
}

void client_write(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		  const void *buf, uint32_t len, uint32_t flags)
{
	struct call *call = call_new(req, CALL_WRITE, vol, off, len);

	if (!call)
		return;
	void *owned = loop_take_buffer(buf, len);

	if (owned) {
		/* the FUSE receive buffer travels with the message: no copy */
		call->slot = shm_slot_of(owned);
		if (zmq_msg_init_data(&call->data, (void *)buf, len,
				      call->slot ? put_slot : free_taken, owned) < 0) {
			pv_err("cannot make a message for a write: %s", zmq_strerror(errno));
			if (call->slot)
				shm_slot_put(owned);
			else
				free(owned);
			fuse_reply_err(req, ENOMEM);
			free(call);
			return;
		}
	} else if (zmq_msg_init_size(&call->data, len) < 0) {
		pv_err("cannot allocate %u bytes for a write: %s", len, zmq_strerror(errno));
		fuse_reply_err(req, ENOMEM);
		free(call);
		return;
	} else {
		memcpy(zmq_msg_data(&call->data), buf, len);
	}
	call->flags = flags;
	submit(c, call);
}

void client_flush(struct client *c, fuse_req_t req, const struct volume_attr *vol)
{
	struct call *call = call_new(req, CALL_FLUSH, vol, 0, 0);

	if (call)
		submit(c, call);
}

void client_trim(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		 uint64_t len)
{
	struct call *call = call_new(req, CALL_TRIM, vol, off, len);

	if (call)
		submit(c, call);
}

void client_volume_opened(struct client *c, const struct volume_attr *vol, int open)
{
	struct call *call = call_new(NULL, open ? CALL_OPEN : CALL_CLOSE, vol, 0, 0);

	if (call)
		submit(c, call);
}

void client_catalog_refresh(struct client *c, uint64_t max_age_ms)
{
	struct timespec ts;
	uint64_t seq;

	pthread_mutex_lock(&c->lock);
	if (c->stopping || pv_now_ms() - c->cat_tried_ms < max_age_ms) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	seq = c->cat_seq;
	c->cat_wanted = 1;
	wake(c);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CATALOG_TIMEOUT_MS / 1000 + 1;
	while (c->cat_seq == seq && !c->stopping)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&c->lock);
}

int client_volume_get(struct client *c, const char *name, struct volume_attr *out)
{
	int rc = -1;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_pub; i++)
		if (strcmp(c->pub[i].name, name) == 0) {
			*out = c->pub[i];
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int client_volume_list(struct client *c, struct volume_attr **out, size_t *n)
{
	pthread_mutex_lock(&c->lock);
	*out = malloc((c->n_pub + 1) * sizeof(**out));
	if (!*out) {
		pthread_mutex_unlock(&c->lock);
		return -1;
	}
	memcpy(*out, c->pub, c->n_pub * sizeof(**out));
	*n = c->n_pub;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- the client thread ------------------------------------------------ */

static void *client_main(void *arg)
{
	struct client *c = arg;

	on_client_thread = 1;
	for (;;) {
		struct call *q, *next;
		int stopping, want_cat;

		pthread_mutex_lock(&c->lock);
		q = c->q_head;
		c->q_head = NULL;
		c->q_tail = &c->q_head;
		stopping = c->stopping;
		want_cat = c->cat_wanted;
		c->cat_wanted = 0;
		pthread_mutex_unlock(&c->lock);
		for (; q; q = next) {
			next = q->next;
			if (stopping) {
				if (q->req)
					fuse_reply_err(q->req, EIO);
				call_free(q);
			} else {
				call_start(c, q);
			}
		}
		if (stopping)
			break;
		if (want_cat)
			request_catalog(c, CATALOG_TIMEOUT_MS);
		loop_once(c, SCAN_MS);
	}
	/* answer everything still outstanding */
	while (c->all.next != &c->all)
		part_done(c, c->all.next, EIO);
	return NULL;
}

int client_start(struct client *c)
{
	sigset_t all, old;
	int rc;

	/* signals go to the main thread, whose fuse loop they must wake */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&c->thread, NULL, client_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		errno = rc;
		pv_err("cannot start the client thread: %m");
		return -1;
	}
	c->started = 1;
	return 0;
}

struct client *client_new(const struct client_options *opt)
{
	struct client *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	char addrs[1024] = "";
	size_t used = 0;

	if (!c) {
		pv_err("out of memory");
		return NULL;
	}
	c->efd = -1;
	c->all.next = c->all.prev = &c->all;
	c->q_tail = &c->q_head;
	c->next_req_id = 1;
	c->timeout_ms = (uint64_t)opt->timeout_s * 1000;
	c->shm = opt->shm;
	c->map = opt->map;
	c->links = opt->links;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	while (!c->client_id)
		if (getrandom(&c->client_id, sizeof(c->client_id), 0) != sizeof(c->client_id)) {
			pv_err("getrandom: %m");
			goto fail;
		}
	c->group = calloc(opt->n_group + 1, sizeof(*c->group));
	if (!c->group)
		goto nomem;
	for (size_t i = 0; i < opt->n_group; i++) {
		if (!(c->group[i] = strdup(opt->group[i])))
			goto nomem;
		c->n_group++;
	}
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		pv_err("eventfd: %m");
		goto fail;
	}
	c->zctx = zmq_ctx_new();
	if (!c->zctx) {
		pv_err("cannot create a ZeroMQ context: %s", zmq_strerror(errno));
		goto fail;
	}
	c->cork = batch_cork_new();
	if (!c->cork)
		goto nomem;
	for (size_t i = 0; i < c->n_group && !c->have_catalog; i++) {
		uint64_t until = pv_now_ms() + FUSED_CONNECT_MS;

		used += snprintf(addrs + used, used < sizeof(addrs) ? sizeof(addrs) - used : 0,
				 "%s%s", i ? ", " : "", c->group[i]);
		if (used >= sizeof(addrs))
			used = sizeof(addrs) - 1;
		c->cat_conn = conn_get(c, c->group[i]);
		if (!c->cat_conn)
			continue;
		request_catalog(c, FUSED_CONNECT_MS);
		while (c->cat_part && pv_now_ms() < until)
			loop_once(c, until - pv_now_ms());
		if (c->cat_part)
			part_done(c, c->cat_part, EIO);
		if (!c->have_catalog)
			pv_info("no catalog from %s within %u ms", c->group[i], FUSED_CONNECT_MS);
	}
	if (!c->have_catalog) {
		pv_err("no server of the group answered within %u s (tried %s)",
		       FUSED_CONNECT_MS / 1000, addrs);
		goto fail;
	}
	pv_info("catalog version %llu from %s: %zu volumes, %zu members; client id %016llx",
		(unsigned long long)c->cat_version, c->cat_conn->address, c->n_vols, c->n_members,
		(unsigned long long)c->client_id);
	return c;
nomem:
	pv_err("out of memory");
fail:
	client_destroy(&c);
	return NULL;
}

void client_destroy(struct client **cp)
{
	struct client *c = *cp;
	struct conn *s, *next;

	if (!c)
		return;
	*cp = NULL;
	pthread_mutex_lock(&c->lock);
	c->stopping = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (c->started) {
		wake(c);
		pthread_join(c->thread, NULL);
	}
	reply_stop(); /* what the client thread queued is answered */
	while (c->all.next != &c->all) /* only when the thread never ran */
		part_done(c, c->all.next, EIO);
	for (struct call *q = c->q_head, *qn; q; q = qn) {
		qn = q->next;
		if (q->req)
			fuse_reply_err(q->req, EIO);
		call_free(q);
	}
	batch_cork_free(c->cork); /* sends what the last round queued */
	c->cork = NULL;
	for (s = c->conns; s; s = next) {
		next = s->next;
		conn_close(c, s);
		free(s->address);
		free(s);
	}
	if (c->zctx)
		zmq_ctx_term(c->zctx);
	while (c->opens) {
		struct open_vol *o = c->opens;

		c->opens = o->next;
		free(o);
	}
	vols_free(c->vols, c->n_vols);
	members_free(c->members, c->n_members);
	free(c->pub);
	for (size_t i = 0; i < c->n_group; i++)
		free(c->group[i]);
	free(c->group);
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
