/* load.c: the load monitor (docs/architecture.md, "Load monitor and
 * rebalancer"). What this server serves, counted where the work is done:
 *
 *   request.c submit of a local part  -> load_part: its pages (and the
 *                                        clients that hit each most), its
 *                                        volume, this server (requests,
 *                                        bytes, op, sequential bytes)
 *   request.c reply_mapped            -> load_part + load_done (the client
 *                                        copies the data; the page is ours)
 *   request.c request_finish          -> load_done: served time (p99, mean)
 *                                        and the client's own requests (and
 *                                        all clients' together: this
 *                                        server's client traffic, connbal.c)
 *   forward.c forward_part            -> load_forwarded: relayed, not served
 *
 * Counters are plain integers of the current second, on the reactor thread:
 * no lock, no allocation once a page or client is known (a page: one hash
 * lookup per page of a part). Once a second load_tick folds them into
 * decaying rates over 10 s and 60 s, touching only the pages and clients
 * hit that second (a hit list); an entry not hit keeps its rates as of its
 * last fold and is read decayed to now. The hottest pages are kept as a
 * list of LOAD_TOP: pages not hit all decay by the same factor, so the new
 * top is within the old top and the pages hit. Cold entries go once a
 * minute. The tick then builds this server's summary (Pv__LoadSummary),
 * which the heartbeats carry to every member (peers.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peerd.h"

int load_enabled = 1;

#define NOPS	    LOAD_OPS /* read, write, other (TRIM, FLUSH) */
#define NW	    2	     /* windows: 10 s, 60 s */
#define LAT_BUCKETS 120
#define LAT_SECONDS 10	 /* p99 over this many seconds */
#define CLIENTS_MAX 4096 /* clients followed one by one */
#define SUM_USING   48	 /* clients using this server listed in a summary */
#define SUM_VOLS    8	 /* volumes listed per client in a summary */
#define VOLS_MAX    256	 /* volumes in a summary */
#define SWEEP_TICKS 60	 /* cold entries dropped this often */
#define COLD	    0.01 /* requests/s below which an entry is gone */

static const double tau[NW] = {10.0, 60.0};

/* One second's counts. */
struct ctr {
	uint64_t ops[NOPS];
	uint64_t bytes[NOPS];
	uint64_t seq;	 /* bytes that continued the previous request */
	uint64_t lat_us; /* served time, summed */
	uint64_t lat_n;
};

/* Decaying rates per second, as of tick. */
struct rates {
	double ops[NOPS], bytes[NOPS], seq, lat_us, lat_n;
};

struct lstat {
	struct ctr c;
	struct rates r[NW];
	uint64_t tick; /* the fold r is as of */
};

struct lvol {
	UT_hash_handle hh;
	uint64_t id;
	char name[PV_MAX_NAME + 1];
	struct lstat st;
	struct load_totals total; /* since start, as of the last fold */
	uint64_t pages;		  /* page entries pointing here */
};

struct page_key {
	uint64_t vol_id;
	uint64_t page;
};

struct lpage {
	UT_hash_handle hh;
	struct page_key key;
	struct lvol *vol;
	struct lstat st;
	uint64_t last_end; /* end of its last part: the next is sequential there */
	struct lpage *next_hit;
	int hit, in_top;
	/* the clients that hit it most lately: two counters of the
	 * Misra-Gries summary (a client with more than a third of its parts
	 * is in them), halved at each fold */
	uint64_t by[2];
	uint32_t by_n[2];
};

struct lclient {
	UT_hash_handle hh;
	uint64_t id;
	struct lstat st;
	uint64_t last_end;
	struct lclient *next_hit;
	int hit;
};

static struct lstat server, fwd, client_all; /* client_all: every client's own requests */
static struct load_totals server_total, fwd_total; /* since start, as of the last fold */
static struct lvol *vols;
static struct lpage *pages, *page_hits;
static struct lclient *clients, *client_hits;
static struct lpage *top[LOAD_TOP];
static size_t ntop;
static uint64_t tick = 1; /* folds so far, + 1 */
static uint32_t lat_hist[LAT_SECONDS][LAT_BUCKETS];
static unsigned lat_cur;
static uint32_t p99_us;
/* served times since start, by op (metrics.c's histogram) */
static uint64_t lat_total[NOPS][LAT_BUCKETS], lat_sum_us[NOPS];

const char *const load_op_names[LOAD_OPS] = {"read", "write", "other"};

/* ---- pure ---- */

double load_decay(double r, double x, double gap_s, double tau_s)
{
	double d = exp(-1.0 / tau_s);

	return r * exp(-gap_s / tau_s) * d + x * (1.0 - d);
}

double load_units(const Pv__LoadRates *r)
{
	if (!r)
		return 0;
	return r->read_ops + r->write_ops + r->other_ops +
	       ((double)r->read_bytes + r->write_bytes) / LOAD_BYTES_PER_OP;
}

/* The histogram bucket of a served time: 4 per power of two. */
static unsigned lat_bucket(uint64_t us)
{
	unsigned e, b;

	if (us < 4)
		return (unsigned)us;
	e = 63 - (unsigned)__builtin_clzll(us);
	b = 4 * (e - 1) + (unsigned)((us >> (e - 2)) & 3);
	return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

/* The largest time in bucket b. */
static uint64_t lat_upper(unsigned b)
{
	unsigned e = b / 4 + 1;

	if (b < 4)
		return b;
	return ((uint64_t)(5 + b % 4) << (e - 2)) - 1;
}

/* ---- counting (the hot path) ---- */

uint64_t load_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int op_index(uint32_t op)
{
	return op == PV_OP_READ ? 0 : op == PV_OP_WRITE ? 1 : 2;
}

static void ctr_add(struct ctr *c, int k, uint64_t ops, uint64_t len, uint64_t seq)
{
	c->ops[k] += ops;
	c->bytes[k] += len;
	c->seq += seq;
}

static struct lvol *vol_get(const struct volume *vol)
{
	struct lvol *v;

	HASH_FIND(hh, vols, &vol->id, sizeof(vol->id), v);
	if (v)
		return v;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->id = vol->id;
	v->st.tick = tick - 1;
	memcpy(v->name, vol->name, sizeof(v->name));
	HASH_ADD(hh, vols, id, sizeof(v->id), v);
	if (!v->hh.tbl) {
		free(v);
		return NULL;
	}
	return v;
}

/* The entry of page of vol, made on first sight (NULL when the table is
 * full or without memory: the part counts on its volume and server only). */
static struct lpage *page_get(const struct volume *vol, struct lvol *v, uint64_t page)
{
	struct page_key key = {vol->id, page};
	struct lpage *e;

	HASH_FIND(hh, pages, &key, sizeof(key), e);
	if (e || !v || HASH_COUNT(pages) >= LOAD_PAGES_MAX)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = key;
	e->vol = v;
	e->st.tick = tick - 1;
	e->last_end = UINT64_MAX;
	HASH_ADD(hh, pages, key, sizeof(e->key), e);
	if (!e->hh.tbl) {
		free(e);
		return NULL;
	}
	v->pages++;
	return e;
}

/* Counts a part of client id on page e (Misra-Gries with two counters). */
static void page_client(struct lpage *e, uint64_t id)
{
	if (!id)
		return;
	if (e->by[0] == id && e->by_n[0])
		e->by_n[0]++;
	else if (e->by[1] == id && e->by_n[1])
		e->by_n[1]++;
	else if (!e->by_n[0])
		e->by[0] = id, e->by_n[0] = 1;
	else if (!e->by_n[1])
		e->by[1] = id, e->by_n[1] = 1;
	else
		e->by_n[0]--, e->by_n[1]--;
}

void load_part(const struct volume *vol, uint32_t op, uint64_t offset, uint64_t len,
	       uint64_t client_id)
{
	int k = op_index(op);
	uint64_t pos = offset, end = offset + len, seq = 0;
	struct lvol *v;

	if (!load_enabled)
		return;
	v = vol_get(vol);
	/* pages for READ and WRITE only: a TRIM may span a whole volume */
	while (k < 2 && pos < end) {
		uint64_t page = pos / vol->page_size;
		uint64_t page_end = (page + 1) * vol->page_size;
		struct lpage *e = page_get(vol, v, page);
		uint64_t n;

		if (page_end > end)
			page_end = end;
		n = page_end - pos;
		if (e) {
			/* a part going on into this page continues it */
			uint64_t s = pos > offset || e->last_end == pos ? n : 0;

			ctr_add(&e->st.c, k, 1, n, s);
			page_client(e, client_id);
			seq += s;
			e->last_end = page_end;
			if (!e->hit) {
				e->hit = 1;
				e->next_hit = page_hits;
				page_hits = e;
			}
		}
		pos = page_end;
	}
	if (v)
		ctr_add(&v->st.c, k, 1, len, seq);
	ctr_add(&server.c, k, 1, len, seq);
}

static struct lclient *client_get(uint64_t id)
{
	struct lclient *c;

	HASH_FIND(hh, clients, &id, sizeof(id), c);
	if (c || HASH_COUNT(clients) >= CLIENTS_MAX)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = id;
	c->st.tick = tick - 1;
	c->last_end = UINT64_MAX;
	HASH_ADD(hh, clients, id, sizeof(c->id), c);
	if (!c->hh.tbl) {
		free(c);
		return NULL;
	}
	return c;
}

void load_done(uint32_t op, uint64_t client_id, uint64_t offset, uint64_t len, uint64_t start_us)
{
	uint64_t now, lat;
	struct lclient *c;
	int k = op_index(op);
	unsigned b;

	if (!load_enabled)
		return;
	now = load_now_us();
	lat = now > start_us ? now - start_us : 0;
	b = lat_bucket(lat);
	server.c.lat_us += lat;
	server.c.lat_n++;
	lat_hist[lat_cur][b]++;
	lat_total[k][b]++;
	lat_sum_us[k] += lat;
	if (!client_id)
		return;
	ctr_add(&client_all.c, k, 1, len, 0);
	if (!(c = client_get(client_id)))
		return;
	ctr_add(&c->st.c, k, 1, len, c->last_end == offset ? len : 0);
	c->st.c.lat_us += lat;
	c->st.c.lat_n++;
	if (op != PV_OP_FLUSH)
		c->last_end = offset + len;
	if (!c->hit) {
		c->hit = 1;
		c->next_hit = client_hits;
		client_hits = c;
	}
}

void load_forwarded(uint32_t op, uint64_t len)
{
	if (load_enabled)
		ctr_add(&fwd.c, op_index(op), 1, len, 0);
}

/* ---- the fold, once a second ---- */

/* load_decay's factors for one window: what is kept of r after gap quiet
 * seconds and the sample second, and the sample's weight. Entries hit
 * second after second (gap 0) take the precomputed ones: no exp() per
 * entry then. */
static double keep0[NW], add[NW];

static void stat_fold(struct lstat *st)
{
	uint64_t gap = tick - st->tick - 1;
	struct ctr *c = &st->c;

	if (!add[0])
		for (int w = 0; w < NW; w++) {
			keep0[w] = exp(-1.0 / tau[w]);
			add[w] = 1.0 - keep0[w];
		}
	for (int w = 0; w < NW; w++) {
		struct rates *r = &st->r[w];
		double keep = gap ? exp(-(double)(gap + 1) / tau[w]) : keep0[w], a = add[w];

		for (int k = 0; k < NOPS; k++) {
			r->ops[k] = r->ops[k] * keep + (double)c->ops[k] * a;
			r->bytes[k] = r->bytes[k] * keep + (double)c->bytes[k] * a;
		}
		r->seq = r->seq * keep + (double)c->seq * a;
		r->lat_us = r->lat_us * keep + (double)c->lat_us * a;
		r->lat_n = r->lat_n * keep + (double)c->lat_n * a;
	}
	memset(c, 0, sizeof(*c));
	st->tick = tick;
}

/* st's rates of window w as of the last fold, as a summary's rates. */
static void rates_pb(const struct lstat *st, int w, Pv__LoadRates *out)
{
	const struct rates *r = &st->r[w];
	uint64_t age = tick - 1 - st->tick;
	double f = age ? exp(-(double)age / tau[w]) : 1;
	double bytes = r->bytes[0] + r->bytes[1] + r->bytes[2];

	pv__load_rates__init(out);
	out->read_ops = (float)(r->ops[0] * f);
	out->write_ops = (float)(r->ops[1] * f);
	out->other_ops = (float)(r->ops[2] * f);
	out->read_bytes = (float)(r->bytes[0] * f);
	out->write_bytes = (float)(r->bytes[1] * f);
	out->seq_share = bytes > 0 ? (float)(r->seq / bytes) : 0;
	out->lat_us = r->lat_n > 1e-9 ? (float)(r->lat_us / r->lat_n) : 0;
}

/* The load units of st over 10 s, as of the last fold. */
static double stat_load10(const struct lstat *st)
{
	Pv__LoadRates r;

	rates_pb(st, 0, &r);
	return load_units(&r);
}

/* Whether st has been quiet long enough to forget. */
static int stat_cold(const struct lstat *st)
{
	Pv__LoadRates r;

	rates_pb(st, 1, &r);
	return r.read_ops + r.write_ops + r.other_ops < COLD;
}

/* Puts e into the top list if it is among the LOAD_TOP hottest. */
static void top_consider(struct lpage *e, double load, double *loads)
{
	size_t i = ntop;

	if (ntop == LOAD_TOP && load <= loads[ntop - 1])
		return;
	if (ntop == LOAD_TOP) {
		top[--ntop]->in_top = 0;
		i = ntop;
	}
	while (i > 0 && loads[i - 1] < load) {
		top[i] = top[i - 1];
		loads[i] = loads[i - 1];
		i--;
	}
	top[i] = e;
	loads[i] = load;
	e->in_top = 1;
	ntop++;
}

/* Adds one second's counts c to the totals t. */
static void totals_add(struct load_totals *t, const struct ctr *c)
{
	for (int k = 0; k < NOPS; k++) {
		t->ops[k] += c->ops[k];
		t->bytes[k] += c->bytes[k];
	}
}

/* Folds the pages hit this second (before tick moves on); their clients'
 * counts halve, so the clients named are those of late. */
static void fold_pages(void)
{
	for (struct lpage *e = page_hits; e; e = e->next_hit) {
		stat_fold(&e->st);
		e->by_n[0] /= 2;
		e->by_n[1] /= 2;
	}
}

/* The new top: the old top (decayed) and the pages hit, as of now (after
 * tick moved on); clears the hit list. */
static void top_pages(void)
{
	struct lpage *old[LOAD_TOP];
	double loads[LOAD_TOP];
	size_t nold = ntop;

	memcpy(old, top, nold * sizeof(old[0]));
	for (size_t i = 0; i < nold; i++)
		old[i]->in_top = 0;
	ntop = 0;
	for (size_t i = 0; i < nold; i++)
		top_consider(old[i], stat_load10(&old[i]->st), loads);
	for (struct lpage *e = page_hits, *next; e; e = next) {
		next = e->next_hit;
		if (!e->in_top)
			top_consider(e, stat_load10(&e->st), loads);
		e->hit = 0;
		e->next_hit = NULL;
	}
	page_hits = NULL;
}

static void sweep(void)
{
	struct lpage *e, *etmp;
	struct lclient *c, *ctmp;
	struct lvol *v, *vtmp;

	HASH_ITER(hh, pages, e, etmp)
	{
		if (e->in_top || e->hit || !stat_cold(&e->st))
			continue;
		HASH_DEL(pages, e);
		e->vol->pages--;
		free(e);
	}
	HASH_ITER(hh, clients, c, ctmp)
	{
		if (c->hit || !stat_cold(&c->st))
			continue;
		HASH_DEL(clients, c);
		free(c);
	}
	HASH_ITER(hh, vols, v, vtmp)
	{
		const struct volume *cv = catalog_volume(v->name);

		/* while the volume exists its totals are counters, which
		 * must never go back */
		if (v->pages || !stat_cold(&v->st) || (cv && cv->id == v->id && !cv->deleted))
			continue;
		HASH_DEL(vols, v);
		free(v);
	}
}

/* ---- the summary ---- */

#define SUM_CLIENTS (SUM_USING + LOAD_TOP)

static struct {
	int ok;
	Pv__LoadSummary s;
	Pv__LoadRates r[NW], fwd10, client_r[NW];
	Pv__VolumeLoad vol[VOLS_MAX], *volp[VOLS_MAX];
	Pv__LoadRates vol_r[VOLS_MAX][NW];
	Pv__PageLoad page[LOAD_TOP], *pagep[LOAD_TOP];
	Pv__LoadRates page_r[LOAD_TOP][NW];
	uint64_t page_by[LOAD_TOP][2];
	Pv__ClientLoad cl[SUM_CLIENTS], *clp[SUM_CLIENTS];
	Pv__LoadRates cl_r[SUM_CLIENTS][NW];
	char host[SUM_CLIENTS][PV_ESCAPE_NAME];
	char cl_vol[SUM_CLIENTS][SUM_VOLS][PV_MAX_NAME + 1];
	char *cl_volp[SUM_CLIENTS][SUM_VOLS];
	const char *decisions[8];
} mine;

/* This server's rates as of its last folds (load_self_at). */
static struct {
	uint64_t at_ms;
	Pv__LoadRates r[NW];
} folds[LOAD_SELF_FOLDS];

/* The p99 of the last LAT_SECONDS seconds of served times. */
static uint32_t p99_now(void)
{
	uint64_t sum[LAT_BUCKETS] = {0}, n = 0, need, acc = 0;

	for (unsigned s = 0; s < LAT_SECONDS; s++)
		for (unsigned b = 0; b < LAT_BUCKETS; b++)
			sum[b] += lat_hist[s][b];
	for (unsigned b = 0; b < LAT_BUCKETS; b++)
		n += sum[b];
	if (!n)
		return 0;
	need = n - n / 100; /* at least 99% at or below */
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		acc += sum[b];
		if (acc >= need)
			return (uint32_t)lat_upper(b);
	}
	return (uint32_t)lat_upper(LAT_BUCKETS - 1);
}

/* Fills summary entry i for client id (lc: its rates here, or NULL). */
static void client_entry(size_t i, uint64_t id, const struct lclient *lc, const char *host)
{
	Pv__ClientLoad *pc = &mine.cl[i];

	pv__client_load__init(pc);
	pc->client_id = id;
	snprintf(mine.host[i], sizeof(mine.host[i]), "%s", host);
	pc->host = mine.host[i];
	for (int w = 0; w < NW; w++) {
		if (lc)
			rates_pb(&lc->st, w, &mine.cl_r[i][w]);
		else
			pv__load_rates__init(&mine.cl_r[i][w]);
	}
	pc->r10 = &mine.cl_r[i][0];
	pc->r60 = &mine.cl_r[i][1];
	mine.clp[i] = pc;
}

/* The summary's clients: those using this server now (pinging it: up to
 * SUM_USING, with the volumes they send here), then the busiest others
 * (traffic of the last minute: a client that moved away shows there
 * until it decays), LOAD_TOP at most. */
static void top_clients(void)
{
	struct client_view using[SUM_USING];
	size_t nusing = clients_using(using, SUM_USING), n = 0, nbusy = 0;
	double loads[LOAD_TOP];
	struct lclient *best[LOAD_TOP], *c, *tmp;

	mine.s.clients_connected = (uint32_t)nusing;
	if (nusing > SUM_USING)
		nusing = SUM_USING;
	for (size_t i = 0; i < nusing; i++, n++) {
		Pv__ClientLoad *pc;
		size_t nv = using[i].nopen < SUM_VOLS ? using[i].nopen : SUM_VOLS;

		HASH_FIND(hh, clients, &using[i].id, sizeof(using[i].id), c);
		client_entry(n, using[i].id, c, using[i].host);
		pc = &mine.cl[n];
		pc->connected = 1;
		pc->local = using[i].local;
		for (size_t k = 0; k < nv; k++) {
			snprintf(mine.cl_vol[n][k], sizeof(mine.cl_vol[n][k]), "%s",
				 using[i].open[k]);
			mine.cl_volp[n][k] = mine.cl_vol[n][k];
		}
		pc->n_volumes = nv;
		pc->volumes = mine.cl_volp[n];
	}
	HASH_ITER(hh, clients, c, tmp)
	{
		double l = stat_load10(&c->st);
		size_t i, k;

		for (k = 0; k < nusing && using[k].id != c->id; k++)
			;
		if (k < nusing || (nbusy == LOAD_TOP && l <= loads[nbusy - 1]))
			continue;
		i = nbusy < LOAD_TOP ? nbusy++ : nbusy - 1;
		while (i > 0 && loads[i - 1] < l) {
			best[i] = best[i - 1];
			loads[i] = loads[i - 1];
			i--;
		}
		best[i] = c;
		loads[i] = l;
	}
	for (size_t i = 0; i < nbusy; i++, n++)
		client_entry(n, best[i]->id, best[i], clients_host(best[i]->id));
	mine.s.n_clients = n;
	mine.s.clients = mine.clp;
	mine.s.clients_total = HASH_COUNT(clients);
}

static void summary_build(void)
{
	Pv__LoadSummary *s = &mine.s;
	struct timespec ts;
	struct lvol *v, *tmp;
	size_t n = 0;

	pv__load_summary__init(s);
	for (int w = 0; w < NW; w++) {
		rates_pb(&server, w, &mine.r[w]);
		rates_pb(&client_all, w, &mine.client_r[w]);
	}
	rates_pb(&fwd, 0, &mine.fwd10);
	s->client_r10 = &mine.client_r[0];
	s->client_r60 = &mine.client_r[1];
	s->r10 = &mine.r[0];
	s->r60 = &mine.r[1];
	s->fwd10 = &mine.fwd10;
	s->p99_us = p99_us;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	folds[tick % LOAD_SELF_FOLDS].at_ms = s->at_ms;
	memcpy(folds[tick % LOAD_SELF_FOLDS].r, mine.r, sizeof(mine.r));
	HASH_ITER(hh, vols, v, tmp)
	{
		if (n == VOLS_MAX)
			break;
		pv__volume_load__init(&mine.vol[n]);
		mine.vol[n].volume_id = v->id;
		mine.vol[n].name = v->name;
		for (int w = 0; w < NW; w++)
			rates_pb(&v->st, w, &mine.vol_r[n][w]);
		mine.vol[n].r10 = &mine.vol_r[n][0];
		mine.vol[n].r60 = &mine.vol_r[n][1];
		mine.volp[n] = &mine.vol[n];
		n++;
	}
	s->n_volumes = n;
	s->volumes = mine.volp;
	for (size_t i = 0; i < ntop; i++) {
		Pv__PageLoad *pl = &mine.page[i];

		pv__page_load__init(pl);
		pl->volume_id = top[i]->key.vol_id;
		pl->page = top[i]->key.page;
		for (int w = 0; w < NW; w++)
			rates_pb(&top[i]->st, w, &mine.page_r[i][w]);
		pl->r10 = &mine.page_r[i][0];
		pl->r60 = &mine.page_r[i][1];
		pl->n_clients = 0;
		for (int k = 0; k < 2; k++) {
			/* the larger count first */
			int j = top[i]->by_n[1] > top[i]->by_n[0] ? 1 - k : k;

			if (top[i]->by_n[j])
				mine.page_by[i][pl->n_clients++] = top[i]->by[j];
		}
		pl->clients = mine.page_by[i];
		mine.pagep[i] = pl;
	}
	s->n_pages = ntop;
	s->pages = mine.pagep;
	top_clients();
	s->n_decisions = balance_recent(mine.decisions, 8);
	s->decisions = (char **)mine.decisions;
	mine.ok = 1;
}

void load_tick(void *arg)
{
	struct lvol *v, *vtmp;

	(void)arg;
	if (!load_enabled)
		return;
	totals_add(&server_total, &server.c);
	totals_add(&fwd_total, &fwd.c);
	stat_fold(&server);
	stat_fold(&fwd);
	stat_fold(&client_all);
	HASH_ITER(hh, vols, v, vtmp)
	{
		totals_add(&v->total, &v->st.c);
		stat_fold(&v->st);
	}
	fold_pages();
	for (struct lclient *c = client_hits, *next; c; c = next) {
		next = c->next_hit;
		stat_fold(&c->st);
		c->hit = 0;
		c->next_hit = NULL;
	}
	client_hits = NULL;
	p99_us = p99_now();
	lat_cur = (lat_cur + 1) % LAT_SECONDS;
	memset(lat_hist[lat_cur], 0, sizeof(lat_hist[lat_cur]));
	tick++;
	top_pages();
	if (tick % SWEEP_TICKS == 0)
		sweep();
	summary_build();
}

const Pv__LoadRates *load_self_at(uint64_t at_ms, int w)
{
	const Pv__LoadRates *best = NULL;
	uint64_t best_d = 0;

	for (size_t i = 0; load_enabled && i < LOAD_SELF_FOLDS; i++) {
		uint64_t d =
		    folds[i].at_ms > at_ms ? folds[i].at_ms - at_ms : at_ms - folds[i].at_ms;

		if (folds[i].at_ms && (!best || d < best_d)) {
			best = &folds[i].r[w];
			best_d = d;
		}
	}
	return best;
}

double load_client_units(uint64_t id, int w60)
{
	struct lclient *c;
	Pv__LoadRates r;

	HASH_FIND(hh, clients, &id, sizeof(id), c);
	if (!c)
		return 0;
	rates_pb(&c->st, w60 ? 1 : 0, &r);
	return load_units(&r);
}

const Pv__LoadSummary *load_summary(const struct member *m)
{
	if (m && m->id != srv->cfg.id)
		return m->last_hb ? m->last_hb->load : NULL;
	return load_enabled && mine.ok ? &mine.s : NULL;
}

void load_free(void)
{
	struct lpage *e, *etmp;
	struct lclient *c, *ctmp;
	struct lvol *v, *vtmp;

	HASH_ITER(hh, pages, e, etmp)
	{
		HASH_DEL(pages, e);
		free(e);
	}
	HASH_ITER(hh, clients, c, ctmp)
	{
		HASH_DEL(clients, c);
		free(c);
	}
	HASH_ITER(hh, vols, v, vtmp)
	{
		HASH_DEL(vols, v);
		free(v);
	}
	page_hits = NULL;
	client_hits = NULL;
	ntop = 0;
	mine.ok = 0;
	memset(folds, 0, sizeof(folds));
}

/* ---- totals and the group's shares (metrics.c, control.c) ---- */

void load_totals(struct load_totals *served, struct load_totals *forwarded)
{
	*served = server_total;
	*forwarded = fwd_total;
}

void load_each_volume(void (*fn)(void *arg, const char *name, const struct load_totals *t),
		      void *arg)
{
	struct lvol *v, *tmp;

	HASH_ITER(hh, vols, v, tmp)
	fn(arg, v->name, &v->total);
}

void load_latency(int op, const uint64_t *bounds_us, size_t nbounds, uint64_t *cum, uint64_t *count,
		  uint64_t *sum_us)
{
	const uint64_t *h = lat_total[op];
	uint64_t acc = 0;
	unsigned b = 0;

	for (size_t i = 0; i < nbounds; i++) {
		/* bucket b lies wholly below the bound */
		while (b < LAT_BUCKETS && lat_upper(b) < bounds_us[i])
			acc += h[b++];
		cum[i] = acc;
	}
	while (b < LAT_BUCKETS)
		acc += h[b++];
	*count = acc;
	*sum_us = lat_sum_us[op];
}

double load_shares(struct load_share *out)
{
	double total = 0, weights = 0;

	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];
		const Pv__LoadSummary *s = load_summary(m);

		out[i].figures = s != NULL;
		out[i].load = s ? load_units(s->r10) : 0;
		if (m->up && !m->draining && s) {
			total += out[i].load;
			weights += m->weight ? m->weight : 1;
		}
	}
	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];
		int counts = m->up && !m->draining && out[i].figures;

		out[i].share = total > 0 ? out[i].load / total : 0;
		out[i].fair = counts && weights > 0 ? (m->weight ? m->weight : 1) / weights : 0;
	}
	return total;
}
