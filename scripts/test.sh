#!/bin/sh
# Build phi3 and run every test, from a fresh Debian 12 machine:
#   1. install the build and test dependencies (scripts/install-deps.sh)
#   2. build the extension and tools; check that phi3.so exports only its
#      SQL entry points (make check-exports); engine unit tests and the
#      forward pass against the numpy reference (make engine-check, no
#      server); the engine tests again under valgrind (make
#      engine-valgrind) and built with ASan + UBSan (make engine-asan);
#      every libFuzzer harness for a few seconds on its seeds (make
#      fuzz-smoke)
#   3. install the extension and the test hooks (phi3_test_hooks.so, which
#      make install never installs; a staged make install is checked to
#      ship no test hook); start a throwaway PostgreSQL cluster; run the
#      pg_regress suite on tiny generated models (make installcheck); then
#      again with the glue built with PostgreSQL's assertions
#      (PHI3_ASSERT=1: USE_ASSERT_CHECKING), and reinstall the normal build
#   4. TAP tests: cancel, statement_timeout, concurrent sessions,
#      shared_preload_libraries (make prove-check), each on its own cluster;
#      Citus is built and installed first for the multi-node test
#      (scripts/install-citus.sh; skipped when already installed)
# Everything temporary lives in one directory under /tmp, removed at exit.
# Each stage prints how long it took.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

# "== name" for a stage, and the time the previous one took
stage_name=""
stage_start=$(date +%s)
stage() {
	now=$(date +%s)
	[ -z "$stage_name" ] || echo "   ($stage_name: $((now - stage_start)) s)"
	stage_name=$1
	stage_start=$now
	[ -z "$1" ] || echo "== $1"
}

stage dependencies
scripts/install-deps.sh

stage build
make -s -j2 PG_CONFIG="$PG_CONFIG"

stage "what phi3.so exports"
make -s check-exports PG_CONFIG="$PG_CONFIG"

stage "engine tests"
make -s engine-check PG_CONFIG="$PG_CONFIG"

stage "engine tests under valgrind"
make -s engine-valgrind PG_CONFIG="$PG_CONFIG"

stage "engine tests built with ASan + UBSan"
make -s -j2 engine-asan PG_CONFIG="$PG_CONFIG"

stage "libFuzzer harnesses, a short run of each on its seeds (make fuzz-smoke)"
make -s -j2 fuzz-smoke FUZZ_SECONDS=5 PG_CONFIG="$PG_CONFIG"

stage install
$SUDO make -s install PG_CONFIG="$PG_CONFIG"
$SUDO make -s install-test-hooks PG_CONFIG="$PG_CONFIG"

WORK=$(mktemp -d /tmp/phi3-test.XXXXXX)
chmod 755 "$WORK"
PORT=${PHI3_TEST_PORT:-54329}
cleanup() {
	scripts/pgcluster.sh stop "$WORK/cluster" || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

stage "make install ships no test hook"
make -s install DESTDIR="$WORK/stage" PG_CONFIG="$PG_CONFIG" >/dev/null
STAGED_LIB="$WORK/stage$("$PG_CONFIG" --pkglibdir)"
if [ ! -f "$STAGED_LIB/phi3.so" ] || [ -e "$STAGED_LIB/phi3_test_hooks.so" ] ||
	nm -D --defined-only "$STAGED_LIB/phi3.so" | grep -q extract_answer; then
	echo "make install must install phi3.so without test hooks:"; ls -l "$STAGED_LIB"
	nm -D --defined-only "$STAGED_LIB/phi3.so" | grep extract_answer
	exit 1
fi

stage "test models"
export PHI3_TEST_MODEL_DIR="$WORK/models"
make -s test-models PG_CONFIG="$PG_CONFIG" PHI3_TEST_MODEL_DIR="$PHI3_TEST_MODEL_DIR"
chmod -R a+rX "$PHI3_TEST_MODEL_DIR"

# pg_regress on the running cluster with the phi3 installed now
regress() {
	if ! make -s installcheck PG_CONFIG="$PG_CONFIG" "$@"; then
		[ -f build/regress/regression.diffs ] && cat build/regress/regression.diffs
		echo "pg_regress failed; server log:"; tail -n 50 "$WORK/cluster/server.log"
		exit 1
	fi
}

stage "SQL tests (pg_regress)"
scripts/pgcluster.sh start "$WORK/cluster" "$PORT"
export PGHOST="$WORK/cluster/socket" PGPORT="$PORT" PGUSER=postgres
regress

# The glue with PostgreSQL's assertions (the Asserts in its headers and
# ours), on the same server: each pg_regress database starts new backends,
# which load the newly installed phi3.so.  A failed Assert aborts the
# backend, and the test fails.  Then the normal build is rebuilt and
# reinstalled: the TAP tests, and whatever runs after this script, use it.
stage "SQL tests again, glue built with assertions (PHI3_ASSERT=1)"
make -s -j2 PHI3_ASSERT=1 PG_CONFIG="$PG_CONFIG"
make -s check-exports PHI3_ASSERT=1 PG_CONFIG="$PG_CONFIG"
$SUDO make -s install PHI3_ASSERT=1 PG_CONFIG="$PG_CONFIG"
regress PHI3_ASSERT=1
scripts/pgcluster.sh stop "$WORK/cluster"
unset PGHOST PGPORT PGUSER
make -s -j2 PG_CONFIG="$PG_CONFIG"
$SUDO make -s install PG_CONFIG="$PG_CONFIG"

# Citus for t/011_citus.pl (a coordinator and two workers): built from
# vendor/citus unless this PostgreSQL already has it
stage "Citus (scripts/install-citus.sh)"
PG_CONFIG="$PG_CONFIG" scripts/install-citus.sh

if [ -d t ] && ls t/*.pl >/dev/null 2>&1; then
	stage "TAP tests"
	make -s prove-check PG_CONFIG="$PG_CONFIG" PHI3_TAP_WORK="$WORK/tap"
fi

stage ""
echo "== all tests passed"
