"""Multiple-instance training for tasks labelled per scan (brain-stroke).

A stroke scan's label holds for the scan, not for each slice: most of its slices show no lesion.
Every slice of a normal scan, though, is truly normal. So: negative slices get an ordinary
per-slice loss, and each positive scan is a *bag* whose score is the mean of its top-k slice scores
(k = `TOP_FRACTION` of the sampled slices), trained towards positive. The network stays a slice
classifier (same export, same gateway); only the loss changes. `--mil` in train.py and crossval.py.
The bags replace prepare.py's edge-slice weights, and the loss averages negatives and bags
separately, so both classes weigh the same and no class weights are needed.
"""

from __future__ import annotations

import numpy as np

from ct_contract import scan_rule
from training.cli import TrainingError
from training.data.prepare import Prepared
from training.evaluation import metrics as ev
from training.evaluation.scans import SCAN_TOP_FRACTION, binary_auc, scan_verdicts
from training.nets.checkpoints import transfer_backbone

BAG_SLICES = 16  # slices sampled from a positive scan per bag (scans hold 20-40 slices)
BAGS_PER_STEP = 2
TOP_FRACTION = SCAN_TOP_FRACTION  # a bag is scored like the served scan-level rule


def positive_bags(p: Prepared, pos: int) -> list[np.ndarray]:
    """Training-slice indices of each positive scan."""
    if p.scans_train is None:
        raise TrainingError("--mil needs scan ids (a task grouped by scan)")
    bags = []
    for scan in np.unique(p.scans_train):
        idx = np.flatnonzero(p.scans_train == scan)
        if p.y_train[idx[0]] == pos:
            bags.append(idx)
    return bags


def sample_step(
    rng: np.random.Generator, neg: np.ndarray, bags: list[np.ndarray], batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One step's slices: `batch_size` negatives and `BAGS_PER_STEP` bags of `BAG_SLICES`."""
    negatives = rng.choice(neg, size=min(batch_size, len(neg)), replace=False)
    chosen = rng.choice(len(bags), size=min(BAGS_PER_STEP, len(bags)), replace=False)
    bag_rows = [
        rng.choice(bags[b], size=BAG_SLICES, replace=len(bags[b]) < BAG_SLICES) for b in chosen
    ]
    return negatives, np.stack(bag_rows)


def mil_loss(scores, n_neg: int, n_bags: int):
    """Mean BCE of negative slices plus mean BCE of bag scores (top-k mean of slice scores)."""
    import tensorflow as tf

    k = scan_rule.top_count(BAG_SLICES, TOP_FRACTION)
    neg_loss = tf.reduce_mean(tf.nn.softplus(scores[:n_neg]))  # -log(1 - sigmoid(s))
    bag_scores = tf.reshape(scores[n_neg:], (n_bags, BAG_SLICES))
    top = tf.reduce_mean(tf.math.top_k(bag_scores, k=k).values, axis=1)
    return neg_loss + tf.reduce_mean(tf.nn.softplus(-top))  # -log(sigmoid(top))


def fit_mil(
    p: Prepared,
    arch: str,
    size: int,
    channels: int,
    epochs: int,
    seed: int,
    init_from,
    batch_size: int,
    patience: int,
    lr: float = 2e-3,
    keep_best: bool = True,
    *,
    pos: int,
):
    """Same contract as fit.fit: returns the model and a Keras-style history dict. With
    `keep_best` False: exactly `epochs` epochs, validation never looked at. Else the best
    epoch is the one with the lowest MIL objective on the validation scans (whole scans as bags):
    slice AUC would reward scoring a stroke scan's lesion-free slices high, which is what MIL
    is meant to stop, and the scan AUC of a dozen scans moves in coarse steps."""
    import keras
    import tensorflow as tf

    from training.nets.architectures import augmenter, build

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(arch, size, channels, len(p.labels))
    if init_from:
        transfer_backbone(model, init_from)
    bags, neg = positive_bags(p, pos), np.flatnonzero(p.y_train != pos)
    steps = int(np.ceil(len(neg) / batch_size))
    optimizer = keras.optimizers.AdamW(
        keras.optimizers.schedules.CosineDecay(lr, max(1, epochs * steps)), weight_decay=1e-4
    )
    aug = augmenter(seed)

    @tf.function
    def train_step(x, n_neg, n_bags):
        x = tf.clip_by_value(aug(tf.cast(x, tf.float32) / 255.0, training=True), 0.0, 1.0)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            scores = logits[:, pos] - logits[:, 1 - pos]
            loss = mil_loss(scores, n_neg, n_bags) + tf.add_n(model.losses or [0.0])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    history: dict[str, list[float]] = {
        "loss": [],
        "val_loss": [],
        "val_auc": [],
        "val_scan_auc": [],
    }
    best, best_loss, waited = model.get_weights(), np.inf, 0
    xval = p.x_val.astype(np.float32) / 255.0
    for epoch in range(epochs):
        losses = []
        for _ in range(steps):
            negatives, bag_rows = sample_step(rng, neg, bags, batch_size)
            x = np.concatenate([p.x_train[negatives], p.x_train[bag_rows.ravel()]])
            losses.append(float(train_step(x, len(negatives), len(bag_rows))))
        if not keep_best:  # fixed epochs: the validation side is never looked at
            history["loss"].append(float(np.mean(losses)))
            print(f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f}", flush=True)
            continue
        val_loss, slice_auc, scan_auc = _validate(model, xval, p, pos)
        for key, val in zip(history, (np.mean(losses), val_loss, slice_auc, scan_auc), strict=True):
            history[key].append(float(val))
        print(
            f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} val loss {val_loss:.4f} "
            f"slice AUC {slice_auc:.3f} scan AUC {scan_auc:.3f}",
            flush=True,
        )
        if val_loss < best_loss:
            best, best_loss, waited = model.get_weights(), val_loss, 0
        else:
            waited += 1
            if waited >= patience:
                break
    if keep_best:
        model.set_weights(best)
    return model, history


def _validate(model, xval: np.ndarray, p: Prepared, pos: int) -> tuple[float, float, float]:
    """Validation MIL objective, slice AUC and scan AUC of the current weights."""
    logits = model.predict(xval, batch_size=64, verbose=0)
    scores = logits[:, pos] - logits[:, 1 - pos]
    positive = p.y_val == pos
    slice_auc = float(ev.auc(positive.astype(int), np.stack([-scores, scores], axis=1)))
    scan_auc = _scan_auc(scores, positive, p.scans_val)
    return validation_objective(scores, positive, p.scans_val), slice_auc, scan_auc


def validation_objective(scores: np.ndarray, positive: np.ndarray, scans: np.ndarray) -> float:
    """`mil_loss` on validation data, each positive scan one bag of all its slices."""
    neg = np.logaddexp(0.0, scores[~positive]).mean() if (~positive).any() else 0.0
    _, tops = ev.aggregate_scans(scores[positive], scans[positive], TOP_FRACTION)
    pos = np.logaddexp(0.0, -tops).mean() if len(tops) else 0.0
    return float(neg + pos)


def _scan_auc(scores: np.ndarray, positive: np.ndarray, scans: np.ndarray | None) -> float:
    if scans is None:
        return float("nan")
    agg, truth = scan_verdicts(scores, positive, scans)
    return binary_auc(truth, agg)
