-- trail.sql: under the modulo partition with a single integer key, each
-- instance trails the one before it (so two instances never modify the same
-- pages at the same moment), without ever being held up by a stalled one;
-- other partitions do not trail.
--
--   1. instance 0 slow (30 ms per batch), instance 1 fast: instance 1 stays
--      behind instance 0 (sampled committed cursors), its worker shows the
--      phase 'trailing', the job succeeds and every row is done exactly once
--   2. instance 0 stuck in its second batch: instance 1 does not wait for it
--      longer than iterjob.trail_max_wait (it succeeds while instance 0 has
--      committed one batch), then the job succeeds exactly once
--   3. range partition, instance 0 stuck: instance 1 runs ahead and
--      succeeds while instance 0 still runs; the same for a modulo job with
--      iterjob.trail_instances off
--
-- Where a worker is at a given moment is decided here, not by the machine's
-- speed: every batch first takes a shared advisory lock (the gate, 4242)
-- that this session holds until both instances wait on it, so that both
-- run from their first batch on; a batch that must stay stuck takes another
-- one (4243) this session holds until it lets the batch go; and
-- iterjob.trail_max_wait is 10 minutes wherever a stall must not count
-- (a slow machine may not make instance 0 look stalled).  The tables have
-- autovacuum off (a vacuum would hold an instance).
--
-- Jobs only see committed data: this file runs in autocommit.  Run by
-- test/pgtap-exec.sh in a fresh database, as superuser, on a cluster with
-- iterjob preloaded (test/run-all.sh pgtap).

SET client_min_messages = warning;

SELECT plan(18);

-- A 2-instance job over tbl (id, n): each batch passes the gate, waits for
-- lock 4243 when its first key k satisfies `hold`, and sleeps `secs` when
-- it satisfies `slow` (expressions over k).
CREATE FUNCTION uneven_job(tbl text, slow text, secs float8, hold text, part text)
RETURNS bigint LANGUAGE sql AS $f$
    SELECT iterjob.enqueue(tbl::regclass,
        format($a$WITH g AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(4242)),
                       h AS MATERIALIZED (SELECT CASE WHEN %s THEN pg_advisory_xact_lock_shared(4243) END FROM g),
                       s AS MATERIALIZED (SELECT pg_sleep(CASE WHEN %s THEN %s ELSE 0 END) FROM h)
                  UPDATE %I SET n = n + 1 FROM s WHERE id = ANY($1)$a$,
               replace(hold, 'k', '$1[1]'), replace(slow, 'k', '$1[1]'), secs, tbl),
        instances => 2, batch_size => 100, partition => part)
$f$;

-- Opens the gate once both instances' workers wait at it (their first
-- batch); true if they did within 30 s.  The gate opens either way.
CREATE FUNCTION open_gate() RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
    both_wait boolean := tap_wait_until($c$(SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted) = 2$c$);
BEGIN
    PERFORM pg_advisory_unlock(4242);
    RETURN both_wait;
END
$f$;

-- Waits until instance 1 of p_job has succeeded; true if it has while
-- instance 0 runs its second batch, stuck on lock 4243 with one committed.
-- Lets instance 0 go either way.
CREATE FUNCTION one_ends_while_zero_stuck(p_job bigint) RETURNS boolean
LANGUAGE plpgsql AS $f$
DECLARE
    r boolean;
BEGIN
    -- one statement each: a statement's snapshot is taken when it starts
    r := tap_wait_until(format($c$(SELECT state FROM iterjob.task
                                    WHERE job_id = %s AND instance = 1) = 'succeeded'$c$, p_job));
    r := r AND (SELECT state = 'running' AND batches_done = 1 FROM iterjob.task
                 WHERE job_id = p_job AND instance = 0);
    r := r AND EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 4243 AND NOT granted);
    PERFORM pg_advisory_unlock(4243);
    RETURN r;
END
$f$;

-- 1. trailing ---------------------------------------------------------------

CREATE TABLE tr (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)
    WITH (autovacuum_enabled = off);
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

ALTER SYSTEM SET iterjob.trail_max_wait = '10min';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
SELECT pg_advisory_lock(4242) AS gate \gset
-- instance 0 holds the even keys: its batches sleep 30 ms
SELECT uneven_job('tr', 'k % 2 = 0', 0.03, 'false', 'modulo') AS job1 \gset
SELECT ok(open_gate(), 'trailing: both instances start their first batch side by side');
SELECT sample_trail(:job1) AS sampled \gset

SELECT is(iterjob.wait(:job1, '60 s'), 'succeeded', 'trailing: the modulo job succeeds');
SELECT is((SELECT count(*) FROM tr WHERE n <> 1), 0::bigint,
          'trailing: every row was processed exactly once');
SELECT cmp_ok((SELECT count(*) FROM trail_samples WHERE cursor0 IS NOT NULL AND cursor1 IS NOT NULL),
              '>=', 10::bigint,
              'trailing: at least 10 samples with both instances under way');
SELECT is((SELECT count(*) FROM trail_samples WHERE cursor1 > cursor0), 0::bigint,
          'trailing: the fast instance 1 never gets ahead of the slow instance 0');
SELECT ok(EXISTS (SELECT FROM trail_samples WHERE phase1 = 'trailing'),
          'trailing: iterjob.workers shows instance 1 in phase trailing');

-- 2. a stuck instance holds no other up ---------------------------------------

ALTER SYSTEM SET iterjob.trail_max_wait = '1s';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
CREATE TABLE st (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)
    WITH (autovacuum_enabled = off);
INSERT INTO st (id) SELECT generate_series(1, 2000);
ANALYZE st;

-- instance 0's second batch (keys 202, 204, ...) is stuck until let go
SELECT pg_advisory_lock(4242) AS gate, pg_advisory_lock(4243) AS stuck \gset
SELECT uneven_job('st', 'false', 0, 'k = 202', 'modulo') AS job2 \gset
SELECT ok(open_gate(), 'stuck instance 0: both instances start side by side');
SELECT ok(one_ends_while_zero_stuck(:job2),
    'stuck instance 0: instance 1 succeeds while instance 0 is stuck with one batch committed');
SELECT is(iterjob.wait(:job2, '60 s'), 'succeeded', 'stuck instance 0: the job succeeds');
SELECT is((SELECT count(*) FROM st WHERE n <> 1), 0::bigint,
          'stuck instance 0: every row was processed exactly once');

-- 3. range partitions do not trail ----------------------------------------------

-- a trailing instance 1 would now wait 10 minutes for a stuck instance 0
ALTER SYSTEM SET iterjob.trail_max_wait = '10min';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
CREATE TABLE rg (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)
    WITH (autovacuum_enabled = off);
INSERT INTO rg (id) SELECT generate_series(1, 4000);
ANALYZE rg;

-- instance 0 holds the low half: its second batch (keys 101..200) is stuck
SELECT pg_advisory_lock(4242) AS gate, pg_advisory_lock(4243) AS stuck \gset
SELECT uneven_job('rg', 'false', 0, 'k = 101', 'range') AS job3 \gset
SELECT ok(open_gate(), 'range: both instances start side by side');
SELECT ok(one_ends_while_zero_stuck(:job3),
    'range: instance 1 succeeds while instance 0 is stuck in its second batch');
SELECT is(iterjob.wait(:job3, '60 s'), 'succeeded', 'range: the job succeeds');
SELECT is((SELECT count(*) FROM rg WHERE n <> 1), 0::bigint,
          'range: every row was processed exactly once');

-- the modulo job of part 2 again, with trailing off; from here to the
-- ALTER SYSTEM RESET nothing may stop the file (a failing statement prints
-- its error and the plan count comes out wrong)
\set ON_ERROR_STOP 0
ALTER SYSTEM SET iterjob.trail_instances = off;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset
UPDATE st SET n = 0;
SELECT pg_advisory_lock(4242) AS gate, pg_advisory_lock(4243) AS stuck \gset
SELECT uneven_job('st', 'false', 0, 'k = 202', 'modulo') AS job4 \gset
SELECT ok(open_gate(), 'trailing off: both instances start side by side');
SELECT ok(one_ends_while_zero_stuck(:job4),
    'trailing off: instance 1 succeeds while instance 0 is stuck in its second batch');
SELECT is(iterjob.wait(:job4, '60 s'), 'succeeded', 'trailing off: the job succeeds');
SELECT is((SELECT count(*) FROM st WHERE n <> 1), 0::bigint,
          'trailing off: every row was processed exactly once');
ALTER SYSTEM RESET iterjob.trail_instances;
ALTER SYSTEM RESET iterjob.trail_max_wait;
SELECT pg_reload_conf() AS reloaded \gset
\set ON_ERROR_STOP 1

SELECT * FROM finish();
