/* connbal.c: client connection balancing (docs/architecture.md, "Client
 * connection balancing"). Which holder a fused client sends a volume's
 * requests to, from the group's picture of client traffic (the requests
 * clients send a server themselves, wherever their pages are served:
 * LoadSummary.client_r10/_r60 on the heartbeats, load.c):
 *
 *   at connect   the answer to a client's CATALOG names, per volume, the
 *                holder least loaded for its weight (VolumeInfo.
 *                client_server: connbal_pick; this server when it is
 *                within LOAD_FLOOR of that), and each member carrying
 *                more than its fair share by the threshold (Member.
 *                clients_over: connbal_over); fused keeps a holder on its
 *                own host unless that one is over (fused/catalog.c)
 *   later        every balance interval this server judges its own client
 *                traffic (connbal_decide); over its fair share by the
 *                threshold, past LOAD_FLOOR, two intervals in a row, it
 *                tells one client, in the answer to its next PING, to use
 *                another holder (Header.use_server); it then waits for
 *                fresh figures, and a client moved stays put for
 *                CONNBAL_COOLDOWN intervals wherever it is (it says when
 *                it last moved: ClientState.moved_ago_s)
 *
 * Only ever this server's own clients, as the page rebalancer moves only
 * its own pages (balance.c): two servers never tell one client two
 * things. Off with balance off (catalog balance_off); the connect-time
 * advice is not a move and is given regardless. connbal_pick, connbal_over
 * and connbal_decide are pure (unit tested); the rest runs on the reactor
 * thread. */
#include <stdio.h>
#include <string.h>

#include "peerd.h"

#define ADVICE_MS 5000 /* a client that does not ping within this keeps its server */

/* ---- the decisions (pure) ---- */

/* Sum of loads and weights of the servers that take clients. */
static void totals(const struct connbal_input *in, double *total, double *weights)
{
	*total = *weights = 0;
	for (size_t i = 0; i < in->n; i++)
		if (in->s[i].weight) {
			*total += in->s[i].load;
			*weights += in->s[i].weight;
		}
}

/* A 64-bit mix of a client id (splitmix64's finalizer): clients that tie
 * spread evenly whatever their ids look like. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

size_t connbal_pick(const struct connbal_input *in, uint64_t allowed, size_t prefer,
		    uint64_t client_id)
{
	size_t tied[PEERD_MAX_MEMBERS], ntied = 0, k = 0;
	double least = -1, fewest = 0;

	for (size_t i = 0; i < in->n && i < 64; i++)
		if (in->s[i].weight && (allowed & (1ull << i)) &&
		    (least < 0 || in->s[i].load / in->s[i].weight < least))
			least = in->s[i].load / in->s[i].weight;
	if (least < 0)
		return in->n;
	/* the least loaded, and those within the floor of it: load under the
	 * floor is no reason to send a client away from the server it asked */
	for (size_t i = 0; i < in->n && i < 64; i++) {
		const struct connbal_server *s = &in->s[i];

		if (!s->weight || !(allowed & (1ull << i)) ||
		    s->load - least * s->weight >= in->floor)
			continue;
		if (i == prefer)
			return i;
		tied[ntied++] = i;
	}
	/* then the fewest clients for its weight, then a hash of the client */
	for (size_t j = 0; j < ntied; j++) {
		double c = (double)in->s[tied[j]].clients / in->s[tied[j]].weight;

		if (!k || c < fewest) {
			fewest = c;
			k = 0;
		}
		if (c == fewest)
			tied[k++] = tied[j];
	}
	return tied[mix(client_id) % k];
}

int connbal_over(const struct connbal_input *in, size_t i)
{
	double total, weights, fs;

	if (i >= in->n || !in->s[i].weight)
		return 0;
	totals(in, &total, &weights);
	fs = total * in->s[i].weight / weights;
	return total > 0 && in->s[i].load - fs >= in->floor &&
	       in->s[i].load > fs * (1 + in->threshold);
}

enum balance_verdict connbal_decide(const struct connbal_input *in, struct connbal_decision *d)
{
	const struct connbal_server *self = &in->s[in->self];
	double total, weights, fs, now, best = 0, best_t = 0;
	int found = 0;

	memset(d, 0, sizeof(*d));
	if (in->self >= in->n || !self->weight)
		return BALANCE_IDLE;
	totals(in, &total, &weights);
	fs = total * self->weight / weights;
	d->total = total;
	d->fair = total > 0 ? fs / total : 0;
	d->share = total > 0 ? self->load / total : 0;
	if (total <= 0 || self->load - fs < in->floor)
		return BALANCE_IDLE;
	if (self->load <= fs * (1 + in->threshold))
		return BALANCE_FAIR;
	now = self->load / fs;
	/* clients on other hosts first: one on this server's host keeps it
	 * unless no other move helps (shared memory and mapped reads make
	 * this server its fastest path) */
	for (int local = 0; local < 2 && !found; local++)
		for (size_t c = 0; c < in->nclients; c++) {
			const struct connbal_client *cl = &in->c[c];
			double after_self = (self->load - cl->load) / fs;

			if (cl->local != local || cl->cooling || cl->load <= 0)
				continue;
			for (size_t t = 0; t < in->n && t < 64; t++) {
				const struct connbal_server *s = &in->s[t];
				double ft, after_t, worse;

				if (t == in->self || !s->weight || !(cl->allowed & (1ull << t)))
					continue;
				ft = total * s->weight / weights;
				after_t = (s->load + cl->load) / ft;
				worse = after_self > after_t ? after_self : after_t;
				/* the target ends within its threshold (it will not
				 * send the client back) and the worse of the two is
				 * better than this server now; or, a client being a
				 * large share, the worse of the two falls by the
				 * threshold (sending it back would need the loads to
				 * shift by twice that) */
				if (!((after_t <= 1 + in->threshold && worse < now) ||
				      worse <= now - in->threshold))
					continue;
				if (!found || worse < best || (worse == best && after_t < best_t)) {
					found = 1;
					best = worse;
					best_t = after_t;
					d->client = c;
					d->to = t;
				}
			}
		}
	if (!found)
		return BALANCE_OVER;
	d->client_share = in->c[d->client].load / total;
	return BALANCE_MOVE;
}

/* ---- the picture ---- */

/* A client moved stays put CONNBAL_COOLDOWN intervals, and at least two
 * windows (its rate here has then settled). */
static uint64_t cooldown_ms(uint32_t interval_s)
{
	uint64_t s = (uint64_t)CONNBAL_COOLDOWN * interval_s;

	if (s < 2u * balance_window_s(interval_s))
		s = 2u * balance_window_s(interval_s);
	return s * 1000;
}

/* Bits of in's servers among the n ids (none when ids is NULL). */
static uint64_t mask_of(const struct connbal_input *in, const uint32_t *ids, size_t n)
{
	uint64_t mask = 0;

	for (size_t t = 0; t < in->n && t < 64; t++)
		for (size_t k = 0; k < n; k++)
			if (ids[k] == in->s[t].id)
				mask |= 1ull << t;
	return mask;
}

/* Bits of in's servers that hold volume name (none if it is unknown). */
static uint64_t holders_mask(const struct connbal_input *in, const char *name)
{
	struct volume *v = catalog_volume(name);

	return v ? mask_of(in, v->holders, v->nholders) : 0;
}

/* The group's client traffic into in (windows of w60): 0, or -1 when this
 * server or a member that is up has no figures (an older server, or its
 * monitor off): nothing is judged or advised. A member takes clients
 * unless it is draining or holds no page of any volume (one pass over the
 * volumes' connection tables). */
static int picture(struct connbal_input *in, int w60)
{
	uint64_t holding = 0;

	memset(in, 0, sizeof(*in));
	in->self = SIZE_MAX;
	if (!load_summary(catalog_self()))
		return -1;
	for (size_t i = 0; i < srv->nmembers && in->n < PEERD_MAX_MEMBERS; i++) {
		const struct member *m = &srv->members[i];
		const Pv__LoadSummary *s = load_summary(m);
		const Pv__LoadRates *r = s ? (w60 ? s->client_r60 : s->client_r10) : NULL;
		struct connbal_server *b = &in->s[in->n];

		if (!m->up && m->id != srv->cfg.id)
			continue;
		if (!r)
			return -1;
		b->id = m->id;
		b->weight = m->draining ? 0 : m->weight ? m->weight : 1;
		b->load = load_units(r);
		b->clients = s->clients_connected;
		if (m->id == srv->cfg.id)
			in->self = in->n;
		in->n++;
	}
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (!v->deleted)
			holding |= mask_of(in, v->holders, v->nholders);
	for (size_t t = 0; t < in->n && t < 64; t++)
		if (!(holding & (1ull << t)))
			in->s[t].weight = 0;
	return in->self < in->n ? 0 : -1;
}

/* This server's clients into in (a client of 1.5 or later, with volumes
 * open through here), their hosts in hosts. */
static void own_clients(struct connbal_input *in, int w60, uint64_t now, uint64_t cool_ms,
			char hosts[][PV_ESCAPE_NAME])
{
	struct client_view cv[CONNBAL_CLIENTS];
	size_t n = clients_using(cv, CONNBAL_CLIENTS);

	if (n > CONNBAL_CLIENTS)
		n = CONNBAL_CLIENTS;
	for (size_t i = 0; i < n; i++) {
		struct connbal_client *c = &in->c[in->nclients];

		if ((cv[i].version & 0xffff) < 5 || cv[i].version >> 16 != PV_PROTO_MAJOR ||
		    !cv[i].nopen)
			continue;
		c->id = cv[i].id;
		c->load = load_client_units(cv[i].id, w60);
		c->local = cv[i].local;
		c->cooling = cv[i].moved_ms && now - cv[i].moved_ms < cool_ms;
		c->allowed = ~0ull;
		for (size_t k = 0; k < cv[i].nopen; k++)
			c->allowed &= holders_mask(in, cv[i].open[k]);
		snprintf(hosts[in->nclients], PV_ESCAPE_NAME, "%s", cv[i].host);
		in->nclients++;
	}
}

/* ---- connect: the CATALOG answer ---- */

void connbal_catalog(Pv__Catalog *c, uint64_t client_id)
{
	struct connbal_input in;
	double threshold;
	uint32_t interval_s;
	int on;

	if (!c || !client_id || !load_enabled || picture(&in, 0) < 0)
		return;
	balance_settings(catalog_committed(), &on, &threshold, &interval_s);
	in.threshold = threshold;
	in.floor = LOAD_FLOOR;
	for (size_t i = 0; i < c->n_volumes; i++) {
		Pv__VolumeInfo *vi = c->volumes[i];
		size_t k =
		    connbal_pick(&in, mask_of(&in, vi->holders, vi->n_holders), in.self, client_id);

		if (k < in.n)
			vi->client_server = in.s[k].id;
	}
	for (size_t i = 0; i < c->n_members; i++)
		for (size_t k = 0; k < in.n; k++)
			if (in.s[k].id == c->members[i]->id)
				c->members[i]->clients_over = connbal_over(&in, k);
}

/* ---- later: judging this server, telling a client ---- */

static uint64_t judged_ms; /* the last judgement */
static uint64_t fresh_ms;  /* no judgement before (fresh figures after a move) */
static struct balance_track bt = {.state = "idle"};
static struct {
	uint64_t client;
	uint32_t to;
	uint64_t until_ms; /* 0: none */
	char text[240];
} advice;

/* Judges once: over for the second interval in a row, picks a client to
 * tell at its next PING. */
static void judge(uint32_t interval_s, double threshold, uint64_t now)
{
	static char hosts[CONNBAL_CLIENTS][PV_ESCAPE_NAME];
	struct connbal_input in;
	struct connbal_decision d;
	enum balance_verdict v;
	char no_move[200];
	int w60 = interval_s >= 60;

	if (picture(&in, w60) < 0) {
		bt.state = "no figures";
		bt.over = 0;
		return;
	}
	in.threshold = threshold;
	in.floor = LOAD_FLOOR;
	own_clients(&in, w60, now, cooldown_ms(interval_s), hosts);
	v = connbal_decide(&in, &d);
	snprintf(no_move, sizeof(no_move),
		 "rebalance: server %u carries %.0f%% of client traffic, fair share %.0f%%, but "
		 "none of its %zu clients it may move would even it out",
		 srv->cfg.id, d.share * 100, d.fair * 100, in.nclients);
	if (!balance_track(&bt, v, now, no_move))
		return;
	advice.client = in.c[d.client].id;
	advice.to = in.s[d.to].id;
	advice.until_ms = now + ADVICE_MS;
	snprintf(advice.text, sizeof(advice.text),
		 "rebalance: client %016llx (host %s) %u->%u: server %u carries %.0f%% of client "
		 "traffic, fair share %.0f%%, the client %.0f%%",
		 (unsigned long long)advice.client, hosts[d.client][0] ? hosts[d.client] : "?",
		 srv->cfg.id, advice.to, srv->cfg.id, d.share * 100, d.fair * 100,
		 d.client_share * 100);
	bt.over = 0;
	bt.state = "telling";
}

void connbal_tick(void *arg)
{
	const Pv__Catalog *c = catalog_committed();
	uint64_t now = pv_now_ms();
	uint32_t interval_s;
	double threshold;
	int on;

	(void)arg;
	balance_settings(c, &on, &threshold, &interval_s);
	if (!on || !load_enabled || remove_self_state()) {
		bt.state = on && load_enabled ? "paused" : "off";
		bt.over = 0;
		advice.until_ms = 0;
		return;
	}
	if (advice.until_ms && now >= advice.until_ms) {
		pv_info("rebalance: client %016llx did not ping within %d s: it stays with server "
			"%u",
			(unsigned long long)advice.client, ADVICE_MS / 1000, srv->cfg.id);
		advice.until_ms = 0;
		bt.state = "over";
	}
	if (advice.until_ms)
		return;
	if (now - srv->started_ms < PEERD_DOWN_AFTER_MS || now < fresh_ms ||
	    now - judged_ms < (uint64_t)interval_s * 1000)
		return;
	judged_ms = now;
	judge(interval_s, threshold, now);
}

uint32_t connbal_ping(uint64_t client_id, uint32_t version, char *why, size_t len)
{
	uint64_t now = pv_now_ms();
	uint32_t interval_s;
	double threshold;
	int on;

	if (!advice.until_ms || advice.client != client_id || now >= advice.until_ms ||
	    version >> 16 != PV_PROTO_MAJOR || (version & 0xffff) < 5)
		return 0;
	advice.until_ms = 0;
	pv_info("%s", advice.text);
	balance_note(advice.text);
	snprintf(why, len, "%s", advice.text);
	/* fresh figures: the client's traffic has left this server's rate and
	 * reached the target's */
	balance_settings(catalog_committed(), &on, &threshold, &interval_s);
	fresh_ms = now + balance_fresh_ms(interval_s);
	bt.state = "waiting";
	return advice.to;
}

void connbal_status(const char **st, unsigned *over_out)
{
	*st = bt.state;
	*over_out = bt.over;
}
