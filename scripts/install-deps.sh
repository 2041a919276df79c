#!/bin/sh
# Install what phi3 needs to build and test on Debian 12 (bookworm).
# Idempotent: does nothing when everything is already installed.
set -eu

PACKAGES="build-essential git ca-certificates
postgresql-15 postgresql-server-dev-15 postgresql-client-15
python3 python3-numpy
libipc-run-perl
valgrind
clang libclang-rt-14-dev"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# (Debian's postgresql-15 package may create and start a "main" cluster on
# port 5432; harmless: the tests use their own socket-only clusters.)
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
