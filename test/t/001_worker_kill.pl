# Killing iterjob workers mid-run: SIGTERM to one worker (it dies alone,
# its task is reclaimed), SIGKILL to one worker (the postmaster's
# crash-restart cycle), SIGTERM to one worker of a slow job (the reclaim is
# watched while the job runs) and SIGTERM to every worker at once.  After
# each, the job must finish by itself with every key visited exactly once,
# and no task may stay running without a live worker.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use IterjobTest;

my $ROWS = 1_000_000;
my ($LO, $HI) = (0.10 * $ROWS, 0.60 * $ROWS);
my $db = 'postgres';

my $node = iterjob_node('worker_kill');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);

# The SQL that picks a worker working on job $job and reports
# "instance|pid|rows_done of the job" ($terminate: and pg_terminate_backend()).
sub pick_worker
{
	my ($job, $terminate) = @_;
	my $kill = $terminate ? ', pg_terminate_backend(pid)' : '';
	return qq{
WITH victim AS MATERIALIZED (
  SELECT t.instance, a.pid
    FROM iterjob.task_progress t
    JOIN pg_stat_activity a ON a.pid = t.worker_pid AND a.backend_type = 'iterjob worker'
   WHERE t.job_id = $job AND t.state = 'running'
   ORDER BY t.instance LIMIT 1)
SELECT instance, pid,
       (SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job)$kill
  FROM victim};
}

# --- 1. SIGTERM to one worker (pg_terminate_backend) --------------------

{
	my $label = 'SIGTERM';
	my $job = enqueue_job($node, $db, 'items');
	wait_rows($node, $db, $job, $LO);
	my $off = log_offset($node);
	my ($instance, $pid, $done, $terminated) = split /\|/,
	  $node->safe_psql($db, pick_worker($job, 1));
	ok(defined $pid && $pid =~ /^\d+$/, "$label: found a worker running an instance of job $job");
	is($terminated, 't', "$label: pg_terminate_backend($pid) on the worker of instance $instance");
	ok($done >= $LO && $done < $HI,
		"$label: interrupted mid-run ($done of $ROWS rows done)");

	ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 10),
		"$label: the terminated worker $pid is gone");
	ok(wait_log($node, qr/terminating background worker "iterjob worker[^"]*" due to administrator command/, $off),
		"$label: the server log shows the worker terminated by SIGTERM");
	check_no_orphans($node, $db, $job, $label, timeout => 10);
	check_job_exact($node, $db, $job, 'items', $label);
	is($node->safe_psql($db, qq{
SELECT state || '|' || rows_done FROM iterjob.task_progress
 WHERE job_id = $job AND instance = $instance}),
		'succeeded|' . $ROWS / 4,
		"$label: the killed worker's instance $instance was picked up again and succeeded");
}

# --- 2. SIGKILL to one worker: crash-restart of the whole server ---------

reset_table($node, $db, 'items');
{
	my $label = 'SIGKILL';
	my $job = enqueue_job($node, $db, 'items');
	wait_rows($node, $db, $job, $LO);
	my $off = log_offset($node);
	my ($instance, $pid, $done) = split /\|/, $node->safe_psql($db, pick_worker($job, 0));
	ok(defined $pid && $pid =~ /^\d+$/, "$label: found a worker running an instance of job $job");
	is(kill('KILL', $pid), 1, "$label: kill -9 worker $pid of instance $instance");
	ok($done >= $LO && $done < $HI,
		"$label: interrupted mid-run ($done of $ROWS rows done)");

	ok(wait_log($node, qr/iterjob worker.*was terminated by signal 9/, $off),
		"$label: the server log shows the worker killed by signal 9");
	ok(wait_log($node, qr/all server processes terminated; reinitializing/, $off),
		"$label: the postmaster went through its crash-restart cycle");
	ok(wait_for($node, $db, 'SELECT true', 't', 60),
		"$label: the server accepts connections again after the crash");
	my $after = poll_value($node, $db, "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job");
	ok($after < $ROWS, "$label: the job was not finished at the crash ($after rows committed)");
	check_no_orphans($node, $db, $job, $label, timeout => 15);
	check_job_exact($node, $db, $job, 'items', $label);
	is($node->safe_psql($db, qq{
SELECT state FROM iterjob.task_progress WHERE job_id = $job AND instance = $instance}),
		'succeeded', "$label: the killed worker's instance $instance succeeded");
}

# --- 3. SIGTERM while the job is slow enough to watch the reclaim --------
# Each batch sleeps once (not per row), so the job runs ~10 s: the killed
# instance must get a new live worker while the job still runs.

{
	my $label = 'SIGTERM, slow job';
	my $rows = 40_000;
	make_table($node, $db, 'slow', $rows);
	my $job = enqueue_job($node, $db, 'slow', batch_size => 250,
		action => 'WITH s AS MATERIALIZED (SELECT pg_sleep(0.25)) '
		  . 'UPDATE slow SET n = n + 1 FROM s WHERE id = ANY($1)');
	wait_rows($node, $db, $job, $rows / 10);
	my ($instance, $pid, $done, $terminated) = split /\|/,
	  $node->safe_psql($db, pick_worker($job, 1));
	is($terminated, 't', "$label: pg_terminate_backend($pid) on the worker of instance $instance");
	ok($done < 0.6 * $rows, "$label: interrupted mid-run ($done of $rows rows done)");
	ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 10),
		"$label: the terminated worker $pid is gone");
	check_no_orphans($node, $db, $job, $label, timeout => 10, while_running => 1);
	ok(wait_for($node, $db, qq{
SELECT t.worker_pid <> $pid AND t.state = 'running'
  FROM iterjob.task_progress t
  JOIN pg_stat_activity a ON a.pid = t.worker_pid AND a.backend_type = 'iterjob worker'
 WHERE t.job_id = $job AND t.instance = $instance}, 't', 10),
		"$label: instance $instance is reclaimed by a new live worker while the job runs");
	check_job_exact($node, $db, $job, 'slow', $label);
}

# --- 4. SIGTERM to every worker at once ----------------------------------
# Four unclean exits at once: the launcher's per-database back-off must not
# strand the job; every instance is reclaimed while the job still runs.

reset_table($node, $db, 'slow');
{
	my $label = 'SIGTERM to all workers, slow job';
	my $rows = 40_000;
	my $job = enqueue_job($node, $db, 'slow', batch_size => 250,
		action => 'WITH s AS MATERIALIZED (SELECT pg_sleep(0.25)) '
		  . 'UPDATE slow SET n = n + 1 FROM s WHERE id = ANY($1)');
	wait_rows($node, $db, $job, $rows / 10);
	my @pids = worker_pids($node, $db);
	is(scalar(@pids), 4, "$label: 4 workers run job $job");
	my $list = join(',', @pids);
	my ($killed, $done) = split /\|/, $node->safe_psql($db, qq{
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)),
       (SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job)
  FROM pg_stat_activity WHERE pid IN ($list)});
	is($killed, '4', "$label: pg_terminate_backend on all 4 workers");
	ok($done < 0.6 * $rows, "$label: interrupted mid-run ($done of $rows rows done)");
	ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ($list)", '0', 10),
		"$label: the terminated workers are gone");
	check_no_orphans($node, $db, $job, $label, timeout => 10, while_running => 1);
	is(poll_value($node, $db, qq{
SELECT count(*) FROM iterjob.task
 WHERE job_id = $job AND state = 'running' AND worker_pid IN ($list)}), '0',
		"$label: no running task still names a terminated worker");
	check_job_exact($node, $db, $job, 'slow', $label);
}

done_testing();
