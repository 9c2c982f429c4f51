# dcmtk's storescu/echoscu: tests/dicom_node/test_loopback.py sends a series with them (real DICOM
# software nobody here wrote). Included by the top-level Makefile (`-include mk/dicom.mk`);
# `dicom-deps` needs nothing else, so CI runs it as `make -f mk/dicom.mk dicom-deps`.

STORESCU ?= /usr/bin/storescu
DICOM_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: dicom-deps

dicom-deps: ## install Debian's dcmtk with apt-get (quiet, non-interactive) unless present
	@if [ -x $(STORESCU) ]; then \
		echo "$(STORESCU) is installed"; \
	else \
		$(DICOM_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(DICOM_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null && \
		$(STORESCU) --version | head -1; \
	fi
