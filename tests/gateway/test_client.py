"""gateway/client.py and the `ct-triage` command (ct_local/cli.py) without a model server: what
they import, CT_PORT and --url, exit statuses (a stdlib HTTP server on loopback answers)."""

from __future__ import annotations

import json
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ct_local import cli
from gateway import client, config
from tests.fixtures.common import PYTHON, REPO

HEAVY = ("numpy", "PIL", "flask", "werkzeug", "grpc", "google", "ct_contract", "gateway.config")


class Answers(BaseHTTPRequestHandler):
    """200 {"models": []} on GET /v1/models, a JSON 404 on anything else."""

    def _reply(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.command == "GET" and self.path == "/v1/models"
        body = {"models": []} if ok else {"error": {"code": "not_found", "message": self.path}}
        data = json.dumps(body).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def answers() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("module", ["gateway.client", "ct_local.cli"])
def test_the_client_and_the_command_import_only_the_standard_library(module) -> None:
    code = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.startswith({HEAVY})))"
    out = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_default_port_agrees_with_the_gateway() -> None:
    assert client.DEFAULT_PORT == config.DEFAULT_PORT


def test_ct_port_sets_the_default_url(monkeypatch) -> None:
    monkeypatch.setenv("CT_PORT", "12345")
    assert client.default_url() == "http://localhost:12345"
    monkeypatch.delenv("CT_PORT")
    assert client.default_url() == f"http://localhost:{config.DEFAULT_PORT}"


def test_models_answers_0_and_prints_json(answers, capsys) -> None:
    assert cli.main(["models", "--url", answers]) == 0
    assert json.loads(capsys.readouterr().out) == {"models": []}


def test_models_follows_ct_port(answers, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CT_PORT", answers.rsplit(":", 1)[1])
    assert cli.main(["models"]) == 0


def test_an_error_answer_exits_1(answers, capsys) -> None:
    sample = str(REPO / "docs" / "samples" / "brain-stroke_stroke.jpg")
    assert cli.main(["predict", sample, "--task", "brain-stroke", "--url", answers]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "not_found"


def test_unreachable_gateway_and_unreadable_input_exit_2(answers, tmp_path) -> None:
    sample = str(REPO / "docs" / "samples" / "brain-stroke_stroke.jpg")
    assert cli.main(["predict", sample, "--url", "http://127.0.0.1:9"]) == 2
    assert cli.main(["predict", str(tmp_path / "missing.png"), "--url", answers]) == 2
    assert (
        cli.main(["predict", str(tmp_path), "--task", "x", "--url", answers]) == 2
    )  # empty folder


def test_unknown_or_missing_command_exits_2(capsys) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out


def test_smoke_gets_the_gateway_url(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("ct_local.smoke.__main__.main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setenv("CT_PORT", "4242")
    assert cli.main(["smoke", "--no-golden"]) == 0
    assert cli.main(["smoke", "--url", "http://gw:1", "--kube"]) == 0
    assert seen == [
        ["--base-url", "http://localhost:4242", "--no-golden"],
        ["--base-url", "http://gw:1", "--kube"],
    ]


def test_serve_is_make_run(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("ct_local.run.main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["serve", "--grpc-port", "8600"]) == 0
    assert seen == [["--grpc-port", "8600"]]


def test_the_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ct-triage": "ct_local.cli:main"}
