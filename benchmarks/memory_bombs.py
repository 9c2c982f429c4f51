"""Peak memory and time of a gateway worker per bomb class of issue 17 (ct_local/bench/bombs.py).

    .venv/bin/python benchmarks/memory_bombs.py            # every class, each in a fresh process
    .venv/bin/python benchmarks/memory_bombs.py --kind j2k-dicom-16bit-6000

Prints one markdown row per class: the answer, the peak RSS the bomb added to the process (VmHWM
after clear_refs), the time to answer and the request's decoding budget. Bombs are built in
memory and never kept. Linux only.
"""

from __future__ import annotations

import argparse

from ct_local.bench.bombs import BOMBS, measure

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(BOMBS), action="append")
    kinds = parser.parse_args().kind or list(BOMBS)
    print("| bomb class | upload | answer | peak memory | time | budget |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for kind in kinds:
        f = measure(kind)
        print(
            f"| {kind} | {f['upload_bytes'] / MIB:.2f} MiB | {f['status']} {f['code']} "
            f"| {f['peak_bytes'] / MIB:.1f} MiB | {f['seconds']:.2f} s "
            f"| {f['budget_bytes'] / MIB:.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
