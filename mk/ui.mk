# The backups page (GET /, src/serve/page.html) end to end in a real browser: Debian's Chromium
# (/usr/bin/chromium) driven by playwright-core from npm (tests/browser/, pinned by its
# package-lock.json). Node 20+, Chromium and `npm ci` come from scripts/test-deps.sh
# (group browser). Screenshots go to tests/artifacts/ (ignored by git).
NODE ?= node
BROWSER_TESTS := tests/browser

.PHONY: test-browser
TEST_TARGETS += test-browser

test-browser: deps-browser build
	cd $(BROWSER_TESTS) && NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test --test-concurrency=1 ui.test.mjs field.test.mjs
