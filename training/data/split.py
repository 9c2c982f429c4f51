"""Leakage-free, stratified, seeded train/validation splits over groups.

A group is what must stay on one side: a scan (all its slices) where the file names carry scan ids,
and always every duplicate cluster found by the audit (exact or near copies). Clusters whose
members carry conflicting labels are dropped: their label is unknowable.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from training.data.audit import AuditResult, UnionFind


@dataclass
class Split:
    train: list[int]
    val: list[int]
    dropped: dict[str, list[int]]  # reason -> record indices left out of both sides
    group_of: list[int]  # group id per record

    def summary(self, labels_by_index) -> dict:
        def count(idx):
            return dict(sorted(Counter(labels_by_index[i] for i in idx).items()))

        return {
            "train": count(self.train),
            "val": count(self.val),
            "train_groups": len({self.group_of[i] for i in self.train}),
            "val_groups": len({self.group_of[i] for i in self.val}),
            "dropped": {reason: len(idx) for reason, idx in self.dropped.items()},
        }


def leakage_groups(audit: AuditResult) -> list[int]:
    """Group id per record: union of scan ids and duplicate clusters."""
    n = len(audit.records)
    uf = UnionFind(n)
    first_of_scan: dict[str, int] = {}
    for i, record in enumerate(audit.records):
        uf.union(i, audit.cluster_of[i])
        if record.scan is not None:
            uf.union(i, first_of_scan.setdefault(record.scan, i))
    return [uf.find(i) for i in range(n)]


def _kept_groups(audit: AuditResult):
    """(group of each record, members of each group, kept group ids by label, dropped record ids
    by reason): groups whose duplicates disagree on the label are dropped, and exact copies
    within a group."""
    group_of = leakage_groups(audit)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    dropped = defaultdict(list)
    kept_groups: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        labels = {audit.records[i].label for i in idx}
        if len(labels) > 1:
            dropped["conflicting labels among duplicates"].extend(idx)
            continue
        members[g] = _drop_exact_copies(audit, idx, dropped)
        kept_groups[labels.pop()].append(g)
    return group_of, members, kept_groups, dropped


def grouped_split(audit: AuditResult, val_fraction: float, seed: int) -> Split:
    """Stratified by group label: each class gets about `val_fraction` of its images in val."""
    group_of, members, kept_groups, dropped = _kept_groups(audit)

    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(kept_groups):
        groups = sorted(kept_groups[label])
        rng.shuffle(groups)
        target = val_fraction * sum(len(members[g]) for g in groups)
        taken = 0
        for g in groups:
            side = val if taken < target else train
            side.extend(members[g])
            if side is val:
                taken += len(members[g])
    return Split(sorted(train), sorted(val), dict(dropped), group_of)


def _drop_exact_copies(audit: AuditResult, idx: list[int], dropped) -> list[int]:
    """Keep one file per SHA-256 within a group (copies only re-weight training)."""
    seen, kept = set(), []
    for i in idx:
        digest = audit.facts[i].sha256
        if digest in seen:
            dropped["exact copy of a kept file"].append(i)
        else:
            seen.add(digest)
            kept.append(i)
    return kept


def grouped_kfold(audit: AuditResult, folds: int, seed: int) -> list[Split]:
    """`folds` splits whose validation sides partition the kept records: every group (scan,
    duplicate cluster) in exactly one validation fold, never on both sides of a split.
    Stratified by group label: the groups of each label, shuffled with `seed`, go one by one to
    the fold holding the fewest groups of that label (ties: the fewest images so far), so each
    fold gets about 1/`folds` of each label's scans. Conflicting clusters and exact copies are
    dropped as in `grouped_split`."""
    if folds < 2:
        raise ValueError("k-fold needs at least 2 folds")
    group_of, members, kept_groups, dropped = _kept_groups(audit)

    rng = random.Random(seed)
    fold_members: list[list[int]] = [[] for _ in range(folds)]
    for label in sorted(kept_groups):
        groups = sorted(kept_groups[label])
        rng.shuffle(groups)
        n_label = [0] * folds
        for g in groups:
            k = min(range(folds), key=lambda f: (n_label[f], len(fold_members[f]), f))
            n_label[k] += 1
            fold_members[k].extend(members[g])
    kept = sorted(i for fm in fold_members for i in fm)
    out = []
    for fm in fold_members:
        val = set(fm)
        out.append(Split([i for i in kept if i not in val], sorted(fm), dict(dropped), group_of))
    return out
