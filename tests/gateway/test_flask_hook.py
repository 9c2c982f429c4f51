"""observability.flask_hook: one record per request feeds the access log line and the metrics."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from gateway.config import Settings
from gateway.observability import flask_hook, metrics

SETTINGS = Settings(models=("brain-stroke",), default_task="brain-stroke")


def count(route: str, task: str, status: str) -> float:
    return metrics.REQUESTS.labels(route, task, status)._value.get()


@pytest.mark.parametrize(
    ("route", "path", "logged_task", "label"),
    [
        ("/observe-test/<task>", "/observe-test/brain-stroke", "brain-stroke", "brain-stroke"),
        ("/observe-test/<task>", "/observe-test/nope", "nope", "unknown"),  # bounded label set
        ("/predict", "/predict", None, "brain-stroke"),  # the default task's alias
    ],
)
def test_the_access_line_and_the_counter_come_from_one_record(
    captured, route, path, logged_task, label
) -> None:
    app = Flask("observe-test")
    flask_hook.init_app(app, SETTINGS)
    app.add_url_rule(route, "view", lambda **_: ("", 204), methods=["GET"])
    before = count(route, label, "204")
    in_flight = metrics.IN_FLIGHT._value.get()
    app.test_client().get(path)
    (line,) = [json.loads(x) for x in captured.getvalue().splitlines()]
    assert (line["path"], line["status"], line.get("task")) == (path, 204, logged_task)
    assert count(route, label, "204") == before + 1
    assert metrics.IN_FLIGHT._value.get() == in_flight


def test_unmatched_routes_share_one_label() -> None:
    assert flask_hook.task_label("unmatched", None, SETTINGS) == ""
    assert flask_hook.task_label("/predict", None, SETTINGS) == "brain-stroke"
