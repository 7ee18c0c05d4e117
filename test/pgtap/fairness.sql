-- fairness.sql: no tenant holds the workers.  The server caps every job's
-- statement_timeout (iterjob.max_statement_timeout); pause and cancel
-- interrupt the batch in flight, also when an iterjob_admin member that is
-- not a superuser calls them, also when the action catches the cancel; and
-- the workers are shared between the jobs and owners of a database.
--
-- Jobs run in background workers and only see committed data, so this file
-- runs in autocommit (as the superuser postgres) and acts as other roles
-- with SET ROLE / RESET ROLE.  Run by test/pgtap-exec.sh in a fresh
-- database, on a cluster with iterjob preloaded and iterjob.max_workers = 4
-- (test/run-all.sh pgtap).  Roles are cluster-wide: they are all named
-- fair_* and dropped at the end.
--
--   fair_alice, fair_bob   ordinary users (LOGIN, granted iterjob_user)
--   fair_boss              admin, not a superuser (LOGIN, granted iterjob_admin)
--
--   1. the cap lowered under a running job with statement_timeout 1h: its
--      next batch gets the cap
--   2. statement_timeout => '0' and => '2h' at enqueue get the cap
--   3. a never-ending batch (statement_timeout => '0') cancelled by the
--      admin: its worker is free within a second, the batch rolled back, no
--      attempt counted
--   4. the same, paused by the admin, then resumed
--   5. paused and resumed at once while such a batch runs: the job ends
--   6. an action that catches the cancel: its worker is terminated, no
--      attempt counted
--   7. an action that catches its statement timeout: its worker is
--      terminated, a failed attempt that says why
--   8. one owner's 1024-instance job on every worker and another owner's
--      one-row job: the small one starts within a time slice and a batch
--   9. one owner's long instances on every worker and another owner's job:
--      a worker leaves its instance after its time slice

SET client_min_messages = warning;

SELECT plan(54);

-- Roles --------------------------------------------------------------------

-- Leftovers of an aborted earlier run (the database itself is always new).
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('fair_alice', 'fair_bob', 'fair_boss')
    LOOP
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

CREATE ROLE fair_alice LOGIN IN ROLE iterjob_user;
CREATE ROLE fair_bob LOGIN IN ROLE iterjob_user;
CREATE ROLE fair_boss LOGIN NOSUPERUSER IN ROLE iterjob_admin;

-- A gate per job: while it is closed, a batch that holds a key above 5
-- sleeps for an hour.
CREATE TABLE fair_gate (job text PRIMARY KEY, closed boolean NOT NULL);
ALTER TABLE fair_gate OWNER TO fair_alice;
CREATE FUNCTION fair_wait(gate text, keys bigint[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT closed FROM fair_gate WHERE job = gate)
       AND EXISTS (SELECT FROM unnest(keys) k WHERE k > 5) THEN
        PERFORM pg_sleep(3600);
    END IF;
    RETURN true;
END
$$;
ALTER FUNCTION fair_wait(text, bigint[]) OWNER TO fair_alice;

-- The same, but the sleep goes on when a cancel interrupts it.
CREATE FUNCTION fair_stubborn(keys bigint[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(keys) k WHERE k > 5) THEN
        LOOP
            BEGIN
                PERFORM pg_sleep(3600);
            EXCEPTION WHEN query_canceled THEN
                NULL;
            END;
        END LOOP;
    END IF;
    RETURN true;
END
$$;
ALTER FUNCTION fair_stubborn(bigint[]) OWNER TO fair_alice;

-- A table of alice's with keys 1..rows.
CREATE FUNCTION fair_table(name text, rows int, owner name DEFAULT 'fair_alice') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)', name);
    EXECUTE format('INSERT INTO %I (id) SELECT generate_series(1, %s)', name, rows);
    EXECUTE format('ALTER TABLE %I OWNER TO %I', name, owner);
END
$$;

-- Is a batch of job p_job in its action, asleep?
CREATE FUNCTION fair_asleep(p_job bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT FROM iterjob.workers
                    WHERE job_id = p_job AND phase = 'action' AND wait_event = 'PgSleep')
$$;

-- "state|attempts|errors|rows with n = 1|rows with n > 1|rows_done" of a job over tbl
CREATE FUNCTION fair_outcome(p_job bigint, tbl regclass) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    once bigint;
    more bigint;
BEGIN
    EXECUTE format('SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n > 1) FROM %s', tbl)
       INTO once, more;
    RETURN (SELECT state FROM iterjob.job_progress WHERE job_id = p_job)
        || '|' || (SELECT sum(attempts) FROM iterjob.task_progress WHERE job_id = p_job)
        || '|' || (SELECT count(*) FROM iterjob.errors WHERE job_id = p_job)
        || '|' || once || '|' || more
        || '|' || (SELECT rows_done FROM iterjob.job_progress WHERE job_id = p_job);
END
$$;

-- From here to the resets at the end nothing may stop the file.
\set ON_ERROR_STOP 0

-- 1. The cap lowered under a running job ----------------------------------------

-- Three batches of 1.5 s each, under statement_timeout 1h (the cap).
SELECT fair_table('slow_items', 3);
SET ROLE fair_alice;
SELECT iterjob.enqueue('slow_items',
       'UPDATE slow_items SET n = n + 1 FROM (SELECT pg_sleep(1.5)) s WHERE id = ANY($1)',
       batch_size => 1, statement_timeout => '1h', max_attempts => 1) AS slow_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :slow_job)),
          'lowered cap: a batch of 1.5 s committed under statement_timeout 1h');
ALTER SYSTEM SET iterjob.max_statement_timeout = '1s';
SELECT pg_reload_conf() AS reloaded \gset
-- (this session reads the configuration again before its next statement)
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.max_statement_timeout'), '1s', 'lowered cap: iterjob.max_statement_timeout = 1s (reload)');
SELECT is(iterjob.wait(:slow_job, '30 s'), 'failed',
          'lowered cap: the running job fails: a later batch of 1.5 s ran into the new cap of 1 s');
SELECT is((SELECT string_agg(sqlstate || ' ' || message, '; ') FROM iterjob.errors WHERE job_id = :slow_job),
          '57014 canceling statement due to statement timeout',
          'lowered cap: its one failed attempt is a statement timeout');
SELECT ok((SELECT rows_done BETWEEN 1 AND 2 FROM iterjob.job_progress WHERE job_id = :slow_job),
          'lowered cap: the batches before it committed');

-- 2. The cap at enqueue -------------------------------------------------------------

-- One row each; the action sleeps for an hour.
SELECT fair_table('zero_items', 1);
SELECT fair_table('long_items', 1);
SET ROLE fair_alice;
SELECT iterjob.enqueue('zero_items',
       'UPDATE zero_items SET n = n + 1 FROM (SELECT pg_sleep(3600)) s WHERE id = ANY($1)',
       statement_timeout => '0', max_attempts => 1) AS zero_job \gset
SELECT iterjob.enqueue('long_items',
       'UPDATE long_items SET n = n + 1 FROM (SELECT pg_sleep(3600)) s WHERE id = ANY($1)',
       statement_timeout => '2 hours', max_attempts => 1) AS long_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:zero_job, '20 s'), 'failed',
          'cap at enqueue: a job with statement_timeout 0 and an action of an hour fails under the cap of 1 s');
SELECT is((SELECT string_agg(sqlstate || ' ' || message, '; ') FROM iterjob.errors WHERE job_id = :zero_job),
          '57014 canceling statement due to statement timeout',
          'cap at enqueue: statement_timeout 0: its failed attempt is a statement timeout');
SELECT is(iterjob.wait(:long_job, '20 s'), 'failed',
          'cap at enqueue: a job with statement_timeout 2h fails the same way');
SELECT is((SELECT string_agg(sqlstate || ' ' || message, '; ') FROM iterjob.errors WHERE job_id = :long_job),
          '57014 canceling statement due to statement timeout',
          'cap at enqueue: statement_timeout 2h: its failed attempt is a statement timeout');
SELECT ok((SELECT finished_at - started_at < interval '10 s' FROM iterjob.job_progress WHERE job_id = :long_job),
          'cap at enqueue: the 2h job failed within seconds');

ALTER SYSTEM SET iterjob.max_statement_timeout = '1h';
SELECT pg_reload_conf() AS reloaded \gset
-- (this session reads the configuration again before its next statement)
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.max_statement_timeout'), '1h', 'iterjob.max_statement_timeout = 1h again');

-- 3. A never-ending batch cancelled by an admin -------------------------------------

-- 20 keys, batches of 5: the first commits, the second sleeps for an hour.
SELECT fair_table('cancel_items', 20);
INSERT INTO fair_gate VALUES ('cancel', true), ('pause', true), ('race', true);
SET ROLE fair_alice;
SELECT iterjob.enqueue('cancel_items',
       'UPDATE cancel_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT fair_wait(''cancel'', $1))',
       batch_size => 5, statement_timeout => '0') AS cancel_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('fair_asleep(%s)', :cancel_job)),
          'cancel: the second batch sleeps in its action');
SELECT pid AS cancel_pid FROM iterjob.workers WHERE job_id = :cancel_job \gset

SET ROLE fair_boss;
SELECT is(iterjob.cancel(:cancel_job), 'cancelled', 'cancel: the admin (not a superuser) cancels the job');
RESET ROLE;
SELECT clock_timestamp() AS cancel_t0 \gset
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :cancel_job), '1 s'),
          'cancel: within a second no worker is on the job');
SELECT diag(format('cancel: the worker left the job %s ms after the cancel returned',
                   round(extract(epoch FROM clock_timestamp() - :'cancel_t0'::timestamptz) * 1000)));
SELECT is(fair_outcome(:cancel_job, 'cancel_items'), 'cancelled|0|0|5|0|5',
          'cancel: cancelled, no attempt counted, no error, the first batch''s 5 rows once and no other');
SELECT ok((SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :cancel_pid AND wait_event = 'PgSleep'),
          'cancel: the worker sleeps no more');

-- 4. The same, paused, then resumed -------------------------------------------------

SELECT fair_table('pause_items', 20);
SET ROLE fair_alice;
SELECT iterjob.enqueue('pause_items',
       'UPDATE pause_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT fair_wait(''pause'', $1))',
       batch_size => 5, statement_timeout => '0') AS pause_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('fair_asleep(%s)', :pause_job)),
          'pause: the second batch sleeps in its action');
SET ROLE fair_boss;
SELECT is(iterjob.pause(:pause_job), 'paused', 'pause: the admin (not a superuser) pauses the job');
RESET ROLE;
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :pause_job), '1 s'),
          'pause: within a second no worker is on the job');
SELECT is(fair_outcome(:pause_job, 'pause_items'), 'paused|0|0|5|0|5',
          'pause: paused, no attempt counted, no error, the first batch''s 5 rows once and no other');
SELECT is((SELECT cursor->>'inner_cursor' FROM iterjob.task_progress WHERE job_id = :pause_job), '5',
          'pause: the task keeps the cursor of its last committed batch');
UPDATE fair_gate SET closed = false WHERE job = 'pause';
SET ROLE fair_boss;
SELECT is(iterjob.resume(:pause_job), 'running', 'pause: the admin resumes the job');
RESET ROLE;
SELECT is(iterjob.wait(:pause_job, '30 s'), 'succeeded', 'pause: the resumed job succeeds');
SELECT is(fair_outcome(:pause_job, 'pause_items'), 'succeeded|0|0|20|0|20',
          'pause: every row exactly once, no attempt counted, no error');

-- 5. Paused and resumed at once while the batch never ends -------------------------

-- The interrupted worker may still hold the task when it is queued again:
-- it must let it go, and some worker take it up.
SELECT fair_table('race_items', 20);
SET ROLE fair_alice;
SELECT iterjob.enqueue('race_items',
       'UPDATE race_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT fair_wait(''race'', $1))',
       batch_size => 5, statement_timeout => '0') AS race_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('fair_asleep(%s)', :race_job)),
          'pause and resume: the second batch sleeps in its action');
SET ROLE fair_alice;
SELECT is(iterjob.pause(:race_job), 'paused', 'pause and resume: the owner pauses the job');
UPDATE fair_gate SET closed = false WHERE job = 'race';
SELECT is(iterjob.resume(:race_job), 'running', 'pause and resume: ... and resumes it at once');
RESET ROLE;
SELECT is(iterjob.wait(:race_job, '30 s'), 'succeeded', 'pause and resume: the job succeeds');
SELECT is(fair_outcome(:race_job, 'race_items'), 'succeeded|0|0|20|0|20',
          'pause and resume: every row exactly once, no attempt counted, no error');

-- 6. An action that catches the cancel ---------------------------------------------

SELECT fair_table('stubborn_items', 20);
SET ROLE fair_alice;
SELECT iterjob.enqueue('stubborn_items',
       'UPDATE stubborn_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT fair_stubborn($1))',
       batch_size => 5, statement_timeout => '0') AS stubborn_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('fair_asleep(%s)', :stubborn_job)),
          'stubborn: the second batch sleeps in its action');
SELECT pid AS stubborn_pid FROM iterjob.workers WHERE job_id = :stubborn_job \gset
SET ROLE fair_boss;
SELECT is(iterjob.cancel(:stubborn_job), 'cancelled', 'stubborn: the admin cancels the job');
RESET ROLE;
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)', :stubborn_pid), '5 s'),
          'stubborn: the action catches the cancel, and its worker is terminated within seconds');
SELECT is(fair_outcome(:stubborn_job, 'stubborn_items'), 'cancelled|0|0|5|0|5',
          'stubborn: cancelled, no attempt counted, no error, the first batch''s 5 rows once and no other');

-- 7. An action that catches its statement timeout ------------------------------------

ALTER SYSTEM SET iterjob.max_statement_timeout = '1s';
SELECT pg_reload_conf() AS reloaded \gset
-- (this session reads the configuration again before its next statement)
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.max_statement_timeout'), '1s', 'iterjob.max_statement_timeout = 1s');
SELECT fair_table('overrun_items', 20);
SET ROLE fair_alice;
SELECT iterjob.enqueue('overrun_items',
       'UPDATE overrun_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT fair_stubborn($1))',
       batch_size => 5, statement_timeout => '0', max_attempts => 1) AS overrun_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:overrun_job, '30 s'), 'failed',
          'overrun: the action catches its statement timeout of 1 s; its worker is terminated and the job fails');
SELECT is((SELECT string_agg(sqlstate || ' ' || message, '; ') FROM iterjob.errors WHERE job_id = :overrun_job),
          '57014 worker terminated: the batch went on past its statement timeout of 1000 ms',
          'overrun: its one failed attempt says why');
SELECT is((SELECT last_error FROM iterjob.task_progress WHERE job_id = :overrun_job),
          'worker terminated: the batch went on past its statement timeout of 1000 ms',
          'overrun: so does the task''s last_error');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FILTER (WHERE n > 1) FROM overrun_items), '5/0',
          'overrun: the first batch''s 5 rows once, no other');
ALTER SYSTEM SET iterjob.max_statement_timeout = '1h';
SELECT pg_reload_conf() AS reloaded \gset
-- (this session reads the configuration again before its next statement)
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.max_statement_timeout'), '1h', 'iterjob.max_statement_timeout = 1h again');

-- 8. A 1024-instance job on every worker, another owner's one-row job ---------------

ALTER SYSTEM SET iterjob.time_slice = '1s';
SELECT pg_reload_conf() AS reloaded \gset
-- (this session reads the configuration again before its next statement)
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.time_slice'), '1s', 'iterjob.time_slice = 1s');
-- one key per instance, 20 ms a batch
SELECT fair_table('wide_items', 1024);
SELECT fair_table('small_items', 1, 'fair_bob');
SET ROLE fair_alice;
SELECT iterjob.enqueue('wide_items',
       'UPDATE wide_items SET n = n + 1 FROM (SELECT pg_sleep(0.02)) s WHERE id = ANY($1)',
       instances => 1024) AS wide_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.workers WHERE job_id = %s) = 4', :wide_job)),
          'wide: the 1024-instance job has every worker');
SET ROLE fair_bob;
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)') AS small_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:small_job, '60 s'), 'succeeded', 'wide: the other owner''s one-row job succeeds');
SELECT (SELECT round(extract(epoch FROM started_at - created_at)::numeric, 3)
          FROM iterjob.job_progress WHERE job_id = :small_job) AS small_wait \gset
SELECT cmp_ok(:small_wait, '<', 3.0,
              format('wide: it started %s s after its enqueue: within the time slice (1 s), a batch, and a worker''s start',
                     :small_wait));
SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :wide_job), 'running',
          'wide: ... while the 1024-instance job still runs');
SELECT is(iterjob.wait(:wide_job, '300 s'), 'succeeded', 'wide: the 1024-instance job succeeds');
SELECT is(fair_outcome(:wide_job, 'wide_items'), 'succeeded|0|0|1024|0|1024',
          'wide: every one of its 1024 rows exactly once, no failed attempt');
SELECT is(fair_outcome(:small_job, 'small_items'), 'succeeded|0|0|1|0|1',
          'wide: the one-row job''s row exactly once');

-- 9. Long instances on every worker, another owner's job: a time slice -------------

-- 4 instances of 150 batches of 50 ms: none ends for several seconds.
SELECT fair_table('long_run_items', 600);
SELECT fair_table('late_items', 1, 'fair_bob');
SET ROLE fair_alice;
SELECT iterjob.enqueue('long_run_items',
       'UPDATE long_run_items SET n = n + 1 FROM (SELECT pg_sleep(0.05)) s WHERE id = ANY($1)',
       instances => 4, batch_size => 1) AS long_run_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.workers WHERE job_id = %s) = 4', :long_run_job)),
          'time slice: the 4-instance job has every worker');
SET ROLE fair_bob;
SELECT iterjob.enqueue('late_items', 'UPDATE late_items SET n = n + 1 WHERE id = ANY($1)') AS late_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:late_job, '60 s'), 'succeeded', 'time slice: the other owner''s job succeeds');
SELECT (SELECT round(extract(epoch FROM started_at - created_at)::numeric, 3)
          FROM iterjob.job_progress WHERE job_id = :late_job) AS late_wait \gset
SELECT cmp_ok(:late_wait, '<', 4.0,
              format('time slice: it started %s s after its enqueue: within the time slice (1 s), a batch, and a worker''s start',
                     :late_wait));
SELECT is((SELECT min(rows_done) < 150 FROM iterjob.task_progress WHERE job_id = :long_run_job), true,
          'time slice: ... while no instance of the 4-instance job had ended');
SELECT is(iterjob.wait(:long_run_job, '300 s'), 'succeeded', 'time slice: the 4-instance job succeeds');
SELECT is(fair_outcome(:long_run_job, 'long_run_items'), 'succeeded|0|0|600|0|600',
          'time slice: every one of its 600 rows exactly once, no failed attempt (an instance left and resumed)');
SELECT is((SELECT sum(batches_done) FROM iterjob.task_progress WHERE job_id = :long_run_job), 600::numeric,
          'time slice: 600 batches: none was run twice');

-- Resets -------------------------------------------------------------------------------

ALTER SYSTEM RESET iterjob.time_slice;
ALTER SYSTEM RESET iterjob.max_statement_timeout;
SELECT pg_reload_conf() AS reloaded \gset
\set ON_ERROR_STOP 1

SELECT iterjob.purge('0') AS purged \gset
DROP TABLE slow_items, zero_items, long_items, cancel_items, pause_items, race_items, stubborn_items,
           overrun_items, wide_items, small_items, long_run_items, late_items, fair_gate;
DROP FUNCTION fair_wait(text, bigint[]), fair_stubborn(bigint[]);
DROP ROLE fair_alice, fair_bob, fair_boss;

SELECT * FROM finish();
