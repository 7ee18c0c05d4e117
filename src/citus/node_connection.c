/*-------------------------------------------------------------------------
 *
 * node_connection.c
 *	  Connections that a worker keeps to the nodes of a Citus cluster, one
 *	  per node, across batches and shards, as the worker's owner (a worker
 *	  is bound to one role for its whole life, so a connection never
 *	  changes user).  They are opened the way Citus opens its own: the
 *	  options of citus.node_conninfo, then host, port, database, user and
 *	  client encoding, then the role's entry in pg_dist_authinfo (for that
 *	  node, or for every node), so a node authenticates the owner as it
 *	  authenticates Citus' connections for that role.
 *
 *	  Every wait is on the process latch and the socket, so interrupts
 *	  (pause, cancel, shutdown) are served while a node works.  A command
 *	  interrupted or failed midway leaves its connection in a state the
 *	  worker cannot know: it is cancelled on the node and closed, and the
 *	  next command opens a new one.  Results are copied into palloc'd
 *	  memory at once, so no libpq memory outlives an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "citus/citus_internal.h"

#define MAX_NODE_CONNECTIONS 64
#define MAX_CONN_OPTIONS 64
#define MAX_PREPARED 256

struct IterjobNodeConn
{
	PGconn	   *conn;			/* NULL: closed */
	char	   *settings;		/* the job settings last set on conn, in
								 * TopMemoryContext; NULL: none */
	char	  **prepared;		/* the SQL of the statements prepared on conn,
								 * in TopMemoryContext; the name of
								 * prepared[i] is iterjob_<i> */
	int			nprepared;
	int			port;
	bool		ready;			/* connected, and no command in flight */
	char		host[256];
};

static IterjobNodeConn node_conns[MAX_NODE_CONNECTIONS];
static bool exit_callback_registered = false;

static void
close_conn(IterjobNodeConn *nc, bool cancel)
{
	if (nc->conn == NULL)
		return;
	if (cancel && PQtransactionStatus(nc->conn) == PQTRANS_ACTIVE)
	{
		PGcancel   *c = PQgetCancel(nc->conn);

		if (c != NULL)
		{
			char		errbuf[256];

			(void) PQcancel(c, errbuf, sizeof(errbuf));
			PQfreeCancel(c);
		}
	}
	PQfinish(nc->conn);
	nc->conn = NULL;
	nc->ready = false;
	if (nc->settings != NULL)
		pfree(nc->settings);
	nc->settings = NULL;
	for (int i = 0; i < nc->nprepared; i++)
		pfree(nc->prepared[i]);
	nc->nprepared = 0;
}

static void
close_all_at_exit(int code, Datum arg)
{
	for (int i = 0; i < MAX_NODE_CONNECTIONS; i++)
		close_conn(&node_conns[i], true);
}

/* Close every kept connection (at the end of a worker, or on a reload). */
void
iterjob_node_close_all(void)
{
	close_all_at_exit(0, (Datum) 0);
}

/*
 * Wait until conn's socket is ready for events (WL_SOCKET_READABLE or
 * WL_SOCKET_WRITEABLE), serving interrupts meanwhile.
 */
static void
wait_for_socket(PGconn *conn, int events)
{
	int			rc;

	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(conn), -1L,
						   iterjob_wait_event(ITERJOB_WAIT_NODE));
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * The authinfo pg_dist_authinfo holds for role on the node nodeid (or on
 * every node), "" if none.  Read as iterjob (the table is for superusers).
 */
static char *
node_authinfo(const char *role, int32 nodeid)
{
	Oid			types[2] = {NAMEOID, INT4OID};
	Datum		args[2] = {CStringGetDatum(role), Int32GetDatum(nodeid)};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	char	   *authinfo = "";

	if (SPI_execute_with_args("SELECT authinfo FROM pg_catalog.pg_dist_authinfo"
							  " WHERE rolename OPERATOR(pg_catalog.=) $1"
							  "   AND nodeid OPERATOR(pg_catalog.=) ANY (ARRAY[$2, 0])"
							  " ORDER BY nodeid OPERATOR(pg_catalog.=) 0 LIMIT 1",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_authinfo");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
			authinfo = MemoryContextStrdup(TopTransactionContext, value);
	}
	iterjob_end_internal(nest, &saved);
	return authinfo;
}

/* Add the options of a conninfo string to keywords/values at *n. */
static void
add_conninfo(const char *conninfo, const char *what, const char **keywords,
			 const char **values, int *n)
{
	char	   *err = NULL;
	PQconninfoOption *options;

	if (conninfo == NULL || conninfo[0] == '\0')
		return;
	options = PQconninfoParse(conninfo, &err);
	if (options == NULL)
	{
		char	   *detail = err ? pstrdup(err) : NULL;

		if (err)
			PQfreemem(err);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse %s", what),
				 detail ? errdetail("%s", detail) : 0));
	}
	for (PQconninfoOption *o = options; o->keyword != NULL; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (*n >= MAX_CONN_OPTIONS - 1)
			break;
		keywords[*n] = pstrdup(o->keyword);
		values[*n] = pstrdup(o->val);
		(*n)++;
	}
	PQconninfoFree(options);
}

/* Open nc's connection to its node as role: SPI connected, in a transaction. */
static void
open_conn(IterjobNodeConn *nc, const char *role, int32 nodeid)
{
	const char *keywords[MAX_CONN_OPTIONS];
	const char *values[MAX_CONN_OPTIONS];
	char		port[16];
	int			n = 0;
	bool		host_given = false;
	PGconn	   *conn;

	add_conninfo(GetConfigOption("citus.node_conninfo", true, false),
				 "citus.node_conninfo", keywords, values, &n);
	for (int i = 0; i < n; i++)
		if (strcmp(keywords[i], "host") == 0)
			host_given = true;
	snprintf(port, sizeof(port), "%d", nc->port);
	keywords[n] = host_given ? "hostaddr" : "host";
	values[n++] = nc->host;
	keywords[n] = "port";
	values[n++] = port;
	keywords[n] = "dbname";
	values[n++] = get_database_name(MyDatabaseId);
	keywords[n] = "user";
	values[n++] = role;
	keywords[n] = "client_encoding";
	values[n++] = GetDatabaseEncodingName();
	keywords[n] = "application_name";
	values[n++] = "iterjob worker";
	add_conninfo(node_authinfo(role, nodeid), "pg_dist_authinfo's authinfo",
				 keywords, values, &n);
	keywords[n] = NULL;
	values[n] = NULL;

	if (!exit_callback_registered)
	{
		on_proc_exit(close_all_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	conn = PQconnectStartParams(keywords, values, false);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	nc->conn = conn;
	nc->ready = false;
	for (;;)
	{
		PostgresPollingStatusType st;

		if (PQstatus(conn) == CONNECTION_BAD)
			break;
		st = PQconnectPoll(conn);
		if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED)
			break;
		wait_for_socket(conn, st == PGRES_POLLING_READING ?
						WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE);
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *message = pchomp(PQerrorMessage(conn));

		close_conn(nc, false);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to node %s:%d as role \"%s\"",
						nc->host, nc->port, role),
				 errdetail_internal("%s", message),
				 errhint("The node authenticates the job's owner as it authenticates Citus' own connections for that role: pg_hba.conf, a password in pg_dist_authinfo or a .pgpass file.")));
	}
	nc->ready = true;
}

/*
 * The kept connection to host:port (whose Citus node id is nodeid) as
 * role, opened if it is not.  SPI connected, in a transaction.
 */
IterjobNodeConn *
iterjob_node_connection(const char *host, int port, int32 nodeid, const char *role)
{
	IterjobNodeConn *free_slot = NULL;
	IterjobNodeConn *nc = NULL;

	if (strlen(host) >= sizeof(nc->host))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("node name \"%s\" is too long", host)));
	for (int i = 0; i < MAX_NODE_CONNECTIONS; i++)
	{
		IterjobNodeConn *c = &node_conns[i];

		if (c->host[0] != '\0' && c->port == port && strcmp(c->host, host) == 0)
		{
			nc = c;
			break;
		}
		if (free_slot == NULL && c->conn == NULL)
			free_slot = c;
	}
	if (nc == NULL)
	{
		if (free_slot == NULL)
		{
			/* more nodes than slots: reuse the first one */
			free_slot = &node_conns[0];
			close_conn(free_slot, true);
		}
		nc = free_slot;
		strlcpy(nc->host, host, sizeof(nc->host));
		nc->port = port;
	}
	/* a command interrupted midway left the connection in an unknown state */
	if (nc->conn != NULL && (!nc->ready || PQstatus(nc->conn) != CONNECTION_OK))
		close_conn(nc, true);
	if (nc->conn == NULL)
		open_conn(nc, role, nodeid);
	return nc;
}

/*
 * Report a command's failure on nc: the node's error (res), with its
 * SQLSTATE, or a lost connection, which is closed.  A statement's error
 * leaves the connection usable.
 */
static void
report_remote_error(IterjobNodeConn *nc, PGresult *res, const char *what)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;
	int			code;

	if (sqlstate == NULL || strlen(sqlstate) != 5 || PQstatus(nc->conn) != CONNECTION_OK)
	{
		message = pchomp(PQerrorMessage(nc->conn));
		if (res)
			PQclear(res);
		close_conn(nc, false);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost the connection to node %s:%d while %s",
						nc->host, nc->port, what),
				 errdetail_internal("%s", message)));
	}
	code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]);
	message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	context = PQresultErrorField(res, PG_DIAG_CONTEXT);
	message = pstrdup(message ? message : "unknown error");
	detail = detail ? pstrdup(detail) : NULL;
	hint = hint ? pstrdup(hint) : NULL;
	context = context ? pstrdup(context) : NULL;
	PQclear(res);
	nc->ready = true;
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 context ? errcontext("%s", context) : 0,
			 errcontext("%s on node %s:%d", what, nc->host, nc->port)));
}

/* Send what PQsend* queued, waiting as needed. */
static void
flush_conn(IterjobNodeConn *nc)
{
	int			rc;

	while ((rc = PQflush(nc->conn)) == 1)
		wait_for_socket(nc->conn, WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE);
	if (rc < 0)
		report_remote_error(nc, NULL, "sending a command");
}

/*
 * The last result of the command in flight on nc, after every other was
 * read; NULL when the command returned none.  The caller PQclears it.
 */
static PGresult *
command_result(IterjobNodeConn *nc)
{
	PGresult   *last = NULL;

	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(nc->conn))
		{
			wait_for_socket(nc->conn, WL_SOCKET_READABLE);
			if (!PQconsumeInput(nc->conn))
			{
				if (last)
					PQclear(last);
				report_remote_error(nc, NULL, "reading a result");
			}
		}
		res = PQgetResult(nc->conn);
		if (res == NULL)
			break;
		if (last)
			PQclear(last);
		last = res;
	}
	return last;
}

static void execute_on_node(IterjobNodeConn *nc, const char *sql, int nparams,
							const char *const *params, IterjobNodeResult *result);

/* The statement name of sql on nc, or -1 if it is not prepared there. */
static int
prepared_index(IterjobNodeConn *nc, const char *sql)
{
	for (int i = 0; i < nc->nprepared; i++)
		if (strcmp(nc->prepared[i], sql) == 0)
			return i;
	return -1;
}

/*
 * Run the statement sql, prepared on nc's connection at its first run
 * there, with nparams text parameters (NULL: SQL NULL), and return its
 * rows as text in *result (palloc'd, in the current memory context).  The
 * node's error becomes this process's error (with its SQLSTATE).
 */
void
iterjob_node_execute(IterjobNodeConn *nc, const char *sql, int nparams,
					 const char *const *params, IterjobNodeResult *result)
{
	Assert(nc->conn != NULL && nc->ready);
	nc->ready = false;			/* until this command's results are read */
	PG_TRY();
	{
		execute_on_node(nc, sql, nparams, params, result);
	}
	PG_CATCH();
	{
		/* interrupted or lost midway: stop the node's work, forget the connection */
		if (!nc->ready)
			close_conn(nc, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	nc->ready = true;
}

static void
execute_on_node(IterjobNodeConn *nc, const char *sql, int nparams,
				const char *const *params, IterjobNodeResult *result)
{
	PGresult   *res;
	int			index = prepared_index(nc, sql);
	char		name[32];

	if (index < 0)
	{
		if (nc->nprepared >= MAX_PREPARED)
		{
			/* a worker that met many jobs: start again */
			if (!PQsendQuery(nc->conn, "DEALLOCATE ALL"))
				report_remote_error(nc, NULL, "deallocating statements");
			flush_conn(nc);
			res = command_result(nc);
			if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
				report_remote_error(nc, res, "deallocating statements");
			PQclear(res);
			for (int i = 0; i < nc->nprepared; i++)
				pfree(nc->prepared[i]);
			nc->nprepared = 0;
		}
		index = nc->nprepared;
		snprintf(name, sizeof(name), "iterjob_%d", index);
		if (!PQsendPrepare(nc->conn, name, sql, nparams, NULL))
			report_remote_error(nc, NULL, "preparing a statement");
		flush_conn(nc);
		res = command_result(nc);
		if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
			report_remote_error(nc, res, "preparing a statement");
		PQclear(res);
		if (nc->prepared == NULL)
			nc->prepared = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * MAX_PREPARED);
		nc->prepared[nc->nprepared++] = MemoryContextStrdup(TopMemoryContext, sql);
	}
	snprintf(name, sizeof(name), "iterjob_%d", index);
	if (!PQsendQueryPrepared(nc->conn, name, nparams, params, NULL, NULL, 0))
		report_remote_error(nc, NULL, "running a statement");
	flush_conn(nc);
	res = command_result(nc);
	if (res == NULL ||
		(PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK))
		report_remote_error(nc, res, "running a statement");

	result->ntuples = PQntuples(res);
	result->nfields = PQnfields(res);
	result->values = palloc0(sizeof(char *) * Max(1, result->ntuples * result->nfields));
	for (int r = 0; r < result->ntuples; r++)
		for (int f = 0; f < result->nfields; f++)
			if (!PQgetisnull(res, r, f))
				result->values[r * result->nfields + f] = pstrdup(PQgetvalue(res, r, f));
	PQclear(res);
}

/*
 * Whether the job settings last set on the connection (as one string, in
 * the caller's words) are not these.
 */
bool
iterjob_node_settings_differ(IterjobNodeConn *nc, const char *settings)
{
	return nc->settings == NULL || strcmp(nc->settings, settings) != 0;
}

/* The connection now has these job settings. */
void
iterjob_node_remember_settings(IterjobNodeConn *nc, const char *settings)
{
	if (nc->settings != NULL)
		pfree(nc->settings);
	nc->settings = MemoryContextStrdup(TopMemoryContext, settings);
}
