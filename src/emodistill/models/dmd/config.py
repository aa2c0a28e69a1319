"""Configuration of DMD (Li et al., CVPR 2023): the official hyper-parameters, MOSI defaults.

Values come from the official ``config/config.json`` (``dmd`` section, MOSI) and ``run.py`` (GD-Unit
settings); see docs/dmd-spec.md §2 and §5. Sequence lengths are *not* configuration: the model reads them from
the :class:`~emodistill.spec.DatasetSpec` (``T' = T - k + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from emodistill.models.dmd.gd_unit import prior_from_logits
from emodistill.models.dmd.losses import ORT_SEMANTICS
from emodistill.models.layers.grouped_config import GroupedEncoderConfig
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS  # every dropout rate of the model

LOSS_TERMS = (
    "task_c", "task_homo", "task_hetero",
    "rec", "cyc", "ort", "mar",
    "homo_logit", "homo_reg", "hetero_logit", "hetero_repr", "hetero_reg",
)  # fmt: skip
"""DMD loss terms an ablation may leave out of the total (the fused task loss always stays).
``task_homo`` / ``task_hetero`` are the three per-modality heads of each space."""


@dataclass
class DMDConfig(GroupedEncoderConfig):
    """DMD hyper-parameters (official MOSI values by default; MOSEI: see ``official_config("mosei")``).
    Its first fields, ``d_model`` to ``attn_mask``, are :class:`GroupedEncoderConfig`'s."""

    gd_size_homo: int = 64
    """Projection width of the HomoGD unit."""
    gd_size_hetero: int = 32
    """Projection width of the HeteroGD unit."""
    gd_prior_logits_homo: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    """HomoGD prior = ``softmax(logits / gd_prior_temperature)``, edges V->L, A->L, L->V, A->V, L->A, V->A."""
    gd_prior_logits_hetero: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0)
    """HeteroGD prior logits (same edge order)."""
    gd_prior_temperature: float = 0.25
    """Temperature of the prior softmax (official ``misc.softmax(..., 0.25)``)."""
    gd_reg: float = 10.0
    """Weight of the squared deviation of the batch-mean edges from the prior."""
    gd_alpha: float = 0.125
    """Edge softmax factor ``alpha`` (temperature 8)."""
    w_losses_homo: tuple[float, float] = (1.0, 10.0)
    """HomoGD ``[logit, repr]`` distillation weights (the repr term is logged, never optimised)."""
    w_losses_hetero: tuple[float, float] = (1.0, 10.0)
    """HeteroGD ``[logit, repr]`` distillation weights."""
    weight_gd_homo: float = 0.05
    """Total-loss weight of ``L_logit^homo + L_reg^homo``."""
    weight_gd_hetero: float = 0.05
    """Total-loss weight of ``L_logit^het + L_repr^het + L_reg^het``."""
    weight_decouple: float = 0.1
    """Total-loss weight of ``L_cyc + L_rec + weight_margin_ort * (L_mar + L_ort)``."""
    weight_margin_ort: float = 0.1
    """Weight of ``L_mar + L_ort`` inside the decoupling term (effective 0.01)."""
    margin_scale: float = 0.15
    """Adaptive margin factor of the margin loss: ``margin_scale * |y_anchor - y_negative|``."""
    ort_semantics: str = "torch19"
    """``"torch19"``: the authors' PyTorch-1.9 behaviour (cosine across the batch per (t, k));
    ``"per_sample"``: cosine per sample over the flattened ``T' * d`` features."""
    text_encoder: str | None = None
    """Local Hugging Face model directory (BERT-style) to fine-tune on ``text_bert``; None uses the
    precomputed ``text`` features."""
    text_encoder_config: dict | None = None
    """Architecture of the text encoder (filled in when ``text_encoder`` is loaded). If set and the
    directory is absent, the encoder is built from it with random weights, to be overwritten by a
    checkpoint (so checkpoints stay loadable without the directory and official imports need no hub)."""
    finetune_text: bool = True
    """Back-propagate into the text encoder (official ``use_finetune``)."""
    decouple: bool = True
    """Ablation switch. False: no decoupling; both spaces read the projected features (``s = c =
    proj_x``), and the decoupling losses (rec, cyc, ort, mar) leave the total."""
    disabled_losses: tuple[str, ...] = ()
    """Ablation switch: loss terms (names in ``loss_terms``) left out of the total; still logged.
    E.g. ``("homo_logit", "homo_reg")`` turns HomoGD distillation off."""

    loss_terms = LOSS_TERMS
    """Names ``disabled_losses`` may hold (subclasses extend it)."""

    def __post_init__(self) -> None:
        # checkpoints and YAML may hand sequences back as lists
        self.disabled_losses = tuple(str(v) for v in self.disabled_losses)
        unknown = sorted(set(self.disabled_losses) - set(self.loss_terms))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.disabled_losses: unknown terms {unknown}; "
                f"expected any of {list(self.loss_terms)}"
            )
        for name in ("gd_prior_logits_homo", "gd_prior_logits_hetero", "w_losses_homo", "w_losses_hetero"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.d_model < 4:
            raise ValueError(
                f"DMDConfig.d_model={self.d_model} must be >= 4 (sinusoidal PE needs d // 2 >= 2)"
            )
        if self.num_heads < 1 or self.d_model % self.num_heads:
            raise ValueError(
                f"DMDConfig.d_model={self.d_model} must be divisible by num_heads={self.num_heads}"
            )
        if self.nlevels < 1:
            raise ValueError(f"DMDConfig.nlevels={self.nlevels} must be >= 1")
        for name in ("kernel_l", "kernel_a", "kernel_v", "gd_size_homo", "gd_size_hetero"):
            if getattr(self, name) < 1:
                raise ValueError(f"DMDConfig.{name}={getattr(self, name)} must be >= 1")
        for name in DROPOUT_FIELDS:
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"DMDConfig.{name}={p} must lie in [0, 1)")
        for name in ("gd_prior_logits_homo", "gd_prior_logits_hetero"):
            if len(getattr(self, name)) != 6:
                raise ValueError(f"DMDConfig.{name} needs 6 entries (one per directed edge)")
        for name in ("w_losses_homo", "w_losses_hetero"):
            if len(getattr(self, name)) != 2:
                raise ValueError(f"DMDConfig.{name} needs 2 entries [logit, repr]")
        if self.gd_prior_temperature <= 0:
            raise ValueError(f"DMDConfig.gd_prior_temperature={self.gd_prior_temperature} must be > 0")
        if self.ort_semantics not in ORT_SEMANTICS:
            raise ValueError(f"DMDConfig.ort_semantics={self.ort_semantics!r}; choose from {ORT_SEMANTICS}")

    @property
    def prior_homo(self) -> list[float]:
        """HomoGD prior edge weights (official ``[0.0088, 0.0088, 0.4823, 0.0088, 0.4823, 0.0088]``)."""
        return prior_from_logits(self.gd_prior_logits_homo, self.gd_prior_temperature)

    @property
    def prior_hetero(self) -> list[float]:
        """HeteroGD prior edge weights (official ``[0.0060, 0.0060, 0.3273, 0.0060, 0.3273, 0.3273]``)."""
        return prior_from_logits(self.gd_prior_logits_hetero, self.gd_prior_temperature)
