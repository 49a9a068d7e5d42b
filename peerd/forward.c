/* forward.c: sends request parts to the servers that own their pages and
 * gathers the answers. Each part gets its own request id on the peer
 * connection; a table maps it back to the request. A part with no answer
 * within PEERD_FWD_TIMEOUT_MS is failed UNAVAILABLE (the client retries).
 * Reactor thread only; never touches the disk. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct fwd {
	UT_hash_handle hh; /* table by id (uthash) */
	struct fwd *older; /* age list */
	struct fwd *newer;
	uint64_t id;
	struct request *req;
	uint32_t owner;
	uint64_t offset;
	uint64_t length;
	uint64_t buf_off;
	uint64_t sent_ms;
	int shm;      /* sent as an offset in the client's shared memory */
	int via_link; /* sent on the owner's peer link (linkset.c) */
};

static struct fwd *table;
static struct fwd *oldest, *newest;
static uint64_t count;

uint64_t forward_inflight(void)
{
	return count;
}

/* Puts f in the table and at the young end of the age list. Returns 0, or
 * -1 without memory for the table (f is in neither). */
static int link_fwd(struct fwd *f)
{
	HASH_ADD(hh, table, id, sizeof(f->id), f);
	if (!f->hh.tbl)
		return -1;
	f->older = newest;
	f->newer = NULL;
	if (newest)
		newest->newer = f;
	else
		oldest = f;
	newest = f;
	count++;
	return 0;
}

static struct fwd *unlink_fwd(uint64_t id)
{
	struct fwd *f;

	HASH_FIND(hh, table, &id, sizeof(id), f);
	if (!f)
		return NULL;
	HASH_DELETE(hh, table, f);
	if (f->older)
		f->older->newer = f->newer;
	else
		oldest = f->newer;
	if (f->newer)
		f->newer->older = f->older;
	else
		newest = f->older;
	count--;
	return f;
}

int forward_part(struct request *req, uint32_t owner, uint64_t offset, uint64_t len,
		 uint64_t buf_off, uint32_t flags)
{
	struct member *m = catalog_member(owner);
	struct fwd *f;
	Pv__Header h;
	zmq_msg_t payload;
	int with_data = req->op == PV_OP_WRITE;

	if (!m || (!m->sock && !peers_via_link(m)))
		return -1;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	load_forwarded(req->op, len);
	wire_header_init(&h);
	h.op = req->op;
	h.req_id = peers_next_id();
	h.volume = req->vol->name;
	h.volume_id = req->vol->id; /* the owner refuses a volume recreated meanwhile */
	h.offset = offset;
	h.length = (uint32_t)len;
	h.flags = (req->flags & ~(PV_F_SHM | PV_F_MIG | PV_F_MIG_COPY)) | flags;
	h.hops = req->hops + 1;
	h.client_id = req->client_id;
	/* the owner refuses a late copy by the client's ids, not ours */
	h.client_req_id = req->client_req;
	h.client_done_below = req->client_done_below;
	h.snapshot_id = req->snap_id;
	h.stamp = req->stamp;
	if (req->op != PV_OP_FLUSH)
		h.epoch = req->vol->epoch[offset / req->vol->page_size];
	if (req->shm && req->hops == 0 && (req->op == PV_OP_READ || req->op == PV_OP_WRITE) &&
	    shm_peer_usable(req->shm, m)) {
		/* the owner is on this host and mapped the client's memory too */
		h.flags |= PV_F_SHM;
		h.shm_offset = req->shm_offset + buf_off;
		f->shm = 1;
		with_data = 0;
	}
	if (with_data && buf_off == 0 && len == zmq_msg_size(&req->data) && !req->shm) {
		/* the whole write goes to one owner: share the received buffer
		 * (ZeroMQ counts its references; no copy) */
		zmq_msg_init(&payload);
		zmq_msg_copy(&payload, &req->data);
	} else if (with_data) {
		/* a slice, or data in a client's shared memory: one copy, the
		 * part must outlive the request on the peer's queue */
		if (zmq_msg_init_size(&payload, len) < 0) {
			free(f);
			return -1;
		}
		memcpy(zmq_msg_data(&payload), (uint8_t *)zmq_msg_data(&req->data) + buf_off, len);
	}
	f->via_link = peers_via_link(m);
	if (reply_send_member(m, &h, with_data ? &payload : NULL, NULL) < 0) {
		pv_debug("volume %s: part at %llu for server %u not sent: %m", req->vol->name,
			 (unsigned long long)offset, owner);
		free(f);
		return -1;
	}
	f->id = h.req_id;
	f->req = req;
	f->owner = owner;
	f->offset = offset;
	f->length = len;
	f->buf_off = buf_off;
	f->sent_ms = pv_now_ms();
	if (link_fwd(f) < 0) {
		/* sent, but its answer could not be matched: failed now like a
		 * part without an answer (the owner may still use the memory) */
		pv_err("volume %s: out of memory for a part sent to server %u", req->vol->name,
		       owner);
		req->shm_lost |= f->shm;
		free(f);
		return -1;
	}
	return 0;
}

int forward_reply(struct member *m, const Pv__Header *h, zmq_msg_t *data)
{
	struct fwd *f = unlink_fwd(h->req_id);
	int status = h->status;
	zmq_msg_t *part = NULL;

	if (!f)
		return 0; /* late answer to a part already failed */
	if (f->shm && status == PV_ST_NO_SHM)
		shm_peer_forget(f->req->client_id, m->id); /* the client retries by socket */
	if (status == PV_ST_OK && f->req->op == PV_OP_READ && f->shm && !data &&
	    (h->flags & PV_F_SHM)) {
		/* the owner put the data into the client's memory */
	} else if (status == PV_ST_OK && f->req->op == PV_OP_READ) {
		if (!data || zmq_msg_size(data) != f->length) {
			pv_warn("volume %s: server %u answered READ at %llu with %zu bytes instead "
				"of %llu",
				f->req->vol->name, m->id, (unsigned long long)f->offset,
				data ? zmq_msg_size(data) : 0, (unsigned long long)f->length);
			status = PV_ST_IO_ERROR;
		} else {
			part = data;
		}
	}
	if (status == PV_ST_MOVED && h->new_owner && catalog_member(h->new_owner)) {
		/* a newer routing entry (merged by epoch); the client's retry
		 * goes to the owner. One naming this server is not taken
		 * (migrate_route_learn): ownership of a page comes here only by
		 * the migration handshake, never by hearsay. */
		struct volume *vol = f->req->vol;

		migrate_route_learn(vol, f->offset / vol->page_size, h->new_owner, h->epoch);
	}
	request_part_done(f->req, f->buf_off, status, h->new_owner, h->epoch, part, h->message);
	free(f);
	return 1;
}

size_t forward_fail_unsent(void)
{
	struct batch_drop d;
	size_t n = 0;

	while (batch_cork_next_drop(srv->cork, &d)) {
		struct fwd *f;

		/* a reply the ROUTER refused: the client asks again after its
		 * timeout; a part to a peer fails now */
		if (d.sock == srv->router || d.hops == 0 || !(f = unlink_fwd(d.req_id)))
			continue;
		pv_debug("volume %s: part at %llu for server %u not sent", f->req->vol->name,
			 (unsigned long long)f->offset, f->owner);
		/* never sent: the client's memory was not touched (no shm_lost) */
		request_part_done(f->req, f->buf_off, PV_ST_UNAVAILABLE, 0, 0, NULL,
				  "owner not reachable");
		free(f);
		n++;
	}
	return n;
}

void forward_tick(void *arg)
{
	uint64_t now = pv_now_ms();
	struct member *m;

	while (oldest && oldest->sent_ms < now && now - oldest->sent_ms > PEERD_FWD_TIMEOUT_MS) {
		struct fwd *f = unlink_fwd(oldest->id);

		pv_warn("volume %s: no answer from server %u for %s at %llu within %d s; the "
			"client will retry",
			f->req->vol->name, f->owner, wire_op_name(f->req->op),
			(unsigned long long)f->offset, PEERD_FWD_TIMEOUT_MS / 1000);
		f->req->shm_lost |= f->shm;
		request_part_done(f->req, f->buf_off, PV_ST_UNAVAILABLE, 0, 0, NULL,
				  "owner did not answer in time");
		if (f->via_link && (m = catalog_member(f->owner)) && m->link_up)
			/* connected but silent (e.g. its side never took the
			 * connection): ZeroMQ until a new link works */
			linkset_member_drop(m, "no answer on it within 5 s");
		free(f);
	}
}

void forward_link_lost(uint32_t member)
{
	struct fwd *f = oldest;

	while (f) {
		struct fwd *next = f->newer;

		if (f->owner == member && f->via_link) {
			unlink_fwd(f->id);
			/* it may have been done, or be done still: memory the owner
			 * may write is not reused (shm_lost) */
			f->req->shm_lost |= f->shm;
			request_part_done(f->req, f->buf_off, PV_ST_UNAVAILABLE, 0, 0, NULL,
					  "link to the owner closed");
			free(f);
		}
		f = next;
	}
}

void forward_abort_all(void)
{
	while (oldest) {
		struct fwd *f = unlink_fwd(oldest->id);

		f->req->shm_lost |= f->shm;
		request_part_done(f->req, f->buf_off, PV_ST_UNAVAILABLE, 0, 0, NULL,
				  "server stopping");
		free(f);
	}
}
