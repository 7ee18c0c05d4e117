-- Extension upgrades: install 0.1, keep a job in it, ALTER EXTENSION iterjob UPDATE,
-- and compare with a fresh install of the current version.
SET client_min_messages = warning;
DROP EXTENSION iterjob;
CREATE EXTENSION iterjob VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'iterjob';

-- the current library refuses to enqueue into a 0.1 schema, with a hint
CREATE TABLE up_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO up_items SELECT g FROM generate_series(1, 500) g;
SELECT iterjob.enqueue('up_items', 'UPDATE up_items SET n = n + 1 WHERE id = ANY($1)');

-- a job written by the 0.1 library, still queued when the package is upgraded
INSERT INTO iterjob.job (relation, key_columns, key_types, action, instances,
                         batch_size, owner, search_path, max_attempts,
                         statement_timeout, lock_timeout, partition, follow, upper_bound)
VALUES ('up_items', '{id}', '{bigint}',
        'UPDATE up_items SET n = n + 1 WHERE id = ANY($1)', 2, 100,
        'postgres'::regrole, 'public', 5, '10min', '5s', 'modulo', false, '500');
INSERT INTO iterjob.task (job_id, instance, cursor)
SELECT id, i, jsonb_build_object('instance', i, 'inner_cursor', NULL)
  FROM iterjob.job, generate_series(0, 1) i;

-- objects of 0.1 (for the comparison below, listed in a table the update keeps)
CREATE TABLE up_objects AS
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'iterjob')
   AND deptype = 'e';

-- privileges an administrator granted or revoked survive every update,
-- also on the functions an update drops and creates again (wait in 0.2,
-- enqueue in 0.3, 0.5, 0.6 and 0.12, preview in 0.3, 0.4 and 0.6, set in
-- 0.12); from 0.3 the update to 0.4 wakes the workers too
CREATE ROLE up_reader NOLOGIN;
GRANT USAGE ON SCHEMA iterjob TO up_reader;
GRANT SELECT ON iterjob.job_progress TO up_reader;
GRANT EXECUTE ON FUNCTION iterjob.wait(bigint, interval) TO up_reader;
GRANT EXECUTE ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text) TO up_reader;
ALTER EXTENSION iterjob UPDATE TO '0.3';
GRANT EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) TO up_reader WITH GRANT OPTION;
REVOKE EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) FROM iterjob_user;

ALTER EXTENSION iterjob UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'iterjob';

SELECT has_schema_privilege('up_reader', 'iterjob', 'USAGE') AS schema_usage,
       has_table_privilege('up_reader', 'iterjob.job_progress', 'SELECT') AS job_progress,
       has_function_privilege('up_reader', 'iterjob.wait(bigint, interval, boolean)', 'EXECUTE') AS wait,
       has_function_privilege('up_reader', 'iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text)', 'EXECUTE') AS enqueue,
       has_function_privilege('up_reader', 'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer)', 'EXECUTE WITH GRANT OPTION') AS preview_with_grant_option,
       has_function_privilege('iterjob_user', 'iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer)', 'EXECUTE') AS preview_for_iterjob_user;
-- pg_dump dumps the difference from the extension's initial privileges:
-- those still name none of up_reader's
SELECT count(*) AS initial_privileges_of_up_reader
  FROM pg_init_privs i, aclexplode(i.initprivs) a
 WHERE a.grantee = 'up_reader'::regrole;
REVOKE ALL ON SCHEMA iterjob FROM up_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA iterjob FROM up_reader;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA iterjob FROM up_reader CASCADE;
GRANT EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer) TO iterjob_user;
-- nothing else holds on to the role
DROP ROLE up_reader;

-- the job written under 0.1 runs to the end after the update (which woke the workers)
SELECT iterjob.wait((SELECT max(id) FROM iterjob.job), '60s');
SELECT count(*) FILTER (WHERE n = 1) AS once, count(*) FILTER (WHERE n <> 1) AS other
  FROM up_items;
SELECT state, rows_done, percent, bar FROM iterjob.job_progress;

-- what the update added (but a table's or view's rowtype and its array type,
-- which only PostgreSQL 17 and later record as extension members of their own)
SELECT pg_describe_object(classid, objid, 0) AS added
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'iterjob')
   AND deptype = 'e'
   AND NOT (classid = 'pg_type'::regclass AND objid IN (
       SELECT unnest(ARRAY[t.oid, t.typarray])
         FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid
        WHERE c.relkind <> 'c'))
EXCEPT SELECT object FROM up_objects
ORDER BY 1;

-- an upgraded install has the same objects, columns, privileges (and initial
-- privileges), definitions, indexes and constraints as a fresh install from
-- the current full script
CREATE FUNCTION pg_temp.iterjob_shape()
RETURNS TABLE (item text)
LANGUAGE sql AS $$
    SELECT pg_describe_object(classid, objid, 0)
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'iterjob')
       AND deptype = 'e'
    UNION ALL
    SELECT format('%s.%s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnum)
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
     WHERE c.relnamespace = 'iterjob'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
       AND c.relkind IN ('r', 'v')
    UNION ALL
    SELECT format('%s %s', c.relname, c.relacl) FROM pg_class c
     WHERE c.relnamespace = 'iterjob'::regnamespace AND c.relkind IN ('r', 'v')
    UNION ALL
    SELECT format('%s %s %s', p.oid::regprocedure, p.proacl, pg_get_functiondef(p.oid))
      FROM pg_proc p
     WHERE p.pronamespace = 'iterjob'::regnamespace
    UNION ALL
    SELECT format('%s %s', c.relname, pg_get_viewdef(c.oid)) FROM pg_class c
     WHERE c.relnamespace = 'iterjob'::regnamespace AND c.relkind = 'v'
    UNION ALL
    SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     WHERE c.relnamespace = 'iterjob'::regnamespace
    UNION ALL
    SELECT format('%s %s', conrelid::regclass, pg_get_constraintdef(oid)) FROM pg_constraint
     WHERE connamespace = 'iterjob'::regnamespace
    UNION ALL
    -- the initial privileges pg_dump compares with
    SELECT format('initial privileges of %s: %s', pg_describe_object(i.classoid, i.objoid, i.objsubid), i.initprivs)
      FROM pg_init_privs i
     WHERE EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
                      AND d.refclassid = 'pg_extension'::regclass
                      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'iterjob'))
$$;
CREATE TABLE up_shape AS SELECT item FROM pg_temp.iterjob_shape();
DROP EXTENSION iterjob;
CREATE EXTENSION iterjob;
SELECT item AS only_after_upgrade FROM up_shape
EXCEPT SELECT item FROM pg_temp.iterjob_shape();
SELECT item AS only_in_fresh_install FROM pg_temp.iterjob_shape()
EXCEPT SELECT item FROM up_shape;

DROP TABLE up_items, up_objects, up_shape;
