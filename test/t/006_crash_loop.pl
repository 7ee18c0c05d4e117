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

# A crash takes back the last asynchronous commits, so the batches before
# the one that kills its worker run again after each crash (durably now);
# they do not reset the failed attempts of the batch that kills it, which
# fails the instance at its third crash.
reset_table($node, $db, 'items');
{
	my $label = 'SIGKILL';
	my $off = log_offset($node);
	my $job = enqueue_failing(q{UPDATE items SET n = n + 1 WHERE id = ANY($1)
	    AND (15000 <> ALL($1) OR (SELECT true FROM pg_sleep(60)))});
	my $rounds = 0;
	while ($rounds < 6)
	{
		my $pid = '';
		my $deadline = time + 60;
		while ($pid eq '' && time < $deadline)
		{
			my ($ret, $out) = $node->psql($db, q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'iterjob worker' AND wait_event = 'PgSleep'});
			$pid = $out if $ret == 0 && defined $out;
			last if poll_value($node, $db, "SELECT state FROM iterjob.job WHERE id = $job") eq 'failed';
			usleep(100_000) if $pid eq '';
		}
		last if $pid eq '';
		kill('KILL', $pid) or last;
		$rounds++;
		wait_log($node, qr/all server processes terminated; reinitializing/, $off, 60)
		  or last;
		$off = log_offset($node);
		poll_value($node, $db, 'SELECT 1', 60);
	}
	is($rounds, 3, "$label: the worker was killed three times, no more");
	ok(wait_for($node, $db, "SELECT state FROM iterjob.job WHERE id = $job", 'failed', 60),
		"$label: the job ends failed");
	is($node->safe_psql($db, qq{
SELECT count(*) || ' ' || string_agg(DISTINCT message, ',') FROM iterjob.errors WHERE job_id = $job}),
		"$rounds worker died during this batch: the server restarted after a crash",
		"$label: every death in iterjob.errors, each a crash-restart");
	is($node->safe_psql($db, qq{
SELECT attempts || '|' || last_error FROM iterjob.task WHERE job_id = $job}),
		'3|worker died during this batch', "$label: the instance failed at its third attempt");
	is($node->safe_psql($db, q{
SELECT count(*) FILTER (WHERE n = 1 AND id <= 13000) || '|' || count(*) FILTER (WHERE n <> 0 AND id > 14000)
         || '|' || count(*) FILTER (WHERE n > 1) FROM items}),
		'13000|0|0', "$label: the batches before stay committed once, nothing after");
	usleep(2_000_000);
	is($node->safe_psql($db, q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker' AND wait_event = 'PgSleep'}),
		'0', "$label: no further attempt runs");
}

$node->stop;
done_testing();
