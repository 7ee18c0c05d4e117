/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one static background worker per cluster that starts
 *	  iteration workers for databases that may hold runnable tasks, within
 *	  iterjob.max_workers, sharing them fairly between databases.
 *
 *	  It connects to no database, and never starts a worker in a template
 *	  database or one that does not allow connections.  A database becomes
 *	  pending when an enqueue, resume or retry there commits (also through
 *	  COMMIT PREPARED), when one of its workers claims a task while more
 *	  wait, when a worker leaves runnable tasks behind (it died, or left
 *	  its task for another database's turn), and at the launcher's start.
 *	  A worker that finds no runnable task waits for work for
 *	  iterjob.worker_idle_time, then exits, so an idle database keeps no
 *	  iterjob process connected to it; while it waits, an enqueue of its
 *	  owner there wakes it instead of the launcher (idle_workers.c), and
 *	  the launcher dismisses it when it needs its slot.
 *
 *	  The databases with iterjob installed are those where the extension
 *	  granted objects to the cluster-wide role iterjob_user, in pg_shdepend;
 *	  the launcher cannot read that catalog, so a worker it starts reads it
 *	  for it (at the launcher's start, a worker in any database; then the
 *	  first worker started after each iterjob.rescan_interval), and a
 *	  database marked pending has iterjob too.  At its start, or when marks were lost, the
 *	  launcher looks at all of them.  Every iterjob.rescan_interval, the one
 *	  of them looked at longest ago (idle or not) gets a worker that checks
 *	  for runnable work: a safety net for a wake-up that cannot reach the
 *	  launcher (a prepared transaction committed after a restart, a request
 *	  for another worker lost in a race), one connection per interval
 *	  however many databases there are.
 *
 *	  What the launcher knows of databases lives in its own memory, bounded
 *	  by the databases with iterjob installed and those marked pending
 *	  (shared memory holds only the marks between two rounds); databases
 *	  dropped are forgotten at the next look at pg_database.
 *
 *	  Fairness: pending databases get workers in turn, the one that got one
 *	  longest ago first.  When every worker is busy and a database waiting
 *	  for one has at least two fewer than the database with the most, one
 *	  of the latter's workers that has kept its task for iterjob.time_slice
 *	  is asked to leave it at its next batch boundary (fairness.c, which
 *	  also shares a database's workers between its jobs and owners).
 *
 *	  The launcher also watches the batches in flight: a worker whose batch
 *	  goes on past its statement timeout, or past a pause or cancel of its
 *	  job, is terminated (batch_watchdog.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_shdepend.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

/* how long to wait before retrying a database whose worker died */
#define RETRY_DELAY_MS		1000
#define MAX_RETRY_DELAY_MS	60000
/* how long to wait before retrying when no worker slot was free */
#define NO_SLOT_DELAY_MS	1000
/* a registered worker that has not started after this never will */
#define START_TIMEOUT_MS	60000

/* What the launcher knows of one database. */
typedef struct LauncherDatabase
{
	Oid			dboid;			/* hash key */
	bool		installed;		/* iterjob is installed there */
	bool		pending;		/* may have runnable work without a worker */
	int			nworkers;		/* workers running there now */
	TimestampTz not_before;		/* no new worker before this time */
	int			retry_delay_ms; /* grows while its workers keep dying */
	TimestampTz last_start;		/* when it last got a worker */
} LauncherDatabase;

static HTAB *databases = NULL;
static BackgroundWorkerHandle *handles[ITERJOB_MAX_WORKER_SLOTS];
static bool no_slot_logged = false;
static uint32 next_generation = 0;
static TimestampTz last_rescan = 0;
/* the next worker started reports the databases with iterjob installed */
static bool report_wanted = false;
/* when that report comes, mark all of them pending */
static bool mark_installed = false;
static uint32 seen_installed_generation = 0;
static bool installed_everywhere = false;
/* a database any worker can connect to, to read pg_shdepend from */
static Oid	first_connectable = InvalidOid;

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
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_shared->launcher_latch = NULL;
	LWLockRelease(iterjob_shared->state_lock);
}

static LauncherDatabase *
database_entry(Oid dboid)
{
	bool		found;
	LauncherDatabase *db = hash_search(databases, &dboid, HASH_ENTER, &found);

	if (!found)
	{
		memset(db, 0, sizeof(*db));
		db->dboid = dboid;
	}
	return db;
}

/* Oids of the databases a worker may connect to, in a list. */
static List *
connectable_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate ||
			db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;
		result = lappend_oid(result, db->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Take the databases with iterjob installed that a worker reported since
 * we last looked (a worker started with report_installed; the launcher
 * cannot read pg_shdepend, a catalog of databases), and mark them pending
 * when asked.
 */
static void
take_installed_report(void)
{
	Oid		   *dboids;
	int			n;
	uint32		generation;
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	generation = iterjob_shared->installed_generation;
	n = iterjob_shared->ninstalled;
	if (generation == seen_installed_generation)
	{
		LWLockRelease(iterjob_shared->state_lock);
		return;
	}
	dboids = palloc(sizeof(Oid) * (Max(n, 0) + 1));
	if (n > 0)
		memcpy(dboids, iterjob_shared->installed, sizeof(Oid) * n);
	LWLockRelease(iterjob_shared->state_lock);
	seen_installed_generation = generation;

	/* too many to report: take every database as having iterjob */
	installed_everywhere = (n < 0);
	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->installed = installed_everywhere;
	for (int i = 0; i < n; i++)
	{
		db = database_entry(dboids[i]);
		db->installed = true;
	}
	if (mark_installed)
	{
		hash_seq_init(&seq, databases);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->installed)
				db->pending = true;
		mark_installed = false;
	}
	pfree(dboids);
}

/*
 * Bring what we know of databases up to date with pg_database: forget
 * those dropped or closed to connections, and those without iterjob that
 * nothing marked.  With installed_everywhere, every connectable database
 * is taken as having iterjob.
 */
static void
refresh_databases(MemoryContext ctx)
{
	MemoryContext old = CurrentMemoryContext;
	List	   *connectable;
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	MemoryContextSwitchTo(ctx);
	connectable = connectable_databases();
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);

	if (installed_everywhere)
	{
		ListCell   *lc;

		foreach(lc, connectable)
			database_entry(lfirst_oid(lc))->installed = true;
	}
	first_connectable = connectable != NIL ? linitial_oid(connectable) : InvalidOid;
	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (!list_member_oid(connectable, db->dboid) ||
			(!db->installed && !db->pending && db->nworkers == 0))
			(void) hash_search(databases, &db->dboid, HASH_REMOVE, NULL);
	}
	MemoryContextReset(ctx);
	elog(DEBUG1, "iterjob: the launcher knows %ld databases",
		 hash_get_num_entries(databases));
}

/*
 * Has the worker in slot i ended?  We know from its handle when we started
 * it; a slot a previous launcher started (this one was restarted) tells by
 * itself, or by its process being gone, or by never having started.
 */
static bool
worker_ended(int i, TimestampTz now_ts)
{
	IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
	bool		in_use;
	bool		exited;
	pid_t		pid;
	TimestampTz registered_at;

	if (handles[i] != NULL)
		return GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	in_use = slot->in_use;
	exited = slot->exited;
	pid = slot->pid;
	registered_at = slot->registered_at;
	LWLockRelease(iterjob_shared->state_lock);
	if (!in_use)
		return false;
	if (pid == 0)
		return TimestampDifferenceExceeds(registered_at, now_ts, START_TIMEOUT_MS);
	return exited || (kill(pid, 0) != 0 && errno == ESRCH);
}

/*
 * Free the slots of workers that have exited; databases whose workers died
 * are pending again, after a delay that grows while they keep dying.  Then
 * count the workers of each database.
 */
static void
reap_workers(void)
{
	TimestampTz now_ts = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;

	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
		Oid			dboid;
		bool		clean;
		bool		terminated;

		if (!worker_ended(i, now_ts))
			continue;

		/* a process that ended without letting go of its task */
		iterjob_clear_held_task(i);
		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		dboid = slot->dboid;
		clean = slot->clean_exit;
		terminated = slot->terminated != ITERJOB_INTERRUPT_NONE;
		memset(slot, 0, sizeof(*slot));
		LWLockRelease(iterjob_shared->state_lock);
		if (handles[i] != NULL)
			pfree(handles[i]);
		handles[i] = NULL;

		db = database_entry(dboid);
		if (clean)
			db->retry_delay_ms = 0;
		else if (terminated)
		{
			/* we ended it (batch_watchdog.c): its task may wait, at once */
			db->pending = true;
			db->retry_delay_ms = 0;
		}
		else
		{
			/* it may have left a task to reclaim: retry, backing off */
			db->pending = true;
			db->retry_delay_ms = db->retry_delay_ms == 0 ? RETRY_DELAY_MS :
				Min(db->retry_delay_ms * 2, MAX_RETRY_DELAY_MS);
			db->not_before = TimestampTzPlusMilliseconds(now_ts, db->retry_delay_ms);
		}
	}

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->nworkers = 0;
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use)
		{
			db = hash_search(databases, &slot->dboid, HASH_FIND, NULL);
			if (db != NULL)
				db->nworkers++;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
}

/* Slots in use: workers we started, and any a previous launcher started. */
static int
running_workers(void)
{
	int			n = 0;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
		if (iterjob_shared->workers[i].in_use)
			n++;
	LWLockRelease(iterjob_shared->state_lock);
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
	IterjobWorkerSlot *slot = NULL;
	int			slotno;
	uint32		generation = ++next_generation;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (slotno = 0; slotno < ITERJOB_MAX_WORKER_SLOTS; slotno++)
	{
		if (!iterjob_shared->workers[slotno].in_use)
		{
			slot = &iterjob_shared->workers[slotno];
			memset(slot, 0, sizeof(IterjobWorkerSlot));
			slot->in_use = true;
			slot->dboid = dboid;
			slot->generation = generation;
			slot->registered_at = GetCurrentTimestamp();
			slot->report_installed = report_wanted;
			break;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	if (slot == NULL)
		return false;			/* cannot happen: the cap is checked first */

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
	memcpy(worker.bgw_extra + sizeof(Oid), &generation, sizeof(uint32));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handles[slotno]))
	{
		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		slot->in_use = false;
		LWLockRelease(iterjob_shared->state_lock);
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
	report_wanted = false;
	elog(DEBUG1, "iterjob: started worker %d for database %u", slotno, dboid);
	return true;
}

static bool
any_pending(void)
{
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (db->pending)
		{
			hash_seq_term(&seq);
			return true;
		}
	}
	return false;
}

/* Order of turns: the database that got a worker longest ago first. */
static int
compare_turns(const void *a, const void *b)
{
	const LauncherDatabase *da = *(LauncherDatabase *const *) a;
	const LauncherDatabase *db = *(LauncherDatabase *const *) b;

	if (da->last_start != db->last_start)
		return da->last_start < db->last_start ? -1 : 1;
	return da->dboid < db->dboid ? -1 : (da->dboid > db->dboid ? 1 : 0);
}

/*
 * Every worker is busy and database waiting has work but fewer workers
 * than another: ask a worker of the database with the most, one that has
 * kept its task for a time slice, to leave it (fairness.c).  Returns how
 * long to wait before looking again when none has yet, or -1.
 */
static long
make_room_for(LauncherDatabase *waiting, TimestampTz now_ts)
{
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;
	LauncherDatabase *busiest = NULL;
	long		ms;

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
		if (busiest == NULL || db->nworkers > busiest->nworkers)
			busiest = db;
	if (busiest == NULL || busiest->nworkers < waiting->nworkers + 2)
		return -1;
	ms = iterjob_request_yield(busiest->dboid, InvalidOid, true, now_ts);
	return ms > 0 ? ms : -1;
}

/*
 * Say whether the launcher waits for a worker slot for database dboid's
 * work (idle workers of other databases leave; those of dboid claim it).
 */
static void
set_slot_wanted(bool wanted, Oid dboid)
{
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_shared->slot_wanted = wanted;
	iterjob_shared->slot_wanted_for = wanted ? dboid : InvalidOid;
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * Start workers for pending databases, in turn, while the cap allows.
 * Returns how long to sleep, in milliseconds, before looking again.
 */
static long
launch_pending(MemoryContext ctx)
{
	TimestampTz now_ts = GetCurrentTimestamp();
	long		sleep_ms = iterjob_rescan_interval_ms;
	Oid			marked[ITERJOB_MAX_DATABASES];
	int			nmarked;
	bool		rescan_all;
	HASH_SEQ_STATUS seq;
	LauncherDatabase *db;
	LauncherDatabase **turns;
	int			nturns = 0;
	int			turn;
	bool		refreshed = false;

	nmarked = iterjob_take_pending_databases(marked, &rescan_all);
	for (int i = 0; i < nmarked; i++)
	{
		/* a mark comes from iterjob's own functions: it is installed there */
		db = database_entry(marked[i]);
		db->pending = true;
		db->installed = true;
	}
	take_installed_report();

	if (rescan_all)
	{
		/*
		 * At start, or when marks were lost: have a worker, in any database,
		 * say where iterjob is installed, and look at all of those.
		 */
		refresh_databases(ctx);
		refreshed = true;
		last_rescan = now_ts;
		mark_installed = true;
		report_wanted = true;
		if (OidIsValid(first_connectable))
			database_entry(first_connectable)->pending = true;
	}
	else if (TimestampDifferenceExceeds(last_rescan, now_ts, iterjob_rescan_interval_ms))
	{
		/*
		 * The periodic look: the database looked at longest ago, idle or not
		 * (a lost request for another worker there costs one interval).
		 */
		LauncherDatabase *idlest = NULL;

		refresh_databases(ctx);
		refreshed = true;
		last_rescan = now_ts;
		hash_seq_init(&seq, databases);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->installed && !db->pending &&
				(idlest == NULL || compare_turns(&db, &idlest) < 0))
				idlest = db;
		if (idlest != NULL)
			idlest->pending = true;
		/* the next worker started, for whatever database, reports */
		report_wanted = true;
	}

	/*
	 * A database dropped since it was marked gets no worker: look at
	 * pg_database before starting any (with every worker busy, a claim's
	 * mark costs no catalog read).
	 */
	if (!refreshed && any_pending() &&
		running_workers() < Min(iterjob_max_workers, ITERJOB_MAX_WORKER_SLOTS))
		refresh_databases(ctx);

	turns = palloc(sizeof(LauncherDatabase *) * (hash_get_num_entries(databases) + 1));
	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (!db->pending)
			continue;
		if (db->not_before > now_ts)
			sleep_ms = Min(sleep_ms, (long) ((db->not_before - now_ts) / 1000) + 1);
		else
			turns[nturns++] = db;
	}
	qsort(turns, nturns, sizeof(LauncherDatabase *), compare_turns);

	for (turn = 0; turn < nturns; turn++)
	{
		db = turns[turn];
		if (running_workers() >= Min(iterjob_max_workers, ITERJOB_MAX_WORKER_SLOTS))
		{
			LauncherDatabase *neediest = db;
			long		ms;

			/*
			 * An idle worker of the database takes the work (or leaves it to
			 * a fresh worker); a worker that ends its task and claims again
			 * counts as idle, so a stream of jobs does not dismiss the
			 * workers that would serve it.
			 */
			if (iterjob_wake_idle_worker_of_database(db->dboid))
			{
				db->pending = false;
				continue;
			}
			/* idle workers leave first (none waits meanwhile): their exits wake us */
			set_slot_wanted(true, db->dboid);
			if (iterjob_dismiss_idle_workers() > 0)
				break;
			for (int j = turn + 1; j < nturns; j++)
				if (turns[j]->nworkers < neediest->nworkers)
					neediest = turns[j];
			/* a worker's exit wakes us; a time slice may end first */
			ms = make_room_for(neediest, now_ts);
			if (ms > 0)
				sleep_ms = Min(sleep_ms, ms);
			break;
		}

		/*
		 * Clear the mark before the worker starts: a commit that marks the
		 * database again meanwhile is then never lost, and the worker's claim
		 * comes after the clearing.
		 */
		db->pending = false;
		if (!start_worker(db->dboid))
		{
			db->pending = true;
			sleep_ms = NO_SLOT_DELAY_MS;
			break;
		}
		db->last_start = now_ts;
		db->nworkers++;
	}
	if (turn == nturns)
		set_slot_wanted(false, InvalidOid);
	pfree(turns);
	return sleep_ms;
}

void
iterjob_launcher_main(Datum main_arg)
{
	MemoryContext ctx;
	HASHCTL		info;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("iterjob launcher");

	ctx = AllocSetContextCreate(TopMemoryContext, "iterjob launcher",
								ALLOCSET_DEFAULT_SIZES);
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(LauncherDatabase);
	databases = hash_create("iterjob launcher databases", 64, &info,
							HASH_ELEM | HASH_BLOBS);

	/* a worker slot's generation differs from a previous launcher's */
	next_generation = (uint32) MyProcPid << 16;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_shared->launcher_latch = MyLatch;
	iterjob_shared->rescan_all = true;
	LWLockRelease(iterjob_shared->state_lock);
	before_shmem_exit(launcher_detach, (Datum) 0);

	while (!ShutdownRequestPending)
	{
		long		sleep_ms;
		long		watch_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			iterjob_reload_config();

		reap_workers();
		sleep_ms = launch_pending(ctx);
		MemoryContextReset(ctx);
		watch_ms = iterjob_watch_batches(GetCurrentTimestamp());
		if (watch_ms >= 0)
			sleep_ms = Min(sleep_ms, watch_ms);
		watch_ms = iterjob_watch_foreground(GetCurrentTimestamp());
		if (watch_ms >= 0)
			sleep_ms = Min(sleep_ms, watch_ms);
		watch_ms = iterjob_pace_for_foreground(GetCurrentTimestamp());
		if (watch_ms >= 0)
			sleep_ms = Min(sleep_ms, watch_ms);

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
