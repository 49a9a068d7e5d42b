/* pvraw.c: a raw ZeroMQ client for the end-to-end tests. It sends one kind
 * of message to a peerd (valid or deliberately broken) over a DEALER socket
 * and prints the status name of each reply, one per line, so that a test
 * script can assert what the server answered. Single-threaded; test tool
 * only, never installed.
 *
 *   pvraw [-t MS] [-n COUNT] [-s SRC_IP] [-c CLIENT_ID] ENDPOINT CASE [ARGS]
 *
 * The shm-* cases speak the shared memory protocol (PV_OP_SHM_ATTACH,
 * PV_F_SHM) as a hostile or a well-behaved client on the server's host;
 * shm-memfd makes a memfd of its own, as fused does, to reach the checks
 * behind the path check and the range checks of a mapped region.
 *
 * Exit: 0 when every reply arrived, 3 when one did not within the timeout,
 * 2 on usage errors, 1 on local errors. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "wire.h"

static const char usage_text[] =
	"usage: pvraw [-t MS] [-n COUNT] [-s SRC_IP] [-c CLIENT_ID] [-V VOLUME_ID] [-q] ENDPOINT CASE [ARGS]\n"
	"\n"
	"Sends COUNT (default 1) messages of one kind to a peerd and prints the\n"
	"status name of each reply on stdout (NONE if the reply had no header).\n"
	"\n"
	"cases (broken messages):\n"
	"  garbage          random bytes (1..300) as the header frame\n"
	"  garbage-multi    three frames of random bytes\n"
	"  empty            an empty header frame\n"
	"  truncated        a valid READ header cut short\n"
	"  unknown-op       a valid header with op 999\n"
	"  version          a READ header with protocol major version 2\n"
	"  overlen VOL      a READ header with length PV_MAX_IO + 1\n"
	"  bigheader        a header frame larger than PV_MAX_HEADER\n"
	"  write-nodata VOL a WRITE header without its data frame\n"
	"cases (shared memory; client id from -c, else random):\n"
	"  shm-attach PATH [SIZE]   SHM_ATTACH naming PATH (size default 1 MiB,\n"
	"                           random token)\n"
	"  shm-attach-nobody        SHM_ATTACH without its body frame\n"
	"  shm-write-unmapped VOL   64 KiB WRITE with PV_F_SHM, no data frame\n"
	"  shm-write-data VOL       4 KiB WRITE with PV_F_SHM and a data frame\n"
	"  shm-memfd VOL VARIANT [OFFSET]  makes a memfd of its own and offers it;\n"
	"                           VARIANT unsealed, badtoken, badsize, othername:\n"
	"                           prints the attach's status; good: then a round\n"
	"                           trip at OFFSET of VOL (default 0) and range\n"
	"                           checks, one line each (see shm_good); map:\n"
	"                           MAP_VOLUME and mapped READs at OFFSET (shm_map)\n"
	"  map-volume VOL           MAP_VOLUME (answered OK only after an attach)\n"
	"  read-map VOL OFFSET LENGTH DEV INO  READ with PV_F_MAP naming DEV/INO;\n"
	"                           MAPPED when answered without data\n"
	"cases (BATCH, protocol 1.1; one status line per record answered):\n"
	"  batch VOL OFFSET FILE    one BATCH: WRITE of FILE (<= 64 KiB) at OFFSET and\n"
	"                           a 4 KiB READ at OFFSET + 1 MiB\n"
	"  batch-bad VOL OFFSET FILE  the same WRITE record, then a record cut short\n"
	"  batch-nested VOL         a BATCH whose record is a BATCH\n"
	"  burst VOL N [MINOR]      N 4 KiB READs at once, headers of protocol\n"
	"                           1.MINOR (default this build's); prints each\n"
	"                           status, and 'BATCH k' for every BATCH reply\n"
	"cases (valid requests):\n"
	"  read VOL OFFSET LENGTH [OUTFILE]   READ; the data goes to OUTFILE\n"
	"  write VOL OFFSET FILE              WRITE of FILE's bytes\n"
	"  flush VOL                          FLUSH\n"
	"  trim VOL OFFSET LENGTH             TRIM\n"
	"\n"
	"options:\n"
	"  -t MS      reply timeout in milliseconds (default 5000)\n"
	"  -n COUNT   send the message COUNT times (default 1), one reply each\n"
	"  -s SRC_IP  connect from this local address (e.g. 127.0.0.9)\n"
	"  -c ID      client id of the shm-* cases (default random; 0: none)\n"
	"  -V ID      volume id (Header.volume_id) in every request naming a volume\n"
	"  -S ID      snapshot id (Header.snapshot_id) in every request naming a volume\n"
	"  -q         print the reply's message text on stderr too\n";

struct opts {
	int timeout_ms;
	long count;
	const char *src;
	int verbose;
	uint64_t client_id; /* for the shm-* cases */
	int client_id_set;  /* -c given (0 too); else a random one */
	uint64_t volume_id; /* -V: Header.volume_id of every data request */
	uint64_t snapshot_id; /* -S: Header.snapshot_id of every data request */
};

static uint64_t next_req_id = 1;
static int replies_wanted = 1; /* status lines a case waits for */
static int show_batches;       /* print "BATCH k" for a BATCH reply (burst) */
static struct opts *opt;    /* the options, for cases that wait for replies */
static int keep_data;	    /* recv_reply keeps the reply's data frame ... */
static zmq_msg_t last_data; /* ... here (empty if it had none) */

static void die(const char *what)
{
	fprintf(stderr, "pvraw: %s: %s\n", what, zmq_strerror(errno));
	exit(1);
}

static void send_frame(void *sock, const void *buf, size_t len, int more)
{
	if (zmq_send(sock, buf, len, more ? ZMQ_SNDMORE : 0) < 0)
		die("zmq_send");
}

static size_t pack_header(const Pv__Header *h, uint8_t *buf, size_t cap)
{
	Pv__Header with_id;
	size_t n;

	if (opt && (opt->volume_id || opt->snapshot_id) && h->volume && h->volume[0] &&
	    h->op != PV_OP_BATCH) {
		/* -V, -S: every request naming a volume names its id (and the
		 * snapshot) too */
		with_id = *h;
		with_id.volume_id = opt->volume_id;
		with_id.snapshot_id = opt->snapshot_id;
		h = &with_id;
	}
	n = pv__header__get_packed_size(h);

	if (n > cap) {
		fprintf(stderr, "pvraw: header of %zu bytes too large\n", n);
		exit(1);
	}
	return pv__header__pack(h, buf);
}

static void fill_random(uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(rand() >> 7);
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		fprintf(stderr, "pvraw: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			if (!buf)
				die("realloc");
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* Waits for one reply: prints its status name; with a data frame and
 * outfile, writes the data there. Returns 0, or 3 on timeout. */
/* Prints the status of every record of a BATCH of replies; returns how
 * many. A malformed BATCH prints MALFORMED_BATCH. */
static int print_batch(zmq_msg_t *msg, const struct opts *o)
{
	const uint8_t *b = zmq_msg_data(msg);
	size_t len = zmq_msg_size(msg), off = 0;
	struct batch_record r;
	char err[256];
	int n = 0;

	if (batch_check(b, len, err, sizeof(err)) < 0) {
		printf("MALFORMED_BATCH\n");
		fprintf(stderr, "pvraw: malformed BATCH reply: %s\n", err);
		return 1;
	}
	while (batch_next(b, len, &off, &r)) {
		Pv__Header *h = pv__header__unpack(NULL, r.hdr_len, r.hdr);

		printf("%s\n", h ? wire_status_name(h->status) : "UNDECODABLE");
		if (h && o->verbose)
			fprintf(stderr, "pvraw: batched reply op %s req %llu status %s: %s\n",
				wire_op_name(h->op), (unsigned long long)h->req_id,
				wire_status_name(h->status), h->message ? h->message : "");
		if (h)
			pv__header__free_unpacked(h, NULL);
		n++;
	}
	return n;
}

static int recv_reply(void *sock, const struct opts *o, const char *outfile)
{
	zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
	int rc = zmq_poll(&item, 1, o->timeout_ms);
	int more, frame = 0, is_batch = 0, printed = 0;
	size_t moresz = sizeof(more);
	const char *status = "NONE";
	char statusbuf[32];

	if (rc < 0)
		die("zmq_poll");
	if (rc == 0) {
		printf("TIMEOUT\n");
		fflush(stdout);
		return 3;
	}
	do {
		zmq_msg_t msg;

		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, sock, 0) < 0)
			die("zmq_msg_recv");
		if (frame == 0) {
			/* Decoded without wire_header_decode's request checks: a
			 * reply to an undecodable request carries op 0. */
			Pv__Header *h = pv__header__unpack(NULL, zmq_msg_size(&msg),
							   zmq_msg_data(&msg));

			if (!h || h->version >> 16 != PV_PROTO_MAJOR) {
				snprintf(statusbuf, sizeof(statusbuf), "UNDECODABLE");
				status = statusbuf;
				fprintf(stderr, "pvraw: reply header of %zu bytes %s\n",
					zmq_msg_size(&msg),
					h ? "has another major version" : "does not decode");
			} else if (h->op == PV_OP_BATCH && h->status == PV_ST_OK) {
				is_batch = 1; /* the records' statuses follow */
			} else { /* (a refused BATCH is answered as one message) */
				status = wire_status_name(h->status);
				if (h->status == PV_ST_OK && (h->flags & PV_F_MAP))
					status = "MAPPED"; /* no data: in the data file */
				if (strcmp(status, "UNKNOWN") == 0) {
					snprintf(statusbuf, sizeof(statusbuf), "STATUS_%d", h->status);
					status = statusbuf;
				}
				if (o->verbose)
					fprintf(stderr, "pvraw: reply op %s req %llu status %s: %s\n",
						wire_op_name(h->op), (unsigned long long)h->req_id,
						status, h->message ? h->message : "");
			}
			if (h)
				pv__header__free_unpacked(h, NULL);
		} else if (frame == 1 && is_batch) {
			printed = print_batch(&msg, o);
			if (show_batches)
				printf("BATCH %d\n", printed);
		} else if (frame == 1 && outfile) {
			FILE *f = fopen(outfile, "wb");

			if (!f || fwrite(zmq_msg_data(&msg), 1, zmq_msg_size(&msg), f) !=
					  zmq_msg_size(&msg) ||
			    fclose(f) != 0) {
				fprintf(stderr, "pvraw: %s: %s\n", outfile, strerror(errno));
				exit(1);
			}
		}
		if (o->verbose && frame > 0)
			fprintf(stderr, "pvraw: reply frame %d: %zu bytes\n", frame,
				zmq_msg_size(&msg));
		if (frame == 1 && keep_data)
			zmq_msg_move(&last_data, &msg);
		zmq_msg_close(&msg);
		frame++;
		if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &moresz) < 0)
			die("zmq_getsockopt");
	} while (more);
	if (!is_batch) {
		printf("%s\n", status);
		printed = 1;
	}
	fflush(stdout);
	replies_wanted -= printed;
	return 0;
}

static uint64_t parse_u64(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || !*s) {
		fprintf(stderr, "pvraw: '%s' is not a number\n", s);
		exit(2);
	}
	return v;
}

static void need_args(int have, int want)
{
	if (have < want) {
		fputs(usage_text, stderr);
		exit(2);
	}
}

/* ---- shared memory ------------------------------------------------------ */

#define MEMFD_SIZE (4096u + (2u << 20)) /* shm-memfd: a head page and 2 MiB */
#define SHM_IO	   (64u << 10)		/* shm-memfd: bytes per request */

static uint64_t client_id(void)
{
	if (!opt->client_id_set) {
		/* random, never 0 (0 means "not a client" to peerd) */
		opt->client_id =
		    ((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 11) ^ (uint64_t)rand();
		opt->client_id |= 1ull << 63;
		opt->client_id_set = 1;
	}
	return opt->client_id;
}

/* Sends SHM_ATTACH with body {path, size, token}. */
static void send_attach(void *sock, const char *path, uint64_t size, const uint8_t *token)
{
	Pv__ShmAttach a = PV__SHM_ATTACH__INIT;
	uint8_t buf[PV_MAX_HEADER];
	uint8_t body[PV_MAX_HEADER];
	Pv__Header h;
	size_t n, bn;

	a.path = (char *)path;
	a.size = size;
	a.token.data = (uint8_t *)token;
	a.token.len = PV_SHM_TOKEN;
	if (pv__shm_attach__get_packed_size(&a) > sizeof(body)) {
		fprintf(stderr, "pvraw: SHM_ATTACH body too large\n");
		exit(2);
	}
	bn = pv__shm_attach__pack(&a, body);
	wire_header_init(&h);
	h.req_id = next_req_id++;
	h.op = PV_OP_SHM_ATTACH;
	h.client_id = client_id();
	n = pack_header(&h, buf, sizeof(buf));
	send_frame(sock, buf, n, 1);
	send_frame(sock, body, bn, 0);
}

/* Sends a request of this client without a data frame: with PV_F_SHM and
 * shm_off when shm is set, and the given hops. */
/* Sends h, a request of this client, with the next request id. */
static void send_request(void *sock, Pv__Header *h)
{
	uint8_t buf[PV_MAX_HEADER];

	h->req_id = next_req_id++;
	h->client_id = client_id();
	send_frame(sock, buf, pack_header(h, buf, sizeof(buf)), 0);
}

static void send_io(void *sock, uint32_t op, const char *vol, uint64_t off, uint32_t len, int shm,
		    uint64_t shm_off, uint32_t hops)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = op;
	h.volume = (char *)vol;
	h.offset = off;
	h.length = len;
	h.flags = shm ? PV_F_SHM : 0;
	h.shm_offset = shm_off;
	h.hops = hops;
	send_request(sock, &h);
}

static void print_same(const void *a, const void *b, size_t len)
{
	printf("%s\n", memcmp(a, b, len) == 0 ? "SAME" : "DIFFERENT");
	fflush(stdout);
}

/* shm-memfd VOL good [OFFSET], after the attach: one line per step, expected
 *   OK OK SAME OK SAME BAD_REQUEST BAD_REQUEST BAD_REQUEST BAD_REQUEST
 *   BAD_REQUEST OK SAME
 * (WRITE from our memory; READ by socket gives those bytes; READ into our
 * memory gives them; a range past the end, one over the token, one whose
 * offset wraps, a forwarded one (hops 1) and a FLUSH with PV_F_SHM are
 * refused; the same attach again is accepted; the token is intact). */
static int shm_good(void *sock, const char *vol, uint64_t off, uint8_t *base, const char *path,
		    const uint8_t *token)
{
	uint8_t *w = base + 4096, *r = base + 4096 + SHM_IO;
	int rc = 0;

	fill_random(w, SHM_IO);
	send_io(sock, PV_OP_WRITE, vol, off, SHM_IO, 1, 4096, 0);
	rc |= recv_reply(sock, opt, NULL);

	zmq_msg_close(&last_data);
	zmq_msg_init(&last_data);
	keep_data = 1;
	send_io(sock, PV_OP_READ, vol, off, SHM_IO, 0, 0, 0); /* by socket */
	rc |= recv_reply(sock, opt, NULL);
	keep_data = 0;
	if (zmq_msg_size(&last_data) == SHM_IO)
		print_same(zmq_msg_data(&last_data), w, SHM_IO);
	else
		printf("DIFFERENT\n");

	memset(r, 0, SHM_IO);
	send_io(sock, PV_OP_READ, vol, off, SHM_IO, 1, 4096 + SHM_IO, 0);
	rc |= recv_reply(sock, opt, NULL);
	print_same(r, w, SHM_IO);

	send_io(sock, PV_OP_WRITE, vol, off, SHM_IO, 1, MEMFD_SIZE - 4096, 0);
	rc |= recv_reply(sock, opt, NULL);
	send_io(sock, PV_OP_WRITE, vol, off, SHM_IO, 1, 0, 0);
	rc |= recv_reply(sock, opt, NULL);
	send_io(sock, PV_OP_READ, vol, off, SHM_IO, 1, UINT64_MAX - 4096, 0);
	rc |= recv_reply(sock, opt, NULL);
	send_io(sock, PV_OP_WRITE, vol, off, SHM_IO, 1, 4096, 1);
	rc |= recv_reply(sock, opt, NULL);
	send_io(sock, PV_OP_FLUSH, vol, 0, 0, 1, 4096, 0);
	rc |= recv_reply(sock, opt, NULL);

	send_attach(sock, path, MEMFD_SIZE, token);
	rc |= recv_reply(sock, opt, NULL);
	print_same(base, token, PV_SHM_TOKEN);
	return rc;
}

/* A READ of len bytes at off of vol with PV_F_MAP naming file dev/ino. */
static void send_read_mapped(void *sock, const char *vol, uint64_t off, uint32_t len,
			     uint64_t dev, uint64_t ino)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.volume = (char *)vol;
	h.offset = off;
	h.length = len;
	h.flags = PV_F_MAP;
	h.map_dev = dev;
	h.map_ino = ino;
	send_request(sock, &h);
}

static void send_map_volume(void *sock, const char *vol)
{
	Pv__Header h;

	wire_header_init(&h);
	h.op = PV_OP_MAP_VOLUME;
	h.volume = (char *)vol;
	send_request(sock, &h);
}

/* shm-memfd VOL map [OFFSET], after the attach: one line per step, expected
 *   OK SAME MAPPED OK SAME OK
 * (MAP_VOLUME answers a path that opens the file it names by dev and ino;
 * a 4 KiB READ at OFFSET, which the server wrote and holds in memory, with
 * PV_F_MAP naming that file is answered without data; the bytes at OFFSET
 * of our mapping are those a READ by socket gives; PV_F_MAP naming another
 * inode is answered with the data). */
static int shm_map(void *sock, const char *vol, uint64_t off)
{
	Pv__VolumeMap *m = NULL;
	struct stat st;
	int rc = 0, fd = -1;

	zmq_msg_close(&last_data);
	zmq_msg_init(&last_data);
	keep_data = 1;
	send_map_volume(sock, vol);
	rc |= recv_reply(sock, opt, NULL);
	keep_data = 0;
	m = pv__volume_map__unpack(NULL, zmq_msg_size(&last_data), zmq_msg_data(&last_data));
	if (m)
		fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (!m || fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_dev != m->dev ||
	    (uint64_t)st.st_ino != m->ino || (uint64_t)st.st_size != m->size) {
		printf("DIFFERENT\n");
		rc = 1;
	} else {
		printf("SAME\n");
	}
	if (m && fd >= 0) {
		uint8_t *map = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);

		send_read_mapped(sock, vol, off, 4096, m->dev, m->ino);
		rc |= recv_reply(sock, opt, NULL);
		zmq_msg_close(&last_data);
		zmq_msg_init(&last_data);
		keep_data = 1;
		send_io(sock, PV_OP_READ, vol, off, 4096, 0, 0, 0); /* by socket */
		rc |= recv_reply(sock, opt, NULL);
		keep_data = 0;
		if (map != MAP_FAILED && zmq_msg_size(&last_data) == 4096 && off + 4096 <= m->size)
			print_same(map + off, zmq_msg_data(&last_data), 4096);
		else
			printf("DIFFERENT\n");
		if (map != MAP_FAILED)
			munmap(map, m->size);
		send_read_mapped(sock, vol, off, 4096, m->dev, m->ino + 1);
		rc |= recv_reply(sock, opt, NULL);
	}
	if (fd >= 0)
		close(fd);
	if (m)
		pv__volume_map__free_unpacked(m, NULL);
	return rc;
}

/* shm-memfd VOL VARIANT [OFFSET]: a memfd named peervol-shm of MEMFD_SIZE bytes,
 * sealed against shrinking and growing, starting with a random token, as
 * fused makes it, offered by its /proc path; each VARIANT but good breaks
 * one thing peerd checks. Prints the attach's status (and for good, the
 * steps of shm_good). */
static int shm_memfd(void *sock, const char *vol, const char *variant, uint64_t off)
{
	int map = strcmp(variant, "map") == 0;
	int good = strcmp(variant, "good") == 0;
	int unsealed = strcmp(variant, "unsealed") == 0;
	int badtoken = strcmp(variant, "badtoken") == 0;
	int badsize = strcmp(variant, "badsize") == 0;
	int othername = strcmp(variant, "othername") == 0;
	uint8_t token[PV_SHM_TOKEN], *base;
	char path[64];
	int fd, rc;

	if (!good && !map && !unsealed && !badtoken && !badsize && !othername) {
		fprintf(stderr, "pvraw: shm-memfd: unknown variant '%s'\n", variant);
		exit(2);
	}
	fd = memfd_create(othername ? "other-shm" : "peervol-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, MEMFD_SIZE) < 0 ||
	    (!unsealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)) {
		fprintf(stderr, "pvraw: memfd: %s\n", strerror(errno));
		exit(1);
	}
	base = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		fprintf(stderr, "pvraw: mmap: %s\n", strerror(errno));
		exit(1);
	}
	fill_random(base, PV_SHM_TOKEN);
	memcpy(token, base, PV_SHM_TOKEN);
	if (badtoken)
		token[0] ^= 0xff;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), fd);
	send_attach(sock, path, MEMFD_SIZE + (badsize ? 4096 : 0), token);
	rc = recv_reply(sock, opt, NULL);
	if (good && rc == 0)
		rc = shm_good(sock, vol, off, base, path, token);
	if (map && rc == 0)
		rc = shm_map(sock, vol, off);
	munmap(base, MEMFD_SIZE);
	close(fd);
	return rc;
}

/* Sends one message of the given case. Returns the file to write read data
 * to, if any. */
static const char *send_case(void *sock, const char *kase, int argc, char **argv)
{
	uint8_t buf[PV_MAX_HEADER * 2];
	Pv__Header h;
	size_t n;

	wire_header_init(&h);
	h.req_id = next_req_id++;
	h.op = PV_OP_READ;
	h.length = 4096;

	if (strcmp(kase, "garbage") == 0) {
		n = 1 + (size_t)rand() % 300;
		fill_random(buf, n);
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "garbage-multi") == 0) {
		for (int i = 0; i < 3; i++) {
			n = 1 + (size_t)rand() % 300;
			fill_random(buf, n);
			send_frame(sock, buf, n, i < 2);
		}
	} else if (strcmp(kase, "empty") == 0) {
		send_frame(sock, "", 0, 0);
	} else if (strcmp(kase, "truncated") == 0) {
		h.volume = "truncated-header-volume-name";
		h.offset = 1ull << 40;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n / 2, 0);
	} else if (strcmp(kase, "unknown-op") == 0) {
		h.op = 999;
		h.volume = argc > 0 ? argv[0] : "v";
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "version") == 0) {
		h.version = (2u << 16) | 0;
		h.volume = argc > 0 ? argv[0] : "v";
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "overlen") == 0) {
		need_args(argc, 1);
		h.volume = argv[0];
		h.length = PV_MAX_IO + 1;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "bigheader") == 0) {
		static char big[PV_MAX_HEADER + 100];

		memset(big, 'x', sizeof(big) - 1);
		h.message = big;
		h.volume = "v";
		n = pv__header__get_packed_size(&h);
		uint8_t *p = malloc(n);
		if (!p)
			die("malloc");
		pv__header__pack(&h, p);
		send_frame(sock, p, n, 0);
		free(p);
	} else if (strcmp(kase, "write-nodata") == 0) {
		need_args(argc, 1);
		h.op = PV_OP_WRITE;
		h.volume = argv[0];
		h.length = 4096;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "shm-attach") == 0) {
		uint8_t token[PV_SHM_TOKEN];

		need_args(argc, 1);
		fill_random(token, sizeof(token));
		send_attach(sock, argv[0], argc > 1 ? parse_u64(argv[1]) : 1u << 20, token);
	} else if (strcmp(kase, "shm-attach-nobody") == 0) {
		h.op = PV_OP_SHM_ATTACH;
		h.length = 0;
		h.client_id = client_id();
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "shm-write-unmapped") == 0) {
		need_args(argc, 1);
		send_io(sock, PV_OP_WRITE, argv[0], 0, SHM_IO, 1, 4096, 0);
	} else if (strcmp(kase, "shm-write-data") == 0) {
		need_args(argc, 1);
		h.op = PV_OP_WRITE;
		h.volume = argv[0];
		h.flags = PV_F_SHM;
		h.shm_offset = 4096;
		h.client_id = client_id();
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 1);
		memset(buf, 0x5a, 4096);
		send_frame(sock, buf, 4096, 0);
	} else if (strcmp(kase, "batch") == 0 || strcmp(kase, "batch-bad") == 0) {
		static uint8_t payload[2 * PV_MAX_HEADER + (64u << 10) + 64];
		uint8_t hb[PV_MAX_HEADER];
		size_t len, hl, pl = 0;
		void *data;

		need_args(argc, 3);
		data = read_file(argv[2], &len);
		if (len > (64u << 10)) {
			fprintf(stderr, "pvraw: %s: over 64 KiB\n", argv[2]);
			exit(2);
		}
		h.op = PV_OP_WRITE;
		h.volume = argv[0];
		h.offset = parse_u64(argv[1]);
		h.length = (uint32_t)len;
		hl = pack_header(&h, hb, sizeof(hb));
		pl += batch_put(payload + pl, hb, hl, data, len, 1);
		free(data);
		h.op = PV_OP_READ;
		h.req_id = next_req_id++;
		h.offset += 1u << 20;
		h.length = 4096;
		hl = pack_header(&h, hb, sizeof(hb));
		pl += batch_put(payload + pl, hb, hl, NULL, 0, 0);
		if (strcmp(kase, "batch-bad") == 0)
			pl -= 3; /* the READ record is cut short: the whole BATCH is refused */
		else
			replies_wanted = 2;
		wire_header_init(&h);
		h.op = PV_OP_BATCH;
		h.req_id = next_req_id++;
		h.length = 2;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 1);
		send_frame(sock, payload, pl, 0);
	} else if (strcmp(kase, "burst") == 0) {
		long count;

		need_args(argc, 2);
		count = (long)parse_u64(argv[1]);
		if (count < 1 || count > 1000) {
			fprintf(stderr, "pvraw: burst: N must be 1..1000\n");
			exit(2);
		}
		if (argc > 2)
			h.version = (PV_PROTO_MAJOR << 16) | (uint32_t)parse_u64(argv[2]);
		h.volume = argv[0];
		for (long i = 0; i < count; i++) {
			h.req_id = next_req_id++;
			h.offset = (uint64_t)i * 4096;
			n = pack_header(&h, buf, sizeof(buf));
			send_frame(sock, buf, n, 0);
		}
		replies_wanted = (int)count;
		show_batches = 1;
	} else if (strcmp(kase, "batch-nested") == 0) {
		uint8_t payload[PV_MAX_HEADER + 8], hb[PV_MAX_HEADER];
		size_t hl, pl;

		need_args(argc, 1);
		h.op = PV_OP_BATCH;
		h.volume = argv[0];
		hl = pack_header(&h, hb, sizeof(hb));
		pl = batch_put(payload, hb, hl, NULL, 0, 0);
		h.req_id = next_req_id++;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 1);
		send_frame(sock, payload, pl, 0);
	} else if (strcmp(kase, "read") == 0) {
		need_args(argc, 3);
		h.volume = argv[0];
		h.offset = parse_u64(argv[1]);
		h.length = (uint32_t)parse_u64(argv[2]);
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
		return argc > 3 ? argv[3] : NULL;
	} else if (strcmp(kase, "write") == 0) {
		size_t len;
		void *data;

		need_args(argc, 3);
		data = read_file(argv[2], &len);
		h.op = PV_OP_WRITE;
		h.volume = argv[0];
		h.offset = parse_u64(argv[1]);
		h.length = (uint32_t)len;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 1);
		send_frame(sock, data, len, 0);
		free(data);
	} else if (strcmp(kase, "flush") == 0) {
		need_args(argc, 1);
		h.op = PV_OP_FLUSH;
		h.volume = argv[0];
		h.length = 0;
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else if (strcmp(kase, "map-volume") == 0) {
		need_args(argc, 1);
		send_map_volume(sock, argv[0]);
	} else if (strcmp(kase, "read-map") == 0) {
		need_args(argc, 5);
		send_read_mapped(sock, argv[0], parse_u64(argv[1]), (uint32_t)parse_u64(argv[2]),
				 parse_u64(argv[3]), parse_u64(argv[4]));
	} else if (strcmp(kase, "trim") == 0) {
		need_args(argc, 3);
		h.op = PV_OP_TRIM;
		h.volume = argv[0];
		h.offset = parse_u64(argv[1]);
		h.length = (uint32_t)parse_u64(argv[2]);
		n = pack_header(&h, buf, sizeof(buf));
		send_frame(sock, buf, n, 0);
	} else {
		fprintf(stderr, "pvraw: unknown case '%s'\n\n%s", kase, usage_text);
		exit(2);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct opts o = {.timeout_ms = 5000, .count = 1};
	const char *kase;
	char endpoint[512];
	void *ctx, *sock;
	int c, rc = 0, linger = 0;

	opt = &o;
	while ((c = getopt(argc, argv, "t:n:s:c:V:S:qh")) != -1) {
		switch (c) {
		case 't':
			o.timeout_ms = (int)parse_u64(optarg);
			break;
		case 'n':
			o.count = (long)parse_u64(optarg);
			break;
		case 's':
			o.src = optarg;
			break;
		case 'c':
			o.client_id = parse_u64(optarg);
			o.client_id_set = 1;
			break;
		case 'V':
			o.volume_id = parse_u64(optarg);
			break;
		case 'S':
			o.snapshot_id = parse_u64(optarg);
			break;
		case 'q':
			o.verbose = 1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	need_args(argc - optind, 2);
	if (o.src) {
		if (strncmp(argv[optind], "tcp://", 6) != 0) {
			fprintf(stderr, "pvraw: -s needs a tcp:// endpoint\n");
			return 2;
		}
		snprintf(endpoint, sizeof(endpoint), "tcp://%s:0;%s", o.src, argv[optind] + 6);
	} else {
		snprintf(endpoint, sizeof(endpoint), "%s", argv[optind]);
	}
	srand((unsigned)time(NULL) ^ (unsigned)getpid());

	ctx = zmq_ctx_new();
	if (!ctx)
		die("zmq_ctx_new");
	sock = zmq_socket(ctx, ZMQ_DEALER);
	if (!sock)
		die("zmq_socket");
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_connect(sock, endpoint) < 0)
		die(endpoint);

	zmq_msg_init(&last_data);
	kase = argv[optind + 1];
	for (long i = 0; i < o.count && rc == 0; i++) {
		if (strcmp(kase, "shm-memfd") == 0) {
			need_args(argc - optind - 2, 2);
			rc = shm_memfd(sock, argv[optind + 2], argv[optind + 3],
				       argc - optind > 4 ? parse_u64(argv[optind + 4]) : 0);
			continue;
		}
		const char *out;

		replies_wanted = 1;
		out = send_case(sock, kase, argc - optind - 2, argv + optind + 2);
		do
			rc = recv_reply(sock, &o, out);
		while (rc == 0 && replies_wanted > 0);
	}
	zmq_msg_close(&last_data);
	zmq_close(sock);
	zmq_ctx_term(ctx);
	return rc;
}
