# iterjob.max_foreground_wait: a session (an application's) that waits for
# a row lock a batch in flight holds is released within the setting plus a
# margin: the launcher cancels the batch, which is rolled back and run
# again at half its size, not counted as a failed attempt, and the log says
# whom it unblocked; every row is still done exactly once.  No batch is
# cancelled for a wait of another iterjob worker, for a session waiting on
# another session, nor with the setting at -1.
#
# iterjob.max_wal_per_second, and a job's own max_wal_per_second (shared by
# its instances), alone and together (the smaller holds): a job's WAL, over
# its run, comes within 20% of the limit, by the WAL positions (the WAL
# written from the enqueue to its end) and by the job's own wal_bytes, over
# the job's run time; the job's wal_bytes are 90% to 100% of the WAL the
# cluster wrote meanwhile.
#
# The batches are held where the test needs them: the action updates its
# rows, then waits for an advisory lock a gate session holds until the end.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);
use IterjobTest;

my $db = 'postgres';
my $ROWS = 5000;
my $node = iterjob_node('foreground', 'iterjob.max_foreground_wait = 100ms', 'autovacuum = off');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);
make_table($node, $db, 'other', 10);
$node->safe_psql($db, q{
CREATE FUNCTION bump_gated(keys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE items SET n = n + 1 WHERE id = ANY (keys);
	PERFORM pg_advisory_lock_shared(4242);
	PERFORM pg_advisory_unlock_shared(4242);
END $$;});

sub q1 { return $node->safe_psql($db, $_[0]); }

# a session that holds $lock_sql and sleeps, named $name
sub hold
{
	my ($name, $lock_sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', $db,
			'-c', "SET application_name = '$name'",
			'-c', "BEGIN", '-c', $lock_sql, '-c', 'SELECT pg_sleep(600)'
		],
		'>', \$out, '2>', \$err);
	ok($node->poll_query_until($db, qq{
SELECT EXISTS (SELECT FROM pg_stat_activity
                WHERE application_name = '$name' AND query ~ 'pg_sleep')}),
		"(precondition) session $name holds its lock");
	return $h;
}

sub release
{
	my ($name, $h) = @_;
	q1("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$name'");
	$h->finish;
	return;
}

# run $sql in a new session with statement_timeout $timeout; returns
# (seconds it took, stderr)
sub timed
{
	my ($sql, $timeout) = @_;
	my $start = time;
	my ($rc, $out, $err) = $node->psql($db, "SET statement_timeout = '$timeout'; $sql");
	return (time - $start, $err);
}

my $cancel_re = qr/batch of \d+ keys cancelled, rolled back: session \d+ had waited \d+ ms for a lock it held/;
sub cancels { my @l = (slurp_file($node->logfile) =~ /$cancel_re/g); return scalar @l; }

my $gate = hold('gate', 'SELECT pg_advisory_lock(4242)');
my $job = q1(q{
SELECT iterjob.enqueue('items', 'SELECT bump_gated($1)', batch_size => 1000, max_attempts => 1,
                       lock_timeout => '10 min')});
ok($node->poll_query_until($db, q{
SELECT EXISTS (SELECT FROM pg_stat_activity
                WHERE backend_type = 'iterjob worker' AND wait_event = 'advisory')}),
	'(precondition) the batch holds its 1000 rows and waits at the gate');

# 1. a session waiting behind the batch's row lock is released
my $off = -s $node->logfile;
my ($took, $err) = timed('UPDATE items SET n = n WHERE id = 1', '30s');
is($err, '', 'foreground: the session blocked behind the batch gets its row');
cmp_ok($took, '<', 2.1,
	sprintf('foreground: it waited %.2f s: max_foreground_wait (100 ms) plus a margin', $took));
ok(wait_log($node, qr/batch of 1000 keys cancelled, rolled back: session \d+ had waited \d+ ms for a lock it held\n.*DETAIL:  Retrying at batch size 500/, $off),
	'foreground: the log says the batch was cancelled, for whom, and that it runs again at half its size');
ok($node->poll_query_until($db, qq{
SELECT foreground_cancels >= 1 AND slowed_at IS NOT NULL
       AND slowed_reason ~ '^a batch of \\d+ keys was cancelled: session \\d+ waited \\d+ ms for one of its locks\$'
  FROM iterjob.job_progress WHERE job_id = $job}),
	'foreground: job_progress counts the cancelled batch and says why and when');
ok($node->poll_query_until($db, q{
SELECT EXISTS (SELECT FROM pg_stat_activity
                WHERE backend_type = 'iterjob worker' AND wait_event = 'advisory')}),
	'(precondition) the batch runs again, smaller, and waits at the gate');
my $seen = cancels();

# 2. another iterjob worker waiting behind the batch: no cancel
my $other_job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 100, max_attempts => 1, lock_timeout => '10 min')});
ok($node->poll_query_until($db, q{
SELECT EXISTS (SELECT FROM pg_stat_activity
                WHERE backend_type = 'iterjob worker' AND wait_event = 'transactionid')}),
	'(precondition) the second job waits for the first one\'s rows');
# 3. a session waiting on another session while the batch runs: no cancel
my $holder = hold('holder', 'UPDATE other SET n = n WHERE id = 1');
($took, $err) = timed('UPDATE other SET n = n WHERE id = 1', '1500ms');
like($err, qr/canceling statement due to statement timeout/,
	'unrelated: a session waiting on another session waits on (statement timeout)');
release('holder', $holder);
is(cancels(), $seen, 'another worker, an unrelated session: no batch was cancelled for them');

# 4. turned off: the session waits behind the batch
q1("ALTER SYSTEM SET iterjob.max_foreground_wait = -1");
q1('SELECT pg_reload_conf()');
sleep 1;
($took, $err) = timed('UPDATE items SET n = n WHERE id = 2', '1500ms');
like($err, qr/canceling statement due to statement timeout/,
	'off: the session blocked behind the batch waits (statement timeout)');
is(cancels(), $seen, 'off: no batch was cancelled');
q1("ALTER SYSTEM RESET iterjob.max_foreground_wait");
q1('SELECT pg_reload_conf()');

# the end: every row exactly once per job, no failed attempt
release('gate', $gate);
is(q1("SELECT iterjob.wait($job, '120 s')"), 'succeeded', 'the job whose batch was cancelled succeeds');
is(q1("SELECT iterjob.wait($other_job, '120 s')"), 'succeeded', 'the other job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 2) || ' of ' || count(*) FROM items}), "$ROWS of $ROWS",
	'every row done exactly once by each job (the cancelled batch was rolled back)');
is(q1("SELECT count(*) FROM iterjob.errors WHERE job_id IN ($job, $other_job)"), 0,
	'the cancelled batch is no failed attempt (none logged; with max_attempts 1 one would have failed the job)');

# The WAL rate limits: jobs over a table whose every page gets a full page
# image after the checkpoint before each run, then its rows' new versions:
# about 10 MB each.  The WAL the cluster wrote is measured from the WAL
# positions (pg_stat_wal's counters are flushed by each process at most
# once a second, and an idle worker's last ones may not be yet), from the
# enqueue to the job's end, over the job's run time; the job's own count
# is its wal_bytes, which cannot exceed the cluster's WAL and leaves out
# only the little WAL iterjob writes between its instances' checkpoints
# (claims, the job's end).
q1(q{
CREATE TABLE wide (id bigint PRIMARY KEY, pad text NOT NULL);
INSERT INTO wide SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;});

my $MB = 1024 * 1024;

# Run a job over wide with the cluster-wide limit $cluster (a setting, or
# undef: none) and enqueue's further arguments $args; check that it
# succeeds, that it wrote more than 3 s of $limit_mb MB/s, and that its WAL
# rate, by the cluster's WAL and by its own wal_bytes, comes within 20% of
# that; and that its wal_bytes are the cluster's WAL, within reason.
sub wal_rate
{
	my ($what, $cluster, $args, $limit_mb) = @_;
	if (defined $cluster)
	{
		q1("ALTER SYSTEM SET iterjob.max_wal_per_second = '$cluster'");
	}
	else
	{
		q1('ALTER SYSTEM RESET iterjob.max_wal_per_second');
	}
	q1('SELECT pg_reload_conf()');
	sleep 1;
	q1('VACUUM wide');
	q1('CHECKPOINT');
	my $lsn = q1('SELECT pg_current_wal_insert_lsn()');
	my $job = q1(qq{
SELECT iterjob.enqueue('wide', 'UPDATE wide SET pad = repeat(''y'', 120) WHERE id = ANY(\$1)', $args)});
	is(q1("SELECT iterjob.wait($job, '120 s')"), 'succeeded', "$what: the job succeeds");
	my ($bytes, $own, $secs) = split /\|/, q1(qq{
SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn'), p.wal_bytes,
       extract(epoch FROM p.finished_at - p.started_at)
  FROM iterjob.job_progress p WHERE p.job_id = $job});
	note("$what: instance $_") foreach split /\n/, q1(qq{
SELECT format('%s: %s MB in %s s from %s s after the job began', t.instance,
              round(t.wal_bytes / 1048576.0, 2), round(extract(epoch FROM t.finished_at - t.started_at), 2),
              round(extract(epoch FROM t.started_at - j.started_at), 2))
  FROM iterjob.task t JOIN iterjob.job j ON j.id = t.job_id WHERE t.job_id = $job ORDER BY t.instance});
	my $rate = $bytes / $secs / ($limit_mb * $MB);
	my $own_rate = $own / $secs / ($limit_mb * $MB);
	note(sprintf('%s: %.1f MB in %.2f s, %.2f x the limit; by its wal_bytes (%.1f MB) %.2f x',
			$what, $bytes / $MB, $secs, $rate, $own / $MB, $own_rate));
	cmp_ok($bytes, '>', 3 * $limit_mb * $MB, "(precondition) $what: the job writes more than 3 s of the limit");
	ok($rate >= 0.8 && $rate <= 1.2,
		sprintf('%s: %.2f MB/s over the run, within 20%% of %s MB/s', $what, $rate * $limit_mb, $limit_mb));
	ok($own_rate >= 0.8 && $own_rate <= 1.2,
		sprintf('%s: by the job\'s wal_bytes %.2f MB/s, within 20%% of %s MB/s',
			$what, $own_rate * $limit_mb, $limit_mb));
	ok($own >= 0.9 * $bytes && $own <= $bytes,
		sprintf('%s: the job\'s wal_bytes are %.1f%% of the WAL the cluster wrote meanwhile (90%% to 100%%)',
			$what, 100 * $own / $bytes));
	return;
}

# the cluster's limit alone: 2 MB/s
wal_rate('WAL rate', '2MB', 'batch_size => 1000', 2);
# the job's own limit alone, shared by its 2 instances: 2 MB/s.  Each
# instance keeps to its half whatever the other writes: under the range
# partition they write as much WAL each (under the modulo partition, the
# instance ahead writes the full page images of pages the one trailing it
# then changes too, and the job stays below its limit)
wal_rate('job WAL rate', undef,
	q{instances => 2, partition => 'range', batch_size => 500, max_wal_per_second => '2MB'}, 2);
# both: the smaller holds, the job's (2 MB/s, against the cluster's 16), or
# the cluster's (2 MB/s, against the job's 8)
wal_rate('both WAL limits, the job\'s smaller', '16MB',
	q{instances => 2, partition => 'range', batch_size => 500, max_wal_per_second => '2MB'}, 2);
wal_rate('both WAL limits, the cluster\'s smaller', '2MB',
	q{batch_size => 1000, max_wal_per_second => '8MB'}, 2);
q1("ALTER SYSTEM RESET iterjob.max_wal_per_second");
q1('SELECT pg_reload_conf()');

$node->stop;
done_testing();
