/* reactor.c: the one thread that owns the sockets and timers. It polls the
 * ROUTER (clients and peers), the control socket, the IO workers' eventfd
 * and one DEALER per peer, and runs the periodic work: heartbeats, client
 * expiry, catalog and forwarding timeouts. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

#define MAX_TIMERS 256
#define BATCH	   256

struct timer {
	uint64_t due;
	void (*fn)(void *);
	void *arg;
};

static struct timer timers[MAX_TIMERS];
static size_t ntimers;
static volatile sig_atomic_t stop;

void reactor_stop(void)
{
	stop = 1;
}

void reactor_after(uint64_t ms, void (*fn)(void *), void *arg)
{
	if (ntimers == MAX_TIMERS) {
		pv_err("too many timers; running one now");
		fn(arg);
		return;
	}
	timers[ntimers].due = pv_now_ms() + ms;
	timers[ntimers].fn = fn;
	timers[ntimers].arg = arg;
	ntimers++;
}

static void run_timers(uint64_t now)
{
	for (size_t i = 0; i < ntimers;) {
		if (timers[i].due <= now) {
			struct timer t = timers[i];

			timers[i] = timers[--ntimers];
			t.fn(t.arg);
		} else {
			i++;
		}
	}
}

/* Receives one message from the ROUTER: identity then up to 3 frames (more
 * are read and dropped; dispatch refuses them). Returns 0, or -1 if none. */
static int router_one(void)
{
	zmq_msg_t ident, frames[3];
	size_t n = 0, total = 0;
	int more;

	zmq_msg_init(&ident);
	if (zmq_msg_recv(&ident, srv->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&ident);
		return -1;
	}
	more = zmq_msg_more(&ident);
	while (more) {
		zmq_msg_t *f = &frames[n < 3 ? n : 2];

		if (n >= 3)
			zmq_msg_close(f);
		zmq_msg_init(f);
		if (zmq_msg_recv(f, srv->router, 0) < 0) {
			zmq_msg_close(f);
			break;
		}
		more = zmq_msg_more(f);
		if (n < 3)
			n++;
		total++;
	}
	if (n > 0 && zmq_msg_size(&ident) <= PV_MAX_IDENTITY)
		ops_dispatch(zmq_msg_data(&ident), zmq_msg_size(&ident), frames, total);
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
	zmq_msg_close(&ident);
	return 0;
}

int reactor_run(int io_fd)
{
	zmq_pollitem_t items[4 + PEERD_MAX_MEMBERS + LINKS_POLL_MAX];
	struct member *owners[4 + PEERD_MAX_MEMBERS];
	uint64_t next_second = 0, next_tenth = 0;

	while (!stop) {
		uint64_t now = pv_now_ms(), wait = 100;
		void *join = catalog_join_socket();
		int n = 0, rc, nmembers_end;
		size_t nlinks;

		for (size_t i = 0; i < ntimers; i++) {
			uint64_t d = timers[i].due > now ? timers[i].due - now : 0;

			if (d < wait)
				wait = d;
		}
		memset(items, 0, sizeof(items));
		items[n].socket = srv->router;
		items[n++].events = ZMQ_POLLIN;
		items[n].socket = srv->control;
		items[n++].events = ZMQ_POLLIN;
		items[n].fd = io_fd;
		items[n++].events = ZMQ_POLLIN;
		if (join) {
			items[n].socket = join;
			items[n++].events = ZMQ_POLLIN;
		}
		for (size_t i = 0; i < srv->nmembers; i++) {
			if (!srv->members[i].sock)
				continue;
			owners[n] = &srv->members[i];
			items[n].socket = srv->members[i].sock;
			items[n++].events = ZMQ_POLLIN;
		}
		nmembers_end = n;
		/* what this round queued goes out as one message per
		 * destination (batch.h), and on the peer links */
		batch_cork_flush(srv->cork);
		forward_fail_unsent();
		links_flush();
		/* the answers of parts that were not sent, or that a failed
		 * link failed */
		batch_cork_flush(srv->cork);
		links_reap();
		nlinks = links_poll_fill(items + n, LINKS_POLL_MAX);
		rc = zmq_poll(items, n + (int)nlinks, (long)wait);
		if (rc < 0 && errno != EINTR) {
			pv_err("poll failed: %s", zmq_strerror(errno));
			return -1;
		}
		if (rc > 0) {
			uint64_t version = srv->version;

			if (items[2].revents & ZMQ_POLLIN)
				worker_drain();
			if (items[0].revents & ZMQ_POLLIN)
				for (int i = 0; i < BATCH && router_one() == 0; i++)
					;
			if (items[1].revents & ZMQ_POLLIN)
				control_input();
			links_poll_done(items + n, nlinks);
			/* a catalog change rebuilds the member table: poll again */
			for (int i = 3; i < nmembers_end && version == srv->version; i++) {
				if (!(items[i].revents & ZMQ_POLLIN))
					continue;
				if (items[i].socket == join) {
					catalog_join_input();
					break; /* the member list may have changed */
				}
				for (int k = 0; k < BATCH; k++) {
					int events = 0;
					size_t sz = sizeof(events);

					peers_input(owners[i]);
					if (version != srv->version)
						break;
					if (zmq_getsockopt(owners[i]->sock, ZMQ_EVENTS, &events,
							   &sz) < 0 ||
					    !(events & ZMQ_POLLIN))
						break;
				}
			}
		}
		now = pv_now_ms();
		run_timers(now);
		if (now >= next_tenth) {
			next_tenth = now + 100;
			catalog_tick();
			forward_tick();
		}
		if (now >= next_second) {
			next_second = now + PEERD_HEARTBEAT_MS;
			peers_tick();
			links_tick();
			clients_expire();
			shm_expire();
		}
	}
	return 0;
}
