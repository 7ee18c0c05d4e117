# The launcher across many databases: 150 databases created and dropped
# (some with jobs, some dropped while their jobs wait) strand no job, and
# the launcher's bookkeeping and the connections it opens stay bounded by
# the databases with iterjob; it never connects to a template or a
# database without iterjob.  Workers are shared between two busy
# databases.  An enqueue or a resume committed with COMMIT PREPARED starts
# at once; one whose wake-up is lost (prepared before a restart) is found
# by the periodic look.  A restart looks only at databases with iterjob.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $node = iterjob_node('databases',
	'iterjob.max_workers = 2',
	'max_prepared_transactions = 10',
	"iterjob.rescan_interval = '2s'",
	"iterjob.time_slice = '1s'",
	# the launcher reports, at DEBUG1, each worker it starts and how many
	# databases it knows
	'log_min_messages = debug1');

sub oid_of
{
	my ($db) = @_;
	return $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = '$db'");
}

# worker starts logged since $off, per database oid
sub worker_starts
{
	my ($off) = @_;
	my %n;
	my $log = log_since($node, $off);
	$n{$1}++ while $log =~ /iterjob: started worker \d+ for database (\d+)/g;
	return \%n;
}

# the last count of databases the launcher reported knowing since $off
sub launcher_knows
{
	my ($off) = @_;
	my @m = log_since($node, $off) =~ /iterjob: the launcher knows (\d+) databases/g;
	return @m ? $m[-1] : undef;
}

# --- 1. 150 databases created and dropped --------------------------------

# a template with iterjob and a table: every copy has iterjob installed
$node->safe_psql('postgres', 'CREATE DATABASE tpl');
$node->safe_psql('tpl', 'CREATE EXTENSION iterjob');
make_table($node, 'tpl', 'items', 500);
$node->safe_psql('postgres', 'ALTER DATABASE tpl IS_TEMPLATE true');
# a periodic look may have come in before
ok(wait_for($node, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE datname = 'tpl'", '0', 30),
	'no session in the template database');

my $off = log_offset($node);
my (%kept, %plain, %dropped_with_job);
my $t0 = time;
for my $i (1 .. 150)
{
	my $db = "db$i";
	if ($i % 10 == 0)
	{
		# a database with iterjob and a job, kept
		$node->safe_psql('postgres', "CREATE DATABASE $db TEMPLATE tpl");
		$kept{$db} = enqueue_job($node, $db, 'items', instances => 2, batch_size => 100);
	}
	elsif ($i % 10 == 5)
	{
		# a job enqueued and its database dropped before it can run
		$node->safe_psql('postgres', "CREATE DATABASE $db TEMPLATE tpl");
		$node->safe_psql($db, q{
BEGIN;
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)');
COMMIT;});
		$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
		$dropped_with_job{$db} = 1;
	}
	elsif ($i % 3 == 0)
	{
		# iterjob installed, no job ever, dropped at once
		$node->safe_psql('postgres', "CREATE DATABASE $db TEMPLATE tpl");
		$node->safe_psql('postgres', "DROP DATABASE $db");
	}
	else
	{
		# no iterjob: a tenant database, kept or dropped
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		if ($i % 2) { $node->safe_psql('postgres', "DROP DATABASE $db") }
		else { $plain{$db} = oid_of($db) }
	}
}
note(sprintf('150 databases created and dropped in %.1f s', time - $t0));

my $all_ran = 1;
for my $db (sort keys %kept)
{
	my $state = poll_value($node, $db, "SELECT iterjob.wait($kept{$db}, '120s')");
	my $exact = $node->safe_psql($db,
		"SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FROM items");
	if ($state ne 'succeeded' || $exact ne '500/500')
	{
		diag("$db: job $kept{$db} $state, rows once: $exact");
		$all_ran = 0;
	}
}
ok($all_ran, scalar(keys %kept) . ' jobs in databases created among 150: all succeeded, every row once');

# the launcher never started a worker in a database without iterjob, nor
# in a template
my $starts = worker_starts($off);
my @wrong = grep { $starts->{$_} } (values %plain, oid_of('template0'), oid_of('template1'), oid_of('tpl'));
is(scalar(@wrong), 0,
	'no worker started in a database without iterjob, in template0/template1 or a template');

# once the jobs are done: within a few periodic looks, what the launcher
# knows shrinks to the databases with iterjob that exist (postgres has
# none; tpl is a template), and idle databases get one
# look per interval, not a worker each round
my $quiet = log_offset($node);
sleep 10;
my $knows = launcher_knows($quiet);
my $existing = scalar(keys %kept);
ok(defined $knows && $knows <= $existing + 1,
	"the launcher knows at most the $existing databases with iterjob (+1): " . ($knows // 'nothing logged'));
my $looks = 0;
$looks += $_ for values %{ worker_starts($quiet) };
ok($looks >= 2 && $looks <= 7,
	"idle for 10 s with $existing databases with iterjob: $looks workers started (one look per 2 s interval)");

# a job in a new database, created after all this, runs at once
$node->safe_psql('postgres', 'CREATE DATABASE late TEMPLATE tpl');
my $late = enqueue_job($node, 'late', 'items', instances => 1, batch_size => 100);
is(poll_value($node, 'late', "SELECT iterjob.wait($late, '30s')"), 'succeeded',
	'a job in a database created after 150 creations and drops succeeds');

# a restart: the launcher looks at the databases with iterjob (and one
# any, to read pg_shdepend), never at the others
my $plain_count = scalar(keys %plain);
$off = log_offset($node);
$node->restart;
ok(wait_log($node, qr/the launcher knows \d+ databases/, $off, 30), 'restart: the launcher ran');
sleep 4;
$starts = worker_starts($off);
@wrong = grep { $starts->{$_} } values %plain;
my $started = 0;
$started += $_ for values %$starts;
is(scalar(@wrong), 0, "restart: no worker in any of the $plain_count databases without iterjob");
# the databases with iterjob, the late one, the worker that reads
# pg_shdepend, and the periodic looks of 4 s (one per 2 s)
ok($started >= $existing + 1 && $started <= $existing + 4,
	"restart: $started workers started for the " . ($existing + 1)
	  . " databases with iterjob (+ one to read pg_shdepend, + up to two periodic looks)");

# drop the kept databases: the launcher forgets them
$node->safe_psql('postgres', "DROP DATABASE $_ WITH (FORCE)") for (sort keys %kept), 'late';
$quiet = log_offset($node);
sleep 5;
$knows = launcher_knows($quiet);
ok(defined $knows && $knows <= 1, "after the drops the launcher knows " . ($knows // 'nothing logged') . " databases");

# --- 2. fairness: two busy databases, two workers --------------------------

$node->safe_psql('postgres', 'CREATE DATABASE fa TEMPLATE tpl');
$node->safe_psql('postgres', 'CREATE DATABASE fb TEMPLATE tpl');
for my $db ('fa', 'fb')
{
	$node->safe_psql($db, 'DROP TABLE items');
	make_table($node, $db, 'items', $db eq 'fa' ? 8000 : 4000);
}
# 50 ms per batch (an uncorrelated subquery runs once)
my $slow = q{UPDATE items SET n = n + 1 WHERE id = ANY($1) AND (SELECT pg_sleep(0.05)) IS NOT NULL};
my $ja = enqueue_job($node, 'fa', 'items', instances => 4, batch_size => 20, action => $slow);
ok(wait_for($node, 'postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker' AND datname = 'fa'}, '2', 30),
	'fairness: the first database takes both workers');
my $jb = enqueue_job($node, 'fb', 'items', instances => 2, batch_size => 20, action => $slow);
ok(wait_for($node, 'fb', "SELECT rows_done > 0 FROM iterjob.job_progress WHERE job_id = $jb", 't', 20),
	'fairness: the second database gets a worker within a few time slices');
is($node->safe_psql('fa', "SELECT state FROM iterjob.job WHERE id = $ja"), 'running',
	'fairness: ... while the first database\'s job still runs');
my $fa_before = $node->safe_psql('fa', "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $ja");
my $fb_before = $node->safe_psql('fb', "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $jb");
sleep 4;
ok($node->safe_psql('fa', "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $ja") > $fa_before
	  && $node->safe_psql('fb', "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $jb") > $fb_before,
	'fairness: both databases make progress over the next 4 s');
check_job_exact($node, 'fa', $ja, 'items', 'fairness, first database');
check_job_exact($node, 'fb', $jb, 'items', 'fairness, second database');

# --- 3. prepared transactions ----------------------------------------------

# the periodic look cannot help here: only COMMIT PREPARED can wake
$node->append_conf('postgresql.conf', "iterjob.rescan_interval = '1h'");
$node->reload;
sleep 1;
$node->safe_psql('fa', 'UPDATE items SET n = 0');
my $jp = $node->safe_psql('fa', q{
BEGIN;
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)', instances => 2, batch_size => 500);
PREPARE TRANSACTION 'enqueue';});
($jp) = $jp =~ /(\d+)/;
sleep 1;
$node->safe_psql('fa', "COMMIT PREPARED 'enqueue'");
ok(wait_for($node, 'fa', "SELECT state FROM iterjob.job WHERE id = $jp", 'succeeded', 3),
	'prepared: an enqueue committed with COMMIT PREPARED runs within 3 s');
check_job_exact($node, 'fa', $jp, 'items', 'prepared enqueue');

$node->safe_psql('fa', 'UPDATE items SET n = 0');
$jp = enqueue_job($node, 'fa', 'items', instances => 2, batch_size => 20, action => $slow);
wait_rows($node, 'fa', $jp, 40);
$node->safe_psql('fa', "SELECT iterjob.pause($jp)");
ok(wait_for($node, 'fa', "SELECT state FROM iterjob.job WHERE id = $jp", 'paused', 10), 'prepared: job paused');
$node->safe_psql('fa', "BEGIN; SELECT iterjob.resume($jp); PREPARE TRANSACTION 'resume';");
my $rows = $node->safe_psql('fa', "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $jp");
sleep 1;
$node->safe_psql('fa', "COMMIT PREPARED 'resume'");
ok(wait_for($node, 'fa', "SELECT rows_done > $rows FROM iterjob.job_progress WHERE job_id = $jp", 't', 3),
	'prepared: a resume committed with COMMIT PREPARED goes on within 3 s');
$node->safe_psql('fa', "SELECT iterjob.cancel($jp)");

# --- 4. a lost wake-up, found by the periodic look -------------------------

$node->safe_psql('fb', 'UPDATE items SET n = 0');
my $jl = $node->safe_psql('fb', q{
BEGIN;
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)', batch_size => 500);
PREPARE TRANSACTION 'lost';});
($jl) = $jl =~ /(\d+)/;
# the restart forgets which prepared transaction wakes the launcher
$node->restart;
sleep 3;
$node->safe_psql('fb', "COMMIT PREPARED 'lost'");
sleep 5;
is($node->safe_psql('fb', "SELECT state FROM iterjob.job WHERE id = $jl"), 'queued',
	'lost wake-up: with the periodic look set to 1 h, the job waits');
$node->append_conf('postgresql.conf', "iterjob.rescan_interval = '2s'");
$node->reload;
ok(wait_for($node, 'fb', "SELECT state FROM iterjob.job WHERE id = $jl", 'succeeded', 15),
	'lost wake-up: the periodic look (every 2 s) finds it and runs it');
check_job_exact($node, 'fb', $jl, 'items', 'lost wake-up');

$node->stop;
done_testing();
