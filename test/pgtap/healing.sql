-- healing.sql: self-healing batches.  A batch that times out (lock or
-- statement timeout) is retried at once at half its size, down to one key,
-- without counting as a failed attempt; the size grows back by doubling
-- per committed batch.  A batch of one key that times out is a failed
-- attempt as before.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded (test/run-all.sh
-- pgtap), whose server log is ../server.log from the data directory.
--
--   1. a row locked by another session: the job halves around it, does
--      every other row while the lock is held, the locked row once it is
--      released, and succeeds; every row exactly once
--   2. the failure-ratio stop: a job whose batches keep failing fails, with
--      a last_error that says why, long before max_attempts; with the ratio
--      off the same job keeps retrying, until set() turns it on; retry()
--      starts the window afresh; the stop ends every instance of the job,
--      not only the one whose batches fail
--   3. bad max_failure_ratio and failure_window: clear errors, no job

SET client_min_messages = warning;

SELECT plan(41);

CREATE EXTENSION dblink;

-- dblink does not inherit psql's PGHOST/PGPORT: name the socket and port.
SELECT format('host=%s port=%s user=%s dbname=%s',
              trim(split_part(current_setting('unix_socket_directories'), ',', 1)),
              current_setting('port'), current_user, current_database()) AS conn \gset

-- 1. Halving around a locked row ------------------------------------------------

CREATE TABLE heal_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO heal_items (id) SELECT generate_series(1, 20);

-- another session holds a row lock on the last key, 20
SELECT dblink_connect('locker', :'conn') AS connected \gset
SELECT dblink_exec('locker', 'BEGIN') AS began \gset
SELECT is((SELECT id FROM dblink('locker', 'SELECT id FROM heal_items WHERE id = 20 FOR UPDATE') AS r(id bigint)),
          20::bigint,
          'locked row: another session holds a row lock on key 20');

-- Batches of 8: 1..8 and 9..16 commit; 17..20 times out and is retried
-- as 17,18 (commits), then 19,20 (times out), then 19 (commits); 20 alone
-- times out: a failed attempt, retried after the backoff (max_attempts is
-- high enough to outlast the lock).
SELECT iterjob.enqueue('heal_items', 'UPDATE heal_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 8, lock_timeout => '200ms', max_attempts => 50) AS heal_job \gset

SELECT ok(tap_wait_until('(SELECT count(*) FROM heal_items WHERE n = 1) = 19', '60 s'),
          'locked row: while the lock is held, the 19 other rows are done');
SELECT ok(tap_wait_until(format('EXISTS (SELECT FROM iterjob.errors WHERE job_id = %s)', :heal_job), '30 s'),
          'locked row: the batch of the locked key alone fails an attempt');
SELECT is((SELECT (state, n)::text FROM iterjob.job_progress, heal_items
            WHERE job_id = :heal_job AND id = 20),
          '(running,0)',
          'locked row: the job is still running, the locked row not done');
SELECT is((SELECT array_agg(DISTINCT row(cursor ->> 'inner_cursor', sqlstate)::text)
             FROM iterjob.errors WHERE job_id = :heal_job),
          ARRAY['(19,55P03)'],
          'locked row: every failed attempt is a lock timeout of the batch after key 19 (the locked key alone): the halved batches were not failed attempts');

SELECT is(dblink_exec('locker', 'COMMIT'), 'COMMIT', 'locked row: the other session releases the lock');
SELECT dblink_disconnect('locker') AS disconnected \gset

SELECT is(iterjob.wait(:heal_job, '90 s'), 'succeeded', 'locked row: then the job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM heal_items),
          '0 of 20',
          'locked row: every row processed exactly once');

-- the two halvings, one LOG line each
SELECT is((SELECT array_agg(m[1] ORDER BY ord)
             FROM regexp_matches(pg_read_file('../server.log'),
                                 format('job %s instance 0: batch of (\d+ keys) timed out, retrying at batch size (\d+)',
                                        :heal_job), 'g') WITH ORDINALITY AS r(m, ord)),
          ARRAY['4 keys', '2 keys'],
          'locked row: the server log shows the halvings: a batch of 4 keys (17..20), then one of 2 (19, 20)');

-- 2. The failure-ratio stop ---------------------------------------------------------

-- Batches of one key; keys 1..3 commit, then every key not divisible by 3
-- raises.  With max_attempts 100 key 4 would be retried for about 45
-- minutes; with a window of the last 4 batch attempts and a ratio of 0.5
-- the job fails at the third failed attempt (3 of c,f,f,f failed).
CREATE TABLE ratio_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO ratio_items (id) SELECT generate_series(1, 30);
CREATE FUNCTION ratio_check(ids bigint[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(ids) i WHERE i >= 4 AND i % 3 <> 0) THEN
        RAISE EXCEPTION 'key not divisible by 3';
    END IF;
    RETURN true;
END
$$;

SELECT iterjob.enqueue('ratio_items', 'UPDATE ratio_items SET n = n + 1 WHERE id = ANY($1) AND ratio_check($1)',
                       batch_size => 1, max_attempts => 100,
                       max_failure_ratio => 0.5, failure_window => 4) AS ratio_job \gset

SELECT is((SELECT (max_failure_ratio, failure_window)::text FROM iterjob.job_progress WHERE job_id = :ratio_job),
          '(0.5,4)', 'ratio: job_progress shows max_failure_ratio and failure_window');
SELECT is(iterjob.wait(:ratio_job, '60 s'), 'failed', 'ratio: the job fails instead of retrying up to max_attempts');
SELECT is((SELECT last_error FROM iterjob.job_progress WHERE job_id = :ratio_job),
          '3 of the last 4 batch attempts failed (more than max_failure_ratio 0.5)',
          'ratio: the job''s last_error says why');
SELECT is((SELECT (state, attempts, last_error)::text FROM iterjob.task_progress WHERE job_id = :ratio_job),
          '(failed,3,"3 of the last 4 batch attempts failed (more than max_failure_ratio 0.5)")',
          'ratio: the task failed at its third failed attempt, with the same reason');
SELECT is((SELECT array_agg(row(attempt, cursor ->> 'inner_cursor', message)::text ORDER BY attempt)
             FROM iterjob.errors WHERE job_id = :ratio_job),
          ARRAY['(1,3,"key not divisible by 3")', '(2,3,"key not divisible by 3")', '(3,3,"key not divisible by 3")'],
          'ratio: the error log holds the 3 failed attempts of the batch after key 3');
SELECT is((SELECT string_agg(id || ':' || n, ',' ORDER BY id) FROM ratio_items WHERE id <= 5),
          '1:1,2:1,3:1,4:0,5:0',
          'ratio: keys 1..3 processed once, none after');

-- retry() starts the window afresh: the next failure is 1 of the last 4
SELECT is(iterjob.retry(:ratio_job), 'running', 'ratio: retry() returns running');
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.errors WHERE job_id = %s) = 4', :ratio_job), '30 s'),
          'ratio: after retry() the batch fails again');
SELECT is((SELECT state FROM iterjob.task_progress WHERE job_id = :ratio_job), 'running',
          'ratio: that failure does not stop the job (the failures before retry() do not count)');
SELECT is(iterjob.cancel(:ratio_job), 'cancelled', 'ratio: cancelled');

-- the same job with the ratio off keeps retrying
SELECT iterjob.enqueue('ratio_items', 'UPDATE ratio_items SET n = n + 1 WHERE id = ANY($1) AND ratio_check($1)',
                       batch_size => 1, max_attempts => 100, filter => 'id > 3',
                       max_failure_ratio => 0, failure_window => 4) AS off_job \gset
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.errors WHERE job_id = %s) >= 4', :off_job), '60 s'),
          'ratio off: the batch failed 4 attempts');
SELECT is((SELECT (state, attempts >= 4)::text FROM iterjob.task_progress WHERE job_id = :off_job), '(running,t)',
          'ratio off: the job keeps retrying (4 of the last 4 attempts failed)');
-- set() turns the stop on: the next failed attempt ends the job
SELECT throws_ok(format('SELECT iterjob.set(%s, max_failure_ratio => 2)', :off_job),
                 '22023', 'max_failure_ratio must be between 0 and 1',
                 'set: a bad max_failure_ratio is refused');
SELECT throws_ok(format('SELECT iterjob.set(%s, failure_window => -1)', :off_job),
                 '22023', 'failure_window must be between 0 and 10000',
                 'set: a bad failure_window is refused');
SELECT lives_ok(format('SELECT iterjob.set(%s, max_failure_ratio => 0.5)', :off_job),
                'set(max_failure_ratio => 0.5) on the running job');
SELECT is(iterjob.wait(:off_job, '90 s'), 'failed', 'set: then the job fails at its next failed attempt');
SELECT is((SELECT last_error FROM iterjob.job_progress WHERE job_id = :off_job),
          '4 of the last 4 batch attempts failed (more than max_failure_ratio 0.5)',
          'set: with the reason in last_error');

-- Two instances: instance 0 (even keys) fails every batch, instance 1 (odd
-- keys) commits a slow batch every 0.3 s and would need a minute for its
-- 200 keys.  More than 1 failure in the job's last 10 attempts stops the
-- job at instance 0's second failed attempt (about a second in); instance
-- 1 then fails at its next batch boundary, with the same reason, and what
-- it committed is there exactly once.
CREATE TABLE pair_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO pair_items (id) SELECT generate_series(1, 400);
CREATE FUNCTION pair_check(ids bigint[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(ids) i WHERE i % 2 = 0) THEN
        RAISE EXCEPTION 'even key';
    END IF;
    PERFORM pg_sleep(0.3);
    RETURN true;
END
$$;
SELECT iterjob.enqueue('pair_items', 'UPDATE pair_items SET n = n + 1 WHERE id = ANY($1) AND pair_check($1)',
                       instances => 2, batch_size => 1, max_attempts => 100,
                       max_failure_ratio => 0.1, failure_window => 10) AS pair_job \gset
SELECT is(iterjob.wait(:pair_job, '30 s'), 'failed', 'ratio, 2 instances: the job fails within seconds');
SELECT is((SELECT string_agg(instance || ':' || state, ',' ORDER BY instance)
             FROM iterjob.task_progress WHERE job_id = :pair_job),
          '0:failed,1:failed', 'ratio, 2 instances: both instances failed');
SELECT is((SELECT count(DISTINCT last_error)::int FROM iterjob.task_progress WHERE job_id = :pair_job), 1,
          'ratio, 2 instances: with the same last_error');
SELECT alike((SELECT last_error FROM iterjob.task_progress WHERE job_id = :pair_job AND instance = 1),
            '% of the last 10 batch attempts failed (more than max_failure_ratio 0.1)',
            'ratio, 2 instances: the healthy instance says why it stopped');
SELECT is((SELECT (count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n > 1 OR (n = 1 AND id % 2 = 0)))::text
             FROM pair_items),
          (SELECT (rows_done, 0)::text FROM iterjob.task_progress WHERE job_id = :pair_job AND instance = 1),
          'ratio, 2 instances: what instance 1 committed is there exactly once, nothing of instance 0');
SELECT cmp_ok((SELECT rows_done FROM iterjob.task_progress WHERE job_id = :pair_job AND instance = 1), '<', 100::bigint,
              'ratio, 2 instances: instance 1 stopped long before its end');

-- the defaults: 0.5 of the last 50
SELECT iterjob.enqueue('ratio_items', 'UPDATE ratio_items SET n = n WHERE id = ANY($1)') AS default_job \gset
SELECT is((SELECT (max_failure_ratio, failure_window)::text FROM iterjob.job_progress WHERE job_id = :default_job),
          '(0.5,50)', 'ratio: by default a job fails when more than half of its last 50 batch attempts failed');
SELECT is(iterjob.wait(:default_job, '60 s'), 'succeeded', 'ratio: a job that does not fail succeeds');

-- 3. Bad input ----------------------------------------------------------------------

SELECT count(*) AS jobs_before FROM iterjob.job \gset
SELECT throws_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', max_failure_ratio => -0.1)$$,
                 '22023', 'max_failure_ratio must be between 0 and 1',
                 'bad input: max_failure_ratio < 0');
SELECT throws_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', max_failure_ratio => 1.5)$$,
                 '22023', 'max_failure_ratio must be between 0 and 1',
                 'bad input: max_failure_ratio > 1');
SELECT throws_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', max_failure_ratio => 'NaN')$$,
                 '22023', 'max_failure_ratio must be between 0 and 1',
                 'bad input: max_failure_ratio NaN');
SELECT throws_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', failure_window => -1)$$,
                 '22023', 'failure_window must be between 0 and 10000',
                 'bad input: failure_window < 0');
SELECT throws_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', failure_window => 10001)$$,
                 '22023', 'failure_window must be between 0 and 10000',
                 'bad input: failure_window > 10000');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'bad input: no job was created');
SELECT lives_ok($$SELECT iterjob.enqueue('ratio_items', 'SELECT $1', max_failure_ratio => NULL, failure_window => NULL)$$,
                'NULL max_failure_ratio and failure_window: accepted (off)');

SELECT * FROM finish();
