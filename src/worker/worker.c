/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  An iteration worker: connected to one database, it claims runnable
 *	  tasks one after another and runs them, and exits when none is left
 *	  for iterjob.worker_idle_time (idle_workers.c).
 *
 *	  A worker serves one owner.  Its first claim takes the oldest runnable
 *	  task of any owner and binds the process to that task's owner
 *	  (run_as.c); from then on it claims only that owner's tasks, so no
 *	  session state one owner's SQL leaves in the process (advisory locks,
 *	  dblink connections, prepared statements, settings) reaches another
 *	  owner's job.  When it runs out of its owner's tasks while another
 *	  owner's wait, or when another owner's job should have the next worker
 *	  (fairness.c), it asks the launcher for a worker for them and leaves.
 *	  When asked to make room for a job without a worker, it leaves its task
 *	  at the next batch boundary, still marked running, so that a worker
 *	  resumes it from its checkpoint: for another database it exits, for a
 *	  job here it claims again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/*
 * A queued task whose previous worker still holds its task lock is looked
 * at again every BUSY_WAIT_MS, BUSY_MAX_WAITS times at most, rather than
 * left behind when this worker exits.
 */
#define BUSY_WAIT_MS		10
#define BUSY_MAX_WAITS		500

/*
 * Is the extension installed here, at the version this library works
 * with?  After a package upgrade, ALTER EXTENSION iterjob UPDATE brings it
 * there; until then the worker leaves the database alone.
 */
static bool
extension_usable(void)
{
	char	   *version;

	if (!iterjob_worker_adopt_extension())
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

/*
 * Run at iterjob.worker_nice: called after connecting and before each
 * claim, so that a reload reaches running workers at their next task.  At
 * 0, a worker that never changed its priority keeps the one it inherited
 * from the postmaster.  An unprivileged process can make its nice value
 * higher but not lower again: a lower setting then applies to workers
 * started after the reload, and this one says so once.  A failure never
 * stops the worker.
 */
static void
apply_worker_nice(void)
{
	static int	applied = 0;
	static bool reported = false;
	int			save_errno;
	int			current;

	if (iterjob_worker_nice == applied)
		return;
	if (setpriority(PRIO_PROCESS, 0, iterjob_worker_nice) == 0)
	{
		applied = iterjob_worker_nice;
		return;
	}
	save_errno = errno;
	if (reported)
		return;
	reported = true;
	errno = 0;
	current = getpriority(PRIO_PROCESS, 0);
	if ((save_errno == EACCES || save_errno == EPERM) &&
		!(current == -1 && errno != 0) && iterjob_worker_nice < current)
		ereport(LOG,
				(errmsg("iterjob: this worker keeps nice value %d; iterjob.worker_nice = %d applies to workers started from now on",
						current, iterjob_worker_nice),
				 errdetail("An unprivileged process cannot lower its nice value.")));
	else
	{
		errno = save_errno;
		ereport(WARNING,
				(errmsg("iterjob: could not set the worker's nice value to %d: %m",
						iterjob_worker_nice)));
	}
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
 * Claim the next runnable task of the worker's owner (of any owner before
 * its first claim) in its own transaction.  Returns NULL when there is
 * none (purging old jobs then, unless *busy says a queued task was held
 * back by its previous worker), or when the extension is not usable in
 * this database.  *others says whether other owners' tasks wait (or
 * should have the next worker: fairness.c), *more
 * whether runnable tasks besides the one claimed do.
 */
static IterjobTask *
claim_next_task(MemoryContext cxt, Oid owner, bool *busy, bool *others,
				bool *more)
{
	IterjobTask *task = NULL;
	IterjobSavedUser saved;
	int			nest;

	*busy = false;
	*others = false;
	*more = false;
	iterjob_worker_begin(true);
	pgstat_report_activity(STATE_RUNNING, "iterjob: claiming a task");
	iterjob_set_phase("claiming");

	/*
	 * A claim that a crash loses leaves its task queued, to be claimed again:
	 * no need to wait for its commit to reach disk.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	nest = iterjob_begin_internal(&saved);
	if (extension_usable())
	{
		task = iterjob_claim_task(cxt, owner, busy, others, more);
		if (task != NULL && task->died)
			iterjob_record_death(task);
		if (task == NULL && !*busy)
			purge_old_jobs();
	}
	iterjob_end_internal(nest, &saved);

	/* a death counted must survive the next crash it may cause */
	if (task != NULL && task->died)
		iterjob_commit_durably();
	iterjob_worker_commit(true);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (task != NULL && task->failed)
	{
		/* that death was its last attempt: the instance fails */
		iterjob_worker_begin(true);
		(void) iterjob_finish_task(task, "failed", task->death_message ? task->death_message :
								   "worker died during this batch");
		iterjob_settle_job(task->job_id);
		iterjob_worker_commit(true);
	}
	return task;
}

/*
 * Tell the launcher, which connects to no database and cannot read
 * pg_shdepend, in which databases iterjob is installed: where the
 * extension script granted objects to iterjob_user.
 */
static void
report_installed_databases(void)
{
	Oid		   *dboids;
	int			n;

	iterjob_worker_begin(true);
	if (SPI_execute("SELECT DISTINCT d.dbid FROM pg_catalog.pg_shdepend d"
					" WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass"
					"   AND d.refobjid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r"
					"         WHERE r.rolname OPERATOR(pg_catalog.=) 'iterjob_user')"
					"   AND d.dbid OPERATOR(pg_catalog.<>) 0",
					true, ITERJOB_MAX_INSTALLED + 1) != SPI_OK_SELECT)
		elog(ERROR, "could not list the databases with iterjob installed");
	n = (int) SPI_processed;
	dboids = palloc(sizeof(Oid) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		dboids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	iterjob_report_installed(dboids, n > ITERJOB_MAX_INSTALLED ? -1 : n);
	iterjob_worker_commit(true);
	iterjob_wake_launcher();
}

void
iterjob_worker_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	Oid			owner = InvalidOid;
	MemoryContext cxt;
	bool		busy;
	bool		others = false;
	bool		more = false;
	bool		yielded = false;
	int			busy_waits = 0;
	uint32		generation;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&generation, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(uint32));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	/* a pause or cancel of its job interrupts its batch (task_runner.c) */
	pqsignal(SIGUSR2, iterjob_steer_signal_handler);
	BackgroundWorkerUnblockSignals();
	/* a cancel cancels a batch, never the worker (task_runner.c) */
	HOLD_CANCEL_INTERRUPTS();

	/*
	 * The settings as they are now: this process started with the
	 * postmaster's settings as they were at the fork, and a reload's SIGHUP
	 * that came before its handler was installed is lost.
	 */
	iterjob_reload_config();

	iterjob_slot_attach(slotno, generation);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("iterjob worker");
	apply_worker_nice();

	/*
	 * iterjob's own queries run with a search_path that user objects cannot
	 * hijack; user SQL gets its owner's search_path per batch.  Parallel
	 * query and JIT buy nothing for small batches and cost per batch.  Float
	 * keys print exactly in cursors, whatever the server's setting.
	 */
	SetConfigOption("search_path", ITERJOB_INTERNAL_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION);

	cxt = AllocSetContextCreate(TopMemoryContext, "iterjob worker",
								ALLOCSET_DEFAULT_SIZES);
	if (iterjob_my_slot->report_installed)
		report_installed_databases();
	for (;;)
	{
		IterjobTask *task;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			iterjob_reload_config();
		apply_worker_nice();

		task = claim_next_task(cxt, owner, &busy, &others, &more);
		if (task == NULL && busy && busy_waits++ < BUSY_MAX_WAITS)
		{
			/* its previous worker lets go of that task in a moment */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 BUSY_WAIT_MS, iterjob_wait_event(ITERJOB_WAIT_TASK_HANDOVER));
			ResetLatch(MyLatch);
			continue;
		}
		/* nothing to do: wait a while for work of this owner, then exit */
		if (task == NULL && !others && iterjob_worker_idle_time_ms > 0 &&
			iterjob_slot_wait_for_work(iterjob_worker_idle_time_ms))
		{
			busy_waits = 0;
			continue;
		}
		if (task == NULL)
			break;
		busy_waits = 0;
		/* woken between tasks for work its claim may not have seen */
		if (iterjob_slot_between_tasks(false))
			more = true;

		if (!OidIsValid(owner))
		{
			/* this process is the owner's from now on */
			owner = task->owner;
			iterjob_bind_to_owner(owner, task->owner_is_superuser);
		}

		/* more runnable tasks wait: wake an idle worker, or ask the launcher */
		if (more && !iterjob_wake_idle_worker(MyDatabaseId, owner))
		{
			iterjob_mark_database_pending(MyDatabaseId);
			iterjob_wake_launcher();
		}

		/* (the claim named the task in our slot) */
		if (!task->failed)
			iterjob_run_task(task);
		iterjob_release_task();
		/* what the owner's SQL locked for the session ends with the task */
		LockReleaseSession(USER_LOCKMETHOD);
		iterjob_slot_set_task(0, 0, 0);
		iterjob_set_phase("idle");
		yielded = task->yielded;
		/* it has had its turn: jobs whose turn is longer ago come first */
		if (yielded)
			iterjob_note_turn(task->job_id);
		MemoryContextDelete(task->cxt);
		/*
		 * Left for another database (or asked to, as the task ended by
		 * itself): exit; for a job here: claim again, fairly.
		 */
		if ((yielded || iterjob_slot_yield_requested()) && iterjob_slot_take_yield())
		{
			yielded = true;
			break;
		}
		yielded = false;
		iterjob_slot_between_tasks(true);
	}

	/* woken while between tasks, for work this worker leaves */
	if (iterjob_slot_between_tasks(false))
		others = true;

	/*
	 * Another owner's tasks wait, or this worker left its task for another
	 * database's: a new worker will take them, in turn.
	 */
	if (others || yielded)
	{
		iterjob_mark_database_pending(MyDatabaseId);
		iterjob_wake_launcher();
	}
	iterjob_worker_exit_clean();
}
