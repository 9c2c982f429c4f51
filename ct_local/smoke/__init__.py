"""The smoke test of a running gateway (`ct-triage smoke`, also `python -m ct_local.smoke`):
run against `make run` and, with --kube, against the kind cluster in CI (`make kind-smoke`).

- `inputs`: the synthetic image and series it sends (no dataset needed), and their encoding;
- `client`: one HTTP request, polling, and SmokeError (the one failure type);
- `checks`: health, model list, predictions, answer shapes;
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
"""
