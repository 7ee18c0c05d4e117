-- control.sql: iterjob.pause(), resume(), cancel() and retry() on real
-- jobs run by background workers: what each does in each state, which
-- calls are no-ops and which are errors, and that a paused or cancelled job
-- really stops at a batch boundary with its checkpoints intact.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).
--
--   1. pause a running job: it stops at a batch boundary, keeps its
--      cursors, and resume finishes it with every row processed once
--   2. pause then resume while a batch is in flight: no error, exactly once
--   3. cancel a running job: it stops for good, work = what its cursors say
--   4. pause or cancel while a failed batch waits for its retry
--   5. steering a job in the transaction that enqueues it
--   6. the state table of README.md: no-ops, errors, unknown and NULL ids
--   7. pausing a job whose instances are on their last batch (with
--      iterjob.trail_instances off, so that both have a batch in flight)
--   8. pause and cancel racing the ends of 100 short jobs: no deadlock

SET client_min_messages = warning;

SELECT plan(119);

-- Helpers -----------------------------------------------------------------

-- Rows of tbl (columns id, n) that contradict job p_job's checkpoints: a
-- row must have n = 1 if its key is at most its instance's cursor, else
-- n = 0.  0 means the committed work is exactly what the cursors say.
CREATE FUNCTION tap_mismatches(tbl regclass, p_job bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    EXECUTE format(
        'SELECT count(*) FROM %s i
           JOIN iterjob.task_progress t
             ON t.job_id = $1
            AND t.instance = i.id %% (SELECT instances FROM iterjob.job_progress WHERE job_id = $1)
          WHERE i.n NOT IN (0, 1)
             OR (i.n = 1) <> (i.id <= coalesce((t.cursor->>''inner_cursor'')::bigint, 0))',
        tbl) INTO r USING p_job;
    RETURN r;
END
$$;

-- What a job has done so far, to compare snapshots taken a while apart.
CREATE TABLE snaps (label text PRIMARY KEY, rows_done bigint, batches_done bigint,
                    cursors jsonb, updated jsonb, rows_touched bigint, errors bigint);
CREATE FUNCTION tap_snap(p_label text, p_job bigint, tbl regclass)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    touched bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE n <> 0', tbl) INTO touched;
    INSERT INTO snaps
    SELECT p_label, sum(rows_done), sum(batches_done),
           jsonb_agg(cursor ORDER BY instance), jsonb_agg(updated_at ORDER BY instance),
           touched,
           (SELECT count(*) FROM iterjob.errors WHERE job_id = p_job)
      FROM iterjob.task_progress WHERE job_id = p_job;
END
$$;

-- 1. Pause a running job ----------------------------------------------------------

-- 2 instances x 8 batches x 0.3 s: about 2.4 s of work.
CREATE TABLE pause_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO pause_items (id) SELECT generate_series(1, 80);

SELECT iterjob.enqueue('pause_items',
       'WITH s AS (SELECT pg_sleep(0.3)) UPDATE pause_items SET n = n + 1 FROM s WHERE pause_items.id = ANY($1)',
       instances => 2, batch_size => 5) AS pause_job \gset

SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :pause_job)),
          'pause: the slow job runs (both instances committed a batch)');

SELECT is(iterjob.pause(:pause_job), 'paused', 'pause() on a running job returns paused');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :pause_job),
          ARRAY['paused', 'paused'],
          'pause: both tasks are paused');

SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0', :pause_job), '1 s'),
          'pause: within about a batch time no worker runs a batch of the paused job');

SELECT tap_snap('pause-1', :pause_job, 'pause_items') AS snap \gset
-- more than 2 batch times
SELECT pg_sleep(0.7) AS slept \gset
SELECT tap_snap('pause-2', :pause_job, 'pause_items') AS snap \gset

SELECT cmp_ok((SELECT rows_done FROM snaps WHERE label = 'pause-1'), '<', 80::bigint,
              'pause: the job was paused before it ended (the test is not vacuous)');

SELECT is((SELECT (rows_done, batches_done, rows_touched)::text FROM snaps WHERE label = 'pause-2'),
          (SELECT (rows_done, batches_done, rows_touched)::text FROM snaps WHERE label = 'pause-1'),
          'pause: after 2 more batch times, no more rows or batches were done');

SELECT is((SELECT cursors FROM snaps WHERE label = 'pause-2'),
          (SELECT cursors FROM snaps WHERE label = 'pause-1'),
          'pause: the cursors keep their values');

SELECT is(tap_mismatches('pause_items', :pause_job), 0::bigint,
          'pause: the rows up to each instance''s cursor were processed once, the others not at all');

SELECT is((SELECT rows_done::bigint FROM snaps WHERE label = 'pause-1'),
          (SELECT count(*) FROM pause_items WHERE n = 1),
          'pause: rows_done = rows processed');

SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :pause_job), 'paused',
          'pause: job_progress shows the job paused');

SELECT is(iterjob.resume(:pause_job), 'running', 'resume() on a paused job that had started returns running');

SELECT is(iterjob.wait(:pause_job, '60 s'), 'succeeded', 'pause: the resumed job succeeds');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM pause_items),
          '0 of 80',
          'pause: every row processed exactly once across the pause');

SELECT is((SELECT (rows_done, batches_done)::text FROM iterjob.job_progress WHERE job_id = :pause_job),
          '(80,16)',
          'pause: 80 rows in 16 batches in all: no batch was counted twice');

SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :pause_job), 0::bigint,
          'pause: the pause and the resume logged no error');

-- 2. Pause then resume while a batch is in flight ---------------------------------

-- The batch in flight commits after both calls.  It must commit (or at
-- worst be redone) without an error: nothing failed.
CREATE TABLE flight_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO flight_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('flight_items',
       'WITH s AS (SELECT pg_sleep(0.3)) UPDATE flight_items SET n = n + 1 FROM s WHERE flight_items.id = ANY($1)',
       batch_size => 5) AS flight_job \gset

SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.task_progress WHERE job_id = %s) >= 1
                                 AND tap_active_workers(%s) = 1', :flight_job, :flight_job)),
          'in flight: the slow job runs a batch');

SELECT is(iterjob.pause(:flight_job), 'paused', 'in flight: pause() returns paused');
SELECT is(iterjob.resume(:flight_job), 'running', 'in flight: resume() at once returns running');

SELECT is(iterjob.wait(:flight_job, '60 s'), 'succeeded', 'in flight: the job succeeds');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM flight_items),
          '0 of 40',
          'in flight: every row processed exactly once');

SELECT is((SELECT coalesce(string_agg(sqlstate || ' ' || message, '; '), '') FROM iterjob.errors
            WHERE job_id = :flight_job),
          '',
          'in flight: pausing and resuming while a batch runs logs no error for the job');

SELECT is((SELECT (attempts, last_error)::text FROM iterjob.task_progress WHERE job_id = :flight_job),
          '(0,)',
          'in flight: the task has no failed attempt and no last_error');

-- 3. Cancel a running job ----------------------------------------------------------

CREATE TABLE cancel_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cancel_items (id) SELECT generate_series(1, 80);

SELECT iterjob.enqueue('cancel_items',
       'WITH s AS (SELECT pg_sleep(0.3)) UPDATE cancel_items SET n = n + 1 FROM s WHERE cancel_items.id = ANY($1)',
       instances => 2, batch_size => 5) AS cancel_job \gset

SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 1',
                                :cancel_job)),
          'cancel: the slow job runs (both instances committed a batch)');

SELECT is(iterjob.cancel(:cancel_job), 'cancelled', 'cancel() on a running job returns cancelled');

SELECT is(iterjob.wait(:cancel_job, '5 s'), 'cancelled', 'cancel: wait() returns cancelled');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :cancel_job),
          ARRAY['cancelled', 'cancelled'],
          'cancel: both tasks are cancelled');

SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0', :cancel_job), '1 s'),
          'cancel: within about a batch time no worker runs a batch of the cancelled job');

SELECT tap_snap('cancel-1', :cancel_job, 'cancel_items') AS snap \gset
SELECT pg_sleep(1) AS slept \gset
SELECT tap_snap('cancel-2', :cancel_job, 'cancel_items') AS snap \gset

SELECT cmp_ok((SELECT rows_done FROM snaps WHERE label = 'cancel-1'), '<', 80::bigint,
              'cancel: the job was cancelled before it ended (the test is not vacuous)');

SELECT is((SELECT (rows_done, batches_done, rows_touched, cursors)::text FROM snaps WHERE label = 'cancel-2'),
          (SELECT (rows_done, batches_done, rows_touched, cursors)::text FROM snaps WHERE label = 'cancel-1'),
          'cancel: no further batch ran (rows, batches, rows touched and cursors unchanged after 1 s)');

SELECT is(tap_mismatches('cancel_items', :cancel_job), 0::bigint,
          'cancel: the rows processed are exactly those up to each instance''s final cursor, once');

SELECT is((SELECT rows_done::bigint FROM snaps WHERE label = 'cancel-2'),
          (SELECT count(*) FROM cancel_items WHERE n = 1),
          'cancel: rows_done = rows processed');

SELECT ok((SELECT finished_at IS NOT NULL FROM iterjob.job_progress WHERE job_id = :cancel_job)
          AND (SELECT bool_and(finished_at IS NOT NULL) FROM iterjob.task_progress WHERE job_id = :cancel_job),
          'cancel: the job and its tasks have finished_at set');

SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :cancel_job), 0::bigint,
          'cancel: the cancel logged no error');

-- 4. Pause or cancel while a failed batch waits for its retry -----------------------

-- The third batch (keys 11..15) fails while ctl.ok is false; the worker
-- then sleeps 1 s before retrying.  A pause or cancel in that sleep must
-- hold: no batch may start, let alone commit, after it, even once the
-- cause is fixed.
CREATE TABLE ctl (job text PRIMARY KEY, ok boolean NOT NULL);
INSERT INTO ctl VALUES ('backoff_cancel', false), ('backoff_pause', false);

CREATE TABLE backoff_cancel_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO backoff_cancel_items (id) SELECT generate_series(1, 40);
CREATE TABLE backoff_pause_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO backoff_pause_items (id) SELECT generate_series(1, 40);

SELECT iterjob.enqueue('backoff_cancel_items',
       $a$UPDATE backoff_cancel_items
             SET n = n + 1 / (SELECT CASE WHEN ok OR NOT 13 = ANY($1) THEN 1 ELSE 0 END
                                FROM ctl WHERE job = 'backoff_cancel')
           WHERE id = ANY($1)$a$,
       batch_size => 5) AS bc_job \gset

SELECT ok(tap_wait_until(format('EXISTS (SELECT 1 FROM iterjob.errors WHERE job_id = %s)', :bc_job)),
          'backoff cancel: the third batch failed once');

SELECT is(iterjob.cancel(:bc_job), 'cancelled', 'backoff cancel: cancel() during the retry backoff returns cancelled');
UPDATE ctl SET ok = true WHERE job = 'backoff_cancel';
-- the retry was due 1 s after the failure; a retried batch takes a few ms
SELECT tap_snap('bc-1', :bc_job, 'backoff_cancel_items') AS snap \gset
SELECT pg_sleep(2) AS slept \gset
SELECT tap_snap('bc-2', :bc_job, 'backoff_cancel_items') AS snap \gset

SELECT is((SELECT (rows_done, batches_done, rows_touched, cursors)::text FROM snaps WHERE label = 'bc-2'),
          '(10,2,10,"[{""instance"": 0, ""inner_cursor"": 10}]")',
          'backoff cancel: no batch committed after the cancel: 10 rows, 2 batches, cursor still 10');

SELECT is((SELECT count(*) FILTER (WHERE n <> 0) FROM backoff_cancel_items WHERE id > 10), 0::bigint,
          'backoff cancel: the failed batch''s rows (11..15) were not processed after the cancel');

SELECT is((SELECT errors FROM snaps WHERE label = 'bc-2'), 1::bigint,
          'backoff cancel: no attempt was made after the cancel (1 error row)');

SELECT iterjob.enqueue('backoff_pause_items',
       $a$UPDATE backoff_pause_items
             SET n = n + 1 / (SELECT CASE WHEN ok OR NOT 13 = ANY($1) THEN 1 ELSE 0 END
                                FROM ctl WHERE job = 'backoff_pause')
           WHERE id = ANY($1)$a$,
       batch_size => 5) AS bp_job \gset

SELECT ok(tap_wait_until(format('EXISTS (SELECT 1 FROM iterjob.errors WHERE job_id = %s)', :bp_job)),
          'backoff pause: the third batch failed once');

SELECT is(iterjob.pause(:bp_job), 'paused', 'backoff pause: pause() during the retry backoff returns paused');
UPDATE ctl SET ok = true WHERE job = 'backoff_pause';
SELECT pg_sleep(2) AS slept \gset
SELECT tap_snap('bp-2', :bp_job, 'backoff_pause_items') AS snap \gset

SELECT is((SELECT (rows_done, batches_done, rows_touched, cursors)::text FROM snaps WHERE label = 'bp-2'),
          '(10,2,10,"[{""instance"": 0, ""inner_cursor"": 10}]")',
          'backoff pause: no batch committed while paused: 10 rows, 2 batches, cursor still 10');

SELECT is(iterjob.resume(:bp_job), 'running', 'backoff pause: resume() returns running');
SELECT is(iterjob.wait(:bp_job, '60 s'), 'succeeded', 'backoff pause: the resumed job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM backoff_pause_items),
          '0 of 40',
          'backoff pause: every row processed exactly once');

-- 5. Steering a job in the transaction that enqueues it -----------------------------

CREATE TABLE queued_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO queued_items (id) SELECT generate_series(1, 30);

BEGIN;
SELECT iterjob.enqueue('queued_items', 'UPDATE queued_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 3, batch_size => 4) AS queued_job \gset
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :queued_job),
                 '55000', format('cannot retry iterjob job %s because it is queued', :queued_job),
                 'retry() on a queued job: error 55000');
SELECT is(iterjob.resume(:queued_job), 'queued', 'resume() on a queued job: no-op, returns queued');
SELECT is(iterjob.pause(:queued_job), 'paused', 'pause() on a queued job returns paused');
COMMIT;

-- time enough for a worker to have run all 9 batches
SELECT pg_sleep(1) AS slept \gset

SELECT is((SELECT (state, started_at IS NULL, rows_done)::text FROM iterjob.job_progress WHERE job_id = :queued_job),
          '(paused,t,0)',
          'paused in its enqueuing transaction: after the commit the job stays paused, never started');
SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :queued_job),
          ARRAY['paused', 'paused', 'paused'],
          'paused in its enqueuing transaction: its 3 tasks are paused');
SELECT is((SELECT count(*) FROM queued_items WHERE n <> 0), 0::bigint,
          'paused in its enqueuing transaction: nothing ran');

-- the paused no-op must not touch the tasks
SELECT (SELECT jsonb_agg(updated_at ORDER BY instance) FROM iterjob.task_progress
         WHERE job_id = :queued_job) AS paused_updated \gset
SELECT is(iterjob.pause(:queued_job), 'paused', 'pause() on a paused job: no-op, returns paused');
SELECT is((SELECT jsonb_agg(updated_at ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :queued_job),
          :'paused_updated'::jsonb,
          'pause() on a paused job leaves its tasks untouched');
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :queued_job),
                 '55000', format('cannot retry iterjob job %s because it is paused', :queued_job),
                 'retry() on a paused job: error 55000');

SELECT is(iterjob.resume(:queued_job), 'queued', 'resume() on a paused job that never started returns queued');
SELECT is(iterjob.wait(:queued_job, '60 s'), 'succeeded', 'the resumed never-started job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM queued_items),
          '0 of 30',
          'the resumed never-started job processed every row exactly once');

-- Cancelled in its enqueuing transaction: never runs.
CREATE TABLE never_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO never_items (id) SELECT generate_series(1, 30);
BEGIN;
SELECT iterjob.enqueue('never_items', 'UPDATE never_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 4) AS never_job \gset
SELECT is(iterjob.cancel(:never_job), 'cancelled', 'cancel() on a queued job returns cancelled');
COMMIT;
SELECT is(iterjob.wait(:never_job, '5 s'), 'cancelled', 'the job cancelled in its enqueuing transaction: wait() returns cancelled');
SELECT pg_sleep(0.5) AS slept \gset
SELECT is((SELECT count(*) FROM never_items WHERE n <> 0), 0::bigint,
          'the job cancelled in its enqueuing transaction never ran');

-- 6. The state table: no-ops and errors ----------------------------------------------

-- running: resume is a no-op, retry an error
CREATE TABLE run_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO run_items (id) SELECT generate_series(1, 40);
SELECT iterjob.enqueue('run_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE run_items SET n = n + 1 FROM s WHERE run_items.id = ANY($1)',
       batch_size => 5) AS run_job \gset
SELECT ok(tap_wait_until(format('(SELECT state FROM iterjob.job_progress WHERE job_id = %s) = ''running''', :run_job)),
          'the slow job is running');
SELECT is(iterjob.resume(:run_job), 'running', 'resume() on a running job: no-op, returns running');
SELECT is((SELECT state FROM iterjob.task_progress WHERE job_id = :run_job), 'running',
          'resume() on a running job leaves its task running');
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :run_job),
                 '55000', format('cannot retry iterjob job %s because it is running', :run_job),
                 'retry() on a running job: error 55000');
SELECT is(iterjob.wait(:run_job, '60 s'), 'succeeded', 'the running job, steered by no-ops, succeeds');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) FROM run_items), 0::bigint,
          'the running job, steered by no-ops, processed every row exactly once');

-- succeeded: every call is an error, and changes nothing
SELECT throws_ok(format('SELECT iterjob.pause(%s)', :run_job),
                 '55000', format('cannot pause iterjob job %s because it is succeeded', :run_job),
                 'pause() on a succeeded job: error 55000');
SELECT throws_ok(format('SELECT iterjob.resume(%s)', :run_job),
                 '55000', format('cannot resume iterjob job %s because it is succeeded', :run_job),
                 'resume() on a succeeded job: error 55000');
SELECT throws_ok(format('SELECT iterjob.cancel(%s)', :run_job),
                 '55000', format('cannot cancel iterjob job %s because it is succeeded', :run_job),
                 'cancel() on a succeeded job: error 55000');
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :run_job),
                 '55000', format('cannot retry iterjob job %s because it is succeeded', :run_job),
                 'retry() on a succeeded job: error 55000');
SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :run_job), 'succeeded',
          'the refused calls left the job succeeded');

-- failed: pause, resume and cancel are errors (retry is in retries.sql)
CREATE TABLE failed_items (id bigint PRIMARY KEY);
INSERT INTO failed_items (id) SELECT generate_series(1, 10);
SELECT iterjob.enqueue('failed_items', 'SELECT 1 / (k - k) FROM unnest($1) AS k', max_attempts => 1) AS failed_job \gset
SELECT is(iterjob.wait(:failed_job, '30 s'), 'failed', 'a job with max_attempts 1 whose action raises fails');
SELECT throws_ok(format('SELECT iterjob.pause(%s)', :failed_job),
                 '55000', format('cannot pause iterjob job %s because it is failed', :failed_job),
                 'pause() on a failed job: error 55000');
SELECT throws_ok(format('SELECT iterjob.resume(%s)', :failed_job),
                 '55000', format('cannot resume iterjob job %s because it is failed', :failed_job),
                 'resume() on a failed job: error 55000');
SELECT throws_ok(format('SELECT iterjob.cancel(%s)', :failed_job),
                 '55000', format('cannot cancel iterjob job %s because it is failed', :failed_job),
                 'cancel() on a failed job: error 55000');
SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :failed_job), 'failed',
          'the refused calls left the job failed');

-- cancelled: cancel is a no-op; pause, resume and retry are errors
SELECT (SELECT finished_at FROM iterjob.job_progress WHERE job_id = :cancel_job) AS cancel_finished \gset
SELECT is(iterjob.cancel(:cancel_job), 'cancelled', 'cancel() on a cancelled job: no-op, returns cancelled');
SELECT is((SELECT finished_at FROM iterjob.job_progress WHERE job_id = :cancel_job),
          :'cancel_finished'::timestamptz,
          'cancel() on a cancelled job leaves its finished_at alone');
SELECT throws_ok(format('SELECT iterjob.pause(%s)', :cancel_job),
                 '55000', format('cannot pause iterjob job %s because it is cancelled', :cancel_job),
                 'pause() on a cancelled job: error 55000');
SELECT throws_ok(format('SELECT iterjob.resume(%s)', :cancel_job),
                 '55000', format('cannot resume iterjob job %s because it is cancelled', :cancel_job),
                 'resume() on a cancelled job: error 55000');
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :cancel_job),
                 '55000', format('cannot retry iterjob job %s because it is cancelled', :cancel_job),
                 'retry() on a cancelled job: error 55000');
SELECT is((SELECT count(*) FILTER (WHERE n <> 0) FROM cancel_items),
          (SELECT rows_touched FROM snaps WHERE label = 'cancel-2'),
          'the refused calls ran nothing of the cancelled job');

-- unknown and NULL ids
SELECT (SELECT max(id) FROM iterjob.job) + 1000 AS unknown_job \gset
SELECT throws_ok(format('SELECT iterjob.%s(%s)', f, :unknown_job),
                 '42704', format('iterjob job %s does not exist', :unknown_job),
                 format('%s() on an unknown job: error 42704', f))
  FROM unnest(ARRAY['pause', 'resume', 'cancel', 'retry', 'wait']) AS f;
SELECT throws_ok(format('SELECT iterjob.%s(NULL)', f),
                 '22004', 'job_id must not be null',
                 format('%s(NULL): error 22004 (null_value_not_allowed)', f))
  FROM unnest(ARRAY['pause', 'resume', 'cancel', 'retry', 'wait']) AS f;

-- 7. Pausing a job whose instances are on their last batch ----------------------------

-- Both instances must have a batch in flight at once: the instances of a
-- modulo job on an integer key trail one another unless
-- iterjob.trail_instances is off (trail.sql tests the trailing).  From here
-- to the ALTER SYSTEM RESET nothing may stop the file: a statement that
-- fails prints its error and the plan count comes out wrong.
\set ON_ERROR_STOP 0
ALTER SYSTEM SET iterjob.trail_instances = off;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset

-- a) Their last non-empty batch in flight: the pause interrupts it, it
-- rolls back, the tasks stay paused where they were (before their only
-- batch), and resume ends the job.
CREATE TABLE last_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO last_items (id) SELECT generate_series(1, 10);
SELECT iterjob.enqueue('last_items',
       'WITH s AS (SELECT pg_sleep(0.5)) UPDATE last_items SET n = n + 1 FROM s WHERE last_items.id = ANY($1)',
       instances => 2, batch_size => 5) AS last_job \gset
SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 2', :last_job)),
          'last batch: both instances run their one and only batch');
SELECT is(iterjob.pause(:last_job), 'paused', 'last batch: pause() returns paused');
SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0', :last_job), '2 s'),
          'last batch: the batches in flight ended');
SELECT pg_sleep(0.3) AS slept \gset
SELECT is((SELECT array_agg(state || ' ' || coalesce(cursor->>'inner_cursor', 'none') || ' ' || rows_done
                       ORDER BY instance)
             FROM iterjob.task_progress WHERE job_id = :last_job),
          ARRAY['paused none 0', 'paused none 0'],
          'last batch: both batches rolled back: the tasks stay paused with no cursor and no rows done');
SELECT is((SELECT count(*) FROM last_items WHERE n <> 0), 0::bigint,
          'last batch: no row was changed by the rolled-back batches');
SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :last_job), 'paused',
          'last batch: the job stays paused');
SELECT is(iterjob.resume(:last_job), 'running', 'last batch: resume() returns running');
SELECT is(iterjob.wait(:last_job, '30 s'), 'succeeded', 'last batch: after resume the job ends succeeded');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) FROM last_items), 0::bigint,
          'last batch: every row processed exactly once');

-- b) Their final, empty batch in flight: keys 11 and 12 fail the filter,
-- slowly (1 s each), so the batch that finds nothing left takes 1 s; the
-- pause interrupts it, and the tasks stay paused after their last
-- committed batch.  A resume runs the final batches again and ends the
-- job (succeeded); it must not stay paused or running for ever.
CREATE FUNCTION slow_false() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_sleep(1);
    RETURN false;
END
$$;
CREATE TABLE end_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO end_items (id) SELECT generate_series(1, 12);
SELECT iterjob.enqueue('end_items', 'UPDATE end_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 5,
                       filter => 'id <= 10 OR slow_false()') AS end_job \gset
SELECT ok(tap_wait_until(format($c$(SELECT array_agg(cursor->>'inner_cursor' ORDER BY instance)
                                      FROM iterjob.task_progress WHERE job_id = %s) = '{10,9}'$c$, :end_job)),
          'final batch: both instances committed their only non-empty batch');
SELECT is(iterjob.pause(:end_job), 'paused', 'final batch: pause() during the final empty batches returns paused');
SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0', :end_job), '2 s'),
          'final batch: the final batches in flight ended at once');
SELECT is((SELECT array_agg(state || ' ' || (cursor->>'inner_cursor') ORDER BY instance)
             FROM iterjob.task_progress WHERE job_id = :end_job),
          ARRAY['paused 10', 'paused 9'],
          'final batch: both tasks stay paused after their last committed batch');
SELECT is(iterjob.resume(:end_job), 'running', 'final batch: resume() returns running');
SELECT is(iterjob.wait(:end_job, '30 s'), 'succeeded', 'final batch: after resume the job ends succeeded');
SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :end_job),
          ARRAY['succeeded', 'succeeded'],
          'final batch: both tasks succeeded');
SELECT ok((SELECT finished_at IS NOT NULL AND instances_done = 2
             FROM iterjob.job_progress WHERE job_id = :end_job),
          'final batch: the job has finished_at and 2 instances done');
SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM end_items WHERE id <= 10),
          '0 of 10',
          'final batch: every matching row processed exactly once');

ALTER SYSTEM RESET iterjob.trail_instances;
SELECT pg_reload_conf() AS reloaded \gset
\set ON_ERROR_STOP 1

-- 8. Pause and cancel racing the ends of short jobs ----------------------------------

-- 100 jobs of 4 instances x 2 one-key batches, each paused (then resumed)
-- or cancelled a random 0-30 ms after its enqueue committed: the calls
-- land while instances start, run, end and end their job.  Each batch
-- pauses 5 ms, so that no job can end within 10 ms of its enqueue: the
-- calls made before that (38 of the 100 delays, which come from a fixed
-- seed) catch their job however fast the workers are, and the later ones
-- land around the ends of instances and jobs.  A worker ending
-- an instance (or its job) and a pause or cancel lock the same task and
-- job rows; neither may deadlock the other.
CREATE TABLE race_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO race_items (id) SELECT generate_series(1, 8);
CREATE TABLE race_calls (i int PRIMARY KEY, job_id bigint NOT NULL, call text NOT NULL, outcome text NOT NULL,
                         resumed text);

DO $$
DECLARE
    j bigint;
    call text;
    outcome text;
    resumed text;
BEGIN
    PERFORM setseed(0.5);
    FOR n IN 1..100 LOOP
        j := iterjob.enqueue('race_items',
                             'UPDATE race_items SET n = n + 1 FROM (SELECT pg_sleep(0.005)) pause WHERE id = ANY($1)',
                             instances => 4, batch_size => 1);
        COMMIT;
        PERFORM pg_sleep(random() * 0.03);
        call := CASE WHEN n % 2 = 0 THEN 'cancel' ELSE 'pause' END;
        BEGIN
            EXECUTE format('SELECT iterjob.%s($1)', call) INTO outcome USING j;
        EXCEPTION WHEN OTHERS THEN
            outcome := SQLSTATE || ' ' || SQLERRM;
        END;
        resumed := NULL;
        IF outcome = 'paused' THEN
            -- A pause that lands as the instances' final batches commit
            -- may find them ended (the job succeeded), and resume() then
            -- rightly finds it ended.
            BEGIN
                resumed := iterjob.resume(j);
            EXCEPTION WHEN OTHERS THEN
                resumed := SQLSTATE || ' ' || SQLERRM;
            END;
        END IF;
        INSERT INTO race_calls VALUES (n, j, call, outcome, resumed);
        COMMIT;
    END LOOP;
END
$$;

SELECT is((SELECT count(*) FROM race_calls WHERE outcome LIKE '40P01%'), 0::bigint,
          'race: no pause() or cancel() racing the end of a job failed with a deadlock (40P01)');

SELECT is((SELECT coalesce(string_agg(DISTINCT outcome, '; '), '') FROM race_calls
            WHERE outcome NOT IN ('paused', 'cancelled') AND outcome NOT LIKE '40P01%'
              AND outcome !~ '^55000 cannot (pause|cancel) iterjob job \d+ because it is succeeded$'),
          '',
          'race: each call (deadlocks aside) returned paused or cancelled, or found its job already succeeded');

SELECT is((SELECT coalesce(string_agg(DISTINCT resumed, '; '), '') FROM race_calls
            WHERE resumed NOT IN ('queued', 'running')
              AND resumed !~ '^55000 cannot resume iterjob job \d+ because it is succeeded$'),
          '',
          'race: each resume() after a pause returned queued or running, or found the job ended succeeded by its final batches');

SELECT is((SELECT count(*) FROM race_calls c JOIN iterjob.job_progress p USING (job_id)
            WHERE c.resumed LIKE '55000%' AND (p.state <> 'succeeded' OR p.rows_done <> 8)),
          0::bigint,
          'race: a job that ended while paused succeeded with all 8 rows done');

SELECT cmp_ok((SELECT count(*) FROM race_calls WHERE outcome IN ('paused', 'cancelled')), '>=', 20::bigint,
              'race: at least 20 calls caught their job before it ended (the race was run)');

SELECT diag(format('race: %s calls returned paused or cancelled, %s found the job succeeded, %s other',
                   count(*) FILTER (WHERE outcome IN ('paused', 'cancelled')),
                   count(*) FILTER (WHERE outcome LIKE '55000%'),
                   count(*) FILTER (WHERE outcome NOT IN ('paused', 'cancelled') AND outcome NOT LIKE '55000%')))
  FROM race_calls;

SELECT is((SELECT count(*) FROM race_calls WHERE iterjob.wait(job_id, '60 s') NOT IN ('succeeded', 'cancelled')),
          0::bigint,
          'race: all 100 jobs ended, succeeded or cancelled');

SELECT is((SELECT count(*) FROM iterjob.errors e JOIN race_calls c USING (job_id) WHERE e.sqlstate = '40P01'),
          0::bigint,
          'race: no batch failed with a deadlock (40P01)');

SELECT is((SELECT coalesce(string_agg(DISTINCT e.sqlstate || ' ' || regexp_replace(e.message, '\d+', 'N'), '; '), '')
             FROM iterjob.errors e JOIN race_calls c USING (job_id)
            WHERE e.sqlstate <> '40P01'),
          '',
          'race: no batch of the 100 jobs failed for another reason');

SELECT is((SELECT sum(n)::bigint FROM race_items),
          (SELECT sum(p.rows_done)::bigint FROM iterjob.job_progress p JOIN race_calls c USING (job_id)),
          'race: exactly once: the rows'' counters add up to the rows_done of the 100 jobs');

SELECT is((SELECT count(*) FROM iterjob.job_progress p JOIN race_calls c USING (job_id)
            WHERE p.state = 'succeeded' AND p.rows_done <> 8),
          0::bigint,
          'race: every succeeded job processed its 8 rows');

SELECT * FROM finish();
