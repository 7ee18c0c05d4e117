# test/lib.sh: shared by iterjob's demo, test and benchmark scripts (sourced).
#
# setup_iterjob chooses the PostgreSQL installation (PG_CONFIG, or else the
# major ITERJOB_PG_MAJOR, default 15: Debian 12's packages, installed when
# missing: the server, its headers, pgTAP, and pg_cron for
# test/t/014_pg_cron.pl; 18: the plain build from ../shared/vendor by
# test/build-pg18.sh, the one the benchmarks measure), builds iterjob
# against it with -Werror and installs it there.  Every path to the
# server's programs and test tools is derived from PG_CONFIG.  cluster_start
# makes a throwaway cluster owned by the postgres user in a temp dir, on a
# private port and socket directory, with iterjob preloaded; it is stopped
# and removed on exit, also when a test fails.

set -euo pipefail

ITERJOB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# the major used when neither PG_CONFIG nor ITERJOB_PG_MAJOR says
ITERJOB_DEFAULT_MAJOR=15

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

# ensure_packages PACKAGE...: installs the Debian packages that are missing
ensure_packages() {
	local missing="" p
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing" >&2
		as_root apt-get update -qq >&2
		# shellcheck disable=SC2086
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	fi
}

# apt_has PACKAGE: whether Debian's package lists offer that package
apt_has() {
	local policy
	policy=$(apt-cache policy "$1" 2>/dev/null)
	[[ $policy == *"Candidate: "[0-9]* ]]
}

# pg_config_for MAJOR [FLAVOUR]: prints the pg_config of a PostgreSQL
# installation of that major, installing or building it first when needed.
# 18: the build of ../shared/vendor's tarball (test/build-pg18.sh; FLAVOUR
# "cassert" is its assertion-enabled build, the test suites', the default
# "plain" the benchmarks'), or else an installed /usr/lib/postgresql/18;
# other majors: Debian's packages (FLAVOUR does not apply).  Returns 3 when
# there is no way to have that major here (no tarball, no package), 1 when
# installing or building it failed.
pg_config_for() {
	local major=$1 flavour=${2:-plain} rc=0
	if [ "$major" = 18 ]; then
		ITERJOB_QUIET_MISSING=1 "$ITERJOB_ROOT/test/build-pg18.sh" "$flavour" | tail -1 || rc=$?
		[ "$rc" = 3 ] || return "$rc"
		if [ -x /usr/lib/postgresql/18/bin/pg_config ]; then
			echo /usr/lib/postgresql/18/bin/pg_config
			return 0
		fi
		return 3
	fi
	if ! dpkg -s "postgresql-server-dev-$major" >/dev/null 2>&1; then
		apt_has "postgresql-server-dev-$major" || as_root apt-get update -qq >&2
		apt_has "postgresql-server-dev-$major" || return 3
	fi
	ensure_packages "postgresql-$major" "postgresql-server-dev-$major" "postgresql-$major-pgtap" \
		"postgresql-$major-cron" || return 1
	echo "/usr/lib/postgresql/$major/bin/pg_config"
}

# assertions PG_CONFIG: "assertions enabled" when that installation was
# configured with --enable-cassert, else "no assertions"
assertions() {
	if "$1" --configure | grep -q -- "--enable-cassert"; then
		echo "assertions enabled"
	else
		echo "no assertions"
	fi
}

setup_iterjob() {
	ensure_packages make gcc libipc-run-perl
	if [ -z "${PG_CONFIG:-}" ]; then
		PG_CONFIG=$(pg_config_for "${ITERJOB_PG_MAJOR:-$ITERJOB_DEFAULT_MAJOR}") || {
			echo "no PostgreSQL ${ITERJOB_PG_MAJOR:-$ITERJOB_DEFAULT_MAJOR} to test with" >&2
			exit 1
		}
	fi
	case "$PG_CONFIG" in
	# Debian's layout: the server, its headers and pgTAP come in packages
	/usr/lib/postgresql/*/bin/pg_config)
		local major=${PG_CONFIG#/usr/lib/postgresql/}
		major=${major%%/*}
		ensure_packages "postgresql-$major" "postgresql-server-dev-$major" "postgresql-$major-pgtap" \
			"postgresql-$major-cron"
		;;
	esac
	# the servers run as postgres (Debian's packages create that user)
	id postgres >/dev/null 2>&1 ||
		as_root useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
	PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	PGBIN=$("$PG_CONFIG" --bindir)
	# lib/pgxs: pg_regress, pg_isolation_regress and the TAP test modules
	PGXS_DIR=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)
	export PG_CONFIG PG_MAJOR PGBIN PGXS_DIR
	export PATH="$PGBIN:$PATH"
	if [ -n "${ITERJOB_SKIP_BUILD:-}" ]; then return; fi
	# (objects built against another installation are rebuilt: see Makefile)
	echo "== building iterjob for $("$PG_CONFIG" --version) (-Werror)"
	make -C "$ITERJOB_ROOT" -s PG_CONFIG="$PG_CONFIG" EXTRA_CFLAGS=-Werror >/dev/null
	# only the scripts this tree ships: none left from an earlier install
	# (a full script of an older version) may stand in for the upgrade chain
	as_root rm -f "$("$PG_CONFIG" --sharedir)"/extension/iterjob--*.sql
	as_root make -C "$ITERJOB_ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

cluster_stop() {
	if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR" ]; then
		# under valgrind, a fast shutdown lets every process end and write
		# its report
		as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -t 300 \
			-m "$([ -n "${ITERJOB_VALGRIND:-}" ] && echo fast || echo immediate)" stop >/dev/null 2>&1 || true
		if [ "${KEEP_CLUSTER_LOG:-}" != "" ]; then
			cp "$CLUSTER_DIR/server.log" "$KEEP_CLUSTER_LOG" 2>/dev/null || true
		fi
		as_root rm -rf "$CLUSTER_DIR"
	fi
	CLUSTER_DIR=""
}

# With ITERJOB_VALGRIND=<directory> (test/valgrind.sh), the postmaster and
# every process it forks run under valgrind with PostgreSQL's suppressions
# ($ITERJOB_VALGRIND_SUPP), each process's report in <directory>/<pid>.log.
valgrind_start() {
	local tries
	as_postgres sh -c "cd '$CLUSTER_DIR' && exec valgrind --quiet --trace-children=yes \
		--suppressions='$ITERJOB_VALGRIND_SUPP' --leak-check=no --num-callers=40 \
		--read-inline-info=yes --fullpath-after= \
		--error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
		--log-file='$ITERJOB_VALGRIND/%p.log' '$PGBIN/postgres' -D '$CLUSTER_DIR/data' \
		>>'$CLUSTER_DIR/server.log' 2>&1 &"
	for tries in $(seq 600 -1 1); do
		"$PGBIN/pg_isready" -q -h "$CLUSTER_DIR" -p "$PGPORT" && return 0
		[ "$tries" = 1 ] || sleep 1
	done
	echo "the server did not start under valgrind in 600 s; its log:" >&2
	tail -20 "$CLUSTER_DIR/server.log" >&2
	return 1
}

# cluster_start [extra postgresql.conf lines...]
cluster_start() {
	CLUSTER_DIR=$(mktemp -d /tmp/iterjob-cluster.XXXXXX)
	trap cluster_stop EXIT
	trap 'exit 130' INT TERM
	chmod 755 "$CLUSTER_DIR"
	as_root chown postgres: "$CLUSTER_DIR"
	PGPORT=${PGPORT:-$((20000 + RANDOM % 20000))}
	as_postgres "$PGBIN/initdb" -D "$CLUSTER_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	{
		echo "port = $PGPORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$CLUSTER_DIR'"
		echo "shared_preload_libraries = 'iterjob'"
		echo "max_worker_processes = 16"
		echo "fsync = off"
		echo "log_line_prefix = '%m [%p] %b '"
		for line in "$@"; do echo "$line"; done
	} | as_postgres tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null
	if [ -n "${ITERJOB_VALGRIND:-}" ]; then
		valgrind_start
	else
		as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	fi
	export PGHOST="$CLUSTER_DIR" PGPORT PGUSER=postgres PGDATABASE=postgres
	echo "== throwaway cluster in $CLUSTER_DIR, port $PGPORT"
}

# revision_libraries REV: beside this tree's installed library (after.so),
# REV's, built from `git archive` (before.so), both in LIB_DIR, for
# library_swap.  REV must be of this tree's extension version (the two share
# a database).  At exit the cluster is stopped and the tree's library put
# back.  Call after cluster_start.
revision_libraries() {
	local rev=$1 rev_version tree_version
	rev_version=$(git -C "$ITERJOB_ROOT" show "$rev:iterjob.control" | sed -n "s/^default_version = '\(.*\)'/\1/p")
	tree_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ITERJOB_ROOT/iterjob.control")
	if [ "$rev_version" != "$tree_version" ]; then
		echo "$rev is iterjob $rev_version, this tree $tree_version: only libraries of the same version can share a database" >&2
		exit 1
	fi
	LIB_DIR=$(mktemp -d /tmp/iterjob-libs.XXXXXX)
	PKGLIB=$("$PG_CONFIG" --pkglibdir)
	cp "$PKGLIB/iterjob.so" "$LIB_DIR/after.so"
	mkdir "$LIB_DIR/before"
	git -C "$ITERJOB_ROOT" archive "$rev" | tar -x -C "$LIB_DIR/before"
	echo "== building $rev's library"
	make -C "$LIB_DIR/before" -s PG_CONFIG="$PG_CONFIG" EXTRA_CFLAGS=-Werror iterjob.so >/dev/null
	cp "$LIB_DIR/before/iterjob.so" "$LIB_DIR/before.so"
	trap restore_tree_library EXIT
}

restore_tree_library() {
	cluster_stop
	as_root install -m 755 "$LIB_DIR/after.so" "$PKGLIB/iterjob.so"
	rm -rf "$LIB_DIR"
}

# library_swap before|after: stop the cluster and install that library (a
# running server maps the file); the caller starts the cluster again
library_swap() {
	as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
	as_root install -m 755 "$LIB_DIR/$1.so" "$PKGLIB/iterjob.so"
}

psql_q() {
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}
