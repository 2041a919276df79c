#!/bin/sh
# phi3 quick start: from a fresh Debian 12 machine to summaries and
# extractions of a sample table, in one command.
#
#   PHI3_MODEL=/path/to/Phi-3-mini-4k-instruct-q4.gguf ./scripts/quickstart.sh
#   ./scripts/quickstart.sh          # without a model: the small demo model of models/
#
# It installs the build dependencies, builds and installs the extension,
# starts a local PostgreSQL cluster in $PHI3_QUICKSTART_DIR (default
# /tmp/phi3-quickstart, recreated on every run) with phi3 preloaded, creates
# a sample `reports` table and runs phi3_summarize and phi3_extract over it.
# The cluster keeps running afterwards so you can try your own queries; the
# last lines say how to connect and how to stop it.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
DIR=${PHI3_QUICKSTART_DIR:-/tmp/phi3-quickstart}
PORT=${PHI3_QUICKSTART_PORT:-54400}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

echo "== installing dependencies (Debian packages)"
scripts/install-deps.sh

echo "== building and installing phi3"
make -s -j2 PG_CONFIG="$PG_CONFIG"
$SUDO make -s install PG_CONFIG="$PG_CONFIG"

echo "== starting a local PostgreSQL cluster in $DIR"
if [ -d "$DIR" ]; then
	scripts/pgcluster.sh stop "$DIR" || true
	$SUDO rm -rf "$DIR"
fi
mkdir -p "$DIR"
chmod 755 "$DIR"

if [ -n "${PHI3_MODEL:-}" ]; then
	MODEL=$(readlink -f "$PHI3_MODEL")
	[ -r "$MODEL" ] || { echo "PHI3_MODEL=$PHI3_MODEL is not a readable file" >&2; exit 1; }
	RANDOM_MODEL=no
	DEMO_MODEL=no
elif [ -r models/phi3-demo-q8_0.gguf ]; then
	# copied next to the cluster: the server's user may not be able to read the clone
	MODEL="$DIR/phi3-demo-q8_0.gguf"
	echo "== no PHI3_MODEL given: using the small DEMONSTRATION model models/phi3-demo-q8_0.gguf"
	echo "   (20M parameters, trained in this repository on synthetic business documents; not Phi-3)"
	cp models/phi3-demo-q8_0.gguf "$MODEL"
	chmod a+r "$MODEL"
	RANDOM_MODEL=no
	DEMO_MODEL=yes
else
	MODEL="$DIR/phi3-random-demo.gguf"
	echo "== no PHI3_MODEL given: generating a small Phi-3-shaped model with random weights"
	bin/phi3-mkmodel -q -o "$MODEL" --embd 256 --layers 4 --heads 8 --ff 768 --type q8_0
	chmod a+r "$MODEL"
	RANDOM_MODEL=yes
	DEMO_MODEL=no
fi

scripts/pgcluster.sh start "$DIR" "$PORT" \
	"shared_preload_libraries = 'phi3'" \
	"phi3.model = '$MODEL'"
export PGHOST="$DIR/socket" PGPORT="$PORT" PGUSER=postgres

echo "== the sample table and the main job"
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE EXTENSION phi3;

CREATE TABLE reports (id int PRIMARY KEY, title text, body text);
INSERT INTO reports VALUES
(1, 'Invoice dispute',
 'Customer Acme Logistics disputes invoice 4471 dated 3 March 2024 for 12,480.00 EUR. They say two of the '
 'eight pallets were delivered damaged and ask for a credit of 3,120.00 EUR. The warehouse photos confirm '
 'water damage on both pallets. Finance proposes to issue the credit note and to claim the amount from the carrier.'),
(2, 'Server outage',
 'On 14 May 2024 the billing database was unavailable from 02:10 to 03:45 UTC after a disk filled up with '
 'write-ahead log files. Replication to the standby had stalled, so old WAL segments were never removed. '
 'No data was lost. The on-call engineer freed space and restarted replication. Action items: alert on '
 'replication lag and on disk usage above 80 percent.'),
(3, 'Sales visit',
 'Met with Brightwater Foods on 2 April 2024. They want to replace their paper order forms with our ordering '
 'portal for 35 stores. Budget is about 48,000 USD for the first year. Decision expected by end of June; '
 'main competitor is OrderFlow. Next step: a pilot in three stores in May.'),
(4, 'Customer complaint',
 'Mrs. Jane Holloway called about order 99812 placed on 20 January 2024: the espresso machine (189.99 GBP) '
 'stopped heating after two weeks. She has already returned it once. She asks for a full refund instead of a '
 'second replacement. Support agreed to refund 189.99 GBP and to collect the machine.');

\echo
\echo '-- phi3_model_info()'
SELECT jsonb_pretty(phi3_model_info() - 'tensor_types') AS model;

\echo '-- SELECT id, phi3_summarize(body, 30) FROM reports ORDER BY id;'
\timing on
SELECT id, title, phi3_summarize(body, 30) AS summary FROM reports ORDER BY id;

\echo '-- SELECT id, phi3_extract(body, schema) FROM reports ORDER BY id;'
SELECT id, jsonb_pretty(phi3_extract(body,
         '{"customer":"text","amount":"numeric","currency":"text","date":"date"}')) AS facts
FROM reports ORDER BY id;
\timing off
SQL

echo
if [ "$DEMO_MODEL" = yes ]; then
	cat <<EOF
NOTE: this run used the DEMONSTRATION model shipped in models/: about 20M
parameters of the Phi-3 architecture, trained in this repository (tools/train/)
on synthetic invoices, incident reports, support tickets and sales notes.  It
answers in the right form and picks plausible labels, but this under-trained
file does not yet copy names, amounts and dates from the document: most values
above are invented (figures in tools/train/README.md).  It is not Phi-3 and no
substitute for it.  For real work, download Microsoft's official Phi-3 Mini
GGUF (about 2.4 GB):
    https://huggingface.co/microsoft/Phi-3-mini-4k-instruct-gguf  (file Phi-3-mini-4k-instruct-q4.gguf)
and run again:
    PHI3_MODEL=/path/to/Phi-3-mini-4k-instruct-q4.gguf ./scripts/quickstart.sh
EOF
fi
if [ "$RANDOM_MODEL" = yes ]; then
	cat <<EOF
NOTE: this run used a model with RANDOM weights generated on the spot, so the
summaries above are noise: the point was to show the whole path working.  For
real answers, download Microsoft's official Phi-3 Mini GGUF (about 2.4 GB):
    https://huggingface.co/microsoft/Phi-3-mini-4k-instruct-gguf  (file Phi-3-mini-4k-instruct-q4.gguf)
and run again:
    PHI3_MODEL=/path/to/Phi-3-mini-4k-instruct-q4.gguf ./scripts/quickstart.sh
EOF
fi
cat <<EOF

The cluster is still running.  Try it:
    psql -h $DIR/socket -p $PORT -U $PGUSER postgres
    postgres=# SELECT phi3_generate('Write a haiku about databases.');
Stop it with:
    $ROOT/scripts/pgcluster.sh stop $DIR
EOF
