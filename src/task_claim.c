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
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "task.h"

#define CLAIM_FETCH_SIZE 8

static const char *const claim_sql =
"SELECT t.id, t.job_id, t.instance,"
"       (t.cursor OPERATOR(pg_catalog.->>) 'inner_cursor')::pg_catalog.int8,"
"       t.batches_done, j.relation::pg_catalog.oid, j.key_column,"
"       j.key_type::pg_catalog.oid, j.filter, j.action, j.instances,"
"       j.batch_size, j.owner, j.search_path, j.max_attempts,"
"       (pg_catalog.date_part('epoch', j.statement_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"
"       (pg_catalog.date_part('epoch', j.lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4"
"  FROM iterjob.task t JOIN iterjob.job j ON j.id OPERATOR(pg_catalog.=) t.job_id"
" WHERE t.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
" ORDER BY t.id"
"   FOR UPDATE OF t SKIP LOCKED";

static const char *const mark_running_sql =
"WITH t AS ("
"  UPDATE iterjob.task"
"     SET state = 'running', worker_pid = $2,"
"         started_at = COALESCE(started_at, pg_catalog.now()),"
"         updated_at = pg_catalog.now()"
"   WHERE id OPERATOR(pg_catalog.=) $1 RETURNING job_id)"
"UPDATE iterjob.job j SET state = 'running', started_at = pg_catalog.now()"
"  FROM t WHERE j.id OPERATOR(pg_catalog.=) t.job_id"
"   AND j.state OPERATOR(pg_catalog.=) 'queued'"
" RETURNING j.instances, j.relation::pg_catalog.text";

static char *
text_column(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

static int64
int8_column(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
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
	task->task_id = int8_column(tup, desc, 1, &isnull);
	task->job_id = int8_column(tup, desc, 2, &isnull);
	task->instance = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	task->last_key = int8_column(tup, desc, 4, &isnull);
	task->has_cursor = !isnull;
	task->batches_done = int8_column(tup, desc, 5, &isnull);
	task->spec.relid = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
	task->spec.key_column = text_column(tup, desc, 7);
	task->spec.key_type = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
	task->spec.filter = text_column(tup, desc, 9);
	task->spec.action = text_column(tup, desc, 10);
	task->spec.instances = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
	task->spec.batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull));
	task->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 13, &isnull));
	task->search_path = text_column(tup, desc, 14);
	task->spec.max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
	task->spec.statement_timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 16, &isnull));
	task->spec.lock_timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 17, &isnull));
	MemoryContextSwitchTo(old);
	return task;
}

IterjobTask *
iterjob_claim_task(MemoryContext parent)
{
	Portal		portal;
	IterjobTask *task = NULL;
	Datum		args[2];
	Oid			argtypes[2] = {INT8OID, INT4OID};

	portal = SPI_cursor_open_with_args(NULL, claim_sql, 0, NULL, NULL, NULL,
									   false, 0);
	while (task == NULL)
	{
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, CLAIM_FETCH_SIZE);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			int64		task_id = int8_column(tup, SPI_tuptable->tupdesc, 1, &isnull);

			/* a task whose lock is held has a live worker: leave it */
			if (iterjob_try_lock_task(task_id))
			{
				task = task_from_row(tup, SPI_tuptable->tupdesc, parent);
				break;
			}
		}
	}
	SPI_cursor_close(portal);

	if (task == NULL)
		return NULL;

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
"       worker_pid = NULL, finished_at = pg_catalog.now(),"
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
"               pg_catalog.now() OPERATOR(pg_catalog.-) j.started_at)::pg_catalog.numeric, 3)";

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
		char	   *seconds = SPI_getvalue(tup, desc, 4);

		ereport(LOG,
				(errmsg("iterjob: job " INT64_FORMAT " %s: %s rows in %s batches, %s s",
						job_id, SPI_getvalue(tup, desc, 1),
						SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3),
						seconds ? seconds : "0")));
		iterjob_notify_waiters_at_commit();
	}
}

/*
 * Record that a task ended in state ("succeeded" or "failed", with error),
 * and end its job if it was the last open task.  Runs in the transaction of
 * the task's final checkpoint, so both commit together.  A task that was
 * cancelled meanwhile stays cancelled.
 */
void
iterjob_finish_task(IterjobTask *task, const char *state, const char *error)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', error ? ' ' : 'n'};

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
