"""Human-readable report of a loaded data set (``emodistill data check FILE|DIR``)."""

from __future__ import annotations

import numpy as np

from emodistill.data.types import MMSAData, SplitData
from emodistill.metrics.scores import SIMS_CLASS_NAMES, sims_bins
from emodistill.spec import DatasetSpec

_BAR = 40  # characters of the longest histogram bar


def describe(data: MMSAData) -> str:
    """Multi-line summary: file, size, SHA-256 and its status, spec, and per split the sample count,
    array shapes/dtypes, length statistics, a label histogram, and the reader's notes."""
    spec = data.spec
    lines = []
    if data.path is not None and data.path.is_dir():
        lines.append(f"directory: {data.path}")
    elif data.path is not None:
        size = data.path.stat().st_size if data.path.exists() else None
        lines.append(f"file:      {data.path}")
        lines.append(f"size:      {_human(size) if size is not None else '?'}")
    lines.append(f"sha256:    {data.sha256 or '-'}")
    lines.append(f"hash:      {data.hash_status}")
    lines.append(
        f"dataset:   {spec.name} ({'aligned' if spec.aligned else 'unaligned'}), labels in "
        f"[{spec.label_range[0]:g}, {spec.label_range[1]:g}], task {spec.task}, metric family {spec.metric_family}"
    )
    if spec.extra:
        lines.append("reader:    " + ", ".join(f"{k}={v}" for k, v in spec.extra.items()))
    dims = ", ".join(f"{m} {spec.feature_dims[m]}" for m in spec.feature_dims)
    lens = ", ".join(f"{m} {spec.seq_lens[m]}" for m in spec.seq_lens)
    lines.append(f"dims:      {dims}   padded T: {lens}   text_bert: {'yes' if spec.has_text_bert else 'no'}")
    if data.extract_config:  # made by `emodistill extract`: say how, since predict will redo it
        x = data.extract_config["extract"]
        lines.append(
            f"extracted: text {x['text']['model']}, audio {x['audio']['backend']}, vision {x['vision']['backend']} "
            f"at {x['vision']['fps']:g} fps, {'aligned' if x['aligned'] else 'unaligned'}, "
            f"normalised {'yes' if data.extract_config.get('normalization') else 'no'} (predict-ready)"
        )
    for split in data.splits.values():
        lines.append("")
        lines.extend(_describe_split(split, spec))
    lines.append("")
    lines.append("notes:" if data.notes else "notes:     none")
    lines.extend(f"  - {note}" for note in data.notes)
    return "\n".join(lines)


def _describe_split(split: SplitData, spec: DatasetSpec) -> list[str]:
    family = spec.metric_family
    lines = [f"[{split.name}] {len(split)} samples"]
    arrays = {
        "text": split.text,
        "text_bert": split.text_bert,
        "audio": split.audio,
        "vision": split.vision,
        "audio_lengths": split.audio_lengths,
        "vision_lengths": split.vision_lengths,
        "labels (0/1)" if spec.is_binary else "regression_labels": split.labels,
    }
    arrays.update({f"regression_labels_{m}": y for m, y in split.unimodal_labels.items()})
    for key, arr in arrays.items():
        if arr is not None:
            lines.append(f"  {key:<22} {str(tuple(arr.shape)):<18} {arr.dtype}")
    lines.append(
        f"  {'id, raw_text':<22} {len(split.ids)} / {len(split.raw_text)} strings, e.g. {split.ids[0]!r}"
        if len(split)
        else f"  {'id, raw_text':<22} empty"
    )
    lengths = {
        "text (mask)": split.text_lengths(),
        "audio": split.audio_lengths,
        "vision": split.vision_lengths,
    }
    for name, values in lengths.items():
        if values is not None and len(values):
            lines.append(
                f"  length {name:<12} min {values.min():>4}  mean {values.mean():7.1f}  "
                f"median {np.median(values):6.1f}  max {values.max():>4}"
            )
    if len(split):
        header = {"sims": "(SIMS 5 bins):", "binary": "(binary 0/1):"}.get(family, "(Acc-7 classes, np.round):")
        lines.append("  labels " + header)
        lines.extend("    " + row for row in _histogram(split.labels, family))
    return lines


def label_bins(labels: np.ndarray, family: str) -> tuple[list[str], np.ndarray]:
    """Bin names and counts: 7 classes ``np.round(clip(y, -3, 3))`` for mosi-family data, MMSA's five
    SIMS intervals for sims, the two classes 0 and 1 for binary data (labels are validated 0/1)."""
    if family == "binary":
        return ["0", "1"], np.array([int(np.sum(labels == 0)), int(np.sum(labels == 1))])
    if family == "sims":  # the bins of the SIMS Mult_acc_5 metric, compared in the labels' dtype as there
        idx = sims_bins(np.clip(labels, -1, 1))
        return list(SIMS_CLASS_NAMES), np.bincount(idx, minlength=len(SIMS_CLASS_NAMES))
    classes = np.round(np.clip(labels, -3, 3)).astype(int)
    return [f"{c:+d}" for c in range(-3, 4)], np.bincount(classes + 3, minlength=7)


def _histogram(labels: np.ndarray, family: str) -> list[str]:
    names, counts = label_bins(labels, family)
    width = max(len(n) for n in names)
    top = max(int(counts.max()), 1)
    total = max(int(counts.sum()), 1)
    return [
        f"{name:>{width}} | {'#' * round(_BAR * c / top):<{_BAR}} {c:>6} ({100 * c / total:4.1f}%)"
        for name, c in zip(names, counts, strict=True)
    ]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"
