/* check_control.c: unit tests for control_parse (peerd/control_parse.c), the
 * decoder of the control socket's JSON requests: the shape of each command
 * peerctl sends, and the refusals with the exact text the client gets back
 * ({"ok": false, "error": ...}). control_parse is pure, so the global srv of
 * peerd stays NULL here: touching server state would crash the test. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define MAX_SIZE (64ull << 40) /* peerd's default --max-volume-size */

/* Parses the request text, which must succeed; returns the command. */
static struct control_cmd parse_ok(const char *req)
{
	struct control_cmd c;
	char err[PV_MAX_MESSAGE] = "";

	ck_assert_msg(control_parse(req, strlen(req), MAX_SIZE, &c, err, sizeof(err)) == 0,
		      "%s refused: %s", req, err);
	ck_assert_ptr_nonnull(c.cmd);
	return c;
}

/* Parses the request text, which must fail with exactly want; cmd is the
 * command's name expected in out->cmd (NULL: not a known command). */
static void parse_bad(const char *req, const char *cmd, const char *want)
{
	struct control_cmd c;
	char err[PV_MAX_MESSAGE];

	memset(err, 'x', sizeof(err));
	ck_assert_msg(control_parse(req, strlen(req), MAX_SIZE, &c, err, sizeof(err)) == -1,
		      "%s accepted", req);
	ck_assert_ptr_nonnull(memchr(err, 0, sizeof(err)));
	ck_assert_str_eq(err, want);
	if (cmd)
		ck_assert_str_eq(c.cmd, cmd);
	else
		ck_assert_ptr_null(c.cmd);
}

static void ck_servers(const struct control_cmd *c, size_t n, const uint32_t *want)
{
	ck_assert_uint_eq(c->nservers, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(c->servers[i], want[i]);
}

START_TEST(commands_without_args)
{
	static const struct {
		const char *req;
		enum control_op op;
		const char *name;
	} rows[] = {
	    {"{\"cmd\":\"status\",\"args\":{}}", CONTROL_STATUS, "status"},
	    {"{\"cmd\":\"status\"}", CONTROL_STATUS, "status"},
	    {"{\"cmd\":\"volume.list\",\"args\":{}}", CONTROL_VOLUME_LIST, "volume.list"},
	    {"{\"cmd\":\"group.init\",\"args\":{}}", CONTROL_GROUP_INIT, "group.init"},
	    {"{\"cmd\":\"group.show\",\"args\":{}}", CONTROL_GROUP_SHOW, "group.show"},
	    /* arguments a command does not take are ignored */
	    {" {\"args\":{\"name\":7},\"cmd\":\"group.show\",\"x\":[]}\n", CONTROL_GROUP_SHOW,
	     "group.show"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct control_cmd c = parse_ok(rows[i].req);

		ck_assert_int_eq(c.op, rows[i].op);
		ck_assert_str_eq(c.cmd, rows[i].name);
		ck_assert_str_eq(c.name, "");
		ck_assert_str_eq(c.address, "");
		ck_assert_uint_eq(c.size, 0);
		ck_assert_uint_eq(c.nservers, 0);
	}
}
END_TEST

START_TEST(volume_create_good)
{
	static const uint32_t s23[] = {2, 3};
	struct control_cmd c;

	/* what peerctl sends for 'volume create vol1 2G' */
	c = parse_ok(
	    "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"vol1\",\"size\":2147483648}}");
	ck_assert_int_eq(c.op, CONTROL_VOLUME_CREATE);
	ck_assert_str_eq(c.cmd, "volume.create");
	ck_assert_str_eq(c.name, "vol1");
	ck_assert_uint_eq(c.size, 2147483648u);
	ck_assert_uint_eq(c.page_size, 0); /* the default, chosen by the catalog */
	ck_servers(&c, 0, NULL);

	/* ... 'volume create db 100G --page-size 1M --servers 2,3' */
	c = parse_ok("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"db\",\"size\":107374182400,"
		     "\"page_size\":1048576,\"servers\":[2,3]}}");
	ck_assert_str_eq(c.name, "db");
	ck_assert_uint_eq(c.size, 107374182400u);
	ck_assert_uint_eq(c.page_size, 1048576);
	ck_servers(&c, 2, s23);

	/* the limits themselves */
	c = parse_ok("{\"cmd\":\"volume.create\",\"args\":{\"name\":"
		     "\"a234567890123456789012345678901234567890123456789012345678901234\","
		     "\"size\":70368744177664,\"page_size\":65536,\"servers\":null}}");
	ck_assert_uint_eq(strlen(c.name), PV_MAX_NAME);
	ck_assert_uint_eq(c.size, MAX_SIZE);
	ck_assert_uint_eq(c.page_size, PV_MIN_PAGE_SIZE);
	ck_servers(&c, 0, NULL);
	c = parse_ok("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"x_.-\",\"size\":512,"
		     "\"page_size\":1073741824,\"servers\":[4294967295]}}");
	ck_assert_uint_eq(c.size, PV_SECTOR);
	ck_assert_uint_eq(c.page_size, PV_MAX_PAGE_SIZE);
	ck_assert_uint_eq(c.nservers, 1);
	ck_assert_uint_eq(c.servers[0], UINT32_MAX);
	c = parse_ok("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"v\",\"size\":1024,"
		     "\"page_size\":0,\"servers\":[]}}");
	ck_assert_uint_eq(c.page_size, 0);
	ck_servers(&c, 0, NULL);
}
END_TEST

START_TEST(volume_show_delete_good)
{
	struct control_cmd c;

	c = parse_ok("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"vol1\"}}");
	ck_assert_int_eq(c.op, CONTROL_VOLUME_SHOW);
	ck_assert_str_eq(c.name, "vol1");
	ck_assert_int_eq(c.routing, 0);
	c = parse_ok("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"vol1\",\"routing\":true}}");
	ck_assert_int_eq(c.routing, 1);
	/* only true means yes, as before */
	c = parse_ok("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"vol1\",\"routing\":1}}");
	ck_assert_int_eq(c.routing, 0);

	c = parse_ok("{\"cmd\":\"volume.delete\",\"args\":{\"name\":\"vol1\"}}");
	ck_assert_int_eq(c.op, CONTROL_VOLUME_DELETE);
	ck_assert_str_eq(c.name, "vol1");
	ck_assert_int_eq(c.force, 0);
	c = parse_ok("{\"cmd\":\"volume.delete\",\"args\":{\"name\":\"vol1\",\"force\":true}}");
	ck_assert_int_eq(c.force, 1);
}
END_TEST

START_TEST(group_join_good)
{
	char req[400], addr[CONTROL_MAX_ADDRESS + 1];
	struct control_cmd c;

	c = parse_ok("{\"cmd\":\"group.join\",\"args\":{\"address\":\"tcp://10.0.0.1:7100\"}}");
	ck_assert_int_eq(c.op, CONTROL_GROUP_JOIN);
	ck_assert_str_eq(c.address, "tcp://10.0.0.1:7100");

	memset(addr, 'a', CONTROL_MAX_ADDRESS);
	memcpy(addr, "tcp://", 6);
	addr[CONTROL_MAX_ADDRESS] = '\0';
	snprintf(req, sizeof(req), "{\"cmd\":\"group.join\",\"args\":{\"address\":\"%s\"}}", addr);
	c = parse_ok(req);
	ck_assert_str_eq(c.address, addr);
}
END_TEST

START_TEST(group_remove_leave)
{
	struct control_cmd c;

	c = parse_ok("{\"cmd\":\"group.remove\",\"args\":{\"id\":3}}");
	ck_assert_int_eq(c.op, CONTROL_GROUP_REMOVE);
	ck_assert_uint_eq(c.id, 3);
	ck_assert_int_eq(c.force, 0);
	c = parse_ok("{\"cmd\":\"group.remove\",\"args\":{\"id\":4294967295,\"force\":true}}");
	ck_assert_uint_eq(c.id, UINT32_MAX);
	ck_assert_int_eq(c.force, 1);
	c = parse_ok("{\"cmd\":\"group.leave\",\"args\":{\"id\":1,\"force\":1}}");
	ck_assert_int_eq(c.op, CONTROL_GROUP_LEAVE);
	ck_assert_int_eq(c.force, 0); /* only true means yes */
	c = parse_ok(
	    "{\"cmd\":\"group.join\",\"args\":{\"address\":\"tcp://a:1\",\"timeout\":28}}");
	ck_assert_uint_eq(c.timeout, 28);

	parse_bad("{\"cmd\":\"group.remove\"}", "group.remove",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"group.leave\",\"args\":{\"id\":0}}", "group.leave",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"group.leave\",\"args\":{\"id\":\"3\"}}", "group.leave",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"group.remove\",\"args\":{\"id\":4294967296}}", "group.remove",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"group.remove\",\"args\":{\"id\":99999999999999999999}}",
		  "group.remove", "id: 99999999999999999999 is too large (maximum 4294967295)");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":\"tcp://a:1\",\"timeout\":0}}",
		  "group.join", "missing or invalid argument 'timeout' (seconds, 1 to 3600)");
}
END_TEST

START_TEST(not_a_request)
{
	static const char *const bad[] = {
	    "",
	    "hello",
	    "{\"cmd\":\"status\"",
	    "{\"cmd\":\"status\"} trailing",
	    "[\"status\"]",
	    "\"status\"",
	    "42",
	    "null",
	    "{}",
	    "{\"args\":{}}",
	    "{\"cmd\":7}",
	    "{\"cmd\":null}",
	    "{\"cmd\":[\"status\"]}",
	    "{\"cmd\":18446744073709551616}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(bad[i], NULL, "request is not a JSON object with a 'cmd'");
	/* bytes after a NUL are not ignored */
	{
		static const char req[] = "{\"cmd\":\"status\"}\0junk";
		struct control_cmd c;
		char err[PV_MAX_MESSAGE] = "";

		ck_assert_int_eq(
		    control_parse(req, sizeof(req) - 1, MAX_SIZE, &c, err, sizeof(err)), -1);
		ck_assert_str_eq(err, "request is not a JSON object with a 'cmd'");
	}
}
END_TEST

START_TEST(args_and_unknown_commands)
{
	char req[256], want[128];

	parse_bad("{\"cmd\":\"status\",\"args\":null}", NULL, "'args' must be an object");
	parse_bad("{\"cmd\":\"volume.show\",\"args\":[\"vol1\"]}", NULL,
		  "'args' must be an object");
	/* args are checked before the command is looked up, as before */
	parse_bad("{\"cmd\":\"nope\",\"args\":1}", NULL, "'args' must be an object");
	parse_bad("{\"cmd\":\"nope\"}", NULL, "unknown command 'nope'");
	parse_bad("{\"cmd\":\"\"}", NULL, "unknown command ''");
	parse_bad("{\"cmd\":\"Status\"}", NULL, "unknown command 'Status'");
	parse_bad("{\"cmd\":\"volume\",\"args\":{}}", NULL, "unknown command 'volume'");
	/* a command name is echoed escaped; a NUL in it is not the end */
	parse_bad("{\"cmd\":\"st\\u0000atus\"}", NULL, "unknown command 'st\\u0000atus'");
	parse_bad("{\"cmd\":\"status\\u0000\"}", NULL, "unknown command 'status\\u0000'");
	parse_bad("{\"cmd\":\"caf\\u00e9\\n\"}", NULL, "unknown command 'caf\\u00e9\\u000a'");
	/* a long name is cut to 64 characters in the answer */
	snprintf(req, sizeof(req), "{\"cmd\":\"%0100d\"}", 0);
	snprintf(want, sizeof(want), "unknown command '%064d'", 0);
	parse_bad(req, NULL, want);
}
END_TEST

START_TEST(volume_create_bad)
{
#define CREATE(args) "{\"cmd\":\"volume.create\",\"args\":{" args "}}"
	static const struct {
		const char *req, *err;
	} rows[] = {
	    /* missing fields and wrong types */
	    {"{\"cmd\":\"volume.create\"}", "missing or invalid argument 'name'"},
	    {CREATE("\"size\":1024"), "missing or invalid argument 'name'"},
	    {CREATE("\"name\":7,\"size\":1024"), "missing or invalid argument 'name'"},
	    {CREATE("\"name\":null,\"size\":1024"), "missing or invalid argument 'name'"},
	    {CREATE("\"name\":\"v\""), "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":\"2G\""),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1024.0"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":-512"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":null"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":\"1M\""),
	     "missing or invalid argument 'page_size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":-1"),
	     "missing or invalid argument 'page_size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":4294967296"),
	     "page size too large"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":\"2,3\""),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[0]"),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[1,-2]"),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[\"1\"]"),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[4294967296]"),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":{\"1\":1}"),
	     "'servers' must be a list of server ids"},
	    /* the argument types come first, then the name, size, page size */
	    {CREATE("\"name\":\"\",\"size\":1024"), "name must be 1 to 64 characters"},
	    {CREATE("\"name\":"
		    "\"a2345678901234567890123456789012345678901234567890123456789012345\","
		    "\"size\":1024"),
	     "name must be 1 to 64 characters"},
	    {CREATE("\"name\":\".v\",\"size\":1024"), "name '.v' must not start with '.' or '-'"},
	    {CREATE("\"name\":\"-v\",\"size\":0"), "name '-v' must not start with '.' or '-'"},
	    {CREATE("\"name\":\"a/b\",\"size\":1024"),
	     "name 'a/b': character '/' at position 2 is not allowed; use only A-Z a-z 0-9 . _ -"},
	    {CREATE("\"name\":\"v\",\"size\":0"), "volume size must be greater than zero"},
	    {CREATE("\"name\":\"v\",\"size\":1000"),
	     "volume size 1000 is not a multiple of 512 bytes"},
	    {CREATE("\"name\":\"v\",\"size\":70368744178176,\"page_size\":1"),
	     "volume size 70368744178176 is larger than the maximum 70368744177664 (peerd "
	     "--max-volume-size)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":1000"),
	     "page size 1000 must be a multiple of 512 between 65536 and 1073741824 bytes"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":32768"),
	     "page size 32768 must be a multiple of 512 between 65536 and 1073741824 bytes"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":2147483648"),
	     "page size 2147483648 must be a multiple of 512 between 65536 and 1073741824 bytes"},
	};
#undef CREATE

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		parse_bad(rows[i].req, "volume.create", rows[i].err);
}
END_TEST

/* Integers above 2^63 - 1, which jansson cannot hold: the answer names the
 * argument, the number as written and the maximum. */
START_TEST(big_numbers)
{
#define CREATE(args) "{\"cmd\":\"volume.create\",\"args\":{" args "}}"
	static const struct {
		const char *req, *err;
	} rows[] = {
	    {CREATE("\"name\":\"v\",\"size\":9223372036854775808"),
	     "size: 9223372036854775808 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    {CREATE("\"name\":\"v\",\"size\":18446744073709551616"),
	     "size: 18446744073709551616 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    {CREATE("\"size\":  18446744073709551616 ,\"name\":\"v\""),
	     "size: 18446744073709551616 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    /* a long number is cut */
	    {CREATE("\"name\":\"v\",\"size\":12345678901234567890123456789012345678901234567890"),
	     "size: 123456789012345678901234... (50 digits) is too large (maximum "
	     "70368744177664, peerd --max-volume-size)"},
	    /* the key as jansson reads it, escapes and all */
	    {CREATE("\"name\":\"v\",\"\\u0073ize\":18446744073709551616"),
	     "size: 18446744073709551616 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"page_size\":18446744073709551616"),
	     "page_size: 18446744073709551616 is too large (maximum 1073741824)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[2,18446744073709551616]"),
	     "servers: 18446744073709551616 is too large (maximum 4294967295)"},
	    /* the first argument in the order of the checks, whatever the text's order */
	    {CREATE(
		 "\"page_size\":99999999999999999999,\"name\":\"v\",\"size\":99999999999999999998"),
	     "size: 99999999999999999998 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    {CREATE("\"name\":\"a/b\",\"size\":18446744073709551616"),
	     "size: 18446744073709551616 is too large (maximum 70368744177664, peerd "
	     "--max-volume-size)"},
	    /* too negative and too large reals are not numbers of bytes either */
	    {CREATE("\"name\":\"v\",\"size\":-99999999999999999999"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1e999"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":[18446744073709551616]"),
	     "missing or invalid argument 'size' (a number of bytes)"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[[18446744073709551616]]"),
	     "'servers' must be a list of server ids"},
	    {CREATE("\"name\":\"v\",\"size\":1024,\"servers\":[-18446744073709551616]"),
	     "'servers' must be a list of server ids"},
	};
#undef CREATE
	char req[1024];
	size_t n;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		parse_bad(rows[i].req, "volume.create", rows[i].err);

	/* the request's own checks come first */
	parse_bad("{\"cmd\":\"nope\",\"args\":{\"size\":18446744073709551616}}", NULL,
		  "unknown command 'nope'");
	parse_bad("{\"cmd\":\"status\",\"args\":18446744073709551616}", NULL,
		  "'args' must be an object");
	/* where no command looks, a big number is ignored like any other */
	parse_ok("{\"cmd\":\"status\",\"args\":{\"size\":18446744073709551616}}");
	parse_ok("{\"x\":99999999999999999999,\"cmd\":\"volume.create\",\"args\":{\"name\":"
		 "\"v\",\"size\":1024,\"y\":[1e999,-99999999999999999999]}}");

	/* only a whole number is read again: what is not JSON stays refused */
	parse_bad("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"v\",\"size\":1024,"
		  "\"x\":99-199999999999999999999}}",
		  NULL, "request is not a JSON object with a 'cmd'");
	parse_bad("{\"cmd\":\"status\",\"args\":{\"x\":[true-99999999999999999999]}}", NULL,
		  "request is not a JSON object with a 'cmd'");
	parse_bad("{\"cmd\":\"status\",\"args\":{\"x\":99999999999999999999-1}}", NULL,
		  "request is not a JSON object with a 'cmd'");
	parse_bad("{\"cmd\":\"status\",\"args\":{\"x\":99999999999999999999x}}", NULL,
		  "request is not a JSON object with a 'cmd'");
	parse_ok("{\"cmd\":\"status\",\"args\":{\"x\":[-0.5e999,1E+999,99999999999999999999]}}");

	/* a bounded number of them */
	n = snprintf(req, sizeof(req), "{\"cmd\":\"status\",\"args\":{\"x\":[1");
	for (int i = 0; i < 16; i++)
		n += snprintf(req + n, sizeof(req) - n, ",99999999999999999999");
	snprintf(req + n, sizeof(req) - n, "]}}");
	parse_ok(req);
	snprintf(req + n, sizeof(req) - n, ",1e999]}}");
	parse_bad(req, NULL, "request has more than 16 numbers too large to read");
}
END_TEST

/* A NUL (\u0000) inside a string argument: refused, naming the argument. */
START_TEST(nul_characters)
{
	parse_bad("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"a\\u0000b\",\"size\":1024}}",
		  "volume.create", "name 'a\\u0000b': contains a NUL character at position 2");
	parse_bad("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"\\u0000\",\"size\":1024}}",
		  "volume.create", "name '\\u0000': contains a NUL character at position 1");
	parse_bad(
	    "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"\\u00e9\\u0000\",\"size\":1024}}",
	    "volume.create", "name '\\u00e9\\u0000': contains a NUL character at position 2");
	parse_bad("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"vol1\\u0000\"}}", "volume.show",
		  "name 'vol1\\u0000': contains a NUL character at position 5");
	parse_bad("{\"cmd\":\"volume.delete\",\"args\":{\"name\":\"vol1\\u0000x\"}}",
		  "volume.delete", "name 'vol1\\u0000x': contains a NUL character at position 5");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":\"tcp://h\\u0000:1\"}}",
		  "group.join",
		  "address 'tcp://h\\u0000:1': contains a NUL character at position 8");
	/* where no command looks, a NUL is ignored like anything else */
	parse_ok("{\"cmd\":\"status\",\"args\":{\"name\":\"\\u0000\"},\"x\":\"\\u0000\"}");
	/* jansson takes no NUL in a key */
	parse_bad("{\"cmd\":\"status\",\"args\":{\"a\\u0000\":1}}", NULL,
		  "request has a NUL character in an object key");
}
END_TEST

/* Names outside [A-Za-z0-9._-]: the answer names the character and its
 * position and echoes the name escaped, never as '?'. */
START_TEST(name_characters)
{
#define CREATE(name) "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"" name "\",\"size\":1024}}"
#define USE	     "is not allowed; use only A-Z a-z 0-9 . _ -"
	static const struct {
		const char *req, *err;
	} rows[] = {
	    {CREATE("caf\\u00e9"), "name 'caf\\u00e9': character U+00E9 at position 4 " USE},
	    {CREATE("caf\xc3\xa9"), "name 'caf\\u00e9': character U+00E9 at position 4 " USE},
	    {CREATE("\\u00e9t\\u00e9"),
	     "name '\\u00e9t\\u00e9': character U+00E9 at position 1 " USE},
	    {CREATE("ab\\u20ac"), "name 'ab\\u20ac': character U+20AC at position 3 " USE},
	    {CREATE("x\\ud83d\\ude00"),
	     "name 'x\\U0001f600': character U+1F600 at position 2 " USE},
	    {CREATE("a\\u0001b"), "name 'a\\u0001b': character U+0001 at position 2 " USE},
	    {CREATE("a\\nb"), "name 'a\\u000ab': character U+000A at position 2 " USE},
	    {CREATE("a\\u001b[31mred"),
	     "name 'a\\u001b[31mred': character U+001B at position 2 " USE},
	    {CREATE("a\\u007f"), "name 'a\\u007f': character U+007F at position 2 " USE},
	    {CREATE("a b"), "name 'a b': character ' ' at position 2 " USE},
	    {CREATE("it's"), "name 'it\\'s': character U+0027 at position 3 " USE},
	    {CREATE("a\\\\b"), "name 'a\\\\b': character U+005C at position 2 " USE},
	    {CREATE(".caf\\u00e9"), "name '.caf\\u00e9' must not start with '.' or '-'"},
	};
#undef CREATE
#undef USE
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		parse_bad(rows[i].req, "volume.create", rows[i].err);

	/* a long name is echoed cut; the position still counts characters */
	parse_bad(
	    "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"" /* 40 x e-acute, then '/' */
	    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9/"
	    "\",\"size\":1024}}",
	    "volume.create",
	    "name '\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9...': character U+00E9 at position 1 "
	    "is not allowed; use only A-Z a-z 0-9 . _ -");

	/* names that cannot exist, and addresses, are echoed escaped too */
	parse_bad("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"caf\\u00e9\"}}", "volume.show",
		  "no volume 'caf\\u00e9'");
	parse_bad("{\"cmd\":\"volume.delete\",\"args\":{\"name\":\"a\\u001b[2J\"}}",
		  "volume.delete", "no volume 'a\\u001b[2J'");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":\"udp://\\u00e9\\r\"}}",
		  "group.join", "address 'udp://\\u00e9\\u000d' is not a tcp://HOST:PORT endpoint");
}
END_TEST

START_TEST(servers_too_many)
{
	char req[1024];
	size_t n;

	n = snprintf(req, sizeof(req),
		     "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"v\",\"size\":1024,"
		     "\"servers\":[1");
	for (int i = 2; i <= PEERD_MAX_MEMBERS; i++)
		n += snprintf(req + n, sizeof(req) - n, ",%d", i);
	snprintf(req + n, sizeof(req) - n, "]}}");
	ck_assert_uint_eq(parse_ok(req).nservers, PEERD_MAX_MEMBERS);
	snprintf(req + n, sizeof(req) - n, ",%d]}}", PEERD_MAX_MEMBERS + 1);
	parse_bad(req, "volume.create", "'servers' must be a list of server ids");
}
END_TEST

START_TEST(show_delete_join_bad)
{
	char req[400], want[400], addr[CONTROL_MAX_ADDRESS + 2];

	parse_bad("{\"cmd\":\"volume.show\",\"args\":{}}", "volume.show",
		  "missing or invalid argument 'name'");
	parse_bad("{\"cmd\":\"volume.show\"}", "volume.show", "missing or invalid argument 'name'");
	parse_bad("{\"cmd\":\"volume.show\",\"args\":{\"name\":[\"v\"]}}", "volume.show",
		  "missing or invalid argument 'name'");
	/* a name that cannot exist gets the answer a lookup gives */
	parse_bad("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"a/b\"}}", "volume.show",
		  "no volume 'a/b'");
	parse_bad("{\"cmd\":\"volume.show\",\"args\":{\"name\":\"\"}}", "volume.show",
		  "no volume ''");
	parse_bad("{\"cmd\":\"volume.delete\",\"args\":{\"force\":true}}", "volume.delete",
		  "missing or invalid argument 'name'");
	parse_bad("{\"cmd\":\"volume.delete\",\"args\":{\"name\":\"../x\"}}", "volume.delete",
		  "no volume '../x'");

	parse_bad("{\"cmd\":\"group.join\",\"args\":{}}", "group.join",
		  "missing or invalid argument 'address'");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":7100}}", "group.join",
		  "missing or invalid argument 'address'");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":\"udp://h:1\"}}", "group.join",
		  "address 'udp://h:1' is not a tcp://HOST:PORT endpoint");
	parse_bad("{\"cmd\":\"group.join\",\"args\":{\"address\":\"10.0.0.1:7100\"}}", "group.join",
		  "address '10.0.0.1:7100' is not a tcp://HOST:PORT endpoint");
	memset(addr, 'a', CONTROL_MAX_ADDRESS + 1);
	memcpy(addr, "tcp://", 6);
	addr[CONTROL_MAX_ADDRESS + 1] = '\0';
	snprintf(req, sizeof(req), "{\"cmd\":\"group.join\",\"args\":{\"address\":\"%s\"}}", addr);
	snprintf(want, sizeof(want), "address '%s' is not a tcp://HOST:PORT endpoint", addr);
	parse_bad(req, "group.join", want);
}
END_TEST

START_TEST(limits_of_the_buffers)
{
	static const char req[] = "{\"cmd\":\"nope\"}";
	struct control_cmd c;
	char err[8];
	char *big;

	/* a short err buffer gets a cut, terminated message */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(control_parse(req, strlen(req), MAX_SIZE, &c, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "unknown");

	/* more than the control socket takes is refused before JSON parsing */
	big = malloc(65537);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', 65537);
	memcpy(big, "{\"cmd\":\"status\"}", 16);
	ck_assert_int_eq(control_parse(big, 65536, MAX_SIZE, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(control_parse(big, 65537, MAX_SIZE, &c, err, sizeof(err)), -1);
	free(big);

	/* a smaller maximum volume size (peerd --max-volume-size) */
	{
		static const char cr[] =
		    "{\"cmd\":\"volume.create\",\"args\":{\"name\":\"v\",\"size\":1048576}}";
		char e[PV_MAX_MESSAGE];

		ck_assert_int_eq(control_parse(cr, strlen(cr), 1 << 20, &c, e, sizeof(e)), 0);
		ck_assert_int_eq(control_parse(cr, strlen(cr), 1 << 19, &c, e, sizeof(e)), -1);
		ck_assert_str_eq(e, "volume size 1048576 is larger than the maximum 524288 (peerd "
				    "--max-volume-size)");
	}
	ck_assert_ptr_null(srv);
}
END_TEST

START_TEST(migration_commands_good)
{
	static const uint32_t s1234[] = {1, 2, 3, 4};
	struct control_cmd c;

	/* peerctl page move vol1 5 --to 3 */
	c = parse_ok("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"vol1\",\"first\":5,\"last\":5,"
		     "\"to\":3}}");
	ck_assert_int_eq(c.op, CONTROL_PAGE_MOVE);
	ck_assert_str_eq(c.cmd, "page.move");
	ck_assert_str_eq(c.name, "vol1");
	ck_assert_uint_eq(c.first, 5);
	ck_assert_uint_eq(c.last, 5);
	ck_assert_uint_eq(c.to, 3);
	ck_assert_uint_eq(c.piece_size, 0);
	/* last left out: one page; a range with a piece size */
	c = parse_ok("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":7,\"to\":1}}");
	ck_assert_uint_eq(c.first, 7);
	ck_assert_uint_eq(c.last, 7);
	c = parse_ok("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":0,\"last\":"
		     "9223372036854775807,\"to\":4294967295,\"piece_size\":262144}}");
	ck_assert_uint_eq(c.first, 0);
	ck_assert_uint_eq(c.last, INT64_MAX);
	ck_assert_uint_eq(c.to, UINT32_MAX);
	ck_assert_uint_eq(c.piece_size, 262144);

	c = parse_ok("{\"cmd\":\"page.show\",\"args\":{\"volume\":\"vol1\",\"page\":12}}");
	ck_assert_int_eq(c.op, CONTROL_PAGE_SHOW);
	ck_assert_str_eq(c.name, "vol1");
	ck_assert_uint_eq(c.first, 12);
	ck_assert_uint_eq(c.last, 12);

	c = parse_ok("{\"cmd\":\"migration.list\"}");
	ck_assert_int_eq(c.op, CONTROL_MIGRATION_LIST);

	c = parse_ok("{\"cmd\":\"server.evacuate\",\"args\":{\"id\":3}}");
	ck_assert_int_eq(c.op, CONTROL_SERVER_EVACUATE);
	ck_assert_uint_eq(c.id, 3);
	ck_assert_int_eq(c.cancel, 0);
	c = parse_ok("{\"cmd\":\"server.evacuate\",\"args\":{\"id\":3,\"cancel\":true}}");
	ck_assert_int_eq(c.cancel, 1);

	c = parse_ok("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"vol1\","
		     "\"servers\":[1,2,3,4]}}");
	ck_assert_int_eq(c.op, CONTROL_VOLUME_SET_SERVERS);
	ck_assert_str_eq(c.name, "vol1");
	ck_servers(&c, 4, s1234);

	c = parse_ok("{\"cmd\":\"group.set_weight\",\"args\":{\"id\":2,\"weight\":1000}}");
	ck_assert_int_eq(c.op, CONTROL_GROUP_SET_WEIGHT);
	ck_assert_uint_eq(c.id, 2);
	ck_assert_uint_eq(c.weight, PLACEMENT_MAX_WEIGHT);

	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\","
		     "\"value\":250}}");
	ck_assert_int_eq(c.op, CONTROL_CONFIG_SET);
	ck_assert_uint_eq(c.value, 250);
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\","
		     "\"value\":0}}");
	ck_assert_uint_eq(c.value, 0);
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\","
		     "\"value\":100000}}");
	ck_assert_uint_eq(c.value, PLACEMENT_MAX_MBPS);

	c = parse_ok("{\"cmd\":\"migrate.pause\"}");
	ck_assert_int_eq(c.op, CONTROL_MIGRATE_PAUSE);
	c = parse_ok("{\"cmd\":\"migrate.resume\",\"args\":{}}");
	ck_assert_int_eq(c.op, CONTROL_MIGRATE_RESUME);

	/* the load monitor and the rebalancer */
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.threshold\","
		     "\"value\":0.25}}");
	ck_assert_int_eq(c.key, CONTROL_KEY_BALANCE_THRESHOLD);
	ck_assert_uint_eq(c.value, 250);
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.threshold\","
		     "\"value\":2}}");
	ck_assert_uint_eq(c.value, 2000);
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.interval\","
		     "\"value\":60}}");
	ck_assert_int_eq(c.key, CONTROL_KEY_BALANCE_INTERVAL);
	ck_assert_uint_eq(c.value, 60);
	c = parse_ok("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\","
		     "\"value\":7}}");
	ck_assert_int_eq(c.key, CONTROL_KEY_MIGRATE_MBPS);
	ck_assert_int_eq(parse_ok("{\"cmd\":\"load.show\"}").op, CONTROL_LOAD_SHOW);
	ck_assert_int_eq(parse_ok("{\"cmd\":\"balance.status\"}").op, CONTROL_BALANCE_STATUS);
	ck_assert_int_eq(parse_ok("{\"cmd\":\"balance.on\"}").op, CONTROL_BALANCE_ON);
	ck_assert_int_eq(parse_ok("{\"cmd\":\"balance.off\"}").op, CONTROL_BALANCE_OFF);
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.threshold\","
		  "\"value\":0}}",
		  "config.set",
		  "balance.threshold must be a number from 0.01 to 10 (the share over the fair "
		  "share that counts as overloaded; default 0.25)");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.threshold\","
		  "\"value\":\"0.3\"}}",
		  "config.set",
		  "balance.threshold must be a number from 0.01 to 10 (the share over the fair "
		  "share that counts as overloaded; default 0.25)");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.interval\","
		  "\"value\":0}}",
		  "config.set", "balance.interval 0 is out of range: 1 to 86400 seconds");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"balance.interval\","
		  "\"value\":86401}}",
		  "config.set", "balance.interval 86401 is out of range: 1 to 86400 seconds");
}
END_TEST

START_TEST(migration_commands_bad)
{
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"first\":1,\"to\":2}}", "page.move",
		  "missing or invalid argument 'volume'");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"a/b\",\"first\":1,\"to\":2}}",
		  "page.move", "no volume 'a/b'");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"to\":2}}", "page.move",
		  "missing or invalid argument 'first' (a page number)");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":-1,\"to\":2}}",
		  "page.move", "missing or invalid argument 'first' (a page number)");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":"
		  "9223372036854775808,\"to\":2}}",
		  "page.move",
		  "first: 9223372036854775808 is too large (maximum 9223372036854775807)");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":5,\"last\":4,"
		  "\"to\":2}}",
		  "page.move", "last page 4 is before first page 5");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":5}}", "page.move",
		  "missing or invalid argument 'to' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":5,\"to\":0}}",
		  "page.move", "missing or invalid argument 'to' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":5,\"to\":2,"
		  "\"piece_size\":1000}}",
		  "page.move", "piece size 1000 must be a multiple of 512 bytes, at most 8388608");
	parse_bad("{\"cmd\":\"page.move\",\"args\":{\"volume\":\"v\",\"first\":5,\"to\":2,"
		  "\"piece_size\":16777216}}",
		  "page.move",
		  "piece size 16777216 must be a multiple of 512 bytes, at most 8388608");
	parse_bad("{\"cmd\":\"page.show\",\"args\":{\"volume\":\"v\"}}", "page.show",
		  "missing or invalid argument 'page' (a page number)");
	parse_bad("{\"cmd\":\"server.evacuate\",\"args\":{}}", "server.evacuate",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"v\"}}",
		  "volume.set_servers", "'servers' must be a list of 1 to 64 server ids");
	parse_bad("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"v\",\"servers\":[]}}",
		  "volume.set_servers", "'servers' must be a list of 1 to 64 server ids");
	parse_bad("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"v\",\"servers\":null}}",
		  "volume.set_servers", "'servers' must be a list of 1 to 64 server ids");
	parse_bad("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"v\",\"servers\":[1,2,"
		  "1]}}",
		  "volume.set_servers", "server 1 is listed twice");
	parse_bad("{\"cmd\":\"volume.set_servers\",\"args\":{\"volume\":\"v\",\"servers\":[0]}}",
		  "volume.set_servers", "'servers' must be a list of server ids");
	parse_bad("{\"cmd\":\"group.set_weight\",\"args\":{\"id\":2,\"weight\":0}}",
		  "group.set_weight", "missing or invalid argument 'weight' (a weight, 1 to 1000)");
	parse_bad("{\"cmd\":\"group.set_weight\",\"args\":{\"id\":2,\"weight\":1001}}",
		  "group.set_weight", "missing or invalid argument 'weight' (a weight, 1 to 1000)");
	parse_bad("{\"cmd\":\"group.set_weight\",\"args\":{\"weight\":3}}", "group.set_weight",
		  "missing or invalid argument 'id' (a server id, 1 to 4294967295)");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mb\",\"value\":1}}",
		  "config.set",
		  "unknown setting 'migrate.max-mb' (settings: migrate.max-mbps, "
		  "balance.threshold, balance.interval)");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"value\":1}}", "config.set",
		  "missing or invalid argument 'key'");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\"}}", "config.set",
		  "missing or invalid argument 'value' (MB/s, 0 for the default)");
	parse_bad("{\"cmd\":\"config.set\",\"args\":{\"key\":\"migrate.max-mbps\","
		  "\"value\":100001}}",
		  "config.set",
		  "migrate.max-mbps 100001 is out of range: 0 (the default, 100) to 100000");
	parse_bad("{\"cmd\":\"page.moves\",\"args\":{}}", NULL, "unknown command 'page.moves'");
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *good = tcase_create("good");
	TCase *bad = tcase_create("bad");

	tcase_add_test(good, commands_without_args);
	tcase_add_test(good, volume_create_good);
	tcase_add_test(good, volume_show_delete_good);
	tcase_add_test(good, group_join_good);
	tcase_add_test(good, migration_commands_good);
	tcase_add_test(bad, migration_commands_bad);
	tcase_add_test(bad, not_a_request);
	tcase_add_test(bad, args_and_unknown_commands);
	tcase_add_test(bad, volume_create_bad);
	tcase_add_test(bad, big_numbers);
	tcase_add_test(bad, nul_characters);
	tcase_add_test(bad, name_characters);
	tcase_add_test(bad, servers_too_many);
	tcase_add_test(bad, show_delete_join_bad);
	tcase_add_test(bad, limits_of_the_buffers);
	tcase_add_test(bad, group_remove_leave);
	suite_add_tcase(s, good);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
