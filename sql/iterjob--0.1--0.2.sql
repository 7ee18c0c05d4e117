/* iterjob--0.1--0.2.sql: progress (rows_total, percent, rate, ETA, bar), the workers
 * view, preview, recount, purge, and wait with progress */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.2'" to load this file. \quit

-- rows_total: the planner's estimate at enqueue, or an exact count by iterjob.recount()
ALTER TABLE iterjob.job ADD COLUMN rows_total bigint;
ALTER TABLE iterjob.task ADD COLUMN rows_total bigint;
-- a moving average kept by each checkpoint
ALTER TABLE iterjob.task ADD COLUMN rows_per_second double precision;

-- retention purges look at finished jobs by age
CREATE INDEX job_finished_idx ON iterjob.job (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

CREATE FUNCTION iterjob.percent(state text, rows_done bigint, rows_total bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN state = 'succeeded' THEN 100.0
                WHEN coalesce(rows_total, 0) <= 0 THEN 0.0
                ELSE least(100.0, round(100.0 * rows_done / rows_total, 1)) END
$$;

CREATE FUNCTION iterjob.progress_bar(percent numeric)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '[' || repeat('#', (percent / 5)::integer)
               || repeat('-', 20 - (percent / 5)::integer) || '] '
               || round(percent)::text || '%'
$$;

CREATE FUNCTION iterjob.eta(state text, rows_done bigint, rows_total bigint,
                            rows_per_second double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN state = 'running' AND rows_per_second > 0
                THEN make_interval(secs => greatest(coalesce(rows_total, 0) - rows_done, 0)
                                           / rows_per_second) END
$$;

-- New columns go at the end, so 0.1's columns keep their places.
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
       coalesce(t.finished_at, now()) - t.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(t.state, t.rows_done, t.rows_total)) AS bar
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
       coalesce(j.finished_at, now()) - j.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(j.state, coalesce(sum(t.rows_done), 0)::bigint,
                                            j.rows_total)) AS bar
  FROM iterjob.job j
  LEFT JOIN iterjob.task t ON t.job_id = j.id
 WHERE iterjob.can_steer(j.owner)
 GROUP BY j.id;

CREATE FUNCTION iterjob.worker_slots(
    OUT pid integer, OUT datid oid, OUT job_id bigint, OUT instance integer,
    OUT batches bigint, OUT since timestamptz, OUT phase text)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_worker_slots';

-- Superusers and iterjob_admin members see every worker of the cluster; others
-- the workers on their own jobs in this database.
CREATE VIEW iterjob.workers WITH (security_barrier) AS
SELECT w.pid,
       d.datname AS database,
       w.job_id,
       w.instance,
       w.batches + 1 AS batch,
       w.since,
       w.phase,
       a.backend_start,
       a.wait_event_type,
       a.wait_event,
       a.application_name
  FROM iterjob.worker_slots() w
  LEFT JOIN pg_database d ON d.oid = w.datid
  LEFT JOIN pg_stat_activity a ON a.pid = w.pid
 WHERE iterjob.can_steer(0)
    OR (d.datname = current_database()
        AND EXISTS (SELECT FROM iterjob.job j
                     WHERE j.id = w.job_id AND iterjob.can_steer(j.owner)));


-- wait gains an argument: dropped and created again below, it gets back the
-- privileges it had at the end of this script
SELECT pg_catalog.set_config('iterjob_upgrade.acls', pg_catalog.jsonb_build_object(
    'iterjob.wait(bigint, interval, boolean)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.wait(bigint, interval)'::pg_catalog.regprocedure))::pg_catalog.text, true);
DROP FUNCTION iterjob.wait(bigint, interval);
CREATE FUNCTION iterjob.wait(job_id bigint, timeout interval DEFAULT NULL,
                             progress boolean DEFAULT false)
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_wait';

COMMENT ON FUNCTION iterjob.wait(bigint, interval, boolean)
    IS 'wait until the job is succeeded, failed or cancelled (or timeout passes) and return its state; progress => true prints a NOTICE every few seconds';

CREATE FUNCTION iterjob.preview(
    relation   regclass,
    action     text,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'modulo',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL)
RETURNS TABLE (instance integer, keyset_query text, action text, plan text,
               estimated_rows bigint, estimated_batches bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preview';

COMMENT ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text)
    IS 'check a job as enqueue would and show, per instance, its first keyset query, plan and estimates; creates nothing';

CREATE FUNCTION iterjob.recount(job_id bigint)
RETURNS bigint
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'iterjob_recount';

COMMENT ON FUNCTION iterjob.recount(bigint)
    IS 'count exactly the rows each instance of the job iterates, store them as rows_total, and return the total';

CREATE FUNCTION iterjob.purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_purge';

COMMENT ON FUNCTION iterjob.purge(interval)
    IS 'delete your finished jobs (all, for iterjob_admin) older than older_than (default iterjob.retention); returns how many';

REVOKE ALL ON iterjob.workers FROM PUBLIC;
GRANT SELECT ON iterjob.workers TO iterjob_user;
REVOKE ALL ON FUNCTION iterjob.worker_slots(), iterjob.wait(bigint, interval, boolean),
    iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text),
    iterjob.recount(bigint), iterjob.purge(interval),
    iterjob.percent(text, bigint, bigint), iterjob.progress_bar(numeric),
    iterjob.eta(text, bigint, bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.worker_slots(), iterjob.wait(bigint, interval, boolean),
    iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text),
    iterjob.recount(bigint), iterjob.purge(interval),
    iterjob.percent(text, bigint, bigint), iterjob.progress_bar(numeric),
    iterjob.eta(text, bigint, bigint, double precision) TO iterjob_user;

CREATE FUNCTION iterjob.wake_workers()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_wake_workers';

COMMENT ON FUNCTION iterjob.wake_workers()
    IS 'have iterjob look for runnable jobs in this database when the transaction commits';

REVOKE ALL ON FUNCTION iterjob.wake_workers() FROM PUBLIC;

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
