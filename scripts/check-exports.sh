#!/bin/sh
# What phi3.so shows the server, and what it contains (make check-exports).
#
#   scripts/check-exports.sh MODULE.so SQL_SCRIPTS... [-- TOOL_ONLY_OBJECTS...]
#
# Fails when
#   - a dynamic symbol is exported that is not an entry point: anything but
#     Pg_magic_func, _PG_init and, for each function of the SQL scripts
#     (AS 'MODULE_PATHNAME', 'sym'), sym and pg_finfo_sym — engine (p3_*)
#     symbols, glue helpers and GUC variables included;
#   - such an entry point is not exported (a function forgotten in
#     exports.txt: CREATE FUNCTION would fail);
#   - the module refers to an engine symbol it does not define (an engine
#     object missing from its link, e.g. a kernel set: a shared library
#     links with undefined symbols, the server would fail to load it);
#   - the module contains code of an object that only tools and tests need
#     (the GGUF writer): any global symbol those objects define, looked up
#     in the full symbol table, hidden ones too.
# The full symbol table must be present (an unstripped build), else the
# last check could not see anything and the script fails rather than pass.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 MODULE.so SQL_SCRIPTS... [-- TOOL_ONLY_OBJECTS...]" >&2
	exit 2
fi
so=$1
shift
sqls=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	sqls="$sqls $1"
	shift
done
[ $# -gt 0 ] && shift
tool_objs="$*"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# Nothing beyond the entry points (the test hooks live in phi3_test_hooks.so)
# and the background workers' entry points (async_worker.c), found by name by the postmaster
allowed_extra="phi3_async_launcher_main phi3_async_worker_main"

# Link symbols named by the SQL scripts.  Every AS 'MODULE_PATHNAME' must
# name its symbol, so that none is overlooked.
n_paths=$(cat $sqls | grep -o "'MODULE_PATHNAME'" | wc -l)
cat $sqls | tr '\n' ' ' | grep -o "'MODULE_PATHNAME'[[:space:]]*,[[:space:]]*'[A-Za-z0-9_]*'" |
	sed "s/.*'\([A-Za-z0-9_]*\)'$/\1/" | sort -u >"$tmp/sql_syms"
n_named=$(cat $sqls | tr '\n' ' ' | grep -o "'MODULE_PATHNAME'[[:space:]]*,[[:space:]]*'[A-Za-z0-9_]*'" | wc -l)
if [ "$n_paths" -eq 0 ] || [ "$n_paths" -ne "$n_named" ]; then
	echo "check-exports: $n_paths AS 'MODULE_PATHNAME' in$sqls, $n_named of them with a link symbol; name every one"
	exit 1
fi

{
	echo Pg_magic_func
	echo _PG_init
	sed 's/^/pg_finfo_/' "$tmp/sql_syms"
	cat "$tmp/sql_syms"
} | sort -u >"$tmp/required"
{
	cat "$tmp/required"
	for s in $allowed_extra; do echo "$s"; done
} | sort -u >"$tmp/allowed"

nm -D --defined-only "$so" | awk '{print $NF}' | sort -u >"$tmp/exported"

for s in $(comm -23 "$tmp/exported" "$tmp/allowed"); do
	case $s in
		p3_*) echo "check-exports: $so exports engine symbol $s" ;;
		*) echo "check-exports: $so exports $s, which is not an entry point named in$sqls" ;;
	esac
	fail=1
done
for s in $(comm -13 "$tmp/exported" "$tmp/required"); do
	echo "check-exports: $so does not export $s (SQL function symbol; add it to exports.txt)"
	fail=1
done

for s in $(nm -D --undefined-only "$so" | awk '{print $NF}' | grep '^p3_' || true); do
	echo "check-exports: $so refers to engine symbol $s but does not define it (an engine object missing from OBJS?)"
	fail=1
done

nm "$so" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u >"$tmp/all_syms"
if ! grep -qx 'p3_model_open' "$tmp/all_syms"; then
	echo "check-exports: $so has no symbol table with the engine in it (stripped?): cannot check its contents"
	exit 1
fi
for o in $tool_objs; do
	nm -g --defined-only "$o" | awk '{print $NF}' | sort -u >"$tmp/tool_syms"
	for s in $(comm -12 "$tmp/all_syms" "$tmp/tool_syms"); do
		echo "check-exports: $so contains $s from $o, which only tools and tests use"
		fail=1
	done
done

if [ $fail -ne 0 ]; then
	echo "check-exports: FAILED"
	exit 1
fi
echo "check-exports: $so exports $(wc -l <"$tmp/exported") symbols, the entry points of$sqls; no engine symbol, no tool-only code"
