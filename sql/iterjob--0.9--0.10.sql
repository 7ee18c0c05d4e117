/* iterjob--0.9--0.10.sql: under partition 'shard', each batch and the
 * cursor of its shard commit together on the shard's node */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.10'" to load this file. \quit

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
REVOKE ALL ON iterjob.node_cursor FROM PUBLIC;

COMMENT ON TABLE iterjob.node_cursor
    IS 'on a node of a Citus cluster: the cursor of each shard a job iterates there, moved by each batch in its transaction';

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

REVOKE ALL ON FUNCTION iterjob.node_batch(bigint, bigint, bigint, text, text, text, regtype, integer, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.node_batch(bigint, bigint, bigint, text, text, text, regtype, integer, boolean, text) TO iterjob_user;

CREATE FUNCTION iterjob.node_cursor_of(job_id bigint, job_stamp bigint, shard_id bigint,
                                       OUT found boolean, OUT cursor text, OUT done boolean)
    RETURNS record
    AS 'MODULE_PATHNAME', 'iterjob_node_cursor_of'
    LANGUAGE C STABLE;

COMMENT ON FUNCTION iterjob.node_cursor_of(bigint, bigint, bigint)
    IS 'the cursor this node keeps for the caller''s job on a shard (read by iterjob''s workers when a shard moved)';

REVOKE ALL ON FUNCTION iterjob.node_cursor_of(bigint, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.node_cursor_of(bigint, bigint, bigint) TO iterjob_user;
