/* control.c: the control socket that peerctl talks to (docs/control-protocol.md):
 * a ZeroMQ ROUTER on ipc://PATH, file mode 0600; one JSON request frame in,
 * one JSON reply frame out. Commands are rows of a table. Commands that
 * change the catalog answer later, when the two-phase commit is done.
 * Reactor thread only. */
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

typedef int (*cmd_fn)(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
		      char *err, size_t errlen);

struct cmd_row {
	const char *name;
	cmd_fn fn; /* returns 0 (answer now), 1 (answered later) or -1 (err) */
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

/* ---- commands ---- */

static int cmd_status(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
		      char *err, size_t errlen)
{
	*result =
	    json_pack("{s:i,s:s,s:s,s:I,s:s,s:I,s:s,s:I,s:I,s:I,s:i}", "server_id",
		      (int)srv->cfg.id, "address", srv->cfg.listen, "version", PV_VERSION_STRING,
		      "catalog_version", (json_int_t)srv->version, "group_id", srv->group_id,
		      "uptime_s", (json_int_t)((pv_now_ms() - srv->started_ms) / 1000), "data_dir",
		      srv->cfg.data_dir, "requests_in_flight", (json_int_t)request_inflight(),
		      "parts_forwarded_in_flight", (json_int_t)forward_inflight(), "bad_frames",
		      (json_int_t)ops_bad_frames(), "clients", (int)clients_count());
	return 0;
}

static int cmd_volume_create(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			     char *err, size_t errlen)
{
	const char *name;
	uint64_t size, page_size;
	uint32_t servers[PEERD_MAX_MEMBERS];
	size_t nservers = 0;
	json_t *list = json_object_get(args, "servers");

	if (arg_string(args, "name", &name, err, errlen) < 0 ||
	    arg_u64(args, "size", 1, &size, err, errlen) < 0 ||
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
			servers[nservers++] = (uint32_t)json_integer_value(v);
		}
	}
	if (catalog_volume_create(name, size, (uint32_t)page_size, servers, nservers, ident,
				  ident_len, err, errlen) < 0)
		return -1;
	return 1;
}

static int cmd_volume_list(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			   char *err, size_t errlen)
{
	json_t *a = json_array();

	for (struct volume *v = srv->volumes; v; v = v->next)
		json_array_append_new(a, control_volume_json(v, 0));
	*result = json_pack("{s:o}", "volumes", a);
	return 0;
}

static int cmd_volume_show(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			   char *err, size_t errlen)
{
	const char *name;
	struct volume *v;

	if (arg_string(args, "name", &name, err, errlen) < 0)
		return -1;
	v = catalog_volume(name);
	if (!v) {
		snprintf(err, errlen, "no volume '%s'", name);
		return -1;
	}
	*result = control_volume_json(v, json_is_true(json_object_get(args, "routing")));
	return 0;
}

static int cmd_volume_delete(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			     char *err, size_t errlen)
{
	const char *name;

	if (arg_string(args, "name", &name, err, errlen) < 0)
		return -1;
	if (catalog_volume_delete(name, json_is_true(json_object_get(args, "force")), ident,
				  ident_len, err, errlen) < 0)
		return -1;
	return 1;
}

static int cmd_group_init(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			  char *err, size_t errlen)
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

static int cmd_group_join(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			  char *err, size_t errlen)
{
	const char *address;

	if (arg_string(args, "address", &address, err, errlen) < 0)
		return -1;
	if (strncmp(address, "tcp://", 6) || strlen(address) > 200) {
		snprintf(err, errlen, "address '%s' is not a tcp://HOST:PORT endpoint", address);
		return -1;
	}
	if (catalog_join_start(address, ident, ident_len, err, errlen) < 0)
		return -1;
	return 1;
}

static int cmd_group_show(const uint8_t *ident, size_t ident_len, json_t *args, json_t **result,
			  char *err, size_t errlen)
{
	*result = control_group_json();
	return 0;
}

static const struct cmd_row commands[] = {
    {"status", cmd_status},
    {"volume.create", cmd_volume_create},
    {"volume.list", cmd_volume_list},
    {"volume.show", cmd_volume_show},
    {"volume.delete", cmd_volume_delete},
    {"group.init", cmd_group_init},
    {"group.join", cmd_group_join},
    {"group.show", cmd_group_show},
};

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
		int more = 1;
		json_t *req = NULL, *result = NULL;
		json_error_t jerr;
		char err[PV_MAX_MESSAGE] = "";
		const char *name = NULL;

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
		    zmq_msg_size(&frames[0]) > PV_MAX_IDENTITY ||
		    zmq_msg_size(&frames[2]) > CONTROL_MAX_REQUEST) {
			pv_warn("control: malformed request ignored");
			goto next;
		}
		req = json_loadb(zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]), 0, &jerr);
		if (!req || !json_is_object(req) || !json_is_string(json_object_get(req, "cmd"))) {
			control_reply(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 0, NULL,
				      "request is not a JSON object with a 'cmd'");
			goto next;
		}
		name = json_string_value(json_object_get(req, "cmd"));
		json_t *args = json_object_get(req, "args");

		if (!args)
			args = json_object();
		else
			json_incref(args);
		if (!json_is_object(args)) {
			control_reply(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 0, NULL,
				      "'args' must be an object");
			json_decref(args);
			goto next;
		}
		size_t i;

		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(commands[i].name, name))
				break;
		if (i == sizeof(commands) / sizeof(commands[0])) {
			snprintf(err, sizeof(err), "unknown command '%.64s'", name);
			control_reply(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 0, NULL,
				      err);
		} else {
			int rc = commands[i].fn(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
						args, &result, err, sizeof(err));

			if (rc == 0)
				control_reply(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 1,
					      result, NULL);
			else if (rc < 0) {
				pv_info("control: %s refused: %s", name, err);
				control_reply(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), 0,
					      NULL, err);
			}
		}
		json_decref(args);
	next:
		json_decref(req);
		for (size_t j = 0; j < n; j++)
			zmq_msg_close(&frames[j]);
	}
}
