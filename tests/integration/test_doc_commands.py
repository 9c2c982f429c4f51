"""The documented commands, run as written from the repository's root against a live stack (the
session's gateway in front of the stand-in serving the tiny models): README's example and
docs/api.md's examples block, where every curl line answers 2xx. `localhost:9696` points at the
session's gateway, /tmp/ at a temporary folder and .venv/bin/python at this interpreter; the by-URL
line needs the internet and is left out. The `ct-triage` lines of docs/api.md that need no
placeholder and no running `serve` exit 0."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.common import PYTHON, REPO

pytestmark = pytest.mark.integration
README = (REPO / "README.md").read_text()
API = (REPO / "docs" / "api.md").read_text()
README_EXAMPLE = re.compile(r"Once `GET /readyz` answers 200.*?```bash\n(.*?)```", re.S)
EXAMPLES = re.compile(r"Wait for `GET /readyz`.*?```bash\n(.*?)```", re.S)
CT_TRIAGE = re.compile(r"The same from the `ct-triage` command.*?```bash\n(.*?)```", re.S)
NEEDS_INTERNET = "example.org"
CURL = 'curl() { command curl -sS -o /dev/null -w "%{http_code} ${@: -1}\\n" "$@"; }\n'


def lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined; comments, blanks and the URL line out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    kept = [ln for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    return [ln for ln in kept if NEEDS_INTERNET not in ln]


def localised(script: str, gateway: str, tmp: Path) -> str:
    script = script.replace("localhost:9696", gateway.removeprefix("http://"))
    return script.replace("/tmp/", f"{tmp}/").replace(".venv/bin/python", PYTHON)


def test_the_blocks_are_found() -> None:
    readme = lines(README_EXAMPLE.search(README)[1])
    examples = lines(EXAMPLES.search(API)[1])
    assert sum("curl " in c for c in readme) >= 1
    assert sum("curl " in c for c in examples) >= 9
    assert not any("../shared" in c for c in readme + examples), "a clone has no ../shared"


@pytest.mark.parametrize(
    ("text", "block"), [(README, README_EXAMPLE), (API, EXAMPLES)], ids=["README", "docs/api.md"]
)
def test_every_curl_line_answers_2xx(
    text: str, block: re.Pattern, gateway_server, tmp_path
) -> None:
    commands = lines(block.search(text)[1])
    script = "set -euo pipefail\n" + CURL + localised("\n".join(commands), gateway_server, tmp_path)
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    answers = out.stdout.splitlines()
    assert len(answers) == sum(c.count("curl ") for c in commands), out.stdout
    failed = [a for a in answers if not a.startswith("2")]
    assert not failed, f"documented lines answered: {failed}"


def test_ct_triage_lines_exit_0(gateway_server) -> None:
    runnable = [
        c.split("#")[0].split()
        for c in lines(CT_TRIAGE.search(API)[1])
        if c.split()[1] in ("predict", "models") and not re.search(r"\b[A-Z]{4,}", c)
    ]
    assert len(runnable) >= 2
    for argv in runnable:
        command = [str(Path(PYTHON).parent / argv[0]), *argv[1:], "--url", gateway_server]
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (argv, out.stdout, out.stderr)
