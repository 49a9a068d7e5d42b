/* change.c: the two-phase commit by which the group's catalog changes, on
 * both sides: the coordinator (the server that got the command) and the
 * participants (every other member), with the participant's lock and the
 * coordinator's retries. It does not know what a change is about:
 *
 *   a change = build + done + their arg (change_new, then change_run)
 *   build(arg, next, err)  edits next, a copy of the committed catalog whose
 *                          version is already v+1, into the catalog the change
 *                          proposes; 0, or -1 with the reason in err (then
 *                          nothing is sent). Called again on every attempt,
 *                          on the catalog committed by then.
 *   done(arg, ok, err)     called exactly once with the outcome: ok 1 when
 *                          committed and installed here; ok 0 with the reason
 *                          in err; ok 0 and err NULL when peerd stops with the
 *                          change unfinished (release arg, answer nobody).
 *                          done owns arg.
 *
 * Volume create/delete (volume_admin.c), adding a member (join.c) and
 * removing one (remove.c) are such changes; snapshots are meant to be. A
 * change may leave one member out (change_exclude: removing a member that is
 * down); every other member takes part.
 *
 *   coordinator                      every other member
 *   lock, build version v+1
 *   --CAT_PREPARE(change)-------->   validate, lock
 *   <-------------------OK/refuse-   (BUSY if locked by another change)
 *   all OK:  --CAT_COMMIT------->    persist (LMDB), install, unlock
 *   else:    --CAT_ABORT-------->    unlock; on BUSY the coordinator retries
 *
 * One change runs at a time per coordinator; one that finds this server busy
 * (its own change or a participant's lock) waits and tries again. A member
 * that does not answer within PEERD_TXN_TIMEOUT_MS fails the change; a
 * participant's lock expires after PEERD_LOCK_TIMEOUT_MS. Installing a
 * catalog is catalog.c's. Reactor thread only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* a change as its caller made it; lives across attempts */
struct change {
	change_build_fn build;
	change_done_fn done;
	void *arg;
	char what[160]; /* one line for logs and for the other members */
	int force;	/* volumes the change removes may be open */
	int attempt;
	uint32_t excluded; /* a member left out (group remove), or 0 */
};

/* coordinator state: one attempt of one change at a time */
struct txn {
	struct change *ch;
	Pv__CatalogChange msg;
	Pv__Catalog *proposal;
	uint64_t txid;
	uint32_t waiting[PEERD_MAX_MEMBERS];
	size_t nwaiting;
	uint32_t participants[PEERD_MAX_MEMBERS];
	size_t nparticipants;
	uint32_t unsent[PEERD_MAX_MEMBERS]; /* PREPARE not queued yet: retried */
	size_t nunsent;
	int failed;
	int conflict;
	char err[PV_MAX_MESSAGE];
	uint64_t deadline;
};
static struct txn *cur;
static uint64_t txn_counter;

/* participant lock */
static uint64_t lock_txid;
static uint64_t lock_until;

int catalog_locked(void)
{
	return lock_txid && pv_now_ms() < lock_until;
}

struct change *change_new(int force, change_build_fn build, change_done_fn done, void *arg,
			  const char *what_fmt, ...)
{
	struct change *ch = calloc(1, sizeof(*ch));
	va_list ap;

	if (!ch)
		return NULL;
	ch->build = build;
	ch->done = done;
	ch->arg = arg;
	ch->force = force;
	va_start(ap, what_fmt);
	vsnprintf(ch->what, sizeof(ch->what), what_fmt, ap);
	va_end(ap);
	return ch;
}

void change_exclude(struct change *ch, uint32_t id)
{
	ch->excluded = id;
}

/* Tells the change's caller the outcome and frees the change. */
static void change_end(struct change *ch, int ok, const char *err)
{
	ch->done(ch->arg, ok, err);
	free(ch);
}

/* ---- coordinator ---- */

/* Sends a change message to member id. Returns 0, or -1 if it could not be
 * queued (not connected yet, or down). */
static int send_change(uint32_t id, uint32_t op, const Pv__CatalogChange *msg)
{
	struct member *m = catalog_member(id);
	Pv__Header h;

	if (!m)
		return -1;
	wire_header_init(&h);
	h.op = op;
	h.req_id = msg->txid;
	if (reply_send_member(m, &h, NULL, &msg->base) < 0) {
		pv_debug("catalog: %s to server %u (%s) not sent yet: %m", wire_op_name(op), id,
			 m->address);
		return -1;
	}
	return 0;
}

static void txn_finish(void);
static void txn_begin(void *arg);

static void txn_retry(void *arg)
{
	txn_begin(arg);
}

static void txn_end(int ok, const char *err)
{
	struct txn *t = cur;
	struct change *ch = t->ch;

	cur = NULL;
	if (lock_txid == t->txid)
		lock_txid = 0;
	if (!ok && t->conflict && ch->attempt < 8) {
		uint64_t delay = 50 + (uint64_t)(rand() % 200) * ch->attempt;

		pv_info("catalog change '%s' conflicted with another; retrying in %llu ms",
			ch->what, (unsigned long long)delay);
		catalog_pb_free(t->proposal);
		free(t);
		reactor_after(delay, txn_retry, ch);
		return;
	}
	if (ok)
		pv_info("catalog change '%s' committed as version %llu", ch->what,
			(unsigned long long)srv->version);
	else
		pv_warn("catalog change '%s' refused: %s", ch->what, err);
	change_end(ch, ok, err);
	catalog_pb_free(t->proposal);
	free(t);
}

static void txn_begin(void *arg)
{
	struct change *ch = arg;
	struct txn *t;
	char err[PV_MAX_MESSAGE];

	ch->attempt++;
	if (cur || catalog_locked()) {
		if (ch->attempt < 100) {
			reactor_after(50 + rand() % 50, txn_retry, ch);
			return;
		}
		change_end(ch, 0, "another catalog change is in progress; try again");
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->proposal = catalog_pb_copy(catalog_committed()))) {
		free(t);
		change_end(ch, 0, "out of memory");
		return;
	}
	t->ch = ch;
	t->proposal->version = catalog_committed()->version + 1;
	if (ch->build(ch->arg, t->proposal, err, sizeof(err)) < 0) {
		catalog_pb_free(t->proposal);
		free(t);
		pv_info("catalog change '%s' refused: %s", ch->what, err);
		change_end(ch, 0, err);
		return;
	}
	cur = t;
	t->txid = ((uint64_t)srv->cfg.id << 40) | ++txn_counter;
	pv__catalog_change__init(&t->msg);
	t->msg.txid = t->txid;
	t->msg.coordinator = srv->cfg.id;
	t->msg.what = ch->what;
	t->msg.catalog = t->proposal;
	t->msg.force = ch->force;
	lock_txid = t->txid;
	lock_until = pv_now_ms() + PEERD_LOCK_TIMEOUT_MS;
	t->deadline = pv_now_ms() + PEERD_TXN_TIMEOUT_MS;

	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];

		if (m->id == srv->cfg.id || m->id == ch->excluded)
			continue;
		if (!m->up && m->last_heard_ms &&
		    pv_now_ms() - m->last_heard_ms > PEERD_DOWN_AFTER_MS) {
			snprintf(t->err, sizeof(t->err),
				 "server %u (%s) is down; a catalog change needs every member; "
				 "nothing was changed",
				 m->id, m->address);
			txn_end(0, t->err);
			return;
		}
		t->participants[t->nparticipants++] = m->id;
		t->waiting[t->nwaiting++] = m->id;
	}
	for (size_t i = 0; i < t->nparticipants; i++)
		if (send_change(t->participants[i], PV_OP_CAT_PREPARE, &t->msg) < 0)
			t->unsent[t->nunsent++] = t->participants[i];
	if (t->nwaiting == 0)
		txn_finish();
}

static void txn_finish(void)
{
	struct txn *t = cur;

	if (t->failed) {
		for (size_t i = 0; i < t->nparticipants; i++)
			send_change(t->participants[i], PV_OP_CAT_ABORT, &t->msg);
		txn_end(0, t->err);
		return;
	}
	for (size_t i = 0; i < t->nparticipants; i++)
		send_change(t->participants[i], PV_OP_CAT_COMMIT, &t->msg);
	/* catalog_install takes the proposal */
	if (catalog_install(&t->proposal, t->ch->what) < 0) {
		txn_end(0, "the change was committed by the other members but could not be "
			   "recorded here; this server will catch up from its peers");
		return;
	}
	txn_end(1, NULL);
}

void change_run(struct change **chp)
{
	struct change *ch = *chp;

	*chp = NULL;
	ch->attempt = 0;
	txn_begin(ch);
}

void change_tick(void)
{
	/* a member connected a moment ago (e.g. just joined) gets its PREPARE
	 * as soon as the connection is up */
	for (size_t i = 0; cur && i < cur->nunsent;) {
		if (send_change(cur->unsent[i], PV_OP_CAT_PREPARE, &cur->msg) == 0)
			cur->unsent[i] = cur->unsent[--cur->nunsent];
		else
			i++;
	}
	if (cur && pv_now_ms() > cur->deadline) {
		char names[256] = "";
		size_t off = 0;

		for (size_t i = 0; i < cur->nwaiting; i++) {
			struct member *m = catalog_member(cur->waiting[i]);

			off += snprintf(names + off, sizeof(names) - off, "%sserver %u (%s)",
					i ? ", " : "", cur->waiting[i], m ? m->address : "?");
			if (off >= sizeof(names))
				break;
		}
		cur->failed = 1;
		cur->conflict = 0;
		snprintf(cur->err, sizeof(cur->err),
			 "no answer from %s within %d s; a catalog change needs every member; "
			 "nothing was changed",
			 names, PEERD_TXN_TIMEOUT_MS / 1000);
		txn_finish();
	}
}

void change_peer_reply(struct member *m, const Pv__Header *h)
{
	if (h->op != PV_OP_CAT_PREPARE || !cur || h->req_id != cur->txid)
		return; /* commit/abort acks and late answers */
	for (size_t i = 0; i < cur->nwaiting; i++) {
		if (cur->waiting[i] != m->id)
			continue;
		cur->waiting[i] = cur->waiting[--cur->nwaiting];
		if (h->status != PV_ST_OK && !cur->failed) {
			cur->failed = 1;
			cur->conflict = h->status == PV_ST_BUSY;
			snprintf(cur->err, sizeof(cur->err), "server %u refused: %s", m->id,
				 h->message);
		}
		if (cur->nwaiting == 0)
			txn_finish();
		return;
	}
}

void change_free(void)
{
	if (!cur)
		return;
	catalog_pb_free(cur->proposal);
	change_end(cur->ch, 0, NULL);
	free(cur);
	cur = NULL;
}

/* ---- participant ---- */

static int validate_change(const Pv__CatalogChange *ch, char *err, size_t errlen)
{
	const Pv__Catalog *c = ch->catalog;

	if (!c) {
		snprintf(err, errlen, "change without a catalog");
		return PV_ST_BAD_REQUEST;
	}
	if (strcmp(c->group_id, srv->group_id)) {
		snprintf(err, errlen, "server %u is in another group", srv->cfg.id);
		return PV_ST_REFUSED;
	}
	if (c->version <= srv->version) {
		snprintf(err, errlen, "stale change: server %u is at catalog version %llu",
			 srv->cfg.id, (unsigned long long)srv->version);
		return PV_ST_BUSY;
	}
	if (c->version > srv->version + 1) {
		snprintf(err, errlen, "server %u is behind (catalog version %llu) and catching up",
			 srv->cfg.id, (unsigned long long)srv->version);
		return PV_ST_BUSY;
	}
	if (!catalog_check(c, err, errlen))
		return PV_ST_BAD_REQUEST;
	/* new volumes this server may hold must fit in its file system */
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		int mine = vi->n_servers == 0;

		if (catalog_volume(vi->name))
			continue;
		for (size_t j = 0; j < vi->n_servers; j++)
			mine |= vi->servers[j] == srv->cfg.id;
		if (mine && !store_can_hold(vi->size, err, errlen))
			return PV_ST_REFUSED;
	}
	/* members the change removes: down, or leaving without pages */
	if (remove_validate(c, err, errlen) != PV_ST_OK)
		return PV_ST_REFUSED;
	/* volumes removed by the change must not be open through this server */
	for (struct volume *v = srv->volumes; v; v = v->next) {
		int kept = 0;
		uint32_t open;

		for (size_t i = 0; i < c->n_volumes; i++)
			kept |= !strcmp(c->volumes[i]->name, v->name) && c->volumes[i]->id == v->id;
		open = clients_open_count(v->name);
		if (!kept && open && !ch->force) {
			snprintf(err, errlen,
				 "volume %s is open by %u client(s) through server %u; unmount or "
				 "detach it, or use --force",
				 v->name, open, srv->cfg.id);
			return PV_ST_REFUSED;
		}
	}
	return PV_ST_OK;
}

/* CAT_PREPARE: validate and lock, or refuse (and catch up if behind). */
static void prepare(const struct origin *from, const Pv__Header *h,
		    const Pv__CatalogChange *ch)
{
	char err[PV_MAX_MESSAGE];
	int st;

	if (catalog_locked() && lock_txid != ch->txid) {
		snprintf(err, sizeof(err), "server %u is busy with another catalog change",
			 srv->cfg.id);
		st = PV_ST_BUSY;
	} else {
		st = validate_change(ch, err, sizeof(err));
	}
	if (st == PV_ST_OK) {
		lock_txid = ch->txid;
		lock_until = pv_now_ms() + PEERD_LOCK_TIMEOUT_MS;
		err[0] = 0;
	} else if (ch->catalog->version > srv->version + 1) {
		struct member *m = catalog_member(h->server_id);

		if (m)
			catalog_fetch_from(m);
	}
	reply_body(from, h, st, err, NULL);
}

void change_peer_op(const struct origin *from, const Pv__Header *h, const void *body,
		    size_t len)
{
	Pv__CatalogChange *ch;

	ch = body
		 ? (Pv__CatalogChange *)wire_body_decode(&pv__catalog_change__descriptor, body, len)
		 : NULL;
	if (!ch || !ch->catalog) {
		reply_body(from, h, PV_ST_BAD_REQUEST, "catalog change does not decode",
			  NULL);
		if (ch)
			pv__catalog_change__free_unpacked(ch, NULL);
		return;
	}
	switch (h->op) {
	case PV_OP_CAT_PREPARE:
		prepare(from, h, ch);
		break;
	case PV_OP_CAT_COMMIT:
		if (ch->catalog->version == srv->version + 1 &&
		    !strcmp(ch->catalog->group_id, srv->group_id)) {
			char why[200];

			snprintf(why, sizeof(why), "%s, by server %u", ch->what, ch->coordinator);
			catalog_adopt(ch->catalog, why);
		}
		if (lock_txid == ch->txid)
			lock_txid = 0;
		reply_body(from, h, PV_ST_OK, NULL, NULL);
		break;
	case PV_OP_CAT_ABORT:
		if (lock_txid == ch->txid)
			lock_txid = 0;
		reply_body(from, h, PV_ST_OK, NULL, NULL);
		break;
	}
	pv__catalog_change__free_unpacked(ch, NULL);
}
