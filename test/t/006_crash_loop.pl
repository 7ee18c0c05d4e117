# A batch whose worker dies is a failed attempt: an action that ends its
# own process (FATAL), and a batch whose worker the test kills with SIGKILL
# each time it reaches the same keys (a crash-restart of the whole server
# each time), both end the job failed after max_attempts attempts, spaced
# by the backoff, with the deaths in iterjob.errors, instead of retrying
# for ever.  Batches committed before stay committed, once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $node = iterjob_node('crash_loop');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', 20000);

sub enqueue_failing
{
	my ($action) = @_;
	$action =~ s/'/''/g;
	return $node->safe_psql($db, qq{
SELECT iterjob.enqueue('items', '$action', batch_size => 1000, max_attempts => 3)});
}

sub count_matches
{
	my ($re, $off) = @_;
	my @m = log_since($node, $off) =~ /$re/g;
	return scalar @m;
}

# --- 1. the action ends its own process when its batch holds key 5000 ----

{
	my $label = 'self-termination';
	my $off = log_offset($node);
	my $t0 = time;
	my $job = enqueue_failing(q{UPDATE items SET n = n + 1 WHERE id = ANY($1)
	    AND (5000 <> ALL($1) OR pg_terminate_backend(pg_backend_pid()))});
	ok(wait_for($node, $db, "SELECT state FROM iterjob.job WHERE id = $job", 'failed', 60),
		"$label: the job ends failed");
	my $took = time - $t0;
	ok($took >= 3 && $took < 30,
		sprintf("$label: after the backoff of its retries (1 s, 2 s): %.1f s", $took));
	is($node->safe_psql($db, qq{
SELECT count(*) || ' ' || string_agg(DISTINCT message, ',') FROM iterjob.errors WHERE job_id = $job}),
		'3 worker died during this batch', "$label: three deaths in iterjob.errors");
	is($node->safe_psql($db, qq{
SELECT attempts || '|' || last_error FROM iterjob.task WHERE job_id = $job}),
		'3|worker died during this batch', "$label: the instance failed at its third attempt");
	is($node->safe_psql($db, q{
SELECT count(*) FILTER (WHERE n = 1 AND id <= 4000) || '|' || count(*) FILTER (WHERE n <> 0 AND id > 4000)
         || '|' || count(*) FILTER (WHERE n > 1) FROM items}),
		'4000|0|0', "$label: the four batches before stay committed once, nothing after");
	usleep(2_500_000);
	is(count_matches(qr/terminating background worker "iterjob worker[^"]*" due to administrator command/, $off),
		3, "$label: the worker was terminated three times, no more");
}

# --- 2. SIGKILL of the worker each time its batch reaches key 15000 -------

reset_table($node, $db, 'items');
{
	my $label = 'SIGKILL';
	my $off = log_offset($node);
	my $job = enqueue_failing(q{UPDATE items SET n = n + 1 WHERE id = ANY($1)
	    AND (15000 <> ALL($1) OR (SELECT true FROM pg_sleep(60)))});
	for my $round (1 .. 3)
	{
		my $pid = '';
		my $deadline = time + 60;
		while ($pid eq '' && time < $deadline)
		{
			my ($ret, $out) = $node->psql($db, q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'iterjob worker' AND wait_event = 'PgSleep'});
			$pid = $out if $ret == 0 && defined $out;
			usleep(100_000) if $pid eq '';
		}
		like($pid, qr/^\d+$/, "$label: round $round: a worker sleeps in the batch of key 15000");
		is(kill('KILL', $pid), 1, "$label: round $round: kill -9 $pid");
		ok(wait_log($node, qr/all server processes terminated; reinitializing/, $off, 60),
			"$label: round $round: the server restarts after the crash");
		$off = log_offset($node) if $round < 3;
		poll_value($node, $db, 'SELECT 1', 60);
	}
	ok(wait_for($node, $db, "SELECT state FROM iterjob.job WHERE id = $job", 'failed', 60),
		"$label: the job ends failed after three crashes");
	is($node->safe_psql($db, qq{
SELECT count(*) || ' ' || string_agg(DISTINCT message, ',') FROM iterjob.errors WHERE job_id = $job}),
		'3 worker died during this batch: the server restarted after a crash',
		"$label: three deaths in iterjob.errors, each a crash-restart");
	# (the batch committed just before a crash may be lost with the last
	# asynchronous commits: then it is neither done nor checkpointed)
	is($node->safe_psql($db, q{
SELECT count(*) FILTER (WHERE n = 1 AND id <= 13000) || '|' || count(*) FILTER (WHERE n <> 0 AND id > 14000)
         || '|' || count(*) FILTER (WHERE n > 1) FROM items}),
		'13000|0|0', "$label: the batches before stay committed once, nothing after");
	usleep(2_000_000);
	is($node->safe_psql($db, q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker' AND wait_event = 'PgSleep'}),
		'0', "$label: no fourth attempt runs");
}

$node->stop;
done_testing();
