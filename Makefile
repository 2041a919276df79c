# phi3 — the Phi-3 Mini language model inside PostgreSQL.
#
#   make                 the extension (phi3.so) and the tools bin/phi3-run, bin/phi3-mkmodel
#   make install         install the extension (PGXS)
#   make install-test-hooks  install phi3_test_hooks.so, the C functions only the tests call
#   make engine-check    engine unit tests and the forward pass against the numpy reference;
#                        no server, no PostgreSQL headers (src/engine is built without them)
#   make engine-valgrind the engine unit tests under valgrind
#   make engine-asan     the engine unit tests built with ASan + UBSan (build/asan)
#   make check-exports   phi3.so exports only its SQL entry points and holds no tool-only code
#   make installcheck    pg_regress suite against a running server (see README / .ci/run)
#   make PHI3_ASSERT=1   the glue with PostgreSQL's assertions (USE_ASSERT_CHECKING)
#   make prove-check     TAP tests (cancel, timeouts, concurrency, preload, model files replaced
#                        or truncated under a running backend) on temporary servers
#   make bench           speed and memory benchmarks
#
# The engine (src/engine, include/phi3) is compiled with its own flags and
# never sees a PostgreSQL header; the glue (src/pg) is compiled by PGXS.

EXTENSION    = phi3
MODULE_big   = phi3
DATA         = phi3--1.0.sql
PGFILEDESC   = "phi3 - Phi-3 Mini language model inside PostgreSQL"

ENGINE_SRCS  = $(sort $(wildcard src/engine/*.c))
ENGINE_OBJS  = $(ENGINE_SRCS:.c=.o)
GLUE_SRCS    = $(sort $(wildcard src/pg/*.c))
# Engine objects only the tools, tests, benchmarks and fuzzers link: the
# extension reads GGUF files and never writes one.  phi3.so gets the rest.
ENGINE_TOOL_OBJS   = src/engine/gguf_write.o
MODULE_ENGINE_OBJS = $(filter-out $(ENGINE_TOOL_OBJS),$(ENGINE_OBJS))
OBJS         = $(MODULE_ENGINE_OBJS) $(GLUE_SRCS:.c=.o)
# phi3.so exports its entry points and nothing else: exports.txt, made into
# a linker version script (exports.list) by PGXS; make check-exports.
SHLIB_EXPORTS = exports.txt

# pg_regress tests in the order they run: test/regress_tests holds their
# names, one per line (sql/NAME.sql, expected/NAME.out; one file per
# feature), setup first (it creates the extension)
REGRESS      = $(shell cat test/regress_tests)
REGRESS_OPTS = --inputdir=. --outputdir=build/regress
PG_CPPFLAGS  = -I$(CURDIR)/include
# make PHI3_ASSERT=1 (and make install PHI3_ASSERT=1): the glue with
# PostgreSQL's assertions, as a --enable-cassert server has them (the
# Asserts of its headers check our use of its APIs); CI runs pg_regress on
# it.  Loads into the ordinary server: in PG 15's headers the option only
# adds checks, an unused trailing member of MemoryContextMethods and
# declarations of assert-only functions the glue does not call (README).
# The engine is not affected.  Switching rebuilds the glue (build/glue-cppflags).
PHI3_ASSERT ?=
ifeq ($(PHI3_ASSERT),1)
PG_CPPFLAGS += -DUSE_ASSERT_CHECKING
endif
SHLIB_LINK   = -lm -lpthread
EXTRA_CLEAN  = bin build $(ENGINE_TOOL_OBJS)

# No LLVM bitcode for JIT: nothing here benefits from inlining into queries.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# ---------------------------------------------------------------------------
# Engine: plain C11, no PostgreSQL include path.  -ffp-contract=off keeps the
# scalar reference kernels bit-reproducible; SIMD kernels use intrinsics and
# per-function target attributes chosen at run time, so no -march here.
# -fvisibility=hidden: no engine symbol is ever exported from phi3.so, even
# without the version script, and calls within the engine bind directly.
# ---------------------------------------------------------------------------
ENGINE_CC      ?= $(CC)
ENGINE_OPT     ?= -O2
# (ENGINE_BASE_CFLAGS: everything but the optimisation level, shared with engine-asan)
ENGINE_BASE_CFLAGS = -std=gnu11 -g -fPIC -fvisibility=hidden -D_GNU_SOURCE -Iinclude \
                 -Wall -Wextra -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes \
                 -Wshadow -Wformat=2 -Wvla -Werror=vla -Werror=implicit-function-declaration \
                 -ffp-contract=off -fno-strict-aliasing -pthread
ENGINE_CFLAGS  = $(ENGINE_BASE_CFLAGS) $(ENGINE_OPT) $(ENGINE_EXTRA_CFLAGS)
ENGINE_LIBS    = -lm -lpthread

$(ENGINE_OBJS): %.o: %.c $(wildcard include/phi3/*.h) $(wildcard src/engine/*.h)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -c -o $@ $<

# The glue sees the engine headers too, and is rebuilt when its flags change
# (PHI3_ASSERT): build/glue-cppflags holds them and changes only with them.
$(GLUE_SRCS:.c=.o): $(wildcard include/phi3/*.h) $(wildcard include/*.h) $(wildcard src/pg/*.h) build/glue-cppflags

build/glue-cppflags: FORCE
	@mkdir -p build
	@echo '$(PG_CPPFLAGS)' | cmp -s - $@ || echo '$(PG_CPPFLAGS)' > $@

.PHONY: FORCE
FORCE:

TOOLS = bin/phi3-run bin/phi3-mkmodel
all: $(TOOLS)

# What phi3.so exports and contains (scripts/check-exports.sh): only the
# entry points of the SQL scripts, no engine symbol, nothing of
# ENGINE_TOOL_OBJS, no engine symbol left undefined.
.PHONY: check-exports
check-exports: $(shlib) $(ENGINE_TOOL_OBJS)
	sh scripts/check-exports.sh $(shlib) $(DATA) -- $(ENGINE_TOOL_OBJS)

bin/%: tools/%.c $(ENGINE_OBJS) $(wildcard tools/*.h)
	@mkdir -p bin
	$(ENGINE_CC) $(ENGINE_CFLAGS) -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS)

# ---------------------------------------------------------------------------
# Test models are made with the tool under test (bin/phi3-mkmodel:
# deterministic random weights, the real Phi-3 vocabulary).  The shapes the
# engine tests, pg_regress and the TAP tests share are written once here:
#   $(MKMODEL_TINY) -o OUT [options]     embd 64, 2 layers, 4 heads, ff 128
#   $(MKMODEL_TINY_K) -o OUT [options]   embd 256, 2 layers, 4 heads, ff 512
#                                        (rows of 256: the K-quants' block)
# ---------------------------------------------------------------------------
PHI3_TEST_VOCAB ?= $(CURDIR)/test/data/ggml-vocab-phi-3.gguf
MKMODEL         = bin/phi3-mkmodel -q --vocab $(PHI3_TEST_VOCAB)
TINY_DIMS       = --embd 64 --layers 2 --heads 4 --ff 128
TINY_K_DIMS     = --embd 256 --layers 2 --heads 4 --ff 512
MKMODEL_TINY    = $(MKMODEL) $(TINY_DIMS)
MKMODEL_TINY_K  = $(MKMODEL) $(TINY_K_DIMS)

# ---------------------------------------------------------------------------
# Engine tests: one program per subsystem in test/engine, plus scripted
# checks (tokenizer cases, forward pass against numpy) in test/engine/*.sh.
# ---------------------------------------------------------------------------
ENGINE_TESTS = $(patsubst test/engine/%.c,build/test/%,$(sort $(wildcard test/engine/test_*.c)))

build/test/%: test/engine/%.c $(ENGINE_OBJS) test/engine/harness.h
	@mkdir -p build/test
	$(ENGINE_CC) $(ENGINE_CFLAGS) -Itest/engine -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS)

.PHONY: engine-check engine-build engine-valgrind bench prove-check
engine-build: $(ENGINE_TESTS) $(TOOLS)

# Models for the engine tests (test_context.c).
ENGINE_MODEL_DIR = build/engine-models
$(ENGINE_MODEL_DIR)/.made: bin/phi3-mkmodel $(PHI3_TEST_VOCAB)
	@mkdir -p $(ENGINE_MODEL_DIR)
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-f32.gguf
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-q8_0.gguf --type q8_0
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-gqa.gguf --kv-heads 2
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-split.gguf --split-qkv
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-tied.gguf --tied
	$(MKMODEL_TINY) -o $(ENGINE_MODEL_DIR)/tiny-longrope.gguf --longrope --ctx 64 --orig-ctx 16
	$(MKMODEL_TINY_K) -o $(ENGINE_MODEL_DIR)/tiny-q4_k.gguf --type q4_k
	@touch $@

engine-check: engine-build $(ENGINE_MODEL_DIR)/.made
	@set -e; for t in $(ENGINE_TESTS); do echo "== $$t"; PHI3_TEST_MODELS=$(ENGINE_MODEL_DIR) $$t; done
	@set -e; for s in $(sort $(wildcard test/engine/check_*.sh)); do echo "== $$s"; sh $$s; done
	@echo "engine-check: all passed"

# The engine tests again under valgrind (memcheck: invalid reads, leaks).
# Valgrind cannot run AVX-512, so the kernel tests cover the other sets here.
engine-valgrind: engine-build $(ENGINE_MODEL_DIR)/.made
	@command -v valgrind >/dev/null || { echo "engine-valgrind: valgrind is not installed"; exit 1; }
	@mkdir -p build/valgrind
	@set -e; for t in $(ENGINE_TESTS); do \
		log=build/valgrind/$$(basename $$t).log; \
		if PHI3_TEST_MODELS=$(ENGINE_MODEL_DIR) valgrind -q --error-exitcode=9 --leak-check=full \
			--errors-for-leak-kinds=definite $$t >$$log 2>&1; then \
			echo "valgrind $$t: clean ($$(tail -n 1 $$log))"; \
		else cat $$log; echo "valgrind $$t: FAILED"; exit 1; fi; done
	@echo "engine-valgrind: all clean"

# The engine tests built with AddressSanitizer + UndefinedBehaviorSanitizer
# (out-of-bounds and use-after-free, leaks, misaligned loads, overflow,
# invalid shifts; what valgrind cannot see, and every kernel set including
# AVX-512) into build/asan; the first report fails the run.  The engine's
# own compiler, so the SIMD files get their instructions from their target
# pragmas as in the normal build, and its -O2: test_kernels compares NaN
# payloads bit for bit, and which of two NaNs an addition returns follows
# the operand order the compiler picks (at -O1 the reference and the AVX2
# Q5_1 dequant return different NaNs for some blocks of random bytes, NaN
# scale and NaN min).  Logs in build/asan/<test>.log.
ASAN_CC      ?= $(ENGINE_CC)
ASAN_OPT     ?= -O2
ASAN_CFLAGS   = $(ENGINE_BASE_CFLAGS) $(ASAN_OPT) -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined $(ENGINE_EXTRA_CFLAGS)
ASAN_OBJS     = $(patsubst src/engine/%.c,build/asan/obj/%.o,$(ENGINE_SRCS))
ASAN_TESTS    = $(patsubst test/engine/%.c,build/asan/test/%,$(sort $(wildcard test/engine/test_*.c)))
ASAN_ENV      = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

build/asan/obj/%.o: src/engine/%.c $(wildcard include/phi3/*.h) $(wildcard src/engine/*.h)
	@mkdir -p build/asan/obj
	$(ASAN_CC) $(ASAN_CFLAGS) -c -o $@ $<

build/asan/test/%: test/engine/%.c $(ASAN_OBJS) test/engine/harness.h
	@mkdir -p build/asan/test
	$(ASAN_CC) $(ASAN_CFLAGS) -Itest/engine -o $@ $< $(ASAN_OBJS) $(ENGINE_LIBS)

.PHONY: engine-asan
engine-asan: $(ASAN_TESTS) $(ENGINE_MODEL_DIR)/.made
	@set -e; for t in $(ASAN_TESTS); do \
		log=build/asan/$$(basename $$t).log; \
		if PHI3_TEST_MODELS=$(ENGINE_MODEL_DIR) $(ASAN_ENV) $$t >$$log 2>&1; then \
			echo "asan $$t: clean ($$(tail -n 1 $$log))"; \
		else cat $$log; echo "asan $$t: FAILED"; exit 1; fi; done
	@echo "engine-asan: all clean"

build/bench/%: bench/%.c $(wildcard bench/*.h) $(ENGINE_OBJS)
	@mkdir -p build/bench
	$(ENGINE_CC) $(ENGINE_CFLAGS) -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS)

# bench_f32gemm times OpenBLAS's sgemm beside the engine where Debian's
# single-threaded OpenBLAS headers are installed (libopenblas-serial-dev);
# only the benchmark links it, never the extension
OPENBLAS_SERIAL = /usr/lib/x86_64-linux-gnu/openblas-serial
build/bench/bench_f32gemm: bench/bench_f32gemm.c $(wildcard bench/*.h) $(ENGINE_OBJS)
	@mkdir -p build/bench
	if [ -f /usr/include/x86_64-linux-gnu/openblas-serial/cblas.h ]; then \
		$(ENGINE_CC) $(ENGINE_CFLAGS) -DHAVE_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-serial -o $@ $< \
			$(ENGINE_OBJS) $(ENGINE_LIBS) -L$(OPENBLAS_SERIAL) -Wl,-rpath,$(OPENBLAS_SERIAL) -lopenblas; \
	else $(ENGINE_CC) $(ENGINE_CFLAGS) -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS); fi

bench: engine-build build/bench/bench_kernels build/bench/bench_stream build/bench/bench_batch build/bench/bench_extract \
	build/bench/bench_f32gemm
	sh bench/run.sh

# ---------------------------------------------------------------------------
# TAP tests (t/*.pl, helpers in t/lib): cancel, statement_timeout and
# terminate, concurrent sessions, shared_preload_libraries, model files
# replaced or truncated under a session, huge inputs, a Citus coordinator
# with two workers (t/011_citus.pl: Citus must be installed, see
# scripts/install-citus.sh); run by
# scripts/prove-check.sh (its header says how) on temporary clusters, with
# the INSTALLED extension: run `make install` first.  PHI3_TAP_WORK (where
# the models, tests and clusters go; default a new directory under /tmp),
# PHI3_TAP_KEEP=1 (keep it), PROVE_TESTS (which files), PROVE_FLAGS:
#   make prove-check PROVE_TESTS=t/001_cancel.pl PROVE_FLAGS=-v
# ---------------------------------------------------------------------------
PHI3_TAP_WORK ?=
PHI3_TAP_KEEP ?=
# (not TAP_TESTS: set before PGXS is included, that switch would make
# installcheck run PGXS's own prove in the source tree)
TAP_FILES     = $(if $(PROVE_TESTS),$(PROVE_TESTS),$(sort $(wildcard t/*.pl)))

prove-check: bin/phi3-mkmodel $(PHI3_TEST_VOCAB)
	@PHI3_TAP_WORK='$(PHI3_TAP_WORK)' PHI3_TAP_KEEP='$(PHI3_TAP_KEEP)' PROVE_FLAGS='$(PROVE_FLAGS)' \
	PHI3_MKMODEL='$(MKMODEL)' PHI3_TINY_DIMS='$(TINY_DIMS)' PROVE='$(PROVE)' PG_BINDIR='$(bindir)' \
	PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' PG_PERL_LIB='$(top_srcdir)/src/test/perl' \
	sh scripts/prove-check.sh $(TAP_FILES)

# ---------------------------------------------------------------------------
# pg_regress models (make test-models; make installcheck depends on it): tiny
# deterministic Phi-3 GGUFs made by phi3-mkmodel, plus broken files for the
# error tests, in PHI3_TEST_MODEL_DIR.  The server's user must be able to
# read that directory (CI passes one under /tmp); the tests find it through
# the environment (psql's \getenv), so it is exported to pg_regress.
#   tiny-f32 / tiny-q8_0   MKMODEL_TINY (embd 64, 2 layers, 4 heads, ff 128)
#   tiny-q4_k              MKMODEL_TINY_K (embd 256, ff 512), a K-quant
#   tiny-longrope          as tiny-f32, 128k-style LongRoPE
#   not-gguf               a text file
#   truncated              tiny-f32 without its last 4096 bytes
#   wrong-arch             tiny-f32 with general.architecture "gpt2"
#   arch-tensor-type       no tensors, general.architecture "tensor type" only
#   bad-type               tiny-q4_k with blk.0.ffn_down.weight typed IQ2_XXS
#                          (a ggml type the engine cannot compute)
#   vocab-only             the vocabulary GGUF: architecture phi3, no tensors
# ---------------------------------------------------------------------------
PHI3_TEST_MODEL_DIR ?= $(CURDIR)/build/test-models
export PHI3_TEST_MODEL_DIR

.PHONY: test-models
test-models: $(PHI3_TEST_MODEL_DIR)/.made

$(PHI3_TEST_MODEL_DIR)/.made: bin/phi3-mkmodel $(PHI3_TEST_VOCAB)
	@mkdir -p $(PHI3_TEST_MODEL_DIR)
	$(MKMODEL_TINY) -o $(PHI3_TEST_MODEL_DIR)/tiny-f32.gguf
	$(MKMODEL_TINY) -o $(PHI3_TEST_MODEL_DIR)/tiny-q8_0.gguf --type q8_0
	$(MKMODEL_TINY_K) -o $(PHI3_TEST_MODEL_DIR)/tiny-q4_k.gguf --type q4_k
	$(MKMODEL_TINY) -o $(PHI3_TEST_MODEL_DIR)/tiny-longrope.gguf --longrope
	printf 'This is a text file, not a GGUF model.\n' > $(PHI3_TEST_MODEL_DIR)/not-gguf.gguf
	f=$(PHI3_TEST_MODEL_DIR)/tiny-f32.gguf; head -c $$(( $$(wc -c < $$f) - 4096 )) $$f > $(PHI3_TEST_MODEL_DIR)/truncated.gguf
	cp $(PHI3_TEST_MODEL_DIR)/tiny-f32.gguf $(PHI3_TEST_MODEL_DIR)/wrong-arch.gguf
	f=$(PHI3_TEST_MODEL_DIR)/wrong-arch.gguf; \
	off=$$(LC_ALL=C grep -obaF 'general.architecture' $$f | head -n 1 | cut -d: -f1); \
	printf 'gpt2' | dd of=$$f bs=1 seek=$$(( off + 32 )) conv=notrunc status=none
	printf 'GGUF\003\0\0\0\0\0\0\0\0\0\0\0\001\0\0\0\0\0\0\0\024\0\0\0\0\0\0\0general.architecture\010\0\0\0\013\0\0\0\0\0\0\0tensor type' \
		> $(PHI3_TEST_MODEL_DIR)/arch-tensor-type.gguf
	cp $(PHI3_TEST_MODEL_DIR)/tiny-q4_k.gguf $(PHI3_TEST_MODEL_DIR)/bad-type.gguf
	f=$(PHI3_TEST_MODEL_DIR)/bad-type.gguf; \
	off=$$(LC_ALL=C grep -obaF 'blk.0.ffn_down.weight' $$f | head -n 1 | cut -d: -f1); \
	printf '\020\000\000\000' | dd of=$$f bs=1 seek=$$(( off + 41 )) conv=notrunc status=none
	cp $(PHI3_TEST_VOCAB) $(PHI3_TEST_MODEL_DIR)/vocab-only.gguf
	chmod -R a+rX $(PHI3_TEST_MODEL_DIR)
	@touch $@

# the trained demo model (tools/train/README.md) for the semantic tests (sql/demo.sql)
PHI3_DEMO_MODEL = models/phi3-demo-q8_0.gguf
test-models: $(PHI3_TEST_MODEL_DIR)/demo-q8_0.gguf
$(PHI3_TEST_MODEL_DIR)/demo-q8_0.gguf: $(PHI3_DEMO_MODEL) $(PHI3_TEST_MODEL_DIR)/.made
	cp $(PHI3_DEMO_MODEL) $@
	chmod a+r $@

# pg_regress writes results and diffs to build/regress (REGRESS_OPTS) but
# does not create build/
.PHONY: regress-outputdir
regress-outputdir:
	@mkdir -p build/regress

# Every sql/NAME.sql is listed in test/regress_tests and every listed name
# has its sql/ and expected/ files: a test cannot be left out unnoticed.
.PHONY: regress-list
regress-list:
	@ok=1; \
	for f in sql/*.sql; do n=$${f#sql/}; n=$${n%.sql}; \
		grep -qx "$$n" test/regress_tests || { echo "regress-list: $$f is not in test/regress_tests"; ok=0; }; done; \
	for n in $(REGRESS); do \
		[ -f sql/$$n.sql ] && [ -f expected/$$n.out ] || { echo "regress-list: $$n (test/regress_tests) needs sql/$$n.sql and expected/$$n.out"; ok=0; }; done; \
	[ $$ok = 1 ]

installcheck: regress-list test-models regress-outputdir

# Test hooks (test/hooks/phi3_test_hooks.c): SQL-callable C functions only the
# tests use, in build/hooks/phi3_test_hooks.so, never in phi3.so; installed by
# `make install-test-hooks` (scripts/test.sh), never by `make install`.
TEST_HOOKS_SO   = build/hooks/phi3_test_hooks$(DLSUFFIX)
TEST_HOOKS_OBJS = build/hooks/phi3_test_hooks.o src/pg/extract_answer.o src/pg/encoding.o
all: $(TEST_HOOKS_SO)
build/hooks/phi3_test_hooks.o: test/hooks/phi3_test_hooks.c $(wildcard include/*.h) $(wildcard include/phi3/*.h)
	@mkdir -p build/hooks
	$(COMPILE.c) -o $@ $<
$(TEST_HOOKS_SO): $(TEST_HOOKS_OBJS) test/hooks/exports.map
	$(CC) $(CFLAGS) $(TEST_HOOKS_OBJS) $(LDFLAGS) $(LDFLAGS_SL) -shared -Wl,--version-script=test/hooks/exports.map -o $@
.PHONY: install-test-hooks
install-test-hooks: $(TEST_HOOKS_SO)
	$(INSTALL_SHLIB) $(TEST_HOOKS_SO) '$(DESTDIR)$(pkglibdir)/'

# make uninstall also removes the test hooks, if they were installed
uninstall: uninstall-test-hooks
.PHONY: uninstall-test-hooks
uninstall-test-hooks:
	rm -f '$(DESTDIR)$(pkglibdir)/phi3_test_hooks$(DLSUFFIX)'

# ---------------------------------------------------------------------------
# libFuzzer harnesses (test/fuzz; needs clang with libclang-rt; CI runs
# `make fuzz-smoke`, a few seconds of each): `make fuzz` builds every test/fuzz/fuzz_*.c against an
# ASan + UBSan build of the engine into build/fuzz/, and the seed corpora
# into build/fuzz/corpus/<harness> (test/fuzz/make_seeds.sh: tiny models
# over a 372-token vocabulary, texts, vocabularies, sampler inputs).  Run
# one at a time from the repository root, e.g.
#   build/fuzz/fuzz_model -max_len=1048576 -timeout=20 -rss_limit_mb=2048 \
#       -malloc_limit_mb=512 -max_total_time=300 build/fuzz/corpus/fuzz_model
# (each harness's header gives its input layout, options and checks).
# ---------------------------------------------------------------------------
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -std=gnu11 -g -O1 -ffp-contract=off -fno-omit-frame-pointer -D_GNU_SOURCE -Iinclude -pthread
FUZZ_SAN      = address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS     = $(patsubst src/engine/%.c,build/fuzz/obj/%.o,$(ENGINE_SRCS))
FUZZ_TARGETS  = $(patsubst test/fuzz/%.c,build/fuzz/%,$(sort $(wildcard test/fuzz/fuzz_*.c)))
FUZZ_GGUF_OBJS = $(addprefix src/engine/,gguf.o gguf_write.o status.o quant_types.o)

.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_TARGETS) build/fuzz/make_small_vocab bin/phi3-mkmodel build/test/test_schema
	sh test/fuzz/make_seeds.sh

# A short run of every harness on its seed corpus (CI: scripts/test.sh),
# FUZZ_SECONDS each (default 5), with each harness's options from its header.
FUZZ_SECONDS ?= 5
FUZZ_OPTS_fuzz_gguf      = -max_len=65536
FUZZ_OPTS_fuzz_model     = -max_len=1048576 -rss_limit_mb=2048 -malloc_limit_mb=512
FUZZ_OPTS_fuzz_tokenizer = -max_len=4096
FUZZ_OPTS_fuzz_vocab     = -max_len=2048
FUZZ_OPTS_fuzz_sampler   = -max_len=8192
FUZZ_OPTS_fuzz_schema    = -max_len=8192
fuzz_run = echo "== $(1) ($(FUZZ_SECONDS) s)"; \
	build/fuzz/$(1) $(FUZZ_OPTS_$(1)) -timeout=20 -max_total_time=$(FUZZ_SECONDS) \
		build/fuzz/corpus/$(1) >build/fuzz/$(1).log 2>&1 || { tail -n 40 build/fuzz/$(1).log; exit 1; }; \
	grep -E '^(\#[0-9]+|Done)' build/fuzz/$(1).log | tail -n 1
fuzz-smoke: fuzz
	@set -e; $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(notdir $(t)));) true

# clang ignores '#pragma GCC target': the SIMD files get their ISA on the command line
# (their kernels still only run when the CPU has it, chosen at run time)
build/fuzz/obj/kernels_avx2.o: FUZZ_ISA = -mavx2 -mfma -mf16c
build/fuzz/obj/kernels_avx512.o build/fuzz/obj/gemm_avx512.o: FUZZ_ISA = -mavx2 -mfma -mf16c -mavx512f \
                                            -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
# clang 14 has no __builtin_cpu_supports("f16c"): the CPU probe is built by the engine's compiler
build/fuzz/obj/kernels_x86.o: src/engine/kernels_x86.c $(wildcard include/phi3/*.h) $(wildcard src/engine/*.h)
	@mkdir -p build/fuzz/obj
	$(ENGINE_CC) $(ENGINE_CFLAGS) -c -o $@ $<

build/fuzz/obj/%.o: src/engine/%.c $(wildcard include/phi3/*.h) $(wildcard src/engine/*.h)
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_ISA) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c -o $@ $<

build/fuzz/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_OBJS) $(wildcard test/fuzz/*.h)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< $(FUZZ_OBJS) -lm

build/fuzz/make_small_vocab: test/fuzz/make_small_vocab.c $(FUZZ_GGUF_OBJS)
	@mkdir -p build/fuzz
	$(ENGINE_CC) $(ENGINE_CFLAGS) -o $@ $< $(FUZZ_GGUF_OBJS) $(ENGINE_LIBS)
