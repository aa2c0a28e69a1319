"""A light late-fusion baseline with selectable modalities: every modality, text included, mean-pooled
over its valid steps and encoded by a two-layer subnet, then a fusion MLP. It follows the LF-DNN design
(Williams et al., "Recognizing Emotions in Video Using Multimodal DNN Feature Fusion", ACL-W 2018; Yu et
al., CH-SIMS, ACL 2020) but is not MMSA's LF_DNN, which :mod:`emodistill.models.lf_dnn` reproduces.

Per modality: masked mean over the valid time steps -> batch norm -> small MLP ("subnet"); the
subnet outputs are concatenated and a fusion MLP predicts the score. Unlike MMSA's LF_DNN the text
branch is pooled like the others (no LSTM), which keeps the model cheap enough to train in CPU tests
and makes the unimodal variants (``modalities=["audio"]``) directly comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.masking import nonzero_rows_mask
from emodistill.models.layers.norms import BatchNorm
from emodistill.models.layers.pooling import masked_mean
from emodistill.models.registry import register_model
from emodistill.spec import MODALITIES, DatasetSpec


@dataclass
class LateFusionConfig:
    """Hyper-parameters of :class:`LateFusion`."""

    hidden: int = 64
    """Width of every subnet and of the fusion MLP."""
    dropout: float = 0.1
    """Dropout on subnet inputs and before the fusion output layer."""
    modalities: tuple[str, ...] = MODALITIES
    """Modalities used; a single one gives a unimodal baseline."""

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)  # YAML/JSON give lists
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(
                f"LateFusionConfig.modalities={list(self.modalities)}: choose one or more of "
                f"{list(MODALITIES)}"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"LateFusionConfig.modalities={list(self.modalities)} repeats a modality")
        if self.hidden < 1:
            raise ValueError(f"LateFusionConfig.hidden={self.hidden} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LateFusionConfig.dropout={self.dropout} must be in [0, 1)")


class SubNet(nn.Module):
    """Pooled features (B, D) -> (B, H): batch norm, dropout, two ReLU layers."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        # Batch norm standardises features whose scales differ by orders of magnitude (COVAREP, FACET).
        self.norm = BatchNorm(in_dim)
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.norm(x))


class LateFusion(MERModel):
    """LF-DNN-style late fusion: pooled per-modality subnets, concatenated, then a fusion MLP."""

    name = "late_fusion"

    def __init__(self, spec: DatasetSpec, config: LateFusionConfig) -> None:
        super().__init__(spec, config)
        h = config.hidden
        self.subnets = nn.ModuleDict(
            {m: SubNet(spec.feature_dims[m], h, config.dropout) for m in config.modalities}
        )
        self.fusion = nn.Sequential(
            nn.Linear(h * len(config.modalities), h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, 1)
        )

    def valid_mask(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """(B, T) True on the steps of ``modality`` that hold data: :func:`~.layers.masking.nonzero_rows_mask`
        (in aligned data an audio/vision step counts only if its own feature row is non-zero)."""
        return nonzero_rows_mask(batch, modality, self.spec.aligned)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Fused representation (B, M * H) before the fusion MLP."""
        hs = [
            self.subnets[m](masked_mean(batch[m], self.valid_mask(batch, m))) for m in self.config.modalities
        ]
        return torch.cat(hs, dim=-1)  # (B, M * H)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch; only the configured modalities
                (and their lengths / ``text_bert`` mask) are read.

        Returns:
            ``ModelOutput`` with ``prediction`` (B, 1).
        """
        return ModelOutput(prediction=self.fusion(self.encode(batch)))  # (B, 1)


@register_model(
    "late_fusion",
    "LF-DNN-style late fusion of mean-pooled modalities (MMSA baseline)",
    config=LateFusionConfig,
)
def late_fusion(
    spec: DatasetSpec,
    *,
    hidden: int = 64,
    dropout: float = 0.1,
    modalities: tuple[str, ...] | list[str] = MODALITIES,
) -> LateFusion:
    """Build :class:`LateFusion` for ``spec``; ``modalities=["audio"]`` gives a unimodal baseline."""
    return LateFusion(spec, LateFusionConfig(hidden=hidden, dropout=dropout, modalities=tuple(modalities)))
