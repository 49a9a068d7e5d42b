/* control.c: the control socket that peerctl talks to (docs/control-protocol.md):
 * a ZeroMQ ROUTER on ipc://PATH, file mode 0600; one JSON request frame in,
 * one JSON reply frame out. Commands are rows of a table: a parser that
 * checks the arguments (control_parse, pure: no server state, no sockets,
 * fuzzed by tests/fuzz/fuzz_control.c) and a handler that runs the command.
 * Commands that change the catalog answer later: they hand the catalog code
 * (volume_admin.c, join.c) a catalog_done_fn and a struct pending, and the
 * answer is built here when it is called. The only file of peerd that builds
 * JSON. Reactor thread only. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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
typedef int (*cmd_fn)(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
		      json_t **result, char *err, size_t errlen);

struct cmd_row {
	const char *name;
	parse_fn parse; /* NULL: the command takes no arguments (any are ignored) */
	cmd_fn fn;	/* returns 0 (answer now), 1 (answered later) or -1 (err) */
};

/* ---- replies ---- */

/* Sends the answer to the control client ident: ok with result (stolen), or
 * the error. */
static void control_reply(const uint8_t *ident, size_t ident_len, int ok, json_t *json_result,
			  const char *err)
{
	json_t *r = ok ? json_pack("{s:b,s:o}", "ok", 1, "result",
				   json_result ? (json_t *)json_result : json_object())
		       : json_pack("{s:b,s:s}", "ok", 0, "error", err ? err : "failed");
	char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;

	if (!text) {
		pv_err("control: cannot encode a reply");
		json_decref(r);
		return;
	}
	if (zmq_send(srv->control, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->control, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->control, text, strlen(text), ZMQ_DONTWAIT) < 0)
		pv_debug("control: reply not sent: %s", zmq_strerror(errno));
	free(text);
	json_decref(r);
}

/* ---- views ---- */

static json_t *id_array(const uint32_t *ids, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

/* JSON of a volume (a new reference). */
static json_t *volume_json(struct volume *v, int routing)
{
	uint32_t holders[PEERD_MAX_MEMBERS];
	size_t nh = catalog_holders(v, holders, PEERD_MAX_MEMBERS);
	uint64_t written = 0, bytes = 0;
	uint32_t open;
	json_t *o;

	catalog_volume_usage(v, &written, &bytes, &open);
	o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:i,s:I}", "name", v->name, "id",
		      (json_int_t)v->id, "size", (json_int_t)v->size, "page_size",
		      (json_int_t)v->page_size, "pages", (json_int_t)v->npages, "pages_written",
		      (json_int_t)written, "bytes_allocated", (json_int_t)bytes, "servers",
		      id_array(v->servers, v->nservers), "holders", id_array(holders, nh),
		      "open_clients", (int)open, "created", (json_int_t)v->created);
	if (o && routing) {
		json_t *runs = json_array();
		uint64_t first = 0;

		for (uint64_t p = 1; p <= v->npages; p++) {
			if (p < v->npages && v->owner[p] == v->owner[first] &&
			    v->epoch[p] == v->epoch[first])
				continue;
			json_array_append_new(runs, json_pack("{s:I,s:I,s:i,s:I}", "first_page",
							      (json_int_t)first, "last_page",
							      (json_int_t)(p - 1), "owner",
							      (int)v->owner[first], "epoch",
							      (json_int_t)v->epoch[first]));
			first = p;
		}
		json_object_set_new(o, "routing", runs);
	}
	return o;
}

/* JSON of the group (a new reference). */
static json_t *group_json(void)
{
	json_t *members = json_array();

	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		uint64_t pages = 0;
		const char *state = m->id == srv->cfg.id ? "self" : m->up ? "up" : "down";

		for (struct volume *v = srv->volumes; v; v = v->next)
			for (uint64_t p = 0; p < v->npages; p++)
				pages += v->owner[p] == m->id;
		int self = m->id == srv->cfg.id;
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1] = "";

		if (self || m->has_catalog_hash)
			catalog_hash_hex(self ? srv->catalog_hash : m->catalog_hash,
					 PEERD_CATALOG_HASH_LEN, hash);
		json_array_append_new(
		    members,
		    json_pack("{s:i,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:s,s:b}", "id", (int)m->id,
			      "address", m->address, "weight", (int)m->weight, "state", state,
			      "pages", (json_int_t)pages, "bytes", (json_int_t)m->bytes, "free",
			      (json_int_t)m->free, "catalog_version",
			      (json_int_t)(self ? srv->version : m->catalog_version),
			      "catalog_hash", hash, "catalog_diverged", m->catalog_diverged));
	}
	{
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1];

		return json_pack("{s:s,s:I,s:s,s:b,s:o}", "group_id", srv->group_id,
				 "catalog_version", (json_int_t)srv->version, "catalog_hash",
				 catalog_hash_hex(srv->catalog_hash, PEERD_CATALOG_HASH_LEN, hash),
				 "catalog_diverged", srv->catalog_diverged, "members", members);
	}
}

/* ---- answers to commands that end later ---- */

/* A command waiting for its catalog change: whom to answer, about what. */
struct pending {
	uint8_t ident[PV_MAX_IDENTITY];
	size_t ident_len;
	char name[PV_MAX_NAME + 1]; /* volume.delete: the volume */
};

static struct pending *pending_new(const uint8_t *ident, size_t ident_len, const char *name,
				   char *err, size_t errlen)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(p->ident, ident, ident_len);
	p->ident_len = ident_len;
	snprintf(p->name, sizeof(p->name), "%s", name);
	return p;
}

/* Answers p (result when ok, else err; nobody when err is NULL: peerd is
 * stopping) and frees it. */
static void pending_end(struct pending *p, int ok, json_t *result, const char *err)
{
	if (ok)
		control_reply(p->ident, p->ident_len, 1, result, NULL);
	else if (err)
		control_reply(p->ident, p->ident_len, 0, NULL, err);
	free(p);
}

/* catalog_done_fn of volume.create, volume.delete and group.join */
static void volume_created(void *arg, int ok, struct volume *vol, const char *err)
{
	pending_end(arg, ok, ok ? volume_json(vol, 0) : NULL, err);
}

static void volume_deleted(void *arg, int ok, struct volume *vol, const char *err)
{
	struct pending *p = arg;

	pending_end(p, ok, ok ? json_pack("{s:s}", "name", p->name) : NULL, err);
}

static void group_joined(void *arg, int ok, struct volume *vol, const char *err)
{
	pending_end(arg, ok, ok ? group_json() : NULL, err);
}

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
 * refused as larger than max (the argument's own limit; note follows it). */
static int arg_u64(const struct args *a, const char *key, int required, uint64_t max,
		   const char *note, uint64_t *out, char *err, size_t errlen)
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
		snprintf(err, errlen, "missing or invalid argument '%s' (a number of bytes)", key);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* ---- argument parsers (pure) ---- */

static int parse_volume_create(const struct args *a, struct control_cmd *c, char *err,
			       size_t errlen)
{
	const char *name;
	uint64_t page_size;
	json_t *list = json_object_get(a->obj, "servers");

	if (arg_string(a, "name", &name, err, errlen) < 0 ||
	    arg_u64(a, "size", 1, a->max_volume_size, ", peerd --max-volume-size", &c->size, err,
		    errlen) < 0 ||
	    arg_u64(a, "page_size", 0, PV_MAX_PAGE_SIZE, "", &page_size, err, errlen) < 0)
		return -1;
	if (page_size > UINT32_MAX) {
		snprintf(err, errlen, "page size too large");
		return -1;
	}
	if (list && !json_is_null(list)) {
		size_t i;
		json_t *v;

		if (!json_is_array(list) || json_array_size(list) > PEERD_MAX_MEMBERS) {
			snprintf(err, errlen, "'servers' must be a list of server ids");
			return -1;
		}
		json_array_foreach(list, i, v)
		{
			const struct big_number *big = big_at(a, "servers", (long)i);

			if (big && json_is_integer(v) && json_integer_value(v) == 0) {
				snprintf(err, errlen, "servers: %s is too large (maximum %u)",
					 big->digits, UINT32_MAX);
				return -1;
			}
			if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
			    json_integer_value(v) > UINT32_MAX) {
				snprintf(err, errlen, "'servers' must be a list of server ids");
				return -1;
			}
			c->servers[c->nservers++] = (uint32_t)json_integer_value(v);
		}
	}
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

/* The name of an existing volume. A name pv_valid_name refuses was never
 * created, so it gets the answer a lookup would give. */
static int parse_volume_name(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	char shown[PV_ESCAPE_NAME];
	const char *name;

	if (arg_string(a, "name", &name, err, errlen) < 0)
		return -1;
	if (!pv_valid_name(name, NULL, 0)) {
		snprintf(err, errlen, "no volume '%s'",
			 pv_escape(name, strlen(name), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
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
	return 0;
}

static int parse_group_join(const struct args *a, struct control_cmd *c, char *err, size_t errlen)
{
	char shown[CONTROL_MAX_ADDRESS + PV_ESCAPE_NAME];
	const char *address;

	if (arg_string(a, "address", &address, err, errlen) < 0)
		return -1;
	if (strncmp(address, "tcp://", 6) || strlen(address) > CONTROL_MAX_ADDRESS) {
		snprintf(err, errlen, "address '%s' is not a tcp://HOST:PORT endpoint",
			 pv_escape(address, strlen(address), shown, sizeof(shown)));
		return -1;
	}
	snprintf(c->address, sizeof(c->address), "%s", address);
	return 0;
}

/* ---- commands ---- */

static int cmd_status(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
		      json_t **result, char *err, size_t errlen)
{
	uint64_t links_up, links_in, link_sent, link_received;
	char link_addr[64] = "";

	linkset_stats(&links_up, &links_in, &link_sent, &link_received);
	if (linkset_address(link_addr, sizeof(link_addr)) < 0)
		link_addr[0] = '\0';
	*result = json_pack(
	    "{s:i,s:s,s:s,s:I,s:s,s:I,s:s,s:I,s:I,s:I,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,"
	    "s:I,s:I,s:I,s:I,s:b}",
	    "server_id", (int)srv->cfg.id, "address", srv->cfg.listen, "version", PV_VERSION_STRING,
	    "catalog_version", (json_int_t)srv->version, "group_id", srv->group_id, "uptime_s",
	    (json_int_t)((pv_now_ms() - srv->started_ms) / 1000), "data_dir", srv->cfg.data_dir,
	    "requests_in_flight", (json_int_t)request_inflight(), "parts_forwarded_in_flight",
	    (json_int_t)forward_inflight(), "bad_frames", (json_int_t)ops_bad_frames(), "clients",
	    (int)clients_count(), "shm_clients", (int)shm_count(), "batches_sent",
	    (json_int_t)batch_cork_batches(srv->cork), "batch_records_sent",
	    (json_int_t)batch_cork_records(srv->cork), "batches_received",
	    (json_int_t)ops_batches_received(), "batch_records_received",
	    (json_int_t)ops_batch_records_received(), "sends_dropped",
	    (json_int_t)batch_cork_dropped(srv->cork), "peer_link_address", link_addr,
	    "peer_links_up", (json_int_t)links_up, "peer_links_accepted", (json_int_t)links_in,
	    "link_records_sent", (json_int_t)link_sent, "link_records_received",
	    (json_int_t)link_received, "data_files_mapped", (json_int_t)ops_maps_given(),
	    "reads_mapped", (json_int_t)request_reads_mapped(), "data_free",
	    (json_int_t)store_free(), "disk_full", store_disk_full());
	if (*result) {
		char hash[2 * PEERD_CATALOG_HASH_LEN + 1];

		json_object_set_new(
		    *result, "catalog_hash",
		    json_string(catalog_hash_hex(srv->catalog_hash, PEERD_CATALOG_HASH_LEN, hash)));
		json_object_set_new(*result, "catalog_diverged",
				    json_boolean(srv->catalog_diverged));
	}
	return 0;
}

static int cmd_volume_create(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);

	if (!p)
		return -1;
	if (catalog_volume_create(c->name, c->size, c->page_size, c->servers, c->nservers,
				  volume_created, p, err, errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_volume_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	json_t *a = json_array();

	for (struct volume *v = srv->volumes; v; v = v->next)
		json_array_append_new(a, volume_json(v, 0));
	*result = json_pack("{s:o}", "volumes", a);
	return 0;
}

static int cmd_volume_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	struct volume *v = catalog_volume(c->name);

	if (!v) {
		snprintf(err, errlen, "no volume '%s'", c->name);
		return -1;
	}
	*result = volume_json(v, c->routing);
	return 0;
}

static int cmd_volume_delete(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, c->name, err, errlen);

	if (!p)
		return -1;
	if (catalog_volume_delete(c->name, c->force, volume_deleted, p, err, errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_group_init(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	/* every server starts as a group of one; init confirms it */
	if (srv->nmembers > 1) {
		snprintf(err, errlen, "this server is already in a group of %zu members",
			 srv->nmembers);
		return -1;
	}
	*result = group_json();
	return 0;
}

static int cmd_group_join(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	struct pending *p = pending_new(ident, ident_len, "", err, errlen);

	if (!p)
		return -1;
	if (catalog_join_start(c->address, group_joined, p, err, errlen) < 0) {
		free(p);
		return -1;
	}
	return 1;
}

static int cmd_group_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	*result = group_json();
	return 0;
}

static const struct cmd_row commands[CONTROL_NCMDS] = {
    [CONTROL_STATUS] = {"status", NULL, cmd_status},
    [CONTROL_VOLUME_CREATE] = {"volume.create", parse_volume_create, cmd_volume_create},
    [CONTROL_VOLUME_LIST] = {"volume.list", NULL, cmd_volume_list},
    [CONTROL_VOLUME_SHOW] = {"volume.show", parse_volume_show, cmd_volume_show},
    [CONTROL_VOLUME_DELETE] = {"volume.delete", parse_volume_delete, cmd_volume_delete},
    [CONTROL_GROUP_INIT] = {"group.init", NULL, cmd_group_init},
    [CONTROL_GROUP_JOIN] = {"group.join", parse_group_join, cmd_group_join},
    [CONTROL_GROUP_SHOW] = {"group.show", NULL, cmd_group_show},
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
		if (strlen(commands[out->op].name) == name_len &&
		    !memcmp(commands[out->op].name, name, name_len))
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
	out->cmd = commands[out->op].name;
	if (commands[out->op].parse) {
		if (!a.obj)
			a.obj = none = json_object();
		rc = commands[out->op].parse(&a, out, err, errlen);
		json_decref(none);
	} else {
		rc = 0;
	}
out:
	json_decref(req);
	return rc;
}

/* ---- socket ---- */

static int socket_in_use(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return 0;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc == 0;
}

int control_open(void)
{
	char endpoint[PATH_MAX + 8], dir[PATH_MAX];
	char *slash;
	int linger = 0;

	if (strlen(srv->cfg.control) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		pv_err("control socket path %s is too long (max %zu)", srv->cfg.control,
		       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", srv->cfg.control);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			pv_err("cannot create directory %s for the control socket: %m", dir);
			return -1;
		}
	}
	if (socket_in_use(srv->cfg.control)) {
		pv_err("control socket %s is in use by another process; give this peerd its "
		       "own --control path",
		       srv->cfg.control);
		return -1;
	}
	unlink(srv->cfg.control);
	srv->control = zmq_socket(srv->zctx, ZMQ_ROUTER);
	snprintf(endpoint, sizeof(endpoint), "ipc://%s", srv->cfg.control);
	if (!srv->control ||
	    zmq_setsockopt(srv->control, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_bind(srv->control, endpoint) < 0) {
		pv_err("cannot bind control socket %s: %s", srv->cfg.control, zmq_strerror(errno));
		return -1;
	}
	if (chmod(srv->cfg.control, 0600) < 0) {
		pv_err("cannot make control socket %s private: %m", srv->cfg.control);
		return -1;
	}
	return 0;
}

void control_close(void)
{
	if (srv->control) {
		zmq_close(srv->control);
		unlink(srv->cfg.control);
	}
	srv->control = NULL;
}

void control_input(void *arg)
{
	for (int k = 0; k < 64; k++) {
		zmq_msg_t frames[4];
		size_t n = 0;
		int more = 1, rc;
		json_t *result = NULL;
		struct control_cmd cmd;
		char err[PV_MAX_MESSAGE] = "";
		const uint8_t *ident;
		size_t ident_len;

		while (more) {
			zmq_msg_t *f = &frames[n < 4 ? n : 3];

			if (n >= 4)
				zmq_msg_close(f);
			zmq_msg_init(f);
			if (zmq_msg_recv(f, srv->control, ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(f);
				break;
			}
			more = zmq_msg_more(f);
			if (n < 4)
				n++;
		}
		if (n == 0)
			return;
		/* REQ framing: [identity][empty][json] */
		if (n != 3 || zmq_msg_size(&frames[1]) != 0 ||
		    zmq_msg_size(&frames[0]) > PV_MAX_IDENTITY) {
			pv_warn("control: malformed request ignored");
			goto next;
		}
		ident = zmq_msg_data(&frames[0]);
		ident_len = zmq_msg_size(&frames[0]);

		/* control_parse refuses (and so answers) an over-long request too */
		if (control_parse(zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]),
				  srv->cfg.max_volume_size, &cmd, err, sizeof(err)) < 0) {
			if (cmd.cmd) /* a known command with bad arguments */
				pv_info("control: %s refused: %s", cmd.cmd, err);
			control_reply(ident, ident_len, 0, NULL, err);
			goto next;
		}
		rc = commands[cmd.op].fn(ident, ident_len, &cmd, &result, err, sizeof(err));
		if (rc == 0) {
			control_reply(ident, ident_len, 1, result, NULL);
		} else if (rc < 0) {
			pv_info("control: %s refused: %s", cmd.cmd, err);
			control_reply(ident, ident_len, 0, NULL, err);
		}
	next:
		for (size_t j = 0; j < n; j++)
			zmq_msg_close(&frames[j]);
	}
}
