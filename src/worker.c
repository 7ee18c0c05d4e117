/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  An iteration worker: connected to one database, it claims runnable
 *	  tasks one after another and runs them, and exits when none is left.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "task.h"

/*
 * A queued task whose previous worker still holds its task lock is looked
 * at again every BUSY_WAIT_MS, BUSY_MAX_WAITS times at most, rather than
 * left behind when this worker exits.
 */
#define BUSY_WAIT_MS		10
#define BUSY_MAX_WAITS		500

IterjobWorkerSlot *iterjob_my_slot = NULL;

static void
set_slot_task(IterjobTask *task)
{
	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_my_slot->job_id = task ? task->job_id : 0;
	iterjob_my_slot->instance = task ? task->instance : 0;
	iterjob_my_slot->batches = task ? task->batches_done : 0;
	iterjob_my_slot->since = task ? GetCurrentTimestamp() : 0;
	SpinLockRelease(&iterjob_shared->mutex);
}

void
iterjob_set_phase(const char *phase)
{
	if (iterjob_my_slot == NULL)
		return;
	SpinLockAcquire(&iterjob_shared->mutex);
	strlcpy(iterjob_my_slot->phase, phase, sizeof(iterjob_my_slot->phase));
	SpinLockRelease(&iterjob_shared->mutex);
}

/*
 * Is the extension installed here, at the version this library works
 * with?  After a package upgrade, ALTER EXTENSION iterjob UPDATE brings it
 * there; until then the worker leaves the database alone.
 */
static bool
extension_usable(void)
{
	char	   *version;

	if (!iterjob_lock_extension())
		return false;
	version = iterjob_installed_version();
	if (version == NULL)
		return false;
	if (strcmp(version, ITERJOB_SCHEMA_VERSION) == 0)
		return true;
	ereport(LOG,
			(errmsg("iterjob: database \"%s\" has iterjob %s, but the installed library needs %s; its jobs wait",
					get_database_name(MyDatabaseId), version, ITERJOB_SCHEMA_VERSION),
			 errhint("Run ALTER EXTENSION iterjob UPDATE in that database.")));
	return false;
}

/* Delete finished jobs (with their tasks and errors) past iterjob.retention. */
static void
purge_old_jobs(void)
{
	char		sql[512];

	if (iterjob_retention_s < 0)
		return;
	snprintf(sql, sizeof(sql),
			 "DELETE FROM iterjob.job"
			 " WHERE state OPERATOR(pg_catalog.=) ANY ('{succeeded,failed,cancelled}'::pg_catalog.text[])"
			 "   AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
			 "       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => %d))",
			 iterjob_retention_s);
	if (SPI_execute(sql, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge old iterjob jobs");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("iterjob: purged " UINT64_FORMAT " finished jobs older than iterjob.retention",
						SPI_processed)));
}

/*
 * Claim the next runnable task in its own transaction.  Returns NULL when
 * there is none (purging old jobs then, unless *busy says a queued task was
 * held back by its previous worker), or when the extension is not usable
 * in this database.
 */
static IterjobTask *
claim_next_task(MemoryContext cxt, bool *busy)
{
	IterjobTask *task = NULL;

	*busy = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "iterjob: claiming a task");
	iterjob_set_phase("claiming");

	/*
	 * A claim that a crash loses leaves its task queued, to be claimed again:
	 * no need to wait for its commit to reach disk.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (extension_usable())
	{
		task = iterjob_claim_task(cxt, busy);
		if (task == NULL && !*busy)
			purge_old_jobs();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return task;
}

/* before_shmem_exit: tell the launcher this slot's process has ended */
static void
worker_exited(int code, Datum arg)
{
	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_my_slot->exited = true;
	iterjob_my_slot->latch = NULL;
	SpinLockRelease(&iterjob_shared->mutex);
	iterjob_wake_launcher();
}

void
iterjob_worker_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext cxt;
	bool		busy;
	int			busy_waits = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	iterjob_my_slot = &iterjob_shared->workers[slotno];
	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_my_slot->pid = MyProcPid;
	iterjob_my_slot->latch = MyLatch;
	SpinLockRelease(&iterjob_shared->mutex);
	before_shmem_exit(worker_exited, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("iterjob worker");

	/*
	 * iterjob's own queries run with a search_path that user objects cannot
	 * hijack; user SQL gets its owner's search_path per batch.  Parallel
	 * query and JIT buy nothing for small batches and cost per batch.
	 */
	SetConfigOption("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	cxt = AllocSetContextCreate(TopMemoryContext, "iterjob worker",
								ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		IterjobTask *task;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		task = claim_next_task(cxt, &busy);
		if (task == NULL && busy && busy_waits++ < BUSY_MAX_WAITS)
		{
			/* its previous worker lets go of that task in a moment */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 BUSY_WAIT_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (task == NULL)
			break;
		busy_waits = 0;

		/* there may be more runnable tasks: let the launcher add a worker */
		iterjob_mark_database_pending(MyDatabaseId);
		iterjob_wake_launcher();

		set_slot_task(task);
		iterjob_run_task(task);
		iterjob_unlock_task(task->task_id);
		set_slot_task(NULL);
		iterjob_set_phase("idle");
		MemoryContextDelete(task->cxt);
	}

	iterjob_worker_exit_clean();
}

/* Leave without asking the launcher to retry this database. */
void
iterjob_worker_exit_clean(void)
{
	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_my_slot->clean_exit = true;
	SpinLockRelease(&iterjob_shared->mutex);
	proc_exit(0);
}
