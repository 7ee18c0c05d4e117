-- key_orders.sql: a job walks its keys in the order of the unique index it
-- iterates (its operator family, its collation, its direction), so every
-- row is processed exactly once whatever that order is, under both
-- partitions, and the next-batch query stays an ordered scan of that index.
--
--   1. citext (the case that lost rows: a, B, c, D, e, F, batches of 2)
--   2. text under a unique index whose collation is not the column's
--   3. varchar under varchar_pattern_ops
--   4. a DESC unique index
--   5. a user-defined btree operator class that reverses int4's order
--   6. composite keys mixing these (pattern ops + DESC, citext + int)
--
-- Run by test/pgtap-exec.sh in a fresh database (autocommit: jobs run in
-- background workers).

SET client_min_messages = warning;
CREATE EXTENSION citext;

SELECT plan(43);

-- Enqueue a job over tbl with the given key and partition, the action
-- adding one to n of each key of the batch (ko_run, its own transaction so
-- that workers see it); then ko_result waits for it: 'succeeded, 0 wrong'
-- when every row was processed exactly once.
CREATE FUNCTION ko_run(tbl text, key text, match text, part text,
                       instances integer, batch integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    job bigint;
BEGIN
    EXECUTE format('UPDATE %I SET n = 0', tbl);
    job := iterjob.enqueue(tbl::regclass,
                           format('UPDATE %I SET n = n + 1 WHERE %s', tbl, match),
                           key => key, instances => instances, batch_size => batch,
                           partition => part);
    RETURN job::text;
END
$$;

CREATE FUNCTION ko_result(tbl text, job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text := iterjob.wait(job, '60 s');
    wrong bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %I WHERE n <> 1', tbl) INTO wrong;
    RETURN state || ', ' || wrong || ' wrong';
END
$$;

-- the HINT of the error sql raises
CREATE FUNCTION ko_hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END
$$;

-- The plan of the next-batch query of instance 0, as workers plan it.
CREATE FUNCTION ko_next_plan(tbl text, key text, part text, instances integer)
RETURNS text LANGUAGE sql AS $$
    SELECT next_plan FROM iterjob.preview(tbl::regclass, 'SELECT 1', key => key,
                                          instances => instances, batch_size => 5,
                                          partition => part)
     WHERE instance = 0
$$;

-- 1. citext --------------------------------------------------------------------

CREATE TABLE ko_citext (k citext PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO ko_citext (k) VALUES ('a'), ('B'), ('c'), ('D'), ('e'), ('F');
INSERT INTO ko_citext (k) SELECT md5(g::text) || CASE WHEN g % 2 = 0 THEN 'X' ELSE 'y' END
  FROM generate_series(1, 300) g;
ANALYZE ko_citext;

SELECT ko_run('ko_citext', 'k', 'k = ANY($1)', 'range', 2, 2) AS j \gset
SELECT is(ko_result('ko_citext', :j), 'succeeded, 0 wrong',
          'citext key, range partition, batches of 2: every row exactly once (a, c, e included)');
SELECT is((SELECT count(*) FROM ko_citext WHERE k IN ('a', 'c', 'e') AND n = 1), 3::bigint,
          'citext key: the lower-case keys between upper-case ones were processed');
SELECT ko_run('ko_citext', 'k', 'k = ANY($1)', 'modulo', 3, 7) AS j \gset
SELECT is(ko_result('ko_citext', :j), 'succeeded, 0 wrong',
          'citext key, modulo (hash) partition: every row exactly once');
SELECT ko_run('ko_citext', 'k', 'k = ANY($1)', 'range', 1, 4) AS j \gset
SELECT is(ko_result('ko_citext', :j), 'succeeded, 0 wrong',
          'citext key, one instance: every row exactly once');
SELECT is((SELECT cursor->>'inner_cursor' FROM iterjob.task_progress WHERE job_id = :j),
          (SELECT max(k)::text FROM ko_citext),
          'citext key: the last cursor is the largest key in citext''s order');
SELECT matches(ko_next_plan('ko_citext', 'k', 'range', 2),
               'Index (Only )?Scan using ko_citext_pkey',
               'citext key: the next-batch query scans the primary key');
SELECT doesnt_match(ko_next_plan('ko_citext', 'k', 'range', 2), 'Sort',
                    'citext key: the next-batch query needs no sort');
SELECT matches(ko_next_plan('ko_citext', 'k', 'range', 2),
               'Index Cond: [^\n]*k > \$1',
               'citext key: the cursor condition is an index condition');

-- 2. a collation other than the column's -------------------------------------

SELECT collname AS icu FROM pg_collation
 WHERE collprovider = 'i' AND collname = 'und-x-icu' \gset
\if :{?icu}
CREATE TABLE ko_coll (k text COLLATE "C", n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_coll_icu ON ko_coll (k COLLATE "und-x-icu");
INSERT INTO ko_coll (k) SELECT x FROM unnest('{a,B,c,D,e,F,g,H,äb,Ab,ab,AB,z,Z}'::text[]) x;
INSERT INTO ko_coll (k) SELECT chr(65 + g % 26) || chr(97 + (g / 26) % 26) || g FROM generate_series(1, 200) g;
ANALYZE ko_coll;
SELECT ko_run('ko_coll', 'k', 'k = ANY($1)', 'range', 3, 3) AS j \gset
SELECT is(ko_result('ko_coll', :j), 'succeeded, 0 wrong',
          'text "C" column under an ICU-collated unique index, range: every row exactly once');
SELECT ko_run('ko_coll', 'k', 'k = ANY($1)', 'modulo', 2, 5) AS j \gset
SELECT is(ko_result('ko_coll', :j), 'succeeded, 0 wrong',
          'text "C" column under an ICU-collated unique index, modulo: every row exactly once');
SELECT matches(ko_next_plan('ko_coll', 'k', 'range', 3),
               'Index (Only )?Scan using ko_coll_icu',
               'collated key: the next-batch query scans the ICU-collated index');
SELECT doesnt_match(ko_next_plan('ko_coll', 'k', 'range', 3), 'Sort',
                    'collated key: the next-batch query needs no sort');
\else
SELECT skip('no ICU collation "und-x-icu" in this build', 4);
\endif

-- 3. varchar_pattern_ops ---------------------------------------------------------

CREATE TABLE ko_pattern (k varchar(40), n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_pattern_idx ON ko_pattern (k varchar_pattern_ops);
INSERT INTO ko_pattern (k) SELECT chr(65 + g % 26) || chr(97 + g % 7) || g FROM generate_series(1, 300) g;
INSERT INTO ko_pattern (k) VALUES ('a'), ('B'), ('_x'), ('~y'), ('é');
ANALYZE ko_pattern;
SELECT ko_run('ko_pattern', 'k', 'k = ANY($1)', 'range', 3, 4) AS j \gset
SELECT is(ko_result('ko_pattern', :j), 'succeeded, 0 wrong',
          'varchar_pattern_ops key, range: every row exactly once');
SELECT ko_run('ko_pattern', 'k', 'k = ANY($1)', 'modulo', 3, 4) AS j \gset
SELECT is(ko_result('ko_pattern', :j), 'succeeded, 0 wrong',
          'varchar_pattern_ops key, modulo: every row exactly once');
SELECT matches(ko_next_plan('ko_pattern', 'k', 'range', 3),
               'Index (Only )?Scan using ko_pattern_idx',
               'varchar_pattern_ops key: the next-batch query scans that index');
SELECT matches(ko_next_plan('ko_pattern', 'k', 'range', 3),
               'Index Cond: [^\n]*~>~ \(\$1\)::text',
               'varchar_pattern_ops key: the cursor condition uses ~>~, as an index condition');
SELECT doesnt_match(ko_next_plan('ko_pattern', 'k', 'range', 3), 'Sort',
                    'varchar_pattern_ops key: the next-batch query needs no sort');

-- 4. a DESC unique index -----------------------------------------------------------

CREATE TABLE ko_desc (k int, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_desc_idx ON ko_desc (k DESC);
INSERT INTO ko_desc (k) SELECT g * 3 FROM generate_series(-50, 250) g;
ANALYZE ko_desc;
SELECT ko_run('ko_desc', 'k', 'k = ANY($1)', 'range', 3, 8) AS j \gset
SELECT is(ko_result('ko_desc', :j), 'succeeded, 0 wrong',
          'DESC unique index, range: every row exactly once');
SELECT ko_run('ko_desc', 'k', 'k = ANY($1)', 'modulo', 3, 8) AS j \gset
SELECT is(ko_result('ko_desc', :j), 'succeeded, 0 wrong',
          'DESC unique index, modulo: every row exactly once');
SELECT matches(ko_next_plan('ko_desc', 'k', 'range', 3),
               'Index (Only )?Scan Backward using ko_desc_idx',
               'DESC unique index: walked ascending, by a backward scan of the index');
SELECT doesnt_match(ko_next_plan('ko_desc', 'k', 'range', 3), 'Sort',
                    'DESC unique index: the next-batch query needs no sort');

-- 5. a user-defined operator class that reverses int4's order ------------------------

-- (CREATE OPERATOR CLASS needs a superuser; its functions are ordinary
-- ones, in PL/pgSQL so that the planner cannot inline them into int4's)
CREATE FUNCTION ko_rev_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE STRICT
    AS 'SELECT btint4cmp($2, $1)';
CREATE FUNCTION ko_rev_lt(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE STRICT
    AS 'BEGIN RETURN $1 > $2; END';
CREATE FUNCTION ko_rev_le(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE STRICT
    AS 'BEGIN RETURN $1 >= $2; END';
CREATE FUNCTION ko_rev_eq(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE STRICT
    AS 'BEGIN RETURN $1 = $2; END';
CREATE FUNCTION ko_rev_ge(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE STRICT
    AS 'BEGIN RETURN $1 <= $2; END';
CREATE FUNCTION ko_rev_gt(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE STRICT
    AS 'BEGIN RETURN $1 < $2; END';
CREATE OPERATOR <<< (LEFTARG = int, RIGHTARG = int, FUNCTION = ko_rev_lt);
CREATE OPERATOR <<= (LEFTARG = int, RIGHTARG = int, FUNCTION = ko_rev_le);
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = ko_rev_eq);
CREATE OPERATOR >>= (LEFTARG = int, RIGHTARG = int, FUNCTION = ko_rev_ge);
CREATE OPERATOR >>> (LEFTARG = int, RIGHTARG = int, FUNCTION = ko_rev_gt);
CREATE OPERATOR CLASS ko_rev_ops FOR TYPE int USING btree AS
    OPERATOR 1 <<<, OPERATOR 2 <<=, OPERATOR 3 ===, OPERATOR 4 >>=, OPERATOR 5 >>>,
    FUNCTION 1 ko_rev_cmp(int, int);

CREATE TABLE ko_rev (k int, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_rev_idx ON ko_rev (k ko_rev_ops);
INSERT INTO ko_rev (k) SELECT g FROM generate_series(1, 300) g;
ANALYZE ko_rev;
SELECT ko_run('ko_rev', 'k', 'k = ANY($1)', 'range', 3, 8) AS j \gset
SELECT is(ko_result('ko_rev', :j), 'succeeded, 0 wrong',
          'reversing operator class, range: every row exactly once');
SELECT is((SELECT string_agg(range_start::text, ',' ORDER BY instance)
             FROM iterjob.task WHERE job_id = :j AND instance > 0) IS NOT NULL
          AND (SELECT (range_start::text)::int FROM iterjob.task WHERE job_id = :j AND instance = 1)
            > (SELECT (range_start::text)::int FROM iterjob.task WHERE job_id = :j AND instance = 2),
          true,
          'reversing operator class: range boundaries descend with the instances');
SELECT ko_run('ko_rev', 'k', 'k = ANY($1)', 'modulo', 3, 8) AS j \gset
SELECT is(ko_result('ko_rev', :j), 'succeeded, 0 wrong',
          'reversing operator class, modulo: every row exactly once');
SELECT ko_run('ko_rev', 'k', 'k = ANY($1)', 'modulo', 1, 7) AS j \gset
SELECT is(ko_result('ko_rev', :j), 'succeeded, 0 wrong',
          'reversing operator class, one instance: every row exactly once');
SELECT is((SELECT cursor->'inner_cursor' FROM iterjob.task_progress WHERE job_id = :j),
          '1'::jsonb, 'reversing operator class: the walk ends at the smallest int');
SELECT matches(ko_next_plan('ko_rev', 'k', 'range', 3),
               'Index (Only )?Scan using ko_rev_idx',
               'reversing operator class: the next-batch query scans that index');
SELECT matches(ko_next_plan('ko_rev', 'k', 'range', 3),
               'Index Cond: [^\n]*>>> \$1',
               'reversing operator class: the cursor condition uses its >>>, as an index condition');
SELECT doesnt_match(ko_next_plan('ko_rev', 'k', 'range', 3), 'Sort',
                    'reversing operator class: the next-batch query needs no sort');

-- 6. composite keys mixing these ---------------------------------------------------

-- text_pattern_ops beside a DESC integer column: no row comparison can say
-- that order, so the next batch unions one index range scan per column
CREATE TABLE ko_mix (t text, i int, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_mix_idx ON ko_mix (t text_pattern_ops, i DESC);
INSERT INTO ko_mix (t, i) SELECT x, g FROM unnest('{a,B,c,_d,E}'::text[]) x, generate_series(1, 60) g;
ANALYZE ko_mix;
SELECT ko_run('ko_mix', 't, i', '(t, i) IN (SELECT * FROM unnest($1, $2))', 'range', 3, 7) AS j \gset
SELECT is(ko_result('ko_mix', :j), 'succeeded, 0 wrong',
          '(text_pattern_ops, int DESC) key, range: every row exactly once');
SELECT ko_run('ko_mix', 't, i', '(t, i) IN (SELECT * FROM unnest($1, $2))', 'modulo', 3, 7) AS j \gset
SELECT is(ko_result('ko_mix', :j), 'succeeded, 0 wrong',
          '(text_pattern_ops, int DESC) key, modulo: every row exactly once');
SELECT ko_run('ko_mix', 't, i', '(t, i) IN (SELECT * FROM unnest($1, $2))', 'range', 1, 11) AS j \gset
SELECT is(ko_result('ko_mix', :j), 'succeeded, 0 wrong',
          '(text_pattern_ops, int DESC) key, one instance: every row exactly once');
SELECT is((SELECT cursor->'inner_cursor' FROM iterjob.task_progress WHERE job_id = :j),
          '["c", 1]'::jsonb,
          '(text_pattern_ops, int DESC) key: the walk ends at the last key in the index''s order');
SELECT matches(ko_next_plan('ko_mix', 't, i', 'range', 3),
               'Index Cond: [^\n]*t = \$1[^\n]*i < \$2',
               '(text_pattern_ops, int DESC) key: the branch after the cursor within t is an index range scan');
SELECT matches(ko_next_plan('ko_mix', 't, i', 'range', 3),
               'Index Cond: [^\n]*t ~>~ \$1',
               '(text_pattern_ops, int DESC) key: the branch past t is an index range scan');
SELECT is((SELECT count(*) FROM regexp_matches(ko_next_plan('ko_mix', 't, i', 'range', 3),
                                               'Index (Only )?Scan using ko_mix_idx', 'g')),
          2::bigint, '(text_pattern_ops, int DESC) key: both branches scan the key''s index');

-- citext beside int: their operators live in different schemas
CREATE TABLE ko_ci_int (c citext, i int, n int NOT NULL DEFAULT 0, PRIMARY KEY (c, i));
INSERT INTO ko_ci_int (c, i) SELECT x, g FROM unnest('{a,B,c,D}'::text[]) x, generate_series(1, 50) g;
ANALYZE ko_ci_int;
SELECT ko_run('ko_ci_int', 'c, i', '(c, i) IN (SELECT * FROM unnest($1, $2))', 'range', 3, 6) AS j \gset
SELECT is(ko_result('ko_ci_int', :j), 'succeeded, 0 wrong',
          '(citext, int) key, range: every row exactly once');
SELECT ko_run('ko_ci_int', 'c, i', '(c, i) IN (SELECT * FROM unnest($1, $2))', 'modulo', 2, 6) AS j \gset
SELECT is(ko_result('ko_ci_int', :j), 'succeeded, 0 wrong',
          '(citext, int) key, modulo: every row exactly once');
SELECT matches(ko_next_plan('ko_ci_int', 'c, i', 'range', 3),
               'Index (Only )?Scan using ko_ci_int_pkey',
               '(citext, int) key: the next-batch query scans the primary key');

-- a plain composite key keeps its single row comparison
CREATE TABLE ko_pair (a int, b bigint, n int NOT NULL DEFAULT 0, PRIMARY KEY (a, b));
INSERT INTO ko_pair (a, b) SELECT x, g FROM generate_series(1, 4) x, generate_series(1, 50) g;
ANALYZE ko_pair;
SELECT matches(ko_next_plan('ko_pair', 'a, b', 'range', 2),
               'Index Cond: [^\n]*ROW\(a, b\) > ROW\(\$1, \$2\)',
               '(int, bigint) key: the cursor is one row comparison, an index condition');
SELECT doesnt_match(ko_next_plan('ko_pair', 'a, b', 'range', 2), 'Append',
                    '(int, bigint) key: no union of branches');

-- 7. keys whose order cannot be an index's are refused ---------------------------

CREATE TABLE ko_expr (k text, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ko_expr_idx ON ko_expr (lower(k));
CREATE UNIQUE INDEX ko_partial_idx ON ko_expr (k) WHERE k <> '';
SELECT throws_ok($$SELECT iterjob.enqueue('ko_expr', 'SELECT 1', key => 'k')$$,
                 '22023', 'key (k) of relation "ko_expr" is not covered by a unique index',
                 'a key covered only by an expression or partial unique index is refused');
SELECT is(ko_hint($$SELECT iterjob.enqueue('ko_expr', 'SELECT 1', key => 'k')$$),
          'Create one (CREATE UNIQUE INDEX ... ON ko_expr (k)), or name the columns of such an index with the "key" parameter.',
          'the refusal says how to fix it');

SELECT * FROM finish();
