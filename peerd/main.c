/* main.c: peerd's options, start-up and shutdown order.
 *
 * start: options -> (--daemon: fork, the caller waits) -> data directory
 *        lock -> LMDB -> server id check -> ZeroMQ ROUTER -> links ->
 *        catalog (volumes, peers) -> IO workers -> control socket ->
 *        metrics (--metrics-listen: its HTTP thread) -> ready (daemon.c: pid file, the caller exits
 * 0, systemd READY=1) -> reactor loop stop (SIGTERM/SIGINT): the same in reverse; queued IO
 * finishes first. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peerd.h"

struct server *srv;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: peerd --id N --listen tcp://IP:PORT --data DIR [options]\n"
		"\n"
		"The peervol server: stores the pages of volumes it owns, forwards requests\n"
		"for other pages to their owners, and takes part in the group's catalog.\n"
		"\n"
		"Required:\n"
		"  --id N                 server id, 1..65535, unique in the group; fixed\n"
		"                         for the data directory once used\n"
		"  --listen tcp://IP:PORT ZeroMQ endpoint for clients and peers\n"
		"                         (e.g. tcp://127.0.0.1:%d)\n"
		"  --data DIR             data directory (volume files and metadata)\n"
		"\n"
		"Options:\n"
		"  --control PATH         control socket for peerctl (mode 0600)\n"
		"                         (default /run/peervol/peerd.sock; give each peerd\n"
		"                         on one machine its own)\n"
		"  --weight N             capacity weight for page placement (default 1)\n"
		"  --max-volume-size SIZE largest volume this server creates (default 64T;\n"
		"                         suffixes K M G T)\n"
		"  --workers N            IO threads (default 8)\n"
		"  --link-port N|off      TCP port of the peer link listener on the --listen\n"
		"                         address: other members send requests there,\n"
		"                         read and written by the servers' own threads\n"
		"                         (default 0: any free port, told to the group in\n"
		"                         heartbeats; off: peers use ZeroMQ only)\n"
		"  --link-memory SIZE     memory that records partly received on links\n"
		"                         may hold, all links together (default 256M;\n"
		"                         at least 16M); a record past it waits\n"
		"  --link-per-source N    links one IP address may hold open (default\n"
		"                         64, 1..1024); more are refused\n"
		"  --daemon               run in the background, log to syslog; returns once\n"
		"                         the server is serving (exit 0), or with its\n"
		"                         reason on stderr and exit 1 when it cannot start\n"
		"  --pid-file PATH        write the server's pid there once it is serving\n"
		"                         (removed at exit)\n"
		"  --resync-catalog       replace this server's catalog with the one its\n"
		"                         peers hold under the same or a newer version\n"
		"                         (repairs a divergence: docs/architecture.md)\n"
		"  --no-load-monitor      count no load (figures, rebalancer off here;\n"
		"                         also PEERD_LOAD_MONITOR=0 in the environment)\n"
		"  --metrics-listen IP:PORT\n"
		"                         serve Prometheus metrics at http://IP:PORT/metrics\n"
		"                         (IPv6: [ADDR]:PORT; default off; docs/metrics.md)\n"
		"  --auth FILE            the group key (peerctl group keygen; mode 0600):\n"
		"                         only servers holding it and clients with a key\n"
		"                         of 'peerctl client add' get in (docs/security.md;\n"
		"                         default: no authentication, logged at start)\n"
		"  --encrypt on|off       with --auth: encrypt links with TLS too (ZeroMQ\n"
		"                         traffic is always encrypted under --auth;\n"
		"                         default off: links authenticated, not encrypted)\n"
		"  --debug                log every request\n"
		"  --help                 this text\n"
		"  --version              print the version\n"
		"\n"
		"Example:\n"
		"  peerd --id 1 --listen tcp://127.0.0.1:7100 --data /var/lib/peervol/1 \\\n"
		"        --control /run/peervol/1.sock\n",
		PV_DEFAULT_PORT);
}

static void on_signal(int sig)
{
	reactor_stop();
}

static int parse_options(int argc, char **argv, struct peerd_config *cfg)
{
	enum {
		O_ID = 256,
		O_LISTEN,
		O_DATA,
		O_CONTROL,
		O_WEIGHT,
		O_MAXVOL,
		O_WORKERS,
		O_LINK_PORT,
		O_LINK_MEMORY,
		O_LINK_PER_SOURCE,
		O_DAEMON,
		O_PID_FILE,
		O_DEBUG,
		O_RESYNC,
		O_NO_LOAD,
		O_METRICS,
		O_AUTH,
		O_ENCRYPT,
		O_HELP,
		O_VERSION
	};
	static const struct option opts[] = {
	    {"id", required_argument, NULL, O_ID},
	    {"listen", required_argument, NULL, O_LISTEN},
	    {"data", required_argument, NULL, O_DATA},
	    {"control", required_argument, NULL, O_CONTROL},
	    {"weight", required_argument, NULL, O_WEIGHT},
	    {"max-volume-size", required_argument, NULL, O_MAXVOL},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"link-port", required_argument, NULL, O_LINK_PORT},
	    {"link-memory", required_argument, NULL, O_LINK_MEMORY},
	    {"link-per-source", required_argument, NULL, O_LINK_PER_SOURCE},
	    {"daemon", no_argument, NULL, O_DAEMON},
	    {"pid-file", required_argument, NULL, O_PID_FILE},
	    {"debug", no_argument, NULL, O_DEBUG},
	    {"resync-catalog", no_argument, NULL, O_RESYNC},
	    {"no-load-monitor", no_argument, NULL, O_NO_LOAD},
	    {"metrics-listen", required_argument, NULL, O_METRICS},
	    {"auth", required_argument, NULL, O_AUTH},
	    {"encrypt", required_argument, NULL, O_ENCRYPT},
	    {"help", no_argument, NULL, O_HELP},
	    {"version", no_argument, NULL, O_VERSION},
	    {NULL, 0, NULL, 0},
	};
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];
	uint64_t v;
	int c;

	cfg->weight = 1;
	cfg->workers = 8;
	cfg->max_volume_size = 64ull << 40;
	cfg->link_memory = LINK_MEM_DEFAULT;
	cfg->link_per_source = LINKSET_PER_SOURCE_DEFAULT;
	if (getenv("PEERD_LOAD_MONITOR") && !strcmp(getenv("PEERD_LOAD_MONITOR"), "0"))
		load_enabled = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_ID:
			if (pv_parse_u64(optarg, 1, 65535, &v) < 0) {
				fprintf(stderr, "peerd: --id must be a number from 1 to 65535\n");
				return -1;
			}
			cfg->id = (uint32_t)v;
			break;
		case O_LISTEN:
			if (strncmp(optarg, "tcp://", 6) || strlen(optarg) >= sizeof(cfg->listen)) {
				fprintf(stderr, "peerd: --listen must be tcp://IP:PORT\n");
				return -1;
			}
			snprintf(cfg->listen, sizeof(cfg->listen), "%s", optarg);
			break;
		case O_DATA:
			if (strlen(optarg) >= sizeof(cfg->data_dir) - 64) {
				fprintf(stderr, "peerd: --data path too long\n");
				return -1;
			}
			snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", optarg);
			break;
		case O_CONTROL:
			snprintf(cfg->control, sizeof(cfg->control), "%s", optarg);
			break;
		case O_WEIGHT:
			if (pv_parse_u64(optarg, 1, 1000, &v) < 0) {
				fprintf(stderr,
					"peerd: --weight must be a number from 1 to 1000\n");
				return -1;
			}
			cfg->weight = (uint32_t)v;
			break;
		case O_MAXVOL:
			if (pv_parse_size(optarg, &cfg->max_volume_size, err, sizeof(err)) < 0 ||
			    cfg->max_volume_size < PV_SECTOR) {
				fprintf(stderr, "peerd: --max-volume-size: %s\n",
					cfg->max_volume_size < PV_SECTOR ? "too small" : err);
				return -1;
			}
			break;
		case O_WORKERS:
			if (pv_parse_u64(optarg, 1, 256, &v) < 0) {
				fprintf(stderr,
					"peerd: --workers must be a number from 1 to 256\n");
				return -1;
			}
			cfg->workers = (int)v;
			break;
		case O_LINK_PORT:
			if (!strcmp(optarg, "off")) {
				cfg->link_port = -1;
			} else if (pv_parse_u64(optarg, 0, 65535, &v) < 0) {
				fprintf(stderr, "peerd: --link-port must be a port number from 0 "
						"to 65535, or off\n");
				return -1;
			} else {
				cfg->link_port = (int)v;
			}
			break;
		case O_LINK_MEMORY:
			/* one record of the largest size must fit, or it would
			 * wait for ever */
			if (pv_parse_size(optarg, &cfg->link_memory, err, sizeof(err)) < 0) {
				fprintf(stderr, "peerd: --link-memory: %s\n", err);
				return -1;
			}
			if (cfg->link_memory < LINK_DATA_MAX) {
				fprintf(stderr, "peerd: --link-memory must be at least 16M\n");
				return -1;
			}
			break;
		case O_LINK_PER_SOURCE:
			if (pv_parse_u64(optarg, 1, LINKSET_ACCEPT_MAX, &v) < 0) {
				fprintf(stderr,
					"peerd: --link-per-source must be a number from 1 "
					"to %d\n",
					LINKSET_ACCEPT_MAX);
				return -1;
			}
			cfg->link_per_source = (int)v;
			break;
		case O_DAEMON:
			cfg->daemon = 1;
			break;
		case O_PID_FILE:
			if (!optarg[0] || strlen(optarg) >= sizeof(cfg->pid_file)) {
				fprintf(stderr,
					"peerd: --pid-file needs a path (under %zu bytes)\n",
					sizeof(cfg->pid_file));
				return -1;
			}
			snprintf(cfg->pid_file, sizeof(cfg->pid_file), "%s", optarg);
			break;
		case O_DEBUG:
			cfg->debug = 1;
			break;
		case O_RESYNC:
			cfg->resync_catalog = 1;
			break;
		case O_NO_LOAD:
			load_enabled = 0;
			break;
		case O_METRICS:
			if (strlen(optarg) >= sizeof(cfg->metrics_listen) ||
			    metrics_parse_address(optarg, &ss, &sslen) < 0) {
				fprintf(stderr, "peerd: --metrics-listen must be IP:PORT (IPv6: "
						"[ADDR]:PORT), e.g. 127.0.0.1:7190\n");
				return -1;
			}
			snprintf(cfg->metrics_listen, sizeof(cfg->metrics_listen), "%s", optarg);
			break;
		case O_AUTH:
			if (!optarg[0] || strlen(optarg) >= sizeof(cfg->auth_path)) {
				fprintf(stderr, "peerd: --auth needs the path of the group key file\n");
				return -1;
			}
			snprintf(cfg->auth_path, sizeof(cfg->auth_path), "%s", optarg);
			break;
		case O_ENCRYPT:
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "peerd: --encrypt must be on or off\n");
				return -1;
			}
			cfg->encrypt = !strcmp(optarg, "on");
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			exit(0);
		case O_VERSION:
			printf("peerd %s (protocol %d.%d)\n", PV_VERSION_STRING, PV_PROTO_MAJOR,
			       PV_PROTO_MINOR);
			exit(0);
		default:
			fprintf(stderr, "Try 'peerd --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "peerd: unexpected argument '%s'\nTry 'peerd --help'.\n",
			argv[optind]);
		return -1;
	}
	if (!cfg->id || !cfg->listen[0] || !cfg->data_dir[0]) {
		fprintf(stderr, "peerd: --id, --listen and --data are required\n"
				"Try 'peerd --help'.\n");
		return -1;
	}
	if (cfg->encrypt && !cfg->auth_path[0]) {
		fprintf(stderr, "peerd: --encrypt on needs --auth (the group key): encryption "
				"uses the group's keys\n");
		return -1;
	}
	if (!cfg->control[0])
		snprintf(cfg->control, sizeof(cfg->control), "/run/peervol/peerd.sock");
	return 0;
}

/* Takes the data directory's lock: one peerd per directory. */
static int lock_data_dir(void)
{
	char path[PATH_MAX + 8];

	if (mkdir(srv->cfg.data_dir, 0700) < 0 && errno != EEXIST) {
		pv_err("cannot create data directory %s: %m", srv->cfg.data_dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/lock", srv->cfg.data_dir);
	srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (srv->lock_fd < 0) {
		pv_err("cannot open %s: %m", path);
		return -1;
	}
	if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		pv_err("data directory %s is locked by another peerd (lock %s); stop it first or "
		       "use another --data",
		       srv->cfg.data_dir, path);
		return -1;
	}
	return 0;
}

/* The data directory belongs to one server id for ever. */
static int check_server_id(void)
{
	void *val;
	size_t len;
	uint32_t id;
	int rc = meta_get("config", "server_id", &val, &len);

	if (rc < 0)
		return -1;
	if (rc == 1)
		return meta_put("config", "server_id", &srv->cfg.id, sizeof(srv->cfg.id));
	if (len != sizeof(id)) {
		free(val);
		pv_err("data directory %s has a damaged server id record", srv->cfg.data_dir);
		return -1;
	}
	memcpy(&id, val, sizeof(id));
	free(val);
	if (id != srv->cfg.id) {
		pv_err("data directory %s belongs to server %u, not %u; start it with --id %u",
		       srv->cfg.data_dir, id, srv->cfg.id, id);
		return -1;
	}
	return 0;
}

/* Every client and peer link is a descriptor (up to LINKSET_ACCEPT_MAX of
 * them, besides ZeroMQ's and the data files): the soft limit goes up to
 * the hard one, as far as the administrator allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int open_router(void)
{
	int linger = 0, hwm = 100000, hb_ivl = PEERD_ZMQ_PING_MS, hb_timeout = PEERD_ZMQ_SILENT_MS;

	srv->router = zmq_socket(srv->zctx, ZMQ_ROUTER);
	if (!srv->router)
		goto fail;
	zmq_setsockopt(srv->router, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(srv->router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(srv->router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	wire_socket_limit(srv->router);
	if (auth_server_socket(srv->router) < 0)
		return -1;
	/* ZMTP heartbeats: a connection that sends nothing for
	 * PEERD_ZMQ_SILENT_MS after a PING is dropped, so a peer that announced
	 * a large frame (libzmq allocates it whole) and stalled gives its memory
	 * back; libzmq peers (fused, other servers) answer PINGs by themselves */
	zmq_setsockopt(srv->router, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof(hb_ivl));
	zmq_setsockopt(srv->router, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof(hb_timeout));
	if (zmq_bind(srv->router, srv->cfg.listen) < 0)
		goto fail;
	return 0;
fail:
	pv_err("cannot listen on %s: %s", srv->cfg.listen, zmq_strerror(errno));
	return -1;
}

/* What the reactor polls and runs, in the order it runs them when several
 * are ready in one round: completed disk IO first, then new requests,
 * admin commands, links, the join in progress, replies from members; then
 * the periodic work. A new module adds its line here. */
static int register_reactor(int io_fd)
{
	if (auth_zap_socket() && reactor_add_socket(auth_zap_socket(), auth_zap_input, NULL) < 0)
		return -1;
	if (auth_monitor_socket() &&
	    reactor_add_socket(auth_monitor_socket(), auth_monitor_input, NULL) < 0)
		return -1;
	if (reactor_add_fd(io_fd, worker_input, NULL) < 0 ||
	    reactor_add_socket(srv->router, ops_router_input, NULL) < 0 ||
	    reactor_add_socket(srv->control, control_input, NULL) < 0 ||
	    (shm_pass_fd() >= 0 && reactor_add_fd(shm_pass_fd(), shm_pass_input, NULL) < 0) ||
	    reactor_add_poller(LINKSET_POLL_MAX, linkset_poll_fill, linkset_poll_done, NULL) < 0 ||
	    reactor_add_poller(1, join_poll_fill, join_poll_done, NULL) < 0 ||
	    reactor_add_poller(PEERD_MAX_MEMBERS, peers_poll_fill, peers_poll_done, NULL) < 0 ||
	    reactor_every(PEERD_TICK_MS, catalog_tick, NULL) < 0 ||
	    reactor_every(PEERD_TICK_MS, forward_tick, NULL) < 0 ||
	    reactor_every(PEERD_TICK_MS, migrate_tick, NULL) < 0 ||
	    reactor_every(1000, snap_tick, NULL) < 0 ||
	    reactor_every(PEERD_HEARTBEAT_MS, peers_tick, NULL) < 0 ||
	    reactor_every(PEERD_HEARTBEAT_MS, linkset_tick, NULL) < 0 ||
	    reactor_every(PEERD_HEARTBEAT_MS, clients_expire, NULL) < 0 ||
	    reactor_every(PEERD_HEARTBEAT_MS, shm_expire, NULL) < 0 ||
	    reactor_every(PEERD_TICK_MS, placement_tick, NULL) < 0 ||
	    reactor_every(1000, load_tick, NULL) < 0 ||
	    reactor_every(1000, balance_tick, NULL) < 0 ||
	    reactor_every(1000, metrics_tick, NULL) < 0 ||
	    reactor_every(1000, connbal_tick, NULL) < 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	static struct server server;
	struct sigaction sa;
	int rc = 1, io_fd = -1;

	pv_tune_malloc();
	raise_fd_limit();
	srv = &server;
	srv->lock_fd = -1;
	if (parse_options(argc, argv, &srv->cfg) < 0)
		return 2;
	pv_log_level = srv->cfg.debug ? LOG_DEBUG : LOG_INFO;
	pv_log_open("peerd", srv->cfg.id, 0);
	/* before anything starts a thread; start-up errors still reach the
	 * caller's stderr, and its exit status says whether we are serving */
	if (srv->cfg.daemon && daemon_start() < 0)
		goto out;
	srand((unsigned)(getpid() ^ pv_now_ms()));

	if (lock_data_dir() < 0)
		goto out;
	if (meta_open(srv->cfg.data_dir) < 0)
		goto out;
	if (check_server_id() < 0)
		goto out_meta;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv->started_ms = pv_now_ms();

	srv->zctx = zmq_ctx_new();
	if (!srv->zctx) {
		pv_err("cannot create ZeroMQ context: %s", zmq_strerror(errno));
		goto out_meta;
	}
	srv->cork = batch_cork_new();
	if (!srv->cork) {
		pv_err("out of memory");
		goto out_zmq;
	}
	if (auth_init() < 0 || auth_zap_open() < 0 || open_router() < 0 ||
	    auth_monitor_open(srv->router) < 0)
		goto out_zmq;
	if (linkset_open() < 0)
		goto out_zmq;
	if (catalog_load() < 0)
		goto out_links;
	/* before anything is served: pieces of pages in transit may exist at
	 * their targets only, and moved pages' routing entries override the
	 * initial layout */
	if (migrate_load() < 0)
		goto out_catalog;
	io_fd = worker_start(srv->cfg.workers);
	if (io_fd < 0)
		goto out_catalog;
	if (control_open() < 0 || shm_pass_open() < 0)
		goto out_workers;
	if (metrics_start() < 0)
		goto out_control;
	if (register_reactor(io_fd) < 0)
		goto out_metrics;
	pv_info("serving on %s, data %s, control %s, %d IO threads, catalog version %llu",
		srv->cfg.listen, srv->cfg.data_dir, srv->cfg.control, srv->cfg.workers,
		(unsigned long long)srv->version);
	if (daemon_ready() < 0)
		goto out_metrics;
	rc = reactor_run() < 0 ? 1 : 0;
	daemon_stopping();
	pv_info("stopping: %llu requests in flight", (unsigned long long)request_inflight());
out_metrics:
	reactor_clear();
	metrics_stop();
out_control:
	shm_pass_close();
	control_close();
out_workers:
	worker_stop();
	worker_drain();
out_catalog:
	forward_abort_all();
	linkset_close();
	clients_free();
	shm_free_all();
	migrate_free();
	load_free();
	catalog_free();
out_links:
	linkset_close(); /* again after catalog_free: the listener only */
out_zmq:
	batch_cork_free(srv->cork); /* sends what the last round queued */
	srv->cork = NULL;
	if (srv->router)
		zmq_close(srv->router);
	auth_close();
	zmq_ctx_term(srv->zctx);
out_meta:
	meta_close();
out:
	daemon_end();
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	return rc;
}
