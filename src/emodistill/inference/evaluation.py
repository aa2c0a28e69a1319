"""Evaluation of a trained checkpoint on one split of a data set (``emodistill evaluate``).

:func:`evaluate` rebuilds the model from its checkpoint, refuses data it cannot score
(:func:`check_compatible`: other feature dims or task, or other sequence lengths for fixed-length models),
and runs one eval-mode pass over the split. The metrics are those ``fit`` reports for the test split
(:func:`~emodistill.metrics.scores.compute_metrics` for the data set's metric family) plus ``loss``, the
model-selection criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emodistill.data import load_dataset, reader_options
from emodistill.data.loader import BatchLoader
from emodistill.data.types import SPLITS, MMSAData, SplitData
from emodistill.metrics.scores import compute_metrics
from emodistill.models.registry import load_checkpoint
from emodistill.spec import DatasetSpec
from emodistill.training.fit import predictions_csv
from emodistill.training.loop import Predictions, predict, resolve_device


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: metrics, per-sample predictions, and what produced them."""

    model_name: str
    """Registered name of the evaluated model."""
    split: str
    """``"train"``, ``"valid"`` or ``"test"``."""
    metrics: dict[str, float]
    """``loss`` (the model-selection criterion) and the data set's metrics, e.g. ``MAE``, ``Mult_acc_7``."""
    predictions: Predictions
    """Scores and labels over the split, in split order."""
    ids: list[str]
    """Sample ids of the split (``predictions.index`` points into them)."""
    model: nn.Module
    """The model, in eval mode on ``device`` (e.g. for robustness curves)."""
    data: MMSAData
    """The data set evaluated on."""
    checkpoint: dict[str, Any]
    """The checkpoint dict (model config, spec, training provenance)."""
    device: torch.device

    @property
    def samples(self) -> SplitData:
        """The evaluated split."""
        return self.data.splits[self.split]

    def predictions_csv(self) -> str:
        """Per-sample predictions as CSV: ``id, label, prediction``."""
        return predictions_csv(self.predictions, self.ids)


def evaluate(
    checkpoint: str | Path | tuple[nn.Module, dict[str, Any]],
    data: MMSAData | str | Path,
    split: str = "test",
    *,
    device: str = "cpu",
    batch_size: int = 64,
    dataset: str | None = None,
    options: dict[str, Any] | None = None,
    strict_hash: bool = False,
) -> Evaluation:
    """Score a trained model on one split.

    Args:
        checkpoint: a checkpoint path (``best.ckpt``), or ``(model, checkpoint_dict)`` as returned by
            :func:`~emodistill.models.registry.load_checkpoint`.
        data: a loaded data set, or its source: ``"synth"``, an MMSA ``.pkl`` path or a UR-FUNNY /
            MUStARD directory. A directory is read with the reader options recorded in the checkpoint
            (same fold, lengths and context as in training) unless ``options`` are given.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        batch_size: evaluation mini-batch size (does not change any metric).
        dataset: force the data-set family of a source (see :func:`~emodistill.data.load_dataset`).
        options: reader options of a directory source.
        strict_hash: fail on a published MMSA file whose hash differs.

    Raises:
        ValueError: the data do not match the data the model was trained on, or ``split`` is unknown.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    dev = resolve_device(device)
    if isinstance(checkpoint, (str, Path)):
        ckpt_name = str(checkpoint)
        model, ckpt = load_checkpoint(checkpoint, dev)
    else:
        model, ckpt = checkpoint
        model = model.to(dev).eval()
        ckpt_name = f"the {ckpt['model_name']} checkpoint"
    if isinstance(data, MMSAData):
        source = str(data.path) if data.path is not None else "the data"
    else:
        source = str(data)
        if options is None:  # a directory is re-read as in training (same fold, lengths, context)
            options = reader_options(model.spec) if Path(data).is_dir() else {}
        data = load_dataset(data, dataset=dataset, strict_hash=strict_hash, options=options)
    check_compatible(model, data.spec, ckpt_name, source)
    samples = data.splits[split]
    pred = predict(model, BatchLoader(samples, batch_size, shuffle=False, device=dev))
    metrics = {"loss": pred.loss, **compute_metrics(pred.prediction, pred.label, data.spec.metric_family)}
    return Evaluation(model_name=ckpt["model_name"], split=split, metrics=metrics, predictions=pred,
                      ids=list(samples.ids), model=model, data=data, checkpoint=ckpt, device=dev)


def check_compatible(model: nn.Module, data_spec: DatasetSpec, ckpt_path: str | Path, data_source: str | Path) -> None:
    """Refuse data whose task or feature dims (or, for fixed-length models, sequence lengths) differ from
    those the model was trained on.

    Raises:
        ValueError: one line naming the data, the checkpoint and every difference.
    """
    spec: DatasetSpec = model.spec
    problems = [f"task {data_spec.task!r} != {spec.task!r}"] if data_spec.task != spec.task else []
    problems += [
        f"{m} feature dim {data_spec.feature_dims[m]} != {spec.feature_dims[m]}"
        for m in spec.feature_dims if data_spec.feature_dims[m] != spec.feature_dims[m]
    ]
    if getattr(model, "fixed_seq_lens", False):
        problems += [
            f"{m} length {data_spec.seq_lens[m]} != {spec.seq_lens[m]}"
            for m in spec.seq_lens if data_spec.seq_lens[m] != spec.seq_lens[m]
        ]
    if problems:
        raise ValueError(
            f"{data_source}: does not match the data {ckpt_path} was trained on: {'; '.join(problems)}"
        )
