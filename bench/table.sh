#!/bin/sh
# bench/table.sh — one table of the engine's speed per file type, every
# figure next to its limit measured in the same run (part 5 of make bench;
# also alone: sh bench/table.sh).
#
# For each type (PHI3_BENCH_TYPES, default "q4_0 q4_k_m q5_k_m q6_k q8_0
# f16") a real-dimension Phi-3-mini model with random weights is generated
# once into $PHI3_BENCH_DIR (Q4_0 as llama-quantize writes it: output.weight
# in Q6_K; Q4_K_M / Q5_K_M the official mixes), then, with 2 threads:
#   prefill    phi3-run's prompt tok/s for 128 and 512 prompt tokens, and as
#              % of the multiply-add peak (vpdpbusd for quantized weights,
#              vfmadd for F16: bench_kernels --only peak) — multiply-adds
#              per token are the layers' products (bench_stream)
#   decode     tok/s of 32 generated tokens after the 128-token prompt, and
#              as % of the bandwidth limit: weight bytes read per token
#              (bench_stream) over the read bandwidth of the file's mapping
#              with 2 threads (bench_stream, just before)
#   cold       in a PostgreSQL cluster of its own (phi3 must be installed:
#              make install): the first phi3_generate(..., max_tokens => 1)
#              of a new connection minus the second, with and without
#              shared_preload_libraries (median over PHI3_BENCH_RUNS
#              connections)
#   private    Anonymous memory (smaps_rollup) of a backend after a call: one
#              backend alone, and the mean of 4 backends at once
#   long       for PHI3_BENCH_LONG_TYPES (default q4_k_m): prefill of 2048
#              tokens against the 128-token rate (one run)
# Medians of PHI3_BENCH_RUNS runs (default 3).  (PHI3_BENCH_MKMODEL_DIMS
# replaces --real-dims, to try the script on small models: "--embd 256 --ff 512";
# PHI3_BENCH_PG_ONLY=1 measures only the PostgreSQL columns.)  The CPU model, the peaks and
# the bandwidths are printed with the table: only ratios of one run mean
# anything on a machine whose bandwidth drifts by 2x between days.
set -eu
cd "$(dirname "$0")/.."
DIR=${PHI3_BENCH_DIR:-/tmp/phi3-bench}
RUNS=${PHI3_BENCH_RUNS:-3}
TYPES=${PHI3_BENCH_TYPES:-"q4_0 q4_k_m q5_k_m q6_k q8_0 f16"}
PORT=${PHI3_BENCH_PORT:-55499}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
mkdir -p "$DIR"
chmod a+rx "$DIR"

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "nan") printf "%.0f%%", 100 * a / b; else print "?" }'; }

# ---- the prompts: 128, 512 and 2048 tokens of generated English reports ----
text="$DIR/table-prompt.txt"
: > "$text"
i=1
while [ $i -le 40 ]; do
	echo "Report $i. Revenue in region $i grew by $((i % 7 + 3)) percent in the quarter, mostly from renewals of support contracts and new licences; costs rose by $((i % 5 + 1)) percent after a delayed shipment from warehouse $((i % 4 + 1)). The team asks for a review of prices before the meeting on day $((i % 28 + 1))." >> "$text"
	i=$((i + 1))
done

model_args() {
	case "$1" in
		q4_0) echo "--type q4_0 --output-type q6_k" ;;
		*) echo "--type $1" ;;
	esac
}

# ---- the cluster for the first-call and memory figures ----
CL="$DIR/table-cluster"
have_pg=0
if [ -f "$($PG_CONFIG --pkglibdir)/phi3.so" ]; then have_pg=1; fi
psql_q() { PGHOST="$CL/socket" PGPORT=$PORT PGUSER=postgres psql -X -q -At -d postgres "$@"; }
cluster_start() {	# model, preload (0/1)
	scripts/pgcluster.sh stop "$CL" >/dev/null 2>&1 || true
	rm -rf "$CL"
	mkdir -p "$CL"
	chmod 777 "$CL"
	if [ "$2" = 1 ]; then
		scripts/pgcluster.sh start "$CL" $PORT "phi3.model = '$1'" "shared_preload_libraries = 'phi3'" "phi3.threads = 2"
	else
		scripts/pgcluster.sh start "$CL" $PORT "phi3.model = '$1'" "phi3.threads = 2"
	fi
	psql_q -c "CREATE EXTENSION IF NOT EXISTS phi3" >/dev/null
}
# ms of the first and of the second 1-token call in a new connection: "first second" (no KV kept
# between the statements, so the second evaluates the same prompt rather than reusing it)
first_second() {
	psql_q -c "SET phi3.kv_keep_tokens = 0" -c '\timing on' -c "SELECT length(phi3_generate('Say hello.', max_tokens => 1))" \
		-c "SELECT length(phi3_generate('Say hello.', max_tokens => 1))" 2>&1 |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tr '\n' ' '
}
cold_ms() {	# model, preload: median of first - second over RUNS connections
	cluster_start "$1" "$2"
	psql_q -c "SELECT length(phi3_generate('warm the page cache', max_tokens => 1))" >/dev/null
	j=0
	while [ $j -lt "$RUNS" ]; do
		first_second | awk '{printf "%.1f\n", $1 - $2}'
		j=$((j + 1))
	done | median
}
# Anonymous MiB of a backend after a call (it sleeps while we read it)
backend_anon() {	# pid
	awk '/^Anonymous:/ {printf "%.0f\n", $2 / 1024}' "/proc/$1/smaps_rollup" 2>/dev/null || echo nan
}
private_mib() {	# n backends at once: mean Anonymous MiB, read while each sleeps after its call
	k=0
	while [ $k -lt "$1" ]; do
		psql_q -c "SELECT length(phi3_generate('Say hello.', max_tokens => 8))" -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
		k=$((k + 1))
	done
	pids=""
	w=0
	while [ $w -lt 600 ]; do
		pids=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'")
		[ "$(echo "$pids" | grep -c .)" -ge "$1" ] && break
		sleep 0.5
		w=$((w + 1))
	done
	for pid in $pids; do backend_anon "$pid"; done | awk '{s += $1; n++} END {if (n) printf "%.0f\n", s / n; else print "nan"}'
	psql_q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'" >/dev/null
	wait
}

echo "== the table: 2 threads, $RUNS runs each ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
build/bench/bench_kernels --only peak | tee "$DIR/table-peak.txt"
IPEAK=$(sed -n 's/^int8 .*2 threads \([0-9.]*\) G\/s.*/\1/p' "$DIR/table-peak.txt")
FPEAK=$(sed -n 's/^f32 .*2 threads \([0-9.]*\) G\/s.*/\1/p' "$DIR/table-peak.txt")
: > "$DIR/table.txt"
: > "$DIR/table-long.txt"
for T in $TYPES; do
	M="$DIR/real-$T.gguf"
	if [ ! -s "$M" ]; then
		echo "== generating $M"
		# shellcheck disable=SC2046
		bin/phi3-mkmodel -q ${PHI3_BENCH_MKMODEL_DIMS:---real-dims} $(model_args "$T") -o "$M"
	fi
	chmod a+r "$M"
	# the page cache as after a boot: dropped, then read through the engine's mapping (MADV_HUGEPAGE),
	# which fills it with huge folios where the kernel and file system can (a freshly written file
	# sits in small pages, and every new backend would take 4 KiB page faults over all of it)
	dd if="$M" iflag=nocache count=0 status=none 2>/dev/null || true
	bin/phi3-run -m "$M" -p "warm" -n 1 -t 2 >/dev/null 2>&1 || true
	build/bench/bench_stream "$M" 3 > "$DIR/table-stream-$T.txt"
	BW=$(sed -n 's/^file read bandwidth.*2 threads \([0-9.]*\) GB\/s.*/\1/p' "$DIR/table-stream-$T.txt")
	WB=$(sed -n 's/^weights read per token: \([0-9]*\) bytes.*/\1/p' "$DIR/table-stream-$T.txt")
	MACS=$(sed -n 's/^multiply-adds per prompt token: \([0-9]*\).*/\1/p' "$DIR/table-stream-$T.txt")
	IDS=$(bin/phi3-run -m "$M" --tokenize -f "$text")
	I128=$(echo "$IDS" | tr ' ' '\n' | grep . | head -n 128 | tr '\n' ' ')
	I512=$(echo "$IDS" | tr ' ' '\n' | grep . | head -n 512 | tr '\n' ' ')
	: > "$DIR/table-runs-$T.txt"
	j=0
	[ "${PHI3_BENCH_PG_ONLY:-0}" = 1 ] && j=$RUNS	# only the PostgreSQL columns
	while [ $j -lt "$RUNS" ]; do
		a=$(bin/phi3-run -m "$M" --tokens "$I128" -n 32 -t 2 --verbose 2>&1 >/dev/null | tail -n 1)
		b=$(bin/phi3-run -m "$M" --tokens "$I512" -n 1 -t 2 --verbose 2>&1 >/dev/null | tail -n 1)
		echo "$a | $b" >> "$DIR/table-runs-$T.txt"
		j=$((j + 1))
	done
	p128=$(sed -n 's/.*prompt_tps=\([0-9.]*\) .* | .*/\1/p' "$DIR/table-runs-$T.txt" | median)
	p512=$(sed -n 's/.* | .*prompt_tps=\([0-9.]*\).*/\1/p' "$DIR/table-runs-$T.txt" | median)
	gen=$(sed -n 's/.*gen_tps=\([0-9.]*\) .* | .*/\1/p' "$DIR/table-runs-$T.txt" | median)
	peak=$IPEAK; [ "$T" = f16 ] && peak=$FPEAK
	lim=$(awk -v b="$BW" -v w="$WB" 'BEGIN { if (w > 0) printf "%.2f", b * 1e9 / w; else print 0 }')
	pp128=$(pct "$(awk -v t="$p128" -v m="$MACS" 'BEGIN {print t * m / 1e9}')" "$peak")
	pp512=$(pct "$(awk -v t="$p512" -v m="$MACS" 'BEGIN {print t * m / 1e9}')" "$peak")
	cold0=nan; cold1=nan; priv1=nan; priv4=nan
	if [ $have_pg = 1 ]; then
		cold0=$(cold_ms "$M" 0)
		cold1=$(cold_ms "$M" 1)
		priv1=$(private_mib 1)
		priv4=$(private_mib 4)
		scripts/pgcluster.sh stop "$CL" >/dev/null 2>&1 || true
	fi
	printf '%-7s | %6s %5s | %6s %5s | %5s %5s %4s | %5s GB/s | %6s %6s | %5s %5s\n' "$T" \
		"$p128" "$pp128" "$p512" "$pp512" "$gen" "$lim" "$(pct "$gen" "$lim")" "$BW" "$cold0" "$cold1" \
		"$priv1" "$priv4" >> "$DIR/table.txt"
done
# long documents: prefill of 2048 tokens against the 128-token rate (PHI3_BENCH_LONG_TYPES)
for T in ${PHI3_BENCH_LONG_TYPES:-q4_k_m}; do
	M="$DIR/real-$T.gguf"
	[ -s "$M" ] || continue
	IDS=$(bin/phi3-run -m "$M" --tokenize -f "$text")
	I2048=$(echo "$IDS" | tr ' ' '\n' | grep . | head -n 2048 | tr '\n' ' ')
	n=$(echo "$I2048" | wc -w)
	p2048=$(bin/phi3-run -m "$M" --tokens "$I2048" -n 1 -t 2 --verbose 2>&1 >/dev/null | tail -n 1 |
		sed -n 's/.*prompt_tps=\([0-9.]*\).*/\1/p')
	p128=$(sed -n 's/.*prompt_tps=\([0-9.]*\) .* | .*/\1/p' "$DIR/table-runs-$T.txt" | median)
	echo "long document, $T: prefill of $n tokens $p2048 tok/s = $(pct "$p2048" "$p128") of the 128-token rate ($p128 tok/s)" >> "$DIR/table-long.txt"
done

echo
echo "type    | prefill 128 tok  | prefill 512 tok  | decode tok/s     | read bw   | +ms 1st call  | private MiB"
echo "        |  tok/s  %peak    |  tok/s  %peak    | got  limit  %    | 2 thr     | no-pre  pre   | 1 bk  4 bk"
cat "$DIR/table.txt"
echo "(%peak: prompt multiply-adds per second over the same-run peak, int8 vpdpbusd $IPEAK G/s or f32 vfmadd"
echo " $FPEAK G/s for f16; decode limit: read bandwidth of the file's mapping over the weight bytes read per"
echo " token; +ms 1st call: first phi3_generate(max_tokens => 1) of a new connection minus the second, without"
echo " and with shared_preload_libraries; private MiB: Anonymous of smaps_rollup of a backend after a call)"
cat "$DIR/table-long.txt"
[ $have_pg = 1 ] || echo "(phi3 is not installed in $($PG_CONFIG --bindir)/..: run make install for the PostgreSQL columns)"
