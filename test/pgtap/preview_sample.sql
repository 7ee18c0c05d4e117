-- preview_sample.sql: iterjob.preview(sample_batches => N) runs the first
-- N batches of each instance for real, as the caller, inside a
-- subtransaction that is rolled back, and reports what they did: batches,
-- keys, time, an estimated duration and the rows they changed per table.
-- Nothing stays behind.
--
-- Run by test/pgtap-exec.sh in a fresh database, on a cluster with iterjob
-- preloaded (test/run-all.sh pgtap).
--
--   1. two instances, three sample batches each: counts, touched (the
--      table and the one a trigger writes), estimates; no row changed, no
--      job, no trigger row left; the preview runs inside a transaction
--      that goes on afterwards
--   2. a sample that reaches an instance's end, an empty table, and no
--      sample (the sample columns are NULL)
--   3. as the caller: the action runs as the previewing role, one without
--      UPDATE on the table is refused; a
--      row locked by another session makes the sample fail after the job's
--      lock_timeout; a failing action names the batch; nothing behind
--   4. bad sample_batches

SET client_min_messages = warning;

SELECT plan(28);

CREATE EXTENSION dblink;
SELECT format('host=%s port=%s user=%s dbname=%s',
              trim(split_part(current_setting('unix_socket_directories'), ',', 1)),
              current_setting('port'), current_user, current_database()) AS conn \gset

CREATE TABLE sample_items (id bigint PRIMARY KEY, v int, w int);
INSERT INTO sample_items SELECT g, g % 1000, NULL FROM generate_series(1, 20000) g;
CREATE TABLE sample_audit (id bigint);
CREATE FUNCTION sample_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sample_audit VALUES (NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER sample_audit AFTER UPDATE ON sample_items
    FOR EACH ROW EXECUTE FUNCTION sample_audit();
ANALYZE sample_items;

-- 1. Two instances, three batches each ------------------------------------------

CREATE TEMP TABLE s AS
SELECT * FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = v * 2 WHERE id = ANY($1)',
                              instances => 2, batch_size => 500, sample_batches => 3);

SELECT is((SELECT string_agg(format('%s:%s/%s', instance, sampled_batches, sampled_rows), ',' ORDER BY instance) FROM s),
          '0:3/1500,1:3/1500',
          'sample: each instance ran 3 batches of 500 keys');
SELECT is((SELECT count(DISTINCT touched)::int FROM s), 1, 'sample: both instances touched the same');
SELECT is((SELECT touched FROM s WHERE instance = 0),
          '{"public.sample_audit": {"deleted": 0, "updated": 0, "inserted": 1500},
            "public.sample_items": {"deleted": 0, "updated": 1500, "inserted": 0}}'::jsonb,
          'sample: touched counts the rows the action updated and the rows its trigger inserted');
SELECT ok((SELECT bool_and(sampled_time > '0' AND sampled_time < '30 s') FROM s),
          'sample: sampled_time is measured');
-- the first batch (which warms the caches) counts once, the others at the
-- mean of the sample's others: the estimate is at least the sample's own
-- time, and at most the sample's time spread over the estimated batches
-- after the first
SELECT ok((SELECT bool_and(estimated_duration >= sampled_time - interval '1 ms'
                           AND estimated_duration <= sampled_time * (estimated_batches - 1) / (sampled_batches - 1)
                                                     + interval '1 ms')
             FROM s),
          'sample: estimated_duration is the first batch once and the estimated others at the mean of the sampled others');
-- a first batch that pauses 1 s (as one that warms cold caches would take
-- longer) counts once: the estimate of 20 batches per instance stays near
-- the sample's own time, where the mean of the 3 sampled batches over 20
-- batches would be about 7 s.  The first batch of an instance is the one
-- that finds sample_warm empty (the sample's own rows in it are rolled
-- back with it).
CREATE TABLE sample_warm (batch int);
SELECT ok((SELECT bool_and(estimated_duration < sampled_time * 3)
             FROM iterjob.preview('sample_items',
                    $a$WITH first AS (SELECT pg_sleep(CASE WHEN EXISTS (SELECT FROM sample_warm)
                                                         THEN 0 ELSE 1 END)),
                            warmed AS (INSERT INTO sample_warm VALUES (1))
                       UPDATE sample_items SET w = v * 2 FROM first WHERE id = ANY($1)$a$,
                    instances => 2, batch_size => 500, sample_batches => 3)),
          'sample: a slow first batch counts once in the estimate');
SELECT is((SELECT (count(*) FILTER (WHERE w IS NOT NULL), (SELECT count(*) FROM sample_audit))::text FROM sample_items),
          '(0,0)', 'sample: rolled back, no row changed, no trigger row left');
SELECT is((SELECT (count(*), (SELECT count(*) FROM iterjob.task))::text FROM iterjob.job), '(0,0)',
          'sample: no job and no task');

BEGIN;
UPDATE sample_items SET w = -1 WHERE id = 1;
SELECT is((SELECT sampled_rows FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = v WHERE id = ANY($1)',
                                                     batch_size => 500, sample_batches => 1)),
          500::bigint, 'in a transaction: the sample runs');
SELECT is((SELECT string_agg(id || ':' || w, ',') FROM sample_items WHERE w IS NOT NULL), '1:-1',
          'in a transaction: the transaction''s own change stays, the sample''s are gone');
ROLLBACK;

-- 2. An instance's end, an empty table, no sample -----------------------------------

SELECT is((SELECT format('%s/%s', sampled_batches, sampled_rows)
             FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)',
                                  filter => 'id <= 1200', batch_size => 500, sample_batches => 10)),
          '3/1200', 'instance''s end: the sample stops there (batches of 500, 500, 200)');
SELECT ok((SELECT estimated_duration = sampled_time
             FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)',
                                  filter => 'id <= 1200', batch_size => 500, sample_batches => 10)),
          'instance''s end: the estimate is the time the whole instance took');
CREATE TABLE sample_empty (id int PRIMARY KEY);
SELECT is((SELECT format('%s/%s %s', sampled_batches, sampled_rows, touched)
             FROM iterjob.preview('sample_empty', 'DELETE FROM sample_empty WHERE id = ANY($1)', sample_batches => 3)),
          '0/0 {}', 'empty table: no batch, nothing touched');
SELECT is((SELECT row(sampled_batches, sampled_rows, sampled_time, estimated_duration, touched)::text
             FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)')),
          '(,,,,)', 'no sample_batches: the sample columns are NULL');
SELECT is((SELECT count(*)::int
             FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)', sample_batches => NULL)
            WHERE sampled_batches IS NULL),
          1, 'sample_batches => NULL: no sample');

-- 3. As the caller ----------------------------------------------------------------------

DROP ROLE IF EXISTS sample_reader;
CREATE ROLE sample_reader LOGIN IN ROLE iterjob_user;
GRANT SELECT ON sample_items TO sample_reader;
SET ROLE sample_reader;
SELECT throws_ok($$SELECT * FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)',
                                                 sample_batches => 1)$$,
                 '42501', 'permission denied for table sample_items',
                 'as the caller: a role without UPDATE cannot run the sample');
RESET ROLE;
GRANT UPDATE ON sample_items TO sample_reader;
CREATE FUNCTION sample_whoami() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sample runs as %', current_user;
END
$$;
SET ROLE sample_reader;
SELECT throws_ok($$SELECT * FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1) AND sample_whoami()',
                                                 sample_batches => 1)$$,
                 'P0001', 'sample runs as sample_reader',
                 'as the caller: the sample''s action runs as the role that previews');
RESET ROLE;

SELECT dblink_connect('locker', :'conn') AS connected \gset
SELECT dblink_exec('locker', 'BEGIN') AS began \gset
SELECT is((SELECT id FROM dblink('locker', 'SELECT id FROM sample_items WHERE id = 700 FOR UPDATE') AS r(id bigint)),
          700::bigint, 'locked row: another session locks key 700');
SELECT throws_ok($$SELECT * FROM iterjob.preview('sample_items', 'UPDATE sample_items SET w = 1 WHERE id = ANY($1)',
                                                 batch_size => 500, lock_timeout => '100ms', sample_batches => 3)$$,
                 '55P03', 'canceling statement due to lock timeout',
                 'locked row: the sample''s second batch fails after the job''s lock_timeout');
SELECT is(dblink_exec('locker', 'ROLLBACK'), 'ROLLBACK', 'locked row: released');
SELECT dblink_disconnect('locker') AS disconnected \gset

CREATE FUNCTION sample_fails(ids bigint[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF 1200 = ANY (ids) THEN
        RAISE EXCEPTION 'key 1200 is bad';
    END IF;
    RETURN true;
END
$$;
CREATE FUNCTION sample_error_context(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT;
    RETURN c;
END
$$;
SELECT alike(sample_error_context($$SELECT * FROM iterjob.preview('sample_items',
                 'UPDATE sample_items SET w = 1 WHERE id = ANY($1) AND sample_fails($1)',
                 batch_size => 500, sample_batches => 5)$$),
             '%iterjob.preview: sample batch 3 of instance 0 (rolled back)%',
             'failing action: the error names the sample batch (keys 1001..1500 hold 1200)');
SELECT throws_like($$SELECT * FROM iterjob.preview('sample_items',
                       'UPDATE sample_items SET w = 1 WHERE id = ANY($1) AND sample_fails($1)',
                       batch_size => 500, sample_batches => 5)$$,
                   'key 1200 is bad', 'failing action: the preview fails with the action''s error');
SELECT is((SELECT (count(*) FILTER (WHERE w IS NOT NULL), (SELECT count(*) FROM sample_audit), (SELECT count(*) FROM iterjob.job))::text
             FROM sample_items),
          '(0,0,0)', 'after the failures: no row changed, no trigger row, no job');

-- the same failure caught by PL/pgSQL in a session of its own, which then
-- ends: its backend exits cleanly (had the sample's subtransaction been
-- left open, the exception block would have rolled back the wrong one,
-- and the backend would crash at exit, taking this session down with it)
SELECT dblink_connect('catcher', :'conn') AS connected \gset
SELECT is(dblink_exec('catcher', $outer$
             DO $do$
             BEGIN
                 PERFORM * FROM iterjob.preview('sample_items',
                     'UPDATE sample_items SET w = 1 WHERE id = ANY($1) AND sample_fails($1)',
                     batch_size => 500, sample_batches => 5);
             EXCEPTION WHEN raise_exception THEN
                 RAISE NOTICE 'caught';
             END
             $do$$outer$), 'DO', 'caught failure: a DO block catches the sample''s failure');
SELECT is((SELECT r FROM dblink('catcher', 'SELECT count(*)::text FROM sample_items WHERE w IS NOT NULL') AS t(r text)),
          '0', 'caught failure: the session goes on, nothing of the sample left');
SELECT dblink_disconnect('catcher') AS disconnected \gset
SELECT pg_sleep(0.5) AS slept \gset
SELECT is((SELECT count(*)::int FROM pg_stat_activity WHERE pid = pg_backend_pid()), 1,
          'caught failure: the backend that caught it exited without a crash (which would have ended this session)');

-- 4. Bad sample_batches ---------------------------------------------------------------

SELECT throws_ok($$SELECT * FROM iterjob.preview('sample_items', 'SELECT $1', sample_batches => -1)$$,
                 '22023', 'sample_batches must be between 0 and 100',
                 'bad input: sample_batches < 0');
SELECT throws_ok($$SELECT * FROM iterjob.preview('sample_items', 'SELECT $1', sample_batches => 101)$$,
                 '22023', 'sample_batches must be between 0 and 100',
                 'bad input: sample_batches > 100');

DROP OWNED BY sample_reader;
DROP ROLE sample_reader;

SELECT * FROM finish();
