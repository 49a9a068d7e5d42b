/* worker.c: the IO thread pool. The reactor submits jobs to a queue; a
 * worker takes one, runs it with store_do, and puts it on the done list; an
 * eventfd wakes the reactor, which completes the jobs in worker_drain. A
 * slow disk request holds one worker, never the reactor or the others.
 * The two lists are the only shared state, guarded by qlock. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "peerd.h"

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static struct io_job *todo_head, *todo_tail; /* qlock */
static struct io_job *done_head, *done_tail; /* qlock */
static int stopping;			     /* qlock */
static int efd = -1;
static pthread_t *threads;
static int nthreads;

static void push(struct io_job **head, struct io_job **tail, struct io_job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void *worker_main(void *arg)
{
	uint64_t one = 1;

	for (;;) {
		struct io_job *job;
		int wake;

		pthread_mutex_lock(&qlock);
		while (!todo_head && !stopping)
			pthread_cond_wait(&qcond, &qlock);
		if (!todo_head) {
			pthread_mutex_unlock(&qlock);
			return NULL;
		}
		job = todo_head;
		todo_head = job->next;
		if (!todo_head)
			todo_tail = NULL;
		pthread_mutex_unlock(&qlock);

		store_do(job);

		pthread_mutex_lock(&qlock);
		wake = done_head == NULL;
		push(&done_head, &done_tail, job);
		pthread_mutex_unlock(&qlock);
		if (wake && write(efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice */
		}
	}
}

int worker_start(int n)
{
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0) {
		pv_err("cannot create eventfd: %m");
		return -1;
	}
	threads = calloc(n, sizeof(*threads));
	if (!threads)
		return -1;
	for (int i = 0; i < n; i++) {
		int rc = pthread_create(&threads[i], NULL, worker_main, NULL);

		if (rc) {
			errno = rc;
			pv_err("cannot start IO thread: %m");
			worker_stop();
			return -1;
		}
		nthreads++;
	}
	return efd;
}

void worker_submit(struct io_job *job)
{
	pthread_mutex_lock(&qlock);
	push(&todo_head, &todo_tail, job);
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
}

void worker_input(void *arg)
{
	worker_drain();
}

void worker_drain(void)
{
	struct io_job *list;
	uint64_t v;

	if (read(efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled, the list may still have jobs */
	}
	pthread_mutex_lock(&qlock);
	list = done_head;
	done_head = done_tail = NULL;
	pthread_mutex_unlock(&qlock);
	while (list) {
		struct io_job *next = list->next;

		if (list->kind == IO_CALL)
			list->done(list);
		else
			request_io_done(list);
		list = next;
	}
}

void worker_stop(void)
{
	pthread_mutex_lock(&qlock);
	stopping = 1;
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&qlock);
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	nthreads = 0;
	free(threads);
	threads = NULL;
	if (efd >= 0)
		close(efd);
	efd = -1;
}
