"""Whether a served task can answer: an AVAILABLE version on the model server, usable by us."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from gateway.errors import ApiError
from gateway.models.registry import ModelRegistry
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.client import TfsClient


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


def readiness_of(
    client: TfsClient, registry: ModelRegistry, tasks: Sequence[str], deadline_s: float
) -> dict[str, dict]:
    """task_readiness of every task, asked at once and waited for `deadline_s` in all (one gRPC
    deadline), however many tasks and calls each takes: a frozen model server must not hold
    /readyz for a deadline per call. A task still waiting then is not ready; its calls end on
    their own deadlines, in threads nobody waits for."""
    pool = ThreadPoolExecutor(max(1, len(tasks)), thread_name_prefix="ct-readiness")
    try:
        futures = {task: pool.submit(task_readiness, client, registry, task) for task in tasks}
        wait(futures.values(), timeout=deadline_s)
    finally:
        pool.shutdown(wait=False)
    late = f"the model server did not answer within {deadline_s:g} s"
    return {
        task: future.result() if future.done() else {"ready": False, "reason": late}
        for task, future in futures.items()
    }
