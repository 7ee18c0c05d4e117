#!/usr/bin/env bash
# iterjob benchmark: a backfill (w = v * 2) over items(id bigint primary key, v int, w int)
# measured against its baselines in the same run, cases interleaved, median of REPS;
# then what iterjob costs around the batches: enqueue-to-first-batch latency and
# 1000 one-batch jobs, with iterjob's default health settings.
#
#   test/bench.sh                 2,000,000 rows, 5 repetitions, PostgreSQL 15
#   ROWS=500000 REPS=3 test/bench.sh
#   BENCH_CASES="1 2 3 3s" test/bench.sh    only these backfill cases
#   BENCH_PARTS="latency tiny" test/bench.sh   only these parts (default: backfill
#                                 latency tiny memory)
#   TINY_REPS=5 test/bench.sh     repetitions of the latency and tiny-job cases (default 3)
#   BENCH_BEFORE=<git revision> BENCH_PARTS=backfill test/bench.sh
#                                 each iterjob backfill case also with the library
#                                 built from that revision (same extension version),
#                                 the two alternating in each repetition, the server
#                                 restarted before each run; reports both and the
#                                 change, paired by repetition
#   BENCH_PGSS=1 test/bench.sh    with pg_stat_statements (track = all): the statements
#                                 of the tiny-job cases, by total time
#   ITERJOB_PG_MAJOR=18 test/bench.sh      on 18 (built by test/build-pg18.sh), or
#   PG_CONFIG=/path/to/bin/pg_config test/bench.sh   on any installation
#
# Backfill cases: (1) one UPDATE statement, and (1h) two side by side on the two halves of the
# keys (what two cores give PostgreSQL's own executor); (2) a PL/pgSQL procedure
# looping keyset batches of 1000 with a COMMIT per batch (the usual do-it-yourself),
# and (2r) two sessions running it side by side on the two halves of the keys;
# (3) iterjob, 1 instance, batch 1000, and the same with iterjob.synchronous_commit
# = on (3s); (4) 2 instances, modulo partition, and the same with
# iterjob.trail_instances = off (4s); (5) 2 instances, range partition; (3b, 5b)
# cases 3 and 5 with the action written as the batch's key range (BETWEEN its first
# and last key) instead of = ANY of its keys; (6) batch 100 and 10000.  Before each
# timed run the table is reset: w = NULL, VACUUM FULL, CHECKPOINT.  These run with
# iterjob.hold_for_autovacuum off (the cluster's autovacuum is off).
#
# Then, with iterjob's default health settings (iterjob.hold_for_autovacuum on;
# archive_mode is off, so the archive backlog is not watched):
# - latency: 50 one-row jobs, one after the other (20 ms apart), each enqueued in its
#   own transaction; from just before its COMMIT to its action's clock_timestamp();
# - tiny: 1000 one-batch jobs, enqueued in one transaction (from its commit to the
#   last job's end) or one per transaction (from the first enqueue to the last job's
#   end), with iterjob.max_workers 2 and 4: jobs/s, the workers' CPU per job (the
#   utime + stime of every iterjob worker process over the run, from /proc: the live
#   ones and those the postmaster reaped), the launcher's CPU, and how many worker
#   processes ran jobs (the pids in the server log's lines of the case);
# - both again with a REPEATABLE READ transaction held open in another session for
#   the whole run (it holds back the cleanup of the queue's dead rows).
# Each case is measured from one session that enqueues and waits (a procedure that
# commits between polls), so that no other process ends during the run.  The queue
# is emptied and vacuumed before each case.  Last, a worker's memory over 100,000
# batches.
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-2000000}
REPS=${REPS:-5}
MEMORY_BATCHES=${MEMORY_BATCHES:-100000}
TINY_REPS=${TINY_REPS:-3}
BENCH_PARTS=${BENCH_PARTS:-backfill latency tiny memory}

# part NAME: whether BENCH_PARTS asks for it
part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }

setup_iterjob
# durable commits, as in production; no checkpoint in the middle of a run
cluster_start "fsync = on" "max_wal_size = 8GB" "checkpoint_timeout = 1h" \
	"shared_buffers = 512MB" "iterjob.max_workers = 4" "iterjob.hold_for_autovacuum = off" \
	"autovacuum = off" \
	${BENCH_PGSS:+"shared_preload_libraries = 'iterjob,pg_stat_statements'"} \
	${BENCH_PGSS:+"pg_stat_statements.track = all"}

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

# BENCH_BEFORE: that revision's library beside this tree's (test/lib.sh)
BENCH_LIBRARY=""
if [ -n "${BENCH_BEFORE:-}" ]; then
	revision_libraries "$BENCH_BEFORE"
fi

# use_library before|after: restart the server with that library
use_library() {
	library_swap "$1"
	as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	BENCH_LIBRARY=$1
}

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
CREATE TABLE results (name text, rep int, seconds float8, wal_bytes numeric,
                      library text NOT NULL DEFAULT '', worker_cpu float8);
SQL

# What iterjob's workers cost: CPU ticks (1/100 s) from /proc.
# bench_worker_ticks() is the postmaster's reaped children (every iterjob
# worker that exited, and the backends of the polls) plus the live iterjob
# workers.  A case starts with no worker and is counted once its (warm)
# workers have exited.
q <<'SQL'
CREATE FUNCTION bench_stat(pid int) RETURNS text[] LANGUAGE sql AS
$$ SELECT string_to_array(split_part(pg_read_file('/proc/' || pid || '/stat'), ') ', 2), ' ') $$;
CREATE FUNCTION bench_ticks(backend_type text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    total bigint := 0;
    f text[];
    p int;
BEGIN
    FOR p IN SELECT a.pid FROM pg_stat_activity a WHERE a.backend_type = bench_ticks.backend_type LOOP
        BEGIN
            f := bench_stat(p);
            total := total + f[12]::bigint + f[13]::bigint;   -- utime, stime
        EXCEPTION WHEN OTHERS THEN
            NULL;                                           -- it has just exited
        END;
    END LOOP;
    RETURN total;
END $$;
CREATE FUNCTION bench_worker_ticks() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    f text[] := bench_stat(split_part(pg_read_file('postmaster.pid'), E'\n', 1)::int);
BEGIN
    RETURN bench_ticks('iterjob worker') + f[14]::bigint + f[15]::bigint;  -- cutime, cstime
END $$;
-- wait until no iterjob worker is connected, and the postmaster has reaped
-- them: a worker that exits while it is counted is counted once
CREATE PROCEDURE bench_no_workers() LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'iterjob worker');
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'iterjob workers still running after 60 s';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM pg_sleep(0.2);
END $$;
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
	local args=$1 action=${2:-$ANY_ACTION} id state
	id=$(q -v action="$action" <<<"SELECT iterjob.enqueue('items', :'action', $args)")
	# (a poll that fails ends the run: the server is gone)
	while state=$(q -c "SELECT state FROM iterjob.job WHERE id = $id"); do
		case "$state" in succeeded | failed | cancelled) break ;; esac
		sleep 1
	done
	[ "$state" = succeeded ] || { echo "job $id: ${state:-no answer}" >&2; exit 1; }
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
	local name=$1 rep=$2 t0 t1 lsn0 setting ticks0 cpu
	reset_table
	setting=$(case_setting "$name")
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM SET $setting" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
	fi
	lsn0=$(q -c "SELECT pg_current_wal_lsn()")
	ticks0=$(q -c "CALL bench_no_workers()" -c "SELECT bench_worker_ticks()")
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
	cpu=NULL
	if [[ "$name" == *iterjob* ]]; then
		cpu=$(q -c "CALL bench_no_workers()" -c "SELECT (bench_worker_ticks() - $ticks0) / 100.0")
	fi
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM RESET ${setting%% *}" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	[ "$(q -c "SELECT count(*) FROM items WHERE w IS DISTINCT FROM v * 2")" = 0 ] ||
		{ echo "$name left rows unprocessed" >&2; exit 1; }
	q -c "INSERT INTO results VALUES ('$name', $rep, $t1 - $t0,
	        pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0'), '$BENCH_LIBRARY', $cpu)"
	q -c "DELETE FROM iterjob.job"
}

CASES=("1 UPDATE" "1h 2 UPDATE statements, 2 halves" "2 DIY procedure"
	"2r DIY 2 sessions, 2 ranges" "3 iterjob 1 instance"
	"3s iterjob 1 instance, synchronous commits" "3b iterjob 1 instance, key range action"
	"4 iterjob 2 modulo" "4s iterjob 2 modulo, side by side"
	"5 iterjob 2 range" "5b iterjob 2 range, key range action"
	"6a iterjob batch 100" "6b iterjob batch 10000")
if part backfill; then
	for rep in $(seq 1 "$REPS"); do
		for c in "${CASES[@]}"; do
			# BENCH_CASES="1 2 3 3s": only these cases (by their number)
			if [ -n "${BENCH_CASES:-}" ] && ! [[ " $BENCH_CASES " == *" ${c%% *} "* ]]; then
				continue
			fi
			if [ -n "${BENCH_BEFORE:-}" ] && [[ "$c" == *iterjob* ]]; then
				# before first in odd repetitions, after first in even ones
				if [ $((rep % 2)) = 1 ]; then order="before after"; else order="after before"; fi
				for lib in $order; do
					use_library "$lib"
					echo "== rep $rep: $c ($lib)"
					run_case "$c" "$rep"
				done
				continue
			fi
			if [ -n "${BENCH_BEFORE:-}" ]; then
				use_library after
				BENCH_LIBRARY=""
			fi
			echo "== rep $rep: $c"
			run_case "$c" "$rep"
		done
	done
	if [ -n "${BENCH_BEFORE:-}" ]; then
		use_library after
		BENCH_LIBRARY=""
	fi

	echo
	echo "== backfill of $ROWS rows, median of $REPS runs (cases interleaved), $("$PG_CONFIG" --version)"
	psql -X -q -v ON_ERROR_STOP=1 <<-SQL
	WITH m AS (
	    SELECT name,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS seconds,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes) AS wal,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY worker_cpu) AS cpu
	      FROM results WHERE library <> 'before' GROUP BY name)
	SELECT name AS "case",
	       round(seconds::numeric, 2) AS "seconds",
	       round($ROWS / seconds) AS "rows/s",
	       round(((SELECT seconds FROM m WHERE name = '2 DIY procedure') / seconds)::numeric, 2)
	           AS "x DIY (2)",
	       round(((SELECT seconds FROM m WHERE name = '1 UPDATE') / seconds)::numeric, 2)
	           AS "x UPDATE (1)",
	       round((wal / $ROWS)::numeric) AS "WAL bytes/row",
	       round(cpu::numeric, 2) AS "workers' CPU s"
	  FROM m ORDER BY name;
	SQL
	if [ -n "${BENCH_BEFORE:-}" ]; then
		echo
		echo "== the iterjob cases with $BENCH_BEFORE's library (before) and this tree's (after):"
		echo "   medians, and the changes paired by repetition (median of before/after - 1: + is"
		echo "   faster, or less CPU; the baselines are the same runs for both, so a ratio's"
		echo "   change is the speed's)"
		psql -X -q -v ON_ERROR_STOP=1 <<-SQL
		WITH m AS (
		    SELECT name, library,
		           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS seconds,
		           percentile_cont(0.5) WITHIN GROUP (ORDER BY worker_cpu) AS cpu
		      FROM results GROUP BY name, library),
		paired AS (
		    SELECT b.name, percentile_cont(0.5) WITHIN GROUP (ORDER BY b.seconds / a.seconds) AS speed,
		           percentile_cont(0.5) WITHIN GROUP (ORDER BY b.worker_cpu / a.worker_cpu) AS cpu
		      FROM results b JOIN results a USING (name, rep)
		     WHERE b.library = 'before' AND a.library = 'after' GROUP BY b.name),
		diy AS (SELECT seconds FROM m WHERE name = '2 DIY procedure'),
		upd AS (SELECT seconds FROM m WHERE name = '1 UPDATE')
		SELECT b.name AS "case",
		       round(b.seconds::numeric, 2) AS "s before", round(a.seconds::numeric, 2) AS "s after",
		       round(((SELECT seconds FROM diy) / b.seconds)::numeric, 2) AS "x DIY before",
		       round(((SELECT seconds FROM diy) / a.seconds)::numeric, 2) AS "x DIY after",
		       round(((SELECT seconds FROM upd) / b.seconds)::numeric, 2) AS "x UPDATE before",
		       round(((SELECT seconds FROM upd) / a.seconds)::numeric, 2) AS "x UPDATE after",
		       to_char(100 * (p.speed - 1), 'FMSG990.0') || '%' AS "speed change",
		       round(b.cpu::numeric, 2) AS "CPU s before", round(a.cpu::numeric, 2) AS "CPU s after",
		       to_char(100 * (p.cpu - 1), 'FMSG990.0') || '%' AS "CPU change"
		  FROM m b JOIN m a USING (name) JOIN paired p USING (name)
		 WHERE b.library = 'before' AND a.library = 'after'
		 ORDER BY b.name;
		SQL
	fi
fi

# The latency and tiny-job cases, with the workers' CPU (bench_worker_ticks()).
if part latency || part tiny; then
	q <<'SQL'
CREATE TABLE tiny (id int PRIMARY KEY);
INSERT INTO tiny VALUES (1);
CREATE TABLE first_batch (job int, at timestamptz);
CREATE TABLE tiny_many (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO tiny_many SELECT g FROM generate_series(1, 1000) g;
CREATE TABLE tiny_results (name text, rep int, jobs_per_s float8, enqueue_s float8,
                           worker_ms_per_job float8, launcher_ms float8, workers_started int);
-- 1000 one-batch jobs, enqueued in one transaction or one per transaction
CREATE PROCEDURE bench_tiny(label text, rep int, per_txn bool) LANGUAGE plpgsql AS $$
DECLARE
    w0 bigint := bench_worker_ticks();
    l0 bigint := bench_ticks('iterjob launcher');
    t0 timestamptz := clock_timestamp();
    t1 timestamptz;
    done int;
    last_end timestamptz;
BEGIN
    IF per_txn THEN
        FOR g IN 1..1000 LOOP
            PERFORM iterjob.enqueue('tiny_many', 'UPDATE tiny_many SET n = n + 1 WHERE id = ANY($1)',
                                    filter => 'id = ' || g);
            COMMIT;
        END LOOP;
    ELSE
        PERFORM count(iterjob.enqueue('tiny_many', 'UPDATE tiny_many SET n = n + 1 WHERE id = ANY($1)',
                                      filter => 'id = ' || g))
           FROM generate_series(1, 1000) g;
        COMMIT;
    END IF;
    t1 := clock_timestamp();
    LOOP
        SELECT count(*) INTO done FROM iterjob.job WHERE state = 'succeeded';
        EXIT WHEN done = 1000;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
    SELECT max(finished_at) INTO last_end FROM iterjob.job;
    COMMIT;
    -- every worker's CPU, idle ones included, once they have exited
    CALL bench_no_workers();
    INSERT INTO tiny_results
    VALUES (label, rep,
            1000 / extract(epoch FROM last_end - CASE WHEN per_txn THEN t0 ELSE t1 END),
            extract(epoch FROM t1 - t0),
            10.0 * (bench_worker_ticks() - w0) / 1000,
            10.0 * (bench_ticks('iterjob launcher') - l0), NULL);
    COMMIT;
    IF (SELECT count(*) FROM tiny_many WHERE n <> 1) > 0 THEN
        RAISE EXCEPTION 'tiny jobs: a row was not processed once';
    END IF;
END $$;
-- 50 one-row jobs, one after the other
CREATE PROCEDURE bench_latency(label text, rep int) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    first timestamptz;
BEGIN
    FOR j IN 1..50 LOOP
        PERFORM iterjob.enqueue('tiny', format('INSERT INTO first_batch VALUES (%s, clock_timestamp())', j));
        t0 := clock_timestamp();
        COMMIT;
        LOOP
            SELECT at INTO first FROM first_batch WHERE job = j;
            EXIT WHEN FOUND;
            COMMIT;
            PERFORM pg_sleep(0.002);
        END LOOP;
        INSERT INTO results VALUES (label, rep, extract(epoch FROM first - t0), 0);
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
SQL

	# the health gate as iterjob ships it (the backfill cases turn it off)
	q -c "ALTER SYSTEM SET iterjob.hold_for_autovacuum = on" -c "SELECT pg_reload_conf()" >/dev/null

	# an empty, vacuumed queue; the server log's marker before a case
	reset_queue() {
		q -c "DELETE FROM iterjob.job" -c "DELETE FROM first_batch" -c "UPDATE tiny_many SET n = 0" \
			-c "VACUUM iterjob.job, iterjob.task, iterjob.error_log, tiny_many, first_batch" \
			-c "CHECKPOINT" -c "CALL bench_no_workers()" \
			-c "DO \$\$BEGIN RAISE LOG 'bench: case %', '$1'; END\$\$"
	}
	# workers started since the marker of case $1 (the server log names their pids)
	workers_started() {
		awk -v mark="bench: case $1" 'index($0, mark) { on = 1; delete pids; next }
			on && / iterjob worker / { pids[$4] = 1 }
			END { n = 0; for (p in pids) n++; print n }' "$CLUSTER_DIR/server.log"
	}
	# a REPEATABLE READ transaction held open, with its snapshot taken
	hold_snapshot() {
		PGAPPNAME=bench_rr psql -X -q -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
			-c "SELECT count(*) FROM iterjob.job" -c "SELECT pg_sleep(86400)" >/dev/null 2>&1 &
		until [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench_rr'
		                  AND backend_xmin IS NOT NULL AND wait_event = 'PgSleep'")" = 1 ]; do sleep 0.1; done
	}
	release_snapshot() {
		q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_rr'" >/dev/null
		wait
	}
	set_workers() {
		q -c "ALTER SYSTEM SET iterjob.max_workers = $1" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
	}
fi

if part latency; then
	set_workers 4
	for rep in $(seq 1 "$TINY_REPS"); do
		for rr in "" " RR held"; do
			echo "== rep $rep: latency$rr"
			reset_queue "latency$rr $rep"
			[ -z "$rr" ] || hold_snapshot
			q -c "CALL bench_latency('latency$rr', $rep)"
			[ -z "$rr" ] || release_snapshot
		done
	done
	echo
	echo "== enqueue-to-first-batch latency, 50 one-row jobs x $TINY_REPS, $("$PG_CONFIG" --version)"
	psql -X -q -v ON_ERROR_STOP=1 <<-SQL
	SELECT name AS "case",
	       round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds))::int AS "median ms",
	       round(1000 * percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds))::int AS "p95 ms",
	       round(1000 * max(seconds))::int AS "max ms"
	  FROM results WHERE name LIKE 'latency%' GROUP BY name ORDER BY name;
	SQL
fi

if part tiny; then
	[ -z "${BENCH_PGSS:-}" ] || q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
	for rep in $(seq 1 "$TINY_REPS"); do
		for workers in 2 4; do
			set_workers "$workers"
			for mode in "one transaction" "one per transaction"; do
				for rr in "" ", RR held"; do
					name="$mode, max_workers $workers$rr"
					echo "== rep $rep: $name"
					reset_queue "$name $rep"
					[ -z "$rr" ] || hold_snapshot
					q -c "CALL bench_tiny('$name', $rep, $([ "$mode" = "one transaction" ] && echo false || echo true))"
					[ -z "$rr" ] || release_snapshot
					q -c "UPDATE tiny_results SET workers_started = $(workers_started "$name $rep")
					        WHERE name = '$name' AND rep = $rep"
				done
			done
		done
	done
	q -c "ALTER SYSTEM RESET iterjob.max_workers" -c "SELECT pg_reload_conf()" >/dev/null
	echo
	echo "== 1000 one-batch jobs, median of $TINY_REPS, $("$PG_CONFIG" --version)"
	psql -X -q -v ON_ERROR_STOP=1 <<-SQL
	WITH m AS (
	    SELECT name,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY jobs_per_s) AS jobs_per_s,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY enqueue_s) AS enqueue_s,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY worker_ms_per_job) AS worker_ms,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY launcher_ms) AS launcher_ms,
	           percentile_cont(0.5) WITHIN GROUP (ORDER BY workers_started) AS started
	      FROM tiny_results GROUP BY name)
	SELECT name AS "case", round(jobs_per_s)::int AS "jobs/s",
	       round((jobs_per_s / (SELECT n.jobs_per_s FROM m n
	                             WHERE n.name = replace(m.name, ', RR held', '')))::numeric, 2)
	           AS "x without RR",
	       round(enqueue_s::numeric, 2) AS "enqueue s",
	       round(worker_ms::numeric, 2) AS "worker CPU ms/job",
	       round(launcher_ms)::int AS "launcher CPU ms",
	       started AS "workers that ran jobs"
	  FROM m ORDER BY name;
	SQL
	if [ -n "${BENCH_PGSS:-}" ]; then
		echo "== the tiny-job cases' statements by total time (pg_stat_statements, track = all)"
		psql -X -q -v ON_ERROR_STOP=1 <<-SQL
		SELECT calls, round(total_exec_time::numeric, 1) AS exec_ms,
		       round(total_plan_time::numeric, 1) AS plan_ms, plans,
		       round((1000 * (total_exec_time + total_plan_time) / calls)::numeric, 1) AS us_per_call,
		       left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
		  FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 40;
		SQL
	fi
fi

if part memory; then
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
fi
