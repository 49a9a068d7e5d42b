/* daemon.c: how peerd tells whoever started it that it is serving, or why
 * it is not: --daemon (the starting process waits for the verdict), the
 * --pid-file, and systemd's readiness notification (Type=notify).
 *
 *   parent: fork --------- read the pipe ----------------> exit 0 ('R')
 *   child:  setsid, start-up (errors on the caller's       or the child's
 *           stderr) -> daemon_ready: pid file, stdio to     exit status (EOF)
 *           /dev/null, syslog, 'R' down the pipe, READY=1
 *
 * The fork comes before anything starts a thread (ZeroMQ, IO workers). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "peerd.h"

static int ready_fd = -1;    /* --daemon: the write end of the parent's pipe */
static int pid_file_written; /* --pid-file holds our pid: remove it at exit */

int daemon_start(void)
{
	int p[2], status;
	ssize_t n;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) < 0) {
		pv_err("cannot start in the background: pipe: %m");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		pv_err("cannot start in the background: fork: %m");
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		/* the caller's process: its exit status says whether the server
		 * started; the reason of a failure went to stderr already */
		close(p[1]);
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1 && c == 'R')
			_exit(0);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status))
			_exit(WEXITSTATUS(status));
		fprintf(stderr, "peerd: the server process ended before it was serving%s\n",
			WIFSIGNALED(status) ? " (killed by a signal)" : "");
		_exit(1);
	}
	close(p[0]);
	ready_fd = p[1];
	if (setsid() < 0)
		pv_warn("setsid: %m");
	return 0;
}

/* Writes our pid to path (mode 0644, replacing what was there). */
static int write_pid_file(const char *path)
{
	char buf[32];
	int fd, len;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		pv_err("cannot write the pid file %s: %m", path);
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, len) != len) {
		pv_err("cannot write the pid file %s: %m", path);
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	pid_file_written = 1;
	return 0;
}

int daemon_ready(void)
{
	int fd;

	if (srv->cfg.pid_file[0] && write_pid_file(srv->cfg.pid_file) < 0)
		return -1;
	if (ready_fd >= 0) {
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		pv_log_open("peerd", srv->cfg.id, 1);
		pv_info("serving on %s in the background (pid %d)", srv->cfg.listen,
			(int)getpid());
		if (write(ready_fd, "R", 1) != 1) {
			/* the starting process is gone: nobody to tell */
		}
		close(ready_fd);
		ready_fd = -1;
	}
	/* systemd (Type=notify): ignored when not started by it */
	sd_notifyf(0, "READY=1\nSTATUS=serving on %s\nMAINPID=%d", srv->cfg.listen,
		   (int)getpid());
	return 0;
}

void daemon_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void daemon_end(void)
{
	char buf[32];
	ssize_t n;
	int fd;

	if (!pid_file_written)
		return;
	/* only our own: a successor may have written its pid meanwhile */
	fd = open(srv->cfg.pid_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		if (atoi(buf) == (int)getpid())
			unlink(srv->cfg.pid_file);
	}
	pid_file_written = 0;
}
