/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  iterjob's shared memory: which databases may hold runnable work, the
 *	  worker slots (and the lock over the tasks they hold), the launcher's latch and the condition variable that
 *	  wakes iterjob.wait() when a job may have ended.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "iterjob.h"

IterjobShared *iterjob_shared = NULL;

void
iterjob_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(IterjobShared)));
	RequestNamedLWLockTranche("iterjob", 1);
}

void
iterjob_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	iterjob_shared = ShmemInitStruct("iterjob", sizeof(IterjobShared), &found);
	if (!found)
	{
		memset(iterjob_shared, 0, sizeof(IterjobShared));
		iterjob_shared->lock = &(GetNamedLWLockTranche("iterjob"))->lock;
		SpinLockInit(&iterjob_shared->mutex);
		ConditionVariableInit(&iterjob_shared->job_state_cv);
		iterjob_shared->rescan_all = true;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Note that dboid may hold runnable tasks; the launcher starts a worker
 * for it.  With no room left to track it by itself, every database is
 * looked at.
 */
void
iterjob_mark_database_pending(Oid dboid)
{
	IterjobDatabase *free_entry = NULL;
	int			i;

	if (iterjob_shared == NULL)
		return;

	SpinLockAcquire(&iterjob_shared->mutex);
	for (i = 0; i < ITERJOB_MAX_DATABASES; i++)
	{
		IterjobDatabase *db = &iterjob_shared->databases[i];

		if (db->dboid == dboid)
		{
			db->pending = true;
			free_entry = NULL;
			break;
		}
		if (db->dboid == InvalidOid && free_entry == NULL)
			free_entry = db;
	}
	if (i == ITERJOB_MAX_DATABASES)
	{
		if (free_entry != NULL)
		{
			free_entry->dboid = dboid;
			free_entry->pending = true;
			free_entry->not_before = 0;
		}
		else
			iterjob_shared->rescan_all = true;
	}
	SpinLockRelease(&iterjob_shared->mutex);
}

void
iterjob_wake_launcher(void)
{
	Latch	   *latch;

	if (iterjob_shared == NULL)
		return;
	SpinLockAcquire(&iterjob_shared->mutex);
	latch = iterjob_shared->launcher_latch;
	SpinLockRelease(&iterjob_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

void
iterjob_notify_job_state(void)
{
	if (iterjob_shared != NULL)
		ConditionVariableBroadcast(&iterjob_shared->job_state_cv);
}
