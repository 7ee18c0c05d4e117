# Dropping what iterjob works in: DROP EXTENSION iterjob while a job runs
# (the drop completes, the workers leave without an error loop, the
# extension can be created again and works), and DROP DATABASE, without
# FORCE, of a database whose job is paused and of one whose job finished
# (iterjob keeps no worker connected to them).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $ROWS = 1_000_000;

my $node = iterjob_node('drop');

# iterjob-related ERROR/FATAL lines, and iterjob worker exits with an
# error, in the log since $off
sub iterjob_errors
{
	my ($off) = @_;
	return grep {
		/\b(ERROR|FATAL|PANIC):/ && /iterjob/
		  || /background worker "iterjob[^"]*" \(PID \d+\) (exited with exit code [1-9]|was terminated)/
	} split /\n/, log_since($node, $off);
}

# distinct pids of iterjob workers seen (in $db, or anywhere) while
# sampling pg_stat_activity for $secs seconds
sub workers_seen_during
{
	my ($secs, $db) = @_;
	my %seen;
	my $end = time + $secs;
	my $where = defined $db ? " AND datname = '$db'" : '';
	while (time < $end)
	{
		my $out = poll_value($node, 'postgres',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'iterjob worker'$where");
		$seen{$_} = 1 for grep { /\d/ } split /\n/, $out;
		usleep(100_000);
	}
	return sort keys %seen;
}

# --- 6. DROP EXTENSION iterjob while a job runs --------------------------

{
	my $label = 'DROP EXTENSION';
	my $db = 'dropext';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION iterjob');
	make_table($node, $db, 'items', $ROWS);
	my $job = enqueue_job($node, $db, 'items');
	my $done = wait_rows($node, $db, $job, 0.10 * $ROWS);
	is(count_iterjob_workers($node, $db), '4', "$label: 4 workers run job $job ($done rows done)");

	my $off = log_offset($node);
	my $t0 = time;
	# nothing after the DROP in this session: if a worker crashes the server
	# right after the drop, that must not look like a failed drop
	my ($ret, $out, $err) = $node->psql($db,
		"SET lock_timeout = '30s'; DROP EXTENSION iterjob;");
	my $secs = sprintf('%.2f', time - $t0);
	is($ret, 0, "$label: DROP EXTENSION iterjob completes while the job runs (${secs} s)")
	  or diag("psql stderr: $err");

	# the workers notice the drop at their next batch: give them time, then
	# look for crashes (a crashing worker takes the whole server through a
	# crash-restart, killing every session of every database)
	ok(wait_for($node, 'postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'}, '0', 10),
		"$label: every iterjob worker leaves within 10 s");
	my $crashes = join("\n", grep { /terminated by signal|server processes terminated/ }
		  split /\n/, log_since($node, $off));
	is($crashes, '', "$label: no iterjob worker crashes, no crash-restart of the server");
	is(poll_value($node, $db, "SELECT count(*) FROM pg_extension WHERE extname = 'iterjob'"),
		'0', "$label: the extension is gone (the drop committed)");

	my $left = log_offset($node);
	# one worker started for a database still marked pending, finding no
	# extension and leaving, is fine; a loop is not
	my @seen = workers_seen_during(5);
	ok(@seen <= 2,
		"$label: no worker restart loop: " . scalar(@seen)
		  . " iterjob workers seen over the next 5 s (at most 2) (@seen)");
	my @errors = iterjob_errors($off);
	ok(@errors <= 2,
		"$label: no error loop: " . scalar(@errors) . " iterjob ERROR/FATAL lines since the drop (at most 2)")
	  or diag(join("\n", @errors));
	my @restarts = grep { /iterjob worker/ && /started|exited|terminated/ }
	  split /\n/, log_since($node, $left);
	ok(@restarts <= 2,
		"$label: the log shows no iterjob workers coming and going after they left ("
		  . scalar(@restarts) . " lines, at most 2)")
	  or diag(join("\n", @restarts));
	is(poll_value($node, $db, 'SELECT count(*) FROM items WHERE n NOT IN (0, 1)'), '0',
		"$label: no row was visited twice before the drop");

	$node->safe_psql($db, 'CREATE EXTENSION iterjob');
	pass("$label: CREATE EXTENSION iterjob again works");
	make_table($node, $db, 'again', 10_000);
	my $job2 = enqueue_job($node, $db, 'again', instances => 2, batch_size => 100);
	check_job_exact($node, $db, $job2, 'again', "$label, recreated", wait => '60s');
}

# --- 7. DROP DATABASE of a database whose job is paused -------------------

{
	my $label = 'DROP DATABASE, paused job';
	my $db = 'pausedb';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION iterjob');
	make_table($node, $db, 'slow', 10_000);
	my $job = enqueue_job($node, $db, 'slow', instances => 2, batch_size => 100,
		action => 'WITH s AS MATERIALIZED (SELECT pg_sleep(0.1)) '
		  . 'UPDATE slow SET n = n + 1 FROM s WHERE id = ANY($1)');
	my $done = wait_rows($node, $db, $job, 1000);
	is($node->safe_psql($db, "SELECT iterjob.pause($job)"), 'paused',
		"$label: job $job paused mid-run ($done of 10000 rows done)");
	ok(wait_for($node, 'postgres', qq{
SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND backend_type = 'iterjob worker'},
			'0', 10),
		"$label: no iterjob worker stays connected to $db");
	my $off = log_offset($node);
	my ($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db");
	is($ret, 0, "$label: DROP DATABASE $db (without FORCE) succeeds") or diag($err);
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = '$db'"),
		'0', "$label: $db is gone");

	# --- a database whose job finished -----------------------------------
	$label = 'DROP DATABASE, finished job';
	$db = 'donedb';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION iterjob');
	make_table($node, $db, 'items', 100_000);
	$job = enqueue_job($node, $db, 'items');
	is($node->safe_psql($db, "SELECT iterjob.wait($job, '120s')"), 'succeeded',
		"$label: job $job succeeded");
	($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db");
	is($ret, 0, "$label: DROP DATABASE $db (without FORCE) right after the job ended succeeds")
	  or diag($err);
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = '$db'"),
		'0', "$label: $db is gone");

	# the launcher is still healthy: it ignores the dropped databases and
	# runs a new job elsewhere
	$label = 'after DROP DATABASE';
	$node->safe_psql('postgres', 'CREATE EXTENSION iterjob');
	make_table($node, 'postgres', 'after_drop', 10_000);
	my $job3 = enqueue_job($node, 'postgres', 'after_drop', instances => 2, batch_size => 100);
	check_job_exact($node, 'postgres', $job3, 'after_drop', $label, wait => '60s');
	my @errors = iterjob_errors($off);
	ok(@errors <= 2,
		"$label: " . scalar(@errors) . " iterjob ERROR/FATAL lines since the drops (at most 2)")
	  or diag(join("\n", @errors));
}

done_testing();
