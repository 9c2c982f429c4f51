"""The two probes' results compared output by output, and the table that shows it."""

from __future__ import annotations

import math

# Largest absolute difference allowed per output key; other floats get DEFAULT_ATOL, integers and
# strings must be equal.
ATOL = {"probabilities": 1e-5, "heatmap": 1e-4}
DEFAULT_ATOL = 1e-5


def _max_abs_diff(a, b) -> float:
    if isinstance(a, list):
        return max((_max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf
    return 0.0 if a == b else math.inf


def _compare_output(where: str, key: str, ro: dict | None, co: dict | None, row: dict) -> list:
    """Fill `row` for one output key; returns its problems."""
    if ro is None or co is None:
        row["note"] = "missing under the " + ("candidate" if co is None else "reference")
        return [f"{where} {key}: {row['note']}"]
    row.update(dtype=ro["dtype"], shape=ro["shape"])
    if (ro["dtype"], ro["shape"]) != (co["dtype"], co["shape"]):
        row["note"] = f"{co['dtype']}{co['shape']} under the candidate"
        return [
            f"{where} {key}: {ro['dtype']}{ro['shape']} (reference) vs "
            f"{co['dtype']}{co['shape']} (candidate)"
        ]
    is_float = ro["dtype"].startswith(("float", "bfloat", "half", "double"))
    atol = ATOL.get(key, DEFAULT_ATOL) if is_float else 0.0
    diff = _max_abs_diff(ro["values"], co["values"])
    row.update(max_abs_diff=diff, atol=atol, ok=diff <= atol)
    if row["ok"]:
        return []
    if is_float and math.isfinite(diff):
        return [f"{where} {key}: max abs diff {diff:.3g} > {atol:g}"]
    return [f"{where} {key}: values differ"]


def _compare_signature(model: str, sig: str, r: dict | None, c: dict | None, rows: list) -> list:
    where = f"{model} {sig}"
    if r is None or c is None:
        return [f"{where}: run under one TensorFlow only"]
    if "error" in r or "error" in c:
        return [
            f"{where}: fails under the {side}: {entry['error']}"
            for side, entry in (("reference", r), ("candidate", c))
            if "error" in entry
        ]
    problems = []
    if r["inputs"] != c["inputs"]:
        problems.append(f"{where}: the two probes fed different inputs")
    for key in sorted(set(r["outputs"]) | set(c["outputs"])):
        row = {"model": model, "signature": sig, "output": key, "ok": False}
        rows.append(row)
        problems += _compare_output(where, key, r["outputs"].get(key), c["outputs"].get(key), row)
    return problems


def _compare_model(model: str, ref: dict | None, cand: dict | None, rows: list) -> list:
    if ref is None or cand is None:
        return [f"{model}: probed under one TensorFlow only"]
    problems = [
        f"{model}: does not load under the {side}: {entry['load_error']}"
        for side, entry in (("reference", ref), ("candidate", cand))
        if "load_error" in entry
    ]
    if problems:
        return problems
    if ref["signatures_present"] != cand["signatures_present"]:
        problems.append(
            f"{model}: signatures differ: {ref['signatures_present']} (reference) vs "
            f"{cand['signatures_present']} (candidate)"
        )
    for sig in sorted(set(ref["signatures"]) | set(cand["signatures"])):
        r, c = ref["signatures"].get(sig), cand["signatures"].get(sig)
        problems += _compare_signature(model, sig, r, c, rows)
    return problems


def compare(reference: dict, candidate: dict) -> tuple[list[dict], list[str]]:
    """Rows (model, signature, output, dtype, shape, max_abs_diff, atol, ok) and the problems."""
    rows: list[dict] = []
    problems: list[str] = []
    ref_models, cand_models = reference["models"], candidate["models"]
    for model in sorted(set(ref_models) | set(cand_models)):
        problems += _compare_model(model, ref_models.get(model), cand_models.get(model), rows)
    return rows, problems


def format_table(rows: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        lines.append(f"\n{model}")
        lines.append(f"  {'signature/output':<32} {'dtype':<8} {'shape':<14} {'max|diff|':>10}  ok")
        for r in (r for r in rows if r["model"] == model):
            diff = r.get("max_abs_diff")
            if diff is None:
                shown = "-"
            elif r["atol"] == 0.0:
                shown = "equal" if diff == 0 else "DIFFER"
            else:
                shown = f"{diff:.2e}"
            name = f"{r['signature']}/{r['output']}"
            shape = "x".join(map(str, r.get("shape", []))) or "-"
            mark = "ok" if r["ok"] else "FAIL " + r.get("note", "")
            lines.append(f"  {name:<32} {r.get('dtype', '-'):<8} {shape:<14} {shown:>10}  {mark}")
    return "\n".join(lines)
