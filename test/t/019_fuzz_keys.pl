# Randomized keys and schema changes: for a fixed time budget, enqueues
# jobs as an ordinary role over random key types and values (built-in
# types, collations, domains, enums with hostile casts to json, ranges,
# composites, arrays), one- and two-column keys, both partitions, several
# batch sizes and instance counts, follow on and off, a table or a query
# as the source, sometimes a preview first, and in some cases a schema
# change while the job is held mid-run (a session holds the row lock a
# batch needs; the change queues behind that batch and lands right after
# it commits).  For every case it asserts:
#
# - no server process crashed: pg_postmaster_start_time() unchanged, no
#   "terminated by signal", "was terminated", TRAP (a failed assertion),
#   PANIC or crash-restart line in the server log, no "worker died" error;
# - no internal error: no ERROR with SQLSTATE XX000 in the server log (it
#   runs with log_error_verbosity = verbose), none returned to the client;
# - the job either succeeded with every row present at enqueue processed
#   exactly once, or was refused at enqueue / failed with a user-facing
#   SQLSTATE; no row is ever processed twice; it ends before a deadline;
# - keys iterjob does not support (a composite, an array, a domain over
#   either, jsonb) are refused at enqueue; changes that alter nothing the
#   job relies on (an unrelated column added, the index re-created
#   identically or rebuilt, VACUUM FULL, an enum value added) leave the
#   job to succeed.
#
# The key types and their values are in FuzzKeyTypes.pm.
#
# Replay: the seed is printed first (ITERJOB_FUZZ_SEED=<seed> replays the
# run's cases; each failure prints its case number and description, and
# ITERJOB_FUZZ_CASES=<n>[,<n>...] runs only those of that seed).  The time
# budget is ITERJOB_FUZZ_TIME seconds (default 100): no case starts after
# it; ITERJOB_FUZZ_MAX_CASES caps the number of cases; ITERJOB_FUZZ_FOCUS=change
# makes every case that can have a schema change have one (=type: a change
# of a key column's type where the key's type has one).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IterjobTest;
use FuzzKeyTypes;

my $seed = $ENV{ITERJOB_FUZZ_SEED} // (int(time * 1000) ^ ($$ << 8)) % 1_000_000_000;
die "ITERJOB_FUZZ_SEED must be a number" unless $seed =~ /^\d+$/;
my $budget = $ENV{ITERJOB_FUZZ_TIME} // 100;
die "ITERJOB_FUZZ_TIME must be a number of seconds" unless $budget =~ /^\d+$/;
my $max_cases = $ENV{ITERJOB_FUZZ_MAX_CASES} // 1_000_000;
my @only = grep { /\d/ } split /[ ,]+/, ($ENV{ITERJOB_FUZZ_CASES} // '');
# ITERJOB_FUZZ_FOCUS=change: a schema change in every case that can have one
my $focus = $ENV{ITERJOB_FUZZ_FOCUS} // '';
diag("fuzz seed $seed, budget ${budget}s (ITERJOB_FUZZ_SEED=$seed replays these cases)");

my $db = 'postgres';
my $TENANT = 'fuzz_tenant';
my $JOB_DEADLINE = 180;    # seconds a job may take before it counts as hung

my $node = iterjob_node('fuzz', 'log_error_verbosity = verbose',
	'iterjob.max_workers = 4', 'max_prepared_transactions = 0');
$FuzzKeyTypes::PG_MAJOR = int($node->safe_psql($db, 'SHOW server_version_num') / 10000);
$node->safe_psql($db, qq{
CREATE EXTENSION iterjob;
CREATE ROLE $TENANT LOGIN IN ROLE iterjob_user;
-- runs a statement and returns 'ok <its value>' or 'error <sqlstate> <message>',
-- so that a refusal is a value and only a lost connection is an error
CREATE FUNCTION public.fuzz_try(sql text) RETURNS text LANGUAGE plpgsql AS \$f\$
DECLARE
    r text; s text; m text;
BEGIN
    EXECUTE sql INTO r;
    RETURN 'ok ' || coalesce(r, '');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
    RETURN 'error ' || s || ' ' || m;
END
\$f\$;
GRANT EXECUTE ON FUNCTION public.fuzz_try(text) TO PUBLIC;
-- an operator class reversing int4's order (CREATE OPERATOR CLASS needs a
-- superuser; jobs only use it)
CREATE FUNCTION public.fuzz_rev_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE STRICT
    AS 'SELECT btint4cmp(\$2, \$1)';
CREATE FUNCTION public.fuzz_rev_lt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT \$1 > \$2';
CREATE FUNCTION public.fuzz_rev_le(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT \$1 >= \$2';
CREATE FUNCTION public.fuzz_rev_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT \$1 = \$2';
CREATE FUNCTION public.fuzz_rev_ge(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT \$1 <= \$2';
CREATE FUNCTION public.fuzz_rev_gt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT \$1 < \$2';
CREATE OPERATOR public.<<< (LEFTARG = int, RIGHTARG = int, FUNCTION = public.fuzz_rev_lt);
CREATE OPERATOR public.<<= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.fuzz_rev_le);
CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.fuzz_rev_eq);
CREATE OPERATOR public.>>= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.fuzz_rev_ge);
CREATE OPERATOR public.>>> (LEFTARG = int, RIGHTARG = int, FUNCTION = public.fuzz_rev_gt);
CREATE OPERATOR CLASS public.fuzz_rev_ops FOR TYPE int USING btree AS
    OPERATOR 1 public.<<<, OPERATOR 2 public.<<=, OPERATOR 3 public.===,
    OPERATOR 4 public.>>=, OPERATOR 5 public.>>>,
    FUNCTION 1 public.fuzz_rev_cmp(int, int);
});
my $have_icu = $node->safe_psql($db,
	q{SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'}) eq '1';
note('ICU collations ' . ($have_icu ? 'available' : 'not available: text keys use libc ones only'));

# text collations: the column's (and maybe another one for the index)
sub collations
{
	my @c = ('default', '"C"', '"POSIX"', 'ci');
	push @c, '"und-x-icu"', '"en-x-icu"' if $have_icu;
	return @c;
}

# ---------------------------------------------------------------------------
# A case: its random choices, as a hash; described in one line.

sub make_case
{
	my ($n) = @_;
	my %c = (n => $n, schema => "fz$n");
	my $ncols = chance(0.25) ? 2 : 1;
	my @cols;
	for my $i (1 .. $ncols)
	{
		my $tname = pick(@TYPE_DRAW);
		my $t = $TYPES{$tname};
		my %col = (name => "k$i", type => $tname);
		# an awkward column name now and then
		$col{name} = pick('k"1', 'Key One', 'select') . $i if chance(0.1);
		if ($t->{text} && chance(0.6))
		{
			$col{collate} = pick(collations());
			$col{collate} = undef if $col{collate} eq 'default';
			$col{collate} = undef if $col{collate} && $col{collate} eq 'ci' && !$have_icu;
		}
		$col{opclass} = 'text_pattern_ops'
		  if $t->{text} && $tname !~ /^(bpchar|varchar)$/ && chance(0.15)
		  && !($col{collate} && $col{collate} eq 'ci');
		$col{opclass} = 'public.fuzz_rev_ops' if $t->{int4} && $tname eq 'int4' && chance(0.15);
		$col{desc} = chance(0.15);
		push @cols, \%col;
	}
	$c{cols} = \@cols;
	$c{partition} = pick('modulo', 'range');
	$c{instances} = pick(1, 1, 2, 3, 4, 5, 8);
	$c{batch_size} = pick(1, 2, 3, 7, 16, 50, 1000);
	$c{follow} = chance(0.2);
	my $cap = 1;
	$cap *= ($TYPES{ $_->{type} }{max} // 1_000_000) for @cols;
	$c{rows} = pick(0, 1, 2, rint(3, 40), rint(3, 40), rint(40, 200), rint(40, 200), rint(100, 400));
	$c{rows} = rint(3, 12) if $c{rows} < 3 && chance(0.8) && grep { $TYPES{ $_->{type} }{hostile} } @cols;
	$c{rows} = $cap if $c{rows} > $cap;
	$c{pk} = chance(0.3) && !grep { $TYPES{ $_->{type} }{refuse} } @cols;
	# a primary key has the default order
	delete @$_{qw(opclass desc)} for ($c{pk} ? @cols : ());
	$c{partitioned} = $ncols == 1 && $TYPES{ $cols[0]{type} }{int} && chance(0.3)
	  && !$cols[0]{opclass};
	$c{source} = !$c{partitioned} && chance(0.15) ? 'query' : 'relation';
	$c{preview} = chance(0.3);
	$c{filter} = chance(0.1) ? 'n >= 0' : undef;

	my @changes;
	if ($c{rows} >= 2 && $c{source} eq 'relation')
	{
		my $k1 = $cols[0];
		my $t1 = $TYPES{ $k1->{type} };
		push @changes, map { "type $_" } @{ $t1->{changes} // [] };
		push @changes, 'collation' if $t1->{text};
		push @changes, 'drop index', 'recreate index', 'recreate index other', 'reindex',
		  'add column', 'rename table', 'truncate', 'drop table', 'vacuum full';
		push @changes, 'enum rename', 'enum add' if $t1->{enum} && $k1->{type} eq 'enum';
		push @changes, 'drop key column' if $ncols == 2;
		push @changes, 'attach partition', 'detach partition' if $c{partitioned};
	}
	@changes = grep { /^type / } @changes if $focus eq 'type' && grep { /^type / } @changes;
	$c{change} = @changes && (chance(0.45) || $focus =~ /^(change|type)$/) ? pick(@changes) : undef;
	if ($c{change} && $c{rows} >= 8)
	{
		# several batches per instance, so that the change lands mid-run
		$c{batch_size} = pick(1, 2, 3, 5) if $c{batch_size} * $c{instances} * 3 > $c{rows};
	}
	elsif (grep { $TYPES{ $_->{type} }{hostile} } @cols)
	{
		$c{batch_size} = pick(1, 2, 3) if chance(0.7);
	}
	return \%c;
}

sub qi
{
	my ($id) = @_;
	return $id if $id =~ /^[a-z_][a-z0-9_]*$/ && $id ne 'select';
	$id =~ s/"/""/g;
	return "\"$id\"";
}

sub describe
{
	my ($c) = @_;
	my $keys = join(', ', map {
			qi($_->{name}) . ' ' . $_->{type}
			  . ($_->{collate} ? " COLLATE $_->{collate}" : '')
			  . ($_->{opclass} ? " $_->{opclass}" : '')
			  . ($_->{desc} ? ' DESC' : '') } @{ $c->{cols} });
	return sprintf('key (%s)%s%s, %d rows, %s, %d instances, batch %d%s%s%s%s%s',
		$keys, $c->{pk} ? ' primary key' : '', $c->{partitioned} ? ', range-partitioned table' : '',
		$c->{rows}, $c->{partition}, $c->{instances}, $c->{batch_size},
		$c->{follow} ? ', follow' : '', $c->{source} eq 'query' ? ', query source' : '',
		$c->{filter} ? ', filter' : '', $c->{preview} ? ', preview first' : '',
		$c->{change} ? ", change mid-job: $c->{change}" : '');
}

# ---------------------------------------------------------------------------
# SQL of a case

sub col_def
{
	my ($c, $col) = @_;
	my $sql = subst($c, $TYPES{ $col->{type} }{sql});
	return qi($col->{name}) . " $sql" . ($col->{collate} ? ' COLLATE ' . coll($c, $col->{collate}) : '');
}

sub coll
{
	my ($c, $name) = @_;
	return $name eq 'ci' ? "$c->{schema}.ci" : $name;
}

sub subst
{
	my ($c, $s) = @_;
	$s =~ s/\$S/$c->{schema}/g;
	return $s;
}

sub index_def
{
	my ($c, %o) = @_;
	my @parts = map {
		my $col = $_;
		qi($col->{name})
		  . ($o{collate} && $TYPES{ $col->{type} }{text} ? " COLLATE $o{collate}" : '')
		  . (($o{opclass} // $col->{opclass}) ? ' ' . ($o{opclass} // $col->{opclass}) : '')
		  . (($o{desc} // $col->{desc}) ? ' DESC' : '')
	} @{ $c->{cols} };
	return "CREATE UNIQUE INDEX t_key ON $c->{schema}.t (" . join(', ', @parts) . ')';
}

sub setup_sql
{
	my ($c) = @_;
	my $S = $c->{schema};
	my @sql;
	my %done;
	push @sql, "CREATE COLLATION $S.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
	  if $have_icu;
	for my $col (@{ $c->{cols} })
	{
		my $setup = $TYPES{ $col->{type} }{setup};
		next if !$setup || $done{ $col->{type} }++;
		$setup = $setup->() if ref $setup;
		push @sql, subst($c, $setup);
	}
	my $cols = join(', ', map { col_def($c, $_) } @{ $c->{cols} });
	my $k1 = qi($c->{cols}[0]{name});
	if ($c->{partitioned})
	{
		push @sql, "CREATE TABLE $S.t ($cols, rid int NOT NULL, n int NOT NULL DEFAULT 0) PARTITION BY RANGE ($k1)",
		  "CREATE TABLE $S.t_lo PARTITION OF $S.t FOR VALUES FROM (MINVALUE) TO (0)",
		  "CREATE TABLE $S.t_mid PARTITION OF $S.t FOR VALUES FROM (0) TO (1000)",
		  "CREATE TABLE $S.t_hi PARTITION OF $S.t FOR VALUES FROM (1000) TO (100000)",
		  "CREATE TABLE $S.t_top PARTITION OF $S.t FOR VALUES FROM (100100) TO (MAXVALUE)";
	}
	else
	{
		push @sql, "CREATE TABLE $S.t ($cols, rid int NOT NULL, n int NOT NULL DEFAULT 0)";
	}
	if ($c->{pk})
	{
		push @sql, "ALTER TABLE $S.t ADD CONSTRAINT t_key PRIMARY KEY ("
		  . join(', ', map { qi($_->{name}) } @{ $c->{cols} }) . ')';
	}
	else
	{
		push @sql, index_def($c);
	}
	# values, drawn until enough distinct ones were inserted (or the type has
	# no more): duplicates under the index's equality are skipped
	my $names = join(', ', map { qi($_->{name}) } @{ $c->{cols} });
	my @rows;
	for my $i (1 .. $c->{rows} * 2)
	{
		my $mild = $c->{change} && $c->{change} =~ /^type /;
		my @v = map { '(' . subst($c, (($mild && $TYPES{ $_->{type} }{mild}) || $TYPES{ $_->{type} }{gen})->()) . ')::'
			  . subst($c, $TYPES{ $_->{type} }{sql}) } @{ $c->{cols} };
		push @rows, "($i, " . join(', ', @v) . ')';
	}
	# (a partitioned table leaves 100000 to 100099 free for a partition
	# attached mid-job)
	push @sql, "INSERT INTO $S.t (rid, $names) SELECT * FROM (VALUES " . join(', ', @rows) . ") v "
	  . ($c->{partitioned} ? 'WHERE column2 NOT BETWEEN 100000 AND 100099 ' : '')
	  . "ON CONFLICT DO NOTHING" if @rows;
	push @sql, "DELETE FROM $S.t WHERE rid IN (SELECT rid FROM $S.t ORDER BY rid OFFSET $c->{rows})"
	  if @rows;
	push @sql, "ANALYZE $S.t";
	return @sql;
}

sub action_sql
{
	my ($c) = @_;
	my $S = $c->{schema};
	my @cols = @{ $c->{cols} };
	return "UPDATE $S.t SET n = n + 1 WHERE " . qi($cols[0]{name}) . ' = ANY($1)' if @cols == 1;
	return "UPDATE $S.t SET n = n + 1 WHERE (" . join(', ', map { qi($_->{name}) } @cols)
	  . ') IN (SELECT * FROM unnest($1, $2))';
}

sub enqueue_args
{
	my ($c, $for) = @_;
	my $S = $c->{schema};
	my $keys = join(', ', map { qi($_->{name}) } @{ $c->{cols} });
	my @a = ($c->{source} eq 'query'
		? 'query => ' . lit("SELECT $keys, n FROM $S.t")
		: "relation => '$S.t'");
	push @a, 'action => ' . lit(action_sql($c)), 'key => ' . lit($keys),
	  "instances => $c->{instances}", "batch_size => $c->{batch_size}",
	  "partition => '$c->{partition}'";
	push @a, 'filter => ' . lit($c->{filter}) if $c->{filter};
	if ($for eq 'enqueue')
	{
		push @a, 'max_attempts => 3', "name => 'fuzz case $c->{n}'",
		  # a batch held by the test's row lock waits for it
		  "lock_timeout => '0'", "statement_timeout => '60s'";
		push @a, 'follow => true' if $c->{follow};
	}
	return join(', ', @a);
}

# ---------------------------------------------------------------------------
# The change mid-job, run as the tenant.  Returns its SQL, or undef when it
# does not apply to this case after all.
sub change_sql
{
	my ($c) = @_;
	my $S = $c->{schema};
	my $ch = $c->{change};
	my $k1 = $c->{cols}[0];
	my $k1n = qi($k1->{name});
	my $drop_index = $c->{pk} ? "ALTER TABLE $S.t DROP CONSTRAINT t_key" : "DROP INDEX $S.t_key";
	if ($ch =~ /^type (\S+)$/)
	{
		my $to = $1;
		my $using = $to eq 'bytea' ? "convert_to(${k1n}::text, 'UTF8')" : "${k1n}::text::$to";
		$using = "${k1n}::$to"
		  if $to =~ /^(text|int4|int8|numeric|float4|float8|timestamp|timestamptz|date|int8range|cidr|name|varchar|varbit|interval|macaddr8)$/;
		return "ALTER TABLE $S.t ALTER COLUMN $k1n TYPE $to USING $using";
	}
	return "ALTER TABLE $S.t ALTER COLUMN $k1n TYPE "
	  . subst($c, $TYPES{ $k1->{type} }{sql}) . ' COLLATE '
	  . coll($c, pick(grep { !$k1->{collate} || $_ ne $k1->{collate} } grep { $_ ne 'default' && ($_ ne 'ci' || !$k1->{opclass}) } collations()))
	  if $ch eq 'collation';
	return $drop_index if $ch eq 'drop index';
	return "BEGIN; $drop_index; " . index_def($c) . "; COMMIT" if $ch eq 'recreate index';
	if ($ch eq 'recreate index other')
	{
		my %o;
		my $t1 = $TYPES{ $k1->{type} };
		if ($t1->{text} && $k1->{type} !~ /^(bpchar|varchar)$/ && chance(0.5))
		{
			$o{opclass} = $k1->{opclass} ? '' : 'text_pattern_ops';
		}
		elsif ($t1->{text} && chance(0.5))
		{
			$o{collate} = $k1->{collate} && $k1->{collate} eq '"C"' ? '"POSIX"' : '"C"';
		}
		elsif ($k1->{type} eq 'int4' && chance(0.5))
		{
			$o{opclass} = $k1->{opclass} ? '' : 'public.fuzz_rev_ops';
		}
		else
		{
			$o{desc} = !$k1->{desc};
		}
		my $def = index_def($c, %o);
		return "BEGIN; $drop_index; $def; COMMIT";
	}
	return "REINDEX INDEX $S.t_key" if $ch eq 'reindex';
	return "ALTER TABLE $S.t ADD COLUMN extra text DEFAULT 'x'" if $ch eq 'add column';
	return "ALTER TABLE $S.t RENAME TO t_renamed" if $ch eq 'rename table';
	return "TRUNCATE $S.t" if $ch eq 'truncate';
	return "DROP TABLE $S.t" if $ch eq 'drop table';
	return "VACUUM FULL $S.t" if $ch eq 'vacuum full';
	return "ALTER TYPE $S.e RENAME VALUE 'b' TO 'bb'" if $ch eq 'enum rename';
	return "ALTER TYPE $S.e ADD VALUE 'b0' AFTER 'b'" if $ch eq 'enum add';
	return "ALTER TABLE $S.t DROP COLUMN " . qi($c->{cols}[1]{name}) if $ch eq 'drop key column';
	return "CREATE TABLE $S.t_new (LIKE $S.t INCLUDING ALL); "
	  . "INSERT INTO $S.t_new ($k1n, rid) SELECT g, -g FROM generate_series(100000, 100050) g; "
	  . "ALTER TABLE $S.t ATTACH PARTITION $S.t_new FOR VALUES FROM (100000) TO (100100)"
	  if $ch eq 'attach partition';
	return "ALTER TABLE $S.t DETACH PARTITION $S.t_mid" if $ch eq 'detach partition';
	die "unknown change $ch";
}

# changes after which the job must go on (nothing it relies on changed)
my %HARMLESS = map { $_ => 1 } ('add column', 'recreate index', 'reindex', 'vacuum full', 'enum add');

# ---------------------------------------------------------------------------
# Running a case

my $crash_re = qr/terminated by signal|was terminated|TRAP: |PANIC: |all server processes terminated|server process .* exited with exit code [1-9]|ERROR:  XX000/;

sub tenant_psql
{
	my ($sql, %p) = @_;
	my ($ret, $out, $err);
	eval {
		($ret, $out, $err) = $node->psql($db, $sql, extra_params => [ '-U', $TENANT ],
			on_error_stop => 1, %p);
		1;
	} or do { ($ret, $out, $err) = (9, '', "psql died: $@"); };
	return ($ret, $out, $err);
}

sub start_time
{
	return poll_value($node, $db, 'SELECT pg_postmaster_start_time()', 120);
}

# the tenant's session holds the row lock of row rid = $rid of the case's
# table: a batch that updates that row waits until the hold ends
sub hold_row
{
	my ($c, $rid) = @_;
	my $bg = $node->background_psql($db, on_error_stop => 0, timeout => 180);
	$bg->query("BEGIN; SELECT 1 FROM $c->{schema}.t WHERE rid = $rid FOR UPDATE");
	my $pid = $bg->query('SELECT pg_backend_pid()');
	return ($bg, $pid);
}

sub is_final { return $_[0] =~ /^(succeeded|failed|cancelled)$/; }

# wait until a worker of job $job is blocked by backend $pid, or the job
# ended; returns 'blocked', the final state, or 'timeout'
sub wait_blocked
{
	my ($job, $pid, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $out = poll_value($node, $db, qq{
SELECT (SELECT state FROM iterjob.job WHERE id = $job) || '|' ||
       EXISTS (SELECT FROM pg_stat_activity a
                WHERE a.backend_type = 'iterjob worker' AND $pid = ANY (pg_blocking_pids(a.pid)))});
		my ($state, $blocked) = split /\|/, $out;
		return 'blocked' if $blocked eq 't' || $blocked eq 'true';
		return $state if is_final($state);
		usleep(20_000);
	}
	return 'timeout';
}

# wait until backend $pid waits for a lock or is idle; returns 'waiting',
# 'idle' or 'timeout'
sub wait_lock_or_idle
{
	my ($pid, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $out = poll_value($node, $db, qq{
SELECT coalesce(state, 'gone') || '|' || coalesce(wait_event_type, '')
  FROM (SELECT 1) x LEFT JOIN pg_stat_activity ON pid = $pid});
		my ($state, $wait) = split /\|/, $out, 2;
		return 'waiting' if $state eq 'active' && ($wait // '') eq 'Lock';
		return 'idle' if $state ne 'active';
		usleep(20_000);
	}
	return 'timeout';
}

my %tally;    # outcome => count, for the closing summary

sub run_case
{
	my ($c) = @_;
	my $S = $c->{schema};
	my @problems;
	my @notes;

	$node->safe_psql($db, "DROP SCHEMA IF EXISTS $S CASCADE; CREATE SCHEMA $S AUTHORIZATION $TENANT");
	my ($ret, $out, $err) = tenant_psql(join(";\n", setup_sql($c)) . ';');
	if ($ret != 0)
	{
		# a setup the types do not allow (a value out of a domain, an index
		# the type cannot have): not iterjob's business, unless it crashed
		push @notes, "setup failed: " . (split /\n/, $err)[0];
		$tally{'setup failed'}++;
		return (\@problems, \@notes);
	}
	my $rows = $node->safe_psql($db, "SELECT count(*) FROM $S.t");
	push @notes, "$rows rows";

	my $hostile = grep { $TYPES{ $_->{type} }{hostile} } @{ $c->{cols} };
	my $refuse = grep { $TYPES{ $_->{type} }{refuse} } @{ $c->{cols} };

	if ($c->{preview})
	{
		my $args = enqueue_args($c, 'preview');
		($ret, $out, $err) = tenant_psql(
			"SELECT public.fuzz_try(\$p\$SELECT count(*)::text FROM iterjob.preview($args, sample_batches => 2)\$p\$)");
		if ($ret != 0)
		{
			push @problems, "preview: the session died: " . (split /\n/, $err)[0];
		}
		elsif ($out =~ /^error (\S+) (.*)/)
		{
			push @notes, "preview refused: $1 $2";
			push @problems, "preview: internal error $1 $2" if $1 eq 'XX000';
		}
		else
		{
			push @problems, "preview accepted a key iterjob does not support" if $refuse;
		}
	}

	# the hold: the row lock of a random row, taken before the enqueue
	my ($lock, $lock_pid, $change);
	if ($c->{change})
	{
		$change = change_sql($c);
		my $rid = $node->safe_psql($db,
			"SELECT rid FROM $S.t ORDER BY rid OFFSET " . int(rand($rows)) . ' LIMIT 1');
		($lock, $lock_pid) = hold_row($c, $rid);
	}

	my $args = enqueue_args($c, 'enqueue');
	($ret, $out, $err) = tenant_psql(
		"SELECT public.fuzz_try(\$e\$SELECT iterjob.enqueue($args)::text\$e\$)");
	my $job;
	if ($ret != 0)
	{
		push @problems, "enqueue: the session died: " . (split /\n/, $err)[0];
	}
	elsif ($out =~ /^error (\S+) (.*)/)
	{
		my ($state, $msg) = ($1, $2);
		push @notes, "enqueue refused: $state $msg";
		$tally{"refused $state"}++;
		push @problems, "enqueue: internal error $state $msg" if $state eq 'XX000';
	}
	elsif ($out =~ /^ok (\d+)$/)
	{
		$job = $1;
		push @problems, "enqueue accepted a key iterjob does not support (job $job)" if $refuse;
	}
	else
	{
		push @problems, "enqueue returned '$out'";
	}

	my $change_outcome = '';
	if ($lock)
	{
		if (defined $job)
		{
			my $held = wait_blocked($job, $lock_pid, 120);
			push @notes, "hold: $held";
			if ($held eq 'timeout')
			{
				push @problems, "no batch of job $job reached the held row within 120 s";
			}
			# the change, in its own session: it queues behind the held batch
			my $ch = $node->background_psql($db, on_error_stop => 0, timeout => 180,
				extra_params => [ '-U', $TENANT ]);
			my $ch_pid = $ch->query('SELECT pg_backend_pid()');
			$ch->{stderr} = '';
			$ch->query_until(qr/change sent/, "\\echo change sent\n$change;\n");
			my $w = wait_lock_or_idle($ch_pid, 30);
			$lock->query('COMMIT');
			# the change done (or failed): its session answers again
			my ($o) = eval { $ch->query('SELECT 1') };
			my $ch_err = $ch->{stderr} // '';
			$ch_err =~ s/\n.*//s;
			$change_outcome = $ch_err ? "failed ($ch_err)" : 'done';
			push @notes, "change ($w): $change_outcome";
			$tally{ 'change ' . ($ch_err ? 'failed' : 'done') }++;
			eval { $ch->quit };
		}
		else
		{
			$lock->query('COMMIT');
		}
		eval { $lock->quit };
	}

	# the job's end, before a deadline
	my $final;
	if (defined $job)
	{
		$final = poll_value($node, $db, "SELECT iterjob.wait($job, '$JOB_DEADLINE s')", 180);
		push @notes, "job $job $final";
		$tally{"job $final"}++;
		if (!is_final($final))
		{
			push @problems, "job $job did not end within $JOB_DEADLINE s (state $final): hung";
			$node->psql($db, "SELECT iterjob.cancel($job)");
		}
		my $errs = poll_value($node, $db, qq{
SELECT coalesce(string_agg(DISTINCT sqlstate || ' ' || message, ' / '), '')
  FROM iterjob.errors WHERE job_id = $job});
		push @notes, "errors: $errs" if $errs ne '';
		my $bad = poll_value($node, $db, qq{
SELECT coalesce(string_agg(DISTINCT coalesce(sqlstate, '-') || ' ' || message, ' / '), '')
  FROM iterjob.errors
 WHERE job_id = $job AND (sqlstate IS NULL OR sqlstate = 'XX000' OR message ~ 'worker died')});
		push @problems, "job $job: internal error or worker death: $bad" if $bad ne '';
		if ($final eq 'failed')
		{
			my $last = poll_value($node, $db, "SELECT coalesce(last_error, '') FROM iterjob.job WHERE id = $job");
			push @problems, "job $job failed without an error" if $last eq '' && $errs eq '';
		}
		# every row once, none twice
		my $tbl = $c->{change} && $c->{change} eq 'rename table' && $change_outcome eq 'done'
		  ? "$S.t_renamed" : "$S.t";
		my ($exists) = $node->safe_psql($db, "SELECT to_regclass('$tbl') IS NOT NULL");
		if ($exists eq 't')
		{
			my ($twice, $missed) = split /\|/, $node->safe_psql($db,
				"SELECT count(*) FILTER (WHERE n > 1) || '|' || count(*) FILTER (WHERE n = 0 AND rid > 0) FROM $tbl");
			push @problems, "job $job processed $twice rows more than once" if $twice > 0;
			push @problems, "job $job succeeded but missed $missed rows"
			  if $final eq 'succeeded' && $missed > 0;
			if ($twice > 0 || ($final eq 'succeeded' && $missed > 0))
			{
				my $keys = join(', ', map { 'to_jsonb(' . qi($_->{name}) . ')' } @{ $c->{cols} });
				push @problems, "rows (n, rid, keys): " . $node->safe_psql($db, qq{
SELECT string_agg(format('%s %s %s', n, rid, left(concat_ws(' ', $keys), 60)), '; ' ORDER BY rid)
  FROM $tbl WHERE n > 1 OR (n = 0 AND rid > 0)});
				push @problems, "instances (instance, state, rows, batches, cursor): " . $node->safe_psql($db, qq{
SELECT string_agg(format('%s %s %s %s %s', instance, state, rows_done, batches_done, left(cursor::text, 80)), '; ' ORDER BY instance)
  FROM iterjob.task_progress WHERE job_id = $job});
			}
		}
		push @problems, "job $job failed after a change that alters nothing it relies on "
		  . "($c->{change})"
		  if $final eq 'failed' && $c->{change} && $HARMLESS{ $c->{change} }
		  && $change_outcome eq 'done' && !$hostile;
		$node->psql($db, "SELECT iterjob.cancel($job)") unless is_final($final);
	}

	return (\@problems, \@notes);
}

# ---------------------------------------------------------------------------

my $t0 = time;
my $cases = 0;
my @failed_cases;
for (my $n = 1;; $n++)
{
	last if @only && $n > (sort { $b <=> $a } @only)[0];
	next if @only && !grep { $_ == $n } @only;
	last if !@only && (time - $t0 > $budget || $cases >= $max_cases);
	srand($seed * 1009 + $n * 7919);
	my $c = make_case($n);
	my $desc = describe($c);
	note("case $n: $desc");
	my $started = start_time();
	my $log_off = log_offset($node);
	my ($problems, $notes) = ([], []);
	eval {
		($problems, $notes) = run_case($c);
		1;
	} or push @$problems, "the test's own session failed: $@";

	# crashes: the postmaster's start time, the log
	my $now_started = start_time();
	push @$problems, "the server restarted (pg_postmaster_start_time $started -> $now_started)"
	  if $now_started ne $started;
	# the postmaster writes its lines a moment after the crash
	usleep(100_000);
	my @lines = grep { /$crash_re/ } split /\n/, log_since($node, $log_off);
	push @$problems, "server log: " . join("\n    ", splice(@lines, 0, 8)) if @lines;
	$cases++;
	my $ok = ok(!@$problems, "case $n: $desc: " . join('; ', @$notes));
	if (!$ok)
	{
		diag("case $n FAILED (seed $seed; replay with ITERJOB_FUZZ_SEED=$seed ITERJOB_FUZZ_CASES=$n):\n  "
			  . join("\n  ", @$problems));
		push @failed_cases, $n;
		$node->safe_psql($db, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $c->{schema} CASCADE")
		  if poll_value($node, $db, 'SELECT 1', 120);
	}
	else
	{
		$node->safe_psql($db, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $c->{schema} CASCADE");
	}
}
ok($cases >= (@only ? scalar(@only) : 3), "ran $cases cases in " . int(time - $t0) . ' s');
diag(sprintf('fuzz seed %s: %d cases in %.0f s; %s; failed cases: %s', $seed, $cases, time - $t0,
		join(', ', map { "$_ $tally{$_}" } sort keys %tally),
		@failed_cases ? join(',', @failed_cases) . " (ITERJOB_FUZZ_SEED=$seed ITERJOB_FUZZ_CASES="
		  . join(',', @failed_cases) . ')' : 'none'));

$node->stop('immediate');
done_testing();
