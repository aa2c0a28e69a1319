"""Tests for emodistill.metrics.stats: hand-computed summaries and published t-table values."""

from __future__ import annotations

import math

import pytest

from emodistill.metrics.stats import betainc, format_summary, summarize, summary_to_rows, t_ppf

NAN = float("nan")


@pytest.mark.parametrize(
    "p, df, table",
    [
        (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 4, 2.7764),
        (0.975, 9, 2.2622), (0.975, 30, 2.0423), (0.995, 10, 3.1693), (0.95, 5, 2.0150),
        (0.90, 3, 1.6377), (0.95, 120, 1.6577),
    ],
)
def test_t_ppf_matches_t_table(p, df, table):
    assert t_ppf(p, df) == pytest.approx(table, abs=1e-3)
    assert t_ppf(1 - p, df) == pytest.approx(-table, abs=1e-3)  # symmetry


@pytest.mark.parametrize("p", [0.51, 0.6, 0.75, 0.9, 0.975, 0.999, 0.999999])
def test_t_ppf_closed_forms(p):
    # df = 1 is the Cauchy distribution: t = tan(pi (p - 1/2))
    assert t_ppf(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    # df = 2: t = (2p - 1) / sqrt(2 p (1 - p))
    assert t_ppf(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_ppf_edges_and_limits():
    assert t_ppf(0.5, 7) == 0.0
    assert t_ppf(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)  # normal limit
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="probability"):
            t_ppf(bad, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_ppf(0.9, 0)


def test_t_ppf_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 15, 29, 100, 2.5):
        for p in (0.55, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995):
            assert t_ppf(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-9)


def test_betainc_known_values():
    # I_x(1, 1) = x;  I_x(a, 1) = x^a;  I_x(1, b) = 1 - (1-x)^b;  I_{1/2}(a, a) = 1/2
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)
    assert betainc(2.5, 1, 0.4) == pytest.approx(0.4**2.5)
    assert betainc(1, 3, 0.2) == pytest.approx(1 - 0.8**3)
    assert betainc(7.3, 7.3, 0.5) == pytest.approx(0.5)
    assert betainc(2, 3, 0.0) == 0.0 and betainc(2, 3, 1.0) == 1.0


def test_summarize_hand_computed():
    runs = [
        {"acc": 1.0, "mae": 0.8, "only_some": 1.0},
        {"acc": 2.0, "mae": 0.9},
        {"acc": 3.0, "mae": NAN},
        {"acc": 4.0, "mae": 0.7},
        {"acc": 5.0, "mae": 0.6},
    ]
    s = summarize(runs)
    assert list(s) == ["acc", "mae"]  # a key missing from some runs is left out
    # acc: mean 3; squared deviations 4+1+0+1+4 = 10; var 10/4 = 2.5; std sqrt(2.5)
    #      half-width t_{.975,4} * std / sqrt(5) = 2.776445 * 1.581139 / 2.236068 = 1.963243
    a = s["acc"]
    assert a["n"] == 5 and a["mean"] == pytest.approx(3.0) and a["std"] == pytest.approx(math.sqrt(2.5))
    assert a["ci_low"] == pytest.approx(3.0 - 1.963243, abs=1e-5)
    assert a["ci_high"] == pytest.approx(3.0 + 1.963243, abs=1e-5)
    # mae: NaN dropped -> n 4; mean 0.75; squared deviations .0025+.0225+.0225+.0025 = .05;
    #      var .05/3; half-width t_{.975,3} * std / 2 = 3.182446 * 0.1290994 / 2 = 0.205427
    b = s["mae"]
    assert b["n"] == 4 and b["mean"] == pytest.approx(0.75)
    assert b["std"] == pytest.approx(math.sqrt(0.05 / 3))
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((0.75 - 0.205427, 0.75 + 0.205427), abs=1e-5)
    assert a["confidence"] == 0.95


def test_summarize_confidence_level():
    s = summarize([{"x": v} for v in (1.0, 2.0, 3.0, 4.0, 5.0)], confidence=0.90)
    # t_{.95,4} = 2.131847; half-width 2.131847 * sqrt(2.5) / sqrt(5) = 2.131847 / sqrt(2) = 1.507443
    assert s["x"]["ci_high"] - 3.0 == pytest.approx(1.507443, abs=1e-5)


def test_summarize_small_and_degenerate():
    single = summarize([{"x": 0.42}])["x"]
    assert single["n"] == 1 and single["mean"] == 0.42
    assert math.isnan(single["std"]) and math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
    empty = summarize([{"x": NAN}, {"x": NAN}])["x"]
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["std"])
    const = summarize([{"x": 0.5}] * 3)["x"]
    assert const["std"] == 0.0 and const["ci_low"] == const["ci_high"] == 0.5


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError, match="no runs"):
        summarize([])
    with pytest.raises(ValueError, match="confidence"):
        summarize([{"x": 1.0}], confidence=95)
    with pytest.raises(ValueError, match="'x'"):
        summarize([{"x": "high"}])


def test_format_summary_and_rows():
    s = summarize([{"acc": 0.80, "MAE": 0.75}, {"acc": 0.84, "MAE": 0.71}])
    # acc: mean 0.82, std sqrt((0.02^2 + 0.02^2)/1) = 0.0282843; MAE: mean 0.73, std 0.0282843
    assert format_summary(s) == {"acc": "0.82 ± 0.03", "MAE": "0.73 ± 0.03"}
    assert format_summary(s, keys=["MAE", "acc"], digits=3, scale={"acc": 100}) == {
        "MAE": "0.730 ± 0.028", "acc": "82.000 ± 2.828"}
    assert list(format_summary(s, keys=["MAE"])) == ["MAE"]
    with pytest.raises(KeyError, match="Corr"):
        format_summary(s, keys=["Corr"])
    rows = summary_to_rows(s)
    assert [r["metric"] for r in rows] == ["acc", "MAE"]
    assert rows[0]["mean"] == pytest.approx(0.82) and rows[0]["n"] == 2
    assert set(rows[0]) == {"metric", "mean", "std", "n", "ci_low", "ci_high", "confidence"}


def test_paired_differences_hand_computed():
    from emodistill.metrics.stats import paired_cell, paired_differences

    runs = [{"Acc": 0.50, "MAE": 0.60}, {"Acc": 0.52, "MAE": 0.61}, {"Acc": 0.47, "MAE": 0.66}]
    ref = [{"Acc": 0.48, "MAE": 0.62}, {"Acc": 0.49, "MAE": 0.60}, {"Acc": 0.48, "MAE": 0.62}]
    # Acc differences (.02, .03, -.01): mean 4/300, sample variance ((.02-.04/3)^2 + ...)/2
    d = [0.02, 0.03, -0.01]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2} from a t table
    out = paired_differences(runs, ref, ["Acc", "MAE"], lower_is_better=frozenset({"MAE"}))
    assert out["Acc"]["mean"] == pytest.approx(mean) and out["Acc"]["std"] == pytest.approx(sd)
    assert out["Acc"]["ci_low"] == pytest.approx(mean - half) and out["Acc"]["ci_high"] == pytest.approx(mean + half)
    assert out["Acc"]["better"] == 2  # higher accuracy in seeds 1 and 2
    assert out["MAE"]["better"] == 1  # MAE differences (-.02, +.01, +.04): lower only in seed 1
    assert paired_cell(out["MAE"]).endswith("(better in 1/3)")
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_differences(runs, ref[:2], ["Acc"])
