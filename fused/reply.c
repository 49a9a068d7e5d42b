/* reply.c: reply threads. Answering FUSE a 1 MiB READ is a 1 MiB copy by
 * the kernel, on the thread that answers (out of a mapping of the server's
 * data file, or out of a shared memory slot). On the client thread that copy
 * held up every other request: with mapped reads it was 60% of that
 * thread's time while the other core idled. The client thread queues such
 * answers here and goes on; a reply thread answers and then gives back what
 * the data was in (a slot, a mapping reference). fuse_reply_* may be called
 * from any thread. Small answers stay on the client thread: for them the
 * hand-off would cost more than the copy. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "pvlog.h"

/* Answers of this size or more go to a reply thread; smaller ones are
 * answered at once. */
#define REPLY_THREAD_MIN (64u << 10)

struct reply_job {
	struct reply_job *next;
	fuse_req_t req;
	const void *data;
	size_t len;
	void (*done)(void *);
	void *arg;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct reply_job *head, **tail = &head;
static int stopping;
static pthread_t *threads;
static unsigned nthreads;

static void answer(fuse_req_t req, const void *data, size_t len, void (*done)(void *), void *arg)
{
	int rc = fuse_reply_buf(req, data, len);

	if (rc < 0)
		pv_debug("READ answer of %zu bytes not taken by the kernel: %s", len, strerror(-rc));
	if (done)
		done(arg);
}

static void *reply_main(void *unused)
{
	(void)unused;
	for (;;) {
		struct reply_job *j;

		pthread_mutex_lock(&lock);
		while (!head && !stopping)
			pthread_cond_wait(&cond, &lock);
		j = head;
		if (j) {
			head = j->next;
			if (!head)
				tail = &head;
		}
		pthread_mutex_unlock(&lock);
		if (!j)
			return NULL; /* stopping, and nothing is left */
		answer(j->req, j->data, j->len, j->done, j->arg);
		free(j);
	}
}

int reply_start(unsigned n)
{
	sigset_t all, old;

	if (!n)
		return 0;
	threads = calloc(n, sizeof(*threads));
	if (!threads) {
		pv_err("cannot start reply threads: out of memory");
		return -1;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the main thread */
	for (; nthreads < n; nthreads++) {
		int err = pthread_create(&threads[nthreads], NULL, reply_main, NULL);

		if (err) {
			pv_err("cannot start reply thread %u of %u: %s; READ answers are copied "
			       "by %u",
			       nthreads + 1, n, strerror(err), nthreads);
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return nthreads == n ? 0 : -1;
}

void reply_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	threads = NULL;
	nthreads = 0;
}

void reply_data(fuse_req_t req, const void *data, size_t len, void (*done)(void *), void *arg)
{
	struct reply_job *j = nthreads && len >= REPLY_THREAD_MIN ? malloc(sizeof(*j)) : NULL;

	if (!j) { /* small, no threads (or no memory): answer here */
		answer(req, data, len, done, arg);
		return;
	}
	j->next = NULL;
	j->req = req;
	j->data = data;
	j->len = len;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&lock);
	*tail = j;
	tail = &j->next;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}
