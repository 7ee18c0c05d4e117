/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one static background worker per cluster that starts
 *	  iteration workers for databases that may hold runnable tasks, within
 *	  iterjob.max_workers.
 *
 *	  It connects to no database.  At start (including after a crash or a
 *	  restart) it marks every connectable database pending; afterwards a
 *	  database becomes pending when an enqueue there commits, when one of its
 *	  workers claims a task (there may be more), or when one of its workers
 *	  dies before finishing (its task must be reclaimed).  A worker that
 *	  finds no runnable task exits, so an idle database keeps no iterjob
 *	  process connected to it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "iterjob.h"

/* how long to wait before retrying a database whose worker died */
#define RETRY_DELAY_MS		1000
#define MAX_RETRY_DELAY_MS	60000
/* how long to wait before retrying when no worker slot was free */
#define NO_SLOT_DELAY_MS	1000
/* a safety net only: enqueues, worker exits and SIGHUP wake the launcher */
#define IDLE_RECHECK_MS		60000

static BackgroundWorkerHandle *handles[ITERJOB_MAX_WORKER_SLOTS];
static bool no_slot_logged = false;

void
iterjob_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "iterjob");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "iterjob_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "iterjob launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "iterjob launcher");
	RegisterBackgroundWorker(&worker);
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_shared->launcher_latch = NULL;
	SpinLockRelease(&iterjob_shared->mutex);
}

/* Oids of the databases that accept connections, in a list in ctx. */
static List *
connectable_databases(MemoryContext ctx)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;
		old = MemoryContextSwitchTo(ctx);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

/*
 * Has the worker in slot i ended?  We know from its handle when we started
 * it; a slot a previous launcher started (this one was restarted) tells by
 * itself, or by its process being gone.
 */
static bool
worker_ended(int i)
{
	IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
	bool		in_use;
	bool		exited;
	pid_t		pid;

	if (handles[i] != NULL)
		return GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED;

	SpinLockAcquire(&iterjob_shared->mutex);
	in_use = slot->in_use;
	exited = slot->exited;
	pid = slot->pid;
	SpinLockRelease(&iterjob_shared->mutex);
	if (!in_use)
		return false;
	return exited || (pid != 0 && kill(pid, 0) != 0 && errno == ESRCH);
}

/* Free the slots of workers that have exited; re-mark their databases. */
static void
reap_workers(void)
{
	int			i;

	for (i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
		Oid			dboid;
		bool		clean;

		if (!worker_ended(i))
			continue;

		/* a process that ended without letting go of its task */
		iterjob_clear_held_task(i);
		SpinLockAcquire(&iterjob_shared->mutex);
		dboid = slot->dboid;
		clean = slot->clean_exit;
		memset(slot, 0, sizeof(*slot));
		SpinLockRelease(&iterjob_shared->mutex);
		if (handles[i] != NULL)
			pfree(handles[i]);
		handles[i] = NULL;

		/*
		 * A worker that died may have left a task to reclaim: retry its
		 * database soon, backing off while its workers keep dying.
		 */
		if (!clean)
			iterjob_mark_database_pending(dboid);
		SpinLockAcquire(&iterjob_shared->mutex);
		for (int d = 0; d < ITERJOB_MAX_DATABASES; d++)
		{
			IterjobDatabase *db = &iterjob_shared->databases[d];

			if (db->dboid != dboid)
				continue;
			if (clean)
				db->retry_delay_ms = 0;
			else
			{
				db->retry_delay_ms = db->retry_delay_ms == 0 ? RETRY_DELAY_MS :
					Min(db->retry_delay_ms * 2, MAX_RETRY_DELAY_MS);
				db->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 db->retry_delay_ms);
			}
		}
		SpinLockRelease(&iterjob_shared->mutex);
	}
}

/* Slots in use: workers we started, and any a previous launcher started. */
static int
running_workers(void)
{
	int			n = 0;

	SpinLockAcquire(&iterjob_shared->mutex);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
		if (iterjob_shared->workers[i].in_use)
			n++;
	SpinLockRelease(&iterjob_shared->mutex);
	return n;
}

/*
 * Start one worker for dboid.  Returns false when no background worker
 * slot was free.
 */
static bool
start_worker(Oid dboid)
{
	BackgroundWorker worker;
	int			slotno;

	SpinLockAcquire(&iterjob_shared->mutex);
	for (slotno = 0; slotno < ITERJOB_MAX_WORKER_SLOTS; slotno++)
		if (!iterjob_shared->workers[slotno].in_use)
			break;
	SpinLockRelease(&iterjob_shared->mutex);
	if (slotno >= ITERJOB_MAX_WORKER_SLOTS)
		return false;			/* cannot happen: the cap is checked first */

	SpinLockAcquire(&iterjob_shared->mutex);
	memset(&iterjob_shared->workers[slotno], 0, sizeof(IterjobWorkerSlot));
	iterjob_shared->workers[slotno].in_use = true;
	iterjob_shared->workers[slotno].dboid = dboid;
	SpinLockRelease(&iterjob_shared->mutex);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "iterjob");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "iterjob_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "iterjob worker %d", slotno);
	snprintf(worker.bgw_type, BGW_MAXLEN, "iterjob worker");
	worker.bgw_main_arg = Int32GetDatum(slotno);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handles[slotno]))
	{
		SpinLockAcquire(&iterjob_shared->mutex);
		iterjob_shared->workers[slotno].in_use = false;
		SpinLockRelease(&iterjob_shared->mutex);
		handles[slotno] = NULL;
		if (!no_slot_logged)
			ereport(LOG,
					(errmsg("iterjob: no background worker slot is free; runnable jobs wait"),
					 errhint("Raise max_worker_processes (it must exceed iterjob.max_workers plus the other background workers); iterjob retries every second.")));
		no_slot_logged = true;
		return false;
	}
	if (no_slot_logged)
		ereport(LOG, (errmsg("iterjob: background worker slots are available again")));
	no_slot_logged = false;
	return true;
}

/*
 * Start workers for pending databases while the cap allows.  Returns how
 * long to sleep, in milliseconds, before looking again.
 */
static long
launch_pending(MemoryContext ctx)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = IDLE_RECHECK_MS;
	List	   *existing = NIL;
	bool		rescan;
	int			i;

	SpinLockAcquire(&iterjob_shared->mutex);
	rescan = iterjob_shared->rescan_all;
	iterjob_shared->rescan_all = false;
	SpinLockRelease(&iterjob_shared->mutex);

	existing = connectable_databases(ctx);
	if (rescan)
	{
		ListCell   *lc;

		foreach(lc, existing)
			iterjob_mark_database_pending(lfirst_oid(lc));
	}

	for (i = 0; i < ITERJOB_MAX_DATABASES; i++)
	{
		IterjobDatabase *db = &iterjob_shared->databases[i];
		Oid			dboid;
		bool		pending;
		TimestampTz not_before;

		SpinLockAcquire(&iterjob_shared->mutex);
		dboid = db->dboid;
		pending = db->pending;
		not_before = db->not_before;
		SpinLockRelease(&iterjob_shared->mutex);

		if (dboid == InvalidOid || !pending)
			continue;
		if (!list_member_oid(existing, dboid))
		{
			/* dropped, or no longer accepting connections: forget it */
			SpinLockAcquire(&iterjob_shared->mutex);
			memset(db, 0, sizeof(*db));
			SpinLockRelease(&iterjob_shared->mutex);
			continue;
		}
		if (not_before > now)
		{
			long		ms = (long) ((not_before - now) / 1000) + 1;

			sleep_ms = Min(sleep_ms, ms);
			continue;
		}
		if (running_workers() >= Min(iterjob_max_workers, ITERJOB_MAX_WORKER_SLOTS))
			break;				/* a worker's exit wakes us */

		/*
		 * Clear the mark before the worker starts: a commit that marks the
		 * database again meanwhile is then never lost, and the worker's claim
		 * comes after the clearing.
		 */
		SpinLockAcquire(&iterjob_shared->mutex);
		db->pending = false;
		SpinLockRelease(&iterjob_shared->mutex);
		if (!start_worker(dboid))
		{
			iterjob_mark_database_pending(dboid);
			sleep_ms = NO_SLOT_DELAY_MS;
			break;
		}
	}
	MemoryContextReset(ctx);
	return sleep_ms;
}

void
iterjob_launcher_main(Datum main_arg)
{
	MemoryContext ctx;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("iterjob launcher");

	ctx = AllocSetContextCreate(TopMemoryContext, "iterjob launcher",
								ALLOCSET_DEFAULT_SIZES);

	SpinLockAcquire(&iterjob_shared->mutex);
	iterjob_shared->launcher_latch = MyLatch;
	iterjob_shared->rescan_all = true;
	SpinLockRelease(&iterjob_shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);

	while (!ShutdownRequestPending)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			iterjob_reload_config();

		reap_workers();
		sleep_ms = launch_pending(ctx);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, iterjob_wait_event(ITERJOB_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
	}

	/*
	 * Exit code 1: the postmaster restarts the launcher after
	 * bgw_restart_time if it was stopped by itself (pg_terminate_backend);
	 * at server shutdown it restarts nothing anyway.
	 */
	proc_exit(1);
}
