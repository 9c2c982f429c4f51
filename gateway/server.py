"""The Flask (WSGI) app behind an event loop that reads every request whole before a thread sees it.

Under gunicorn's thread workers a client that sends headers and part of a body, then stalls, holds
a worker thread until the worker timeout: a dozen such connections took the gateway down,
/healthz included. Here uvicorn's event loop (gunicorn worker `gateway.server.Worker`) reads the
request, and `BufferedWsgi` awaits its whole body under a deadline (408) and a size cap (413)
before handing it to a thread pool: a stalled client costs a socket and a coroutine, not a thread.
/healthz is answered in the loop itself, and /readyz and /metrics run on a pool of their own, so
both answer while every request thread is busy. Before that, the request head has a deadline of its
own (CT_HEADER_TIMEOUT_S, JsonErrorsH11Protocol), and a request framed by both Content-Length and
Transfer-Encoding is refused with 400 and the connection closed (RFC 9112 section 6.1: smuggling).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

from gateway.errors import ApiError, BadHttpRequestError, PayloadTooLargeError, RequestTimeoutError
from gateway.observability import logs

HEALTH_PATH = "/healthz"
SIDE_PATHS = ("/readyz", "/metrics")  # cheap and must answer while the request pool is busy
SIDE_THREADS = 2
DRAIN_BYTES = 16 * 1024 * 1024  # read past an over-long body before answering 413 (see _drain)
DRAIN_SECONDS = 2.0
_Send = Callable[[dict], Any]


class _TooLarge(Exception):
    """args[0]: the client is still sending (drain before answering)."""


class _Disconnected(Exception):
    pass


def json_error(error: ApiError) -> tuple[int, list, bytes]:
    """Status, headers and body of `error`'s JSON answer, as the Flask app would give it."""
    body = json.dumps(error.to_dict()).encode()
    headers = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    return error.status, headers, body


class BufferedWsgi:
    """ASGI app: whole request under a deadline and a cap, then `wsgi_app` in a thread pool."""

    def __init__(
        self,
        wsgi_app: Callable,
        threads: int,
        body_timeout_s: float,
        max_body_bytes: Callable[[str], int],
        admit: Callable[[str, str], ApiError | None] | None = None,
        header_timeout_s: float | None = None,
    ) -> None:
        """`max_body_bytes(path)`: the most a request to `path` may send (413 above it).
        `admit(method, authorization)`: None to read the body, else the error to answer at once
        (e.g. 401 before an unauthenticated upload is taken in). `header_timeout_s`: read by
        JsonErrorsH11Protocol, the most a request head may take to arrive (None: no deadline)."""
        self.admit = admit
        self.header_timeout_s = header_timeout_s
        self.wsgi_app = wsgi_app
        self.body_timeout_s = body_timeout_s
        self.max_body_bytes = max_body_bytes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ct-request")
        self._side_pool = ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="ct-health")

    async def __call__(self, scope: dict, receive: Callable, send: _Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if _header(scope, b"transfer-encoding") and _header(scope, b"content-length") is not None:
            message = "Content-Length and Transfer-Encoding together are refused (RFC 9112 6.1)"
            await _respond(*_error_args(send, BadHttpRequestError(message)))
            return
        if scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD"):
            await _respond(send, 200, [(b"Content-Type", b"application/json")], b'{"status":"ok"}')
            return
        refusal = (
            self.admit(scope["method"], _header(scope, b"authorization") or "")
            if self.admit
            else None
        )
        if refusal is not None:
            with contextlib.suppress(TimeoutError):  # let a client still sending read the answer
                await asyncio.wait_for(_drain(receive, DRAIN_BYTES), DRAIN_SECONDS)
            await _respond(*_error_args(send, refusal))
            return
        cap = self.max_body_bytes(scope["path"])
        try:
            body = await asyncio.wait_for(self._read_body(scope, receive, cap), self.body_timeout_s)
        except TimeoutError:
            seconds = f"{self.body_timeout_s:g}"
            message = f"the request did not arrive within {seconds} s"
            await _respond(*_error_args(send, RequestTimeoutError(message)))
            return
        except _TooLarge as too_large:
            if too_large.args and too_large.args[0]:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_drain(receive, DRAIN_BYTES), DRAIN_SECONDS)
            message = f"request body is over the {cap} bytes allowed"
            await _respond(*_error_args(send, PayloadTooLargeError(message)))
            return
        except _Disconnected:
            return
        pool = self._side_pool if scope["path"] in SIDE_PATHS else self._pool
        loop = asyncio.get_running_loop()
        status, headers, payload = await loop.run_in_executor(pool, self._run, scope, body)
        await _respond(send, status, headers, payload)

    async def _read_body(self, scope: dict, receive: Callable, cap: int) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise _TooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise _TooLarge(message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _run(self, scope: dict, body: bytes) -> tuple[int, list, bytes]:
        """The WSGI app on one buffered request; (status, headers, body)."""
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info=None):
            started["status"], started["headers"] = status, headers
            return lambda data: None  # the write() callable: unused by Flask

        result: Iterable[bytes] = self.wsgi_app(wsgi_environ(scope, body), start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status = int(started["status"].split(" ", 1)[0])
        # Names as the app wrote them: h11 sends them as given (HTTP does not care, clients may).
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in started["headers"]]
        return status, headers, payload

    async def _lifespan(self, receive: Callable, send: _Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._pool.shutdown(wait=True)
                self._side_pool.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _drain(receive: Callable, limit: int) -> None:
    """Read and drop up to `limit` more bytes of a body we refuse. A client still sending when we
    answer and close would get a connection reset instead of our 413 (lingering close)."""
    dropped = 0
    while dropped <= limit:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


def _error_args(send: _Send, error: ApiError):
    status, headers, body = json_error(error)
    headers.append((b"Connection", b"close"))
    headers.append((logs.REQUEST_ID_HEADER.encode(), logs.new_request_id().encode()))
    return send, status, headers, body


async def _respond(send: _Send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def wsgi_environ(scope: dict, body: bytes) -> dict:
    """PEP 3333 environ for an ASGI HTTP scope whose body has been read whole."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        # PEP 3333: the percent-decoded path, its UTF-8 bytes as a latin-1 str (as gunicorn does)
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole: its length is what was read
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, but a request it cannot parse (bad request line, headers,
    framing) is answered with the gateway's JSON error shape instead of plain text, and a request
    head has a deadline: from the connection's start, or the previous answer's end, until the
    head is whole. Past it an idle connection is closed, a half-sent head gets a JSON 408 first
    (uvicorn's keep-alive timer stops at the first byte, so it alone would wait forever)."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        scope = self.scope
        super().data_received(data)
        if self.scope is not scope:  # a request head arrived whole
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        scope = self.scope
        super().on_response_complete()
        if self.scope is scope and not self.transport.is_closing():
            self._arm_head_deadline()  # waiting for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        seconds = getattr(self.config.app, "header_timeout_s", None)
        if seconds:
            self._head_timer = self.loop.call_later(seconds, self._head_timed_out, seconds)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self, seconds: float) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a head: say why before closing
            error = RequestTimeoutError(f"the request head did not arrive within {seconds:g} s")
            status, headers, body = json_error(error)
            lines = [b"HTTP/1.1 408 Request Timeout"] + [k + b": " + v for k, v in headers]
            self.transport.write(b"\r\n".join([*lines, b"Connection: close", b"", body]))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        status, headers, body = json_error(BadHttpRequestError(msg))
        headers.append((b"Connection", b"close"))
        for event in (h11.Response(status_code=status, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):  # fmt: skip
            self.transport.write(self.conn.send(event))
        self.transport.close()


class Worker(UvicornWorker):
    """gunicorn worker: uvicorn's event loop (h11, plain asyncio) in front of BufferedWsgi."""

    CONFIG_KWARGS = {
        "interface": "asgi3",
        "loop": "asyncio",
        "http": "gateway.server:JsonErrorsH11Protocol",
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
    }
