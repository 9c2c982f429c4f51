"""`ct-triage`: the project's one command (pyproject.toml [project.scripts]).

    ct-triage serve                 # the local model server + gateway (what `make run` does)
    ct-triage predict scan.jpg --task brain-stroke     # a file, URL, folder, .zip or DICOM series
    ct-triage models                # the served models
    ct-triage smoke                 # the smoke test against the running gateway (make kind-smoke)
    ct-triage model-server          # the local model server alone (ct_local/standin.py)
    ct-triage tf-compat             # the committed models under TF Serving's TensorFlow

predict and models are gateway/client.py (standard library only); serve and model-server need
the `standin` extra, smoke and tf-compat the `dev` one. The gateway is --url, else
http://localhost:$CT_PORT. Exit status: 0 success, 1 an error answer or a failed check, 2 a usage
or local error (unreadable input, unreachable gateway, a missing extra); tf-compat's are listed in
ct_local/tf_compat/__init__.py.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

from gateway import client

USAGE_ERROR = 2


def _serve(argv: list[str]) -> int:
    from ct_local.run import main

    return main(argv)


def _smoke(argv: list[str]) -> int:
    from ct_local.smoke.__main__ import main

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--url", default=None)
    args, rest = parser.parse_known_args(argv)
    if "--base-url" in rest or any(a.startswith("--base-url=") for a in rest):
        return main(rest)
    return main(["--base-url", args.url or client.default_url(), *rest])


def _model_server(argv: list[str]) -> int:
    from ct_local.standin import main

    return main(argv)


def _tf_compat(argv: list[str]) -> int:
    from ct_local.tf_compat.__main__ import main

    with contextlib.suppress(BrokenPipeError):  # `ct-triage tf-compat | head`
        return main(argv)
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "serve": (_serve, "the local model server and gateway, restarted if they die (make run)"),
    "predict": (client.main, "send an image, URL, folder, .zip or DICOM series; print the answer"),
    "models": (client.models_main, "list the models the gateway serves"),
    "smoke": (_smoke, "smoke-test a running gateway (ct_local/smoke)"),
    "model-server": (_model_server, "the local model server alone: the stand-in or TF Serving"),
    "tf-compat": (_tf_compat, "the committed models under the TF Serving image's TensorFlow"),
}


def usage() -> str:
    lines = [f"  {name:<13} {text}" for name, (_, text) in COMMANDS.items()]
    return "usage: ct-triage COMMAND [--help] ...\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else USAGE_ERROR
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ct-triage: unknown command {name!r}\n{usage()}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return COMMANDS[name][0](rest)
    except ModuleNotFoundError as exc:
        extra = "standin" if name in ("serve", "model-server") else "dev"
        hint = f"install the extra: pip install -e '.[{extra}]'"
        print(f"ct-triage {name}: {exc}; {hint}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
