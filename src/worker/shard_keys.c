/*-------------------------------------------------------------------------
 *
 * shard_keys.c
 *	  partition => 'shard': the instances of a job over a hash-distributed
 *	  Citus table each iterate whole shards, one after another, and each
 *	  batch's keys come from one shard, read on the node that holds it.
 *
 *	  At enqueue the shards are dealt to the instances node by node, so that
 *	  an instance stays on one node (unless there are fewer instances than
 *	  nodes) and no node gets more than iterjob.max_workers_per_node
 *	  instances; every shard's node is reached
 *	  once then (a node that cannot be reached fails the enqueue).  Before
 *	  each batch the shard's placement is looked up again (a shard moved to
 *	  another node is followed; a shard that is gone, split say, fails the
 *	  batch), and the keyset query runs on that node, on the shard itself,
 *	  over the connection the worker keeps to that node as the job's owner
 *	  (node_connection.c): one call of iterjob.node_batch() there reads
 *	  the keys, runs the action on them and moves the shard's cursor, kept
 *	  on that node, in one transaction of the node (node_batch.c); the
 *	  owner's rights are all it has there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus.h"
#include "worker/worker_internal.h"

/* the shards of $1 with their one placement's node, node by node */
static const char *const shards_sql =
"SELECT s.shardid, n.nodename, n.nodeport,"
"       pg_catalog.shard_name(s.logicalrelid, s.shardid),"
"       pg_catalog.count(*) OVER (PARTITION BY s.shardid)"
"  FROM pg_catalog.pg_dist_shard s"
"  JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
"  JOIN pg_catalog.pg_dist_node n ON n.groupid OPERATOR(pg_catalog.=) p.groupid"
" WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
" ORDER BY n.nodename, n.nodeport, s.shardid";

/* where shard $1 is now */
static const char *const placement_sql =
"SELECT n.nodename, n.nodeport, pg_catalog.shard_name(s.logicalrelid, s.shardid), n.nodeid"
"  FROM pg_catalog.pg_dist_shard s"
"  JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
"  JOIN pg_catalog.pg_dist_node n ON n.groupid OPERATOR(pg_catalog.=) p.groupid"
" WHERE s.shardid OPERATOR(pg_catalog.=) $1";

static SPIPlanPtr placement_plan = NULL;

static const char *const run_on_node_sql =
"SELECT r.success, r.result"
"  FROM pg_catalog.master_run_on_worker(ARRAY[$1], ARRAY[$2], ARRAY[$3], true) AS r";

typedef struct ShardRow
{
	int64		shardid;
	char	   *node;
	int32		port;
	char	   *name;
} ShardRow;

/* Run one command on node:port, as the current user; its one value. */
static char *
run_on_node(const char *node, int32 port, const char *command, bool *success)
{
	Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		args[3];
	bool		isnull;
	char	   *result;

	args[0] = CStringGetTextDatum(node);
	args[1] = Int32GetDatum(port);
	args[2] = CStringGetTextDatum(command);
	if (SPI_execute_with_args(run_on_node_sql, 3, types, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "master_run_on_worker returned no row");
	*success = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	result = isnull ? NULL : SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return result;
}

static void
refuse_shard_partition(const IterjobSpec *spec, const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("partition 'shard' cannot iterate %s",
					OidIsValid(spec->relid) ? get_rel_name(spec->relid) : "a query"),
			 errdetail("%s", why),
			 errhint("%s", hint)));
}

/*
 * Check that spec can be iterated shard by shard, deal its shards to its
 * instances (spec->instances may come out smaller: no more than shards,
 * nor than nodes x iterjob.max_workers_per_node) and estimate its rows
 * from the shards' statistics.  Runs as the caller, SPI connected; shards
 * is allocated in the caller's memory context.
 */
void
iterjob_assign_shards(IterjobSpec *spec, IterjobShards *shards)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(spec->relid);
	ShardRow   *rows;
	int			nrows;
	int			nnodes = 0;
	int		   *node_of;
	int		   *node_shards;
	int		   *node_instances;
	int		   *node_first;
	int		   *dealt;
	int			requested = spec->instances;
	int			total = 0;
	bool		progress = true;
	int64		estimate = 0;

	if (spec->query != NULL || iterjob_citus_partmethod(spec->relid) != 'h')
		refuse_shard_partition(spec, "It is not a hash-distributed Citus table.",
							   "Use partition => 'modulo' or 'range'.");
	if (spec->nkeys != 1)
		refuse_shard_partition(spec, "Its key has more than one column.",
							   "Iterate it by one column (key => 'column'), or use partition => 'modulo'.");

	if (SPI_execute_with_args(shards_sql, 1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the shards of %s", get_rel_name(spec->relid));
	nrows = (int) SPI_processed;
	if (nrows == 0)
		refuse_shard_partition(spec, "It has no shard placements.",
							   "Use partition => 'modulo'.");
	rows = palloc0(sizeof(ShardRow) * nrows);
	node_of = palloc0(sizeof(int) * nrows);
	for (int i = 0; i < nrows; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		rows[i].shardid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rows[i].node = SPI_getvalue(tup, desc, 2);
		rows[i].port = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		rows[i].name = SPI_getvalue(tup, desc, 4);
		if (DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull)) > 1)
			refuse_shard_partition(spec,
								   psprintf("Shard " INT64_FORMAT " has more than one placement (citus.shard_replication_factor > 1).",
											rows[i].shardid),
								   "Use partition => 'modulo', which runs every batch through Citus.");
		if (i == 0 || strcmp(rows[i].node, rows[i - 1].node) != 0 ||
			rows[i].port != rows[i - 1].port)
			nnodes++;
		node_of[i] = nnodes - 1;
	}

	/* reach every shard: its node answers, and says how many rows it has */
	for (int i = 0; i < nrows; i++)
	{
		bool		success;
		char	   *result;

		result = run_on_node(rows[i].node, rows[i].port,
							 psprintf("SELECT GREATEST(c.reltuples, 0)::pg_catalog.int8"
									  " FROM pg_catalog.pg_class c"
									  " WHERE c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.regclass",
									  quote_literal_cstr(rows[i].name)),
							 &success);
		if (!success)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not reach shard " INT64_FORMAT " of %s on node %s:%d",
							rows[i].shardid, get_rel_name(spec->relid),
							rows[i].node, rows[i].port),
					 errdetail("%s", result ? result : "no detail"),
					 errhint("A job over a distributed table reaches every shard when it is enqueued; enqueue it again once the node is back.")));
		if (result != NULL)
			estimate += pg_strtoint64(result);
	}

	/* instances, node by node in turn, at most the cap per node */
	node_shards = palloc0(sizeof(int) * nnodes);
	node_instances = palloc0(sizeof(int) * nnodes);
	node_first = palloc0(sizeof(int) * nnodes);
	dealt = palloc0(sizeof(int) * nnodes);
	for (int i = 0; i < nrows; i++)
		node_shards[node_of[i]]++;
	while (progress && total < requested)
	{
		progress = false;
		for (int n = 0; n < nnodes && total < requested; n++)
		{
			if (node_instances[n] < node_shards[n] &&
				(iterjob_max_workers_per_node <= 0 ||
				 node_instances[n] < iterjob_max_workers_per_node))
			{
				node_instances[n]++;
				total++;
				progress = true;
			}
		}
	}
	if (total == 0)
		elog(ERROR, "no instance could be given a shard of %s", get_rel_name(spec->relid));
	for (int n = 1; n < nnodes; n++)
		node_first[n] = node_first[n - 1] + node_instances[n - 1];

	/* for the caller, past SPI_finish() */
	shards->n = nrows;
	shards->ids = SPI_palloc(sizeof(int64) * nrows);
	shards->instance = SPI_palloc(sizeof(int32) * nrows);
	for (int i = 0, spread = 0; i < nrows; i++)
	{
		int			n = node_of[i];

		shards->ids[i] = rows[i].shardid;
		if (node_instances[n] > 0)
			shards->instance[i] = node_first[n] + dealt[n]++ % node_instances[n];
		else
		{
			/* fewer instances than nodes: this node's shards go to them all */
			shards->instance[i] = spread++ % total;
		}
	}
	if (total < requested)
		ereport(NOTICE,
				(errmsg("the job over %s runs %d instances, not %d",
						get_rel_name(spec->relid), total, requested),
				 errdetail("It has %d shards on %d nodes, and iterjob.max_workers_per_node is %d.",
						   nrows, nnodes, iterjob_max_workers_per_node)));
	spec->instances = total;
	spec->rows_total = estimate;
}

/* the node nodeid's host and port, as iterjob; false if it is gone */
static bool
node_address(int32 nodeid, char **host, int32 *port)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(nodeid);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		found;

	if (SPI_execute_with_args("SELECT nodename, nodeport FROM pg_catalog.pg_dist_node"
							  " WHERE nodeid OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_node");
	found = SPI_processed == 1;
	if (found)
	{
		bool		isnull;

		*host = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		*port = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											2, &isnull));
	}
	iterjob_end_internal(nest, &saved);
	return found;
}

/*
 * The shard moved from the node that kept its cursor: read that cursor
 * there (as the owner), for the new node to start after it.  Sets *done
 * when the shard was done there.
 */
static char *
cursor_left_behind(IterjobTask *task, int64 shardid, bool *done)
{
	char	   *host;
	int32		port;
	char		job[32];
	char		stamp[32];
	char		shard[32];
	const char *params[3] = {job, stamp, shard};
	IterjobNodeConn *conn;
	IterjobNodeResult result;

	if (!node_address(task->shard_node, &host, &port))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of %s moved from node %d, which has left the cluster",
						shardid, get_rel_name(task->spec.relid), task->shard_node),
				 errdetail("That node kept how far the job got in the shard."),
				 errhint("Cancel the job and enqueue it again.")));
	snprintf(job, sizeof(job), INT64_FORMAT, task->job_id);
	snprintf(stamp, sizeof(stamp), INT64_FORMAT, task->job_stamp);
	snprintf(shard, sizeof(shard), INT64_FORMAT, shardid);
	conn = iterjob_node_connection(host, port, task->shard_node,
								   GetUserNameFromId(task->owner, false));
	iterjob_node_execute(conn, "SELECT found, cursor, done FROM iterjob.node_cursor_of($1::pg_catalog.int8,"
						 " $2::pg_catalog.int8, $3::pg_catalog.int8)",
						 3, params, &result);
	if (result.ntuples != 1 || result.nfields != 3)
		elog(ERROR, "iterjob.node_cursor_of returned no row");
	*done = result.values[2] != NULL && strcmp(result.values[2], "t") == 0;
	/* no row: no batch of the shard committed there */
	if (result.values[0] == NULL || strcmp(result.values[0], "t") != 0)
		return task->shard_seed;
	return result.values[1];
}

/*
 * The job's statement_timeout and lock_timeout bound its batches on the
 * node (the worker lets a batch in flight on a node finish: see
 * task_runner.c), and its search_path resolves the names of its SQL there
 * as on the coordinator; its batches there are READ COMMITTED (whatever
 * the owner's default), as node_batch.c needs: set on the connection when
 * they are not what it has.
 */
static void
set_node_settings(IterjobNodeConn *conn, const IterjobTask *task)
{
	const IterjobSpec *spec = &task->spec;
	char		statement_ms[32];
	char		lock_ms[32];
	char	   *search_path = iterjob_owner_search_path(task->search_path);
	const char *params[3] = {statement_ms, lock_ms, search_path};
	char	   *settings;
	IterjobNodeResult result;

	snprintf(statement_ms, sizeof(statement_ms), "%dms",
			 iterjob_batch_timeout_ms(spec->statement_timeout_ms));
	snprintf(lock_ms, sizeof(lock_ms), "%dms", spec->lock_timeout_ms);
	settings = psprintf("%s/%s/%s", statement_ms, lock_ms, search_path);
	if (!iterjob_node_settings_differ(conn, settings))
		return;
	iterjob_node_execute(conn, "SELECT pg_catalog.set_config('statement_timeout', $1, false),"
						 " pg_catalog.set_config('lock_timeout', $2, false),"
						 " pg_catalog.set_config('search_path', $3, false),"
						 " pg_catalog.set_config('default_transaction_isolation',"
						 "                       'read committed', false)",
						 3, params, &result);
	iterjob_node_remember_settings(conn, settings);
}

/*
 * Where shard shardid of spec's table is now: its node's host, port and
 * id, and the shard's table's name there.  As iterjob; SPI connected.
 */
void
iterjob_shard_placement(const IterjobSpec *spec, int64 shardid, char **host,
						int32 *port, char **name, int32 *nodeid)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shardid);
	IterjobSavedUser saved;
	bool		isnull;
	int			nest = iterjob_begin_internal(&saved);

	if (iterjob_execute_kept(iterjob_kept_plan(&placement_plan, placement_sql, 1, &type),
							 &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the placement of shard " INT64_FORMAT, shardid);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of %s %s", shardid,
						get_rel_name(spec->relid),
						SPI_processed == 0 ? "no longer exists" : "has more than one placement"),
				 errdetail("Shards cannot be split, or replicated, while a job iterates them shard by shard; moving one is fine."),
				 errhint("Cancel the job and enqueue it again.")));
	*host = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*port = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	*name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	*nodeid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	iterjob_end_internal(nest, &saved);

	/*
	 * Citus leaves the schema public out of the name: named in full, the
	 * shard is found whatever the search_path on the node.
	 */
	if (list_length(stringToQualifiedNameList(*name, NULL)) == 1)
		*name = psprintf("%s.%s",
						 quote_identifier(get_namespace_name(get_rel_namespace(spec->relid))),
						 *name);
}

/*
 * Run one batch of the task's current shard on the node that holds it,
 * in one transaction there (iterjob.node_batch): the keyset query, the
 * action and the shard's cursor, committed together by the node.  Before
 * the first batch of a shard, and when the shard has moved to another
 * node, the task records (durably, in the caller's transaction) which
 * node keeps the shard's cursor, and no batch runs: *recorded is set and
 * the caller commits.  Otherwise fills *r.  SPI connected, inside the
 * worker's transaction.
 */
void
iterjob_run_node_batch(IterjobTask *task, bool durable, IterjobNodeBatch *r,
					   bool *recorded)
{
	IterjobSpec *spec = &task->spec;
	int64		shardid = task->shards[task->shard_index];
	IterjobSavedUser saved;
	char	   *node;
	int32		port;
	char	   *name;
	int32		nodeid;
	int			nest;
	char		job[32];
	char		stamp[32];
	char		shard[32];
	char		batch_size[16];
	const char *params[10];
	IterjobNodeConn *conn;
	IterjobNodeResult result;

	*recorded = false;
	memset(r, 0, sizeof(*r));

	iterjob_shard_placement(spec, shardid, &node, &port, &name, &nodeid);

	if (nodeid != task->shard_node)
	{
		char	   *seed = NULL;
		bool		done = false;

		/*
		 * A shard begun by a version of iterjob that kept its cursor here
		 * (committed with each batch through two-phase commit) goes on
		 * from that cursor.
		 */
		if (task->shard_node == 0 && task->stored_cursor.present &&
			task->stored_cursor.text[0] != NULL)
			seed = task->stored_cursor.text[0];
		/* a shard that moved: its cursor so far is on the node it left */
		if (task->shard_node != 0)
		{
			nest = iterjob_begin_owner_section(task->owner, task->search_path,
											   spec->lock_timeout_ms, false, &saved);
			seed = cursor_left_behind(task, shardid, &done);
			iterjob_end_owner_section(nest, &saved);
		}
		if (done)
		{
			r->done = true;
			return;
		}
		if (!iterjob_record_shard_node(task, nodeid, seed))
			r->stopped = true;
		*recorded = true;
		task->shard_node = nodeid;
		task->shard_seed = seed ? MemoryContextStrdup(task->cxt, seed) : NULL;
		return;
	}

	/* the batch, as the owner, on the owner's connection to the node */
	nest = iterjob_begin_owner_section(task->owner, task->search_path,
									   spec->lock_timeout_ms, false, &saved);
	iterjob_guard_relation(task);
	snprintf(job, sizeof(job), INT64_FORMAT, task->job_id);
	snprintf(stamp, sizeof(stamp), INT64_FORMAT, task->job_stamp);
	snprintf(shard, sizeof(shard), INT64_FORMAT, shardid);
	snprintf(batch_size, sizeof(batch_size), "%d", task->throttle.batch_size);
	params[0] = job;
	params[1] = stamp;
	params[2] = shard;
	params[3] = iterjob_shard_keyset_query(spec, name, false);
	params[4] = iterjob_shard_keyset_query(spec, name, true);
	params[5] = spec->action;
	params[6] = iterjob_type_sql(spec->key_types[0]);
	params[7] = batch_size;
	params[8] = durable ? "true" : "false";
	params[9] = task->shard_seed;
	conn = iterjob_node_connection(node, port, nodeid, GetUserNameFromId(task->owner, false));
	set_node_settings(conn, task);
	iterjob_node_execute(conn, "SELECT rows_done, cursor, done, shard_rows FROM iterjob.node_batch("
						 "$1::pg_catalog.int8, $2::pg_catalog.int8, $3::pg_catalog.int8,"
						 " $4, $5, $6, $7::pg_catalog.regtype, $8::pg_catalog.int4,"
						 " $9::pg_catalog.bool, $10)",
						 10, params, &result);
	iterjob_end_owner_section(nest, &saved);
	if (result.ntuples != 1 || result.nfields != 4 || result.values[0] == NULL ||
		result.values[3] == NULL)
		elog(ERROR, "iterjob.node_batch returned no row");
	r->rows = pg_strtoint64(result.values[0]);
	r->shard_rows = pg_strtoint64(result.values[3]);
	r->cursor = result.values[1];
	r->done = result.values[2] != NULL && strcmp(result.values[2], "t") == 0;
}
