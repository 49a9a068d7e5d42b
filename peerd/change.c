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
 *   all OK, within the lock time (change_may_commit):
 *   persist, install (commit point)
 *            --CAT_COMMIT------->    same txid prepared, lock valid:
 *   <-----------------OK/refuse-     persist (LMDB), install, unlock
 *   (resent to those silent)         else refuse (NOT_PREPARED), keep own
 *   else:    --CAT_ABORT-------->    unlock; on BUSY the coordinator retries
 *
 * One change runs at a time per coordinator; one that finds this server busy
 * (its own change or a participant's lock) waits and tries again; both kinds
 * of wait have their own budget (change_retry_delay). A member that does not
 * answer within PEERD_TXN_TIMEOUT_MS fails the change; a participant's lock
 * expires after PEERD_LOCK_TIMEOUT_MS, and a coordinator decides to commit
 * only within PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS of sending its
 * PREPAREs, so no COMMIT is applied by a participant whose lock expired and
 * which may have prepared another change since. Transaction ids are random
 * (unique across restarts). The coordinator installs before it sends COMMIT:
 * if that fails it aborts everywhere. Installing a catalog is catalog.c's.
 * Reactor thread only.
 *
 * PEERD_TEST_HOOKS (environment; for the tests in tests/e2e only, never in
 * production) is a list of hooks separated by ',':
 *   stall-before-commit=TEXT the coordinator of the first change whose
 *                            description contains TEXT, once every member
 *                            accepted its PREPARE, stalls its decision for
 *                            the lock time + 2 s (the rest of the server
 *                            runs on: heartbeats, other members' PREPAREs),
 *                            as a coordinator paused between the answers
 *                            and its COMMIT
 *   drop-commit=ID           the first COMMIT to server ID is not sent (it
 *                            is resent)
 *   snap-gc-ms=MS            snap.c drops a snapshot's cut never committed
 *                            after MS instead of SNAP_GC_MS
 *   shm-expire-ms=MS         shm.c unmaps a client's shared memory unused
 *                            for MS instead of SHM_EXPIRE_MS (a minute) */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* a change as its caller made it; lives across attempts */
struct change {
	struct change *next; /* waiting to retry (retry_queue) */
	uint64_t due_ms;     /* ... until then */
	change_build_fn build;
	change_done_fn done;
	void *arg;
	char what[160]; /* one line for logs and for the other members */
	int force;	/* volumes the change removes may be open */
	struct change_tries tries;
	uint32_t excluded; /* a member left out (group remove), or 0 */
};

/* coordinator state: one attempt of one change at a time */
struct txn {
	struct change *ch;
	Pv__CatalogChange msg;
	Pv__Catalog *proposal;
	uint8_t base_hash[PEERD_CATALOG_HASH_LEN];
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
	uint64_t prepared_ms; /* PREPAREs sent: the lock time runs from here */
	uint64_t deadline;
};
static struct txn *cur;
/* changes waiting to try again, run by change_tick */
static struct change *retry_queue;

/* a committed change whose COMMIT some members have not acknowledged yet */
struct resend {
	Pv__CatalogChange msg; /* msg.catalog owned */
	char what[160];
	uint32_t unacked[PEERD_MAX_MEMBERS];
	size_t nunacked;
	int sends;
	uint64_t next_ms;
};
static struct resend *resend;

/* participant lock (also taken by this server as coordinator) */
static struct change_lock lock;

int catalog_locked(void)
{
	return lock.txid && pv_now_ms() < lock.until_ms;
}

/* ---- decisions (pure) ---- */

enum change_verdict change_commit_verdict(const struct change_lock *lk, uint64_t now_ms,
					  uint64_t my_version, const uint8_t *my_hash,
					  uint64_t txid, uint64_t version, const uint8_t *hash)
{
	if (version == my_version && !memcmp(hash, my_hash, PEERD_CATALOG_HASH_LEN))
		return CHANGE_HAVE_IT;
	if (!txid || lk->txid != txid)
		return CHANGE_NOT_PREPARED;
	if (now_ms >= lk->until_ms)
		return CHANGE_LOCK_EXPIRED;
	if (version != my_version + 1)
		return CHANGE_WRONG_VERSION;
	return CHANGE_APPLY;
}

int change_may_commit(uint64_t prepared_ms, uint64_t now_ms)
{
	return now_ms >= prepared_ms &&
	       now_ms - prepared_ms < PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS;
}

int64_t change_retry_delay(struct change_tries *t, int conflict, unsigned r)
{
	if (conflict) {
		if (t->conflicts >= CHANGE_MAX_CONFLICTS)
			return -1;
		t->conflicts++;
		return 50 + (int64_t)(r % 200) * t->conflicts;
	}
	if (t->busy_waits >= CHANGE_MAX_BUSY_WAITS)
		return -1;
	t->busy_waits++;
	return 50 + (int64_t)(r % 50);
}

uint64_t change_new_txid(void)
{
	uint64_t id = 0;

	while (!id)
		randombytes_buf(&id, sizeof(id));
	return id;
}

/* ---- test hooks (PEERD_TEST_HOOKS, see above) ---- */

/* The value of hook name ("" if it has none), or NULL if it is not set. */
const char *change_test_hook(const char *name, char *val, size_t len)
{
	const char *env = getenv("PEERD_TEST_HOOKS");
	size_t n = strlen(name);

	for (const char *p = env; p && *p;) {
		const char *end = strchr(p, ',');
		size_t l = end ? (size_t)(end - p) : strlen(p);

		if (l >= n && !strncmp(p, name, n) && (l == n || p[n] == '=')) {
			size_t vl = l > n ? l - n - 1 : 0;

			snprintf(val, len, "%.*s", (int)vl, p + n + (l > n));
			return val;
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

static void txn_finish(void);

static void stalled_finish(void *arg)
{
	(void)arg;
	if (cur)
		txn_finish();
}

/* Whether the stall-before-commit hook takes cur's decision: later. */
static int hook_stall_before_commit(void)
{
	static int done;
	char text[160];

	if (done || cur->failed || !change_test_hook("stall-before-commit", text, sizeof(text)) ||
	    !strstr(cur->ch->what, text))
		return 0;
	done = 1;
	pv_warn("test hook: stalling the decision on '%s' for %d ms", cur->ch->what,
		PEERD_LOCK_TIMEOUT_MS + 2000);
	cur->deadline = UINT64_MAX;
	reactor_after(PEERD_LOCK_TIMEOUT_MS + 2000, stalled_finish, NULL);
	return 1;
}

static int hook_drop_commit(uint32_t id)
{
	static int done;
	char val[32];

	if (done || !change_test_hook("drop-commit", val, sizeof(val)) || strtoul(val, NULL, 10) != id)
		return 0;
	done = 1;
	pv_warn("test hook: COMMIT to server %u not sent", id);
	return 1;
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

/* Queues ch to try again in delay ms (change_tick runs it). */
static void retry_later(struct change *ch, uint64_t delay)
{
	struct change **pp = &retry_queue;

	ch->due_ms = pv_now_ms() + delay;
	while (*pp)
		pp = &(*pp)->next;
	ch->next = NULL;
	*pp = ch;
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

static void resend_free(void)
{
	if (!resend)
		return;
	catalog_pb_free(resend->msg.catalog);
	free(resend);
	resend = NULL;
}

/* Sends COMMIT of t (whose proposal is now the committed catalog) to every
 * participant and keeps what it needs to send it again to those that do not
 * acknowledge it. */
static void send_commits(struct txn *t)
{
	struct resend *r;

	if (resend) {
		for (size_t i = 0; i < resend->nunacked; i++)
			pv_warn("catalog: server %u did not acknowledge the COMMIT of version "
				"%llu; it catches up from heartbeats",
				resend->unacked[i],
				(unsigned long long)resend->msg.catalog->version);
		resend_free();
	}
	r = calloc(1, sizeof(*r));
	if (r) {
		pv__catalog_change__init(&r->msg);
		r->msg.catalog = catalog_pb_copy(catalog_committed());
		if (!r->msg.catalog) {
			free(r);
			r = NULL;
		}
	}
	for (size_t i = 0; i < t->nparticipants; i++) {
		uint32_t id = t->participants[i];

		if (!hook_drop_commit(id))
			send_change(id, PV_OP_CAT_COMMIT, &t->msg);
		if (r)
			r->unacked[r->nunacked++] = id;
	}
	if (!r)
		return; /* out of memory: no resends; they catch up from heartbeats */
	r->msg.txid = t->msg.txid;
	r->msg.coordinator = t->msg.coordinator;
	snprintf(r->what, sizeof(r->what), "%s", t->msg.what);
	r->msg.what = r->what;
	r->msg.force = t->msg.force;
	r->sends = 1;
	r->next_ms = pv_now_ms() + PEERD_COMMIT_RESEND_MS;
	if (r->nunacked == 0) {
		catalog_pb_free(r->msg.catalog);
		free(r);
		return;
	}
	resend = r;
}

/* Resends COMMIT to the members that have not acknowledged it. */
static void resend_tick(void)
{
	uint64_t now = pv_now_ms();

	if (!resend || now < resend->next_ms)
		return;
	if (resend->sends > PEERD_COMMIT_RESENDS) {
		for (size_t i = 0; i < resend->nunacked; i++)
			pv_warn("catalog: server %u did not acknowledge the COMMIT of version "
				"%llu (sent %d times); it catches up from heartbeats",
				resend->unacked[i],
				(unsigned long long)resend->msg.catalog->version, resend->sends);
		resend_free();
		return;
	}
	for (size_t i = 0; i < resend->nunacked; i++) {
		pv_info("catalog: COMMIT of version %llu resent to server %u",
			(unsigned long long)resend->msg.catalog->version, resend->unacked[i]);
		send_change(resend->unacked[i], PV_OP_CAT_COMMIT, &resend->msg);
	}
	resend->sends++;
	resend->next_ms = now + PEERD_COMMIT_RESEND_MS;
}

/* m answered our COMMIT txid. */
static void commit_answered(struct member *m, const Pv__Header *h)
{
	if (!resend || h->req_id != resend->msg.txid)
		return;
	for (size_t i = 0; i < resend->nunacked; i++) {
		if (resend->unacked[i] != m->id)
			continue;
		resend->unacked[i] = resend->unacked[--resend->nunacked];
		if (h->status != PV_ST_OK)
			pv_warn(
			    "catalog: server %u (%s) refused the COMMIT of version %llu: %s; it "
			    "catches up from heartbeats",
			    m->id, m->address, (unsigned long long)resend->msg.catalog->version,
			    h->message ? h->message : "");
		break;
	}
	if (resend->nunacked == 0)
		resend_free();
}

static void txn_free(struct txn *t)
{
	catalog_pb_free(t->proposal);
	free(t);
}

static void txn_end(int ok, const char *err)
{
	struct txn *t = cur;
	struct change *ch = t->ch;

	cur = NULL;
	if (lock.txid == t->txid)
		lock.txid = 0;
	if (!ok && t->conflict) {
		int64_t delay = change_retry_delay(&ch->tries, 1, (unsigned)rand());

		if (delay >= 0) {
			pv_info("catalog change '%s' conflicted with another; retrying in %lld ms",
				ch->what, (long long)delay);
			txn_free(t);
			retry_later(ch, (uint64_t)delay);
			return;
		}
	}
	if (ok)
		pv_info("catalog change '%s' committed as version %llu", ch->what,
			(unsigned long long)srv->version);
	else
		pv_warn("catalog change '%s' refused: %s", ch->what, err);
	change_end(ch, ok, err);
	txn_free(t);
}

/* Whether the new volumes of c that this server may hold fit in its file
 * system (which is not full). 1, or 0 with err. */
static int new_volumes_fit(const Pv__Catalog *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		int mine = vi->n_servers == 0;

		if (catalog_volume(vi->name))
			continue;
		for (size_t j = 0; j < vi->n_servers; j++)
			mine |= vi->servers[j] == srv->cfg.id;
		if (mine && !store_can_hold(vi->size, err, errlen))
			return 0;
	}
	return 1;
}

/* Whether catalog c only removes from the committed one (a volume delete):
 * such a change frees disk space, and must go through on a full disk. */
static int only_deletes(const Pv__Catalog *c)
{
	if (c->n_members > srv->nmembers)
		return 0;
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = catalog_volume(c->volumes[i]->name);

		if (!v || v->id != c->volumes[i]->id)
			return 0;
	}
	return 1;
}

static void txn_begin(struct change *ch)
{
	struct txn *t;
	char err[PV_MAX_MESSAGE];

	if (srv->catalog_diverged) {
		snprintf(err, sizeof(err),
			 "the members hold different catalogs under version %llu (see 'peerctl "
			 "group show'); catalog changes are refused until an administrator "
			 "resolves it",
			 (unsigned long long)srv->version);
		pv_warn("catalog change '%s' refused: %s", ch->what, err);
		change_end(ch, 0, err);
		return;
	}
	if (cur || catalog_locked()) {
		int64_t delay = change_retry_delay(&ch->tries, 0, (unsigned)rand());

		if (delay >= 0) {
			retry_later(ch, (uint64_t)delay);
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
	if (ch->build(ch->arg, t->proposal, err, sizeof(err)) < 0 ||
	    !new_volumes_fit(t->proposal, err, sizeof(err)) ||
	    meta_reserve(only_deletes(t->proposal), err, sizeof(err)) < 0) {
		txn_free(t);
		pv_info("catalog change '%s' refused: %s", ch->what, err);
		change_end(ch, 0, err);
		return;
	}
	cur = t;
	t->txid = change_new_txid();
	memcpy(t->base_hash, srv->catalog_hash, sizeof(t->base_hash));
	pv__catalog_change__init(&t->msg);
	t->msg.txid = t->txid;
	t->msg.coordinator = srv->cfg.id;
	t->msg.what = ch->what;
	t->msg.catalog = t->proposal;
	t->msg.force = ch->force;
	t->msg.base_hash.data = t->base_hash;
	t->msg.base_hash.len = sizeof(t->base_hash);
	t->prepared_ms = pv_now_ms();
	lock.txid = t->txid;
	lock.until_ms = t->prepared_ms + PEERD_LOCK_TIMEOUT_MS;
	t->deadline = t->prepared_ms + PEERD_TXN_TIMEOUT_MS;

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
	Pv__Catalog *proposal;

	if (hook_stall_before_commit())
		return;
	if (!t->failed && !change_may_commit(t->prepared_ms, pv_now_ms())) {
		/* stalled: the participants' locks may have expired, and they
		 * may have prepared (even committed) another change since */
		t->failed = 1;
		t->conflict = 0;
		snprintf(t->err, sizeof(t->err),
			 "this server stalled for %llu ms during the change, longer than the "
			 "catalog lock allows (%d ms); nothing was changed",
			 (unsigned long long)(pv_now_ms() - t->prepared_ms),
			 PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS);
	}
	if (!t->failed && srv->version + 1 != t->proposal->version) {
		t->failed = 1; /* installed another catalog meanwhile (caught up) */
		t->conflict = 1;
		snprintf(t->err, sizeof(t->err), "the catalog changed meanwhile");
	}
	if (t->failed) {
		for (size_t i = 0; i < t->nparticipants; i++)
			send_change(t->participants[i], PV_OP_CAT_ABORT, &t->msg);
		txn_end(0, t->err);
		return;
	}
	/* the commit point: recorded here first; if that fails, nobody has it */
	proposal = catalog_pb_copy(t->proposal);
	if (!proposal || catalog_install(&proposal, t->ch->what) < 0) {
		catalog_pb_free(proposal);
		for (size_t i = 0; i < t->nparticipants; i++)
			send_change(t->participants[i], PV_OP_CAT_ABORT, &t->msg);
		txn_end(0, "the change could not be recorded on this server (see its log); "
			   "nothing was changed");
		return;
	}
	send_commits(t);
	txn_end(1, NULL);
}

void change_run(struct change **chp)
{
	struct change *ch = *chp;

	*chp = NULL;
	memset(&ch->tries, 0, sizeof(ch->tries));
	txn_begin(ch);
}

int change_start(struct change *ch, void *arg, char *err, size_t errlen)
{
	if (!ch) {
		free(arg);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	change_run(&ch);
	return 0;
}

void change_tick(void)
{
	uint64_t now = pv_now_ms();

	/* a member connected a moment ago (e.g. just joined) gets its PREPARE
	 * as soon as the connection is up */
	for (size_t i = 0; cur && i < cur->nunsent;) {
		if (send_change(cur->unsent[i], PV_OP_CAT_PREPARE, &cur->msg) == 0)
			cur->unsent[i] = cur->unsent[--cur->nunsent];
		else
			i++;
	}
	if (cur && now > cur->deadline) {
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
	resend_tick();
	/* changes due to try again (each may queue itself anew) */
	for (struct change **pp = &retry_queue; *pp;) {
		struct change *ch = *pp;

		if (ch->due_ms > now) {
			pp = &ch->next;
			continue;
		}
		*pp = ch->next;
		ch->next = NULL;
		txn_begin(ch);
		pp = &retry_queue; /* the queue may have changed */
		now = pv_now_ms();
		if (cur)
			break; /* the others wait for it */
	}
}

void change_peer_reply(struct member *m, const Pv__Header *h)
{
	if (h->op == PV_OP_CAT_COMMIT) {
		commit_answered(m, h);
		return;
	}
	if (h->op != PV_OP_CAT_PREPARE || !cur || h->req_id != cur->txid)
		return; /* abort acks and late answers */
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
	resend_free();
	if (cur) {
		struct txn *t = cur;

		cur = NULL;
		change_end(t->ch, 0, NULL);
		txn_free(t);
	}
	while (retry_queue) {
		struct change *ch = retry_queue;

		retry_queue = ch->next;
		change_end(ch, 0, NULL);
	}
	memset(&lock, 0, sizeof(lock)); /* nothing holds it any more */
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
	if (srv->catalog_diverged) {
		snprintf(err, errlen,
			 "server %u found members holding different catalogs under version %llu; "
			 "catalog changes are refused until an administrator resolves it",
			 srv->cfg.id, (unsigned long long)srv->version);
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
	if (ch->base_hash.len == PEERD_CATALOG_HASH_LEN &&
	    memcmp(ch->base_hash.data, srv->catalog_hash, PEERD_CATALOG_HASH_LEN)) {
		char mine[17], theirs[17];

		catalog_diverged_with(ch->coordinator, srv->version, ch->base_hash.data);
		snprintf(
		    err, errlen,
		    "server %u holds another catalog of version %llu (hash %s) than server %u "
		    "(hash %s); catalog changes are refused until an administrator resolves it",
		    srv->cfg.id, (unsigned long long)srv->version,
		    catalog_hash_hex(srv->catalog_hash, 8, mine), ch->coordinator,
		    catalog_hash_hex(ch->base_hash.data, 8, theirs));
		return PV_ST_REFUSED;
	}
	if (!catalog_check(c, err, errlen))
		return PV_ST_BAD_REQUEST;
	/* the commit must not fail here for want of disk space */
	if (meta_reserve(only_deletes(c), err, errlen) < 0)
		return PV_ST_NO_SPACE;
	if (!new_volumes_fit(c, err, errlen))
		return PV_ST_REFUSED;
	/* snapshots it adds: cut here (snap.c) */
	if (snap_validate(c, err, errlen) < 0)
		return PV_ST_REFUSED;
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
static void prepare(const struct origin *from, const Pv__Header *h, const Pv__CatalogChange *ch)
{
	char err[PV_MAX_MESSAGE];
	int st;

	if (!ch->txid) {
		snprintf(err, sizeof(err), "catalog change without a transaction id");
		st = PV_ST_BAD_REQUEST;
	} else if (catalog_locked() && lock.txid != ch->txid) {
		snprintf(err, sizeof(err), "server %u is busy with another catalog change",
			 srv->cfg.id);
		st = PV_ST_BUSY;
	} else {
		st = validate_change(ch, err, sizeof(err));
	}
	if (st == PV_ST_OK) {
		lock.txid = ch->txid;
		lock.until_ms = pv_now_ms() + PEERD_LOCK_TIMEOUT_MS;
		err[0] = 0;
	} else if (ch->catalog->version > srv->version + 1) {
		struct member *m = catalog_member(h->server_id);

		if (m)
			catalog_fetch_from(m);
	}
	reply_body(from, h, st, err, NULL);
}

/* CAT_COMMIT: installs the catalog of the transaction this server holds
 * prepared, and answers with the outcome. */
static void commit(const struct origin *from, const Pv__Header *h, const Pv__CatalogChange *ch)
{
	static const char *const refusal[] = {
	    [CHANGE_NOT_PREPARED] = "it does not hold that transaction prepared",
	    [CHANGE_LOCK_EXPIRED] = "the lock of that transaction expired before the COMMIT came",
	    [CHANGE_WRONG_VERSION] = "it is at another catalog version",
	};
	uint8_t hash[PEERD_CATALOG_HASH_LEN];
	char err[PV_MAX_MESSAGE] = "", why[200];
	enum change_verdict v;
	int st = PV_ST_OK;

	catalog_hash(ch->catalog, hash);
	v = change_commit_verdict(&lock, pv_now_ms(), srv->version, srv->catalog_hash, ch->txid,
				  ch->catalog->version, hash);
	if (v == CHANGE_APPLY) {
		snprintf(why, sizeof(why), "%s, by server %u", ch->what, ch->coordinator);
		lock.txid = 0;
		if (strcmp(ch->catalog->group_id, srv->group_id) ||
		    catalog_adopt(ch->catalog, why) < 0) {
			snprintf(err, sizeof(err),
				 "server %u could not record catalog version %llu (see its log)",
				 srv->cfg.id, (unsigned long long)ch->catalog->version);
			st = PV_ST_IO_ERROR;
		}
	} else if (v != CHANGE_HAVE_IT) {
		snprintf(err, sizeof(err),
			 "server %u (catalog version %llu, holding transaction %016llx) refused "
			 "the COMMIT of transaction %016llx (version %llu): %s",
			 srv->cfg.id, (unsigned long long)srv->version,
			 (unsigned long long)lock.txid, (unsigned long long)ch->txid,
			 (unsigned long long)ch->catalog->version, refusal[v]);
		if (v != CHANGE_NOT_PREPARED)
			lock.txid = 0;
		st = PV_ST_REFUSED;
	}
	if (st != PV_ST_OK)
		pv_warn("catalog: COMMIT of '%s' from server %u: %s", ch->what ? ch->what : "",
			ch->coordinator, err);
	reply_body(from, h, st, st == PV_ST_OK ? NULL : err, NULL);
}

void change_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	Pv__CatalogChange *ch;

	ch = body
		 ? (Pv__CatalogChange *)wire_body_decode(&pv__catalog_change__descriptor, body, len)
		 : NULL;
	if (!ch || !ch->catalog) {
		reply_body(from, h, PV_ST_BAD_REQUEST, "catalog change does not decode", NULL);
		if (ch)
			pv__catalog_change__free_unpacked(ch, NULL);
		return;
	}
	switch (h->op) {
	case PV_OP_CAT_PREPARE:
		prepare(from, h, ch);
		break;
	case PV_OP_CAT_COMMIT:
		commit(from, h, ch);
		break;
	case PV_OP_CAT_ABORT:
		if (lock.txid == ch->txid)
			lock.txid = 0;
		reply_body(from, h, PV_ST_OK, NULL, NULL);
		break;
	}
	pv__catalog_change__free_unpacked(ch, NULL);
}
