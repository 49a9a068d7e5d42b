/* fuzz_link.c: libFuzzer target for the peer link's stream decoder
 * (link.h), which a server runs on every byte another server sends it.
 *
 * The input is a stream. link_parse walks it record by record: every
 * answer is within the input and as its length fields declare; a record
 * cut anywhere asks for more; a refusal gives a reason; a record with
 * more than LINK_ADMIT_MIN bytes of data is refused, as soon as its header
 * is in, exactly when link_admit refuses that header. The same bytes
 * then go through a socketpair into link_read in pieces of varying size:
 * it delivers exactly the records link_parse found, byte for byte, in
 * order, and fails (with a reason) exactly when link_parse found a
 * malformed record; closing the other end ends the link. Finally the
 * records found are queued on a link of their own (link_queue,
 * link_flush): what it writes is the input up to the end of the last
 * complete record. No link memory is held once the links are gone. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_link: %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* What link_parse found, and what link_read delivered so far. */
struct found {
	const uint8_t *in;
	struct batch_record *rec;
	size_t n;   /* complete records */
	size_t end; /* where the last complete one ends */
	int bad;    /* a malformed record follows them */
	size_t got; /* delivered by link_read */
};

static void on_record(void *arg, const void *hdr, size_t hdr_len, zmq_msg_t *data)
{
	struct found *f = arg;
	const struct batch_record *r;

	REQUIRE(f->got < f->n);
	r = &f->rec[f->got++];
	REQUIRE(hdr_len == r->hdr_len && memcmp(hdr, r->hdr, hdr_len) == 0);
	REQUIRE((data == NULL) == (r->data == NULL));
	if (data) {
		REQUIRE(zmq_msg_size(data) == r->data_len);
		REQUIRE(r->data_len == 0 || memcmp(zmq_msg_data(data), r->data, r->data_len) == 0);
	}
}

static void nonblocking_pair(int fds[2])
{
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
	for (int i = 0; i < 2; i++)
		REQUIRE(fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) == 0);
}

/* Whether link_admit takes the header of the record at p (its lengths
 * and header in the input). */
static int admitted(const uint8_t *p)
{
	char err[256];
	uint32_t hl = le32(p), dl = le32(p + 4);
	int rc;

	err[0] = 0;
	rc = link_admit(p + 8, hl, dl == BATCH_NO_DATA ? 0 : dl, err, sizeof(err));
	REQUIRE(rc == 0 || (rc == -1 && err[0] != 0));
	return rc == 0;
}

/* (a) link_parse over the stream. */
static void parse_all(const uint8_t *in, size_t size, struct found *f)
{
	size_t off = 0;
	char err[256];

	while (off < size) {
		struct batch_record r, again;
		size_t used = 0, used2 = 0, left = size - off;
		int rc;

		err[0] = 0;
		rc = link_parse(in + off, left, &r, &used, err, sizeof(err));
		if (rc < 0) {
			uint32_t hl, dl;

			REQUIRE(err[0] != 0); /* refused with a reason */
			REQUIRE(left >= 8);
			hl = le32(in + off);
			dl = le32(in + off + 4);
			REQUIRE(hl == 0 || hl > PV_MAX_HEADER ||
				(dl != BATCH_NO_DATA && dl > LINK_DATA_MAX) ||
				(dl != BATCH_NO_DATA && dl > LINK_ADMIT_MIN &&
				 left >= 8 + (size_t)hl && !admitted(in + off)));
			f->bad = 1;
			break;
		}
		if (rc == 0) { /* a record begun: fine as far as it goes */
			if (left >= 8) {
				uint32_t hl = le32(in + off), dl = le32(in + off + 4);

				REQUIRE(hl >= 1 && hl <= PV_MAX_HEADER);
				REQUIRE(dl == BATCH_NO_DATA || dl <= LINK_DATA_MAX);
				REQUIRE(8 + (size_t)hl + (dl == BATCH_NO_DATA ? 0 : dl) > left);
				REQUIRE(left < 8 + (size_t)hl || admitted(in + off));
			}
			break;
		}
		REQUIRE(rc == 1);
		REQUIRE(used > 0 && used <= left);
		REQUIRE(r.hdr == in + off + 8);
		REQUIRE(r.hdr_len == le32(in + off));
		REQUIRE(r.hdr_len >= 1 && r.hdr_len <= PV_MAX_HEADER);
		if (le32(in + off + 4) == BATCH_NO_DATA) {
			REQUIRE(r.data == NULL && r.data_len == 0);
			REQUIRE(used == 8 + r.hdr_len);
		} else {
			REQUIRE(r.data == r.hdr + r.hdr_len);
			REQUIRE(r.data_len == le32(in + off + 4) && r.data_len <= LINK_DATA_MAX);
			REQUIRE(used == 8 + r.hdr_len + r.data_len);
		}
		REQUIRE(r.hdr + r.hdr_len <= in + size);
		REQUIRE(r.data_len <= LINK_ADMIT_MIN || admitted(in + off));
		REQUIRE(!r.data || r.data + r.data_len <= in + size);
		/* one byte less is not enough; exactly the record is */
		REQUIRE(link_parse(in + off, used - 1, &again, &used2, err, sizeof(err)) == 0);
		REQUIRE(link_parse(in + off, used, &again, &used2, err, sizeof(err)) == 1);
		REQUIRE(used2 == used && memcmp(&again, &r, sizeof(r)) == 0);
		f->rec[f->n++] = r;
		off += used;
	}
	f->end = off;
}

/* (b) the same bytes through a socket into link_read, in pieces. */
static void read_all(const uint8_t *in, size_t size, struct found *f)
{
	static const size_t pieces[] = {1, 7, 3, 64, 2, 500, 9, 4096, 1, 30000};
	const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
	size_t off = 0, k = size ? in[0] : 0;
	struct link *l;
	char err[256];
	int fds[2], rc = 0;

	nonblocking_pair(fds);
	l = link_new(fds[1]);
	REQUIRE(l != NULL);
	while (off < size && rc == 0) {
		size_t n = pieces[k++ % npieces];
		ssize_t w;

		if (n > size - off)
			n = size - off;
		w = write(fds[0], in + off, n);
		REQUIRE(w == (ssize_t)n); /* the input fits the socket's buffer */
		off += n;
		err[0] = 0;
		rc = link_read(l, on_record, f, err, sizeof(err));
		if (rc < 0) { /* only at a malformed record, once it is there */
			REQUIRE(err[0] != 0);
			REQUIRE(f->bad && off >= f->end + 8);
		}
	}
	if (rc == 0) {
		err[0] = 0;
		rc = link_read(l, on_record, f, err, sizeof(err));
		REQUIRE(rc == (f->bad ? -1 : 0));
		REQUIRE(rc == 0 || err[0] != 0);
	}
	REQUIRE(f->got == f->n); /* all before a malformed one, nothing after */
	if (rc == 0) {		 /* the other side closes: the end */
		close(fds[0]);
		fds[0] = -1;
		err[0] = 0;
		REQUIRE(link_read(l, on_record, f, err, sizeof(err)) == -1);
		REQUIRE(err[0] != 0);
		REQUIRE(f->got == f->n);
	}
	REQUIRE(link_received(l) == f->n);
	link_destroy(&l);
	REQUIRE(l == NULL);
	REQUIRE(link_mem_held() == 0);
	if (fds[0] >= 0)
		close(fds[0]);
}

/* (c) the records found, queued on a link: the same bytes come out. */
static void requeue_all(const uint8_t *in, struct found *f)
{
	struct link *l;
	uint8_t *out = malloc(f->end + 1);
	size_t got = 0;
	int fds[2];

	REQUIRE(out != NULL);
	nonblocking_pair(fds);
	l = link_new(fds[0]);
	REQUIRE(l != NULL);
	for (size_t i = 0; i < f->n; i++) {
		const struct batch_record *r = &f->rec[i];
		zmq_msg_t m;

		if (r->data) {
			REQUIRE(zmq_msg_init_size(&m, r->data_len) == 0);
			if (r->data_len)
				memcpy(zmq_msg_data(&m), r->data, r->data_len);
		}
		REQUIRE(link_queue(l, r->hdr, r->hdr_len, r->data ? &m : NULL) == 0);
	}
	REQUIRE(link_pending(l) == f->end);
	REQUIRE(link_sent(l) == f->n);
	for (;;) {
		int rc = link_flush(l);
		ssize_t n;

		REQUIRE(rc >= 0);
		while ((n = read(fds[1], out + got, f->end - got + 1)) > 0) {
			got += (size_t)n;
			REQUIRE(got <= f->end);
		}
		REQUIRE(n < 0 && errno == EAGAIN);
		if (rc == 0)
			break;
	}
	REQUIRE(link_pending(l) == 0);
	REQUIRE(got == f->end && memcmp(out, in, f->end) == 0);
	link_destroy(&l);
	close(fds[1]);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct found f;
	uint8_t *copy;

	/* a private copy of exactly size bytes: ASan sees any overread */
	copy = malloc(size ? size : 1);
	REQUIRE(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	memset(&f, 0, sizeof(f));
	f.in = copy;
	f.rec = malloc((size / 9 + 1) * sizeof(*f.rec));
	REQUIRE(f.rec != NULL);
	parse_all(copy, size, &f);
	read_all(copy, size, &f);
	requeue_all(copy, &f);
	free(f.rec);
	free(copy);
	return 0;
}
