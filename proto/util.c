/* util.c: size parsing/printing, name validation, escaping for messages and
 * clocks (util.h). */
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
	char *end, shown[PV_ESCAPE_NAME];
	int shift = 0;

	pv_escape(s, s ? strlen(s) : 0, shown, sizeof(shown));
	if (!s || !isdigit((unsigned char)*s)) {
		snprintf(err, errlen, "size '%s' is not a number (examples: 4096, 512K, 2G, 1T)",
			 shown);
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno) {
		snprintf(err, errlen, "size '%s' is too large", shown);
		return -1;
	}
	if (*end == '.' || *end == ',') {
		snprintf(err, errlen,
			 "size '%s': whole numbers only (write 1536M for 1.5G; suffixes K, M, G, "
			 "T, P are binary: 1G = 1024M)",
			 shown);
		return -1;
	}
	if (*end) {
		const char *u = strchr(units, toupper((unsigned char)*end));

		if (!u) {
			snprintf(err, errlen, "size '%s' has an unknown suffix (use K, M, G, T, P)",
				 shown);
			return -1;
		}
		shift = 10 * (int)(u - units + 1);
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
		if (*end) {
			snprintf(err, errlen, "size '%s' has trailing characters", shown);
			return -1;
		}
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		snprintf(err, errlen, "size '%s' is too large", shown);
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

/* Decodes the UTF-8 character at p (n > 0 bytes left) into *cp; returns its
 * length in bytes, or 0 when p does not start a valid, shortest-form
 * character of U+0000..U+10FFFF outside the surrogates. */
static size_t utf8_char(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2, c = p[0] & 0x1f, min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3, c = p[0] & 0x0f, min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4, c = p[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

char *pv_escape(const void *s, size_t len, char *buf, size_t buflen)
{
	static const char cut[] = "...";
	const unsigned char *p = s;
	size_t out = 0, keep = 0; /* keep: where "..." goes if the rest does not fit */

	if (buflen == 0)
		return buf;
	for (size_t i = 0; i < len;) {
		char e[12];
		uint32_t c = 0;
		size_t n = utf8_char(p + i, len - i, &c), k;

		if (n == 0) {
			k = snprintf(e, sizeof(e), "\\x%02x", p[i]);
			n = 1;
		} else if (c == '\\' || c == '\'') {
			k = snprintf(e, sizeof(e), "\\%c", (char)c);
		} else if (c >= 0x20 && c < 0x7f) {
			k = snprintf(e, sizeof(e), "%c", (char)c);
		} else if (c <= 0xffff) {
			k = snprintf(e, sizeof(e), "\\u%04x", (unsigned)c);
		} else {
			k = snprintf(e, sizeof(e), "\\U%08x", (unsigned)c);
		}
		if (out + k > buflen - 1) {
			/* cut after the last escape that leaves room for "..." */
			snprintf(buf + keep, buflen - keep, "%s", cut);
			return buf;
		}
		memcpy(buf + out, e, k);
		out += k;
		if (out + sizeof(cut) - 1 <= buflen - 1)
			keep = out;
		i += n;
	}
	buf[out] = '\0';
	return buf;
}

int pv_valid_name(const char *name, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0, pos = 0;
	char shown[PV_ESCAPE_NAME];

	if (n == 0) {
		if (err)
			snprintf(err, errlen, "name must be 1 to %d characters", PV_MAX_NAME);
		return 0;
	}
	if (err)
		pv_escape(name, n, shown, sizeof(shown));
	if (name[0] == '.' || name[0] == '-') {
		if (err)
			snprintf(err, errlen, "name '%s' must not start with '.' or '-'", shown);
		return 0;
	}
	/* every character before the length, so that a name of 40 non-ASCII
	 * characters is not told it is longer than 64 characters */
	for (size_t i = 0; i < n; pos++) {
		const unsigned char *p = (const unsigned char *)name + i;
		uint32_t c = 0;
		size_t k = utf8_char(p, n - i, &c);

		if (k == 1 && (isalnum(c) || c == '.' || c == '_' || c == '-')) {
			i++;
			continue;
		}
		if (!err)
			return 0;
		if (k == 0)
			snprintf(err, errlen,
				 "name '%s': byte 0x%02X at position %zu is not UTF-8; use only "
				 "A-Z a-z 0-9 . _ -",
				 shown, *p, pos + 1);
		else if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			snprintf(err, errlen,
				 "name '%s': character '%c' at position %zu is not allowed; use "
				 "only A-Z a-z 0-9 . _ -",
				 shown, (char)c, pos + 1);
		else
			snprintf(err, errlen,
				 "name '%s': character U+%04X at position %zu is not allowed; use "
				 "only A-Z a-z 0-9 . _ -",
				 shown, (unsigned)c, pos + 1);
		return 0;
	}
	if (n > PV_MAX_NAME) {
		if (err)
			snprintf(err, errlen, "name must be 1 to %d characters", PV_MAX_NAME);
		return 0;
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

int pv_valid_page_size(uint32_t page_size, char *err, size_t errlen)
{
	if (page_size % PV_SECTOR || page_size < PV_MIN_PAGE_SIZE || page_size > PV_MAX_PAGE_SIZE) {
		if (err)
			snprintf(err, errlen,
				 "page size %u must be a multiple of %u between %u and %u bytes",
				 page_size, PV_SECTOR, PV_MIN_PAGE_SIZE, PV_MAX_PAGE_SIZE);
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
