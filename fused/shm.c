/* shm.c: the shared memory fused offers to a peerd on its own host, and its
 * slots. One memfd ("peervol-shm"), sealed against shrinking and growing,
 * starts with a random token and is cut into slots of SHM_SLOT bytes.
 *
 * A slot serves one request at a time: the FUSE workers read requests from
 * /dev/fuse into a free slot (loop.c), so a large WRITE's data is already in
 * shared memory when it arrives, and the client thread gives a large READ a
 * slot for peerd to fill. A server that mapped the memory (PV_OP_SHM_ATTACH)
 * is sent the slot's offset instead of the data: no block data crosses the
 * socket, and peerd's pwrite/pread is the only copy besides FUSE's own.
 *
 * A slot a server may still touch (its request was abandoned: the server was
 * declared dead, or the request timed out) is quarantined: never handed out
 * again, so a late write by that server cannot land in another request's
 * data. Free slots are kept LIFO so the most recently used (cache-warm) goes
 * first. Thread-safe: FUSE workers, the client thread and ZeroMQ's IO thread
 * (freeing messages) all take and return slots. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fused.h"
#include "pvlog.h"

#define SHM_HEAD 4096u /* the token's page */

static struct {
	pthread_mutex_t lock;
	int fd;
	uint8_t *base;
	size_t size;
	unsigned n_slots;
	unsigned *free_stack; /* indexes of free slots; top at n_free - 1 */
	unsigned n_free;
	uint8_t *state; /* per slot: 0 in use, 1 free, 2 quarantined */
	unsigned quarantined;
	char path[64];
} shm = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

enum { SLOT_USED, SLOT_FREE, SLOT_DEAD };

int shm_init(unsigned slots)
{
	size_t size = SHM_HEAD + (size_t)slots * SHM_SLOT;
	int fd;

	if (slots == 0)
		return 0;
	fd = memfd_create("peervol-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		pv_warn("no shared memory for local servers (memfd_create: %m); data goes by "
			"socket");
		return -1;
	}
	if (ftruncate(fd, size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		pv_warn("no shared memory for local servers (cannot size or seal it: %m); data "
			"goes by socket");
		close(fd);
		return -1;
	}
	shm.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	shm.free_stack = calloc(slots, sizeof(*shm.free_stack));
	shm.state = calloc(slots, 1);
	if (shm.base == MAP_FAILED || !shm.free_stack || !shm.state ||
	    getrandom(shm.base, PV_SHM_TOKEN, 0) != PV_SHM_TOKEN) {
		pv_warn("no shared memory for local servers (cannot map it: %m); data goes by "
			"socket");
		if (shm.base != MAP_FAILED)
			munmap(shm.base, size);
		shm.base = NULL;
		free(shm.free_stack);
		free(shm.state);
		close(fd);
		return -1;
	}
	shm.fd = fd;
	shm.size = size;
	shm.n_slots = slots;
	for (unsigned i = 0; i < slots; i++) { /* slot 0 on top */
		shm.free_stack[i] = slots - 1 - i;
		shm.state[i] = SLOT_FREE;
	}
	shm.n_free = slots;
	snprintf(shm.path, sizeof(shm.path), "/proc/%d/fd/%d", (int)getpid(), fd);
	return 0;
}

void shm_destroy(void)
{
	if (!shm.base)
		return;
	munmap(shm.base, shm.size);
	close(shm.fd);
	free(shm.free_stack);
	free(shm.state);
	shm.base = NULL;
	shm.fd = -1;
}

int shm_enabled(void)
{
	return shm.base != NULL;
}

void shm_describe(const char **path, uint64_t *size, const uint8_t **token)
{
	*path = shm.path;
	*size = shm.size;
	*token = shm.base;
}

int shm_pass(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 1};
	struct stat st, dst;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char dir[sizeof(sa.sun_path)], msg[PV_SHM_PASS_LEN], ack = 0;
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm)};
	struct cmsghdr *h;
	int fd;

	if (!shm.base || !path || path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "no shared memory, or the pass socket path is not absolute");
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || stat(dirname(dir), &dst) < 0 ||
	    (dst.st_mode & 0022) || (dst.st_uid != 0 && dst.st_uid != st.st_uid)) {
		snprintf(err, errlen,
			 "pass socket %s is not a socket in a directory only its owner or root "
			 "may write",
			 path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		snprintf(err, errlen, "pass socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (cred.uid != st.st_uid) {
		snprintf(err, errlen, "pass socket %s belongs to uid %u, its listener is uid %u",
			 path, (unsigned)st.st_uid, (unsigned)cred.uid);
		close(fd);
		return -1;
	}
	memcpy(msg, PV_SHM_PASS_MAGIC, sizeof(PV_SHM_PASS_MAGIC) - 1);
	memcpy(msg + sizeof(PV_SHM_PASS_MAGIC) - 1, shm.base, PV_SHM_TOKEN);
	memset(&cm, 0, sizeof(cm));
	h = CMSG_FIRSTHDR(&mh);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &shm.fd, sizeof(int));
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(msg) || recv(fd, &ack, 1, 0) != 1 ||
	    ack != '1') {
		snprintf(err, errlen, "pass socket %s: %s", path,
			 ack == '0' ? "the server refused the memfd" : strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static long slot_index(const void *p)
{
	const uint8_t *b = p;

	if (!shm.base || b < shm.base + SHM_HEAD || b >= shm.base + shm.size)
		return -1;
	return (b - shm.base - SHM_HEAD) / SHM_SLOT;
}

void *shm_slot_get(void)
{
	void *slot = NULL;

	if (!shm.base)
		return NULL;
	pthread_mutex_lock(&shm.lock);
	if (shm.n_free) {
		unsigned i = shm.free_stack[--shm.n_free];

		shm.state[i] = SLOT_USED;
		slot = shm.base + SHM_HEAD + (size_t)i * SHM_SLOT;
	}
	pthread_mutex_unlock(&shm.lock);
	return slot;
}

void shm_slot_put(void *p)
{
	long i = slot_index(p);

	if (i < 0)
		return;
	pthread_mutex_lock(&shm.lock);
	if (shm.state[i] == SLOT_USED) {
		shm.state[i] = SLOT_FREE;
		shm.free_stack[shm.n_free++] = i;
	}
	pthread_mutex_unlock(&shm.lock);
}

void shm_slot_quarantine(void *p)
{
	long i = slot_index(p);
	unsigned n = 0;

	if (i < 0)
		return;
	pthread_mutex_lock(&shm.lock);
	if (shm.state[i] != SLOT_DEAD) {
		if (shm.state[i] == SLOT_FREE) { /* not expected: take it off the stack */
			for (unsigned k = 0; k < shm.n_free; k++)
				if (shm.free_stack[k] == (unsigned)i)
					shm.free_stack[k] = shm.free_stack[--shm.n_free];
		}
		shm.state[i] = SLOT_DEAD;
		n = ++shm.quarantined;
	}
	pthread_mutex_unlock(&shm.lock);
	if (n)
		pv_info("shared memory slot %ld set aside: a server may still use it (%u of %u "
			"set aside)",
			i, n, shm.n_slots);
}

void *shm_slot_of(const void *p)
{
	long i = slot_index(p);

	return i < 0 ? NULL : shm.base + SHM_HEAD + (size_t)i * SHM_SLOT;
}

uint64_t shm_offset(const void *p)
{
	return (const uint8_t *)p - shm.base;
}
