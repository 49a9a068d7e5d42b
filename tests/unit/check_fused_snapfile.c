/* check_fused_snapfile.c: unit tests for the names and attributes of
 * fused's snapshot files (fused/snapfile.c). A snapshot NAME of volume VOL
 * is the read-only file VOL@NAME, so
 *   - a volume's file is its name, a snapshot's VOL@NAME, up to the longest
 *     names on both sides (FUSED_NAME_MAX);
 *   - a file name splits at its '@' into the volume's and the snapshot's
 *     name, and names that can be neither (empty or too long on a side, a
 *     second '@') are refused, so a lookup never matches a shortened name;
 *   - a snapshot's attributes are its volume's (size, page size, id) but
 *     for its own id, name, creation time and preserved bytes (st_blocks);
 *     a catalog entry with an invalid name or id 0 is refused with a
 *     reason. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"

static struct volume_attr volume(const char *name)
{
	struct volume_attr v;

	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "%s", name);
	v.id = 7;
	v.size = 64 << 20;
	v.page_size = 4 << 20;
	v.created = 1795000000;
	v.allocated = 12 << 20;
	return v;
}

/* name repeated to n characters */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

START_TEST(name_of_volume_and_snapshot)
{
	struct volume_attr v = volume("vol1");
	char buf[FUSED_NAME_MAX + 1];

	ck_assert_str_eq(snapfile_name(&v, buf), "vol1");
	snprintf(v.snap, sizeof(v.snap), "daily");
	v.snap_id = 3;
	ck_assert_str_eq(snapfile_name(&v, buf), "vol1@daily");
}
END_TEST

START_TEST(longest_names_fit)
{
	char *vol = repeat('v', PV_MAX_NAME), *snap = repeat('s', PV_MAX_NAME);
	struct volume_attr v = volume(vol);
	char buf[FUSED_NAME_MAX + 1], vb[PV_MAX_NAME + 1], sb[PV_MAX_NAME + 1];

	snprintf(v.snap, sizeof(v.snap), "%s", snap);
	v.snap_id = 1;
	snapfile_name(&v, buf);
	ck_assert_uint_eq(strlen(buf), FUSED_NAME_MAX);
	ck_assert_int_eq(snapfile_split(buf, vb, sb), 1);
	ck_assert_str_eq(vb, vol);
	ck_assert_str_eq(sb, snap);
	free(vol);
	free(snap);
}
END_TEST

START_TEST(split)
{
	char vol[PV_MAX_NAME + 1], snap[PV_MAX_NAME + 1];

	ck_assert_int_eq(snapfile_split("vol1", vol, snap), 0);
	ck_assert_str_eq(vol, "vol1");
	ck_assert_str_eq(snap, "");
	ck_assert_int_eq(snapfile_split("vol1@daily", vol, snap), 1);
	ck_assert_str_eq(vol, "vol1");
	ck_assert_str_eq(snap, "daily");
	ck_assert_int_eq(snapfile_split("a.b-c_d@2026-12-02.x", vol, snap), 1);
	ck_assert_str_eq(vol, "a.b-c_d");
	ck_assert_str_eq(snap, "2026-12-02.x");
}
END_TEST

START_TEST(split_refuses)
{
	char vol[PV_MAX_NAME + 1], snap[PV_MAX_NAME + 1];
	char *long_vol = repeat('v', PV_MAX_NAME + 1), *long_snap = repeat('s', PV_MAX_NAME + 1);
	char buf[2 * PV_MAX_NAME + 8];

	ck_assert_int_eq(snapfile_split("", vol, snap), -1);
	ck_assert_int_eq(snapfile_split("@", vol, snap), -1);
	ck_assert_int_eq(snapfile_split("@daily", vol, snap), -1);
	ck_assert_int_eq(snapfile_split("vol1@", vol, snap), -1);
	ck_assert_int_eq(snapfile_split("vol1@a@b", vol, snap), -1);
	ck_assert_int_eq(snapfile_split("vol1@@b", vol, snap), -1);
	ck_assert_int_eq(snapfile_split(long_vol, vol, snap), -1);
	snprintf(buf, sizeof(buf), "%s@x", long_vol);
	ck_assert_int_eq(snapfile_split(buf, vol, snap), -1);
	snprintf(buf, sizeof(buf), "x@%s", long_snap);
	ck_assert_int_eq(snapfile_split(buf, vol, snap), -1);
	free(long_vol);
	free(long_snap);
}
END_TEST

START_TEST(attr_of_snapshot)
{
	struct volume_attr v = volume("vol1"), s;
	Pv__SnapshotInfo si = PV__SNAPSHOT_INFO__INIT;
	char err[256] = "", buf[FUSED_NAME_MAX + 1];

	si.name = "daily";
	si.id = 5;
	si.created = 1795000100;
	si.mode = "hold";
	si.preserved = 65536;
	ck_assert_int_eq(snapfile_attr(&v, &si, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s.name, "vol1");
	ck_assert_uint_eq(s.id, 7);
	ck_assert_uint_eq(s.size, 64 << 20);
	ck_assert_uint_eq(s.page_size, 4 << 20);
	ck_assert_str_eq(s.snap, "daily");
	ck_assert_uint_eq(s.snap_id, 5);
	ck_assert_uint_eq(s.created, 1795000100);
	ck_assert_uint_eq(s.allocated, 65536);
	ck_assert_str_eq(snapfile_name(&s, buf), "vol1@daily");
	/* the volume's own attributes are untouched */
	ck_assert_uint_eq(v.snap_id, 0);
	ck_assert_uint_eq(v.allocated, 12 << 20);
}
END_TEST

START_TEST(attr_refuses)
{
	struct volume_attr v = volume("vol1"), s;
	Pv__SnapshotInfo si = PV__SNAPSHOT_INFO__INIT;
	char err[256] = "";

	si.name = "bad@name";
	si.id = 5;
	ck_assert_int_eq(snapfile_attr(&v, &si, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "'@'"));
	si.name = "";
	ck_assert_int_eq(snapfile_attr(&v, &si, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "1 to 64"));
	si.name = "ok";
	si.id = 0;
	ck_assert_int_eq(snapfile_attr(&v, &si, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "id 0"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("fused_snapfile");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, name_of_volume_and_snapshot);
	tcase_add_test(tc, longest_names_fit);
	tcase_add_test(tc, split);
	tcase_add_test(tc, split_refuses);
	tcase_add_test(tc, attr_of_snapshot);
	tcase_add_test(tc, attr_refuses);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
