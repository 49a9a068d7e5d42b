/* peerctl.c: peerctl's start-up and its one exchange with peerd: a ZeroMQ REQ
 * socket connected to ipc://<socket>, one JSON request frame out, one JSON
 * reply frame back (docs/control-protocol.md). Knows nothing about the
 * commands themselves (commands.c). Single-threaded.
 *
 *   peerctl REQ  --- {"cmd":..., "args":{...}} --->  peerd ROUTER (control.c)
 *                <-- {"ok":true,"result":...}  ----
 *                    {"ok":false,"error":"...","code":"not_found"}
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "peerctl.h"
#include "pvlog.h"
#include "util.h"

#define MAX_REPLY (64u << 20) /* a reply larger than this is refused */

void peerctl_error(const char *fmt, ...)
{
	va_list ap;

	fputs("peerctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int peerctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("peerctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\ntry 'peerctl --help'\n", stderr);
	return PEERCTL_EXIT_USAGE;
}

/* Checks that something listens on the socket file before ZeroMQ gets it:
 * ZeroMQ connects in the background and would turn a missing file, a stale
 * file or a permission problem into a silent wait for the timeout. */
static int probe_socket(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			peerctl_error("no peerd control socket at %s (is peerd running? "
				      "started with --control %s?)",
				      path, path);
		else
			peerctl_error("cannot reach peerd control socket %s: %m", path);
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		peerctl_error("%s is not a socket (give peerd's --control path with -s PATH)",
			      path);
		return -1;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		peerctl_error("control socket path %s is too long (at most %zu characters)", path,
			      sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		peerctl_error("socket: %m");
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ECONNREFUSED)
			peerctl_error(
			    "nothing listens on %s (stale socket file? is peerd running?)", path);
		else if (errno == EACCES || errno == EPERM)
			peerctl_error("no permission to connect to %s (the control socket is for "
				      "root only)",
				      path);
		else
			peerctl_error("cannot connect to %s: %m", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Waits up to the deadline for events on sock; 1 ready, 0 timed out, -1 error. */
static int wait_socket(void *sock, short events, uint64_t deadline_ms)
{
	for (;;) {
		zmq_pollitem_t item = {.socket = sock, .events = events};
		uint64_t now = pv_now_ms();
		int rc;

		if (now >= deadline_ms)
			return 0;
		rc = zmq_poll(&item, 1, (long)(deadline_ms - now));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -1;
		if (rc > 0)
			return 1;
	}
}

/* Exchanges text for one reply frame; returns 0 and *reply (malloc'd,
 * NUL-terminated) or -1 after printing why. */
static int exchange(const struct ctl *ctl, const char *text, char **reply, size_t *reply_len)
{
	uint64_t deadline = pv_now_ms() + (uint64_t)ctl->timeout_s * 1000;
	char endpoint[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	int linger = 0, more = 0, ret = -1, rc;
	size_t more_len = sizeof(more);
	void *zctx, *sock;
	zmq_msg_t msg;

	snprintf(endpoint, sizeof(endpoint), "ipc://%s", ctl->socket);
	zctx = zmq_ctx_new();
	if (!zctx) {
		peerctl_error("zmq_ctx_new: %s", zmq_strerror(errno));
		return -1;
	}
	sock = zmq_socket(zctx, ZMQ_REQ);
	if (!sock) {
		peerctl_error("zmq_socket: %s", zmq_strerror(errno));
		goto out_ctx;
	}
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_connect(sock, endpoint) < 0) {
		peerctl_error("cannot connect to %s: %s", endpoint, zmq_strerror(errno));
		goto out_sock;
	}
	rc = wait_socket(sock, ZMQ_POLLOUT, deadline);
	if (rc > 0)
		rc = zmq_send(sock, text, strlen(text), ZMQ_DONTWAIT) < 0 ? -1 : 1;
	if (rc < 0) {
		peerctl_error("cannot send to peerd at %s: %s", ctl->socket, zmq_strerror(errno));
		goto out_sock;
	}
	if (rc > 0)
		rc = wait_socket(sock, ZMQ_POLLIN, deadline);
	if (rc == 0) {
		peerctl_error("no answer from peerd at %s within %u s", ctl->socket,
			      ctl->timeout_s);
		goto out_sock;
	}
	if (rc < 0) {
		peerctl_error("waiting for peerd at %s: %s", ctl->socket, zmq_strerror(errno));
		goto out_sock;
	}
	zmq_msg_init(&msg);
	if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
		peerctl_error("receiving from peerd at %s: %s", ctl->socket, zmq_strerror(errno));
		goto out_msg;
	}
	zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
	if (more) {
		peerctl_error("malformed reply from peerd at %s: more than one frame", ctl->socket);
		goto out_msg;
	}
	if (zmq_msg_size(&msg) > MAX_REPLY) {
		peerctl_error("malformed reply from peerd at %s: %zu bytes (at most %u)",
			      ctl->socket, zmq_msg_size(&msg), MAX_REPLY);
		goto out_msg;
	}
	*reply_len = zmq_msg_size(&msg);
	*reply = malloc(*reply_len + 1);
	if (!*reply) {
		peerctl_error("out of memory");
		goto out_msg;
	}
	memcpy(*reply, zmq_msg_data(&msg), *reply_len);
	(*reply)[*reply_len] = '\0';
	ret = 0;
out_msg:
	zmq_msg_close(&msg);
out_sock:
	zmq_close(sock);
out_ctx:
	zmq_ctx_term(zctx);
	return ret;
}

/* Checks the reply envelope; returns 0 and the result, or after printing
 * minus the exit status (peerctl_call). */
static int parse_reply(const struct ctl *ctl, const char *text, size_t len, json_t **result)
{
	json_error_t jerr;
	json_t *reply, *ok, *res, *error;
	int ret = -1;

	reply = json_loadb(text, len, 0, &jerr);
	if (!reply) {
		peerctl_error("malformed reply from peerd at %s: %s", ctl->socket, jerr.text);
		return -1;
	}
	ok = json_object_get(reply, "ok");
	if (!json_is_boolean(ok)) {
		peerctl_error("malformed reply from peerd at %s: no boolean \"ok\"", ctl->socket);
		goto out;
	}
	if (json_is_false(ok)) {
		const char *code = json_string_value(json_object_get(reply, "code"));

		error = json_object_get(reply, "error");
		if (json_is_string(error) && json_string_length(error) > 0)
			peerctl_error("%s", json_string_value(error));
		else
			peerctl_error("peerd refused the request without saying why");
		if (code && !strcmp(code, "not_found"))
			ret = -PEERCTL_EXIT_NOT_FOUND;
		else if (code && !strcmp(code, "exists"))
			ret = -PEERCTL_EXIT_EXISTS;
		goto out;
	}
	res = json_object_get(reply, "result");
	if (!res) {
		peerctl_error("malformed reply from peerd at %s: no \"result\"", ctl->socket);
		goto out;
	}
	*result = json_incref(res);
	ret = 0;
out:
	json_decref(reply);
	return ret;
}

int peerctl_call(const struct ctl *ctl, const char *cmd, json_t *args, json_t **result)
{
	json_t *req;
	char *text, *reply = NULL;
	size_t reply_len = 0;
	int ret = -1;

	if (probe_socket(ctl->socket) < 0)
		return -1;
	req = json_object();
	if (req) {
		json_object_set_new(req, "cmd", json_string(cmd));
		json_object_set_new(req, "args", args ? json_incref(args) : json_object());
	}
	text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text) {
		peerctl_error("out of memory");
		return -1;
	}
	pv_debug("request to %s: %s", ctl->socket, text);
	if (exchange(ctl, text, &reply, &reply_len) == 0) {
		pv_debug("reply: %s", reply);
		ret = parse_reply(ctl, reply, reply_len, result);
	}
	free(reply);
	free(text);
	return ret;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {.timeout_s = PEERCTL_DEFAULT_TIMEOUT};
	const char *env = getenv("PEERVOL_SOCKET");

	pv_log_open("peerctl", 0, 0);
	pv_log_level = LOG_WARNING;
	ctl.socket = env && *env ? env : PEERCTL_DEFAULT_SOCKET;
	return commands_run(&ctl, argc, argv);
}
