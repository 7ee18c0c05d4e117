-- core.sql: iterjob's core behaviour, end to end, with real background
-- workers.
--
-- Jobs run in background workers and only see committed data, so this file
-- runs in autocommit: it creates tables, enqueues, waits with iterjob.wait()
-- outside any explicit transaction, then asserts.  Run by
-- test/pgtap-exec.sh in a fresh database, on a cluster with iterjob
-- preloaded and iterjob.max_workers = 4 (test/run-all.sh pgtap).
--
--   1. a 4-instance job over 100,000 rows: exactly once, cursors, counters
--   2. a failing action fails only its task; its failing batch rolls back
--   3. enqueue is atomic: a rolled-back enqueue leaves nothing and runs nothing
--   4. a committed enqueue wakes workers promptly
--   5. workers show up in pg_stat_activity, naming their job; they leave
--   6. jobs in two databases at once; no worker lingers in an idle database
--   7. iterjob.max_workers caps concurrent workers cluster-wide

SET client_min_messages = warning;

SELECT plan(56);

-- Helpers -----------------------------------------------------------------

-- pg_stat_activity is snapshotted once per transaction: every poll below
-- clears that snapshot first, or it would see the same rows over and over.

-- True as soon as no iterjob worker is connected (to this database, or to
-- any with all_databases), false when timeout passes first.
CREATE FUNCTION tap_no_workers(timeout interval, all_databases boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        IF NOT EXISTS (SELECT 1 FROM pg_stat_activity
                        WHERE backend_type = 'iterjob worker'
                          AND (all_databases OR datname = current_database())) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

CREATE TABLE worker_samples (
    job_id           bigint,
    sample           integer,
    pid              integer,
    datname          name,
    backend_type     text,
    application_name text,
    query            text
);
CREATE TABLE task_pid_samples (job_id bigint, sample integer, instance integer, worker_pid integer);

-- Every 50 ms until job p_job reaches a final state (or timeout passes),
-- record every iterjob worker connected anywhere in the cluster and the
-- worker_pid task_progress shows for each running task of the job.
-- Returns the number of samples taken.
CREATE FUNCTION tap_sample_workers(p_job bigint, timeout interval DEFAULT '60 s')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    i integer := 0;
BEGIN
    LOOP
        i := i + 1;
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO worker_samples
        SELECT p_job, i, a.pid, a.datname, a.backend_type, a.application_name, a.query
          FROM pg_stat_activity a
         WHERE a.backend_type = 'iterjob worker';
        INSERT INTO task_pid_samples
        SELECT p_job, i, t.instance, t.worker_pid
          FROM iterjob.task_progress t
         WHERE t.job_id = p_job AND t.worker_pid IS NOT NULL;
        EXIT WHEN (SELECT j.state FROM iterjob.job_progress j WHERE j.job_id = p_job)
                  IN ('succeeded', 'failed', 'cancelled')
               OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN i;
END
$$;

-- 1. A 4-instance job over 100,000 rows ------------------------------------

-- Partitions of different sizes: 30,000 and 25,000 keys (multiples of the
-- batch size: their last batch is full, then an empty one ends the task),
-- 24,500 and 20,500 keys (their last batch is partial).  Key 0 included;
-- inserted in random order, so only the keyset order counts.
CREATE TABLE items (id bigint PRIMARY KEY, v int, w int, n int NOT NULL DEFAULT 0);
INSERT INTO items (id, v)
SELECT 4 * k + i, (4 * k + i) * 7919 % 10007
  FROM (VALUES (0, 30000), (1, 24500), (2, 25000), (3, 20500)) AS p(i, keys),
       generate_series(0, keys - 1) AS k
 ORDER BY random();

-- What each instance must have done: its partition (abs(id % 4) = i).
CREATE TABLE items_expected AS
SELECT (id % 4)::integer AS instance,
       count(*) AS rows,
       ceil(count(*) / 1000.0)::bigint AS batches,
       jsonb_build_object('instance', id % 4, 'inner_cursor', max(id)) AS cursor
  FROM items
 GROUP BY id % 4;

SELECT iterjob.enqueue('items',
                       'UPDATE items SET w = v * 2, n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 1000) AS items_job \gset

SELECT is(iterjob.wait(:items_job, '180 s'), 'succeeded',
          '4-instance job over 100,000 rows: wait() returns succeeded');

SELECT is((SELECT count(*) FROM items WHERE n <> 1), 0::bigint,
          'every row was processed exactly once (n = 1 everywhere)');

SELECT is((SELECT count(*) FROM items WHERE w IS DISTINCT FROM v * 2), 0::bigint,
          'the action''s effect is on every row (w = v * 2)');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :items_job),
          ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded'],
          'each of the 4 tasks succeeded');

SELECT is((SELECT array_agg(cursor ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :items_job),
          (SELECT array_agg(cursor ORDER BY instance) FROM items_expected),
          'each task''s final cursor is {"instance": i, "inner_cursor": last key of its partition}');

SELECT is((SELECT array_agg(rows_done ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :items_job),
          (SELECT array_agg(rows ORDER BY instance) FROM items_expected),
          'rows_done of each task = rows of its partition');

SELECT is((SELECT array_agg(batches_done ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :items_job),
          (SELECT array_agg(batches ORDER BY instance) FROM items_expected),
          'batches_done of each task = ceil(partition rows / 1000): the final empty batch is not counted');

SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :items_job),
          100000::bigint,
          'job_progress.rows_done = 100000');

SELECT is((SELECT batches_done FROM iterjob.job_progress WHERE job_id = :items_job),
          (SELECT sum(batches)::bigint FROM items_expected),
          'job_progress.batches_done = sum of the tasks'' batches');

SELECT is((SELECT instances_done FROM iterjob.job_progress WHERE job_id = :items_job),
          4,
          'job_progress.instances_done = 4');

SELECT ok((SELECT started_at IS NOT NULL AND finished_at IS NOT NULL
                  AND created_at <= started_at AND started_at <= finished_at
             FROM iterjob.job_progress WHERE job_id = :items_job),
          'job: created_at <= started_at <= finished_at, both set');

SELECT is((SELECT count(*) FROM iterjob.task_progress
            WHERE job_id = :items_job
              AND (started_at IS NULL OR finished_at IS NULL
                   OR started_at > finished_at)),
          0::bigint,
          'every task: started_at <= finished_at, both set');

-- The view hides worker_pid unless a task is running, so ask the table.
SELECT is((SELECT count(*) FROM iterjob.task
            WHERE job_id = :items_job AND worker_pid IS NOT NULL),
          0::bigint,
          'no task keeps a worker_pid after the job ended');

-- The per-batch checkpoints are HOT updates of iterjob.task (they change no
-- indexed column, and pruning keeps room on the page): only a task's claim
-- and its end, which change its state (the predicate column of its partial
-- index), may not be.  A checkpoint per batch plus 4 claims; an instance
-- whose last batch is short ends with it (one update), one whose last
-- batch is full ends when its next batch comes back empty (one more).
-- Workers flush their statistics within a second or so.
SELECT sum(batches) + 4 + count(*) FILTER (WHERE rows % 1000 = 0) AS task_updates
  FROM items_expected \gset
SELECT ok(tap_wait_until(format($c$(SELECT n_tup_upd >= %s FROM pg_stat_user_tables
                                     WHERE relid = 'iterjob.task'::regclass)$c$,
                                :task_updates), '10 s'),
          format('the statistics of iterjob.task count the %s updates of the job', :task_updates));
SELECT cmp_ok((SELECT n_tup_upd - n_tup_hot_upd FROM pg_stat_user_tables
                WHERE relid = 'iterjob.task'::regclass),
              '<=', 8 + 10::bigint,
              'at most a tenth of the checkpoints of iterjob.task are not HOT updates');

-- 2. A failing action fails only its task -----------------------------------

-- 4,000 keys, batches of 50: instance 1 (777 % 4) runs 1, 5, ..., 197, then
-- 201..397, then 401..597, then 601..797, which holds 777 and fails.
CREATE TABLE fails (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO fails (id) SELECT generate_series(1, 4000);

-- n + 1 / 1 for every key but 777, where 1 / 0 raises.  With the default
-- max_attempts the failing batch is retried with backoff (1 + 2 + 4 + 8 s)
-- before its task fails: every attempt must roll back as a whole.
SELECT iterjob.enqueue('fails',
                       'UPDATE fails SET n = n + 1 / (CASE WHEN id = 777 THEN 0 ELSE 1 END) WHERE id = ANY($1)',
                       instances => 4, batch_size => 50) AS fails_job \gset

SELECT is(iterjob.wait(:fails_job, '60 s'), 'failed',
          'a job whose action raises for one key ends failed');

SELECT is((SELECT array_agg(state ORDER BY instance) FROM iterjob.task_progress
            WHERE job_id = :fails_job),
          ARRAY['succeeded', 'failed', 'succeeded', 'succeeded'],
          'only the task of instance 777 % 4 = 1 failed; the other three succeeded');

SELECT ok((SELECT last_error LIKE '%division by zero%' AND attempts >= 1
             FROM iterjob.task_progress WHERE job_id = :fails_job AND instance = 1),
          'the failed task has last_error ~ division by zero and attempts >= 1');

SELECT is((SELECT count(*) FROM fails WHERE id % 4 <> 1 AND n <> 1), 0::bigint,
          'the other three partitions were processed exactly once');

SELECT is((SELECT cursor FROM iterjob.task_progress WHERE job_id = :fails_job AND instance = 1),
          '{"instance": 1, "inner_cursor": 597}'::jsonb,
          'the failed task''s cursor is the last key of its last committed batch');

SELECT is((SELECT (rows_done, batches_done)::text FROM iterjob.task_progress
            WHERE job_id = :fails_job AND instance = 1),
          '(150,3)',
          'the failed task counts its 3 committed batches (150 rows) only');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*)
             FROM fails f, iterjob.task_progress t
            WHERE t.job_id = :fails_job AND t.instance = 1
              AND f.id % 4 = 1 AND f.id <= (t.cursor->>'inner_cursor')::bigint),
          '0 of 150',
          'failed partition: every row up to the cursor was processed once');

SELECT is((SELECT count(*) FILTER (WHERE n <> 0) || ' of ' || count(*)
             FROM fails f, iterjob.task_progress t
            WHERE t.job_id = :fails_job AND t.instance = 1
              AND f.id % 4 = 1 AND f.id > (t.cursor->>'inner_cursor')::bigint),
          '0 of 850',
          'failed partition: the failing batch rolled back as a whole, nothing after it ran');

SELECT ok((SELECT last_error LIKE '%division by zero%'
             FROM iterjob.job_progress WHERE job_id = :fails_job),
          'job_progress.last_error reports the division by zero');

SELECT is((SELECT instances_done FROM iterjob.job_progress WHERE job_id = :fails_job),
          4,
          'the failed job has all 4 instances done');

-- 3. Enqueue is atomic --------------------------------------------------------

CREATE TABLE atomic_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO atomic_items (id) SELECT generate_series(1, 100);

BEGIN;
SELECT iterjob.enqueue('atomic_items',
                       'UPDATE atomic_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS rolled_back_job \gset
ROLLBACK;

-- Long enough for a wrongly woken worker to have run all 10 batches.
SELECT pg_sleep(1) AS slept \gset

SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id = :rolled_back_job),
          0::bigint,
          'a rolled-back enqueue leaves no job');

SELECT is((SELECT count(*) FROM iterjob.task_progress WHERE job_id = :rolled_back_job),
          0::bigint,
          'a rolled-back enqueue leaves no task');

SELECT is((SELECT count(*) FROM atomic_items WHERE n <> 0), 0::bigint,
          'a rolled-back enqueue runs nothing: its table is untouched');

SELECT throws_ok(format('SELECT iterjob.wait(%s)', :rolled_back_job),
                 format('iterjob job %s does not exist', :rolled_back_job),
                 'wait() on a rolled-back job: the job does not exist');

-- 4. A committed enqueue wakes workers promptly ------------------------------

-- With no worker connected here, only the commit's wake-up can start one
-- soon (the launcher otherwise rechecks once a minute).
SELECT ok(tap_no_workers('10 s'), 'before the wake-up test, no iterjob worker is connected here');

CREATE TABLE wake_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO wake_items (id) SELECT generate_series(1, 10);

SELECT iterjob.enqueue('wake_items',
                       'UPDATE wake_items SET n = n + 1 WHERE id = ANY($1)') AS wake_job \gset

SELECT is(iterjob.wait(:wake_job, '30 s'), 'succeeded', 'the wake-up job succeeds');

-- created_at is the enqueue's transaction start, before its commit: the
-- measured delay can only be longer than the real one.
SELECT cmp_ok((SELECT t.started_at - j.created_at
                 FROM iterjob.task_progress t
                 JOIN iterjob.job_progress j USING (job_id)
                WHERE job_id = :wake_job),
              '<', interval '2 s',
              'the task started less than 2 s after the enqueue committed');

-- 5. Workers in pg_stat_activity -----------------------------------------------

-- 2 instances x 4 batches x 0.2 s: each worker runs for about 0.8 s.
CREATE TABLE slow_items (id bigint PRIMARY KEY);
INSERT INTO slow_items (id) SELECT generate_series(1, 40);

-- The wake-up job's worker, warm, may still show its last batch in
-- pg_stat_activity for a moment after that job committed its end: sample
-- once it has moved on.
SELECT ok(tap_wait_until($$NOT EXISTS (SELECT FROM pg_stat_activity
                                         WHERE backend_type = 'iterjob worker'
                                           AND query LIKE 'iterjob job %')$$, '30 s'),
          'once a job has ended, its worker no longer shows its batch in pg_stat_activity');

SELECT iterjob.enqueue('slow_items', 'SELECT pg_sleep(0.2) FROM unnest($1) LIMIT 1',
                       instances => 2, batch_size => 5) AS slow_job \gset

SELECT cmp_ok(tap_sample_workers(:slow_job), '>', 1, 'sampled pg_stat_activity while the slow job ran');

SELECT is(iterjob.wait(:slow_job, '30 s'), 'succeeded', 'the slow job succeeds');

SELECT ok(EXISTS (SELECT 1 FROM worker_samples
                   WHERE job_id = :slow_job AND datname = current_database()),
          'while a job runs, its workers appear in pg_stat_activity with backend_type iterjob worker');

SELECT is((SELECT array_agg(DISTINCT coalesce(application_name, '<null>'))
             FROM worker_samples
            WHERE job_id = :slow_job AND datname = current_database()),
          ARRAY['iterjob worker'],
          'their application_name is iterjob worker');

SELECT is((SELECT array_agg(DISTINCT substring(query FROM '^iterjob job \d+ instance (\d+): batch \d+$')::int
                            ORDER BY substring(query FROM '^iterjob job \d+ instance (\d+): batch \d+$')::int)
             FROM worker_samples
            WHERE job_id = :slow_job AND datname = current_database()
              AND query LIKE format('iterjob job %s instance %%', :slow_job)),
          ARRAY[0, 1],
          'their query names the job and instance: iterjob job <id> instance <i>: batch <b>, both instances seen');

SELECT is((SELECT count(*) FROM worker_samples
            WHERE job_id = :slow_job AND datname = current_database()
              AND query LIKE 'iterjob job %'
              AND query NOT LIKE format('iterjob job %s instance %%', :slow_job)),
          0::bigint,
          'no worker here claims to run another job');

SELECT is((SELECT count(*) FROM task_pid_samples t
            WHERE t.job_id = :slow_job
              AND NOT EXISTS (SELECT 1 FROM worker_samples w
                               WHERE w.job_id = :slow_job AND w.pid = t.worker_pid
                                 AND w.datname = current_database())),
          0::bigint,
          'task_progress.worker_pid of a running task is the pid of an iterjob worker');

SELECT ok(tap_no_workers('5 s'),
          'after the job ends, no iterjob worker stays connected to this database (within 5 s)');

-- 6. Two databases at once --------------------------------------------------

CREATE EXTENSION dblink;

-- dblink does not inherit psql's PGHOST/PGPORT: name the socket and port.
SELECT :'dbname' || '_b' AS db_b \gset
SELECT prefix || 'postgres' AS conn_pg, prefix || quote_literal(:'db_b') AS conn_b
  FROM (SELECT format('host=%s port=%s user=%s dbname=',
                      trim(split_part(current_setting('unix_socket_directories'), ',', 1)),
                      current_setting('port'), current_user) AS prefix) AS p \gset

-- leftovers of an interrupted earlier run
SELECT dblink_exec(:'conn_pg', format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db_b')) AS dropped \gset
SELECT dblink_exec(:'conn_pg', format('CREATE DATABASE %I', :'db_b')) AS created \gset
SELECT dblink_connect('b', :'conn_b') AS connected \gset
SELECT dblink_exec('b', 'SET client_min_messages = warning; CREATE EXTENSION iterjob') AS ext \gset
SELECT dblink_exec('b', 'CREATE TABLE remote_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
                         INSERT INTO remote_items (id) SELECT generate_series(1, 3000)') AS t \gset

CREATE TABLE local_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO local_items (id) SELECT generate_series(1, 3000);

-- 2 instances x 15 batches x 50 ms each: both jobs run for about 0.75 s.
SELECT remote_job
  FROM dblink('b', $q$SELECT iterjob.enqueue('remote_items',
      'WITH s AS (SELECT pg_sleep(0.05)) UPDATE remote_items SET n = n + 1 FROM s WHERE id = ANY($1)',
      instances => 2, batch_size => 100)$q$) AS r(remote_job bigint) \gset
SELECT iterjob.enqueue('local_items',
       'WITH s AS (SELECT pg_sleep(0.05)) UPDATE local_items SET n = n + 1 FROM s WHERE id = ANY($1)',
       instances => 2, batch_size => 100) AS local_job \gset

SELECT is(iterjob.wait(:local_job, '60 s'), 'succeeded', 'two databases: the local job succeeds');

SELECT is((SELECT state FROM dblink('b', format('SELECT iterjob.wait(%s, ''60 s'')', :remote_job))
                          AS r(state text)),
          'succeeded',
          'two databases: the job in the second database succeeds');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM local_items),
          '0 of 3000',
          'two databases: every local row processed exactly once');

SELECT is((SELECT r FROM dblink('b', $q$SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*)
                                         FROM remote_items$q$) AS r(r text)),
          '0 of 3000',
          'two databases: every row of the second database processed exactly once');

SELECT ok((SELECT l.started_at < r.finished_at AND r.started_at < l.finished_at
             FROM iterjob.job_progress l,
                  dblink('b', format('SELECT started_at, finished_at FROM iterjob.job_progress WHERE job_id = %s',
                                     :remote_job)) AS r(started_at timestamptz, finished_at timestamptz)
            WHERE l.job_id = :local_job),
          'two databases: the two jobs ran at the same time');

SELECT dblink_disconnect('b') AS disconnected \gset

-- A plain DROP DATABASE (it waits up to 5 s for other sessions to leave,
-- then fails): no iterjob worker stays connected to a database with no work.
SELECT lives_ok(format('SELECT dblink_exec(%L, %L)', :'conn_pg', format('DROP DATABASE %I', :'db_b')),
                'plain DROP DATABASE of the second database succeeds: no iterjob worker lingers there');

-- 7. iterjob.max_workers caps workers cluster-wide -------------------------------

SELECT ok(tap_no_workers('10 s', all_databases => true),
          'before the cap test, no iterjob worker runs anywhere');

SELECT current_setting('iterjob.max_workers') AS max_workers_before \gset
ALTER SYSTEM SET iterjob.max_workers = 2;
SELECT pg_reload_conf() AS reloaded \gset
-- The launcher applies SIGHUP asynchronously (its latch is set at once).
SELECT pg_sleep(0.5) AS slept \gset

SELECT is(current_setting('iterjob.max_workers'), '2', 'iterjob.max_workers is now 2');

-- 8 instances x 10 batches x 20 ms: about 0.8 s with 2 workers.
CREATE TABLE cap_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cap_items (id) SELECT generate_series(1, 20000);

SELECT iterjob.enqueue('cap_items',
       'WITH s AS (SELECT pg_sleep(0.02)) UPDATE cap_items SET n = n + 1 FROM s WHERE id = ANY($1)',
       instances => 8, batch_size => 250) AS cap_job \gset

SELECT cmp_ok(tap_sample_workers(:cap_job), '>', 1, 'sampled pg_stat_activity while the 8-instance job ran');

SELECT is(iterjob.wait(:cap_job, '60 s'), 'succeeded', 'the 8-instance job under max_workers = 2 succeeds');

SELECT cmp_ok((SELECT max(c) FROM (SELECT count(*) AS c FROM worker_samples
                                    WHERE job_id = :cap_job GROUP BY sample) s),
              '<=', 2::bigint,
              'never more than iterjob.max_workers = 2 iterjob workers at once');

SELECT is((SELECT max(c) FROM (SELECT count(*) AS c FROM worker_samples
                                WHERE job_id = :cap_job GROUP BY sample) s),
          2::bigint,
          'the 2 allowed workers do run at once');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM cap_items),
          '0 of 20000',
          'under the cap, every row is still processed exactly once');

SELECT is((SELECT instances_done FROM iterjob.job_progress WHERE job_id = :cap_job),
          8,
          'all 8 instances are done');

ALTER SYSTEM RESET iterjob.max_workers;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.2) AS slept \gset

SELECT is(current_setting('iterjob.max_workers'), :'max_workers_before',
          'iterjob.max_workers is back to its configured value');

SELECT * FROM finish();
