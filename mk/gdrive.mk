# The Google Drive fake of the tests (tests/gdrive/fake_google.py, tests/gdrive/README.md)
# checked against Google's own Python client: google-api-python-client and google-auth,
# pinned, from PyPI into .xtools/gdrive-venv (scripts/gdrive-venv.sh, installed once).
# test-gdrive-fake starts nothing that outlives it: fidelity.py starts a fresh fake on a
# free port and stops it; then check_requests.py checks the fake's request log against
# drive.v3.json (scripts/test-gdrive-fake.sh). A few seconds.
# Included by the top Makefile.

.PHONY: deps-gdrive test-gdrive-fake test-gdrive
TEST_TARGETS += test-gdrive-fake test-gdrive

deps-gdrive:
	bash scripts/gdrive-venv.sh

test-gdrive-fake:
	bash scripts/test-gdrive-fake.sh

# The binary against the fake (tests/it/gdrive.rs): login, the copies after each run
# byte-exact through Google's client, each fault, recover from Drive, and every request
# the binary made checked against Drive v3's discovery document. Under a minute.
test-gdrive: deps-gdrive deps-offsite
	$(CARGO) test --locked --test it -- --include-ignored --test-threads=4 gdrive::

# « Connecter Google Drive » on the backups page in Chromium, against the fake Google
# (tests/browser/gdrive.test.mjs: python3 only, no venv; the fake on a free port).
.PHONY: test-gdrive-browser
TEST_TARGETS += test-gdrive-browser
test-gdrive-browser: deps-browser build
	cd $(BROWSER_TESTS) && NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test --test-concurrency=1 gdrive.test.mjs
