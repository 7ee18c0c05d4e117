/*-------------------------------------------------------------------------
 *
 * instance_trail.c
 *	  Keeping the instances of a modulo job off each other's pages.
 *
 *	  Under key % N = i every instance touches every heap and index page of
 *	  the key range.  Side by side, the instances modify each page at the
 *	  same moment and queue for its buffer lock; one behind the other, the
 *	  one ahead pays each page's first-touch costs and the ones behind find
 *	  the page hot.  So, after its first batch, instance i > 0 starts a
 *	  batch only once instance i - 1 has committed past the keys that batch
 *	  will cover (estimated from the span of its own last batch).  Which
 *	  keys an instance iterates, and in what order, does not change; only
 *	  when.  An instance never waits for one that no worker runs, that backs
 *	  off or holds, or that has not advanced for iterjob.trail_max_wait: a
 *	  slow or stuck instance slows no other.  Applies to a single integer key walked
 *	  in ascending order under the modulo partition with more than one instance, while
 *	  iterjob.trail_instances is on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/int.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

static bool
trail_applies(const IterjobTask *task)
{
	const IterjobSpec *spec = &task->spec;

	return iterjob_trail_instances && iterjob_my_slot != NULL &&
		spec->partition == ITERJOB_PARTITION_MODULO &&
		spec->instances > 1 && task->trails;
}

static int64
key_as_int64(const IterjobTask *task, Datum key)
{
	switch (task->spec.key_types[0])
	{
		case INT2OID:
			return DatumGetInt16(key);
		case INT4OID:
			return DatumGetInt32(key);
		default:
			return DatumGetInt64(key);
	}
}

/* The slot of the worker on instance `instance` of our job (lock held). */
static IterjobWorkerSlot *
find_instance_slot(int32 instance)
{
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot != iterjob_my_slot && slot->in_use && !slot->exited &&
			slot->dboid == iterjob_my_slot->dboid &&
			slot->job_id == iterjob_my_slot->job_id &&
			slot->instance == instance)
			return slot;
	}
	return NULL;
}

/* Set the latch of the worker on the next instance of our job, if any. */
static void
wake_follower(void)
{
	IterjobWorkerSlot *slot;
	Latch	   *latch = NULL;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	slot = find_instance_slot(iterjob_my_slot->instance + 1);
	if (slot != NULL)
		latch = slot->latch;
	LWLockRelease(iterjob_shared->state_lock);
	if (latch != NULL)
		SetLatch(latch);
}

/* Publish where this instance is: its last committed key, if any.  */
static void
publish_position(const IterjobTask *task)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_my_slot->trail_active = true;
	iterjob_my_slot->trail_has_key = task->has_cursor;
	if (task->has_cursor)
		iterjob_my_slot->trail_key = key_as_int64(task, task->cursor[0]);
	iterjob_my_slot->trail_at = now;
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * Must the next batch wait for the instance before ours?  If so, *wait_ms
 * is how long until that instance counts as stalled.  Mutex held.
 */
static bool
must_wait(const IterjobTask *task, TimestampTz now, long *wait_ms)
{
	IterjobWorkerSlot *pred = find_instance_slot(task->instance - 1);
	TimestampTz stalled_at;
	int64		span;
	int64		target;

	if (pred == NULL || !pred->trail_active)
		return false;
	stalled_at = TimestampTzPlusMilliseconds(pred->trail_at,
											 iterjob_trail_max_wait_ms);
	if (now >= stalled_at)
		return false;
	*wait_ms = (long) ((stalled_at - now) / 1000) + 1;

	/*
	 * The first batches run side by side (held or stuck instances then hold
	 * up no one before they have done anything); after its first batch the
	 * follower waits for the instance before it to commit one.
	 */
	if (!task->has_cursor)
		return false;
	if (!pred->trail_has_key)
		return true;
	span = task->trail_span > 0 ? task->trail_span :
		(int64) task->spec.batch_size * task->spec.instances;
	if (pg_add_s64_overflow(key_as_int64(task, task->cursor[0]), span, &target))
		return false;
	return pred->trail_key < target;
}

/*
 * Before each batch: say this instance is running batches, and wait while
 * the instance before it has not committed past the keys of our batch.
 * Returns early when the job's state changes (the caller looks at it).
 */
void
iterjob_trail_before_batch(IterjobTask *task)
{
	bool		waited = false;

	if (!trail_applies(task))
		return;

	if (!iterjob_my_slot->trail_active)
		publish_position(task);

	for (;;)
	{
		long		wait_ms = 0;
		bool		wait;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (iterjob_slot_recheck_pending())
			break;
		now = GetCurrentTimestamp();
		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		wait = task->instance > 0 && must_wait(task, now, &wait_ms);
		LWLockRelease(iterjob_shared->state_lock);
		if (!wait)
			break;
		if (!waited)
		{
			iterjob_set_phase("trailing");
			waited = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, iterjob_wait_event(ITERJOB_WAIT_TRAILING));
		ResetLatch(MyLatch);
	}
}

/* After a batch committed: publish the new position, wake the follower. */
void
iterjob_trail_advanced(IterjobTask *task, bool had_cursor, Datum old_key)
{
	if (!trail_applies(task))
		return;
	if (had_cursor &&
		pg_sub_s64_overflow(key_as_int64(task, task->cursor[0]),
							key_as_int64(task, old_key), &task->trail_span))
		task->trail_span = 0;
	publish_position(task);
	wake_follower();
}

/*
 * This instance stops running batches for now (backoff, hold) or for good:
 * the next instance no longer waits for it.
 */
void
iterjob_trail_stop(void)
{
	bool		was_active;

	if (iterjob_my_slot == NULL)
		return;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	was_active = iterjob_my_slot->trail_active;
	iterjob_my_slot->trail_active = false;
	iterjob_my_slot->trail_has_key = false;
	LWLockRelease(iterjob_shared->state_lock);
	if (was_active)
		wake_follower();
}
