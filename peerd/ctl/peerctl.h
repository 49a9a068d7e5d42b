/* peerctl.h: the map of peerctl, peerd's admin command line. peerctl.c owns
 * start-up and the one request/reply exchange with peerd's control socket
 * (docs/control-protocol.md); commands.c owns the command table, option
 * parsing and the printers. Single-threaded. */
#ifndef PEERCTL_H
#define PEERCTL_H

#include <jansson.h>

#define PEERCTL_DEFAULT_SOCKET	"/run/peervol/peerd.sock"
#define PEERCTL_DEFAULT_TIMEOUT 30 /* seconds to wait for a reply */
#define PEERCTL_MAX_TIMEOUT	86400

/* Exit codes. */
#define PEERCTL_EXIT_OK	   0
#define PEERCTL_EXIT_ERROR 1 /* bad value, no answer, refused by peerd */
#define PEERCTL_EXIT_USAGE 2 /* unknown command or option, wrong arguments */
#define PEERCTL_EXIT_HEALTH_WARN 3 /* health: HEALTH_WARN */
#define PEERCTL_EXIT_HEALTH_ERR	 4 /* health: HEALTH_ERR */
#define PEERCTL_EXIT_NOT_FOUND	 5 /* peerd: no such volume or server ("code":"not_found") */
#define PEERCTL_EXIT_EXISTS	 6 /* peerd: the volume name is taken ("code":"exists") */

/* Global options, valid before or after the command. */
struct ctl {
	const char *socket; /* control socket path, without "ipc://" */
	int json;	    /* print the result as JSON, raw byte counts */
	unsigned timeout_s; /* seconds to wait for the reply */
};

/* Where group keygen writes by default. */
#define PEERCTL_GROUP_KEY "/etc/peervol/group.key"

/* peerctl.c */

/* Prints "peerctl: <message>" on stderr. */
void peerctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "peerctl: <message>" and "try 'peerctl --help'" on stderr; returns
 * PEERCTL_EXIT_USAGE. */
int peerctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends {"cmd": cmd, "args": args} to peerd and waits for the reply. args
 * may be NULL and stays the caller's. Returns 0 and the reply's result in
 * *result (the caller's reference), or after printing why (no socket, no
 * answer, malformed reply, or peerd's error message) minus the exit status
 * for it: -PEERCTL_EXIT_NOT_FOUND or -PEERCTL_EXIT_EXISTS when peerd's reply
 * has that "code", else -PEERCTL_EXIT_ERROR (-1). */
int peerctl_call(const struct ctl *ctl, const char *cmd, json_t *args, json_t **result);

/* commands.c */

/* Parses global options and the command in argv (argv[0] is the program)
 * and runs it. Returns the process exit code. */
int commands_run(struct ctl *ctl, int argc, char **argv);

#endif
