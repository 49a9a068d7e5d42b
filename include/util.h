/* util.h: small helpers shared by peerd, fused and peerctl: size parsing and
 * printing, name validation, escaping text for messages, clocks. Pure
 * functions (proto/util.c). */
#ifndef PV_UTIL_H
#define PV_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Parses "2G", "512", "4M": an integer with an optional binary
 * suffix K, M, G, T, P (also KiB, KB...). Returns 0 and *out, or -1 with a
 * reason in err. */
int pv_parse_size(const char *s, uint64_t *out, char *err, size_t errlen);

/* Writes a size for people ("2.0 GiB", "512 B") into buf; returns buf. */
char *pv_format_size(uint64_t bytes, char *buf, size_t len);

/* Room for a name or argument echoed by pv_escape in a message: 99
 * characters, 16 escaped non-ASCII ones then "..." for instance; any valid
 * name fits whole. */
#define PV_ESCAPE_NAME 100

/* Writes the len bytes at s into buf (buflen bytes, terminated; nothing
 * when buflen is 0) so that they print safely in an error or log line and
 * read back unambiguously between single quotes: printable ASCII as it is,
 * but \\ and \' for a backslash and a quote; other characters as \u00e9
 * (U+0000..U+FFFF, a NUL included) or \U0001f600; a byte that is not part
 * of valid UTF-8 as \xff. When the result does not fit it is cut after a
 * whole escape and ends in "...". Returns buf. */
char *pv_escape(const void *s, size_t len, char *buf, size_t buflen);

/* Whether name is a valid volume or snapshot name: 1..64 characters of
 * [A-Za-z0-9._-], not starting with '.' or '-'. Returns 1/0; on 0 writes a
 * reason into err when err is not NULL, the name escaped by pv_escape and
 * a refused character named with its position ("character U+00E9 at
 * position 4"). */
int pv_valid_name(const char *name, char *err, size_t errlen);

/* Validates a volume size: > 0, multiple of 512, <= max. Same contract. */
int pv_valid_volume_size(uint64_t size, uint64_t max, char *err, size_t errlen);
/* Validates a volume's page size: a multiple of PV_SECTOR from
 * PV_MIN_PAGE_SIZE to PV_MAX_PAGE_SIZE (0, "the default", is the caller's
 * to replace first). Same contract. */
int pv_valid_page_size(uint32_t page_size, char *err, size_t errlen);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t pv_now_ms(void);

/* Seconds since the epoch (CLOCK_REALTIME). */
uint64_t pv_wall_s(void);

/* Parses a whole unsigned decimal number in [min, max]; 0 or -1. */
int pv_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Keeps block-sized buffers (up to 64 MiB) on the heap instead of a fresh
 * mmap each time: a 1 MiB request otherwise costs 256 page faults and
 * zeroed pages on every allocation, in our code and inside ZeroMQ. Call
 * first thing in main. */
void pv_tune_malloc(void);

#endif
