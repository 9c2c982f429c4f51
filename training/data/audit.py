"""Dataset audit: counts, sizes and modes, exact and near duplicates, scan groups.

`make audit DATA=<folder> TASK=<task>` prints the Markdown report; training runs the same audit and
uses its duplicate clusters to build a leakage-free split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training import cli
from training.cli import dataset_folder
from training.data.images import Record, discover
from training.evaluation.report import markdown_table
from training.tasks import TaskSpec, get_task

HASH_SIDE = 16  # dHash of a 17x16 greyscale thumbnail: 256 bits
NEAR_DUP_MAX_BITS = 6  # Hamming distance (of 256) at or below which two images are near-duplicates


def dhash(img: Image.Image) -> np.ndarray:
    """Difference hash as 256 booleans: robust to re-encoding, rescaling, small intensity shifts."""
    small = img.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BILINEAR)
    px = np.asarray(small, dtype=np.int16)
    return (px[:, 1:] > px[:, :-1]).reshape(-1)


@dataclass
class FileFacts:
    sha256: str
    size: tuple[int, int]
    mode: str
    fmt: str
    bits: np.ndarray  # dHash


def file_facts(path: Path) -> FileFacts:
    data = path.read_bytes()
    with Image.open(path) as img:
        size, mode, fmt = img.size, img.mode, img.format or "?"
        img.draft("L", (64, 64))  # JPEG: decode at reduced scale, enough for a 17x16 hash
        return FileFacts(hashlib.sha256(data).hexdigest(), size, mode, fmt, dhash(img))


def near_duplicate_pairs(
    bits: np.ndarray, max_bits: int = NEAR_DUP_MAX_BITS
) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most `max_bits` bits."""
    packed = np.packbits(bits, axis=1).view(np.uint64)  # [N, 4]
    pairs = []
    chunk = 512
    for start in range(0, len(packed), chunk):
        block = packed[start : start + chunk]
        dist = np.bitwise_count(block[:, None, :] ^ packed[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(dist <= max_bits)
        for r, c in zip(rows + start, cols, strict=True):
            if r < c:
                pairs.append((int(r), int(c)))
    return pairs


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class AuditResult:
    records: list[Record]
    facts: list[FileFacts]
    exact_groups: list[list[int]]  # indices sharing one sha256 (only groups of 2+)
    near_pairs: list[tuple[int, int]]
    cluster_of: list[int]  # duplicate cluster id per record (exact or near), for grouped splits
    findings: dict = field(default_factory=dict)


def _copy_groups(records: list[Record], task: TaskSpec) -> list[list[int]]:
    """Records whose names share the task's copy base (augmented copies of one image)."""
    if task.copy_group is None:
        return []
    groups = defaultdict(list)
    for i, record in enumerate(records):
        base = task.copy_group(record.path)
        if base is not None:
            groups[base].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _clusters(n: int, exact_groups, near_pairs) -> list[int]:
    uf = UnionFind(n)
    for group in exact_groups:
        for other in group[1:]:
            uf.union(group[0], other)
    for a, b in near_pairs:
        uf.union(a, b)
    return [uf.find(i) for i in range(n)]


def _pair_kinds(records: list[Record], pairs) -> Counter:
    kinds = Counter()
    for a, b in pairs:
        ra, rb = records[a], records[b]
        split = "same split" if ra.source_split == rb.source_split else "across splits"
        label = "same label" if ra.label == rb.label else "CONFLICTING labels"
        scan = ""
        if ra.scan is not None:
            scan = ", same scan" if ra.scan == rb.scan else ", different scans"
        kinds[f"{split}, {label}{scan}"] += 1
    return kinds


def run_audit(root: Path, task: TaskSpec) -> AuditResult:
    records = discover(root, task)
    facts = [file_facts(r.path) for r in records]
    by_hash = defaultdict(list)
    for i, f in enumerate(facts):
        by_hash[f.sha256].append(i)
    exact_groups = [g for g in by_hash.values() if len(g) > 1]
    exact_pairs = [(g[0], o) for g in exact_groups for o in g[1:]]
    exact_set = {
        frozenset(p) for g in exact_groups for p in ((a, b) for a in g for b in g if a < b)
    }
    near = [
        p
        for p in near_duplicate_pairs(np.stack([f.bits for f in facts]))
        if frozenset(p) not in exact_set
    ]
    copies = _copy_groups(records, task)
    result = AuditResult(
        records, facts, exact_groups, near, _clusters(len(records), exact_groups + copies, near)
    )
    result.findings = summarise(result, exact_pairs)
    return result


def summarise(result: AuditResult, exact_pairs) -> dict:
    records, facts = result.records, result.facts
    counts = Counter((r.source_split or "-", r.label) for r in records)
    scans = defaultdict(set)
    for r in records:
        if r.scan:
            scans[r.label].add(r.scan)
    clusters = Counter(result.cluster_of)
    return {
        "images": len(records),
        "counts": {f"{s}/{lab}": n for (s, lab), n in sorted(counts.items())},
        "sizes": dict(Counter(f"{f.size[0]}x{f.size[1]}" for f in facts).most_common(8)),
        "modes": dict(Counter(f"{f.fmt} {f.mode}" for f in facts)),
        "exact_duplicate_groups": len(result.exact_groups),
        "exact_duplicate_extra_copies": sum(len(g) - 1 for g in result.exact_groups),
        "exact_pairs_by_kind": dict(_pair_kinds(records, exact_pairs)),
        "near_duplicate_pairs": len(result.near_pairs),
        "near_pairs_by_kind": dict(_pair_kinds(records, result.near_pairs)),
        "duplicate_clusters_of_2plus": sum(1 for c in clusters.values() if c > 1),
        "images_in_duplicate_clusters": sum(c for c in clusters.values() if c > 1),
        "scans_per_label": {lab: len(s) for lab, s in sorted(scans.items())},
        "labels_shared_by_a_scan": sorted(
            s for s in set().union(*scans.values()) if sum(s in v for v in scans.values()) > 1
        )
        if scans
        else [],
    }


def to_markdown(findings: dict, root: Path, task: str) -> str:
    def table(d: dict, head: str) -> str:
        return markdown_table([head, "count"], list(d.items()) or [("(none)", 0)])

    return (
        f"# Dataset audit: {task}\n\nFolder: `{root}`; {findings['images']} images.\n\n"
        f"## Images per split/class\n{table(findings['counts'], 'split/class')}\n"
        f"## Sizes (most common)\n{table(findings['sizes'], 'width x height')}\n"
        f"## Formats and modes\n{table(findings['modes'], 'format mode')}\n"
        f"## Exact duplicates (SHA-256)\n{findings['exact_duplicate_groups']} groups, "
        f"{findings['exact_duplicate_extra_copies']} extra copies.\n\n"
        f"{table(findings['exact_pairs_by_kind'], 'pair kind')}\n"
        f"## Near duplicates (dHash-256, <= {NEAR_DUP_MAX_BITS} bits apart, not exact)\n"
        f"{findings['near_duplicate_pairs']} pairs.\n\n"
        f"{table(findings['near_pairs_by_kind'], 'pair kind')}\n"
        "Duplicate clusters (exact or near, 2+ images): "
        f"{findings['duplicate_clusters_of_2plus']}, "
        f"holding {findings['images_in_duplicate_clusters']} images. A split keeps each cluster on "
        f"one side.\n\n"
        f"## Scan groups\n{table(findings['scans_per_label'], 'label: scans')}\n"
        "Scan ids found under more than one label: "
        f"{findings['labels_shared_by_a_scan'] or 'none'}\n"
    )


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__, parents=[cli.parent("--task", "--data")])
    out.add_argument("--json", type=Path, help="also write the findings as JSON here")
    return out


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    task = get_task(args.task)
    root = dataset_folder(task, args.data)
    result = run_audit(root, task)
    print(to_markdown(result.findings, root, task.name))
    if args.json:
        args.json.write_text(json.dumps(result.findings, indent=2))


if __name__ == "__main__":
    main()
