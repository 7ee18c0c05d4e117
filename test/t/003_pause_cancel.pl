# iterjob.pause() and iterjob.cancel() while a worker is stuck in a long
# action.  The call must return at once (not after the batch); the batch in
# flight is interrupted and rolled back within a second, with no failed
# attempt; no further batch starts; the workers leave.  A resumed job then
# ends with every row visited exactly once; a cancelled one has visited
# exactly the keys up to each instance's cursor.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use IterjobTest;

my $db = 'postgres';
my $ROWS = 40;            # 2 instances of 20 keys, batches of 5: 4 batches each
my $BATCH = 5;
my $SLEEP = 2;            # seconds, once per batch
my $ACTION = "WITH s AS MATERIALIZED (SELECT pg_sleep($SLEEP)) "
  . 'UPDATE t SET n = n + 1 FROM s WHERE id = ANY($1)';

my $node = iterjob_node('pause_cancel');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 't', $ROWS);

my $workers_sleeping = q{(SELECT count(*) FROM pg_stat_activity
   WHERE backend_type = 'iterjob worker' AND datname = current_database()
     AND wait_event = 'PgSleep')};

# Wait until both instances have committed a batch and both workers sleep
# in the action of the next one; then call iterjob.$call() at once, in the
# same session.  Returns (per-instance rows_done before the call as
# "0:r0,1:r1", the call's result, its duration in s, how long after it
# returned no worker slept in a batch of the job any more, in s, or -1 when
# they still did after a second).
sub steer_mid_batch
{
	my ($job, $call) = @_;
	my $out = $node->safe_psql($db, qq{
DO \$\$
DECLARE deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  LOOP
    EXIT WHEN (SELECT count(*) FROM iterjob.task_progress
                WHERE job_id = $job AND state = 'running' AND batches_done >= 1) = 2
          AND $workers_sleeping = 2;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'job $job: no batch in flight on both instances after 60 s';
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;
END
\$\$;
SELECT string_agg(instance || ':' || rows_done, ',' ORDER BY instance) AS before
  FROM iterjob.task_progress WHERE job_id = $job \\gset
SELECT clock_timestamp() AS t0 \\gset
SELECT iterjob.$call($job) AS result \\gset
SELECT set_config('tap.returned', clock_timestamp()::text, false) AS t1,
       extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric(10, 3) AS secs \\gset
DO \$\$
BEGIN
  WHILE $workers_sleeping > 0
        AND clock_timestamp() < current_setting('tap.returned')::timestamptz + interval '1 s' LOOP
    PERFORM pg_sleep(0.005);
    PERFORM pg_stat_clear_snapshot();
  END LOOP;
END
\$\$;
SELECT :'before' || '|' || :'result' || '|' || :'secs' || '|'
       || CASE WHEN $workers_sleeping > 0 THEN '-1'
               ELSE extract(epoch FROM clock_timestamp() - :'t1'::timestamptz)::numeric(10, 3)::text END;
});
	return split /\|/, $out;
}

sub per_instance_rows
{
	my ($job) = @_;
	return $node->safe_psql($db, qq{
SELECT string_agg(instance || ':' || rows_done, ',' ORDER BY instance)
  FROM iterjob.task_progress WHERE job_id = $job});
}


# Rows with n = 1 are exactly the keys up to their instance's cursor, and
# no row has n > 1.  Returns "bad rows|rows with n = 1|sum(rows_done)".
sub cursor_agreement
{
	my ($job) = @_;
	return $node->safe_psql($db, qq{
SELECT (SELECT count(*) FROM t JOIN iterjob.task_progress p
          ON p.job_id = $job AND p.instance = t.id % 2
         WHERE t.n NOT IN (0, 1)
            OR (t.n = 1) <> (t.id <= coalesce((p.cursor ->> 'inner_cursor')::bigint, 0)))
       || '|' || (SELECT count(*) FROM t WHERE n = 1)
       || '|' || (SELECT sum(rows_done) FROM iterjob.task_progress WHERE job_id = $job)});
}

# After the batch in flight was rolled back and the workers left: the state
# of the job's tasks and rows; then, after longer than a batch, the same.
sub check_stopped
{
	my ($label, $job, $state, $before) = @_;
	ok(wait_for($node, $db, qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'iterjob worker' AND datname = current_database()}, '0', 10),
		"$label: the workers leave after the batch in flight");
	is(per_instance_rows($job), $before,
		"$label: each instance's batch in flight was rolled back, and no other ran (rows_done: $before)");
	is($node->safe_psql($db, qq{
SELECT sum(attempts) || '|' || (SELECT count(*) FROM iterjob.errors WHERE job_id = $job)
  FROM iterjob.task_progress WHERE job_id = $job}), '0|0',
		"$label: no failed attempt counted, no error logged");
	my ($bad, $ones, $sum) = split /\|/, cursor_agreement($job);
	is($bad, '0', "$label: rows with n = 1 are exactly the keys <= their instance's inner_cursor, none has n > 1");
	is($ones, $sum, "$label: rows with n = 1 ($ones) = sum(rows_done) ($sum)");
	is($node->safe_psql($db, qq{
SELECT string_agg(state || '/' || coalesce(worker_pid::text, 'null'), ',' ORDER BY instance)
  FROM iterjob.task_progress WHERE job_id = $job}),
		"$state/null,$state/null", "$label: both tasks are $state with worker_pid null");
	is($node->safe_psql($db, "SELECT state FROM iterjob.job_progress WHERE job_id = $job"),
		$state, "$label: the job is $state");

	my $snapshot = per_instance_rows($job) . ' ' . cursor_agreement($job);
	sleep($SLEEP * 1.5);
	is(per_instance_rows($job) . ' ' . cursor_agreement($job), $snapshot,
		"$label: after ${\($SLEEP * 1.5)} s (longer than a batch) no further batch ran");
	is($node->safe_psql($db, qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'iterjob worker' AND datname = current_database()}), '0',
		"$label: still no iterjob worker connected");
	return;
}

# --- pause while a batch is in flight, then resume -----------------------

{
	my $label = 'pause';
	my $job = enqueue_job($node, $db, 't', instances => 2, batch_size => $BATCH,
		action => $ACTION);
	my ($before, $result, $secs, $left) = steer_mid_batch($job, 'pause');
	is($result, 'paused', "$label: iterjob.pause returns paused");
	cmp_ok($secs, '<', $SLEEP / 2,
		"$label: iterjob.pause returned promptly (${secs} s), not after the ${SLEEP} s batch");
	ok($left >= 0, "$label: within a second of its return no batch of the job sleeps any more ($left s)");
	check_stopped($label, $job, 'paused', $before);

	is($node->safe_psql($db, "SELECT iterjob.resume($job)"), 'running',
		"$label: iterjob.resume returns running");
	check_job_exact($node, $db, $job, 't', "$label, resume", wait => '60s');
}

# --- cancel while a batch is in flight -----------------------------------

reset_table($node, $db, 't');
{
	my $label = 'cancel';
	my $job = enqueue_job($node, $db, 't', instances => 2, batch_size => $BATCH,
		action => $ACTION);
	my ($before, $result, $secs, $left) = steer_mid_batch($job, 'cancel');
	is($result, 'cancelled', "$label: iterjob.cancel returns cancelled");
	cmp_ok($secs, '<', $SLEEP / 2,
		"$label: iterjob.cancel returned promptly (${secs} s), not after the ${SLEEP} s batch");
	ok($left >= 0, "$label: within a second of its return no batch of the job sleeps any more ($left s)");
	is($node->safe_psql($db, "SELECT iterjob.wait($job, '30s')"), 'cancelled',
		"$label: iterjob.wait returns cancelled");
	check_stopped($label, $job, 'cancelled', $before);
	my ($ones) = (split /\|/, cursor_agreement($job))[1];
	ok($ones > 0 && $ones < $ROWS, "$label: the job was cut short ($ones of $ROWS rows visited)");
	is($node->safe_psql($db, "SELECT instances_done FROM iterjob.job_progress WHERE job_id = $job"),
		'2', "$label: job_progress counts both instances done");
}

done_testing();
