-- warm_workers.sql: a worker with nothing to do waits iterjob.worker_idle_time
-- for work before it exits; an enqueue of its owner wakes it when it
-- commits, so a stream of small jobs is served without a process start per
-- job; when every worker slot is taken, the launcher dismisses an idle
-- worker for another owner's job.
--
--   1. the setting: 1 s by default, changed by a reload, at most 4 s
--   2. 20 one-row jobs, each enqueued when the one before has ended and
--      its worker waits for work: one worker process runs them all (each
--      enqueue wakes it); it waits afterwards, then exits
--   3. iterjob.max_workers = 1: another owner's job, enqueued while the one
--      worker waits idle for 4 s, gets a worker of its own at once
--
-- Jobs only see committed data: this file runs in autocommit.  Run by
-- test/pgtap-exec.sh in a fresh database, as superuser, on a cluster with
-- iterjob preloaded (test/run-all.sh pgtap).

SET client_min_messages = warning;

SELECT plan(9);

-- 1. the setting --------------------------------------------------------------

SELECT is((SELECT setting || ' ' || unit || ' ' || context || ' ' || max_val
             FROM pg_settings WHERE name = 'iterjob.worker_idle_time'),
          '1000 ms sighup 4000',
          'iterjob.worker_idle_time: 1 s by default, changed by a reload, at most 4 s');

-- 2. a stream of small jobs ---------------------------------------------------

-- no periodic look starts another worker here meanwhile
ALTER SYSTEM SET iterjob.worker_idle_time = '4s';
ALTER SYSTEM SET iterjob.rescan_interval = '1h';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

CREATE TABLE one (id int PRIMARY KEY);
INSERT INTO one VALUES (1);
CREATE TABLE ran (job int, pid int);

-- A worker waits for work: idle, no job, in its idle wait (phase 'idle'
-- is also a worker's between two tasks)
CREATE FUNCTION waiting_workers() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM iterjob.workers
     WHERE phase = 'idle' AND job_id IS NULL AND wait_event_type = 'Extension'
$$;

-- jobs one-row jobs, each enqueued once the one before has ended and its
-- worker waits for work
CREATE PROCEDURE stream(jobs int) LANGUAGE plpgsql AS $p$
DECLARE
    j bigint;
BEGIN
    FOR i IN 1..jobs LOOP
        IF i > 1 THEN
            PERFORM tap_wait_until('waiting_workers() = 1');
        END IF;
        j := iterjob.enqueue('one', format('INSERT INTO ran SELECT %s, pg_backend_pid() FROM unnest($1)', i));
        COMMIT;
        PERFORM tap_wait_until(format($c$(SELECT state FROM iterjob.job WHERE id = %s) = 'succeeded'$c$, j));
    END LOOP;
END
$p$;

CALL stream(20);

SELECT is((SELECT count(*) FROM ran), 20::bigint, 'stream: 20 one-row jobs ran, one after another');
SELECT is((SELECT count(DISTINCT pid) FROM ran), 1::bigint,
          'stream: one worker process ran them all (woken by each enqueue)');
SELECT ok(tap_wait_until('waiting_workers() = 1'),
          'stream: its worker waits, idle, once the last job ended');
SELECT ok(tap_wait_until($$NOT EXISTS (SELECT FROM pg_stat_activity
                                        WHERE backend_type = 'iterjob worker'
                                          AND datname = current_database())$$, '20 s'),
          'stream: ... and exits when iterjob.worker_idle_time has passed');

-- 3. an idle worker leaves its slot to another owner -------------------------

ALTER SYSTEM SET iterjob.max_workers = 1;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

CREATE ROLE warm_other LOGIN;
GRANT iterjob_user TO warm_other;
GRANT USAGE ON SCHEMA public TO warm_other;
CREATE TABLE other_one (id int PRIMARY KEY);
INSERT INTO other_one VALUES (1);
CREATE TABLE other_ran (pid int);
ALTER TABLE other_one OWNER TO warm_other;
ALTER TABLE other_ran OWNER TO warm_other;

TRUNCATE ran;
CALL stream(1);
SELECT ok(tap_wait_until('waiting_workers() = 1'),
          'max_workers 1: the one worker waits, idle, after its job');

SET ROLE warm_other;
SELECT iterjob.enqueue('other_one', 'INSERT INTO other_ran SELECT pg_backend_pid() FROM unnest($1)') AS other_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:other_job, '3 s'), 'succeeded',
          'max_workers 1: another owner''s job runs at once: the idle worker leaves it its slot');
SELECT isnt((SELECT pid FROM other_ran), (SELECT pid FROM ran),
            'max_workers 1: ... in a process of its own');
SELECT is((SELECT count(*) FROM other_ran), 1::bigint, 'max_workers 1: ... once');

ALTER SYSTEM RESET iterjob.max_workers;
ALTER SYSTEM RESET iterjob.worker_idle_time;
ALTER SYSTEM RESET iterjob.rescan_interval;
SELECT pg_reload_conf() AS reloaded \gset

SELECT * FROM finish();

DROP OWNED BY warm_other;
DROP ROLE warm_other;
