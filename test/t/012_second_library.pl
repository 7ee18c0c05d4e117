# A second copy of the library in a process: the server preloads iterjob
# from one file, and backends and workers load '$libdir/iterjob' (what the
# SQL functions and the background workers name), another file, as after
# a package that installs the library elsewhere, or a dynamic_library_path
# that finds another copy first.  That copy defines no GUCs (the preloaded
# one did): it must still run with the configured values, also after a
# reload, not with its built-in defaults.  (On 16 and later, where a
# library's symbols are hidden, the second copy has variables of its own;
# on 15 its code binds to the first copy's.)

use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IterjobTest;

my $db = 'postgres';
my $node = iterjob_node('second_library');
$node->stop;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $copydir = $node->basedir . '/preloaded';
mkdir $copydir or die "mkdir $copydir: $!";
copy("$pkglibdir/iterjob.so", "$copydir/iterjob.so") or die "copy: $!";
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = '$copydir/iterjob'
iterjob.retention = -1
iterjob.log_batches = on
});
$node->start;
$node->safe_psql($db, 'CREATE EXTENSION iterjob');

# a backend maps both files, and the SQL functions are the second copy's
my $maps = $node->safe_psql($db, q{
SELECT iterjob.preloaded(), pg_read_file('/proc/self/maps')});
like($maps, qr/^t\|/, 'iterjob.preloaded() is true in a backend');
ok(index($maps, "$copydir/iterjob.so") >= 0 && index($maps, "$pkglibdir/iterjob.so") >= 0,
	"a backend has both $copydir/iterjob.so (preloaded) and $pkglibdir/iterjob.so loaded");

# workers run with iterjob.log_batches = on: a LOG line per batch; after
# a reload that turns it off, the same worker logs no more
make_table($node, $db, 'items', 3000);
my $off = log_offset($node);
my $job = $node->safe_psql($db, q{
SELECT iterjob.enqueue('items', 'UPDATE items SET n = n + 1 WHERE id = ANY($1)',
                       batch_size => 200, batch_pause => '200ms')});
ok(wait_log($node, qr/iterjob: job $job instance 0: batch 3 committed/, $off, 30),
	'the worker logs each committed batch (iterjob.log_batches = on)');
$node->safe_psql($db, q{
ALTER SYSTEM SET iterjob.log_batches = off;
SELECT pg_reload_conf();
});
my $done = $node->safe_psql($db, "SELECT batches_done FROM iterjob.task WHERE job_id = $job");
ok(wait_for($node, $db, "SELECT batches_done >= $done + 2 FROM iterjob.task WHERE job_id = $job", 't', 30),
	'two more batches commit after the reload');
$off = log_offset($node);
is($node->safe_psql($db, "SELECT iterjob.wait($job, '60 s')"), 'succeeded', 'the job succeeds');
ok(wait_log($node, qr/iterjob: job $job succeeded/, $off, 10), 'its end is logged');
unlike(log_since($node, $off), qr/batch \d+ committed/,
	'the worker logs no batch after the reload (iterjob.log_batches = off)');

# iterjob.retention = -1 keeps finished jobs, whatever their age, in the
# workers' purge and in iterjob.purge()
$node->safe_psql($db, "UPDATE iterjob.job SET finished_at = now() - interval '30 days' WHERE id = $job");
my $job2 = enqueue_job($node, $db, 'items', instances => 1, batch_size => 1000);
is($node->safe_psql($db, "SELECT iterjob.wait($job2, '60 s')"), 'succeeded', 'a second job succeeds');
# its worker, with nothing left to do, purges what iterjob.retention says
ok(wait_for($node, $db, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'iterjob worker'", '0', 30),
	'its worker exits');
is($node->safe_psql($db, "SELECT count(*) FROM iterjob.job WHERE id = $job"), '1',
	'the workers kept the job finished 30 days ago (iterjob.retention = -1)');

# one session: iterjob.purge() keeps it, and purges it once a reload set
# iterjob.retention = 1d
my @purged = split /\n/, $node->safe_psql($db, q{
SELECT iterjob.purge();
ALTER SYSTEM SET iterjob.retention = '1d';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT iterjob.purge();
});
is($purged[0], '0', 'iterjob.purge() keeps the job finished 30 days ago (iterjob.retention = -1)');
is($purged[-1], '1', 'after a reload, in the same session, iterjob.purge() purges it (iterjob.retention = 1d)');

$node->stop;
done_testing();
