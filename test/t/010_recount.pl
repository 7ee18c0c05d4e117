# iterjob.recount() blocks no running batch: while it counts (slowly, here)
# in a session of its own, the job's batches go on committing under a
# statement timeout of 1 s, and none fails.  Then rows_total holds the
# exact counts.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $node = iterjob_node('recount');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', 40000);

# the filter sleeps only in a session that sets app.slow: the recount's
$node->safe_psql($db, q{
CREATE FUNCTION slow_in_recount(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('app.slow', true) = 'on' AND id % 499 = 0 THEN
    PERFORM pg_sleep(0.05);
  END IF;
  RETURN true;
END $$;});

my $job = $node->safe_psql($db, q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       filter => 'slow_in_recount(id)', instances => 4, batch_size => 50,
                       batch_pause => '50ms', statement_timeout => '1s')});
wait_rows($node, $db, $job, 2000);

my $before = $node->safe_psql($db, "SELECT sum(batches_done) FROM iterjob.task WHERE job_id = $job");
my $t0 = time;
my $total = $node->safe_psql($db, "SET app.slow = on; SELECT iterjob.recount($job)");
my $took = time - $t0;
my $after = $node->safe_psql($db, "SELECT sum(batches_done) FROM iterjob.task WHERE job_id = $job");
note(sprintf('recount took %.1f s; batches %d before, %d after', $took, $before, $after));

ok($took >= 2, sprintf('the recount counted slowly: %.1f s', $took));
is($total, '40000', 'recount returns the exact total');
ok($after - $before >= 8,
	'batches went on committing during the recount (' . ($after - $before) . ' of them)');
is($node->safe_psql($db, "SELECT state FROM iterjob.job WHERE id = $job"), 'running',
	'the job still ran when the recount ended (the test saw the overlap)');
is($node->safe_psql($db, "SELECT rows_total FROM iterjob.job WHERE id = $job"), '40000',
	'job rows_total is the exact count');
is($node->safe_psql($db, "SELECT string_agg(rows_total::text, ',' ORDER BY instance) FROM iterjob.task WHERE job_id = $job"),
	'10000,10000,10000,10000', 'each instance has its exact count');
check_job_exact($node, $db, $job, 'items', 'recount');
is($node->safe_psql($db, "SELECT count(*) FROM iterjob.errors WHERE job_id = $job"), '0',
	'no batch failed (none waited for the recount until its statement timeout)');

$node->stop;
done_testing();
