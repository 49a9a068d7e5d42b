/* check_fused_map.c: unit tests for fused's mappings of a server's data
 * files (fused/vmap.c). fused replies to the kernel out of such a mapping, so
 * it must be the very file the server named and hold the whole volume:
 *   - the file the path opens must have the device and inode the server
 *     named (another file, e.g. in another mount namespace, is refused);
 *   - a file smaller than the volume, a directory, a missing path and a
 *     volume of size 0 are refused with a reason;
 *   - the mapping shows the file's bytes, including what is written after it
 *     was made (MAP_SHARED);
 *   - vmap_ptr gives ranges inside the volume only (no wrap-around);
 *   - a reference taken for a reply thread's copy keeps it mapped after the
 *     volume gave its own up. */
#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fused.h"

#define SIZE (1u << 20)

static char path[64];
static int fd = -1;
static struct stat st;

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/check_fused_map.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, SIZE), 0);
	ck_assert_int_eq(pwrite(fd, "peervol", 7, 4096), 7);
	ck_assert_int_eq(fstat(fd, &st), 0);
}

static void teardown(void)
{
	close(fd);
	unlink(path);
}

START_TEST(maps_the_named_file)
{
	char err[256] = "";
	struct vmap *m = vmap_open(path, st.st_dev, st.st_ino, SIZE, err, sizeof(err));
	const uint8_t *p;

	ck_assert_msg(m != NULL, "%s", err);
	p = vmap_ptr(m, 4096, 7);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(memcmp(p, "peervol", 7), 0);
	/* a write after the mapping was made shows through it */
	ck_assert_int_eq(pwrite(fd, "again", 5, SIZE - 5), 5);
	p = vmap_ptr(m, SIZE - 5, 5);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(memcmp(p, "again", 5), 0);
	/* a hole reads as zeros */
	p = vmap_ptr(m, 65536, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[0], 0);
	vmap_put(m);
	vmap_put(NULL); /* accepted */
}
END_TEST

/* A reply thread's reference keeps the mapping readable after the volume
 * dropped its own; the last reference unmaps. */
START_TEST(references)
{
	char err[256] = "";
	struct vmap *m = vmap_open(path, st.st_dev, st.st_ino, SIZE, err, sizeof(err));
	const uint8_t *p;

	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_uint_eq(m->refs, 1);
	vmap_get(m);
	ck_assert_uint_eq(m->refs, 2);
	p = vmap_ptr(m, 4096, 7);
	vmap_put(m); /* the volume's */
	ck_assert_int_eq(memcmp(p, "peervol", 7), 0);
	vmap_put(m); /* the copy's: unmapped */
}
END_TEST

START_TEST(ranges)
{
	char err[256] = "";
	struct vmap *m = vmap_open(path, st.st_dev, st.st_ino, SIZE, err, sizeof(err));

	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_ptr_nonnull(vmap_ptr(m, 0, SIZE));
	ck_assert_ptr_nonnull(vmap_ptr(m, SIZE, 0));
	ck_assert_ptr_null(vmap_ptr(m, 0, SIZE + 1));
	ck_assert_ptr_null(vmap_ptr(m, SIZE, 1));
	ck_assert_ptr_null(vmap_ptr(m, SIZE + 1, 0));
	ck_assert_ptr_null(vmap_ptr(m, 4096, UINT64_MAX));
	ck_assert_ptr_null(vmap_ptr(m, UINT64_MAX, 2));
	vmap_put(m);
	/* no mapping has no ranges */
	ck_assert_ptr_null(vmap_ptr(NULL, 0, 1));
}
END_TEST

START_TEST(refuses_another_file)
{
	char err[256] = "";
	struct stat d;

	ck_assert_ptr_null(vmap_open(path, st.st_dev, st.st_ino + 1, SIZE, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "is not the server's data file"));
	err[0] = '\0';
	ck_assert_ptr_null(vmap_open(path, st.st_dev + 1, st.st_ino, SIZE, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "is not the server's data file"));
	/* a directory with the right identity is still not a data file */
	ck_assert_int_eq(stat("/tmp", &d), 0);
	ck_assert_ptr_null(vmap_open("/tmp", d.st_dev, d.st_ino, 4096, err, sizeof(err)));
	ck_assert_ptr_null(
	    vmap_open("/nonexistent/peervol", st.st_dev, st.st_ino, SIZE, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

START_TEST(refuses_short_file_and_size_0)
{
	char err[256] = "";

	ck_assert_ptr_null(vmap_open(path, st.st_dev, st.st_ino, SIZE + 512, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "holds"));
	ck_assert_ptr_null(vmap_open(path, st.st_dev, st.st_ino, 0, err, sizeof(err)));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fused_map");
	TCase *tc = tcase_create("map");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, maps_the_named_file);
	tcase_add_test(tc, references);
	tcase_add_test(tc, ranges);
	tcase_add_test(tc, refuses_another_file);
	tcase_add_test(tc, refuses_short_file_and_size_0);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
