-- claims.sql: every instance of a job gets a worker at once while one is
-- free, however the enqueue's commit falls between the claims of workers
-- that are still busy with (or just done with) the job before.
--
-- 500 two-instance jobs, one after the other, each committed while the
-- workers of the one before are leaving their task: every other job is
-- cancelled while both its instances run, the others end by themselves.
-- Both instances of every job must be in their first batch at the same
-- time, on two different workers.  The action of every batch first takes a
-- shared advisory lock this session holds (the gate), so that where the
-- workers are is decided here: both must wait at the gate, then the gate
-- opens.
--
-- Jobs only see committed data: the procedure below commits each enqueue.
-- Run by test/pgtap-exec.sh in a fresh database, as superuser, on a cluster
-- with iterjob preloaded (test/run-all.sh pgtap).

SET client_min_messages = warning;

SELECT plan(4);

CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO pair (id) VALUES (0), (1);

-- per job: whether both instances waited at the gate at once, and on how
-- many workers
CREATE TABLE side_by_side (job bigint, both_waited boolean, workers bigint, cancelled boolean);

CREATE PROCEDURE run_pairs(jobs int) LANGUAGE plpgsql AS $p$
DECLARE
    j bigint;
    both_waited boolean;
BEGIN
    FOR i IN 1..jobs LOOP
        PERFORM pg_advisory_lock(4242);
        j := iterjob.enqueue('pair',
                $a$WITH g AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(4242))
                   UPDATE pair SET n = n + 1 FROM g WHERE id = ANY($1)$a$,
                instances => 2, batch_size => 1);
        COMMIT;
        both_waited := tap_wait_until($c$(SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted) = 2$c$);
        INSERT INTO side_by_side
        SELECT j, both_waited, count(DISTINCT worker_pid), i % 2 = 0
          FROM iterjob.task WHERE job_id = j AND state = 'running';
        IF i % 2 = 0 THEN
            -- the next job is enqueued right after this cancel
            PERFORM iterjob.cancel(j);
            PERFORM pg_advisory_unlock(4242);
            COMMIT;
        ELSE
            PERFORM pg_advisory_unlock(4242);
            COMMIT;
            PERFORM tap_wait_until(format($c$(SELECT state FROM iterjob.job WHERE id = %s) = 'succeeded'$c$, j));
        END IF;
    END LOOP;
END
$p$;

CALL run_pairs(500);

SELECT is((SELECT count(*) FROM side_by_side), 500::bigint,
          'claims: 500 two-instance jobs enqueued');
SELECT is((SELECT count(*) FROM side_by_side WHERE NOT both_waited), 0::bigint,
          'claims: both instances of every job ran their first batch at the same time');
SELECT is((SELECT count(*) FROM side_by_side WHERE workers <> 2), 0::bigint,
          'claims: ... on two different workers');
SELECT is((SELECT count(*) FROM iterjob.job j JOIN side_by_side s ON s.job = j.id
            WHERE j.state <> CASE WHEN s.cancelled THEN 'cancelled' ELSE 'succeeded' END),
          0::bigint,
          'claims: the jobs not cancelled succeeded, the others were cancelled');

SELECT * FROM finish();
