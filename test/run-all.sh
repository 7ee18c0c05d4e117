#!/usr/bin/env bash
# Runs every iterjob test suite on every PostgreSQL major it can have: for
# each, installs missing packages (or builds PostgreSQL 18 from
# ../shared/vendor with assertions enabled, once, see test/build-pg18.sh:
# 15 is Debian's build, without them), builds iterjob with
# -Werror, installs it, starts a throwaway cluster with iterjob preloaded,
# runs the pg_regress suite, the pgTAP suites, the isolation suite (with a
# pgbench check of concurrent enqueues) and the crash/restart TAP suite
# (with the Citus cluster suite, Citus built once from ../shared/vendor
# into the installation under test: 13.2.2 for 15, 14.0.1 for 18, see
# test/build-citus.sh), and stops the cluster (also on failure).
#
#   test/run-all.sh              all suites on PostgreSQL 15 and 18
#   test/run-all.sh regress      one or more of: regress, pgtap, isolation, tap
#   ITERJOB_PG_MAJORS=18 test/run-all.sh [suites]
#                                the majors to run (default "15 18")
#   PG_CONFIG=/path/to/bin/pg_config test/run-all.sh [suites]
#                                that installation only
#   ITERJOB_TAP_FILES=017_citus test/run-all.sh tap
#                                those TAP files only (a glob, without .pl)
#   ITERJOB_PGTAP_FILES=keys test/run-all.sh pgtap
#                                those pgTAP files only (a glob, without .sql)
#   ITERJOB_ISOLATION_SPECS=sibling_claim test/run-all.sh isolation
#                                those isolation specs only (a glob)
#
# A major that cannot be had here (18 without the tarball in ../shared/vendor
# and without an installed /usr/lib/postgresql/18) is skipped with one line,
# unless ITERJOB_REQUIRE_MAJORS=1 (CI), where it fails the run, as does
# a Citus that cannot be had for a major that is run.  The last
# line counts the suites run: "suites: N passed, N failed[, N skipped]".
source "$(dirname "$0")/lib.sh"

if [ -z "${PG_CONFIG:-}" ]; then
	passed=0 failed=0 skipped=0 failed_suites=
	nsuites=$(echo "${*:-regress pgtap isolation tap}" | wc -w)
	for major in ${ITERJOB_PG_MAJORS:-15 18}; do
		rc=0
		# 18: the assertion-enabled build (the plain one is the benchmarks')
		pg_config=$(pg_config_for "$major" cassert) || rc=$?
		if [ "$rc" = 3 ]; then
			why="not available here (no tarball in ../shared/vendor to build it from, no package, not installed)"
			if [ "${ITERJOB_REQUIRE_MAJORS:-}" = 1 ]; then
				echo "== PostgreSQL $major: FAILED, $why, and ITERJOB_REQUIRE_MAJORS=1"
				failed=$((failed + nsuites))
			else
				echo "== PostgreSQL $major: skipped, $why"
				skipped=$((skipped + nsuites))
			fi
			continue
		fi
		if [ "$rc" != 0 ]; then
			echo "== PostgreSQL $major: FAILED (could not be installed or built)"
			failed=$((failed + nsuites))
			continue
		fi
		echo "== PostgreSQL $major: $pg_config ($(assertions "$pg_config"))"
		# one run per major, in a process of its own (its own cluster traps)
		PG_CONFIG=$pg_config "$ITERJOB_ROOT/test/run-all.sh" "$@" | tee "/tmp/iterjob-run-all.$$.log" || true
		counts=$(tail -1 "/tmp/iterjob-run-all.$$.log")
		failed_suites+=$({ grep -o "^== [a-z]* FAILED on PostgreSQL [0-9]*" "/tmp/iterjob-run-all.$$.log" || true; } |
			sed 's/^== \([a-z]*\) FAILED on PostgreSQL \([0-9]*\)/ \1 (\2)/' | tr -d '\n')
		rm -f "/tmp/iterjob-run-all.$$.log"
		if [[ $counts =~ ^suites:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
			passed=$((passed + BASH_REMATCH[1]))
			failed=$((failed + BASH_REMATCH[2]))
		else
			failed=$((failed + nsuites))
		fi
	done
	echo "== every major: ${ITERJOB_PG_MAJORS:-15 18}"
	[ -z "$failed_suites" ] || echo "== failed:$failed_suites"
	echo "suites: $passed passed, $failed failed$([ $skipped = 0 ] || echo ", $skipped skipped")"
	[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
	exit
fi

suites=${*:-regress pgtap isolation tap}
setup_iterjob
passed=0 failed=0 skipped=0

for suite in $suites; do
	status=0
	case "$suite" in
	regress)
		cluster_start
		echo "== pg_regress"
		# pg_regress writes results/ next to the inputs
		if ! make -C "$ITERJOB_ROOT" -s installcheck PG_CONFIG="$PG_CONFIG" \
			PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres; then
			cat "$ITERJOB_ROOT/regression.diffs" 2>/dev/null | head -200
			status=1
		fi
		cluster_stop
		;;
	pgtap)
		cluster_start "iterjob.max_workers = 4"
		echo "== pgTAP"
		# shellcheck disable=SC2086
		prove -f --timer -e "$ITERJOB_ROOT/test/pgtap-exec.sh" \
			"$ITERJOB_ROOT"/test/pgtap/${ITERJOB_PGTAP_FILES:-*}.sql || status=1
		cluster_stop
		;;
	isolation)
		cluster_start "iterjob.max_workers = 4"
		echo "== isolation"
		isodir=$(mktemp -d /tmp/iterjob-isolation.XXXXXX)
		# shellcheck disable=SC2086
		specs=$(cd "$ITERJOB_ROOT/test/isolation/specs" && ls ${ITERJOB_ISOLATION_SPECS:-*}.spec | sed 's/\.spec$//')
		# pg_isolation_regress (re)creates the database isolation_regression,
		# with iterjob, on the throwaway cluster
		# shellcheck disable=SC2086
		if ! $PGXS_DIR/src/test/isolation/pg_isolation_regress \
			--host="$PGHOST" --port="$PGPORT" --user=postgres \
			--inputdir="$ITERJOB_ROOT/test/isolation" --outputdir="$isodir" \
			--load-extension=iterjob $specs; then
			cat "$isodir/regression.diffs" 2>/dev/null | head -300
			echo "== the server log's last lines"
			tail -60 "$CLUSTER_DIR/server.log" 2>/dev/null
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
		if ! compgen -G "$ITERJOB_ROOT/test/t/*.pl" >/dev/null; then
			status=skip
		else
			# the Citus suite (017_citus) needs Citus in this installation:
			# built once from ../shared/vendor where it can be (15 to 18)
			citus_rc=0
			PG_CONFIG=$PG_CONFIG "$ITERJOB_ROOT/test/build-citus.sh" >/dev/null || citus_rc=$?
			case $citus_rc in
			0) echo "== Citus: $($PG_CONFIG --pkglibdir)/citus.so" ;;
			3)
				echo "== Citus: not available for PostgreSQL $PG_MAJOR here; 017_citus skips"
				[ "${ITERJOB_REQUIRE_MAJORS:-0}" != 1 ] || status=1
				;;
			*)
				echo "== Citus: the build FAILED; 017_citus skips"
				status=1
				;;
			esac
			echo "== TAP (crash, kill, restart)"
			tapdir=$(mktemp -d /tmp/iterjob-tap.XXXXXX)
			chmod 755 "$tapdir"
			# the postgres user runs the scripts: give it a copy it can read
			# wherever this checkout lives
			cp -r "$ITERJOB_ROOT/test/t" "$tapdir/t"
			# the tests that run README.md's recipes read them with the extractor
			cp "$ITERJOB_ROOT/README.md" "$tapdir/README.md"
			cp "$ITERJOB_ROOT/test/readme-recipe.sh" "$tapdir/t/readme-recipe.sh"
			mkdir -p "$tapdir/tmp_check/log"
			as_root chown -R postgres: "$tapdir"
			# PostgreSQL::Test::Cluster makes and stops its own clusters.  PG 15's
			# PostgreSQL::Test::Utils puts its tmp_check (node data and logs under
			# tmp_check/log) in $TESTDIR, or else in the current directory, which
			# the postgres user cannot write; 16 and later read TESTDATADIR and
			# TESTLOGDIR instead and create only their last level, so both are
			# made here, the same tmp_check/log as 15's.  The test scripts run
			# from $tapdir for the same reason.
			tap_ok=1
			(cd "$tapdir" && as_postgres env PATH="$PGBIN:$PATH" \
				PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
				TESTDIR="$tapdir" TESTDATADIR="$tapdir/tmp_check" \
				TESTLOGDIR="$tapdir/tmp_check/log" \
				prove -f --timer -I "$PGXS_DIR/src/test/perl" \
				-I "$tapdir/t" "$tapdir"/t/${ITERJOB_TAP_FILES:-*}.pl) || tap_ok=0
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
	case $status in
	0) passed=$((passed + 1)) ;;
	skip) skipped=$((skipped + 1)) ;;
	*)
		failed=$((failed + 1))
		echo "== $suite FAILED on PostgreSQL $PG_MAJOR"
		;;
	esac
done

echo "== PostgreSQL $PG_MAJOR ($PG_CONFIG): $suites"
echo "suites: $passed passed, $failed failed$([ $skipped = 0 ] || echo ", $skipped skipped")"
[ "$failed" = 0 ]
