/*-------------------------------------------------------------------------
 *
 * task_claim.c
 *	  Claiming a runnable task, and recording that a task ended (which may
 *	  end its job).
 *
 *	  A task is runnable when it is queued, or marked running while no live
 *	  worker holds its task lock (its worker died).  Claims take the task
 *	  row FOR UPDATE SKIP LOCKED, so concurrent workers never wait on each
 *	  other, and then the task lock, so a task is worked by at most one
 *	  worker at a time.  Both are called inside a transaction, with SPI
 *	  connected, as the worker's superuser identity.
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
#include "task.h"

#define CLAIM_FETCH_SIZE 8

/* A job's definition, as columns read by read_job_columns() */
#define JOB_COLUMNS_SQL \
"       j.relation::pg_catalog.oid, j.query, j.key_columns,"\
"       j.key_types::pg_catalog.oid[], j.filter, j.action, j.instances,"\
"       j.batch_size, j.owner, j.search_path, j.max_attempts,"\
"       (pg_catalog.date_part('epoch', j.statement_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       (pg_catalog.date_part('epoch', j.lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       j.partition, j.follow, j.upper_bound, iterjob.key_texts(j.upper_bound),"\
"       j.on_complete, j.on_instance_complete,"\
"       (pg_catalog.date_part('epoch', j.batch_pause) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"\
"       COALESCE(j.max_rows_per_second, 0),"\
"       COALESCE(pg_catalog.date_part('epoch', j.target_batch_time) OPERATOR(pg_catalog.*) 1000, 0)::pg_catalog.int4"

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
	JCOL_UPPER_BOUND,			/* and its texts */
	JCOL_ON_COMPLETE = JCOL_UPPER_BOUND + 2,
	JCOL_ON_INSTANCE_COMPLETE,
	JCOL_BATCH_PAUSE,
	JCOL_MAX_ROWS_PER_SECOND,
	JCOL_TARGET_BATCH_TIME
};

/*
 * Candidates go through the partial index on runnable tasks, so claims cost
 * the same however many finished tasks pile up.  Tasks marked running are
 * looked at without a row lock (their live workers checkpoint them);
 * only one whose task lock is free (its worker died) is locked and taken.
 */
static const char *const running_sql =
"SELECT id FROM iterjob.task"
" WHERE state OPERATOR(pg_catalog.=) 'running'"
" ORDER BY id";

static const char *const lock_orphan_sql =
"SELECT id FROM iterjob.task"
" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'"
"   FOR UPDATE SKIP LOCKED";

static const char *const queued_sql =
"SELECT id FROM iterjob.task"
" WHERE state OPERATOR(pg_catalog.=) 'queued'"
" ORDER BY id"
"   FOR UPDATE SKIP LOCKED";

/* the claimed task with its job */
static const char *const task_sql =
"SELECT t.id, t.job_id, t.instance,"
"       t.cursor OPERATOR(pg_catalog.->) 'inner_cursor',"
"       iterjob.key_texts(t.cursor OPERATOR(pg_catalog.->) 'inner_cursor'),"
"       t.batches_done,"
"       t.range_start, iterjob.key_texts(t.range_start),"
"       t.range_end, iterjob.key_texts(t.range_end), t.range_empty,"
JOB_COLUMNS_SQL
"  FROM iterjob.task t JOIN iterjob.job j ON j.id OPERATOR(pg_catalog.=) t.job_id"
" WHERE t.id OPERATOR(pg_catalog.=) $1";

/* task_sql's columns */
enum
{
	COL_TASK_ID = 1,
	COL_JOB_ID,
	COL_INSTANCE,
	COL_CURSOR,					/* and its texts */
	COL_BATCHES_DONE = COL_CURSOR + 2,
	COL_RANGE_START,			/* and its texts */
	COL_RANGE_END = COL_RANGE_START + 2,	/* and its texts */
	COL_RANGE_EMPTY = COL_RANGE_END + 2,
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

/*
 * Read JOB_COLUMNS_SQL, starting at column first, into spec, *owner and
 * *search_path, allocating in the current memory context.
 */
static void
read_job_columns(HeapTuple tup, TupleDesc desc, int first, IterjobSpec *spec,
				 Oid *owner, char **search_path)
{
	bool		isnull;

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
	spec->partition = strcmp(SPI_getvalue(tup, desc, first + JCOL_PARTITION), "range") == 0 ?
		ITERJOB_PARTITION_RANGE : ITERJOB_PARTITION_MODULO;
	spec->follow = DatumGetBool(column(tup, desc, first + JCOL_FOLLOW, &isnull));
	iterjob_key_value_from_row(spec, tup, desc, first + JCOL_UPPER_BOUND,
							   &spec->upper_bound, CurrentMemoryContext);
	spec->on_complete = SPI_getvalue(tup, desc, first + JCOL_ON_COMPLETE);
	spec->on_instance_complete = SPI_getvalue(tup, desc, first + JCOL_ON_INSTANCE_COMPLETE);
	spec->batch_pause_ms = int4_column(tup, desc, first + JCOL_BATCH_PAUSE);
	spec->max_rows_per_second = int4_column(tup, desc, first + JCOL_MAX_ROWS_PER_SECOND);
	spec->target_batch_ms = int4_column(tup, desc, first + JCOL_TARGET_BATCH_TIME);
}

/* The committed cursor, converted to Datums of the key types. */
static void
read_cursor(IterjobTask *task, HeapTuple tup, TupleDesc desc)
{
	IterjobKeyValue value;

	iterjob_key_value_from_row(&task->spec, tup, desc, COL_CURSOR, &value, task->cxt);
	task->has_cursor = value.present;
	if (!value.present)
		return;
	for (int i = 0; i < task->spec.nkeys; i++)
	{
		Oid			input;
		Oid			ioparam;
		MemoryContext old = MemoryContextSwitchTo(task->cursor_cxt);

		getTypeInputInfo(task->spec.key_types[i], &input, &ioparam);
		task->cursor[i] = OidInputFunctionCall(input, value.text[i], ioparam, -1);
		MemoryContextSwitchTo(old);
	}
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
	read_cursor(task, tup, desc);
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
	MemoryContextSwitchTo(old);
	return true;
}

/* An orphaned running task (its worker died), locked and task-locked, or 0. */
static int64
claim_orphan(void)
{
	Oid			type = INT8OID;
	int64	   *ids;
	uint64		n;

	if (SPI_execute(running_sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for orphaned iterjob tasks");
	n = SPI_processed;
	ids = palloc(sizeof(int64) * (n + 1));
	for (uint64 i = 0; i < n; i++)
		ids[i] = int8_column(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

	for (uint64 i = 0; i < n; i++)
	{
		Datum		arg = Int64GetDatum(ids[i]);

		CHECK_FOR_INTERRUPTS();
		if (!iterjob_try_lock_task(ids[i]))
			continue;			/* a live worker holds it */
		if (SPI_execute_with_args(lock_orphan_sql, 1, &type, &arg, NULL,
								  false, 1) == SPI_OK_SELECT && SPI_processed == 1)
			return ids[i];
		iterjob_unlock_task(ids[i]);
	}
	return 0;
}

/*
 * The first queued task we can lock, task-locked, or 0.  Sets *busy when a
 * queued task's task lock was still held: its previous worker is leaving it
 * (the task was paused and resumed, or failed and retried, meanwhile).
 */
static int64
claim_queued(bool *busy)
{
	Portal		portal = SPI_cursor_open_with_args(NULL, queued_sql, 0, NULL, NULL,
												   NULL, false, 0);
	int64		claimed = 0;

	while (claimed == 0)
	{
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, CLAIM_FETCH_SIZE);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			int64		task_id = int8_column(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 1);

			if (iterjob_try_lock_task(task_id))
			{
				claimed = task_id;
				break;
			}
			*busy = true;
		}
	}
	SPI_cursor_close(portal);
	return claimed;
}

/*
 * Claim a runnable task: first one whose worker died (so interrupted work
 * resumes first), else the oldest queued one.  Returns NULL if there is
 * none; *busy then says whether a queued task was only held back by its
 * previous worker, which is about to let it go.
 */
IterjobTask *
iterjob_claim_task(MemoryContext parent, bool *busy)
{
	IterjobTask *task;
	int64		claimed;
	Datum		args[2];
	Oid			argtypes[2] = {INT8OID, INT4OID};

	*busy = false;
	claimed = claim_orphan();
	if (claimed == 0)
		claimed = claim_queued(busy);
	if (claimed == 0)
		return NULL;

	args[0] = Int64GetDatum(claimed);
	/* a fresh snapshot: the row as it is now that it is locked */
	if (SPI_execute_with_args(task_sql, 1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read iterjob task " INT64_FORMAT, claimed);
	task = task_from_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, parent);

	args[0] = Int64GetDatum(task->task_id);
	args[1] = Int32GetDatum(MyProcPid);
	if (SPI_execute_with_args(mark_running_sql, 2, argtypes, args, NULL,
							  false, 0) != SPI_OK_UPDATE_RETURNING)
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

static const char *const finish_task_sql =
"UPDATE iterjob.task"
"   SET state = $2, last_error = COALESCE($3, last_error),"
"       worker_pid = NULL, held_reason = NULL, finished_at = pg_catalog.now(),"
"       updated_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused}'::pg_catalog.text[])";

/* Also locks the job row: concurrent finishers of one job serialize here. */
static const char *const lock_job_sql =
"UPDATE iterjob.job SET last_error = COALESCE($2, last_error)"
" WHERE id OPERATOR(pg_catalog.=) $1";

/*
 * A job ends when none of its tasks is queued, running or paused: cancelled
 * if one was cancelled, else failed if one failed, else succeeded.
 */
static const char *const end_job_sql =
"UPDATE iterjob.job j"
"   SET state = CASE WHEN s.cancelled OPERATOR(pg_catalog.>) 0 THEN 'cancelled'"
"                    WHEN s.failed OPERATOR(pg_catalog.>) 0 THEN 'failed'"
"                    ELSE 'succeeded' END,"
"       finished_at = pg_catalog.now()"
"  FROM (SELECT pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=)"
"                 ANY ('{queued,running,paused}'::pg_catalog.text[])) AS open,"
"               pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'failed') AS failed,"
"               pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,"
"               pg_catalog.sum(rows_done) AS rows_done,"
"               pg_catalog.sum(batches_done) AS batches_done"
"          FROM iterjob.task WHERE job_id OPERATOR(pg_catalog.=) $1) s"
" WHERE j.id OPERATOR(pg_catalog.=) $1 AND s.open OPERATOR(pg_catalog.=) 0"
"   AND j.state OPERATOR(pg_catalog.<>) ALL ('{succeeded,failed,cancelled}'::pg_catalog.text[])"
" RETURNING j.state, s.rows_done, s.batches_done,"
"           pg_catalog.round(pg_catalog.date_part('epoch',"
"               pg_catalog.now() OPERATOR(pg_catalog.-) j.started_at)::pg_catalog.numeric, 3),"
"           j.on_complete, j.owner, j.search_path,"
"           (pg_catalog.date_part('epoch', j.lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4";

/*
 * Run a job's on_complete statement as its owner, in the transaction that
 * ends the job.
 */
static void
run_on_complete(int64 job_id, const char *sql, Oid owner,
				const char *search_path, int lock_timeout_ms)
{
	IterjobSavedUser saved;
	int			nest;

	iterjob_check_owner(owner, job_id);
	nest = iterjob_begin_owner_section(owner, search_path, lock_timeout_ms,
									   false, &saved);
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "on_complete of iterjob job " INT64_FORMAT " failed", job_id);
	iterjob_end_owner_section(nest, &saved);
}

/*
 * End the job if it has no open task left (called with its row locked).
 * Logs the outcome.
 */
void
iterjob_settle_job(int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);

	if (SPI_execute_with_args(end_job_sql, 1, &type, &arg, NULL,
							  false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not end iterjob job " INT64_FORMAT, job_id);
	if (SPI_processed == 1)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HeapTuple	tup = SPI_tuptable->vals[0];
		char	   *state = SPI_getvalue(tup, desc, 1);
		char	   *seconds = SPI_getvalue(tup, desc, 4);
		char	   *on_complete = SPI_getvalue(tup, desc, 5);
		bool		isnull;

		ereport(LOG,
				(errmsg("iterjob: job " INT64_FORMAT " %s: %s rows in %s batches, %s s",
						job_id, state, SPI_getvalue(tup, desc, 2),
						SPI_getvalue(tup, desc, 3), seconds ? seconds : "0")));
		if (on_complete != NULL && strcmp(state, "succeeded") == 0)
			run_on_complete(job_id, on_complete,
							DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull)),
							SPI_getvalue(tup, desc, 7),
							DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull)));
		iterjob_notify_waiters_at_commit();
	}
}

/*
 * Record that a task ended in state ("succeeded" or "failed", with error),
 * and end its job if it was the last open task.  Runs in the transaction of
 * the task's final checkpoint, so both commit together, durably.  A task
 * that was cancelled meanwhile stays cancelled.
 */
void
iterjob_finish_task(IterjobTask *task, const char *state, const char *error)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', error ? ' ' : 'n'};

	iterjob_commit_durably();
	args[0] = Int64GetDatum(task->task_id);
	args[1] = CStringGetTextDatum(state);
	args[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (SPI_execute_with_args(finish_task_sql, 3, types, args, nulls,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not end iterjob task " INT64_FORMAT, task->task_id);

	args[0] = Int64GetDatum(task->job_id);
	args[1] = args[2];
	nulls[1] = nulls[2];
	if (SPI_execute_with_args(lock_job_sql, 2, types, args, nulls,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not lock iterjob job " INT64_FORMAT, task->job_id);
	iterjob_settle_job(task->job_id);
}
