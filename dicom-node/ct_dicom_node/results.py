"""The result objects filed back into the source study: a Comprehensive SR with the verdict and
a Secondary Capture of the slice that weighed most (heatmap over the model's input, with a
burned-in "NOT FOR DIAGNOSTIC USE" banner while the model is not validated).

Both copy the patient and study modules from the source instances (highdicom does): that is the
only place identifiers go. UIDs come from ct_dicom_node.uids, so a re-sent series replaces them."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.sr.codedict import codes

from ct_dicom_node.uids import result_uid

SCHEME = "99CTTRIAGE"
BANNER = "NOT FOR DIAGNOSTIC USE"
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902


def local(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, SCHEME, meaning)


TITLE = local("CTT-0001", "CT triage AI result")
KEY_SLICE = local("CTT-0002", "Slice that weighed most")
SCAN_PROBABILITY = local("CTT-0003", "Scan probability")
THRESHOLD = local("CTT-0004", "Decision threshold")
SCAN_RULE = local("CTT-0005", "Scan rule")
VALIDATED = local("CTT-0006", "Validated")
VALIDATED_REASON = local("CTT-0007", "Validation note")
INTENDED_USE = local("CTT-0008", "Intended use")
DISCLAIMER = local("CTT-0009", "Disclaimer")
OUT_OF_DOMAIN = local("CTT-0010", "Out-of-domain slices")
FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
ALGORITHM_NAME = hd.sr.CodedConcept("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = hd.sr.CodedConcept("111003", "DCM", "Algorithm Version")
SERIES_UID = hd.sr.CodedConcept("112002", "DCM", "Series Instance UID")


@dataclass(frozen=True)
class Verdict:
    """What the SR says, read from the gateway's series answer and the model's description."""

    task: str
    version: int
    label: str
    probability: float
    threshold: float | None
    rule: str
    top_slice: int
    validated: bool | None
    validated_reason: str | None
    intended_use: str | None
    out_of_domain_slices: int | None

    @property
    def diagnostic(self) -> bool:
        return self.validated is True


def verdict_of(body: dict, description: dict) -> Verdict:
    scan = body["scan"]
    label = str(scan["label"])
    probability = scan.get("probability", (scan.get("probabilities") or {}).get(label, 0.0))
    validated = body.get("validated", description.get("validated"))
    return Verdict(
        task=str(body["model"]),
        version=int(body["version"]),
        label=label,
        probability=float(probability),
        threshold=None if scan.get("threshold") is None else float(scan["threshold"]),
        rule=str(scan.get("rule", "")),
        top_slice=int(scan["top_slice"]),
        validated=validated,
        validated_reason=body.get("validated_reason") or description.get("validated_reason"),
        intended_use=description.get("intended_use"),
        out_of_domain_slices=scan.get("out_of_domain_slices"),
    )


def label_code(label: str) -> hd.sr.CodedConcept:
    value = re.sub(r"[^A-Z0-9]", "", label.upper())[:12] or "UNKNOWN"
    return local(f"L-{value}", label)


def structured_report(
    verdict: Verdict, sources: Sequence[Dataset], top: Dataset, manufacturer: str
) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR of one evaluated series (`sources`: its instances' headers)."""
    series_uid = str(top.SeriesInstanceUID)
    container = hd.sr.ContainerContentItem(name=TITLE)
    container.ContentSequence = hd.sr.ContentSequence(_items(verdict, top))
    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources),
        content=container,
        series_instance_uid=result_uid(series_uid, verdict.task, verdict.version, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(series_uid, verdict.task, verdict.version, "sr-instance"),
        instance_number=1,
        manufacturer=manufacturer,
        is_complete=True,
    )
    sr.SeriesDescription = f"ct-triage {verdict.task} v{verdict.version}"[:64]
    return sr


def _items(verdict: Verdict, top: Dataset) -> list[Dataset]:
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    text = [
        (ALGORITHM_NAME, verdict.task),
        (ALGORITHM_VERSION, str(verdict.version)),
        (SCAN_RULE, verdict.rule),
        (VALIDATED_REASON, verdict.validated_reason),
        (INTENDED_USE, verdict.intended_use),
        (DISCLAIMER, None if verdict.diagnostic else BANNER.capitalize()),
    ]
    numbers = [
        (SCAN_PROBABILITY, verdict.probability),
        (THRESHOLD, verdict.threshold),
        (OUT_OF_DOMAIN, verdict.out_of_domain_slices),
    ]
    items: list[Dataset] = [hd.sr.CodeContentItem(FINDING, label_code(verdict.label), contains)]
    if verdict.validated is not None:
        answer = codes.SCT.Yes if verdict.validated else codes.SCT.No
        items.append(hd.sr.CodeContentItem(VALIDATED, answer, contains))
    items += [
        hd.sr.NumContentItem(n, float(v), UNITLESS, None, contains)
        for n, v in numbers
        if v is not None
    ]
    items += [hd.sr.TextContentItem(n, str(v)[:1024], contains) for n, v in text if v]
    items.append(hd.sr.UIDRefContentItem(SERIES_UID, str(top.SeriesInstanceUID), contains))
    items.append(
        hd.sr.ImageContentItem(KEY_SLICE, top.SOPClassUID, top.SOPInstanceUID, None, None, contains)
    )
    return items


def secondary_capture(
    verdict: Verdict, heatmap_png_b64: str, top: Dataset, manufacturer: str
) -> hd.sc.SCImage:
    """The top slice's heatmap (the gateway's PNG), banner burned in while not validated."""
    series_uid = str(top.SeriesInstanceUID)
    pixels = picture(heatmap_png_b64, None if verdict.diagnostic else BANNER)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=top,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=result_uid(series_uid, verdict.task, verdict.version, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=result_uid(series_uid, verdict.task, verdict.version, "sc-instance"),
        instance_number=1,
        manufacturer=manufacturer,
        patient_orientation=("L", "P"),
    )
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = f"ct-triage {verdict.task} v{verdict.version} heatmap"[:64]
    return sc


def picture(png_b64: str, banner: str | None, min_width: int = 512) -> np.ndarray:
    """RGB uint8 [rows, cols, 3]: the PNG scaled up to `min_width`, a red banner on top."""
    image = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
    if image.width < min_width:
        scale = min_width / image.width
        image = image.resize((min_width, round(image.height * scale)), Image.Resampling.BILINEAR)
    if banner:
        height = max(24, image.width // 16)
        framed = Image.new("RGB", (image.width, image.height + height), (200, 0, 0))
        framed.paste(image, (0, height))
        font = ImageFont.load_default(size=int(height * 0.7))
        ImageDraw.Draw(framed).text((8, height * 0.15), banner, fill=(255, 255, 255), font=font)
        image = framed
    return np.asarray(image, dtype=np.uint8)
