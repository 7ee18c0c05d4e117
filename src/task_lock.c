/*-------------------------------------------------------------------------
 *
 * task_lock.c
 *	  The session-level lock that proves a task's worker is alive.
 *
 *	  A worker holds this lock for as long as it works on a task, across
 *	  all the task's batch transactions.  The lock dies with the process,
 *	  so a task marked running whose lock can be taken has no live worker
 *	  and may be reclaimed at once; a reused pid cannot fool it.  The tag
 *	  is an advisory lock tag whose fourth field no SQL-level advisory lock
 *	  function uses, so user locks cannot collide with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lock.h"

#include "iterjob.h"

static void
set_task_locktag(LOCKTAG *tag, int64 task_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) ((uint64) task_id >> 32),
						 (uint32) task_id,
						 ITERJOB_TASK_LOCK_FIELD4);
}

bool
iterjob_try_lock_task(int64 task_id)
{
	LOCKTAG		tag;

	set_task_locktag(&tag, task_id);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
iterjob_unlock_task(int64 task_id)
{
	LOCKTAG		tag;

	set_task_locktag(&tag, task_id);
	LockRelease(&tag, ExclusiveLock, true);
}
