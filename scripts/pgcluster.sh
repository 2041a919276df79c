#!/bin/sh
# Start or stop a throwaway PostgreSQL cluster in a directory of its own.
#
#   scripts/pgcluster.sh start DIR PORT [postgresql.conf lines...]
#   scripts/pgcluster.sh stop DIR
#
# The cluster listens only on a Unix socket in DIR/socket.  PostgreSQL
# refuses to run as root, so as root the cluster belongs to the postgres
# user.  Connect with: PGHOST=DIR/socket PGPORT=PORT PGUSER=postgres (root)
# or your own user name.
set -eu
PGBIN=${PGBIN:-$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)}

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR PORT [conf...] | stop DIR" >&2; exit 2; }

case "$cmd" in
start)
	port=${3:?port}
	shift 3
	mkdir -p "$dir/socket"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir" "$dir/socket"
	fi
	as_owner "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir/socket'"
		echo "port = $port"
		echo "fsync = off"
		echo "max_connections = 20"
		for line in "$@"; do echo "$line"; done
	} | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
	as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
		{ cat "$dir/server.log" >&2; exit 1; }
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	;;
*)
	echo "unknown command $cmd" >&2
	exit 2
	;;
esac
