/* fuzz_batch.c: libFuzzer target for batch_check and batch_next, the
 * decoder of a BATCH message's payload (batch.h), which a server and a
 * client run on every BATCH they receive. Any byte string must be accepted
 * or refused with a reason, never read out of bounds; what batch_check
 * accepts, batch_next walks record by record to exactly the end, every
 * record within the limits, and each record's header goes through
 * wire_header_decode as the receivers do. Encoding the records again with
 * batch_put gives the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_batch: %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct batch_record r;
	char err[256];
	size_t off = 0, out_len = 0;
	uint8_t *copy, *again;
	int n, seen = 0;

	/* a private copy of exactly size bytes: ASan sees any overread */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	err[0] = 0;
	n = batch_check(copy, size, err, sizeof(err));
	if (n < 0) {
		REQUIRE(err[0] != 0); /* refused with a reason */
		free(copy);
		return 0;
	}
	REQUIRE(n >= 1 && n <= BATCH_RECORDS_MAX);
	again = malloc(size);
	REQUIRE(again != NULL);
	while (batch_next(copy, size, &off, &r)) {
		Pv__Header *h = NULL;

		seen++;
		REQUIRE(r.hdr_len >= 1 && r.hdr_len <= PV_MAX_HEADER);
		REQUIRE(r.hdr >= copy && r.hdr + r.hdr_len <= copy + size);
		if (r.data) {
			REQUIRE(r.data_len <= PV_MAX_IO);
			REQUIRE(r.data == r.hdr + r.hdr_len && r.data + r.data_len <= copy + size);
		}
		if (wire_header_decode(r.hdr, r.hdr_len, &h, err, sizeof(err)) == PV_ST_OK)
			wire_header_free(h);
		out_len += batch_put(again + out_len, r.hdr, r.hdr_len, r.data, r.data_len,
				     r.data != NULL);
		REQUIRE(out_len <= size);
	}
	REQUIRE(seen == n);
	REQUIRE(off == size);
	REQUIRE(out_len == size && memcmp(again, copy, size) == 0);
	free(again);
	free(copy);
	return 0;
}
