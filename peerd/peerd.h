/* peerd.h: the private map of the server. Every cross-file function of peerd
 * is listed here under the file that defines it. All state below belongs to
 * the reactor thread unless a comment says otherwise; IO worker threads only
 * see struct io_job (worker.c). */
#ifndef PEERD_H
#define PEERD_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <zmq.h>

#define HASH_NONFATAL_OOM 1 /* uthash: an add without memory leaves the item out (hh.tbl NULL) */
#include <uthash.h>

#include "auth.h"
#include "batch.h"
#include "link.h"
#include "pagemath.h"
#include "pvlog.h"
#include "util.h"
#include "wire.h"

#define PEERD_MAX_MEMBERS      64
#define PEERD_HEARTBEAT_MS     1000
#define PEERD_TICK_MS	       100 /* catalog and forwarding timeouts run this often */
#define PEERD_RECV_BATCH       256 /* messages read from one socket per round */
#define PEERD_DOWN_AFTER_MS    3000
#define PEERD_CLIENT_EXPIRE_MS 10000
#define PEERD_TXN_TIMEOUT_MS   5000
#define PEERD_LOCK_TIMEOUT_MS  10000
#define PEERD_JOIN_WAIT_S      25 /* most a joiner waits for its answer */
/* A coordinator commits only within PEERD_LOCK_TIMEOUT_MS minus this of
 * sending its PREPAREs, so that its COMMIT reaches every participant while
 * the participant's lock (taken after that moment) still holds (change.c). */
#define PEERD_LOCK_MARGIN_MS	   3000
#define PEERD_COMMIT_RESEND_MS	   500	 /* COMMIT not acknowledged: sent again after */
#define PEERD_COMMIT_RESENDS	   3	 /* ... this many times at most */
#define PEERD_CATALOG_HASH_LEN	   32	 /* BLAKE2b-256 of the catalog (catalog_hash) */
#define PEERD_DIVERGED_LOG_MS	   60000 /* a catalog divergence is logged this often */
#define PEERD_FWD_TIMEOUT_MS	   5000	 /* a forwarded part without an answer fails UNAVAILABLE */
#define PEERD_CATALOG_LAG_RETRY_MS 50	 /* BUSY: a volume id this server has not learnt yet */
#define PEERD_ZMQ_PING_MS	   2000	 /* ZMTP PING to every ZeroMQ peer this often */
#define PEERD_ZMQ_SILENT_MS	   10000 /* and drop one silent this long after a PING */

/* Clients' low-water marks (late copies, clients.c): kept this long after
 * the last request that renewed one, for at most this many clients. */
#define PEERD_MARK_EXPIRE_MS 3600000
#define PEERD_MARKS_MAX	     65536

struct peerd_config {
	uint32_t id;
	char listen[256];
	char data_dir[PATH_MAX];
	char control[PATH_MAX];
	uint32_t weight;
	uint64_t max_volume_size;
	int workers;
	int link_port;	      /* peer link listener: 0 any free port, -1 off */
	uint64_t link_memory; /* bound on partly received link records (link.h) */
	int link_per_source;  /* accepted links one IP address may hold */
	int daemon;
	char pid_file[PATH_MAX]; /* --pid-file, or "" */
	int debug;
	int resync_catalog;	 /* --resync-catalog: take the peers' catalog (catalog.c) */
	char metrics_listen[64]; /* --metrics-listen IP:PORT (metrics.c), or "" */
	char auth_path[PATH_MAX]; /* --auth: the group key file (auth.c), or "" */
	int encrypt;		  /* --encrypt on: links are TLS (ZeroMQ is CURVE anyway) */
};

/* A volume as this server knows it: catalog entry, routing table and, when
 * this server may hold pages of it, its data file. Reference counted: the
 * catalog holds one reference, every request and IO job one more; the data
 * file is closed when the last reference goes. */
struct volume {
	struct volume *next;
	int refs;
	int deleted; /* removed from the catalog; file unlinked */
	char name[PV_MAX_NAME + 1];
	uint64_t id;
	uint64_t size;
	uint32_t page_size;
	uint64_t npages;
	uint64_t created;
	uint32_t servers[PEERD_MAX_MEMBERS]; /* allowed servers */
	size_t nservers;
	uint32_t *owner; /* routing table: owner of each page */
	uint32_t *epoch; /* routing table: epoch of each page (0: initial layout;
			  * each move +1; 8 bytes per page with owner) */
	uint64_t owned_count[PEERD_MAX_MEMBERS]; /* pages owned by holders_ids[i] */
	uint32_t owned_ids[PEERD_MAX_MEMBERS];	 /* ... (catalog_route_set keeps */
	size_t nowned;				 /* them: O(1) per moved page) */
	uint64_t balance_gen;			 /* VolumeInfo.balance_gen (placement.c) */
	uint64_t balanced_gen;	   /* placement.c: this server holds its share as of */
	struct mig_out *migrating; /* migrate.c: this server's moves of its pages */
	int fd;			   /* data file, -1 when not open */
	uint64_t dev;		   /* st_dev and st_ino of fd (store_open): what a client */
	uint64_t ino;		   /* that maps the file names it by (PV_F_MAP) */
	int inline_io;		   /* store.c: STORE_INLINE_* bits, what may run on the reactor */
	uint32_t holders[PEERD_MAX_MEMBERS]; /* connection table: owners of >= 1 page, */
	size_t nholders;		     /* ascending; catalog_routes_changed */
	uint64_t owned_here;		     /* pages this server owns */
	uint64_t *written_map;		     /* bit per page: holds data here (store.c) */
	uint64_t written;		     /* cached stats (store_stat), refreshed by peers.c */
	uint64_t bytes;
	uint64_t err_logged_ms; /* store.c: when an IO failure was last logged */
	uint64_t err_unlogged;	/* store.c: failures since then, not logged */
	int no_space;		/* store.c: a write failed for want of space */
	int flush_err;		/* store.c: errno of a failed FLUSH; later FLUSHes fail too */
	struct vol_snaps *snaps; /* snap.c: snapshots, holds, writes in flight */
};

/* A member of the group as this server knows it. */
struct member {
	uint32_t id;
	char address[256];
	uint32_t weight;
	uint64_t capacity;
	int draining; /* server evacuate: its pages move off it (Member.draining) */
	void *sock;   /* DEALER to its ROUTER; NULL for self */
	uint64_t last_heard_ms;
	int up;
	uint64_t catalog_version;
	uint8_t catalog_hash[PEERD_CATALOG_HASH_LEN]; /* of that version, from its heartbeats */
	int has_catalog_hash;			      /* it sent one */
	int catalog_diverged;	     /* same version as ours, another hash (catalog.c) */
	uint64_t pages, bytes, free; /* from its heartbeats */
	Pv__Heartbeat *last_hb;	     /* last heartbeat body, owned */
	uint64_t last_hb_ms;	     /* when it came (pv_now_ms) */
	uint32_t proto_version;	     /* of its last reply; 0 until one came */
	char link_address[64];	     /* its peer link listener, from its heartbeats */
	struct link *link;	     /* outgoing peer link (linkset.c), or NULL */
	int link_up;		     /* link connected: everything to it goes there */
	unsigned link_failures;	     /* in a row, since its last answer on a link */
	uint64_t link_retry_ms;	     /* no new link to it before then */
};

/* Who sent a message that arrived on the ROUTER or an accepted link, and
 * so where its reply goes (reply.c): the routing id (an accepted link's is
 * 9 bytes starting 0x00, which ZeroMQ never gives) and the transport. */
enum origin_via { ORIGIN_ROUTER, ORIGIN_LINK };

/* Who sent a message, as its connection proved (auth.c). */
enum auth_role {
	AUTH_OPEN = 0,	 /* a group without keys: anyone may do anything */
	AUTH_CLIENT = 1, /* a client key of the catalog, not revoked */
	AUTH_SERVER = 2, /* the group's membership secret */
	AUTH_NOBODY = 3, /* a revoked client (on a connection opened before) */
};

struct origin {
	enum origin_via via;
	enum auth_role role;
	size_t len;
	uint8_t ident[PV_MAX_IDENTITY];
};

/* A data request (READ/WRITE/FLUSH/TRIM) from a client or a peer, from
 * arrival to reply. Created by request_start, freed when its last part is
 * done (pending reaches 0); reactor thread only. */
struct request {
	UT_hash_handle hh;	/* in-flight table (request.c), key: client_id, req_id */
	int in_table;		/* in it now (as the newest request of its key) */
	struct request *shadow; /* older request of the same key, out of the table */
	uint32_t op;
	uint64_t client_id;
	uint64_t req_id;	    /* right after client_id: the two are the table's key */
	uint64_t client_req;	    /* the client's own req_id for it (a forwarded
				     * part's Header.client_req_id; 0: unknown) */
	uint64_t client_done_below; /* the client's low-water mark, the largest known
				     * here; both go on with forwarded parts */
	uint64_t offset;
	uint64_t length;
	uint32_t flags;
	uint32_t hops;
	uint64_t sent_ts; /* the sender's clock when it sent this copy (Header.timestamp) */
	int batch_reply;  /* the sender speaks 1.1: the reply may be batched */
	struct volume *vol;
	struct origin from; /* who asked: the reply goes there */
	zmq_msg_t data;	    /* WRITE payload */
	int has_data;
	uint8_t *buf;		/* READ result, length bytes (malloc'd, or in shm) */
	struct shm_region *shm; /* PV_F_SHM: the client's memory holds the data */
	uint64_t shm_offset;	/* ... at this offset */
	int shm_lost;		/* a part sent as an offset got no answer in time */
	zmq_msg_t reply;	/* READ result as one owner's message (no copy) */
	int has_reply;
	int pending; /* parts not yet done */
	int status;  /* first non-OK status of a part */
	uint32_t moved_to;
	uint64_t moved_epoch; /* with MOVED: the routing entry's epoch */
	uint32_t from_server; /* Header.server_id: the peer that forwarded it */
	uint64_t start_us;    /* load_now_us() when it arrived (served time) */
	uint64_t snap_id;     /* READ of a snapshot's image (Header.snapshot_id) */
	uint64_t stamp;	      /* WRITE/TRIM: Header.stamp, or this server's clock */
	char message[160];
};

/* One unit of disk work for an IO worker thread. */
enum io_kind { IO_READ, IO_WRITE, IO_TRIM, IO_FLUSH, IO_CALL };

struct io_job {
	struct io_job *next;
	enum io_kind kind;
	int fd;
	uint64_t offset;
	uint64_t length;
	uint8_t *ptr; /* READ destination / WRITE source */
	int fua;
	int err; /* errno of the operation, 0 on success (set by the worker) */
	struct request *req;
	struct volume *vol;
	/* IO_CALL: run(job) on an IO thread, then done(job) on the reactor
	 * (instead of request_io_done): work that must not stall the reactor
	 * (migrate.c: piece copies, fdatasync, LMDB records). */
	void (*run)(struct io_job *job);
	void (*done)(struct io_job *job);
	void *arg;
	/* migrate.c: a local job on a page moving out of this server counts
	 * as in flight on it (mig_first..mig_last: pieces whose copy waits) */
	struct mig_out *mig;
	uint32_t mig_first, mig_last;
	int mig_counted; /* the pieces' counts were raised for it */
	/* snap.c: READ of this snapshot's image (0: the volume); a WRITE or
	 * TRIM that preserves chunks first (cow), counted in flight (counted) */
	uint64_t snap_id;
	int snap_cow, snap_counted;
	uint64_t stamp; /* WRITE/TRIM: the request's stamp (Header.stamp) */
	int snap_late;	/* stamped before the newest cut (snap_late_begin) */
};

/* How a command that changes the catalog (volume create/delete, group
 * join) tells its starter (control.c) how it ended: called exactly once,
 * with ok 1 (vol: the volume made by volume create, else NULL), or ok 0 and
 * the reason in err, and its kind in why (ENOENT: no such volume or member,
 * EEXIST: the name is taken, else 0); with ok 0 and err NULL when peerd
 * stops first (release arg, answer nobody). The starter owns arg. */
typedef void (*catalog_done_fn)(void *arg, int ok, struct volume *vol, int why, const char *err);

/* The whole server. One instance, owned by the reactor thread. */
struct server {
	struct peerd_config cfg;
	void *zctx;
	void *router;		 /* clients and peers */
	void *control;		 /* peerctl */
	struct batch_cork *cork; /* what this round sends, batched (batch.h) */
	int lock_fd;
	uint64_t started_ms;
	int stopping;

	/* catalog */
	uint64_t version;
	uint8_t catalog_hash[PEERD_CATALOG_HASH_LEN]; /* of the committed catalog */
	int catalog_diverged; /* some member holds another catalog of our version */
	char group_id[40];
	struct member members[PEERD_MAX_MEMBERS];
	size_t nmembers;
	struct volume *volumes;
	uint64_t next_volume_id;
};

extern struct server *srv;

/* main.c */
/* (options, start-up and shutdown order) */

/* daemon.c */
/* --daemon: forks; the calling process waits and exits 0 once the server
 * is serving, or with the child's status when it fails to start (its reason
 * on the caller's stderr). Before any thread starts. 0 (in the child) or -1. */
int daemon_start(void);
/* The server is serving: writes --pid-file, releases a --daemon caller
 * (stdio to /dev/null, logs to syslog from now on), tells systemd READY=1.
 * 0, or -1 (the pid file cannot be written: logged). */
int daemon_ready(void);
/* Tells systemd the server is stopping. */
void daemon_stopping(void);
/* Removes the pid file if it still holds our pid. */
void daemon_end(void);

/* reactor.c */
/* Work the reactor runs: a registered source's input is ready, or a timer
 * is due. */
typedef void (*reactor_fn)(void *arg);
/* Runs the poll loop until a signal stops it. Returns 0 or -1. */
int reactor_run(void);
/* Registers a ZeroMQ socket or an fd polled for input every round: fn(arg)
 * when it is readable. Sources run in the order registered. 0, or -1
 * (logged: a build limit). */
int reactor_add_socket(void *sock, reactor_fn fn, void *arg);
int reactor_add_fd(int fd, reactor_fn fn, void *arg);
/* Registers sources that change from round to round (a DEALER per member,
 * the links, the join socket): fill(items, max, arg) puts up to max poll
 * items in before each poll; done(items, n, arg) gets them back with their
 * revents. 0, or -1 (logged). */
int reactor_add_poller(size_t max, size_t (*fill)(zmq_pollitem_t *items, size_t max, void *arg),
		       void (*done)(const zmq_pollitem_t *items, size_t n, void *arg), void *arg);
/* Registers fn(arg) to run every ms milliseconds (first in the first
 * round). 0, or -1 (logged). */
int reactor_every(uint64_t ms, reactor_fn fn, void *arg);
/* Forgets every registration and timer (after the loop ended). */
void reactor_clear(void);
/* Asks the loop to stop (signal-safe). */
void reactor_stop(void);
/* Registers a timer callback to run once, after ms milliseconds. */
void reactor_after(uint64_t ms, void (*fn)(void *), void *arg);

/* auth.c: keys, CURVE on the ZeroMQ sockets, the ZAP handler, the keys of
 * links (include/auth.h, docs/security.md) */
/* Loads --auth (0, or -1 logged); without it logs once that the group is
 * unauthenticated. Before any socket is made. */
int auth_init(void);
void auth_close(void);
/* Whether the group is authenticated (--auth given). */
int auth_on(void);
/* Binds the ZAP handler (before the ROUTER binds). 0 or -1 (logged). */
int auth_zap_open(void);
/* The ZAP handler's socket (NULL without --auth) and its reactor callback. */
void *auth_zap_socket(void);
void auth_zap_input(void *arg);
/* Watches the ROUTER's failed handshakes (counted and logged as refusals);
 * its socket (NULL without --auth) and reactor callback. */
int auth_monitor_open(void *router);
void *auth_monitor_socket(void);
void auth_monitor_input(void *arg);
/* Makes sock a CURVE server with the group's identity (before bind). */
int auth_server_socket(void *sock);
/* Makes sock a CURVE client presenting this server's membership key to
 * the group (before connect): the DEALERs to members and of a join. */
int auth_member_socket(void *sock);
/* The role of the sender of a message that came on the ROUTER (first is
 * its first frame, which carries ZeroMQ's User-Id from the ZAP answer). */
enum auth_role auth_router_role(zmq_msg_t *first);
/* Links: the key a link opened by this server presents (id: the member
 * public key of the presented secret). */
void auth_link_self(uint8_t id[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES]);
/* Links: the key of the sender of a hello on an accepted link, by the id
 * it presents: a member key of the secret or the previous secret
 * (AUTH_SERVER) or a client's public key in the catalog (AUTH_CLIENT).
 * Returns the role with key and who ("server", "client NAME") filled in,
 * or AUTH_NOBODY with the reason in who (unknown, revoked). */
enum auth_role auth_link_lookup(const uint8_t id[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES],
				char *who, size_t wholen);
/* Whether a client public key is still accepted (linkset closes the links
 * of clients revoked since). */
int auth_client_ok(const uint8_t pub[PV_KEY_BYTES]);
/* After a catalog install: revoked clients' names (auth_router_role). */
void auth_catalog_installed(void);
/* Connections refused (ZAP and links), for status. */
uint64_t auth_refused(void);
/* A refusal on a link, counted and logged (rate-limited) with the address. */
void auth_refused_link(const char *from, const char *why);
#define AUTH_MAX_CLIENTS 4096 /* client keys in the catalog, revoked included */
#define AUTH_HANDSHAKE_MS 5000 /* a connection's key handshake must end within */
typedef void (*auth_done_fn)(void *arg, int ok, int why, const char *err); /* why: errno */
/* peerctl client add (add: pub) or revoke NAME: a catalog change; done(arg)
 * when it ended. 0, or -1 with err (done not called). */
int auth_client_change(int add, const char *name, const uint8_t pub[PV_KEY_BYTES],
		       auth_done_fn done, void *arg, char *err, size_t errlen);
/* The group's public key (client key files name it). */
void auth_group_public(uint8_t pub[PV_KEY_BYTES]);
/* Whether the catalog's client keys are well-formed (catalog_check); 1, or
 * 0 with the reason. */
int auth_catalog_check(const Pv__Catalog *c, char *err, size_t errlen);

/* reply.c */
/* An origin for a message from ident (an accepted link's identity, or a
 * ROUTER routing id of at most PV_MAX_IDENTITY bytes). */
void reply_origin(struct origin *o, const uint8_t *ident, size_t ident_len);
/* The one initialiser of reply headers: op, req_id, status, this server's
 * id and catalog version; the caller fills the rest. */
void reply_header(Pv__Header *r, uint32_t op, uint64_t req_id, int status);
/* Sends the reply header r, with data (moved, closed; or NULL), to whoever
 * asked: on its link, or on the ROUTER; with may_batch at the end of the
 * round with the rest (BATCH or one link write), else now. Returns 0 or -1. */
int reply_send(const struct origin *to, const Pv__Header *r, zmq_msg_t *data, int may_batch);
/* Replies status to h (NULL: a header that did not decode) with a message;
 * batched when the sender speaks 1.1. */
void reply_status(const struct origin *to, const Pv__Header *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replies BUSY: the client tries again after retry_after_ms. */
void reply_busy(const struct origin *to, const Pv__Header *h, uint64_t retry_after_ms,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Replies status to h with msg (or none) and a protobuf body (or none),
 * sent at once, never batched. */
void reply_body(const struct origin *to, const Pv__Header *h, int status, const char *msg,
		const ProtobufCMessage *body);
/* Sends a message to member m, on its link when it is up, else its DEALER:
 * header (req_id chosen by caller; server id and catalog version filled
 * here) and optional payload (moved) or body. Small READs and WRITEs wait
 * for the end of the round. Returns 0 or -1 (errno ENOTCONN: no way to m). */
int reply_send_member(struct member *m, Pv__Header *h, zmq_msg_t *payload,
		      const ProtobufCMessage *body);

/* request.c */
/* Starts a data request from a decoded header; takes ownership of *data
 * (WRITE payload). Replies itself, now or later. */
void request_start(const struct origin *from, const Pv__Header *h, zmq_msg_t *data);
/* Checks a data request's frames (pure): shared memory only for a client's
 * READ/WRITE without data and at most PV_MAX_IO; a WRITE's data frame
 * present, of h->length (0: any) and at most PV_MAX_IO; no data frame on
 * anything else. Returns PV_ST_OK and the request's length in *length
 * (a WRITE's: its data frame's), or a status with the client's message. */
int request_check_frame(const Pv__Header *h, int has_data, uint64_t data_len, uint64_t *length,
			char *msg, size_t msglen);
/* Checks that [h->offset, +length) lies in the volume (pure; FLUSH has no
 * range). Returns PV_ST_OK, or PV_ST_OUT_OF_RANGE with the message. */
int request_check_range(const Pv__Header *h, uint64_t length, const char *volume,
			uint64_t volume_size, char *msg, size_t msglen);
/* Completes one IO job (called on the reactor by worker completion). */
void request_io_done(struct io_job *job);
/* Runs a local job: inline if it can, else on a worker. */
void request_job_go(struct io_job *job);
/* Completes one forwarded part with the owner's answer. */
void request_part_done(struct request *req, uint64_t buf_off, int status, uint32_t new_owner,
		       uint64_t epoch, zmq_msg_t *data, const char *message);
/* Whether a data request's volume_id names vol (or names none: senders
 * before protocol 1.2); else replies NO_VOLUME (the sender's handle belongs
 * to a deleted volume of the same name) or BUSY (this server's catalog lags)
 * and returns 0. */
int request_volume_matches(const struct origin *from, const Pv__Header *h,
			   const struct volume *vol);
/* Maps an errno to a status code (the only such mapping in peerd). */
int request_status_from_errno(int err);
/* Number of requests in progress. */
uint64_t request_inflight(void);
/* READs answered PV_F_MAP: the client copied the data out of its mapping. */
uint64_t request_reads_mapped(void);

/* ops.c */
/* Reads what the ROUTER has (up to PEERD_RECV_BATCH messages) and dispatches
 * it: the reactor's callback for the ROUTER. */
void ops_router_input(void *arg);
/* Dispatches one message that arrived on the ROUTER. */
void ops_dispatch(const uint8_t *ident, size_t ident_len, zmq_msg_t *frames, size_t nframes);
/* Dispatches one message that arrived on an accepted peer link. */
void ops_dispatch_record(const uint8_t *ident, size_t ident_len, enum auth_role role,
			 const void *hdr, size_t hdr_len, zmq_msg_t *payload);
/* BATCH messages received and records in them. */
uint64_t ops_batches_received(void);
uint64_t ops_batch_records_received(void);
/* MAP_VOLUME answers given (clients that mapped a data file). */
uint64_t ops_maps_given(void);
/* Counters of malformed frames refused. */
uint64_t ops_bad_frames(void);

/* worker.c */
/* Starts n IO threads. Returns the eventfd the reactor polls, or -1. */
int worker_start(int n);
/* Queues a job for the IO threads. */
void worker_submit(struct io_job *job);
/* Drains completed jobs, calling request_io_done for each. */
void worker_drain(void);
/* worker_drain as the reactor's callback for the workers' eventfd. */
void worker_input(void *arg);
/* Stops and joins the IO threads. */
void worker_stop(void);

/* store.c */
/* Opens (creating if needed) the data file of vol, sized to vol->size. */
int store_open(struct volume *vol);
/* Closes the data file of vol. */
void store_close(struct volume *vol);
/* Unlinks the data file of a deleted volume. */
int store_remove(const char *name);
/* Moves data files of volumes the catalog does not have (a delete whose
 * file removal a crash cut short) to DATA/orphans/, at start. 0 or -1
 * (logged). */
int store_sweep(void);
/* Jobs up to this size are first tried on the reactor without blocking. */
#define STORE_INLINE_MAX    (256u << 10)
#define STORE_INLINE_READ   0x1 /* preadv2(RWF_NOWAIT) works on the file */
#define STORE_INLINE_WRITE  0x2 /* pwritev2(RWF_NOWAIT) works on the file */
#define STORE_INLINE_MEMORY 0x4 /* memory file system: never waits for a disk */
/* Tries a READ/WRITE job without blocking (RWF_NOWAIT: page cache hits).
 * Returns 1 if done (job->err set), 0 if it must go to a worker. */
int store_try_inline(struct io_job *job);
/* Runs one job on an IO thread: pread/pwrite/punch/fdatasync. Sets job->err. */
void store_do(struct io_job *job);
/* Allocated bytes and the number of pages that hold data here, from the
 * page map (no disk scan). Returns 0 or -1. */
int store_stat(struct volume *vol, uint64_t *pages_written, uint64_t *bytes);
/* After a job completed (reactor): updates the page map (a write marks its
 * pages, a trim or a failed write probes them again); logs a failure once
 * per volume per minute (no space: which volume, which server, what to do)
 * and a recovery; a FLUSH after a failed one fails with its errno
 * (job->err), as the kernel reports a lost write back only once. */
void store_note_done(struct volume *vol, struct io_job *job);
/* 1 while this server's data file system is full: a write failed for want
 * of space and less than STORE_LOW_FREE is free. */
int store_disk_full(void);
#define STORE_LOW_FREE (8ull << 20)
/* Whether this server's file system can hold a volume file of size bytes
 * (a sparse probe file) and is not full (store_disk_full). Returns 1, or 0
 * with a reason in err. */
int store_can_hold(uint64_t size, char *err, size_t errlen);
/* Free bytes in the data directory. */
uint64_t store_free(void);
/* Removes the data of one page (punches it out). */
int store_punch_page(struct volume *vol, uint64_t page);
/* For migrate.c's IO_CALL jobs (IO threads; errno-style returns: 0 or an
 * errno). Reads [off, +len) into buf, or sets *hole when it holds no data
 * (SEEK_DATA) without reading. */
int store_read_piece(struct volume *vol, uint64_t off, uint64_t len, uint8_t *buf, int *hole);
/* pwrite of all of buf. */
int store_write_at(struct volume *vol, uint64_t off, const uint8_t *buf, uint64_t len);
/* Punches [off, +len) out. */
int store_punch(struct volume *vol, uint64_t off, uint64_t len);
/* Allocates [off, +len) (fallocate, keeping the size): the space a page
 * moving here needs, so that its copy cannot run out of it. */
int store_allocate(struct volume *vol, uint64_t off, uint64_t len);
/* fdatasync of the data file. */
int store_sync(struct volume *vol);
/* The page map's bit of page, probed again (after a migration wrote or
 * punched it; reactor). */
void store_page_probe(struct volume *vol, uint64_t page);

/* 1 if every byte of [offset, offset+length) of the open data file is in the
 * page cache now (cachestat(2)), so that a client copying it out of its own
 * mapping of the file (PV_F_MAP) neither waits for a disk nor fills a hole;
 * 0 if not, or if the kernel cannot tell (before Linux 6.5). */
int store_resident(const struct volume *vol, uint64_t offset, uint64_t length);

/* meta.c */
/* Opens the LMDB environment under the data directory. */
int meta_open(const char *data_dir);
void meta_close(void);
/* Reads a value; returns a malloc'ed copy in *val (free it), 0, 1 if absent,
 * -1 on error. */
int meta_get(const char *db, const char *key, void **val, size_t *len);
/* Writes one value into db; a NULL value deletes the key. Returns 0 or -1. */
int meta_put(const char *db, const char *key, const void *val, size_t len);
/* One key of meta_put_many: val NULL deletes it. */
struct meta_kv {
	const char *db;
	char key[48];
	void *val;
	size_t len;
};
/* Writes n keys (of any databases) in one transaction. Callable from an IO
 * thread (migrate.c: records written off the reactor; LMDB serializes
 * writers). Returns 0 or -1 (logged). */
int meta_put_many(const struct meta_kv *kv, size_t n);
/* Calls fn for every (key, value) of db in key order (read-only); fn
 * returns 0 to go on. Returns 0, or -1 on error. */
int meta_each(const char *db,
	      int (*fn)(void *arg, const char *key, size_t klen, const void *val, size_t vlen),
	      void *arg);
/* Writes the catalog and the routing tables of the listed volumes in one
 * transaction; deletes the routing tables of removed names. */
int meta_put_catalog(const void *cat, size_t cat_len, struct volume *const *vols, size_t nvols,
		     const char *const *removed, size_t nremoved);
/* Makes sure the next catalog commit finds disk space: preallocates
 * META_RESERVE bytes past the end of the LMDB file (kept preallocated after
 * every commit), or, for a change that frees space (frees: only deletes),
 * META_RESERVE_MIN of what is left of that on a full disk. A catalog change
 * is refused (not half-applied) when this fails. 0, or -1 with err. */
int meta_reserve(int frees, char *err, size_t errlen);
#define META_RESERVE	 (1u << 20)
#define META_RESERVE_MIN (64u << 10)

/* catalog.c */
/* Loads the catalog from LMDB, or makes a group of one. Returns 0 or -1. */
int catalog_load(void);
/* Frees every volume and member; drops a change or join in progress. */
void catalog_free(void);
/* Finds a volume by name (NULL if none). */
struct volume *catalog_volume(const char *name);
/* Finds a member by id (NULL if none). */
struct member *catalog_member(uint32_t id);
struct member *catalog_self(void);
/* The committed catalog (owned by catalog.c; valid until the next install). */
const Pv__Catalog *catalog_committed(void);
/* Builds the protobuf catalog from memory (free with catalog_pb_free); for
 * a client, with each volume's holders and each member's link address. */
/* The group-wide usage of v: pages written, bytes allocated and clients
 * that have it open, summed over this server and the members' last
 * heartbeats. */
void catalog_volume_usage(struct volume *v, uint64_t *written, uint64_t *bytes, uint32_t *open);
Pv__Catalog *catalog_pb(int for_client);
void catalog_pb_free(Pv__Catalog *c);
/* Deep copy of a protobuf catalog (free with catalog_pb_free). */
Pv__Catalog *catalog_pb_copy(const Pv__Catalog *c);
/* A copy of s ("" for NULL) for a field of a pv.Catalog; aborts when out of
 * memory. */
char *catalog_strdup(const char *s);
/* Whether c is a catalog this server can install: valid, unique volume
 * names, sizes and page sizes volume create allows. 1, or 0 with err. */
int catalog_check(const Pv__Catalog *c, char *err, size_t errlen);
/* Checks, persists (with the routing tables of new volumes) and installs
 * *cp as the committed catalog; takes ownership of *cp and clears it.
 * Returns 0, or -1 (logged; then nothing changed). */
int catalog_install(Pv__Catalog **cp, const char *why);
/* Installs a copy of a committed catalog (adopting a group or catching up).
 * Returns 0 or -1. */
int catalog_adopt(const Pv__Catalog *c, const char *why);
/* Handles the peer ops CAT_PREPARE/COMMIT/ABORT/FETCH/JOIN (answers FETCH,
 * hands the others to change.c and join.c). */
void catalog_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
/* Handles the reply to one of our catalog messages. */
void catalog_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len);
/* Volume reference counting. */
void volume_get(struct volume *v);
void volume_put(struct volume **vp);
/* Servers that own at least one page of vol (the connection table), from
 * the cache kept by catalog_routes_changed. */
size_t catalog_holders(const struct volume *vol, uint32_t *out, size_t max);
/* Recomputes vol's holders and owned_here after its owner[] changed. */
void catalog_routes_changed(struct volume *vol);
/* Sets page's routing entry to (owner, epoch) in memory, keeping the
 * connection table and the pages owned here (O(1)); the caller persists
 * it (migrate.c). */
void catalog_route_set(struct volume *vol, uint64_t page, uint32_t owner, uint32_t epoch);
/* Times out a change waiting for answers and a join in progress. */
void catalog_tick(void *arg);
/* Asks member m for its catalog (we are behind it). */
void catalog_fetch_from(struct member *m);
/* A new catalog of a group of one (this server), with a fresh group id;
 * NULL if out of memory. */
Pv__Catalog *catalog_group_of_one(void);
/* The hash of c's protobuf encoding (BLAKE2b-256, libsodium): two catalogs
 * are the same iff their hashes are. Into out (PEERD_CATALOG_HASH_LEN). */
void catalog_hash(const Pv__Catalog *c, uint8_t *out);
/* The first n bytes of hash in hex into out (2n + 1 bytes); returns out. */
char *catalog_hash_hex(const uint8_t *hash, size_t n, char *out);
/* Member m told us its catalog version and hash (heartbeat, already stored
 * in m): catches up if it is ahead; if it holds another catalog under our
 * version, marks the divergence (m->catalog_diverged, srv->catalog_diverged)
 * and logs it loudly once a minute; clears it when they agree again. */
void catalog_peer_seen(struct member *m);
/* Marks member id as holding another catalog than ours under version
 * (found by a change's base hash); logs like catalog_peer_seen. */
void catalog_diverged_with(uint32_t id, uint64_t version, const uint8_t *hash);

/* change.c */
/* A catalog change (see the head of change.c): build edits next, a copy of
 * the committed catalog at version+1, into the proposed catalog (0, or -1
 * with err); done hears the outcome exactly once (ok 1; ok 0 with err; ok 0
 * and err NULL when peerd stops first) and owns arg. */
typedef int (*change_build_fn)(void *arg, Pv__Catalog *next, char *err, size_t errlen);
typedef void (*change_done_fn)(void *arg, int ok, const char *err);
struct change;
/* A change described by what_fmt (printf: one line for the logs, here and
 * on the other members); force: volumes it removes may be open. NULL if out
 * of memory (arg stays the caller's). */
struct change *change_new(int force, change_build_fn build, change_done_fn done, void *arg,
			  const char *what_fmt, ...) __attribute__((format(printf, 5, 6)));
/* Runs the change as a two-phase commit over every member, retrying when
 * another change is in the way; takes ownership of *chp and clears it. done
 * may be called before this returns. */
void change_run(struct change **chp);
/* Runs ch (change_new's result for arg, a malloc'd arg its done frees) if
 * it was made; if not (NULL: out of memory) frees arg. 0, or -1 with err. */
int change_start(struct change *ch, void *arg, char *err, size_t errlen);
/* Leaves member id out of the change: it gets no message and its answer is
 * not waited for (group remove of a member that is down). */
void change_exclude(struct change *ch, uint32_t id);
/* Handles CAT_PREPARE/COMMIT/ABORT from a coordinator (participant side). */
void change_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
/* Handles a member's answer to our CAT_PREPARE or CAT_COMMIT. */
void change_peer_reply(struct member *m, const Pv__Header *h);
/* Sends PREPAREs not sent yet; fails a change a member left unanswered. */
void change_tick(void);
/* Drops the change in progress and those waiting to retry (shutdown):
 * done(arg, 0, NULL) for each. */
void change_free(void);
/* Whether this server currently holds the catalog lock. */
int catalog_locked(void);
/* The value of test hook name in PEERD_TEST_HOOKS (change.c), or NULL. */
const char *change_test_hook(const char *name, char *val, size_t len);

/* The decisions of the protocol, pure so that they are unit-tested. */
/* A participant's lock: the transaction it holds prepared, until when. */
struct change_lock {
	uint64_t txid; /* 0: none */
	uint64_t until_ms;
};
enum change_verdict {
	CHANGE_APPLY,	      /* install the COMMIT's catalog */
	CHANGE_HAVE_IT,	      /* already installed (a resent COMMIT, or caught up) */
	CHANGE_NOT_PREPARED,  /* not the transaction this server holds prepared */
	CHANGE_LOCK_EXPIRED,  /* it was, but the lock expired before the COMMIT */
	CHANGE_WRONG_VERSION, /* not version + 1 */
};
/* What a participant at my_version (catalog hash my_hash) with lock lk does
 * with a COMMIT of txid carrying a catalog of version (hash) at now_ms. */
enum change_verdict change_commit_verdict(const struct change_lock *lk, uint64_t now_ms,
					  uint64_t my_version, const uint8_t *my_hash,
					  uint64_t txid, uint64_t version, const uint8_t *hash);
/* Whether a coordinator that sent its PREPAREs at prepared_ms may still
 * commit at now_ms: before PEERD_LOCK_TIMEOUT_MS - PEERD_LOCK_MARGIN_MS. */
int change_may_commit(uint64_t prepared_ms, uint64_t now_ms);
/* The tries of one change: waits for a busy server, retries after a
 * conflict; separate budgets. */
struct change_tries {
	unsigned busy_waits;
	unsigned conflicts;
};
#define CHANGE_MAX_BUSY_WAITS 300 /* ~50-100 ms each: longer than a lock */
#define CHANGE_MAX_CONFLICTS  8
/* Counts one more wait (conflict 0: this server busy; 1: a member answered
 * BUSY) and returns the delay before the next try in ms, or -1 when that
 * budget is spent. r is a random number. */
int64_t change_retry_delay(struct change_tries *t, int conflict, unsigned r);
/* A new transaction id: random, never 0, so that one from before a restart
 * is never reused. */
uint64_t change_new_txid(void);

/* join.c */
/* Handles JOIN from a server joining the group: adds it by a change and
 * answers with the committed catalog. */
void join_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
/* The reactor's poller of the socket of this server's join in progress
 * (none when there is no join). */
size_t join_poll_fill(zmq_pollitem_t *items, size_t max, void *arg);
void join_poll_done(const zmq_pollitem_t *items, size_t n, void *arg);
/* Starts joining the group at address, waiting up to timeout_s for the
 * answer; done(arg) is called when it ends (not if this returns -1; at once
 * if this server is already in the group at address). Returns 0, or -1 with
 * a reason in err. */
int catalog_join_start(const char *address, unsigned timeout_s, catalog_done_fn done, void *arg,
		       char *err, size_t errlen);
/* A member of another group heartbeats to us, a group of one: if our last
 * join got no answer, asks again (the group may list us). */
void join_heard_stranger(uint32_t id);
/* Times out this server's join. */
void join_tick(void);
/* Drops this server's join in progress (shutdown): done(arg, 0, NULL, NULL). */
void join_free(void);

/* volume_admin.c */
/* Starts a volume create/delete as a catalog change; done(arg) is called
 * when it ends (not if this returns < 0). Return 0, or with a reason in
 * err: -EEXIST (create: the name is taken), -ENOENT (delete: no such
 * volume) or -1. */
int catalog_volume_create(const char *name, uint64_t size, uint32_t page_size,
			  const uint32_t *servers, size_t nservers, catalog_done_fn done, void *arg,
			  char *err, size_t errlen);
int catalog_volume_delete(const char *name, int force, int with_snapshots, catalog_done_fn done, void *arg, char *err,
			  size_t errlen);

/* remove.c */
/* Pages of owner[npages] owned by server id (pure). */
uint64_t remove_lost_pages(const uint32_t *owner, uint64_t npages, uint32_t id);
/* The record of server id in c's removed list, or NULL (pure). */
const Pv__RemovedMember *remove_find(const Pv__Catalog *c, uint32_t id);
/* Takes member id out of next (a catalog being built at its new version)
 * and records it as left (left 1) or removed (pure). 0, or -1 with err. */
int remove_build_next(Pv__Catalog *next, uint32_t id, int left, char *err, size_t errlen);
/* The committed catalog's record of server id, or NULL. */
const Pv__RemovedMember *remove_record(uint32_t id);
/* Why server id, not a member, is refused (removed at V, left at V, or not
 * a member), into err. */
void remove_not_member(uint32_t id, char *err, size_t errlen);
/* Whether a page owned by owner is lost (owner removed); 1 with the reason
 * in why, or 0. */
int remove_lost_page(uint32_t owner, char *why, size_t whylen);
/* Why this server does not serve (it was removed), or NULL while it does. */
const char *remove_self_state(void);
/* Reads the removed state recorded in LMDB (at start). */
void remove_load(void);
/* catalog_install of a catalog *cp that does not list this server: having
 * left, installs a group of one instead; removed, enters the removed state
 * and installs nothing (-1). Takes *cp. */
int remove_gone(Pv__Catalog **cp, const char *why);
/* Answers a heartbeat from a server that is not a member: REFUSED, with the
 * catalog when it was removed or left. */
void remove_heartbeat_refuse(const struct origin *from, const Pv__Header *h);
/* A member refused our heartbeat: if its catalog (body) shows this server
 * removed, enters the removed state; left, becomes a group of one. */
void remove_heartbeat_refused(struct member *m, const Pv__Header *h, const void *body, size_t len);
/* Participant's check of a change that removes members (change.c):
 * PV_ST_OK, or PV_ST_REFUSED with err (a removed member is up here; this
 * server leaves but owns pages). */
int remove_validate(const Pv__Catalog *next, char *err, size_t errlen);
/* group remove ID (force: --force) or, with leave, group leave ID, as a
 * catalog change; done(arg) when it ends (not if this returns < 0). 0, or
 * -ENOENT (ID is not a member) or -1, with err. */
int catalog_member_remove(uint32_t id, int leave, int force, catalog_done_fn done, void *done_arg,
			  char *err, size_t errlen);

/* clients.c */
/* A client that pinged within this uses this server (fused pings the
 * servers it uses every second). */
#define CLIENTS_USING_MS 3000
/* Records a client's PING (Header.version; its open volumes, host, whether
 * it is on this host, when the group last moved it). */
void clients_ping(uint64_t client_id, uint32_t version, const Pv__ClientState *st);
/* A client that uses this server now (clients_using). */
struct client_view {
	uint64_t id;
	const char *host;	 /* escaped; "" if not sent */
	int local;		 /* on this server's host, as it says */
	uint32_t version;	 /* of its last PING */
	uint64_t moved_ms;	 /* when the group last moved it (pv_now_ms), 0: never */
	const char *const *open; /* the volumes it has open through this server */
	size_t nopen;
};
/* The clients that pinged within CLIENTS_USING_MS: up to max into out
 * (pointers valid until the next clients_ping or clients_expire). Returns
 * how many there are (may be more than max). */
size_t clients_using(struct client_view *out, size_t max);
/* Number of clients with vol open through this server, seen recently. */
uint32_t clients_open_count(const char *volume);
/* The clients with volume open through this server, seen recently: up to
 * max of their ids and host names (escaped; "" if not sent; valid until the
 * next clients_ping or clients_expire). Returns how many. */
size_t clients_open_by(const char *volume, uint64_t *ids, const char **hosts, size_t max);
/* Number of clients seen recently. */
uint32_t clients_count(void);
/* The host name client id sent (escaped; "" if unknown); valid until the
 * next clients_ping or clients_expire. */
const char *clients_host(uint64_t id);
/* Drops clients not seen for PEERD_CLIENT_EXPIRE_MS, and low-water marks
 * not renewed for PEERD_MARK_EXPIRE_MS (clients_marks_expire). */
void clients_expire(void *arg);
/* Whether a copy of the client's request client_req is late: the client
 * had its answer when it said done_below (all its requests below it are
 * answered). Never for 0 in either (unknown: senders before 1.3). Pure. */
int clients_is_late(uint64_t client_req, uint64_t done_below);
/* Records done_below (Header.client_done_below) for client_id at now_ms
 * and returns the largest one seen from it (done_below itself when it is
 * not recorded: client 0, value 0, table full). One hash lookup. */
uint64_t clients_done_below(uint64_t client_id, uint64_t done_below, uint64_t now_ms);
/* Drops the low-water marks not renewed within PEERD_MARK_EXPIRE_MS of
 * now_ms. */
void clients_marks_expire(uint64_t now_ms);
/* Low-water marks kept. */
unsigned clients_marks_count(void);
void clients_free(void);

/* shm.c */
struct shm_region;
/* Whether path has exactly the form /proc/PID/fd/N (pure; unit-tested). */
int shm_path_valid(const char *path);
/* Maps the shared memory client_id offers (see shm.c for the checks);
 * PV_ST_OK, or a status with the reason in err. */
int shm_attach(uint64_t client_id, const struct origin *from, int via_peer, const Pv__ShmAttach *a,
	       char *err, size_t errlen);
/* Whether r was attached by a peer (forwarded parts, hops 1) rather than by
 * the client itself (hops 0). */
int shm_via_peer(const struct shm_region *r);
/* Whether a part of a request in client region r may go to member m as an
 * offset (m mapped the memory too); offers it to m the first time. */
int shm_peer_usable(struct shm_region *r, struct member *m);
/* A peer's answer to the offer. */
void shm_peer_answer(uint32_t member, const Pv__Header *h);
/* member answered NO_SHM (restarted, or unmapped it): offer again. */
void shm_peer_forget(uint64_t client_id, uint32_t member);
/* The path to member changed (a link came up or went): every client's
 * memory is offered to it again with the next part. */
void shm_peer_reset(uint32_t member);
/* The region of client_id, attached over the connection from, with a
 * reference for one request; NULL if there is none (or it is another
 * connection's). */
struct shm_region *shm_get(uint64_t client_id, const struct origin *from);
/* Drops a reference from shm_get; accepts NULL. */
void shm_put(struct shm_region *r);
/* The address of [offset, offset + len) in r, or NULL if outside it. */
uint8_t *shm_ptr(const struct shm_region *r, uint64_t offset, uint64_t len);
/* Unmaps regions unused for a minute (once a second). */
void shm_expire(void *arg);
/* Clients whose shared memory is mapped (status). */
unsigned shm_count(void);
/* The pass socket, CONTROL.shm beside the control socket (mode 0600): a
 * fused that this peerd may not open by /proc path (another user) sends
 * its memfd there, then SHM_ATTACH with "passed". 0 (a failure is logged:
 * such clients send data by socket), -1 never. */
int shm_pass_open(void);
void shm_pass_close(void);
/* Its listening descriptor (-1: none) and the reactor's handler. */
int shm_pass_fd(void);
void shm_pass_input(void *arg);
/* The pass socket's path when the last refused attach could not open the
 * client's path for want of permission, else NULL: the answer names it. */
const char *shm_pass_hint(void);
/* Checks a pass message (pure, fuzzed): PV_SHM_PASS_LEN bytes, the magic,
 * then the token, copied out. 0 or -1. */
int shm_pass_parse(const void *buf, size_t len, uint8_t token[PV_SHM_TOKEN]);
void shm_free_all(void);

/* linkset.c */
/* Opens the peer link listener (unless --link-port off). Returns 0 or -1. */
int linkset_open(void);
/* Sends what is queued, closes every link and the listener. */
void linkset_close(void);
/* The address other members connect to ("tcp://IP:PORT"); 0, or -1 if
 * this server takes no links. */
int linkset_address(char *out, size_t len);
/* Whether ident names an accepted link (not a ZeroMQ connection). */
int linkset_is_ident(const uint8_t *ident, size_t len);
/* Queues h (+ payload, moved) on the accepted link ident, and with now
 * writes it at once (a large request's answer: the sender starts on it
 * while this server works on the next); -1 if the link is gone. */
int linkset_reply(const uint8_t *ident, size_t ident_len, const Pv__Header *h, zmq_msg_t *payload,
		  int now);
/* Queues h (+ payload, moved) on m's link (m->link_up), written at once
 * with now. Returns 0 or -1. */
int linkset_send(struct member *m, const Pv__Header *h, zmq_msg_t *payload, int now);
/* Starts connecting to m's advertised link address (if none is open). */
void linkset_connect(struct member *m);
/* Records m's advertised address; a changed one closes the old link. */
void linkset_member_address(struct member *m, const char *address);
/* Closes m's link (why: logged, or NULL); forwarded parts sent on it fail. */
void linkset_member_drop(struct member *m, const char *why);
/* Frees the links closed since the last call (top of each reactor round). */
void linkset_reap(void);
/* Accepted links one IP address may hold (--link-per-source): a host runs
 * one fused per mount and one peerd, each with one link here; behind NAT,
 * or in tests where every process connects from 127.0.0.1, there are more. */
#define LINKSET_PER_SOURCE_DEFAULT 64
/* An accepted link with part of a record in and nothing more for this long
 * is closed (also one waiting that long for link memory). */
#define LINKSET_STALL_MS 10000
/* Fills poll items (at most max; LINKSET_POLL_MAX is enough for all) for the
 * listener and every link; returns how many. */
#define LINKSET_ACCEPT_MAX 1024 /* links from clients (fused) and peers */
#define LINKSET_POLL_MAX   (1 + LINKSET_ACCEPT_MAX + PEERD_MAX_MEMBERS)
size_t linkset_poll_fill(zmq_pollitem_t *items, size_t max, void *arg);
/* Handles the events of the items linkset_poll_fill filled. */
void linkset_poll_done(const zmq_pollitem_t *items, size_t n, void *arg);
/* Writes what every link has queued (before the reactor waits). */
void linkset_flush(void);
/* Closes accepted links silent for 10 minutes (once a second). */
void linkset_tick(void *arg);
/* Outgoing links up, accepted links, records sent and received on all. */
void linkset_stats(uint64_t *up, uint64_t *accepted, uint64_t *sent, uint64_t *received);
/* A group with keys: a link's handshake (linkauth.h) must be done within
 * this, or the link is closed (accepted: refused). */
#define LINKSET_HANDSHAKE_MS 5000
/* The catalog changed (auth_catalog_installed calls it): accepted links of
 * client keys revoked or removed since are closed. */
void linkset_auth_changed(void);
/* Links in their handshake now, links encrypted now (accepted and
 * outgoing), handshakes completed since start (accepted, outgoing).
 * Refusals are auth_refused(). */
void linkset_auth_stats(uint64_t *handshaking, uint64_t *encrypted, uint64_t *done_in,
			uint64_t *done_out);

/* peers.c */
/* Connects DEALERs to every other member (idempotent). */
int peers_connect(void);
/* Sends a heartbeat to every member; marks silent ones down. */
void peers_tick(void *arg);
/* Handles a message arriving on member m's DEALER (a reply to us). */
void peers_input(struct member *m);
/* The reactor's poller of the members' DEALERs (reactor_add_poller). */
size_t peers_poll_fill(zmq_pollitem_t *items, size_t max, void *arg);
void peers_poll_done(const zmq_pollitem_t *items, size_t n, void *arg);
/* Handles one reply from m as header bytes and data (from its link). */
void peers_reply_record(struct member *m, const void *hdr, size_t hdr_len, zmq_msg_t *data);
/* Whether messages to m go by its link now (for forward.c). */
int peers_via_link(const struct member *m);
/* Handles a heartbeat from a peer (on the ROUTER). */
void peers_heartbeat(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
/* Next request id for messages to peers. */
uint64_t peers_next_id(void);

/* forward.c */
/* Sends part [buf_off, +len) of req to the owner of its page. Returns 0, or
 * -1 if the owner is unknown (the caller fails the part). */
int forward_part(struct request *req, uint32_t owner, uint64_t offset, uint64_t len,
		 uint64_t buf_off, uint32_t flags);
/* Handles a reply to a forwarded part; returns 1 if it was one. */
int forward_reply(struct member *m, const Pv__Header *h, zmq_msg_t *data);
/* Fails (UNAVAILABLE) the parts without an answer within
 * PEERD_FWD_TIMEOUT_MS; drops a silent link they were sent on. */
void forward_tick(void *arg);
/* Fails (UNAVAILABLE) the parts the cork could not send to their owner
 * (batch_cork_next_drop); after each flush. Returns how many. */
size_t forward_fail_unsent(void);
/* Number of parts in flight. */
uint64_t forward_inflight(void);
/* Fails the parts sent to member on its link, which closed. */
void forward_link_lost(uint32_t member);
/* Fails every part in flight (shutdown). */
void forward_abort_all(void);

/* migrate.c: moving a page from this server (its owner, A) to another (B),
 * piece by piece, while clients read and write it; and the target's side.
 * docs/architecture.md, "Page migration". */
enum mig_state {
	MIG_QUEUED = 0,	   /* out: waiting for its turn (one move out at a time) */
	MIG_BEGIN = 1,	   /* out: asking the target to prepare */
	MIG_COPYING = 2,   /* out: copying piece Migration.piece */
	MIG_SWITCHING = 3, /* out: every piece copied, the target takes the page */
	MIG_SWITCHED = 4,  /* out: the target owns it; punching it out here */
	MIG_IN = 5,	   /* in: this server is the target */
};
/* A move as peerctl migrations shows it. */
struct migrate_info {
	char volume[PV_MAX_NAME + 1];
	uint64_t volume_id;
	uint64_t page;
	uint32_t from, to;
	uint32_t piece_size, pieces;
	uint32_t piece; /* in transit (pieces: switching) */
	uint32_t epoch; /* the page's epoch before the move (the target's is +1) */
	enum mig_state state;
	uint64_t started; /* unix seconds */
	uint64_t bytes_copied;
	uint32_t rate_kbps; /* recent copy rate */
	char stuck[160];    /* why it makes no progress now, or "" */
};
#define MIGRATE_PIECE_DEFAULT (1u << 20) /* or the page, if smaller */
#define MIGRATE_MBPS_DEFAULT  100	 /* MB/s of moves out of one server */
/* Where the source sends the part of a READ, WRITE or TRIM (op) that falls
 * in piece p of a page it is moving out, in state st with piece k in
 * transit (the seed's Table 2; pure, unit tested): */
enum mig_route {
	MIG_ROUTE_LOCAL,  /* served here (not copied yet; a READ of the piece in transit) */
	MIG_ROUTE_TARGET, /* forwarded to the target with PV_F_MIG (copied) */
	MIG_ROUTE_BOTH,	  /* written here and at the target (the piece in transit) */
};
enum mig_route migrate_route(enum mig_state st, uint32_t p, uint32_t k, uint32_t op);
/* The state's name ("copying"). */
const char *migrate_state_name(enum mig_state s);
/* Loads this server's moves from LMDB (both roles): before anything is
 * served, as copied pieces may exist only at the target. 0 or -1. */
int migrate_load(void);
/* Once a second: starts queued moves, resumes stalled ones, punches. */
void migrate_tick(void *arg);
/* Whether pages of vol move out of or into this server now (begun and
 * not switched: a queued move, or one its target has not answered yet,
 * does not count). */
int migrate_volume_moving(const struct volume *vol);
/* The same here, or out of another member as its last heartbeat says. */
int migrate_volume_moving_group(const struct volume *vol);
/* Starts (or queues) moving page of vol, owned here, to server to, in
 * pieces of piece_size bytes (0: the default). 0, or -1 with the reason
 * (not owned here, already moving, to not a member / down / not allowed /
 * the owner, ...) in err: nothing changed. */
int migrate_start(struct volume *vol, uint64_t page, uint32_t to, uint32_t piece_size, char *err,
		  size_t errlen);
/* The answer to a page.move at this server: called once. */
typedef void (*migrate_done_fn)(void *arg, int ok, const char *err);
/* page.move: asks the owner of each page of [first, last] of volume (this
 * server or another, MIG_REQUEST) to move it to to. done(arg) once every
 * owner accepted (ok 1) or one refused (ok 0, err: the first reason); not
 * if this returns -1 (err). Pages that already sit on to are skipped. */
int migrate_request(const char *volume, uint64_t first, uint64_t last, uint32_t to,
		    uint32_t piece_size, migrate_done_fn done, void *arg, char *err, size_t errlen);
/* Moves out of this server, queued or running. */
unsigned migrate_out_count(void);
/* Moves into this server under way. */
unsigned migrate_in_count(void);
/* This server's moves out since start: switched, failed, bytes copied to
 * the targets (hole pieces carry none). */
struct migrate_totals {
	uint64_t done, failed, bytes;
};
void migrate_totals(struct migrate_totals *t);
/* Moves in the group (this server's, and those members announced in their
 * last heartbeats), at most max into out. */
size_t migrate_list(struct migrate_info *out, size_t max);
/* Whether page of vol is moving out of this server or into it: 1 with its
 * state (info may be NULL), else 0. */
int migrate_page_state(const struct volume *vol, uint64_t page, struct migrate_info *info);
/* The moves of this server for its heartbeat (n_migrations, migrations:
 * freed by migrate_heartbeat_free). */
void migrate_heartbeat_fill(Pv__Heartbeat *hb);
void migrate_heartbeat_free(Pv__Heartbeat *hb);
/* Peer messages (ops.c) and their replies (peers.c). */
void migrate_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
void migrate_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len);
/* A routing entry heard (ROUTE_UPDATE, a ROUTES answer, MOVED): taken if
 * its epoch is newer than the one held for the page (pv_route_newer), and
 * then persisted (batched, once per tick). A page never becomes this
 * server's by hearsay: only the migration handshake gives it one. Returns
 * 1 if taken. */
int migrate_route_learn(struct volume *vol, uint64_t page, uint32_t owner, uint64_t epoch);
/* Fetches the routing entries of every volume from every member (at start
 * and when a member comes back). */
void migrate_routes_fetch(struct member *m);
/* Frees every move (shutdown; records stay in LMDB). */
void migrate_free(void);
/* The data path (request.c). The move out of page of vol, or NULL (fast:
 * NULL at once while no page of vol moves). */
struct mig_out *migrate_out_of(const struct volume *vol, uint64_t page);
/* Whether [offset, +length) touches a page moving out of this server (no
 * mapped read then: some of its pieces are at the target). */
int migrate_touches(const struct volume *vol, uint64_t offset, uint64_t length);
/* The run of [offset, +length) (inside m's page) that goes one way: *route,
 * its length, and the pieces it covers. */
void migrate_part(struct mig_out *m, uint64_t offset, uint64_t length, uint32_t op,
		  enum mig_route *route, uint64_t *run_len, uint32_t *first, uint32_t *last);
uint32_t migrate_target(const struct mig_out *m);
/* A local job on m's page begins / ends (request.c's submit and
 * completion); counted: a write begun while its pieces were at this server
 * only, which the copy of those pieces waits for. */
void migrate_job_begin(struct io_job *job, struct mig_out *m, uint32_t first, uint32_t last,
		       int counted);
void migrate_job_end(struct io_job *job);
/* The target's side of a PV_F_MIG request from server from: 1 if it is
 * served here (marks a write's sectors in the dirty map first), 0 if this
 * server has no such move (the request fails UNAVAILABLE: retried). */
int migrate_target_accepts(struct volume *vol, uint32_t op, uint64_t offset, uint64_t length,
			   uint32_t from);
/* A piece copy (PV_F_MIG_COPY WRITE with data, or TRIM) that validate
 * passed: written off the reactor, answered then. Takes *data. */
void migrate_copy_in(const struct origin *from, const Pv__Header *h, struct volume *vol,
		     uint64_t length, zmq_msg_t *data);
/* Targets of this server's moves of vol's pages holding data now (FLUSH
 * goes to them too). */
size_t migrate_flush_targets(const struct volume *vol, uint32_t *out, size_t max);

/* placement.c: where pages should be (server evacuate, volume set-servers,
 * group set-weight) and the moves that get them there; the group's
 * migration settings. */
/* Catalog changes; done(arg) when each ends (not if it returns < 0): 0, or
 * -ENOENT (no such volume / member) or -1, with the reason in err. */
int catalog_volume_set_servers(const char *name, const uint32_t *servers, size_t n,
			       catalog_done_fn done, void *arg, char *err, size_t errlen);
int catalog_member_set_weight(uint32_t id, uint32_t weight, catalog_done_fn done, void *arg,
			      char *err, size_t errlen);
int catalog_member_drain(uint32_t id, int on, catalog_done_fn done, void *arg, char *err,
			 size_t errlen);
/* The group's settings in the catalog; a field < 0: unchanged. */
struct group_settings {
	int64_t max_mbps;     /* migrate.max-mbps */
	int paused;	      /* migrate pause */
	int balance_off;      /* balance off */
	int64_t threshold_pm; /* balance.threshold */
	int64_t interval_s;   /* balance.interval */
};
#define GROUP_SETTINGS_UNCHANGED                                                                   \
	{                                                                                          \
		-1, -1, -1, -1, -1                                                                 \
	}
int catalog_settings(const struct group_settings *set, catalog_done_fn done, void *arg, char *err,
		     size_t errlen);
/* Every PEERD_TICK_MS: if a page owned here should be elsewhere (its server is
 * draining or not allowed for the volume, or the volume's balance_gen asks
 * for weight shares and this server holds more than its share), starts one
 * move (migrate_start) when no move out of this server runs. */
void placement_tick(void *arg);
#define PLACEMENT_MAX_WEIGHT 1000   /* group set-weight: 1 to this */
#define PLACEMENT_MAX_MBPS   100000 /* migrate.max-mbps: 0 (default) to this */
/* Sets vi's frozen initial layout (layout_servers/layout_weights), if it
 * has none, to its servers and their weights in c (a removed member's
 * recorded weight; at least 1): what catalog.c computes the layout from
 * when they are absent. Pure. 0, or -1 out of memory. */
int placement_freeze_layout(const Pv__Catalog *c, Pv__VolumeInfo *vi);
/* What placement_tick decides for one volume (pure, unit tested). */
struct placement_input {
	uint64_t npages;
	uint32_t self;	     /* this server */
	uint64_t self_owned; /* pages of the volume it owns */
	int self_off;	     /* it is draining, or not among the volume's servers */
	int balancing;	     /* balance_gen > balanced_gen: hold weight shares */
	int all_up;	     /* every allowed member that is not draining is up */
	size_t n;	     /* the volume's allowed servers, in catalog order: */
	uint32_t ids[PEERD_MAX_MEMBERS];
	uint32_t weights[PEERD_MAX_MEMBERS]; /* 0: cannot take pages (down, draining,
					      * not a member) */
	uint64_t owned[PEERD_MAX_MEMBERS];   /* pages it owns + moves into it under way */
};
enum placement_verdict {
	PLACE_NOTHING,	 /* leave the volume alone (now) */
	PLACE_MOVE,	 /* move one page to *to */
	PLACE_BALANCED,	 /* this server holds exactly its share: done with balance_gen */
	PLACE_NO_TARGET, /* pages should leave, but no server can take them */
};
/* Shares by pv_apportion over the servers that can take pages; the target
 * is the one with the largest deficit (share - owned); *share is this
 * server's. */
enum placement_verdict placement_decide(const struct placement_input *in, uint32_t *to,
					uint64_t *share);
/* Whether move mv (this server's, or one a member's heartbeat announced)
 * still counts as under way for placement, given this server's epoch of
 * its page now (pure, unit tested): until this server knows the switch
 * (the page's epoch passed the move's), whatever the move's state says. A
 * source's move is "switched" before its route is recorded and its owner
 * changes here, and a heartbeat may say "copying" after the route came;
 * judged by state alone, the page counted at neither server or at both. */
int placement_move_under_way(const struct migrate_info *mv, uint32_t epoch_now);

/* snapmap.c: snapshot chunk maps, pure (docs/architecture.md, "Snapshots").
 * maps: a volume's snapshots on this server, oldest first. */
struct snap_map {
	uint64_t id;
	uint64_t *bits; /* a bit per chunk: preserved into this snapshot */
	uint64_t *same; /* of those, preserved by a page move, not by a write:
			 * unchanged since the cut (NULL: none) */
};
int snapmap_has(const struct snap_map *m, uint64_t chunk);
void snapmap_set(struct snap_map *m, uint64_t chunk, int on);
int snapmap_same(const struct snap_map *m, uint64_t chunk);
void snapmap_set_same(struct snap_map *m, uint64_t chunk, int on);
/* Where snapshot maps[from] finds chunk: the index of the first snapshot
 * from it on holding a copy, or -1: the volume itself. */
long snapmap_resolve(struct snap_map *const *maps, size_t n, size_t from, uint64_t chunk);
/* When maps[gone] goes away: the index of the snapshot that must take its
 * copy of chunk (the next older, if it has none of its own), or -1: none. */
long snapmap_heir(struct snap_map *const *maps, size_t n, size_t gone, uint64_t chunk);
/* When maps[gone] goes away: the index of the next older snapshot whose
 * copy of chunk is marked same (a move's) but must lose the mark, since
 * maps[gone]'s time, now its own, saw a write of the chunk; or -1. */
long snapmap_heir_unmark(struct snap_map *const *maps, size_t n, size_t gone, uint64_t chunk);
/* Whether chunk was written between the cuts of maps[from] and maps[to]
 * (to == n: the volume now): preserved, not only by a page move, in one
 * of maps[from..to). */
int snapmap_changed(struct snap_map *const *maps, size_t n, size_t from, size_t to,
		    uint64_t chunk);
uint64_t snapmap_words(uint64_t nchunks);
/* The chunks of a page [page_off, +page_len) of a volume of chunk-byte
 * chunks: the first one's index and how many; 0, or -1 when the page does
 * not begin on a chunk boundary (chunks would straddle two pages). */
int snapmap_page_chunks(uint64_t page_off, uint64_t page_len, uint32_t chunk, uint64_t *first,
			uint64_t *n);
/* The copy-on-write chunk of a new volume of page_size-byte pages: the
 * largest power of two up to SNAP_CHUNK_DEFAULT that divides the page, so
 * that no chunk straddles two pages (pages then move with their
 * snapshots); SNAP_CHUNK_DEFAULT when that would be under
 * SNAP_CHUNK_MIN (a page not a multiple of 4 KiB: its chunks straddle,
 * which reads, diff and rollback handle, but its pages do not move while it
 * has snapshots). */
uint32_t snapmap_chunk_for(uint32_t page_size);
/* The length of the piece of [off, end) that lies in off's chunk: up to
 * the next chunk boundary or end, whichever comes first. Walking a page
 * with it visits each chunk's part in the page once, also when chunks
 * straddle pages. */
uint64_t snapmap_seg_len(uint64_t off, uint64_t end, uint32_t chunk);
/* Bit i of a byte bitmap (bit i % 8 of byte i / 8). */
int snapmap_bit(const uint8_t *bits, uint64_t i);
void snapmap_bit_set(uint8_t *bits, uint64_t i);
/* Bytes of data a MIG_SNAP payload carries for chunks [first, first + n)
 * of a page: those preserved and not holes, the page's last one cut at
 * page_len. */
uint64_t snapmap_page_data(const uint8_t *preserved, const uint8_t *holes, uint64_t first,
			   uint64_t n, uint64_t page_len, uint32_t chunk);
/* Whether MIG_SNAP record r with data_len bytes of data fits the page
 * [page_off, +page_len): a chunk size the page is made of (a multiple of
 * 512, at most PV_MAX_IO), bitmaps of the page's chunks, at most SNAP_MAX
 * snapshot ids, chunks [first, first + count) within the page and exactly
 * their data. 0 with the page's chunk count, or -1. */
int snapmap_check(const Pv__MigrationSnap *r, size_t data_len, uint64_t page_off, uint64_t page_len,
		  uint64_t *nchunks);
/* Writes the u32 little-endian length prefix of a MIG_SNAP payload. */
void snapmap_frame_put(uint8_t *out, uint32_t rec_len);
/* Splits a MIG_SNAP payload into its record and its data; 0 or -1 (the
 * length prefix runs past the end or the record is empty). */
int snapmap_frame_split(const uint8_t *p, size_t len, const uint8_t **rec, size_t *rec_len,
			const uint8_t **data, size_t *data_len);

/* snap.c: snapshots (docs/architecture.md, "Snapshots"). */
#define SNAP_MAX	       64	  /* snapshots of a volume */
#define SNAP_CHUNK_DEFAULT     (64u << 10) /* copy-on-write unit */
#define SNAP_CHUNK_MIN	       4096	  /* the smallest a catalog takes */
#define SNAP_TIMEOUT_DEFAULT   7000	  /* ms a hold may last */
#define SNAP_TIMEOUT_MAX       60000
/* Sets up (and loads from LMDB) the snapshot state of a volume being
 * installed; 0 or -1. */
int snap_volume_init(struct volume *v, const Pv__VolumeInfo *vi);
void snap_volume_free(struct volume *v);
/* After a catalog install: vi is v's entry (snapshots made or gone). */
void snap_catalog_sync(struct volume *v, const Pv__VolumeInfo *vi);
/* A volume deleted from the catalog: its snapshot files and records go. */
void snap_volume_removed(struct volume *v);
/* CAT_PREPARE: a snapshot the change adds must have its cut here. */
int snap_validate(const Pv__Catalog *next, char *err, size_t errlen);
/* A local WRITE/TRIM job about to run (reactor): 1 if taken (held, or sent
 * to a worker to preserve chunks first), 0 to run as usual. */
int snap_write_gate(struct io_job *job);
/* Its end (reactor). */
void snap_write_done(struct io_job *job);
/* Worker side: preserve the chunks a WRITE/TRIM replaces; read a
 * snapshot's image. Return 0 or an errno. */
int snap_cow(struct io_job *job);
int snap_read(struct io_job *job);
/* A write stamped before the newest snapshot's cut (worker): 0 (then the
 * write runs and snap_late_end follows it), or SNAP_ERESTAMP: the client
 * must stamp it again. */
#define SNAP_ERESTAMP EXDEV
/* A write on a page moving out of here, stamped at or after the cut of a
 * timestamp-mode snapshot that waits for that move (snap_write_gate): it
 * cannot wait here (the move may wait for it), so its client sends it
 * again (BUSY), routed as the page is then. */
#define SNAP_EMOVING EINPROGRESS
int snap_late_begin(struct io_job *job);
void snap_late_end(struct io_job *job);
/* Before a RESTAMP answer (reactor): this server's clock moves past the
 * newest cut, so the answer (and the client's next stamp) is later. */
void snap_restamp_clock(const struct volume *vol);
/* Whether a READ of snapshot id of v may be served: 1 (in the catalog
 * here), 0 (deleted, or never made), -1 (newer than the catalog here). */
int snap_known(const struct volume *v, uint64_t id);
/* Moves of v's pages (docs/architecture.md, "Snapshots and page
 * migration"): -1 with err when they are unsafe (v has snapshots and its
 * pages are not whole chunks, or a chunk is over PV_MAX_IO), else 0. */
int snap_move_refusal(const struct volume *v, char *err, size_t errlen);
/* 1 while no move of v's pages may start here: a snapshot of v is being
 * made (its hold waits or holds, or its cut awaits the commit) or a
 * rollback of v runs. */
int snap_stops_moves(const struct volume *v);
/* Snapshots of v here (cut, committed or not): 0 means a move has no
 * snapshot chunks to send. */
size_t snap_count(const struct volume *v);
/* A moving page's preserved chunks of one snapshot, in MIG_SNAP's form:
 * chunks [first, first + n) of the page (bitmaps by chunk of the page),
 * the data of those preserved and not holes. */
struct snap_page {
	uint64_t ids[SNAP_MAX]; /* the volume's snapshots here, oldest first */
	size_t nids;
	uint64_t id; /* whose chunks */
	uint32_t chunk;
	uint64_t nchunks; /* of the page */
	uint64_t first, n;
	uint8_t *preserved, *holes, *same; /* (nchunks + 7) / 8 bytes each; same:
					    * preserved by a move (snapmap_same) */
	uint8_t *data;
	uint64_t data_len;
};
/* The source (IO thread): snapshot idx's chunks of the page from chunk
 * first on, at most max_data bytes of data (at least one chunk); with idx
 * and first 0 it first preserves every chunk of the page in the newest
 * snapshot, so no write to the page copies a chunk while it moves. 0 (the
 * arrays are the caller's to free: snap_page_free), or an errno; idx at or
 * past nids: nothing to send. */
int snap_page_export(struct volume *v, uint64_t page_off, uint64_t page_len, size_t idx,
		     uint64_t first, uint64_t max_data, struct snap_page *out);
void snap_page_free(struct snap_page *p);
/* The target (IO thread): makes its state of those chunks the source's,
 * durable (fdatasync, LMDB) before it returns. 0, EAGAIN (its snapshots
 * differ from the source's: one is being made or dropped), or an errno. */
int snap_page_import(struct volume *v, uint64_t page_off, uint64_t page_len,
		     const struct snap_page *in);
/* A page that left this server (or never came): its preserved chunks go
 * (IO thread). 0 or an errno. */
int snap_page_forget(struct volume *v, uint64_t page_off, uint64_t page_len);
void snap_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len);
void snap_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len);
/* How a snapshot command ended (control.c): ok with the snapshot's catalog
 * entry and the writes' pause in ms, or the error of kind why. */
typedef void (*snap_done_fn)(void *arg, int ok, const char *volume, const Pv__SnapshotInfo *si,
			     uint64_t pause_ms, int why, const char *err);
int snap_create(const char *volume, const char *name, const char *mode, uint32_t timeout_ms,
		snap_done_fn done, void *arg, char *err, size_t errlen);
int snap_delete(const char *volume, const char *name, snap_done_fn done, void *arg, char *err,
		size_t errlen);
/* How a diff ended: n ranges (offset, length pairs, ascending, merged) or
 * the error of kind why. */
typedef void (*snap_diff_fn)(void *arg, int ok, const uint64_t *ranges, size_t n, int why,
			     const char *err);
/* The ranges where snapshot name's image differs from snapshot from's (from
 * NULL or "": the ranges of its image that hold data), from every member's
 * chunk maps. */
int snap_diff(const char *volume, const char *name, const char *from, snap_diff_fn done, void *arg,
	      char *err, size_t errlen);
/* Makes every member's pages of volume the image of snapshot name
 * (refused while a client has the volume open, unless force); done as a
 * diff's (no ranges). */
int snap_rollback(const char *volume, const char *name, int force, snap_diff_fn done, void *arg,
		  char *err, size_t errlen);
/* Bytes preserved here for snapshot id of v (allocated in its file). */
uint64_t snap_preserved(const struct volume *v, uint64_t id);
/* The committed snapshots of v (at most max) and the bytes each has
 * preserved here: their count. */
size_t snap_usage(const struct volume *v, uint64_t *ids, uint64_t *bytes, size_t max);
/* Bytes preserved for snapshot id of v over the group (this server, and
 * the others as of their last heartbeats); per server into per[] (ids in
 * per_id, at most PEERD_MAX_MEMBERS) when not NULL. */
uint64_t snap_preserved_group(const struct volume *v, uint64_t id, uint32_t *per_id,
			      uint64_t *per);
/* Once a second (reactor): drops cuts never committed, retries drops. */
void snap_tick(void *arg);

/* load.c: the load monitor (docs/architecture.md, "Load monitor and
 * rebalancer"): what this server serves, per server, volume, page and
 * client, as decaying rates over 10 s and 60 s, a p99 of served times; its
 * summary rides on the heartbeats, so every server holds the group's
 * picture. Counting is plain arithmetic on the reactor thread: a hash
 * lookup per page of a local part, no allocation once the page is known. */
extern int load_enabled;	     /* 0: --no-load-monitor (or PEERD_LOAD_MONITOR=0) */
#define LOAD_TOP	  16	     /* pages and clients a heartbeat carries */
#define LOAD_PAGES_MAX	  65536	     /* pages followed one by one */
#define LOAD_BYTES_PER_OP (64 << 10) /* the load of a request: 1 + bytes / this */
#define LOAD_FLOOR	  50.0	     /* load units/s: less over its share moves nothing */
/* The clock of served times: microseconds (CLOCK_MONOTONIC). */
uint64_t load_now_us(void);
/* A local part [offset, +len) of a request with op, served here (request.c
 * submit): counted on every page it covers (and for client_id there, 0:
 * none), its volume and this server. */
void load_part(const struct volume *vol, uint32_t op, uint64_t offset, uint64_t len,
	       uint64_t client_id);
/* A request answered by this server after start_us: served time; with
 * client_id (a client's own request, hops 0) on that client. */
void load_done(uint32_t op, uint64_t client_id, uint64_t offset, uint64_t len, uint64_t start_us);
/* A part forwarded to its owner (forward.c). */
void load_forwarded(uint32_t op, uint64_t len);
/* Client id's own requests to this server in load units per second, over
 * 10 s (w60: 60 s), as of the last fold; 0 if it is not followed. */
double load_client_units(uint64_t id, int w60);
/* Once a second: folds the second's counters into the rates (only pages
 * and clients hit in it), builds the summary the heartbeats carry. */
void load_tick(void *arg);
/* This server's summary (NULL with the monitor off, or before its first
 * fold), and what member m sent last (NULL if none); both valid until the
 * next tick or heartbeat. */
const Pv__LoadSummary *load_summary(const struct member *m);
/* This server's rates of window w (0: 10 s, 1: 60 s) as of its fold
 * nearest to at_ms (wall clock, as LoadSummary.at_ms), among its last
 * LOAD_SELF_FOLDS; NULL before its first fold. Valid until the next tick. */
#define LOAD_SELF_FOLDS 4
const Pv__LoadRates *load_self_at(uint64_t at_ms, int w);
/* The load of rates r in load units per second: ops + bytes / LOAD_BYTES_PER_OP. */
double load_units(const Pv__LoadRates *r);
/* Pure: a decaying rate r (per second, time constant tau_s) after gap
 * seconds without samples and then one second with x events. */
double load_decay(double r, double x, double gap_s, double tau_s);
/* Frees the tables (shutdown). */
void load_free(void);
/* What load_part counted since start (metrics.c's counters): requests and
 * bytes by op, summed at each fold (the current second is not in yet). A
 * volume's entry lasts while the volume exists, so its totals never go
 * back. */
#define LOAD_OPS 3 /* read, write, other (TRIM, FLUSH) */
extern const char *const load_op_names[LOAD_OPS];
struct load_totals {
	uint64_t ops[LOAD_OPS], bytes[LOAD_OPS];
};
/* This server's totals: served here, and forwarded to other owners. */
void load_totals(struct load_totals *served, struct load_totals *forwarded);
/* fn(arg, volume name, its totals) for every volume served here so far. */
void load_each_volume(void (*fn)(void *arg, const char *name, const struct load_totals *t),
		      void *arg);
/* Served times of op's requests since start: into cum[i] how many were
 * below bounds_us[i] (ascending; a bound inside one of load.c's buckets,
 * 4 per power of two, counts that bucket above it; powers of two are
 * exact), their number and their sum in microseconds. */
void load_latency(int op, const uint64_t *bounds_us, size_t nbounds, uint64_t *cum, uint64_t *count,
		  uint64_t *sum_us);
/* The group's picture as this server holds it, one entry per member in
 * srv->members order: its load (load units/s, 10 s), its share of the
 * group's and its fair share by weight; only members up, not draining and
 * with figures take part in the total (the others get share, not fair). */
struct load_share {
	int figures; /* it sent a summary (or this server's own) */
	double load, share, fair;
};
/* Fills out[srv->nmembers]; returns the group's total load. */
double load_shares(struct load_share *out);

/* balance.c: the page rebalancer, on each server for the pages it owns. */
#define BALANCE_THRESHOLD_PM   250 /* Catalog.balance_threshold_pm 0: this */
#define BALANCE_INTERVAL_S     60  /* Catalog.balance_interval_s 0: this */
#define BALANCE_MAX_INTERVAL   86400
#define BALANCE_MAX_THRESHOLD  10000 /* permille */
#define BALANCE_COOLDOWN       10    /* intervals a page moved stays put, */
#define BALANCE_COOLDOWN_MIN_S 300   /* and at least this */
#define BALANCE_PAGES	       LOAD_TOP
/* The group's picture as the decision sees it (pure). */
struct balance_server {
	uint32_t id;
	uint32_t weight; /* 0: takes no part (down, draining, no figures) */
	double load;	 /* load units/s */
	uint64_t free;	 /* bytes free in its data directory */
};
struct balance_page {
	uint64_t volume_id;
	uint64_t page;
	double load;
	uint32_t page_size;
	uint64_t allowed; /* bit i: server s[i] may hold it */
};
struct balance_input {
	size_t n, self;
	struct balance_server s[PEERD_MAX_MEMBERS];
	double threshold; /* 0.25: over when load > fair share x 1.25 */
	double floor;	  /* load units/s over the fair share below which nothing moves */
	size_t npages;	  /* this server's hottest pages it may move (not cooling down) */
	struct balance_page p[BALANCE_PAGES];
};
enum balance_verdict {
	BALANCE_IDLE, /* self under the floor: nothing to judge */
	BALANCE_FAIR, /* within the threshold of its fair share */
	BALANCE_OVER, /* over, but no move helps */
	BALANCE_MOVE, /* over: move p[page] to s[to] */
};
struct balance_decision {
	size_t page, to;
	double total, fair, share, page_share; /* self's fair share and share, of total */
};
/* Fair shares by weight; the move of one page to one allowed server with
 * room that leaves the larger of the two servers' loads relative to their
 * fair shares lowest, and only if it is lower than self's now and leaves
 * the target within the threshold (no A->B->A). */
enum balance_verdict balance_decide(const struct balance_input *in, struct balance_decision *d);
/* Once a second: every balance interval, judges this server's load; starts
 * one move after two intervals over in a row. */
void balance_tick(void *arg);
/* balance.status: settings, state and this server's recent decisions. */
struct balance_status {
	int on;
	double threshold;
	uint32_t interval_s;
	unsigned over;	       /* intervals over in a row */
	const char *state;     /* "idle", "fair", "over", "moving", "waiting", "off" */
	const char *recent[8]; /* newest first, NULL-terminated */
};
void balance_status(struct balance_status *st);
/* This server's last decisions for its heartbeat (LoadSummary.decisions). */
size_t balance_recent(const char **out, size_t max);
/* What the judgements came to, counted since start (metrics.c). */
enum balance_outcome {
	BALANCE_JUDGED_IDLE,	   /* under the floor */
	BALANCE_JUDGED_FAIR,	   /* within the threshold */
	BALANCE_JUDGED_OVER,	   /* over, no move (first interval, or none helps) */
	BALANCE_JUDGED_MOVE,	   /* a move started */
	BALANCE_JUDGED_REFUSED,	   /* the move was refused (migrate_start) */
	BALANCE_JUDGED_NO_FIGURES, /* a member up sent no load figures */
	BALANCE_OUTCOMES
};
extern const char *const balance_outcome_names[BALANCE_OUTCOMES];
uint64_t balance_outcome_count(enum balance_outcome o);

/* metrics.c: the Prometheus exposition at http://--metrics-listen/metrics
 * (docs/metrics.md). The reactor renders it once a second into a buffer
 * under a lock; libmicrohttpd's thread only copies that buffer out. */
/* Parses IPv4:PORT or [IPv6]:PORT (numeric, port 1-65535) into *ss and
 * *len. Pure. 0, or -1. */
int metrics_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* With --metrics-listen: binds it, renders once and starts the HTTP
 * thread (logs the address); else does nothing. 0, or -1 (logged). */
int metrics_start(void);
/* Once a second: renders the exposition and publishes it (nothing when
 * not started). */
void metrics_tick(void *arg);
/* Stops the HTTP thread and frees the text; accepts not started. */
void metrics_stop(void);
/* The exposition as of now into a malloc'd string (*len bytes, NUL
 * ended), for metrics_tick and the unit test; NULL without memory. */
char *metrics_render(size_t *len);

/* Adds text (a move, with its reason) to this server's recent decisions. */
void balance_note(const char *text);
/* The rebalancers' settings in catalog c (NULL: off; 0s: the defaults). */
void balance_settings(const Pv__Catalog *c, int *on, double *threshold, uint32_t *interval_s);
/* The window the rebalancers judge by for an interval: 10 s rates under a
 * minute, else 60 s ones. */
uint32_t balance_window_s(uint32_t interval_s);
/* After a move, how long until the figures show it: two intervals, and at
 * least twice the window. */
uint64_t balance_fresh_ms(uint32_t interval_s);
/* A rebalancer's judgements (pages: balance.c, clients: connbal.c). */
struct balance_track {
	unsigned over;		 /* intervals over in a row */
	const char *state;	 /* "idle", "fair", "over", ... as the caller names it */
	uint64_t over_logged_ms; /* "no move helps" is logged this often */
};
/* Takes verdict v of a judgement at now into t: idle and fair reset the
 * count of intervals over; over with no move that helps logs no_move once
 * a minute. Returns 1 when v is a move on the second interval over in a
 * row or later (the caller resets t->over once it moved), else 0. */
int balance_track(struct balance_track *t, enum balance_verdict v, uint64_t now,
		  const char *no_move);

/* connbal.c: client connection balancing: which holder a client sends a
 * volume's requests to, at connect (the CATALOG answer) and later (a PING
 * answer telling one client of an overloaded server to use another). */
#define CONNBAL_CLIENTS	 64 /* clients of this server a judgement looks at */
#define CONNBAL_COOLDOWN 10 /* intervals a client moved stays put (at least 2 windows) */
/* The group's client traffic as the decisions see it (pure). */
struct connbal_server {
	uint32_t id;
	uint32_t weight;  /* 0: takes no clients (draining, holds no page) */
	double load;	  /* client traffic: load units/s */
	uint32_t clients; /* clients using it */
};
struct connbal_client {
	uint64_t id;
	double load;	  /* its traffic to self, load units/s */
	int local;	  /* on self's host */
	int cooling;	  /* moved by the group lately: stays */
	uint64_t allowed; /* bit i: s[i] holds every volume it has open through self */
};
struct connbal_input {
	size_t n, self;
	struct connbal_server s[PEERD_MAX_MEMBERS];
	double threshold; /* as balance_input's */
	double floor;
	size_t nclients; /* self's clients */
	struct connbal_client c[CONNBAL_CLIENTS];
};
struct connbal_decision {
	size_t client, to;
	double total, fair, share, client_share; /* of total client traffic */
};
/* At connect: the server (index into in->s) among those in allowed (bit
 * i: s[i]) with the least load for its weight; those within in->floor of
 * it tie: prefer (the server asked) among them, else the fewest clients
 * for their weight, then a hash of client_id. in->n if none. */
size_t connbal_pick(const struct connbal_input *in, uint64_t allowed, size_t prefer,
		    uint64_t client_id);
/* Whether s[i] carries more than its fair share by the threshold, past the
 * floor (a client on its host does not stay with it for that). */
int connbal_over(const struct connbal_input *in, size_t i);
/* Self over its fair share by the threshold and past the floor: the one
 * client (on another host if any helps) whose move to an allowed server
 * lowers the worse of the two servers' loads relative to their fair
 * shares most, if that leaves the target within its threshold and lowers
 * it, or lowers it by the threshold at least; never a cooling client. */
enum balance_verdict connbal_decide(const struct connbal_input *in, struct connbal_decision *d);
/* Fills a catalog answer for client_id: VolumeInfo.client_server,
 * Member.clients_over (nothing without the group's figures). */
void connbal_catalog(Pv__Catalog *c, uint64_t client_id);
/* Once a second: every balance interval, judges this server's client
 * traffic; after two intervals over, picks a client to tell. */
void connbal_tick(void *arg);
/* The server client_id (a PING of Header.version) should use from now on,
 * with the reason in why; 0: stay. Logs the move. */
uint32_t connbal_ping(uint64_t client_id, uint32_t version, char *why, size_t len);
/* balance.status: the state of the client judgement ("idle", "fair",
 * "over", "telling", "waiting", "off", ...) and the intervals over. */
void connbal_status(const char **state, unsigned *over);

/* control.c */
/* Binds the control socket. Returns 0 or -1. */
int control_open(void);
void control_close(void);
/* Handles one message on the control socket. */
void control_input(void *arg);
/* The control commands (docs/control-protocol.md). */
enum control_op {
	CONTROL_STATUS,
	CONTROL_VOLUME_CREATE,
	CONTROL_VOLUME_LIST,
	CONTROL_VOLUME_SHOW,
	CONTROL_VOLUME_DELETE,
	CONTROL_GROUP_INIT,
	CONTROL_GROUP_JOIN,
	CONTROL_GROUP_SHOW,
	CONTROL_GROUP_REMOVE,
	CONTROL_GROUP_LEAVE,
	CONTROL_PAGE_MOVE,
	CONTROL_PAGE_SHOW,
	CONTROL_MIGRATION_LIST,
	CONTROL_SERVER_EVACUATE,
	CONTROL_VOLUME_SET_SERVERS,
	CONTROL_GROUP_SET_WEIGHT,
	CONTROL_CONFIG_SET,
	CONTROL_MIGRATE_PAUSE,
	CONTROL_MIGRATE_RESUME,
	CONTROL_LOAD_SHOW,
	CONTROL_BALANCE_STATUS,
	CONTROL_BALANCE_ON,
	CONTROL_BALANCE_OFF,
	CONTROL_SNAPSHOT_CREATE,
	CONTROL_SNAPSHOT_LIST,
	CONTROL_SNAPSHOT_SHOW,
	CONTROL_SNAPSHOT_DELETE,
	CONTROL_SNAPSHOT_DIFF,
	CONTROL_SNAPSHOT_ROLLBACK,
	CONTROL_CLIENT_ADD,
	CONTROL_CLIENT_LIST,
	CONTROL_CLIENT_REVOKE,
	CONTROL_NCMDS
};
#define CONTROL_MAX_ADDRESS 200 /* group.join address length */
/* config.set's settings */
enum control_key {
	CONTROL_KEY_MIGRATE_MBPS,
	CONTROL_KEY_BALANCE_THRESHOLD,
	CONTROL_KEY_BALANCE_INTERVAL
};
/* A control request as control_parse checked it: every limit that needs no
 * server state holds (whether the volume exists, the servers are members,
 * the space suffices is checked when the command runs). Fields the command
 * does not take are zero. */
struct control_cmd {
	enum control_op op;
	const char *cmd;		     /* its name, static ("volume.create") */
	char name[PV_MAX_NAME + 1];	     /* volume.create/show/delete: pv_valid_name;
						page.*, volume.set_servers: "volume" */
	uint64_t size;			     /* volume.create: pv_valid_volume_size */
	uint32_t page_size;		     /* volume.create: 0 (default), or a multiple of
						PV_SECTOR in [PV_MIN_PAGE_SIZE, PV_MAX_PAGE_SIZE] */
	uint32_t servers[PEERD_MAX_MEMBERS]; /* volume.create: ids > 0; none: all;
						volume.set_servers: 1 or more, distinct */
	size_t nservers;
	int routing;			       /* volume.show: 0/1 */
	int force;			       /* volume.delete, group.remove: 0/1 */
	char address[CONTROL_MAX_ADDRESS + 1]; /* group.join: "tcp://..." */
	unsigned timeout;		       /* group.join: seconds to wait, 0 default */
	uint32_t id;			       /* group.remove/leave/set_weight,
						  server.evacuate: a server id > 0 */
	uint64_t first, last;		       /* page.move: pages [first, last];
						  page.show: the page in both */
	uint32_t to;			       /* page.move: a server id > 0 */
	uint32_t piece_size;		       /* page.move: 0 (default) or a multiple
						  of PV_SECTOR, at most PV_MAX_PAGE_SIZE */
	uint32_t weight;		       /* group.set_weight: 1..PLACEMENT_MAX_WEIGHT */
	int cancel;			       /* server.evacuate: 0/1 */
	uint32_t value;			       /* config.set: migrate.max-mbps 0 (default)
						  to PLACEMENT_MAX_MBPS; balance.threshold
						  permille 10..BALANCE_MAX_THRESHOLD;
						  balance.interval seconds 1..
						  BALANCE_MAX_INTERVAL */
	enum control_key key;		       /* config.set: which setting */
	char snap[PV_MAX_NAME + 1];	       /* snapshot.*: the snapshot's name (c->name:
						  its volume; snapshot.list: "" for all) */
	char from[PV_MAX_NAME + 1];	       /* snapshot.diff: the older snapshot, or "" */
	char mode[16];			       /* snapshot.create: "hold" (default) or
						  "timestamp" */
	uint32_t timeout_ms;		       /* snapshot.create: 0 (default) to
						  SNAP_TIMEOUT_MAX */
	int with_snapshots;		       /* volume.delete: its snapshots too */
	char client[PV_KEY_NAME_MAX + 1];      /* client.add/revoke: pv_client_name_ok */
	uint8_t client_key[PV_KEY_BYTES];      /* client.add: its public key */
};
#define CONTROL_MAX_TIMEOUT 3600 /* group.join "timeout", seconds */
/* Decodes one request frame (JSON) into out, checking its arguments; volume
 * sizes up to max_volume_size. Pure: no server state, sockets or disk.
 * Returns 0, or -1 with the error text the client gets in err (errlen > 0);
 * out->cmd is then the command's name if its arguments were refused, else
 * NULL. */
int control_parse(const void *buf, size_t len, uint64_t max_volume_size, struct control_cmd *out,
		  char *err, size_t errlen);

#endif
