# Restarting the server mid-run: pg_ctl restart -m fast, and an immediate
# stop (no shutdown checkpoint: crash recovery at start) followed by a
# start.  Work must resume after start-up with no user action, with every
# key visited exactly once, and every running task must get a live worker.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IterjobTest;

my $ROWS = 1_000_000;
my ($LO, $HI) = (0.10 * $ROWS, 0.60 * $ROWS);
my $db = 'postgres';

my $node = iterjob_node('restart');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);

sub rows_done
{
	my ($job) = @_;
	return poll_value($node, $db, "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job");
}

# Interrupt a job over items mid-run with $fault, then let it finish.
sub restart_test
{
	my ($label, $fault, $shutdown_log) = @_;
	my $job = enqueue_job($node, $db, 'items');
	wait_rows($node, $db, $job, $LO);
	my $off = log_offset($node);
	my $before = rows_done($job);
	$fault->();
	ok($before >= $LO && $before < $HI,
		"$label: interrupted mid-run ($before of $ROWS rows done just before)");
	ok(wait_log($node, $shutdown_log, $off), "$label: the server log shows the shutdown");
	ok(wait_log($node, qr/database system is ready to accept connections/, $off),
		"$label: the server started again");
	my ($state, $after) = split /\|/, poll_value($node, $db, qq{
SELECT state || '|' || rows_done FROM iterjob.job_progress WHERE job_id = $job});
	ok($after < $ROWS && $state ne 'succeeded',
		"$label: the job had not finished when the server went down ($after rows committed, $state)");
	check_no_orphans($node, $db, $job, $label, timeout => 10);
	check_job_exact($node, $db, $job, 'items', $label);
	return;
}

# --- 3a. pg_ctl restart -m fast -----------------------------------------

restart_test(
	'restart -m fast',
	sub {
		$node->command_ok(
			[
				'pg_ctl', '-w', '-D', $node->data_dir, '-l', $node->logfile,
				'-m', 'fast', 'restart'
			],
			'restart -m fast: pg_ctl restart -m fast');
		$node->_update_pid(1);
	},
	qr/received fast shutdown request/);

# --- 3b. immediate stop, then start --------------------------------------

reset_table($node, $db, 'items');
restart_test(
	'stop immediate + start',
	sub {
		$node->stop('immediate');
		$node->start;
	},
	qr/received immediate shutdown request/);

# --- 5. after an immediate stop, every running task gets a live worker ---
# A job slow enough (one 0.25 s sleep per batch, ~10 s per instance) that
# this must hold while it still runs, not merely because it ended.

{
	my $label = 'stop immediate + start, slow job';
	my $rows = 40_000;
	make_table($node, $db, 'slow', $rows);
	my $job = enqueue_job($node, $db, 'slow', batch_size => 250,
		action => 'WITH s AS MATERIALIZED (SELECT pg_sleep(0.25)) '
		  . 'UPDATE slow SET n = n + 1 FROM s WHERE id = ANY($1)');
	wait_rows($node, $db, $job, $rows / 5);
	is(poll_value($node, $db, qq{
SELECT count(*) FROM iterjob.task_progress t
  JOIN pg_stat_activity a ON a.pid = t.worker_pid AND a.backend_type = 'iterjob worker'
 WHERE t.job_id = $job AND t.state = 'running'}), '4',
		"$label: 4 instances run before the stop");
	my @old = worker_pids($node, $db);
	$node->stop('immediate');
	$node->start;
	my ($state, $running, $done) = split /\|/, poll_value($node, $db, qq{
SELECT j.state || '|' || count(*) FILTER (WHERE t.state = 'running') || '|' || sum(t.rows_done)
  FROM iterjob.job j JOIN iterjob.task t ON t.job_id = j.id
 WHERE j.id = $job GROUP BY j.state});
	is("$state|$running", 'running|4',
		"$label: after start-up the job and its 4 tasks are still marked running ($done rows done)");
	check_no_orphans($node, $db, $job, $label, timeout => 10, while_running => 1);
	my $old = join(',', @old);
	is(poll_value($node, $db, qq{
SELECT count(*) FROM iterjob.task
 WHERE job_id = $job AND state = 'running' AND worker_pid IN ($old)}), '0',
		"$label: no running task still names a worker from before the stop");
	check_job_exact($node, $db, $job, 'slow', $label);
}

done_testing();
