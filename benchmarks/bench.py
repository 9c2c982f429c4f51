"""`make bench`: one run, side by side, from the bare forward pass to the gateway under load.

    .venv/bin/python benchmarks/bench.py                    # ~3-4 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench.py --out /tmp/bench --duration 5 --record

With the committed brain-stroke model (latest version under model-server/models) and a real
650 px JPEG (docs/samples/brain-stroke_normal.jpg) it measures, in this order:

1. the bare forward pass: tf.saved_model.load of the version, `serving_default` on the
   preprocessed uint8 input, batch 1 (latency) and batch 16 (images/s); in a child process that
   exits before anything else starts, so TensorFlow's threads and memory do not linger;
2. the model server alone over gRPC (the stand-in, or tensorflow_model_server when on PATH, started
   with `ct-triage model-server`'s flags: --enable_batching and batching.config), Predict on
   preprocessed input at concurrency 1 (latency) and 16 (req/s);
3. the gateway (ct_local.gateway.start_gateway: 2 workers x 4 threads) with a multipart
   upload of the JPEG at concurrency 1, 4, 16 and 32 for a fixed duration each;
4. a 30-slice series (scan 58 of brain-stroke-ct/Stroke) through `:predict_series`;
5. gateway worker RSS/PSS/USS after the load and after the series, and its start time (spawn to
   /healthz 200 and to /readyz 200);
6. the targets (ct_local/bench/report.py) as ratios of figures from this same run, met or not met.

Every load generator (gRPC and HTTP) runs in one separate spawned process without TensorFlow:
keep-alive http.client connections, one thread each, closed loop. Its CPU seconds per level are
recorded so one can see it is not the bottleneck. Prints one markdown table (plus the targets) and
writes JSON and markdown to --out (build/bench/latest.{json,md}); --record also writes the markdown
to benchmarks/results/<date>.md. Nothing is asserted: read the figures with their load average
(docs/benchmarks.md).

A thin script: the benchmark is the ct_local.bench package (ct_local/bench/run.py).
"""

import sys

from ct_local.bench.run import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.splitlines()[0]))
