"""Reading Dockerfiles and TF Serving's text-protobuf configs (static: no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.fixtures.common import REPO

GATEWAY = REPO / "gateway"
MODEL_SERVER = REPO / "model-server"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines = [ln for ln in dockerfile.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def args_of(dockerfile: Path, word: str) -> list[str]:
    return [rest for w, rest in instructions(dockerfile) if w == word]


def build_args(dockerfile: Path) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args_of(dockerfile, "ARG") if "=" in a)


def entrypoint(dockerfile: Path) -> list[str]:
    (raw,) = args_of(dockerfile, "ENTRYPOINT")
    return json.loads(raw)  # exec form: signals reach the server, no shell in between


def flags(dockerfile: Path) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in entrypoint(dockerfile) if a.startswith("--"))


def text_proto_values(path: Path) -> dict[str, str]:
    """`key { value: N }` and `key: V` pairs of a flat text-protobuf file."""
    text = re.sub(r"#.*", "", path.read_text())
    wrapped = dict(re.findall(r"(\w+)\s*\{\s*value:\s*([^\s}]+)\s*\}", text))
    plain = dict(re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|\w+)", text))
    plain.pop("value", None)
    return {**plain, **wrapped}


def dockerignore(context: Path) -> list[str]:
    lines = (context / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
