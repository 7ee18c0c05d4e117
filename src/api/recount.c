/*-------------------------------------------------------------------------
 *
 * recount.c
 *	  iterjob.recount(): counts exactly the rows each instance of a job
 *	  iterates and stores them as rows_total.
 *
 *	  The counts run the job's query, filter and key types, which its owner
 *	  wrote: they run in a process bound to the owner (recount_worker.c),
 *	  never in the caller's session, whose temporary schema PostgreSQL
 *	  searches first for relations and types and whose settings, prepared
 *	  statements and session user the owner's SQL could read.  The caller
 *	  checks its access, starts that worker, waits for it on its latch and
 *	  writes the counts in its own transaction.  A cancel of the caller
 *	  (its statement_timeout included) or any error stops the worker, and
 *	  the call returns only once the worker has ended; the worker's error
 *	  comes back as the caller's, with its SQLSTATE and message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker.h"
#include "api/api.h"
#include "api/recount.h"

PG_FUNCTION_INFO_V1(iterjob_recount);

/* how often the caller looks whether its worker waits for the caller's locks */
#define LOCK_CHECK_INTERVAL_MS	1000

typedef struct RecountRun
{
	int64		job_id;
	bool		written_here;	/* this transaction wrote the job's row */
	dsm_segment *seg;
	IterjobRecountShared *shared;
	shm_mq_handle *mqh;
	BackgroundWorkerHandle *handle; /* in TopMemoryContext */
} RecountRun;

/*
 * When the segment goes (the call ends, or its transaction or
 * subtransaction aborts: a cancel, an error), its worker goes too, before
 * the caller goes on: no worker outlives the call.
 */
static void
stop_worker(dsm_segment *seg, Datum arg)
{
	BackgroundWorkerHandle *handle = (BackgroundWorkerHandle *) DatumGetPointer(arg);

	TerminateBackgroundWorker(handle);
	HOLD_INTERRUPTS();
	(void) WaitForBackgroundWorkerShutdown(handle);
	RESUME_INTERRUPTS();
	pfree(handle);
}

/* Start the worker that counts; an error when no worker slot is free. */
static void
start_worker(RecountRun *run, Oid owner, int32 instances)
{
	BackgroundWorker worker;
	Size		queue_offset = iterjob_recount_queue_offset(instances);
	shm_mq	   *mq;
	MemoryContext old;
	bool		registered;

	run->seg = dsm_create(iterjob_recount_segment_size(instances), 0);
	run->shared = dsm_segment_address(run->seg);
	memset(run->shared, 0, queue_offset);
	run->shared->dboid = MyDatabaseId;
	run->shared->owner = owner;
	run->shared->job_id = run->job_id;
	run->shared->instances = instances;
	run->shared->queue_offset = queue_offset;
	mq = shm_mq_create((char *) run->shared + queue_offset, ITERJOB_RECOUNT_QUEUE_SIZE);
	shm_mq_set_receiver(mq, MyProc);
	run->mqh = shm_mq_attach(mq, run->seg, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "iterjob");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "iterjob_recount_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "iterjob recount of job " INT64_FORMAT,
			 run->job_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "iterjob recount");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(run->seg));
	worker.bgw_notify_pid = MyProcPid;

	/* the handle must outlive this call's memory, for stop_worker() */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &run->handle);
	MemoryContextSwitchTo(old);
	if (!registered)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a worker to recount iterjob job " INT64_FORMAT,
						run->job_id),
				 errdetail("iterjob.recount() counts in a background worker of its own, bound to the job's owner, and no background worker slot is free."),
				 errhint("Try again when fewer background workers run, or raise max_worker_processes.")));
	on_dsm_detach(run->seg, stop_worker, PointerGetDatum(run->handle));
	shm_mq_set_handle(run->mqh, run->handle);
}

/*
 * Take the worker's messages: a notice is passed on to the caller's
 * client, an error is raised here, with the worker's SQLSTATE and message.
 * Returns false once the worker has detached from the queue.
 */
static bool
read_messages(RecountRun *run)
{
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		shm_mq_result res = shm_mq_receive(run->mqh, &nbytes, &data, true);
		StringInfoData msg;
		char		msgtype;
		ErrorData	edata;

		if (res == SHM_MQ_WOULD_BLOCK)
			return true;
		if (res == SHM_MQ_DETACHED)
			return false;

		initStringInfo(&msg);
		appendBinaryStringInfo(&msg, data, nbytes);
		msgtype = pq_getmsgbyte(&msg);
		if (msgtype != 'E' && msgtype != 'N')
		{
			pfree(msg.data);
			continue;
		}
		pq_parse_errornotice(&msg, &edata);
		pfree(msg.data);

		/* the worker's FATAL ends the worker, not the caller */
		if (edata.elevel > ERROR)
			edata.elevel = ERROR;
		/* a job this transaction enqueued is not there for the worker */
		if (edata.elevel == ERROR && run->written_here &&
			edata.sqlerrcode == ERRCODE_UNDEFINED_OBJECT && edata.message != NULL &&
			strcmp(edata.message, psprintf("iterjob job " INT64_FORMAT " does not exist",
										   run->job_id)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot recount iterjob job " INT64_FORMAT " in the transaction that enqueued it",
							run->job_id),
					 errdetail("The rows are counted in a process of the job's owner, which sees the job once this transaction commits."),
					 errhint("Commit first, then call iterjob.recount().")));
		edata.context = edata.context ?
			psprintf("%s\niterjob.recount() of job " INT64_FORMAT ", counting as the job's owner",
					 edata.context, run->job_id) :
			psprintf("iterjob.recount() of job " INT64_FORMAT ", counting as the job's owner",
					 run->job_id);
		ThrowErrorData(&edata);
	}
}

/*
 * Does the worker wait for a lock this transaction holds (an ALTER TABLE
 * or LOCK TABLE earlier in it)?  It would wait for ever, and PostgreSQL's
 * deadlock detector cannot see that the caller waits for it: fail.
 */
static void
check_lock_wait(RecountRun *run, pid_t pid)
{
	ArrayType  *blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
																 Int32GetDatum(pid)));
	Datum	   *pids;
	int			n;

	deconstruct_array(blockers, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &pids, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		if (DatumGetInt32(pids[i]) == MyProcPid)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
					 errmsg("iterjob.recount() of job " INT64_FORMAT " waits for a lock that its caller's transaction holds",
							run->job_id),
					 errdetail("The rows are counted in a process of the job's owner, which waits for a lock this transaction took."),
					 errhint("Call iterjob.recount() in a transaction that holds no lock on the job's tables.")));
	}
}

/* Wait until the worker has ended, passing its messages on. */
static void
wait_for_worker(RecountRun *run)
{
	TimestampTz next_lock_check =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LOCK_CHECK_INTERVAL_MS);

	for (;;)
	{
		BgwHandleStatus status;
		pid_t		pid;

		CHECK_FOR_INTERRUPTS();
		(void) read_messages(run);
		status = GetBackgroundWorkerPid(run->handle, &pid);
		if (status == BGWH_STOPPED)
		{
			/* its last words */
			(void) read_messages(run);
			return;
		}
		if (status == BGWH_STARTED && GetCurrentTimestamp() >= next_lock_check)
		{
			check_lock_wait(run, pid);
			next_lock_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  LOCK_CHECK_INTERVAL_MS);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LOCK_CHECK_INTERVAL_MS, iterjob_wait_event(ITERJOB_WAIT_RECOUNT));
		ResetLatch(MyLatch);
	}
}

/*
 * Count each instance's rows in a worker bound to the job's owner.
 * Returns the counts, one Datum (int8) per instance.
 */
static Datum *
count_as_owner(RecountRun *run, Oid owner, int32 instances)
{
	Datum	   *counts = palloc(sizeof(Datum) * instances);

	start_worker(run, owner, instances);
	wait_for_worker(run);
	pg_read_barrier();
	if (!run->shared->done)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the worker that recounts iterjob job " INT64_FORMAT " ended without counting",
						run->job_id),
				 errhint("The server log may say why.")));
	for (int32 i = 0; i < instances; i++)
		counts[i] = Int64GetDatum(run->shared->counts[i]);
	/* and the worker, which has ended, is waited for */
	dsm_detach(run->seg);
	return counts;
}

/* Run sql (as superuser, search_path pg_catalog) with one int8 argument. */
static void
run_internal(const char *sql, int64 arg1, Datum arg2, Oid type2)
{
	Oid			types[2] = {INT8OID, type2};
	Datum		args[2] = {Int64GetDatum(arg1), arg2};

	if (SPI_execute_with_args(sql, 2, types, args, NULL, false, 0) < 0)
		elog(ERROR, "iterjob bookkeeping query failed");
}

/* Was the job's row written by this transaction (enqueued, or changed)? */
static bool
written_here(int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	char	   *xmin;

	if (SPI_execute_with_args("SELECT xmin FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return false;
	xmin = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return xmin != NULL &&
		TransactionIdIsCurrentTransactionId((TransactionId) strtoul(xmin, NULL, 10));
}

/*
 * Count exactly the rows each instance of a job iterates (as the job's
 * owner, in a worker of the owner's), and store them as rows_total.
 * Returns the job's total.  The counts, which may take long, lock nothing
 * a running batch needs.
 */
Datum
iterjob_recount(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	RecountRun	run;
	IterjobSpec spec;
	IterjobSavedUser saved;
	Oid			owner;
	char	   *search_path;
	int64		total = 0;
	Datum	   *counts;
	int			nest;

	memset(&run, 0, sizeof(run));
	run.job_id = PG_GETARG_INT64(0);
	PreventCommandIfReadOnly("iterjob.recount()");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	if (!iterjob_load_job(run.job_id, &spec, &owner, &search_path))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("iterjob job " INT64_FORMAT " does not exist", run.job_id)));
	iterjob_check_job_access(caller, run.job_id, owner, "recount");
	iterjob_check_owner(owner, run.job_id);
	run.written_here = written_here(run.job_id);
	iterjob_end_internal(nest, &saved);

	counts = count_as_owner(&run, owner, spec.instances);
	for (int32 i = 0; i < spec.instances; i++)
		total += DatumGetInt64(counts[i]);

	/*
	 * Only now, all counted, lock the task rows (running batches checkpoint
	 * them), for the rest of the caller's transaction.
	 */
	nest = iterjob_begin_internal(&saved);
	iterjob_wake_at_end();
	run_internal("UPDATE iterjob.task SET rows_total = ($2::pg_catalog.int8[])[instance OPERATOR(pg_catalog.+) 1]"
				 " WHERE job_id OPERATOR(pg_catalog.=) $1",
				 run.job_id,
				 PointerGetDatum(construct_array(counts, spec.instances, INT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
				 INT8ARRAYOID);
	run_internal("UPDATE iterjob.job SET rows_total = $2 WHERE id OPERATOR(pg_catalog.=) $1",
				 run.job_id, Int64GetDatum(total), INT8OID);
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	PG_RETURN_INT64(total);
}
