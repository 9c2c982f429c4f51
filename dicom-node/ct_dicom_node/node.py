"""The node: the SCP spools instances, a worker thread processes complete series and delivers
results, a small HTTP server answers /healthz and /metrics. `Node.start()` resumes the spool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ct_dicom_node import processing
from ct_dicom_node.assembly import Assembler, backoff_s
from ct_dicom_node.config import NodeConfig
from ct_dicom_node.delivery import Outbox, Sender, c_store_sender
from ct_dicom_node.gateway_client import GatewayClient, GatewayUnavailable
from ct_dicom_node.metrics import Metrics
from ct_dicom_node.scp import Refuse, handlers, make_ae
from ct_dicom_node.spool import Spool, key_of
from ct_dicom_node.web import serve_http

log = logging.getLogger(__name__)


class Node:
    def __init__(
        self,
        config: NodeConfig,
        clock: Callable[[], float] = time.time,
        sender: Sender | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.spool = Spool(config.spool_dir)
        self.assembler = Assembler(config.quiet_s, config.max_age_s)
        self.outbox = Outbox(self.spool.outbox, config.retry_initial_s, config.retry_max_s)
        self.gateway = GatewayClient(
            config.gateway_url, config.gateway_timeout_s, config.gateway_token_file
        )
        self.sender = sender or c_store_sender(config.ae_title, config.destination)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._http = None

    # -- intake ---------------------------------------------------------------------------
    def store(self, series_uid: str, sop_uid: str, data: bytes) -> None:
        """Spool one instance (the SCP's Store); refuses what would break the series limits."""
        key = key_of(series_uid)
        state = self.assembler.peek(key)
        if state is not None and state.count + 1 > self.config.max_series_instances:
            raise Refuse(f"series over {self.config.max_series_instances} instances")
        if state is not None and state.size + len(data) > self.config.max_series_bytes:
            raise Refuse(f"series over {self.config.max_series_bytes} bytes")
        self.spool.put(series_uid, sop_uid, data)
        self.assembler.arrived(key, self.clock(), len(data))

    def stow_store(self, series_uid: str, sop_uid: str, data: bytes) -> None:
        """store() for STOW-RS parts, counted like C-STORE instances."""
        try:
            self.store(series_uid, sop_uid, data)
        except Refuse:
            self.metrics.instances.labels("refused").inc()
            raise
        self.metrics.instances.labels("stored").inc()

    def resume(self) -> int:
        """Register the series left in the spool by an earlier run; how many."""
        found = list(self.spool.series())
        for series in found:
            self.assembler.arrived(series.key, series.first_s, series.size, len(series.files))
            self.assembler.arrived(series.key, series.last_s, 0, 0)
        if found:
            log.info("spool resumed", extra={"series": len(found)})
        return len(found)

    # -- work -----------------------------------------------------------------------------
    def tick(self) -> None:
        """Process every due series, then deliver every due result (one worker pass)."""
        now = self.clock()
        for key in self.assembler.due(now):
            self._process(key, now)
        self._deliver(self.clock())
        self.spool.sweep(self.clock(), self.config.keep_done_s)
        oldest = self.assembler.oldest_s()
        self.metrics.queue_age.set(0 if oldest is None else max(0.0, self.clock() - oldest))
        self.metrics.outbox.set(len(self.outbox.waiting()))

    def _process(self, key: str, now: float) -> None:
        state = self.assembler.take(key)
        files = self.spool.files_of(key)
        if state is None or not files:
            return
        self.metrics.series.labels("completed", "").inc()
        try:
            outcome = processing.process(
                key,
                self.spool.series_files(key),
                self.config.rules,
                self.gateway,
                self.outbox,
                self.config.manufacturer,
            )
        except GatewayUnavailable as exc:
            delay = backoff_s(state.attempts, self.config.retry_initial_s, self.config.retry_max_s)
            log.warning("gateway unavailable", extra={"series": key, "error": str(exc)[:80]})
            self.metrics.series.labels("gateway_retry", "").inc()
            self.assembler.retry_later(key, state, now, delay)
            return
        except Exception:  # a bug or a broken object must not stop the worker
            log.exception("series failed", extra={"series": key})
            self.metrics.series.labels("failed", "").inc()
            self.spool.keep_failed(key, files)
            return
        self.metrics.series.labels(outcome.status, outcome.task or "").inc()
        if outcome.status in ("refused", "unreadable"):
            self.spool.keep_failed(key, files)
        elif outcome.status == "ignored":
            self.spool.forget(key, files)
        else:
            self.spool.done(key, files)

    def _deliver(self, now: float) -> None:
        due = self.outbox.due(now)
        if not due:
            return
        try:
            accepted = self.sender(due)
        except Exception as exc:  # network errors of any kind: retry later
            log.warning("delivery failed", extra={"error": type(exc).__name__})
            accepted = dict.fromkeys(due, False)
        for path, ok in accepted.items():
            if ok:
                self.outbox.delivered(path)
                self.metrics.delivered.inc()
            else:
                delay = self.outbox.failed(path, now)
                self.metrics.delivery_retries.inc()
                log.warning("delivery will be retried", extra={"retry_in_s": round(delay, 1)})

    def _loop(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("worker pass failed")

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, serve_http_port: bool = True) -> Node:
        self.resume()
        count = self._count
        ae = make_ae(self.config.ae_title, self.config.allowed_calling_aets)
        address = (self.config.bind, self.config.port)
        self._server = ae.start_server(
            address, block=False, evt_handlers=handlers(self.store, count)
        )
        worker = threading.Thread(target=self._loop, name="dicom-node-worker", daemon=True)
        worker.start()
        self._threads.append(worker)
        if serve_http_port:
            self._http = serve_http(self, self.config.bind, self.config.http_port)
        log.info("dicom node started", extra={"ae_title": self.config.ae_title, "port": self.port})
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.config.port

    def healthy(self) -> bool:
        return bool(self._server) and all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        if self._server:
            self._server.shutdown()
        if self._http:
            self._http.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)

    def _count(self, kind: str, outcome: str) -> None:
        getattr(self.metrics, kind).labels(outcome).inc()

    def spool_path(self) -> Path:
        return self.spool.root
