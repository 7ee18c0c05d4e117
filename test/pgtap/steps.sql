-- steps.sql: a migration written as steps, and health checks.  enqueue's
-- after makes a job wait, queued, until the jobs it names have succeeded,
-- and fail when one of them fails or is cancelled; enqueue's health_check
-- and iterjob.health_check hold jobs at a batch boundary for as long as a
-- user's expression, run as the job's owner, says so.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded (test/run-all.sh
-- pgtap).  The part that changes iterjob.health_check (ALTER SYSTEM) runs
-- with ON_ERROR_STOP off and resets it right after.
--
--   1. backfill, then validate, then swap: each step starts only once the
--      one before it succeeded (waiting_for in job_progress while it
--      waits); every row once
--   2. a failed predecessor fails the job waiting for it and the job
--      waiting for that one, with a reason each; nothing of theirs ran;
--      they can be retried only once the predecessor is (then they wait)
--   3. a cancelled predecessor fails the job waiting for it
--   4. bad after: a job that does not exist, one that failed, one that was
--      cancelled, a null, another role's job: clear errors, no job left
--   5. a job's health check holds it (text: the reason, or true) and
--      releases it; it runs as the owner; a check that fails holds with
--      its error; bad health checks are refused at enqueue
--   6. iterjob.health_check holds every job, with its reason, until reset

SET client_min_messages = warning;

SELECT plan(54);

CREATE FUNCTION tap_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE sql INTO r;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE FUNCTION tap_job(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT (state, last_error)::text FROM iterjob.job_progress WHERE job_id = p_job
$$;

-- 1. Steps ------------------------------------------------------------------

CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, cents bigint);
INSERT INTO accounts (id, balance) SELECT g, g % 100 FROM generate_series(1, 400) g;
CREATE TABLE step_log (step text, at timestamptz DEFAULT clock_timestamp(), n bigint);

-- the backfill is slow enough (40 batches, 50 ms apart) to be seen running
SELECT iterjob.enqueue('accounts', 'UPDATE accounts SET cents = balance * 100 WHERE id = ANY($1)',
                       batch_size => 10, batch_pause => '50ms', name => 'backfill') AS backfill \gset
SELECT iterjob.enqueue('accounts',
         'INSERT INTO step_log (step, n) SELECT ''validate'', count(*) FROM accounts
           WHERE id = ANY($1) AND cents IS DISTINCT FROM balance * 100',
         batch_size => 1000, name => 'validate', after => ARRAY[:backfill]) AS validate \gset
SELECT iterjob.enqueue(query => 'SELECT 1 AS k', key => 'k',
         action => 'INSERT INTO step_log (step, n) SELECT ''swap'', $1[1]',
         name => 'swap', after => ARRAY[:validate, :backfill, :validate]) AS swap \gset

SELECT ok(tap_wait_until(format('(SELECT rows_done FROM iterjob.job_progress WHERE job_id = %s) > 0', :backfill), '30 s'),
          'steps: the backfill runs');
SELECT is((SELECT array_agg((state, waiting_for)::text ORDER BY job_id) FROM iterjob.job_progress
            WHERE job_id IN (:validate, :swap)),
          ARRAY[format('(queued,{%s})', :backfill), format('(queued,"{%s,%s}")', :backfill, :validate)],
          'steps: while it runs, validate and swap are queued, waiting_for names the jobs they wait for');
SELECT is((SELECT after FROM iterjob.job_progress WHERE job_id = :swap),
          ARRAY[:backfill, :validate]::bigint[],
          'steps: after is kept sorted, without repeats');
SELECT is((SELECT count(*) FROM iterjob.task_progress WHERE job_id IN (:validate, :swap) AND started_at IS NOT NULL),
          0::bigint, 'steps: no instance of a waiting job has started');

SELECT is(iterjob.wait(:swap, '90 s'), 'succeeded', 'steps: the last step succeeds');
SELECT is((SELECT array_agg(state ORDER BY job_id) FROM iterjob.job_progress
            WHERE job_id IN (:backfill, :validate, :swap)),
          '{succeeded,succeeded,succeeded}', 'steps: every step succeeded');
SELECT ok((SELECT v.started_at >= b.finished_at AND s.started_at >= v.finished_at
             FROM iterjob.job_progress b, iterjob.job_progress v, iterjob.job_progress s
            WHERE b.job_id = :backfill AND v.job_id = :validate AND s.job_id = :swap),
          'steps: validate started after the backfill ended, swap after validate');
SELECT is((SELECT string_agg(step || '=' || n, ',' ORDER BY at) FROM step_log),
          'validate=0,swap=1', 'steps: validate found no row left to fill, then swap ran once');
SELECT is((SELECT count(*) FROM accounts WHERE cents = balance * 100), 400::bigint,
          'steps: every row filled');

-- in one transaction, a job and the one that runs after it
BEGIN;
SELECT iterjob.enqueue(query => 'SELECT 1 AS k', key => 'k', action => 'INSERT INTO step_log (step) VALUES (''first'')') AS first \gset
SELECT iterjob.enqueue(query => 'SELECT 1 AS k', key => 'k', action => 'INSERT INTO step_log (step) VALUES (''second'')',
                       after => ARRAY[:first]) AS second \gset
COMMIT;
SELECT is(iterjob.wait(:second, '60 s'), 'succeeded', 'steps: two jobs enqueued in one transaction, one after the other');
SELECT is((SELECT string_agg(step, ',' ORDER BY at) FROM step_log WHERE step IN ('first', 'second')),
          'first,second', 'steps: in that order');

-- 2. A failed predecessor ---------------------------------------------------

CREATE TABLE fragile (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO fragile (id) SELECT generate_series(1, 10);
CREATE FUNCTION break_on(ids bigint[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF 5 = ANY (ids) THEN
        RAISE EXCEPTION 'key 5 is broken';
    END IF;
    RETURN true;
END
$$;
-- the job fails at its first batch: the jobs after it never start (all
-- three enqueued in one transaction: the first could fail before the
-- others' enqueue, which then refuses to wait for a failed job)
BEGIN;
SELECT iterjob.enqueue('fragile', 'UPDATE fragile SET n = n + 1 WHERE id = ANY($1) AND break_on($1)',
                       max_attempts => 1, batch_pause => '1s') AS broken \gset
SELECT iterjob.enqueue('fragile', 'UPDATE fragile SET n = n + 10 WHERE id = ANY($1)',
                       after => ARRAY[:broken]) AS next1 \gset
SELECT iterjob.enqueue('fragile', 'UPDATE fragile SET n = n + 100 WHERE id = ANY($1)',
                       after => ARRAY[:next1]) AS next2 \gset
COMMIT;

SELECT is(iterjob.wait(:broken, '60 s'), 'failed', 'failed predecessor: the first job fails');
SELECT is(iterjob.wait(:next1, '30 s'), 'failed', 'failed predecessor: the job after it fails too');
SELECT is(tap_job(:next1), format('(failed,"job %s, which this job runs after, failed")', :broken),
          'failed predecessor: with a last_error that names the job it ran after');
SELECT is(tap_job(:next2), format('(failed,"job %s, which this job runs after, failed")', :next1),
          'failed predecessor: and the job after that one fails, naming its own predecessor');
SELECT is((SELECT array_agg(DISTINCT (state, started_at IS NULL, last_error)::text)
             FROM iterjob.task_progress WHERE job_id = :next2),
          ARRAY[format('(failed,t,"job %s, which this job runs after, failed")', :next1)],
          'failed predecessor: their instances failed without starting');
SELECT is((SELECT sum(n) FROM fragile), 0::bigint, 'failed predecessor: nothing of theirs ran');

-- a failed job can be retried; a job after it is refused while it is failed
SELECT is(tap_try(format('SELECT iterjob.enqueue(''fragile'', ''SELECT $1'', after => ARRAY[%s])', :broken)),
          format('ERROR 55000: cannot run a job after iterjob job %s because it is failed', :broken),
          'bad after: a failed job is refused');
SELECT is(tap_try(format('SELECT iterjob.retry(%s)', :next1)),
          format('ERROR 55000: cannot retry iterjob job %s because iterjob job %s, which it runs after, is failed', :next1, :broken),
          'retry: a job whose predecessor is failed is refused (it would wait forever)');
-- retried in order, with the bad key fixed, the three run one after the other
CREATE OR REPLACE FUNCTION break_on(ids bigint[]) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
SELECT is(iterjob.retry(:broken), 'running', 'retry: the predecessor first');
SELECT is(iterjob.retry(:next1), 'queued', 'retry: then the job after it, which waits for it');
SELECT is(iterjob.retry(:next2), 'queued', 'retry: and the job after that one');
SELECT is(iterjob.wait(:next2, '60 s'), 'succeeded', 'retry: the last one succeeds');
SELECT is((SELECT string_agg(DISTINCT n::text, ',') FROM fragile), '111',
          'retry: each of the three did every row once');

-- 3. A cancelled predecessor ------------------------------------------------

SELECT iterjob.enqueue('fragile', 'UPDATE fragile SET n = n WHERE id = ANY($1)',
                       batch_size => 1, batch_pause => '1s') AS slow \gset
SELECT iterjob.enqueue('fragile', 'UPDATE fragile SET n = n + 1000 WHERE id = ANY($1)',
                       after => ARRAY[:slow]) AS after_slow \gset
SELECT ok(tap_wait_until(format('(SELECT rows_done FROM iterjob.job_progress WHERE job_id = %s) > 0', :slow), '30 s'),
          'cancelled predecessor: the first job runs');
SELECT is(iterjob.cancel(:slow), 'cancelled', 'cancelled predecessor: cancelled');
SELECT is(tap_job(:after_slow), format('(failed,"job %s, which this job runs after, was cancelled")', :slow),
          'cancelled predecessor: the job after it failed at once, saying why');
SELECT is(tap_try(format('SELECT iterjob.enqueue(''fragile'', ''SELECT $1'', after => ARRAY[%s])', :slow)),
          format('ERROR 55000: cannot run a job after iterjob job %s because it is cancelled', :slow),
          'bad after: a cancelled job is refused');
SELECT is((SELECT string_agg(DISTINCT n::text, ',') FROM fragile), '111',
          'cancelled predecessor: nothing of the job after it ran (each row as the retried jobs left it)');

-- 4. Bad after ---------------------------------------------------------------

SELECT count(*) AS jobs_before FROM iterjob.job \gset
SELECT throws_ok($$SELECT iterjob.enqueue('fragile', 'SELECT $1', after => ARRAY[999999])$$,
                 '42704', 'iterjob job 999999 does not exist', 'bad after: a job that does not exist');
SELECT throws_ok($$SELECT iterjob.enqueue('fragile', 'SELECT $1', after => ARRAY[NULL]::bigint[])$$,
                 '22004', 'after must not contain null', 'bad after: a null');
CREATE ROLE steps_alice LOGIN IN ROLE iterjob_user;
GRANT SELECT, UPDATE ON fragile TO steps_alice;
SET ROLE steps_alice;
SELECT throws_ok(format($$SELECT iterjob.enqueue('fragile', 'SELECT $1', after => ARRAY[%s])$$, :backfill),
                 '42501', format('permission denied to run a job after iterjob job %s', :backfill),
                 'bad after: another role''s job');
RESET ROLE;
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'bad after: no job was left behind');

-- 5. A job's health check ---------------------------------------------------

CREATE TABLE gate (hold text);
INSERT INTO gate VALUES ('maintenance window');
GRANT SELECT ON gate TO steps_alice;
CREATE TABLE gated (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO gated (id) SELECT generate_series(1, 50);
GRANT SELECT, UPDATE ON gated TO steps_alice;

SELECT iterjob.enqueue('gated', 'UPDATE gated SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10, health_check => '(SELECT hold FROM gate)') AS gated_job \gset
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) IS NOT NULL', :gated_job), '30 s'),
          'health check: the job holds');
SELECT is((SELECT (state, held, rows_done, health_check)::text FROM iterjob.job_progress WHERE job_id = :gated_job),
          '(running,"health check: maintenance window",0,"(SELECT hold FROM gate)")',
          'health check: running, held with the check''s text as the reason, nothing done');
UPDATE gate SET hold = NULL;
SELECT is(iterjob.wait(:gated_job, '60 s'), 'succeeded', 'health check: released when it returns NULL, the job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) FROM gated), 50::bigint, 'health check: every row once');

-- boolean: true holds
SELECT iterjob.enqueue('gated', 'UPDATE gated SET n = n + 1 WHERE id = ANY($1)',
                       health_check => 'EXISTS (SELECT FROM gate WHERE hold IS NULL)') AS bool_job \gset
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) = ''health check: true''', :bool_job), '30 s'),
          'health check: a boolean check that returns true holds the job');
SELECT is(iterjob.cancel(:bool_job), 'cancelled', 'health check: cancel works while held');

-- as the owner: a role's check sees what the role sees, and fails on what it may not read
CREATE TABLE secret (x text);
SET ROLE steps_alice;
SELECT iterjob.enqueue('gated', 'UPDATE gated SET n = n + 1 WHERE id = ANY($1)',
                       health_check => $$(SELECT 'checked as ' || current_user)$$) AS alice_job \gset
SELECT iterjob.enqueue('gated', 'UPDATE gated SET n = n + 1 WHERE id = ANY($1)',
                       health_check => $$(SELECT hold FROM gate) || (SELECT x FROM secret)$$) AS denied_job \gset
RESET ROLE;
-- (planned at enqueue only: the check that reads secret passes there and fails when run)
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) IS NOT NULL', :alice_job), '30 s'),
          'health check: the owner''s job holds');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :alice_job), 'health check: checked as steps_alice',
          'health check: it runs as the job''s owner');
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) IS NOT NULL', :denied_job), '30 s'),
          'health check: a check that fails holds the job');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :denied_job),
          'health check: failed: permission denied for table secret',
          'health check: with its error as the reason (the owner may not read secret)');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) FROM gated), 0::bigint, 'health check: held jobs did nothing');
SELECT is(iterjob.cancel(:alice_job), 'cancelled', 'health check: cancelled');
SELECT is(iterjob.cancel(:denied_job), 'cancelled', 'health check: cancelled');

SELECT count(*) AS jobs_before FROM iterjob.job \gset
SELECT throws_ok($$SELECT iterjob.enqueue('gated', 'SELECT $1', health_check => '42')$$,
                 '42804', 'health_check must return boolean or text', 'bad health check: an integer');
SELECT throws_ok($$SELECT iterjob.enqueue('gated', 'SELECT $1', health_check => '(SELECT nope FROM gate)')$$,
                 '42703', NULL, 'bad health check: an unknown column');
SELECT throws_ok($$SELECT iterjob.enqueue('gated', 'SELECT $1', health_check => 'true AS x')$$,
                 '22023', 'health_check must be a single expression', 'bad health check: not one expression');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'bad health check: no job was left behind');

-- 6. iterjob.health_check -----------------------------------------------------

\set ON_ERROR_STOP 0
UPDATE gate SET hold = 'replica busy';
UPDATE gated SET n = 0;
ALTER SYSTEM SET iterjob.health_check = '(SELECT hold FROM public.gate)';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT iterjob.enqueue('gated', 'UPDATE gated SET n = n + 1 WHERE id = ANY($1)', batch_size => 10) AS cluster_job \gset
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) IS NOT NULL', :cluster_job), '30 s'),
          'iterjob.health_check: a job without a check of its own holds');
SELECT is((SELECT (held, rows_done)::text FROM iterjob.job_progress WHERE job_id = :cluster_job),
          '("iterjob.health_check: replica busy",0)', 'iterjob.health_check: with the check''s reason');
ALTER SYSTEM RESET iterjob.health_check;
SELECT pg_reload_conf();
\set ON_ERROR_STOP 1
SELECT is(iterjob.wait(:cluster_job, '60 s'), 'succeeded', 'iterjob.health_check: reset, the job goes on and succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) FROM gated), 50::bigint, 'iterjob.health_check: every row once');

DROP OWNED BY steps_alice;
DROP ROLE steps_alice;

SELECT * FROM finish();
