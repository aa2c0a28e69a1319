"""Checks shared by evaluation and prediction."""

from __future__ import annotations

from torch import nn

from emodistill.spec import DatasetSpec


def check_compatible(model: nn.Module, data_spec: DatasetSpec, ckpt_path, data_source) -> None:
    """Refuse data whose feature dims (or, for fixed-length models, sequence lengths) differ from training."""
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
