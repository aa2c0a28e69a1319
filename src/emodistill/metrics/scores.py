"""Regression-to-class metrics for multimodal sentiment analysis, as MMSA defines them.

The definitions follow MMSA's ``src/MMSA/utils/metricsTop.py`` (``__eval_mosei_regression`` and
``__eval_sims_regression``; see ``docs/mmsa.md`` §4 and ``docs/dmd-spec.md`` §7),
so numbers are comparable with the MMSA benchmark and with DMD, with three deliberate differences:

* values are plain, unrounded Python floats (MMSA rounds to 4 decimals; use :func:`round_metrics`
  or :func:`format_metrics` for display);
* the MOSI family also returns ``Mult_acc_3`` (MMSA computes it but drops it) and
  ``Mult_acc_7_sdk``, the 7-class accuracy under the CMU-MultimodalSDK binning;
* MAE and Corr are accumulated in float64 (MMSA uses the float32 of the model output), which can
  move them in the 7th decimal.

Acc-7 has two incompatible conventions, kept under distinct names:

* ``Mult_acc_7`` (MMSA, MulT, DMD): clip to [-3, 3] and take ``np.round``, i.e. nearest integer with
  ties to even (2.5 -> 2, -0.5 -> -0). A label of 1/3 is class 0.
* ``Mult_acc_7_sdk`` (CMU-MOSEI README): 0 -> 0, otherwise ``sign(x) * ceil(|x|)`` clipped to
  [-3, 3], i.e. (0, 1] -> 1, (1, 2] -> 2, > 2 -> 3, [-1, 0) -> -1, ... A label of 1/3 is class 1.

Weighted F1 is computed here with numpy and matches scikit-learn's
``f1_score(y_true, y_pred, average="weighted")`` (classes = union of those in ``y_true`` and
``y_pred``, weights = support in ``y_true``). Note the argument order: MulT and MISA swap it.

The ``binary`` family (UR-FUNNY humour, MUStARD sarcasm) scores a LOGIT per clip against 0/1 labels:
class 1 iff logit > 0 (a logit of exactly 0 is class 0), as HKT (Hasan et al., AAAI 2021) reads its
``BCEWithLogitsLoss``-trained head: ``np.round(sigmoid(logit))``, which rounds 0.5 to 0. It reports
accuracy, weighted and macro F1 (scikit-learn's definitions), the mean binary cross-entropy of the
logits, and ROC AUC (Mann-Whitney, ties averaged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FAMILIES: tuple[str, str, str] = ("mosi", "sims", "binary")
"""Metric families: ``mosi`` for MOSI, MOSEI and synthetic data, ``sims`` for CH-SIMS (v2), ``binary``
for binary tasks (UR-FUNNY, MUStARD; predictions are logits, labels 0/1)."""

METRIC_KEYS: dict[str, list[str]] = {
    "mosi": [
        "Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
        "Mult_acc_3", "Mult_acc_5", "Mult_acc_7", "Mult_acc_7_sdk", "MAE", "Corr",
    ],
    "sims": ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"],
    "binary": ["Acc_2", "F1_weighted", "F1_macro", "AUC", "BCE"],
}
"""Every key :func:`compute_metrics` returns, per family, in display order."""

PRIMARY_METRICS: dict[str, list[str]] = {
    # The columns of MMSA's published benchmark tables (results/result-stat.md), in that order.
    "mosi": [
        "Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
        "Mult_acc_5", "Mult_acc_7", "MAE", "Corr",
    ],
    "sims": ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"],
    # UR-FUNNY and MUStARD papers report accuracy and (weighted) F1; macro F1 and AUC are robust to
    # MUStARD's class imbalance on its Friends test show.
    "binary": ["Acc_2", "F1_weighted", "F1_macro", "AUC"],
}
"""Ordered keys for results tables, per family."""

HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "mosi": ("Non0_acc_2", "Mult_acc_7", "MAE"),
    "sims": ("Mult_acc_2", "Mult_acc_5", "MAE"),
    "binary": ("Acc_2", "F1_weighted", "AUC"),
}
"""The few keys per family that figures show (per-seed spread, robustness curves)."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"MAE", "BCE"})
"""Keys where a smaller value is better; for all other keys larger is better."""

METRIC_DESCRIPTIONS: dict[str, str] = {
    "Has0_acc_2": "binary accuracy, negative (<0) vs non-negative (>=0) over all samples; "
                  "a label of 0 counts as positive",
    "Has0_F1_score": "weighted F1 of the Has0 binary split",
    "Non0_acc_2": "binary accuracy, negative vs positive (>0), on samples whose label != 0; "
                  "a prediction of exactly 0 counts as negative (NaN if every label is 0)",
    "Non0_F1_score": "weighted F1 of the Non0 binary split (NaN if every label is 0)",
    "Mult_acc_2": "SIMS 2-class accuracy, bins [-1,0] / (0,1] after clipping to [-1,1]; "
                  "0 is negative",
    "Mult_acc_3": "3-class accuracy; MOSI family: round(clip(x,-1,1)); SIMS: bins "
                  "[-1,-0.1] / (-0.1,0.1] / (0.1,1]",
    "Mult_acc_5": "5-class accuracy; MOSI family: round(clip(x,-2,2)); SIMS: bins "
                  "[-1,-0.7] / (-0.7,-0.1] / (-0.1,0.1] / (0.1,0.7] / (0.7,1]",
    "Mult_acc_7": "7-class accuracy, round(clip(x,-3,3)) with ties to even (MMSA/MulT/DMD Acc-7)",
    "Mult_acc_7_sdk": "7-class accuracy, CMU-SDK binning sign(x)*ceil(|x|) clipped to [-3,3] "
                      "(a label of 1/3 is class 1 here, 0 in Mult_acc_7)",
    "F1_score": "SIMS weighted F1 of the 2-class bins",
    "MAE": "mean absolute error (MOSI family: unclipped; SIMS: after clipping to [-1,1])",
    "Corr": "Pearson correlation (MOSI family: unclipped; SIMS: after clipping); "
            "NaN if either side is constant",
    "Acc_2": "binary accuracy; the prediction is a logit, class 1 iff logit > 0",
    "F1_weighted": "support-weighted F1 over the classes in labels or predictions (sklearn average='weighted')",
    "F1_macro": "unweighted mean F1 over the classes in labels or predictions (sklearn average='macro')",
    "AUC": "ROC AUC of the logits (Mann-Whitney rank statistic, ties count 1/2); NaN if only one class "
           "occurs in the labels",
    "BCE": "mean binary cross-entropy of the logits (natural log, computed stably from the logits)",
}
"""One-line description per metric key, for the README and ``--help``."""

SIMS_EDGES: dict[str, tuple[float, ...]] = {
    "Mult_acc_2": (-1.01, 0.0, 1.01),
    "Mult_acc_3": (-1.01, -0.1, 0.1, 1.01),
    "Mult_acc_5": (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}
"""MMSA's CH-SIMS class edges per metric key: a value ``v`` in [-1, 1] falls in class ``i`` when
``edges[i] < v <= edges[i + 1]`` (see :func:`sims_bins`)."""
SIMS_CLASS_NAMES: tuple[str, ...] = ("[-1,-0.7]", "(-0.7,-0.1]", "(-0.1,0.1]", "(0.1,0.7]", "(0.7,1]")
"""Names of the five classes of ``SIMS_EDGES["Mult_acc_5"]`` (values clipped to [-1, 1] first)."""


def _as_array(x: Any, name: str) -> np.ndarray:
    """Convert ``x`` (numpy array, torch tensor or sequence) to a finite 1-D float array.

    float32 input stays float32 so that the SIMS bin edges are compared in the same precision as
    MMSA (NumPy casts a Python-float edge to the array's float32); anything else becomes float64.
    A column vector (N, 1), as models output it, is flattened.
    """
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()  # numpy has no bfloat16; half precision would only lose accuracy
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}") from err
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # (N, 1) -> (N,)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array (N,) or (N, 1), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input, need at least one sample")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s) (NaN/inf), first at index {int(np.argmax(bad))}"
        )
    return arr


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of positions where the two label arrays agree."""
    return float(np.mean(y_true == y_pred))


def _per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """(C,) F1 ``2 tp / (2 tp + fp + fn)`` and (C,) support in ``y_true`` for each class of the union of
    ``y_true`` and ``y_pred`` (sorted). Every class of the union has ``tp + fp + fn > 0``, so no F1 is
    0/0; a class found only in ``y_pred`` has F1 0, as scikit-learn's zero-division default gives."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(
            f"{caller}: need two non-empty 1-D arrays of equal length, got {y_true.shape} and {y_pred.shape}"
        )
    classes = np.union1d(y_true, y_pred)
    f1, support = np.zeros(len(classes)), np.zeros(len(classes))
    for i, c in enumerate(classes):
        is_true, is_pred = y_true == c, y_pred == c
        tp = int(np.sum(is_true & is_pred))
        fp = int(np.sum(~is_true & is_pred))
        fn = int(is_true.sum()) - tp
        f1[i], support[i] = 2 * tp / (2 * tp + fp + fn), tp + fn
    return f1, support


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted F1, as scikit-learn's ``f1_score(y_true, y_pred, average="weighted")``.

    The classes are the union of those in ``y_true`` and ``y_pred``; each class's F1 is
    ``2 tp / (2 tp + fp + fn)`` and is weighted by its count in ``y_true``. A class that occurs only
    in ``y_pred`` therefore has weight 0 (scikit-learn's zero-division case for its recall), and
    when ``y_true`` and ``y_pred`` hold one and the same class the result is 1.

    Args:
        y_true: (N,) ground-truth class labels (any comparable dtype, e.g. bool or int).
        y_pred: (N,) predicted class labels.

    Returns:
        Weighted F1 in [0, 1].
    """
    f1, support = _per_class_f1(y_true, y_pred, "weighted_f1")
    return float(np.sum(f1 * support) / np.sum(support))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of the per-class F1, as scikit-learn's ``f1_score(y_true, y_pred,
    average="macro")``: classes are the union of those in ``y_true`` and ``y_pred``, so a class that
    is only predicted (never true) counts with F1 0.

    Args:
        y_true: (N,) ground-truth class labels.
        y_pred: (N,) predicted class labels.

    Returns:
        Macro F1 in [0, 1].
    """
    f1, _ = _per_class_f1(y_true, y_pred, "macro_f1")
    return float(f1.mean())


def binary_cross_entropy_with_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]`` in float64.

    Uses ``max(x, 0) - x y + log1p(exp(-|x|))``, which equals the definition and never overflows or
    takes the log of 0 (a logit of 800 with label 0 costs 800, not inf).
    """
    x, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """(N,) 1-based ranks of ``x``; tied values share the mean of the ranks they span (as
    ``scipy.stats.rankdata(x, method="average")``)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # start index of each run of equal values in the sorted order
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney U statistic.

    ``AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0)`` with ``R_1`` the sum of the average ranks of the
    positives' scores: the probability that a random positive scores above a random negative, a tie
    counting 1/2. It equals scikit-learn's ``roc_auc_score`` (trapezoidal ROC area).

    Args:
        scores: (N,) real-valued scores (logits), larger meaning more likely class 1.
        labels: (N,) 0/1 (or bool) labels.

    Returns:
        AUC in [0, 1], or NaN when the labels hold only one class (the ROC curve is undefined there;
        scikit-learn raises instead).
    """
    pos = np.asarray(labels).astype(bool)
    n1 = int(pos.sum())
    n0 = pos.size - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    r1 = float(average_ranks(np.asarray(scores, dtype=np.float64))[pos].sum())
    return (r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation as ``np.corrcoef(x, y)[0, 1]``, but NaN (without a warning) if either
    side is constant, where ``np.corrcoef`` divides by zero."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    # test constancy exactly: the float64 mean of a constant array need not equal its elements
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    xc, yc = x - x.mean(), y - y.mean()
    r = float(np.sum(xc * yc) / math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc))))
    return max(-1.0, min(1.0, r))  # np.corrcoef clips rounding overshoot the same way


def sdk_7class(x: np.ndarray) -> np.ndarray:
    """CMU-MultimodalSDK 7-class bins: 0 -> 0, else ``sign(x) * ceil(|x|)`` clipped to [-3, 3].

    (0, 1] -> 1, (1, 2] -> 2, (2, inf) -> 3 and symmetrically for negatives.
    """
    return np.clip(np.sign(x) * np.ceil(np.abs(x)), -3.0, 3.0)


def _round_acc(pred: np.ndarray, true: np.ndarray, bound: float) -> float:
    """MMSA's ``__multiclass_acc`` after clipping both sides to [-bound, bound]."""
    return accuracy(np.round(np.clip(true, -bound, bound)), np.round(np.clip(pred, -bound, bound)))


def sims_bins(x: np.ndarray, edges: Sequence[float] = SIMS_EDGES["Mult_acc_5"]) -> np.ndarray:
    """Class index i with ``edges[i] < x <= edges[i+1]`` (edges compared in ``x``'s dtype, as MMSA does),
    for ``x`` already clipped to [-1, 1]; by default the five classes of :data:`SIMS_CLASS_NAMES`."""
    inner = np.asarray(edges[1:-1], dtype=x.dtype)
    # side="left" counts the inner edges strictly below x, which is the (lo, hi] convention
    return np.searchsorted(inner, x, side="left")


def _mosi_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    m: dict[str, float] = {}
    has0_true, has0_pred = true >= 0, pred >= 0
    m["Has0_acc_2"] = accuracy(has0_true, has0_pred)
    m["Has0_F1_score"] = weighted_f1(has0_true, has0_pred)
    nonzero = true != 0
    if nonzero.any():
        non0_true, non0_pred = true[nonzero] > 0, pred[nonzero] > 0
        m["Non0_acc_2"] = accuracy(non0_true, non0_pred)
        m["Non0_F1_score"] = weighted_f1(non0_true, non0_pred)
    else:
        m["Non0_acc_2"] = m["Non0_F1_score"] = math.nan
    m["Mult_acc_3"] = _round_acc(pred, true, 1.0)
    m["Mult_acc_5"] = _round_acc(pred, true, 2.0)
    m["Mult_acc_7"] = _round_acc(pred, true, 3.0)
    m["Mult_acc_7_sdk"] = accuracy(sdk_7class(true), sdk_7class(pred))
    m["MAE"] = float(np.mean(np.abs(pred.astype(np.float64) - true.astype(np.float64))))
    m["Corr"] = pearson(pred, true)
    return m


def _sims_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    pred, true = np.clip(pred, -1.0, 1.0), np.clip(true, -1.0, 1.0)
    m: dict[str, float] = {}
    for key, edges in SIMS_EDGES.items():
        m[key] = accuracy(sims_bins(true, edges), sims_bins(pred, edges))
    m["F1_score"] = weighted_f1(sims_bins(true, SIMS_EDGES["Mult_acc_2"]),
                                sims_bins(pred, SIMS_EDGES["Mult_acc_2"]))
    m["MAE"] = float(np.mean(np.abs(pred.astype(np.float64) - true.astype(np.float64))))
    m["Corr"] = pearson(pred, true)
    return m


def _binary_metrics(logits: np.ndarray, true: np.ndarray) -> dict[str, float]:
    not_binary = (true != 0) & (true != 1)
    if not_binary.any():
        first = int(np.argmax(not_binary))
        raise ValueError(
            f"true: binary labels must be 0 or 1, found {true[first]:g} at index {first} "
            f"({int(not_binary.sum())} value(s) not in {{0, 1}})"
        )
    y = true.astype(np.int64)
    y_hat = (logits > 0).astype(np.int64)  # logit 0 = probability 1/2 -> class 0
    return {
        "Acc_2": accuracy(y, y_hat),
        "F1_weighted": weighted_f1(y, y_hat),
        "F1_macro": macro_f1(y, y_hat),
        "AUC": roc_auc(logits, y),
        "BCE": binary_cross_entropy_with_logits(logits, y),
    }


def compute_metrics(pred: Any, true: Any, family: str = "mosi") -> dict[str, float]:
    """Evaluate predictions with the metric set of a data-set family.

    Args:
        pred: (N,) predictions (numpy array, torch tensor or list; (N, 1) is accepted): sentiment
            scores for ``mosi``/``sims``, logits for ``binary``.
        true: (N,) ground-truth labels: regression labels, or 0/1 for ``binary``.
        family: ``"mosi"`` (MOSI, MOSEI, synthetic; labels in [-3, 3]), ``"sims"`` (CH-SIMS,
            labels in [-1, 1]) or ``"binary"`` (UR-FUNNY, MUStARD); see ``DatasetSpec.metric_family``.

    Returns:
        ``{key: float}`` with exactly the keys ``METRIC_KEYS[family]``, unrounded. ``Non0_*`` are
        NaN when every label is 0; ``Corr`` is NaN when predictions or labels are constant; ``AUC``
        is NaN when the labels hold a single class.

    Raises:
        ValueError: unknown family, lengths differ, empty input, wrong shape, non-finite values, or
            (``binary``) a label other than 0/1.
    """
    if family not in FAMILIES:
        raise ValueError(f"compute_metrics: unknown family {family!r}; expected one of {list(FAMILIES)}")
    p, t = _as_array(pred, "pred"), _as_array(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"compute_metrics: pred has {p.shape[0]} values but true has {t.shape[0]}")
    if family == "binary":
        return _binary_metrics(p, t)
    return _mosi_metrics(p, t) if family == "mosi" else _sims_metrics(p, t)


def _ordered(metrics: Mapping[str, float]) -> list[str]:
    """Keys of the best-matching family in display order first, then any others as given."""
    known = max(METRIC_KEYS.values(), key=lambda keys: sum(k in metrics for k in keys))
    order = [k for k in known if k in metrics]
    return order + [k for k in metrics if k not in order]


def round_metrics(metrics: Mapping[str, float], digits: int = 4) -> dict[str, float]:
    """Round every value to ``digits`` decimals (MMSA's display convention); NaN stays NaN."""
    return {k: round(float(v), digits) for k, v in metrics.items()}


def format_metrics(metrics: Mapping[str, float], digits: int = 4) -> str:
    """One-line ``"key: value | key: value"`` summary in display order, e.g. for logs."""
    return " | ".join(f"{k}: {float(metrics[k]):.{digits}f}" for k in _ordered(metrics))


def metrics_table(metrics: dict[str, float], digits: int = 4) -> str:
    """Metrics as an aligned two-column terminal table (loss first, then the family's order)."""
    keys = sorted(metrics, key=lambda k: (k != "loss", _ORDER.index(k) if k in _ORDER else len(_ORDER)))
    width = max(len(k) for k in keys)
    return "\n".join(f"  {k:<{width}}  {metrics[k]:.{digits}f}" for k in keys)


_ORDER = [k for keys in METRIC_KEYS.values() for k in keys]
