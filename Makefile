# neopro-backup — the commands the README gives.
#   make demo    a demo backup and the daemon on a throwaway tree under target/demo
#   make test    every test (unit, black-box, API, browser, systemd, install script)
#   make bench   the benchmark against the old script / server, prints a table
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

bench: build
	bash bench/run.sh

clean:
	$(CARGO) clean

