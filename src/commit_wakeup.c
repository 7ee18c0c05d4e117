/*-------------------------------------------------------------------------
 *
 * commit_wakeup.c
 *	  Wakes the launcher when a transaction that made work runnable
 *	  (enqueued, resumed or retried a job) commits, so the first batch
 *	  starts promptly; nothing polls.  Wakes iterjob.wait() callers when a
 *	  transaction that ended a job commits.  A rolled-back transaction wakes
 *	  nobody.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "iterjob.h"

static bool wake_pending = false;
static bool notify_pending = false;

static void
commit_wakeup_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
			{
				wake_pending = false;
				iterjob_mark_database_pending(MyDatabaseId);
				iterjob_wake_launcher();
			}
			if (notify_pending)
			{
				notify_pending = false;
				iterjob_notify_job_state();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			notify_pending = false;
			break;
		default:
			break;
	}
}

void
iterjob_register_commit_wakeup(void)
{
	RegisterXactCallback(commit_wakeup_callback, NULL);
}

void
iterjob_wake_at_commit(void)
{
	wake_pending = true;
}

void
iterjob_notify_waiters_at_commit(void)
{
	notify_pending = true;
}

PG_FUNCTION_INFO_V1(iterjob_wake_workers);

/*
 * SQL: have the launcher look at this database when the transaction
 * commits (upgrade scripts call it, so jobs that waited for ALTER EXTENSION
 * iterjob UPDATE start at once).
 */
Datum
iterjob_wake_workers(PG_FUNCTION_ARGS)
{
	iterjob_wake_at_commit();
	PG_RETURN_VOID();
}
