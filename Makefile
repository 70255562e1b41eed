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
DEB_PACKAGES := libopenblas-dev libprotobuf-c-dev libonnx-dev pkg-config
CFLAGS_TEST := -std=c99 -Wall -Wextra -Werror -pedantic -O2

.PHONY: all deps build lib test test-swift test-c test-python venv demo install uninstall clean bench-forward check-symbols

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

build: deps
	$(SWIFT) build -c release
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
	$(MAKE) test-python

test-swift:
	$(SWIFT) test 2>&1 | tee .build/swift-test.log | grep -E "error|failed|Executed|passed after|failed after" ; \
	  test $${PIPESTATUS[0]} -eq 0

bindings/c/tests/test_api: bindings/c/tests/test_api.c include/flowrt.h $(LIB)
	$(CC) $(CFLAGS_TEST) -Iinclude $< -L$(RELEASE) -lflowrt -Wl,-rpath,$(abspath $(RELEASE)) -lm -o $@

test-c: bindings/c/tests/test_api check-symbols
	./bindings/c/tests/test_api

test-python: venv
	FLOWRT_LIBRARY=$(abspath $(LIB)) FLOWRT_CLI=$(abspath $(CLI)) FLOWRT_FIXTURES=$(abspath ../shared/fixtures/onnx) \
	  PYTHONPATH=bindings/python $(VPY) -m pytest -q bindings/python/tests

demo: build
	@echo "make demo arrives with the training issue; until then: make test"

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
	rm -rf .build bindings/c/tests/test_api
