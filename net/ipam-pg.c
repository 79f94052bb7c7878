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
 * lost connection is reset and the transaction retried once (it is idempotent: a committed earlier
 * attempt is found by the SELECT).
 */
#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "ip6.h"
#include "ipam-internal.h"

/* "mvmfsipa": the advisory lock key every mvmfs node uses for allocations. */
#define IPAM_PG_LOCK_KEY "7887612084176384097"
/* Bound how long one node can stall another's mkdir (lock waits and statements). */
#define IPAM_PG_TIMEOUT "30s"

enum column_kind {
	COLUMN_UNKNOWN, /* not looked up on this connection yet */
	COLUMN_INET,
	COLUMN_OTHER, /* text or anything else: read as text, parsed here */
};

struct ipam_pg {
	char *conninfo;
	PGconn *conn;	       /* NULL until the first assignment */
	enum column_kind kind; /* type of instances.ip_address, per connection */
	struct in6_addr *used; /* scratch: addresses read from the table */
	size_t n_used, cap_used;
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

static int pg_connect(struct ipam_pg *pg, struct err *err)
{
	/* Defaults first: keys in the URL/conninfo (expanded from dbname) override them. */
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *const vals[] = {"10", "mvmfs", pg->conninfo, NULL};
	char m[ERR_MSG_MAX];

	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
		return 0;
	pg->kind = COLUMN_UNKNOWN; /* the table may have changed while we were away */
	if (pg->conn) {
		PQreset(pg->conn);
	} else {
		pg->conn = PQconnectdbParams(keys, vals, 1);
		if (!pg->conn)
			return -ENOMEM;
		(void)PQsetNoticeProcessor(pg->conn, notice_ignore, NULL);
	}
	if (PQstatus(pg->conn) != CONNECTION_OK)
		return err_set(err, -EIO, "database connection failed: %s",
			       pg_message(PQerrorMessage(pg->conn), m, sizeof(m)));
	return 0;
}

/* One parameterised statement; the result on success (tuples or command ok). */
static int pg_exec(struct ipam_pg *pg, const char *sql, int nparams, const char *const *params,
		   PGresult **ret, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char m[ERR_MSG_MAX];
	ExecStatusType st;

	res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!res)
		return err_set(err, -EIO, "database: %s",
			       pg_message(PQerrorMessage(pg->conn), m, sizeof(m)));
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return err_set(err, -EIO, "database: %s",
			       pg_message(PQresultErrorMessage(res), m, sizeof(m)));
	if (ret)
		*ret = TAKE_PTR(res);
	return 0;
}

static int used_add(struct ipam_pg *pg, const struct in6_addr *a)
{
	if (pg->n_used == pg->cap_used) {
		size_t cap = pg->cap_used ? pg->cap_used * 2 : 256;
		struct in6_addr *p = realloc(pg->used, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		pg->used = p;
		pg->cap_used = cap;
	}
	pg->used[pg->n_used++] = *a;
	return 0;
}

/* The type of instances.ip_address, once per connection. */
static int pg_column_kind(struct ipam_pg *pg, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r;

	if (pg->kind != COLUMN_UNKNOWN)
		return 0;
	r = pg_exec(pg,
		    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
		    "WHERE attrelid = to_regclass('instances') AND attname = 'ip_address' "
		    "AND NOT attisdropped",
		    0, NULL, &res, err);
	if (r < 0)
		return r;
	pg->kind = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "inet") == 0 ? COLUMN_INET
										     : COLUMN_OTHER;
	return 0;
}

/* Every address in the table that lies in our prefix, for the collision check. With an inet
 * column the server compares every row and sends only those inside the prefix (as host text;
 * set_masklen so "ADDR/48" values count by their address too). Otherwise every value comes as
 * text and is parsed leniently here: any value whose address part parses counts as taken (also
 * "ADDR/64"); values that are no address at all cannot collide with one and are skipped (they
 * only fail the VM they belong to). */
static int pg_load_used(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
			struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char ptext[IP6_PREFIX_STRLEN];
	const char *params[1] = {ptext};
	int r, rows;

	r = pg_column_kind(pg, err);
	if (r < 0)
		return r;
	if (pg->kind == COLUMN_INET) {
		ip6_prefix_format(prefix, len, ptext, sizeof(ptext));
		r = pg_exec(
			pg,
			"SELECT host(ip_address) FROM instances WHERE ip_address IS NOT NULL "
			"AND family(ip_address) = 6 AND set_masklen(ip_address, 128) <<= $1::inet",
			1, params, &res, err);
	} else {
		r = pg_exec(pg,
			    "SELECT ip_address::text FROM instances WHERE ip_address IS NOT NULL",
			    0, NULL, &res, err);
	}
	if (r < 0)
		return r;
	pg->n_used = 0;
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
		r = used_add(pg, &a);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The transaction body, after BEGIN. On error the caller rolls back. */
static int pg_assign_body(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
			  const char *name, struct in6_addr *ret, struct err *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	char text[INET6_ADDRSTRLEN], why[128], shown[80];
	const char *params[2] = {name, NULL};
	struct in6_addr a;
	int r;

	r = pg_exec(pg,
		    "SELECT set_config('lock_timeout', '" IPAM_PG_TIMEOUT "', true), "
		    "set_config('statement_timeout', '" IPAM_PG_TIMEOUT "', true)",
		    0, NULL, NULL, err);
	if (r < 0)
		return r;
	r = pg_exec(pg, "INSERT INTO instances (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", 1,
		    params, NULL, err);
	if (r < 0)
		return r;
	r = pg_exec(pg, "SELECT ip_address::text FROM instances WHERE id = $1 FOR UPDATE", 1,
		    params, &res, err);
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
	r = pg_exec(pg, "SELECT pg_advisory_xact_lock(" IPAM_PG_LOCK_KEY ")", 0, NULL, NULL, err);
	if (r < 0)
		return r;
	r = pg_load_used(pg, prefix, len, err);
	if (r < 0)
		return r;
	r = ipam_pick(prefix, len, pg->used, pg->n_used, &a, err);
	if (r < 0)
		return r;
	params[1] = ip6_format(&a, text, sizeof(text));
	r = pg_exec(pg, "UPDATE instances SET ip_address = $2 WHERE id = $1", 2, params, NULL, err);
	if (r < 0)
		return r;
	*ret = a;
	return 0;
}

static int pg_assign_once(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
			  const char *name, struct in6_addr *ret, struct err *err)
{
	struct in6_addr a;
	int r;

	/* A failed ROLLBACK earlier can leave a transaction open; never build on it. */
	if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
		(void)pg_exec(pg, "ROLLBACK", 0, NULL, NULL, NULL);
	r = pg_exec(pg, "BEGIN", 0, NULL, NULL, err);
	if (r < 0)
		return r;
	r = pg_assign_body(pg, prefix, len, name, &a, err);
	if (r >= 0)
		r = pg_exec(pg, "COMMIT", 0, NULL, NULL, err);
	if (r < 0) {
		/* Undo our INSERT; a dead connection has rolled back on the server already. */
		if (PQstatus(pg->conn) == CONNECTION_OK &&
		    PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
			(void)pg_exec(pg, "ROLLBACK", 0, NULL, NULL, NULL);
		return r;
	}
	*ret = a;
	return 0;
}

int ipam_pg_assign(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
		   const char *name, struct in6_addr *ret, struct err *err)
{
	int r;

	r = pg_connect(pg, err);
	if (r < 0)
		return r;
	r = pg_assign_once(pg, prefix, len, name, ret, err);
	if (r == -EIO && PQstatus(pg->conn) != CONNECTION_OK) {
		/* The server restarted or the link dropped since the last use: one fresh try. */
		err_clear(err);
		r = pg_connect(pg, err);
		if (r < 0)
			return r;
		r = pg_assign_once(pg, prefix, len, name, ret, err);
	}
	return r;
}

int ipam_pg_new(const char *conninfo, struct ipam_pg **ret, struct err *err)
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
	PQconninfoFree(opts);
	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return -ENOMEM;
	pg->conninfo = strdup(conninfo);
	if (!pg->conninfo)
		return -ENOMEM;
	*ret = TAKE_PTR(pg);
	return 0;
}

struct ipam_pg *ipam_pg_free(struct ipam_pg *pg)
{
	if (!pg)
		return NULL;
	if (pg->conn)
		PQfinish(pg->conn);
	free(pg->used);
	free(pg->conninfo);
	free(pg);
	return NULL;
}
