/* check_util.c: unit tests for proto/util.c: size parsing and printing,
 * volume and snapshot name validation and its messages, escaping text for
 * messages, volume size validation, number parsing and the two clocks. Pure
 * functions; runs in the C locale. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "wire.h"

/* Parses s, which must succeed with the value want. */
static void parse_ok(const char *s, uint64_t want)
{
	char err[256] = "";
	uint64_t v = 0xdeadbeef;

	ck_assert_msg(pv_parse_size(s, &v, err, sizeof(err)) == 0, "'%s' rejected: %s", s, err);
	ck_assert_msg(v == want, "'%s' gave %llu, want %llu", s, (unsigned long long)v,
		      (unsigned long long)want);
}

/* Parses s, which must fail with a reason. */
static void parse_bad(const char *s)
{
	char err[256] = "";
	uint64_t v = 0;

	ck_assert_msg(pv_parse_size(s, &v, err, sizeof(err)) == -1, "'%s' accepted as %llu", s,
		      (unsigned long long)v);
	ck_assert_msg(err[0] != '\0', "'%s' rejected without a reason", s);
}

START_TEST(parse_size_plain_and_suffixes)
{
	parse_ok("0", 0);
	parse_ok("512", 512);
	parse_ok("4096", 4096);
	parse_ok("4k", 4096);
	parse_ok("4K", 4096);
	parse_ok("512K", 512ull << 10);
	parse_ok("3M", 3ull << 20);
	parse_ok("2G", 2147483648ull);
	parse_ok("2g", 2147483648ull);
	parse_ok("1T", 1ull << 40);
	parse_ok("1P", 1ull << 50);
	parse_ok("2GiB", 2ull << 30);
	parse_ok("2gib", 2ull << 30);
	parse_ok("3MB", 3ull << 20);
	parse_ok("1KiB", 1024);
	parse_ok("18446744073709551615", UINT64_MAX);
	parse_ok("16383P", 16383ull << 50);
}
END_TEST

START_TEST(parse_size_rejects)
{
	parse_bad("");
	parse_bad("G");
	parse_bad("12Q");
	parse_bad("-1");
	parse_bad("+1");
	parse_bad(" 1");
	parse_bad("1.5G");
	parse_bad("2G x");
	parse_bad("2G ");
	parse_bad("2 G");
	parse_bad("2Gi");
	parse_bad("2GiBB");
	parse_bad("2KM");
	parse_bad("0x10");
	parse_bad("99999999999P");
	parse_bad("16384P");		   /* exactly 2^64 */
	parse_bad("18446744073709551616"); /* 2^64 without suffix */
	parse_bad("17179869184G");	   /* 2^34 G = 2^64 */
	parse_bad("99999999999999999999999");
}
END_TEST

START_TEST(parse_size_decimals_say_whole_numbers)
{
	char err[256] = "";
	uint64_t v = 0;

	ck_assert_int_eq(pv_parse_size("1.5G", &v, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "whole numbers only") && strstr(err, "1536M"), "got: %s", err);
	ck_assert_int_eq(pv_parse_size("2,5T", &v, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "whole numbers only"), "got: %s", err);
}
END_TEST

START_TEST(parse_size_null_and_no_err_buffer)
{
	char err[64] = "";
	uint64_t v = 5;

	ck_assert_int_eq(pv_parse_size(NULL, &v, err, sizeof(err)), -1);
	ck_assert_str_ne(err, "");
	/* err may be a zero-length buffer */
	ck_assert_int_eq(pv_parse_size("x", &v, NULL, 0), -1);
	/* a short err buffer is truncated, not overrun */
	memset(err, 'z', sizeof(err));
	ck_assert_int_eq(pv_parse_size("12Q", &v, err, 4), -1);
	ck_assert_uint_eq(strlen(err), 3);
	ck_assert_int_eq(err[4], 'z');
}
END_TEST

/* Formats bytes, which must give want. */
static void format_is(uint64_t bytes, const char *want)
{
	char buf[64];

	memset(buf, 'z', sizeof(buf));
	ck_assert_ptr_eq(pv_format_size(bytes, buf, sizeof(buf)), buf);
	ck_assert_str_eq(buf, want);
}

START_TEST(format_size)
{
	char small[4];

	format_is(0, "0 B");
	format_is(1, "1 B");
	format_is(512, "512 B");
	format_is(1023, "1023 B");
	format_is(1024, "1.0 KiB");
	format_is(1536, "1.5 KiB");
	format_is(4ull << 20, "4.0 MiB");
	format_is(2147483648ull, "2.0 GiB");
	format_is(3ull << 40, "3.0 TiB");
	format_is(5ull << 50, "5.0 PiB");
	format_is(1ull << 60, "1.0 EiB");
	format_is(UINT64_MAX, "16.0 EiB");

	/* truncated to the buffer, still terminated */
	memset(small, 'z', sizeof(small));
	ck_assert_ptr_eq(pv_format_size(2147483648ull, small, sizeof(small)), small);
	ck_assert_str_eq(small, "2.0");
}
END_TEST

START_TEST(format_then_parse)
{
	/* sizes printed for whole units parse back with the unit's letter */
	static const struct {
		const char *in;
		const char *out;
	} rows[] = {{"2G", "2.0 GiB"}, {"4M", "4.0 MiB"}, {"7T", "7.0 TiB"}, {"100", "100 B"}};
	char buf[32];
	uint64_t v;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		ck_assert_int_eq(pv_parse_size(rows[i].in, &v, NULL, 0), 0);
		ck_assert_str_eq(pv_format_size(v, buf, sizeof(buf)), rows[i].out);
	}
}
END_TEST

/* Whether c is in [A-Za-z0-9._-], spelled out without <ctype.h>. */
static int allowed_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static void name_bad(const char *name)
{
	char err[256] = "";

	ck_assert_msg(pv_valid_name(name, err, sizeof(err)) == 0, "'%s' accepted", name);
	ck_assert_msg(err[0] != '\0', "'%s' rejected without a reason", name);
	/* the same answer without an err buffer */
	ck_assert_int_eq(pv_valid_name(name, NULL, 0), 0);
}

static void name_ok(const char *name)
{
	char err[256] = "";

	ck_assert_msg(pv_valid_name(name, err, sizeof(err)) == 1, "'%s' rejected: %s", name, err);
	ck_assert_int_eq(pv_valid_name(name, NULL, 0), 1);
}

START_TEST(valid_name_accepts)
{
	name_ok("a");
	name_ok("Z");
	name_ok("0");
	name_ok("vol1");
	name_ok("db_data-2.img");
	name_ok("_x");
	name_ok("x.");
	name_ok("x-");
	name_ok("a..b");
	name_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._");
}
END_TEST

START_TEST(valid_name_length)
{
	char name[80];

	memset(name, 'n', sizeof(name));
	name[64] = '\0';
	name_ok(name);
	name[64] = 'n';
	name[65] = '\0';
	name_bad(name);
	name_bad("");
	ck_assert_int_eq(pv_valid_name(NULL, NULL, 0), 0);
}
END_TEST

START_TEST(valid_name_rejects)
{
	name_bad(".");
	name_bad("..");
	name_bad(".x");
	name_bad("-x");
	name_bad("a/b");
	name_bad("/a");
	name_bad("a b");
	name_bad("a@b"); /* '@' separates volume and snapshot in the mount */
	name_bad("a:b");
	name_bad("a\nb");
	name_bad("a\tb");
	name_bad("caf\xc3\xa9");  /* utf-8 e-acute */
	name_bad("\xe2\x82\xac"); /* utf-8 euro sign */
	name_bad("a\x7f");
}
END_TEST

/* Every byte value in the second position: accepted exactly when it is in
 * the allowed set. */
START_TEST(valid_name_every_byte)
{
	char name[3] = "a?";

	for (int c = 1; c < 256; c++) {
		name[1] = (char)c;
		if (pv_valid_name(name, NULL, 0) != allowed_char(c))
			ck_abort_msg("byte 0x%02x", c);
	}
	/* and in the first position, where '.' and '-' are refused too */
	name[1] = 'a';
	for (int c = 1; c < 256; c++) {
		name[0] = (char)c;
		if (pv_valid_name(name, NULL, 0) != (allowed_char(c) && c != '.' && c != '-'))
			ck_abort_msg("first byte 0x%02x", c);
	}
}
END_TEST

/* Escapes the len bytes at s into a buffer of buflen, which must give want
 * and leave the rest of the buffer alone. */
static void escape_is(const char *s, size_t len, size_t buflen, const char *want)
{
	char buf[256];

	ck_assert_uint_le(buflen, sizeof(buf) - 1);
	memset(buf, 'z', sizeof(buf));
	ck_assert_ptr_eq(pv_escape(s, len, buf, buflen), buf);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(buf[buflen], 'z');
}

#define ESCAPE_IS(lit, want) escape_is(lit, sizeof(lit) - 1, 200, want)

START_TEST(escape_plain_and_quotes)
{
	ESCAPE_IS("", "");
	ESCAPE_IS("vol1", "vol1");
	ESCAPE_IS("a b/c@d:e~!\"#$%&()*+,;<=>?[]^`{|}", "a b/c@d:e~!\"#$%&()*+,;<=>?[]^`{|}");
	ESCAPE_IS("it's", "it\\'s");
	ESCAPE_IS("a\\b", "a\\\\b");
	ESCAPE_IS("\\u0041", "\\\\u0041"); /* reads back as what it was */
	escape_is(NULL, 0, 8, "");
}
END_TEST

START_TEST(escape_controls_and_nul)
{
	ESCAPE_IS("a\0b", "a\\u0000b");
	ESCAPE_IS("\0", "\\u0000");
	ESCAPE_IS("\x01\x1f\x7f", "\\u0001\\u001f\\u007f");
	ESCAPE_IS("a\nb\tc\rd", "a\\u000ab\\u0009c\\u000dd");
	ESCAPE_IS("\x1b[2J", "\\u001b[2J"); /* a terminal escape stays inert */
}
END_TEST

START_TEST(escape_utf8)
{
	ESCAPE_IS("caf\xc3\xa9", "caf\\u00e9");
	ESCAPE_IS("\xc2\x80", "\\u0080");
	ESCAPE_IS("\xe2\x82\xac", "\\u20ac");
	ESCAPE_IS("\xef\xbf\xbf", "\\uffff");
	ESCAPE_IS("\xf0\x9f\x98\x80!", "\\U0001f600!");
	ESCAPE_IS("\xf4\x8f\xbf\xbf", "\\U0010ffff");
}
END_TEST

START_TEST(escape_invalid_utf8)
{
	ESCAPE_IS("\xff", "\\xff");
	ESCAPE_IS("caf\xe9", "caf\\xe9");		       /* latin-1 */
	ESCAPE_IS("\xc3", "\\xc3");			       /* cut short */
	ESCAPE_IS("\xc3x", "\\xc3x");			       /* continuation missing */
	ESCAPE_IS("\x80\xbf", "\\x80\\xbf");		       /* lone continuations */
	ESCAPE_IS("\xc0\xaf", "\\xc0\\xaf");		       /* overlong '/' */
	ESCAPE_IS("\xe0\x80\xaf", "\\xe0\\x80\\xaf");	       /* overlong '/' */
	ESCAPE_IS("\xed\xa0\x80", "\\xed\\xa0\\x80");	       /* surrogate U+D800 */
	ESCAPE_IS("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
	ESCAPE_IS("\xf8\x88\x80\x80\x80", "\\xf8\\x88\\x80\\x80\\x80");
	ESCAPE_IS("\xe2\x82", "\\xe2\\x82"); /* the euro sign cut short */
}
END_TEST

START_TEST(escape_cut)
{
	char buf[4];

	/* a result that fits exactly is not cut */
	escape_is("abcdefghi", 9, 10, "abcdefghi");
	escape_is("abcdefghij", 10, 10, "abcdef...");
	/* an escape is never split */
	escape_is("abcde\x01", 6, 10, "abcde...");
	escape_is("ab\x01", 3, 10, "ab\\u0001");
	escape_is("ab\x01x", 4, 10, "ab\\u0001x");
	escape_is("ab\x01xy", 5, 10, "ab...");
	escape_is("\xc3\xa9\xc3\xa9", 4, 13, "\\u00e9\\u00e9");
	escape_is("\xc3\xa9\xc3\xa9", 4, 12, "\\u00e9...");
	escape_is("\xc3\xa9\xc3\xa9\xc3\xa9", 6, 12, "\\u00e9...");
	/* buffers too small for "..." */
	escape_is("abcdef", 6, 3, "..");
	escape_is("abcdef", 6, 1, "");
	escape_is("ab", 2, 3, "ab");
	memset(buf, 'z', sizeof(buf));
	ck_assert_ptr_eq(pv_escape("abc", 3, buf, 0), buf);
	ck_assert_int_eq(buf[0], 'z');
}
END_TEST

/* A name refused with exactly want. */
static void name_refused(const char *name, const char *want)
{
	char err[256];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(pv_valid_name(name, err, sizeof(err)), 0);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(pv_valid_name(name, NULL, 0), 0);
}

#define USE "is not allowed; use only A-Z a-z 0-9 . _ -"

START_TEST(valid_name_messages)
{
	char name[200], want[256];

	name_refused("a/b", "name 'a/b': character '/' at position 2 " USE);
	name_refused("a b", "name 'a b': character ' ' at position 2 " USE);
	name_refused("a@b", "name 'a@b': character '@' at position 2 " USE);
	name_refused("it's", "name 'it\\'s': character U+0027 at position 3 " USE);
	name_refused("a\\b", "name 'a\\\\b': character U+005C at position 2 " USE);
	name_refused("caf\xc3\xa9", "name 'caf\\u00e9': character U+00E9 at position 4 " USE);
	name_refused("\xe2\x82\xac", "name '\\u20ac': character U+20AC at position 1 " USE);
	name_refused("x\xf0\x9f\x98\x80",
		     "name 'x\\U0001f600': character U+1F600 at position 2 " USE);
	name_refused("a\x01"
		     "b",
		     "name 'a\\u0001b': character U+0001 at position 2 " USE);
	name_refused("a\nb", "name 'a\\u000ab': character U+000A at position 2 " USE);
	name_refused("a\x7f", "name 'a\\u007f': character U+007F at position 2 " USE);
	name_refused("a\x1b[2J", "name 'a\\u001b[2J': character U+001B at position 2 " USE);
	/* positions count characters, not bytes */
	name_refused("ab\xff"
		     "c",
		     "name 'ab\\xffc': byte 0xFF at position 3 is not UTF-8; use only "
		     "A-Z a-z 0-9 . _ -");
	name_refused("caf\xe9", "name 'caf\\xe9': byte 0xE9 at position 4 is not UTF-8; use only "
				"A-Z a-z 0-9 . _ -");
	name_refused(".caf\xc3\xa9", "name '.caf\\u00e9' must not start with '.' or '-'");
	name_refused("-\x01", "name '-\\u0001' must not start with '.' or '-'");
	name_refused("", "name must be 1 to 64 characters");
	/* characters before the length: 40 characters are not "over 64" */
	name[0] = '\0';
	for (int i = 0; i < 40; i++)
		strcat(name, "\xc3\xa9");
	name_refused(name,
		     "name '\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
		     "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9...': character U+00E9 "
		     "at position 1 " USE);
	memset(name, 'n', 65);
	name[65] = '\0';
	name_refused(name, "name must be 1 to 64 characters");
	name[3] = '/';
	snprintf(want, sizeof(want), "name '%s': character '/' at position 4 " USE, name);
	name_refused(name, want);
}
END_TEST

#undef USE

START_TEST(parse_size_escapes)
{
	char err[256];
	uint64_t v;

	ck_assert_int_eq(pv_parse_size("1\x1b[2J", &v, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "size '1\\u001b[2J' has an unknown suffix (use K, M, G, T, P)");
	ck_assert_int_eq(pv_parse_size("caf\xc3\xa9", &v, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "size 'caf\\u00e9' is not a number (examples: 4096, 512K, 2G, 1T)");
	ck_assert_int_eq(pv_parse_size("99999999999999999999", &v, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "size '99999999999999999999' is too large");
	ck_assert_int_eq(pv_parse_size("2Gx\n", &v, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "size '2Gx\\u000a' has trailing characters");
}
END_TEST

START_TEST(valid_volume_size)
{
	char err[256];
	const uint64_t max = 1ull << 40;

	err[0] = '\0';
	ck_assert_int_eq(pv_valid_volume_size(0, max, err, sizeof(err)), 0);
	ck_assert_str_ne(err, "");
	err[0] = '\0';
	ck_assert_int_eq(pv_valid_volume_size(1000, max, err, sizeof(err)), 0);
	ck_assert_str_ne(err, "");
	err[0] = '\0';
	ck_assert_int_eq(pv_valid_volume_size(513, max, err, sizeof(err)), 0);
	ck_assert_str_ne(err, "");
	ck_assert_int_eq(pv_valid_volume_size(768, max, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_volume_size(max - 256, max, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_volume_size(512, max, err, sizeof(err)), 1);
	ck_assert_int_eq(pv_valid_volume_size(1024, max, err, sizeof(err)), 1);
	ck_assert_int_eq(pv_valid_volume_size(max, max, err, sizeof(err)), 1);
	err[0] = '\0';
	ck_assert_int_eq(pv_valid_volume_size(max + 512, max, err, sizeof(err)), 0);
	ck_assert_str_ne(err, "");
	ck_assert_int_eq(pv_valid_volume_size(max + 512, max, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_volume_size(0, max, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_volume_size(UINT64_MAX - 511, UINT64_MAX, NULL, 0), 1);
}
END_TEST

START_TEST(parse_u64)
{
	uint64_t v = 0;

	ck_assert_int_eq(pv_parse_u64("0", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(pv_parse_u64("10", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 10);
	ck_assert_int_eq(pv_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	v = 7;
	ck_assert_int_eq(pv_parse_u64("11", 0, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64("4", 5, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64("", 0, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64(NULL, 0, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64("-1", 0, UINT64_MAX, &v), -1);
	ck_assert_int_eq(pv_parse_u64("5x", 0, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64(" 5", 0, 10, &v), -1);
	ck_assert_int_eq(pv_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -1);
	ck_assert_uint_eq(v, 7);
}
END_TEST

START_TEST(valid_page_size)
{
	char err[256];

	ck_assert_int_eq(pv_valid_page_size(0, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "page size 0 must be a multiple of 512 between 65536 and "
			      "1073741824 bytes");
	ck_assert_int_eq(pv_valid_page_size(PV_MIN_PAGE_SIZE - PV_SECTOR, err, sizeof(err)), 0);
	ck_assert_int_eq(pv_valid_page_size(PV_MIN_PAGE_SIZE + 1, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "page size 65537 must be a multiple of 512 between 65536 and "
			      "1073741824 bytes");
	ck_assert_int_eq(pv_valid_page_size(PV_MAX_PAGE_SIZE + PV_SECTOR, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_page_size(UINT32_MAX, NULL, 0), 0);
	ck_assert_int_eq(pv_valid_page_size(PV_MIN_PAGE_SIZE, err, sizeof(err)), 1);
	ck_assert_int_eq(pv_valid_page_size(PV_MIN_PAGE_SIZE + PV_SECTOR, NULL, 0), 1);
	ck_assert_int_eq(pv_valid_page_size(PV_DEFAULT_PAGE_SIZE, NULL, 0), 1);
	ck_assert_int_eq(pv_valid_page_size(PV_MAX_PAGE_SIZE, err, sizeof(err)), 1);
}
END_TEST

START_TEST(clocks)
{
	struct timespec pause = {0, 20 * 1000 * 1000};
	uint64_t a = pv_now_ms(), b;
	uint64_t wall = pv_wall_s();
	time_t now = time(NULL);

	nanosleep(&pause, NULL);
	b = pv_now_ms();
	ck_assert_uint_ge(b, a + 19);
	ck_assert_uint_lt(b, a + 5000);
	ck_assert_uint_ge(wall + 2, (uint64_t)now);
	ck_assert_uint_le(wall, (uint64_t)now);
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *size = tcase_create("size");
	TCase *name = tcase_create("name");
	TCase *escape = tcase_create("escape");
	TCase *misc = tcase_create("misc");

	tcase_add_test(size, parse_size_plain_and_suffixes);
	tcase_add_test(size, parse_size_rejects);
	tcase_add_test(size, parse_size_decimals_say_whole_numbers);
	tcase_add_test(size, parse_size_null_and_no_err_buffer);
	tcase_add_test(size, format_size);
	tcase_add_test(size, format_then_parse);
	tcase_add_test(size, valid_volume_size);
	tcase_add_test(size, valid_page_size);
	tcase_add_test(size, parse_size_escapes);
	tcase_add_test(name, valid_name_accepts);
	tcase_add_test(name, valid_name_length);
	tcase_add_test(name, valid_name_rejects);
	tcase_add_test(name, valid_name_every_byte);
	tcase_add_test(name, valid_name_messages);
	tcase_add_test(escape, escape_plain_and_quotes);
	tcase_add_test(escape, escape_controls_and_nul);
	tcase_add_test(escape, escape_utf8);
	tcase_add_test(escape, escape_invalid_utf8);
	tcase_add_test(escape, escape_cut);
	tcase_add_test(misc, parse_u64);
	tcase_add_test(misc, clocks);
	suite_add_tcase(s, size);
	suite_add_tcase(s, name);
	suite_add_tcase(s, escape);
	suite_add_tcase(s, misc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
