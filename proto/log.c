/* log.c: the pv_log sink behind include/pvlog.h. Lines are written with one
 * write so that threads do not interleave them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pvlog.h"

int pv_log_level = LOG_INFO;

static char log_prog[32] = "peervol";
static uint32_t log_server;
static int log_syslog;

void pv_log_open(const char *prog, uint32_t server_id, int use_syslog)
{
	snprintf(log_prog, sizeof(log_prog), "%s", prog);
	log_server = server_id;
	if (use_syslog && !log_syslog)
		openlog(log_prog, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog = use_syslog;
}

static const char *level_name(int prio)
{
	switch (prio) {
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_INFO:
		return "info";
	case LOG_DEBUG:
		return "debug";
	default:
		return "notice";
	}
}

void pv_log(int prio, const char *fmt, ...)
{
	char msg[1024], line[1200];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int saved = errno, n;

	va_start(ap, fmt);
	errno = saved; /* for %m */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		if (log_server)
			syslog(prio, "[server %u] %s", log_server, msg);
		else
			syslog(prio, "%s", msg);
		errno = saved;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (log_server)
		n = snprintf(
		    line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: server %u: %s: %s\n",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		    ts.tv_nsec / 1000000, log_prog, log_server, level_name(prio), msg);
	else
		n = snprintf(line, sizeof(line),
			     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: %s: %s\n", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000000, log_prog, level_name(prio), msg);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}
