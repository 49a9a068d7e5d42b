/* fuzz_linkauth.c: libFuzzer target for the link handshake's decoder
 * (linkauth.h), which a server runs on the first bytes anyone sends to
 * its link port, and a client on a server's answer.
 *
 * The input is a stream of handshake messages. linkauth_need and
 * linkauth_decode walk it: a need is within the message bounds, a decode
 * succeeds exactly for a whole message, a refusal's reason is printable.
 * Then the bytes are what a connector sends to an acceptor (link.c,
 * link_handshake over a socketpair), and what an acceptor answers a
 * connector: neither side ever finishes (no input can carry a MAC of a key
 * it does not know), each fails or waits, and a refusal is reported as
 * one only when the input starts with a REFUSE message. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "linkauth.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_linkauth: %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const uint8_t key[PV_KEY_BYTES] = {7};
static const uint8_t id[PV_KEY_BYTES] = {3};

static int lookup(void *arg, const uint8_t who[PV_KEY_BYTES], uint8_t k[PV_KEY_BYTES], char *why,
		  size_t whylen)
{
	(void)arg;
	if (who[0] == 0xee) { /* some ids are refused, the others known */
		snprintf(why, whylen, "unknown key");
		return -1;
	}
	memcpy(k, key, PV_KEY_BYTES);
	return 0;
}

/* Feeds data to one side of a socketpair whose other side runs the
 * handshake as an acceptor (acceptor) or connector; returns its result. */
static int drive(const uint8_t *data, size_t size, int acceptor, int *refused)
{
	int fds[2], rc = 1;
	struct link *l;
	char err[256];

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
	l = link_new(fds[1]);
	REQUIRE(l);
	if (acceptor)
		link_auth_accept(l, size & 1);
	else
		link_auth_connect(l, id, key, size & 1);
	if (size && write(fds[0], data, size) < 0)
		REQUIRE(errno == EAGAIN);
	if (size & 2)
		close(fds[0]); /* the other side goes after its bytes */
	for (int i = 0; i < 8 && rc == 1; i++) {
		err[0] = 0;
		rc = link_handshake(l, acceptor ? lookup : NULL, NULL, err, sizeof(err));
		REQUIRE(rc != -1 || err[0]);
	}
	*refused = link_refused(l);
	REQUIRE(rc == 1 ? link_handshaking(l) : 1);
	link_destroy(&l);
	if (!(size & 2))
		close(fds[0]);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int refused;

	while (off < size) {
		char err[256];
		struct linkauth_msg m;
		int need = linkauth_need(data + off, size - off, err, sizeof(err));

		if (need <= 0) {
			REQUIRE(need == 0 || err[0]);
			REQUIRE(linkauth_decode(data + off, size - off, &m, err, sizeof(err)) < 0);
			break;
		}
		REQUIRE(need >= LINKAUTH_HEAD && need <= LINKAUTH_MSG_MAX);
		if ((size_t)need > size - off) {
			REQUIRE(linkauth_decode(data + off, size - off, &m, err, sizeof(err)) < 0);
			break;
		}
		if (linkauth_decode(data + off, (size_t)need, &m, err, sizeof(err)) == 0) {
			REQUIRE(m.type >= LINKAUTH_HELLO && m.type <= LINKAUTH_REFUSE);
			for (const char *c = m.reason; *c; c++)
				REQUIRE(*c >= 0x20 && *c < 0x7f);
		}
		off += (size_t)need;
	}
	/* no MAC can be forged: the handshake never completes */
	REQUIRE(drive(data, size, 1, &refused) != 0);
	REQUIRE(!refused);
	REQUIRE(drive(data, size, 0, &refused) != 0);
	if (refused) {
		char err[256];
		struct linkauth_msg m;
		int need = linkauth_need(data, size, err, sizeof(err));

		REQUIRE(need > 0 &&
			linkauth_decode(data, (size_t)need, &m, err, sizeof(err)) == 0 &&
			m.type == LINKAUTH_REFUSE);
	}
	return 0;
}
