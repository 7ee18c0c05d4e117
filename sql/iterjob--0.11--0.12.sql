/* iterjob--0.11--0.12.sql: a job's own WAL limit (enqueue's and set's
 * max_wal_per_second), and the WAL a job writes, shown in its progress */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.12'" to load this file. \quit

-- the most WAL the job writes per second, in bytes, shared equally by its
-- instances (NULL: no limit of its own)
ALTER TABLE iterjob.job ADD COLUMN max_wal_per_second bigint CHECK (max_wal_per_second > 0);

-- the WAL the task's workers wrote for it, counted at each checkpoint
-- (batches run on a Citus node's shard write theirs there: not counted)
ALTER TABLE iterjob.task ADD COLUMN wal_bytes bigint NOT NULL DEFAULT 0;

-- enqueue and set take max_wal_per_second: dropped and created again below,
-- they get back the privileges they had at the end of this script
SELECT pg_catalog.set_config('iterjob_upgrade.acls', pg_catalog.jsonb_build_object(
    'iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text)'::pg_catalog.regprocedure),
    'iterjob.set(bigint, integer, interval, integer, interval, double precision, integer, text)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.set(bigint, integer, interval, integer, interval, double precision, integer)'::pg_catalog.regprocedure))::pg_catalog.text, true);
DROP FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text);
CREATE FUNCTION iterjob.enqueue(
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
    health_check text DEFAULT NULL,
    max_wal_per_second text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

COMMENT ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text)
    IS 'create a job that runs action on every batch of keys of relation (or query), in instances parallel instances';

REVOKE ALL ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text) TO iterjob_user;

DROP FUNCTION iterjob.set(bigint, integer, interval, integer, interval, double precision, integer);
CREATE FUNCTION iterjob.set(
    job_id     bigint,
    batch_size integer DEFAULT NULL,
    batch_pause interval DEFAULT NULL,
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    max_failure_ratio double precision DEFAULT NULL,
    failure_window integer DEFAULT NULL,
    max_wal_per_second text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_set';

COMMENT ON FUNCTION iterjob.set(bigint, integer, interval, integer, interval, double precision, integer, text)
    IS 'change a job''s pacing or failure-ratio stop while it runs (NULL: unchanged, 0: no limit); workers apply it at their next batch';

REVOKE ALL ON FUNCTION iterjob.set(bigint, integer, interval, integer, interval, double precision, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.set(bigint, integer, interval, integer, interval, double precision, integer, text) TO iterjob_user;

-- task_progress and job_progress show the WAL written, job_progress the limit
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
       t.slowed_reason,
       t.wal_bytes
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
       (array_agg(t.slowed_reason ORDER BY t.slowed_at DESC NULLS LAST))[1] AS slowed_reason,
       coalesce(sum(t.wal_bytes), 0)::bigint AS wal_bytes,
       j.max_wal_per_second
  FROM iterjob.job j
  LEFT JOIN iterjob.task t ON t.job_id = j.id
 WHERE iterjob.can_steer(j.owner)
 GROUP BY j.id;

-- The functions dropped and created again above get back the privileges
-- the old ones had, granted by the extension or by an administrator
-- (re-granted by the functions' owner).  The extension's initial
-- privileges stay its own, as this script set them: pg_dump dumps the
-- administrator's grants as the difference.
DO $$
DECLARE
    f record;
    a record;
    own pg_catalog.aclitem[];
    had_own boolean;
BEGIN
    FOR f IN SELECT e.key::pg_catalog.regprocedure AS fn, e.value::pg_catalog.aclitem[] AS saved
               FROM pg_catalog.jsonb_each_text(
                        pg_catalog.current_setting('iterjob_upgrade.acls')::pg_catalog.jsonb) e
              WHERE e.value IS NOT NULL
    LOOP
        SELECT i.initprivs INTO own FROM pg_catalog.pg_init_privs i
         WHERE i.objoid OPERATOR(pg_catalog.=) f.fn
           AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND i.objsubid OPERATOR(pg_catalog.=) 0;
        had_own := FOUND;
        FOR a IN SELECT DISTINCT x.grantee
                   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x
                  WHERE p.oid OPERATOR(pg_catalog.=) f.fn
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s CASCADE', f.fn,
                CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END);
        END LOOP;
        FOR a IN SELECT x.grantee, x.privilege_type, x.is_grantable
                   FROM pg_catalog.aclexplode(f.saved) x
        LOOP
            EXECUTE pg_catalog.format('GRANT %s ON FUNCTION %s TO %s%s', a.privilege_type, f.fn,
                CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        IF had_own THEN
            UPDATE pg_catalog.pg_init_privs SET initprivs = own
             WHERE objoid OPERATOR(pg_catalog.=) f.fn
               AND classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND objsubid OPERATOR(pg_catalog.=) 0;
        ELSE
            DELETE FROM pg_catalog.pg_init_privs
             WHERE objoid OPERATOR(pg_catalog.=) f.fn
               AND classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND objsubid OPERATOR(pg_catalog.=) 0;
        END IF;
        -- 17 and later record the roles of initial privileges as shared
        -- dependencies ('i'): only those of the extension's own remain
        DELETE FROM pg_catalog.pg_shdepend d
         WHERE d.deptype OPERATOR(pg_catalog.=) 'i'
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) f.fn
           AND d.dbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                              WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
           AND d.refobjid OPERATOR(pg_catalog.<>) ALL (
               SELECT x.grantee FROM pg_catalog.aclexplode(COALESCE(own, '{}')) x);
    END LOOP;
END
$$;

-- jobs that waited for this update can start now
SELECT iterjob.wake_workers();
