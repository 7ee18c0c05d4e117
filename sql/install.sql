-- CREATE EXTENSION with a schema iterjob or roles iterjob_user and
-- iterjob_admin that exist already: taken when they give nobody more than
-- iterjob would (the schema DROP EXTENSION leaves, the roles iterjob made
-- in another database, with their members), refused otherwise.  Each case
-- runs in a transaction rolled back at its end.
SET client_min_messages = warning;
\set SHOW_CONTEXT never

-- what DROP EXTENSION leaves: the empty schema, owned by the superuser
BEGIN;
DROP EXTENSION iterjob;
SELECT nspowner = 'postgres'::regrole AS superuser_owned,
       NOT EXISTS (SELECT FROM pg_class WHERE relnamespace = n.oid) AS empty
  FROM pg_namespace n WHERE nspname = 'iterjob';
CREATE EXTENSION iterjob;
SELECT extversion FROM pg_extension WHERE extname = 'iterjob';
ROLLBACK;

CREATE ROLE inst_mallory NOLOGIN;

-- a schema a role that is not a superuser owns
BEGIN;
DROP EXTENSION iterjob;
DROP SCHEMA iterjob;
CREATE SCHEMA iterjob AUTHORIZATION inst_mallory;
CREATE EXTENSION iterjob;
ROLLBACK;

-- ... or may create objects in, or holds objects in
BEGIN;
DROP EXTENSION iterjob;
GRANT CREATE ON SCHEMA iterjob TO inst_mallory;
CREATE EXTENSION iterjob;
ROLLBACK;
BEGIN;
DROP EXTENSION iterjob;
GRANT CREATE ON SCHEMA iterjob TO PUBLIC;
CREATE EXTENSION iterjob;
ROLLBACK;
BEGIN;
DROP EXTENSION iterjob;
CREATE FUNCTION iterjob.key_texts(value json) RETURNS text[] LANGUAGE sql AS 'SELECT NULL::text[]';
ALTER FUNCTION iterjob.key_texts(json) OWNER TO inst_mallory;
CREATE EXTENSION iterjob;
ROLLBACK;

-- a role iterjob_admin that can log in
BEGIN;
DROP EXTENSION iterjob;
ALTER ROLE iterjob_admin LOGIN;
CREATE EXTENSION iterjob;
ROLLBACK;

-- a role iterjob_user with an attribute
BEGIN;
DROP EXTENSION iterjob;
ALTER ROLE iterjob_user CREATEROLE;
CREATE EXTENSION iterjob;
ROLLBACK;

-- a role iterjob_user that is a member of another role
BEGIN;
DROP EXTENSION iterjob;
GRANT pg_read_all_data TO iterjob_user;
CREATE EXTENSION iterjob;
ROLLBACK;

-- a role iterjob_admin that a role other than a superuser may grant
BEGIN;
DROP EXTENSION iterjob;
GRANT iterjob_admin TO inst_mallory WITH ADMIN OPTION;
CREATE EXTENSION iterjob;
ROLLBACK;

-- the roles as iterjob made them, with members (a second database's
-- CREATE EXTENSION finds them so)
BEGIN;
DROP EXTENSION iterjob;
GRANT iterjob_admin TO inst_mallory;
GRANT iterjob_user TO pg_monitor;
CREATE EXTENSION iterjob;
SELECT extversion FROM pg_extension WHERE extname = 'iterjob';
ROLLBACK;

DROP ROLE inst_mallory;
SELECT extversion FROM pg_extension WHERE extname = 'iterjob';

-- enqueue keeps its insert's plan for the session: after the extension is
-- dropped and created again, or its job table changed, in this session,
-- an enqueue uses the tables as they are now
CREATE TABLE inst_items (id int PRIMARY KEY);
INSERT INTO inst_items VALUES (1), (2);
SELECT iterjob.enqueue('inst_items', 'SELECT FROM inst_items WHERE id = ANY($1)') > 0 AS enqueued;
DROP EXTENSION iterjob;
CREATE EXTENSION iterjob;
SELECT iterjob.enqueue('inst_items', 'SELECT FROM inst_items WHERE id = ANY($1)') > 0 AS enqueued_again;
ALTER TABLE iterjob.job ADD COLUMN inst_extra int;
SELECT iterjob.enqueue('inst_items', 'SELECT FROM inst_items WHERE id = ANY($1)') > 0 AS enqueued_after_alter;
SELECT count(*) AS jobs, count(*) FILTER (WHERE j.instances = 1) AS one_instance,
       (SELECT count(*) FROM iterjob.task) AS tasks
  FROM iterjob.job j;
DROP EXTENSION iterjob;
CREATE EXTENSION iterjob;
DROP TABLE inst_items;
