#!/usr/bin/env bash
# Runs every iterjob test suite: installs missing packages, builds with
# -Werror, installs, starts a throwaway cluster with iterjob preloaded, runs
# the pg_regress suite, the pgTAP suites, the isolation suite (with a
# pgbench check of concurrent enqueues) and the crash/restart TAP suite,
# and stops the cluster (also on failure).
#
#   test/run-all.sh            all suites
#   test/run-all.sh regress    one of: regress, pgtap, isolation, tap
source "$(dirname "$0")/lib.sh"

suites=${*:-regress pgtap isolation tap}
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
	isolation)
		cluster_start "iterjob.max_workers = 4"
		echo "== isolation"
		isodir=$(mktemp -d /tmp/iterjob-isolation.XXXXXX)
		specs=$(cd "$ITERJOB_ROOT/test/isolation/specs" && ls *.spec | sed 's/\.spec$//')
		# pg_isolation_regress (re)creates the database isolation_regression,
		# with iterjob, on the throwaway cluster
		# shellcheck disable=SC2086
		if ! /usr/lib/postgresql/15/lib/pgxs/src/test/isolation/pg_isolation_regress \
			--host="$PGHOST" --port="$PGPORT" --user=postgres \
			--inputdir="$ITERJOB_ROOT/test/isolation" --outputdir="$isodir" \
			--load-extension=iterjob $specs; then
			cat "$isodir/regression.diffs" 2>/dev/null | head -300
			status=1
		fi
		rm -rf "$isodir"
		echo "== pgbench: 4 clients x 25 concurrent enqueues"
		if ! { psql_q -d postgres -c "CREATE DATABASE iterjob_pgbench" &&
			psql_q -d iterjob_pgbench -f "$ITERJOB_ROOT/test/isolation/enqueue_setup.sql" &&
			pgbench -n -c 4 -j 4 -t 25 -f "$ITERJOB_ROOT/test/isolation/enqueue.pgbench" \
				iterjob_pgbench &&
			psql_q -d iterjob_pgbench -f "$ITERJOB_ROOT/test/isolation/enqueue_check.sql"; }; then
			echo "pgbench enqueue check failed"
			status=1
		fi
		cluster_stop
		;;
	tap)
		if compgen -G "$ITERJOB_ROOT/test/t/*.pl" >/dev/null; then
			echo "== TAP (crash, kill, restart)"
			tapdir=$(mktemp -d /tmp/iterjob-tap.XXXXXX)
			chmod 755 "$tapdir"
			# the postgres user runs the scripts: give it a copy it can read
			# wherever this checkout lives
			cp -r "$ITERJOB_ROOT/test/t" "$tapdir/t"
			as_root chown -R postgres: "$tapdir"
			# PostgreSQL::Test::Cluster makes and stops its own clusters.  PG 15's
			# PostgreSQL::Test::Utils puts its tmp_check (node data and logs under
			# tmp_check/log) in $TESTDIR, or else in the current directory, which
			# the postgres user cannot write; later versions read TESTDATADIR and
			# TESTLOGDIR.  The test scripts run from $tapdir for the same reason.
			tap_ok=1
			(cd "$tapdir" && as_postgres env PATH="$PGBIN:$PATH" \
				PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
				TESTDIR="$tapdir" TESTDATADIR="$tapdir" TESTLOGDIR="$tapdir/tmp_check/log" \
				prove -f --timer -I /usr/lib/postgresql/15/lib/pgxs/src/test/perl \
				-I "$tapdir/t" "$tapdir"/t/*.pl) || tap_ok=0
			if [ $tap_ok = 1 ] && [ -z "${KEEP_TAP_DIR:-}" ]; then
				as_root rm -rf "$tapdir"
			else
				[ $tap_ok = 1 ] || status=1
				echo "== TAP logs kept in $tapdir/tmp_check/log (regress_log_* and the nodes' server logs)"
			fi
		fi
		;;
	*)
		echo "unknown suite: $suite" >&2
		exit 2
		;;
	esac
done

exit $status
