/* iterjob--0.6--0.7.sql: jobs over Citus tables; partition => 'shard' (the
 * default for a hash-distributed table: instances iterate whole shards, each
 * batch's keys read on the shard's node), per-shard progress */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.7'" to load this file. \quit

ALTER TABLE iterjob.job DROP CONSTRAINT job_partition_check;
ALTER TABLE iterjob.job ADD CONSTRAINT job_partition_check
    CHECK (partition IN ('modulo', 'range', 'shard'));

-- partition => 'shard': the shards an instance iterates, in order (its
-- cursor says which one it is on), and the rows done in each
ALTER TABLE iterjob.task ADD COLUMN shards bigint[];
ALTER TABLE iterjob.task ADD COLUMN shard_rows jsonb;

-- the default partition is 'auto': 'shard' for a hash-distributed Citus
-- table, 'modulo' otherwise (the same signatures: privileges stay)
CREATE OR REPLACE FUNCTION iterjob.enqueue(
    relation   regclass DEFAULT NULL,
    action     text DEFAULT NULL,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'auto',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    max_failure_ratio double precision DEFAULT 0.5,
    failure_window integer DEFAULT 50,
    after      bigint[] DEFAULT NULL,
    health_check text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

CREATE OR REPLACE FUNCTION iterjob.preview(
    relation   regclass DEFAULT NULL,
    action     text DEFAULT NULL,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'auto',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    sample_batches integer DEFAULT 0)
RETURNS TABLE (instance integer, keyset_query text, action text, plan text,
               estimated_rows bigint, estimated_batches bigint,
               next_keyset_query text, next_plan text,
               sampled_batches integer, sampled_rows bigint, sampled_time interval,
               estimated_duration interval, touched jsonb)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preview';

-- node:port of the shard's placement, or NULL (no such shard, no Citus)
CREATE FUNCTION iterjob.shard_node(shard bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog
AS $$
DECLARE
    node text;
BEGIN
    IF shard IS NULL OR to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT n.nodename || '':'' || n.nodeport
               FROM pg_catalog.pg_dist_placement p
               JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
              WHERE p.shardid = $1 LIMIT 1'
       INTO node USING shard;
    RETURN node;
END
$$;

COMMENT ON FUNCTION iterjob.shard_node(bigint)
    IS 'node:port of the Citus node that holds the shard, or NULL';

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
       t.held_reason,
       (t.cursor ->> 'shard')::bigint AS shard_id,
       iterjob.shard_node((t.cursor ->> 'shard')::bigint) AS shard_node
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
  LEFT JOIN pg_stat_activity a
         ON t.state = 'running' AND a.pid = t.worker_pid
        AND a.backend_type = 'iterjob worker'
 WHERE iterjob.can_steer(j.owner);

-- One row per shard of each job with partition 'shard'.
CREATE VIEW iterjob.shard_progress WITH (security_barrier) AS
SELECT t.job_id,
       t.instance,
       s.shard_id,
       iterjob.shard_node(s.shard_id) AS node,
       CASE WHEN t.state = 'succeeded' OR s.position < c.position THEN 'done'
            WHEN s.position = c.position THEN t.state
            ELSE 'waiting' END AS state,
       CASE WHEN s.position = c.position AND t.state <> 'succeeded'
            THEN t.cursor -> 'inner_cursor' END AS cursor,
       coalesce((t.shard_rows ->> s.shard_id::text)::bigint, 0) AS rows_done,
       CASE WHEN s.position = c.position AND t.state = 'running'
            THEN round(t.rows_per_second::numeric, 1) END AS rows_per_second
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
 CROSS JOIN LATERAL unnest(t.shards) WITH ORDINALITY AS s(shard_id, position)
 CROSS JOIN LATERAL (SELECT coalesce(array_position(t.shards, (t.cursor ->> 'shard')::bigint), 1)
                            AS position) AS c
 WHERE iterjob.can_steer(j.owner);

COMMENT ON VIEW iterjob.shard_progress
    IS 'per shard of each job with partition ''shard'': its node, state, cursor, rows done and rate';

REVOKE ALL ON iterjob.shard_progress FROM PUBLIC;
REVOKE ALL ON FUNCTION iterjob.shard_node(bigint) FROM PUBLIC;
GRANT SELECT ON iterjob.shard_progress TO iterjob_user;
GRANT EXECUTE ON FUNCTION iterjob.shard_node(bigint) TO iterjob_user;
