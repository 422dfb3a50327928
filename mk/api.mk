# The HTTP API from Node's own fetch (issue 3): the admin panel's exact calls against the
# release binary, and the JSON shapes of docs/format.md (API). Needs Node 20+ (node:test, fetch;
# scripts/test-deps.sh installs one when the machine's is older); no npm packages. The Rust side of the API tests is tests/it/api.rs (`make test-rust`).
NODE ?= node

.PHONY: test-node
TEST_TARGETS += test-node

test-node: deps-node build
	NEOPRO_BACKUP_BIN=$(abspath $(BIN)) $(NODE) --test $(wildcard tests/node/*.test.mjs)
