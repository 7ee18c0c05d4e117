/*-------------------------------------------------------------------------
 *
 * commit_wakeup.c
 *	  Wakes the launcher when a transaction that made work runnable
 *	  (enqueued, resumed or retried a job) commits, so the first batch
 *	  starts promptly; nothing polls.  Wakes iterjob.wait() callers when a
 *	  transaction that ended a job commits, and the workers on a job that was
 *	  paused, cancelled or resumed, so no batch starts after that commit.
 *	  The batches in flight of a job that was paused or cancelled are
 *	  interrupted then: the worker's slot says why, and a SIGUSR2 (not the
 *	  SIGINT of pg_cancel_backend()) cancels the batch, which the worker
 *	  rolls back without counting a failed attempt (task_runner.c).  A rolled-back transaction, or subtransaction,
 *	  wakes and interrupts nobody.
 *
 *	  A transaction that is prepared (PREPARE TRANSACTION) instead is
 *	  remembered by its name; the COMMIT PREPARED or ROLLBACK PREPARED that
 *	  ends it, in whatever session, does the same wake-ups, except that it
 *	  interrupts no batch: the workers look at their jobs' states at their
 *	  next batch boundary.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

static bool wake_pending = false;
/* whose work the transaction made runnable: an owner, or InvalidOid */
static Oid	wake_owner = InvalidOid;
static bool wake_owners_mixed = false;
/* the lowest job it made runnable (0: not known) */
static int64 wake_job_id = 0;
static bool wake_at_end = false;
static bool notify_pending = false;

/*
 * Jobs whose workers must look at their state again after commit, and
 * whether their batches in flight are interrupted, with the subtransaction
 * level that asked (a subtransaction rolled back takes its entries back).
 */
typedef struct SignalledJob
{
	int64		job_id;
	bool		interrupt;
	int			level;
} SignalledJob;

static SignalledJob *signalled_jobs = NULL;
static int	n_signalled_jobs = 0;
static int	max_signalled_jobs = 0;
static bool signal_all_jobs = false;

/* the name of the transaction PREPARE TRANSACTION is preparing */
static char preparing_gid[ITERJOB_GID_SIZE];

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Flag and wake the workers of this database on the signalled jobs, and
 * interrupt the batches of those asked to be.  The worker processes run
 * as the same operating system user as this backend, so that needs no
 * privilege here: the caller was allowed to steer the job.
 */
static void
signal_workers(void)
{
	Latch	   *latches[ITERJOB_MAX_WORKER_SLOTS];
	pid_t		pids[ITERJOB_MAX_WORKER_SLOTS];
	int			nlatches = 0;
	int			npids = 0;
	TimestampTz now;

	if (iterjob_shared == NULL)
		return;
	now = GetCurrentTimestamp();
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
		bool		hit = signal_all_jobs;
		bool		interrupt = false;

		if (!slot->in_use || slot->dboid != MyDatabaseId || slot->latch == NULL ||
			slot->job_id == 0)
			continue;
		for (int j = 0; j < n_signalled_jobs; j++)
		{
			if (slot->job_id != signalled_jobs[j].job_id)
				continue;
			hit = true;
			interrupt |= signalled_jobs[j].interrupt;
		}
		if (!hit)
			continue;
		slot->recheck = true;
		latches[nlatches++] = slot->latch;
		if (interrupt && slot->pid != 0)
		{
			slot->interrupt = ITERJOB_INTERRUPT_STEER;
			slot->interrupt_at = now;
			pids[npids++] = slot->pid;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	for (int i = 0; i < nlatches; i++)
		SetLatch(latches[i]);
	for (int i = 0; i < npids; i++)
		(void) kill(pids[i], SIGUSR2);
	/* the launcher ends a batch that ignores the interrupt */
	if (npids > 0)
		iterjob_wake_launcher();
}

static void
forget_signalled_jobs(void)
{
	n_signalled_jobs = 0;
	signal_all_jobs = false;
}

static void
commit_wakeup_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				iterjob_note_activation(MyDatabaseId, wake_job_id);
			if (wake_pending || wake_at_end)
			{
				/* an idle worker of the owner takes it, or a new one */
				if (!wake_pending || wake_at_end || wake_owners_mixed ||
					!iterjob_wake_idle_worker(MyDatabaseId, wake_owner))
				{
					iterjob_mark_database_pending(MyDatabaseId);
					iterjob_wake_launcher();
				}
				wake_pending = false;
				wake_at_end = false;
			}
			wake_owner = InvalidOid;
			wake_owners_mixed = false;
			wake_job_id = 0;
			if (notify_pending)
			{
				notify_pending = false;
				iterjob_notify_job_state();
			}
			if (n_signalled_jobs > 0 || signal_all_jobs)
				signal_workers();
			forget_signalled_jobs();
			break;
		case XACT_EVENT_PREPARE:
			if (wake_pending || wake_at_end || notify_pending ||
				n_signalled_jobs > 0 || signal_all_jobs)
				iterjob_remember_prepared(MyDatabaseId, preparing_gid);
			wake_pending = false;
			wake_at_end = false;
			wake_owner = InvalidOid;
			wake_owners_mixed = false;
			wake_job_id = 0;
			notify_pending = false;
			forget_signalled_jobs();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (wake_at_end)
			{
				iterjob_mark_database_pending(MyDatabaseId);
				iterjob_wake_launcher();
			}
			wake_at_end = false;
			wake_pending = false;
			wake_owner = InvalidOid;
			wake_owners_mixed = false;
			wake_job_id = 0;
			notify_pending = false;
			forget_signalled_jobs();
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that paused or cancelled a job and was rolled back
 * interrupts nothing: its entries go; a committed one hands them to its
 * parent.
 */
static void
commit_wakeup_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			kept = 0;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	for (int i = 0; i < n_signalled_jobs; i++)
	{
		if (signalled_jobs[i].level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
				continue;
			signalled_jobs[i].level = level - 1;
		}
		signalled_jobs[kept++] = signalled_jobs[i];
	}
	n_signalled_jobs = kept;
}

/*
 * A prepared transaction that made work runnable, or changed a job's
 * state, has ended: wake the launcher, iterjob.wait() callers and the
 * workers of this database.
 */
static void
prepared_ended(const char *gid)
{
	if (iterjob_shared == NULL || !iterjob_forget_prepared(MyDatabaseId, gid))
		return;
	iterjob_note_activation(MyDatabaseId, 0);
	iterjob_mark_database_pending(MyDatabaseId);
	iterjob_wake_launcher();
	iterjob_notify_job_state();
	signal_all_jobs = true;
	signal_workers();
	signal_all_jobs = false;
}

static void
wakeup_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	TransactionStmt *stmt = NULL;

	if (IsA(pstmt->utilityStmt, TransactionStmt))
		stmt = (TransactionStmt *) pstmt->utilityStmt;
	if (stmt != NULL && stmt->kind == TRANS_STMT_PREPARE)
		strlcpy(preparing_gid, stmt->gid, sizeof(preparing_gid));

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	/* FinishPreparedTransaction() has made its work visible by now */
	if (stmt != NULL && (stmt->kind == TRANS_STMT_COMMIT_PREPARED ||
						 stmt->kind == TRANS_STMT_ROLLBACK_PREPARED))
		prepared_ended(stmt->gid);
}

/*
 * Once per process and copy of the library: a second copy of the library
 * whose calls bind to the first copy's functions (PostgreSQL 15 exports
 * every symbol) must not chain the hook to itself.
 */
void
iterjob_register_commit_wakeup(void)
{
	static bool registered = false;

	if (registered || ProcessUtility_hook == wakeup_process_utility)
		return;
	registered = true;
	RegisterXactCallback(commit_wakeup_callback, NULL);
	RegisterSubXactCallback(commit_wakeup_subxact_callback, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = wakeup_process_utility;
}

/*
 * Work of owner (InvalidOid: of an owner not known here) is runnable once
 * this transaction commits: job job_id's (0: of jobs not known here).
 */
void
iterjob_wake_at_commit(Oid owner, int64 job_id)
{
	if (!wake_pending)
	{
		wake_owner = owner;
		wake_job_id = job_id;
	}
	else
	{
		if (wake_owner != owner)
			wake_owners_mixed = true;
		if (wake_job_id != 0)
			wake_job_id = job_id == 0 ? 0 : Min(wake_job_id, job_id);
	}
	wake_pending = true;
}

void
iterjob_notify_waiters_at_commit(void)
{
	notify_pending = true;
}

PG_FUNCTION_INFO_V1(iterjob_wake_workers);

/*
 * SQL: have the launcher look at this database when the transaction
 * commits (upgrade scripts call it, so jobs that waited for ALTER EXTENSION
 * iterjob UPDATE start at once).
 */
Datum
iterjob_wake_workers(PG_FUNCTION_ARGS)
{
	iterjob_wake_at_commit(InvalidOid, 0);
	PG_RETURN_VOID();
}

static void
add_signalled_job(int64 job_id, bool interrupt)
{
	if (n_signalled_jobs == max_signalled_jobs)
	{
		max_signalled_jobs = Max(16, max_signalled_jobs * 2);
		signalled_jobs = signalled_jobs == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(SignalledJob) * max_signalled_jobs) :
			repalloc(signalled_jobs, sizeof(SignalledJob) * max_signalled_jobs);
	}
	signalled_jobs[n_signalled_jobs].job_id = job_id;
	signalled_jobs[n_signalled_jobs].interrupt = interrupt;
	signalled_jobs[n_signalled_jobs].level = GetCurrentTransactionNestLevel();
	n_signalled_jobs++;
}

/*
 * When this transaction commits, have the workers on job_id look at its
 * state before their next batch (it was resumed, or failed).
 */
void
iterjob_signal_workers_at_commit(int64 job_id)
{
	add_signalled_job(job_id, false);
}

/*
 * When this transaction commits, interrupt the batches in flight of job_id
 * (it was paused or cancelled): they roll back, and their workers leave
 * the job's tasks.
 */
void
iterjob_interrupt_workers_at_commit(int64 job_id)
{
	add_signalled_job(job_id, true);
}

/*
 * Wake the launcher when this transaction ends, committed or not: it held
 * task rows locked, so workers that came meanwhile may have skipped them.
 */
void
iterjob_wake_at_end(void)
{
	wake_at_end = true;
}
