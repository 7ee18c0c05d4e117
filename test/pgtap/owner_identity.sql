-- owner_identity.sql: nothing a job owner defines runs with more rights
-- than the owner's, and nothing one owner's SQL leaves in a worker reaches
-- another owner's job.
--
-- Every escalation attempt calls own_s.grab(what), alice's function that
-- tries ALTER ROLE own_alice SUPERUSER and logs who ran it and what
-- happened; each section checks that it ran, always as own_alice, and
-- that own_alice is still not a superuser.
--
--    1. an enum key whose cast to json escalates (the checkpoint)
--    2. a domain key whose CHECK escalates, through pause/resume and a
--       killed worker (the cursor read back)
--    3. a btree operator class whose comparison function escalates
--    4. triggers on the iterated table, deferred ones included (commit)
--    5. the filter, action and both hooks
--    6. recount, resume and retry by an iterjob_admin member and by a
--       superuser
--    7. session state: pg_advisory_unlock_all() in an action; one process
--       per owner
--    8. enqueue(query => ...) without relation
--    9. hooks commit only with their state change (cancel, pause races)
--   10. settings an action changes are undone before the next statement
--   11. DROP EXTENSION and CREATE EXTENSION while a worker sleeps
--
-- Autocommit, as the superuser postgres, acting as other roles with SET
-- ROLE; run by test/pgtap-exec.sh in a fresh database.

SET client_min_messages = warning;

DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('own_alice', 'own_bob', 'own_boss')
    LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
CREATE ROLE own_alice LOGIN IN ROLE iterjob_user;
CREATE ROLE own_bob LOGIN IN ROLE iterjob_user;
CREATE ROLE own_boss LOGIN IN ROLE iterjob_admin;
CREATE SCHEMA own_s AUTHORIZATION own_alice;
GRANT USAGE ON SCHEMA own_s TO own_bob;

CREATE TABLE own_log (what text, who name, outcome text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON own_log TO PUBLIC;

SELECT plan(53);

SET ROLE own_alice;
CREATE FUNCTION own_s.grab(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE own_alice SUPERUSER';
        INSERT INTO public.own_log (what, who, outcome) VALUES (what, current_user, 'escalated');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.own_log (what, who, outcome) VALUES (what, current_user, SQLERRM);
    END;
    RETURN true;
END
$$;
RESET ROLE;

-- 'ran N times, always as own_alice, never escalated' for attempts of what
-- logged after since
CREATE FUNCTION own_attempts(p_what text, since timestamptz DEFAULT '-infinity')
RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN count(*) = 0 THEN 'never ran'
                WHEN bool_and(who = 'own_alice' AND outcome <> 'escalated')
                     AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'own_alice')
                THEN 'ran as own_alice, refused'
                ELSE 'ESCALATED: ' || string_agg(DISTINCT who || ' ' || outcome, '; ') END
      FROM own_log WHERE what = p_what AND at > since
$$;

CREATE FUNCTION own_rows(tbl text, cond text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', tbl, cond) INTO r;
    RETURN r;
END
$$;

-- 1. an enum key whose cast to json escalates ------------------------------------

SET ROLE own_alice;
CREATE TYPE own_s.color AS ENUM ('c01', 'c02', 'c03', 'c04', 'c05', 'c06', 'c07', 'c08',
                                 'c09', 'c10', 'c11', 'c12', 'c13', 'c14', 'c15', 'c16');
CREATE FUNCTION own_s.color_json(own_s.color) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM own_s.grab('cast');
    RETURN to_json($1::text);
END
$$;
CREATE CAST (own_s.color AS json) WITH FUNCTION own_s.color_json(own_s.color);
CREATE TABLE own_s.paint (c own_s.color PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.paint (c) SELECT unnest(enum_range(NULL::own_s.color));
SELECT iterjob.enqueue('own_s.paint', 'UPDATE own_s.paint SET n = n + 1 WHERE c = ANY($1)',
                       batch_size => 3) AS j_enum \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_enum, '60 s'), 'succeeded', 'enum key with a cast to json: the job succeeds');
SELECT is(own_rows('own_s.paint', 'n <> 1'), 0::bigint, 'enum key: every row exactly once');
SELECT is(own_attempts('cast'), 'ran as own_alice, refused',
          'enum key: the checkpoint''s to_jsonb ran the cast as the owner, who stayed no superuser');
SELECT is((SELECT cursor->'inner_cursor' FROM iterjob.task_progress WHERE job_id = :j_enum),
          '"c16"'::jsonb, 'enum key: the cursor is the cast''s json form of the last key');

-- 2. a domain key whose CHECK escalates ---------------------------------------

SET ROLE own_alice;
CREATE DOMAIN own_s.code AS int CHECK (own_s.grab('domain'));
CREATE TABLE own_s.codes (k own_s.code PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.codes (k) SELECT g FROM generate_series(1, 60) g;
SELECT iterjob.enqueue('own_s.codes', 'UPDATE own_s.codes SET n = n + 1 WHERE k = ANY($1)',
                       batch_size => 5, batch_pause => '150 ms') AS j_domain \gset
RESET ROLE;
SELECT clock_timestamp() AS domain_start \gset
SELECT ok(tap_wait_until(format('(SELECT rows_done FROM iterjob.job_progress WHERE job_id = %s) >= 10', :j_domain)),
          'domain key: the job has committed batches');
SELECT is(iterjob.pause(:j_domain), 'paused', 'domain key: paused');
SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0 AND NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)',
                                :j_domain, :j_domain)),
          'domain key: its worker left it');
SELECT iterjob.resume(:j_domain) AS resumed \gset
-- kill the worker that took it up again: its cursor is read back once more
SELECT ok(tap_wait_until(format('EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :j_domain)),
          'domain key: resumed by a worker');
SELECT pg_terminate_backend(pid) FROM iterjob.workers WHERE job_id = :j_domain \g /dev/null
SELECT is(iterjob.wait(:j_domain, '60 s'), 'succeeded', 'domain key: the job succeeds after a pause and a killed worker');
SELECT is(own_rows('own_s.codes', 'n <> 1'), 0::bigint, 'domain key: every row exactly once');
SELECT is(own_attempts('domain', :'domain_start'), 'ran as own_alice, refused',
          'domain key: reading the cursor back ran the CHECK as the owner, who stayed no superuser');

-- 3. an operator class whose comparison function escalates ---------------------

-- (a btree comparison may not raise and catch errors: it escalates only
-- when it runs as a superuser, and logs either way)
SET ROLE own_alice;
CREATE FUNCTION own_s.grab_cmp(int, int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER ROLE own_alice SUPERUSER;
        INSERT INTO public.own_log (what, who, outcome) VALUES ('opclass', current_user, 'escalated');
    ELSE
        INSERT INTO public.own_log (what, who, outcome) VALUES ('opclass', current_user, 'no superuser');
    END IF;
    RETURN btint4cmp($1, $2);
END
$$;
RESET ROLE;
-- (CREATE OPERATOR CLASS needs a superuser; the function in it is alice's)
CREATE OPERATOR CLASS own_grab_ops FOR TYPE int USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 own_s.grab_cmp(int, int);
SET ROLE own_alice;
CREATE TABLE own_s.sorted (k int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.sorted (k) SELECT g FROM generate_series(1, 40) g;
CREATE UNIQUE INDEX sorted_grab ON own_s.sorted (k own_grab_ops);
SELECT clock_timestamp() AS opclass_start \gset
SELECT iterjob.enqueue('own_s.sorted', 'UPDATE own_s.sorted SET n = n + 1 WHERE k = ANY($1)',
                       key => 'k', batch_size => 6, partition => 'range', instances => 2) AS j_opclass \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_opclass, '60 s'), 'succeeded', 'escalating operator class: the job succeeds');
SELECT is(own_rows('own_s.sorted', 'n <> 1'), 0::bigint, 'escalating operator class: every row exactly once');
SELECT is(own_attempts('opclass', :'opclass_start'), 'ran as own_alice, refused',
          'escalating operator class: its comparisons ran as the owner, who stayed no superuser');

-- 4. triggers on the iterated table ------------------------------------------------

SET ROLE own_alice;
CREATE TABLE own_s.trig (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.trig (id) SELECT g FROM generate_series(1, 30) g;
CREATE FUNCTION own_s.trig_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM own_s.grab('trigger');
    RETURN NEW;
END
$$;
CREATE FUNCTION own_s.trig_deferred() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM own_s.grab('deferred trigger');
    RETURN NULL;
END
$$;
CREATE TRIGGER trig_before BEFORE UPDATE ON own_s.trig FOR EACH ROW EXECUTE FUNCTION own_s.trig_before();
CREATE CONSTRAINT TRIGGER trig_deferred AFTER UPDATE ON own_s.trig
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION own_s.trig_deferred();
SELECT iterjob.enqueue('own_s.trig', 'UPDATE own_s.trig SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10) AS j_trig \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_trig, '60 s'), 'succeeded', 'triggers: the job succeeds');
SELECT is(own_rows('own_s.trig', 'n <> 1'), 0::bigint, 'triggers: every row exactly once');
SELECT is(own_attempts('trigger'), 'ran as own_alice, refused',
          'a BEFORE UPDATE trigger ran as the owner, who stayed no superuser');
SELECT is(own_attempts('deferred trigger'), 'ran as own_alice, refused',
          'a deferred constraint trigger ran as the owner too (at the end of the action)');

-- 5. filter, action and hooks ----------------------------------------------------------

SET ROLE own_alice;
CREATE TABLE own_s.items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.items (id) SELECT g FROM generate_series(1, 20) g;
SELECT iterjob.enqueue('own_s.items',
                       $$UPDATE own_s.items SET n = n + 1 WHERE id = ANY($1) AND own_s.grab('action')$$,
                       filter => $$own_s.grab('filter')$$,
                       on_complete => $$SELECT own_s.grab('on_complete')$$,
                       on_instance_complete => $$SELECT own_s.grab('on_instance_complete')$$,
                       instances => 2, batch_size => 4) AS j_sql \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_sql, '60 s'), 'succeeded', 'filter, action, hooks: the job succeeds');
SELECT is(own_rows('own_s.items', 'n <> 1'), 0::bigint, 'filter, action, hooks: every row exactly once');
SELECT is(own_attempts('filter'), 'ran as own_alice, refused', 'the filter ran as the owner');
SELECT is(own_attempts('action'), 'ran as own_alice, refused', 'the action ran as the owner');
SELECT is(own_attempts('on_instance_complete'), 'ran as own_alice, refused', 'on_instance_complete ran as the owner');
SELECT is(own_attempts('on_complete'), 'ran as own_alice, refused', 'on_complete ran as the owner');

-- 6. recount, resume and retry by others -------------------------------------------

SET ROLE own_alice;
CREATE TABLE own_s.steer (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.steer (id) SELECT g FROM generate_series(1, 30) g;
CREATE TABLE own_s.go (ok boolean);
BEGIN;
SELECT iterjob.enqueue('own_s.steer',
                       $$UPDATE own_s.steer SET n = n + 1 WHERE id = ANY($1)
                           AND 1 / (SELECT count(*) FROM own_s.go)::int = 1$$,
                       filter => $$own_s.grab('steered filter')$$,
                       batch_size => 10, max_attempts => 1) AS j_steer \gset
SELECT iterjob.pause(:j_steer) AS paused \gset
COMMIT;
RESET ROLE;
SELECT clock_timestamp() AS steer_start \gset
SET ROLE own_boss;
SELECT is(iterjob.recount(:j_steer), 30::bigint, 'an iterjob_admin member recounts alice''s job');
RESET ROLE;
SELECT is(own_attempts('steered filter', :'steer_start'), 'ran as own_alice, refused',
          'recount by an iterjob_admin member ran the filter as the owner');
SELECT clock_timestamp() AS steer_start \gset
SELECT is(iterjob.recount(:j_steer), 30::bigint, 'a superuser recounts alice''s job');
SELECT is(own_attempts('steered filter', :'steer_start'), 'ran as own_alice, refused',
          'recount by a superuser ran the filter as the owner');
SELECT clock_timestamp() AS steer_start \gset
SET ROLE own_boss;
SELECT iterjob.resume(:j_steer) AS resumed \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_steer, '60 s'), 'failed', 'resumed by an admin, the job fails (its action divides by zero)');
SELECT is((SELECT last_error FROM iterjob.job WHERE id = :j_steer), 'division by zero',
          'resumed by an admin, the job failed with its own error');
INSERT INTO own_s.go VALUES (true);
SELECT clock_timestamp() AS steer_start \gset
SELECT iterjob.retry(:j_steer) AS retried \gset
SELECT is(iterjob.wait(:j_steer, '60 s'), 'succeeded', 'retried by a superuser, the job succeeds');
SELECT is(own_rows('own_s.steer', 'n <> 1'), 0::bigint, 'retried job: every row exactly once');
SELECT is(own_attempts('steered filter', :'steer_start'), 'ran as own_alice, refused',
          'after a retry by a superuser, the filter ran as the owner');

-- 7. session state -------------------------------------------------------------------

-- pg_advisory_unlock_all() in every batch, while other jobs make workers claim
CREATE TABLE own_unlock (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_unlock (id) SELECT g FROM generate_series(1, 2000) g;
GRANT SELECT, UPDATE ON own_unlock TO own_alice, own_bob;
SET ROLE own_alice;
SELECT iterjob.enqueue('public.own_unlock',
                       $$WITH u AS (SELECT pg_advisory_unlock_all())
                         UPDATE public.own_unlock SET n = n + 1 FROM u WHERE id = ANY($1)$$,
                       instances => 4, batch_size => 20) AS j_unlock \gset
RESET ROLE;
CREATE TABLE own_filler (id int PRIMARY KEY);
INSERT INTO own_filler SELECT g FROM generate_series(1, 200) g;
GRANT SELECT ON own_filler TO own_bob;
SET ROLE own_bob;
SELECT iterjob.enqueue('public.own_filler', 'SELECT pg_sleep(0.01), cardinality($1)',
                       instances => 2, batch_size => 10)
  FROM generate_series(1, 3) \g /dev/null
RESET ROLE;
SELECT is(iterjob.wait(:j_unlock, '120 s'), 'succeeded', 'pg_advisory_unlock_all() in the action: the job succeeds');
SELECT is(own_rows('own_unlock', 'n <> 1'), 0::bigint,
          'pg_advisory_unlock_all() in the action: every row exactly once (no task taken twice)');

-- jobs of two owners, queued together: no process runs both owners' SQL,
-- and an advisory lock alice's action keeps is not in any process of bob's
CREATE TABLE own_pids (who name, pid int, lock boolean);
GRANT INSERT ON own_pids TO own_alice, own_bob;
CREATE TABLE own_small (id int PRIMARY KEY);
INSERT INTO own_small SELECT g FROM generate_series(1, 30) g;
GRANT SELECT ON own_small TO own_alice, own_bob;
BEGIN;
SET LOCAL ROLE own_alice;
SELECT iterjob.enqueue('public.own_small',
                       $$INSERT INTO public.own_pids SELECT current_user, pg_backend_pid(),
                             pg_try_advisory_lock(4711) FROM (SELECT cardinality($1)) s$$,
                       batch_size => 10)
  FROM generate_series(1, 4) \g /dev/null
SET LOCAL ROLE own_bob;
SELECT iterjob.enqueue('public.own_small',
                       $$INSERT INTO public.own_pids SELECT current_user, pg_backend_pid(),
                             EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 4711
                                        AND pid = pg_backend_pid())
                           FROM (SELECT cardinality($1)) s$$,
                       batch_size => 10)
  FROM generate_series(1, 4) \g /dev/null
COMMIT;
SELECT ok(tap_wait_until($$(SELECT count(*) FROM own_pids) = 24$$, '60 s'),
          'two owners'' jobs: every batch ran');
SELECT is((SELECT count(*) FROM (SELECT pid FROM own_pids GROUP BY pid HAVING count(DISTINCT who) > 1) s),
          0::bigint, 'no worker process ran both alice''s and bob''s SQL');
SELECT is((SELECT count(*) FROM own_pids WHERE who = 'own_bob' AND lock), 0::bigint,
          'no process of bob''s held the advisory lock alice''s action took');

-- 8. enqueue(query => ...) without relation -------------------------------------------

CREATE TABLE own_q (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_q (id) SELECT g FROM generate_series(1, 50) g;
SELECT iterjob.enqueue(query => 'SELECT id FROM own_q WHERE id % 2 = 0', key => 'id',
                       action => 'UPDATE own_q SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 7) AS j_query \gset
SELECT is(iterjob.wait(:j_query, '60 s'), 'succeeded', 'enqueue(query => ..., key => ..., action => ...) without relation runs');
SELECT is(own_rows('own_q', 'n = 1') || ' even, ' || own_rows('own_q', 'n <> (1 - id % 2)') || ' wrong',
          '25 even, 0 wrong', 'the query job processed exactly the rows of its query, once');
SELECT is((SELECT count(*) FROM iterjob.preview(query => 'SELECT id FROM own_q', key => 'id',
                                                action => 'SELECT 1', instances => 2)),
          2::bigint, 'preview(query => ..., key => ..., action => ...) without relation');

-- 9. hooks commit only with their state change ------------------------------------------

-- The hook waits on an advisory lock the test holds; meanwhile a cancel (or
-- a pause) must not slip in between the instance's end and its hook.
CREATE TABLE own_race (id int PRIMARY KEY);
INSERT INTO own_race SELECT g FROM generate_series(1, 10) g;
CREATE TABLE own_hooks (job bigint, instance int);
CREATE FUNCTION own_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL lock_timeout = '300ms';
    EXECUTE sql;
    RETURN 'done';
EXCEPTION WHEN lock_not_available THEN
    RETURN 'waited for the ending instance';
END
$$;
SELECT pg_advisory_lock(777) \g /dev/null
SELECT iterjob.enqueue('own_race', 'SELECT cardinality($1)', batch_size => 100, lock_timeout => '60s',
                       on_instance_complete => $$WITH l AS (SELECT pg_advisory_xact_lock(777))
                                                INSERT INTO own_hooks SELECT job_id, $1 FROM l,
                                                  (SELECT max(id) AS job_id FROM iterjob.job) j$$) AS j_race \gset
SELECT ok(tap_wait_until($$EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 777 AND NOT granted)$$),
          'cancel race: the ending instance waits in its hook');
SELECT own_try(format('SELECT iterjob.cancel(%s)', :j_race)) AS cancel_outcome \gset
SELECT pg_advisory_unlock(777) \g /dev/null
SELECT iterjob.wait(:j_race, '60 s') AS race_state \gset
SELECT is(:'race_state' || ' with ' || (SELECT count(*) FROM own_hooks WHERE job = :j_race) || ' hook run',
          CASE WHEN :'cancel_outcome' = 'done' THEN 'cancelled with 0 hook run' ELSE 'succeeded with 1 hook run' END,
          'cancel race: the hook committed if and only if the instance succeeded');

SELECT pg_advisory_lock(777) \g /dev/null
SELECT iterjob.enqueue('own_race', 'SELECT cardinality($1)', batch_size => 100, lock_timeout => '60s',
                       on_instance_complete => $$WITH l AS (SELECT pg_advisory_xact_lock(777))
                                                INSERT INTO own_hooks SELECT job_id, $1 FROM l,
                                                  (SELECT max(id) AS job_id FROM iterjob.job) j$$) AS j_race \gset
SELECT ok(tap_wait_until($$EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 777 AND NOT granted)$$),
          'pause race: the ending instance waits in its hook');
SELECT own_try(format('SELECT iterjob.pause(%s), iterjob.resume(%s)', :j_race, :j_race)) AS pause_outcome \gset
SELECT pg_advisory_unlock(777) \g /dev/null
SELECT iterjob.wait(:j_race, '60 s') AS race_state \gset
SELECT is(:'race_state' || ' with ' || (SELECT count(*) FROM own_hooks WHERE job = :j_race) || ' hook run',
          'succeeded with 1 hook run',
          'pause and resume race: the instance ended once and its hook ran once');

-- 10. settings an action changes are undone before the next statement ------------------

-- Every batch runs the filter (keyset query), the action, the key's cast
-- to json (its cursor), and at the end the instance's hook, all in one
-- process; the action sets work_mem and search_path for the session and
-- statement_timeout for the transaction.  Each statement notes what it
-- sees, in order.
CREATE TABLE own_settings (seq serial, stmt text, pid int, work_mem text, search_path text,
                           statement_timeout text);
GRANT INSERT ON own_settings TO own_alice;
GRANT USAGE ON SEQUENCE own_settings_seq_seq TO own_alice;
SET ROLE own_alice;
CREATE FUNCTION own_s.note(stmt text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.own_settings (stmt, pid, work_mem, search_path, statement_timeout)
    VALUES (stmt, pg_backend_pid(), current_setting('work_mem'), current_setting('search_path'),
            current_setting('statement_timeout'));
    RETURN true;
END
$$;
CREATE FUNCTION own_s.meddle() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM own_s.note('action');
    PERFORM set_config('work_mem', '77MB', false);
    PERFORM set_config('search_path', 'own_s', false);
    PERFORM set_config('statement_timeout', '77s', true);
    PERFORM own_s.note('action, after setting');
    RETURN true;
END
$$;
CREATE TYPE own_s.shade AS ENUM ('s01', 's02', 's03', 's04', 's05', 's06', 's07', 's08', 's09');
CREATE FUNCTION own_s.shade_json(own_s.shade) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM own_s.note('cast');
    RETURN to_json($1::text);
END
$$;
CREATE CAST (own_s.shade AS json) WITH FUNCTION own_s.shade_json(own_s.shade);
CREATE TABLE own_s.shades (c own_s.shade PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_s.shades (c) SELECT unnest(enum_range(NULL::own_s.shade));
SELECT iterjob.enqueue('own_s.shades',
                       'WITH m AS (SELECT own_s.meddle()) UPDATE own_s.shades SET n = n + 1 FROM m WHERE c = ANY($1)',
                       filter => 'own_s.note(''keyset'')', batch_size => 3,
                       on_instance_complete => 'SELECT own_s.note(''hook'') WHERE $1 IS NOT NULL') AS j_settings \gset
RESET ROLE;
SELECT is(iterjob.wait(:j_settings, '60 s') || ', ' || own_rows('own_s.shades', 'n <> 1') || ' rows not once',
          'succeeded, 0 rows not once', 'an action that changes settings: the job succeeds, every row once');
SELECT is((SELECT string_agg(DISTINCT work_mem || ' ' || search_path || ' ' || statement_timeout, '; ')
             FROM own_settings WHERE stmt = 'action, after setting'),
          '77MB own_s 77s', 'the action''s settings took effect within the action');
SELECT is((SELECT count(*) FROM own_settings
            WHERE stmt <> 'action, after setting'
              AND (work_mem = '77MB' OR search_path = 'own_s' OR statement_timeout = '77s')),
          0::bigint, 'no later filter, action, cast to json or hook saw them');
SELECT is((SELECT string_agg(DISTINCT s.stmt, ', ' ORDER BY s.stmt)
             FROM own_settings a JOIN own_settings s ON s.pid = a.pid AND s.seq > a.seq
            WHERE a.stmt = 'action, after setting' AND s.stmt <> 'action, after setting'),
          'action, cast, hook, keyset',
          'each of them ran after an action had changed the settings, in the same process');

-- 11. DROP EXTENSION and CREATE EXTENSION while a worker sleeps ---------------------------

CREATE TABLE own_old (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_old (id) SELECT g FROM generate_series(1, 100) g;
SELECT iterjob.enqueue('own_old', 'UPDATE own_old SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10, batch_pause => '2 s') AS j_old \gset
SELECT ok(tap_wait_until($$(SELECT count(*) FROM own_old WHERE n = 1) >= 10$$),
          'drop and create: the old job committed a batch, its worker sleeps in its pause');
SELECT count(*) AS old_done FROM own_old WHERE n = 1 \gset
DROP EXTENSION iterjob CASCADE;
CREATE EXTENSION iterjob;
CREATE TABLE own_new (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO own_new (id) SELECT g FROM generate_series(1, 100) g;
SELECT iterjob.enqueue('own_new', 'UPDATE own_new SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 1000) AS j_new \gset
SELECT is(iterjob.wait(:j_new, '60 s'), 'succeeded', 'drop and create: a job of the new extension succeeds');
SELECT pg_sleep(3) \g /dev/null
SELECT is(own_rows('own_old', 'n = 1'), :old_done::bigint,
          'drop and create: the old job''s worker ran no batch after the drop');
SELECT is((SELECT rows_done || ' rows, cursor ' || (cursor->'inner_cursor')::text
             FROM iterjob.task WHERE job_id = :j_new),
          '100 rows, cursor 100', 'drop and create: nothing of the old job was written into the new one''s task');

SELECT * FROM finish();

DROP SCHEMA own_s CASCADE;
DROP OWNED BY own_alice, own_bob, own_boss CASCADE;
DROP ROLE own_alice;
DROP ROLE own_bob;
DROP ROLE own_boss;
