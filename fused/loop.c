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
 * Signals: the workers block them; the handlers (SIGTERM, SIGINT, SIGHUP)
 * end the session and wake the main thread, which stops the workers
 * (pthread_cancel; a worker cannot be cancelled while it runs a callback,
 * only while it waits in read()) and returns.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "pvlog.h"

#define TAKE_MIN (32u << 10) /* smaller writes are copied: a buffer is 1 MiB */

struct worker {
	pthread_t thread;
	int started;
};

static struct fuse_session *loop_se;
static sem_t loop_wake;
static volatile sig_atomic_t loop_signal;
static __thread struct fuse_buf *cur_buf; /* the calling worker's receive buffer */

void *loop_take_buffer(const void *ptr, size_t len)
{
	struct fuse_buf *b = cur_buf;
	const char *p = ptr, *base;

	if (!b || !b->mem || len < TAKE_MIN)
		return NULL;
	base = b->mem;
	if (p < base || p + len > base + b->size)
		return NULL;
	b->mem = NULL; /* the worker's next receive allocates a new one */
	return (void *)base;
}

static void free_buf(void *arg)
{
	struct fuse_buf *buf = arg;

	free(buf->mem);
	buf->mem = NULL;
}

static void *worker_main(void *arg)
{
	struct fuse_buf buf;
	int res;

	(void)arg;
	memset(&buf, 0, sizeof(buf));
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(free_buf, &buf);
	while (!fuse_session_exited(loop_se)) {
		/* cancellable only while waiting for the kernel */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(loop_se, &buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR || res == -EAGAIN)
			continue;
		if (res <= 0) {
			if (res < 0) {
				errno = -res;
				pv_err("cannot read from /dev/fuse: %m; fused stops");
			}
			fuse_session_exit(loop_se); /* 0: unmounted */
			break;
		}
		cur_buf = &buf;
		fuse_session_process_buf(loop_se, &buf);
		cur_buf = NULL;
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
