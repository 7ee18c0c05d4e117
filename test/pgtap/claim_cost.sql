-- claim_cost.sql: what a claim reads of iterjob.job does not grow with the
-- number of jobs queued.  A claim chooses its job from each owner's first
-- job without a worker (found through an index, one probe per owner) and
-- the jobs workers are on, never from a scan of every active job.  And a
-- one-batch job writes its task row twice: its claim marks it running, its
-- batch's checkpoint ends it.
--
-- Counted, not timed: the rows of iterjob.job read by every scan
-- (seq_tup_read, and idx_tup_read of its indexes) while bursts of 100 and
-- of 1000 one-row jobs, enqueued in one transaction each, run, divided by
-- the jobs; the burst of 1000 is held against what reading every active
-- job would cost.  The test waits on its own table (never reading
-- iterjob.job) and for the workers to exit (which reports their counts)
-- before it reads the statistics.
--
-- Run by test/pgtap-exec.sh in a fresh database, as superuser, on a cluster
-- with iterjob preloaded (test/run-all.sh pgtap).

SET client_min_messages = warning;

SELECT plan(5);

CREATE TABLE one (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO one VALUES (1);

CREATE FUNCTION job_rows_read() RETURNS bigint LANGUAGE sql AS $$
    SELECT (SELECT seq_tup_read FROM pg_stat_user_tables
             WHERE relid = 'iterjob.job'::regclass) +
           (SELECT sum(idx_tup_read)::bigint FROM pg_stat_user_indexes
             WHERE relid = 'iterjob.job'::regclass)
$$;

CREATE FUNCTION workers_here() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_stat_activity
     WHERE backend_type = 'iterjob worker' AND datname = current_database()
$$;

CREATE FUNCTION task_updates() RETURNS bigint LANGUAGE sql AS $$
    SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'iterjob.task'::regclass
$$;

CREATE TABLE burst (jobs int, done boolean, rows_read bigint, task_updates bigint);

-- a burst of n jobs, each adding 1 to one.n; rows of iterjob.job read per job
CREATE PROCEDURE run_burst(n int) LANGUAGE plpgsql AS $p$
DECLARE
    before bigint;
    updates bigint;
    target int;
    done boolean;
BEGIN
    PERFORM tap_wait_until('workers_here() = 0');
    PERFORM pg_stat_clear_snapshot();
    before := job_rows_read();
    updates := task_updates();
    target := (SELECT one.n FROM one) + n;
    COMMIT;
    PERFORM iterjob.enqueue('one', 'UPDATE one SET n = n + 1 WHERE id = ANY($1)',
                            batch_size => 10)
       FROM generate_series(1, n);
    COMMIT;
    done := tap_wait_until(format('(SELECT one.n FROM one) = %s', target), '300 s');
    -- the workers report what they read when they exit
    done := done AND tap_wait_until('workers_here() = 0');
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO burst VALUES (n, done, job_rows_read() - before, task_updates() - updates);
    COMMIT;
END
$p$;

CALL run_burst(100);
CALL run_burst(1000);

SELECT ok((SELECT done FROM burst WHERE jobs = 100),
          'a burst of 100 jobs ran (every job once), and the workers exited');
SELECT ok((SELECT done FROM burst WHERE jobs = 1000),
          'a burst of 1000 jobs ran (every job once), and the workers exited');
SELECT cmp_ok((SELECT rows_read FROM burst WHERE jobs = 100), '>', 0::bigint,
              'the statistics count the rows of iterjob.job the workers read');

-- A claim that read every active job would read about 500 rows per job in
-- the burst of 1000 (half the queue on average; the code before this test
-- read 1017).  Per claim, iterjob reads a few rows of the job it takes and
-- a probe per owner: a bound of 200 leaves room for the entries of jobs
-- that ended while other claims were in flight.
SELECT ok(big.per_job < 200,
          format('rows of iterjob.job read per job: %s with 100 queued, %s with 1000 queued (fewer than 200)',
                 small.per_job, big.per_job))
  FROM (SELECT round(rows_read::numeric / jobs, 1) AS per_job FROM burst WHERE jobs = 100) small,
       (SELECT round(rows_read::numeric / jobs, 1) AS per_job FROM burst WHERE jobs = 1000) big;

-- Three writes per job (a separate end of the task after its checkpoint)
-- would give 3; a batch held by the health gate now and then adds one.
SELECT ok(per_job < 2.5,
          format('writes of the task row per one-batch job: %s (claim and batch: 2)', per_job))
  FROM (SELECT round(task_updates::numeric / jobs, 2) AS per_job FROM burst WHERE jobs = 1000) big;

SELECT * FROM finish();
