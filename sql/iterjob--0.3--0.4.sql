/* iterjob--0.3--0.4.sql: the key's order (operator classes, collations and
 * directions of the unique index iterated), and enqueue(query => ...) or
 * preview(query => ...) without relation */

\echo Use "ALTER EXTENSION iterjob UPDATE TO '0.4'" to load this file. \quit

-- NULL for jobs enqueued before: the key types' default order, as before
ALTER TABLE iterjob.job ADD COLUMN key_opclasses oid[];
ALTER TABLE iterjob.job ADD COLUMN key_collations oid[];
ALTER TABLE iterjob.job ADD COLUMN key_descending boolean[];
ALTER TABLE iterjob.job ADD COLUMN key_nulls_first boolean[];

-- relation and action get defaults so that named calls may leave relation out
CREATE OR REPLACE FUNCTION iterjob.enqueue(
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
    partition  text DEFAULT 'modulo',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_enqueue';

-- preview also shows the next-batch query (after a cursor) and its plan
DROP FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval);
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
    partition  text DEFAULT 'modulo',
    query      text DEFAULT NULL,
    follow     boolean DEFAULT false,
    on_complete text DEFAULT NULL,
    on_instance_complete text DEFAULT NULL,
    batch_pause interval DEFAULT '0',
    max_rows_per_second integer DEFAULT NULL,
    target_batch_time interval DEFAULT NULL)
RETURNS TABLE (instance integer, keyset_query text, action text, plan text,
               estimated_rows bigint, estimated_batches bigint,
               next_keyset_query text, next_plan text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'iterjob_preview';

COMMENT ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval)
    IS 'check a job as enqueue would and show, per instance, its first and next keyset queries, their plans and estimates; creates nothing';
REVOKE ALL ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iterjob.preview(regclass, text, integer, integer, text, text, text, integer, interval, interval, text, text, boolean, text, text, interval, integer, interval) TO iterjob_user;
