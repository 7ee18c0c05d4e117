# README.md's recipe "Nightly with pg_cron", run as written (its three SQL
# blocks, read from README.md by test/readme-recipe.sh), with a schedule of
# every minute instead of 03:00: a role that is a member of iterjob_user
# and owns the table schedules the enqueue; the cron run enqueues a job
# owned by that role, which deletes every expired row exactly once; while
# that job runs (held on a row lock the test takes), the scheduled command
# run again enqueues nothing; the next minute's run, with the job ended,
# enqueues the next one; cron.unschedule ends the schedule.
#
# Skipped where pg_cron is not installed for the PostgreSQL under test.

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;

my $pkglibdir = `pg_config --pkglibdir`;
my $sharedir = `pg_config --sharedir`;
chomp($pkglibdir, $sharedir);
if (!-e "$pkglibdir/pg_cron.so" || !-e "$sharedir/extension/pg_cron.control")
{
	plan skip_all => "pg_cron is not installed for this PostgreSQL (no $pkglibdir/pg_cron.so)";
}

# The recipe's blocks: test/run-all.sh copies README.md and the extractor
# next to this directory; in a checkout they are where they live.
my $here = dirname(__FILE__);
my ($extractor) = grep { -e } ("$here/readme-recipe.sh", "$here/../readme-recipe.sh");
die "test/readme-recipe.sh not found next to $here" unless defined $extractor;

sub recipe
{
	my ($n) = @_;
	my $text = `bash $extractor $n`;
	die "recipe $n: test/readme-recipe.sh failed" if $? != 0 || $text eq '';
	return $text;
}

my $first = 8;    # README.md's Recipes: the pg_cron recipe's first SQL block
my ($setup, $schedule, $watch) = map { recipe($_) } $first .. $first + 2;
like($setup, qr/CREATE EXTENSION IF NOT EXISTS pg_cron;/, "recipe $first is the pg_cron setup");
like($schedule, qr/cron\.schedule\('nightly-expire', '0 3 \* \* \*'/,
	'recipe ' . ($first + 1) . ' schedules nightly-expire at 03:00');
like($watch, qr/cron\.unschedule\('nightly-expire'\)/,
	'recipe ' . ($first + 2) . ' watches and unschedules');
# every minute, so that it runs within the test
(my $schedule_now = $schedule) =~ s/'0 3 \* \* \*'/'* * * * *'/;

my $db = 'postgres';
my $t0 = time;
my $node = iterjob_node('pg_cron',
	"shared_preload_libraries = 'iterjob,pg_cron'",
	"cron.database_name = '$db'");
# pg_cron connects with libpq to cron.host: this node listens on its socket
# directory only
$node->append_conf('postgresql.conf', "cron.host = '" . $node->host . "'\n");
$node->restart;

$node->safe_psql($db, q{
CREATE EXTENSION iterjob;
CREATE ROLE app LOGIN;
CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL);
-- 20,000 expired (id % 3 <> 0), 10,000 not
INSERT INTO sessions SELECT g, now() + CASE WHEN g % 3 = 0 THEN interval '1 day' ELSE interval '-1 day' END
  FROM generate_series(1, 30000) g;
-- every row deleted, by whom: a row deleted twice would show twice
CREATE TABLE deleted (id bigint NOT NULL, by_role name NOT NULL);
CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO deleted VALUES (OLD.id, current_user);
  RETURN OLD;
END $$;
CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION log_delete();
ALTER TABLE sessions OWNER TO app;
ALTER TABLE deleted OWNER TO app;
ALTER FUNCTION log_delete() OWNER TO app;
ANALYZE sessions;
});
# the recipe's setup, as the superuser
$node->safe_psql($db, $setup);
is($node->safe_psql($db, q{
SELECT pg_has_role('app', 'iterjob_user', 'MEMBER') AND has_schema_privilege('app', 'cron', 'USAGE')}),
	't', 'setup: app is a member of iterjob_user and may use schema cron');

# A row lock on an expired row of the first batch, held until the test
# ends it: the job that the cron run enqueues stays running at that batch
# (each attempt waits lock_timeout, 5 s, and is retried after the backoff).
my ($lock_out, $lock_err) = ('', '');
my $locker = IPC::Run::start(
	[
		'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', $db,
		'-c', 'SELECT id FROM sessions WHERE id = 1 FOR UPDATE; SELECT pg_sleep(600)'
	],
	'>', \$lock_out, '2>', \$lock_err);
ok(wait_for($node, $db, q{
SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE; SELECT pg_sleep(600)'
   AND wait_event = 'PgSleep'}, '1', 30), 'a session holds a lock on session 1');

# as app, the recipe's schedule, every minute
my $cron_id = $node->safe_psql($db, $schedule_now, extra_params => [ '-U', 'app' ]);
like($cron_id, qr/^\d+$/, 'app scheduled nightly-expire (cron.schedule returned a job id)');
is($node->safe_psql($db, q{
SELECT username || '|' || schedule || '|' || database FROM cron.job WHERE jobname = 'nightly-expire'}),
	"app|* * * * *|$db", 'cron.job: the cron job is app\'s, every minute, in this database');

# --- 1. the first run enqueues a job owned by app ----------------------

# pg_cron has minute granularity: the first run starts within 60 s
my $runs_ended = q{
SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')};
ok(wait_for($node, $db, $runs_ended, '1', 75), 'the cron job ran within 75 s');
is($node->safe_psql($db, q{
SELECT username || '|' || status || '|' || return_message FROM cron.job_run_details}),
	'app|succeeded|1 row', 'run 1: as app, succeeded, its SELECT returned one row (a job id)');
is($node->safe_psql($db, q{
SELECT count(*) || '|' || min(owner) FROM iterjob.job_progress WHERE name = 'nightly-expire'}),
	'1|app', 'run 1 enqueued one job named nightly-expire, owned by app');
my $job = $node->safe_psql($db, "SELECT job_id FROM iterjob.job_progress WHERE name = 'nightly-expire'");

# sessions that expire after the enqueue, past its largest key: for the
# next night's job
$node->safe_psql($db, q{
INSERT INTO sessions SELECT g, now() - interval '1 hour' FROM generate_series(30001, 30600) g});

# --- 2. the overlap guard: nothing while that job runs -----------------

ok(wait_for($node, $db, "SELECT state FROM iterjob.job_progress WHERE job_id = $job", 'running', 30),
	"job $job is running (at the batch that waits for the row lock)");
# the command pg_cron runs, as pg_cron runs it: as app
my $command = $node->safe_psql($db,
	"SELECT command FROM cron.job WHERE jobname = 'nightly-expire'", extra_params => [ '-U', 'app' ]);
is($node->safe_psql($db, $command, extra_params => [ '-U', 'app' ]), '',
	'the scheduled command, run again while the job runs, returns no job id');
is($node->safe_psql($db, q{
SELECT count(*) || '|' || min(state) FROM iterjob.job WHERE name = 'nightly-expire'}),
	'1|running', 'still one job named nightly-expire, running');

# let the job go on
$node->safe_psql($db, q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE query LIKE '%FOR UPDATE; SELECT pg_sleep(600)' AND pid <> pg_backend_pid()});
eval { $locker->finish };
is(poll_value($node, $db, "SELECT iterjob.wait($job, '120 s')"), 'succeeded',
	"job $job succeeds once the lock is gone");

is($node->safe_psql($db, qq{
SELECT state || '|' || owner || '|' || rows_done || '|' || batches_done FROM iterjob.job_progress WHERE job_id = $job}),
	'succeeded|app|20000|4', "job $job: succeeded, app's, 20,000 rows in ceil(20000 / 5000) = 4 batches");
is($node->safe_psql($db, q{
SELECT count(*) || '|' || count(DISTINCT id) || '|' || count(*) FILTER (WHERE id % 3 = 0 OR id > 30000)
       || '|' || string_agg(DISTINCT by_role, ',') FROM deleted}),
	'20000|20000|0|app', 'every row that had expired at the enqueue was deleted once, by app, and no other');
is($node->safe_psql($db, q{
SELECT count(*) FILTER (WHERE id <= 30000) || '|' || count(*) FILTER (WHERE id <= 30000 AND expires_at < now())
       || '|' || count(*) FILTER (WHERE id > 30000) FROM sessions}),
	'10000|0|600', 'sessions: the 10,000 live rows stay, the 600 that expired after the enqueue too');
is($node->safe_psql($db, qq{
SELECT count(*) FROM iterjob.errors WHERE job_id = $job AND sqlstate <> '55P03'}),
	'0', "no batch of job $job failed but on the test's lock (lock_timeout)");

# --- 3. the next run, with the last job ended, enqueues the next --------

# the next minute's run (or, if the machine was so slow that job 1 still
# ran then, the one after)
ok(wait_for($node, $db,
	"SELECT count(*) FROM iterjob.job WHERE name = 'nightly-expire'", '2', 130),
	'a later cron run enqueued a second job');
my $job2 = $node->safe_psql($db, "SELECT max(id) FROM iterjob.job WHERE name = 'nightly-expire'");
is(poll_value($node, $db, "SELECT iterjob.wait($job2, '120 s')"), 'succeeded', "job $job2 succeeds");
is($node->safe_psql($db, qq{
SELECT owner || '|' || rows_done FROM iterjob.job_progress WHERE job_id = $job2}),
	'app|600', "job $job2: app's, the 600 rows that expired after job ${job}'s enqueue");
is($node->safe_psql($db, q{
SELECT count(*) || '|' || count(DISTINCT id) || '|' || count(*) FILTER (WHERE id > 30000) FROM deleted}),
	'20600|20600|600', 'each of them deleted once too');
is($node->safe_psql($db, q{SELECT count(*) FROM sessions WHERE expires_at < now()}), '0',
	'no expired session is left');
is($node->safe_psql($db, q{
SELECT count(*) FILTER (WHERE return_message = '1 row') || '|'
       || count(*) FILTER (WHERE status <> 'succeeded' OR username <> 'app')
  FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')}),
	'2|0', 'two cron runs enqueued a job; every run succeeded, as app');

# --- 4. watch and unschedule, as app -----------------------------------

my $watched = $node->safe_psql($db, $watch, extra_params => [ '-U', 'app' ]);
like($watched, qr/^succeeded\|1 row\|/m, 'the watch query shows the runs that enqueued');
like($watched, qr/^$job2\|succeeded\|600\|/m, "and job $job2 in job_progress");
like($watched, qr/\nt\z/, 'cron.unschedule returns true');
is($node->safe_psql($db, 'SELECT count(*) FROM cron.job'), '0', 'no cron job is left');

note(sprintf('014_pg_cron took %.0f s', time - $t0));
$node->stop;
done_testing();
