/* client.c: fused's client part and its thread. Owns the call queue that
 * FUSE threads fill, turning calls into parts, the timers, the client
 * thread's loop, its start and stop, and the client_* functions of fused.h.
 * The other files of the client part (client_int.h is their map): part.c
 * (parts and their replies), conn.c (the only file that touches ZeroMQ
 * sockets and links), catalog.c (volumes, members, routes).
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
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client_int.h"
#include "pvlog.h"
#include "util.h"

static __thread int on_client_thread; /* set in client_main */

/* Rate-limits per-request warnings to one line a second. */
int client_warn_allowed(struct client *c)
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

static void run_timers(struct client *c, uint64_t now)
{
	struct part *p, *next, **pp;
	struct part *due = NULL;

	/* a move's drain is over: the held parts go to the new server */
	if (c->draining && !c->drain_left)
		part_drained(c);
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
			if (p->call && client_warn_allowed(c))
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

	/* parts in flight (or held for a move's drain) past their deadline */
	for (p = c->all.next; p != &c->all; p = next) {
		next = p->next;
		if ((!p->conn && !p->held) || now < p->deadline_ms)
			continue;
		if (p->call && client_warn_allowed(c))
			pv_warn("%s of volume %s at %llu via %s: no answer within %llu s",
				wire_op_name(p->op), p->volume, (unsigned long long)p->offset,
				p->conn ? p->conn->address : "(held for a move)",
				(unsigned long long)c->timeout_ms / 1000);
		part_done(c, p, EIO);
	}
	if (!c->have_catalog)
		return;
	conn_timers(c, now);
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
	uint64_t now = pv_now_ms();

	run_timers(c, now);
	conn_flush(c); /* before the links' events are chosen: it may drop one */
	conn_poll(c, next_timeout(c, now, max_ms));
}

/* Counts the opens of volume name (opened as id) and tells its server. */
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
	v = catalog_volume(c, name);
	if (v && v->conn)
		conn_ping(c, v->conn);
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
		part_call_free(call);
		return;
	case CALL_READ:
	case CALL_WRITE:
		call->parts_left = 1;
		p = part_new(c, call->kind == CALL_READ ? PV_OP_READ : PV_OP_WRITE, call,
			     call->volume, call->vol_id, call->offset, call->length, c->timeout_ms);
		if (!p)
			break;
		if (call->kind == CALL_READ)
			p->snap_id = call->snap_id;
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
			part_call_finish(call);
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
			part_call_finish(call);
		return;
	}
	fuse_reply_err(call->req, ENOMEM);
	part_call_free(call);
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
		part_call_free(call);
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
		call->snap_id = vol->snap_id;
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
	char vol[PV_MAX_NAME + 1], snap[PV_MAX_NAME + 1];
	int rc = -1;

	if (snapfile_split(name, vol, snap) < 0)
		return -1;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_pub; i++)
		if (strcmp(c->pub[i].name, vol) == 0 && strcmp(c->pub[i].snap, snap) == 0) {
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
				part_call_free(q);
			} else {
				call_start(c, q);
			}
		}
		if (stopping)
			break;
		if (want_cat)
			catalog_request(c, CATALOG_TIMEOUT_MS);
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
	c->held_tail = &c->held;
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
	if (!c->group || (opt->server && !(c->server = strdup(opt->server))))
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
	if (conn_init(c) < 0)
		goto fail;
	for (size_t i = 0; i < c->n_group && !c->have_catalog; i++) {
		uint64_t until = pv_now_ms() + FUSED_CONNECT_MS;

		used += snprintf(addrs + used, used < sizeof(addrs) ? sizeof(addrs) - used : 0,
				 "%s%s", i ? ", " : "", c->group[i]);
		if (used >= sizeof(addrs))
			used = sizeof(addrs) - 1;
		c->cat_conn = conn_get(c, c->group[i]);
		if (!c->cat_conn)
			continue;
		catalog_request(c, FUSED_CONNECT_MS);
		while (c->cat_part && pv_now_ms() < until)
			loop_once(c, until - pv_now_ms());
		if (c->cat_part)
			part_done(c, c->cat_part, EIO);
		if (!c->have_catalog)
			pv_info("no catalog from %s within %u ms", c->group[i], FUSED_CONNECT_MS);
	}
	if (!c->have_catalog) {
		if (c->auth_error[0])
			pv_err("no catalog: %s", c->auth_error);
		else
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
	reply_stop();		       /* what the client thread queued is answered */
	while (c->all.next != &c->all) /* only when the thread never ran */
		part_done(c, c->all.next, EIO);
	for (struct call *q = c->q_head, *qn; q; q = qn) {
		qn = q->next;
		if (q->req)
			fuse_reply_err(q->req, EIO);
		part_call_free(q);
	}
	conn_fini(c); /* sends what the last round queued */
	while (c->opens) {
		struct open_vol *o = c->opens;

		c->opens = o->next;
		free(o);
	}
	catalog_free(c);
	for (size_t i = 0; i < c->n_group; i++)
		free(c->group[i]);
	free(c->group);
	free(c->server);
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
