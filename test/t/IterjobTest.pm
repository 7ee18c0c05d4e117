# IterjobTest.pm: helpers shared by iterjob's crash/kill/restart TAP tests
# (test/t/*.pl, run by test/run-all.sh tap).
#
# Every wait polls with a deadline instead of sleeping a fixed time; every
# helper that checks something reports through Test::More, so a failure
# names what was expected.

package IterjobTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  iterjob_node make_table reset_table enqueue_job wait_rows
  wait_for poll_value check_job_exact orphan_state check_no_orphans
  worker_pids log_offset log_since wait_log count_iterjob_workers
  $BUMP_ACTION
);

# The action of the fault tests: every key visited once more adds one to n,
# so a lost batch leaves n = 0 and a repeated one n = 2.
our $BUMP_ACTION = 'UPDATE %s SET n = n + 1 WHERE id = ANY($1)';

# The installed library, as the first node loaded it.  Other engineers may
# run "make install" while these tests run: a server keeps the library it
# preloaded, but backends and workers that load "$libdir/iterjob" later
# open the new file, and mixing two builds' shared memory layouts crashes
# in ways that say nothing about iterjob's crash safety.  Say so at the end.
my $library;
my $library_stamp;

sub library_stamp
{
	my @st = stat($library) or return 'missing';
	return "inode $st[1], mtime $st[9], size $st[7]";
}

END
{
	if (defined $library_stamp && library_stamp() ne $library_stamp)
	{
		diag("WARNING: $library was replaced while this test ran "
			  . "($library_stamp -> " . library_stamp() . "); "
			  . "failures may come from mixing two builds: rerun");
	}
}

# A node with iterjob preloaded, started.  @extra: lines for
# postgresql.conf; a hash reference first holds options for
# PostgreSQL::Test::Cluster's init (allows_streaming => 1 for a primary).
sub iterjob_node
{
	my ($name, @extra) = @_;
	my %init = (@extra && ref $extra[0] eq 'HASH') ? %{ shift @extra } : ();
	if (!defined $library)
	{
		my $pkglibdir = `pg_config --pkglibdir`;
		chomp $pkglibdir;
		$library = "$pkglibdir/iterjob.so";
		$library_stamp = library_stamp();
	}
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf',
		join("\n",
			"shared_preload_libraries = 'iterjob'",
			'max_worker_processes = 16',
			'iterjob.max_workers = 4',
			'fsync = off',
			# Cluster.pm's init turns it off; the SIGKILL test needs the
			# postmaster's crash-restart cycle
			'restart_after_crash = on',
			"log_line_prefix = '%m [%p] %b %q%a '",
			@extra)
		  . "\n");
	$node->start;
	return $node;
}

# CREATE TABLE $table (id bigint primary key, n int not null default 0)
# with the keys 1..$rows.
sub make_table
{
	my ($node, $db, $table, $rows) = @_;
	$node->safe_psql($db, qq{
CREATE TABLE $table (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO $table (id) SELECT generate_series(1, $rows);
VACUUM ANALYZE $table;
});
	return;
}

sub reset_table
{
	my ($node, $db, $table) = @_;
	$node->safe_psql($db, "UPDATE $table SET n = 0 WHERE n <> 0");
	$node->safe_psql($db, "VACUUM $table");
	return;
}

# Enqueue a job; %p: action (default: $BUMP_ACTION on $table), instances,
# batch_size, name.  Returns the job id.
sub enqueue_job
{
	my ($node, $db, $table, %p) = @_;
	my $action = $p{action} // sprintf($BUMP_ACTION, $table);
	my $instances = $p{instances} // 4;
	my $batch = $p{batch_size} // 1000;
	my $name = $p{name} // $table;
	$action =~ s/'/''/g;
	my $id = $node->safe_psql($db, qq{
SELECT iterjob.enqueue('$table', '$action', instances => $instances,
                       batch_size => $batch, name => '$name')});
	die "enqueue returned no job id" unless $id =~ /^\d+$/;
	return $id;
}

# Wait, inside one session (a fresh snapshot per poll), until job $job has
# iterated at least $min rows; dies after $timeout seconds.  Returns the
# rows_done seen then.
sub wait_rows
{
	my ($node, $db, $job, $min, $timeout) = @_;
	$timeout //= 120;
	return $node->safe_psql($db, qq{
DO \$\$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '$timeout s';
  done bigint;
BEGIN
  LOOP
    SELECT rows_done INTO done FROM iterjob.job_progress WHERE job_id = $job;
    EXIT WHEN done >= $min;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'job $job iterated % rows in $timeout s, expected at least $min', done;
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;
END
\$\$;
SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job;
});
}

# $node->psql, where psql refusing the connection is a failed attempt too:
# psql can exit (the server is restarting) before IPC::Run has written the
# query to its stdin, and IPC::Run then dies of the broken pipe.
sub try_psql
{
	my ($node, $db, $query) = @_;
	my @result = eval { $node->psql($db, $query, on_error_stop => 1) };
	return @result if @result;
	return (1, '', "psql died: $@");
}

# Poll $query until it returns $expected (as psql -At prints it) or
# $timeout seconds pass.  Connection failures count as "not yet".  Returns
# true when it matched; on time-out, diags the last output.
sub wait_for
{
	my ($node, $db, $query, $expected, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	my ($out, $err) = ('', '');
	while (1)
	{
		my ($ret);
		($ret, $out, $err) = try_psql($node, $db, $query);
		return 1 if $ret == 0 && $out eq $expected;
		last if time > $deadline;
		usleep(50_000);
	}
	diag("timed out after ${timeout}s waiting for\n$query\nto return '$expected'; "
		  . "last output '$out', stderr '$err'");
	return 0;
}

# Wait until the server log holds a line matching $re after offset $off
# (the postmaster writes some lines a moment after what a test waits for),
# or $timeout seconds pass.  Returns true when it does.
sub wait_log
{
	my ($node, $re, $off, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	while (1)
	{
		return 1 if $node->log_contains($re, $off);
		last if time > $deadline;
		usleep(50_000);
	}
	diag("timed out after ${timeout}s waiting for a log line matching $re");
	return 0;
}

# The value of a query, retried on connection errors (e.g. during a
# crash-restart) until $timeout seconds pass.
sub poll_value
{
	my ($node, $db, $query, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	while (1)
	{
		my ($ret, $out, $err) = try_psql($node, $db, $query);
		return $out if $ret == 0;
		die "query failed: $err\n$query" if time > $deadline;
		usleep(100_000);
	}
}

# "orphans|shared|running|job state" for job $job: how many of its tasks are
# running while no live iterjob worker of this database has the task's
# worker_pid, how many running tasks share a worker_pid with another one,
# how many are running, and the job's state.
sub orphan_state
{
	my ($node, $db, $job) = @_;
	return poll_value($node, $db, orphan_query($job));
}

# It reads the task table itself, not task_progress: what matters is the
# worker_pid iterjob recorded, not how a view presents it.
sub orphan_query
{
	my ($job) = @_;
	return qq{
WITH w AS (SELECT pid FROM pg_stat_activity
            WHERE backend_type = 'iterjob worker' AND datname = current_database()),
     r AS (SELECT * FROM iterjob.task WHERE job_id = $job AND state = 'running')
SELECT (SELECT count(*) FROM r WHERE worker_pid IS NULL OR worker_pid NOT IN (SELECT pid FROM w))
       || '|' || (SELECT count(*) - count(DISTINCT worker_pid) FROM r)
       || '|' || (SELECT count(*) FROM r)
       || '|' || (SELECT state FROM iterjob.job WHERE id = $job)};
}

# Within $timeout seconds, every running task of job $job has a live
# iterjob worker, and no two share one.  With $while_running, this must be
# seen while the job still runs with at least one running task (so the
# check cannot pass merely because the job ended).
sub check_no_orphans
{
	my ($node, $db, $job, $label, %p) = @_;
	my $timeout = $p{timeout} // 10;
	my $deadline = time + $timeout;
	my $last = '';
	while (1)
	{
		my ($ret, $out, $err) = $node->psql($db, orphan_query($job));
		if ($ret == 0)
		{
			$last = $out;
			my ($orphans, $shared, $running, $state) = split /\|/, $out;
			if ($orphans == 0 && $shared == 0
				&& (!$p{while_running} || ($running > 0 && $state eq 'running')))
			{
				pass("$label: within ${timeout}s every running task of job $job has "
					  . "its own live iterjob worker ($running running"
					  . ($p{while_running} ? ", job still $state" : "") . ")");
				return 1;
			}
		}
		last if time > $deadline;
		usleep(50_000);
	}
	fail("$label: within ${timeout}s every running task of job $job has its own live "
		  . "iterjob worker" . ($p{while_running} ? " while the job still runs" : ""));
	diag("last orphans|shared|running|job state: $last");
	diag(poll_value($node, $db,
		"SELECT instance, state, cursor, rows_done, worker_pid FROM iterjob.task WHERE job_id = $job ORDER BY instance"));
	diag(poll_value($node, $db,
		"SELECT pid, datname, backend_type, state, query FROM pg_stat_activity WHERE backend_type LIKE 'iterjob%'"));
	return 0;
}

# After a fault: job $job, over $table of $rows keys 1..$rows, must end
# succeeded by itself with every key visited exactly once.
sub check_job_exact
{
	my ($node, $db, $job, $table, $label, %p) = @_;
	my $wait = $p{wait} // '300s';

	is(poll_value($node, $db, "SELECT iterjob.wait($job, '$wait')"), 'succeeded',
		"$label: job $job succeeds by itself (iterjob.wait returns succeeded)");

	my ($instances, $batch) = split /\|/,
	  $node->safe_psql($db, "SELECT instances, batch_size FROM iterjob.job WHERE id = $job");
	my $rows = $node->safe_psql($db, "SELECT count(*) FROM $table");

	is($node->safe_psql($db, "SELECT count(*) FROM $table WHERE n <> 1"), '0',
		"$label: no row missed or processed twice (count(*) WHERE n <> 1 = 0)");
	is($node->safe_psql($db, "SELECT coalesce(sum(n), 0) FROM $table"), $rows,
		"$label: sum(n) = $rows");
	is($node->safe_psql($db, "SELECT sum(rows_done) FROM iterjob.task_progress WHERE job_id = $job"),
		$rows, "$label: sum(rows_done) over task_progress = $rows");
	is($node->safe_psql($db, qq{
SELECT count(*) FILTER (WHERE state = 'succeeded') || '/' || count(*)
  FROM iterjob.task_progress WHERE job_id = $job}),
		"$instances/$instances", "$label: all $instances tasks succeeded");

	# each instance's rows, batches and final cursor are exactly those of
	# its partition: a repeated batch would show in batches_done
	my $per_instance = qq{
WITH p AS (SELECT id % $instances AS i, count(*) AS c, max(id) AS last
             FROM $table GROUP BY 1),
     e AS (SELECT g AS i, coalesce(p.c, 0) AS c, p.last
             FROM generate_series(0, $instances - 1) g LEFT JOIN p ON p.i = g)
SELECT count(*) FROM e JOIN iterjob.task_progress t
    ON t.job_id = $job AND t.instance = e.i
 WHERE t.rows_done = e.c
   AND t.batches_done = ceil(e.c::numeric / $batch)
   AND (t.cursor ->> 'inner_cursor')::bigint IS NOT DISTINCT FROM e.last
   AND (t.cursor ->> 'instance')::int = e.i};
	is($node->safe_psql($db, $per_instance), $instances,
		"$label: every instance's rows_done, batches_done (ceil(rows / $batch)) and cursor match its partition");
	is($node->safe_psql($db, qq{
SELECT state || '|' || instances_done || '|' || rows_done
  FROM iterjob.job_progress WHERE job_id = $job}),
		"succeeded|$instances|$rows", "$label: job_progress shows succeeded, $instances instances done, $rows rows");
	# a worker killed in a batch is a failed attempt of that batch, and
	# the only kind of failure here
	is($node->safe_psql($db, qq{
SELECT count(*) FROM iterjob.error_log
 WHERE job_id = $job AND message !~ '^worker died during this batch'}),
		'0', "$label: no batch of job $job failed but by its worker's death");
	return;
}

# pids of the iterjob workers connected to $db
sub worker_pids
{
	my ($node, $db) = @_;
	my $out = poll_value($node, 'postgres', qq{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'iterjob worker' AND datname = '$db' ORDER BY pid});
	return grep { /\d/ } split /\n/, $out;
}

# how many iterjob workers are connected (to $db, or anywhere)
sub count_iterjob_workers
{
	my ($node, $db) = @_;
	my $where = defined $db ? " AND datname = '$db'" : '';
	return poll_value($node, 'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'$where");
}

sub log_offset
{
	my ($node) = @_;
	return -s $node->logfile;
}

sub log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset);
}

1;
