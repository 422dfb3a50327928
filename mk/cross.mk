# Deployment: static musl binaries for the Pis, proven under qemu-user; the systemd unit
# and the install script, each with its test. Included by the top Makefile.
#   make cross-deps   toolchain pieces (rustup targets, rust-src; zig + cargo-zigbuild
#                     from PyPI into .xtools/) — idempotent, a second or two when done
#   make cross        target/cross/<triple>/release/neopro-backup for the four triples
#                     below (a target directory of their own: see scripts/cross-build.sh)
#   make test-cross   each binary under qemu-user on its Pi's CPU: backup, verify, serve
#   make test-systemd systemd-analyze verify + security (exposure <= 2.0) of the unit
#   make test-systemd-boot  the unit under a real systemd (nspawn container): sandbox
#                     (the system-call filters bind the installed build),
#                     notify, watchdog, restart, a backup through the API
#   make test-install scripts/setup-auto-backup.sh against a fake Pi in a temp folder

CROSS_TARGETS := arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf \
                 aarch64-unknown-linux-musl x86_64-unknown-linux-musl

.PHONY: cross-deps cross test-cross test-systemd test-systemd-boot test-install
TEST_TARGETS += test-systemd test-install test-cross test-systemd-boot

cross-deps:
	bash scripts/cross-deps.sh

cross: cross-deps
	bash scripts/cross-build.sh $(CROSS_TARGETS)

test-cross: deps-cross cross
	bash scripts/test-cross.sh $(CROSS_TARGETS)

test-systemd: deps-systemd build
	bash tests/systemd/test-unit.sh

test-systemd-boot: deps-systemd cross
	bash tests/systemd/test-boot.sh

# With SeaweedFS for the --recover part (a club's bucket).
test-install: deps-check deps-offsite build
	bash scripts/seaweedfs.sh start
	status=0; (set -a && . target/seaweedfs/env && set +a && bash tests/install/test-install.sh) || status=$$?; \
	bash scripts/seaweedfs.sh stop; exit $$status
