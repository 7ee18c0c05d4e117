/* iterjob--0.10--0.11.sql: batches that blocked a foreground session,
 * counted and shown */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.11'" to load this file. \quit

-- A batch cancelled because a session (an application's) waited for one of
-- its locks longer than iterjob.max_foreground_wait: how many, the latest
-- when, and for whom.
ALTER TABLE iterjob.task
    ADD COLUMN foreground_cancels bigint NOT NULL DEFAULT 0,
    ADD COLUMN slowed_at timestamptz,
    ADD COLUMN slowed_reason text;

CREATE OR REPLACE VIEW iterjob.task_progress WITH (security_barrier) AS
SELECT t.job_id,
       t.instance,
       t.state,
       t.cursor,
       t.range_start,
       t.range_end,
       t.rows_done,
       t.batches_done,
       t.attempts,
       t.last_error,
       a.pid AS worker_pid,
       t.started_at,
       t.finished_at,
       t.updated_at,
       t.rows_total,
       iterjob.percent(t.state, t.rows_done, t.rows_total) AS percent,
       CASE WHEN t.state = 'running' THEN round(t.rows_per_second::numeric, 1) END
           AS rows_per_second,
       iterjob.eta(t.state, t.rows_done, t.rows_total, t.rows_per_second) AS eta,
       coalesce(t.finished_at, clock_timestamp()) - t.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(t.state, t.rows_done, t.rows_total)) AS bar,
       -- the figures of the statistics views, for those who may read them
       CASE WHEN t.held_reason IS NULL THEN NULL
            WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN t.held_reason
            ELSE coalesce(t.held_summary, 'held') END AS held_reason,
       (t.cursor ->> 'shard')::bigint AS shard_id,
       iterjob.shard_node((t.cursor ->> 'shard')::bigint) AS shard_node,
       t.foreground_cancels,
       t.slowed_at,
       t.slowed_reason
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
  LEFT JOIN pg_stat_activity a
         ON t.state = 'running' AND a.pid = t.worker_pid
        AND a.backend_type = 'iterjob worker'
 WHERE iterjob.can_steer(j.owner);

CREATE OR REPLACE VIEW iterjob.job_progress WITH (security_barrier) AS
SELECT j.id AS job_id,
       j.name,
       j.relation,
       j.state,
       j.instances,
       count(t.job_id) FILTER (WHERE t.state IN ('succeeded', 'failed', 'cancelled'))::integer
           AS instances_done,
       coalesce(sum(t.rows_done), 0)::bigint AS rows_done,
       coalesce(sum(t.batches_done), 0)::bigint AS batches_done,
       j.batch_size,
       array_to_string(j.key_columns, ', ') AS key_column,
       j.partition,
       j.max_attempts,
       pg_get_userbyid(j.owner) AS owner,
       j.created_at,
       j.started_at,
       j.finished_at,
       j.last_error,
       j.rows_total,
       iterjob.percent(j.state, coalesce(sum(t.rows_done), 0)::bigint, j.rows_total) AS percent,
       CASE WHEN j.state = 'running'
            THEN round(coalesce(sum(t.rows_per_second) FILTER (WHERE t.state = 'running'), 0)::numeric, 1)
       END AS rows_per_second,
       iterjob.eta(j.state, coalesce(sum(t.rows_done), 0)::bigint, j.rows_total,
                   sum(t.rows_per_second) FILTER (WHERE t.state = 'running')) AS eta,
       coalesce(j.finished_at, clock_timestamp()) - j.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(j.state, coalesce(sum(t.rows_done), 0)::bigint,
                                            j.rows_total)) AS bar,
       -- the figures of the statistics views, for those who may read them
       string_agg(DISTINCT CASE WHEN t.held_reason IS NULL THEN NULL
                                WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN t.held_reason
                                ELSE coalesce(t.held_summary, 'held') END, '; ')
           FILTER (WHERE t.state = 'running') AS held,
       j.batch_pause,
       j.max_rows_per_second,
       j.target_batch_time,
       j.max_failure_ratio,
       j.failure_window,
       j.after,
       -- the jobs of after that have not succeeded yet
       CASE WHEN j.state = 'queued' AND j.after IS NOT NULL
            THEN ARRAY(SELECT p.id FROM iterjob.job p
                        WHERE p.id = ANY (j.after) AND p.state <> 'succeeded' ORDER BY p.id)
       END AS waiting_for,
       j.health_check,
       coalesce(sum(t.foreground_cancels), 0)::bigint AS foreground_cancels,
       max(t.slowed_at) AS slowed_at,
       (array_agg(t.slowed_reason ORDER BY t.slowed_at DESC NULLS LAST))[1] AS slowed_reason
  FROM iterjob.job j
  LEFT JOIN iterjob.task t ON t.job_id = j.id
 WHERE iterjob.can_steer(j.owner)
 GROUP BY j.id;
