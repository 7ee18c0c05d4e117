-- trail.sql: under the modulo partition with a single integer key, each
-- instance trails the one before it (so two instances never modify the same
-- pages at the same moment), without ever being held up by a stalled one;
-- other partitions do not trail.
--
--   1. instance 0 slow (30 ms per batch), instance 1 fast: instance 1 stays
--      behind instance 0 (sampled committed cursors), its worker shows the
--      phase 'trailing', the job succeeds and every row is done exactly once
--   2. instance 0 stuck 5 s in its second batch: instance 1 does not wait
--      for it (it succeeds while instance 0 has committed one batch), then
--      the job succeeds exactly once
--   3. range partition, instance 0 slow: instance 1 runs ahead and succeeds
--      while instance 0 still runs; the same for a modulo job with
--      iterjob.trail_instances off
--
-- Jobs only see committed data: this file runs in autocommit.  Run by
-- test/pgtap-exec.sh in a fresh database, as superuser, on a cluster with
-- iterjob preloaded (test/run-all.sh pgtap).  The machine may be busy: an
-- instance stuck for a second is no longer waited for, so the trailing
-- check allows a few samples out of order.

SET client_min_messages = warning;

SELECT plan(14);

-- A 2-instance job over tbl (id, n) whose batches sleep `secs` when their
-- first key satisfies `slow` (an expression over k, the first key).
CREATE FUNCTION uneven_job(tbl text, slow text, secs float8, part text DEFAULT 'modulo')
RETURNS bigint LANGUAGE sql AS $f$
    SELECT iterjob.enqueue(tbl::regclass,
        format($a$WITH s AS MATERIALIZED (SELECT pg_sleep(CASE WHEN %s THEN %s ELSE 0 END))
                  UPDATE %I SET n = n + 1 FROM s WHERE id = ANY($1)$a$,
               replace(slow, 'k', '$1[1]'), secs, tbl),
        instances => 2, batch_size => 100, partition => part)
$f$;

-- Waits until instance 1 of p_job has succeeded; true if it has, and
-- instance 0 still runs (each statement here takes a fresh snapshot).
CREATE FUNCTION one_ends_while_zero_runs(p_job bigint) RETURNS boolean
LANGUAGE plpgsql AS $f$
BEGIN
    IF NOT tap_wait_until(format($c$(SELECT state FROM iterjob.task
                                      WHERE job_id = %s AND instance = 1) = 'succeeded'$c$, p_job)) THEN
        RETURN false;
    END IF;
    RETURN (SELECT state FROM iterjob.task WHERE job_id = p_job AND instance = 0) = 'running';
END
$f$;

-- 1. trailing ---------------------------------------------------------------

CREATE TABLE tr (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO tr (id) SELECT generate_series(1, 10000);
ANALYZE tr;

CREATE TABLE trail_samples (cursor0 bigint, cursor1 bigint, phase1 text);

-- Samples, until the job ends, both instances' committed cursors (one
-- snapshot) while instance 0 runs, and the phase of instance 1's worker.
CREATE FUNCTION sample_trail(p_job bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO trail_samples
        SELECT max((cursor->>'inner_cursor')::bigint) FILTER (WHERE instance = 0),
               max((cursor->>'inner_cursor')::bigint) FILTER (WHERE instance = 1),
               (SELECT w.phase FROM iterjob.workers w
                 WHERE w.job_id = p_job AND w.instance = 1 LIMIT 1)
          FROM iterjob.task
         WHERE job_id = p_job
        HAVING bool_or(instance = 0 AND state = 'running');
        EXIT WHEN (SELECT state IN ('succeeded', 'failed', 'cancelled')
                     FROM iterjob.job WHERE id = p_job);
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- instance 0 holds the even keys: its batches sleep 30 ms
SELECT uneven_job('tr', 'k % 2 = 0', 0.03) AS job1 \gset
SELECT sample_trail(:job1) AS sampled \gset

SELECT is(iterjob.wait(:job1, '60 s'), 'succeeded', 'trailing: the modulo job succeeds');
SELECT is((SELECT count(*) FROM tr WHERE n <> 1), 0::bigint,
          'trailing: every row was processed exactly once');
SELECT cmp_ok((SELECT count(*) FROM trail_samples WHERE cursor0 IS NOT NULL AND cursor1 IS NOT NULL),
              '>=', 10::bigint,
              'trailing: at least 10 samples with both instances under way');
SELECT cmp_ok((SELECT count(*) FILTER (WHERE cursor1 > cursor0)::float8 / count(*)
                 FROM trail_samples WHERE cursor0 IS NOT NULL AND cursor1 IS NOT NULL),
              '<', 0.2::float8,
              'trailing: the fast instance 1 stays behind the slow instance 0 (ahead in under 20% of the samples)');
SELECT ok(EXISTS (SELECT FROM trail_samples WHERE phase1 = 'trailing'),
          'trailing: iterjob.workers shows instance 1 in phase trailing');

-- 2. a stuck instance holds no other up ---------------------------------------

CREATE TABLE st (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO st (id) SELECT generate_series(1, 2000);
ANALYZE st;

-- instance 0's second batch (keys 202, 204, ...) sleeps 5 s
SELECT uneven_job('st', 'k = 202', 5) AS job2 \gset

SELECT ok(tap_wait_until(format(
    $c$(SELECT state FROM iterjob.task WHERE job_id = %s AND instance = 1) = 'succeeded'$c$, :job2)),
    'stuck instance 0: instance 1 succeeds');
SELECT is((SELECT batches_done FROM iterjob.task WHERE job_id = :job2 AND instance = 0), 1::bigint,
          'stuck instance 0: ... while instance 0 has committed only its first batch');
SELECT is(iterjob.wait(:job2, '60 s'), 'succeeded', 'stuck instance 0: the job succeeds');
SELECT is((SELECT count(*) FROM st WHERE n <> 1), 0::bigint,
          'stuck instance 0: every row was processed exactly once');

-- 3. range partitions do not trail ----------------------------------------------

CREATE TABLE rg (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO rg (id) SELECT generate_series(1, 4000);
ANALYZE rg;

-- instance 0 holds the low half: its batches sleep 50 ms
SELECT uneven_job('rg', 'k <= 2000', 0.05, 'range') AS job3 \gset
SELECT ok(one_ends_while_zero_runs(:job3),
    'range: the fast instance 1 succeeds while the slow instance 0 still runs');
SELECT is(iterjob.wait(:job3, '60 s'), 'succeeded', 'range: the job succeeds');

-- the modulo job of part 1 again, with trailing off; from here to the
-- ALTER SYSTEM RESET nothing may stop the file (a failing statement prints
-- its error and the plan count comes out wrong)
\set ON_ERROR_STOP 0
ALTER SYSTEM SET iterjob.trail_instances = off;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
UPDATE tr SET n = 0;
SELECT uneven_job('tr', 'k % 2 = 0', 0.03) AS job4 \gset
SELECT ok(one_ends_while_zero_runs(:job4),
    'trailing off: the fast instance 1 succeeds while the slow instance 0 still runs');
SELECT is(iterjob.wait(:job4, '60 s'), 'succeeded', 'trailing off: the job succeeds');
SELECT is((SELECT count(*) FROM tr WHERE n <> 1), 0::bigint,
          'trailing off: every row was processed exactly once');
ALTER SYSTEM RESET iterjob.trail_instances;
SELECT pg_reload_conf() AS reloaded \gset
\set ON_ERROR_STOP 1

SELECT * FROM finish();
