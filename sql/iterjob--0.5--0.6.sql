/* iterjob--0.5--0.6.sql: dependencies between jobs (enqueue's after), health
 * checks (enqueue's health_check), preview's sample batches */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.6'" to load this file. \quit

ALTER TABLE iterjob.job ADD COLUMN after bigint[];
ALTER TABLE iterjob.job ADD COLUMN health_check text;

-- the jobs that wait for a job that ends
CREATE INDEX job_after_idx ON iterjob.job USING gin (after) WHERE after IS NOT NULL;

-- enqueue and preview take more arguments: dropped and created again below,
-- they get back the privileges they had at the end of this script
SELECT pg_catalog.set_config('iterjob_upgrade.acls', pg_catalog.jsonb_build_object(
    'iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer)'::pg_catalog.regprocedure),
    'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval)'::pg_catalog.regprocedure))::pg_catalog.text, true);
DROP FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer);
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
    partition  text DEFAULT 'modulo',
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

COMMENT ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text)
    IS 'create a job that runs action on every batch of keys of relation (or query), in instances parallel instances';

REVOKE ALL ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text) TO iterjob_user;

DROP FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval);
CREATE FUNCTION iterjob.preview(
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
    partition  text DEFAULT 'modulo',
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

COMMENT ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer)
    IS 'check a job as enqueue would and show, per instance, its first and next keyset queries, their plans and estimates, and with sample_batches its first batches run and rolled back, timed, with an estimated duration; leaves nothing behind';

REVOKE ALL ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer) TO iterjob_user;

-- job_progress shows a job's dependencies and health check
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
       string_agg(DISTINCT t.held_reason, '; ') FILTER (WHERE t.state = 'running') AS held,
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
       j.health_check
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
