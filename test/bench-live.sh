#!/usr/bin/env bash
# iterjob beside live traffic: pgbench's built-in tpcb-like script, 4 clients,
# rate-limited (300 tps), runs while pgbench_accounts gets a new column
# filled for every row; reported per case: the backfill's time and rows/s,
# and the latency (p50, p99, max) of the pgbench transactions that started
# while the backfill ran, p99 also as a ratio of the no-backfill case's, all
# measured in the same run.
#
#   test/bench-live.sh                        scale 20 (2,000,000 accounts), PostgreSQL 15
#   SCALE=5 test/bench-live.sh                a smaller table
#   LIVE_CASES="0 1 3 3n" test/bench-live.sh  only these cases (by their number)
#   RATE=300 CLIENTS=4 BASELINE_S=10 NICE=10 FIRST_S=20 WAL_CAP=20MB COMMIT_WAIT=20ms test/bench-live.sh
#   PG_CONFIG=/path/to/bin/pg_config test/bench-live.sh   on any installation
#
# While each case runs, a session samples pg_stat_activity every 5 ms and
# sorts the active pgbench sessions by what they wait for (a lock an
# iterjob worker holds, another lock, WAL, CPU); the WAL written and
# pgbench's commit latency are recorded too (the second table).
#
# Cases: (0) no backfill, BASELINE_S seconds of pgbench; (1) one UPDATE;
# (2) iterjob, 1 instance, batch 1000; (3) 2 instances, range partition;
# (4) 1 instance, target_batch_time => '100ms'; (2n, 3n) cases 2 and 3 with
# iterjob.worker_nice = NICE; (2f, 3f) cases 2 and 3 with
# iterjob.max_foreground_wait = -1 (no batch cancelled for a waiting
# session); (3w) case 3 with iterjob.max_wal_per_second = WAL_CAP; (2a,
# 3a) cases 2 and 3 with iterjob.max_foreground_commit_wait = COMMIT_WAIT
# (adaptive pacing for the sessions' WAL waits).  Before each case the column is dropped and
# added again, the table vacuumed and a checkpoint taken.
#
# pgbench runs with its per-transaction log, FIRST_S seconds, then in
# back-to-back chunks of CHUNK_S seconds while the backfill still runs.  A
# pgbench run that ends drops the transactions it scheduled and did not
# start: the first run must outlast the backfill and the clients' catch-up
# after it (the single UPDATE blocks them all), or the case's transaction
# count falls short of RATE x its backfill time and its latencies are too
# low: raise FIRST_S for a larger SCALE.  A
# transaction's start is its scheduled start under --rate (its logged end
# minus its latency, which counts the schedule lag), so a transaction that
# waited behind the backfill's locks counts with all of its wait.  The
# window starts with the enqueue (the UPDATE) and ends with the job's
# finished_at (the UPDATE's return).
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-20}
RATE=${RATE:-300}
CLIENTS=${CLIENTS:-4}
BASELINE_S=${BASELINE_S:-10}
WARMUP_S=${WARMUP_S:-2}
FIRST_S=${FIRST_S:-20}
CHUNK_S=${CHUNK_S:-4}
NICE=${NICE:-10}
WAL_CAP=${WAL_CAP:-20MB}
COMMIT_WAIT=${COMMIT_WAIT:-20ms}

setup_iterjob
# durable commits, as in production; no checkpoint in the middle of a run
cluster_start "fsync = on" "max_wal_size = 8GB" "checkpoint_timeout = 1h" \
	"shared_buffers = 512MB" "iterjob.max_workers = 4" "iterjob.hold_for_autovacuum = off" \
	"autovacuum = off"

LOGS=$CLUSTER_DIR/pgbench-logs
mkdir -p "$LOGS"
TRAFFIC_PID=""
stop_traffic() {
	if [ -n "$TRAFFIC_PID" ]; then
		touch "$LOGS/stop"
		wait "$TRAFFIC_PID" 2>/dev/null || true
		TRAFFIC_PID=""
	fi
}
trap 'stop_traffic; cluster_stop' EXIT

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

ROWS=$((SCALE * 100000))
echo "== pgbench -i -s $SCALE ($ROWS accounts)"
"$PGBIN/pgbench" -i -q -s "$SCALE" >/dev/null 2>&1
q -c "CREATE EXTENSION iterjob" -c "VACUUM ANALYZE" -c "CHECKPOINT"

# start_traffic CASE: pgbench chunks, one after the other, until stop_traffic
start_traffic() {
	local dir=$LOGS/$1
	mkdir -p "$dir"
	rm -f "$LOGS/stop"
	(
		n=0
		until [ -e "$LOGS/stop" ]; do
			n=$((n + 1))
			secs=$CHUNK_S
			[ "$n" -gt 1 ] || secs=$FIRST_S
			"$PGBIN/pgbench" -n -c "$CLIENTS" -j 1 -R "$RATE" -T "$secs" -b tpcb-like -r \
				-l --log-prefix="$dir/chunk$n" >"$dir/chunk$n.out" 2>&1 ||
				{ echo "pgbench failed:" >&2; cat "$dir/chunk$n.out" >&2; exit 1; }
		done
	) &
	TRAFFIC_PID=$!
}

# latencies CASE T0 T1: "p50 p99 max count" in ms of the transactions whose
# (scheduled) start lies in [T0, T1].  A log line: client_id transaction_no
# latency_us script_no end_epoch end_us schedule_lag_us
latencies() {
	cat "$LOGS/$1"/chunk*.[0-9]* 2>/dev/null |
		awk -v t0="$2" -v t1="$3" '{ s = $5 + $6 / 1e6 - $3 / 1e6; if (s >= t0 && s <= t1) print $3 / 1000 }' |
		sort -n | awk '{ v[NR] = $1 }
			END {
				if (NR == 0) { print "- - - 0"; exit }
				i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
				printf "%.1f %.1f %.1f %d\n", v[i50], v[i99], v[NR], NR
			}'
}

# The application's time, sampled every 5 ms from pg_stat_activity while a
# case runs: each active pgbench session counts once per sample, as waiting
# on a lock an iterjob worker holds (pg_blocking_pids), on another lock, on
# WAL (its insertion, write or flush), on other waits, or on the CPU (no
# wait event).  The samples go to live_samples when the case ends.
q -c "CREATE TABLE live_samples (case_name text, at timestamptz, kind text)" \
	-c "CREATE TABLE live_stop ()"
start_sampler() {
	q -c "TRUNCATE live_stop" >/dev/null
	q -v case_name="$1" >/dev/null <<'SQL' &
CREATE TEMP TABLE s (at timestamptz, kind text);
DO $$
BEGIN
	LOOP
		EXIT WHEN EXISTS (SELECT FROM live_stop);
		INSERT INTO s
		SELECT clock_timestamp(),
		       CASE
		         WHEN a.wait_event_type = 'Lock' AND EXISTS (
		                SELECT FROM pg_stat_activity w
		                 WHERE w.pid = ANY (pg_blocking_pids(a.pid))
		                   AND w.backend_type = 'iterjob worker') THEN 'lock (iterjob)'
		         WHEN a.wait_event_type = 'Lock' THEN 'lock (other)'
		         -- (17 renamed them: WalSync for WALSync, ...)
		         WHEN lower(a.wait_event) IN ('walwrite', 'walsync', 'walinsert', 'walbufmapping',
		                                      'walwritelock', 'walinitsync', 'walinitwrite') THEN 'wal'
		         WHEN a.wait_event_type IS NULL THEN 'cpu'
		         ELSE 'other'
		       END
		  FROM pg_stat_activity a
		 WHERE a.application_name = 'pgbench' AND a.state = 'active';
		COMMIT;
		PERFORM pg_sleep(0.005);
	END LOOP;
END $$;
INSERT INTO live_samples SELECT :'case_name', at, kind FROM s;
SQL
	SAMPLER_PID=$!
}
stop_sampler() {
	q -c "INSERT INTO live_stop DEFAULT VALUES" >/dev/null
	wait "$SAMPLER_PID"
}
wal_bytes() { q -c "SELECT wal_bytes FROM pg_stat_wal"; }

# end_latency CASE: pgbench's mean latency of END (the commit), in ms, over
# the case's chunks, weighted by their transactions
end_latency() {
	awk '/number of transactions actually processed:/ { n = $6 }
		/^ +[0-9.]+ .* END;$/ { s += $1 * n; c += n }
		END { if (c > 0) printf "%.2f", s / c; else print "-" }' "$LOGS/$1"/chunk*.out
}

reset_column() {
	q -c "SET client_min_messages = warning" -c "ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS w" \
		-c "ALTER TABLE pgbench_accounts ADD COLUMN w int" \
		-c "VACUUM pgbench_accounts" -c "CHECKPOINT"
}

ACTION='UPDATE pgbench_accounts SET w = aid % 1000 WHERE aid = ANY($1)'
# run_iterjob ARGS: enqueue, poll, print the job's finished_at (epoch)
run_iterjob() {
	local id
	id=$(q -v action="$ACTION" <<<"SELECT iterjob.enqueue('pgbench_accounts', :'action', $1)")
	until [ "$(q -c "SELECT state IN ('succeeded','failed','cancelled') FROM iterjob.job WHERE id = $id")" = t ]; do
		sleep 0.5
	done
	[ "$(q -c "SELECT state FROM iterjob.job WHERE id = $id")" = succeeded ] || { echo "job $id failed" >&2; exit 1; }
	q -c "SELECT extract(epoch FROM finished_at) FROM iterjob.job WHERE id = $id"
}

case_setting() {
	case "$1" in
	2n* | 3n*) echo "iterjob.worker_nice = $NICE" ;;
	2f* | 3f*) echo "iterjob.max_foreground_wait = -1" ;;
	3w*) echo "iterjob.max_wal_per_second = '$WAL_CAP'" ;;
	2a* | 3a*) echo "iterjob.max_foreground_commit_wait = '$COMMIT_WAIT'" ;;
	esac
}

RESULTS=$LOGS/results
: >"$RESULTS"
run_case() {
	local name=$1 t0 t1 setting load wal0 wal1 log0 paced
	reset_column
	setting=$(case_setting "$name")
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM SET $setting" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
	fi
	load=$(cut -d' ' -f1 /proc/loadavg)
	start_traffic "${name%% *}"
	sleep "$WARMUP_S"
	start_sampler "${name%% *}"
	wal0=$(wal_bytes)
	log0=$(stat -c %s "$CLUSTER_DIR/server.log")
	t0=$(now)
	case "$name" in
	0*) sleep "$BASELINE_S"; t1=$(now) ;;
	1*) q -c "UPDATE pgbench_accounts SET w = aid % 1000"; t1=$(now) ;;
	"2 "* | 2n* | 2f* | 2a*) t1=$(run_iterjob "instances => 1, batch_size => 1000") ;;
	"3 "* | 3n* | 3f* | 3w* | 3a*) t1=$(run_iterjob "instances => 2, batch_size => 1000, partition => 'range'") ;;
	4*) t1=$(run_iterjob "instances => 1, batch_size => 1000, target_batch_time => '100ms'") ;;
	esac
	wal1=$(wal_bytes)
	# the instances that slowed down for the sessions' WAL waits, and how often
	paced=$(tail -c +$((log0 + 1)) "$CLUSTER_DIR/server.log" | grep -c "slowing down for the foreground" || true)
	stop_sampler
	stop_traffic
	if [ -n "$setting" ]; then
		q -c "ALTER SYSTEM RESET ${setting%% *}" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	if [ "${name%% *}" != 0 ]; then
		[ "$(q -c "SELECT count(*) FROM pgbench_accounts WHERE w IS DISTINCT FROM aid % 1000")" = 0 ] ||
			{ echo "$name left rows unfilled" >&2; exit 1; }
	fi
	q -c "DELETE FROM iterjob.job"
	# name|seconds|p50 p99 max count|load before|load after|WAL bytes|END ms|paced
	echo "$name|$(echo "$t1 - $t0" | bc)|$(latencies "${name%% *}" "$t0" "$t1")|$load|$(cut -d' ' -f1 /proc/loadavg)|$((wal1 - wal0))|$(end_latency "${name%% *}")|$paced" >>"$RESULTS"
	echo "   $(tail -1 "$RESULTS")"
}

CASES=("0 no backfill" "1 one UPDATE" "2 iterjob 1 instance, batch 1000"
	"3 iterjob 2 instances, range" "4 iterjob 1 instance, target_batch_time 100ms"
	"2n iterjob 1 instance, worker_nice $NICE" "3n iterjob 2 instances, range, worker_nice $NICE"
	"2f iterjob 1 instance, max_foreground_wait -1" "3f iterjob 2 instances, range, max_foreground_wait -1"
	"3w iterjob 2 instances, range, max_wal_per_second $WAL_CAP"
	"2a iterjob 1 instance, max_foreground_commit_wait $COMMIT_WAIT"
	"3a iterjob 2 instances, range, max_foreground_commit_wait $COMMIT_WAIT")
for c in "${CASES[@]}"; do
	if [ -n "${LIVE_CASES:-}" ] && ! [[ " $LIVE_CASES " == *" ${c%% *} "* ]]; then
		continue
	fi
	echo "== $c"
	run_case "$c"
done

echo
echo "== beside pgbench (tpcb-like, $CLIENTS clients, -R $RATE, scale $SCALE): latency of the" \
	"transactions started during the backfill, $("$PG_CONFIG" --version)"
base=$(awk -F'|' '$1 ~ /^0 / { split($3, l, " "); print l[2] }' "$RESULTS")
echo "| case | backfill time | rows/s | pgbench p50 | p99 | max | transactions | p99 x baseline | load avg before/after |"
echo "|---|---|---|---|---|---|---|---|---|"
while IFS='|' read -r name secs lat load0 load1 _; do
	read -r p50 p99 max count <<<"$lat"
	if [ "${name%% *}" = 0 ]; then
		time="-" rate="-"
	else
		time=$(printf "%.1f s" "$secs") rate=$(printf "%.0f" "$(echo "$ROWS / $secs" | bc -l)")
	fi
	ratio="-"
	if [ -n "$base" ] && [ "$base" != "-" ] && [ "$p99" != "-" ]; then
		ratio=$(printf "%.1f" "$(echo "$p99 / $base" | bc -l)")
	fi
	echo "| $name | $time | $rate | $p50 ms | $p99 ms | $max ms | $count | $ratio | $load0 / $load1 |"
done <"$RESULTS"

echo
echo "== where the application's active time went while each case ran (share of the samples" \
	"of active pgbench sessions, every 5 ms), the WAL written per second, and pgbench's mean" \
	"commit (END) latency, and how many times an instance slowed down for the foreground" \
	"(iterjob.max_foreground_commit_wait)"
echo "| case | samples | lock held by iterjob | other lock | WAL | CPU | other waits | WAL MB/s | commit ms | paced |"
echo "|---|---|---|---|---|---|---|---|---|---|"
while IFS='|' read -r name secs _ _ _ wal end paced; do
	shares=$(q -F' ' -c "
SELECT count(*),
       round(100.0 * count(*) FILTER (WHERE kind = 'lock (iterjob)') / greatest(count(*), 1)),
       round(100.0 * count(*) FILTER (WHERE kind = 'lock (other)') / greatest(count(*), 1)),
       round(100.0 * count(*) FILTER (WHERE kind = 'wal') / greatest(count(*), 1)),
       round(100.0 * count(*) FILTER (WHERE kind = 'cpu') / greatest(count(*), 1)),
       round(100.0 * count(*) FILTER (WHERE kind = 'other') / greatest(count(*), 1))
  FROM live_samples WHERE case_name = '${name%% *}'")
	read -r n lk lo wl cpu oth <<<"$shares"
	mbs=$(printf "%.1f" "$(echo "$wal / $secs / 1048576" | bc -l)")
	echo "| $name | $n | $lk% | $lo% | $wl% | $cpu% | $oth% | $mbs | $end | $paced |"
done <"$RESULTS"
