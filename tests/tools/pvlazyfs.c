/* pvlazyfs.c: a FUSE file system that passes everything through to a
 * backing directory and remembers, in its own memory, what a power cut
 * would take away: the writes that were not made durable. On "drop" it
 * rolls the backing files back to their last durable state. Test tool for
 * the power-loss tests (kill -9 keeps the kernel's page cache, so it cannot
 * show a missing fsync); never installed. In the spirit of LazyFS, which
 * keeps unsynced data in its own cache; the design here is different.
 *
 *   pvlazyfs BACKING_DIR MOUNT_POINT [FUSE options, e.g. -f]
 *
 * Control, by path or by signal:
 *   echo drop > MOUNT/.pvlazyfs-ctl   (or SIGUSR1) the power cut: every
 *                                     unsynced change is undone
 *   echo sync > MOUNT/.pvlazyfs-ctl   (or SIGUSR2) checkpoint: everything is
 *                                     durable from now on
 *   cat MOUNT/.pvlazyfs-ctl           "files N pages N drops N syncs N
 *                                     fsyncs N dsync_writes N"
 *   (the control file is not listed by readdir)
 *
 * Design: an undo log. Every change goes to the backing file at once (so
 * reads, mmap, SEEK_DATA/SEEK_HOLE and statfs are plain passthrough), and
 * before a 4 KiB page of a file changes for the first time since that
 * file's last fsync, its old contents are saved here: the bytes, or "hole"
 * (a hole or past the end of the file then), together with the file's size
 * at that moment. So per file (keyed by the backing inode) we keep:
 *
 *   orig_size  the size at the last durable point
 *   pages      page number -> the page's durable contents (bytes or hole)
 *
 * fsync/fdatasync of the file (FUSE fsync; also what the kernel sends
 * after an O_DSYNC/O_SYNC or RWF_DSYNC write through the page cache)
 * forgets the file's entry: its current contents are durable. A write
 * whose flags carry O_DSYNC makes just its range (and the size it reaches)
 * durable. "drop" writes every saved page back (punching the holes), then
 * truncates to orig_size, and invalidates the kernel's cache of every file
 * under the mount (pages, mappings and attributes), so readers and mmap see
 * the rolled-back contents. The backing files themselves are never fsynced:
 * the host does not lose power, only our model of it.
 *
 * Which changes are undone: write, truncate/ftruncate (open with O_TRUNC),
 * fallocate (PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE, plain allocation): the
 * contents and size of regular files.
 *
 * The simpler rule for names: create, mkdir, unlink, rmdir, rename and
 * utimens are durable at once (a file whose last name goes takes its undo
 * state with it). ext4 (data=ordered), XFS and btrfs
 * journal them in order and commit the journal on any fsync, and within a
 * few seconds anyway; a file created and then fsynced keeps its name there
 * in practice, though POSIX asks for an fsync of the directory as well.
 * This tool does not check that directory fsync (a tool that does would
 * fail every program relying on ext4's behaviour, peerd's store_open and
 * LMDB's first open included). What it does check exactly is the contract
 * that matters for data: bytes and sizes not covered by an fsync, an
 * fdatasync or an O_DSYNC write are gone after a power cut.
 *
 * Limits: a power cut here loses all unsynced changes and nothing else;
 * real disks may also keep some of them, or part of a write (torn):
 * those outcomes are not produced. Through FUSE's page cache an
 * RWF_DSYNC (FUA) write arrives as a write followed by an fsync of the whole
 * file, so it makes earlier writes to the same file durable too: a test of
 * FUA writes should use a file that gets no other writes. Hard links,
 * symlinks, chmod, chown, xattrs and POSIX ACLs are not supported. flock and POSIX locks
 * are left to the kernel (local to this mount). One lock serializes every
 * change; reads run in parallel.
 *
 * Threads: libfuse's worker threads run the operations; one more thread
 * takes SIGUSR1/SIGUSR2. */
#define FUSE_USE_VERSION 31
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#define LZ_PAGE	    4096
#define LZ_CTL_NAME "/.pvlazyfs-ctl"
#define LZ_CTL_FH   UINT64_MAX

/* A page's durable contents: len bytes of data (the file may have ended
 * inside the page), or a hole. */
struct saved_page {
	uint64_t page;
	uint32_t len;
	int hole;
	char data[];
};

/* The undo state of one file, from its first change since it was last
 * durable. */
struct lazy_file {
	dev_t dev;
	ino_t ino;
	int fd; /* O_RDWR on the backing inode, for the roll-back */
	off_t orig_size;
	struct saved_page **slots; /* open addressing by page number */
	size_t nslots, npages;
	struct lazy_file *next;
};

static struct {
	char root[PATH_MAX];
	size_t root_len;
	pthread_mutex_t lock; /* files and the counters */
	struct lazy_file *files;
	unsigned long drops, syncs, fsyncs, dsync_writes;
	struct fuse *fuse;
} lz = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- undo state */

static void backing_path(const char *path, char *buf)
{
	snprintf(buf, PATH_MAX, "%s%s", lz.root, path);
}

static struct lazy_file *file_find(dev_t dev, ino_t ino, struct lazy_file ***prevp)
{
	struct lazy_file **pp;

	for (pp = &lz.files; *pp; pp = &(*pp)->next) {
		if ((*pp)->dev == dev && (*pp)->ino == ino) {
			if (prevp)
				*prevp = pp;
			return *pp;
		}
	}
	return NULL;
}

static void file_free(struct lazy_file *f)
{
	for (size_t i = 0; i < f->nslots; i++)
		free(f->slots[i]);
	free(f->slots);
	close(f->fd);
	free(f);
}

/* Forgets the undo state of the inode behind fd: it is durable as it is. */
static void file_durable(int fd)
{
	struct lazy_file **pp, *f;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return;
	f = file_find(st.st_dev, st.st_ino, &pp);
	if (!f)
		return;
	*pp = f->next;
	file_free(f);
}

/* The undo state of the inode behind fd, created (with the current size as
 * the durable one) on its first change. NULL: out of memory or fds. */
static struct lazy_file *file_get(int fd)
{
	char proc[64];
	struct lazy_file *f;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	f = file_find(st.st_dev, st.st_ino, NULL);
	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	f->fd = open(proc, O_RDWR | O_CLOEXEC);
	f->nslots = 64;
	f->slots = calloc(f->nslots, sizeof(*f->slots));
	if (f->fd < 0 || !f->slots) {
		if (f->fd >= 0)
			close(f->fd);
		free(f->slots);
		free(f);
		return NULL;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->orig_size = st.st_size;
	f->next = lz.files;
	lz.files = f;
	return f;
}

static size_t slot_of(const struct lazy_file *f, uint64_t page)
{
	size_t i = (page * 0x9e3779b97f4a7c15ull) & (f->nslots - 1);

	while (f->slots[i] && f->slots[i]->page != page)
		i = (i + 1) & (f->nslots - 1);
	return i;
}

static int slots_grow(struct lazy_file *f)
{
	struct saved_page **old = f->slots;
	size_t n = f->nslots;

	f->slots = calloc(n * 2, sizeof(*f->slots));
	if (!f->slots) {
		f->slots = old;
		return -1;
	}
	f->nslots = n * 2;
	for (size_t i = 0; i < n; i++)
		if (old[i])
			f->slots[slot_of(f, old[i]->page)] = old[i];
	free(old);
	return 0;
}

/* Saves the durable contents of one page before its first change. */
static int save_page(struct lazy_file *f, uint64_t page, off_t size)
{
	off_t start = (off_t)page * LZ_PAGE, data;
	struct saved_page *sp;
	size_t i;
	ssize_t n;

	if (f->slots[slot_of(f, page)])
		return 0;
	if ((f->npages + 1) * 2 > f->nslots && slots_grow(f) < 0)
		return -ENOMEM;
	data = start < size ? lseek(f->fd, start, SEEK_DATA) : -1;
	if (data < 0 || data >= start + LZ_PAGE) {
		sp = calloc(1, sizeof(*sp));
		if (!sp)
			return -ENOMEM;
		sp->hole = 1;
	} else {
		sp = malloc(sizeof(*sp) + LZ_PAGE);
		if (!sp)
			return -ENOMEM;
		sp->hole = 0;
		n = pread(f->fd, sp->data, LZ_PAGE, start);
		if (n < 0) {
			free(sp);
			return -errno;
		}
		sp->len = n;
		memset(sp->data + n, 0, LZ_PAGE - n);
	}
	sp->page = page;
	i = slot_of(f, page);
	f->slots[i] = sp;
	f->npages++;
	return 0;
}

/* Saves every page of [off, off + len) of fd's file before a change there.
 * data_only: only the pages holding data (a punch or a truncate leaves a
 * hole as it was; a later write there saves it then). */
static int save_range(int fd, off_t off, off_t len, int data_only)
{
	struct lazy_file *f;
	struct stat st;
	uint64_t p, last;
	int rc;

	if (len <= 0)
		return 0;
	f = file_get(fd);
	if (!f || fstat(fd, &st) < 0)
		return -ENOMEM;
	last = (uint64_t)(off + len - 1) / LZ_PAGE;
	for (p = off / LZ_PAGE; p <= last;) {
		if (data_only) {
			off_t d = (off_t)p * LZ_PAGE < st.st_size
				      ? lseek(fd, (off_t)p * LZ_PAGE, SEEK_DATA)
				      : -1;
			if (d < 0)
				break; /* no data from here on */
			if ((uint64_t)d / LZ_PAGE > p) {
				p = d / LZ_PAGE;
				continue;
			}
		}
		if (p > last)
			break;
		rc = save_page(f, p, st.st_size);
		if (rc < 0)
			return rc;
		p++;
	}
	return 0;
}

static void slot_remove(struct lazy_file *f, size_t i)
{
	free(f->slots[i]);
	f->slots[i] = NULL;
	f->npages--;
	/* linear probing: re-insert the rest of the cluster */
	for (size_t j = (i + 1) & (f->nslots - 1); f->slots[j]; j = (j + 1) & (f->nslots - 1)) {
		struct saved_page *m = f->slots[j];

		f->slots[j] = NULL;
		f->slots[slot_of(f, m->page)] = m;
	}
}

/* An O_DSYNC write of buf to [off, off + len) is durable: the file is at
 * least that long, and that range holds buf after a power cut. A page the
 * write covers is forgotten; the saved contents of a page it covers in part
 * get the written bytes. */
static void range_durable(int fd, const char *buf, off_t off, size_t len)
{
	struct lazy_file *f;
	struct stat st;

	if (!len || fstat(fd, &st) < 0)
		return;
	f = file_find(st.st_dev, st.st_ino, NULL);
	if (!f)
		return;
	if (f->orig_size < off + (off_t)len)
		f->orig_size = off + len;
	for (uint64_t p = off / LZ_PAGE; p <= (off + len - 1) / LZ_PAGE; p++) {
		size_t i = slot_of(f, p);
		struct saved_page *sp = f->slots[i];
		off_t ps = (off_t)p * LZ_PAGE;
		off_t a = off > ps ? off : ps;
		off_t b = off + (off_t)len < ps + LZ_PAGE ? off + (off_t)len : ps + LZ_PAGE;

		if (!sp)
			continue;
		if (a == ps && b == ps + LZ_PAGE) {
			slot_remove(f, i);
			continue;
		}
		if (sp->hole) {
			struct saved_page *d = calloc(1, sizeof(*d) + LZ_PAGE);

			if (!d)
				continue; /* stays a hole: stricter, never laxer */
			d->page = p;
			free(sp);
			f->slots[i] = sp = d;
		}
		memcpy(sp->data + (a - ps), buf + (a - off), b - a);
		if ((off_t)sp->len < b - ps)
			sp->len = b - ps;
	}
}

/* Rolls one file back to its durable state. */
static void file_rollback(struct lazy_file *f)
{
	for (size_t i = 0; i < f->nslots; i++) {
		struct saved_page *sp = f->slots[i];
		off_t start;

		if (!sp)
			continue;
		start = (off_t)sp->page * LZ_PAGE;
		if (sp->hole || sp->len < LZ_PAGE) {
			if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start,
				      LZ_PAGE) < 0)
				fprintf(stderr, "pvlazyfs: punch at %lld: %s\n", (long long)start,
					strerror(errno));
		}
		if (!sp->hole && sp->len && pwrite(f->fd, sp->data, sp->len, start) != sp->len)
			fprintf(stderr, "pvlazyfs: restore at %lld: %s\n", (long long)start,
				strerror(errno));
	}
	if (ftruncate(f->fd, f->orig_size) < 0)
		fprintf(stderr, "pvlazyfs: truncate to %lld: %s\n", (long long)f->orig_size,
			strerror(errno));
}

static int invalidate_one(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_F && strlen(fpath) > lz.root_len)
		fuse_invalidate_path(lz.fuse, fpath + lz.root_len);
	return 0;
}

/* The power cut: undoes every unsynced change, then drops the kernel's
 * cached pages and attributes of every file (outside our lock: the kernel
 * may need a read of ours to finish first). */
static void lazy_drop(void)
{
	struct lazy_file *f;
	unsigned long files = 0;

	pthread_mutex_lock(&lz.lock);
	while ((f = lz.files)) {
		lz.files = f->next;
		file_rollback(f);
		file_free(f);
		files++;
	}
	lz.drops++;
	pthread_mutex_unlock(&lz.lock);
	if (lz.fuse)
		nftw(lz.root, invalidate_one, 16, FTW_PHYS | FTW_MOUNT);
	fprintf(stderr, "pvlazyfs: drop: %lu files rolled back\n", files);
}

static void lazy_sync(void)
{
	struct lazy_file *f;

	pthread_mutex_lock(&lz.lock);
	while ((f = lz.files)) {
		lz.files = f->next;
		file_free(f);
	}
	lz.syncs++;
	pthread_mutex_unlock(&lz.lock);
}

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;) {
		if (sigwait(set, &sig))
			continue;
		if (sig == SIGUSR1)
			lazy_drop();
		else if (sig == SIGUSR2)
			lazy_sync();
	}
	return NULL;
}

/* ---------------------------------------------------------------- the control file */

static int is_ctl(const char *path)
{
	return path && !strcmp(path, LZ_CTL_NAME);
}

static int ctl_status(char *buf, size_t len)
{
	unsigned long files = 0, pages = 0;

	pthread_mutex_lock(&lz.lock);
	for (struct lazy_file *f = lz.files; f; f = f->next) {
		files++;
		pages += f->npages;
	}
	len = snprintf(buf, len,
		       "files %lu pages %lu drops %lu syncs %lu fsyncs %lu dsync_writes %lu\n",
		       files, pages, lz.drops, lz.syncs, lz.fsyncs, lz.dsync_writes);
	pthread_mutex_unlock(&lz.lock);
	return len;
}

static int ctl_write(const char *buf, size_t size)
{
	char cmd[16] = "";

	memcpy(cmd, buf, size < sizeof(cmd) - 1 ? size : sizeof(cmd) - 1);
	cmd[strcspn(cmd, " \n")] = 0;
	if (!strcmp(cmd, "drop"))
		lazy_drop();
	else if (!strcmp(cmd, "sync"))
		lazy_sync();
	else
		return -EINVAL;
	return size;
}

/* ---------------------------------------------------------------- operations */

static void *lz_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 1; /* no .fuse_hidden files: fd operations use fh */
	/* every attribute and name from the backing file at each use: a drop
	 * changes sizes under the kernel's feet */
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->direct_io = 0; /* the page cache path: mmap works */
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	lz.fuse = fuse_get_context()->fuse;
	return NULL;
}

static int lz_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	char p[PATH_MAX];

	if (is_ctl(path)) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		return 0;
	}
	if (fi && fi->fh != LZ_CTL_FH)
		return fstat(fi->fh, st) < 0 ? -errno : 0;
	backing_path(path, p);
	return lstat(p, st) < 0 ? -errno : 0;
}

static int lz_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	char p[PATH_MAX];
	struct dirent *de;
	DIR *d;

	(void)off;
	(void)fi;
	(void)flags;
	backing_path(path, p);
	d = opendir(p);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)de->d_type << 12};

		if (fill(buf, de->d_name, &st, 0, 0))
			break;
	}
	closedir(d);
	return 0;
}

static int lz_mkdir(const char *path, mode_t mode)
{
	char p[PATH_MAX];

	backing_path(path, p);
	return mkdir(p, mode) < 0 ? -errno : 0;
}

/* Forgets the undo state of an inode whose last name went (st: stat taken
 * before): its contents can never be read again. */
static void forget_if_gone(const struct stat *st)
{
	struct lazy_file **pp, *f;
	struct stat now;

	pthread_mutex_lock(&lz.lock);
	f = file_find(st->st_dev, st->st_ino, &pp);
	if (f && fstat(f->fd, &now) == 0 && now.st_nlink == 0) {
		*pp = f->next;
		file_free(f);
	}
	pthread_mutex_unlock(&lz.lock);
}

static int lz_unlink(const char *path)
{
	char p[PATH_MAX];
	struct stat st;
	int have;

	if (is_ctl(path))
		return -EPERM;
	backing_path(path, p);
	have = lstat(p, &st) == 0;
	if (unlink(p) < 0)
		return -errno;
	if (have)
		forget_if_gone(&st);
	return 0;
}

static int lz_rmdir(const char *path)
{
	char p[PATH_MAX];

	backing_path(path, p);
	return rmdir(p) < 0 ? -errno : 0;
}

static int lz_rename(const char *from, const char *to, unsigned int flags)
{
	char a[PATH_MAX], b[PATH_MAX];
	struct stat st;
	int have;

	if (is_ctl(from) || is_ctl(to))
		return -EPERM;
	backing_path(from, a);
	backing_path(to, b);
	have = lstat(b, &st) == 0;
	if (renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) < 0)
		return -errno;
	if (have)
		forget_if_gone(&st);
	return 0;
}

static int lz_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	char p[PATH_MAX];

	if (is_ctl(path))
		return 0;
	if (fi && fi->fh != LZ_CTL_FH)
		return futimens(fi->fh, tv) < 0 ? -errno : 0;
	backing_path(path, p);
	return utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Truncates fd's file to size, saving what a shrink cuts off. Lock held. */
static int truncate_fd(int fd, off_t size)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size == size)
		return 0;
	if (!file_get(fd))
		return -ENOMEM;
	if (size < st.st_size) {
		/* the page cut in two changes too */
		rc = save_range(fd, size, st.st_size - size, 1);
		if (rc < 0)
			return rc;
	}
	return ftruncate(fd, size) < 0 ? -errno : 0;
}

static int lz_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int fd, rc;

	if (is_ctl(path))
		return 0;
	if (fi && fi->fh != LZ_CTL_FH) {
		pthread_mutex_lock(&lz.lock);
		rc = truncate_fd(fi->fh, size);
		pthread_mutex_unlock(&lz.lock);
		return rc;
	}
	backing_path(path, p);
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&lz.lock);
	rc = truncate_fd(fd, size);
	pthread_mutex_unlock(&lz.lock);
	close(fd);
	return rc;
}

/* Opens the backing file; O_TRUNC is done by truncate_fd so that it can be
 * undone. The kernel keeps no pages of a file across opens (keep_cache 0),
 * and our own handle does not need O_DSYNC: writes carry their flags. */
static int open_backing(const char *path, int flags, mode_t mode, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int fd, rc = 0;

	backing_path(path, p);
	fd = open(p, (flags & ~(O_TRUNC | O_DSYNC | O_SYNC)) | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
		pthread_mutex_lock(&lz.lock);
		rc = truncate_fd(fd, 0);
		pthread_mutex_unlock(&lz.lock);
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	fi->fh = fd;
	fi->keep_cache = 0;
	fi->direct_io = 0;
	return 0;
}

static int lz_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (is_ctl(path))
		return -EEXIST;
	return open_backing(path, fi->flags | O_CREAT, mode, fi);
}

static int lz_open(const char *path, struct fuse_file_info *fi)
{
	if (is_ctl(path)) {
		fi->fh = LZ_CTL_FH;
		fi->direct_io = 1;
		return 0;
	}
	return open_backing(path, fi->flags, 0, fi);
}

static int lz_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	if (fi->fh != LZ_CTL_FH)
		close(fi->fh);
	return 0;
}

static int lz_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	if (fi->fh == LZ_CTL_FH) {
		char s[256];
		int len = ctl_status(s, sizeof(s));

		if (off >= len)
			return 0;
		n = (size_t)(len - off) < size ? len - off : (ssize_t)size;
		memcpy(buf, s + off, n);
		return n;
	}
	n = pread(fi->fh, buf, size, off);
	return n < 0 ? -errno : n;
}

static int lz_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	ssize_t n;
	int rc;

	(void)path;
	if (fi->fh == LZ_CTL_FH)
		return ctl_write(buf, size);
	pthread_mutex_lock(&lz.lock);
	rc = save_range(fi->fh, off, size, 0);
	if (rc < 0) {
		pthread_mutex_unlock(&lz.lock);
		return rc;
	}
	n = pwrite(fi->fh, buf, size, off);
	if (n < 0) {
		rc = -errno;
	} else {
		rc = n;
		if (fi->flags & (O_DSYNC | O_SYNC)) {
			range_durable(fi->fh, buf, off, n);
			lz.dsync_writes++;
		}
	}
	pthread_mutex_unlock(&lz.lock);
	return rc;
}

static int lz_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync; /* fdatasync makes the contents and size durable: all we track */
	if (fi->fh == LZ_CTL_FH)
		return 0;
	pthread_mutex_lock(&lz.lock);
	file_durable(fi->fh);
	lz.fsyncs++;
	pthread_mutex_unlock(&lz.lock);
	return 0;
}

static int lz_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	(void)fi;
	return 0; /* names are durable at once (head comment) */
}

static int lz_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0; /* close(): durability is fsync's business */
}

static int lz_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	int rc;

	(void)path;
	if (fi->fh == LZ_CTL_FH)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&lz.lock);
	/* plain allocation changes no bytes: only the size, kept by file_get */
	rc = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)
		 ? save_range(fi->fh, off, len, 1)
		 : (file_get(fi->fh) ? 0 : -ENOMEM);
	if (!rc && fallocate(fi->fh, mode, off, len) < 0)
		rc = -errno;
	pthread_mutex_unlock(&lz.lock);
	return rc;
}

static off_t lz_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r;

	(void)path;
	if (fi->fh == LZ_CTL_FH)
		return -ESPIPE;
	r = lseek(fi->fh, off, whence);
	return r < 0 ? -errno : r;
}

static int lz_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return statvfs(lz.root, sv) < 0 ? -errno : 0;
}

static const struct fuse_operations lz_ops = {
    .init = lz_init,
    .getattr = lz_getattr,
    .readdir = lz_readdir,
    .mkdir = lz_mkdir,
    .unlink = lz_unlink,
    .rmdir = lz_rmdir,
    .rename = lz_rename,
    .utimens = lz_utimens,
    .truncate = lz_truncate,
    .create = lz_create,
    .open = lz_open,
    .release = lz_release,
    .read = lz_read,
    .write = lz_write,
    .flush = lz_flush,
    .fsync = lz_fsync,
    .fsyncdir = lz_fsyncdir,
    .fallocate = lz_fallocate,
    .lseek = lz_lseek,
    .statfs = lz_statfs,
};

int main(int argc, char **argv)
{
	static sigset_t set;
	pthread_t th;
	char **fargv;
	int rc;

	if (argc < 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: pvlazyfs BACKING_DIR MOUNT_POINT [FUSE options]\n");
		return 2;
	}
	if (!realpath(argv[1], lz.root)) {
		fprintf(stderr, "pvlazyfs: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (!strcmp(lz.root, "/"))
		lz.root[0] = 0;
	lz.root_len = strlen(lz.root);
	/* the signal thread, and every FUSE thread inheriting this mask */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&th, NULL, signal_thread, &set)) {
		fprintf(stderr, "pvlazyfs: cannot start the signal thread\n");
		return 1;
	}
	pthread_detach(th);
	umask(0);
	fargv = calloc(argc + 2, sizeof(*fargv));
	if (!fargv)
		return 1;
	fargv[0] = argv[0];
	for (int i = 2; i < argc; i++)
		fargv[i - 1] = argv[i];
	fargv[argc - 1] = "-o";
	fargv[argc] = "default_permissions,fsname=pvlazyfs,subtype=pvlazyfs";
	rc = fuse_main(argc + 1, fargv, &lz_ops, NULL);
	free(fargv);
	return rc;
}
