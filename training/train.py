"""Train, calibrate, evaluate and export one task: `make train TASK=<task> [DATA=...]`.

audit -> leak-free split -> pixels (ct_contract.preprocess) -> train (augmentation, class weights,
early stopping, fixed seeds) -> temperature scaling -> threshold (two-class tasks) -> report ->
SavedModel export under model-server/models/<task>/<version>/ with model card.
The steps live in training/pipeline.py; this is the command line.
"""

from __future__ import annotations

import argparse
import sys

from training import cli

RECIPE = ("--arch", "--size", "--epochs", "--seed", "--lr", "--init-from", "--flip-tta", "--mil")
RUN = ("--max-per-class", "--models-root", "--reports-root", "--checkpoints-dir")


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
        description=__doc__, parents=[cli.parent("--task", "--data", *RECIPE, *RUN)]
    )
    out.add_argument("--patience", type=int, default=8)
    out.add_argument("--batch-size", type=int, default=32)
    out.add_argument(
        "--init-seed",
        type=int,
        help="seed for weights, augmentation and batch order, if not --seed: ensemble members "
        "trained on one split need different ones",
    )
    return out


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    from training.pipeline import run

    args = parser().parse_args(argv)
    run(args, cli.recorded_command("training.train", sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
