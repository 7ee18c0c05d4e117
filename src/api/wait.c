/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  iterjob.wait(): blocks until a job reaches a final state, sleeping on
 *	  a condition variable that workers broadcast when a job may have ended
 *	  (with a timeout as a safety net), never busy-looping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "api/api.h"

PG_FUNCTION_INFO_V1(iterjob_wait);

/* recheck at least this often, whatever the workers signal */
#define WAIT_RECHECK_MS 1000
/* with progress => true, a NOTICE this often */
#define PROGRESS_INTERVAL_MS 3000

/* NOTICE: rows done of total (percent), rate, ETA, from iterjob.job_progress */
static void
report_progress(int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	IterjobSavedUser saved;
	int			nest;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	if (SPI_execute_with_args("SELECT state, rows_done, rows_total, percent,"
							  "       pg_catalog.round(COALESCE(rows_per_second, 0)),"
							  "       COALESCE(pg_catalog.date_trunc('second', eta)::pg_catalog.text, 'unknown'),"
							  "       instances_done, instances"
							  "  FROM iterjob.job_progress WHERE job_id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, false, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ereport(NOTICE,
				(errmsg("iterjob job " INT64_FORMAT " %s: %s of %s rows (%s%%), %s rows/s, ETA %s, %s of %s instances done",
						job_id, SPI_getvalue(tup, desc, 1), SPI_getvalue(tup, desc, 2),
						SPI_getvalue(tup, desc, 3), SPI_getvalue(tup, desc, 4),
						SPI_getvalue(tup, desc, 5), SPI_getvalue(tup, desc, 6),
						SPI_getvalue(tup, desc, 7), SPI_getvalue(tup, desc, 8))));
	}
	iterjob_end_internal(nest, &saved);
	SPI_finish();
}

static bool
is_final_state(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
		strcmp(state, "cancelled") == 0;
}

/*
 * The job's state, read with a fresh snapshot.  Errors out for an unknown
 * job, and for one this transaction created (it cannot start before this
 * transaction commits).
 */
static char *
read_job_state(int64 job_id, MemoryContext cxt)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	IterjobSavedUser saved;
	char	   *state;
	char	   *xmin;
	TransactionId xid;
	int			nest;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	if (SPI_execute_with_args("SELECT state, xmin, owner FROM iterjob.job"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read iterjob job");
	iterjob_end_internal(nest, &saved);

	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("iterjob job " INT64_FORMAT " does not exist", job_id)));
	{
		bool		isnull;

		iterjob_check_job_access(GetUserId(), job_id,
								 DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc,
																3, &isnull)),
								 "wait for");
	}

	state = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1));
	xmin = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	xid = (TransactionId) strtoul(xmin, NULL, 10);
	SPI_finish();

	if (!is_final_state(state))
	{
		if (TransactionIdIsCurrentTransactionId(xid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot wait for iterjob job " INT64_FORMAT " in the transaction that enqueued it", job_id),
					 errdetail("The job cannot start before this transaction commits."),
					 errhint("Commit first, then call iterjob.wait().")));
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("cannot wait for iterjob job " INT64_FORMAT " in a %s transaction", job_id,
							XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" : "REPEATABLE READ"),
					 errdetail("Its snapshot would never show the job ending."),
					 errhint("Call iterjob.wait() in a READ COMMITTED transaction.")));
	}
	return state;
}

Datum
iterjob_wait(PG_FUNCTION_ARGS)
{
	int64		job_id;
	TimestampTz deadline = 0;
	TimestampTz next_progress = 0;
	bool		progress = PG_NARGS() > 2 && !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	char	   *state;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id must not be null")));
	job_id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
	{
		int64		ms = iterjob_interval_ms(PG_GETARG_INTERVAL_P(1), "timeout",
											 PG_INT64_MAX / 1000000);

		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	}

	for (;;)
	{
		long		sleep_ms = WAIT_RECHECK_MS;

		CHECK_FOR_INTERRUPTS();
		if (iterjob_shared != NULL)
			ConditionVariablePrepareToSleep(&iterjob_shared->job_state_cv);

		state = read_job_state(job_id, CurrentMemoryContext);
		if (is_final_state(state))
			break;
		if (progress)
		{
			TimestampTz now_ts = GetCurrentTimestamp();

			if (next_progress == 0)
				next_progress = TimestampTzPlusMilliseconds(now_ts, PROGRESS_INTERVAL_MS);
			else if (now_ts >= next_progress)
			{
				report_progress(job_id);
				next_progress = TimestampTzPlusMilliseconds(now_ts, PROGRESS_INTERVAL_MS);
			}
			sleep_ms = Min(sleep_ms, (long) ((next_progress - now_ts) / 1000) + 1);
		}
		if (deadline != 0)
		{
			TimestampTz now_ts = GetCurrentTimestamp();

			if (now_ts >= deadline)
				break;
			sleep_ms = Min(sleep_ms, (long) ((deadline - now_ts) / 1000) + 1);
		}

		if (iterjob_shared != NULL)
			(void) ConditionVariableTimedSleep(&iterjob_shared->job_state_cv,
											   sleep_ms, iterjob_wait_event(ITERJOB_WAIT_JOB_END));
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, iterjob_wait_event(ITERJOB_WAIT_JOB_END));
			ResetLatch(MyLatch);
		}
	}
	if (iterjob_shared != NULL)
		ConditionVariableCancelSleep();
	if (progress)
		report_progress(job_id);

	PG_RETURN_TEXT_P(cstring_to_text(state));
}
