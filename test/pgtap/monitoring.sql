-- monitoring.sql: what DBAs watch and tidy, on real jobs run by background
-- workers: the progress columns of iterjob.job_progress and
-- iterjob.task_progress (rows_total, percent, rows_per_second, eta, elapsed,
-- bar, worker_pid), the iterjob.workers and iterjob.errors views,
-- iterjob.wait(progress => true), recount(), preview(), purge() and the
-- workers' own purge past iterjob.retention, and iterjob's LOG lines.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, as superuser, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).  The LOG lines and the
-- NOTICEs of wait() are read back from the server log: the throwaway
-- cluster of test/lib.sh logs to $CLUSTER_DIR/server.log, next to its data
-- directory (or, with logging_collector, pg_current_logfile()); only what
-- was written after this file started is looked at.  Job ids start at 1 in
-- every database, so the log patterns name the relation or the counts too.
--
--   1. percent, progress_bar and eta on their own
--   2. preview(): one row per instance, keyset queries, plans, estimates;
--      creates nothing
--   3. a slow 2-instance job, and meanwhile: rows_total at enqueue (the
--      planner's estimate) and recount() of three jobs (modulo, filtered,
--      range-partitioned), paused until counted; the slow job sampled while
--      it runs: job_progress, task_progress (percent, rate, ETA, elapsed,
--      bar, worker_pid) and the workers view; a reader's open transaction
--      blocks no worker; wait() with progress NOTICEs; everything at the end
--   4. rows_total at the end: rows_done = rows_total, percent 100.0; a job
--      recounted just as its first worker comes still runs
--   5. the errors view: one row per failed attempt
--   6. LOG lines: started, succeeded, failed, paused, cancelled; per batch
--      only with iterjob.log_batches
--   7. purge(): age, state, owner, iterjob.retention; the workers' purge
--      and iterjob.retention = -1

SET client_min_messages = warning;

SELECT plan(132);

-- Helpers -----------------------------------------------------------------

-- The server log, and where it stood at named moments of this file.
CREATE FUNCTION tap_logfile() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(pg_current_logfile('stderr'),
                    current_setting('data_directory') || '/../server.log')
$$;

CREATE TABLE tap_log_mark (name text PRIMARY KEY, file text NOT NULL, pos bigint NOT NULL);

CREATE FUNCTION tap_log_mark(p_name text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO tap_log_mark
    VALUES (p_name, tap_logfile(), coalesce((pg_stat_file(tap_logfile(), true)).size, 0))
        ON CONFLICT (name) DO UPDATE SET file = excluded.file, pos = excluded.pos
    RETURNING pos
$$;

-- The lines of the server log written since mark p_mark that match the
-- regular expression p_pattern.
CREATE FUNCTION tap_log_lines(p_mark text, p_pattern text) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT line
      FROM tap_log_mark m,
           regexp_split_to_table(
               coalesce(pg_read_file(m.file, m.pos,
                                     greatest(coalesce((pg_stat_file(m.file, true)).size, 0) - m.pos, 0),
                                     true), ''),
               E'\n') AS line
     WHERE m.name = p_mark AND line ~ p_pattern
$$;

SELECT tap_log_mark('start') >= 0 AS marked \gset

-- True as soon as the boolean SQL expression cond is true, false when
-- timeout passes first; every check with fresh snapshots.
-- (a slower poll than the shared helper's)
CREATE OR REPLACE FUNCTION tap_wait_until(cond text, timeout interval DEFAULT '30 s')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    r boolean;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXECUTE 'SELECT (' || cond || ')' INTO r;
        IF r THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-- True as soon as no iterjob worker is connected to this database.
CREATE FUNCTION tap_no_workers(timeout interval DEFAULT '10 s')
RETURNS boolean LANGUAGE sql AS $$
    SELECT tap_wait_until('NOT EXISTS (SELECT FROM pg_stat_activity
                                        WHERE backend_type = ''iterjob worker''
                                          AND datname = current_database())', timeout)
$$;

-- Samples of a running job, one transaction each (so that now(), and with
-- it elapsed, moves on between samples).
CREATE TABLE s_job (
    k int, ts timestamptz, state text, rows_done bigint, rows_total bigint,
    percent numeric, rows_per_second numeric, eta interval, elapsed interval,
    bar text, started_at timestamptz, task_rps_sum numeric, running_tasks bigint);
CREATE TABLE s_task (
    k int, ts timestamptz, instance int, state text, rows_done bigint,
    batches_done bigint, rows_total bigint, percent numeric, rows_per_second numeric,
    eta interval, elapsed interval, bar text, worker_pid int,
    started_at timestamptz, pid_backend_type text);
CREATE TABLE s_worker (
    k int, ts timestamptz, pid int, database name, job_id bigint, instance int,
    batch bigint, since timestamptz, phase text, backend_start timestamptz,
    application_name text, backend_type text, task_state text,
    task_batches_done bigint, task_worker_pid int, task_started_at timestamptz);

CREATE PROCEDURE tap_sample(p_job bigint, p_samples int) LANGUAGE plpgsql AS $$
BEGIN
    FOR k IN 1..p_samples LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO s_job
        SELECT k, clock_timestamp(), j.state, j.rows_done, j.rows_total, j.percent,
               j.rows_per_second, j.eta, j.elapsed, j.bar, j.started_at,
               (SELECT sum(t.rows_per_second) FROM iterjob.task_progress t
                 WHERE t.job_id = p_job AND t.state = 'running'),
               (SELECT count(*) FROM iterjob.task_progress t
                 WHERE t.job_id = p_job AND t.state = 'running')
          FROM iterjob.job_progress j WHERE j.job_id = p_job;
        INSERT INTO s_task
        SELECT k, clock_timestamp(), t.instance, t.state, t.rows_done, t.batches_done,
               t.rows_total, t.percent, t.rows_per_second, t.eta, t.elapsed, t.bar,
               t.worker_pid, t.started_at, a.backend_type
          FROM iterjob.task_progress t
          LEFT JOIN pg_stat_activity a ON a.pid = t.worker_pid
         WHERE t.job_id = p_job;
        INSERT INTO s_worker
        SELECT k, clock_timestamp(), w.pid, w.database, w.job_id, w.instance, w.batch,
               w.since, w.phase, w.backend_start, w.application_name, a.backend_type,
               t.state, t.batches_done, t.worker_pid, t.started_at
          FROM iterjob.workers w
          LEFT JOIN pg_stat_activity a ON a.pid = w.pid
          LEFT JOIN iterjob.task t ON t.job_id = w.job_id AND t.instance = w.instance
         WHERE w.job_id = p_job;
        COMMIT;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

-- While a reader keeps a transaction open: does any iterjob worker wait for
-- a lock, and does the job go on?  Every sample reads with a fresh snapshot.
CREATE TABLE lock_samples (ts timestamptz, ungranted bigint, lock_waits bigint, rows_done bigint);

CREATE FUNCTION tap_watch_locks(p_job bigint, p_samples int) RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..p_samples LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO lock_samples
        SELECT clock_timestamp(),
               (SELECT count(*) FROM pg_locks l
                 WHERE NOT l.granted
                   AND l.pid IN (SELECT w.pid FROM iterjob.worker_slots() w)),
               (SELECT count(*) FROM pg_stat_activity a
                 WHERE a.backend_type = 'iterjob worker' AND a.wait_event_type = 'Lock'),
               (SELECT sum(t.rows_done) FROM iterjob.task t WHERE t.job_id = p_job);
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN p_samples;
END
$$;

-- Tables ------------------------------------------------------------------

-- Autovacuum stays away (its ANALYZE would move the estimates, and the
-- health gate holds batches while it vacuums a job's relation).

-- The slow job: 2 instances x 50 batches of 10 rows, 0.2 s each: >= 10 s.
CREATE TABLE prog_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)
    WITH (autovacuum_enabled = false);
INSERT INTO prog_items (id) SELECT generate_series(1, 1000);
ANALYZE prog_items;

-- Keys 1..20000 but those ending in 1, which come after the jobs on it are
-- enqueued, with 100 keys past their upper bound: their estimates are then
-- off, and recount() must fix them.  v is a permutation of 0..19999.
CREATE TABLE est_items (id bigint PRIMARY KEY, v int NOT NULL)
    WITH (autovacuum_enabled = false);
INSERT INTO est_items (id, v)
SELECT i, (i * 7919) % 20000 FROM generate_series(1, 20000) i WHERE i % 10 <> 1;
ANALYZE est_items;
SELECT count(*) AS est_count, count(*) FILTER (WHERE v < 5000) AS est_count_filtered
  FROM est_items \gset
CREATE TABLE est_seen (tag text, id bigint);

-- Fails at key 155 (instance 1 of 2; its 8th batch, 141..159).
CREATE TABLE err_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO err_items (id) SELECT generate_series(1, 400);

CREATE TABLE slow_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO slow_items (id) SELECT generate_series(1, 100);

CREATE TABLE small_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO small_items (id) SELECT generate_series(1, 50);

-- 1. percent, progress_bar and eta on their own ------------------------------

SELECT is(iterjob.progress_bar(41), '[########------------] 41%', 'progress_bar(41)');
SELECT is(iterjob.progress_bar(0), '[--------------------] 0%', 'progress_bar(0)');
SELECT is(iterjob.progress_bar(100), '[####################] 100%', 'progress_bar(100)');

SELECT is(iterjob.percent('succeeded', 5, 10), 100.0, 'percent of a succeeded job is 100, whatever the counts');
SELECT is(iterjob.percent('running', 1, 3), 33.3, 'percent is rows_done / rows_total, to one decimal');
SELECT is(iterjob.percent('running', 5, NULL), 0.0, 'percent is 0 without a rows_total');
SELECT is(iterjob.percent('running', 15, 10), 100.0, 'percent never exceeds 100 (an estimate below the real count)');

-- rows_total exact: 9,999 of 10,000 rows is not the end.
SELECT cmp_ok(iterjob.percent('running', 9999, 10000), '<', 100.0,
              'a running instance with 9,999 of 10,000 rows done is not at 100.0 percent');
SELECT unalike(iterjob.progress_bar(99.9), '%100\%',
              'a bar at 99.9 percent does not say 100%');

SELECT is(iterjob.eta('running', 100, 1000, 90), interval '10 s', 'eta = rows left / rows per second');
SELECT ok(iterjob.eta('succeeded', 100, 1000, 90) IS NULL
          AND iterjob.eta('running', 100, 1000, NULL) IS NULL
          AND iterjob.eta('running', 100, 1000, 0) IS NULL,
          'eta is null unless running with a rate');

-- 2. preview() ----------------------------------------------------------------

SELECT (SELECT count(*) FROM iterjob.job) AS jobs_before,
       (SELECT count(*) FROM iterjob.task) AS tasks_before \gset

CREATE TABLE pv AS
SELECT * FROM iterjob.preview('est_items', 'UPDATE est_items SET v = v WHERE id = ANY($1)',
                              instances => 3, batch_size => 700);
CREATE TABLE pv_range AS
SELECT * FROM iterjob.preview('est_items', 'UPDATE est_items SET v = v WHERE id = ANY($1)',
                              instances => 3, batch_size => 700, partition => 'range');
CREATE TABLE pv_filter AS
SELECT * FROM iterjob.preview('est_items', 'UPDATE est_items SET v = v WHERE id = ANY($1)',
                              instances => 2, batch_size => 700, filter => 'v < 5000');

SELECT is((SELECT count(*) FROM iterjob.job) || ' jobs, ' || (SELECT count(*) FROM iterjob.task) || ' tasks',
          :jobs_before || ' jobs, ' || :tasks_before || ' tasks',
          'preview() creates no job and no task');

SELECT is((SELECT array_agg(instance ORDER BY instance) FROM pv), ARRAY[0, 1, 2],
          'preview(): one row per instance');

SELECT is((SELECT count(*) FROM pv
            WHERE keyset_query ~ format('abs\(id OPERATOR\(pg_catalog\.%%\) 3(::bigint)?\) OPERATOR\(pg_catalog\.=\) %s(::bigint)?( |$)', instance)
              AND keyset_query ~ 'ORDER BY \(id\) USING OPERATOR\(pg_catalog\.<\) NULLS LAST LIMIT 700\s*$'),
          3::bigint,
          'preview(): each keyset query has its instance''s modulo predicate and ORDER BY the key''s < LIMIT batch_size');

SELECT is((SELECT count(*) FROM pv WHERE action = 'UPDATE est_items SET v = v WHERE id = ANY($1)'),
          3::bigint, 'preview(): the action of each instance');

SELECT is((SELECT count(*) FROM pv WHERE plan ~ 'Index (Only )?Scan using est_items_pkey'),
          3::bigint, 'preview(): every plan is an index scan of the key''s index');

SELECT is((SELECT count(*) FROM pv WHERE estimated_batches = ceil(estimated_rows / 700.0)),
          3::bigint, 'preview(): estimated_batches = ceil(estimated_rows / batch_size)');

SELECT ok((SELECT sum(estimated_rows) BETWEEN 0.8 * :est_count AND 1.2 * :est_count FROM pv),
          format('preview(): the estimated rows add up to the table''s %s within 20%%', :est_count));

SELECT ok((SELECT keyset_query !~ 'OPERATOR\(pg_catalog\.>=\)' AND keyset_query ~ '\(id\) OPERATOR\(pg_catalog\.<\) '
             FROM pv_range WHERE instance = 0)
          AND (SELECT keyset_query ~ '\(id\) OPERATOR\(pg_catalog\.>=\) ' AND keyset_query ~ '\(id\) OPERATOR\(pg_catalog\.<\) '
                      AND keyset_query !~ 'abs\('
                 FROM pv_range WHERE instance = 1)
          AND (SELECT keyset_query ~ '\(id\) OPERATOR\(pg_catalog\.>=\) ' AND keyset_query !~ '\(id\) OPERATOR\(pg_catalog\.<\) '
                 FROM pv_range WHERE instance = 2),
          'preview() of a range-partitioned job: each keyset query bounds its instance''s key range');

SELECT is((SELECT count(*) FROM pv_filter
            WHERE keyset_query ~ 'v < 5000' AND plan ~ 'Index (Only )?Scan using est_items_pkey'
              AND estimated_batches = ceil(estimated_rows / 700.0)),
          2::bigint, 'preview() of a filtered job: the filter is in each keyset query');

SELECT ok((SELECT sum(estimated_rows) BETWEEN 0.8 * :est_count_filtered AND 1.2 * :est_count_filtered
             FROM pv_filter),
          format('preview() of a filtered job: the estimated rows reflect the filter (%s within 20%%)',
                 :est_count_filtered));

-- 3. A slow job, watched while it runs ------------------------------------------

SELECT iterjob.enqueue('prog_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE prog_items SET n = n + 1 FROM s WHERE prog_items.id = ANY($1)',
       instances => 2, batch_size => 10) AS slow \gset

-- Meanwhile, on the other two workers: the jobs of sections 4 and 5.
SELECT iterjob.enqueue('err_items',
       'UPDATE err_items SET n = n + 1 / (CASE WHEN id = 155 THEN 0 ELSE 1 END) WHERE id = ANY($1)',
       instances => 2, batch_size => 10, max_attempts => 2) AS err \gset

-- Three jobs on est_items, paused in the transaction that enqueues them
-- (no worker runs them) until they are counted.
BEGIN;
SELECT iterjob.enqueue('est_items', 'INSERT INTO est_seen SELECT ''r1'', unnest($1)',
                       instances => 2, batch_size => 1000) AS r1 \gset
SELECT iterjob.enqueue('est_items', 'INSERT INTO est_seen SELECT ''r2'', unnest($1)',
                       instances => 2, batch_size => 1000, filter => 'v < 5000') AS r2 \gset
SELECT iterjob.enqueue('est_items', 'INSERT INTO est_seen SELECT ''r3'', unnest($1)',
                       instances => 3, batch_size => 1000, partition => 'range') AS r3 \gset
SELECT iterjob.pause(:r1) || iterjob.pause(:r2) || iterjob.pause(:r3) AS paused \gset
COMMIT;
SELECT (SELECT rows_total FROM iterjob.job WHERE id = :r1) AS r1_estimate,
       (SELECT rows_total FROM iterjob.job WHERE id = :r2) AS r2_estimate,
       (SELECT rows_total FROM iterjob.job WHERE id = :r3) AS r3_estimate \gset

-- The keys ending in 1 (below the upper bound, 20,000) and 100 beyond it.
INSERT INTO est_items (id, v)
SELECT i, (i * 7919) % 20000 FROM generate_series(1, 20000) i WHERE i % 10 = 1;
INSERT INTO est_items (id, v) SELECT i, i % 100 FROM generate_series(20001, 20100) i;

SELECT ok(:r1_estimate BETWEEN 0.8 * :est_count AND 1.2 * :est_count,
          format('rows_total at enqueue is the planner''s estimate, within 20%% of the %s rows (%s)',
                 :est_count, :r1_estimate));
SELECT ok(:r2_estimate BETWEEN 0.8 * :est_count_filtered AND 1.2 * :est_count_filtered,
          format('with filter v < 5000 the estimate reflects it, within 20%% of its %s rows (%s)',
                 :est_count_filtered, :r2_estimate));
SELECT ok(:r3_estimate BETWEEN 0.8 * :est_count AND 1.2 * :est_count,
          format('a range-partitioned job: estimate within 20%% of the %s rows (%s)', :est_count, :r3_estimate));
SELECT is((SELECT count(*) FROM iterjob.task_progress t JOIN iterjob.job j ON j.id = t.job_id
            WHERE t.job_id IN (:r1, :r2, :r3) AND t.rows_total = j.rows_total / j.instances),
          7::bigint,
          'at enqueue each instance gets its share of the estimate');

SELECT is(iterjob.recount(:r1), 20000::bigint,
          'recount(): 20,000 rows, with those added up to the upper bound, not those beyond it');
SELECT is(iterjob.recount(:r2), 5000::bigint, 'recount() of the filtered job: 5,000 rows');
SELECT is(iterjob.recount(:r3), 20000::bigint, 'recount() of the range-partitioned job: 20,000 rows');
SELECT is((SELECT array_agg(rows_total ORDER BY id) FROM iterjob.job WHERE id IN (:r1, :r2, :r3)),
          ARRAY[20000, 5000, 20000]::bigint[],
          'recount() stores the exact counts as the jobs'' rows_total');

SELECT is((SELECT array_agg(rows_total ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :r1),
          (SELECT array_agg(c ORDER BY i) FROM (SELECT id % 2 AS i, count(*) AS c FROM est_items
                                                 WHERE id <= 20000 GROUP BY 1) s),
          'recount(): each instance''s rows_total is the count of its partition');
SELECT is((SELECT array_agg(rows_total ORDER BY instance) FROM iterjob.task_progress WHERE job_id = :r2),
          (SELECT array_agg(c ORDER BY i) FROM (SELECT id % 2 AS i, count(*) AS c FROM est_items
                                                 WHERE id <= 20000 AND v < 5000 GROUP BY 1) s),
          'recount() of the filtered job: each instance''s rows_total counts its filtered partition');
SELECT is((SELECT array_agg(t.rows_total ORDER BY t.instance) FROM iterjob.task_progress t WHERE t.job_id = :r3),
          (SELECT array_agg((SELECT count(*) FROM est_items e
                              WHERE e.id <= 20000
                                AND (t.range_start IS NULL OR e.id >= (t.range_start #>> '{}')::bigint)
                                AND (t.range_end IS NULL OR e.id < (t.range_end #>> '{}')::bigint))
                            ORDER BY t.instance)
             FROM iterjob.task t WHERE t.job_id = :r3),
          'recount() of the range-partitioned job: each instance''s rows_total counts its key range');
SELECT is((SELECT count(*) FROM iterjob.job_progress j
            WHERE j.job_id IN (:r1, :r2, :r3)
              AND j.rows_total = (SELECT sum(t.rows_total) FROM iterjob.task_progress t
                                   WHERE t.job_id = j.job_id)),
          3::bigint,
          'recount(): the instances'' rows_total add up to the job''s');

SELECT iterjob.resume(:r1) || iterjob.resume(:r2) || iterjob.resume(:r3) AS resumed \gset

-- Sample from the first checkpoint of both instances on.
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.task
                                    WHERE job_id = %s AND state = ''running'' AND batches_done >= 1) = 2', :slow),
                         '30 s'),
          'both instances of the slow job are running and have committed a batch');

SELECT is(iterjob.recount(:slow), 1000::bigint, 'recount() of the running slow job: 1000 rows');

CALL tap_sample(:slow, 20);

-- A reader with an open transaction, while the job runs.
BEGIN;
SELECT clock_timestamp() AS reader_begin,
       (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :slow) AS reader_rows_begin,
       (SELECT count(*) FROM iterjob.task_progress WHERE job_id = :slow) AS reader_tasks,
       (SELECT count(*) FROM iterjob.workers WHERE job_id = :slow) AS reader_workers,
       (SELECT count(*) FROM iterjob.errors) AS reader_errors \gset
SELECT tap_watch_locks(:slow, 12) AS watched \gset
SELECT clock_timestamp() AS reader_end,
       (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :slow) AS reader_rows_end,
       (SELECT max(updated_at) FROM iterjob.task_progress WHERE job_id = :slow) AS reader_last_update,
       (SELECT state FROM iterjob.job_progress WHERE job_id = :slow) AS reader_state_end \gset
COMMIT;

-- The rest of the job: with progress NOTICEs, which log_min_messages = notice
-- also sends to the server log.
SELECT tap_log_mark('wait') >= 0 AS marked, clock_timestamp() AS wait_started \gset
SET log_min_messages = notice;
SELECT iterjob.wait(:slow, '120 s', progress => true) AS slow_state \gset
RESET log_min_messages;

SELECT is(:'slow_state'::text, 'succeeded', 'the slow job succeeded');

-- job_progress while running
SELECT is((SELECT count(*) FROM s_job), 20::bigint, '20 samples of job_progress were taken');

SELECT is((SELECT count(*) FROM s_job WHERE state = 'running' AND running_tasks = 2), 20::bigint,
          'in every sample the job and both its instances are running');

SELECT is((SELECT count(*) FROM s_job WHERE rows_per_second > 0 AND eta IS NOT NULL), 20::bigint,
          'while running: job rows_per_second > 0 and eta not null');

SELECT is((SELECT count(*) FROM s_job WHERE abs(rows_per_second - task_rps_sum) <= 0.2), 20::bigint,
          'job rows_per_second = the sum of its running instances''');

SELECT is((SELECT count(*) FROM s_job
            WHERE abs(extract(epoch FROM eta) - (rows_total - rows_done) / rows_per_second)
                  <= 0.05 * (rows_total - rows_done) / rows_per_second + 0.5),
          20::bigint,
          'job eta = rows left / rows_per_second');

SELECT is((SELECT count(*) FROM s_job
            WHERE rows_total = 1000 AND percent < 100
              AND percent = round(100.0 * rows_done / rows_total, 1)),
          20::bigint,
          'while running, with an exact rows_total: percent = rows_done / rows_total, below 100');

SELECT is((SELECT count(*) FROM s_job
            WHERE bar ~ '^\[#*-*\] \d{1,3}%$'
              AND length(substring(bar FROM '^\[([#-]*)\]')) = 20
              AND length(substring(bar FROM '^\[(#*)')) BETWEEN floor(percent / 5) AND ceil(percent / 5)
              AND substring(bar FROM '\] (\d+)%$')::numeric = round(percent)),
          20::bigint,
          'while running: bar is [###---] NN% with 20 cells, matching percent');

SELECT is((SELECT count(*) FROM (SELECT elapsed > lag(elapsed) OVER (ORDER BY k) AS grew FROM s_job) s
            WHERE grew),
          19::bigint,
          'job elapsed grows from one sample to the next');

-- The rate from the first batches on: each instance does 10 rows per
-- 0.2 s batch, ~50 rows/s, and a moving average of that cannot be far above
-- the throughput so far.
SELECT is((SELECT count(*) FROM s_job
            WHERE rows_per_second > 4 * rows_done / extract(epoch FROM ts - started_at)),
          0::bigint,
          'job rows_per_second is never over 4x the throughput so far (rows_done / time since start)');
SELECT diag(format('job samples %s..%s: rows_per_second %s .. %s, throughput so far %s .. %s rows/s',
                   min(k), max(k), max(rows_per_second), min(rows_per_second),
                   round(min(rows_done / extract(epoch FROM ts - started_at)), 1),
                   round(max(rows_done / extract(epoch FROM ts - started_at)), 1)))
  FROM s_job;

-- task_progress while running
SELECT is((SELECT count(*) FROM s_task WHERE state = 'running'), 40::bigint,
          'both instances are running in every sample of task_progress');

SELECT is((SELECT count(*) FROM s_task WHERE rows_per_second > 0 AND eta IS NOT NULL), 40::bigint,
          'while running: each instance''s rows_per_second > 0 and eta not null');

SELECT is((SELECT count(*) FROM s_task
            WHERE rows_total = 500 AND percent < 100
              AND percent = round(100.0 * rows_done / rows_total, 1)
              AND abs(extract(epoch FROM eta) - (rows_total - rows_done) / rows_per_second)
                  <= 0.05 * (rows_total - rows_done) / rows_per_second + 0.5),
          40::bigint,
          'per instance: exact rows_total 500, percent below 100, eta = rows left / rate');

SELECT is((SELECT count(*) FROM s_task
            WHERE bar ~ '^\[#*-*\] \d{1,3}%$'
              AND length(substring(bar FROM '^\[([#-]*)\]')) = 20
              AND substring(bar FROM '\] (\d+)%$')::numeric = round(percent)),
          40::bigint,
          'per instance: bar shape while running');

SELECT is((SELECT count(*) FROM (SELECT elapsed > lag(elapsed) OVER (PARTITION BY instance ORDER BY k) AS grew
                                   FROM s_task) s
            WHERE grew),
          38::bigint,
          'per instance: elapsed grows from one sample to the next');

SELECT is((SELECT count(*) FROM s_task WHERE worker_pid IS NOT NULL AND pid_backend_type = 'iterjob worker'),
          40::bigint,
          'worker_pid of a running instance is a live iterjob worker');

SELECT is((SELECT count(DISTINCT worker_pid) FROM s_task), 2::bigint,
          'the two instances have two different workers');

SELECT is((SELECT count(*) FROM s_task
            WHERE batches_done >= 1
              AND rows_per_second > 4 * rows_done / extract(epoch FROM ts - started_at)),
          0::bigint,
          'an instance''s rows_per_second is never over 4x its throughput so far, from its first batch on');
SELECT diag(format('instance %s at its first sample: %s rows in %s batches, rows_per_second %s, throughput so far %s rows/s, eta %s',
                   instance, rows_done, batches_done, rows_per_second,
                   round(rows_done / extract(epoch FROM ts - started_at), 1), eta))
  FROM s_task WHERE k = 1 ORDER BY instance;

-- the workers view while running
SELECT is((SELECT count(*) FROM (SELECT k FROM s_worker GROUP BY k
                                  HAVING count(*) = 2
                                     AND array_agg(instance ORDER BY instance) = ARRAY[0, 1]) s),
          20::bigint,
          'workers view: in every sample one row per running instance of the job');

SELECT is((SELECT count(*) FROM s_worker
            WHERE database = current_database() AND application_name = 'iterjob worker'
              AND backend_type = 'iterjob worker' AND backend_start IS NOT NULL),
          40::bigint,
          'workers view: database is this one, application_name and backend_type are iterjob worker');

SELECT is((SELECT count(*) FROM s_worker WHERE pid = task_worker_pid AND task_state = 'running'),
          40::bigint,
          'workers view: the pid is the running instance''s worker_pid');

SELECT is((SELECT count(*) FROM s_worker
            WHERE phase IN ('claiming', 'keyset query', 'action', 'checkpoint', 'finishing',
                            'retry backoff', 'idle', 'held', 'throttled', 'trailing')),
          40::bigint,
          'workers view: phase is one of iterjob''s phases');

SELECT ok((SELECT count(*) FROM s_worker WHERE phase = 'action') > 0,
          'workers view: with a slow action, workers are seen in phase action');

SELECT is((SELECT count(*) FROM s_worker WHERE batch >= 1 AND batch - task_batches_done BETWEEN 0 AND 2),
          40::bigint,
          'workers view: batch is the instance''s batch in flight (batches_done + 1)');

SELECT is((SELECT count(*) FROM (SELECT instance FROM s_worker GROUP BY instance
                                  HAVING max(batch) > min(batch)) s),
          2::bigint,
          'workers view: batch moves on');

SELECT is((SELECT count(*) FROM s_worker
            WHERE since BETWEEN task_started_at - interval '1 s' AND ts
              AND backend_start <= since),
          40::bigint,
          'workers view: since is when the worker took the instance');

-- a reader's open transaction
SELECT is(:reader_tasks::bigint, 2::bigint, 'the reader saw both instances');
SELECT is((SELECT count(*) FROM lock_samples), 12::bigint, 'lock samples taken while the reader''s transaction was open');
SELECT is((SELECT sum(ungranted) + sum(lock_waits) FROM lock_samples), 0::numeric,
          'no iterjob worker waited for a lock while the reader''s transaction was open');
SELECT ok(:reader_rows_end > :reader_rows_begin AND :'reader_state_end' = 'running'
          AND (SELECT max(rows_done) > min(rows_done) FROM lock_samples),
          'the job kept committing batches while the reader''s transaction was open');
SELECT ok(:'reader_last_update'::timestamptz BETWEEN :'reader_begin'::timestamptz AND :'reader_end'::timestamptz,
          'an instance checkpointed inside the reader''s time window');

-- the end
SELECT ok((SELECT state = 'succeeded' AND percent = 100.0 AND eta IS NULL AND rows_per_second IS NULL
                  AND bar = '[####################] 100%'
                  AND rows_done = 1000 AND rows_total = 1000 AND instances_done = 2
             FROM iterjob.job_progress WHERE job_id = :slow),
          'at the end: job percent 100.0, eta and rows_per_second null, bar full, rows_done = rows_total');

SELECT is((SELECT count(*) FROM iterjob.task_progress
            WHERE job_id = :slow AND state = 'succeeded' AND percent = 100.0 AND eta IS NULL
              AND rows_per_second IS NULL AND worker_pid IS NULL
              AND bar = '[####################] 100%' AND rows_done = rows_total),
          2::bigint,
          'at the end: each instance at 100.0 with a full bar, no eta, no rate, no worker_pid');

SELECT elapsed AS slow_elapsed FROM iterjob.job_progress WHERE job_id = :slow \gset
SELECT pg_sleep(0.1) AS slept \gset
SELECT ok((SELECT elapsed = :'slow_elapsed'::interval AND elapsed = finished_at - started_at
             FROM iterjob.job_progress WHERE job_id = :slow),
          'at the end: elapsed = finished_at - started_at, and stops growing');

SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.workers WHERE job_id = %s)', :slow), '10 s'),
          'after the job: no row of the workers view for it');

-- wait(progress => true)
SELECT cmp_ok((SELECT count(*) FROM tap_log_lines('wait',
                 format('NOTICE:  iterjob job %s running: \d+ of 1000 rows \(\d{1,2}\.\d%%\), \d+ rows/s, ETA \d\d:\d\d:\d\d, [01] of 2 instances done$',
                        :slow))),
              '>=', 1::bigint,
              'wait(progress => true): NOTICE "running: X of Y rows (P%), R rows/s, ETA ..., a of b instances done" while waiting');

SELECT is((SELECT count(*) FROM tap_log_lines('wait',
             format('NOTICE:  iterjob job %s succeeded: 1000 of 1000 rows \(100\.0%%\), 0 rows/s, ETA unknown, 2 of 2 instances done$',
                    :slow))),
          1::bigint,
          'wait(progress => true): one final NOTICE when the job succeeded');

-- The log line's timestamp (log_line_prefix '%m ...' of test/lib.sh).
CREATE TABLE notice_times AS
SELECT substring(line FROM '^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [A-Za-z]+)')::timestamptz AS logged
  FROM tap_log_lines('wait', format('NOTICE:  iterjob job %s running: ', :slow)) AS l(line);

SELECT ok((SELECT min(logged) - :'wait_started'::timestamptz BETWEEN interval '2.5 s' AND interval '4 s'
             FROM notice_times)
          AND (SELECT count(*) FROM (SELECT logged - lag(logged) OVER (ORDER BY logged) AS gap
                                       FROM notice_times) s
                WHERE gap NOT BETWEEN interval '2.5 s' AND interval '4 s') = 0,
          'wait(progress => true): the first NOTICE after ~3 s, then one every ~3 s');

SELECT is((SELECT count(*) FROM tap_log_lines('wait', format('NOTICE:  iterjob job %s ', :slow)) AS l(line)
            WHERE line !~ ' running: ' AND line !~ ' succeeded: '),
          0::bigint,
          'wait(progress => true): no other NOTICE');

-- 4. rows_total, at the end ---------------------------------------------------

SELECT is((SELECT array_agg(iterjob.wait(id, '60 s') ORDER BY id) FROM unnest(ARRAY[:r1, :r2, :r3]::bigint[]) id),
          ARRAY['succeeded', 'succeeded', 'succeeded'],
          'the three counted jobs succeeded');
SELECT is((SELECT count(*) FROM iterjob.job_progress
            WHERE job_id IN (:r1, :r2, :r3) AND rows_done = rows_total AND percent = 100.0
              AND bar = '[####################] 100%'),
          3::bigint,
          'counted jobs end with rows_done = rows_total and percent 100.0');
SELECT is((SELECT count(*) FROM iterjob.task_progress
            WHERE job_id IN (:r1, :r2, :r3) AND rows_done = rows_total AND percent = 100.0),
          7::bigint,
          '... and so does each of their instances');
SELECT is((SELECT array_agg(c ORDER BY tag) FROM (SELECT tag, count(*) AS c FROM est_seen GROUP BY tag) s),
          ARRAY[20000, 5000, 20000]::bigint[],
          'the counted jobs really iterated that many rows');

-- recount() in a transaction that is still open when the first worker comes
-- for the job: that worker cannot claim the locked task and leaves.  Once the
-- transaction commits, the job must still run.
SELECT ok(tap_no_workers(), 'no iterjob worker is connected here');
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 25) AS early_job \gset
BEGIN;
SELECT iterjob.recount(:early_job) AS early_count \gset
SELECT pg_sleep(1) AS slept \gset
COMMIT;
SELECT is(:early_count::bigint, 50::bigint, 'recount() right after enqueue: 50 rows');
SELECT is(iterjob.wait(:early_job, '5 s'), 'succeeded',
          'a job recounted (in an open transaction) just as its first worker came still runs');

-- 5. The errors view ----------------------------------------------------------

SELECT is(iterjob.wait(:err, '60 s'), 'failed', 'the job whose action fails at key 155 failed');

SELECT is((SELECT array_agg(attempt ORDER BY attempt) FROM iterjob.errors WHERE job_id = :err),
          ARRAY[1, 2],
          'errors: one row per failed attempt, max_attempts => 2');
SELECT is((SELECT count(*) FROM iterjob.errors
            WHERE job_id = :err AND instance = 1 AND sqlstate = '22012'
              AND message = 'division by zero' AND detail IS NULL AND hint IS NULL),
          2::bigint,
          'errors: instance 1, sqlstate 22012, message division by zero');
SELECT is((SELECT count(*) FROM iterjob.errors
            WHERE job_id = :err AND context IS NOT NULL AND context ~ 'UPDATE err_items'),
          2::bigint,
          'errors: context is set (the action''s statement)');
SELECT is((SELECT array_agg(DISTINCT cursor) FROM iterjob.errors WHERE job_id = :err),
          ARRAY['{"instance": 1, "inner_cursor": 139}'::jsonb],
          'errors: cursor is the instance''s checkpoint when its batch failed (139, before 141..159)');
SELECT is((SELECT cursor FROM iterjob.task_progress WHERE job_id = :err AND instance = 1),
          '{"instance": 1, "inner_cursor": 139}'::jsonb,
          '... which is where the failed instance stays');
SELECT ok((SELECT max(logged_at) - min(logged_at) >= interval '0.9 s' FROM iterjob.errors WHERE job_id = :err),
          'errors: the second attempt came after the 1 s backoff');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id IN (:slow, :r1, :r2, :r3)), 0::bigint,
          'errors: nothing for jobs that did not fail');

-- 6. LOG lines ----------------------------------------------------------------

SELECT is((SELECT count(*) FROM tap_log_lines('start',
             format('LOG:  iterjob: job %s started: 2 instances over public\.prog_items$', :slow))),
          1::bigint,
          'LOG: one "started" line for the 2-instance job');
SELECT is((SELECT count(*) FROM tap_log_lines('start',
             format('LOG:  iterjob: job %s succeeded: 1000 rows in 100 batches, \d+(\.\d+)? s$', :slow))),
          1::bigint,
          'LOG: "succeeded: 1000 rows in 100 batches, N s"');
SELECT is((SELECT count(*) FROM tap_log_lines('start',
             format('LOG:  iterjob: job %s failed: \d+ rows in \d+ batches, \d+(\.\d+)? s$', :err))),
          1::bigint,
          'LOG: "failed: X rows in Y batches, N s" for the failed job');
SELECT is((SELECT count(*) FROM tap_log_lines('start', format('iterjob: job %s instance \d+: batch \d+ committed', :slow))),
          0::bigint,
          'LOG: nothing per batch with iterjob.log_batches off');

-- A paused job, kept through every purge below.  Paused in the transaction
-- that enqueues it, so that no worker ever runs it.
BEGIN;
SELECT iterjob.enqueue('slow_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE slow_items SET n = n + 1 FROM s WHERE slow_items.id = ANY($1)',
       batch_size => 1) AS paused_job \gset
SELECT is(iterjob.pause(:paused_job), 'paused', 'pause() of a fresh job');
COMMIT;
SELECT is((SELECT count(*) FROM tap_log_lines('start', format('LOG:  iterjob: job %s paused$', :paused_job))),
          1::bigint,
          'LOG: "job N paused"');

-- iterjob.log_batches = on: one line per committed batch.
ALTER SYSTEM SET iterjob.log_batches = on;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
SELECT is(current_setting('iterjob.log_batches'), 'on', 'iterjob.log_batches is on');
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 10) AS logged_job \gset
SELECT is(iterjob.wait(:logged_job, '60 s'), 'succeeded', 'a 5-batch job under log_batches succeeded');
ALTER SYSTEM RESET iterjob.log_batches;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset
SELECT is(current_setting('iterjob.log_batches'), 'off', 'iterjob.log_batches is off again');

SELECT is((SELECT array_agg(substring(line FROM 'batch (\d+) committed')::int ORDER BY 1)
             FROM tap_log_lines('start', format('LOG:  iterjob: job %s instance 0: batch \d+ committed$', :logged_job)) AS l(line)),
          ARRAY[1, 2, 3, 4, 5],
          'LOG with log_batches on: "job N instance 0: batch k committed" for k = 1..5');

-- 7. Retention and purge --------------------------------------------------------

-- A job of another (non-admin) role.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tap_mon_owner') THEN
        DROP ROLE tap_mon_owner;
    END IF;
END
$$;
CREATE ROLE tap_mon_owner LOGIN;
GRANT iterjob_user TO tap_mon_owner;
GRANT SELECT, UPDATE ON small_items TO tap_mon_owner;
SET ROLE tap_mon_owner;
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 25) AS owned_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:owned_job, '60 s'), 'succeeded', 'the other role''s job succeeded');

-- No worker may purge behind our back while jobs are aged by hand.
SELECT ok(tap_no_workers(), 'no iterjob worker is connected here before aging jobs');

UPDATE iterjob.job SET finished_at = now() - interval '5 days' WHERE id = :err;
UPDATE iterjob.job SET finished_at = now() - interval '4 days' WHERE id IN (:r3, :owned_job);
UPDATE iterjob.job SET finished_at = now() - interval '2 days' WHERE id = :r1;
UPDATE iterjob.job SET finished_at = now() - interval '30 days' WHERE id = :paused_job;

-- A running job, however old its finished_at says it is.
SELECT iterjob.enqueue('slow_items',
       'WITH s AS (SELECT pg_sleep(0.2)) UPDATE slow_items SET n = n + 1 FROM s WHERE slow_items.id = ANY($1)',
       batch_size => 1) AS running_job \gset
SELECT ok(tap_wait_until(format('(SELECT state = ''running'' FROM iterjob.job WHERE id = %s)', :running_job)),
          'a job is running');
UPDATE iterjob.job SET finished_at = now() - interval '30 days' WHERE id = :running_job;

SELECT (SELECT count(*) FROM iterjob.task WHERE job_id = :err) AS err_tasks,
       (SELECT count(*) FROM iterjob.error_log WHERE job_id = :err) AS err_rows \gset
SELECT is(:err_tasks || ' tasks, ' || :err_rows || ' errors', '2 tasks, 2 errors',
          'before purging: the failed job has its tasks and error rows');

SET ROLE tap_mon_owner;
SELECT is(iterjob.purge('3 days'), 1::bigint, 'a non-admin''s purge(''3 days'') deletes only its own old job');
RESET ROLE;
SELECT is((SELECT array_agg(id ORDER BY id) FROM iterjob.job WHERE id IN (:owned_job, :r3, :err)),
          ARRAY[:err, :r3]::bigint[],
          '... its job is gone, the superuser''s as old ones are not');

SELECT is(iterjob.purge('3 days'), 2::bigint, 'purge(''3 days''): the 2 finished jobs older than 3 days');
SELECT is((SELECT count(*) FROM iterjob.job WHERE id IN (:err, :r3)), 0::bigint, '... are deleted');
SELECT is((SELECT count(*) FROM iterjob.task WHERE job_id IN (:err, :r3))
          + (SELECT count(*) FROM iterjob.error_log WHERE job_id IN (:err, :r3)),
          0::bigint,
          '... with their tasks and error rows');
SELECT is((SELECT array_agg(id ORDER BY id) FROM iterjob.job
            WHERE id IN (:slow, :r1, :r2, :paused_job, :logged_job, :running_job)),
          ARRAY[:slow, :r1, :r2, :paused_job, :logged_job, :running_job]::bigint[],
          '... newer finished jobs, a paused and a running job (however old their finished_at) are kept');

SELECT is(iterjob.cancel(:running_job), 'cancelled', 'cancel() the running job');
SELECT is(iterjob.wait(:running_job, '30 s'), 'cancelled', '... it is cancelled');
SELECT is((SELECT count(*) FROM tap_log_lines('start', format('LOG:  iterjob: job %s cancelled$', :running_job))),
          1::bigint,
          'LOG: "job N cancelled"');
SELECT ok(tap_no_workers(), 'no iterjob worker is connected here any more');

-- purge() without an argument: iterjob.retention (7 days by default).
SELECT is(current_setting('iterjob.retention'), '7d', 'iterjob.retention is 7 days');
UPDATE iterjob.job SET finished_at = now() - interval '8 days' WHERE id = :r1;
SELECT is(iterjob.purge(), 1::bigint, 'purge(): deletes the finished job older than iterjob.retention');
SELECT is((SELECT array_agg(id ORDER BY id) FROM iterjob.job WHERE id IN (:r1, :r2, :paused_job)),
          ARRAY[:r2, :paused_job]::bigint[],
          '... that one, not the newer one nor the paused one');
SELECT is(iterjob.purge(NULL), 0::bigint, 'purge(NULL): nothing left past iterjob.retention');

-- Workers purge past iterjob.retention when they find no more work.
UPDATE iterjob.job SET finished_at = now() - interval '8 days' WHERE id = :r2;
SELECT tap_log_mark('autopurge') >= 0 AS marked \gset
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 25) AS trigger_job \gset
SELECT is(iterjob.wait(:trigger_job, '60 s'), 'succeeded', 'another small job ran');
SELECT ok(tap_wait_until(format('NOT EXISTS (SELECT FROM iterjob.job WHERE id = %s)', :r2), '10 s'),
          'a worker that found no more work purged the job finished 8 days ago');
SELECT is((SELECT count(*) FROM iterjob.task WHERE job_id = :r2), 0::bigint, '... with its tasks');
SELECT is((SELECT array_agg(id ORDER BY id) FROM iterjob.job WHERE id IN (:paused_job, :trigger_job)),
          ARRAY[:paused_job, :trigger_job]::bigint[],
          '... and kept the paused job and the one that just ran');
SELECT ok(tap_wait_until('EXISTS (SELECT FROM tap_log_lines(''autopurge'', ''LOG:  iterjob: purged 1 finished jobs older than iterjob\.retention$''))', '5 s'),
          'LOG: "purged 1 finished jobs older than iterjob.retention"');

-- iterjob.retention = -1 keeps them.
SELECT ok(tap_no_workers(), 'no iterjob worker is connected here');
ALTER SYSTEM SET iterjob.retention = -1;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
SELECT is(current_setting('iterjob.retention'), '-1', 'iterjob.retention is -1');
UPDATE iterjob.job SET finished_at = now() - interval '8 days' WHERE id = :trigger_job;
SELECT iterjob.enqueue('small_items', 'UPDATE small_items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 25) AS keep_job \gset
SELECT is(iterjob.wait(:keep_job, '60 s'), 'succeeded', 'with retention -1, another small job ran');
SELECT ok(tap_no_workers(), '... and its workers left');
SELECT is(iterjob.purge(), 0::bigint, 'purge() with retention -1 deletes nothing');
SELECT is((SELECT count(*) FROM iterjob.job WHERE id = :trigger_job), 1::bigint,
          'with retention -1, the job finished 8 days ago is kept by workers and purge()');
ALTER SYSTEM RESET iterjob.retention;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset
SELECT is(current_setting('iterjob.retention'), '7d', 'iterjob.retention is back to 7 days');
-- purge() deletes it, unless a worker's periodic look did first
SELECT iterjob.purge() AS purged \gset
SELECT ok(NOT EXISTS (SELECT FROM iterjob.job WHERE id = :trigger_job),
          '... and with 7 days again, that job is deleted (by purge() or a worker)');

-- Clean up ----------------------------------------------------------------

SELECT is(iterjob.cancel(:paused_job), 'cancelled', 'cancel() the paused job');
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE state NOT IN ('succeeded', 'failed', 'cancelled')),
          0::bigint, 'every job of this file has ended');

DROP OWNED BY tap_mon_owner;
DROP ROLE tap_mon_owner;

SELECT * FROM finish();
