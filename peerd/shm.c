/* shm.c: shared memory of the fused clients on this server's host. A fused
 * that runs beside this peerd offers its memfd (PV_OP_SHM_ATTACH, path
 * /proc/PID/fd/N); once mapped here, its READ and WRITE requests can carry
 * PV_F_SHM and an offset in it instead of a data frame: a write's data is
 * written to the data file straight from fused's memory, a read lands in it,
 * and no block data crosses the socket.
 *
 * What is checked before mapping (the path comes from the network): it has
 * exactly the form /proc/PID/fd/N, it links to a memfd named peervol-shm,
 * the file is sealed against shrinking (so touching it can never SIGBUS this
 * process), has the announced size, and starts with the announced random
 * token (a fused on another host, or in another PID namespace, names a file
 * that is not its own). A client that fails any of these sends its data in
 * the messages, as every remote client does.
 *
 * A region serves only the connection that attached it (its ROUTER routing
 * id): a client on another host that claims a local client's id cannot make
 * this server read or write that client's memory. A client whose connection
 * changed gets NO_SHM and attaches again.
 *
 * Servers on one host (one peerd per disk, say) share the client's memory
 * too: when this server forwards a part of a shared-memory request to an
 * owner, it first offers the owner the client's memfd (SHM_ATTACH with the
 * client's id, over the peer connection); an owner on the same host maps it
 * like a client's, bound to that peer connection, and is then sent the
 * part's offset instead of its data (hops 1). A part whose answer did not
 * come in time is reported to the client (PV_F_SHM_LOST), which then never
 * reuses the slot: the owner may still touch it.
 *
 * A request holds a reference to the region it uses (shm_get/shm_put); a
 * replaced or expired region is unmapped when its last request ends.
 * Reactor thread only; the IO threads only touch memory a request holds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "peerd.h"

#define SHM_MAX_REGIONS	 64
#define SHM_MIN_SIZE	 (64u << 10)
#define SHM_MAX_SIZE	 (4ull << 30)
#define SHM_EXPIRE_MS	 60000 /* unused this long: unmapped */
#define SHM_MEMFD_PREFIX "/memfd:peervol-shm"

struct shm_region {
	struct shm_region *next;
	uint64_t client_id;
	uint8_t *base;
	uint64_t size;
	uint8_t token[PV_SHM_TOKEN];
	uint8_t ident[PV_MAX_IDENTITY]; /* the connection that attached it */
	size_t ident_len;
	int refs;     /* the table's own reference and one per request */
	int attached; /* still in the table */
	int via_peer; /* attached by a peer for its client, not by the client */
	int passed;   /* its memfd came over the pass socket */
	uint64_t last_ms;
	char path[48]; /* as the client offered it */
	struct {
		uint32_t id;
		uint8_t state;	   /* enum peer_state */
	} peer[PEERD_MAX_MEMBERS]; /* owners offered it (client regions only) */
	unsigned npeer;
};

enum peer_state { PEER_UNKNOWN, PEER_PENDING, PEER_ON, PEER_REFUSED };

static struct shm_region *regions;
static unsigned n_regions;

int shm_path_valid(const char *path)
{
	unsigned pid, fd;
	int n = -1;
	char canon[48];

	if (!path || strlen(path) > 40 || strspn(path, "/procfd0123456789") != strlen(path))
		return 0;
	if (sscanf(path, "/proc/%u/fd/%u%n", &pid, &fd, &n) != 2 || n != (int)strlen(path))
		return 0;
	/* exactly as printed: no leading zeros, and no number past 32 bits
	 * that %u wrapped into a small one (4294967297 -> pid 1) */
	snprintf(canon, sizeof(canon), "/proc/%u/fd/%u", pid, fd);
	return pid > 0 && strcmp(canon, path) == 0;
}

static void region_unref(struct shm_region *r)
{
	if (--r->refs > 0)
		return;
	munmap(r->base, r->size);
	free(r);
}

static void region_detach(struct shm_region *r)
{
	struct shm_region **rp;

	for (rp = &regions; *rp; rp = &(*rp)->next)
		if (*rp == r) {
			*rp = r->next;
			break;
		}
	r->attached = 0;
	n_regions--;
	region_unref(r);
}

static int bound_to(const struct shm_region *r, const uint8_t *ident, size_t ident_len)
{
	return r->ident_len == ident_len && memcmp(r->ident, ident, ident_len) == 0;
}

/* The region an attach replaces: the client's own (one per client, bound to
 * its latest connection), or the one a given peer connection attached. */
static struct shm_region *region_of(uint64_t client_id, int via_peer, const uint8_t *ident,
				    size_t ident_len)
{
	for (struct shm_region *r = regions; r; r = r->next)
		if (r->client_id == client_id && r->via_peer == via_peer &&
		    (!via_peer || bound_to(r, ident, ident_len)))
			return r;
	return NULL;
}

/* The region that serves this client's requests on this connection. */
static struct shm_region *region_find(uint64_t client_id, const uint8_t *ident, size_t ident_len)
{
	for (struct shm_region *r = regions; r; r = r->next)
		if (r->client_id == client_id && bound_to(r, ident, ident_len))
			return r;
	return NULL;
}

/* ---- memfds passed over the pass socket ---- */

#define SHM_PASS_MAX	   16	 /* memfds kept until their SHM_ATTACH */
#define SHM_PASS_EXPIRE_MS 10000 /* kept this long at most */
#define SHM_PASS_IO_MS	   200	 /* a passing client's send and our answer */

static int pass_listen = -1;
static char pass_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static int pass_denied; /* the last refused attach could not open its path (EACCES) */
static struct {
	int fd; /* -1: free */
	uint8_t token[PV_SHM_TOKEN];
	uint64_t at_ms;
} passed[SHM_PASS_MAX] = {[0 ... SHM_PASS_MAX - 1] = {.fd = -1}};

int shm_pass_parse(const void *buf, size_t len, uint8_t token[PV_SHM_TOKEN])
{
	const size_t magic = sizeof(PV_SHM_PASS_MAGIC) - 1;

	if (!buf || len != PV_SHM_PASS_LEN || memcmp(buf, PV_SHM_PASS_MAGIC, magic) != 0)
		return -1;
	memcpy(token, (const uint8_t *)buf + magic, PV_SHM_TOKEN);
	return 0;
}

int shm_pass_open(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(pass_path, sizeof(pass_path), "%s.shm", srv->cfg.control) >=
	    sizeof(pass_path)) {
		pv_warn("no pass socket for shared memory: %s.shm is too long a path; fused "
			"clients of another user send data by socket",
			srv->cfg.control);
		pass_path[0] = '\0';
		return 0;
	}
	memcpy(sa.sun_path, pass_path, strlen(pass_path) + 1);
	unlink(pass_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(pass_path, 0600) < 0 || listen(fd, SHM_PASS_MAX) < 0) {
		pv_warn("no pass socket for shared memory at %s: %m; fused clients of another "
			"user send data by socket",
			pass_path);
		if (fd >= 0)
			close(fd);
		unlink(pass_path);
		pass_path[0] = '\0';
		return 0;
	}
	pass_listen = fd;
	return 0;
}

static void pass_drop(size_t i)
{
	if (passed[i].fd >= 0)
		close(passed[i].fd);
	passed[i].fd = -1;
}

void shm_pass_close(void)
{
	for (size_t i = 0; i < SHM_PASS_MAX; i++)
		pass_drop(i);
	if (pass_listen >= 0) {
		close(pass_listen);
		unlink(pass_path);
	}
	pass_listen = -1;
}

int shm_pass_fd(void)
{
	return pass_listen;
}

const char *shm_pass_hint(void)
{
	return pass_denied && pass_listen >= 0 ? pass_path : NULL;
}

/* Keeps fd under token (replacing one of the same token, else a free slot,
 * else the oldest). */
static void pass_keep(int fd, const uint8_t *token)
{
	size_t k = 0;

	for (size_t i = 0; i < SHM_PASS_MAX; i++) {
		if (passed[i].fd >= 0 && !memcmp(passed[i].token, token, PV_SHM_TOKEN)) {
			k = i;
			break;
		}
		if (passed[k].fd >= 0 && (passed[i].fd < 0 || passed[i].at_ms < passed[k].at_ms))
			k = i;
	}
	pass_drop(k);
	passed[k].fd = fd;
	memcpy(passed[k].token, token, PV_SHM_TOKEN);
	passed[k].at_ms = pv_now_ms();
}

/* One passing client on c (only root and this server's user may connect:
 * the socket is 0600): its message and memfd, kept; answered '1' or '0'. */
static void pass_one(int c)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = SHM_PASS_IO_MS * 1000};
	uint8_t buf[PV_SHM_PASS_LEN + 1], token[PV_SHM_TOKEN];
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm)};
	int fd = -1, ok = 0;
	ssize_t n;

	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	for (struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; h; h = CMSG_NXTHDR(&msg, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int got;

			memcpy(&got, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = got;
			else
				close(got); /* one memfd per message */
		}
	}
	if (n > 0 && fd >= 0 && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
	    shm_pass_parse(buf, (size_t)n, token) == 0) {
		pass_keep(fd, token);
		fd = -1;
		ok = 1;
	} else {
		pv_debug("shared memory: a pass message refused (%zd bytes%s)", n,
			 fd < 0 ? ", no descriptor" : "");
	}
	if (fd >= 0)
		close(fd);
	(void)!send(c, ok ? "1" : "0", 1, MSG_NOSIGNAL);
}

void shm_pass_input(void *arg)
{
	(void)arg;
	for (int k = 0; k < SHM_PASS_MAX; k++) {
		int c = accept4(pass_listen, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return;
		pass_one(c);
		close(c);
	}
}

/* The memfd passed with token (taken: the caller closes it), or -1. Drops
 * those kept too long. */
static int pass_take(const uint8_t *token)
{
	uint64_t now = pv_now_ms();
	int fd = -1;

	for (size_t i = 0; i < SHM_PASS_MAX; i++) {
		if (passed[i].fd < 0)
			continue;
		if (fd < 0 && !memcmp(passed[i].token, token, PV_SHM_TOKEN)) {
			fd = passed[i].fd;
			passed[i].fd = -1;
		} else if (now - passed[i].at_ms > SHM_PASS_EXPIRE_MS) {
			pass_drop(i);
		}
	}
	return fd;
}

/* ---- mapping ---- */

/* Whether fd (an O_PATH handle will do) is a regular file that links to a
 * peervol memfd; its stat in st. Else 0 with the reason in err (what names
 * it). */
static int peervol_memfd(int fd, const char *what, struct stat *st, char *err, size_t errlen)
{
	char link[256], self[64];
	ssize_t n;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	n = readlink(self, link, sizeof(link) - 1);
	if (n < 0 || fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s is not a regular file (not on this host?)", what);
		return 0;
	}
	link[n] = '\0';
	if (strncmp(link, SHM_MEMFD_PREFIX, strlen(SHM_MEMFD_PREFIX)) != 0) {
		snprintf(err, errlen, "%s is not a peervol memfd (not on this host?)", what);
		return 0;
	}
	return 1;
}

/* Checks the file fd (of the client's path, or passed) as described at the
 * top and maps it: the region, or NULL with the reason in err. what names
 * it in errors. Closes fd. */
static struct shm_region *region_map_fd(int fd, const Pv__ShmAttach *a, const char *what,
					char *err, size_t errlen)
{
	struct shm_region *r = NULL;
	struct stat st;
	int seals;
	void *base;

	if (!peervol_memfd(fd, what, &st, err, errlen)) {
		close(fd);
		return NULL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if ((uint64_t)st.st_size != a->size || seals < 0 || !(seals & F_SEAL_SHRINK)) {
		snprintf(err, errlen, "%s is not a sealed file of %llu bytes", what,
			 (unsigned long long)a->size);
		close(fd);
		return NULL;
	}
	base = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", what, strerror(errno));
		return NULL;
	}
	if (memcmp(base, a->token.data, PV_SHM_TOKEN) != 0) {
		snprintf(err, errlen,
			 "%s does not start with the client's token (another "
			 "process's file: not on this host?)",
			 what);
		munmap(base, a->size);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		munmap(base, a->size);
		return NULL;
	}
	r->base = base;
	r->size = a->size;
	memcpy(r->token, a->token.data, PV_SHM_TOKEN);
	r->refs = 1;
	return r;
}

/* Opens the client's memory (its /proc path, or the memfd it passed) and
 * maps it (region_map_fd); NULL with the reason in err. */
static struct shm_region *region_map(const Pv__ShmAttach *a, char *err, size_t errlen)
{
	char self[64];
	struct stat st;
	int fd, pfd;

	if (a->token.len != PV_SHM_TOKEN) {
		snprintf(err, errlen, "token of %zu bytes, want %u", a->token.len, PV_SHM_TOKEN);
		return NULL;
	}
	if (a->size < SHM_MIN_SIZE || a->size > SHM_MAX_SIZE) {
		snprintf(err, errlen, "size %llu outside %u..%llu", (unsigned long long)a->size,
			 SHM_MIN_SIZE, (unsigned long long)SHM_MAX_SIZE);
		return NULL;
	}
	if (a->passed) {
		fd = pass_take(a->token.data);
		if (fd >= 0) {
			struct shm_region *r = region_map_fd(fd, a, "the passed memfd", err, errlen);

			if (r)
				r->passed = 1;
			return r;
		}
		/* none (this server restarted since): by path, whose refusal
		 * names the pass socket again */
	}
	if (!shm_path_valid(a->path)) {
		snprintf(err, errlen, "path '%.64s' is not of the form /proc/PID/fd/N", a->path);
		return NULL;
	}
	/* O_PATH: a handle on whatever the link names without opening it (no
	 * device's open side effects); checked, then opened through the handle */
	pfd = open(a->path, O_PATH | O_CLOEXEC);
	if (pfd < 0) {
		pass_denied = errno == EACCES || errno == EPERM;
		snprintf(err, errlen, "%s: %s (%s)", a->path, strerror(errno),
			 pass_denied ? "a fused of another user than this peerd's" : "not on this host?");
		return NULL;
	}
	if (!peervol_memfd(pfd, a->path, &st, err, errlen)) {
		close(pfd);
		return NULL;
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
	fd = open(self, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	close(pfd);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", a->path, strerror(errno));
		return NULL;
	}
	return region_map_fd(fd, a, a->path, err, errlen);
}

static void set_ident(struct shm_region *r, const uint8_t *ident, size_t ident_len)
{
	if (ident_len > sizeof(r->ident))
		ident_len = sizeof(r->ident);
	memcpy(r->ident, ident, ident_len);
	r->ident_len = ident_len;
}

int shm_attach(uint64_t client_id, const struct origin *from, int via_peer, const Pv__ShmAttach *a,
	       char *err, size_t errlen)
{
	struct shm_region *old = region_of(client_id, via_peer, from->ident, from->len), *r;

	pass_denied = 0; /* set by this attach's region_map only */
	if (!client_id) {
		snprintf(err, errlen, "no client id");
		return PV_ST_BAD_REQUEST;
	}
	if (old && old->size == a->size && a->token.len == PV_SHM_TOKEN &&
	    memcmp(old->token, a->token.data, PV_SHM_TOKEN) == 0) {
		old->last_ms = pv_now_ms(); /* the same memory again (a reconnect) */
		set_ident(old, from->ident, from->len);
		return PV_ST_OK;
	}
	if (!old && n_regions >= SHM_MAX_REGIONS) {
		snprintf(err, errlen, "already %u clients with shared memory", n_regions);
		return PV_ST_REFUSED;
	}
	r = region_map(a, err, errlen);
	if (!r)
		return PV_ST_REFUSED;
	if (old)
		region_detach(old); /* unmapped when its last request ends */
	r->client_id = client_id;
	set_ident(r, from->ident, from->len);
	r->via_peer = via_peer;
	snprintf(r->path, sizeof(r->path), "%s", a->path);
	r->attached = 1;
	r->last_ms = pv_now_ms();
	r->next = regions;
	regions = r;
	n_regions++;
	pv_info("client %016llx: %llu MiB of shared memory mapped%s; its data skips the socket",
		(unsigned long long)client_id, (unsigned long long)(a->size >> 20),
		via_peer    ? " (offered by a server on this host)"
		: r->passed ? " (passed over the pass socket: a fused of another user)"
			    : "");
	return PV_ST_OK;
}

struct shm_region *shm_get(uint64_t client_id, const struct origin *from)
{
	struct shm_region *r = region_find(client_id, from->ident, from->len);

	if (!r)
		return NULL;
	r->refs++;
	r->last_ms = pv_now_ms();
	return r;
}

void shm_put(struct shm_region *r)
{
	if (r)
		region_unref(r);
}

uint8_t *shm_ptr(const struct shm_region *r, uint64_t offset, uint64_t len)
{
	/* the first PV_SHM_TOKEN bytes hold the token: never data */
	if (offset < PV_SHM_TOKEN || offset > r->size || len > r->size - offset)
		return NULL;
	return r->base + offset;
}

void shm_expire(void *arg)
{
	uint64_t now = pv_now_ms(), expire_ms = SHM_EXPIRE_MS;
	struct shm_region *r, *next;
	char val[32];

	if (change_test_hook("shm-expire-ms", val, sizeof(val)))
		expire_ms = strtoull(val, NULL, 10);
	for (r = regions; r; r = next) {
		next = r->next;
		if (r->refs == 1 && now - r->last_ms >= expire_ms) {
			pv_info("client %016llx: shared memory unused for %llu s, unmapped",
				(unsigned long long)r->client_id, (unsigned long long)(expire_ms / 1000));
			region_detach(r);
		}
	}
}

int shm_via_peer(const struct shm_region *r)
{
	return r->via_peer;
}

/* The state of member in r, added as PEER_UNKNOWN if not there yet; NULL if
 * the table is full. */
static uint8_t *peer_state(struct shm_region *r, uint32_t member)
{
	for (unsigned i = 0; i < r->npeer; i++)
		if (r->peer[i].id == member)
			return &r->peer[i].state;
	if (r->npeer == PEERD_MAX_MEMBERS)
		return NULL;
	r->peer[r->npeer].id = member;
	r->peer[r->npeer].state = PEER_UNKNOWN;
	return &r->peer[r->npeer++].state;
}

int shm_peer_usable(struct shm_region *r, struct member *m)
{
	Pv__ShmAttach a = PV__SHM_ATTACH__INIT;
	uint8_t *st;
	Pv__Header h;

	if (r->via_peer || !(st = peer_state(r, m->id)))
		return 0;
	if (*st != PEER_UNKNOWN)
		return *st == PEER_ON;
	a.path = r->path;
	a.size = r->size;
	a.token.data = r->token;
	a.token.len = PV_SHM_TOKEN;
	wire_header_init(&h);
	h.op = PV_OP_SHM_ATTACH;
	h.req_id = peers_next_id();
	h.client_id = r->client_id;
	if (reply_send_member(m, &h, NULL, &a.base) == 0)
		*st = PEER_PENDING; /* this part goes with its data */
	return 0;
}

void shm_peer_answer(uint32_t member, const Pv__Header *h)
{
	for (struct shm_region *r = regions; r; r = r->next) {
		uint8_t *st;

		if (r->client_id != h->client_id || r->via_peer || !(st = peer_state(r, member)))
			continue;
		if (*st == PEER_PENDING && h->status == PV_ST_OK)
			pv_info("client %016llx: server %u is on this host too; forwarded parts "
				"go through the client's shared memory",
				(unsigned long long)r->client_id, member);
		*st = h->status == PV_ST_OK ? PEER_ON : PEER_REFUSED;
	}
}

void shm_peer_reset(uint32_t member)
{
	for (struct shm_region *r = regions; r; r = r->next) {
		uint8_t *st;

		if (!r->via_peer && (st = peer_state(r, member)))
			*st = PEER_UNKNOWN;
	}
}

void shm_peer_forget(uint64_t client_id, uint32_t member)
{
	for (struct shm_region *r = regions; r; r = r->next) {
		uint8_t *st;

		if (r->client_id == client_id && !r->via_peer && (st = peer_state(r, member)))
			*st = PEER_UNKNOWN; /* offered again with the next part */
	}
}

unsigned shm_count(void)
{
	return n_regions;
}

void shm_free_all(void)
{
	while (regions)
		region_detach(regions);
}
