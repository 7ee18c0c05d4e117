# FuzzKeyTypes.pm: the key types and random values of the randomized test
# (019_fuzz_keys.pl): for each type, its SQL, the SQL that makes it in a
# case's schema, value generators (SQL expressions: edge values, empty,
# NaN, infinities, TOASTed and unicode texts), and what iterjob must do
# with it.  Every random choice goes through Perl's rand(), which the test
# seeds per case.

package FuzzKeyTypes;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(pick chance lit rint %TYPES @TYPE_NAMES @TYPE_DRAW);

# the server's major (numeric infinities exist from 14 on)
our $PG_MAJOR = 15;

# Random helpers

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub rint { my ($lo, $hi) = @_; return $lo + int(rand($hi - $lo + 1)); }

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
	push @edge, "'Infinity'", "'-Infinity'" if $PG_MAJOR >= 14;
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
our %TYPES = (
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
our @TYPE_NAMES = sort keys %TYPES;
# how often each is drawn: the refused and hostile ones less often
our @TYPE_DRAW = map { ($_) x ($TYPES{$_}{refuse} ? 1 : $TYPES{$_}{hostile} ? 6 : 2) } @TYPE_NAMES;

1;
