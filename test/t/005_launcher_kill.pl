# SIGTERM to the iterjob launcher (pg_terminate_backend, as a "terminate
# every other session" script does) while a job runs.  The running workers
# finish their job exactly once, and the launcher must come back (it is a
# static background worker with a restart time), so that a job enqueued
# afterwards runs.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IterjobTest;

my $ROWS = 1_000_000;
my $db = 'postgres';

my $node = iterjob_node('launcher_kill');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);

my $label = 'SIGTERM to the launcher';
my $job = enqueue_job($node, $db, 'items');
wait_rows($node, $db, $job, 0.10 * $ROWS);
my ($pid, $terminated, $done) = split /\|/, $node->safe_psql($db, qq{
SELECT pid, pg_terminate_backend(pid),
       (SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job)
  FROM pg_stat_activity WHERE backend_type = 'iterjob launcher'});
is($terminated, 't', "$label: pg_terminate_backend($pid) on the launcher");
ok($done < 0.6 * $ROWS, "$label: the job was mid-run ($done of $ROWS rows done)");
ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 10),
	"$label: the launcher $pid is gone");

# its bgw_restart_time is 5 s
ok(wait_for($node, $db, q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob launcher'}, '1', 15),
	"$label: a new iterjob launcher runs within 15 s");

check_job_exact($node, $db, $job, 'items', $label);

make_table($node, $db, 'later', 10_000);
my $job2 = enqueue_job($node, $db, 'later', instances => 2, batch_size => 100);
is($node->safe_psql($db, "SELECT iterjob.wait($job2, '30s')"), 'succeeded',
	"$label: a job enqueued after the launcher was terminated runs and succeeds");

done_testing();
