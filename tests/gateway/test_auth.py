"""Bearer tokens configured as SHA-256 hashes (gateway/auth.py): 401s that say nothing about
which part was wrong, rotation without a restart, open probes and page, a constant-time compare."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
import time

import pytest

from gateway import auth
from gateway.app import AUTH_EXTENSION, EXTENSION, create_app
from gateway.config import ConfigError, Settings

TOKEN, OTHER = "s3cret-token-one", "another-token-two"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write(path, *lines: str) -> None:
    """Replace the file atomically (temp file + rename), written a while ago: taken in at once."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    past = time.time_ns() - 60 * 10**9
    os.utime(tmp, ns=(past, past))
    os.replace(tmp, path)


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    write(path, "# gateway tokens", sha(TOKEN), "")
    return path


@pytest.fixture
def client(fake_model_server, tokens_file):
    settings = Settings(
        models=("brain-stroke", "brain-tumor"),
        default_task="brain-stroke",
        model_server=fake_model_server.target,
        auth_tokens_file=str(tokens_file),
    )
    app = create_app(settings)
    yield app.test_client()
    app.extensions[EXTENSION].client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_and_wrong_tokens_get_the_same_401(client):
    answers = [
        client.get("/v1/models"),
        client.get("/v1/models", headers=bearer(OTHER)),
        client.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        client.get("/v1/models", headers={"Authorization": "Bearer"}),
        client.post("/v1/models/brain-stroke:predict", headers=bearer(TOKEN + "x")),
        client.post("/predict", headers=bearer(sha(TOKEN))),  # the hash itself is no token
    ]
    for response in answers:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ct-triage"'
        assert response.get_json() == answers[0].get_json()
    assert answers[0].get_json()["error"]["code"] == "unauthorized"


def test_the_right_token_is_accepted(client):
    response = client.get("/v1/models", headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.get_json()["models"]
    assert (
        client.get("/v1/models", headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200
    )


def test_probes_metrics_and_page_stay_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/no/such/route").status_code == 401  # routes are not revealed


def test_rotation_needs_no_restart(client, tokens_file):
    assert client.get("/v1/models", headers=bearer(OTHER)).status_code == 401
    write(tokens_file, sha(TOKEN), sha(OTHER))  # both during the rotation
    assert client.get("/v1/models", headers=bearer(OTHER)).status_code == 200
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 200
    write(tokens_file, sha(OTHER))  # the old token retired
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 401
    assert client.get("/v1/models", headers=bearer(OTHER)).status_code == 200


@pytest.fixture
def settle(monkeypatch) -> float:
    """A short settle time for the tokens file (auth.SETTLE_S), set before the app is made."""
    monkeypatch.setattr(auth, "SETTLE_S", 0.2, raising=False)
    return 0.2


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def auth_errors():
    """The messages gateway.auth logs at ERROR during the test."""
    handler, logger = Errors(), logging.getLogger("gateway.auth")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "content", [(sha(TOKEN), "not a hash"), ("# no token left",)], ids=["bad", "empty"]
)
def test_a_malformed_or_empty_file_denies_everything_logged_once(
    client, tokens_file, auth_errors, content
):
    write(tokens_file, *content)
    statuses = {client.get("/v1/models", headers=bearer(TOKEN)).status_code for _ in range(20)}
    assert statuses == {401}  # not the previous set: TOKEN was meant to be removed
    assert len(auth_errors) == 1, auth_errors
    write(tokens_file, sha(TOKEN))
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 200


def test_a_deleted_file_denies_everything_once_it_stays_deleted(
    settle, client, tokens_file, auth_errors
):
    tokens_file.unlink()
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 200  # settling
    time.sleep(settle * 1.5)
    statuses = {client.get("/v1/models", headers=bearer(TOKEN)).status_code for _ in range(20)}
    assert statuses == {401}
    assert len(auth_errors) == 1, auth_errors
    write(tokens_file, sha(TOKEN))
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 200


def test_an_in_place_change_counts_as_still_only_once_seen_still(settle, client, tokens_file):
    """A stat during a truncate can show the new size with the old mtime: an in-place change is
    not trusted by its mtime, only once the same stamp has been seen for the settle time."""
    past = tokens_file.stat().st_mtime_ns
    tokens_file.write_text("")  # same inode
    os.utime(tokens_file, ns=(past - 10**9, past - 10**9))
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 200  # kept
    time.sleep(settle * 1.5)
    assert client.get("/v1/models", headers=bearer(TOKEN)).status_code == 401  # still: empty


def rewrite_in_place(path, text: str) -> None:
    """Truncate, then write in two steps with a pause: readers can see it empty or half-written."""
    with open(path, "r+") as file:
        file.truncate(0)
        file.flush()
        time.sleep(0.001)
        file.write(text[: len(text) // 2])
        file.flush()
        time.sleep(0.001)
        file.write(text[len(text) // 2 :])


def test_a_rewrite_in_place_under_load_refuses_no_valid_token(monkeypatch, client, tokens_file):
    """TOKEN stays listed (last, so a half-written file lacks it) while OTHER comes and goes.
    The settle time is 1 s here: the writer thread, descheduled mid-rewrite for longer than the
    settle time on a loaded machine, would (rightly) have its half-written file taken in."""
    settle = 1.0
    monkeypatch.setattr(client.application.extensions[AUTH_EXTENSION], "settle_s", settle)
    versions = [f"{sha(OTHER)}\n{sha(TOKEN)}\n", f"# rotated\n{sha(TOKEN)}\n"]
    app = client.application
    done = threading.Event()
    counts = {"requests": 0, "refused": 0}
    lock = threading.Lock()

    def requests() -> None:
        own = app.test_client()
        while not done.is_set():
            status = own.get("/no/such/route", headers=bearer(TOKEN)).status_code
            with lock:
                counts["requests"] += 1
                counts["refused"] += status == 401

    readers = [threading.Thread(target=requests) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(3):  # bursts of rewrites, then still long enough to be taken in
            for i in range(40):
                rewrite_in_place(tokens_file, versions[(round_ + i) % 2])
            time.sleep(settle * 1.5)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    print(
        f"\nin-place rewrites: {counts['refused']} of {counts['requests']} valid requests refused"
    )
    assert counts["requests"] > 100
    assert counts["refused"] == 0
    last_has_other = (2 + 39) % 2 == 0
    assert (client.get("/v1/models", headers=bearer(OTHER)).status_code == 200) == last_has_other


def test_a_bad_file_fails_at_start(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("abc\n")
    for path in (bad, tmp_path / "missing"):
        with pytest.raises(ConfigError, match="CT_AUTH_TOKENS_FILE"):
            Settings.from_env({"CT_MODELS": "brain-stroke", "CT_AUTH_TOKENS_FILE": str(path)})


def test_no_file_means_auth_off(fake_model_server, caplog):
    settings = Settings(
        models=("brain-stroke", "brain-tumor"),
        default_task="brain-stroke",
        model_server=fake_model_server.target,
    )
    with caplog.at_level("WARNING", logger="gateway.auth"):
        app = create_app(settings)
    assert "auth: off" in caplog.text
    try:
        assert app.test_client().get("/v1/models").status_code == 200
    finally:
        app.extensions[EXTENSION].client.close()


def test_the_compare_is_constant_time_over_every_hash():
    digests = auth.parse_hashes(f"{sha('a')}\n{sha(TOKEN)}\n{sha('b')}\n")
    assert auth.token_matches(TOKEN, digests)
    assert not auth.token_matches("nope", digests)
    source = inspect.getsource(auth.token_matches)
    assert "hmac.compare_digest" in source
    assert "return" not in source.split("for candidate", 1)[1].split("\n    return", 1)[0]
    assert "break" not in source and "==" not in source


def test_kube_auth_component_renders_onto_the_gateway(tmp_path):
    """kube-config/components/auth on a temp overlay over base: Secret volume + env, no subPath."""
    import shutil
    import subprocess

    import yaml

    from tests.fixtures.common import REPO

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    shutil.copytree(REPO / "kube-config" / "base", tmp_path / "base")
    shutil.copytree(REPO / "kube-config" / "components" / "auth", tmp_path / "components" / "auth")
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ../base\ncomponents:\n  - ../components/auth\n"
    )
    out = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "overlay")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway"
    )
    pod = gateway["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "gateway-tokens")
    volume = next(v for v in pod["volumes"] if v["name"] == "gateway-tokens")
    assert env["CT_AUTH_TOKENS_FILE"].startswith(mount["mountPath"] + "/")
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath mounts never update
    assert volume["secret"]["secretName"] == "gateway-tokens"
    assert volume["secret"]["optional"] is False
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])  # base kept


@pytest.mark.integration
def test_auth_in_the_real_gateway_process(tokens_file):
    """python -m gateway (gunicorn + gateway/server.py) keeps the 401 and its header."""
    import urllib.error
    import urllib.request

    from tests.fixtures.common import free_port
    from tests.fixtures.gateway import running_gateway

    dead = f"127.0.0.1:{free_port()}"  # no model server: an accepted token then gets a 503
    with running_gateway(dead, wait_for="/healthz", CT_AUTH_TOKENS_FILE=str(tokens_file)) as gw:

        def get(token: str | None) -> tuple[int, dict]:
            request = urllib.request.Request(f"{gw.url}/v1/models", headers=bearer(token or ""))
            if token is None:
                request.remove_header("Authorization")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, dict(response.headers)
            except urllib.error.HTTPError as err:
                return err.code, dict(err.headers)

        status, headers = get(None)
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="ct-triage"'
        assert get(OTHER)[0] == 401
        assert get(TOKEN)[0] in (502, 503, 504)  # past auth, to the (absent) model server
        assert "auth: on, 1 token hashes" in gw.log()
