/* gen_corpus.c: writes the fuzzers' seed corpus: a few valid encodings of
 * the header (corpus/header/), of the protobuf bodies (corpus/catalog/)
 * and of MIG_SNAP payloads with the page they are for (corpus/migsnap/).
 * Run by hand when the messages change:
 *   gen_corpus tests/fuzz/corpus */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wire.h"

static const char *root;

/* Packs m into root/dir/name. Returns 0 or -1. */
static int put(const char *dir, const char *name, const ProtobufCMessage *m)
{
	char path[4096];
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(n ? n : 1);
	FILE *f;
	int rc = -1;

	if (!buf)
		return -1;
	protobuf_c_message_pack(m, buf);
	snprintf(path, sizeof(path), "%s/%s", root, dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", root, dir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		goto out;
	}
	if (fwrite(buf, 1, n, f) == n && fclose(f) == 0)
		rc = 0;
	else
		perror(path);
out:
	free(buf);
	return rc;
}

/* Writes n bytes to root/dir/name. Returns 0 or -1. */
static int put_bytes(const char *dir, const char *name, const uint8_t *buf, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", root, dir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return -1;
	}
	if (fwrite(buf, 1, n, f) == n && fclose(f) == 0)
		return 0;
	perror(path);
	return -1;
}

/* A fuzz_migsnap input: the page (offset in 64 KiB units, length in 512
 * byte units less one), then the payload: u32 record length, r, data_len
 * bytes of data. */
static int migsnap(const char *name, uint32_t off64k, uint32_t len512, Pv__MigrationSnap *r,
		   size_t data_len)
{
	size_t n = pv__migration_snap__get_packed_size(r);
	uint8_t *buf = calloc(1, 12 + n + data_len);
	int rc;

	if (!buf)
		return -1;
	for (int i = 0; i < 4; i++) {
		buf[i] = (uint8_t)(off64k >> (8 * i));
		buf[4 + i] = (uint8_t)(len512 >> (8 * i));
		buf[8 + i] = (uint8_t)(n >> (8 * i));
	}
	pv__migration_snap__pack(r, buf + 12);
	memset(buf + 12 + n, 0x5a, data_len);
	rc = put_bytes("migsnap", name, buf, 12 + n + data_len);
	free(buf);
	return rc;
}

static int migsnaps(void)
{
	static uint64_t ids[] = {1, 3, 4};
	Pv__MigrationSnap r = PV__MIGRATION_SNAP__INIT;
	uint8_t pres = 0x05, holes = 0x04, same = 0x01;
	int rc = 0;

	/* 16 KiB page at 0 of 4 KiB chunks: chunk 0 data (a move's), 2 a hole */
	r.volume_id = 7;
	r.page = 0;
	r.epoch = 2;
	r.n_snap_ids = 3;
	r.snap_ids = ids;
	r.snap_id = 3;
	r.chunk_size = 4096;
	r.preserved.len = r.holes.len = r.same.len = 1;
	r.preserved.data = &pres;
	r.holes.data = &holes;
	r.same.data = &same;
	r.first = 0;
	r.count = 4;
	rc |= migsnap("page-16k", 0, 31, &r, 4096);
	/* the volume's last page, 10 KiB: its third chunk is 2 KiB */
	pres = 0x04;
	holes = 0;
	same = 0;
	r.page = 3;
	r.first = 2;
	r.count = 1;
	rc |= migsnap("last-page", 1, 19, &r, 2048);
	return rc;
}

static int headers(void)
{
	char name64[PV_MAX_NAME + 1];
	Pv__Header h;
	int rc = 0;

	memset(name64, 'v', PV_MAX_NAME);
	name64[PV_MAX_NAME] = '\0';

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.req_id = 1;
	h.volume = "vol1";
	h.offset = 4 << 20;
	h.length = 4096;
	h.epoch = 3;
	h.client_id = 0x1234567890abcdefull;
	h.timestamp = 1700000000000ull << 16;
	rc |= put("header", "read", &h.base);

	h.op = PV_OP_WRITE;
	h.req_id = 2;
	h.flags = PV_F_FUA;
	h.length = PV_MAX_IO;
	h.hops = 1;
	rc |= put("header", "write-fua", &h.base);

	/* the last bytes of the address space: one step from overflowing */
	h.op = PV_OP_READ;
	h.flags = 0;
	h.offset = UINT64_MAX - 4096;
	h.length = 4096;
	rc |= put("header", "read-at-end", &h.base);

	h.op = PV_OP_TRIM;
	h.flags = 0;
	h.length = 0xffffffffu;
	h.volume = name64;
	rc |= put("header", "trim-long-name", &h.base);

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.req_id = 3;
	h.volume = "db";
	h.status = PV_ST_MOVED;
	h.new_owner = 2;
	h.epoch = 9;
	h.server_id = 1;
	h.message = "page 12 moved to server 2";
	rc |= put("header", "reply-moved", &h.base);

	h.status = PV_ST_BUSY;
	h.retry_after_ms = 50;
	h.message = "";
	rc |= put("header", "reply-busy", &h.base);

	wire_header_init(&h);
	h.op = PV_OP_PING;
	h.catalog_version = 17;
	rc |= put("header", "ping", &h.base);

	h.op = PV_OP_HEARTBEAT;
	h.version = (2u << 16) | 1;
	rc |= put("header", "heartbeat-v2", &h.base);

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.req_id = 77;
	h.volume = "vol";
	h.offset = 1ull << 20;
	h.length = 1u << 20;
	h.client_id = 0x1234567890abcdefull;
	h.flags = PV_F_SHM | PV_F_MAP;
	h.shm_offset = 65536;
	h.map_dev = 2049;
	h.map_ino = 131077;
	rc |= put("header", "read-mapped", &h.base);
	return rc;
}

static int bodies(void)
{
	Pv__Member m[3] = {PV__MEMBER__INIT, PV__MEMBER__INIT, PV__MEMBER__INIT};
	Pv__Member *mp[3] = {&m[0], &m[1], &m[2]};
	Pv__VolumeInfo v[2] = {PV__VOLUME_INFO__INIT, PV__VOLUME_INFO__INIT};
	Pv__VolumeInfo *vp[2] = {&v[0], &v[1]};
	uint32_t servers[] = {1, 2, 3}, holders[] = {1, 3};
	Pv__VolumeMap vm = PV__VOLUME_MAP__INIT;
	Pv__Catalog cat = PV__CATALOG__INIT;
	Pv__CatalogChange cc = PV__CATALOG_CHANGE__INIT;
	Pv__RoutingTable rt = PV__ROUTING_TABLE__INIT;
	Pv__ClientState cs = PV__CLIENT_STATE__INIT;
	Pv__Heartbeat hb = PV__HEARTBEAT__INIT;
	char *open_volumes[] = {"vol1", "db"};
	char addr[3][32];
	uint32_t owner[16];
	uint64_t epoch[16];
	int rc = 0;

	for (int i = 0; i < 3; i++) {
		snprintf(addr[i], sizeof(addr[i]), "tcp://127.0.0.%d:7100", i + 2);
		m[i].id = i + 1;
		m[i].address = addr[i];
		m[i].weight = i + 1;
		m[i].capacity = (uint64_t)(i + 1) << 40;
	}
	v[0].name = "vol1";
	v[0].id = 1;
	v[0].size = 10ull << 30;
	v[0].page_size = PV_DEFAULT_PAGE_SIZE;
	v[0].created = 1700000000;
	v[1].name = "db";
	v[1].id = 2;
	v[1].size = 1ull << 30;
	v[1].page_size = PV_MIN_PAGE_SIZE;
	v[1].n_servers = 3;
	v[1].servers = servers;
	v[1].n_holders = 2;
	v[1].holders = holders;
	cat.version = 5;
	cat.group_id = "g-0123456789abcdef";
	cat.n_members = 3;
	cat.members = mp;
	cat.n_volumes = 2;
	cat.volumes = vp;
	rc |= put("catalog", "catalog", &cat.base);

	cc.txid = (1ull << 48) | 6;
	cc.coordinator = 1;
	cc.what = "volume create db 1G";
	cc.catalog = &cat;
	rc |= put("catalog", "catalog-change", &cc.base);

	for (int i = 0; i < 16; i++) {
		owner[i] = servers[i % 3];
		epoch[i] = i / 3;
	}
	rt.volume = "vol1";
	rt.n_owner = 16;
	rt.owner = owner;
	rt.n_epoch = 16;
	rt.epoch = epoch;
	rc |= put("catalog", "routing-table", &rt.base);

	cs.n_open_volumes = 2;
	cs.open_volumes = open_volumes;
	rc |= put("catalog", "client-state", &cs.base);

	hb.server_id = 2;
	hb.catalog_version = 5;
	hb.pages = 840;
	hb.bytes = 3ull << 30;
	hb.free = 100ull << 30;
	rc |= put("catalog", "heartbeat", &hb.base);

	rc |= put("catalog", "member", &m[1].base);

	vm.path = "/proc/4242/fd/17";
	vm.dev = 2049;
	vm.ino = 131077;
	vm.size = 2ull << 30;
	vm.volume_id = 3;
	rc |= put("catalog", "volume-map", &vm.base);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) < 0 && errno != EEXIST) {
		perror(root);
		return 1;
	}
	return headers() | bodies() | migsnaps() ? 1 : 0;
}
