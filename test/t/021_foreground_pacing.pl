# iterjob.max_foreground_commit_wait: while a session (an application's)
# waits to commit longer than the setting and iterjob's batches wrote most
# of the recent WAL, the workers slow down: they pause after each batch for
# a multiple of its time that doubles while the wait goes on (up to 16),
# the workers' phase says 'foreground', the log and job_progress say why;
# when the wait ends the pace halves each second and the job runs on to
# the end, every row exactly once.  No slowdown for a session whose wait
# comes with another session's WAL, nor with the setting at -1.
#
# The waiting session is held where the test needs it: it commits with
# synchronous_commit = on to a synchronous standby that does not exist
# (every other session, iterjob's workers included, commits locally), and
# waits until it is cancelled.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $ROWS = 200000;
my $node = iterjob_node('pacing', { allows_streaming => 1 }, 'autovacuum = off', "synchronous_standby_names = 'nobody'",
	'synchronous_commit = local', 'iterjob.max_foreground_wait = -1',
	'iterjob.max_foreground_commit_wait = 20ms');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);
make_table($node, $db, 'other', 10);
$node->safe_psql($db, q{
CREATE TABLE junk (id bigint, pad text);
CREATE FUNCTION bump_slowly(keys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE items SET n = n + 1 WHERE id = ANY (keys);
	PERFORM pg_sleep(0.01);
END $$;});

sub q1 { return $node->safe_psql($db, $_[0]); }

# a session named $name that runs $sql (in the background); returns its pid
sub background
{
	my ($name, $sql, $wait_event) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', $db,
			'-c', "SET application_name = '$name'", '-c', $sql
		],
		'>', \$out, '2>', \$err);
	ok($node->poll_query_until($db, qq{
SELECT EXISTS (SELECT FROM pg_stat_activity
                WHERE application_name = '$name' AND wait_event = '$wait_event')}),
		"(precondition) session $name waits ($wait_event)");
	return ($h, q1("SELECT pid FROM pg_stat_activity WHERE application_name = '$name'"));
}

# a session that commits and waits for the synchronous standby
sub stalled
{
	return background($_[0],
		'SET synchronous_commit = on; INSERT INTO junk (id) VALUES (-1)', 'SyncRep');
}

sub stop_session
{
	my ($pid, $h) = @_;
	q1("SELECT pg_cancel_backend($pid)");
	$h->finish;
	return;
}

sub batches { return q1("SELECT batches_done FROM iterjob.job_progress WHERE job_id = $_[0]"); }

sub paced_workers
{
	return q1("SELECT count(*) FROM iterjob.workers WHERE phase = 'foreground'");
}

# batches done in $secs seconds
sub rate
{
	my ($job, $secs) = @_;
	my $before = batches($job);
	my $start = time;
	sleep $secs;
	return (batches($job) - $before) / (time - $start);
}

my $pacing_re = qr/slowing down for the foreground: session (\d+) waited \d+ ms or more for a synchronous standby \(iterjob.max_foreground_commit_wait is 20 ms\)/;

# 1. the workers slow down while a session waits to commit
my $job = q1(q{
SELECT iterjob.enqueue('items', 'SELECT bump_slowly($1)', batch_size => 100, instances => 2)});
ok($node->poll_query_until($db, "SELECT batches_done >= 20 FROM iterjob.job_progress WHERE job_id = $job"),
	'(precondition) the job runs');
my $free_rate = rate($job, 2);
my $off = -s $node->logfile;
my ($h, $pid) = stalled('app');
ok(wait_log($node, $pacing_re, $off), 'paced: the log says the workers slow down, and for whom');
my ($logged_pid) = (slurp_file($node->logfile, $off) =~ $pacing_re);
is($logged_pid, $pid, 'paced: the log names the waiting session');
ok($node->poll_query_until($db, qq{
SELECT slowed_at IS NOT NULL
       AND slowed_reason ~ '^paced: session $pid waited \\d+ ms or more for a synchronous standby'
       AND foreground_cancels = 0
  FROM iterjob.job_progress WHERE job_id = $job}),
	'paced: job_progress says when and why the job slowed down (no batch cancelled)');
ok($node->poll_query_until($db, 'SELECT count(*) > 0 FROM iterjob.workers WHERE phase = \'foreground\''),
	'paced: the workers\' phase is foreground');
# the pace doubles every quarter second while the wait goes on: at 16 after 2 s
sleep 3;
my $paced_rate = rate($job, 3);
note(sprintf('batches per second: %.1f free, %.1f while paced', $free_rate, $paced_rate));
cmp_ok($paced_rate, '<', $free_rate / 4,
	sprintf('paced: batches per second fell from %.1f to %.1f (less than a quarter)', $free_rate, $paced_rate));
is(q1("SELECT state FROM iterjob.job WHERE id = $job"), 'running', '(precondition) the job is still running');

# 2. the wait ends: the pace falls back, the job runs to its end
stop_session($pid, $h);
is(q1("SELECT iterjob.wait($job, '300 s')"), 'succeeded', 'after the wait: the job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM items}), "$ROWS of $ROWS",
	'every row done exactly once');
is(q1("SELECT count(*) FROM iterjob.errors WHERE job_id = $job"), 0, 'no failed attempt');

# 3. a session that waits while another session writes most of the WAL:
# no slowdown (a read-only action; its batches write only their checkpoints)
my ($wh, $wpid) = background('writer', q{
DO $$
DECLARE stop timestamptz := clock_timestamp() + interval '20 s';
BEGIN
	WHILE clock_timestamp() < stop LOOP
		INSERT INTO junk SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g;
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$}, 'PgSleep');
sleep 2;
($h, $pid) = stalled('app2');
$off = -s $node->logfile;
$job = q1(q{
SELECT iterjob.enqueue('items', 'SELECT count(*) FROM items WHERE id = ANY($1)',
                       batch_size => 100, batch_pause => '10 ms')});
ok($node->poll_query_until($db, "SELECT batches_done >= 50 FROM iterjob.job_progress WHERE job_id = $job"),
	'(precondition) the read-only job runs');
sleep 2;
ok(!$node->log_contains(qr/slowing down for the foreground/, $off),
	'another session\'s WAL: the workers do not slow down');
is(q1("SELECT slowed_reason IS NULL FROM iterjob.job_progress WHERE job_id = $job"), 't',
	'another session\'s WAL: job_progress says nothing slowed the job');
q1("SELECT iterjob.cancel($job)");
stop_session($wpid, $wh);

# 4. turned off (the default): no slowdown
q1('ALTER SYSTEM SET iterjob.max_foreground_commit_wait = -1');
q1('SELECT pg_reload_conf()');
sleep 1;
q1('UPDATE items SET n = 0');
$off = -s $node->logfile;
$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 100, batch_pause => '10 ms')});
ok($node->poll_query_until($db, "SELECT batches_done >= 50 FROM iterjob.job_progress WHERE job_id = $job"),
	'(precondition) the job runs beside the waiting session');
sleep 2;
ok(!$node->log_contains(qr/slowing down for the foreground/, $off), 'off: the workers do not slow down');
is(q1("SELECT slowed_reason IS NULL FROM iterjob.job_progress WHERE job_id = $job"), 't',
	'off: job_progress says nothing slowed the job');
q1("SELECT iterjob.cancel($job)");
stop_session($pid, $h);
$node->stop;
done_testing();
