# libconnpool: the two commands, and a few conveniences around CMake.
#
#   make demo      build the demo and run it (a C proxy with and without the pool)
#   make test      build everything and run every test: Rust tests, then ctest
#   make install   PREFIX=/usr/local: the shared and static library, header, .pc, CMake package
#
# demo and test first check the tools they need (scripts/ensure-tools.sh) and install
# missing ones with apt-get when run as root. The CMake commands underneath are the same
# as in README.md; CMakePresets.json has them as presets too.
BUILD        ?= build
JOBS         ?= 2
PREFIX       ?= /usr/local
# Seconds the fuzz test fuzzes for (0: skip it, and do not install cargo-fuzz).
FUZZ_SECONDS ?= 60
export FUZZ_SECONDS

# rustup's default place, for shells that have not sourced ~/.cargo/env.
export PATH := $(PATH):$(HOME)/.cargo/bin
# The CMake build's own make runs as a top-level one: its -j$(JOBS), no jobserver from
# an outer make -j, and (MAKELEVEL=, which make always exports) no "Entering directory"
# lines around every step.
unexport MAKEFLAGS MFLAGS
CMAKE_BUILD = MAKELEVEL= cmake --build $(BUILD) -j$(JOBS)

CONFIGURE = cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCONNPOOL_FUZZ_SECONDS=$(FUZZ_SECONDS)

.PHONY: all build demo test install clean help
# One build tree: never two of these at once, even under make -j.
.NOTPARALLEL:

all: build

help:
	@sed -n '2,7p' Makefile

build:
	$(CONFIGURE)
	$(CMAKE_BUILD)

demo:
	@scripts/ensure-tools.sh demo
	$(CONFIGURE)
	$(CMAKE_BUILD) --target demo
	./$(BUILD)/demo

# ctest runs in a shell line of its own so that the fuzz test's outcome is printed
# even when another test failed.
test:
	@scripts/ensure-tools.sh test
	$(CONFIGURE)
	$(CMAKE_BUILD)
	cargo test --locked
	@scripts/fuzz-note.sh plan $(BUILD)
	@echo "ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)"; \
	  ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS); rc=$$?; \
	  scripts/fuzz-note.sh result $(BUILD); exit $$rc

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
