"""The stand-in's Prometheus metrics have TF Serving's names and types: request_count a counter,
request_latency a histogram in microseconds with TF Serving's exponential buckets (so dashboards
built on histogram_quantile work against either server)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ct_standin.metrics import Metrics


def families(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.render())}


def test_request_count_is_a_counter_and_latency_a_histogram():
    metrics = Metrics()
    metrics.record("m", "predict", "OK", 0.000015)  # 15 us
    metrics.record("m", "predict", "OK", 0.002)
    metrics.record("m", "classify", "INVALID_ARGUMENT", 0.0001, "REST")
    found = families(metrics)
    assert found[":tensorflow:serving:request_count"].type == "counter"
    latency = found[":tensorflow:serving:request_latency"]
    assert latency.type == "histogram"
    samples = [
        s
        for s in latency.samples
        if s.labels.get("API") == "predict" and s.labels["entrypoint"] == "GRPC"
    ]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert len(buckets) == 34  # Exponential(10, 1.8, 33) and +Inf
    assert list(buckets)[:4] == ["10", "18", "32.4", "58.32"]
    assert buckets["10"] == 0 and buckets["18"] == 1 and buckets["+Inf"] == 2
    assert {s.name: s.value for s in samples if not s.name.endswith("_bucket")} == {
        ":tensorflow:serving:request_latency_sum": 2015,
        ":tensorflow:serving:request_latency_count": 2,
    }
    rest = [s for s in latency.samples if s.labels.get("entrypoint") == "REST"]
    assert rest and all(s.labels["model_name"] == "m" for s in rest)


def test_batch_sizes_stay_histograms():
    metrics = Metrics()
    metrics.record_batch("m", 8, 3, 2)
    found = families(metrics)
    for name in ("processed_batch_size", "padding_size"):
        assert found[f":tensorflow:serving:batching_session:{name}"].type == "histogram"
