/* iterjob--0.8--0.9.sql: a claim finds the runnable tasks of the job it
 * chose through an index, however many tasks are queued */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.9'" to load this file. \quit

-- a job's runnable tasks, found by its id (a claim looks at one job's
-- tasks; the index on the task id alone made the planner scan every
-- runnable task of every job while its statistics were those of an empty
-- queue)
DROP INDEX iterjob.task_runnable_idx;
CREATE INDEX task_runnable_idx ON iterjob.task (job_id, instance)
    WHERE state IN ('queued', 'running');
