-- sources.sql: "any source": what a job can iterate (tables, partitioned
-- tables, materialized views, queries, lists of values), how far (the
-- largest key at enqueue, or following new keys), what runs when it ends
-- (on_complete, on_instance_complete), and preview().
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).
--
--   1. a partitioned table (3 range partitions) and a materialized view
--   2. a view is refused, with a hint to use query
--   3. query sources: a filtering SELECT, a SELECT over a view, a join with
--      a composite key, range partitions; bad combinations and bad queries
--   4. enqueue_values: distinct non-null values, ints and texts
--   5. bounds: a growing table without and with follow; an empty table
--   6. hooks: on_complete and on_instance_complete run once, in the final
--      transaction; not for failed or cancelled jobs; checked at enqueue;
--      failing at run time fails the instance
--   7. preview() creates nothing

SET client_min_messages = warning;

SELECT plan(113);

-- Helpers -----------------------------------------------------------------

-- The error a statement raises, as jsonb {sqlstate, message, detail, hint};
-- {"sqlstate": "none"} if it succeeds (its effects are rolled back).
CREATE FUNCTION tap_error(sql text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s text; m text; d text; h text;
BEGIN
    BEGIN
        EXECUTE sql;
        RAISE SQLSTATE 'XTAP0';
    EXCEPTION
        WHEN SQLSTATE 'XTAP0' THEN
            RETURN jsonb_build_object('sqlstate', 'none');
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT,
                                    d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
            RETURN jsonb_build_object('sqlstate', s, 'message', m, 'detail', d, 'hint', h);
    END;
END
$$;

-- wait() for a job; if it is not over after 5 s, wake the launcher (as a
-- new enqueue would) and wait on.  nudged says whether that was needed.
CREATE PROCEDURE tap_wait_nudged(p_job bigint, INOUT state text DEFAULT NULL,
                                 INOUT nudged boolean DEFAULT false)
LANGUAGE plpgsql AS $$
BEGIN
    state := iterjob.wait(p_job, '5 s');
    IF state NOT IN ('succeeded', 'failed', 'cancelled') THEN
        nudged := true;
        PERFORM iterjob.wake_workers();
        COMMIT;
        state := iterjob.wait(p_job, '60 s');
    END IF;
END
$$;

CREATE FUNCTION tap_cursors(p_job bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(cursor ORDER BY instance) FROM iterjob.task_progress WHERE job_id = p_job
$$;

CREATE FUNCTION tap_states(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(state, ',' ORDER BY instance) FROM iterjob.task_progress WHERE job_id = p_job
$$;

-- 1. A partitioned table and a materialized view ----------------------------------

CREATE TABLE parted (id bigint PRIMARY KEY, v int, n int NOT NULL DEFAULT 0) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE parted_mid PARTITION OF parted FOR VALUES FROM (1000) TO (2000);
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (2000) TO (MAXVALUE);
INSERT INTO parted (id, v) SELECT g, g % 10 FROM generate_series(-500, 2999) g ORDER BY random();

SELECT iterjob.enqueue('parted', 'UPDATE parted SET n = n + 1 WHERE id = ANY($1)',
                       instances => 3, batch_size => 70) AS parted_job \gset
SELECT iterjob.enqueue('parted', 'UPDATE parted SET n = n + 10 WHERE id = ANY($1)',
                       instances => 3, batch_size => 70, partition => 'range') AS parted_range_job \gset

SELECT is(iterjob.wait(:parted_job, '60 s'), 'succeeded', 'partitioned table: the job succeeds');
SELECT is(iterjob.wait(:parted_range_job, '60 s'), 'succeeded', 'partitioned table: a range-partitioned job succeeds');
SELECT is((SELECT count(*) FROM parted WHERE n <> 11), 0::bigint,
          'partitioned table: every row of the 3 partitions was processed exactly once by each job');
SELECT is((SELECT array_agg(DISTINCT tableoid::regclass::text ORDER BY tableoid::regclass::text) FROM parted),
          ARRAY['parted_high', 'parted_low', 'parted_mid'],
          'partitioned table: the rows are spread over the 3 partitions');
SELECT is(tap_cursors(:parted_job),
          (SELECT jsonb_agg(jsonb_build_object('instance', i, 'inner_cursor',
                     (SELECT max(id) FROM parted WHERE abs(id % 3) = i)) ORDER BY i)
             FROM generate_series(0, 2) i),
          'partitioned table: each instance''s final cursor is the largest key of its partition');
SELECT is((SELECT sum(rows_done) FROM iterjob.task WHERE job_id = :parted_range_job), 3500::numeric,
          'partitioned table: the range job''s rows_done add up to the 3,500 rows');

-- A materialized view, with a unique index on its key: the action writes
-- into another table keyed like the view.
CREATE TABLE mv_base (id bigint PRIMARY KEY, v int);
INSERT INTO mv_base SELECT g, g % 7 FROM generate_series(1, 3000) g;
CREATE MATERIALIZED VIEW mv AS SELECT id * 10 AS id, v FROM mv_base WHERE v <> 0;
CREATE UNIQUE INDEX mv_id ON mv (id);
CREATE TABLE mv_seen (id bigint PRIMARY KEY, n int NOT NULL);

SELECT iterjob.enqueue('mv',
       'INSERT INTO mv_seen (id, n) SELECT x, 1 FROM unnest($1) x ON CONFLICT (id) DO UPDATE SET n = mv_seen.n + 1',
       key => 'id', instances => 3, batch_size => 100) AS mv_job \gset
SELECT is(iterjob.wait(:mv_job, '60 s'), 'succeeded', 'materialized view: the job succeeds');
SELECT is((SELECT count(*) FROM mv_seen), (SELECT count(*) FROM mv),
          'materialized view: as many keys processed as the view has rows');
SELECT is((SELECT count(*) FROM mv FULL JOIN mv_seen USING (id) WHERE mv_seen.n IS DISTINCT FROM 1),
          0::bigint,
          'materialized view: every key of the view exactly once, nothing else');
SELECT matches(tap_error($$SELECT iterjob.enqueue('mv', 'SELECT 1')$$) ->> 'message',
               'has no primary key',
               'materialized view without key => : "has no primary key"');
CREATE MATERIALIZED VIEW mv_plain AS SELECT id FROM mv_base;
SELECT matches(tap_error($$SELECT iterjob.enqueue('mv_plain', 'SELECT 1', key => 'id')$$) ->> 'message',
               'not covered by a unique index',
               'materialized view without a unique index: "not covered by a unique index"');

-- 2. A view is refused -------------------------------------------------------

CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO items (id, v) SELECT g, (g * 7919) % 1000 FROM generate_series(1, 3000) g;
CREATE VIEW items_view AS SELECT id, v FROM items WHERE v % 5 = 0;

SELECT is(tap_error($$SELECT iterjob.enqueue('items_view', 'SELECT 1', key => 'id')$$) ->> 'sqlstate',
          '42809', 'a view as relation: 42809 (wrong object type)');
SELECT matches(tap_error($$SELECT iterjob.enqueue('items_view', 'SELECT 1', key => 'id')$$) ->> 'message',
               'is not a table or materialized view',
               'a view as relation: "is not a table or materialized view"');
SELECT matches(tap_error($$SELECT iterjob.enqueue('items_view', 'SELECT 1', key => 'id')$$) ->> 'hint',
               'query =>',
               'a view as relation: the hint says to use query =>');
SELECT matches(tap_error($$SELECT * FROM iterjob.preview('items_view', 'SELECT 1', key => 'id')$$) ->> 'hint',
               'query =>',
               'preview() refuses a view the same way');

-- 3. Query sources -----------------------------------------------------------

SELECT iterjob.enqueue(NULL, 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       query => 'SELECT id FROM items WHERE v % 3 = 0', key => 'id',
                       instances => 3, batch_size => 50) AS q_job \gset
SELECT is(iterjob.wait(:q_job, '60 s'), 'succeeded', 'query source: the job succeeds');
SELECT is((SELECT count(*) FROM items WHERE n <> CASE WHEN v % 3 = 0 THEN 1 ELSE 0 END), 0::bigint,
          'query source: exactly the rows the query returns were processed, each once');
SELECT cmp_ok((SELECT count(*) FROM items WHERE n = 1), '>', 500::bigint,
              'query source: (a good share of the table: the test is not vacuous)');
SELECT is(tap_cursors(:q_job),
          (SELECT jsonb_agg(jsonb_build_object('instance', i, 'inner_cursor',
                     (SELECT max(id) FROM items WHERE v % 3 = 0 AND id % 3 = i)) ORDER BY i)
             FROM generate_series(0, 2) i),
          'query source: final cursors = the largest key the query returns per partition');
SELECT is((SELECT relation IS NULL AND query = 'SELECT id FROM items WHERE v % 3 = 0' AND key_columns = '{id}'
             FROM iterjob.job WHERE id = :q_job),
          true, 'query source: the job keeps the query and key, no relation');

-- Over a view.
UPDATE items SET n = 0;
SELECT iterjob.enqueue(NULL, 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       query => 'SELECT id FROM items_view', key => 'id',
                       instances => 2, batch_size => 40) AS qv_job \gset
SELECT is(iterjob.wait(:qv_job, '60 s'), 'succeeded', 'query over a view: the job succeeds');
SELECT is((SELECT count(*) FROM items WHERE n <> CASE WHEN v % 5 = 0 THEN 1 ELSE 0 END), 0::bigint,
          'query over a view: exactly the view''s rows, each once');

-- A join, with a composite key.
CREATE TABLE tenants (tenant_id int PRIMARY KEY, active boolean NOT NULL);
INSERT INTO tenants SELECT t, t % 4 <> 0 FROM generate_series(1, 20) t;
CREATE TABLE orders (tenant_id int REFERENCES tenants, id bigint, amount int, PRIMARY KEY (tenant_id, id));
INSERT INTO orders SELECT t, g, g % 100 FROM generate_series(1, 20) t, generate_series(1, 150) g;
CREATE TABLE orders_done (tenant_id int, id bigint, n int NOT NULL, PRIMARY KEY (tenant_id, id));

SELECT iterjob.enqueue(NULL,
       'INSERT INTO orders_done SELECT t, i, 1 FROM unnest($1, $2) AS u(t, i)
          ON CONFLICT (tenant_id, id) DO UPDATE SET n = orders_done.n + 1',
       query => 'SELECT o.tenant_id, o.id, o.amount FROM orders o JOIN tenants t USING (tenant_id) WHERE t.active',
       key => 'tenant_id, id', instances => 3, batch_size => 64) AS qj_job \gset
SELECT is(iterjob.wait(:qj_job, '60 s'), 'succeeded', 'join query, composite key: the job succeeds');
SELECT is((SELECT count(*) FROM orders_done), (SELECT count(*) FROM orders JOIN tenants USING (tenant_id) WHERE active),
          'join query: as many keys processed as the join returns');
SELECT is((SELECT count(*) FROM orders o JOIN tenants t USING (tenant_id)
             FULL JOIN orders_done d USING (tenant_id, id)
            WHERE (t.active AND d.n IS DISTINCT FROM 1) OR (NOT coalesce(t.active, false) AND d.n IS NOT NULL)),
          0::bigint,
          'join query: every (tenant_id, id) of an active tenant exactly once, no other');
SELECT is(tap_cursors(:qj_job)::text,
          (SELECT jsonb_agg(jsonb_build_object('instance', i, 'inner_cursor',
                     (SELECT jsonb_build_array(o.tenant_id, o.id) FROM orders o JOIN tenants t USING (tenant_id)
                       WHERE t.active AND abs(hash_record_extended(ROW(o.tenant_id, o.id), 0) % 3) = i
                       ORDER BY o.tenant_id DESC, o.id DESC LIMIT 1)) ORDER BY i)
             FROM generate_series(0, 2) i)::text,
          'join query: final cursors = the largest (tenant_id, id) per hash partition');
-- the same query, range-partitioned, once the first job is done: it
-- updates the rows the first one inserted
SELECT iterjob.enqueue(NULL,
       'UPDATE orders_done d SET n = n + 10 FROM unnest($1, $2) AS u(t, i) WHERE (d.tenant_id, d.id) = (u.t, u.i)',
       query => 'SELECT o.tenant_id, o.id FROM orders o JOIN tenants t USING (tenant_id) WHERE t.active',
       key => 'tenant_id, id', instances => 3, batch_size => 64, partition => 'range') AS qjr_job \gset
SELECT is(iterjob.wait(:qjr_job, '60 s'), 'succeeded', 'join query with partition => ''range'': succeeds');
SELECT is((SELECT count(*) FROM orders_done WHERE n <> 11), 0::bigint,
          'join query with partition => ''range'': every key exactly once more');

-- Bad combinations and bad queries.
SELECT count(*) AS jobs_before FROM iterjob.job \gset

SELECT matches(tap_error($$SELECT iterjob.enqueue('items', 'SELECT 1', query => 'SELECT id FROM items', key => 'id')$$) ->> 'message',
               'relation and query cannot both be given', 'relation and query: "relation and query cannot both be given"');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', key => 'id')$$) ->> 'message',
               'relation or query is required', 'neither relation nor query: "relation or query is required"');
SELECT is(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', key => 'id')$$) ->> 'sqlstate',
          '22023', 'neither relation nor query: 22023');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM items')$$) ->> 'message',
               'key is required with query', 'query without key: "key is required with query"');
SELECT is(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT v FROM items', key => 'id')$$) ->> 'sqlstate',
          '42703', 'a query without the key column: 42703');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT v FROM items', key => 'id')$$) ->> 'message',
               'no output column "id"', 'a query without the key column: "query has no output column"');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM items; SELECT id FROM items', key => 'id')$$) ->> 'message',
               'exactly one SELECT', 'a query of two statements: "query must be exactly one SELECT statement"');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'INSERT INTO items (id, v) VALUES (-1, 0) RETURNING id', key => 'id')$$) ->> 'message',
               'must be a SELECT', 'an INSERT as query: "query must be a SELECT statement"');
SELECT matches(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id INTO items_copy FROM items', key => 'id')$$) ->> 'message',
               'must be a SELECT', 'SELECT INTO as query: "query must be a SELECT statement"');
SELECT isnt(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'WITH d AS (DELETE FROM items RETURNING id) SELECT id FROM d', key => 'id')$$) ->> 'sqlstate',
            'none', 'a SELECT over a data-modifying WITH is refused');
SELECT is(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id, v AS id FROM items', key => 'id')$$) ->> 'sqlstate',
          '42702', 'a query with two output columns named like the key: 42702');
SELECT is(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM no_such_table', key => 'id')$$) ->> 'sqlstate',
          '42P01', 'a query over a missing table: 42P01');
-- One SELECT followed by a semicolon is still one SELECT statement.
SELECT is(tap_error($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM items WHERE v % 3 = 0;', key => 'id')$$)::text,
          '{"sqlstate": "none"}',
          'a query ending with a semicolon (one SELECT statement) is accepted');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'the refused enqueues left no job');

-- 4. enqueue_values -----------------------------------------------------------

CREATE TABLE seen_int (value int, instance text);
CREATE TABLE seen_text (value text);

SELECT iterjob.enqueue_values(ARRAY[3, 1, 2, 2, NULL],
       'INSERT INTO seen_int (value) SELECT unnest($1)', instances => 2, batch_size => 1) AS vi_job \gset
SELECT iterjob.enqueue_values(ARRAY['b', 'a', 'a', NULL, E'it''s "q" \\ \n ☃', '', 'B'],
       'INSERT INTO seen_text SELECT unnest($1)', instances => 2, batch_size => 2) AS vt_job \gset
SELECT iterjob.enqueue_values('{}'::int[], 'INSERT INTO seen_int (value) SELECT unnest($1)') AS ve_job \gset

SELECT is(iterjob.wait(:vi_job, '30 s'), 'succeeded', 'enqueue_values int: succeeds');
SELECT is((SELECT array_agg(value ORDER BY value) FROM seen_int), ARRAY[1, 2, 3],
          'enqueue_values ARRAY[3,1,2,2,NULL]: the action saw 1, 2, 3 once each');
SELECT is((SELECT count(*) FROM iterjob.task WHERE job_id = :vi_job AND state = 'succeeded'), 2::bigint,
          'enqueue_values int: 2 instances succeeded');
SELECT is(iterjob.wait(:vt_job, '30 s'), 'succeeded', 'enqueue_values text: succeeds');
SELECT is((SELECT array_agg(value ORDER BY value COLLATE "C") FROM seen_text),
          ARRAY['', 'B', 'a', 'b', E'it''s "q" \\ \n ☃'],
          'enqueue_values text: each distinct non-null value once, special characters intact');
SELECT is(iterjob.wait(:ve_job, '30 s'), 'succeeded', 'enqueue_values of an empty array: succeeds');
SELECT is((SELECT count(*) FROM seen_int), 3::bigint, 'enqueue_values of an empty array: the action never ran');
SELECT matches(tap_error($$SELECT iterjob.enqueue_values(NULL::int[], 'SELECT 1')$$) ->> 'message',
               'values must not be null', 'enqueue_values(NULL): "values must not be null"');
SELECT is(tap_error($$SELECT iterjob.enqueue_values(NULL::int[], 'SELECT 1')$$) ->> 'sqlstate',
          tap_error($$SELECT iterjob.enqueue('items', NULL)$$) ->> 'sqlstate',
          'enqueue_values(NULL): the SQLSTATE enqueue() gives a NULL argument');

-- 5. Bounds ---------------------------------------------------------------------

-- 2 instances x 10 batches of 50 x 50 ms: about half a second of work, so
-- 1,000 more keys arrive while both instances still run.
CREATE TABLE grow (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE TABLE grow_follow (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO grow (id) SELECT generate_series(1, 1000);
INSERT INTO grow_follow (id) SELECT generate_series(1, 1000);

SELECT iterjob.enqueue('grow', 'WITH s AS (SELECT pg_sleep(0.05)) UPDATE grow SET n = n + 1 FROM s WHERE id = ANY($1)',
                       instances => 2, batch_size => 50) AS grow_job \gset
SELECT iterjob.enqueue('grow_follow', 'WITH s AS (SELECT pg_sleep(0.05)) UPDATE grow_follow SET n = n + 1 FROM s WHERE id = ANY($1)',
                       instances => 2, batch_size => 50, follow => true) AS follow_job \gset

SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id IN (%s, %s)) >= 1',
                                :grow_job, :follow_job)),
          'bounds: all 4 instances committed a batch');
-- what the instances had done when the new keys arrived
CREATE TABLE grow_seen AS
SELECT job_id, instance, state, (cursor ->> 'inner_cursor')::bigint AS cursor
  FROM iterjob.task WHERE job_id IN (:grow_job, :follow_job);
INSERT INTO grow (id) SELECT generate_series(1001, 2000);
INSERT INTO grow_follow (id) SELECT generate_series(1001, 2000);
SELECT is((SELECT count(*) FROM grow_seen WHERE state = 'running' AND cursor < 900), 4::bigint,
          'bounds: the new keys were added while all 4 instances were running, far from their end');

SELECT is(iterjob.wait(:grow_job, '60 s'), 'succeeded', 'bounds, no follow: the job succeeds');
SELECT is((SELECT upper_bound FROM iterjob.job WHERE id = :grow_job), '1000'::jsonb,
          'bounds, no follow: job.upper_bound = 1000, the largest key at enqueue');
SELECT is((SELECT count(*) FROM grow WHERE n <> CASE WHEN id <= 1000 THEN 1 ELSE 0 END), 0::bigint,
          'bounds, no follow: exactly the first 1,000 keys were processed, once');
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :grow_job), 1000::bigint,
          'bounds, no follow: rows_done = 1,000');
SELECT is(tap_cursors(:grow_job),
          '[{"instance": 0, "inner_cursor": 1000}, {"instance": 1, "inner_cursor": 999}]'::jsonb,
          'bounds, no follow: the cursors end at 1000 and 999');

SELECT is(iterjob.wait(:follow_job, '60 s'), 'succeeded', 'bounds, follow: the job succeeds');
SELECT is((SELECT upper_bound FROM iterjob.job WHERE id = :follow_job), NULL::jsonb,
          'bounds, follow: no upper bound');
SELECT is((SELECT count(*) FROM grow_follow WHERE n <> 1), 0::bigint,
          'bounds, follow: the 1,000 keys added ahead of the cursors were processed too, every key once');
SELECT is(tap_cursors(:follow_job),
          '[{"instance": 0, "inner_cursor": 2000}, {"instance": 1, "inner_cursor": 1999}]'::jsonb,
          'bounds, follow: the cursors end at 2000 and 1999');

-- An empty table.
CREATE TABLE empty_t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT iterjob.enqueue('empty_t', 'UPDATE empty_t SET n = n + 1 WHERE id = ANY($1)', instances => 3) AS empty_job \gset
SELECT iterjob.enqueue('empty_t', 'UPDATE empty_t SET n = n + 1 WHERE id = ANY($1)', instances => 3,
                       follow => true) AS empty_follow_job \gset
SELECT is(iterjob.wait(:empty_job, '30 s'), 'succeeded', 'an empty table: the job succeeds');
SELECT is(tap_cursors(:empty_job),
          '[{"instance": 0, "inner_cursor": null}, {"instance": 1, "inner_cursor": null}, {"instance": 2, "inner_cursor": null}]'::jsonb,
          'an empty table: every inner_cursor is null');
SELECT is((SELECT upper_bound FROM iterjob.job WHERE id = :empty_job), NULL::jsonb,
          'an empty table: no upper bound');
SELECT is(iterjob.wait(:empty_follow_job, '30 s'), 'succeeded', 'an empty table, follow: the job succeeds');
SELECT is(tap_states(:empty_follow_job) || ' ' || tap_cursors(:empty_follow_job)::text,
          'succeeded,succeeded,succeeded [{"instance": 0, "inner_cursor": null}, {"instance": 1, "inner_cursor": null}, {"instance": 2, "inner_cursor": null}]',
          'an empty table, follow: every instance succeeded with a null inner_cursor');

-- 6. Hooks ------------------------------------------------------------------------

-- Each hook writes a row tagged with its job's name; the row's xmin is the
-- transaction that wrote it.
CREATE TABLE hook_log (
    tag      text NOT NULL,
    kind     text NOT NULL,
    instance integer,
    rows_seen bigint,
    who      name DEFAULT current_user,
    at       timestamptz DEFAULT clock_timestamp()
);
CREATE TABLE h_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO h_items (id) SELECT generate_series(1, 600);

CREATE FUNCTION tap_hooks(p_tag text, p_kind text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(coalesce(instance::text, '-'), ',' ORDER BY instance), '')
      FROM hook_log WHERE tag = p_tag AND kind = p_kind
$$;

SELECT iterjob.enqueue('h_items', 'UPDATE h_items SET n = n + 1 WHERE id = ANY($1)',
       instances => 3, batch_size => 40,
       on_complete => $$INSERT INTO hook_log (tag, kind, rows_seen)
                        SELECT 'ok', 'complete', count(*) FROM h_items WHERE n = 1$$,
       on_instance_complete => $$INSERT INTO hook_log (tag, kind, instance) VALUES ('ok', 'instance', $1)$$)
       AS hook_job \gset
SELECT is(iterjob.wait(:hook_job, '60 s'), 'succeeded', 'hooks: the job succeeds');
SELECT is(tap_hooks('ok', 'complete'), '-', 'hooks: on_complete ran exactly once, by the time wait() returned');
SELECT is((SELECT rows_seen FROM hook_log WHERE tag = 'ok' AND kind = 'complete'), 600::bigint,
          'hooks: on_complete ran after every row was processed (it saw all 600 done)');
SELECT is((SELECT xmin::text FROM hook_log WHERE tag = 'ok' AND kind = 'complete'),
          (SELECT xmin::text FROM iterjob.job WHERE id = :hook_job),
          'hooks: on_complete''s row was written by the transaction that ended the job');
SELECT is(tap_hooks('ok', 'instance'), '0,1,2', 'hooks: on_instance_complete ran once per instance, with $1 = 0, 1, 2');
SELECT is((SELECT count(*) FROM hook_log h JOIN iterjob.task t
             ON t.job_id = :hook_job AND t.instance = h.instance AND t.xmin::text = h.xmin::text
            WHERE h.tag = 'ok' AND h.kind = 'instance'), 3::bigint,
          'hooks: each on_instance_complete row was written by the transaction that ended its instance');

-- A failed job: key 5 raises (instance 5 % 3 = 2), once is enough.
CREATE TABLE f_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO f_items (id) SELECT generate_series(1, 300);
SELECT iterjob.enqueue('f_items', 'UPDATE f_items SET n = n + 1 / (id - 5)::int WHERE id = ANY($1)',
       instances => 3, batch_size => 20, max_attempts => 1,
       on_complete => $$INSERT INTO hook_log (tag, kind) VALUES ('failed', 'complete')$$,
       on_instance_complete => $$INSERT INTO hook_log (tag, kind, instance) VALUES ('failed', 'instance', $1)$$)
       AS fail_job \gset
SELECT is(iterjob.wait(:fail_job, '60 s'), 'failed', 'hooks, failed job: the job fails');
SELECT is(tap_states(:fail_job), 'succeeded,succeeded,failed', 'hooks, failed job: instance 2 failed, 0 and 1 succeeded');
SELECT is(tap_hooks('failed', 'complete'), '', 'hooks, failed job: on_complete did not run');
SELECT is(tap_hooks('failed', 'instance'), '0,1', 'hooks, failed job: on_instance_complete ran for instances 0 and 1 only');

-- A cancelled job.
CREATE TABLE c_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO c_items (id) SELECT generate_series(1, 400);
SELECT iterjob.enqueue('c_items', 'WITH s AS (SELECT pg_sleep(0.05)) UPDATE c_items SET n = n + 1 FROM s WHERE id = ANY($1)',
       instances => 2, batch_size => 20,
       on_complete => $$INSERT INTO hook_log (tag, kind) VALUES ('cancelled', 'complete')$$,
       on_instance_complete => $$INSERT INTO hook_log (tag, kind, instance) VALUES ('cancelled', 'instance', $1)$$)
       AS cancel_job \gset
SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 1', :cancel_job)),
          'hooks, cancelled job: both instances started');
SELECT is(iterjob.cancel(:cancel_job), 'cancelled', 'hooks, cancelled job: cancel() returns cancelled');
SELECT is(iterjob.wait(:cancel_job, '30 s'), 'cancelled', 'hooks, cancelled job: wait() returns cancelled');
SELECT ok(tap_wait_until(format('tap_active_workers(%s) = 0', :cancel_job), '10 s'),
          'hooks, cancelled job: its workers left');
SELECT pg_sleep(0.3) AS slept \gset
SELECT ok((SELECT count(*) FROM c_items WHERE n = 1) < 400, 'hooks, cancelled job: it was cancelled mid-run');
SELECT is(tap_hooks('cancelled', 'complete'), '', 'hooks, cancelled job: on_complete did not run');
SELECT is(tap_hooks('cancelled', 'instance'), '', 'hooks, cancelled job: on_instance_complete did not run');

-- Checked at enqueue.
SELECT count(*) AS jobs_before FROM iterjob.job \gset
SELECT matches(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_complete => 'SELECT 1; SELECT 2')$$) ->> 'message',
               'on_complete must be exactly one SQL statement', 'hooks: on_complete with two statements is refused');
SELECT matches(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_instance_complete => 'SELECT $1; SELECT 2')$$) ->> 'message',
               'on_instance_complete must be exactly one SQL statement', 'hooks: on_instance_complete with two statements is refused');
SELECT is(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_complete => 'INSERT INTO no_such_table VALUES (1)')$$) ->> 'sqlstate',
          '42P01', 'hooks: an on_complete that fails to plan (missing table) is refused: 42P01');
SELECT is(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_instance_complete => 'INSERT INTO hook_log (tag, kind, instance) VALUES ($2, ''x'', $1)')$$) ->> 'sqlstate',
          '42P02', 'hooks: an on_instance_complete using $2 (only $1 exists) is refused: 42P02');
SELECT is(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_instance_complete => 'SELECT $1 + ''x''::text')$$) ->> 'sqlstate',
          '42883', 'hooks: $1 of on_instance_complete is an integer (integer + text fails to plan): 42883');
SELECT matches(tap_error($$SELECT iterjob.enqueue('h_items', 'SELECT 1', on_complete => 'COMMIT')$$) ->> 'message',
               'must not control transactions', 'hooks: on_complete => COMMIT is refused');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'hooks: the refused enqueues left no job');

-- Failing at run time: a CHECK constraint rejects the hooks' rows.
CREATE TABLE hook_strict (v int CHECK (v > 0));
CREATE TABLE s_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s_items (id) SELECT generate_series(1, 200);

SELECT iterjob.enqueue('s_items', 'UPDATE s_items SET n = n + 1 WHERE id = ANY($1)',
       instances => 2, batch_size => 30, max_attempts => 1,
       on_instance_complete => 'INSERT INTO hook_strict VALUES (-$1)') AS strict_i_job \gset
SELECT is(iterjob.wait(:strict_i_job, '60 s'), 'failed', 'hooks: a failing on_instance_complete fails the job');
SELECT is(tap_states(:strict_i_job), 'failed,failed', 'hooks: ... each instance failed on its final batch');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :strict_i_job AND sqlstate = '23514'), 2::bigint,
          'hooks: ... the error log has the check violation of each instance');
-- The instance's final transaction (its last, possibly short, batch and
-- the hook) rolled back as a whole: the work is exactly what the cursors say.
SELECT is((SELECT count(*) FROM s_items x JOIN iterjob.task t
             ON t.job_id = :strict_i_job AND t.instance = x.id % 2
            WHERE x.n <> CASE WHEN x.id <= coalesce((t.cursor ->> 'inner_cursor')::bigint, 0) THEN 1 ELSE 0 END),
          0::bigint,
          'hooks: ... each instance''s committed work is exactly the rows up to its cursor, each once');
SELECT is((SELECT sum(rows_done) FROM iterjob.task WHERE job_id = :strict_i_job),
          (SELECT count(*)::numeric FROM s_items WHERE n = 1),
          'hooks: ... rows_done = the rows processed');
SELECT is((SELECT count(*) FROM hook_strict), 0::bigint, 'hooks: ... and the hook wrote nothing');

UPDATE s_items SET n = 0;
SELECT iterjob.enqueue('s_items', 'UPDATE s_items SET n = n + 1 WHERE id = ANY($1)',
       instances => 2, batch_size => 30, max_attempts => 1,
       on_complete => 'INSERT INTO hook_strict VALUES (0)') AS strict_c_job \gset
SELECT is(iterjob.wait(:strict_c_job, '60 s'), 'failed', 'hooks: a failing on_complete fails the job');
SELECT is((SELECT string_agg(state, ',' ORDER BY state) FROM iterjob.task WHERE job_id = :strict_c_job),
          'failed,succeeded', 'hooks: ... the instance that ended last failed, the other succeeded');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :strict_c_job AND sqlstate = '23514'), 1::bigint,
          'hooks: ... the error log has the check violation');
SELECT is((SELECT count(*) FROM hook_strict), 0::bigint, 'hooks: ... and the hook wrote nothing');

-- Once the constraint allows it, retry runs the hook, exactly once.
ALTER TABLE hook_strict DROP CONSTRAINT hook_strict_v_check;
SELECT is(iterjob.retry(:strict_c_job) IN ('queued', 'running'), true, 'hooks: retry() requeues the failed instance');
CALL tap_wait_nudged(:strict_c_job) \gset retried_
SELECT is(:'retried_state'::text, 'succeeded', 'hooks: ... and the job succeeds');
SELECT ok(NOT :'retried_nudged'::boolean, 'hooks: ... a worker took the retried instance within 5 s, with no other wake-up');
SELECT is((SELECT array_agg(v) FROM hook_strict), ARRAY[0], 'hooks: ... with on_complete run exactly once');
SELECT is((SELECT count(*) FROM s_items WHERE n <> 1), 0::bigint, 'hooks: ... and every row processed once');

-- 7. preview() creates nothing ---------------------------------------------------

SELECT count(*) AS jobs_before, (SELECT count(*) FROM iterjob.task) AS tasks_before FROM iterjob.job \gset

CREATE TABLE preview_rows AS
SELECT * FROM iterjob.preview('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                              instances => 3, batch_size => 100,
                              on_complete => 'SELECT 1', on_instance_complete => 'SELECT $1');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'preview: no job created');
SELECT is((SELECT count(*) FROM iterjob.task), :tasks_before::bigint, 'preview: no task created');
SELECT is((SELECT array_agg(instance ORDER BY instance) FROM preview_rows), ARRAY[0, 1, 2],
          'preview: one row per instance');
SELECT is((SELECT count(*) FROM preview_rows WHERE estimated_rows > 0 AND estimated_batches > 0), 3::bigint,
          'preview: estimated_rows and estimated_batches > 0 for a non-empty table');
SELECT is((SELECT count(*) FROM preview_rows
            WHERE action = 'UPDATE items SET n = n + 1 WHERE id = ANY($1)'
              AND keyset_query ~ 'items' AND plan ~ 'Index'), 3::bigint,
          'preview: each row shows the action, a keyset query over the table and an index plan');

CREATE TABLE preview_q AS
SELECT * FROM iterjob.preview(NULL, 'SELECT 1', query => 'SELECT id FROM items WHERE v % 3 = 0', key => 'id',
                              instances => 2);
SELECT is((SELECT count(*) FROM preview_q WHERE keyset_query ~ 'v % 3 = 0'), 2::bigint,
          'preview of a query source: 2 rows, iterating the query');
SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'preview of a query source: no job created');

SELECT * FROM finish();
