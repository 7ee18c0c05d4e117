/*-------------------------------------------------------------------------
 *
 * node_batch.c
 *	  iterjob.node_batch(): one batch of a shard, run on the node that
 *	  holds the shard, in one local transaction: the shard's cursor row in
 *	  iterjob.node_cursor is locked, the next keys after it are read, the
 *	  job's action runs on them and the cursor moves past them.  A worker on
 *	  the coordinator calls it over the connection it keeps to the node, as
 *	  the job's owner, so the batch and its checkpoint commit together with
 *	  one commit on the node, and no two-phase commit is needed.
 *
 *	  The keyset query and the action are the owner's SQL and run as the
 *	  caller; only the cursor row is written as iterjob, with parameters
 *	  only.  A caller reaches the rows of its own role only (the row is
 *	  keyed by the caller's role), so calling the function by hand can do
 *	  nothing the caller's own SQL could not.  The statements are planned
 *	  once per session (the worker's connection) and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "citus/citus_internal.h"

PG_FUNCTION_INFO_V1(iterjob_node_batch);

#define KEPT_NODE_PLANS 32
#define MAX_NODE_PLAN_ARGS 8

typedef struct NodePlan
{
	char	   *sql;			/* in TopMemoryContext; NULL: free slot */
	Oid			argtypes[MAX_NODE_PLAN_ARGS];
	int			nargs;
	SPIPlanPtr	plan;
} NodePlan;

static NodePlan node_plans[KEPT_NODE_PLANS];
static int	next_node_plan = 0;

/* the cursor row: made, or reset when it belongs to an earlier job of that id */
static const char *const claim_cursor_sql =
"INSERT INTO iterjob.node_cursor AS c (job_id, job_stamp, shard_id, owner, cursor)"
" VALUES ($1, $2, $3, $4, $5)"
" ON CONFLICT (job_id, shard_id, owner) DO UPDATE"
"   SET job_stamp = excluded.job_stamp, cursor = excluded.cursor, batches = 0,"
"       rows_done = 0, done = false, updated_at = pg_catalog.now()"
"   WHERE c.job_stamp OPERATOR(pg_catalog.<>) excluded.job_stamp";

/* the cursor row of this job ($4: its stamp), if there is one yet */
static const char *const lock_cursor_sql =
"SELECT cursor, done, rows_done FROM iterjob.node_cursor"
" WHERE job_id OPERATOR(pg_catalog.=) $1 AND shard_id OPERATOR(pg_catalog.=) $2"
"   AND owner OPERATOR(pg_catalog.=) $3 AND job_stamp OPERATOR(pg_catalog.=) $4"
" FOR UPDATE";

static const char *const advance_cursor_sql =
"UPDATE iterjob.node_cursor"
"   SET cursor = $4, batches = batches OPERATOR(pg_catalog.+) 1,"
"       rows_done = rows_done OPERATOR(pg_catalog.+) $5, done = $6,"
"       updated_at = pg_catalog.now()"
" WHERE job_id OPERATOR(pg_catalog.=) $1 AND shard_id OPERATOR(pg_catalog.=) $2"
"   AND owner OPERATOR(pg_catalog.=) $3";

/* whether shard $1 has a placement on this node */
static const char *const placement_here_sql =
"SELECT FROM pg_catalog.pg_dist_placement p"
" WHERE p.shardid OPERATOR(pg_catalog.=) $1"
"   AND p.groupid OPERATOR(pg_catalog.=)"
"       (SELECT groupid FROM pg_catalog.pg_dist_local_group)";

/* The plan of sql for these argument types, kept for the session. */
static SPIPlanPtr
node_plan(const char *sql, int nargs, Oid *argtypes)
{
	NodePlan   *slot;
	SPIPlanPtr	plan;

	Assert(nargs <= MAX_NODE_PLAN_ARGS);
	for (int i = 0; i < KEPT_NODE_PLANS; i++)
	{
		slot = &node_plans[i];
		if (slot->sql != NULL && slot->nargs == nargs &&
			memcmp(slot->argtypes, argtypes, sizeof(Oid) * nargs) == 0 &&
			strcmp(slot->sql, sql) == 0)
			return slot->plan;
	}
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare a statement of iterjob.node_batch: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a plan of iterjob.node_batch");
	slot = &node_plans[next_node_plan];
	next_node_plan = (next_node_plan + 1) % KEPT_NODE_PLANS;
	if (slot->sql != NULL)
	{
		pfree(slot->sql);
		SPI_freeplan(slot->plan);
	}
	slot->sql = MemoryContextStrdup(TopMemoryContext, sql);
	slot->nargs = nargs;
	memcpy(slot->argtypes, argtypes, sizeof(Oid) * nargs);
	slot->plan = plan;
	return plan;
}

/*
 * The next keys: first_query (no cursor yet) with $1 = limit, or
 * next_query with $1 = limit and $2 = after (the text of the last key
 * done).  Leaves them in SPI_tuptable; returns how many.
 */
static uint64
fetch_keys(const char *first_query, const char *next_query, int32 limit,
		   const char *after)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2] = {Int32GetDatum(limit), after ? CStringGetTextDatum(after) : (Datum) 0};
	SPIPlanPtr	plan = after ? node_plan(next_query, 2, types) : node_plan(first_query, 1, types);

	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("the keyset query of iterjob.node_batch must be a SELECT")));
	if (SPI_tuptable->tupdesc->natts != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the keyset query of iterjob.node_batch must return one column")));
	return SPI_processed;
}

/*
 * iterjob.node_batch(job_id, job_stamp, shard_id, first_query, next_query,
 * action, key_type, batch_size, durable, start_after) returns (rows, cursor,
 * done): see the file's comment.  start_after is where the shard's cursor
 * starts when this node has none for it yet (the coordinator's last known
 * cursor, after a shard moved here); job_stamp tells apart jobs of one id
 * (a row of another stamp is an earlier job's, and starts over).
 */
Datum
iterjob_node_batch(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	int64		job_id;
	int64		job_stamp;
	int64		shard_id;
	char	   *first_query;
	char	   *next_query;
	const char *action;
	Oid			key_type;
	int32		batch_size;
	bool		durable;
	char	   *start_after;
	Oid			owner = GetUserId();
	Oid			array_type;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Oid			output;
	bool		varlena;
	IterjobSavedUser saved;
	int			nest;
	char	   *cursor;
	bool		was_done;
	bool		done;
	uint64		n = 0;
	char	   *last = NULL;
	int64		shard_rows;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	HeapTuple	tuple;

	for (int i = 0; i < 9; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("only start_after of iterjob.node_batch may be NULL")));
	job_id = PG_GETARG_INT64(0);
	job_stamp = PG_GETARG_INT64(1);
	shard_id = PG_GETARG_INT64(2);
	first_query = text_to_cstring(PG_GETARG_TEXT_PP(3));
	next_query = text_to_cstring(PG_GETARG_TEXT_PP(4));
	action = text_to_cstring(PG_GETARG_TEXT_PP(5));
	key_type = PG_GETARG_OID(6);
	batch_size = PG_GETARG_INT32(7);
	durable = PG_GETARG_BOOL(8);
	start_after = PG_ARGISNULL(9) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(9));
	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));

	/*
	 * Each statement must see what committed before it: the shard's
	 * placement is read after waiting for a move (shard_action.c).
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("iterjob.node_batch must run in a READ COMMITTED transaction")));
	array_type = get_array_type(key_type);
	if (!OidIsValid(array_type))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key type %s has no array type", format_type_be(key_type))));
	get_typlenbyvalalign(key_type, &typlen, &typbyval, &typalign);
	getTypeOutputInfo(key_type, &output, &varlena);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the shard's cursor row, locked until this transaction ends */
	nest = iterjob_begin_internal(&saved);
	{
		Datum		args[5] = {Int64GetDatum(job_id), Int64GetDatum(job_stamp),
			Int64GetDatum(shard_id), ObjectIdGetDatum(owner),
		start_after ? CStringGetTextDatum(start_after) : (Datum) 0};
		Oid			lock_types[4] = {INT8OID, INT8OID, OIDOID, INT8OID};
		Datum		lock_args[4] = {args[0], args[2], args[3], args[1]};
		bool		isnull;

		/* most batches find the row theirs: made only when it is not */
		if (SPI_execute_plan(node_plan(lock_cursor_sql, 4, lock_types), lock_args, NULL,
							 false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not lock the cursor of shard " INT64_FORMAT, shard_id);
		if (SPI_processed != 1)
		{
			Oid			types[5] = {INT8OID, INT8OID, INT8OID, OIDOID, TEXTOID};
			char		argnulls[5] = {' ', ' ', ' ', ' ', start_after ? ' ' : 'n'};

			if (SPI_execute_plan(node_plan(claim_cursor_sql, 5, types), args, argnulls,
								 false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not record the cursor of shard " INT64_FORMAT, shard_id);
			if (SPI_execute_plan(node_plan(lock_cursor_sql, 4, lock_types), lock_args, NULL,
								 false, 0) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not lock the cursor of shard " INT64_FORMAT, shard_id);
		}
		cursor = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		was_done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  2, &isnull));
		shard_rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												 3, &isnull));
	}
	iterjob_end_internal(nest, &saved);

	done = was_done;
	if (!was_done)
	{
		bool		citus = iterjob_citus_installed();

		if (citus)
			iterjob_lock_shard_metadata(shard_id);
		n = fetch_keys(first_query, next_query, batch_size, cursor);
		if (n > 0)
		{
			Datum	   *keys = palloc(sizeof(Datum) * n);
			Datum		array;
			bool		isnull;
			int			ret;

			if (SPI_gettypeid(SPI_tuptable->tupdesc, 1) != key_type)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("the keyset query of iterjob.node_batch returns %s, not %s",
								format_type_be(SPI_gettypeid(SPI_tuptable->tupdesc, 1)),
								format_type_be(key_type))));
			for (uint64 i = 0; i < n; i++)
			{
				keys[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
				if (isnull)
					ereport(ERROR,
							(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							 errmsg("the keyset query of iterjob.node_batch returned a NULL key")));
				keys[i] = datumCopy(keys[i], typbyval, typlen);
			}
			last = OidOutputFunctionCall(output, keys[n - 1]);
			array = PointerGetDatum(construct_array(keys, (int) n, key_type,
													typlen, typbyval, typalign));
			if (citus)
				action = iterjob_shard_action(action, array_type, shard_id);
			ret = SPI_execute_plan(node_plan(action, 1, &array_type), &array, NULL, false, 0);
			if (ret < 0)
				elog(ERROR, "the action failed: %s", SPI_result_code_string(ret));
		}
		/* a short batch was probably the last: look for one more key */
		done = n == 0 ||
			((int64) n < batch_size && fetch_keys(first_query, next_query, 1, last) == 0);

		/*
		 * The shard must still be here: a shard moved away meanwhile (its
		 * old table lingers until Citus drops it) would have been read
		 * here and changed there.  The lock taken on the shard's metadata
		 * before the keys were read keeps it here until this transaction
		 * ends (shard_action.c).
		 */
		if (n > 0 && citus)
		{
			Oid			type = INT8OID;
			Datum		arg = Int64GetDatum(shard_id);

			nest = iterjob_begin_internal(&saved);
			/* not read-only: a snapshot taken now, after the lock's wait */
			if (SPI_execute_plan(node_plan(placement_here_sql, 1, &type), &arg, NULL,
								 false, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read pg_dist_placement");
			if (SPI_processed != 1)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("shard " INT64_FORMAT " is no longer on this node", shard_id),
						 errdetail("It moved while its batch ran; the batch runs again on its new node.")));
			iterjob_end_internal(nest, &saved);
		}

		{
			Oid			types[6] = {INT8OID, INT8OID, OIDOID, TEXTOID, INT8OID, BOOLOID};
			const char *moved_to = last ? last : cursor;
			Datum		args[6] = {Int64GetDatum(job_id), Int64GetDatum(shard_id),
				ObjectIdGetDatum(owner), moved_to ? CStringGetTextDatum(moved_to) : (Datum) 0,
			Int64GetDatum((int64) n), BoolGetDatum(done)};
			char		argnulls[6] = {' ', ' ', ' ', moved_to ? ' ' : 'n', ' ', ' '};

			nest = iterjob_begin_internal(&saved);
			if (SPI_execute_plan(node_plan(advance_cursor_sql, 6, types), args, argnulls,
								 false, 0) != SPI_OK_UPDATE || SPI_processed != 1)
				elog(ERROR, "could not move the cursor of shard " INT64_FORMAT, shard_id);
			iterjob_end_internal(nest, &saved);
		}
	}

	/*
	 * Batches commit asynchronously: the cursor moves with them, so a batch
	 * lost in a crash is redone, never repeated.  A shard's last batch is
	 * durable, as the coordinator moves on from it.
	 */
	if (!durable && !done)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);

	/* the result, in the caller's memory */
	MemoryContextSwitchTo(caller);
	values[0] = Int64GetDatum((int64) n);
	if (last != NULL || cursor != NULL)
		values[1] = CStringGetTextDatum(last ? last : cursor);
	else
		nulls[1] = true;
	values[2] = BoolGetDatum(done);
	values[3] = Int64GetDatum(shard_rows + (int64) n);
	tuple = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

PG_FUNCTION_INFO_V1(iterjob_node_cursor_of);

/*
 * iterjob.node_cursor_of(job_id, job_stamp, shard_id) returns (found,
 * cursor, done): the cursor this node keeps for the caller's job on that
 * shard, read by a worker that follows the shard to another node.
 */
Datum
iterjob_node_cursor_of(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[4] = {INT8OID, INT8OID, OIDOID, INT8OID};
	Datum		args[4];
	Datum		values[3];
	bool		nulls[3] = {false, true, false};
	TupleDesc	desc;
	IterjobSavedUser saved;
	int			nest;
	char	   *cursor = NULL;
	bool		found;
	bool		done = false;
	HeapTuple	tuple;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the arguments of iterjob.node_cursor_of must not be NULL")));
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(2);
	args[2] = ObjectIdGetDatum(GetUserId());
	args[3] = PG_GETARG_DATUM(1);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	if (SPI_execute_with_args("SELECT cursor, done FROM iterjob.node_cursor"
							  " WHERE job_id OPERATOR(pg_catalog.=) $1"
							  "   AND shard_id OPERATOR(pg_catalog.=) $2"
							  "   AND owner OPERATOR(pg_catalog.=) $3"
							  "   AND job_stamp OPERATOR(pg_catalog.=) $4",
							  4, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read iterjob.node_cursor");
	found = SPI_processed == 1;
	if (found)
	{
		bool		isnull;

		cursor = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  2, &isnull));
	}
	iterjob_end_internal(nest, &saved);

	MemoryContextSwitchTo(caller);
	values[0] = BoolGetDatum(found);
	if (cursor != NULL)
	{
		values[1] = CStringGetTextDatum(cursor);
		nulls[1] = false;
	}
	values[2] = BoolGetDatum(done);
	tuple = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
