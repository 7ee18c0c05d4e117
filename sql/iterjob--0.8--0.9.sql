/* iterjob--0.8--0.9.sql: a claim finds the runnable tasks of the job it
 * chose through an index, however many tasks are queued */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.9'" to load this file. \quit

-- a job's runnable tasks, by job (a claim looks at one job's tasks: through
-- task_runnable_idx, on the task id, the planner scanned every runnable
-- task of every job while the statistics were those of an empty queue)
CREATE INDEX task_runnable_job_idx ON iterjob.task (job_id, instance)
    WHERE state IN ('queued', 'running');
