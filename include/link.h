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

#include "batch.h"
#include "wire.h"

/* Bytes a link may hold queued for a peer that does not read; past it
 * link_queue refuses (the sender fails the request as unreachable). */
#define LINK_QUEUE_MAX (64u << 20)

/* Largest data of one record: block data (PV_MAX_IO) or a protobuf body
 * (PV_MAX_BODY), whichever is larger. */
#define LINK_DATA_MAX (PV_MAX_BODY > PV_MAX_IO ? PV_MAX_BODY : PV_MAX_IO)

/* Parses the record at the start of buf: returns 1 with r filled and *used
 * its size in bytes, 0 if buf holds only part of it, or -1 (reason in err)
 * if it is malformed: header of 0 or more than PV_MAX_HEADER bytes, data
 * over LINK_DATA_MAX. Pure: any byte string is safe. */
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

/* Counters: records sent and received. */
uint64_t link_sent(const struct link *l);
uint64_t link_received(const struct link *l);

#endif
