#!/bin/sh
# make_seeds.sh — seed corpora for the libFuzzer harnesses (make fuzz).
#
#     sh test/fuzz/make_seeds.sh [OUT_DIR]      (default build/fuzz/corpus)
#
# fuzz_model: tiny one-layer models from bin/phi3-mkmodel over a 372-token
# subset of the real vocabulary (build/fuzz/make_small_vocab): f32, q8_0,
# q4_k (embd 256, ff 512), LongRoPE, split Q/K/V, tied output, GQA, and
# odd dimensions (SIMD tails) and the other weight types.  The
# same files and the small vocabulary seed fuzz_gguf.  fuzz_tokenizer: a
# flag byte and a text each; fuzz_vocab and fuzz_sampler: a few inputs in
# their byte layouts (see the harness headers); fuzz_schema: the schemas
# of test/engine/test_schema.c (build/test/test_schema --write-seeds) and
# phi3_extract's shapes.  Existing corpus files are kept: the fuzzers add
# to these directories.
set -e

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/fuzz/corpus}
mkmodel=${PHI3_MKMODEL:-$root/bin/phi3-mkmodel}
small_vocab_tool=${PHI3_MAKE_SMALL_VOCAB:-$root/build/fuzz/make_small_vocab}
test_schema=${PHI3_TEST_SCHEMA:-$root/build/test/test_schema}
real_vocab=$root/test/data/ggml-vocab-phi-3.gguf
small=$out/small-vocab.gguf

mkdir -p "$out/fuzz_model" "$out/fuzz_gguf" "$out/fuzz_tokenizer" "$out/fuzz_vocab" "$out/fuzz_sampler" \
	"$out/fuzz_schema"
"$small_vocab_tool" "$real_vocab" 100 "$small"

model() {
	name=$1
	shift
	"$mkmodel" -q --vocab "$small" --layers 1 --ctx 64 -o "$out/fuzz_model/$name.gguf" "$@"
}
model f32 --embd 32 --heads 2 --ff 64
model q8_0 --embd 32 --heads 2 --ff 64 --type q8_0
model q4_k --embd 256 --heads 4 --ff 512 --type q4_k
model longrope --embd 32 --heads 2 --ff 64 --longrope --ctx 64 --orig-ctx 4
model split --embd 32 --heads 2 --ff 64 --split-qkv --type f16
model tied --embd 32 --heads 2 --ff 64 --tied --type q8_0
model gqa --embd 32 --heads 4 --kv-heads 2 --ff 64
# dimensions that are no multiple of a SIMD width (tails), odd block counts, every weight type
model odd-f32 --embd 24 --heads 3 --ff 36
model odd-f16 --embd 20 --heads 2 --ff 36 --type f16 --split-qkv
model odd-bf16 --embd 12 --heads 2 --kv-heads 1 --ff 10 --type bf16 --rot 4
model q4_0 --embd 96 --heads 3 --ff 160 --type q4_0
model q5_1 --embd 96 --heads 3 --ff 160 --type q5_1 --tied
model iq4_nl --embd 64 --heads 2 --ff 96 --type iq4_nl
model q4_k_m --embd 256 --heads 4 --ff 256 --type q4_k_m --tied
model q5_k_m --embd 256 --heads 4 --ff 256 --type q5_k_m --tied
model q2_k --embd 256 --heads 2 --ff 256 --type q2_k --tied
model q3_k --embd 256 --heads 8 --kv-heads 2 --ff 256 --type q3_k --tied
model iq4_xs --embd 256 --heads 4 --ff 256 --type iq4_xs --tied --longrope --orig-ctx 4
cp "$out"/fuzz_model/*.gguf "$small" "$out/fuzz_gguf/"

# fuzz_tokenizer: flag byte (bit 0 special, 1 bos, 2 detok special, 3 strip, 4 gen prompt), text
tok() {
	printf "$2" > "$out/fuzz_tokenizer/$1"
}
tok plain '\000Hello world, this is a test.'
tok spaces '\010  leading  and trailing  \n\ttabs'
tok unicode '\010Gr\303\274\303\237e \342\202\254 \360\237\230\200 \344\270\255\346\226\207'
tok invalid '\004\377\376\300\200\355\240\200\364\220\200\200abc'
tok special '\003<|user|>\nHi<|end|>\n<|assistant|>\n</s> <s><unk>[PAD32011]'
tok chat '\031\000You are kind.\036\001Hello there\036\002 Hi!\036\001  <|end|>x'
tok digits '\0103.14159 2024-01-01 0x41 <0x41>'

# fuzz_vocab: n, flags, bos, eos, unk, then per token kind/type/score, then the text
printf '\005\003\003\004\002\000\101\200\005\000\102\200\005\003\000\001\005\004\003a\001\005\004\002bc\001\005abc' \
	> "$out/fuzz_vocab/small"
printf '\003\043\001\002\000\003\003\204\005\003\001\204\005\003\002\204\005<|end|> x' > "$out/fuzz_vocab/markers"
# regression seed: "<|x|>" and its prefixes "<|", "<|x", "<|x|" as tokens, text "<|x|>": plain
# tokenization merged through the prefixes into the marker before 9ab72c2
printf '\004\000\001\001\001\003\014\000\005\000\001\000\005\000\005\000\001\000\007\000\005\000\001\000\011\000\005\000\002\000\005\000<|x|>' \
	> "$out/fuzz_vocab/marker-chain"

# fuzz_sampler: u16 vocab, 6 parameter selectors + seed, accepted tokens, mask kind, logits
printf '\377\007\005\005\003\013\000\002\001\000\000\000\000\000\003\000\001\000\0107\011\012\013\014\015\016\017' \
	> "$out/fuzz_sampler/default"
printf '\100\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > "$out/fuzz_sampler/greedy"
printf '\000\004\006\003\012\004\003\002\012\000\000\000\002\005\000\006\000\003\012\010\011\012abc' \
	> "$out/fuzz_sampler/penalty"
# fuzz_schema: schema, NUL, document
"$test_schema" --write-seeds "$out/fuzz_schema"
# the shape phi3_extract gives a composite type: dates and timestamps as patterns, bounded numerics
printf '%s\000%s' '{"type":"object","properties":{"due":{"type":"string","pattern":"^([1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)-02-29)$"},"amount":{"type":"string","pattern":"^-?(0|[1-9][0-9]{0,7})([.][0-9]{1,2})?$"},"n":{"anyOf":[{"type":"integer","minimum":-2147483648,"maximum":2147483647},{"type":"null"}]},"tags":{"type":"array","items":{"type":"string","maxLength":5}}},"required":["due","amount","n","tags"],"additionalProperties":false}' \
	'{"due":"2024-02-29","amount":"-12.5","n":null,"tags":["a"]}' > "$out/fuzz_schema/extract-shape"
echo "make_seeds: corpora in $out"
