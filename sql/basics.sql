--
-- basics: small jobs run end to end by the background workers.
--
-- Job ids, timestamps and pids differ from run to run: ids are kept in psql
-- variables (\gset), and only what is derived from them deterministically is
-- printed.  The views are read with column lists: columns may be added.
-- Waits have a generous timeout only so that a broken build shows up as a
-- diff instead of hanging the suite.
--

--
-- A filtered job over 10,000 rows in 3 instances and batches of 700.
--
CREATE TABLE b_items (id bigint PRIMARY KEY, v int, w int, n int NOT NULL DEFAULT 0);
INSERT INTO b_items (id, v, w) SELECT g, g % 10, g % 7 FROM generate_series(1, 10000) g;

SELECT iterjob.enqueue('b_items', 'UPDATE b_items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 3, batch_size => 700,
                       filter => 'v < 7 AND w <> 0', name => 'basics') AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');

-- every row matching the filter was updated exactly once, no other row was
SELECT (v < 7 AND w <> 0) AS matches, n, count(*)
  FROM b_items GROUP BY 1, 2 ORDER BY 1, 2;

-- What each instance had to do: the matching rows of its partition
-- (id % 3 = i).
CREATE TABLE b_expected AS
SELECT i AS instance, count(b.id) AS rows, max(b.id) AS max_key
  FROM generate_series(0, 2) i
  LEFT JOIN b_items b ON b.id % 3 = i AND b.v < 7 AND b.w <> 0
 GROUP BY i;

-- one task per instance; each succeeded with its cursor at the largest
-- matching key of its partition, after ceil(rows / 700) batches (a last,
-- empty batch ends the instance and is not counted)
SELECT t.instance, t.state, e.rows,
       t.cursor = jsonb_build_object('instance', e.instance, 'inner_cursor', e.max_key)
           AS cursor_ok,
       t.rows_done = e.rows AS rows_ok,
       t.batches_done, t.batches_done = ceil(e.rows / 700.0) AS batches_ok,
       t.attempts, t.last_error, t.worker_pid IS NULL AS no_pid,
       t.finished_at >= t.started_at AS times_ok
  FROM iterjob.task_progress t
  JOIN b_expected e USING (instance)
 WHERE t.job_id = :job_id
 ORDER BY t.instance;

-- the job: all instances done, counters summed
SELECT name, relation, state, instances, instances_done, rows_done, batches_done,
       batch_size, key_column, owner = current_user AS owner_ok,
       finished_at >= started_at AND started_at >= created_at AS times_ok,
       last_error
  FROM iterjob.job_progress WHERE job_id = :job_id;
SELECT (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :job_id)
       = (SELECT sum(rows) FROM b_expected) AS rows_done_ok,
       (SELECT batches_done FROM iterjob.job_progress WHERE job_id = :job_id)
       = (SELECT sum(ceil(rows / 700.0)) FROM b_expected) AS batches_done_ok;

-- the job row keeps what was enqueued
SELECT relation, key_columns, key_types, filter, action, instances, batch_size,
       search_path = current_setting('search_path') AS search_path_ok
  FROM iterjob.job WHERE id = :job_id;

-- no batch failed
SELECT count(*) AS errors FROM iterjob.errors WHERE job_id = :job_id;

-- waiting again, with or without a timeout, returns the final state at once
SELECT iterjob.wait(:job_id) AS wait, iterjob.wait(:job_id, '0 seconds') AS wait_0;

--
-- No filter, default instances (1) and batch_size (1000): every row once
-- more, in 10 batches.
--
SELECT iterjob.enqueue('b_items', 'UPDATE b_items SET n = n + 1 WHERE id = ANY($1)')
    AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT (v < 7 AND w <> 0) AS matches, n, count(*)
  FROM b_items GROUP BY 1, 2 ORDER BY 1, 2;
SELECT instance, state, cursor, rows_done, batches_done
  FROM iterjob.task_progress WHERE job_id = :job_id;

--
-- Instances whose partition holds no rows succeed without a batch: with 4
-- instances over keys that are all multiples of 4, instances 1 to 3 have
-- nothing to do, and their cursors stay null.
--
CREATE TABLE b_fours (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO b_fours (id) SELECT 4 * g FROM generate_series(1, 100) g;
SELECT iterjob.enqueue('b_fours', 'UPDATE b_fours SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 30) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT instance, state, cursor, rows_done, batches_done, last_error,
       finished_at IS NOT NULL AS finished
  FROM iterjob.task_progress WHERE job_id = :job_id ORDER BY instance;
SELECT state, instances, instances_done, rows_done, batches_done
  FROM iterjob.job_progress WHERE job_id = :job_id;
SELECT n, count(*) FROM b_fours GROUP BY n ORDER BY n;

-- a filter that matches no row at all
SELECT iterjob.enqueue('b_fours', 'UPDATE b_fours SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, filter => 'id < 0') AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT instance, state, cursor, rows_done, batches_done
  FROM iterjob.task_progress WHERE job_id = :job_id ORDER BY instance;

-- an empty table
CREATE TABLE b_empty (id bigint PRIMARY KEY);
SELECT iterjob.enqueue('b_empty', 'DELETE FROM b_empty WHERE id = ANY($1)',
                       instances => 2) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT instance, state, cursor, rows_done, batches_done
  FROM iterjob.task_progress WHERE job_id = :job_id ORDER BY instance;

--
-- A failing action fails only its instance.  Keys 1..100, 4 instances,
-- batches of 10; the action divides by zero for key 50, which is in
-- instance 2's second batch (keys 42, 46, ..., 78).  That batch fails twice
-- (max_attempts => 2) and rolls back; instance 2 keeps its first batch
-- (keys 2..38) and fails; the other instances run to the end.
--
CREATE TABLE b_fail (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO b_fail (id) SELECT g FROM generate_series(1, 100) g;
SELECT iterjob.enqueue('b_fail',
                       'UPDATE b_fail SET n = n + 1 + 0 * (1 / (id - 50)) WHERE id = ANY($1)',
                       instances => 4, batch_size => 10, max_attempts => 2) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT instance, state, cursor, rows_done, batches_done, attempts, last_error,
       worker_pid IS NULL AS no_pid, finished_at IS NOT NULL AS finished
  FROM iterjob.task_progress WHERE job_id = :job_id ORDER BY instance;
SELECT state, instances, instances_done, rows_done, batches_done, max_attempts,
       last_error, finished_at IS NOT NULL AS finished
  FROM iterjob.job_progress WHERE job_id = :job_id;
-- each failed attempt is logged, with the checkpoint it started from
SELECT instance, attempt, cursor, sqlstate, message
  FROM iterjob.errors WHERE job_id = :job_id ORDER BY instance, attempt;
-- rows of committed batches were updated once; the failed batch rolled back
SELECT id % 4 AS instance, n, count(*), min(id), max(id)
  FROM b_fail GROUP BY 1, 2 ORDER BY 1, 2;

--
-- smallint and integer keys, with negative keys and the extremes of their
-- types: every key lands in exactly one instance, abs(key % instances).
--
CREATE TABLE b_small (id smallint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO b_small (id)
SELECT g FROM generate_series(-300, 300) g
UNION ALL VALUES (-32768), (32767);
SELECT iterjob.enqueue('b_small', 'UPDATE b_small SET n = n + 1 WHERE id = ANY($1)',
                       instances => 3, batch_size => 50) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT n, count(*) FROM b_small GROUP BY n ORDER BY n;
SELECT key_columns, key_types FROM iterjob.job WHERE id = :job_id;
WITH expected AS (
    SELECT abs(id % 3) AS instance, count(*) AS rows, max(id) AS max_key
      FROM b_small GROUP BY 1)
SELECT t.instance, t.state, e.rows,
       t.cursor = jsonb_build_object('instance', e.instance, 'inner_cursor', e.max_key)
           AS cursor_ok,
       t.rows_done = e.rows AS rows_ok, t.batches_done = ceil(e.rows / 50.0) AS batches_ok
  FROM iterjob.task_progress t JOIN expected e USING (instance)
 WHERE t.job_id = :job_id ORDER BY t.instance;

-- an integer key that is not the primary key, named with key =>
CREATE TABLE b_int (code text PRIMARY KEY, k int NOT NULL UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO b_int (code, k)
SELECT 'c' || g, g * 7 FROM generate_series(-500, 500) g
UNION ALL VALUES ('min', -2147483648), ('max', 2147483647);
SELECT iterjob.enqueue('b_int', 'UPDATE b_int SET n = n + 1 WHERE k = ANY($1)',
                       key => 'k', instances => 5, batch_size => 64) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT n, count(*) FROM b_int GROUP BY n ORDER BY n;
SELECT key_columns, key_types FROM iterjob.job WHERE id = :job_id;
WITH expected AS (
    SELECT abs(k % 5) AS instance, count(*) AS rows, max(k) AS max_key
      FROM b_int GROUP BY 1)
SELECT t.instance, t.state, e.rows,
       t.cursor = jsonb_build_object('instance', e.instance, 'inner_cursor', e.max_key)
           AS cursor_ok,
       t.rows_done = e.rows AS rows_ok, t.batches_done = ceil(e.rows / 64.0) AS batches_ok
  FROM iterjob.task_progress t JOIN expected e USING (instance)
 WHERE t.job_id = :job_id ORDER BY t.instance;

--
-- A two-column primary key is the default key: $1 and $2 are the batch's
-- key columns, and the cursor is the last key as a jsonb array.
--
CREATE TABLE b_pair (a int, b text, n int NOT NULL DEFAULT 0, PRIMARY KEY (a, b));
INSERT INTO b_pair (a, b)
SELECT g % 17, 'k' || g FROM generate_series(1, 500) g;
SELECT iterjob.enqueue('b_pair',
                       'UPDATE b_pair SET n = n + 1 WHERE (a, b) IN (SELECT * FROM unnest($1, $2))',
                       instances => 3, batch_size => 40) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT n, count(*) FROM b_pair GROUP BY n ORDER BY n;
SELECT key_columns, key_types FROM iterjob.job WHERE id = :job_id;
WITH part AS (
    SELECT abs(hash_record_extended(ROW(a, b), 0) % 3) AS instance, a, b FROM b_pair),
expected AS (
    SELECT instance, count(*) AS rows,
           (array_agg(jsonb_build_array(a, b) ORDER BY a DESC, b DESC))[1] AS max_key
      FROM part GROUP BY instance)
SELECT t.instance, t.state, e.rows > 0 AS has_rows,
       t.cursor = jsonb_build_object('instance', e.instance, 'inner_cursor', e.max_key)
           AS cursor_ok,
       t.rows_done = e.rows AS rows_ok, t.batches_done = ceil(e.rows / 40.0) AS batches_ok
  FROM iterjob.task_progress t JOIN expected e USING (instance)
 WHERE t.job_id = :job_id ORDER BY t.instance;

--
-- Keys with NULLs.  A unique index lets a key column hold NULLs (and, for a
-- two-column key, repeats rows like (1, NULL)).  Whatever iterjob does with
-- such rows, it must never run the action twice on the same key, nor pass
-- the action keys that are not in the table, and rows_done counts the keys
-- it passed.
--
-- a two-column key whose second column holds a NULL
CREATE TABLE b_nulls2 (a int NOT NULL, b int, UNIQUE (a, b));
INSERT INTO b_nulls2 VALUES (1, 1), (1, 2), (1, NULL), (2, 1);
CREATE TABLE b_seen2 (a int, b int);
SELECT iterjob.enqueue('b_nulls2', 'INSERT INTO b_seen2 SELECT * FROM unnest($1, $2)',
                       key => 'a, b', batch_size => 3, max_attempts => 1) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT count(*) FILTER (WHERE times <> 1) AS keys_not_seen_once
  FROM (SELECT (SELECT count(*) FROM b_seen2 s WHERE s.a = t.a AND s.b = t.b) AS times
          FROM b_nulls2 t WHERE t.b IS NOT NULL) x;
SELECT count(*) AS keys_seen_not_in_table
  FROM b_seen2 s
 WHERE NOT EXISTS (SELECT FROM b_nulls2 t WHERE (t.a, t.b) IS NOT DISTINCT FROM (s.a, s.b));
SELECT (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :job_id)
       = (SELECT count(*) FROM b_seen2) AS rows_done_ok;

-- a nullable one-column key, following new keys (no upper bound)
CREATE TABLE b_nulls1 (k int UNIQUE);
INSERT INTO b_nulls1 VALUES (1), (2), (3), (NULL);
CREATE TABLE b_seen1 (k int);
SELECT iterjob.enqueue('b_nulls1', 'INSERT INTO b_seen1 SELECT unnest($1)',
                       key => 'k', follow => true, max_attempts => 1) AS job_id \gset
SELECT iterjob.wait(:job_id, '2 min');
SELECT count(*) FILTER (WHERE times <> 1) AS keys_not_seen_once
  FROM (SELECT (SELECT count(*) FROM b_seen1 s WHERE s.k = t.k) AS times
          FROM b_nulls1 t WHERE t.k IS NOT NULL) x;
SELECT count(*) AS keys_seen_not_in_table
  FROM b_seen1 s
 WHERE NOT EXISTS (SELECT FROM b_nulls1 t WHERE t.k IS NOT DISTINCT FROM s.k);
SELECT (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :job_id)
       = (SELECT count(*) FROM b_seen1) AS rows_done_ok;

-- Clean up: remove the jobs (their tasks and errors go with them) and the
-- tables, so that later tests start from no job.
DELETE FROM iterjob.job;
SELECT count(*) AS tasks FROM iterjob.task;
DROP TABLE b_items, b_expected, b_fours, b_empty, b_fail, b_small, b_int, b_pair,
           b_nulls2, b_seen2, b_nulls1, b_seen1;
