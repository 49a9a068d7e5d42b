/* store.c: the only file that touches volume data. One sparse file per
 * volume, DATA/volumes/NAME.vol, sized to the volume: a page lives at its own
 * volume offset, so unwritten space and pages owned elsewhere cost no disk,
 * TRIM punches holes and a hole reads as zeros. store_do runs on IO worker
 * threads (one job at a time, no shared state); the rest on the reactor. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "peerd.h"

static int map_build(struct volume *vol);

/* A volume's IO failures are logged at most once a minute. */
#define STORE_LOG_EVERY_MS 60000

static void volume_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/volumes/%s.vol", srv->cfg.data_dir, name);
}

/* dir/name in a static buffer. */
static const char *path_of(const char *dir, const char *name)
{
	static char buf[PATH_MAX + 300];

	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

/* Makes the entries of DATA/volumes durable (a file created or removed
 * there survives a power cut as it is now). 0 or -1 (logged). */
static int sync_volumes_dir(void)
{
	char path[PATH_MAX + 16];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/volumes", srv->cfg.data_dir);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		pv_err("cannot sync directory %s: %m; check the disk", path);
		rc = -1;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

int store_open(struct volume *vol)
{
	char path[PATH_MAX + 80];
	struct stat st;
	struct statfs sfs;
	int fd;

	if (vol->fd >= 0)
		return 0;
	snprintf(path, sizeof(path), "%s/volumes", srv->cfg.data_dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		pv_err("cannot create %s: %m", path);
		return -1;
	}
	volume_path(vol->name, path, sizeof(path));
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* a new data file: its name is durable before any data is */
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 && sync_volumes_dir() < 0) {
			close(fd);
			return -1;
		}
	}
	if (fd < 0) {
		pv_err("volume %s: cannot open data file %s: %m", vol->name, path);
		return -1;
	}
	if (fstat(fd, &st) < 0 ||
	    ((uint64_t)st.st_size != vol->size && ftruncate(fd, vol->size) < 0)) {
		pv_err("volume %s: cannot size data file %s to %llu bytes: %m", vol->name, path,
		       (unsigned long long)vol->size);
		close(fd);
		return -1;
	}
	vol->fd = fd;
	vol->flush_err = 0; /* a new file description: the kernel reports anew */
	vol->dev = st.st_dev;
	vol->ino = st.st_ino;
	vol->inline_io = STORE_INLINE_READ | STORE_INLINE_WRITE;
	if (fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC)
		vol->inline_io |= STORE_INLINE_MEMORY;
	if (!vol->written_map && map_build(vol) < 0) {
		pv_err("volume %s: out of memory for the page map", vol->name);
		close(fd);
		vol->fd = -1;
		return -1;
	}
	return 0;
}

void store_close(struct volume *vol)
{
	if (vol->fd >= 0)
		close(vol->fd);
	vol->fd = -1;
}

int store_remove(const char *name)
{
	char path[PATH_MAX + 80];

	volume_path(name, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT) {
		pv_err("volume %s: cannot remove data file %s: %m", name, path);
		return -1;
	}
	/* durable now: a volume created later under this name must never find
	 * the old file again after a power cut */
	return sync_volumes_dir();
}

int store_sweep(void)
{
	char path[PATH_MAX + 16], aside[PATH_MAX + 16];
	struct dirent *e;
	int removed = 0;
	DIR *d;

	snprintf(aside, sizeof(aside), "%s/orphans", srv->cfg.data_dir);
	snprintf(path, sizeof(path), "%s/volumes", srv->cfg.data_dir);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : (pv_err("cannot read %s: %m", path), -1);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char name[PV_MAX_NAME + 1];

		if (len <= 4 || strcmp(e->d_name + len - 4, ".vol") || len - 4 > PV_MAX_NAME)
			continue;
		memcpy(name, e->d_name, len - 4);
		name[len - 4] = '\0';
		char to[PATH_MAX + 160];

		if (catalog_volume(name))
			continue;
		/* a volume deleted just before a crash (its file was not removed
		 * yet): a volume created later under the name must never see it.
		 * Moved aside, not removed: a data file is never destroyed on a
		 * guess */
		snprintf(to, sizeof(to), "%s/%s.%llu", aside, e->d_name,
			 (unsigned long long)time(NULL));
		if ((mkdir(aside, 0700) < 0 && errno != EEXIST) ||
		    rename(path_of(path, e->d_name), to) < 0) {
			pv_err(
			    "cannot move %s/%s, the data file of a volume not in the catalog, to "
			    "%s: %m; move it away by hand before creating a volume named %s",
			    path, e->d_name, aside, name);
			continue;
		}
		pv_warn(
		    "moved %s/%s to %s: it is the data file of volume %s, which is not in the "
		    "catalog (deleted just before this server stopped?); remove it once you are "
		    "sure it holds nothing you need",
		    path, e->d_name, to, name);
		removed++;
	}
	closedir(d);
	return removed ? sync_volumes_dir() : 0;
}

static int do_read(struct io_job *job)
{
	uint64_t done = 0;

	while (done < job->length) {
		ssize_t n = pread(job->fd, job->ptr + done, job->length - done, job->offset + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0) { /* past the file's end: zeros, as a hole */
			memset(job->ptr + done, 0, job->length - done);
			break;
		}
		done += n;
	}
	return 0;
}

static int do_write(struct io_job *job)
{
	uint64_t done = 0;

	while (done < job->length) {
		struct iovec iov = {job->ptr + done, job->length - done};
		ssize_t n =
		    pwritev2(job->fd, &iov, 1, job->offset + done, job->fua ? RWF_DSYNC : 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		done += n;
	}
	return 0;
}

int store_try_inline(struct io_job *job)
{
	struct volume *vol = job->req->vol;
	struct iovec iov = {job->ptr, job->length};
	int bit = job->kind == IO_READ ? STORE_INLINE_READ : STORE_INLINE_WRITE;
	ssize_t n;

	if (job->fua || (job->kind != IO_READ && job->kind != IO_WRITE) || job->snap_id ||
	    job->snap_cow || job->snap_late)
		return 0;
	if (vol->inline_io & STORE_INLINE_MEMORY) {
		/* tmpfs: a page cache miss is a hole, nothing waits for a disk.
		 * Any size: writes to one file serialize on its inode lock,
		 * so IO threads would only spin on it (rwsem_spin_on_owner). */
		store_do(job);
		return 1;
	}
	if (job->length > STORE_INLINE_MAX)
		return 0;
	if (!(vol->inline_io & bit))
		return 0;
	if (job->kind == IO_READ)
		n = preadv2(job->fd, &iov, 1, job->offset, RWF_NOWAIT);
	else
		n = pwritev2(job->fd, &iov, 1, job->offset, RWF_NOWAIT);
	if (n == (ssize_t)job->length) {
		job->err = 0;
		return 1;
	}
	if (n < 0 && errno == EOPNOTSUPP) {
		/* this file system has no non-blocking path: stop trying */
		vol->inline_io &= ~bit;
		pv_info("volume %s: %s on %s cannot be tried without blocking; all go to the IO "
			"threads",
			vol->name, job->kind == IO_READ ? "reads" : "writes", srv->cfg.data_dir);
	}
	/* EAGAIN (would block), a short transfer or an error: the worker
	 * does it again from the start, blocking */
	return 0;
}

void store_do(struct io_job *job)
{
	int err = 0;

	if ((job->snap_cow && (err = snap_cow(job))) || /* preserved first */
	    (job->snap_late && (err = snap_late_begin(job)))) {
		job->err = err;
		return;
	}
	switch (job->kind) {
	case IO_READ:
		err = job->snap_id ? snap_read(job) : do_read(job);
		break;
	case IO_WRITE:
		err = do_write(job);
		break;
	case IO_TRIM:
		if (fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, job->offset,
			      job->length) < 0)
			err = errno;
		break;
	case IO_FLUSH:
		if (fdatasync(job->fd) < 0)
			err = errno;
		break;
	case IO_CALL:
		job->run(job); /* sets job->err itself */
		return;
	}
	if (job->snap_late)
		snap_late_end(job); /* the lock it took for the write */
	job->err = err;
}

/* Whether page p of vol holds any data in the file. */
static int page_has_data(struct volume *vol, uint64_t p)
{
	off_t start = p * vol->page_size;
	off_t data = lseek(vol->fd, start, SEEK_DATA);

	return data >= 0 && (uint64_t)data < (p + 1) * vol->page_size && (uint64_t)data < vol->size;
}

static void map_set(struct volume *vol, uint64_t p, int on)
{
	if (on)
		vol->written_map[p / 64] |= 1ull << (p % 64);
	else
		vol->written_map[p / 64] &= ~(1ull << (p % 64));
}

/* Builds the page map of a freshly opened file: walks its data extents. */
static int map_build(struct volume *vol)
{
	off_t pos = 0;

	vol->written_map = calloc((vol->npages + 63) / 64, sizeof(uint64_t));
	if (!vol->written_map)
		return -1;
	while ((uint64_t)pos < vol->size) {
		off_t data = lseek(vol->fd, pos, SEEK_DATA);
		off_t hole;

		if (data < 0)
			break; /* ENXIO: no more data */
		hole = lseek(vol->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > vol->size)
			hole = vol->size;
		for (uint64_t p = data / vol->page_size;
		     p * vol->page_size < (uint64_t)hole && p < vol->npages; p++)
			map_set(vol, p, 1);
		/* continue at the next page: the rest of this one is counted */
		pos = ((hole + vol->page_size - 1) / vol->page_size) * vol->page_size;
		if (pos <= data)
			break;
	}
	return 0;
}

static const char *kind_name(enum io_kind kind)
{
	switch (kind) {
	case IO_READ:
		return "READ";
	case IO_WRITE:
		return "WRITE";
	case IO_TRIM:
		return "TRIM";
	case IO_FLUSH:
		return "FLUSH";
	case IO_CALL:
		return "migration IO";
	}
	return "?";
}

/* A write failed for want of space and STORE_LOW_FREE has not been free
 * since (store_disk_full). Reactor only. */
static int no_space_seen;

/* Logs a failed job of vol: the first in a minute, with the count of those
 * left unlogged since the last one (a full disk fails every write). */
static void log_failure(struct volume *vol, const struct io_job *job)
{
	uint64_t now = pv_now_ms();
	char more[80] = "", freebuf[32];
	int err = job->err;

	if (vol->err_logged_ms && now - vol->err_logged_ms < STORE_LOG_EVERY_MS) {
		vol->err_unlogged++;
		return;
	}
	if (vol->err_unlogged)
		snprintf(more, sizeof(more), " (and %llu other failures in the last minute)",
			 (unsigned long long)vol->err_unlogged);
	vol->err_logged_ms = now;
	vol->err_unlogged = 0;
	if (err == ENOSPC || err == EDQUOT) {
		pv_format_size(store_free(), freebuf, sizeof(freebuf));
		pv_err("volume %s, server %u: no space left on %s (%s free): %s of %llu bytes at "
		       "offset %llu failed%s. Writes to the pages this server holds fail with "
		       "NO_SPACE (the clients see ENOSPC or an I/O error) until space is freed; "
		       "reads and everything written before are unaffected. Free space on that "
		       "file system: delete other files there, trim unused blocks of the "
		       "volumes (fstrim on the hosts), or delete a volume",
		       vol->name, srv->cfg.id, srv->cfg.data_dir, freebuf, kind_name(job->kind),
		       (unsigned long long)job->length, (unsigned long long)job->offset, more);
		return;
	}
	errno = err;
	pv_err("volume %s, server %u: %s of %llu bytes at offset %llu failed: %m%s; check the disk "
	       "under %s",
	       vol->name, srv->cfg.id, kind_name(job->kind), (unsigned long long)job->length,
	       (unsigned long long)job->offset, more, srv->cfg.data_dir);
}

/* A FLUSH that failed may have lost writes it was to make durable, and the
 * kernel reports that once per file: every later FLUSH of vol fails too, so
 * that no client is told its data is safe (until the file is opened again,
 * at the next start). */
static void note_flush(struct volume *vol, struct io_job *job)
{
	if (!job->err) {
		job->err = vol->flush_err;
		return;
	}
	if (vol->flush_err)
		return;
	vol->flush_err = job->err;
	errno = job->err;
	pv_err("volume %s, server %u: FLUSH (fdatasync of %s/volumes/%s.vol) failed: %m; writes "
	       "acknowledged before may not be on disk. Every later FLUSH of this volume here "
	       "fails too until peerd is restarted: check that disk, free space on it if it "
	       "is full, then restart peerd and check the file systems on the volume (fsck)",
	       vol->name, srv->cfg.id, srv->cfg.data_dir, vol->name);
}

void store_note_done(struct volume *vol, struct io_job *job)
{
	uint64_t first, last;

	if (job->kind == IO_FLUSH)
		note_flush(vol, job);
	if (job->err) {
		if (job->err == ENOSPC || job->err == EDQUOT) {
			vol->no_space = 1;
			no_space_seen = 1;
		}
		log_failure(vol, job);
	} else if (job->kind == IO_WRITE && vol->no_space && store_free() >= STORE_LOW_FREE) {
		char freebuf[32];

		vol->no_space = 0;
		pv_info("volume %s, server %u: writes succeed again (%s free on %s)", vol->name,
			srv->cfg.id, pv_format_size(store_free(), freebuf, sizeof(freebuf)),
			srv->cfg.data_dir);
	}
	if (!vol->written_map || !job->length || (job->kind != IO_WRITE && job->kind != IO_TRIM))
		return;
	first = job->offset / vol->page_size;
	last = (job->offset + job->length - 1) / vol->page_size;
	/* a failed write may have written (and allocated) part of its range */
	for (uint64_t p = first; p <= last && p < vol->npages; p++)
		map_set(vol, p, job->kind == IO_WRITE && !job->err ? 1 : page_has_data(vol, p));
}

int store_disk_full(void)
{
	if (no_space_seen && store_free() >= STORE_LOW_FREE)
		no_space_seen = 0;
	return no_space_seen;
}

int store_stat(struct volume *vol, uint64_t *pages_written, uint64_t *bytes)
{
	struct stat st;
	uint64_t written = 0;

	*pages_written = 0;
	*bytes = 0;
	if (vol->fd < 0 || !vol->written_map)
		return 0;
	if (fstat(vol->fd, &st) < 0)
		return -1;
	*bytes = (uint64_t)st.st_blocks * 512;
	for (uint64_t i = 0; i < (vol->npages + 63) / 64; i++)
		written += __builtin_popcountll(vol->written_map[i]);
	*pages_written = written;
	return 0;
}

int store_can_hold(uint64_t size, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];
	int fd, rc = 0;

	if (store_disk_full()) {
		char freebuf[32];

		snprintf(err, errlen,
			 "server %u's data file system is full (%s free in %s; writes to its "
			 "pages fail): free space there first",
			 srv->cfg.id, pv_format_size(store_free(), freebuf, sizeof(freebuf)),
			 srv->cfg.data_dir);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/volumes", srv->cfg.data_dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "server %u cannot create %s: %s", srv->cfg.id, path,
			 strerror(errno));
		return 0;
	}
	snprintf(path, sizeof(path), "%s/volumes/.probe", srv->cfg.data_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "server %u cannot write in %s/volumes: %s", srv->cfg.id,
			 srv->cfg.data_dir, strerror(errno));
		return 0;
	}
	if (ftruncate(fd, size) < 0) {
		snprintf(err, errlen,
			 "server %u cannot hold a volume file of %llu bytes in %s: %s (the file "
			 "system's largest file is smaller)",
			 srv->cfg.id, (unsigned long long)size, srv->cfg.data_dir, strerror(errno));
		rc = 0;
	} else {
		rc = 1;
	}
	close(fd);
	unlink(path);
	return rc;
}

uint64_t store_free(void)
{
	struct statvfs sv;

	if (statvfs(srv->cfg.data_dir, &sv) < 0)
		return 0;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

int store_punch_page(struct volume *vol, uint64_t page)
{
	uint64_t off = page * vol->page_size;
	uint64_t len = vol->page_size;

	if (vol->fd < 0)
		return 0;
	if (off + len > vol->size)
		len = vol->size - off;
	if (fallocate(vol->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) < 0) {
		pv_err("volume %s page %llu: cannot punch out data: %m", vol->name,
		       (unsigned long long)page);
		return -1;
	}
	return 0;
}

/* cachestat(2), Linux 6.5; glibc 2.36 has no wrapper and its headers no
 * number or structs. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct pv_cachestat_range {
	uint64_t off;
	uint64_t len;
};
struct pv_cachestat {
	uint64_t nr_cache;
	uint64_t nr_dirty;
	uint64_t nr_writeback;
	uint64_t nr_evicted;
	uint64_t nr_recently_evicted;
};

int store_resident(const struct volume *vol, uint64_t offset, uint64_t length)
{
	static int unsupported;
	struct pv_cachestat_range r = {offset, length};
	struct pv_cachestat cs;
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t pages;

	if (unsupported || vol->fd < 0 || !length)
		return 0;
	if (syscall(__NR_cachestat, vol->fd, &r, &cs, 0) < 0) {
		if (errno == ENOSYS) {
			pv_info("this kernel has no cachestat(2) (Linux 6.5): clients on this "
				"host get every READ's data from this server, none from their "
				"mapping of its data files");
			unsupported = 1;
		}
		return 0;
	}
	pages = (offset + length - 1) / ps - offset / ps + 1;
	return cs.nr_cache >= pages;
}

int store_read_piece(struct volume *vol, uint64_t off, uint64_t len, uint8_t *buf, int *hole)
{
	off_t data = lseek(vol->fd, (off_t)off, SEEK_DATA);
	uint64_t done = 0;

	*hole = 0;
	if ((data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= off + len)) {
		*hole = 1;
		return 0;
	}
	while (done < len) {
		ssize_t n = pread(vol->fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0) {
			memset(buf + done, 0, len - done); /* past the end: zeros */
			break;
		}
		done += (uint64_t)n;
	}
	return 0;
}

int store_write_at(struct volume *vol, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(vol->fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		done += (uint64_t)n;
	}
	return 0;
}

int store_punch(struct volume *vol, uint64_t off, uint64_t len)
{
	if (fallocate(vol->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) <
	    0)
		return errno;
	return 0;
}

int store_allocate(struct volume *vol, uint64_t off, uint64_t len)
{
	if (fallocate(vol->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return errno == EOPNOTSUPP ? 0 : errno; /* no preallocation: write as we go */
	return 0;
}

int store_sync(struct volume *vol)
{
	return fdatasync(vol->fd) < 0 ? errno : 0;
}

void store_page_probe(struct volume *vol, uint64_t page)
{
	if (vol->fd >= 0 && vol->written_map && page < vol->npages)
		map_set(vol, page, page_has_data(vol, page));
}
