/*-------------------------------------------------------------------------
 *
 * worker_yield.c
 *	  Asking a worker to leave its task at its next batch boundary, for a
 *	  job without a worker: a worker's fairness check (fairness.c) asks
 *	  for one of its database, the launcher for another database's.  Only
 *	  shared memory is read and written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

/*
 * Ask a worker of database dboid to leave its task at its next batch
 * boundary, for a job of for_owner without a worker (InvalidOid: for
 * another database, and the worker then exits).  The one asked: of the
 * owner with the most workers there (for_owner first on a tie), of that
 * owner's job with the most workers, the one on its task longest, among
 * those on their task for at least iterjob.time_slice.  For for_owner,
 * only a worker of for_owner or of an owner with more workers than
 * for_owner.  Returns 0 when it asked one, the milliseconds until one may
 * be asked, or -1 when none may (or one was asked already).
 */
long
iterjob_request_yield(Oid dboid, Oid for_owner, bool exit, TimestampTz now)
{
	int			owner_workers[ITERJOB_MAX_WORKER_SLOTS];
	int			job_workers[ITERJOB_MAX_WORKER_SLOTS];
	int			for_owner_workers = 0;
	int			victim = -1;
	TimestampTz soonest = 0;
	Latch	   *latch = NULL;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		owner_workers[i] = job_workers[i] = 0;
		if (!slot->in_use || slot->dboid != dboid || slot->job_id == 0)
			continue;
		if (slot->yield)
		{
			/* one is leaving already */
			LWLockRelease(iterjob_shared->state_lock);
			return -1;
		}
		for (int k = 0; k < ITERJOB_MAX_WORKER_SLOTS; k++)
		{
			IterjobWorkerSlot *other = &iterjob_shared->workers[k];

			if (!other->in_use || other->dboid != dboid || other->job_id == 0)
				continue;
			if (other->owner == slot->owner)
				owner_workers[i]++;
			if (other->job_id == slot->job_id)
				job_workers[i]++;
		}
		if (slot->owner == for_owner)
			for_owner_workers = owner_workers[i];
	}

	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];
		IterjobWorkerSlot *best;
		TimestampTz due;

		if (!slot->in_use || slot->dboid != dboid || slot->job_id == 0)
			continue;
		if (OidIsValid(for_owner) && slot->owner != for_owner &&
			owner_workers[i] <= for_owner_workers)
			continue;
		due = TimestampTzPlusMilliseconds(slot->since, iterjob_time_slice_ms);
		if (due > now)
		{
			if (soonest == 0 || due < soonest)
				soonest = due;
			continue;
		}
		if (victim < 0)
		{
			victim = i;
			continue;
		}
		best = &iterjob_shared->workers[victim];
		if (owner_workers[i] != owner_workers[victim])
		{
			if (owner_workers[i] > owner_workers[victim])
				victim = i;
		}
		else if ((slot->owner == for_owner) != (best->owner == for_owner))
		{
			if (slot->owner == for_owner)
				victim = i;
		}
		else if (job_workers[i] != job_workers[victim])
		{
			if (job_workers[i] > job_workers[victim])
				victim = i;
		}
		else if (slot->since < best->since)
			victim = i;
	}
	if (victim >= 0)
	{
		iterjob_shared->workers[victim].yield = true;
		iterjob_shared->workers[victim].yield_exit = exit;
		latch = iterjob_shared->workers[victim].latch;
	}
	LWLockRelease(iterjob_shared->state_lock);

	if (victim >= 0)
	{
		if (latch != NULL)
			SetLatch(latch);
		return 0;
	}
	if (soonest == 0)
		return -1;
	return (long) ((soonest - now) / 1000) + 1;
}
