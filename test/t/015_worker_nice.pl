# iterjob.worker_nice: iteration workers run at that nice value (read from
# /proc/<pid>/stat, as ps shows it), foreground backends at the server's;
# after a reload, the workers started from then on run at the new value,
# higher or lower; a running worker goes higher at its next task, and keeps
# its value when the setting goes lower, saying so in the log once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IterjobTest;

my $db = 'postgres';
# every job here has a worker started for it, or the one running worker
# (no warm worker of an earlier job takes it: a worker's nice value can go
# higher, not lower)
my $node = iterjob_node('worker_nice', 'iterjob.worker_nice = 7', 'iterjob.worker_idle_time = 0');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', 2000);

# field 19 of /proc/<pid>/stat, counted after the command name in parentheses
sub nice_of
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return "no /proc/$pid/stat: $!";
	my $stat = <$fh>;
	close $fh;
	$stat =~ s/^.*\)\s+//s;
	my @f = split /\s+/, $stat;
	return $f[16];    # fields 3.. here: field 19 is the 17th
}

# a job slow enough (10 batches of 0.3 s) to find its worker running
sub run_and_check
{
	my ($expected, $label) = @_;
	my $job = enqueue_job($node, $db, 'items', instances => 1, batch_size => 200,
		action => 'WITH s AS (SELECT pg_sleep(0.3)) '
		  . 'UPDATE items SET n = n + 1 WHERE id = ANY($1) AND EXISTS (SELECT FROM s)');
	ok(wait_for($node, $db,
		"SELECT count(*) FROM iterjob.task_progress WHERE job_id = $job AND worker_pid IS NOT NULL",
		'1', 60), "$label: the job's worker runs");
	my $pid = $node->safe_psql($db,
		"SELECT worker_pid FROM iterjob.task_progress WHERE job_id = $job");
	is(nice_of($pid), $expected, "$label: its worker $pid runs at nice $expected");
	ok(wait_for($node, $db, "SELECT state FROM iterjob.job WHERE id = $job", 'succeeded', 120),
		"$label: the job succeeds");
	is($node->safe_psql($db, 'SELECT count(*) FROM items WHERE n <> 1'), '0',
		"$label: every row once");
	reset_table($node, $db, 'items');
	return;
}

run_and_check(7, 'iterjob.worker_nice = 7');

my $session_nice = $node->safe_psql($db, q{
SELECT split_part(regexp_replace(pg_read_file('/proc/' || pg_backend_pid() || '/stat'),
                                 '^.*\) ', ''), ' ', 17)});
is($session_nice, '0', 'a foreground backend keeps nice 0');

$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.worker_nice = 12');
$node->reload;
run_and_check(12, 'raised to 12 by a reload');

$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.worker_nice = 3');
$node->reload;
run_and_check(3, 'lowered to 3 by a reload, a new worker');

# one worker runs both jobs: it claims the second after the reload
$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.max_workers = 1');
$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.worker_nice = 9');
$node->reload;
make_table($node, $db, 'items2', 2000);
my $slow = 'WITH s AS (SELECT pg_sleep(0.3)) UPDATE %s SET n = n + 1 WHERE id = ANY($1) AND EXISTS (SELECT FROM s)';
my $first = enqueue_job($node, $db, 'items', instances => 1, batch_size => 200,
	action => sprintf($slow, 'items'));
my $second = enqueue_job($node, $db, 'items2', instances => 1, batch_size => 200,
	action => sprintf($slow, 'items2'));
ok(wait_for($node, $db,
	"SELECT count(*) FROM iterjob.task_progress WHERE job_id = $first AND worker_pid IS NOT NULL",
	'1', 60), 'a running worker: it runs the first job');
my $pid = $node->safe_psql($db, "SELECT worker_pid FROM iterjob.task_progress WHERE job_id = $first");
is(nice_of($pid), '9', 'a running worker: at nice 9');
my $off = log_offset($node);
$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.worker_nice = 2');
$node->reload;
ok(wait_for($node, $db,
	"SELECT worker_pid FROM iterjob.task_progress WHERE job_id = $second AND worker_pid IS NOT NULL",
	$pid, 60), 'a running worker: the same worker claims the second job');
is(nice_of($pid), '9', 'a running worker: it cannot go lower and keeps nice 9');
ok(wait_log($node, qr/this worker keeps nice value 9; iterjob.worker_nice = 2 applies to workers started from now on/,
	$off, 30), 'a running worker: the log says why, once');
ok(wait_for($node, $db, "SELECT count(*) FROM iterjob.job WHERE id IN ($first, $second) AND state = 'succeeded'",
	'2', 120), 'a running worker: both jobs succeed');
my @lines = log_since($node, $off) =~ /this worker keeps nice value/g;
is(scalar @lines, 1, 'a running worker: one log line for its two claims after the reload');

$node->stop;
done_testing();
