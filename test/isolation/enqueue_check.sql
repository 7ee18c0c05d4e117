-- After test/isolation/enqueue.pgbench (4 clients x 25 transactions, run
-- by test/run-all.sh isolation): exactly 100 jobs with 100 distinct ids,
-- 25 per client, all of which succeed; every row processed once by each of
-- its client's 25 jobs.  Raises (psql -v ON_ERROR_STOP=1) on any failure.
DO $$
BEGIN
    IF (SELECT count(*) FROM pgb_jobs) <> 100 THEN
        RAISE EXCEPTION 'pgbench recorded % jobs, not 100', (SELECT count(*) FROM pgb_jobs);
    END IF;
    IF (SELECT count(DISTINCT job_id) FROM pgb_jobs) <> 100 THEN
        RAISE EXCEPTION 'the 100 enqueues returned only % distinct ids',
            (SELECT count(DISTINCT job_id) FROM pgb_jobs);
    END IF;
    IF EXISTS (SELECT FROM pgb_jobs GROUP BY client HAVING count(*) <> 25)
       OR (SELECT count(DISTINCT client) FROM pgb_jobs) <> 4 THEN
        RAISE EXCEPTION 'not 25 jobs for each of the 4 clients';
    END IF;
    IF (SELECT count(*) FROM iterjob.job) <> 100
       OR EXISTS (SELECT FROM pgb_jobs p LEFT JOIN iterjob.job j ON j.id = p.job_id WHERE j.id IS NULL) THEN
        RAISE EXCEPTION 'iterjob.job does not hold exactly the 100 recorded jobs';
    END IF;
END
$$;

CREATE TABLE pgb_results AS
SELECT job_id, iterjob.wait(job_id, '120 s') AS state FROM pgb_jobs;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pgb_results WHERE state <> 'succeeded') THEN
        RAISE EXCEPTION 'jobs did not succeed: %',
            (SELECT string_agg(job_id || ' ' || state, ', ') FROM pgb_results WHERE state <> 'succeeded');
    END IF;
    IF EXISTS (SELECT FROM pgb_items WHERE n <> 25) THEN
        RAISE EXCEPTION 'rows not processed exactly once by each of their 25 jobs: %',
            (SELECT string_agg(id || ':' || n, ', ') FROM pgb_items WHERE n <> 25);
    END IF;
    IF (SELECT count(*) FROM iterjob.job_progress WHERE rows_done = 10 AND batches_done = 2) <> 100 THEN
        RAISE EXCEPTION 'not every job counted 10 rows in 2 batches';
    END IF;
    RAISE NOTICE 'pgbench: 100 concurrent enqueues, 100 distinct ids, 100 jobs succeeded, every row processed 25 times';
END
$$;
