/* fuzz_auth.c: libFuzzer target for the decoders of include/auth.h that
 * read outside input: key files (pv_key_parse: an administrator's file,
 * maybe damaged) and ZAP requests (pv_zap_parse: frames libzmq builds from
 * what a connecting peer sent). The first byte picks the decoder. Any
 * input must parse or be refused with a reason, never crash; a key that
 * parses must format and parse again to the same key; a refused key
 * leaves the output zeroed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_auth: %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void key_file(const uint8_t *data, size_t size)
{
	static const struct pv_key zero;
	struct pv_key k, again;
	char err[256] = "", text[PV_KEY_FILE_MAX];
	int n;

	if (pv_key_parse((const char *)data, size, &k, err, sizeof(err)) < 0) {
		REQUIRE(err[0]);
		REQUIRE(!memcmp(&k, &zero, sizeof(k)));
		return;
	}
	REQUIRE(k.kind == PV_KEY_GROUP || k.kind == PV_KEY_CLIENT);
	n = pv_key_format(&k, text, sizeof(text));
	REQUIRE(n > 0);
	REQUIRE(pv_key_parse(text, (size_t)n, &again, err, sizeof(err)) == 0);
	REQUIRE(again.kind == k.kind);
	if (k.kind == PV_KEY_GROUP)
		REQUIRE(!memcmp(&again.group, &k.group, sizeof(k.group)));
	else
		REQUIRE(!memcmp(&again.client, &k.client, sizeof(k.client)));
}

/* The input as ZAP frames: each frame is a length byte and that many bytes. */
static void zap(const uint8_t *data, size_t size)
{
	const void *frames[PV_ZAP_FRAMES_MAX + 2];
	size_t sizes[PV_ZAP_FRAMES_MAX + 2], n = 0, pos = 0;
	struct pv_zap_request r;
	char err[256] = "";

	while (pos < size && n < PV_ZAP_FRAMES_MAX + 2) {
		size_t len = data[pos++];

		if (len > size - pos)
			len = size - pos;
		frames[n] = data + pos;
		sizes[n++] = len;
		pos += len;
	}
	if (pv_zap_parse(frames, sizes, n, &r, err, sizeof(err)) < 0) {
		REQUIRE(err[0]);
		return;
	}
	REQUIRE(n >= 6 && n <= PV_ZAP_FRAMES_MAX);
	REQUIRE(r.request_id_len <= sizeof(r.request_id));
	REQUIRE(memchr(r.address, 0, sizeof(r.address)));
	REQUIRE(memchr(r.mechanism, 0, sizeof(r.mechanism)));
	REQUIRE(!r.has_client_key || !strcmp(r.mechanism, "CURVE"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		zap(data + 1, size - 1);
	else
		key_file(data + 1, size - 1);
	return 0;
}
