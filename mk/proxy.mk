# The documented ways to put the API behind the admin panel's login (docs/admin-panel.md):
# the Express lines in a model panel with a session login, and the nginx lines in Debian's
# nginx with auth_request, both started by the tests on free ports (tests/proxy/).
# Node and nginx come from scripts/test-deps.sh (group proxy); express from npm.
NODE ?= node
NPM ?= npm
PROXY_TESTS := tests/proxy

.PHONY: test-proxy
TEST_TARGETS += test-proxy

$(PROXY_TESTS)/node_modules/.package-lock.json: $(PROXY_TESTS)/package.json $(PROXY_TESTS)/package-lock.json
	cd $(PROXY_TESTS) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

test-proxy: deps-proxy build $(PROXY_TESTS)/node_modules/.package-lock.json
	cd $(PROXY_TESTS) && NEOPRO_BIN=$(abspath $(BIN)) $(NODE) --test proxy.test.mjs
