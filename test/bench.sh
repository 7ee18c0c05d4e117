#!/usr/bin/env bash
# iterjob benchmark: a backfill (w = v * 2) over items(id bigint primary key, v int, w int)
# measured against its baselines in the same run, cases interleaved, median of REPS.
#
#   test/bench.sh                 2,000,000 rows, 5 repetitions, PostgreSQL 15
#   ROWS=500000 REPS=3 test/bench.sh
#   BENCH_CASES="1 2 3 3s" test/bench.sh    only these backfill cases
#   ITERJOB_PG_MAJOR=18 test/bench.sh      on 18 (built by test/build-pg18.sh), or
#   PG_CONFIG=/path/to/bin/pg_config test/bench.sh   on any installation
#
# Cases: (1) one UPDATE statement, and (1h) two side by side on the two halves of the
# keys (what two cores give PostgreSQL's own executor); (2) a PL/pgSQL procedure
# looping keyset batches of 1000 with a COMMIT per batch (the usual do-it-yourself),
# and (2r) two sessions running it side by side on the two halves of the keys;
# (3) iterjob, 1 instance, batch 1000, and the same with iterjob.synchronous_commit
# = on (3s); (4) 2 instances, modulo partition, and the same with
# iterjob.trail_instances = off (4s); (5) 2 instances, range partition; (3b, 5b)
# cases 3 and 5 with the action written as the batch's key range (BETWEEN its first
# and last key) instead of = ANY of its keys; (6) batch 100 and 10000.  Then:
# enqueue-to-first-batch latency over 50 small jobs; 1000 one-batch jobs with
# iterjob.max_workers 2 and 4; a worker's memory over 100,000 batches.  Before each
# timed run the table is reset: w = NULL, VACUUM FULL, CHECKPOINT.
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-2000000}
REPS=${REPS:-5}
MEMORY_BATCHES=${MEMORY_BATCHES:-100000}

setup_iterjob
# durable commits, as in production; no checkpoint in the middle of a run
cluster_start "fsync = on" "max_wal_size = 8GB" "checkpoint_timeout = 1h" \
	"shared_buffers = 512MB" "iterjob.max_workers = 4" "iterjob.hold_for_autovacuum = off" \
	"autovacuum = off"

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

q <<SQL
CREATE EXTENSION iterjob;
CREATE TABLE items (id bigint PRIMARY KEY, v int, w int);
INSERT INTO items SELECT g, g % 1000, NULL FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE items;
CREATE PROCEDURE diy_backfill(batch int) LANGUAGE plpgsql AS \$\$
DECLARE
    last bigint := 0;
    ids bigint[];
BEGIN
    LOOP
        SELECT array_agg(id) INTO ids
          FROM (SELECT id FROM items WHERE id > last ORDER BY id LIMIT batch) s;
        EXIT WHEN ids IS NULL;
        UPDATE items SET w = v * 2 WHERE id = ANY (ids);
        last := ids[array_upper(ids, 1)];
        COMMIT;
    END LOOP;
END
\$\$;
-- the same loop over a slice of the keys, for two sessions side by side
CREATE PROCEDURE diy_backfill_range(lo bigint, hi bigint, batch int) LANGUAGE plpgsql AS \$\$
DECLARE
    last bigint := lo - 1;
    ids bigint[];
BEGIN
    LOOP
        SELECT array_agg(id) INTO ids
          FROM (SELECT id FROM items WHERE id > last AND id <= hi ORDER BY id LIMIT batch) s;
        EXIT WHEN ids IS NULL;
        UPDATE items SET w = v * 2 WHERE id = ANY (ids);
        last := ids[array_upper(ids, 1)];
        COMMIT;
    END LOOP;
END
\$\$;
CREATE TABLE results (name text, rep int, seconds float8, wal_bytes numeric);
SQL

reset_table() {
	q -c "UPDATE items SET w = NULL" -c "VACUUM FULL items" -c "ANALYZE items" -c "CHECKPOINT"
}

# iterjob: enqueue, wait by polling (iterjob.wait's snapshot would hold back
# pruning), time from before the enqueue to the job's finished_at.  The poll
# is slow on purpose (each one starts a backend): the time comes from
# finished_at, not from the poll.
# The action finds the batch's rows by their keys (ANY_ACTION), or, where a
# batch's keys are all the keys between its first and its last (one instance,
# or the range partition), by that key range (SPAN_ACTION).
ANY_ACTION='UPDATE items SET w = v * 2 WHERE id = ANY($1)'
SPAN_ACTION='UPDATE items SET w = v * 2 WHERE id BETWEEN $1[1] AND $1[cardinality($1)]'
run_iterjob() {
	local args=$1 action=${2:-$ANY_ACTION} id
	id=$(q -v action="$action" <<<"SELECT iterjob.enqueue('items', :'action', $args)")
	until [ "$(q -c "SELECT state IN ('succeeded','failed','cancelled') FROM iterjob.job WHERE id = $id")" = t ]; do
		sleep 1
	done
	[ "$(q -c "SELECT state FROM iterjob.job WHERE id = $id")" = succeeded ] || { echo "job $id failed" >&2; exit 1; }
	q -c "SELECT extract(epoch FROM finished_at) FROM iterjob.job WHERE id = $id"
}

# The server setting ("name = value") a case runs with, if any: set before
# the case's clock starts (workers read it at their next batch; a reload is
# asynchronous), reset after.
case_setting() {
	case "$1" in
	"3s iterjob 1 instance, synchronous commits") echo "iterjob.synchronous_commit = on" ;;
	"4s iterjob 2 modulo, side by side") echo "iterjob.trail_instances = off" ;;
	esac
}

run_case() {
	local name=$1 rep=$2 t0 t1 lsn0 setting
	reset_table
	setting=$(case_setting "$name")
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM SET $setting" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
	fi
	lsn0=$(q -c "SELECT pg_current_wal_lsn()")
	t0=$(now)
	case "$name" in
	"1 UPDATE") q -c "UPDATE items SET w = v * 2"; t1=$(now) ;;
	"1h 2 UPDATE statements, 2 halves")
		q -c "UPDATE items SET w = v * 2 WHERE id <= $((ROWS / 2))" &
		q -c "UPDATE items SET w = v * 2 WHERE id > $((ROWS / 2))"
		wait
		t1=$(now) ;;
	"2 DIY procedure") q -c "CALL diy_backfill(1000)"; t1=$(now) ;;
	"2r DIY 2 sessions, 2 ranges")
		q -c "CALL diy_backfill_range(1, $((ROWS / 2)), 1000)" &
		q -c "CALL diy_backfill_range($((ROWS / 2 + 1)), $ROWS, 1000)"
		wait
		t1=$(now) ;;
	"3 iterjob 1 instance" | "3s iterjob 1 instance, synchronous commits")
		t1=$(run_iterjob "instances => 1, batch_size => 1000") ;;
	"3b iterjob 1 instance, key range action")
		t1=$(run_iterjob "instances => 1, batch_size => 1000" "$SPAN_ACTION") ;;
	"4 iterjob 2 modulo" | "4s iterjob 2 modulo, side by side")
		t1=$(run_iterjob "instances => 2, batch_size => 1000") ;;
	"5 iterjob 2 range") t1=$(run_iterjob "instances => 2, batch_size => 1000, partition => 'range'") ;;
	"5b iterjob 2 range, key range action")
		t1=$(run_iterjob "instances => 2, batch_size => 1000, partition => 'range'" "$SPAN_ACTION") ;;
	"6a iterjob batch 100") t1=$(run_iterjob "instances => 1, batch_size => 100") ;;
	"6b iterjob batch 10000") t1=$(run_iterjob "instances => 1, batch_size => 10000") ;;
	esac
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM RESET ${setting%% *}" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	[ "$(q -c "SELECT count(*) FROM items WHERE w IS DISTINCT FROM v * 2")" = 0 ] ||
		{ echo "$name left rows unprocessed" >&2; exit 1; }
	q -c "INSERT INTO results VALUES ('$name', $rep, $t1 - $t0,
	        pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0'))"
	q -c "DELETE FROM iterjob.job"
}

CASES=("1 UPDATE" "1h 2 UPDATE statements, 2 halves" "2 DIY procedure"
	"2r DIY 2 sessions, 2 ranges" "3 iterjob 1 instance"
	"3s iterjob 1 instance, synchronous commits" "3b iterjob 1 instance, key range action"
	"4 iterjob 2 modulo" "4s iterjob 2 modulo, side by side"
	"5 iterjob 2 range" "5b iterjob 2 range, key range action"
	"6a iterjob batch 100" "6b iterjob batch 10000")
for rep in $(seq 1 "$REPS"); do
	for c in "${CASES[@]}"; do
		# BENCH_CASES="1 2 3 3s": only these cases (by their number)
		if [ -n "${BENCH_CASES:-}" ] && ! [[ " $BENCH_CASES " == *" ${c%% *} "* ]]; then
			continue
		fi
		echo "== rep $rep: $c"
		run_case "$c" "$rep"
	done
done

echo
echo "== backfill of $ROWS rows, median of $REPS runs (cases interleaved), $("$PG_CONFIG" --version)"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
WITH m AS (
    SELECT name,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS seconds,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes) AS wal
      FROM results GROUP BY name)
SELECT name AS "case",
       round(seconds::numeric, 2) AS "seconds",
       round($ROWS / seconds) AS "rows/s",
       round(((SELECT seconds FROM m WHERE name = '2 DIY procedure') / seconds)::numeric, 2)
           AS "x DIY (2)",
       round(((SELECT seconds FROM m WHERE name = '1 UPDATE') / seconds)::numeric, 2)
           AS "x UPDATE (1)",
       round((wal / $ROWS)::numeric) AS "WAL bytes/row"
  FROM m ORDER BY name;
SQL

echo "== enqueue-to-first-batch latency, 50 small jobs"
q -c "CREATE TABLE tiny (id int PRIMARY KEY)" -c "INSERT INTO tiny VALUES (1)" \
	-c "CREATE TABLE first_batch (job int, at timestamptz)"
for j in $(seq 1 50); do
	t0=$(now)
	q -c "SELECT iterjob.enqueue('tiny', 'INSERT INTO first_batch VALUES ($j, clock_timestamp())')" >/dev/null
	until [ "$(q -c "SELECT count(*) FROM first_batch WHERE job = $j")" = 1 ]; do sleep 0.01; done
	q -c "INSERT INTO results VALUES ('latency', $j,
	        extract(epoch FROM (SELECT at FROM first_batch WHERE job = $j)) - $t0, 0)"
done
q -c "SELECT format('median %s ms, p95 %s ms',
         round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds))::text,
         round(1000 * percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds))::text)
        FROM results WHERE name = 'latency'"

echo "== 1000 one-batch jobs"
q -c "CREATE TABLE tiny_many (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)" \
	-c "INSERT INTO tiny_many SELECT g FROM generate_series(1, 1000) g"
for workers in 2 4; do
	q -c "ALTER SYSTEM SET iterjob.max_workers = $workers" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
	q -c "DELETE FROM iterjob.job" -c "UPDATE tiny_many SET n = 0"
	t0=$(now)
	q -c "BEGIN" -c "SELECT count(iterjob.enqueue('tiny_many',
	        'UPDATE tiny_many SET n = n + 1 WHERE id = ANY(\$1)', filter => 'id = ' || g))
	        FROM generate_series(1, 1000) g" -c "COMMIT" >/dev/null
	t1=$(now)
	until [ "$(q -c "SELECT count(*) FROM iterjob.job WHERE state = 'succeeded'")" = 1000 ]; do sleep 1; done
	t2=$(q -c "SELECT extract(epoch FROM max(finished_at)) FROM iterjob.job")
	[ "$(q -c "SELECT count(*) FROM tiny_many WHERE n <> 1")" = 0 ] || { echo "tiny jobs: a row was not processed once" >&2; exit 1; }
	echo "max_workers = $workers: enqueue of 1000 jobs $(echo "$t1 - $t0" | bc) s;" \
		"$(echo "scale=0; 1000 / ($t2 - $t1)" | bc) jobs/s from commit to the last job's end"
done
q -c "ALTER SYSTEM RESET iterjob.max_workers" -c "SELECT pg_reload_conf()" >/dev/null

echo "== a worker's memory over $MEMORY_BATCHES batches"
q -c "DELETE FROM iterjob.job"
size=$(( ROWS / MEMORY_BATCHES ))
[ "$size" -ge 1 ] || size=1
id=$(q -c "SELECT iterjob.enqueue('items', 'UPDATE items SET w = v * 2 WHERE id = ANY(\$1)', batch_size => $size)")
pid=""
until [ -n "$pid" ]; do pid=$(q -c "SELECT worker_pid FROM iterjob.task_progress WHERE job_id = $id AND worker_pid IS NOT NULL"); sleep 0.05; done
sleep 1
rss_start=$(awk '/RssAnon/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo "?")
batches_start=$(q -c "SELECT batches_done FROM iterjob.task WHERE job_id = $id")
rss_end=$rss_start
while [ "$(q -c "SELECT state FROM iterjob.job WHERE id = $id")" = running ]; do
	r=$(awk '/RssAnon/ {print $2}' /proc/"$pid"/status 2>/dev/null) && [ -n "$r" ] && rss_end=$r
	sleep 1
done
echo "batch_size $size: $(q -c "SELECT batches_done FROM iterjob.task WHERE job_id = $id") batches;" \
	"worker private memory (RssAnon) ${rss_start} kB after $batches_start batches, ${rss_end} kB near the end"
