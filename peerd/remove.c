/* remove.c: members leaving the group, and what the group remembers of
 * them. 'group remove ID --force' takes out a member that is down for good:
 * a catalog change (change.c) over the remaining members, the removed one
 * excluded; the pages it owned had no second copy and are lost: they keep
 * it as owner, and IO to them fails (request.c asks remove_lost_page).
 * 'group leave ID' takes out a live member that owns no pages; it takes part
 * in the change and, on commit, becomes a group of one again. Each is
 * recorded in the catalog (pv.RemovedMember): every member refuses a removed
 * server's heartbeats and requests naming the version that removed it, and
 * a server that finds itself removed stops serving and says so (status,
 * log), for good (recorded in LMDB). Docs: docs/architecture.md, "Removing a
 * member". The pure parts (remove_build_next, remove_lost_pages) are unit
 * tested. Reactor thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* this server's own state: "" while it serves, else why it does not */
static char removed_why[PV_MAX_MESSAGE];

/* ---- pure parts ---- */

uint64_t remove_lost_pages(const uint32_t *owner, uint64_t npages, uint32_t id)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < npages; p++)
		n += owner[p] == id;
	return n;
}

const Pv__RemovedMember *remove_find(const Pv__Catalog *c, uint32_t id)
{
	for (size_t i = 0; c && i < c->n_removed; i++)
		if (c->removed[i]->id == id)
			return c->removed[i];
	return NULL;
}

int remove_build_next(Pv__Catalog *next, uint32_t id, int left, char *err, size_t errlen)
{
	Pv__RemovedMember *r, **arr;
	Pv__Member *m = NULL;
	size_t i;

	for (i = 0; i < next->n_members && next->members[i]->id != id; i++)
		;
	if (i == next->n_members) {
		snprintf(err, errlen, "server %u is not a member of the group", id);
		return -1;
	}
	if (next->n_members == 1) {
		snprintf(err, errlen, "server %u is the only member of the group", id);
		return -1;
	}
	r = malloc(sizeof(*r));
	arr = realloc(next->removed, (next->n_removed + 1) * sizeof(*arr));
	if (arr)
		next->removed = arr;
	if (!r || !arr) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m = next->members[i];
	/* the others keep their order */
	memmove(&next->members[i], &next->members[i + 1],
		(next->n_members - i - 1) * sizeof(*next->members));
	next->n_members--;
	pv__removed_member__init(r);
	r->id = id;
	r->address = catalog_strdup(m->address);
	r->weight = m->weight;
	r->version = next->version;
	r->left = left;
	pv__member__free_unpacked(m, NULL);
	/* one record per id: a server that left and joined again, then leaves
	 * or is removed, keeps only its last record */
	for (size_t k = 0; k < next->n_removed; k++) {
		if (next->removed[k]->id != id)
			continue;
		pv__removed_member__free_unpacked(next->removed[k], NULL);
		next->removed[k] = r;
		return 0;
	}
	next->removed[next->n_removed++] = r;
	return 0;
}

/* ---- what the group remembers ---- */

const Pv__RemovedMember *remove_record(uint32_t id)
{
	return remove_find(catalog_committed(), id);
}

void remove_not_member(uint32_t id, char *err, size_t errlen)
{
	const Pv__RemovedMember *r = remove_record(id);

	if (r && !r->left)
		snprintf(err, errlen,
			 "server %u was removed from the group at catalog version %llu", id,
			 (unsigned long long)r->version);
	else if (r)
		snprintf(err, errlen, "server %u left the group at catalog version %llu", id,
			 (unsigned long long)r->version);
	else
		snprintf(err, errlen, "server %u is not a member of group %s", id, srv->group_id);
}

int remove_lost_page(uint32_t owner, char *why, size_t whylen)
{
	const Pv__RemovedMember *r = remove_record(owner);

	if (!r || r->left)
		return 0;
	snprintf(why, whylen,
		 "its owner, server %u, was removed from the group at catalog version %llu and "
		 "there is no second copy: the page is lost; delete the volume (or restore it "
		 "from a backup)",
		 owner, (unsigned long long)r->version);
	return 1;
}

/* ---- this server removed ---- */

const char *remove_self_state(void)
{
	return removed_why[0] ? removed_why : NULL;
}

/* Enters the removed state for good (why: one line), logged and recorded. */
static void become_removed(const char *why)
{
	if (removed_why[0])
		return;
	snprintf(removed_why, sizeof(removed_why), "%s", why);
	pv_err("%s; this server no longer serves the group (its data is stale): to use it "
	       "again, empty its data directory and join as a new server with a new id",
	       removed_why);
	meta_put("config", "removed", removed_why, strlen(removed_why));
}

void remove_load(void)
{
	void *buf;
	size_t len;

	if (meta_get("config", "removed", &buf, &len) != 0)
		return;
	snprintf(removed_why, sizeof(removed_why), "%.*s", (int)len, (char *)buf);
	free(buf);
	pv_err("%s; this server does not serve the group", removed_why);
}

int remove_gone(Pv__Catalog **cp, const char *why)
{
	Pv__Catalog *c = *cp;
	const Pv__RemovedMember *r = remove_find(c, srv->cfg.id);
	char line[PV_MAX_MESSAGE];
	Pv__Catalog *one;

	*cp = NULL;
	if (!r || !r->left) {
		snprintf(line, sizeof(line),
			 "server %u was removed from group %s at catalog version %llu", srv->cfg.id,
			 c->group_id, (unsigned long long)(r ? r->version : c->version));
		catalog_pb_free(c);
		become_removed(line);
		return -1;
	}
	pv_info("server %u left group %s at catalog version %llu (%s); a group of one again",
		srv->cfg.id, c->group_id, (unsigned long long)r->version, why);
	catalog_pb_free(c);
	one = catalog_group_of_one();
	if (!one)
		return -1;
	meta_put("config", "join", NULL, 0);
	return catalog_install(&one, "left the group");
}

void remove_heartbeat_refuse(const struct origin *from, const Pv__Header *h)
{
	static uint64_t logged_ms;
	static uint32_t logged_id;
	const Pv__RemovedMember *r = remove_record(h->server_id);
	char err[PV_MAX_MESSAGE];

	remove_not_member(h->server_id, err, sizeof(err));
	if (logged_id != h->server_id || pv_now_ms() - logged_ms > 60000) {
		pv_warn("heartbeat from server %u refused: %s", h->server_id, err);
		logged_ms = pv_now_ms();
		logged_id = h->server_id;
	}
	/* the catalog goes with the refusal, so that the removed server can
	 * check it is removed rather than take our word */
	reply_body(from, h, PV_ST_REFUSED, err, r ? &catalog_committed()->base : NULL);
	if (!r && h->server_id != srv->cfg.id)
		join_heard_stranger(h->server_id);
}

void remove_heartbeat_refused(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	Pv__Catalog *c;
	const Pv__RemovedMember *r;

	if (removed_why[0])
		return;
	c = body ? (Pv__Catalog *)wire_body_decode(&pv__catalog__descriptor, body, len) : NULL;
	r = c ? remove_find(c, srv->cfg.id) : NULL;
	if (!c || !r || strcmp(c->group_id, srv->group_id) || c->version <= srv->version) {
		pv_warn("peer %u (%s) refused %s: %s", m->id, m->address, wire_op_name(h->op),
			h->message);
	} else if (r->left) {
		Pv__Catalog *copy = catalog_pb_copy(c);

		/* we left owning no pages and missed the commit: nothing is lost */
		if (copy)
			remove_gone(&copy, "learnt from a heartbeat refused");
	} else {
		char line[PV_MAX_MESSAGE];

		snprintf(line, sizeof(line),
			 "server %u was removed from group %s at catalog version %llu (told by "
			 "server %u)",
			 srv->cfg.id, c->group_id, (unsigned long long)r->version, m->id);
		become_removed(line);
	}
	if (c)
		pv__catalog__free_unpacked(c, NULL);
}

/* ---- participants' checks ---- */

int remove_validate(const Pv__Catalog *next, char *err, size_t errlen)
{
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		const Pv__RemovedMember *r = remove_find(next, m->id);
		uint64_t pages = 0;

		if (!r || r->version != next->version)
			continue;
		if (!r->left && m->id != srv->cfg.id && m->up) {
			snprintf(err, errlen,
				 "server %u (%s) answers heartbeats at server %u; only a server "
				 "that is down can be removed",
				 m->id, m->address, srv->cfg.id);
			return PV_ST_REFUSED;
		}
		if (!r->left || m->id != srv->cfg.id)
			continue;
		for (struct volume *v = srv->volumes; v; v = v->next)
			pages += v->owned_here;
		if (pages) {
			snprintf(err, errlen,
				 "server %u owns %llu pages and cannot leave; move them off first "
				 "with 'peerctl server evacuate %u'",
				 m->id, (unsigned long long)pages, m->id);
			return PV_ST_REFUSED;
		}
	}
	return PV_ST_OK;
}

/* ---- the commands ---- */

/* A remove or leave command, the arg of its change. */
struct remove_arg {
	uint32_t id;
	int left;
	catalog_done_fn done;
	void *done_arg;
};

/* Pages member id owns, as "volume a: N of M pages, ..." into out; the total. */
static uint64_t pages_owned(uint32_t id, char *out, size_t outlen)
{
	uint64_t total = 0;
	size_t off = 0;

	out[0] = '\0';
	for (struct volume *v = srv->volumes; v; v = v->next) {
		uint64_t n = remove_lost_pages(v->owner, v->npages, id);

		if (!n)
			continue;
		total += n;
		if (off < outlen)
			off += snprintf(out + off, outlen - off, "%svolume %s: %llu of %llu pages",
					off ? ", " : "", v->name, (unsigned long long)n,
					(unsigned long long)v->npages);
	}
	return total;
}

/* Whether member m may be removed as down: 0, or -1 with err. */
static int member_down(const struct member *m, char *err, size_t errlen)
{
	uint64_t now = pv_now_ms();

	if (m->up || (m->last_heard_ms && now - m->last_heard_ms <= PEERD_DOWN_AFTER_MS)) {
		snprintf(err, errlen,
			 "server %u (%s) is up (it answers heartbeats); only a server that is "
			 "down for good can be removed: stop it first, or, if it owns no pages, "
			 "use 'peerctl group leave %u'",
			 m->id, m->address, m->id);
		return -1;
	}
	if (!m->last_heard_ms && now - srv->started_ms <= PEERD_DOWN_AFTER_MS) {
		snprintf(err, errlen,
			 "this server started %llu ms ago and cannot tell yet whether server %u is "
			 "down; try again in a few seconds",
			 (unsigned long long)(now - srv->started_ms), m->id);
		return -1;
	}
	return 0;
}

static int remove_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct remove_arg *a = arg;
	struct member *m = catalog_member(a->id);
	char pages[256];

	if (!m) {
		snprintf(err, errlen, "server %u is not a member of the group", a->id);
		return -1;
	}
	if (!a->left && member_down(m, err, errlen) < 0)
		return -1;
	if (a->left) {
		uint64_t n = pages_owned(a->id, pages, sizeof(pages));

		if (n) {
			snprintf(err, errlen,
				 "server %u owns %llu pages (%s) and cannot leave; move them off "
				 "first with 'peerctl server evacuate %u'",
				 a->id, (unsigned long long)n, pages, a->id);
			return -1;
		}
	}
	return remove_build_next(next, a->id, a->left, err, errlen);
}

static void remove_done(void *arg, int ok, const char *err)
{
	struct remove_arg *a = arg;

	a->done(a->done_arg, ok, NULL, 0, err);
	free(a);
}

/* Starts the change that takes member m out (left: it leaves). 0, or -1
 * with err. */
static int remove_start(const struct member *m, int left, catalog_done_fn done, void *done_arg,
			char *err, size_t errlen)
{
	struct remove_arg *a = calloc(1, sizeof(*a));
	struct change *ch =
	    a ? change_new(0, remove_build, remove_done, a, "%s server %u (%s)",
			   left ? "server leaves:" : "remove (forced)", m->id, m->address)
	      : NULL;

	if (!ch) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->id = m->id;
	a->left = left;
	a->done = done;
	a->done_arg = done_arg;
	if (!left)
		change_exclude(ch, m->id);
	change_run(&ch);
	return 0;
}

/* Why member m, owning n pages (listed in pages), cannot be removed now
 * (group remove): 0, or -1 with err. */
static int remove_refused(const struct member *m, int force, uint64_t n, const char *pages,
			  char *err, size_t errlen)
{
	if (m->id == srv->cfg.id) {
		snprintf(err, errlen,
			 "server %u is this server; run 'group remove' on another member (or "
			 "'group leave %u' here if it owns no pages)",
			 m->id, m->id);
		return -1;
	}
	if (member_down(m, err, errlen) < 0)
		return -1;
	if (force)
		return 0;
	if (n)
		snprintf(err, errlen,
			 "removing server %u (%s) loses the %llu pages it owns, which have no "
			 "second copy (%s); IO to them will fail; run again with --force to remove "
			 "it",
			 m->id, m->address, (unsigned long long)n, pages);
	else
		snprintf(err, errlen,
			 "server %u (%s) owns no pages: nothing is lost; run again with --force to "
			 "remove it",
			 m->id, m->address);
	return -1;
}

/* Why member m, owning n pages, cannot leave now: 0, or -1 with err. */
static int leave_refused(const struct member *m, uint64_t n, const char *pages, char *err,
			 size_t errlen)
{
	if (n) {
		snprintf(err, errlen,
			 "server %u owns %llu pages (%s); only a server that owns none can leave: "
			 "move them off first with 'peerctl server evacuate %u'",
			 m->id, (unsigned long long)n, pages, m->id);
		return -1;
	}
	if (m->id == srv->cfg.id) {
		/* its commit would replace this server's catalog before the others
		 * have theirs: let another member run the change */
		snprintf(err, errlen,
			 "server %u is this server; run 'group leave %u' on another member", m->id,
			 m->id);
		return -1;
	}
	if (!m->up) {
		snprintf(err, errlen,
			 "server %u (%s) is down; a server leaves while it is up (it is told); "
			 "one that is down for good: 'peerctl group remove %u --force'",
			 m->id, m->address, m->id);
		return -1;
	}
	return 0;
}

int catalog_member_remove(uint32_t id, int leave, int force, catalog_done_fn done, void *done_arg,
			  char *err, size_t errlen)
{
	struct member *m = catalog_member(id);
	char pages[PV_MAX_MESSAGE / 2];
	uint64_t n;

	if (!m) {
		remove_not_member(id, err, errlen);
		return -ENOENT;
	}
	n = pages_owned(id, pages, sizeof(pages));
	if (leave ? leave_refused(m, n, pages, err, errlen)
		  : remove_refused(m, force, n, pages, err, errlen))
		return -1;
	if (!leave)
		pv_warn("removing server %u (%s) from the group: %llu pages are lost%s%s", id,
			m->address, (unsigned long long)n, n ? ": " : "", pages);
	return remove_start(m, leave, done, done_arg, err, errlen);
}
