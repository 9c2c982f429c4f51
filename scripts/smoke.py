"""Smoke-test a running gateway end to end: health, readiness, one prediction per served model.

    python scripts/smoke.py --base-url http://127.0.0.1:9696
    python scripts/smoke.py --base-url http://127.0.0.1:9696 --kube --namespace ct-triage

The image is synthetic (drawn in memory), so no dataset is needed. With --kube the script first
waits for the Deployments in the namespace to finish rolling out (kubernetes Python client) and
prints pod states and logs when anything fails. Exit status 0 when every check passes, 1 otherwise.

Golden answers: every served model version has `smoke_golden.json` in its version folder
(model-server/models/<task>/<version>/, written by `python -m training.golden`: the SavedModel run
on exactly these synthetic inputs through the gateway's own preprocessing). The smoke expects the
newest version under --models-dir for each task (or --expect-version task=N) and the golden
probabilities within --tolerance, so a stale image, a wrong version or a preprocessing regression
fails it. --no-golden keeps only the shape checks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

PROBABILITY_SUM_TOLERANCE = 1e-3
DEFAULT_DEPLOYMENTS = ("tf-serving", "gateway")
DEFAULT_LOAD_TASK = "brain-stroke"
DEFAULT_POLICY_TARGET = "tf-serving:8500"  # the model server's Service, from inside the namespace
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "model-server" / "models"
GOLDEN_FILE = "smoke_golden.json"
GOLDEN_TOLERANCE = 1e-4
INSTANCE_HEADER = "X-CT-Instance"  # the gateway's pod name (HOSTNAME), on GET /readyz
TOKEN_ENV = "CT_SMOKE_TOKEN"  # bearer token for a gateway with auth on (gateway/auth.py)
HEADERS: dict[str, str] = {}  # sent with every request (Authorization, when a token is given)


class SmokeError(Exception):
    """A check failed; the message says which and why."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: object  # parsed JSON, or the raw text when the body is not JSON
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


def synthetic_png(size: int = 128) -> bytes:
    """A greyscale 'scan': dark background, a bright ellipse and a smaller blob."""
    image = Image.new("L", (size, size), 10)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 8, size // 6, size * 7 // 8, size * 5 // 6), fill=170)
    draw.ellipse((size // 3, size // 3, size // 2, size // 2), fill=240)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def multipart(field: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(
    url: str, data: bytes | None = None, content_type: str = "", timeout: float = 10.0
) -> Reply:
    """One HTTP call; HTTP error statuses are returned, connection failures raise SmokeError."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    for name, value in HEADERS.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), _lower(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, headers = err.code, err.read(), _lower(err.headers)
    except (urllib.error.URLError, OSError) as err:
        raise SmokeError(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from None
    text = raw.decode("utf-8", "replace")
    try:
        return Reply(status, json.loads(text), headers)
    except json.JSONDecodeError:
        return Reply(status, text, headers)


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def wait_for(url: str, timeout: float, accept: Callable[[Reply], bool]) -> Reply:
    """Poll url until accept(reply) or timeout; the error names the last answer seen."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            reply = request(url, timeout=min(5.0, max(timeout, 0.5)))
            if accept(reply):
                return reply
            last = f"HTTP {reply.status}: {json.dumps(reply.body)[:500]}"
        except SmokeError as err:
            last = str(err)
        if time.monotonic() >= deadline:
            raise SmokeError(f"{url} not ready after {timeout:.0f} s; last: {last}")
        time.sleep(0.5)


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


@dataclass(frozen=True)
class Golden:
    """What each task must answer: its version and, per smoke input, the probabilities."""

    versions: dict[str, int]  # task -> expected version
    answers: dict[str, dict]  # task -> the golden file's content (None: shape checks only)
    tolerance: float = GOLDEN_TOLERANCE

    def check_version(self, task: str, version: object) -> None:
        if task in self.versions and version != self.versions[task]:
            raise SmokeError(
                f"{task}: answered by version {version!r}, expected {self.versions[task]} "
                "(stale image, or a models.config that serves another version?)"
            )

    def check_probabilities(self, task: str, what: str, probs: dict) -> None:
        golden = self.answers.get(task)
        if golden is None:
            return
        want = golden["predict"] if what == "predict" else golden["series"].get(what)
        if want is None:
            raise SmokeError(f"{task}: the golden file has no answer for {what!r}")
        if sorted(want) != sorted(probs):
            raise SmokeError(f"{task} {what}: labels {sorted(probs)}, golden {sorted(want)}")
        worst = max(abs(float(probs[k]) - float(want[k])) for k in want)
        if worst > self.tolerance:
            raise SmokeError(
                f"{task} {what}: probabilities {probs} differ from the golden {want} by "
                f"{worst:.2e} > {self.tolerance:g} (other model bytes or preprocessing?)"
            )


def smoke_inputs() -> tuple[bytes, list[tuple[str, bytes]]]:
    """Exactly what the smoke sends: one image for :predict, the slices for :predict_series
    (in upload order; the gateway answers in natural file-name order)."""
    files = [(f"slice ({k}).png", synthetic_png(96 + 16 * k)) for k in range(SERIES_SLICES, 0, -1)]
    return synthetic_png(), files


def newest_versions(models_dir: Path) -> dict[str, int]:
    """task -> its newest version folder holding a SavedModel (what TF Serving serves)."""
    versions: dict[str, int] = {}
    for task_dir in sorted(p for p in Path(models_dir).glob("*") if p.is_dir()):
        numbers = [
            int(v.name)
            for v in task_dir.iterdir()
            if v.name.isdigit() and (v / "saved_model.pb").is_file()
        ]
        if numbers:
            versions[task_dir.name] = max(numbers)
    return versions


def load_golden(
    models_dir: Path, expect: dict[str, int], tasks: list[str], tolerance: float
) -> Golden:
    """Expected versions (newest on disk unless `expect` says) and their golden answers."""
    versions = {**newest_versions(models_dir), **expect}
    answers = {}
    for task in tasks:
        if task not in versions:
            raise SmokeError(f"{task}: no version under {models_dir} (and no --expect-version)")
        path = Path(models_dir) / task / str(versions[task]) / GOLDEN_FILE
        try:
            answers[task] = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SmokeError(
                f"{task}: no readable golden answer {path} ({err}); "
                f"write it with: python -m training.golden --task {task} "
                f"--version {versions[task]}"
            ) from None
        if answers[task].get("version") != versions[task] or answers[task].get("task") != task:
            raise SmokeError(
                f"{path}: names {answers[task].get('task')} v"
                f"{answers[task].get('version')}, not {task} v{versions[task]}"
            )
    return Golden(versions, answers, tolerance)


NO_GOLDEN = Golden({}, {})


def predict_all(base: str, models: list[dict], image: bytes, golden: Golden = NO_GOLDEN) -> None:
    for model in models:
        data, content_type = multipart("image", "smoke.png", image, "image/png")
        url = f"{base}/v1/models/{model['task']}:predict"
        reply = request(url, data, content_type, timeout=30.0)
        if reply.status != 200:
            raise SmokeError(f"POST {url} -> HTTP {reply.status}: {reply.body}")
        check_prediction(model, reply.body)
        golden.check_version(model["task"], reply.body["version"])
        golden.check_probabilities(model["task"], "predict", reply.body["probabilities"])
        print(f"ok   {model['task']}: v{reply.body['version']} label={reply.body['label']}")


SERIES_SLICES = 3


def multipart_files(field: str, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def predict_series_all(base: str, models: list[dict], golden: Golden = NO_GOLDEN) -> None:
    """A small series per model: one answer per slice, in file-name order, and a scan verdict."""
    files = smoke_inputs()[1]
    for model in models:
        data, content_type = multipart_files("image", files)
        url = f"{base}/v1/models/{model['task']}:predict_series"
        reply = request(url, data, content_type, timeout=60.0)
        if reply.status != 200:
            raise SmokeError(f"POST {url} -> HTTP {reply.status}: {reply.body}")
        body = reply.body
        names = [s.get("name") for s in body.get("slices", [])]
        if names != [f"slice ({k}).png" for k in range(1, SERIES_SLICES + 1)]:
            raise SmokeError(f"{model['task']}: series slices {names} not in natural order")
        golden.check_version(model["task"], body.get("version"))
        for entry in body["slices"]:
            check_prediction(model, {**entry, "model": body["model"], "version": body["version"]})
            golden.check_probabilities(model["task"], entry["name"], entry["probabilities"])
        if body.get("scan", {}).get("label") not in model["labels"]:
            raise SmokeError(f"{model['task']}: series scan verdict {body.get('scan')}")
        print(f"ok   {model['task']}: series of {SERIES_SLICES}, scan={body['scan']['label']}")


def run_http_checks(
    base: str,
    timeout: float,
    args: argparse.Namespace | None = None,
    instances: set[str] | None = None,
) -> None:
    check_health(base, timeout, instances)
    models = list_models(base)
    golden = NO_GOLDEN
    if args is not None and not args.no_golden:
        tasks = [m["task"] for m in models]
        golden = load_golden(args.models_dir, args.expect_version, tasks, args.tolerance)
        for model in models:
            golden.check_version(model["task"], model["version"])
        print(f"ok   versions {golden.versions} (golden answers within {golden.tolerance:g})")
    predict_all(base, models, smoke_inputs()[0], golden)
    predict_series_all(base, models, golden)


PROBE_OK, PROBE_REFUSED = "REACHED", "REFUSED"


def probe_command(target: str) -> str:
    """Shell for the policy probe (curl image): one connection attempt with a 5 s deadline. curl
    exits 7 (refused) or 28 (connect timeout: the policy drops the SYN) when it cannot connect;
    any other code means it connected (gRPC's port answers HTTP/1 with an error)."""
    return (
        f"curl -s --connect-timeout 5 -m 10 -o /dev/null http://{target}/; rc=$?; "
        f'if [ "$rc" = 7 ] || [ "$rc" = 28 ]; then echo {PROBE_REFUSED}; '
        f'else echo "{PROBE_OK} (curl exit $rc)"; fi'
    )


def probe_verdict(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if last == PROBE_REFUSED or last.startswith(PROBE_OK) else "no verdict"


def hpa_gaps(hpas: list[dict]) -> list[str]:
    """Names of HPAs (autoscaling/v2 as dicts) whose status has no current metric value."""
    gaps = []
    for hpa in hpas:
        current = (hpa.get("status") or {}).get("current_metrics") or []
        values = [
            ((m.get("resource") or {}).get("current") or {}) for m in current if m is not None
        ]
        if not any(
            v.get("average_utilization") is not None or v.get("average_value") for v in values
        ):
            gaps.append(hpa["metadata"]["name"])
    return gaps


def generate_load(base: str, image: bytes, seconds: float, threads: int = 4) -> int:
    """Predictions from `threads` clients for `seconds` (so the HPAs have CPU to report)."""
    import threading

    task = DEFAULT_LOAD_TASK
    deadline, done = time.monotonic() + seconds, []

    def loop() -> None:
        while time.monotonic() < deadline:
            data, content_type = multipart("image", "load.png", image, "image/png")
            with contextlib.suppress(SmokeError):
                request(f"{base}/v1/models/{task}:predict", data, content_type, timeout=30.0)
                done.append(1)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(f"ok   load: {len(done)} predictions in {seconds:.0f} s")
    return len(done)


class Kube:
    """Rollout checks and diagnostics through the kubernetes Python client."""

    def __init__(self, namespace: str, context: str | None) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(context=context)
        except Exception as err:  # missing file, unknown context: one clear line
            raise SmokeError(
                f"cannot load kubeconfig (context {context or 'current'}): {err}"
            ) from None
        self.api_error = client.ApiException
        self.namespace = namespace
        self.apps = client.AppsV1Api()
        self.core = client.CoreV1Api()

    def rollout_pending(self, name: str) -> str | None:
        """None when the Deployment is fully rolled out, else what it is waiting for."""
        try:
            dep = self.apps.read_namespaced_deployment(name, self.namespace)
        except self.api_error as err:
            raise SmokeError(
                f"deployment/{name} in {self.namespace}: {err.status} {err.reason}"
            ) from None
        want, status = dep.spec.replicas or 0, dep.status
        if (status.observed_generation or 0) < dep.metadata.generation:
            return "spec change not observed yet"
        for what, have in (
            ("updated", status.updated_replicas),
            ("available", status.available_replicas),
            ("total", status.replicas),
        ):
            if (have or 0) != want:
                return f"{have or 0}/{want} replicas {what}"
        return None

    def wait_rollouts(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            while (pending := self.rollout_pending(name)) is not None:
                if time.monotonic() >= deadline:
                    raise SmokeError(
                        f"deployment/{name} not rolled out in {timeout:.0f} s: {pending}"
                    )
                time.sleep(2)
            print(f"ok   deployment/{name} rolled out")

    def gateway_pods(self, selector: str = "app.kubernetes.io/name=gateway") -> set[str]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return {pod.metadata.name for pod in pods}

    def hpas_without_metrics(self) -> list[str]:
        """HPAs of the namespace that report no current metric yet (metrics-server not scraping)."""
        from kubernetes import client

        hpas = client.AutoscalingV2Api().list_namespaced_horizontal_pod_autoscaler(self.namespace)
        return hpa_gaps([h.to_dict() for h in hpas.items])

    def wait_hpa_metrics(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while gaps := self.hpas_without_metrics():
            if time.monotonic() >= deadline:
                raise SmokeError(f"HPAs report no metrics after {timeout:.0f} s: {gaps}")
            time.sleep(5)
        print("ok   every HPA reports current metrics")

    def probe_refused(self, image: str, target: str, timeout: float) -> None:
        """A pod without the gateway's labels must not reach the model server (NetworkPolicy)."""
        from kubernetes import client

        name = f"smoke-netpol-{uuid.uuid4().hex[:8]}"
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/name": "smoke"}),
            spec=client.V1PodSpec(
                restart_policy="Never",
                containers=[
                    client.V1Container(
                        name="probe", image=image, command=["sh", "-c", probe_command(target)]
                    )
                ],
            ),
        )
        self.core.create_namespaced_pod(self.namespace, pod)
        try:
            log = self._finished_log(name, timeout)
        finally:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        verdict = probe_verdict(log)
        if verdict != "REFUSED":
            raise SmokeError(f"a pod without the gateway's labels got {verdict} to {target}: {log}")
        print(f"ok   a pod without the gateway's labels is refused by {target} (NetworkPolicy)")

    def _finished_log(self, name: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            phase = self.core.read_namespaced_pod(name, self.namespace).status.phase
            if phase in ("Succeeded", "Failed"):
                return self.core.read_namespaced_pod_log(name, self.namespace)
            if time.monotonic() >= deadline:
                raise SmokeError(f"policy probe pod {name} still {phase} after {timeout:.0f} s")
            time.sleep(2)

    def dump(self) -> None:
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            name = pod.metadata.name
            print(f"--- pod {name}: phase {pod.status.phase}", file=sys.stderr)
            for cond in pod.status.conditions or []:
                print(f"    {cond.type}={cond.status} {cond.message or ''}", file=sys.stderr)
            for container in pod.spec.containers:
                try:
                    log = self.core.read_namespaced_pod_log(
                        name, self.namespace, container=container.name, tail_lines=100
                    )
                except Exception as err:  # a crashed or pending pod has no log: say so
                    log = f"(no log: {err})"
                print(f"--- log {name}/{container.name}:\n{log}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="gateway URL, e.g. http://127.0.0.1:9696")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness"
    )
    parser.add_argument(
        "--kube", action="store_true", help="wait for rollouts; dump pods on failure"
    )
    parser.add_argument("--namespace", default="ct-triage")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    parser.add_argument("--deployments", default=",".join(DEFAULT_DEPLOYMENTS))
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=DEFAULT_MODELS_DIR,
        help="models root with <task>/<version>/smoke_golden.json (default: the committed ones)",
    )
    parser.add_argument(
        "--expect-version",
        action="append",
        default=[],
        metavar="TASK=N",
        help="the version TASK must answer with (default: its newest under --models-dir)",
    )
    parser.add_argument("--tolerance", type=float, default=GOLDEN_TOLERANCE)
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"bearer token for a gateway with auth on (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--no-golden", action="store_true", help="shape checks only: no versions, no goldens"
    )
    parser.add_argument(
        "--load-seconds", type=float, default=30.0,
        help="with --kube: predictions for this long, then every HPA must report metrics (0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--policy-probe-image", default="curlimages/curl:8.11.1",
        help="with --kube: image of a pod without the gateway's labels that must NOT reach "
        "the model server ('' to skip)",
    )  # fmt: skip
    parser.add_argument("--policy-probe-target", default=DEFAULT_POLICY_TARGET)
    args = parser.parse_args(argv)
    try:
        args.expect_version = {
            task: int(n) for task, n in (e.split("=", 1) for e in args.expect_version)
        }
    except ValueError:
        parser.error("--expect-version takes TASK=N")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.base_url.rstrip("/")
    kube, instances = None, None
    if args.token:
        HEADERS["Authorization"] = f"Bearer {args.token}"
    try:
        if args.kube:
            kube = Kube(args.namespace, args.context)
            kube.wait_rollouts([d for d in args.deployments.split(",") if d], args.timeout)
            instances = kube.gateway_pods()
        run_http_checks(base, args.timeout, args, instances)
        if kube and args.load_seconds > 0:
            generate_load(base, smoke_inputs()[0], args.load_seconds)
            kube.wait_hpa_metrics(args.timeout)
        if kube and args.policy_probe_image:
            kube.probe_refused(args.policy_probe_image, args.policy_probe_target, args.timeout)
    except SmokeError as err:
        print(f"FAIL {err}", file=sys.stderr)
        if kube:
            kube.dump()
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
