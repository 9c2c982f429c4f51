"""Whether a served task can answer: an AVAILABLE version on the model server, usable by us."""

from __future__ import annotations

from gateway import tfs_api_pb2 as pb
from gateway.errors import ApiError
from gateway.model_registry import ModelRegistry
from gateway.tfs_client import TfsClient


def task_readiness(client: TfsClient, registry: ModelRegistry, task: str) -> dict:
    """{"ready": bool, ...}: the version and available versions, or the reason it is not ready."""
    try:
        status = client.status(task)
    except ApiError as error:
        return {"ready": False, "reason": error.message}
    available = sorted(
        v.version for v in status.model_version_status if v.state == pb.ModelVersionStatus.AVAILABLE
    )
    if not available:
        states = [
            f"v{v.version} {pb.ModelVersionStatus.State.Name(v.state)}"
            for v in status.model_version_status
        ]
        return {"ready": False, "reason": f"no AVAILABLE version ({', '.join(states) or 'none'})"}
    try:
        version = registry.get(task).version
    except ApiError as error:
        return {"ready": False, "reason": error.message, "available_versions": available}
    return {"ready": True, "version": version, "available_versions": available}
