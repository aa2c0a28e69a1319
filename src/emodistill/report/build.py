"""``write_report``: collect a run's numbers, draw the figures, write the page, atomically.

The report is built in a temporary folder beside the target and renamed into place at the end, so an
interrupted or failed report never leaves a half-written folder (an older report at the target stays
until the new one is complete). Besides ``index.html`` and the PNGs it writes ``report_data.json``: the
numbers each figure draws (edge matrices, per-epoch edges, confusion counts), for checking and reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from emodistill import __version__
from emodistill.data.synth_concepts import CONCEPTS
from emodistill.metrics import dictionary as D
from emodistill.models.dmd.model import MODS as DMD_MODALITIES
from emodistill.plots import require_matplotlib, save_png
from emodistill.report import analysis as A
from emodistill.report import figures as F
from emodistill.report.collect import (
    RunFiles,
    TestPredictions,
    collect_interpretation,
    find_runs,
    load_model,
    load_test_split,
    read_run,
)
from emodistill.report.html import FigureItem, Section, render_page, rows_table
from emodistill.spec import is_binary_task

SPACE_ORDER = ("homo", "hetero")
MOD_ORDER = DMD_MODALITIES  # l, v, a
SPACE_NAMES = {"homo": "homogeneous (modality-irrelevant, shared)", "hetero": "heterogeneous (modality-exclusive)"}
MAX_HEATMAP_ROWS = 400


def write_reports(path: str | Path, out_dir: str | Path | None = None, **kwargs: Any) -> list[Path]:
    """:func:`write_report` for a run directory, or for each ``seed-*`` run of a multi-seed root.

    For a root, each seed's report goes to ``SEED_DIR/report`` or, with ``out_dir``, ``out_dir/SEED``.
    """
    path = Path(path)
    runs = find_runs(path)
    if runs == [path]:
        return [write_report(path, out_dir, **kwargs)]
    return [write_report(r, Path(out_dir) / r.name if out_dir else None, **kwargs) for r in runs]


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    max_points: int = 1500,
    device: str = "cpu",
    data: str | None = None,
    batch_size: int = 64,
) -> Path:
    """Write the interpretability report of one run directory.

    Args:
        run_dir: a run directory written by :func:`emodistill.training.fit.fit` (not a multi-seed root;
            see :func:`write_reports`).
        out_dir: output folder (default ``run_dir/report``); replaced if it holds an older report.
        max_points: at most this many points per t-SNE panel (test samples x modalities).
        device: where the model runs ("cpu", "cuda", "auto", ...).
        data: data source to use instead of the one in ``config.yaml`` (e.g. the file moved).
        batch_size: test batch size for the model pass.

    Returns:
        The output folder; the page is ``out_dir/index.html``.
    """
    require_matplotlib()
    run = read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "report"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise FileExistsError(f"{out}: exists and is not an emodistill report folder; choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _build(run, tmp, max_points=max_points, device=device, data=data, batch_size=batch_size)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; an existing ``out`` is moved aside first and removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _space_rank(space: str) -> tuple[int, str]:
    return (SPACE_ORDER.index(space) if space in SPACE_ORDER else len(SPACE_ORDER), space)


def _group(named: dict[str, np.ndarray], prefix: str) -> dict[str, dict[str, np.ndarray]]:
    """``{"features/homo/l": x}`` -> ``{"homo": {"l": x}}`` for one prefix, known spaces/modalities first."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in named.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == prefix:
            out.setdefault(parts[1], {})[parts[2]] = value
    mod_rank = lambda m: (MOD_ORDER.index(m) if m in MOD_ORDER else len(MOD_ORDER), m)  # noqa: E731
    return {s: {m: out[s][m] for m in sorted(out[s], key=mod_rank)} for s in sorted(out, key=_space_rank)}


def _build(run: RunFiles, out: Path, *, max_points: int, device: str, data: str | None, batch_size: int) -> None:
    from emodistill.training.loop import resolve_device

    notes = list(run.notes)
    named: dict[str, np.ndarray] = {}
    labels = None
    predictions = run.predictions
    model_note = None
    split, data_note = load_test_split(run, data)
    if data_note:
        notes.append(data_note)
    if split is not None:
        model, model_note = load_model(run, resolve_device(device))
        if model is not None:
            named, model_pred = collect_interpretation(model, split, batch_size, resolve_device(device))
            labels = model_pred.label
            if predictions is None:
                predictions = model_pred
                notes.append("test_predictions.csv is missing: test predictions were recomputed from best.ckpt.")
        elif model_note:
            notes.append(model_note)
    # None when the model ran over the test split; otherwise the reason, for the sections that need it
    why_no_model = None if labels is not None else (data_note or model_note or "the model was not run")
    record: dict[str, Any] = {"emodistill": __version__, "run_dir": str(run.run_dir)}
    best_epoch = (run.results or {}).get("best_epoch") or (run.history[-1].get("best_epoch") if run.history else None)

    sections = [
        _curves_section(run, out, best_epoch),
        _edges_section(run, out, named, best_epoch, why_no_model, record),
        _activations_section(out, named, labels, why_no_model, record,
                             getattr(split, "concepts", None) if labels is not None else None),
        _embedding_section(run, out, named, labels, max_points, why_no_model, record),
        _predictions_section(run, predictions, out, record),
    ]
    record["notes"] = notes + [n for s in sections for n in s.notes]
    results = run.results or {}
    dp = run.config.get("data_provenance") or {}
    spec = run.spec
    recorded_source = (run.config.get("data") or {}).get("source", "?")
    header = {
        "model": run.model_name,
        "data": f"{data} (given; the run recorded {recorded_source})" if data else recorded_source,
        "data set": f"{spec.name} ({'aligned' if spec.aligned else 'unaligned'}), task {run.task}" if spec else "?",
        "SHA-256": dp.get("sha256") or "n/a",
        "seed": run.config.get("seed", (run.config.get("train") or {}).get("seed", "?")),
        "best epoch": f"{best_epoch} of {results.get('epochs_run', len(run.history))}"
        + (f" (stopped by {results['stopped_by']})" if results.get("stopped_by") else ""),
        "test samples": len(predictions.label) if predictions is not None else "n/a",
        "run directory": str(run.run_dir),
        "report by": f"emodistill {__version__}",
    }
    title = f"emodistill report: {run.model_name} on {Path(str(data or recorded_source)).name}"
    (out / "index.html").write_text(render_page(title, header, run.results, sections, notes))
    (out / "report_data.json").write_text(json.dumps(record, indent=1, allow_nan=True) + "\n")


def _save(fig, out: Path, name: str, alt: str, caption: str) -> FigureItem:
    save_png(fig, out / name)
    return FigureItem(name, alt, caption)


def _curves_section(run: RunFiles, out: Path, best_epoch: int | None) -> Section:
    s = Section("Training curves", "curves")
    if not run.history:
        s.notes.append("metrics.jsonl is empty (no epoch finished): no training curves.")
        return s
    s.figures.append(_save(
        F.curves_figure(run.history, best_epoch), out, "curves.png",
        "Training curves: train and validation loss, validation metrics, loss terms and learning rate per epoch",
        "Per epoch: training objective and validation loss (the model-selection criterion), validation metrics, "
        "each training loss term (sample-weighted epoch mean) and the learning rate. Dashed: the selected epoch."))
    return s


def _edges_section(run: RunFiles, out: Path, named: dict[str, np.ndarray], best_epoch: int | None,
                   why_no_model: str | None, record: dict[str, Any]) -> Section:
    s = Section("GD-Unit edges", "edges")
    hist = A.edge_history(run.history)
    test_edges = {k.split("/", 1)[1]: v for k, v in named.items() if k.startswith("edges/")}
    test_edges = {sp: test_edges[sp] for sp in sorted(test_edges, key=_space_rank)}
    if test_edges:
        means = {sp: e.mean(axis=0) for sp, e in test_edges.items()}  # (N, 6) -> (6,)
        n = next(iter(test_edges.values())).shape[0]
        source = f"mean over the {n} test samples (best.ckpt)"
    elif best_epoch and any(best_epoch in ep for ep, _ in hist.values()):
        means = {sp: w[list(ep).index(best_epoch)] for sp, (ep, w) in hist.items() if best_epoch in ep}
        source = f"validation mean at the selected epoch {best_epoch}, from metrics.jsonl"
        if why_no_model:
            s.notes.append(f"Test-set edge means need the model and the data: {why_no_model}")
    else:
        means, source = {}, ""
    if means:
        mats = {sp: A.edge_matrix(v) for sp, v in means.items()}
        record["edge_matrix"] = {"source": source, "rows": "teacher", "cols": "student",
                                 "modalities": list(A.GD_MODALITIES),
                                 "matrix": {sp: np.where(np.isnan(m), None, m).tolist() for sp, m in mats.items()}}
        s.figures.append(_save(
            F.edge_matrix_figure(mats, source), out, "edge_matrix.png",
            "GD-Unit edge weight matrices, teacher modality in rows and student modality in columns",
            f"Edge weights of the graph distillation units, {source}. Row = teacher (source), column = "
            "student (target); each sample's 6 edges sum to 1 (one softmax per unit)."))
    else:
        s.notes.append("This model has no GD-Units (no edges in metrics.jsonl or from interpret()): "
                       "no edge matrix.")
    if hist:
        record["edge_history"] = {sp: {"epoch": ep.tolist(), "edges": dict(zip(A.EDGE_NAMES, w.T.tolist(),
                                                                             strict=True))}
                                  for sp, (ep, w) in hist.items()}
        s.figures.append(_save(
            F.edge_evolution_figure(hist, best_epoch), out, "edges_epochs.png",
            "GD-Unit edge weights per training epoch, one line per directed edge, one panel per space",
            "How the distillation graph evolves during training: validation mean of each edge "
            "(teacher -> student) after every epoch."))
    elif test_edges:
        s.notes.append("metrics.jsonl logs no per-epoch edges (a run from an older emodistill): no evolution plot.")
    return s


def _activations_section(out: Path, named: dict[str, np.ndarray], labels: np.ndarray | None,
                         why_no_model: str | None, record: dict[str, Any], concepts: np.ndarray | None) -> Section:
    s = Section("Dictionary activations", "dictionary")
    acts = _group(named, "activations")
    if not acts:
        s.notes.append(
            f"Skipped: {why_no_model}" if why_no_model else
            "This model has no dictionary (e.g. DMD); dictionary activations are drawn for DHMD runs.")
        return s
    idx = A.subsample(len(labels), MAX_HEATMAP_ROWS)
    record["activations"] = {}
    for space, per_mod in acts.items():
        sub = {m: a[idx] for m, a in per_mod.items()}
        record["activations"][space] = {m: list(a.shape[1:]) for m, a in per_mod.items()}
        s.figures.append(_save(
            F.activations_figure(sub, labels[idx], space), out, f"activations_{space}.png",
            f"Heatmaps of dictionary activations in the {space} space, one per modality, samples sorted by label",
            f"Dictionary activations, {SPACE_NAMES.get(space, space)} space: rows are {len(idx)} test samples "
            "sorted by label, columns the dictionary atoms."))
    _dictionary_measures(s, out, acts, concepts, record)
    return s


def _dictionary_measures(s: Section, out: Path, acts: dict[str, dict[str, np.ndarray]],
                         concepts: np.ndarray | None, record: dict[str, Any]) -> None:
    """Usage (and, with planted concepts, recovery) table, and a concept x atom heatmap per space."""
    summary = D.dictionary_summary({f"activations/{sp}/{m}": a for sp, pm in acts.items() for m, a in pm.items()},
                                   concepts)
    record["dictionary"] = summary
    cols = ["space", "modality", "perplexity", "atoms used (>= 1 %)", "soft perplexity", "atoms per clip"]
    keys = ["perplexity", "atoms_used", "soft_perplexity", "support"]
    if concepts is not None:
        cols += ["concept NMI", "concept purity"]
        keys += ["nmi", "purity"]
    cols.append("cross-modal agreement")
    rows = []
    for space, entry in summary.items():
        for m in acts[space]:
            rows.append([space, F.MODALITY_NAMES.get(m, m)] + [entry[m][k] for k in keys] + [entry["agreement"]])
    s.tables.append(rows_table(cols, rows))
    s.notes.append(
        "Usage on the test split: a clip's top atom is its largest activation; perplexity = exp(entropy of the "
        f"top-atom shares) (1 = every clip on one atom); an atom is used when it is the top atom of at least "
        f"{D.USED_SHARE:.0%} of the clips. Cross-modal agreement: clips whose top atom is the same in every "
        "modality." + (" Concept NMI/purity: top atom against the clip's primary planted concept." if concepts
                       is not None else ""))
    if concepts is None:
        return
    names = list(CONCEPTS) if concepts.shape[1] == len(CONCEPTS) else [f"c{i}" for i in range(concepts.shape[1])]
    for space, per_mod in acts.items():
        mats = {m: D.concept_atom_matrix(a, concepts) for m, a in per_mod.items()}
        s.figures.append(_save(
            F.concept_atom_figure(mats, names, space, summary[space]), out, f"concepts_{space}.png",
            f"Planted concept by top dictionary atom in the {space} space, one heatmap per modality",
            f"{SPACE_NAMES.get(space, space)} space: for each planted concept (rows), the share of its test clips "
            "whose top atom is each atom (columns; only atoms some modality uses). One bright cell per row = "
            "the concept has its own atom; the same column across modalities = the modalities agree."))


def _embedding_section(run: RunFiles, out: Path, named: dict[str, np.ndarray], labels: np.ndarray | None,
                       max_points: int, why_no_model: str | None, record: dict[str, Any]) -> Section:
    s = Section("Decoupled-feature embedding", "embedding")
    feats = _group(named, "features")
    if not feats:
        s.notes.append(f"Skipped: {why_no_model}" if why_no_model else
                       "This model reports no decoupled features: no embedding.")
        return s
    record["embedding"] = {}
    for space, per_mod in feats.items():
        dims = {m: x.shape[1:] for m, x in per_mod.items()}
        if len(set(dims.values())) != 1:
            s.notes.append(f"{space}: modalities have different feature shapes {dims}; no joint embedding.")
            continue
        idx = A.subsample(len(labels), max(max_points // len(per_mod), 1))
        x = np.concatenate([per_mod[m][idx].reshape(len(idx), -1) for m in per_mod])  # (M*n, F)
        mod = np.repeat(list(per_mod), len(idx))
        y_idx, names = A.label_classes(np.tile(labels[idx], len(per_mod)), run.task, run.family)
        try:
            xy = A.tsne_2d(x)
        except ValueError as e:
            s.notes.append(f"{space}: no embedding ({e}).")
            continue
        record["embedding"][space] = {"samples": int(len(idx)), "points": int(x.shape[0])}
        s.figures.append(_save(
            F.embedding_figure(xy, mod, y_idx, names, space, len(idx)), out, f"embedding_{space}.png",
            f"Two t-SNE scatter plots of the {space} decoupled features, coloured by modality and by label class",
            f"t-SNE (fixed seed) of the time-pooled {SPACE_NAMES.get(space, space)} features of {len(idx)} test "
            "samples, one point per sample and modality. Shared features should mix across modalities; "
            "exclusive ones separate by modality."))
    return s


def _predictions_section(run: RunFiles, pred: TestPredictions | None, out: Path, record: dict[str, Any]) -> Section:
    s = Section("Test predictions", "predictions")
    if pred is None or len(pred.label) == 0:
        s.notes.append("No test predictions (test_predictions.csv missing and the model could not be run).")
        return s
    t_idx, names = A.label_classes(pred.label, run.task, run.family)
    p_idx, _ = A.prediction_classes(pred.prediction, run.task, run.family)
    counts = A.confusion_matrix(t_idx, p_idx, len(names))
    acc = float(np.trace(counts) / counts.sum())
    kind = {"binary": "2-class (logit > 0)", "sims": "SIMS 5-class"}.get(run.family, "7-class (Acc-7 rounding)")
    record["confusion"] = {"classes": list(names), "rows": "true", "cols": "predicted",
                           "counts": counts.tolist(), "source": pred.source}
    s.figures.append(_save(
        F.confusion_figure(counts, names, f"{kind}, accuracy {acc:.3f}"), out, "confusion.png",
        f"{kind} confusion matrix of the test split, true class in rows, predicted class in columns",
        f"Test confusion matrix, {kind}, from {pred.source}. Row = true class, column = predicted class."))
    if is_binary_task(run.task):
        fig = F.binary_strip_figure(pred.label, pred.prediction, "Test logits by true label")
        s.figures.append(_save(fig, out, "predictions.png", "Strip plot of test logits for each true label",
                               "Test logits per true label; the dashed line is the decision threshold."))
    else:
        mae = float(np.mean(np.abs(pred.prediction - pred.label)))
        fig = F.scatter_figure(pred.label, pred.prediction, f"Test predictions (MAE {mae:.3f})")
        s.figures.append(_save(fig, out, "predictions.png", "Scatter plot of predicted against true test scores",
                               "Predicted vs true sentiment score on the test split; dashed: perfect prediction."))
    return s
