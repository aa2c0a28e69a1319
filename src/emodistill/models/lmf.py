"""Low-rank Multimodal Fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with Modality-Specific
Factors", ACL 2018), as in MMSA (``src/MMSA/models/singleTask/LMF.py``).

LMF computes what a TFN output layer would compute on the tensor ``[1; h_a] x [1; h_v] x [1; h_l]``, but
with the weight tensor restricted to rank ``r``: ``W = sum_i w_i W_a^(i) x W_v^(i) x W_l^(i)``. By
multilinearity the tensor is never built (paper §3.2, Eq. 5-6):

    y = sum_i w_i * prod_m ([1; h_m] . W_m^(i)) + b

with modality-specific factors ``W_m^(i)`` of shape ``(H_m + 1, 1)``, fusion weights ``w`` (r,) and bias
``b``. The unimodal encoders are those of TFN (:mod:`emodistill.models.layers.mmsa_subnets`); the text output size is
``text_hidden // 2`` as in MMSA. The constant 1 is prepended by TFN's own ``with_one``
(:mod:`emodistill.models.tfn`), since LMF factorises exactly TFN's fusion tensor.

Choices taken from MMSA (and the authors' code it follows):

* The output is used as is (no sigmoid scaling, unlike MMSA's TFN); factors and fusion weights get Xavier
  normal initialisation, the bias 0.
* The fourth ("post-fusion") dropout of MMSA's config is built but never applied in its forward; it has
  no field here.
* MMSA's LMF trainer optimises ``list(model.parameters())[:3]`` (the three factors, at ``factor_lr``) and
  ``[5:]`` (the encoders, at ``learning_rate``), so the fusion weights and bias keep their initial values.
  ``train_fusion_weights=False`` (default) reproduces this by freezing them; True trains them, as the
  paper and the authors' code do. ``factor_lr`` equals ``learning_rate`` in MMSA's MOSI/MOSEI configs,
  so one learning rate suffices.

MMSA's version reads the precomputed 768-d BERT ``text`` features; no BERT fine-tuning is offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.mmsa_subnets import SubNetConfig, UnimodalEncoders, check_no_text_encoder
from emodistill.models.registry import register_model
from emodistill.models.tfn import with_one  # TFN's [1; h]: LMF factorises TFN's fusion tensor
from emodistill.spec import DatasetSpec


def low_rank_fusion(zs: list[Tensor], factors: list[Tensor], weights: Tensor, bias: Tensor) -> Tensor:
    """Low-rank fusion of modality vectors that already carry their constant 1.

    Args:
        zs: per modality, (B, H_m + 1).
        factors: per modality, (r, H_m + 1, O) rank-``r`` factors.
        weights: (1, r) fusion weights over the rank.
        bias: (1, O).

    Returns:
        (B, O): ``sum_i weights[0, i] * prod_m (zs[m] @ factors[m][i]) + bias``.
    """
    fused = None
    for z, w in zip(zs, factors, strict=True):
        proj = torch.einsum("bh,rho->rbo", z, w)  # (r, B, O)
        fused = proj if fused is None else fused * proj  # (r, B, O): product over modalities
    return torch.einsum("r,rbo->bo", weights[0], fused) + bias  # (B, O)


@dataclass
class LMFConfig(SubNetConfig):
    """Hyper-parameters of :class:`LMF`; defaults are MMSA's ``lmf`` MOSI values (``config_regression.json``:
    ``hidden_dims [128, 16, 128]``, ``dropouts [0.3, 0.3, 0.3, 0.3]``, ``rank 3``; MOSEI: dropouts 0.2,
    rank 4)."""

    text_hidden: int = 128
    audio_hidden: int = 16
    vision_hidden: int = 128
    text_out: int | None = None
    audio_dropout: float = 0.3
    vision_dropout: float = 0.3
    rank: int = 3
    """Rank ``r`` of the fusion weight tensor (MMSA ``rank``)."""
    train_fusion_weights: bool = False
    """Train the rank-combination weights and the bias; False freezes them at their initial values, as
    MMSA's trainer does (it leaves them out of the optimiser)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"LMFConfig.rank={self.rank} must be >= 1")


class LMF(MERModel):
    """Low-rank Multimodal Fusion: unimodal encoders, rank-``r`` modality factors -> score (B, 1)."""

    name = "lmf"

    def __init__(self, spec: DatasetSpec, config: LMFConfig) -> None:
        super().__init__(spec, config)
        self.encoders = UnimodalEncoders(spec, config)
        r = config.rank
        self.audio_factor = nn.Parameter(torch.empty(r, config.audio_hidden + 1, 1))  # (r, H_a + 1, 1)
        self.vision_factor = nn.Parameter(torch.empty(r, config.vision_hidden + 1, 1))  # (r, H_v + 1, 1)
        self.text_factor = nn.Parameter(torch.empty(r, config.text_out_dim + 1, 1))  # (r, H_l + 1, 1)
        self.fusion_weights = nn.Parameter(torch.empty(1, r), requires_grad=config.train_fusion_weights)
        self.fusion_bias = nn.Parameter(torch.zeros(1, 1), requires_grad=config.train_fusion_weights)
        for p in (self.audio_factor, self.vision_factor, self.text_factor, self.fusion_weights):
            nn.init.xavier_normal_(p)

    def encode(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """Modality vectors with their constant 1: ``[(B, H_a + 1), (B, H_v + 1), (B, H_l + 1)]``."""
        h_l, h_a, h_v = self.encoders(batch)
        return [with_one(h_a), with_one(h_v), with_one(h_l)]

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch: ``text`` (B, T_l, D_l),
                ``audio`` (B, T_a, D_a), ``vision`` (B, T_v, D_v), their ``*_lengths`` and, if present,
                ``text_bert`` (its mask gives the text length).

        Returns:
            ``ModelOutput`` with ``prediction`` (B, 1).
        """
        factors = [self.audio_factor, self.vision_factor, self.text_factor]
        y = low_rank_fusion(self.encode(batch), factors, self.fusion_weights, self.fusion_bias)  # (B, 1)
        return ModelOutput(prediction=y)


@register_model("lmf", "Low-rank Multimodal Fusion (Liu et al., ACL 2018), MMSA's version", config=LMFConfig)
def lmf(spec: DatasetSpec, *, text_encoder: str | None = None, **cfg) -> LMF:
    """Build :class:`LMF` for ``spec``; ``cfg`` holds :class:`LMFConfig` fields."""
    check_no_text_encoder("lmf", text_encoder)
    return LMF(spec, LMFConfig(**cfg))
