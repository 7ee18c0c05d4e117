# A primary with iterjob preloaded and a streaming standby made from its
# backup (iterjob preloaded there too, replicating through a physical slot):
#
#   a. the health gate against a real lagging standby: with the standby's
#      replay paused, a job on the primary holds under
#      iterjob.max_replication_lag (time) and under
#      iterjob.max_replication_lag_bytes (WAL distance), job_progress.held
#      says which limit and by how much, and the job goes on once replay
#      resumes; a standby that disconnects is invisible to the time limit
#      (the job runs on, also beside a pg_receivewal, which reports no
#      replay position), while its inactive physical slot holds a job under
#      the byte limit until the standby is back;
#   b. the standby in recovery runs no iterjob process and logs no iterjob
#      error;
#   c. failover: the primary stops (immediate) in the middle of a job, the
#      standby is promoted, and the job resumes there by itself from the
#      checkpoints it replicated, every row exactly once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $LAG_ROWS = 20_000;
my $BIG_ROWS = 200_000;

my $primary = iterjob_node('primary', { allows_streaming => 1 },
	# Cluster.pm's streaming defaults are 1MB and 10
	'shared_buffers = 16MB', 'max_connections = 30');
$primary->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($primary, $db, $_, $LAG_ROWS)
  for qw(lag_time lag_bytes gone_time gone_slot);
make_table($primary, $db, 'big', $BIG_ROWS);
$primary->safe_psql($db,
	"SELECT pg_create_physical_replication_slot('standby', true)");

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# the primary's conf (shared_preload_libraries = 'iterjob' and the rest)
# came with the backup; the gate sees replay positions as the standby
# reports them, here every second while nothing else makes it report
$standby->append_conf('postgresql.conf',
	"primary_slot_name = 'standby'\nwal_receiver_status_interval = 1s\n");
$standby->start;
my $standby_started = time;
$primary->wait_for_catchup($standby);

sub set_gate
{
	my (%gucs) = @_;
	for my $guc (sort keys %gucs)
	{
		my $v = $gucs{$guc};
		$primary->safe_psql($db, defined $v
			? "ALTER SYSTEM SET iterjob.$guc = '$v'"
			: "ALTER SYSTEM RESET iterjob.$guc");
	}
	$primary->safe_psql($db, 'SELECT pg_reload_conf()');
	return;
}

# 2 instances x 10,000 keys, batches of 100 and a pause of 100 ms after
# each: at least 10 s, long enough to be caught held.
sub enqueue_paced
{
	my ($table) = @_;
	return $primary->safe_psql($db, qq{
SELECT iterjob.enqueue('$table', 'UPDATE $table SET n = n + 1 WHERE id = ANY(\$1)',
                       instances => 2, batch_size => 100, batch_pause => '100ms')});
}

sub rows_done
{
	my ($node, $job) = @_;
	return poll_value($node, $db,
		"SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job");
}

# Both instances of job $job hold: returns their held_reason texts.
sub wait_held
{
	my ($job, $label) = @_;
	ok(wait_for($primary, $db, qq{
SELECT count(*) FROM iterjob.task_progress
 WHERE job_id = $job AND state = 'running' AND held_reason IS NOT NULL}, '2', 30),
		"$label: both instances hold within 30 s");
	ok(wait_for($primary, $db, qq{
SELECT coalesce(array_agg(DISTINCT phase)::text, 'none') FROM iterjob.workers WHERE job_id = $job},
		'{held}', 10), "$label: iterjob.workers shows the workers in phase 'held'");
	my $r1 = rows_done($primary, $job);
	usleep(2_500_000);
	my $r2 = rows_done($primary, $job);
	ok($r1 == $r2 && $r2 < $LAG_ROWS,
		"$label: while held the job does no row ($r1 then $r2 of $LAG_ROWS rows 2.5 s later)");
	is($primary->safe_psql($db, "SELECT state FROM iterjob.job WHERE id = $job"),
		'running', "$label: a held job is running");
	my $held = $primary->safe_psql($db,
		"SELECT held FROM iterjob.job_progress WHERE job_id = $job");
	note("$label: job_progress.held = $held");
	return split /; /, $held;
}

sub interval_s
{
	my ($iv) = @_;
	my ($h, $m, $s) = $iv =~ /^(\d+):(\d\d):(\d\d(?:\.\d+)?)$/ or return -1;
	return $h * 3600 + $m * 60 + $s;
}

my %unit = (bytes => 1, kB => 1024, MB => 1024**2, GB => 1024**3);

sub size_bytes
{
	my ($n, $u) = @_;
	return $n * $unit{$u};
}

# iterjob processes on the standby (in recovery: none)
sub standby_iterjob_processes
{
	return poll_value($standby, $db, q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'iterjob%'});
}

# --- b. the standby in recovery ---------------------------------------------

is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'), 't',
	'standby: in recovery');
is($standby->safe_psql($db, 'SHOW shared_preload_libraries'), 'iterjob',
	'standby: iterjob is preloaded');
is(standby_iterjob_processes(), '0',
	'standby: no iterjob launcher or worker runs in recovery');

# --- a1. time limit, replay paused ------------------------------------------

set_gate(max_replication_lag => '1s');
$standby->safe_psql($db, 'SELECT pg_wal_replay_pause()');
{
	my $label = 'time limit, replay paused';
	my $job = enqueue_paced('lag_time');
	my @held = wait_held($job, $label);
	my $re = qr/^replication lag (\S+) to "standby" exceeds iterjob\.max_replication_lag \(1s\)$/;
	is(scalar(grep { /$re/ && interval_s($1) > 1 } @held), scalar(@held),
		"$label: job_progress.held names the standby, its replay lag over 1 s and the limit (@held)");
	ok(@held >= 1, "$label: job_progress.held is set");
	is(standby_iterjob_processes(), '0',
		"$label: still no iterjob process on the standby");
	$standby->safe_psql($db, 'SELECT pg_wal_replay_resume()');
	check_job_exact($primary, $db, $job, 'lag_time', "$label, after pg_wal_replay_resume()",
		wait => '120s');
	is($primary->safe_psql($db,
			"SELECT count(held_reason) FROM iterjob.task_progress WHERE job_id = $job"),
		'0', "$label: held_reason is cleared");
}

# --- a2. byte limit, replay paused ------------------------------------------

set_gate(max_replication_lag => undef, max_replication_lag_bytes => '256kB');
$primary->wait_for_catchup($standby);
$standby->safe_psql($db, 'SELECT pg_wal_replay_pause()');
{
	my $label = 'byte limit, replay paused';
	my $job = enqueue_paced('lag_bytes');
	my @held = wait_held($job, $label);
	my $re = qr/^replication lag (\d+) (bytes|kB|MB|GB) to "standby" exceeds iterjob\.max_replication_lag_bytes \(256kB\)$/;
	is(scalar(grep { /$re/ && size_bytes($1, $2) > 256 * 1024 } @held), scalar(@held),
		"$label: job_progress.held names the standby, its WAL distance over 256 kB and the limit (@held)");
	is($primary->safe_psql($db, q{
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) > 256 * 1024
  FROM pg_stat_replication WHERE application_name = 'standby'}),
		't', "$label: pg_stat_replication agrees: the standby is more than 256 kB behind");
	$standby->safe_psql($db, 'SELECT pg_wal_replay_resume()');
	check_job_exact($primary, $db, $job, 'lag_bytes', "$label, after pg_wal_replay_resume()",
		wait => '120s');
}
is(standby_iterjob_processes(), '0',
	'standby: no iterjob process after the jobs it replayed');

# b, continued: at least 10 s of recovery, jobs replayed, no iterjob error.
{
	my $left = 10 - (time - $standby_started);
	usleep($left * 1_000_000) if $left > 0;
	my @errors = grep { /\b(?:ERROR|FATAL|PANIC):/ && /iterjob/i }
	  split /\n/, slurp_file($standby->logfile);
	is(scalar(@errors), 0,
		sprintf('standby: no ERROR/FATAL line mentioning iterjob in its log over %.0f s of recovery',
			time - $standby_started))
	  or diag(join("\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]));
}

# --- a3. the standby disconnects ----------------------------------------------

$primary->wait_for_catchup($standby);
$standby->stop('fast');
ok(wait_for($primary, $db, 'SELECT count(*) FROM pg_stat_replication', '0', 30),
	'disconnected: the standby left pg_stat_replication');
is($primary->safe_psql($db,
		"SELECT active FROM pg_replication_slots WHERE slot_name = 'standby'"),
	'f', 'disconnected: its slot is inactive');

# The time limit sees only connected standbys: the job runs on.  So it
# does beside a connected pg_receivewal, which reports no replay position
# (its replay_lag in pg_stat_replication grows for as long as it runs).
set_gate(max_replication_lag => '1s', max_replication_lag_bytes => undef);
{
	my $label = 'time limit, standby gone';
	my $waldir = PostgreSQL::Test::Utils::tempdir;
	my ($rout, $rerr) = ('', '');
	my $receiver = IPC::Run::start(
		[
			'pg_receivewal', '-d', $primary->connstr($db) . ' application_name=pg_receivewal',
			'-D', $waldir, '-s', '1', '-n'
		],
		'>', \$rout, '2>', \$rerr);
	ok(wait_for($primary, $db, q{
SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'}, '1', 30),
		"$label: pg_receivewal connected")
	  or do { $receiver->kill_kill; $receiver->finish; diag("pg_receivewal: $rerr $rout"); };
	my $job = enqueue_paced('gone_time');
	ok(wait_for($primary, $db, q{
SELECT replay_lsn IS NULL AND replay_lag > '1s' FROM pg_stat_replication
 WHERE application_name = 'pg_receivewal'}, 't', 30),
		"$label: pg_receivewal's replay_lag grows over 1 s, with no replay_lsn");
	ok(wait_for($primary, $db, "SELECT rows_done >= 1000 FROM iterjob.job_progress WHERE job_id = $job",
			't', 30), "$label: the job runs");
	my $r1 = rows_done($primary, $job);
	usleep(2_500_000);
	my ($r2, $held) = split /\|/, $primary->safe_psql($db,
		"SELECT rows_done || '|' || coalesce(held, 'none') FROM iterjob.job_progress WHERE job_id = $job");
	ok($r2 > $r1 || $r2 == $LAG_ROWS, "$label: 2.5 s on it still makes progress ($r1 then $r2 rows)");
	is($held, 'none', "$label: not held (job_progress.held is NULL)");
	check_job_exact($primary, $db, $job, 'gone_time', $label, wait => '120s');
	$receiver->kill_kill;
	$receiver->finish;
}

# The byte limit sees the standby's inactive slot, whose WAL the primary
# keeps for it: the job holds until the standby is back and has caught up.
set_gate(max_replication_lag => undef, max_replication_lag_bytes => '256kB');
{
	my $label = 'byte limit, standby gone';
	my $job = enqueue_paced('gone_slot');
	my @held = wait_held($job, $label);
	my $re = qr/^replication lag (\d+) (bytes|kB|MB|GB) to inactive slot "standby" exceeds iterjob\.max_replication_lag_bytes \(256kB\)$/;
	is(scalar(grep { /$re/ && size_bytes($1, $2) > 256 * 1024 } @held), scalar(@held),
		"$label: job_progress.held names the inactive slot, its distance and the limit (@held)");
	ok(@held >= 1, "$label: job_progress.held is set");
	$standby->start;
	check_job_exact($primary, $db, $job, 'gone_slot', "$label, after the standby is back",
		wait => '120s');
	is($primary->safe_psql($db,
			"SELECT active FROM pg_replication_slots WHERE slot_name = 'standby'"),
		't', "$label: the slot is active again");
}
set_gate(max_replication_lag_bytes => undef);

# --- c. failover ------------------------------------------------------------

$primary->wait_for_catchup($standby);
{
	my $label = 'failover';
	# 4 instances, batches of 500 and a pause of 50 ms: at least 5 s, so
	# that the primary stops mid-run however fast the machine is
	my $job = $primary->safe_psql($db, q{
SELECT iterjob.enqueue('big', 'UPDATE big SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 500, batch_pause => '50ms')});
	my $seen = wait_rows($primary, $db, $job, 40_000);
	# checkpoints reached the standby
	ok(wait_for($standby, $db,
			"SELECT rows_done >= 20000 FROM iterjob.job_progress WHERE job_id = $job", 't', 60),
		"$label: the standby replays the job's checkpoints");
	my $off = log_offset($standby);
	$primary->stop('immediate');
	# the standby replays what it received before the primary went down
	ok(wait_log($standby, qr/waiting for WAL to become available/, $off, 60),
		"$label: the standby replayed all the WAL it received");
	my ($state, $replicated) = split /\|/, $standby->safe_psql($db,
		"SELECT state || '|' || rows_done FROM iterjob.job_progress WHERE job_id = $job");
	ok($state eq 'running' && $replicated >= 20_000 && $replicated < $BIG_ROWS,
		"$label: the primary stopped mid-run ($replicated of $BIG_ROWS rows replicated, $state)");
	is(standby_iterjob_processes(), '0', "$label: no iterjob process on the standby before promotion");

	my $t0 = time;
	$standby->promote;
	ok(wait_for($standby, $db, 'SELECT pg_is_in_recovery()', 'f', 60),
		"$label: the standby is promoted");
	ok(wait_for($standby, $db,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob launcher'", '1', 30),
		"$label: the iterjob launcher starts after promotion, no user action");
	check_job_exact($standby, $db, $job, 'big', $label, wait => '180s');
	note(sprintf("$label: %d rows seen done on the primary shortly before it stopped, "
			  . "%d replicated at the promotion; the job ended %.1f s after promotion",
			$seen, $replicated, time - $t0));
	ok(wait_for($standby, $db,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'", '0', 30),
		"$label: the workers leave once the job ended");
}

$standby->stop;
done_testing();
