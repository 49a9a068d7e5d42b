/* fused.h: the map of fused, the peervol FUSE client. Lists the cross-file
 * functions under a heading per file. The client part's own files (client.c,
 * part.c, conn.c, catalog.c) share client_int.h, the map of that part.
 *
 *   FUSE worker threads                      client thread (client.c)
 *   -------------------                      ------------------------
 *   fs_read/fs_write/...  --client_read()-->  queue + eventfd --> zmq_poll
 *     (fs.c)                                  DEALER per server --> peerd
 *                                             reply arrives --> fuse_reply_*
 *
 * A FUSE request handed to client_read/_write/_flush/_trim is answered exactly
 * once, by the client thread (or at once with an error if the client has
 * stopped). The caller must not touch the request afterwards.
 */
#ifndef FUSED_H
#define FUSED_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "wire.h"

#define FUSED_MAX_IO	      (1u << 20)   /* max_read and max_write */
#define FUSED_TRIM_PART	      (1ull << 30) /* TRIM requests are split into parts of this */
#define FUSED_CATALOG_MAX_AGE 1000	   /* ms: lookup/readdir refresh older catalogs */
#define FUSED_PING_MS	      1000	   /* ms between pings to each server in use */
#define FUSED_DEAD_MS	      3000	   /* ms of silence with work outstanding = dead */
#define FUSED_CONNECT_MS      3000	   /* ms to wait for each address at start */
#define FUSED_UNAVAILABLE_MS  200	   /* ms before retrying an UNAVAILABLE request */
#define FUSED_SHM_MIN	      (32u << 10)  /* smaller IO goes by socket: a slot is 1 MiB */
#define FUSED_SHM_SLOTS	      64	   /* default --shm-slots */
#define SHM_SLOT	      (FUSED_MAX_IO + (64u << 10)) /* >= libfuse's read buffer */

/* fused --auth: the client key (kind PV_KEY_CLIENT), or NULL without it
 * (conn.c defines it, main.c sets it before the client thread starts). */
extern const struct pv_key *fused_key;

/* Options of the client part, filled by main.c. */
struct client_options {
	char **group; /* server addresses (--group), n_group entries */
	size_t n_group;
	unsigned timeout_s; /* per-request deadline (--timeout) */
	int shm;	    /* offer shared memory to servers on this host */
	int links;	    /* talk to servers on their links (link.h) when they have one */
	int map;	    /* map data files of servers on this host (vmap.c) */
	const char *server; /* --server: the server to use for the volumes it holds,
			     * instead of the one the group proposes; NULL */
};

/* The longest file name in the mount: a snapshot's VOL@NAME. */
#define FUSED_NAME_MAX (2 * PV_MAX_NAME + 1)

/* A file of the mount as the file system shows it (a copy; owned by the
 * caller): a volume, or one of its snapshots (snap_id != 0: the read-only
 * file VOL@NAME, snapfile.c). */
struct volume_attr {
	char name[PV_MAX_NAME + 1]; /* the volume's */
	uint64_t id;		    /* the volume's */
	uint64_t size;
	uint32_t page_size;
	uint64_t created;   /* unix seconds (the file's times): the volume's or snapshot's */
	uint64_t allocated; /* bytes stored over the group (st_blocks); a snapshot: the
			     * bytes preserved for it */
	char snap[PV_MAX_NAME + 1]; /* a snapshot's name, "" for the volume */
	uint64_t snap_id;	    /* a snapshot's id (Header.snapshot_id), 0 for the volume */
};

struct client;

/* client.c */

/* Creates the client and reads the catalog from the first --group address
 * that answers (each gets FUSED_CONNECT_MS). Logs and returns NULL on
 * failure. Does not start the client thread (call client_start after any
 * fork). */
struct client *client_new(const struct client_options *opt);

/* Starts the client thread; 0 or -1 (logged). */
int client_start(struct client *c);

/* Stops the client thread, answers every outstanding request with EIO,
 * closes the sockets and the ZeroMQ context, frees *cp and sets it to NULL.
 * Accepts NULL. */
void client_destroy(struct client **cp);

/* The data calls name the volume a file was opened on (vol: its name and
 * id, copied). A volume deleted since, even one created again under the same
 * name, fails them with ESTALE: a stale handle never reaches another volume. */

/* Reads len bytes (<= FUSED_MAX_IO) at off of vol (a snapshot's file: of
 * that snapshot's image, by READs with Header.snapshot_id, never through
 * shared memory or a mapping; a snapshot deleted since fails them with
 * ESTALE); replies fuse_reply_buf or fuse_reply_err to req. Any thread. */
void client_read(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		 uint32_t len);

/* Writes len bytes of buf at off (buf's FUSE receive buffer is taken with
 * it when loop_take_buffer allows, else the bytes are copied once); replies fuse_reply_write with
 * len, or fuse_reply_err. flags: PV_F_FUA. Any thread. */
void client_write(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		  const void *buf, uint32_t len, uint32_t flags);

/* Makes the volume's acknowledged writes durable; vol NULL: every volume
 * this mount has open. Replies fuse_reply_err (0 on success). Any thread. */
void client_flush(struct client *c, fuse_req_t req, const struct volume_attr *vol);

/* Deallocates len bytes at off (split in parts of FUSED_TRIM_PART); replies
 * fuse_reply_err once all parts are done. Any thread. */
void client_trim(struct client *c, fuse_req_t req, const struct volume_attr *vol, uint64_t off,
		 uint64_t len);

/* Notes that the mount opened (open = 1) or released (0) a file of vol,
 * and tells its server at once. Any thread. */
void client_volume_opened(struct client *c, const struct volume_attr *vol, int open);

/* Refreshes the catalog if it is older than max_age_ms, waiting up to about
 * 2 s for the answer (the old catalog stays on failure). Any thread except
 * the client thread. */
void client_catalog_refresh(struct client *c, uint64_t max_age_ms);

/* Copies the file called name (a volume's name, or VOL@NAME for a
 * snapshot) into *out; 0, or -1 if there is none. */
int client_volume_get(struct client *c, const char *name, struct volume_attr *out);

/* Copies the list of files (each volume, then its snapshots, oldest first)
 * into a new array (*out, free() it) of *n entries; 0 or -1 (out of
 * memory). */
int client_volume_list(struct client *c, struct volume_attr **out, size_t *n);

/* pick.c */

/* One holder of a volume as pick_route sees it. */
struct pick_holder {
	uint32_t id;
	int known; /* a member of the catalog (with an address) */
	int local; /* its address is on this host */
	int over;  /* over its fair share of client traffic (Member.clients_over) */
};

/* The holder (its member id) a volume's requests go to, out of its n
 * holders h: forced (--server, 0: none) if it is one; else a holder on
 * this host that is not over (advised, or from, if either is one, else
 * the first); else advised (the group's least loaded, 0: none) if it is
 * one; else from (the server the catalog came from) if it is one; else
 * the holder client_id picks. 0 if n is 0. Pure. */
uint32_t pick_route(const struct pick_holder *h, size_t n, uint32_t forced, uint32_t advised,
		    uint32_t from, uint64_t client_id);

/* shm.c */

/* Creates the shared memory with slots slots of SHM_SLOT bytes (0: none).
 * 0, or -1 (logged; fused goes on without it). Before any thread. */
int shm_init(unsigned slots);
void shm_destroy(void);
int shm_enabled(void);
/* What a server needs to map it: /proc path, size, token (first bytes). */
void shm_describe(const char **path, uint64_t *size, const uint8_t **token);
/* Passes the memfd to a server on this host that may not open it by path
 * (a peerd of another user), over its pass socket at path, as its answer
 * to a refused SHM_ATTACH named it. The socket is trusted only if the
 * listening process's user owns it and its directory is writable by no one
 * else (so no other user could have put it there). 0 once the server kept
 * it (SHM_ATTACH with "passed" follows), -1 with the reason in err. */
int shm_pass(const char *path, char *err, size_t errlen);
/* A free slot (SHM_SLOT bytes), or NULL if none is free or there is no
 * shared memory. Any thread. */
void *shm_slot_get(void);
/* Returns a slot from shm_slot_get; ignored for quarantined slots and
 * pointers outside the shared memory. Any thread. */
void shm_slot_put(void *slot);
/* Never hands the slot holding p out again (a server may still use it). */
void shm_slot_quarantine(void *p);
/* The slot that holds p, or NULL if p is not in the shared memory. */
void *shm_slot_of(const void *p);
/* p's offset from the start of the shared memory (p inside it). */
uint64_t shm_offset(const void *p);

/* vmap.c */

/* A read-only mapping of one server's data file of one volume,
 * reference-counted (any thread may drop the last reference). */
struct vmap {
	const uint8_t *base;
	uint64_t size;
	uint64_t dev, ino; /* the file's, as the server named it */
	unsigned refs;
};

/* Opens path, checks it is the regular file dev/ino of at least size bytes,
 * and maps size bytes of it read-only: one reference. NULL with err set. */
struct vmap *vmap_open(const char *path, uint64_t dev, uint64_t ino, uint64_t size, char *err,
		       size_t errlen);
/* Takes and drops a reference; the last unmaps. vmap_put accepts NULL. */
void vmap_get(struct vmap *m);
void vmap_put(struct vmap *m);
/* The bytes at offset, or NULL if m is NULL or the range is not all inside
 * the mapping. */
const void *vmap_ptr(const struct vmap *m, uint64_t offset, uint64_t length);

/* reply.c */

/* Starts n threads that copy large READ answers into the kernel, so that the
 * client thread goes on meanwhile (0: every answer on the caller's thread).
 * 0, or -1 (logged; answers then stay on the caller's thread). */
int reply_start(unsigned n);
/* Sends what is queued, then stops the threads. */
void reply_stop(void);
/* Answers req with len bytes at data: on a reply thread if there are any and
 * len is 64 KiB or more, else at once; then calls done(arg) if done is not
 * NULL (on the thread that answered). data must stay valid until done. */
void reply_data(fuse_req_t req, const void *data, size_t len, void (*done)(void *), void *arg);

/* loop.c */

/* Makes the session's /dev/fuse non-blocking for the client thread to read
 * and installs the signal handlers (SIGTERM, SIGINT, SIGHUP). Call after
 * mounting and before client_start. 0, or -1 (logged). */
int loop_prepare(struct fuse_session *se);

/* Runs threads worker threads for the requests the client thread passes on,
 * until the session is unmounted or a signal ends it. Returns 0
 * (unmounted), the signal number, or -errno. */
int loop_run(unsigned threads);

/* Frees what is left once the client thread has stopped. */
void loop_end(void);

/* The client thread's side: the FUSE descriptor to poll (-1 when there is
 * none, or the session ended), and the call that takes what it has. */
int loop_fuse_fd(void);
void loop_fuse_ready(void);

/* From a FUSE callback: if [ptr, ptr + len) lies in the buffer of the request
 * being run and len is worth it, hands the buffer to the caller and returns
 * its start (a shared memory slot: shm_slot_put(); else free()). NULL
 * otherwise: copy the data. */
void *loop_take_buffer(const void *ptr, size_t len);

/* snapfile.c */

/* The name of v's file in the mount: the volume's name, or VOL@NAME for a
 * snapshot; written into buf (FUSED_NAME_MAX + 1 bytes), returned. */
char *snapfile_name(const struct volume_attr *v, char *buf);
/* Splits a file name into the volume's name and the snapshot's (vol and
 * snap: PV_MAX_NAME + 1 bytes each). 0: a volume's file (snap ""); 1: a
 * snapshot's; -1: a name that can be neither. */
int snapfile_split(const char *file, char *vol, char *snap);
/* Fills *out with the attributes of snapshot si of the volume vol: 0, or -1
 * with the reason in err (an invalid name, id 0). */
int snapfile_attr(const struct volume_attr *vol, const Pv__SnapshotInfo *si,
		  struct volume_attr *out, char *err, size_t errlen);

/* fs.c */

/* The FUSE low-level operations; their userdata is a struct fs_ctx. */
extern const struct fuse_lowlevel_ops fs_ops;

/* Per-mount state of the file system callbacks. */
struct fs_ctx;

/* Creates the file system state over client c (not owned); NULL on failure.
 * max_background: the --max-background value given to the kernel. */
struct fs_ctx *fs_new(struct client *c, unsigned max_background);

/* Frees *fsp and sets it to NULL; accepts NULL. */
void fs_destroy(struct fs_ctx **fsp);


#endif
