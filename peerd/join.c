/* join.c: joining a group, from both ends. This server joining (group join
 * ADDR): a DEALER to a member of the group sends JOIN with this server as a
 * pv.Member, waits (peerctl's --timeout, less a margin) for the committed
 * catalog and adopts it. A member getting JOIN: adds the new server by a
 * catalog change (change.c) over the existing members and answers with the
 * committed catalog:
 *
 *   new server                 member (coordinator)        other members
 *   --JOIN(member)---------->  change: add the member
 *                              --CAT_PREPARE/COMMIT------>
 *   <-----OK(catalog)-------
 *   adopt the catalog
 *
 * A join is safe to retry: the answer may be lost (the joiner stopped or
 * timed out while the change ran), and then the group lists a server that
 * still believes it is alone. A JOIN from a server already a member with
 * the same id and address is answered with the committed catalog, changing
 * nothing. The joiner records the address it sent JOIN to (LMDB, config
 * "join") until it has an answer; while it is a group of one without
 * volumes, a heartbeat from a server of another group that lists it makes
 * it send the same JOIN again (join_heard_stranger): it only ever asks the
 * group its admin named. The command's starter (control.c) hears the end
 * through its catalog_done_fn; nothing here builds its answer. Reactor
 * thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* this server joining a group */
static void *join_sock;
static catalog_done_fn join_done;
static void *join_arg;
static uint64_t join_deadline;
static unsigned join_wait_s;
static char join_addr[256];
static uint64_t join_retried_ms; /* last retry after a stranger's heartbeat */

/* ---- a member adding a server that joins ---- */

/* The change that adds a server: the JOIN to answer and the new member. */
struct join_arg {
	struct origin from; /* the joining server's connection */
	uint64_t req_id; /* of its JOIN */
	uint32_t id;
	uint32_t weight;
	uint64_t capacity;
	char address[256];
	int already; /* a member with that id and address: answer the catalog */
};

static int add_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct join_arg *nm = arg;
	Pv__Member *m;
	Pv__Member **arr;

	const Pv__RemovedMember *gone = remove_find(next, nm->id);

	if (gone && !gone->left) {
		snprintf(err, errlen,
			 "server id %u was removed from the group at catalog version %llu (its "
			 "pages were lost); a new server joins with a new id",
			 nm->id, (unsigned long long)gone->version);
		return -1;
	}
	for (size_t i = 0; i < next->n_members; i++) {
		if (next->members[i]->id == nm->id &&
		    !strcmp(next->members[i]->address, nm->address)) {
			nm->already = 1; /* a retried JOIN whose answer was lost */
			snprintf(err, errlen, "server %u is already a member", nm->id);
			return -1;
		}
		if (next->members[i]->id == nm->id) {
			snprintf(err, errlen, "server id %u is already a member (%s)", nm->id,
				 next->members[i]->address);
			return -1;
		}
		if (!strcmp(next->members[i]->address, nm->address)) {
			snprintf(err, errlen, "address %s is already used by server %u",
				 nm->address, next->members[i]->id);
			return -1;
		}
	}
	if (next->n_members >= PEERD_MAX_MEMBERS) {
		snprintf(err, errlen, "the group is full (%d members)", PEERD_MAX_MEMBERS);
		return -1;
	}
	m = malloc(sizeof(*m));
	arr = realloc(next->members, (next->n_members + 1) * sizeof(*arr));
	if (!m || !arr) {
		free(m);
		if (arr)
			next->members = arr;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	next->members = arr;
	pv__member__init(m);
	m->id = nm->id;
	m->address = catalog_strdup(nm->address);
	m->weight = nm->weight ? nm->weight : 1;
	m->capacity = nm->capacity;
	next->members[next->n_members++] = m;
	/* a server that left (owning no pages) may come back */
	for (size_t i = 0; gone && i < next->n_removed; i++) {
		if (next->removed[i] != gone)
			continue;
		pv__removed_member__free_unpacked(next->removed[i], NULL);
		next->removed[i] = next->removed[--next->n_removed];
		break;
	}
	return 0;
}

static void add_done(void *arg, int ok, const char *err)
{
	struct join_arg *a = arg;
	Pv__Header h;

	if (!ok && !err) { /* peerd is stopping */
		free(a);
		return;
	}
	wire_header_init(&h);
	h.op = PV_OP_JOIN;
	h.req_id = a->req_id;
	if (ok || a->already) {
		if (a->already)
			pv_info("server %u (%s) asked to join again: already a member; answered "
				"with catalog version %llu",
				a->id, a->address, (unsigned long long)srv->version);
		reply_body(&a->from, &h, PV_ST_OK, NULL, &catalog_committed()->base);
	} else {
		reply_body(&a->from, &h, PV_ST_REFUSED, err, NULL);
	}
	free(a);
}

/* The change's arg for member nm, whose JOIN h came from from. NULL if out
 * of memory. */
static struct join_arg *join_arg_new(const struct origin *from, const Pv__Header *h,
				     const Pv__Member *nm)
{
	struct join_arg *a = calloc(1, sizeof(*a));

	if (a) {
		a->from = *from;
		a->req_id = h->req_id;
		a->id = nm->id;
		a->weight = nm->weight;
		a->capacity = nm->capacity;
		snprintf(a->address, sizeof(a->address), "%s", nm->address);
	}
	return a;
}

void join_peer_op(const struct origin *from, const Pv__Header *h, const void *body,
		  size_t len)
{
	Pv__Member *nm =
	    body ? (Pv__Member *)wire_body_decode(&pv__member__descriptor, body, len) : NULL;
	struct join_arg *a;
	struct change *ch;

	if (!nm || nm->id == 0 || strlen(nm->address) == 0 ||
	    strlen(nm->address) >= sizeof(((struct member *)0)->address)) {
		reply_body(from, h, PV_ST_BAD_REQUEST, "JOIN without a valid member",
			  NULL);
		if (nm)
			pv__member__free_unpacked(nm, NULL);
		return;
	}
	a = join_arg_new(from, h, nm);
	pv__member__free_unpacked(nm, NULL);
	if (!a)
		return;
	if (catalog_member(a->id) && !strcmp(catalog_member(a->id)->address, a->address)) {
		a->already = 1; /* answered without a change: it may be unable to run */
		add_done(a, 0, "already a member");
		return;
	}
	ch = change_new(0, add_build, add_done, a, "add server %u (%s)", a->id, a->address);
	if (!ch) {
		free(a);
		return;
	}
	change_run(&ch);
}

/* ---- this server joining a group ---- */

size_t join_poll_fill(zmq_pollitem_t *items, size_t max, void *arg)
{
	if (!join_sock || !max)
		return 0;
	items[0].socket = join_sock;
	items[0].events = ZMQ_POLLIN;
	return 1;
}

/* Tells the command's starter the outcome and closes the join socket. */
static void join_end(int ok, const char *err)
{
	join_done(join_arg, ok, NULL, 0, err);
	join_done = NULL;
	join_arg = NULL;
	zmq_close(join_sock);
	join_sock = NULL;
}

/* Refusals before anything is sent: 0, -1 with err, or 1: this server is
 * already in the group at address (a retried join: nothing to do). */
static int join_refused(const char *address, char *err, size_t errlen)
{
	if (join_sock) {
		snprintf(err, errlen, "a join is already in progress");
		return -1;
	}
	if (!strcmp(address, srv->cfg.listen)) {
		snprintf(err, errlen, "%s is this server's own address", address);
		return -1;
	}
	if (srv->nmembers > 1) {
		for (size_t i = 0; i < srv->nmembers; i++)
			if (!strcmp(srv->members[i].address, address))
				return 1;
		snprintf(err, errlen, "this server is already in a group of %zu members",
			 srv->nmembers);
		return -1;
	}
	if (srv->volumes) {
		snprintf(err, errlen,
			 "this server has volumes; only a server without volumes can join a group");
		return -1;
	}
	return 0;
}

int catalog_join_start(const char *address, unsigned timeout_s, catalog_done_fn done, void *arg,
		       char *err, size_t errlen)
{
	Pv__Member me = PV__MEMBER__INIT;
	Pv__Header h;
	int linger = 0;
	int rc = join_refused(address, err, errlen);

	if (rc < 0)
		return -1;
	if (rc > 0) {
		pv_info("group join %s: already a member of that group (catalog version %llu)",
			address, (unsigned long long)srv->version);
		done(arg, 1, NULL, 0, NULL);
		return 0;
	}
	if (remove_self_state()) {
		snprintf(err, errlen, "%s", remove_self_state());
		return -1;
	}
	join_sock = zmq_socket(srv->zctx, ZMQ_DEALER);
	if (!join_sock || zmq_setsockopt(join_sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    wire_socket_limit(join_sock) < 0 || auth_member_socket(join_sock) < 0 ||
	    zmq_connect(join_sock, address) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", address, zmq_strerror(errno));
		if (join_sock)
			zmq_close(join_sock);
		join_sock = NULL;
		return -1;
	}
	/* peerctl's --timeout less its margin, capped: a member's change takes
	 * less (PEERD_TXN_TIMEOUT_MS per attempt) and a lost answer is retried */
	join_wait_s = timeout_s && timeout_s < PEERD_JOIN_WAIT_S ? timeout_s : PEERD_JOIN_WAIT_S;
	join_deadline = pv_now_ms() + (uint64_t)join_wait_s * 1000;
	snprintf(join_addr, sizeof(join_addr), "%s", address);
	me.id = srv->cfg.id;
	me.address = srv->cfg.listen;
	me.weight = srv->cfg.weight;
	me.capacity = store_free();
	wire_header_init(&h);
	h.op = PV_OP_JOIN;
	h.req_id = peers_next_id();
	h.server_id = srv->cfg.id;
	if (wire_send_body(join_sock, NULL, 0, &h, &me.base) < 0) {
		snprintf(err, errlen, "cannot send to %s: %s", address, zmq_strerror(errno));
		zmq_close(join_sock);
		join_sock = NULL;
		return -1;
	}
	join_done = done;
	join_arg = arg;
	/* until an answer comes: the group may add us and the answer be lost */
	meta_put("config", "join", address, strlen(address));
	pv_info("joining the group at %s", address);
	return 0;
}

/* The end of a join this server retried by itself. */
static void retried(void *arg, int ok, struct volume *vol, int why, const char *err)
{
	if (ok)
		pv_info("join retried: now a member of group %s (catalog version %llu)",
			srv->group_id, (unsigned long long)srv->version);
	else if (err)
		pv_warn("join retried: %s", err);
}

void join_heard_stranger(uint32_t id)
{
	char address[256], err[PV_MAX_MESSAGE];
	void *buf;
	size_t len;

	if (join_sock || srv->nmembers > 1 || srv->volumes || remove_self_state() ||
	    (join_retried_ms && pv_now_ms() - join_retried_ms < 5000))
		return;
	if (meta_get("config", "join", &buf, &len) != 0)
		return;
	snprintf(address, sizeof(address), "%.*s", (int)len, (char *)buf);
	free(buf);
	join_retried_ms = pv_now_ms();
	pv_info("server %u of another group heartbeats to us and our join of %s got no answer: "
		"asking again",
		id, address);
	if (catalog_join_start(address, 0, retried, NULL, err, sizeof(err)) < 0)
		pv_warn("join retry: %s", err);
}

/* The member's answer (header, and the catalog when OK): adopts the
 * catalog and ends the join. */
static void join_answer(zmq_msg_t *frames, size_t n)
{
	Pv__Header *h = NULL;
	char err[256];

	meta_put("config", "join", NULL, 0); /* answered: nothing to retry */
	if (wire_header_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &h, err,
			       sizeof(err)) != PV_ST_OK) {
		char msg[700];

		snprintf(msg, sizeof(msg), "the server at %s answered something unreadable: %s",
			 join_addr, err);
		join_end(0, msg);
	} else if (h->status != PV_ST_OK) {
		char msg[800];

		snprintf(msg, sizeof(msg), "join refused by %s: %s", join_addr, h->message);
		join_end(0, msg);
	} else {
		Pv__Catalog *c = NULL;

		if (n > 1)
			c = (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor,
							    zmq_msg_data(&frames[1]),
							    zmq_msg_size(&frames[1]));
		int rc = -1;

		if (c) {
			char why[300];

			snprintf(why, sizeof(why), "joined the group at %s", join_addr);
			rc = catalog_adopt(c, why);
			pv__catalog__free_unpacked(c, NULL);
		}
		if (rc == 0)
			join_end(1, NULL);
		else
			join_end(0, "joined, but the group's catalog could not be recorded here");
	}
	wire_header_free(h);
}

void join_poll_done(const zmq_pollitem_t *items, size_t n_items, void *arg)
{
	zmq_msg_t frames[2];
	size_t n = 0;
	int more = 1;

	if (!n_items || !(items[0].revents & ZMQ_POLLIN) || items[0].socket != join_sock)
		return;

	while (more && n < 2) {
		zmq_msg_init(&frames[n]);
		if (zmq_msg_recv(&frames[n], join_sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&frames[n]);
			break;
		}
		more = zmq_msg_more(&frames[n]);
		n++;
	}
	if (n == 0)
		return;
	join_answer(frames, n);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
}

void join_tick(void)
{
	if (join_sock && pv_now_ms() > join_deadline) {
		char msg[PV_MAX_MESSAGE];

		snprintf(msg, sizeof(msg),
			 "no answer from %s within %u s; is a peerd listening there%s? If the "
			 "group was busy, the join may still complete: running the same 'group "
			 "join' again is safe",
			 join_addr, join_wait_s,
			 auth_on() ? ", with the same group key (--auth) as this one" : "");
		join_end(0, msg);
	}
}

void join_free(void)
{
	if (join_sock)
		join_end(0, NULL); /* peerd is stopping: nobody is answered */
}
