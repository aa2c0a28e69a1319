"""MMSA's LF_DNN reproduced as benchmarked (``src/MMSA/models/singleTask/LF_DNN.py``): a text LSTM and
time-averaged audio/vision subnets fused late by a post-fusion MLP (Williams et al., "Recognizing Emotions
in Video Using Multimodal DNN Feature Fusion", ACL-W 2018; Yu et al., CH-SIMS, ACL 2020).

Audio and vision are averaged over time and encoded by MMSA's ``SubNet`` (batch norm, dropout, three
ReLU layers); text is read by an LSTM (``TextSubNet``). The three vectors are concatenated and a
post-fusion MLP (dropout, two ReLU layers, linear) gives the score. Works on aligned and unaligned data
(MMSA's benchmark uses the unaligned files). See :mod:`emodistill.models.layers.mmsa_subnets` for how lengths are
used. MMSA's version reads the precomputed 768-d BERT ``text`` features; no BERT fine-tuning is offered.

Unlike the ``late_fusion`` model, this one follows MMSA exactly (LSTM text branch, three-layer subnets,
MMSA's hyper-parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.mmsa_subnets import SubNetConfig, UnimodalEncoders, check_no_text_encoder, post_fusion_mlp
from emodistill.models.registry import register_model
from emodistill.spec import DatasetSpec


@dataclass
class LFDNNConfig(SubNetConfig):
    """Hyper-parameters of :class:`LFDNN`; defaults are MMSA's ``lf_dnn`` MOSI values
    (``config_regression.json``: ``hidden_dims [128, 16, 128]``, ``text_out 256``, ``post_fusion_dim 128``,
    ``dropouts [0.2, 0.2, 0.2, 0.2]``)."""

    text_hidden: int = 128
    audio_hidden: int = 16
    vision_hidden: int = 128
    text_out: int | None = 256
    audio_dropout: float = 0.2
    vision_dropout: float = 0.2
    post_fusion_dim: int = 128
    """Width of the two post-fusion ReLU layers (MMSA ``post_fusion_dim``)."""
    post_fusion_dropout: float = 0.2
    """Dropout on the concatenated vector (MMSA ``dropouts[3]``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.post_fusion_dim < 1:
            raise ValueError(f"LFDNNConfig.post_fusion_dim={self.post_fusion_dim} must be >= 1")


class LFDNN(MERModel):
    """LF-DNN: text LSTM + pooled audio/vision subnets, concatenated, post-fusion MLP -> score (B, 1)."""

    name = "lf_dnn"

    def __init__(self, spec: DatasetSpec, config: LFDNNConfig) -> None:
        super().__init__(spec, config)
        self.encoders = UnimodalEncoders(spec, config)
        fused = config.text_out_dim + config.audio_hidden + config.vision_hidden
        self.post_fusion = post_fusion_mlp(fused, config.post_fusion_dim, config.post_fusion_dropout)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Fused representation (B, text_out + audio_hidden + vision_hidden)."""
        h_l, h_a, h_v = self.encoders(batch)
        return torch.cat([h_a, h_v, h_l], dim=-1)  # (B, H_a + H_v + H_l), MMSA's order

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch: ``text`` (B, T_l, D_l),
                ``audio`` (B, T_a, D_a), ``vision`` (B, T_v, D_v), their ``*_lengths`` and, if present,
                ``text_bert`` (its mask gives the text length).

        Returns:
            ``ModelOutput`` with ``prediction`` (B, 1).
        """
        return ModelOutput(prediction=self.post_fusion(self.encode(batch)))  # (B, 1)


@register_model("lf_dnn", "MMSA's LF-DNN: text LSTM + pooled audio/vision subnets, late fusion MLP", config=LFDNNConfig)
def lf_dnn(spec: DatasetSpec, *, text_encoder: str | None = None, **cfg) -> LFDNN:
    """Build :class:`LFDNN` for ``spec``; ``cfg`` holds :class:`LFDNNConfig` fields."""
    check_no_text_encoder("lf_dnn", text_encoder)
    return LFDNN(spec, LFDNNConfig(**cfg))
