/* nullfs.c: the FUSE ceiling of the benchmarks. A libfuse3 low-level file
 * system with one regular file of a fixed size that reads as zeros and
 * discards writes, so a benchmark through it measures the kernel's FUSE path
 * and libfuse alone, with no storage behind them. It keeps no state besides
 * its options; libfuse's worker threads (multithreaded loop) run every
 * callback, and none of them blocks.
 *
 * Usage: pv-nullfs [--size BYTES] [--name NAME] [FUSE options] MOUNTPOINT
 * BYTES takes a K, M, G or T suffix (binary); the default is 2G.
 * The file is opened with direct_io, so losetup --direct-io=on works on it;
 * max_background is raised to 128 and max_write to 1 MiB. */

#define FUSE_USE_VERSION 312

#include <errno.h>
#include <limits.h>
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NULLFS_ROOT_INO	      FUSE_ROOT_ID
#define NULLFS_FILE_INO	      2
#define NULLFS_MAX_IO	      (1024 * 1024)
#define NULLFS_MAX_BACKGROUND 128

struct nullfs {
	uint64_t size;	  /* bytes of the one file */
	const char *name; /* its name in the root directory */
	time_t mtime;	  /* start time, shown as every timestamp */
};

struct nullfs_opts {
	char *size;
	char *name;
};

static const struct fuse_opt nullfs_opt_spec[] = {
    {"--size=%s", offsetof(struct nullfs_opts, size), 0},
    {"--name=%s", offsetof(struct nullfs_opts, name), 0},
    FUSE_OPT_END,
};

/* Reads return slices of this; the kernel copies from it, nobody writes it. */
static const char zeros[NULLFS_MAX_IO];

static struct nullfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_attr(const struct nullfs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = fs->mtime;
	if (ino == NULLFS_ROOT_INO) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = (off_t)fs->size;
		st->st_blksize = 4096;
		st->st_blocks = 0;
	}
}

static void nullfs_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_background = NULLFS_MAX_BACKGROUND;
	conn->congestion_threshold = NULLFS_MAX_BACKGROUND * 3 / 4;
	conn->max_write = NULLFS_MAX_IO;
	conn->max_readahead = NULLFS_MAX_IO;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void nullfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct nullfs *fs = fs_of(req);
	struct fuse_entry_param e;

	if (parent != NULLFS_ROOT_INO || strcmp(name, fs->name) != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = NULLFS_FILE_INO;
	e.attr_timeout = 3600.0;
	e.entry_timeout = 3600.0;
	fill_attr(fs, NULLFS_FILE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void nullfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	if (ino != NULLFS_ROOT_INO && ino != NULLFS_FILE_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(fs_of(req), ino, &st);
	fuse_reply_attr(req, &st, 3600.0);
}

/* The size is fixed: a truncate to another size is refused, the rest
 * (times, modes) is accepted and forgotten. */
static void nullfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			   struct fuse_file_info *fi)
{
	struct nullfs *fs = fs_of(req);

	if ((to_set & FUSE_SET_ATTR_SIZE) && ino == NULLFS_FILE_INO &&
	    (uint64_t)attr->st_size != fs->size) {
		fuse_reply_err(req, EPERM);
		return;
	}
	nullfs_getattr(req, ino, fi);
}

static void nullfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	struct nullfs *fs = fs_of(req);
	const char *names[] = {".", "..", fs->name};
	const fuse_ino_t inos[] = {NULLFS_ROOT_INO, NULLFS_ROOT_INO, NULLFS_FILE_INO};
	char buf[512];
	size_t used = 0;

	if (ino != NULLFS_ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (off_t i = off; i < 3; i++) {
		struct stat st = {.st_ino = inos[i], .st_mode = i < 2 ? S_IFDIR : S_IFREG};
		size_t n = fuse_add_direntry(req, buf + used, size - used, names[i], &st, i + 1);

		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

static void nullfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != NULLFS_FILE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void nullfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct nullfs *fs = fs_of(req);

	if (off < 0 || (uint64_t)off >= fs->size)
		size = 0;
	else if (size > fs->size - (uint64_t)off)
		size = fs->size - (uint64_t)off;
	if (size > sizeof(zeros))
		size = sizeof(zeros);
	fuse_reply_buf(req, zeros, size);
}

static void nullfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	struct nullfs *fs = fs_of(req);

	if (off < 0 || (uint64_t)off >= fs->size) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	if (size > fs->size - (uint64_t)off)
		size = fs->size - (uint64_t)off;
	fuse_reply_write(req, size);
}

static void nullfs_ok(fuse_req_t req)
{
	fuse_reply_err(req, 0);
}

static void nullfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	nullfs_ok(req);
}

static void nullfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	nullfs_ok(req);
}

static void nullfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	nullfs_ok(req);
}

/* Discard (PUNCH_HOLE) and write-zeroes (ZERO_RANGE) from the loop device:
 * the file already reads as zeros, so both succeed at once. */
static void nullfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			     struct fuse_file_info *fi)
{
	nullfs_ok(req);
}

static void nullfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct nullfs *fs = fs_of(req);
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = fs->size / 4096;
	sv.f_bfree = sv.f_blocks;
	sv.f_bavail = sv.f_blocks;
	sv.f_files = 2;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops nullfs_ops = {
    .init = nullfs_init,
    .lookup = nullfs_lookup,
    .getattr = nullfs_getattr,
    .setattr = nullfs_setattr,
    .readdir = nullfs_readdir,
    .open = nullfs_open,
    .read = nullfs_read,
    .write = nullfs_write,
    .flush = nullfs_flush,
    .release = nullfs_release,
    .fsync = nullfs_fsync,
    .fallocate = nullfs_fallocate,
    .statfs = nullfs_statfs,
};

/* Parses BYTES with an optional binary K/M/G/T suffix; returns 0 or -1. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'T':
	case 't':
		v <<= 10; /* fall through */
	case 'G':
	case 'g':
		v <<= 10; /* fall through */
	case 'M':
	case 'm':
		v <<= 10; /* fall through */
	case 'K':
	case 'k':
		v <<= 10;
		end++;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (*end != '\0' || v == 0 || v % 512 != 0)
		return -1;
	*out = v;
	return 0;
}

static void usage(const char *prog)
{
	printf("usage: %s [--size=BYTES] [--name=NAME] [options] MOUNTPOINT\n"
	       "  --size=BYTES   size of the file, multiple of 512, K/M/G/T suffix (default 2G)\n"
	       "  --name=NAME    name of the file in the mount (default null)\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct nullfs_opts o = {NULL, NULL};
	struct fuse_cmdline_opts c;
	struct fuse_loop_config *cfg = NULL;
	struct fuse_session *se = NULL;
	struct nullfs fs = {.size = 2ULL << 30, .name = "null", .mtime = time(NULL)};
	int ret = 1;

	if (fuse_opt_parse(&args, &o, nullfs_opt_spec, NULL) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &c) != 0)
		goto out_args;
	if (c.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out_opts;
	}
	if (c.show_version) {
		printf("pv-nullfs, libfuse %s\n", fuse_pkgversion());
		ret = 0;
		goto out_opts;
	}
	if (c.mountpoint == NULL) {
		fprintf(stderr, "pv-nullfs: no mount point (try --help)\n");
		goto out_opts;
	}
	if (o.size && parse_size(o.size, &fs.size) != 0) {
		fprintf(stderr, "pv-nullfs: bad --size '%s' (a multiple of 512, K/M/G/T)\n",
			o.size);
		goto out_opts;
	}
	if (o.name) {
		if (o.name[0] == '\0' || strchr(o.name, '/') || strcmp(o.name, ".") == 0 ||
		    strcmp(o.name, "..") == 0) {
			fprintf(stderr, "pv-nullfs: bad --name '%s'\n", o.name);
			goto out_opts;
		}
		fs.name = o.name;
	}

	se = fuse_session_new(&args, &nullfs_ops, sizeof(nullfs_ops), &fs);
	if (se == NULL)
		goto out_opts;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, c.mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(c.foreground) != 0)
		goto out_unmount;

	if (c.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		cfg = fuse_loop_cfg_create();
		if (cfg == NULL)
			goto out_unmount;
		fuse_loop_cfg_set_clone_fd(cfg, c.clone_fd);
		if (c.max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
			fuse_loop_cfg_set_idle_threads(cfg, c.max_idle_threads);
		fuse_loop_cfg_set_max_threads(cfg, c.max_threads);
		ret = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	ret = ret != 0;

out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_opts:
	free(c.mountpoint);
out_args:
	free(o.size);
	free(o.name);
	fuse_opt_free_args(&args);
	return ret;
}
