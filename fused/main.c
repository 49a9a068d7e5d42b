/* main.c: fused's start-up and shutdown: options, daemonizing, the FUSE
 * session and mount, and the FUSE loop (loop.c). Runs in the main thread;
 * the FUSE worker threads run fs.c, the client thread client.c.
 *
 * Order: parse options -> (fork; the parent waits) -> read the catalog
 * (client_new) -> FUSE session and mount -> start the client thread -> tell
 * the parent the mount is ready (it exits 0) -> FUSE loop until unmount or
 * SIGTERM/SIGINT/SIGHUP -> answer what is outstanding with EIO and close the
 * sockets (client_destroy) -> unmount.
 *
 * The fork happens before any thread or ZeroMQ context exists. Until the
 * mount is ready, log lines go to stderr even when daemonizing, so a failed
 * start is reported on the terminal; afterwards the daemon logs to syslog.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "fused.h"
#include "pvlog.h"
#include "util.h"

#define DEFAULT_TIMEOUT_S      60
#define DEFAULT_MAX_BACKGROUND 128
#define DEFAULT_THREADS	       4 /* metadata only: data requests run on the client thread */
#define DEFAULT_REPLY_THREADS  2 /* copies of large READ answers (reply.c) */
#define OPT_SERVER	       1000 /* --server: long option only */
#define OPT_AUTH	       1001 /* --auth: long option only */

_Static_assert(FUSED_MAX_IO == 1048576, "the max_read mount option below says 1048576");

struct options {
	char *group; /* --group as given, comma separated */
	char *server; /* --server, or NULL */
	char *auth;   /* --auth, or NULL */
	unsigned timeout_s;
	unsigned max_background;
	unsigned threads;
	unsigned shm_slots;
	int no_links;
	int no_map;
	unsigned reply_threads;
	int foreground;
	int mlock;
	int debug;
	char *fuse_opts; /* all -o values, comma separated; NULL if none */
	char *mountpoint;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fused --group ADDR[,ADDR...] [OPTIONS] MOUNTPOINT\n"
		"\n"
		"Mounts the volumes of a peervol group as files: MOUNTPOINT/<volume> is a\n"
		"regular file of the volume's size (attach it with\n"
		"'losetup --direct-io=on -f --show MOUNTPOINT/<volume>').\n"
		"\n"
		"Options:\n"
		"  -g, --group ADDR[,ADDR...]  ZeroMQ addresses of servers of the group, e.g.\n"
		"                              tcp://127.0.0.1:7100; tried in turn at start\n"
		"                              (3 s each) for the catalog. Required.\n"
		"      --server ADDR           send the requests of every volume ADDR holds to\n"
		"                              ADDR (a server of the group, as its members\n"
		"                              list it), instead of the holder the group\n"
		"                              proposes (the least loaded; one on this host\n"
		"                              unless it is overloaded); the group may still\n"
		"                              move this mount to another holder later\n"
		"      --auth FILE             the client key of this host (made by 'peerctl\n"
		"                              client add NAME'; mode 0600): needed when the\n"
		"                              group's servers run with --auth\n"
		"  -t, --timeout SEC           give up on a request (EIO) SEC seconds after it\n"
		"                              was first sent; until then server failures only\n"
		"                              delay it (default %u)\n"
		"  -b, --max-background N      FUSE requests the kernel keeps in flight\n"
		"                              (1..65535, default %u)\n"
		"  -T, --threads N             threads for metadata requests (lookup, open,\n"
		"                              ...); data requests run on the client thread\n"
		"                              (default %u)\n"
		"  -S, --shm-slots N           shared memory for servers on this host: N\n"
		"                              slots of 1 MiB + 64 KiB, one per request of\n"
		"                              32 KiB or more in flight; its block data then\n"
		"                              skips the socket. 0: off (default %u)\n"
		"  -L, --no-links              talk to servers by ZeroMQ only, not on the TCP\n"
		"                              links they offer (read and written by fused's\n"
		"                              client thread, no ZeroMQ IO thread: faster)\n"
		"  -M, --no-map                copy READ data through the server on this host,\n"
		"                              never out of its data files mapped read-only\n"
		"                              (mapped: one copy of the data less; off with\n"
		"                              --mlock, which would lock the whole file)\n"
		"  -R, --reply-threads N       threads that copy READ answers of 64 KiB or\n"
		"                              more into the kernel, beside the client thread\n"
		"                              (0..64; 0: the client thread does; default %u)\n"
		"  -m, --mlock                 lock fused's memory in RAM (mlockall), so that\n"
		"                              writeback through a loop device on this mount\n"
		"                              never waits for fused to be paged in\n"
		"  -f, --foreground            stay in the foreground, log to stderr\n"
		"  -d, --debug                 log debug detail (per request)\n"
		"  -o OPT[,OPT...]             FUSE mount options (e.g. allow_other); may be\n"
		"                              repeated\n"
		"  -h, --help                  show this help and exit\n"
		"  -V, --version               show the version and exit\n"
		"\n"
		"Without -f, fused returns once the mount works and then logs to syslog.\n"
		"Unmount with 'fusermount3 -u MOUNTPOINT' or 'umount MOUNTPOINT', or send\n"
		"SIGTERM: requests still outstanding then fail with EIO.\n",
		DEFAULT_TIMEOUT_S, DEFAULT_MAX_BACKGROUND, DEFAULT_THREADS, FUSED_SHM_SLOTS,
		DEFAULT_REPLY_THREADS);
}

static int parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, unsigned *out)
{
	uint64_t v;

	if (pv_parse_u64(s, min, max, &v) < 0) {
		fprintf(stderr, "fused: %s wants a whole number in %llu..%llu, not '%s'\n", opt,
			(unsigned long long)min, (unsigned long long)max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int add_fuse_opt(struct options *o, const char *s)
{
	size_t n = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *p = realloc(o->fuse_opts, n + strlen(s) + 2);

	if (!p) {
		fprintf(stderr, "fused: out of memory\n");
		return -1;
	}
	if (n)
		p[n++] = ',';
	strcpy(p + n, s);
	o->fuse_opts = p;
	return 0;
}

static int check_endpoint(const char *addr, const char *opt);

/* Returns 0 to go on, 1 to exit 0 (help, version), -1 to exit 1. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"group", required_argument, NULL, 'g'},
	    {"server", required_argument, NULL, OPT_SERVER},
	    {"auth", required_argument, NULL, OPT_AUTH},
	    {"timeout", required_argument, NULL, 't'},
	    {"max-background", required_argument, NULL, 'b'},
	    {"threads", required_argument, NULL, 'T'},
	    {"mlock", no_argument, NULL, 'm'},
	    {"shm-slots", required_argument, NULL, 'S'},
	    {"no-links", no_argument, NULL, 'L'},
	    {"no-map", no_argument, NULL, 'M'},
	    {"reply-threads", required_argument, NULL, 'R'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"debug", no_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	o->timeout_s = DEFAULT_TIMEOUT_S;
	o->max_background = DEFAULT_MAX_BACKGROUND;
	o->threads = DEFAULT_THREADS;
	o->shm_slots = FUSED_SHM_SLOTS;
	o->reply_threads = DEFAULT_REPLY_THREADS;
	while ((ch = getopt_long(argc, argv, "g:t:b:T:S:LMR:mfdo:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			o->group = optarg;
			break;
		case OPT_SERVER:
			if (check_endpoint(optarg, "--server") < 0)
				return -1;
			o->server = optarg;
			break;
		case OPT_AUTH:
			o->auth = optarg;
			break;
		case 't':
			if (parse_uint("--timeout", optarg, 1, 86400, &o->timeout_s) < 0)
				return -1;
			break;
		case 'b':
			if (parse_uint("--max-background", optarg, 1, 65535, &o->max_background) <
			    0)
				return -1;
			break;
		case 'T':
			if (parse_uint("--threads", optarg, 1, 1024, &o->threads) < 0)
				return -1;
			break;
		case 'S':
			if (parse_uint("--shm-slots", optarg, 0, 4096, &o->shm_slots) < 0)
				return -1;
			break;
		case 'L':
			o->no_links = 1;
			break;
		case 'M':
			o->no_map = 1;
			break;
		case 'R':
			if (parse_uint("--reply-threads", optarg, 0, 64, &o->reply_threads) < 0)
				return -1;
			break;
		case 'm':
			o->mlock = 1;
			break;
		case 'f':
			o->foreground = 1;
			break;
		case 'd':
			o->debug = 1;
			break;
		case 'o':
			if (add_fuse_opt(o, optarg) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("fused (peervol) %s, protocol %d.%d\n", PV_VERSION_STRING,
			       PV_PROTO_MAJOR, PV_PROTO_MINOR);
			return 1;
		default:
			fprintf(stderr, "Try 'fused --help'.\n");
			return -1;
		}
	}
	if (!o->group || !o->group[0]) {
		fprintf(stderr, "fused: --group is required (e.g. --group tcp://127.0.0.1:7100)\n"
				"Try 'fused --help'.\n");
		return -1;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "fused: %s\nTry 'fused --help'.\n",
			optind >= argc ? "no MOUNTPOINT given" : "more than one MOUNTPOINT given");
		return -1;
	}
	o->mountpoint = argv[optind];
	return 0;
}

/* Whether addr (of option opt) is a ZeroMQ endpoint fused can connect to:
 * tcp://HOST:PORT or ipc://PATH. Says what is wrong on stderr when it is
 * not. */
static int check_endpoint(const char *addr, const char *opt)
{
	const char *port;
	uint64_t v;

	if (!strncmp(addr, "ipc://", 6) && addr[6])
		return 0;
	if (!strncmp(addr, "tcp://", 6) && (port = strrchr(addr + 6, ':')) && port > addr + 6 &&
	    pv_parse_u64(port + 1, 1, 65535, &v) == 0)
		return 0;
	fprintf(stderr,
		"fused: %s address '%s' is not a ZeroMQ endpoint: give tcp://IP:PORT "
		"(e.g. tcp://127.0.0.1:%d) or ipc://PATH\n",
		opt, addr, PV_DEFAULT_PORT);
	return -1;
}

/* Undoes /proc/self/mountinfo's escapes (\040 for a space, ...) in place. */
static void unescape_octal(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* Whether path (resolved) may be mounted on: a directory that is not a
 * mount point already (a second mount would hide the first). Says why not
 * on stderr. */
static int check_mountpoint(const char *path)
{
	char line[PATH_MAX * 2 + 256], mnt[PATH_MAX], fstype[64];
	struct stat st;
	FILE *f;
	int found = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "fused: mount point %s: %m\n", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fused: mount point %s is not a directory: mount on an empty "
				"directory\n",
			path);
		return -1;
	}
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0; /* cannot tell: the kernel decides */
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root MOUNTPOINT options ... - FSTYPE ... */
		const char *dash = strstr(line, " - ");

		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 || !dash ||
		    sscanf(dash + 3, "%63s", fstype) != 1)
			continue;
		unescape_octal(mnt);
		found = strcmp(mnt, path) == 0;
	}
	fclose(f);
	if (found) {
		fprintf(stderr, "fused: %s is already a mount point (%s): unmount it first or "
				"mount on another directory\n",
			path, fstype);
		return -1;
	}
	return 0;
}

/* Splits the --group list into c->group; 0 or -1. */
static int split_group(char *list, struct client_options *c)
{
	char *save = NULL, *tok;

	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char **g;

		if (!*tok)
			continue;
		if (check_endpoint(tok, "--group") < 0)
			return -1;
		g = realloc(c->group, (c->n_group + 1) * sizeof(*g));
		if (!g) {
			fprintf(stderr, "fused: out of memory\n");
			return -1;
		}
		c->group = g;
		c->group[c->n_group++] = tok;
	}
	if (!c->n_group) {
		fprintf(stderr, "fused: --group lists no address\n");
		return -1;
	}
	return 0;
}

/* Forks; the parent waits for the child to report the mount ready and exits
 * with 0 (ready) or 1. Returns in the child the fd to report on. */
static int daemon_fork(void)
{
	int fds[2];
	char ok = 0;
	pid_t pid;

	if (pipe(fds) < 0) {
		pv_err("pipe: %m");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		pv_err("fork: %m");
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid > 0) {
		close(fds[1]);
		while (read(fds[0], &ok, 1) < 0 && errno == EINTR)
			;
		_exit(ok == 1 ? 0 : 1);
	}
	close(fds[0]);
	if (setsid() < 0)
		pv_warn("setsid: %m");
	return fds[1];
}

/* In the child: detaches from the terminal and lets the parent exit 0. */
static void daemon_ready(int fd)
{
	char ok = 1;
	int null = open("/dev/null", O_RDWR);

	if (chdir("/") < 0)
		pv_warn("chdir /: %m");
	pv_log_open("fused", 0, 1);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (write(fd, &ok, 1) != 1)
		pv_warn("cannot tell the parent process the mount is ready: %m");
	close(fd);
}

static struct pv_key client_key;

/* Loads --auth: a client key, not the group's. 0, or -1 said on stderr. */
static int load_key(const char *path)
{
	char err[512];

	if (pv_key_load(path, &client_key, err, sizeof(err)) < 0) {
		fprintf(stderr, "fused: --auth: %s\n", err);
		return -1;
	}
	if (client_key.kind != PV_KEY_CLIENT) {
		fprintf(stderr,
			"fused: --auth: %s is the group key, which only servers hold; give fused "
			"a client key made by 'peerctl client add NAME'\n",
			path);
		memset(&client_key, 0, sizeof(client_key));
		return -1;
	}
	if (!zmq_has("curve")) {
		fprintf(stderr, "fused: --auth: this libzmq has no CURVE support\n");
		return -1;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "fused: --auth: libsodium does not start\n");
		return -1;
	}
	fused_key = &client_key;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {0};
	struct client_options copt = {0};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct client *client = NULL;
	struct fs_ctx *fs = NULL;
	char mountpoint[PATH_MAX], *group_copy = NULL;
	int rc, ret = 1, ready_fd = -1, mounted = 0;

	pv_tune_malloc();

	rc = parse_options(argc, argv, &o);
	if (rc) {
		ret = rc > 0 ? 0 : 1;
		goto out_opts;
	}
	if (!realpath(o.mountpoint, mountpoint)) {
		fprintf(stderr, "fused: mount point %s: %m\n", o.mountpoint);
		goto out_opts;
	}
	if (check_mountpoint(mountpoint) < 0)
		goto out_opts;
	if (o.auth && load_key(o.auth) < 0)
		goto out_opts;
	group_copy = strdup(o.group);
	if (!group_copy || split_group(group_copy, &copt) < 0)
		goto out_opts;
	copt.timeout_s = o.timeout_s;
	copt.server = o.server;
	pv_log_open("fused", 0, 0);
	if (o.debug)
		pv_log_level = LOG_DEBUG;

	if (fuse_opt_add_arg(&args, argv[0]) < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, "fsname=peervol,subtype=peervol") < 0 ||
	    (o.fuse_opts &&
	     (fuse_opt_add_arg(&args, "-o") < 0 || fuse_opt_add_arg(&args, o.fuse_opts) < 0)) ||
	    fuse_opt_add_arg(&args, "-o") < 0 || fuse_opt_add_arg(&args, "max_read=1048576") < 0) {
		pv_err("out of memory");
		goto out_args;
	}

	if (!o.foreground) {
		ready_fd = daemon_fork();
		if (ready_fd < 0)
			goto out_args;
	}
	/* fused serves the block layer (a loop device on this mount): its memory
	 * allocations must not wait for writeback through itself. Set before any
	 * thread exists: threads inherit it. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		pv_warn("cannot mark fused as an IO flusher (%m); under memory pressure a loop "
			"device on this mount may stall");
	if (o.mlock && mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
		pv_err("--mlock: cannot lock fused's memory: %m");
		goto out_args;
	}
	/* after the fork: servers find it through this process's /proc */
	copt.shm = o.shm_slots && shm_init(o.shm_slots) == 0;
	copt.links = !o.no_links;
	/* mlockall(MCL_FUTURE) would fault in and lock every mapped file whole */
	copt.map = copt.shm && !o.no_map && !o.mlock;
	client = client_new(&copt);
	if (!client)
		goto out_args;
	fs = fs_new(client, o.max_background);
	if (!fs)
		goto out_client;
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!se) {
		pv_err("cannot create the FUSE session (bad -o option?)");
		goto out_fs;
	}
	if (fuse_session_mount(se, mountpoint) < 0) {
		pv_err("cannot mount on %s", mountpoint);
		goto out_session;
	}
	mounted = 1;
	/* before the client thread, which queues answers to them */
	reply_start(o.reply_threads);
	if (loop_prepare(se) < 0 || client_start(client) < 0)
		goto out_session;
	pv_info("mounted the group's volumes on %s (group %s, timeout %u s, max_background "
		"%u, threads %u)",
		mountpoint, o.group, o.timeout_s, o.max_background, o.threads);
	if (ready_fd >= 0) {
		daemon_ready(ready_fd);
		ready_fd = -1;
	}

	rc = loop_run(o.threads);
	if (rc < 0) {
		errno = -rc;
		pv_err("FUSE loop failed: %m");
	} else {
		ret = 0;
		if (rc > 0)
			pv_info("signal %d: unmounting %s", rc, mountpoint);
		else
			pv_info("unmounted %s", mountpoint);
	}

out_session:
	/* outstanding FUSE requests are answered before the session goes */
	client_destroy(&client);
	loop_end();
	if (mounted)
		fuse_session_unmount(se);
	fuse_session_destroy(se);
out_fs:
	fs_destroy(&fs);
out_client:
	client_destroy(&client);
out_args:
	shm_destroy();
	fuse_opt_free_args(&args);
	if (ready_fd >= 0)
		close(ready_fd); /* the parent reads EOF and exits 1 */
out_opts:
	free(copt.group);
	free(group_copy);
	free(o.fuse_opts);
	return ret;
}
