/* loop.c: fused's FUSE session loop. A fixed set of worker threads, each
 * reading requests from /dev/fuse into a receive buffer of its own and
 * running the callbacks of fs.c on them.
 *
 * Why not fuse_session_loop_mt: a WRITE's data sits in the worker's receive
 * buffer, which that loop reuses as soon as the callback returns, so the
 * data had to be copied into the ZeroMQ message. Here a callback can take
 * the buffer with the request (loop_take_buffer): the message points into
 * it and frees it once sent, and the worker reads the next request into a
 * fresh buffer (libfuse allocates one when the fuse_buf has none). One copy
 * of every large write less.
 *
 * With shared memory (shm.c) the workers read into its slots, so a large
 * write's data is where a peerd on this host can take it from. A slot must
 * hold whatever libfuse may read (it passes its own buffer size to read());
 * each worker's first request is read into a buffer libfuse allocates, and
 * slots are used only if that buffer is no larger than a slot.
 *
 * Signals: the workers block them; the handlers (SIGTERM, SIGINT, SIGHUP)
 * end the session and wake the main thread, which stops the workers
 * (pthread_cancel; a worker cannot be cancelled while it runs a callback,
 * only while it waits in read()) and returns.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "pvlog.h"


struct worker {
	pthread_t thread;
	int started;
};

static struct fuse_session *loop_se;
static sem_t loop_wake;
static volatile sig_atomic_t loop_signal;
static __thread struct fuse_buf *cur_buf; /* the calling worker's receive buffer */
static __thread void *loop_taken;	   /* what loop_take_buffer last handed out */
static int slots_fit = -1; /* whether libfuse's buffer fits a slot; -1: not known yet */

void *loop_take_buffer(const void *ptr, size_t len)
{
	struct fuse_buf *b = cur_buf;
	const char *p = ptr, *base;

	if (!b || !b->mem || len < FUSED_SHM_MIN)
		return NULL;
	base = b->mem;
	if (p < base || p + len > base + b->size)
		return NULL;
	b->mem = NULL; /* the worker's next receive allocates a new one */
	loop_taken = (void *)base;
	return (void *)base;
}

struct wbuf {
	struct fuse_buf buf;
	void *own; /* the worker's heap buffer (libfuse's), or NULL */
};

static void release(struct wbuf *w)
{
	if (w->buf.mem && w->buf.mem != w->own)
		shm_slot_put(w->buf.mem);
	w->buf.mem = NULL;
}

static void free_wbuf(void *arg)
{
	struct wbuf *w = arg;

	release(w);
	free(w->own);
	w->own = NULL;
}

static void *worker_main(void *arg)
{
	struct wbuf w;
	struct fuse_buf *b = &w.buf;
	int res;

	(void)arg;
	memset(&w, 0, sizeof(w));
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(free_wbuf, &w);
	while (!fuse_session_exited(loop_se)) {
		b->mem = __atomic_load_n(&slots_fit, __ATOMIC_RELAXED) == 1 ? shm_slot_get() : NULL;
		if (!b->mem)
			b->mem = w.own; /* NULL: libfuse allocates */
		/* cancellable only while waiting for the kernel */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(loop_se, b);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (!shm_slot_of(b->mem) && b->mem != w.own) {
			w.own = b->mem; /* libfuse allocated it */
			if (w.own && __atomic_load_n(&slots_fit, __ATOMIC_RELAXED) < 0)
				__atomic_store_n(&slots_fit, malloc_usable_size(w.own) <= SHM_SLOT,
						 __ATOMIC_RELAXED);
		}
		if (res == -EINTR || res == -EAGAIN) {
			release(&w);
			continue;
		}
		if (res <= 0) {
			if (res < 0) {
				errno = -res;
				pv_err("cannot read from /dev/fuse: %m; fused stops");
			}
			fuse_session_exit(loop_se); /* 0: unmounted */
			break;
		}
		cur_buf = b;
		fuse_session_process_buf(loop_se, b);
		cur_buf = NULL;
		if (!b->mem) { /* taken with a write */
			if (!shm_slot_of(loop_taken))
				w.own = NULL;
		} else {
			release(&w);
		}
	}
	pthread_cleanup_pop(1);
	sem_post(&loop_wake);
	return NULL;
}

static void on_signal(int sig)
{
	loop_signal = sig;
	if (loop_se)
		fuse_session_exit(loop_se);
	sem_post(&loop_wake); /* async-signal-safe */
}

static int set_handlers(void (*fn)(int))
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -1;
	return 0;
}

int loop_run(struct fuse_session *se, unsigned threads)
{
	struct worker *w = calloc(threads, sizeof(*w));
	sigset_t all, old;
	int ret = 0;

	if (!w || sem_init(&loop_wake, 0, 0) < 0) {
		pv_err("cannot start the FUSE loop: out of memory");
		free(w);
		return -ENOMEM;
	}
	loop_se = se;
	loop_signal = 0;
	signal(SIGPIPE, SIG_IGN);
	if (set_handlers(on_signal) < 0) {
		pv_err("cannot set signal handlers: %m");
		ret = -errno;
		goto out;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the workers inherit the mask */
	for (unsigned i = 0; i < threads; i++) {
		int err = pthread_create(&w[i].thread, NULL, worker_main, NULL);

		if (err) {
			errno = err;
			pv_err("cannot start FUSE worker thread %u of %u: %m", i + 1, threads);
			fuse_session_exit(se);
			ret = -err;
			break;
		}
		w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	while (!fuse_session_exited(se))
		sem_wait(&loop_wake); /* a worker that stopped, or a signal */

	for (unsigned i = 0; i < threads; i++)
		if (w[i].started)
			pthread_cancel(w[i].thread);
	for (unsigned i = 0; i < threads; i++)
		if (w[i].started)
			pthread_join(w[i].thread, NULL);
	if (ret == 0 && loop_signal)
		ret = loop_signal;
	set_handlers(SIG_DFL);
out:
	loop_se = NULL;
	sem_destroy(&loop_wake);
	free(w);
	return ret;
}
