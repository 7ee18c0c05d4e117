#!/usr/bin/env bash
# Runs every iterjob test suite: installs missing packages, builds with
# -Werror, installs, starts a throwaway cluster with iterjob preloaded, runs
# the pg_regress suite, the pgTAP suites and the crash/restart TAP suite,
# and stops the cluster (also on failure).
#
#   test/run-all.sh            all suites
#   test/run-all.sh regress    one of: regress, pgtap, tap
source "$(dirname "$0")/lib.sh"

suites=${*:-regress pgtap tap}
setup_iterjob
status=0

for suite in $suites; do
	case "$suite" in
	regress)
		cluster_start
		echo "== pg_regress"
		# pg_regress writes results/ next to the inputs
		if ! make -C "$ITERJOB_ROOT" -s installcheck PG_CONFIG=$PG_CONFIG \
			PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres; then
			cat "$ITERJOB_ROOT/regression.diffs" 2>/dev/null | head -200
			status=1
		fi
		cluster_stop
		;;
	pgtap)
		cluster_start "iterjob.max_workers = 4"
		echo "== pgTAP"
		prove -f --timer -e "$ITERJOB_ROOT/test/pgtap-exec.sh" \
			"$ITERJOB_ROOT"/test/pgtap/*.sql || status=1
		cluster_stop
		;;
	tap)
		if compgen -G "$ITERJOB_ROOT/test/t/*.pl" >/dev/null; then
			echo "== TAP (crash, kill, restart)"
			tapdir=$(mktemp -d /tmp/iterjob-tap.XXXXXX)
			chmod 755 "$tapdir"
			as_root chown postgres: "$tapdir"
			# PostgreSQL::Test::Cluster makes and stops its own clusters
			as_postgres env PATH="$PGBIN:$PATH" PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
				TESTDATADIR="$tapdir" TESTLOGDIR="$tapdir" \
				prove -f --timer -I /usr/lib/postgresql/15/lib/pgxs/src/test/perl \
				-I "$ITERJOB_ROOT/test/t" "$ITERJOB_ROOT"/test/t/*.pl || status=1
			as_root rm -rf "$tapdir"
		fi
		;;
	*)
		echo "unknown suite: $suite" >&2
		exit 2
		;;
	esac
done

exit $status
