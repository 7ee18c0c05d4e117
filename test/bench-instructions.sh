#!/usr/bin/env bash
# What a batch costs an iterjob worker in instructions: the user-space
# instructions an iteration worker executes per batch, counted by valgrind's
# cachegrind.  Unlike wall or CPU time on a shared machine (which move by
# 20% between two runs of the same job), the count repeats within a few
# tenths of a percent, so it shows a small change in what the code does.
# It leaves out the kernel (system calls), waits and cache misses.
#
#   test/bench-instructions.sh              this tree's library
#   test/bench-instructions.sh main         and main's (the same extension
#                                           version), side by side
#   BATCH_SIZES="10 100 1000" test/bench-instructions.sh <revision>
#
# For each batch size (default 10 and 100), two jobs of one instance over
# items tables of 200 and 1200 batches (items(id bigint primary key, v int,
# w int), new for each job, action w = v * 2, iterjob's default settings but
# iterjob.max_workers = 1 and iterjob.worker_idle_time = 0), each run by a
# worker of its own; the difference of the two workers' counts over the 1000
# more batches is the cost of a batch, without a worker's start and end.
# The server runs under cachegrind (about 50 times slower).
source "$(dirname "$0")/lib.sh"

BEFORE=${1:-}
BATCH_SIZES=${BATCH_SIZES:-10 100}

setup_iterjob
ensure_packages valgrind
cluster_start "iterjob.max_workers = 1" "iterjob.worker_idle_time = 0" "autovacuum = off" \
	"iterjob.hold_for_autovacuum = off"
[ -z "$BEFORE" ] || revision_libraries "$BEFORE"

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION iterjob"
# items_<size>_<n>: made anew before each job, so that every job starts from
# the same table (a second pass over an updated table does more work)
fresh_table() {
	q <<-SQL
	SET client_min_messages = warning;
	DROP TABLE IF EXISTS items_$1_$2;
	CREATE TABLE items_$1_$2 (id bigint PRIMARY KEY, v int, w int);
	INSERT INTO items_$1_$2 SELECT g, g % 1000, NULL FROM generate_series(1, $1 * $2) g;
	VACUUM ANALYZE items_$1_$2;
	CHECKPOINT;
	SQL
}
q <<'SQL'
-- no iterjob worker left (worker_idle_time = 0: a worker exits once done)
CREATE PROCEDURE bench_no_workers() LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'iterjob worker');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
-- one job over tbl; its worker's pid and the batches it ran
CREATE PROCEDURE bench_job(tbl text, size int, INOUT worker int DEFAULT NULL,
                           INOUT batches bigint DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    j bigint;
BEGIN
    CALL bench_no_workers();
    j := iterjob.enqueue(tbl, format('UPDATE %s SET w = v * 2 WHERE id = ANY($1)', tbl),
                           batch_size => size);
    COMMIT;
    WHILE worker IS NULL LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT pid INTO worker FROM pg_stat_activity WHERE backend_type = 'iterjob worker';
        PERFORM pg_sleep(0.01);
    END LOOP;
    WHILE (SELECT state FROM iterjob.job WHERE id = j) NOT IN ('succeeded', 'failed', 'cancelled') LOOP
        COMMIT;
        PERFORM pg_sleep(0.1);
    END LOOP;
    IF (SELECT state FROM iterjob.job WHERE id = j) <> 'succeeded' THEN
        RAISE EXCEPTION 'job % over % did not succeed', j, tbl;
    END IF;
    SELECT sum(batches_done) INTO batches FROM iterjob.task WHERE job_id = j;
END $$;
SQL

# the server again, every process under cachegrind, each writing its count
# to cg/<pid> when it exits
cachegrind_start() {
	local tries
	as_postgres mkdir -p "$CLUSTER_DIR/cg"
	as_postgres sh -c "cd '$CLUSTER_DIR' && exec valgrind --tool=cachegrind --cache-sim=no \
		--trace-children=yes --cachegrind-out-file='$CLUSTER_DIR/cg/%p' \
		'$PGBIN/postgres' -D '$CLUSTER_DIR/data' >>'$CLUSTER_DIR/server.log' 2>&1 &"
	for tries in $(seq 300 -1 1); do
		"$PGBIN/pg_isready" -q -h "$CLUSTER_DIR" -p "$PGPORT" && return 0
		[ "$tries" = 1 ] || sleep 1
	done
	echo "the server did not start under cachegrind in 300 s" >&2
	return 1
}

# worker_count PID: the instructions of that (exited) process
worker_count() {
	local tries
	for tries in $(seq 600 -1 1); do
		if ! kill -0 "$1" 2>/dev/null && grep -q '^summary:' "$CLUSTER_DIR/cg/$1" 2>/dev/null; then
			awk '/^summary:/ {print $2}' "$CLUSTER_DIR/cg/$1"
			return 0
		fi
		sleep 0.1
	done
	echo "worker $1 did not exit" >&2
	return 1
}

results=""
for lib in ${BEFORE:+before} after; do
	if [ -n "$BEFORE" ]; then
		library_swap "$lib"
	else
		as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
	fi
	cachegrind_start
	# not counted: the first worker after a start builds the caches others read
	fresh_table 10 2
	q -c "CALL bench_job('items_10_2', 10)" >/dev/null
	for size in $BATCH_SIZES; do
		declare -A count=() ran=()
		for n in 200 1200; do
			fresh_table "$size" "$n"
			out=$(q -F ' ' -c "CALL bench_job('items_${size}_$n', $size)")
			read -r pid batches <<<"$out"
			count[$n]=$(worker_count "$pid")
			ran[$n]=$batches
			echo "== $lib, batch size $size: $batches batches, worker $pid: ${count[$n]} instructions"
		done
		per_batch=$(((count[1200] - count[200]) / (ran[1200] - ran[200])))
		results="$results$lib $size $per_batch"$'\n'
		unset count ran
	done
done

echo
echo "== instructions per batch (cachegrind; 1000 batches' difference), $("$PG_CONFIG" --version)"
printf '%-10s  %12s  %12s  %8s\n' "batch size" "${BEFORE:+$BEFORE}" "this tree" "${BEFORE:+change}"
for size in $BATCH_SIZES; do
	after=$(awk -v s="$size" '$1 == "after" && $2 == s {print $3}' <<<"$results")
	before=$(awk -v s="$size" '$1 == "before" && $2 == s {print $3}' <<<"$results")
	if [ -n "$before" ]; then
		change=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%+.2f%%", 100 * (a / b - 1)}')
	else
		change=""
	fi
	printf '%-10s  %12s  %12s  %8s\n' "$size" "$before" "$after" "$change"
done
