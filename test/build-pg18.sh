#!/usr/bin/env bash
# test/build-pg18.sh: builds PostgreSQL 18.6 (server, contrib, the TAP test
# modules) and pgTAP 1.3.4 from the release tarballs in ../shared/vendor, once,
# into a cache directory outside the tree, and prints the installation's
# pg_config path on its last line of stdout.  Reused when already built: a
# stamp written at the very end marks a complete build, so an interrupted one
# is redone from scratch.  Two flavours, each in its own prefix with its own
# stamp: the plain build (for the benchmarks) and one with assertions
# (--enable-cassert --enable-debug, for the test suites: PostgreSQL's own
# checks of memory contexts, locks, SPI and buffers then run in iterjob's
# code, and a failed one aborts the process with a TRAP line in the log).
#
#   test/build-pg18.sh            the plain build, when needed; print .../bin/pg_config
#   test/build-pg18.sh cassert    the assertion-enabled build (postgresql-18.6-cassert)
#
#   ITERJOB_CACHE   the cache directory (default /var/cache/iterjob-test)
#   ITERJOB_VENDOR  where the tarballs and SHA256SUMS are
#                   (default: shared/vendor beside the repository)
#
# Exit status: 0 built or reused; 3 the tarballs are not there (nothing done;
# silently with ITERJOB_QUIET_MISSING=1, the caller says so); anything else:
# the build failed (its logs are in $ITERJOB_CACHE/logs).
#
# The build: ./configure --prefix=$ITERJOB_CACHE/postgresql-18.6 --with-icu
# --without-readline --enable-tap-tests (cassert: into
# $ITERJOB_CACHE/postgresql-18.6-cassert, adding --enable-cassert
# --enable-debug) && make -j2 world-bin && make install-world-bin (about 4
# minutes on 2 cores), then pgTAP's make install;
# the Debian packages it needs (bison, flex, libicu-dev, libipc-run-perl, ...)
# are installed when missing.

# the cache is shared by every user of the machine: built as root
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
source "$(dirname "$0")/lib.sh"

PG_VERSION=18.6
PGTAP_VERSION=1.3.4
PG_TARBALL=postgresql-18_$PG_VERSION.orig.tar.bz2
PGTAP_TARBALL=pgtap_$PGTAP_VERSION.orig.tar.gz
# with ICU, as Debian builds PostgreSQL: the pgTAP key tests iterate text
# keys under an ICU collation ("und-x-icu")
CONFIGURE_FLAGS="--with-icu --without-readline --enable-tap-tests"
CACHE=${ITERJOB_CACHE:-/var/cache/iterjob-test}
VENDOR=${ITERJOB_VENDOR:-$ITERJOB_ROOT/../shared/vendor}
PREFIX=$CACHE/postgresql-$PG_VERSION
case "${1:-plain}" in
plain) ;;
cassert)
	CONFIGURE_FLAGS="$CONFIGURE_FLAGS --enable-cassert --enable-debug"
	PREFIX=$PREFIX-cassert
	;;
*)
	echo "usage: $0 [plain|cassert]" >&2
	exit 2
	;;
esac
STAMP=$PREFIX/.iterjob-build-complete
# each flavour's sources and logs apart from the other's
BUILD=$CACHE/src-$(basename "$PREFIX")
LOGS=$CACHE/logs/$(basename "$PREFIX")

say() { echo "$@" >&2; }

for f in "$PG_TARBALL" "$PGTAP_TARBALL"; do
	if [ ! -r "$VENDOR/$f" ]; then
		[ -n "${ITERJOB_QUIET_MISSING:-}" ] || say "build-pg18: $VENDOR/$f not found"
		exit 3
	fi
done
VENDOR=$(cd "$VENDOR" && pwd)

# what the stamp must say for the installation to be reused
stamp_text() {
	echo "postgresql $PG_VERSION $(grep " $PG_TARBALL\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	echo "pgtap $PGTAP_VERSION $(grep " $PGTAP_TARBALL\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	echo "configure --prefix=$PREFIX $CONFIGURE_FLAGS"
}

mkdir -p "$CACHE"
chmod 755 "$CACHE"
# one build at a time (two runners started side by side wait for each other)
exec 9>>"$CACHE/.build.lock"
flock 9

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ]; then
	echo "$PREFIX/bin/pg_config"
	exit 0
fi

# the tarballs must be the published ones
(cd "$VENDOR" && grep -E " ($PG_TARBALL|$PGTAP_TARBALL)\$" SHA256SUMS | sha256sum --quiet -c -) >&2 || {
	say "build-pg18: checksum mismatch in $VENDOR (see SHA256SUMS)"
	exit 1
}

ensure_packages bison flex gcc make perl libipc-run-perl zlib1g-dev libicu-dev pkg-config bzip2 >&2

say "== building PostgreSQL $PG_VERSION and pgTAP $PGTAP_VERSION into $PREFIX (a few minutes, once; logs in $LOGS)"
start=$(date +%s)
umask 022
rm -rf "$PREFIX" "$BUILD"
mkdir -p "$BUILD" "$LOGS"

# step NAME COMMAND...: runs a build step with its output in logs/NAME.log,
# shows the log's end when it fails
step() {
	local name=$1 log="$LOGS/$1.log"
	shift
	if ! "$@" >"$log" 2>&1; then
		say "build-pg18: step '$name' failed; the end of $log:"
		tail -40 "$log" >&2
		exit 1
	fi
}

step extract tar -xjf "$VENDOR/$PG_TARBALL" -C "$BUILD"
step extract-pgtap tar -xzf "$VENDOR/$PGTAP_TARBALL" -C "$BUILD"
cd "$BUILD/postgresql-$PG_VERSION" || exit 1
# shellcheck disable=SC2086
step configure ./configure --prefix="$PREFIX" $CONFIGURE_FLAGS
step make make -j2 world-bin
step install make install-world-bin
cd "$BUILD/pgtap-$PGTAP_VERSION" || exit 1
step pgtap make PG_CONFIG="$PREFIX/bin/pg_config"
step pgtap-install make PG_CONFIG="$PREFIX/bin/pg_config" install

# servers and TAP scripts run as the postgres user
chmod -R a+rX "$PREFIX"
rm -rf "$BUILD"
stamp_text >"$STAMP"
say "== PostgreSQL $PG_VERSION and pgTAP $PGTAP_VERSION built in $(($(date +%s) - start)) s"
echo "$PREFIX/bin/pg_config"
