/* fs.c: the file system fused shows: a root directory with one regular file
 * per volume of the group (mode 0600, size = volume size) and one read-only
 * file VOL@NAME per snapshot (mode 0444, the volume's size; writes, truncates
 * and fallocate fail with EROFS), and the FUSE low-level callbacks (fs_<op>)
 * that serve it. Runs in the FUSE worker threads; never speaks ZeroMQ: data
 * requests are handed to client.c, which answers them later from the client
 * thread. Owns the inode table (file name, volume id and snapshot id ->
 * inode number, stable for the life of the process) and the open-file
 * handles.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fused.h"
#include "pvlog.h"

#define ROOT_INO     FUSE_ROOT_ID
#define ATTR_TIMEOUT 1.0 /* s: entry and attribute timeouts */
#define STATFS_BSIZE 4096

/* A file (a volume, or a snapshot of one) with its inode number. */
struct inode_entry {
	uint64_t ino;
	uint64_t vol_id;
	uint64_t snap_id;
	char name[FUSED_NAME_MAX + 1]; /* the file's: VOL or VOL@NAME */
};

struct fs_ctx {
	struct client *client; /* not owned */
	unsigned max_background;
	uid_t uid;
	gid_t gid;
	pthread_mutex_t lock; /* guards the inode table below */
	struct inode_entry *inodes;
	size_t n_inodes, cap_inodes;
	uint64_t next_ino;
};

/* What open() learnt, kept in fi->fh until release. */
struct open_file {
	struct volume_attr vol; /* name, id and size at open: IO goes to this id only */
	uint32_t flags;		/* PV_F_FUA for O_SYNC/O_DSYNC opens */
};

/* Directory listing made by opendir, served by readdir, freed by
 * releasedir. */
struct dir_buf {
	char *p;
	size_t size;
};

static struct fs_ctx *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct open_file *file_of(struct fuse_file_info *fi)
{
	return (struct open_file *)(uintptr_t)fi->fh;
}

/* The inode number of v's file; 0 if the table cannot grow. */
static uint64_t inode_for(struct fs_ctx *fs, const struct volume_attr *v)
{
	char name[FUSED_NAME_MAX + 1];
	uint64_t ino = 0;

	snapfile_name(v, name);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->n_inodes; i++)
		if (fs->inodes[i].vol_id == v->id && fs->inodes[i].snap_id == v->snap_id &&
		    strcmp(fs->inodes[i].name, name) == 0) {
			ino = fs->inodes[i].ino;
			goto out;
		}
	if (fs->n_inodes == fs->cap_inodes) {
		size_t cap = fs->cap_inodes ? fs->cap_inodes * 2 : 64;
		struct inode_entry *n = realloc(fs->inodes, cap * sizeof(*n));

		if (!n) {
			pv_err("out of memory for the inode table");
			goto out;
		}
		fs->inodes = n;
		fs->cap_inodes = cap;
	}
	ino = fs->next_ino++;
	fs->inodes[fs->n_inodes].ino = ino;
	fs->inodes[fs->n_inodes].vol_id = v->id;
	fs->inodes[fs->n_inodes].snap_id = v->snap_id;
	snprintf(fs->inodes[fs->n_inodes].name, sizeof(fs->inodes[0].name), "%s", name);
	fs->n_inodes++;
out:
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

/* The volume or snapshot behind inode ino, as the catalog has it now (a
 * volume or snapshot deleted since, even if one of its name came back, is
 * not it); 0 or -1. */
static int volume_of(struct fs_ctx *fs, fuse_ino_t ino, struct volume_attr *out)
{
	struct inode_entry e;
	int found = 0;

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->n_inodes; i++)
		if (fs->inodes[i].ino == ino) {
			e = fs->inodes[i];
			found = 1;
			break;
		}
	pthread_mutex_unlock(&fs->lock);
	if (!found || client_volume_get(fs->client, e.name, out) < 0 || out->id != e.vol_id ||
	    out->snap_id != e.snap_id)
		return -1;
	return 0;
}

static void volume_stat(struct fs_ctx *fs, const struct volume_attr *v, uint64_t ino,
			struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | (v->snap_id ? 0444 : 0600);
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = v->size;
	st->st_blksize = v->page_size ? v->page_size : STATFS_BSIZE;
	/* what the volume takes (thin: written and not trimmed), as ls -s and
	 * du show a sparse file, a snapshot the data preserved for it; its
	 * times: its creation */
	st->st_blocks = (v->allocated + 511) / 512;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = (time_t)v->created;
}

static void root_stat(struct fs_ctx *fs, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ROOT_INO;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs_ctx *fs = userdata;

	conn->max_background = fs->max_background;
	conn->congestion_threshold = fs->max_background * 3 / 4;
	if (!conn->congestion_threshold)
		conn->congestion_threshold = 1;
	conn->max_write = FUSED_MAX_IO;
	conn->max_read = FUSED_MAX_IO;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	pv_debug("FUSE init: protocol %u.%u, max_background %u, congestion_threshold %u, "
		 "max_write %u, max_read %u",
		 conn->proto_major, conn->proto_minor, conn->max_background,
		 conn->congestion_threshold, conn->max_write, conn->max_read);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *fs = ctx(req);
	struct fuse_entry_param e;
	struct volume_attr v;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	client_catalog_refresh(fs->client, FUSED_CATALOG_MAX_AGE);
	if (client_volume_get(fs->client, name, &v) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = inode_for(fs, &v);
	if (!e.ino) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	volume_stat(fs, &v, e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct volume_attr v;
	struct stat st;

	if (ino == ROOT_INO) {
		root_stat(fs, &st);
	} else if (volume_of(fs, ino, &v) == 0) {
		volume_stat(fs, &v, ino, &st);
	} else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* Volumes have a fixed size, owner and mode (EPERM), snapshots are read-only
 * (EROFS); only time changes are accepted (and not kept). */
static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct volume_attr v;
	struct stat st;

	if (ino == ROOT_INO) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (volume_of(fs, ino, &v) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (v.snap_id && (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
				    FUSE_SET_ATTR_GID))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) ||
	    ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != v.size)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	volume_stat(fs, &v, ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static int dir_add(fuse_req_t req, struct dir_buf *b, const char *name, fuse_ino_t ino, mode_t mode)
{
	struct stat st = {.st_ino = ino, .st_mode = mode};
	size_t old = b->size, n = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	char *p = realloc(b->p, old + n);

	if (!p)
		return -1;
	b->p = p;
	b->size = old + n;
	fuse_add_direntry(req, b->p + old, n, name, &st, b->size);
	return 0;
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct volume_attr *vols = NULL;
	struct dir_buf *b;
	size_t n = 0;

	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	client_catalog_refresh(fs->client, FUSED_CATALOG_MAX_AGE);
	b = calloc(1, sizeof(*b));
	if (!b || client_volume_list(fs->client, &vols, &n) < 0)
		goto nomem;
	if (dir_add(req, b, ".", ROOT_INO, S_IFDIR) < 0 ||
	    dir_add(req, b, "..", ROOT_INO, S_IFDIR) < 0)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		uint64_t vino = inode_for(fs, &vols[i]);
		char name[FUSED_NAME_MAX + 1];

		if (!vino || dir_add(req, b, snapfile_name(&vols[i], name), vino, S_IFREG) < 0)
			goto nomem;
	}
	free(vols);
	fi->fh = (uintptr_t)b;
	if (fuse_reply_open(req, fi) != 0) {
		free(b->p);
		free(b);
	}
	return;
nomem:
	free(vols);
	if (b)
		free(b->p);
	free(b);
	fuse_reply_err(req, ENOMEM);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dir_buf *b = (struct dir_buf *)(uintptr_t)fi->fh;
	size_t n;
	char *copy;

	if (off < 0 || (size_t)off >= b->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Reply from a copy: once the kernel has the reply, the reader may close
	 * the directory and releasedir (another thread) frees b while writev is
	 * still returning here (AddressSanitizer checks the buffer after the
	 * call and would report a use after free). */
	n = b->size - off < size ? b->size - off : size;
	copy = malloc(n);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, b->p + off, n);
	fuse_reply_buf(req, copy, n);
	free(copy);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_buf *b = (struct dir_buf *)(uintptr_t)fi->fh;

	if (b)
		free(b->p);
	free(b);
	fuse_reply_err(req, 0);
}

/* Tells the client that the mount opened (open = 1) or released a file of
 * volume v. A snapshot's file is not an open of its volume: it neither
 * holds the volume (delete, rollback) nor names it in the pings. */
static void opened(struct fs_ctx *fs, const struct volume_attr *v, int open)
{
	if (!v->snap_id)
		client_volume_opened(fs->client, v, open);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct volume_attr v;
	struct open_file *of;

	if (ino == ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (volume_of(fs, ino, &v) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (v.snap_id && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))) {
		fuse_reply_err(req, EROFS); /* losetup then tries read-only */
		return;
	}
	of = calloc(1, sizeof(*of));
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	of->vol = v;
	if (fi->flags & O_DSYNC) /* O_SYNC includes O_DSYNC */
		of->flags = PV_F_FUA;
	fi->fh = (uintptr_t)of;
	fi->direct_io = 1; /* no page cache: other mounts' writes are seen */
	fi->keep_cache = 0;
	opened(fs, &of->vol, 1);
	pv_debug("open volume %s id %llu%s%s (flags 0%o)", of->vol.name,
		 (unsigned long long)of->vol.id, of->vol.snap_id ? " snapshot " : "", of->vol.snap,
		 fi->flags);
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* the open was interrupted: no release will come */
		opened(fs, &of->vol, 0);
		free(of);
	}
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct open_file *of = file_of(fi);

	opened(fs, &of->vol, 0);
	free(of);
	fuse_reply_err(req, 0);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct open_file *of = file_of(fi);
	uint64_t len = size;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= of->vol.size || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (len > of->vol.size - off)
		len = of->vol.size - off;
	if (len > FUSED_MAX_IO)
		len = FUSED_MAX_IO;
	client_read(fs->client, req, &of->vol, off, len);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs_ctx *fs = ctx(req);
	struct open_file *of = file_of(fi);
	uint64_t len = size;

	if (of->vol.snap_id) {
		fuse_reply_err(req, EROFS); /* not opened for writing: the kernel refuses first */
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= of->vol.size) {
		fuse_reply_err(req, size ? EFBIG : 0);
		return;
	}
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if (len > of->vol.size - off)
		len = of->vol.size - off; /* short write: the part inside the volume */
	if (len > FUSED_MAX_IO)
		len = FUSED_MAX_IO;
	/* a write is FUA when the file was opened O_DSYNC/O_SYNC, or when this
	 * write itself is (pwritev2 RWF_DSYNC/RWF_SYNC): the kernel passes the
	 * write's own flags in fi->flags (fuse_write_flags), and with direct_io
	 * no fsync follows it */
	client_write(fs->client, req, &of->vol, off, buf, len,
		     of->flags | (fi->flags & O_DSYNC ? PV_F_FUA : 0));
}

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* close(): durability is fsync's business */
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	if (file_of(fi)->vol.snap_id)
		fuse_reply_err(req, 0); /* a snapshot has nothing to make durable */
	else
		client_flush(ctx(req)->client, req, &file_of(fi)->vol);
}

static void fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	client_flush(ctx(req)->client, req, NULL); /* every volume this mount has open */
}

/* PUNCH_HOLE|KEEP_SIZE (discard) and ZERO_RANGE (write-zeroes) become TRIM:
 * a trimmed range reads back as zeros. */
static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	struct open_file *of = file_of(fi);
	uint64_t off = offset, len = length;

	if (of->vol.snap_id) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) && mode != FALLOC_FL_ZERO_RANGE &&
	    mode != (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (offset < 0 || length <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && (off > of->vol.size || len > of->vol.size - off)) {
		fuse_reply_err(req, EFBIG); /* the size of a volume is fixed */
		return;
	}
	if (off >= of->vol.size) {
		fuse_reply_err(req, 0);
		return;
	}
	if (len > of->vol.size - off)
		len = of->vol.size - off;
	client_trim(ctx(req)->client, req, &of->vol, off, len);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *fs = ctx(req);
	struct volume_attr *vols = NULL;
	struct statvfs sv;
	uint64_t total = 0;
	size_t n = 0;

	if (client_volume_list(fs->client, &vols, &n) == 0)
		for (size_t i = 0; i < n; i++)
			if (!vols[i].snap_id) /* a snapshot adds no capacity */
				total += vols[i].size;
	free(vols);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = STATFS_BSIZE;
	sv.f_frsize = STATFS_BSIZE;
	sv.f_blocks = total / STATFS_BSIZE;
	sv.f_files = n;
	sv.f_namemax = FUSED_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Volumes are made and deleted with peerctl, not through the mount. */
static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EPERM);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EPERM);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EPERM);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_init,
    .lookup = fs_lookup,
    .getattr = fs_getattr,
    .setattr = fs_setattr,
    .opendir = fs_opendir,
    .readdir = fs_readdir,
    .releasedir = fs_releasedir,
    .fsyncdir = fs_fsyncdir,
    .open = fs_open,
    .release = fs_release,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .fsync = fs_fsync,
    .fallocate = fs_fallocate,
    .statfs = fs_statfs,
    .mknod = fs_mknod,
    .create = fs_create,
    .unlink = fs_unlink,
    .mkdir = fs_mkdir,
};

struct fs_ctx *fs_new(struct client *c, unsigned max_background)
{
	struct fs_ctx *fs = calloc(1, sizeof(*fs));

	if (!fs) {
		pv_err("out of memory");
		return NULL;
	}
	fs->client = c;
	fs->max_background = max_background;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->next_ino = ROOT_INO + 1;
	pthread_mutex_init(&fs->lock, NULL);
	return fs;
}

void fs_destroy(struct fs_ctx **fsp)
{
	struct fs_ctx *fs = *fsp;

	if (!fs)
		return;
	*fsp = NULL;
	pthread_mutex_destroy(&fs->lock);
	free(fs->inodes);
	free(fs);
}
