/* check_auth.c: unit tests for the key files and derivations of
 * include/auth.h: keys format and parse back to themselves; damaged,
 * incomplete, mixed-up or oversized key files are refused with the line at
 * fault; a file readable by others is refused with the chmod that fixes it;
 * save never replaces a key unless asked; a client and a server compute the
 * same link key and different clients different ones; member keys follow
 * the secret; ZAP requests are checked. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

static char dir[] = "/tmp/check_auth.XXXXXX";

static void parse_ok(const char *text, struct pv_key *k)
{
	char err[256] = "";

	ck_assert_msg(pv_key_parse(text, strlen(text), k, err, sizeof(err)) == 0, "%s: %s", text,
		      err);
}

static void parse_bad(const char *text, const char *want)
{
	struct pv_key k;
	char err[256] = "";

	ck_assert_int_eq(pv_key_parse(text, strlen(text), &k, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, want), "'%s' refused with '%s', expected '%s'", text, err, want);
	ck_assert_int_eq(k.kind, PV_KEY_NONE);
}

START_TEST(group_roundtrip)
{
	struct pv_key k, back;
	char text[PV_KEY_FILE_MAX];

	pv_group_key_new(&k);
	ck_assert_int_gt(pv_key_format(&k, text, sizeof(text)), 0);
	parse_ok(text, &back);
	ck_assert_int_eq(back.kind, PV_KEY_GROUP);
	ck_assert_mem_eq(&back.group, &k.group, sizeof(k.group));
	/* a roll: previous kept */
	memcpy(k.group.previous, k.group.secret, PV_KEY_BYTES);
	k.group.has_previous = 1;
	k.group.roll = 1;
	k.group.secret[0] ^= 1;
	ck_assert_ptr_eq(pv_presented_secret(&k.group), k.group.previous);
	ck_assert_int_gt(pv_key_format(&k, text, sizeof(text)), 0);
	ck_assert_ptr_nonnull(strstr(text, "previous "));
	parse_ok(text, &back);
	ck_assert_int_eq(back.group.has_previous, 1);
	ck_assert_int_eq(back.group.roll, 1);
	ck_assert_mem_eq(&back.group, &k.group, sizeof(k.group));
	k.group.roll = 2; /* phase 2 presents the new secret */
	ck_assert_ptr_eq(pv_presented_secret(&k.group), k.group.secret);
	k.group.roll = 3;
	ck_assert_int_eq(pv_key_format(&k, text, sizeof(text)), -1);
	k.group.roll = 2;
	/* too small a buffer */
	ck_assert_int_eq(pv_key_format(&k, text, 40), -1);
}
END_TEST

START_TEST(client_roundtrip_and_link_keys)
{
	struct pv_key g, c, c2, back;
	uint8_t gpub[PV_KEY_BYTES], gsec[PV_KEY_BYTES], k1[PV_KEY_BYTES], k2[PV_KEY_BYTES],
	    k3[PV_KEY_BYTES];
	char text[PV_KEY_FILE_MAX];

	pv_group_key_new(&g);
	pv_group_identity(&g.group, gpub, gsec);
	pv_client_key_new(&c, "host-1.a_b", gpub);
	ck_assert_int_gt(pv_key_format(&c, text, sizeof(text)), 0);
	parse_ok(text, &back);
	ck_assert_int_eq(back.kind, PV_KEY_CLIENT);
	ck_assert_str_eq(back.client.name, "host-1.a_b");
	ck_assert_mem_eq(&back.client, &c.client, sizeof(c.client));
	/* the client and any server derive the same link key */
	ck_assert_int_eq(pv_client_link_key(&c.client, k1), 0);
	ck_assert_int_eq(pv_client_link_key_server(&g.group, c.client.public_key, k2), 0);
	ck_assert_mem_eq(k1, k2, PV_KEY_BYTES);
	/* another client: another key */
	pv_client_key_new(&c2, "host2", gpub);
	ck_assert_int_eq(pv_client_link_key(&c2.client, k3), 0);
	ck_assert_mem_ne(k1, k3, PV_KEY_BYTES);
	/* a server of another group computes another key */
	pv_group_key_new(&g);
	ck_assert_int_eq(pv_client_link_key_server(&g.group, c.client.public_key, k2), 0);
	ck_assert_mem_ne(k1, k2, PV_KEY_BYTES);
}
END_TEST

START_TEST(member_keys_follow_the_secret)
{
	struct pv_key g;
	uint8_t p1[PV_KEY_BYTES], s1[PV_KEY_BYTES], p2[PV_KEY_BYTES], s2[PV_KEY_BYTES],
	    l1[PV_KEY_BYTES], l2[PV_KEY_BYTES], i1[PV_KEY_BYTES], i2[PV_KEY_BYTES];

	pv_group_key_new(&g);
	pv_member_keypair(g.group.secret, p1, s1);
	pv_member_keypair(g.group.secret, p2, s2);
	ck_assert_mem_eq(p1, p2, PV_KEY_BYTES); /* deterministic: every server the same */
	pv_member_link_key(g.group.secret, l1);
	pv_group_identity(&g.group, i1, s1);
	ck_assert_mem_ne(p1, i1, PV_KEY_BYTES); /* membership is not the identity */
	g.group.secret[5] ^= 0x40;
	pv_member_keypair(g.group.secret, p2, s2);
	pv_member_link_key(g.group.secret, l2);
	pv_group_identity(&g.group, i2, s2);
	ck_assert_mem_ne(p1, p2, PV_KEY_BYTES);
	ck_assert_mem_ne(l1, l2, PV_KEY_BYTES);
	ck_assert_mem_eq(i1, i2, PV_KEY_BYTES); /* a roll keeps the identity */
}
END_TEST

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

START_TEST(bad_files)
{
	parse_bad("", "empty");
	parse_bad("# only a comment\n", "empty");
	parse_bad("hello\n", "not a peervol key file");
	parse_bad("peervol-key 2\nkind group\n", "line 1: not a peervol key file");
	parse_bad("peervol-key 1\n", "no 'kind'");
	parse_bad("peervol-key 1\nkind server\n", "line 2: kind must be");
	parse_bad("peervol-key 1\nkind group\nidentity " HEX64 "\n", "identity, secret");
	parse_bad("peervol-key 1\nkind group\nidentity 0011\nsecret " HEX64 "\n",
		  "line 3: identity must be 64 hex digits");
	parse_bad("peervol-key 1\nkind group\nidentity " HEX64 "\nsecret " HEX64 "\nsecret " HEX64
		  "\n",
		  "line 5: 'secret' given twice");
	parse_bad("peervol-key 1\nkind group\nidentity " HEX64 "\nsecret " HEX64 "\nname x\n",
		  "group key has");
	parse_bad("peervol-key 1\nkind group\ncolour blue\n", "line 3: unknown field 'colour'");
	parse_bad("peervol-key 1\nkind group\nidentity " HEX64 "\nsecret " HEX64 "\nprevious " HEX64
		  "\n",
		  "previous and roll go together");
	parse_bad("peervol-key 1\nkind group\nroll 3\n", "line 3: roll must be 1 or 2");
	parse_bad("peervol-key 1\nkind client\nname bad/name\n", "line 3: name must be");
	parse_bad("peervol-key 1\nkind client\nname ok\npublic " HEX64 "\nsecret " HEX64
		  "\ngroup " HEX64 "\n",
		  "not the secret key's");
	parse_bad("peervol-key 1\nkind gr\x01oup\n", "line 2: a byte that is not printable");
	parse_bad("peervol-key 1\nkind group\nidentity g0112233445566778899aabbccddeeff0011223344"
		  "5566778899aabbccddeeff\n",
		  "64 hex digits");
	{
		char *big = malloc(PV_KEY_FILE_MAX + 2);

		memset(big, '#', PV_KEY_FILE_MAX + 1);
		big[PV_KEY_FILE_MAX + 1] = 0;
		parse_bad(big, "longer than");
		free(big);
	}
	/* names */
	ck_assert(pv_client_name_ok("a"));
	ck_assert(!pv_client_name_ok(""));
	ck_assert(!pv_client_name_ok(".."));
	ck_assert(!pv_client_name_ok("a b"));
}
END_TEST

START_TEST(files_on_disk)
{
	struct pv_key k, back;
	char path[256], err[512];

	snprintf(path, sizeof(path), "%s/g.key", dir);
	pv_group_key_new(&k);
	ck_assert_int_eq(pv_key_save(path, &k, 0, err, sizeof(err)), 0);
	{
		struct stat st;

		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_int_eq(st.st_mode & 07777, 0600);
	}
	ck_assert_int_eq(pv_key_load(path, &back, err, sizeof(err)), 0);
	ck_assert_mem_eq(&back.group, &k.group, sizeof(k.group));
	/* never replaced unless forced */
	pv_group_key_new(&back);
	ck_assert_int_eq(pv_key_save(path, &back, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "exists"));
	ck_assert_int_eq(pv_key_load(path, &back, err, sizeof(err)), 0);
	ck_assert_mem_eq(&back.group, &k.group, sizeof(k.group));
	pv_group_key_new(&back);
	ck_assert_int_eq(pv_key_save(path, &back, 1, err, sizeof(err)), 0);
	ck_assert_int_eq(pv_key_load(path, &k, err, sizeof(err)), 0);
	ck_assert_mem_eq(&back.group, &k.group, sizeof(k.group));
	/* readable by the group: refused with the fix */
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(pv_key_load(path, &k, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	ck_assert_int_eq(k.kind, PV_KEY_NONE);
	/* a directory, a missing file */
	ck_assert_int_eq(pv_key_load(dir, &k, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	snprintf(path, sizeof(path), "%s/none.key", dir);
	ck_assert_int_eq(pv_key_load(path, &k, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

START_TEST(zap_requests)
{
	uint8_t key[PV_KEY_BYTES] = {1, 2, 3};
	const void *f[8] = {"1.0", "7", "peervol", "127.0.0.9", "", "CURVE", key};
	size_t sz[8] = {3, 1, 7, 9, 0, 5, PV_KEY_BYTES};
	struct pv_zap_request r;
	char err[256];

	ck_assert_int_eq(pv_zap_parse(f, sz, 7, &r, err, sizeof(err)), 0);
	ck_assert_str_eq(r.address, "127.0.0.9");
	ck_assert_int_eq(r.has_client_key, 1);
	ck_assert_mem_eq(r.client_key, key, PV_KEY_BYTES);
	ck_assert_uint_eq(r.request_id_len, 1);
	sz[6] = 31; /* a short key */
	ck_assert_int_eq(pv_zap_parse(f, sz, 7, &r, err, sizeof(err)), -1);
	sz[6] = PV_KEY_BYTES;
	ck_assert_int_eq(pv_zap_parse(f, sz, 5, &r, err, sizeof(err)), -1); /* too few */
	f[0] = "2.0";
	ck_assert_int_eq(pv_zap_parse(f, sz, 7, &r, err, sizeof(err)), -1);
	f[0] = "1.0";
	f[5] = "NULL";
	sz[5] = 4;
	ck_assert_int_eq(pv_zap_parse(f, sz, 6, &r, err, sizeof(err)), 0);
	ck_assert_int_eq(r.has_client_key, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("keys");
	SRunner *sr;
	int failed;

	if (!mkdtemp(dir))
		return EXIT_FAILURE;
	tcase_add_test(tc, group_roundtrip);
	tcase_add_test(tc, client_roundtrip_and_link_keys);
	tcase_add_test(tc, member_keys_follow_the_secret);
	tcase_add_test(tc, bad_files);
	tcase_add_test(tc, files_on_disk);
	tcase_add_test(tc, zap_requests);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
