# phi3 — the Phi-3 Mini language model inside PostgreSQL.
#
#   make                 the extension (phi3.so) and the tools bin/phi3-run, bin/phi3-mkmodel
#   make install         install the extension (PGXS)
#   make engine-check    engine unit tests and the forward pass against the numpy reference;
#                        no server, no PostgreSQL headers (src/engine is built without them)
#   make installcheck    pg_regress suite against a running server (see README / .ci/run)
#   make prove-check     TAP tests (cancel, timeouts, concurrency, preload) on temporary servers
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
OBJS         = $(ENGINE_OBJS) $(GLUE_SRCS:.c=.o)

# pg_regress: one file per feature; setup first (it creates the extension)
REGRESS      = $(shell cat test/regress_schedule 2>/dev/null)
REGRESS_OPTS = --inputdir=. --outputdir=build/regress
PG_CPPFLAGS  = -I$(CURDIR)/include
SHLIB_LINK   = -lm -lpthread
EXTRA_CLEAN  = bin build

# No LLVM bitcode for JIT: nothing here benefits from inlining into queries.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# ---------------------------------------------------------------------------
# Engine: plain C11, no PostgreSQL include path.  -ffp-contract=off keeps the
# scalar reference kernels bit-reproducible; SIMD kernels use intrinsics and
# per-function target attributes chosen at run time, so no -march here.
# ---------------------------------------------------------------------------
ENGINE_CC      ?= $(CC)
ENGINE_OPT     ?= -O2
ENGINE_CFLAGS  = -std=gnu11 $(ENGINE_OPT) -g -fPIC -D_GNU_SOURCE -Iinclude \
                 -Wall -Wextra -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes \
                 -Wshadow -Wformat=2 -Wvla -Werror=vla -Werror=implicit-function-declaration \
                 -ffp-contract=off -fno-strict-aliasing -pthread $(ENGINE_EXTRA_CFLAGS)
ENGINE_LIBS    = -lm -lpthread

$(ENGINE_OBJS): %.o: %.c $(wildcard include/phi3/*.h) $(wildcard src/engine/*.h)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -c -o $@ $<

# The glue sees the engine headers too.
$(GLUE_SRCS:.c=.o): $(wildcard include/phi3/*.h) $(wildcard include/*.h)

TOOLS = bin/phi3-run bin/phi3-mkmodel
all: $(TOOLS)

bin/%: tools/%.c $(ENGINE_OBJS) $(wildcard tools/*.h)
	@mkdir -p bin
	$(ENGINE_CC) $(ENGINE_CFLAGS) -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS)

# ---------------------------------------------------------------------------
# Engine tests: one program per subsystem in test/engine, plus scripted
# checks (tokenizer cases, forward pass against numpy) in test/engine/*.sh.
# ---------------------------------------------------------------------------
ENGINE_TESTS = $(patsubst test/engine/%.c,build/test/%,$(sort $(wildcard test/engine/test_*.c)))

build/test/%: test/engine/%.c $(ENGINE_OBJS) test/engine/harness.h
	@mkdir -p build/test
	$(ENGINE_CC) $(ENGINE_CFLAGS) -Itest/engine -o $@ $< $(ENGINE_OBJS) $(ENGINE_LIBS)

.PHONY: engine-check engine-build bench prove-check
engine-build: $(ENGINE_TESTS) $(TOOLS)

engine-check: engine-build
	@set -e; for t in $(ENGINE_TESTS); do echo "== $$t"; $$t; done
	@set -e; for s in $(sort $(wildcard test/engine/check_*.sh)); do echo "== $$s"; sh $$s; done
	@echo "engine-check: all passed"

bench: engine-build
	sh bench/run.sh

prove-check:
	$(PROVE) -I $(CURDIR)/t $(CURDIR)/t/*.pl
