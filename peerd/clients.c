/* clients.c: the fused clients this server has heard from: the volumes
 * each has open (from their PINGs), used to refuse deleting a volume that
 * is in use, who uses this server now and how (on its host, moved by the
 * group lately: connbal.c, load.c), and each client's low-water mark (Header.client_done_below:
 * its requests below it were answered), used to refuse a late copy of a
 * WRITE or TRIM (request.c). A client not heard from for
 * PEERD_CLIENT_EXPIRE_MS drops off the first list, its mark after
 * PEERD_MARK_EXPIRE_MS. Reactor thread only. */
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* A client's low-water mark, by client id (uthash). */
struct mark {
	UT_hash_handle hh;
	uint64_t client_id;
	uint64_t done_below; /* the largest Header.client_done_below seen */
	uint64_t seen_ms;    /* when it was last renewed */
};

static struct mark *marks;
static uint64_t marks_full_logged_ms;

struct client {
	struct client *next;
	uint64_t id;
	uint64_t last_seen_ms;
	char host[PV_ESCAPE_NAME]; /* ClientState.host, escaped (pv_escape) */
	char **open;
	size_t nopen;
	uint32_t version;  /* Header.version of its last PING */
	int local;	   /* ClientState.local */
	uint64_t moved_ms; /* when the group last moved it (ClientState.moved_ago_s), 0: never */
};

static struct client *clients;

static void client_free(struct client *c)
{
	for (size_t i = 0; i < c->nopen; i++)
		free(c->open[i]);
	free(c->open);
	free(c);
}

void clients_ping(uint64_t client_id, uint32_t version, const Pv__ClientState *st)
{
	struct client *c;
	size_t n = st ? st->n_open_volumes : 0;
	uint64_t now = pv_now_ms();

	for (c = clients; c; c = c->next)
		if (c->id == client_id)
			break;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return;
		c->id = client_id;
		c->next = clients;
		clients = c;
		pv_info("client %016llx connected", (unsigned long long)client_id);
	}
	c->last_seen_ms = now;
	c->version = version;
	c->local = st && st->local;
	/* how long ago by the client's own clock: a second's precision */
	c->moved_ms = 0;
	if (st && st->moved_ago_s) {
		uint64_t ago = ((uint64_t)st->moved_ago_s - 1) * 1000;

		c->moved_ms = now > ago ? now - ago : 1;
	}
	if (st && st->host)
		pv_escape(st->host, strlen(st->host), c->host, sizeof(c->host));
	for (size_t i = 0; i < c->nopen; i++)
		free(c->open[i]);
	free(c->open);
	c->open = NULL;
	c->nopen = 0;
	if (n > 256)
		n = 256;
	if (n && !(c->open = calloc(n, sizeof(char *))))
		return;
	for (size_t i = 0; i < n; i++) {
		if (strlen(st->open_volumes[i]) > PV_MAX_NAME)
			continue;
		c->open[c->nopen] = strdup(st->open_volumes[i]);
		if (c->open[c->nopen])
			c->nopen++;
	}
}

uint32_t clients_open_count(const char *volume)
{
	uint64_t now = pv_now_ms();
	uint32_t n = 0;

	for (struct client *c = clients; c; c = c->next) {
		if (now - c->last_seen_ms > PEERD_CLIENT_EXPIRE_MS)
			continue;
		for (size_t i = 0; i < c->nopen; i++) {
			if (!strcmp(c->open[i], volume)) {
				n++;
				break;
			}
		}
	}
	return n;
}

const char *clients_host(uint64_t id)
{
	for (struct client *c = clients; c; c = c->next)
		if (c->id == id)
			return c->host;
	return "";
}

size_t clients_open_by(const char *volume, uint64_t *ids, const char **hosts, size_t max)
{
	uint64_t now = pv_now_ms();
	size_t n = 0;

	for (struct client *c = clients; c && n < max; c = c->next) {
		if (now - c->last_seen_ms > PEERD_CLIENT_EXPIRE_MS)
			continue;
		for (size_t i = 0; i < c->nopen; i++) {
			if (!strcmp(c->open[i], volume)) {
				ids[n] = c->id;
				hosts[n++] = c->host;
				break;
			}
		}
	}
	return n;
}

size_t clients_using(struct client_view *out, size_t max)
{
	uint64_t now = pv_now_ms();
	size_t n = 0;

	for (struct client *c = clients; c; c = c->next) {
		if (now - c->last_seen_ms > CLIENTS_USING_MS)
			continue;
		if (n < max) {
			out[n].id = c->id;
			out[n].host = c->host;
			out[n].local = c->local;
			out[n].version = c->version;
			out[n].moved_ms = c->moved_ms;
			out[n].open = (const char *const *)c->open;
			out[n].nopen = c->nopen;
		}
		n++;
	}
	return n;
}

uint32_t clients_count(void)
{
	uint64_t now = pv_now_ms();
	uint32_t n = 0;

	for (struct client *c = clients; c; c = c->next)
		n += now - c->last_seen_ms <= PEERD_CLIENT_EXPIRE_MS;
	return n;
}

int clients_is_late(uint64_t client_req, uint64_t done_below)
{
	/* 0 is no value (senders before 1.3, or peers' own requests) */
	return client_req && done_below && client_req < done_below;
}

uint64_t clients_done_below(uint64_t client_id, uint64_t done_below, uint64_t now_ms)
{
	struct mark *m;

	HASH_FIND(hh, marks, &client_id, sizeof(client_id), m);
	if (m) {
		m->seen_ms = now_ms;
		if (done_below > m->done_below)
			m->done_below = done_below;
		return m->done_below;
	}
	if (!client_id || !done_below)
		return done_below;
	if (HASH_COUNT(marks) >= PEERD_MARKS_MAX || !(m = calloc(1, sizeof(*m)))) {
		if (now_ms - marks_full_logged_ms >= 60000 || !marks_full_logged_ms) {
			marks_full_logged_ms = now_ms;
			pv_warn("client %016llx: no room to remember its answered requests (%u "
				"clients known); late copies of its writes are not recognized "
				"until some expire",
				(unsigned long long)client_id, HASH_COUNT(marks));
		}
		return done_below;
	}
	m->client_id = client_id;
	m->done_below = done_below;
	m->seen_ms = now_ms;
	HASH_ADD(hh, marks, client_id, sizeof(m->client_id), m);
	if (!m->hh.tbl)
		free(m); /* no memory for the table: not recorded */
	return done_below;
}

void clients_marks_expire(uint64_t now_ms)
{
	struct mark *m, *tmp;

	HASH_ITER(hh, marks, m, tmp)
	{
		if (now_ms > m->seen_ms && now_ms - m->seen_ms > PEERD_MARK_EXPIRE_MS) {
			HASH_DELETE(hh, marks, m);
			free(m);
		}
	}
}

unsigned clients_marks_count(void)
{
	return HASH_COUNT(marks);
}

void clients_expire(void *arg)
{
	uint64_t now = pv_now_ms();

	clients_marks_expire(now);

	for (struct client **cp = &clients; *cp;) {
		struct client *c = *cp;

		if (now - c->last_seen_ms > PEERD_CLIENT_EXPIRE_MS) {
			pv_info("client %016llx gone (silent for %d s)", (unsigned long long)c->id,
				PEERD_CLIENT_EXPIRE_MS / 1000);
			*cp = c->next;
			client_free(c);
		} else {
			cp = &c->next;
		}
	}
}

void clients_free(void)
{
	struct mark *m, *tmp;

	HASH_ITER(hh, marks, m, tmp)
	{
		HASH_DELETE(hh, marks, m);
		free(m);
	}
	while (clients) {
		struct client *next = clients->next;

		client_free(clients);
		clients = next;
	}
}
