# The health gate against WAL archiving that falls behind: a node with
# archive_mode = on whose archive_command fails (1 MB WAL segments,
# iterjob.max_archive_backlog = 10):
#
#   a. a failing archive_command alone, with few WAL files waiting, holds
#      nothing: a job runs and succeeds;
#   b. once more WAL files wait for archiving than the limit (pg_switch_wal()
#      a dozen times), a running job holds at its next batch boundary:
#      task_progress.held_reason names the backlog, the limit and the
#      failing archive_command (the file that failed, when), the workers
#      are in phase 'held', the job stays running and does no row; an
#      iterjob_admin member that is not in pg_monitor sees why without
#      those figures, a pg_monitor member sees them;
#   c. archive_command fixed (a copy into the archive directory, reload):
#      the archiver catches up, the job goes on by itself and succeeds with
#      every row exactly once, and its held_reason is cleared;
#   d. archive_command failing again: a new job holds, its held_reason gives
#      the last success; iterjob.max_archive_backlog = -1 (reload) releases
#      it while the backlog stays, and it succeeds with every row once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $db = 'postgres';
my $ROWS = 20_000;
my $LIMIT = 10;

my $node = iterjob_node('archiving',
	{ allows_streaming => 1, extra => ['--wal-segsize=1'] },
	'archive_mode = on', "archive_command = 'false'",
	"iterjob.max_archive_backlog = $LIMIT");
$node->safe_psql($db, 'CREATE EXTENSION iterjob');
make_table($node, $db, 'few', 1_000);
make_table($node, $db, 'big', $ROWS);
$node->safe_psql($db, 'CREATE TABLE junk (i int)');

my $ready_sql = q{
SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'};

sub ready_files
{
	return poll_value($node, $db, $ready_sql);
}

# --- a. a failing archive_command, few files waiting -------------------------

$node->safe_psql($db, 'INSERT INTO junk VALUES (0); SELECT pg_switch_wal()');
ok(wait_for($node, $db, q{
SELECT failed_count > 0 AND last_archived_time IS NULL FROM pg_stat_archiver}, 't', 30),
	'archiving: (precondition) archive_command fails (pg_stat_archiver.failed_count > 0, nothing archived)');
my $ready = ready_files();
cmp_ok($ready, "<=", $LIMIT - 3,
	"archiving: (precondition) few WAL files wait for archiving ($ready)");

my $few = enqueue_job($node, $db, 'few', instances => 2, batch_size => 100);
is(poll_value($node, $db, "SELECT iterjob.wait($few, '60 s')"), 'succeeded',
	'archiving: with the backlog under iterjob.max_archive_backlog a failing archive_command '
	  . 'holds nothing: the job succeeds');
is($node->safe_psql($db, 'SELECT count(*) FROM few WHERE n <> 1'), '0',
	'archiving: ... every row once');

# --- b. the backlog exceeds the limit -------------------------------------------

# 2 instances x 10,000 keys, batches of 100 and a pause of 100 ms after
# each: at least 10 s, long enough to be caught held.
my $big = $node->safe_psql($db, qq{
SELECT iterjob.enqueue('big', 'UPDATE big SET n = n + 1 WHERE id = ANY(\$1)',
                       instances => 2, batch_size => 100, batch_pause => '100ms')});
wait_rows($node, $db, $big, 400, 60);

my $t0 = time;
$node->safe_psql($db, q{
DO $$ BEGIN
  FOR i IN 1..14 LOOP
    INSERT INTO junk VALUES (i);
    PERFORM pg_switch_wal();
  END LOOP;
END $$});
$ready = ready_files();
cmp_ok($ready, '>', $LIMIT,
	"archiving: (precondition) after 14 WAL switches more files wait than the limit ($ready > $LIMIT)");

ok(wait_for($node, $db, qq{
SELECT count(*) FROM iterjob.task_progress
 WHERE job_id = $big AND state = 'running' AND held_reason LIKE '% WAL files wait for archiving%'},
		'2', 30),
	'archiving: both instances of the running job hold within 30 s');
note(sprintf('archiving: held %.1f s after the WAL switches', time - $t0));
ok(wait_for($node, $db, qq{
SELECT coalesce(array_agg(DISTINCT phase)::text, 'none') FROM iterjob.workers WHERE job_id = $big},
		'{held}', 10), "archiving: iterjob.workers shows the workers in phase 'held'");

my @reasons = split /\n/, $node->safe_psql($db, qq{
SELECT held_reason FROM iterjob.task_progress WHERE job_id = $big ORDER BY instance});
note("archiving: held_reason: $_") for @reasons;
my $re = qr/^(\d+) WAL files wait for archiving, more than iterjob\.max_archive_backlog \($LIMIT\), archive_command failing \(([0-9A-F]{24}) failed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d, no success recorded\)$/;
is(scalar(grep { /$re/ && $1 > $LIMIT } @reasons), 2,
	'archiving: each held_reason names the files waiting (more than the limit), the limit, '
	  . 'and the failing archive_command with the file that failed and when');
my ($failed_wal) = $node->safe_psql($db, 'SELECT last_failed_wal FROM pg_stat_archiver');
ok((grep { /$re/ && $2 le $failed_wal } @reasons) == 2,
	"archiving: the file named is one pg_stat_archiver reports failing (last_failed_wal $failed_wal)");

# what a role that may not read the archiver's figures sees, and one that may
$node->safe_psql($db, q{
CREATE ROLE arch_admin LOGIN IN ROLE iterjob_admin;
CREATE ROLE arch_monitor LOGIN IN ROLE iterjob_admin, pg_monitor;});
my $seen_sql = qq{
SELECT string_agg(held_reason, ' / ' ORDER BY instance) || ' // ' || (SELECT held FROM iterjob.job_progress WHERE job_id = $big)
  FROM iterjob.task_progress WHERE job_id = $big};
my $summary = "WAL archiving is behind: more WAL files wait for archiving than iterjob.max_archive_backlog ($LIMIT)";
is($node->safe_psql($db, "SET ROLE arch_admin; $seen_sql"), "$summary / $summary // $summary",
	'archiving: an iterjob_admin member not in pg_monitor sees why the job holds, without the backlog and the file');
# (job_progress.held joins the instances' reasons with '; ' when they differ)
my @monitor_seen = split m{ / | // |; }, $node->safe_psql($db, "SET ROLE arch_monitor; $seen_sql");
ok(@monitor_seen >= 3 && scalar(grep { /$re/ } @monitor_seen) == @monitor_seen,
	'archiving: a pg_monitor member sees the backlog and the failing file, in task_progress and job_progress');

my $r1 = poll_value($node, $db, "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $big");
usleep(2_500_000);
my $r2 = poll_value($node, $db, "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $big");
ok($r1 == $r2 && $r2 < $ROWS,
	"archiving: while held the job does no row ($r1 then $r2 of $ROWS rows 2.5 s later)");
is($node->safe_psql($db, "SELECT state FROM iterjob.job WHERE id = $big"),
	'running', 'archiving: the held job is running');

# --- c. archiving fixed ------------------------------------------------------------

my $archive_dir = $node->archive_dir;
$node->safe_psql($db, "ALTER SYSTEM SET archive_command = 'cp %p \"$archive_dir\"/%f'");
$node->safe_psql($db, 'SELECT pg_reload_conf()');
check_job_exact($node, $db, $big, 'big', 'archiving fixed', wait => '120s');
is($node->safe_psql($db, qq{
SELECT count(held_reason) FROM iterjob.task_progress WHERE job_id = $big}), '0',
	'archiving fixed: the held_reason is cleared');
is($node->safe_psql($db, q{
SELECT archived_count > 0 AND last_archived_time > last_failed_time FROM pg_stat_archiver}), 't',
	'archiving fixed: (precondition) the archiver archived files since its last failure');
cmp_ok(ready_files(), '<=', $LIMIT, 'archiving fixed: the backlog is within the limit again');

# --- d. failing again, and the limit turned off --------------------------------------

make_table($node, $db, 'again', 2_000);
$node->safe_psql($db, "ALTER SYSTEM SET archive_command = 'false'");
$node->safe_psql($db, 'SELECT pg_reload_conf()');
# the archiver has the new command once it fails again
$node->safe_psql($db, 'INSERT INTO junk VALUES (0); SELECT pg_switch_wal()');
ok(wait_for($node, $db, q{
SELECT last_failed_time > last_archived_time FROM pg_stat_archiver}, 't', 30),
	'archiving failing again: (precondition) pg_stat_archiver shows a failure after the last success');
$node->safe_psql($db, q{
DO $$ BEGIN
  FOR i IN 1..14 LOOP
    INSERT INTO junk VALUES (i);
    PERFORM pg_switch_wal();
  END LOOP;
END $$});
my $again = enqueue_job($node, $db, 'again', instances => 1, batch_size => 100);
ok(wait_for($node, $db, qq{
SELECT held_reason ~ '^[0-9]+ WAL files wait for archiving, more than iterjob\\.max_archive_backlog \\($LIMIT\\), '
                     'archive_command failing \\([0-9A-F]{24} failed at [-0-9: +]+, no success since [-0-9: +]+\\)\$'
  FROM iterjob.task_progress WHERE job_id = $again}, 't', 30),
	'archiving failing again: a new job holds, and its held_reason gives the last success');
note('archiving failing again: held_reason: ' . $node->safe_psql($db,
	"SELECT held_reason FROM iterjob.task_progress WHERE job_id = $again"));
is($node->safe_psql($db, "SELECT rows_done FROM iterjob.job_progress WHERE job_id = $again"),
	'0', 'archiving failing again: the held job did no row');

$node->safe_psql($db, 'ALTER SYSTEM SET iterjob.max_archive_backlog = -1');
$node->safe_psql($db, 'SELECT pg_reload_conf()');
check_job_exact($node, $db, $again, 'again',
	'iterjob.max_archive_backlog = -1 (reload), archiving still failing', wait => '60s');
cmp_ok(ready_files(), '>', $LIMIT,
	'iterjob.max_archive_backlog = -1: (precondition) the backlog was still over the old limit');

$node->stop;
done_testing();
