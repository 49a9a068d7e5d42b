/* check_control.c: unit tests for control_parse (peerd/control.c), the
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
	    "{\"cmd\":\"st\\u0000atus\"}", /* NUL inside a string: jansson refuses it */
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
	     "name 'a/b' has character '/'; allowed are A-Z a-z 0-9 . _ -"},
	    {CREATE("\"name\":\"caf\\u00e9\",\"size\":1024"),
	     "name 'caf\xc3\xa9' has character '?'; allowed are A-Z a-z 0-9 . _ -"},
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

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *good = tcase_create("good");
	TCase *bad = tcase_create("bad");

	tcase_add_test(good, commands_without_args);
	tcase_add_test(good, volume_create_good);
	tcase_add_test(good, volume_show_delete_good);
	tcase_add_test(good, group_join_good);
	tcase_add_test(bad, not_a_request);
	tcase_add_test(bad, args_and_unknown_commands);
	tcase_add_test(bad, volume_create_bad);
	tcase_add_test(bad, servers_too_many);
	tcase_add_test(bad, show_delete_join_bad);
	tcase_add_test(bad, limits_of_the_buffers);
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
