"""One complete series, end to end: route it, ask the gateway, build the SR and the Secondary
Capture, put them in the outbox. Log lines name the series by its spool key, never by a UID or
any patient or study attribute."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from ct_dicom_node import results
from ct_dicom_node.delivery import Outbox
from ct_dicom_node.gateway_client import GatewayClient, Refused
from ct_dicom_node.routing import Rule, route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """`status`: ignored | refused | unreadable | filed (no retry) or retry (gateway away)."""

    status: str
    task: str | None = None
    detail: str = ""


def process(
    key: str,
    files: tuple[Path, ...],
    rules: tuple[Rule, ...],
    gateway: GatewayClient,
    outbox: Outbox,
    manufacturer: str,
) -> Outcome:
    """Raises gateway_client.GatewayUnavailable when the series should be tried again later."""
    try:
        headers = [dcmread(f, stop_before_pixels=True) for f in files]
    except (InvalidDicomError, OSError, ValueError) as exc:
        log.warning("series unreadable", extra={"series": key, "error": type(exc).__name__})
        return Outcome("unreadable", detail=type(exc).__name__)
    task = route(rules, headers[0])
    if task is None:
        log.info("series ignored: no rule matches", extra={"series": key, **_kind(headers[0])})
        return Outcome("ignored")
    try:
        body = gateway.predict_series(task, files)
    except Refused as refused:
        log.warning(
            "series refused by the gateway",
            extra={"series": key, "task": task, "status": refused.status, "code": refused.code},
        )
        return Outcome("refused", task, refused.code)
    verdict = results.verdict_of(body, gateway.description(task))
    top = _top_instance(body, files, headers)
    outbox.put(results.structured_report(verdict, headers, top, manufacturer))
    png = (body.get("explained") or {}).get("heatmap_png")
    if png and _is_b64(png):
        outbox.put(
            results.secondary_capture(
                verdict, png, dcmread(_file_of(top, files, headers)), manufacturer
            )
        )
    log.info(
        "series filed",
        extra={"series": key, "task": task, "version": verdict.version, "slices": len(files)},
    )
    return Outcome("filed", task)


def _kind(ds: Dataset) -> dict:
    """Routing attributes that identify nobody (for the ignored-series log line)."""
    return {
        "modality": str(ds.get("Modality", ""))[:16],
        "body_part": str(ds.get("BodyPartExamined", ""))[:16],
    }


def _top_instance(body: dict, files: tuple[Path, ...], headers: list[Dataset]) -> Dataset:
    """The header of the slice the gateway's top_slice names (slices[k].name is our file name)."""
    index = int(body["scan"]["top_slice"])
    names = {s.get("index"): s.get("name") for s in body.get("slices", [])}
    by_name = {f.name: h for f, h in zip(files, headers, strict=True)}
    return by_name.get(names.get(index), headers[0])


def _file_of(top: Dataset, files: tuple[Path, ...], headers: list[Dataset]) -> Path:
    for path, header in zip(files, headers, strict=True):
        if header is top:
            return path
    return files[0]


def _is_b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
