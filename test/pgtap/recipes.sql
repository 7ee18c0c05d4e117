-- recipes.sql: every recipe of README.md's Recipes section runs as written
-- (read from README.md by test/readme-recipe.sh) and does what it says.
--
-- Run by test/pgtap-exec.sh (which passes the extractor as :recipe) in a
-- fresh database, autocommit, as the superuser postgres.

SET client_min_messages = warning;
SELECT plan(26);

CREATE TABLE items (id bigint PRIMARY KEY, v int, w int);
INSERT INTO items SELECT g, g % 1000, CASE WHEN g % 10 = 0 THEN -1 END FROM generate_series(1, 20000) g;
CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL);
INSERT INTO sessions SELECT g, now() + CASE WHEN g % 3 = 0 THEN interval '1 day' ELSE interval '-1 day' END
  FROM generate_series(1, 12000) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric);
INSERT INTO orders SELECT g, 'c' || g % 97, g / 10.0 FROM generate_series(1, 5000) g;
CREATE TABLE orders_new (LIKE orders INCLUDING ALL);
INSERT INTO orders_new SELECT * FROM orders WHERE id % 500 = 0;   -- copied before
CREATE TABLE migrations (name text, done_at timestamptz);
CREATE TABLE line_items (tenant_id int, id bigint, qty int, price numeric, total numeric,
                         PRIMARY KEY (tenant_id, id));
INSERT INTO line_items SELECT t, g, g % 7, t + 0.5, NULL FROM generate_series(1, 5) t, generate_series(1, 800) g;
CREATE TABLE documents (id bigint PRIMARY KEY, body text);
INSERT INTO documents SELECT g, 'doc ' || g FROM generate_series(1, 12000) g;
CREATE FUNCTION reencode(body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(body) $$;
CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, g % 100 FROM generate_series(1, 6000) g;
CREATE TABLE overdue (customer_id bigint PRIMARY KEY, notified boolean NOT NULL DEFAULT false, due boolean);
INSERT INTO overdue SELECT g, false, g % 4 = 0 FROM generate_series(1, 2000) g;
CREATE VIEW overdue_invoices AS SELECT customer_id FROM overdue WHERE due;
CREATE PROCEDURE notify_customers(ids bigint[]) LANGUAGE sql AS $$
    UPDATE overdue SET notified = true WHERE customer_id = ANY(ids)
$$;
ANALYZE;

-- the newest job's final state
CREATE FUNCTION recipe_job_state() RETURNS text LANGUAGE sql AS $$
    SELECT iterjob.wait(max(id), '120 s') FROM iterjob.job
$$;

\set n `:recipe count`
-- recipes 8 to 10 (nightly with pg_cron) run in test/t/014_pg_cron.pl
SELECT is(:n, 13, 'README.md has the 10 recipes this file runs and the 3 of the pg_cron one');

-- 1. Backfill a column, four at a time
\set r `:recipe 1`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 1 (backfill): the job succeeds');
SELECT is((SELECT count(*) FROM items WHERE w IS DISTINCT FROM CASE WHEN id % 10 = 0 THEN -1 ELSE v * 2 END),
          0::bigint, 'recipe 1: every row with w IS NULL got w = v * 2, the others kept theirs');

-- 2. Delete expired rows in batches, gently
\set r `:recipe 2`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 2 (delete expired): the job succeeds');
SELECT is((SELECT count(*) || ' left, ' || count(*) FILTER (WHERE expires_at < now()) || ' expired' FROM sessions),
          '4000 left, 0 expired', 'recipe 2: the expired sessions are gone, the others stay');

-- 3. Copy between tables, and record it when every instance is done
\set r `:recipe 3`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 3 (copy): the job succeeds');
SELECT is((SELECT count(*) FROM orders_new), 5000::bigint, 'recipe 3: every order is in orders_new once');
SELECT is((SELECT count(*) FROM migrations WHERE name = 'orders copy'), 1::bigint,
          'recipe 3: on_complete recorded the migration once');

-- 4. A composite key
\set r `:recipe 4`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 4 (composite key): the job succeeds');
SELECT is((SELECT count(*) FROM line_items WHERE total IS DISTINCT FROM qty * price), 0::bigint,
          'recipe 4: every line item got its total');

-- 5. A throttled run, tuned while it runs
\set r `:recipe 5`
\o /dev/null
:r
\o
SELECT is((SELECT max_rows_per_second FROM iterjob.job WHERE name = 'reencode'), 5000,
          'recipe 5 (throttled): iterjob.set raised the running job''s rate');
SELECT is((SELECT max_wal_per_second FROM iterjob.job WHERE name = 'reencode'), 50 * 1024 * 1024::bigint,
          'recipe 5: ... and its WAL limit, kept in bytes per second');
SELECT is(recipe_job_state(), 'succeeded', 'recipe 5: the job succeeds');
SELECT is((SELECT count(*) FROM documents WHERE body <> upper('doc ' || id)), 0::bigint,
          'recipe 5: every document was re-encoded once');

-- 6. The fastest backfill: the batch's key range
UPDATE items SET w = NULL;
\set r `:recipe 6`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 6 (key range action): the job succeeds');
SELECT is((SELECT count(*) FROM items WHERE w IS DISTINCT FROM v * 2), 0::bigint,
          'recipe 6: every row got w = v * 2');

-- 7. A view, or any query, as the source
\set r `:recipe 7`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 7 (query source): the job succeeds');
SELECT is((SELECT count(*) FILTER (WHERE notified <> due) FROM overdue), 0::bigint,
          'recipe 7: exactly the overdue customers were notified');

-- 11, 12. A migration as steps
\set r `:recipe 11`
:r
\set r `:recipe 12`
\o /dev/null
:r
\o
SELECT is(recipe_job_state(), 'succeeded', 'recipe 12 (steps): the last step succeeds');
SELECT is((SELECT string_agg(name || ':' || state, ', ' ORDER BY job_id) FROM iterjob.job_progress WHERE name LIKE 'cents: %'),
          'cents: backfill:succeeded, cents: validate:succeeded, cents: not null:succeeded',
          'recipe 12: the three steps succeeded');
SELECT ok((SELECT v.started_at >= b.finished_at AND s.started_at >= v.finished_at
             FROM iterjob.job_progress b, iterjob.job_progress v, iterjob.job_progress s
            WHERE b.name = 'cents: backfill' AND v.name = 'cents: validate' AND s.name = 'cents: not null'),
          'recipe 12: each step started after the one before it ended');
SELECT is((SELECT count(*) FROM accounts WHERE cents = balance * 100), 6000::bigint,
          'recipe 12: every row filled');
SELECT is((SELECT attnotnull FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'cents'), true,
          'recipe 12: the column is NOT NULL');
SELECT is((SELECT count(*) FROM pg_constraint WHERE conname = 'cents_filled'), 0::bigint,
          'recipe 12: the CHECK constraint is gone');

-- 13. A brake: enqueued with a brake row already there, in one transaction
BEGIN;
\set r `:recipe 13`
\o /dev/null
:r
\o
INSERT INTO backfill_brake VALUES ('month-end close');
COMMIT;
SELECT ok(tap_wait_until($$(SELECT (held, rows_done)::text FROM iterjob.job_progress WHERE name = 'reencode, with a brake')
                            = '("health check: month-end close",0)'$$, '30 s'),
          'recipe 13 (brake): a brake row holds the job before its first batch, with its reason');
DELETE FROM backfill_brake;
SELECT is(recipe_job_state(), 'succeeded', 'recipe 13: without the row, the job goes on and succeeds');

SELECT * FROM finish();
