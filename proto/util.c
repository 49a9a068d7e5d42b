/* util.c: size parsing/printing, name validation and clocks (util.h). */
#include <ctype.h>
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"
#include "wire.h"

int pv_parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
	static const char units[] = "KMGTP";
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !isdigit((unsigned char)*s)) {
		snprintf(err, errlen, "size '%s' is not a number (examples: 4096, 512K, 2G, 1T)",
			 s ? s : "");
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno) {
		snprintf(err, errlen, "size '%s' is too large", s);
		return -1;
	}
	if (*end) {
		const char *u = strchr(units, toupper((unsigned char)*end));

		if (!u) {
			snprintf(err, errlen, "size '%s' has an unknown suffix (use K, M, G, T, P)",
				 s);
			return -1;
		}
		shift = 10 * (int)(u - units + 1);
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
		if (*end) {
			snprintf(err, errlen, "size '%s' has trailing characters", s);
			return -1;
		}
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		snprintf(err, errlen, "size '%s' is too large", s);
		return -1;
	}
	*out = (uint64_t)v << shift;
	return 0;
}

char *pv_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

int pv_valid_name(const char *name, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > PV_MAX_NAME) {
		if (err)
			snprintf(err, errlen, "name must be 1 to %d characters", PV_MAX_NAME);
		return 0;
	}
	if (name[0] == '.' || name[0] == '-') {
		if (err)
			snprintf(err, errlen, "name '%s' must not start with '.' or '-'", name);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = name[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
			if (err)
				snprintf(
				    err, errlen,
				    "name '%s' has character '%c'; allowed are A-Z a-z 0-9 . _ -",
				    name, isprint(c) ? c : '?');
			return 0;
		}
	}
	return 1;
}

int pv_valid_volume_size(uint64_t size, uint64_t max, char *err, size_t errlen)
{
	if (size == 0) {
		if (err)
			snprintf(err, errlen, "volume size must be greater than zero");
		return 0;
	}
	if (size % PV_SECTOR) {
		if (err)
			snprintf(err, errlen, "volume size %llu is not a multiple of %u bytes",
				 (unsigned long long)size, PV_SECTOR);
		return 0;
	}
	if (size > max) {
		if (err)
			snprintf(err, errlen,
				 "volume size %llu is larger than the maximum %llu (peerd "
				 "--max-volume-size)",
				 (unsigned long long)size, (unsigned long long)max);
		return 0;
	}
	return 1;
}

uint64_t pv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t pv_wall_s(void)
{
	return (uint64_t)time(NULL);
}

int pv_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

void pv_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
