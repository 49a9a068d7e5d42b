/* check_metrics.c: unit tests for peerd/metrics.c: the --metrics-listen
 * address (IPv4:PORT, [IPv6]:PORT, and what is refused), and the text
 * metrics_render makes from load.c's totals (counters by op and volume, a
 * cumulative latency histogram whose +Inf bucket is its count) and the
 * group's picture, on a server of one member. The HTTP side is the e2e
 * test's (tests/e2e/metrics.sh). */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

START_TEST(address)
{
	struct sockaddr_storage ss;
	socklen_t len;

	ck_assert_int_eq(metrics_parse_address("127.0.0.2:7190", &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_int_eq(len, sizeof(struct sockaddr_in));
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7190);
	ck_assert_int_eq(metrics_parse_address("[::1]:9", &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_int_eq(len, sizeof(struct sockaddr_in6));
	ck_assert_int_eq(metrics_parse_address("0.0.0.0:65535", &ss, &len), 0);

	const char *bad[] = {"",
			     "127.0.0.1",
			     "127.0.0.1:",
			     "127.0.0.1:0",
			     "127.0.0.1:65536",
			     "127.0.0.1:7x",
			     "localhost:80",
			     "::1:80",
			     "[::1]",
			     "[]:80",
			     "1.2.3:80",
			     "[127.0.0.1]:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(metrics_parse_address(bad[i], &ss, &len) < 0, "'%s' taken", bad[i]);
}
END_TEST

/* Whether text has line (whole). */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

START_TEST(render)
{
	static struct server s;
	struct volume v;
	struct load_totals served, fwd;
	uint64_t bounds[2] = {4096, 8192}, cum[2], count, sum_us;
	size_t len;
	char *text;

	srv = &s;
	s.cfg.id = 1;
	s.version = 7;
	s.nmembers = 2;
	s.members[0] = (struct member){.id = 1, .up = 1, .weight = 1};
	s.members[1] = (struct member){.id = 2, .up = 0, .weight = 1};
	memset(&v, 0, sizeof(v));
	v.id = 3;
	v.page_size = 1 << 20;
	v.npages = 8;
	v.owned_here = 5;
	snprintf(v.name, sizeof(v.name), "vol\"1");
	s.volumes = &v;

	for (int i = 0; i < 10; i++)
		load_part(&v, PV_OP_READ, (uint64_t)i * 4096, 4096, 0);
	load_part(&v, PV_OP_WRITE, 0, 8192, 0);
	load_part(&v, PV_OP_FLUSH, 0, 0, 0);
	load_forwarded(PV_OP_WRITE, 4096);
	/* served 5 ms (well over the 4096 us bound, under 8192) */
	load_done(PV_OP_READ, 0, 0, 4096, load_now_us() - 5000);
	load_done(PV_OP_WRITE, 0, 0, 8192, load_now_us());
	load_tick(NULL);

	load_totals(&served, &fwd);
	ck_assert_uint_eq(served.ops[0], 10);
	ck_assert_uint_eq(served.bytes[0], 40960);
	ck_assert_uint_eq(served.ops[1], 1);
	ck_assert_uint_eq(served.ops[2], 1);
	ck_assert_uint_eq(fwd.ops[1], 1);
	load_latency(0, bounds, 2, cum, &count, &sum_us);
	ck_assert_uint_eq(cum[0], 0);
	ck_assert_uint_eq(cum[1], 1);
	ck_assert_uint_eq(count, 1);
	ck_assert_uint_ge(sum_us, 5000);

	text = metrics_render(&len);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(strlen(text), len);
	ck_assert(has_line(text, "# TYPE peervol_requests_total counter"));
	ck_assert(has_line(text, "peervol_requests_total{op=\"read\",volume=\"vol\\\"1\"} 10"));
	ck_assert(has_line(text, "peervol_requests_total{op=\"other\",volume=\"vol\\\"1\"} 1"));
	ck_assert(has_line(text, "peervol_bytes_total{op=\"write\",volume=\"vol\\\"1\"} 8192"));
	ck_assert(!strstr(text, "peervol_bytes_total{op=\"other\""));
	ck_assert(has_line(text, "peervol_forwarded_total{op=\"write\"} 1"));
	ck_assert(has_line(text, "peervol_request_duration_seconds_bucket{op=\"read\",le=\"0."
				 "004096\"} 0"));
	ck_assert(has_line(text, "peervol_request_duration_seconds_bucket{op=\"read\",le=\"0."
				 "008192\"} 1"));
	ck_assert(
	    has_line(text, "peervol_request_duration_seconds_bucket{op=\"read\",le=\"+Inf\"} 1"));
	ck_assert(has_line(text, "peervol_request_duration_seconds_count{op=\"read\"} 1"));
	ck_assert(has_line(text, "peervol_pages_owned{volume=\"vol\\\"1\"} 5"));
	ck_assert(has_line(text, "peervol_volume_pages{volume=\"vol\\\"1\"} 8"));
	ck_assert(has_line(text, "peervol_catalog_version 7"));
	ck_assert(has_line(text, "peervol_member_up{server=\"1\"} 1"));
	ck_assert(has_line(text, "peervol_member_up{server=\"2\"} 0"));
	ck_assert(has_line(text, "peervol_member_load_share{server=\"1\"} 1"));
	ck_assert(!strstr(text, "peervol_member_load_share{server=\"2\"}")); /* no figures */
	ck_assert(has_line(text, "peervol_balance_decisions_total{verdict=\"move\"} 0"));
	ck_assert(has_line(text, "peervol_migrations_in_progress{direction=\"out\"} 0"));
	ck_assert(text[len - 1] == '\n');
	free(text);
	load_free();
	srv = NULL;
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_test(tc, address);
	tcase_add_test(tc, render);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
