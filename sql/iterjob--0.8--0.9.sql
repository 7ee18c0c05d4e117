/* iterjob--0.8--0.9.sql: a claim finds the job it takes from, and that
 * job's runnable tasks, through indexes, however many jobs are queued */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.9'" to load this file. \quit

-- a job's runnable tasks, by job (a claim looks at one job's tasks: through
-- task_runnable_idx, on the task id, the planner scanned every runnable
-- task of every job while the statistics were those of an empty queue)
CREATE INDEX task_runnable_job_idx ON iterjob.task (job_id, instance)
    WHERE state IN ('queued', 'running');

-- the active jobs by owner: a claim reads each owner's first job that no
-- worker is on, through a skip scan over the owners, not every active job;
-- with the jobs each waits for, so that the scan reads the index only.
-- Only the claim's statements say "owner <> 0" (every job has an owner):
-- other statements on active jobs keep to the primary key whatever the
-- statistics say.
CREATE INDEX job_active_owner_idx ON iterjob.job (owner, id) INCLUDE (after)
    WHERE state IN ('queued', 'running') AND owner OPERATOR(pg_catalog.<>) 0::pg_catalog.oid;
