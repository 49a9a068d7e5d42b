/* linkauth.c: the messages of a link's handshake (linkauth.h,
 * docs/security.md). Pure apart from libsodium's random nonces: no socket,
 * no clock. Every cryptographic operation is libsodium's (keyed BLAKE2b,
 * sodium_memcmp); the encryption that may follow is GnuTLS's (link.c). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "linkauth.h"

#define MAGIC "PVLA"

/* Domain strings: never change them, both sides must agree. */
#define DOMAIN_SERVER "peervol link acceptor v1"
#define DOMAIN_CLIENT "peervol link connector v1"
#define DOMAIN_PSK    "peervol link tls psk v1"

static size_t body_len(enum linkauth_type t)
{
	switch (t) {
	case LINKAUTH_HELLO:
		return PV_KEY_BYTES + LINKAUTH_NONCE;
	case LINKAUTH_CHALLENGE:
		return LINKAUTH_NONCE + LINKAUTH_MAC;
	case LINKAUTH_FINISH:
		return LINKAUTH_MAC;
	default:
		return 0;
	}
}

int linkauth_need(const void *buf, size_t len, char *err, size_t errlen)
{
	const uint8_t *p = buf;
	size_t n = len < 4 ? len : 4;

	/* a wrong first byte is refused at once, not after 8 of them */
	if (memcmp(p, MAGIC, n)) {
		snprintf(err, errlen, "not a link handshake (no key, or not peervol)");
		return -1;
	}
	if (len < LINKAUTH_HEAD)
		return 0;
	if (p[4] != LINKAUTH_VERSION) {
		snprintf(err, errlen, "link handshake version %u (this side speaks %u)", p[4],
			 LINKAUTH_VERSION);
		return -1;
	}
	switch (p[5]) {
	case LINKAUTH_HELLO:
	case LINKAUTH_CHALLENGE:
	case LINKAUTH_FINISH:
		if (p[7] != body_len(p[5])) {
			snprintf(err, errlen, "handshake message %u with %u bytes (%zu expected)",
				 p[5], p[7], body_len(p[5]));
			return -1;
		}
		break;
	case LINKAUTH_REFUSE:
		if (p[7] > LINKAUTH_REASON_MAX) {
			snprintf(err, errlen, "refusal of %u bytes (at most %u)", p[7],
				 LINKAUTH_REASON_MAX);
			return -1;
		}
		break;
	default:
		snprintf(err, errlen, "unknown handshake message %u", p[5]);
		return -1;
	}
	return LINKAUTH_HEAD + p[7];
}

int linkauth_decode(const void *buf, size_t len, struct linkauth_msg *m, char *err, size_t errlen)
{
	const uint8_t *p = buf, *b = p + LINKAUTH_HEAD;
	int need = linkauth_need(buf, len, err, errlen);

	memset(m, 0, sizeof(*m));
	if (need < 0)
		return -1;
	if (need == 0 || (size_t)need != len) {
		snprintf(err, errlen, "handshake message of %zu bytes (%d expected)", len,
			 need ? need : LINKAUTH_HEAD);
		return -1;
	}
	m->type = p[5];
	m->flags = p[6];
	if (m->flags &
	    ~((m->type == LINKAUTH_HELLO || m->type == LINKAUTH_CHALLENGE) ? LINKAUTH_F_KNOWN
									   : 0)) {
		snprintf(err, errlen, "unknown handshake flags 0x%02x", m->flags);
		return -1;
	}
	switch (m->type) {
	case LINKAUTH_HELLO:
		memcpy(m->id, b, PV_KEY_BYTES);
		memcpy(m->nonce, b + PV_KEY_BYTES, LINKAUTH_NONCE);
		break;
	case LINKAUTH_CHALLENGE:
		memcpy(m->nonce, b, LINKAUTH_NONCE);
		memcpy(m->mac, b + LINKAUTH_NONCE, LINKAUTH_MAC);
		break;
	case LINKAUTH_FINISH:
		memcpy(m->mac, b, LINKAUTH_MAC);
		break;
	case LINKAUTH_REFUSE:
		for (size_t i = 0; i < (size_t)p[7]; i++)
			m->reason[i] = b[i] >= 0x20 && b[i] < 0x7f ? (char)b[i] : '?';
		m->reason[p[7]] = 0;
		break;
	}
	return 0;
}

static size_t head(uint8_t *out, enum linkauth_type t, uint8_t flags, size_t body)
{
	memcpy(out, MAGIC, 4);
	out[4] = LINKAUTH_VERSION;
	out[5] = (uint8_t)t;
	out[6] = flags;
	out[7] = (uint8_t)body;
	return LINKAUTH_HEAD + body;
}

/* The MAC of one side over what both agreed on. */
static void mac(const struct linkauth *a, const char *domain, uint8_t out[LINKAUTH_MAC])
{
	crypto_generichash_state st;
	uint8_t flags[2] = {a->flags_c, a->flags_s};

	crypto_generichash_init(&st, a->key, PV_KEY_BYTES, LINKAUTH_MAC);
	crypto_generichash_update(&st, (const unsigned char *)domain, strlen(domain) + 1);
	crypto_generichash_update(&st, a->id, PV_KEY_BYTES);
	crypto_generichash_update(&st, a->nonce_c, LINKAUTH_NONCE);
	crypto_generichash_update(&st, a->nonce_s, LINKAUTH_NONCE);
	crypto_generichash_update(&st, flags, sizeof(flags));
	crypto_generichash_final(&st, out, LINKAUTH_MAC);
}

size_t linkauth_hello(struct linkauth *a, const uint8_t id[PV_KEY_BYTES],
		      const uint8_t key[PV_KEY_BYTES], uint8_t flags, uint8_t *out)
{
	memset(a, 0, sizeof(*a));
	memcpy(a->key, key, PV_KEY_BYTES);
	memcpy(a->id, id, PV_KEY_BYTES);
	randombytes_buf(a->nonce_c, LINKAUTH_NONCE);
	a->flags_c = flags & LINKAUTH_F_KNOWN;
	memcpy(out + LINKAUTH_HEAD, id, PV_KEY_BYTES);
	memcpy(out + LINKAUTH_HEAD + PV_KEY_BYTES, a->nonce_c, LINKAUTH_NONCE);
	return head(out, LINKAUTH_HELLO, a->flags_c, PV_KEY_BYTES + LINKAUTH_NONCE);
}

size_t linkauth_challenge(struct linkauth *a, const struct linkauth_msg *hello,
			  const uint8_t key[PV_KEY_BYTES], uint8_t flags, uint8_t *out)
{
	memset(a, 0, sizeof(*a));
	memcpy(a->key, key, PV_KEY_BYTES);
	memcpy(a->id, hello->id, PV_KEY_BYTES);
	memcpy(a->nonce_c, hello->nonce, LINKAUTH_NONCE);
	a->flags_c = hello->flags;
	a->flags_s = flags & LINKAUTH_F_KNOWN;
	randombytes_buf(a->nonce_s, LINKAUTH_NONCE);
	memcpy(out + LINKAUTH_HEAD, a->nonce_s, LINKAUTH_NONCE);
	mac(a, DOMAIN_SERVER, out + LINKAUTH_HEAD + LINKAUTH_NONCE);
	return head(out, LINKAUTH_CHALLENGE, a->flags_s, LINKAUTH_NONCE + LINKAUTH_MAC);
}

/* Whether got is the MAC of a for domain (compared in constant time). */
static int mac_ok(const struct linkauth *a, const char *domain, const uint8_t got[LINKAUTH_MAC])
{
	uint8_t want[LINKAUTH_MAC];
	int ok;

	mac(a, domain, want);
	ok = !sodium_memcmp(want, got, LINKAUTH_MAC);
	sodium_memzero(want, sizeof(want));
	return ok;
}

int linkauth_finish(struct linkauth *a, const struct linkauth_msg *challenge, uint8_t *out,
		    char *err, size_t errlen)
{
	if (challenge->type != LINKAUTH_CHALLENGE) {
		snprintf(err, errlen, "handshake message %u where a challenge was expected",
			 challenge->type);
		return -1;
	}
	a->flags_s = challenge->flags;
	memcpy(a->nonce_s, challenge->nonce, LINKAUTH_NONCE);
	if (!mac_ok(a, DOMAIN_SERVER, challenge->mac)) {
		snprintf(err, errlen,
			 "the server's proof does not match: it does not hold "
			 "this key (another group's?), or the handshake was altered");
		return -1;
	}
	mac(a, DOMAIN_CLIENT, out + LINKAUTH_HEAD);
	return (int)head(out, LINKAUTH_FINISH, 0, LINKAUTH_MAC);
}

int linkauth_check_finish(const struct linkauth *a, const struct linkauth_msg *finish, char *err,
			  size_t errlen)
{
	if (finish->type != LINKAUTH_FINISH) {
		snprintf(err, errlen, "handshake message %u where the proof was expected",
			 finish->type);
		return -1;
	}
	if (!mac_ok(a, DOMAIN_CLIENT, finish->mac)) {
		snprintf(err, errlen,
			 "the connector's proof does not match (wrong key, or "
			 "the handshake was altered or replayed)");
		return -1;
	}
	return 0;
}

size_t linkauth_refuse(const char *reason, uint8_t *out)
{
	size_t n = strlen(reason);

	if (n > LINKAUTH_REASON_MAX)
		n = LINKAUTH_REASON_MAX;
	for (size_t i = 0; i < n; i++)
		out[LINKAUTH_HEAD + i] =
		    reason[i] >= 0x20 && reason[i] < 0x7f ? (uint8_t)reason[i] : '?';
	return head(out, LINKAUTH_REFUSE, 0, n);
}

int linkauth_encrypt(const struct linkauth *a)
{
	return ((a->flags_c | a->flags_s) & LINKAUTH_F_ENCRYPT) != 0;
}

void linkauth_psk(const struct linkauth *a, uint8_t psk[PV_KEY_BYTES], char identity[65])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, a->key, PV_KEY_BYTES, PV_KEY_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)DOMAIN_PSK, strlen(DOMAIN_PSK) + 1);
	crypto_generichash_update(&st, a->id, PV_KEY_BYTES);
	crypto_generichash_update(&st, a->nonce_c, LINKAUTH_NONCE);
	crypto_generichash_update(&st, a->nonce_s, LINKAUTH_NONCE);
	crypto_generichash_final(&st, psk, PV_KEY_BYTES);
	pv_hex(a->id, PV_KEY_BYTES, identity);
}
