/* fuzz_header.c: libFuzzer target for wire_header_decode, the decoder of the
 * first frame of every message a server or client receives. Any byte
 * string must decode or be refused with a reason, never crash or leak; a
 * header that decodes must satisfy every limit wire.h promises, encode
 * again, decode again to the same fields and encode to the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb_tag0.h"
#include "wire.h"

/* Stops the run on a broken property; libFuzzer saves the input. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_header: %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static int same_header(const Pv__Header *a, const Pv__Header *b)
{
	return a->version == b->version && a->op == b->op && a->req_id == b->req_id &&
	       strcmp(a->volume, b->volume) == 0 && a->offset == b->offset &&
	       a->length == b->length && a->epoch == b->epoch && a->hops == b->hops &&
	       a->status == b->status && a->flags == b->flags && a->timestamp == b->timestamp &&
	       a->client_id == b->client_id && strcmp(a->message, b->message) == 0 &&
	       a->server_id == b->server_id && a->catalog_version == b->catalog_version &&
	       a->new_owner == b->new_owner && a->retry_after_ms == b->retry_after_ms &&
	       a->shm_offset == b->shm_offset && a->map_dev == b->map_dev &&
	       a->map_ino == b->map_ino;
}

/* Packs h into a new buffer; sets *len. */
static uint8_t *pack(const Pv__Header *h, size_t *len)
{
	uint8_t *buf;

	*len = pv__header__get_packed_size(h);
	buf = malloc(*len ? *len : 1);
	REQUIRE(buf != NULL);
	REQUIRE(pv__header__pack(h, buf) == *len);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	Pv__Header *h, *again;
	uint8_t *buf, *buf2;
	size_t len, len2;
	int st;

	st = wire_header_decode(data, size, &h, err, sizeof(err));
	if (st != PV_ST_OK) {
		REQUIRE(st == PV_ST_BAD_REQUEST || st == PV_ST_VERSION);
		REQUIRE(h == NULL);
		REQUIRE(err[0] != '\0');
		return 0;
	}
	REQUIRE(h != NULL);
	REQUIRE(size <= PV_MAX_HEADER);
	REQUIRE(h->version >> 16 == PV_PROTO_MAJOR);
	REQUIRE(wire_op_known(h->op));
	REQUIRE(strcmp(wire_op_name(h->op), "UNKNOWN") != 0);
	REQUIRE(strlen(h->volume) <= PV_MAX_NAME);
	REQUIRE(strlen(h->message) <= PV_MAX_MESSAGE);
	REQUIRE(h->op == PV_OP_TRIM || h->length <= PV_MAX_IO);
	REQUIRE(h->offset + h->length >= h->offset);
	(void)wire_status_name(h->status);

	/* the decoder refuses fields numbered 0 (see pb_tag0.h), so every
	 * accepted header encodes again: same fields, same bytes */
	REQUIRE(!pb_has_tag0(&h->base));
	buf = pack(h, &len);
	memset(err, 0, sizeof(err));
	st = wire_header_decode(buf, len, &again, err, sizeof(err));
	if (st != PV_ST_OK)
		fprintf(stderr, "fuzz_header: re-encoded header (%zu bytes from %zu) refused: %s\n",
			len, size, err);
	REQUIRE(st == PV_ST_OK);
	REQUIRE(same_header(h, again));
	buf2 = pack(again, &len2);
	REQUIRE(len2 == len);
	REQUIRE(memcmp(buf, buf2, len) == 0);

	free(buf2);
	free(buf);
	wire_header_free(again);
	wire_header_free(h);
	return 0;
}
