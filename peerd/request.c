/* request.c: a data request's life: validate (the pure checks
 * request_check_frame and request_check_range, then shared memory and the
 * data file), split into runs by owner (pv_span_at), serve the pages this
 * server owns through the IO workers, forward the others to their owners,
 * gather the parts and send one reply (reply.c). Reactor thread only.
 *
 *   client --READ--> [validate] --split by page--+--> local part --> worker
 *                                                 +--> remote part --> forward
 *   client <--reply (one header + one data frame)-- [all parts done]
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

static uint64_t inflight;
static uint64_t reads_mapped;	/* READs answered PV_F_MAP */
static uint64_t late_logged_ms; /* late copies: one log line a second */
static unsigned late_unlogged;

/* Requests in flight by (client id, request id). A client that lost its
 * connection sends what was in flight again with the same ids; a copy that
 * meets its original still running is not run twice: the reply goes to
 * the new connection instead. The table (uthash, keyed by the adjacent
 * fields client_id and req_id) holds the newest request of each key; an
 * older one with the same key (a copy that could not join it) waits on its
 * shadow list and comes back when the newer ends. */
static struct request *by_id;

#define INFLIGHT_KEY_LEN (2 * sizeof(uint64_t))
_Static_assert(offsetof(struct request, req_id) ==
		   offsetof(struct request, client_id) + sizeof(uint64_t),
	       "the in-flight key is client_id followed by req_id");

static struct request *inflight_find(uint64_t client_id, uint64_t req_id)
{
	const uint64_t key[2] = {client_id, req_id};
	struct request *r;

	HASH_FIND(hh, by_id, key, INFLIGHT_KEY_LEN, r);
	return r;
}

/* Puts req in the table as the newest of its key. Without memory for the
 * table it stays out (no copy will join it). */
static void inflight_add(struct request *req)
{
	struct request *newer = inflight_find(req->client_id, req->req_id);

	if (newer) {
		HASH_DELETE(hh, by_id, newer);
		newer->in_table = 0;
		req->shadow = newer;
	}
	HASH_ADD_KEYPTR(hh, by_id, &req->client_id, INFLIGHT_KEY_LEN, req);
	req->in_table = req->hh.tbl != NULL;
	if (!req->in_table && newer) {
		req->shadow = NULL;
		inflight_add(newer); /* it keeps its place */
	}
}

static void inflight_remove(struct request *req)
{
	struct request *head = inflight_find(req->client_id, req->req_id);

	if (req->in_table) {
		HASH_DELETE(hh, by_id, req);
		req->in_table = 0;
		if (req->shadow)
			inflight_add(req->shadow); /* the next newest of its key */
		return;
	}
	for (struct request **rp = head ? &head->shadow : NULL; rp && *rp; rp = &(*rp)->shadow) {
		if (*rp == req) {
			*rp = req->shadow;
			return;
		}
	}
}

uint64_t request_inflight(void)
{
	return inflight;
}

int request_status_from_errno(int err)
{
	switch (err) {
	case 0:
		return PV_ST_OK;
	case ENOSPC:
	case EDQUOT:
		return PV_ST_NO_SPACE;
	case EINVAL:
		return PV_ST_BAD_REQUEST;
	default:
		return PV_ST_IO_ERROR;
	}
}

static void free_buf(void *data, void *hint)
{
	free(data);
}

static void request_free(struct request *req)
{
	if (req->client_id && req->hops == 0)
		inflight_remove(req);
	if (req->has_data)
		zmq_msg_close(&req->data);
	if (req->has_reply)
		zmq_msg_close(&req->reply);
	if (!req->shm)
		free(req->buf);
	shm_put(req->shm);
	volume_put(&req->vol);
	free(req);
	inflight--;
}

static void request_finish(struct request *req)
{
	Pv__Header r;
	zmq_msg_t out;
	int with_data =
	    req->op == PV_OP_READ && req->status == PV_ST_OK && req->length > 0 && !req->shm;

	reply_header(&r, req->op, req->req_id, req->status);
	if (req->shm)
		r.flags = PV_F_SHM; /* a READ's data is in the client's memory */
	if (req->shm_lost)
		r.flags |= PV_F_SHM_LOST;
	r.volume = req->vol->name;
	r.offset = req->offset;
	r.length = req->length;
	if (req->status != PV_ST_OK)
		r.message = req->message;
	if (req->status == PV_ST_MOVED) {
		r.new_owner = req->moved_to;
		r.epoch = req->moved_epoch;
	}
	if (with_data && req->has_reply) {
		zmq_msg_init(&out);
		zmq_msg_move(&out, &req->reply);
	} else if (with_data) {
		if (zmq_msg_init_data(&out, req->buf, req->length, free_buf, NULL) < 0) {
			pv_err("volume %s: cannot build reply: %m", req->vol->name);
			request_free(req);
			return;
		}
		req->buf = NULL; /* now owned by the message */
	}
	load_done(req->op, req->hops ? 0 : req->client_id, req->offset, req->length, req->start_us);
	if (reply_send(&req->from, &r, with_data ? &out : NULL,
		       req->batch_reply && req->length < BATCH_IO_MAX) < 0)
		pv_debug("volume %s: reply %s req %llu not sent: %m", req->vol->name,
			 wire_op_name(req->op), (unsigned long long)req->req_id);
	request_free(req);
}

/* Marks one part done; the first error wins. */
static void part_done(struct request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void part_done(struct request *req, int status, const char *fmt, ...)
{
	if (status != PV_ST_OK && req->status == PV_ST_OK) {
		va_list ap;

		req->status = status;
		va_start(ap, fmt);
		vsnprintf(req->message, sizeof(req->message), fmt, ap);
		va_end(ap);
	}
	if (--req->pending == 0)
		request_finish(req);
}

/* A local job of [offset, +len); with m, on a page moving out (its pieces
 * first..last; counted: a write the copy of those pieces waits for). */
static void submit_local_mig(struct request *req, enum io_kind kind, uint64_t offset, uint64_t len,
			     uint64_t buf_off, struct mig_out *m, uint32_t first, uint32_t last,
			     int counted)
{
	struct io_job *job = calloc(1, sizeof(*job));

	req->pending++;
	if (!job) {
		part_done(req, PV_ST_IO_ERROR, "out of memory");
		return;
	}
	job->kind = kind;
	job->fd = req->vol->fd;
	job->offset = offset;
	job->length = len;
	job->fua = (req->flags & PV_F_FUA) != 0;
	job->req = req;
	if (kind == IO_READ)
		job->ptr = req->buf + buf_off;
	else if (kind == IO_WRITE)
		job->ptr = (uint8_t *)zmq_msg_data(&req->data) + buf_off;
	if (m)
		migrate_job_begin(job, m, first, last, counted);
	load_part(req->vol, req->op, offset, len, req->client_id);
	job->snap_id = req->snap_id;
	job->stamp = req->stamp;
	if ((kind == IO_WRITE || kind == IO_TRIM) && snap_write_gate(job))
		return; /* held by a snapshot's hold, or preserving chunks first */
	request_job_go(job);
}

void request_job_go(struct io_job *job)
{
	if (store_try_inline(job))
		request_io_done(job); /* a page cache hit: no thread hand-off */
	else
		worker_submit(job);
}

static void submit_local(struct request *req, enum io_kind kind, uint64_t offset, uint64_t len,
			 uint64_t buf_off)
{
	submit_local_mig(req, kind, offset, len, buf_off, NULL, 0, 0, 0);
}

void request_io_done(struct io_job *job)
{
	struct request *req = job->req;

	migrate_job_end(job);		/* a job on a page moving out: the move may go on */
	snap_write_done(job);		/* a hold may be waiting for it */
	store_note_done(req->vol, job); /* logs a failure (once a minute per volume) */
	if (job->err == SNAP_ERESTAMP) {
		snap_restamp_clock(req->vol);
		part_done(req, PV_ST_RESTAMP,
			  "volume %s: %s stamped before the cut of a snapshot reached data written "
			  "after it on server %u: stamp it again",
			  req->vol->name, wire_op_name(req->op), srv->cfg.id);
	} else if (job->err == SNAP_EMOVING) {
		part_done(
		    req, PV_ST_BUSY,
		    "volume %s: a snapshot waits on server %u for this page's move; try again",
		    req->vol->name, srv->cfg.id);
	} else if (job->err) {
		part_done(req, request_status_from_errno(job->err), "%s on server %u: %s",
			  wire_op_name(req->op), srv->cfg.id, strerror(job->err));
	} else {
		part_done(req, PV_ST_OK, "%s", "");
	}
	free(job);
}

void request_part_done(struct request *req, uint64_t buf_off, int status, uint32_t new_owner,
		       uint64_t epoch, zmq_msg_t *data, const char *message)
{
	if (status == PV_ST_OK && req->op == PV_OP_READ && data) {
		if (buf_off == 0 && zmq_msg_size(data) == req->length && !req->has_reply &&
		    !req->shm) {
			/* one owner answered the whole request: relay its message */
			zmq_msg_init(&req->reply);
			zmq_msg_move(&req->reply, data);
			req->has_reply = 1;
			free(req->buf);
			req->buf = NULL;
		} else {
			memcpy(req->buf + buf_off, zmq_msg_data(data), zmq_msg_size(data));
		}
	}
	if (status == PV_ST_MOVED) {
		req->moved_to = new_owner;
		req->moved_epoch = epoch;
	}
	part_done(req, status, "%s", message ? message : "");
}

/* A run of pages owned here, some of which may be moving out: pages not
 * moving go to local jobs (consecutive ones together), a moving page's
 * pieces go where migrate_route says (the seed's Table 2): here, to the
 * target (PV_F_MIG: it serves them, never routes them back; within the
 * hop limit or not, as the target never forwards them), or both (the
 * piece in transit's writes). */
static void start_owned_run(struct request *req, enum io_kind kind, const struct pv_span *s)
{
	struct volume *vol = req->vol;
	uint64_t pos = s->offset, end = s->offset + s->length;
	uint64_t plain = pos; /* start of the pending run of pages not moving */

	while (pos < end) {
		uint64_t page = pos / vol->page_size;
		uint64_t page_end = (page + 1) * vol->page_size;
		struct mig_out *m = migrate_out_of(vol, page);

		if (page_end > end)
			page_end = end;
		if (!m) {
			pos = page_end;
			continue;
		}
		if (plain < pos)
			submit_local(req, kind, plain, pos - plain,
				     s->buf_off + (plain - s->offset));
		while (pos < page_end) {
			enum mig_route route;
			uint64_t run;
			uint32_t first, last;
			uint64_t buf_off = s->buf_off + (pos - s->offset);

			migrate_part(m, pos, page_end - pos, req->op, &route, &run, &first, &last);
			if (route != MIG_ROUTE_TARGET)
				/* here; a write begun while its pieces are at this
				 * server only is one their copy waits for */
				submit_local_mig(req, kind, pos, run, buf_off, m, first, last,
						 route == MIG_ROUTE_LOCAL && kind != IO_READ);
			if (route != MIG_ROUTE_LOCAL) {
				req->pending++;
				if (forward_part(req, migrate_target(m), pos, run, buf_off,
						 PV_F_MIG) < 0)
					part_done(req, PV_ST_UNAVAILABLE,
						  "volume %s page %llu is moving to server %u, "
						  "which is not reachable",
						  vol->name, (unsigned long long)page,
						  migrate_target(m));
			}
			pos += run;
		}
		plain = pos;
	}
	if (plain < end)
		submit_local(req, kind, plain, end - plain, s->buf_off + (plain - s->offset));
}

/* A PV_F_MIG request: the source of a move sends this server (its target)
 * a part of the page to serve here. */
static void start_for_source(struct request *req, enum io_kind kind)
{
	req->pending = 1;
	if (migrate_target_accepts(req->vol, req->op, req->offset, req->length, req->from_server)) {
		submit_local(req, kind, req->offset, req->length, 0);
	} else {
		req->pending++;
		part_done(req, PV_ST_UNAVAILABLE,
			  "server %u has no move of volume %s page %llu from server %u",
			  srv->cfg.id, req->vol->name,
			  (unsigned long long)(req->offset / req->vol->page_size),
			  req->from_server);
	}
	part_done(req, PV_ST_OK, "%s", "");
}

/* Splits a READ/WRITE/TRIM into runs by owner (pv_span_at): consecutive
 * local pages become one job, each remote page one forwarded part; a remote
 * page past the hop limit is answered MOVED. */
static void start_ranged(struct request *req)
{
	struct volume *vol = req->vol;
	enum io_kind kind = req->op == PV_OP_READ    ? IO_READ
			    : req->op == PV_OP_WRITE ? IO_WRITE
						     : IO_TRIM;
	struct pv_span s;
	char lost[300];

	if (req->flags & PV_F_MIG) {
		start_for_source(req, kind);
		return;
	}
	/* hold one pending count while parts are being issued */
	req->pending = 1;
	for (uint64_t pos = 0; pos < req->length; pos += s.length) {
		s = pv_span_at(vol->owner, vol->page_size, req->offset, req->length, pos,
			       srv->cfg.id);
		if (s.owner == srv->cfg.id && vol->migrating) {
			start_owned_run(req, kind, &s);
		} else if (s.owner == srv->cfg.id) {
			submit_local(req, kind, s.offset, s.length, s.buf_off);
		} else if (remove_lost_page(s.owner, lost, sizeof(lost))) {
			req->pending++;
			part_done(req, PV_ST_IO_ERROR, "volume %s page %llu is lost: %s", vol->name,
				  (unsigned long long)s.page, lost);
		} else if (req->hops >= PV_MAX_HOPS) {
			req->pending++;
			req->moved_to = s.owner;
			req->moved_epoch = vol->epoch[s.page];
			part_done(req, PV_ST_MOVED,
				  "volume %s page %llu is owned by server %u (hop limit reached)",
				  vol->name, (unsigned long long)s.page, s.owner);
		} else {
			req->pending++;
			if (forward_part(req, s.owner, s.offset, s.length, s.buf_off, 0) < 0)
				part_done(req, PV_ST_UNAVAILABLE,
					  "volume %s page %llu: owner server %u is not reachable",
					  vol->name, (unsigned long long)s.page, s.owner);
		}
	}
	part_done(req, PV_ST_OK, "%s", "");
}

static void start_flush(struct request *req)
{
	uint32_t holders[PEERD_MAX_MEMBERS], targets[PEERD_MAX_MEMBERS];
	size_t n = catalog_holders(req->vol, holders, PEERD_MAX_MEMBERS);
	size_t nt = req->vol->migrating && !(req->flags & PV_F_MIG)
			? migrate_flush_targets(req->vol, targets, PEERD_MAX_MEMBERS)
			: 0;

	req->pending = 1;
	submit_local(req, IO_FLUSH, 0, 0, 0);
	/* pages moving out of here have pieces at their targets only: the
	 * FLUSH reaches them whoever sent it (they do not pass it on) */
	for (size_t i = 0; i < nt; i++) {
		req->pending++;
		if (forward_part(req, targets[i], 0, 0, 0, PV_F_MIG) < 0)
			part_done(req, PV_ST_UNAVAILABLE,
				  "volume %s: FLUSH cannot reach server %u (a page moves to it)",
				  req->vol->name, targets[i]);
	}
	if (req->hops == 0) {
		for (size_t i = 0; i < n; i++) {
			if (holders[i] == srv->cfg.id || remove_record(holders[i]))
				continue; /* a server gone: nothing of it to flush */
			req->pending++;
			if (forward_part(req, holders[i], 0, 0, 0, 0) < 0)
				part_done(req, PV_ST_UNAVAILABLE,
					  "volume %s: FLUSH cannot reach server %u", req->vol->name,
					  holders[i]);
		}
	}
	part_done(req, PV_ST_OK, "%s", "");
}

int request_check_frame(const Pv__Header *h, int has_data, uint64_t data_len, uint64_t *length,
			char *msg, size_t msglen)
{
	*length = h->length;
	if (h->flags & PV_F_SHM) {
		if ((h->op != PV_OP_READ && h->op != PV_OP_WRITE) || h->hops > 1 || !h->client_id ||
		    has_data) {
			snprintf(msg, msglen,
				 "shared memory only carries a client's READ or WRITE, without "
				 "a data frame");
			return PV_ST_BAD_REQUEST;
		}
		if (h->length > PV_MAX_IO) {
			snprintf(msg, msglen, "%s of %u bytes over the maximum %u",
				 wire_op_name(h->op), h->length, PV_MAX_IO);
			return PV_ST_BAD_REQUEST;
		}
	} else if (h->op == PV_OP_WRITE) {
		if (!has_data) {
			snprintf(msg, msglen, "WRITE without a data frame");
			return PV_ST_BAD_REQUEST;
		}
		*length = data_len;
		if (h->length && h->length != data_len) {
			snprintf(msg, msglen, "WRITE length %u but data frame of %llu bytes",
				 h->length, (unsigned long long)data_len);
			return PV_ST_BAD_REQUEST;
		}
		if (data_len > PV_MAX_IO) {
			snprintf(msg, msglen, "WRITE of %llu bytes over the maximum %u",
				 (unsigned long long)data_len, PV_MAX_IO);
			return PV_ST_BAD_REQUEST;
		}
	} else if (has_data) {
		snprintf(msg, msglen, "%s takes no data frame", wire_op_name(h->op));
		return PV_ST_BAD_REQUEST;
	}
	return PV_ST_OK;
}

int request_check_range(const Pv__Header *h, uint64_t length, const char *volume,
			uint64_t volume_size, char *msg, size_t msglen)
{
	if (h->op != PV_OP_FLUSH && (h->offset > volume_size || length > volume_size - h->offset)) {
		snprintf(msg, msglen, "%s at %llu+%llu is past the end of volume %s (%llu bytes)",
			 wire_op_name(h->op), (unsigned long long)h->offset,
			 (unsigned long long)length, volume, (unsigned long long)volume_size);
		return PV_ST_OUT_OF_RANGE;
	}
	return PV_ST_OK;
}

/* A PV_F_SHM request that request_check_frame passed: the client's region
 * and the address of its data there, or NULL after replying. */
static struct shm_region *shm_check(const struct origin *from, const Pv__Header *h, uint8_t **where)
{
	struct shm_region *r = shm_get(h->client_id, from);

	if (!r) {
		reply_status(from, h, PV_ST_NO_SHM,
			     "no shared memory of client %016llx is mapped on server %u for "
			     "this connection",
			     (unsigned long long)h->client_id, srv->cfg.id);
		return NULL;
	}
	if (shm_via_peer(r) != (h->hops == 1)) {
		/* a client's own offer serves its requests, a peer's offer the
		 * parts that peer forwards, and nothing else */
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "shared memory offered %s used by a request with hops %u",
			     shm_via_peer(r) ? "by a peer" : "by the client", h->hops);
		shm_put(r);
		return NULL;
	}
	*where = shm_ptr(r, h->shm_offset, h->length);
	if (!*where) {
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "shared memory range %llu+%u outside the client's region",
			     (unsigned long long)h->shm_offset, h->length);
		shm_put(r);
		return NULL;
	}
	return r;
}

/* A client's READ it can copy out of its own read-only mapping of the
 * volume's data file (PV_F_MAP, the file named by map_dev and map_ino): every
 * byte is on this server and in memory now. Such a READ costs this server no
 * copy: the answer carries no data. A byte that is not (a hole, a page of
 * another server, a page a disk must read) takes the ordinary path. */
static int read_mappable(const struct volume *vol, const Pv__Header *h)
{
	if (!(h->flags & PV_F_MAP) || h->op != PV_OP_READ || h->hops || !h->client_id ||
	    h->snapshot_id || /* the mapping is of the volume, not of its snapshots */
	    vol->fd < 0 || h->map_ino != vol->ino || h->map_dev != vol->dev ||
	    !pv_range_owned(vol->owner, vol->npages, vol->page_size, h->offset, h->length,
			    srv->cfg.id) ||
	    migrate_touches(vol, h->offset, h->length)) /* pieces may be at the target */
		return 0;
	return store_resident(vol, h->offset, h->length);
}

static void reply_mapped(const struct origin *from, const Pv__Header *h, const struct volume *vol,
			 uint64_t start_us)
{
	Pv__Header r;

	reply_header(&r, PV_OP_READ, h->req_id, PV_ST_OK);
	/* the client's slot (PV_F_SHM), if it lent one, was not touched */
	r.flags = PV_F_MAP | (h->flags & PV_F_SHM);
	r.map_dev = h->map_dev; /* the file the client copies from */
	r.map_ino = h->map_ino;
	r.volume = (char *)vol->name;
	r.offset = h->offset;
	r.length = h->length;
	reads_mapped++;
	/* served here as surely as a copy would be: the page is ours */
	load_part(vol, PV_OP_READ, h->offset, h->length, h->client_id);
	load_done(PV_OP_READ, h->client_id, h->offset, h->length, start_us);
	if (reply_send(from, &r, NULL, batch_supported(h->version)) < 0)
		pv_debug("volume %s: mapped READ reply req %llu not sent: %m", vol->name,
			 (unsigned long long)h->req_id);
}

uint64_t request_reads_mapped(void)
{
	return reads_mapped;
}

int request_volume_matches(const struct origin *from, const Pv__Header *h, const struct volume *vol)
{
	/* ids are never reused and grow: a larger id is a volume this server
	 * has not learnt of yet (its catalog lags the client's), a smaller one
	 * a volume deleted since the client opened it */
	if (!h->volume_id || h->volume_id == vol->id)
		return 1;
	if (h->volume_id > vol->id) {
		reply_busy(from, h, PEERD_CATALOG_LAG_RETRY_MS,
			   "volume %s id %llu is newer than server %u knows (id %llu); "
			   "its catalog is catching up",
			   vol->name, (unsigned long long)h->volume_id, srv->cfg.id,
			   (unsigned long long)vol->id);
		return 0;
	}
	pv_info("volume %s: refused %s from a stale handle of deleted volume id %llu (volume "
		"%s is now id %llu)",
		vol->name, wire_op_name(h->op), (unsigned long long)h->volume_id, vol->name,
		(unsigned long long)vol->id);
	reply_status(from, h, PV_ST_NO_VOLUME,
		     "volume %s id %llu was deleted (the volume of that name now is id "
		     "%llu): close and reopen it",
		     vol->name, (unsigned long long)h->volume_id, (unsigned long long)vol->id);
	return 0;
}

/* Where a request that passed validate gets its data. */
struct checked {
	struct volume *vol;
	uint64_t length;	/* of a WRITE, its data frame's */
	struct shm_region *shm; /* PV_F_SHM: a reference on the client's region */
	uint8_t *shm_data;	/* ... and its data there */
	uint64_t done_below;	/* the client's low-water mark, the largest known */
};

/* A late copy: a client's WRITE or TRIM that the client was answered for
 * already (its request id is below the client's low-water mark). A server
 * that stalled with a copy in its socket wakes and sends it on after the
 * client re-sent the request elsewhere, was answered, and wrote newer data
 * to the same blocks: applied, it would overwrite them. Records the mark
 * the request carries (one hash lookup; WRITE, TRIM and FLUSH, never READ)
 * and puts the largest known in c->done_below. Returns 1 after refusing,
 * else 0. Nothing of the request's data (frame or shared memory) has been
 * touched yet. */
static int late_copy(const struct origin *from, const Pv__Header *h, struct checked *c)
{
	/* a forwarded part's req_id is its forwarder's */
	uint64_t client_req = h->hops ? h->client_req_id : h->req_id;
	uint64_t now;

	c->done_below = h->client_done_below;
	if (!h->client_id || h->op == PV_OP_READ)
		return 0;
	now = pv_now_ms();
	c->done_below = clients_done_below(h->client_id, h->client_done_below, now);
	if (h->op == PV_OP_FLUSH || !clients_is_late(client_req, c->done_below))
		return 0;
	if (now - late_logged_ms >= 1000) {
		char via[48] = "", more[64] = "";

		if (h->hops)
			snprintf(via, sizeof(via), ", forwarded by server %u", h->server_id);
		if (late_unlogged)
			snprintf(more, sizeof(more), " (%u more refused since the last line)",
				 late_unlogged);
		pv_info("volume %s: refused a late copy of %s req %llu of client %016llx at "
			"%llu+%llu%s: the client was answered for it (its requests below %llu "
			"are done); not applied%s",
			c->vol->name, wire_op_name(h->op), (unsigned long long)client_req,
			(unsigned long long)h->client_id, (unsigned long long)h->offset,
			(unsigned long long)c->length, via, (unsigned long long)c->done_below,
			more);
		late_logged_ms = now;
		late_unlogged = 0;
	} else {
		late_unlogged++;
	}
	reply_status(from, h, PV_ST_REFUSED,
		     "late copy of request %llu of client %016llx: the client was answered "
		     "already; not applied",
		     (unsigned long long)client_req, (unsigned long long)h->client_id);
	return 1;
}

/* Checks a data request before anything is done: its volume, the volume's
 * id, its frames, its shared memory, its range, the data file, and that it
 * is not a late copy. Returns 0, or -1 after replying (c->shm is then
 * NULL). */
static int validate(const struct origin *from, const Pv__Header *h, const zmq_msg_t *data,
		    struct checked *c)
{
	char msg[PV_MAX_MESSAGE];
	int st;

	c->vol = catalog_volume(h->volume);
	c->shm = NULL;
	if (!c->vol) {
		reply_status(from, h, PV_ST_NO_VOLUME, "no volume '%s'", h->volume);
		return -1;
	}
	if (!request_volume_matches(from, h, c->vol))
		return -1;
	if ((h->flags & (PV_F_MIG | PV_F_MIG_COPY)) &&
	    (!h->hops || h->server_id == srv->cfg.id || !catalog_member(h->server_id) ||
	     (h->flags & PV_F_SHM && h->flags & PV_F_MIG_COPY) ||
	     ((h->flags & PV_F_MIG_COPY) && h->op != PV_OP_WRITE && h->op != PV_OP_TRIM))) {
		reply_status(from, h, PV_ST_BAD_REQUEST,
			     "migration flags are for a page's source, a member, only");
		return -1;
	}
	st = request_check_frame(h, data != NULL, data ? zmq_msg_size(data) : 0, &c->length, msg,
				 sizeof(msg));
	if (st == PV_ST_OK && (h->flags & PV_F_SHM) && !(c->shm = shm_check(from, h, &c->shm_data)))
		return -1;
	if (st == PV_ST_OK && h->snapshot_id && h->op != PV_OP_READ) {
		st = PV_ST_BAD_REQUEST;
		snprintf(msg, sizeof(msg), "a snapshot of volume %s is read-only: %s refused",
			 c->vol->name, wire_op_name(h->op));
	} else if (st == PV_ST_OK && h->snapshot_id && snap_known(c->vol, h->snapshot_id) < 0) {
		reply_busy(from, h, 100,
			   "server %u has not installed snapshot %llu of volume %s yet",
			   srv->cfg.id, (unsigned long long)h->snapshot_id, c->vol->name);
		shm_put(c->shm);
		c->shm = NULL;
		return -1;
	} else if (st == PV_ST_OK && h->snapshot_id && !snap_known(c->vol, h->snapshot_id)) {
		st = PV_ST_NO_VOLUME;
		snprintf(msg, sizeof(msg), "volume %s has no snapshot of id %llu on server %u",
			 c->vol->name, (unsigned long long)h->snapshot_id, srv->cfg.id);
	}
	if (st == PV_ST_OK)
		st =
		    request_check_range(h, c->length, c->vol->name, c->vol->size, msg, sizeof(msg));
	if (st == PV_ST_OK && c->vol->fd < 0 && store_open(c->vol) < 0) {
		st = PV_ST_IO_ERROR;
		snprintf(msg, sizeof(msg), "volume %s: data file cannot be opened on server %u",
			 c->vol->name, srv->cfg.id);
	}
	if (st == PV_ST_OK && !late_copy(from, h, c))
		return 0;
	if (st != PV_ST_OK)
		reply_status(from, h, st, "%s", msg);
	shm_put(c->shm);
	c->shm = NULL;
	return -1;
}

/* A client's copy of a request still running here (sent again on a new
 * connection): joins it and returns 1 (the reply goes to the connection
 * the client sent on last), else 0. Only requests straight from a client:
 * forwarded parts carry the forwarding server's request ids. */
static int join_running(const struct origin *from, const Pv__Header *h, const struct checked *c)
{
	struct request *req;

	if (!h->client_id || h->hops != 0 || !(req = inflight_find(h->client_id, h->req_id)) ||
	    req->op != h->op || req->offset != h->offset ||
	    /* a READ's reply must carry its data the way this copy asks */
	    (h->op != PV_OP_WRITE && !req->shm != !c->shm))
		return 0;
	/* copies may arrive in any order (one per connection): the answer
	 * goes to the one the client sent last (its clock in timestamp),
	 * never back to an older connection */
	if (h->timestamp >= req->sent_ts) {
		req->from = *from;
		req->sent_ts = h->timestamp;
		req->batch_reply = batch_supported(h->version);
	}
	pv_debug("volume %s: %s req %llu of client %016llx sent again while running; "
		 "answering the %s copy",
		 c->vol->name, wire_op_name(h->op), (unsigned long long)h->req_id,
		 (unsigned long long)h->client_id,
		 req->sent_ts == h->timestamp ? "newer" : "earlier");
	return 1;
}

/* A request for a checked header; takes c's shm reference and *data (moved)
 * when it returns one. NULL without memory (nothing taken). */
static struct request *request_new(const struct origin *from, const Pv__Header *h,
				   struct checked *c, zmq_msg_t *data)
{
	struct request *req = calloc(1, sizeof(*req));

	if (!req)
		return NULL;
	inflight++;
	req->op = h->op;
	req->req_id = h->req_id;
	req->offset = h->offset;
	req->length = h->op == PV_OP_FLUSH ? 0 : c->length;
	req->flags = h->flags;
	req->hops = h->hops;
	req->client_id = h->client_id;
	req->client_req = h->hops ? h->client_req_id : h->req_id;
	req->client_done_below = c->done_below;
	req->from_server = h->server_id;
	req->sent_ts = h->timestamp;
	req->snap_id = h->snapshot_id;
	/* a write's stamp is its client's; one that came without is stamped
	 * where it entered the group */
	req->stamp = h->stamp;
	if (!req->stamp && h->hops == 0 && (h->op == PV_OP_WRITE || h->op == PV_OP_TRIM))
		req->stamp = wire_hlc_now();
	req->batch_reply = batch_supported(h->version);
	volume_get(c->vol);
	req->vol = c->vol;
	req->from = *from;
	if (req->client_id && req->hops == 0)
		inflight_add(req);
	req->shm = c->shm;
	req->shm_offset = h->shm_offset;
	c->shm = NULL; /* the request holds the reference now */
	if (data) {
		zmq_msg_init(&req->data);
		zmq_msg_move(&req->data, data);
		req->has_data = 1;
	} else if (req->shm && req->op == PV_OP_WRITE) {
		/* the client's memory as a message that frees nothing */
		zmq_msg_init_data(&req->data, c->shm_data, c->length, NULL, NULL);
		req->has_data = 1;
	}
	return req;
}

void request_start(const struct origin *from, const Pv__Header *h, zmq_msg_t *data)
{
	uint64_t start_us = load_enabled ? load_now_us() : 0;
	struct checked c;
	struct request *req;

	if (validate(from, h, data, &c) < 0 || join_running(from, h, &c))
		goto drop;
	if (h->flags & PV_F_MIG_COPY) {
		migrate_copy_in(from, h, c.vol, c.length, data); /* takes data */
		return;
	}
	if (read_mappable(c.vol, h)) {
		reply_mapped(from, h, c.vol, start_us);
		goto drop;
	}
	req = request_new(from, h, &c, data);
	if (!req) {
		reply_status(from, h, PV_ST_BUSY, "server out of memory");
		goto drop;
	}
	req->start_us = start_us;
	if (req->shm && req->op == PV_OP_READ) {
		req->buf = c.shm_data;
	} else if (req->op == PV_OP_READ && req->length) {
		req->buf = malloc(req->length);
		if (!req->buf) {
			reply_status(from, h, PV_ST_BUSY, "server out of memory");
			request_free(req);
			return;
		}
	}
	if (req->op == PV_OP_FLUSH)
		start_flush(req);
	else
		start_ranged(req);
	return;
drop:
	shm_put(c.shm);
	if (data)
		zmq_msg_close(data);
}
