"""Routing rules and the configuration file."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from ct_dicom_node import config
from ct_dicom_node.routing import RuleError, route, rule_from_dict
from tests.fixtures.common import REPO

RULES = tuple(
    rule_from_dict(r)
    for r in (
        {"task": "brain-stroke", "modality": "CT", "body_part": "HEAD|BRAIN"},
        {"task": "brain-stroke", "modality": ["CT"], "description": "head|stroke"},
        {"task": "brain-tumor", "modality": "MR", "body_part": "BRAIN"},
    )
)


def header(**attrs: str) -> Dataset:
    ds = Dataset()
    for name, value in attrs.items():
        setattr(ds, name, value)
    return ds


@pytest.mark.parametrize(
    ("attrs", "task"),
    [
        ({"Modality": "CT", "BodyPartExamined": "HEAD"}, "brain-stroke"),
        ({"Modality": "ct", "BodyPartExamined": "brain"}, "brain-stroke"),
        ({"Modality": "CT", "SeriesDescription": "CT HEAD w/o"}, "brain-stroke"),
        ({"Modality": "CT", "ProtocolName": "Stroke protocol"}, "brain-stroke"),
        ({"Modality": "MR", "BodyPartExamined": "BRAIN"}, "brain-tumor"),
        ({"Modality": "MR", "BodyPartExamined": "KNEE"}, None),
        ({"Modality": "CT", "BodyPartExamined": "CHEST"}, None),
        ({"Modality": "CT", "BodyPartExamined": "HEADNECK"}, None),
        ({"Modality": "US", "SeriesDescription": "head"}, None),
        ({}, None),
    ],
)
def test_route_takes_the_first_matching_rule(attrs, task):
    assert route(RULES, header(**attrs)) == task


@pytest.mark.parametrize(
    "raw",
    [
        {"task": "Brain Stroke"},
        {"task": "brain-stroke", "body_part": "("},
        {"task": "brain-stroke", "modalty": "CT"},
    ],
)
def test_malformed_rules_are_refused(raw):
    with pytest.raises(RuleError):
        rule_from_dict(raw)


def test_the_example_configuration_loads():
    settings = config.load(REPO / "dicom-node" / "node.example.toml")
    assert settings.allowed_calling_aets == {"ORTHANC", "PACS", "STORESCU"}
    assert settings.destination.ae_title == "PACS"
    assert route(settings.rules, header(Modality="CT", BodyPartExamined="HEAD")) == "brain-stroke"


def minimal(**changes) -> dict:
    raw = {
        "allowed_calling_aets": ["PACS"],
        "gateway": {"url": "http://gateway:9696"},
        "destination": {"ae_title": "PACS", "host": "pacs", "port": 104},
        "rules": [{"task": "brain-stroke", "modality": "CT"}],
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    "changes",
    [
        {"allowed_calling_aets": []},
        {"allowed_calling_aets": ["A\\B"]},
        {"allowed_calling_aets": ["SEVENTEEN_LETTERS"]},
        {"gateway": {"url": "gateway:9696"}},
        {"destination": {"ae_title": "PACS", "host": "pacs"}},
        {"rules": []},
        {"quiet_s": 0},
        {"verbose": True},
    ],
)
def test_unsafe_or_malformed_configurations_are_refused(changes):
    config.from_dict(minimal())
    with pytest.raises(config.ConfigError):
        config.from_dict(minimal(**changes))
