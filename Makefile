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

.PHONY: all deps build lib test test-swift test-c test-python venv demo install uninstall clean bench-forward

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

test-c: bindings/c/tests/test_api
	./bindings/c/tests/test_api

test-python: venv
	FLOWRT_LIBRARY=$(abspath $(LIB)) FLOWRT_CLI=$(abspath $(CLI)) FLOWRT_FIXTURES=$(abspath ../shared/fixtures/onnx) \
	  PYTHONPATH=bindings/python $(VPY) -m pytest -q bindings/python/tests

demo: build
	@echo "make demo arrives with the training issue; until then: make test"

bench-forward: build
	bash bench/forward/run.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/flowrt.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/flowrt

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/flowrt.h $(DESTDIR)$(PREFIX)/lib/libflowrt.so* $(DESTDIR)$(PREFIX)/bin/flowrt

clean:
	rm -rf .build bindings/c/tests/test_api

# C tests of the flows section (sampling, transport, log-densities, errors).
bindings/c/tests/test_flow: bindings/c/tests/test_flow.c include/flowrt.h $(LIB)
	$(CC) $(CFLAGS_TEST) -Iinclude $< -L$(RELEASE) -lflowrt -Wl,-rpath,$(abspath $(RELEASE)) -lm -o $@

test-c-flow: bindings/c/tests/test_flow
	./bindings/c/tests/test_flow
