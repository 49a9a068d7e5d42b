/* migrate.c: moving a page from its owner (the source, A) to another
 * server (the target, B) piece by piece while clients read and write it
 * (the seed's Table 2), the target's side of it, and the routing entries
 * of moved pages (owner, epoch) that every member merges by epoch.
 * docs/architecture.md, "Page migration". Reactor thread, except the run
 * functions of IO_CALL jobs (IO threads) and the dirty map's lock.
 *
 *   A (source)                                   B (target)
 *   MIG_BEGIN {page, pieces, epoch} ------------> allocate the page, record "in"
 *   <------------------------------------------- OK
 *   (snapshots: every chunk of the page preserved in the newest one here,
 *   then per snapshot MIG_SNAP {ids, bits} + data -> the same chunks there,
 *                                                  durable; BUSY if its
 *                                                  snapshot list differs)
 *   record "out" piece 0
 *   for k in 0..n-1:
 *     (local writes to k begun before k was in transit drain)
 *     read piece k (IO thread)
 *     WRITE|MIG_COPY piece k (or TRIM: a hole) --> write what no dual write
 *                                                  changed since k began,
 *                                                  fdatasync, record k+1
 *     <------------------------------------------ OK
 *     record "out" piece k+1; now k is at B only
 *   MIG_SWITCH ---------------------------------> fdatasync; record route
 *                                                  (B, epoch+1), drop "in"
 *   <------------------------------------------- OK
 *   record route (B, epoch+1) and "switched"; ROUTE_UPDATE to every member;
 *   after the requests on the page here end (and 2 s), punch it out; drop
 *   the record.
 *
 * While piece k is in transit, request.c asks migrate_route where each
 * piece of a request goes: pieces below k to B only (PV_F_MIG: B serves
 * them, never routes them back), piece k read here and written here and at
 * B, pieces above k here only. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peerd.h"

#define MIGRATE_OUT_MAX	       2     /* moves out of one server running at a time */
#define MIGRATE_IN_MAX	       4     /* moves into one server at a time */
#define MIGRATE_QUEUE_MAX      65536 /* moves queued on one server */
#define MIGRATE_RESEND_MS      10000 /* a message to the other side without an answer */
#define MIGRATE_RETRY_MS       1000  /* after a refusal or a failed step */
#define MIGRATE_STUCK_MS       60000 /* no progress this long: shown as stuck */
#define MIGRATE_PUNCH_DELAY_MS 2000  /* after the switch, before the page is punched */
#define MIGRATE_HOLE_COST      4096  /* bytes a hole piece counts for the throttle */
#define MIGRATE_MAX_PIECES     65536
#define MIGRATE_CHUNK	       (64u << 10) /* the copy's writes at B, one lock each */
#define MIGRATE_RECENT	       32	   /* finished or failed moves remembered */
#define MIGRATE_SNAP_DATA      (4u << 20)  /* snapshot chunk data in one MIG_SNAP */
#define MIGRATE_IN_IDLE_MS     30000	   /* a move in, source silent: no hold waits */

/* A page being moved, as both sides hold it. */
struct mig_page {
	struct volume *vol; /* a reference */
	uint64_t page;
	uint64_t page_off, page_len;
	uint32_t source, target;
	uint32_t piece_size, pieces;
	uint32_t piece; /* in transit (pieces: all copied) */
	uint32_t epoch; /* the page's epoch before the move (the target's is +1) */
};

/* A move of a page of this server's (the source). */
struct mig_out {
	struct mig_out *next;  /* all moves out, in start order */
	struct mig_out *vnext; /* the volume's (vol->migrating) */
	struct mig_page pg;
	enum mig_state state;
	uint64_t started; /* unix seconds */
	uint64_t bytes_copied;
	int recorded; /* its LMDB record exists */
	int hello;    /* the target confirmed it holds the move (this run) */
	int busy;     /* a job runs, or a message waits for its answer */
	uint64_t req_id;
	uint64_t sent_ms;
	uint64_t wait_until_ms; /* throttle or retry */
	uint8_t *buf;		/* the piece read, until the target has it */
	int hole;
	uint64_t piece_len;
	uint32_t *wr_pending; /* per piece: local writes begun while it was at A only */
	uint32_t io_pending;  /* local jobs of any kind on the page */
	uint64_t progress_ms;
	uint64_t punch_at_ms;
	uint64_t rate_bytes, rate_from_ms;
	uint32_t rate_kbps;
	char stuck[160];
	int flip; /* the record of the next piece is being written: the piece
		   * in transit advances when it is durable (record_done) */
	int dead; /* dropped: freed once no job or answer holds it */
	/* MIG_SNAP, between MIG_BEGIN's answer and piece 0: the snapshot
	 * chunks of the page, snapshot snap_idx from chunk snap_first on;
	 * snap_ids: the list the first message was made from (a change
	 * starts over) */
	size_t snap_idx;
	uint64_t snap_first, snap_sent_n, snap_nchunks;
	uint64_t snap_ids[SNAP_MAX];
	size_t snap_nids;
	struct snap_page *sp; /* the export job's */
};

/* A move into this server (the target). */
struct mig_in {
	struct mig_in *next;
	struct mig_page pg; /* piece: copied so far */
	/* The dirty map: sectors of piece dirty_piece that a dual write changed
	 * since that piece began. The copy of the piece must not write them:
	 * its data may have been read at A before the write. The reactor marks
	 * a write's sectors under the lock before it submits the write, and
	 * the copy job checks and writes one chunk at a time under it, so a
	 * write marked after a chunk was written lands after it. */
	pthread_mutex_t lock;
	uint32_t dirty_piece;
	uint64_t *dirty;
	int jobs;
	int dead;
	int dropping;	  /* its source forgot it: its page and record go */
	uint64_t seen_ms; /* the source's last message about it */
};

/* A page.move waiting for the owners' answers (migrate_request). */
struct mig_ask {
	struct mig_ask *next;
	uint64_t req_ids[PEERD_MAX_MEMBERS];
	size_t waiting;
	uint64_t sent_ms;
	migrate_done_fn done;
	void *arg;
	int failed;
	char err[256];
	char note[200]; /* the answer when every owner agreed (pages already there) */
};

/* A finished or failed move, for migrations and logs. */
struct mig_recent {
	struct migrate_info info;
	int ok;
};

static struct mig_out *outs;
static struct mig_in *ins;
static struct mig_ask *asks;
static uint64_t bucket_ms; /* the throttle: moves may use the link from then */
static struct meta_kv *route_queue;
static size_t route_queued, route_cap;
static int route_flushing;
static uint64_t stuck_logged_ms;

/* ---- pure parts ---- */

enum mig_route migrate_route(enum mig_state st, uint32_t p, uint32_t k, uint32_t op)
{
	switch (st) {
	case MIG_QUEUED:
	case MIG_BEGIN:
		return MIG_ROUTE_LOCAL; /* nothing copied yet */
	case MIG_COPYING:
		switch (pv_piece_at(p, k)) {
		case PV_PIECE_SOURCE:
			return MIG_ROUTE_LOCAL;
		case PV_PIECE_BOTH:
			return op == PV_OP_READ ? MIG_ROUTE_LOCAL : MIG_ROUTE_BOTH;
		case PV_PIECE_TARGET:
			return MIG_ROUTE_TARGET;
		}
		break;
	default:
		break;
	}
	return MIG_ROUTE_TARGET; /* switching or switched: every piece is at the target */
}

const char *migrate_state_name(enum mig_state s)
{
	static const char *const names[] = {"queued",	 "starting", "copying",
					    "switching", "punching", "incoming"};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

/* ---- helpers ---- */

static struct volume *volume_by_id(uint64_t id)
{
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

static uint64_t unix_now(void)
{
	return (uint64_t)time(NULL);
}

static void key_of(char *key, char role, uint64_t vol_id, uint64_t page)
{
	if (role)
		snprintf(key, 48, "%c/%016" PRIx64 "/%016" PRIx64, role, vol_id, page);
	else
		snprintf(key, 48, "%016" PRIx64 "/%016" PRIx64, vol_id, page);
}

static int parse_key(const char *key, size_t klen, char *role, uint64_t *vol_id, uint64_t *page)
{
	char buf[48];
	unsigned long long a, b;

	if (klen >= sizeof(buf))
		return -1;
	memcpy(buf, key, klen);
	buf[klen] = 0;
	if (role && sscanf(buf, "%c/%16llx/%16llx", role, &a, &b) == 3) {
		*vol_id = a;
		*page = b;
		return 0;
	}
	if (!role && sscanf(buf, "%16llx/%16llx", &a, &b) == 2) {
		*vol_id = a;
		*page = b;
		return 0;
	}
	return -1;
}

/* A route entry as stored: owner, epoch (host order: this server's file). */
static void route_kv(struct meta_kv *kv, const struct volume *vol, uint64_t page, uint32_t owner,
		     uint32_t epoch)
{
	uint32_t *v = malloc(2 * sizeof(uint32_t));

	kv->db = "route_pages";
	key_of(kv->key, 0, vol->id, page);
	if (v) {
		v[0] = owner;
		v[1] = epoch;
	}
	kv->val = v;
	kv->len = v ? 2 * sizeof(uint32_t) : 0;
}

static void kv_free(struct meta_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(kv[i].val);
}

static uint32_t page_pieces(uint64_t page_len, uint32_t piece_size)
{
	return (uint32_t)((page_len + piece_size - 1) / piece_size);
}

static uint64_t page_len_of(const struct volume *vol, uint64_t page)
{
	uint64_t off = page * vol->page_size;

	return vol->size - off < vol->page_size ? vol->size - off : vol->page_size;
}

static int member_up(uint32_t id)
{
	struct member *m = catalog_member(id);

	return m && (m->up || id == srv->cfg.id);
}

static int allowed(const struct volume *vol, uint32_t id)
{
	for (size_t i = 0; i < vol->nservers; i++)
		if (vol->servers[i] == id)
			return 1;
	return 0;
}

static uint32_t max_mbps(void)
{
	const Pv__Catalog *c = catalog_committed();

	return c && c->migrate_max_mbps ? c->migrate_max_mbps : MIGRATE_MBPS_DEFAULT;
}

static int paused(void)
{
	const Pv__Catalog *c = catalog_committed();

	return c && c->migrate_paused;
}

/* A job running fn on an IO thread, then done on the reactor. */
static struct io_job *job_new(struct volume *vol, void (*run)(struct io_job *),
			      void (*done)(struct io_job *), void *arg)
{
	struct io_job *job = calloc(1, sizeof(*job));

	if (!job)
		return NULL;
	job->kind = IO_CALL;
	job->vol = vol;
	job->fd = vol ? vol->fd : -1;
	job->run = run;
	job->done = done;
	job->arg = arg;
	return job;
}

/* ---- the record of a move ---- */

/* The record (and message body) of a page being moved. */
static void record_of_page(Pv__Migration *r, const struct mig_page *pg, enum mig_state state)
{
	pv__migration__init(r);
	r->volume = (char *)pg->vol->name;
	r->volume_id = pg->vol->id;
	r->page = pg->page;
	r->source = pg->source;
	r->target = pg->target;
	r->piece_size = pg->piece_size;
	r->pieces = pg->pieces;
	r->piece = pg->piece;
	r->epoch = pg->epoch;
	r->state = state;
}

/* A page being moved, from its record (checked by the caller); takes a
 * reference on vol. */
static void page_of_record(struct mig_page *pg, struct volume *vol, const Pv__Migration *r)
{
	volume_get(vol);
	pg->vol = vol;
	pg->page = r->page;
	pg->page_off = r->page * vol->page_size;
	pg->page_len = page_len_of(vol, r->page);
	pg->source = r->source;
	pg->target = r->target;
	pg->piece_size = r->piece_size;
	pg->pieces = r->pieces;
	pg->piece = r->piece;
	pg->epoch = (uint32_t)r->epoch;
}

static void record_fill(Pv__Migration *r, const struct mig_out *m)
{
	record_of_page(r, &m->pg, m->state);
	r->started = m->started;
	r->bytes_copied = m->bytes_copied;
}

static int record_kv(struct meta_kv *kv, const Pv__Migration *r, char role)
{
	size_t n = pv__migration__get_packed_size(r);

	kv->db = "migrations";
	key_of(kv->key, role, r->volume_id, r->page);
	kv->val = malloc(n ? n : 1);
	kv->len = n;
	if (!kv->val)
		return -1;
	pv__migration__pack(r, kv->val);
	return 0;
}

static void record_del_kv(struct meta_kv *kv, char role, uint64_t vol_id, uint64_t page)
{
	kv->db = "migrations";
	key_of(kv->key, role, vol_id, page);
	kv->val = NULL;
	kv->len = 0;
}

/* Records written by an IO thread (job->arg: struct kv_job). */
struct kv_job {
	struct meta_kv kv[3];
	size_t n;
	struct meta_kv *many; /* more keys (route entries), owned */
	size_t nmany;
	void *owner; /* the move */
	int sync;    /* fdatasync the data file first */
};

static void kv_run(struct io_job *job)
{
	struct kv_job *k = job->arg;

	job->err = 0;
	if (k->sync && job->fd >= 0)
		job->err = store_sync(job->vol);
	if (!job->err && k->n && meta_put_many(k->kv, k->n) < 0)
		job->err = EIO;
	if (!job->err && k->nmany && meta_put_many(k->many, k->nmany) < 0)
		job->err = EIO;
}

static void kv_job_free(struct io_job *job)
{
	struct kv_job *k = job->arg;

	kv_free(k->kv, k->n);
	kv_free(k->many, k->nmany);
	free(k->many);
	free(k);
	free(job);
}

/* ---- moves out: list and lookup ---- */

static struct mig_out *out_find(const struct volume *vol, uint64_t page)
{
	for (struct mig_out *m = vol->migrating; m; m = m->vnext)
		if (m->pg.page == page && !m->dead)
			return m;
	return NULL;
}

static unsigned out_running(void)
{
	unsigned n = 0;

	for (struct mig_out *m = outs; m; m = m->next)
		n += !m->dead && m->state != MIG_QUEUED && m->state != MIG_SWITCHED;
	return n;
}

unsigned migrate_out_count(void)
{
	unsigned n = 0;

	for (struct mig_out *m = outs; m; m = m->next)
		n += !m->dead && m->state != MIG_SWITCHED;
	return n;
}

static struct mig_recent recent[MIGRATE_RECENT];
static unsigned recent_next;
static struct migrate_totals totals;

void migrate_totals(struct migrate_totals *t)
{
	*t = totals;
}

/* What migrate_list shows of a move, from its record (this server's, or
 * one a member announced in its heartbeat). */
static void info_of_record(struct migrate_info *x, const Pv__Migration *r)
{
	memset(x, 0, sizeof(*x));
	snprintf(x->volume, sizeof(x->volume), "%s", r->volume ? r->volume : "");
	x->volume_id = r->volume_id;
	x->page = r->page;
	x->from = r->source;
	x->to = r->target;
	x->piece_size = r->piece_size;
	x->pieces = r->pieces;
	x->piece = r->piece;
	x->epoch = (uint32_t)r->epoch;
	x->state = r->state <= MIG_IN ? (enum mig_state)r->state : MIG_QUEUED;
	x->started = r->started;
	x->bytes_copied = r->bytes_copied;
	x->rate_kbps = r->rate_kbps;
	snprintf(x->stuck, sizeof(x->stuck), "%s", r->stuck ? r->stuck : "");
}

static void info_of(struct migrate_info *i, const struct mig_out *m)
{
	Pv__Migration r;

	record_fill(&r, m);
	r.rate_kbps = m->rate_kbps;
	r.stuck = (char *)m->stuck;
	info_of_record(i, &r);
}

static void out_unlink(struct mig_out *m)
{
	for (struct mig_out **p = &outs; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	for (struct mig_out **p = &m->pg.vol->migrating; *p; p = &(*p)->vnext)
		if (*p == m) {
			*p = m->vnext;
			break;
		}
}

/* Ends a move (ok: switched and punched; else failed with why). */
static void out_free_if_done(struct mig_out *m);

static void out_end(struct mig_out *m, int ok, const char *why)
{
	struct mig_recent *r = &recent[recent_next++ % MIGRATE_RECENT];

	if (ok)
		totals.done++;
	else
		totals.failed++;
	info_of(&r->info, m);
	r->ok = ok;
	if (!ok)
		snprintf(r->info.stuck, sizeof(r->info.stuck), "%s", why ? why : "failed");
	if (!ok && m->recorded) {
		struct kv_job *k = calloc(1, sizeof(*k));
		struct io_job *job = k ? job_new(NULL, kv_run, kv_job_free, k) : NULL;

		if (job) {
			record_del_kv(&k->kv[k->n++], 'o', m->pg.vol->id, m->pg.page);
			worker_submit(job);
		} else {
			free(k);
		}
	}
	m->dead = 1;
	out_free_if_done(m); /* or when the job or answer that holds it ends */
}

static void out_free_if_done(struct mig_out *m)
{
	if (m->dead && !m->busy && !m->io_pending) {
		out_unlink(m);
		volume_put(&m->pg.vol);
		free(m->wr_pending);
		free(m->buf);
		free(m);
	}
}

static void stuck(struct mig_out *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void stuck(struct mig_out *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->stuck, sizeof(m->stuck), fmt, ap);
	va_end(ap);
}

static void progress(struct mig_out *m)
{
	m->progress_ms = pv_now_ms();
	m->stuck[0] = 0;
}

static void out_advance(struct mig_out *m);

/* ---- the source: messages to the target ---- */

static int send_to_target(struct mig_out *m, uint32_t op, zmq_msg_t *data, uint32_t flags,
			  uint64_t offset, uint32_t length)
{
	struct member *t = catalog_member(m->pg.target);
	Pv__Migration r;
	Pv__Header h;

	if (!t || !t->up) {
		stuck(m, "target server %u is down; the move goes on when it is back",
		      m->pg.target);
		if (data)
			zmq_msg_close(data);
		return -1;
	}
	wire_header_init(&h);
	h.op = op;
	h.req_id = peers_next_id();
	h.volume = m->pg.vol->name;
	h.volume_id = m->pg.vol->id;
	h.offset = offset;
	h.length = length;
	h.flags = flags;
	h.hops = 1;
	h.epoch = m->pg.epoch;
	record_fill(&r, m);
	/* a piece goes as a WRITE (data) or TRIM (a hole), without a body */
	if (reply_send_member(t, &h, data,
			      data || op == PV_OP_TRIM || op == PV_OP_WRITE ? NULL : &r.base) < 0) {
		stuck(m, "cannot send to target server %u: %s", m->pg.target, strerror(errno));
		return -1;
	}
	m->busy = 1;
	m->req_id = h.req_id;
	m->sent_ms = pv_now_ms();
	return 0;
}

static void send_begin(struct mig_out *m)
{
	send_to_target(m, PV_OP_MIG_BEGIN, NULL, 0, 0, 0);
}

static void send_switch(struct mig_out *m)
{
	send_to_target(m, PV_OP_MIG_SWITCH, NULL, 0, 0, 0);
}

/* The throttle: the delay before bytes may go, taken from the server's
 * budget of max_mbps. */
static uint64_t throttle(uint64_t bytes)
{
	uint64_t now = pv_now_ms();
	uint64_t rate = (uint64_t)max_mbps() * 1000; /* bytes per ms */
	uint64_t start = bucket_ms > now ? bucket_ms : now;

	bucket_ms = start + bytes / (rate ? rate : 1);
	return start - now;
}

static void piece_send(struct mig_out *m)
{
	zmq_msg_t data;
	uint64_t off = m->pg.page_off + (uint64_t)m->pg.piece * m->pg.piece_size;

	if (m->hole) {
		send_to_target(m, PV_OP_TRIM, NULL, PV_F_MIG_COPY, off, (uint32_t)m->piece_len);
		return;
	}
	if (zmq_msg_init_size(&data, m->piece_len) < 0) {
		stuck(m, "out of memory");
		return;
	}
	memcpy(zmq_msg_data(&data), m->buf, m->piece_len);
	send_to_target(m, PV_OP_WRITE, &data, PV_F_MIG_COPY, off, (uint32_t)m->piece_len);
}

/* The throttle's timer: the piece read may go now. */
static void throttled_send(void *arg)
{
	struct mig_out *m = arg;

	if (m->busy != 2 || pv_now_ms() < m->wait_until_ms)
		return; /* sent by migrate_tick already, or not yet due */
	m->busy = 0;
	if (m->dead)
		out_free_if_done(m);
	else
		piece_send(m);
}

/* piece read (IO thread) */
static void read_run(struct io_job *job)
{
	struct mig_out *m = job->arg;

	job->err = store_read_piece(job->vol, job->offset, job->length, m->buf, &m->hole);
}

static void read_done(struct io_job *job)
{
	struct mig_out *m = job->arg;
	uint64_t delay;

	m->busy = 0;
	if (m->dead) {
		free(job);
		out_free_if_done(m);
		return;
	}
	if (job->err) {
		stuck(m, "reading piece %u failed here: %s", m->pg.piece, strerror(job->err));
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		free(job);
		return;
	}
	free(job);
	delay = throttle(m->hole ? MIGRATE_HOLE_COST : m->piece_len);
	m->wait_until_ms = pv_now_ms() + delay;
	if (delay) {
		/* read, waiting for the throttle: a timer sends it (migrate_tick
		 * too, should the timer table be full); busy keeps m alive */
		m->busy = 2;
		reactor_after(delay, throttled_send, m);
		return;
	}
	piece_send(m);
}

static void piece_start(struct mig_out *m)
{
	uint64_t off = m->pg.page_off + (uint64_t)m->pg.piece * m->pg.piece_size;
	struct io_job *job;

	if (m->wr_pending[m->pg.piece])
		return; /* writes begun before this piece was in transit: they end first */
	m->piece_len = m->pg.page_len - (off - m->pg.page_off) < m->pg.piece_size
			   ? m->pg.page_len - (off - m->pg.page_off)
			   : m->pg.piece_size;
	if (!m->buf)
		m->buf = malloc(m->pg.piece_size);
	job = m->buf ? job_new(m->pg.vol, read_run, read_done, m) : NULL;
	if (!job) {
		stuck(m, "out of memory");
		return;
	}
	job->offset = off;
	job->length = m->piece_len;
	m->busy = 1;
	m->req_id = 0;
	worker_submit(job);
}

/* ---- the source: the page's snapshot chunks (MIG_SNAP) ---- */

static int record_write(struct mig_out *m, const struct meta_kv *extra);
static void snap_next(struct mig_out *m);

/* Back to the queue before anything of the page went to the target (a
 * snapshot of the volume is being made or rolled back here): the target
 * drops what it took; the move starts again when the snapshot is done. */
static void requeue(struct mig_out *m)
{
	pv_info("migrate: volume %s page %llu: move to server %u waits for a snapshot of the "
		"volume being made or rolled back",
		m->pg.vol->name, (unsigned long long)m->pg.page, m->pg.target);
	m->state = MIG_QUEUED;
	m->hello = 0;
	send_to_target(m, PV_OP_MIG_ABORT, NULL, 0, 0, 0);
	stuck(m, "waits: a snapshot of volume %s is being made or rolled back", m->pg.vol->name);
}

static void copy_begin(struct mig_out *m)
{
	m->state = MIG_COPYING;
	m->pg.piece = 0;
	record_write(m, NULL); /* before piece 0 starts */
}

/* export (IO thread) */
static void snap_export_run(struct io_job *job)
{
	struct mig_out *m = job->arg;

	job->err = snap_page_export(job->vol, m->pg.page_off, m->pg.page_len, m->snap_idx,
				    m->snap_first, MIGRATE_SNAP_DATA, m->sp);
}

/* One MIG_SNAP: length, pv.MigrationSnap, the chunks' data. */
static void snap_send(struct mig_out *m, const struct snap_page *sp)
{
	Pv__MigrationSnap r = PV__MIGRATION_SNAP__INIT;
	size_t rec_len;
	zmq_msg_t msg;
	uint8_t *p;

	r.volume_id = m->pg.vol->id;
	r.page = m->pg.page;
	r.epoch = m->pg.epoch;
	r.n_snap_ids = sp->nids;
	r.snap_ids = (uint64_t *)sp->ids;
	r.snap_id = sp->id;
	r.chunk_size = sp->chunk;
	r.preserved.len = r.holes.len = (sp->nchunks + 7) / 8;
	r.preserved.data = sp->preserved;
	r.holes.data = sp->holes;
	r.same.len = r.preserved.len;
	r.same.data = sp->same;
	r.first = sp->first;
	r.count = sp->n;
	rec_len = pv__migration_snap__get_packed_size(&r);
	if (zmq_msg_init_size(&msg, 4 + rec_len + sp->data_len) < 0) {
		stuck(m, "out of memory");
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		return;
	}
	p = zmq_msg_data(&msg);
	snapmap_frame_put(p, (uint32_t)rec_len);
	pv__migration_snap__pack(&r, p + 4);
	if (sp->data_len)
		memcpy(p + 4 + rec_len, sp->data, sp->data_len);
	m->snap_sent_n = sp->n;
	m->snap_nchunks = sp->nchunks;
	m->bytes_copied += sp->data_len;
	totals.bytes += sp->data_len;
	throttle(sp->data_len ? sp->data_len : MIGRATE_HOLE_COST); /* the next piece waits */
	send_to_target(m, PV_OP_MIG_SNAP, &msg, 0, m->pg.page_off, 0);
}

static void snap_export_done(struct io_job *job)
{
	struct mig_out *m = job->arg;
	struct snap_page *sp = m->sp;
	int err = job->err;

	free(job);
	m->busy = 0;
	m->sp = NULL;
	if (m->dead || err) {
		if (err && !m->dead) {
			stuck(m, "cannot read the page's snapshot chunks here: %s", strerror(err));
			m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		}
		snap_page_free(sp);
		free(sp);
		out_free_if_done(m);
		return;
	}
	if (m->snap_idx == 0 && m->snap_first == 0) {
		memcpy(m->snap_ids, sp->ids, sizeof(m->snap_ids));
		m->snap_nids = sp->nids;
	} else if (sp->nids != m->snap_nids ||
		   memcmp(sp->ids, m->snap_ids, sp->nids * sizeof(uint64_t))) {
		/* a snapshot was dropped here meanwhile: all again, under the
		 * list as it is now (the target answers BUSY until it has the
		 * same) */
		snap_page_free(sp);
		free(sp);
		m->snap_idx = 0;
		m->snap_first = 0;
		snap_next(m);
		return;
	}
	if (m->snap_idx >= sp->nids) {
		pv_info("migrate: volume %s page %llu: its chunks of %zu snapshot(s) are at server "
			"%u",
			m->pg.vol->name, (unsigned long long)m->pg.page, sp->nids, m->pg.target);
		snap_page_free(sp);
		free(sp);
		copy_begin(m);
		return;
	}
	snap_send(m, sp);
	snap_page_free(sp);
	free(sp);
}

/* The next MIG_SNAP (an export job first), or piece 0 once every
 * snapshot's chunks are at the target. */
static void snap_next(struct mig_out *m)
{
	struct io_job *job;

	if (m->snap_idx == 0 && m->snap_first == 0 && !snap_count(m->pg.vol)) {
		copy_begin(m);
		return;
	}
	m->sp = calloc(1, sizeof(*m->sp));
	job = m->sp ? job_new(m->pg.vol, snap_export_run, snap_export_done, m) : NULL;
	if (!job) {
		free(m->sp);
		m->sp = NULL;
		stuck(m, "out of memory");
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		return;
	}
	m->busy = 1;
	m->req_id = 0;
	worker_submit(job);
}

/* ---- the source: records ---- */

static void record_done(struct io_job *job);

/* Writes the move's record (and the extra key, if any) off the reactor;
 * then record_done continues the move. */
static int record_write(struct mig_out *m, const struct meta_kv *extra)
{
	struct kv_job *k = calloc(1, sizeof(*k));
	struct io_job *job = k ? job_new(m->pg.vol, kv_run, record_done, k) : NULL;
	Pv__Migration r;

	if (!job) {
		free(k);
		stuck(m, "out of memory");
		return -1;
	}
	record_fill(&r, m);
	if (record_kv(&k->kv[k->n++], &r, 'o') < 0) {
		kv_job_free(job);
		stuck(m, "out of memory");
		return -1;
	}
	if (extra)
		k->kv[k->n++] = *extra;
	k->owner = m;
	m->busy = 1;
	m->req_id = 0;
	worker_submit(job);
	return 0;
}

static void broadcast_route(struct volume *vol, uint64_t page)
{
	Pv__RouteEntry e = PV__ROUTE_ENTRY__INIT, *ep = &e;
	Pv__RouteUpdate u = PV__ROUTE_UPDATE__INIT;

	e.page = page;
	e.owner = vol->owner[page];
	e.epoch = vol->epoch[page];
	u.volume = vol->name;
	u.volume_id = vol->id;
	u.n_entries = 1;
	u.entries = &ep;
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *mb = &srv->members[i];
		Pv__Header h;

		if (mb->id == srv->cfg.id)
			continue;
		wire_header_init(&h);
		h.op = PV_OP_ROUTE_UPDATE;
		h.req_id = peers_next_id();
		h.volume = vol->name;
		h.volume_id = vol->id;
		if (reply_send_member(mb, &h, NULL, &u.base) < 0)
			pv_debug("migrate: route update of volume %s page %llu not sent to server "
				 "%u (it fetches the routes when it is back)",
				 vol->name, (unsigned long long)page, mb->id);
	}
}

static void record_done(struct io_job *job)
{
	struct kv_job *k = job->arg;
	struct mig_out *m = k->owner;
	int err = job->err;

	kv_job_free(job);
	m->busy = 0;
	if (m->dead) {
		out_free_if_done(m);
		return;
	}
	if (err) {
		m->flip = 0; /* piece k stays in transit; its copy is done again */
		stuck(m, "cannot record the move's progress in %s/meta: %s", srv->cfg.data_dir,
		      strerror(err));
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		return;
	}
	m->recorded = 1;
	if (m->flip) {
		/* piece k+1 is in transit from now: k's writes go to B only */
		m->flip = 0;
		m->pg.piece++;
		if (m->pg.piece == m->pg.pieces)
			m->state = MIG_SWITCHING;
	}
	if (m->state == MIG_SWITCHED && m->punch_at_ms == 0) {
		/* the route entry is durable here: B owns the page */
		catalog_route_set(m->pg.vol, m->pg.page, m->pg.target, m->pg.epoch + 1);
		broadcast_route(m->pg.vol, m->pg.page);
		pv_info("migrate: volume %s page %llu moved %u->%u (epoch %u)", m->pg.vol->name,
			(unsigned long long)m->pg.page, srv->cfg.id, m->pg.target, m->pg.epoch + 1);
		m->punch_at_ms = pv_now_ms() + MIGRATE_PUNCH_DELAY_MS;
		progress(m);
		placement_tick(NULL); /* a slot is free: the next page may go now */
		return;
	}
	progress(m);
	out_advance(m);
}

/* Persists piece k+1 in transit (or the switch) before it counts: a crash
 * after this resumes there, and piece k's writes go to B only from now. */
static void piece_copied(struct mig_out *m)
{
	uint32_t k = m->pg.piece;
	enum mig_state st = m->state;

	m->bytes_copied += m->hole ? 0 : m->piece_len;
	m->rate_bytes += m->hole ? 0 : m->piece_len;
	totals.bytes += m->hole ? 0 : m->piece_len;
	/* the record says k+1; memory keeps k in transit until it is durable:
	 * a crash before that resumes at k, whose writes were dual until then */
	m->pg.piece = k + 1;
	if (m->pg.piece == m->pg.pieces)
		m->state = MIG_SWITCHING;
	m->flip = 1;
	if (record_write(m, NULL) < 0) {
		m->flip = 0;
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
	}
	m->pg.piece = k;
	m->state = st;
}

/* The route entry (B, epoch + 1) and the state "switched" in one
 * transaction: after a crash here the page is B's and still to punch. */
static void switched(struct mig_out *m)
{
	struct meta_kv route;

	m->state = MIG_SWITCHED;
	m->punch_at_ms = 0;
	route_kv(&route, m->pg.vol, m->pg.page, m->pg.target, m->pg.epoch + 1);
	if (record_write(m, &route) < 0) {
		free(route.val);
		m->state = MIG_SWITCHING;
	}
}

/* punch (IO thread), then the record goes */
static void punch_run(struct io_job *job)
{
	job->err = store_punch(job->vol, job->offset, job->length);
	if (!job->err)
		job->err = snap_page_forget(job->vol, job->offset, job->length);
	if (!job->err)
		kv_run(job);
}

static void punch_done(struct io_job *job)
{
	struct kv_job *k = job->arg;
	struct mig_out *m = k->owner;
	int err = job->err;

	kv_job_free(job);
	m->busy = 0;
	store_page_probe(m->pg.vol, m->pg.page);
	if (err) {
		stuck(m, "cannot punch the page out of %s/volumes/%s.vol: %s", srv->cfg.data_dir,
		      m->pg.vol->name, strerror(err));
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		return;
	}
	out_end(m, 1, NULL);
}

static void punch_start(struct mig_out *m)
{
	struct kv_job *k = calloc(1, sizeof(*k));
	struct io_job *job = k ? job_new(m->pg.vol, punch_run, punch_done, k) : NULL;

	if (!job) {
		free(k);
		return;
	}
	if (job->fd < 0) {
		job->fd = m->pg.vol->fd;
	}
	record_del_kv(&k->kv[k->n++], 'o', m->pg.vol->id, m->pg.page);
	k->owner = m;
	job->offset = m->pg.page_off;
	job->length = m->pg.page_len;
	m->busy = 1;
	worker_submit(job);
}

/* Takes the move one step further if nothing is in progress. */
static void out_advance(struct mig_out *m)
{
	uint64_t now = pv_now_ms();

	if (m->busy || m->dead || now < m->wait_until_ms)
		return;
	if (m->pg.vol->deleted) {
		pv_info("migrate: volume %s page %llu: the volume was deleted; move dropped",
			m->pg.vol->name, (unsigned long long)m->pg.page);
		out_end(m, 0, "volume deleted");
		return;
	}
	if (m->state == MIG_SWITCHED) {
		if (m->punch_at_ms && now >= m->punch_at_ms && !m->io_pending)
			punch_start(m);
		return;
	}
	if (paused()) {
		stuck(m, "paused (peerctl migrate resume)");
		return;
	}
	if (m->pg.vol->fd < 0 && store_open(m->pg.vol) < 0) {
		stuck(m, "the data file cannot be opened here");
		return;
	}
	switch (m->state) {
	case MIG_QUEUED:
		if (out_running() >= MIGRATE_OUT_MAX)
			return;
		if (snap_stops_moves(m->pg.vol)) {
			stuck(m, "waits: a snapshot of volume %s is being made or rolled back",
			      m->pg.vol->name);
			return;
		}
		m->state = MIG_BEGIN;
		pv_info("migrate: volume %s page %llu: moving %u->%u in %u pieces of %u bytes",
			m->pg.vol->name, (unsigned long long)m->pg.page, srv->cfg.id, m->pg.target,
			m->pg.pieces, m->pg.piece_size);
		m->progress_ms = now;
		m->rate_from_ms = now;
		send_begin(m);
		break;
	case MIG_BEGIN:
		if (m->hello)
			snap_next(m); /* the snapshot chunks, after a failed step */
		else if (snap_stops_moves(m->pg.vol))
			requeue(m);
		else
			send_begin(m);
		break;
	case MIG_COPYING:
		if (!m->hello)
			send_begin(m);
		else
			piece_start(m);
		break;
	case MIG_SWITCHING:
		if (!m->hello)
			send_begin(m);
		else
			send_switch(m);
		break;
	default:
		break;
	}
}

/* ---- the source: answers from the target ---- */

static void out_answer(struct mig_out *m, const Pv__Header *h, const void *body, size_t len)
{
	Pv__Migration *r = NULL;

	m->busy = 0;
	if (m->dead) {
		out_free_if_done(m);
		return;
	}
	if (h->status != PV_ST_OK) {
		stuck(m, "server %u: %s", m->pg.target,
		      h->message[0] ? h->message : wire_status_name(h->status));
		m->wait_until_ms = pv_now_ms() + MIGRATE_RETRY_MS;
		m->hello = 0; /* the target may have lost the move: BEGIN again first */
		if (h->op == PV_OP_MIG_BEGIN && m->pg.piece == 0 && m->state != MIG_SWITCHING &&
		    h->status != PV_ST_BUSY && h->status != PV_ST_UNAVAILABLE) {
			/* nothing is at B only yet: the move ends, A stays the owner */
			pv_warn("migrate: volume %s page %llu: server %u refused the move: %s; "
				"server %u stays the owner",
				m->pg.vol->name, (unsigned long long)m->pg.page, m->pg.target,
				m->stuck, srv->cfg.id);
			if (m->recorded) {
				/* a record from an earlier run: drop it (no state to keep) */
				m->state = MIG_QUEUED;
			}
			out_end(m, 0, m->stuck);
		} else if (h->op != PV_OP_MIG_BEGIN && h->op != PV_OP_MIG_SWITCH &&
			   h->status == PV_ST_NO_SPACE && m->pg.piece == 0) {
			/* piece 0 in transit: nothing is at B only; A stays the owner
			 * and B frees what it took */
			pv_warn("migrate: volume %s page %llu: server %u ran out of space: %s; "
				"move aborted, server %u stays the owner",
				m->pg.vol->name, (unsigned long long)m->pg.page, m->pg.target,
				m->stuck, srv->cfg.id);
			send_to_target(m, PV_OP_MIG_ABORT, NULL, 0, 0, 0);
			m->busy = 0;
			out_end(m, 0, m->stuck);
		}
		return;
	}
	switch (h->op) {
	case PV_OP_MIG_BEGIN:
		if (body)
			r = (Pv__Migration *)wire_body_decode(&pv__migration__descriptor, body,
							      len);
		if (m->state >= MIG_COPYING && m->stuck[0])
			pv_info(
			    "migrate: volume %s page %llu: server %u answers again; going on at "
			    "piece %u of %u",
			    m->pg.vol->name, (unsigned long long)m->pg.page, m->pg.target,
			    m->pg.piece, m->pg.pieces);
		m->hello = 1;
		progress(m);
		if (r && r->state == MIG_SWITCHED && m->state >= MIG_COPYING) {
			/* B took the page before this server recorded the switch */
			m->pg.piece = m->pg.pieces;
			switched(m);
		} else if (m->state == MIG_BEGIN) {
			/* the snapshot chunks first (from the start: the target
			 * may have lost what it had), then piece 0 */
			m->snap_idx = 0;
			m->snap_first = 0;
			if (snap_stops_moves(m->pg.vol))
				requeue(m);
			else
				snap_next(m);
		} else {
			out_advance(m);
		}
		if (r)
			pv__migration__free_unpacked(r, NULL);
		break;
	case PV_OP_WRITE:
	case PV_OP_TRIM:
		if (m->state == MIG_COPYING)
			piece_copied(m);
		break;
	case PV_OP_MIG_SWITCH:
		if (m->state == MIG_SWITCHING)
			switched(m);
		break;
	case PV_OP_MIG_SNAP:
		if (m->state == MIG_BEGIN) {
			progress(m);
			m->snap_first += m->snap_sent_n;
			if (m->snap_first >= m->snap_nchunks) {
				m->snap_idx++;
				m->snap_first = 0;
			}
			snap_next(m);
		}
		break;
	default:
		break;
	}
}

/* ---- the target ---- */

static struct mig_in *in_find(const struct volume *vol, uint64_t page)
{
	for (struct mig_in *i = ins; i; i = i->next)
		if (i->pg.vol == vol && i->pg.page == page && !i->dead && !i->dropping)
			return i;
	return NULL;
}

/* Whether a move of page of vol into here is being dropped (its source
 * forgot it): a new move of the page waits until it is gone. */
static int in_dropping(const struct volume *vol, uint64_t page)
{
	for (struct mig_in *i = ins; i; i = i->next)
		if (i->pg.vol == vol && i->pg.page == page && !i->dead && i->dropping)
			return 1;
	return 0;
}

int migrate_volume_moving(const struct volume *vol)
{
	/* a move switched already only punches its old copy here: the page
	 * is the target's, no write of it comes here any more; one queued, or
	 * not yet answered by its target, does not start while a snapshot of
	 * the volume is made here (snap_stops_moves) */
	for (struct mig_out *m = vol->migrating; m; m = m->vnext)
		if (m->state == MIG_COPYING || m->state == MIG_SWITCHING ||
		    (m->state == MIG_BEGIN && m->hello))
			return 1;
	/* nor does a move into here whose page is ours already (switched), or
	 * whose source said nothing for a while: a source that lost the move
	 * in a restart before piece 0 never ends it, and one that goes on
	 * counts it itself (its own snapshot hold waits for it) */
	for (struct mig_in *i = ins; i; i = i->next)
		if (i->pg.vol == vol && !i->dead && vol->owner[i->pg.page] != srv->cfg.id &&
		    pv_now_ms() - i->seen_ms < MIGRATE_IN_IDLE_MS)
			return 1;
	return 0;
}

/* A move of page of vol (any page: UINT64_MAX) that another member
 * announced in its last heartbeat (up to a second old), not switched (and
 * with begun, not queued); NULL if none. */
static const Pv__Migration *announced_move(const struct volume *vol, uint64_t page, int begun)
{
	for (size_t i = 0; i < srv->nmembers; i++) {
		const Pv__Heartbeat *hb = srv->members[i].last_hb;

		if (srv->members[i].id == srv->cfg.id || !hb || !srv->members[i].up)
			continue;
		for (size_t k = 0; k < hb->n_migrations; k++) {
			const Pv__Migration *r = hb->migrations[k];

			if (r->volume_id == vol->id && (page == UINT64_MAX || r->page == page) &&
			    r->state != MIG_SWITCHED && (!begun || r->state != MIG_QUEUED))
				return r;
		}
	}
	return NULL;
}

int migrate_volume_moving_group(const struct volume *vol)
{
	return migrate_volume_moving(vol) || announced_move(vol, UINT64_MAX, 1);
}

static void in_free(struct mig_in *in)
{
	if (in->jobs)
		return;
	for (struct mig_in **p = &ins; *p; p = &(*p)->next)
		if (*p == in) {
			*p = in->next;
			break;
		}
	pthread_mutex_destroy(&in->lock);
	free(in->dirty);
	volume_put(&in->pg.vol);
	free(in);
}

static struct mig_in *in_new(struct volume *vol, const Pv__Migration *r)
{
	struct mig_in *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->dirty = calloc((r->piece_size / PV_SECTOR + 63) / 64, sizeof(uint64_t));
	if (!in->dirty) {
		free(in);
		return NULL;
	}
	pthread_mutex_init(&in->lock, NULL);
	page_of_record(&in->pg, vol, r);
	in->pg.target = srv->cfg.id;
	in->seen_ms = pv_now_ms();
	/* the map follows the piece in transit upwards (dirty_at); after a
	 * restart the source's piece in transit may be below what this server
	 * recorded as copied, so it starts at the bottom */
	in->dirty_piece = 0;
	in->next = ins;
	ins = in;
	return in;
}

static void in_record_fill(Pv__Migration *r, const struct mig_in *in)
{
	record_of_page(r, &in->pg, MIG_IN);
}

/* A deferred answer of the target (after its job). */
struct in_job {
	struct kv_job kv; /* first: kv_run works on it */
	struct mig_in *in;
	struct origin from;
	Pv__Header h; /* op, req_id, version for the answer */
	char volume[PV_MAX_NAME + 1];
	zmq_msg_t data;
	int has_data;
	uint32_t piece;
	int punch; /* MIG_ABORT: punch the page out first */
	int quiet; /* this server's own job (a forgotten move's drop): no answer */
	int begin; /* MIG_BEGIN: allocate the page first */
	Pv__MigrationSnap *ms; /* MIG_SNAP: the record (sp's bitmaps point in it) */
	struct snap_page sp;   /* MIG_SNAP: sp.data is a copy of the payload's */
};

static void in_reply(struct in_job *j, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void in_reply(struct in_job *j, int status, const char *fmt, ...)
{
	char msg[PV_MAX_MESSAGE] = "";
	Pv__Header r;

	if (j->quiet)
		return;
	if (fmt) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	reply_header(&r, j->h.op, j->h.req_id, status);
	r.volume = j->volume;
	r.message = msg;
	reply_send(&j->from, &r, NULL, 0);
}

static struct in_job *in_job_new(const struct origin *from, const Pv__Header *h, struct mig_in *in)
{
	struct in_job *j = calloc(1, sizeof(*j));

	if (!j) {
		reply_busy(from, h, MIGRATE_RETRY_MS, "server %u out of memory", srv->cfg.id);
		return NULL;
	}
	j->from = *from;
	wire_header_init(&j->h);
	j->h.op = h->op;
	j->h.req_id = h->req_id;
	snprintf(j->volume, sizeof(j->volume), "%s", h->volume);
	j->in = in;
	j->kv.owner = in;
	if (in)
		in->jobs++;
	return j;
}

static void in_job_free(struct io_job *job)
{
	struct in_job *j = job->arg;

	kv_free(j->kv.kv, j->kv.n);
	if (j->has_data)
		zmq_msg_close(&j->data);
	if (j->ms)
		pv__migration_snap__free_unpacked(j->ms, NULL);
	free(j->sp.data);
	if (j->in) {
		j->in->jobs--;
		if (j->in->dead)
			in_free(j->in);
	}
	free(j);
	free(job);
}

/* MIG_BEGIN at the target: allocate, record (IO thread). */
static void begin_run(struct io_job *job)
{
	struct in_job *j = job->arg;

	job->err = store_allocate(job->vol, j->in->pg.page_off, j->in->pg.page_len);
	if (!job->err)
		kv_run(job);
}

static void begin_done(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;

	if (job->err) {
		in_reply(j, request_status_from_errno(job->err),
			 "server %u cannot take volume %s page %llu: %s", srv->cfg.id,
			 in->pg.vol->name, (unsigned long long)in->pg.page, strerror(job->err));
		in->dead = 1;
	} else {
		pv_info("migrate: volume %s page %llu: incoming from %u at piece %u of %u",
			in->pg.vol->name, (unsigned long long)in->pg.page, in->pg.source,
			in->pg.piece, in->pg.pieces);
		in_reply(j, PV_ST_OK, NULL);
	}
	in_job_free(job);
}

static void submit_in(struct in_job *j, void (*run)(struct io_job *), void (*done)(struct io_job *))
{
	struct io_job *job = job_new(j->in->pg.vol, run, done, j);

	if (!job) {
		in_reply(j, PV_ST_BUSY, "server %u out of memory", srv->cfg.id);
		if (j->in) {
			j->in->jobs--;
			j->in->dropping = 0; /* a forgotten move's drop: again later */
			if (j->in->dead)
				in_free(j->in);
		}
		kv_free(j->kv.kv, j->kv.n);
		if (j->ms)
			pv__migration_snap__free_unpacked(j->ms, NULL);
		free(j->sp.data);
		free(j);
		return;
	}
	worker_submit(job);
}

unsigned migrate_in_count(void)
{
	unsigned n = 0;

	for (struct mig_in *i = ins; i; i = i->next)
		n += !i->dead;
	return n;
}

static void op_begin(const struct origin *from, const Pv__Header *h, const Pv__Migration *r)
{
	struct volume *vol = volume_by_id(r->volume_id);
	struct mig_in *in;
	struct in_job *j;
	Pv__Migration rec;

	if (!vol || vol->deleted) {
		reply_status(from, h, PV_ST_NO_VOLUME, "server %u has no volume id %llu",
			     srv->cfg.id, (unsigned long long)r->volume_id);
		return;
	}
	if (r->page >= vol->npages || r->target != srv->cfg.id || r->source != h->server_id ||
	    !r->piece_size || r->piece_size % PV_SECTOR || r->pieces > MIGRATE_MAX_PIECES ||
	    r->pieces != page_pieces(page_len_of(vol, r->page), r->piece_size) ||
	    r->piece > r->pieces) {
		reply_status(from, h, PV_ST_BAD_REQUEST, "malformed move of volume %s page %llu",
			     vol->name, (unsigned long long)r->page);
		return;
	}
	if (vol->owner[r->page] == srv->cfg.id && vol->epoch[r->page] == r->epoch + 1) {
		/* switched already: the source missed our answer */
		Pv__Migration done = *r;

		done.state = MIG_SWITCHED;
		reply_body(from, h, PV_ST_OK, NULL, &done.base);
		return;
	}
	if (!in_find(vol, r->page)) {
		char why[PV_MAX_MESSAGE];

		if (snap_move_refusal(vol, why, sizeof(why)) < 0) {
			reply_status(from, h, PV_ST_REFUSED, "server %u: %s", srv->cfg.id, why);
			return;
		}
		if (snap_stops_moves(vol)) {
			reply_busy(
			    from, h, MIGRATE_RETRY_MS,
			    "server %u: a snapshot of volume %s is being made or rolled back "
			    "here; the move waits",
			    srv->cfg.id, vol->name);
			return;
		}
	}
	if (migrate_out_of(vol, r->page)) {
		/* it moved away from here and is still being punched out */
		reply_busy(from, h, MIGRATE_RETRY_MS,
			   "volume %s page %llu: its move away from server %u is still ending",
			   vol->name, (unsigned long long)r->page, srv->cfg.id);
		return;
	}
	if (in_dropping(vol, r->page)) {
		reply_busy(from, h, MIGRATE_RETRY_MS,
			   "volume %s page %llu: server %u is dropping an earlier move of it that "
			   "its source forgot",
			   vol->name, (unsigned long long)r->page, srv->cfg.id);
		return;
	}
	in = in_find(vol, r->page);
	if (in && in->pg.source != r->source && r->epoch > in->pg.epoch) {
		/* a move that never finished, from an owner of an older epoch */
		pv_info("migrate: volume %s page %llu: dropping the unfinished move from server "
			"%u (epoch %u); server %u owns it at epoch %llu",
			vol->name, (unsigned long long)r->page, in->pg.source, in->pg.epoch,
			r->source, (unsigned long long)r->epoch);
		in->dead = 1;
		in = NULL;
	}
	if (in && in->pg.source != r->source) {
		reply_status(from, h, PV_ST_REFUSED,
			     "volume %s page %llu is already moving here from server %u", vol->name,
			     (unsigned long long)r->page, in->pg.source);
		return;
	}
	if (in) { /* the source restarted or lost our answer: go on */
		in->pg.piece = r->piece;
		in->seen_ms = pv_now_ms();
		reply_status(from, h, PV_ST_OK, "%s", "");
		return;
	}
	if (!allowed(vol, srv->cfg.id)) {
		reply_status(from, h, PV_ST_REFUSED,
			     "server %u is not among volume %s's servers (peerctl volume "
			     "set-servers)",
			     srv->cfg.id, vol->name);
		return;
	}
	if (vol->epoch[r->page] > r->epoch) {
		reply_status(from, h, PV_ST_REFUSED,
			     "volume %s page %llu: server %u knows a newer owner (server %u at "
			     "epoch %u) than the source's epoch %llu",
			     vol->name, (unsigned long long)r->page, srv->cfg.id,
			     vol->owner[r->page], vol->epoch[r->page],
			     (unsigned long long)r->epoch);
		return;
	}
	if (migrate_in_count() >= MIGRATE_IN_MAX) {
		reply_busy(from, h, MIGRATE_RETRY_MS, "server %u takes %u moves at a time",
			   srv->cfg.id, MIGRATE_IN_MAX);
		return;
	}
	if (vol->fd < 0 && store_open(vol) < 0) {
		reply_status(from, h, PV_ST_IO_ERROR, "server %u cannot open volume %s's data file",
			     srv->cfg.id, vol->name);
		return;
	}
	in = in_new(vol, r);
	if (!in) {
		reply_busy(from, h, MIGRATE_RETRY_MS, "server %u out of memory", srv->cfg.id);
		return;
	}
	j = in_job_new(from, h, in);
	if (!j) {
		in->dead = 1;
		in_free(in);
		return;
	}
	in_record_fill(&rec, in);
	if (record_kv(&j->kv.kv[j->kv.n++], &rec, 'i') < 0) {
		j->kv.n--;
	}
	submit_in(j, begin_run, begin_done);
}

/* The copy of a piece at the target (IO thread): writes the chunks no dual
 * write changed since the piece began, then makes it durable and records
 * it. */
static void copy_run(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;
	uint64_t base = in->pg.page_off + (uint64_t)j->piece * in->pg.piece_size;
	const uint8_t *data = j->has_data ? zmq_msg_data(&j->data) : NULL;

	job->err = 0;
	for (uint64_t c = 0; c < job->length && !job->err; c += MIGRATE_CHUNK) {
		uint64_t end = c + MIGRATE_CHUNK < job->length ? c + MIGRATE_CHUNK : job->length;
		uint64_t s = c;

		pthread_mutex_lock(&in->lock);
		while (s < end && !job->err) {
			uint64_t e = s;
			int dirty = in->dirty_piece == j->piece &&
				    (in->dirty[(s / PV_SECTOR) / 64] >> ((s / PV_SECTOR) % 64)) & 1;

			/* a run of sectors all dirty or all clean */
			while (e < end) {
				int d =
				    in->dirty_piece == j->piece &&
				    (in->dirty[(e / PV_SECTOR) / 64] >> ((e / PV_SECTOR) % 64)) & 1;

				if (d != dirty)
					break;
				e += PV_SECTOR;
			}
			if (e > end)
				e = end;
			if (!dirty)
				job->err = data
					       ? store_write_at(job->vol, base + s, data + s, e - s)
					       : store_punch(job->vol, base + s, e - s);
			s = e;
		}
		pthread_mutex_unlock(&in->lock);
	}
	if (!job->err)
		j->kv.sync = 1, kv_run(job);
}

static void copy_done(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;

	store_page_probe(in->pg.vol, in->pg.page);
	if (job->err) {
		in_reply(j, request_status_from_errno(job->err),
			 "server %u: piece %u of volume %s page %llu not written: %s", srv->cfg.id,
			 j->piece, in->pg.vol->name, (unsigned long long)in->pg.page,
			 strerror(job->err));
	} else {
		if (in->pg.piece < j->piece + 1)
			in->pg.piece = j->piece + 1;
		in_reply(j, PV_ST_OK, NULL);
	}
	in_job_free(job);
}

/* Resets the dirty map to piece p if it is of an older piece (a newer piece
 * began). Under the lock. */
static void dirty_at(struct mig_in *in, uint32_t p)
{
	if (p > in->dirty_piece) {
		memset(in->dirty, 0, (in->pg.piece_size / PV_SECTOR + 63) / 64 * sizeof(uint64_t));
		in->dirty_piece = p;
	}
}

void migrate_copy_in(const struct origin *from, const Pv__Header *h, struct volume *vol,
		     uint64_t length, zmq_msg_t *data)
{
	uint64_t page = h->offset / vol->page_size;
	struct mig_in *in = page < vol->npages ? in_find(vol, page) : NULL;
	struct in_job *j;
	uint64_t rel;

	if (!in || in->pg.source != h->server_id) {
		if (vol->owner[page] == srv->cfg.id && vol->epoch[page] > h->epoch) {
			reply_status(from, h, PV_ST_OK, "%s", ""); /* switched: a late copy */
			goto out;
		}
		reply_status(from, h, PV_ST_REFUSED,
			     "server %u has no move of volume %s page %llu from server %u",
			     srv->cfg.id, vol->name, (unsigned long long)page, h->server_id);
		goto out;
	}
	rel = h->offset - in->pg.page_off;
	if (rel % in->pg.piece_size || length > in->pg.piece_size ||
	    rel + length > in->pg.page_len ||
	    (rel + length < in->pg.page_len && length != in->pg.piece_size)) {
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "piece copy at %llu+%llu does not match the move's pieces",
			     (unsigned long long)h->offset, (unsigned long long)length);
		goto out;
	}
	j = in_job_new(from, h, in);
	if (!j)
		goto out;
	in->seen_ms = pv_now_ms();
	j->piece = (uint32_t)(rel / in->pg.piece_size);
	pthread_mutex_lock(&in->lock);
	dirty_at(in, j->piece);
	pthread_mutex_unlock(&in->lock);
	if (data) {
		zmq_msg_init(&j->data);
		zmq_msg_move(&j->data, data);
		j->has_data = 1;
	}
	{
		Pv__Migration rec;

		in_record_fill(&rec, in);
		rec.piece = j->piece + 1 > in->pg.piece ? j->piece + 1 : in->pg.piece;
		if (record_kv(&j->kv.kv[j->kv.n++], &rec, 'i') < 0)
			j->kv.n--;
	}
	{
		struct io_job *job = job_new(vol, copy_run, copy_done, j);

		if (!job) {
			in_reply(j, PV_ST_BUSY, "server %u out of memory", srv->cfg.id);
			in->jobs--;
			kv_free(j->kv.kv, j->kv.n);
			if (j->has_data)
				zmq_msg_close(&j->data);
			free(j);
			goto out;
		}
		job->offset = h->offset;
		job->length = length;
		worker_submit(job);
	}
out:
	if (data)
		zmq_msg_close(data);
}

int migrate_target_accepts(struct volume *vol, uint32_t op, uint64_t offset, uint64_t length,
			   uint32_t from)
{
	uint64_t page = offset / vol->page_size;
	struct mig_in *in;

	if (!length || (offset + length - 1) / vol->page_size != page)
		return op == PV_OP_FLUSH;
	if (vol->owner[page] == srv->cfg.id)
		return 1; /* switched meanwhile: it is ours */
	in = in_find(vol, page);
	if (!in || in->pg.source != from)
		return 0;
	in->seen_ms = pv_now_ms();
	if (op == PV_OP_WRITE || op == PV_OP_TRIM) {
		uint64_t rel = offset - in->pg.page_off;
		uint32_t p1 = (uint32_t)(rel / in->pg.piece_size);
		uint32_t p2 = (uint32_t)((rel + length - 1) / in->pg.piece_size);

		pthread_mutex_lock(&in->lock);
		dirty_at(in, p2);
		if (in->dirty_piece >= p1 && in->dirty_piece <= p2) {
			uint64_t ps = (uint64_t)in->dirty_piece * in->pg.piece_size;
			uint64_t a = rel > ps ? rel - ps : 0;
			uint64_t b = rel + length - ps < in->pg.piece_size ? rel + length - ps
									   : in->pg.piece_size;

			for (uint64_t s = a / PV_SECTOR; s * PV_SECTOR < b; s++)
				in->dirty[s / 64] |= 1ull << (s % 64);
		}
		pthread_mutex_unlock(&in->lock);
	}
	return 1;
}

/* MIG_SWITCH at the target: durable, then the page is ours (IO thread). */
static void switch_done(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;

	if (job->err) {
		in_reply(j, request_status_from_errno(job->err),
			 "server %u cannot take volume %s page %llu: %s", srv->cfg.id,
			 in->pg.vol->name, (unsigned long long)in->pg.page, strerror(job->err));
	} else {
		catalog_route_set(in->pg.vol, in->pg.page, srv->cfg.id, in->pg.epoch + 1);
		store_page_probe(in->pg.vol, in->pg.page);
		pv_info("migrate: volume %s page %llu: now owned here (from server %u, epoch %u)",
			in->pg.vol->name, (unsigned long long)in->pg.page, in->pg.source,
			in->pg.epoch + 1);
		in->dead = 1;
		in_reply(j, PV_ST_OK, NULL);
	}
	in_job_free(job);
}

static void op_switch(const struct origin *from, const Pv__Header *h, const Pv__Migration *r)
{
	struct volume *vol = volume_by_id(r->volume_id);
	struct mig_in *in = vol && r->page < vol->npages ? in_find(vol, r->page) : NULL;
	struct in_job *j;

	if (vol && r->page < vol->npages && vol->owner[r->page] == srv->cfg.id &&
	    vol->epoch[r->page] == r->epoch + 1) {
		reply_status(from, h, PV_ST_OK, "%s", ""); /* a resend: done already */
		return;
	}
	if (!in || in->pg.source != h->server_id || in->pg.epoch != r->epoch) {
		reply_status(from, h, PV_ST_REFUSED,
			     "server %u has no move of volume id %llu page %llu", srv->cfg.id,
			     (unsigned long long)r->volume_id, (unsigned long long)r->page);
		return;
	}
	j = in_job_new(from, h, in); /* answers BUSY itself when it fails */
	if (!j)
		return;
	in->seen_ms = pv_now_ms();
	route_kv(&j->kv.kv[j->kv.n++], vol, r->page, srv->cfg.id, in->pg.epoch + 1);
	record_del_kv(&j->kv.kv[j->kv.n++], 'i', vol->id, r->page);
	j->kv.sync = 1;
	submit_in(j, kv_run, switch_done);
}

/* MIG_ABORT: nothing was copied; the page's space here goes. */
static void abort_run(struct io_job *job)
{
	struct in_job *j = job->arg;

	job->err = store_punch(job->vol, j->in->pg.page_off, j->in->pg.page_len);
	if (!job->err)
		job->err = snap_page_forget(job->vol, j->in->pg.page_off, j->in->pg.page_len);
	kv_run(job);
}

static void abort_done(struct io_job *job)
{
	struct in_job *j = job->arg;

	store_page_probe(j->in->pg.vol, j->in->pg.page);
	j->in->dead = 1;
	in_reply(j, PV_ST_OK, NULL);
	in_job_free(job);
}

static void op_abort(const struct origin *from, const Pv__Header *h, const Pv__Migration *r)
{
	struct volume *vol = volume_by_id(r->volume_id);
	struct mig_in *in = vol && r->page < vol->npages ? in_find(vol, r->page) : NULL;
	struct in_job *j;

	if (!in || in->pg.source != h->server_id) {
		reply_status(from, h, PV_ST_OK, "%s", "");
		return;
	}
	j = in_job_new(from, h, in); /* answers BUSY itself when it fails */
	if (!j)
		return;
	record_del_kv(&j->kv.kv[j->kv.n++], 'i', vol->id, r->page);
	submit_in(j, abort_run, abort_done);
}

/* MIG_SNAP at the target: the page's chunks of one snapshot, durable
 * before the answer (IO thread). */
static void snap_in_run(struct io_job *job)
{
	struct in_job *j = job->arg;

	job->err = snap_page_import(job->vol, j->in->pg.page_off, j->in->pg.page_len, &j->sp);
}

static void snap_in_done(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;

	if (job->err == EAGAIN)
		in_reply(j, PV_ST_BUSY,
			 "server %u: its snapshots of volume %s differ from server %u's (one is "
			 "being made or dropped); the move tries again",
			 srv->cfg.id, in->pg.vol->name, in->pg.source);
	else if (job->err)
		in_reply(j, request_status_from_errno(job->err),
			 "server %u cannot keep snapshot %llu's chunks of volume %s page %llu: %s",
			 srv->cfg.id, (unsigned long long)j->sp.id, in->pg.vol->name,
			 (unsigned long long)in->pg.page, strerror(job->err));
	else
		in_reply(j, PV_ST_OK, NULL);
	in_job_free(job);
}

static void op_snap_in(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	const uint8_t *rec, *data;
	size_t rec_len, data_len;
	Pv__MigrationSnap *r = NULL;
	struct volume *vol = NULL;
	struct mig_in *in = NULL;
	struct in_job *j;
	uint64_t nch = 0;
	uint8_t *copy;

	if (snapmap_frame_split(body, len, &rec, &rec_len, &data, &data_len) == 0)
		r = (Pv__MigrationSnap *)wire_body_decode(&pv__migration_snap__descriptor, rec,
							  rec_len);
	if (!r) {
		reply_status(from, h, PV_ST_BAD_REQUEST, "MIG_SNAP payload does not decode");
		return;
	}
	vol = volume_by_id(r->volume_id);
	if (!vol || vol->deleted) {
		reply_status(from, h, PV_ST_NO_VOLUME, "server %u has no volume id %llu",
			     srv->cfg.id, (unsigned long long)r->volume_id);
		goto out;
	}
	in = r->page < vol->npages ? in_find(vol, r->page) : NULL;
	if (!in || in->pg.source != h->server_id || in->pg.epoch != r->epoch) {
		reply_status(from, h, PV_ST_REFUSED,
			     "server %u has no move of volume %s page %llu from server %u",
			     srv->cfg.id, vol->name, (unsigned long long)r->page, h->server_id);
		goto out;
	}
	if (snapmap_check(r, data_len, in->pg.page_off, in->pg.page_len, &nch) < 0) {
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "MIG_SNAP of volume %s page %llu: its chunks do not match the page",
			     vol->name, (unsigned long long)r->page);
		goto out;
	}
	copy = malloc(data_len ? data_len : 1);
	if (!copy) {
		reply_busy(from, h, MIGRATE_RETRY_MS, "server %u out of memory", srv->cfg.id);
		goto out;
	}
	if (data_len)
		memcpy(copy, data, data_len);
	j = in_job_new(from, h, in); /* answers BUSY itself when it fails */
	if (!j) {
		free(copy);
		goto out;
	}
	in->seen_ms = pv_now_ms();
	j->ms = r;
	memcpy(j->sp.ids, r->snap_ids, r->n_snap_ids * sizeof(uint64_t));
	j->sp.nids = r->n_snap_ids;
	j->sp.id = r->snap_id;
	j->sp.chunk = r->chunk_size;
	j->sp.nchunks = nch;
	j->sp.first = r->first;
	j->sp.n = r->count;
	j->sp.preserved = r->preserved.data;
	j->sp.holes = r->holes.data;
	j->sp.same = r->same.data;
	j->sp.data_len = data_len;
	j->sp.data = copy;
	submit_in(j, snap_in_run, snap_in_done);
	return;
out:
	pv__migration_snap__free_unpacked(r, NULL);
}

/* ---- routing entries ---- */

static void route_queue_add(struct volume *vol, uint64_t page)
{
	if (route_queued == route_cap) {
		size_t cap = route_cap ? 2 * route_cap : 64;
		struct meta_kv *q = realloc(route_queue, cap * sizeof(*q));

		if (!q)
			return; /* kept in memory only; fetched again at the next start */
		route_queue = q;
		route_cap = cap;
	}
	route_kv(&route_queue[route_queued++], vol, page, vol->owner[page], vol->epoch[page]);
}

int migrate_route_learn(struct volume *vol, uint64_t page, uint32_t owner, uint64_t epoch)
{
	if (page >= vol->npages || owner == srv->cfg.id || epoch > UINT32_MAX ||
	    !pv_route_newer(vol->epoch[page], epoch) || !catalog_member(owner))
		return 0;
	if (vol->owner[page] == srv->cfg.id)
		return 0; /* ours: only our own switch gives it away */
	catalog_route_set(vol, page, owner, (uint32_t)epoch);
	route_queue_add(vol, page);
	return 1;
}

static void routes_flush_done(struct io_job *job)
{
	kv_job_free(job);
	route_flushing = 0;
}

static void routes_flush(void)
{
	struct kv_job *k;
	struct io_job *job;

	if (route_flushing || !route_queued)
		return;
	k = calloc(1, sizeof(*k));
	job = k ? job_new(NULL, kv_run, routes_flush_done, k) : NULL;
	if (!job) {
		free(k);
		return;
	}
	/* the whole queue in one transaction */
	k->many = route_queue;
	k->nmany = route_queued;
	route_queue = NULL;
	route_queued = route_cap = 0;
	route_flushing = 1;
	worker_submit(job);
}

static void op_routes(const struct origin *from, const Pv__Header *h)
{
	struct volume *vol = catalog_volume(h->volume);
	Pv__RouteUpdate u = PV__ROUTE_UPDATE__INIT;
	Pv__RouteEntry *e = NULL, **ep = NULL;
	size_t n = 0;

	if (!vol || (h->volume_id && h->volume_id != vol->id)) {
		reply_status(from, h, PV_ST_NO_VOLUME, "no volume '%s'", h->volume);
		return;
	}
	for (uint64_t p = 0; p < vol->npages; p++)
		n += vol->epoch[p] > 0;
	if (n) {
		e = calloc(n, sizeof(*e));
		ep = calloc(n, sizeof(*ep));
		if (!e || !ep) {
			free(e);
			free(ep);
			reply_busy(from, h, MIGRATE_RETRY_MS, "out of memory");
			return;
		}
	}
	n = 0;
	for (uint64_t p = 0; p < vol->npages; p++) {
		if (!vol->epoch[p])
			continue;
		pv__route_entry__init(&e[n]);
		e[n].page = p;
		e[n].owner = vol->owner[p];
		e[n].epoch = vol->epoch[p];
		ep[n] = &e[n];
		n++;
	}
	u.volume = vol->name;
	u.volume_id = vol->id;
	u.n_entries = n;
	u.entries = ep;
	reply_body(from, h, PV_ST_OK, NULL, &u.base);
	free(e);
	free(ep);
}

static void learn_update(const void *body, size_t len)
{
	Pv__RouteUpdate *u =
	    body ? (Pv__RouteUpdate *)wire_body_decode(&pv__route_update__descriptor, body, len)
		 : NULL;
	struct volume *vol = u ? volume_by_id(u->volume_id) : NULL;

	for (size_t i = 0; vol && i < u->n_entries; i++)
		migrate_route_learn(vol, u->entries[i]->page, u->entries[i]->owner,
				    u->entries[i]->epoch);
	if (u)
		pv__route_update__free_unpacked(u, NULL);
}

void migrate_routes_fetch(struct member *m)
{
	for (struct volume *v = srv->volumes; v; v = v->next) {
		Pv__Header h;

		wire_header_init(&h);
		h.op = PV_OP_ROUTES;
		h.req_id = peers_next_id();
		h.volume = v->name;
		h.volume_id = v->id;
		reply_send_member(m, &h, NULL, NULL);
	}
}

/* ---- page.move ---- */

static int ask_answer(const Pv__Header *h)
{
	for (struct mig_ask **p = &asks; *p; p = &(*p)->next) {
		struct mig_ask *a = *p;

		for (size_t i = 0; i < PEERD_MAX_MEMBERS; i++) {
			if (!a->req_ids[i] || a->req_ids[i] != h->req_id)
				continue;
			a->req_ids[i] = 0;
			if (h->status != PV_ST_OK && !a->failed) {
				a->failed = 1;
				snprintf(a->err, sizeof(a->err), "%s", h->message);
			}
			if (--a->waiting == 0) {
				*p = a->next;
				a->done(a->arg, !a->failed,
					a->failed    ? a->err
					: a->note[0] ? a->note
						     : NULL);
				free(a);
			}
			return 1;
		}
	}
	return 0;
}

/* Starts the moves of the pages of [first, last] owned here; the first
 * refusal in err (a range skips pages already moving to the same server). */
static int start_owned(struct volume *vol, uint64_t first, uint64_t last, uint32_t to,
		       uint32_t piece_size, char *err, size_t errlen)
{
	int rc = 0;

	for (uint64_t p = first; p <= last && p < vol->npages; p++) {
		struct mig_out *m;
		char why[256];

		if (vol->owner[p] != srv->cfg.id)
			continue; /* not ours */
		m = out_find(vol, p);
		if (to == srv->cfg.id && m && m->state != MIG_SWITCHED && rc == 0) {
			snprintf(
			    err, errlen,
			    "volume %s page %llu is moving from server %u to server %u (piece %u "
			    "of %u); move it again once that move is done",
			    vol->name, (unsigned long long)p, srv->cfg.id, m->pg.target,
			    m->pg.piece, m->pg.pieces);
			rc = -1;
		}
		if (to == srv->cfg.id)
			continue; /* on the target already */
		if (m && first != last && m->pg.target == to)
			continue;
		if (migrate_start(vol, p, to, piece_size, why, sizeof(why)) < 0 && rc == 0) {
			snprintf(err, errlen, "%s", why);
			rc = -1;
		}
	}
	return rc;
}

static void op_request(const struct origin *from, const Pv__Header *h, const Pv__MigrateRequest *r)
{
	struct volume *vol = volume_by_id(r->volume_id);
	char err[256];

	if (!vol) {
		reply_status(from, h, PV_ST_NO_VOLUME, "server %u has no volume id %llu",
			     srv->cfg.id, (unsigned long long)r->volume_id);
		return;
	}
	if (start_owned(vol, r->first, r->last, r->target, r->piece_size, err, sizeof(err)) < 0)
		reply_status(from, h, PV_ST_REFUSED, "%s", err);
	else
		reply_status(from, h, PV_ST_OK, "%s", "");
}

/* Whether page of vol moves anywhere in the group: this server's moves, or
 * one a member announced in its last heartbeat (up to a second old). */
static int moving_in_group(const struct volume *vol, uint64_t page, struct migrate_info *mi)
{
	const Pv__Migration *r;

	if (migrate_page_state(vol, page, mi) && mi->state != MIG_IN && mi->state != MIG_SWITCHED)
		return 1;
	r = announced_move(vol, page, 0);
	if (r)
		info_of_record(mi, r);
	return r != NULL;
}

int migrate_request(const char *volume, uint64_t first, uint64_t last, uint32_t to,
		    uint32_t piece_size, migrate_done_fn done, void *arg, char *err, size_t errlen)
{
	struct volume *vol = catalog_volume(volume);
	struct member *t = catalog_member(to);
	struct mig_ask *a;
	Pv__MigrateRequest r = PV__MIGRATE_REQUEST__INIT;
	uint64_t on_target = 0;
	char note[200] = "";

	if (!vol) {
		snprintf(err, errlen, "no volume '%s'", volume);
		return -ENOENT;
	}
	if (first > last || last >= vol->npages) {
		snprintf(err, errlen, "volume %s has pages 0-%llu; page %llu does not exist",
			 vol->name, (unsigned long long)vol->npages - 1,
			 (unsigned long long)(last >= vol->npages ? last : first));
		return -1;
	}
	if (!t) {
		char why[200];

		remove_not_member(to, why, sizeof(why));
		snprintf(err, errlen, "server %u: %s", to, why);
		return -ENOENT;
	}
	if (!member_up(to)) {
		snprintf(err, errlen, "server %u is down: pages cannot move to it now", to);
		return -1;
	}
	if (!allowed(vol, to)) {
		snprintf(err, errlen,
			 "server %u is not among volume %s's servers; allow it first (peerctl "
			 "volume set-servers %s ...)",
			 to, vol->name, vol->name);
		return -1;
	}
	if (t->draining) {
		snprintf(err, errlen, "server %u is being evacuated; no page moves to it", to);
		return -1;
	}
	if (piece_size && (piece_size % PV_SECTOR || piece_size > PV_MAX_IO ||
			   page_pieces(vol->page_size, piece_size) > MIGRATE_MAX_PIECES)) {
		snprintf(err, errlen,
			 "piece size %u: a multiple of 512 bytes, at most %u, and at most %u "
			 "pieces per page of %u bytes",
			 piece_size, PV_MAX_IO, MIGRATE_MAX_PIECES, vol->page_size);
		return -1;
	}
	for (uint64_t p = first; p <= last; p++) {
		uint32_t o = vol->owner[p];
		struct migrate_info mi;

		if (o == to && moving_in_group(vol, p, &mi)) {
			/* on the target now, but leaving it: "already there" would
			 * be wrong a moment later */
			snprintf(
			    err, errlen,
			    "volume %s page %llu is moving from server %u to server %u (piece %u "
			    "of %u); move it again once that move is done",
			    vol->name, (unsigned long long)p, mi.from, mi.to, mi.piece, mi.pieces);
			return -1;
		}
		on_target += o == to;
		if (o != to && !member_up(o)) {
			snprintf(err, errlen, "volume %s page %llu: its owner, server %u, is down",
				 vol->name, (unsigned long long)p, o);
			return -1;
		}
	}
	if (on_target == last - first + 1) {
		/* already there as this server sees it; the owner still says
		 * whether it is leaving (its moves reach us a heartbeat late) */
		if (first == last)
			snprintf(note, sizeof(note), "volume %s page %llu is already on server %u",
				 vol->name, (unsigned long long)first, to);
		else
			snprintf(note, sizeof(note),
				 "volume %s pages %llu-%llu are already on server %u", vol->name,
				 (unsigned long long)first, (unsigned long long)last, to);
	}
	if (start_owned(vol, first, last, to, piece_size, err, errlen) < 0)
		return -1;
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->done = done;
	a->arg = arg;
	a->sent_ms = pv_now_ms();
	snprintf(a->note, sizeof(a->note), "%s", note);
	r.volume = vol->name;
	r.volume_id = vol->id;
	r.first = first;
	r.last = last;
	r.target = to;
	r.piece_size = piece_size;
	/* every member up moves the pages it owns: a page this server's routing
	 * places wrongly is still moved by its owner */
	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		Pv__Header h;

		if (m->id == srv->cfg.id || !m->up)
			continue;
		wire_header_init(&h);
		h.op = PV_OP_MIG_REQUEST;
		h.req_id = peers_next_id();
		h.volume = vol->name;
		h.volume_id = vol->id;
		if (reply_send_member(m, &h, NULL, &r.base) == 0) {
			a->req_ids[i] = h.req_id;
			a->waiting++;
		}
	}
	if (!a->waiting) {
		done(arg, 1, note[0] ? note : NULL);
		free(a);
		return 0;
	}
	a->next = asks;
	asks = a;
	return 0;
}

static void asks_tick(void)
{
	uint64_t now = pv_now_ms();

	for (struct mig_ask **p = &asks; *p;) {
		struct mig_ask *a = *p;

		if (now - a->sent_ms < MIGRATE_RESEND_MS) {
			p = &a->next;
			continue;
		}
		*p = a->next;
		a->done(a->arg, 0,
			a->failed ? a->err : "a member did not answer the move request in time");
		free(a);
	}
}

/* ---- starting a move ---- */

int migrate_start(struct volume *vol, uint64_t page, uint32_t to, uint32_t piece_size, char *err,
		  size_t errlen)
{
	struct member *t = catalog_member(to);
	struct mig_out *m, *cur;
	uint64_t len;
	unsigned queued = 0;

	if (page >= vol->npages) {
		snprintf(err, errlen, "volume %s has no page %llu", vol->name,
			 (unsigned long long)page);
		return -1;
	}
	if (snap_move_refusal(vol, err, errlen) < 0)
		return -1;
	if (vol->owner[page] != srv->cfg.id) {
		snprintf(err, errlen, "volume %s page %llu is owned by server %u, not server %u",
			 vol->name, (unsigned long long)page, vol->owner[page], srv->cfg.id);
		return -1;
	}
	if ((cur = out_find(vol, page))) {
		snprintf(err, errlen,
			 "volume %s page %llu is already moving to server %u (%s, piece %u of %u)",
			 vol->name, (unsigned long long)page, cur->pg.target,
			 migrate_state_name(cur->state), cur->pg.piece, cur->pg.pieces);
		return -1;
	}
	if (to == srv->cfg.id) {
		snprintf(err, errlen, "volume %s page %llu is already on server %u", vol->name,
			 (unsigned long long)page, to);
		return -1;
	}
	if (!t || !member_up(to) || !allowed(vol, to) || t->draining) {
		snprintf(err, errlen, "server %u cannot take volume %s's pages (%s)", to, vol->name,
			 !t		     ? "not a member"
			 : !member_up(to)    ? "down"
			 : !allowed(vol, to) ? "not among the volume's servers"
					     : "being evacuated");
		return -1;
	}
	for (struct mig_out *o = outs; o; o = o->next)
		queued++;
	if (queued >= MIGRATE_QUEUE_MAX) {
		snprintf(err, errlen, "server %u has %u moves queued already", srv->cfg.id, queued);
		return -1;
	}
	len = page_len_of(vol, page);
	if (!piece_size)
		piece_size = MIGRATE_PIECE_DEFAULT;
	if (piece_size > len)
		piece_size = (uint32_t)((len + PV_SECTOR - 1) / PV_SECTOR * PV_SECTOR);
	m = calloc(1, sizeof(*m));
	if (m)
		m->wr_pending = calloc(page_pieces(len, piece_size), sizeof(uint32_t));
	if (!m || !m->wr_pending) {
		free(m);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	volume_get(vol);
	m->pg.vol = vol;
	m->pg.page = page;
	m->pg.page_off = page * vol->page_size;
	m->pg.page_len = len;
	m->pg.source = srv->cfg.id;
	m->pg.target = to;
	m->pg.piece_size = piece_size;
	m->pg.pieces = page_pieces(len, piece_size);
	m->pg.epoch = vol->epoch[page];
	m->state = MIG_QUEUED;
	m->started = unix_now();
	m->progress_ms = pv_now_ms();
	m->vnext = vol->migrating;
	vol->migrating = m;
	/* at the end of the list: moves start in the order asked */
	{
		struct mig_out **p = &outs;

		while (*p)
			p = &(*p)->next;
		*p = m;
	}
	out_advance(m);
	return 0;
}

/* ---- the data path (request.c) ---- */

struct mig_out *migrate_out_of(const struct volume *vol, uint64_t page)
{
	return vol->migrating ? out_find(vol, page) : NULL;
}

int migrate_touches(const struct volume *vol, uint64_t offset, uint64_t length)
{
	if (!vol->migrating || !length)
		return 0;
	for (struct mig_out *m = vol->migrating; m; m = m->vnext)
		if (!m->dead && offset < m->pg.page_off + m->pg.page_len &&
		    m->pg.page_off < offset + length)
			return 1;
	return 0;
}

void migrate_part(struct mig_out *m, uint64_t offset, uint64_t length, uint32_t op,
		  enum mig_route *route, uint64_t *run_len, uint32_t *first, uint32_t *last)
{
	uint64_t rel = offset - m->pg.page_off;
	uint32_t p = (uint32_t)(rel / m->pg.piece_size);
	enum mig_route r = migrate_route(m->state, p, m->pg.piece, op);
	uint64_t end = rel;

	*first = p;
	for (;;) {
		uint64_t piece_end = ((uint64_t)p + 1) * m->pg.piece_size;

		if (piece_end > m->pg.page_len)
			piece_end = m->pg.page_len;
		end = piece_end < rel + length ? piece_end : rel + length;
		*last = p;
		if (end >= rel + length || ++p >= m->pg.pieces ||
		    migrate_route(m->state, p, m->pg.piece, op) != r)
			break;
	}
	*route = r;
	*run_len = end - rel;
}

uint32_t migrate_target(const struct mig_out *m)
{
	return m->pg.target;
}

void migrate_job_begin(struct io_job *job, struct mig_out *m, uint32_t first, uint32_t last,
		       int counted)
{
	job->mig = m;
	job->mig_first = first;
	job->mig_last = last;
	job->mig_counted = counted;
	m->io_pending++;
	if (counted)
		for (uint32_t p = first; p <= last && p < m->pg.pieces; p++)
			m->wr_pending[p]++;
}

void migrate_job_end(struct io_job *job)
{
	struct mig_out *m = job->mig;

	if (!m)
		return;
	job->mig = NULL;
	m->io_pending--;
	if (job->mig_counted)
		for (uint32_t p = job->mig_first; p <= job->mig_last && p < m->pg.pieces; p++)
			m->wr_pending[p]--;
	if (m->dead)
		out_free_if_done(m);
	else if (!m->busy)
		out_advance(m); /* a piece may have waited for this write */
}

size_t migrate_flush_targets(const struct volume *vol, uint32_t *out, size_t max)
{
	size_t n = 0;

	for (struct mig_out *m = vol->migrating; m && n < max; m = m->vnext) {
		int seen = 0;

		if (m->dead || m->state < MIG_COPYING || m->state > MIG_SWITCHING)
			continue;
		for (size_t i = 0; i < n; i++)
			seen |= out[i] == m->pg.target;
		if (!seen)
			out[n++] = m->pg.target;
	}
	return n;
}

/* ---- peer messages ---- */

void migrate_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	switch (h->op) {
	case PV_OP_ROUTES:
		op_routes(from, h);
		return;
	case PV_OP_ROUTE_UPDATE:
		learn_update(body, len);
		return;
	case PV_OP_MIG_SNAP:
		op_snap_in(from, h, body, len);
		return;
	case PV_OP_MIG_REQUEST: {
		Pv__MigrateRequest *r = body ? (Pv__MigrateRequest *)wire_body_decode(
						   &pv__migrate_request__descriptor, body, len)
					     : NULL;

		if (!r) {
			reply_status(from, h, PV_ST_BAD_REQUEST,
				     "MIG_REQUEST body does not decode");
			return;
		}
		op_request(from, h, r);
		pv__migrate_request__free_unpacked(r, NULL);
		return;
	}
	default: {
		Pv__Migration *r =
		    body ? (Pv__Migration *)wire_body_decode(&pv__migration__descriptor, body, len)
			 : NULL;

		if (!r || !r->volume) {
			reply_status(from, h, PV_ST_BAD_REQUEST, "%s body does not decode",
				     wire_op_name(h->op));
			if (r)
				pv__migration__free_unpacked(r, NULL);
			return;
		}
		if (h->op == PV_OP_MIG_BEGIN)
			op_begin(from, h, r);
		else if (h->op == PV_OP_MIG_SWITCH)
			op_switch(from, h, r);
		else
			op_abort(from, h, r);
		pv__migration__free_unpacked(r, NULL);
	}
	}
}

void migrate_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	if (h->op == PV_OP_ROUTES) {
		if (h->status == PV_ST_OK)
			learn_update(body, len);
		return;
	}
	if (h->op == PV_OP_MIG_REQUEST) {
		ask_answer(h);
		return;
	}
	for (struct mig_out *o = outs; o; o = o->next) {
		if (o->busy == 1 && o->req_id && o->req_id == h->req_id && o->pg.target == m->id) {
			o->req_id = 0;
			out_answer(o, h, body, len);
			return;
		}
	}
}

/* ---- moves in that their source forgot ---- */

/* Why the source of a move into here no longer knows it, or NULL while it
 * may. A source that restarts before recording piece 0 (or fails the move
 * and its MIG_ABORT is lost) never ends the move here: the page's space,
 * its snapshot chunks and its record would stay, and the move would count
 * against MIGRATE_IN_MAX for ever. Nothing was copied then: a source
 * records piece 0 before the first piece goes. Forgotten: the source said
 * nothing of it for MIGRATE_IN_IDLE_MS, the page is not ours, and the
 * source left the group, or it is up and its newest heartbeat (which lists
 * all its moves, queued ones too, unless cut at HB_MIGRATIONS_MAX), sent
 * well after its last message about this one, does not list it. */
#define HB_MIGRATIONS_MAX 64

static const char *forgotten(const struct mig_in *in, uint64_t now)
{
	const struct member *m = NULL;
	const Pv__Heartbeat *hb;

	if (in->jobs || in->dropping || now - in->seen_ms < MIGRATE_IN_IDLE_MS ||
	    in->pg.vol->owner[in->pg.page] == srv->cfg.id)
		return NULL;
	for (size_t i = 0; i < srv->nmembers; i++)
		if (srv->members[i].id == in->pg.source)
			m = &srv->members[i];
	if (!m)
		return "it left the group";
	hb = m->last_hb;
	if (!m->up || !hb || m->last_hb_ms < in->seen_ms + 3 * PEERD_HEARTBEAT_MS ||
	    hb->n_migrations >= HB_MIGRATIONS_MAX)
		return NULL;
	for (size_t k = 0; k < hb->n_migrations; k++) {
		const Pv__Migration *r = hb->migrations[k];

		if (r->volume_id == in->pg.vol->id && r->page == in->pg.page &&
		    r->target == srv->cfg.id)
			return NULL;
	}
	return "it no longer lists it (it restarted before copying, or gave the move up)";
}

static void forgotten_done(struct io_job *job)
{
	struct in_job *j = job->arg;
	struct mig_in *in = j->in;

	if (job->err) {
		pv_warn("migrate: volume %s page %llu: cannot drop the move from server %u that "
			"it forgot: %s; trying again in %d s",
			in->pg.vol->name, (unsigned long long)in->pg.page, in->pg.source,
			strerror(job->err), MIGRATE_IN_IDLE_MS / 1000);
		in->dropping = 0;
		in->seen_ms = pv_now_ms();
	} else {
		pv_info("migrate: volume %s page %llu: the move from server %u is dropped; its "
			"space here is free",
			in->pg.vol->name, (unsigned long long)in->pg.page, in->pg.source);
		store_page_probe(in->pg.vol, in->pg.page);
		in->dead = 1;
	}
	in_job_free(job);
}

static void abort_run(struct io_job *job);

/* Drops a move in that its source forgot, as MIG_ABORT would: the page's
 * space and snapshot chunks here, then its record. Meanwhile a new move of
 * the page is answered BUSY (in_dropping) and the old one's messages find
 * no move (in_find). */
static void forgotten_check(struct mig_in *in, uint64_t now)
{
	const char *why = forgotten(in, now);
	struct in_job *j;

	if (!why || !(j = calloc(1, sizeof(*j))))
		return;
	pv_info("migrate: volume %s page %llu: dropping the move in from server %u, silent "
		"for %llu s: %s",
		in->pg.vol->name, (unsigned long long)in->pg.page, in->pg.source,
		(unsigned long long)(now - in->seen_ms) / 1000, why);
	j->quiet = 1;
	j->in = in;
	j->kv.owner = in;
	in->jobs++;
	in->dropping = 1;
	record_del_kv(&j->kv.kv[j->kv.n++], 'i', in->pg.vol->id, in->pg.page);
	submit_in(j, abort_run, forgotten_done);
}

/* ---- ticks, list, heartbeat ---- */

void migrate_tick(void *arg)
{
	uint64_t now = pv_now_ms();

	(void)arg;
	asks_tick();
	routes_flush();
	for (struct mig_out *m = outs, *next; m; m = next) {
		next = m->next;
		if (m->busy == 2 && now >= m->wait_until_ms) {
			throttled_send(m); /* its timer did not run (table full) */
			continue;
		}
		if (m->dead)
			continue;
		if (now - m->rate_from_ms >= 5000) {
			m->rate_kbps =
			    (uint32_t)(m->rate_bytes / 1024 * 1000 / (now - m->rate_from_ms));
			m->rate_bytes = 0;
			m->rate_from_ms = now;
		}
		if (m->busy == 1 && m->req_id && now - m->sent_ms > MIGRATE_RESEND_MS) {
			m->busy = 0; /* no answer: the step again */
			m->req_id = 0;
			stuck(m, "no answer from server %u within %d s", m->pg.target,
			      MIGRATE_RESEND_MS / 1000);
		}
		if (m->state != MIG_QUEUED && m->state != MIG_SWITCHED && m->stuck[0] &&
		    now - m->progress_ms > MIGRATE_STUCK_MS && now - stuck_logged_ms > 60000) {
			stuck_logged_ms = now;
			pv_warn(
			    "migrate: volume %s page %llu %u->%u makes no progress for %llu s: %s",
			    m->pg.vol->name, (unsigned long long)m->pg.page, srv->cfg.id,
			    m->pg.target, (unsigned long long)(now - m->progress_ms) / 1000,
			    m->stuck);
		}
		out_advance(m);
	}
	for (struct mig_in *i = ins, *next; i; i = next) {
		next = i->next;
		if (i->pg.vol->deleted && !i->dead)
			i->dead = 1;
		if (i->dead)
			in_free(i);
		else
			forgotten_check(i, now);
	}
}

size_t migrate_list(struct migrate_info *out, size_t max)
{
	size_t n = 0;

	for (struct mig_out *m = outs; m && n < max; m = m->next)
		if (!m->dead)
			info_of(&out[n++], m);
	for (size_t i = 0; i < srv->nmembers && n < max; i++) {
		const Pv__Heartbeat *hb = srv->members[i].last_hb;

		if (srv->members[i].id == srv->cfg.id || !hb || !srv->members[i].up)
			continue;
		for (size_t k = 0; k < hb->n_migrations && n < max; k++)
			info_of_record(&out[n++], hb->migrations[k]);
	}
	return n;
}

int migrate_page_state(const struct volume *vol, uint64_t page, struct migrate_info *info)
{
	struct mig_out *m = vol->migrating ? out_find(vol, page) : NULL;
	struct mig_in *in = m ? NULL : in_find(vol, page);
	Pv__Migration r;

	if (!m && !in)
		return 0;
	if (info && m) {
		info_of(info, m);
	} else if (info) {
		in_record_fill(&r, in);
		info_of_record(info, &r);
	}
	return 1;
}

void migrate_heartbeat_fill(Pv__Heartbeat *hb)
{
	Pv__Migration **list;
	size_t n = 0;

	hb->n_migrations = 0;
	hb->migrations = NULL;
	for (struct mig_out *m = outs; m; m = m->next)
		n += !m->dead;
	if (!n)
		return;
	if (n > HB_MIGRATIONS_MAX)
		n = HB_MIGRATIONS_MAX;
	list = calloc(n, sizeof(*list) + sizeof(Pv__Migration));
	if (!list)
		return;
	{
		Pv__Migration *recs = (Pv__Migration *)(list + n);
		size_t k = 0;

		for (struct mig_out *m = outs; m && k < n; m = m->next) {
			if (m->dead)
				continue;
			record_fill(&recs[k], m);
			recs[k].rate_kbps = m->rate_kbps;
			recs[k].stuck = m->stuck;
			list[k] = &recs[k];
			k++;
		}
		hb->n_migrations = k;
	}
	hb->migrations = list;
}

void migrate_heartbeat_free(Pv__Heartbeat *hb)
{
	free(hb->migrations);
	hb->migrations = NULL;
	hb->n_migrations = 0;
}

/* ---- start-up ---- */

struct load_ctx {
	struct meta_kv *stale;
	size_t nstale, cap;
};

static void load_stale(struct load_ctx *c, const char *db, const char *key, size_t klen)
{
	if (c->nstale == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct meta_kv *s = realloc(c->stale, cap * sizeof(*s));

		if (!s)
			return;
		c->stale = s;
		c->cap = cap;
	}
	memset(&c->stale[c->nstale], 0, sizeof(c->stale[0]));
	c->stale[c->nstale].db = db;
	snprintf(c->stale[c->nstale].key, sizeof(c->stale[0].key), "%.*s", (int)klen, key);
	c->nstale++;
}

static int load_route(void *arg, const char *key, size_t klen, const void *val, size_t vlen)
{
	struct load_ctx *c = arg;
	uint64_t vol_id, page;
	uint32_t e[2];
	struct volume *vol;

	if (parse_key(key, klen, NULL, &vol_id, &page) < 0 || vlen != sizeof(e))
		return 0;
	memcpy(e, val, sizeof(e));
	vol = volume_by_id(vol_id);
	if (!vol || page >= vol->npages) {
		load_stale(c, "route_pages", key, klen); /* a deleted volume's */
		return 0;
	}
	if (e[1] > vol->epoch[page])
		catalog_route_set(vol, page, e[0], e[1]);
	return 0;
}

static int load_move(void *arg, const char *key, size_t klen, const void *val, size_t vlen)
{
	struct load_ctx *c = arg;
	Pv__Migration *r = pv__migration__unpack(NULL, vlen, val);
	struct volume *vol = r ? volume_by_id(r->volume_id) : NULL;
	char role;
	uint64_t vol_id, page;

	if (!r || parse_key(key, klen, &role, &vol_id, &page) < 0 || !vol ||
	    r->page >= vol->npages || !r->piece_size || r->pieces > MIGRATE_MAX_PIECES ||
	    r->piece > r->pieces) {
		load_stale(c, "migrations", key, klen);
		if (r)
			pv__migration__free_unpacked(r, NULL);
		return 0;
	}
	if (role == 'i') {
		struct mig_in *in = in_new(vol, r);

		if (in)
			pv_info("migrate: volume %s page %llu: incoming from %u at piece %u of %u",
				vol->name, (unsigned long long)r->page, r->source, r->piece,
				r->pieces);
	} else {
		struct mig_out *m = calloc(1, sizeof(*m));

		if (m)
			m->wr_pending = calloc(r->pieces ? r->pieces : 1, sizeof(uint32_t));
		if (!m || !m->wr_pending) {
			free(m);
			pv__migration__free_unpacked(r, NULL);
			return -1;
		}
		page_of_record(&m->pg, vol, r);
		m->pg.source = srv->cfg.id;
		m->state = r->state >= MIG_COPYING && r->state <= MIG_SWITCHED
			       ? (enum mig_state)r->state
			       : MIG_COPYING;
		m->started = r->started;
		m->bytes_copied = r->bytes_copied;
		m->recorded = 1;
		m->progress_ms = pv_now_ms();
		m->rate_from_ms = m->progress_ms;
		if (m->state == MIG_SWITCHED) {
			/* the route is recorded (same transaction): B's */
			m->punch_at_ms = pv_now_ms() + MIGRATE_PUNCH_DELAY_MS;
			if (vol->owner[m->pg.page] == srv->cfg.id)
				catalog_route_set(vol, m->pg.page, m->pg.target, m->pg.epoch + 1);
		}
		m->vnext = vol->migrating;
		vol->migrating = m;
		m->next = outs;
		outs = m;
		pv_info("migrate: volume %s page %llu: resuming at piece %u of %u (%s, to server "
			"%u)",
			vol->name, (unsigned long long)m->pg.page, m->pg.piece, m->pg.pieces,
			migrate_state_name(m->state), m->pg.target);
	}
	pv__migration__free_unpacked(r, NULL);
	return 0;
}

int migrate_load(void)
{
	struct load_ctx c = {0};
	int rc = 0;

	if (meta_each("route_pages", load_route, &c) < 0 ||
	    meta_each("migrations", load_move, &c) < 0)
		rc = -1;
	if (c.nstale) {
		pv_info("migrate: dropping %zu record(s) of deleted volumes", c.nstale);
		meta_put_many(c.stale, c.nstale);
	}
	free(c.stale);
	return rc;
}

void migrate_free(void)
{
	while (outs) {
		struct mig_out *m = outs;

		outs = m->next;
		m->vnext = NULL;
		m->pg.vol->migrating = NULL;
		volume_put(&m->pg.vol);
		free(m->wr_pending);
		free(m->buf);
		free(m);
	}
	while (ins) {
		struct mig_in *i = ins;

		i->jobs = 0;
		in_free(i);
	}
	while (asks) {
		struct mig_ask *a = asks;

		asks = a->next;
		a->done(a->arg, 0, NULL);
		free(a);
	}
	kv_free(route_queue, route_queued);
	free(route_queue);
	route_queue = NULL;
	route_queued = route_cap = 0;
}
