-- throttle.sql: pacing and the health gate, on real jobs run by background
-- workers: enqueue's batch_pause, max_rows_per_second and
-- target_batch_time, iterjob.set() while a job runs, the health gate
-- (iterjob.max_replication_lag through the iterjob.test_replication_lag hook,
-- iterjob.max_replication_lag_bytes with an inactive physical replication
-- slot, iterjob.hold_for_autovacuum with a real autovacuum worker), and the
-- keyset plan under misleading statistics.
--
-- Jobs only see committed data: this file runs in autocommit and waits
-- outside explicit transactions.  Run by test/pgtap-exec.sh in a fresh
-- database, as superuser, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).  The machine may be
-- small and busy: time bounds are lower bounds the throttle implies (with
-- 20% slack) or ratios, never tight upper bounds.  Tables of the timed jobs
-- have autovacuum off, so that hold_for_autovacuum cannot slow them down.
--
-- Cluster settings changed with ALTER SYSTEM are reset right after the part
-- that needs them, and those parts run with ON_ERROR_STOP off (and call
-- pause/resume through tap_try), so that nothing can stop the file while
-- the cluster is reconfigured for the test files that run after this one.
-- A statement that fails there prints its error and the plan count comes
-- out wrong, which fails the file.
--
--   1. batch_pause: 10 batches with '200ms' pauses take >= 80% of 9 x 0.2 s;
--      the same job without a pause is much faster; phase 'throttled'
--   2. max_rows_per_second: 2 instances share the cap; 400 rows at 200/s
--      take >= 80% of 2 s; exactly once
--   3. target_batch_time: batches grow from 10 keys toward the target
--      (x2 at most per batch), or shrink from 1000 keys (/2 at most)
--   4. iterjob.set() while running: batch_pause and max_rows_per_second
--      turned off speed a job up; job_progress shows every change; NULL
--      leaves a setting, 0 turns it off; errors 22023, 55000, 42704, 22004
--   5. health gate, replication lag (test hook): ignored while
--      max_replication_lag = -1; no hold without a standby (neither limit);
--      with a lag above the limit workers hold (held_reason and held name
--      the lag and the limit, phase 'held', no progress), pause works while
--      held; after the lag goes back to -1 (reload) the held jobs complete
--      exactly once and held_reason is cleared.  max_replication_lag_bytes
--      (a kB setting, -1 by default): an inactive physical slot further
--      behind than the limit holds a job, dropping it lets the job go on
--      (test/t/007_standby.pl tests both limits against a real standby)
--   6. health gate, autovacuum: a job on a table an autovacuum worker is
--      vacuuming holds; with iterjob.hold_for_autovacuum = off it runs
--      (skipped if no autovacuum worker can be caught within 20 s)
--   7. preview(): the keyset plan is an ordered scan of the key index even
--      when the statistics make the planner want Seq Scan + Sort
--   8. iterjob.enabled (and the defaults of it and max_archive_backlog):
--      off (reload) holds a running job at its next batch boundary (held
--      reason 'iterjob.enabled is off', phase 'held', rows_done stops, still
--      running); a job enqueued meanwhile is claimed and holds; pause works;
--      on again (reload) both go on by themselves and succeed exactly once
--      (test/t/013_archiving.pl tests iterjob.max_archive_backlog)
--   9. max_wal_per_second (a job's own WAL limit): enqueue stores bytes,
--      job_progress shows them; a worker waiting for it shows phase 'wal
--      paced'; set() changes it, '0' turns it off (the job, which needs
--      more than 40 s under a 1kB/s limit, ends within 20 s), NULL leaves
--      it, bad values are refused (22023) and change nothing; wal_bytes
--      counts the job's WAL in task_progress and job_progress
--      (test/t/020_foreground.pl measures the rate against the limit)

SET client_min_messages = warning;

SELECT plan(149);

-- Helpers -----------------------------------------------------------------

-- The text result of a query, or 'ERROR <sqlstate>: <message>': never raises.
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

CREATE FUNCTION tap_state(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT state FROM iterjob.job_progress WHERE job_id = p_job
$$;

CREATE FUNCTION tap_final(p_job bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT tap_state(p_job) IN ('succeeded', 'failed', 'cancelled')
$$;

-- The phases of the workers of job p_job in this database, by instance.
CREATE FUNCTION tap_phases(p_job bigint) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(phase ORDER BY instance), '{}')
      FROM iterjob.workers
     WHERE job_id = p_job AND database = current_database()
$$;

-- Seconds from a job's first claim to its end.
CREATE FUNCTION tap_elapsed(p_job bigint) RETURNS numeric LANGUAGE sql AS $$
    SELECT extract(epoch FROM finished_at - started_at)
      FROM iterjob.job_progress WHERE job_id = p_job
$$;

-- Recovery after a failed assertion, so that the rest of the file still
-- runs: a job that stays held although its workers should have let go is
-- paused (tap_pause_unless_final) and, once its workers have left, resumed
-- (tap_resume_if_paused): fresh workers read the current configuration.
-- Each step is its own statement, as a pause only counts once committed.
-- Neither raises.
CREATE FUNCTION tap_pause_unless_final(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN tap_final(p_job) THEN tap_state(p_job)
                ELSE tap_try(format('SELECT iterjob.pause(%s)', p_job)) END
$$;

CREATE FUNCTION tap_resume_if_paused(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN tap_state(p_job) = 'paused'
                THEN tap_try(format('SELECT iterjob.resume(%s)', p_job))
                ELSE tap_state(p_job) END
$$;

-- 1. batch_pause ------------------------------------------------------------

-- 1 instance, 100 keys, batches of 10: 10 batches, so at least 9 pauses
-- between them.
CREATE TABLE bp_slow (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
CREATE TABLE bp_fast (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO bp_slow (id) SELECT generate_series(1, 100);
INSERT INTO bp_fast (id) SELECT generate_series(1, 100);

SELECT iterjob.enqueue('bp_slow', 'UPDATE bp_slow SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10, batch_pause => '200ms') AS bp_slow_job \gset

SELECT ok(tap_wait_until(format('''throttled'' = ANY (tap_phases(%s))', :bp_slow_job), '10 s'),
          'batch_pause: between batches the worker shows phase ''throttled'' in iterjob.workers');

SELECT is(iterjob.wait(:bp_slow_job, '60 s'), 'succeeded',
          'batch_pause: the job with batch_pause => ''200ms'' succeeds');

SELECT iterjob.enqueue('bp_fast', 'UPDATE bp_fast SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10) AS bp_fast_job \gset

SELECT is(iterjob.wait(:bp_fast_job, '60 s'), 'succeeded',
          'batch_pause: the same job without batch_pause succeeds');

SELECT cmp_ok(tap_elapsed(:bp_slow_job), '>=', 9 * 0.2 * 0.8,
              'batch_pause: 10 batches with ''200ms'' pauses take >= 80% of 9 x 0.2 s (finished_at - started_at)');

SELECT cmp_ok(tap_elapsed(:bp_fast_job), '<', tap_elapsed(:bp_slow_job) / 2,
              'batch_pause: without it the same job takes less than half as long');

SELECT is((SELECT count(*) FROM bp_slow WHERE n <> 1), 0::bigint,
          'batch_pause: every row processed exactly once');

SELECT is((SELECT batch_pause FROM iterjob.job_progress WHERE job_id = :bp_slow_job),
          '200 ms'::interval,
          'batch_pause: job_progress.batch_pause shows it');

-- 2. max_rows_per_second --------------------------------------------------------

-- 2 instances x 200 keys, batches of 20, a cap of 200 rows/s for the job:
-- each instance gets 100 rows/s, so its 10 batches need about 2 s.
CREATE TABLE rps (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO rps (id) SELECT generate_series(1, 400);

SELECT iterjob.enqueue('rps', 'UPDATE rps SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 20, max_rows_per_second => 200) AS rps_job \gset

SELECT ok(tap_wait_until(format('''throttled'' = ANY (tap_phases(%s))', :rps_job), '10 s'),
          'max_rows_per_second: a capped worker shows phase ''throttled''');

SELECT is(iterjob.wait(:rps_job, '60 s'), 'succeeded',
          'max_rows_per_second: the capped job succeeds');

SELECT cmp_ok(tap_elapsed(:rps_job), '>=', 400 / 200.0 * 0.8,
              'max_rows_per_second: 400 rows at 200 rows/s (2 instances sharing the cap) take >= 80% of 2 s');

SELECT is((SELECT count(*) FROM rps WHERE n <> 1), 0::bigint,
          'max_rows_per_second: every row processed exactly once');

SELECT is((SELECT array_agg(rows_done ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :rps_job),
          ARRAY[200, 200]::bigint[],
          'max_rows_per_second: each instance did its 200 rows');

SELECT is((SELECT max_rows_per_second FROM iterjob.job_progress WHERE job_id = :rps_job), 200,
          'max_rows_per_second: job_progress.max_rows_per_second shows it');

-- 3. target_batch_time ----------------------------------------------------------

-- The action sleeps 1 ms per key and logs the size of every batch (a
-- single instance: the log order is the batch order).  A batch of s keys
-- therefore takes at least s ms: aiming at 100 ms, a batch can never grow
-- beyond 100 keys (the next size is s x 100 / (>= s)); aiming at 50 ms, a
-- batch of 100 keys or more is at least twice too long and exactly halves.
-- Both jobs run at once.
CREATE TABLE tb_grow (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
CREATE TABLE tb_shrink (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO tb_grow (id) SELECT generate_series(1, 2000);
INSERT INTO tb_shrink (id) SELECT generate_series(1, 2000);
CREATE TABLE tb_log (seq bigserial PRIMARY KEY, job text NOT NULL, size integer NOT NULL);

SELECT iterjob.enqueue('tb_grow',
       'WITH s AS (SELECT pg_sleep(0.001 * cardinality($1))),
             l AS (INSERT INTO tb_log (job, size) SELECT ''grow'', cardinality($1) FROM s)
        UPDATE tb_grow SET n = n + 1 WHERE id = ANY($1)',
       batch_size => 10, target_batch_time => '100ms') AS grow_job \gset

SELECT iterjob.enqueue('tb_shrink',
       'WITH s AS (SELECT pg_sleep(0.001 * cardinality($1))),
             l AS (INSERT INTO tb_log (job, size) SELECT ''shrink'', cardinality($1) FROM s)
        UPDATE tb_shrink SET n = n + 1 WHERE id = ANY($1)',
       batch_size => 1000, target_batch_time => '50ms') AS shrink_job \gset

SELECT is(iterjob.wait(:grow_job, '120 s'), 'succeeded',
          'target_batch_time (grow): the job succeeds');
SELECT is(iterjob.wait(:shrink_job, '120 s'), 'succeeded',
          'target_batch_time (shrink): the job succeeds');

-- Batch sizes of one job, in order, and how each compares to the one before.
CREATE VIEW tb_steps AS
SELECT job, size, lag(size) OVER w AS prev, row_number() OVER w AS i,
       count(*) OVER (PARTITION BY job) AS batches
  FROM tb_log WINDOW w AS (PARTITION BY job ORDER BY seq);

SELECT is((SELECT count(*) FROM tb_grow WHERE n <> 1) + (SELECT count(*) FROM tb_shrink WHERE n <> 1),
          0::bigint,
          'target_batch_time: every row of both jobs processed exactly once');

SELECT is((SELECT size FROM tb_steps WHERE job = 'grow' AND i = 1), 10,
          'target_batch_time (grow): the first batch has batch_size (10) keys');

SELECT cmp_ok((SELECT batches_done FROM iterjob.job_progress WHERE job_id = :grow_job), '<', 100::bigint,
              'target_batch_time (grow): 2,000 rows in < 100 batches (200 at a fixed batch_size of 10)');

SELECT cmp_ok((SELECT max(size) FROM tb_steps WHERE job = 'grow'), '>=', 40,
              'target_batch_time (grow): batches grew to at least 40 keys');

SELECT cmp_ok((SELECT max(size) FROM tb_steps WHERE job = 'grow'), '<=', 100,
              'target_batch_time (grow): no batch beyond 100 keys (1 ms per key, 100 ms target)');

SELECT is((SELECT count(*) FROM tb_steps
            WHERE job = 'grow' AND prev IS NOT NULL AND i < batches
              AND (size > 2 * prev OR 2 * size < prev - 1)),
          0::bigint,
          'target_batch_time (grow): each batch is at most twice and at least half the one before');

SELECT is((SELECT array_agg(size ORDER BY i) FROM tb_steps WHERE job = 'shrink' AND i <= 4),
          ARRAY[1000, 500, 250, 125],
          'target_batch_time (shrink): from 1000 keys, batches at least twice too long halve: 1000, 500, 250, 125');

SELECT ok((SELECT size BETWEEN 62 AND 63 FROM tb_steps WHERE job = 'shrink' AND i = 5),
          'target_batch_time (shrink): ... then 62 (half of 125)');

SELECT cmp_ok((SELECT batches_done FROM iterjob.job_progress WHERE job_id = :shrink_job), '>=', 5::bigint,
              'target_batch_time (shrink): 2,000 rows took >= 5 batches (2 at a fixed batch_size of 1000)');

SELECT is((SELECT sum(size) FROM tb_log), 4000::bigint,
          'target_batch_time: the logged batch sizes add up to the rows of both jobs');

SELECT is((SELECT array_agg(batch_size ORDER BY job_id) FROM iterjob.job_progress
            WHERE job_id IN (:grow_job, :shrink_job)),
          ARRAY[10, 1000],
          'target_batch_time: job_progress.batch_size stays as enqueued (the adapted size is the worker''s)');

SELECT is((SELECT target_batch_time FROM iterjob.job_progress WHERE job_id = :grow_job), '100 ms'::interval,
          'target_batch_time: job_progress.target_batch_time shows it');

-- 4. iterjob.set() ---------------------------------------------------------------

-- Two slow jobs at once: 200 keys in batches of 2 with a 1 s pause (100 s),
-- and 300 keys in batches of 10 capped at 10 rows/s (30 s).  Once each has
-- committed a batch, set() turns the pause and the cap off.
CREATE TABLE set_pause (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
CREATE TABLE set_cap (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO set_pause (id) SELECT generate_series(1, 200);
INSERT INTO set_cap (id) SELECT generate_series(1, 300);

SELECT iterjob.enqueue('set_pause', 'UPDATE set_pause SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 2, batch_pause => '1s') AS pause_job \gset
SELECT iterjob.enqueue('set_cap', 'UPDATE set_cap SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10, max_rows_per_second => 10) AS cap_job \gset

SELECT ok(tap_wait_until(format('(SELECT batches_done FROM iterjob.job_progress WHERE job_id = %s) >= 1
                                 AND (SELECT batches_done FROM iterjob.job_progress WHERE job_id = %s) >= 1',
                                :pause_job, :cap_job), '20 s'),
          'set: both slow jobs are running (a batch committed each)');

SELECT ok(tap_wait_until(format('''throttled'' = ANY (tap_phases(%s)) AND ''throttled'' = ANY (tap_phases(%s))',
                                :pause_job, :cap_job), '10 s'),
          'set: both slow jobs are throttled between batches');

SELECT clock_timestamp() AS set_at \gset
SELECT lives_ok(format('SELECT iterjob.set(%s, batch_pause => ''0'', batch_size => 50)', :pause_job),
                'set(batch_pause => ''0'', batch_size => 50) on a running job');
SELECT lives_ok(format('SELECT iterjob.set(%s, max_rows_per_second => 0)', :cap_job),
                'set(max_rows_per_second => 0) on a running job');

SELECT is(iterjob.wait(:pause_job, '30 s'), 'succeeded',
          'set: the job whose pause was turned off succeeds');
SELECT is(iterjob.wait(:cap_job, '30 s'), 'succeeded',
          'set: the job whose cap was turned off succeeds');

SELECT cmp_ok((SELECT extract(epoch FROM finished_at - :'set_at'::timestamptz)
                 FROM iterjob.job_progress WHERE job_id = :pause_job), '<', 10::numeric,
              'set: without its pause the job ends within 10 s of set() (about 100 s with it)');
SELECT cmp_ok((SELECT extract(epoch FROM finished_at - :'set_at'::timestamptz)
                 FROM iterjob.job_progress WHERE job_id = :cap_job), '<', 10::numeric,
              'set: without its cap the job ends within 10 s of set() (about 30 s with it)');
SELECT cmp_ok((SELECT batches_done FROM iterjob.job_progress WHERE job_id = :pause_job), '<', 20::bigint,
              'set: the new batch_size (50) was used: 200 keys in < 20 batches (100 at batch_size 2)');
SELECT is((SELECT count(*) FROM set_pause WHERE n <> 1) + (SELECT count(*) FROM set_cap WHERE n <> 1),
          0::bigint,
          'set: every row of both jobs processed exactly once');

SELECT is((SELECT (batch_size, batch_pause)::text FROM iterjob.job_progress WHERE job_id = :pause_job),
          (50, '0'::interval)::text,
          'set: job_progress shows the new batch_size and batch_pause');
SELECT is((SELECT max_rows_per_second FROM iterjob.job_progress WHERE job_id = :cap_job), NULL,
          'set: max_rows_per_second => 0 turns the cap off (job_progress.max_rows_per_second is NULL)');

-- Every setting through set(), on a running job that cannot finish in the
-- meantime (10,000 keys, every batch sleeps 0.5 s).
CREATE TABLE set_cols (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO set_cols (id) SELECT generate_series(1, 10000);

SELECT iterjob.enqueue('set_cols',
       'WITH s AS (SELECT pg_sleep(0.5)) UPDATE set_cols SET n = n + 1 FROM s WHERE set_cols.id = ANY($1)',
       batch_size => 1, batch_pause => '5s', max_rows_per_second => 100,
       target_batch_time => '1s') AS cols_job \gset

CREATE FUNCTION tap_pacing(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT format('batch_size=%s batch_pause=%s max_rows_per_second=%s target_batch_time=%s',
                  batch_size, batch_pause, coalesce(max_rows_per_second::text, 'NULL'),
                  coalesce(target_batch_time::text, 'NULL'))
      FROM iterjob.job_progress WHERE job_id = p_job
$$;

SELECT is(tap_pacing(:cols_job),
          'batch_size=1 batch_pause=00:00:05 max_rows_per_second=100 target_batch_time=00:00:01',
          'set: job_progress shows the pacing as enqueued');

SELECT iterjob.set(:cols_job, max_rows_per_second => 250) AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=1 batch_pause=00:00:05 max_rows_per_second=250 target_batch_time=00:00:01',
          'set(max_rows_per_second => 250): only that changes (NULL leaves the others)');

SELECT iterjob.set(:cols_job, batch_size => 7, batch_pause => '150ms', target_batch_time => '2s') AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00.15 max_rows_per_second=250 target_batch_time=00:00:02',
          'set(batch_size, batch_pause, target_batch_time): job_progress shows the new values');

SELECT iterjob.set(:cols_job, max_rows_per_second => 0) AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00.15 max_rows_per_second=NULL target_batch_time=00:00:02',
          'set(max_rows_per_second => 0): the cap is off (NULL)');

SELECT iterjob.set(:cols_job, target_batch_time => '0') AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00.15 max_rows_per_second=NULL target_batch_time=NULL',
          'set(target_batch_time => ''0''): the target is off (NULL)');

SELECT iterjob.set(:cols_job, batch_pause => '0', max_rows_per_second => 5) AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00 max_rows_per_second=5 target_batch_time=NULL',
          'set(batch_pause => ''0'', max_rows_per_second => 5): no pause, a cap again');

SELECT iterjob.set(:cols_job) AS ignored \gset
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00 max_rows_per_second=5 target_batch_time=NULL',
          'set() with every setting NULL changes nothing');

SELECT throws_ok(format('SELECT iterjob.set(%s, batch_size => 0)', :cols_job), '22023', NULL,
                 'set(batch_size => 0): 22023');
SELECT throws_ok(format('SELECT iterjob.set(%s, batch_size => 1000001)', :cols_job), '22023', NULL,
                 'set(batch_size => 1000001): 22023');
SELECT throws_ok(format('SELECT iterjob.set(%s, max_rows_per_second => -1)', :cols_job), '22023', NULL,
                 'set(max_rows_per_second => -1): 22023');
SELECT throws_ok(format('SELECT iterjob.set(%s, batch_pause => ''-1 s'')', :cols_job), '22023', NULL,
                 'set(batch_pause => ''-1 s''): 22023');
SELECT throws_ok(format('SELECT iterjob.set(%s, target_batch_time => ''-5 ms'')', :cols_job), '22023', NULL,
                 'set(target_batch_time => ''-5 ms''): 22023');
SELECT throws_ok(format('SELECT iterjob.set(%s, batch_size => 3, max_rows_per_second => -1)', :cols_job),
                 '22023', NULL,
                 'set() with one valid and one invalid value: 22023');
SELECT is(tap_pacing(:cols_job),
          'batch_size=7 batch_pause=00:00:00 max_rows_per_second=5 target_batch_time=NULL',
          'set(): the refused calls changed nothing');
SELECT throws_ok('SELECT iterjob.set(NULL, batch_size => 5)', '22004', NULL,
                 'set(NULL job_id): 22004 (null_value_not_allowed, as pause/resume/cancel)');
SELECT throws_ok('SELECT iterjob.set(987654321, batch_size => 5)', '42704', NULL,
                 'set() on an unknown job: 42704');

SELECT is(iterjob.cancel(:cols_job), 'cancelled', 'set: the settings job is cancelled');
SELECT is(iterjob.wait(:cols_job, '30 s'), 'cancelled', 'set: ... and its worker leaves it');

SELECT throws_ok(format('SELECT iterjob.set(%s, batch_pause => ''1s'')', :cols_job), '55000', NULL,
                 'set() on a cancelled job: 55000');
SELECT throws_ok(format('SELECT iterjob.set(%s, batch_pause => ''1s'')', :pause_job), '55000', NULL,
                 'set() on a succeeded job: 55000');
SELECT is((SELECT batch_pause FROM iterjob.job_progress WHERE job_id = :pause_job), '0'::interval,
          'set(): a refused call on a finished job changed nothing');

-- 5. Health gate: replication lag ----------------------------------------------

-- From here to the ALTER SYSTEM RESETs, nothing may stop the file.
\set ON_ERROR_STOP 0

-- a. The test lag alone (max_replication_lag = -1) changes nothing.
CREATE TABLE hg_off (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO hg_off (id) SELECT generate_series(1, 100);
-- b. max_replication_lag without a standby.
CREATE TABLE hg_nolag (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO hg_nolag (id) SELECT generate_series(1, 100);
-- c. held: 2 instances, 50 keys each ...
CREATE TABLE hg (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO hg (id) SELECT generate_series(1, 100);
-- ... and 2 instances, only even keys: instance 1 has nothing to do.
CREATE TABLE hg_half (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO hg_half (id) SELECT 2 * generate_series(1, 50);

ALTER SYSTEM SET iterjob.test_replication_lag = '5s';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SELECT iterjob.enqueue('hg_off', 'UPDATE hg_off SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS hg_off_job \gset
SELECT is(iterjob.wait(:hg_off_job, '30 s'), 'succeeded',
          'health gate: with max_replication_lag = -1 a lag of 5 s (test hook) is ignored: the job succeeds');
SELECT is((SELECT count(*) FROM iterjob.task_progress WHERE job_id = :hg_off_job AND held_reason IS NOT NULL),
          0::bigint,
          'health gate: ... and no instance has a held_reason');

-- b. max_replication_lag and max_replication_lag_bytes set, the real lag: no
-- standby, no slot, nothing to hold for.
ALTER SYSTEM SET iterjob.max_replication_lag = '1s';
ALTER SYSTEM SET iterjob.max_replication_lag_bytes = '1kB';
ALTER SYSTEM SET iterjob.test_replication_lag = -1;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SELECT iterjob.enqueue('hg_nolag', 'UPDATE hg_nolag SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS hg_nolag_job \gset
SELECT is(iterjob.wait(:hg_nolag_job, '30 s'), 'succeeded',
          'health gate: max_replication_lag = 1 s, max_replication_lag_bytes = 1 kB without a standby or slot: the job succeeds');
SELECT is((SELECT count(*) FROM hg_nolag WHERE n <> 1), 0::bigint,
          'health gate: ... every row processed exactly once');

-- c. max_replication_lag 1 s, and a lag of 5 s.
ALTER SYSTEM RESET iterjob.max_replication_lag_bytes;
ALTER SYSTEM SET iterjob.test_replication_lag = '5s';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SELECT iterjob.enqueue('hg', 'UPDATE hg SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS hg_job \gset
SELECT iterjob.enqueue('hg_half', 'UPDATE hg_half SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS hg_half_job \gset

SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.task_progress
                                    WHERE job_id IN (%s, %s) AND held_reason IS NOT NULL) = 4',
                                :hg_job, :hg_half_job), '10 s'),
          'health gate: lag 5 s > max_replication_lag 1 s: every instance of both jobs records a held_reason');
SELECT pg_sleep(2) AS slept \gset
SELECT is((SELECT array_agg(rows_done ORDER BY job_id) FROM iterjob.job_progress
            WHERE job_id IN (:hg_job, :hg_half_job)),
          ARRAY[0, 0]::bigint[],
          'health gate: 2 s later neither held job has done a row (rows_done = 0)');
SELECT is((SELECT count(*) FROM hg WHERE n <> 0) + (SELECT count(*) FROM hg_half WHERE n <> 0), 0::bigint,
          'health gate: ... and no row was touched');
SELECT is((SELECT array_agg(held_reason) FROM iterjob.task_progress
            WHERE job_id = :hg_job AND state = 'running'),
          array_fill('replication lag 00:00:05 (iterjob.test_replication_lag) exceeds iterjob.max_replication_lag (1s)'::text,
                     ARRAY[2]),
          'health gate: task_progress.held_reason names the lag and the limit it exceeds');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :hg_job),
          'replication lag 00:00:05 (iterjob.test_replication_lag) exceeds iterjob.max_replication_lag (1s)',
          'health gate: job_progress.held says why');
SELECT is((SELECT state FROM iterjob.job_progress WHERE job_id = :hg_job), 'running',
          'health gate: a held job is running');
SELECT ok(tap_wait_until(format('tap_phases(%s) = ''{held,held}''', :hg_job), '5 s'),
          'health gate: iterjob.workers shows both workers in phase ''held''');

-- Pause while held: the hold loop sees it.
SELECT is(tap_try(format('SELECT iterjob.pause(%s)', :hg_job)), 'paused',
          'health gate: pause() on a held job');
SELECT ok(tap_wait_until(format('tap_phases(%s) = ''{}''', :hg_job), '10 s'),
          'health gate: the held workers leave the paused job');
SELECT is((SELECT array_agg(state || ':' || coalesce(worker_pid::text, '-') ORDER BY instance)
             FROM iterjob.task_progress WHERE job_id = :hg_job),
          ARRAY['paused:-', 'paused:-'],
          'health gate: both instances paused, no worker on them');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :hg_job), NULL,
          'health gate: job_progress.held is NULL for a paused job');
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :hg_job), 0::bigint,
          'health gate: the paused job still did no row');
SELECT is(tap_phases(:hg_half_job), '{held,held}',
          'health gate: the other job''s workers still hold');

SELECT is(tap_try(format('SELECT iterjob.resume(%s)', :hg_job)), 'running',
          'health gate: resume() while the lag is still too high');
SELECT ok(tap_wait_until(format('tap_phases(%s) = ''{held,held}''', :hg_job), '10 s'),
          'health gate: the resumed job''s new workers hold too');

-- The lag goes back to -1 (pg_stat_replication, empty here, says no lag).
-- Workers read the configuration again at their next batch.
ALTER SYSTEM RESET iterjob.test_replication_lag;
SELECT pg_reload_conf() AS reloaded \gset

SELECT ok(tap_wait_until(format('tap_final(%s) AND tap_final(%s)', :hg_job, :hg_half_job), '10 s'),
          'health gate: after test_replication_lag is reset (reload), both held jobs end within 10 s');
SELECT is(tap_state(:hg_job), 'succeeded',
          'health gate: the held, paused and resumed job succeeds once the lag is gone');
SELECT is(tap_state(:hg_half_job), 'succeeded',
          'health gate: the other held job succeeds once the lag is gone');

ALTER SYSTEM RESET iterjob.max_replication_lag;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

-- If they did not, fresh workers (which read the configuration at start)
-- finish them, so that what follows is still checked.
SELECT tap_pause_unless_final(:hg_job) AS ignored, tap_pause_unless_final(:hg_half_job) AS ignored \gset
SELECT tap_wait_until(format('tap_phases(%s) = ''{}'' AND tap_phases(%s) = ''{}''', :hg_job, :hg_half_job),
                      '10 s') AS ignored \gset
SELECT tap_resume_if_paused(:hg_job) AS ignored, tap_resume_if_paused(:hg_half_job) AS ignored \gset
SELECT tap_wait_until(format('tap_final(%s) AND tap_final(%s)', :hg_job, :hg_half_job), '20 s') AS ignored \gset

\set ON_ERROR_STOP 1

SELECT is((SELECT count(*) FROM hg WHERE n <> 1) + (SELECT count(*) FROM hg_half WHERE n <> 1), 0::bigint,
          'health gate: every row of the held jobs processed exactly once');
SELECT is((SELECT array_agg(rows_done ORDER BY job_id) FROM iterjob.job_progress
            WHERE job_id IN (:hg_job, :hg_half_job)),
          ARRAY[100, 50]::bigint[],
          'health gate: rows_done of the held jobs = their rows');
SELECT is((SELECT array_agg(coalesce(held_reason, 'NULL') ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :hg_job),
          ARRAY['NULL', 'NULL'],
          'health gate: held_reason is cleared (NULL) on both instances of the finished job');
SELECT is((SELECT array_agg(coalesce(held_reason, 'NULL') ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :hg_half_job),
          ARRAY['NULL', 'NULL'],
          'health gate: held_reason is cleared (NULL) also on an instance that had no key to do');
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id IN (:hg_job, :hg_half_job) AND held IS NOT NULL),
          0::bigint,
          'health gate: job_progress.held is NULL once the jobs ended');

-- The byte limit.  An inactive physical slot (here one never used, which
-- keeps WAL from the last checkpoint's redo pointer on) is a standby gone
-- away: more than 1 kB behind, it holds a job; dropping it lets the job go.
SELECT is((SELECT setting || ' ' || unit || ' ' || context FROM pg_settings
            WHERE name = 'iterjob.max_replication_lag_bytes'),
          '-1 kB sighup',
          'health gate: iterjob.max_replication_lag_bytes is a kB setting, -1 (off) by default, reloadable');

\set ON_ERROR_STOP 0

-- The slot first: the table and its rows are WAL it keeps.
SELECT slot_name AS ignored FROM pg_create_physical_replication_slot('iterjob_tap_slot', true) \gset
CREATE TABLE hg_slot (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO hg_slot (id) SELECT generate_series(1, 100);
ALTER SYSTEM SET iterjob.max_replication_lag_bytes = '1kB';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SELECT iterjob.enqueue('hg_slot', 'UPDATE hg_slot SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10) AS hg_slot_job \gset
SELECT ok(tap_wait_until(format('(SELECT held FROM iterjob.job_progress WHERE job_id = %s) IS NOT NULL',
                                :hg_slot_job), '10 s'),
          'health gate: an inactive physical slot more than max_replication_lag_bytes behind holds the job');
SELECT matches((SELECT held FROM iterjob.job_progress WHERE job_id = :hg_slot_job),
               '^replication lag [0-9]+ (bytes|kB|MB|GB) to inactive slot "iterjob_tap_slot" exceeds iterjob\.max_replication_lag_bytes \(1kB\)$',
               'health gate: job_progress.held names the slot, its distance and the byte limit');
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :hg_slot_job), 0::bigint,
          'health gate: held by the slot, the job did no row');

SELECT pg_drop_replication_slot('iterjob_tap_slot') AS ignored \gset
SELECT is(iterjob.wait(:hg_slot_job, '20 s'), 'succeeded',
          'health gate: once the slot is dropped the job goes on and succeeds');

-- From here on the cluster is as before, whatever failed above.
SELECT count(*) AS ignored
  FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
         WHERE slot_name = 'iterjob_tap_slot') AS dropped \gset
ALTER SYSTEM RESET iterjob.max_replication_lag_bytes;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset
SELECT tap_pause_unless_final(:hg_slot_job) AS ignored \gset
SELECT tap_wait_until(format('tap_phases(%s) = ''{}''', :hg_slot_job), '10 s') AS ignored \gset
SELECT tap_resume_if_paused(:hg_slot_job) AS ignored \gset
SELECT tap_wait_until(format('tap_final(%s)', :hg_slot_job), '20 s') AS ignored \gset

\set ON_ERROR_STOP 1

SELECT is((SELECT count(*) FROM hg_slot WHERE n <> 1), 0::bigint,
          'health gate: every row of the job held by the slot processed exactly once');
SELECT is((SELECT count(held_reason) FROM iterjob.task_progress WHERE job_id = :hg_slot_job), 0::bigint,
          'health gate: its held_reason is cleared');

-- 6. Health gate: autovacuum ------------------------------------------------------

-- A table autovacuum vacuums slowly: any dead tuple triggers it, and it
-- sleeps 100-400 ms per page (cost limit 1, delay 100 ms) over ~200 pages.
-- autovacuum_naptime is 1 s while we wait for it.
\set ON_ERROR_STOP 0

CREATE TABLE av (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, m int NOT NULL DEFAULT 0, pad text)
  WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_insert_threshold = 0, autovacuum_vacuum_insert_scale_factor = 0,
        autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tap_av_owner') THEN
        DROP OWNED BY tap_av_owner; DROP ROLE tap_av_owner;
    END IF;
END $$;
CREATE ROLE tap_av_owner LOGIN IN ROLE iterjob_user;
GRANT SELECT, UPDATE ON av TO tap_av_owner;
INSERT INTO av (id, pad) SELECT g, repeat('x', 500) FROM generate_series(1, 3000) g;
UPDATE av SET pad = pad WHERE id % 10 = 0;
-- flush this backend's table statistics (dead tuples) at once, for autovacuum
SELECT pg_stat_force_next_flush() AS ignored \gset

ALTER SYSTEM SET autovacuum_naptime = '1s';
SELECT pg_reload_conf() AS reloaded \gset

CREATE FUNCTION tap_av_running() RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum v
                     JOIN pg_stat_activity a ON a.pid = v.pid
                    WHERE a.backend_type = 'autovacuum worker'
                      AND v.datname = current_database()
                      AND v.relid = 'av'::regclass)
$$;

SELECT tap_wait_until('tap_av_running()', '20 s') AS av_running \gset

\if :av_running
-- owned by an ordinary role: the statistics views hide the autovacuum
-- worker from it, but the gate looks as iterjob
SET ROLE tap_av_owner;
SELECT iterjob.enqueue('av', 'UPDATE av SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 300) AS av_job \gset
RESET ROLE;

SELECT ok(tap_wait_until(format('(SELECT held_reason FROM iterjob.task_progress WHERE job_id = %s) IS NOT NULL',
                                :av_job), '10 s'),
          'autovacuum: a job on a table an autovacuum worker is vacuuming holds');
SELECT is((SELECT held_reason FROM iterjob.task_progress WHERE job_id = :av_job),
          'autovacuum is processing public.av',
          'autovacuum: task_progress.held_reason = ''autovacuum is processing public.av''');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :av_job),
          'autovacuum is processing public.av',
          'autovacuum: job_progress.held says the same');
SELECT ok(tap_wait_until(format('tap_phases(%s) = ''{held}''', :av_job), '5 s'),
          'autovacuum: the worker is in phase ''held''');
SELECT pg_sleep(1.5) AS slept \gset
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :av_job), 0::bigint,
          'autovacuum: while held the job did no row');

ALTER SYSTEM SET iterjob.autovacuum_hold_max = '2s';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SELECT ok(tap_av_running(),
          'autovacuum: (precondition) the autovacuum worker is still on the table');
SELECT ok(tap_wait_until(format('tap_final(%s)', :av_job), '10 s'),
          'autovacuum: past iterjob.autovacuum_hold_max (2 s, reload) the held job goes on beside the vacuum and ends');
ALTER SYSTEM SET iterjob.hold_for_autovacuum = off;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset
-- if not (see 5.), fresh workers finish it
SELECT tap_pause_unless_final(:av_job) AS ignored \gset
SELECT tap_wait_until(format('tap_phases(%s) = ''{}''', :av_job), '10 s') AS ignored \gset
SELECT tap_resume_if_paused(:av_job) AS ignored \gset

-- the same job, enqueued while autovacuum still works on the table
SELECT iterjob.enqueue('av', 'UPDATE av SET m = m + 1 WHERE id = ANY($1)',
                       batch_size => 300) AS av2_job \gset
SELECT is(iterjob.wait(:av2_job, '30 s'), 'succeeded',
          'autovacuum: with hold_for_autovacuum = off the same job enqueued again runs and succeeds');
SELECT is((SELECT held_reason FROM iterjob.task_progress WHERE job_id = :av2_job), NULL,
          'autovacuum: ... and never recorded a held_reason');
SELECT tap_wait_until(format('tap_final(%s)', :av_job), '20 s') AS ignored \gset
SELECT is((SELECT count(*) FROM av WHERE n <> 1 OR m <> 1), 0::bigint,
          'autovacuum: every row processed exactly once by each job');
\else
SELECT skip('autovacuum did not start on the test table within 20 s (autovacuum off, or the machine too busy): hold_for_autovacuum not tested', 10);
\endif

ALTER SYSTEM RESET iterjob.hold_for_autovacuum;
ALTER SYSTEM RESET iterjob.autovacuum_hold_max;
ALTER SYSTEM RESET autovacuum_naptime;
SELECT pg_reload_conf() AS reloaded \gset
DROP OWNED BY tap_av_owner;
DROP ROLE tap_av_owner;
\set ON_ERROR_STOP 1

-- Stop autovacuum on the table: the lock this needs cancels an autovacuum
-- worker still on it (after deadlock_timeout).
ALTER TABLE av SET (autovacuum_enabled = false);

-- 7. The keyset plan under misleading statistics ----------------------------------

-- Statistics (also on the partition expression) gathered when every key was
-- a multiple of 8, then the data replaced without ANALYZE: the planner
-- believes abs(id % 8) = 3 matches nothing, so for itself it picks a Seq
-- Scan and a Sort.  Workers plan keyset queries so that only an ordered
-- scan of the key index is possible, and preview() shows their plan.
CREATE TABLE pv (id bigint PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
INSERT INTO pv SELECT 8 * g, 0 FROM generate_series(1, 25000) g;
CREATE STATISTICS pv_mod ON (abs(id % 8)) FROM pv;
ANALYZE pv;
DELETE FROM pv;
INSERT INTO pv SELECT g, g % 7 FROM generate_series(1, 200000) g;

CREATE TABLE pv_preview AS
SELECT * FROM iterjob.preview('pv', 'UPDATE pv SET v = v + 1 WHERE id = ANY($1)', instances => 8);

-- The session's own plan for instance 3's keyset query.
CREATE FUNCTION tap_session_plan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END
$$;

SELECT ok((SELECT tap_session_plan(keyset_query) ~ 'Sort' FROM pv_preview WHERE instance = 3),
          'preview: (precondition) with these statistics the session''s own plan of instance 3''s keyset query sorts');
SELECT is((SELECT count(*) FROM pv_preview), 8::bigint,
          'preview: one row per instance');
SELECT is((SELECT count(*) FROM pv_preview WHERE plan ~ 'Index (Only )?Scan using pv_pkey on pv'),
          8::bigint,
          'preview: every instance''s plan is an index scan of the primary key');
SELECT is((SELECT count(*) FROM pv_preview WHERE plan ~ 'Sort|Gather|Seq Scan|Bitmap'),
          0::bigint,
          'preview: no plan has a Sort, Gather, Seq Scan or Bitmap scan');

-- The same with a planner that likes parallel plans.
SET max_parallel_workers_per_gather = 4;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SELECT is((SELECT count(*) FROM iterjob.preview('pv', 'UPDATE pv SET v = v + 1 WHERE id = ANY($1)', instances => 8)
            WHERE plan ~ 'Index (Only )?Scan using pv_pkey on pv' AND plan !~ 'Sort|Gather|Seq Scan|Bitmap'),
          8::bigint,
          'preview: still ordered index scans when the session''s settings favour parallel plans');
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;

-- A throttled worker's wait event: by name from PostgreSQL 17 on.
CREATE TABLE we_items (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false);
INSERT INTO we_items SELECT g FROM generate_series(1, 50) g;
SELECT iterjob.enqueue('we_items', 'SELECT cardinality($1)', batch_size => 5,
                       batch_pause => '3 s') AS we_job \gset
SELECT CASE WHEN current_setting('server_version_num')::int >= 170000
            THEN 'IterjobThrottled' ELSE 'Extension' END AS we_event \gset
SELECT ok(tap_wait_until(format($$EXISTS (SELECT FROM pg_stat_activity a JOIN iterjob.workers w ON w.pid = a.pid
                                          WHERE w.job_id = %s AND a.wait_event = %L)$$, :we_job, :'we_event')),
          format('a worker in its batch_pause waits on wait event %s', :'we_event'));
SELECT iterjob.cancel(:we_job) AS ignored \gset

-- 8. The switch: iterjob.enabled ---------------------------------------------------

SELECT is((SELECT setting || ' ' || context FROM pg_settings WHERE name = 'iterjob.enabled'),
          'on sighup',
          'iterjob.enabled: on by default, changed by a reload');
SELECT is((SELECT setting || ' ' || context FROM pg_settings WHERE name = 'iterjob.max_archive_backlog'),
          '64 sighup',
          'iterjob.max_archive_backlog: 64 WAL files by default, changed by a reload');

-- From here to the ALTER SYSTEM RESET, nothing may stop the file.
\set ON_ERROR_STOP 0

-- 2 instances x 1000 keys, batches of 10 with a 100 ms pause: at least
-- 10 s each, so neither can end before the switch, even one started late.
CREATE TABLE sw (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO sw (id) SELECT generate_series(1, 2000);
CREATE TABLE sw_queued (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO sw_queued (id) SELECT generate_series(1, 100);

SELECT (pg_stat_file('../server.log', true)).size AS sw_log_at \gset
SELECT iterjob.enqueue('sw', 'UPDATE sw SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10, batch_pause => '100ms') AS sw_job \gset
SELECT ok(tap_wait_until(format('(SELECT rows_done FROM iterjob.job_progress WHERE job_id = %s) >= 20',
                                :sw_job), '20 s'),
          'iterjob.enabled: (precondition) the job is running (20 rows done)');
-- Both instances normally run side by side by now; if the second has no
-- worker yet, say so, with what the server logged (the checks below hold
-- for the instances that run).
SELECT tap_wait_until(format('cardinality(tap_phases(%s)) = 2', :sw_job), '10 s') AS sw_both \gset
\if :sw_both
\else
SELECT string_agg(format('instance %s: %s, %s rows, worker %s, phase %s',
                         t.instance, t.state, t.rows_done,
                         coalesce(t.worker_pid::text, '-'), coalesce(w.phase, '-')), '; ' ORDER BY t.instance)
         || ' | workers: ' || (SELECT coalesce(string_agg(format('%s %s/%s %s', database, job_id, instance, phase), ', '), 'none')
                                 FROM iterjob.workers) AS sw_diag
  FROM iterjob.task_progress t LEFT JOIN iterjob.workers w ON w.pid = t.worker_pid
 WHERE t.job_id = :sw_job \gset
\warn 'iterjob.enabled: the job''s second instance has no worker after 10 s: ' :sw_diag
SELECT coalesce(string_agg(line, E'\n'), '(nothing)') AS sw_log
  FROM regexp_split_to_table(pg_read_file('../server.log', coalesce(:'sw_log_at'::bigint, 0),
                                          1000000, true), E'\n') AS line
 WHERE line ~ 'iterjob|background worker' \gset
\warn :sw_log
\endif

ALTER SYSTEM SET iterjob.enabled = off;
SELECT pg_reload_conf() AS reloaded \gset

SELECT ok(tap_wait_until(format($$(SELECT count(*) FILTER (WHERE held_reason = 'iterjob.enabled is off') > 0
                                      AND count(*) FILTER (WHERE state = 'running')
                                          = count(*) FILTER (WHERE held_reason = 'iterjob.enabled is off')
                                     FROM iterjob.task_progress WHERE job_id = %s)$$,
                                :sw_job), '10 s'),
          'iterjob.enabled = off (reload): every running instance of the job holds at a batch boundary');
SELECT is((SELECT held FROM iterjob.job_progress WHERE job_id = :sw_job), 'iterjob.enabled is off',
          'iterjob.enabled = off: job_progress.held = ''iterjob.enabled is off''');
SELECT ok(tap_wait_until(format($$tap_phases(%s) <> '{}' AND 'held' = ALL (tap_phases(%s))$$,
                                :sw_job, :sw_job), '5 s'),
          'iterjob.enabled = off: its workers are in phase ''held''');
SELECT rows_done AS sw_rows FROM iterjob.job_progress WHERE job_id = :sw_job \gset
SELECT pg_sleep(1.5) AS slept \gset
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :sw_job), :sw_rows::bigint,
          'iterjob.enabled = off: rows_done stops moving (the same 1.5 s later)');
SELECT cmp_ok(:sw_rows::bigint, '<', 2000::bigint,
              'iterjob.enabled = off: (precondition) the job was held before its end');
SELECT is(tap_state(:sw_job), 'running',
          'iterjob.enabled = off: the held job stays running');

-- A job enqueued while the switch is off is claimed and holds before its first batch.
SELECT iterjob.enqueue('sw_queued', 'UPDATE sw_queued SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10) AS swq_job \gset
SELECT ok(tap_wait_until(format($$(SELECT held_reason FROM iterjob.task_progress WHERE job_id = %s)
                                   = 'iterjob.enabled is off'$$, :swq_job), '10 s'),
          'iterjob.enabled = off: a job enqueued meanwhile is claimed and holds, with the same reason');
SELECT is((SELECT state || ' ' || rows_done FROM iterjob.job_progress WHERE job_id = :swq_job),
          'running 0',
          'iterjob.enabled = off: ... running, no row done');

-- pause still works while the switch is off
SELECT is(tap_try(format('SELECT iterjob.pause(%s)', :swq_job)), 'paused',
          'iterjob.enabled = off: iterjob.pause() works on a held job');
SELECT ok(tap_wait_until(format('tap_phases(%s) = ''{}''', :swq_job), '10 s'),
          'iterjob.enabled = off: the paused job''s worker leaves it');

SELECT clock_timestamp() AS enabled_at \gset
ALTER SYSTEM SET iterjob.enabled = on;
SELECT pg_reload_conf() AS reloaded \gset
SELECT ok(tap_wait_until(format('(SELECT rows_done FROM iterjob.job_progress WHERE job_id = %s) > %s',
                                :sw_job, :sw_rows), '10 s'),
          'iterjob.enabled = on (reload): the held job goes on by itself');
SELECT diag(format('iterjob.enabled = on: the held job went on %s s after the reload',
                   round(extract(epoch FROM clock_timestamp() - :'enabled_at'::timestamptz), 2)));
SELECT is(tap_try(format('SELECT iterjob.resume(%s)', :swq_job)), 'running',
          'iterjob.enabled = on: the paused job is resumed');

SELECT is(iterjob.wait(:sw_job, '60 s'), 'succeeded',
          'iterjob.enabled = on: the job held by the switch succeeds');
SELECT is(iterjob.wait(:swq_job, '60 s'), 'succeeded',
          'iterjob.enabled = on: the job enqueued while it was off succeeds');

-- From here on the cluster is as before, whatever failed above.
ALTER SYSTEM RESET iterjob.enabled;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset
SELECT tap_pause_unless_final(:sw_job) AS ignored \gset
SELECT tap_wait_until(format('tap_phases(%s) = ''{}''', :sw_job), '10 s') AS ignored \gset
SELECT tap_resume_if_paused(:sw_job) AS ignored \gset
SELECT tap_resume_if_paused(:swq_job) AS ignored \gset
SELECT tap_wait_until(format('tap_final(%s) AND tap_final(%s)', :sw_job, :swq_job), '30 s') AS ignored \gset

\set ON_ERROR_STOP 1

SELECT is((SELECT count(*) FROM sw WHERE n <> 1) + (SELECT count(*) FROM sw_queued WHERE n <> 1),
          0::bigint,
          'iterjob.enabled: every row of both jobs processed exactly once');
SELECT is((SELECT count(held_reason) FROM iterjob.task_progress WHERE job_id IN (:sw_job, :swq_job)),
          0::bigint,
          'iterjob.enabled: their held_reason is cleared');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id IN (:sw_job, :swq_job)), 0::bigint,
          'iterjob.enabled: holding failed no batch');

-- 9. max_wal_per_second ----------------------------------------------------------

-- 600 keys in batches of 20 under a limit of 1kB of WAL per second: each
-- batch writes more than 1kB (its rows' new versions, the checkpoint of
-- its task), so the job needs well over 30 x 1 s.
CREATE TABLE wal_cap (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false);
INSERT INTO wal_cap (id) SELECT generate_series(1, 600);

SELECT iterjob.enqueue('wal_cap', 'UPDATE wal_cap SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 20, max_wal_per_second => '1kB') AS wal_job \gset
SELECT is((SELECT max_wal_per_second FROM iterjob.job_progress WHERE job_id = :wal_job), 1024::bigint,
          'max_wal_per_second: job_progress shows the limit in bytes per second');
SELECT ok(tap_wait_until(format('''wal paced'' = ANY (tap_phases(%s))', :wal_job), '20 s'),
          'max_wal_per_second: the worker waits for it after a batch, phase ''wal paced''');
SELECT ok(tap_wait_until(format('(SELECT wal_bytes FROM iterjob.task_progress WHERE job_id = %s) > 1024', :wal_job),
                         '20 s'),
          'max_wal_per_second: task_progress.wal_bytes counts the WAL of the batches committed (> 1kB)');

SELECT diag(format('max_wal_per_second: %s bytes of WAL in the first %s batches',
                   wal_bytes, batches_done))
  FROM iterjob.job_progress WHERE job_id = :wal_job;
SELECT iterjob.set(:wal_job, max_wal_per_second => '1.5 kB') AS ignored \gset
SELECT is((SELECT max_wal_per_second FROM iterjob.job_progress WHERE job_id = :wal_job), 1536::bigint,
          'set(max_wal_per_second => ''1.5 kB''): job_progress shows 1536');
SELECT iterjob.set(:wal_job, batch_pause => '0') AS ignored \gset
SELECT is((SELECT max_wal_per_second FROM iterjob.job_progress WHERE job_id = :wal_job), 1536::bigint,
          'set() without max_wal_per_second (NULL) leaves it');
SELECT throws_ok(format('SELECT iterjob.set(%s, max_wal_per_second => ''-1kB'')', :wal_job), '22023',
                 'max_wal_per_second must not be negative',
                 'set(max_wal_per_second => ''-1kB''): 22023, must not be negative');
SELECT throws_ok(format('SELECT iterjob.set(%s, max_wal_per_second => ''fast'')', :wal_job), '22023',
                 'invalid max_wal_per_second: "fast"',
                 'set(max_wal_per_second => ''fast''): 22023, not a size');
SELECT throws_ok(format('SELECT iterjob.set(%s, max_wal_per_second => ''512'')', :wal_job), '22023',
                 'max_wal_per_second must be between 1kB and 1TB',
                 'set(max_wal_per_second => ''512''): 22023, less than 1kB');
SELECT throws_ok(format('SELECT iterjob.set(%s, batch_size => 5, max_wal_per_second => ''2TB'')', :wal_job),
                 '22023', 'max_wal_per_second must be between 1kB and 1TB',
                 'set(batch_size => 5, max_wal_per_second => ''2TB''): 22023, more than 1TB');
SELECT is((SELECT (batch_size, max_wal_per_second)::text FROM iterjob.job_progress WHERE job_id = :wal_job),
          (20, 1536)::text,
          'set(): the refused calls changed nothing');

SELECT iterjob.set(:wal_job, max_wal_per_second => '1kB') AS ignored \gset
SELECT ok(tap_wait_until(format('''wal paced'' = ANY (tap_phases(%s))', :wal_job), '20 s'),
          'set(max_wal_per_second => ''1kB''): the worker waits for it again');
SELECT clock_timestamp() AS wal_off_at \gset
SELECT iterjob.set(:wal_job, max_wal_per_second => '0') AS ignored \gset
SELECT is((SELECT max_wal_per_second FROM iterjob.job_progress WHERE job_id = :wal_job), NULL,
          'set(max_wal_per_second => ''0''): the limit is off (NULL)');
SELECT is(iterjob.wait(:wal_job, '20 s'), 'succeeded',
          'set(max_wal_per_second => ''0''): the job, that needs over 40 s at 1kB/s, succeeds within 20 s');
SELECT diag(format('max_wal_per_second: the job ended %s s after the limit was turned off',
                   round(extract(epoch FROM clock_timestamp() - :'wal_off_at'::timestamptz), 2)));
SELECT is((SELECT count(*) FROM wal_cap WHERE n <> 1), 0::bigint,
          'max_wal_per_second: every row processed exactly once');
SELECT is((SELECT wal_bytes FROM iterjob.job_progress WHERE job_id = :wal_job),
          (SELECT sum(wal_bytes)::bigint FROM iterjob.task_progress WHERE job_id = :wal_job),
          'wal_bytes: job_progress shows the sum of its instances''');
SELECT cmp_ok((SELECT wal_bytes FROM iterjob.job_progress WHERE job_id = :wal_job), '>', 600 * 50::bigint,
              'wal_bytes: the finished job wrote more than 50 bytes of WAL per row updated');
SELECT throws_ok(format('SELECT iterjob.set(%s, max_wal_per_second => ''1MB'')', :wal_job), '55000', NULL,
                 'set(max_wal_per_second) on a succeeded job: 55000');

-- a job enqueued without one has none; its WAL is counted all the same
SELECT is((SELECT max_wal_per_second FROM iterjob.job_progress WHERE job_id = :bp_slow_job), NULL,
          'max_wal_per_second: NULL for a job enqueued without it');
SELECT cmp_ok((SELECT wal_bytes FROM iterjob.job_progress WHERE job_id = :bp_slow_job), '>', 0::bigint,
              'wal_bytes: counted for a job without a WAL limit too');

SELECT * FROM finish();
