/*-------------------------------------------------------------------------
 *
 * foreground_watch.c
 *	  The launcher's watch for foreground sessions that a batch blocks.
 *
 *	  A session that is not a background process (an application's, say)
 *	  and has waited longer than iterjob.max_foreground_wait for a lock
 *	  that a worker's batch in flight holds gets that batch cancelled, as
 *	  PostgreSQL cancels an autovacuum that a backend waits behind: the
 *	  worker rolls the batch back and runs it again soon at half its
 *	  size (not a failed attempt; it grows back as batches succeed), and
 *	  the log says whom it unblocked (task_runner.c).  The wait a backfill
 *	  causes is then bounded by the setting, this watch's interval (a
 *	  quarter of the setting) and the rollback.  Only heavyweight locks are
 *	  seen (row locks are waited for as the locking transaction's id);
 *	  waits of iterjob's own workers, of autovacuum and of other background
 *	  processes are left alone.  The lock manager is read directly, without
 *	  SQL: the waiting sessions first (their wait's start, lock-free), then
 *	  the holders of the lock of each one waiting too long.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

/* sessions looked at closely in one round, at most */
#define MAX_CANDIDATES 16
/* the watch's interval, at least */
#define MIN_WATCH_MS 10

typedef struct Candidate
{
	int			pid;
	int32		waited_ms;
} Candidate;

typedef struct Cancelled
{
	pid_t		worker;
	int64		job_id;
	int32		instance;
	int			waiter;
	int32		waited_ms;
	bool		flagged;		/* still that batch, not interrupted since */
} Cancelled;

/* Whether blocker holds a lock that waiter's wait conflicts with. */
static bool
holds_lock_blocking(const BlockedProcsData *data, int waiter, int blocker)
{
	for (int i = 0; i < data->nprocs; i++)
	{
		const BlockedProcData *bproc = &data->procs[i];
		const LockInstanceData *instances = &data->locks[bproc->first_lock];
		const LockInstanceData *waiting = NULL;
		LOCKMASK	conflicts;

		if (bproc->pid != waiter)
			continue;
		for (int j = 0; j < bproc->num_locks; j++)
			if (instances[j].pid == bproc->pid)
			{
				waiting = &instances[j];
				break;
			}
		if (waiting == NULL || waiting->waitLockMode == NoLock)
			continue;
		conflicts = GetLockTagsMethodTable(&waiting->locktag)->conflictTab[waiting->waitLockMode];
		for (int j = 0; j < bproc->num_locks; j++)
			if (instances[j].pid == blocker && (instances[j].holdMask & conflicts) != 0)
				return true;
	}
	return false;
}

/*
 * Cancel the batches that have blocked a foreground session for longer
 * than iterjob.max_foreground_wait.  Returns how long the launcher may
 * sleep before looking again (-1: no worker runs, or the watch is off).
 */
long
iterjob_watch_foreground(TimestampTz now)
{
	pid_t		batch_pids[ITERJOB_MAX_WORKER_SLOTS];
	int			nbatches = 0;
	int			nworkers = 0;
	Candidate	candidates[MAX_CANDIDATES];
	int			ncandidates = 0;
	Cancelled	cancelled[ITERJOB_MAX_WORKER_SLOTS];
	int			ncancelled = 0;
	long		interval;

	if (iterjob_max_foreground_wait < 0)
		return -1;
	interval = Max(MIN_WATCH_MS, iterjob_max_foreground_wait / 4);

	/* the workers whose batch is in flight and not interrupted yet */
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use && !slot->exited)
			nworkers++;
		if (slot->in_use && slot->pid != 0 && !slot->exited && slot->batch_started != 0 &&
			slot->interrupt == ITERJOB_INTERRUPT_NONE)
			batch_pids[nbatches++] = slot->pid;
	}
	LWLockRelease(iterjob_shared->state_lock);
	/* a worker may begin a batch at any moment, and tells no one */
	if (nbatches == 0)
		return nworkers > 0 ? interval : -1;

	/* the sessions waiting for a lock too long: a racy read, checked below */
	for (uint32 i = 0; i < ProcGlobal->allProcCount && ncandidates < MAX_CANDIDATES; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		int			pid = proc->pid;
		TimestampTz since = (TimestampTz) pg_atomic_read_u64(&proc->waitStart);
		long		waited_ms;

		if (pid == 0 || since == 0 || !ITERJOB_PROC_IS_CLIENT(proc) ||
			(proc->statusFlags & PROC_IS_AUTOVACUUM) != 0)
			continue;
		waited_ms = (long) ((now - since) / 1000);
		if (waited_ms < iterjob_max_foreground_wait)
		{
			interval = Min(interval, Max(MIN_WATCH_MS, iterjob_max_foreground_wait - waited_ms));
			continue;
		}
		candidates[ncandidates].pid = pid;
		candidates[ncandidates].waited_ms = (int32) Min(waited_ms, PG_INT32_MAX);
		ncandidates++;
	}

	/* which of them a batch blocks: the lock's holders, as the lock manager has them */
	for (int c = 0; c < ncandidates; c++)
	{
		BlockedProcsData *data = GetBlockerStatusData(candidates[c].pid);

		for (int b = 0; b < nbatches; b++)
		{
			if (batch_pids[b] == 0 ||
				!holds_lock_blocking(data, candidates[c].pid, (int) batch_pids[b]))
				continue;
			cancelled[ncancelled].worker = batch_pids[b];
			cancelled[ncancelled].flagged = false;
			cancelled[ncancelled].waiter = candidates[c].pid;
			cancelled[ncancelled].waited_ms = candidates[c].waited_ms;
			ncancelled++;
			batch_pids[b] = 0;
		}
		pfree(data->procs);
		pfree(data->locks);
		pfree(data->waiter_pids);
		pfree(data);
	}
	if (ncancelled == 0)
		return interval;

	/* flag each batch, still the same one, then cancel it */
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		for (int c = 0; c < ncancelled; c++)
		{
			if (cancelled[c].worker != slot->pid || !slot->in_use || slot->exited ||
				slot->batch_started == 0 || slot->interrupt != ITERJOB_INTERRUPT_NONE)
				continue;
			slot->interrupt = ITERJOB_INTERRUPT_FOREGROUND;
			slot->interrupt_at = now;
			slot->foreground_pid = cancelled[c].waiter;
			slot->foreground_wait_ms = cancelled[c].waited_ms;
			cancelled[c].job_id = slot->job_id;
			cancelled[c].instance = slot->instance;
			cancelled[c].flagged = true;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	for (int c = 0; c < ncancelled; c++)
	{
		if (!cancelled[c].flagged)
			continue;
		ereport(LOG,
				(errmsg("iterjob: cancelling the batch of worker %d (job " INT64_FORMAT " instance %d): session %d has waited %d ms for a lock it holds",
						(int) cancelled[c].worker, cancelled[c].job_id, cancelled[c].instance,
						cancelled[c].waiter, cancelled[c].waited_ms),
				 errdetail("iterjob.max_foreground_wait is %d ms.", iterjob_max_foreground_wait)));
		(void) kill(cancelled[c].worker, SIGUSR2);
	}
	return interval;
}
