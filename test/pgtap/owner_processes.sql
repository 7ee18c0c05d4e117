-- owner_processes.sql: the SQL a job's owner wrote runs only in processes
-- bound to the owner, never in the session of the role that steers the
-- job.  iterjob.recount() counts in a worker of the owner's:
--
--    1. an iterjob_admin member recounts a superuser's job (the README's
--       enqueue(query => ...) recipe) with temporary objects planted in its
--       own session: a temporary view named like the query's table, whose
--       rows call a temporary function, and a temporary domain named like
--       the type the filter casts to, whose CHECK calls it too.  The count
--       is the real one and nothing planted runs: the function would log
--       that it ran, as whom, and try to make the admin a superuser.
--    2. a superuser recounts an ordinary role's job with a temporary view
--       of its own named like that job's table: the count is the real one,
--       nothing planted runs.
--    3. the owner's filter sees the owner's identity, not the caller's
--       session: session_user, current_user, a custom setting and a
--       prepared statement of the caller's, the caller's backend
--    4. a recount cancelled by its caller (statement_timeout) leaves no
--       worker; the worker's error reaches the caller with its SQLSTATE and
--       message; a worker that waits for a lock the caller's transaction
--       holds fails the call; a job enqueued in the calling transaction is
--       refused
--
-- Autocommit, as the superuser postgres, acting as other roles with SET
-- ROLE; run by test/pgtap-exec.sh in a fresh database.  Every job is
-- enqueued paused (in the enqueue's transaction): no iteration worker runs
-- a filter, only recount's worker does.

SET client_min_messages = warning;

DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('rc_alice', 'rc_boss')
    LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
CREATE ROLE rc_alice LOGIN IN ROLE iterjob_user;
CREATE ROLE rc_boss LOGIN IN ROLE iterjob_admin;
CREATE SCHEMA rc_alice_s AUTHORIZATION rc_alice;

-- what planted code logs when it runs, and what alice's filter sees
CREATE TABLE rc_planted_log (what text, who name, superuser boolean);
GRANT INSERT, SELECT ON rc_planted_log TO PUBLIC;
CREATE TABLE rc_seen (label text, session_user_seen name, current_user_seen name,
                      setting text, prepared bigint, pid int);
GRANT INSERT, SELECT ON rc_seen TO PUBLIC;

-- "The error of sql: SQLSTATE: message | context", or "no error"; a
-- cancel too (which WHEN OTHERS, and so throws_ok, does not catch).
CREATE FUNCTION rc_error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    ctx text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION
    WHEN query_canceled THEN
        GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
        RETURN SQLSTATE || ': ' || SQLERRM || ' | ' || ctx;
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
        RETURN SQLSTATE || ': ' || SQLERRM || ' | ' || ctx;
END
$$;

SELECT plan(21);

-- 1. An admin's planted objects, a superuser's job ----------------------------

CREATE TABLE rc_items (id bigint PRIMARY KEY, v int NOT NULL);
INSERT INTO rc_items SELECT g, g % 3 FROM generate_series(1, 30) g;
CREATE DOMAIN rc_level AS int CHECK (VALUE >= 0);

BEGIN;
SELECT iterjob.enqueue(query => 'SELECT id, v FROM rc_items', key => 'id',
                       action => 'SELECT 1', filter => 'v::rc_level >= 0',
                       instances => 2) AS su_job \gset
SELECT iterjob.pause(:su_job) AS paused \gset
COMMIT;

SET ROLE rc_boss;
CREATE FUNCTION pg_temp.rc_planted(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.rc_planted_log
    SELECT what, current_user, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user;
    BEGIN
        EXECUTE 'ALTER ROLE rc_boss SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN true;
END
$$;
CREATE TEMP VIEW rc_items AS
SELECT g::bigint AS id, 0 AS v FROM generate_series(1, 5) g WHERE pg_temp.rc_planted('temporary view');
CREATE DOMAIN pg_temp.rc_level AS int CHECK (pg_temp.rc_planted('temporary domain'));
SELECT is(iterjob.recount(:su_job), 30::bigint,
          'an iterjob_admin member with a temporary view named like the job''s table recounts the superuser''s job: the real count');
RESET ROLE;
SELECT is((SELECT array_agg(rows_total ORDER BY instance) FROM iterjob.task WHERE job_id = :su_job),
          ARRAY[15, 15]::bigint[],
          '... and each instance''s real count (modulo 2 of the table''s 30 keys)');
SELECT is((SELECT coalesce(string_agg(what || ' as ' || who || CASE WHEN superuser THEN ' (superuser)' ELSE '' END, ', '), 'nothing')
             FROM rc_planted_log),
          'nothing',
          'nothing the admin planted in its session ran (neither the temporary view''s function nor the temporary domain''s check)');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'rc_boss'),
          'the admin did not become a superuser');

-- 2. A superuser's temporary view, an ordinary role's job ---------------------

SET ROLE rc_alice;
CREATE TABLE rc_alice_s.rc_alice_items (id bigint PRIMARY KEY);
INSERT INTO rc_alice_s.rc_alice_items SELECT generate_series(1, 12);
BEGIN;
SET LOCAL search_path = rc_alice_s;
SELECT iterjob.enqueue(query => 'SELECT id FROM rc_alice_items', key => 'id',
                       action => 'SELECT 1') AS alice_job \gset
SELECT iterjob.pause(:alice_job) AS paused \gset
COMMIT;
RESET ROLE;

CREATE FUNCTION pg_temp.rc_su_planted() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.rc_planted_log VALUES ('the superuser''s temporary view', current_user, NULL);
    RETURN true;
END
$$;
CREATE TEMP VIEW rc_alice_items AS
SELECT g::bigint AS id FROM generate_series(1, 3) g WHERE pg_temp.rc_su_planted();
GRANT SELECT ON rc_alice_items TO PUBLIC;
SELECT is(iterjob.recount(:alice_job), 12::bigint,
          'a superuser with a temporary view named like alice''s table recounts her job: the real count');
SELECT is((SELECT count(*) FROM rc_planted_log), 0::bigint,
          '... and the superuser''s temporary view did not run');
DROP VIEW pg_temp.rc_alice_items;

-- 3. What alice's filter sees --------------------------------------------------

SET ROLE rc_alice;
CREATE TABLE rc_alice_s.seen_items (id bigint PRIMARY KEY);
INSERT INTO rc_alice_s.seen_items SELECT generate_series(1, 20);
CREATE FUNCTION rc_alice_s.observe(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF id = 1 THEN
        INSERT INTO public.rc_seen
        SELECT current_setting('rc.label', true), session_user, current_user,
               current_setting('rc.secret', true),
               (SELECT count(*) FROM pg_prepared_statements), pg_backend_pid();
    END IF;
    RETURN true;
END
$$;
BEGIN;
SELECT iterjob.enqueue('rc_alice_s.seen_items', 'SELECT 1',
                       filter => 'rc_alice_s.observe(id)') AS seen_job \gset
SELECT iterjob.pause(:seen_job) AS paused \gset
COMMIT;
RESET ROLE;

SET ROLE rc_boss;
SET rc.label = 'recount by the admin';
SET rc.secret = 'the admin''s secret';
PREPARE rc_admin_statement AS SELECT 1;
SELECT pg_backend_pid() AS caller_pid \gset
SELECT is(iterjob.recount(:seen_job), 20::bigint, 'the admin recounts alice''s observing job');
RESET ROLE;
SELECT is((SELECT count(*) FROM rc_seen), 1::bigint, '... and her filter looked once (key 1)');
SELECT is((SELECT (session_user_seen, current_user_seen)::text FROM rc_seen),
          '(rc_alice,rc_alice)',
          'the admin''s recount: alice''s filter ran as alice, also as session_user (not the caller''s session user)');
SELECT is((SELECT (label, setting, prepared)::text FROM rc_seen), '(,,0)',
          'the admin''s recount: alice''s filter saw none of the caller''s settings or prepared statements');
SELECT isnt((SELECT pid FROM rc_seen), :caller_pid,
            'the admin''s recount: alice''s filter ran in another process than the caller''s');
SELECT is((SELECT current_setting('rc.secret')), 'the admin''s secret',
          '(the caller''s setting is still there)');
DEALLOCATE rc_admin_statement;
RESET rc.label;
RESET rc.secret;
TRUNCATE rc_seen;

SET rc.label = 'recount by the superuser';
SET rc.secret = 'the superuser''s secret';
PREPARE rc_su_statement AS SELECT 1;
SELECT is(iterjob.recount(:seen_job), 20::bigint, 'the superuser recounts alice''s observing job');
SELECT is((SELECT (session_user_seen, current_user_seen, label, setting, prepared)::text FROM rc_seen),
          '(rc_alice,rc_alice,,,0)',
          'the superuser''s recount: alice''s filter ran as alice and saw nothing of the caller''s session');
DEALLOCATE rc_su_statement;
RESET rc.label;
RESET rc.secret;

-- 4. Cancel, errors, locks, an enqueue in the same transaction ----------------

-- alice's filter waits for an advisory lock this session holds (a process
-- of its own waits; this session would not)
SET ROLE rc_alice;
CREATE FUNCTION rc_alice_s.wait_for_go(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(424242);
    RETURN true;
END
$$;
BEGIN;
SELECT iterjob.enqueue('rc_alice_s.seen_items', 'SELECT 1',
                       filter => 'rc_alice_s.wait_for_go(id)') AS blocked_job \gset
SELECT iterjob.pause(:blocked_job) AS paused \gset
COMMIT;
CREATE TABLE rc_alice_s.zero (id bigint PRIMARY KEY, v int NOT NULL);
INSERT INTO rc_alice_s.zero VALUES (1, 0);
BEGIN;
SELECT iterjob.enqueue('rc_alice_s.zero', 'SELECT 1', filter => '1 / v = 1') AS zero_job \gset
SELECT iterjob.pause(:zero_job) AS paused \gset
COMMIT;
RESET ROLE;

SELECT pg_advisory_lock(424242) AS locked \gset
SET statement_timeout = '1s';
SELECT alike(rc_error_of(format('SELECT iterjob.recount(%s)', :blocked_job)),
            '57014: canceling statement due to statement timeout | %',
            'a recount whose worker waits for a lock is cancelled by the caller''s statement_timeout');
RESET statement_timeout;
SELECT is((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob recount'), 0::bigint,
          '... and once the call has failed, no recount worker is left');
SELECT pg_advisory_unlock(424242) AS unlocked \gset

SELECT alike(rc_error_of(format('SELECT iterjob.recount(%s)', :zero_job)),
            format('22012: division by zero | %%iterjob.recount() of job %s, counting as the job''s owner%%', :zero_job),
            'an error in the worker reaches the caller with its SQLSTATE and message, and says where it came from');
SELECT is((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob recount'), 0::bigint,
          '... and no recount worker is left');

BEGIN;
LOCK TABLE rc_alice_s.seen_items IN ACCESS EXCLUSIVE MODE;
SELECT throws_ok(format('SELECT iterjob.recount(%s)', :seen_job), '40P01',
                 format('iterjob.recount() of job %s waits for a lock that its caller''s transaction holds', :seen_job),
                 'a recount whose worker waits for a lock the calling transaction holds fails instead of waiting for ever');
ROLLBACK;

BEGIN;
SELECT iterjob.enqueue('public.rc_items', 'SELECT 1') AS new_job \gset
SELECT throws_ok(format('SELECT iterjob.recount(%s)', :new_job), '55000',
                 format('cannot recount iterjob job %s in the transaction that enqueued it', :new_job),
                 'a job enqueued in the calling transaction cannot be recounted there');
ROLLBACK;

-- Clean up -------------------------------------------------------------------

SELECT is((SELECT count(*) FROM (SELECT iterjob.cancel(id) FROM iterjob.job WHERE state = 'paused') c),
          5::bigint, 'the five paused jobs are cancelled');
DROP OWNED BY rc_alice, rc_boss CASCADE;
DROP ROLE rc_alice, rc_boss;

SELECT * FROM finish();
