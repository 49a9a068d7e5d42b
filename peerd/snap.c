/* snap.c: coordinated snapshots (docs/architecture.md, "Snapshots"; the
 * seed's FIG. 12 hold mode).
 *
 * Copy-on-write by chunk, on each server for the pages it owns. A volume's
 * snapshots here are a list, oldest first, each with a chunk map (snapmap.c)
 * and a sparse file DATA/snaps/VOLID/SNAPID.snap the volume's size, where a
 * preserved chunk sits at its own offset. The first WRITE or TRIM to a chunk
 * after the newest snapshot's cut copies the chunk there, makes it durable
 * (fdatasync, then its key in LMDB "snap_chunks") and only then writes the
 * volume. A chunk that is a hole in the volume is preserved as a hole (its
 * key only). A snapshot's image is read chunk by chunk from the first
 * snapshot from it on that holds the chunk, else from the volume.
 *
 * Threads: the list, the maps and the files change under vs->mu, held by
 * IO workers over their disk work (preserve, read an image, cut, drop). The
 * reactor never waits for it: it only trylocks it to see whether a write
 * needs no copy (its chunks are preserved already); when it cannot tell, the
 * write goes to a worker, which looks under the lock. A snapshot read holds
 * the lock while it reads, so no chunk it reads from the volume is
 * overwritten before it is preserved.
 *
 * Hold mode (coordinator: the server that got the command):
 *
 *   coordinator                         every member
 *   --SNAP_HOLD(id)------------------>  hold new local WRITE/TRIM jobs of the
 *                                       volume, wait for those running, cut:
 *                                       the new snapshot (pending, recorded
 *                                       in LMDB) becomes the newest
 *   <------------------------------OK-  (no answer by the timeout: it
 *                                       releases by itself and drops the cut)
 *   all OK: --SNAP_RELEASE(commit)--->  still held: release, OK; else REFUSED
 *   all OK: catalog change adding the snapshot (CAT_PREPARE is refused by a
 *   member without the pending cut), the snapshot exists when it commits
 *   any failure: --SNAP_RELEASE(abort)-> release, drop the cut
 *
 * A cut is consistent: every member cut while all were held, so a write
 * issued after another completed is never in a snapshot without it. Writes
 * are held for the two round trips plus the slowest drain, never longer
 * than the timeout. Dropping a snapshot (deleted, or a cut never committed)
 * hands each of its chunks to the next older snapshot if that one has no
 * copy of its own (it read the chunk through the one going away), in one
 * LMDB transaction after the copies are durable.
 *
 * A page that moves takes its chunks of every snapshot with it
 * (snap_page_export/import, sent by migrate.c before piece 0) once they are
 * all preserved in the newest snapshot, so no write copies one while it
 * moves; a hold waits for the moves of its volume under way
 * (migrate_volume_moving) and no move starts while a snapshot is made
 * (snap_stops_moves). docs/architecture.md, "Snapshots and page
 * migration". */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlc.h"
#include "peerd.h"

/* VOLID SNAPID CHUNK (hex) -> "1", or "m": preserved by a page move (same) */
#define SNAP_DB_CHUNKS	"snap_chunks"
#define SNAP_DB_PENDING "snap_pending" /* VOLID SNAPID (hex) -> "T name" */
#define SNAP_DB_ROLLBACK "snap_rollback" /* VOLID (hex) -> snapshot id: running */
#define SNAP_GC_MS	60000	       /* a cut not committed after this: dropped */
#define SNAP_TICK_MS	1000
#define SNAP_TS_AHEAD_MS 50 /* timestamp mode: the cut T is this far ahead */
#define SNAP_DIFF_TIMEOUT_MS 30000
#define SNAP_MOVES_POLL_MS   10 /* a hold waiting for moves looks again after this */

struct snap {
	struct snap_map map; /* first: &snap->map is in vs->maps */
	int fd;		     /* its file, -1 if it has none (a chunk map only) */
	int pending_rec;     /* loading: a pending record names it */
	uint64_t stamp;	     /* timestamp mode: the cut T; 0: hold mode */
	_Atomic uint64_t bytes;
};

/* Who waits for an answer: a peer (from, op, req_id), this server's own
 * coordinator (local 1) or nobody (local 2: a rollback resumed at start). */
struct answer {
	int local;
	struct origin from;
	uint32_t op;
	uint64_t req_id;
};

struct hold {
	struct hold *next;
	uint64_t gen;
	struct volume *vol;
	uint64_t snap_id;
	uint64_t stamp; /* timestamp mode: the cut T (the hold lasts only
			 * until the cut is made); 0: hold mode */
	char name[PV_MAX_NAME + 1];
	uint64_t start_ms;
	int cut_started, cut_done, answered, ended;
	struct answer ans;
};

struct vol_snaps {
	pthread_mutex_t mu;
	uint32_t chunk;
	uint64_t nchunks;
	struct snap *list[SNAP_MAX]; /* under mu, oldest first */
	struct snap_map *maps[SNAP_MAX];
	size_t n;
	/* reactor only: its view of the list (changed when a worker's cut or
	 * drop is done), the catalog's snapshot ids, writes in flight, the hold */
	uint64_t r_ids[SNAP_MAX];
	int r_pending[SNAP_MAX];
	int r_dropping[SNAP_MAX];
	uint64_t r_since_ms[SNAP_MAX];
	uint64_t r_stamp[SNAP_MAX]; /* the cut T (timestamp mode), or 0 */
	size_t r_n;
	uint64_t max_stamp; /* of the writes let through so far */
	uint64_t committed[SNAP_MAX];
	size_t ncommitted;
	uint64_t seq; /* VolumeInfo.snapshot_seq of our catalog */
	uint64_t writes;
	struct hold *hold;
	struct hold *waiting; /* a hold waiting for the moves of the volume's pages
			       * here to end before it holds (hold_begin) */
	struct io_job *held, **held_tail;
	uint64_t rollback_id; /* a rollback to this snapshot is to run or runs */
	int rollback_running;
};

static struct hold *holds;
static uint64_t hold_gen;

/* ---- paths and keys ---- */

static void snap_dir(const struct volume *v, char *buf, size_t len)
{
	snprintf(buf, len, "%s/snaps/%llu", srv->cfg.data_dir, (unsigned long long)v->id);
}

static void snap_path(const struct volume *v, uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/snaps/%llu/%llu.snap", srv->cfg.data_dir,
		 (unsigned long long)v->id, (unsigned long long)id);
}

static void chunk_key(char *key, uint64_t vol, uint64_t id, uint64_t chunk)
{
	snprintf(key, 48, "%010llx%010llx%012llx", (unsigned long long)vol,
		 (unsigned long long)id, (unsigned long long)chunk);
}

static void pending_key(char *key, uint64_t vol, uint64_t id)
{
	snprintf(key, 48, "%010llx%010llx", (unsigned long long)vol, (unsigned long long)id);
}

static int sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd) < 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- the list (under mu) ---- */

static long find_locked(struct vol_snaps *vs, uint64_t id)
{
	for (size_t i = 0; i < vs->n; i++)
		if (vs->list[i]->map.id == id)
			return (long)i;
	return -1;
}

static struct snap *snap_new(struct vol_snaps *vs, uint64_t id)
{
	struct snap *s = calloc(1, sizeof(*s));

	if (!s || !(s->map.bits = calloc(snapmap_words(vs->nchunks), sizeof(uint64_t))) ||
	    !(s->map.same = calloc(snapmap_words(vs->nchunks), sizeof(uint64_t)))) {
		if (s)
			free(s->map.bits);
		free(s);
		return NULL;
	}
	s->map.id = id;
	s->fd = -1;
	return s;
}

static void snap_free(struct snap *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->map.bits);
	free(s->map.same);
	free(s);
}

/* Puts s in the list by id. */
static void insert_locked(struct vol_snaps *vs, struct snap *s)
{
	size_t i = vs->n;

	while (i > 0 && vs->list[i - 1]->map.id > s->map.id) {
		vs->list[i] = vs->list[i - 1];
		i--;
	}
	vs->list[i] = s;
	vs->n++;
	for (size_t j = 0; j < vs->n; j++)
		vs->maps[j] = &vs->list[j]->map;
}

static void remove_locked(struct vol_snaps *vs, size_t idx)
{
	for (size_t j = idx; j + 1 < vs->n; j++)
		vs->list[j] = vs->list[j + 1];
	vs->n--;
	for (size_t j = 0; j < vs->n; j++)
		vs->maps[j] = &vs->list[j]->map;
}

/* Opens (creating) the file of snapshot s of v; 0 or -1. */
static int open_file(const struct volume *v, struct snap *s, int create)
{
	char dir[PATH_MAX + 40], path[PATH_MAX + 80];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/snaps", srv->cfg.data_dir);
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -1;
	snap_dir(v, dir, sizeof(dir));
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -1;
	snap_path(v, s->map.id, path, sizeof(path));
	s->fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
	if (s->fd < 0)
		return -1;
	if (fstat(s->fd, &st) < 0 || ((uint64_t)st.st_size != v->size && ftruncate(s->fd, v->size) < 0))
		return -1;
	s->bytes = (uint64_t)st.st_blocks * 512;
	return create ? sync_dir(dir) : 0;
}

/* ---- reactor's view ---- */

static long r_find(const struct vol_snaps *vs, uint64_t id)
{
	for (size_t i = 0; i < vs->r_n; i++)
		if (vs->r_ids[i] == id)
			return (long)i;
	return -1;
}

static void r_add(struct vol_snaps *vs, uint64_t id, int pending, uint64_t stamp)
{
	size_t i = vs->r_n;

	if (i >= SNAP_MAX || r_find(vs, id) >= 0)
		return;
	vs->r_ids[i] = id;
	vs->r_pending[i] = pending;
	vs->r_dropping[i] = 0;
	vs->r_since_ms[i] = pv_now_ms();
	vs->r_stamp[i] = stamp;
	vs->r_n++;
}

static void r_remove(struct vol_snaps *vs, uint64_t id)
{
	long i = r_find(vs, id);

	if (i < 0)
		return;
	vs->r_n--;
	vs->r_ids[i] = vs->r_ids[vs->r_n];
	vs->r_pending[i] = vs->r_pending[vs->r_n];
	vs->r_dropping[i] = vs->r_dropping[vs->r_n];
	vs->r_since_ms[i] = vs->r_since_ms[vs->r_n];
	vs->r_stamp[i] = vs->r_stamp[vs->r_n];
}

static int is_committed(const struct vol_snaps *vs, uint64_t id)
{
	for (size_t i = 0; i < vs->ncommitted; i++)
		if (vs->committed[i] == id)
			return 1;
	return 0;
}

int snap_known(const struct volume *v, uint64_t id)
{
	/* an owner without its copy of the list answers ESTALE (snap_read) */
	if (!v->snaps)
		return 0;
	if (id > v->snaps->seq)
		return -1; /* made after the catalog this server has */
	return is_committed(v->snaps, id);
}

int snap_move_refusal(const struct volume *v, char *err, size_t errlen)
{
	const struct vol_snaps *vs = v->snaps;

	if (!vs || (!vs->r_n && !vs->ncommitted))
		return 0;
	if (v->page_size % vs->chunk || vs->chunk > PV_MAX_IO) {
		snprintf(err, errlen,
			 "volume %s has snapshots and its pages (%u bytes) are not whole chunks "
			 "of %u bytes (up to %u): its pages do not move while it has snapshots",
			 v->name, v->page_size, vs->chunk, PV_MAX_IO);
		return -1;
	}
	return 0;
}

int snap_stops_moves(const struct volume *v)
{
	const struct vol_snaps *vs = v->snaps;

	if (!vs)
		return 0;
	if (vs->waiting || vs->hold || vs->rollback_id)
		return 1;
	for (size_t i = 0; i < vs->r_n; i++)
		if (vs->r_pending[i])
			return 1;
	return 0;
}

size_t snap_count(const struct volume *v)
{
	return v->snaps ? v->snaps->r_n : 0;
}

uint64_t snap_preserved(const struct volume *v, uint64_t id)
{
	struct vol_snaps *vs = v->snaps;
	uint64_t bytes = 0;

	/* the reactor may not wait for the lock: a busy list reads as 0 now */
	if (!vs || pthread_mutex_trylock(&vs->mu))
		return 0;
	long i = find_locked(vs, id);

	if (i >= 0)
		bytes = vs->list[i]->bytes;
	pthread_mutex_unlock(&vs->mu);
	return bytes;
}

size_t snap_usage(const struct volume *v, uint64_t *ids, uint64_t *bytes, size_t max)
{
	struct vol_snaps *vs = v->snaps;
	size_t n = 0;

	if (!vs)
		return 0;
	for (size_t i = 0; i < vs->ncommitted && n < max; i++) {
		ids[n] = vs->committed[i];
		bytes[n++] = snap_preserved(v, vs->committed[i]);
	}
	return n;
}

uint64_t snap_preserved_group(const struct volume *v, uint64_t id, uint32_t *per_id,
			      uint64_t *per)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];
		uint64_t b = 0;

		if (m->id == srv->cfg.id) {
			b = snap_preserved(v, id);
		} else if (m->last_hb) {
			for (size_t j = 0; j < m->last_hb->n_volumes; j++) {
				const Pv__VolumeStat *st = m->last_hb->volumes[j];

				if (!st->name || strcmp(st->name, v->name))
					continue;
				for (size_t k = 0;
				     k < st->n_snapshot_ids && k < st->n_snapshot_bytes; k++)
					if (st->snapshot_ids[k] == id)
						b = st->snapshot_bytes[k];
			}
		}
		sum += b;
		if (per_id) {
			per_id[i] = m->id;
			per[i] = b;
		}
	}
	return sum;
}

/* ---- IO_CALL jobs ---- */

struct diff_part;

struct snap_job {
	struct volume *vol;
	uint64_t id;
	int err;
	char what[120];
	void (*after)(struct snap_job *j); /* on the reactor */
	struct hold *hold;
	struct diff_part *diff;
};

static void job_done(struct io_job *job)
{
	struct snap_job *j = job->arg;

	if (j->after)
		j->after(j);
	volume_put(&j->vol);
	free(j);
	free(job);
}

static int submit_call(struct volume *vol, uint64_t id, void (*run)(struct io_job *),
		       void (*after)(struct snap_job *), struct hold *h, struct diff_part *diff)
{
	struct io_job *job = calloc(1, sizeof(*job));
	struct snap_job *j = calloc(1, sizeof(*j));

	if (!job || !j) {
		free(job);
		free(j);
		return -1;
	}
	volume_get(vol);
	j->vol = vol;
	j->id = id;
	j->after = after;
	j->hold = h;
	j->diff = diff;
	job->kind = IO_CALL;
	job->vol = vol;
	job->run = run;
	job->done = job_done;
	job->arg = j;
	worker_submit(job);
	return 0;
}

/* Records the preserved keys kv[0..n) (and other changes) in one
 * transaction. */
static int put_keys(struct meta_kv *kv, size_t n)
{
	return n ? meta_put_many(kv, n) : 0;
}

/* ---- dropping a snapshot (IO thread) ---- */

/* Copies [off, +len) of src to dst if src holds data there (a hole stays a
 * hole); 0 or errno. */
static int copy_range(int src, int dst, uint64_t off, uint64_t len, uint8_t *buf, uint64_t *copied)
{
	off_t data = lseek(src, off, SEEK_DATA);
	uint64_t done = 0;

	if (data < 0 || (uint64_t)data >= off + len)
		return 0; /* a hole (or nothing past it) */
	while (done < len) {
		ssize_t r = pread(src, buf, len - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0) {
			memset(buf, 0, len - done);
			r = (ssize_t)(len - done);
		}
		for (ssize_t w = 0; w < r;) {
			ssize_t k = pwrite(dst, buf + w, r - w, off + done + w);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return errno;
			w += k;
		}
		done += r;
	}
	*copied += len;
	return 0;
}

static void drop_run(struct io_job *job)
{
	struct snap_job *j = job->arg;
	struct vol_snaps *vs = j->vol->snaps;
	char path[PATH_MAX + 80];
	struct meta_kv *kv = NULL;
	size_t nkv = 0, cap = 0;
	uint8_t *buf = malloc(vs->chunk);
	struct snap *gone = NULL;
	long idx, heir_idx = -1;
	uint64_t copied = 0;
	int err = 0;

	pthread_mutex_lock(&vs->mu);
	idx = find_locked(vs, j->id);
	if (idx < 0 || !buf)
		goto out;
	gone = vs->list[idx];
	for (uint64_t c = 0; c < vs->nchunks && !err; c++) {
		long heir;

		if (!snapmap_has(&gone->map, c))
			continue;
		if (nkv + 2 > cap) {
			struct meta_kv *n = realloc(kv, (cap = cap ? 2 * cap : 256) * sizeof(*kv));

			if (!n) {
				err = ENOMEM;
				break;
			}
			kv = n;
		}
		heir = snapmap_heir(vs->maps, vs->n, (size_t)idx, c);
		if (heir >= 0) {
			struct snap *h = vs->list[heir];
			uint64_t off = c * vs->chunk, len = vs->chunk;

			if (off + len > j->vol->size)
				len = j->vol->size - off;
			if (gone->fd >= 0 && h->fd >= 0)
				err = copy_range(gone->fd, h->fd, off, len, buf, &copied);
			/* a move's mark goes with it: unchanged over the heir's
			 * time too (it lacked the chunk) */
			kv[nkv].db = SNAP_DB_CHUNKS;
			chunk_key(kv[nkv].key, j->vol->id, h->map.id, c);
			kv[nkv].val = snapmap_same(&gone->map, c) ? "m" : "1";
			kv[nkv++].len = 1;
			heir_idx = heir;
		} else if ((heir = snapmap_heir_unmark(vs->maps, vs->n, (size_t)idx, c)) >= 0) {
			kv[nkv].db = SNAP_DB_CHUNKS;
			chunk_key(kv[nkv].key, j->vol->id, vs->list[heir]->map.id, c);
			kv[nkv].val = "1";
			kv[nkv++].len = 1;
		}
		kv[nkv].db = SNAP_DB_CHUNKS;
		chunk_key(kv[nkv].key, j->vol->id, gone->map.id, c);
		kv[nkv].val = NULL;
		kv[nkv++].len = 0;
	}
	if (!err && copied && heir_idx >= 0 && fdatasync(vs->list[heir_idx]->fd) < 0)
		err = errno;
	if (!err) {
		struct meta_kv *n = realloc(kv, (nkv + 1) * sizeof(*kv));

		if (n) {
			kv = n;
			kv[nkv].db = SNAP_DB_PENDING;
			pending_key(kv[nkv].key, j->vol->id, gone->map.id);
			kv[nkv].val = NULL;
			kv[nkv++].len = 0;
		} else {
			err = ENOMEM;
		}
	}
	if (!err && put_keys(kv, nkv) < 0)
		err = EIO;
	if (!err) {
		/* the heirs' bits: set now that their keys are durable */
		for (uint64_t c = 0; c < vs->nchunks; c++) {
			long heir = snapmap_has(&gone->map, c)
					? snapmap_heir(vs->maps, vs->n, (size_t)idx, c)
					: -1;
			long unmark = snapmap_heir_unmark(vs->maps, vs->n, (size_t)idx, c);

			if (unmark >= 0)
				snapmap_set_same(&vs->list[unmark]->map, c, 0);
			if (heir >= 0) {
				snapmap_set(&vs->list[heir]->map, c, 1);
				snapmap_set_same(&vs->list[heir]->map, c,
						 snapmap_same(&gone->map, c));
			}
		}
		if (heir_idx >= 0) {
			struct stat st;

			if (fstat(vs->list[heir_idx]->fd, &st) == 0)
				vs->list[heir_idx]->bytes = (uint64_t)st.st_blocks * 512;
		}
		remove_locked(vs, (size_t)idx);
	}
out:
	pthread_mutex_unlock(&vs->mu);
	if (!err && gone) {
		snap_path(j->vol, gone->map.id, path, sizeof(path));
		snap_free(gone);
		unlink(path);
		snap_dir(j->vol, path, sizeof(path));
		sync_dir(path);
		pv_format_size(copied, j->what, sizeof(j->what));
	}
	free(buf);
	free(kv);
	j->err = err;
	job->err = err;
}

static void drop_after(struct snap_job *j)
{
	struct vol_snaps *vs = j->vol->snaps;
	long i = r_find(vs, j->id);

	if (j->err) {
		pv_err("snapshot: volume %s snapshot %llu: cannot free its preserved data: %s; "
		       "retried in %d s (check the disk of %s)",
		       j->vol->name, (unsigned long long)j->id, strerror(j->err), SNAP_TICK_MS / 1000,
		       srv->cfg.data_dir);
		if (i >= 0)
			vs->r_dropping[i] = 0; /* snap_tick tries again */
		return;
	}
	pv_info("snapshot: volume %s snapshot %llu dropped here (%s of its data handed to the "
		"older snapshot)",
		j->vol->name, (unsigned long long)j->id, j->what);
	r_remove(vs, j->id);
}

static void drop(struct volume *v, uint64_t id)
{
	struct vol_snaps *vs = v->snaps;
	long i = r_find(vs, id);

	if (i < 0 || vs->r_dropping[i] || v->deleted)
		return;
	vs->r_dropping[i] = 1;
	if (submit_call(v, id, drop_run, drop_after, NULL, NULL) < 0)
		vs->r_dropping[i] = 0;
}

/* ---- writes ---- */

/* Whether no chunk of [off, +len) is preserved in s (under mu). */
static int preserved_none_locked(const struct snap *s, const struct vol_snaps *vs, uint64_t off,
				 uint64_t len)
{
	for (uint64_t c = off / vs->chunk; len && c <= (off + len - 1) / vs->chunk; c++)
		if (snapmap_has(&s->map, c))
			return 0;
	return 1;
}

/* Whether every chunk of [off, +len) is preserved in the newest snapshot
 * (under mu). */
static int preserved_locked(struct vol_snaps *vs, uint64_t off, uint64_t len)
{
	if (!vs->n || !len)
		return 1;
	for (uint64_t c = off / vs->chunk; c <= (off + len - 1) / vs->chunk; c++)
		if (!snapmap_has(vs->maps[vs->n - 1], c) || snapmap_same(vs->maps[vs->n - 1], c))
			return 0; /* to copy, or a move's mark to clear (cow_locked) */
	return 1;
}

/* The cut T of the newest snapshot here (0: hold mode, or none). */
static uint64_t newest_stamp(const struct vol_snaps *vs)
{
	uint64_t id = 0, stamp = 0;

	for (size_t i = 0; i < vs->r_n; i++) {
		if (vs->r_ids[i] > id) {
			id = vs->r_ids[i];
			stamp = vs->r_stamp[i];
		}
	}
	return stamp;
}

int snap_write_gate(struct io_job *job)
{
	struct vol_snaps *vs = job->req->vol->snaps;
	int done;

	if (!vs)
		return 0;
	if (!vs->hold && vs->waiting && vs->waiting->stamp &&
	    (!job->stamp || job->stamp >= vs->waiting->stamp) && job->mig) {
		/* its page moves out of here and the move may wait for it
		 * (wr_pending): not kept back, sent again by its client */
		job->err = SNAP_EMOVING;
		request_io_done(job);
		return 1;
	}
	if (vs->hold || (vs->waiting && vs->waiting->stamp &&
			 (!job->stamp || job->stamp >= vs->waiting->stamp))) {
		/* the hold: it runs once the cut is made (or the hold ends); a
		 * timestamp-mode hold waiting for moves keeps back only the
		 * writes stamped at or after its cut T */
		job->next = NULL;
		*vs->held_tail = job;
		vs->held_tail = &job->next;
		return 1;
	}
	vs->writes++;
	job->snap_counted = 1;
	if (job->stamp > vs->max_stamp)
		vs->max_stamp = job->stamp;
	if (!vs->r_n)
		return 0;
	if (job->stamp && job->stamp < newest_stamp(vs)) {
		job->snap_late = 1; /* stamped before the newest cut: see snap_late_begin */
		worker_submit(job);
		return 1;
	}
	if (pthread_mutex_trylock(&vs->mu) == 0) {
		done = preserved_locked(vs, job->offset, job->length);
		pthread_mutex_unlock(&vs->mu);
		if (done)
			return 0;
	}
	job->snap_cow = 1; /* a worker preserves what is not, under the lock */
	worker_submit(job);
	return 1;
}

static void cut_start(struct hold *h);

void snap_write_done(struct io_job *job)
{
	struct vol_snaps *vs = job->req->vol->snaps;

	if (!job->snap_counted || !vs)
		return;
	job->snap_counted = 0;
	vs->writes--;
	if (vs->hold && !vs->hold->cut_started && !vs->writes)
		cut_start(vs->hold);
}

/* Runs the writes a hold kept back. */
static void release_held(struct vol_snaps *vs)
{
	struct io_job *job = vs->held;

	vs->held = NULL;
	vs->held_tail = &vs->held;
	while (job) {
		struct io_job *next = job->next;

		job->next = NULL;
		if (!snap_write_gate(job))
			request_job_go(job);
		job = next;
	}
}

/* Preserves into s the chunks of [off, +len) it lacks (under mu): copied,
 * durable, recorded, then marked. moved: a page move preserves them early
 * (marked "same": unchanged since the cut); else a write will change them,
 * and chunks a move preserved lose that mark. 0 or an errno. */
static int cow_locked(struct volume *vol, struct vol_snaps *vs, struct snap *s, uint64_t off,
		      uint64_t len, int moved)
{
	uint64_t c0 = off / vs->chunk, c1 = (off + len - 1) / vs->chunk, copied = 0;
	struct meta_kv *kv = calloc(c1 - c0 + 1, sizeof(*kv));
	uint8_t *buf = malloc(vs->chunk);
	size_t nkv = 0;
	int err = 0;

	if (!kv || !buf) {
		err = ENOMEM;
		goto out;
	}
	for (uint64_t c = c0; c <= c1 && !err; c++) {
		uint64_t coff = c * vs->chunk, clen = vs->chunk;

		if (snapmap_has(&s->map, c) && (moved || !snapmap_same(&s->map, c)))
			continue;
		kv[nkv].db = SNAP_DB_CHUNKS;
		chunk_key(kv[nkv].key, vol->id, s->map.id, c);
		kv[nkv].val = moved ? "m" : "1";
		kv[nkv++].len = 1;
		if (snapmap_has(&s->map, c))
			continue; /* a move's copy, written now: only its mark goes */
		if (coff + clen > vol->size)
			clen = vol->size - coff;
		if (s->fd < 0) {
			err = EIO;
			break;
		}
		err = copy_range(vol->fd, s->fd, coff, clen, buf, &copied);
	}
	/* durable before the write that replaces it */
	if (!err && copied && fdatasync(s->fd) < 0)
		err = errno;
	if (!err && put_keys(kv, nkv) < 0)
		err = EIO;
	if (!err) {
		for (uint64_t c = c0; c <= c1; c++) {
			if (!snapmap_has(&s->map, c))
				snapmap_set_same(&s->map, c, moved);
			else if (!moved)
				snapmap_set_same(&s->map, c, 0);
			snapmap_set(&s->map, c, 1);
		}
		s->bytes += copied;
	}
out:
	free(kv);
	free(buf);
	return err;
}

int snap_cow(struct io_job *job)
{
	struct vol_snaps *vs = job->req->vol->snaps;
	int err = 0;

	if (!vs || !job->length)
		return 0;
	pthread_mutex_lock(&vs->mu);
	if (vs->n)
		err =
		    cow_locked(job->req->vol, vs, vs->list[vs->n - 1], job->offset, job->length, 0);
	pthread_mutex_unlock(&vs->mu);
	return err;
}

/* A write stamped before the newest snapshot's cut T (timestamp mode)
 * belongs before that cut: it may change the volume as long as no write
 * stamped T or later changed its chunks here (none is preserved in the
 * newest snapshot), after preserving them for the snapshot before (it
 * landed after that one's cut). Otherwise it is stamped again by its client
 * (SNAP_ERESTAMP) and lands after the cut. On 0 the lock stays held for the
 * write itself (snap_late_end). */
int snap_late_begin(struct io_job *job)
{
	struct vol_snaps *vs = job->req->vol->snaps;
	struct snap *newest;
	int err = 0;

	pthread_mutex_lock(&vs->mu);
	if (!vs->n)
		return 0;
	newest = vs->list[vs->n - 1];
	if (!preserved_none_locked(newest, vs, job->offset, job->length) ||
	    (vs->n >= 2 && job->stamp < vs->list[vs->n - 2]->stamp)) {
		err = SNAP_ERESTAMP;
	} else if (vs->n >= 2) {
		err =
		    cow_locked(job->req->vol, vs, vs->list[vs->n - 2], job->offset, job->length, 0);
	}
	if (err)
		pthread_mutex_unlock(&vs->mu);
	return err;
}

void snap_restamp_clock(const struct volume *vol)
{
	const struct vol_snaps *vs = vol->snaps;

	if (vs)
		wire_hlc_seen(newest_stamp(vs));
}

void snap_late_end(struct io_job *job)
{
	pthread_mutex_unlock(&job->req->vol->snaps->mu);
}

static int read_full(int fd, uint8_t *buf, uint64_t len, uint64_t off);
static int has_data(int fd, uint64_t off, uint64_t len);

/* ---- a moving page's chunks (docs/architecture.md, "Snapshots and page
 * migration") ---- */

void snap_page_free(struct snap_page *p)
{
	free(p->preserved);
	free(p->holes);
	free(p->same);
	free(p->data);
	p->preserved = p->holes = p->same = p->data = NULL;
}

int snap_page_export(struct volume *v, uint64_t page_off, uint64_t page_len, size_t idx,
		     uint64_t first, uint64_t max_data, struct snap_page *out)
{
	struct vol_snaps *vs = v->snaps;
	uint64_t c0, nch, pos = 0;
	struct snap *s;
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (!vs || snapmap_page_chunks(page_off, page_len, vs->chunk, &c0, &nch) < 0)
		return EINVAL;
	out->chunk = vs->chunk;
	out->nchunks = nch;
	out->first = first;
	out->preserved = calloc((nch + 7) / 8, 1);
	out->holes = calloc((nch + 7) / 8, 1);
	out->same = calloc((nch + 7) / 8, 1);
	out->data = malloc(max_data > vs->chunk ? max_data : vs->chunk);
	if (!out->preserved || !out->holes || !out->same || !out->data) {
		snap_page_free(out);
		return ENOMEM;
	}
	pthread_mutex_lock(&vs->mu);
	out->nids = vs->n;
	for (size_t i = 0; i < vs->n; i++)
		out->ids[i] = vs->list[i]->map.id;
	if (idx >= vs->n || first >= nch)
		goto out;
	if (idx == 0 && first == 0) {
		/* every chunk of the page preserved in the newest snapshot: no
		 * write to it copies a chunk from now on, here or at the target,
		 * so what is sent stays true while the page moves */
		if (v->fd < 0)
			err = EIO;
		else
			err = cow_locked(v, vs, vs->list[vs->n - 1], page_off, page_len, 1);
	}
	s = vs->list[idx];
	out->id = s->map.id;
	for (uint64_t i = first; i < nch && !err; i++) {
		uint64_t off = page_off + i * vs->chunk, len = vs->chunk;

		if (i * vs->chunk + len > page_len)
			len = page_len - i * vs->chunk;
		if (snapmap_has(&s->map, c0 + i)) {
			if (s->fd < 0 || !has_data(s->fd, off, len)) {
				snapmap_bit_set(out->holes, i);
			} else {
				if (out->n && pos + len > max_data)
					break;
				err = read_full(s->fd, out->data + pos, len, off);
				pos += len;
			}
			snapmap_bit_set(out->preserved, i);
			if (snapmap_same(&s->map, c0 + i))
				snapmap_bit_set(out->same, i);
		}
		out->n++;
	}
out:
	pthread_mutex_unlock(&vs->mu);
	out->data_len = pos;
	if (err)
		snap_page_free(out);
	return err;
}

int snap_page_import(struct volume *v, uint64_t page_off, uint64_t page_len,
		     const struct snap_page *in)
{
	struct vol_snaps *vs = v->snaps;
	uint64_t c0, nch, pos = 0;
	struct meta_kv *kv = NULL;
	struct snap *s;
	size_t nkv = 0;
	struct stat st;
	long idx;
	int err = 0;

	if (!vs || snapmap_page_chunks(page_off, page_len, vs->chunk, &c0, &nch) < 0 ||
	    in->chunk != vs->chunk || in->nchunks != nch || in->first + in->n > nch)
		return EINVAL;
	kv = calloc(in->n ? in->n : 1, sizeof(*kv));
	if (!kv)
		return ENOMEM;
	pthread_mutex_lock(&vs->mu);
	if (in->nids != vs->n) {
		err = EAGAIN;
		goto out;
	}
	for (size_t i = 0; i < vs->n; i++)
		if (vs->list[i]->map.id != in->ids[i]) {
			err = EAGAIN;
			goto out;
		}
	idx = find_locked(vs, in->id);
	if (idx < 0) {
		err = EAGAIN;
		goto out;
	}
	s = vs->list[idx];
	if (s->fd < 0 && open_file(v, s, 1) < 0) {
		err = errno ? errno : EIO;
		goto out;
	}
	for (uint64_t i = in->first; i < in->first + in->n && !err; i++) {
		uint64_t off = page_off + i * vs->chunk, len = vs->chunk;
		int keep = snapmap_bit(in->preserved, i);

		if (i * vs->chunk + len > page_len)
			len = page_len - i * vs->chunk;
		if (keep && !snapmap_bit(in->holes, i)) {
			for (uint64_t w = 0; w < len && !err;) {
				ssize_t k = pwrite(s->fd, in->data + pos + w, len - w, off + w);

				if (k < 0 && errno != EINTR)
					err = errno;
				else if (k > 0)
					w += (uint64_t)k;
			}
			pos += len;
		} else if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) <
			   0) {
			err = errno;
		}
		kv[nkv].db = SNAP_DB_CHUNKS;
		chunk_key(kv[nkv].key, v->id, s->map.id, c0 + i);
		kv[nkv].val = !keep ? NULL : snapmap_bit(in->same, i) ? "m" : "1";
		kv[nkv++].len = keep ? 1 : 0;
	}
	/* durable before the source is told, and so before the move goes on */
	if (!err && fdatasync(s->fd) < 0)
		err = errno;
	if (!err && put_keys(kv, nkv) < 0)
		err = EIO;
	if (!err) {
		for (uint64_t i = in->first; i < in->first + in->n; i++) {
			snapmap_set(&s->map, c0 + i, snapmap_bit(in->preserved, i));
			snapmap_set_same(&s->map, c0 + i,
					 snapmap_bit(in->preserved, i) && snapmap_bit(in->same, i));
		}
		if (fstat(s->fd, &st) == 0)
			s->bytes = (uint64_t)st.st_blocks * 512;
	}
out:
	pthread_mutex_unlock(&vs->mu);
	free(kv);
	return err;
}

int snap_page_forget(struct volume *v, uint64_t page_off, uint64_t page_len)
{
	struct vol_snaps *vs = v->snaps;
	uint64_t c0, nch;
	struct meta_kv *kv;
	size_t nkv = 0;
	int err = 0;

	if (!vs || snapmap_page_chunks(page_off, page_len, vs->chunk, &c0, &nch) < 0)
		return 0;
	pthread_mutex_lock(&vs->mu);
	for (size_t j = 0; j < vs->n; j++)
		for (uint64_t i = 0; i < nch; i++)
			nkv += snapmap_has(&vs->list[j]->map, c0 + i);
	kv = calloc(nkv + 1, sizeof(*kv));
	nkv = 0;
	if (!kv) {
		pthread_mutex_unlock(&vs->mu);
		return ENOMEM;
	}
	for (size_t j = 0; j < vs->n; j++) {
		struct snap *s = vs->list[j];

		for (uint64_t i = 0; i < nch; i++) {
			if (!snapmap_has(&s->map, c0 + i))
				continue;
			kv[nkv].db = SNAP_DB_CHUNKS;
			chunk_key(kv[nkv].key, v->id, s->map.id, c0 + i);
			kv[nkv].val = NULL;
			kv[nkv++].len = 0;
		}
	}
	if (put_keys(kv, nkv) < 0)
		err = EIO;
	for (size_t j = 0; j < vs->n && !err; j++) {
		struct snap *s = vs->list[j];
		struct stat st;

		for (uint64_t i = 0; i < nch; i++) {
			snapmap_set(&s->map, c0 + i, 0);
			snapmap_set_same(&s->map, c0 + i, 0);
		}
		/* the keys are gone: a crash before this only leaves blocks
		 * allocated in the file until the snapshot goes */
		if (s->fd >= 0) {
			fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, page_off,
				  page_len);
			if (fstat(s->fd, &st) == 0)
				s->bytes = (uint64_t)st.st_blocks * 512;
		}
	}
	pthread_mutex_unlock(&vs->mu);
	free(kv);
	return err;
}

/* ---- reads of a snapshot's image ---- */

static int read_full(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0) {
			memset(buf + done, 0, len - done);
			break;
		}
		done += n;
	}
	return 0;
}

int snap_read(struct io_job *job)
{
	struct volume *vol = job->req->vol;
	struct vol_snaps *vs = vol->snaps;
	uint64_t pos = job->offset, end = job->offset + job->length;
	long idx;
	int err = 0;

	if (!vs)
		return ESTALE;
	pthread_mutex_lock(&vs->mu);
	idx = find_locked(vs, job->snap_id);
	if (idx < 0)
		err = ESTALE;
	while (!err && pos < end) {
		uint64_t c = pos / vs->chunk, seg = (c + 1) * vs->chunk;
		long from = snapmap_resolve(vs->maps, vs->n, (size_t)idx, c);
		int fd = from < 0 ? vol->fd : vs->list[from]->fd;

		if (seg > end)
			seg = end;
		if (fd < 0)
			memset(job->ptr + (pos - job->offset), 0, seg - pos);
		else
			err = read_full(fd, job->ptr + (pos - job->offset), seg - pos, pos);
		pos = seg;
	}
	pthread_mutex_unlock(&vs->mu);
	return err;
}

/* ---- the cut (hold mode, every member) ---- */

static void answer_send(struct hold *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void coord_answer(uint32_t from, uint32_t op, int status, const char *msg);

static void answer_send(struct hold *h, int status, const char *fmt, ...)
{
	char msg[PV_MAX_MESSAGE] = "";
	va_list ap;

	if (h->answered)
		return;
	h->answered = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (h->ans.local) {
		coord_answer(srv->cfg.id, PV_OP_SNAP_HOLD, status, msg);
	} else {
		Pv__Header rh;

		wire_header_init(&rh);
		rh.op = h->ans.op;
		rh.req_id = h->ans.req_id;
		reply_body(&h->ans.from, &rh, status, status == PV_ST_OK ? NULL : msg, NULL);
	}
}

/* Frees h once nothing refers to it: it ended (released or expired) and
 * its cut job, if any, is done. */
static void hold_maybe_free(struct hold *h)
{
	if (!h->ended || (h->cut_started && !h->cut_done))
		return;
	for (struct hold **p = &holds; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	volume_put(&h->vol);
	free(h);
}

/* Ends h (its writes run again); keep: its cut stays (RELEASE commit). */
static void hold_end(struct hold *h, int keep)
{
	struct vol_snaps *vs = h->vol->snaps;

	if (h->ended)
		return;
	h->ended = 1;
	if (vs->hold == h || vs->waiting == h) {
		vs->hold = NULL;
		vs->waiting = NULL;
		release_held(vs);
	}
	if (!keep && h->cut_done)
		drop(h->vol, h->snap_id);
	hold_maybe_free(h);
}

static void cut_run(struct io_job *job)
{
	struct snap_job *j = job->arg;
	struct vol_snaps *vs = j->vol->snaps;
	struct snap *s = snap_new(vs, j->id);
	char rec[PV_MAX_NAME + 32];
	struct meta_kv kv = {.db = SNAP_DB_PENDING, .val = rec};
	int err = 0;

	/* "T NAME": a restart keeps the cut and its stamp */
	pending_key(kv.key, j->vol->id, j->id);
	kv.len = (size_t)snprintf(rec, sizeof(rec), "%llu %s", (unsigned long long)j->hold->stamp,
				  j->hold->name);
	if (s)
		s->stamp = j->hold->stamp;
	if (!s)
		err = ENOMEM;
	else if (open_file(j->vol, s, 1) < 0 || meta_put_many(&kv, 1) < 0)
		err = errno ? errno : EIO;
	if (err) {
		if (s)
			snap_free(s);
	} else {
		pthread_mutex_lock(&vs->mu);
		insert_locked(vs, s);
		pthread_mutex_unlock(&vs->mu);
	}
	j->err = err;
	job->err = err;
}

/* Where a hold ends before its answer is sent, the answer goes through a
 * copy (answer_send(&a, ...)): answering the coordinator's own hold runs
 * coord_answer at once, which may release this server's hold there and
 * then (release -> hold_end), and so free h. */
static void cut_after(struct snap_job *j)
{
	struct hold *h = j->hold;
	struct vol_snaps *vs = j->vol->snaps;
	struct hold a = {.ans = h->ans, .answered = h->answered};

	h->cut_done = 1;
	if (j->err) {
		char name[sizeof(h->name)];

		memcpy(name, h->name, sizeof(name));
		/* the cut job is over and made nothing: nothing to drop or wait for */
		h->cut_started = h->cut_done = 0;
		if (h->ended) /* expired while the cut ran: answered then */
			hold_maybe_free(h);
		else
			hold_end(h, 0); /* frees h */
		answer_send(&a, PV_ST_IO_ERROR,
			    "server %u cannot start snapshot %s of volume %s: %s (check %s)",
			    srv->cfg.id, name, j->vol->name, strerror(j->err), srv->cfg.data_dir);
		return;
	}
	r_add(vs, h->snap_id, 1, h->stamp);
	if (h->ended) { /* expired or aborted while the cut was made */
		drop(h->vol, h->snap_id);
		hold_maybe_free(h);
		return;
	}
	if (h->stamp) {
		/* timestamp mode: the cut is T; writes run on at once, those
		 * stamped before T as late writes (snap_late_begin) */
		pv_info("snapshot: volume %s snapshot %s (id %llu) cut here at stamp %llu.%llu "
			"after %llu ms of draining",
			h->vol->name, h->name, (unsigned long long)h->snap_id,
			(unsigned long long)hlc_ms(h->stamp),
			(unsigned long long)(h->stamp & 0xffff),
			(unsigned long long)(pv_now_ms() - h->start_ms));
		hold_end(h, 1); /* frees h */
		answer_send(&a, PV_ST_OK, "%s", "");
		return;
	}
	pv_info("snapshot: volume %s snapshot %s (id %llu) cut here after %llu ms of hold; "
		"writes wait for the commit",
		h->vol->name, h->name, (unsigned long long)h->snap_id,
		(unsigned long long)(pv_now_ms() - h->start_ms));
	answer_send(h, PV_ST_OK, "%s", "");
}

static void cut_start(struct hold *h)
{
	h->cut_started = 1;
	if (submit_call(h->vol, h->snap_id, cut_run, cut_after, h, NULL) < 0) {
		h->cut_started = 0;
		answer_send(h, PV_ST_BUSY, "server %u out of memory", srv->cfg.id);
		hold_end(h, 0);
	}
}

static void hold_expire(void *arg)
{
	uint64_t gen = (uintptr_t)arg;

	for (struct hold *h = holds; h; h = h->next) {
		if (h->gen != gen || h->ended)
			continue;
		pv_warn("snapshot: volume %s snapshot %s: hold released after %llu ms without a "
			"commit; the snapshot is not made",
			h->vol->name, h->name, (unsigned long long)(pv_now_ms() - h->start_ms));
		answer_send(h, PV_ST_BUSY,
			    "server %u could not finish the writes in flight on volume %s within "
			    "the timeout",
			    srv->cfg.id, h->vol->name);
		hold_end(h, 0);
		return;
	}
}

/* A hold waiting for moves: holds once none runs here (or ends by its
 * timeout, hold_expire). */
static void moves_poll(void *arg)
{
	uint64_t gen = (uintptr_t)arg;

	for (struct hold *h = holds; h; h = h->next) {
		struct vol_snaps *vs = h->vol->snaps;

		if (h->gen != gen || h->ended || vs->waiting != h)
			continue;
		if (migrate_volume_moving(h->vol)) {
			reactor_after(SNAP_MOVES_POLL_MS, moves_poll, arg);
			return;
		}
		vs->waiting = NULL;
		vs->hold = h; /* the writes it kept back stay held */
		pv_info("snapshot: volume %s snapshot %s: the moves here ended after %llu ms; "
			"holding",
			h->vol->name, h->name, (unsigned long long)(pv_now_ms() - h->start_ms));
		h->start_ms = pv_now_ms(); /* the hold's own time, for its log */
		if (!vs->writes)
			cut_start(h);
		return;
	}
}

/* SNAP_HOLD of snapshot id of vol: hold, drain, cut, answer (through ans). */
static void hold_begin(struct volume *vol, const Pv__SnapshotOp *op, const struct answer *ans)
{
	struct vol_snaps *vs = vol->snaps;
	struct hold *h;
	char err[PV_MAX_MESSAGE] = "";
	int st = PV_ST_OK;
	uint64_t newest = 0;

	for (size_t i = 0; i < vs->r_n; i++)
		if (vs->r_ids[i] > newest)
			newest = vs->r_ids[i];
	if (vs->hold || vs->waiting) {
		st = PV_ST_BUSY;
		snprintf(err, sizeof(err), "server %u: another snapshot of volume %s is being made",
			 srv->cfg.id, vol->name);
	} else if (vs->rollback_id) {
		st = PV_ST_BUSY;
		snprintf(err, sizeof(err), "server %u: volume %s is being rolled back", srv->cfg.id,
			 vol->name);
	} else if (vs->r_n >= SNAP_MAX) {
		st = PV_ST_REFUSED;
		snprintf(err, sizeof(err), "server %u: volume %s has %d snapshots already",
			 srv->cfg.id, vol->name, SNAP_MAX);
	} else if (op->stamp && vs->max_stamp >= op->stamp) {
		st = PV_ST_BUSY;
		snprintf(err, sizeof(err),
			 "server %u already wrote volume %s with a stamp later than the cut (a "
			 "client's clock runs ahead); try again",
			 srv->cfg.id, vol->name);
	} else if (op->snap_id <= newest) {
		st = PV_ST_REFUSED;
		snprintf(err, sizeof(err),
			 "server %u: volume %s has a snapshot as new as id %llu already",
			 srv->cfg.id, vol->name, (unsigned long long)op->snap_id);
	} else if (!(h = calloc(1, sizeof(*h)))) {
		st = PV_ST_BUSY;
		snprintf(err, sizeof(err), "server %u out of memory", srv->cfg.id);
	}
	if (st != PV_ST_OK) {
		struct hold tmp = {.ans = *ans};

		answer_send(&tmp, st, "%s", err);
		return;
	}
	h->gen = ++hold_gen;
	volume_get(vol);
	h->vol = vol;
	h->snap_id = op->snap_id;
	/* T is not merged into our clock here: it is ahead on purpose, so that
	 * every member cuts before writes stamped past it come; a RESTAMP
	 * answer carries a clock past it (snap_restamp_clock) */
	h->stamp = op->stamp;
	snprintf(h->name, sizeof(h->name), "%s", op->name ? op->name : "");
	h->start_ms = pv_now_ms();
	h->ans = *ans;
	h->next = holds;
	holds = h;
	reactor_after(op->timeout_ms ? op->timeout_ms : SNAP_TIMEOUT_DEFAULT, hold_expire,
		      (void *)(uintptr_t)h->gen);
	if (migrate_volume_moving(vol)) {
		/* pages of the volume move here: their snapshot chunks go with
		 * them under the list as it is, so the cut waits for them (no
		 * new move starts meanwhile: snap_stops_moves); the timeout
		 * bounds the wait like any hold */
		vs->waiting = h;
		pv_info("snapshot: volume %s snapshot %s (id %llu) waits here for the moves of its "
			"pages to end",
			vol->name, h->name, (unsigned long long)h->snap_id);
		reactor_after(SNAP_MOVES_POLL_MS, moves_poll, (void *)(uintptr_t)h->gen);
		return;
	}
	vs->hold = h;
	if (!vs->writes)
		cut_start(h);
}

/* SNAP_RELEASE: 0 (OK) or a status with err. */
static int release(struct volume *vol, const Pv__SnapshotOp *op, char *err, size_t errlen)
{
	struct vol_snaps *vs = vol->snaps;
	struct hold *h = vs->hold ? vs->hold : vs->waiting; /* waiting: for moves */
	long i;

	if (h && h->snap_id == op->snap_id) {
		if (op->commit && !h->cut_done) {
			snprintf(err, errlen, "server %u had not cut snapshot %s of volume %s yet",
				 srv->cfg.id, op->name, vol->name);
			hold_end(h, 0);
			return PV_ST_REFUSED;
		}
		hold_end(h, op->commit);
		return PV_ST_OK;
	}
	i = r_find(vs, op->snap_id);
	if (op->commit && op->stamp && i >= 0 && !vs->r_dropping[i]) {
		/* timestamp mode: the cut stands, nothing held. Every member has
		 * cut now: our clock moves past T, so a write that enters here
		 * from now on (after the snapshot command is answered, say) is
		 * stamped after the cut */
		wire_hlc_seen(op->stamp);
		return PV_ST_OK;
	}
	if (op->commit) {
		snprintf(err, errlen,
			 "server %u holds no writes for snapshot %s of volume %s (the hold "
			 "expired or the server restarted)",
			 srv->cfg.id, op->name, vol->name);
		return PV_ST_REFUSED;
	}
	if (i >= 0 && vs->r_pending[i] && !is_committed(vs, op->snap_id))
		drop(vol, op->snap_id);
	return PV_ST_OK;
}

/* ---- the coordinator ---- */

enum cr_phase { CR_HOLD = 1, CR_RELEASE, CR_CATALOG };

/* The snapshot being made through this server (one at a time). */
struct creating {
	char volume[PV_MAX_NAME + 1];
	uint64_t vol_id;
	char name[PV_MAX_NAME + 1];
	char mode[16];
	uint64_t id;
	uint32_t timeout_ms;
	uint64_t stamp; /* timestamp mode: the cut T */
	enum cr_phase phase;
	uint64_t gen;
	uint64_t start_ms, pause_ms;
	uint32_t ids[PEERD_MAX_MEMBERS];
	uint64_t req[PEERD_MAX_MEMBERS];
	int ok[PEERD_MAX_MEMBERS];
	size_t n, nok;
	int why;
	snap_done_fn done;
	void *arg;
};

static struct creating *cr;
static uint64_t cr_gen;

static void op_fill(Pv__SnapshotOp *op, const struct creating *c, int commit)
{
	pv__snapshot_op__init(op);
	op->volume = (char *)c->volume;
	op->volume_id = c->vol_id;
	op->snap_id = c->id;
	op->name = (char *)c->name;
	op->mode = (char *)c->mode;
	op->timeout_ms = c->timeout_ms;
	op->commit = commit;
	op->stamp = c->stamp;
}

/* Sends op (HOLD, or RELEASE commit/abort) of c to member i; the answer of
 * this server itself comes through coord_answer. */
static void send_one(struct creating *c, size_t i, uint32_t opcode, int commit)
{
	struct member *m = catalog_member(c->ids[i]);
	struct volume *vol = catalog_volume(c->volume);
	Pv__SnapshotOp op;
	Pv__Header h;

	op_fill(&op, c, commit);
	if (c->ids[i] == srv->cfg.id) {
		char err[PV_MAX_MESSAGE] = "";
		int st;

		if (!vol || vol->id != c->vol_id) {
			coord_answer(srv->cfg.id, opcode, PV_ST_NO_VOLUME, "the volume is gone");
		} else if (opcode == PV_OP_SNAP_HOLD) {
			struct answer ans = {.local = 1};

			hold_begin(vol, &op, &ans);
		} else {
			st = release(vol, &op, err, sizeof(err));
			coord_answer(srv->cfg.id, opcode, st, err);
		}
		return;
	}
	wire_header_init(&h);
	h.op = opcode;
	h.req_id = peers_next_id();
	h.volume = (char *)c->volume;
	h.volume_id = c->vol_id;
	c->req[i] = h.req_id;
	if (!m || !m->up || reply_send_member(m, &h, NULL, &op.base) < 0)
		coord_answer(c->ids[i], opcode, PV_ST_UNAVAILABLE, "it is down or unreachable");
}

/* Sends opcode to every member, this server last; stops if c ends. */
static void send_all(struct creating *c, uint32_t opcode, int commit)
{
	uint64_t gen = c->gen;
	size_t self = c->n;

	memset(c->ok, 0, sizeof(c->ok));
	c->nok = 0;
	/* an answer may end c (cr_fail frees it): look at cr before c */
	for (size_t i = 0; cr == c && c->gen == gen && i < c->n; i++) {
		if (c->ids[i] == srv->cfg.id)
			self = i;
		else
			send_one(c, i, opcode, commit);
	}
	if (cr == c && c->gen == gen && self < c->n)
		send_one(c, self, opcode, commit);
}

/* Tells every member to drop the cut (fire and forget; a member that does
 * not hear it releases at its timeout and drops the cut in snap_tick). */
static void abort_all(struct creating *c)
{
	Pv__SnapshotOp op;
	struct volume *vol = catalog_volume(c->volume);

	op_fill(&op, c, 0);
	for (size_t i = 0; i < c->n; i++) {
		struct member *m = catalog_member(c->ids[i]);
		Pv__Header h;
		char err[PV_MAX_MESSAGE];

		if (c->ids[i] == srv->cfg.id) {
			if (vol && vol->id == c->vol_id)
				release(vol, &op, err, sizeof(err));
			continue;
		}
		if (!m || !m->up)
			continue;
		wire_header_init(&h);
		h.op = PV_OP_SNAP_RELEASE;
		h.req_id = peers_next_id();
		reply_send_member(m, &h, NULL, &op.base);
	}
}

static void cr_fail(struct creating *c, int why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cr_fail(struct creating *c, int why, const char *fmt, ...)
{
	char err[PV_MAX_MESSAGE + 200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, sizeof(err), fmt, ap);
	va_end(ap);
	if (cr == c)
		cr = NULL;
	abort_all(c);
	pv_warn("snapshot: %s@%s not made: %s", c->volume, c->name, err);
	c->done(c->arg, 0, c->volume, NULL, 0, why, err);
	free(c);
}

static int add_build(void *arg, Pv__Catalog *next, char *err, size_t errlen);
static void add_done(void *arg, int ok, const char *err);

static void coord_answer(uint32_t from, uint32_t op, int status, const char *msg)
{
	struct creating *c = cr;
	size_t i;

	if (!c || (op == PV_OP_SNAP_HOLD) != (c->phase == CR_HOLD) || c->phase == CR_CATALOG)
		return;
	for (i = 0; i < c->n && c->ids[i] != from; i++)
		;
	if (i == c->n || c->ok[i])
		return;
	if (status != PV_ST_OK) {
		cr_fail(c, 0, "server %u %s: %s", from,
			op == PV_OP_SNAP_HOLD ? "did not hold its writes" : "did not keep its cut",
			msg && *msg ? msg : wire_status_name(status));
		return;
	}
	c->ok[i] = 1;
	if (++c->nok < c->n)
		return;
	if (c->phase == CR_HOLD) {
		/* timestamp mode: each member held its own writes only while it
		 * drained and cut, all of it within this phase */
		if (c->stamp)
			c->pause_ms = pv_now_ms() - c->start_ms;
		c->phase = CR_RELEASE;
		send_all(c, PV_OP_SNAP_RELEASE, 1);
		return;
	}
	/* every member kept its cut and runs its writes again */
	if (!c->stamp)
		c->pause_ms = pv_now_ms() - c->start_ms;
	c->phase = CR_CATALOG;
	struct change *ch = change_new(0, add_build, add_done, c, "create snapshot %s@%s",
				       c->volume, c->name);

	if (!ch) {
		cr_fail(c, 0, "out of memory");
		return;
	}
	change_run(&ch);
}

static void cr_timeout(void *arg)
{
	struct creating *c = cr;
	char late[200] = "";
	size_t len = 0;

	if (!c || c->gen != (uintptr_t)arg || c->phase == CR_CATALOG)
		return;
	for (size_t i = 0; i < c->n; i++)
		if (!c->ok[i] && len < sizeof(late) - 12)
			len += snprintf(late + len, sizeof(late) - len, "%s%u", len ? ", " : "",
					c->ids[i]);
	cr_fail(c, 0, "no answer from server(s) %s within %u ms", late, c->timeout_ms);
}

static Pv__VolumeInfo *info_of(const Pv__Catalog *cat, const char *volume)
{
	for (size_t i = 0; cat && i < cat->n_volumes; i++)
		if (!strcmp(cat->volumes[i]->name, volume))
			return cat->volumes[i];
	return NULL;
}

static long snap_index(const Pv__VolumeInfo *vi, const char *name)
{
	for (size_t i = 0; i < vi->n_snapshots; i++)
		if (!strcmp(vi->snapshots[i]->name, name))
			return (long)i;
	return -1;
}

static int add_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct creating *c = arg;
	Pv__VolumeInfo *vi = info_of(next, c->volume);
	struct volume *vol = catalog_volume(c->volume);
	Pv__SnapshotInfo *si, **arr;

	if (!vi || vi->id != c->vol_id || !vol) {
		snprintf(err, errlen, "volume %s was deleted meanwhile", c->volume);
		c->why = ENOENT;
		return -1;
	}
	if (snap_index(vi, c->name) >= 0) {
		snprintf(err, errlen, "volume %s has a snapshot '%s' already", c->volume, c->name);
		c->why = EEXIST;
		return -1;
	}
	if (vi->snapshot_seq + 1 != c->id) {
		snprintf(err, errlen, "another snapshot of volume %s was made meanwhile; try again",
			 c->volume);
		return -1;
	}
	if (r_find(vol->snaps, c->id) < 0) {
		snprintf(err, errlen, "server %u lost its cut of the snapshot", srv->cfg.id);
		return -1;
	}
	si = malloc(sizeof(*si));
	arr = realloc(vi->snapshots, (vi->n_snapshots + 1) * sizeof(*arr));
	if (arr)
		vi->snapshots = arr;
	if (!si || !arr) {
		free(si);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pv__snapshot_info__init(si);
	si->name = catalog_strdup(c->name);
	si->mode = catalog_strdup(c->mode);
	si->id = c->id;
	si->stamp = c->stamp;
	si->created = pv_wall_s();
	vi->snapshots[vi->n_snapshots++] = si;
	vi->snapshot_seq = c->id;
	return 0;
}

static void add_done(void *arg, int ok, const char *err)
{
	struct creating *c = arg;
	const Pv__VolumeInfo *vi;
	long i;

	if (cr == c)
		cr = NULL;
	if (!ok && !err) { /* peerd stops */
		free(c);
		return;
	}
	if (!ok) {
		cr_fail(c, c->why, "%s", err);
		return;
	}
	vi = info_of(catalog_committed(), c->volume);
	i = vi ? snap_index(vi, c->name) : -1;
	pv_info("snapshot: %s@%s (id %llu) made: writes held %llu ms at most", c->volume, c->name,
		(unsigned long long)c->id, (unsigned long long)c->pause_ms);
	c->done(c->arg, 1, c->volume, i >= 0 ? vi->snapshots[i] : NULL, c->pause_ms, 0, NULL);
	free(c);
}

int snap_create(const char *volume, const char *name, const char *mode, uint32_t timeout_ms,
		snap_done_fn done, void *arg, char *err, size_t errlen)
{
	struct volume *vol = catalog_volume(volume);
	const Pv__VolumeInfo *vi = info_of(catalog_committed(), volume);
	struct creating *c;

	if (!vol || !vi) {
		snprintf(err, errlen, "no volume '%s'", volume);
		return -ENOENT;
	}
	if (!pv_valid_name(name, err, errlen))
		return -1;
	if (snap_index(vi, name) >= 0) {
		snprintf(err, errlen, "volume %s has a snapshot '%s' already", volume, name);
		return -EEXIST;
	}
	if (!mode || !*mode)
		mode = "hold";
	if (strcmp(mode, "hold") && strcmp(mode, "timestamp")) {
		snprintf(err, errlen, "snapshot mode '%s': 'hold' or 'timestamp'", mode);
		return -1;
	}
	if (vi->n_snapshots >= SNAP_MAX) {
		snprintf(err, errlen, "volume %s has %d snapshots, the most it may have; delete one",
			 volume, SNAP_MAX);
		return -1;
	}
	if (cr) {
		snprintf(err, errlen, "snapshot %s@%s is being made through server %u; try again",
			 cr->volume, cr->name, srv->cfg.id);
		return -1;
	}
	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];

		if (m->id != srv->cfg.id && !m->up) {
			snprintf(err, errlen,
				 "server %u is down: a hold-mode snapshot needs every member of the "
				 "group to hold its writes",
				 m->id);
			return -1;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(c->volume, sizeof(c->volume), "%s", volume);
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->mode, sizeof(c->mode), "%s", mode);
	c->vol_id = vol->id;
	c->id = vi->snapshot_seq + 1;
	c->timeout_ms = timeout_ms ? timeout_ms : SNAP_TIMEOUT_DEFAULT;
	/* timestamp mode: a cut a little ahead, so that it reaches every
	 * member before writes stamped past it do */
	if (!strcmp(mode, "timestamp"))
		c->stamp = wire_hlc_now() + hlc_of_ms(SNAP_TS_AHEAD_MS);
	c->done = done;
	c->arg = arg;
	c->gen = ++cr_gen;
	c->start_ms = pv_now_ms();
	c->phase = CR_HOLD;
	for (size_t i = 0; i < srv->nmembers; i++)
		c->ids[c->n++] = srv->members[i].id;
	cr = c;
	pv_info("snapshot: making %s@%s (id %llu, %s mode, timeout %u ms) over %zu servers",
		volume, name, (unsigned long long)c->id, mode, c->timeout_ms, c->n);
	reactor_after(c->timeout_ms, cr_timeout, (void *)(uintptr_t)c->gen);
	send_all(c, PV_OP_SNAP_HOLD, 0);
	return 0;
}

/* ---- delete ---- */

struct deleting {
	char volume[PV_MAX_NAME + 1];
	char name[PV_MAX_NAME + 1];
	int why;
	snap_done_fn done;
	void *arg;
};

static int del_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct deleting *d = arg;
	Pv__VolumeInfo *vi = info_of(next, d->volume);
	long i = vi ? snap_index(vi, d->name) : -1;

	if (i < 0) {
		snprintf(err, errlen, vi ? "volume %s has no snapshot '%s'" : "no volume '%s'",
			 d->volume, d->name);
		d->why = ENOENT;
		return -1;
	}
	pv__snapshot_info__free_unpacked(vi->snapshots[i], NULL);
	for (size_t j = (size_t)i; j + 1 < vi->n_snapshots; j++)
		vi->snapshots[j] = vi->snapshots[j + 1];
	vi->n_snapshots--;
	return 0;
}

static void del_done(void *arg, int ok, const char *err)
{
	struct deleting *d = arg;

	if (ok || err)
		d->done(d->arg, ok, d->volume, NULL, 0, ok ? 0 : d->why, err);
	free(d);
}

int snap_delete(const char *volume, const char *name, snap_done_fn done, void *arg, char *err,
		size_t errlen)
{
	const Pv__VolumeInfo *vi = info_of(catalog_committed(), volume);
	struct deleting *d;
	struct change *ch;

	if (!vi) {
		snprintf(err, errlen, "no volume '%s'", volume);
		return -ENOENT;
	}
	if (snap_index(vi, name) < 0) {
		snprintf(err, errlen, "volume %s has no snapshot '%s'", volume, name);
		return -ENOENT;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(d->volume, sizeof(d->volume), "%s", volume);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->done = done;
	d->arg = arg;
	ch = change_new(0, del_build, del_done, d, "delete snapshot %s@%s", volume, name);
	if (!ch) {
		free(d);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	change_run(&ch);
	return 0;
}

/* ---- peers ---- */

static void diff_start(struct volume *vol, const Pv__SnapshotOp *op, const struct answer *ans,
		       uint64_t gen, int rollback);
static void diff_reply(struct member *m, const Pv__Header *h, const void *body, size_t len);


void snap_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	Pv__SnapshotOp *op =
	    body ? (Pv__SnapshotOp *)wire_body_decode(&pv__snapshot_op__descriptor, body, len)
		 : NULL;
	struct volume *vol = op && op->volume ? catalog_volume(op->volume) : NULL;
	char err[PV_MAX_MESSAGE] = "";
	int st;

	if (!op || !op->volume || !op->snap_id || op->timeout_ms > SNAP_TIMEOUT_MAX) {
		reply_status(from, h, PV_ST_BAD_REQUEST, "%s does not decode or is out of range",
			     wire_op_name(h->op));
	} else if (!vol || vol->id != op->volume_id) {
		reply_status(from, h, PV_ST_NO_VOLUME, "server %u has no volume %s of id %llu",
			     srv->cfg.id, op->volume, (unsigned long long)op->volume_id);
	} else if (h->op == PV_OP_SNAP_HOLD) {
		struct answer ans = {.from = *from, .op = h->op, .req_id = h->req_id};

		hold_begin(vol, op, &ans);
	} else if (h->op == PV_OP_SNAP_DIFF || h->op == PV_OP_SNAP_ROLLBACK) {
		struct answer ans = {.from = *from, .op = h->op, .req_id = h->req_id};

		diff_start(vol, op, &ans, 0, h->op == PV_OP_SNAP_ROLLBACK);
	} else {
		st = release(vol, op, err, sizeof(err));
		reply_status(from, h, st, "%s", err);
	}
	if (op)
		pv__snapshot_op__free_unpacked(op, NULL);
}

void snap_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	struct creating *c = cr;

	if (h->op == PV_OP_SNAP_DIFF || h->op == PV_OP_SNAP_ROLLBACK) {
		diff_reply(m, h, body, len);
		return;
	}
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		if (c->ids[i] == m->id && c->req[i] == h->req_id) {
			coord_answer(m->id, h->op, h->status, h->message); /* may free c */
			return;
		}
	}
}

/* ---- the catalog ---- */

int snap_validate(const Pv__Catalog *next, char *err, size_t errlen)
{
	for (size_t i = 0; i < next->n_volumes; i++) {
		const Pv__VolumeInfo *vi = next->volumes[i];
		struct volume *v = catalog_volume(vi->name);

		if (!v || v->id != vi->id || !v->snaps)
			continue;
		for (size_t j = 0; j < vi->n_snapshots; j++) {
			uint64_t id = vi->snapshots[j]->id;

			if (!is_committed(v->snaps, id) && r_find(v->snaps, id) < 0) {
				snprintf(err, errlen,
					 "server %u has no cut of snapshot %s@%s (its hold expired "
					 "or it restarted)",
					 srv->cfg.id, vi->name, vi->snapshots[j]->name);
				return -1;
			}
		}
	}
	return 0;
}

void snap_catalog_sync(struct volume *v, const Pv__VolumeInfo *vi)
{
	struct vol_snaps *vs = v->snaps;

	if (!vs)
		return;
	vs->ncommitted = 0;
	vs->seq = vi->snapshot_seq;
	for (size_t j = 0; j < vi->n_snapshots && j < SNAP_MAX; j++)
		vs->committed[vs->ncommitted++] = vi->snapshots[j]->id;
	for (size_t i = 0; i < vs->r_n; i++) {
		if (is_committed(vs, vs->r_ids[i]))
			vs->r_pending[i] = 0;
		else if (!vs->r_pending[i])
			drop(v, vs->r_ids[i]); /* deleted */
	}
}

static void remove_run(struct io_job *job)
{
	struct snap_job *j = job->arg;
	struct vol_snaps *vs = j->vol->snaps;
	char path[PATH_MAX + 80];
	struct meta_kv *kv = NULL;
	size_t nkv = 0;

	pthread_mutex_lock(&vs->mu);
	for (size_t i = 0; i < vs->n; i++) {
		struct snap *s = vs->list[i];
		struct meta_kv *n;

		for (uint64_t c = 0; c < vs->nchunks; c++) {
			if (!snapmap_has(&s->map, c))
				continue;
			n = realloc(kv, (nkv + 1) * sizeof(*kv));
			if (!n)
				break;
			kv = n;
			kv[nkv].db = SNAP_DB_CHUNKS;
			chunk_key(kv[nkv].key, j->vol->id, s->map.id, c);
			kv[nkv].val = NULL;
			kv[nkv++].len = 0;
		}
		n = realloc(kv, (nkv + 1) * sizeof(*kv));
		if (n) {
			kv = n;
			kv[nkv].db = SNAP_DB_PENDING;
			pending_key(kv[nkv].key, j->vol->id, s->map.id);
			kv[nkv].val = NULL;
			kv[nkv++].len = 0;
		}
		snap_path(j->vol, s->map.id, path, sizeof(path));
		unlink(path);
		snap_free(s);
	}
	vs->n = 0;
	pthread_mutex_unlock(&vs->mu);
	put_keys(kv, nkv);
	free(kv);
	snap_dir(j->vol, path, sizeof(path));
	rmdir(path);
	job->err = 0;
}

void snap_volume_removed(struct volume *v)
{
	if (!v->snaps || !v->snaps->r_n)
		return;
	v->snaps->r_n = 0;
	submit_call(v, 0, remove_run, NULL, NULL, NULL);
}

/* ---- loading ---- */

struct load_ctx {
	struct vol_snaps *vs;
	const struct volume *v;
	int chunks; /* 1: reading SNAP_DB_CHUNKS, 0: SNAP_DB_PENDING */
};

static struct snap *snap_of(struct vol_snaps *vs, uint64_t id)
{
	long i = find_locked(vs, id);
	struct snap *s;

	if (i >= 0)
		return vs->list[i];
	if (vs->n >= SNAP_MAX || !(s = snap_new(vs, id)))
		return NULL;
	insert_locked(vs, s);
	return s;
}

static int load_one(void *arg, const char *key, size_t klen, const void *val, size_t vlen)
{
	struct load_ctx *x = arg;
	char buf[48];
	unsigned long long vol, id, chunk = 0;
	struct snap *s;

	if (klen >= sizeof(buf))
		return 0;
	memcpy(buf, key, klen);
	buf[klen] = 0;
	if (x->chunks ? sscanf(buf, "%10llx%10llx%12llx", &vol, &id, &chunk) != 3
		      : sscanf(buf, "%10llx%10llx", &vol, &id) != 2)
		return 0;
	if (vol != x->v->id || chunk >= x->vs->nchunks || !(s = snap_of(x->vs, id)))
		return 0;
	if (x->chunks) {
		snapmap_set(&s->map, chunk, 1);
		snapmap_set_same(&s->map, chunk, vlen == 1 && *(const char *)val == 'm');
	} else {
		char rec[32] = "";

		memcpy(rec, val, vlen < sizeof(rec) - 1 ? vlen : sizeof(rec) - 1);
		s->pending_rec = 1;
		s->stamp = strtoull(rec, NULL, 10);
	}
	return 0;
}

int snap_volume_init(struct volume *v, const Pv__VolumeInfo *vi)
{
	struct vol_snaps *vs = calloc(1, sizeof(*vs));
	struct load_ctx x = {.vs = vs, .v = v};

	if (!vs)
		return -1;
	pthread_mutex_init(&vs->mu, NULL);
	vs->chunk = vi->chunk_size ? vi->chunk_size : SNAP_CHUNK_DEFAULT;
	vs->nchunks = (v->size + vs->chunk - 1) / vs->chunk;
	vs->held_tail = &vs->held;
	vs->seq = vi->snapshot_seq;
	v->snaps = vs;
	for (size_t j = 0; j < vi->n_snapshots && j < SNAP_MAX; j++) {
		struct snap *s = snap_of(vs, vi->snapshots[j]->id);

		vs->committed[vs->ncommitted++] = vi->snapshots[j]->id;
		if (s)
			s->stamp = vi->snapshots[j]->stamp;
	}
	meta_each(SNAP_DB_PENDING, load_one, &x);
	x.chunks = 1;
	meta_each(SNAP_DB_CHUNKS, load_one, &x);
	for (size_t i = 0; i < vs->n; i++) {
		struct snap *s = vs->list[i];
		int committed = is_committed(vs, s->map.id);

		if (open_file(v, s, committed) < 0 && committed)
			pv_err("snapshot: volume %s snapshot %llu: cannot open its file: %m; its "
			       "image reads zeros where it preserved data",
			       v->name, (unsigned long long)s->map.id);
		/* neither committed nor pending: deleted, its drop cut short
		 * (snap_tick drops it again) */
		r_add(vs, s->map.id, !committed && s->pending_rec, s->stamp);
	}
	{
		char key[24];
		void *val = NULL;
		size_t len = 0;

		snprintf(key, sizeof(key), "%010llx", (unsigned long long)v->id);
		if (meta_get(SNAP_DB_ROLLBACK, key, &val, &len) == 0 && val) {
			char num[24] = "";

			memcpy(num, val, len < sizeof(num) - 1 ? len : sizeof(num) - 1);
			vs->rollback_id = strtoull(num, NULL, 10);
			pv_warn("snapshot: volume %s: a rollback to snapshot %llu was cut short; it "
				"runs again",
				v->name, (unsigned long long)vs->rollback_id);
		}
		free(val);
	}
	if (vs->n)
		pv_info("snapshot: volume %s: %zu snapshot(s) here (%zu in the catalog)", v->name,
			vs->n, vs->ncommitted);
	return 0;
}

void snap_volume_free(struct volume *v)
{
	struct vol_snaps *vs = v->snaps;

	if (!vs)
		return;
	for (size_t i = 0; i < vs->n; i++)
		snap_free(vs->list[i]);
	pthread_mutex_destroy(&vs->mu);
	free(vs);
	v->snaps = NULL;
}

/* Once a second: a cut never committed (its coordinator gave up or died)
 * is dropped after SNAP_GC_MS, unless a catalog change may still commit it
 * (this server is locked by one, or behind another member); a snapshot no
 * longer in the catalog whose drop failed or was cut by a restart is
 * dropped again. */
void snap_tick(void *arg)
{
	uint64_t now = pv_now_ms(), gc_ms = SNAP_GC_MS;
	int behind = catalog_locked();
	char val[32];

	(void)arg;
	if (change_test_hook("snap-gc-ms", val, sizeof(val)))
		gc_ms = strtoull(val, NULL, 10);
	for (size_t i = 0; i < srv->nmembers; i++)
		behind |= srv->members[i].catalog_version > srv->version;
	for (struct volume *v = srv->volumes; v; v = v->next) {
		struct vol_snaps *vs = v->snaps;

		if (vs && vs->rollback_id && !vs->rollback_running && v->fd >= 0) {
			Pv__SnapshotOp op = PV__SNAPSHOT_OP__INIT;
			struct answer nobody = {.local = 2};

			op.snap_id = vs->rollback_id;
			diff_start(v, &op, &nobody, 0, 1);
		}
		for (size_t i = 0; vs && i < vs->r_n; i++) {
			uint64_t id = vs->r_ids[i];

			if (vs->r_dropping[i] || is_committed(vs, id) ||
			    (vs->hold && vs->hold->snap_id == id))
				continue;
			if (!vs->r_pending[i] ||
			    (!behind && now - vs->r_since_ms[i] > gc_ms)) {
				if (vs->r_pending[i])
					pv_warn("snapshot: volume %s: the cut of snapshot id %llu "
						"was never committed; dropping it",
						v->name, (unsigned long long)id);
				drop(v, id);
			}
		}
	}
}

/* ---- diff ---- */

/* A diff asked through this server: the members' answers gathered. */
struct gather {
	struct gather *next;
	uint64_t gen;
	char volume[PV_MAX_NAME + 1];
	uint32_t ids[PEERD_MAX_MEMBERS];
	uint64_t req[PEERD_MAX_MEMBERS];
	int answered[PEERD_MAX_MEMBERS];
	size_t n, nanswered;
	uint64_t *ranges; /* offset, length pairs */
	size_t nranges;
	snap_diff_fn done;
	void *arg;
};

static struct gather *gathers;
static uint64_t gather_gen;

/* One server's part of a diff, computed on an IO thread. */
struct diff_part {
	uint64_t from_id, to_id;
	uint64_t *ranges;
	size_t n, cap;
	int err;
	uint64_t gen; /* local: the gather's; else 0 */
	struct answer ans;
	int rollback;	  /* SNAP_ROLLBACK: make the pages snapshot to_id's image */
	int nobody;	  /* a rollback resumed at start: no one to answer */
	uint64_t *pages;  /* rollback: pages it changed (store_page_probe) */
	size_t npages;
};

static void range_add(struct diff_part *d, uint64_t off, uint64_t len)
{
	if (d->n && d->ranges[2 * d->n - 2] + d->ranges[2 * d->n - 1] == off) {
		d->ranges[2 * d->n - 1] += len;
		return;
	}
	if (d->n == d->cap) {
		uint64_t *r = realloc(d->ranges, (d->cap = d->cap ? 2 * d->cap : 64) * 2 *
						     sizeof(uint64_t));

		if (!r) {
			d->err = ENOMEM;
			return;
		}
		d->ranges = r;
	}
	d->ranges[2 * d->n] = off;
	d->ranges[2 * d->n + 1] = len;
	d->n++;
}

/* Whether fd holds data in [off, +len). */
static int has_data(int fd, uint64_t off, uint64_t len)
{
	off_t data = lseek(fd, off, SEEK_DATA);

	return data >= 0 && (uint64_t)data < off + len;
}

static void diff_run(struct io_job *job)
{
	struct snap_job *j = job->arg;
	struct diff_part *d = j->diff;
	struct volume *vol = j->vol;
	struct vol_snaps *vs = vol->snaps;
	long to, from = -1;

	pthread_mutex_lock(&vs->mu);
	to = find_locked(vs, d->to_id);
	if (d->from_id)
		from = find_locked(vs, d->from_id);
	if (to < 0 || (d->from_id && (from < 0 || from >= to))) {
		d->err = ESTALE;
		goto out;
	}
	/* owner[] is the reactor's; a page that switches meanwhile is listed
	 * by both or one of its servers with the same chunks (they moved with
	 * it), and the ranges are merged */
	for (uint64_t p = 0; p < vol->npages && !d->err; p++) {
		uint64_t start = p * vol->page_size, end = start + vol->page_size;

		if (vol->owner[p] != srv->cfg.id)
			continue;
		if (end > vol->size)
			end = vol->size;
		for (uint64_t off = start, len; off < end && !d->err; off += len) {
			uint64_t c = off / vs->chunk;
			int changed;

			len = snapmap_seg_len(off, end, vs->chunk);
			if (d->from_id) {
				changed = snapmap_changed(vs->maps, vs->n, (size_t)from, (size_t)to, c);
			} else {
				long r = snapmap_resolve(vs->maps, vs->n, (size_t)to, c);
				int fd = r < 0 ? vol->fd : vs->list[r]->fd;

				changed = fd >= 0 && has_data(fd, off, len);
			}
			if (changed)
				range_add(d, off, len);
		}
	}
out:
	pthread_mutex_unlock(&vs->mu);
	job->err = d->err;
}

/* The rollback of this server's pages of a volume to snapshot to_id (IO
 * thread, under the lock): a chunk whose image comes from a snapshot file
 * is first preserved into the newest snapshot (which keeps the volume's
 * present content for the snapshots after to_id), then overwritten with the
 * image (a hole in the image punches one). Recorded in LMDB
 * "snap_rollback" before it starts and cleared after the volume is synced:
 * a crash in between runs it again at start, and running it again gives
 * the same volume. */
static void rollback_run(struct io_job *job)
{
	struct snap_job *j = job->arg;
	struct diff_part *d = j->diff;
	struct volume *vol = j->vol;
	struct vol_snaps *vs = vol->snaps;
	uint8_t *buf = malloc(vs->chunk);
	char val[24];
	struct meta_kv kv = {.db = SNAP_DB_ROLLBACK, .val = val};
	long to;

	snprintf(kv.key, sizeof(kv.key), "%010llx", (unsigned long long)vol->id);
	kv.len = (size_t)snprintf(val, sizeof(val), "%llu", (unsigned long long)d->to_id);
	pthread_mutex_lock(&vs->mu);
	to = find_locked(vs, d->to_id);
	if (to < 0 || vol->fd < 0) {
		d->err = to < 0 ? ESTALE : EIO;
		goto out;
	}
	if (!buf || meta_put_many(&kv, 1) < 0) {
		d->err = buf ? EIO : ENOMEM;
		goto out;
	}
	for (uint64_t p = 0; p < vol->npages && !d->err; p++) {
		uint64_t start = p * vol->page_size, end = start + vol->page_size, copied = 0;
		int changed = 0;

		if (vol->owner[p] != srv->cfg.id)
			continue;
		if (end > vol->size)
			end = vol->size;
		for (uint64_t off = start, len; off < end && !d->err; off += len) {
			uint64_t c = off / vs->chunk;
			long r = snapmap_resolve(vs->maps, vs->n, (size_t)to, c);

			len = snapmap_seg_len(off, end, vs->chunk);
			if (r < 0)
				continue; /* unchanged since the cut */
			if (!snapmap_has(vs->maps[vs->n - 1], c) ||
			    snapmap_same(vs->maps[vs->n - 1], c))
				d->err = cow_locked(vol, vs, vs->list[vs->n - 1], off, len, 0);
			if (!d->err && fallocate(vol->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						 off, len) < 0)
				d->err = errno;
			if (!d->err && vs->list[r]->fd >= 0)
				d->err = copy_range(vs->list[r]->fd, vol->fd, off, len, buf, &copied);
			changed = 1;
		}
		if (changed && !d->err) {
			uint64_t *np = realloc(d->pages, (d->npages + 1) * sizeof(uint64_t));

			if (np) {
				d->pages = np;
				d->pages[d->npages++] = p;
			}
		}
	}
	if (!d->err && fdatasync(vol->fd) < 0)
		d->err = errno;
	if (!d->err) {
		kv.val = NULL;
		kv.len = 0;
		if (meta_put_many(&kv, 1) < 0)
			d->err = EIO;
	}
out:
	pthread_mutex_unlock(&vs->mu);
	free(buf);
	job->err = d->err;
}

static void gather_part(uint64_t gen, uint32_t from, int status, const char *msg,
			const uint64_t *offsets, const uint64_t *lengths, size_t n);

static void rollback_done(struct volume *vol, struct diff_part *d, const char *msg);

/* A rollback's end here (reactor): the changed pages' map bits, the log. */
static void rollback_done(struct volume *vol, struct diff_part *d, const char *msg)
{
	vol->snaps->rollback_running = 0;
	vol->snaps->rollback_id = 0;
	for (size_t i = 0; i < d->npages; i++)
		store_page_probe(vol, d->pages[i]);
	if (d->err) {
		pv_err("snapshot: volume %s: rollback to snapshot %llu failed: %s; it runs again "
		       "at the next start of server %u (check the disk of %s)",
		       vol->name, (unsigned long long)d->to_id, msg, srv->cfg.id, srv->cfg.data_dir);
		return;
	}
	pv_info("snapshot: volume %s rolled back here to snapshot %llu (%zu pages changed)",
		vol->name, (unsigned long long)d->to_id, d->npages);
}

static void diff_after(struct snap_job *j)
{
	struct diff_part *d = j->diff;
	int st = d->err == ESTALE ? PV_ST_NO_VOLUME : d->err ? PV_ST_IO_ERROR : PV_ST_OK;
	char msg[200] = "";

	if (d->err)
		snprintf(msg, sizeof(msg), "server %u: %s", srv->cfg.id,
			 d->err == ESTALE ? "no such snapshot here" : strerror(d->err));
	if (d->rollback)
		rollback_done(j->vol, d, msg);
	/* the ranges as two arrays, as pv.SnapshotRanges has them */
	uint64_t *off = malloc((d->n + 1) * sizeof(uint64_t));
	uint64_t *len = malloc((d->n + 1) * sizeof(uint64_t));

	for (size_t i = 0; off && len && i < d->n; i++) {
		off[i] = d->ranges[2 * i];
		len[i] = d->ranges[2 * i + 1];
	}
	if (!off || !len)
		st = PV_ST_BUSY;
	if (d->nobody) {
		/* a rollback resumed at start */
	} else if (d->ans.local) {
		gather_part(d->gen, srv->cfg.id, st, msg, off, len, st == PV_ST_OK ? d->n : 0);
	} else {
		Pv__SnapshotRanges r = PV__SNAPSHOT_RANGES__INIT;
		Pv__Header rh;

		r.offset = off;
		r.length = len;
		r.n_offset = r.n_length = st == PV_ST_OK ? d->n : 0;
		wire_header_init(&rh);
		rh.op = d->ans.op;
		rh.req_id = d->ans.req_id;
		reply_body(&d->ans.from, &rh, st, st == PV_ST_OK ? NULL : msg,
			   st == PV_ST_OK ? &r.base : NULL);
	}
	free(off);
	free(len);
	free(d->ranges);
	free(d->pages);
	free(d);
	j->diff = NULL;
}

/* Computes this server's part of a diff of vol and answers ans. */
static void diff_start(struct volume *vol, const Pv__SnapshotOp *op, const struct answer *ans,
		       uint64_t gen, int rollback)
{
	struct diff_part *d;

	if (rollback && migrate_volume_moving(vol)) {
		/* a page moving out or in is at two servers: rolling back one
		 * copy would leave the other as it was */
		if (!ans->local) {
			Pv__Header rh;

			wire_header_init(&rh);
			rh.op = ans->op;
			rh.req_id = ans->req_id;
			reply_body(&ans->from, &rh, PV_ST_BUSY,
				   "pages of the volume are moving; roll back when 'peerctl "
				   "migrations' shows none",
				   NULL);
		} else if (ans->local == 1) {
			gather_part(gen, srv->cfg.id, PV_ST_BUSY,
				    "pages of the volume are moving; roll back when 'peerctl "
				    "migrations' shows none",
				    NULL, NULL, 0);
		}
		return; /* a rollback resumed at start runs at a later tick */
	}
	d = calloc(1, sizeof(*d));
	if (d) {
		d->from_id = op->from_id;
		d->to_id = op->snap_id;
		d->ans = *ans;
		d->gen = gen;
		d->rollback = rollback;
		d->nobody = ans->local == 2;
	}
	if (rollback) {
		vol->snaps->rollback_id = op->snap_id;
		vol->snaps->rollback_running = d != NULL;
	}
	if (!d || submit_call(vol, op->snap_id, rollback ? rollback_run : diff_run, diff_after,
			      NULL, d) < 0) {
		if (rollback)
			vol->snaps->rollback_running = 0;
		free(d);
		if (ans->local == 1) {
			gather_part(gen, srv->cfg.id, PV_ST_BUSY, "out of memory", NULL, NULL, 0);
		} else if (!ans->local) {
			Pv__Header rh;

			wire_header_init(&rh);
			rh.op = ans->op;
			rh.req_id = ans->req_id;
			reply_body(&ans->from, &rh, PV_ST_BUSY, "out of memory", NULL);
		}
	}
}

static struct gather *gather_find(uint64_t gen)
{
	for (struct gather *g = gathers; g; g = g->next)
		if (g->gen == gen)
			return g;
	return NULL;
}

static void gather_end(struct gather *g, int ok, const char *err)
{
	for (struct gather **p = &gathers; *p; p = &(*p)->next) {
		if (*p == g) {
			*p = g->next;
			break;
		}
	}
	g->done(g->arg, ok, g->ranges, g->nranges, ok ? 0 : err && strstr(err, "no such") ? ENOENT : 0,
		err);
	free(g->ranges);
	free(g);
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void gather_part(uint64_t gen, uint32_t from, int status, const char *msg,
			const uint64_t *offsets, const uint64_t *lengths, size_t n)
{
	struct gather *g = gather_find(gen);
	char err[PV_MAX_MESSAGE + 64];
	size_t i, k = 0;

	if (!g)
		return;
	for (i = 0; i < g->n && g->ids[i] != from; i++)
		;
	if (i == g->n || g->answered[i])
		return;
	g->answered[i] = 1;
	if (status != PV_ST_OK) {
		snprintf(err, sizeof(err), "server %u: %s", from,
			 msg && *msg ? msg : wire_status_name(status));
		gather_end(g, 0, err);
		return;
	}
	uint64_t *r = realloc(g->ranges, (g->nranges + n + 1) * 2 * sizeof(uint64_t));

	if (!r) {
		gather_end(g, 0, "out of memory");
		return;
	}
	g->ranges = r;
	for (size_t j = 0; j < n; j++) {
		r[2 * (g->nranges + j)] = offsets[j];
		r[2 * (g->nranges + j) + 1] = lengths[j];
	}
	g->nranges += n;
	if (++g->nanswered < g->n)
		return;
	/* every member answered: sorted, adjacent ranges merged */
	qsort(g->ranges, g->nranges, 2 * sizeof(uint64_t), cmp_range);
	for (size_t j = 0; j < g->nranges; j++) {
		if (k && g->ranges[2 * k - 2] + g->ranges[2 * k - 1] == g->ranges[2 * j]) {
			g->ranges[2 * k - 1] += g->ranges[2 * j + 1];
			continue;
		}
		g->ranges[2 * k] = g->ranges[2 * j];
		g->ranges[2 * k + 1] = g->ranges[2 * j + 1];
		k++;
	}
	g->nranges = k;
	gather_end(g, 1, NULL);
}

static void gather_timeout(void *arg)
{
	struct gather *g = gather_find((uintptr_t)arg);
	char late[200] = "";
	size_t len = 0;

	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		if (!g->answered[i] && len < sizeof(late) - 12)
			len += snprintf(late + len, sizeof(late) - len, "%s%u", len ? ", " : "",
					g->ids[i]);
	char err[300];

	snprintf(err, sizeof(err), "no answer from server(s) %s within %d s", late,
		 SNAP_DIFF_TIMEOUT_MS / 1000);
	gather_end(g, 0, err);
}

static int gather_run(struct volume *vol, Pv__SnapshotOp *op, uint32_t opcode, snap_diff_fn done,
		      void *arg, char *err, size_t errlen);

int snap_diff(const char *volume, const char *name, const char *from, snap_diff_fn done, void *arg,
	      char *err, size_t errlen)
{
	const Pv__VolumeInfo *vi = info_of(catalog_committed(), volume);
	struct volume *vol = catalog_volume(volume);
	Pv__SnapshotOp op = PV__SNAPSHOT_OP__INIT;
	long to, fr = -1;

	if (!vi || !vol) {
		snprintf(err, errlen, "no volume '%s'", volume);
		return -ENOENT;
	}
	to = snap_index(vi, name);
	if (to < 0 || (from && *from && (fr = snap_index(vi, from)) < 0)) {
		snprintf(err, errlen, "volume %s has no snapshot '%s'", volume,
			 to < 0 ? name : from);
		return -ENOENT;
	}
	if (fr >= 0 && vi->snapshots[fr]->id >= vi->snapshots[to]->id) {
		snprintf(err, errlen, "snapshot %s of volume %s is not older than %s", from, volume,
			 name);
		return -1;
	}
	op.volume = (char *)volume;
	op.volume_id = vol->id;
	op.name = (char *)name;
	op.snap_id = vi->snapshots[to]->id;
	op.from_id = fr >= 0 ? vi->snapshots[fr]->id : 0;
	return gather_run(vol, &op, PV_OP_SNAP_DIFF, done, arg, err, errlen);
}

/* Asks every member (this server too) for its part of op (SNAP_DIFF or
 * SNAP_ROLLBACK) and answers done with the parts merged. */
static int gather_run(struct volume *vol, Pv__SnapshotOp *op, uint32_t opcode, snap_diff_fn done,
		      void *arg, char *err, size_t errlen)
{
	struct gather *g;
	uint64_t gen;

	for (size_t i = 0; i < srv->nmembers; i++) {
		if (srv->members[i].id != srv->cfg.id && !srv->members[i].up) {
			snprintf(err, errlen,
				 "server %u is down: a %s needs every server's chunk maps",
				 srv->members[i].id,
				 opcode == PV_OP_SNAP_DIFF ? "diff" : "rollback");
			return -1;
		}
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	gen = g->gen = ++gather_gen;
	snprintf(g->volume, sizeof(g->volume), "%s", vol->name);
	g->done = done;
	g->arg = arg;
	for (size_t i = 0; i < srv->nmembers; i++)
		g->ids[g->n++] = srv->members[i].id;
	g->next = gathers;
	gathers = g;
	reactor_after(SNAP_DIFF_TIMEOUT_MS, gather_timeout, (void *)(uintptr_t)gen);
	for (size_t i = 0; gather_find(gen) && i < g->n; i++) { /* g may end */
		struct member *m = catalog_member(g->ids[i]);
		Pv__Header h;

		if (g->ids[i] == srv->cfg.id) {
			struct answer ans = {.local = 1};

			diff_start(vol, op, &ans, gen, opcode == PV_OP_SNAP_ROLLBACK);
			continue;
		}
		wire_header_init(&h);
		h.op = opcode;
		h.req_id = peers_next_id();
		g->req[i] = h.req_id;
		if (!m || reply_send_member(m, &h, NULL, &op->base) < 0)
			gather_part(gen, g->ids[i], PV_ST_UNAVAILABLE, "unreachable", NULL, NULL, 0);
	}
	return 0;
}

int snap_rollback(const char *volume, const char *name, int force, snap_diff_fn done, void *arg,
		  char *err, size_t errlen)
{
	const Pv__VolumeInfo *vi = info_of(catalog_committed(), volume);
	struct volume *vol = catalog_volume(volume);
	Pv__SnapshotOp op = PV__SNAPSHOT_OP__INIT;
	uint32_t open = 0;
	long to;

	if (!vi || !vol) {
		snprintf(err, errlen, "no volume '%s'", volume);
		return -ENOENT;
	}
	to = snap_index(vi, name);
	if (to < 0) {
		snprintf(err, errlen, "volume %s has no snapshot '%s'", volume, name);
		return -ENOENT;
	}
	if (cr && !strcmp(cr->volume, volume)) {
		snprintf(err, errlen, "a snapshot of volume %s is being made; try again", volume);
		return -1;
	}
	if (migrate_volume_moving_group(vol)) {
		/* a member where one moves would refuse its part (BUSY) */
		snprintf(err, errlen,
			 "pages of volume %s are moving; roll back when 'peerctl migrations' shows "
			 "none",
			 volume);
		return -1;
	}
	/* clients through this server, and through the others as of their
	 * last heartbeats */
	open = clients_open_count(volume);
	for (size_t i = 0; i < srv->nmembers; i++) {
		const Pv__Heartbeat *hb = srv->members[i].last_hb;

		for (size_t k = 0; hb && srv->members[i].id != srv->cfg.id && k < hb->n_volumes; k++)
			if (hb->volumes[k]->name && !strcmp(hb->volumes[k]->name, volume))
				open += hb->volumes[k]->open_clients;
	}
	if (open && !force) {
		snprintf(err, errlen,
			 "volume %s is open by %u client(s); unmount or detach it, or use --force "
			 "(they would see its content change under them)",
			 volume, open);
		return -1;
	}
	op.volume = (char *)volume;
	op.volume_id = vol->id;
	op.name = (char *)name;
	op.snap_id = vi->snapshots[to]->id;
	pv_info("snapshot: rolling volume %s back to %s@%s%s", volume, volume, name,
		open ? " (forced: clients have it open)" : "");
	return gather_run(vol, &op, PV_OP_SNAP_ROLLBACK, done, arg, err, errlen);
}

/* A member's answer to SNAP_DIFF. */
static void diff_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	for (struct gather *g = gathers; g; g = g->next) {
		for (size_t i = 0; i < g->n; i++) {
			Pv__SnapshotRanges *r;

			if (g->ids[i] != m->id || g->req[i] != h->req_id)
				continue;
			r = h->status == PV_ST_OK && body
				? (Pv__SnapshotRanges *)wire_body_decode(
				      &pv__snapshot_ranges__descriptor, body, len)
				: NULL;
			if (h->status == PV_ST_OK && (!r || r->n_offset != r->n_length))
				gather_part(g->gen, m->id, PV_ST_BAD_REQUEST,
					    "its answer does not decode", NULL, NULL, 0);
			else
				gather_part(g->gen, m->id, h->status, h->message,
					    r ? r->offset : NULL, r ? r->length : NULL,
					    r ? r->n_offset : 0);
			if (r)
				pv__snapshot_ranges__free_unpacked(r, NULL);
			return;
		}
	}
}
