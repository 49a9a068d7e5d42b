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
#include <sys/stat.h>
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

/* Opens and checks path as described at the top; the mapped region or NULL
 * with the reason in err. */
static struct shm_region *region_map(const Pv__ShmAttach *a, char *err, size_t errlen)
{
	char link[256], self[64];
	struct shm_region *r = NULL;
	struct stat st;
	ssize_t n;
	int fd, pfd, seals;
	void *base;

	if (!shm_path_valid(a->path)) {
		snprintf(err, errlen, "path '%.64s' is not of the form /proc/PID/fd/N", a->path);
		return NULL;
	}
	if (a->token.len != PV_SHM_TOKEN) {
		snprintf(err, errlen, "token of %zu bytes, want %u", a->token.len, PV_SHM_TOKEN);
		return NULL;
	}
	if (a->size < SHM_MIN_SIZE || a->size > SHM_MAX_SIZE) {
		snprintf(err, errlen, "size %llu outside %u..%llu", (unsigned long long)a->size,
			 SHM_MIN_SIZE, (unsigned long long)SHM_MAX_SIZE);
		return NULL;
	}
	/* O_PATH: a handle on whatever the link names without opening it (no
	 * device's open side effects); checked, then opened through the handle */
	pfd = open(a->path, O_PATH | O_CLOEXEC);
	if (pfd < 0) {
		snprintf(err, errlen, "%s: %s (not on this host?)", a->path, strerror(errno));
		return NULL;
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
	n = readlink(self, link, sizeof(link) - 1);
	if (n < 0 || fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file (not on this host?)", a->path);
		close(pfd);
		return NULL;
	}
	link[n] = '\0';
	if (strncmp(link, SHM_MEMFD_PREFIX, strlen(SHM_MEMFD_PREFIX)) != 0) {
		snprintf(err, errlen, "%s is not a peervol memfd (not on this host?)", a->path);
		close(pfd);
		return NULL;
	}
	fd = open(self, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	close(pfd);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", a->path, strerror(errno));
		return NULL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != a->size ||
	    seals < 0 || !(seals & F_SEAL_SHRINK)) {
		snprintf(err, errlen, "%s is not a sealed file of %llu bytes", a->path,
			 (unsigned long long)a->size);
		close(fd);
		return NULL;
	}
	base = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", a->path, strerror(errno));
		return NULL;
	}
	if (memcmp(base, a->token.data, PV_SHM_TOKEN) != 0) {
		snprintf(err, errlen,
			 "%s does not start with the client's token (another "
			 "process's file: not on this host?)",
			 a->path);
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
		via_peer ? " (offered by a server on this host)" : "");
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
