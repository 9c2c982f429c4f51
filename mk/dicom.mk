# Real DICOM software nobody here wrote, for tests/dicom_node/: dcmtk's storescu/echoscu send a
# series (test_loopback.py), Orthanc plays the PACS (test_orthanc.py; the tests start their own
# instance on free loopback ports, never the packaged service's configuration). Included by the top-level Makefile (`-include mk/dicom.mk`);
# `dicom-deps` needs nothing else, so CI runs it as `make -f mk/dicom.mk dicom-deps`.

STORESCU ?= /usr/bin/storescu
ORTHANC ?= /usr/sbin/Orthanc
DICOM_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: dicom-deps

dicom-deps: ## install Debian's dcmtk and orthanc with apt-get (quiet, non-interactive) unless present
	@if [ -x $(STORESCU) ] && [ -x $(ORTHANC) ]; then \
		echo "$(STORESCU) and $(ORTHANC) are installed"; \
	else \
		$(DICOM_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(DICOM_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk orthanc >/dev/null && \
		$(STORESCU) --version | head -1 && $(ORTHANC) --version | head -1; \
	fi
