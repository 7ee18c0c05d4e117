# Chaos: one job of 500,000 rows in 4 instances runs while, at random
# moments, its workers are killed with SIGKILL (each a crash-restart of the
# whole server) and with pg_terminate_backend(), and the server is
# restarted in fast and in immediate mode, several times each, in a random
# order with short random pauses.  The job must then end succeeded by
# itself, in bounded time, with every row processed exactly once, every
# instance's counters and cursor those of its partition, no task left
# without a live worker, and nothing in iterjob.errors but the deaths of
# workers in the middle of a batch.
#
# The schedule comes from a seeded random generator; the seed is printed
# first, and ITERJOB_CHAOS_SEED=<seed> replays the same schedule (the
# moments still depend on the machine's speed).
#
# So that the chaos cannot miss the job, each batch sleeps, after its
# UPDATE and before its commit, for the time a one-row table "pace" says
# (a kill then most likely lands in a batch that has changed its rows but
# not committed them): 0.1 s, or 2 s while the job is ahead of 90% of the
# schedule, so that the events spread over the job and it cannot end before
# the last one; once the chaos is over the test sets it to 0 and the rest
# of the job runs at full speed.  Every event must find the job running and
# unfinished; kills pick a worker in a batch, and the test waits until its
# instance is claimed again, which logs the death of that batch in
# iterjob.errors if it landed in one.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $ROWS = 500_000;
my $BATCH = 1000;
my $PACE = 0.1;            # seconds each batch sleeps during the chaos
my $SLOW_PACE = 2;         # and while the job is ahead of the schedule
my $CHAOS_MAX_TIME = 120;  # no new event after this many seconds
my $db = 'postgres';

my $seed = $ENV{ITERJOB_CHAOS_SEED} // (int(time * 1000) ^ $$) % 1_000_000_000;
die "ITERJOB_CHAOS_SEED must be a number" unless $seed =~ /^\d+$/;
srand($seed);
diag("chaos seed $seed (ITERJOB_CHAOS_SEED=$seed replays this schedule)");

my $node = iterjob_node('chaos');
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'items', $ROWS);
$node->safe_psql($db, "CREATE TABLE pace (d float8 NOT NULL); INSERT INTO pace VALUES ($PACE)");

# A random order of the events: 3 to 5 of each kind (12 to 20 in all).
my @kinds = qw(sigkill terminate fast immediate);
my @events = map { my $k = $_; ($k) x (3 + int(rand(3))) } @kinds;
for (my $i = $#events; $i > 0; $i--)
{
	my $j = int(rand($i + 1));
	@events[ $i, $j ] = @events[ $j, $i ];
}
note('schedule: ' . join(' ', @events));

# deaths are failed attempts until their batch commits: a generous
# max_attempts (the most attempts one batch needed is reported at the end)
my $job = $node->safe_psql($db, q{
SELECT iterjob.enqueue('items',
  $a$WITH u AS (UPDATE items SET n = n + 1 WHERE id = ANY($1) RETURNING 1)
     SELECT pg_sleep(d) FROM pace WHERE (SELECT count(*) FROM u) >= 0$a$,
  instances => 4, batch_size => } . $BATCH . q{, max_attempts => 25, name => 'chaos')});
my $started = time;

my @BATCH_PHASES = ('keyset query', 'action', 'checkpoint');
my $in_batch = join(',', map { "'$_'" } @BATCH_PHASES);

# The job's state and rows_done, and its workers that are in a batch
# (keyset query, action or checkpoint) as [pid, instance, phase, the
# deaths iterjob.errors holds for that instance]; retried while the server
# restarts.
sub snapshot
{
	my $out = poll_value($node, $db, qq{
SELECT p.state || '|' || p.rows_done || '|' || coalesce((
  SELECT string_agg(w.pid || ':' || w.instance || ':' || w.phase || ':'
                    || (SELECT count(*) FROM iterjob.errors e
                         WHERE e.job_id = $job AND e.instance = w.instance), ',' ORDER BY w.pid)
    FROM iterjob.workers w
    JOIN pg_stat_activity a ON a.pid = w.pid AND a.backend_type = 'iterjob worker'
   WHERE w.job_id = $job AND w.phase IN ($in_batch)), '')
  FROM iterjob.job_progress p WHERE p.job_id = $job}, 60);
	my ($state, $done, $list) = split /\|/, $out, 3;
	my @busy = map { [ split /:/, $_, 4 ] } grep { $_ ne '' } split /,/, ($list // '');
	return ($state, $done, @busy);
}

# After worker $pid of $instance was killed: wait until the instance is
# claimed again (or ends), and return whether that claim logged the death
# of a batch (iterjob.errors holds more than $deaths for the instance).  A
# claim logs the death in its own transaction, so once another live
# worker holds the instance, the count is final.
sub death_logged
{
	my ($pid, $instance, $deaths) = @_;
	my $deadline = time + 60;
	while (1)
	{
		my ($count, $claimed) = split /\|/, poll_value($node, $db, qq{
SELECT (SELECT count(*) FROM iterjob.errors WHERE job_id = $job AND instance = $instance)
       || '|' || (t.state <> 'running'
                  OR EXISTS (SELECT FROM pg_stat_activity a
                              WHERE a.pid = t.worker_pid AND a.pid <> $pid
                                AND a.backend_type = 'iterjob worker'))
  FROM iterjob.task t WHERE t.job_id = $job AND t.instance = $instance}, 60);
		return 1 if $count > $deaths;
		return 0 if $claimed eq 'true' || time > $deadline;
		usleep(50_000);
	}
}

# Wait up to $timeout seconds for a batch of the job to be in flight.
sub wait_in_flight
{
	my ($timeout) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		my ($state, $done, @busy) = snapshot();
		return ($state, $done, @busy) if @busy || $state ne 'running' || time > $deadline;
		usleep(20_000);
	}
}

sub server_up
{
	return poll_value($node, $db, 'SELECT 1', 90);
}

my %fired = map { $_ => 0 } @kinds;
my %mid_batch = map { $_ => 0 } @kinds;
my @log;
my $n = 0;
foreach my $kind (@events)
{
	$n++;
	my $pause = 0.2 + rand(2.3);
	my $pick = rand();
	last if time - $started > $CHAOS_MAX_TIME;
	usleep(int($pause * 1_000_000));

	my ($state, $done, @busy) = wait_in_flight(30);
	my $at = sprintf('%.1f', time - $started);
	ok($state eq 'running' && $done < $ROWS,
		"event $n ($kind, +${at}s): the job is still running ($state, $done of $ROWS rows done)");

	my $what;
	my $off = log_offset($node);
	my $victim;
	if ($kind eq 'sigkill' || $kind eq 'terminate')
	{
		if (!@busy)
		{
			push @log, "event $n +${at}s $kind: no batch in flight, nothing killed";
			next;
		}
		$victim = $busy[ int($pick * @busy) ];
		my ($pid, $instance, $phase) = @$victim;
		$what = "$kind worker $pid (instance $instance, $phase)";
		if ($kind eq 'sigkill')
		{
			if (kill('KILL', $pid))
			{
				ok(wait_log($node, qr/all server processes terminated; reinitializing/, $off, 60),
					"event $n: SIGKILL of worker $pid restarts the server after a crash");
			}
			else
			{
				$victim = undef;
			}
		}
		else
		{
			# the phase the worker is in as the signal is sent
			my ($now, $t) = split /\|/, poll_value($node, $db, qq{
SELECT w.phase || '|' || pg_terminate_backend(w.pid)
  FROM iterjob.workers w WHERE w.pid = $pid});
			if (($t // '') eq 'true')
			{
				$what .= ", signalled in $now";
				$victim->[2] = $now;
				ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid",
						'0', 30),
					"event $n: the terminated worker $pid is gone");
			}
			else
			{
				$victim = undef;
			}
		}
		$what .= ': already gone' unless $victim;
	}
	elsif ($kind eq 'fast')
	{
		$what = "restart -m fast";
		PostgreSQL::Test::Utils::system_or_bail('pg_ctl', '-w', '-D', $node->data_dir,
			'-l', $node->logfile, '-m', 'fast', 'restart');
		$node->_update_pid(1);
	}
	else
	{
		$what = "stop -m immediate, start";
		$node->stop('immediate');
		$node->start;
	}
	server_up();
	# keep the job behind 90% of the schedule, so that it cannot end before
	# the last event: slow it down while it is ahead
	$node->safe_psql($db, 'UPDATE pace SET d = '
		  . ($done > 0.9 * $ROWS * $n / @events ? $SLOW_PACE : $PACE));

	if ($kind eq 'fast' || $kind eq 'immediate')
	{
		$fired{$kind}++;
		$mid_batch{$kind}++ if @busy;
	}
	elsif ($victim)
	{
		# the victim's batch is a failed attempt: its death is logged when
		# its instance is claimed again
		$fired{$kind}++;
		my $logged = death_logged(@$victim[ 0, 1, 3 ]);
		$mid_batch{$kind}++ if $logged;
		$what .= $logged ? ', its death logged' : ', no death logged';
		# signalled before its batch's checkpoint (its phase reads
		# "checkpoint" from then until its next batch), the worker dies in
		# that batch
		ok($logged, "event $n: worker $victim->[0] terminated in its batch's $victim->[2]: "
			  . "iterjob.errors logs that batch's death")
		  if $kind eq 'terminate' && $victim->[2] =~ /^(keyset query|action)$/;
	}
	push @log, "event $n +${at}s $what; job had $done rows done, "
	  . scalar(@busy) . " batches in flight";
}
my $chaos_time = time - $started;
note($_) for @log;

my ($state, $done) = snapshot();
ok($state eq 'running' && $done < $ROWS,
	"after the chaos the job still runs ($state, $done of $ROWS rows done)");
foreach my $kind (qw(sigkill terminate))
{
	ok($mid_batch{$kind} >= 2,
		"$kind: at least 2 kills landed in a batch, by iterjob.errors "
		  . "($mid_batch{$kind} of $fired{$kind} victims' deaths logged)");
}
foreach my $kind (qw(fast immediate))
{
	ok($mid_batch{$kind} >= 2,
		"restart $kind: at least 2 restarts landed while batches were in flight "
		  . "($mid_batch{$kind} of $fired{$kind})");
}

check_no_orphans($node, $db, $job, 'after the chaos', timeout => 60, while_running => 1);

# the rest at full speed
$node->safe_psql($db, 'UPDATE pace SET d = 0');
my $lifted = time;
check_job_exact($node, $db, $job, 'items', 'chaos', wait => '150s');
my $finish_time = time - $lifted;
ok(wait_for($node, $db,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'", '0', 60),
	"no iterjob worker stays connected after the job ended");
is($node->safe_psql($db, "SELECT count(*) FROM iterjob.task WHERE job_id = $job AND state <> 'succeeded'"),
	'0', 'no task of the job is left running');

# Deaths by exit come only from pg_terminate_backend(): the workers a fast
# shutdown ends in their batches are not counted (nor those of an immediate
# one), and every victim's death was waited for above, so none was lost.
# A crash-restart counts every batch in flight, at most one per instance.
my ($deaths_exit, $deaths_crash, $max_attempt) = split /\|/, poll_value($node, $db, qq{
SELECT count(*) FILTER (WHERE message = 'worker died during this batch')
       || '|' || count(*) FILTER (WHERE message = 'worker died during this batch: the server restarted after a crash')
       || '|' || coalesce(max(attempt), 0)
  FROM iterjob.errors WHERE job_id = $job});
is($deaths_exit, $mid_batch{terminate},
	"iterjob.errors: one death by exit per worker terminated in a batch, none from the shutdowns");
ok($deaths_crash >= $mid_batch{sigkill} && $deaths_crash <= 4 * $fired{sigkill},
	"iterjob.errors: $deaths_crash batches in flight at $fired{sigkill} crash-restarts "
	  . "(at least each victim's, at most 4 each)");

my $events = 0;
$events += $fired{$_} for @kinds;
diag(sprintf(
		"chaos seed %s: %d events in %.0f s (%s); iterjob.errors: %d deaths by exit, "
		  . "%d by crash, at most %d attempts of one batch; the rest of the job took %.0f s",
		$seed, $events, $chaos_time,
		join(', ', map { "$_ $fired{$_} ($mid_batch{$_} mid-batch)" } @kinds),
		$deaths_exit, $deaths_crash, $max_attempt, $finish_time));

$node->stop;
done_testing();
