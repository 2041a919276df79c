#!/bin/sh
# make bench: speed and memory of the engine, measured, never asserted.
#
#   1. kernels (bench/bench_kernels): every kernel set against the scalar
#      reference, memory read bandwidth with 1 and 2 threads, decode- and
#      prefill-shaped products of a Phi-3-mini layer — all in one run, so
#      the ratios are meaningful on a noisy machine;
#   2. end to end on a real-dimension Phi-3-mini model with random weights
#      (Q4_K_M mix as Microsoft's official file, 2.39 GB, generated once
#      into $PHI3_BENCH_DIR by phi3-mkmodel): load time, prompt and
#      generation tokens/s with 1 and 2 threads (median of $PHI3_BENCH_RUNS
#      runs), decode speed as a fraction of the read bandwidth over the
#      model file's mapping measured in the same run (bench/bench_stream),
#      and the private memory of the process (from /proc/PID/smaps_rollup)
#      against the file size.
#
#   3. batch enrichment (bench/bench_batch): rows/s of 48-token summaries
#      of generated reports, one row at a time and batched over 2-32 slots.
#   4. structured extraction (bench/bench_extract): invoices decoded under a
#      JSON schema against free generation (decode tok/s, forward passes per
#      output token), schema compile time, mask cost (mean, p99).
#   5. F16 prefill (bench/bench_f32gemm): the engine's f32 product against
#      OpenBLAS sgemm on the same worker threads, at 128 and 512 tokens.
#   6. the table per file type (bench/table.sh): prefill at 128 and 512
#      tokens against the multiply-add peak, decode against the bandwidth
#      limit, first-call latency of a new connection with and without
#      preload, private memory per backend (PHI3_BENCH_TYPES).
#
# Environment: PHI3_BENCH_DIR (default /tmp/phi3-bench), PHI3_BENCH_RUNS
# (default 5), PHI3_BENCH_BATCH_ROWS (default 200; PHI3_BENCH_ROW_ROWS and
# PHI3_BENCH_BATCH_MODES, see bench_batch.c), PHI3_BENCH_EXTRACT_DOCS
# (default 8), PHI3_BENCH_QUICK=1
# (kernels only, shorter).
set -eu
cd "$(dirname "$0")/.."
DIR=${PHI3_BENCH_DIR:-/tmp/phi3-bench}
RUNS=${PHI3_BENCH_RUNS:-5}
mkdir -p "$DIR"

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }

echo "== kernels"
if [ "${PHI3_BENCH_QUICK:-0}" = 1 ]; then
	build/bench/bench_kernels --quick | tee "$DIR/kernels.txt"
else
	build/bench/bench_kernels | tee "$DIR/kernels.txt"
fi
[ "${PHI3_BENCH_QUICK:-0}" = 1 ] && exit 0

MODEL="$DIR/real-q4_k_m.gguf"
if [ ! -s "$MODEL" ]; then
	echo "== generating $MODEL (real Phi-3-mini dimensions, Q4_K_M mix; takes a minute or two)"
	bin/phi3-mkmodel -q --real-dims --type q4_k_m -o "$MODEL"
fi
SIZE=$(stat -c %s "$MODEL")

echo "== read bandwidth over the model file's mapping (the decode limit)"
build/bench/bench_stream "$MODEL" | tee "$DIR/stream.txt"
BW1=$(sed -n 's/^file read bandwidth: 1 thread \([0-9.]*\) GB\/s.*/\1/p' "$DIR/stream.txt")
BW2=$(sed -n 's/^file read bandwidth.*2 threads \([0-9.]*\) GB\/s.*/\1/p' "$DIR/stream.txt")
PROMPT="$DIR/prompt.txt"
# 136 tokens of ordinary English
cat > "$PROMPT" <<'EOF'
The quarterly report covers revenue, costs and customer numbers for the three regions. Revenue grew by
twelve percent, mostly from the northern region, where two large customers renewed their contracts early.
Costs rose more slowly than revenue because the new warehouse reduced shipping times and fuel use. The
southern region lost one customer to a competitor that offered lower prices for a three year commitment.
The board asked the sales team to prepare an answer for the next meeting, including a comparison of the
discounts we can afford and the service levels we can guarantee. Write a short summary for the staff.
EOF

echo "== end to end: $MODEL ($SIZE bytes), $RUNS runs each"
printf '%-8s %8s %12s %10s %10s\n' threads load_ms prompt_tok/s gen_tok/s bw_frac
for t in 1 2; do
	: > "$DIR/runs-$t.txt"
	i=0
	while [ $i -lt "$RUNS" ]; do
		bin/phi3-run -m "$MODEL" -f "$PROMPT" -n 32 -t $t --verbose 2>&1 >/dev/null | tail -n 1 >> "$DIR/runs-$t.txt"
		i=$((i + 1))
	done
	load=$(sed -n 's/.*load_ms=\([0-9.]*\).*/\1/p' "$DIR/runs-$t.txt" | median)
	ptps=$(sed -n 's/.*prompt_tps=\([0-9.]*\).*/\1/p' "$DIR/runs-$t.txt" | median)
	gtps=$(sed -n 's/.*gen_tps=\([0-9.]*\).*/\1/p' "$DIR/runs-$t.txt" | median)
	bw=$BW1; [ $t = 2 ] && bw=$BW2
	frac=$(awk -v s="$SIZE" -v g="$gtps" -v b="$bw" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * s * g / (b * 1e9); else print "?" }')
	printf '%-8s %8s %12s %10s %10s\n' $t "$load" "$ptps" "$gtps" "$frac"
done
echo "(bw_frac: weight bytes read per second while generating / read bandwidth over the same file mapping, this run)"

echo "== memory of a running phi3-run (weights are a shared, read-only file mapping)"
bin/phi3-run -m "$MODEL" -f "$PROMPT" -n 64 -t 2 >/dev/null 2>&1 &
pid=$!
sleep 3
if [ -r /proc/$pid/smaps_rollup ]; then
	grep -E '^(Rss|Pss_Anon|Pss_File|Private_Clean|Private_Dirty|Anonymous):' /proc/$pid/smaps_rollup
	anon=$(awk '/^Anonymous:/ {print $2}' /proc/$pid/smaps_rollup)
	echo "anonymous (private) memory: $anon kB = $(awk -v a="$anon" -v s="$SIZE" 'BEGIN {printf "%.2f%%", 100 * a * 1024 / s}') of the $SIZE-byte file"
fi
wait $pid || true

ROWS=${PHI3_BENCH_BATCH_ROWS:-200}
echo "== batch enrichment: summaries of $ROWS reports, one row at a time and batched (bench/bench_batch)"
build/bench/bench_batch "$MODEL" "$ROWS" 2 | tee "$DIR/batch.txt"

DOCS=${PHI3_BENCH_EXTRACT_DOCS:-8}
echo "== structured extraction: $DOCS invoices under a JSON schema, against free generation (bench/bench_extract)"
build/bench/bench_extract "$MODEL" "$DOCS" 2 | tee "$DIR/extract.txt"

echo "== F16 prefill: the engine's f32 product against OpenBLAS sgemm (bench/bench_f32gemm)"
build/bench/bench_f32gemm 128 512 | tee "$DIR/f32gemm.txt"

echo "== the table per file type (bench/table.sh)"
sh bench/table.sh
