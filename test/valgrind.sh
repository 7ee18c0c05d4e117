#!/usr/bin/env bash
# test/valgrind.sh (make valgrind): runs iterjob's core suites with the
# server under valgrind, and reports the invalid reads and writes, uses of
# uninitialised memory and bad frees that valgrind saw in iterjob's code.
#
#   make valgrind [PG_CONFIG=...]       or   test/valgrind.sh
#
#   PG_CONFIG / ITERJOB_PG_MAJOR   the installation, as for test/run-all.sh
#                                  (default: Debian's PostgreSQL 15)
#   ITERJOB_VALGRIND_PGTAP         the pgTAP files to run (names without
#                                  .sql; default "hostile_keys keys sources")
#
# The postmaster and every process it forks (backends, the launcher, the
# workers) run under valgrind with PostgreSQL's own suppressions
# (src/tools/valgrind.supp from the 18.6 tarball in ../shared/vendor), each
# process's report in its own file.  Everything runs some 20 to 50 times
# slower, so the suites' own deadlines may pass: their results are shown,
# but the verdict is valgrind's.  Errors whose stack has a frame in iterjob
# are printed whole and fail the run; others (PostgreSQL's, or a library's)
# are counted.  A build of PostgreSQL with USE_VALGRIND defined (it marks
# palloc'd chunks for valgrind) finds more than a release build, where
# valgrind only sees malloc'd blocks.
source "$(dirname "$0")/lib.sh"

ensure_packages valgrind bzip2
setup_iterjob

VENDOR=${ITERJOB_VENDOR:-$ITERJOB_ROOT/../shared/vendor}
TARBALL=$VENDOR/postgresql-18_18.6.orig.tar.bz2
if [ ! -r "$TARBALL" ]; then
	echo "valgrind: $TARBALL not found (PostgreSQL's suppressions come from it)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/iterjob-valgrind.XXXXXX)
chmod 755 "$work"
tar -xjf "$TARBALL" -C "$work" --strip-components=3 postgresql-18.6/src/tools/valgrind.supp
mkdir -p "$work/logs"
as_root chown -R postgres: "$work"
export ITERJOB_VALGRIND=$work/logs ITERJOB_VALGRIND_SUPP=$work/valgrind.supp
echo "== valgrind: reports in $work/logs"

start=$(date +%s)
suites=()
run_suite() {
	local label=$1
	shift
	if env ITERJOB_SKIP_BUILD=1 "$@" >"$work/$label.out" 2>&1; then
		suites+=("$label passed")
	else
		suites+=("$label FAILED (see $work/$label.out)")
	fi
	echo "== $label: ${suites[-1]#"$label "} ($(($(date +%s) - start)) s so far)"
}
run_suite regress "$ITERJOB_ROOT/test/run-all.sh" regress
for f in ${ITERJOB_VALGRIND_PGTAP:-hostile_keys keys sources}; do
	run_suite "pgtap-$f" env ITERJOB_PGTAP_FILES="$f" "$ITERJOB_ROOT/test/run-all.sh" pgtap
done

# Each error is the text between valgrind's markers.  It is iterjob's when
# one of the two innermost frames of its stack that are in PostgreSQL or
# iterjob (leaving out the C library's and valgrind's) is iterjob's: an
# error deeper in PostgreSQL that iterjob's code merely led to from far
# away (the relation cache file written as a worker connects) is
# PostgreSQL's.
report=$(perl -e '
	my ($root, $dir) = @ARGV;
	my ($ours, $theirs) = (0, 0);
	sub ours {
		my @frames = grep { m{\Q$root\E/src/|iterjob\.so|\(in [^)]*/bin/postgres\)|/src/(backend|common|port|include|pl)/} }
			grep { /^==\d+==\s+(at|by) 0x/ } split /\n/, $_[0];
		return scalar grep { m{\Q$root\E/src/|iterjob\.so} } @frames[0 .. ($#frames < 1 ? $#frames : 1)];
	}
	for my $file (sort glob("$dir/*.log")) {
		open(my $fh, "<", $file) or next;
		my ($in, $block) = (0, "");
		while (my $line = <$fh>) {
			if ($line =~ /VALGRINDERROR-BEGIN/) { ($in, $block) = (1, ""); next; }
			if ($line =~ /VALGRINDERROR-END/) {
				$in = 0;
				if (ours($block)) {
					$ours++;
					(my $name = $file) =~ s{.*/}{};
					print "---- $name\n$block";
				} else {
					$theirs++;
				}
				next;
			}
			$block .= $line if $in;
		}
	}
	print "COUNTS $ours $theirs\n";
' "$ITERJOB_ROOT" "$work/logs")
counts=$(echo "$report" | tail -1)
read -r _ ours theirs <<<"$counts"
echo "$report" | sed '$d'
echo "== suites under valgrind: $(IFS=';'; echo "${suites[*]}")"
echo "== valgrind: $ours errors in iterjob's code, $theirs elsewhere (not suppressed), in $(find "$work/logs" -name '*.log' | wc -l) processes, $(($(date +%s) - start)) s"
[ "$ours" = 0 ]
