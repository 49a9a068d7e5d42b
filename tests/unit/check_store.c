/* check_store.c: unit tests for peerd/store.c, the only file that touches
 * volume data: the sparse data file per volume, reads, writes (and FUA),
 * flush, TRIM and page punching as holes that read back as zeros, and the
 * page map behind store_stat. Each test gets a fresh data directory under
 * $TMPDIR (or /tmp); the global srv of peerd is a stub set up here. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peerd.h"

#define PAGE   (64u << 10)
#define NPAGES 4u

struct server *srv; /* defined by peerd/main.c, which is not linked here */
static struct server server;
static struct volume vol;
static char dir[256];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	memset(&server, 0, sizeof(server));
	if (!tmp || !*tmp || strlen(tmp) > sizeof(dir) - 32)
		tmp = "/tmp";
	snprintf(dir, sizeof(dir), "%s/check_store.XXXXXX", tmp);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(server.cfg.data_dir, sizeof(server.cfg.data_dir), "%s", dir);
	srv = &server;

	memset(&vol, 0, sizeof(vol));
	snprintf(vol.name, sizeof(vol.name), "vol1");
	vol.size = (uint64_t)PAGE * NPAGES;
	vol.page_size = PAGE;
	vol.npages = NPAGES;
	vol.fd = -1;
}

static void teardown(void)
{
	char cmd[sizeof(dir) + 16];

	store_close(&vol);
	free(vol.written_map);
	vol.written_map = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "check_store: could not remove %s\n", dir);
}

/* Runs one job of kind on vol the way a worker and the reactor do. */
static int run(enum io_kind kind, uint64_t offset, uint64_t length, void *ptr, int fua)
{
	struct io_job job;

	memset(&job, 0, sizeof(job));
	job.kind = kind;
	job.fd = vol.fd;
	job.offset = offset;
	job.length = length;
	job.ptr = ptr;
	job.fua = fua;
	job.vol = &vol;
	job.err = -12345;
	store_do(&job);
	store_note_done(&vol, &job);
	return job.err;
}

static uint8_t *pattern(size_t n, uint8_t seed)
{
	uint8_t *p = malloc(n);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 9));
	return p;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Reads [offset, offset+n) into a fresh buffer pre-filled with 0xee. */
static uint8_t *read_back(uint64_t offset, size_t n)
{
	uint8_t *p = malloc(n);

	ck_assert_ptr_nonnull(p);
	memset(p, 0xee, n);
	ck_assert_int_eq(run(IO_READ, offset, n, p, 0), 0);
	return p;
}

static uint64_t pages_written(void)
{
	uint64_t pages = 99, bytes = 99;

	ck_assert_int_eq(store_stat(&vol, &pages, &bytes), 0);
	return pages;
}

static void data_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/volumes/%s.vol", dir, vol.name);
}

START_TEST(open_creates_sparse_file)
{
	char path[PATH_MAX + 512];
	struct stat st;
	uint64_t pages, bytes;

	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_ge(vol.fd, 0);
	data_path(path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, vol.size);
	ck_assert_uint_eq((uint64_t)st.st_blocks, 0);
	ck_assert_int_eq(store_stat(&vol, &pages, &bytes), 0);
	ck_assert_uint_eq(pages, 0);
	ck_assert_uint_eq(bytes, 0);
	/* a second open of an open volume is a no-op */
	{
		int fd = vol.fd;

		ck_assert_int_eq(store_open(&vol), 0);
		ck_assert_int_eq(vol.fd, fd);
	}
	store_close(&vol);
	ck_assert_int_eq(vol.fd, -1);
}
END_TEST

START_TEST(write_read_roundtrip)
{
	const size_t n = 8192;
	uint8_t *data = pattern(n, 7), *got;

	ck_assert_int_eq(store_open(&vol), 0);
	/* crosses the boundary of pages 0 and 1 */
	ck_assert_int_eq(run(IO_WRITE, PAGE - 4096, n, data, 0), 0);
	got = read_back(PAGE - 4096, n);
	ck_assert_mem_eq(got, data, n);
	free(got);
	ck_assert_uint_eq(pages_written(), 2);

	/* a FUA write lands too, and FLUSH succeeds */
	ck_assert_int_eq(run(IO_WRITE, 3 * PAGE, 512, data, 1), 0);
	ck_assert_int_eq(run(IO_FLUSH, 0, 0, NULL, 0), 0);
	got = read_back(3 * PAGE, 512);
	ck_assert_mem_eq(got, data, 512);
	free(got);
	ck_assert_uint_eq(pages_written(), 3);
	free(data);
}
END_TEST

START_TEST(holes_read_as_zeros)
{
	uint8_t *data = pattern(512, 1), *got;

	ck_assert_int_eq(store_open(&vol), 0);
	got = read_back(2 * PAGE, PAGE);
	ck_assert(all_zero(got, PAGE));
	free(got);
	/* around one written sector, the rest of the page is zeros */
	ck_assert_int_eq(run(IO_WRITE, 2 * PAGE + 4096, 512, data, 0), 0);
	got = read_back(2 * PAGE, PAGE);
	ck_assert(all_zero(got, 4096));
	ck_assert_mem_eq(got + 4096, data, 512);
	ck_assert(all_zero(got + 4096 + 512, PAGE - 4096 - 512));
	free(got);
	free(data);
}
END_TEST

START_TEST(trim_punches_holes)
{
	uint8_t *data = pattern(2 * PAGE, 3), *got;
	struct stat before, after;

	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_eq(run(IO_WRITE, PAGE, 2 * PAGE, data, 0), 0);
	ck_assert_uint_eq(pages_written(), 2);
	ck_assert_int_eq(fstat(vol.fd, &before), 0);

	/* trim page 1 whole: it reads as zeros, leaves the map, frees blocks */
	ck_assert_int_eq(run(IO_TRIM, PAGE, PAGE, NULL, 0), 0);
	got = read_back(PAGE, 2 * PAGE);
	ck_assert(all_zero(got, PAGE));
	ck_assert_mem_eq(got + PAGE, data + PAGE, PAGE);
	free(got);
	ck_assert_uint_eq(pages_written(), 1);
	ck_assert_int_eq(fstat(vol.fd, &after), 0);
	ck_assert_int_lt(after.st_blocks, before.st_blocks);

	/* trim half of page 2: the other half stays, the page stays mapped */
	ck_assert_int_eq(run(IO_TRIM, 2 * PAGE, PAGE / 2, NULL, 0), 0);
	got = read_back(2 * PAGE, PAGE);
	ck_assert(all_zero(got, PAGE / 2));
	ck_assert_mem_eq(got + PAGE / 2, data + PAGE + PAGE / 2, PAGE / 2);
	free(got);
	ck_assert_uint_eq(pages_written(), 1);
	free(data);
}
END_TEST

START_TEST(punch_page)
{
	uint8_t *data = pattern(NPAGES * PAGE, 5), *got;

	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_eq(run(IO_WRITE, 0, NPAGES * PAGE, data, 0), 0);
	ck_assert_int_eq(store_punch_page(&vol, 2), 0);
	got = read_back(0, NPAGES * PAGE);
	ck_assert_mem_eq(got, data, 2 * PAGE);
	ck_assert(all_zero(got + 2 * PAGE, PAGE));
	ck_assert_mem_eq(got + 3 * PAGE, data + 3 * PAGE, PAGE);
	free(got);
	free(data);
}
END_TEST

START_TEST(reopen_rebuilds_page_map)
{
	uint8_t *data = pattern(4096, 9), *got;

	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_eq(run(IO_WRITE, 0, 4096, data, 0), 0);
	ck_assert_int_eq(run(IO_WRITE, 3 * PAGE + 8192, 4096, data, 0), 0);
	ck_assert_uint_eq(pages_written(), 2);
	store_close(&vol);
	free(vol.written_map);
	vol.written_map = NULL;

	/* a restarted server finds the same pages from the file's extents */
	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_uint_eq(pages_written(), 2);
	ck_assert_uint_eq(vol.written_map[0], (1u << 0) | (1u << 3));
	got = read_back(3 * PAGE + 8192, 4096);
	ck_assert_mem_eq(got, data, 4096);
	free(got);
	free(data);
}
END_TEST

START_TEST(read_past_end_is_zeros)
{
	uint8_t *data = pattern(512, 11), *got;

	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_eq(run(IO_WRITE, vol.size - 512, 512, data, 0), 0);
	/* the request layer never asks this, but the store must not leave
	 * stale bytes in the buffer if it does */
	got = read_back(vol.size - 512, 1024);
	ck_assert_mem_eq(got, data, 512);
	ck_assert(all_zero(got + 512, 512));
	free(got);
	free(data);
}
END_TEST

START_TEST(remove_data_file)
{
	char path[PATH_MAX + 512];

	ck_assert_int_eq(store_open(&vol), 0);
	store_close(&vol);
	data_path(path, sizeof(path));
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(store_remove(vol.name), 0);
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* removing what is gone is not an error */
	ck_assert_int_eq(store_remove(vol.name), 0);
}
END_TEST

START_TEST(free_space)
{
	ck_assert_uint_gt(store_free(), 0);
	snprintf(server.cfg.data_dir, sizeof(server.cfg.data_dir), "%s/does-not-exist", dir);
	ck_assert_uint_eq(store_free(), 0);
}
END_TEST

/* A FLUSH that failed may have lost writes: later FLUSHes of the volume
 * fail with the same errno (the kernel reports it once), until the file is
 * opened again. */
START_TEST(failed_flush_sticks)
{
	struct io_job job;

	ck_assert_int_eq(store_open(&vol), 0);
	memset(&job, 0, sizeof(job));
	job.kind = IO_FLUSH;
	job.fd = vol.fd;
	job.err = EIO; /* as a worker's fdatasync would report it */
	store_note_done(&vol, &job);
	ck_assert_int_eq(job.err, EIO);
	ck_assert_int_eq(run(IO_FLUSH, 0, 0, NULL, 0), EIO);
	store_close(&vol);
	ck_assert_int_eq(store_open(&vol), 0);
	ck_assert_int_eq(run(IO_FLUSH, 0, 0, NULL, 0), 0);
}
END_TEST

/* A write that failed for want of space marks the volume; one that
 * succeeds with space free again clears it. */
START_TEST(no_space_marks_volume)
{
	struct io_job job;
	uint8_t *buf = pattern(PAGE, 3);

	ck_assert_int_eq(store_open(&vol), 0);
	memset(&job, 0, sizeof(job));
	job.kind = IO_WRITE;
	job.fd = vol.fd;
	job.length = PAGE;
	job.err = ENOSPC;
	store_note_done(&vol, &job);
	ck_assert_int_eq(vol.no_space, 1);
	ck_assert_uint_eq(pages_written(), 0); /* nothing was written */
	if (store_free() >= STORE_LOW_FREE) {
		ck_assert_int_eq(store_disk_full(), 0);
		ck_assert_int_eq(run(IO_WRITE, 0, PAGE, buf, 0), 0);
		ck_assert_int_eq(vol.no_space, 0);
	}
	free(buf);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, open_creates_sparse_file);
	tcase_add_test(tc, write_read_roundtrip);
	tcase_add_test(tc, holes_read_as_zeros);
	tcase_add_test(tc, trim_punches_holes);
	tcase_add_test(tc, punch_page);
	tcase_add_test(tc, reopen_rebuilds_page_map);
	tcase_add_test(tc, read_past_end_is_zeros);
	tcase_add_test(tc, remove_data_file);
	tcase_add_test(tc, free_space);
	tcase_add_test(tc, failed_flush_sticks);
	tcase_add_test(tc, no_space_marks_volume);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
