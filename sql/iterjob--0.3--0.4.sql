/* iterjob--0.3--0.4.sql: the key's order (operator classes, collations and
 * directions of the unique index iterated), and enqueue(query => ...) or
 * preview(query => ...) without relation */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.4'" to load this file. \quit

-- NULL for jobs enqueued before: the key types' default order, as before
ALTER TABLE iterjob.job ADD COLUMN key_opclasses oid[];
ALTER TABLE iterjob.job ADD COLUMN key_collations oid[];
ALTER TABLE iterjob.job ADD COLUMN key_descending boolean[];
ALTER TABLE iterjob.job ADD COLUMN key_nulls_first boolean[];

-- relation and action get defaults so that named calls may leave relation out
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
    partition  text DEFAULT 'modulo',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

-- preview also shows the next-batch query (after a cursor) and its plan
-- preview returns more columns: dropped and created again below, it gets back the
-- privileges it had at the end of this script
SELECT pg_catalog.set_config('iterjob_upgrade.acls', pg_catalog.jsonb_build_object(
    'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval)',
    (SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
      WHERE p.oid OPERATOR(pg_catalog.=) 'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval)'::pg_catalog.regprocedure))::pg_catalog.text, true);
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
    target_batch_time interval DEFAULT NULL)
RETURNS TABLE (instance integer, keyset_query text, action text, plan text,
               estimated_rows bigint, estimated_batches bigint,
               next_keyset_query text, next_plan text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preview';

COMMENT ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval)
    IS 'check a job as enqueue would and show, per instance, its first and next keyset queries, their plans and estimates; creates nothing';
REVOKE ALL ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) TO iterjob_user;

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
