/* fuzz_catalog.c: libFuzzer target for the protobuf bodies a server takes
 * from clients and peers: Catalog, ClientState, CatalogChange,
 * RoutingTable, Heartbeat, Member, ShmAttach and VolumeMap (which fused
 * takes from a server), Migration, MigrateRequest, RouteUpdate,
 * SnapshotOp and SnapshotRanges. Each is decoded from the same input;
 * whatever decodes must pass protobuf_c_message_check, encode, decode again
 * and encode to the same bytes, and be freed without a leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb_tag0.h"
#include "peervol.pb-c.h"
#include "wire.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_catalog: %s:%d: %s (%s)\n", __FILE__, __LINE__,      \
				#cond, d->name);                                                   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const ProtobufCMessageDescriptor *const bodies[] = {
    &pv__catalog__descriptor,	    &pv__client_state__descriptor, &pv__catalog_change__descriptor,
    &pv__routing_table__descriptor, &pv__heartbeat__descriptor,	   &pv__member__descriptor,
    &pv__shm_attach__descriptor,    &pv__volume_map__descriptor,
    /* page migration (1.4) and snapshots (1.5) */
    &pv__migration__descriptor,	    &pv__migrate_request__descriptor,
    &pv__route_update__descriptor,  &pv__snapshot_op__descriptor,
    &pv__snapshot_ranges__descriptor,
};

/* Packs m into a new buffer; sets *len. */
static uint8_t *pack(const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(m);
	buf = malloc(*len ? *len : 1);
	REQUIRE(buf != NULL);
	REQUIRE(protobuf_c_message_pack(m, buf) == *len);
	return buf;
}

static void one_body(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
	ProtobufCMessage *m, *again;
	uint8_t *buf, *buf2;
	size_t len, len2;

	/* the decoder peerd and fused use on every body from the network */
	m = wire_body_decode(d, data, size);
	if (!m)
		return;
	REQUIRE(m->descriptor == d);
	REQUIRE(protobuf_c_message_check(m));
	REQUIRE(!pb_has_tag0(m)); /* refused by wire_body_decode, see pb_tag0.h */
	buf = pack(d, m, &len);
	again = protobuf_c_message_unpack(d, NULL, len, buf);
	REQUIRE(again != NULL);
	buf2 = pack(d, again, &len2);
	REQUIRE(len2 == len);
	REQUIRE(memcmp(buf, buf2, len) == 0);
	free(buf2);
	free(buf);
	protobuf_c_message_free_unpacked(again, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the typed entry points the daemons call, then the generic checks */
	Pv__Catalog *cat = pv__catalog__unpack(NULL, size, data);
	Pv__ClientState *cs = pv__client_state__unpack(NULL, size, data);
	Pv__CatalogChange *cc = pv__catalog_change__unpack(NULL, size, data);
	Pv__RoutingTable *rt = pv__routing_table__unpack(NULL, size, data);

	if (cat)
		pv__catalog__free_unpacked(cat, NULL);
	if (cs)
		pv__client_state__free_unpacked(cs, NULL);
	if (cc)
		pv__catalog_change__free_unpacked(cc, NULL);
	if (rt)
		pv__routing_table__free_unpacked(rt, NULL);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		one_body(bodies[i], data, size);
	return 0;
}
