/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  iterjob's shared memory: the databases marked as holding runnable work
 *	  for the launcher's next round, the prepared transactions that wake it
 *	  when they commit (commit_wakeup.c), the worker slots (and the lock
 *	  over the tasks they hold), the deaths of workers in the middle of a
 *	  batch (carried by the postmaster across a crash-restart), the
 *	  launcher's latch and the condition variable that wakes iterjob.wait()
 *	  when a job may have ended.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

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
	RequestNamedLWLockTranche("iterjob", 2);
}

void
iterjob_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	iterjob_shared = ShmemInitStruct("iterjob", sizeof(IterjobShared), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("iterjob");

		memset(iterjob_shared, 0, sizeof(IterjobShared));
		iterjob_shared->lock = &locks[0].lock;
		iterjob_shared->state_lock = &locks[1].lock;
		ConditionVariableInit(&iterjob_shared->job_state_cv);
		pg_atomic_init_u64(&iterjob_shared->worker_wal_bytes, 0);
		pg_atomic_init_u32(&iterjob_shared->foreground_pace, 0);
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
 * for it.  The marks wait here until the launcher's next round takes them
 * (iterjob_take_pending_databases()); with no room left for one, the
 * launcher looks at every database with iterjob installed instead.
 */
void
iterjob_mark_database_pending(Oid dboid)
{
	int			i;

	if (iterjob_shared == NULL)
		return;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (i = 0; i < iterjob_shared->npending; i++)
		if (iterjob_shared->pending[i] == dboid)
			break;
	if (i == iterjob_shared->npending)
	{
		if (i < ITERJOB_MAX_DATABASES)
			iterjob_shared->pending[iterjob_shared->npending++] = dboid;
		else
			iterjob_shared->rescan_all = true;
	}
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * For the launcher: the databases marked pending since its last round
 * (into dboids, of ITERJOB_MAX_DATABASES entries), and whether every
 * database must be looked at.  Clears both.
 */
int
iterjob_take_pending_databases(Oid *dboids, bool *rescan_all)
{
	int			n;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	n = iterjob_shared->npending;
	memcpy(dboids, iterjob_shared->pending, sizeof(Oid) * n);
	iterjob_shared->npending = 0;
	*rescan_all = iterjob_shared->rescan_all;
	iterjob_shared->rescan_all = false;
	LWLockRelease(iterjob_shared->state_lock);
	return n;
}

/*
 * A worker read the databases with iterjob installed (n = -1: too many to
 * keep); the launcher takes them at its next round.
 */
void
iterjob_report_installed(const Oid *dboids, int n)
{
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	iterjob_shared->ninstalled = n;
	if (n > 0)
		memcpy(iterjob_shared->installed, dboids, sizeof(Oid) * n);
	iterjob_shared->installed_generation++;
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * A transaction that made work runnable in dboid was prepared as gid:
 * whoever commits it wakes the launcher (commit_wakeup.c).  With no room
 * left, the launcher's periodic look finds the work instead.
 */
void
iterjob_remember_prepared(Oid dboid, const char *gid)
{
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_PREPARED; i++)
	{
		IterjobPreparedWake *p = &iterjob_shared->prepared[i];

		if (p->dboid == InvalidOid)
		{
			p->dboid = dboid;
			strlcpy(p->gid, gid, sizeof(p->gid));
			break;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
}

/*
 * The prepared transaction gid of dboid has ended (committed or rolled
 * back): was it one that made work runnable?  Forgets it.
 */
bool
iterjob_forget_prepared(Oid dboid, const char *gid)
{
	bool		found = false;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_PREPARED && !found; i++)
	{
		IterjobPreparedWake *p = &iterjob_shared->prepared[i];

		if (p->dboid == dboid && strcmp(p->gid, gid) == 0)
		{
			memset(p, 0, sizeof(*p));
			found = true;
		}
	}
	LWLockRelease(iterjob_shared->state_lock);
	return found;
}

void
iterjob_wake_launcher(void)
{
	Latch	   *latch;

	if (iterjob_shared == NULL)
		return;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	latch = iterjob_shared->launcher_latch;
	LWLockRelease(iterjob_shared->state_lock);
	if (latch != NULL)
		SetLatch(latch);
}

void
iterjob_notify_job_state(void)
{
	if (iterjob_shared != NULL)
		ConditionVariableBroadcast(&iterjob_shared->job_state_cv);
}

/*
 * A committed transaction made jobs of dboid runnable, job_id the lowest
 * (0: not known).  Called before the workers are woken for them.
 */
void
iterjob_note_activation(Oid dboid, int64 job_id)
{
	IterjobActivation *entry;

	if (iterjob_shared == NULL)
		return;
	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	entry = &iterjob_shared->activations[iterjob_shared->nactivations % ITERJOB_MAX_ACTIVATIONS];
	entry->dboid = dboid;
	entry->job_id = job_id;
	iterjob_shared->nactivations++;
	LWLockRelease(iterjob_shared->state_lock);
}
