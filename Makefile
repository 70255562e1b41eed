# FlowRuntime — build, test, demo, install.
#
#   make demo      train a flow on the built-in checkerboard, save, sample, plot
#   make test      install what is missing, build, and run every suite
#   make install PREFIX=/usr/local   header, libflowrt.so, flowrt.pc, CLI
#
# Tests never touch OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE; benchmarks say so
# when they unset them.

SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= /usr/local
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
RELEASE := .build/release
LIB := $(RELEASE)/libflowrt.so
CLI := $(RELEASE)/flowrt-cli
DEB_PACKAGES := libopenblas-dev libprotobuf-c-dev libonnx-dev pkg-config valgrind abigail-tools
FIXTURES ?= ../shared/fixtures/onnx
export FLOWRT_FIXTURES := $(abspath $(FIXTURES))
CFLAGS_TEST := -std=c99 -Wall -Wextra -Werror -pedantic -O2

.PHONY: all deps build lib test test-swift test-c test-python venv demo install uninstall clean bench-forward bench-train check-symbols test-c-valgrind test-c-asan examples bench-python

all: build

# Debian packages, installed only when missing (needs root; says so otherwise).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	fi

# --static-swift-stdlib: the CLI runs without a Swift installation too (the
# library links the runtime statically through its own linker settings).
# SwiftPM does not track include/flowrt.h, the header of the CFlowRT system
# module: after the header changes (a version macro, a field appended to a
# struct) it would relink stale CAPI objects, whose MemoryLayout sizes and
# version numbers are the old header's. So when the header is newer than a
# build's library, that build's header users are compiled again.
# $(call header_refresh,BUILD_DIR)
header_refresh = @if [ -e $(1)/libflowrt.so ] && [ include/flowrt.h -nt $(1)/libflowrt.so ]; then \
	  echo "include/flowrt.h changed: recompiling CAPI and flowrt-cli in $(1)"; \
	  rm -rf $(1)/CAPI.build $(1)/flowrt_cli.build $(1)/libflowrt.so $(1)/flowrt-cli; fi

build: deps
	$(call header_refresh,$(RELEASE))
	$(SWIFT) build -c release --static-swift-stdlib
	ln -sf libflowrt.so $(RELEASE)/libflowrt.so.0

lib: build

# A local virtual environment for the Python tests (numpy, pytest, onnx, onnxruntime).
$(VENV)/.ok: bindings/python/requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -r bindings/python/requirements-test.txt
	touch $@
venv: $(VENV)/.ok

test: deps build venv
	$(MAKE) test-swift
	$(MAKE) test-c
	$(MAKE) examples
	$(MAKE) test-python

test-swift:
	$(SWIFT) test 2>&1 | tee .build/swift-test.log | grep -E "error|failed|Executed|passed after|failed after" ; \
	  test $${PIPESTATUS[0]} -eq 0

C_TESTS := test_api test_threads test_datasets test_onnx
C_TEST_BINS := $(addprefix bindings/c/tests/,$(C_TESTS))

bindings/c/tests/%: bindings/c/tests/%.c bindings/c/tests/check.h include/flowrt.h $(LIB)
	$(CC) $(CFLAGS_TEST) -Iinclude $< -L$(RELEASE) -lflowrt -Wl,-rpath,$(abspath $(RELEASE)) -lm -lpthread -o $@

# The C suites, then the same suites under valgrind (memcheck: zero errors,
# zero leaks) and under AddressSanitizer + UndefinedBehaviorSanitizer with
# the library itself instrumented (a separate debug build in .build-asan).
test-c: $(C_TEST_BINS) bindings/c/tests/test_alloc check-symbols
	@for t in $(C_TEST_BINS); do echo "== $$t"; ./$$t || exit 1; done
	@echo "== bindings/c/tests/test_alloc (plain only: it interposes malloc)"; ./bindings/c/tests/test_alloc
	$(MAKE) test-c-valgrind test-c-asan

# Valgrind 3.19 cannot read the DWARF 5 debug info Swift emits, so the
# suite runs against a debug-stripped copy of the library.
VG_DIR := .build/valgrind
test-c-valgrind: $(LIB)
	mkdir -p $(VG_DIR)
	objcopy --strip-debug $(LIB) $(VG_DIR)/libflowrt.so
	ln -sf libflowrt.so $(VG_DIR)/libflowrt.so.0
	@for t in $(C_TESTS); do \
	  $(CC) $(CFLAGS_TEST) -Iinclude bindings/c/tests/$$t.c -L$(VG_DIR) -lflowrt -Wl,-rpath,$(abspath $(VG_DIR)) \
	    -lm -lpthread -o $(VG_DIR)/$$t || exit 1; \
	  echo "== valgrind $$t"; \
	  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    --show-leak-kinds=definite,indirect ./$(VG_DIR)/$$t 50 | tail -1; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

ASAN_LIB := .build-asan/debug
test-c-asan:
	$(call header_refresh,$(ASAN_LIB))
	$(SWIFT) build --product flowrt --scratch-path .build-asan -Xswiftc -sanitize=address -Xcc -fsanitize=address >/dev/null
	ln -sf libflowrt.so $(ASAN_LIB)/libflowrt.so.0
	@for t in $(C_TESTS); do \
	  $(CC) $(CFLAGS_TEST) -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -Iinclude bindings/c/tests/$$t.c \
	    -L$(ASAN_LIB) -lflowrt -Wl,-rpath,$(abspath $(ASAN_LIB)) -lm -lpthread -o .build-asan/$$t || exit 1; \
	  echo "== asan+ubsan $$t"; ASAN_OPTIONS=detect_leaks=1 ./.build-asan/$$t | tail -1; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# struct_layout prints the C layout of the header's structs for
# test_struct_layout.py (the ctypes Structures must match it).
STRUCT_LAYOUT := bindings/c/tests/struct_layout
$(STRUCT_LAYOUT): bindings/c/tests/struct_layout.c include/flowrt.h
	$(CC) $(CFLAGS_TEST) -Iinclude $< -o $@

test-python: venv $(STRUCT_LAYOUT)
	FLOWRT_LIBRARY=$(abspath $(LIB)) FLOWRT_CLI=$(abspath $(CLI)) FLOWRT_FIXTURES=$(abspath $(FIXTURES)) \
	  FLOWRT_STRUCT_LAYOUT=$(abspath $(STRUCT_LAYOUT)) \
	  PYTHONPATH=$(abspath bindings/python) $(VPY) -m pytest -q bindings/python/tests

# Trains the default flow on the checkerboard, saves demo-out/demo.onnx,
# prints held-out NLL against the true entropy, writes demo-out/*.png.
demo: build
	$(CLI) demo --out-dir demo-out

bench-forward: build
	bash bench/forward/run.sh

VERSION := $(shell sed -n 's/^#define FLOWRT_VERSION_STRING "\(.*\)"/\1/p' include/flowrt.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))

# Header, libflowrt.so.VERSION with its soname and dev symlinks, flowrt.pc,
# and the CLI as `flowrt`. DESTDIR is honoured for staged installs.
install: build
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/flowrt.h $(DESTDIR)$(PREFIX)/include/flowrt.h
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libflowrt.so.$(VERSION)
	strip --strip-debug $(DESTDIR)$(PREFIX)/lib/libflowrt.so.$(VERSION)
	ln -sf libflowrt.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libflowrt.so.$(SOMAJOR)
	ln -sf libflowrt.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libflowrt.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' bindings/c/flowrt.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/flowrt.pc
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/flowrt

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/flowrt.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/flowrt.pc \
	  $(DESTDIR)$(PREFIX)/lib/libflowrt.so $(DESTDIR)$(PREFIX)/lib/libflowrt.so.$(SOMAJOR) \
	  $(DESTDIR)$(PREFIX)/lib/libflowrt.so.$(VERSION) $(DESTDIR)$(PREFIX)/bin/flowrt

# The library exports flowrt_* only and needs no Swift runtime.
check-symbols: build
	@bad=$$(nm -D --defined-only $(LIB) | awk '$$2 ~ /^[A-Z]$$/ && $$2 != "A" && $$3 !~ /^flowrt_/ {print $$3}'); \
	if [ -n "$$bad" ]; then echo "exported non-flowrt symbols: $$bad"; exit 1; fi; \
	if ldd $(LIB) | grep -q swift; then echo "libflowrt.so depends on the Swift runtime"; exit 1; fi; \
	echo "libflowrt.so: exports $$(nm -D --defined-only $(LIB) | grep -c ' T flowrt_') flowrt_* functions only; no Swift runtime dependency"

clean:
	rm -rf .build .build-asan .build-fuzz $(C_TEST_BINS) $(STRUCT_LAYOUT)

# The flows section's C suite (issue 4) joins the C suites above.
C_TESTS += test_flow
C_TEST_BINS += bindings/c/tests/test_flow
test-c: bindings/c/tests/test_flow

# C examples, built the way a user builds them: against an installed copy of
# the library (staged in .build/stage) through pkg-config, then run.
STAGE := $(abspath .build/stage)
EXAMPLES := $(basename $(notdir $(wildcard bindings/c/examples/*.c)))
examples: build
	$(MAKE) install PREFIX=$(STAGE) >/dev/null
	@mkdir -p .build/examples
	@for e in $(EXAMPLES); do \
	  $(CC) -std=c99 -Wall -Wextra -Werror -pedantic bindings/c/examples/$$e.c \
	    $$(PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig pkg-config --cflags --libs flowrt) \
	    -Wl,-rpath,$(STAGE)/lib -o .build/examples/$$e || exit 1; \
	done
	@echo "built: $(EXAMPLES) (in .build/examples)"
	cd .build/examples && ./sample_mlp >/dev/null && echo "sample_mlp: ok"
	cd .build/examples && ./train_toy 8gaussians 1000 toy.onnx 2>/dev/null | tee train_toy.txt \
	  && awk '/excess/ {gsub(/[()]/, ""); if ($$NF > 0.5) {print "train_toy: excess NLL " $$NF " > 0.5"; exit 1}}' train_toy.txt \
	  && ./sample_onnx toy.onnx 3 >/dev/null && echo "train_toy: ok (trained, scored, saved, reloaded)"
	cd .build/examples && ./sample_onnx $(abspath $(FIXTURES))/mlp_silu__legacy__op17.onnx 100 1 > samples.txt \
	  && awk '{print $$1 "," $$2}' samples.txt > samples.csv && ./loglik_csv $(abspath $(FIXTURES))/mlp_silu__legacy__op17.onnx samples.csv > loglik.txt \
	  && paste -d' ' samples.txt loglik.txt | awk '{d = $$3 - $$4; if (d < 0) d = -d; if (d > 2e-3) bad++} END {if (bad) {print "sample vs loglik_csv disagree on " bad " rows"; exit 1} else print "sample_onnx, loglik_csv: ok (log-densities agree within 2e-3)"}' 

# Regenerates Sources/ONNXProto from Debian's onnx.proto (needs protobuf-c-compiler;
# ordinary builds use the committed output and never need it).
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
.PHONY: regen-onnx-proto
regen-onnx-proto:
	@command -v protoc-c >/dev/null || { echo "protoc-c missing: apt-get install protobuf-c-compiler"; exit 1; }
	tmp=$$(mktemp -d) && cp $(ONNX_PROTO) $$tmp/onnx.proto && \
	  protoc-c --proto_path=$$tmp --c_out=$$tmp $$tmp/onnx.proto && \
	  sed 's|#include "onnx.pb-c.h"|#include "include/onnx.pb-c.h"|' $$tmp/onnx.pb-c.c > Sources/ONNXProto/onnx.pb-c.c && \
	  cp $$tmp/onnx.pb-c.h Sources/ONNXProto/include/onnx.pb-c.h && rm -rf $$tmp

# libFuzzer harnesses (fuzz/README.md), with the library instrumented
# (coverage + AddressSanitizer, LeakSanitizer) in .build-fuzz:
#   onnx_buffer  flowrt_model_load_onnx_buffer      (C, fuzz/onnx_buffer_fuzzer.c)
#   checkpoint   flowrt_trainer_load_checkpoint     (C, fuzz/checkpoint_fuzzer.c)
#   npy          NPY.decode, NPY.Reader             (Swift, fuzz/io_fuzzer.swift -D FUZZ_NPY)
#   csv          CSV.decode                         (Swift, fuzz/io_fuzzer.swift -D FUZZ_CSV)
#   image        ImageData.decodeIDX / decodeNPY    (Swift, fuzz/io_fuzzer.swift -D FUZZ_IMAGE)
# `make fuzz FUZZER=npy FUZZ_SECONDS=600` runs one for FUZZ_SECONDS of wall
# time on its committed seeds (fuzz/corpus for onnx_buffer, fuzz/corpus-NAME
# otherwise) plus a growing corpus in .build-fuzz/work-NAME (not committed);
# crashes land in .build-fuzz/artifacts/. `make fuzz-regress` runs every
# harness once over its committed corpus (seeds and regression cases).
# The Swift harnesses link FlowRuntime's instrumented object files directly
# (libflowrt.so exports the C ABI only).
FUZZ_SECONDS ?= 600
FUZZER ?= onnx_buffer
FUZZERS := onnx_buffer checkpoint npy csv image
FUZZ_SCRATCH := .build-fuzz
FUZZ_LIB := $(FUZZ_SCRATCH)/debug
FUZZ_CORPUS = $(if $(filter onnx_buffer,$(1)),fuzz/corpus,fuzz/corpus-$(1))
FUZZ_SWIFT_FLAGS := -parse-as-library -g -Onone -sanitize=fuzzer,address -I $(FUZZ_LIB)/Modules \
  -Xcc -fmodule-map-file=$(FUZZ_LIB)/CKernels.build/module.modulemap \
  -Xcc -fmodule-map-file=$(FUZZ_LIB)/ONNXProto.build/module.modulemap \
  -Xcc -fmodule-map-file=Sources/CBLAS/module.modulemap -Xcc -fmodule-map-file=Sources/CZlib/module.modulemap \
  -Xcc -ISources/CKernels/include -Xcc -ISources/ONNXProto/include
.PHONY: fuzz fuzz-build fuzz-regress
fuzz-build:
	$(call header_refresh,$(FUZZ_LIB))
	$(SWIFT) build --product flowrt --scratch-path $(FUZZ_SCRATCH) -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address >/dev/null
	ln -sf libflowrt.so $(FUZZ_LIB)/libflowrt.so.0
	@for f in onnx_buffer checkpoint; do \
	  clang -g -O1 -fsanitize=fuzzer,address $(FUZZ_CFLAGS) -Iinclude fuzz/$${f}_fuzzer.c -L$(FUZZ_LIB) -lflowrt \
	    -Wl,-rpath,$(abspath $(FUZZ_LIB)) -o $(FUZZ_SCRATCH)/$${f}_fuzzer 2>&1 | grep -v 'Cannot export local symbol'; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
	@for f in npy csv image; do \
	  F=$$(echo $$f | tr a-z A-Z); \
	  $(SWIFT)c $(FUZZ_SWIFT_FLAGS) -D FUZZ_$$F -module-name $${f}_fuzzer fuzz/io_fuzzer.swift \
	    $(FUZZ_LIB)/FlowRuntime.build/*.o $(FUZZ_LIB)/CKernels.build/*.o $(FUZZ_LIB)/ONNXProto.build/*.o \
	    -lopenblas -lprotobuf-c -lz -o $(FUZZ_SCRATCH)/$${f}_fuzzer 2>&1 | grep -v 'Cannot export local symbol'; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
	@echo "built: $(patsubst %,$(FUZZ_SCRATCH)/%_fuzzer,$(FUZZERS))"
fuzz: fuzz-build
	mkdir -p $(FUZZ_SCRATCH)/work-$(FUZZER) $(FUZZ_SCRATCH)/artifacts
	ASAN_OPTIONS=detect_leaks=1 ./$(FUZZ_SCRATCH)/$(FUZZER)_fuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
	  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_SCRATCH)/artifacts/$(FUZZER)- \
	  $(FUZZ_SCRATCH)/work-$(FUZZER) $(call FUZZ_CORPUS,$(FUZZER))
fuzz-regress: fuzz-build
	@for f in $(FUZZERS); do \
	  c=$$([ $$f = onnx_buffer ] && echo fuzz/corpus || echo fuzz/corpus-$$f); \
	  echo "== $$f over $$c ($$(ls $$c | wc -l) files)"; \
	  ASAN_OPTIONS=detect_leaks=1 ./$(FUZZ_SCRATCH)/$${f}_fuzzer -runs=0 -timeout=10 -rss_limit_mb=2048 $$c 2>&1 | tail -n 1; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# Transport and likelihood against torchdiffeq / flow_matching (issue 4).
bench-transport:
	bash bench/transport/run.sh

# Training steps/s and time to a held-out loss against PyTorch eager (bench/train).
bench-train: build
	bash bench/train/run.sh

# The training section's C suite (issue 5) joins the C suites above.
C_TESTS += test_training
C_TEST_BINS += bindings/c/tests/test_training
test-c: bindings/c/tests/test_training

# Issue 9: FlowRuntime against PyTorch (same network and loss, torchdiffeq),
# zuko's maximum-likelihood CNF and NSF on five datasets; one thread per run,
# runs in sequence (~25 min). Writes bench/quality/results.md and PNG plots.
# QUALITY_SCALE=tiny is a 10-minute smoke run. Own venv: bench/quality/.venv.
QUALITY_SCALE ?= full
.PHONY: bench-quality
bench-quality: deps
	bash bench/quality/run.sh $(QUALITY_SCALE)

# The Python binding's per-call overhead against the C call (issue 7).
bench-python:
	bash bench/python/run.sh

# The densities-and-SDE section's C suite (issue 8) joins the C suites above.
C_TESTS += test_sde
C_TEST_BINS += bindings/c/tests/test_sde
test-c: bindings/c/tests/test_sde

# Beyond the ODE: schedules and OT coupling vs kinetic energy, NFE, NLL (bench/paths).
.PHONY: bench-paths
bench-paths: build
	bash bench/paths/run.sh

# Host-supplied interpolant schedules (FLOWRT_INTERPOLANT_CUSTOM) join the C suites above.
C_TESTS += test_schedule
C_TEST_BINS += bindings/c/tests/test_schedule
test-c: bindings/c/tests/test_schedule

# Issue 16: empty batches, sizes printed unsigned, huge batches under
# RLIMIT_AS in forked children (a status, never a signal), samples
# independent of log-density requests. A plain run only: valgrind and ASan
# need far more address space than the limit leaves.
.PHONY: test-c-limits
test-c-limits: bindings/c/tests/test_limits
	@echo "== bindings/c/tests/test_limits (plain only: RLIMIT_AS)"; ./bindings/c/tests/test_limits
test-c: test-c-limits

# Path-length optimisation from C (issue 16 item 5): a trainer that learns
# a Fourier interpolant, its flow saved and loaded back. Valgrind and ASan
# run it with fewer optimiser steps (argv[1]).
C_TESTS += test_path_length
C_TEST_BINS += bindings/c/tests/test_path_length
test-c: bindings/c/tests/test_path_length

# The item 4 review's additions (docs/abi-review.md): limits, the coupling
# in the trainer params, one sampling argument order, SDE progress and stats.
C_TESTS += test_abi_review
C_TEST_BINS += bindings/c/tests/test_abi_review
test-c: bindings/c/tests/test_abi_review

# The dense kernels (GEMM, convolutions, softmax, GroupNorm) against naive
# double-precision references, on the AVX-512 and the portable paths (issue 13).
# clang (the Swift toolchain's): the AVX-512 paths are written for it, as SwiftPM builds them.
.PHONY: test-c-kernels
KERNEL_TEST := .build/test_conv_kernels
$(KERNEL_TEST): bindings/c/tests/kernels/test_conv_kernels.c $(wildcard Sources/CKernels/*.c Sources/CKernels/*.h Sources/CKernels/include/*.h)
	@mkdir -p .build
	clang -std=c99 -Wall -Wextra -Werror -pedantic -O2 $< Sources/CKernels/*.c -ISources/CKernels/include -lm -o $@
test-c-kernels: $(KERNEL_TEST)
	@echo "== $(KERNEL_TEST)"; ./$(KERNEL_TEST) | tail -2
test-c: test-c-kernels

# U-Net / DiT velocity: FlowRuntime (Python binding) vs onnxruntime vs PyTorch
# eager, batch 1/16/64, 1 and 2 threads (~6 min). Writes bench/images/results.md.
.PHONY: bench-images
bench-images: build
	bash bench/images/run.sh

# Image flows side by side (issue 14): U-Net training steps/s and an
# equal-wall-clock race against PyTorch eager, then sampling and Hutchinson
# log-densities against flow_matching's ODESolver (~35 min with BUDGET=600).
# Writes bench/images/results-training.md.
.PHONY: bench-images-training
bench-images-training: build
	bash bench/images/run_training.sh

# Simulation-based inference: FlowRuntime's conditional flow vs sbi's FMPE and
# NPE (zuko NSF) on Gaussian-linear and two moons, 10k and 100k simulations, one
# thread (~30 min on a quiet machine). Writes bench/conditional/results.md.
.PHONY: bench-conditional
bench-conditional: build
	bash bench/conditional/run.sh

# ABI check (issue 16, item 6). `make test-abi` (part of `make test`)
# compares the C ABI of this tree with the committed baseline
# abi/libflowrt.abi using abidiff (Debian's abigail-tools): removed or
# changed functions, changed symbol versions and changed struct layouts
# (a field appended to a params struct too: compatible through struct_size,
# but an ABI change all the same) fail with abidiff's report; added
# functions pass (counted in the summary).
# libflowrt.so's functions are Swift (@_cdecl), whose DWARF libabigail cannot
# read, so the ABI is taken from stubs of every header function
# (abi/stubs.py) compiled with -g and linked with the library's own version
# script and soname; test-abi first checks that the real library exports
# exactly those symbols at those versions. `make abi-baseline` rewrites
# the baseline: run it only for an intentional ABI change (see CHANGELOG).
ABI_DIR := .build/abi
ABI_STUB := $(ABI_DIR)/libflowrt.so.0
ABI_DUMP := $(ABI_DIR)/libflowrt.abi
ABI_BASELINE := abi/libflowrt.abi
# name@version of every exported flowrt_* function in `objdump -T` output.
ABI_SYMS := awk '$$4 == ".text" && $$NF ~ /^flowrt_/ {v = ""; for (i = 5; i < NF; i++) if ($$i ~ /^FLOWRT_/) v = $$i; print $$NF "@" v}'
.PHONY: abi-dump abi-baseline test-abi
abi-dump: build
	@mkdir -p $(ABI_DIR)
	python3 abi/stubs.py include/flowrt.h > $(ABI_DIR)/stubs.c
	$(CC) -std=c99 -g -O0 -w -shared -fPIC -Iinclude $(ABI_DIR)/stubs.c -Wl,-soname=libflowrt.so.0 \
	  -Wl,--version-script=Sources/CAPI/exports.map -o $(ABI_STUB)
	@objdump -T $(LIB) | $(ABI_SYMS) | sort > $(ABI_DIR)/library.syms
	@objdump -T $(ABI_STUB) | $(ABI_SYMS) | sort > $(ABI_DIR)/header.syms
	@if ! diff -u $(ABI_DIR)/header.syms $(ABI_DIR)/library.syms > $(ABI_DIR)/syms.diff; then \
	  echo "libflowrt.so does not export exactly the functions of flowrt.h (- header only, + library only):"; \
	  grep '^[-+][a-z]' $(ABI_DIR)/syms.diff; exit 1; fi
	abidw --no-show-locs --no-comp-dir-path --no-corpus-path $(ABI_STUB) > $(ABI_DUMP)
	@echo "$(ABI_DUMP): $$(wc -l < $(ABI_DIR)/header.syms) functions ($$(grep -c '@FLOWRT_0$$' $(ABI_DIR)/header.syms) FLOWRT_0)"
abi-baseline: abi-dump
	@mkdir -p abi
	cp $(ABI_DUMP) $(ABI_BASELINE)
	@echo "wrote $(ABI_BASELINE): commit it with the change that moved the ABI"
test-abi: abi-dump
	@abidiff --no-added-syms $(ABI_BASELINE) $(ABI_DUMP) > $(ABI_DIR)/abidiff.txt; \
	rc=$$?; \
	if [ $$rc -ne 0 ]; then cat $(ABI_DIR)/abidiff.txt; \
	  echo "test-abi: the C ABI differs from $(ABI_BASELINE) (abidiff status $$rc); if intended, make abi-baseline"; exit 1; fi; \
	added=$$(abidiff $(ABI_BASELINE) $(ABI_DUMP) | grep -c "^  \[A\]"); \
	echo "test-abi: no incompatible change against $(ABI_BASELINE) ($$added functions added)"
test: test-abi

# The version everywhere it appears (issue 16, item 8): the header's macros
# (the source of truth; VERSION above), libflowrt.so's flowrt_version_string
# and flowrt_version_number, the CLI's --version and `flowrt info`, the
# Python package's metadata, and the names `make install` gives the library
# and flowrt.pc. Prints them and fails if any differs.
RELEASE_STAGE := .build/release-check
.PHONY: release-check
release-check: build
	@rm -rf $(RELEASE_STAGE) && $(MAKE) -s install PREFIX=$(abspath $(RELEASE_STAGE)) >/dev/null
	@number=$$(printf '#include "flowrt.h"\nFLOWRT_VERSION_NUMBER\n' | $(CC) -E -P -Iinclude - | tail -n 1 | tr -d ' '); \
	header="$(VERSION)"; header_number=$$(( $$number )); \
	library=$$($(PYTHON) -c 'import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.flowrt_version_string.restype = ctypes.c_char_p; print(l.flowrt_version_string().decode(), l.flowrt_version_number())' $(abspath $(LIB))); \
	cli=$$($(CLI) --version); info=$$($(CLI) info | head -n 1 | awk '{print $$2}'); \
	python=$$(sed -n 's/^version = "\(.*\)"/\1/p' bindings/python/pyproject.toml); \
	pc=$$(PKG_CONFIG_PATH=$(abspath $(RELEASE_STAGE))/lib/pkgconfig pkg-config --modversion flowrt); \
	so=$$(cd $(RELEASE_STAGE)/lib && ls libflowrt.so.*.*.* | sed 's/^libflowrt\.so\.//'); \
	soname=$$(objdump -p $(LIB) | awk '$$1 == "SONAME" {print $$2}'); \
	printf '%-34s %s\n' "header FLOWRT_VERSION_STRING" "$$header" "header FLOWRT_VERSION_NUMBER" "$$header_number" \
	  "library version string, number" "$$library" "flowrt --version" "$$cli" "flowrt info" "$$info" \
	  "Python package (pyproject.toml)" "$$python" "installed flowrt.pc" "$$pc" "installed libflowrt.so.*" "$$so" "soname" "$$soname"; \
	bad=""; \
	for v in "$${library% *}" "$$cli" "$$info" "$$python" "$$pc" "$$so"; do [ "$$v" = "$$header" ] || bad="$$bad '$$v'"; done; \
	[ "$${library#* }" = "$$header_number" ] || bad="$$bad number $${library#* }"; \
	[ "$$soname" = "libflowrt.so.$(SOMAJOR)" ] || bad="$$bad soname $$soname"; \
	if [ -n "$$bad" ]; then echo "release-check: differs from the header's $$header:$$bad"; exit 1; fi; \
	echo "release-check: every version is $$header"

# Conditional flows (issue 15): contexts in sampling, transport, encoding,
# log-densities and training; join the C suites above.
C_TESTS += test_conditional
C_TEST_BINS += bindings/c/tests/test_conditional
test-c: bindings/c/tests/test_conditional
# Image flows (issue 14): zlib reads the gzip-compressed IDX files of Debian's
# dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*-ubyte.gz).
DEB_PACKAGES += zlib1g-dev dataset-fashion-mnist

# The U-Net image velocity's C suite (issue 14) joins the C suites above.
C_TESTS += test_images
C_TEST_BINS += bindings/c/tests/test_images
test-c: bindings/c/tests/test_images

# A small U-Net flow on Fashion-MNIST (issue 14): trains (at most --minutes,
# default 8), writes demo-out/fashion-samples.png next to fashion-real.png,
# reports test bits/dim ± standard error and the nearest-training-neighbour check.
.PHONY: demo-images
demo-images: build
	$(CLI) demo-images --out-dir demo-out

# Issue 17: the bf16 evaluation path against float32 and torchdiffeq —
# kernel, velocity and RK4 speed on one thread, endpoint deviation, energy
# distance and held-out NLL (~5 min). Writes bench/bf16/results.md.
.PHONY: bench-bf16
bench-bf16:
	bash bench/bf16/run.sh

# Issue 17: 1- and 2-thread throughput of every workload (velocity, RK4,
# dopri5, exact and Hutchinson log-densities, SDE, image networks, training)
# for FlowRuntime, PyTorch and onnxruntime, one command (~5 min). Writes
# bench/scaling/results.md. Sizes by environment (see bench/scaling/bench.py).
.PHONY: bench-scaling
bench-scaling: build
	bash bench/scaling/run.sh
