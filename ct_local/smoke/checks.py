"""The HTTP checks against a gateway: health and identity, the model list, one prediction and
one series per model, each answer's shape and (when golden answers are loaded) its values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from ct_local.smoke.client import SmokeError, request, wait_for
from ct_local.smoke.golden import NO_GOLDEN, Golden
from ct_local.smoke.inputs import (
    SERIES_SLICES,
    multipart,
    multipart_files,
    series_names,
    smoke_inputs,
)

PROBABILITY_SUM_TOLERANCE = 1e-3
INSTANCE_HEADER = "X-CT-Instance"  # the gateway's pod name (HOSTNAME), on GET /readyz


def check_health(base: str, timeout: float, instances: set[str] | None = None) -> None:
    """Liveness, readiness, and the answering gateway's identity (one of `instances` if given)."""
    wait_for(f"{base}/healthz", timeout, lambda r: r.status == 200)
    print("ok   GET /healthz -> 200")
    reply = wait_for(f"{base}/readyz", timeout, lambda r: r.status == 200)
    print(f"ok   GET /readyz -> 200 {json.dumps(reply.body)[:200]}")
    instance = reply.headers.get(INSTANCE_HEADER.lower())
    if not instance:
        raise SmokeError(f"{base}/readyz has no {INSTANCE_HEADER} header: not a ct-triage gateway?")
    if instances is not None and instance not in instances:
        raise SmokeError(
            f"{base} is answered by {instance!r}, not one of the namespace's gateway pods "
            f"{sorted(instances)}: the URL points at another deployment"
        )
    print(f"ok   answered by gateway {instance}")


def list_models(base: str) -> list[dict]:
    reply = request(f"{base}/v1/models")
    if reply.status != 200:
        raise SmokeError(f"GET /v1/models -> HTTP {reply.status}: {reply.body}")
    models = reply.body.get("models") if isinstance(reply.body, dict) else None
    if not isinstance(models, list) or not models:
        raise SmokeError(f'GET /v1/models: expected {{"models": [...]}} (non-empty): {reply.body}')
    for model in models:
        if not isinstance(model, dict) or not {"task", "version", "labels"} <= model.keys():
            raise SmokeError(f"GET /v1/models: entry without task/version/labels: {model}")
    print(f"ok   GET /v1/models -> {', '.join(m['task'] for m in models)}")
    return models


def check_prediction(model: dict, body: object) -> None:
    """The answer's shape: model, version, a known label, probabilities summing to 1."""
    task, labels = model["task"], list(model["labels"])
    if not isinstance(body, dict):
        raise SmokeError(f"{task}: answer is not a JSON object: {body}")
    if body.get("model") != task:
        raise SmokeError(f"{task}: answer names model {body.get('model')!r}")
    if not isinstance(body.get("version"), int) or body["version"] < 1:
        raise SmokeError(f"{task}: version {body.get('version')!r} is not a positive integer")
    if body.get("label") not in labels:
        raise SmokeError(f"{task}: label {body.get('label')!r} is not one of {labels}")
    probs = body.get("probabilities")
    if not isinstance(probs, dict) or sorted(probs) != sorted(labels):
        raise SmokeError(f"{task}: probabilities {probs} do not cover exactly {labels}")
    values = list(probs.values())
    if not all(isinstance(p, int | float) and 0.0 <= p <= 1.0 for p in values):
        raise SmokeError(f"{task}: probabilities outside [0, 1]: {probs}")
    if not math.isclose(sum(values), 1.0, abs_tol=PROBABILITY_SUM_TOLERANCE):
        raise SmokeError(f"{task}: probabilities sum to {sum(values):.6f}, not 1")
    check_binary(model, body)


def check_binary(model: dict, body: dict) -> None:
    positive_label = model.get("positive_label")
    if positive_label is None:
        if "positive" in body:
            raise SmokeError(f"{model['task']}: multi-class answer carries 'positive'")
        return
    if not isinstance(body.get("positive"), bool):
        raise SmokeError(f"{model['task']}: binary answer without a boolean 'positive': {body}")
    if body["positive"] != (body["label"] == positive_label):
        raise SmokeError(
            f"{model['task']}: positive={body['positive']} disagrees with label {body['label']!r}"
        )


def predict_all(base: str, models: list[dict], image: bytes, golden: Golden = NO_GOLDEN) -> None:
    for model in models:
        data, content_type = multipart("image", "smoke.jpg", image, "image/jpeg")
        url = f"{base}/v1/models/{model['task']}:predict"
        reply = request(url, data, content_type, timeout=30.0)
        if out_of_domain_as_expected(model, reply, golden, ["predict"], url):
            continue
        if reply.status != 200:
            raise SmokeError(f"POST {url} -> HTTP {reply.status}: {reply.body}")
        check_prediction(model, reply.body)
        golden.check_ood(model["task"], "predict", reply.body.get("domain", {}).get("ood_score"))
        golden.check_version(model["task"], reply.body["version"])
        golden.check_probabilities(model["task"], "predict", reply.body["probabilities"])
        print(f"ok   {model['task']}: v{reply.body['version']} label={reply.body['label']}")


def predict_series_all(base: str, models: list[dict], golden: Golden = NO_GOLDEN) -> None:
    """A small series per model: one answer per slice, in file-name order, and a scan verdict."""
    files = smoke_inputs()[1]
    for model in models:
        data, content_type = multipart_files("image", files)
        url = f"{base}/v1/models/{model['task']}:predict_series"
        reply = request(url, data, content_type, timeout=60.0)
        if out_of_domain_as_expected(model, reply, golden, [name for name, _ in files], url):
            continue
        if reply.status != 200:
            raise SmokeError(f"POST {url} -> HTTP {reply.status}: {reply.body}")
        body = reply.body
        names = [s.get("name") for s in body.get("slices", [])]
        if names != series_names():
            raise SmokeError(f"{model['task']}: series slices {names} not in natural order")
        golden.check_version(model["task"], body.get("version"))
        for entry in body["slices"]:
            check_prediction(model, {**entry, "model": body["model"], "version": body["version"]})
            golden.check_probabilities(model["task"], entry["name"], entry["probabilities"])
            ood = entry.get("domain", {}).get("ood_score")
            golden.check_ood(model["task"], entry["name"], ood)
        if body.get("scan", {}).get("label") not in model["labels"]:
            raise SmokeError(f"{model['task']}: series scan verdict {body.get('scan')}")
        print(f"ok   {model['task']}: series of {SERIES_SLICES}, scan={body['scan']['label']}")


def run_http_checks(
    base: str,
    timeout: float,
    golden_from: Callable[[list[str]], Golden] | None = None,
    instances: set[str] | None = None,
) -> None:
    """Every HTTP check; `golden_from(tasks)` gives the expected answers (None: shapes only)."""
    check_health(base, timeout, instances)
    models = list_models(base)
    golden = NO_GOLDEN
    if golden_from is not None:
        golden = golden_from([m["task"] for m in models])
        for model in models:
            golden.check_version(model["task"], model["version"])
        print(f"ok   versions {golden.versions} (golden answers within {golden.tolerance:g})")
    predict_all(base, models, smoke_inputs()[0], golden)
    predict_series_all(base, models, golden)


def out_of_domain_as_expected(model: dict, reply, golden: Golden, inputs: list[str], url) -> bool:
    """True when the model refused `inputs` as out of domain and that is its golden answer (the
    scores agree), or, without golden answers, when the refusal carries a score above the
    threshold the model declares. A refusal the golden answers do not foresee is an error."""
    body = reply.body if isinstance(reply.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    if reply.status != 422 or error.get("code") != "out_of_domain":
        return False
    task = model["task"]
    threshold = ((model.get("domain") or {}).get("ood") or {}).get("threshold")
    if not isinstance(threshold, int | float):
        raise SmokeError(f"POST {url} -> out_of_domain from a model without a threshold: {body}")
    refusals = golden.ood_refusals(task, threshold)
    if refusals:
        out = sum(refusals.get(what, False) for what in inputs)
        # one image: refused when out; a series: when most slices are out (gateway/models/domain.py)
        if not (out == 1 if len(inputs) == 1 else 2 * out > len(inputs)):
            raise SmokeError(
                f"POST {url} -> refused as out of domain, not its golden answer: {body}"
            )
        if len(inputs) == 1:
            golden.check_ood(task, inputs[0], error.get("ood_score"))
    elif len(inputs) == 1 and not float(error.get("ood_score", -1)) > threshold:
        raise SmokeError(f"POST {url} -> out_of_domain without a score above {threshold}: {body}")
    print(
        f"ok   {task}: the smoke's synthetic input is out of its domain, refused (422) as expected"
    )
    return True
