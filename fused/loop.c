/* loop.c: fused's FUSE session loop.
 *
 * The client thread (client.c) reads /dev/fuse itself: its zmq_poll watches
 * the FUSE file descriptor (non-blocking) beside the server sockets, and
 * loop_fuse_ready() takes what the kernel has. READ, WRITE, FSYNC, FLUSH and
 * FALLOCATE are run right there: their callbacks only build a call, which
 * the client thread sends at once, so a data request goes from the kernel
 * to the socket without waking another thread. Every other operation
 * (LOOKUP and READDIR may wait for a catalog refresh that only the client
 * thread can do; INIT, OPEN, FORGET, ...) goes with its buffer to a small
 * pool of worker threads.
 *
 * Buffers: a request is read into a free slot of the shared memory (shm.c),
 * else into a heap buffer that libfuse allocates (when the fuse_buf has
 * none). A callback can take the buffer with a WRITE (loop_take_buffer): the
 * data then leaves without a copy, from the slot a local peerd reads it in,
 * or as the ZeroMQ message's own memory. A slot must hold whatever libfuse
 * may read (it passes its own buffer size to read()): the first request is
 * read into a buffer libfuse allocates, and slots are used only if that one
 * is no larger than a slot.
 *
 * Signals: the workers and the client thread block them; the handlers
 * (SIGTERM, SIGINT, SIGHUP) end the session and wake the main thread, which
 * stops the workers (pthread_cancel; a worker cannot be cancelled while it
 * runs a callback, only while it waits for work) and returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "pvlog.h"

#define READY_BATCH 64 /* requests taken from /dev/fuse per loop_fuse_ready */

/* A request handed to the workers, with its buffer. */
struct job {
	struct job *next;
	struct fuse_buf buf;
};

static struct fuse_session *loop_se;
static int loop_fd = -1; /* /dev/fuse, non-blocking; -1 once the session ended */
static sem_t loop_wake;
static volatile sig_atomic_t loop_signal;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct job *q_head, **q_tail = &q_head;

static __thread struct fuse_buf *cur_buf; /* the buffer of the request being run */
static void *reader_own;		  /* the client thread's heap buffer */
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
	b->mem = NULL; /* the caller owns it now */
	return (void *)base;
}

/* Gives a request's buffer back: a slot to the shared memory, a heap buffer
 * to the allocator unless it is keep. */
static void buf_release(void *mem, void *keep)
{
	if (!mem || mem == keep)
		return;
	if (shm_slot_of(mem))
		shm_slot_put(mem);
	else
		free(mem);
}

static void run(struct fuse_buf *b)
{
	cur_buf = b;
	fuse_session_process_buf(loop_se, b);
	cur_buf = NULL;
}

/* Whether a request of this opcode may run on the client thread: its
 * callback never waits for the client thread. */
static int runs_inline(uint32_t opcode)
{
	switch (opcode) {
	case FUSE_READ:
	case FUSE_WRITE:
	case FUSE_FSYNC:
	case FUSE_FLUSH:
	case FUSE_FALLOCATE:
		return 1;
	default:
		return 0;
	}
}

static void queue_job(struct fuse_buf *b)
{
	struct job *j = malloc(sizeof(*j));

	if (!j) {
		/* cannot queue: run it here (only a catalog refresh could wait,
		 * and that gives up after its timeout) */
		pv_err("out of memory queueing a FUSE request; running it on the client thread");
		run(b);
		buf_release(b->mem, reader_own);
		return;
	}
	j->buf = *b;
	j->next = NULL;
	pthread_mutex_lock(&q_lock);
	*q_tail = j;
	q_tail = &j->next;
	pthread_cond_signal(&q_cond);
	pthread_mutex_unlock(&q_lock);
}

int loop_fuse_fd(void)
{
	return __atomic_load_n(&loop_fd, __ATOMIC_ACQUIRE);
}

void loop_fuse_ready(void)
{
	for (int n = 0; n < READY_BATCH && loop_fuse_fd() >= 0; n++) {
		struct fuse_buf b;
		void *slot = NULL;
		int res;

		memset(&b, 0, sizeof(b));
		if (__atomic_load_n(&slots_fit, __ATOMIC_RELAXED) == 1)
			slot = shm_slot_get();
		b.mem = slot ? slot : reader_own; /* NULL: libfuse allocates */
		res = fuse_session_receive_buf(loop_se, &b);
		if (!slot && b.mem && b.mem != reader_own) {
			reader_own = b.mem; /* libfuse allocated it */
			if (__atomic_load_n(&slots_fit, __ATOMIC_RELAXED) < 0)
				__atomic_store_n(&slots_fit, malloc_usable_size(b.mem) <= SHM_SLOT,
						 __ATOMIC_RELAXED);
		}
		if (res == -EAGAIN || res == -EINTR) {
			buf_release(slot, NULL);
			return;
		}
		if (res <= 0) {
			buf_release(slot, NULL);
			if (res < 0) {
				errno = -res;
				pv_err("cannot read from /dev/fuse: %m; fused stops");
			}
			fuse_session_exit(loop_se); /* 0: unmounted */
			__atomic_store_n(&loop_fd, -1, __ATOMIC_RELEASE);
			sem_post(&loop_wake);
			return;
		}
		if ((size_t)res >= sizeof(struct fuse_in_header) &&
		    runs_inline(((const struct fuse_in_header *)b.mem)->opcode)) {
			run(&b);
			buf_release(b.mem, reader_own); /* unless taken (then NULL) */
			if (!b.mem && !slot)
				reader_own = NULL; /* taken: libfuse allocates a new one */
			continue;
		}
		if (b.mem == reader_own)
			reader_own = NULL; /* goes with the job */
		queue_job(&b);
	}
}

static void unlock_queue(void *arg)
{
	(void)arg;
	pthread_mutex_unlock(&q_lock);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		struct job *j;

		pthread_mutex_lock(&q_lock);
		pthread_cleanup_push(unlock_queue, NULL);
		/* cancellable only while waiting for work */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		while (!q_head)
			pthread_cond_wait(&q_cond, &q_lock);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		j = q_head;
		q_head = j->next;
		if (!q_head)
			q_tail = &q_head;
		pthread_cleanup_pop(1);
		run(&j->buf);
		buf_release(j->buf.mem, NULL);
		free(j);
	}
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

int loop_prepare(struct fuse_session *se)
{
	int fd = fuse_session_fd(se);
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		pv_err("cannot make /dev/fuse non-blocking: %m");
		return -1;
	}
	if (sem_init(&loop_wake, 0, 0) < 0) {
		pv_err("cannot start the FUSE loop: %m");
		return -1;
	}
	loop_se = se;
	loop_signal = 0;
	signal(SIGPIPE, SIG_IGN);
	if (set_handlers(on_signal) < 0) {
		pv_err("cannot set signal handlers: %m");
		return -1;
	}
	__atomic_store_n(&loop_fd, fd, __ATOMIC_RELEASE);
	return 0;
}

int loop_run(unsigned threads)
{
	pthread_t *w = calloc(threads, sizeof(*w));
	unsigned started = 0;
	sigset_t all, old;
	int ret = 0;

	if (!w) {
		pv_err("cannot start the FUSE loop: out of memory");
		fuse_session_exit(loop_se);
		ret = -ENOMEM;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the workers inherit the mask */
	for (; w && started < threads; started++) {
		int err = pthread_create(&w[started], NULL, worker_main, NULL);

		if (err) {
			errno = err;
			pv_err("cannot start FUSE worker thread %u of %u: %m", started + 1, threads);
			fuse_session_exit(loop_se);
			ret = -err;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	while (!fuse_session_exited(loop_se))
		sem_wait(&loop_wake); /* unmounted, or a signal */
	__atomic_store_n(&loop_fd, -1, __ATOMIC_RELEASE); /* the client thread stops reading */

	for (unsigned i = 0; i < started; i++)
		pthread_cancel(w[i]);
	for (unsigned i = 0; i < started; i++)
		pthread_join(w[i], NULL);
	while (q_head) { /* never run: the kernel fails them when unmounted */
		struct job *j = q_head;

		q_head = j->next;
		buf_release(j->buf.mem, NULL);
		free(j);
	}
	q_tail = &q_head;
	if (ret == 0 && loop_signal)
		ret = loop_signal;
	set_handlers(SIG_DFL);
	free(w);
	return ret;
}

void loop_end(void)
{
	/* the client thread has stopped: nobody reads /dev/fuse any more */
	free(reader_own);
	reader_own = NULL;
	if (loop_se)
		sem_destroy(&loop_wake);
	loop_se = NULL;
}
