/* fuzz_shmpass.c: libFuzzer target for the decoder of a pass message (a
 * memfd passed to peerd's pass socket by a fused of another user,
 * peerd/shm.c pass_one): shm_pass_parse must accept exactly
 * PV_SHM_PASS_LEN bytes that start with PV_SHM_PASS_MAGIC, hand out the
 * token that follows, and leave the token untouched on anything else.
 * srv stays NULL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_shmpass: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t magic = sizeof(PV_SHM_PASS_MAGIC) - 1;
	uint8_t token[PV_SHM_TOKEN], *copy = malloc(size ? size : 1);
	int want, rc;

	if (!copy)
		return 0;
	memcpy(copy, data, size); /* exactly the message: ASan sees any overread */
	memset(token, 0xa5, sizeof(token));
	rc = shm_pass_parse(copy, size, token);
	want = size == PV_SHM_PASS_LEN && memcmp(copy, PV_SHM_PASS_MAGIC, magic) == 0;
	REQUIRE(rc == (want ? 0 : -1));
	if (want) {
		REQUIRE(memcmp(token, copy + magic, PV_SHM_TOKEN) == 0);
	} else {
		for (size_t i = 0; i < sizeof(token); i++)
			REQUIRE(token[i] == 0xa5);
	}
	free(copy);
	return 0;
}
