"""Tests for emodistill.metrics.scores against hand-computed values and MMSA's definitions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from emodistill.metrics.scores import (
    LOWER_IS_BETTER,
    METRIC_DESCRIPTIONS,
    METRIC_KEYS,
    PRIMARY_METRICS,
    average_ranks,
    binary_cross_entropy_with_logits,
    compute_metrics,
    format_metrics,
    macro_f1,
    roc_auc,
    round_metrics,
    sdk_7class,
    weighted_f1,
)


def sk_weighted_f1(y_true, y_pred) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(f1_score(y_true, y_pred, average="weighted"))


# ----------------------------------------------------------------------------- MOSI family, by hand


def test_zero_labels_and_zero_prediction():
    true = [0.0, 0.0, 1.0, -1.0, 2.0, -2.0]
    pred = [0.5, -0.5, 0.0, -0.2, 1.0, 0.0]
    m = compute_metrics(pred, true)
    # Has0: true>=0 = [T,T,T,F,T,F], pred>=0 = [T,F,T,F,T,T] -> agree at 0,2,3,4 -> 4/6
    assert m["Has0_acc_2"] == pytest.approx(4 / 6)
    # Has0 F1: class T support 4, tp 3 (0,2,4), fp 1 (5), fn 1 (1) -> 2*3/(6+1+1) = 0.75
    #          class F support 2, tp 1 (3),     fp 1 (1), fn 1 (5) -> 2/(2+1+1)   = 0.5
    #          weighted (4*0.75 + 2*0.5)/6 = 4/6
    assert m["Has0_F1_score"] == pytest.approx(4 / 6)
    # Non0 keeps samples 2..5: true>0 = [T,F,T,F]; pred>0 = [F(0.0 counts negative),F,T,F] -> 3/4
    assert m["Non0_acc_2"] == pytest.approx(3 / 4)
    # Non0 F1: class T support 2, tp 1, fp 0, fn 1 -> 2/3; class F support 2, tp 2, fp 1, fn 0 -> 4/5
    #          weighted (2*2/3 + 2*4/5)/4 = 11/15
    assert m["Non0_F1_score"] == pytest.approx(11 / 15)
    # Acc-7: round(true) = [0,0,1,-1,2,-2], round(pred) = [0,-0,0,-0,1,0] -> agree at 0,1 -> 2/6
    assert m["Mult_acc_7"] == pytest.approx(2 / 6)
    # MAE: (0.5+0.5+1+0.8+1+2)/6 = 5.8/6
    assert m["MAE"] == pytest.approx(5.8 / 6)


def test_round_half_to_even():
    pred = [2.5, 1.5, -0.5, 0.5, -2.5, 3.5]
    true = [2.0, 2.0, 0.0, 0.0, -2.0, 3.0]
    m = compute_metrics(pred, true)
    # np.round: 2.5->2, 1.5->2, -0.5->-0, 0.5->0, -2.5->-2, clip(3.5)=3->3: all equal round(true).
    # (Half away from zero would give 3, 2, -1, 1, -3, 3 -> only 2/6.)
    assert m["Mult_acc_7"] == 1.0
    # clip +-2: pred [2,1.5,-0.5,0.5,-2,2] -> [2,2,-0,0,-2,2] = round(clip(true)) [2,2,0,0,-2,2]
    assert m["Mult_acc_5"] == 1.0
    # clip +-1: pred [1,1,-0.5,0.5,-1,1] -> [1,1,-0,0,-1,1] = [1,1,0,0,-1,1]
    assert m["Mult_acc_3"] == 1.0
    # SDK: pred [2.5->3, 1.5->2, -0.5->-1, 0.5->1, -2.5->-3, 3.5->4->3], true [2,2,0,0,-2,3]
    #      agree at 1 and 5 -> 2/6
    assert m["Mult_acc_7_sdk"] == pytest.approx(2 / 6)


def test_sdk_binning_vs_rounding_on_thirds():
    true = [1 / 3, -1 / 3, 2.5, -2.5, 1 / 3, 0.0, 2 / 3]
    pred = [0.1, -0.4, 2.2, -2.7, -0.2, 0.0, 0.4]
    m = compute_metrics(pred, true)
    # MMSA: round(true) = [0,-0,2,-2,0,0,1], round(pred) = [0,-0,2,-3,-0,0,0]
    #       disagree at 3 (-2 vs -3) and 6 (1 vs 0) -> 5/7
    assert m["Mult_acc_7"] == pytest.approx(5 / 7)
    # SDK:  true -> [1,-1,3,-3,1,0,1], pred -> [1,-1,3,-3,-1,0,1]; disagree only at 4 -> 6/7
    assert m["Mult_acc_7_sdk"] == pytest.approx(6 / 7)
    # float32 labels (as stored in the MMSA pickles) bin the same way
    m32 = compute_metrics(np.float32(pred), np.float32(true))
    assert (m32["Mult_acc_7"], m32["Mult_acc_7_sdk"]) == (m["Mult_acc_7"], m["Mult_acc_7_sdk"])


def test_sdk_7class_bins():
    x = np.array([-3.5, -2.5, -2.0, -1.5, -1.0, -1 / 3, 0.0, 1 / 3, 1.0, 1.0001, 2.0, 2.0001, 7.0])
    expected = [-3, -3, -2, -2, -1, -1, 0, 1, 1, 2, 2, 3, 3]
    assert sdk_7class(x).tolist() == expected


def test_clipping_beyond_three():
    true = [3.0, -3.0, 2.0]
    pred = [4.7, -10.0, 2.6]
    m = compute_metrics(pred, true)
    # Acc-7: clip(pred) = [3,-3,2.6] -> [3,-3,3] vs [3,-3,2] -> 2/3
    assert m["Mult_acc_7"] == pytest.approx(2 / 3)
    # Acc-5 / Acc-3: everything saturates to the same end class -> 1
    assert m["Mult_acc_5"] == 1.0 and m["Mult_acc_3"] == 1.0
    # SDK: pred [ceil 4.7 = 5 -> 3, -3, 3] vs [3,-3,2] -> 2/3
    assert m["Mult_acc_7_sdk"] == pytest.approx(2 / 3)
    # MAE unclipped: (1.7 + 7.0 + 0.6)/3 = 3.1 (clipped it would be 0.6/3)
    assert m["MAE"] == pytest.approx(3.1)
    # Corr unclipped: mean x = -0.9, mean y = 2/3; xc = [5.6,-9.1,3.5], yc = [7,-11,4]/3
    #   sum xc*yc = (39.2 + 100.1 + 14)/3 = 51.1; sum xc^2 = 126.42; sum yc^2 = 186/9
    assert m["Corr"] == pytest.approx(51.1 / math.sqrt(126.42 * 186 / 9))


@pytest.mark.parametrize("family", ["mosi", "sims"])
def test_constant_side_gives_nan_corr_without_warning(family):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m1 = compute_metrics([0.1, 0.1, 0.1], [0.2, -0.5, 0.9], family=family)
        m2 = compute_metrics([0.2, -0.5, 0.9], [0.5, 0.5, 0.5], family=family)
        m3 = compute_metrics([0.3], [0.4], family=family)  # one sample: constant by definition
    assert math.isnan(m1["Corr"]) and math.isnan(m2["Corr"]) and math.isnan(m3["Corr"])
    # the other metrics are still defined: MAE (0.1 + 0.6 + 0.8)/3 = 0.5
    assert m1["MAE"] == pytest.approx(0.5)


def test_perfect_and_anti_correlation():
    x = [-2.0, -1.0, 0.5, 3.0]
    assert compute_metrics(x, x)["Corr"] == pytest.approx(1.0)
    assert compute_metrics([-v for v in x], x)["Corr"] == pytest.approx(-1.0)


def test_all_zero_labels_make_non0_nan():
    m = compute_metrics([0.3, -0.2, 0.0], [0.0, 0.0, 0.0])
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    # Has0: all labels count positive; pred>=0 = [T,F,T] -> 2/3
    assert m["Has0_acc_2"] == pytest.approx(2 / 3)
    # Has0 F1: class T support 3, tp 2, fp 0, fn 1 -> 4/5; class F has no support -> weight 0
    assert m["Has0_F1_score"] == pytest.approx(4 / 5)


# ----------------------------------------------------------------------------- SIMS family, by hand

SIMS_TRUE = [0.0, 0.0, 0.1, -0.1, 0.7, -0.7, 1.0, -1.0]
SIMS_PRED = [0.05, -0.3, 0.1, -0.1, 0.71, -0.69, 1.8, -1.4]


@pytest.mark.parametrize("dtype", ["float64", "float32", "torch32"])
def test_sims_bins_and_zero_placement(dtype):
    if dtype == "torch32":
        pred, true = torch.tensor(SIMS_PRED), torch.tensor(SIMS_TRUE)
    else:
        pred, true = np.array(SIMS_PRED, dtype=dtype), np.array(SIMS_TRUE, dtype=dtype)
    m = compute_metrics(pred, true, family="sims")
    assert list(m) == METRIC_KEYS["sims"]
    # clipped pred = [0.05,-0.3,0.1,-0.1,0.71,-0.69,1,-1]
    # 2 classes ((-1.01,0] -> 0, (0,1.01] -> 1; a label of 0 is NEGATIVE):
    #   true [0,0,1,0,1,0,1,0], pred [1,0,1,0,1,0,1,0] -> 7/8
    assert m["Mult_acc_2"] == pytest.approx(7 / 8)
    # 3 classes (edges -0.1, 0.1; values on an edge go to the lower class):
    #   true [1,1,1,0,2,0,2,0], pred [1,0,1,0,2,0,2,0] -> 7/8
    assert m["Mult_acc_3"] == pytest.approx(7 / 8)
    # 5 classes (edges -0.7,-0.1,0.1,0.7):
    #   true [2,2,2,1,3,0,4,0], pred [2,1,2,1,4,1,4,0] -> agree at 0,2,3,6,7 -> 5/8
    assert m["Mult_acc_5"] == pytest.approx(5 / 8)
    # F1 on 2 classes: class 1 support 3, tp 3, fp 1, fn 0 -> 6/7; class 0 support 5, tp 4, fp 0,
    #   fn 1 -> 8/9; weighted (3*6/7 + 5*8/9)/8 = 442/504
    assert m["F1_score"] == pytest.approx(442 / 504)
    # MAE on clipped values: (0.05 + 0.3 + 0 + 0 + 0.01 + 0.01 + 0 + 0)/8 = 0.37/8
    assert m["MAE"] == pytest.approx(0.37 / 8, abs=1e-6)


def test_sims_mae_and_corr_use_clipped_values():
    pred, true = [2.0, -3.0, 0.5], [1.0, -1.0, 0.0]
    m = compute_metrics(pred, true, family="sims")
    # clipped pred = [1,-1,0.5]: MAE = 0.5/3; Corr of [1,-1,0.5] vs [1,-1,0]:
    #   mean x = 1/6, xc = [5/6,-7/6,2/6]; yc = [1,-1,0]; sum xc*yc = 2; sum xc^2 = 78/36; sum yc^2 = 2
    assert m["MAE"] == pytest.approx(0.5 / 3)
    assert m["Corr"] == pytest.approx(2 / math.sqrt(78 / 36 * 2))


# ----------------------------------------------------------------------------- weighted F1 vs sklearn


@pytest.mark.parametrize("seed", range(40))
def test_weighted_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    k = int(rng.integers(1, 5))
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    assert weighted_f1(y_true, y_pred) == pytest.approx(sk_weighted_f1(y_true, y_pred), abs=1e-12)
    b_true, b_pred = y_true > 0, rng.random(n) > 0.5
    assert weighted_f1(b_true, b_pred) == pytest.approx(sk_weighted_f1(b_true, b_pred), abs=1e-12)


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        ([True, True, True], [True, False, True]),     # class False absent from y_true
        ([True, False, True], [True, True, True]),     # class False absent from y_pred
        ([False, False], [False, False]),              # a single class on both sides -> 1
        ([True, True], [False, False]),                # all wrong, one class each side -> 0
        ([1, 1, 2, 2], [0, 0, 0, 0]),                  # y_pred only has a class y_true lacks
    ],
)
def test_weighted_f1_absent_class_matches_sklearn(y_true, y_pred):
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    assert weighted_f1(y_true, y_pred) == pytest.approx(sk_weighted_f1(y_true, y_pred), abs=1e-12)


# ----------------------------------------------------------------------------- MMSA definitions


def mmsa_mosi_reference(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Independent transcription of MMSA __eval_mosei_regression with sklearn and np.corrcoef."""
    def acc_k(bound):
        p, t = np.clip(pred, -bound, bound), np.clip(true, -bound, bound)
        return float(np.mean(np.round(p) == np.round(t)))

    nz = true != 0
    return {
        "Has0_acc_2": accuracy_score(true >= 0, pred >= 0),
        "Has0_F1_score": sk_weighted_f1(true >= 0, pred >= 0),
        "Non0_acc_2": accuracy_score(true[nz] > 0, pred[nz] > 0),
        "Non0_F1_score": sk_weighted_f1(true[nz] > 0, pred[nz] > 0),
        "Mult_acc_3": acc_k(1.0), "Mult_acc_5": acc_k(2.0), "Mult_acc_7": acc_k(3.0),
        "MAE": float(np.mean(np.abs(pred - true))),
        "Corr": float(np.corrcoef(pred, true)[0, 1]),
    }


def mmsa_sims_reference(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Independent transcription of MMSA __eval_sims_regression (explicit per-bin masks)."""
    pred, true = np.clip(pred, -1.0, 1.0), np.clip(true, -1.0, 1.0)

    def bins(x, edges):
        out = np.full(x.shape, -1)
        for i in range(len(edges) - 1):
            out[(x > edges[i]) & (x <= edges[i + 1])] = i
        return out

    e2, e3, e5 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    return {
        "Mult_acc_2": accuracy_score(bins(true, e2), bins(pred, e2)),
        "Mult_acc_3": accuracy_score(bins(true, e3), bins(pred, e3)),
        "Mult_acc_5": accuracy_score(bins(true, e5), bins(pred, e5)),
        "F1_score": sk_weighted_f1(bins(true, e2), bins(pred, e2)),
        "MAE": float(np.mean(np.abs(pred - true))),
        "Corr": float(np.corrcoef(pred, true)[0, 1]),
    }


@pytest.mark.parametrize("seed", range(20))
def test_mosi_matches_mmsa_definitions(seed):
    rng = np.random.default_rng(seed)
    n = 64
    true = rng.integers(-9, 10, n) / 3.0  # MOSEI-like labels: multiples of 1/3, zeros included
    pred = np.round(rng.normal(0, 1.8, n) * 4) / 4  # quarter steps: hits 0, ties at .5 and > 3
    m, ref = compute_metrics(pred, true), mmsa_mosi_reference(pred, true)
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", range(20))
def test_sims_matches_mmsa_definitions(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(-5, 6, 50) / 5.0  # SIMS labels in steps of 0.2
    pred = np.round(rng.normal(0, 0.8, 50), 1)  # one decimal: lands on the +-0.1 / +-0.7 edges
    m, ref = compute_metrics(pred, true, family="sims"), mmsa_sims_reference(pred, true)
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


# ----------------------------------------------------------------------------- API surface


def test_keys_types_and_inputs():
    pred, true = [0.4, -1.2, 2.2, 0.0], [1.0, -1.0, 2.0, 0.0]
    m = compute_metrics(np.array(pred), np.array(true))
    assert list(m) == METRIC_KEYS["mosi"]
    assert all(type(v) is float for v in m.values())
    # torch tensors, lists and (N, 1) columns give the same numbers
    assert compute_metrics(torch.tensor(pred, dtype=torch.float64).view(-1, 1), true) == m
    assert compute_metrics(pred, torch.tensor(true, dtype=torch.float64)) == m
    # bfloat16 outputs (mixed precision) are accepted; these values are exact in bfloat16
    m16 = compute_metrics(torch.tensor([0.5, -1.25]).bfloat16(), [1.0, -1.0])
    assert m16["MAE"] == pytest.approx((0.5 + 0.25) / 2)
    for family in ("mosi", "sims"):
        assert set(PRIMARY_METRICS[family]) <= set(METRIC_KEYS[family])
        assert all(METRIC_DESCRIPTIONS.get(k) for k in METRIC_KEYS[family])


@pytest.mark.parametrize(
    "pred, true, family, match",
    [
        ([0.1, 0.2], [0.1], "mosi", "pred has 2 values but true has 1"),
        ([], [], "mosi", "empty"),
        ([0.1, float("nan")], [0.1, 0.2], "mosi", "pred: 1 non-finite"),
        ([0.1, 0.2], [float("inf"), 0.2], "sims", "true: 1 non-finite"),
        ([[0.1, 0.2]], [[0.1, 0.2]], "mosi", "1-D"),
        ([0.1], [0.1], "mosei", "unknown family"),
        (["a"], [0.1], "mosi", "expected numbers"),
    ],
)
def test_invalid_inputs_raise(pred, true, family, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(pred, true, family=family)


def test_round_and_format():
    metrics = {"MAE": 0.123456, "Has0_acc_2": 0.87654321, "Corr": float("nan"), "Loss": 1.5}
    r = round_metrics(metrics)
    assert r["MAE"] == 0.1235 and r["Has0_acc_2"] == 0.8765 and math.isnan(r["Corr"])
    # known keys in METRIC_KEYS order first, unknown ones after
    assert format_metrics(metrics, digits=3) == "Has0_acc_2: 0.877 | MAE: 0.123 | Corr: nan | Loss: 1.500"
    sims = {"Corr": 0.5, "Mult_acc_5": 0.25, "Mult_acc_2": 0.75}
    assert format_metrics(sims, digits=2) == "Mult_acc_2: 0.75 | Mult_acc_5: 0.25 | Corr: 0.50"


# ----------------------------------------------------------------------------- binary family (logits)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_binary_by_hand():
    logits = [2.0, -1.0, 0.0, 3.0, -0.5, 1.0]
    labels = [1, 0, 1, 0, 0, 0]
    m = compute_metrics(logits, labels, family="binary")
    assert list(m) == METRIC_KEYS["binary"] and all(type(v) is float for v in m.values())
    # predicted class (logit > 0; a logit of 0 is class 0): [1, 0, 0, 1, 0, 1] -> right at 0, 1, 4
    assert m["Acc_2"] == pytest.approx(3 / 6)
    # class 1: support 2, tp 1 (0), fp 2 (3, 5), fn 1 (2) -> 2/(2+2+1) = 2/5
    # class 0: support 4, tp 2 (1, 4), fp 1 (2), fn 2 (3, 5) -> 4/(4+1+2) = 4/7
    assert m["F1_weighted"] == pytest.approx((2 * 2 / 5 + 4 * 4 / 7) / 6)  # 18/35
    assert m["F1_macro"] == pytest.approx((2 / 5 + 4 / 7) / 2)  # 17/35
    # positives score 2 and 0; negatives -1, 3, -0.5, 1: 2 beats three, 0 beats two -> 5 of 8 pairs
    assert m["AUC"] == pytest.approx(5 / 8)
    # -log sigmoid(x) = softplus(-x) for label 1, -log(1 - sigmoid(x)) = softplus(x) for label 0
    bce = (_softplus(-2) + _softplus(-1) + _softplus(0) + _softplus(3) + _softplus(-0.5) + _softplus(1)) / 6
    assert m["BCE"] == pytest.approx(bce, rel=1e-12)


def test_binary_auc_ties_count_half_and_single_class_is_nan():
    # positives {1, 2}, negatives {1, 0}: (1 vs 1) tie = 1/2, 1 > 0, 2 > 1, 2 > 0 -> 3.5 / 4
    assert compute_metrics([1.0, 1.0, 0.0, 2.0], [1, 0, 0, 1], "binary")["AUC"] == pytest.approx(0.875)
    assert roc_auc([5.0, 5.0, 5.0], [1, 0, 1]) == pytest.approx(0.5)
    m = compute_metrics([0.3, -0.2, 1.0], [1.0, 1.0, 1.0], "binary")
    assert math.isnan(m["AUC"])
    assert m["Acc_2"] == pytest.approx(2 / 3) and m["F1_macro"] == pytest.approx((0.8 + 0.0) / 2)
    np.testing.assert_allclose(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4, 1, 4, 2, 4])


def test_binary_bce_is_stable_for_huge_logits():
    m = compute_metrics([800.0, -800.0, 800.0], [0, 1, 1], "binary")
    assert m["BCE"] == pytest.approx((800.0 + 800.0 + 0.0) / 3)
    assert binary_cross_entropy_with_logits(np.array([0.0]), np.array([1])) == pytest.approx(math.log(2))


@pytest.mark.parametrize("seed", range(4))
def test_binary_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 57
    labels = rng.integers(0, 2, n)
    logits = np.round(rng.normal(0.4 * (2 * labels - 1), 1.5), 1)  # rounded: ties across classes occur
    logits[:3] = 0.0  # exact zeros are class 0
    m = compute_metrics(torch.tensor(logits).view(-1, 1), labels.astype(np.float32), "binary")
    y_hat = (logits > 0).astype(int)
    assert m["Acc_2"] == pytest.approx(accuracy_score(labels, y_hat))
    assert m["F1_weighted"] == pytest.approx(f1_score(labels, y_hat, average="weighted"))
    assert m["F1_macro"] == pytest.approx(f1_score(labels, y_hat, average="macro"))
    assert m["AUC"] == pytest.approx(roc_auc_score(labels, logits))
    assert m["BCE"] == pytest.approx(log_loss(labels, 1 / (1 + np.exp(-logits))), rel=1e-9)


def test_binary_one_sided_predictions_match_sklearn():
    labels, logits = [0, 1, 1, 0, 1], [-1.0, -2.0, -0.1, -3.0, -0.5]  # everything predicted 0
    m = compute_metrics(logits, labels, "binary")
    assert m["F1_weighted"] == pytest.approx(sk_weighted_f1(labels, [0] * 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        assert m["F1_macro"] == pytest.approx(f1_score(labels, [0] * 5, average="macro"))
    assert macro_f1(np.array([1, 1]), np.array([0, 0])) == 0.0  # only-true and only-predicted classes: F1 0


@pytest.mark.parametrize("labels, bad", [([0, 1, 0.5], "0.5 at index 2"), ([2, 1, 0], "2 at index 0"),
                                         ([0, -1, 1], "-1 at index 1")])
def test_binary_rejects_non_binary_labels(labels, bad):
    with pytest.raises(ValueError, match=f"true: binary labels must be 0 or 1, found {bad}"):
        compute_metrics([0.1, 0.2, 0.3], labels, "binary")


def test_binary_tables_and_formatting():
    assert set(PRIMARY_METRICS["binary"]) <= set(METRIC_KEYS["binary"])
    assert all(METRIC_DESCRIPTIONS.get(k) for k in METRIC_KEYS["binary"])
    assert "BCE" in LOWER_IS_BETTER and "Acc_2" not in LOWER_IS_BETTER
    assert format_metrics({"BCE": 0.5, "Acc_2": 0.75}, digits=2) == "Acc_2: 0.75 | BCE: 0.50"
