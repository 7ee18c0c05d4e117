# No tenant holds the workers of the cluster.  A tenant's job whose batches
# never end (statement_timeout => '0', an action that sleeps for an hour)
# takes both workers of one database; a one-row job in another database
# gets a worker once the cap on statement timeouts
# (iterjob.max_statement_timeout) and the time slice free one.  Then an
# iterjob_admin member that is not a superuser, connected as itself,
# cancels the never-ending job: within a second no worker is on it, and no
# attempt of the cancelled batches is counted.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use IterjobTest;

my $CAP = 2;           # s, iterjob.max_statement_timeout
my $SLICE = 1;         # s, iterjob.time_slice

my $node = iterjob_node('fairness',
	'iterjob.max_workers = 2',
	"iterjob.time_slice = '${SLICE}s'",
	"iterjob.max_statement_timeout = '${CAP}s'");

$node->safe_psql('postgres', 'CREATE DATABASE hog');
$node->safe_psql('postgres', 'CREATE DATABASE small');
for my $db ('hog', 'small')
{
	$node->safe_psql($db, 'CREATE EXTENSION iterjob');
}
# (CREATE EXTENSION made the roles iterjob_user and iterjob_admin)
$node->safe_psql('postgres', q{
CREATE ROLE fair_tenant LOGIN IN ROLE iterjob_user;
CREATE ROLE fair_boss LOGIN NOSUPERUSER IN ROLE iterjob_admin;});
make_table($node, 'hog', 'items', 20);
$node->safe_psql('hog', 'ALTER TABLE items OWNER TO fair_tenant');
make_table($node, 'small', 'items', 1);

# the tenant's job: 2 instances, every batch sleeps for an hour
my $hog = $node->safe_psql('hog', q{
SET ROLE fair_tenant;
SELECT iterjob.enqueue('items',
       'UPDATE items SET n = n + 1 FROM (SELECT pg_sleep(3600)) s WHERE id = ANY($1)',
       instances => 2, batch_size => 5, statement_timeout => '0', max_attempts => 1000);});
my $asleep = q{SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'iterjob worker' AND datname = 'hog' AND wait_event = 'PgSleep'};
ok(wait_for($node, 'postgres', $asleep, '2', 30), 'hog: both workers sleep in batches of the tenant\'s job');

# another database's one-row job
my $t0 = time;
my $small = enqueue_job($node, 'small', 'items', instances => 1);
is($node->safe_psql('small', "SELECT iterjob.wait($small, '60s')"), 'succeeded',
	'small: the one-row job of the other database succeeds');
my $waited = $node->safe_psql('small', qq{
SELECT round(extract(epoch FROM started_at - created_at)::numeric, 3)
  FROM iterjob.job WHERE id = $small});
cmp_ok($waited, '<', $CAP + $SLICE + 4,
	"small: it started $waited s after its enqueue: within the cap (${CAP} s), "
	  . "the time slice (${SLICE} s) and a worker's start");
check_job_exact($node, 'small', $small, 'items', 'small');
is($node->safe_psql('hog', "SELECT state FROM iterjob.job WHERE id = $hog"), 'running',
	'hog: ... while the tenant\'s job still runs');
is($node->safe_psql('hog', qq{
SELECT count(*) FILTER (WHERE sqlstate = '57014' AND message = 'canceling statement due to statement timeout')
       || '/' || count(*) FROM iterjob.errors WHERE job_id = $hog}) =~ m{^(\d+)/\1$} ? 1 : 0, 1,
	'hog: its failed attempts are all statement timeouts of the cap');

# the admin, connected as itself, cancels the tenant's job while its
# batches sleep
ok(wait_for($node, 'postgres', $asleep, '2', 30), 'hog: both workers sleep in its batches again');
my $attempts = $node->safe_psql('hog', "SELECT sum(attempts) FROM iterjob.task WHERE job_id = $hog");
my $errors = $node->safe_psql('hog', "SELECT count(*) FROM iterjob.error_log WHERE job_id = $hog");
is($node->safe_psql('hog', "SELECT iterjob.cancel($hog)", extra_params => [ '-U', 'fair_boss' ]),
	'cancelled', 'cancel: fair_boss (iterjob_admin, not a superuser) cancels the job');
$t0 = time;
ok(wait_for($node, 'hog', "SELECT count(*) FROM iterjob.workers WHERE job_id = $hog", '0', 1),
	sprintf('cancel: within a second no worker is on the job (%.3f s)', time - $t0));
is($node->safe_psql('hog', qq{
SELECT sum(attempts) || '|' || (SELECT count(*) FROM iterjob.error_log WHERE job_id = $hog)
  FROM iterjob.task WHERE job_id = $hog}),
	"$attempts|$errors", 'cancel: the cancelled batches counted no attempt and logged no error');
is($node->safe_psql('hog', 'SELECT count(*) FROM items WHERE n <> 0'), '0',
	'cancel: no row of the never-ending batches was changed');
is($node->safe_psql('hog', "SELECT state FROM iterjob.job WHERE id = $hog"), 'cancelled',
	'cancel: the job is cancelled');

$node->stop;
done_testing();
