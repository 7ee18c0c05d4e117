/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  iterjob's shared memory: which databases may hold runnable work, the
 *	  worker slots (and the lock over the tasks they hold), the deaths of
 *	  workers in the middle of a batch (carried by the postmaster across a
 *	  crash-restart), the launcher's latch and the condition variable that
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

/*
 * In the postmaster: the batches in flight when a crash made it reset
 * shared memory, and the deaths not yet reclaimed, carried into the new
 * shared memory as deaths.
 */
static IterjobDeath carried[ITERJOB_MAX_DEATHS];
static int	ncarried = 0;

static void
carry(const IterjobDeath *death)
{
	if (ncarried < ITERJOB_MAX_DEATHS && OidIsValid(death->dboid) && death->task_id != 0)
		carried[ncarried++] = *death;
}

/*
 * on_shmem_exit in the postmaster, before the segment goes: read, without
 * locks (a crashed process may hold them), which batches were running.
 */
static void
carry_batches_in_flight(int code, Datum arg)
{
	if (iterjob_shared == NULL)
		return;
	ncarried = 0;
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobDeath d = {iterjob_shared->workers[i].dboid,
			iterjob_shared->workers[i].batch_task,
		iterjob_shared->workers[i].batch_no, true, -1};

		carry(&d);
	}
	for (int i = 0; i < ITERJOB_MAX_DEATHS; i++)
		carry(&iterjob_shared->deaths[i]);
	iterjob_shared = NULL;
}

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
		memcpy(iterjob_shared->deaths, carried, sizeof(IterjobDeath) * ncarried);
		ncarried = 0;
	}
	LWLockRelease(AddinShmemInitLock);
	if (!IsUnderPostmaster)
		on_shmem_exit(carry_batches_in_flight, (Datum) 0);
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
