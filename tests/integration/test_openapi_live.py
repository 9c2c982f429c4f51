"""schemathesis against a live gateway (gunicorn on loopback, in front of the stand-in serving the
tiny models): every operation /openapi.json documents answers a status, content type and body the
document allows, and never a 5xx. A bounded number of examples per operation keeps it short.

(schemathesis's own pytest plugin does not run under this pytest, so each operation's strategy is
driven by hypothesis here.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from gateway.web import openapi
from tests.fixtures.gateway import TINY_TASKS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = 25  # per operation: about 4 s for all of them on 2 cores, once the stack is up
OPERATIONS = sorted(
    (method.upper(), path)
    for path, ops in openapi.document(TINY_TASKS.split(","))["paths"].items()
    for method in ops
    if path != "/openapi.json"  # schemathesis leaves out the document it reads
)


@pytest.fixture(scope="module")
def live_schema(gateway_server):
    return schemathesis.openapi.from_url(f"{gateway_server}/openapi.json")


def test_the_live_document_lists_these_operations(live_schema) -> None:
    live = {(r.ok().method.upper(), r.ok().path) for r in live_schema.get_all_operations()}
    assert live == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(op) for op in OPERATIONS])
def test_operation_answers_as_documented(live_schema, gateway_server, method, path) -> None:
    operation = live_schema[path][method]
    # A schema-valid body need not be a decodable image (random bytes get 422, a made-up URL
    # 400 or 422): the image routes are not expected to accept every schema-valid request.
    excluded = [positive_data_acceptance] if "requestBody" in operation.definition.raw else []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(base_url=str(gateway_server), excluded_checks=excluded, timeout=30)

    check()
