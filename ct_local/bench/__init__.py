"""The benchmarks' shared parts (benchmarks/*.py are thin scripts over these modules).

`make bench` is ct_local.bench.run; timing has the one latency timer and percentile rule.
"""
