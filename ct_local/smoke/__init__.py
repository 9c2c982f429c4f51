"""The smoke test of a running gateway (`python -m ct_local.smoke`, also `scripts/smoke.py`):
run against `make run` and, with --kube, against the kind cluster in CI (`make kind-smoke`).

- `inputs`: the synthetic image and series it sends (no dataset needed), and their encoding;
- `client`: one HTTP request, polling; `checks`: health, model list, predictions, answer shapes;
- `golden`: each served version's expected answer (model-server/models/<task>/<version>/
  smoke_golden.json, written by `python -m training.golden` on exactly these inputs): the smoke
  expects the newest version under --models-dir for each task (or --expect-version task=N) and
  the golden probabilities within --tolerance, so a stale image, a wrong version or a
  preprocessing regression fails it; --no-golden keeps only the shape checks;
- `kube`: with --kube, waits for the Deployments to roll out (kubernetes Python client), loads
  the gateway until every HPA reports metrics, checks the NetworkPolicy with a probe pod, and
  prints pod states and logs when anything fails;
- `dicom`: with --dicom-node HOST:PORT, the DICOM node: C-ECHO, a C-STORE of a 3-slice CT series
  (pydicom's CT_small.dcm), and with --dicom-node-http its /healthz and /metrics (the gateway
  answered for the series); what it cannot check without a PACS is in its docstring;
- `__main__`: the command line.

The names below are re-exported for callers that want the whole toolkit in one namespace.
"""

from ct_local.smoke.checks import (
    INSTANCE_HEADER,
    check_binary,
    check_health,
    check_prediction,
    list_models,
    predict_all,
    predict_series_all,
    run_http_checks,
)
from ct_local.smoke.client import HEADERS, Reply, request, wait_for
from ct_local.smoke.dicom import check_dicom_node
from ct_local.smoke.errors import SmokeError
from ct_local.smoke.golden import (
    GOLDEN_FILE,
    GOLDEN_TOLERANCE,
    NO_GOLDEN,
    Golden,
    load_golden,
    newest_versions,
)
from ct_local.smoke.inputs import (
    SERIES_SLICES,
    multipart,
    multipart_files,
    smoke_inputs,
    synthetic_png,
)
from ct_local.smoke.kube import PROBE_OK, PROBE_REFUSED, hpa_gaps, probe_command, probe_verdict

__all__ = [
    "GOLDEN_FILE",
    "GOLDEN_TOLERANCE",
    "HEADERS",
    "INSTANCE_HEADER",
    "NO_GOLDEN",
    "PROBE_OK",
    "PROBE_REFUSED",
    "SERIES_SLICES",
    "Golden",
    "Reply",
    "SmokeError",
    "check_binary",
    "check_dicom_node",
    "check_health",
    "check_prediction",
    "hpa_gaps",
    "list_models",
    "load_golden",
    "multipart",
    "multipart_files",
    "newest_versions",
    "predict_all",
    "predict_series_all",
    "probe_command",
    "probe_verdict",
    "request",
    "run_http_checks",
    "smoke_inputs",
    "synthetic_png",
    "wait_for",
]
