"""The DICOM node's smoke check (`--dicom-node HOST:PORT`; on kind through `kubectl port-forward`).

What it checks, over real DICOM networking with pynetdicom:
- C-ECHO to the node's AE title is answered with Success (retried until the timeout: a fresh
  port-forward or a starting pod refuses connections for a moment);
- a C-STORE of a small CT head series (SMOKE_SLICES slices made from pydicom's CT_small.dcm, new
  UIDs, a made-up patient) is acknowledged with Success for every instance, so the calling AE is on
  the allow list and the spool takes instances;
- with `--dicom-node-http URL` (the node's HTTP port): /healthz answers ok, and /metrics shows the
  series left assembly and the gateway answered for it (`ct_dicom_series_total` outcome `filed`,
  or `refused` when the model refuses a slice as out of its domain): the node reached the gateway
  through the NetworkPolicies and its routing rules sent the series to a task.

What it cannot check: that the results (SR and Secondary Capture) reach a PACS. A cluster without a
PACS (kind) has nowhere to send them; they wait in the node's outbox, retried. The loopback tests
(tests/dicom_node/) and the Orthanc test check the delivery.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from ct_local.smoke.client import SmokeError

NODE_AE = "CT_TRIAGE"  # the node's ae_title (kube-config/base/dicom-node.yaml)
SMOKE_CALLING_AE = "CT_SMOKE"  # on the kind overlay's allow list
SMOKE_SLICES = 3
SMOKE_PATIENT = ("Smoke^Test", "CT-TRIAGE-SMOKE")  # (PatientName, PatientID)
# ct_dicom_series_total outcomes: the gateway answered (the node files results, or keeps a
# refused series), and outcomes that mean the smoke's series went wrong.
ANSWERED = ("filed", "refused")
WRONG = ("ignored", "unreadable", "failed")


def ct_series(
    n: int = SMOKE_SLICES,
    body_part: str = "HEAD",
    modality: str = "CT",
    patient: tuple[str, str] = SMOKE_PATIENT,
) -> list[Dataset]:
    """`n` slices of one new series of one new study from pydicom's CT_small.dcm, 5 mm apart, of
    `patient` (name, ID): the smoke's series, and the DICOM node tests'."""
    study, series = generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds = dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(5 * k)]
        ds.PatientName, ds.PatientID = patient
        ds.Modality, ds.BodyPartExamined = modality, body_part
        ds.SeriesDescription = "ct-triage synthetic series"
        out.append(ds)
    return out


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SmokeError(f"--dicom-node takes HOST:PORT, got {address!r}")
    return host, int(port)


def _associate(ae: AE, host: str, port: int, called: str):
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise SmokeError(f"association {ae.ae_title} -> {called}@{host}:{port} {what}")
    return assoc


def echo(host: str, port: int, called: str, calling: str, timeout: float) -> None:
    """C-ECHO until Success; connection failures are retried until `timeout`, a rejected
    association (a calling AE off the allow list) fails at once."""
    ae = AE(calling)
    ae.add_requested_context(Verification)
    deadline = time.monotonic() + timeout
    while True:
        assoc = ae.associate(host, port, ae_title=called)
        if assoc.is_established:
            try:
                status = assoc.send_c_echo()
            finally:
                assoc.release()
            if "Status" not in status or int(status.Status) != 0:
                raise SmokeError(f"C-ECHO to {called}@{host}:{port}: status {status}")
            print(f"ok   C-ECHO {calling} -> {called}@{host}:{port}")
            return
        if assoc.is_rejected:
            raise SmokeError(f"C-ECHO: association {calling} -> {called}@{host}:{port} rejected")
        if time.monotonic() >= deadline:
            raise SmokeError(f"C-ECHO: no association with {host}:{port} in {timeout:.0f} s")
        time.sleep(1)


def store(datasets: list[Dataset], host: str, port: int, called: str, calling: str) -> None:
    """C-STORE every dataset in one association; each must be acknowledged with Success."""
    ae = AE(calling)
    ae.add_requested_context(CTImageStorage, datasets[0].file_meta.TransferSyntaxUID)
    assoc = _associate(ae, host, port, called)
    try:
        statuses = [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()
    codes = [int(s.Status) if "Status" in s else None for s in statuses]
    if codes != [0] * len(datasets):
        raise SmokeError(f"C-STORE of {len(datasets)} CT slices: statuses {codes}")
    print(f"ok   C-STORE of a {len(datasets)}-slice CT series acknowledged by {called}")


def series_outcomes(metrics_text: str) -> dict[str, float]:
    """`ct_dicom_series_total` summed per outcome (over tasks), from the node's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "ct_dicom_series":
            continue
        for sample in family.samples:
            if sample.name == "ct_dicom_series_total":
                outcome = sample.labels.get("outcome", "")
                totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise SmokeError(f"GET {url}: {err}") from None


def check_health(http_base: str) -> None:
    status, body = _get(f"{http_base}/healthz")
    if status != 200 or json.loads(body or "{}").get("status") != "ok":
        raise SmokeError(f"dicom-node /healthz: {status} {body[:200]}")
    print("ok   dicom-node /healthz")


def wait_gateway_answer(http_base: str, before: dict[str, float], timeout: float) -> str:
    """Wait until one more series has an answer from the gateway than in `before`; the outcome."""
    deadline = time.monotonic() + timeout
    while True:
        now = series_outcomes(_get(f"{http_base}/metrics")[1])
        grew = {k for k in (*ANSWERED, *WRONG) if now.get(k, 0.0) > before.get(k, 0.0)}
        if wrong := grew & set(WRONG):
            raise SmokeError(f"dicom-node: the smoke series ended {sorted(wrong)} (metrics {now})")
        if grew:
            return sorted(grew)[0]
        if time.monotonic() >= deadline:
            retries = now.get("gateway_retry", 0.0) - before.get("gateway_retry", 0.0)
            raise SmokeError(
                f"dicom-node: no gateway answer for the smoke series in {timeout:.0f} s "
                f"({retries:.0f} gateway retries; metrics {now})"
            )
        time.sleep(1)


def check_dicom_node(
    address: str,
    timeout: float,
    *,
    called: str = NODE_AE,
    calling: str = SMOKE_CALLING_AE,
    http_base: str | None = None,
    send_series: bool = True,
) -> str | None:
    """The node's smoke (module docstring). Returns the gateway's outcome for the series when
    it was checked (`http_base` given and a series sent), else None."""
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its connection errors: ours
    host, port = parse_address(address)
    echo(host, port, called, calling, timeout)
    base = http_base.rstrip("/") if http_base else None
    if base:
        check_health(base)
    if not send_series:
        return None
    before = series_outcomes(_get(f"{base}/metrics")[1]) if base else {}
    store(ct_series(), host, port, called, calling)
    if not base:
        return None
    outcome = wait_gateway_answer(base, before, timeout)
    print(f"ok   dicom-node sent the series to the gateway and got an answer ({outcome})")
    return outcome
