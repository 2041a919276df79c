#!/bin/sh
# Install Citus into the PostgreSQL of $PG_CONFIG, for the multi-node TAP
# test (t/011_citus.pl) and the "Scale out on Citus" recipe of the README.
#
#   scripts/install-citus.sh            (PG_CONFIG, CITUS_VENDOR, CITUS_BUILD: below)
#
# Citus is not packaged by Debian 12; its source (13.2.2, the last release
# line for PostgreSQL 15) and a patch for Debian's 15.20 headers are kept
# in vendor/citus (CITUS_VENDOR; copied from the shared vendor folder).
#   - Already installed in that PostgreSQL (citus.so and citus.control,
#     from a package or an earlier run): nothing to do.
#   - Otherwise the build dependencies are installed (apt, as for
#     install-deps.sh), the source is unpacked and patched into CITUS_BUILD
#     (default build/citus, kept between runs: a second run with the same
#     PG_CONFIG only runs make install), built with make -j2 and installed.
# The build skips LLVM bitcode (with_llvm=no: JIT inlining of Citus's own
# functions is of no use here): 73 s on the 2-core development machine,
# against about 2 minutes with the bitcode.  Any failure stops the script
# with a non-zero status and the reason.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CITUS_VENDOR=${CITUS_VENDOR:-$ROOT/vendor/citus}
CITUS_BUILD=${CITUS_BUILD:-$ROOT/build/citus}
CITUS_VERSION=13.2.2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
if [ -f "$pkglibdir/citus.so" ] && [ -f "$sharedir/extension/citus.control" ]; then
	echo "install-citus: Citus (extension version $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/extension/citus.control")) is installed in $pkglibdir"
	exit 0
fi

tarball=$CITUS_VENDOR/citus-$CITUS_VERSION.tar.gz
patchfile=$CITUS_VENDOR/citus-$CITUS_VERSION-pg15.20.patch
for f in "$tarball" "$patchfile"; do
	[ -r "$f" ] || { echo "install-citus: $f is missing (CITUS_VENDOR=$CITUS_VENDOR)" >&2; exit 1; }
done

# build dependencies (Debian's pg_config.h defines HAVE_LIBZSTD and
# ENABLE_GSS, so the zstd and Kerberos headers are needed even when Citus
# is configured without them)
PACKAGES="autoconf flex libcurl4-gnutls-dev libicu-dev libkrb5-dev krb5-multidev liblz4-dev
libpam0g-dev libreadline-dev libselinux1-dev libssl-dev libxslt1-dev libzstd-dev uuid-dev"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-citus: installing build dependencies:$missing"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
fi

src=$CITUS_BUILD/citus-$CITUS_VERSION
# a build made for another PostgreSQL is started again
if [ -f "$src/.pg_config" ] && [ "$(cat "$src/.pg_config")" != "$PG_CONFIG" ]; then
	rm -rf "$src"
fi
if [ ! -f "$src/src/backend/distributed/citus.so" ]; then
	echo "install-citus: building Citus $CITUS_VERSION in $src (1-2 minutes)"
	rm -rf "$src"
	mkdir -p "$CITUS_BUILD"
	tar xzf "$tarball" -C "$CITUS_BUILD"
	(cd "$src" && patch -s -p1 <"$patchfile")
	echo "$PG_CONFIG" >"$src/.pg_config"
	(cd "$src" && ./configure -q PG_CONFIG="$PG_CONFIG" --without-libcurl --without-lz4 --without-zstd \
		>"$CITUS_BUILD/configure.log" 2>&1) ||
		{ tail -n 30 "$CITUS_BUILD/configure.log" >&2; echo "install-citus: configure failed" >&2; exit 1; }
	(cd "$src" && make -s -j2 with_llvm=no >"$CITUS_BUILD/make.log" 2>&1) ||
		{ grep -E 'error|Error' "$CITUS_BUILD/make.log" | tail -n 30 >&2; echo "install-citus: make failed (log: $CITUS_BUILD/make.log)" >&2; exit 1; }
fi
(cd "$src" && $SUDO make -s install with_llvm=no PG_CONFIG="$PG_CONFIG" >"$CITUS_BUILD/install.log" 2>&1) ||
	{ tail -n 30 "$CITUS_BUILD/install.log" >&2; echo "install-citus: make install failed" >&2; exit 1; }
[ -f "$pkglibdir/citus.so" ] || { echo "install-citus: citus.so did not land in $pkglibdir" >&2; exit 1; }
echo "install-citus: Citus $CITUS_VERSION installed in $pkglibdir"
