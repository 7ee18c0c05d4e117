-- visibility.sql: the views show each role what it may see.  A held
-- reason the health gate computed with iterjob's rights from statistics
-- views (here a standby's replication lag, through the
-- iterjob.test_replication_lag hook) shows its figures only to roles that
-- may read those statistics (pg_read_all_stats, pg_monitor, superusers);
-- others, the job's owner and an iterjob_admin member among them, get the
-- reason without them.
--
--    1. alice's job held by a replication lag of 5 s over a limit of 1 s:
--       alice and an iterjob_admin member see "a standby is behind" and
--       the limit, in job_progress.held and task_progress.held_reason; a
--       pg_monitor member, a pg_read_all_stats member and the superuser see
--       the lag and where it comes from
--    2. a reason of alice's own (her health check's text) is shown to her
--       as it is
--
-- Changes iterjob.max_replication_lag and iterjob.test_replication_lag
-- (ALTER SYSTEM, reload) and resets them at the end.  Autocommit, as the
-- superuser postgres, acting as other roles with SET ROLE; run by
-- test/pgtap-exec.sh in a fresh database.

SET client_min_messages = warning;

DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
              WHERE rolname IN ('vis_alice', 'vis_boss', 'vis_monitor', 'vis_stats')
    LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
CREATE ROLE vis_alice LOGIN IN ROLE iterjob_user;
CREATE ROLE vis_boss LOGIN IN ROLE iterjob_admin;
CREATE ROLE vis_monitor LOGIN IN ROLE iterjob_admin, pg_monitor;
CREATE ROLE vis_stats LOGIN IN ROLE vis_alice, pg_read_all_stats;
CREATE SCHEMA vis_s AUTHORIZATION vis_alice;

SELECT plan(11);

-- held_reason of each instance, and held, of job p_job as role r
CREATE FUNCTION vis_seen(r name, p_job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    seen text;
BEGIN
    EXECUTE format('SET ROLE %I', r);
    SELECT (SELECT string_agg(coalesce(held_reason, '-'), ' / ' ORDER BY instance)
              FROM iterjob.task_progress WHERE job_id = p_job)
           || ' // ' || coalesce((SELECT held FROM iterjob.job_progress WHERE job_id = p_job), '-')
      INTO seen;
    RESET ROLE;
    RETURN seen;
END
$$;

-- 1. Held by a standby's lag ------------------------------------------------

SET ROLE vis_alice;
CREATE TABLE vis_s.items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO vis_s.items (id) SELECT generate_series(1, 100);
RESET ROLE;

ALTER SYSTEM SET iterjob.max_replication_lag = '1s';
ALTER SYSTEM SET iterjob.test_replication_lag = '5s';
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.3) AS slept \gset

SET ROLE vis_alice;
SELECT iterjob.enqueue('vis_s.items', 'UPDATE vis_s.items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 10) AS lag_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('(SELECT count(*) FROM iterjob.task
                                    WHERE job_id = %s AND state = ''running'' AND held_reason IS NOT NULL) = 2',
                                :lag_job), '30 s'),
          'a lag of 5 s over iterjob.max_replication_lag 1 s holds both instances of alice''s job');

-- each instance's held_reason, then job_progress.held
SELECT format('%1$s / %1$s // %1$s',
              'a standby is behind: replication lag exceeds iterjob.max_replication_lag (1s)') AS summary,
       format('%1$s / %1$s // %1$s',
              'replication lag 00:00:05 (iterjob.test_replication_lag) exceeds iterjob.max_replication_lag (1s)')
           AS figures \gset
SELECT is(vis_seen('vis_alice', :lag_job), :'summary',
          'the owner sees why her job holds, without the standby and its lag');
SELECT is(vis_seen('vis_boss', :lag_job), :'summary',
          'an iterjob_admin member that is not in pg_monitor sees the same');
SELECT is(vis_seen('vis_monitor', :lag_job), :'figures',
          'a pg_monitor member sees the lag and where it comes from');
SELECT is(vis_seen('vis_stats', :lag_job), :'figures',
          'a pg_read_all_stats member (who may steer alice''s jobs) sees them too');
SELECT is(vis_seen('postgres', :lag_job), :'figures',
          'the superuser sees them too');

ALTER SYSTEM RESET iterjob.test_replication_lag;
SELECT pg_reload_conf() AS reloaded \gset
SELECT is(iterjob.wait(:lag_job, '60 s'), 'succeeded', 'the lag gone, alice''s job succeeds');
SELECT is(vis_seen('vis_alice', :lag_job), '- / - // -', '... and nothing holds it any more');

-- 2. A reason of alice's own ------------------------------------------------

SET ROLE vis_alice;
SELECT iterjob.enqueue('vis_s.items', 'UPDATE vis_s.items SET n = n + 1 WHERE id = ANY($1)',
                       health_check => $$'held by alice''s check: ' || current_user$$)
    AS check_job \gset
RESET ROLE;
SELECT ok(tap_wait_until(format('(SELECT held_reason IS NOT NULL FROM iterjob.task WHERE job_id = %s)',
                                :check_job), '30 s'),
          'alice''s health check holds her job');
SELECT is(vis_seen('vis_alice', :check_job),
          'health check: held by alice''s check: vis_alice // health check: held by alice''s check: vis_alice',
          'alice sees her own check''s reason as it is');
SELECT is(iterjob.cancel(:check_job), 'cancelled', 'the held job is cancelled');

-- Clean up -------------------------------------------------------------------

ALTER SYSTEM RESET iterjob.max_replication_lag;
SELECT pg_reload_conf() AS reloaded \gset
DROP OWNED BY vis_alice, vis_boss, vis_monitor, vis_stats CASCADE;
DROP ROLE vis_alice, vis_boss, vis_monitor, vis_stats;

SELECT * FROM finish();
