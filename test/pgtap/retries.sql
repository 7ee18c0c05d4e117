-- retries.sql: failing batches, retries with backoff, the error log, the
-- per-batch lock and statement timeouts, and objects that disappear under
-- a running job.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).
--
--   1. a transiently failing batch is retried; the job succeeds, exactly once
--   2. a permanently failing batch fails its task after max_attempts, with
--      a growing backoff; retry() resumes it from its checkpoint
--   3. lock_timeout: a batch waiting on a user's row lock (55P03) is
--      retried at half its size down to one key, which then fails
--   4. statement_timeout: a slow batch (57014) is halved the same way, then
--      fails; the limit covers the whole batch, keyset query and action
--      together
--   5. the relation dropped, a column renamed under a running job: the task
--      fails at once, without looping
--   6. pg_cancel_backend() of a worker: between batches it changes nothing
--      (the same worker goes on); in a batch it is a failed attempt, retried
--      after the backoff
--   7. a statement of a resumed task that fails to prepare (a lock timeout
--      on a table only the action reads): a failed attempt; the retry
--      prepares everything again and starts from the stored cursor

SET client_min_messages = warning;

SELECT plan(94);

-- Helpers -----------------------------------------------------------------

-- Switches the actions below read: a batch fails while its switch is off.
CREATE TABLE ctl (job text PRIMARY KEY, ok boolean NOT NULL);
INSERT INTO ctl VALUES ('transient', false), ('permanent', false), ('cancel', false);

-- 1. A transiently failing batch --------------------------------------------------

-- Batches of 10 over keys 1..40: the third (21..30) holds key 25 and
-- divides by zero while ctl.transient is off.
CREATE TABLE transient_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO transient_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('transient_items',
       $a$UPDATE transient_items
             SET n = n + 1 / (SELECT CASE WHEN ok OR NOT 25 = ANY($1) THEN 1 ELSE 0 END
                                FROM ctl WHERE job = 'transient')
           WHERE id = ANY($1)$a$,
       batch_size => 10) AS transient_job \gset

SELECT ok(tap_wait_until(format('EXISTS (SELECT 1 FROM iterjob.errors WHERE job_id = %s)', :transient_job)),
          'transient: the third batch fails');

-- The retry is due 1 s after the failure: fix the cause before it.
UPDATE ctl SET ok = true WHERE job = 'transient';

SELECT is((SELECT (state, attempts, last_error)::text FROM iterjob.task_progress WHERE job_id = :transient_job),
          '(running,1,"division by zero")',
          'transient: while it waits for its retry, the task is running with attempts = 1 and last_error set');

SELECT is(iterjob.wait(:transient_job, '60 s'), 'succeeded', 'transient: the job succeeds');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM transient_items),
          '0 of 40',
          'transient: every row processed exactly once (the failed attempt rolled back)');

SELECT is((SELECT array_agg(row(instance, attempt, cursor, sqlstate, message)::text) FROM iterjob.errors
            WHERE job_id = :transient_job),
          ARRAY['(0,1,"{""instance"": 0, ""inner_cursor"": 20}",22012,"division by zero")'],
          'transient: one error row: instance 0, attempt 1, the cursor the batch started from (20), 22012, division by zero');

SELECT is((SELECT count(*) FROM iterjob.error_log e JOIN iterjob.errors v USING (job_id, attempt, logged_at)
            WHERE e.job_id = :transient_job),
          1::bigint,
          'transient: iterjob.error_log holds the row the view iterjob.errors shows');

SELECT ok((SELECT context LIKE '%UPDATE transient_items%' FROM iterjob.errors WHERE job_id = :transient_job),
          'transient: the error row''s context names the action');

SELECT is((SELECT (state, attempts, rows_done, batches_done)::text FROM iterjob.task_progress
            WHERE job_id = :transient_job),
          '(succeeded,0,40,4)',
          'transient: attempts is back to 0 after the retried batch committed; 40 rows in 4 batches');

SELECT cmp_ok((SELECT j.finished_at - e.logged_at FROM iterjob.job_progress j, iterjob.errors e
                WHERE j.job_id = :transient_job AND e.job_id = :transient_job),
              '>=', interval '0.9 s',
              'transient: the retry came after a backoff of about 1 s');

-- 2. A permanently failing batch, max_attempts => 3 ------------------------------

-- 4 instances over keys 1..400 in batches of 10.  Instance 3 holds keys
-- 3, 7, ..., 399; its sixth batch starts at key 203, after cursor 199,
-- and divides by zero while ctl.permanent is off.
CREATE TABLE permanent_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO permanent_items (id) SELECT generate_series(1, 400);

SELECT iterjob.enqueue('permanent_items',
       $a$UPDATE permanent_items
             SET n = n + 1 / (SELECT CASE WHEN ok OR id <> 203 THEN 1 ELSE 0 END
                                FROM ctl WHERE job = 'permanent')
           WHERE id = ANY($1)$a$,
       instances => 4, batch_size => 10, max_attempts => 3) AS permanent_job \gset

SELECT is(iterjob.wait(:permanent_job, '60 s'), 'failed', 'permanent: the job fails');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :permanent_job),
          ARRAY['succeeded', 'succeeded', 'succeeded', 'failed'],
          'permanent: instance 3 failed, the other instances succeeded');

SELECT is((SELECT (attempts, last_error, cursor)::text FROM iterjob.task_progress
            WHERE job_id = :permanent_job AND instance = 3),
          '(3,"division by zero","{""instance"": 3, ""inner_cursor"": 199}")',
          'permanent: the failed task made exactly 3 attempts and kept its cursor at 199');

SELECT is((SELECT array_agg(row(instance, attempt, cursor, sqlstate, message)::text ORDER BY attempt)
             FROM iterjob.errors WHERE job_id = :permanent_job),
          ARRAY['(3,1,"{""instance"": 3, ""inner_cursor"": 199}",22012,"division by zero")',
                '(3,2,"{""instance"": 3, ""inner_cursor"": 199}",22012,"division by zero")',
                '(3,3,"{""instance"": 3, ""inner_cursor"": 199}",22012,"division by zero")'],
          'permanent: 3 error rows, attempts 1, 2, 3, each from cursor 199');

CREATE TABLE gaps AS
SELECT attempt, extract(epoch FROM logged_at - lag(logged_at) OVER (ORDER BY attempt)) AS gap
  FROM iterjob.errors WHERE job_id = :permanent_job;

SELECT cmp_ok((SELECT gap FROM gaps WHERE attempt = 2), '>=', 0.9,
              'permanent: the first retry came after >= 0.9 s (backoff 1 s)');
SELECT cmp_ok((SELECT gap FROM gaps WHERE attempt = 2), '<', 1.9,
              'permanent: ... and before 1.9 s');
SELECT cmp_ok((SELECT gap FROM gaps WHERE attempt = 3), '>', (SELECT gap FROM gaps WHERE attempt = 2),
              'permanent: the second gap is longer than the first (the backoff grows)');
SELECT cmp_ok((SELECT gap FROM gaps WHERE attempt = 3), '>=', 1.8,
              'permanent: the second retry came after >= 1.8 s (backoff 2 s)');
SELECT cmp_ok((SELECT gap FROM gaps WHERE attempt = 3), '<', 3.8,
              'permanent: ... and before 3.8 s');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM permanent_items WHERE id % 4 <> 3),
          '0 of 300',
          'permanent: the other instances processed their rows exactly once');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM permanent_items
            WHERE id % 4 = 3 AND id <= 199),
          '0 of 50',
          'permanent: instance 3 processed its rows up to its cursor exactly once');
SELECT is((SELECT count(*) FILTER (WHERE n <> 0) || ' of ' || count(*) FROM permanent_items
            WHERE id % 4 = 3 AND id > 199),
          '0 of 50',
          'permanent: instance 3''s failing batch rolled back; nothing after it ran');

SELECT is((SELECT (state, last_error, finished_at IS NOT NULL, instances_done)::text FROM iterjob.job_progress
            WHERE job_id = :permanent_job),
          '(failed,"division by zero",t,4)',
          'permanent: job_progress: failed, last_error division by zero, finished, 4 instances done');

-- fix the cause; retry() requeues instance 3 from cursor 199
CREATE TABLE before_retry AS
SELECT instance, batches_done, rows_done, finished_at
  FROM iterjob.task_progress WHERE job_id = :permanent_job;
UPDATE ctl SET ok = true WHERE job = 'permanent';

-- checked before the commit, which lets workers claim the task
BEGIN;
SELECT is(iterjob.retry(:permanent_job), 'running', 'permanent: retry() on the failed job returns running');
SELECT is((SELECT (state, attempts)::text FROM iterjob.task_progress
            WHERE job_id = :permanent_job AND instance = 3),
          '(queued,0)',
          'permanent: retry() requeued the failed task with fresh attempts');
COMMIT;

SELECT is(iterjob.wait(:permanent_job, '60 s'), 'succeeded', 'permanent: after retry() the job succeeds');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM permanent_items),
          '0 of 400',
          'permanent: every row processed exactly once: instance 3 resumed from its checkpoint');

SELECT is((SELECT (state, attempts, rows_done, batches_done)::text FROM iterjob.task_progress
            WHERE job_id = :permanent_job AND instance = 3),
          '(succeeded,0,100,10)',
          'permanent: instance 3 succeeded: 100 rows in 10 batches, attempts 0');

SELECT is((SELECT array_agg((t.state, t.batches_done, t.rows_done, t.finished_at = b.finished_at)::text
                            ORDER BY t.instance)
             FROM iterjob.task_progress t JOIN before_retry b USING (instance)
            WHERE t.job_id = :permanent_job AND t.instance <> 3),
          ARRAY['(succeeded,10,100,t)', '(succeeded,10,100,t)', '(succeeded,10,100,t)'],
          'permanent: retry() left the succeeded instances alone');

SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :permanent_job), 3::bigint,
          'permanent: no new error after the retry');

SELECT ok((SELECT finished_at > (SELECT max(finished_at) FROM before_retry)
             FROM iterjob.job_progress WHERE job_id = :permanent_job),
          'permanent: the job''s finished_at is that of its second ending');

-- 3. lock_timeout ---------------------------------------------------------------

CREATE EXTENSION dblink;

-- dblink does not inherit psql's PGHOST/PGPORT: name the socket and port.
SELECT format('host=%s port=%s user=%s dbname=%s',
              trim(split_part(current_setting('unix_socket_directories'), ',', 1)),
              current_setting('port'), current_user, current_database()) AS conn \gset

CREATE TABLE lock_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO lock_items (id) SELECT generate_series(1, 20);

-- another session holds a row lock on key 7, in instance 1's first batch
SELECT dblink_connect('locker', :'conn') AS connected \gset
SELECT dblink_exec('locker', 'BEGIN') AS began \gset
SELECT is((SELECT id FROM dblink('locker', 'SELECT id FROM lock_items WHERE id = 7 FOR UPDATE') AS r(id bigint)),
          7::bigint,
          'lock: another session holds a row lock on key 7');

SELECT iterjob.enqueue('lock_items', 'UPDATE lock_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 5,
                       lock_timeout => '200ms', max_attempts => 2) AS lock_job \gset

SELECT is(iterjob.wait(:lock_job, '60 s'), 'failed', 'lock: the job fails');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :lock_job),
          ARRAY['succeeded', 'failed'],
          'lock: the instance that needs the locked row failed, the other succeeded');

-- Instance 1's batches halve around key 7 (timeouts of batches of more
-- than one key are not failed attempts): 1,3,5,7,9 times out, 1,3 commits,
-- 5,7,9,11 and 5,7 time out, 5 commits, 7,9 times out, and 7 alone fails
-- its two attempts.
SELECT is((SELECT array_agg(row(instance, attempt, cursor, sqlstate, message)::text ORDER BY attempt)
             FROM iterjob.errors WHERE job_id = :lock_job),
          ARRAY['(1,1,"{""instance"": 1, ""inner_cursor"": 5}",55P03,"canceling statement due to lock timeout")',
                '(1,2,"{""instance"": 1, ""inner_cursor"": 5}",55P03,"canceling statement due to lock timeout")'],
          'lock: 2 error rows of instance 1, from the cursor halving reached (5): 55P03 canceling statement due to lock timeout');

SELECT cmp_ok((SELECT min(e.logged_at) - t.started_at FROM iterjob.errors e, iterjob.task_progress t
                WHERE e.job_id = :lock_job AND t.job_id = :lock_job AND t.instance = 1
                GROUP BY t.started_at),
              '<', interval '4 s',
              'lock: the first failed attempt came after five lock timeouts of about 200 ms (the default 5 s lock_timeout would take longer)');
SELECT cmp_ok((SELECT max(logged_at) - min(logged_at) FROM iterjob.errors WHERE job_id = :lock_job),
              '<', interval '2.5 s',
              'lock: the second attempt gave up 1 s backoff + about 200 ms later');

SELECT is((SELECT string_agg(id || ':' || n, ',' ORDER BY id) FROM lock_items WHERE id % 2 = 1),
          '1:1,3:1,5:1,7:0,9:0,11:0,13:0,15:0,17:0,19:0',
          'lock: instance 1 processed the keys before the locked one, once, and none after it');

SELECT is(dblink_exec('locker', 'COMMIT'), 'COMMIT', 'lock: the other session releases the lock');
SELECT dblink_disconnect('locker') AS disconnected \gset

SELECT is(iterjob.retry(:lock_job), 'running', 'lock: retry() returns running');
SELECT is(iterjob.wait(:lock_job, '60 s'), 'succeeded', 'lock: after the lock is released, the retried job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM lock_items),
          '0 of 20',
          'lock: every row processed exactly once');

-- 4. statement_timeout ---------------------------------------------------------------

-- each batch sleeps 1 s; the limit is 300 ms
CREATE TABLE stmt_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO stmt_items (id) SELECT generate_series(1, 20);

SELECT iterjob.enqueue('stmt_items',
       'WITH s AS (SELECT pg_sleep(1)) UPDATE stmt_items SET n = n + 1 FROM s WHERE stmt_items.id = ANY($1)',
       batch_size => 5, statement_timeout => '300ms', max_attempts => 2) AS stmt_job \gset

SELECT is(iterjob.wait(:stmt_job, '60 s'), 'failed', 'statement_timeout: the job fails');

SELECT is((SELECT (state, attempts, last_error)::text FROM iterjob.task_progress WHERE job_id = :stmt_job),
          '(failed,2,"canceling statement due to statement timeout")',
          'statement_timeout: the task failed after max_attempts = 2 attempts');

SELECT is((SELECT array_agg(row(attempt, sqlstate, message)::text ORDER BY attempt)
             FROM iterjob.errors WHERE job_id = :stmt_job),
          ARRAY['(1,57014,"canceling statement due to statement timeout")',
                '(2,57014,"canceling statement due to statement timeout")'],
          'statement_timeout: 2 error rows: 57014 canceling statement due to statement timeout');

-- batches of 5, then 2 keys time out first, retried at once at half size
SELECT cmp_ok((SELECT min(e.logged_at) - t.started_at FROM iterjob.errors e, iterjob.task_progress t
                WHERE e.job_id = :stmt_job AND t.job_id = :stmt_job
                GROUP BY t.started_at),
              '<', interval '2.7 s',
              'statement_timeout: the first failed attempt (of one key) came after three timeouts of about 300 ms, each before its 1 s sleep ended');

SELECT is((SELECT count(*) FROM stmt_items WHERE n <> 0), 0::bigint,
          'statement_timeout: nothing was processed (both attempts rolled back)');

-- The task failed when its second attempt was cancelled, not when that
-- attempt started (300 ms earlier).
SELECT cmp_ok((SELECT finished_at FROM iterjob.task_progress WHERE job_id = :stmt_job),
              '>=',
              (SELECT max(logged_at) FROM iterjob.errors WHERE job_id = :stmt_job),
              'statement_timeout: the failed task''s finished_at is not before the error that failed it');

-- The limit covers the whole batch: a filter that takes 0.1 s per row
-- makes the keyset query of a 2-key batch take 0.2 s, the action sleeps
-- 0.25 s.  Each statement stays under 300 ms, the batch does not (nor
-- does the batch of one key it is retried as: 0.1 s + 0.25 s).
CREATE FUNCTION slow_true() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_sleep(0.1);
    RETURN true;
END
$$;
CREATE TABLE whole_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO whole_items (id) SELECT generate_series(1, 4);

SELECT iterjob.enqueue('whole_items',
       'WITH s AS (SELECT pg_sleep(0.25)) UPDATE whole_items SET n = n + 1 FROM s WHERE whole_items.id = ANY($1)',
       batch_size => 2, filter => 'slow_true()',
       statement_timeout => '300ms', max_attempts => 1) AS whole_job \gset
SELECT is(iterjob.wait(:whole_job, '60 s'), 'failed',
          'statement_timeout over a whole batch: keyset query 0.2 s + action 0.25 s > 300 ms fails');
SELECT is((SELECT array_agg(sqlstate) FROM iterjob.errors WHERE job_id = :whole_job),
          ARRAY['57014'],
          'statement_timeout over a whole batch: one error row, 57014');

-- the same job with room for the whole batch succeeds
SELECT iterjob.enqueue('whole_items',
       'WITH s AS (SELECT pg_sleep(0.25)) UPDATE whole_items SET n = n + 1 FROM s WHERE whole_items.id = ANY($1)',
       batch_size => 2, filter => 'slow_true()',
       statement_timeout => '2s', max_attempts => 1) AS whole_ok_job \gset
SELECT is(iterjob.wait(:whole_ok_job, '60 s'), 'succeeded',
          'statement_timeout over a whole batch: the same job with a 2 s limit succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM whole_items),
          '0 of 4',
          'statement_timeout over a whole batch: rows processed once, by the second job only');

-- 5. Objects disappearing under a running job -----------------------------------------

-- 2 instances x 4 batches x 0.2 s
CREATE TABLE drop_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO drop_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('drop_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE drop_items SET n = n + 1 FROM s WHERE drop_items.id = ANY($1)',
       instances => 2, batch_size => 5) AS drop_job \gset

SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :drop_job)),
          'dropped: the slow job runs (both instances committed a batch)');

-- DROP TABLE waits for the batches in flight; never for ever
SET lock_timeout = '10s';
DROP TABLE drop_items;
RESET lock_timeout;

SELECT is(iterjob.wait(:drop_job, '30 s'), 'failed', 'dropped: the job fails');

SELECT is((SELECT array_agg(state ORDER BY instance) || bool_and(attempts <= 1)::text FROM iterjob.task_progress
            WHERE job_id = :drop_job),
          ARRAY['failed', 'failed', 'true'],
          'dropped: both tasks failed at once, after 1 attempt at most (the first failure fails the job)');

SELECT is((SELECT array_agg(DISTINCT sqlstate) FROM iterjob.errors WHERE job_id = :drop_job),
          ARRAY['42P01'],
          'dropped: the error is 42P01 undefined_table');

SELECT ok((SELECT count(*) BETWEEN 1 AND 2
                  AND bool_and(message ~ '^relation .*drop_items.* of iterjob job \d+ was dropped$')
             FROM iterjob.errors WHERE job_id = :drop_job),
          'dropped: an error row per instance at most: relation ... of iterjob job ... was dropped');

SELECT ok((SELECT last_error ~ '^relation .*drop_items.* of iterjob job \d+ was dropped$'
             FROM iterjob.job_progress WHERE job_id = :drop_job),
          'dropped: job_progress.last_error says the relation was dropped');

SELECT count(*) AS drop_errors FROM iterjob.errors WHERE job_id = :drop_job \gset
SELECT pg_sleep(2) AS slept \gset

SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :drop_job), :drop_errors::bigint,
          'dropped: 2 s later no more error rows: no worker loops on the missing relation');

SELECT is(tap_active_workers(:drop_job), 0::bigint, 'dropped: no worker runs a batch of the job');

-- a column of the action renamed
CREATE TABLE rename_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO rename_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('rename_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE rename_items SET n = n + 1 FROM s WHERE rename_items.id = ANY($1)',
       batch_size => 5) AS rename_job \gset

SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :rename_job)),
          'renamed column: the slow job runs');

SET lock_timeout = '10s';
ALTER TABLE rename_items RENAME COLUMN n TO m;
RESET lock_timeout;

SELECT is(iterjob.wait(:rename_job, '30 s'), 'failed', 'renamed column: the job fails');

SELECT is((SELECT (state, attempts, last_error)::text FROM iterjob.task_progress WHERE job_id = :rename_job),
          '(failed,1,"column ""n"" does not exist")',
          'renamed column: the task failed at once: column "n" does not exist');

SELECT is((SELECT array_agg(row(attempt, sqlstate, message)::text) FROM iterjob.errors WHERE job_id = :rename_job),
          ARRAY['(1,42703,"column ""n"" does not exist")'],
          'renamed column: one error row, 42703 undefined_column');

SELECT is((SELECT count(*) FILTER (WHERE m <> 1) || ' of ' || count(*) FROM rename_items r, iterjob.task_progress t
            WHERE t.job_id = :rename_job AND r.id <= (t.cursor->>'inner_cursor')::bigint),
          (SELECT '0 of ' || (cursor->>'inner_cursor') FROM iterjob.task_progress WHERE job_id = :rename_job),
          'renamed column: the rows up to the cursor were processed once');

-- the key column renamed: the keyset query fails
CREATE TABLE rekey_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO rekey_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('rekey_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE rekey_items SET n = n + 1 FROM s WHERE rekey_items.id = ANY($1)',
       instances => 2, batch_size => 5) AS rekey_job \gset

SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :rekey_job)),
          'renamed key: the slow job runs');

SET lock_timeout = '10s';
ALTER TABLE rekey_items RENAME COLUMN id TO key;
RESET lock_timeout;

SELECT is(iterjob.wait(:rekey_job, '30 s'), 'failed', 'renamed key: the job fails');

SELECT is((SELECT array_agg(state ORDER BY instance) || bool_and(attempts <= 1)::text FROM iterjob.task_progress
            WHERE job_id = :rekey_job),
          ARRAY['failed', 'failed', 'true'],
          'renamed key: both tasks failed at once, after 1 attempt at most');

SELECT is((SELECT array_agg(DISTINCT row(sqlstate, message)::text) FROM iterjob.errors
            WHERE job_id = :rekey_job),
          ARRAY['(42703,"key column ""id"" of relation public.rekey_items no longer exists")'],
          'renamed key: 42703, key column "id" no longer exists');

-- 6. pg_cancel_backend() -----------------------------------------------------------

-- Between batches: the worker sleeps 2 s after each batch of 10.
CREATE TABLE cancel_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cancel_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('cancel_items', 'UPDATE cancel_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10, batch_pause => '2s') AS cancel_job \gset

SELECT ok(tap_wait_until(format($c$EXISTS (SELECT FROM iterjob.workers
                                             WHERE job_id = %s AND phase = 'throttled')$c$, :cancel_job)),
          'cancel between batches: the worker sleeps between two batches');
SELECT pid AS cancel_pid, batch AS cancel_batch FROM iterjob.workers WHERE job_id = :cancel_job \gset
SELECT ok(pg_cancel_backend(:cancel_pid), 'cancel between batches: pg_cancel_backend() signals the worker');

SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.task_progress WHERE job_id = %s) >= %s',
                                :cancel_job, :cancel_batch)),
          'cancel between batches: the next batch commits');
SELECT is((SELECT t.worker_pid FROM iterjob.task t JOIN pg_stat_activity a ON a.pid = t.worker_pid
            WHERE t.job_id = :cancel_job AND a.backend_type = 'iterjob worker'), :cancel_pid,
          'cancel between batches: the worker that was cancelled is alive and still runs the task');
SELECT is(iterjob.wait(:cancel_job, '60 s'), 'succeeded', 'cancel between batches: the job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM cancel_items),
          '0 of 40', 'cancel between batches: every row processed exactly once');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :cancel_job), 0::bigint,
          'cancel between batches: no failed attempt');

-- In a batch: the action sleeps while ctl.cancel is off.
CREATE TABLE cancel_batch_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cancel_batch_items (id) SELECT generate_series(1, 20);

SELECT iterjob.enqueue('cancel_batch_items',
       $a$UPDATE cancel_batch_items SET n = n + 1
           WHERE id = ANY($1)
             AND (SELECT ok OR pg_sleep(60) IS NULL FROM ctl WHERE job = 'cancel')$a$,
       batch_size => 10) AS cancel_batch_job \gset

SELECT ok(tap_wait_until(format($c$EXISTS (SELECT FROM pg_stat_activity
                                             WHERE backend_type = 'iterjob worker' AND wait_event = 'PgSleep'
                                               AND query LIKE 'iterjob job %s instance %%')$c$,
                                :cancel_batch_job)),
          'cancel in a batch: the action sleeps');
UPDATE ctl SET ok = true WHERE job = 'cancel';
SELECT ok(pg_cancel_backend(pid), 'cancel in a batch: pg_cancel_backend() signals the worker')
  FROM iterjob.workers WHERE job_id = :cancel_batch_job;

SELECT is(iterjob.wait(:cancel_batch_job, '60 s'), 'succeeded', 'cancel in a batch: the job succeeds');
SELECT is((SELECT array_agg(row(attempt, cursor, sqlstate, message)::text) FROM iterjob.errors
            WHERE job_id = :cancel_batch_job),
          ARRAY['(1,"{""instance"": 0, ""inner_cursor"": null}",57014,"canceling statement due to user request")'],
          'cancel in a batch: one failed attempt, 57014 canceling statement due to user request');
SELECT is((SELECT (state, attempts, rows_done, batches_done)::text FROM iterjob.task_progress
            WHERE job_id = :cancel_batch_job),
          '(succeeded,0,20,2)',
          'cancel in a batch: the batch ran again and the task succeeded');
SELECT cmp_ok((SELECT j.finished_at - e.logged_at FROM iterjob.job_progress j, iterjob.errors e
                WHERE j.job_id = :cancel_batch_job AND e.job_id = :cancel_batch_job),
              '>=', interval '0.9 s',
              'cancel in a batch: the retry came after the backoff of 1 s');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM cancel_batch_items),
          '0 of 20', 'cancel in a batch: every row processed exactly once');

-- 7. A statement that fails to prepare, after a resume ---------------------------

-- The action reads prep_gate, which another session locks while the job
-- is paused: at the resume, the keyset queries prepare and the action
-- waits for its lock until lock_timeout.
CREATE TABLE prep_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO prep_items (id) SELECT generate_series(1, 40);
CREATE TABLE prep_gate (ok boolean NOT NULL);
INSERT INTO prep_gate VALUES (true);

SELECT iterjob.enqueue('prep_items',
       'UPDATE prep_items SET n = n + 1 WHERE id = ANY($1) AND (SELECT bool_and(ok) FROM prep_gate)',
       batch_size => 10, batch_pause => '1s', lock_timeout => '300ms') AS prep_job \gset

SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.task_progress WHERE job_id = %s) >= 2',
                                :prep_job)),
          'prepare: the job committed 2 batches');
SELECT is(iterjob.pause(:prep_job), 'paused', 'prepare: paused');
SELECT ok(tap_wait_until(format($c$(SELECT state FROM iterjob.task WHERE job_id = %1$s) = 'paused'
                                   AND NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %1$s)$c$,
                                :prep_job), '10 s'),
          'prepare: no worker is on the paused task');
SELECT (cursor ->> 'inner_cursor')::bigint AS prep_cursor FROM iterjob.task WHERE job_id = :prep_job \gset

SELECT dblink_connect('gate', :'conn') AS connected \gset
SELECT dblink_exec('gate', 'BEGIN') AS began \gset
SELECT is(dblink_exec('gate', 'LOCK prep_gate IN ACCESS EXCLUSIVE MODE'), 'LOCK TABLE',
          'prepare: another session locks the table the action reads');

SELECT is(iterjob.resume(:prep_job), 'running', 'prepare: resumed');
SELECT ok(tap_wait_until(format('EXISTS (SELECT FROM iterjob.errors WHERE job_id = %s)', :prep_job)),
          'prepare: the first batch after the resume fails');
SELECT is(dblink_exec('gate', 'COMMIT'), 'COMMIT', 'prepare: the other session releases its lock');
SELECT dblink_disconnect('gate') AS disconnected \gset

SELECT is((SELECT row(attempt, (cursor ->> 'inner_cursor')::bigint, sqlstate, message)::text
             FROM iterjob.errors WHERE job_id = :prep_job ORDER BY attempt LIMIT 1),
          format('(1,%s,55P03,"canceling statement due to lock timeout")', :prep_cursor),
          'prepare: a failed attempt from the stored cursor: 55P03 canceling statement due to lock timeout');
SELECT is(iterjob.wait(:prep_job, '60 s'), 'succeeded', 'prepare: the job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM prep_items),
          '0 of 40',
          'prepare: every row processed exactly once: the retry started from the stored cursor');
-- a failure to prepare fetched no keys: no batch to halve, the size stays
SELECT is((SELECT (state, attempts, rows_done, batches_done)::text FROM iterjob.task_progress
            WHERE job_id = :prep_job),
          '(succeeded,0,40,4)',
          'prepare: the task succeeded: 40 rows in 4 batches');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :prep_job AND sqlstate <> '55P03'), 0::bigint,
          'prepare: every failed attempt was the lock timeout');

SELECT * FROM finish();
