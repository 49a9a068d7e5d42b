/* link.h: a peer link: one non-blocking stream socket between two servers,
 * read and written by the event loop that owns it, with no ZeroMQ IO thread
 * in between.
 *
 * Why: a forwarded request crossed ZeroMQ four times (entry to owner and
 * back, each a hand-off from the sender's loop to its IO thread and from
 * the receiver's IO thread to its loop). On the three-server profile the
 * IO threads took a third of all CPU samples; a link is written and read by
 * the reactors themselves (docs/performance.md has the numbers).
 *
 * The stream is a sequence of records in BATCH's record format (batch.h):
 *
 *   u32 LE header length | u32 LE data length (0xffffffff: no data frame)
 *   | header bytes (a pv.Header) | data bytes
 *
 * each handled exactly as a message [header][data?] on the ROUTER. What one
 * round of the loop queues goes out in as few writev calls as the socket
 * takes (the stream coalesces small messages; no BATCH is needed). A
 * malformed record ends the link: the stream cannot be resynchronized.
 *
 * Single-threaded: a link belongs to one event loop. */
#ifndef PV_LINK_H
#define PV_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "auth.h"
#include "batch.h"
#include "wire.h"

/* Bytes a link may hold queued for a peer that does not read; past it
 * link_queue refuses (the sender fails the request as unreachable). */
#define LINK_QUEUE_MAX (64u << 20)

/* Largest data of one record: block data (PV_MAX_IO) or a protobuf body
 * (PV_MAX_BODY), whichever is larger. */
#define LINK_DATA_MAX (PV_MAX_BODY > PV_MAX_IO ? PV_MAX_BODY : PV_MAX_IO)

/* Largest frame a peervol socket takes from the network (ZMQ_MAXMSGSIZE,
 * wire_socket_limit): a record's data (LINK_DATA_MAX: block data or a
 * body), a BATCH payload (BATCH_BYTES_MAX), a header (PV_MAX_HEADER) or a
 * routing id (PV_MAX_IDENTITY), whichever is largest. */
#define PV_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define PV_MAX_FRAME                                                                               \
	PV_MAX2(PV_MAX2(LINK_DATA_MAX, BATCH_BYTES_MAX), PV_MAX2(PV_MAX_HEADER, PV_MAX_IDENTITY))

/* Records with more data than this are read straight into a message of
 * their own, allocated once the header is in: before that, link_admit must
 * accept the header. Smaller records are read through the link's buffer. */
#define LINK_ADMIT_MIN (64u << 10)

/* Link memory: what records with more than LINK_ADMIT_MIN bytes of data
 * hold while they are partly received, over all links of the process
 * (peerd: --link-memory). The default of peerd; fused sets none. */
#define LINK_MEM_DEFAULT (256u << 20)

/* Whether a record of data_len bytes with this header may take memory for
 * its data (only asked for data over LINK_ADMIT_MIN; 0 below it): the
 * header decodes as a pv.Header (wire_header_decode: version, op, lengths)
 * and its data is what the op carries: READ and WRITE exactly the header's
 * length (at most PV_MAX_IO), BATCH at most BATCH_BYTES_MAX, TRIM and FLUSH
 * none, any other op a body of at most PV_MAX_BODY. Returns 0, or -1 with
 * the reason in err. Pure: any byte string is safe. */
int link_admit(const void *hdr, size_t hdr_len, size_t data_len, char *err, size_t errlen);

/* Parses the record at the start of buf: returns 1 with r filled and *used
 * its size in bytes, 0 if buf holds only part of it, or -1 (reason in err)
 * if it is malformed: header of 0 or more than PV_MAX_HEADER bytes, data
 * over LINK_DATA_MAX, or data over LINK_ADMIT_MIN with a header that
 * link_admit refuses (checked as soon as the header is in, before the
 * data). Pure: any byte string is safe. */
int link_parse(const void *buf, size_t len, struct batch_record *r, size_t *used, char *err,
	       size_t errlen);

/* TCP options of every link socket: no Nagle delay; keepalives, so that a
 * link to a host that vanished is found dead within about 25 s. */
void link_tune(int fd);

/* Starts a non-blocking connect to "tcp://IPv4:PORT" (not 0.0.0.0) on a
 * tuned socket: the fd (poll it for writing, then read SO_ERROR), or -1
 * with errno (EINVAL: not such an address). */
int link_connect(const char *address);

struct link;

/* Wraps a connected (or connecting) non-blocking stream socket; the link
 * owns fd from here on (closed by link_destroy, also on failure here).
 * NULL if out of memory. */
struct link *link_new(int fd);

/* Closes the socket and drops what is queued; accepts NULL, clears *lp. */
void link_destroy(struct link **lp);

int link_fd(const struct link *l);

/* Queues one message: header bytes (copied) and optional data (moved:
 * closed here in every case). Nothing is written until link_flush. Returns
 * 0, or -1 with errno (ENOBUFS: LINK_QUEUE_MAX reached; ENOMEM). */
int link_queue(struct link *l, const void *hdr, size_t hdr_len, zmq_msg_t *data);

/* link_queue without the LINK_QUEUE_MAX bound, for senders that bound
 * what they queue themselves: answers to requests already taken (which
 * must not be lost; the server stops reading requests while much is
 * queued), and fused's requests (the kernel bounds how many are in
 * flight, as ZeroMQ's unlimited queue did before: a bounded queue refused
 * its pings behind 64 MiB of writes to a slow server, which then looked
 * dead). */
int link_queue_unbounded(struct link *l, const void *hdr, size_t hdr_len, zmq_msg_t *data);

/* Writes what is queued as far as the socket takes it. Returns 0 when all
 * is written, 1 when some is left (poll for POLLOUT and call again), -1 on
 * a socket error (errno; the link is dead). */
int link_flush(struct link *l);

/* Bytes queued and not yet written. */
size_t link_pending(const struct link *l);

/* Reads what the socket has (a bounded amount per call, so one busy link
 * cannot starve the loop) and calls fn for every complete record, in
 * order: fn gets the header bytes and the data as a message of its own
 * (NULL if none), which it may keep (zmq_msg_move). Returns 0 while the
 * link is usable, -1 when it is not: the peer closed it (err says so), a
 * socket error, or a malformed record (err says which; records before it
 * were delivered). fn must not destroy the link. */
typedef void (*link_record_fn)(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data);
int link_read(struct link *l, link_record_fn fn, void *arg, char *err, size_t errlen);

/* Whether GnuTLS holds decrypted input of this link that link_read has
 * not taken: only while the link waits for link memory (link_read takes
 * it all otherwise), and then polling the socket does not show it: the
 * owner calls link_read once link_input_wanted says 1 again. */
int link_buffered(const struct link *l);

/* Authentication (linkauth.h, docs/security.md). In a group with keys a
 * link runs the handshake before any record, then TLS if either side asks
 * for encryption; without keys none of this is called and the link is as
 * above. While link_handshaking, link_flush writes nothing and link_read
 * refuses: call link_handshake when link_handshake_events says.
 *
 * The connector (after its TCP connect completed) presents id (its key
 * id: a member public key, or a client's public key) with the link key;
 * encrypt: it requires TLS. */
void link_auth_connect(struct link *l, const uint8_t id[PV_KEY_BYTES],
		       const uint8_t key[PV_KEY_BYTES], int encrypt);
/* The acceptor of a connection; encrypt: it requires TLS. */
void link_auth_accept(struct link *l, int encrypt);
/* The acceptor's key lookup: the link key of id, 0; or -1 with the reason
 * in why (sent to the connector, then the link fails). */
typedef int (*link_lookup_fn)(void *arg, const uint8_t id[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES],
			      char *why, size_t whylen);
/* Runs the handshake as far as the socket allows (lookup: acceptors only).
 * 0 done (records may flow), 1 not yet (poll for link_handshake_events),
 * -1 failed (err says why; close the link). */
int link_handshake(struct link *l, link_lookup_fn lookup, void *arg, char *err, size_t errlen);
int link_handshaking(const struct link *l);
/* ZMQ_POLLIN or ZMQ_POLLOUT: what the handshake waits for. */
short link_handshake_events(const struct link *l);
/* When the handshake began (pv_now_ms), 0 if there was none. */
uint64_t link_handshake_started(const struct link *l);
/* Whether the acceptor refused this connector (the handshake failed with
 * its reason: a wrong or revoked key), as opposed to a network failure. */
int link_refused(const struct link *l);
/* Whether the link runs TLS. */
int link_encrypted(const struct link *l);
/* The connector's key id (acceptor, after HELLO was read). */
const uint8_t *link_peer_id(const struct link *l);

/* Counters: records sent and received; bytes received. */
uint64_t link_sent(const struct link *l);
uint64_t link_received(const struct link *l);
uint64_t link_bytes_in(const struct link *l);

/* Sets the bound on link memory of the process (0: none, the default).
 * A record that would pass it waits, its link not read (link_input_wanted
 * says 0), until others complete or their links close: the memory held is
 * always that of records whose senders are still sending, which the event
 * loop keeps reading, so waiting cannot deadlock; a link that waits too
 * long is the owner's to close (peerd closes any link stalled mid-record).
 * Call before links are read. */
void link_mem_limit(size_t bytes);

/* Link memory held now, by all links of the process; by this link. */
size_t link_mem_held(void);
size_t link_mem(const struct link *l);

/* Whether part of a record has been received and not yet delivered. */
int link_partial(const struct link *l);

/* Whether the link waits for link memory (a record's header is in, the
 * memory for its data is not free). */
int link_waiting(const struct link *l);

/* Whether to poll the link for input: 0 while it waits for memory that is
 * still taken (link_read would read nothing), else 1. */
int link_input_wanted(const struct link *l);

/* Gives freed heap memory back to the system if a link holding link memory
 * was destroyed since the last call (pv_tune_malloc keeps up to 256 MiB
 * otherwise, for IO to reuse). Returns 1 if it trimmed. Call from time to
 * time (peerd: every second), never on the data path. */
int link_mem_trim(void);

#endif
