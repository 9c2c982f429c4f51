"""training/cli.py: every CLI builds on the one flag table (same flags, same defaults), library
errors become exit messages in `main` only; training/evaluation/report.py: the one Markdown table
writer."""

from __future__ import annotations

import pytest

from training import cli, compare, crossval, ensemble, reexport, train
from training.cli import CHECKPOINTS, MODELS_ROOT, REPORTS_ROOT, TrainingError
from training.data import audit
from training.evaluation.report import markdown_table

PARSERS = {
    "train": train.parser,
    "audit": audit.parser,
    "crossval": crossval.parser,
    "compare": compare.parser,
    "ensemble": ensemble.parser,
    "reexport": reexport.parser,
}
REQUIRED = {"ensemble": ["--members", "a.weights.h5"], "reexport": ["--from-version", "2"]}
# A CLI may change a shared flag's default only where its meaning needs it, and says so here.
OVERRIDES = {
    ("crossval", "epochs"): 15,
    ("compare", "epochs"): 4,
    ("reexport", "arch"): None,  # None: the re-exported version's own training command
    ("reexport", "flip_tta"): None,
}


def _defaults(name: str):
    return PARSERS[name]().parse_args(["--task", "brain-stroke", *REQUIRED.get(name, [])])


@pytest.mark.parametrize("name", PARSERS)
def test_shared_flags_have_the_flag_tables_defaults(name):
    args = vars(_defaults(name))
    shared = {flag[2:].replace("-", "_"): spec for flag, spec in cli.FLAGS.items()}
    taken = [dest for dest in shared if dest in args]
    assert "task" in taken and "data" in taken
    for dest in taken:
        if shared[dest].get("required"):
            continue
        expected = shared[dest].get("default", False if "action" in shared[dest] else None)
        assert args[dest] == OVERRIDES.get((name, dest), expected), dest


def test_the_same_flag_has_the_same_default_everywhere():
    seen: dict[str, set] = {}
    for name in PARSERS:
        for dest, value in vars(_defaults(name)).items():
            if (name, dest) not in OVERRIDES:
                seen.setdefault(dest, set()).add(repr(value))
    assert {dest: values for dest, values in seen.items() if len(values) > 1} == {}


def test_output_defaults_are_the_repository_folders():
    args = train.parser().parse_args(["--task", "spine-fracture"])
    assert (args.models_root, args.reports_root) == (MODELS_ROOT, REPORTS_ROOT)
    assert args.checkpoints_dir == CHECKPOINTS and args.seed == 1337 and args.lr == 2e-3


@pytest.mark.parametrize("name", PARSERS)
def test_every_cli_needs_a_task(name, capsys):
    with pytest.raises(SystemExit) as caught:
        PARSERS[name]().parse_args(REQUIRED.get(name, []))
    assert caught.value.code == 2 and "--task" in capsys.readouterr().err


def test_recorded_command_leaves_out_output_folders():
    argv = ["--task", "x", "--models-root", "/tmp/m", "--reports-root=/tmp/r", "--size", "32"]
    assert cli.recorded_command("training.train", argv) == (
        "python -m training.train --task x --size 32"
    )


def test_a_library_error_exits_only_through_main():
    @cli.exits_on_error
    def main(argv=None):
        raise TrainingError(f"refused {argv}")

    with pytest.raises(SystemExit, match=r"refused \['a'\]"):
        main(["a"])


def test_an_unknown_task_exits_with_a_message(capsys):
    with pytest.raises(SystemExit, match="unknown task 'nope'"):
        audit.main(["--task", "nope"])


def test_markdown_table_rows_and_header():
    table = markdown_table(["a", "b"], [[1, "x"], (2.5, None)])
    assert table == "| a | b |\n| --- | --- |\n| 1 | x |\n| 2.5 | None |\n"
    assert markdown_table(["only"], []) == "| only |\n| --- |\n"
