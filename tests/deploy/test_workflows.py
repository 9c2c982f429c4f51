"""The GitHub workflows hold what zizmor checks, and `make lint` runs zizmor and hadolint.

Every third-party action is pinned to a full commit SHA with its tag in a comment (a tag can be
moved to other code; a commit cannot), or says in its comment that the commit could not be
established (UNPINNED_MARKER); actions/checkout leaves no token in .git/config for later steps;
the workflow grants nothing by default and each job asks for what it needs.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.common import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
MAKEFILE = REPO / "Makefile"
ZIZMOR = REPO / ".venv" / "bin" / "zizmor"
# The comment a `uses:` line carries where no commit SHA could be established for the action.
UNPINNED_MARKER = "commit cannot be established here"
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)\s*(?:#\s*(?P<comment>.*))?$", re.M)
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
TAG = re.compile(r"v\d+(\.\d+){0,2}\b")
# What a job may be granted; anything else (write-all, id-token, actions: write ...) needs a reason.
ALLOWED_WRITES = {"release.yml": {"contents", "packages", "pull-requests"}}


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
    return data


def steps(path: Path) -> list[dict]:
    return [s for job in load(path)["jobs"].values() for s in job.get("steps", [])]


def uses_lines(path: Path) -> list[tuple[str, str]]:
    """(reference, comment) of each `uses:` line, local actions (./...) left out."""
    found = [(m["ref"], m["comment"] or "") for m in USES_LINE.finditer(path.read_text())]
    return [(ref, comment) for ref, comment in found if not ref.startswith("./")]


@pytest.fixture(params=WORKFLOWS, ids=lambda p: p.name)
def workflow(request) -> Path:
    return request.param


def test_there_are_workflows_and_each_uses_line_is_read():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}
    for path in WORKFLOWS:
        parsed = sorted(s["uses"] for s in steps(path) if "uses" in s)
        assert sorted(ref for ref, _ in uses_lines(path)) == parsed, path.name


def test_third_party_actions_are_pinned_to_a_commit_with_the_tag_in_a_comment(workflow):
    for ref, comment in uses_lines(workflow):
        if UNPINNED_MARKER in comment:
            continue
        assert PINNED.fullmatch(ref), f"{workflow.name}: {ref} is not pinned to a 40-hex commit"
        assert TAG.match(comment), f"{workflow.name}: {ref} has no `# vX.Y.Z` tag comment"


def test_the_same_action_is_pinned_to_one_commit_everywhere():
    commits: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for ref, _ in uses_lines(path):
            action, _, commit = ref.partition("@")
            commits.setdefault(action, set()).add(commit)
    assert {a: c for a, c in commits.items() if len(c) > 1} == {}


def test_checkout_does_not_persist_credentials(workflow):
    checkouts = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts, f"{workflow.name}: no checkout step"
    for step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, workflow.name


def test_nothing_is_granted_by_default_and_each_job_asks_for_its_permissions(workflow):
    data = load(workflow)
    assert data.get("permissions") in ({}, {"contents": "read"}), workflow.name
    for name, job in data["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{workflow.name}: {name} has none"
        writes = {scope for scope, level in job["permissions"].items() if level != "read"}
        assert writes <= ALLOWED_WRITES.get(workflow.name, set()), f"{name}: {writes}"


def test_make_lint_runs_zizmor_and_hadolint_on_every_dockerfile():
    text = MAKEFILE.read_text()
    (lint,) = re.findall(r"^lint:.*\n((?:\t.*\n)+)", text, re.M)
    assert re.search(r"zizmor .*\.github/workflows", lint)
    assert "hadolint $(DOCKERFILES)" in lint
    (listed,) = re.findall(r"^DOCKERFILES\s*:=\s*(.+)$", text, re.M)
    tracked = subprocess.run(
        ["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(listed.split()) == sorted(tracked)


def test_zizmor_finds_nothing_in_the_workflows():
    """The regular persona offline, as `make lint` runs it (the dev lock installs zizmor)."""
    if not ZIZMOR.is_file():
        pytest.skip("zizmor is not in .venv: make venv")
    out = subprocess.run(
        [str(ZIZMOR), "--offline", "--no-progress", "--format=json", ".github/workflows"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(out.stdout)
    summary = [(f["ident"], f["determinations"]["severity"]) for f in findings]
    assert summary == [], summary
