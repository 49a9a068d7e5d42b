/* auth.c: who may talk to this server (docs/security.md).
 *
 * With --auth, every ZeroMQ connection is CURVE: the ROUTER listens with
 * the group's identity key pair, and the ZAP handler here (a REP socket on
 * inproc://zeromq.zap.01, run by the reactor) accepts a connection only if
 * its key is a member key of the membership secret (or of the previous
 * one while a new secret rolls out) or a client key of the catalog that
 * is not revoked. The answer's user id ("server", "client NAME") comes
 * with every message of the connection (ZeroMQ's User-Id property), and
 * auth_router_role turns it into the sender's role for ops.c. Links do the
 * same with a handshake of their own (linkauth.c) that asks
 * auth_link_lookup for the key. Without --auth nothing changes, and the
 * server says once that the group is unauthenticated. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

#include "peerd.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "peervol"
#define USER_SERVER "server"
#define USER_CLIENT "client "

static struct pv_key key;	 /* the group key (--auth) */
static int on;			 /* --auth given */
static uint8_t id_pub[PV_KEY_BYTES], id_sec[PV_KEY_BYTES]; /* the group's identity */
static uint8_t mem_pub[2][PV_KEY_BYTES]; /* member keys: secret, previous */
static size_t nmem;
static void *zap;
static void *mon; /* the ROUTER's handshake failures (a key of another group) */
/* The peer addresses of the ROUTER's connections by descriptor, taken at
 * ACCEPTED: a failed handshake's event names only the listener, and the
 * DISCONNECTED that follows it names the descriptor. */
#define MON_FDS 4096
static char *mon_addr[MON_FDS];
static int mon_failed; /* a handshake failed: the next disconnect is it */

static uint64_t refused, refused_logged_ms, refused_quiet;

/* Revoked client keys by fingerprint (the user id of a client's
 * connection is "client FINGERPRINT NAME"). */
struct revoked {
	UT_hash_handle hh;
	char fp[17];
};
static struct revoked *revoked_names;

int auth_on(void)
{
	return on;
}

uint64_t auth_refused(void)
{
	return refused;
}

int auth_init(void)
{
	char err[512];

	if (!srv->cfg.auth_path[0]) {
		pv_warn("the group is unauthenticated (no --auth): anyone who can reach "
			"this server's ports can read and write every volume; see "
			"'peerctl group keygen' and docs/security.md");
		return 0;
	}
	if (!zmq_has("curve")) {
		pv_err("--auth: this libzmq has no CURVE support (it needs libsodium); "
		       "install Debian's libzmq5");
		return -1;
	}
	if (pv_key_load(srv->cfg.auth_path, &key, err, sizeof(err)) < 0) {
		pv_err("--auth: %s", err);
		return -1;
	}
	if (key.kind != PV_KEY_GROUP) {
		pv_err("--auth: %s is a client key ('%s'); a server needs the group key "
		       "made by 'peerctl group keygen'",
		       srv->cfg.auth_path, key.client.name);
		sodium_memzero(&key, sizeof(key));
		return -1;
	}
	pv_group_identity(&key.group, id_pub, id_sec);
	pv_member_keypair(key.group.secret, mem_pub[0], (uint8_t[PV_KEY_BYTES]){0});
	nmem = 1;
	if (key.group.has_previous) {
		pv_member_keypair(key.group.previous, mem_pub[1], (uint8_t[PV_KEY_BYTES]){0});
		nmem = 2;
	}
	on = 1;
	{
		char fp[17], mfp[17];

		pv_key_fingerprint(id_pub, fp);
		pv_key_fingerprint(mem_pub[0], mfp);
		pv_info("the group is authenticated: group key %s, membership %s%s; links %s", fp,
			mfp,
			nmem < 2		? ""
			: key.group.roll == 1 ? " (roll phase 1: the previous secret accepted and "
						"presented)"
					      : " (roll phase 2: the previous secret still accepted)",
			srv->cfg.encrypt ? "encrypted (TLS)" : "authenticated, not encrypted");
	}
	return 0;
}

void auth_close(void)
{
	struct revoked *r, *tmp;

	if (zap)
		zmq_close(zap);
	zap = NULL;
	if (mon)
		zmq_close(mon);
	mon = NULL;
	for (size_t i = 0; i < MON_FDS; i++) {
		free(mon_addr[i]);
		mon_addr[i] = NULL;
	}
	HASH_ITER(hh, revoked_names, r, tmp)
	{
		HASH_DEL(revoked_names, r);
		free(r);
	}
	sodium_memzero(&key, sizeof(key));
	sodium_memzero(id_sec, sizeof(id_sec));
}

int auth_server_socket(void *sock)
{
	int one = 1, handshake_ms = AUTH_HANDSHAKE_MS;

	if (!on)
		return 0;
	/* a connection that has not finished its handshake (ZAP included) by
	 * then is dropped: a stranger cannot hold one open by going silent */
	if (zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof(handshake_ms)) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, id_sec, PV_KEY_BYTES) < 0 ||
	    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) < 0) {
		pv_err("cannot make the ZeroMQ socket a CURVE server: %s", zmq_strerror(errno));
		return -1;
	}
	return 0;
}

/* The membership secret this server presents (pv_presented_secret). */
static const uint8_t *presented_secret(void)
{
	return pv_presented_secret(&key.group);
}

int auth_member_socket(void *sock)
{
	uint8_t pub[PV_KEY_BYTES], sec[PV_KEY_BYTES];
	int rc = 0;

	if (!on)
		return 0;
	pv_member_keypair(presented_secret(), pub, sec);
	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, id_pub, PV_KEY_BYTES) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, PV_KEY_BYTES) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, PV_KEY_BYTES) < 0) {
		pv_err("cannot make the ZeroMQ socket a CURVE client: %s", zmq_strerror(errno));
		rc = -1;
	}
	sodium_memzero(sec, sizeof(sec));
	return rc;
}

void auth_link_self(uint8_t id[PV_KEY_BYTES], uint8_t k[PV_KEY_BYTES])
{
	uint8_t sec[PV_KEY_BYTES];

	pv_member_keypair(presented_secret(), id, sec);
	sodium_memzero(sec, sizeof(sec));
	pv_member_link_key(presented_secret(), k);
}

/* The catalog's entry for a client public key, or NULL. */
static const Pv__ClientKey *client_of(const uint8_t pub[PV_KEY_BYTES])
{
	const Pv__Catalog *c = catalog_committed();

	for (size_t i = 0; c && i < c->n_clients; i++)
		if (c->clients[i]->public_key.len == PV_KEY_BYTES &&
		    !memcmp(c->clients[i]->public_key.data, pub, PV_KEY_BYTES))
			return c->clients[i];
	return NULL;
}

int auth_client_ok(const uint8_t pub[PV_KEY_BYTES])
{
	const Pv__ClientKey *ck = client_of(pub);

	return ck && !ck->revoked;
}

/* Who holds the key pub: the role, and who for the answer's user id (or
 * the reason of a refusal). */
static enum auth_role role_of_key(const uint8_t pub[PV_KEY_BYTES], char *who, size_t wholen)
{
	const Pv__ClientKey *ck;
	char fp[17];

	for (size_t i = 0; i < nmem; i++)
		if (!sodium_memcmp(pub, mem_pub[i], PV_KEY_BYTES)) {
			snprintf(who, wholen, USER_SERVER);
			return AUTH_SERVER;
		}
	ck = client_of(pub);
	pv_key_fingerprint(pub, fp);
	if (ck && !ck->revoked) {
		snprintf(who, wholen, USER_CLIENT "%s %s", fp, ck->name);
		return AUTH_CLIENT;
	}
	if (ck)
		snprintf(who, wholen, "the key of client %s was revoked (catalog version %llu)",
			 ck->name, (unsigned long long)ck->revoked_version);
	else if (!sodium_memcmp(pub, id_pub, PV_KEY_BYTES))
		snprintf(who, wholen, "the group's public key is not a client key");
	else
		snprintf(who, wholen, "unknown key %s (not this group's, nor a client's)", fp);
	return AUTH_NOBODY;
}

enum auth_role auth_link_lookup(const uint8_t id[PV_KEY_BYTES], uint8_t k[PV_KEY_BYTES],
				char *who, size_t wholen)
{
	enum auth_role r = role_of_key(id, who, wholen);

	if (r == AUTH_SERVER) {
		for (size_t i = 0; i < nmem; i++)
			if (!sodium_memcmp(id, mem_pub[i], PV_KEY_BYTES))
				pv_member_link_key(i ? key.group.previous : key.group.secret, k);
	} else if (r == AUTH_CLIENT) {
		if (pv_client_link_key_server(&key.group, id, k) < 0) {
			snprintf(who, wholen, "a client key that is not a valid public key");
			return AUTH_NOBODY;
		}
	}
	return r;
}

static void refusal(const char *how, const char *from, const char *why)
{
	uint64_t now = pv_now_ms();

	refused++;
	if (refused <= 20 || now - refused_logged_ms >= 10000) {
		if (refused_quiet)
			pv_warn("%llu more connections refused since the last line",
				(unsigned long long)refused_quiet);
		refused_quiet = 0;
		refused_logged_ms = now;
		pv_warn("refused a %s connection from %s: %s (%llu refused so far)", how, from, why,
			(unsigned long long)refused);
		return;
	}
	refused_quiet++;
}

void auth_refused_link(const char *from, const char *why)
{
	refusal("link", from, why);
}

/* Sends one ZAP reply: status code, text, user id. */
static void zap_reply(const struct pv_zap_request *r, const char *code, const char *text,
		      const char *user)
{
	zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
	zmq_send(zap, r->request_id, r->request_id_len, ZMQ_SNDMORE);
	zmq_send(zap, code, strlen(code), ZMQ_SNDMORE);
	zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(zap, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(zap, "", 0, 0);
}

/* Answers one ZAP request; -1 when there is none. */
static int zap_one(void)
{
	zmq_msg_t f[PV_ZAP_FRAMES_MAX];
	const void *data[PV_ZAP_FRAMES_MAX];
	size_t sizes[PV_ZAP_FRAMES_MAX], n = 0, total = 0;
	struct pv_zap_request r;
	char err[200], who[200];
	int more = 1;

	zmq_msg_init(&f[0]);
	if (zmq_msg_recv(&f[0], zap, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&f[0]);
		return -1;
	}
	n = total = 1;
	more = zmq_msg_more(&f[0]);
	while (more) {
		zmq_msg_t extra, *m = n < PV_ZAP_FRAMES_MAX ? &f[n] : &extra;

		zmq_msg_init(m);
		if (zmq_msg_recv(m, zap, 0) < 0) {
			zmq_msg_close(m);
			break;
		}
		more = zmq_msg_more(m);
		total++;
		if (m == &extra)
			zmq_msg_close(m);
		else
			n++;
	}
	for (size_t i = 0; i < n; i++) {
		data[i] = zmq_msg_data(&f[i]);
		sizes[i] = zmq_msg_size(&f[i]);
	}
	if (pv_zap_parse(data, sizes, total > n ? PV_ZAP_FRAMES_MAX + 1 : n, &r, err,
			 sizeof(err)) < 0) {
		/* libzmq itself sent it: a REP must answer something */
		memset(&r, 0, sizeof(r));
		if (n > 1 && sizes[1] <= sizeof(r.request_id)) {
			memcpy(r.request_id, data[1], sizes[1]);
			r.request_id_len = sizes[1];
		}
		pv_err("malformed ZAP request: %s", err);
		zap_reply(&r, "500", err, "");
	} else if (!r.has_client_key) {
		refusal("ZeroMQ", r.address, "not a CURVE connection (this group needs a key)");
		zap_reply(&r, "400", "this group needs a key", "");
	} else if (role_of_key(r.client_key, who, sizeof(who)) == AUTH_NOBODY) {
		refusal("ZeroMQ", r.address, who);
		zap_reply(&r, "400", who, "");
	} else
		zap_reply(&r, "200", "OK", who);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
	return 0;
}

void auth_zap_input(void *arg)
{
	(void)arg;
	for (int i = 0; i < 64 && zap_one() == 0; i++)
		;
}

int auth_zap_open(void)
{
	int linger = 0;

	if (!on)
		return 0;
	zap = zmq_socket(srv->zctx, ZMQ_REP);
	if (!zap || zmq_setsockopt(zap, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_bind(zap, ZAP_ENDPOINT) < 0) {
		pv_err("cannot start the ZAP handler (%s): %s", ZAP_ENDPOINT,
		       zmq_strerror(errno));
		return -1;
	}
	return 0;
}

void *auth_zap_socket(void)
{
	return zap;
}

void *auth_monitor_socket(void)
{
	return mon;
}


static void mon_event(uint16_t event, uint32_t value)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64] = "?", addr[80];

	switch (event) {
	case ZMQ_EVENT_ACCEPTED:
		if (value >= MON_FDS)
			return;
		if (getpeername((int)value, (struct sockaddr *)&ss, &len) == 0 &&
		    ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			snprintf(addr, sizeof(addr), "%s:%u", host, ntohs(in->sin_port));
		} else
			snprintf(addr, sizeof(addr), "an unknown address");
		free(mon_addr[value]);
		mon_addr[value] = strdup(addr);
		return;
	case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
	case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
		mon_failed = 1;
		return;
	case ZMQ_EVENT_DISCONNECTED:
		if (mon_failed)
			refusal("ZeroMQ",
				value < MON_FDS && mon_addr[value] ? mon_addr[value]
								   : "an unknown address",
				"the key handshake failed (no key, a key of another group, or not "
				"ZeroMQ's CURVE)");
		mon_failed = 0;
		if (value < MON_FDS) {
			free(mon_addr[value]);
			mon_addr[value] = NULL;
		}
		return;
	}
}

void auth_monitor_input(void *arg)
{
	(void)arg;
	for (int i = 0; i < 64; i++) {
		zmq_msg_t ev;
		uint16_t event = 0;
		uint32_t value = 0;
		int more;

		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return;
		}
		if (zmq_msg_size(&ev) >= 6) {
			memcpy(&event, zmq_msg_data(&ev), sizeof(event));
			memcpy(&value, (char *)zmq_msg_data(&ev) + 2, sizeof(value));
		}
		more = zmq_msg_more(&ev);
		zmq_msg_close(&ev);
		while (more) { /* the endpoint frame */
			zmq_msg_init(&ev);
			more = zmq_msg_recv(&ev, mon, 0) >= 0 && zmq_msg_more(&ev);
			zmq_msg_close(&ev);
		}
		mon_event(event, value);
	}
}

int auth_monitor_open(void *router)
{
	const char *ep = "inproc://peerd-auth-monitor";
	int linger = 0;

	if (!on)
		return 0;
	if (zmq_socket_monitor(router, ep,
			       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
				   ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
				   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) < 0 ||
	    !(mon = zmq_socket(srv->zctx, ZMQ_PAIR)) ||
	    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_connect(mon, ep) < 0) {
		pv_err("cannot watch the ROUTER's handshakes: %s", zmq_strerror(errno));
		return -1;
	}
	return 0;
}

void auth_catalog_installed(void)
{
	const Pv__Catalog *c = catalog_committed();
	struct revoked *r, *tmp;

	HASH_ITER(hh, revoked_names, r, tmp)
	{
		HASH_DEL(revoked_names, r);
		free(r);
	}
	for (size_t i = 0; c && i < c->n_clients; i++) {
		if (!c->clients[i]->revoked || c->clients[i]->public_key.len != PV_KEY_BYTES)
			continue;
		r = calloc(1, sizeof(*r));
		if (!r)
			continue;
		pv_key_fingerprint(c->clients[i]->public_key.data, r->fp);
		HASH_ADD_STR(revoked_names, fp, r);
	}
	linkset_auth_changed(); /* links of keys revoked since */
}

enum auth_role auth_router_role(zmq_msg_t *first)
{
	const char *user;
	struct revoked *r;

	if (!on)
		return AUTH_OPEN;
	user = zmq_msg_gets(first, "User-Id");
	if (!user)
		return AUTH_NOBODY;
	if (!strcmp(user, USER_SERVER))
		return AUTH_SERVER;
	if (strncmp(user, USER_CLIENT, strlen(USER_CLIENT)))
		return AUTH_NOBODY;
	if (!revoked_names)
		return AUTH_CLIENT;
	{
		char fp[17];

		snprintf(fp, sizeof(fp), "%s", user + strlen(USER_CLIENT));
		HASH_FIND_STR(revoked_names, fp, r);
	}
	return r ? AUTH_NOBODY : AUTH_CLIENT;
}

/* ---- client keys in the catalog (peerctl client add/list/revoke) ---- */

struct client_change {
	int add; /* else revoke */
	char name[PV_KEY_NAME_MAX + 1];
	uint8_t pub[PV_KEY_BYTES];
	auth_done_fn done;
	void *arg;
	int why; /* ENOENT, EEXIST: the command's exit code */
};

/* The catalog's live (not revoked) entry named name, or -1. */
static long live_client(const Pv__Catalog *c, const char *name)
{
	for (size_t i = 0; i < c->n_clients; i++)
		if (!c->clients[i]->revoked && c->clients[i]->name &&
		    !strcmp(c->clients[i]->name, name))
			return (long)i;
	return -1;
}

static int client_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct client_change *cc = arg;
	Pv__ClientKey *ck, **arr;
	long i = live_client(next, cc->name);

	cc->why = 0;
	if (!cc->add) {
		if (i < 0) {
			snprintf(err, errlen, "no client '%s' (see peerctl client list)", cc->name);
			cc->why = ENOENT;
			return -1;
		}
		next->clients[i]->revoked = 1;
		next->clients[i]->revoked_version = next->version;
		return 0;
	}
	if (i >= 0) {
		snprintf(err, errlen,
			 "client '%s' has a key already (revoke it first, or pick another name)",
			 cc->name);
		cc->why = EEXIST;
		return -1;
	}
	for (size_t j = 0; j < next->n_clients; j++)
		if (next->clients[j]->public_key.len == PV_KEY_BYTES &&
		    !memcmp(next->clients[j]->public_key.data, cc->pub, PV_KEY_BYTES)) {
			snprintf(err, errlen, "this public key is client '%s's already",
				 next->clients[j]->name);
			cc->why = EEXIST;
			return -1;
		}
	if (next->n_clients >= AUTH_MAX_CLIENTS) {
		snprintf(err, errlen, "the group holds %d client keys already (revoked included)",
			 AUTH_MAX_CLIENTS);
		return -1;
	}
	ck = malloc(sizeof(*ck));
	arr = realloc(next->clients, (next->n_clients + 1) * sizeof(*arr));
	if (arr)
		next->clients = arr;
	if (ck)
		pv__client_key__init(ck);
	if (!ck || !arr || !(ck->public_key.data = malloc(PV_KEY_BYTES))) {
		free(ck);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(ck->public_key.data, cc->pub, PV_KEY_BYTES);
	ck->public_key.len = PV_KEY_BYTES;
	ck->name = catalog_strdup(cc->name);
	ck->added_version = next->version;
	next->clients[next->n_clients++] = ck;
	return ck->name ? 0 : -1;
}

static void client_done(void *arg, int ok, const char *err)
{
	struct client_change *cc = arg;

	if (ok)
		pv_info("client key '%s' %s", cc->name, cc->add ? "added" : "revoked");
	cc->done(cc->arg, ok, cc->why, err);
	free(cc);
}

int auth_client_change(int add, const char *name, const uint8_t pub[PV_KEY_BYTES],
		       auth_done_fn done, void *arg, char *err, size_t errlen)
{
	struct client_change *cc;

	if (!on) {
		snprintf(err, errlen,
			 "this server runs without --auth: client keys mean nothing to it (start "
			 "every server with --auth GROUP.KEY first; docs/security.md)");
		return -1;
	}
	cc = calloc(1, sizeof(*cc));
	if (!cc) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cc->add = add;
	snprintf(cc->name, sizeof(cc->name), "%s", name);
	if (pub)
		memcpy(cc->pub, pub, PV_KEY_BYTES);
	cc->done = done;
	cc->arg = arg;
	return change_start(change_new(0, client_build, client_done, cc, "client %s: %s", name,
				       add ? "key added" : "key revoked"),
			    cc, err, errlen);
}

void auth_group_public(uint8_t pub[PV_KEY_BYTES])
{
	memcpy(pub, id_pub, PV_KEY_BYTES);
}

int auth_catalog_check(const Pv__Catalog *c, char *err, size_t errlen)
{
	if (c->n_clients > AUTH_MAX_CLIENTS) {
		snprintf(err, errlen, "%zu client keys (at most %d)", c->n_clients,
			 AUTH_MAX_CLIENTS);
		return 0;
	}
	for (size_t i = 0; i < c->n_clients; i++) {
		const Pv__ClientKey *k = c->clients[i];

		if (!k->name || !pv_client_name_ok(k->name) || k->public_key.len != PV_KEY_BYTES) {
			snprintf(err, errlen, "client key %zu has a bad name or public key", i);
			return 0;
		}
		for (size_t j = 0; j < i; j++)
			if (!memcmp(c->clients[j]->public_key.data, k->public_key.data,
				    PV_KEY_BYTES) ||
			    (!k->revoked && !c->clients[j]->revoked &&
			     !strcmp(c->clients[j]->name, k->name))) {
				snprintf(err, errlen, "client key '%s' is listed twice", k->name);
				return 0;
			}
	}
	return 1;
}
