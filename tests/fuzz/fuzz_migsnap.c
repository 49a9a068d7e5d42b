/* fuzz_migsnap.c: libFuzzer target for the decoder of a MIG_SNAP payload
 * (a moving page's snapshot chunks, peerd/migrate.c op_snap_in): the u32
 * length prefix (snapmap_frame_split), the pv.MigrationSnap record
 * (wire_body_decode) and its check against the page (snapmap_check). The
 * first 8 bytes of the input choose the page (its offset in 64 KiB units
 * and its length in 512-byte units); the rest is the payload. Any payload
 * must be accepted or refused, never read out of bounds; what is accepted
 * is walked as snap_page_import does (bitmaps of the page's chunks, the
 * data of each chunk preserved and not a hole, the last one short) to
 * exactly the end of the data. srv stays NULL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_migsnap: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rec, *chunks;
	size_t rec_len, data_len, pos = 0;
	uint64_t page_off, page_len, n = 0;
	Pv__MigrationSnap *r;
	uint8_t *copy;

	if (size < 8)
		return 0;
	page_off = (uint64_t)(data[0] | data[1] << 8 | data[2] << 16) << 16;
	page_len = (uint64_t)(data[4] | data[5] << 8 | (data[6] & 0x3f) << 16) * 512 + 512;
	/* a private copy of exactly the payload: ASan sees any overread */
	copy = malloc(size - 8 ? size - 8 : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 8, size - 8);
	if (snapmap_frame_split(copy, size - 8, &rec, &rec_len, &chunks, &data_len) < 0) {
		free(copy);
		return 0;
	}
	REQUIRE(rec == copy + 4 && rec_len > 0 && 4 + rec_len + data_len == size - 8);
	r = (Pv__MigrationSnap *)wire_body_decode(&pv__migration_snap__descriptor, rec, rec_len);
	if (r && snapmap_check(r, data_len, page_off, page_len, &n) == 0) {
		REQUIRE(n && n == (page_len + r->chunk_size - 1) / r->chunk_size);
		REQUIRE(r->preserved.len == (n + 7) / 8 && r->first + r->count <= n);
		for (uint64_t i = r->first; i < r->first + r->count; i++) {
			uint64_t len = page_len - i * r->chunk_size < r->chunk_size
					   ? page_len - i * r->chunk_size
					   : r->chunk_size;
			volatile uint8_t sink;

			if (!snapmap_bit(r->preserved.data, i) || snapmap_bit(r->holes.data, i))
				continue;
			REQUIRE(pos + len <= data_len);
			sink = chunks[pos] ^ chunks[pos + len - 1];
			(void)sink;
			pos += len;
		}
		REQUIRE(pos == data_len);
	}
	if (r)
		pv__migration_snap__free_unpacked(r, NULL);
	free(copy);
	return 0;
}
