# test/lib.sh: shared by iterjob's demo, test and benchmark scripts (sourced).
#
# setup_iterjob installs the Debian packages iterjob needs (when missing),
# builds it with -Werror and installs it.  cluster_start makes a throwaway
# cluster owned by the postgres user in a temp dir, on a private port and
# socket directory, with iterjob preloaded; it is stopped and removed on
# exit, also when a test fails.

set -euo pipefail

ITERJOB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libipc-run-perl make gcc"

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

setup_iterjob() {
	local missing=""
	for p in $PACKAGES; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	fi
	PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	export PG_CONFIG
	PGBIN=$($PG_CONFIG --bindir)
	export PATH="$PGBIN:$PATH"
	if [ -n "${ITERJOB_SKIP_BUILD:-}" ]; then return; fi
	echo "== building iterjob (-Werror)"
	make -C "$ITERJOB_ROOT" -s PG_CONFIG=$PG_CONFIG EXTRA_CFLAGS=-Werror >/dev/null
	as_root make -C "$ITERJOB_ROOT" -s PG_CONFIG=$PG_CONFIG install >/dev/null
}

cluster_stop() {
	if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true
		if [ "${KEEP_CLUSTER_LOG:-}" != "" ]; then
			cp "$CLUSTER_DIR/server.log" "$KEEP_CLUSTER_LOG" 2>/dev/null || true
		fi
		as_root rm -rf "$CLUSTER_DIR"
	fi
	CLUSTER_DIR=""
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
	as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	export PGHOST="$CLUSTER_DIR" PGPORT PGUSER=postgres PGDATABASE=postgres
	echo "== throwaway cluster in $CLUSTER_DIR, port $PGPORT"
}

psql_q() {
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}
