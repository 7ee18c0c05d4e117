# iterjob.worker_nice: iteration workers run at that nice value (read from
# /proc/<pid>/stat, as ps shows it), foreground backends at the server's;
# after a reload, the workers started from then on run at the new value,
# higher or lower.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IterjobTest;

my $db = 'postgres';
my $node = iterjob_node('worker_nice', 'iterjob.worker_nice = 7');
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

$node->stop;
done_testing();
