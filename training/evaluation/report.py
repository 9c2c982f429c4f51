"""Evaluation report (Markdown + PNGs) and model card for one exported model version, and the one
Markdown table writer of training's reports (`markdown_table`)."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

from training.evaluation import metrics as ev


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table, one line per row, each cell `str()`-ed; ends with a newline."""
    lines = [_line(header), _line(["---"] * len(header))]
    lines += [_line(row) for row in rows]
    return "\n".join(lines) + "\n"


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _per_class_table(metrics: dict) -> str:
    return markdown_table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
            for lab, m in metrics["per_class"].items()
        ],
    )


def _metrics_table(metrics: dict, ci_unit: str) -> str:
    lo, hi = metrics["auc_ci95"]
    lat = metrics["latency_batch1"]
    rows = [
        ("accuracy", f"{metrics['accuracy']:.4f}"),
        ("macro F1", f"{metrics['macro_f1']:.4f}"),
        ("ROC AUC", f"{metrics['auc']:.4f} (95% CI {lo:.3f}–{hi:.3f}, bootstrap over {ci_unit})"),
        ("ECE (15 bins)", f"{metrics['ece']:.4f} (before scaling {metrics['ece_before']:.4f})"),
        ("temperature", f"{metrics['temperature']:.3f}"),
        ("latency, batch 1, CPU", f"{lat['median_ms']:.2f} ms median, {lat['p95_ms']:.2f} ms p95"),
    ]
    return markdown_table(["metric", "value"], rows)


def _binary_section(metrics: dict, labels: list[str]) -> str:
    if "threshold" not in metrics:
        return ""
    op = metrics["at_threshold"]
    pos = labels[metrics["positive_index"]]
    text = (
        "\n## Decision threshold (slice level)\n"
        f"`positive` = P({pos}) >= **{op['threshold']:.4f}**, "
        f"chosen on validation as the highest threshold reaching sensitivity >= "
        f"{ev.TARGET_SENSITIVITY}.\n\n"
    ) + markdown_table(
        ["sensitivity", "specificity", "PPV", "NPV", "TP", "FN", "TN", "FP"],
        [
            [f"{op[k]:.3f}" for k in ("sensitivity", "specificity", "ppv", "npv")]
            + [op[k] for k in ("tp", "fn", "tn", "fp")]
        ],
    )
    if "scan_level" in metrics:
        s = metrics["scan_level"]
        so = s["at_threshold"]
        text += (
            f"\n## Scan level\nAggregation rule: {s['rule']}. {s['scans']} validation scans. "
            f"AUC {_fmt(s['auc'])}; at scan threshold {so['threshold']:.4f}: sensitivity "
            f"{so['sensitivity']:.3f}, specificity {so['specificity']:.3f} "
            f"(TP {so['tp']}, FN {so['fn']}, TN {so['tn']}, FP {so['fp']}).\n"
        )
    return text


def _members_section(metrics: dict) -> str:
    members = metrics.get("members")
    if not members:
        return ""
    rows = [
        [m["arch"], m["size"], f"`{m.get('command') or 'unknown'}`"]
        + [f"[report]({m['report']}/report.md)" if m.get("report") else "-"]
        for m in members
    ]
    return (
        "\n## Ensemble members\nThe served model averages these members' logits (a member "
        "with a smaller input gets the image resized in the graph); each was trained on this "
        "split.\n\n" + markdown_table(["arch", "size", "training command", "member report"], rows)
    )


def write_report(
    report_dir: Path, version_dir: Path, task, p, metrics: dict, probs, history: dict, command: str
) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    binary_scores = probs[:, metrics["positive_index"]] if "positive_index" in metrics else None
    plots = ev.plot_all(
        report_dir, p.labels, p.y_val, probs, history, binary_scores, metrics.get("threshold")
    )
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (report_dir / "split.json").write_text(json.dumps(p.split_files))
    (report_dir / "audit.md").write_text(p.audit_md)
    (report_dir / "history.json").write_text(json.dumps(history))
    ci_unit = "scans" if p.scans_val is not None else "images"
    body = (
        f"# {task.name} — model version {version_dir.name}\n\n"
        f"Training command: `{command}`\n\n"
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{'assembled' if metrics.get('members') else 'trained'} in "
        f"{metrics['train_minutes']:.1f} min.\n\n"
        f"## Data and split\nSee [audit.md](audit.md) for the dataset audit and "
        f"[split.json](split.json) for the exact files on each side.\n\n"
        f"```json\n{json.dumps(p.split_summary, indent=2)}\n```\n\n"
        f"## Validation metrics (calibrated)\n"
        f"{_metrics_table(metrics, ci_unit)}\n"
        f"{_per_class_table(metrics)}"
        f"{_binary_section(metrics, p.labels)}"
        f"{_members_section(metrics)}\n"
        "## Plots\n"
        + "".join(f"![{n}]({n})\n" for n in plots)
        + "\nValidation data also chose early stopping, the temperature and the threshold, so "
        "these "
        "figures are optimistic; the hidden test sets of other patients are the real judge.\n"
    )
    (report_dir / "report.md").write_text(body)
    (version_dir / "model_card.md").write_text(
        model_card(task, version_dir, p, metrics, command, report_dir)
    )


def model_card(task, version_dir: Path, p, metrics: dict, command: str, report_dir: Path) -> str:
    threshold = (
        f"P({p.labels[metrics['positive_index']]}) >= {metrics['threshold']:.4f} "
        f"(sensitivity >= {ev.TARGET_SENSITIVITY} on validation)"
        if "threshold" in metrics
        else "none (argmax)"
    )
    scan = metrics.get("scan_level")
    return (
        f"# Model card: {task.name}, version {version_dir.name}\n\n"
        f"- Labels (output order): {', '.join(p.labels)}\n"
        f"- Input: uint8 greyscale {p.x_val.shape[1]}x{p.x_val.shape[2]}x{p.x_val.shape[3]}, "
        f"letterboxed by ct_contract.preprocess; normalisation in the graph\n"
        f"- Data: {task.dataset_dir} (see the report's audit); split: "
        f"{'by scan, ' if task.grouped_by_scan else ''}duplicate clusters kept on one side, "
        f"stratified, seeded\n"
        f"- Validation: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"AUC {metrics['auc']:.4f}, ECE {metrics['ece']:.4f}\n"
        f"- Decision threshold: {threshold}\n"
        + (
            f"- Scan-level rule: {scan['rule']}; scan threshold {scan['threshold']:.4f}\n"
            if scan
            else ""
        )
        + f"- Calibration: temperature {metrics['temperature']:.3f} inside the graph\n"
        f"- Training command: `{command}`\n"
        f"- Report: training/reports/{task.name}/{report_dir.name}/report.md\n"
        "- Intended use: triage support for research and engineering demos; not a medical device.\n"
    )
