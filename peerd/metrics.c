/* metrics.c: this server's figures in the Prometheus text exposition
 * format (version 0.0.4) at http://IP:PORT/metrics, with --metrics-listen
 * (docs/metrics.md lists every family). Two threads meet here, and only
 * here:
 *
 *   reactor, once a second   metrics_tick -> metrics_render: reads the
 *                            reactor's state (load.c's totals, the
 *                            catalog and members, migrate.c, balance.c)
 *                            into a new text, swapped in under `lock`
 *   libmicrohttpd's thread   answer(): GET /metrics copies that text out
 *                            under `lock`; it reads nothing else
 *
 * A scrape costs the reactor nothing and sees figures at most a second
 * old. The data path is untouched: load.c counts as it always did (plain
 * integers on the reactor) and sums its totals at its fold. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peerd.h"

#define CONNECTIONS_MAX 16	    /* scrapers at once; more are refused */
#define PER_IP_MAX	4	    /* ... from one address */
#define IDLE_TIMEOUT_S	10	    /* a connection silent this long is closed */
#define CONN_MEMORY	(32u << 10) /* per connection: the request's head */
#define CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/* Bounds of the latency histogram: powers of two microseconds, edges of
 * load.c's buckets (so exact), 8 us to 16.8 s. */
#define LAT_FIRST_LOG2 3
#define LAT_BOUNDS     22

static struct MHD_Daemon *httpd;
static atomic_int serving; /* libmicrohttpd's own messages: errors until then */

/* The published text: written by the reactor, read by the HTTP thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *text; /* under lock */
static size_t text_len;

/* ---- the address ---- */

int metrics_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	uint64_t port;
	size_t n;

	memset(ss, 0, sizeof(*ss));
	if (!colon || pv_parse_u64(colon + 1, 1, 65535, &port) < 0)
		return -1;
	n = (size_t)(colon - s);
	if (n >= sizeof(host))
		return -1;
	memcpy(host, s, n);
	host[n] = 0;
	if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = 0;
		if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
			return -1;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
		return -1;
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	*len = sizeof(*a4);
	return 0;
}

/* ---- the text (reactor) ---- */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format asks (\\, \", \n). */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

/* A series: name and one label (none: label NULL); its value follows. */
static void series(FILE *f, const char *name, const char *label, const char *value)
{
	fputs(name, f);
	if (label) {
		fprintf(f, "{%s=\"", label);
		label_value(f, value);
		fputs("\"}", f);
	}
}

static void sample(FILE *f, const char *name, const char *label, const char *value, double x)
{
	series(f, name, label, value);
	fprintf(f, " %.6g\n", x);
}

static void sample_u64(FILE *f, const char *name, const char *label, const char *value, uint64_t x)
{
	series(f, name, label, value);
	fprintf(f, " %llu\n", (unsigned long long)x);
}

struct volume_family {
	FILE *f;
	const char *name;
	int bytes; /* bytes_total (read and write) rather than requests_total */
};

static void volume_samples(void *arg, const char *volume, const struct load_totals *t)
{
	const struct volume_family *vf = arg;

	for (int k = 0; k < LOAD_OPS; k++) {
		if (vf->bytes && k >= 2)
			break; /* TRIM and FLUSH move no bytes */
		fprintf(vf->f, "%s{op=\"%s\",volume=\"", vf->name, load_op_names[k]);
		label_value(vf->f, volume);
		fprintf(vf->f, "\"} %llu\n",
			(unsigned long long)(vf->bytes ? t->bytes[k] : t->ops[k]));
	}
}

/* The load monitor's families (none with it off: zeros would mislead). */
static void render_load(FILE *f)
{
	struct load_totals served, forwarded;
	uint64_t bounds[LAT_BOUNDS], cum[LAT_BOUNDS];
	const char *name;

	if (!load_enabled)
		return;
	load_totals(&served, &forwarded);
	name = "peervol_requests_total";
	family(f, name, "counter",
	       "Parts of data requests served from this server's data files (its own "
	       "pages), by op and volume.");
	load_each_volume(volume_samples, &(struct volume_family){f, name, 0});
	name = "peervol_bytes_total";
	family(f, name, "counter",
	       "Bytes read and written in this server's data files, by op "
	       "and volume.");
	load_each_volume(volume_samples, &(struct volume_family){f, name, 1});
	name = "peervol_forwarded_total";
	family(f, name, "counter",
	       "Parts of requests relayed to the servers that own their pages.");
	for (int k = 0; k < LOAD_OPS; k++)
		sample_u64(f, name, "op", load_op_names[k], forwarded.ops[k]);

	name = "peervol_request_duration_seconds";
	family(f, name, "histogram",
	       "Time from a data request's arrival at this server to its answer.");
	for (int i = 0; i < LAT_BOUNDS; i++)
		bounds[i] = 1ull << (LAT_FIRST_LOG2 + i);
	for (int k = 0; k < LOAD_OPS; k++) {
		uint64_t count, sum_us;

		load_latency(k, bounds, LAT_BOUNDS, cum, &count, &sum_us);
		for (int i = 0; i < LAT_BOUNDS; i++)
			fprintf(f, "%s_bucket{op=\"%s\",le=\"%.9g\"} %llu\n", name,
				load_op_names[k], (double)bounds[i] / 1e6,
				(unsigned long long)cum[i]);
		fprintf(f, "%s_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", name, load_op_names[k],
			(unsigned long long)count);
		fprintf(f, "%s_sum{op=\"%s\"} %.6f\n", name, load_op_names[k],
			(double)sum_us / 1e6);
		fprintf(f, "%s_count{op=\"%s\"} %llu\n", name, load_op_names[k],
			(unsigned long long)count);
	}
}

static void render_volumes(FILE *f)
{
	const char *name = "peervol_volume_pages";

	family(f, name, "gauge", "Pages of the volume.");
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (!v->deleted)
			sample_u64(f, name, "volume", v->name, v->npages);
	name = "peervol_pages_owned";
	family(f, name, "gauge", "Pages of the volume this server owns.");
	for (struct volume *v = srv->volumes; v; v = v->next)
		if (!v->deleted)
			sample_u64(f, name, "volume", v->name, v->owned_here);
}

static void render_moves(FILE *f)
{
	struct migrate_totals t;
	struct balance_status st;
	const char *name = "peervol_migrations_in_progress";

	migrate_totals(&t);
	family(f, name, "gauge",
	       "Page moves under way: out of this server (queued or copying), and into it.");
	sample_u64(f, name, "direction", "out", migrate_out_count());
	sample_u64(f, name, "direction", "in", migrate_in_count());
	name = "peervol_migrations_completed_total";
	family(f, name, "counter", "Page moves out of this server that completed.");
	sample_u64(f, name, NULL, NULL, t.done);
	name = "peervol_migrations_failed_total";
	family(f, name, "counter", "Page moves out of this server that failed or were dropped.");
	sample_u64(f, name, NULL, NULL, t.failed);
	name = "peervol_migration_bytes_total";
	family(f, name, "counter", "Bytes copied to the targets of page moves out of this server.");
	sample_u64(f, name, NULL, NULL, t.bytes);

	balance_status(&st);
	name = "peervol_balance_enabled";
	family(f, name, "gauge", "1 while the load rebalancer may move pages on this server.");
	sample_u64(f, name, NULL, NULL, st.on && load_enabled);
	name = "peervol_balance_decisions_total";
	family(f, name, "counter",
	       "Judgements of this server's rebalancer, by verdict: idle, fair, over (no move "
	       "yet), move (started), refused, no_figures.");
	for (int o = 0; o < BALANCE_OUTCOMES; o++)
		sample_u64(f, name, "verdict", balance_outcome_names[o],
			   balance_outcome_count((enum balance_outcome)o));
}

/* A gauge per member: the double at offset off of its load_share; with
 * figures_only, members without load figures are left out. */
static void member_gauge(FILE *f, const char *name, const char *help, const struct load_share *sh,
			 size_t off, int figures_only)
{
	char id[12];

	family(f, name, "gauge", help);
	for (size_t i = 0; i < srv->nmembers; i++) {
		if (figures_only && !sh[i].figures)
			continue;
		snprintf(id, sizeof(id), "%u", srv->members[i].id);
		sample(f, name, "server", id, *(const double *)((const char *)&sh[i] + off));
	}
}

/* The group as this server sees it (the catalog and the heartbeats). */
static void render_group(FILE *f)
{
	struct load_share sh[PEERD_MAX_MEMBERS];
	const char *name = "peervol_catalog_version";
	char id[12];

	load_shares(sh);
	family(f, name, "gauge", "Version of the catalog this server has committed.");
	sample_u64(f, name, NULL, NULL, srv->version);
	name = "peervol_member_up";
	family(f, name, "gauge", "1 if this server hears the member's heartbeats (itself: 1).");
	for (size_t i = 0; i < srv->nmembers; i++) {
		snprintf(id, sizeof(id), "%u", srv->members[i].id);
		sample_u64(f, name, "server", id, srv->members[i].up);
	}
	member_gauge(f, "peervol_member_load",
		     "Each member's load in load units per second (requests + bytes / 64 KiB), "
		     "over 10 s, from its last heartbeat.",
		     sh, offsetof(struct load_share, load), 1);
	member_gauge(f, "peervol_member_load_share",
		     "Each member's share of the group's load (0 to 1).", sh,
		     offsetof(struct load_share, share), 1);
	member_gauge(f, "peervol_member_fair_share",
		     "Each member's fair share of the group's load by weight (0 to 1; 0 while "
		     "down, draining or without figures).",
		     sh, offsetof(struct load_share, fair), 0);
}

char *metrics_render(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	const char *name = "peervol_server_info";

	if (!f)
		return NULL;
	family(f, name, "gauge", "This server: its id and version (always 1).");
	fprintf(f, "%s{server=\"%u\",version=\"%s\"} 1\n", name, srv->cfg.id, PV_VERSION_STRING);
	render_load(f);
	name = "peervol_requests_in_flight";
	family(f, name, "gauge", "Data requests this server is working on.");
	sample_u64(f, name, NULL, NULL, request_inflight());
	name = "peervol_clients";
	family(f, name, "gauge", "Clients (fused) seen by this server in the last 10 s.");
	sample_u64(f, name, NULL, NULL, clients_count());
	render_volumes(f);
	render_moves(f);
	render_group(f);
	if (ferror(f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

void metrics_tick(void *arg)
{
	size_t len;
	char *next, *old;

	(void)arg;
	if (!httpd)
		return;
	next = metrics_render(&len);
	if (!next)
		return; /* without memory: the last text stays */
	pthread_mutex_lock(&lock);
	old = text;
	text = next;
	text_len = len;
	pthread_mutex_unlock(&lock);
	free(old);
}

/* ---- HTTP (libmicrohttpd's thread) ---- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
			     const char *allow)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n",
			     NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n",
			     "GET, HEAD");
	pthread_mutex_lock(&lock);
	r = MHD_create_response_from_buffer(text_len, text, MHD_RESPMEM_MUST_COPY);
	pthread_mutex_unlock(&lock);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* libmicrohttpd's messages: errors while starting, then only with --debug
 * (a client that hangs up or sends garbage is its own business). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	if (atomic_load(&serving))
		pv_debug("metrics: %s", msg);
	else
		pv_err("metrics: %s", msg);
}

/* Binds and listens on addr: the socket, or -1 (logged). */
static int listen_on(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (metrics_parse_address(addr, &ss, &len) < 0) {
		pv_err("--metrics-listen %s: not IP:PORT", addr);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pv_err("cannot serve metrics on %s: socket: %m", addr);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, CONNECTIONS_MAX) < 0) {
		pv_err("cannot serve metrics on %s: %m", addr);
		close(fd);
		return -1;
	}
	return fd;
}

int metrics_start(void)
{
	const char *addr = srv->cfg.metrics_listen;
	int fd;

	if (!addr[0])
		return 0;
	fd = listen_on(addr);
	if (fd < 0)
		return -1;
	text = metrics_render(&text_len);
	if (!text) {
		pv_err("metrics: out of memory");
		close(fd);
		return -1;
	}
	httpd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				 answer, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
				 (unsigned)CONNECTIONS_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				 (unsigned)PER_IP_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
				 (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				 (size_t)CONN_MEMORY, MHD_OPTION_END);
	if (!httpd) {
		/* (the socket is left: libmicrohttpd may have closed it, and
		 * peerd exits) */
		pv_err("cannot serve metrics on %s: libmicrohttpd did not start", addr);
		free(text);
		text = NULL;
		return -1;
	}
	atomic_store(&serving, 1);
	pv_info("metrics on http://%s/metrics (Prometheus text format)", addr);
	return 0;
}

void metrics_stop(void)
{
	if (httpd)
		MHD_stop_daemon(httpd); /* joins its thread, closes the socket */
	httpd = NULL;
	atomic_store(&serving, 0);
	free(text);
	text = NULL;
	text_len = 0;
}
