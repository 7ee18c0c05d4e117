/*-------------------------------------------------------------------------
 *
 * fairness.c
 *	  Sharing the workers between jobs and owners, within a database as
 *	  between databases.
 *
 *	  A worker claims from the job that has the fewest workers among those
 *	  of the owner that has the fewest workers in its database (the one
 *	  waiting longest first); a worker bound to an owner (worker.c) whose
 *	  best next task is another owner's leaves, so that a fresh worker takes
 *	  it.  While every worker of the cluster is busy, a worker at a batch
 *	  boundary looks, every quarter of a time slice (within 0.1 to 1 s), for
 *	  a job of its database that has runnable tasks and no worker.  For one,
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
 *	  since); which jobs have runnable tasks is in the database: the workers
 *	  read it, the launcher (connected to no database) cannot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
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
 * The jobs with runnable tasks: queued ones (whose jobs wait for no other
 * job), and ones marked running, which are runnable when no worker holds
 * them (looked at in shared memory).  A task's wait counts from its last
 * checkpoint or state change, or from its job's enqueue.
 */
static const char *const runnable_jobs_sql =
"SELECT t.job_id, j.owner,"
"       pg_catalog.count(*) FILTER (WHERE t.state OPERATOR(pg_catalog.=) 'queued'),"
"       pg_catalog.min(COALESCE(t.updated_at, j.created_at))"
"         FILTER (WHERE t.state OPERATOR(pg_catalog.=) 'queued'),"
"       pg_catalog.array_agg(t.id ORDER BY COALESCE(t.updated_at, j.created_at), t.id)"
"         FILTER (WHERE t.state OPERATOR(pg_catalog.=) 'running'),"
"       pg_catalog.array_agg(COALESCE(t.updated_at, j.created_at)"
"                            ORDER BY COALESCE(t.updated_at, j.created_at), t.id)"
"         FILTER (WHERE t.state OPERATOR(pg_catalog.=) 'running')"
"  FROM iterjob.task t JOIN iterjob.job j ON j.id OPERATOR(pg_catalog.=) t.job_id"
" WHERE t.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
"   AND (t.state OPERATOR(pg_catalog.=) 'running' OR NOT EXISTS ("
"        SELECT FROM iterjob.job p WHERE p.id OPERATOR(pg_catalog.=) ANY (j.after)"
"           AND p.state OPERATOR(pg_catalog.<>) 'succeeded'))"
" GROUP BY t.job_id, j.owner";

/* How many workers of this database are on tasks of job_id, of owner. */
static void
count_workers(IterjobRunnableJob *job)
{
	job->owner_workers = 0;
	job->job_workers = 0;
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
}

/*
 * The jobs of this database with runnable tasks, into *jobs (allocated in
 * the current memory context), with the workers on each and on its owner
 * (not counting this worker between two tasks).  SPI connected, in an
 * internal section.  Returns how many.
 */
int
iterjob_runnable_jobs(IterjobRunnableJob **jobs)
{
	int			n = 0;
	IterjobRunnableJob *result;

	if (SPI_execute(runnable_jobs_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for runnable iterjob tasks");
	result = palloc0(sizeof(IterjobRunnableJob) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		IterjobRunnableJob *job = &result[n];
		bool		isnull;
		Datum		d;

		memset(job, 0, sizeof(*job));
		job->job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		job->nqueued = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		job->waiting_since = isnull ? DT_NOEND : DatumGetTimestampTz(d);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
		{
			Datum	   *ids;
			Datum	   *since;
			int			nrunning;
			int			nsince;

			deconstruct_array(DatumGetArrayTypeP(d), INT8OID, sizeof(int64), true,
							  TYPALIGN_DOUBLE, &ids, NULL, &nrunning);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 6, &isnull)),
							  TIMESTAMPTZOID, sizeof(TimestampTz), true,
							  TYPALIGN_DOUBLE, &since, NULL, &nsince);
			job->orphans = palloc(sizeof(int64) * (nrunning + 1));
			for (int k = 0; k < nrunning && k < nsince; k++)
			{
				int64		task_id = DatumGetInt64(ids[k]);

				/* a task marked running that no worker holds is runnable */
				if (iterjob_task_is_held(MyDatabaseId, task_id))
					continue;
				if (job->norphans == 0)
					job->waiting_since = Min(job->waiting_since,
											 DatumGetTimestampTz(since[k]));
				job->orphans[job->norphans++] = task_id;
			}
		}
		if (job->nqueued > 0 || job->norphans > 0)
			n++;
	}
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < n; i++)
		count_workers(&result[i]);
	LWLockRelease(iterjob_shared->state_lock);
	*jobs = result;
	return n;
}

static Oid	ranking_owner = InvalidOid;

static int
compare_jobs(const void *a, const void *b)
{
	const IterjobRunnableJob *ja = (const IterjobRunnableJob *) a;
	const IterjobRunnableJob *jb = (const IterjobRunnableJob *) b;

	if (ja->owner_workers != jb->owner_workers)
		return ja->owner_workers < jb->owner_workers ? -1 : 1;
	/* a bound worker keeps to its owner where that costs no one */
	if ((ja->owner == ranking_owner) != (jb->owner == ranking_owner))
		return ja->owner == ranking_owner ? -1 : 1;
	if (ja->job_workers != jb->job_workers)
		return ja->job_workers < jb->job_workers ? -1 : 1;
	if (ja->waiting_since != jb->waiting_since)
		return ja->waiting_since < jb->waiting_since ? -1 : 1;
	return ja->job_id < jb->job_id ? -1 : (ja->job_id > jb->job_id ? 1 : 0);
}

/*
 * Order the runnable jobs as a worker bound to owner (InvalidOid: not
 * bound yet) should claim from them: the owner with the fewest workers
 * first (the worker's own on a tie), then that owner's job with the fewest
 * workers, then the one waiting longest.
 */
void
iterjob_rank_jobs(IterjobRunnableJob *jobs, int n, Oid owner)
{
	ranking_owner = owner;
	qsort(jobs, n, sizeof(IterjobRunnableJob), compare_jobs);
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
 * Could a worker of dboid be asked to leave its task now: none has been
 * asked already, and one has kept its task for a time slice?
 */
static bool
yield_possible(Oid dboid, TimestampTz now)
{
	bool		possible = false;

	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (!slot->in_use || slot->dboid != dboid || slot->job_id == 0)
			continue;
		if (slot->yield)
		{
			possible = false;
			break;
		}
		if (TimestampDifferenceExceeds(slot->since, now, iterjob_time_slice_ms))
			possible = true;
	}
	LWLockRelease(iterjob_shared->state_lock);
	return possible;
}

/*
 * At a batch boundary: while every worker is busy, is there a job in this
 * database with runnable tasks and no worker?  Then ask a worker here to
 * leave its task for it (maybe this one).  Reads the job tables at most
 * once per check interval, and only when some worker here has used its
 * time slice.
 */
void
iterjob_fairness_check(void)
{
	static TimestampTz next_check = 0;
	TimestampTz now = GetCurrentTimestamp();
	IterjobRunnableJob *jobs;
	IterjobSavedUser saved;
	int			nest;
	int			n;
	int			neediest = -1;
	Oid			owner = InvalidOid;

	if (now < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(now, Max(MIN_CHECK_MS,
													  Min(MAX_CHECK_MS, iterjob_time_slice_ms / 4)));
	if (!all_workers_busy() || !yield_possible(MyDatabaseId, now))
		return;

	iterjob_worker_begin(true);
	nest = iterjob_begin_internal(&saved);
	n = iterjob_runnable_jobs(&jobs);
	iterjob_end_internal(nest, &saved);
	/* the neediest: its owner has the fewest workers, then it waited longest */
	for (int i = 0; i < n; i++)
	{
		if (jobs[i].job_workers > 0)
			continue;
		if (neediest < 0 ||
			jobs[i].owner_workers < jobs[neediest].owner_workers ||
			(jobs[i].owner_workers == jobs[neediest].owner_workers &&
			 jobs[i].waiting_since < jobs[neediest].waiting_since))
			neediest = i;
	}
	if (neediest >= 0)
		owner = jobs[neediest].owner;
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
