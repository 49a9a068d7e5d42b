/* commands.c: peerctl's commands. A table row per command (name, sub-name,
 * usage, help, options, handler), as peerd's ops table; the option parser
 * that checks a command line against its row; local validation of names,
 * sizes and server lists before anything is sent; and the printers that
 * turn peerd's results into tables and key: value lines for people (or
 * pretty JSON with --json). Talks to peerd only through peerctl_call().
 * Single-threaded. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sys/stat.h>

#include "auth.h"
#include "pagemath.h"
#include "peerctl.h"
#include "pvlog.h"
#include "util.h"
#include "wire.h"

#define MAX_OPTS    4 /* options of one command */
#define MAX_POS	    4 /* positional arguments kept (more is an error) */
#define MAX_SERVERS 1024
#define TABLE_COLS  10
#define FIELD_LEN   512

/* A command-line argument as an error message shows it: escaped by
 * pv_escape (a control character or a byte that is not UTF-8 never reaches
 * the terminal as it is), in a buffer that lives to the end of the
 * enclosing block. */
#define SHOWN(s) pv_escape((s), strlen(s), (char[PV_ESCAPE_NAME]){0}, PV_ESCAPE_NAME)

struct invocation;
struct command;

/* A command that takes exactly one positional argument, shown as a. */
#define ONE_ARG(a) .args = (a), .min_args = 1, .max_args = 1
/* ... exactly two. */
#define TWO_ARGS(a) .args = (a), .min_args = 2, .max_args = 2

/* Runs a parsed command; returns the exit code. */
typedef int (*command_fn)(struct ctl *ctl, const struct command *cmd, const struct invocation *inv);

struct cmd_option {
	const char *name; /* long name without "--" */
	const char *arg;  /* value placeholder; NULL for a flag; "=VALUE": the value
			   * may be left out and is given only as --name=VALUE */
	const char *help; /* one line */
};

/* Whether option o's value may be left out (its placeholder is "=VALUE"). */
static int opt_optional(const struct cmd_option *o)
{
	return o->arg && o->arg[0] == '=';
}

struct command {
	const char *name;
	const char *sub;  /* second word, or NULL */
	const char *args; /* positional arguments for the usage line, or "" */
	int min_args, max_args;
	const char *summary; /* one line for 'peerctl --help' */
	const char *details; /* a paragraph for 'peerctl CMD --help' */
	struct cmd_option opts[MAX_OPTS];
	const char *examples; /* lines, each a full command */
	command_fn run;
};

/* A command line checked against its table row. */
struct invocation {
	int npos;		   /* positional arguments seen */
	const char *pos[MAX_POS];  /* the first MAX_POS of them */
	const char *opt[MAX_OPTS]; /* value per row option; "" for a flag; NULL: absent */
};

static int do_status(struct ctl *, const struct command *, const struct invocation *);
static int do_volume_create(struct ctl *, const struct command *, const struct invocation *);
static int do_volume_list(struct ctl *, const struct command *, const struct invocation *);
static int do_volume_show(struct ctl *, const struct command *, const struct invocation *);
static int do_volume_delete(struct ctl *, const struct command *, const struct invocation *);
static int do_group_init(struct ctl *, const struct command *, const struct invocation *);
static int do_group_join(struct ctl *, const struct command *, const struct invocation *);
static int do_group_show(struct ctl *, const struct command *, const struct invocation *);
static int do_group_remove(struct ctl *, const struct command *, const struct invocation *);
static int do_health(struct ctl *, const struct command *, const struct invocation *);
static int do_volume_set_servers(struct ctl *, const struct command *, const struct invocation *);
static int do_group_set_weight(struct ctl *, const struct command *, const struct invocation *);
static int do_page_move(struct ctl *, const struct command *, const struct invocation *);
static int do_page_show(struct ctl *, const struct command *, const struct invocation *);
static int do_migrations(struct ctl *, const struct command *, const struct invocation *);
static int do_server_evacuate(struct ctl *, const struct command *, const struct invocation *);
static int do_set(struct ctl *, const struct command *, const struct invocation *);
static int do_migrate(struct ctl *, const struct command *, const struct invocation *);
static int do_load(struct ctl *, const struct command *, const struct invocation *);
static int do_top(struct ctl *, const struct command *, const struct invocation *);
static int do_balance(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_create(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_list(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_show(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_delete(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_rollback(struct ctl *, const struct command *, const struct invocation *);
static int do_snapshot_diff(struct ctl *, const struct command *, const struct invocation *);
static int do_group_keygen(struct ctl *, const struct command *, const struct invocation *);
static int do_client_add(struct ctl *, const struct command *, const struct invocation *);
static int do_client_list(struct ctl *, const struct command *, const struct invocation *);
static int do_client_revoke(struct ctl *, const struct command *, const struct invocation *);

/* What a long wait (page move, server evacuate, set-servers, set-weight)
 * says of --async and of Ctrl-C, in each one's help. */
#define WAIT_HELP                                                                                  \
	"\nWaits until done, showing progress (a bar on a terminal, a line every few\n"            \
	"seconds otherwise), then a summary; --async returns once peerd accepted.\n"               \
	"Ctrl-C stops waiting, not the work: it goes on in the servers (exit 130)."

static const struct command commands[] = {
    {
	.name = "health",
	.args = "",
	.summary = "is the group healthy? members down, volumes unreachable, space",
	.details = "One line HEALTH_OK, HEALTH_WARN or HEALTH_ERR, then one line per\n"
		   "problem: members down (their pages cannot be read or written), each\n"
		   "volume with pages on a member that is down (the share of it that is\n"
		   "unreachable), and space: what the volumes provision against what the\n"
		   "servers have free (volumes are thin: provisioning more than is free is\n"
		   "allowed, and warned about), and servers almost full.\n"
		   "Exit status: 0 HEALTH_OK, 3 HEALTH_WARN, 4 HEALTH_ERR (1: no answer).",
	.examples = "peerctl health\npeerctl health --json\n"
		    "peerctl health >/dev/null || echo 'look at the group'",
	.run = do_health,
    },
    {
	.name = "status",
	.args = "",
	.summary = "show this server: id, address, group, uptime",
	.details = "Asks the peerd behind the control socket about itself.",
	.examples = "peerctl status\npeerctl -s /tmp/p1/c.sock status --json",
	.run = do_status,
    },
    {
	.name = "volume",
	.sub = "create",
	.args = "NAME SIZE",
	.min_args = 2,
	.max_args = 2,
	.summary = "create a volume of SIZE bytes",
	.details = "Creates volume NAME of SIZE bytes in the whole group. NAME is 1 to 64\n"
		   "characters of A-Z a-z 0-9 . _ - and does not start with '.' or '-'.\n"
		   "SIZE is bytes or a number with a binary suffix K, M, G, T (2G = 2 GiB);\n"
		   "it must be greater than zero and a multiple of 512.",
	.opts = {{"page-size", "SIZE",
		  "size of a page, the unit of placement and\n"
		  "migration: a multiple of 512 from 64K to 1G\n"
		  "(default 4M)"},
		 {"servers", "IDS",
		  "comma-separated ids of the servers allowed to\n"
		  "hold the volume's pages (default: all members)"}},
	.examples = "peerctl volume create vol1 2G\n"
		    "peerctl volume create db 100G --page-size 1M --servers 2,3",
	.run = do_volume_create,
    },
    {
	.name = "volume",
	.sub = "list",
	.args = "",
	.summary = "list the volumes of the group",
	.details = "One line per volume: size, page size, pages, pages written, allowed\n"
		   "servers and open clients.",
	.examples = "peerctl volume list",
	.run = do_volume_list,
    },
    {
	.name = "volume",
	.sub = "show",
	ONE_ARG("NAME"),
	.summary = "show one volume",
	.details = "Shows volume NAME: size, page size, pages written, bytes allocated,\n"
		   "allowed servers, servers holding pages, open clients.",
	.opts = {{"routing", "=full",
		  "also show where the pages are: per owner its\n"
		  "pages, bytes and runs, and the connection table;\n"
		  "--routing=full: every run of pages with its owner\n"
		  "and epoch (--json always has the full table)"}},
	.examples = "peerctl volume show vol1\npeerctl volume show vol1 --routing\n"
		    "peerctl volume show vol1 --routing=full",
	.run = do_volume_show,
    },
    {
	.name = "volume",
	.sub = "delete",
	ONE_ARG("NAME"),
	.summary = "delete a volume and its data",
	.details = "Deletes volume NAME and its data on every server. peerd refuses while\n"
		   "clients have the volume open, unless --force is given, and while the\n"
		   "volume has snapshots, unless --with-snapshots is given.",
	.opts = {{"force", NULL, "delete even while clients have the volume open"},
		 {"with-snapshots", NULL, "delete its snapshots with it"}},
	.examples = "peerctl volume delete vol1\npeerctl volume delete vol1 --with-snapshots",
	.run = do_volume_delete,
    },
    {
	.name = "volume",
	.sub = "set-servers",
	.args = "NAME IDS",
	.min_args = 2,
	.max_args = 2,
	.summary = "change the servers allowed to hold a volume's pages",
	.details = "Sets the servers allowed to hold volume NAME's pages to IDS (comma-\n"
		   "separated member ids). Pages then move so that each allowed server holds\n"
		   "its weight's share of them: pages on servers left out move to those\n"
		   "listed (each owner moves its own, one page at a time). Refused for a\n"
		   "server that is not a member, a list naming one twice, and leaving out a\n"
		   "server that is down and still owns pages of the volume (it could not\n"
		   "move them)." WAIT_HELP,
	.opts = {{"async", NULL, "return once the change is committed"}},
	.examples = "peerctl volume set-servers vol1 1,2,3,4\n"
		    "peerctl volume set-servers vol1 2,3 --async",
	.run = do_volume_set_servers,
    },
    {
	.name = "snapshot",
	.sub = "create",
	TWO_ARGS("VOLUME NAME"),
	.summary = "take a crash-consistent snapshot of a volume",
	.details = "Makes snapshot NAME of VOLUME: an image of the whole volume as if it had\n"
		   "been cut at one instant, on every server holding its pages. NAME is like\n"
		   "a volume name (1 to 64 of A-Z a-z 0-9 . _ -). The snapshot shows in every\n"
		   "fused mount as the read-only file VOLUME@NAME. Modes: hold (the default)\n"
		   "stops new writes to the volume on its servers until every one has drained\n"
		   "those in flight, then commits (writes pause for milliseconds); timestamp\n"
		   "never pauses writes (the cut is a time of the servers' hybrid clock).\n"
		   "Aborted, leaving nothing, when a server does not answer within --timeout.\n"
		   "Page moves of the volume under way end first (within --timeout); those\n"
		   "not yet started wait for the snapshot.\n"
		   "(After the command --timeout is the snapshot's; peerctl waits that long\n"
		   "and 10 s more. peerctl's own wait: peerctl --timeout SEC snapshot ...)",
	.opts = {{"mode", "MODE", "hold (default) or timestamp"},
		 {"timeout", "DURATION",
		  "abort when a server has not answered within\n"
		  "DURATION: 500ms, 7s, 1m (1ms to 10m; default 7s)"}},
	.examples = "peerctl snapshot create vol1 daily\n"
		    "peerctl snapshot create vol1 before-upgrade --mode timestamp\n"
		    "peerctl snapshot create db 2026-12-02 --timeout 2s",
	.run = do_snapshot_create,
    },
    {
	.name = "snapshot",
	.sub = "list",
	.args = "[VOLUME]",
	.max_args = 1,
	.summary = "list the snapshots of a volume, or of every volume",
	.details = "One line per snapshot, oldest first per volume: volume, name, mode,\n"
		   "creation time (local) and the data preserved for it over the group (the\n"
		   "old contents of the chunks written since it was taken).",
	.examples = "peerctl snapshot list\npeerctl snapshot list vol1 --json",
	.run = do_snapshot_list,
    },
    {
	.name = "snapshot",
	.sub = "show",
	TWO_ARGS("VOLUME NAME"),
	.summary = "show one snapshot and its preserved data per server",
	.details = "Shows snapshot NAME of VOLUME: id, mode, creation time, the data\n"
		   "preserved for it over the group and on each server, and the volume's\n"
		   "copy-on-write chunk size.",
	.examples = "peerctl snapshot show vol1 daily",
	.run = do_snapshot_show,
    },
    {
	.name = "snapshot",
	.sub = "delete",
	TWO_ARGS("VOLUME NAME"),
	.summary = "delete a snapshot and free its preserved data",
	.details = "Deletes snapshot NAME of VOLUME. Chunks an older snapshot still needs\n"
		   "are handed to it, the rest are freed. The file VOLUME@NAME disappears\n"
		   "from the mounts; reads through a file still open on it fail (ESTALE).",
	.examples = "peerctl snapshot delete vol1 daily",
	.run = do_snapshot_delete,
    },
    {
	.name = "snapshot",
	.sub = "rollback",
	TWO_ARGS("VOLUME NAME"),
	.summary = "make a volume's contents its snapshot's image again",
	.details = "Restores VOLUME to the image of its snapshot NAME on every server: what\n"
		   "was written since is gone (the snapshot stays). Refused while clients\n"
		   "have the volume open, unless --force is given (unmount and detach it\n"
		   "first: a file system mounted on it would not expect its disk to change).",
	.opts = {{"force", NULL, "roll back even while clients have the volume open"}},
	.examples = "peerctl snapshot rollback vol1 daily",
	.run = do_snapshot_rollback,
    },
    {
	.name = "snapshot",
	.sub = "diff",
	TWO_ARGS("VOLUME NAME"),
	.summary = "list the byte ranges a snapshot changed (incremental backup)",
	.details = "Lists the byte ranges of snapshot NAME's image that differ from snapshot\n"
		   "OLDER's (--from), or without --from those that hold data, as rbd diff\n"
		   "does: one line OFFSET LENGTH per range, in bytes, then the total. Read\n"
		   "from the servers' chunk maps, without reading data; ranges are whole\n"
		   "chunks (see snapshot show).",
	.opts = {{"from", "OLDER", "an older snapshot of VOLUME to compare with"}},
	.examples = "peerctl snapshot diff vol1 tuesday --from monday\n"
		    "peerctl snapshot diff vol1 monday --json",
	.run = do_snapshot_diff,
    },
    {
	.name = "group",
	.sub = "init",
	.args = "",
	.summary = "confirm this server is a group of its own, for others to join",
	.details = "Every new server is a group of one; init confirms it and changes\n"
		   "nothing (refused once the server has joined or been joined by others).\n"
		   "Other servers join it with 'peerctl group join ADDRESS'.",
	.examples = "peerctl group init",
	.run = do_group_init,
    },
    {
	.name = "group",
	.sub = "join",
	ONE_ARG("ADDRESS"),
	.summary = "join the group of the member at ADDRESS",
	.details = "Joins this server to an existing group. ADDRESS is the ZeroMQ endpoint\n"
		   "of any member (its peerd --listen address). peerd waits for the group's\n"
		   "answer up to --timeout less 2 s, at most 25 s. Safe to retry: if the\n"
		   "answer was lost (timeout, restart), the same command again finishes the\n"
		   "join; a server already in the group at ADDRESS succeeds and changes\n"
		   "nothing.",
	.examples = "peerctl -s /run/peervol/peerd.sock group join tcp://10.0.0.1:7100",
	.run = do_group_join,
    },
    {
	.name = "group",
	.sub = "show",
	.args = "",
	.summary = "show the group's members and their state",
	.details = "One line per member: id, address, weight, state (self, up, or down\n"
		   "after 3 s without a heartbeat), pages owned and bytes stored.",
	.examples = "peerctl group show",
	.run = do_group_show,
    },
    {
	.name = "group",
	.sub = "remove",
	ONE_ARG("ID"),
	.summary = "remove a member that is down for good (its pages are lost)",
	.details = "Removes server ID, which is down and will not come back, so that\n"
		   "catalog changes work again with the other members. Refused while it is\n"
		   "up or answers heartbeats. Without --force it prints what would be lost\n"
		   "(the pages it owned, per volume: there is no second copy) and changes\n"
		   "nothing. Afterwards reads and writes of those pages fail with an I/O\n"
		   "error naming the removed server (delete the volume, or restore it from\n"
		   "a backup); the removed server is refused by every member if it comes\n"
		   "back, and shows state 'removed' in its status.",
	.opts = {{"force", NULL, "remove it, losing the pages it owned"}},
	.examples = "peerctl group remove 3\npeerctl group remove 3 --force",
	.run = do_group_remove,
    },
    {
	.name = "group",
	.sub = "leave",
	ONE_ARG("ID"),
	.summary = "take a member that owns no pages out of the group",
	.details = "Server ID, which is up and owns no pages, leaves the group: it is told\n"
		   "and becomes a group of one again (it may join a group later). Refused\n"
		   "while it owns pages: move them off first with 'peerctl server evacuate\n"
		   "ID'; a server that is down for good: 'group remove ID --force'.",
	.examples = "peerctl group leave 4",
	.run = do_group_remove,
    },
    {
	.name = "group",
	.sub = "set-weight",
	.args = "ID WEIGHT",
	.min_args = 2,
	.max_args = 2,
	.summary = "change a member's weight (its share of the pages)",
	.details = "Sets server ID's weight to WEIGHT (1 to 1000). Every volume the server\n"
		   "is allowed to hold then moves pages until each of its servers holds its\n"
		   "weight's share. The volumes' initial layout (what a joining server\n"
		   "computes) does not change: only pages move." WAIT_HELP,
	.opts = {{"async", NULL, "return once the change is committed"}},
	.examples = "peerctl group set-weight 4 2",
	.run = do_group_set_weight,
    },
    {
	.name = "page",
	.sub = "move",
	.args = "VOLUME PAGE|FIRST-LAST",
	.min_args = 2,
	.max_args = 2,
	.summary = "move a page, or a range of pages, to another server",
	.details = "Moves page PAGE (or pages FIRST to LAST) of VOLUME to server ID, piece\n"
		   "by piece, while clients keep reading and writing it. Pages already on ID\n"
		   "are left alone (a page already there: said, exit 0). A range keeps at\n"
		   "most 4 pages asked at a time; with --async all are handed to their\n"
		   "owners at once, which move one page out at a time. Refused for a page or\n"
		   "volume that does not exist, a target that is not a member, is down, is\n"
		   "not allowed for the volume, and a page already moving. A page of a\n"
		   "volume with snapshots takes its snapshots' data with it; its move waits\n"
		   "while a snapshot of the volume is being made." WAIT_HELP,
	.opts = {{"to", "ID", "the server the pages move to (required)"},
		 {"piece", "SIZE",
		  "size of the pieces copied one at a time: a\n"
		  "multiple of 512, at most 8M and the page size\n"
		  "(default 1M, or the page if smaller)"},
		 {"async", NULL, "return once the owners accepted"}},
	.examples = "peerctl page move vol1 5 --to 3\n"
		    "peerctl page move vol1 0-63 --to 4 --piece 256K\n"
		    "peerctl page move vol1 100-199 --to 2 --async",
	.run = do_page_move,
    },
    {
	.name = "page",
	.sub = "show",
	.args = "VOLUME PAGE",
	.min_args = 2,
	.max_args = 2,
	.summary = "show a page's owner, epoch and move in progress",
	.details = "Shows page PAGE of VOLUME as the server asked knows it: its owner and\n"
		   "epoch (each move adds one), and, while it moves, from where to where,\n"
		   "the piece in transit, the state, the copy rate and why it is stuck if it\n"
		   "makes no progress.",
	.examples = "peerctl page show vol1 5",
	.run = do_page_show,
    },
    {
	.name = "migrations",
	.args = "",
	.summary = "list the page moves in progress in the group",
	.details = "One line per move in the group: volume, page, from, to, piece in transit\n"
		   "(k/n), copy rate, state, how long ago it started, and why it is stuck if\n"
		   "it makes no progress. The first line says whether moves are paused and\n"
		   "the bandwidth limit per server. --watch redraws it every second until\n"
		   "Ctrl-C.",
	.opts = {{"watch", NULL, "redraw every second until interrupted"}},
	.examples = "peerctl migrations\npeerctl migrations --watch\npeerctl migrations --json",
	.run = do_migrations,
    },
    {
	.name = "server",
	.sub = "evacuate",
	ONE_ARG("ID"),
	.summary = "move every page off server ID (before it leaves)",
	.details = "Marks server ID draining: it moves every page it owns to the other\n"
		   "servers allowed for each volume (by their weights), one page at a time,\n"
		   "and no new volume is laid on it. Once it owns nothing it can leave: \n"
		   "'peerctl group leave ID'. --cancel ends the draining: pages already moved\n"
		   "stay where they are, a move under way finishes. Refused for the last\n"
		   "member that is not draining." WAIT_HELP,
	.opts = {{"cancel", NULL, "stop evacuating ID"},
		 {"async", NULL, "return once the change is committed"}},
	.examples = "peerctl server evacuate 3\npeerctl server evacuate 3 --cancel",
	.run = do_server_evacuate,
    },
    {
	.name = "set",
	.args = "KEY VALUE",
	.min_args = 2,
	.max_args = 2,
	.summary = "change a setting of the group (migrate.max-mbps, balance.*)",
	.details = "Settings (the whole group's, kept in its catalog):\n"
		   "  migrate.max-mbps N  bandwidth of the page moves out of each server, MB/s\n"
		   "                      (0 to 100000; 0: the default, 100)\n"
		   "  balance.threshold X how far over its fair share of the load (or of the\n"
		   "                      client traffic) a server must be before the\n"
		   "                      rebalancer moves a page (or a client) off it\n"
		   "                      (0.01 to 10; default 0.25: 25% over)\n"
		   "  balance.interval T  how often each server judges its load (1s to 24h;\n"
		   "                      suffixes s m h; default 60s); a move needs two\n"
		   "                      judgements over in a row",
	.examples = "peerctl set migrate.max-mbps 200\npeerctl set migrate.max-mbps 0\n"
		    "peerctl set balance.threshold 0.25\npeerctl set balance.interval 60s",
	.run = do_set,
    },
    {
	.name = "migrate",
	.sub = "pause",
	.args = "",
	.summary = "pause every page move of the group (maintenance)",
	.details = "No move starts, and moves under way stop before their next piece\n"
		   "(clients are served as before). 'peerctl migrate resume' continues them.",
	.examples = "peerctl migrate pause",
	.run = do_migrate,
    },
    {
	.name = "migrate",
	.sub = "resume",
	.args = "",
	.summary = "resume page moves after 'migrate pause'",
	.details = "Moves paused by 'peerctl migrate pause' continue from the piece they\n"
		   "were at; evacuations and placement go on.",
	.examples = "peerctl migrate resume",
	.run = do_migrate,
    },
    {
	.name = "load",
	.args = "",
	.summary = "the load each server carries: IOPS, MB/s, p99, share of the group",
	.details = "Per server, over the last 10 s (decaying rates): read and write\n"
		   "requests and MB/s it served (its own pages, mapped reads included;\n"
		   "parts it forwarded count at their owner), the 99th percentile of its\n"
		   "served times, its share of the group's load against its fair share by\n"
		   "weight, the clients talking to it and the pages it owns. The figures\n"
		   "come from the servers' heartbeats: any server gives the same within a\n"
		   "second or two. --pages VOL lists the hottest pages of VOL (each server\n"
		   "reports its 16 hottest) and the clients that hit each most, --clients\n"
		   "the clients: the server each uses now, its volumes and its rates.",
	.opts = {{"pages", "VOL", "the hottest pages of volume VOL"},
		 {"clients", NULL, "the clients: the server each uses, busiest first"}},
	.examples = "peerctl load\npeerctl load --pages vol1\npeerctl load --clients\n"
		    "peerctl load --json",
	.run = do_load,
    },
    {
	.name = "top",
	.args = "",
	.summary = "a live view of the load: servers, hot pages, clients",
	.details = "Redraws 'peerctl load', the hottest pages and the busiest clients\n"
		   "every second until q or Ctrl-C.",
	.examples = "peerctl top",
	.run = do_top,
    },
    {
	.name = "balance",
	.sub = "status",
	.args = "",
	.summary = "the rebalancer: on or off, settings, recent moves",
	.details = "Whether the rebalancer is on, its threshold and interval, what the\n"
		   "server asked judges of its own load now (idle: under the floor; fair;\n"
		   "over; moving; waiting for fresh figures after a move) and of its client\n"
		   "traffic (idle, fair, over, telling a client, waiting), and the recent\n"
		   "moves of pages and clients of every server with their reasons.",
	.examples = "peerctl balance status\npeerctl balance status --json",
	.run = do_balance,
    },
    {
	.name = "balance",
	.sub = "on",
	.args = "",
	.summary = "let overloaded servers move hot pages and clients off (default)",
	.details = "Each server moves one of its hot pages at a time to a less loaded\n"
		   "server when it carries more than its fair share of the group's load by\n"
		   "balance.threshold for two intervals in a row; likewise it tells one\n"
		   "client at a time to use another holder when it carries more than its\n"
		   "fair share of the client traffic.",
	.examples = "peerctl balance on",
	.run = do_balance,
    },
    {
	.name = "balance",
	.sub = "off",
	.args = "",
	.summary = "stop moving pages and clients for load (moves under way finish)",
	.details = "No new move of a page or a client starts for load; evacuations and\n"
		   "placement go on, and new clients still start on the least loaded holder.",
	.examples = "peerctl balance off",
	.run = do_balance,
    },
    {
	.name = "group",
	.sub = "keygen",
	.args = "",
	.summary = "make the group key every server is started with (--auth)",
	.details = "Writes a new group key file (mode 0600; refuses to replace one unless\n"
		   "--force). Copy it to every server, owned by the user peerd runs as, and\n"
		   "start each with peerd --auth FILE: then only servers holding it and\n"
		   "clients with a key of 'peerctl client add' get in. Needs no running\n"
		   "server. Rolling a new membership secret without downtime, in three\n"
		   "steps, restarting every server (one at a time) after each: 'keygen\n"
		   "--rotate OLD' (phase 1: both secrets accepted, the old one presented),\n"
		   "'keygen --finish' of that file (phase 2: the new one presented), and\n"
		   "'keygen --finish' again (the old secret dropped). Client keys stay valid\n"
		   "through a roll. See docs/security.md.",
	.opts = {{"out", "FILE", "where to write it (default " PEERCTL_GROUP_KEY ")"},
		 {"force", NULL, "replace FILE if it exists"},
		 {"rotate", "OLD", "a new secret for the group of key file OLD"},
		 {"finish", "ROLLED", "the roll's next step (phase 2, then the end)"}},
	.examples = "peerctl group keygen\n"
		    "peerctl group keygen --out /etc/peervol/group.key\n"
		    "peerctl group keygen --rotate group.key --out group-new.key\n"
		    "peerctl group keygen --finish group-new.key --out group.key --force",
	.run = do_group_keygen,
    },
    {
	.name = "client",
	.sub = "add",
	ONE_ARG("NAME"),
	.summary = "let a client host in: make its key (fused --auth)",
	.details = "Makes a key pair for client host NAME (1 to 63 of A-Z a-z 0-9 . _ -),\n"
		   "adds its public half to the group's catalog and writes the key file\n"
		   "(mode 0600) for the host: copy it there and mount with\n"
		   "fused --auth FILE. The secret half never leaves this file. Needs a group\n"
		   "whose servers run with --auth.",
	.opts = {{"out", "FILE", "where to write the key (default ./NAME.key)"}},
	.examples = "peerctl client add host7\n"
		    "peerctl client add db1 --out /root/db1.key",
	.run = do_client_add,
    },
    {
	.name = "client",
	.sub = "list",
	.args = "",
	.summary = "the client keys of the group, and connections refused",
	.details = "One line per client key: name, fingerprint, the catalog version that\n"
		   "added it and whether it is revoked. Then the group key's fingerprint and\n"
		   "how many connections this server refused for their keys.",
	.examples = "peerctl client list\npeerctl client list --json",
	.run = do_client_list,
    },
    {
	.name = "client",
	.sub = "revoke",
	ONE_ARG("NAME"),
	.summary = "shut a client host out: its key is refused from now on",
	.details = "Marks client NAME's key revoked in the catalog: every server refuses\n"
		   "its new connections and its requests on connections open already (its\n"
		   "links are closed). Its mounts get errors. The name may be given a new key\n"
		   "afterwards with 'client add'.",
	.examples = "peerctl client revoke host7",
	.run = do_client_revoke,
    },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- help ---- */

static void usage_line(const struct command *c, char *buf, size_t len)
{
	size_t n = snprintf(buf, len, "%s%s%s%s%s", c->name, c->sub ? " " : "",
			    c->sub ? c->sub : "", *c->args ? " " : "", c->args);

	for (int i = 0; i < MAX_OPTS && c->opts[i].name && n < len; i++)
		n += snprintf(buf + n, len - n, " [--%s%s%s%s]", c->opts[i].name,
			      !c->opts[i].arg		  ? ""
			      : opt_optional(&c->opts[i]) ? "["
							  : " ",
			      c->opts[i].arg ? c->opts[i].arg : "",
			      opt_optional(&c->opts[i]) ? "]" : "");
}

/* Prints text with every line after the first indented by indent. */
static void print_indented(FILE *f, const char *text, int indent)
{
	for (const char *p = text; *p; p++) {
		fputc(*p, f);
		if (*p == '\n')
			fprintf(f, "%*s", indent, "");
	}
}

static const char global_help[] =
    "Global options (before or after the command):\n"
    "  -s, --socket PATH  peerd's control socket (peerd --control PATH);\n"
    "                     default $PEERVOL_SOCKET, else " PEERCTL_DEFAULT_SOCKET "\n"
    "      --json         print peerd's result as JSON, sizes in bytes\n"
    "      --timeout SEC  wait at most SEC seconds for an answer (default 30; after\n"
    "                     'snapshot create', that command's own --timeout)\n"
    "  -v, --verbose      print the request and the reply on stderr\n"
    "  -h, --help         show help; 'peerctl COMMAND --help' explains a command\n"
    "  -V, --version      show the version\n";

static void main_help(FILE *f)
{
	char line[256];

	fprintf(f, "Usage: peerctl [-s|--socket PATH] [--json] [--timeout SEC] COMMAND ...\n"
		   "Administer a peervol group through one peerd's control socket.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		usage_line(&commands[i], line, sizeof(line));
		if (strlen(line) > 26)
			fprintf(f, "  %s\n  %-26s  %s\n", line, "", commands[i].summary);
		else
			fprintf(f, "  %-26s  %s\n", line, commands[i].summary);
	}
	fprintf(f, "\n%s\n", global_help);
	fprintf(f, "Sizes take binary suffixes: 512, 64K, 4M, 2G, 1T.\n"
		   "Exit status: 0 success, 1 error (bad value, peerd unreachable or refused),\n"
		   "2 usage error, 5 no such volume, snapshot or server, 6 the name is taken,\n"
		   "130 a wait stopped by Ctrl-C (the work goes on). See peerctl(8).\n");
}

static void command_help(const struct command *c, FILE *f)
{
	char line[256];

	usage_line(c, line, sizeof(line));
	fprintf(f, "Usage: peerctl %s\n\n%s\n", line, c->details);
	if (c->opts[0].name) {
		fprintf(f, "\nOptions:\n");
		for (int i = 0; i < MAX_OPTS && c->opts[i].name; i++) {
			snprintf(line, sizeof(line), "--%s%s%s%s", c->opts[i].name,
				 !c->opts[i].arg	     ? ""
				 : opt_optional(&c->opts[i]) ? "["
							     : " ",
				 c->opts[i].arg ? c->opts[i].arg : "",
				 opt_optional(&c->opts[i]) ? "]" : "");
			fprintf(f, "  %-18s  ", line);
			print_indented(f, c->opts[i].help, 22);
			fputc('\n', f);
		}
	}
	fprintf(f, "\nExample%s:\n  ", strchr(c->examples, '\n') ? "s" : "");
	print_indented(f, c->examples, 2);
	fprintf(f,
		"\n\nGlobal options: -s PATH, --json, --timeout SEC, -v (see 'peerctl --help').\n");
}

static void group_help(const char *name, FILE *f)
{
	char line[256];

	fprintf(f, "Usage: peerctl %s COMMAND ...\n\nCommands:\n", name);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name))
			continue;
		usage_line(&commands[i], line, sizeof(line));
		fprintf(f, "  %s\n      %s\n", line, commands[i].summary);
	}
	fprintf(f, "\n'peerctl %s COMMAND --help' explains a command.\n", name);
}

/* ---- command line ---- */

/* Edit distance (insertions, deletions, substitutions, transpositions of
 * neighbours) between a and b, counted up to 3. */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[32][32];

	if (la >= 32 || lb >= 32)
		return 3;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb] < 3 ? d[la][lb] : 3;
}

/* The command word (group != NULL: the sub-command of group) closest to
 * word, if a typo away (distance 1, or 2 for words of 5 or more); else
 * NULL. */
static const char *closest(const char *group, const char *word)
{
	const char *best = NULL;
	int best_d = strlen(word) >= 5 ? 3 : 2;

	for (size_t k = 0; k < NCOMMANDS; k++) {
		const char *cand = group ? commands[k].sub : commands[k].name;
		int d;

		if (!cand || (group && strcmp(commands[k].name, group)))
			continue;
		d = distance(word, cand);
		if (d < best_d) {
			best_d = d;
			best = cand;
		}
	}
	return best;
}

static const char *timeout_arg; /* --timeout as given; checked after parsing */

static int is_help(const char *a)
{
	return !strcmp(a, "-h") || !strcmp(a, "--help");
}

/* Takes the value of option opt: inline after '=' or the next argument.
 * Returns it, or NULL after a usage error. */
static const char *option_value(const char *opt, const char *inline_val, const char *meta, int argc,
				char **argv, int *i)
{
	if (inline_val)
		return inline_val;
	if (*i + 1 >= argc) {
		peerctl_usage_error("option %s needs a value (%s)", opt, meta);
		return NULL;
	}
	return argv[++*i];
}

/* Handles argv[*i] if it is a global option other than help and version:
 * 1 handled, 0 not a global option, -1 usage error (printed). */
static int global_option(struct ctl *ctl, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);
	const char *val = eq ? eq + 1 : NULL;

	if (!strncmp(a, "-s", 2) && a[2]) { /* -sPATH */
		ctl->socket = a + 2;
		return 1;
	}
	if (!strcmp(a, "-s") || (n == 8 && !strncmp(a, "--socket", 8))) {
		ctl->socket = option_value("--socket", val, "PATH", argc, argv, i);
		return ctl->socket ? 1 : -1;
	}
	if (n == 9 && !strncmp(a, "--timeout", 9)) {
		timeout_arg = option_value("--timeout", val, "SEC", argc, argv, i);
		return timeout_arg ? 1 : -1;
	}
	if (!strcmp(a, "--json")) {
		ctl->json = 1;
		return 1;
	}
	if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
		pv_log_level = LOG_DEBUG;
		return 1;
	}
	return 0;
}

/* Checks argv[first..argc) against c: options, globals and positional
 * arguments. Returns -1 to go on, else an exit code (help was printed or a
 * usage error). */
static int parse_command(struct ctl *ctl, const struct command *c, int argc, char **argv, int first,
			 struct invocation *inv)
{
	int options_done = 0;

	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		int k, rc;

		if (options_done || a[0] != '-' || !a[1]) {
			if (inv->npos < MAX_POS)
				inv->pos[inv->npos] = a;
			inv->npos++;
			continue;
		}
		if (!strcmp(a, "--")) {
			options_done = 1;
			continue;
		}
		if (is_help(a)) {
			command_help(c, stdout);
			return PEERCTL_EXIT_OK;
		}
		/* the command's own options first: one may share a global's
		 * name (snapshot create --timeout) */
		for (k = 0; k < MAX_OPTS && c->opts[k].name; k++) {
			const char *eq = strchr(a, '=');
			size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);

			if (a[1] != '-' || strlen(c->opts[k].name) != n ||
			    strncmp(a + 2, c->opts[k].name, n))
				continue;
			if (!c->opts[k].arg) {
				if (eq)
					return peerctl_usage_error("option --%s takes no value",
								   c->opts[k].name);
				inv->opt[k] = "";
			} else if (opt_optional(&c->opts[k])) {
				inv->opt[k] = eq ? eq + 1 : "";
			} else {
				inv->opt[k] = option_value(a, eq ? eq + 1 : NULL, c->opts[k].arg,
							   argc, argv, &i);
				if (!inv->opt[k])
					return PEERCTL_EXIT_USAGE;
			}
			break;
		}
		if (k < MAX_OPTS && c->opts[k].name)
			continue;
		rc = global_option(ctl, argc, argv, &i);
		if (rc < 0)
			return PEERCTL_EXIT_USAGE;
		if (rc == 0)
			return peerctl_usage_error("unknown option '%s' for '%s%s%s'", SHOWN(a),
						   c->name, c->sub ? " " : "",
						   c->sub ? c->sub : "");
	}
	if (inv->npos < c->min_args || inv->npos > c->max_args) {
		char line[256];

		usage_line(c, line, sizeof(line));
		return peerctl_usage_error("%s arguments for '%s%s%s' (usage: peerctl %s)",
					   inv->npos < c->min_args ? "missing" : "too many",
					   c->name, c->sub ? " " : "", c->sub ? c->sub : "", line);
	}
	return -1;
}

int commands_run(struct ctl *ctl, int argc, char **argv)
{
	const struct command *c = NULL;
	struct invocation inv = {0};
	uint64_t timeout;
	int i, rc, has_sub = 0;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (is_help(argv[i])) {
			main_help(stdout);
			return PEERCTL_EXIT_OK;
		}
		if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
			printf("peerctl %s\n", PV_VERSION_STRING);
			return PEERCTL_EXIT_OK;
		}
		rc = global_option(ctl, argc, argv, &i);
		if (rc < 0)
			return PEERCTL_EXIT_USAGE;
		if (rc == 0)
			return peerctl_usage_error("unknown option '%s'", SHOWN(argv[i]));
	}
	if (i >= argc)
		return peerctl_usage_error("no command given");

	for (size_t k = 0; k < NCOMMANDS; k++) {
		if (strcmp(commands[k].name, argv[i]))
			continue;
		if (!commands[k].sub) {
			c = &commands[k];
			break;
		}
		has_sub = 1;
		if (i + 1 < argc && !strcmp(commands[k].sub, argv[i + 1])) {
			c = &commands[k];
			break;
		}
	}
	if (!c && !has_sub) {
		const char *near = closest(NULL, argv[i]);

		if (near)
			return peerctl_usage_error("unknown command '%s'; did you mean '%s'?",
						   SHOWN(argv[i]), near);
		return peerctl_usage_error("unknown command '%s'", SHOWN(argv[i]));
	}
	if (!c) {
		if (i + 1 < argc && is_help(argv[i + 1])) {
			group_help(argv[i], stdout);
			return PEERCTL_EXIT_OK;
		}
		if (i + 1 >= argc)
			return peerctl_usage_error("'%s' needs a command (see 'peerctl %s --help')",
						   SHOWN(argv[i]), SHOWN(argv[i]));
		if (closest(argv[i], argv[i + 1]))
			return peerctl_usage_error("unknown command '%s %s'; did you mean '%s %s'?",
						   SHOWN(argv[i]), SHOWN(argv[i + 1]), argv[i],
						   closest(argv[i], argv[i + 1]));
		return peerctl_usage_error("unknown command '%s %s'", SHOWN(argv[i]),
					   SHOWN(argv[i + 1]));
	}
	rc = parse_command(ctl, c, argc, argv, i + (c->sub ? 2 : 1), &inv);
	if (rc >= 0)
		return rc;

	if (timeout_arg) {
		if (pv_parse_u64(timeout_arg, 1, PEERCTL_MAX_TIMEOUT, &timeout) < 0) {
			peerctl_error("timeout '%s' is not a whole number of seconds from 1 to %d",
				      SHOWN(timeout_arg), PEERCTL_MAX_TIMEOUT);
			return PEERCTL_EXIT_ERROR;
		}
		ctl->timeout_s = (unsigned)timeout;
	}
	if (!*ctl->socket) {
		peerctl_error("the control socket path is empty (-s PATH)");
		return PEERCTL_EXIT_ERROR;
	}
	return c->run(ctl, c, &inv);
}

/* Value of c's option name in inv, or NULL when not given. */
static const char *opt_get(const struct command *c, const struct invocation *inv, const char *name)
{
	for (int k = 0; k < MAX_OPTS && c->opts[k].name; k++)
		if (!strcmp(c->opts[k].name, name))
			return inv->opt[k];
	return NULL;
}

/* ---- local validation (peerd checks all of it again) ---- */

/* A server id (a positive integer) from the command line; -1 after
 * printing. */
static int parse_id(const char *s, const char *what, uint64_t *id)
{
	if (pv_parse_u64(s, 1, UINT32_MAX, id) < 0) {
		peerctl_error("'%s' is not %s (a positive integer)", SHOWN(s), what);
		return -1;
	}
	return 0;
}

static int check_name(const char *name)
{
	char err[256];

	if (!pv_valid_name(name, err, sizeof(err))) {
		peerctl_error("%s", err);
		return -1;
	}
	return 0;
}

static int check_volume_size(const char *s, uint64_t *size)
{
	char err[256];

	if (pv_parse_size(s, size, err, sizeof(err)) < 0) {
		peerctl_error("%s", err);
		return -1;
	}
	if (*size > INT64_MAX) {
		peerctl_error("size '%s' is too large", SHOWN(s));
		return -1;
	}
	if (!pv_valid_volume_size(*size, UINT64_MAX, err, sizeof(err))) {
		peerctl_error("%s", err);
		return -1;
	}
	return 0;
}

static int check_page_size(const char *s, uint64_t *size)
{
	char err[256], lo[32], hi[32];

	if (pv_parse_size(s, size, err, sizeof(err)) < 0) {
		peerctl_error("page %s", err);
		return -1;
	}
	if (*size == 0 || *size % PV_SECTOR) {
		peerctl_error("page size '%s' must be a multiple of %u bytes greater than zero",
			      SHOWN(s), PV_SECTOR);
		return -1;
	}
	if (*size < PV_MIN_PAGE_SIZE || *size > PV_MAX_PAGE_SIZE) {
		peerctl_error("page size '%s' is outside %s .. %s", SHOWN(s),
			      pv_format_size(PV_MIN_PAGE_SIZE, lo, sizeof(lo)),
			      pv_format_size(PV_MAX_PAGE_SIZE, hi, sizeof(hi)));
		return -1;
	}
	return 0;
}

/* Parses "2,3" (the argument label: "--servers") into a new JSON array of
 * server ids; NULL after printing. */
static json_t *parse_servers(const char *label, const char *s)
{
	json_t *ids = json_array();
	const char *p = s;

	if (!ids) {
		peerctl_error("out of memory");
		return NULL;
	}
	for (;;) {
		size_t n = strcspn(p, ",");
		char tok[32];
		uint64_t id;
		size_t k;
		json_t *v;

		if (n == 0 || n >= sizeof(tok)) {
			peerctl_error("%s '%s' must be a comma-separated list of server ids "
				      "(example: 2,3)",
				      label, SHOWN(s));
			goto fail;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		if (pv_parse_u64(tok, 1, UINT32_MAX, &id) < 0) {
			peerctl_error("%s '%s': '%s' is not a server id (a positive integer)",
				      label, SHOWN(s), SHOWN(tok));
			goto fail;
		}
		json_array_foreach(ids, k, v)
		{
			if ((uint64_t)json_integer_value(v) == id) {
				peerctl_error("%s '%s' names server %s twice", label, SHOWN(s),
					      tok);
				goto fail;
			}
		}
		if (json_array_size(ids) >= MAX_SERVERS) {
			peerctl_error("%s '%s' names more than %d servers", label, SHOWN(s),
				      MAX_SERVERS);
			goto fail;
		}
		json_array_append_new(ids, json_integer((json_int_t)id));
		p += n;
		if (!*p)
			break;
		p++;
	}
	return ids;
fail:
	json_decref(ids);
	return NULL;
}

/* ---- output ---- */

/* Aligned columns; a NULL head[0] means no header line. */
struct table {
	size_t ncols;
	const char *head[TABLE_COLS];
	int right[TABLE_COLS]; /* right-align this column */
	char **cells;	       /* nrows * ncols strings */
	size_t nrows, cap;
};

static void table_add(struct table *t, ...)
{
	va_list ap;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		char **cells = realloc(t->cells, cap * t->ncols * sizeof(*cells));

		if (!cells) {
			peerctl_error("out of memory");
			exit(PEERCTL_EXIT_ERROR);
		}
		t->cells = cells;
		t->cap = cap;
	}
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		char *d = strdup(s ? s : "-");

		if (!d) {
			peerctl_error("out of memory");
			exit(PEERCTL_EXIT_ERROR);
		}
		t->cells[t->nrows * t->ncols + i] = d;
	}
	va_end(ap);
	t->nrows++;
}

static void print_row(const struct table *t, const size_t *width, const char *const *row)
{
	for (size_t i = 0; i < t->ncols; i++) {
		int w = (int)width[i];

		if (i + 1 == t->ncols && !t->right[i])
			printf("%s\n", row[i]);
		else
			printf(t->right[i] ? "%*s%s" : "%-*s%s", w, row[i],
			       i + 1 == t->ncols ? "\n" : "  ");
	}
}

/* Frees the table's rows without printing them. */
static void table_free(struct table *t)
{
	for (size_t r = 0; r < t->nrows * t->ncols; r++)
		free(t->cells[r]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* Prints the table and frees its rows. */
static void table_flush(struct table *t)
{
	size_t width[TABLE_COLS] = {0};

	for (size_t i = 0; i < t->ncols; i++) {
		if (t->head[0])
			width[i] = strlen(t->head[i]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t n = strlen(t->cells[r * t->ncols + i]);

			if (n > width[i])
				width[i] = n;
		}
	}
	if (t->head[0])
		print_row(t, width, t->head);
	for (size_t r = 0; r < t->nrows; r++)
		print_row(t, width, (const char *const *)&t->cells[r * t->ncols]);
	table_free(t);
}

static int get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static const char *num_str(json_t *o, const char *key, char *buf, size_t len)
{
	uint64_t v;

	if (get_u64(o, key, &v) < 0)
		return "-";
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

static const char *size_str(json_t *o, const char *key, char *buf, size_t len)
{
	uint64_t v;

	if (get_u64(o, key, &v) < 0)
		return "-";
	return pv_format_size(v, buf, len);
}

static const char *text_str(json_t *o, const char *key)
{
	json_t *j = json_object_get(o, key);

	return json_is_string(j) && json_string_length(j) ? json_string_value(j) : "-";
}

/* "1,2,3" from an array of ids; empty when the array is empty. */
static const char *ids_str(json_t *arr, const char *empty, char *buf, size_t len)
{
	size_t i, n = 0;
	json_t *v;

	if (!json_is_array(arr))
		return "-";
	if (!json_array_size(arr))
		return empty;
	buf[0] = '\0';
	json_array_foreach(arr, i, v)
	{
		if (n + 24 >= len) {
			snprintf(buf + n, len - n, ",...");
			break;
		}
		if (json_is_integer(v))
			n += snprintf(buf + n, len - n, "%s%lld", i ? "," : "",
				      (long long)json_integer_value(v));
		else
			n += snprintf(buf + n, len - n, "%s?", i ? "," : "");
	}
	return buf;
}

/* Any JSON value as one line for a key: value listing. */
static const char *any_str(json_t *v, char *buf, size_t len)
{
	char *dump;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_value(v);
	case JSON_INTEGER:
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	case JSON_REAL:
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	case JSON_TRUE:
		return "yes";
	case JSON_FALSE:
		return "no";
	case JSON_NULL:
		return "-";
	default:
		dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(buf, len, "%s", dump ? dump : "?");
		free(dump);
		return buf;
	}
}

static const char *time_str(json_t *o, const char *key, char *buf, size_t len)
{
	uint64_t v;
	time_t t;
	struct tm tm;

	if (get_u64(o, key, &v) < 0 || v == 0)
		return "-";
	t = (time_t)v;
	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm))
		return num_str(o, key, buf, len);
	return buf;
}

/* "1h 2m 3s" for s seconds. */
static const char *secs_text(uint64_t s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%llud %lluh %llum", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh %llum %llus", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60), (unsigned long long)(s % 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum %llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
	return buf;
}

static const char *duration_str(json_t *o, const char *key, char *buf, size_t len)
{
	uint64_t s;

	if (get_u64(o, key, &s) < 0)
		return "-";
	return secs_text(s, buf, len);
}

static void kv_add(struct table *kv, const char *label, const char *value)
{
	char key[160];

	snprintf(key, sizeof(key), "%s:", label);
	table_add(kv, key, value);
}

/* Adds the fields of o that are not in known, so that a newer peerd's
 * additions still show. */
static void kv_add_rest(struct table *kv, json_t *o, const char *const *known)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v)
	{
		char label[128], buf[FIELD_LEN];
		int skip = 0;

		for (const char *const *k = known; *k && !skip; k++)
			skip = !strcmp(*k, key);
		if (skip)
			continue;
		snprintf(label, sizeof(label), "%s", key);
		for (char *p = label; *p; p++)
			if (*p == '_')
				*p = ' ';
		kv_add(kv, label, any_str(v, buf, sizeof(buf)));
	}
}

static void print_json(json_t *result)
{
	char *text = json_dumps(result, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

	if (!text) {
		peerctl_error("out of memory");
		return;
	}
	printf("%s\n", text);
	free(text);
}

/* "VERSION (hash HHHHHHHHHHHH)" of an object with catalog_version and
 * catalog_hash (the hash's first 12 digits; "!" after a diverged one). */
static const char *catalog_str(json_t *o, char *buf, size_t len)
{
	char v[32];
	const char *hash = text_str(o, "catalog_hash");

	num_str(o, "catalog_version", v, sizeof(v));
	if (!*hash || !strcmp(hash, "-"))
		snprintf(buf, len, "%s", v);
	else
		snprintf(buf, len, "%s (hash %.12s)%s", v, hash,
			 json_is_true(json_object_get(o, "catalog_diverged")) ? " !" : "");
	return buf;
}

/* ---- handlers ---- */

static int do_status(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	static const char *const known[] = {"server_id",       "address",      "version",
					    "catalog_version", "group_id",     "uptime_s",
					    "data_dir",	       "catalog_hash", NULL};
	struct table kv = {.ncols = 2};
	char b1[FIELD_LEN], b2[FIELD_LEN];
	json_t *r;
	const char *group;

	if (peerctl_call(ctl, "status", NULL, &r) < 0)
		return PEERCTL_EXIT_ERROR;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	group = text_str(r, "group_id");
	kv_add(&kv, "server id", num_str(r, "server_id", b1, sizeof(b1)));
	kv_add(&kv, "address", text_str(r, "address"));
	kv_add(&kv, "version", any_str(json_object_get(r, "version"), b2, sizeof(b2)));
	kv_add(&kv, "group",
	       strcmp(group, "-") ? group
				  : "none (use 'peerctl group init' or 'peerctl group join')");
	kv_add(&kv, "catalog version", catalog_str(r, b1, sizeof(b1)));
	kv_add(&kv, "uptime", duration_str(r, "uptime_s", b1, sizeof(b1)));
	kv_add(&kv, "data dir", text_str(r, "data_dir"));
	kv_add_rest(&kv, r, known);
	table_flush(&kv);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_volume_create(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *name = inv->pos[0], *page_arg = opt_get(c, inv, "page-size"),
		   *servers_arg = opt_get(c, inv, "servers");
	uint64_t size, page_size = PV_DEFAULT_PAGE_SIZE, pages;
	char b1[64], b2[64];
	json_t *args, *servers = NULL, *r;
	int ret = PEERCTL_EXIT_ERROR, rc;

	if (check_name(name) < 0 || check_volume_size(inv->pos[1], &size) < 0)
		return PEERCTL_EXIT_ERROR;
	if (page_arg && check_page_size(page_arg, &page_size) < 0)
		return PEERCTL_EXIT_ERROR;
	if (servers_arg && !(servers = parse_servers("--servers", servers_arg)))
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)size);
	if (!args) {
		json_decref(servers);
		peerctl_error("out of memory");
		return PEERCTL_EXIT_ERROR;
	}
	if (page_arg)
		json_object_set_new(args, "page_size", json_integer((json_int_t)page_size));
	if (servers)
		json_object_set_new(args, "servers", servers);
	rc = peerctl_call(ctl, "volume.create", args, &r);
	if (rc < 0) {
		ret = -rc;
		goto out;
	}
	if (ctl->json) {
		print_json(r);
	} else {
		get_u64(r, "size", &size);
		get_u64(r, "page_size", &page_size);
		if (get_u64(r, "pages", &pages) < 0)
			pages = page_size ? (size + page_size - 1) / page_size : 0;
		printf("created volume %s (%s, %llu page%s of %s)\n", name,
		       pv_format_size(size, b1, sizeof(b1)), (unsigned long long)pages,
		       pages == 1 ? "" : "s", pv_format_size(page_size, b2, sizeof(b2)));
	}
	json_decref(r);
	ret = PEERCTL_EXIT_OK;
out:
	json_decref(args);
	return ret;
}

/* The member of group (a group.show result) with id, or NULL. */
static json_t *find_member(json_t *group, uint64_t id)
{
	json_t *m;
	size_t i;

	json_array_foreach(json_object_get(group, "members"), i, m)
	{
		json_t *j = json_object_get(m, "id");

		if (json_is_integer(j) && (uint64_t)json_integer_value(j) == id)
			return m;
	}
	return NULL;
}

/* Whether member id of group is down (a member not in the group counts as
 * down: its pages are out of reach). */
static int member_down(json_t *group, uint64_t id)
{
	json_t *m = find_member(group, id);
	const char *state = m ? json_string_value(json_object_get(m, "state")) : NULL;

	return !state || !strcmp(state, "down");
}

/* A volume's state from its holders (servers owning >= 1 page) and the
 * group's member states: "ok", or "degraded: server 2 down". */
static const char *volume_state(json_t *vol, json_t *group, char *buf, size_t len)
{
	json_t *h;
	size_t i, n = 0;

	snprintf(buf, len, "ok");
	json_array_foreach(json_object_get(vol, "holders"), i, h)
	{
		if (!json_is_integer(h) || !member_down(group, (uint64_t)json_integer_value(h)))
			continue;
		n += snprintf(buf + n, len - n, "%s%lld", n ? "," : "degraded: server ",
			      (long long)json_integer_value(h));
		if (n >= len)
			break;
	}
	if (n && n + 6 < len)
		snprintf(buf + n, len - n, " down");
	return buf;
}

static int by_name(const void *a, const void *b)
{
	const char *na = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *nb = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return strcmp(na ? na : "", nb ? nb : "");
}

/* Sorts a JSON array of objects by their "name" in place. */
static void sort_by_name(json_t *arr)
{
	size_t n = json_array_size(arr), i;
	json_t **items;

	if (n < 2 || !(items = calloc(n, sizeof(*items))))
		return;
	for (i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(arr, i));
	qsort(items, n, sizeof(*items), by_name);
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, items[i]);
	free(items);
}

static int do_volume_list(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	struct table t = {
	    .ncols = 8,
	    .head = {"NAME", "SIZE", "PAGE", "PAGES", "WRITTEN", "SERVERS", "OPEN", "STATE"},
	    .right = {0, 1, 1, 1, 1, 0, 1, 0}};
	json_t *r, *vols, *v, *group = NULL;
	size_t i;

	if (peerctl_call(ctl, "volume.list", NULL, &r) < 0)
		return PEERCTL_EXIT_ERROR;
	if (!ctl->json && peerctl_call(ctl, "group.show", NULL, &group) < 0) {
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	sort_by_name(json_object_get(r, "volumes"));
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	vols = json_object_get(r, "volumes");
	if (!json_is_array(vols)) {
		peerctl_error("malformed reply from peerd: no \"volumes\" list");
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	json_array_foreach(vols, i, v)
	{
		char size[32], page[32], pages[32], written[32], servers[FIELD_LEN], open[32];

		char state[64];

		table_add(&t, text_str(v, "name"), size_str(v, "size", size, sizeof(size)),
			  size_str(v, "page_size", page, sizeof(page)),
			  num_str(v, "pages", pages, sizeof(pages)),
			  num_str(v, "pages_written", written, sizeof(written)),
			  ids_str(json_object_get(v, "servers"), "all", servers, sizeof(servers)),
			  num_str(v, "open_clients", open, sizeof(open)),
			  volume_state(v, group, state, sizeof(state)));
	}
	if (json_array_size(vols))
		table_flush(&t);
	else
		printf("no volumes\n");
	json_decref(group);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* Per owner: pages, bytes and runs of the routing table's runs (vol's
 * "routing"), one row each, ascending by owner. */
static void print_routing_summary(json_t *vol, json_t *runs)
{
	struct table t = {
	    .ncols = 4, .head = {"OWNER", "PAGES", "BYTES", "RUNS"}, .right = {1, 1, 1, 1}};
	struct {
		uint64_t id, pages, runs;
	} own[64];
	uint64_t page_size = 0, size = 0, npages, first, last, id;
	size_t n = 0, i, k;
	json_t *run;

	get_u64(vol, "page_size", &page_size);
	get_u64(vol, "size", &size);
	npages = page_size ? (size + page_size - 1) / page_size : 0;
	json_array_foreach(runs, i, run)
	{
		if (get_u64(run, "first_page", &first) < 0 ||
		    get_u64(run, "last_page", &last) < 0 || get_u64(run, "owner", &id) < 0 ||
		    last < first)
			continue;
		for (k = 0; k < n && own[k].id != id; k++)
			;
		if (k == n) {
			if (n == 64)
				continue;
			own[n].id = id;
			own[n].pages = own[n].runs = 0;
			n++;
		}
		own[k].pages += last - first + 1;
		own[k].runs++;
	}
	for (size_t a = 1; a < n; a++) /* ascending by owner */
		for (size_t b = a; b > 0 && own[b - 1].id > own[b].id; b--) {
			__typeof__(own[0]) x = own[b];

			own[b] = own[b - 1];
			own[b - 1] = x;
		}
	for (k = 0; k < n; k++) {
		char ids[32], pages[64], bytes[32], nruns[32];
		uint64_t b = own[k].pages * page_size;

		if (b > size) /* the last page may be short */
			b = size;
		snprintf(ids, sizeof(ids), "%llu", (unsigned long long)own[k].id);
		snprintf(pages, sizeof(pages), "%llu (%.0f%%)", (unsigned long long)own[k].pages,
			 npages ? 100.0 * own[k].pages / npages : 0.0);
		snprintf(nruns, sizeof(nruns), "%llu", (unsigned long long)own[k].runs);
		table_add(&t, ids, pages, pv_format_size(b, bytes, sizeof(bytes)), nruns);
	}
	if (n)
		table_flush(&t);
}

/* "2 -> 3, piece 4/16 (copying), 12.3 MB/s" of a move object. */
static const char *move_text(json_t *mv, char *buf, size_t len)
{
	uint64_t from = 0, to = 0, piece = 0, pieces = 0, kbps = 0;
	const char *stuck = text_str(mv, "stuck");

	get_u64(mv, "from", &from);
	get_u64(mv, "to", &to);
	get_u64(mv, "piece", &piece);
	get_u64(mv, "pieces", &pieces);
	get_u64(mv, "rate_kbps", &kbps);
	snprintf(buf, len, "%llu -> %llu, piece %llu/%llu (%s), %.1f MB/s%s%s",
		 (unsigned long long)from, (unsigned long long)to, (unsigned long long)piece,
		 (unsigned long long)pieces, text_str(mv, "state"), kbps / 1024.0,
		 strcmp(stuck, "-") ? ", stuck: " : "", strcmp(stuck, "-") ? stuck : "");
	return buf;
}

static void print_routing(json_t *vol, int full)
{
	struct table t = {
	    .ncols = 4, .head = {"PAGES", "OWNER", "EPOCH", "MOVING"}, .right = {0, 1, 1, 0}};
	json_t *runs = json_object_get(vol, "routing"), *run, *holders;
	char owners[FIELD_LEN];
	uint32_t seen[64];
	size_t i, nseen = 0, n = 0;

	if (!json_is_array(runs)) {
		printf("\nrouting: not in the reply\n");
		return;
	}
	json_array_foreach(runs, i, run)
	{
		char pages[64], owner[32], epoch[32], moving[FIELD_LEN] = "-";
		json_t *mv = json_object_get(run, "moving");
		uint64_t first, last, id;

		if (get_u64(run, "first_page", &first) < 0 || get_u64(run, "last_page", &last) < 0)
			snprintf(pages, sizeof(pages), "?");
		else if (first == last)
			snprintf(pages, sizeof(pages), "%llu", (unsigned long long)first);
		else
			snprintf(pages, sizeof(pages), "%llu-%llu", (unsigned long long)first,
				 (unsigned long long)last);
		if (json_is_object(mv))
			move_text(mv, moving, sizeof(moving));
		table_add(&t, pages, num_str(run, "owner", owner, sizeof(owner)),
			  num_str(run, "epoch", epoch, sizeof(epoch)), moving);
		if (get_u64(run, "owner", &id) == 0 && nseen < 64) {
			size_t k = 0;

			while (k < nseen && seen[k] != id)
				k++;
			if (k == nseen)
				seen[nseen++] = (uint32_t)id;
		}
	}
	printf("\n");
	if (!json_array_size(runs)) {
		printf("routing table: empty\n");
	} else if (full) {
		table_flush(&t);
	} else {
		table_free(&t);
		print_routing_summary(vol, runs);
		printf("(%zu runs of pages; --routing=full lists them)\n", json_array_size(runs));
		json_array_foreach(runs, i, run)
		{
			char moving[FIELD_LEN];
			json_t *mv = json_object_get(run, "moving");

			if (json_is_object(mv))
				printf("page %s moving: %s\n",
				       num_str(run, "first_page", owners, 32),
				       move_text(mv, moving, sizeof(moving)));
		}
	}

	/* The connection table: servers holding at least one page. */
	holders = json_object_get(vol, "holders");
	if (json_is_array(holders)) {
		ids_str(holders, "", owners, sizeof(owners));
	} else {
		owners[0] = '\0';
		for (size_t a = 1; a < nseen; a++) /* sort the few owners seen */
			for (size_t b = a; b > 0 && seen[b - 1] > seen[b]; b--) {
				uint32_t x = seen[b];

				seen[b] = seen[b - 1];
				seen[b - 1] = x;
			}
		for (size_t k = 0; k < nseen && n + 16 < sizeof(owners); k++)
			n +=
			    snprintf(owners + n, sizeof(owners) - n, "%s%u", k ? "," : "", seen[k]);
	}
	if (*owners)
		printf("connection table: servers %s\n", owners);
	else
		printf("connection table: no server holds a page\n");
}

/* volume show's "open by": "host1 (client 1a2b...), ..." for the clients
 * that have the volume open through the server asked; "-" for none. */
static const char *open_by_str(json_t *by, char *buf, size_t len)
{
	size_t i, n = 0;
	json_t *e;

	buf[0] = '\0';
	json_array_foreach(by, i, e)
	{
		n += (size_t)snprintf(buf + n, len - n, "%s%s (client %s)", i ? ", " : "",
				      text_str(e, "host"), text_str(e, "client"));
		if (n >= len)
			break;
	}
	return buf[0] ? buf : "-";
}

static int do_volume_show(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	static const char *const known[] = {"name",
					    "id",
					    "size",
					    "page_size",
					    "pages",
					    "pages_written",
					    "bytes_allocated",
					    "servers",
					    "holders",
					    "open_clients",
					    "open_by",
					    "created",
					    "routing",
					    NULL};
	struct table kv = {.ncols = 2};
	char b1[FIELD_LEN], b2[FIELD_LEN];
	const char *routing_opt = opt_get(c, inv, "routing");
	int routing = routing_opt != NULL, full = routing_opt && !strcmp(routing_opt, "full");
	json_t *args, *r;
	uint64_t size;
	int rc;

	if (routing_opt && *routing_opt && !full)
		return peerctl_usage_error("--routing takes no value or =full, not '%s'",
					   SHOWN(routing_opt));
	if (check_name(inv->pos[0]) < 0)
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:s}", "name", inv->pos[0]);
	if (args && routing)
		json_object_set_new(args, "routing", json_true());
	rc = args ? peerctl_call(ctl, "volume.show", args, &r) : -PEERCTL_EXIT_ERROR;
	if (rc < 0) {
		json_decref(args);
		return -rc;
	}
	json_decref(args);
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	kv_add(&kv, "name", text_str(r, "name"));
	kv_add(&kv, "id", num_str(r, "id", b1, sizeof(b1)));
	if (get_u64(r, "size", &size) == 0) {
		snprintf(b2, sizeof(b2), "%s (%llu bytes)", pv_format_size(size, b1, sizeof(b1)),
			 (unsigned long long)size);
		kv_add(&kv, "size", b2);
	} else {
		kv_add(&kv, "size", "-");
	}
	kv_add(&kv, "page size", size_str(r, "page_size", b1, sizeof(b1)));
	kv_add(&kv, "pages", num_str(r, "pages", b1, sizeof(b1)));
	kv_add(&kv, "pages written", num_str(r, "pages_written", b1, sizeof(b1)));
	kv_add(&kv, "allocated", size_str(r, "bytes_allocated", b1, sizeof(b1)));
	kv_add(&kv, "servers", ids_str(json_object_get(r, "servers"), "all", b1, sizeof(b1)));
	kv_add(&kv, "holders", ids_str(json_object_get(r, "holders"), "none", b1, sizeof(b1)));
	kv_add(&kv, "open clients", num_str(r, "open_clients", b1, sizeof(b1)));
	kv_add(&kv, "open by", open_by_str(json_object_get(r, "open_by"), b1, sizeof(b1)));
	kv_add(&kv, "created", time_str(r, "created", b1, sizeof(b1)));
	kv_add_rest(&kv, r, known);
	table_flush(&kv);
	if (routing)
		print_routing(r, full);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_volume_delete(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	json_t *args, *r;
	int rc;

	if (check_name(inv->pos[0]) < 0)
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:s}", "name", inv->pos[0]);
	if (args && opt_get(c, inv, "force"))
		json_object_set_new(args, "force", json_true());
	if (args && opt_get(c, inv, "with-snapshots"))
		json_object_set_new(args, "with_snapshots", json_true());
	rc = args ? peerctl_call(ctl, "volume.delete", args, &r) : -PEERCTL_EXIT_ERROR;
	if (rc < 0) {
		json_decref(args);
		return -rc;
	}
	json_decref(args);
	if (ctl->json)
		print_json(r);
	else
		printf("deleted volume %s\n", inv->pos[0]);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* Prints a group object: "group ID, catalog version N (hash H)" and the
 * members, each with the catalog version and hash it holds. */
static void print_group(json_t *g)
{
	struct table t = {.ncols = 7,
			  .head = {"ID", "ADDRESS", "WEIGHT", "STATE", "PAGES", "BYTES", "CATALOG"},
			  .right = {1, 0, 1, 0, 1, 1, 0}};
	json_t *members = json_object_get(g, "members"), *m;
	char b1[64];
	size_t i;

	if (!strcmp(text_str(g, "group_id"), "-"))
		printf("not in a group (use 'peerctl group init' or 'peerctl group join "
		       "ADDRESS')\n");
	else
		printf("group %s, catalog version %s\n", text_str(g, "group_id"),
		       catalog_str(g, b1, sizeof(b1)));
	if (json_is_true(json_object_get(g, "catalog_diverged")))
		printf("CATALOG DIVERGED: members hold different catalogs under one version "
		       "(marked '!'); catalog changes are refused until an administrator "
		       "resolves it (see peerd(8), --resync-catalog)\n");
	json_array_foreach(members, i, m)
	{
		char id[32], weight[32], pages[32], bytes[32], cat[FIELD_LEN], state[48];

		snprintf(state, sizeof(state), "%s%s", text_str(m, "state"),
			 json_is_true(json_object_get(m, "draining")) ? ",draining" : "");
		table_add(&t, num_str(m, "id", id, sizeof(id)), text_str(m, "address"),
			  num_str(m, "weight", weight, sizeof(weight)), state,
			  num_str(m, "pages", pages, sizeof(pages)),
			  size_str(m, "bytes", bytes, sizeof(bytes)),
			  catalog_str(m, cat, sizeof(cat)));
	}
	if (json_array_size(members))
		table_flush(&t);
}

/* peerctl_call, printing the result with --json: 0, or minus the exit
 * status. */
static int group_call(struct ctl *ctl, const char *cmd, json_t *args, json_t **r)
{
	int rc = peerctl_call(ctl, cmd, args, r);

	if (rc < 0)
		return rc;
	if (ctl->json) {
		print_json(*r);
		json_decref(*r);
		*r = NULL;
	}
	return 0;
}

static int do_group_init(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	json_t *r, *members, *m, *self = NULL;
	char b1[32];
	size_t i;

	if (group_call(ctl, "group.init", NULL, &r) < 0)
		return PEERCTL_EXIT_ERROR;
	if (!r)
		return PEERCTL_EXIT_OK;
	members = json_object_get(r, "members");
	json_array_foreach(members, i, m)
	{
		if (!strcmp(text_str(m, "state"), "self"))
			self = m;
	}
	/* every server is a group of one from its first start: init changes
	 * nothing, it says so */
	if (self)
		printf("this server (id %s, %s) is the first and only member of group %s; "
		       "other servers join it with 'peerctl group join %s'\n",
		       num_str(self, "id", b1, sizeof(b1)), text_str(self, "address"),
		       text_str(r, "group_id"), text_str(self, "address"));
	else
		printf("this server is the only member of group %s\n", text_str(r, "group_id"));
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* Whether s is printable ASCII without spaces, as an endpoint is (anything
 * else, a byte that is not UTF-8 included, could not even go into JSON). */
static int endpoint_chars(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return 0;
	return 1;
}

static int do_group_join(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *addr = inv->pos[0], *sep = strstr(addr, "://");
	json_t *args, *r;
	char b1[32];
	size_t n;
	int rc;

	if (!sep || sep == addr || !sep[3] || !endpoint_chars(addr)) {
		peerctl_error("address '%s' is not a ZeroMQ endpoint (example: tcp://10.0.0.1:%d)",
			      SHOWN(addr), PV_DEFAULT_PORT);
		return PEERCTL_EXIT_ERROR;
	}
	/* peerd waits a little less than we do, so its answer reaches us */
	args = json_pack("{s:s,s:i}", "address", addr, "timeout",
			 ctl->timeout_s > 3 ? (int)ctl->timeout_s - 2 : 1);
	if (!args) {
		peerctl_error("out of memory");
		return PEERCTL_EXIT_ERROR;
	}
	rc = group_call(ctl, "group.join", args, &r);
	json_decref(args);
	if (rc < 0)
		return PEERCTL_EXIT_ERROR;
	if (!r)
		return PEERCTL_EXIT_OK;
	n = json_array_size(json_object_get(r, "members"));
	printf("joined group %s through %s (%zu member%s, catalog version %s)\n",
	       text_str(r, "group_id"), addr, n, n == 1 ? "" : "s",
	       num_str(r, "catalog_version", b1, sizeof(b1)));
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_group_show(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	json_t *r;

	if (group_call(ctl, "group.show", NULL, &r) < 0)
		return PEERCTL_EXIT_ERROR;
	if (r) {
		print_group(r);
		json_decref(r);
	}
	return PEERCTL_EXIT_OK;
}

/* group remove ID [--force] and group leave ID */
static int do_group_remove(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	int leave = !strcmp(c->sub, "leave");
	uint64_t id;
	json_t *args, *r, *lost, *l;
	char b1[32];
	size_t i;
	int rc;

	if (parse_id(inv->pos[0], "a server id", &id) < 0)
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:I}", "id", (json_int_t)id);
	if (args && !leave && opt_get(c, inv, "force"))
		json_object_set_new(args, "force", json_true());
	rc = args ? group_call(ctl, leave ? "group.leave" : "group.remove", args, &r)
		  : -PEERCTL_EXIT_ERROR;
	if (rc < 0) {
		json_decref(args);
		return -rc;
	}
	json_decref(args);
	if (!r)
		return PEERCTL_EXIT_OK;
	printf("server %llu %s the group (catalog version %s)\n", (unsigned long long)id,
	       leave ? "left" : "removed from", num_str(r, "catalog_version", b1, sizeof(b1)));
	lost = json_object_get(r, "lost");
	json_array_foreach(lost, i, l)
	{
		printf("lost: volume %s, %s pages\n", text_str(l, "volume"),
		       num_str(l, "pages", b1, sizeof(b1)));
	}
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* ---- health ---- */

#define HEALTH_OK   0
#define HEALTH_WARN 1
#define HEALTH_ERR  2

static const char *const health_names[] = {"HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"};

struct health {
	int level;
	json_t *checks; /* [{"severity", "message"}] */
};

static void health_add(struct health *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void health_add(struct health *h, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (level > h->level)
		h->level = level;
	json_array_append_new(h->checks,
			      json_pack("{s:s,s:s}", "severity",
					level == HEALTH_ERR ? "error" : "warning", "message", msg));
}

/* Pages of volume name on members that are down, out of *total. */
static int unreachable_pages(struct ctl *ctl, const char *name, json_t *group, uint64_t *lost,
			     uint64_t *total)
{
	json_t *args = json_pack("{s:s,s:b}", "name", name, "routing", 1), *r, *run;
	size_t i;

	*lost = *total = 0;
	if (!args || peerctl_call(ctl, "volume.show", args, &r) < 0) {
		json_decref(args);
		return -1;
	}
	json_decref(args);
	json_array_foreach(json_object_get(r, "routing"), i, run)
	{
		uint64_t first, last, owner;

		if (get_u64(run, "first_page", &first) < 0 ||
		    get_u64(run, "last_page", &last) < 0 || get_u64(run, "owner", &owner) < 0 ||
		    last < first)
			continue;
		*total += last - first + 1;
		if (member_down(group, owner))
			*lost += last - first + 1;
	}
	json_decref(r);
	return 0;
}

static void health_members(struct health *h, json_t *group, uint64_t *free_up, uint64_t *stored)
{
	json_t *m;
	size_t i;

	*free_up = *stored = 0;
	json_array_foreach(json_object_get(group, "members"), i, m)
	{
		uint64_t id = 0, free = 0, bytes = 0;
		char b1[32];

		get_u64(m, "id", &id);
		get_u64(m, "free", &free);
		get_u64(m, "bytes", &bytes);
		*stored += bytes;
		if (member_down(group, id)) {
			health_add(h, HEALTH_ERR,
				   "server %llu (%s) is down: its pages cannot be read or written",
				   (unsigned long long)id, text_str(m, "address"));
			continue;
		}
		*free_up += free;
		if (free < (1ull << 30) && free < (bytes + free) / 20)
			health_add(h, HEALTH_WARN, "server %llu is almost full: %s free",
				   (unsigned long long)id, pv_format_size(free, b1, sizeof(b1)));
	}
}

static int do_health(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	struct health h = {.checks = json_array()};
	json_t *group, *vols, *v, *out;
	uint64_t free_up, stored, provisioned = 0;
	char b1[32], b2[32], b3[32];
	size_t i;

	if (peerctl_call(ctl, "group.show", NULL, &group) < 0)
		return PEERCTL_EXIT_ERROR;
	if (peerctl_call(ctl, "volume.list", NULL, &vols) < 0) {
		json_decref(group);
		return PEERCTL_EXIT_ERROR;
	}
	health_members(&h, group, &free_up, &stored);
	sort_by_name(json_object_get(vols, "volumes"));
	json_array_foreach(json_object_get(vols, "volumes"), i, v)
	{
		uint64_t size = 0, lost, total;
		char state[64];

		get_u64(v, "size", &size);
		provisioned += size;
		if (!strcmp(volume_state(v, group, state, sizeof(state)), "ok") ||
		    unreachable_pages(ctl, text_str(v, "name"), group, &lost, &total) < 0 || !lost)
			continue;
		health_add(
		    &h, HEALTH_ERR,
		    "volume %s: %llu of its %llu pages (%.0f%%) are on servers that are down "
		    "and cannot be read or written",
		    text_str(v, "name"), (unsigned long long)lost, (unsigned long long)total,
		    100.0 * lost / total);
	}
	if (provisioned > stored + free_up)
		health_add(&h, HEALTH_WARN,
			   "overcommitted: the volumes provision %s, more than the %s stored plus "
			   "the %s free on the servers that are up (volumes are thin: writes fail "
			   "when a server fills up; add servers or free space)",
			   pv_format_size(provisioned, b1, sizeof(b1)),
			   pv_format_size(stored, b2, sizeof(b2)),
			   pv_format_size(free_up, b3, sizeof(b3)));
	out = json_pack("{s:s,s:o,s:I,s:I,s:I}", "status", health_names[h.level], "checks",
			h.checks, "provisioned", (json_int_t)provisioned, "stored",
			(json_int_t)stored, "free", (json_int_t)free_up);
	if (ctl->json) {
		print_json(out);
	} else {
		json_t *chk;

		printf("%s\n", health_names[h.level]);
		json_array_foreach(h.checks, i, chk) printf("  %s\n", text_str(chk, "message"));
		printf("space: %s provisioned in %zu volumes, %s stored, %s free on the servers "
		       "that are up\n",
		       pv_format_size(provisioned, b1, sizeof(b1)),
		       json_array_size(json_object_get(vols, "volumes")),
		       pv_format_size(stored, b2, sizeof(b2)),
		       pv_format_size(free_up, b3, sizeof(b3)));
	}
	json_decref(out);
	json_decref(vols);
	json_decref(group);
	return h.level == HEALTH_OK	? PEERCTL_EXIT_OK
	       : h.level == HEALTH_WARN ? PEERCTL_EXIT_HEALTH_WARN
					: PEERCTL_EXIT_HEALTH_ERR;
}

/* ---- long waits: progress, Ctrl-C ---- */

#define EXIT_INTERRUPTED 130   /* Ctrl-C stopped a wait (the work goes on) */
#define PAGE_MOVE_WINDOW 4     /* page move of a range: pages asked at a time */
#define PAGE_POLL_MS	 200   /* page move: page.show of each page this often */
#define WAIT_POLL_MS	 1000  /* evacuate, set-servers, set-weight: polled this often */
#define PAGE_GONE_MS	 5000  /* a page accepted but seen neither moving nor moved */
#define STALL_MS	 60000 /* no progress and no move under way: say so */
#define PROGRESS_LINE_MS 5000  /* not a terminal: a progress line this often */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* From now on Ctrl-C sets interrupted instead of ending peerctl (a call to
 * peerd under way still completes). */
static void catch_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
}

/* Sleeps ms milliseconds, less when interrupted; 1 unless interrupted. */
static int nap(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	if (!interrupted)
		nanosleep(&ts, NULL);
	return !interrupted;
}

/* Progress of a long wait: a bar redrawn in place on a terminal, a line
 * every PROGRESS_LINE_MS otherwise. */
struct progress {
	char what[160];
	const char *unit;
	uint64_t start_ms, line_ms;
	int tty, drawn;
};

static void progress_start(struct progress *p, const char *unit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void progress_start(struct progress *p, const char *unit, const char *fmt, ...)
{
	va_list ap;

	memset(p, 0, sizeof(*p));
	va_start(ap, fmt);
	vsnprintf(p->what, sizeof(p->what), fmt, ap);
	va_end(ap);
	p->unit = unit;
	p->start_ms = pv_now_ms();
	p->tty = isatty(STDOUT_FILENO);
	catch_sigint();
}

/* Seconds since p started. */
static uint64_t progress_secs(const struct progress *p)
{
	return (pv_now_ms() - p->start_ms) / 1000;
}

/* done of total units so far; extra: a few words more, or "". */
static void progress_show(struct progress *p, uint64_t done, uint64_t total, const char *extra)
{
	static const char bar[] = "##############################";
	uint64_t now = pv_now_ms(), ms = now - p->start_ms;
	int width = (int)sizeof(bar) - 1,
	    fill = total ? (int)(width * (done > total ? total : done) / total) : 0;
	char eta[48] = "", t[32];

	if (done && total > done && ms >= 2000)
		snprintf(eta, sizeof(eta), ", about %s left",
			 secs_text((total - done) * ms / done / 1000 + 1, t, sizeof(t)));
	if (p->tty) {
		printf("\r%s [%.*s%*s] %llu/%llu %s%s%s%s\033[K", p->what, fill, bar, width - fill,
		       "", (unsigned long long)done, (unsigned long long)total, p->unit,
		       *extra ? ", " : "", extra, eta);
		p->drawn = 1;
	} else if (!p->line_ms || now - p->line_ms >= PROGRESS_LINE_MS) {
		printf("%s: %llu of %llu %s%s%s%s\n", p->what, (unsigned long long)done,
		       (unsigned long long)total, p->unit, *extra ? ", " : "", extra, eta);
		p->line_ms = now;
	}
	fflush(stdout);
}

/* Ends the bar's line (before anything else is printed). */
static void progress_break(struct progress *p)
{
	if (p->drawn)
		printf("\n");
	p->drawn = 0;
}

/* Ctrl-C during p: what goes on, printed; the exit code. */
static int progress_interrupted(struct progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int progress_interrupted(struct progress *p, const char *fmt, ...)
{
	va_list ap;

	progress_break(p);
	printf("stopped waiting: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return EXIT_INTERRUPTED;
}

/* ---- page move, page show ---- */

/* "5" or "0-63" into first, last; -1 after printing. */
static int parse_pages(const char *s, uint64_t *first, uint64_t *last)
{
	const char *dash = strchr(s, '-');
	char a[32];

	if (dash && (size_t)(dash - s) < sizeof(a)) {
		memcpy(a, s, (size_t)(dash - s));
		a[dash - s] = '\0';
	}
	if (dash ? (size_t)(dash - s) >= sizeof(a) || pv_parse_u64(a, 0, INT64_MAX, first) < 0 ||
		       pv_parse_u64(dash + 1, 0, INT64_MAX, last) < 0
		 : pv_parse_u64(s, 0, INT64_MAX, first) < 0) {
		peerctl_error(
		    "'%s' is not a page (a number from 0) or a range of pages (FIRST-LAST)",
		    SHOWN(s));
		return -1;
	}
	if (!dash)
		*last = *first;
	if (*last < *first) {
		peerctl_error("page range '%s' ends before it starts", SHOWN(s));
		return -1;
	}
	return 0;
}

/* Asks peerd to move pages [first, last] of vol to server to: 0 and its
 * answer in *r, or minus the exit status (printed). */
static int page_move_call(struct ctl *ctl, const char *vol, uint64_t first, uint64_t last,
			  uint64_t to, uint64_t piece, json_t **r)
{
	json_t *args = json_pack("{s:s,s:I,s:I,s:I}", "volume", vol, "first", (json_int_t)first,
				 "last", (json_int_t)last, "to", (json_int_t)to);
	int rc;

	if (!args) {
		peerctl_error("out of memory");
		return -PEERCTL_EXIT_ERROR;
	}
	if (piece)
		json_object_set_new(args, "piece_size", json_integer((json_int_t)piece));
	rc = peerctl_call(ctl, "page.move", args, r);
	json_decref(args);
	return rc;
}

/* The page.show answer for page of vol: 0 and *r, or minus the exit status. */
static int page_show_call(struct ctl *ctl, const char *vol, uint64_t page, json_t **r)
{
	json_t *args = json_pack("{s:s,s:I}", "volume", vol, "page", (json_int_t)page);
	int rc = args ? peerctl_call(ctl, "page.show", args, r) : -PEERCTL_EXIT_ERROR;

	json_decref(args);
	return rc;
}

/* A page a page move waits for. */
struct moving_page {
	uint64_t page;
	uint64_t seen_ms;	/* asked, or last seen moving */
	uint64_t piece, pieces; /* as last seen */
};

/* One look at page pg of vol moving to server to: 1 it is there, 0 not
 * yet, -1 its move ended elsewhere or peerd did not answer (printed). */
static int page_poll(struct ctl *ctl, const char *vol, struct moving_page *pg, uint64_t to,
		     struct progress *pr)
{
	json_t *r, *mv;
	uint64_t owner = 0;
	int done;

	if (page_show_call(ctl, vol, pg->page, &r) < 0)
		return -1;
	get_u64(r, "owner", &owner);
	mv = json_object_get(r, "moving");
	/* punching: the target owns it, the source frees its copy */
	done = owner == to && (!json_is_object(mv) || !strcmp(text_str(mv, "state"), "punching"));
	if (!done && json_is_object(mv)) {
		pg->seen_ms = pv_now_ms();
		get_u64(mv, "piece", &pg->piece);
		get_u64(mv, "pieces", &pg->pieces);
	} else if (!done && pv_now_ms() - pg->seen_ms > PAGE_GONE_MS) {
		progress_break(pr);
		peerctl_error("page %llu of %s: its move ended without reaching server %llu (its "
			      "owner is server %llu; see that server's log)",
			      (unsigned long long)pg->page, vol, (unsigned long long)to,
			      (unsigned long long)owner);
		json_decref(r);
		return -1;
	}
	json_decref(r);
	return done;
}

static int do_page_move(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *vol = inv->pos[0], *to_arg = opt_get(c, inv, "to"),
		   *piece_arg = opt_get(c, inv, "piece");
	struct moving_page out[PAGE_MOVE_WINDOW];
	uint64_t first, last, to, piece = 0, next, moved = 0, already = 0, failed = 0, n = 0;
	size_t nout = 0;
	struct progress pr;
	char b1[32], b2[64];
	json_t *r;
	int rc, ret = PEERCTL_EXIT_OK;

	if (!to_arg)
		return peerctl_usage_error(
		    "'page move' needs --to ID (the server the pages go to)");
	if (check_name(vol) < 0 || parse_pages(inv->pos[1], &first, &last) < 0 ||
	    parse_id(to_arg, "a server id", &to) < 0)
		return PEERCTL_EXIT_ERROR;
	if (piece_arg) {
		char err[256];

		if (pv_parse_size(piece_arg, &piece, err, sizeof(err)) < 0 || !piece ||
		    piece % PV_SECTOR || piece > PV_MAX_IO) {
			peerctl_error("piece size '%s' must be a multiple of %u bytes, at most %s",
				      SHOWN(piece_arg), PV_SECTOR, "8M");
			return PEERCTL_EXIT_ERROR;
		}
	}
	if (opt_get(c, inv, "async") || ctl->json) {
		rc = page_move_call(ctl, vol, first, last, to, piece, &r);
		if (rc < 0)
			return -rc;
		if (ctl->json) {
			print_json(r);
		} else {
			get_u64(r, "pages", &n);
			get_u64(r, "already", &already);
			printf("accepted: %llu page%s of %s move%s to server %llu (%llu already "
			       "there); "
			       "'peerctl migrations' shows the moves\n",
			       (unsigned long long)n, n == 1 ? "" : "s", vol, n == 1 ? "s" : "",
			       (unsigned long long)to, (unsigned long long)already);
		}
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	progress_start(&pr, first == last ? "pieces" : "pages", "%s page%s %s to server %llu", vol,
		       first == last ? "" : "s", inv->pos[1], (unsigned long long)to);
	for (next = first;;) {
		/* at most PAGE_MOVE_WINDOW pages asked at a time */
		while (nout < PAGE_MOVE_WINDOW && next <= last && !failed && !interrupted) {
			rc = page_move_call(ctl, vol, next, next, to, piece, &r);
			if (rc < 0) {
				if (first == last)
					return -rc;
				failed++;
				ret = -rc;
				break;
			}
			n = 0;
			get_u64(r, "pages", &n);
			json_decref(r);
			if (!n && first == last) {
				printf("page %llu of %s is already on server %llu\n",
				       (unsigned long long)first, vol, (unsigned long long)to);
				return PEERCTL_EXIT_OK;
			}
			if (n)
				out[nout++] =
				    (struct moving_page){.page = next, .seen_ms = pv_now_ms()};
			else
				already++;
			next++;
		}
		for (size_t i = 0; i < nout;) {
			rc = page_poll(ctl, vol, &out[i], to, &pr);
			if (rc == 0) {
				i++;
				continue;
			}
			if (rc < 0) {
				failed++;
				ret = PEERCTL_EXIT_ERROR;
			} else {
				moved++;
			}
			out[i] = out[--nout];
		}
		if (first == last && nout)
			progress_show(&pr, out[0].piece, out[0].pieces, "");
		else if (first != last)
			progress_show(&pr, moved + already + failed, last - first + 1, "");
		if (!nout && (next > last || failed))
			break;
		if (!nap(PAGE_POLL_MS)) {
			snprintf(b2, sizeof(b2), "; pages %llu-%llu were not asked to move",
				 (unsigned long long)next, (unsigned long long)last);
			return progress_interrupted(
			    &pr,
			    "%llu page%s moved; the %zu move%s under way go%s on in the servers "
			    "('peerctl migrations' shows them)%s",
			    (unsigned long long)moved, moved == 1 ? "" : "s", nout,
			    nout == 1 ? "" : "s", nout == 1 ? "es" : "", next <= last ? b2 : "");
		}
	}
	progress_break(&pr);
	secs_text(progress_secs(&pr), b1, sizeof(b1));
	if (first == last && moved)
		printf("moved page %llu of %s to server %llu in %s\n", (unsigned long long)first,
		       vol, (unsigned long long)to, b1);
	else if (first != last)
		printf(
		    "moved %llu of pages %s of %s to server %llu in %s (%llu already there%s%s)\n",
		    (unsigned long long)moved, inv->pos[1], vol, (unsigned long long)to, b1,
		    (unsigned long long)already, failed ? ", stopped after a failure" : "",
		    failed && next <= last ? ": the rest were not asked" : "");
	return ret;
}

static int do_page_show(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	static const char *const known[] = {"volume", "page", "owner", "epoch", "moving", NULL};
	struct table kv = {.ncols = 2};
	uint64_t page;
	char b1[FIELD_LEN];
	json_t *r, *mv;
	int rc;

	if (check_name(inv->pos[0]) < 0)
		return PEERCTL_EXIT_ERROR;
	if (pv_parse_u64(inv->pos[1], 0, INT64_MAX, &page) < 0) {
		peerctl_error("'%s' is not a page (a number from 0)", SHOWN(inv->pos[1]));
		return PEERCTL_EXIT_ERROR;
	}
	rc = page_show_call(ctl, inv->pos[0], page, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	mv = json_object_get(r, "moving");
	kv_add(&kv, "volume", text_str(r, "volume"));
	kv_add(&kv, "page", num_str(r, "page", b1, sizeof(b1)));
	kv_add(&kv, "owner", num_str(r, "owner", b1, sizeof(b1)));
	kv_add(&kv, "epoch", num_str(r, "epoch", b1, sizeof(b1)));
	kv_add(&kv, "moving", json_is_object(mv) ? move_text(mv, b1, sizeof(b1)) : "no");
	if (json_is_object(mv))
		kv_add(&kv, "move started", time_str(mv, "started", b1, sizeof(b1)));
	kv_add_rest(&kv, r, known);
	table_flush(&kv);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* ---- migrations ---- */

/* Prints a migration.list result as a table. */
static void print_migrations(json_t *r)
{
	struct table t = {
	    .ncols = 9,
	    .head = {"VOLUME", "PAGE", "FROM", "TO", "PIECE", "MB/s", "STATE", "STARTED", "STUCK"},
	    .right = {0, 1, 1, 1, 1, 1, 0, 1, 0}};
	json_t *list = json_object_get(r, "migrations"), *m;
	uint64_t now = pv_wall_s();
	char b1[32];
	size_t i;

	printf("%zu move%s in progress; limit %s MB/s out of each server%s\n",
	       json_array_size(list), json_array_size(list) == 1 ? "" : "s",
	       num_str(r, "max_mbps", b1, sizeof(b1)),
	       json_is_true(json_object_get(r, "paused"))
		   ? "; PAUSED ('peerctl migrate resume' continues them)"
		   : "");
	json_array_foreach(list, i, m)
	{
		char page[32], from[32], to[32], piece[48], rate[32], started[48];
		uint64_t k = 0, n = 0, kbps = 0, at = 0;

		get_u64(m, "piece", &k);
		get_u64(m, "pieces", &n);
		get_u64(m, "rate_kbps", &kbps);
		snprintf(piece, sizeof(piece), "%llu/%llu", (unsigned long long)k,
			 (unsigned long long)n);
		snprintf(rate, sizeof(rate), "%.1f", kbps / 1024.0);
		if (get_u64(m, "started", &at) < 0 || !at)
			snprintf(started, sizeof(started), "-");
		else
			snprintf(started, sizeof(started), "%s ago",
				 secs_text(now > at ? now - at : 0, b1, sizeof(b1)));
		table_add(&t, text_str(m, "volume"), num_str(m, "page", page, sizeof(page)),
			  num_str(m, "from", from, sizeof(from)), num_str(m, "to", to, sizeof(to)),
			  piece, rate, text_str(m, "state"), started, text_str(m, "stuck"));
	}
	if (json_array_size(list))
		table_flush(&t);
}

static int do_migrations(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	int watch = opt_get(c, inv, "watch") != NULL, tty = isatty(STDOUT_FILENO), rc;
	json_t *r;

	if (watch)
		catch_sigint();
	do {
		rc = peerctl_call(ctl, "migration.list", NULL, &r);
		if (rc < 0)
			return -rc;
		if (watch && tty && !ctl->json) {
			time_t t = time(NULL);
			char when[32];

			strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
			printf("\033[H\033[J%s  (every 1 s; Ctrl-C stops)\n", when);
		} else if (watch && !ctl->json) {
			printf("\n");
		}
		if (ctl->json)
			print_json(r);
		else
			print_migrations(r);
		fflush(stdout);
		json_decref(r);
	} while (watch && nap(1000));
	return PEERCTL_EXIT_OK;
}

/* ---- server evacuate ---- */

/* Pages member id owns as group (a group.show result) says: 1 and *pages,
 * *draining; 0 if it is not a member. */
static int member_pages(json_t *group, uint64_t id, uint64_t *pages, int *draining)
{
	json_t *m = find_member(group, id);

	*pages = 0;
	if (!m)
		return 0;
	get_u64(m, "pages", pages);
	*draining = json_is_true(json_object_get(m, "draining"));
	return 1;
}

/* "12.3 MB/s" of the moves out of server from (0: any), or "PAUSED ...",
 * from a migration.list result; *count: how many. */
static const char *moves_rate(json_t *r, uint64_t from, uint64_t *count, char *buf, size_t len)
{
	uint64_t kbps = 0, f, k;
	json_t *m;
	size_t i;

	*count = 0;
	json_array_foreach(json_object_get(r, "migrations"), i, m)
	{
		if (from && (get_u64(m, "from", &f) < 0 || f != from))
			continue;
		(*count)++;
		if (get_u64(m, "rate_kbps", &k) == 0)
			kbps += k;
	}
	if (json_is_true(json_object_get(r, "paused")))
		snprintf(buf, len, "moves PAUSED ('peerctl migrate resume')");
	else if (*count)
		snprintf(buf, len, "%.1f MB/s", kbps / 1024.0);
	else
		buf[0] = '\0';
	return buf;
}

/* Waits until server id owns no pages (it had pages when asked). */
static int wait_evacuated(struct ctl *ctl, uint64_t id, uint64_t pages)
{
	uint64_t total = pages, left = pages, last_left = pages, nmoves;
	uint64_t progress_ms = pv_now_ms();
	int draining = 1, hinted = 0, rc;
	struct progress pr;
	json_t *g, *ml;
	char extra[96], t[32];

	progress_start(&pr, "pages moved", "evacuating server %llu", (unsigned long long)id);
	for (;;) {
		if ((rc = peerctl_call(ctl, "group.show", NULL, &g)) < 0)
			return -rc;
		if (!member_pages(g, id, &left, &draining)) {
			json_decref(g);
			progress_break(&pr);
			peerctl_error("server %llu is no longer a member of the group",
				      (unsigned long long)id);
			return PEERCTL_EXIT_ERROR;
		}
		json_decref(g);
		if (!left)
			break;
		if (!draining) {
			progress_break(&pr);
			peerctl_error(
			    "the evacuation of server %llu was cancelled; it still owns %llu "
			    "pages",
			    (unsigned long long)id, (unsigned long long)left);
			return PEERCTL_EXIT_ERROR;
		}
		if ((rc = peerctl_call(ctl, "migration.list", NULL, &ml)) < 0)
			return -rc;
		moves_rate(ml, id, &nmoves, extra, sizeof(extra));
		if (left > total)
			total = left;
		if (left != last_left || nmoves) {
			last_left = left;
			progress_ms = pv_now_ms();
		} else if (!hinted && pv_now_ms() - progress_ms > STALL_MS &&
			   !json_is_true(json_object_get(ml, "paused"))) {
			progress_break(&pr);
			printf(
			    "no page has left server %llu for %s and no move is under way: are "
			    "the volumes' other servers up? (peerctl group show; the log of server "
			    "%llu says why)\n",
			    (unsigned long long)id, secs_text(STALL_MS / 1000, t, sizeof(t)),
			    (unsigned long long)id);
			hinted = 1;
		}
		json_decref(ml);
		progress_show(&pr, total - left, total, extra);
		if (!nap(WAIT_POLL_MS))
			return progress_interrupted(
			    &pr,
			    "server %llu still owns %llu pages; its evacuation goes on in the "
			    "servers ('peerctl group show' shows what it owns; 'peerctl server "
			    "evacuate %llu --cancel' stops it)",
			    (unsigned long long)id, (unsigned long long)left,
			    (unsigned long long)id);
	}
	progress_show(&pr, total, total, "");
	progress_break(&pr);
	printf("server %llu owns no pages now (%llu moved off it in %s); it may leave the group: "
	       "peerctl group leave %llu\n",
	       (unsigned long long)id, (unsigned long long)total,
	       secs_text(progress_secs(&pr), t, sizeof(t)), (unsigned long long)id);
	return PEERCTL_EXIT_OK;
}

static int do_server_evacuate(struct ctl *ctl, const struct command *c,
			      const struct invocation *inv)
{
	int cancel = opt_get(c, inv, "cancel") != NULL, draining = 0, rc;
	uint64_t id, pages = 0;
	json_t *args, *r, *g;

	if (parse_id(inv->pos[0], "a server id", &id) < 0)
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:I,s:b}", "id", (json_int_t)id, "cancel", cancel);
	rc = args ? peerctl_call(ctl, "server.evacuate", args, &r) : -PEERCTL_EXIT_ERROR;
	json_decref(args);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	json_decref(r);
	if ((rc = peerctl_call(ctl, "group.show", NULL, &g)) < 0)
		return -rc;
	member_pages(g, id, &pages, &draining);
	json_decref(g);
	if (cancel) {
		printf("server %llu: evacuation cancelled; it keeps the %llu pages it owns now (a "
		       "move under way finishes)\n",
		       (unsigned long long)id, (unsigned long long)pages);
		return PEERCTL_EXIT_OK;
	}
	if (!pages) {
		printf("server %llu is draining and owns no pages; it may leave the group: peerctl "
		       "group leave %llu\n",
		       (unsigned long long)id, (unsigned long long)id);
		return PEERCTL_EXIT_OK;
	}
	if (opt_get(c, inv, "async")) {
		printf("server %llu is draining: its %llu pages move off it in the background "
		       "('peerctl group show' shows what it still owns; 'peerctl server evacuate "
		       "%llu --cancel' stops it)\n",
		       (unsigned long long)id, (unsigned long long)pages, (unsigned long long)id);
		return PEERCTL_EXIT_OK;
	}
	return wait_evacuated(ctl, id, pages);
}

/* ---- volume set-servers, group set-weight: waiting for placement ---- */

/* Pages of vol (a volume.show result with routing) that are not where
 * placement puts them: on a server not allowed, or beyond a server's share
 * by weight among the allowed ones that are up and not draining (group: a
 * group.show result; pv_apportion in the volume's server order, as peerd's
 * placement_tick). *moving: its pages in transit. */
static uint64_t misplaced(json_t *vol, json_t *group, uint64_t *moving)
{
	json_t *servers = json_object_get(vol, "servers"), *run, *s;
	uint32_t ids[64], weights[64];
	uint64_t desired[64], owned[64] = {0}, npages = 0, excess = 0;
	size_t n = 0, i, k;

	json_array_foreach(servers, i, s)
	{
		json_t *m = find_member(group, (uint64_t)json_integer_value(s));
		uint64_t w = 1;

		if (n == 64)
			break;
		ids[n] = (uint32_t)json_integer_value(s);
		get_u64(m, "weight", &w);
		weights[n] =
		    !m || member_down(group, ids[n]) || json_is_true(json_object_get(m, "draining"))
			? 0
			: (uint32_t)(w ? w : 1);
		n++;
	}
	get_u64(vol, "pages", &npages);
	pv_apportion(npages, weights, n, desired);
	*moving = 0;
	json_array_foreach(json_object_get(vol, "routing"), i, run)
	{
		uint64_t first, last, owner;

		if (get_u64(run, "first_page", &first) < 0 ||
		    get_u64(run, "last_page", &last) < 0 || get_u64(run, "owner", &owner) < 0 ||
		    last < first)
			continue;
		*moving += json_is_object(json_object_get(run, "moving"));
		for (k = 0; k < n && ids[k] != owner; k++)
			;
		if (k < n)
			owned[k] += last - first + 1;
		else
			excess += last - first + 1;
	}
	for (k = 0; k < n; k++)
		excess += owned[k] > desired[k] ? owned[k] - desired[k] : 0;
	return excess;
}

/* Pages of the volumes named in names (an array of strings) still to move,
 * and in transit; 0, or minus the exit status. */
static int placement_left(struct ctl *ctl, json_t *names, uint64_t *left, uint64_t *moving)
{
	json_t *g, *v, *name;
	size_t i;
	int rc;

	*left = *moving = 0;
	if ((rc = peerctl_call(ctl, "group.show", NULL, &g)) < 0)
		return rc;
	json_array_foreach(names, i, name)
	{
		json_t *args =
		    json_pack("{s:s,s:b}", "name", json_string_value(name), "routing", 1);
		uint64_t m = 0;

		rc = args ? peerctl_call(ctl, "volume.show", args, &v) : -PEERCTL_EXIT_ERROR;
		json_decref(args);
		if (rc == -PEERCTL_EXIT_NOT_FOUND)
			continue; /* deleted meanwhile */
		if (rc < 0)
			break;
		*left += misplaced(v, g, &m);
		*moving += m;
		json_decref(v);
		rc = 0;
	}
	json_decref(g);
	return rc;
}

/* Waits until the pages of the volumes in names sit where placement puts
 * them; what: "volume vol1" for the messages. */
static int wait_placement(struct ctl *ctl, const char *what, json_t *names)
{
	uint64_t total = 0, left, last_left = 0, moving, progress_ms = pv_now_ms();
	struct progress pr;
	char extra[64], t[32];
	int rc, hinted = 0;

	progress_start(&pr, "pages placed", "%s", what);
	for (int first = 1;; first = 0) {
		if ((rc = placement_left(ctl, names, &left, &moving)) < 0)
			return -rc;
		if (first && !left && !moving) {
			printf("%s: every page already sits where it should; nothing to move\n",
			       what);
			return PEERCTL_EXIT_OK;
		}
		if (left > total)
			total = left;
		if (!left && !moving)
			break;
		if (left != last_left || moving) {
			last_left = left;
			progress_ms = pv_now_ms();
		} else if (!hinted && pv_now_ms() - progress_ms > STALL_MS) {
			progress_break(&pr);
			printf("%s: no page has moved for %s and none is moving: are moves paused, "
			       "or servers down? ('peerctl migrations', 'peerctl group show'; the "
			       "servers' logs say why)\n",
			       what, secs_text(STALL_MS / 1000, t, sizeof(t)));
			hinted = 1;
		}
		snprintf(extra, sizeof(extra), "%llu moving", (unsigned long long)moving);
		progress_show(&pr, total - left, total, moving ? extra : "");
		if (!nap(WAIT_POLL_MS))
			return progress_interrupted(
			    &pr,
			    "%llu pages still to move; placement goes on in the servers ('peerctl "
			    "migrations' shows the moves, 'peerctl migrate pause' pauses them)",
			    (unsigned long long)left);
	}
	progress_show(&pr, total, total, "");
	progress_break(&pr);
	printf("%s: every page sits where it should (%llu moved in %s)\n", what,
	       (unsigned long long)total, secs_text(progress_secs(&pr), t, sizeof(t)));
	return PEERCTL_EXIT_OK;
}

static int do_volume_set_servers(struct ctl *ctl, const struct command *c,
				 const struct invocation *inv)
{
	const char *name = inv->pos[0];
	json_t *servers, *args, *r, *names;
	char what[96], b1[FIELD_LEN];
	int rc;

	if (check_name(name) < 0 || !(servers = parse_servers("servers", inv->pos[1])))
		return PEERCTL_EXIT_ERROR;
	args = json_pack("{s:s,s:o}", "volume", name, "servers", servers);
	rc = args ? peerctl_call(ctl, "volume.set_servers", args, &r) : -PEERCTL_EXIT_ERROR;
	json_decref(args);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	printf("volume %s: allowed servers %s\n", name,
	       ids_str(json_object_get(r, "servers"), "-", b1, sizeof(b1)));
	json_decref(r);
	if (opt_get(c, inv, "async")) {
		printf("its pages move in the background ('peerctl migrations' shows the moves)\n");
		return PEERCTL_EXIT_OK;
	}
	names = json_pack("[s]", name);
	snprintf(what, sizeof(what), "volume %s", name);
	rc = names ? wait_placement(ctl, what, names) : PEERCTL_EXIT_ERROR;
	json_decref(names);
	return rc;
}

static int do_group_set_weight(struct ctl *ctl, const struct command *c,
			       const struct invocation *inv)
{
	uint64_t id, weight;
	json_t *args, *r, *names;
	char what[64];
	int rc;

	if (parse_id(inv->pos[0], "a server id", &id) < 0)
		return PEERCTL_EXIT_ERROR;
	if (pv_parse_u64(inv->pos[1], 1, 1000, &weight) < 0) {
		peerctl_error("weight '%s' is not a whole number from 1 to 1000",
			      SHOWN(inv->pos[1]));
		return PEERCTL_EXIT_ERROR;
	}
	args = json_pack("{s:I,s:I}", "id", (json_int_t)id, "weight", (json_int_t)weight);
	rc = args ? peerctl_call(ctl, "group.set_weight", args, &r) : -PEERCTL_EXIT_ERROR;
	json_decref(args);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	names = json_incref(json_object_get(r, "volumes"));
	json_decref(r);
	printf("server %llu: weight %llu; %zu volume%s may hold pages on it\n",
	       (unsigned long long)id, (unsigned long long)weight, json_array_size(names),
	       json_array_size(names) == 1 ? "" : "s");
	if (opt_get(c, inv, "async") || !json_array_size(names)) {
		if (json_array_size(names))
			printf("their pages move in the background ('peerctl migrations' shows the "
			       "moves)\n");
		json_decref(names);
		return PEERCTL_EXIT_OK;
	}
	snprintf(what, sizeof(what), "weight of server %llu", (unsigned long long)id);
	rc = wait_placement(ctl, what, names);
	json_decref(names);
	return rc;
}

/* ---- set, migrate pause/resume ---- */

/* "60s", "2m", "1h" or "90": seconds into *s (1..86400). */
static int parse_interval(const char *text, uint64_t *s)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-')
		return -1;
	if (!strcmp(end, "m"))
		mult = 60;
	else if (!strcmp(end, "h"))
		mult = 3600;
	else if (*end && strcmp(end, "s"))
		return -1;
	if (v < 1 || v > 86400 / mult)
		return -1;
	*s = v * mult;
	return 0;
}

static int do_set(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	static const char *const keys[] = {"migrate.max-mbps", "balance.threshold",
					   "balance.interval"};
	const char *key = inv->pos[0];
	uint64_t value = 0;
	double x = 0;
	json_t *args, *r;
	char b1[32], *end;
	size_t k;
	int rc;

	for (k = 0; k < 3 && strcmp(key, keys[k]); k++)
		;
	if (k == 3) {
		for (k = 0; k < 3; k++)
			if (distance(key, keys[k]) < 3)
				return peerctl_usage_error(
				    "unknown setting '%s'; did you mean '%s'?", SHOWN(key),
				    keys[k]);
		return peerctl_usage_error(
		    "unknown setting '%s' (settings: migrate.max-mbps, balance.threshold, "
		    "balance.interval)",
		    SHOWN(key));
	}
	if (k == 0 && pv_parse_u64(inv->pos[1], 0, 100000, &value) < 0) {
		peerctl_error(
		    "%s '%s' is not a whole number of MB/s from 0 (the default) to 100000", key,
		    SHOWN(inv->pos[1]));
		return PEERCTL_EXIT_ERROR;
	}
	if (k == 1) {
		x = strtod(inv->pos[1], &end);
		if (end == inv->pos[1] || *end || !(x >= 0.01 && x <= 10)) {
			peerctl_error("%s '%s' is not a number from 0.01 to 10", key,
				      SHOWN(inv->pos[1]));
			return PEERCTL_EXIT_ERROR;
		}
	}
	if (k == 2 && parse_interval(inv->pos[1], &value) < 0) {
		peerctl_error("%s '%s' is not a time from 1s to 24h (e.g. 60s, 5m)", key,
			      SHOWN(inv->pos[1]));
		return PEERCTL_EXIT_ERROR;
	}
	args = k == 1 ? json_pack("{s:s,s:f}", "key", key, "value", x)
		      : json_pack("{s:s,s:I}", "key", key, "value", (json_int_t)value);
	rc = args ? group_call(ctl, "config.set", args, &r) : -PEERCTL_EXIT_ERROR;
	json_decref(args);
	if (rc < 0)
		return -rc;
	if (r && k == 0)
		printf("%s = %s MB/s out of each server%s\n", key,
		       num_str(r, "max_mbps", b1, sizeof(b1)), value ? "" : " (the default)");
	else if (r && k == 1)
		printf("%s = %.2f (a server over its fair share by %.0f%% sheds a page)\n", key, x,
		       x * 100);
	else if (r)
		printf("%s = %llu s\n", key, (unsigned long long)value);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_migrate(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	int pause = !strcmp(c->sub, "pause"), rc;
	json_t *r;

	rc = group_call(ctl, pause ? "migrate.pause" : "migrate.resume", NULL, &r);
	if (rc < 0)
		return -rc;
	if (r && pause)
		printf("page moves paused: none starts, and those under way stop before their next "
		       "piece; 'peerctl migrate resume' continues them\n");
	else if (r)
		printf("page moves resumed\n");
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* ---- load, top, balance ---- */

static double real_of(json_t *o, const char *key)
{
	json_t *j = json_object_get(o, key);

	return json_is_number(j) ? json_number_value(j) : 0;
}

static const char *fmt_real(double v, int prec, char *buf, size_t len)
{
	snprintf(buf, len, "%.*f", prec, v);
	return buf;
}

static const char *fmt_pct(double v, char *buf, size_t len)
{
	snprintf(buf, len, "%.0f%%", v * 100);
	return buf;
}

static const char *fmt_us(double us, char *buf, size_t len)
{
	if (us >= 1000)
		snprintf(buf, len, "%.1f ms", us / 1000);
	else
		snprintf(buf, len, "%.0f us", us);
	return buf;
}

static void print_load_servers(json_t *r)
{
	struct table t = {.ncols = 10,
			  .head = {"SERVER", "READ/s", "WRITE/s", "READ MB/s", "WRITE MB/s", "P99",
				   "SHARE", "FAIR", "CLIENTS", "PAGES"},
			  .right = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};
	json_t *s;
	size_t i;

	json_array_foreach(json_object_get(r, "servers"), i, s)
	{
		char id[48], a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32], k[32];
		int figures = json_is_true(json_object_get(s, "figures"));

		snprintf(id, sizeof(id), "%s%s", num_str(s, "id", k, sizeof(k)),
			 !json_is_true(json_object_get(s, "up"))	? " (down)"
			 : json_is_true(json_object_get(s, "draining")) ? " (draining)"
									: "");
		if (!figures) {
			table_add(&t, id, "-", "-", "-", "-", "-", "-", "-", "-",
				  num_str(s, "pages_owned", k, sizeof(k)));
			continue;
		}
		table_add(&t, id, fmt_real(real_of(s, "read_iops"), 0, a, sizeof(a)),
			  fmt_real(real_of(s, "write_iops"), 0, b, sizeof(b)),
			  fmt_real(real_of(s, "read_mbps"), 1, c, sizeof(c)),
			  fmt_real(real_of(s, "write_mbps"), 1, d, sizeof(d)),
			  fmt_us(real_of(s, "p99_us"), e, sizeof(e)),
			  fmt_pct(real_of(s, "share"), f, sizeof(f)),
			  fmt_pct(real_of(s, "fair_share"), g, sizeof(g)),
			  num_str(s, "clients", h, sizeof(h)),
			  num_str(s, "pages_owned", k, sizeof(k)));
	}
	table_flush(&t);
}

static int by_load(const void *a, const void *b)
{
	double x = real_of(*(json_t *const *)a, "load"), y = real_of(*(json_t *const *)b, "load");

	return x < y ? 1 : x > y ? -1 : 0;
}

/* The elements of arr (of volume vol, unless NULL), by load, hottest first;
 * at most max. Returns how many in out. */
static size_t hottest(json_t *arr, const char *vol, json_t **out, size_t max)
{
	size_t i, n = 0, total = json_array_size(arr);
	json_t *e, **all = calloc(total + 1, sizeof(*all));

	if (!all)
		return 0;
	json_array_foreach(arr, i, e) if (!vol || !strcmp(text_str(e, "volume"), vol)) all[n++] = e;
	qsort(all, n, sizeof(*all), by_load);
	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof(*out));
	free(all);
	return n;
}

/* The host client id (16 hex digits) reported from, in any server's list
 * of clients of r; "" if none. */
static const char *client_host(json_t *r, const char *id)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(r, "clients"), i, c)
	{
		if (!strcmp(text_str(c, "client"), id) && strcmp(text_str(c, "host"), "-"))
			return text_str(c, "host");
	}
	return "";
}

/* "1a2b3c4d (host), ..." from a page's clients: the first 8 hex digits of
 * each id and its host when known; "-" for none. */
static const char *page_clients_str(json_t *r, json_t *page, char *buf, size_t len)
{
	json_t *ids = json_object_get(page, "clients"), *v;
	size_t i, n = 0;

	if (!json_array_size(ids))
		return "-";
	buf[0] = '\0';
	json_array_foreach(ids, i, v)
	{
		const char *id = json_is_string(v) ? json_string_value(v) : "?";
		const char *host = client_host(r, id);

		if (n + 1 >= len)
			break;
		n += snprintf(buf + n, len - n, "%s%.8s%s%s%s", i ? ", " : "", id,
			      host[0] ? " (" : "", host, host[0] ? ")" : "");
	}
	return buf;
}

static void print_load_pages(json_t *r, const char *vol, size_t max)
{
	struct table t = {.ncols = 9,
			  .head = {"VOLUME", "PAGE", "OWNER", "READ/s", "WRITE/s", "MB/s", "SEQ",
				   "SERVED BY", "CLIENTS"},
			  .right = {0, 1, 1, 1, 1, 1, 1, 1, 0}};
	json_t *top[256];
	size_t n = hottest(json_object_get(r, "pages"), vol, top, max < 256 ? max : 256);

	for (size_t i = 0; i < n; i++) {
		char a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[160];

		table_add(&t, text_str(top[i], "volume"), num_str(top[i], "page", a, sizeof(a)),
			  num_str(top[i], "owner", b, sizeof(b)),
			  fmt_real(real_of(top[i], "read_iops"), 0, c, sizeof(c)),
			  fmt_real(real_of(top[i], "write_iops"), 0, d, sizeof(d)),
			  fmt_real(real_of(top[i], "read_mbps") + real_of(top[i], "write_mbps"), 1,
				   e, sizeof(e)),
			  fmt_pct(real_of(top[i], "seq"), f, sizeof(f)),
			  num_str(top[i], "server", g, sizeof(g)),
			  page_clients_str(r, top[i], h, sizeof(h)));
	}
	if (n)
		table_flush(&t);
	else
		printf("no page of %s served in the last minute\n", vol ? vol : "any volume");
}

/* r's clients, one object per client: the servers it uses now (the lines
 * that say connected), or, if none, those its traffic was counted at, in
 * parentheses; the volumes it sends them; its rates summed over the
 * servers (traffic at a server it left decays there for a minute); SEQ and
 * latency of its busiest line. A new array. */
static json_t *clients_by_client(json_t *r)
{
	json_t *out = json_object(), *arr = json_array(), *c, *o;
	const char *key;
	size_t i;

	json_array_foreach(json_object_get(r, "clients"), i, c)
	{
		const char *id = text_str(c, "client");
		int conn = json_is_true(json_object_get(c, "connected"));
		char sid[16];
		json_t *v;
		size_t k;

		o = json_object_get(out, id);
		if (!o) {
			o = json_pack("{s:s,s:s,s:[],s:[],s:[],s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
				      "client", id, "host", text_str(c, "host"), "servers",
				      "seen_at", "volumes", "read_iops", 0.0, "write_iops", 0.0,
				      "read_mbps", 0.0, "write_mbps", 0.0, "load", 0.0, "seq", 0.0,
				      "lat_us", 0.0);
			json_object_set_new(out, id, o);
		}
		/* (a server that no longer hears from it may have forgotten it) */
		if (!strcmp(text_str(o, "host"), "-"))
			json_object_set_new(o, "host", json_string(text_str(c, "host")));
		snprintf(sid, sizeof(sid), "%d", (int)real_of(c, "server"));
		json_array_append_new(json_object_get(o, conn ? "servers" : "seen_at"),
				      json_string(sid));
		json_array_foreach(json_object_get(c, "volumes"), k, v)
		{
			json_array_append(json_object_get(o, "volumes"), v);
		}
		if (real_of(c, "load") >= real_of(o, "best")) {
			json_object_set_new(o, "best", json_real(real_of(c, "load")));
			json_object_set_new(o, "seq", json_real(real_of(c, "seq")));
			json_object_set_new(o, "lat_us", json_real(real_of(c, "lat_us")));
		}
		for (size_t f = 0; f < 5; f++) {
			static const char *const sum[] = {"read_iops", "write_iops", "read_mbps",
							  "write_mbps", "load"};

			json_object_set_new(o, sum[f],
					    json_real(real_of(o, sum[f]) + real_of(c, sum[f])));
		}
	}
	json_object_foreach(out, key, o)
	{
		json_object_del(o, "best");
		json_array_append(arr, o);
	}
	json_decref(out);
	return arr;
}

/* "3", "1,3" (moving between them), or "(1)" for a client that uses no
 * server now but was counted at 1. */
static const char *servers_str(json_t *o, char *buf, size_t len)
{
	json_t *a = json_object_get(o, "servers"), *v;
	int paren = !json_array_size(a);
	size_t i, n = 0;

	if (paren)
		a = json_object_get(o, "seen_at");
	n += snprintf(buf, len, "%s", paren ? "(" : "");
	json_array_foreach(a, i, v)
	{
		if (n < len)
			n += snprintf(buf + n, len - n, "%s%s", i ? "," : "", json_string_value(v));
	}
	if (n < len)
		snprintf(buf + n, len - n, "%s", paren ? ")" : "");
	return buf;
}

/* "v1,v2" from an array of names, each once; "-" if none. */
static const char *names_str(json_t *arr, char *buf, size_t len)
{
	size_t i, n = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(arr, i, v)
	{
		const char *name = json_string_value(v);
		size_t k;
		json_t *w;
		int dup = 0;

		json_array_foreach(arr, k, w)
		{
			if (k >= i)
				break;
			dup |= !strcmp(json_string_value(w), name);
		}
		if (!dup && n < len)
			n += snprintf(buf + n, len - n, "%s%s", n ? "," : "", name);
	}
	return n ? buf : "-";
}

static void print_load_clients(json_t *r, size_t max)
{
	struct table t = {.ncols = 9,
			  .head = {"CLIENT", "HOST", "SERVER", "VOLUMES", "READ/s", "WRITE/s",
				   "MB/s", "SEQ", "LATENCY"},
			  .right = {0, 0, 1, 0, 1, 1, 1, 1, 1}};
	json_t *all = clients_by_client(r), *top[256];
	size_t n = hottest(all, NULL, top, max < 256 ? max : 256);

	for (size_t i = 0; i < n; i++) {
		char a[64], b[160], c[32], d[32], e[32], f[32], g[32];

		table_add(&t, text_str(top[i], "client"), text_str(top[i], "host"),
			  servers_str(top[i], a, sizeof(a)),
			  names_str(json_object_get(top[i], "volumes"), b, sizeof(b)),
			  fmt_real(real_of(top[i], "read_iops"), 0, c, sizeof(c)),
			  fmt_real(real_of(top[i], "write_iops"), 0, d, sizeof(d)),
			  fmt_real(real_of(top[i], "read_mbps") + real_of(top[i], "write_mbps"), 1,
				   e, sizeof(e)),
			  fmt_pct(real_of(top[i], "seq"), f, sizeof(f)),
			  fmt_us(real_of(top[i], "lat_us"), g, sizeof(g)));
	}
	if (n)
		table_flush(&t);
	else
		printf("no client uses a server, and none sent a request in the last minute\n");
	json_decref(all);
}

static int do_load(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *vol = opt_get(c, inv, "pages");
	json_t *r;
	int rc;

	if (vol && check_name(vol) < 0)
		return PEERCTL_EXIT_USAGE;
	rc = peerctl_call(ctl, "load.show", NULL, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json)
		print_json(r);
	else if (vol)
		print_load_pages(r, vol, 256);
	else if (opt_get(c, inv, "clients"))
		print_load_clients(r, 256);
	else
		print_load_servers(r);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* Waits up to ms for a key on a terminal in raw mode: 1 on q, else 0. */
static int key_quit(unsigned ms)
{
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
	char ch;

	if (poll(&p, 1, (int)ms) > 0 && read(STDIN_FILENO, &ch, 1) == 1)
		return ch == 'q' || ch == 'Q';
	return 0;
}

static int do_top(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	struct termios saved, raw;
	int tty_in = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	int rc = PEERCTL_EXIT_OK;

	catch_sigint();
	if (tty_in) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	while (!interrupted) {
		json_t *r;
		time_t t = time(NULL);
		char when[32];
		int call = peerctl_call(ctl, "load.show", NULL, &r);

		if (call < 0) {
			rc = -call;
			break;
		}
		strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
		printf("\033[H\033[Jpeervol top  %s  (every 1 s; q quits)\n\n", when);
		print_load_servers(r);
		printf("\n");
		print_load_pages(r, NULL, 10);
		printf("\n");
		print_load_clients(r, 5);
		fflush(stdout);
		json_decref(r);
		if (tty_in ? key_quit(1000) : !nap(1000))
			break;
	}
	if (tty_in)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return rc;
}

static int do_balance(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	json_t *r, *e;
	size_t i;
	int rc;

	if (strcmp(c->sub, "status")) {
		rc =
		    group_call(ctl, !strcmp(c->sub, "on") ? "balance.on" : "balance.off", NULL, &r);
		if (rc < 0)
			return -rc;
		if (r)
			printf("rebalancer %s\n",
			       json_is_true(json_object_get(r, "on"))
				   ? "on: overloaded servers shed hot pages and clients"
				   : "off: no page or client moves for load");
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	rc = peerctl_call(ctl, "balance.status", NULL, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	printf("rebalancer %s; threshold %.2f over the fair share, every %d s, floor %.0f "
	       "load/s%s\n",
	       json_is_true(json_object_get(r, "on")) ? "on" : "OFF", real_of(r, "threshold"),
	       (int)real_of(r, "interval_s"), real_of(r, "floor"),
	       json_is_true(json_object_get(r, "monitor")) ? "" : " (load monitor off here)");
	printf("this server: %s; intervals over in a row: %d; moves out: %d\n",
	       text_str(r, "state"), (int)real_of(r, "over"), (int)real_of(r, "moves_out"));
	printf("its client traffic: %s; intervals over in a row: %d\n",
	       text_str(r, "clients_state"), (int)real_of(r, "clients_over"));
	json_array_foreach(json_object_get(r, "recent"), i, e)
	{
		if (!i)
			printf("recent moves:\n");
		printf("  %s\n", text_str(e, "text"));
	}
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* ---- snapshots ---- */

#define SNAP_TIMEOUT_DEFAULT_MS 7000
#define SNAP_TIMEOUT_MAX_MS	600000

/* Checks a volume's or snapshot's name (what: "volume", "snapshot"); -1
 * after printing ("snapshot name 'a@b': character '@' ..."). */
static int check_named(const char *what, const char *name)
{
	char err[256];

	if (!pv_valid_name(name, err, sizeof(err))) {
		peerctl_error("%s %s", what, err);
		return -1;
	}
	return 0;
}

/* The volume and snapshot names of a snapshot command (its first two
 * arguments; name may be NULL for none); -1 after printing. */
static int check_snapshot_args(const char *volume, const char *name)
{
	if (check_named("volume", volume) < 0 || (name && check_named("snapshot", name) < 0))
		return -1;
	return 0;
}

/* A duration "500ms", "7s", "1m" or "7" (seconds) in milliseconds, from
 * 1 ms to SNAP_TIMEOUT_MAX_MS; -1 if it is none. */
static int parse_duration_ms(const char *text, uint64_t *ms)
{
	char *end;
	unsigned long long v;
	uint64_t mult;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-' || text[0] == '+')
		return -1;
	if (!strcmp(end, "ms"))
		mult = 1;
	else if (!*end || !strcmp(end, "s"))
		mult = 1000;
	else if (!strcmp(end, "m"))
		mult = 60000;
	else
		return -1;
	if (v < 1 || v > SNAP_TIMEOUT_MAX_MS / mult)
		return -1;
	*ms = v * mult;
	return 0;
}

/* {"volume": volume, "name": name} (name NULL: left out); NULL after
 * printing. */
static json_t *snapshot_args(const char *volume, const char *name)
{
	json_t *args = name ? json_pack("{s:s, s:s}", "volume", volume, "name", name)
			    : json_pack("{s:s}", "volume", volume);

	if (!args)
		peerctl_error("out of memory");
	return args;
}

/* peerctl_call with args (taken: freed here); 0 and *r, or minus the exit
 * status. */
static int snapshot_call(struct ctl *ctl, const char *cmd, json_t *args, json_t **r)
{
	int rc = args ? peerctl_call(ctl, cmd, args, r) : -PEERCTL_EXIT_ERROR;

	json_decref(args);
	return rc;
}

static int do_snapshot_create(struct ctl *ctl, const struct command *c,
			      const struct invocation *inv)
{
	const char *vol = inv->pos[0], *name = inv->pos[1], *mode = opt_get(c, inv, "mode"),
		   *timeout_arg = opt_get(c, inv, "timeout");
	uint64_t timeout_ms = SNAP_TIMEOUT_DEFAULT_MS, pause_ms;
	json_t *args, *r;
	int rc;

	if (check_snapshot_args(vol, name) < 0)
		return PEERCTL_EXIT_ERROR;
	if (!mode)
		mode = "hold";
	if (strcmp(mode, "hold") && strcmp(mode, "timestamp")) {
		peerctl_error("mode '%s' is not hold or timestamp", SHOWN(mode));
		return PEERCTL_EXIT_ERROR;
	}
	if (timeout_arg && parse_duration_ms(timeout_arg, &timeout_ms) < 0) {
		peerctl_error("timeout '%s' is not a duration from 1ms to 10m (e.g. 500ms, 7s, 1m)",
			      SHOWN(timeout_arg));
		return PEERCTL_EXIT_ERROR;
	}
	/* the answer comes once the servers are done or the timeout passed */
	if (ctl->timeout_s < timeout_ms / 1000 + 10)
		ctl->timeout_s = (unsigned)(timeout_ms / 1000 + 10);
	args = json_pack("{s:s, s:s, s:s, s:I}", "volume", vol, "name", name, "mode", mode,
			 "timeout_ms", (json_int_t)timeout_ms);
	rc = snapshot_call(ctl, "snapshot.create", args, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
	} else if (!strcmp(mode, "hold") && get_u64(r, "pause_ms", &pause_ms) == 0) {
		printf("snapshot %s@%s created (hold mode, writes paused %llu ms)\n", vol, name,
		       (unsigned long long)pause_ms);
	} else {
		printf("snapshot %s@%s created (%s mode%s)\n", vol, name, mode,
		       strcmp(mode, "hold") ? ", writes not paused" : "");
	}
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* Orders snapshot objects by volume, then id (oldest first). */
static int by_volume_id(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	const char *vx = json_string_value(json_object_get(x, "volume"));
	const char *vy = json_string_value(json_object_get(y, "volume"));
	uint64_t ix = 0, iy = 0;
	int d = strcmp(vx ? vx : "", vy ? vy : "");

	if (d)
		return d;
	get_u64(x, "id", &ix);
	get_u64(y, "id", &iy);
	return ix < iy ? -1 : ix > iy;
}

static int do_snapshot_list(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	struct table t = {.ncols = 5,
			  .head = {"VOLUME", "NAME", "MODE", "CREATED", "PRESERVED"},
			  .right = {0, 0, 0, 0, 1}};
	json_t *args, *r, *snaps, *s, **items;
	size_t i, n;
	int rc;

	if (inv->npos && check_snapshot_args(inv->pos[0], NULL) < 0)
		return PEERCTL_EXIT_ERROR;
	args = inv->npos ? snapshot_args(inv->pos[0], NULL) : json_object();
	rc = snapshot_call(ctl, "snapshot.list", args, &r);
	if (rc < 0)
		return -rc;
	snaps = json_object_get(r, "snapshots");
	if (!json_is_array(snaps)) {
		peerctl_error("malformed reply from peerd: no \"snapshots\" list");
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	n = json_array_size(snaps);
	if (n > 1 && (items = calloc(n, sizeof(*items)))) {
		for (i = 0; i < n; i++)
			items[i] = json_incref(json_array_get(snaps, i));
		qsort(items, n, sizeof(*items), by_volume_id);
		json_array_clear(snaps);
		for (i = 0; i < n; i++)
			json_array_append_new(snaps, items[i]);
		free(items);
	}
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	json_array_foreach(snaps, i, s)
	{
		char created[64], preserved[32];

		table_add(&t, text_str(s, "volume"), text_str(s, "name"), text_str(s, "mode"),
			  time_str(s, "created", created, sizeof(created)),
			  size_str(s, "preserved", preserved, sizeof(preserved)));
	}
	if (n)
		table_flush(&t);
	else if (inv->npos)
		printf("volume %s has no snapshots\n", inv->pos[0]);
	else
		printf("no snapshots\n");
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_snapshot_show(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	static const char *const known[] = {"volume",	 "name",       "id",	  "mode", "created",
					    "preserved", "chunk_size", "servers", NULL};
	struct table kv = {.ncols = 2};
	char b1[FIELD_LEN], b2[32];
	json_t *r, *srv;
	size_t i, n = 0;
	int rc;

	if (check_snapshot_args(inv->pos[0], inv->pos[1]) < 0)
		return PEERCTL_EXIT_ERROR;
	rc = snapshot_call(ctl, "snapshot.show", snapshot_args(inv->pos[0], inv->pos[1]), &r);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	kv_add(&kv, "volume", text_str(r, "volume"));
	kv_add(&kv, "name", text_str(r, "name"));
	kv_add(&kv, "id", num_str(r, "id", b1, sizeof(b1)));
	kv_add(&kv, "mode", text_str(r, "mode"));
	kv_add(&kv, "created", time_str(r, "created", b1, sizeof(b1)));
	kv_add(&kv, "preserved", size_str(r, "preserved", b1, sizeof(b1)));
	kv_add(&kv, "chunk size", size_str(r, "chunk_size", b1, sizeof(b1)));
	/* "server 1: 1.0 MiB, server 2: 0 B" */
	b1[0] = '\0';
	json_array_foreach(json_object_get(r, "servers"), i, srv)
	{
		char id[32];

		if (n + 64 >= sizeof(b1)) {
			snprintf(b1 + n, sizeof(b1) - n, ", ...");
			break;
		}
		n += snprintf(b1 + n, sizeof(b1) - n, "%sserver %s: %s", n ? ", " : "",
			      num_str(srv, "id", id, sizeof(id)),
			      size_str(srv, "preserved", b2, sizeof(b2)));
	}
	kv_add(&kv, "preserved on", b1[0] ? b1 : "-");
	kv_add_rest(&kv, r, known);
	table_flush(&kv);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_snapshot_delete(struct ctl *ctl, const struct command *c,
			      const struct invocation *inv)
{
	json_t *r;
	int rc;

	if (check_snapshot_args(inv->pos[0], inv->pos[1]) < 0)
		return PEERCTL_EXIT_ERROR;
	rc = snapshot_call(ctl, "snapshot.delete", snapshot_args(inv->pos[0], inv->pos[1]), &r);
	if (rc < 0)
		return -rc;
	if (ctl->json)
		print_json(r);
	else
		printf("deleted snapshot %s@%s\n", inv->pos[0], inv->pos[1]);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_snapshot_rollback(struct ctl *ctl, const struct command *c,
				const struct invocation *inv)
{
	int force = opt_get(c, inv, "force") != NULL, rc;
	json_t *args, *r;

	if (check_snapshot_args(inv->pos[0], inv->pos[1]) < 0)
		return PEERCTL_EXIT_ERROR;
	args = snapshot_args(inv->pos[0], inv->pos[1]);
	if (args)
		json_object_set_new(args, "force", json_boolean(force));
	rc = snapshot_call(ctl, "snapshot.rollback", args, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json)
		print_json(r);
	else
		printf("volume %s rolled back to snapshot %s@%s: what was written since is gone, "
		       "the snapshot stays%s\n",
		       inv->pos[0], inv->pos[0], inv->pos[1],
		       force ? "; clients that had it open read the snapshot's image now" : "");
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_snapshot_diff(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *from = opt_get(c, inv, "from");
	struct table t = {.ncols = 2, .right = {1, 1}};
	uint64_t bytes, count;
	char b1[32];
	json_t *args, *r, *ranges, *e;
	size_t i;
	int rc;

	if (check_snapshot_args(inv->pos[0], inv->pos[1]) < 0 ||
	    (from && check_named("snapshot", from) < 0))
		return PEERCTL_EXIT_ERROR;
	args = snapshot_args(inv->pos[0], inv->pos[1]);
	if (args && from)
		json_object_set_new(args, "from", json_string(from));
	rc = snapshot_call(ctl, "snapshot.diff", args, &r);
	if (rc < 0)
		return -rc;
	if (ctl->json) {
		print_json(r);
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	ranges = json_object_get(r, "ranges");
	if (!json_is_array(ranges)) {
		peerctl_error("malformed reply from peerd: no \"ranges\" list");
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	count = json_array_size(ranges);
	json_array_foreach(ranges, i, e)
	{
		char off[32], len[32];

		table_add(&t, num_str(e, "offset", off, sizeof(off)),
			  num_str(e, "length", len, sizeof(len)));
	}
	table_flush(&t);
	if (get_u64(r, "bytes", &bytes) < 0) {
		bytes = 0;
		json_array_foreach(ranges, i, e)
		{
			uint64_t l;

			if (get_u64(e, "length", &l) == 0)
				bytes += l;
		}
	}
	printf("total %llu bytes (%s) in %llu range%s\n", (unsigned long long)bytes,
	       pv_format_size(bytes, b1, sizeof(b1)), (unsigned long long)count,
	       count == 1 ? "" : "s");
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

/* ---- keys (include/auth.h, docs/security.md) ---- */

static int do_group_keygen(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *out = opt_get(c, inv, "out"), *rotate = opt_get(c, inv, "rotate"),
		   *finish = opt_get(c, inv, "finish");
	int force = opt_get(c, inv, "force") != NULL, roll_was = 0;
	struct pv_key k, old;
	char err[600], fp[17];
	uint8_t pub[PV_KEY_BYTES], sec[PV_KEY_BYTES];

	(void)ctl;
	if (!out)
		out = PEERCTL_GROUP_KEY;
	if (rotate && finish)
		return peerctl_usage_error("--rotate and --finish do not go together");
	if (rotate || finish) {
		if (pv_key_load(rotate ? rotate : finish, &old, err, sizeof(err)) < 0) {
			peerctl_error("%s", err);
			return PEERCTL_EXIT_ERROR;
		}
		if (old.kind != PV_KEY_GROUP) {
			peerctl_error("%s is a client key, not the group key", rotate ? rotate : finish);
			return PEERCTL_EXIT_ERROR;
		}
		if (finish && !old.group.has_previous) {
			peerctl_error("%s is not in a roll (it has no previous secret)", finish);
			return PEERCTL_EXIT_ERROR;
		}
		if (rotate && old.group.has_previous) {
			peerctl_error("%s is in a roll already: finish it first (--finish)", rotate);
			return PEERCTL_EXIT_ERROR;
		}
		k = old;
		roll_was = old.group.roll;
		if (rotate) {
			memcpy(k.group.previous, old.group.secret, PV_KEY_BYTES);
			k.group.has_previous = 1;
			k.group.roll = 1;
			pv_group_key_new(&old); /* only for a fresh random secret */
			memcpy(k.group.secret, old.group.secret, PV_KEY_BYTES);
		} else if (k.group.roll == 1) {
			k.group.roll = 2;
		} else {
			memset(k.group.previous, 0, PV_KEY_BYTES);
			k.group.has_previous = 0;
			k.group.roll = 0;
		}
		memset(&old, 0, sizeof(old));
	} else
		pv_group_key_new(&k);
	if (strchr(out, '/')) {
		char dir[4096], *slash;

		snprintf(dir, sizeof(dir), "%s", out);
		slash = strrchr(dir, '/');
		if (slash != dir) {
			*slash = 0;
			if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
				peerctl_error("cannot create directory %s: %s", dir, strerror(errno));
				return PEERCTL_EXIT_ERROR;
			}
		}
	}
	if (pv_key_save(out, &k, force, err, sizeof(err)) < 0) {
		peerctl_error("%s", err);
		memset(&k, 0, sizeof(k));
		return PEERCTL_EXIT_ERROR;
	}
	pv_group_identity(&k.group, pub, sec);
	memset(sec, 0, sizeof(sec));
	pv_key_fingerprint(pub, fp);
	memset(&k, 0, sizeof(k));
	if (rotate)
		printf("wrote %s: group %s, roll phase 1 (a new membership secret beside the\n"
		       "old one, which servers still present). Restart every server with\n"
		       "--auth %s, one at a time; then run 'peerctl group keygen --finish %s\n"
		       "--out FILE'.\n",
		       out, fp, out, out);
	else if (finish && roll_was == 1)
		printf("wrote %s: group %s, roll phase 2 (servers present the new secret and\n"
		       "still accept the old one). Restart every server with --auth %s, one\n"
		       "at a time; then run 'peerctl group keygen --finish %s --out FILE'.\n",
		       out, fp, out, out);
	else if (finish)
		printf("wrote %s: group %s, the roll done: the old secret is dropped. Restart\n"
		       "every server with --auth %s, one at a time.\n",
		       out, fp, out);
	else
		printf("wrote %s: group %s (mode 0600).\n"
		       "Copy it to every server and start each with --auth %s; then make\n"
		       "client keys with 'peerctl client add NAME'.\n",
		       out, fp, out);
	return PEERCTL_EXIT_OK;
}

static int do_client_add(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	const char *name = inv->pos[0], *out = opt_get(c, inv, "out");
	char path[4096], hex[2 * PV_KEY_BYTES + 1], err[600], fp[17];
	uint8_t group[PV_KEY_BYTES] = {0};
	struct pv_key k;
	json_t *r = NULL, *args;
	const char *gp;
	size_t got = 0;
	int rc;

	if (!pv_client_name_ok(name))
		return peerctl_usage_error("client name '%s' is not 1 to %d of A-Za-z0-9._-",
					   SHOWN(name), PV_KEY_NAME_MAX);
	if (!out) {
		snprintf(path, sizeof(path), "%s.key", name);
		out = path;
	}
	if (access(out, F_OK) == 0) {
		peerctl_error("%s exists: not overwritten (give --out another file)", SHOWN(out));
		return PEERCTL_EXIT_ERROR;
	}
	pv_client_key_new(&k, name, group);
	pv_hex(k.client.public_key, PV_KEY_BYTES, hex);
	args = json_pack("{s:s,s:s}", "name", name, "public_key", hex);
	rc = peerctl_call(ctl, "client.add", args, &r);
	json_decref(args);
	if (rc < 0) {
		memset(&k, 0, sizeof(k));
		return -rc;
	}
	gp = text_str(r, "group_public");
	if (strlen(gp) != 2 * PV_KEY_BYTES ||
	    sodium_hex2bin(k.client.group_public, PV_KEY_BYTES, gp, strlen(gp), NULL, &got, NULL) ||
	    got != PV_KEY_BYTES) {
		peerctl_error("the server's answer has no group key; client %s was added but its "
			      "key file was not written: revoke it and try again",
			      name);
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	if (pv_key_save(out, &k, 0, err, sizeof(err)) < 0) {
		peerctl_error("%s; client %s was added but its key is lost: revoke it ('peerctl "
			      "client revoke %s') and add it again",
			      err, name, name);
		memset(&k, 0, sizeof(k));
		json_decref(r);
		return PEERCTL_EXIT_ERROR;
	}
	pv_key_fingerprint(k.client.public_key, fp);
	memset(&k, 0, sizeof(k));
	if (ctl->json)
		print_json(r);
	else
		printf("client %s added (key %s); its key is in %s.\n"
		       "Copy it to the client host (mode 0600) and mount with fused --auth FILE.\n",
		       name, fp, out);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_client_list(struct ctl *ctl, const struct command *c, const struct invocation *inv)
{
	struct table t = {.ncols = 4, .head = {"NAME", "KEY", "ADDED", "STATE"}};
	json_t *r, *e;
	char added[32], state[48];
	size_t i;

	(void)c, (void)inv;
	if (group_call(ctl, "client.list", NULL, &r) < 0)
		return PEERCTL_EXIT_ERROR;
	if (!r)
		return PEERCTL_EXIT_OK;
	if (!json_is_true(json_object_get(r, "authenticated"))) {
		printf("this server runs without --auth: the group is unauthenticated\n");
		json_decref(r);
		return PEERCTL_EXIT_OK;
	}
	json_array_foreach(json_object_get(r, "clients"), i, e)
	{
		snprintf(added, sizeof(added), "v%lld",
			 (long long)json_integer_value(json_object_get(e, "added_version")));
		if (json_is_true(json_object_get(e, "revoked")))
			snprintf(state, sizeof(state), "revoked (v%lld)",
				 (long long)json_integer_value(json_object_get(e, "revoked_version")));
		else
			snprintf(state, sizeof(state), "active");
		table_add(&t, text_str(e, "name"), text_str(e, "fingerprint"), added, state);
	}
	if (t.nrows)
		table_flush(&t);
	else
		printf("no client keys (add one with 'peerctl client add NAME')\n");
	printf("group key %s; %lld connections refused by this server\n",
	       text_str(r, "group_fingerprint"),
	       (long long)json_integer_value(json_object_get(r, "refused_connections")));
	json_decref(r);
	return PEERCTL_EXIT_OK;
}

static int do_client_revoke(struct ctl *ctl, const struct command *c,
			    const struct invocation *inv)
{
	json_t *r = NULL, *args;
	int rc;

	(void)c;
	if (!pv_client_name_ok(inv->pos[0]))
		return peerctl_usage_error("client name '%s' is not 1 to %d of A-Za-z0-9._-",
					   SHOWN(inv->pos[0]), PV_KEY_NAME_MAX);
	args = json_pack("{s:s}", "name", inv->pos[0]);
	rc = peerctl_call(ctl, "client.revoke", args, &r);
	json_decref(args);
	if (rc < 0)
		return -rc;
	if (ctl->json)
		print_json(r);
	else
		printf("client %s revoked: its connections are refused from now on\n", inv->pos[0]);
	json_decref(r);
	return PEERCTL_EXIT_OK;
}
