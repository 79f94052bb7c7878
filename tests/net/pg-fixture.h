/* SPDX-License-Identifier: MIT */
/*
 * A throwaway PostgreSQL 15 cluster for the ipam tests and bench: initdb in
 * a temp dir as user postgres (when root), server on a private Unix socket dir (plus 127.0.0.1
 * on a free port when asked), fsync off. A reaper process removes the cluster when the creating
 * process goes away for any reason (pipe EOF), so a crashed or killed test leaves nothing.
 */
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PGF_BIN "/usr/lib/postgresql/15/bin"

struct pg_fixture {
	char dir[64]; /* temp dir: data/, the socket, server.log */
	char data[96];
	int port;
	bool tcp;
	uid_t uid; /* postgres when we are root, else ourselves */
	gid_t gid;
	pid_t reaper;
	int reaper_fd; /* write end: closing it (or dying) makes the reaper clean up */
};

/* Run argv (as the cluster owner), stdout/stderr to the log; returns the exit status or -1. */
static inline int pgf_run(const struct pg_fixture *f, char *const argv[])
{
	char log[128];
	pid_t pid;
	int status;

	(void)snprintf(log, sizeof(log), "%s/cmd.log", f->dir);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			(void)dup2(fd, 1);
			(void)dup2(fd, 2);
		}
		if (getuid() == 0 && (setgid(f->gid) < 0 || setuid(f->uid) < 0))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline int pgf_start(struct pg_fixture *f)
{
	char opts[512];
	char *argv[] = {PGF_BIN "/pg_ctl", "-D", f->data, "-l", NULL, "-w", "-o", opts,
			"start",	   NULL};
	char log[128];

	(void)snprintf(log, sizeof(log), "%s/server.log", f->dir);
	argv[4] = log;
	(void)snprintf(opts, sizeof(opts),
		       "-k %s -p %d -c listen_addresses=%s -c fsync=off -c synchronous_commit=off "
		       "-c full_page_writes=off -c max_connections=50",
		       f->dir, f->port, f->tcp ? "127.0.0.1" : "''");
	return pgf_run(f, argv) == 0 ? 0 : -EIO;
}

static inline int pgf_stop(struct pg_fixture *f)
{
	char *argv[] = {PGF_BIN "/pg_ctl", "-D", f->data, "-m", "fast", "-w", "stop", NULL};

	return pgf_run(f, argv) == 0 ? 0 : -EIO;
}

static inline int pgf_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Remove the whole cluster: stop the server (immediate) and delete the directory. */
static inline void pgf_destroy(struct pg_fixture *f)
{
	char *stop[] = {PGF_BIN "/pg_ctl", "-D", f->data, "-m", "immediate", "-w", "stop", NULL};
	char *rm[] = {"/bin/rm", "-rf", "--one-file-system", f->dir, NULL};
	pid_t pid;

	if (access(f->data, F_OK) == 0)
		(void)pgf_run(f, stop);
	pid = fork();
	if (pid == 0) {
		execv(rm[0], rm);
		_exit(127);
	}
	if (pid > 0)
		(void)waitpid(pid, NULL, 0);
}

/* 0, -ENOENT when the server binaries are missing (the caller skips), -EIO otherwise. */
static inline int pgf_setup(struct pg_fixture *f, bool tcp, char *why, size_t why_size)
{
	char *initdb[] = {PGF_BIN "/initdb",
			  "-D",
			  f->data,
			  "-A",
			  "trust",
			  "-U",
			  "postgres",
			  "--no-sync",
			  "-E",
			  "UTF8",
			  "--locale=C.UTF-8",
			  NULL};
	int pfd[2];

	memset(f, 0, sizeof(*f));
	f->reaper_fd = -1;
	f->tcp = tcp;
	if (access(PGF_BIN "/initdb", X_OK) < 0) {
		(void)snprintf(why, why_size, "%s/initdb missing (postgresql-15 not installed)",
			       PGF_BIN);
		return -ENOENT;
	}
	f->uid = getuid();
	f->gid = getgid();
	if (getuid() == 0) {
		struct passwd *pw = getpwnam("postgres");

		if (!pw) {
			(void)snprintf(why, why_size, "running as root and no user 'postgres'");
			return -ENOENT;
		}
		f->uid = pw->pw_uid;
		f->gid = pw->pw_gid;
	}
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/mvmfs-pg-XXXXXX");
	if (!mkdtemp(f->dir) || chmod(f->dir, 0755) < 0 || chown(f->dir, f->uid, f->gid) < 0) {
		(void)snprintf(why, why_size, "temp dir: %s", strerror(errno));
		return -EIO;
	}
	(void)snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
	f->port = pgf_free_port();
	if (f->port < 0)
		f->port = 54329;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -EIO;
	f->reaper = fork();
	if (f->reaper == 0) {
		char c;

		close(pfd[1]);
		/* Also wake up when the parent dies without closing (SIGKILL): EOF comes anyway. */
		(void)signal(SIGINT, SIG_IGN);
		(void)signal(SIGTERM, SIG_IGN);
		while (read(pfd[0], &c, 1) < 0 && errno == EINTR)
			;
		pgf_destroy(f);
		_exit(0);
	}
	close(pfd[0]);
	f->reaper_fd = pfd[1];
	if (pgf_run(f, initdb) != 0) {
		(void)snprintf(why, why_size, "initdb failed, see %s/cmd.log", f->dir);
		return -EIO;
	}
	if (pgf_start(f) < 0) {
		(void)snprintf(why, why_size, "server start failed, see %s/server.log", f->dir);
		return -EIO;
	}
	return 0;
}

/* Tear down (the reaper does the work) and wait for it. */
static inline void pgf_teardown(struct pg_fixture *f)
{
	if (f->reaper_fd >= 0) {
		close(f->reaper_fd);
		f->reaper_fd = -1;
	}
	if (f->reaper > 0)
		(void)waitpid(f->reaper, NULL, 0);
}

static inline void pgf_conninfo(const struct pg_fixture *f, const char *db, char *buf, size_t size)
{
	if (f->tcp)
		(void)snprintf(buf, size, "postgresql://postgres@127.0.0.1:%d/%s", f->port, db);
	else
		(void)snprintf(buf, size, "host=%s port=%d user=postgres dbname=%s", f->dir,
			       f->port, db);
}

/* Run SQL (several statements allowed, no parameters: fixture-owned text only). */
static inline void pgf_notice_ignore(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static inline int pgf_sql(const struct pg_fixture *f, const char *db, const char *sql)
{
	char ci[256];
	PGconn *c;
	PGresult *res;
	int r = 0;

	pgf_conninfo(f, db, ci, sizeof(ci));
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("# pgf_sql connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return -EIO;
	}
	(void)PQsetNoticeProcessor(c, pgf_notice_ignore, NULL);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		printf("# sql failed: %s", PQresultErrorMessage(res));
		r = -EIO;
	}
	PQclear(res);
	PQfinish(c);
	return r;
}

/* The first column of the first row of a query as a string ("" for none, "NULL" for NULL). */
static inline int pgf_query1(const struct pg_fixture *f, const char *db, const char *sql, char *buf,
			     size_t size)
{
	char ci[256];
	PGconn *c;
	PGresult *res;
	int r = 0;

	pgf_conninfo(f, db, ci, sizeof(ci));
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		return -EIO;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		printf("# query failed: %s", PQresultErrorMessage(res));
		r = -EIO;
	} else if (PQntuples(res) == 0) {
		(void)snprintf(buf, size, "%s", "");
	} else {
		(void)snprintf(buf, size, "%s",
			       PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	PQfinish(c);
	return r;
}
