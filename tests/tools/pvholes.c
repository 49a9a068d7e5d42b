/* pvholes.c: shows and checks the data/hole layout of a sparse file with
 * lseek(SEEK_DATA/SEEK_HOLE), for the end-to-end tests that assert a
 * server's data file has a hole where a volume range was trimmed. Test tool
 * only, never installed.
 *
 *   pvholes map FILE               prints "data START END" / "hole START END"
 *   pvholes hole FILE OFFSET LEN   exit 0 if [OFFSET, OFFSET+LEN) is all hole
 *   pvholes data FILE OFFSET LEN   exit 0 if [OFFSET, OFFSET+LEN) is all data
 *   pvholes allocated FILE         prints the allocated bytes (st_blocks*512)
 *
 * Exit: 0 yes, 1 no, 2 usage or system error. Numbers accept K/M/G suffixes
 * (binary). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: pvholes map FILE\n"
	"       pvholes hole FILE OFFSET LENGTH\n"
	"       pvholes data FILE OFFSET LENGTH\n"
	"       pvholes allocated FILE\n";

static off_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end)
		goto bad;
	return (off_t)v;
bad:
	fprintf(stderr, "pvholes: '%s' is not a size\n", s);
	exit(2);
}

/* The next data at or after off, or the file size when only a hole
 * follows. */
static off_t next_data(int fd, off_t off, off_t size)
{
	off_t r = lseek(fd, off, SEEK_DATA);

	if (r < 0) {
		if (errno == ENXIO)
			return size;
		perror("pvholes: lseek SEEK_DATA");
		exit(2);
	}
	return r;
}

static off_t next_hole(int fd, off_t off, off_t size)
{
	off_t r = lseek(fd, off, SEEK_HOLE);

	if (r < 0) {
		if (errno == ENXIO)
			return size;
		perror("pvholes: lseek SEEK_HOLE");
		exit(2);
	}
	return r;
}

int main(int argc, char **argv)
{
	struct stat st;
	int fd;

	if (argc < 3) {
		fputs(usage_text, stderr);
		return 2;
	}
	fd = open(argv[2], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "pvholes: %s: %s\n", argv[2], strerror(errno));
		return 2;
	}

	if (strcmp(argv[1], "allocated") == 0) {
		printf("%lld\n", (long long)st.st_blocks * 512);
		return 0;
	}
	if (strcmp(argv[1], "map") == 0) {
		off_t off = 0;

		while (off < st.st_size) {
			off_t d = next_data(fd, off, st.st_size);

			if (d > off)
				printf("hole %lld %lld\n", (long long)off, (long long)d);
			if (d >= st.st_size)
				break;
			off = next_hole(fd, d, st.st_size);
			printf("data %lld %lld\n", (long long)d, (long long)off);
		}
		return 0;
	}
	if (argc != 5) {
		fputs(usage_text, stderr);
		return 2;
	}
	off_t start = parse_size(argv[3]), end = start + parse_size(argv[4]);

	if (strcmp(argv[1], "hole") == 0) {
		/* Past the end of file counts as hole (reads return zeros). */
		off_t d = start < st.st_size ? next_data(fd, start, st.st_size) : st.st_size;

		if (d < end && d < st.st_size) {
			printf("data at %lld inside [%lld, %lld)\n", (long long)d,
			       (long long)start, (long long)end);
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[1], "data") == 0) {
		if (end > st.st_size) {
			printf("[%lld, %lld) goes past the end of file (%lld)\n", (long long)start,
			       (long long)end, (long long)st.st_size);
			return 1;
		}
		off_t h = next_hole(fd, start, st.st_size);

		if (h < end) {
			printf("hole at %lld inside [%lld, %lld)\n", (long long)h, (long long)start,
			       (long long)end);
			return 1;
		}
		return 0;
	}
	fputs(usage_text, stderr);
	return 2;
}
