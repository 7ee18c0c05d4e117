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
"       j.batch_size, j.owner, j.search_path"
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
"   AND j.state OPERATOR(pg_catalog.=) 'queued'";

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
							  false, 0) < 0)
		elog(ERROR, "could not mark iterjob task " INT64_FORMAT " running",
			 task->task_id);
	return task;
}

static const char *const finish_task_sql =
"UPDATE iterjob.task"
"   SET state = $2, last_error = COALESCE($3, last_error),"
"       attempts = attempts OPERATOR(pg_catalog.+)"
"                  CASE WHEN $3 IS NULL THEN 0 ELSE 1 END,"
"       worker_pid = NULL, finished_at = pg_catalog.now(),"
"       updated_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1";

/* Also locks the job row: concurrent finishers of one job serialize here. */
static const char *const lock_job_sql =
"UPDATE iterjob.job SET last_error = COALESCE($2, last_error)"
" WHERE id OPERATOR(pg_catalog.=) $1";

static const char *const end_job_sql =
"UPDATE iterjob.job j"
"   SET state = CASE WHEN s.failed OPERATOR(pg_catalog.>) 0 THEN 'failed'"
"                    ELSE 'succeeded' END,"
"       finished_at = pg_catalog.now()"
"  FROM (SELECT pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.<>)"
"                 ALL ('{succeeded,failed,cancelled}'::pg_catalog.text[])) AS open,"
"               pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'failed') AS failed"
"          FROM iterjob.task WHERE job_id OPERATOR(pg_catalog.=) $1) s"
" WHERE j.id OPERATOR(pg_catalog.=) $1 AND s.open OPERATOR(pg_catalog.=) 0";

/*
 * Record that a task ended in state ("succeeded" or "failed", with error),
 * and end its job if it was the last open task.  Runs in the transaction of
 * the task's final checkpoint, so both commit together.
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
	if (SPI_execute_with_args(end_job_sql, 1, types, args, NULL,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not end iterjob job " INT64_FORMAT, task->job_id);
}
