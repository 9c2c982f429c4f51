"""The release workflow and the kind toolchain agree with the manifests, the Makefile and CI.

.github/workflows/release.yml builds what mk/kind.mk builds (same contexts), for linux/amd64, pushes
the names the production overlay pulls, and rewrites exactly the images the base uses. CI's kubectl
is the kind node image's Kubernetes version, which is the version the manifests are validated for.
"""

from __future__ import annotations

import re

import yaml

from tests.deploy.manifests import (
    KUBE,
    KUBERNETES_VERSION,
    WORKFLOW,
    docker_build,
    make_builds,
    make_var,
)
from tests.fixtures.common import REPO

RELEASE = REPO / ".github" / "workflows" / "release.yml"
PRODUCTION = KUBE / "overlays" / "production" / "kustomization.yaml"
SEMVER = r"v?(\d+)\.(\d+)\.(\d+)"


def workflow(path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
    return data


def steps(path) -> list[dict]:
    return [s for job in workflow(path)["jobs"].values() for s in job["steps"]]


def production_images() -> dict[str, str]:
    kustomization = yaml.safe_load(PRODUCTION.read_text())
    return {i["name"]: i["newName"] for i in kustomization["images"]}


def minor(version: str) -> tuple[int, int]:
    match = re.fullmatch(SEMVER, version)
    assert match, version
    return int(match[1]), int(match[2])


def test_release_runs_on_version_tags_with_the_permissions_it_needs():
    release = workflow(RELEASE)
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {}  # nothing by default: the job asks (test_workflows.py)
    assert release["jobs"]["images"]["permissions"] == {
        "contents": "write",
        "packages": "write",
        "pull-requests": "write",
    }


def test_release_builds_both_images_for_amd64_from_the_make_contexts():
    builds = [
        s for s in steps(RELEASE) if s.get("uses", "").startswith("docker/build-push-action@")
    ]
    built = {docker_build(b["with"].get("file"), b["with"]["context"]) for b in builds}
    assert built == set(make_builds().values()), "release.yml and mk/kind.mk build differently"
    for build in builds:
        # tensorflow/serving is published for linux/amd64 only.
        assert build["with"]["platforms"] == "linux/amd64"
        assert build["with"]["push"] is True
        assert build["with"]["tags"].endswith(":${{ github.ref_name }}")
    # Actions are pinned to commits (tests/deploy/test_workflows.py checks every workflow).


def test_release_pushes_the_names_production_pulls_and_sets_them_by_digest():
    text = RELEASE.read_text()
    pushed = set(re.findall(r"ghcr\.io/\$\{owner\}/([\w-]+)", text))
    images = production_images()
    assert pushed == {name.rpartition("/")[2] for name in images.values()}
    for name in images.values():
        assert name.startswith("ghcr.io/"), name
    (edit,) = [s for s in steps(RELEASE) if "kustomize edit set image" in s.get("run", "")]
    assert edit["working-directory"] == str(PRODUCTION.parent.relative_to(REPO))
    # Every image the base names (production's `images` keys) is rewritten, tag and digest.
    for base_name in images:
        assert re.search(
            rf'"{re.escape(base_name)}=\$\{{\w+\}}:\$\{{TAG\}}@\$\{{\w+_DIGEST\}}"', edit["run"]
        )
    (pr,) = [s for s in steps(RELEASE) if "gh pr create" in s.get("run", "")]
    assert str(PRODUCTION.relative_to(REPO)) in pr["run"]
    # checkout persists no credentials: git push goes through gh's helper, with GH_TOKEN set.
    assert pr["run"].index("gh auth setup-git") < pr["run"].index("git push")
    assert pr["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"


def test_ci_kubectl_matches_the_kind_node_image_and_the_validated_version():
    ci = workflow(WORKFLOW)
    kubectl = ci["env"]["KUBECTL_VERSION"]
    node_image = make_var("KIND_NODE_IMAGE")
    match = re.fullmatch(rf"kindest/node:({SEMVER})@sha256:[0-9a-f]{{64}}", node_image)
    assert match, f"{node_image}: pin the node image by version and digest"
    assert kubectl == match[1], f"CI's kubectl {kubectl} != the cluster's {match[1]}"
    assert minor(kubectl) == minor(KUBERNETES_VERSION)
    (kind_action,) = [
        s
        for s in ci["jobs"]["kind-smoke"]["steps"]
        if s.get("uses", "").startswith("helm/kind-action")
    ]
    assert kind_action["with"]["kubectl_version"] == "${{ env.KUBECTL_VERSION }}"
    assert "--image $(KIND_NODE_IMAGE)" in (REPO / "mk" / "kind.mk").read_text()
