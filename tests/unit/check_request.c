/* check_request.c: unit tests for the pure checks of peerd/request.c, the
 * first look at a data request from the network: its frames
 * (request_check_frame: shared memory, a WRITE's data frame, no data frame
 * on anything else, PV_MAX_IO) and its range against the volume
 * (request_check_range). What a request does then (workers, forwarding,
 * replies) is covered end to end (bad-frames, io-past-end, fio-verify).
 * The global srv of peerd stays NULL here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define VOL_SIZE (64ull << 20)

/* One header with its data frame, and what request_check_frame says. */
struct frame_case {
	uint32_t op, flags, hops;
	uint64_t client_id;
	uint32_t length;
	int has_data;
	uint64_t data_len;
	int status;
	uint64_t want_len; /* when OK */
	const char *msg;   /* a part of the message, when refused */
};

static const struct frame_case frames[] = {
    /* plain requests; TRIM may exceed PV_MAX_IO */
    {PV_OP_READ, 0, 0, 0, 8192, 0, 0, PV_ST_OK, 8192, NULL},
    {PV_OP_TRIM, 0, 0, 0, 1u << 30, 0, 0, PV_ST_OK, 1u << 30, NULL},
    {PV_OP_FLUSH, 0, 0, 0, 0, 0, 0, PV_ST_OK, 0, NULL},
    /* a data frame on anything but a WRITE */
    {PV_OP_READ, 0, 0, 0, 512, 1, 512, PV_ST_BAD_REQUEST, 0, "READ takes no data frame"},
    {PV_OP_FLUSH, 0, 0, 0, 0, 1, 0, PV_ST_BAD_REQUEST, 0, "FLUSH takes no data frame"},
    /* WRITE: the data frame gives the length; length 0 takes any */
    {PV_OP_WRITE, 0, 0, 0, 4096, 1, 4096, PV_ST_OK, 4096, NULL},
    {PV_OP_WRITE, 0, 0, 0, 0, 1, 12288, PV_ST_OK, 12288, NULL},
    {PV_OP_WRITE, 0, 0, 0, 0, 1, PV_MAX_IO, PV_ST_OK, PV_MAX_IO, NULL},
    {PV_OP_WRITE, 0, 0, 0, 0, 0, 0, PV_ST_BAD_REQUEST, 0, "WRITE without a data frame"},
    {PV_OP_WRITE, 0, 0, 0, 4096, 1, 4095, PV_ST_BAD_REQUEST, 0,
     "WRITE length 4096 but data frame of 4095 bytes"},
    {PV_OP_WRITE, 0, 0, 0, 0, 1, PV_MAX_IO + 1ull, PV_ST_BAD_REQUEST, 0, "over the maximum"},
    /* shared memory: a client's (hops 0) or a peer's part (hops 1), READ
     * or WRITE, without data, at most PV_MAX_IO; nothing else */
    {PV_OP_WRITE, PV_F_SHM, 0, 7, 65536, 0, 0, PV_ST_OK, 65536, NULL},
    {PV_OP_READ, PV_F_SHM, 1, 7, 65536, 0, 0, PV_ST_OK, 65536, NULL},
    {PV_OP_READ, PV_F_SHM, 1, 7, 65536, 1, 65536, PV_ST_BAD_REQUEST, 0, "without a data frame"},
    {PV_OP_READ, PV_F_SHM, 2, 7, 65536, 0, 0, PV_ST_BAD_REQUEST, 0, "shared memory only"},
    {PV_OP_READ, PV_F_SHM, 0, 0, 65536, 0, 0, PV_ST_BAD_REQUEST, 0, "shared memory only"},
    {PV_OP_TRIM, PV_F_SHM, 0, 7, 65536, 0, 0, PV_ST_BAD_REQUEST, 0, "shared memory only"},
    {PV_OP_READ, PV_F_SHM, 0, 7, PV_MAX_IO + 1, 0, 0, PV_ST_BAD_REQUEST, 0, "READ of"},
};

START_TEST(frame)
{
	const struct frame_case *c = &frames[_i];
	char msg[PV_MAX_MESSAGE] = "";
	uint64_t len = 0xdeadbeef;
	Pv__Header h;

	wire_header_init(&h);
	h.op = c->op;
	h.flags = c->flags;
	h.hops = c->hops;
	h.client_id = c->client_id;
	h.length = c->length;
	ck_assert_int_eq(request_check_frame(&h, c->has_data, c->data_len, &len, msg, sizeof(msg)),
			 c->status);
	if (c->status == PV_ST_OK)
		ck_assert_uint_eq(len, c->want_len);
	else
		ck_assert_msg(strstr(msg, c->msg), "case %d: '%s' lacks '%s'", _i, msg, c->msg);
}
END_TEST

/* A range against a volume of VOL_SIZE bytes. */
struct range_case {
	uint32_t op;
	uint64_t offset, length;
	int status;
};

static const struct range_case ranges[] = {
    {PV_OP_READ, 0, VOL_SIZE, PV_ST_OK},
    {PV_OP_READ, VOL_SIZE - 512, 512, PV_ST_OK},
    {PV_OP_READ, VOL_SIZE - 512, 513, PV_ST_OUT_OF_RANGE},
    /* at the end, length 0: in range; past the end: not */
    {PV_OP_WRITE, VOL_SIZE, 0, PV_ST_OK},
    {PV_OP_WRITE, VOL_SIZE + 1, 0, PV_ST_OUT_OF_RANGE},
    /* no wrap-around: a huge length never adds up to a small end */
    {PV_OP_TRIM, 4096, UINT64_MAX - 100, PV_ST_OUT_OF_RANGE},
    /* FLUSH has no range */
    {PV_OP_FLUSH, UINT64_MAX, 0, PV_ST_OK},
};

START_TEST(range)
{
	const struct range_case *c = &ranges[_i];
	char msg[PV_MAX_MESSAGE] = "";
	Pv__Header h;

	wire_header_init(&h);
	h.op = c->op;
	h.offset = c->offset;
	ck_assert_int_eq(request_check_range(&h, c->length, "v", VOL_SIZE, msg, sizeof(msg)),
			 c->status);
}
END_TEST

/* The message names the request and the volume. */
START_TEST(range_message)
{
	char msg[PV_MAX_MESSAGE] = "";
	Pv__Header h;

	wire_header_init(&h);
	h.op = PV_OP_READ;
	h.offset = VOL_SIZE - 512;
	request_check_range(&h, 513, "v", VOL_SIZE, msg, sizeof(msg));
	ck_assert_str_eq(msg, "READ at 67108352+513 is past the end of volume v (67108864 bytes)");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("request");
	TCase *t = tcase_create("checks");
	SRunner *sr = srunner_create(s);
	int failed;

	suite_add_tcase(s, t);
	tcase_add_loop_test(t, frame, 0, sizeof(frames) / sizeof(frames[0]));
	tcase_add_loop_test(t, range, 0, sizeof(ranges) / sizeof(ranges[0]));
	tcase_add_test(t, range_message);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
