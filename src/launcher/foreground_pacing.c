/*-------------------------------------------------------------------------
 *
 * foreground_pacing.c
 *	  Slowing the workers down while foreground sessions wait for WAL.
 *
 *	  An application's commit flushes the WAL written before its own
 *	  record, a backfill's megabytes included, and waits for synchronous
 *	  standbys to get that far.  The launcher samples the wait event of
 *	  every client backend at each round (every few milliseconds while
 *	  workers run): a session seen waiting for WAL (WALWrite, WALInsert,
 *	  WALSync/WALWrite I/O) or for a synchronous standby (SyncRep) for
 *	  longer than iterjob.max_foreground_commit_wait, while iterjob's
 *	  batches wrote most of the cluster's recent WAL, raises the pace: the
 *	  time each worker pauses after a batch, as a multiple of that batch's
 *	  time (a quarter, then doubling up to 16 at most once per
 *	  PACE_RAISE_MS; at 16 an instance runs one seventeenth of the time).
 *	  A wait that goes on raises it again.  Each second without such a
 *	  wait halves it, down to none.  Workers
 *	  read the pace after every batch (task_runner.c), and the views say
 *	  when and why a task slowed down.
 *
 *	  The same session seen in consecutive samples is taken for one wait:
 *	  PGPROC keeps no start for these waits.  Waits shorter than a round
 *	  go unseen; the setting is about the long ones, the application's
 *	  tail latency.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "iterjob.h"
#include "launcher/launcher_internal.h"

/* the pace, in quarters of the batch's time */
#define PACE_FIRST			1
#define PACE_MAX			64
/* raised at most this often, halved after this long without a wait */
#define PACE_RAISE_MS		250
#define PACE_RELAX_MS		1000
/* the share of WAL written by the workers is looked at over this window */
#define WAL_WINDOW_MS		1000
/* the rounds' interval, at least */
#define MIN_ROUND_MS		5

/* each client backend's wait for WAL, as the last rounds saw it */
typedef struct SeenWait
{
	int			pid;
	uint32		event;
	TimestampTz since;			/* first seen; 0: not waiting */
} SeenWait;

static SeenWait *seen = NULL;
static uint32 nseen = 0;
static TimestampTz raised_at = 0;
static TimestampTz relaxed_at = 0;

/* WAL insert positions and the workers' WAL at the last two window starts */
static TimestampTz window_at = 0;
static XLogRecPtr window_lsn[2];
static uint64 window_worker_bytes[2];

/* Called by a worker after a committed batch that wrote wal_bytes of WAL. */
void
iterjob_count_batch_wal(uint64 wal_bytes)
{
	if (wal_bytes > 0)
		pg_atomic_fetch_add_u64(&iterjob_shared->worker_wal_bytes, wal_bytes);
}

/* The pause after a batch, in quarters of its time (0: none). */
uint32
iterjob_foreground_pace(void)
{
	return pg_atomic_read_u32(&iterjob_shared->foreground_pace);
}

/* Why the pace was raised last, for the views and the log. */
char *
iterjob_foreground_pace_reason(void)
{
	int32		pid;
	int32		waited_ms;
	uint32		event;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	pid = iterjob_shared->pace_pid;
	waited_ms = iterjob_shared->pace_wait_ms;
	event = iterjob_shared->pace_wait_event;
	LWLockRelease(iterjob_shared->state_lock);
	return psprintf("session %d waited %d ms or more for %s (iterjob.max_foreground_commit_wait is %d ms)",
					pid, waited_ms,
					event == WAIT_EVENT_SYNC_REP ? "a synchronous standby" : "WAL",
					iterjob_max_foreground_commit_wait);
}

static bool
is_commit_wait(uint32 event)
{
	return event == (PG_WAIT_LWLOCK | WALWriteLock->tranche) ||
		event == (PG_WAIT_LWLOCK | LWTRANCHE_WAL_INSERT) ||
		event == WAIT_EVENT_WAL_SYNC || event == WAIT_EVENT_WAL_WRITE ||
		event == WAIT_EVENT_SYNC_REP;
}

static void
set_pace(uint32 pace)
{
	if (pg_atomic_read_u32(&iterjob_shared->foreground_pace) != pace)
		pg_atomic_write_u32(&iterjob_shared->foreground_pace, pace);
}

/*
 * Did the workers write most of the WAL of the last one or two windows?
 * Rolls the window on.
 */
static bool
workers_wrote_most(TimestampTz now)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();
	uint64		worker_bytes = pg_atomic_read_u64(&iterjob_shared->worker_wal_bytes);
	uint64		all;

	if (window_at == 0 || TimestampDifferenceExceeds(window_at, now, WAL_WINDOW_MS))
	{
		if (window_at == 0)
		{
			window_lsn[0] = lsn;
			window_worker_bytes[0] = worker_bytes;
		}
		else
		{
			window_lsn[0] = window_lsn[1];
			window_worker_bytes[0] = window_worker_bytes[1];
		}
		window_lsn[1] = lsn;
		window_worker_bytes[1] = worker_bytes;
		window_at = now;
	}
	all = lsn > window_lsn[0] ? lsn - window_lsn[0] : 0;
	return all > 0 && 2 * (worker_bytes - window_worker_bytes[0]) >= all;
}

/*
 * One round: sample the client backends' waits, raise or relax the pace.
 * Returns how long the launcher may sleep before the next round (-1: no
 * worker runs a task, or pacing is off).
 */
long
iterjob_pace_for_foreground(TimestampTz now)
{
	uint32		nprocs = ProcGlobal->allProcCount;
	int32		longest_ms = -1;
	int			longest_pid = 0;
	uint32		longest_event = 0;
	uint32		pace = iterjob_foreground_pace();
	bool		attributable;
	long		interval;

	if (iterjob_max_foreground_commit_wait < 0 || iterjob_busy_workers() == 0 ||
		RecoveryInProgress())
	{
		set_pace(0);
		window_at = 0;
		if (seen != NULL)
			memset(seen, 0, sizeof(SeenWait) * nseen);
		return -1;
	}
	interval = Max(MIN_ROUND_MS, iterjob_max_foreground_commit_wait / 2);
	if (seen == NULL)
	{
		seen = MemoryContextAllocZero(TopMemoryContext, sizeof(SeenWait) * nprocs);
		nseen = nprocs;
	}

	/* racy reads of each backend's wait event: a sample, no more */
	for (uint32 i = 0; i < Min(nprocs, nseen); i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		int			pid = proc->pid;
		uint32		event = *(volatile uint32 *) &proc->wait_event_info;
		SeenWait   *w = &seen[i];
		long		waited_ms;

		if (pid == 0 || i >= (uint32) MaxBackends || !ITERJOB_PROC_IS_CLIENT(proc) ||
			(proc->statusFlags & PROC_IS_AUTOVACUUM) != 0 || !is_commit_wait(event))
		{
			w->since = 0;
			continue;
		}
		if (w->since == 0 || w->pid != pid || w->event != event)
		{
			w->pid = pid;
			w->event = event;
			w->since = now;
			continue;
		}
		waited_ms = (long) ((now - w->since) / 1000);
		if (waited_ms < iterjob_max_foreground_commit_wait)
			continue;
		if (waited_ms > longest_ms)
		{
			longest_ms = (int32) Min(waited_ms, PG_INT32_MAX);
			longest_pid = pid;
			longest_event = event;
		}
	}

	attributable = workers_wrote_most(now);
	if (longest_ms >= 0 && attributable &&
		(raised_at == 0 || TimestampDifferenceExceeds(raised_at, now, PACE_RAISE_MS)))
	{
		pace = pace == 0 ? PACE_FIRST : Min(PACE_MAX, pace * 2);
		raised_at = relaxed_at = now;
		LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
		iterjob_shared->pace_pid = longest_pid;
		iterjob_shared->pace_wait_ms = longest_ms;
		iterjob_shared->pace_wait_event = longest_event;
		LWLockRelease(iterjob_shared->state_lock);
		set_pace(pace);
	}
	else if (pace > 0 && TimestampDifferenceExceeds(relaxed_at, now, PACE_RELAX_MS))
	{
		relaxed_at = now;
		set_pace(pace / 2);
	}
	return interval;
}
