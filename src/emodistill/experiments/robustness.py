"""Robustness curves: test metrics as one modality is removed, loses time steps, or gets noisier.

MultiBench's affect protocol (Liang et al., NeurIPS 2021 datasets track; docs/mmsa.md §7) is the
reference, without its defects: every perturbation is seeded (a generator per modality, kind and level,
so curves are reproducible and comparable across models), noise is scaled per feature by that feature's
spread instead of a per-sample offset, and no sample is ever dropped (a perturbed sample is still scored).

Perturbations of modality ``m`` on the evaluated split (all other modalities clean):

* ``missing`` (level 1): every feature of ``m`` is 0. For text with ``text_bert``, every token after
  ``[CLS]`` becomes padding (id 0, mask 0), so a fine-tuned BERT sees an empty utterance.
* ``drop`` (levels 0.1 … 0.9): each valid time step of ``m`` is zeroed with that probability (text with
  ``text_bert``: the word-piece positions between ``[CLS]`` and ``[SEP]`` become padding).
* ``noise`` (levels 0.1 … 2.0): Gaussian noise ``level * sd_j * N(0, 1)`` added to feature ``j`` at every
  valid time step, ``sd_j`` the feature's standard deviation over the split's valid steps. Token ids have
  no meaningful noise, so for a model that encodes ``text_bert`` with its own BERT the text noise curve is
  reported as not applicable rather than a flat line.

Summary: the **area under each curve**, the mean of the metric over the levels with the clean score at
level 0 (trapezoid rule on levels rescaled to [0, 1]): 1.0 for a perfect Acc-2 that never degrades,
comparable across models and data sets.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodistill.data.loader import BatchLoader
from emodistill.data.types import SplitData
from emodistill.io import write_json, write_text
from emodistill.metrics.scores import HEADLINE_METRICS, compute_metrics
from emodistill.metrics.stats import records_csv
from emodistill.spec import MODALITIES
from emodistill.training.loop import predict

LEVELS: dict[str, tuple[float, ...]] = {
    "missing": (1.0,),
    "drop": (0.1, 0.3, 0.5, 0.7, 0.9),
    "noise": (0.1, 0.3, 0.5, 1.0, 2.0),
}


def _valid_steps(split: SplitData, modality: str) -> np.ndarray:
    """(N, T) bool: the steps of ``modality`` that carry data (true lengths; text from its mask or rows)."""
    x = getattr(split, modality)
    n, t = x.shape[:2]
    if modality == "text":
        lengths = split.text_lengths()
    else:
        lengths = getattr(split, f"{modality}_lengths")
        lengths = np.full(n, t) if lengths is None else lengths
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def perturb(split: SplitData, modality: str, kind: str, level: float, seed: int) -> SplitData:
    """A perturbed copy of ``split`` (see the module docstring); the input is not modified."""
    if modality not in MODALITIES or kind not in LEVELS:
        raise ValueError(f"perturb: modality {modality!r} / kind {kind!r}; expected {MODALITIES} / {list(LEVELS)}")
    rng = np.random.default_rng([seed, MODALITIES.index(modality), list(LEVELS).index(kind), round(level * 1000)])
    out = copy.copy(split)
    x = getattr(split, modality).copy()  # (N, T, D)
    valid = _valid_steps(split, modality)  # (N, T)
    tb = split.text_bert.copy() if (modality == "text" and split.text_bert is not None) else None
    if kind == "missing":
        x[:] = 0.0
        if tb is not None:
            tb[:, 0, 1:] = 0.0  # ids after [CLS] -> padding
            tb[:, 1, 1:] = 0.0
    elif kind == "drop":
        dropped = valid & (rng.random(valid.shape) < level)  # (N, T)
        if tb is not None:
            n_tok = tb[:, 1].sum(axis=1).astype(int)  # (N,) real tokens incl. [CLS]/[SEP]
            inner = (np.arange(tb.shape[2])[None, :] >= 1) & (np.arange(tb.shape[2])[None, :] < n_tok[:, None] - 1)
            dropped &= inner  # (N, T_l): keep [CLS] and [SEP] so the sequence stays well formed
            tb[:, 0][dropped] = 0.0
            tb[:, 1][dropped] = 0.0
        x[dropped] = 0.0
    else:  # noise
        sd = x[valid].std(axis=0) if valid.any() else np.zeros(x.shape[2])  # (D,)
        noise = rng.standard_normal(x.shape).astype(np.float32) * (level * sd).astype(np.float32)
        x = np.where(valid[..., None], x + noise, x).astype(np.float32)
    setattr(out, modality, x.astype(np.float32))
    if tb is not None:
        out.text_bert = tb
    return out


def uses_own_text_encoder(model: torch.nn.Module) -> bool:
    """True if the model reads ``text_bert`` through its own encoder (then text noise is not applicable)."""
    return getattr(getattr(model, "config", None), "text_encoder", None) is not None


def robustness_curves(
    model: torch.nn.Module,
    split: SplitData,
    family: str,
    *,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """Metrics on the clean split and on every perturbation: one row per (modality, kind, level)."""

    def score(s: SplitData) -> dict[str, float]:
        pred = predict(model, BatchLoader(s, batch_size, shuffle=False, device=device))
        return {"loss": pred.loss, **compute_metrics(pred.prediction, pred.label, family)}

    clean = score(split)
    rows = [{"modality": "all", "kind": "clean", "level": 0.0, **clean}]
    for m in MODALITIES:
        for kind, levels in LEVELS.items():
            for level in levels:
                if kind == "noise" and m == "text" and uses_own_text_encoder(model):
                    rows.append({"modality": m, "kind": kind, "level": level, "not_applicable": True})
                    continue
                rows.append({"modality": m, "kind": kind, "level": level, **score(perturb(split, m, kind, level,
                                                                                          seed))})
    return rows


def curve_areas(rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{"<modality>/<kind>": {metric: area}}``: trapezoid over [0] + levels (rescaled to [0, 1]) with the
    clean score at 0, i.e. the mean metric along the curve."""
    clean = next(r for r in rows if r["kind"] == "clean")
    out: dict[str, dict[str, float]] = {}
    for m in MODALITIES:
        for kind in LEVELS:
            curve = [r for r in rows if r["modality"] == m and r["kind"] == kind and not r.get("not_applicable")]
            if not curve:
                continue
            xs = np.array([0.0] + [r["level"] for r in curve]) / max(r["level"] for r in curve)
            out[f"{m}/{kind}"] = {
                k: _trapezoid(np.array([clean[k]] + [r[k] for r in curve]), xs) for k in metrics if k in clean
            }
    return out


def _trapezoid(ys: np.ndarray, xs: np.ndarray) -> float:
    return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2)


def areas_markdown(areas: dict[str, dict[str, float]], metrics: tuple[str, ...], title: str) -> str:
    lines = [f"{title}: area under each robustness curve (mean metric over levels, clean at 0)", "",
             "| curve | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, vals in areas.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[k]:.4f}" if k in vals else "n/a" for k in metrics) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """One panel per kind (drop, noise; missing as points at level 1), a line per modality."""
    from emodistill.plots import new_figure, save_png

    clean = next(r for r in rows if r["kind"] == "clean")[metric]
    fig = new_figure(4 * len(LEVELS), 3.4)
    axes = fig.subplots(1, len(LEVELS), squeeze=False)[0]
    for ax, kind in zip(axes, LEVELS, strict=True):
        for i, m in enumerate(MODALITIES):
            curve = [r for r in rows if r["modality"] == m and r["kind"] == kind and not r.get("not_applicable")]
            if curve:
                ax.plot([0.0] + [r["level"] for r in curve], [clean] + [r[metric] for r in curve], "o-",
                        color=f"C{i}", label=m)
        ax.set_title(kind)
        ax.set_xlabel("level")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    save_png(fig, path)


def plot_areas(areas_by_model: dict[str, dict[str, dict[str, float]]], metric: str, path: Path) -> None:
    """Grouped bars: area under each curve per model (the cross-model summary figure)."""
    from emodistill.plots import new_figure, save_png

    curves = sorted({c for a in areas_by_model.values() for c in a})
    models = list(areas_by_model)
    width = 0.8 / max(len(models), 1)
    fig = new_figure(max(6, 0.9 * len(curves) + 2), 3.6)
    ax = fig.subplots()
    for i, model in enumerate(models):
        ys = [areas_by_model[model].get(c, {}).get(metric, np.nan) for c in curves]
        ax.bar(np.arange(len(curves)) + i * width - 0.4 + width / 2, ys, width, label=model)
    ax.set_xticks(range(len(curves)), curves, rotation=45, ha="right")
    ax.set_ylabel(f"area under {metric} curve")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_png(fig, path)


def default_robustness_dir(checkpoint: str | Path, split: str) -> Path:
    """Where the robustness files of ``checkpoint`` on ``split`` go: ``<checkpoint's folder>/robustness-<split>``
    (a run directory's ``robustness-test/``)."""
    return Path(checkpoint).parent / f"robustness-{split}"


def write_robustness(
    model: torch.nn.Module,
    split: SplitData,
    spec,
    out_dir: str | Path,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    title: str = "",
) -> str:
    """Compute the curves and write ``robustness.{csv,json,md}``, ``robustness_<metric>.png`` and
    ``robustness_areas.png`` into ``out_dir``; returns the Markdown summary."""
    out_dir = Path(out_dir)
    metrics = HEADLINE_METRICS[spec.metric_family]
    rows = robustness_curves(model, split, spec.metric_family, seed=seed, batch_size=batch_size, device=device)
    areas = curve_areas(rows, metrics)
    md = areas_markdown(areas, metrics, title or "robustness")
    write_text(out_dir / "robustness.csv", records_csv(rows))
    write_json(out_dir / "robustness.json", {"seed": seed, "levels": LEVELS, "rows": rows, "areas": areas})
    write_text(out_dir / "robustness.md", md)
    try:
        for k in metrics:
            plot_curves(rows, k, out_dir / f"robustness_{k}.png", title)
        plot_areas({title or "model": areas}, metrics[0], out_dir / "robustness_areas.png")
    except ImportError:  # matplotlib is the optional `report` extra
        md += "\n(plots skipped: matplotlib is not installed)\n"
    return md

