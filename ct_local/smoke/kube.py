"""The cluster checks of `--kube` (kubernetes Python client): rollouts, the gateway pods' names,
HPA metrics after some load, the NetworkPolicy probe, and a dump of pods and logs on failure.
The probe's command and verdict and the HPA reading are pure functions (tested without a cluster).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import uuid

from ct_local.smoke.client import SmokeError, request
from ct_local.smoke.inputs import multipart

DEFAULT_DEPLOYMENTS = ("tf-serving", "gateway")
DEFAULT_LOAD_TASK = "brain-stroke"
DEFAULT_POLICY_TARGET = "tf-serving:8500"  # the model server's Service, from inside the namespace
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
    task = DEFAULT_LOAD_TASK
    deadline, done = time.monotonic() + seconds, []

    def loop() -> None:
        while time.monotonic() < deadline:
            data, content_type = multipart("image", "load.jpg", image, "image/jpeg")
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
