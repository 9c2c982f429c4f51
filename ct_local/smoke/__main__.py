"""Smoke-test a running gateway end to end: health, readiness, one prediction per served model.

    ct-triage smoke --base-url http://127.0.0.1:9696
    ct-triage smoke --base-url http://127.0.0.1:9696 --kube --namespace ct-triage
    ct-triage smoke --base-url http://127.0.0.1:9696 \
        --dicom-node 127.0.0.1:11112 --dicom-node-http http://127.0.0.1:8080

`python -m ct_local.smoke` is the same command (`ct-triage smoke` also takes --url). Exit status
0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ct_local.smoke.checks import run_http_checks
from ct_local.smoke.client import HEADERS, SmokeError
from ct_local.smoke.dicom import NODE_AE, SMOKE_CALLING_AE, check_dicom_node
from ct_local.smoke.golden import DEFAULT_MODELS_DIR, GOLDEN_TOLERANCE, Golden, load_golden
from ct_local.smoke.inputs import smoke_inputs
from ct_local.smoke.kube import DEFAULT_DEPLOYMENTS, DEFAULT_POLICY_TARGET, Kube, generate_load

TOKEN_ENV = "CT_SMOKE_TOKEN"  # bearer token for a gateway with auth on (gateway/auth.py)


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
    dicom = parser.add_argument_group("DICOM node (ct_local/smoke/dicom.py)")
    dicom.add_argument(
        "--dicom-node", default="", metavar="HOST:PORT",
        help="also check the DICOM node there: C-ECHO and a C-STORE of a small CT series",
    )  # fmt: skip
    dicom.add_argument(
        "--dicom-node-http", default="", metavar="URL",
        help="the node's HTTP port: /healthz, and /metrics must show the gateway answered",
    )  # fmt: skip
    dicom.add_argument("--dicom-called-ae", default=NODE_AE)
    dicom.add_argument("--dicom-calling-ae", default=SMOKE_CALLING_AE)
    dicom.add_argument(
        "--no-dicom-store", action="store_true", help="C-ECHO (and /healthz) only, no C-STORE"
    )
    args = parser.parse_args(argv)
    try:
        args.expect_version = {
            task: int(n) for task, n in (e.split("=", 1) for e in args.expect_version)
        }
    except ValueError:
        parser.error("--expect-version takes TASK=N")
    return args


def _golden_from(args: argparse.Namespace) -> Callable[[list[str]], Golden] | None:
    """The golden answers for the served tasks, or None with --no-golden (shape checks only)."""
    if args.no_golden:
        return None

    def load(tasks: list[str]) -> Golden:
        return load_golden(args.models_dir, args.expect_version, tasks, args.tolerance)

    return load


def _run(args: argparse.Namespace, kube: Kube | None) -> None:
    base = args.base_url.rstrip("/")
    instances = None
    if kube:
        names = [d for d in args.deployments.split(",") if d]
        if args.dicom_node and "dicom-node" not in names:
            names.append("dicom-node")
        kube.wait_rollouts(names, args.timeout)
        instances = kube.gateway_pods()
    run_http_checks(base, args.timeout, _golden_from(args), instances)
    if args.dicom_node:
        check_dicom_node(
            args.dicom_node,
            args.timeout,
            called=args.dicom_called_ae,
            calling=args.dicom_calling_ae,
            http_base=args.dicom_node_http or None,
            send_series=not args.no_dicom_store,
        )
    if kube and args.load_seconds > 0:
        generate_load(base, smoke_inputs()[0], args.load_seconds)
        kube.wait_hpa_metrics(args.timeout)
    if kube and args.policy_probe_image:
        kube.probe_refused(args.policy_probe_image, args.policy_probe_target, args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.token:
        HEADERS["Authorization"] = f"Bearer {args.token}"
    kube = None
    try:
        if args.kube:
            kube = Kube(args.namespace, args.context)
        _run(args, kube)
    except SmokeError as err:
        print(f"FAIL {err}", file=sys.stderr)
        if kube:
            kube.dump()
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
