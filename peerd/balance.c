/* balance.c: the page rebalancer (docs/architecture.md, "Load monitor and
 * rebalancer"). On each server, for the pages it owns only (so two servers
 * never fight over a page, as in placement.c): every balance interval it
 * judges its load against its fair share of the group's (by weight, from
 * the summaries the heartbeats carry, load.c); over it by the threshold,
 * and past an absolute floor, for two intervals in a row, it moves the one
 * hot page whose move best evens the two servers involved out, through
 * migrate_start. One move at a time (none while a move out of this server
 * runs or moves are paused); after a move it waits for fresh figures (two
 * intervals, and at least the window it judges by); a page it moved stays
 * put for BALANCE_COOLDOWN intervals. balance_decide is pure (unit
 * tested); the rest runs on the reactor thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peerd.h"

#define RECENT	   8
#define COOL_SLOTS 64
#define FREE_SPARE (64ull << 20) /* a target keeps this free beyond the page */

/* ---- the decision (pure) ---- */

enum balance_verdict balance_decide(const struct balance_input *in, struct balance_decision *d)
{
	const struct balance_server *self = &in->s[in->self];
	double total = 0, weights = 0, fs, best = 0;
	int found = 0;

	memset(d, 0, sizeof(*d));
	if (in->self >= in->n || !self->weight)
		return BALANCE_IDLE;
	for (size_t i = 0; i < in->n; i++)
		if (in->s[i].weight) {
			total += in->s[i].load;
			weights += in->s[i].weight;
		}
	fs = total * self->weight / weights;
	d->total = total;
	d->fair = total > 0 ? fs / total : 0;
	d->share = total > 0 ? self->load / total : 0;
	if (self->load - fs < in->floor || total <= 0)
		return BALANCE_IDLE;
	if (self->load <= fs * (1 + in->threshold))
		return BALANCE_FAIR;
	for (size_t p = 0; p < in->npages; p++) {
		const struct balance_page *pg = &in->p[p];
		double after_self = (self->load - pg->load) / fs;

		if (pg->load <= 0 || pg->load >= self->load)
			continue;
		for (size_t t = 0; t < in->n; t++) {
			const struct balance_server *s = &in->s[t];
			double ft = total * s->weight / weights, after_t, score;

			if (t == in->self || !s->weight || !(pg->allowed & (1ull << t)) ||
			    s->free < pg->page_size + FREE_SPARE)
				continue;
			after_t = (s->load + pg->load) / ft;
			/* the target must not end over its own threshold (it would
			 * send the page back), and the move must lower the worse
			 * of the two below where this server is now */
			if (after_t > 1 + in->threshold || after_t >= self->load / fs)
				continue;
			score = after_self > after_t ? after_self : after_t;
			if (!found || score < best ||
			    (score == best &&
			     s->load / ft <
				 in->s[d->to].load / (total * in->s[d->to].weight / weights))) {
				found = 1;
				best = score;
				d->page = p;
				d->to = t;
			}
		}
	}
	if (!found)
		return BALANCE_OVER;
	d->page_share = in->p[d->page].load / total;
	return BALANCE_MOVE;
}

/* ---- the tick ---- */

static uint64_t judged_ms; /* the last judgement */
static uint64_t fresh_ms;  /* no judgement before (fresh figures after a move) */
static int moving;	   /* a move of ours ran at the last tick */
static struct balance_track bt = {.state = "idle"};
static char recent[RECENT][240];
static size_t nrecent, recent_head;
static struct {
	uint64_t vol_id, page, until_ms;
} cool[COOL_SLOTS];
static uint64_t outcomes[BALANCE_OUTCOMES]; /* judgements since start */

const char *const balance_outcome_names[BALANCE_OUTCOMES] = {
    [BALANCE_JUDGED_IDLE] = "idle",	  [BALANCE_JUDGED_FAIR] = "fair",
    [BALANCE_JUDGED_OVER] = "over",	  [BALANCE_JUDGED_MOVE] = "move",
    [BALANCE_JUDGED_REFUSED] = "refused", [BALANCE_JUDGED_NO_FIGURES] = "no_figures",
};

void balance_settings(const Pv__Catalog *c, int *on, double *threshold, uint32_t *interval_s)
{
	*on = c && !c->balance_off;
	*threshold =
	    (c && c->balance_threshold_pm ? c->balance_threshold_pm : BALANCE_THRESHOLD_PM) /
	    1000.0;
	*interval_s = c && c->balance_interval_s ? c->balance_interval_s : BALANCE_INTERVAL_S;
}

/* The window the rebalancer judges by: 10 s rates for intervals under a
 * minute, else 60 s ones. */
static const Pv__LoadRates *window(const Pv__LoadSummary *s, uint32_t interval_s)
{
	return interval_s < 60 ? s->r10 : s->r60;
}

uint32_t balance_window_s(uint32_t interval_s)
{
	return interval_s < 60 ? 10 : 60;
}

uint64_t balance_fresh_ms(uint32_t interval_s)
{
	/* two intervals, and twice the window judged by (the moved load has
	 * left this server's rate and reached the target's by 86%) */
	uint64_t wait = 2ull * interval_s;

	if (wait < 2u * balance_window_s(interval_s))
		wait = 2u * balance_window_s(interval_s);
	return wait * 1000;
}

/* A page moved stays put BALANCE_COOLDOWN intervals, and at least
 * BALANCE_COOLDOWN_MIN_S. */
static uint64_t cooldown_ms(uint32_t interval_s)
{
	uint64_t s = (uint64_t)BALANCE_COOLDOWN * interval_s;

	return (s > BALANCE_COOLDOWN_MIN_S ? s : BALANCE_COOLDOWN_MIN_S) * 1000;
}

static int cooling(uint64_t vol_id, uint64_t page, uint64_t now)
{
	for (size_t i = 0; i < COOL_SLOTS; i++)
		if (cool[i].vol_id == vol_id && cool[i].page == page && cool[i].until_ms > now)
			return 1;
	return 0;
}

static void cool_add(uint64_t vol_id, uint64_t page, uint64_t until)
{
	size_t k = 0;

	for (size_t i = 0; i < COOL_SLOTS; i++)
		if (cool[i].until_ms < cool[k].until_ms)
			k = i;
	cool[k].vol_id = vol_id;
	cool[k].page = page;
	cool[k].until_ms = until;
}

static struct volume *volume_by_id(uint64_t id)
{
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (v->id == id && !v->deleted)
			return v;
	return NULL;
}

/* This server's rates as of the others' folds (their mean time). Its own
 * last fold is up to a heartbeat newer than theirs, and while a load
 * rises a newer figure is larger: judged against older ones, every server
 * of a uniformly loaded group saw itself over its share, and moved pages. */
static const Pv__LoadRates *self_rates(const Pv__LoadSummary *mine, uint32_t interval_s)
{
	uint64_t at = 0, n = 0;
	const Pv__LoadRates *r;

	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];
		const Pv__LoadSummary *s = m->id != srv->cfg.id && m->up ? load_summary(m) : NULL;

		if (s && s->at_ms) {
			at += s->at_ms;
			n++;
		}
	}
	r = n ? load_self_at(at / n, interval_s < 60 ? 0 : 1) : NULL;
	return r ? r : window(mine, interval_s);
}

/* The group's picture into in: 0, or -1 when a member that is up sent no
 * figures (an older server, or its monitor off): nothing is judged. */
static int picture(struct balance_input *in, uint32_t interval_s, uint64_t now,
		   struct volume **pvols)
{
	const Pv__LoadSummary *mine = load_summary(catalog_self());

	memset(in, 0, sizeof(*in));
	if (!mine)
		return -1;
	for (size_t i = 0; i < srv->nmembers && in->n < PEERD_MAX_MEMBERS; i++) {
		const struct member *m = &srv->members[i];
		const Pv__LoadSummary *s = load_summary(m);
		struct balance_server *b = &in->s[in->n];

		if (!m->up)
			continue;
		if (!s || !window(s, interval_s))
			return -1;
		b->id = m->id;
		b->weight = m->draining ? 0 : m->weight ? m->weight : 1;
		b->load = load_units(m->id == srv->cfg.id ? self_rates(mine, interval_s)
							  : window(s, interval_s));
		b->free = m->id == srv->cfg.id ? store_free() : m->free;
		if (m->id == srv->cfg.id)
			in->self = in->n;
		in->n++;
	}
	for (size_t i = 0; i < mine->n_pages && in->npages < BALANCE_PAGES; i++) {
		const Pv__PageLoad *pl = mine->pages[i];
		struct volume *v = volume_by_id(pl->volume_id);
		struct balance_page *p = &in->p[in->npages];
		const Pv__LoadRates *r = interval_s < 60 ? pl->r10 : pl->r60;

		if (!v || pl->page >= v->npages || v->owner[pl->page] != srv->cfg.id ||
		    migrate_page_state(v, pl->page, NULL) || cooling(v->id, pl->page, now))
			continue;
		p->volume_id = v->id;
		p->page = pl->page;
		p->load = load_units(r);
		p->page_size = v->page_size;
		for (size_t t = 0; t < in->n; t++)
			for (size_t k = 0; k < v->nservers; k++)
				if (v->servers[k] == in->s[t].id)
					p->allowed |= 1ull << t;
		pvols[in->npages] = v;
		in->npages++;
	}
	return 0;
}

void balance_note(const char *text)
{
	char when[32];
	time_t t = time(NULL);

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	recent_head = (recent_head + RECENT - 1) % RECENT;
	snprintf(recent[recent_head], sizeof(recent[recent_head]), "%s %s", when, text);
	if (nrecent < RECENT)
		nrecent++;
}

/* Judges once: over for the second interval in a row, starts a move. */
static void judge(uint32_t interval_s, double threshold, uint64_t now)
{
	struct balance_input in;
	struct balance_decision d;
	struct volume *vols[BALANCE_PAGES];
	enum balance_verdict v;
	char err[PV_MAX_MESSAGE], text[200];
	struct volume *vol;
	const struct balance_page *pg;

	if (picture(&in, interval_s, now, vols) < 0) {
		bt.state = "no figures";
		bt.over = 0;
		outcomes[BALANCE_JUDGED_NO_FIGURES]++;
		return;
	}
	in.threshold = threshold;
	in.floor = LOAD_FLOOR;
	v = balance_decide(&in, &d);
	if (v == BALANCE_IDLE || v == BALANCE_FAIR)
		outcomes[v == BALANCE_IDLE ? BALANCE_JUDGED_IDLE : BALANCE_JUDGED_FAIR]++;
	snprintf(text, sizeof(text),
		 "rebalance: server %u carries %.0f%% of the load, fair share %.0f%%, but none of "
		 "its %zu hottest pages it may move would even it out",
		 srv->cfg.id, d.share * 100, d.fair * 100, in.npages);
	if (!balance_track(&bt, v, now, text)) {
		if (v != BALANCE_IDLE && v != BALANCE_FAIR)
			outcomes[BALANCE_JUDGED_OVER]++;
		return;
	}
	pg = &in.p[d.page];
	vol = vols[d.page];
	snprintf(text, sizeof(text),
		 "rebalance: %s page %llu %u->%u: server %u carries %.0f%% of the load, fair "
		 "share %.0f%%, page %llu carries %.0f%%",
		 vol->name, (unsigned long long)pg->page, srv->cfg.id, in.s[d.to].id, srv->cfg.id,
		 d.share * 100, d.fair * 100, (unsigned long long)pg->page, d.page_share * 100);
	if (migrate_start(vol, pg->page, in.s[d.to].id, 0, err, sizeof(err)) < 0) {
		pv_warn("%s: refused: %s", text, err);
		cool_add(vol->id, pg->page, now + (uint64_t)interval_s * 1000);
		outcomes[BALANCE_JUDGED_REFUSED]++;
		return;
	}
	pv_info("%s", text);
	outcomes[BALANCE_JUDGED_MOVE]++;
	balance_note(text);
	cool_add(vol->id, pg->page, now + cooldown_ms(interval_s));
	bt.over = 0;
	moving = 1;
	bt.state = "moving";
}

int balance_track(struct balance_track *t, enum balance_verdict v, uint64_t now,
		  const char *no_move)
{
	if (v == BALANCE_IDLE || v == BALANCE_FAIR) {
		t->state = v == BALANCE_IDLE ? "idle" : "fair";
		t->over = 0;
		return 0;
	}
	t->state = "over";
	if (v == BALANCE_OVER && now - t->over_logged_ms >= 60000) {
		pv_info("%s", no_move);
		t->over_logged_ms = now;
	}
	return ++t->over >= 2 && v == BALANCE_MOVE;
}

void balance_tick(void *arg)
{
	const Pv__Catalog *c = catalog_committed();
	uint64_t now = pv_now_ms();
	uint32_t interval_s;
	double threshold;
	int on;

	(void)arg;
	balance_settings(c, &on, &threshold, &interval_s);
	if (!on || !load_enabled) {
		bt.state = "off";
		bt.over = 0;
		return;
	}
	if (c->migrate_paused || remove_self_state() || migrate_out_count() > 0) {
		bt.state = migrate_out_count() > 0 ? "moving" : "paused";
		return;
	}
	if (moving) {
		fresh_ms = now + balance_fresh_ms(interval_s); /* fresh figures */
		moving = 0;
		bt.over = 0;
		bt.state = "waiting";
	}
	/* (an interval changed takes effect at once) */
	if (now - srv->started_ms < PEERD_DOWN_AFTER_MS || now < fresh_ms ||
	    now - judged_ms < (uint64_t)interval_s * 1000)
		return;
	judged_ms = now;
	judge(interval_s, threshold, now);
}

void balance_status(struct balance_status *st)
{
	size_t i;

	memset(st, 0, sizeof(*st));
	balance_settings(catalog_committed(), &st->on, &st->threshold, &st->interval_s);
	st->over = bt.over;
	st->state = st->on && load_enabled ? bt.state : "off"; /* (before the next tick) */
	for (i = 0; i < nrecent && i < 7; i++)
		st->recent[i] = recent[(recent_head + i) % RECENT];
}

size_t balance_recent(const char **out, size_t max)
{
	size_t i;

	for (i = 0; i < nrecent && i < max; i++)
		out[i] = recent[(recent_head + i) % RECENT];
	return i;
}

uint64_t balance_outcome_count(enum balance_outcome o)
{
	return o < BALANCE_OUTCOMES ? outcomes[o] : 0;
}
