# iterjob.recount() counts in a worker of its own, bound to the job's owner:
#
#   a. it blocks no running batch: while it counts (slowly, here: the
#      filter sleeps only in the recount's worker), the job's batches go on
#      committing under a statement timeout of 1 s, and none fails; then
#      rows_total holds the exact counts;
#   b. cancelled by another session (pg_cancel_backend of the caller) while
#      its worker waits in the owner's filter for a lock: the call fails
#      with 57014, and no recount worker is left once it has;
#   c. with no background worker slot free (max_worker_processes = 1), it
#      fails at once with 53000 and says why.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $node = iterjob_node('recount');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', 40000);

my $recount_workers = q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob recount'};

# --- a. batches go on while a recount counts ------------------------------------

# the filter sleeps only in the process that recounts
$node->safe_psql($db, q{
CREATE FUNCTION slow_in_recount(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF id % 499 = 0 AND (SELECT backend_type FROM pg_stat_activity
                        WHERE pid = pg_backend_pid()) = 'iterjob recount' THEN
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
my $total = $node->safe_psql($db, "SELECT iterjob.recount($job)");
my $took = time - $t0;
my $after = $node->safe_psql($db, "SELECT sum(batches_done) FROM iterjob.task WHERE job_id = $job");
note(sprintf('recount took %.1f s; batches %d before, %d after', $took, $before, $after));

ok($took >= 2, sprintf('the recount counted slowly (in its worker): %.1f s', $took));
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
is($node->safe_psql($db, $recount_workers), '0', 'no recount worker is left');

# --- b. the caller cancelled while its worker waits ----------------------------------

# a paused job whose filter waits for an advisory lock a session holds
$node->safe_psql($db, q{
CREATE FUNCTION wait_for_go(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(4242);
  RETURN true;
END $$;});
my $blocked = $node->safe_psql($db, q{
BEGIN;
SELECT iterjob.enqueue('items', 'SELECT 1', filter => 'wait_for_go(id)') \gset
SELECT iterjob.pause(:enqueue) AS paused \gset
COMMIT;
SELECT :enqueue});

my ($lock_out, $lock_err) = ('', '');
my $locker = IPC::Run::start(
	[
		'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', $db,
		'-c', 'SELECT pg_advisory_lock(4242); SELECT pg_sleep(600)'
	],
	'>', \$lock_out, '2>', \$lock_err);
ok(wait_for($node, $db, q{
SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_advisory_lock(4242); SELECT pg_sleep(600)'
   AND wait_event = 'PgSleep'}, '1', 30), 'b: a session holds the advisory lock');

my ($rc_out, $rc_err) = ('', '');
my $caller = IPC::Run::start(
	[
		'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', $db,
		'-v', 'ON_ERROR_STOP=1', '-c', "SELECT iterjob.recount($blocked)"
	],
	'>', \$rc_out, '2>', \$rc_err);
ok(wait_for($node, $db, q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'iterjob recount' AND wait_event_type = 'Lock' AND wait_event = 'advisory'},
		'1', 30),
	'b: the recount\'s worker waits for the lock in the owner\'s filter');
my $caller_pid = $node->safe_psql($db, q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND query LIKE 'SELECT iterjob.recount(%'});
like($caller_pid, qr/^\d+$/, "b: the caller is backend $caller_pid");
is($node->safe_psql($db, "SELECT pg_cancel_backend($caller_pid)"), 't', 'b: the caller is cancelled');
$caller->finish;
like($rc_err, qr/ERROR:  canceling statement due to user request/,
	'b: the recount fails: canceling statement due to user request');
is($node->safe_psql($db, $recount_workers), '0',
	'b: once the call has failed, no recount worker is left');
is($node->safe_psql($db, "SELECT iterjob.cancel($blocked)"), 'cancelled', 'b: the paused job is cancelled');
$locker->kill_kill;

# --- c. no background worker slot free -------------------------------------------------

my $paused = $node->safe_psql($db, q{
BEGIN;
SELECT iterjob.enqueue('items', 'SELECT 1') \gset
SELECT iterjob.pause(:enqueue) AS paused \gset
COMMIT;
SELECT :enqueue});
# the server's own background workers (iterjob's launcher among them)
# take the one slot there is
$node->append_conf('postgresql.conf', "max_worker_processes = 1\n");
$node->restart;
my ($ret, $out, $err) = $node->psql($db, "SELECT iterjob.recount($paused)",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'c: with no worker slot free, recount fails');
like($err, qr/ERROR:  53000: could not start a worker to recount iterjob job $paused/,
	'c: ... with 53000 (insufficient_resources) and the job');
like($err, qr/HINT:  Try again when fewer background workers run, or raise max_worker_processes/,
	'c: ... and what to do');
is($node->safe_psql($db, "SELECT iterjob.cancel($paused)"), 'cancelled', 'c: the paused job is cancelled');

$node->stop;
done_testing();
