#!/bin/sh
# Build phi3 and run every test, from a fresh Debian 12 machine:
#   1. install the build and test dependencies (scripts/install-deps.sh)
#   2. build the extension and tools; check that phi3.so exports only its
#      SQL entry points (make check-exports); engine unit tests and the
#      forward pass against the numpy reference (make engine-check, no
#      server), then the engine tests again under valgrind (make
#      engine-valgrind)
#   3. install the extension; start a throwaway PostgreSQL cluster; run the
#      pg_regress suite on tiny generated models (make installcheck)
#   4. TAP tests: cancel, statement_timeout, concurrent sessions,
#      shared_preload_libraries (make prove-check), each on its own cluster
# Everything temporary lives in one directory under /tmp, removed at exit.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

echo "== dependencies"
scripts/install-deps.sh

echo "== build"
make -s -j2 PG_CONFIG="$PG_CONFIG"

echo "== what phi3.so exports"
make -s check-exports PG_CONFIG="$PG_CONFIG"

echo "== engine tests"
make -s engine-check PG_CONFIG="$PG_CONFIG"

echo "== engine tests under valgrind"
make -s engine-valgrind PG_CONFIG="$PG_CONFIG"

echo "== install"
$SUDO make -s install PG_CONFIG="$PG_CONFIG"

WORK=$(mktemp -d /tmp/phi3-test.XXXXXX)
chmod 755 "$WORK"
PORT=${PHI3_TEST_PORT:-54329}
cleanup() {
	scripts/pgcluster.sh stop "$WORK/cluster" || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== test models"
export PHI3_TEST_MODEL_DIR="$WORK/models"
make -s test-models PG_CONFIG="$PG_CONFIG" PHI3_TEST_MODEL_DIR="$PHI3_TEST_MODEL_DIR"
chmod -R a+rX "$PHI3_TEST_MODEL_DIR"

echo "== SQL tests (pg_regress)"
scripts/pgcluster.sh start "$WORK/cluster" "$PORT"
export PGHOST="$WORK/cluster/socket" PGPORT="$PORT" PGUSER=postgres
if ! make -s installcheck PG_CONFIG="$PG_CONFIG"; then
	for f in build/regress/regression.diffs regression.diffs; do
		[ -f "$f" ] && cat "$f"
	done
	echo "pg_regress failed; server log:"; tail -n 50 "$WORK/cluster/server.log"
	exit 1
fi
scripts/pgcluster.sh stop "$WORK/cluster"
unset PGHOST PGPORT PGUSER

if [ -d t ] && ls t/*.pl >/dev/null 2>&1; then
	echo "== TAP tests"
	make -s prove-check PG_CONFIG="$PG_CONFIG" PHI3_TAP_WORK="$WORK/tap"
fi

echo "== all tests passed"
