/*-------------------------------------------------------------------------
 *
 * control.c
 *	  iterjob.pause(), resume(), cancel(), retry() and set(): steering a
 *	  job.
 *
 *	  Each locks the job row, checks that the caller may steer the job,
 *	  changes the states of the job and its tasks, and returns the job's new
 *	  state.  When a pause or cancel commits, the batches in flight of the
 *	  job are interrupted: each rolls back (no failed attempt) and its
 *	  worker leaves the task, which a resume takes up again from its last
 *	  checkpoint (commit_wakeup.c, task_runner.c).  Calls
 *	  that make no sense for the job's state are either a no-op with a
 *	  NOTICE (pausing a paused job, resuming a job that is not paused,
 *	  cancelling a cancelled one) or an error (steering a finished job).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker.h"
#include "api/api.h"

PG_FUNCTION_INFO_V1(iterjob_pause);
PG_FUNCTION_INFO_V1(iterjob_resume);
PG_FUNCTION_INFO_V1(iterjob_cancel);
PG_FUNCTION_INFO_V1(iterjob_retry);

typedef enum ControlAction
{
	CONTROL_PAUSE,
	CONTROL_RESUME,
	CONTROL_CANCEL,
	CONTROL_RETRY,
	CONTROL_SET
} ControlAction;

static const char *const action_names[] = {"pause", "resume", "cancel", "retry", "set"};

static const char *const pause_sql =
"WITH t AS (UPDATE iterjob.task SET state = 'paused', updated_at = pg_catalog.now()"
"            WHERE job_id OPERATOR(pg_catalog.=) $1"
"              AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[]))"
"UPDATE iterjob.job SET state = 'paused' WHERE id OPERATOR(pg_catalog.=) $1";

static const char *const resume_sql =
"WITH t AS (UPDATE iterjob.task SET state = 'queued', updated_at = pg_catalog.now()"
"            WHERE job_id OPERATOR(pg_catalog.=) $1"
"              AND state OPERATOR(pg_catalog.=) 'paused')"
"UPDATE iterjob.job"
"   SET state = CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END"
" WHERE id OPERATOR(pg_catalog.=) $1";

static const char *const cancel_sql =
"WITH t AS (UPDATE iterjob.task SET state = 'cancelled', worker_pid = NULL,"
"                   finished_at = pg_catalog.now(), updated_at = pg_catalog.now()"
"            WHERE job_id OPERATOR(pg_catalog.=) $1"
"              AND state OPERATOR(pg_catalog.=) ANY ('{queued,running,paused}'::pg_catalog.text[]))"
"UPDATE iterjob.job SET state = 'cancelled', finished_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1";

static const char *const retry_sql =
"WITH t AS (UPDATE iterjob.task SET state = 'queued', attempts = 0,"
"                   finished_at = NULL, updated_at = pg_catalog.now()"
"            WHERE job_id OPERATOR(pg_catalog.=) $1"
"              AND state OPERATOR(pg_catalog.=) 'failed')"
"UPDATE iterjob.job"
"   SET state = CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END,"
"       finished_at = NULL, failures_counted_from = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1";

static bool
is_final(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
		strcmp(state, "cancelled") == 0;
}

static void
run_sql(const char *sql, int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);

	if (SPI_execute_with_args(sql, 1, &type, &arg, NULL, false, 0) < 0)
		elog(ERROR, "could not update iterjob job " INT64_FORMAT, job_id);
}

/*
 * Check the caller may steer the job, then lock its task rows and its job
 * row, in that order (workers lock a task row, then the job row, when they
 * claim or end a task: the same order cannot deadlock), and return the
 * job's state.
 */
static char *
lock_job(int64 job_id, ControlAction action, Oid caller)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	bool		isnull;
	Oid			owner;

	if (SPI_execute_with_args("SELECT owner FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read iterjob job " INT64_FORMAT, job_id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("iterjob job " INT64_FORMAT " does not exist", job_id)));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	iterjob_check_job_access(caller, job_id, owner, action_names[action]);

	if (action != CONTROL_SET)
		iterjob_wake_at_end();
	if (action != CONTROL_SET &&
		SPI_execute_with_args("SELECT id FROM iterjob.task"
							  " WHERE job_id OPERATOR(pg_catalog.=) $1 ORDER BY id FOR UPDATE",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the tasks of iterjob job " INT64_FORMAT, job_id);
	if (SPI_execute_with_args("SELECT state FROM iterjob.job"
							  " WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not lock iterjob job " INT64_FORMAT, job_id);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

static void
refuse(int64 job_id, ControlAction action, const char *state)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s iterjob job " INT64_FORMAT " because it is %s",
					action_names[action], job_id, state),
			 action == CONTROL_RETRY ?
			 errhint("Only a failed job can be retried.") :
			 errdetail("A job that has ended cannot be steered any more.")));
}

static void
no_op(int64 job_id, const char *why)
{
	ereport(NOTICE,
			(errmsg("iterjob job " INT64_FORMAT " %s; nothing to do", job_id, why)));
}

static Datum
control_job(FunctionCallInfo fcinfo, ControlAction action)
{
	int64		job_id;
	IterjobSavedUser saved;
	char	   *state;
	char	   *result;
	int			nest;
	MemoryContext caller_cxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id must not be null")));
	job_id = PG_GETARG_INT64(0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	state = lock_job(job_id, action, saved.userid);

	switch (action)
	{
		case CONTROL_PAUSE:
			if (strcmp(state, "paused") == 0)
				no_op(job_id, "is already paused");
			else if (is_final(state))
				refuse(job_id, action, state);
			else
			{
				run_sql(pause_sql, job_id);
				iterjob_interrupt_workers_at_commit(job_id);
			}
			break;
		case CONTROL_RESUME:
			if (is_final(state))
				refuse(job_id, action, state);
			else if (strcmp(state, "paused") != 0)
				no_op(job_id, "is not paused");
			else
			{
				run_sql(resume_sql, job_id);
				iterjob_signal_workers_at_commit(job_id);

				/*
				 * Nothing to settle here: a paused task is open, and the
				 * worker that ends a job's last open task, paused job or
				 * not, ends the job in that transaction, with its
				 * on_complete, in a process bound to the job's owner.  (A
				 * caller's session never runs the owner's SQL.)
				 */
				iterjob_wake_at_commit(InvalidOid, job_id);
			}
			break;
		case CONTROL_CANCEL:
			if (strcmp(state, "cancelled") == 0)
				no_op(job_id, "is already cancelled");
			else if (is_final(state))
				refuse(job_id, action, state);
			else
			{
				run_sql(cancel_sql, job_id);
				iterjob_end_dependents(job_id, "cancelled");
				iterjob_interrupt_workers_at_commit(job_id);
				ereport(LOG, (errmsg("iterjob: job " INT64_FORMAT " cancelled", job_id)));
				iterjob_notify_waiters_at_commit();
			}
			break;
		case CONTROL_RETRY:
			if (strcmp(state, "failed") != 0)
				refuse(job_id, action, state);
			iterjob_check_retry_after(job_id);
			run_sql(retry_sql, job_id);
			iterjob_wake_at_commit(InvalidOid, job_id);
			break;
		case CONTROL_SET:
			elog(ERROR, "iterjob.set() is not a state change");
			break;
	}
	if (action == CONTROL_PAUSE && strcmp(state, "paused") != 0)
		ereport(LOG, (errmsg("iterjob: job " INT64_FORMAT " paused", job_id)));

	{
		Oid			type = INT8OID;
		Datum		arg = Int64GetDatum(job_id);

		if (SPI_execute_with_args("SELECT state FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1",
								  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not read iterjob job " INT64_FORMAT, job_id);
		result = MemoryContextStrdup(caller_cxt,
									 SPI_getvalue(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1));
	}
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

Datum
iterjob_pause(PG_FUNCTION_ARGS)
{
	return control_job(fcinfo, CONTROL_PAUSE);
}

Datum
iterjob_resume(PG_FUNCTION_ARGS)
{
	return control_job(fcinfo, CONTROL_RESUME);
}

Datum
iterjob_cancel(PG_FUNCTION_ARGS)
{
	return control_job(fcinfo, CONTROL_CANCEL);
}

Datum
iterjob_retry(PG_FUNCTION_ARGS)
{
	return control_job(fcinfo, CONTROL_RETRY);
}

PG_FUNCTION_INFO_V1(iterjob_set);

/*
 * iterjob.set(job_id, batch_size, batch_pause, max_rows_per_second,
 * target_batch_time, max_failure_ratio, failure_window, max_wal_per_second):
 * change a job's pacing or its failure-ratio stop while it runs; NULL
 * leaves a setting as it is, 0 turns a limit off.  Workers pick the pacing
 * up at their next checkpoint, the failure-ratio stop at their next failed
 * attempt.
 */
Datum
iterjob_set(PG_FUNCTION_ARGS)
{
	int64		job_id;
	IterjobSavedUser saved;
	Oid			types[8] = {INT8OID, INT4OID, INT4OID, INT4OID, INT4OID, FLOAT8OID, INT4OID,
	INT8OID};
	Datum		args[8];
	char		nulls[8] = {' ', 'n', 'n', 'n', 'n', 'n', 'n', 'n'};
	char	   *state;
	int			nest;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id must not be null")));
	job_id = PG_GETARG_INT64(0);
	args[0] = Int64GetDatum(job_id);
	if (!PG_ARGISNULL(1))
	{
		int32		batch_size = PG_GETARG_INT32(1);

		if (batch_size < 1 || batch_size > ITERJOB_MAX_BATCH_SIZE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("batch_size must be between 1 and %d", ITERJOB_MAX_BATCH_SIZE)));
		args[1] = Int32GetDatum(batch_size);
		nulls[1] = ' ';
	}
	if (!PG_ARGISNULL(2))
	{
		args[2] = Int32GetDatum((int32) iterjob_interval_ms(PG_GETARG_INTERVAL_P(2),
															"batch_pause", PG_INT32_MAX));
		nulls[2] = ' ';
	}
	if (!PG_ARGISNULL(3))
	{
		if (PG_GETARG_INT32(3) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows_per_second must not be negative")));
		args[3] = PG_GETARG_DATUM(3);
		nulls[3] = ' ';
	}
	if (!PG_ARGISNULL(4))
	{
		args[4] = Int32GetDatum((int32) iterjob_interval_ms(PG_GETARG_INTERVAL_P(4),
															"target_batch_time", PG_INT32_MAX));
		nulls[4] = ' ';
	}
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		iterjob_check_max_failure_ratio(PG_GETARG_FLOAT8(5));
		args[5] = PG_GETARG_DATUM(5);
		nulls[5] = ' ';
	}
	if (PG_NARGS() > 6 && !PG_ARGISNULL(6))
	{
		iterjob_check_failure_window(PG_GETARG_INT32(6));
		args[6] = PG_GETARG_DATUM(6);
		nulls[6] = ' ';
	}
	if (PG_NARGS() > 7 && !PG_ARGISNULL(7))
	{
		args[7] = Int64GetDatum(iterjob_wal_per_second_arg(PG_GETARG_TEXT_PP(7), true));
		nulls[7] = ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	state = lock_job(job_id, CONTROL_SET, saved.userid);
	if (is_final(state))
		refuse(job_id, CONTROL_SET, state);
	if (SPI_execute_with_args("UPDATE iterjob.job"
							  "   SET batch_size = COALESCE($2, batch_size),"
							  "       batch_pause = COALESCE(pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0), batch_pause),"
							  "       max_rows_per_second = CASE WHEN $4 IS NULL THEN max_rows_per_second"
							  "                                  ELSE NULLIF($4, 0) END,"
							  "       target_batch_time = CASE WHEN $5 IS NULL THEN target_batch_time"
							  "           ELSE pg_catalog.make_interval(secs => NULLIF($5, 0) OPERATOR(pg_catalog./) 1000.0) END,"
							  "       max_failure_ratio = COALESCE($6, max_failure_ratio),"
							  "       failure_window = COALESCE($7, failure_window),"
							  "       max_wal_per_second = CASE WHEN $8 IS NULL THEN max_wal_per_second"
							  "                                 ELSE NULLIF($8, 0) END"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  8, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update iterjob job " INT64_FORMAT, job_id);
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	PG_RETURN_VOID();
}
