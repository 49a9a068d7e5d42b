/* pvlog.h: one-line logging for every peervol program. Each line names the
 * program and the server id; stderr in the foreground, syslog when
 * daemonized. Debug arguments are not evaluated unless debug is on. */
#ifndef PV_LOG_H
#define PV_LOG_H

#include <stdint.h>
#include <syslog.h>

extern int pv_log_level; /* LOG_ERR .. LOG_DEBUG; default LOG_INFO */

/* Sets the program name, the server id shown on every line (0: none) and
 * where lines go. Safe to call again (e.g. after daemonizing). */
void pv_log_open(const char *prog, uint32_t server_id, int use_syslog);

/* Writes one line at syslog priority prio; fmt may use %m. */
void pv_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pv_err(...)  pv_log(LOG_ERR, __VA_ARGS__)
#define pv_warn(...) pv_log(LOG_WARNING, __VA_ARGS__)
#define pv_info(...)                                                                               \
	do {                                                                                       \
		if (pv_log_level >= LOG_INFO)                                                      \
			pv_log(LOG_INFO, __VA_ARGS__);                                             \
	} while (0)
#define pv_debug(...)                                                                              \
	do {                                                                                       \
		if (pv_log_level >= LOG_DEBUG)                                                     \
			pv_log(LOG_DEBUG, __VA_ARGS__);                                            \
	} while (0)

#endif
