/*-------------------------------------------------------------------------
 *
 * fairness.c
 *	  Sharing the workers between jobs and owners, within a database as
 *	  between databases.
 *
 *	  A worker claims from the job that has the fewest workers among those
 *	  of the owner that has the fewest workers in its database (the one
 *	  whose turn is longest ago, then the oldest, first); a worker bound to an owner (worker.c) whose
 *	  best next task is another owner's leaves, so that a fresh worker takes
 *	  it.  While every worker of the cluster is busy, a worker at a batch
 *	  boundary looks, every quarter of a time slice (within 0.1 to 1 s; one
 *	  worker per database), for a job of its database that has runnable
 *	  tasks and no worker.  For one,
 *	  it asks the worker of the owner with the most workers there (the
 *	  starving job's owner first when they tie), of that owner's job with
 *	  the most workers, that has kept its task for at least
 *	  iterjob.time_slice, to leave it at its next batch boundary.  The task
 *	  stays running, and the next worker resumes it from its checkpoint.
 *	  The launcher does the same for a database with at least two workers
 *	  fewer than another (launcher.c); that worker exits, as it serves one
 *	  database.
 *
 *	  What a worker holds is in shared memory (the slots' job_id, owner and
 *	  since), and so are the jobs' latest turns; which jobs have runnable
 *	  tasks is in the database: the workers read it (the active jobs, then
 *	  the open tasks of those a choice falls on), the launcher (connected to
 *	  no database) cannot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "task.h"

/*
 * A worker looks for jobs without a worker every quarter of a time slice,
 * but at most every MIN_CHECK_MS and at least every MAX_CHECK_MS.
 */
#define MIN_CHECK_MS	100
#define MAX_CHECK_MS	1000

/*
 * The jobs that may have runnable tasks: queued (and waiting for no other
 * job) or running.  A job table holds few rows beside the task table.
 */
static const char *const active_jobs_sql =
"SELECT j.id, j.owner FROM iterjob.job j"
" WHERE j.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
"   AND NOT EXISTS (SELECT FROM iterjob.job p WHERE p.id OPERATOR(pg_catalog.=) ANY (j.after)"
"                      AND p.state OPERATOR(pg_catalog.<>) 'succeeded')";

/* A job's open tasks, in instance order (through its unique index). */
static const char *const job_tasks_sql =
"SELECT t.id, t.state OPERATOR(pg_catalog.=) 'queued' FROM iterjob.task t"
" WHERE t.job_id OPERATOR(pg_catalog.=) $1"
"   AND t.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
" ORDER BY t.instance";

/* their kept plans (kept_plans.c) */
static SPIPlanPtr active_jobs_plan = NULL;
static SPIPlanPtr job_tasks_plan = NULL;

/*
 * How many workers of this database are on tasks of job's job and owner,
 * and when a worker last left the job for another (state_lock held).
 */
static void
count_workers(IterjobActiveJob *job)
{
	job->owner_workers = 0;
	job->job_workers = 0;
	job->turn_at = 0;
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (!slot->in_use || slot->dboid != MyDatabaseId || slot->job_id == 0)
			continue;
		if (slot->owner == job->owner)
			job->owner_workers++;
		if (slot->job_id == job->job_id)
			job->job_workers++;
	}
	for (int i = 0; i < ITERJOB_MAX_TURNS; i++)
	{
		IterjobTurn *turn = &iterjob_shared->turns[i];

		if (turn->dboid == MyDatabaseId && turn->job_id == job->job_id)
			job->turn_at = turn->at;
	}
}

/*
 * The jobs of this database that may have runnable tasks, into *jobs
 * (allocated in the current memory context), with the workers on each and
 * on its owner (not counting this worker between two tasks).  SPI
 * connected, in an internal section.  Returns how many.
 */
int
iterjob_active_jobs(IterjobActiveJob **jobs)
{
	IterjobActiveJob *result;
	uint64		n;

	if (SPI_execute_plan(iterjob_kept_plan(&active_jobs_plan, active_jobs_sql, 0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for runnable iterjob jobs");
	n = SPI_processed;
	result = palloc0(sizeof(IterjobActiveJob) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		result[i].job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull));
		result[i].owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));
	}
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (uint64 i = 0; i < n; i++)
		count_workers(&result[i]);
	LWLockRelease(iterjob_shared->state_lock);
	*jobs = result;
	return (int) n;
}

/*
 * The runnable tasks of job_id: its first queued one, and those marked
 * running that no worker holds (its worker died, or left it for another
 * job), into *tasks.  SPI connected, in an internal section.  Returns
 * whether it has any.
 */
bool
iterjob_job_tasks(int64 job_id, IterjobJobTasks *tasks)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);

	memset(tasks, 0, sizeof(*tasks));
	if (SPI_execute_plan(iterjob_kept_plan(&job_tasks_plan, job_tasks_sql, 1, &type),
						 &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the tasks of iterjob job " INT64_FORMAT, job_id);
	tasks->orphans = palloc(sizeof(int64) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		task_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
		{
			if (tasks->queued == 0)
				tasks->queued = task_id;
		}
		else if (!iterjob_task_is_held(MyDatabaseId, task_id))
			tasks->orphans[tasks->norphans++] = task_id;
	}
	return tasks->queued != 0 || tasks->norphans > 0;
}

/* A worker left job_id for another job: the job has had its turn. */
void
iterjob_note_turn(int64 job_id)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (i = 0; i < ITERJOB_MAX_TURNS; i++)
		if (iterjob_shared->turns[i].dboid == MyDatabaseId &&
			iterjob_shared->turns[i].job_id == job_id)
			break;
	if (i == ITERJOB_MAX_TURNS)
	{
		i = iterjob_shared->next_turn;
		iterjob_shared->next_turn = (i + 1) % ITERJOB_MAX_TURNS;
	}
	iterjob_shared->turns[i].dboid = MyDatabaseId;
	iterjob_shared->turns[i].job_id = job_id;
	iterjob_shared->turns[i].at = now;
	LWLockRelease(iterjob_shared->state_lock);
}

static Oid	ranking_owner = InvalidOid;

static int
compare_jobs(const void *a, const void *b)
{
	const IterjobActiveJob *ja = (const IterjobActiveJob *) a;
	const IterjobActiveJob *jb = (const IterjobActiveJob *) b;

	if (ja->owner_workers != jb->owner_workers)
		return ja->owner_workers < jb->owner_workers ? -1 : 1;
	/* a bound worker keeps to its owner where that costs no one */
	if ((ja->owner == ranking_owner) != (jb->owner == ranking_owner))
		return ja->owner == ranking_owner ? -1 : 1;
	if (ja->job_workers != jb->job_workers)
		return ja->job_workers < jb->job_workers ? -1 : 1;
	if (ja->turn_at != jb->turn_at)
		return ja->turn_at < jb->turn_at ? -1 : 1;
	return ja->job_id < jb->job_id ? -1 : (ja->job_id > jb->job_id ? 1 : 0);
}

/*
 * Order the jobs as a worker bound to owner (InvalidOid: not bound yet)
 * should claim from them: the owner with the fewest workers first (the
 * worker's own on a tie), then that owner's job with the fewest workers,
 * then the one whose turn is longest ago (none yet first), then the oldest.
 */
void
iterjob_rank_jobs(IterjobActiveJob *jobs, int n, Oid owner)
{
	ranking_owner = owner;
	qsort(jobs, n, sizeof(IterjobActiveJob), compare_jobs);
	ranking_owner = InvalidOid;
}

/* Are all iterjob.max_workers busy? */
static bool
all_workers_busy(void)
{
	int			n = 0;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
		if (iterjob_shared->workers[i].in_use)
			n++;
	LWLockRelease(iterjob_shared->state_lock);
	return n >= Min(iterjob_max_workers, ITERJOB_MAX_WORKER_SLOTS);
}

/*
 * Should this worker look for a job of its database without a worker now:
 * no worker here has been asked to leave its task already, one has kept
 * its task for a time slice, and no other has looked within interval_ms?
 * Then it is this worker's turn to look (one look per database and
 * interval, whatever the number of workers).
 */
static bool
my_turn_to_look(TimestampTz now, long interval_ms)
{
	bool		possible = false;

	LWLockAcquire(iterjob_shared->state_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (!slot->in_use || slot->dboid != MyDatabaseId || slot->job_id == 0)
			continue;
		if (slot->yield ||
			!TimestampDifferenceExceeds(slot->fairness_at, now, interval_ms))
		{
			possible = false;
			break;
		}
		if (TimestampDifferenceExceeds(slot->since, now, iterjob_time_slice_ms))
			possible = true;
	}
	if (possible)
		iterjob_my_slot->fairness_at = now;
	LWLockRelease(iterjob_shared->state_lock);
	return possible;
}

/*
 * At a batch boundary: while every worker is busy, is there a job in this
 * database with runnable tasks and no worker?  Then ask a worker here to
 * leave its task for it (maybe this one).  One worker of the database
 * reads the job tables, at most once per check interval, and only when
 * some worker here has used its time slice.
 */
void
iterjob_fairness_check(void)
{
	static TimestampTz next_check = 0;
	TimestampTz now = GetCurrentTimestamp();
	IterjobActiveJob *jobs;
	IterjobSavedUser saved;
	int			nest;
	int			n;
	int			neediest = -1;
	Oid			owner = InvalidOid;
	long		interval_ms = Max(MIN_CHECK_MS, Min(MAX_CHECK_MS, iterjob_time_slice_ms / 4));

	if (now < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(now, interval_ms);
	if (!all_workers_busy() || !my_turn_to_look(now, interval_ms))
		return;

	iterjob_worker_begin(true);
	nest = iterjob_begin_internal(&saved);
	n = iterjob_active_jobs(&jobs);
	/* the neediest: in the order a claim takes jobs, the first without a worker */
	iterjob_rank_jobs(jobs, n, InvalidOid);
	for (int i = 0; i < n && neediest < 0; i++)
	{
		IterjobJobTasks tasks;

		if (jobs[i].job_workers == 0 && iterjob_job_tasks(jobs[i].job_id, &tasks))
		{
			neediest = i;
			owner = jobs[i].owner;
		}
	}
	iterjob_end_internal(nest, &saved);
	iterjob_worker_commit(true);

	if (neediest >= 0)
		(void) iterjob_request_yield(MyDatabaseId, owner, false, now);
}

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
