/*-------------------------------------------------------------------------
 *
 * task_claim.c
 *	  Claiming a runnable task of one owner (or of any, for a worker's
 *	  first claim), and reading a job's definition.
 *
 *	  A task is runnable when it is queued, or marked running while no live
 *	  worker holds it (its worker died, or left it for another job;
 *	  worker_slot.c).  Which job a claim takes from is fairness.c's choice.
 *	  Claims take the
 *	  task row FOR UPDATE SKIP LOCKED, so concurrent workers never wait on
 *	  each other, and hold the task, so it is worked by at most one worker
 *	  at a time.  Called inside a transaction, with SPI connected, in an
 *	  internal section: everything here reads iterjob's tables and the
 *	  catalogs only.  The cursor is read as jsonb and text; turning it into
 *	  values of the key's types (their input functions, a domain's checks)
 *	  is left to the owner (owner_statements.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/* A job's definition, as columns read by read_job_columns() */
#define JOB_COLUMNS_SQL \
"       j.relation::pg_catalog.oid, j.query, j.key_columns,"\
"       j.key_types::pg_catalog.oid[], j.filter, j.action, j.instances,"\
"       j.batch_size, j.owner, j.search_path, j.max_attempts,"\
"       (pg_catalog.date_part('epoch', j.statement_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       (pg_catalog.date_part('epoch', j.lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       j.partition, j.follow, j.upper_bound,"\
"       j.on_complete, j.on_instance_complete,"\
"       (pg_catalog.date_part('epoch', j.batch_pause) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       COALESCE(j.max_rows_per_second, 0),"\
"       COALESCE(pg_catalog.date_part('epoch', j.target_batch_time) OPERATOR(pg_catalog.*) 1000, 0)::pg_catalog.int4,"\
"       j.key_opclasses, j.key_collations, j.key_descending, j.key_nulls_first,"\
"       j.health_check, COALESCE(j.max_wal_per_second, 0)"

/* their positions, counted from the first */
enum
{
	JCOL_RELATION,
	JCOL_QUERY,
	JCOL_KEY_COLUMNS,
	JCOL_KEY_TYPES,
	JCOL_FILTER,
	JCOL_ACTION,
	JCOL_INSTANCES,
	JCOL_BATCH_SIZE,
	JCOL_OWNER,
	JCOL_SEARCH_PATH,
	JCOL_MAX_ATTEMPTS,
	JCOL_STATEMENT_TIMEOUT,
	JCOL_LOCK_TIMEOUT,
	JCOL_PARTITION,
	JCOL_FOLLOW,
	JCOL_UPPER_BOUND,
	JCOL_ON_COMPLETE,
	JCOL_ON_INSTANCE_COMPLETE,
	JCOL_BATCH_PAUSE,
	JCOL_MAX_ROWS_PER_SECOND,
	JCOL_TARGET_BATCH_TIME,
	JCOL_KEY_OPCLASSES,
	JCOL_KEY_COLLATIONS,
	JCOL_KEY_DESCENDING,
	JCOL_KEY_NULLS_FIRST,
	JCOL_HEALTH_CHECK,
	JCOL_MAX_WAL_PER_SECOND
};

static const char *const lock_orphan_sql =
"SELECT id FROM iterjob.task"
" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'"
"   FOR UPDATE SKIP LOCKED";

/*
 * The queued tasks of job $1 we can lock, in instance order (fairness.c
 * chose the job).  Fetched one at a time: a claim locks only the row it
 * takes (and those whose previous worker still holds them), never a
 * sibling that another worker, started for it, is about to claim.
 */
static const char *const queued_sql =
"SELECT t.id FROM iterjob.task t"
" WHERE t.job_id OPERATOR(pg_catalog.=) $1 AND t.state OPERATOR(pg_catalog.=) 'queued'"
" ORDER BY t.instance"
"   FOR UPDATE OF t SKIP LOCKED";

/*
 * Runnable tasks other than $1: one queued (of a job that waits for no
 * other), or those marked running (runnable when no worker holds them).
 */
static const char *const more_queued_sql =
"SELECT t.id, true FROM iterjob.task t"
" WHERE t.state OPERATOR(pg_catalog.=) 'queued' AND t.id OPERATOR(pg_catalog.<>) $1"
"   AND NOT EXISTS (SELECT FROM iterjob.job w, iterjob.job p"
"                    WHERE w.id OPERATOR(pg_catalog.=) t.job_id"
"                      AND p.id OPERATOR(pg_catalog.=) ANY (w.after)"
"                      AND p.state OPERATOR(pg_catalog.<>) 'succeeded')"
" LIMIT 1";
static const char *const more_running_sql =
"SELECT t.id, false FROM iterjob.task t"
" WHERE t.state OPERATOR(pg_catalog.=) 'running' AND t.id OPERATOR(pg_catalog.<>) $1";

/* the claimed task with its job */
static const char *const task_sql =
"SELECT t.id, t.job_id, t.instance,"
"       NULLIF(t.cursor OPERATOR(pg_catalog.->) 'inner_cursor', 'null'::pg_catalog.jsonb),"
"       t.batches_done,"
"       t.range_start, t.range_end, t.range_empty,"
"       t.shards, pg_catalog.array_position(t.shards,"
"                 (t.cursor OPERATOR(pg_catalog.->>) 'shard')::pg_catalog.int8),"
"       (t.cursor OPERATOR(pg_catalog.->>) 'node')::pg_catalog.int4,"
"       t.cursor OPERATOR(pg_catalog.->>) 'seed',"
"       (pg_catalog.date_part('epoch', j.created_at) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,"
JOB_COLUMNS_SQL
"  FROM iterjob.task t JOIN iterjob.job j ON j.id OPERATOR(pg_catalog.=) t.job_id"
" WHERE t.id OPERATOR(pg_catalog.=) $1";

/*
 * task_sql's columns.  A task's cursor holds "inner_cursor": null until its
 * first batch commits: no cursor.
 */
enum
{
	COL_TASK_ID = 1,
	COL_JOB_ID,
	COL_INSTANCE,
	COL_CURSOR,
	COL_BATCHES_DONE,
	COL_RANGE_START,
	COL_RANGE_END,
	COL_RANGE_EMPTY,
	COL_SHARDS,
	COL_SHARD_POSITION,
	COL_SHARD_NODE,
	COL_SHARD_SEED,
	COL_JOB_STAMP,
	COL_JOB						/* JOB_COLUMNS_SQL start here */
};

static const char *const mark_running_sql =
"WITH t AS ("
"  UPDATE iterjob.task"
"     SET state = 'running', worker_pid = $2,"
"         started_at = COALESCE(started_at, pg_catalog.now()),"
"         updated_at = pg_catalog.clock_timestamp()"
"   WHERE id OPERATOR(pg_catalog.=) $1 RETURNING job_id)"
"UPDATE iterjob.job j SET state = 'running', started_at = pg_catalog.now()"
"  FROM t WHERE j.id OPERATOR(pg_catalog.=) t.job_id"
"   AND j.state OPERATOR(pg_catalog.=) 'queued'"
" RETURNING j.instances, COALESCE(j.relation::pg_catalog.text, 'a query')";

/* their kept plans (kept_plans.c) */
static SPIPlanPtr lock_orphan_plan = NULL;
static SPIPlanPtr queued_plan = NULL;
static SPIPlanPtr more_queued_plan = NULL;
static SPIPlanPtr more_running_plan = NULL;
static SPIPlanPtr task_plan = NULL;
static SPIPlanPtr mark_running_plan = NULL;

static Datum
column(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	return SPI_getbinval(tup, desc, col, isnull);
}

static int32
int4_column(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = column(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

static int64
int8_column(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = column(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* The job's key columns and types, from two parallel arrays. */
static void
read_keys(IterjobSpec *spec, HeapTuple tup, TupleDesc desc, int first)
{
	bool		isnull;
	Datum	   *names;
	Datum	   *types;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(column(tup, desc, first + JCOL_KEY_COLUMNS, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
	spec->nkeys = Min(n, ITERJOB_MAX_KEYS);
	for (int i = 0; i < spec->nkeys; i++)
		spec->key_names[i] = TextDatumGetCString(names[i]);
	deconstruct_array(DatumGetArrayTypeP(column(tup, desc, first + JCOL_KEY_TYPES, &isnull)),
					  OIDOID, sizeof(Oid), true, TYPALIGN_INT, &types, NULL, &n);
	for (int i = 0; i < spec->nkeys && i < n; i++)
		spec->key_types[i] = DatumGetObjectId(types[i]);
}

/* An array column of the key's order, NULL for jobs enqueued before 0.4. */
static void
read_order_array(HeapTuple tup, TupleDesc desc, int col, Oid elemtype,
				 int nkeys, Datum *out)
{
	bool		isnull;
	Datum		d = column(tup, desc, col, &isnull);
	Datum	   *elems;
	int			n;

	for (int i = 0; i < nkeys; i++)
		out[i] = (Datum) 0;
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), elemtype,
					  elemtype == BOOLOID ? 1 : sizeof(Oid), true,
					  elemtype == BOOLOID ? TYPALIGN_CHAR : TYPALIGN_INT,
					  &elems, NULL, &n);
	for (int i = 0; i < nkeys && i < n; i++)
		out[i] = elems[i];
}

static void
read_key_order(IterjobSpec *spec, HeapTuple tup, TupleDesc desc, int first)
{
	Datum		v[ITERJOB_MAX_KEYS];

	read_order_array(tup, desc, first + JCOL_KEY_OPCLASSES, OIDOID, spec->nkeys, v);
	for (int i = 0; i < spec->nkeys; i++)
		spec->key_opclasses[i] = DatumGetObjectId(v[i]);
	read_order_array(tup, desc, first + JCOL_KEY_COLLATIONS, OIDOID, spec->nkeys, v);
	for (int i = 0; i < spec->nkeys; i++)
		spec->key_collations[i] = DatumGetObjectId(v[i]);
	read_order_array(tup, desc, first + JCOL_KEY_DESCENDING, BOOLOID, spec->nkeys, v);
	for (int i = 0; i < spec->nkeys; i++)
		spec->key_descending[i] = DatumGetBool(v[i]);
	read_order_array(tup, desc, first + JCOL_KEY_NULLS_FIRST, BOOLOID, spec->nkeys, v);
	for (int i = 0; i < spec->nkeys; i++)
		spec->key_nulls_first[i] = DatumGetBool(v[i]);
}

/*
 * Read JOB_COLUMNS_SQL, starting at column first, into spec, *owner and
 * *search_path, allocating in the current memory context.  The key's order
 * is not resolved: that reads catalogs a schema change may have taken
 * away, which a worker notices in a batch (schema_guard.c), not while it
 * claims.
 */
static void
read_job_columns(HeapTuple tup, TupleDesc desc, int first, IterjobSpec *spec,
				 Oid *owner, char **search_path)
{
	bool		isnull;
	char	   *partition;

	spec->relid = DatumGetObjectId(column(tup, desc, first + JCOL_RELATION, &isnull));
	if (isnull)
		spec->relid = InvalidOid;
	spec->query = SPI_getvalue(tup, desc, first + JCOL_QUERY);
	read_keys(spec, tup, desc, first);
	spec->filter = SPI_getvalue(tup, desc, first + JCOL_FILTER);
	spec->action = SPI_getvalue(tup, desc, first + JCOL_ACTION);
	spec->instances = int4_column(tup, desc, first + JCOL_INSTANCES);
	spec->batch_size = int4_column(tup, desc, first + JCOL_BATCH_SIZE);
	*owner = DatumGetObjectId(column(tup, desc, first + JCOL_OWNER, &isnull));
	*search_path = SPI_getvalue(tup, desc, first + JCOL_SEARCH_PATH);
	spec->max_attempts = int4_column(tup, desc, first + JCOL_MAX_ATTEMPTS);
	spec->statement_timeout_ms = int4_column(tup, desc, first + JCOL_STATEMENT_TIMEOUT);
	spec->lock_timeout_ms = int4_column(tup, desc, first + JCOL_LOCK_TIMEOUT);
	partition = SPI_getvalue(tup, desc, first + JCOL_PARTITION);
	spec->partition = strcmp(partition, "range") == 0 ? ITERJOB_PARTITION_RANGE :
		strcmp(partition, "shard") == 0 ? ITERJOB_PARTITION_SHARD : ITERJOB_PARTITION_MODULO;
	spec->follow = DatumGetBool(column(tup, desc, first + JCOL_FOLLOW, &isnull));
	iterjob_key_value_from_row(spec, tup, desc, first + JCOL_UPPER_BOUND,
							   &spec->upper_bound, CurrentMemoryContext);
	spec->on_complete = SPI_getvalue(tup, desc, first + JCOL_ON_COMPLETE);
	spec->on_instance_complete = SPI_getvalue(tup, desc, first + JCOL_ON_INSTANCE_COMPLETE);
	spec->batch_pause_ms = int4_column(tup, desc, first + JCOL_BATCH_PAUSE);
	spec->max_rows_per_second = int4_column(tup, desc, first + JCOL_MAX_ROWS_PER_SECOND);
	spec->target_batch_ms = int4_column(tup, desc, first + JCOL_TARGET_BATCH_TIME);
	read_key_order(spec, tup, desc, first);
	spec->health_check = SPI_getvalue(tup, desc, first + JCOL_HEALTH_CHECK);
	spec->max_wal_per_second = int8_column(tup, desc, first + JCOL_MAX_WAL_PER_SECOND);
}

/* partition => 'shard': the task's shards, and the one its cursor is on */
static void
read_shards(IterjobTask *task, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		shards = column(tup, desc, COL_SHARDS, &isnull);
	Datum	   *elems;

	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(shards), INT8OID, sizeof(int64), true,
					  TYPALIGN_DOUBLE, &elems, NULL, &task->nshards);
	task->shards = palloc(sizeof(int64) * Max(task->nshards, 1));
	for (int i = 0; i < task->nshards; i++)
		task->shards[i] = DatumGetInt64(elems[i]);
	task->shard_index = Max(int4_column(tup, desc, COL_SHARD_POSITION), 1) - 1;
	(void) column(tup, desc, COL_SHARD_NODE, &isnull);
	task->shard_node = isnull ? 0 : int4_column(tup, desc, COL_SHARD_NODE);
	task->shard_seed = SPI_getvalue(tup, desc, COL_SHARD_SEED);
	task->job_stamp = int8_column(tup, desc, COL_JOB_STAMP);
}

static IterjobTask *
task_from_row(HeapTuple tup, TupleDesc desc, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "iterjob task",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	IterjobTask *task = palloc0(sizeof(IterjobTask));
	bool		isnull;

	task->cxt = cxt;
	task->cursor_cxt = AllocSetContextCreate(cxt, "iterjob cursor",
											 ALLOCSET_SMALL_SIZES);
	task->task_id = int8_column(tup, desc, COL_TASK_ID);
	task->job_id = int8_column(tup, desc, COL_JOB_ID);
	task->instance = int4_column(tup, desc, COL_INSTANCE);
	task->batches_done = int8_column(tup, desc, COL_BATCHES_DONE);
	read_job_columns(tup, desc, COL_JOB, &task->spec, &task->owner, &task->search_path);
	iterjob_key_value_from_row(&task->spec, tup, desc, COL_RANGE_START, &task->range.lower, cxt);
	iterjob_key_value_from_row(&task->spec, tup, desc, COL_RANGE_END, &task->range.upper, cxt);
	task->range.empty = DatumGetBool(column(tup, desc, COL_RANGE_EMPTY, &isnull));
	iterjob_key_value_from_row(&task->spec, tup, desc, COL_CURSOR, &task->stored_cursor, cxt);
	read_shards(task, tup, desc);
	task->owner_is_superuser = superuser_arg(task->owner);
	task->trails = iterjob_key_is_ascending_integer(&task->spec);
	iterjob_throttle_init(&task->throttle, &task->spec);
	MemoryContextSwitchTo(old);
	return task;
}

/*
 * Load a job's definition (SPI connected, as superuser).  Returns false if
 * there is no such job.
 */
bool
iterjob_load_job(int64 job_id, IterjobSpec *spec, Oid *owner, char **search_path)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext old;

	if (SPI_execute_with_args("SELECT " JOB_COLUMNS_SQL " FROM iterjob.job j"
							  " WHERE j.id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read iterjob job " INT64_FORMAT, job_id);
	if (SPI_processed == 0)
		return false;
	memset(spec, 0, sizeof(*spec));
	old = MemoryContextSwitchTo(cxt);
	read_job_columns(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, spec, owner,
					 search_path);
	iterjob_resolve_key_order(spec);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * A task of the job marked running that no worker holds (its worker died,
 * or left it for another job), locked and held, or 0.
 */
static int64
claim_orphan(const IterjobJobTasks *tasks)
{
	Oid			type = INT8OID;

	for (int i = 0; i < tasks->norphans; i++)
	{
		Datum		arg = Int64GetDatum(tasks->orphans[i]);

		CHECK_FOR_INTERRUPTS();
		if (!iterjob_hold_task(tasks->orphans[i]))
			continue;			/* a live worker holds it */
		if (iterjob_execute_kept(iterjob_kept_plan(&lock_orphan_plan, lock_orphan_sql, 1, &type),
							 &arg, NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
			return tasks->orphans[i];
		iterjob_release_task();
	}
	return 0;
}

/*
 * The first queued task of job_id we can lock, held, or 0.  Sets *busy
 * when a queued task was still held: its previous worker is leaving it
 * (the task was paused and resumed, or failed and retried, meanwhile); or
 * when none could be locked, although the job had queued tasks when the
 * claim began (the caller saw one): another worker's claim in flight has
 * them, and may leave one.
 */
static int64
claim_queued(int64 job_id, bool *busy)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	Portal		portal = iterjob_open_kept(iterjob_kept_plan(&queued_plan, queued_sql, 1, &type),
										   &arg, false);
	int64		claimed = 0;
	bool		locked_any = false;

	while (claimed == 0)
	{
		int64		task_id;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		locked_any = true;
		task_id = int8_column(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (iterjob_hold_task(task_id))
			claimed = task_id;
		else
			*busy = true;
	}
	SPI_cursor_close(portal);
	if (!locked_any)
		*busy = true;
	return claimed;
}

/*
 * Does sql (with one parameter) list a runnable task: queued, or running
 * with no worker holding it?  On a fresh snapshot, taken after the claim
 * locked its row: a job committed while the claim began is seen, and gets
 * its worker.
 */
static bool
lists_runnable(SPIPlanPtr *plan, const char *sql, Datum arg)
{
	Oid			type = INT8OID;

	if (iterjob_execute_kept(iterjob_kept_plan(plan, sql, 1, &type), &arg, NULL,
						 false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for runnable iterjob tasks");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		bool		queued = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 2, &isnull));

		if (queued || !iterjob_task_is_held(MyDatabaseId,
											int8_column(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1)))
			return true;
	}
	return false;
}

/*
 * Claim a runnable task of owner (InvalidOid: of any owner), from the first
 * job fairness.c ranks that has one; within a job, one whose worker died
 * or left it first (so interrupted work resumes first), else the first
 * queued one.  Returns NULL if there is none, or if another owner's job
 * comes first (*others then says so: a fresh worker must take it, and it
 * says too whether another owner's job has runnable tasks when this owner
 * has none); *busy then says whether a queued task was only held back by
 * its previous worker, which is about to let it go.  *more says whether
 * runnable tasks besides the one claimed wait.  The task is held from here
 * on (until iterjob_release_task(), or the end of the process), and the
 * worker's slot names it before the claim commits.
 */
IterjobTask *
iterjob_claim_task(MemoryContext parent, Oid owner, bool *busy, bool *others,
				   bool *more)
{
	IterjobTask *task;
	IterjobRanking ranking;
	IterjobActiveJob *job;
	IterjobJobTasks tasks;
	int64		claimed = 0;
	bool		first = true;
	bool		other_owner = false;
	Datum		args[2];
	Oid			argtypes[2] = {INT8OID, INT4OID};

	*busy = false;
	*others = false;
	*more = false;
	iterjob_rank_begin(&ranking, owner);
	while (claimed == 0 &&
		   (job = iterjob_next_ranked_job(&ranking, other_owner, &tasks)) != NULL)
	{
		other_owner = OidIsValid(owner) && job->owner != owner;
		if (other_owner)
		{
			*others = true;
			/* it should have the next worker: leave it to a fresh one */
			if (first)
				return NULL;
			continue;
		}
		first = false;
		claimed = claim_orphan(&tasks);
		if (claimed == 0 && tasks.queued != 0)
			claimed = claim_queued(job->job_id, busy);
	}
	if (claimed == 0)
		return NULL;
	*more = lists_runnable(&more_queued_plan, more_queued_sql, Int64GetDatum(claimed)) ||
		lists_runnable(&more_running_plan, more_running_sql, Int64GetDatum(claimed));

	args[0] = Int64GetDatum(claimed);
	/* a fresh snapshot: the row as it is now that it is locked */
	if (iterjob_execute_kept(iterjob_kept_plan(&task_plan, task_sql, 1, argtypes),
						 args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read iterjob task " INT64_FORMAT, claimed);
	task = task_from_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, parent);
	task->died = iterjob_take_death(task->task_id, &task->death);
	iterjob_slot_set_owner(task->owner);
	iterjob_slot_set_task(task->job_id, task->instance, task->batches_done);

	args[0] = Int64GetDatum(task->task_id);
	args[1] = Int32GetDatum(MyProcPid);
	if (iterjob_execute_kept(iterjob_kept_plan(&mark_running_plan, mark_running_sql, 2, argtypes),
						 args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not mark iterjob task " INT64_FORMAT " running",
			 task->task_id);
	if (SPI_processed == 1)
		ereport(LOG,
				(errmsg("iterjob: job " INT64_FORMAT " started: %s instances over %s",
						task->job_id,
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2))));
	return task;
}
