# Cursors of keys that are hard to carry between batches: text keys large
# enough to be stored out of line (TOAST) or compressed, and float8 and
# float4 keys whose text form at extra_float_digits = 0 does not read back
# as the same value, in a database (and for an owner) whose
# extra_float_digits is 0.  Each job is paused and resumed, then its
# workers are killed (a crash-restart): every row is processed exactly
# once, and every stored cursor is a key of the table.  A job that deletes
# the rows it iterates while the table is vacuumed would fail with
# "missing chunk number 0 for toast value" if a cursor kept pointing into
# the TOAST table.  (Workers print keys at extra_float_digits = 3 whatever
# the database's setting, and copy a batch's last key out of the table:
# without either, these fail.)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'keys';
my $node = iterjob_node('key_cursors', 'iterjob.max_workers = 8');
$node->safe_psql('postgres', qq{
CREATE DATABASE $db;
ALTER DATABASE $db SET extra_float_digits = 0;
CREATE ROLE alice LOGIN;
ALTER ROLE alice SET extra_float_digits = 0;
});
$node->safe_psql($db, q{
CREATE EXTENSION iterjob;
GRANT iterjob_user TO alice;
GRANT CREATE ON SCHEMA public TO alice;
});

sub as_alice
{
	my ($sql) = @_;
	return $node->safe_psql($db, $sql, extra_params => [ '-U', 'alice' ]);
}

# The tables, owned by alice.  t_ext: 300 keys of 2400 hex digits (75 md5s
# of different inputs: pglz cannot shrink them), stored out of line in the
# heap, inline in the index (under its 2704-byte limit).  t_cmp: keys of
# 6400 characters that compress to a fraction of that, inline.  t_f8 and
# t_f4: thirds, which print rounded at extra_float_digits = 0.
as_alice(q{
CREATE TABLE t_ext (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_ext (k)
SELECT (SELECT string_agg(md5(g || '/' || i), '' ORDER BY i) FROM generate_series(1, 75) i)
  FROM generate_series(1, 300) g;
CREATE TABLE t_cmp (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_cmp (k) SELECT repeat(md5(g::text), 200) FROM generate_series(1, 300) g;
CREATE TABLE t_f8 (k float8 PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_f8 (k) SELECT g / 3.0::float8 FROM generate_series(1, 600) g
UNION ALL VALUES (0.1::float8 + 0.2::float8), (5e-324), (1.7976931348623157e308);
CREATE TABLE t_f4 (k float4 PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_f4 (k) SELECT g / 3.0::float4 FROM generate_series(1, 600) g
UNION ALL VALUES (0.1::float4 + 0.2::float4), (1.4e-45::float4), (3.4028235e38::float4);
ANALYZE t_ext, t_cmp, t_f8, t_f4;
});

is(as_alice('SHOW extra_float_digits'), '0', "alice's sessions in $db run at extra_float_digits = 0");
ok($node->safe_psql($db, q{
SELECT count(*) FROM t_ext WHERE octet_length(k) = 2400}) == 300
	  && $node->safe_psql($db, q{
SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE relname = 't_ext'}) eq 't',
	't_ext: keys of 2400 bytes, stored in its TOAST table');
is($node->safe_psql($db, q{
SELECT count(*) FROM t_cmp WHERE pg_column_size(k) < octet_length(k) / 4}), '300',
	't_cmp: every key of 6400 bytes is stored compressed');
cmp_ok(as_alice('SELECT count(*) FROM t_f8 WHERE k < 1e300 AND k::text::float8 <> k'), '>=', 400,
	't_f8: most keys do not read back from their text form at extra_float_digits = 0');
cmp_ok(as_alice('SELECT count(*) FROM t_f4 WHERE k::text::float4 <> k'), '>=', 400,
	't_f4: most keys do not read back from their text form at extra_float_digits = 0');

# 2 instances each, batches of 20 with a pause after each: there is time to
# pause them and kill their workers between batches.  A filter on another
# column makes the keyset query read keys from the heap (an index-only
# scan would return the index's inline copies): t_ext's keys arrive as
# TOAST pointers.
my %jobs;
for my $case ([ 't_ext', 'modulo', 'n >= 0' ], [ 't_cmp', 'modulo', 'n >= 0' ],
	[ 't_f8', 'range', 'true' ], [ 't_f4', 'modulo', 'true' ])
{
	my ($table, $partition, $filter) = @$case;
	$jobs{$table} = as_alice(qq{
SELECT iterjob.enqueue('$table', 'UPDATE $table SET n = n + 1 WHERE k = ANY(\$1)',
                       instances => 2, batch_size => 20, batch_pause => '1s',
                       partition => '$partition', filter => '$filter', name => '$table')});
}
my $ids = join(',', values %jobs);

ok(wait_for($node, $db, qq{
SELECT bool_and(batches_done >= 2) FROM iterjob.task WHERE job_id IN ($ids)}, 't', 120),
	'every instance of the four jobs committed 2 batches');

# each stored cursor is a key of its table, the same value, read back
# from the stored jsonb (in a session at extra_float_digits = 0)
sub cursors_are_keys
{
	my ($label) = @_;
	for my $table (sort keys %jobs)
	{
		my $type = $table =~ /^t_f(\d)/ ? "float$1" : 'text';
		is(as_alice(qq{
SELECT count(*) FILTER (WHERE cursor ->> 'inner_cursor' IS NULL
                           OR EXISTS (SELECT FROM $table x
                                       WHERE x.k = (t.cursor ->> 'inner_cursor')::$type))
  FROM iterjob.task_progress t WHERE job_id = $jobs{$table}}), '2',
			"$label: both cursors of $table are keys of the table, exactly");
	}
	return;
}

for my $table (sort keys %jobs)
{
	is(as_alice("SELECT iterjob.pause($jobs{$table})"), 'paused', "$table: paused");
}
ok(wait_for($node, $db, qq{
SELECT count(*) FROM iterjob.workers WHERE job_id IN ($ids)}, '0', 60),
	'no worker is on a paused job');
cursors_are_keys('paused');
for my $table (sort keys %jobs)
{
	is(as_alice("SELECT iterjob.resume($jobs{$table})"), 'running', "$table: resumed");
}

# after more batches, kill every worker of the database (SIGKILL: the
# server restarts after a crash and the jobs go on from their cursors)
ok(wait_for($node, $db, qq{
SELECT bool_and(batches_done >= 4) FROM iterjob.task WHERE job_id IN ($ids)}, 't', 120),
	'every instance committed 4 batches');
my $off = log_offset($node);
my @pids = worker_pids($node, $db);
ok(@pids > 0, 'workers run: ' . scalar(@pids));
kill('KILL', @pids);
ok(wait_log($node, qr/all server processes terminated; reinitializing/, $off, 60),
	'the server restarts after the kill');
poll_value($node, $db, 'SELECT 1', 60);

for my $table (sort keys %jobs)
{
	is(poll_value($node, $db, "SELECT iterjob.wait($jobs{$table}, '120 s')", 150),
		'succeeded', "$table: the job succeeds");
	is($node->safe_psql($db, "SELECT count(*) FILTER (WHERE n <> 1) || ' of ' || count(*) FROM $table"),
		'0 of ' . $node->safe_psql($db, "SELECT count(*) FROM $table"),
		"$table: every row processed exactly once");
	is($node->safe_psql($db, qq{
SELECT count(*) FROM iterjob.errors
 WHERE job_id = $jobs{$table} AND message !~ '^worker died during this batch'}),
		'0', "$table: no batch failed but by the kill");
}
cursors_are_keys('succeeded');

# each final cursor is the largest key of its instance: the job's largest
# key among them
for my $table (sort keys %jobs)
{
	my $type = $table =~ /^t_f(\d)/ ? "float$1" : 'text';
	is(as_alice(qq{
SELECT max((cursor ->> 'inner_cursor')::$type) = (SELECT max(k) FROM $table)
  FROM iterjob.task_progress WHERE job_id = $jobs{$table}}), 't',
		"$table: the last cursor is the table's largest key");
}

# A job that deletes the rows it iterates, while the table is vacuumed
# between its batches: the TOAST chunks of the keys it has deleted go
# away, so its cursor (the last deleted key, read from the heap: see the
# filter) must be a copy of its own.
as_alice(q{
CREATE TABLE t_del (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_del (k)
SELECT (SELECT string_agg(md5(g || '/' || i), '' ORDER BY i) FROM generate_series(1, 75) i)
  FROM generate_series(1, 300) g;
});
my $del = as_alice(q{
SELECT iterjob.enqueue('t_del', 'DELETE FROM t_del WHERE k = ANY($1)', filter => 'n = 0',
                       instances => 2, batch_size => 20, batch_pause => '200ms')});
my $vacuums = 0;
my $deadline = time + 120;
while (time < $deadline)
{
	$node->safe_psql($db, 'VACUUM t_del');
	$vacuums++;
	last if $node->safe_psql($db, "SELECT state FROM iterjob.job WHERE id = $del") ne 'running'
	  && $vacuums > 1;
	usleep(100_000);
}
is(poll_value($node, $db, "SELECT iterjob.wait($del, '60 s')"), 'succeeded',
	"deleting job under VACUUM: succeeds ($vacuums vacuums while it ran)");
is($node->safe_psql($db, qq{
SELECT (SELECT count(*) FROM t_del) || '|' || sum(rows_done) || '|' || (SELECT count(*) FROM iterjob.errors WHERE job_id = $del)
  FROM iterjob.task WHERE job_id = $del}), '0|300|0',
	'deleting job under VACUUM: every row deleted, 300 rows done, no failed batch');

$node->stop;
done_testing();
