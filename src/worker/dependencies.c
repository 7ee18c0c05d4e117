/*-------------------------------------------------------------------------
 *
 * dependencies.c
 *	  Jobs that run after others (enqueue's after).  A job with after waits,
 *	  queued, until every job it names has succeeded: claims skip its
 *	  instances (see WAITING_FILTER_SQL in task_claim.c).  When one of them
 *	  fails or is cancelled, the jobs waiting for it fail, with the reason,
 *	  and so do the jobs waiting for those.  Only jobs that exist can be
 *	  named, so dependencies cannot form a cycle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/*
 * A job named in after, read with a share lock: a predecessor that is
 * ending (its worker updates its row) is waited for and seen ended, and
 * one that ends after this enqueue committed sees this job among those
 * waiting for it.
 */
static const char *const predecessor_sql =
"SELECT owner, state FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1 FOR SHARE";

/*
 * The jobs waiting, directly or through others, for job $1, which ended
 * $2: they fail, with their instances, each naming the job it waited for.
 * A waiting job is queued, or paused while it waited.  Tasks first, then
 * jobs, the order in which workers lock them.
 */
static const char *const end_dependents_sql =
"WITH RECURSIVE d (id, cause, how) AS ("
"  SELECT j.id, $1, $2 FROM iterjob.job j"
"   WHERE j.after OPERATOR(pg_catalog.@>) ARRAY[$1]"
"     AND j.state OPERATOR(pg_catalog.=) ANY ('{queued,paused}'::pg_catalog.text[])"
"  UNION"
"  SELECT j.id, d.id, 'failed' FROM iterjob.job j JOIN d"
"      ON j.after OPERATOR(pg_catalog.@>) ARRAY[d.id]"
"   WHERE j.state OPERATOR(pg_catalog.=) ANY ('{queued,paused}'::pg_catalog.text[])),"
" why AS (SELECT DISTINCT ON (id) id,"
"               pg_catalog.format('job %s, which this job runs after, %s', cause,"
"                                 CASE how WHEN 'cancelled' THEN 'was cancelled' ELSE how END)"
"                   AS error"
"          FROM d ORDER BY id, cause),"
" t AS (UPDATE iterjob.task t SET state = 'failed', last_error = why.error,"
"              finished_at = pg_catalog.now(), updated_at = pg_catalog.now()"
"         FROM why WHERE t.job_id OPERATOR(pg_catalog.=) why.id"
"          AND t.state OPERATOR(pg_catalog.=) ANY ('{queued,paused}'::pg_catalog.text[]))"
"UPDATE iterjob.job j SET state = 'failed', last_error = why.error,"
"       finished_at = pg_catalog.now()"
"  FROM why WHERE j.id OPERATOR(pg_catalog.=) why.id"
" RETURNING j.id, why.error";

/* do queued jobs wait for job $1? */
static const char *const has_waiting_sql =
"SELECT FROM iterjob.job"
" WHERE after OPERATOR(pg_catalog.@>) ARRAY[$1]"
"   AND state OPERATOR(pg_catalog.=) 'queued' LIMIT 1";

static int
compare_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * Check enqueue's after: every job it names exists, the caller may steer
 * it, and it has not failed or been cancelled.  Returns the ids, sorted
 * and without repeats, as a bigint[] for the job's row, or 0 for none.
 */
Datum
iterjob_check_after(ArrayType *after)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			kept = 0;
	int64	   *ids;
	Oid			caller = GetUserId();
	IterjobSavedUser saved;
	int			nest;

	deconstruct_array(after, INT8OID, sizeof(int64), true, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	if (n == 0)
		return (Datum) 0;
	ids = palloc(sizeof(int64) * n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("after must not contain null"),
					 errhint("after lists the ids of the jobs this job runs after.")));
		ids[i] = DatumGetInt64(elems[i]);
	}
	qsort(ids, n, sizeof(int64), compare_int64);
	for (int i = 0; i < n; i++)
		if (kept == 0 || ids[kept - 1] != ids[i])
			ids[kept++] = ids[i];

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	for (int i = 0; i < kept; i++)
	{
		Oid			type = INT8OID;
		Datum		arg = Int64GetDatum(ids[i]);
		bool		isnull;
		Oid			owner;
		char	   *state;

		CHECK_FOR_INTERRUPTS();
		if (SPI_execute_with_args(predecessor_sql, 1, &type, &arg, NULL,
								  false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read iterjob job " INT64_FORMAT, ids[i]);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("iterjob job " INT64_FORMAT " does not exist", ids[i]),
					 errdetail("after lists the jobs this job runs after; only existing jobs can be named.")));
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		iterjob_check_job_access(caller, ids[i], owner, "run a job after");
		if (strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot run a job after iterjob job " INT64_FORMAT " because it is %s",
							ids[i], state),
					 strcmp(state, "failed") == 0 ?
					 errhint("Retry it first with iterjob.retry(), or leave it out of after.") :
					 errhint("A cancelled job never succeeds: leave it out of after.")));
	}
	iterjob_end_internal(nest, &saved);
	SPI_finish();

	elems = palloc(sizeof(Datum) * kept);
	for (int i = 0; i < kept; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, kept, INT8OID, sizeof(int64), true,
										   TYPALIGN_DOUBLE));
}

/*
 * The first job that job $1 runs after and that failed or was cancelled,
 * read with a share lock like predecessor_sql.
 */
static const char *const ended_predecessor_sql =
"SELECT p.id, p.state FROM iterjob.job j, iterjob.job p"
" WHERE j.id OPERATOR(pg_catalog.=) $1"
"   AND p.id OPERATOR(pg_catalog.=) ANY (j.after)"
"   AND p.state OPERATOR(pg_catalog.=) ANY ('{failed,cancelled}'::pg_catalog.text[])"
" ORDER BY p.id LIMIT 1 FOR SHARE OF p";

/*
 * Before iterjob.retry() of job job_id (SPI connected, as iterjob): a job
 * that runs after a failed or cancelled job would wait for it forever.
 */
void
iterjob_check_retry_after(int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);

	if (SPI_execute_with_args(ended_predecessor_sql, 1, &type, &arg, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the jobs iterjob job " INT64_FORMAT " runs after", job_id);
	if (SPI_processed == 1)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot retry iterjob job " INT64_FORMAT " because iterjob job %s, which it runs after, is %s",
						job_id, id, state),
				 strcmp(state, "failed") == 0 ?
				 errhint("Retry iterjob job %s first; this job then waits for it to succeed.", id) :
				 errhint("A cancelled job never succeeds: enqueue this job again without it in after.")));
	}
}

/*
 * Job job_id has just ended in state, in this transaction (SPI
 * connected): the jobs waiting for it fail if it failed or was cancelled;
 * if it succeeded, workers look for the jobs it let run once this commits.
 */
void
iterjob_end_dependents(int64 job_id, const char *state)
{
	static SPIPlanPtr has_waiting_plan = NULL;
	static SPIPlanPtr end_dependents_plan = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	args[0] = Int64GetDatum(job_id);
	args[1] = CStringGetTextDatum(state);
	if (strcmp(state, "succeeded") == 0)
	{
		if (iterjob_execute_kept(iterjob_kept_plan(&has_waiting_plan, has_waiting_sql, 1, types),
							 args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look for the jobs waiting for iterjob job " INT64_FORMAT,
				 job_id);
		if (SPI_processed > 0)
			iterjob_wake_at_commit(InvalidOid, 0);
	}
	else
	{
		if (iterjob_execute_kept(iterjob_kept_plan(&end_dependents_plan, end_dependents_sql, 2, types),
							 args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not end the jobs waiting for iterjob job " INT64_FORMAT,
				 job_id);
		for (uint64 i = 0; i < SPI_processed; i++)
			ereport(LOG,
					(errmsg("iterjob: job %s failed: %s",
							SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
							SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2))));
		if (SPI_processed > 0)
			iterjob_notify_waiters_at_commit();
	}
	iterjob_end_internal(nest, &saved);
}
