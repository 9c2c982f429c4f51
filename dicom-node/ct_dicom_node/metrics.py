"""Prometheus metrics of one node (its own registry: tests run several nodes in one process).
Labels carry no identifier: only task names, outcomes and status kinds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.associations = Counter(
            "ct_dicom_associations", "Associations by outcome", ["outcome"], registry=r
        )
        self.instances = Counter(
            "ct_dicom_instances", "C-STORE instances by outcome", ["outcome"], registry=r
        )
        self.series = Counter(
            "ct_dicom_series",
            "Series by outcome (completed, routed, ignored, ...)",
            ["outcome", "task"],
            registry=r,
        )
        self.delivery_retries = Counter(
            "ct_dicom_delivery_retries", "Result deliveries that failed and wait", registry=r
        )
        self.delivered = Counter("ct_dicom_delivered", "Result objects accepted", registry=r)
        self.queue_age = Gauge(
            "ct_dicom_queue_age_seconds", "Age of the oldest series being assembled", registry=r
        )
        self.outbox = Gauge("ct_dicom_outbox", "Result objects waiting for delivery", registry=r)
