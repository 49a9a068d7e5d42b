/* control_parse.c: decoding a control request (docs/control-protocol.md):
 * one JSON frame in, a checked struct control_cmd out, or the first reason
 * it is refused. Pure: no server state, no sockets; fuzzed by
 * tests/fuzz/fuzz_control.c and unit-tested by tests/unit/check_control.c.
 * Each command is a row of a table: its name and the parser of its
 * arguments. control.c runs what this returns. */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

#define CONTROL_MAX_REQUEST 65536
#define CONTROL_MAX_BIG	    16 /* numbers too large for jansson in one request */

/* A positive integer above 2^63 - 1, which jansson cannot hold, found under
 * "args" and read as 0 instead (load_request): where it stood and how it was
 * written, for the argument's reader to name. */
struct big_number {
	char key[32];	 /* at args.KEY... */
	long index;	 /* ...itself (-1), or element index of that array */
	char digits[64]; /* as written; a long one cut ("... (N digits)") */
};

/* A command's arguments, as its parser gets them. */
struct args {
	json_t *obj;		      /* the request's "args" ({} when absent) */
	uint64_t max_volume_size;     /* peerd --max-volume-size */
	const struct big_number *big; /* numbers in obj that jansson read as 0 */
	size_t nbig;
};

/* Checks a command's arguments into c; 0, or -1 with the reason in err. */
typedef int (*parse_fn)(const struct args *a, struct control_cmd *c, char *err, size_t errlen);

/* A command the control socket takes: its name and its arguments' parser. */
struct request_row {
	const char *name;
	parse_fn parse; /* NULL: the command takes no arguments (any are ignored) */
};

/* ---- argument helpers ---- */

/* Characters (UTF-8) in the first n bytes of s. */
static size_t chars(const char *s, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += ((unsigned char)s[i] & 0xc0) != 0x80;
	return k;
}

/* The number read as 0 that stood at args.KEY (index -1) or at element
 * index of the array args.KEY, or NULL. */
static const struct big_number *big_at(const struct args *a, const char *key, long index)
{
	for (size_t i = 0; i < a->nbig; i++)
		if (a->big[i].index == index && !strcmp(a->big[i].key, key))
			return &a->big[i];
	return NULL;
}

static int arg_string(const struct args *a, const char *key, const char **out, char *err,
		      size_t errlen)
{
	json_t *v = json_object_get(a->obj, key);
	char shown[PV_ESCAPE_NAME];
	size_t len, nul;

	if (!json_is_string(v)) {
		snprintf(err, errlen, "missing or invalid argument '%s'", key);
		return -1;
	}
	*out = json_string_value(v);
	len = json_string_length(v);
	nul = strlen(*out);
	if (nul < len) {
		snprintf(err, errlen, "%s '%s': contains a NUL character at position %zu", key,
			 pv_escape(*out, len, shown, sizeof(shown)), chars(*out, nul) + 1);
		return -1;
	}
	return 0;
}

/* An integer argument from 0 to INT64_MAX; one jansson could not hold is
 * refused as larger than max (the argument's own limit; note follows it);
 * what names its values ("a number of bytes"). */
static int arg_u64(const struct args *a, const char *key, int required, uint64_t max,
		   const char *note, const char *what, uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(a->obj, key);
	const struct big_number *big = big_at(a, key, -1);

	if (!v && !required) {
		*out = 0;
		return 0;
	}
	if (big && json_is_integer(v) && json_integer_value(v) == 0) {
		snprintf(err, errlen, "%s: %s is too large (maximum %llu%s)", key, big->digits,
			 (unsigned long long)max, note);
		return -1;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, errlen, "missing or invalid argument '%s' (%s)", key, what);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

#define BYTES "a number of bytes"

/* The list of server ids at args.servers into c (at most PEERD_MAX_MEMBERS,
 * each > 0; distinct if distinct is set). Absent or null: none, unless
 * required (then at least one). 0, or -1 with err. */
static int arg_servers(const struct args *a, int required, int distinct, struct control_cmd *c,
		       char *err, size_t errlen)
{
	json_t *list = json_object_get(a->obj, "servers"), *v;
	size_t i;

	if (!list || json_is_null(list)) {
		if (!required)
			return 0;
		list = NULL;
	}
	if (!json_is_array(list) || json_array_size(list) > PEERD_MAX_MEMBERS ||
	    (required && !json_array_size(list))) {
		snprintf(err, errlen, "'servers' must be a list of %sserver ids",
			 required ? "1 to 64 " : "");
		return -1;
	}
	json_array_foreach(list, i, v)
	{
		const struct big_number *big = big_at(a, "servers", (long)i);

		if (big && json_is_integer(v) && json_integer_value(v) == 0) {
			snprintf(err, errlen, "servers: %s is too large (maximum %u)", big->digits,
				 UINT32_MAX);
			return -1;
		}
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) > UINT32_MAX) {
			snprintf(err, errlen, "'servers' must be a list of server ids");
			return -1;
		}
		c->servers[c->nservers] = (uint32_t)json_integer_value(v);
		for (size_t k = 0; distinct && k < c->nservers; k++)
			if (c->servers[k] == c->servers[c->nservers]) {
				snprintf(err, errlen, "server %u is listed twice", c->servers[k]);
				return -1;
			}
		c->nservers++;
	}
	return 0;
}

/* ---- argument parsers (pure) ---- */

static int parse_volume_create(const struct args *a, struct control_cmd *c, char *err,
			       size_t errlen)
{
	const char *name;
	uint64_t page_size;

	if (arg_string(a, "name", &name, err, errlen) < 0 ||
	    arg_u64(a, "size", 1, a->max_volume_size, ", peerd --max-volume-size", BYTES, &c->size,
		    err, errlen) < 0 ||
	    arg_u64(a, "page_size", 0, PV_MAX_PAGE_SIZE, "", BYTES, &page_size, err, errlen) < 0)
		return -1;
	if (page_size > UINT32_MAX) {
		snprintf(err, errlen, "page size too large");
		return -1;
	}
	if (arg_servers(a, 0, 0, c, err, errlen) < 0)
		return -1;
	/* catalog_volume_create's first checks, in its order (it makes them
	 * again); those that need the catalog stay there */
	if (!pv_valid_name(name, err, errlen) ||
	    !pv_valid_volume_size(c->size, a->max_volume_size, err, errlen))
		return -1;
	if (page_size && !pv_valid_page_size((uint32_t)page_size, err, errlen))
		return -1;
	c->page_size = (uint32_t)page_size;
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
}

/* The name of an existing volume at args.KEY. A name pv_valid_name refuses
 * was never created, so it gets the answer a lookup would give. */
static int arg_volume(const struct args *a, const char *key, struct control_cmd *c, char *err,
		      size_t errlen)
{
	char shown[PV_ESCAPE_NAME];
	const char *name;

	if (arg_string(a, key, &name, err, errlen) < 0)
		return -1;
	if (!pv_valid_name(name, NULL, 0)) {
		snprintf(err, errlen, "no volume '%s'",
			 pv_escape(name, strlen(name), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
}

static int parse_volume_name(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	return arg_volume(a, "name", c, err, errlen);
}

static int parse_volume_show(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	if (parse_volume_name(a, c, err, errlen) < 0)
		return -1;
	c->routing = json_is_true(json_object_get(a->obj, "routing"));
	return 0;
}

static int parse_volume_delete(const struct args *a, struct control_cmd *c, char *err,
			       size_t errlen)
{
	if (parse_volume_name(a, c, err, errlen) < 0)
		return -1;
	c->force = json_is_true(json_object_get(a->obj, "force"));
	c->with_snapshots = json_is_true(json_object_get(a->obj, "with_snapshots"));
	return 0;
}

/* A snapshot name at args.name (a name pv_valid_name refuses was never
 * made: the answer a lookup would give). */
static int arg_snapshot(const struct args *a, struct control_cmd *c, int fresh, char *err,
			size_t errlen)
{
	char shown[PV_ESCAPE_NAME], why[256];
	const char *name;

	if (arg_string(a, "name", &name, err, errlen) < 0)
		return -1;
	if (!pv_valid_name(name, why, sizeof(why))) {
		if (fresh)
			snprintf(err, errlen, "snapshot %s", why);
		else
			snprintf(err, errlen, "volume %s has no snapshot '%s'", c->name,
				 pv_escape(name, strlen(name), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->snap, sizeof(c->snap), "%s", name);
	return 0;
}

static int parse_snapshot_create(const struct args *a, struct control_cmd *c, char *err,
				 size_t errlen)
{
	const char *mode = "hold";
	uint64_t timeout;

	if (arg_volume(a, "volume", c, err, errlen) < 0 || arg_snapshot(a, c, 1, err, errlen) < 0)
		return -1;
	if (json_object_get(a->obj, "mode") && arg_string(a, "mode", &mode, err, errlen) < 0)
		return -1;
	if (strcmp(mode, "hold") && strcmp(mode, "timestamp")) {
		snprintf(err, errlen, "snapshot mode must be 'hold' or 'timestamp'");
		return -1;
	}
	snprintf(c->mode, sizeof(c->mode), "%s", mode);
	if (arg_u64(a, "timeout_ms", 0, SNAP_TIMEOUT_MAX, "", "milliseconds", &timeout, err,
		    errlen) < 0)
		return -1;
	if (timeout > SNAP_TIMEOUT_MAX || (timeout && timeout < 100)) {
		snprintf(err, errlen, "snapshot timeout %llu ms is out of range: 100 to %d",
			 (unsigned long long)timeout, SNAP_TIMEOUT_MAX);
		return -1;
	}
	c->timeout_ms = (uint32_t)timeout;
	return 0;
}

static int parse_snapshot_list(const struct args *a, struct control_cmd *c, char *err,
			       size_t errlen)
{
	if (!json_object_get(a->obj, "volume") || json_is_null(json_object_get(a->obj, "volume")))
		return 0;
	return arg_volume(a, "volume", c, err, errlen);
}

static int parse_snapshot_named(const struct args *a, struct control_cmd *c, char *err,
				size_t errlen)
{
	if (arg_volume(a, "volume", c, err, errlen) < 0 || arg_snapshot(a, c, 0, err, errlen) < 0)
		return -1;
	return 0;
}

static int parse_snapshot_rollback(const struct args *a, struct control_cmd *c, char *err,
				   size_t errlen)
{
	if (parse_snapshot_named(a, c, err, errlen) < 0)
		return -1;
	c->force = json_is_true(json_object_get(a->obj, "force"));
	return 0;
}

static int parse_snapshot_diff(const struct args *a, struct control_cmd *c, char *err,
			       size_t errlen)
{
	char shown[PV_ESCAPE_NAME];
	const char *from;

	if (parse_snapshot_named(a, c, err, errlen) < 0)
		return -1;
	if (!json_object_get(a->obj, "from") || json_is_null(json_object_get(a->obj, "from")))
		return 0;
	if (arg_string(a, "from", &from, err, errlen) < 0)
		return -1;
	if (!pv_valid_name(from, NULL, 0)) {
		snprintf(err, errlen, "volume %s has no snapshot '%s'", c->name,
			 pv_escape(from, strlen(from), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->from, sizeof(c->from), "%s", from);
	return 0;
}

/* A positive integer argument up to max, or absent (0) when optional;
 * what: how to name the values ("a server id"). */
static int arg_count(const struct args *a, const char *key, int required, uint64_t max,
		     const char *what, uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(a->obj, key);
	const struct big_number *big = big_at(a, key, -1);

	*out = 0;
	if (!v && !required)
		return 0;
	if (big && json_is_integer(v) && json_integer_value(v) == 0) {
		snprintf(err, errlen, "%s: %s is too large (maximum %llu)", key, big->digits,
			 (unsigned long long)max);
		return -1;
	}
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		snprintf(err, errlen, "missing or invalid argument '%s' (%s, 1 to %llu)", key, what,
			 (unsigned long long)max);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_member(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	uint64_t id;

	if (arg_count(a, "id", 1, UINT32_MAX, "a server id", &id, err, errlen) < 0)
		return -1;
	c->id = (uint32_t)id;
	c->force = json_is_true(json_object_get(a->obj, "force"));
	return 0;
}

static int parse_group_join(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	char shown[CONTROL_MAX_ADDRESS + PV_ESCAPE_NAME];
	const char *address;
	uint64_t timeout;

	if (arg_string(a, "address", &address, err, errlen) < 0 ||
	    arg_count(a, "timeout", 0, CONTROL_MAX_TIMEOUT, "seconds", &timeout, err, errlen) < 0)
		return -1;
	c->timeout = (unsigned)timeout;
	if (strncmp(address, "tcp://", 6) || strlen(address) > CONTROL_MAX_ADDRESS) {
		snprintf(err, errlen, "address '%s' is not a tcp://HOST:PORT endpoint",
			 pv_escape(address, strlen(address), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->address, sizeof(c->address), "%s", address);
	return 0;
}

#define PAGE "a page number"

static int parse_page_move(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	uint64_t to, piece;

	if (arg_volume(a, "volume", c, err, errlen) < 0 ||
	    arg_u64(a, "first", 1, INT64_MAX, "", PAGE, &c->first, err, errlen) < 0 ||
	    arg_u64(a, "last", 0, INT64_MAX, "", PAGE, &c->last, err, errlen) < 0 ||
	    arg_count(a, "to", 1, UINT32_MAX, "a server id", &to, err, errlen) < 0 ||
	    arg_u64(a, "piece_size", 0, PV_MAX_IO, "", BYTES, &piece, err, errlen) < 0)
		return -1;
	if (!json_object_get(a->obj, "last"))
		c->last = c->first;
	if (c->last < c->first) {
		snprintf(err, errlen, "last page %llu is before first page %llu",
			 (unsigned long long)c->last, (unsigned long long)c->first);
		return -1;
	}
	if (piece % PV_SECTOR || piece > PV_MAX_IO) {
		snprintf(err, errlen, "piece size %llu must be a multiple of %u bytes, at most %u",
			 (unsigned long long)piece, PV_SECTOR, PV_MAX_IO);
		return -1;
	}
	c->to = (uint32_t)to;
	c->piece_size = (uint32_t)piece;
	return 0;
}

static int parse_page_show(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	if (arg_volume(a, "volume", c, err, errlen) < 0 ||
	    arg_u64(a, "page", 1, INT64_MAX, "", PAGE, &c->first, err, errlen) < 0)
		return -1;
	c->last = c->first;
	return 0;
}

static int parse_server_evacuate(const struct args *a, struct control_cmd *c, char *err,
				 size_t errlen)
{
	uint64_t id;

	if (arg_count(a, "id", 1, UINT32_MAX, "a server id", &id, err, errlen) < 0)
		return -1;
	c->id = (uint32_t)id;
	c->cancel = json_is_true(json_object_get(a->obj, "cancel"));
	return 0;
}

static int parse_volume_set_servers(const struct args *a, struct control_cmd *c, char *err,
				    size_t errlen)
{
	if (arg_volume(a, "volume", c, err, errlen) < 0)
		return -1;
	return arg_servers(a, 1, 1, c, err, errlen);
}

static int parse_group_set_weight(const struct args *a, struct control_cmd *c, char *err,
				  size_t errlen)
{
	uint64_t id, w;

	if (arg_count(a, "id", 1, UINT32_MAX, "a server id", &id, err, errlen) < 0 ||
	    arg_count(a, "weight", 1, PLACEMENT_MAX_WEIGHT, "a weight", &w, err, errlen) < 0)
		return -1;
	c->id = (uint32_t)id;
	c->weight = (uint32_t)w;
	return 0;
}

#define SETTINGS "migrate.max-mbps, balance.threshold, balance.interval"

/* balance.threshold: a number from 0.01 to BALANCE_MAX_THRESHOLD / 1000,
 * into permille. */
static int arg_threshold(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	json_t *v = json_object_get(a->obj, "value");
	double x = json_is_number(v) ? json_number_value(v) : -1;

	if (!(x >= 0.01 && x <= BALANCE_MAX_THRESHOLD / 1000.0) || big_at(a, "value", -1)) {
		snprintf(err, errlen,
			 "balance.threshold must be a number from 0.01 to %d (the share over "
			 "the fair share that counts as overloaded; default %.2f)",
			 BALANCE_MAX_THRESHOLD / 1000, BALANCE_THRESHOLD_PM / 1000.0);
		return -1;
	}
	c->value = (uint32_t)(x * 1000 + 0.5);
	return 0;
}

static int parse_config_set(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	char shown[PV_ESCAPE_NAME];
	const char *key;
	uint64_t v;

	if (arg_string(a, "key", &key, err, errlen) < 0)
		return -1;
	if (!strcmp(key, "balance.threshold")) {
		c->key = CONTROL_KEY_BALANCE_THRESHOLD;
		return arg_threshold(a, c, err, errlen);
	}
	if (!strcmp(key, "balance.interval")) {
		c->key = CONTROL_KEY_BALANCE_INTERVAL;
		if (arg_u64(a, "value", 1, BALANCE_MAX_INTERVAL, "", "seconds", &v, err, errlen) <
		    0)
			return -1;
		if (v < 1 || v > BALANCE_MAX_INTERVAL) {
			snprintf(err, errlen,
				 "balance.interval %llu is out of range: 1 to %d seconds",
				 (unsigned long long)v, BALANCE_MAX_INTERVAL);
			return -1;
		}
		c->value = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "migrate.max-mbps")) {
		snprintf(err, errlen, "unknown setting '%s' (settings: " SETTINGS ")",
			 pv_escape(key, strlen(key), shown, sizeof(shown)));
		return -1;
	}
	c->key = CONTROL_KEY_MIGRATE_MBPS;
	if (arg_u64(a, "value", 1, PLACEMENT_MAX_MBPS, "", "MB/s, 0 for the default", &v, err,
		    errlen) < 0)
		return -1;
	if (v > PLACEMENT_MAX_MBPS) {
		snprintf(err, errlen,
			 "migrate.max-mbps %llu is out of range: 0 (the default, %d) to %d",
			 (unsigned long long)v, MIGRATE_MBPS_DEFAULT, PLACEMENT_MAX_MBPS);
		return -1;
	}
	c->value = (uint32_t)v;
	return 0;
}

/* client.add and client.revoke: "name", and for add "public_key", 64 hex
 * digits. */
static int parse_client(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	char shown[PV_ESCAPE_NAME];
	const char *name, *hex;
	size_t got = 0;

	if (arg_string(a, "name", &name, err, errlen) < 0)
		return -1;
	if (!pv_client_name_ok(name)) {
		snprintf(err, errlen, "client name '%s' is not 1 to %d of A-Za-z0-9._-",
			 pv_escape(name, strlen(name), shown, sizeof(shown)), PV_KEY_NAME_MAX);
		return -1;
	}
	snprintf(c->client, sizeof(c->client), "%s", name);
	if (c->op != CONTROL_CLIENT_ADD)
		return 0;
	if (arg_string(a, "public_key", &hex, err, errlen) < 0)
		return -1;
	if (strlen(hex) != 2 * PV_KEY_BYTES ||
	    sodium_hex2bin(c->client_key, PV_KEY_BYTES, hex, strlen(hex), NULL, &got, NULL) != 0 ||
	    got != PV_KEY_BYTES) {
		snprintf(err, errlen, "public_key must be %d hex digits", 2 * PV_KEY_BYTES);
		return -1;
	}
	return 0;
}

static const struct request_row requests[CONTROL_NCMDS] = {
    [CONTROL_STATUS] = {"status", NULL},
    [CONTROL_VOLUME_CREATE] = {"volume.create", parse_volume_create},
    [CONTROL_VOLUME_LIST] = {"volume.list", NULL},
    [CONTROL_VOLUME_SHOW] = {"volume.show", parse_volume_show},
    [CONTROL_VOLUME_DELETE] = {"volume.delete", parse_volume_delete},
    [CONTROL_GROUP_INIT] = {"group.init", NULL},
    [CONTROL_GROUP_JOIN] = {"group.join", parse_group_join},
    [CONTROL_GROUP_SHOW] = {"group.show", NULL},
    [CONTROL_GROUP_REMOVE] = {"group.remove", parse_member},
    [CONTROL_GROUP_LEAVE] = {"group.leave", parse_member},
    [CONTROL_PAGE_MOVE] = {"page.move", parse_page_move},
    [CONTROL_PAGE_SHOW] = {"page.show", parse_page_show},
    [CONTROL_MIGRATION_LIST] = {"migration.list", NULL},
    [CONTROL_SERVER_EVACUATE] = {"server.evacuate", parse_server_evacuate},
    [CONTROL_VOLUME_SET_SERVERS] = {"volume.set_servers", parse_volume_set_servers},
    [CONTROL_GROUP_SET_WEIGHT] = {"group.set_weight", parse_group_set_weight},
    [CONTROL_CONFIG_SET] = {"config.set", parse_config_set},
    [CONTROL_MIGRATE_PAUSE] = {"migrate.pause", NULL},
    [CONTROL_MIGRATE_RESUME] = {"migrate.resume", NULL},
    [CONTROL_LOAD_SHOW] = {"load.show", NULL},
    [CONTROL_BALANCE_STATUS] = {"balance.status", NULL},
    [CONTROL_BALANCE_ON] = {"balance.on", NULL},
    [CONTROL_BALANCE_OFF] = {"balance.off", NULL},
    [CONTROL_SNAPSHOT_CREATE] = {"snapshot.create", parse_snapshot_create},
    [CONTROL_SNAPSHOT_LIST] = {"snapshot.list", parse_snapshot_list},
    [CONTROL_SNAPSHOT_SHOW] = {"snapshot.show", parse_snapshot_named},
    [CONTROL_SNAPSHOT_DELETE] = {"snapshot.delete", parse_snapshot_named},
    [CONTROL_SNAPSHOT_DIFF] = {"snapshot.diff", parse_snapshot_diff},
    [CONTROL_SNAPSHOT_ROLLBACK] = {"snapshot.rollback", parse_snapshot_rollback},
    [CONTROL_CLIENT_ADD] = {"client.add", parse_client},
    [CONTROL_CLIENT_LIST] = {"client.list", NULL},
    [CONTROL_CLIENT_REVOKE] = {"client.revoke", parse_client},
};

/* ---- decoding a request (pure) ---- */

/* Whether the byte ch is one of set (never the NUL that ends set). */
static int one_of(const char *set, char ch)
{
	return ch != '\0' && strchr(set, ch) != NULL;
}

/* The index after the digits from p[i] on (n bytes in all). */
static size_t skip_digits(const char *p, size_t n, size_t i)
{
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	return i;
}

/* Whether the n > 0 bytes at p are exactly one JSON number:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_number(const char *p, size_t n)
{
	size_t i = p[0] == '-', from = i;

	i = i < n && p[i] == '0' ? i + 1 : skip_digits(p, n, i);
	if (i == from)
		return 0;
	if (i < n && p[i] == '.') {
		from = ++i;
		if ((i = skip_digits(p, n, i)) == from)
			return 0;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		from = i;
		if ((i = skip_digits(p, n, i)) == from)
			return 0;
	}
	return i == n;
}

/* Where the value that starts at off in the JSON text buf lies, jansson
 * having read buf past off (so it is valid JSON up to there): at args.KEY
 * (*index -1) or at element *index of the array args.KEY. Copies KEY into
 * key and returns 0; -1 for a value anywhere else. */
static int args_key(const char *buf, size_t off, char *key, size_t keylen, long *index)
{
	struct {
		char open;	     /* '{' or '[' */
		size_t key, key_len; /* its last key, quotes included (objects) */
		long index;	     /* its element at hand (arrays) */
	} lv[4] = {{0}};
	int depth = 0;
	json_t *k;

	for (size_t i = 0; i < off; i++) {
		size_t s = i, j;

		switch (buf[i]) {
		case '"':
			for (i++; i < off && buf[i] != '"'; i++)
				i += buf[i] == '\\';
			for (j = i + 1; j < off && one_of(" \t\r\n", buf[j]); j++)
				;
			if (j < off && buf[j] == ':' && depth >= 1 && depth <= 3) {
				lv[depth].key = s;
				lv[depth].key_len = i + 1 - s;
			}
			break;
		case '{':
		case '[':
			if (++depth <= 3) {
				lv[depth].open = buf[i];
				lv[depth].key_len = 0;
				lv[depth].index = 0;
			}
			break;
		case '}':
		case ']':
			depth--;
			break;
		case ',':
			if (depth >= 1 && depth <= 3)
				lv[depth].index++;
			break;
		}
	}
	if (depth < 2 || depth > 3 || lv[1].open != '{' || lv[2].open != '{' ||
	    (depth == 3 && lv[3].open != '['))
		return -1;
	/* the keys as jansson reads them, escapes decoded */
	k = json_loadb(buf + lv[1].key, lv[1].key_len, JSON_DECODE_ANY, NULL);
	if (!json_is_string(k) || strcmp(json_string_value(k), "args")) {
		json_decref(k);
		return -1;
	}
	json_decref(k);
	k = json_loadb(buf + lv[2].key, lv[2].key_len, JSON_DECODE_ANY, NULL);
	if (!json_is_string(k) || json_string_length(k) >= keylen) {
		json_decref(k);
		return -1;
	}
	snprintf(key, keylen, "%s", json_string_value(k));
	json_decref(k);
	*index = depth == 3 ? lv[3].index : -1;
	return 0;
}

/* Parses the request text. A string may hold a NUL (the argument readers
 * refuse it, naming the argument). jansson holds no integer above 2^63 - 1
 * and no real beyond a double: each such number is overwritten in a copy of
 * the text by one of its kind (0, -1 or 0.0, padded with spaces) and the
 * copy parsed again, up to CONTROL_MAX_BIG times. A positive integer under
 * "args" goes into big (*nbig of them) for the command reading it to name;
 * elsewhere it is ignored, like any value no command reads. Returns the
 * request, or NULL with the reason in err. */
static json_t *load_request(const char *buf, size_t len, struct big_number *big, size_t *nbig,
			    char *err, size_t errlen)
{
	char *copy = NULL;
	json_t *req = NULL;
	json_error_t jerr;

	for (int k = 0;; k++) {
		const char *text = copy ? copy : buf;
		size_t end, start, n;
		const char *patch;

		req = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
		if (req)
			break;
		if (json_error_code(&jerr) == json_error_null_byte_in_key) {
			snprintf(err, errlen, "request has a NUL character in an object key");
			break;
		}
		if (json_error_code(&jerr) != json_error_numeric_overflow || jerr.position <= 0 ||
		    (size_t)jerr.position > len)
			goto not_a_request;
		if (k == CONTROL_MAX_BIG) {
			snprintf(err, errlen, "request has more than %d numbers too large to read",
				 CONTROL_MAX_BIG);
			break;
		}
		/* the number ends where jansson stopped; what comes before it in
		 * valid JSON is never a character of a number */
		end = (size_t)jerr.position;
		for (start = end; start > 0 && one_of("0123456789+-.eE", text[start - 1]); start--)
			;
		n = end - start;
		if (n == 0 || !json_number(text + start, n) || (!copy && !(copy = malloc(len))))
			goto not_a_request;
		if (text == buf)
			memcpy(copy, buf, len);
		patch = copy[start] == '-' ? "-1" : "0";
		for (size_t i = start; i < end; i++)
			if (one_of(".eE+", copy[i]))
				patch = "0.0";
		if (strlen(patch) > n)
			goto not_a_request;
		if (*patch == '0' && patch[1] == '\0') {
			struct big_number *b = &big[*nbig];

			if (args_key(copy, start, b->key, sizeof(b->key), &b->index) == 0) {
				if (n <= 40)
					snprintf(b->digits, sizeof(b->digits), "%.*s", (int)n,
						 copy + start);
				else
					snprintf(b->digits, sizeof(b->digits),
						 "%.24s... (%zu digits)", copy + start, n);
				(*nbig)++;
			}
		}
		memset(copy + start, ' ', n);
		memcpy(copy + start, patch, strlen(patch));
	}
	free(copy);
	return req;

not_a_request:
	snprintf(err, errlen, "request is not a JSON object with a 'cmd'");
	free(copy);
	return NULL;
}

int control_parse(const void *buf, size_t len, uint64_t max_volume_size, struct control_cmd *out,
		  char *err, size_t errlen)
{
	struct big_number big[CONTROL_MAX_BIG];
	struct args a = {.max_volume_size = max_volume_size, .big = big};
	json_t *req, *cmd, *none = NULL;
	char shown[PV_ESCAPE_NAME];
	const char *name;
	size_t name_len;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (len > CONTROL_MAX_REQUEST) {
		snprintf(err, errlen, "request larger than %d bytes", CONTROL_MAX_REQUEST);
		return -1;
	}
	req = load_request(buf, len, big, &a.nbig, err, errlen);
	if (!req)
		return -1;
	cmd = json_object_get(req, "cmd");
	if (!json_is_object(req) || !json_is_string(cmd)) {
		snprintf(err, errlen, "request is not a JSON object with a 'cmd'");
		goto out;
	}
	name = json_string_value(cmd);
	name_len = json_string_length(cmd);
	a.obj = json_object_get(req, "args");
	if (a.obj && !json_is_object(a.obj)) {
		snprintf(err, errlen, "'args' must be an object");
		goto out;
	}
	for (out->op = 0; out->op < CONTROL_NCMDS; out->op++)
		if (strlen(requests[out->op].name) == name_len &&
		    !memcmp(requests[out->op].name, name, name_len))
			break;
	if (out->op == CONTROL_NCMDS) {
		size_t cut = 0;

		/* the first 64 characters */
		for (size_t c = 0; cut < name_len; cut++)
			if (((unsigned char)name[cut] & 0xc0) != 0x80 && c++ == 64)
				break;
		snprintf(err, errlen, "unknown command '%s'",
			 pv_escape(name, cut, shown, sizeof(shown)));
		goto out;
	}
	out->cmd = requests[out->op].name;
	if (requests[out->op].parse) {
		if (!a.obj)
			a.obj = none = json_object();
		rc = requests[out->op].parse(&a, out, err, errlen);
		json_decref(none);
	} else {
		rc = 0;
	}
out:
	json_decref(req);
	return rc;
}
