"""The one pin: the TF Serving version in model-server/Dockerfile's `FROM tensorflow/serving`."""

from __future__ import annotations

import re
from pathlib import Path

from ct_local.paths import MODEL_SERVER_DIR

DOCKERFILE = MODEL_SERVER_DIR / "Dockerfile"
SERVING_IMAGE = "tensorflow/serving"

_VERSION = re.compile(r"^(\d+\.\d+\.\d+)(?:-[A-Za-z0-9.]+)?$")


class PinError(ValueError):
    """The TF Serving version cannot be read from the Dockerfile."""


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with line continuations joined and comment lines dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [ln.strip() for ln in joined.splitlines() if ln.strip()]


def _serving_tag(line: str) -> tuple[bool, str | None]:
    """(whether a FROM line names the TF Serving image, its tag)."""
    words = line.split()
    if words[0].upper() != "FROM":
        return False, None
    reference = next((w for w in words[1:] if not w.startswith("--")), "")
    name, _, _digest = reference.partition("@")
    image, tag = name, None
    if ":" in name.rsplit("/", 1)[-1]:  # a colon before the last "/" is a registry port
        image, tag = name.rsplit(":", 1)
    image = image.lower()
    return image == SERVING_IMAGE or image.endswith("/" + SERVING_IMAGE), tag  # or a mirror's


def parse_serving_version(text: str, source: str = "Dockerfile") -> str:
    """The TF Serving version of the `FROM tensorflow/serving:<version>` line of a Dockerfile."""
    found = []
    for line in _instructions(text):
        is_serving, tag = _serving_tag(line)
        if not is_serving:
            continue
        version = _VERSION.match(tag or "")
        if not version:
            raise PinError(
                f"{source}: `{line}` pins no TF Serving version (tag {tag!r}); "
                f"write FROM {SERVING_IMAGE}:<major.minor.patch>"
            )
        found.append(version.group(1))
    if not found:
        raise PinError(
            f"{source}: no `FROM {SERVING_IMAGE}:<version>` line, so the TF Serving version "
            "the models must load under is unknown"
        )
    if len(set(found)) > 1:
        raise PinError(f"{source}: several TF Serving versions pinned: {', '.join(found)}")
    return found[0]


def serving_version(dockerfile: Path = DOCKERFILE) -> str:
    """The one pin: the TF Serving version model-server/Dockerfile builds from."""
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise PinError(f"cannot read {dockerfile}: {exc}") from exc
    return parse_serving_version(text, str(dockerfile))
