# iterjob on a Citus cluster of three nodes on this machine (a coordinator
# and two workers, each with citus and iterjob preloaded; jobs are enqueued
# on the coordinator): a distributed table of 200,000 rows over 8 shards
# iterated with partition 'shard' (the default there), every row exactly
# once, each batch's keyset query and action single-shard (read off the
# workers' statement logs), a batch's work unseen until its checkpoint
# commits and gone with it when it is rolled back; a worker node stopped (immediate) mid-job and
# started again, and one down past max_attempts (failed, then retry); the
# coordinator restarted (immediate) mid-job; a shard
# moved mid-job (followed) and one split (the job fails, naming it); a reference
# table, a local table, a text distribution key, the modulo partition over
# the distributed table; pause, resume and cancel from the coordinator; an
# ordinary role's job, which runs as that role on every node; a node that
# cannot be reached at enqueue, and replicated shards, refused with no job
# left behind.
#
# Skipped where Citus is not installed for the PostgreSQL under test
# (test/build-citus.sh builds 13.2.2 for 15 to 17, 14.0.1 for 18).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use IterjobTest;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
if (!-e "$pkglibdir/citus.so")
{
	plan skip_all => "Citus is not installed for this PostgreSQL (no $pkglibdir/citus.so; test/build-citus.sh builds it)";
}

my $db = 'postgres';
my $ROWS = 200_000;
my @common = (
	"shared_preload_libraries = 'citus,iterjob'",
	"listen_addresses = '127.0.0.1'",
	'max_prepared_transactions = 20',
	"citus.node_conninfo = 'sslmode=disable'",
	# the maintenance daemon resolves prepared transactions left by a crash
	"citus.recover_2pc_interval = '1s'",
	'max_worker_processes = 32');

my $coord = iterjob_node('coordinator', @common);
my @workers = map {
	iterjob_node("worker$_", @common, "log_statement = 'all'", 'citus.log_local_commands = on')
} (1, 2);
$_->safe_psql($db, 'CREATE EXTENSION citus') for ($coord, @workers);
$coord->safe_psql($db, "SELECT citus_set_coordinator_host('127.0.0.1', " . $coord->port . ")");
$coord->safe_psql($db, "SELECT citus_add_node('127.0.0.1', " . $_->port . ")") for @workers;
$coord->safe_psql($db, 'CREATE EXTENSION iterjob');

sub q1 { return $coord->safe_psql($db, $_[0]); }

# hold_rows_not_done(TABLE): on each worker node, a session locks the rows
# of TABLE's shards there that no batch did yet (n = 0), and keeps them;
# returns the sessions' handles
sub hold_rows_not_done
{
	my ($table) = @_;
	return map {
		my $w = $_;
		my ($out, $err) = ('', '');
		IPC::Run::start(
			[
				'psql', '-X', '-h', $w->host, '-p', $w->port, '-d', $db,
				'-c', qq{SET citus.override_table_visibility = off;
DO \$\$DECLARE s regclass;
BEGIN
  FOR s IN SELECT c.oid FROM pg_class c WHERE c.relname LIKE '${table}\\_%' AND c.relkind = 'r' LOOP
    EXECUTE format('SELECT FROM %s WHERE n = 0 FOR UPDATE', s);
  END LOOP;
END\$\$;
SELECT pg_sleep(600)}
			],
			'>', \$out, '2>', \$err);
	} @workers;
}

sub wait_state
{
	my ($job, $timeout) = @_;
	return q1("SELECT iterjob.wait($job, '${\($timeout // 180)} s')");
}

# node_log_statements(NODE, OFFSET, TABLE): in NODE's log since OFFSET, the
# node_batch calls of iterjob workers over TABLE's shards, the commands
# Citus ran locally in their backends over TABLE's shards, and how many of
# either named more than one shard
sub node_log_statements
{
	my ($node, $mark, $table) = @_;
	my ($calls, $local, $multi) = (0, 0, 0);

	# one entry per log line that starts with a timestamp (a statement's
	# text and its parameters go on over the lines after it)
	for my $line (split /\n(?=\d{4}-\d\d-\d\d )/, log_since($node, $mark))
	{
		next unless $line =~ /iterjob worker (?:LOG|DETAIL)/;
		my $kind;
		if ($line =~ /DETAIL:  [Pp]arameters: \$1 = '\d+', \$2 = '\d+', \$3 = '\d+', \$4 = '.*${table}_\d+/s)
		{
			$kind = 'call';
		}
		elsif ($line =~ /statement: ((?:UPDATE|DELETE) .*public\.${table}_\d+)/s)
		{
			$kind = 'local';
		}
		else
		{
			next;
		}
		my %shards = map { $_ => 1 } ($line =~ /${table}_(\d+)/g);
		$multi++ if keys %shards != 1;
		$kind eq 'call' ? $calls++ : $local++;
	}
	return ($calls, $local, $multi);
}

q1(qq{
SET citus.shard_count = 8;
CREATE TABLE items (id bigint PRIMARY KEY, v int, n int NOT NULL DEFAULT 0,
                    m int NOT NULL DEFAULT 0, k int NOT NULL DEFAULT 0);
SELECT create_distributed_table('items', 'id');
INSERT INTO items (id, v) SELECT g, g % 1000 FROM generate_series(1, $ROWS) g;
ANALYZE items;});

# 1. partition 'shard', 4 instances --------------------------------------------

my @marks = map { log_offset($_) } @workers;
my $job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 1000)});
is(wait_state($job), 'succeeded', 'shard: the job over the distributed table succeeds');
is(q1("SELECT partition FROM iterjob.job WHERE id = $job"), 'shard',
	"shard: a hash-distributed table gets partition 'shard' by default");
is(q1(q{SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM items}),
	"$ROWS of $ROWS", 'shard: every row processed exactly once');
is(q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job"), $ROWS,
	'shard: job_progress.rows_done = the rows');
is(q1(qq{
SELECT count(*) FROM iterjob.shard_progress p
  JOIN (SELECT get_shard_id_for_distribution_column('items', id) AS shard_id, count(*) AS n
          FROM items GROUP BY 1) s USING (shard_id)
 WHERE p.job_id = $job AND p.state = 'done' AND p.rows_done = s.n}), 8,
	'shard: shard_progress has the 8 shards, each done with its own row count');
is(q1(qq{
SELECT count(*) || ' nodes, at most ' || max(c) || ' instances per node, '
       || (SELECT count(*) FROM (SELECT instance FROM iterjob.shard_progress WHERE job_id = $job
                                  GROUP BY instance HAVING count(DISTINCT node) > 1) x)
       || ' instances on more than one node'
  FROM (SELECT node, count(DISTINCT instance) AS c
          FROM iterjob.shard_progress WHERE job_id = $job GROUP BY node) s}),
	'2 nodes, at most 2 instances per node, 0 instances on more than one node',
	'shard: the 4 instances are dealt to the 2 nodes, 2 each, an instance on one node');
is(q1(qq{
SELECT count(*) FROM iterjob.task WHERE job_id = $job
   AND cursor ? 'shard' AND cursor ? 'inner_cursor' AND cursor ? 'instance'}), 4,
	'shard: each cursor says its instance, its shard and the key in it');

# each batch is one call of iterjob.node_batch on the shard's node, over
# the connection of an iterjob worker, which reads the shard and runs the
# action there, in that backend, on the shard's own table: Citus executes
# no command of the job locally (it would log it)
my ($calls, $updates, $multi) = (0, 0, 0);
for my $i (0, 1)
{
	my ($c, $u, $m) = node_log_statements($workers[$i], $marks[$i], 'items');
	$calls += $c;
	$updates += $u;
	$multi += $m;
}
note("worker statements of the job: $calls node_batch calls, $updates commands Citus ran locally");
cmp_ok($calls, '>=', $ROWS / 1000, 'shard: each batch is one node_batch call on a worker');
is($updates, 0, "shard: the action runs on the shard's table as the node keeps it prepared, not planned by Citus at each batch");
is($multi, 0, 'shard: every node_batch call on a worker names exactly one shard');
is(join(',', map { $_->safe_psql($db, "SELECT count(*) FROM iterjob.node_cursor WHERE job_id = $job AND done") } @workers),
	'4,4', 'shard: each node keeps the cursors of its 4 shards, all done');
is(q1("SELECT iterjob.recount($job)"), $ROWS, 'shard: recount counts the rows of every shard once');
is(q1(qq{
SELECT count(*) FROM iterjob.task_progress t
 WHERE job_id = $job
   AND rows_total = (SELECT sum(rows_done) FROM iterjob.shard_progress s
                      WHERE s.job_id = t.job_id AND s.instance = t.instance)}), 4,
	"shard: recount's count per instance is the rows of its shards");
is(join(',', map { $_->safe_psql($db, 'SELECT count(*) FROM pg_prepared_xacts') } @workers),
	'0,0', 'shard: no prepared transaction is left on the workers');

# 1a. the action on the shard's table: as users write it (names qualified
# by the table's name too), and an action that reads another table, which
# runs as written (Citus plans it) ---------------------------------------------

q1(q{
SET citus.shard_count = 4;
CREATE TABLE acts (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, m int NOT NULL DEFAULT 0);
SELECT create_distributed_table('acts', 'id', colocate_with => 'none');
INSERT INTO acts (id) SELECT generate_series(1, 3000);
CREATE TABLE deltas (d int);
SELECT create_reference_table('deltas');
INSERT INTO deltas VALUES (1);});
@marks = map { log_offset($_) } @workers;
$job = q1(q{
SELECT iterjob.enqueue('acts', 'UPDATE acts SET n = acts.n + 1 WHERE acts.id = ANY($1)',
                       instances => 2, batch_size => 500)});
is(wait_state($job), 'succeeded', 'actions: the job whose action names its columns by the table succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1 AND m = 0) FROM acts}), 3000,
	'actions: every row processed exactly once');
my @seen = map { [ node_log_statements($workers[$_], $marks[$_], 'acts') ] } (0, 1);
is(($seen[0][1] + $seen[1][1]) . ' local, ' . ($seen[0][2] + $seen[1][2]) . ' multi-shard',
	'0 local, 0 multi-shard', "actions: that action runs on the shard's table");
@marks = map { log_offset($_) } @workers;
$job = q1(q{
SELECT iterjob.enqueue('acts', 'UPDATE acts SET m = m + (SELECT d FROM deltas) WHERE id = ANY($1)',
                       instances => 2, batch_size => 500)});
is(wait_state($job), 'succeeded', 'actions: the job whose action reads a reference table succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1 AND m = 1) FROM acts}), 3000,
	'actions: every row processed exactly once by it');
@seen = map { [ node_log_statements($workers[$_], $marks[$_], 'acts') ] } (0, 1);
cmp_ok($seen[0][1] + $seen[1][1], '>=', 6,
	'actions: that action runs as written, one shard at a time, through Citus on the node');
is($seen[0][2] + $seen[1][2], 0, 'actions: each of its commands names one shard');

# 1b. a batch's work is not seen before it commits on its node with the
# shard's cursor, and a batch rolled back after its action ran on the shard
# is not kept ----------------------------------------------------------------

q1(q{
SET citus.shard_count = 4;
CREATE TABLE atomic (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('atomic', 'id', colocate_with => 'none');
INSERT INTO atomic (id) SELECT generate_series(1, 2000);});
$job = q1(q{
SELECT iterjob.enqueue('atomic', 'UPDATE atomic SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 100, batch_pause => '200ms')});
ok($coord->poll_query_until($db, "SELECT rows_done >= 200 FROM iterjob.job_progress WHERE job_id = $job"),
	'atomic: (precondition) the job is running');
# sessions on both nodes lock the rows not done yet in the shards there: the
# next batch waits in its action, after its cursor row is locked and before
# it commits
my @gates = hold_rows_not_done('atomic');
my $waiting_node;
ok( $coord->poll_query_until(
		$db, qq{
SELECT EXISTS (SELECT FROM iterjob.workers WHERE job_id = $job AND phase = 'node batch')}),
	'atomic: (precondition) a batch runs on a node');
for (1 .. 1800)
{
	for my $w (@workers)
	{
		$waiting_node = $w
		  if $w->safe_psql($db, q{
SELECT count(*) FROM pg_stat_activity
 WHERE query LIKE '%iterjob.node_batch%' AND wait_event_type = 'Lock'}) > 0;
	}
	last if $waiting_node;
	usleep(100_000);
}
ok($waiting_node, 'atomic: (precondition) a batch runs its action on a node and waits for a row lock there');
my $committed = join('+', map { $_->safe_psql($db, "SELECT coalesce(sum(rows_done), 0) FROM iterjob.node_cursor WHERE job_id = $job") } @workers);
is(q1('SELECT count(*) FROM atomic WHERE n = 1'), q1("SELECT $committed"),
	'atomic: the rows changed that anyone sees are those of the batches whose cursors committed on their nodes');
# the batch is cancelled on its node, in its action
$waiting_node->safe_psql($db, q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
      WHERE query LIKE '%iterjob.node_batch%' AND wait_event_type = 'Lock'});
$_->safe_psql($db, q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE query LIKE '%FOR UPDATE%pg_sleep(600)%' AND pid <> pg_backend_pid()}) for @workers;
eval { $_->finish } for @gates;
is(wait_state($job), 'succeeded', 'atomic: the job whose batch was cancelled in its action succeeds');
cmp_ok(q1("SELECT count(*) FROM iterjob.errors WHERE job_id = $job"), '>=', 1,
	'atomic: (precondition) the cancelled batch was a failed attempt');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM atomic}),
	'2000 of 2000', 'atomic: every row exactly once: the cancelled batch left nothing on its shard');

# 1c. the coordinator's worker dies (SIGKILL) while its batch waits in its
# action on a node: the node goes on, commits the batch with the shard's
# cursor and finds no one to reply to; the coordinator restarts, and the
# next worker goes on after that batch, which is done once ------------------

q1(q{
SET citus.shard_count = 4;
CREATE TABLE lost (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('lost', 'id', colocate_with => 'none');
INSERT INTO lost (id) SELECT generate_series(1, 2000);});
$job = q1(q{
SELECT iterjob.enqueue('lost', 'UPDATE lost SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 100, batch_pause => '200ms')});
ok($coord->poll_query_until($db, "SELECT rows_done >= 200 FROM iterjob.job_progress WHERE job_id = $job"),
	'reply lost: (precondition) the job is running');
my @lost_gates = hold_rows_not_done('lost');
my ($lost_node, $node_pid);
for (1 .. 1800)
{
	for my $w (@workers)
	{
		my $pid = $w->safe_psql($db, q{
SELECT pid FROM pg_stat_activity
 WHERE query LIKE '%iterjob.node_batch%' AND wait_event_type = 'Lock'});
		($lost_node, $node_pid) = ($w, $pid) if $pid ne '';
	}
	last if $lost_node;
	usleep(100_000);
}
ok($lost_node, 'reply lost: (precondition) a batch waits in its action on a node');
my $before = $lost_node->safe_psql($db, "SELECT coalesce(sum(rows_done), 0) FROM iterjob.node_cursor WHERE job_id = $job");
my $worker_pid = q1("SELECT pid FROM iterjob.workers WHERE job_id = $job");
kill 'KILL', $worker_pid;
ok($coord->poll_query_until($db, 'SELECT true'), 'reply lost: the coordinator is back after its worker was killed');
$_->safe_psql($db, q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE query LIKE '%FOR UPDATE%pg_sleep(600)%' AND pid <> pg_backend_pid()}) for @workers;
eval { $_->finish } for @lost_gates;
ok($lost_node->poll_query_until($db, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $node_pid"),
	'reply lost: the node ended the batch whose worker was gone');
cmp_ok($lost_node->safe_psql($db, "SELECT coalesce(sum(rows_done), 0) FROM iterjob.node_cursor WHERE job_id = $job"),
	'>', $before, 'reply lost: the node committed that batch with its cursor, with no one to reply to');
is(wait_state($job), 'succeeded', 'reply lost: the job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM lost}),
	'2000 of 2000', 'reply lost: every row exactly once');
is(q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job"), 2000,
	"reply lost: the job's figures count the batch whose reply was lost once");

# 2. a worker node stopped (immediate) mid-job ------------------------------------

$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET m = m + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 500, batch_pause => '20ms')});
ok($coord->poll_query_until($db, "SELECT rows_done >= 20000 FROM iterjob.job_progress WHERE job_id = $job"),
	'worker stopped: (precondition) the job is running');
$workers[0]->stop('immediate');
ok($coord->poll_query_until($db, qq{
SELECT count(*) > 0 FROM iterjob.error_log WHERE job_id = $job}),
	'worker stopped: batches on its shards fail');
note('worker stopped: ' . q1(qq{SELECT message FROM iterjob.error_log WHERE job_id = $job ORDER BY id LIMIT 1}));
ok(q1(qq{SELECT state FROM iterjob.job_progress WHERE job_id = $job}) eq 'running',
	'worker stopped: the job is still running (its batches back off)');
sleep 2;
$workers[0]->start;
is(wait_state($job), 'succeeded', 'worker stopped: once the node is back the job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE m = 1) || ' of ' || count(*) FROM items}),
	"$ROWS of $ROWS", 'worker stopped: every row exactly once');
is(q1("SELECT count(*) FROM iterjob.task WHERE job_id = $job AND state <> 'succeeded'"), 0,
	'worker stopped: no instance is left behind');
ok($workers[0]->poll_query_until($db, 'SELECT count(*) = 0 FROM pg_prepared_xacts'),
	'worker stopped: no prepared transaction stays on the restarted node');

# 2b. a node down for longer than max_attempts: failed, then retry() -------------

q1('UPDATE items SET m = 0');
$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET m = m + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 500, batch_pause => '20ms', max_attempts => 2)});
ok($coord->poll_query_until($db, "SELECT rows_done >= 20000 FROM iterjob.job_progress WHERE job_id = $job"),
	'node down: (precondition) the job is running');
$workers[1]->stop('immediate');
is(wait_state($job, 60), 'failed', 'node down: past max_attempts (2) the job ends failed');
like(q1("SELECT last_error FROM iterjob.job_progress WHERE job_id = $job"),
	qr/127\.0\.0\.1:${\$workers[1]->port}/, "node down: last_error names the node that is down");
$workers[1]->start;
is(q1("SELECT iterjob.retry($job)"), 'running', 'node down: retry() once the node is back');
is(wait_state($job), 'succeeded', 'node down: the retried job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE m = 1) || ' of ' || count(*) FROM items}),
	"$ROWS of $ROWS", 'node down: every row exactly once, across the failure and the retry');
ok($workers[1]->poll_query_until($db, 'SELECT count(*) = 0 FROM pg_prepared_xacts'),
	'node down: no prepared transaction stays on the node');

# 3. the coordinator restarted (immediate) mid-job -------------------------------

$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET k = k + 1 WHERE id = ANY($1)',
                       instances => 4, batch_size => 500, batch_pause => '20ms')});
ok($coord->poll_query_until($db, "SELECT rows_done >= 20000 FROM iterjob.job_progress WHERE job_id = $job"),
	'coordinator restart: (precondition) the job is running');
$coord->stop('immediate');
$coord->start;
is(wait_state($job), 'succeeded', 'coordinator restart: the job resumes and succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE k = 1) || ' of ' || count(*) FROM items}),
	"$ROWS of $ROWS", 'coordinator restart: every row exactly once');
ok($_->poll_query_until($db, 'SELECT count(*) = 0 FROM pg_prepared_xacts'),
	'coordinator restart: Citus resolves the prepared transactions on ' . $_->name) for @workers;

# 3b. a shard moved to the other node mid-job is followed; one split is refused --

q1(q{
SET citus.shard_count = 4;
CREATE TABLE moving (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('moving', 'id', colocate_with => 'none');
INSERT INTO moving (id) SELECT generate_series(1, 40000);
SET citus.shard_count = 2;
CREATE TABLE splitting (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('splitting', 'id', colocate_with => 'none');
INSERT INTO splitting (id) SELECT generate_series(1, 20000);});

$job = q1(q{
SELECT iterjob.enqueue('moving', 'UPDATE moving SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 200, batch_pause => '50ms')});
ok($coord->poll_query_until($db, "SELECT rows_done >= 2000 FROM iterjob.job_progress WHERE job_id = $job"),
	'shard move: (precondition) the job is running');
my ($moved, $from) = split /\|/, q1(qq{
SELECT shard_id, shard_node FROM iterjob.task_progress WHERE job_id = $job AND instance = 0});
my ($from_port) = $from =~ /:(\d+)$/;
my ($to) = grep { $_->port != $from_port } @workers;
q1(qq{SELECT citus_move_shard_placement($moved, '127.0.0.1', $from_port, '127.0.0.1', ${\$to->port},
                                        shard_transfer_mode => 'block_writes')});
is(q1("SELECT node FROM iterjob.shard_progress WHERE job_id = $job AND shard_id = $moved"),
	'127.0.0.1:' . $to->port, 'shard move: shard_progress shows the shard on its new node');
is(wait_state($job), 'succeeded', 'shard move: the job whose current shard moved succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM moving}),
	'40000 of 40000', 'shard move: every row exactly once, before and after the move');

$job = q1(q{
SELECT iterjob.enqueue('splitting', 'UPDATE splitting SET n = n + 1 WHERE id = ANY($1)',
                       instances => 1, batch_size => 100, batch_pause => '50ms', max_attempts => 2)});
ok($coord->poll_query_until($db, "SELECT rows_done >= 500 FROM iterjob.job_progress WHERE job_id = $job"),
	'shard split: (precondition) the job is running');
my $later = q1(qq{SELECT shards[2] FROM iterjob.task WHERE job_id = $job});
q1(qq{
SELECT citus_split_shard_by_split_points(
         $later,
         ARRAY[((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text],
         ARRAY[(SELECT nodeid FROM pg_dist_node WHERE nodeport = ${\$workers[0]->port}),
               (SELECT nodeid FROM pg_dist_node WHERE nodeport = ${\$workers[1]->port})],
         shard_transfer_mode => 'block_writes')
  FROM pg_dist_shard WHERE shardid = $later});
is(wait_state($job), 'failed', 'shard split: the job ends failed when it reaches the split shard');
like(q1("SELECT last_error FROM iterjob.job_progress WHERE job_id = $job"),
	qr/^shard $later of splitting no longer exists$/, 'shard split: last_error names the shard');
is(q1("SELECT count(*) FILTER (WHERE n = 1) || ' ' || count(*) FILTER (WHERE n > 1) FROM splitting"),
	q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job") . ' 0',
	'shard split: the rows done before, each once');

# 4. other tables of a Citus cluster ------------------------------------------

q1(q{
CREATE TABLE ref (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_reference_table('ref');
INSERT INTO ref (id) SELECT generate_series(1, 5000);
CREATE TABLE loc (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO loc (id) SELECT generate_series(1, 5000);
SET citus.shard_count = 4;
CREATE TABLE docs (id text PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('docs', 'id');
INSERT INTO docs (id) SELECT 'doc-' || g FROM generate_series(1, 5000) g;});
for my $t (['ref', 'modulo', 'reference table'], ['loc', 'modulo', 'local table'],
	['docs', 'shard', 'text distribution key'])
{
	my ($table, $partition, $what) = @$t;
	my $j = q1(qq{
SELECT iterjob.enqueue('$table', 'UPDATE $table SET n = n + 1 WHERE id = ANY(\$1)',
                       instances => 2, batch_size => 300)});
	is(wait_state($j), 'succeeded', "$what: the job succeeds");
	is(q1("SELECT partition FROM iterjob.job WHERE id = $j"), $partition,
		"$what: partition '$partition' by default");
	is(q1("SELECT count(*) FILTER (WHERE n = 1) || ' of ' || count(*) FROM $table"),
		'5000 of 5000', "$what: every row exactly once");
}

# the modulo partition over the distributed table: multi-shard keyset
# queries, each batch committed with its checkpoint in two phases, which
# Citus 14 and later do not let iterjob ask for: there it is refused
if (q1(q{SELECT split_part(extversion, '.', 1)::int FROM pg_extension WHERE extname = 'citus'}) < 14)
{
	$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 2000, partition => 'modulo')});
	is(wait_state($job), 'succeeded', "modulo over the distributed table: the job succeeds");
	is(q1(q{SELECT count(*) FILTER (WHERE n = 2) || ' of ' || count(*) FROM items}),
		"$ROWS of $ROWS", 'modulo over the distributed table: every row exactly once');
}
else
{
	my ($ret, $out, $err) = $coord->psql($db, q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 2000, partition => 'modulo')});
	like($err, qr/ERROR:  partition 'modulo' cannot iterate the distributed table items with this version of Citus.*HINT:  Use partition => 'shard'/s,
		'modulo over the distributed table: refused on Citus 14 and later, with a hint');
	is(q1('SELECT count(*) FROM iterjob.job WHERE relation = \'items\'::regclass AND partition = \'modulo\''), 0,
		'modulo over the distributed table: no job is left behind');
	# the sections below count on this job's increment
	q1('UPDATE items SET n = n + 1');
}

# 5. pause, resume, cancel from the coordinator ----------------------------------

$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 200, batch_pause => '50ms')});
ok($coord->poll_query_until($db, "SELECT rows_done > 0 FROM iterjob.job_progress WHERE job_id = $job"),
	'pause: (precondition) the job is running');
is(q1("SELECT iterjob.pause($job)"), 'paused', 'pause: pause() from the coordinator');
ok($coord->poll_query_until($db, "SELECT count(*) = 0 FROM iterjob.workers WHERE job_id = $job"),
	'pause: its workers leave it');
my $paused_rows = q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job");
sleep 1;
is(q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job"), $paused_rows,
	'pause: no row is done while paused');
is(q1("SELECT count(*) FROM items WHERE n = 3"), $paused_rows,
	'pause: the rows done are the rows committed');
is(q1("SELECT iterjob.resume($job)"), 'running', 'resume: resume() from the coordinator');
is(wait_state($job), 'succeeded', 'resume: the resumed job succeeds');
is(q1(q{SELECT count(*) FILTER (WHERE n = 3) || ' of ' || count(*) FROM items}),
	"$ROWS of $ROWS", 'resume: every row exactly once across the pause');

$job = q1(q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       instances => 2, batch_size => 200, batch_pause => '50ms')});
ok($coord->poll_query_until($db, "SELECT rows_done > 0 FROM iterjob.job_progress WHERE job_id = $job"),
	'cancel: (precondition) the job is running');
is(q1("SELECT iterjob.cancel($job)"), 'cancelled', 'cancel: cancel() from the coordinator');
is(wait_state($job), 'cancelled', 'cancel: the job ends cancelled');
is(q1("SELECT count(*) FROM items WHERE n = 4"),
	q1("SELECT rows_done FROM iterjob.job_progress WHERE job_id = $job"),
	'cancel: the rows done before the cancel, each once');

# 6. an ordinary role's job: all of it, on every node, runs as that role -----

q1(q{
CREATE ROLE citus_alice LOGIN;
GRANT iterjob_user TO citus_alice;
SET citus.shard_count = 4;
CREATE TABLE alice_items (id bigint PRIMARY KEY, who text);
SELECT create_distributed_table('alice_items', 'id');
INSERT INTO alice_items (id) SELECT generate_series(1, 10000);
ALTER TABLE alice_items OWNER TO citus_alice;});
$job = $coord->safe_psql($db, q{
SELECT iterjob.enqueue('alice_items', 'UPDATE alice_items SET who = current_user WHERE id = ANY($1)',
                       filter => 'current_user = ''citus_alice''', instances => 2, batch_size => 500)},
	extra_params => [ '-U', 'citus_alice' ]);
is(wait_state($job), 'succeeded', "an ordinary role: its job over a distributed table succeeds");
is(q1("SELECT partition FROM iterjob.job WHERE id = $job"), 'shard', "an ordinary role: partition 'shard'");
is(q1(q{SELECT count(*) FILTER (WHERE who = 'citus_alice') || ' of ' || count(*) FROM alice_items}),
	'10000 of 10000',
	'an ordinary role: the keyset queries (whose filter sees current_user) and the actions on the workers ran as that role');

# 7. refused at enqueue, nothing left behind ----------------------------------

my $jobs = q1('SELECT count(*) FROM iterjob.job');
$workers[1]->stop('immediate');
my ($rc, $out, $err) = $coord->psql($db, q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)')},
	on_error_stop => 1);
isnt($rc, 0, 'unreachable node: enqueue fails');
like($err, qr/ERROR:  could not reach shard \d+ of items on node 127\.0\.0\.1:\d+/,
	'unreachable node: the error names the shard and its node');
is(q1('SELECT count(*) FROM iterjob.job'), $jobs, 'unreachable node: no job is left behind');
$workers[1]->start;

q1(q{
SET citus.shard_replication_factor = 2;
SET citus.shard_count = 2;
CREATE TABLE replicated (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT create_distributed_table('replicated', 'id');});
($rc, $out, $err) = $coord->psql($db, q{
SELECT iterjob.enqueue('replicated', 'UPDATE replicated SET n = n + 1 WHERE id = ANY($1)',
                       partition => 'shard')},
	on_error_stop => 1);
like($err, qr/ERROR:  partition 'shard' cannot iterate replicated\nDETAIL:  Shard \d+ has more than one placement/,
	"replicated shards: partition 'shard' is refused, saying why");
is(q1('SELECT count(*) FROM iterjob.job'), $jobs, 'replicated shards: no job is left behind');

# preview: one row per shard, its statements as its node runs them and
# their plans there, the shards dealt to the instances as enqueue deals them
# (the shards' statistics fresh: ANALYZE reads all of a shard's 25,000 rows)
q1('ANALYZE items');
my $preview = q{iterjob.preview('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                                instances => 4, batch_size => 1000)};
is(q1(qq{
SELECT count(*) || ' shards, ' || count(DISTINCT instance) || ' instances, '
       || count(*) FILTER (WHERE keyset_query ~ 'public\\.items_\\d+'
                             AND next_keyset_query ~ 'public\\.items_\\d+'
                             AND plan ~ 'Index (Only )?Scan using items_pkey_\\d+'
                             AND next_plan ~ 'Index (Only )?Scan using items_pkey_\\d+'
                             AND next_plan ~ 'Index Cond')
       || ' with both statements on their shard and index plans there, '
       || count(DISTINCT substring(keyset_query from 'items_\\d+')) || ' shards named'
  FROM $preview}),
	'8 shards, 4 instances, 8 with both statements on their shard and index plans there, 8 shards named',
	"preview: partition 'shard' shows each shard's keyset queries and their plans on its node");
is(q1(qq{
SELECT count(*) FROM $preview p
  JOIN (SELECT get_shard_id_for_distribution_column('items', id) AS shard_id, count(*) AS n
          FROM items GROUP BY 1) s ON p.keyset_query ~ ('items_' || s.shard_id || '\\M')
 WHERE p.estimated_rows BETWEEN s.n * 0.9 AND s.n * 1.1
   AND p.estimated_batches = (p.estimated_rows + 999) / 1000}), 8,
	"preview: each shard's rows as its node estimates them, and its batches");
($rc, $out, $err) = $coord->psql($db, qq{SELECT * FROM iterjob.preview('items', 'UPDATE items SET n = n + 1 WHERE id = ANY(\$1)', sample_batches => 2)},
	on_error_stop => 1);
like($err, qr/ERROR:  iterjob.preview\(\) takes no sample_batches with partition 'shard'/,
	"preview: sample_batches is refused with partition 'shard', saying so");
is(q1('SELECT count(*) FROM iterjob.job'), $jobs, 'preview: no job is left behind');
q1(q{
CREATE TABLE pairs (a int, b int, n int NOT NULL DEFAULT 0, PRIMARY KEY (a, b));
SELECT create_distributed_table('pairs', 'a');});
($rc, $out, $err) = $coord->psql($db, q{
SELECT iterjob.enqueue('pairs', 'UPDATE pairs SET n = n + 1 WHERE (a, b) IN (SELECT * FROM unnest($1, $2))',
                       partition => 'shard')},
	on_error_stop => 1);
like($err, qr/ERROR:  partition 'shard' cannot iterate pairs\nDETAIL:  Its key has more than one column\./,
	"a key of two columns: partition 'shard' is refused");
is(q1('SELECT count(*) FROM iterjob.job'), $jobs, 'a key of two columns: no job is left behind');

$_->stop for ($coord, @workers);
done_testing();
