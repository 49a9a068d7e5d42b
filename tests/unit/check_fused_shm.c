/* check_fused_shm.c: unit tests for fused's shared memory slots
 * (fused/shm.c). The slot pool decides which memory a server may write a
 * READ's data into and which WRITE data it reads, so its rules are what
 * keeps one request's bytes out of another's:
 *   - every slot is handed out once until it is put back; none when all are
 *     in use;
 *   - a put-back slot comes out again first (LIFO: cache-warm);
 *   - a quarantined slot never comes out again, and putting it back (as a
 *     ZeroMQ message's free function does) is ignored;
 *   - pointers outside the memory are not slots and are ignored;
 *   - the memory is a sealed memfd named peervol-shm starting with a
 *     16-byte token, as peerd checks it. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fused.h"

#define SLOTS 8

static void setup(void)
{
	ck_assert_int_eq(shm_init(SLOTS), 0);
	ck_assert(shm_enabled());
}

static void teardown(void)
{
	shm_destroy();
	ck_assert(!shm_enabled());
}

START_TEST(every_slot_once)
{
	void *got[SLOTS];

	for (int i = 0; i < SLOTS; i++) {
		got[i] = shm_slot_get();
		ck_assert_ptr_nonnull(got[i]);
		ck_assert_ptr_eq(shm_slot_of(got[i]), got[i]);
		for (int k = 0; k < i; k++) {
			/* distinct and not overlapping */
			uint8_t *a = got[i], *b = got[k];

			ck_assert(a + SHM_SLOT <= b || b + SHM_SLOT <= a);
		}
		memset(got[i], i, SHM_SLOT); /* the whole slot is usable memory */
	}
	ck_assert_ptr_null(shm_slot_get()); /* all in use */
	shm_slot_put(got[3]);
	ck_assert_ptr_eq(shm_slot_get(), got[3]);
	for (int i = 0; i < SLOTS; i++)
		shm_slot_put(got[i]);
}
END_TEST

START_TEST(lifo)
{
	void *a = shm_slot_get(), *b = shm_slot_get();

	shm_slot_put(a);
	shm_slot_put(b);
	ck_assert_ptr_eq(shm_slot_get(), b); /* the last one back comes out first */
	ck_assert_ptr_eq(shm_slot_get(), a);
	shm_slot_put(a);
	shm_slot_put(b);
}
END_TEST

START_TEST(double_put_ignored)
{
	void *a = shm_slot_get(), *b;

	shm_slot_put(a);
	shm_slot_put(a); /* a second put must not make it come out twice */
	b = shm_slot_get();
	ck_assert_ptr_eq(b, a);
	ck_assert_ptr_ne(shm_slot_get(), a);
}
END_TEST

START_TEST(quarantine_is_forever)
{
	void *got[SLOTS], *q;
	int n = 0;

	q = shm_slot_get();
	/* quarantined by a pointer inside it (a WRITE's data offset) */
	shm_slot_quarantine((uint8_t *)q + 4096);
	shm_slot_put(q); /* the message's free function: ignored */
	shm_slot_quarantine(q); /* twice: no harm */
	while ((got[n] = shm_slot_get()) != NULL) {
		ck_assert_ptr_ne(got[n], q);
		n++;
	}
	ck_assert_int_eq(n, SLOTS - 1);
	for (int i = 0; i < n; i++)
		shm_slot_put(got[i]);
	for (int i = 0; i < SLOTS; i++) {
		void *s = shm_slot_get();

		if (!s)
			break;
		ck_assert_ptr_ne(s, q);
	}
}
END_TEST

START_TEST(free_slot_quarantined)
{
	void *a = shm_slot_get();

	shm_slot_put(a);
	shm_slot_quarantine(a); /* quarantining a free slot takes it off the stack */
	for (int i = 0; i < SLOTS; i++) {
		void *s = shm_slot_get();

		if (!s)
			break;
		ck_assert_ptr_ne(s, a);
	}
}
END_TEST

START_TEST(outside_pointers)
{
	static uint8_t elsewhere[64];
	const char *path;
	uint64_t size;
	const uint8_t *token;
	uint8_t *base;

	ck_assert_ptr_null(shm_slot_of(elsewhere));
	ck_assert_ptr_null(shm_slot_of(NULL));
	shm_slot_put(elsewhere); /* ignored */
	shm_slot_quarantine(elsewhere);
	shm_describe(&path, &size, &token);
	base = (uint8_t *)token;
	ck_assert_ptr_null(shm_slot_of(base)); /* the token's page is not a slot */
	ck_assert_ptr_null(shm_slot_of(base + size)); /* one past the end */
	ck_assert_ptr_nonnull(shm_slot_of(base + size - 1));
	/* all slots still there */
	for (int i = 0; i < SLOTS; i++)
		ck_assert_ptr_nonnull(shm_slot_get());
	ck_assert_ptr_null(shm_slot_get());
}
END_TEST

START_TEST(offsets_and_description)
{
	const char *path;
	uint64_t size;
	const uint8_t *token;
	char want[64], link[256];
	ssize_t n;
	int fd, seals;
	void *s = shm_slot_get();

	shm_describe(&path, &size, &token);
	ck_assert_uint_eq(size, 4096 + (uint64_t)SLOTS * SHM_SLOT);
	ck_assert_uint_eq(shm_offset(s), (uint64_t)((uint8_t *)s - token));
	ck_assert_uint_ge(shm_offset(s), 4096);
	ck_assert_uint_le(shm_offset(s) + SHM_SLOT, size);
	/* the path names this process's memfd, as peerd will check it */
	snprintf(want, sizeof(want), "/proc/%d/fd/", (int)getpid());
	ck_assert_int_eq(strncmp(path, want, strlen(want)), 0);
	n = readlink(path, link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_msg(strncmp(link, "/memfd:peervol-shm", 18) == 0, "link %s", link);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	seals = fcntl(fd, F_GET_SEALS);
	close(fd);
	ck_assert(seals & F_SEAL_SHRINK);
	ck_assert(seals & F_SEAL_GROW);
	/* a random token, not zeros */
	{
		static const uint8_t zero[PV_SHM_TOKEN];

		ck_assert(memcmp(token, zero, PV_SHM_TOKEN) != 0);
	}
	shm_slot_put(s);
}
END_TEST

START_TEST(disabled)
{
	/* no shared memory (fused --shm-slots 0): nothing comes out, nothing
	 * is a slot, puts are ignored */
	shm_destroy();
	ck_assert_int_eq(shm_init(0), 0);
	ck_assert(!shm_enabled());
	ck_assert_ptr_null(shm_slot_get());
	shm_slot_put((void *)&teardown);
	ck_assert_ptr_null(shm_slot_of((void *)&teardown));
	ck_assert_int_eq(shm_init(SLOTS), 0); /* for teardown */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fused_shm");
	TCase *tc = tcase_create("slots");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, every_slot_once);
	tcase_add_test(tc, lifo);
	tcase_add_test(tc, double_put_ignored);
	tcase_add_test(tc, quarantine_is_forever);
	tcase_add_test(tc, free_slot_quarantined);
	tcase_add_test(tc, outside_pointers);
	tcase_add_test(tc, offsets_and_description);
	tcase_add_test(tc, disabled);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
