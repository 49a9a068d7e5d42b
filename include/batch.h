/* batch.h: several small messages to one destination travel as one
 * (protocol 1.1, op PV_OP_BATCH).
 *
 * Why: on a loaded server every message costs a wake-up of ZeroMQ's IO
 * thread and of the receiving reactor, and ZeroMQ moves small messages in
 * 8 KiB socket writes. Requests arrive in bursts (the loop device queues
 * many), so the messages one round of an event loop sends to one
 * destination (a client, a peer) go as one BATCH message: one wake-up per
 * burst instead of one per request. docs/performance.md has the numbers.
 *
 * A BATCH message is [header op=BATCH, length=records][payload], the
 * payload a sequence of records, each
 *
 *   u32 LE header length | u32 LE data length (0xffffffff: no data frame)
 *   | header bytes (a pv.Header) | data bytes
 *
 * and every record is handled exactly as if it had arrived as its own
 * message [header][data?]. A BATCH is never nested. A sender batches only
 * to a receiver known to speak 1.1 (a server: a request of 1.1 came from
 * it, or a reply of 1.1 came back).
 *
 * The cork collects what one round sends and puts it on the sockets at
 * flush. Single-threaded: one cork per event loop. */
#ifndef PV_BATCH_H
#define PV_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "wire.h"

#define BATCH_PART_MAX	  (64u << 10) /* a larger data frame is sent alone */
#define BATCH_BYTES_MAX	  (1u << 20)  /* payload bytes of one BATCH */
#define BATCH_RECORDS_MAX 1024	      /* records in one BATCH */
#define BATCH_NO_DATA	  0xffffffffu
/* Senders batch READ/WRITE requests (and their replies) under this many
 * bytes only: a larger one is worth a message of its own, sent at once so
 * that the receiver starts on it while the sender prepares the next (a
 * round of eight 1 MiB requests batched waits for all eight before the
 * first goes: 1 MiB sequential throughput fell by a third). */
#define BATCH_IO_MAX (32u << 10)

/* Whether a peer that sent (or answered with) a header of this version
 * understands BATCH. */
static inline int batch_supported(uint32_t version)
{
	return (version >> 16) == PV_PROTO_MAJOR && (version & 0xffff) >= 1;
}

/* One record of a BATCH payload; pointers into the payload. */
struct batch_record {
	const uint8_t *hdr;
	size_t hdr_len;
	const uint8_t *data; /* NULL if the record has no data frame */
	size_t data_len;
};

/* Checks a whole BATCH payload before anything in it is acted on: every
 * record framed within len, headers of 1..PV_MAX_HEADER bytes, data at most
 * PV_MAX_IO, at most BATCH_RECORDS_MAX records, none empty. Returns the
 * number of records (>= 1), or -1 with the reason in err. Pure: any byte
 * string is safe. */
int batch_check(const void *buf, size_t len, char *err, size_t errlen);

/* Iterates a payload batch_check accepted: *off starts at 0. Returns 1 and
 * fills r, or 0 at the end (or at anything malformed). */
int batch_next(const void *buf, size_t len, size_t *off, struct batch_record *r);

/* Appends one record to buf (which has room: batch_record_size bytes). */
size_t batch_put(uint8_t *buf, const void *hdr, size_t hdr_len, const void *data, size_t data_len,
		 int has_data);

static inline size_t batch_record_size(size_t hdr_len, size_t data_len)
{
	return 8 + hdr_len + data_len;
}

/* Runs fn on every record of a BATCH payload, in order, after checking the
 * whole payload (batch_check): fn gets the record's header bytes and its
 * data as a message of its own (NULL if none) that shares the payload's
 * memory (no copy); fn may keep it (zmq_msg_move, zmq_msg_copy) past the
 * call. Returns the number of records; -1 (reason in err) if the payload
 * is malformed: fn ran for none; -2 if memory ran out: fn ran for the
 * records before (the others are lost, as a dropped message is). */
typedef void (*batch_record_fn)(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data);
int batch_each(zmq_msg_t *payload, batch_record_fn fn, void *arg, char *err, size_t errlen);

struct batch_cork;

/* A cork for one event loop; NULL if out of memory. */
struct batch_cork *batch_cork_new(void);

/* Sends what is queued, then frees. */
void batch_cork_free(struct batch_cork *k);

/* Sends h (+ payload, moved and closed as by wire_send) to (sock, ident).
 * With may_batch and a payload of at most BATCH_PART_MAX it is queued until
 * batch_cork_flush; otherwise what is queued for that destination goes
 * first, then this message, now (order per destination is kept). Returns 0,
 * or -1 with errno (a queued message that later fails to send is counted in
 * batch_cork_dropped). */
int batch_cork_send(struct batch_cork *k, void *sock, const void *ident, size_t ident_len,
		    const Pv__Header *h, zmq_msg_t *payload, int may_batch);

/* A queued message whose send failed (the socket refused it: peer not
 * connected, queue full). The cork keeps the last BATCH_DROPS_MAX of them
 * until taken, so the sender can fail those requests at once instead of
 * waiting for answers that cannot come; older ones are only counted (their
 * requests time out). */
#define BATCH_DROPS_MAX 1024
struct batch_drop {
	void *sock;
	uint64_t req_id;
	uint32_t hops;
};

/* Takes the oldest refused message kept: 1 and fills d, or 0. Call after a
 * flush, outside any handler (a drop can also happen inside a send). */
int batch_cork_next_drop(struct batch_cork *k, struct batch_drop *d);

/* Sends everything queued: one message per destination, a BATCH when it
 * has more than one. Call before the event loop waits. */
void batch_cork_flush(struct batch_cork *k);

/* Sends what is queued for sock (all identities); call before closing it. */
void batch_cork_flush_socket(struct batch_cork *k, void *sock);

/* Counters: BATCH messages sent, records in them, queued messages lost to a
 * failed send. */
uint64_t batch_cork_batches(const struct batch_cork *k);
uint64_t batch_cork_records(const struct batch_cork *k);
uint64_t batch_cork_dropped(const struct batch_cork *k);

#endif
