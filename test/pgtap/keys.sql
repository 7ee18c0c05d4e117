-- keys.sql: "any key": iterjob iterates keys of any btree-orderable type and
-- composite keys, hash- or range-partitioned, and its cursors round-trip
-- through jsonb exactly.
--
-- Jobs only see committed data: this file runs in autocommit and waits with
-- iterjob.wait() outside explicit transactions.  Run by test/pgtap-exec.sh
-- in a fresh database, on a cluster with iterjob preloaded and
-- iterjob.max_workers = 4 (test/run-all.sh pgtap).
--
--   1. one job per key type (int2, int4, int8, numeric, uuid, text under an
--      ICU collation, date, timestamp, timestamptz, float8, composite
--      (int, bigint), composite (text, timestamptz), composite of quoted
--      identifiers): 3 instances, small batches, every row exactly once,
--      each instance's final cursor = the largest key of its partition
--      (compared as jsonb text, so 2.500 <> 2.5 and bigints stay exact),
--      job.upper_bound = the largest key
--   2. text keys follow the column's collation, not "C"
--   3. cursors decoded from jsonb: for every type, a job that fails on a
--      chosen key and is retried restarts from its stored cursor (batches of
--      one key, so each edge value becomes the cursor once); pause/resume
--      mid-run for text and composite keys
--   4. the keyset step is an index condition: plans of the first and the
--      next-batch query
--   5. partition => 'range': ranges partition the keys, balanced, exactly
--      once; composite keys; skewed keys; a sampled big table; collations;
--      an action over the batch's key range (BETWEEN its first and last key);
--      more instances than keys; an empty table
--   6. key errors: no matching unique index, a column named twice, arrays,
--      no btree ordering, no hash function under modulo (and range for it)
--   7. keys whose text form depends on settings or is ambiguous in jsonb:
--      float8 under extra_float_digits = 0, jsonb keys, composite-typed keys
--   8. retried jobs are picked up promptly

SET client_min_messages = warning;

SELECT plan(229);

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

-- "a, b" of quoted key columns, with an optional suffix per column (" DESC")
CREATE FUNCTION tap_keylist(keys text[], suffix text DEFAULT '')
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(quote_ident(k) || suffix, ', ' ORDER BY o)
      FROM unnest(keys) WITH ORDINALITY AS u(k, o)
$$;

-- The WHERE condition matching a row of tbl against the action's $1, $2, ...
CREATE FUNCTION tap_key_match(keys text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cardinality(keys) = 1
                THEN format('%I = ANY($1)', keys[1])
                ELSE format('(%s) IN (SELECT * FROM unnest(%s))', tap_keylist(keys),
                            (SELECT string_agg('$' || i, ', ' ORDER BY i)
                               FROM generate_series(1, cardinality(keys)) i))
           END
$$;

-- A key's jsonb form, as iterjob documents it: to_jsonb(k) for one column,
-- jsonb_build_array(k1, k2, ...) for several.
CREATE FUNCTION tap_key_json(keys text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cardinality(keys) = 1 THEN format('to_jsonb(%I)', keys[1])
                ELSE format('jsonb_build_array(%s)', tap_keylist(keys)) END
$$;

-- The partition predicate of instance i (a column "i" in scope), written
-- independently of iterjob: abs(k % n) for one integer key, else the
-- record hash.
CREATE FUNCTION tap_partition(keys text[], int_mod boolean, n integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN int_mod THEN format('abs(%I %% %s) = i', keys[1], n)
                ELSE format('abs(hash_record_extended(ROW(%s), 0) %% %s) = i', tap_keylist(keys), n)
           END
$$;

-- What each of n instances' final cursors must be: the largest key of its
-- partition (null if it has none), as a jsonb array ordered by instance.
CREATE FUNCTION tap_expected_cursors(tbl regclass, keys text[], int_mod boolean, n integer,
                                     collate_c boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    ord text := tap_keylist(keys, ' DESC');
BEGIN
    IF collate_c THEN
        ord := quote_ident(keys[1]) || ' COLLATE "C" DESC';
    END IF;
    EXECUTE format(
        'SELECT jsonb_agg(jsonb_build_object(''instance'', i, ''inner_cursor'',
                 (SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT 1)) ORDER BY i)
           FROM generate_series(0, %s - 1) AS i',
        tap_key_json(keys), tbl, tap_partition(keys, int_mod, n), ord, n) INTO r;
    RETURN r;
END
$$;

CREATE FUNCTION tap_max_key(tbl regclass, keys text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    EXECUTE format('SELECT %s FROM %s ORDER BY %s LIMIT 1',
                   tap_key_json(keys), tbl, tap_keylist(keys, ' DESC')) INTO r;
    RETURN r;
END
$$;

CREATE FUNCTION tap_count(tbl regclass, cond text DEFAULT 'true') RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', tbl, cond) INTO r;
    RETURN r;
END
$$;

CREATE FUNCTION tap_cursors(p_job bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(cursor ORDER BY instance) FROM iterjob.task_progress WHERE job_id = p_job
$$;

-- Per-row columns every key table carries: n (main job), m (cursor decode
-- job), p (pause/resume job), step/armed (the decode job's traps).
CREATE TABLE tap_cols (
    n     integer NOT NULL DEFAULT 0,
    m     integer NOT NULL DEFAULT 0,
    p     integer NOT NULL DEFAULT 0,
    step  integer,
    armed boolean NOT NULL DEFAULT false
);

-- 1. One job per key type ----------------------------------------------------

CREATE TABLE k_int2 (k int2 PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_int2 (k)
SELECT g FROM generate_series(-1500, 1500) g
UNION ALL VALUES (-32768), (32765), (32766), (32767);

CREATE TABLE k_int4 (k int4 PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_int4 (k)
SELECT g * 1000003 FROM generate_series(-1500, 1500) g
UNION ALL VALUES (-2147483648), (2147483645), (2147483646), (2147483647);

-- Keys around 2^53 = 9007199254740992 and at the top of the range: none of
-- the partitions' largest keys is exact as a double.
CREATE TABLE k_int8 (k int8 PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_int8 (k)
SELECT g FROM generate_series(9007199254739500, 9007199254742499) g
UNION ALL VALUES (-9223372036854775808), (9223372036854775805),
                 (9223372036854775806), (9223372036854775807);

-- Scales vary: 1.50, 2.500, 3.5000, 4.5, ...; 30 values of 45 digits that end
-- in zeros are the largest, plus NaN and the infinities.
CREATE TABLE k_numeric (k numeric PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_numeric (k)
SELECT ((CASE WHEN g % 7 = 0 THEN '-' ELSE '' END) || g || '.5' || repeat('0', g % 4))::numeric
  FROM generate_series(1, 2970) g
UNION ALL
SELECT ('98765432109876543210' || lpad(j::text, 3, '0') || '.012345678901234567890' || repeat('0', 2 + j % 3))::numeric
  FROM generate_series(1, 30) j
UNION ALL VALUES ('NaN'::numeric), ('Infinity'), ('-Infinity');

CREATE TABLE k_uuid (k uuid PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_uuid (k)
SELECT md5(g::text)::uuid FROM generate_series(1, 3000) g
UNION ALL VALUES ('00000000-0000-0000-0000-000000000000'::uuid),
                 ('ffffffff-ffff-ffff-ffff-ffffffffffff');

-- Under the ICU root collation 'zeta' < 'Zeta' < 'Zzzz ...' and '☃' sorts
-- before letters; under "C" '☃ snow ...' is the largest.  The largest keys
-- hold quotes, a backslash, a newline, a tab and non-BMP characters.
CREATE TABLE k_text (k text COLLATE "und-x-icu" PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_text (k)
SELECT w || ' ' || g
  FROM generate_series(1, 297) g,
       unnest(ARRAY['alpha', 'Beta', 'gamma', 'Delta', 'émile', 'Zeta', 'zeta', 'ölf', '☃ snow', 'Ǆemal']) w
UNION ALL
SELECT format(E'Zzzz %s \'q"\\b\n\t☃𝄞', g) FROM generate_series(1, 30) g
UNION ALL VALUES (''), (' '), (E'\\'), ('"'), (''''), (E'new\nline'), ('zeta'), ('Zeta');

CREATE TABLE k_date (k date PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_date (k)
SELECT date '2000-01-01' + g FROM generate_series(-1500, 1499) g
UNION ALL VALUES ('-infinity'::date), ('infinity'), ('0044-03-15 BC'), ('4713-01-01 BC'), ('5874897-12-31');

CREATE TABLE k_timestamp (k timestamp PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_timestamp (k)
SELECT timestamp '2024-02-29 12:34:56.123456' + g * interval '1 hour 1.000017 s'
  FROM generate_series(-1500, 1499) g
UNION ALL VALUES ('-infinity'::timestamp), ('infinity'), ('0001-01-01 00:00:00.000001 BC'),
                 ('2030-01-01 00:00:00.999999'), ('2030-01-01 00:00:01'), ('2030-01-01 00:00:01.000001');

CREATE TABLE k_timestamptz (k timestamptz PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_timestamptz (k)
SELECT timestamptz '2024-02-29 12:34:56.123456+00' + g * interval '37 min 0.000013 s'
  FROM generate_series(-1500, 1499) g
UNION ALL VALUES ('-infinity'::timestamptz), ('infinity'),
                 ('2030-01-01 00:00:00.999999+00'), ('2030-01-01 00:00:01+00'),
                 ('2030-01-01 00:00:01.000001+00');

-- g * 0.1 is rarely exact: 0.30000000000000004 and so on (17 digits).
CREATE TABLE k_float8 (k float8 PRIMARY KEY, LIKE tap_cols INCLUDING DEFAULTS);
INSERT INTO k_float8 (k)
SELECT g * 0.1::float8 FROM generate_series(1, 3000) g
UNION ALL VALUES ('NaN'::float8), ('-Infinity'), (0.3), (5e-324);

CREATE TABLE k_pair (tenant_id int, id bigint, LIKE tap_cols INCLUDING DEFAULTS,
                     PRIMARY KEY (tenant_id, id));
INSERT INTO k_pair (tenant_id, id)
SELECT t, 9007199254740990 + g FROM generate_series(-5, 24) t, generate_series(1, 100) g;

CREATE TABLE k_text_ts (t text COLLATE "und-x-icu", ts timestamptz,
                        LIKE tap_cols INCLUDING DEFAULTS, PRIMARY KEY (t, ts));
INSERT INTO k_text_ts (t, ts)
SELECT w, timestamptz '2024-02-29 23:59:59.999999+00' + g * interval '1 day 0.000001 s'
  FROM unnest(ARRAY['', 'a', 'A', 'b', 'B', E'q\'uote', 'dq"x', E'back\\slash', E'new\nline',
                    'émile', 'Zeta', 'zeta', 'ölf', '☃', 'Zzzz ☃ 𝄞', 'Zzzz', 'zzzz', E'tab\there',
                    'x', 'X', 'y', 'Y', 'Émile', 'ß', 'ss', 'æ', 'ae', '1', '10', '9']) w,
       generate_series(1, 100) g;

-- Quoted identifiers: a space, upper case and a reserved word.
CREATE TABLE k_quoted ("Tenant Id" int, "select" text, LIKE tap_cols INCLUDING DEFAULTS,
                       PRIMARY KEY ("Tenant Id", "select"));
INSERT INTO k_quoted ("Tenant Id", "select")
SELECT t, 'row ' || g FROM generate_series(1, 20) t, generate_series(1, 50) g;

-- name, table, key columns, integer modulo?, a pattern the expected cursors
-- must show (so the edge values really are among them), the rows of the
-- decode test (section 3)
CREATE TABLE cases (
    name     text PRIMARY KEY,
    tbl      regclass NOT NULL,
    keys     text[] NOT NULL,
    int_mod  boolean NOT NULL,
    sanity   text NOT NULL,
    steps    text NOT NULL,
    job      bigint,
    decode_job bigint
);
INSERT INTO cases VALUES
('int2', 'k_int2', '{k}', true, '32767',
 'k IN (-32768, -1500, -1, 0, 1, 32765, 32766, 32767)'),
('int4', 'k_int4', '{k}', true, '2147483647',
 'k IN (-2147483648, -1000003, 0, 1000003, 2147483645, 2147483646, 2147483647)'),
('int8', 'k_int8', '{k}', true, '9223372036854775807.*9223372036854775806|9223372036854775806.*9223372036854775807',
 'k IN (-9223372036854775808, 9007199254740991, 9007199254740992, 9007199254740993, 9007199254740994, 9223372036854775806, 9223372036854775807)'),
('numeric', 'k_numeric', '{k}', false, '\.\d*00\}',
 $$k IN ('-Infinity', -7.5000, 1.50, 2.500, 3.5000, 98765432109876543210001.01234567890123456789000, 98765432109876543210002.012345678901234567890000, 'Infinity', 'NaN')$$),
('uuid', 'k_uuid', '{k}', false, '"inner_cursor": "[0-9a-f-]{36}"',
 $$k IN ('00000000-0000-0000-0000-000000000000', md5('1')::uuid, md5('2')::uuid, md5('3')::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')$$),
('text', 'k_text', '{k}', false, 'Zzzz \d+ ''q\\"\\\\b\\n\\t☃𝄞',
 $$k IN ('', ' ', E'\\', '"', '''', E'new\nline', 'zeta', 'Zeta', E'Zzzz 1 \'q"\\b\n\t☃𝄞', E'Zzzz 2 \'q"\\b\n\t☃𝄞', '☃ snow 1')$$),
('date', 'k_date', '{k}', false, '"\d{4}-\d\d-\d\d"',
 $$k IN ('-infinity', '4713-01-01 BC', '0044-03-15 BC', '2000-01-01', '5874897-12-31', 'infinity')$$),
('timestamp', 'k_timestamp', '{k}', false, '\.\d{6}"',
 $$k IN ('-infinity', '0001-01-01 00:00:00.000001 BC', '2030-01-01 00:00:00.999999', '2030-01-01 00:00:01', '2030-01-01 00:00:01.000001', 'infinity')$$),
('timestamptz', 'k_timestamptz', '{k}', false, '\.\d{6}\+00:00"',
 $$k IN ('-infinity', '2030-01-01 00:00:00.999999+00', '2030-01-01 00:00:01+00', '2030-01-01 00:00:01.000001+00', 'infinity')$$),
('float8', 'k_float8', '{k}', false, '\d\.\d{14,}',
 $$k IN ('-Infinity', 5e-324, 0.1, 0.2, 0.3, 0.30000000000000004, 299.90000000000003, 'NaN')$$),
('(int, bigint)', 'k_pair', '{tenant_id,id}', false, '\[\d+, 90071992547410\d\d\]',
 '(tenant_id, id) IN ((-5, 9007199254740991), (-5, 9007199254740992), (-5, 9007199254740993), (-4, 9007199254740991), (24, 9007199254741090))'),
('(text, timestamptz)', 'k_text_ts', '{t,ts}', false, '\.\d{6}\+00:00"\]',
 $$t IN ('', 'zeta', 'Zeta', E'new\nline', E'q\'uote', 'Zzzz ☃ 𝄞') AND ts < timestamptz '2024-03-03 00:00:00+00'$$),
('quoted identifiers', 'k_quoted', '{Tenant Id,select}', false, '"row \d+"',
 $$("Tenant Id", "select") IN ((1, 'row 1'), (1, 'row 10'), (1, 'row 2'), (2, 'row 1'))$$);

UPDATE cases
   SET job = iterjob.enqueue(tbl, format('UPDATE %s SET n = n + 1 WHERE %s', tbl, tap_key_match(keys)),
                             instances => 3, batch_size => 50, key => tap_keylist(keys),
                             name => 'keys: ' || name);

SELECT is(iterjob.wait(job, '120 s'), 'succeeded', name || ': the 3-instance job succeeds')
  FROM cases ORDER BY name;

SELECT is(tap_count(tbl, 'n <> 1'), 0::bigint, name || ': every row was processed exactly once')
  FROM cases ORDER BY name;

SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = job), tap_count(tbl),
          name || ': rows_done = the rows of the table')
  FROM cases ORDER BY name;

SELECT is(tap_cursors(job)::text, tap_expected_cursors(tbl, keys, int_mod, 3)::text,
          name || ': each instance''s final cursor is exactly the largest key of its partition')
  FROM cases ORDER BY name;

SELECT matches(tap_expected_cursors(tbl, keys, int_mod, 3)::text, sanity,
               name || ': the largest keys of the partitions include edge values (' || sanity || ')')
  FROM cases ORDER BY name;

SELECT is((SELECT upper_bound::text FROM iterjob.job WHERE id = job), tap_max_key(tbl, keys)::text,
          name || ': job.upper_bound is exactly the largest key')
  FROM cases ORDER BY name;

-- 2. Text keys follow the column's collation ---------------------------------

SELECT isnt(tap_expected_cursors('k_text', '{k}', false, 3)::text,
            tap_expected_cursors('k_text', '{k}', false, 3, collate_c => true)::text,
            'text: the largest keys under the column''s ICU collation differ from those under "C" (the test is not vacuous)');

-- One instance logs the keys in the order it iterates them.
CREATE TABLE text_order (seq bigint GENERATED ALWAYS AS IDENTITY, k text COLLATE "und-x-icu");
SELECT iterjob.enqueue('k_text',
       'INSERT INTO text_order (k) SELECT x FROM unnest($1) WITH ORDINALITY AS u(x, o) ORDER BY o',
       batch_size => 97) AS order_job \gset

SELECT is(iterjob.wait(:order_job, '60 s'), 'succeeded', 'text order: the 1-instance job succeeds');

SELECT ok((SELECT array_agg(k ORDER BY seq) FROM text_order)
            = (SELECT array_agg(k ORDER BY k) FROM k_text),
          'text order: keys were iterated in the column''s collation order, each once');

SELECT ok((SELECT array_agg(k ORDER BY seq) FROM text_order)
            <> (SELECT array_agg(k ORDER BY k COLLATE "C") FROM k_text),
          'text order: which is not "C" order');

-- 3. Cursors decoded from jsonb --------------------------------------------------

-- The decode job of a case iterates only the rows of its "steps", in key
-- order, one key per batch.  Every step row but the first is armed: the
-- action raises 'trap <step>' on it, and max_attempts => 1 fails the job
-- with the cursor on the previous step row.  tap_step_through disarms that
-- row and retries: the worker reads the cursor back from jsonb and must
-- continue right after it.  A cursor decoded too small repeats a row (m = 2),
-- too large skips one (m = 0).
CREATE FUNCTION tap_trap(armed boolean, step integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    IF armed THEN
        RAISE EXCEPTION 'trap %', step;
    END IF;
    RETURN 1;
END
$$;

CREATE TABLE decode_log (name text, attempt integer, state text, cursor jsonb,
                         PRIMARY KEY (name, attempt));

-- Retried jobs that no worker had picked up after 5 s (see section 8).
CREATE TABLE stalls (name text, attempt integer, task_state text, workers bigint,
                     waited interval);

CREATE PROCEDURE tap_step_through(p_name text) LANGUAGE plpgsql AS $$
DECLARE
    c cases;
    st text;
    err text;
    i integer := 0;
    t0 timestamptz;
BEGIN
    SELECT * INTO c FROM cases WHERE name = p_name;
    LOOP
        t0 := clock_timestamp();
        st := iterjob.wait(c.decode_job, '5 s');
        IF st NOT IN ('failed', 'succeeded', 'cancelled') THEN
            -- nothing ran it: note that, then wake the launcher and go on
            INSERT INTO stalls
            SELECT p_name, i + 1, t.state,
                   (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'),
                   clock_timestamp() - t0
              FROM iterjob.task t WHERE t.job_id = c.decode_job;
            PERFORM iterjob.wake_workers();
            COMMIT;
            st := iterjob.wait(c.decode_job, '60 s');
        END IF;
        i := i + 1;
        INSERT INTO decode_log
        SELECT p_name, i, st, cursor -> 'inner_cursor' FROM iterjob.task
         WHERE job_id = c.decode_job AND instance = 0;
        EXIT WHEN st <> 'failed' OR i > 20;
        SELECT last_error INTO err FROM iterjob.task WHERE job_id = c.decode_job AND instance = 0;
        EXECUTE format('UPDATE %s SET armed = false WHERE step = $1', c.tbl)
          USING substring(err FROM 'trap (\d+)')::integer;
        COMMIT;
        PERFORM iterjob.retry(c.decode_job);
        COMMIT;
    END LOOP;
END
$$;

CREATE FUNCTION tap_arm(c cases) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    EXECUTE format('UPDATE %1$s SET step = s.step, armed = s.step > 0
                      FROM (SELECT ctid AS row_id, row_number() OVER (ORDER BY %2$s) - 1 AS step
                              FROM %1$s WHERE %3$s) s
                     WHERE %1$s.ctid = s.row_id',
                   c.tbl, tap_keylist(c.keys), c.steps);
    GET DIAGNOSTICS r = ROW_COUNT;
    RETURN r;
END
$$;

SELECT cmp_ok(tap_arm(c), '>=', 4::bigint, c.name || ': decode test: at least 4 step rows exist')
  FROM cases c ORDER BY name;

UPDATE cases
   SET decode_job = iterjob.enqueue(tbl,
           format('UPDATE %s SET m = m + tap_trap(armed, step) WHERE %s', tbl, tap_key_match(keys)),
           batch_size => 1, key => tap_keylist(keys), filter => 'step IS NOT NULL',
           max_attempts => 1, name => 'decode: ' || name);

CALL tap_step_through('int2');
CALL tap_step_through('int4');
CALL tap_step_through('int8');
CALL tap_step_through('numeric');
CALL tap_step_through('uuid');
CALL tap_step_through('text');
CALL tap_step_through('date');
CALL tap_step_through('timestamp');
CALL tap_step_through('timestamptz');
CALL tap_step_through('float8');
CALL tap_step_through('(int, bigint)');
CALL tap_step_through('(text, timestamptz)');
CALL tap_step_through('quoted identifiers');

CREATE FUNCTION tap_step_keys(c cases) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    EXECUTE format('SELECT jsonb_agg(%s ORDER BY step) FROM %s WHERE step IS NOT NULL',
                   tap_key_json(c.keys), c.tbl) INTO r;
    RETURN r;
END
$$;

SELECT is((SELECT string_agg(state, ',' ORDER BY attempt) FROM decode_log d WHERE d.name = c.name),
          repeat('failed,', (tap_count(c.tbl, 'step IS NOT NULL') - 1)::integer) || 'succeeded',
          c.name || ': decode test: the job failed once per trap, then succeeded')
  FROM cases c ORDER BY name;

-- The cursor at each failure is the step row before the trap; the last one
-- is the last step row.
SELECT is((SELECT jsonb_agg(cursor ORDER BY attempt) FROM decode_log d WHERE d.name = c.name)::text,
          tap_step_keys(c)::text,
          c.name || ': decode test: the stored cursors are exactly the step keys, in key order')
  FROM cases c ORDER BY name;

SELECT is(tap_count(c.tbl, '(step IS NOT NULL AND m <> 1) OR (step IS NULL AND m <> 0)'), 0::bigint,
          c.name || ': decode test: after resuming from each decoded cursor every step row was processed exactly once')
  FROM cases c ORDER BY name;

-- Pause and resume mid-run: text and composite keys.
CREATE FUNCTION tap_pause_resume_setup(tbl regclass, keys text[]) RETURNS bigint LANGUAGE sql AS $$
    SELECT iterjob.enqueue(tbl,
               format('WITH s AS (SELECT pg_sleep(0.04)) UPDATE %s SET p = p + 1 FROM s WHERE %s',
                      tbl, tap_key_match(keys)),
               instances => 3, batch_size => 100, key => tap_keylist(keys),
               name => 'pause/resume ' || tbl)
$$;

SELECT tap_pause_resume_setup('k_text', '{k}') AS pr_text \gset
SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 2', :pr_text)),
          'pause/resume text: every instance committed 2 batches');
SELECT is(iterjob.pause(:pr_text), 'paused', 'pause/resume text: paused');

SELECT tap_pause_resume_setup('k_pair', '{tenant_id,id}') AS pr_pair \gset
SELECT ok(tap_wait_until(format('(SELECT min(batches_done) FROM iterjob.task_progress WHERE job_id = %s) >= 2', :pr_pair)),
          'pause/resume (int, bigint): every instance committed 2 batches');
SELECT is(iterjob.pause(:pr_pair), 'paused', 'pause/resume (int, bigint): paused');
SELECT ok(tap_wait_until(format('tap_active_workers(%s) + tap_active_workers(%s) = 0', :pr_text, :pr_pair), '10 s'),
          'pause/resume: no batch of either job is in flight');

-- While paused, the committed work is exactly the rows up to each
-- instance's stored cursor, compared under the column's collation.
SELECT is((SELECT count(*) FROM k_text x
             JOIN iterjob.task t ON t.job_id = :pr_text
                                AND abs(hash_record_extended(ROW(x.k), 0) % 3) = t.instance
            WHERE x.p <> CASE WHEN x.k <= (t.cursor ->> 'inner_cursor') THEN 1 ELSE 0 END),
          0::bigint,
          'pause/resume text: while paused, rows with p = 1 are exactly those up to their instance''s cursor');
SELECT ok((SELECT count(*) FROM k_text WHERE p = 1) BETWEEN 1 AND (SELECT count(*) - 1 FROM k_text),
          'pause/resume text: the job was paused mid-run');
SELECT is((SELECT count(*) FROM k_pair x
             JOIN iterjob.task t ON t.job_id = :pr_pair
                                AND abs(hash_record_extended(ROW(x.tenant_id, x.id), 0) % 3) = t.instance
            WHERE x.p <> CASE WHEN (x.tenant_id, x.id) <= ((t.cursor #>> '{inner_cursor,0}')::int,
                                                          (t.cursor #>> '{inner_cursor,1}')::bigint)
                              THEN 1 ELSE 0 END),
          0::bigint,
          'pause/resume (int, bigint): while paused, rows with p = 1 are exactly those up to their instance''s cursor');
SELECT ok((SELECT count(*) FROM k_pair WHERE p = 1) BETWEEN 1 AND (SELECT count(*) - 1 FROM k_pair),
          'pause/resume (int, bigint): the job was paused mid-run');

SELECT is(iterjob.resume(:pr_text), 'running', 'pause/resume text: resumed');
SELECT is(iterjob.resume(:pr_pair), 'running', 'pause/resume (int, bigint): resumed');
SELECT is(iterjob.wait(:pr_text, '60 s'), 'succeeded', 'pause/resume text: succeeds');
SELECT is(iterjob.wait(:pr_pair, '60 s'), 'succeeded', 'pause/resume (int, bigint): succeeds');
SELECT is(tap_count('k_text', 'p <> 1'), 0::bigint, 'pause/resume text: every row exactly once');
SELECT is(tap_count('k_pair', 'p <> 1'), 0::bigint, 'pause/resume (int, bigint): every row exactly once');
SELECT is(tap_cursors(:pr_text)::text, tap_expected_cursors('k_text', '{k}', false, 3)::text,
          'pause/resume text: final cursors = largest keys of the partitions');
SELECT is(tap_cursors(:pr_pair)::text, tap_expected_cursors('k_pair', '{tenant_id,id}', false, 3)::text,
          'pause/resume (int, bigint): final cursors = largest keys of the partitions');

-- 4. The keyset step is an index condition -------------------------------------

-- The plan of a keyset query as workers plan it: a generic plan, with
-- sequential and bitmap scans, sorts and hash aggregation disabled.  The
-- next-batch form is the first-batch query that preview() returns with the
-- cursor condition iterjob adds, "AND (k1, k2) OPERATOR(pg_catalog.>) ($1, $2)",
-- and the LIMIT as the next parameter.
CREATE FUNCTION tap_next_plan(first_query text, keys text[], types text)
RETURNS text LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_hashagg = off SET max_parallel_workers_per_gather = 0
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n integer := cardinality(keys);
    q text;
    plan text := '';
    line text;
BEGIN
    q := regexp_replace(first_query, ' ORDER BY (.*) LIMIT \d+$',
                        format(' AND (%s) OPERATOR(pg_catalog.>) (%s) ORDER BY \1 LIMIT $%s',
                               tap_keylist(keys),
                               (SELECT string_agg('$' || i, ', ' ORDER BY i) FROM generate_series(1, n) i),
                               n + 1));
    EXECUTE format('PREPARE tap_next(%s, integer) AS %s', types, q);
    FOR line IN EXECUTE format('EXPLAIN EXECUTE tap_next(%s)',
                               (SELECT string_agg('NULL', ', ') FROM generate_series(1, n + 1))) LOOP
        plan := plan || line || E'\n';
    END LOOP;
    DEALLOCATE tap_next;
    RETURN plan;
END
$$;

CREATE TABLE plan_pair (tenant_id int, id bigint, v int, PRIMARY KEY (tenant_id, id));
INSERT INTO plan_pair SELECT t, g, 0 FROM generate_series(1, 50) t, generate_series(1, 400) g;
CREATE TABLE plan_ids (id bigint PRIMARY KEY, v int);
INSERT INTO plan_ids SELECT g, 0 FROM generate_series(1, 20000) g;
ANALYZE plan_pair, plan_ids;

SELECT tap_next_plan(keyset_query, '{tenant_id,id}', 'integer, bigint') AS pair_plan
  FROM iterjob.preview('plan_pair', 'SELECT 1', instances => 4, batch_size => 100,
                       key => 'tenant_id, id')
 WHERE instance = 2 \gset

SELECT matches(:'pair_plan'::text, 'Index (Only )?Scan using plan_pair_pkey',
               'composite key: the next-batch query scans the primary key index');
SELECT matches(:'pair_plan'::text, 'Index Cond: [^\n]*ROW\(tenant_id, id\) > ROW\(\$1, \$2\)',
               'composite key: the row comparison (tenant_id, id) > ($1, $2) is an Index Cond');
SELECT doesnt_match(:'pair_plan'::text, 'Filter: [^\n]*ROW\(tenant_id, id\) > ',
                    'composite key: the row comparison is not a Filter');
SELECT doesnt_match(:'pair_plan'::text, 'Sort|Gather|Seq Scan',
                    'composite key: no Sort, no Gather, no Seq Scan');

SELECT tap_next_plan(keyset_query, '{t,ts}', 'text, timestamptz') AS text_ts_plan
  FROM iterjob.preview('k_text_ts', 'SELECT 1', instances => 3, key => 't, ts')
 WHERE instance = 1 \gset
SELECT matches(:'text_ts_plan'::text, 'Index Cond: [^\n]*ROW\(t, ts\) > ROW\(\$1, \$2\)',
               '(text, timestamptz) key: the row comparison is an Index Cond');
SELECT doesnt_match(:'text_ts_plan'::text, 'Sort|Gather|Seq Scan',
                    '(text, timestamptz) key: no Sort, no Gather, no Seq Scan');

SELECT count(*) AS preview_rows,
       bool_and(plan ~ 'Index (Only )?Scan using plan_ids_pkey on plan_ids') AS preview_index,
       bool_or(plan ~ 'Sort|Gather|Seq Scan|Bitmap') AS preview_bad,
       max(tap_next_plan(keyset_query, '{id}', 'bigint')) AS ids_next_plan
  FROM iterjob.preview('plan_ids', 'SELECT 1', instances => 4, batch_size => 1000) \gset
SELECT is(:preview_rows::bigint, 4::bigint, 'integer key, 4 instances: preview returns 4 rows');
SELECT ok(:'preview_index', 'integer key: preview''s plans are index scans of the primary key');
SELECT ok(NOT :'preview_bad', 'integer key: preview''s plans have no Sort, Gather, Seq Scan or Bitmap scan');
SELECT matches(:'ids_next_plan'::text, 'Index Cond: [^\n]*\(id > \$1\)',
               'integer key: the next-batch step id > $1 is an Index Cond');

-- 5. partition => 'range' -----------------------------------------------------

-- Checks of a range-partitioned job over tbl whose key is given as SQL
-- converting a jsonb bound b to a comparable value (bound_sql, with %s for
-- the bound) and the row's key (key_sql).  Returns one line per problem.
CREATE FUNCTION tap_range_problems(p_job bigint, tbl regclass, key_sql text, bound_sql text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    r text;
BEGIN
    SELECT instances INTO n FROM iterjob.job WHERE id = p_job;
    -- every key in exactly one [range_start, range_end)
    EXECUTE format(
        'SELECT count(*) FROM %1$s x
          WHERE (SELECT count(*) FROM iterjob.task t
                  WHERE t.job_id = $1
                    AND (t.range_start IS NULL OR %2$s >= %3$s)
                    AND (t.range_end IS NULL OR %2$s < %4$s)) <> 1',
        tbl, key_sql, format(bound_sql, 't.range_start'), format(bound_sql, 't.range_end'))
      INTO r USING p_job;
    IF r <> '0' THEN
        RETURN NEXT r || ' keys are not in exactly one range';
    END IF;
    -- contiguous: unbounded at both ends, each end is the next start
    IF (SELECT range_start FROM iterjob.task WHERE job_id = p_job AND instance = 0) IS NOT NULL
       OR (SELECT range_end FROM iterjob.task WHERE job_id = p_job AND instance = n - 1) IS NOT NULL THEN
        RETURN NEXT 'the ranges are bounded at an end';
    END IF;
    IF EXISTS (SELECT FROM iterjob.task a JOIN iterjob.task b
                 ON b.job_id = a.job_id AND b.instance = a.instance + 1
                WHERE a.job_id = p_job AND a.range_end::text IS DISTINCT FROM b.range_start::text) THEN
        RETURN NEXT 'the ranges are not contiguous';
    END IF;
    -- task_progress shows them too
    IF EXISTS (SELECT FROM iterjob.task t JOIN iterjob.task_progress v
                 ON v.job_id = t.job_id AND v.instance = t.instance
                WHERE t.job_id = p_job
                  AND (v.range_start::text IS DISTINCT FROM t.range_start::text
                       OR v.range_end::text IS DISTINCT FROM t.range_end::text)) THEN
        RETURN NEXT 'task_progress does not show the ranges';
    END IF;
    -- each instance did the rows of its range
    EXECUTE format(
        'SELECT string_agg(t.instance::text, '','') FROM iterjob.task t
          WHERE t.job_id = $1
            AND t.rows_done <> (SELECT count(*) FROM %1$s x
                                 WHERE (t.range_start IS NULL OR %2$s >= %3$s)
                                   AND (t.range_end IS NULL OR %2$s < %4$s))',
        tbl, key_sql, format(bound_sql, 't.range_start'), format(bound_sql, 't.range_end'))
      INTO r USING p_job;
    IF r IS NOT NULL THEN
        RETURN NEXT 'rows_done <> the rows of the range for instances ' || r;
    END IF;
END
$$;

CREATE FUNCTION tap_balance(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(rows_done::text, ',' ORDER BY instance) FROM iterjob.task WHERE job_id = p_job
$$;

-- within +-30% of an even share
CREATE FUNCTION tap_balanced(p_job bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(t.rows_done BETWEEN 0.7 * s.total / s.n AND 1.3 * s.total / s.n)
      FROM iterjob.task t,
           (SELECT sum(rows_done) AS total, count(*) AS n FROM iterjob.task WHERE job_id = p_job) s
     WHERE t.job_id = p_job
$$;

CREATE TABLE r_ids (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_ids (id) SELECT g * 7 - 30000 FROM generate_series(1, 10000) g ORDER BY random();

CREATE TABLE r_pair (tenant_id int, id bigint, n int NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, id));
INSERT INTO r_pair (tenant_id, id) SELECT t, g FROM generate_series(1, 7) t, generate_series(1, 1429) g
 ORDER BY random() LIMIT 10000;

-- 90% of the keys in a band of 9,000 values, the rest spread over 10^10
CREATE TABLE r_skew (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_skew (id)
SELECT 5000000000 + g FROM generate_series(1, 9000) g
UNION ALL SELECT g::bigint * 10000000 FROM generate_series(1, 1000) g;

-- Big enough to be sampled (TABLESAMPLE), skewed too: 90% of 200,000 keys
-- in a narrow band.
CREATE TABLE r_big (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_big (id)
SELECT 5000000000 + g FROM generate_series(1, 180000) g
UNION ALL SELECT g::bigint * 1000000 FROM generate_series(1, 20000) g;
ANALYZE r_big;

-- The rows a 4-way range split of tbl reads: preview() computes the ranges
-- as enqueue does, in this function's transaction.
CREATE FUNCTION tap_split_reads(tbl regclass, filter text DEFAULT NULL) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    PERFORM count(*) FROM iterjob.preview(tbl, 'SELECT 1', instances => 4, partition => 'range',
                                          filter => filter);
    SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) INTO r
      FROM pg_stat_xact_user_tables WHERE relid = tbl;
    RETURN r;
END
$$;

-- With a filter, the split samples: it reads each row of a table this size
-- at most once: it takes whole pages (all of them, below 5,000 pages; a
-- random sample above) and keeps a random share of their rows, so
-- boundaries are exact to a fraction of a percent without sorting the table.
-- (The planner's index probes for preview()'s eight EXPLAINs fetch a few
-- tuples more.)
SELECT tap_split_reads('r_big', 'n = 0') AS r_big_read \gset
SELECT cmp_ok(:r_big_read::bigint, '<=', 200024::bigint,
              'range: splitting a 200,000-row table reads each row at most once (read ' || :r_big_read || ' rows)');

-- A single key column with fresh statistics: the split takes the planner's
-- histogram quantiles and reads no rows (only the largest key, from the
-- index).  Statistics older than 10% of the rows' changes are not trusted:
-- r_stale doubled in size after its ANALYZE, so it is sampled, and its
-- ranges are balanced over all its rows.
CREATE TABLE r_hist (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_hist (id) SELECT generate_series(1, 100000);
CREATE TABLE r_stale (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_stale (id) SELECT generate_series(1, 60000);
-- (the inserts' counts reach the statistics before the ANALYZE)
SELECT pg_stat_force_next_flush();
ANALYZE r_hist;
ANALYZE r_stale;
INSERT INTO r_stale (id) SELECT generate_series(60001, 120000);
SELECT pg_stat_force_next_flush();
SELECT tap_split_reads('r_hist') AS r_hist_read \gset
SELECT cmp_ok(:r_hist_read::bigint, '<', 100::bigint,
              'range: an analyzed table is split from its statistics (read ' || :r_hist_read || ' rows)');
SELECT iterjob.enqueue('r_hist', 'UPDATE r_hist SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 1000, partition => 'range') AS r_hist_job \gset
SELECT iterjob.enqueue('r_stale', 'UPDATE r_stale SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 1000, partition => 'range') AS r_stale_job \gset
SELECT is((SELECT array_agg((range_start #>> '{}')::bigint ORDER BY instance)
             FROM iterjob.task WHERE job_id = :r_hist_job AND instance > 0),
          (SELECT ARRAY[h[26], h[51], h[76]]
             FROM (SELECT histogram_bounds::text::bigint[] AS h FROM pg_stats
                    WHERE tablename = 'r_hist' AND attname = 'id') s),
          'range: the boundaries of r_hist are its histogram''s quartiles');
SELECT is(iterjob.wait(:r_hist_job, '60 s'), 'succeeded', 'range: histogram-split job succeeds');
SELECT is(iterjob.wait(:r_stale_job, '60 s'), 'succeeded', 'range: job over a table changed since ANALYZE succeeds');
SELECT is(tap_count('r_hist', 'n <> 1') + tap_count('r_stale', 'n <> 1'), 0::bigint,
          'range: histogram-split and stale-statistics jobs: every row exactly once');
SELECT ok((SELECT bool_and(rows_done BETWEEN 23750 AND 26250) FROM iterjob.task WHERE job_id = :r_hist_job),
          'range: histogram split: each instance within 5% of 25,000 rows (' || tap_balance(:r_hist_job) || ')');
SELECT ok((SELECT bool_and(rows_done BETWEEN 27000 AND 33000) FROM iterjob.task WHERE job_id = :r_stale_job),
          'range: a table that doubled since its ANALYZE is still split evenly: each instance within 10% of 30,000 rows (' || tap_balance(:r_stale_job) || ')');

SELECT iterjob.enqueue('r_ids', 'UPDATE r_ids SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 300, partition => 'range') AS r_ids_job \gset
SELECT iterjob.enqueue('r_pair', 'UPDATE r_pair SET n = n + 1 WHERE (tenant_id, id) IN (SELECT * FROM unnest($1, $2))',
                       instances => 4, batch_size => 300, partition => 'range') AS r_pair_job \gset
SELECT iterjob.enqueue('r_skew', 'UPDATE r_skew SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 300, partition => 'range') AS r_skew_job \gset
SELECT iterjob.enqueue('r_big', 'UPDATE r_big SET n = n + 1 WHERE id = ANY($1)', filter => 'n = 0',
                       instances => 4, batch_size => 5000, partition => 'range') AS r_big_job \gset
-- the ICU-collated text keys, under their collation
SELECT iterjob.enqueue('k_text', 'UPDATE k_text SET n = n + 1 WHERE k = ANY($1)',
                       instances => 5, batch_size => 100, partition => 'range') AS r_text_job \gset

SELECT is(iterjob.wait(:r_ids_job, '60 s'), 'succeeded', 'range: bigint job succeeds');
SELECT is(iterjob.wait(:r_pair_job, '60 s'), 'succeeded', 'range: (int, bigint) job succeeds');
SELECT is(iterjob.wait(:r_skew_job, '60 s'), 'succeeded', 'range: skewed job succeeds');
SELECT is(iterjob.wait(:r_big_job, '120 s'), 'succeeded', 'range: sampled 200,000-row job succeeds');
SELECT is(iterjob.wait(:r_text_job, '60 s'), 'succeeded', 'range: ICU text job succeeds');

SELECT is(tap_count('r_ids', 'n <> 1'), 0::bigint, 'range: bigint: every row exactly once');
SELECT is(tap_count('r_pair', 'n <> 1'), 0::bigint, 'range: (int, bigint): every row exactly once');
SELECT is(tap_count('r_skew', 'n <> 1'), 0::bigint, 'range: skewed: every row exactly once');
SELECT is(tap_count('r_big', 'n <> 1'), 0::bigint, 'range: sampled: every row exactly once');
SELECT is(tap_count('k_text', 'n <> 2'), 0::bigint, 'range: ICU text: every row exactly once more');

SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_ids_job || $$, 'r_ids', 'x.id', '(%s #>> ''{}'')::bigint')$$,
                'range: bigint: the ranges partition the keys, contiguously, as rows_done and task_progress say');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_pair_job || $$, 'r_pair', '(x.tenant_id, x.id)',
                                                  '((%1$s ->> 0)::int, (%1$s ->> 1)::bigint)')$$,
                'range: (int, bigint): the ranges partition the keys, contiguously, as rows_done and task_progress say');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_skew_job || $$, 'r_skew', 'x.id', '(%s #>> ''{}'')::bigint')$$,
                'range: skewed: the ranges partition the keys');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_big_job || $$, 'r_big', 'x.id', '(%s #>> ''{}'')::bigint')$$,
                'range: sampled: the ranges partition the keys');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_text_job || $$, 'k_text', 'x.k', '(%s #>> ''{}'')')$$,
                'range: ICU text: the ranges partition the keys under the column''s collation');

SELECT ok(tap_balanced(:r_ids_job), 'range: bigint: each instance did 2,500 rows +-30% (' || tap_balance(:r_ids_job) || ')');
SELECT ok(tap_balanced(:r_pair_job), 'range: (int, bigint): each instance did 2,500 rows +-30% (' || tap_balance(:r_pair_job) || ')');
SELECT ok(tap_balanced(:r_skew_job), 'range: skewed: each instance did 2,500 rows +-30% (' || tap_balance(:r_skew_job) || ')');
SELECT ok(tap_balanced(:r_big_job), 'range: sampled: each instance did 50,000 rows +-30% (' || tap_balance(:r_big_job) || ')');
SELECT ok(tap_balanced(:r_text_job), 'range: ICU text: each instance did a fifth +-30% (' || tap_balance(:r_text_job) || ')');

SELECT is((SELECT sum(rows_done) FROM iterjob.task WHERE job_id = :r_ids_job), 10000::numeric,
          'range: bigint: rows_done add up to 10,000');

-- Under the range partition a batch's keys are all the keys between its first
-- and its last, so an action can find its rows by that key range (one index
-- range scan) instead of = ANY of its keys (one index descent per key).  Keys
-- with gaps, stored in random order, batches that end mid-gap.
CREATE TABLE r_span (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_span (id) SELECT g * 3 + (g % 2) FROM generate_series(1, 6000) g ORDER BY random();
CREATE TABLE r_span_pair (tenant_id int, id bigint, n int NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, id));
INSERT INTO r_span_pair (tenant_id, id) SELECT t, g * 5 FROM generate_series(1, 6) t, generate_series(1, 1000) g
 ORDER BY random();

SELECT iterjob.enqueue('r_span', 'UPDATE r_span SET n = n + 1 WHERE id BETWEEN $1[1] AND $1[cardinality($1)]',
                       instances => 3, batch_size => 97, partition => 'range') AS r_span_job \gset
SELECT iterjob.enqueue('r_span_pair',
                       'UPDATE r_span_pair SET n = n + 1
                         WHERE (tenant_id, id) BETWEEN ($1[1], $2[1]) AND ($1[cardinality($1)], $2[cardinality($2)])',
                       instances => 3, batch_size => 97, partition => 'range') AS r_span_pair_job \gset
SELECT is(iterjob.wait(:r_span_job, '60 s'), 'succeeded', 'range: bigint job with a key range action succeeds');
SELECT is(iterjob.wait(:r_span_pair_job, '60 s'), 'succeeded', 'range: (int, bigint) job with a key range action succeeds');
SELECT is(tap_count('r_span', 'n <> 1'), 0::bigint, 'range: key range action: every row exactly once');
SELECT is(tap_count('r_span_pair', 'n <> 1'), 0::bigint, 'range: (int, bigint) key range action: every row exactly once');
SELECT is((SELECT sum(rows_done) FROM iterjob.task WHERE job_id IN (:r_span_job, :r_span_pair_job)), 12000::numeric,
          'range: key range actions: rows_done add up to 12,000');

-- More instances than keys, and no key at all.
CREATE TABLE r_two (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO r_two (id) VALUES (10), (20);
CREATE TABLE r_none (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);

SELECT iterjob.enqueue('r_two', 'UPDATE r_two SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, partition => 'range') AS r_two_job \gset
SELECT iterjob.enqueue('r_none', 'UPDATE r_none SET n = n + 1 WHERE id = ANY($1)',
                       instances => 3, partition => 'range') AS r_none_job \gset
SELECT is(iterjob.wait(:r_two_job, '30 s'), 'succeeded', 'range: 4 instances over 2 keys succeed');
SELECT is(tap_count('r_two', 'n <> 1'), 0::bigint, 'range: 4 instances over 2 keys: each key exactly once');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :r_two_job || $$, 'r_two', 'x.id', '(%s #>> ''{}'')::bigint')$$,
                'range: 4 instances over 2 keys: the ranges partition the keys');
SELECT is(iterjob.wait(:r_none_job, '30 s'), 'succeeded', 'range: an empty table succeeds');
SELECT is((SELECT count(*) FROM iterjob.task WHERE job_id = :r_none_job AND state = 'succeeded'
              AND cursor -> 'inner_cursor' = 'null' AND rows_done = 0), 3::bigint,
          'range: an empty table: 3 instances succeeded, no cursor, no rows');

-- 6. Key errors --------------------------------------------------------------

CREATE TABLE e_pair (tenant_id int NOT NULL, id bigint NOT NULL, tags int[], doc json,
                     m money, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX e_pair_id_tenant ON e_pair (id, tenant_id);
CREATE UNIQUE INDEX e_pair_tags ON e_pair (tags);
CREATE UNIQUE INDEX e_pair_m ON e_pair (m);
CREATE UNIQUE INDEX e_pair_tenant_id_partial ON e_pair (tenant_id, id) WHERE id > 0;
CREATE INDEX e_pair_tenant_id_plain ON e_pair (tenant_id, id);
CREATE UNIQUE INDEX e_pair_tenant_m ON e_pair (tenant_id, m);
INSERT INTO e_pair (tenant_id, id, tags, m) SELECT g % 5, g, ARRAY[g], (g * 1.25)::numeric::money FROM generate_series(1, 200) g;

SELECT count(*) AS jobs_before FROM iterjob.job \gset

SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'tenant_id, id')$$) ->> 'sqlstate',
          '22023',
          'key errors: (tenant_id, id) with unique indexes only on (id, tenant_id) or partial: 22023');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'tenant_id, id')$$) ->> 'message',
               'not covered by a unique index',
               'key errors: ... "not covered by a unique index"');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'id, tenant_id')$$) ->> 'sqlstate',
          'none',
          'key errors: (id, tenant_id), in the unique index''s order, is accepted');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'id, tenant_id, id')$$) ->> 'sqlstate',
          '42701',
          'key errors: a key naming a column twice: 42701');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'id, "id"')$$) ->> 'message',
               'named twice',
               'key errors: ... also when quoted: "named twice"');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'tags')$$) ->> 'sqlstate',
          '0A000',
          'key errors: an array-typed key (with a unique index): 0A000');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'tags')$$) ->> 'message',
               'is an array',
               'key errors: ... "is an array"');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'doc')$$) ->> 'message',
               'no btree ordering',
               'key errors: a json key: "no btree ordering"');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'nope')$$) ->> 'sqlstate',
          '42703',
          'key errors: an unknown column: 42703');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'id,')$$) ->> 'sqlstate',
          '22023',
          'key errors: a malformed key list: 22023');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1')$$) ->> 'message',
               'has no primary key',
               'key errors: no key and no primary key: "has no primary key"');

-- money has a btree opclass but no hash opclass in core.
SELECT ok(EXISTS (SELECT FROM pg_opclass o JOIN pg_am a ON a.oid = o.opcmethod
                   WHERE a.amname = 'btree' AND o.opcintype = 'money'::regtype)
          AND NOT EXISTS (SELECT FROM pg_opclass o JOIN pg_am a ON a.oid = o.opcmethod
                           WHERE a.amname = 'hash' AND o.opcintype = 'money'::regtype),
          'money: btree-orderable, without a hash opclass (the premise of the next tests)');
SELECT is(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'm', instances => 2)$$) ->> 'sqlstate',
          '0A000',
          'a money key under modulo with 2 instances: 0A000');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'm', instances => 2)$$) ->> 'message',
               'has no extended hash function',
               'a money key under modulo: "has no extended hash function"');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'm', instances => 2)$$) ->> 'hint',
               'partition => ''range''',
               'a money key under modulo: the hint says partition => ''range''');
SELECT matches(tap_error($$SELECT iterjob.enqueue('e_pair', 'SELECT 1', key => 'tenant_id, m', instances => 2)$$) ->> 'message',
               'has no extended hash function',
               'a composite key (int, money) under modulo: "has no extended hash function"');
SELECT matches(tap_error($$SELECT * FROM iterjob.preview('e_pair', 'SELECT 1', key => 'm', instances => 2)$$) ->> 'message',
               'has no extended hash function',
               'preview refuses it too');

SELECT is((SELECT count(*) FROM iterjob.job), :jobs_before::bigint, 'key errors leave no job behind');

SELECT iterjob.enqueue('e_pair', 'UPDATE e_pair SET n = n + 1 WHERE m = ANY($1)', key => 'm',
                       instances => 2, batch_size => 7, partition => 'range') AS money_job \gset
SELECT is(iterjob.wait(:money_job, '30 s'), 'succeeded', 'a money key with partition => ''range'' succeeds');
SELECT is(tap_count('e_pair', 'n <> 1'), 0::bigint, 'money key, range: every row exactly once');
SELECT is_empty($$SELECT * FROM tap_range_problems($$ || :money_job || $$, 'e_pair', 'x.m', '(%s #>> ''{}'')::money')$$,
                'money key, range: the ranges partition the keys');
SELECT is(tap_cursors(:money_job)::text,
          (SELECT jsonb_agg(jsonb_build_object('instance', t.instance, 'inner_cursor',
                     (SELECT to_jsonb(max(x.m)) FROM e_pair x
                       WHERE (t.range_start IS NULL OR x.m >= (t.range_start #>> '{}')::money)
                         AND (t.range_end IS NULL OR x.m < (t.range_end #>> '{}')::money)))
                   ORDER BY t.instance)
             FROM iterjob.task t WHERE t.job_id = :money_job)::text,
          'money key, range: each final cursor is the largest key of its range');

-- 7. Keys whose text form depends on settings, or is itself jsonb -----------------

-- float8: at extra_float_digits = 0 a float8 prints with 15 digits, so
-- 0.30000000000000004 prints as 0.3.  The job enqueued in such a session
-- must still visit every key present.
CREATE TABLE f_keys (k float8 PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO f_keys (k) SELECT g * 0.001 FROM generate_series(1, 290) g;
INSERT INTO f_keys (k) VALUES (0.1::float8 + 0.2::float8);   -- 0.30000000000000004, the largest
SET extra_float_digits = 0;
SELECT iterjob.enqueue('f_keys', 'UPDATE f_keys SET n = n + 1 WHERE k = ANY($1)',
                       instances => 2, batch_size => 7) AS f_job \gset
RESET extra_float_digits;
SELECT is(iterjob.wait(:f_job, '30 s'), 'succeeded', 'float8 key enqueued at extra_float_digits = 0: succeeds');
SELECT is(tap_count('f_keys', 'n <> 1'), 0::bigint,
          'float8 key enqueued at extra_float_digits = 0: every row exactly once, the largest key 0.30000000000000004 included');
SELECT is((SELECT upper_bound::text FROM iterjob.job WHERE id = :f_job), '0.30000000000000004',
          'float8 key enqueued at extra_float_digits = 0: job.upper_bound is exact');

-- Key values that are themselves jsonb, or of a composite type, have a
-- jsonb form (an array, a string, an object, null) that the cursor format
-- cannot tell from a composite key or from no cursor.  Either enqueue
-- refuses such keys (0A000), or every row is visited once, also across a
-- resume from a stored cursor: the action raises on the armed row, the job
-- fails (max_attempts => 1), the row is disarmed and the job retried.
CREATE TABLE resume_results (label text PRIMARY KEY, job bigint, outcome text, state text,
                             not_once bigint);

CREATE PROCEDURE tap_trap_and_resume(p_label text, p_tbl regclass, p_key text)
LANGUAGE plpgsql AS $$
DECLARE
    j bigint;
    st text;
    bad bigint;
BEGIN
    BEGIN
        j := iterjob.enqueue(p_tbl, format('UPDATE %s SET n = n + tap_trap(armed, 0) WHERE %I = ANY($1)', p_tbl, p_key),
                             key => p_key, batch_size => 1, max_attempts => 1);
    EXCEPTION
        WHEN feature_not_supported THEN
            INSERT INTO resume_results VALUES (p_label, NULL, 'refused', NULL, NULL);
            RETURN;
        WHEN OTHERS THEN
            INSERT INTO resume_results VALUES (p_label, NULL, 'enqueue failed: ' || SQLSTATE || ' ' || SQLERRM, NULL, NULL);
            RETURN;
    END;
    COMMIT;
    st := iterjob.wait(j, '30 s');
    IF st = 'failed' THEN
        EXECUTE format('UPDATE %s SET armed = false', p_tbl);
        COMMIT;
        PERFORM iterjob.retry(j);
        COMMIT;
        st := iterjob.wait(j, '10 s');
        IF st NOT IN ('succeeded', 'failed', 'cancelled') THEN
            -- not a lost wake-up (section 8): wake the launcher, wait again
            PERFORM iterjob.wake_workers();
            COMMIT;
            st := iterjob.wait(j, '5 s');
        END IF;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s WHERE n <> 1', p_tbl) INTO bad;
    INSERT INTO resume_results
    SELECT p_label, j, 'enqueued, task ' || t.state || coalesce(', cursor ' || t.cursor::text, ''), st, bad
      FROM iterjob.task t WHERE t.job_id = j;
END
$$;

CREATE TABLE j_keys (k jsonb PRIMARY KEY, n int NOT NULL DEFAULT 0, armed boolean NOT NULL DEFAULT false);
INSERT INTO j_keys (k) VALUES ('null'), ('"a"'), ('"b"'), ('1'), ('2'), ('true'), ('[1, 2]'), ('[3, 4]');
UPDATE j_keys SET armed = true WHERE k = '"b"';

CREATE TYPE pair_t AS (a int, b text);
CREATE TABLE r_keys (k pair_t PRIMARY KEY, n int NOT NULL DEFAULT 0, armed boolean NOT NULL DEFAULT false);
INSERT INTO r_keys (k) SELECT ROW(g % 4, 'x' || g)::pair_t FROM generate_series(1, 12) g;
UPDATE r_keys SET armed = true WHERE k = ROW(1, 'x5')::pair_t;

CALL tap_trap_and_resume('jsonb', 'j_keys', 'k');
CALL tap_trap_and_resume('composite type', 'r_keys', 'k');

SELECT ok(coalesce(outcome = 'refused' OR (state = 'succeeded' AND not_once = 0), false),
          format('%s key: refused at enqueue (0A000), or every row exactly once after a resume (%s, state %s, %s rows not processed once)',
                 label, outcome, coalesce(state, '-'), coalesce(not_once::text, '-')))
  FROM resume_results ORDER BY label;

-- Whatever happened to those jobs, other jobs of the database still run.
CREATE TABLE after_keys (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO after_keys (id) SELECT generate_series(1, 10);
SELECT iterjob.enqueue('after_keys', 'UPDATE after_keys SET n = n + 1 WHERE id = ANY($1)') AS after_job \gset
SELECT is(iterjob.wait(:after_job, '15 s'), 'succeeded',
          'a job enqueued after the jsonb- and composite-typed-key jobs succeeds within 15 s');
SELECT count(iterjob.cancel(job)) AS cancelled FROM resume_results
 WHERE state NOT IN ('succeeded', 'failed', 'cancelled') \gset

-- 8. Retried jobs start promptly -----------------------------------------------

-- Section 3 retried its decode jobs some 70 times, each right after its
-- previous attempt failed.  A retry wakes the launcher when it commits; no
-- retried job may sit for 5 s with no worker picking it up.
SELECT is((SELECT count(*) FROM stalls), 0::bigint,
          'every retried decode job was picked up within 5 s (stalls: '
          || coalesce((SELECT string_agg(format('%s attempt %s: task %s, %s workers, %s', name, attempt,
                                                task_state, workers, waited), '; ')
                         FROM stalls), 'none') || ')');

SELECT * FROM finish();
