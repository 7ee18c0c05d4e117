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
# Replay: the seed is printed first (ITERJOB_FUZZ_SEED=<seed> replays the
# run's cases; each failure prints its case number and description, and
# ITERJOB_FUZZ_CASES=<n>[,<n>...] runs only those of that seed).  The time
# budget is ITERJOB_FUZZ_TIME seconds (default 150): no case starts after
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

my $seed = $ENV{ITERJOB_FUZZ_SEED} // (int(time * 1000) ^ ($$ << 8)) % 1_000_000_000;
die "ITERJOB_FUZZ_SEED must be a number" unless $seed =~ /^\d+$/;
my $budget = $ENV{ITERJOB_FUZZ_TIME} // 150;
die "ITERJOB_FUZZ_TIME must be a number of seconds" unless $budget =~ /^\d+$/;
my $max_cases = $ENV{ITERJOB_FUZZ_MAX_CASES} // 1_000_000;
my @only = grep { /\d/ } split /[ ,]+/, ($ENV{ITERJOB_FUZZ_CASES} // '');
# ITERJOB_FUZZ_FOCUS=change: a schema change in every case that can have one
my $focus = $ENV{ITERJOB_FUZZ_FOCUS} // '';
diag("fuzz seed $seed, budget ${budget}s (ITERJOB_FUZZ_SEED=$seed replays these cases)");

my $db = 'postgres';
my $TENANT = 'fuzz_tenant';
my $JOB_DEADLINE = 90;     # seconds a job may take before it counts as hung

my $node = iterjob_node('fuzz', 'log_error_verbosity = verbose',
	'iterjob.max_workers = 4', 'max_prepared_transactions = 0');
my $pg_major = $node->safe_psql($db, 'SHOW server_version_num') / 10000;
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

# ---------------------------------------------------------------------------
# Random helpers (one generator, reseeded per case)

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub rint { my ($lo, $hi) = @_; return $lo + int(rand($hi - $lo + 1)); }

sub shuffle
{
	my @a = @_;
	for (my $i = $#a; $i > 0; $i--)
	{
		my $j = int(rand($i + 1));
		@a[ $i, $j ] = @a[ $j, $i ];
	}
	return @a;
}

# Text values as SQL expressions: empty, blanks, case pairs, quotes and
# backslashes, JSON-looking text, unicode (composed and combining, CJK, an
# emoji), long values that are TOASTed (compressed), random words.
sub text_value
{
	my ($maxlen) = @_;
	my @fixed = ("''", "' '", "'a'", "'A'", "'b'", "'null'", "'[]'", "'{}'", "'\"'",
		"''''", "'\\'", "'a''b'", "'-0'", "'NaN'", "'z z'", "E'\\t'", "E'\\n'",
		"chr(233)", "'e' || chr(769)", "chr(26085) || chr(26412)", "chr(128578)",
		"chr(223)", "'ss'", "'SS'", "chr(65279) || 'x'", "'~'", "'0'", "'00'", "'10'", "'9'");
	my $r = rand();
	my $v;
	if ($r < 0.35)
	{
		$v = pick(@fixed);
	}
	elsif ($r < 0.45 && (!defined $maxlen || $maxlen > 3000))
	{
		# the distinct part first: it survives a cut to 63 bytes (name)
		$v = "'" . rint(0, 99999) . "' || repeat('ab', " . rint(1200, 4000) . ")";
	}
	else
	{
		my @alpha = ('a' .. 'z', 'A' .. 'Z', '0' .. '9', ' ', '-', '_', '.');
		my $len = rint(1, defined $maxlen && $maxlen < 12 ? $maxlen : 12);
		$v = lit(join('', map { pick(@alpha) } 1 .. $len));
		$v = "$v || chr(" . pick(228, 246, 252, 945, 1046, 20013) . ")"
		  if chance(0.2) && (!defined $maxlen || $len < $maxlen);
	}
	return $v;
}

sub float_value
{
	my ($kind) = @_;
	my @edge = ("'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'0'", "'1'", "'-1'",
		$kind eq 'float4' ? ("'1e-45'", "'3.4e38'", "'1.17549435e-38'") : ("'5e-324'",
			"'1.7976931348623157e308'", "'2.2250738585072014e-308'", "'0.1'",
			"'9007199254740993'"));
	return pick(@edge) if chance(0.3);
	my $m = sprintf('%.*f', rint(0, 9), (rand() - 0.5) * 2);
	return lit($m . 'e' . rint(-40, 30));
}

sub numeric_value
{
	my @edge = ("'NaN'", "'0'", "'-0.000'", "'1.5'", "'1.500'", "'1e-30'", "'-1e100'",
		"'123456789012345678901234567890.123456789'", "'0.0000001'", "'99999999999999999999'");
	push @edge, "'Infinity'", "'-Infinity'" if $pg_major >= 14;
	return pick(@edge) if chance(0.3);
	return lit(sprintf('%.*f', rint(0, 12), (rand() - 0.5) * 10**rint(0, 25)));
}

sub int_value
{
	my ($bits) = @_;
	my %edge = (
		16 => [ '-32768', '32767' ],
		32 => [ '-2147483648', '2147483647' ],
		64 => [ '-9223372036854775808', '9223372036854775807', '9007199254740993',
			'-9007199254740993' ]);
	return pick(@{ $edge{$bits} }, '0', '-1', '1') if chance(0.15);
	my $range = { 16 => 30000, 32 => 2_000_000_000, 64 => 9_000_000_000_000_000 }->{$bits};
	return chance(0.5) ? rint(-1000, 1000) : int((rand() - 0.5) * 2 * $range);
}

sub date_value
{
	return pick("'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'", "'2000-02-29'",
		"'1970-01-01'") if chance(0.2);
	return lit(sprintf('%04d-%02d-%02d', rint(1, 9999), rint(1, 12), rint(1, 28)));
}

sub ts_value
{
	my ($tz) = @_;
	return pick("'infinity'", "'-infinity'", "'4713-01-01 00:00:00 BC'",
		"'294276-12-31 23:59:59.999999'", "'2000-01-01 00:00:00'") if chance(0.2);
	return lit(sprintf('%04d-%02d-%02d %02d:%02d:%02d.%06d%s', rint(1, 9999), rint(1, 12),
			rint(1, 28), rint(0, 23), rint(0, 59), rint(0, 59), rint(0, 999999),
			$tz ? pick('+00', '-05:30', '+14', ' UTC') : ''));
}

sub interval_value
{
	return pick("'0'", "'1 mon'", "'30 days'", "'1 day'", "'24 hours'", "'-178000000 years'",
		"'178000000 years'", "'1 day -24 hours'", "'0.000001 seconds'") if chance(0.3);
	return lit(sprintf('%d years %d mons %d days %d:%02d:%02d.%06d', rint(-100, 100),
			rint(-11, 11), rint(-40, 40), rint(-30, 30), rint(0, 59), rint(0, 59), rint(0, 999999)));
}

sub rand_hex { return join('', map { sprintf('%02x', int(rand(256))) } 1 .. $_[0]); }

sub uuid_value
{
	return pick("'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'")
	  if chance(0.1);
	my $h = rand_hex(16);
	return lit(join('-', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
			substr($h, 16, 4), substr($h, 20, 12)));
}

sub inet_value
{
	return pick("'10.0.0.1'", "'10.0.0.0/8'", "'10.0.0.1/8'", "'::1'", "'::ffff:1.2.3.4'",
		"'0.0.0.0/0'", "'::/0'", "'255.255.255.255'") if chance(0.3);
	return lit(join('.', map { int(rand(256)) } 1 .. 4) . (chance(0.3) ? '/' . rint(8, 32) : ''))
	  if chance(0.6);
	return lit(join(':', map { sprintf('%x', int(rand(65536))) } 1 .. 8));
}

# ---------------------------------------------------------------------------
# Key types.  Each: the column's SQL type (with $S for the case's schema),
# setup SQL (in $S, run as the tenant), a value generator (and a milder one,
# "mild", for cases whose change converts the column to another type: values
# every target type takes, so that the change lands), how many distinct
# values it can have, and flags:
#   refuse  the key must be refused at enqueue (not supported)
#   hostile the type's cast to json may return what is not one scalar:
#           refused, or the job fails with a clear error (or every row once)
#   nohash  no hash function: modulo is refused (with a hint)
#   text    textual: collations and text_pattern_ops apply
#   int4    int4-compatible: the reversing operator class applies
#   int     an integer: the table may be range-partitioned on it
#   changes the ALTER COLUMN TYPE targets that make sense for it
my %TYPES = (
	int2 => { sql => 'int2', gen => sub { int_value(16) }, changes => [qw(int4 text numeric)] },
	int4 => { sql => 'int4', gen => sub { int_value(32) }, changes => [qw(int8 text numeric float8)],
		int => 1, int4 => 1 },
	int8 => { sql => 'int8', gen => sub { int_value(64) }, mild => sub { int_value(32) },
		changes => [qw(numeric text int4)], int => 1 },
	numeric => { sql => 'numeric', gen => \&numeric_value, mild => sub { int_value(64) },
		changes => [qw(int8 float8 text)] },
	float4 => { sql => 'float4', gen => sub { float_value('float4') },
		mild => sub { lit(sprintf('%.3f', (rand() - 0.5) * 1e6)) }, changes => [qw(float8 numeric text)] },
	float8 => { sql => 'float8', gen => sub { float_value('float8') },
		mild => sub { lit(sprintf('%.3f', (rand() - 0.5) * 1e6)) }, changes => [qw(float4 numeric text)] },
	text => { sql => 'text', gen => sub { text_value() }, text => 1,
		changes => [qw(name varchar bytea int8)] },
	varchar => { sql => 'varchar(40)', gen => sub { text_value(40) }, text => 1,
		changes => [qw(text name)] },
	name => { sql => 'name', gen => sub { text_value(60) }, changes => [qw(text varchar)] },
	bpchar => { sql => 'char(6)', gen => sub { text_value(6) }, text => 1, changes => [qw(text varchar)] },
	bytea => { sql => 'bytea', gen => sub {
			chance(0.2) ? pick("'\\x'", "'\\x00'", "'\\xff'", "'\\x0000'")
			  : chance(0.1) ? "decode(repeat('ab', 3000), 'hex')" : lit('\\x' . rand_hex(rint(1, 12))) },
		changes => [qw(text)] },
	uuid => { sql => 'uuid', gen => \&uuid_value, changes => [qw(text)] },
	date => { sql => 'date', gen => \&date_value, changes => [qw(timestamp text)] },
	timestamp => { sql => 'timestamp', gen => sub { ts_value(0) }, changes => [qw(timestamptz date text)] },
	timestamptz => { sql => 'timestamptz', gen => sub { ts_value(1) }, changes => [qw(timestamp text)] },
	interval => { sql => 'interval', gen => \&interval_value, changes => [qw(text)] },
	bool => { sql => 'bool', gen => sub { pick('true', 'false') }, max => 2, changes => [qw(int4 text)] },
	inet => { sql => 'inet', gen => \&inet_value, changes => [qw(text cidr)] },
	money => { sql => 'money', gen => sub { lit(sprintf('%.2f', (rand() - 0.5) * 1e6)) },
		nohash => 1, changes => [qw(numeric)] },
	pg_lsn => { sql => 'pg_lsn', gen => sub {
			chance(0.2) ? pick("'0/0'", "'FFFFFFFF/FFFFFFFF'")
			  : lit(sprintf('%X/%X', int(rand(2**32)), int(rand(2**32)))) }, changes => [qw(text)] },
	int4range => { sql => 'int4range', gen => sub {
			chance(0.2) ? pick("'empty'", "'(,)'", "'[3,)'", "'(,3]'")
			  : do { my $a = rint(-1000, 1000); "int4range($a, " . ($a + rint(1, 50)) . ")" } },
		changes => [qw(text int8range)] },
	bit => { sql => 'bit(4)', gen => sub { lit(join('', map { int(rand(2)) } 1 .. 4)) }, max => 16,
		changes => [qw(text varbit)] },
	varbit => { sql => 'varbit', gen => sub { lit(join('', map { int(rand(2)) } 1 .. rint(0, 70))) },
		changes => [qw(text)] },
	time => { sql => 'time', gen => sub {
			chance(0.1) ? pick("'24:00:00'", "'00:00:00'", "'allballs'")
			  : lit(sprintf('%02d:%02d:%02d.%06d', rint(0, 23), rint(0, 59), rint(0, 59), rint(0, 999999))) },
		changes => [qw(text interval)] },
	macaddr => { sql => 'macaddr', gen => sub { lit(join(':', map { sprintf('%02x', int(rand(256))) } 1 .. 6)) },
		changes => [qw(text macaddr8)] },
	char1 => { sql => '"char"', gen => sub { lit(pick('a' .. 'z', 'A' .. 'Z', '0' .. '9', ' ', '~')) }, max => 60,
		changes => [qw(text)] },
	oid => { sql => 'oid', gen => sub { chance(0.1) ? pick("'0'", "'4294967295'") : int(rand(2**32)) },
		changes => [qw(int8 text)] },
	# user-defined types an ordinary role can make
	dom_int => { sql => '$S.d_int', setup => 'CREATE DOMAIN $S.d_int AS int4 CHECK (VALUE > -2000000000)',
		gen => sub { rint(-1999999999, 2000000000) }, changes => [qw(int4 int8 text)] },
	dom_text => { sql => '$S.d_text',
		setup => q{CREATE DOMAIN $S.d_text AS text CHECK (VALUE IS NULL OR VALUE <> 'forbidden')},
		gen => sub { text_value() }, text => 1, changes => [qw(text name)] },
	dom_dom => { sql => '$S.d_dom', mild => sub { my $v = int_value(64); $v =~ /^1[34]$/ ? 15 : $v },
		setup => 'CREATE DOMAIN $S.d_base AS numeric CHECK (VALUE <> 13); '
		  . 'CREATE DOMAIN $S.d_dom AS $S.d_base CHECK (VALUE <> 14)',
		gen => sub { my $v = numeric_value(); $v =~ /'(13|14)'/ ? "'15'" : $v },
		changes => [qw(numeric int8)] },
	enum => { sql => '$S.e',
		setup => q{CREATE TYPE $S.e AS ENUM ('a', 'b', 'c', '', ' ', 'null', '[]', 'd''q', 'x"y', 'z\\', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9', 'f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9')},
		gen => sub { lit(pick('a', 'b', 'c', '', ' ', 'null', '[]', "d'q", 'x"y', 'z\\',
					(map { "e$_" } 1 .. 9), (map { "f$_" } 0 .. 9))) },
		max => 29, enum => 1, changes => [qw(text)] },
	frange => { sql => '$S.fr', setup => 'CREATE TYPE $S.fr AS RANGE (subtype = float8)',
		gen => sub { my $a = int(rand(1000)) / 7; "\$S.fr($a, " . ($a + 1 + rand(5)) . ")" },
		changes => [qw(text)] },
	# hostile casts to json: what the key's jsonb form becomes
	enum_json => { sql => '$S.h', hostile => 1, enum => 1, max => 12,
		setup => sub {
			my $bad = pick("'[null]'", "'[]'", "'null'", q{'{"a": 1}'}, "'42'", "'[1, 2]'",
				q{'"x"'}, "NULL");
			# bad for every value, or only from a label on (a later batch)
			my $from = pick('', 'a', 'f', 'k');
			my $cond = $from eq '' ? 'true' : "\$1::text >= '$from'";
			return q{CREATE TYPE $S.h AS ENUM ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l');}
			  . qq{CREATE FUNCTION \$S.h_json(\$S.h) RETURNS json LANGUAGE sql IMMUTABLE AS
				 \$q\$ SELECT CASE WHEN $cond THEN ${bad}::json ELSE to_json(\$1::text) END \$q\$;}
			  . q{CREATE CAST ($S.h AS json) WITH FUNCTION $S.h_json($S.h);};
		},
		gen => sub { lit(pick('a' .. 'l')) }, changes => [qw(text)] },
	# refused
	dom_array => { sql => '$S.d_arr', refuse => 1, setup => 'CREATE DOMAIN $S.d_arr AS int4[]',
		gen => sub { 'ARRAY[' . rint(-100, 100) . ', ' . rint(-100, 100) . ']' } },
	dom_array_check => { sql => '$S.d_arr2', refuse => 1,
		setup => 'CREATE DOMAIN $S.d_arr2 AS text[] CHECK (cardinality(VALUE) > 0)',
		gen => sub { 'ARRAY[' . text_value(20) . ']' } },
	array => { sql => 'int8[]', refuse => 1, gen => sub { 'ARRAY[' . rint(-100, 100) . ']::int8[]' } },
	composite => { sql => '$S.pair', refuse => 1, setup => 'CREATE TYPE $S.pair AS (a int, b text)',
		gen => sub { 'ROW(' . rint(-100, 100) . ', ' . text_value(20) . ')' } },
	dom_composite => { sql => '$S.d_pair', refuse => 1,
		setup => 'CREATE TYPE $S.pair2 AS (a int, b int); CREATE DOMAIN $S.d_pair AS $S.pair2',
		gen => sub { 'ROW(' . rint(-100, 100) . ', ' . rint(-100, 100) . ')' } },
	jsonb => { sql => 'jsonb', refuse => 1,
		gen => sub { lit(pick('[' . rint(0, 999) . ']', '{"a": ' . rint(0, 999) . '}', rint(0, 999))) } },
);
my @TYPE_NAMES = sort keys %TYPES;
# how often each is drawn: the refused and hostile ones less often
my @TYPE_DRAW = map { ($_) x ($TYPES{$_}{refuse} ? 1 : $TYPES{$_}{hostile} ? 6 : 2) } @TYPE_NAMES;

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

# state of job $job: 'state|final'
sub job_state
{
	my ($job) = @_;
	return poll_value($node, $db, "SELECT state FROM iterjob.job WHERE id = $job", 120);
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
			my $held = wait_blocked($job, $lock_pid, 60);
			push @notes, "hold: $held";
			if ($held eq 'timeout')
			{
				push @problems, "no batch of job $job reached the held row within 60 s";
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
