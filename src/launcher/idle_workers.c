/*-------------------------------------------------------------------------
 *
 * idle_workers.c
 *	  Warm workers: a worker that finds nothing to do waits for work for
 *	  iterjob.worker_idle_time before it exits, so that a stream of small
 *	  jobs is served without a process start per job.
 *
 *	  A transaction that makes work of one owner runnable wakes, when it
 *	  commits, an idle worker of that owner in its database (or one not
 *	  yet bound to an owner) instead of asking the launcher for a new
 *	  one; a worker whose claim leaves more runnable tasks does the same.
 *	  A worker that has just ended a task counts as idle until its next
 *	  claim is done: woken then, it claims once more.
 *	  Whether a worker is idle, and whether it was woken, is decided under
 *	  the state lock: a worker that gives up waiting is no longer idle, so
 *	  no wake-up is lost in between.  When every worker slot is taken and
 *	  a database waits for a worker, the launcher dismisses idle workers,
 *	  and a worker does not wait at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

/*
 * Wait, idle, for up to idle_ms for work.  Returns true when woken for
 * work (claim again), false when the time passed or the launcher needs
 * the slot (exit).
 */
bool
iterjob_slot_wait_for_work(long idle_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), idle_ms);
	bool		woken = false;

	/* woken between two tasks: the claim may have missed that work */
	if (iterjob_slot_between_tasks(false))
		return true;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->idle = true;
	iterjob_my_slot->woken = false;
	LWLockRelease(iterjob_shared->state_lock);
	iterjob_set_phase("idle");

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		bool		done;

		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		woken = iterjob_my_slot->woken;
		if (!woken && !iterjob_my_slot->dismissed && iterjob_shared->slot_wanted &&
			iterjob_shared->slot_wanted_for == MyDatabaseId)
		{
			/* a slot is wanted for this database's work: claim it here */
			iterjob_shared->slot_wanted = false;
			iterjob_shared->slot_wanted_for = InvalidOid;
			woken = true;
		}
		done = woken || iterjob_my_slot->dismissed || iterjob_shared->slot_wanted ||
			left <= 0;
		if (done)
		{
			/* woken, it stays available until its claim is done */
			iterjob_my_slot->idle = woken;
			iterjob_my_slot->woken = false;
		}
		LWLockRelease(iterjob_shared->state_lock);
		if (done)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, iterjob_wait_event(ITERJOB_WAIT_IDLE));
		ResetLatch(MyLatch);
		if (ConfigReloadPending)
			iterjob_reload_config();
	}
	return woken;
}

/*
 * A worker that has ended a task and claims again is available (between
 * true) until its claim took a task, or found none (false): work that
 * becomes runnable meanwhile may be after its claim's snapshot, so it may
 * be woken for it like an idle worker, and then claims once more instead
 * of leaving the work to a new process.  Returns whether it was woken
 * since it became available.
 */
bool
iterjob_slot_between_tasks(bool between)
{
	bool		woken;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	woken = iterjob_my_slot->idle && iterjob_my_slot->woken;
	iterjob_my_slot->idle = between;
	iterjob_my_slot->woken = false;
	LWLockRelease(iterjob_shared->state_lock);
	return woken;
}

/*
 * Wake an idle worker of database dboid: one that serves owner (or is
 * bound to no owner yet), or any when any_owner.  Returns false when there
 * is none.
 */
static bool
wake_idle(Oid dboid, Oid owner, bool any_owner)
{
	Latch	   *latch = NULL;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use && !slot->exited && slot->idle && !slot->woken &&
			!slot->dismissed && slot->latch != NULL && slot->dboid == dboid &&
			(any_owner || slot->owner == owner || !OidIsValid(slot->owner)))
		{
			slot->woken = true;
			latch = slot->latch;
			break;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	if (latch == NULL)
		return false;
	SetLatch(latch);
	return true;
}

/*
 * Wake an idle worker of database dboid that serves owner (or is bound to
 * no owner yet).  Returns false when there is none: the caller asks the
 * launcher.
 */
bool
iterjob_wake_idle_worker(Oid dboid, Oid owner)
{
	if (iterjob_shared == NULL || !OidIsValid(owner))
		return false;
	return wake_idle(dboid, owner, false);
}

/*
 * For the launcher, when every slot is taken while database dboid waits:
 * wake an idle worker of dboid, whatever its owner.  It claims the work
 * if it is its owner's; if not, its claim finds another owner's job first
 * and it exits, which frees its slot for a fresh worker.  Returns false
 * when there is none.
 */
bool
iterjob_wake_idle_worker_of_database(Oid dboid)
{
	return wake_idle(dboid, InvalidOid, true);
}

/*
 * For the launcher, when every slot is taken while a database waits: ask
 * the idle workers to exit.  Returns how many were asked (their exits
 * wake the launcher).
 */
int
iterjob_dismiss_idle_workers(void)
{
	Latch	   *latches[ITERJOB_MAX_WORKER_SLOTS];
	int			n = 0;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use && !slot->exited && slot->idle && !slot->woken &&
			slot->latch != NULL)
		{
			slot->dismissed = true;
			latches[n++] = slot->latch;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
	return n;
}
