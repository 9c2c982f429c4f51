"""STOW-RS: POST /studies feeds the same spool and assembly as C-STORE."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.request

import pytest

from ct_dicom_node.node import Node
from tests.dicom_node.helpers import FakeGateway, Pacs, ct_series, node_config

pytestmark = pytest.mark.integration
TOKEN = "stow-test-token"


def part10(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(files: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    chunks = []
    for data in files:
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), ctype


def post(url: str, body: bytes, ctype: str, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def stack(tmp_path):
    tokens = tmp_path / "stow-tokens"
    tokens.write_text(f"# test\n{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    gateway, pacs = FakeGateway(), Pacs()
    cfg = node_config(tmp_path, gateway.url, dest_port=pacs.port, stow_token_file=str(tokens))
    node = Node(cfg).start()
    yield node, f"http://127.0.0.1:{node._http.server_address[1]}/studies", pacs
    node.stop()
    pacs.close()
    gateway.close()


def test_a_series_stored_by_stow_rs_comes_back_as_sr_and_sc(stack):
    node, url, pacs = stack
    series = ct_series(3)
    body, ctype = multipart([part10(ds) for ds in series] + [b"not dicom at all"])
    status, answer = post(url, body, ctype)
    assert status == 202  # three stored, one failed
    stored = [i["00081155"]["Value"][0] for i in answer["00081199"]["Value"]]
    assert stored == [ds.SOPInstanceUID for ds in series]
    (failed,) = answer["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    received = pacs.wait_for(2)
    assert {ds.StudyInstanceUID for ds in received} == {series[0].StudyInstanceUID}


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_stow_without_a_valid_token_is_refused(stack, token):
    _, url, _ = stack
    body, ctype = multipart([part10(ct_series(1)[0])])
    assert post(url, body, ctype, token)[0] == 401


def test_stow_refuses_other_media_types_and_is_off_without_tokens(stack, tmp_path):
    _, url, _ = stack
    assert post(url, b"{}", "application/json")[0] == 415
    gateway = FakeGateway()
    node = Node(node_config(tmp_path / "other", gateway.url)).start()
    try:
        other = f"http://127.0.0.1:{node._http.server_address[1]}/studies"
        body, ctype = multipart([part10(ct_series(1)[0])])
        assert post(other, body, ctype)[0] == 404
    finally:
        node.stop()
        gateway.close()
