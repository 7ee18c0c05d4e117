#!/usr/bin/env bash
# test/build-citus.sh: builds Citus from ../shared/vendor and installs it
# into the PostgreSQL installation of PG_CONFIG (default: Debian's
# PostgreSQL 15), once: 13.2.2 (with the patch beside it) for PostgreSQL 15
# to 17, 14.0.1 for 18 (no Citus release supports both).  A stamp in that
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
# PostgreSQL is one neither Citus supports (15-18); anything else:
# the build failed (the end of its log is shown).

# PostgreSQL's installation is written: as root
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
source "$(dirname "$0")/lib.sh"

VENDOR=${ITERJOB_VENDOR:-$ITERJOB_ROOT/../shared/vendor}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}

say() { echo "$@" >&2; }

major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
case $major in
15 | 16 | 17)
	CITUS_VERSION=13.2.2
	PATCH=citus-$CITUS_VERSION-pg15-have_createdb_privilege.patch
	CONFIGURE_FLAGS=()
	;;
18)
	# 14.0.1's configure looks for libcurl only for its anonymous statistics
	CITUS_VERSION=14.0.1
	PATCH=
	CONFIGURE_FLAGS=(--without-libcurl)
	;;
*)
	say "build-citus: no Citus here supports PostgreSQL $major (13.2.2: 15 to 17, 14.0.1: 18)"
	exit 3
	;;
esac
TARBALL=citus-$CITUS_VERSION.tar.gz

for f in "$TARBALL" $PATCH; do
	if [ ! -r "$VENDOR/$f" ]; then
		say "build-citus: $VENDOR/$f not found"
		exit 3
	fi
done
VENDOR=$(cd "$VENDOR" && pwd)

LIBDIR=$("$PG_CONFIG" --pkglibdir)
STAMP=$LIBDIR/.iterjob-citus-build-complete
stamp_text() {
	echo "citus $CITUS_VERSION $(grep " $TARBALL\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	[ -z "$PATCH" ] || echo "patch $(grep " $PATCH\$" "$VENDOR/SHA256SUMS" | cut -d' ' -f1)"
	echo "postgresql $("$PG_CONFIG" --version)"
}

exec 9>>"/tmp/.iterjob-citus-build.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ] && [ -f "$LIBDIR/citus.so" ]; then
	echo "$LIBDIR/citus.so"
	exit 0
fi

sums=$(cd "$VENDOR" && grep -E " ($TARBALL${PATCH:+|$PATCH})\$" SHA256SUMS)
[ "$(echo "$sums" | wc -l)" = $((${PATCH:+1} + 1)) ] &&
	(cd "$VENDOR" && echo "$sums" | sha256sum --quiet -c -) >&2 || {
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
		{ [ -z "$PATCH" ] || patch -p1 <"$VENDOR/$PATCH"; } &&
		./configure PG_CONFIG="$PG_CONFIG" "${CONFIGURE_FLAGS[@]}" &&
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
