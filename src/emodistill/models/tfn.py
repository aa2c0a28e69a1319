"""Tensor Fusion Network (Zadeh et al., "Tensor Fusion Network for Multimodal Sentiment Analysis",
EMNLP 2017), as in MMSA (``src/MMSA/models/singleTask/TFN.py``).

Each modality is encoded to a vector (text LSTM, pooled audio/vision subnets; see
:mod:`emodistill.models.layers.mmsa_subnets`). A constant 1 is added to each vector and the three-way outer product
``[1; h_a] x [1; h_v] x [1; h_l]`` holds the unimodal, bimodal and trimodal interactions (paper §3.2,
Eq. 1). Its flattening goes through a post-fusion MLP (dropout, two ReLU layers, linear).

Choices taken from MMSA:

* The 1 is *prepended* (the paper writes ``[z; 1]``); the two differ only by a permutation of the
  post-fusion layer's inputs. The product order is audio, vision, text.
* Regression output is squashed to the label range: ``sigmoid(y) * output_range + output_shift``, with
  MMSA's ``output_range = 6``, ``output_shift = -3`` for MOSI/MOSEI. We take them from the spec's
  ``label_range`` (``hi - lo``, ``lo``), which equals MMSA's constants for MOSI/MOSEI (MMSA keeps 6/-3
  even for SIMS, whose labels lie in [-1, 1]). For a binary task the output is the raw logit.
* MMSA's TFN trainer applies no weight decay (its optimiser is built without one).

MMSA's version reads the precomputed 768-d BERT ``text`` features; no BERT fine-tuning is offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.mmsa_subnets import SubNetConfig, UnimodalEncoders, check_no_text_encoder, post_fusion_mlp
from emodistill.models.registry import register_model
from emodistill.spec import DatasetSpec


def with_one(h: Tensor) -> Tensor:
    """Prepend a constant 1 to every vector: (B, H) -> (B, 1 + H). Also used by :mod:`~emodistill.models.lmf`,
    whose low-rank fusion factorises this model's fusion tensor."""
    return torch.cat([h.new_ones(h.shape[0], 1), h], dim=1)  # (B, 1 + H)


def tensor_fusion(h_a: Tensor, h_v: Tensor, h_l: Tensor) -> Tensor:
    """Flattened outer product of ``[1; h_a]``, ``[1; h_v]``, ``[1; h_l]``.

    Args:
        h_a: (B, H_a) audio vector.
        h_v: (B, H_v) vision vector.
        h_l: (B, H_l) text vector.

    Returns:
        (B, (H_a + 1) * (H_v + 1) * (H_l + 1)); entry ``(i, j, k)`` (row-major) is
        ``[1; h_a]_i * [1; h_v]_j * [1; h_l]_k``.
    """
    a, v, t = with_one(h_a), with_one(h_v), with_one(h_l)  # (B, H_a+1), (B, H_v+1), (B, H_l+1)
    # broadcast products rather than a three-operand einsum, whose contraction planning reads concrete sizes
    # (torch.export then fixes the batch axis of an exported graph)
    z = (a[:, :, None] * v[:, None, :])[:, :, :, None] * t[:, None, None, :]  # (B, H_a+1, H_v+1, H_l+1)
    return z.flatten(1)  # (B, (H_a+1)(H_v+1)(H_l+1))


@dataclass
class TFNConfig(SubNetConfig):
    """Hyper-parameters of :class:`TFN`; defaults are MMSA's ``tfn`` MOSI values (``config_regression.json``:
    ``hidden_dims [128, 32, 128]``, ``text_out 32``, ``post_fusion_dim 64``, ``dropouts [0.3, 0.3, 0.3,
    0.5]``). The encoder fields and their defaults come from :class:`SubNetConfig`."""

    post_fusion_dim: int = 64
    """Width of the two post-fusion ReLU layers (MMSA ``post_fusion_dim``)."""
    post_fusion_dropout: float = 0.5
    """Dropout on the fused tensor (MMSA ``dropouts[3]``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.post_fusion_dim < 1:
            raise ValueError(f"TFNConfig.post_fusion_dim={self.post_fusion_dim} must be >= 1")


class TFN(MERModel):
    """Tensor Fusion Network: unimodal encoders, 3-way outer product with 1s, post-fusion MLP -> (B, 1)."""

    name = "tfn"

    def __init__(self, spec: DatasetSpec, config: TFNConfig) -> None:
        super().__init__(spec, config)
        self.encoders = UnimodalEncoders(spec, config)
        fused = (config.audio_hidden + 1) * (config.vision_hidden + 1) * (config.text_out_dim + 1)
        self.post_fusion = post_fusion_mlp(fused, config.post_fusion_dim, config.post_fusion_dropout)
        lo, hi = spec.label_range
        self.output_range, self.output_shift = float(hi - lo), float(lo)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Flattened fusion tensor (B, (H_a + 1)(H_v + 1)(H_l + 1))."""
        h_l, h_a, h_v = self.encoders(batch)
        return tensor_fusion(h_a, h_v, h_l)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch: ``text`` (B, T_l, D_l),
                ``audio`` (B, T_a, D_a), ``vision`` (B, T_v, D_v), their ``*_lengths`` and, if present,
                ``text_bert`` (its mask gives the text length).

        Returns:
            ``ModelOutput`` with ``prediction`` (B, 1): a score inside ``spec.label_range`` for regression,
            a logit for binary tasks.
        """
        y = self.post_fusion(self.encode(batch))  # (B, 1)
        if not self.spec.is_binary:
            y = torch.sigmoid(y) * self.output_range + self.output_shift  # (B, 1) inside label_range
        return ModelOutput(prediction=y)


@register_model("tfn", "Tensor Fusion Network (Zadeh et al., EMNLP 2017), MMSA's version", config=TFNConfig)
def tfn(spec: DatasetSpec, *, text_encoder: str | None = None, **cfg) -> TFN:
    """Build :class:`TFN` for ``spec``; ``cfg`` holds :class:`TFNConfig` fields."""
    check_no_text_encoder("tfn", text_encoder)
    return TFN(spec, TFNConfig(**cfg))
