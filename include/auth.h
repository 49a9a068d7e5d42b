/* auth.h: the keys of an authenticated group and what is derived from them
 * (docs/security.md). All cryptography is libsodium's (key pairs, BLAKE2b,
 * X25519) and ZeroMQ's CURVE; links use GnuTLS (TLS 1.3 with a pre-shared
 * key) when encrypted. Nothing here is a cipher of our own.
 *
 * Two kinds of key file, text, mode 0600, made by peerctl:
 *
 *   group key (every server: peerd --auth FILE)    client key (fused --auth FILE)
 *     peervol-key 1                                  peervol-key 1
 *     kind group                                     kind client
 *     identity HEX64   the group's CURVE key pair    name NAME
 *     secret HEX64     membership                    public HEX64   its CURVE key pair
 *     previous HEX64   (while a new secret rolls)    secret HEX64
 *     roll 1|2         (the roll's phase)
 *                                                    group HEX64    the group's public key
 *
 * - identity: the seed of the CURVE key pair every server listens with; a
 *   client knows its public half (group) and so knows it talks to the group.
 * - secret: a server proves membership with a key pair derived from it
 *   (pv_member_keypair) on ZeroMQ and a link key derived from it on links.
 *   While a roll is under way (previous present) a server accepts both; in
 *   phase 1 it presents the previous one (servers not yet rolled accept
 *   only that), in phase 2 the new one (every server accepts it by then).
 * - a client's key pair is random; the catalog holds only its public half
 *   (peerctl client add). Its link key is X25519 of its secret and the
 *   group's public key, hashed: the client and every server (from the
 *   identity and the public key in the catalog) compute the same one.
 *
 * The parsing functions are pure (unit check_auth, fuzz_auth). */
#ifndef PV_AUTH_H
#define PV_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define PV_KEY_BYTES 32
#define PV_KEY_NAME_MAX 63   /* client names: A-Za-z0-9._- */
#define PV_KEY_FILE_MAX 4096 /* a key file longer than this is refused */

enum pv_key_kind { PV_KEY_NONE = 0, PV_KEY_GROUP = 1, PV_KEY_CLIENT = 2 };

struct pv_group_key {
	uint8_t identity[PV_KEY_BYTES]; /* seed of the group's CURVE key pair */
	uint8_t secret[PV_KEY_BYTES];	/* membership */
	int has_previous;
	uint8_t previous[PV_KEY_BYTES]; /* the secret being replaced */
	int roll;			/* with previous: phase 1 or 2 */
};

/* The membership secret a server with key g presents to other servers. */
static inline const uint8_t *pv_presented_secret(const struct pv_group_key *g)
{
	return g->has_previous && g->roll == 1 ? g->previous : g->secret;
}

struct pv_client_key {
	char name[PV_KEY_NAME_MAX + 1];
	uint8_t public_key[PV_KEY_BYTES]; /* CURVE key pair (crypto_box) */
	uint8_t secret_key[PV_KEY_BYTES];
	uint8_t group_public[PV_KEY_BYTES]; /* the group's CURVE public key */
};

struct pv_key {
	enum pv_key_kind kind;
	struct pv_group_key group;   /* kind PV_KEY_GROUP */
	struct pv_client_key client; /* kind PV_KEY_CLIENT */
};

/* Parses a key file's text. 0, or -1 with the reason in err (which line,
 * what is wrong); *k is then zeroed. */
int pv_key_parse(const char *text, size_t len, struct pv_key *k, char *err, size_t errlen);

/* Writes k as key file text into out (NUL-terminated). Length, or -1 if
 * len is too small. */
int pv_key_format(const struct pv_key *k, char *out, size_t len);

/* Reads and parses the key file at path. Refuses a file that is not a
 * regular file, is readable or writable by group or others (with the chmod
 * that fixes it), or is longer than PV_KEY_FILE_MAX. 0 or -1 with err. */
int pv_key_load(const char *path, struct pv_key *k, char *err, size_t errlen);

/* Writes k to path, created with mode 0600; an existing file is replaced
 * only if force. 0 or -1 with err. */
int pv_key_save(const char *path, const struct pv_key *k, int force, char *err, size_t errlen);

/* A new group key with random identity and secret. */
void pv_group_key_new(struct pv_key *k);

/* A new client key pair named name, for the group whose public key is
 * group_public. */
void pv_client_key_new(struct pv_key *k, const char *name,
		       const uint8_t group_public[PV_KEY_BYTES]);

/* Whether name is a valid client name (1..63 of A-Za-z0-9._-, not "." or
 * ".."). */
int pv_client_name_ok(const char *name);

/* The group's CURVE key pair (servers listen with it). */
void pv_group_identity(const struct pv_group_key *g, uint8_t pub[PV_KEY_BYTES],
		       uint8_t sec[PV_KEY_BYTES]);

/* The CURVE key pair a server presents to other servers for a membership
 * secret. */
void pv_member_keypair(const uint8_t secret[PV_KEY_BYTES], uint8_t pub[PV_KEY_BYTES],
		       uint8_t sec[PV_KEY_BYTES]);

/* The link key of members for a membership secret. */
void pv_member_link_key(const uint8_t secret[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES]);

/* The link key of a client: on the client from its own key file, on a
 * server from the group key and the client's public key. Both give the
 * same key. 0, or -1 for a public key that is not a valid point. */
int pv_client_link_key(const struct pv_client_key *c, uint8_t key[PV_KEY_BYTES]);
int pv_client_link_key_server(const struct pv_group_key *g, const uint8_t client_public[PV_KEY_BYTES],
			      uint8_t key[PV_KEY_BYTES]);

/* Lower-case hex of n bytes into out (2n + 1). */
void pv_hex(const uint8_t *b, size_t n, char *out);

/* A short fingerprint of a public key for logs and listings: the first 8
 * bytes of its BLAKE2b hash in hex (17 chars with the NUL). */
void pv_key_fingerprint(const uint8_t pub[PV_KEY_BYTES], char out[17]);

/* ZeroMQ's ZAP (RFC 27) request, as the handler receives it. */
#define PV_ZAP_FRAMES_MAX 8
struct pv_zap_request {
	char request_id[64];
	size_t request_id_len;
	char address[64]; /* the peer's IP address, for logs */
	char mechanism[16];
	uint8_t client_key[PV_KEY_BYTES]; /* CURVE only */
	int has_client_key;
};

/* Checks and parses the frames of a ZAP request (version "1.0", request
 * id, domain, address, identity, mechanism, credentials). 0, or -1 with
 * err for a malformed one (the handler then answers 500). */
int pv_zap_parse(const void *const *frames, const size_t *sizes, size_t n,
		 struct pv_zap_request *r, char *err, size_t errlen);

#endif
