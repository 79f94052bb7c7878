/* SPDX-License-Identifier: MIT */
/*
 * net: addresses from PostgreSQL (libpq). Table instances(id text primary key, ip_address inet);
 * see net/schema.sql. One transaction per assignment:
 *
 *   INSERT the row if absent -> SELECT its ip_address FOR UPDATE -> set: done (kept even when
 *   outside our prefix); NULL: take the allocation lock, read every address in the table, pick
 *   a free one in our prefix, UPDATE, COMMIT.
 *
 * Concurrency (several nodes on one database): every allocator takes the same transaction-level
 * advisory lock before reading the table, so the read-check-write sequences are serialised and
 * each sees the previous one's committed row (the lock is released only after the commit is
 * visible). This works with no index at all; the UNIQUE index in schema.sql is only defence in
 * depth. SERIALIZABLE was the alternative: every allocator reads the whole table and writes to
 * it, so concurrent allocations would almost always conflict and retry on 40001 anyway, paying a
 * round trip and a rollback for what the lock does by waiting. Allocations are rare and short.
 * The lock is only taken when a NULL address must be filled, never for reading an existing one.
 * Rows are locked (FOR UPDATE) before the advisory lock, in that order everywhere: no deadlock.
 *
 * The VM's own ip_address is read as text (ip_address::text), so a text column works too, and
 * parsed strictly. The collision check compares against every row: with an inet column the
 * server filters to our prefix, otherwise all values are read as text. The value written is
 * an untyped parameter, so the server converts it to the column's type. Parameterised queries only.
 * Errors: libpq -> -EIO with the server's message, bad stored value -> -EINVAL, pool full ->
 * -ENOSPC; any failure rolls the transaction back, so a row inserted by us does not stay behind. A
 * pooled connection found dead is replaced and the transaction retried once within the same
 * deadline (it is idempotent: a committed earlier attempt is found by the SELECT).
 *
 * Deadlines: a whole assignment, connecting included, has timeout_ms (--database-timeout). A
 * single host name in the URL is resolved first under the same deadline (resolve.c) and handed
 * to libpq as hostaddr, since libpq's own lookup blocks without a bound. Every
 * call uses libpq's non-blocking API (PQconnectStart/PQconnectPoll, PQsendQueryParams, PQflush,
 * PQconsumeInput) and poll() on PQsocket() with the time left, never a blocking PQexec, so a
 * server that accepts and then says nothing costs exactly the deadline. A connection that misses
 * it is in an unknown protocol state and is closed (the server rolls back when it notices); the
 * next call connects afresh. The server's lock_timeout and statement_timeout are set to 3/4 of
 * the time left, so a busy (not silent) server answers with its own error first. Keepalives and
 * tcp_user_timeout make the kernel drop a dead peer even between calls. Once a call has missed
 * its deadline, later ones get a short probe (IPAM_PG_PROBE_MS) until the database answers again
 * (pg_budget): mkdirs are serialised by the kernel on vms/, so full deadlines would add up.
 *
 * Threading: the connections are pooled (IPAM_PG_IDLE_MAX kept idle); each call takes one, or
 * opens one, and gives it back afterwards, so concurrent assignments run in parallel on their
 * own connections and one stuck call delays no other. The pool lock is never held across I/O.
 */
#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ip6.h"
#include "ipam-internal.h"
#include "resolve.h"

/* "mvmfsipa": the advisory lock key every mvmfs node uses for allocations. */
#define IPAM_PG_LOCK_KEY "7887612084176384097"
/* Connections kept open between assignments (more may be open while assignments overlap). */
#define IPAM_PG_IDLE_MAX 4
/* While the database is known silent: the deadline of a probe, and how often one call still gets
 * the full deadline (pg_budget). */
#define IPAM_PG_PROBE_MS 1000
#define IPAM_PG_FULL_EVERY_MS 30000

enum column_kind {
	COLUMN_UNKNOWN, /* not looked up on this connection yet */
	COLUMN_INET,
	COLUMN_OTHER, /* text or anything else: read as text, parsed here */
};

/* One server connection and what we learnt about it. */
struct pgc {
	PGconn *conn;	       /* NULL when not connected */
	enum column_kind kind; /* type of instances.ip_address, per connection */
	unsigned budget_ms;    /* this call's deadline, for messages */
	bool probe;	       /* a short try while the database is known silent */
};

/* Addresses read from the table, per call. */
struct used {
	struct in6_addr *a;
	size_t n, cap;
};

struct ipam_pg {
	char *conninfo;
	char *resolve_host; /* the URL's host when it is a DNS name: resolved here, with deadline */
	unsigned timeout_ms;  /* deadline of one assignment, connecting included */
	bool silent;	      /* the last call missed its deadline (under lock) */
	int64_t silent_since; /* when that started (CLOCK_MONOTONIC ms, under lock) */
	int64_t last_full;    /* the last call given the full deadline while silent */
	int cancel_fd;	      /* eventfd: readable once ipam_pg_cancel() was called */
	pthread_mutex_t lock; /* protects idle[] and n_idle, never held across a round trip */
	struct pgc idle[IPAM_PG_IDLE_MAX];
	unsigned n_idle;
};

static void pgresult_clearp(PGresult **p)
{
	if (*p)
		PQclear(*p);
}
#define _cleanup_pgresult_ _cleanup_(pgresult_clearp)

static void notice_ignore(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* libpq messages are multi-line with a trailing newline; keep them on one line. */
static const char *pg_message(const char *m, char *buf, size_t size)
{
	size_t n = 0;

	for (; m && *m && n + 1 < size; m++)
		buf[n++] = (*m == '\n' || *m == '\t') ? ' ' : *m;
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	return n ? buf : "unknown error";
}

/* A database value for a message: bounded, printable. */
static const char *value_for_message(const char *v, int len, char *buf, size_t size)
{
	size_t n = 0;

	for (int i = 0; i < len && n + 4 < size; i++)
		buf[n++] = isprint((unsigned char)v[i]) ? v[i] : '?';
	if (len > 0 && n < (size_t)len && n + 4 <= size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection that missed a deadline is in an unknown protocol state: it is never reused. */
static void pgc_drop(struct pgc *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	c->kind = COLUMN_UNKNOWN;
}

static int pg_timed_out(struct ipam_pg *pg, struct pgc *c, const char *what, struct err *err);

/* A wait that ended early because of ipam_pg_cancel(): the connection is dropped too. */
static int pg_cancelled(struct pgc *c, const char *what, struct err *err)
{
	pgc_drop(c);
	return err_set(err, -EIO, "database call cancelled while %s: the daemon is shutting down",
		       what);
}

/* The outcome of a failed pg_wait: timeout, cancel, or an I/O error (then -EIO with libpq's
 * words). */
static int pg_wait_failed(struct ipam_pg *pg, struct pgc *c, int r, const char *what,
			  struct err *err)
{
	char m[ERR_MSG_MAX];

	if (r == -ETIMEDOUT)
		return pg_timed_out(pg, c, what, err);
	if (r == -ECANCELED)
		return pg_cancelled(c, what, err);
	return err_set(err, -EIO, "database: %s",
		       pg_message(c->conn ? PQerrorMessage(c->conn) : NULL, m, sizeof(m)));
}

/* A missed deadline marks the database silent: later calls get a short probe (pg_budget). */
static void pg_mark_silent(struct ipam_pg *pg)
{
	pthread_mutex_lock(&pg->lock);
	if (!pg->silent) {
		pg->silent = true;
		pg->silent_since = pg->last_full = now_ms();
	}
	pthread_mutex_unlock(&pg->lock);
}

static int pg_timed_out(struct ipam_pg *pg, struct pgc *c, const char *what, struct err *err)
{
	const char *host = c->conn ? PQhost(c->conn) : NULL,
		   *port = c->conn ? PQport(c->conn) : NULL;
	int r;

	r = err_set(err, -EIO,
		    "database did not answer within %u.%u s while %s (server %s%s%s)%s, "
		    "connection dropped",
		    c->budget_ms / 1000, c->budget_ms % 1000 / 100, what,
		    host && *host ? host : "?", port && *port ? ":" : "", port ? port : "",
		    c->probe ? "; silent before too: a short probe" : "");
	pgc_drop(c);
	pg_mark_silent(pg);
	return r;
}

/* Wait until the connection's socket is readable (and writable if asked), the deadline, or a
 * cancel. 0 ready, -ETIMEDOUT, -ECANCELED, -EIO (no socket, poll error). */
static int pg_wait(struct ipam_pg *pg, PGconn *conn, bool rd, bool wr, int64_t deadline)
{
	struct pollfd p[2] = {{.fd = PQsocket(conn)}, {.fd = pg->cancel_fd, .events = POLLIN}};

	if (p[0].fd < 0)
		return -EIO;
	p[0].events = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
	for (;;) {
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(p, 2, (int)MIN(left, (int64_t)INT32_MAX));
		if (n > 0 && p[1].revents)
			return -ECANCELED;
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -EIO;
	}
}

/* libpq resolves a host name with a blocking getaddrinfo() inside PQconnectStart: resolve it
 * here under the deadline instead and hand libpq the addresses (hostaddr, one per address, with
 * the name repeated in host for TLS and messages). */
static int pg_resolve(struct ipam_pg *pg, const struct pgc *c, int64_t deadline, char *hosts,
		      size_t hosts_size, char *addrs, size_t addrs_size, struct err *err)
{
	char list[NET_RESOLVE_MAX][INET6_ADDRSTRLEN], why[128];
	size_t ho = 0, ao = 0;
	unsigned n = 0;
	int r;

	r = net_resolve(pg->resolve_host, deadline, pg->cancel_fd, list, &n, why, sizeof(why));
	if (r == -ETIMEDOUT) {
		pg_mark_silent(pg);
		return err_set(err, -EIO,
			       "database host '%s' did not resolve within %u.%u s (DNS silent)",
			       pg->resolve_host, c->budget_ms / 1000, c->budget_ms % 1000 / 100);
	}
	if (r == -ECANCELED)
		return err_set(err, -EIO,
			       "database call cancelled while resolving '%s': the daemon is "
			       "shutting down",
			       pg->resolve_host);
	if (r == -ENOENT)
		return err_set(err, -EIO, "database host '%s' does not resolve: %s",
			       pg->resolve_host, why);
	if (r < 0)
		return err_set(err, -EIO, "resolving database host '%s': %s", pg->resolve_host,
			       strerror(-r));
	for (unsigned i = 0; i < n; i++) {
		int a = snprintf(hosts + ho, hosts_size - ho, "%s%s", i ? "," : "",
				 pg->resolve_host);
		int b = snprintf(addrs + ao, addrs_size - ao, "%s%s", i ? "," : "", list[i]);

		if (a < 0 || b < 0 || (size_t)a >= hosts_size - ho || (size_t)b >= addrs_size - ao)
			return err_set(err, -EIO, "database host '%s': too many addresses",
				       pg->resolve_host);
		ho += (size_t)a;
		ao += (size_t)b;
	}
	return 0;
}

/* Connect with libpq's non-blocking API under the call's deadline (a host name is resolved
 * first, by pg_resolve, under the same deadline). */
static int pg_connect(struct ipam_pg *pg, struct pgc *c, int64_t deadline, struct err *err)
{
	/* Defaults first: keys in the URL/conninfo (expanded from dbname) override them. Keepalives
	 * and tcp_user_timeout make the kernel notice a dead peer even between our calls. */
	const char *const keys[] = {"connect_timeout",
				    "application_name",
				    "keepalives",
				    "keepalives_idle",
				    "keepalives_interval",
				    "keepalives_count",
				    "tcp_user_timeout",
				    "dbname",
				    "host", /* after dbname: these override the URL's */
				    "hostaddr",
				    NULL};
	char ct[16], tut[16];
	char hosts[NET_RESOLVE_MAX * (NET_RESOLVE_HOST_MAX + 1) + 1];
	char addrs[NET_RESOLVE_MAX * INET6_ADDRSTRLEN + 1];
	const char *vals[] = {ct,  "mvmfs",	 "1",  "10", "3", "3",
			      tut, pg->conninfo, NULL, NULL, NULL};
	char m[ERR_MSG_MAX];
	int r;

	if (c->conn && PQstatus(c->conn) == CONNECTION_OK)
		return 0;
	pgc_drop(c); /* the table may have changed while we were away: kind is re-read too */
	if (pg->resolve_host) {
		r = pg_resolve(pg, c, deadline, hosts, sizeof(hosts), addrs, sizeof(addrs), err);
		if (r < 0)
			return r;
		vals[8] = hosts;
		vals[9] = addrs;
	}
	/* libpq's own bounds (whole seconds, at least 2) back up our poll deadline. */
	(void)snprintf(ct, sizeof(ct), "%u", MAX(2u, (c->budget_ms + 999) / 1000));
	(void)snprintf(tut, sizeof(tut), "%u", c->budget_ms);
	c->conn = PQconnectStartParams(keys, vals, 1);
	if (!c->conn)
		return -ENOMEM;
	(void)PQsetNoticeProcessor(c->conn, notice_ignore, NULL);
	for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
		r = 0;

		if (PQstatus(c->conn) == CONNECTION_BAD)
			st = PGRES_POLLING_FAILED;
		if (st == PGRES_POLLING_OK)
			break;
		if (st == PGRES_POLLING_FAILED) {
			r = err_set(err, -EIO, "database connection failed: %s",
				    pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
			pgc_drop(c);
			return r;
		}
		r = pg_wait(pg, c->conn, st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING,
			    deadline);
		if (r == -ETIMEDOUT || r == -ECANCELED)
			return pg_wait_failed(pg, c, r, "connecting", err);
		if (r < 0) {
			r = err_set(err, -EIO, "database connection failed: %s",
				    pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
			pgc_drop(c);
			return r;
		}
		st = PQconnectPoll(c->conn);
	}
	if (PQsetnonblocking(c->conn, 1) != 0) {
		pgc_drop(c);
		return err_set(err, -EIO, "database: cannot make the connection non-blocking");
	}
	return 0;
}

/* One parameterised statement, sent and awaited without ever blocking past the deadline; the
 * result on success (tuples or command ok). A missed deadline drops the connection. */
static int pg_exec(struct ipam_pg *pg, struct pgc *c, const char *sql, int nparams,
		   const char *const *params, int64_t deadline, PGresult **ret, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char m[ERR_MSG_MAX];
	ExecStatusType st;
	int r;

	if (!c->conn)
		return err_set(err, -EIO, "database: not connected");
	if (!PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0))
		return err_set(err, -EIO, "database: %s",
			       pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
	for (;;) {
		int f = PQflush(c->conn);

		if (f == 0)
			break;
		if (f < 0)
			return err_set(err, -EIO, "database: %s",
				       pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
		r = pg_wait(pg, c->conn, true, true, deadline);
		if (r < 0)
			return pg_wait_failed(pg, c, r, "sending a statement", err);
		if (!PQconsumeInput(c->conn))
			return err_set(err, -EIO, "database: %s",
				       pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
	}
	/* Collect every result of the statement (libpq ends the list with NULL). */
	for (;;) {
		PGresult *next;

		while (PQisBusy(c->conn)) {
			r = pg_wait(pg, c->conn, true, false, deadline);
			if (r < 0)
				return pg_wait_failed(pg, c, r, "waiting for a statement's result",
						      err);
			if (!PQconsumeInput(c->conn))
				return err_set(err, -EIO, "database: %s",
					       pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
		}
		next = PQgetResult(c->conn);
		if (!next)
			break;
		if (res)
			PQclear(res);
		res = next;
	}
	if (!res)
		return err_set(err, -EIO, "database: %s",
			       pg_message(PQerrorMessage(c->conn), m, sizeof(m)));
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return err_set(err, -EIO, "database: %s",
			       pg_message(PQresultErrorMessage(res), m, sizeof(m)));
	if (ret)
		*ret = TAKE_PTR(res);
	return 0;
}

static int used_add(struct used *u, const struct in6_addr *a)
{
	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 256;
		struct in6_addr *p = realloc(u->a, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		u->a = p;
		u->cap = cap;
	}
	u->a[u->n++] = *a;
	return 0;
}

/* The type of instances.ip_address, once per connection. */
static int pg_column_kind(struct ipam_pg *pg, struct pgc *c, int64_t deadline, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r;

	if (c->kind != COLUMN_UNKNOWN)
		return 0;
	r = pg_exec(pg, c,
		    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
		    "WHERE attrelid = to_regclass('instances') AND attname = 'ip_address' "
		    "AND NOT attisdropped",
		    0, NULL, deadline, &res, err);
	if (r < 0)
		return r;
	c->kind = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "inet") == 0 ? COLUMN_INET
										    : COLUMN_OTHER;
	return 0;
}

/* Every address in the table that lies in our prefix, for the collision check. With an inet
 * column the server compares every row and sends only those inside the prefix (as host text;
 * set_masklen so "ADDR/48" values count by their address too). Otherwise every value comes as
 * text and is parsed leniently here: any value whose address part parses counts as taken (also
 * "ADDR/64"); values that are no address at all cannot collide with one and are skipped (they
 * only fail the VM they belong to). */
static int pg_load_used(struct ipam_pg *pg, struct pgc *c, const struct in6_addr *prefix,
			unsigned len, int64_t deadline, struct used *u, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char ptext[IP6_PREFIX_STRLEN];
	const char *params[1] = {ptext};
	int r, rows;

	r = pg_column_kind(pg, c, deadline, err);
	if (r < 0)
		return r;
	if (c->kind == COLUMN_INET) {
		ip6_prefix_format(prefix, len, ptext, sizeof(ptext));
		r = pg_exec(
			pg, c,
			"SELECT host(ip_address) FROM instances WHERE ip_address IS NOT NULL "
			"AND family(ip_address) = 6 AND set_masklen(ip_address, 128) <<= $1::inet",
			1, params, deadline, &res, err);
	} else {
		r = pg_exec(pg, c,
			    "SELECT ip_address::text FROM instances WHERE ip_address IS NOT NULL",
			    0, NULL, deadline, &res, err);
	}
	if (r < 0)
		return r;
	u->n = 0;
	rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		char buf[INET6_ADDRSTRLEN];
		const char *v = PQgetvalue(res, i, 0);
		size_t n = strcspn(v, "/");
		struct in6_addr a;

		if (n >= sizeof(buf))
			continue;
		memcpy(buf, v, n);
		buf[n] = '\0';
		if (ip6_addr_parse(buf, &a) < 0 || !ip6_in_prefix(&a, prefix, len))
			continue;
		r = used_add(u, &a);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The transaction body, after BEGIN. On error the caller rolls back. */
static int pg_assign_body(struct ipam_pg *pg, struct pgc *c, const struct in6_addr *prefix,
			  unsigned len, const char *name, int64_t deadline, struct in6_addr *ret,
			  struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char text[INET6_ADDRSTRLEN], why[128], shown[80], tmo[32];
	const char *params[2] = {name, NULL}, *tparams[1] = {tmo};
	struct used u = {};
	struct in6_addr a;
	int64_t left;
	int r;

	/* The server gives up on lock waits and statements a little before our deadline, so a
	 * busy (not silent) server answers with its own error and the connection stays usable. */
	left = deadline - now_ms();
	(void)snprintf(tmo, sizeof(tmo), "%lldms", (long long)MAX(100, left * 3 / 4));
	r = pg_exec(pg, c,
		    "SELECT set_config('lock_timeout', $1, true), "
		    "set_config('statement_timeout', $1, true)",
		    1, tparams, deadline, NULL, err);
	if (r < 0)
		return r;
	r = pg_exec(pg, c, "INSERT INTO instances (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", 1,
		    params, deadline, NULL, err);
	if (r < 0)
		return r;
	r = pg_exec(pg, c, "SELECT ip_address::text FROM instances WHERE id = $1 FOR UPDATE", 1,
		    params, deadline, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return err_set(err, -EIO, "database: %d rows in instances for '%s', expected 1",
			       PQntuples(res), name);
	if (!PQgetisnull(res, 0, 0)) {
		r = ip6_host_parse(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), ret, why,
				   sizeof(why));
		if (r < 0)
			return err_set(
				err, -EINVAL, "instances.ip_address of '%s' is '%s': %s", name,
				value_for_message(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0),
						  shown, sizeof(shown)),
				why);
		return 0;
	}
	r = pg_exec(pg, c, "SELECT pg_advisory_xact_lock(" IPAM_PG_LOCK_KEY ")", 0, NULL, deadline,
		    NULL, err);
	if (r >= 0)
		r = pg_load_used(pg, c, prefix, len, deadline, &u, err);
	if (r >= 0)
		r = ipam_pick(prefix, len, u.a, u.n, &a, err);
	free(u.a);
	if (r < 0)
		return r;
	params[1] = ip6_format(&a, text, sizeof(text));
	r = pg_exec(pg, c, "UPDATE instances SET ip_address = $2 WHERE id = $1", 2, params,
		    deadline, NULL, err);
	if (r < 0)
		return r;
	*ret = a;
	return 0;
}

static int pg_assign_once(struct ipam_pg *pg, struct pgc *c, const struct in6_addr *prefix,
			  unsigned len, const char *name, int64_t deadline, struct in6_addr *ret,
			  struct err *err)
{
	struct in6_addr a;
	int r;

	/* A failed ROLLBACK earlier can leave a transaction open; never build on it. */
	if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		(void)pg_exec(pg, c, "ROLLBACK", 0, NULL, deadline, NULL, NULL);
	if (!c->conn)
		return err_set(err, -EIO, "database: connection lost");
	r = pg_exec(pg, c, "BEGIN", 0, NULL, deadline, NULL, err);
	if (r < 0)
		return r;
	r = pg_assign_body(pg, c, prefix, len, name, deadline, &a, err);
	if (r >= 0)
		r = pg_exec(pg, c, "COMMIT", 0, NULL, deadline, NULL, err);
	if (r < 0) {
		/* Undo our INSERT; a dead or dropped connection has rolled back on the server
		 * already (or will, when it notices). */
		if (c->conn && PQstatus(c->conn) == CONNECTION_OK &&
		    PQtransactionStatus(c->conn) != PQTRANS_IDLE)
			(void)pg_exec(pg, c, "ROLLBACK", 0, NULL, deadline, NULL, NULL);
		return r;
	}
	*ret = a;
	return 0;
}

/* An idle connection, or an unconnected slot. Never blocks on the database. */
static struct pgc pg_take(struct ipam_pg *pg)
{
	struct pgc c = {};

	pthread_mutex_lock(&pg->lock);
	if (pg->n_idle > 0)
		c = pg->idle[--pg->n_idle];
	pthread_mutex_unlock(&pg->lock);
	return c;
}

/* Back to the idle list if it is healthy and idle, else closed. */
static void pg_give(struct ipam_pg *pg, struct pgc *c)
{
	if (c->conn && PQstatus(c->conn) == CONNECTION_OK &&
	    PQtransactionStatus(c->conn) == PQTRANS_IDLE) {
		pthread_mutex_lock(&pg->lock);
		if (pg->n_idle < IPAM_PG_IDLE_MAX) {
			pg->idle[pg->n_idle++] = *c;
			c->conn = NULL;
		}
		pthread_mutex_unlock(&pg->lock);
	}
	pgc_drop(c);
}

/* This call's deadline. While the database is known silent (a call missed its deadline and none
 * succeeded since) a call gets only a short probe, so mkdirs queued behind a silent database
 * (the kernel serialises them on the vms/ directory) fail within a second each instead of a
 * full deadline each; every IPAM_PG_FULL_EVERY_MS one call gets the full deadline, so a database
 * that is slow rather than dead is still reached. Any answer ends it. */
static unsigned pg_budget(struct ipam_pg *pg, bool *ret_probe)
{
	unsigned b = pg->timeout_ms;
	int64_t now = now_ms();

	*ret_probe = false;
	pthread_mutex_lock(&pg->lock);
	if (pg->silent && now - pg->last_full < IPAM_PG_FULL_EVERY_MS) {
		b = MIN(pg->timeout_ms, IPAM_PG_PROBE_MS);
		*ret_probe = b < pg->timeout_ms;
	} else if (pg->silent) {
		pg->last_full = now;
	}
	pthread_mutex_unlock(&pg->lock);
	return b;
}

int ipam_pg_assign(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
		   const char *name, struct in6_addr *ret, struct err *err)
{
	struct pgc c = pg_take(pg);
	bool reused = c.conn != NULL;
	int64_t deadline;
	int r;

	c.budget_ms = pg_budget(pg, &c.probe);
	deadline = now_ms() + c.budget_ms;
	r = pg_connect(pg, &c, deadline, err);
	if (r >= 0)
		r = pg_assign_once(pg, &c, prefix, len, name, deadline, ret, err);
	if (r == -EIO && reused && c.conn && PQstatus(c.conn) != CONNECTION_OK &&
	    now_ms() < deadline) {
		/* The server restarted or the link dropped while the connection was idle: one
		 * fresh try within the same deadline. A missed deadline is never retried. */
		err_clear(err);
		r = pg_connect(pg, &c, deadline, err);
		if (r >= 0)
			r = pg_assign_once(pg, &c, prefix, len, name, deadline, ret, err);
	}
	if (r >= 0 || (c.conn && PQstatus(c.conn) == CONNECTION_OK)) {
		/* It answered (a result or its own error): not silent any more. */
		pthread_mutex_lock(&pg->lock);
		pg->silent = false;
		pthread_mutex_unlock(&pg->lock);
	}
	pg_give(pg, &c);
	return r;
}

int ipam_pg_new(const char *conninfo, unsigned timeout_ms, struct ipam_pg **ret, struct err *err)
{
	_cleanup_free_ struct ipam_pg *pg = NULL;
	PQconninfoOption *opts;
	char *msg = NULL, m[ERR_MSG_MAX];

	/* Catch a malformed URL/conninfo at start-up instead of at the first mkdir. */
	opts = PQconninfoParse(conninfo, &msg);
	if (!opts) {
		/* libpq may quote the whole URL, password included: cut it out of the message. */
		char *hit = msg ? strstr(msg, conninfo) : NULL;
		int r;

		if (hit)
			memmove(hit, hit + strlen(conninfo), strlen(hit + strlen(conninfo)) + 1);
		r = err_set(err, msg ? -EINVAL : -ENOMEM, "invalid database URL: %s",
			    pg_message(msg, m, sizeof(m)));
		PQfreemem(msg);
		return r;
	}
	pg = calloc(1, sizeof(*pg));
	if (!pg) {
		PQconninfoFree(opts);
		return -ENOMEM;
	}
	/* A single host name with no hostaddr is resolved by us, under the deadline; a list of
	 * hosts is left to libpq (and its blocking lookup). */
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val)
			goto no_resolve;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "host") == 0 && net_resolve_needed(o->val)) {
			pg->resolve_host = strdup(o->val);
			if (!pg->resolve_host) {
				PQconninfoFree(opts);
				return -ENOMEM;
			}
		}
no_resolve:
	PQconninfoFree(opts);
	pg->timeout_ms = timeout_ms ? timeout_ms : IPAM_PG_TIMEOUT_MS;
	pg->conninfo = strdup(conninfo);
	if (!pg->conninfo) {
		free(pg->resolve_host);
		return -ENOMEM;
	}
	pg->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pg->cancel_fd < 0) {
		free(pg->resolve_host);
		free(pg->conninfo);
		return -errno;
	}
	pthread_mutex_init(&pg->lock, NULL);
	*ret = TAKE_PTR(pg);
	return 0;
}

void ipam_pg_cancel(struct ipam_pg *pg)
{
	uint64_t one = 1;

	ssize_t w;

	/* Level-triggered for good: every wait from now on ends at once. A full counter (EAGAIN)
	 * is readable already. */
	w = write(pg->cancel_fd, &one, sizeof(one));
	(void)w;
}

struct ipam_pg *ipam_pg_free(struct ipam_pg *pg)
{
	if (!pg)
		return NULL;
	for (unsigned i = 0; i < pg->n_idle; i++)
		pgc_drop(&pg->idle[i]);
	pthread_mutex_destroy(&pg->lock);
	if (pg->cancel_fd >= 0)
		close(pg->cancel_fd);
	free(pg->resolve_host);
	free(pg->conninfo);
	free(pg);
	return NULL;
}
