# neopro-backup — the commands the README gives.
#   make demo    a demo backup and the daemon on a throwaway tree under target/demo
#   make test    every test (unit, black-box, API, browser, systemd, install script)
#   make bench   the benchmarks against the old script and server (static build), tables
#   make cross   static musl binaries for the Pis (see mk/cross.mk)

CARGO ?= cargo
BIN := target/release/neopro-backup

.PHONY: all build demo test test-rust lint bench clean
all: build

# Each mk/*.mk adds its own targets and may append to TEST_TARGETS (run by `make test`).
TEST_TARGETS :=
-include mk/*.mk

build:
	$(CARGO) build --release --locked

demo: build
	bash scripts/demo.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-rust:
	$(CARGO) test --locked -- --test-threads=4

test: lint test-rust $(TEST_TARGETS)

# The benchmarks measure the binary that ships: the static musl build (x86_64 here).
BENCH_BIN := target/x86_64-unknown-linux-musl/release/neopro-backup
bench: build cross-deps
	bash scripts/cross-build.sh x86_64-unknown-linux-musl
	BIN=$(CURDIR)/$(BENCH_BIN) bash bench/run.sh

clean:
	$(CARGO) clean

