# The backups page (GET /, src/serve/page.html) end to end in a real browser: Debian's Chromium
# (/usr/bin/chromium) driven by playwright-core from npm (tests/browser/, pinned by its
# package-lock.json). Needs Node 20+ and npm; .ci/run installs chromium. Screenshots go
# to tests/artifacts/ (ignored by git).
NODE ?= node
NPM ?= npm
BROWSER_TESTS := tests/browser

.PHONY: test-browser
TEST_TARGETS += test-browser

# npm ci only when node_modules is missing or older than the lock file.
$(BROWSER_TESTS)/node_modules/.package-lock.json: $(BROWSER_TESTS)/package.json $(BROWSER_TESTS)/package-lock.json
	cd $(BROWSER_TESTS) && $(NPM) ci --no-audit --no-fund
	touch $@

test-browser: build $(BROWSER_TESTS)/node_modules/.package-lock.json
	cd $(BROWSER_TESTS) && NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test --test-concurrency=1 ui.test.mjs
