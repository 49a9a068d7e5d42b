/* auth.c: key files and the keys derived from them (auth.h,
 * docs/security.md). */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

#define KEY_MAGIC "peervol-key 1"

/* Domain strings of the derivations: never change them, keys depend on them. */
#define DERIVE_IDENTITY "peervol identity v1"
#define DERIVE_MEMBER "peervol member v1"
#define DERIVE_MEMBER_LINK "peervol member link v1"
#define DERIVE_CLIENT_LINK "peervol client link v1"

static void say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void derive(const uint8_t key[PV_KEY_BYTES], const char *what, uint8_t out[PV_KEY_BYTES])
{
	crypto_generichash(out, PV_KEY_BYTES, (const unsigned char *)what, strlen(what), key,
			   PV_KEY_BYTES);
}

void pv_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

void pv_key_fingerprint(const uint8_t pub[PV_KEY_BYTES], char out[17])
{
	uint8_t h[8];

	crypto_generichash(h, sizeof(h), pub, PV_KEY_BYTES, NULL, 0);
	pv_hex(h, sizeof(h), out);
}

int pv_client_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > PV_KEY_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void pv_group_identity(const struct pv_group_key *g, uint8_t pub[PV_KEY_BYTES],
		       uint8_t sec[PV_KEY_BYTES])
{
	uint8_t seed[PV_KEY_BYTES];

	derive(g->identity, DERIVE_IDENTITY, seed);
	crypto_box_seed_keypair(pub, sec, seed);
	sodium_memzero(seed, sizeof(seed));
}

void pv_member_keypair(const uint8_t secret[PV_KEY_BYTES], uint8_t pub[PV_KEY_BYTES],
		       uint8_t sec[PV_KEY_BYTES])
{
	uint8_t seed[PV_KEY_BYTES];

	derive(secret, DERIVE_MEMBER, seed);
	crypto_box_seed_keypair(pub, sec, seed);
	sodium_memzero(seed, sizeof(seed));
}

void pv_member_link_key(const uint8_t secret[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES])
{
	derive(secret, DERIVE_MEMBER_LINK, key);
}

/* The link key from an X25519 shared point: hashed with both public keys,
 * as libsodium advises for a raw scalar multiplication. */
static int client_link_key(const uint8_t my_secret[PV_KEY_BYTES],
			   const uint8_t their_public[PV_KEY_BYTES],
			   const uint8_t client_public[PV_KEY_BYTES],
			   const uint8_t group_public[PV_KEY_BYTES], uint8_t key[PV_KEY_BYTES])
{
	uint8_t shared[crypto_scalarmult_BYTES];
	crypto_generichash_state st;

	if (crypto_scalarmult(shared, my_secret, their_public) != 0)
		return -1;
	crypto_generichash_init(&st, NULL, 0, PV_KEY_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)DERIVE_CLIENT_LINK,
				  strlen(DERIVE_CLIENT_LINK));
	crypto_generichash_update(&st, shared, sizeof(shared));
	crypto_generichash_update(&st, client_public, PV_KEY_BYTES);
	crypto_generichash_update(&st, group_public, PV_KEY_BYTES);
	crypto_generichash_final(&st, key, PV_KEY_BYTES);
	sodium_memzero(shared, sizeof(shared));
	return 0;
}

int pv_client_link_key(const struct pv_client_key *c, uint8_t key[PV_KEY_BYTES])
{
	return client_link_key(c->secret_key, c->group_public, c->public_key, c->group_public,
			       key);
}

int pv_client_link_key_server(const struct pv_group_key *g, const uint8_t client_public[PV_KEY_BYTES],
			      uint8_t key[PV_KEY_BYTES])
{
	uint8_t pub[PV_KEY_BYTES], sec[PV_KEY_BYTES];
	int rc;

	pv_group_identity(g, pub, sec);
	rc = client_link_key(sec, client_public, client_public, pub, key);
	sodium_memzero(sec, sizeof(sec));
	return rc;
}

void pv_group_key_new(struct pv_key *k)
{
	if (sodium_init() < 0)
		abort();
	memset(k, 0, sizeof(*k));
	k->kind = PV_KEY_GROUP;
	randombytes_buf(k->group.identity, PV_KEY_BYTES);
	randombytes_buf(k->group.secret, PV_KEY_BYTES);
}

void pv_client_key_new(struct pv_key *k, const char *name,
		       const uint8_t group_public[PV_KEY_BYTES])
{
	if (sodium_init() < 0)
		abort();
	memset(k, 0, sizeof(*k));
	k->kind = PV_KEY_CLIENT;
	snprintf(k->client.name, sizeof(k->client.name), "%s", name);
	crypto_box_keypair(k->client.public_key, k->client.secret_key);
	memcpy(k->client.group_public, group_public, PV_KEY_BYTES);
}

/* Parses exactly 64 hex digits into 32 bytes. */
static int hex32(const char *s, size_t n, uint8_t out[PV_KEY_BYTES])
{
	size_t got = 0;

	if (n != 2 * PV_KEY_BYTES)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return -1;
	if (sodium_hex2bin(out, PV_KEY_BYTES, s, n, NULL, &got, NULL) != 0 ||
	    got != PV_KEY_BYTES)
		return -1;
	return 0;
}

enum { F_KIND = 1, F_IDENTITY = 2, F_SECRET = 4, F_PREVIOUS = 8, F_NAME = 16, F_PUBLIC = 32,
       F_GROUP = 64, F_ROLL = 128 };

static int parse_line(const char *line, size_t n, int lineno, struct pv_key *k, int *seen,
		      char *err, size_t errlen)
{
	const char *sp = memchr(line, ' ', n);
	size_t klen = sp ? (size_t)(sp - line) : n;
	const char *v = sp ? sp + 1 : line + n;
	size_t vlen = sp ? n - klen - 1 : 0;
	struct {
		const char *word;
		int flag;
		uint8_t *dst;
	} hexes[] = {
	    {"identity", F_IDENTITY, k->group.identity}, {"secret", F_SECRET, NULL},
	    {"previous", F_PREVIOUS, k->group.previous}, {"public", F_PUBLIC, k->client.public_key},
	    {"group", F_GROUP, k->client.group_public},
	};

	if (klen == 4 && !memcmp(line, "kind", 4)) {
		if (*seen & F_KIND)
			goto twice;
		if (vlen == 5 && !memcmp(v, "group", 5))
			k->kind = PV_KEY_GROUP;
		else if (vlen == 6 && !memcmp(v, "client", 6))
			k->kind = PV_KEY_CLIENT;
		else {
			say(err, errlen, "line %d: kind must be group or client", lineno);
			return -1;
		}
		*seen |= F_KIND;
		return 0;
	}
	if (klen == 4 && !memcmp(line, "roll", 4)) {
		if (*seen & F_ROLL)
			goto twice;
		if (vlen != 1 || (v[0] != '1' && v[0] != '2')) {
			say(err, errlen, "line %d: roll must be 1 or 2", lineno);
			return -1;
		}
		k->group.roll = v[0] - '0';
		*seen |= F_ROLL;
		return 0;
	}
	if (klen == 4 && !memcmp(line, "name", 4)) {
		char name[PV_KEY_NAME_MAX + 2];

		if (*seen & F_NAME)
			goto twice;
		if (vlen > PV_KEY_NAME_MAX) {
			say(err, errlen, "line %d: name longer than %d characters", lineno,
			    PV_KEY_NAME_MAX);
			return -1;
		}
		memcpy(name, v, vlen);
		name[vlen] = 0;
		if (!pv_client_name_ok(name)) {
			say(err, errlen, "line %d: name must be 1..%d of A-Za-z0-9._-", lineno,
			    PV_KEY_NAME_MAX);
			return -1;
		}
		memcpy(k->client.name, name, vlen + 1);
		*seen |= F_NAME;
		return 0;
	}
	for (size_t i = 0; i < sizeof(hexes) / sizeof(hexes[0]); i++) {
		uint8_t tmp[PV_KEY_BYTES];

		if (klen != strlen(hexes[i].word) || memcmp(line, hexes[i].word, klen))
			continue;
		if (*seen & hexes[i].flag)
			goto twice;
		if (hex32(v, vlen, tmp) < 0) {
			say(err, errlen, "line %d: %s must be 64 hex digits", lineno,
			    hexes[i].word);
			return -1;
		}
		if (hexes[i].dst)
			memcpy(hexes[i].dst, tmp, PV_KEY_BYTES);
		else /* secret: the group's, or the client's secret key */
			memcpy(k->group.secret, tmp, PV_KEY_BYTES),
			    memcpy(k->client.secret_key, tmp, PV_KEY_BYTES);
		sodium_memzero(tmp, sizeof(tmp));
		*seen |= hexes[i].flag;
		return 0;
	}
	say(err, errlen, "line %d: unknown field '%.*s'", lineno, (int)(klen > 40 ? 40 : klen),
	    line);
	return -1;
twice:
	say(err, errlen, "line %d: '%.*s' given twice", lineno, (int)klen, line);
	return -1;
}

int pv_key_parse(const char *text, size_t len, struct pv_key *k, char *err, size_t errlen)
{
	int seen = 0, lineno = 0, magic = 0;
	size_t pos = 0;

	memset(k, 0, sizeof(*k));
	if (len > PV_KEY_FILE_MAX) {
		say(err, errlen, "longer than %d bytes: not a peervol key file", PV_KEY_FILE_MAX);
		return -1;
	}
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;

		pos += n + (nl ? 1 : 0);
		lineno++;
		if (n && line[n - 1] == '\r')
			n--;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e) {
				say(err, errlen, "line %d: a byte that is not printable ASCII",
				    lineno);
				goto bad;
			}
		if (n == 0 || line[0] == '#')
			continue;
		if (!magic) {
			if (n != strlen(KEY_MAGIC) || memcmp(line, KEY_MAGIC, n)) {
				say(err, errlen,
				    "line %d: not a peervol key file (it must start with '%s')",
				    lineno, KEY_MAGIC);
				goto bad;
			}
			magic = 1;
			continue;
		}
		if (parse_line(line, n, lineno, k, &seen, err, errlen) < 0)
			goto bad;
	}
	if (!magic) {
		say(err, errlen, "empty: not a peervol key file");
		goto bad;
	}
	if (!(seen & F_KIND)) {
		say(err, errlen, "no 'kind' line");
		goto bad;
	}
	if (k->kind == PV_KEY_GROUP) {
		if ((seen & (F_IDENTITY | F_SECRET)) != (F_IDENTITY | F_SECRET) ||
		    (seen & (F_NAME | F_PUBLIC | F_GROUP))) {
			say(err, errlen, "a group key has identity, secret and optionally previous "
					 "and roll lines only");
			goto bad;
		}
		if (!!(seen & F_PREVIOUS) != !!(seen & F_ROLL)) {
			say(err, errlen, "previous and roll go together (a roll of the secret)");
			goto bad;
		}
		k->group.has_previous = !!(seen & F_PREVIOUS);
		sodium_memzero(k->client.secret_key, PV_KEY_BYTES);
	} else {
		uint8_t pub[PV_KEY_BYTES];

		if ((seen & (F_NAME | F_PUBLIC | F_SECRET | F_GROUP)) !=
			(F_NAME | F_PUBLIC | F_SECRET | F_GROUP) ||
		    (seen & (F_IDENTITY | F_PREVIOUS | F_ROLL))) {
			say(err, errlen,
			    "a client key has name, public, secret and group lines only");
			goto bad;
		}
		crypto_scalarmult_base(pub, k->client.secret_key);
		if (memcmp(pub, k->client.public_key, PV_KEY_BYTES)) {
			say(err, errlen, "the public key is not the secret key's");
			goto bad;
		}
		sodium_memzero(k->group.secret, PV_KEY_BYTES);
	}
	return 0;
bad:
	sodium_memzero(k, sizeof(*k));
	return -1;
}

int pv_key_format(const struct pv_key *k, char *out, size_t len)
{
	char a[2 * PV_KEY_BYTES + 1], b[2 * PV_KEY_BYTES + 1], c[2 * PV_KEY_BYTES + 1],
	    d[2 * PV_KEY_BYTES + 1], roll[200] = "";
	int n;

	if (k->kind == PV_KEY_GROUP) {
		pv_hex(k->group.identity, PV_KEY_BYTES, a);
		pv_hex(k->group.secret, PV_KEY_BYTES, b);
		pv_hex(k->group.previous, PV_KEY_BYTES, c);
		if (k->group.has_previous) {
			if (k->group.roll != 1 && k->group.roll != 2)
				return -1;
			snprintf(roll, sizeof(roll), "previous %s\nroll %d\n", c, k->group.roll);
		}
		n = snprintf(out, len,
			     "# peervol group key: give this file to every server of the group "
			     "(peerd --auth),\n"
			     "# mode 0600, owned by the user peerd runs as. Anyone holding it "
			     "is a server of the group.\n" KEY_MAGIC "\nkind group\nidentity %s\n"
			     "secret %s\n%s",
			     a, b, roll);
		sodium_memzero(roll, sizeof(roll));
	} else if (k->kind == PV_KEY_CLIENT) {
		pv_hex(k->client.public_key, PV_KEY_BYTES, a);
		pv_hex(k->client.secret_key, PV_KEY_BYTES, b);
		pv_hex(k->client.group_public, PV_KEY_BYTES, d);
		n = snprintf(out, len,
			     "# peervol client key of '%s' (fused --auth), mode 0600; revoke "
			     "it with: peerctl client revoke %s\n" KEY_MAGIC
			     "\nkind client\nname %s\npublic %s\nsecret %s\ngroup %s\n",
			     k->client.name, k->client.name, k->client.name, a, b, d);
	} else
		return -1;
	sodium_memzero(b, sizeof(b));
	sodium_memzero(c, sizeof(c));
	sodium_memzero(a, sizeof(a));
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

int pv_key_load(const char *path, struct pv_key *k, char *err, size_t errlen)
{
	char buf[PV_KEY_FILE_MAX + 1], why[200];
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd;

	memset(k, 0, sizeof(*k));
	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		say(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		say(err, errlen, "key file %s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		say(err, errlen,
		    "key file %s is readable or writable by group or others (mode %04o): a key "
		    "must be private (chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return -1;
	}
	while (got <= PV_KEY_FILE_MAX && (n = read(fd, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (got > PV_KEY_FILE_MAX) {
		say(err, errlen, "key file %s is longer than %d bytes: not a peervol key", path,
		    PV_KEY_FILE_MAX);
		return -1;
	}
	if (pv_key_parse(buf, got, k, why, sizeof(why)) < 0) {
		say(err, errlen, "key file %s: %s", path, why);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int pv_key_save(const char *path, const struct pv_key *k, int force, char *err, size_t errlen)
{
	char buf[PV_KEY_FILE_MAX], tmp[4096];
	int n = pv_key_format(k, buf, sizeof(buf)), fd;

	if (n < 0) {
		say(err, errlen, "cannot format the key");
		return -1;
	}
	if (!force && access(path, F_OK) == 0) {
		say(err, errlen, "%s exists: not overwritten (give --force to replace it)", path);
		return -1;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= sizeof(tmp)) {
		say(err, errlen, "path %s is too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		say(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, 0600) < 0 || write(fd, buf, (size_t)n) != n || fsync(fd) < 0) {
		say(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	close(fd);
	sodium_memzero(buf, sizeof(buf));
	if (!force && link(tmp, path) < 0) {
		say(err, errlen, "cannot create %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (!force)
		unlink(tmp);
	else if (rename(tmp, path) < 0) {
		say(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Copies frame i as a string of at most cap - 1 bytes; -1 if longer. */
static int frame_str(const void *const *frames, const size_t *sizes, size_t i, char *out,
		     size_t cap)
{
	if (sizes[i] >= cap)
		return -1;
	memcpy(out, frames[i], sizes[i]);
	out[sizes[i]] = 0;
	return 0;
}

int pv_zap_parse(const void *const *frames, const size_t *sizes, size_t n,
		 struct pv_zap_request *r, char *err, size_t errlen)
{
	char version[8], domain[64];

	memset(r, 0, sizeof(*r));
	if (n < 6 || n > PV_ZAP_FRAMES_MAX) {
		say(err, errlen, "ZAP request of %zu frames (6 or 7 expected)", n);
		return -1;
	}
	if (frame_str(frames, sizes, 0, version, sizeof(version)) < 0 || strcmp(version, "1.0")) {
		say(err, errlen, "ZAP version is not 1.0");
		return -1;
	}
	if (sizes[1] > sizeof(r->request_id)) {
		say(err, errlen, "ZAP request id longer than %zu bytes", sizeof(r->request_id));
		return -1;
	}
	memcpy(r->request_id, frames[1], sizes[1]);
	r->request_id_len = sizes[1];
	if (frame_str(frames, sizes, 2, domain, sizeof(domain)) < 0 ||
	    frame_str(frames, sizes, 3, r->address, sizeof(r->address)) < 0 ||
	    frame_str(frames, sizes, 5, r->mechanism, sizeof(r->mechanism)) < 0) {
		say(err, errlen, "ZAP domain, address or mechanism too long");
		return -1;
	}
	if (!strcmp(r->mechanism, "CURVE")) {
		if (n != 7 || sizes[6] != PV_KEY_BYTES) {
			say(err, errlen, "CURVE ZAP request without a 32-byte client key");
			return -1;
		}
		memcpy(r->client_key, frames[6], PV_KEY_BYTES);
		r->has_client_key = 1;
	}
	return 0;
}
