"""The numbers behind the report's figures, as pure numpy functions (tested without drawing anything).

* GD-Unit edges as a 3x3 matrix, **rows = teacher (source), columns = student (target)**, modality order
  L, V, A (the GD index order of :mod:`emodistill.models.dmd.gd_unit`); the diagonal (no self-edges) is NaN.
* Class bins for the confusion matrix: the MOSI family uses MMSA's Acc-7 rounding (clip to [-3, 3],
  ``np.round``, ties to even); CH-SIMS uses MMSA's 5 SIMS bins (its labels lie in [-1, 1], where
  rounding would leave 3 classes); binary tasks compare labels 0/1 with ``logit > 0``.
* A deterministic t-SNE of decoupled features (fixed subsample and ``random_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emodistill.metrics.scores import SIMS_CLASS_NAMES, sims_bins
from emodistill.models.dmd.gd_unit import EDGE_NAMES, EDGE_STUDENT, EDGE_TEACHER
from emodistill.models.dmd.model import MODS as DMD_MODALITIES
from emodistill.spec import is_binary_task

GD_MODALITIES = tuple(m.upper() for m in DMD_MODALITIES)
"""Row/column labels of an edge matrix: ``("L", "V", "A")`` (GD index 0 = L, 1 = V, 2 = A)."""

ACC7_CLASSES = ("-3", "-2", "-1", "0", "1", "2", "3")
BINARY_CLASSES = ("0", "1")


def edge_matrix(edges: Sequence[float]) -> np.ndarray:
    """Place the 6 GD edge weights in a teacher x student matrix.

    Args:
        edges: (6,) weights in edge order :data:`~emodistill.models.dmd.gd_unit.EDGE_NAMES`.

    Returns:
        (3, 3) float64 array ``M[teacher, student]``, NaN on the diagonal.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.shape != (len(EDGE_NAMES),):
        raise ValueError(f"edge_matrix: expected {len(EDGE_NAMES)} edge weights, got shape {e.shape}")
    m = np.full((3, 3), np.nan)
    m[list(EDGE_TEACHER), list(EDGE_STUDENT)] = e
    return m


def edge_history(history: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-epoch edge means logged in ``metrics.jsonl``.

    Returns:
        ``{space: (epochs (E,), weights (E, 6))}`` for every space present in some epoch (epochs that
        lack it are skipped); ``{}`` for a model without GD-Units.
    """
    out: dict[str, tuple[list[int], list[list[float]]]] = {}
    for rec in history:
        for space, values in (rec.get("edges") or {}).items():
            epochs, weights = out.setdefault(space, ([], []))
            epochs.append(int(rec["epoch"]))
            weights.append(list(values))
    return {s: (np.asarray(ep), np.asarray(w, dtype=np.float64).reshape(len(ep), -1)) for s, (ep, w) in out.items()}



def label_classes(y: np.ndarray, task: str, family: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class index (N,) of each ground-truth label and the class names."""
    y = np.asarray(y, dtype=np.float64)
    if is_binary_task(task):
        return (y >= 0.5).astype(np.int64), BINARY_CLASSES
    return _regression_classes(y, family)


def prediction_classes(p: np.ndarray, task: str, family: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class index (N,) of each prediction (a score, or a logit for binary tasks) and the class names."""
    p = np.asarray(p, dtype=np.float64)
    if is_binary_task(task):
        return (p > 0).astype(np.int64), BINARY_CLASSES
    return _regression_classes(p, family)


def _regression_classes(x: np.ndarray, family: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if family == "sims":
        return sims_bins(np.clip(x, -1.0, 1.0)).astype(np.int64), SIMS_CLASS_NAMES
    return (np.round(np.clip(x, -3.0, 3.0)) + 3).astype(np.int64), ACC7_CLASSES  # -3..3 -> 0..6


def confusion_matrix(true_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    t, p = np.asarray(true_idx, dtype=np.int64), np.asarray(pred_idx, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.shape[0]} labels but {p.shape[0]} predictions")
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def subsample(n: int, max_n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_n`` of ``n`` rows, the same on every call."""
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Deterministic 2-D t-SNE of ``x`` (M, F) -> (M, 2) (PCA init, perplexity ``min(30, (M-1)/3)``).

    Runs on one OpenMP thread: the result then does not depend on the thread count, and Barnes-Hut's
    parallel loop, on a busy machine, was measured 40-60x slower with 2 threads than with 1.
    """
    try:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    except ImportError as e:
        raise ImportError("the report's embedding needs scikit-learn: pip install 'emodistill[report]'") from e
    m = x.shape[0]
    if m < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {m}")
    tsne = TSNE(n_components=2, perplexity=min(30.0, (m - 1) / 3), init="pca", learning_rate="auto",
                random_state=seed)
    with threadpool_limits(limits=1):
        return tsne.fit_transform(np.asarray(x, dtype=np.float64))
