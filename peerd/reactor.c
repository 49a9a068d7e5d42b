/* reactor.c: the one thread that owns the sockets and timers. Modules
 * register what it polls and runs (the shape of CZMQ's zloop):
 *
 *   reactor_add_socket / reactor_add_fd   a socket or fd with input to read
 *                                         (the ROUTER, the control socket,
 *                                         the IO workers' eventfd)
 *   reactor_add_poller                    sources that change every round
 *                                         (one DEALER per member, the links,
 *                                         the join socket): fill, then done
 *   reactor_every / reactor_after         periodic and one-shot timers
 *
 * A round: flush what the last round queued (the BATCH cork, the links),
 * poll every registered source, run the ready ones in registration order,
 * then the timers that are due. main.c registers in start-up order. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

#define MAX_TIMERS  256
#define MAX_SOURCES 16 /* sockets, fds and pollers */
#define MAX_EVERY   16
#define MAX_ITEMS   (MAX_SOURCES + PEERD_MAX_MEMBERS + LINKSET_POLL_MAX)

struct timer {
	uint64_t due;
	void (*fn)(void *);
	void *arg;
};

/* A registered source: one socket or fd (fill NULL), or a poller. */
struct source {
	void *sock;
	int fd;
	reactor_fn fn; /* socket or fd: input is ready */
	size_t (*fill)(zmq_pollitem_t *items, size_t max, void *arg);
	void (*done)(const zmq_pollitem_t *items, size_t n, void *arg);
	size_t max; /* poller: items it may fill */
	void *arg;
	size_t first, n; /* this round: its items */
};

struct every {
	uint64_t ms, next;
	reactor_fn fn;
	void *arg;
};

static struct timer timers[MAX_TIMERS];
static size_t ntimers;
static struct source sources[MAX_SOURCES];
static size_t nsources, items_reserved;
static struct every everys[MAX_EVERY];
static size_t neverys;
static volatile sig_atomic_t stop;

static struct source *source_new(size_t max)
{
	if (nsources == MAX_SOURCES || items_reserved + max > MAX_ITEMS) {
		pv_err("reactor: too many event sources (a build limit: MAX_SOURCES)");
		return NULL;
	}
	items_reserved += max;
	return &sources[nsources++];
}

int reactor_add_socket(void *sock, reactor_fn fn, void *arg)
{
	struct source *s = source_new(1);

	if (!s)
		return -1;
	*s = (struct source){.sock = sock, .fd = -1, .fn = fn, .arg = arg, .max = 1};
	return 0;
}

int reactor_add_fd(int fd, reactor_fn fn, void *arg)
{
	struct source *s = source_new(1);

	if (!s)
		return -1;
	*s = (struct source){.fd = fd, .fn = fn, .arg = arg, .max = 1};
	return 0;
}

int reactor_add_poller(size_t max, size_t (*fill)(zmq_pollitem_t *items, size_t max, void *arg),
		       void (*done)(const zmq_pollitem_t *items, size_t n, void *arg), void *arg)
{
	struct source *s = source_new(max);

	if (!s)
		return -1;
	*s = (struct source){.fd = -1, .fill = fill, .done = done, .max = max, .arg = arg};
	return 0;
}

int reactor_every(uint64_t ms, reactor_fn fn, void *arg)
{
	if (neverys == MAX_EVERY) {
		pv_err("reactor: too many periodic timers (a build limit: MAX_EVERY)");
		return -1;
	}
	everys[neverys++] = (struct every){.ms = ms, .fn = fn, .arg = arg};
	return 0;
}

void reactor_clear(void)
{
	nsources = neverys = ntimers = 0;
	items_reserved = 0;
}

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

/* Before the reactor waits: what this round queued goes out as one
 * message per destination (batch.h), and on the peer links; then the
 * answers of parts that were not sent, or that a failed link failed. */
static void flush_round(void)
{
	batch_cork_flush(srv->cork);
	forward_fail_unsent();
	linkset_flush();
	batch_cork_flush(srv->cork);
	linkset_reap();
}

/* Fills items with every source's items; returns how many. */
static size_t fill_items(zmq_pollitem_t *items)
{
	size_t n = 0;

	for (size_t i = 0; i < nsources; i++) {
		struct source *s = &sources[i];

		s->first = n;
		if (s->fill) {
			s->n = s->fill(items + n, s->max, s->arg);
		} else {
			items[n].socket = s->sock;
			items[n].fd = s->fd;
			items[n].events = ZMQ_POLLIN;
			s->n = 1;
		}
		n += s->n;
	}
	return n;
}

static uint64_t next_due(uint64_t now)
{
	uint64_t wait = 100;

	for (size_t i = 0; i < ntimers; i++) {
		uint64_t d = timers[i].due > now ? timers[i].due - now : 0;

		if (d < wait)
			wait = d;
	}
	return wait;
}

static void run_everys(uint64_t now)
{
	for (size_t i = 0; i < neverys; i++) {
		if (now < everys[i].next)
			continue;
		everys[i].next = now + everys[i].ms;
		everys[i].fn(everys[i].arg);
	}
}

int reactor_run(void)
{
	static zmq_pollitem_t items[MAX_ITEMS];

	while (!stop) {
		uint64_t now = pv_now_ms(), wait = next_due(now);
		size_t n;
		int rc;

		flush_round();
		memset(items, 0, sizeof(items));
		n = fill_items(items);
		rc = zmq_poll(items, (int)n, (long)wait);
		if (rc < 0 && errno != EINTR) {
			pv_err("poll failed: %s", zmq_strerror(errno));
			return -1;
		}
		for (size_t i = 0; rc > 0 && i < nsources; i++) {
			struct source *s = &sources[i];

			if (s->fill)
				s->done(items + s->first, s->n, s->arg);
			else if (items[s->first].revents & ZMQ_POLLIN)
				s->fn(s->arg);
		}
		now = pv_now_ms();
		run_timers(now);
		run_everys(now);
	}
	return 0;
}
