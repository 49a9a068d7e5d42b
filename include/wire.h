/* wire.h: the peervol protocol as every program sees it: version, message
 * layout, opcodes, status codes and limits, plus the small framing library
 * (proto/wire.c) that encodes and decodes header frames.
 *
 * A message is multipart ZeroMQ:
 *
 *   client/peer DEALER  --->  [header][data?]            ---> server ROUTER
 *   server ROUTER       --->  [identity][header][data?]  (ROUTER adds/strips
 *                                                          the identity frame)
 *
 * header: a pv.Header protobuf (proto/peervol.proto).
 * data:   raw bytes, only for WRITE requests and READ replies, or an encoded
 *         protobuf body for catalog and peer messages (never block data).
 */
#ifndef PV_WIRE_H
#define PV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "peervol.pb-c.h"

#define PV_PROTO_MAJOR 1
#define PV_PROTO_MINOR                                                                             \
	6 /* 1.1: BATCH; 1.2: Header.volume_id; 1.3: late copies;                                  \
	   * 1.4: page migration, routing epochs; 1.5: snapshots, client                            \
	   * balancing (PING answers' use_server); 1.6: memfds passed over                          \
	   * a server's pass socket (ShmAttach.passed) */
#define PV_PROTO_VERSION ((PV_PROTO_MAJOR << 16) | PV_PROTO_MINOR)

/* Limits: every length is checked against these before anything is
 * allocated. */
#define PV_MAX_IO	(8u << 20)   /* largest READ/WRITE/TRIM part in bytes */
#define PV_MAX_TRIM	(1ull << 40) /* largest TRIM in one request */
#define PV_MAX_HEADER	4096	     /* largest encoded header frame */
#define PV_MAX_BODY	(16u << 20)  /* largest protobuf body frame */
#define PV_MAX_NAME	64	     /* volume and snapshot name length */
#define PV_MAX_MESSAGE	512	     /* Header.message length */
#define PV_MAX_HOPS	2	     /* a request forwarded more is MOVED */
#define PV_MAX_IDENTITY 255	     /* ZeroMQ routing id */

#define PV_SECTOR	     512u
#define PV_DEFAULT_PAGE_SIZE (4u << 20) /* 8192 blocks of 512 bytes */
#define PV_MIN_PAGE_SIZE     (64u << 10)
#define PV_MAX_PAGE_SIZE     (1u << 30)
#define PV_DEFAULT_PORT	     7100

/* Header.flags bits. */
#define PV_F_FUA 0x1u /* WRITE: durable before the reply (force unit access) */
#define PV_F_SHM                                                                                   \
	0x2u /* READ/WRITE from a client: the data is in the client's                              \
	      * shared memory at shm_offset, not in a data frame */
#define PV_F_SHM_LOST                                                                              \
	0x4u /* reply to a PV_F_SHM request: a server may still                                    \
	      * touch the client's memory; never reuse it */
#define PV_F_MAP                                                                                   \
	0x8u /* READ from a client: it has the volume's data file mapped                           \
	      * (map_dev, map_ino); reply (same map_dev, map_ino): no data,                        \
	      * copy it from there */
#define PV_F_MIG                                                                                   \
	0x10u /* READ/WRITE/TRIM from a page's migration source to its                             \
	       * target: serve it here (a piece already copied, or the dual                        \
	       * write of the piece in transit), never route it back */
#define PV_F_MIG_COPY                                                                              \
	0x20u		 /* WRITE (data) or TRIM (a hole) of a piece being copied by a             \
			  * migration: offset is the piece's start; epoch the move's */
#define PV_SHM_TOKEN 16u /* bytes of pv.ShmAttach.token */
/* A memfd passed to a server on the same host over its pass socket (a peerd
 * of another user may not open /proc/PID/fd/N of the client): one
 * SOCK_SEQPACKET message of PV_SHM_PASS_MAGIC and the region's token, the
 * memfd as SCM_RIGHTS; the server answers one byte, '1' (kept, for the
 * SHM_ATTACH with "passed" that follows) or '0'. */
#define PV_SHM_PASS_MAGIC "PVSHMFD1"
#define PV_SHM_PASS_LEN	  (8u + PV_SHM_TOKEN)

/* Operations. Requests and their replies carry the same op. */
enum pv_op {
	/* data path: client or peer -> server */
	PV_OP_READ = 1,	 /* offset, length -> reply data frame of length bytes */
	PV_OP_WRITE = 2, /* offset, data frame (length = its size), flags FUA */
	PV_OP_FLUSH = 3, /* make all acknowledged writes of the volume durable */
	PV_OP_TRIM = 4,	 /* offset, length: deallocate; reads then return zeros */
	PV_OP_BATCH = 5, /* length = records; data: several messages (batch.h) */

	/* client session: fused -> server */
	PV_OP_CATALOG = 16,    /* reply body: pv.Catalog with holders filled in */
	PV_OP_PING = 17,       /* body: pv.ClientState; reply: catalog_version,
				* use_server (1.5: send there from now on) */
	PV_OP_SHM_ATTACH = 18, /* body: pv.ShmAttach; OK: PV_F_SHM may be used */
	PV_OP_MAP_VOLUME = 19, /* volume -> reply body: pv.VolumeMap */

	/* peers: server -> server */
	PV_OP_HEARTBEAT = 64,	  /* body: pv.Heartbeat; reply: OK */
	PV_OP_CAT_PREPARE = 65,	  /* body: pv.CatalogChange; lock and validate */
	PV_OP_CAT_COMMIT = 66,	  /* body: pv.CatalogChange; apply, unlock */
	PV_OP_CAT_ABORT = 67,	  /* body: pv.CatalogChange; unlock */
	PV_OP_CAT_FETCH = 68,	  /* reply body: pv.Catalog (committed) */
	PV_OP_ROUTES = 69,	  /* volume -> reply body: pv.RouteUpdate (moved pages) */
	PV_OP_JOIN = 70,	  /* body: pv.Member; the receiver adds it by 2PC */
	PV_OP_ROUTE_UPDATE = 71,  /* body: pv.RouteUpdate; merged by epoch */
	PV_OP_MIG_BEGIN = 72,	  /* body: pv.Migration; the target prepares */
	PV_OP_MIG_SWITCH = 73,	  /* body: pv.Migration; the target owns the page */
	PV_OP_MIG_REQUEST = 74,	  /* body: pv.MigrateRequest; to the owner */
	PV_OP_MIG_ABORT = 75,	  /* body: pv.Migration; nothing copied: drop it */
	PV_OP_SNAP_HOLD = 76,	  /* body: pv.SnapshotOp; hold writes, drain, cut */
	PV_OP_SNAP_RELEASE = 77,  /* body: pv.SnapshotOp; keep (commit) or drop the cut */
	PV_OP_SNAP_DIFF = 78,	  /* body: pv.SnapshotOp; reply: pv.SnapshotRanges */
	PV_OP_SNAP_ROLLBACK = 79, /* body: pv.SnapshotOp; the owner's pages become the image */
	PV_OP_MIG_SNAP = 80,	  /* payload: u32 length, pv.MigrationSnap, chunk data: a
				   * moving page's preserved chunks of one snapshot */
};

/* Status codes in reply headers. */
enum pv_status {
	PV_ST_OK = 0,
	PV_ST_NO_VOLUME = 1,	/* no volume of that name (or of that volume_id) */
	PV_ST_OUT_OF_RANGE = 2, /* offset/length outside the volume */
	PV_ST_MOVED = 3,	/* page owned elsewhere: new_owner, epoch */
	PV_ST_BUSY = 4,		/* try again after retry_after_ms */
	PV_ST_IO_ERROR = 5,	/* the server's disk failed */
	PV_ST_BAD_REQUEST = 6,	/* malformed or invalid request */
	PV_ST_VERSION = 7,	/* protocol major version differs */
	PV_ST_NO_SPACE = 8,	/* the server's disk is full */
	PV_ST_UNAVAILABLE = 9,	/* the page's owner is down; retry */
	PV_ST_REFUSED = 10,	/* refused: not a member, conflict, in use, a
				 * late copy of a request already answered */
	PV_ST_NO_SHM = 11,	/* PV_F_SHM but no shared memory of this client
				 * is mapped: attach again or send the data */
	PV_ST_RESTAMP = 12,	/* a WRITE/TRIM stamped before a timestamp-mode
				 * snapshot's cut reached data written after
				 * it: stamp it again (from a clock merged with
				 * the reply's hlc) and send it again */
	PV_ST__COUNT
};

/* The name of an op ("READ"), or "UNKNOWN". */
const char *wire_op_name(uint32_t op);

/* The name of a status ("MOVED"), or "UNKNOWN". */
const char *wire_status_name(int32_t status);

/* Whether op is one this version knows. */
int wire_op_known(uint32_t op);

/* Fills h with a fresh header of this protocol version, hlc from this
 * process's clock. */
void wire_header_init(Pv__Header *h);

/* This process's hybrid logical clock (include/hlc.h): a new stamp, later
 * than every stamp it gave out or saw (thread-safe). */
uint64_t wire_hlc_now(void);
/* Merges a stamp seen in a message (wire_header_decode does it). */
void wire_hlc_seen(uint64_t stamp);

/* Decodes and validates a header frame. Returns PV_ST_OK and sets *out (free
 * with wire_header_free), or PV_ST_BAD_REQUEST / PV_ST_VERSION with a reason
 * in err; then *out is NULL. Never trusts buf: any byte string is safe. */
int wire_header_decode(const void *buf, size_t len, Pv__Header **out, char *err, size_t errlen);

/* Decodes a protobuf body of type desc from the network. Returns the
 * message (free with protobuf_c_message_free_unpacked), or NULL if it does
 * not decode or carries a field numbered 0 (which protobuf-c accepts but
 * cannot encode again). */
ProtobufCMessage *wire_body_decode(const ProtobufCMessageDescriptor *desc, const void *buf,
				   size_t len);

/* Frees a header from wire_header_decode; accepts NULL. */
void wire_header_free(Pv__Header *h);

/* Sends a message on a ZeroMQ socket: [ident][header][payload]. ident may be
 * NULL (DEALER). payload may be NULL; otherwise it is moved into the socket
 * (zero-copy) and closed, whether or not the send succeeds. Never blocks:
 * a full queue fails with EAGAIN. Returns 0, or -1
 * with errno set. */
int wire_send(void *sock, const void *ident, size_t ident_len, const Pv__Header *h,
	      void *payload_msg /* zmq_msg_t *, may be NULL */);

/* Sets ZMQ_MAXMSGSIZE of a socket that receives from the network to
 * PV_MAX_FRAME (link.h): ZeroMQ drops a connection that announces a larger
 * frame before it allocates anything for it. Returns 0, or -1 with errno. */
int wire_socket_limit(void *sock);

/* Encodes h into buf (PV_MAX_HEADER bytes). Returns its length, or 0 with
 * errno EMSGSIZE if it is longer. */
size_t wire_header_pack(const Pv__Header *h, uint8_t *buf);

/* Sends like wire_send with a header already encoded (hdr_len bytes). */
int wire_send_packed(void *sock, const void *ident, size_t ident_len, const void *hdr,
		     size_t hdr_len, void *payload_msg /* zmq_msg_t *, may be NULL */);

/* Packs body into a new message (a zmq_msg_t *, closed by the caller or
 * moved by a send). Returns 0, or -1 with errno (EMSGSIZE over
 * PV_MAX_BODY). */
int wire_body_msg(void *msg_out /* zmq_msg_t * */, const ProtobufCMessage *body);

/* Sends like wire_send with a protobuf body (packed into a new frame). */
int wire_send_body(void *sock, const void *ident, size_t ident_len, const Pv__Header *h,
		   const ProtobufCMessage *body);

#endif
