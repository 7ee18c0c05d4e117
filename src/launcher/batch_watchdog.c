/*-------------------------------------------------------------------------
 *
 * batch_watchdog.c
 *	  The launcher's watch over the batches in flight, so that no batch
 *	  holds a worker past its limits.
 *
 *	  A batch ends by itself when its statement timeout passes, or when a
 *	  pause or cancel of its job interrupts it (commit_wakeup.c), or when
 *	  it blocks a foreground session too long (foreground_watch.c): all
 *	  cancel it.  An action can catch that cancel (a PL/pgSQL handler for
 *	  query_canceled) and go on.  A batch still running OVERRAN_GRACE_MS
 *	  after its statement timeout, or STEER_GRACE_MS after an interrupt,
 *	  gets its worker terminated (SIGTERM, which no action can catch).  The
 *	  first is a failed attempt of the batch, like any death of a worker in
 *	  a batch (worker_slot.c); the second is not, as a pause or cancel is
 *	  no failure.  The launcher looks at least once a second while batches
 *	  run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

#define STEER_GRACE_MS		1000
#define OVERRAN_GRACE_MS	5000
/* the launcher looks this often while batches run */
#define WATCH_INTERVAL_MS	1000

typedef struct Terminated
{
	pid_t		pid;
	uint8		why;
	int64		job_id;
	int32		instance;
	int32		timeout_ms;
} Terminated;

/*
 * Terminate the workers whose batches went on past their limits.  Returns
 * how long the launcher may sleep before looking again (-1: no batch
 * runs).
 */
long
iterjob_watch_batches(TimestampTz now)
{
	Terminated ended[ITERJOB_MAX_WORKER_SLOTS];
	int			nended = 0;
	long		next = -1;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
		uint8		why = ITERJOB_INTERRUPT_NONE;
		TimestampTz due;

		if (!slot->in_use || slot->pid == 0 || slot->exited ||
			slot->batch_started == 0 || slot->terminated != ITERJOB_INTERRUPT_NONE)
			continue;
		next = next < 0 ? WATCH_INTERVAL_MS : Min(next, WATCH_INTERVAL_MS);
		if (slot->interrupt == ITERJOB_INTERRUPT_STEER ||
			slot->interrupt == ITERJOB_INTERRUPT_FOREGROUND)
		{
			due = TimestampTzPlusMilliseconds(Max(slot->interrupt_at, slot->batch_started),
											  STEER_GRACE_MS);
			if (now >= due)
				why = slot->interrupt;
			else
				next = Min(next, (long) ((due - now) / 1000) + 1);
		}
		if (why == ITERJOB_INTERRUPT_NONE && slot->batch_timeout_ms > 0)
		{
			due = TimestampTzPlusMilliseconds(slot->batch_started,
											  (int64) slot->batch_timeout_ms + OVERRAN_GRACE_MS);
			if (now >= due)
				why = ITERJOB_INTERRUPT_OVERRAN;
		}
		if (why == ITERJOB_INTERRUPT_NONE)
			continue;
		slot->terminated = why;
		ended[nended].pid = slot->pid;
		ended[nended].why = why;
		ended[nended].job_id = slot->job_id;
		ended[nended].instance = slot->instance;
		ended[nended].timeout_ms = slot->batch_timeout_ms;
		nended++;
	}
	LWLockRelease(iterjob_shared->state_lock);

	for (int i = 0; i < nended; i++)
	{
		if (ended[i].why == ITERJOB_INTERRUPT_FOREGROUND)
			ereport(LOG,
					(errmsg("iterjob: terminating worker %d: its batch of job " INT64_FORMAT " instance %d goes on blocking a foreground session",
							(int) ended[i].pid, ended[i].job_id, ended[i].instance),
					 errdetail("The batch did not stop when it was cancelled %d ms ago.",
							   STEER_GRACE_MS)));
		else if (ended[i].why == ITERJOB_INTERRUPT_STEER)
			ereport(LOG,
					(errmsg("iterjob: terminating worker %d: its batch of job " INT64_FORMAT " instance %d goes on after the job was paused or cancelled",
							(int) ended[i].pid, ended[i].job_id, ended[i].instance),
					 errdetail("The batch did not stop when it was cancelled %d ms ago.",
							   STEER_GRACE_MS)));
		else
			ereport(LOG,
					(errmsg("iterjob: terminating worker %d: its batch of job " INT64_FORMAT " instance %d goes on past its statement timeout of %d ms",
							(int) ended[i].pid, ended[i].job_id, ended[i].instance,
							ended[i].timeout_ms),
					 errdetail("The batch did not stop when it was cancelled %d ms ago.",
							   OVERRAN_GRACE_MS)));
		(void) kill(ended[i].pid, SIGTERM);
	}
	return next;
}
