"""The SR and the Secondary Capture: their content, their UIDs, the banner."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import UID

from ct_dicom_node import results
from ct_dicom_node.uids import result_uid
from tests.dicom_node.helpers import (
    DESCRIPTION,
    PATIENT_ID,
    ct_series,
    heatmap_png_b64,
    series_body,
)


def content(sr) -> dict[str, object]:
    """Concept name meaning -> value of the root container's items."""
    out = {}
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        kind = item.ValueType
        if kind == "TEXT":
            out[name] = item.TextValue
        elif kind == "NUM":
            out[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif kind == "CODE":
            out[name] = item.ConceptCodeSequence[0].CodeMeaning
        elif kind == "UIDREF":
            out[name] = item.UID
        elif kind == "IMAGE":
            out[name] = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return out


@pytest.fixture
def series():
    return ct_series(3)


def verdict(validated: bool = False) -> results.Verdict:
    body = series_body("brain-stroke", ["a", "b", "c"], 1, validated)
    return results.verdict_of(body, DESCRIPTION)


def test_the_sr_says_the_verdict_and_references_the_series_and_top_slice(series):
    sr = results.structured_report(verdict(), series, series[1], "ct-triage")
    said = content(sr)
    assert said["Finding"] == "Stroke"
    assert said["Scan probability"] == pytest.approx(0.71)
    assert said["Decision threshold"] == pytest.approx(0.264)
    assert said["Scan rule"] == "mean of the top-3 slice probabilities"
    assert said["Algorithm Name"] == "brain-stroke" and said["Algorithm Version"] == "4"
    assert said["Validated"] == "No"
    assert said["Validation note"].startswith("below the floor")
    assert said["Intended use"] == DESCRIPTION["intended_use"]
    assert said["Disclaimer"] == "Not for diagnostic use"
    assert said["Series Instance UID"] == series[0].SeriesInstanceUID
    assert said["Slice that weighed most"] == series[1].SOPInstanceUID
    assert sr.StudyInstanceUID == series[0].StudyInstanceUID and sr.PatientID == PATIENT_ID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in series
    }


def test_the_sr_reads_back_with_highdicom(series):
    sr = results.structured_report(verdict(), series, series[1], "ct-triage")
    again = hd.sr.srread(_roundtrip(sr))
    assert isinstance(again, hd.sr.ComprehensiveSR)
    assert again.SOPInstanceUID == sr.SOPInstanceUID


def _roundtrip(ds):
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return buf


def test_a_validated_model_gets_no_disclaimer_and_no_banner(series):
    sr = results.structured_report(verdict(True), series, series[1], "ct-triage")
    assert "Disclaimer" not in content(sr) and content(sr)["Validated"] == "Yes"
    sc = results.secondary_capture(verdict(True), heatmap_png_b64(), series[1], "ct-triage")
    assert sc.Rows == sc.Columns == 512


def test_the_secondary_capture_burns_in_the_banner_while_not_validated(series):
    sc = results.secondary_capture(verdict(), heatmap_png_b64(), series[1], "ct-triage")
    pixels = sc.pixel_array
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"
    assert pixels.shape[0] > pixels.shape[1] == 512  # the banner strip on top
    strip = pixels[: pixels.shape[0] - 512]
    red = np.all(strip == (200, 0, 0), axis=-1).mean()
    white = np.all(strip == (255, 255, 255), axis=-1).mean()
    assert red > 0.5 and white > 0.01  # a red strip with white text on it
    assert sc.StudyInstanceUID == series[1].StudyInstanceUID and sc.PatientID == PATIENT_ID


def test_result_uids_are_deterministic_and_distinct(series):
    uid = series[0].SeriesInstanceUID
    first = [result_uid(uid, "brain-stroke", 4, k) for k in ("sr-series", "sr-instance")]
    again = [result_uid(uid, "brain-stroke", 4, k) for k in ("sr-series", "sr-instance")]
    assert first == again and len(set(first)) == 2
    assert all(UID(u).is_valid for u in first)
    assert result_uid(uid, "brain-stroke", 5, "sr-instance") != first[1]
    assert result_uid(uid + ".1", "brain-stroke", 4, "sr-instance") != first[1]
    sr = results.structured_report(verdict(), series, series[1], "ct-triage")
    assert sr.SOPInstanceUID == first[1] and sr.SeriesInstanceUID == first[0]
    with pytest.raises(ValueError):
        result_uid(uid, "brain-stroke", 4, "other")


def test_a_mean_rule_answer_gives_the_label_probability_without_threshold():
    body = series_body("brain-tumor", ["a"], 0)
    body["scan"] = {
        "label": "glioma",
        "probabilities": {"glioma": 0.6, "notumor": 0.4},
        "rule": "mean of the slice probabilities of each label",
        "top_slice": 0,
    }
    seen = results.verdict_of(body, {})
    assert (seen.label, seen.probability, seen.threshold) == ("glioma", 0.6, None)
