/* fuzz_control.c: libFuzzer target for control_parse (peerd/control_parse.c), the
 * decoder of the JSON requests peerd takes on its control socket. Any byte
 * string must give a command or be refused with a message, never crash or
 * leak. A command must satisfy every limit struct control_cmd promises
 * (valid name, size > 0 and a multiple of 512 up to the maximum, page size
 * in range, server ids > 0, a tcp:// address of bounded length, a page
 * range in order, a piece size, weight and bandwidth in their bounds,
 * distinct servers for set_servers, unused fields zero), and come from a JSON object whose "cmd" is
 * its name (NUL and all: a NUL in a string is read, and refused where a command reads it). A
 * refusal must leave a non-empty message terminated inside the buffer. srv stays NULL:
 * control_parse touching server state crashes the run. */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define MAX_SIZE (64ull << 40) /* peerd's default --max-volume-size */

/* Stops the run on a broken property; libFuzzer saves the input. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_control: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const char *const names[CONTROL_NCMDS] = {
    [CONTROL_STATUS] = "status",
    [CONTROL_VOLUME_CREATE] = "volume.create",
    [CONTROL_VOLUME_LIST] = "volume.list",
    [CONTROL_VOLUME_SHOW] = "volume.show",
    [CONTROL_VOLUME_DELETE] = "volume.delete",
    [CONTROL_GROUP_INIT] = "group.init",
    [CONTROL_GROUP_JOIN] = "group.join",
    [CONTROL_GROUP_SHOW] = "group.show",
    [CONTROL_GROUP_REMOVE] = "group.remove",
    [CONTROL_GROUP_LEAVE] = "group.leave",
    [CONTROL_PAGE_MOVE] = "page.move",
    [CONTROL_PAGE_SHOW] = "page.show",
    [CONTROL_MIGRATION_LIST] = "migration.list",
    [CONTROL_SERVER_EVACUATE] = "server.evacuate",
    [CONTROL_VOLUME_SET_SERVERS] = "volume.set_servers",
    [CONTROL_GROUP_SET_WEIGHT] = "group.set_weight",
    [CONTROL_CONFIG_SET] = "config.set",
    [CONTROL_MIGRATE_PAUSE] = "migrate.pause",
    [CONTROL_MIGRATE_RESUME] = "migrate.resume",
    [CONTROL_LOAD_SHOW] = "load.show",
    [CONTROL_BALANCE_STATUS] = "balance.status",
    [CONTROL_BALANCE_ON] = "balance.on",
    [CONTROL_BALANCE_OFF] = "balance.off",
    [CONTROL_SNAPSHOT_CREATE] = "snapshot.create",
    [CONTROL_SNAPSHOT_LIST] = "snapshot.list",
    [CONTROL_SNAPSHOT_SHOW] = "snapshot.show",
    [CONTROL_SNAPSHOT_DELETE] = "snapshot.delete",
    [CONTROL_SNAPSHOT_DIFF] = "snapshot.diff",
    [CONTROL_SNAPSHOT_ROLLBACK] = "snapshot.rollback",
    [CONTROL_CLIENT_ADD] = "client.add",
    [CONTROL_CLIENT_LIST] = "client.list",
    [CONTROL_CLIENT_REVOKE] = "client.revoke",
};

/* Whether a string field is empty (its termination is checked apart). */
static int empty(const char *s)
{
	return s[0] == '\0';
}

static void check_command(const struct control_cmd *c, const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *req, *cmd;

	REQUIRE((unsigned)c->op < CONTROL_NCMDS);
	REQUIRE(c->cmd != NULL && strcmp(c->cmd, names[c->op]) == 0);
	REQUIRE(memchr(c->name, 0, sizeof(c->name)) != NULL);
	REQUIRE(memchr(c->address, 0, sizeof(c->address)) != NULL);
	REQUIRE(c->routing == 0 || c->routing == 1);
	REQUIRE(c->force == 0 || c->force == 1);
	REQUIRE(c->nservers <= PEERD_MAX_MEMBERS);
	REQUIRE(c->timeout <= CONTROL_MAX_TIMEOUT);
	REQUIRE(c->op == CONTROL_GROUP_JOIN || c->timeout == 0);
	REQUIRE((c->op == CONTROL_GROUP_REMOVE || c->op == CONTROL_GROUP_LEAVE ||
		 c->op == CONTROL_GROUP_SET_WEIGHT || c->op == CONTROL_SERVER_EVACUATE) ==
		(c->id > 0));
	REQUIRE(c->cancel == 0 || c->cancel == 1);
	REQUIRE(c->op == CONTROL_SERVER_EVACUATE || !c->cancel);
	/* the page commands' fields: page.move and page.show only */
	REQUIRE(c->op == CONTROL_PAGE_MOVE || c->op == CONTROL_PAGE_SHOW ||
		(c->first == 0 && c->last == 0));
	REQUIRE(c->first <= c->last && c->last <= INT64_MAX);
	REQUIRE(c->op == CONTROL_PAGE_SHOW || c->op == CONTROL_PAGE_MOVE || c->last == 0);
	REQUIRE(c->op != CONTROL_PAGE_SHOW || c->first == c->last);
	REQUIRE((c->op == CONTROL_PAGE_MOVE) == (c->to > 0));
	REQUIRE(c->piece_size % PV_SECTOR == 0 && c->piece_size <= PV_MAX_IO);
	REQUIRE(c->op == CONTROL_PAGE_MOVE || c->piece_size == 0);
	REQUIRE((c->op == CONTROL_GROUP_SET_WEIGHT) == (c->weight > 0));
	REQUIRE(c->weight <= PLACEMENT_MAX_WEIGHT);
	REQUIRE(c->value <= PLACEMENT_MAX_MBPS);
	REQUIRE(c->op == CONTROL_CONFIG_SET || c->value == 0);
	/* the snapshot commands' fields: theirs only */
	REQUIRE(memchr(c->snap, 0, sizeof(c->snap)) && memchr(c->from, 0, sizeof(c->from)) &&
		memchr(c->mode, 0, sizeof(c->mode)));
	REQUIRE(c->op == CONTROL_SNAPSHOT_CREATE || (empty(c->mode) && c->timeout_ms == 0));
	REQUIRE(c->op == CONTROL_SNAPSHOT_DIFF || empty(c->from));
	REQUIRE(c->op == CONTROL_VOLUME_DELETE || !c->with_snapshots);
	REQUIRE(c->timeout_ms <= SNAP_TIMEOUT_MAX);
	/* the client commands' fields: theirs only */
	REQUIRE(memchr(c->client, 0, sizeof(c->client)) != NULL);
	REQUIRE((c->op == CONTROL_CLIENT_ADD || c->op == CONTROL_CLIENT_REVOKE) ==
		!empty(c->client));
	REQUIRE(c->op == CONTROL_CLIENT_ADD ||
		sodium_is_zero(c->client_key, sizeof(c->client_key)));

	switch (c->op) {
	case CONTROL_CLIENT_ADD:
	case CONTROL_CLIENT_REVOKE:
		REQUIRE(pv_client_name_ok(c->client));
		REQUIRE(empty(c->name) && empty(c->address) && c->size == 0 && !c->force);
		break;
	case CONTROL_SNAPSHOT_CREATE:
	case CONTROL_SNAPSHOT_SHOW:
	case CONTROL_SNAPSHOT_DELETE:
	case CONTROL_SNAPSHOT_DIFF:
	case CONTROL_SNAPSHOT_ROLLBACK:
		REQUIRE(pv_valid_name(c->name, NULL, 0) && pv_valid_name(c->snap, NULL, 0));
		REQUIRE(empty(c->from) || pv_valid_name(c->from, NULL, 0));
		REQUIRE(c->op != CONTROL_SNAPSHOT_CREATE || !strcmp(c->mode, "hold") ||
			!strcmp(c->mode, "timestamp"));
		REQUIRE(empty(c->address) && c->size == 0 && c->nservers == 0);
		REQUIRE(c->op == CONTROL_SNAPSHOT_ROLLBACK || !c->force);
		break;
	case CONTROL_SNAPSHOT_LIST:
		REQUIRE(empty(c->name) || pv_valid_name(c->name, NULL, 0));
		REQUIRE(empty(c->snap) && empty(c->address) && c->size == 0 && !c->force);
		break;
	case CONTROL_VOLUME_CREATE:
		REQUIRE(pv_valid_name(c->name, NULL, 0));
		REQUIRE(c->size > 0 && c->size % PV_SECTOR == 0 && c->size <= MAX_SIZE);
		REQUIRE(pv_valid_volume_size(c->size, MAX_SIZE, NULL, 0));
		REQUIRE(c->page_size == 0 ||
			(c->page_size % PV_SECTOR == 0 && c->page_size >= PV_MIN_PAGE_SIZE &&
			 c->page_size <= PV_MAX_PAGE_SIZE));
		for (size_t i = 0; i < c->nservers; i++)
			REQUIRE(c->servers[i] > 0);
		REQUIRE(empty(c->address) && !c->routing && !c->force);
		break;
	case CONTROL_VOLUME_SHOW:
	case CONTROL_VOLUME_DELETE:
		REQUIRE(pv_valid_name(c->name, NULL, 0));
		REQUIRE(c->op == CONTROL_VOLUME_SHOW || !c->routing);
		REQUIRE(c->op == CONTROL_VOLUME_DELETE || !c->force);
		REQUIRE(c->size == 0 && c->page_size == 0 && c->nservers == 0 && empty(c->address));
		break;
	case CONTROL_GROUP_JOIN:
		REQUIRE(strncmp(c->address, "tcp://", 6) == 0);
		REQUIRE(strlen(c->address) <= CONTROL_MAX_ADDRESS);
		REQUIRE(empty(c->name) && c->size == 0 && c->page_size == 0 && c->nservers == 0);
		REQUIRE(!c->routing && !c->force);
		break;
	case CONTROL_GROUP_REMOVE:
	case CONTROL_GROUP_LEAVE:
	case CONTROL_GROUP_SET_WEIGHT:
	case CONTROL_SERVER_EVACUATE:
		REQUIRE(empty(c->name) && empty(c->address) && c->size == 0 && c->page_size == 0);
		REQUIRE(c->nservers == 0 && !c->routing);
		REQUIRE(c->op == CONTROL_GROUP_REMOVE || c->op == CONTROL_GROUP_LEAVE || !c->force);
		break;
	case CONTROL_PAGE_MOVE:
	case CONTROL_PAGE_SHOW:
		REQUIRE(pv_valid_name(c->name, NULL, 0));
		REQUIRE(empty(c->address) && c->size == 0 && c->page_size == 0);
		REQUIRE(c->nservers == 0 && !c->routing && !c->force);
		break;
	case CONTROL_VOLUME_SET_SERVERS:
		REQUIRE(pv_valid_name(c->name, NULL, 0));
		REQUIRE(c->nservers >= 1);
		for (size_t i = 0; i < c->nservers; i++) {
			REQUIRE(c->servers[i] > 0);
			for (size_t k = 0; k < i; k++)
				REQUIRE(c->servers[k] != c->servers[i]);
		}
		REQUIRE(empty(c->address) && c->size == 0 && c->page_size == 0);
		REQUIRE(!c->routing && !c->force);
		break;
	case CONTROL_CONFIG_SET:
		REQUIRE(c->key == CONTROL_KEY_MIGRATE_MBPS ||
			c->key == CONTROL_KEY_BALANCE_THRESHOLD ||
			c->key == CONTROL_KEY_BALANCE_INTERVAL);
		REQUIRE(c->key != CONTROL_KEY_MIGRATE_MBPS || c->value <= PLACEMENT_MAX_MBPS);
		REQUIRE(c->key != CONTROL_KEY_BALANCE_THRESHOLD ||
			(c->value >= 10 && c->value <= BALANCE_MAX_THRESHOLD));
		REQUIRE(c->key != CONTROL_KEY_BALANCE_INTERVAL ||
			(c->value >= 1 && c->value <= BALANCE_MAX_INTERVAL));
		REQUIRE(empty(c->name) && empty(c->address) && c->nservers == 0);
		break;
	default: /* no arguments */
		REQUIRE(empty(c->name) && empty(c->address) && c->size == 0 && c->page_size == 0);
		REQUIRE(c->nservers == 0 && !c->routing && !c->force);
		break;
	}

	/* accepted only a JSON object whose "cmd" names the command. Integers
	 * too large for jansson may stand where no command reads them: read
	 * them as reals here, except beyond a double (more than 308 digits),
	 * where this check is skipped */
	req = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
	if (!req) {
		REQUIRE(json_error_code(&jerr) == json_error_numeric_overflow);
		return;
	}
	cmd = json_object_get(req, "cmd");
	REQUIRE(json_is_object(req));
	REQUIRE(json_is_string(cmd));
	REQUIRE(json_string_length(cmd) == strlen(c->cmd));
	REQUIRE(strcmp(json_string_value(cmd), c->cmd) == 0);
	json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_cmd c;
	char err[PV_MAX_MESSAGE];
	int rc;

	/* every command has its name here: a command added to peerd without
	 * one would read a NULL name below */
	for (unsigned i = 0; i < CONTROL_NCMDS; i++)
		REQUIRE(names[i] != NULL);
	memset(&c, 0xa5, sizeof(c)); /* stale fields must not survive */
	memset(err, 'x', sizeof(err));
	rc = control_parse(data, size, MAX_SIZE, &c, err, sizeof(err));
	REQUIRE(rc == 0 || rc == -1);
	if (rc == 0) {
		check_command(&c, data, size);
		return 0;
	}
	REQUIRE(memchr(err, 0, sizeof(err)) != NULL);
	REQUIRE(err[0] != '\0');
	REQUIRE(c.cmd == NULL ||
		((unsigned)c.op < CONTROL_NCMDS && strcmp(c.cmd, names[c.op]) == 0));
	return 0;
}
