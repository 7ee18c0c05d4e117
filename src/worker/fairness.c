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
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/*
 * A worker looks for jobs without a worker every quarter of a time slice,
 * but at most every MIN_CHECK_MS and at least every MAX_CHECK_MS.
 */
#define MIN_CHECK_MS	100
#define MAX_CHECK_MS	1000

/*
 * Active jobs: queued (and waiting for no other job) or running, found
 * through job_active_owner_idx.  Its predicate also asks for an owner
 * other than 0 (every job has one), which only these statements say:
 * iterjob's other statements on active jobs, by id, never take that index
 * for the primary key while the statistics are stale.  (Not "owner IS NOT
 * NULL": PostgreSQL 17 and later drop that condition from a query on a NOT
 * NULL column, and the index's predicate would no longer be implied.)
 */
#define ACTIVE_JOB_SQL(j) \
" " j ".state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"\
" AND " j ".owner OPERATOR(pg_catalog.<>) 0::pg_catalog.oid"
#define WAITS_FOR_NONE_SQL(j) \
" NOT EXISTS (SELECT FROM iterjob.job p WHERE p.id OPERATOR(pg_catalog.=) ANY (" j ".after)"\
"                AND p.state OPERATOR(pg_catalog.<>) 'succeeded')"

/*
 * The jobs a claim chooses from, without reading every active job: each
 * owner's first active job (in id order) that no worker is on and that
 * had no turn lately ($1 lists those that are on or had one: all of them
 * rank the same, so the first stands for the others), then the jobs of $1
 * (the fourth column says whether one is active); the third column says
 * which jobs stand for their owner's later ones.
 *
 * All of it is probes of job_active_owner_idx, which alone gives the order
 * by owner and id: a skip scan over the owners from the newest job down
 * (where the index holds live entries), then per owner one probe from the
 * job where this worker last saw its first ($2 and $3: owners and ids,
 * hints below).  The entries of jobs that ended stay in the index until
 * they are vacuumed or a scan that could use them dead marks them; a
 * claim never walks the ones before the hint, so a burst of jobs costs
 * each claim the same.  The probes read the index only (it includes the
 * jobs each waits for).
 */
#define OWNER_HINT_SQL \
"COALESCE((SELECT h.first FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) h(owner, first)"\
"           WHERE h.owner OPERATOR(pg_catalog.=) o.owner), 0)"

static const char *const candidate_jobs_sql =
"WITH RECURSIVE o(owner) AS ("
"  (SELECT n.owner FROM iterjob.job n WHERE" ACTIVE_JOB_SQL("n")
"    ORDER BY n.owner DESC, n.id DESC LIMIT 1)"
"  UNION ALL"
"  SELECT (SELECT n.owner FROM iterjob.job n WHERE" ACTIVE_JOB_SQL("n")
"            AND n.owner OPERATOR(pg_catalog.<) o.owner"
"          ORDER BY n.owner DESC, n.id DESC LIMIT 1)"
"    FROM o WHERE o.owner IS NOT NULL)"
"SELECT f.id, o.owner, true, true FROM o, LATERAL ("
"  SELECT n.id, n.owner FROM iterjob.job n"
"   WHERE" ACTIVE_JOB_SQL("n")
"     AND (n.owner, n.id) OPERATOR(pg_catalog.>=) (o.owner, " OWNER_HINT_SQL ")"
"     AND n.owner OPERATOR(pg_catalog.<=) o.owner"
"     AND n.id OPERATOR(pg_catalog.<>) ALL ($1) AND" WAITS_FOR_NONE_SQL("n")
"   ORDER BY n.owner, n.id LIMIT 1) f"
" WHERE o.owner IS NOT NULL"
" UNION ALL "
"SELECT j.id, j.owner, false," ACTIVE_JOB_SQL("j") " FROM iterjob.job j"
" WHERE j.id OPERATOR(pg_catalog.=) ANY ($1) AND" WAITS_FOR_NONE_SQL("j");

/*
 * The next such job after owner $2's job $3, if it is $2's (a probe of the
 * same index: no equality on the owner, which would let the primary key
 * serve the order)
 */
static const char *const next_job_sql =
"SELECT n.id, n.owner OPERATOR(pg_catalog.=) $2 FROM iterjob.job n"
" WHERE" ACTIVE_JOB_SQL("n")
"   AND (n.owner, n.id) OPERATOR(pg_catalog.>) ($2, $3)"
"   AND n.id OPERATOR(pg_catalog.<>) ALL ($1) AND" WAITS_FOR_NONE_SQL("n")
" ORDER BY n.owner, n.id LIMIT 1";

/* A job's open tasks, in instance order (through its unique index). */
static const char *const job_tasks_sql =
"SELECT t.id, t.state OPERATOR(pg_catalog.=) 'queued' FROM iterjob.task t"
" WHERE t.job_id OPERATOR(pg_catalog.=) $1"
"   AND t.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
" ORDER BY t.instance";

/* their kept plans (kept_plans.c) */
static SPIPlanPtr candidate_jobs_plan = NULL;
static SPIPlanPtr next_job_plan = NULL;
static SPIPlanPtr job_tasks_plan = NULL;

/*
 * This worker's hints: per owner, the first job of the owner's that may be
 * runnable, as the last claim saw them; a claim's probe starts there.  A
 * job before it may become runnable again only through a transaction that
 * says so when it commits (iterjob_note_activation(): enqueued, resumed,
 * retried, let run by the job it waited for), which lowers the hints; and
 * they are dropped after a second whatever happens.  A job that workers
 * are on counts as seen, wherever it is: it is runnable again for others
 * once they leave it.
 */
#define MAX_HINTS		32
#define HINTS_VALID_MS	1000

static int	nhints = 0;
static Oid	hint_owners[MAX_HINTS];
static int64 hint_firsts[MAX_HINTS];
static uint64 hints_activations = 0;	/* activations accounted for */
static TimestampTz hints_at = 0;

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
 * Run a kept plan of the job lookups above: probes of the indexes in
 * their order, which cost the same however many jobs are queued
 * (kept_plans.c).
 */
static void
execute_index_probes(SPIPlanPtr plan, Datum *args)
{
	if (iterjob_execute_kept(plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for runnable iterjob jobs");
}

/*
 * The jobs of this database that workers are on or that had a turn lately
 * (state_lock held), as an int8[] in the current memory context.
 */
static Datum
jobs_with_workers_or_turns(void)
{
	Datum		ids[ITERJOB_MAX_WORKER_SLOTS + ITERJOB_MAX_TURNS];
	int			n = 0;

	for (int i = 0; i < ITERJOB_MAX_WORKER_SLOTS; i++)
	{
		IterjobWorkerSlot *slot = &iterjob_shared->workers[i];

		if (slot->in_use && slot->dboid == MyDatabaseId && slot->job_id != 0)
			ids[n++] = Int64GetDatum(slot->job_id);
	}
	for (int i = 0; i < ITERJOB_MAX_TURNS; i++)
	{
		IterjobTurn *turn = &iterjob_shared->turns[i];

		if (turn->dboid == MyDatabaseId && turn->job_id != 0)
			ids[n++] = Int64GetDatum(turn->job_id);
	}
	return PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Account for the activations since the hints were made (state_lock
 * held): lower the hints to the jobs made runnable in this database, or
 * drop them.  Returns the lowest job made runnable (0: not known, and the
 * hints are dropped; PG_INT64_MAX: none), to lower the next hints too: the
 * claim's snapshot may have been taken before some of them committed.
 */
static int64
account_activations(TimestampTz now)
{
	uint64		latest = iterjob_shared->nactivations;
	int64		lowest = PG_INT64_MAX;

	if (latest - hints_activations > ITERJOB_MAX_ACTIVATIONS)
		lowest = 0;
	else
	{
		for (uint64 i = hints_activations; i < latest; i++)
		{
			IterjobActivation *entry = &iterjob_shared->activations[i % ITERJOB_MAX_ACTIVATIONS];

			if (entry->dboid == MyDatabaseId)
				lowest = Min(lowest, entry->job_id);
		}
	}
	hints_activations = latest;
	if (lowest == 0 || TimestampDifferenceExceeds(hints_at, now, HINTS_VALID_MS))
		nhints = 0;
	for (int i = 0; i < nhints; i++)
		hint_firsts[i] = Min(hint_firsts[i], lowest);
	return lowest;
}

/* owner's hint, or -1 */
static int
find_hint(Oid owner)
{
	for (int i = 0; i < nhints; i++)
		if (hint_owners[i] == owner)
			return i;
	return -1;
}

/*
 * Make the hints from the jobs a claim read: per owner, the lowest of its
 * first job and those that workers are on, and no higher than lowest.  An
 * owner the claim read nothing of keeps its hint (it had no runnable job
 * from there on).
 */
static void
update_hints(const IterjobActiveJob *jobs, int n, int64 lowest, TimestampTz now)
{
	bool		fresh[MAX_HINTS] = {false};

	if (lowest == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		int			h = find_hint(jobs[i].owner);

		if (h < 0)
		{
			if (nhints == MAX_HINTS)
				continue;		/* no hint: its probes start at its first */
			h = nhints++;
			hint_owners[h] = jobs[i].owner;
		}
		if (!fresh[h])
			hint_firsts[h] = jobs[i].job_id;
		else
			hint_firsts[h] = Min(hint_firsts[h], jobs[i].job_id);
		fresh[h] = true;
	}
	for (int i = 0; i < nhints; i++)
		hint_firsts[i] = Min(hint_firsts[i], lowest);
	hints_at = now;
}

/*
 * Begin ranking the jobs of this database that may have runnable tasks, as
 * a worker bound to owner (InvalidOid: not bound yet) should claim from
 * them (iterjob_rank_jobs' order).  Only the jobs that can come first are
 * read: per owner, the first job that no worker is on and that had no
 * turn lately, and the jobs that workers are on or that had a turn;
 * iterjob_next_ranked_job() reads an owner's next job when the one that
 * stood for it is passed.  So a claim costs the same with ten or ten
 * thousand jobs queued.  SPI connected, in an internal section; allocates
 * in the current memory context.
 */
void
iterjob_rank_begin(IterjobRanking *ranking, Oid owner)
{
	Oid			types[3] = {INT8ARRAYOID, OIDARRAYOID, INT8ARRAYOID};
	Datum		args[3];
	TimestampTz now = GetCurrentTimestamp();
	int64		lowest;
	IterjobActiveJob *jobs;
	uint64		n;

	memset(ranking, 0, sizeof(*ranking));
	ranking->owner = owner;
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	ranking->excluded = jobs_with_workers_or_turns();
	lowest = account_activations(now);
	LWLockRelease(iterjob_shared->state_lock);

	{
		Datum		owners[MAX_HINTS];
		Datum		firsts[MAX_HINTS];

		for (int i = 0; i < nhints; i++)
		{
			owners[i] = ObjectIdGetDatum(hint_owners[i]);
			firsts[i] = Int64GetDatum(hint_firsts[i]);
		}
		args[0] = ranking->excluded;
		args[1] = PointerGetDatum(construct_array(owners, nhints, OIDOID, sizeof(Oid),
												  true, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(firsts, nhints, INT8OID, sizeof(int64),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	execute_index_probes(iterjob_kept_plan(&candidate_jobs_plan, candidate_jobs_sql, 3, types),
						 args);
	jobs = palloc0(sizeof(IterjobActiveJob) * (SPI_processed + 1));
	n = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)))
			continue;			/* not active */
		jobs[n].job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		jobs[n].owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		jobs[n].stands_for_owner = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		n++;
	}
	LWLockAcquire(iterjob_shared->state_lock, LW_SHARED);
	for (uint64 i = 0; i < n; i++)
		count_workers(&jobs[i]);
	LWLockRelease(iterjob_shared->state_lock);
	update_hints(jobs, (int) n, lowest, now);
	iterjob_rank_jobs(jobs, (int) n, owner);
	ranking->jobs = jobs;
	ranking->n = (int) n;
}

/*
 * Pass the current job.  When it stood for its owner's later jobs, and
 * unless whole_owner asks to pass them all, its owner's next job takes its
 * place: with no worker and no turn, it ranks where it did, or after
 * another owner's job that it now ties with.
 */
static void
pass_job(IterjobRanking *ranking, bool whole_owner)
{
	IterjobActiveJob *job = &ranking->jobs[ranking->next];

	if (job->stands_for_owner && !whole_owner)
	{
		Oid			types[3] = {INT8ARRAYOID, OIDOID, INT8OID};
		Datum		args[3];
		bool		isnull;

		args[0] = ranking->excluded;
		args[1] = ObjectIdGetDatum(job->owner);
		args[2] = Int64GetDatum(job->job_id);
		execute_index_probes(iterjob_kept_plan(&next_job_plan, next_job_sql, 3, types),
							 args);
		if (SPI_processed == 1 &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   2, &isnull)))
		{
			job->job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
			iterjob_rank_jobs(job, ranking->n - ranking->next, ranking->owner);
			return;
		}
	}
	ranking->next++;
}

/*
 * The next job in the ranking that has runnable tasks (*tasks), or NULL.
 * whole_owner: pass every job of the previous job's owner, not just that
 * one.
 */
IterjobActiveJob *
iterjob_next_ranked_job(IterjobRanking *ranking, bool whole_owner,
						IterjobJobTasks *tasks)
{
	if (ranking->started && ranking->next < ranking->n)
		pass_job(ranking, whole_owner);
	ranking->started = true;
	while (ranking->next < ranking->n)
	{
		IterjobActiveJob *job = &ranking->jobs[ranking->next];

		CHECK_FOR_INTERRUPTS();
		if (iterjob_job_tasks(job->job_id, tasks))
			return job;
		pass_job(ranking, false);
	}
	return NULL;
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
	if (iterjob_execute_kept(iterjob_kept_plan(&job_tasks_plan, job_tasks_sql, 1, &type),
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
	IterjobRanking ranking;
	IterjobActiveJob *job;
	IterjobJobTasks tasks;
	IterjobSavedUser saved;
	int			nest;
	bool		neediest = false;
	Oid			owner = InvalidOid;
	long		interval_ms = Max(MIN_CHECK_MS, Min(MAX_CHECK_MS, iterjob_time_slice_ms / 4));

	if (now < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(now, interval_ms);
	if (!all_workers_busy() || !my_turn_to_look(now, interval_ms))
		return;

	iterjob_worker_begin(true);
	nest = iterjob_begin_internal(&saved);
	/* the neediest: in the order a claim takes jobs, the first without a worker */
	iterjob_rank_begin(&ranking, InvalidOid);
	while ((job = iterjob_next_ranked_job(&ranking, false, &tasks)) != NULL)
	{
		if (job->job_workers == 0)
		{
			neediest = true;
			owner = job->owner;
			break;
		}
	}
	iterjob_end_internal(nest, &saved);
	iterjob_worker_commit(true);

	if (neediest)
		(void) iterjob_request_yield(MyDatabaseId, owner, false, now);
}
