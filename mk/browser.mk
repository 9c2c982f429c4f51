# The web page's real-browser test (tests/integration/test_browser.py): Debian's chromium driven by Playwright
# (pinned in requirements-dev.in; never `playwright install`, which downloads a browser).
# Included by the top-level Makefile (`-include mk/browser.mk`), which defines PY and `venv`;
# `browser-deps` needs neither, so CI runs it as `make -f mk/browser.mk browser-deps`.

CHROMIUM ?= /usr/bin/chromium
PY ?= .venv/bin/python
SCREENSHOT_DIR ?= docs/screenshots
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: browser-deps browser-test screenshot

browser-deps: ## install Debian's chromium with apt-get (quiet, non-interactive) unless present
	@if [ -x $(CHROMIUM) ]; then \
		echo "$(CHROMIUM) is installed"; \
	else \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && \
		$(CHROMIUM) --version; \
	fi

browser-test: venv ## the page's unit tests and its real-browser test (fails if chromium is absent)
	CT_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/gateway/test_page.py tests/integration/test_browser.py

screenshot: venv ## refresh $(SCREENSHOT_DIR)/web-page.png from the browser test (commit it)
	CT_REQUIRE_BROWSER=1 CT_SCREENSHOT_DIR=$(SCREENSHOT_DIR) \
		$(PY) -m pytest -q tests/integration/test_browser.py -k series_upload
	@ls -l $(SCREENSHOT_DIR)/web-page.png
