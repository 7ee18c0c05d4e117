/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  What DBAs watch and tidy: iterjob.worker_slots() (behind the
 *	  iterjob.workers view) and iterjob.purge() (finished jobs past
 *	  retention).  iterjob.recount() is in recount.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "api/api.h"

PG_FUNCTION_INFO_V1(iterjob_worker_slots);
PG_FUNCTION_INFO_V1(iterjob_purge);

/*
 * May the caller see a worker on job_id in database dboid?  Superusers and
 * iterjob_admin members see every worker; others only the workers on jobs
 * of this database that they may steer.
 */
static bool
may_see_worker(Oid caller, bool admin, Oid dboid, int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	IterjobSavedUser saved;
	bool		isnull;
	bool		visible = false;
	int			nest;

	if (admin)
		return true;
	if (dboid != MyDatabaseId || job_id == 0)
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	if (SPI_execute_with_args("SELECT owner FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		visible = iterjob_may_steer(caller,
									DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
																   SPI_tuptable->tupdesc,
																   1, &isnull)));
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	return visible;
}

/*
 * One row per live iteration worker the caller may see, from shared
 * memory: pid, database, job, instance, batches committed, since when on
 * this task, phase.
 */
Datum
iterjob_worker_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			caller = GetUserId();
	bool		admin = iterjob_may_steer(caller, InvalidOid);

	InitMaterializedSRF(fcinfo, 0);
	if (iterjob_shared == NULL)
		PG_RETURN_VOID();

	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot slot;
		Datum		values[7];
		bool		nulls[7] = {false};

		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		slot = iterjob_shared->workers[i];
		LWLockRelease(iterjob_shared->state_lock);
		if (!slot.in_use || slot.pid == 0 ||
			!may_see_worker(caller, admin, slot.dboid, slot.job_id))
			continue;

		values[0] = Int32GetDatum(slot.pid);
		values[1] = ObjectIdGetDatum(slot.dboid);
		values[2] = Int64GetDatum(slot.job_id);
		nulls[2] = slot.job_id == 0;
		values[3] = Int32GetDatum(slot.instance);
		nulls[3] = slot.job_id == 0;
		values[4] = Int64GetDatum(slot.batches);
		nulls[4] = slot.job_id == 0;
		values[5] = TimestampTzGetDatum(slot.since);
		nulls[5] = slot.since == 0;
		slot.phase[sizeof(slot.phase) - 1] = '\0';
		values[6] = CStringGetTextDatum(slot.phase[0] ? slot.phase : "starting");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* Run sql (as superuser, search_path pg_catalog) with one int8 argument. */
static void
run_internal(const char *sql, int64 arg1, int nargs, Datum arg2, Oid type2)
{
	Oid			types[2] = {INT8OID, type2};
	Datum		args[2] = {Int64GetDatum(arg1), arg2};

	if (SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0) < 0)
		elog(ERROR, "iterjob bookkeeping query failed");
}

/*
 * Delete the caller's finished jobs (all, for admins) that finished more
 * than older_than ago (default: iterjob.retention), with their history.
 * Returns how many jobs were deleted.
 */
Datum
iterjob_purge(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	IterjobSavedUser saved;
	int64		seconds;
	Datum	   *ids;
	int			nids = 0;
	int			nest;
	uint64		deleted;

	if (PG_ARGISNULL(0))
	{
		/* as last reloaded, also in a second copy of the library */
		iterjob_sync_gucs();
		if (iterjob_retention_s < 0)
			PG_RETURN_INT64(0);
		seconds = iterjob_retention_s;
	}
	else
		seconds = iterjob_interval_ms(PG_GETARG_INTERVAL_P(0), "older_than",
									  PG_INT64_MAX / 1000000) / 1000;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	run_internal("SELECT id, owner FROM iterjob.job"
				 " WHERE state OPERATOR(pg_catalog.=) ANY ('{succeeded,failed,cancelled}'::pg_catalog.text[])"
				 "   AND finished_at OPERATOR(pg_catalog.<=) (pg_catalog.now()"
				 "       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
				 seconds, 1, (Datum) 0, INT8OID);
	ids = palloc(sizeof(Datum) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 2, &isnull));

		if (iterjob_may_steer(caller, owner))
			ids[nids++] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	{
		Oid			type = INT8ARRAYOID;
		Datum		arg = PointerGetDatum(construct_array(ids, nids, INT8OID, 8,
														  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

		if (SPI_execute_with_args("DELETE FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
								  1, &type, &arg, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not purge iterjob jobs");
		deleted = SPI_processed;
	}
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	PG_RETURN_INT64((int64) deleted);
}
