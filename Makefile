# neopro-backup — the commands the README gives.
#   make check   while working: fmt, clippy, unit and black-box tests (no cross build, no
#                browser, no servers); under 2 minutes when the build is warm
#   make test    every test (check + API from Node, browser, offsite against SeaweedFS,
#                systemd, install script, the static builds under qemu); installs what it
#                needs first (scripts/test-deps.sh), or says what is missing
#   make demo    a demo backup and the daemon on a throwaway tree under target/demo
#   make bench   the benchmarks against the old script and server (static build), tables
#   make cross   static musl binaries for the Pis, in target/cross (see mk/cross.mk)
#   make deps    only the set-up of `make test` (make deps-GROUP: one group of it)

CARGO ?= cargo
BIN := target/release/neopro-backup
# A Node.js that scripts/test-deps.sh installed (only when the machine's is older than 20)
# comes first.
export PATH := $(CURDIR)/.xtools/node/bin:$(PATH)

.PHONY: all build demo check test test-rust lint bench clean deps
all: build

# Each mk/*.mk adds its own targets and may append to TEST_TARGETS (run by `make test`).
TEST_TARGETS :=
-include mk/*.mk

# What the tests need, by group (see scripts/test-deps.sh): a second when all is there.
# `make test` looks for everything first, so that a missing piece is named before any
# build; each target then checks its own group again (for a lone `make test-cross`).
deps:
	bash scripts/test-deps.sh
deps-%:
	bash scripts/test-deps.sh $*

build:
	$(CARGO) build --release --locked

demo: build
	bash scripts/demo.sh

lint: deps-check
	$(CARGO) fmt --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-rust: deps-check
	$(CARGO) test --locked -- --test-threads=4

check: deps-check lint test-rust

test: deps lint test-rust $(TEST_TARGETS)

# The benchmarks measure the binary that ships: the static musl build (x86_64 here).
BENCH_BIN := target/cross/x86_64-unknown-linux-musl/release/neopro-backup
bench: build cross-deps
	bash scripts/cross-build.sh x86_64-unknown-linux-musl
	BIN=$(CURDIR)/$(BENCH_BIN) bash bench/run.sh

clean:
	$(CARGO) clean
