"""Leakage-free cross-validation: report the spread of a recipe over patients.

Two modes. Repeated hold-out (default): train on several seeded grouped splits, best epoch on
each split's validation side (optimistic).
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --repeats 5`

Repeated grouped k-fold (`--folds K`): per repeat, the scans are dealt into K stratified folds
(training/split.py grouped_kfold; every scan in exactly one validation fold); each fold's model
trains for exactly `--epochs` epochs without looking at its validation fold, and scores it.
Reported: per-fold and pooled out-of-fold slice and scan AUC, and sensitivity/specificity at a
scan threshold chosen for each fold on the out-of-fold scores of the *other* folds of the
repeat (that fold's training scans), never on the fold it is applied to.
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --size 96 --epochs 8 \
    --folds 5 --repeats 2`
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from training.audit import run_audit
from training.data import DEFAULT_DATA_ROOT
from training.tasks import get_task
from training.train import (
    REPORTS_ROOT,
    SCAN_TOP_FRACTION,
    Prepared,
    evaluate,
    fit_for,
    predict_logits,
    prepare,
    slice_weights,
)

KFOLD_OUT = Path(__file__).resolve().parents[1] / "build" / "crossval"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--arch", default="plain_cnn")
    parser.add_argument("--size", type=int)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--init-from", type=Path)
    parser.add_argument(
        "--mil", action="store_true", help="multiple-instance loss, training/mil.py"
    )
    parser.add_argument(
        "--folds", type=int, help="repeated grouped k-fold with this many folds per repeat"
    )
    parser.add_argument("--flip-tta", action="store_true", help="k-fold: mirror-averaged scores")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--save-models", type=Path, help="k-fold: keep each fold's weights in this folder"
    )
    parser.add_argument("--tag", default="", help="k-fold: suffix of the report's file name")
    parser.add_argument(
        "--export",
        action="store_true",
        help="k-fold: then train on all scans for the same epochs and export the next version, "
        "its info_json validation being the k-fold figures",
    )
    parser.add_argument(
        "--folds-from",
        type=Path,
        help="k-fold: deal the folds from the audit of this folder (the same file names, e.g. "
        "brain-stroke-ct for brain-stroke-ct-650), so two recipes are compared on the same folds",
    )
    parser.add_argument("--models-root", type=Path, help="--export: default model-server/models")
    parser.add_argument("--reports-root", type=Path, default=REPORTS_ROOT)
    parser.add_argument(
        "--scores-dir", type=Path, default=KFOLD_OUT, help="k-fold: out-of-fold scores (JSON)"
    )
    parser.add_argument(
        "--neighbours",
        action="store_true",
        help="k-fold, 2.5-D: each slice with the slices above and below it as 3 channels",
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    task = get_task(args.task)
    size = args.size or task.size
    data = args.data or DEFAULT_DATA_ROOT / task.dataset_dir
    audit = run_audit(data, task)  # once: only the split changes between repeats
    if args.folds:
        kfold(task, data, size, audit, args)
        return
    rows = []
    for seed in range(1, args.repeats + 1):
        p = prepare(task, data, size, seed, None, audit)
        # patience = epochs: no early stop, the best epoch's weights are kept
        model, _ = fit_for(
            task,
            p,
            mil=args.mil,
            arch=args.arch,
            size=size,
            channels=task.channels,
            epochs=args.epochs,
            seed=seed,
            init_from=args.init_from,
            batch_size=32,
            patience=args.epochs,
        )
        metrics, _ = evaluate(p, predict_logits(model, p.x_val, False), task)
        row = {"seed": seed, "val_images": len(p.y_val), "slice_auc": metrics["auc"]}
        if "scan_level" in metrics:
            row.update(scans=metrics["scan_level"]["scans"], scan_auc=metrics["scan_level"]["auc"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    write(task.name, args, size, rows)


def write(task: str, args, size: int, rows: list[dict]) -> None:
    def stat(key: str) -> str:
        vals = np.array([r[key] for r in rows if key in r])
        return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else "n/a"

    table = "".join(
        f"| {r['seed']} | {r['val_images']} | {r.get('scans', '-')} | {r['slice_auc']:.3f} | "
        f"{r.get('scan_auc', float('nan')):.3f} |\n"
        for r in rows
    )
    init = f" --init-from {args.init_from}" if args.init_from else ""
    mil = " --mil" if args.mil else ""
    out = REPORTS_ROOT / task / f"crossval-{args.arch}-{size}{'-mil' if args.mil else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Repeated grouped hold-out: {task}, {args.arch}, {size} px{mil}\n\n"
        f"Command: `python -m training.crossval --task {task} --arch {args.arch} --size {size} "
        f"--epochs {args.epochs} --repeats {args.repeats}{init}{mil}`\n\n"
        f"Each row: a different seeded, scan-grouped, stratified split; {args.epochs} epochs, "
        "the best epoch chosen on that split's validation data (optimistic), no export.\n\n"
        "| seed | val images | val scans | slice AUC | scan AUC |\n|---|---|---|---|---|\n"
        f"{table}\nMean ± sd: slice AUC {stat('slice_auc')}, scan AUC {stat('scan_auc')}.\n"
    )
    print(out)


def kfold(task, data: Path, size: int, audit, args) -> None:
    """Repeated grouped k-fold of a two-class scan task; writes the markdown report."""
    from training.data import load_pixels
    from training.split import grouped_kfold

    if task.positive_label is None or not task.grouped_by_scan:
        raise SystemExit("--folds: a two-class task grouped by scan (brain-stroke)")
    records = audit.records
    labels = sorted({r.label for r in records})
    pos = labels.index(task.positive_label)
    x_all = load_pixels(records, size, task.channels)
    channels = task.channels
    if args.neighbours:
        x_all = with_neighbours(x_all, records)
        channels = x_all.shape[-1]
    y_all = np.array([labels.index(r.label) for r in records])
    scans_all = np.array([r.scan for r in records])
    command = "python -m training.crossval " + " ".join(shlex.quote(a) for a in args.argv)
    name = f"kfold-{args.arch.replace('@', '-')}-{size}{'-mil' if args.mil else ''}"
    name += "-2.5d" if args.neighbours else ""
    name += f"-{args.folds}x{args.repeats}{'-' + args.tag if args.tag else ''}"
    args.scores_dir.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "folds": [], "oof": {}}
    fold_audit = audit
    if args.folds_from:
        fold_audit = run_audit(args.folds_from, task)
        ours = [r.path.relative_to(data) for r in records]
        theirs = [r.path.relative_to(args.folds_from) for r in fold_audit.records]
        if ours != theirs:
            raise SystemExit(f"--folds-from {args.folds_from}: not the same files as {data}")
    for repeat in range(1, args.repeats + 1):
        splits = grouped_kfold(fold_audit, args.folds, seed=repeat)
        scores = np.full(len(records), np.nan)
        fold_of = np.full(len(records), -1)
        for k, split in enumerate(splits):
            started = time.time()
            tr, va = np.array(split.train), np.array(split.val)
            p = Prepared(
                labels=labels,
                x_train=x_all[tr],
                y_train=y_all[tr],
                w_train=slice_weights(records, split.train, task),
                x_val=x_all[va],
                y_val=y_all[va],
                scans_train=scans_all[tr],
                scans_val=scans_all[va],
                split_summary={},
                audit_md="",
                split_files={},
            )
            model, _ = fit_for(
                task,
                p,
                mil=args.mil,
                arch=args.arch,
                size=size,
                channels=channels,
                epochs=args.epochs,
                seed=1000 * repeat + k,
                init_from=args.init_from,
                batch_size=32,
                patience=args.epochs,
                lr=args.lr,
                keep_best=False,
            )
            logits = predict_logits(model, p.x_val, args.flip_tta)
            z = logits[:, pos] - logits[:, 1 - pos]
            scores[va] = 1.0 / (1.0 + np.exp(-z))  # softmax probability of the positive class
            fold_of[va] = k
            if args.save_models:
                args.save_models.mkdir(parents=True, exist_ok=True)
                model.save_weights(args.save_models / f"{name}-r{repeat}-f{k}.weights.h5")
            row = fold_row(scores[va], y_all[va] == pos, scans_all[va])
            row.update(repeat=repeat, fold=k, minutes=(time.time() - started) / 60)
            result["folds"].append(row)
            print(json.dumps(row), flush=True)
            result["oof"][str(repeat)] = {"scores": scores.tolist(), "fold": fold_of.tolist()}
            (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    result["labels_positive"] = (y_all == pos).tolist()
    result["scans"] = scans_all.tolist()
    (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    cv_report = write_kfold(task.name, name, args, size, result, y_all == pos, scans_all)
    if args.export:
        if args.neighbours:
            raise SystemExit("--export: a 2.5-D model needs slice stacks the gateway does not send")
        export_all_scans(task, size, args, result, x_all, y_all, scans_all, records, cv_report)


def export_all_scans(task, size, args, result, x_all, y_all, scans_all, records, cv_report):
    """Train the recipe on every scan (fixed epochs, nothing held out) and export it. Temperature
    and thresholds come from the out-of-fold scores of the first repeat (each slice scored once,
    by a fold model of the same recipe trained on 4/5 of the scans: the final model's score scale
    is assumed alike); info_json's validation holds the k-fold figures."""
    from training import evaluate as ev
    from training.export import build_info, export_model, next_version, top_fraction_scan_rule
    from training.train import (
        MODELS_ROOT,
        fit,
        measure_latency,
        save_checkpoint,
        scan_verdicts,
    )

    labels = sorted({r.label for r in records})
    pos = labels.index(task.positive_label)
    positive = y_all == pos
    oof = np.array(result["oof"]["1"]["scores"])
    z = np.log(oof) - np.log1p(-oof)
    logits = np.zeros((len(z), 2))
    logits[:, pos], logits[:, 1 - pos] = z / 2, -z / 2
    temperature = ev.fit_temperature(logits, y_all)
    probs = ev.calibrated(logits, temperature)[:, pos]
    slice_threshold = ev.sensitivity_threshold(probs, positive)
    agg, truth = scan_verdicts(probs, positive, scans_all)
    scan_threshold = ev.sensitivity_threshold(agg, truth)
    summary = kfold_summary(result, positive, scans_all)
    reps = summary["repeats"]
    mean = lambda key: float(np.mean([r[key] for r in reps]))  # noqa: E731
    folds = result["folds"]
    validation = {
        "how": f"repeated scan-grouped {args.folds}-fold cross-validation, {args.repeats} "
        f"repeats, all {len(np.unique(scans_all))} scans (every scan validated once per repeat) "
        f"by fold models of this recipe ({args.epochs} fixed epochs, nothing chosen on the "
        "validation folds); scan_auc and auc (slice): pooled out-of-fold, mean over repeats; "
        "sensitivity/specificity: scans at a 90%-sensitivity threshold chosen on the other "
        "folds; the served model is the same recipe trained on all scans. "
        f"Report: training/reports/{task.name}/{cv_report.name}",
        "scan_auc": mean("scan_auc"),
        "scan_auc_sd_over_folds": float(np.nanstd([f["scan_auc"] for f in folds], ddof=1)),
        "scan_auc_mean_over_folds": float(np.nanmean([f["scan_auc"] for f in folds])),
        "auc": mean("slice_auc"),
        "scan_sensitivity": mean("sensitivity"),
        "scan_specificity": mean("specificity"),
        "scans": int(len(np.unique(scans_all))),
        "folds": args.folds,
        "repeats": args.repeats,
    }
    info = build_info(
        task.name,
        labels,
        validation,
        scan_rule=top_fraction_scan_rule(SCAN_TOP_FRACTION, scan_threshold),
    )
    p = Prepared(
        labels=labels,
        x_train=x_all,
        y_train=y_all,
        w_train=slice_weights(records, list(range(len(records))), task),
        x_val=x_all[:0],
        y_val=y_all[:0],
        scans_train=scans_all,
        scans_val=scans_all[:0],
        split_summary={},
        audit_md="",
        split_files={},
    )
    started = time.time()
    model, _ = fit(
        p,
        arch=args.arch,
        size=size,
        channels=task.channels,
        epochs=args.epochs,
        seed=1,
        init_from=args.init_from,
        batch_size=32,
        patience=args.epochs,
        lr=args.lr,
        keep_best=False,
    )
    command = result["command"]
    save_checkpoint(model, task.name, args.arch, size, task.channels, labels, 0, command)
    models_root = args.models_root or MODELS_ROOT
    version = next_version(models_root / task.name)
    report_dir = args.reports_root / task.name / f"v{version}"
    card = (
        f"# {task.name} v{version}\n\n"
        f"Recipe: `{args.arch}`, {size} px input, {args.epochs} epochs, trained on all "
        f"{len(np.unique(scans_all))} scans ({len(y_all)} slices), nothing held out.\n"
        f"Command: `{command}`\n\n"
        f"Validation (k-fold, see `{cv_report.name}`): {json.dumps(validation, indent=1)}\n\n"
        f"Temperature {temperature:.3f}; slice threshold {slice_threshold:.4f}; scan rule "
        f"threshold {scan_threshold:.4f} (90% sensitivity on out-of-fold scores).\n"
        f"Validated: {info['validated']} ({info['validated_reason']}).\n"
        "Intended use: triage support for research and engineering demos; not a medical device.\n"
    )
    version_dir = export_model(
        model,
        models_root,
        task.name,
        labels,
        size,
        task.channels,
        threshold=slice_threshold,
        positive_index=pos,
        temperature=temperature,
        model_card=card,
        version=version,
        flip_tta=args.flip_tta,
        info=info,
    )
    latency = measure_latency(version_dir, size, task.channels)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.md").write_text(
        card + f"\nFinal training: {(time.time() - started) / 60:.1f} min on this CPU; latency at "
        f"batch 1: median {latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms.\n"
    )
    print(f"exported {version_dir}; report {report_dir}", flush=True)


def neighbour_index(records) -> np.ndarray:
    """[N, 3] record indices (slice below, the slice, slice above) in the scan's slice order
    (`<scan> (<slice>).jpg`); a scan's first and last slice repeat themselves."""
    from training.train import _slice_number

    out = np.repeat(np.arange(len(records))[:, None], 3, axis=1)
    by_scan: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_scan.setdefault(r.scan, []).append(i)
    for idx in by_scan.values():
        order = sorted(idx, key=lambda i: _slice_number(records[i].path.name))
        for k, i in enumerate(order):
            out[i, 0] = order[max(k - 1, 0)]
            out[i, 2] = order[min(k + 1, len(order) - 1)]
    return out


def with_neighbours(x: np.ndarray, records) -> np.ndarray:
    """2.5-D input: single-channel slices [N, S, S, 1] -> [N, S, S, 3] (below, slice, above)."""
    return np.concatenate([x[neighbour_index(records)[:, j]] for j in range(3)], axis=-1)


def fold_row(scores: np.ndarray, positive: np.ndarray, scans: np.ndarray) -> dict:
    """Slice and scan AUC of one validation fold."""
    agg, truth = scan_scores(scores, positive, scans)
    return {
        "images": int(len(scores)),
        "scans": int(len(agg)),
        "stroke_scans": int(truth.sum()),
        "slice_auc": _auc(positive, scores),
        "scan_auc": _auc(truth, agg),
    }


def scan_scores(scores, positive, scans) -> tuple[np.ndarray, np.ndarray]:
    from training.train import scan_verdicts

    return scan_verdicts(scores, positive, scans)


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    from training import evaluate as ev

    truth = np.asarray(truth).astype(int)
    if len(set(truth.tolist())) < 2:
        return float("nan")
    return float(ev.auc(truth, np.stack([1 - scores, scores], axis=1)))


def repeat_summary(scores, fold_of, positive, scans) -> dict:
    """Pooled out-of-fold figures of one repeat, and sensitivity/specificity of the scans at
    each fold's threshold (the served rule's threshold for 90% sensitivity, chosen on the
    other folds' out-of-fold scan scores)."""
    from training import evaluate as ev

    ids = np.unique(scans)
    agg, truth = scan_scores(scores, positive, scans)
    scan_fold = np.array([fold_of[scans == s][0] for s in ids])
    tp = fn = tn = fp = 0
    for k in np.unique(scan_fold):
        inside = scan_fold == k
        threshold = ev.sensitivity_threshold(agg[~inside], truth[~inside])
        call = agg[inside] >= threshold
        tp += int((call & truth[inside]).sum())
        fn += int((~call & truth[inside]).sum())
        tn += int((~call & ~truth[inside]).sum())
        fp += int((call & ~truth[inside]).sum())
    return {
        "slice_auc": _auc(positive, scores),
        "scan_auc": _auc(truth, agg),
        "sensitivity": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }


def _ms(vals) -> str:
    vals = np.array([v for v in vals if np.isfinite(v)])
    if len(vals) < 2:
        return "n/a"
    return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}"


def write_kfold(task: str, name: str, args, size: int, result: dict, positive, scans) -> Path:
    folds = result["folds"]
    repeats = {
        r: repeat_summary(np.array(o["scores"]), np.array(o["fold"]), positive, scans)
        for r, o in result["oof"].items()
    }
    fold_table = "".join(
        f"| {f['repeat']} | {f['fold']} | {f['scans']} ({f['stroke_scans']} stroke) | "
        f"{f['images']} | {f['slice_auc']:.3f} | {f['scan_auc']:.3f} | {f['minutes']:.1f} |\n"
        for f in folds
    )
    rep_table = "".join(
        f"| {r} | {s['slice_auc']:.3f} | {s['scan_auc']:.3f} | {s['sensitivity']:.3f} | "
        f"{s['specificity']:.3f} | {_counts(s['counts'])} |\n"
        for r, s in repeats.items()
    )
    summary = kfold_summary(result, positive, scans)
    out = args.reports_root / task / f"crossval-{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Repeated grouped {args.folds}-fold CV: {task}, {args.arch}, {size} px"
        f"{' (MIL)' if args.mil else ''}\n\n"
        f"Command: `{result['command']}`\n\n"
        f"Data: `{args.data or 'default'}`. Per repeat r (seed r), the scans are dealt into "
        f"{args.folds} folds stratified by scan label (every scan in exactly one validation "
        f"fold); each fold's model trains {args.epochs} epochs (fixed: the validation fold is "
        "never looked at, no epoch or temperature chosen on it) and scores its fold. Scan score: "
        f"mean of the top {SCAN_TOP_FRACTION:.0%} of a scan's slice probabilities (the served "
        "rule). Threshold: per fold, the highest one reaching 90% scan sensitivity on the "
        "out-of-fold scan scores of the other folds of the repeat (that fold's training scans), "
        "applied to the fold. Pooled AUCs mix fold models whose score scales differ.\n\n"
        f"**Scan AUC per fold {summary['scan_auc_folds']}; pooled out-of-fold scan AUC "
        f"{summary['scan_auc_pooled']}; slice AUC per fold {summary['slice_auc_folds']}, pooled "
        f"{summary['slice_auc_pooled']}; at the threshold: sensitivity "
        f"{summary['sensitivity']}, specificity {summary['specificity']}.** (mean ± sd)\n\n"
        "## Per repeat (pooled out-of-fold)\n\n"
        "| repeat | slice AUC | scan AUC | sensitivity | specificity | scans at the threshold |\n"
        f"|---|---|---|---|---|---|\n{rep_table}\n"
        "## Per fold\n\n"
        "| repeat | fold | val scans | val images | slice AUC | scan AUC | minutes |\n"
        f"|---|---|---|---|---|---|---|\n{fold_table}"
    )
    print(out, json.dumps(summary), flush=True)
    return out


def _counts(c: dict) -> str:
    return f"{c['tp']} TP, {c['fn']} FN, {c['tn']} TN, {c['fp']} FP"


def rewrite_report(scores_json: Path, **namespace) -> Path:
    """Re-write a k-fold report from its saved out-of-fold scores (`--scores-dir`), e.g. after
    the report's format changed; `namespace`: the run's arguments (folds, epochs, arch, ...)."""
    result = json.loads(Path(scores_json).read_text())
    args = argparse.Namespace(**{"reports_root": REPORTS_ROOT, "mil": False, **namespace})
    positive, scans = np.array(result["labels_positive"]), np.array(result["scans"])
    name = Path(scores_json).stem
    return write_kfold("brain-stroke", name, args, args.size, result, positive, scans)


def kfold_summary(result: dict, positive, scans) -> dict:
    """mean ± sd strings over folds and over repeats (pooled), for reports and info_json."""
    folds = result["folds"]
    repeats = [
        repeat_summary(np.array(o["scores"]), np.array(o["fold"]), positive, scans)
        for o in result["oof"].values()
    ]
    return {
        "scan_auc_folds": _ms([f["scan_auc"] for f in folds]),
        "slice_auc_folds": _ms([f["slice_auc"] for f in folds]),
        "scan_auc_pooled": _ms([r["scan_auc"] for r in repeats]),
        "slice_auc_pooled": _ms([r["slice_auc"] for r in repeats]),
        "sensitivity": _ms([r["sensitivity"] for r in repeats]),
        "specificity": _ms([r["specificity"] for r in repeats]),
        "repeats": repeats,
    }


if __name__ == "__main__":
    main()
