/* control.c: the control socket that peerctl talks to (docs/control-protocol.md):
 * a ZeroMQ ROUTER on ipc://PATH, file mode 0600; one JSON request frame in,
 * one JSON reply frame out. Commands are rows of a table: a parser that
 * checks the arguments (control_parse, pure: no server state, no sockets,
 * fuzzed by tests/fuzz/fuzz_control.c) and a handler that runs the command.
 * Commands that change the catalog answer later, when the two-phase commit
 * is done. Reactor thread only. */
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

/* Checks a command's arguments into c; 0, or -1 with the reason in err. */
typedef int (*parse_fn)(json_t *args, uint64_t max_volume_size, struct control_cmd *c, char *err,
			size_t errlen);
typedef int (*cmd_fn)(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
		      json_t **result, char *err, size_t errlen);

struct cmd_row {
	const char *name;
	parse_fn parse; /* NULL: the command takes no arguments (any are ignored) */
	cmd_fn fn;	/* returns 0 (answer now), 1 (answered later) or -1 (err) */
};

/* ---- replies ---- */

void control_reply(const uint8_t *ident, size_t ident_len, int ok, void *json_result,
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

void *control_volume_json(struct volume *v, int routing)
{
	uint32_t holders[PEERD_MAX_MEMBERS];
	size_t nh = catalog_holders(v, holders, PEERD_MAX_MEMBERS);
	uint64_t written = 0, bytes = 0;
	uint32_t open = clients_open_count(v->name);
	json_t *o;

	store_stat(v, &v->written, &v->bytes);
	written = v->written;
	bytes = v->bytes;
	for (size_t i = 0; i < srv->nmembers; i++) {
		Pv__Heartbeat *hb = srv->members[i].last_hb;

		if (srv->members[i].id == srv->cfg.id || !hb)
			continue;
		for (size_t j = 0; j < hb->n_volumes; j++) {
			if (strcmp(hb->volumes[j]->name, v->name))
				continue;
			written += hb->volumes[j]->pages_written;
			bytes += hb->volumes[j]->bytes;
			open += hb->volumes[j]->open_clients;
		}
	}
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

void *control_group_json(void)
{
	json_t *members = json_array();

	for (size_t i = 0; i < srv->nmembers; i++) {
		struct member *m = &srv->members[i];
		uint64_t pages = 0;
		const char *state = m->id == srv->cfg.id ? "self" : m->up ? "up" : "down";

		for (struct volume *v = srv->volumes; v; v = v->next)
			for (uint64_t p = 0; p < v->npages; p++)
				pages += v->owner[p] == m->id;
		json_array_append_new(members,
				      json_pack("{s:i,s:s,s:i,s:s,s:I,s:I,s:I}", "id", (int)m->id,
						"address", m->address, "weight", (int)m->weight,
						"state", state, "pages", (json_int_t)pages, "bytes",
						(json_int_t)m->bytes, "free", (json_int_t)m->free));
	}
	return json_pack("{s:s,s:I,s:o}", "group_id", srv->group_id, "catalog_version",
			 (json_int_t)srv->version, "members", members);
}

/* ---- argument helpers ---- */

static int arg_string(json_t *args, const char *key, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(args, key);

	if (!json_is_string(v)) {
		snprintf(err, errlen, "missing or invalid argument '%s'", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int arg_u64(json_t *args, const char *key, int required, uint64_t *out, char *err,
		   size_t errlen)
{
	json_t *v = json_object_get(args, key);

	if (!v && !required) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, errlen, "missing or invalid argument '%s' (a number of bytes)", key);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* ---- argument parsers (pure) ---- */

static int parse_volume_create(json_t *args, uint64_t max_volume_size, struct control_cmd *c,
			       char *err, size_t errlen)
{
	const char *name;
	uint64_t page_size;
	json_t *list = json_object_get(args, "servers");

	if (arg_string(args, "name", &name, err, errlen) < 0 ||
	    arg_u64(args, "size", 1, &c->size, err, errlen) < 0 ||
	    arg_u64(args, "page_size", 0, &page_size, err, errlen) < 0)
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
	    !pv_valid_volume_size(c->size, max_volume_size, err, errlen))
		return -1;
	if (page_size && (page_size % PV_SECTOR || page_size < PV_MIN_PAGE_SIZE ||
			  page_size > PV_MAX_PAGE_SIZE)) {
		snprintf(err, errlen,
			 "page size %u must be a multiple of %u between %u and %u bytes",
			 (uint32_t)page_size, PV_SECTOR, PV_MIN_PAGE_SIZE, PV_MAX_PAGE_SIZE);
		return -1;
	}
	c->page_size = (uint32_t)page_size;
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
}

/* The name of an existing volume. A name pv_valid_name refuses was never
 * created, so it gets the answer a lookup would give. */
static int parse_volume_name(json_t *args, struct control_cmd *c, char *err, size_t errlen)
{
	const char *name;

	if (arg_string(args, "name", &name, err, errlen) < 0)
		return -1;
	if (!pv_valid_name(name, NULL, 0)) {
		snprintf(err, errlen, "no volume '%s'", name);
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
}

static int parse_volume_show(json_t *args, uint64_t max_volume_size, struct control_cmd *c,
			     char *err, size_t errlen)
{
	if (parse_volume_name(args, c, err, errlen) < 0)
		return -1;
	c->routing = json_is_true(json_object_get(args, "routing"));
	return 0;
}

static int parse_volume_delete(json_t *args, uint64_t max_volume_size, struct control_cmd *c,
			       char *err, size_t errlen)
{
	if (parse_volume_name(args, c, err, errlen) < 0)
		return -1;
	c->force = json_is_true(json_object_get(args, "force"));
	return 0;
}

static int parse_group_join(json_t *args, uint64_t max_volume_size, struct control_cmd *c,
			    char *err, size_t errlen)
{
	const char *address;

	if (arg_string(args, "address", &address, err, errlen) < 0)
		return -1;
	if (strncmp(address, "tcp://", 6) || strlen(address) > CONTROL_MAX_ADDRESS) {
		snprintf(err, errlen, "address '%s' is not a tcp://HOST:PORT endpoint", address);
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

	links_stats(&links_up, &links_in, &link_sent, &link_received);
	if (links_address(link_addr, sizeof(link_addr)) < 0)
		link_addr[0] = '\0';
	*result = json_pack(
	    "{s:i,s:s,s:s,s:I,s:s,s:I,s:s,s:I,s:I,s:I,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,"
	    "s:I,s:I,s:I}",
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
	    "reads_mapped", (json_int_t)request_reads_mapped());
	return 0;
}

static int cmd_volume_create(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	if (catalog_volume_create(c->name, c->size, c->page_size, c->servers, c->nservers, ident,
				  ident_len, err, errlen) < 0)
		return -1;
	return 1;
}

static int cmd_volume_list(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			   json_t **result, char *err, size_t errlen)
{
	json_t *a = json_array();

	for (struct volume *v = srv->volumes; v; v = v->next)
		json_array_append_new(a, control_volume_json(v, 0));
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
	*result = control_volume_json(v, c->routing);
	return 0;
}

static int cmd_volume_delete(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			     json_t **result, char *err, size_t errlen)
{
	if (catalog_volume_delete(c->name, c->force, ident, ident_len, err, errlen) < 0)
		return -1;
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
	*result = control_group_json();
	return 0;
}

static int cmd_group_join(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	if (catalog_join_start(c->address, ident, ident_len, err, errlen) < 0)
		return -1;
	return 1;
}

static int cmd_group_show(const uint8_t *ident, size_t ident_len, const struct control_cmd *c,
			  json_t **result, char *err, size_t errlen)
{
	*result = control_group_json();
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

int control_parse(const void *buf, size_t len, uint64_t max_volume_size, struct control_cmd *out,
		  char *err, size_t errlen)
{
	json_t *req, *args;
	json_error_t jerr;
	const char *name;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (len > CONTROL_MAX_REQUEST) {
		snprintf(err, errlen, "request larger than %d bytes", CONTROL_MAX_REQUEST);
		return -1;
	}
	req = json_loadb(buf, len, 0, &jerr);
	if (!req || !json_is_object(req) || !json_is_string(json_object_get(req, "cmd"))) {
		snprintf(err, errlen, "request is not a JSON object with a 'cmd'");
		goto out;
	}
	name = json_string_value(json_object_get(req, "cmd"));
	args = json_object_get(req, "args");
	if (args && !json_is_object(args)) {
		snprintf(err, errlen, "'args' must be an object");
		goto out;
	}
	for (out->op = 0; out->op < CONTROL_NCMDS; out->op++)
		if (!strcmp(commands[out->op].name, name))
			break;
	if (out->op == CONTROL_NCMDS) {
		snprintf(err, errlen, "unknown command '%.64s'", name);
		goto out;
	}
	out->cmd = commands[out->op].name;
	if (commands[out->op].parse) {
		json_t *none = args ? NULL : json_object();

		rc = commands[out->op].parse(args ? args : none, max_volume_size, out, err, errlen);
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

void control_input(void)
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
