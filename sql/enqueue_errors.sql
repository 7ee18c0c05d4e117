--
-- enqueue_errors: every bad input to iterjob.enqueue() and iterjob.wait()
-- fails in the caller's session with a clear error, and a failed or
-- rolled-back enqueue writes nothing.
--
-- This runs in the regression database shared with the other tests, which
-- delete their jobs when they end.
SELECT count(*) AS jobs_before FROM iterjob.job;

-- error_of(sql) runs sql and returns the error it raised: SQLSTATE,
-- message, detail, hint, and the context lines iterjob adds (those starting
-- with "iterjob "; the text of the keyset query iterjob builds around a
-- filter is left out, it is not the caller's).  Used where the message
-- names a job id (ids depend on what ran before), for errors in the
-- filter, and for syntax errors in an argument, whose error position would
-- point into the caller's statement.
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    detail text;
    hint text;
    context text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
        context = PG_EXCEPTION_CONTEXT;
    context := (SELECT string_agg(regexp_replace(line, '^(iterjob keyset query): .*$',
                                                 '\1: ...'), E'\n')
                  FROM regexp_split_to_table(context, E'\n') AS line
                 WHERE line LIKE 'iterjob %');
    RETURN state || ': ' || regexp_replace(msg, 'job -?\d+', 'job <id>')
        || coalesce(E'\nDETAIL: ' || nullif(detail, ''), '')
        || coalesce(E'\nHINT: ' || nullif(hint, ''), '')
        || coalesce(E'\nCONTEXT: ' || context, '');
END
$$;

CREATE TABLE ee_items (id bigint PRIMARY KEY, v int, label text UNIQUE,
                       u int, p int, m1 int, m2 int, pt point, js json,
                       arr int[] UNIQUE, n int DEFAULT 0);
CREATE UNIQUE INDEX ee_items_p_partial ON ee_items (p) WHERE p > 0;
CREATE UNIQUE INDEX ee_items_m1_m2 ON ee_items (m1, m2);
INSERT INTO ee_items (id, v, label, u, p, m1, m2, arr)
SELECT g, g % 10, 'item ' || g, g, g, g, g, ARRAY[g] FROM generate_series(1, 20) g;
CREATE VIEW ee_view AS SELECT id, v FROM ee_items;
CREATE SEQUENCE ee_seq;
CREATE TYPE ee_type AS (id bigint);
CREATE TABLE ee_nokey (id bigint, v int);

--
-- The relation (or query)
--
-- unknown relation: the regclass cast fails
SELECT iterjob.enqueue('ee_no_such_table', 'SELECT 1');
-- a view, a sequence, a composite type
SELECT iterjob.enqueue('ee_view', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)');
SELECT iterjob.enqueue('ee_seq', 'SELECT 1');
SELECT iterjob.enqueue('ee_type', 'SELECT 1');
-- neither relation nor query, or both
SELECT iterjob.enqueue(NULL, 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)');
SELECT iterjob.enqueue(0::regclass, 'SELECT 1');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', query => 'SELECT id FROM ee_items', key => 'id');
-- a query source must be one SELECT that returns the key columns
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'UPDATE ee_items SET n = 0 RETURNING id',
                       key => 'id');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id INTO ee_copy FROM ee_items',
                       key => 'id');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT 1 AS id; SELECT 2 AS id',
                       key => 'id');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM ee_items');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM ee_items', key => 'v');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id, v AS id FROM ee_items',
                       key => 'id');
SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM ee_no_such_table',
                       key => 'id');
SELECT pg_temp.error_of($$SELECT iterjob.enqueue(NULL, 'SELECT 1',
                          query => 'SELECT id FROM ee_items WHERE', key => 'id')$$);

--
-- The key
--
-- no such column; key names are SQL identifiers (unquoted ones fold to
-- lower case); system columns are not keys
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => 'nope');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => '"ID"');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => 'ctid');
-- not a list of identifiers
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => '');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => 'id,');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       key => 'id, id');
SELECT iterjob.enqueue('ee_items', 'SELECT 1',
                       key => 'id, v, label, u, p, m1, m2, n, pt');
-- types without a btree ordering, and arrays
SELECT iterjob.enqueue('ee_items', 'SELECT 1', key => 'pt');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', key => 'js');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', key => 'arr');
-- not unique: no unique index, only a partial one, only the first column of
-- a two-column one, the columns of a two-column one in another order
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE u = ANY($1)',
                       key => 'u');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE p = ANY($1)',
                       key => 'p');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE m1 = ANY($1)',
                       key => 'm1');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', key => 'm2, m1');
-- no primary key and no key given
SELECT iterjob.enqueue('ee_nokey', 'UPDATE ee_nokey SET v = 0 WHERE id = ANY($1)');

--
-- The action (and the completion hooks)
--
-- does not parse
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items',
                          'UPDATE ee_items SET WHERE id = ANY($1)')$$);
SELECT iterjob.enqueue('ee_items', '');
SELECT iterjob.enqueue('ee_items', NULL);
-- parses, but $1 is the batch's key array, not one key
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = $1');
-- a missing table, a missing column, a missing parameter
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_no_such_table SET n = n + 1 WHERE id = ANY($1)');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET nope = 1 WHERE id = ANY($1)');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($2)');
-- more than one statement
SELECT iterjob.enqueue('ee_items',
                       'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1); DROP TABLE ee_items');
-- transaction control
SELECT iterjob.enqueue('ee_items', 'COMMIT');
SELECT iterjob.enqueue('ee_items', 'ROLLBACK');
SELECT iterjob.enqueue('ee_items', 'SAVEPOINT s');
-- the hooks are checked the same way: on_complete takes no parameter,
-- on_instance_complete takes the instance as $1
SELECT iterjob.enqueue('ee_items', 'SELECT 1', on_complete => 'COMMIT');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', on_complete => 'SELECT 1; SELECT 2');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', on_complete => 'SELECT $1');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', on_instance_complete => 'SELECT $2');

--
-- The filter
--
-- an attempt to end the expression early and append statements
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items',
                          'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                          filter => 'true); DROP TABLE ee_items; --')$$);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'true; DROP TABLE ee_items');
-- not boolean
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items',
                          'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                          filter => 'v + 1')$$);
-- not one expression: empty, FROM, WHERE, an alias, two expressions
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => '');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'true FROM ee_items');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'true WHERE false');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'v > 1 AS x');
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'v > 1, v < 5');
-- a missing column; an aggregate
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items',
                          'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                          filter => 'nope > 1')$$);
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items',
                          'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                          filter => 'count(*) > 0')$$);
-- the statements appended above did not run
SELECT count(*) AS ee_items_rows FROM ee_items;

--
-- Numbers, intervals and switches
--
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 0);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 1025);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => NULL);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 0);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 1000001);
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => NULL);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_attempts => 0);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_attempts => 1001);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_attempts => NULL);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => '-1 second');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => '1 day -25 hours');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => '25 days');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => '1000000 years');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => '-1000000 years');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', statement_timeout => NULL);
-- a statement_timeout above iterjob.max_statement_timeout (1h by default)
-- is no error: a NOTICE says that the job's batches get the cap; '0' and
-- the cap itself get none (enqueued and rolled back)
BEGIN;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET v = v WHERE id = ANY($1)',
                       statement_timeout => '2 hours') > 0 AS enqueued;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET v = v WHERE id = ANY($1)',
                       statement_timeout => '1 hour') > 0 AS enqueued;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET v = v WHERE id = ANY($1)',
                       statement_timeout => '0') > 0 AS enqueued;
ROLLBACK;
SELECT iterjob.enqueue('ee_items', 'SELECT 1', lock_timeout => '-1 ms');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', lock_timeout => '25 days');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', lock_timeout => NULL);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', partition => 'hash');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', partition => NULL);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', follow => NULL);
-- max_wal_per_second: a size as pg_size_bytes() reads it, from 1kB to 1TB
-- per second; not negative, not a size, not 0 (NULL is no limit), not
-- less than 1kB or more than 1TB, nor more than a bigint
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '-1MB');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '20 parsecs');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '20MB/s');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '0');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '1023');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '1025GB');
SELECT iterjob.enqueue('ee_items', 'SELECT 1', max_wal_per_second => '99999999999PB');
-- the limits themselves, a unit, bytes without one, fractions, NULL (enqueued
-- and rolled back): the job keeps bytes per second
BEGIN;
SELECT iterjob.enqueue('ee_items', 'SELECT 1', name => 'ee_wal_' || v, max_wal_per_second => v) > 0 AS enqueued
  FROM (VALUES ('1kB'), ('1TB'), ('20MB'), ('2097152'), ('1.5 MB')) AS l(v);
SELECT iterjob.enqueue('ee_items', 'SELECT 1', name => 'ee_wal_null', max_wal_per_second => NULL) > 0 AS enqueued;
SELECT name, max_wal_per_second FROM iterjob.job WHERE name LIKE 'ee_wal_%' ORDER BY id;
ROLLBACK;

--
-- Roles: iterjob is for members of iterjob_user; a job runs as the role
-- that enqueues it, which must have LOGIN and the privileges the filter
-- and the action need.
--
CREATE ROLE regress_iterjob_outsider LOGIN;
CREATE ROLE regress_iterjob_nologin NOLOGIN IN ROLE iterjob_user;
CREATE ROLE regress_iterjob_reader LOGIN IN ROLE iterjob_user;
GRANT SELECT ON ee_items, ee_nokey TO regress_iterjob_outsider, regress_iterjob_nologin;
GRANT SELECT ON ee_items TO regress_iterjob_reader;
SET ROLE regress_iterjob_outsider;
SELECT iterjob.enqueue('ee_items', 'SELECT 1');
RESET ROLE;
SET ROLE regress_iterjob_nologin;
SELECT iterjob.enqueue('ee_items', 'SELECT 1');
RESET ROLE;
SET ROLE regress_iterjob_reader;
-- may read ee_items, may not update it
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)');
-- may not read ee_nokey, in the relation, the filter or the action
SELECT iterjob.enqueue('ee_nokey', 'SELECT 1', key => 'id');
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_items', 'SELECT 1',
                          filter => 'id IN (SELECT id FROM ee_nokey)')$$);
SELECT iterjob.enqueue('ee_items', 'SELECT count(*) FROM ee_nokey WHERE id = ANY($1)');
RESET ROLE;

--
-- iterjob.wait()
--
SELECT iterjob.wait(-1);
SELECT iterjob.wait(NULL);
SELECT iterjob.wait(-1, '-1 second');
SELECT iterjob.wait(-1, '1 day -25 hours');
SELECT iterjob.wait(-1, '1000000 years');
SELECT iterjob.wait(-1, '-1000000 years');

--
-- Nothing was written by any of the above.
--
SELECT count(*) AS jobs FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;
SELECT count(*) AS errors FROM iterjob.error_log;

--
-- A valid enqueue in a transaction that rolls back leaves no job.
--
BEGIN;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2) > 0 AS enqueued;
SELECT count(*) AS jobs FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;
ROLLBACK;
SELECT count(*) AS jobs FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;
-- nor when it is rolled back to a savepoint
BEGIN;
SAVEPOINT s;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)') > 0
    AS enqueued;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS jobs FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;

--
-- Waiting for a job in the transaction that enqueued it cannot succeed.
--
BEGIN;
SELECT iterjob.enqueue('ee_items', 'UPDATE ee_items SET n = n + 1 WHERE id = ANY($1)')
    AS job_id \gset
SELECT pg_temp.error_of(format('SELECT iterjob.wait(%s)', :job_id));
SELECT pg_temp.error_of(format('SELECT iterjob.wait(%s, %L)', :job_id, '1 second'));
ROLLBACK;
SELECT count(*) AS jobs FROM iterjob.job;

-- No job ever ran: no row was updated.
SELECT count(*) FILTER (WHERE n <> 0) AS updated FROM ee_items;

--
-- A temporary table is invisible to the background workers: a job over one
-- could never run, so enqueue must refuse it (in a transaction rolled back,
-- so that nothing is left behind whatever happens).
--
CREATE TEMP TABLE ee_temp (id bigint PRIMARY KEY);
BEGIN;
SELECT pg_temp.error_of($$SELECT iterjob.enqueue('ee_temp', 'SELECT 1')$$) <> 'no error'
    AS refused;
ROLLBACK;

--
-- Waiting in a REPEATABLE READ or SERIALIZABLE transaction for a job that
-- has not ended cannot succeed either.  The job is held up on an advisory
-- lock this session holds (lock_timeout 0: its batch waits for it).
--
SELECT pg_advisory_lock(4242);
SELECT iterjob.enqueue('ee_items', 'SELECT pg_advisory_xact_lock(4242), cardinality($1)',
                       lock_timeout => '0') AS job_id \gset
-- a timeout ends the wait with the job's current state
SELECT iterjob.wait(:job_id, '100 ms') IN ('queued', 'running') AS not_ended;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.error_of(format('SELECT iterjob.wait(%s)', :job_id));
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pg_temp.error_of(format('SELECT iterjob.wait(%s, %L)', :job_id, '1 second'));
ROLLBACK;
-- nor may another role wait for it
SET ROLE regress_iterjob_reader;
SELECT pg_temp.error_of(format('SELECT iterjob.wait(%s)', :job_id));
RESET ROLE;
SELECT pg_advisory_unlock(4242);
-- in READ COMMITTED, wait() returns when the job ends (the timeout only
-- keeps a broken build from hanging the suite)
SELECT iterjob.wait(:job_id, '2 min');
-- once the job has ended, it may be waited for in any transaction
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT iterjob.wait(:job_id);
COMMIT;

-- Clean up.
DELETE FROM iterjob.job;
SELECT count(*) AS jobs FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;
DROP TABLE ee_items CASCADE;
DROP TABLE ee_nokey, ee_temp;
DROP SEQUENCE ee_seq;
DROP TYPE ee_type;
DROP OWNED BY regress_iterjob_outsider, regress_iterjob_nologin, regress_iterjob_reader;
DROP ROLE regress_iterjob_outsider, regress_iterjob_nologin, regress_iterjob_reader;
