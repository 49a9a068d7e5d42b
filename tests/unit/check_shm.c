/* check_shm.c: unit tests for shm_path_valid (peerd/shm.c), the first check
 * on the path a client offers with PV_OP_SHM_ATTACH: it comes from the
 * network and peerd passes it to readlink and open, so only the exact form
 * /proc/PID/fd/N (decimal, as fused prints it) may get through. The rest of
 * shm.c maps memory and is covered end to end (bad-frames, shm-local).
 * shm_path_valid is pure; the global srv of peerd stays NULL here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

static void path_ok(const char *path)
{
	ck_assert_msg(shm_path_valid(path) == 1, "'%s' refused", path);
}

static void path_bad(const char *path)
{
	ck_assert_msg(shm_path_valid(path) == 0, "'%s' accepted", path ? path : "(null)");
}

/* The pass message (a memfd passed by a fused of another user): the magic
 * and the token, nothing more, nothing less. */
START_TEST(pass_message)
{
	uint8_t msg[PV_SHM_PASS_LEN + 1], token[PV_SHM_TOKEN];

	memcpy(msg, PV_SHM_PASS_MAGIC, 8);
	for (unsigned i = 0; i < PV_SHM_TOKEN; i++)
		msg[8 + i] = (uint8_t)(i * 7 + 1);
	ck_assert_int_eq(shm_pass_parse(msg, PV_SHM_PASS_LEN, token), 0);
	ck_assert_mem_eq(token, msg + 8, PV_SHM_TOKEN);
	memset(token, 0, sizeof(token));
	ck_assert_int_eq(shm_pass_parse(msg, PV_SHM_PASS_LEN - 1, token), -1);
	ck_assert_int_eq(shm_pass_parse(msg, PV_SHM_PASS_LEN + 1, token), -1);
	ck_assert_int_eq(shm_pass_parse(NULL, PV_SHM_PASS_LEN, token), -1);
	msg[7] = '2';
	ck_assert_int_eq(shm_pass_parse(msg, PV_SHM_PASS_LEN, token), -1);
	for (unsigned i = 0; i < PV_SHM_TOKEN; i++)
		ck_assert_uint_eq(token[i], 0); /* nothing handed out on a refusal */
}
END_TEST

START_TEST(good_forms)
{
	char p[64];

	path_ok("/proc/1/fd/0");
	path_ok("/proc/42/fd/7");
	path_ok("/proc/123456/fd/1023");
	path_ok("/proc/4194304/fd/1048575"); /* PID_MAX_LIMIT, a large fd */
	path_ok("/proc/4294967295/fd/4294967295");
	/* what fused sends: its own pid and the memfd's descriptor */
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", 31337, 12);
	path_ok(p);
}
END_TEST

START_TEST(empty_null_and_relative)
{
	path_bad(NULL);
	path_bad("");
	path_bad("/");
	path_bad("proc/1/fd/0");
	path_bad("./proc/1/fd/0");
	path_bad("../proc/1/fd/0");
	path_bad("//proc/1/fd/0");
	path_bad("/proc/1/fd/0/../3");
	path_bad("/proc/1/fd/../fd/0");
}
END_TEST

START_TEST(incomplete_and_suffixes)
{
	path_bad("/proc");
	path_bad("/proc/");
	path_bad("/proc/1");
	path_bad("/proc/1/");
	path_bad("/proc/1/fd");
	path_bad("/proc/1/fd/");
	path_bad("/proc//fd/0");
	path_bad("/proc/1//fd/0");
	path_bad("/proc/1/fd//0");
	path_bad("/proc/1/fd/0/");
	path_bad("/proc/1/fd/0/1");
	path_bad("/proc/1/fd/0x");
	path_bad("/proc/1/fd/0x1");
	path_bad("/proc/1/fd/1e3");
	path_bad("/proc/1/fd/0.0");
	path_bad("/proc/1/fdx/0");
	path_bad("/proc/1/fdinfo/0");
	path_bad("/proc/1/FD/0");
	path_bad("/PROC/1/fd/0");
	path_bad("/proc/1/cwd");
	path_bad("/proc/1/task/1/fd/0");
	path_bad("/proc/self/fd/0");
	path_bad("/proc/thread-self/fd/0");
	path_bad("/proc/1/fd/0\n");
}
END_TEST

START_TEST(spaces_and_signs)
{
	path_bad(" /proc/1/fd/0");
	path_bad("/proc/1/fd/0 ");
	path_bad("/proc/ 1/fd/0");
	path_bad("/proc/1 /fd/0");
	path_bad("/proc/1/fd/ 0");
	path_bad("/proc/\t1/fd/0");
	path_bad("/proc/+1/fd/0");
	path_bad("/proc/-1/fd/0");
	path_bad("/proc/1/fd/+0");
	path_bad("/proc/1/fd/-0");
	path_bad("/proc/1/fd/-1");
}
END_TEST

START_TEST(pid_zero_leading_zeros_and_overflow)
{
	char p[128];

	path_bad("/proc/0/fd/0");
	path_bad("/proc/00/fd/3");
	/* not the decimal form the kernel knows (it refuses leading zeros) */
	path_bad("/proc/01/fd/0");
	path_bad("/proc/1/fd/00");
	path_bad("/proc/1/fd/007");
	/* numbers past 32 bits must not wrap into small valid ones */
	path_bad("/proc/4294967296/fd/0"); /* 2^32: would be pid 0 */
	path_bad("/proc/4294967297/fd/0"); /* 2^32 + 1: would be pid 1 */
	path_bad("/proc/1/fd/4294967296");
	path_bad("/proc/1/fd/4294967299");
	path_bad("/proc/18446744073709551617/fd/0");
	path_bad("/proc/99999999999999999999/fd/0");
	/* too long: 41 characters and more, whatever the form */
	snprintf(p, sizeof(p), "/proc/1/fd/%s", "100000000000000000000000000000");
	ck_assert_uint_eq(strlen(p), 41);
	path_bad(p);
	memset(p, '1', sizeof(p) - 1);
	p[sizeof(p) - 1] = '\0';
	memcpy(p, "/proc/1/fd/", 11);
	path_bad(p);
}
END_TEST

static Suite *shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc = tcase_create("path");

	tcase_add_test(tc, pass_message);
	tcase_add_test(tc, good_forms);
	tcase_add_test(tc, empty_null_and_relative);
	tcase_add_test(tc, incomplete_and_suffixes);
	tcase_add_test(tc, spaces_and_signs);
	tcase_add_test(tc, pid_zero_leading_zeros_and_overflow);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(shm_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
