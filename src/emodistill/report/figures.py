"""The report's figures. Each function takes arrays and returns a ``Figure`` made by
:func:`emodistill.plots.new_figure` (matplotlib's object API on the Agg canvas: no pyplot global state, no
display); :func:`emodistill.plots.save_png` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emodistill.models.dmd.gd_unit import EDGE_NAMES
from emodistill.plots import new_figure
from emodistill.report.analysis import GD_MODALITIES

MODALITY_NAMES = {"l": "language (L)", "v": "vision (V)", "a": "audio (A)"}
"""Legend name of each one-letter modality (the DMD paper's names)."""
MODALITY_COLOURS = {"l": "#1f77b4", "v": "#2ca02c", "a": "#d62728"}


def _mark_best(ax, best_epoch: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if best_epoch:
        ax.axvline(best_epoch, color="0.5", ls="--", lw=1, label=f"best epoch {best_epoch}")


def curves_figure(history: list[dict[str, Any]], best_epoch: int | None):
    """Losses, validation metrics, loss terms and learning rate per epoch (4 panels)."""
    epochs = [r["epoch"] for r in history]
    fig = new_figure(11, 7.5)
    axes = fig.subplots(2, 2)

    def plot(ax, key, **kw):
        y = [r.get(key, np.nan) for r in history]
        ax.plot(epochs, y, marker="o", ms=3, **kw)

    ax = axes[0, 0]
    plot(ax, "train/loss", label="train loss (objective)")
    plot(ax, "valid/loss", label="valid loss (model selection)")
    _mark_best(ax, best_epoch)
    ax.set(title="Loss", xlabel="epoch")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    metric_keys = [k for k in history[-1] if k.startswith("valid/") and k not in ("valid/loss", "valid/MAE")]
    for k in metric_keys:
        plot(ax, k, label=k.split("/", 1)[1], lw=1)
    _mark_best(ax, best_epoch)
    ax.set(title="Validation metrics", xlabel="epoch")
    if metric_keys:
        ax.legend(fontsize=7, ncol=2)

    ax = axes[1, 0]
    term_keys = [k for k in history[-1] if k.startswith("train/") and k not in ("train/loss", "train/steps")]
    for k in term_keys:
        plot(ax, k, label=k.split("/", 1)[1], lw=1)
    if term_keys and all(r.get(k, 1) > 0 for r in history for k in term_keys):
        ax.set_yscale("log")
    _mark_best(ax, None)
    ax.set(title="Training loss terms", xlabel="epoch")
    if term_keys:
        ax.legend(fontsize=6, ncol=3)

    ax = axes[1, 1]
    plot(ax, "lr", color="k")
    _mark_best(ax, None)
    if all(r.get("lr", 0) > 0 for r in history):
        ax.set_yscale("log")
    ax.set(title="Learning rate", xlabel="epoch")
    return fig


def edge_evolution_figure(hist: dict[str, tuple[np.ndarray, np.ndarray]], best_epoch: int | None):
    """One panel per space, one line per GD edge (validation mean per epoch)."""
    spaces = list(hist)
    fig = new_figure(5.5 * len(spaces), 4)
    axes = np.atleast_1d(fig.subplots(1, len(spaces)))
    for ax, space in zip(axes, spaces, strict=True):
        epochs, w = hist[space]  # (E,), (E, 6)
        for x, name in enumerate(EDGE_NAMES):
            ax.plot(epochs, w[:, x], marker="o", ms=3, label=name)
        _mark_best(ax, best_epoch)
        ax.set(title=f"{space} GD-Unit edges", xlabel="epoch", ylabel="mean edge weight (validation)")
        ax.legend(fontsize=8, ncol=2)
    return fig


def edge_matrix_figure(mats: dict[str, np.ndarray], subtitle: str):
    """Annotated 3x3 heatmaps, rows = teacher, columns = student, empty diagonal."""
    spaces = list(mats)
    fig = new_figure(4.6 * len(spaces), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(spaces)))
    vmax = max(float(np.nanmax(m)) for m in mats.values())
    for ax, space in zip(axes, spaces, strict=True):
        m = mats[space]
        im = ax.imshow(np.ma.masked_invalid(m), cmap="Blues", vmin=0, vmax=vmax)
        ax.set_facecolor("0.9")
        for i in range(3):
            for j in range(3):
                text = "—" if np.isnan(m[i, j]) else f"{m[i, j]:.3f}"
                dark = not np.isnan(m[i, j]) and m[i, j] > 0.6 * vmax
                ax.text(j, i, text, ha="center", va="center", color="w" if dark else "k", fontsize=10)
        ax.set_xticks(range(3), GD_MODALITIES)
        ax.set_yticks(range(3), GD_MODALITIES)
        ax.set(xlabel="student (target)", ylabel="teacher (source)", title=f"{space} GD-Unit")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(subtitle, fontsize=9)
    return fig


def activations_figure(acts: dict[str, np.ndarray], labels: np.ndarray, space: str):
    """Heatmap per modality of dictionary activations (samples sorted by label x atoms)."""
    mods = list(acts)
    order = np.argsort(labels, kind="stable")
    # one colour scale for the space, so that modalities can be compared
    vmin = min(float(a.min()) for a in acts.values())
    vmax = max(float(a.max()) for a in acts.values())
    fig = new_figure(4.2 * len(mods), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(mods)))
    for ax, m in zip(axes, mods, strict=True):
        a = acts[m][order].reshape(len(order), -1)  # (N, K)
        im = ax.imshow(a, aspect="auto", cmap="magma", interpolation="nearest", vmin=vmin, vmax=vmax)
        ax.set(title=f"{space} / {MODALITY_NAMES.get(m, m)}", xlabel=f"atom (K = {a.shape[1]})",
               ylabel=f"test sample, sorted by label (label {labels.min():.2g} to {labels.max():.2g})")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def concept_atom_figure(mats: dict[str, np.ndarray], concept_names: Sequence[str], space: str,
                        scores: dict[str, dict]):
    """Heatmap per modality of ``P(top atom | planted concept)`` (concepts x the atoms any modality uses).

    Args:
        mats: per modality ``(C, K)`` from :func:`~emodistill.metrics.dictionary.concept_atom_matrix`.
        scores: per modality ``{"nmi", "purity"}`` for the panel titles.
    """
    mods = list(mats)
    used = np.flatnonzero(np.any([m.max(axis=0) > 0 for m in mats.values()], axis=0))  # atoms someone uses
    # columns ordered by the concept that uses each atom most (language's view first), so that a
    # one-to-one recovery shows as a diagonal
    first = mats[mods[0]][:, used]
    order = used[np.lexsort((-first.max(axis=0), first.argmax(axis=0)))]
    fig = new_figure(max(4.0, 0.25 * len(order) + 2.5) * len(mods), 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(mods)))
    for ax, m in zip(axes, mods, strict=True):
        im = ax.imshow(mats[m][:, order], aspect="auto", cmap="magma", interpolation="nearest", vmin=0, vmax=1)
        sc = scores.get(m, {})
        ax.set(title=f"{space} / {MODALITY_NAMES.get(m, m)}: NMI {sc.get('nmi', float('nan')):.2f}, "
                     f"purity {sc.get('purity', float('nan')):.2f}",
               xlabel=f"top atom ({len(order)} used of {mats[m].shape[1]})", ylabel="planted concept")
        ax.set_yticks(range(len(concept_names)), concept_names, fontsize=7)
        ax.set_xticks(range(len(order)), [str(k) for k in order], fontsize=6, rotation=90)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def embedding_figure(xy: np.ndarray, modality: Sequence[str], label_idx: np.ndarray,
                     class_names: Sequence[str], space: str, n_samples: int):
    """Two t-SNE panels of the same points: coloured by modality, and by label class."""
    import matplotlib

    fig = new_figure(11, 4.8)
    ax_m, ax_y = fig.subplots(1, 2)
    modality = np.asarray(modality)
    for m in dict.fromkeys(modality):
        sel = modality == m
        ax_m.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, color=MODALITY_COLOURS.get(m),
                     label=MODALITY_NAMES.get(m, m))
    ax_m.legend(fontsize=8, markerscale=2)
    ax_m.set_title(f"{space} features by modality")
    cmap = matplotlib.colormaps["viridis"].resampled(len(class_names))  # ordinal; no class near-white
    for c, name in enumerate(class_names):
        sel = label_idx == c
        if sel.any():
            ax_y.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, color=cmap(c), label=name)
    ax_y.legend(fontsize=7, markerscale=2, title="label class", title_fontsize=7)
    ax_y.set_title(f"{space} features by label")
    for ax in (ax_m, ax_y):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of {n_samples} test samples x {len(set(modality))} modalities", fontsize=9)
    return fig


def confusion_figure(counts: np.ndarray, class_names: Sequence[str], title: str):
    """Annotated count matrix, rows = true class, columns = predicted class."""
    n = len(class_names)
    fig = new_figure(1.2 + 0.75 * n, 0.9 + 0.7 * n)
    ax = fig.subplots()
    im = ax.imshow(counts, cmap="Blues")
    vmax = max(int(counts.max()), 1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=9,
                    color="w" if counts[i, j] > 0.6 * vmax else "k")
    ax.set_xticks(range(n), class_names, rotation=45 if max(map(len, class_names)) > 3 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def scatter_figure(label: np.ndarray, pred: np.ndarray, title: str):
    """Predicted vs true score with the identity line."""
    fig = new_figure(5, 5)
    ax = fig.subplots()
    ax.scatter(label, pred, s=10, alpha=0.6)
    lo = float(min(label.min(), pred.min()))
    hi = float(max(label.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="0.4", ls="--", lw=1, label="prediction = label")
    ax.set(xlabel="true label", ylabel="prediction", title=title, aspect="equal")
    ax.legend(fontsize=8)
    return fig


def binary_strip_figure(label: np.ndarray, logit: np.ndarray, title: str):
    """Logits per true class (jittered strip) with the decision threshold at 0."""
    fig = new_figure(5, 4.5)
    ax = fig.subplots()
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, size=len(label))  # fixed: same figure every time
    y = (np.asarray(label) >= 0.5).astype(float)
    ax.scatter(y + jitter, logit, s=10, alpha=0.6)
    ax.axhline(0.0, color="0.4", ls="--", lw=1, label="threshold (logit 0)")
    ax.set_xticks([0, 1], ["0", "1"])
    ax.set(xlabel="true label", ylabel="logit", title=title)
    ax.legend(fontsize=8)
    return fig
