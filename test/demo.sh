#!/usr/bin/env bash
# Builds and installs iterjob, starts a throwaway cluster with it preloaded,
# runs a demo backfill job of 4 parallel instances over 200,000 rows and
# shows its progress, then stops and removes the cluster.
source "$(dirname "$0")/lib.sh"

setup_iterjob
cluster_start

psql_q <<'SQL'
\echo == CREATE EXTENSION iterjob
CREATE EXTENSION iterjob;
CREATE TABLE items (id bigint PRIMARY KEY, v int, w int);
INSERT INTO items SELECT g, g % 1000, NULL FROM generate_series(1, 200000) g;
ANALYZE items;   -- rows_total is the planner's estimate

\echo == enqueue: set w = v * 2 on every row, 4 instances, batches of 1000
SELECT iterjob.enqueue(
         relation   => 'items',
         action     => 'UPDATE items SET w = v * 2 WHERE id = ANY($1)',
         instances  => 4,
         batch_size => 1000,
         name       => 'demo backfill') AS job_id \gset

SELECT pg_sleep(0.2) \gset
\echo == job_progress while it runs
SELECT job_id, name, state, rows_done, rows_total, percent, rows_per_second, eta, bar
  FROM iterjob.job_progress;

\echo == iterjob.wait(job_id)
SELECT iterjob.wait(:job_id);

\echo == job_progress
SELECT job_id, name, relation, state, instances, instances_done, rows_done,
       batches_done, finished_at - started_at AS took
  FROM iterjob.job_progress;

\echo == task_progress: one row per instance, with its cursor
SELECT instance, state, cursor, rows_done, batches_done
  FROM iterjob.task_progress ORDER BY instance;

\echo == every row was backfilled
SELECT count(*) AS rows, count(*) FILTER (WHERE w = v * 2) AS backfilled FROM items;
SQL
echo "== demo done; the throwaway cluster is removed"
