-- hostile_keys.sql: no key a job owner can make crashes a process, and a job
-- notices when what it was enqueued against changed under it.
--
--    1. an enum key whose cast to json returns no usable form ('[null]',
--       '[]', JSON null, SQL NULL, an object): enqueue and preview refuse
--       it, also with partition => 'range' and follow => true
--    2. the same cast going bad mid-job: the checkpoint refuses the form,
--       the whole job fails at once, naming the job, instance and key
--    3. key columns of a domain over an array, a composite or jsonb
--    4. stored key values read back: a cursor and a range boundary that are
--       not one scalar per key column fail the job, no crash
--    5. schema changes while a worker keeps the job's plans: held by its
--       health check after its first batches, the change made, released;
--       the job fails with an error naming the change where going on would
--       be wrong, and goes on where nothing it relies on changed
--    6. an enum label renamed under a paused job's cursor
--
-- Every section also checks that the server did not restart.  Autocommit,
-- as the superuser postgres, acting as hk_alice with SET ROLE; run by
-- test/pgtap-exec.sh in a fresh database.

SET client_min_messages = warning;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hk_alice') THEN
        DROP OWNED BY hk_alice CASCADE;
        DROP ROLE hk_alice;
    END IF;
END
$$;
CREATE ROLE hk_alice LOGIN IN ROLE iterjob_user;
CREATE SCHEMA hk AUTHORIZATION hk_alice;

SELECT pg_postmaster_start_time() AS started \gset

SELECT plan(81);

-- the server has not restarted since the file began
CREATE FUNCTION hk_no_restart(started timestamptz) RETURNS boolean LANGUAGE sql AS $$
    SELECT pg_postmaster_start_time() = started
$$;

SET ROLE hk_alice;

-- 1. casts to json with no usable form, at enqueue ------------------------------

CREATE TYPE hk.mood AS ENUM ('m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9');
CREATE TABLE hk.cast_mode (mode text NOT NULL, bad_label hk.mood);
INSERT INTO hk.cast_mode VALUES ('good', NULL);
-- the form of every label, or only of bad_label when set, follows the mode
CREATE FUNCTION hk.mood_json(m hk.mood) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c.bad_label IS NOT NULL AND m <> c.bad_label THEN pg_catalog.to_json(m::text)
                ELSE CASE c.mode WHEN 'good' THEN pg_catalog.to_json(m::text)
                                 WHEN 'array_null' THEN '[null]'::json
                                 WHEN 'empty' THEN '[]'::json
                                 WHEN 'json_null' THEN 'null'::json
                                 WHEN 'sql_null' THEN NULL
                                 WHEN 'object' THEN '{"a": 1}'::json END END
      FROM hk.cast_mode c
$$;
CREATE CAST (hk.mood AS json) WITH FUNCTION hk.mood_json(hk.mood);
CREATE TABLE hk.moods (m hk.mood PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.moods (m) SELECT unnest(enum_range(NULL::hk.mood));

-- enqueue or preview (what) under a mode, with the given extra arguments
CREATE FUNCTION hk.try_mode(p_mode text, what text, args text DEFAULT '') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hk.cast_mode SET mode = p_mode, bad_label = NULL;
    IF what = 'enqueue' THEN
        EXECUTE 'SELECT iterjob.enqueue(''hk.moods'', ''UPDATE hk.moods SET n = n + 1 WHERE m = ANY($1)''' || args || ')';
    ELSE
        EXECUTE 'SELECT count(*) FROM iterjob.preview(''hk.moods'', ''UPDATE hk.moods SET n = n + 1 WHERE m = ANY($1)''' || args || ')';
    END IF;
END
$$;

SELECT throws_ok(format('SELECT hk.try_mode(%L, %L, %L)', mode, what, args), '0A000',
                 'the jsonb form of key (m) is not one non-null scalar per key column',
                 format('%s, cast returning %s%s: refused', what, mode, args))
  FROM unnest(ARRAY['array_null', 'empty', 'json_null', 'object']) AS mode,
       (VALUES ('enqueue', ''), ('preview', ''),
               ('enqueue', ', instances => 3, partition => ''range'', follow => true')) AS w(what, args);
-- a cast to json that returns SQL NULL is refused by to_jsonb() itself
SELECT throws_ok(format('SELECT hk.try_mode(%L, %L, %L)', 'sql_null', what, args), 'XX000',
                 NULL, format('%s, cast returning SQL NULL%s: refused', what, args))
  FROM (VALUES ('enqueue', ''), ('preview', ''),
               ('enqueue', ', instances => 3, partition => ''range'', follow => true')) AS w(what, args);
SELECT is((SELECT count(*) FROM iterjob.job_progress), 0::bigint,
          'casts with no usable form: no job left behind');
SELECT ok(hk_no_restart(:'started'), 'casts with no usable form: the server did not restart');

-- 2. the same cast going bad mid-job -------------------------------------------

UPDATE hk.cast_mode SET mode = 'array_null', bad_label = 'm4';
SELECT iterjob.enqueue('hk.moods', 'UPDATE hk.moods SET n = n + 1 WHERE m = ANY($1)',
                       batch_size => 2, max_attempts => 5, name => 'hk_late_bad') AS j_late \gset
SELECT is(iterjob.wait(:j_late, '60 s'), 'failed', 'a key whose form goes bad mid-job: the job fails');
SELECT matches((SELECT last_error FROM iterjob.job_progress WHERE job_id = :j_late),
               '^the jsonb form of key \(m\) of iterjob job \d+ is not one non-null scalar per key column$',
               'its error names the job and the key');
SELECT is((SELECT string_agg(DISTINCT sqlstate, ',') || ' x' || count(*) FROM iterjob.errors WHERE job_id = :j_late),
          '0A000 x1', 'one attempt, not max_attempts: retrying cannot help');
SELECT matches((SELECT detail FROM iterjob.errors WHERE job_id = :j_late),
               '^Instance 0: to_jsonb\(\) of the last key of batch 2 returned \[null\]',
               'its detail names the instance, the batch and the form');
SELECT is((SELECT string_agg(m::text || '=' || n, ',' ORDER BY m) FROM hk.moods),
          'm1=1,m2=1,m3=0,m4=0,m5=0,m6=0,m7=0,m8=0,m9=0',
          'the batches before it committed once, the bad one not at all');
UPDATE hk.moods SET n = 0;

UPDATE hk.cast_mode SET mode = 'sql_null', bad_label = 'm4';
SELECT iterjob.enqueue('hk.moods', 'UPDATE hk.moods SET n = n + 1 WHERE m = ANY($1)',
                       batch_size => 2, max_attempts => 5) AS j_null \gset
SELECT is(iterjob.wait(:j_null, '60 s'), 'failed', 'a key whose form turns NULL mid-job: the job fails');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :j_null), 1::bigint,
          'after one attempt');
SELECT ok(hk_no_restart(:'started'), 'bad forms mid-job: the server did not restart');
UPDATE hk.cast_mode SET mode = 'good', bad_label = NULL;

-- 3. key types that have no scalar form, through domains -----------------------

CREATE DOMAIN hk.ints AS int[];
CREATE TABLE hk.arr (k hk.ints PRIMARY KEY);
INSERT INTO hk.arr VALUES ('{1,2}'), ('{3}');
SELECT throws_ok($$SELECT iterjob.enqueue('hk.arr', 'SELECT $1')$$, '0A000',
                 'key column "k" is an array', 'a domain over an array: refused');
SELECT throws_ok($$SELECT iterjob.enqueue(query => 'SELECT k FROM hk.arr', key => 'k', action => 'SELECT $1')$$,
                 '0A000', 'key column "k" is an array', 'the same key from a query: refused');
CREATE TYPE hk.pair AS (a int, b int);
CREATE DOMAIN hk.pairs AS hk.pair;
CREATE TABLE hk.comp (k hk.pairs PRIMARY KEY);
SELECT throws_ok($$SELECT iterjob.enqueue('hk.comp', 'SELECT $1')$$, '0A000',
                 'key column "k" has type hk.pairs', 'a domain over a composite: refused');
CREATE DOMAIN hk.doc AS jsonb;
CREATE TABLE hk.docs (k hk.doc PRIMARY KEY);
SELECT throws_ok($$SELECT iterjob.enqueue('hk.docs', 'SELECT $1')$$, '0A000',
                 'key column "k" has type hk.doc', 'a domain over jsonb: refused');
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE state <> 'failed'), 0::bigint,
          'key types with no scalar form: no job left behind');

-- 4. stored key values read back ----------------------------------------------

-- Brake c holds a job named 'hk_' || c by its health check once it has done
-- 10 rows, while the brake is on: its worker keeps the task and its plans,
-- between two batches, until the brake is released.  Health checks run at
-- most once a second: the jobs braked pause 100 ms after each batch of 5
-- rows, so that they cannot end before a check finds 10 rows done.
CREATE TABLE hk.brake (c text PRIMARY KEY, hold boolean NOT NULL);
CREATE FUNCTION hk.brake_check(c text) RETURNS text LANGUAGE sql AS $$
    SELECT format('CASE WHEN (SELECT hold FROM hk.brake WHERE c = %L)'
                  ' AND (SELECT rows_done FROM iterjob.job_progress WHERE name = %L) >= 10'
                  ' THEN ''brake'' END', c, 'hk_' || c)
$$;
CREATE FUNCTION hk.held(job bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) = %L',
                                 job, 'health check: brake'), '60 s')
$$;

CREATE TABLE hk.nums (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.nums (k) SELECT g FROM generate_series(1, 200) g;
INSERT INTO hk.brake VALUES ('stored', true);
SELECT iterjob.enqueue('hk.nums', 'UPDATE hk.nums SET n = n + 1 WHERE k = ANY($1)',
                       batch_size => 5, batch_pause => '100 ms', name => 'hk_stored',
                       health_check => hk.brake_check('stored')) AS j_stored \gset
SELECT ok(hk.held(:j_stored), 'stored cursor: the job is held after its first batches');
SELECT is(iterjob.pause(:j_stored), 'paused', 'stored cursor: paused');
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :j_stored)),
          'stored cursor: its worker left it');
RESET ROLE;
UPDATE iterjob.task SET cursor = jsonb_set(cursor, '{inner_cursor}', '[null]')
 WHERE job_id = :j_stored;
SET ROLE hk_alice;
SELECT is(iterjob.resume(:j_stored), 'running', 'stored cursor: resumed');
SELECT is(iterjob.wait(:j_stored, '60 s'), 'failed', 'a stored cursor [null]: the job fails');
SELECT is((SELECT last_error FROM iterjob.job_progress WHERE job_id = :j_stored),
          format('the stored cursor of instance 0 of iterjob job %s is not one non-null scalar per key column', :j_stored),
          'its error names the cursor, the instance and the job');
SELECT is((SELECT count(*) FROM hk.nums WHERE n > 1), 0::bigint, 'stored cursor: no row done twice');

UPDATE hk.nums SET n = 0;
BEGIN;
SELECT iterjob.enqueue('hk.nums', 'UPDATE hk.nums SET n = n + 1 WHERE k = ANY($1)',
                       instances => 2, partition => 'range', batch_size => 5) AS j_range \gset
SELECT is(iterjob.pause(:j_range), 'paused', 'stored range: paused before it could start');
COMMIT;
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :j_range)),
          'stored range: no worker on it');
RESET ROLE;
UPDATE iterjob.task SET range_start = '[]' WHERE job_id = :j_range AND instance = 1;
SET ROLE hk_alice;
SELECT is(iterjob.resume(:j_range), 'queued', 'stored range: resumed, never started');
SELECT is(iterjob.wait(:j_range, '60 s'), 'failed', 'a stored range start []: the job fails');
SELECT ok((SELECT last_error FROM iterjob.job_progress WHERE job_id = :j_range)
          LIKE 'the stored range start of instance 1 of iterjob job % is not one non-null scalar per key column',
          'its error names the range start and the instance');
SELECT is((SELECT count(*) FROM hk.nums WHERE n > 1), 0::bigint, 'stored range: no row done twice');
SELECT ok(hk_no_restart(:'started'), 'stored key values: the server did not restart');

-- 5. schema changes while a worker keeps the job's plans -----------------------

-- The job of case c iterates tbl (or SELECT k FROM tbl) in batches of 5
-- under brake c.  run_case enqueues it, waits until it is held (its worker
-- keeps its plans, between batches), makes the change as hk_alice, commits,
-- releases the brake and waits for the job to end.
CREATE PROCEDURE hk.run_case(c text, tbl text, change text, query boolean DEFAULT false,
                             INOUT job bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hk.brake VALUES (c, true);
    IF query THEN
        job := iterjob.enqueue(query => format('SELECT k FROM %s', tbl), key => 'k',
                               action => format('UPDATE %s SET n = n + 1 WHERE k = ANY($1)', tbl),
                               batch_size => 5, batch_pause => '100 ms', name => 'hk_' || c,
                               health_check => hk.brake_check(c));
    ELSE
        job := iterjob.enqueue(tbl, format('UPDATE %s SET n = n + 1 WHERE k = ANY($1)', tbl),
                               batch_size => 5, batch_pause => '100 ms', name => 'hk_' || c,
                               health_check => hk.brake_check(c));
    END IF;
    COMMIT;
    IF NOT hk.held(job) THEN
        RAISE EXCEPTION 'case %: job % was not held', c, job;
    END IF;
    EXECUTE change;
    COMMIT;
    UPDATE hk.brake SET hold = false WHERE brake.c = run_case.c;
    COMMIT;
    PERFORM iterjob.wait(job, '60 s');
END
$$;
-- 'state: last_error' of a job
CREATE FUNCTION hk.outcome(job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT state || coalesce(': ' || last_error, '') FROM iterjob.job_progress WHERE job_id = job
$$;
-- rows of tbl done more than once, and rows done once
CREATE FUNCTION hk.done(tbl text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SELECT count(*) FILTER (WHERE n > 1) || '' twice, '' || count(*) FILTER (WHERE n = 1) || '' once'' FROM %s', tbl)
       INTO r;
    RETURN r;
END
$$;

-- a key column's type changed: text -> name, numeric -> bigint, integer -> text
CREATE TABLE hk.t_name (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_name (k) SELECT 'key ' || lpad(g::text, 4, '0') FROM generate_series(1, 200) g;
CALL hk.run_case('name', 'hk.t_name', 'ALTER TABLE hk.t_name ALTER COLUMN k TYPE name') \gset
SELECT matches(hk.outcome(:job), '^failed: the type of key column "k" of relation hk.t_name changed from text to name since iterjob job \d+ was enqueued$',
               'text -> name: the job fails, naming the column, both types and the job');
SELECT is((SELECT sqlstate FROM iterjob.errors WHERE job_id = :job), '55000', 'text -> name: SQLSTATE 55000, one attempt');
SELECT matches(hk.done('hk.t_name'), '^0 twice, (1\d|[2-9]\d|1\d\d) once$', 'text -> name: rows done before it, once');

CREATE TABLE hk.t_num (k numeric PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_num (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('num', 'hk.t_num', 'ALTER TABLE hk.t_num ALTER COLUMN k TYPE bigint') \gset
SELECT matches(hk.outcome(:job), '^failed: the type of key column "k" of relation hk.t_num changed from numeric to bigint',
               'numeric -> bigint: the job fails');
SELECT matches(hk.done('hk.t_num'), '^0 twice, ', 'numeric -> bigint: no row done twice');

CREATE TABLE hk.t_int (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_int (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('int', 'hk.t_int', 'ALTER TABLE hk.t_int ALTER COLUMN k TYPE text') \gset
SELECT matches(hk.outcome(:job), '^failed: the type of key column "k" of relation hk.t_int changed from integer to text',
               'integer -> text: the job fails');
SELECT matches(hk.done('hk.t_int'), '^0 twice, ', 'integer -> text: no row done twice');

-- the key's collation changed (its index is rebuilt under the new one)
CREATE TABLE hk.t_coll (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_coll (k) SELECT 'key ' || lpad(g::text, 4, '0') FROM generate_series(1, 200) g;
CALL hk.run_case('coll', 'hk.t_coll', 'ALTER TABLE hk.t_coll ALTER COLUMN k TYPE text COLLATE "C"') \gset
SELECT matches(hk.outcome(:job), '^failed: key \(k\) of relation hk.t_coll lost the unique index iterjob job \d+ walks it by$',
               'collation changed: the job fails, naming the key and its index');
SELECT matches(hk.done('hk.t_coll'), '^0 twice, ', 'collation changed: no row done twice');

-- the unique index dropped; re-created identically; re-created with another operator class
CREATE TABLE hk.t_drop (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_drop (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('drop', 'hk.t_drop', 'ALTER TABLE hk.t_drop DROP CONSTRAINT t_drop_pkey') \gset
SELECT matches(hk.outcome(:job), '^failed: key \(k\) of relation hk.t_drop lost the unique index',
               'unique index dropped: the job fails');
SELECT matches(hk.done('hk.t_drop'), '^0 twice, ', 'unique index dropped: no row done twice');

CREATE TABLE hk.t_same (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_same (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('same', 'hk.t_same',
                   'CREATE UNIQUE INDEX t_same_k ON hk.t_same (k); ALTER TABLE hk.t_same DROP CONSTRAINT t_same_pkey') \gset
SELECT is(hk.outcome(:job), 'succeeded', 'unique index re-created identically: the job goes on and succeeds');
SELECT is(hk.done('hk.t_same'), '0 twice, 200 once', 'unique index re-created identically: every row exactly once');

CREATE TABLE hk.t_ops (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_ops (k) SELECT 'key ' || lpad(g::text, 4, '0') FROM generate_series(1, 200) g;
CALL hk.run_case('ops', 'hk.t_ops',
                   'CREATE UNIQUE INDEX t_ops_k ON hk.t_ops (k text_pattern_ops); ALTER TABLE hk.t_ops DROP CONSTRAINT t_ops_pkey') \gset
SELECT matches(hk.outcome(:job), '^failed: key \(k\) of relation hk.t_ops lost the unique index',
               'unique index re-created with another operator class: the job fails');
SELECT matches(hk.done('hk.t_ops'), '^0 twice, ', 'another operator class: no row done twice');

-- columns beside the key added and dropped
CREATE TABLE hk.t_cols (k int PRIMARY KEY, spare text, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_cols (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('cols', 'hk.t_cols',
                   'ALTER TABLE hk.t_cols ADD COLUMN extra int DEFAULT 7, DROP COLUMN spare') \gset
SELECT is(hk.outcome(:job), 'succeeded', 'columns beside the key added and dropped: the job succeeds');
SELECT is(hk.done('hk.t_cols'), '0 twice, 200 once', 'columns beside the key: every row exactly once');

-- a key column dropped
CREATE TABLE hk.t_col2 (a int, k int, n int NOT NULL DEFAULT 0, PRIMARY KEY (a, k));
INSERT INTO hk.t_col2 (a, k) SELECT g % 3, g FROM generate_series(1, 200) g;
CALL hk.run_case('col2', 'hk.t_col2', 'ALTER TABLE hk.t_col2 DROP COLUMN a') \gset
SELECT matches(hk.outcome(:job), '^failed: key column "a" of relation hk.t_col2 no longer exists$',
               'a key column dropped: the job fails, naming it');
SELECT matches(hk.done('hk.t_col2'), '^0 twice, ', 'a key column dropped: no row done twice');

-- the relation renamed, dropped, truncated
CREATE TABLE hk.t_ren (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_ren (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('ren', 'hk.t_ren', 'ALTER TABLE hk.t_ren RENAME TO t_ren2') \gset
SELECT matches(hk.outcome(:job), '^failed: relation hk.t_ren of iterjob job \d+ was renamed to hk.t_ren2$',
               'relation renamed: the job fails, naming both names');
SELECT matches(hk.done('hk.t_ren2'), '^0 twice, ', 'relation renamed: no row done twice');

CREATE TABLE hk.t_gone (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_gone (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('gone', 'hk.t_gone', 'DROP TABLE hk.t_gone') \gset
SELECT matches(hk.outcome(:job), '^failed: relation (hk.t_gone|with OID \d+) of iterjob job \d+ was dropped$',
               'relation dropped: the job fails');

CREATE TABLE hk.t_trunc (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_trunc (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('trunc', 'hk.t_trunc', 'TRUNCATE hk.t_trunc') \gset
SELECT is(hk.outcome(:job), 'succeeded', 'relation truncated: the job goes on over what is there, and succeeds');

-- a partition detached and another attached
CREATE TABLE hk.t_part (k int PRIMARY KEY, n int NOT NULL DEFAULT 0) PARTITION BY RANGE (k);
CREATE TABLE hk.t_part1 PARTITION OF hk.t_part FOR VALUES FROM (1) TO (101);
CREATE TABLE hk.t_part2 PARTITION OF hk.t_part FOR VALUES FROM (101) TO (201);
CREATE TABLE hk.t_part3 (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_part (k) SELECT g FROM generate_series(1, 200) g;
INSERT INTO hk.t_part3 (k) SELECT g FROM generate_series(101, 150) g;
CALL hk.run_case('part', 'hk.t_part',
                   'ALTER TABLE hk.t_part DETACH PARTITION hk.t_part2; ALTER TABLE hk.t_part ATTACH PARTITION hk.t_part3 FOR VALUES FROM (101) TO (201)') \gset
SELECT is(hk.outcome(:job), 'succeeded', 'partitions detached and attached: the job goes on and succeeds');
SELECT is(hk.done('hk.t_part'), '0 twice, 150 once', 'partitions: every row of the table as it is now exactly once');
SELECT is(hk.done('hk.t_part2'), '0 twice, 0 once', 'partitions: the detached one untouched past the cursor');

-- a query job whose key column changed type
CREATE TABLE hk.t_query (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.t_query (k) SELECT g FROM generate_series(1, 200) g;
CALL hk.run_case('query', 'hk.t_query', 'ALTER TABLE hk.t_query ALTER COLUMN k TYPE bigint', true) \gset
SELECT matches(hk.outcome(:job), '^failed: key column "k" of the query of iterjob job \d+ now has type bigint, not integer as when the job was enqueued$',
               'a query''s key column changed type: the job fails');
SELECT matches(hk.done('hk.t_query'), '^0 twice, ', 'a query''s key column: no row done twice');
SELECT ok(hk_no_restart(:'started'), 'schema changes: the server did not restart');

-- 6. an enum label renamed under a paused job's cursor ---------------------------

DO $$
BEGIN
    EXECUTE (SELECT format('CREATE TYPE hk.step AS ENUM (%s)',
                           string_agg(quote_literal('s' || lpad(g::text, 3, '0')), ', ' ORDER BY g))
               FROM generate_series(1, 100) g);
END
$$;
CREATE TABLE hk.steps (k hk.step PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hk.steps (k) SELECT unnest(enum_range(NULL::hk.step));
INSERT INTO hk.brake VALUES ('enum', true);
SELECT iterjob.enqueue('hk.steps', 'UPDATE hk.steps SET n = n + 1 WHERE k = ANY($1)',
                       batch_size => 2, batch_pause => '100 ms', name => 'hk_enum',
                       health_check => hk.brake_check('enum')) AS j_enum \gset
SELECT ok(hk.held(:j_enum), 'enum cursor: the job is held after its first batches');
SELECT is(iterjob.pause(:j_enum), 'paused', 'enum cursor: paused');
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :j_enum)),
          'enum cursor: its worker left it');
SELECT (cursor->>'inner_cursor') AS label FROM iterjob.task_progress WHERE job_id = :j_enum \gset
SELECT format('ALTER TYPE hk.step RENAME VALUE %L TO %L', :'label', :'label' || '_renamed') AS rename \gset
:rename;
SELECT is(iterjob.resume(:j_enum), 'running', 'enum cursor: resumed after its label was renamed');
SELECT is(iterjob.wait(:j_enum, '60 s'), 'failed', 'a cursor that no longer reads back: the job fails');
SELECT is((SELECT sqlstate || ' ' || (context LIKE '%reading back the cursor "' || :'label' || '" of instance 0 of iterjob job ' || :j_enum || ' (key column "k")%')
             FROM iterjob.errors WHERE job_id = :j_enum),
          '22P02 true', 'its error says which cursor of which instance and job could not be read back, once');
SELECT is((SELECT count(*) FROM hk.steps WHERE n > 1), 0::bigint, 'enum cursor: no row done twice');
SELECT ok(hk_no_restart(:'started'), 'enum cursor: the server did not restart');

RESET ROLE;
SELECT * FROM finish();
