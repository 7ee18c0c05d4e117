-- security.sql: iterjob's security model, end to end, with real background
-- workers and several roles.
--
-- Jobs run in background workers and only see committed data, so this file
-- runs in autocommit (as the superuser postgres) and acts as other roles with
-- SET ROLE / RESET ROLE.  Run by test/pgtap-exec.sh in a fresh database, on
-- a cluster with iterjob preloaded and iterjob.max_workers = 4
-- (test/run-all.sh pgtap).  Roles are cluster-wide: they are all named sec_*
-- and dropped at the end.
--
--   sec_alice, sec_bob   ordinary users (LOGIN, granted iterjob_user)
--   sec_boss             admin (LOGIN, granted iterjob_admin)
--   sec_lead             LOGIN, iterjob_user, member of sec_alice
--   sec_nobody           LOGIN, no grants at all
--   sec_nologin          NOLOGIN, granted iterjob_user
--   sec_carol, sec_dave  job owners that are dropped / lose LOGIN mid-job
--
--    1. PUBLIC and a role without iterjob_user get nothing; catalog checks
--    2. a job runs as its owner (current_user, row level security)
--    3. the action cannot escape its owner (SET ROLE & co., superuser-only
--       commands), whether rejected at enqueue or failing in the worker
--    4. enqueue (and preview) check the caller's privileges (relation,
--       action, filter, column privileges); privileges hidden in functions
--       fail in the worker; query sources, on_complete /
--       on_instance_complete hooks and enqueue_values run as the owner
--    5. privilege revoked / owner dropped / owner loses LOGIN mid-job
--    6. a NOLOGIN role cannot own jobs
--    7. who sees and steers which jobs (views, workers view, wait, pause,
--       resume, cancel, retry, recount); admin steering runs as the owner
--    8. nobody but the extension owner writes iterjob's tables
--    9. injection through relation, action, filter, key, name, query, values
--   10. the worker uses the search_path captured at enqueue
--   11. user SQL run for another role (recount) leaves no settings in its session
--   12. jobs of different owners that share a worker do not share session
--       state (temporary tables, settings)
--   13. purge deletes only the caller's jobs

SET client_min_messages = warning;

SELECT plan(180);

-- Roles --------------------------------------------------------------------

-- Leftovers of an aborted earlier run (the database itself is always new).
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
              WHERE rolname IN ('sec_alice', 'sec_bob', 'sec_boss', 'sec_lead', 'sec_nobody',
                                'sec_nologin', 'sec_carol', 'sec_dave')
    LOOP
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;

CREATE ROLE sec_alice LOGIN;
CREATE ROLE sec_bob LOGIN;
CREATE ROLE sec_boss LOGIN;
CREATE ROLE sec_lead LOGIN;
CREATE ROLE sec_nobody LOGIN;
CREATE ROLE sec_nologin NOLOGIN;
CREATE ROLE sec_carol LOGIN;
CREATE ROLE sec_dave LOGIN;
GRANT iterjob_user TO sec_alice, sec_bob, sec_lead, sec_nologin, sec_carol, sec_dave;
GRANT iterjob_admin TO sec_boss;
GRANT sec_alice TO sec_lead;

-- Helpers (owned by postgres, SECURITY INVOKER: they run as whoever calls them) --

-- Raises unless sql fails with SQLSTATE state and a message LIKE pattern.
CREATE FUNCTION sec_throws_like(sql text, state text, pattern text, description text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN ok(false, description) || E'\n' ||
           diag('      caught: no exception' || E'\n      wanted: ' || state || ': ' || pattern);
EXCEPTION WHEN OTHERS THEN
    IF SQLSTATE = state AND SQLERRM LIKE pattern THEN
        RETURN ok(true, description);
    END IF;
    RETURN ok(false, description) || E'\n' ||
           diag('      caught: ' || SQLSTATE || ': ' || SQLERRM ||
                E'\n      wanted: ' || state || ': ' || pattern);
END
$$;

-- Like sec_throws_like, with a regular expression on "SQLSTATE: message",
-- where more than one refusal is acceptable.
CREATE FUNCTION sec_throws_matching(sql text, pattern text, description text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN ok(false, description) || E'\n' ||
           diag('      caught: no exception' || E'\n      wanted: ' || pattern);
EXCEPTION WHEN OTHERS THEN
    IF SQLSTATE || ': ' || SQLERRM ~ pattern THEN
        RETURN ok(true, description);
    END IF;
    RETURN ok(false, description) || E'\n' ||
           diag('      caught: ' || SQLSTATE || ': ' || SQLERRM || E'\n      wanted: ' || pattern);
END
$$;

-- The result of a one-row query, or the SQLSTATE it failed with.
CREATE FUNCTION sec_value_or_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    EXECUTE sql INTO v;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- How a job ended, in one line: "<state> after <attempts> attempt(s): <last_error>".
CREATE FUNCTION sec_outcome(p_job bigint) RETURNS text LANGUAGE sql AS $$
    SELECT j.state || ' after ' || coalesce(max(t.attempts), 0) || ' attempt(s): ' ||
           coalesce(j.last_error, '')
      FROM iterjob.job_progress j
      LEFT JOIN iterjob.task_progress t ON t.job_id = j.job_id
     WHERE j.job_id = p_job
     GROUP BY j.state, j.last_error
$$;

-- Escape probes may be rejected at enqueue or fail in the worker: both are
-- fine as long as nothing runs as someone else.  sec_try_enqueue records
-- either the job or the enqueue error; sec_probe_outcome reports which.
CREATE TABLE sec_probe (label text PRIMARY KEY, job_id bigint, enqueue_error text);
GRANT SELECT, INSERT ON sec_probe TO PUBLIC;

CREATE FUNCTION sec_try_enqueue(p_label text, p_relation regclass, p_action text,
                                p_filter text DEFAULT NULL, p_on_complete text DEFAULT NULL,
                                p_on_instance_complete text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    j bigint;
BEGIN
    BEGIN
        j := iterjob.enqueue(p_relation, p_action, filter => p_filter, on_complete => p_on_complete,
                             on_instance_complete => p_on_instance_complete);
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.sec_probe VALUES (p_label, NULL, SQLSTATE || ': ' || SQLERRM);
        RETURN NULL;
    END;
    INSERT INTO public.sec_probe VALUES (p_label, j, NULL);
    RETURN j;
END
$$;

CREATE FUNCTION sec_probe_outcome(p_label text) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN p.job_id IS NULL THEN 'rejected at enqueue: ' || p.enqueue_error
                ELSE sec_outcome(p.job_id) END
      FROM sec_probe p WHERE p.label = p_label
$$;

-- True as soon as job p_job has processed at least p_rows rows; false if it
-- ends or timeout passes first.  (Each statement of a plpgsql function sees
-- a fresh snapshot.)
CREATE FUNCTION sec_wait_rows(p_job bigint, p_rows bigint, timeout interval DEFAULT '30 s')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    r bigint;
    s text;
BEGIN
    LOOP
        SELECT rows_done, state INTO r, s FROM iterjob.job_progress WHERE job_id = p_job;
        IF r >= p_rows THEN
            RETURN true;
        END IF;
        IF s IN ('succeeded', 'failed', 'cancelled') OR clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- True as soon as no iterjob worker is connected anywhere in the cluster.
CREATE FUNCTION sec_no_workers(timeout interval) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        IF NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'iterjob worker') THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- Fixtures -----------------------------------------------------------------

-- Ten rows anybody granted may iterate.
CREATE TABLE sec_items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO sec_items (id) SELECT generate_series(1, 10);
GRANT SELECT ON sec_items TO sec_alice, sec_bob, sec_nologin;

-- What actions write: who ran them.
CREATE TABLE sec_audit (k int, who text, sess text);
GRANT SELECT, INSERT ON sec_audit TO sec_alice;

-- bob's table: alice has no privilege on it.
CREATE TABLE sec_bob_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO sec_bob_t (id) SELECT generate_series(1, 5);
ALTER TABLE sec_bob_t OWNER TO sec_bob;

-- Column privileges: alice may read id, not secret.
CREATE TABLE sec_cols (id int PRIMARY KEY, secret text);
INSERT INTO sec_cols VALUES (1, 's1'), (2, 's2');
GRANT SELECT (id) ON sec_cols TO sec_alice;

-- A table only the superuser may touch, for superuser-only effects.
CREATE TABLE sec_su_only (id int PRIMARY KEY);
INSERT INTO sec_su_only VALUES (1);

-- alice's own schema.
CREATE SCHEMA sec_alice_s AUTHORIZATION sec_alice;

-- A writer that needs privileges the caller must have: the planner-based
-- check at enqueue cannot see into it.
CREATE FUNCTION sec_write_bob(k int) RETURNS int LANGUAGE sql AS
    'INSERT INTO public.sec_bob_t (id, n) VALUES (k + 1000, 1) RETURNING id';

-- 1. PUBLIC and a role without iterjob_user get nothing ---------------------

SET ROLE sec_nobody;
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1')$$,
                 '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot call iterjob.enqueue');
SELECT throws_ok('SELECT * FROM iterjob.job_progress', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot read iterjob.job_progress');
SELECT throws_ok('SELECT * FROM iterjob.task_progress', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot read iterjob.task_progress');
SELECT throws_ok('SELECT * FROM iterjob.errors', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot read iterjob.errors');
SELECT throws_ok('SELECT * FROM iterjob.job', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot read iterjob.job');
SELECT throws_ok('SELECT iterjob.wait(1, ''1 s'')', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot call iterjob.wait');
SELECT throws_ok('SELECT iterjob.cancel(1)', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot call iterjob.cancel');
RESET ROLE;

SELECT ok(NOT has_schema_privilege('sec_nobody', 'iterjob', 'USAGE')
          AND NOT has_schema_privilege('public', 'iterjob', 'USAGE'),
          'PUBLIC has no USAGE on schema iterjob');

SELECT is((SELECT string_agg(p.proname, ',' ORDER BY p.proname)
             FROM pg_proc p, aclexplode(p.proacl) a
            WHERE p.pronamespace = 'iterjob'::regnamespace AND a.grantee = 0),
          'can_steer',
          'PUBLIC may execute only iterjob.can_steer (which the views call; it reveals nothing and schema USAGE is still needed)');

SELECT is((SELECT count(*)
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.relnamespace = 'iterjob'::regnamespace
              AND c.relkind IN ('r', 'S', 'p')
              AND a.grantee <> c.relowner),
          0::bigint,
          'nobody but their owner has any privilege on iterjob''s tables and sequences');

SELECT is((SELECT string_agg(DISTINCT pg_get_userbyid(a.grantee) || ':' || a.privilege_type, ',')
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.relnamespace = 'iterjob'::regnamespace AND c.relkind = 'v'
              AND a.grantee <> c.relowner),
          'iterjob_user:SELECT',
          'iterjob''s views grant only SELECT, only to iterjob_user');

SELECT is((SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), '')
             FROM pg_class c
            WHERE c.relnamespace = 'iterjob'::regnamespace AND c.relkind = 'v'
              AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)),
          '',
          'every iterjob view is a security_barrier view');
SELECT ok((SELECT count(*) FROM pg_class c
            WHERE c.relnamespace = 'iterjob'::regnamespace AND c.relkind = 'v'
              AND c.relname IN ('job_progress', 'task_progress', 'errors')) = 3,
          'the views job_progress, task_progress and errors exist');

SELECT is((SELECT count(*) FROM pg_proc p
            WHERE p.pronamespace = 'iterjob'::regnamespace
              AND p.prosecdef
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')),
          0::bigint,
          'no iterjob function is SECURITY DEFINER without a pinned search_path');

SELECT is((SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'iterjob'::regnamespace
              AND p.proname IN ('enqueue', 'enqueue_values', 'wait', 'pause', 'resume', 'cancel', 'retry')
              AND NOT p.prosecdef),
          'cancel,enqueue,enqueue_values,pause,resume,retry,wait',
          'enqueue, enqueue_values, wait, pause, resume, cancel and retry are SECURITY INVOKER: they run as the caller');

SELECT ok((SELECT NOT rolcanlogin FROM pg_roles WHERE rolname = 'iterjob_user')
          AND (SELECT NOT rolcanlogin FROM pg_roles WHERE rolname = 'iterjob_admin')
          AND pg_has_role('iterjob_admin', 'iterjob_user', 'MEMBER'),
          'iterjob_user and iterjob_admin are NOLOGIN; iterjob_admin is a member of iterjob_user');

-- 2. A job runs as its owner ------------------------------------------------

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_items',
       $$INSERT INTO public.sec_audit SELECT k, current_user, session_user FROM unnest($1) k$$,
       batch_size => 3) AS audit_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:audit_job, '60 s'), 'succeeded', 'alice''s audit job succeeds');
SELECT is((SELECT string_agg(DISTINCT who, ',') || ' x' || count(*) FROM sec_audit),
          'sec_alice x10',
          'every batch of alice''s job ran with current_user = sec_alice');
SELECT is((SELECT string_agg(DISTINCT sess, ',') FROM sec_audit),
          'sec_alice',
          'session_user in the worker is the owner too: the process is alice''s');
SELECT is((SELECT owner FROM iterjob.job_progress WHERE job_id = :audit_job), 'sec_alice',
          'job_progress names alice as the owner');

-- Row level security applies to the owner in the worker.
CREATE TABLE sec_rls (id int PRIMARY KEY, tenant name NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO sec_rls (id, tenant)
SELECT g, CASE WHEN g % 2 = 0 THEN 'sec_alice' ELSE 'sec_bob' END FROM generate_series(1, 10) g;
ALTER TABLE sec_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY sec_rls_tenant ON sec_rls USING (tenant = current_user);
GRANT SELECT, UPDATE ON sec_rls TO sec_alice;

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_rls', 'UPDATE sec_rls SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 2) AS rls_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:rls_job, '60 s'), 'succeeded', 'alice''s job on a table with row level security succeeds');
SELECT is((SELECT string_agg(tenant || '=' || n, ',' ORDER BY tenant)
             FROM (SELECT DISTINCT tenant, n FROM sec_rls) s),
          'sec_alice=1,sec_bob=0',
          'row level security held in the worker: only alice''s rows were updated');
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :rls_job), 5::bigint,
          'the keyset query saw only alice''s 5 rows');

-- 3. The action cannot escape its owner -----------------------------------

SET ROLE sec_alice;
SELECT sec_try_enqueue('reset role', 'sec_items', 'RESET ROLE') IS NULL AS x \gset
SELECT sec_try_enqueue('set role', 'sec_items', 'SET ROLE postgres') IS NULL AS x \gset
SELECT sec_try_enqueue('set session authorization', 'sec_items',
                       'SET SESSION AUTHORIZATION postgres') IS NULL AS x \gset
SELECT sec_try_enqueue('set_config role', 'sec_items',
       $$WITH s AS (SELECT set_config('role', 'postgres', false) AS r)
         INSERT INTO public.sec_audit SELECT k, current_user, 'escaped' FROM unnest($1) k, s$$) IS NULL AS x \gset
SELECT sec_try_enqueue('set_config session_authorization', 'sec_items',
       $$SELECT set_config('session_authorization', 'postgres', false) FROM unnest($1) LIMIT 1$$) IS NULL AS x \gset
SELECT sec_try_enqueue('do set role', 'sec_items',
       $q$DO $d$ BEGIN SET ROLE postgres; DELETE FROM public.sec_su_only; END $d$$q$) IS NULL AS x \gset
SELECT sec_try_enqueue('filter set_config role', 'sec_items',
       $$INSERT INTO public.sec_audit SELECT k, current_user, 'escaped' FROM unnest($1) k$$,
       $$set_config('role', 'postgres', false) IS NOT NULL$$) IS NULL AS x \gset
SELECT sec_try_enqueue('alter role superuser', 'sec_items', 'ALTER ROLE sec_alice SUPERUSER') IS NULL AS x \gset
SELECT sec_try_enqueue('grant iterjob_admin', 'sec_items', 'GRANT iterjob_admin TO sec_alice') IS NULL AS x \gset
SELECT sec_try_enqueue('copy to program', 'sec_items',
       $$COPY (SELECT 1) TO PROGRAM 'true'$$) IS NULL AS x \gset
SELECT sec_try_enqueue('drop superuser table', 'sec_items', 'DROP TABLE public.sec_su_only') IS NULL AS x \gset
RESET ROLE;

SELECT string_agg(iterjob.wait(job_id, '60 s'), ',') AS x FROM sec_probe WHERE job_id IS NOT NULL \gset

SELECT matches(sec_probe_outcome('reset role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'action RESET ROLE: rejected, or fails at once (42501) with a clear error');
SELECT matches(sec_probe_outcome('set role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'action SET ROLE postgres: rejected, or fails at once with a clear error');
SELECT matches(sec_probe_outcome('set session authorization'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "session_authorization" within security-definer function$)',
               'action SET SESSION AUTHORIZATION postgres: rejected, or fails at once with a clear error');
SELECT matches(sec_probe_outcome('set_config role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'action calling set_config(''role'', ''postgres'', false): fails at once with a clear error');
SELECT matches(sec_probe_outcome('set_config session_authorization'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "session_authorization" within security-definer function$)',
               'action calling set_config(''session_authorization'', ...): fails at once with a clear error');
SELECT matches(sec_probe_outcome('do set role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'SET ROLE inside a DO block in the action: fails at once with a clear error');
SELECT matches(sec_probe_outcome('filter set_config role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'a filter calling set_config(''role'', ...): fails at once with a clear error');
SELECT matches(sec_probe_outcome('alter role superuser'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): (must be superuser|permission denied to alter role))',
               'action ALTER ROLE sec_alice SUPERUSER: fails at once (runs as alice)');
SELECT matches(sec_probe_outcome('grant iterjob_admin'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): (must have admin option on role|permission denied to grant role))',
               'action GRANT iterjob_admin TO sec_alice: fails at once (runs as alice)');
SELECT matches(sec_probe_outcome('copy to program'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): (must be superuser or have privileges of the pg_execute_server_program role|permission denied to COPY to or from an external program))',
               'action COPY ... TO PROGRAM: fails at once (runs as alice)');
SELECT matches(sec_probe_outcome('drop superuser table'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): must be owner of table sec_su_only)',
               'action DROP TABLE of the superuser''s table: fails at once (runs as alice)');

SELECT is((SELECT count(*) FROM sec_audit WHERE sess = 'escaped'), 0::bigint,
          'no escape probe''s statement got to write anything');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_alice')
          AND NOT pg_has_role('sec_alice', 'iterjob_admin', 'MEMBER'),
          'alice is still no superuser and no member of iterjob_admin');
SELECT is((SELECT count(*) FROM sec_su_only), 1::bigint,
          'the superuser''s table still exists, with its row');
SELECT is((SELECT string_agg(DISTINCT e.sqlstate, ',')
             FROM iterjob.errors e JOIN sec_probe p ON p.job_id = e.job_id),
          '42501',
          'every failed escape attempt is logged in iterjob.errors as 42501');

-- 4. enqueue checks the caller's privileges -------------------------------

SELECT count(*) AS alice_jobs_before FROM iterjob.job_progress WHERE owner = 'sec_alice' \gset

SET ROLE sec_alice;
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'UPDATE sec_bob_t SET n = n + 1 WHERE id = ANY($1)')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: an action that updates a table alice cannot write fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'INSERT INTO sec_items SELECT k FROM unnest($1) k')$$,
                 '42501', 'permission denied for table sec_items',
                 'enqueue: an action that inserts where alice may only SELECT fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_bob_t', 'SELECT 1')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: a relation alice cannot SELECT fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1',
                       filter => 'id IN (SELECT c.id FROM sec_cols c WHERE c.secret IS NOT NULL)')$$,
                 '42501', 'permission denied for table sec_cols',
                 'enqueue: a filter reading a column alice has no privilege on fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'EXISTS (SELECT FROM sec_bob_t)')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: a filter reading a table alice cannot SELECT fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items',
                       'SELECT c.secret FROM sec_cols c WHERE c.id = ANY($1)')$$,
                 '42501', 'permission denied for table sec_cols',
                 'enqueue: an action reading a column alice has no privilege on fails with 42501');
RESET ROLE;

SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE owner = 'sec_alice'), :alice_jobs_before::bigint,
          'the refused enqueues left no job behind');

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_items', 'SELECT 1',
                       filter => 'id IN (SELECT c.id FROM sec_cols c)') AS colpriv_job \gset
-- sec_write_bob is SECURITY INVOKER: planning cannot see its INSERT.
SELECT iterjob.enqueue('sec_items', 'SELECT public.sec_write_bob(k) FROM unnest($1) k',
                       max_attempts => 5) AS hidden_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:colpriv_job, '60 s'), 'succeeded',
          'a filter reading only the column alice may read is accepted and the job succeeds');
SELECT is(iterjob.wait(:hidden_job, '60 s'), 'failed',
          'a write hidden in a SECURITY INVOKER function is checked in the worker: the job fails');
SELECT is(sec_outcome(:hidden_job), 'failed after 1 attempt(s): permission denied for table sec_bob_t',
          '... at once (42501), with permission denied for table sec_bob_t');
SELECT is((SELECT count(*) FROM sec_bob_t), 5::bigint, 'bob''s table is untouched');

-- 4b. The other user SQL: query sources, completion hooks, value lists -------

CREATE TABLE sec_vals (v text, who text);
GRANT SELECT, INSERT ON sec_vals TO sec_alice;

SET ROLE sec_alice;
SELECT throws_ok($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM sec_bob_t', key => 'id')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: a query source reading a table alice cannot SELECT fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id, secret FROM sec_cols', key => 'id')$$,
                 '42501', 'permission denied for table sec_cols',
                 'enqueue: a query source reading a column alice has no privilege on fails with 42501');
SELECT sec_throws_matching($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM sec_items) AS s, (SELECT 1 AS id', key => 'id')$$,
                 '^(42601|22023): ',
                 'a query source cannot break out of the parentheses around it');
SELECT throws_ok($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'SELECT id FROM sec_items; DROP TABLE sec_items', key => 'id')$$,
                 '22023', NULL,
                 'a query source with a second statement is rejected');
SELECT sec_throws_matching($$SELECT iterjob.enqueue(NULL, 'SELECT 1', query => 'WITH d AS (DELETE FROM sec_items RETURNING id) SELECT id FROM d', key => 'id')$$,
                 '^(0A000|22023|42501): ',
                 'a query source with a data-modifying WITH is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', on_complete => 'UPDATE sec_bob_t SET n = n + 1')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: an on_complete statement writing a table alice cannot write fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', on_instance_complete => 'DELETE FROM sec_bob_t WHERE id = $1')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'enqueue: an on_instance_complete statement writing a table alice cannot write fails with 42501');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', on_complete => 'SELECT 1; DROP TABLE sec_items')$$,
                 '22023', 'on_complete must be exactly one SQL statement',
                 'an on_complete with a second statement is rejected');
SELECT throws_ok($$SELECT * FROM iterjob.preview('sec_bob_t', 'SELECT 1')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'preview checks like enqueue: a relation alice cannot SELECT fails with 42501');
SELECT throws_ok($$SELECT * FROM iterjob.preview('sec_items', 'UPDATE sec_bob_t SET n = 0 WHERE id = ANY($1)')$$,
                 '42501', 'permission denied for table sec_bob_t',
                 'preview checks like enqueue: an action writing bob''s table fails with 42501');

-- A query source (ending in a line comment), with both hooks: all run as alice.
SELECT iterjob.enqueue(NULL,
       $$INSERT INTO public.sec_audit SELECT k, current_user, 'query' FROM unnest($1) k$$,
       query => 'SELECT id FROM public.sec_items WHERE id <= 4 --', key => 'id', instances => 2,
       on_complete => $$INSERT INTO public.sec_audit VALUES (0, current_user, 'on_complete')$$,
       on_instance_complete => $$INSERT INTO public.sec_audit VALUES ($1, current_user, 'on_instance_complete')$$)
    AS query_job \gset
-- Values are data: quotes and semicolons in them stay values.
SELECT iterjob.enqueue_values(ARRAY['it''s', 'a''); DROP TABLE sec_items; --', '$$x$$'],
       $$INSERT INTO public.sec_vals SELECT v, current_user FROM unnest($1) v$$) AS values_job \gset
SELECT sec_try_enqueue('on_complete set role', 'sec_items', 'SELECT 1',
                       p_on_complete => 'SET ROLE postgres') IS NULL AS x \gset
SELECT sec_try_enqueue('on_instance_complete reset role', 'sec_items', 'SELECT 1',
                       p_on_instance_complete => 'RESET ROLE') IS NULL AS x \gset
SELECT sec_try_enqueue('on_complete alter role', 'sec_items', 'SELECT 1',
                       p_on_complete => 'ALTER ROLE sec_alice SUPERUSER') IS NULL AS x \gset
RESET ROLE;

SELECT is(iterjob.wait(:query_job, '60 s'), 'succeeded', 'alice''s query-source job with hooks succeeds');
SELECT is((SELECT string_agg(sess || ':' || who || ' x' || c, ', ' ORDER BY sess)
             FROM (SELECT sess, who, count(*) AS c FROM sec_audit
                    WHERE sess IN ('query', 'on_complete', 'on_instance_complete') GROUP BY sess, who) s),
          'on_complete:sec_alice x1, on_instance_complete:sec_alice x2, query:sec_alice x4',
          'the query source''s batches, on_instance_complete and on_complete all ran as alice; the comment swallowed nothing');
SELECT is(iterjob.wait(:values_job, '60 s'), 'succeeded', 'alice''s enqueue_values job succeeds');
SELECT is((SELECT string_agg(v || ' by ' || who, ' | ' ORDER BY v) FROM sec_vals),
          $v$$$x$$ by sec_alice | a'); DROP TABLE sec_items; -- by sec_alice | it's by sec_alice$v$,
          'enqueue_values: values with quotes are iterated verbatim, as alice');
SELECT string_agg(iterjob.wait(job_id, '60 s'), ',') AS x FROM sec_probe WHERE job_id IS NOT NULL \gset
SELECT matches(sec_probe_outcome('on_complete set role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'on_complete SET ROLE postgres: rejected, or the job fails at once with a clear error');
SELECT matches(sec_probe_outcome('on_instance_complete reset role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): cannot set parameter "role" within security-definer function$)',
               'on_instance_complete RESET ROLE: rejected, or the job fails at once with a clear error');
SELECT matches(sec_probe_outcome('on_complete alter role'),
               '^(rejected at enqueue: |failed after 1 attempt\(s\): (must be superuser|permission denied to alter role))',
               'on_complete ALTER ROLE sec_alice SUPERUSER: fails (runs as alice)');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_alice'), 'alice is still no superuser');

-- 5. Privilege revoked / owner dropped / owner loses LOGIN mid-job ----------

-- Three slow jobs (one key per batch, 0.2 s per batch) run side by side.
CREATE TABLE sec_rev (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, who text);
CREATE TABLE sec_drop (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, who text);
CREATE TABLE sec_nl (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, who text);
INSERT INTO sec_rev (id) SELECT generate_series(1, 40);
INSERT INTO sec_drop (id) SELECT generate_series(1, 40);
INSERT INTO sec_nl (id) SELECT generate_series(1, 40);
GRANT SELECT, UPDATE ON sec_rev TO sec_alice;
GRANT SELECT, UPDATE ON sec_drop TO sec_carol;
GRANT SELECT, UPDATE ON sec_nl TO sec_dave;

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_rev',
       $$WITH s AS (SELECT pg_sleep(0.2)) UPDATE sec_rev SET n = n + 1, who = current_user FROM s WHERE sec_rev.id = ANY($1)$$,
       batch_size => 1) AS rev_job \gset
SET ROLE sec_carol;
SELECT iterjob.enqueue('sec_drop',
       $$WITH s AS (SELECT pg_sleep(0.2)) UPDATE sec_drop SET n = n + 1, who = current_user FROM s WHERE sec_drop.id = ANY($1)$$,
       batch_size => 1) AS drop_job \gset
SET ROLE sec_dave;
SELECT iterjob.enqueue('sec_nl',
       $$WITH s AS (SELECT pg_sleep(0.2)) UPDATE sec_nl SET n = n + 1, who = current_user FROM s WHERE sec_nl.id = ANY($1)$$,
       batch_size => 1) AS nl_job \gset
RESET ROLE;

SELECT ok(sec_wait_rows(:rev_job, 2), 'alice''s slow job has processed 2 rows');
REVOKE UPDATE ON sec_rev FROM sec_alice;
SELECT ok(sec_wait_rows(:drop_job, 2), 'carol''s slow job has processed 2 rows');
BEGIN;
DROP OWNED BY sec_carol;
DROP ROLE sec_carol;
COMMIT;
SELECT ok(sec_wait_rows(:nl_job, 2), 'dave''s slow job has processed 2 rows');
ALTER ROLE sec_dave NOLOGIN;

SELECT is(iterjob.wait(:rev_job, '60 s'), 'failed', 'UPDATE revoked mid-job: the job fails');
SELECT is(sec_outcome(:rev_job), 'failed after 1 attempt(s): permission denied for table sec_rev',
          '... at once (class 42 is not retried), with permission denied for table sec_rev');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) || ' processed once, ' ||
                  count(*) FILTER (WHERE n > 1) || ' more than once'
             FROM sec_rev),
          (SELECT rows_done || ' processed once, 0 more than once'
             FROM iterjob.job_progress WHERE job_id = :rev_job),
          'the rows processed before the revoke stay processed, once each, and match rows_done');
SELECT ok((SELECT rows_done BETWEEN 2 AND 39 FROM iterjob.job_progress WHERE job_id = :rev_job),
          'the revoke stopped the job part way');
SELECT is((SELECT string_agg(DISTINCT who, ',') FROM sec_rev WHERE n > 0), 'sec_alice',
          'every processed row was processed as alice');

SELECT is(iterjob.wait(:drop_job, '60 s'), 'failed', 'owner dropped mid-job: the job fails');
SELECT matches(sec_outcome(:drop_job),
               format('^failed after 1 attempt\(s\): role with OID \d+ that owns iterjob job %s does not exist$', :drop_job),
               '... at once, saying the owning role does not exist');
SELECT is((SELECT count(*) FILTER (WHERE n > 1) FROM sec_drop), 0::bigint,
          'no row of the dropped owner''s job was processed twice');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) FROM sec_drop),
          (SELECT rows_done FROM iterjob.job_progress WHERE job_id = :drop_job),
          'the rows processed before the drop match rows_done');
SELECT is((SELECT coalesce(string_agg(DISTINCT who, ','), '') FROM sec_drop WHERE n > 0), 'sec_carol',
          'every processed row was processed as carol: never as anyone else');

SELECT is(iterjob.wait(:nl_job, '60 s'), 'failed', 'owner loses LOGIN mid-job: the job fails');
SELECT is(sec_outcome(:nl_job),
          format('failed after 1 attempt(s): role "sec_dave" that owns iterjob job %s no longer has the LOGIN attribute', :nl_job),
          '... at once, saying the owner no longer has the LOGIN attribute');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FILTER (WHERE n > 1) FROM sec_nl),
          (SELECT rows_done || '/0' FROM iterjob.job_progress WHERE job_id = :nl_job),
          'the rows processed before ALTER ROLE ... NOLOGIN stay processed once');
SELECT is((SELECT string_agg(DISTINCT who, ',') FROM sec_nl WHERE n > 0), 'sec_dave',
          'every processed row was processed as dave');

-- 6. A NOLOGIN role cannot own jobs ----------------------------------------

SET ROLE sec_nologin;
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1')$$,
                 '42501', 'role "sec_nologin" cannot own iterjob jobs because it does not have the LOGIN attribute',
                 'a NOLOGIN role cannot enqueue: 42501, naming the LOGIN attribute');
RESET ROLE;
SET ROLE sec_alice;
SET ROLE iterjob_user;
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1')$$,
                 '42501', 'role "iterjob_user" cannot own iterjob jobs because it does not have the LOGIN attribute',
                 'after SET ROLE to the NOLOGIN group iterjob_user, enqueue is refused');
RESET ROLE;
SET ROLE sec_dave;
SELECT throws_ok($$SELECT iterjob.enqueue('sec_nl', 'SELECT 1')$$,
                 '42501', 'role "sec_dave" cannot own iterjob jobs because it does not have the LOGIN attribute',
                 'a role that lost LOGIN cannot enqueue any more');
RESET ROLE;

-- 7. Who sees and steers which jobs ---------------------------------------

CREATE TABLE sec_slow (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO sec_slow (id) SELECT generate_series(1, 20);
GRANT SELECT, UPDATE ON sec_slow TO sec_alice;
CREATE TABLE sec_flag (flag int NOT NULL);
INSERT INTO sec_flag VALUES (0);
GRANT SELECT ON sec_flag TO sec_alice;

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_slow',
       $$WITH s AS (SELECT pg_sleep(0.15)) UPDATE sec_slow SET n = n + 1 FROM s WHERE sec_slow.id = ANY($1)$$,
       batch_size => 1, name => 'sec_alice_marker') AS slow_job \gset
-- Fails (division by zero, not retried with max_attempts 1) until sec_flag is 1.
SELECT iterjob.enqueue('sec_items',
       $$INSERT INTO public.sec_audit SELECT k, current_user, 'retried' FROM unnest($1) k
          WHERE 1 / (SELECT flag FROM public.sec_flag) = 1$$,
       max_attempts => 1) AS retry_job \gset
RESET ROLE;
SET ROLE sec_bob;
SELECT iterjob.enqueue('sec_items', 'SELECT 1', name => 'sec_bob_job') AS bob_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:bob_job, '60 s'), 'succeeded', 'bob''s own job succeeds');
SELECT is(iterjob.wait(:retry_job, '60 s'), 'failed', 'alice''s division-by-zero job fails');
SELECT ok(sec_wait_rows(:slow_job, 2), 'alice''s slow job is running');

-- The workers view, while alice's job runs.
SET ROLE sec_bob;
SELECT is((SELECT count(*) FROM iterjob.workers WHERE job_id = :slow_job), 0::bigint,
          'bob does not see the worker on alice''s job in iterjob.workers');
SELECT matches(sec_value_or_error(format('SELECT count(*) FROM iterjob.worker_slots() WHERE job_id = %s', :slow_job)),
               '^(0|42501)$',
               'bob cannot see the worker on alice''s job through iterjob.worker_slots() either');
RESET ROLE;
SET ROLE sec_alice;
SELECT is((SELECT count(*) FROM iterjob.workers WHERE job_id = :slow_job), 1::bigint,
          'alice sees the worker on her job in iterjob.workers');
RESET ROLE;
SET ROLE sec_boss;
SELECT is((SELECT count(*) FROM iterjob.workers WHERE job_id = :slow_job), 1::bigint,
          'the admin sees the worker on alice''s job in iterjob.workers');
RESET ROLE;

-- bob sees nothing of alice's.
SET ROLE sec_bob;
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id = :slow_job), 0::bigint,
          'bob does not see alice''s job in job_progress');
SELECT is((SELECT count(*) FROM iterjob.task_progress WHERE job_id = :slow_job), 0::bigint,
          'bob does not see alice''s job in task_progress');
SELECT is((SELECT count(*) FROM iterjob.errors WHERE job_id = :retry_job), 0::bigint,
          'bob does not see alice''s errors in iterjob.errors');
SELECT is((SELECT string_agg(DISTINCT owner, ',') FROM iterjob.job_progress), 'sec_bob',
          'bob sees only his own jobs');
SELECT is((SELECT count(*) FROM iterjob.errors), 0::bigint,
          'bob sees no error at all (his job had none)');
RESET ROLE;

-- A non-leakproof function of bob's, cheaper than can_steer, must not see
-- rows the views filter out (security_barrier).
CREATE FUNCTION sec_peek(v text, pattern text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE COST 0.0000001 AS $$
BEGIN
    IF v LIKE pattern THEN
        RAISE EXCEPTION 'leaked: %', v;
    END IF;
    RETURN true;
END
$$;
SET ROLE sec_bob;
SELECT lives_ok($$SELECT count(*) FROM iterjob.job_progress WHERE sec_peek(name, 'sec_alice%')$$,
                'security_barrier: bob''s function never sees alice''s rows of job_progress');
SELECT lives_ok($$SELECT count(*) FROM iterjob.task_progress WHERE sec_peek(last_error, '%division by zero%')$$,
                'security_barrier: bob''s function never sees alice''s rows of task_progress');
SELECT lives_ok($$SELECT count(*) FROM iterjob.errors WHERE sec_peek(message, '%division by zero%')$$,
                'security_barrier: bob''s function never sees alice''s rows of errors');

-- bob cannot steer alice's job, whatever its state.
SELECT throws_ok(format('SELECT iterjob.pause(%s)', :slow_job), '42501',
                 format('permission denied to pause iterjob job %s', :slow_job),
                 'bob cannot pause alice''s job');
SELECT throws_ok(format('SELECT iterjob.resume(%s)', :slow_job), '42501',
                 format('permission denied to resume iterjob job %s', :slow_job),
                 'bob cannot resume alice''s job');
SELECT throws_ok(format('SELECT iterjob.cancel(%s)', :slow_job), '42501',
                 format('permission denied to cancel iterjob job %s', :slow_job),
                 'bob cannot cancel alice''s job');
SELECT throws_ok(format('SELECT iterjob.retry(%s)', :retry_job), '42501',
                 format('permission denied to retry iterjob job %s', :retry_job),
                 'bob cannot retry alice''s failed job');
SELECT throws_ok(format('SELECT iterjob.wait(%s, ''1 s'')', :slow_job), '42501',
                 format('permission denied to wait for iterjob job %s', :slow_job),
                 'bob cannot wait for alice''s job');
SELECT throws_ok(format('SELECT iterjob.recount(%s)', :rls_job), '42501',
                 format('permission denied to recount iterjob job %s', :rls_job),
                 'bob cannot recount alice''s job');
RESET ROLE;

-- alice sees hers, not bob's.
SET ROLE sec_alice;
SELECT is((SELECT name FROM iterjob.job_progress WHERE job_id = :slow_job), 'sec_alice_marker',
          'alice sees her job in job_progress');
SELECT is((SELECT count(*) FROM iterjob.task_progress WHERE job_id = :slow_job), 1::bigint,
          'alice sees her job''s instance in task_progress');
SELECT ok((SELECT count(*) FROM iterjob.errors WHERE job_id = :retry_job) >= 1,
          'alice sees her job''s errors');
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id = :bob_job), 0::bigint,
          'alice does not see bob''s job');
RESET ROLE;

-- A member of sec_alice has her privileges, so sees and may steer her jobs.
SET ROLE sec_lead;
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id = :slow_job), 1::bigint,
          'a member of sec_alice sees alice''s job');
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id = :bob_job), 0::bigint,
          '... but not bob''s');
RESET ROLE;

-- The admin sees everything and steers alice's job.
SET ROLE sec_boss;
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE job_id IN (:slow_job, :bob_job)), 2::bigint,
          'the admin sees alice''s and bob''s jobs');
SELECT is(iterjob.pause(:slow_job), 'paused', 'the admin pauses alice''s job');
RESET ROLE;
SELECT pg_sleep(0.5) AS slept \gset
SELECT rows_done AS paused_rows FROM iterjob.job_progress WHERE job_id = :slow_job \gset
SELECT pg_sleep(0.6) AS slept \gset
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :slow_job), :paused_rows::bigint,
          'the paused job makes no progress');
SELECT ok(:paused_rows < 20, 'the job was paused part way');
SET ROLE sec_bob;
SELECT throws_ok(format('SELECT iterjob.resume(%s)', :slow_job), '42501',
                 format('permission denied to resume iterjob job %s', :slow_job),
                 'bob cannot resume alice''s paused job');
SELECT throws_ok(format('SELECT iterjob.cancel(%s)', :slow_job), '42501',
                 format('permission denied to cancel iterjob job %s', :slow_job),
                 'bob cannot cancel alice''s paused job');
RESET ROLE;
SET ROLE sec_boss;
SELECT is(iterjob.resume(:slow_job), 'running', 'the admin resumes alice''s job');
SELECT is(iterjob.wait(:slow_job, '60 s'), 'succeeded', 'the admin may wait for alice''s job; it succeeds');
SELECT ok((SELECT count(*) FROM iterjob.errors WHERE job_id = :retry_job) >= 1,
          'the admin sees alice''s errors');
RESET ROLE;
SELECT is((SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FROM sec_slow), '20/20',
          'alice''s paused and resumed job processed every row exactly once');

-- recount runs the job's count as its owner, not as the caller: row level
-- security still shows only alice's 5 rows to the admin's recount.
SET ROLE sec_boss;
SELECT is(iterjob.recount(:rls_job), 5::bigint,
          'the admin''s recount of alice''s job counts as alice (row level security: 5 of 10 rows)');
RESET ROLE;
SELECT is(iterjob.recount(:rls_job), 5::bigint,
          'the superuser''s recount of alice''s job counts as alice too');

-- Counting every job: the admin and the superuser see them all.
SELECT count(*) AS all_jobs FROM iterjob.job \gset
SET ROLE sec_boss;
SELECT is((SELECT count(*) FROM iterjob.job_progress), :all_jobs::bigint,
          'the admin sees every job, of every owner (the dropped one''s too)');
RESET ROLE;
SELECT is((SELECT count(*) FROM iterjob.job_progress), :all_jobs::bigint,
          'the superuser sees every job');

-- The admin retries alice's failed job: it runs as alice, not as the admin.
UPDATE sec_flag SET flag = 1;
SET ROLE sec_boss;
SELECT is(iterjob.retry(:retry_job), 'running', 'the admin retries alice''s failed job');
SELECT is(iterjob.wait(:retry_job, '60 s'), 'succeeded', 'the retried job succeeds');
RESET ROLE;
SELECT is((SELECT string_agg(DISTINCT who, ',') || ' x' || count(*) FROM sec_audit WHERE sess = 'retried'),
          'sec_alice x10',
          'the retried job ran as its owner alice, not as the admin who retried it');

-- 8. Nobody but the extension owner writes iterjob's tables ---------------

SET ROLE sec_alice;
SELECT throws_ok($$INSERT INTO iterjob.job (relation, action, owner, search_path)
                   VALUES ('sec_items', 'DROP TABLE sec_items', 10, 'public')$$,
                 '42501', 'permission denied for table job',
                 'alice cannot insert a job owned by another role');
SELECT throws_ok(format($$UPDATE iterjob.task SET cursor = '{"instance": 0, "inner_cursor": 0}' WHERE job_id = %s$$, :slow_job),
                 '42501', 'permission denied for table task',
                 'alice cannot move a task''s cursor');
SELECT throws_ok(format($$UPDATE iterjob.job SET action = 'DROP TABLE sec_items' WHERE id = %s$$, :slow_job),
                 '42501', 'permission denied for table job',
                 'alice cannot rewrite her job''s action');
SELECT throws_ok(format($$UPDATE iterjob.job SET owner = 10 WHERE id = %s$$, :slow_job),
                 '42501', 'permission denied for table job',
                 'alice cannot hand her job to the superuser');
SELECT throws_ok('DELETE FROM iterjob.error_log', '42501', 'permission denied for table error_log',
                 'alice cannot delete error_log rows');
SELECT throws_ok('SELECT action FROM iterjob.job', '42501', 'permission denied for table job',
                 'alice cannot read iterjob.job directly (other roles'' actions and filters)');
SELECT throws_ok(format($$UPDATE iterjob.task_progress SET state = 'queued' WHERE job_id = %s$$, :slow_job),
                 NULL::char(5), NULL,
                 'alice cannot write through the task_progress view (it is not updatable, and she has only SELECT)');
RESET ROLE;
SET ROLE sec_boss;
SELECT throws_ok(format($$UPDATE iterjob.task SET state = 'queued' WHERE job_id = %s$$, :slow_job),
                 '42501', 'permission denied for table task',
                 'the admin cannot write iterjob.task either');
SELECT throws_ok(format($$UPDATE iterjob.job SET action = 'SELECT 1' WHERE id = %s$$, :slow_job),
                 '42501', 'permission denied for table job',
                 'the admin cannot write iterjob.job either');
SELECT throws_ok('TRUNCATE iterjob.error_log', '42501', 'permission denied for table error_log',
                 'the admin cannot truncate iterjob.error_log');
RESET ROLE;

-- 9. Injection through each text parameter ---------------------------------

SELECT count(*) AS alice_jobs_before FROM iterjob.job_progress WHERE owner = 'sec_alice' \gset
SET ROLE sec_alice;
SELECT sec_throws_matching($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'true); DROP TABLE sec_items; --')$$,
                 '^(42601|22023): ',
                 'filter "true); DROP TABLE ...; --" is rejected (it is no expression on its own)');
SELECT sec_throws_matching($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'true) OR (true')$$,
                 '^(42601|22023): ',
                 'filter "true) OR (true" cannot break out of the parentheses around it');
SELECT sec_throws_matching($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => E'true\n) OR (\ntrue')$$,
                 '^(42601|22023): ',
                 'filter breaking out across newlines is rejected too');
SELECT sec_throws_matching($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'true /*')$$,
                 '^(42601|22023): ',
                 'a filter opening a block comment is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => '1=1 UNION SELECT true')$$,
                 '22023', 'filter must be a single boolean expression',
                 'filter "1=1 UNION SELECT ..." is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'true; DROP TABLE sec_items')$$,
                 '22023', 'filter must be exactly one SQL statement',
                 'filter "true; DROP TABLE ..." is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'true FROM sec_bob_t')$$,
                 '22023', 'filter must be a single boolean expression',
                 'a filter with a FROM clause is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'UPDATE sec_items SET n = 1 WHERE id = ANY($1); DROP TABLE sec_items')$$,
                 '22023', 'action must be exactly one SQL statement',
                 'an action with a second statement is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'COMMIT')$$,
                 '22023', 'action must not control transactions',
                 'an action that controls transactions is rejected');
SELECT sec_throws_matching($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', key => 'id; DROP TABLE sec_items')$$,
                 '^(22023: invalid key|42703: column "id; DROP TABLE sec_items" of relation "sec_items" does not exist)',
                 'key "id; DROP TABLE ..." is rejected');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items', 'SELECT 1', key => '"id; DROP TABLE sec_items"')$$,
                 '42703', 'column "id; DROP TABLE sec_items" of relation "sec_items" does not exist',
                 'key "\"id; DROP TABLE ...\"" (a quoted identifier) is rejected: no such column');
SELECT throws_ok($$SELECT iterjob.enqueue('sec_items; DROP TABLE sec_items', 'SELECT 1')$$,
                 '42602', NULL,
                 'relation "sec_items; DROP TABLE ..." is no valid regclass');
RESET ROLE;
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE owner = 'sec_alice'), :alice_jobs_before::bigint,
          'the rejected injections left no job behind');

-- A trailing line comment in a filter cannot swallow what iterjob appends.
SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_items', 'SELECT 1', filter => 'id <= 3 --', instances => 2,
                       name => $n$x'); DROP TABLE sec_items; --"; \ $$ $n$) AS comment_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:comment_job, '60 s'), 'succeeded', 'a filter ending in a -- comment works');
SELECT is((SELECT rows_done FROM iterjob.job_progress WHERE job_id = :comment_job), 3::bigint,
          '... and filters exactly: the comment did not swallow the closing parenthesis');
SELECT is((SELECT name FROM iterjob.job_progress WHERE job_id = :comment_job),
          $n$x'); DROP TABLE sec_items; --"; \ $$ $n$,
          'a name with quotes and semicolons is stored verbatim');
SELECT is((SELECT count(*) FROM sec_items), 10::bigint, 'sec_items survived every injection attempt');

-- Identifiers that need quoting.
CREATE SCHEMA "sec odd; schema";
CREATE TABLE "sec odd; schema"."Odd Name; x" ("Key Col" int PRIMARY KEY, "n""q" int NOT NULL DEFAULT 0);
INSERT INTO "sec odd; schema"."Odd Name; x" ("Key Col") SELECT generate_series(1, 7);
GRANT USAGE ON SCHEMA "sec odd; schema" TO sec_alice;
GRANT SELECT, UPDATE ON "sec odd; schema"."Odd Name; x" TO sec_alice;
SET ROLE sec_alice;
SELECT iterjob.enqueue('"sec odd; schema"."Odd Name; x"',
       $$UPDATE "sec odd; schema"."Odd Name; x" SET "n""q" = "n""q" + 1 WHERE "Key Col" = ANY($1)$$,
       key => '"Key Col"', filter => '"Key Col" > 0', instances => 3, batch_size => 2) AS odd_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:odd_job, '60 s'), 'succeeded',
          'a table "Odd Name; x" in schema "sec odd; schema" with key "Key Col" works');
SELECT is((SELECT count(*) FILTER (WHERE "n""q" = 1) || '/' || count(*) FROM "sec odd; schema"."Odd Name; x"),
          '7/7', '... and processes every row exactly once');

-- 10. The worker uses the search_path captured at enqueue -------------------

GRANT CREATE ON SCHEMA public TO sec_bob;
SET ROLE sec_alice;
CREATE TABLE sec_alice_s.sp_target (k int, who text);
RESET ROLE;
BEGIN;
SET ROLE sec_alice;
SET LOCAL search_path = sec_alice_s, public;
SELECT iterjob.enqueue('public.sec_items', 'INSERT INTO sp_target SELECT k, current_user FROM unnest($1) k')
    AS sp_job \gset
RESET ROLE;
-- Before the job can run, bob plants a same-named table in public, where
-- alice's default path ("$user", public: she has no schema sec_alice) or a
-- path without sec_alice_s would find it.
SET ROLE sec_bob;
CREATE TABLE public.sp_target (k int, who text);
GRANT SELECT, INSERT ON public.sp_target TO PUBLIC;
RESET ROLE;
COMMIT;
SELECT is(iterjob.wait(:sp_job, '60 s'), 'succeeded', 'alice''s job with an unqualified table name succeeds');
SELECT is((SELECT search_path FROM iterjob.job WHERE id = :sp_job), 'sec_alice_s, public',
          'the job recorded alice''s search_path at enqueue');
SELECT is((SELECT count(*) FROM sec_alice_s.sp_target), 10::bigint,
          'the action wrote to sec_alice_s.sp_target, found through alice''s captured search_path');
SELECT is((SELECT count(*) FROM public.sp_target), 0::bigint,
          'bob''s later public.sp_target did not capture alice''s rows');

-- 11. User SQL run in someone else's session leaves no session state there --
--
-- iterjob.recount() runs a job's count query, with its filter, as the job's
-- owner, in a worker bound to the owner (owner_processes.sql checks what
-- the filter sees there).  alice's filter changes settings; the caller's
-- (here the superuser's) session must come out unchanged: a search_path
-- alice picks would make the superuser's later unqualified names resolve
-- to alice's objects.

SET ROLE sec_alice;
SELECT iterjob.enqueue('sec_items', 'SELECT 1',
       filter => $f$set_config('sec.planted', 'by sec_alice', false) IS NOT NULL
                    AND set_config('search_path', 'sec_alice_s, pg_catalog, public', false) IS NOT NULL$f$)
    AS planting_job \gset
RESET ROLE;
SELECT is(iterjob.wait(:planting_job, '60 s'), 'succeeded', 'alice''s job with a setting-changing filter succeeds');
SELECT current_setting('search_path') AS search_path_before \gset
SELECT is(iterjob.recount(:planting_job), 10::bigint, 'the superuser recounts alice''s job');
SELECT is(current_setting('search_path'), :'search_path_before',
          'recount: the search_path alice''s filter set does not stick to the caller''s session');
-- (a custom setting first created inside the owner section survives as an empty
-- placeholder: PostgreSQL cannot remove placeholders; its value must not survive)
SELECT is(coalesce(current_setting('sec.planted', true), ''), '',
          'recount: a setting alice''s filter made does not stick to the caller''s session');
-- Repair this session if it did.
SELECT set_config('search_path', :'search_path_before', false) AS x \gset
RESET sec.planted;

-- 12. Jobs of different owners sharing a worker share no session state -------
--
-- A worker runs task after task, of any owner.  With iterjob.max_workers = 1,
-- alice's job and then the superuser's two jobs run in one worker process.
-- alice's action plants a temporary table named like the superuser's table
-- (pg_temp is searched first for relations, whatever the search_path), with a
-- trigger that runs as whoever writes to it, and sets a session setting.

CREATE TABLE sec_victim (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO sec_victim (id) SELECT generate_series(1, 5);
CREATE TABLE sec_loot (who text, rolsuper boolean);
GRANT SELECT, INSERT ON sec_loot TO PUBLIC;
CREATE TABLE sec_worker_log (label text, pid int, leaked text);
GRANT SELECT, INSERT ON sec_worker_log TO PUBLIC;

SET ROLE sec_alice;
CREATE FUNCTION sec_alice_s.trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_loot
    SELECT current_user, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user;
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        BEGIN
            ALTER ROLE sec_alice SUPERUSER;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END IF;
    RETURN NULL;
END
$$;
CREATE TABLE sec_alice_s.plant_src (id int PRIMARY KEY);
INSERT INTO sec_alice_s.plant_src VALUES (1);
RESET ROLE;

SELECT ok(sec_no_workers('30 s'), 'before the shared-worker test, no iterjob worker runs');
SELECT current_setting('iterjob.max_workers') AS max_workers_before \gset
ALTER SYSTEM SET iterjob.max_workers = 1;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.5) AS slept \gset

BEGIN;
SET ROLE sec_alice;
-- (sec_try_enqueue: should enqueue ever refuse this action, nothing here
-- must stop the file before iterjob.max_workers is reset.)
SELECT sec_try_enqueue('plant', 'sec_alice_s.plant_src', $a$DO $d$
BEGIN
    INSERT INTO public.sec_worker_log VALUES ('alice', pg_backend_pid(), NULL);
    PERFORM set_config('sec.leak', 'planted by sec_alice', false);
    CREATE TEMP TABLE sec_victim (id int, n int);
    CREATE TRIGGER sec_trap BEFORE INSERT OR UPDATE OR DELETE ON sec_victim
        FOR EACH STATEMENT EXECUTE FUNCTION sec_alice_s.trap();
END
$d$$a$) IS NULL AS x \gset
RESET ROLE;
SELECT iterjob.enqueue('sec_victim', 'UPDATE sec_victim SET n = n + 1 WHERE id = ANY($1)') AS victim_job \gset
SELECT iterjob.enqueue('sec_victim',
       $$INSERT INTO public.sec_worker_log
         SELECT 'superuser', pg_backend_pid(), current_setting('sec.leak', true) FROM unnest($1) LIMIT 1$$)
    AS leak_job \gset
COMMIT;

SELECT string_agg(iterjob.wait(job_id, '60 s'), ',') AS x FROM sec_probe
 WHERE label = 'plant' AND job_id IS NOT NULL \gset
SELECT iterjob.wait(:victim_job, '60 s') AS victim_state \gset
SELECT iterjob.wait(:leak_job, '60 s') AS leak_state \gset

ALTER SYSTEM RESET iterjob.max_workers;
SELECT pg_reload_conf() AS reloaded \gset
SELECT pg_sleep(0.2) AS slept \gset

SELECT is(:'victim_state'::text, 'succeeded', 'the superuser''s job succeeds');
SELECT is(:'leak_state'::text, 'succeeded', 'the superuser''s second job succeeds');
SELECT is(current_setting('iterjob.max_workers'), :'max_workers_before',
          'iterjob.max_workers is back to its configured value');

SELECT diag('worker pids: ' || coalesce(string_agg(label || '=' || pid, ', ' ORDER BY label), 'none'))
  FROM sec_worker_log;
SELECT is((SELECT coalesce(string_agg(who || CASE WHEN rolsuper THEN ' (superuser)' ELSE '' END, ','), '')
             FROM sec_loot),
          '',
          'alice''s code never ran as another role (a temporary table she planted in the worker did not capture the superuser''s action)');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_alice'),
          'alice did not become superuser through a job that shared her worker');
SELECT is((SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FROM sec_victim), '5/5',
          'the superuser''s action updated its own table public.sec_victim, every row once');
SELECT is((SELECT coalesce(leaked, '') FROM sec_worker_log WHERE label = 'superuser'), '',
          'a setting alice''s action made (sec.leak) is not visible to the next owner''s job in the worker');

-- 13. purge deletes only the caller's jobs ----------------------------------

SELECT count(*) AS alice_jobs FROM iterjob.job_progress WHERE owner = 'sec_alice' \gset
SELECT count(*) AS bob_done FROM iterjob.job_progress
 WHERE owner = 'sec_bob' AND state IN ('succeeded', 'failed', 'cancelled') \gset
SET ROLE sec_bob;
SELECT is(iterjob.purge('0 s'), :bob_done::bigint, 'bob''s purge deletes his own finished jobs');
RESET ROLE;
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE owner = 'sec_alice'), :alice_jobs::bigint,
          '... and none of alice''s');
SET ROLE sec_nobody;
SELECT throws_ok('SELECT iterjob.purge(''0 s'')', '42501', 'permission denied for schema iterjob',
                 'a role without iterjob_user cannot purge');
RESET ROLE;

-- Clean up -----------------------------------------------------------------

-- Every job has ended; nothing runs as the roles any more.
SELECT is((SELECT count(*) FROM iterjob.job_progress WHERE state NOT IN ('succeeded', 'failed', 'cancelled')),
          0::bigint, 'every job of this file has ended');

DROP TABLE public.sp_target;
REVOKE CREATE ON SCHEMA public FROM sec_bob;
DROP OWNED BY sec_alice, sec_bob, sec_boss, sec_lead, sec_nobody, sec_nologin, sec_dave;
DROP ROLE sec_alice, sec_bob, sec_boss, sec_lead, sec_nobody, sec_nologin, sec_dave;

SELECT * FROM finish();
