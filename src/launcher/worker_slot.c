/*-------------------------------------------------------------------------
 *
 * worker_slot.c
 *	  An iteration worker's own slot in shared memory: what it shows the
 *	  views (task, phase, batches), the flag that says its job's state
 *	  changed or that it should leave its task for another job, the task it
 *	  holds, and the batch it runs (with its statement timeout, and whether
 *	  a pause or cancel of its job interrupted it: commit_wakeup.c).
 *
 *	  A worker that dies in the middle of a batch leaves a record of it
 *	  (iterjob_take_death()): by itself when it exits (FATAL), or, when its
 *	  death restarts the server (a signal, a segfault, an out-of-memory
 *	  kill), through the postmaster, which carries the batches in flight
 *	  across the reset of shared memory (shared_state.c).  Whoever reclaims
 *	  the task counts the death as a failed attempt of that batch.
 *
 *	  Holding a task is what binds it to its live worker.  A worker holds
 *	  at most one task, from its claim until it leaves the task; a task
 *	  marked running that no slot of its database holds has no live worker
 *	  and may be reclaimed at once.  The hold lives in shared memory, out of
 *	  reach of the SQL a job runs (pg_advisory_unlock_all() and the like
 *	  cannot release or forge it), and it ends with the process: cleared
 *	  when the worker exits, by the launcher when it reaps a slot whose
 *	  process ended without clearing it, and with all of shared memory by a
 *	  crash-restart.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

IterjobWorkerSlot *iterjob_my_slot = NULL;

/* Remember that a worker died in a batch of task_id (lock held). */
static void
record_death(Oid dboid, int64 task_id, int64 batch_no, int exit_code,
			 int32 overran_ms)
{
	int			i;

	for (i = 0; i < ITERJOB_MAX_DEATHS; i++)
		if (iterjob_shared->deaths[i].dboid == InvalidOid)
			break;
	if (i == ITERJOB_MAX_DEATHS)
	{
		/* full (of deaths in databases gone since): reuse the oldest */
		i = iterjob_shared->next_death;
		iterjob_shared->next_death = (i + 1) % ITERJOB_MAX_DEATHS;
	}
	iterjob_shared->deaths[i].dboid = dboid;
	iterjob_shared->deaths[i].task_id = task_id;
	iterjob_shared->deaths[i].batch_no = batch_no;
	iterjob_shared->deaths[i].crash = false;
	iterjob_shared->deaths[i].exit_code = exit_code;
	iterjob_shared->deaths[i].overran_ms = overran_ms;
}

/*
 * before_shmem_exit: a worker that leaves in the middle of a batch (FATAL:
 * pg_terminate_backend(), a lost connection to a remote, an action that
 * ends its own process) dies there; let go of the task, tell the launcher
 * we ended.  A worker the launcher terminated because its batch ignored a
 * pause or cancel of its job, or the cancel of a batch that blocked a
 * foreground session, did not fail: that is no death; one it
 * terminated because its batch ran on past its statement timeout is one,
 * and says so (batch_watchdog.c).
 */
static void
slot_detach(int code, Datum arg)
{
	uint8		terminated;
	int32		timeout_ms;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	terminated = iterjob_my_slot->terminated;
	timeout_ms = iterjob_my_slot->batch_timeout_ms;
	LWLockRelease(iterjob_shared->state_lock);

	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	if (iterjob_my_slot->batch_task != 0 && terminated != ITERJOB_INTERRUPT_STEER &&
		terminated != ITERJOB_INTERRUPT_FOREGROUND)
		record_death(iterjob_my_slot->dboid, iterjob_my_slot->batch_task,
					 iterjob_my_slot->batch_no, code,
					 terminated == ITERJOB_INTERRUPT_OVERRAN ? Max(timeout_ms, 1) : 0);
	iterjob_my_slot->batch_task = 0;
	LWLockRelease(iterjob_shared->lock);
	iterjob_release_task();
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->exited = true;
	iterjob_my_slot->latch = NULL;
	LWLockRelease(iterjob_shared->state_lock);
	iterjob_wake_launcher();
}

/*
 * Take slot slotno, reserved for this worker by the launcher.  A slot the
 * launcher gave up on before the worker started (it never started in
 * time) may have been reserved again since: then leave at once.
 */
void
iterjob_slot_attach(int slotno, uint32 generation)
{
	IterjobWorkerSlot *slot = &iterjob_shared->workers[slotno];
	bool		ours;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	ours = slot->in_use && slot->generation == generation && slot->pid == 0;
	if (ours)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
	}
	LWLockRelease(iterjob_shared->state_lock);
	if (!ours)
	{
		ereport(LOG,
				(errmsg("iterjob: worker slot %d was given up before this worker started", slotno)));
		proc_exit(0);
	}
	iterjob_my_slot = slot;
	before_shmem_exit(slot_detach, (Datum) 0);
}

void
iterjob_set_phase(const char *phase)
{
	if (iterjob_my_slot == NULL)
		return;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	strlcpy(iterjob_my_slot->phase, phase, sizeof(iterjob_my_slot->phase));
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * The task the views show (job_id 0: none), and whose pause or cancel
 * interrupts this worker's batch: set in the transaction that claims it,
 * before that commits, so that a pause or cancel committed right after the
 * claim finds it.
 */
void
iterjob_slot_set_task(int64 job_id, int32 instance, int64 batches)
{
	TimestampTz now = job_id != 0 ? GetCurrentTimestamp() : 0;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->job_id = job_id;
	iterjob_my_slot->instance = instance;
	iterjob_my_slot->batches = batches;
	iterjob_my_slot->since = now;
	iterjob_my_slot->interrupt = ITERJOB_INTERRUPT_NONE;
	LWLockRelease(iterjob_shared->state_lock);
}

void
iterjob_slot_set_batches(int64 batches)
{
	if (iterjob_my_slot == NULL)
		return;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->batches = batches;
	LWLockRelease(iterjob_shared->state_lock);
}

void
iterjob_slot_set_owner(Oid owner)
{
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->owner = owner;
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * Has a pause, cancel or resume of our job committed since we last looked
 * (commit_wakeup.c flags the slot and sets our latch)?  Clears the flag,
 * and an interrupt that came between batches: the caller looks at the
 * job's state before any batch.
 */
bool
iterjob_slot_take_recheck(void)
{
	bool		changed;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	changed = iterjob_my_slot->recheck;
	iterjob_my_slot->recheck = false;
	if (changed)
		iterjob_my_slot->interrupt = ITERJOB_INTERRUPT_NONE;
	LWLockRelease(iterjob_shared->state_lock);
	return changed;
}

/*
 * Was our batch interrupted by a pause or cancel of its job, committed
 * since our task's claim or our last look at its state?
 */
bool
iterjob_slot_interrupted(void)
{
	bool		interrupted;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	interrupted = iterjob_my_slot->interrupt == ITERJOB_INTERRUPT_STEER;
	LWLockRelease(iterjob_shared->state_lock);
	return interrupted;
}

/*
 * Was our batch cancelled because it blocked a foreground session
 * (foreground_watch.c)?  Says whose, and how long it had waited; clears it.
 */
bool
iterjob_slot_take_foreground(int32 *pid, int32 *waited_ms)
{
	bool		cancelled;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	cancelled = iterjob_my_slot->interrupt == ITERJOB_INTERRUPT_FOREGROUND;
	*pid = iterjob_my_slot->foreground_pid;
	*waited_ms = iterjob_my_slot->foreground_wait_ms;
	if (cancelled)
		iterjob_my_slot->interrupt = ITERJOB_INTERRUPT_NONE;
	LWLockRelease(iterjob_shared->state_lock);
	return cancelled;
}

/* The same, clearing it. */
bool
iterjob_slot_take_interrupt(void)
{
	bool		interrupted;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	interrupted = iterjob_my_slot->interrupt == ITERJOB_INTERRUPT_STEER;
	iterjob_my_slot->interrupt = ITERJOB_INTERRUPT_NONE;
	LWLockRelease(iterjob_shared->state_lock);
	return interrupted;
}

/*
 * The same, leaving the flag set (to cut a wait short); a request to leave
 * the task cuts waits short too.
 */
bool
iterjob_slot_recheck_pending(void)
{
	bool		changed;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	changed = iterjob_my_slot->recheck || iterjob_my_slot->yield;
	LWLockRelease(iterjob_shared->state_lock);
	return changed;
}

/*
 * Have we been asked to leave our task, for a job that waits for a worker
 * (fairness.c)?  The flag stays set until the worker has left the task.
 */
bool
iterjob_slot_yield_requested(void)
{
	bool		yield;

	if (iterjob_my_slot == NULL)
		return false;
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	yield = iterjob_my_slot->yield;
	LWLockRelease(iterjob_shared->state_lock);
	return yield;
}

/*
 * We left our task as asked: clear the request.  Returns whether it was
 * for another database (the worker then exits) rather than for another job
 * of this one (the worker claims again, fairly).
 */
bool
iterjob_slot_take_yield(void)
{
	bool		exit;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	exit = iterjob_my_slot->yield_exit;
	iterjob_my_slot->yield = false;
	iterjob_my_slot->yield_exit = false;
	LWLockRelease(iterjob_shared->state_lock);
	return exit;
}

/* Does a slot other than ours, in database dboid, hold task_id?  Lock held. */
static bool
held_by_other(Oid dboid, int64 task_id)
{
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot != iterjob_my_slot && slot->held_task == task_id &&
			slot->dboid == dboid)
			return true;
	}
	return false;
}

/*
 * Hold task_id, unless another worker holds it.  A worker holds one task
 * at a time: taking another lets go of the one it held.
 */
bool
iterjob_hold_task(int64 task_id)
{
	bool		taken = false;

	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	if (!held_by_other(MyDatabaseId, task_id))
	{
		iterjob_my_slot->held_task = task_id;
		taken = true;
	}
	LWLockRelease(iterjob_shared->lock);
	return taken;
}

void
iterjob_release_task(void)
{
	if (iterjob_my_slot == NULL || iterjob_my_slot->held_task == 0)
		return;
	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	iterjob_my_slot->held_task = 0;
	LWLockRelease(iterjob_shared->lock);
}

/* Is task_id of database dboid held by a worker (other than us)? */
bool
iterjob_task_is_held(Oid dboid, int64 task_id)
{
	bool		held;

	LWLockAcquire(iterjob_shared->lock, LW_SHARED);
	held = held_by_other(dboid, task_id);
	LWLockRelease(iterjob_shared->lock);
	return held;
}

/* The launcher frees the slot of a process that has ended. */
void
iterjob_clear_held_task(int slotno)
{
	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	iterjob_shared->workers[slotno].held_task = 0;
	LWLockRelease(iterjob_shared->lock);
}

/*
 * A batch of task_id starts, limited to timeout_ms; it ends with
 * iterjob_slot_end_batch().
 */
void
iterjob_slot_begin_batch(int64 task_id, int64 batch_no, int32 timeout_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	iterjob_my_slot->batch_task = task_id;
	iterjob_my_slot->batch_no = batch_no;
	LWLockRelease(iterjob_shared->lock);
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->batch_started = now;
	iterjob_my_slot->batch_timeout_ms = timeout_ms;
	/* a foreground session's cancel of the batch before is no news */
	if (iterjob_my_slot->interrupt == ITERJOB_INTERRUPT_FOREGROUND)
		iterjob_my_slot->interrupt = ITERJOB_INTERRUPT_NONE;
	LWLockRelease(iterjob_shared->state_lock);
}

void
iterjob_slot_end_batch(void)
{
	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	iterjob_my_slot->batch_task = 0;
	LWLockRelease(iterjob_shared->lock);
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->batch_started = 0;
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * Did a worker die in a batch of task_id of this database?  Takes the
 * record into *death.
 */
bool
iterjob_take_death(int64 task_id, IterjobDeath *death)
{
	bool		found = false;

	LWLockAcquire(iterjob_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_DEATHS; i++)
	{
		IterjobDeath *d = &iterjob_shared->deaths[i];

		if (d->dboid == MyDatabaseId && d->task_id == task_id)
		{
			*death = *d;
			memset(d, 0, sizeof(*d));
			found = true;
			break;
		}
	}
	LWLockRelease(iterjob_shared->lock);
	return found;
}

/* Leave without asking the launcher to retry this database. */
void
iterjob_worker_exit_clean(void)
{
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->clean_exit = true;
	LWLockRelease(iterjob_shared->state_lock);
	proc_exit(0);
}

/* The workers running a task now, in every database. */
int
iterjob_busy_workers(void)
{
	int			n = 0;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use && !slot->exited && slot->job_id != 0)
			n++;
	}
	LWLockRelease(iterjob_shared->state_lock);
	return n;
}
