/* iterjob--0.1.sql: jobs, their instances (tasks), the functions and views */

\echo Use "CREATE EXTENSION iterjob" to load this file. \quit

CREATE TABLE iterjob.job (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text,
    relation    regclass,
    query       text,
    key_columns text[] NOT NULL,
    key_types   regtype[] NOT NULL,
    filter      text,
    action      text NOT NULL,
    instances   integer NOT NULL CHECK (instances BETWEEN 1 AND 1024),
    batch_size  integer NOT NULL CHECK (batch_size BETWEEN 1 AND 1000000),
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    statement_timeout interval NOT NULL,
    lock_timeout interval NOT NULL,
    partition   text NOT NULL CHECK (partition IN ('modulo', 'range')),
    follow      boolean NOT NULL,
    upper_bound jsonb,
    on_complete text,
    on_instance_complete text,
    owner       oid NOT NULL,
    search_path text NOT NULL,
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    last_error  text,
    CHECK ((relation IS NULL) <> (query IS NULL))
);

CREATE TABLE iterjob.task (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES iterjob.job ON DELETE CASCADE,
    instance     integer NOT NULL,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    cursor       jsonb NOT NULL,
    range_start  jsonb,
    range_end    jsonb,
    range_empty  boolean NOT NULL DEFAULT false,
    rows_done    bigint NOT NULL DEFAULT 0,
    batches_done bigint NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    worker_pid   integer,
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz,
    UNIQUE (job_id, instance)
);

-- One row per failed batch attempt.
CREATE TABLE iterjob.error_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    job_id     bigint NOT NULL REFERENCES iterjob.job ON DELETE CASCADE,
    instance   integer NOT NULL,
    attempt    integer NOT NULL,
    cursor     jsonb NOT NULL,
    sqlstate   text NOT NULL,
    message    text NOT NULL,
    detail     text,
    hint       text,
    context    text
);
CREATE INDEX error_log_job_idx ON iterjob.error_log (job_id);

-- Claims look at runnable tasks only, however many finished ones pile up.
CREATE INDEX task_runnable_idx ON iterjob.task (id)
    WHERE state IN ('queued', 'running');

REVOKE ALL ON iterjob.job, iterjob.task, iterjob.error_log FROM PUBLIC;

CREATE FUNCTION iterjob.enqueue(
    relation   regclass,
    action     text,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'modulo',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

COMMENT ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text)
    IS 'create a job that runs action on every batch of keys of relation (or query), in instances parallel instances';

-- A list of values as a job's source: iterated like a one-column table.
CREATE FUNCTION iterjob.enqueue_values(
    "values"   anyarray,
    action     text,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'modulo',
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
-- no SET search_path: the job captures the caller's, for its action
AS $$
BEGIN
    IF "values" IS NULL THEN
        RAISE EXCEPTION 'values must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN iterjob.enqueue(
        relation => NULL,
        query => pg_catalog.format(
                     'SELECT DISTINCT value FROM pg_catalog.unnest(%L::%s) AS value WHERE value IS NOT NULL',
                     "values", pg_catalog.pg_typeof("values")),
        key => 'value', action => action, instances => instances,
        batch_size => batch_size, name => name, max_attempts => max_attempts,
        statement_timeout => statement_timeout, lock_timeout => lock_timeout,
        partition => partition, on_complete => on_complete,
        on_instance_complete => on_instance_complete);
END
$$;

COMMENT ON FUNCTION iterjob.enqueue_values(anyarray, text, integer, integer, text, integer, interval, interval, text, text, text)
    IS 'create a job that runs action on every batch of the distinct non-null values given';

-- A key value (cursor or bound) as text per column: a jsonb scalar for one
-- column, an array for several.
CREATE FUNCTION iterjob.key_texts(value jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE jsonb_typeof(value)
           WHEN 'null' THEN NULL
           WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(value))
           ELSE ARRAY[value #>> '{}'] END
$$;

CREATE FUNCTION iterjob.wait(job_id bigint, timeout interval DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_wait';

COMMENT ON FUNCTION iterjob.wait(bigint, interval)
    IS 'wait until the job is succeeded, failed or cancelled (or timeout passes) and return its state';

CREATE FUNCTION iterjob.pause(job_id bigint)
RETURNS text LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_pause';
COMMENT ON FUNCTION iterjob.pause(bigint)
    IS 'pause a queued or running job at its next batch boundary; returns the job state';

CREATE FUNCTION iterjob.resume(job_id bigint)
RETURNS text LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_resume';
COMMENT ON FUNCTION iterjob.resume(bigint)
    IS 'resume a paused job from its checkpoints; returns the job state';

CREATE FUNCTION iterjob.cancel(job_id bigint)
RETURNS text LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_cancel';
COMMENT ON FUNCTION iterjob.cancel(bigint)
    IS 'cancel a job for good at its next batch boundary; returns the job state';

CREATE FUNCTION iterjob.retry(job_id bigint)
RETURNS text LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_retry';
COMMENT ON FUNCTION iterjob.retry(bigint)
    IS 'requeue the failed instances of a failed job from their last checkpoints; returns the job state';

CREATE FUNCTION iterjob.preloaded()
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preloaded';

COMMENT ON FUNCTION iterjob.preloaded()
    IS 'true when iterjob is loaded through shared_preload_libraries, so jobs run';

CREATE FUNCTION iterjob.can_steer(owner oid)
RETURNS boolean
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'iterjob_can_steer';

COMMENT ON FUNCTION iterjob.can_steer(oid)
    IS 'true when the current user may see and steer jobs owned by owner: the owner itself (or a member of it), iterjob_admin members, superusers';

-- The views run as their owner, so they filter rows themselves; security_barrier keeps
-- a caller's own functions from seeing rows before that filter.
CREATE VIEW iterjob.task_progress WITH (security_barrier) AS
SELECT t.job_id,
       t.instance,
       t.state,
       t.cursor,
       t.range_start,
       t.range_end,
       t.rows_done,
       t.batches_done,
       t.attempts,
       t.last_error,
       CASE WHEN t.state = 'running' THEN t.worker_pid END AS worker_pid,
       t.started_at,
       t.finished_at,
       t.updated_at
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
 WHERE iterjob.can_steer(j.owner);

CREATE VIEW iterjob.job_progress WITH (security_barrier) AS
SELECT j.id AS job_id,
       j.name,
       j.relation,
       j.state,
       j.instances,
       count(t.job_id) FILTER (WHERE t.state IN ('succeeded', 'failed', 'cancelled'))::integer
           AS instances_done,
       coalesce(sum(t.rows_done), 0)::bigint AS rows_done,
       coalesce(sum(t.batches_done), 0)::bigint AS batches_done,
       j.batch_size,
       array_to_string(j.key_columns, ', ') AS key_column,
       j.partition,
       j.max_attempts,
       pg_get_userbyid(j.owner) AS owner,
       j.created_at,
       j.started_at,
       j.finished_at,
       j.last_error
  FROM iterjob.job j
  LEFT JOIN iterjob.task t ON t.job_id = j.id
 WHERE iterjob.can_steer(j.owner)
 GROUP BY j.id;

CREATE VIEW iterjob.errors WITH (security_barrier) AS
SELECT e.logged_at,
       e.job_id,
       e.instance,
       e.attempt,
       e.cursor,
       e.sqlstate,
       e.message,
       e.detail,
       e.hint,
       e.context
  FROM iterjob.error_log e
  JOIN iterjob.job j ON j.id = e.job_id
 WHERE iterjob.can_steer(j.owner);

-- Nothing for PUBLIC.  iterjob_user may use iterjob (GRANT iterjob_user TO alice);
-- iterjob_admin also sees and steers every role's jobs.  Roles are cluster-wide:
-- they are created once and outlive DROP EXTENSION.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iterjob_user') THEN
        CREATE ROLE iterjob_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iterjob_admin') THEN
        CREATE ROLE iterjob_admin NOLOGIN;
    END IF;
    IF NOT pg_has_role('iterjob_admin', 'iterjob_user', 'MEMBER') THEN
        GRANT iterjob_user TO iterjob_admin;
    END IF;
END
$$;

REVOKE ALL ON iterjob.task_progress, iterjob.job_progress, iterjob.errors FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA iterjob FROM PUBLIC;
REVOKE ALL ON SCHEMA iterjob FROM PUBLIC;
GRANT USAGE ON SCHEMA iterjob TO iterjob_user;
GRANT SELECT ON iterjob.task_progress, iterjob.job_progress, iterjob.errors TO iterjob_user;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA iterjob TO iterjob_user;
-- the views call it for every role that reads them
GRANT EXECUTE ON FUNCTION iterjob.can_steer(oid) TO PUBLIC;

DO $$
BEGIN
    IF NOT iterjob.preloaded() THEN
        RAISE WARNING 'iterjob is not loaded through shared_preload_libraries: jobs will not run'
            USING HINT = 'Add iterjob to shared_preload_libraries in postgresql.conf and restart the server.';
    END IF;
END
$$;
