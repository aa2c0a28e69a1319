"""Multi-seed summaries: mean, sample standard deviation and Student-t confidence intervals.

MMSA publishes only the mean over seeds 1111-1115 (``docs/mmsa.md`` §5) and DMD reports single
runs; this module gives mean +- sample std (ddof=1) and confidence intervals instead (``docs/mmsa.md`` §5).
The interval is ``mean +- t_{(1+c)/2, n-1} * std / sqrt(n)``. The t quantile is computed here without
scipy, by bisection on the t CDF, which is expressed through the regularized incomplete beta
function evaluated with its continued fraction (Lentz's method; Numerical Recipes §6.4).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

_EPS = 1e-16
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step d_{2m}
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd step d_{2m+1}
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise RuntimeError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc: need a > 0, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # the continued fraction converges fast only on this side; use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t distribution with ``df`` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"t_sf: degrees of freedom must be > 0, got {df}")
    # P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)
    two_sided = betainc(df / 2.0, 0.5, df / (df + t * t))
    return 0.5 * two_sided if t >= 0 else 1.0 - 0.5 * two_sided


def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t distribution: the t with P(T <= t) = p.

    Args:
        p: probability in (0, 1), e.g. 0.975 for a two-sided 95% interval.
        df: degrees of freedom (> 0, need not be an integer).

    Returns:
        The quantile, accurate to about 1e-12 relative.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: probability must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"t_ppf: degrees of freedom must be > 0, got {df}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    q = 1.0 - p  # target upper tail; t_sf is decreasing in t on [0, inf)
    if q == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def summarize(runs: Sequence[Mapping[str, float]], confidence: float = 0.95) -> dict[str, dict]:
    """Summarize one metric dict per seed into mean, spread and a confidence interval.

    Args:
        runs: one ``{metric: value}`` dict per run (e.g. per seed), as ``compute_metrics`` returns.
        confidence: two-sided coverage of the Student-t interval, in (0, 1).

    Returns:
        For each key present in every run (in the first run's order):
        ``{"mean", "std", "n", "ci_low", "ci_high", "confidence"}``. NaN values are left out, so ``n``
        counts the finite values used. ``std`` is the sample std (ddof=1); it and the interval are
        NaN when n < 2, and everything but ``n`` is NaN when n == 0.
    """
    if not runs:
        raise ValueError("summarize: no runs given")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"summarize: confidence must be in (0, 1), got {confidence}")
    keys = [k for k in runs[0] if all(k in run for run in runs[1:])]
    summary: dict[str, dict] = {}
    for key in keys:
        try:
            values = [float(run[key]) for run in runs]
        except (TypeError, ValueError) as err:
            raise ValueError(f"summarize: metric {key!r} has a non-numeric value") from err
        values = [v for v in values if not math.isnan(v)]
        n = len(values)
        mean = math.fsum(values) / n if n else math.nan
        std = ci_low = ci_high = math.nan
        if n >= 2:
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
            half = t_ppf(0.5 * (1.0 + confidence), n - 1) * std / math.sqrt(n)
            ci_low, ci_high = mean - half, mean + half
        summary[key] = {"mean": mean, "std": std, "n": n, "ci_low": ci_low, "ci_high": ci_high,
                        "confidence": confidence}
    return summary


def format_summary(
    summary: Mapping[str, Mapping],
    keys: Sequence[str] | None = None,
    digits: int = 2,
    scale: float | Mapping[str, float] = 1.0,
) -> dict[str, str]:
    """Render ``"mean ± std"`` strings, e.g. ``{"Non0_acc_2": "83.12 ± 0.41"}``.

    Args:
        summary: output of :func:`summarize`.
        keys: metrics to render, in this order; all of ``summary`` by default.
        digits: decimals after the point.
        scale: factor applied to mean and std, either one number for all keys or a per-key mapping
            (keys it lacks get 1), e.g. 100 for accuracies as papers print them and 1 for MAE.
    """
    keys = list(summary) if keys is None else list(keys)
    missing = [k for k in keys if k not in summary]
    if missing:
        raise KeyError(f"format_summary: {missing} not in the summary (has {list(summary)})")
    out = {}
    for k in keys:
        s = scale.get(k, 1.0) if isinstance(scale, Mapping) else scale
        out[k] = f"{summary[k]['mean'] * s:.{digits}f} ± {summary[k]['std'] * s:.{digits}f}"
    return out


def summary_to_rows(summary: Mapping[str, Mapping]) -> list[dict]:
    """Flatten a summary into one dict per metric (``{"metric": key, "mean": ..., ...}``) for CSV/JSON."""
    return [{"metric": key, **stats} for key, stats in summary.items()]


def summary_cell(s: dict) -> str:
    """``mean ± std [ci_low, ci_high]`` of one :func:`summarize` entry (the mean alone for one seed)."""
    if math.isnan(s["std"]):
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"


def grid_markdown(title: str, row_name: str, rows: dict[str, tuple[str, dict]], keys: list[str],
                  seeds: list[int]) -> str:
    """Markdown table of several summaries: ``rows`` maps a row name to ``(description, summary)``."""
    lines = [
        f"{title}: test metrics over seeds {seeds} (mean ± sample std [95% t-interval]); "
        "selection on the validation split.",
        "",
        f"| {row_name} | description | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name, (description, summary) in rows.items():
        cells = [summary_cell(summary[k]) if k in summary else "n/a" for k in keys]
        lines.append(f"| {name} | {description} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grid_csv(row_name: str, rows: dict[str, tuple[str, dict]], keys: list[str]) -> str:
    """CSV of several summaries: ``rows`` maps a row name to ``(model, summary)``; columns ``row_name, model,
    n_seeds`` and ``<metric>_{mean,std,ci95_low,ci95_high}``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([row_name, "model", "n_seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "std", "ci95_low",
                                                                                    "ci95_high")])
    for name, (model, summary) in rows.items():
        n = max((summary[k]["n"] for k in keys if k in summary), default=0)
        row: list = [name, model, n]
        for k in keys:
            s = summary.get(k)
            row += [s["mean"], s["std"], s["ci_low"], s["ci_high"]] if s else ["", "", "", ""]
        w.writerow(row)
    return buf.getvalue()


def records_csv(rows: list[dict]) -> str:
    """CSV of flat dicts; the columns are every key, in first-seen order (missing cells empty)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def summary_csv(summary: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "mean", "std", "n", "ci95_low", "ci95_high"])
    for k, s in summary.items():
        w.writerow([k, s["mean"], s["std"], s["n"], s["ci_low"], s["ci_high"]])
    return buf.getvalue()


def summary_markdown(summary: dict[str, dict], seeds: list[int]) -> str:
    lines = [f"Test metrics over seeds {seeds} (mean ± sample std, 95% t-interval)", "",
             "| metric | mean ± std | 95% CI |", "|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['mean']:.4f} ± {s['std']:.4f} | [{s['ci_low']:.4f}, {s['ci_high']:.4f}] |")
    return "\n".join(lines) + "\n"


def paired_differences(
    runs: Sequence[Mapping[str, float]], reference: Sequence[Mapping[str, float]], keys: Sequence[str],
    lower_is_better: frozenset[str] = frozenset(), confidence: float = 0.95,
) -> dict[str, dict]:
    """Per-seed differences ``run - reference`` (the same seeds, in the same order) summarised as
    :func:`summarize` does (mean, sample std, t-interval: a paired t-interval), plus ``better``: the number
    of seeds where the run beats the reference (lower for ``lower_is_better`` keys, else higher).

    Raises:
        ValueError: the two lists differ in length (not the same seeds).
    """
    if len(runs) != len(reference):
        raise ValueError(f"paired_differences: {len(runs)} runs against {len(reference)} reference runs; "
                         "pair them by seed")
    keys = [k for k in keys if all(k in r for r in runs) and all(k in r for r in reference)]
    diffs = [{k: float(r[k]) - float(ref[k]) for k in keys} for r, ref in zip(runs, reference, strict=True)]
    out = summarize(diffs, confidence) if diffs else {}
    for k in keys:
        sign = -1.0 if k in lower_is_better else 1.0
        out[k]["better"] = sum(1 for d in diffs if sign * d[k] > 0)
    return out


def paired_cell(s: dict) -> str:
    """``+mean [low, high] (better in b/n)`` of one :func:`paired_differences` entry."""
    if math.isnan(s["std"]):
        return f"{s['mean']:+.4f} (better in {s['better']}/{s['n']})"
    return f"{s['mean']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}] (better in {s['better']}/{s['n']})"


def paired_markdown(row_name: str, paired: dict[str, dict], keys: list[str], reference: str,
                    seeds: list[int]) -> str:
    """Markdown table of :func:`paired_differences` per row (an ablation variant or a compared model)."""
    lines = [f"Paired differences, {row_name} - {reference}, over seeds {seeds}: mean [95% paired t-interval] "
             f"(seeds where the {row_name} is better).", "",
             f"| {row_name} | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, diff in paired.items():
        lines.append(f"| {name} | " + " | ".join(paired_cell(diff[k]) if k in diff else "n/a" for k in keys) + " |")
    return "\n".join(lines) + "\n"
