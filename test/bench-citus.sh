#!/usr/bin/env bash
# iterjob on Citus, benchmarked: a backfill (w = v * 2) over a distributed
# items(id bigint primary key, v int, w int) of 8 shards on a throwaway Citus
# cluster of three nodes on this machine (a coordinator and two workers),
# measured against one multi-shard UPDATE in the same run, cases
# interleaved, median of REPS.
#
#   test/bench-citus.sh              500,000 rows, 3 repetitions, PostgreSQL 15
#   ROWS=200000 REPS=1 test/bench-citus.sh
#   BENCH_CASES="1 3 3b" test/bench-citus.sh     only these cases
#
# Cases: (1) one multi-shard UPDATE from the coordinator (Citus runs it on
# every shard in parallel), and (1s) the same with
# citus.multi_shard_modify_mode = sequential (one shard after another, what
# Citus users set to spare the workers); (2) iterjob, partition 'modulo', 2
# instances, batch 1000: keyset queries over the distributed table, through
# the coordinator; (3) iterjob, partition 'shard', 2 instances, batch 1000,
# (3i) the same with 4 instances, (3c) 2 instances with batches of 5000 and
# (3b) 4 instances with batches of 5000.
# Before each timed run: w = NULL,
# VACUUM, CHECKPOINT on every node.  The three nodes share the machine's
# cores, so this shows the cost per row of each way, not a speed-up.
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-500000}
REPS=${REPS:-3}
CASES=${BENCH_CASES:-1 1s 2 3 3c 3i 3b}

setup_iterjob
PG_CONFIG=$PG_CONFIG "$ITERJOB_ROOT/test/build-citus.sh" >/dev/null || {
	echo "bench-citus: no Citus for this PostgreSQL (test/build-citus.sh)"
	exit 1
}

BENCH_DIR=$(mktemp -d /tmp/iterjob-bench-citus.XXXXXX)
BASE_PORT=$((20000 + RANDOM % 20000))
PORTS="$BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2))"
stop_nodes() {
	for p in $PORTS; do
		[ -d "$BENCH_DIR/n$p" ] && as_postgres "$PGBIN/pg_ctl" -D "$BENCH_DIR/n$p" -m fast stop >/dev/null 2>&1
	done
	rm -rf "$BENCH_DIR"
}
trap stop_nodes EXIT
trap 'exit 130' INT TERM
chmod 755 "$BENCH_DIR"
as_root chown postgres: "$BENCH_DIR"
for p in $PORTS; do
	as_postgres "$PGBIN/initdb" -D "$BENCH_DIR/n$p" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	{
		echo "port = $p"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$BENCH_DIR'"
		echo "shared_preload_libraries = 'citus,iterjob'"
		echo "max_prepared_transactions = 20"
		echo "max_worker_processes = 32"
		echo "citus.node_conninfo = 'sslmode=disable'"
		echo "shared_buffers = 256MB"
		echo "max_wal_size = 4GB"
		echo "checkpoint_timeout = 1h"
		echo "autovacuum = off"
		echo "iterjob.hold_for_autovacuum = off"
	} | as_postgres tee -a "$BENCH_DIR/n$p/postgresql.conf" >/dev/null
	as_postgres "$PGBIN/pg_ctl" -D "$BENCH_DIR/n$p" -l "$BENCH_DIR/n$p.log" -w start >/dev/null
done
COORD=$BASE_PORT
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -U postgres -d postgres "$@"; }
now() { date +%s.%N; }

for p in $PORTS; do q -p "$p" -c 'CREATE EXTENSION citus'; done
q -p $COORD -c "SELECT citus_set_coordinator_host('127.0.0.1', $COORD)" >/dev/null
for p in $PORTS; do
	[ "$p" = $COORD ] || q -p $COORD -c "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null
done
q -p $COORD <<SQL
CREATE EXTENSION iterjob;
SET citus.shard_count = 8;
CREATE TABLE items (id bigint PRIMARY KEY, v int, w int);
SELECT create_distributed_table('items', 'id');
INSERT INTO items SELECT g, g % 1000, NULL FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE items;
SQL

reset_table() {
	q -p $COORD -c 'UPDATE items SET w = NULL' -c 'VACUUM items' >/dev/null
	for p in $PORTS; do q -p "$p" -c CHECKPOINT; done
}

# run_case CASE: seconds the backfill took
run_case() {
	local start end job partition instances batch=1000
	case $1 in
	1 | 1s)
		local mode=parallel
		[ "$1" = 1s ] && mode=sequential
		start=$(now)
		q -p $COORD -c "SET citus.multi_shard_modify_mode = $mode" -c 'UPDATE items SET w = v * 2' >/dev/null
		end=$(now)
		echo "$end - $start" | bc
		return
		;;
	2) partition=modulo instances=2 ;;
	3) partition=shard instances=2 ;;
	3i) partition=shard instances=4 ;;
	3b) partition=shard instances=4 batch=5000 ;;
	3c) partition=shard instances=2 batch=5000 ;;
	esac
	job=$(q -p $COORD -c "SELECT iterjob.enqueue('items', 'UPDATE items SET w = v * 2 WHERE id = ANY(\$1)',
	                      instances => $instances, batch_size => $batch, partition => '$partition')")
	[ "$(q -p $COORD -c "SELECT iterjob.wait($job, '1 h')")" = succeeded ] || {
		echo "bench-citus: job $job did not succeed" >&2
		exit 1
	}
	q -p $COORD -c "SELECT extract(epoch FROM finished_at - started_at) FROM iterjob.job WHERE id = $job"
}

declare -A times
for rep in $(seq 1 "$REPS"); do
	for c in $CASES; do
		reset_table
		t=$(run_case "$c")
		done_rows=$(q -p $COORD -c 'SELECT count(*) FROM items WHERE w = v * 2')
		[ "$done_rows" = "$ROWS" ] || {
			echo "bench-citus: case $c did $done_rows of $ROWS rows" >&2
			exit 1
		}
		times[$c]="${times[$c]:-} $t"
		echo "rep $rep case $c: $t s" >&2
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
base=$(echo "${times[1]:-}" | median)
echo "== Citus $(q -p $COORD -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), 3 nodes on this machine, $ROWS rows over 8 shards, median of $REPS ($(date -u +%F))"
echo "| case | time (s) | rows/s | x one UPDATE |"
echo "|---|---|---|---|"
for c in $CASES; do
	m=$(echo "${times[$c]}" | median)
	rate=$(echo "$ROWS / $m" | bc)
	ratio=$([ -n "$base" ] && echo "scale=2; $base / $m" | bc || echo -)
	case $c in
	1) what='one multi-shard `UPDATE`' ;;
	1s) what='the same, `multi_shard_modify_mode = sequential`' ;;
	2) what="iterjob, partition 'modulo', 2 instances" ;;
	3) what="iterjob, partition 'shard', 2 instances" ;;
	3i) what="iterjob, partition 'shard', 4 instances" ;;
	3b) what="iterjob, partition 'shard', 4 instances, batches of 5000" ;;
	3c) what="iterjob, partition 'shard', 2 instances, batches of 5000" ;;
	esac
	printf '| %s %s | %.2f | %s | %s |\n' "$c" "$what" "$m" "$rate" "$ratio"
done
