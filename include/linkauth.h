/* linkauth.h: the handshake that opens a link of an authenticated group
 * (docs/security.md, "Links"). Pure: these functions build and check the
 * handshake's messages over byte buffers; link.c moves them over the
 * socket, linkset.c (peerd) and conn.c (fused) supply the keys.
 *
 *   connector (fused, or a peerd to a member)      acceptor (peerd)
 *     HELLO  {flags_c, id, nonce_c}  ------------>   key = lookup(id)
 *                                                     (unknown: REFUSE {reason}, close)
 *            <------------  CHALLENGE {flags_s, nonce_s, mac_s}
 *     checks mac_s (the acceptor holds the key)
 *     FINISH {mac_c}  --------------------------->   checks mac_c
 *     [TLS 1.3, PSK = linkauth_psk(...), if flags_c or flags_s ask for it]
 *     records ...                                     records ...
 *
 * Every message is an 8-byte head, "PVLA" | version (1) | type | flags |
 * body length, then its body: HELLO 64 bytes (id, nonce_c), CHALLENGE 64
 * (nonce_s, mac_s), FINISH 32 (mac_c), REFUSE 0..LINKAUTH_REASON_MAX
 * (text). mac_s and mac_c are keyed BLAKE2b (libsodium crypto_generichash)
 * with the link key over a domain string of their own, the id, both nonces
 * and both flags: the acceptor's proves it holds the key and binds its
 * encrypt flag (it cannot be stripped), the connector's proves the same to
 * the acceptor; fresh nonces on both sides make an old exchange useless. */
#ifndef PV_LINKAUTH_H
#define PV_LINKAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define LINKAUTH_VERSION    1
#define LINKAUTH_HEAD	    8
#define LINKAUTH_NONCE	    32
#define LINKAUTH_MAC	    32
#define LINKAUTH_REASON_MAX 200
#define LINKAUTH_MSG_MAX    (LINKAUTH_HEAD + 255) /* the largest message */

/* Flags (HELLO: the connector's, CHALLENGE: the acceptor's). */
#define LINKAUTH_F_ENCRYPT 0x01 /* run TLS after the handshake */
#define LINKAUTH_F_KNOWN   LINKAUTH_F_ENCRYPT

enum linkauth_type {
	LINKAUTH_HELLO = 1,
	LINKAUTH_CHALLENGE = 2,
	LINKAUTH_FINISH = 3,
	LINKAUTH_REFUSE = 4,
};

/* One decoded message. */
struct linkauth_msg {
	enum linkauth_type type;
	uint8_t flags;
	uint8_t id[PV_KEY_BYTES];	      /* HELLO */
	uint8_t nonce[LINKAUTH_NONCE];	      /* HELLO: nonce_c; CHALLENGE: nonce_s */
	uint8_t mac[LINKAUTH_MAC];	      /* CHALLENGE: mac_s; FINISH: mac_c */
	char reason[LINKAUTH_REASON_MAX + 1]; /* REFUSE, NUL-terminated, printable */
};

/* The state of one side's handshake: what both MACs cover. */
struct linkauth {
	uint8_t key[PV_KEY_BYTES]; /* the link key */
	uint8_t id[PV_KEY_BYTES];  /* the connector's key id */
	uint8_t nonce_c[LINKAUTH_NONCE], nonce_s[LINKAUTH_NONCE];
	uint8_t flags_c, flags_s;
};

/* Bytes the message whose head starts buf needs in all (head and body),
 * 0 if fewer than LINKAUTH_HEAD bytes are there, or -1 (reason in err) if
 * the head is not one of ours: wrong magic or version, unknown type, a
 * body length that type cannot have. Pure. */
int linkauth_need(const void *buf, size_t len, char *err, size_t errlen);

/* Decodes the message in buf (exactly one, len bytes). 0, or -1 with the
 * reason in err. Pure: any byte string is safe. */
int linkauth_decode(const void *buf, size_t len, struct linkauth_msg *m, char *err, size_t errlen);

/* Connector: fills a (id, key, flags_c, a random nonce_c) and writes HELLO
 * into out (LINKAUTH_MSG_MAX). Returns its length. */
size_t linkauth_hello(struct linkauth *a, const uint8_t id[PV_KEY_BYTES],
		      const uint8_t key[PV_KEY_BYTES], uint8_t flags, uint8_t *out);

/* Acceptor: a HELLO m was received and key is the link key of m->id;
 * fills a (flags_s and a random nonce_s) and writes CHALLENGE into out.
 * Returns its length. */
size_t linkauth_challenge(struct linkauth *a, const struct linkauth_msg *hello,
			  const uint8_t key[PV_KEY_BYTES], uint8_t flags, uint8_t *out);

/* Connector: checks a CHALLENGE (its mac_s) against a; on success records
 * flags_s and nonce_s and writes FINISH into out. Returns its length, or
 * -1 with the reason in err (the acceptor does not hold the key, or the
 * message was changed on the way). */
int linkauth_finish(struct linkauth *a, const struct linkauth_msg *challenge, uint8_t *out,
		    char *err, size_t errlen);

/* Acceptor: checks a FINISH (its mac_c). 0, or -1 with the reason. */
int linkauth_check_finish(const struct linkauth *a, const struct linkauth_msg *finish, char *err,
			  size_t errlen);

/* Writes REFUSE with reason (cut to LINKAUTH_REASON_MAX, made printable)
 * into out. Returns its length. */
size_t linkauth_refuse(const char *reason, uint8_t *out);

/* Whether the link runs TLS after the handshake (either side asked). */
int linkauth_encrypt(const struct linkauth *a);

/* The TLS pre-shared key of a finished handshake (from the link key, both
 * nonces and the id) and its identity (hex of the id, 65 bytes). */
void linkauth_psk(const struct linkauth *a, uint8_t psk[PV_KEY_BYTES], char identity[65]);

#endif
