#!/usr/bin/env bash
# test/build-citus.sh: builds Citus 13.2.2 from ../shared/vendor (with the
# patch beside it) and installs it into the PostgreSQL installation of
# PG_CONFIG (default: Debian's PostgreSQL 15), once.  A stamp in that
# installation's lib directory marks a complete build; a build interrupted
# before it is redone.  Citus is only for the Citus TAP suite
# (test/t/017_citus.pl); iterjob neither needs nor links it.
#
#   test/build-citus.sh           build when needed; prints the citus.so path
#
#   PG_CONFIG       the PostgreSQL installation (default /usr/bin/pg_config)
#   ITERJOB_VENDOR  where the tarball, the patch and SHA256SUMS are
#                   (default: shared/vendor beside the repository)
#
# Exit status: 0 built or reused; 3 the tarball is not there, or this
# PostgreSQL is one Citus 13.2.2 does not support (15-17); anything else:
# the build failed (the end of its log is shown).

# PostgreSQL's installation is written: as root
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
source "$(dirname "$0")/lib.sh"

CITUS_VERSION=13.2.2
TARBALL=citus-$CITUS_VERSION.tar.gz
PATCH=citus-$CITUS_VERSION-pg15-have_createdb_privilege.patch
VENDOR=${ITERJOB_VENDOR:-$ITERJOB_ROOT/../shared/vendor}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}

say() { echo "$@" >&2; }

for f in "$TARBALL" "$PATCH"; do
	if [ ! -r "$VENDOR/$f" ]; then
		say "build-citus: $VENDOR/$f not found"
		exit 3
	fi
done
VENDOR=$(cd "$VENDOR" && pwd)
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$major" -lt 15 ] || [ "$major" -gt 17 ]; then
	say "build-citus: Citus $CITUS_VERSION supports PostgreSQL 15 to 17, not $major"
	exit 3
fi

LIBDIR=$("$PG_CONFIG" --pkglibdir)
STAMP=$LIBDIR/.iterjob-citus-build-complete
stamp_text() {
	echo "citus $CITUS_VERSION $(grep " $TARBALL\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	echo "patch $(grep " $PATCH\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	echo "postgresql $("$PG_CONFIG" --version)"
}

exec 9>>"/tmp/.iterjob-citus-build.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ] && [ -f "$LIBDIR/citus.so" ]; then
	echo "$LIBDIR/citus.so"
	exit 0
fi

(cd "$VENDOR" && grep -E " ($TARBALL|$PATCH)\$" SHA256SUMS | sha256sum --quiet -c -) >&2 || {
	say "build-citus: checksum mismatch in $VENDOR (see SHA256SUMS)"
	exit 1
}

ensure_packages gcc make patch liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev >&2

say "== building Citus $CITUS_VERSION for $("$PG_CONFIG" --version) (about two minutes, once)"
start=$(date +%s)
work=$(mktemp -d /tmp/iterjob-citus-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
log=$work/build.log
umask 022
if ! {
	tar -xzf "$VENDOR/$TARBALL" -C "$work" &&
		cd "$work/citus-$CITUS_VERSION" &&
		patch -p1 <"$VENDOR/$PATCH" &&
		./configure PG_CONFIG="$PG_CONFIG" &&
		make -j2 &&
		make install
} >"$log" 2>&1; then
	say "build-citus: the build failed; the end of its log:"
	tail -40 "$log" >&2
	exit 1
fi
stamp_text >"$STAMP"
say "== Citus $CITUS_VERSION built and installed in $(($(date +%s) - start)) s"
echo "$LIBDIR/citus.so"
