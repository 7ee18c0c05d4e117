/* iterjob--0.12.sql: jobs, their instances (tasks), the functions and views.
 * Must define exactly what iterjob--0.1.sql followed by the upgrade scripts does
 * (the upgrade test compares the two): the same columns in the same order,
 * constraints, indexes, definitions and privileges. */

\echo Use "CREATE EXTENSION iterjob" to load this file. \quit

-- CREATE EXTENSION takes a schema named iterjob that exists already, and
-- roles iterjob_user and iterjob_admin that exist already.  Refuse those
-- that give someone more than iterjob would: the owner of a schema, or a
-- role that may create objects in it, could drop iterjob's tables from
-- under it and put its own in their place, which the workers would trust;
-- a role that can log in, has attributes or memberships of its own, or
-- that someone may hand out, gives its members more than iterjob's
-- privileges.  The schema DROP EXTENSION leaves, and the roles iterjob
-- created in another database (cluster-wide; they may have members), pass.
DO $$
DECLARE
    nsp oid;
    who text;
    why text;
    r record;
BEGIN
    SELECT n.oid INTO nsp FROM pg_catalog.pg_namespace n
     WHERE n.nspname OPERATOR(pg_catalog.=) 'iterjob';
    SELECT pg_catalog.format('it is owned by role "%s", which is not a superuser', a.rolname) INTO why
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE n.oid OPERATOR(pg_catalog.=) nsp AND NOT a.rolsuper;
    IF why IS NULL THEN
        SELECT pg_catalog.format('%s may create objects in it',
                   CASE WHEN x.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                        ELSE pg_catalog.format('role "%s"', pg_catalog.pg_get_userbyid(x.grantee)) END) INTO why
          FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
         WHERE n.oid OPERATOR(pg_catalog.=) nsp AND x.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
           AND NOT COALESCE((SELECT a.rolsuper FROM pg_catalog.pg_roles a
                              WHERE a.oid OPERATOR(pg_catalog.=) x.grantee), false)
         LIMIT 1;
    END IF;
    IF why IS NULL THEN
        SELECT pg_catalog.format('it holds objects owned by role "%s", which is not a superuser', a.rolname) INTO why
          FROM (SELECT relowner AS owner FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT typowner FROM pg_catalog.pg_type WHERE typnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT oprowner FROM pg_catalog.pg_operator WHERE oprnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT opcowner FROM pg_catalog.pg_opclass WHERE opcnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT opfowner FROM pg_catalog.pg_opfamily WHERE opfnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT collowner FROM pg_catalog.pg_collation WHERE collnamespace OPERATOR(pg_catalog.=) nsp
                UNION ALL SELECT conowner FROM pg_catalog.pg_conversion WHERE connamespace OPERATOR(pg_catalog.=) nsp) o
          JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) o.owner
         WHERE NOT a.rolsuper
         LIMIT 1;
    END IF;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'schema "iterjob" already exists, and %', why
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'iterjob''s tables and functions must be in a schema only superusers control.',
                  HINT = 'Drop or rename that schema, or make it a superuser''s alone, then run CREATE EXTENSION iterjob again.';
    END IF;

    FOR r IN SELECT a.* FROM pg_catalog.pg_roles a
              WHERE a.rolname OPERATOR(pg_catalog.=) ANY ('{iterjob_user,iterjob_admin}'::pg_catalog.name[])
              ORDER BY a.rolname DESC
    LOOP
        why := NULL;
        IF r.rolcanlogin THEN
            why := 'it can log in';
        ELSIF r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls THEN
            why := 'it has the SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS attribute';
        ELSE
            SELECT pg_catalog.format('it is a member of role "%s"', pg_catalog.pg_get_userbyid(m.roleid)) INTO why
              FROM pg_catalog.pg_auth_members m
             WHERE m.member OPERATOR(pg_catalog.=) r.oid
               AND NOT (r.rolname OPERATOR(pg_catalog.=) 'iterjob_admin'
                        AND m.roleid OPERATOR(pg_catalog.=) (SELECT u.oid FROM pg_catalog.pg_roles u
                                                              WHERE u.rolname OPERATOR(pg_catalog.=) 'iterjob_user'))
             LIMIT 1;
        END IF;
        IF why IS NULL AND r.rolname OPERATOR(pg_catalog.=) 'iterjob_admin' THEN
            SELECT pg_catalog.format('role "%s", which is not a superuser, may grant it (ADMIN OPTION)',
                                     a.rolname) INTO why
              FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) m.member
             WHERE m.roleid OPERATOR(pg_catalog.=) r.oid AND m.admin_option AND NOT a.rolsuper
             LIMIT 1;
        END IF;
        IF why IS NOT NULL THEN
            RAISE EXCEPTION 'role "%" already exists, and %', r.rolname, why
                USING ERRCODE = 'duplicate_object',
                      DETAIL = 'iterjob creates it NOLOGIN, without attributes or memberships of its own; its members get iterjob''s privileges and must get nothing more.',
                      HINT = 'Drop the role, or bring it to that state (ALTER ROLE, REVOKE), then run CREATE EXTENSION iterjob again.';
        END IF;
    END LOOP;
END
$$;

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
    -- 'shard' (a hash-distributed Citus table): instances iterate whole
    -- shards, each batch's keys read on the shard's node
    partition   text NOT NULL CHECK (partition IN ('modulo', 'range', 'shard')),
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
    -- the planner's estimate at enqueue, or an exact count by iterjob.recount()
    rows_total  bigint,
    batch_pause interval NOT NULL DEFAULT '0',
    max_rows_per_second integer CHECK (max_rows_per_second > 0),
    target_batch_time interval,
    -- the key's order: per column, the btree operator class and collation of
    -- the unique index iterated (the type's default class for a query), and
    -- whether it is walked descending and where that index order puts NULLs
    key_opclasses oid[],
    key_collations oid[],
    key_descending boolean[],
    key_nulls_first boolean[],
    CHECK ((relation IS NULL) <> (query IS NULL)),
    -- the failure-ratio stop: the job fails when more than max_failure_ratio
    -- of its last failure_window batch attempts failed (NULL or 0: off)
    max_failure_ratio double precision CHECK (max_failure_ratio BETWEEN 0 AND 1),
    failure_window integer CHECK (failure_window >= 0),
    -- iterjob.retry() starts the window afresh: failures before it do not count
    failures_counted_from timestamptz,
    -- the jobs this one runs after: it stays queued until every one of them
    -- succeeded, and fails when one of them fails or is cancelled
    after       bigint[],
    -- the job's own health check: an expression run as the owner at each
    -- batch boundary; a non-null text (or true) holds the job
    health_check text,
    -- the most WAL the job writes per second, in bytes, shared equally by its
    -- instances (NULL: no limit of its own)
    max_wal_per_second bigint CHECK (max_wal_per_second > 0)
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
    rows_total   bigint,
    -- a moving average kept by each checkpoint
    rows_per_second double precision,
    -- why a running instance holds at a batch boundary (the health gate)
    held_reason  text,
    -- partition => 'shard': the shards an instance iterates, in order (its
    -- cursor says which one it is on), and the rows done in each
    shards       bigint[],
    shard_rows   jsonb,
    -- why a running instance holds, without the figures held_reason has that
    -- come from statistics only pg_read_all_stats may read ("a standby is
    -- behind"); written with held_reason, read only while held_reason is set
    held_summary text,
    -- A batch cancelled because a session (an application's) waited for one of
    -- its locks longer than iterjob.max_foreground_wait: how many, the latest
    -- when, and for whom.
    foreground_cancels bigint NOT NULL DEFAULT 0,
    slowed_at    timestamptz,
    slowed_reason text,
    -- the WAL the task's workers wrote for it, counted at each checkpoint
    -- (batches run on a Citus node's shard write theirs there: not counted)
    wal_bytes    bigint NOT NULL DEFAULT 0,
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
    context    text,
    -- the job's committed batches when the attempt failed (the failure-ratio
    -- window counts the attempts between failures with it); NULL before 0.5
    job_batches bigint
);
CREATE INDEX error_log_job_idx ON iterjob.error_log (job_id);

-- On every node: the cursor of each shard that a job iterates there, one
-- row per job, shard and owner (the role the coordinator's worker connects
-- as; the row of one role is out of reach of the others).  job_stamp is the
-- job's enqueue time in microseconds: a row with another stamp belongs to
-- an earlier job of that id (the extension dropped and created again on the
-- coordinator) and starts over.
CREATE TABLE iterjob.node_cursor (
    job_id     bigint NOT NULL,
    shard_id   bigint NOT NULL,
    owner      oid NOT NULL,
    job_stamp  bigint NOT NULL,
    cursor     text,
    batches    bigint NOT NULL DEFAULT 0,
    rows_done  bigint NOT NULL DEFAULT 0,
    done       boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (job_id, shard_id, owner)
);

COMMENT ON TABLE iterjob.node_cursor
    IS 'on a node of a Citus cluster: the cursor of each shard a job iterates there, moved by each batch in its transaction';

-- Claims look at runnable tasks only, however many finished ones pile up.
CREATE INDEX task_runnable_idx ON iterjob.task (id)
    WHERE state IN ('queued', 'running');

-- retention purges look at finished jobs by age
CREATE INDEX job_finished_idx ON iterjob.job (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- the jobs that wait for a job that ends
CREATE INDEX job_after_idx ON iterjob.job USING gin (after) WHERE after IS NOT NULL;

-- a job's runnable tasks, by job (a claim looks at one job's tasks: through
-- task_runnable_idx, on the task id, the planner scanned every runnable
-- task of every job while the statistics were those of an empty queue)
CREATE INDEX task_runnable_job_idx ON iterjob.task (job_id, instance)
    WHERE state IN ('queued', 'running');

-- the active jobs by owner: a claim reads each owner's first job that no
-- worker is on, through a skip scan over the owners, not every active job;
-- with the jobs each waits for, so that the scan reads the index only.
-- Only the claim's statements say "owner <> 0" (every job has an owner):
-- other statements on active jobs keep to the primary key whatever the
-- statistics say.
CREATE INDEX job_active_owner_idx ON iterjob.job (owner, id) INCLUDE (after)
    WHERE state IN ('queued', 'running') AND owner OPERATOR(pg_catalog.<>) 0::pg_catalog.oid;

REVOKE ALL ON iterjob.job, iterjob.task, iterjob.error_log, iterjob.node_cursor FROM PUBLIC;

-- partition 'auto' (the default): 'shard' for a hash-distributed Citus
-- table, 'modulo' otherwise
CREATE FUNCTION iterjob.enqueue(
    relation   regclass DEFAULT NULL,
    action     text DEFAULT NULL,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'auto',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    max_failure_ratio double precision DEFAULT 0.5,
    failure_window integer DEFAULT 50,
    after      bigint[] DEFAULT NULL,
    health_check text DEFAULT NULL,
    max_wal_per_second text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

COMMENT ON FUNCTION iterjob.enqueue(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, double precision, integer, bigint[], text, text)
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
CREATE FUNCTION iterjob.percent(state text, rows_done bigint, rows_total bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN state = 'succeeded' THEN 100.0
                WHEN coalesce(rows_total, 0) <= 0 THEN 0.0
                -- floor, not round: 99.99% is not done
                ELSE least(100.0, round(floor(1000.0 * rows_done / rows_total) / 10, 1)) END
$$;

CREATE FUNCTION iterjob.progress_bar(percent numeric)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '[' || repeat('#', floor(percent / 5)::integer)
               || repeat('-', 20 - floor(percent / 5)::integer) || '] '
               || floor(percent)::text || '%'
$$;

CREATE FUNCTION iterjob.eta(state text, rows_done bigint, rows_total bigint,
                            rows_per_second double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN state = 'running' AND rows_per_second > 0
                THEN make_interval(secs => greatest(coalesce(rows_total, 0) - rows_done, 0)
                                           / rows_per_second) END
$$;

-- node:port of the shard's placement, or NULL (no such shard, no Citus)
CREATE FUNCTION iterjob.shard_node(shard bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog
AS $$
DECLARE
    node text;
BEGIN
    IF shard IS NULL OR to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT n.nodename || '':'' || n.nodeport
               FROM pg_catalog.pg_dist_placement p
               JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
              WHERE p.shardid = $1 LIMIT 1'
       INTO node USING shard;
    RETURN node;
END
$$;

COMMENT ON FUNCTION iterjob.shard_node(bigint)
    IS 'node:port of the Citus node that holds the shard, or NULL';

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
       a.pid AS worker_pid,
       t.started_at,
       t.finished_at,
       t.updated_at,
       t.rows_total,
       iterjob.percent(t.state, t.rows_done, t.rows_total) AS percent,
       CASE WHEN t.state = 'running' THEN round(t.rows_per_second::numeric, 1) END
           AS rows_per_second,
       iterjob.eta(t.state, t.rows_done, t.rows_total, t.rows_per_second) AS eta,
       coalesce(t.finished_at, clock_timestamp()) - t.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(t.state, t.rows_done, t.rows_total)) AS bar,
       -- the figures of the statistics views, for those who may read them
       CASE WHEN t.held_reason IS NULL THEN NULL
            WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN t.held_reason
            ELSE coalesce(t.held_summary, 'held') END AS held_reason,
       (t.cursor ->> 'shard')::bigint AS shard_id,
       iterjob.shard_node((t.cursor ->> 'shard')::bigint) AS shard_node,
       t.foreground_cancels,
       t.slowed_at,
       t.slowed_reason,
       t.wal_bytes
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
  LEFT JOIN pg_stat_activity a
         ON t.state = 'running' AND a.pid = t.worker_pid
        AND a.backend_type = 'iterjob worker'
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
       j.last_error,
       j.rows_total,
       iterjob.percent(j.state, coalesce(sum(t.rows_done), 0)::bigint, j.rows_total) AS percent,
       CASE WHEN j.state = 'running'
            THEN round(coalesce(sum(t.rows_per_second) FILTER (WHERE t.state = 'running'), 0)::numeric, 1)
       END AS rows_per_second,
       iterjob.eta(j.state, coalesce(sum(t.rows_done), 0)::bigint, j.rows_total,
                   sum(t.rows_per_second) FILTER (WHERE t.state = 'running')) AS eta,
       coalesce(j.finished_at, clock_timestamp()) - j.started_at AS elapsed,
       iterjob.progress_bar(iterjob.percent(j.state, coalesce(sum(t.rows_done), 0)::bigint,
                                            j.rows_total)) AS bar,
       -- the figures of the statistics views, for those who may read them
       string_agg(DISTINCT CASE WHEN t.held_reason IS NULL THEN NULL
                                WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN t.held_reason
                                ELSE coalesce(t.held_summary, 'held') END, '; ')
           FILTER (WHERE t.state = 'running') AS held,
       j.batch_pause,
       j.max_rows_per_second,
       j.target_batch_time,
       j.max_failure_ratio,
       j.failure_window,
       j.after,
       -- the jobs of after that have not succeeded yet
       CASE WHEN j.state = 'queued' AND j.after IS NOT NULL
            THEN ARRAY(SELECT p.id FROM iterjob.job p
                        WHERE p.id = ANY (j.after) AND p.state <> 'succeeded' ORDER BY p.id)
       END AS waiting_for,
       j.health_check,
       coalesce(sum(t.foreground_cancels), 0)::bigint AS foreground_cancels,
       max(t.slowed_at) AS slowed_at,
       (array_agg(t.slowed_reason ORDER BY t.slowed_at DESC NULLS LAST))[1] AS slowed_reason,
       coalesce(sum(t.wal_bytes), 0)::bigint AS wal_bytes,
       j.max_wal_per_second
  FROM iterjob.job j
  LEFT JOIN iterjob.task t ON t.job_id = j.id
 WHERE iterjob.can_steer(j.owner)
 GROUP BY j.id;

-- One row per shard of each job with partition 'shard'.
CREATE VIEW iterjob.shard_progress WITH (security_barrier) AS
SELECT t.job_id,
       t.instance,
       s.shard_id,
       iterjob.shard_node(s.shard_id) AS node,
       CASE WHEN t.state = 'succeeded' OR s.position < c.position THEN 'done'
            WHEN s.position = c.position THEN t.state
            ELSE 'waiting' END AS state,
       CASE WHEN s.position = c.position AND t.state <> 'succeeded'
            THEN t.cursor -> 'inner_cursor' END AS cursor,
       coalesce((t.shard_rows ->> s.shard_id::text)::bigint, 0) AS rows_done,
       CASE WHEN s.position = c.position AND t.state = 'running'
            THEN round(t.rows_per_second::numeric, 1) END AS rows_per_second
  FROM iterjob.task t
  JOIN iterjob.job j ON j.id = t.job_id
 CROSS JOIN LATERAL unnest(t.shards) WITH ORDINALITY AS s(shard_id, position)
 CROSS JOIN LATERAL (SELECT coalesce(array_position(t.shards, (t.cursor ->> 'shard')::bigint), 1)
                            AS position) AS c
 WHERE iterjob.can_steer(j.owner);

COMMENT ON VIEW iterjob.shard_progress
    IS 'per shard of each job with partition ''shard'': its node, state, cursor, rows done and rate';

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

CREATE FUNCTION iterjob.worker_slots(
    OUT pid integer, OUT datid oid, OUT job_id bigint, OUT instance integer,
    OUT batches bigint, OUT since timestamptz, OUT phase text)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_worker_slots';

-- Superusers and iterjob_admin members see every worker of the cluster; others
-- the workers on their own jobs in this database.
CREATE VIEW iterjob.workers WITH (security_barrier) AS
SELECT w.pid,
       d.datname AS database,
       w.job_id,
       w.instance,
       w.batches + 1 AS batch,
       w.since,
       w.phase,
       a.backend_start,
       a.wait_event_type,
       a.wait_event,
       a.application_name
  FROM iterjob.worker_slots() w
  LEFT JOIN pg_database d ON d.oid = w.datid
  LEFT JOIN pg_stat_activity a ON a.pid = w.pid
 WHERE iterjob.can_steer(0)
    OR (d.datname = current_database()
        AND EXISTS (SELECT FROM iterjob.job j
                     WHERE j.id = w.job_id AND iterjob.can_steer(j.owner)));


CREATE FUNCTION iterjob.wait(job_id bigint, timeout interval DEFAULT NULL,
                             progress boolean DEFAULT false)
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_wait';

COMMENT ON FUNCTION iterjob.wait(bigint, interval, boolean)
    IS 'wait until the job is succeeded, failed or cancelled (or timeout passes) and return its state; progress => true prints a NOTICE every few seconds';

CREATE FUNCTION iterjob.preview(
    relation   regclass DEFAULT NULL,
    action     text DEFAULT NULL,
    instances  integer DEFAULT 1,
    batch_size integer DEFAULT 1000,
    key        text DEFAULT NULL,
    filter     text DEFAULT NULL,
    name       text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    statement_timeout interval DEFAULT '10min',
    lock_timeout interval DEFAULT '5s',
    partition  text DEFAULT 'auto',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    sample_batches integer DEFAULT 0)
RETURNS TABLE (instance integer, keyset_query text, action text, plan text,
               estimated_rows bigint, estimated_batches bigint,
               next_keyset_query text, next_plan text,
               sampled_batches integer, sampled_rows bigint, sampled_time interval,
               estimated_duration interval, touched jsonb)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preview';

COMMENT ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval, integer)
    IS 'check a job as enqueue would and show, per instance, its first and next keyset queries, their plans and estimates, and with sample_batches its first batches run and rolled back, timed, with an estimated duration; leaves nothing behind';

CREATE FUNCTION iterjob.recount(job_id bigint)
RETURNS bigint
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'iterjob_recount';

COMMENT ON FUNCTION iterjob.recount(bigint)
    IS 'count exactly the rows each instance of the job iterates, store them as rows_total, and return the total';

CREATE FUNCTION iterjob.purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_purge';

COMMENT ON FUNCTION iterjob.purge(interval)
    IS 'delete your finished jobs (all, for iterjob_admin) older than older_than (default iterjob.retention); returns how many';

CREATE FUNCTION iterjob.wake_workers()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_wake_workers';

COMMENT ON FUNCTION iterjob.wake_workers()
    IS 'have iterjob look for runnable jobs in this database when the transaction commits';

CREATE FUNCTION iterjob.set(
    job_id     bigint,
    batch_size integer DEFAULT NULL,
    batch_pause interval DEFAULT NULL,
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL,
    max_failure_ratio double precision DEFAULT NULL,
    failure_window integer DEFAULT NULL,
    max_wal_per_second text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_set';

COMMENT ON FUNCTION iterjob.set(bigint, integer, interval, integer, interval, double precision, integer, text)
    IS 'change a job''s pacing or failure-ratio stop while it runs (NULL: unchanged, 0: no limit); workers apply it at their next batch';

CREATE FUNCTION iterjob.node_batch(job_id bigint, job_stamp bigint, shard_id bigint,
                                   first_query text, next_query text, action text,
                                   key_type regtype, batch_size integer, durable boolean,
                                   start_after text,
                                   OUT rows_done bigint, OUT cursor text, OUT done boolean,
                                   OUT shard_rows bigint)
    RETURNS record
    AS 'MODULE_PATHNAME', 'iterjob_node_batch'
    LANGUAGE C VOLATILE;

COMMENT ON FUNCTION iterjob.node_batch(bigint, bigint, bigint, text, text, text, regtype, integer, boolean, text)
    IS 'one batch of a shard on its node: the next keys after the shard''s cursor, the action on them, the cursor moved past them, in the caller''s transaction (called by iterjob''s workers)';

CREATE FUNCTION iterjob.node_cursor_of(job_id bigint, job_stamp bigint, shard_id bigint,
                                       OUT found boolean, OUT cursor text, OUT done boolean)
    RETURNS record
    AS 'MODULE_PATHNAME', 'iterjob_node_cursor_of'
    LANGUAGE C STABLE;

COMMENT ON FUNCTION iterjob.node_cursor_of(bigint, bigint, bigint)
    IS 'the cursor this node keeps for the caller''s job on a shard (read by iterjob''s workers when a shard moved)';

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

REVOKE ALL ON iterjob.task_progress, iterjob.job_progress, iterjob.shard_progress, iterjob.errors, iterjob.workers FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA iterjob FROM PUBLIC;
REVOKE ALL ON SCHEMA iterjob FROM PUBLIC;
GRANT USAGE ON SCHEMA iterjob TO iterjob_user;
GRANT SELECT ON iterjob.task_progress, iterjob.job_progress, iterjob.shard_progress, iterjob.errors, iterjob.workers TO iterjob_user;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA iterjob TO iterjob_user;
REVOKE EXECUTE ON FUNCTION iterjob.wake_workers() FROM iterjob_user;
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
