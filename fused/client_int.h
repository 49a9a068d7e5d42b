/* client_int.h: what the files of fused's client part share: the client
 * thread's state and the cross-file functions, under a heading per file.
 * Everything here runs on the client thread unless its comment says
 * otherwise (the fields of struct client say who guards them).
 *
 *   client.c   calls from FUSE threads, the queue, timers, the thread
 *      |  call -> parts
 *   part.c     parts in flight, their replies (a table by op), status -> errno
 *      |  header (+ payload)                  ^ reply
 *   conn.c     connections to servers: DEALER, link, BATCH cork, poll
 *      |
 *   catalog.c  volumes, members, routes, published list, mapping state
 */
#ifndef CLIENT_INT_H
#define CLIENT_INT_H

#include <pthread.h>
#include <zmq.h>

#include "fused.h"

#define HASH_SIZE	   4096 /* buckets of the req_id table (power of 2) */
#define CATALOG_TIMEOUT_MS 2000 /* a catalog refresh that takes longer failed */
#define SCAN_MS		   100	/* deadline scan period */

enum call_kind { CALL_READ, CALL_WRITE, CALL_FLUSH, CALL_TRIM, CALL_OPEN, CALL_CLOSE };

/* One FUSE-level operation, from the FUSE thread that made it to its reply.
 * Made by a FUSE thread, owned by the client thread once queued. */
struct call {
	enum call_kind kind;
	fuse_req_t req;		      /* NULL for OPEN/CLOSE */
	char volume[PV_MAX_NAME + 1]; /* "" with FLUSH: every open volume */
	uint64_t vol_id;	      /* the volume's id when the file was opened */
	uint64_t snap_id;	      /* READ of a snapshot's file: its id; else 0 */
	uint64_t offset;
	uint64_t length;
	uint32_t flags;
	zmq_msg_t data;	     /* WRITE only: the bytes */
	void *slot;	     /* WRITE: the shared memory slot data lies in, or NULL */
	struct call *next;   /* submission queue; guarded by client.lock */
	unsigned parts_left; /* client thread only */
	int err;	     /* first error of a part; client thread only */
};

/* One peerd we talk to. Client thread only. */
struct conn {
	char *address;
	uint32_t member_id;	/* 0 until known */
	void *sock;		/* DEALER; NULL if it could not be opened */
	void *mon;		/* PAIR receiving sock's disconnect events, or NULL */
	unsigned outstanding;	/* parts in flight here */
	uint64_t wait_start_ms; /* when outstanding last rose from 0 */
	uint64_t last_rx_ms;	/* when anything last came back */
	uint64_t next_ping_ms;
	int version_logged;
	int shm;		/* enum shm_state: whether it mapped our shared memory */
	int shm_logged;		/* the outcome of the first attach was logged */
	int shm_passed;		/* the memfd was passed over its pass socket: attach
				 * with "passed" */
	int shm_passes;		/* passes since it last mapped our memory (at most 3) */
	uint32_t proto_version; /* of its last reply; 0 until one came */
	int local;		/* its address is on this host (conn_is_local) */
	char link_address[64];	/* its peer link listener (catalog), or "" */
	struct link *link;	/* the link to it (link.h), or NULL */
	char link_to[64];	/* the address link was made to */
	int link_up;		/* connected: everything to it goes there */
	uint64_t link_retry_ms; /* no new link before then */
	unsigned link_failures; /* in a row: the retry backs off */
	int auth_logged;	/* a refused key handshake was logged */
	int link_refused;	/* it refused our key (linkauth.h): logged once */
	struct conn *next;
};

/* One wire request. Client thread only. */
struct part {
	uint64_t req_id;
	uint32_t op;
	struct call *call; /* NULL for PING and CATALOG */
	char volume[PV_MAX_NAME + 1];
	uint64_t vol_id;  /* data parts: the id of the volume opened (Header.volume_id) */
	uint64_t snap_id; /* READ of a snapshot (Header.snapshot_id), else 0 */
	uint64_t offset;
	uint32_t length;
	struct conn *conn; /* in flight there; NULL while waiting */
	uint64_t deadline_ms;
	uint64_t retry_ms;	  /* while waiting: when to send again */
	struct part *hnext;	  /* hash chain */
	struct part *prev, *next; /* list of all parts */
	struct part *wnext;	  /* waiting list */
	void *slot;		  /* READ: shared memory slot for the data, or NULL */
	int shm_sent;		  /* in flight with PV_F_SHM: conn may touch the slot */
	int on_link;		  /* in flight on conn's link (not its DEALER) */
	struct vmap *map;	  /* READ sent with PV_F_MAP: the mapping it names
				   * (a reference), or NULL */
	int drain;		  /* in flight to the server its volume moved away
				   * from: counted in client.drain_left */
	int held;		  /* on client.held: its volume's move waits for
				   * the drain */
	struct part *held_next;
};

enum shm_state { SHM_NONE, SHM_PENDING, SHM_ON, SHM_REFUSED };

/* A volume's mapping of its server's data file (vmap.c): m while mapped,
 * else where asking for it stands. */
enum map_state { MAP_NONE, MAP_PENDING, MAP_REFUSED };

struct vol_map {
	struct vmap *m;	   /* the mapping (one reference), or NULL */
	uint32_t server;   /* with m: the member whose data file it is */
	int state;	   /* without m: enum map_state */
	uint64_t retry_ms; /* MAP_REFUSED: ask again then */
};

struct member {
	uint32_t id;
	char *address;
	char *link; /* its link address, "" if none */
	int over;   /* Member.clients_over: over its fair share of client traffic */
	int local;  /* its address is on this host */
};

/* The client thread's view of a catalog volume, with its route. */
struct vol_view {
	struct volume_attr attr;
	uint32_t *holders;
	size_t n_holders;
	uint32_t advised;  /* VolumeInfo.client_server: the holder the group
			    * proposes for this client, 0: none */
	struct conn *conn; /* where its requests go */
	int draining;	   /* conn changed (catalog_move): its new requests are
			    * held until client.drain_left is 0 */
	struct vol_map map;
	uint64_t *snaps; /* the ids of its snapshots */
	size_t n_snaps;
};

struct open_vol {
	char name[PV_MAX_NAME + 1];
	uint64_t id; /* opened as this volume id (a deleted one's opens stay until released) */
	unsigned count;
	struct open_vol *next;
};

struct client {
	char auth_error[256]; /* the last refused key handshake, or "" */
	/* set before the client thread starts, read-only afterwards */
	char **group;
	size_t n_group;
	uint64_t timeout_ms;
	uint64_t client_id;
	int shm;      /* offer the shared memory (shm.c) to servers */
	int links;    /* use the servers' links (link.h) */
	int map;      /* map data files of servers on this host (vmap.c) */
	char *server; /* --server, or NULL */
	void *zctx;
	int efd;
	pthread_t thread;
	int started;

	/* guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct call *q_head, **q_tail;
	int stopping;
	int cat_wanted;
	uint64_t cat_seq;	 /* bumped when a catalog fetch ends */
	uint64_t cat_tried_ms;	 /* when the last fetch ended (0: never) */
	struct volume_attr *pub; /* published volume list */
	size_t n_pub;

	/* client thread only */
	struct conn *conns;
	struct conn *cat_conn; /* where catalog requests go */
	size_t cat_next;       /* next candidate when cat_conn fails */
	int have_catalog;
	uint64_t cat_version;
	struct part *cat_part; /* catalog request in flight, or NULL */
	struct member *members;
	size_t n_members;
	struct vol_view *vols;
	size_t n_vols;
	struct open_vol *opens;
	struct part *hash[HASH_SIZE];
	struct part all; /* sentinel of the list of all parts */
	struct part *waiting;
	uint64_t next_req_id;
	uint64_t next_mon_id;
	uint64_t next_scan_ms;
	uint64_t last_warn_ms;
	unsigned warn_suppressed;
	struct batch_cork *cork; /* what one round sends, batched (batch.h) */
	/* a move to another server (catalog_move): parts in flight to the old
	 * one (part.drain) still to be answered, and the new ones held until
	 * then, in order */
	unsigned drain_left;
	int draining; /* some volume is draining */
	struct part *held, **held_tail;
	uint64_t moved_ms; /* when the group last moved this client; 0: never */
};

/* client.c */

/* Whether a per-request warning may be logged: one line a second, the
 * rest counted and reported with the next one. */
int client_warn_allowed(struct client *c);

/* part.c */

/* What a reply brought for its part, as part_reply hands it to the row of
 * its op: the header, the frame after it (or NULL), how many frames more (a
 * malformed reply), whether the part was in flight with PV_F_SHM, and when
 * the reply was taken. */
struct answer {
	const Pv__Header *h;
	zmq_msg_t *data;
	int extra;
	int in_shm;
	uint64_t now;
};

/* The part with request id req_id (in flight or waiting), or NULL. */
struct part *part_find(struct client *c, uint64_t req_id);
/* A new part of call (NULL: a session request) about volume (vol_id: the
 * id it was opened as, 0 for none), due within timeout_ms; not sent yet.
 * NULL (logged) when out of memory. */
struct part *part_new(struct client *c, uint32_t op, struct call *call, const char *volume,
		      uint64_t vol_id, uint64_t offset, uint32_t length, uint64_t timeout_ms);
/* Takes p off its server (if in flight) without touching the waiting list;
 * a part the drain of a move waited for is no longer waited for. */
void part_unsend(struct client *c, struct part *p);
/* Once no part of a move's drain is in flight (drain_left 0): its volumes
 * stop draining and the parts held meanwhile are sent, in order. */
void part_drained(struct client *c);
/* Frees p with what it holds, without answering its call. */
void part_free(struct client *c, struct part *p);
/* Ends part p with errno err (0: success) and answers its call when it was
 * the last part. */
void part_done(struct client *c, struct part *p, int err);
/* Parks p until when (capped at its deadline), then sends it again. */
void part_wait(struct client *c, struct part *p, uint64_t when);
/* Sends p to the server its volume is routed to (session parts: to s). */
void part_send(struct client *c, struct part *p, struct conn *s);
/* Sends a session request (PING, SHM_ATTACH, MAP_VOLUME) to s as a part of
 * its own; 0, or -1 (not sent, logged at debug). */
int part_session(struct client *c, struct conn *s, uint32_t op, const char *volume,
		 const ProtobufCMessage *body);
/* Sends again what is in flight to s (link_only: only what went on its
 * link); session requests fail instead. Returns how many were sent again. */
unsigned part_resend(struct client *c, struct conn *s, int link_only);
/* Handles one reply from s: [header hb/hl][data?][extra more frames];
 * in_batch: a record of a BATCH. */
void part_reply(struct client *c, struct conn *s, const void *hb, size_t hl, zmq_msg_t *data,
		int extra, int in_batch);
/* Frees a call that will not be answered (again). */
void part_call_free(struct call *call);
/* Answers a call whose parts are all done (READ answers in read_answered)
 * and frees it. */
void part_call_finish(struct call *call);

/* conn.c */

/* Creates the ZeroMQ context and the cork; 0, or -1 (logged). */
int conn_init(struct client *c);
/* Sends what the last round queued, closes every connection and ends the
 * ZeroMQ context. */
void conn_fini(struct client *c);
/* The server at address, connected on first use; NULL if that fails. */
struct conn *conn_get(struct client *c, const char *address);
/* Takes s's link address from the catalog's members. */
void conn_link_address(struct client *c, struct conn *s);
/* Sends h (+ payload, moved) to s on its link or its DEALER (batch: with
 * the round's other sends). 0, or -1 with errno. */
int conn_send(struct client *c, struct conn *s, const Pv__Header *h, zmq_msg_t *payload, int batch);
/* Offers s our shared memory if we have some and s is on this host. */
void conn_attach(struct client *c, struct conn *s);
/* The reply to SHM_ATTACH (a row of part.c's table). */
void conn_attach_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a);
/* Sends a PING with the volumes this mount has open through s. */
void conn_ping(struct client *c, struct conn *s);
/* Whether a server address is on this host (numeric, no name lookup). */
int conn_is_local(const char *address);
/* Per-server timers: silent servers, pings, links to make or replace. */
void conn_timers(struct client *c, uint64_t now);
/* Sends what this round queued; parts whose send failed wait. */
void conn_flush(struct client *c);
/* Waits up to timeout_ms for the sockets, the links, the eventfd and
 * /dev/fuse, then takes what arrived. */
void conn_poll(struct client *c, long timeout_ms);

/* catalog.c */

/* Sends a catalog request to the catalog server unless one is in flight. */
void catalog_request(struct client *c, uint64_t timeout_ms);
/* A catalog fetch ended: wakes the threads waiting in client_catalog_refresh. */
void catalog_ended(struct client *c, int ok);
/* The reply to CATALOG (a row of part.c's table). */
void catalog_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a);
/* The catalog's member id, or NULL. */
const struct member *catalog_member(struct client *c, uint32_t id);
/* The member id of s, from the replies or the catalog's member list. */
uint32_t catalog_member_of(struct client *c, struct conn *s);
/* The catalog's volume called name, or NULL. */
struct vol_view *catalog_volume(struct client *c, const char *name);
/* Whether v has the snapshot of id snap_id. */
int catalog_has_snapshot(const struct vol_view *v, uint64_t snap_id);
/* Another holder of v than dead (the next one in its list), or NULL. */
struct conn *catalog_other_holder(struct client *c, struct vol_view *v, struct conn *dead);
/* The group asks (a PING answer from s, reason why) that this client use
 * server to: the volumes sent through s that it holds go there from now
 * on, their new requests held until those in flight to s are answered. */
void catalog_move(struct client *c, struct conn *s, uint32_t to, const char *why);
/* Frees the volumes, members and published list. */
void catalog_free(struct client *c);
/* On a READ of volume v to s: PV_F_MAP when v's mapping holds the range;
 * asks s for its data file when v has none yet. */
void catalog_map_flags(struct client *c, struct part *p, struct conn *s, struct vol_view *v,
		       Pv__Header *h);
/* The reply to MAP_VOLUME (a row of part.c's table). */
void catalog_map_answered(struct client *c, struct conn *s, struct part *p, const struct answer *a);
/* A MAP_VOLUME request ended without an answer: ask again later. */
void catalog_map_unanswered(struct client *c, const struct part *p);

#endif
