-- Before test/isolation/enqueue.pgbench (test/run-all.sh isolation): 4
-- groups of 10 rows, one per pgbench client, and a table for the job ids.
SET client_min_messages = warning;
CREATE EXTENSION iterjob;
CREATE TABLE pgb_items (id bigint PRIMARY KEY, grp int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO pgb_items (id, grp) SELECT g, g % 4 FROM generate_series(1, 40) g;
CREATE TABLE pgb_jobs (client int NOT NULL, job_id bigint NOT NULL);
