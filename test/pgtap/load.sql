-- load.sql: 200 jobs of 4 instances each, enqueued at once over one shared
-- table, under iterjob.max_workers = 4.
--
-- Every job iterates its own group of rows (filter grp = j).  Its action
-- processes the batch and logs it (group, instance, backend pid,
-- transaction id, keys) in the same statement, so the log holds exactly
-- the committed batches.  While the jobs run, this session samples
-- pg_stat_activity.  Then: every job succeeded, every row was processed
-- exactly once, no more than 4 workers ever ran, no task was seen on two
-- workers at once, and each task's batches are disjoint, ordered and in
-- transactions of their own.
--
-- Jobs only see committed data: this file runs in autocommit.  Run by
-- test/pgtap-exec.sh in a fresh database, on a cluster with iterjob
-- preloaded (test/run-all.sh pgtap).

SET client_min_messages = warning;

SELECT plan(20);

SELECT current_setting('iterjob.max_workers') AS max_workers_before \gset
ALTER SYSTEM SET iterjob.max_workers = 4;
SELECT pg_reload_conf() AS reloaded \gset
-- the launcher applies SIGHUP asynchronously (its latch is set at once)
SELECT pg_sleep(0.5) AS slept \gset
SELECT is(current_setting('iterjob.max_workers'), '4', 'iterjob.max_workers is 4');

-- 200 groups of 40 rows; an index on (grp, id) serves each job's ordered
-- keyset query over its group.
CREATE TABLE load_items (id bigint PRIMARY KEY, grp int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO load_items (id, grp) SELECT g, (g - 1) / 40 + 1 FROM generate_series(1, 8000) g;
CREATE INDEX ON load_items (grp, id);

CREATE TABLE batch_log (
    grp      int NOT NULL,
    instance int NOT NULL,
    pid      int NOT NULL,
    xid      bigint NOT NULL,
    keys     bigint[] NOT NULL
);

CREATE TABLE load_jobs (grp int PRIMARY KEY, job_id bigint NOT NULL UNIQUE);

CREATE TABLE samples (
    sample       int NOT NULL,
    workers      int NOT NULL,     -- iterjob workers in the whole cluster
    busy_tasks   int NOT NULL,     -- tasks of this database's jobs being run
    double_tasks int NOT NULL      -- of those, tasks shown on 2 workers at once
);

-- 4 instances x 10 rows per job: 2 batches of 5, then an empty one.
BEGIN;
INSERT INTO load_jobs (grp, job_id)
SELECT j, iterjob.enqueue('load_items',
          format($a$WITH u AS (UPDATE load_items SET n = n + 1 WHERE id = ANY($1) RETURNING id)
                    INSERT INTO batch_log (grp, instance, pid, xid, keys)
                    SELECT %s, min(id) %% 4, pg_backend_pid(), txid_current(), array_agg(id ORDER BY id)
                      FROM u$a$, j),
          instances => 4, batch_size => 5, filter => format('grp = %s', j), name => 'load ' || j)
  FROM generate_series(1, 200) AS j;
COMMIT;

SELECT is((SELECT count(DISTINCT job_id) FROM load_jobs), 200::bigint, '200 jobs enqueued, with 200 distinct ids');

-- Sample every 10 ms until every job has ended (or 5 minutes passed).
DO $$
DECLARE
    i int := 0;
    deadline timestamptz := clock_timestamp() + interval '300 s';
BEGIN
    LOOP
        i := i + 1;
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO samples
        SELECT i,
               count(*),
               count(*) FILTER (WHERE datname = current_database() AND state = 'active'
                                  AND query LIKE 'iterjob job % instance %'),
               (SELECT count(*) FROM (
                    SELECT substring(a2.query FROM '^iterjob job (\d+ instance \d+):')
                      FROM pg_stat_activity a2
                     WHERE a2.backend_type = 'iterjob worker' AND a2.state = 'active'
                       AND a2.datname = current_database()
                       AND a2.query LIKE 'iterjob job % instance %'
                     GROUP BY 1 HAVING count(*) > 1) d)
          FROM pg_stat_activity
         WHERE backend_type = 'iterjob worker';
        EXIT WHEN NOT EXISTS (SELECT 1 FROM iterjob.job
                               WHERE state NOT IN ('succeeded', 'failed', 'cancelled'))
               OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

SELECT is((SELECT count(*) FROM load_jobs WHERE iterjob.wait(job_id, '120 s') = 'succeeded'),
          200::bigint,
          'all 200 jobs succeed');

SELECT is((SELECT count(*) FROM iterjob.task_progress t JOIN load_jobs USING (job_id) WHERE t.state = 'succeeded'),
          800::bigint,
          'all 800 tasks succeeded');

SELECT is((SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM load_items),
          '0 of 8000',
          'every row processed exactly once');

SELECT is((SELECT count(*) FROM iterjob.job_progress p JOIN load_jobs USING (job_id)
            WHERE p.rows_done = 40 AND p.batches_done = 8 AND p.instances_done = 4),
          200::bigint,
          'every job counted 40 rows in 8 batches, 4 instances done');

-- The batch log --------------------------------------------------------------

SELECT is((SELECT count(*) FROM batch_log), 1600::bigint,
          'the log holds 1600 batches: 200 jobs x 4 instances x 2');

SELECT is((SELECT count(*) || ' keys, ' || count(DISTINCT k) || ' distinct'
             FROM batch_log, unnest(keys) AS k),
          '8000 keys, 8000 distinct',
          'the committed batches hold every key exactly once');

SELECT is((SELECT count(*) FROM batch_log b, unnest(b.keys) AS k
             JOIN load_items i ON i.id = k
            WHERE i.grp <> b.grp OR k % 4 <> b.instance),
          0::bigint,
          'every key was in a batch of its own group''s job and of its instance (key % 4)');

SELECT is((SELECT count(*) FROM (SELECT grp, instance, count(*) AS batches, sum(cardinality(keys)) AS rows
                                   FROM batch_log GROUP BY grp, instance) b
             JOIN load_jobs j USING (grp)
             JOIN iterjob.task_progress t ON t.job_id = j.job_id AND t.instance = b.instance
            WHERE t.batches_done = b.batches AND t.rows_done = b.rows),
          800::bigint,
          'each task''s batches_done and rows_done match its logged batches');

SELECT is((SELECT count(DISTINCT xid) FROM batch_log), 1600::bigint,
          'every batch ran in a transaction of its own');

-- Within a task, batches ordered by transaction id (the order they were
-- assigned, so the order they ran in) must cover increasing, disjoint key
-- ranges: a task worked by two workers at once would break this or the
-- exactly-once check.
SELECT is((SELECT count(*) FROM (
               SELECT keys[1] AS first_key,
                      lag(keys[cardinality(keys)]) OVER (PARTITION BY grp, instance ORDER BY xid) AS prev_last_key
                 FROM batch_log) s
            WHERE first_key <= prev_last_key),
          0::bigint,
          'within each task, each batch starts after the previous batch''s last key');

SELECT is((SELECT count(*) FROM batch_log b
            WHERE b.keys <> (SELECT array_agg(id ORDER BY id) FROM (
                                 SELECT id FROM load_items
                                  WHERE grp = b.grp AND id % 4 = b.instance
                                    AND id > coalesce((SELECT max(p.keys[cardinality(p.keys)]) FROM batch_log p
                                                        WHERE p.grp = b.grp AND p.instance = b.instance
                                                          AND p.xid < b.xid), 0)
                                  ORDER BY id LIMIT 5) s)),
          0::bigint,
          'each batch is exactly the next 5 keys of its instance after the previous batch');

-- The samples ------------------------------------------------------------------

SELECT cmp_ok((SELECT count(*) FROM samples WHERE busy_tasks > 0), '>=', 10::bigint,
              'pg_stat_activity was sampled at least 10 times while batches ran');

SELECT cmp_ok((SELECT max(workers) FROM samples), '<=', 4,
              'never more than iterjob.max_workers = 4 iterjob workers at once');

SELECT cmp_ok((SELECT max(workers) FROM samples), '>=', 2,
              'several workers did run at once (the cap was put to the test)');

SELECT cmp_ok((SELECT max(busy_tasks) FROM samples), '<=', 4,
              'never more than 4 tasks being run at once');

SELECT is((SELECT coalesce(max(double_tasks), 0) FROM samples), 0,
          'no sample shows one task on two workers at once');

SELECT is((SELECT count(*) FROM iterjob.task t JOIN load_jobs USING (job_id) WHERE t.worker_pid IS NOT NULL),
          0::bigint,
          'no task keeps a worker_pid after its job ended');

-- Clean up ----------------------------------------------------------------------

ALTER SYSTEM RESET iterjob.max_workers;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.2) AS slept \gset
SELECT is(current_setting('iterjob.max_workers'), :'max_workers_before',
          'iterjob.max_workers is back to its configured value');

SELECT * FROM finish();
