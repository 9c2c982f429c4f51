"""The gateway's gRPC channel spreads predictions over every model-server address it resolves.

In Kubernetes, DNS for the headless tf-serving Service returns one A record per pod; the gateway's
channel (round_robin) must use them all and drop a pod that dies. Here three real stand-in
processes on loopback play the pods, and an `ipv4:` target lists them as DNS would. Each server's
Prometheus request counter (REST /monitoring/prometheus/metrics) shows who answered what.
"""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ct_contract import signatures as mc
from ct_local.standin import ModelServer, start_model_server
from ct_standin.rest import METRICS_PATH
from gateway.config import Settings
from gateway.service import Gateway
from gateway.tfs.client import TfsClient
from tests.fixtures.common import TINY_MODELS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVERS = 3
REQUESTS = 60
REQUEST_COUNT = re.compile(r'^:tensorflow:serving:request_count\{model_name="([^"]*)".*\}\s+(\S+)$')


def predict_count(server: ModelServer, task: str) -> int:
    """Predict-or-other RPCs the server has answered for `task`, from its Prometheus counter."""
    url = f"http://127.0.0.1:{server.rest_port}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        int(float(m.group(2)))
        for line in text.splitlines()
        if (m := REQUEST_COUNT.match(line)) and m.group(1) == task
    )


@pytest.fixture(scope="module")
def servers(tiny_models_config):
    with ThreadPoolExecutor(SERVERS) as pool:
        started = [pool.submit(start_model_server, tiny_models_config) for _ in range(SERVERS)]
        errors = [f.exception() for f in started]
    running = [f.result() for f, e in zip(started, errors, strict=True) if e is None]
    if any(errors):
        for server in running:
            server.stop()
        pytest.fail(f"a model server did not start: {next(e for e in errors if e)}")
    yield running
    for server in running:
        server.stop()


def test_round_robin_uses_every_server_and_drops_a_dead_one(servers):
    task = TINY_MODELS[0][0]
    target = "ipv4:" + ",".join(f"127.0.0.1:{s.grpc_port}" for s in servers)
    settings = Settings(models=(task,), default_task=task, model_server=target)
    client = TfsClient(settings)
    info = Gateway(settings, client).registry.get(task)  # metadata calls, before counting
    pixels = np.zeros((1, info.input_size, info.input_size, info.channels), info.input_dtype)

    def predict_many(n: int) -> None:
        for _ in range(n):
            response = client.predict(task, {mc.INPUT_KEY: pixels}, mc.PREDICT_SIGNATURE)
            assert mc.PROBABILITIES_KEY in response.outputs

    try:
        before = [predict_count(s, task) for s in servers]
        predict_many(REQUESTS)
        got = [predict_count(s, task) - b for s, b in zip(servers, before, strict=True)]
        assert sum(got) == REQUESTS, got
        assert min(got) >= REQUESTS // SERVERS // 2, f"unbalanced: {got}"

        dead, alive = servers[0], servers[1:]
        dead.kill()
        before = [predict_count(s, task) for s in alive]
        predict_many(REQUESTS)  # every one must succeed (the client retries UNAVAILABLE once)
        got = [predict_count(s, task) - b for s, b in zip(alive, before, strict=True)]
        # Every answered request is counted by a survivor, so none reached the killed server.
        assert sum(got) == REQUESTS, got
        assert min(got) >= REQUESTS // len(alive) // 2, f"unbalanced after the kill: {got}"
    finally:
        client.close()
