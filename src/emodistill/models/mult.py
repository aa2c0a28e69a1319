"""MulT baseline: Multimodal Transformer for Unaligned Multimodal Language Sequences (Tsai et al., ACL 2019).

Written after MMSA's ``src/MMSA/models/singleTask/MULT.py`` and ``trains/singleTask/MULT.py``
(thuiar/MMSA @ a94e65d, itself derived from github.com/yaohungt/Multimodal-Transformer), without CTC:

1. temporal Conv1d projections (no bias, no padding) to width ``d``: ``T' = T - k + 1``; skipped when a
   modality's input width already equals ``d`` (then ``T' = T``), as in MMSA;
2. six crossmodal transformers ``target <- source`` (query = target, keys/values = source), paper §3.2;
3. per target, both crossmodal outputs concatenated (width ``2d``) and a self-attention "mem"
   transformer with ``max(nlevels, 3)`` layers; its last time step is kept (paper §3.3);
4. the three last steps concatenated ``(B, 6d)`` and a residual projection head
   ``proj2(dropout(relu(proj1(h)))) + h -> Linear -> (B, 1)``.

The transformers are :class:`~emodistill.models.layers.grouped_transformer.GroupedMulTEncoder` families (pre-LN, scaled
input, causal mask ``triu(-inf, 1 + |T_k - T_q|)``, no key-padding mask: padding frames are attended to,
as in MMSA). Crossmodal attention dropout follows the *source* modality (MMSA ``get_network``); the mem
encoders all use ``attn_dropout``. No sequence lengths are read: MulT consumes the padded sequences.

One deliberate choice: MMSA's encoder has had no sinusoidal position embedding since its commit 1dea18d
(2022-09, ``position_embedding=False`` by default, never set by MULT), while the paper, the original
code and MMSA before that commit add it. ``position_embedding=True`` (default) follows the paper;
``False`` reproduces current MMSA. Modality order inside the model is MMSA's ``l, a, v``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.grouped_config import FoldedInferenceCache, GroupedEncoderConfig
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS, GroupedMulTEncoder, fast_dropout
from emodistill.models.layers.text_encoder import build_text_encoder
from emodistill.models.registry import register_model
from emodistill.spec import LONG_NAMES, MODALITIES, SHORT_NAMES, DatasetSpec

MODS = tuple(SHORT_NAMES[m] for m in MODALITIES)
"""MMSA's MulT modality order ``l, a, v`` (text, audio, vision); batch / spec keys: ``LONG_NAMES[m]``."""
CROSS_PAIRS = (("l", "a"), ("l", "v"), ("a", "l"), ("a", "v"), ("v", "l"), ("v", "a"))
"""Crossmodal transformers as (target/query, source/key-value), grouped by target: members ``2i`` and
``2i + 1`` feed target ``MODS[i]``'s mem transformer (concatenated in this order, as MMSA)."""


@dataclass
class MulTConfig(GroupedEncoderConfig):
    """MulT hyper-parameters. Defaults: MMSA ``config_regression.json`` ``mult`` / ``mosi`` (MOSEI: its
    ``mosei`` section; see recipes ``mult_mosi.yaml`` / ``mult_mosei.yaml``). Its first fields, ``d_model``
    to ``attn_mask``, are :class:`GroupedEncoderConfig`'s."""

    position_embedding: bool = True
    """Add sinusoidal position embeddings (paper, original code); False reproduces MMSA since 2022-09."""
    text_encoder: str | None = None
    """Local Hugging Face BERT-style directory fine-tuned on ``text_bert`` (MMSA ``use_bert``, false in
    its published config); None reads the precomputed ``text`` features."""
    text_encoder_config: dict | None = None
    """Architecture of the text encoder, filled in when it is loaded so that checkpoints rebuild it
    without the directory (see :class:`~emodistill.models.layers.text_encoder.TextEncoder`)."""
    finetune_text: bool = False
    """Back-propagate into the text encoder (MMSA ``use_bert_finetune``: false)."""

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.num_heads < 1 or self.d_model % self.num_heads:
            raise ValueError(
                f"MulTConfig.d_model={self.d_model} must be a positive multiple of num_heads={self.num_heads}"
            )
        if self.position_embedding and self.d_model < 4:
            raise ValueError(f"MulTConfig.d_model={self.d_model} must be >= 4 with position_embedding=True")
        for name in ("nlevels", "kernel_l", "kernel_a", "kernel_v"):
            if getattr(self, name) < 1:
                raise ValueError(f"MulTConfig.{name}={getattr(self, name)} must be >= 1")
        for name in DROPOUT_FIELDS:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"MulTConfig.{name}={getattr(self, name)} must lie in [0, 1)")


class _NoPositionEncoder(GroupedMulTEncoder):
    """:class:`GroupedMulTEncoder` without position embeddings: input ``sqrt(E) * x_in`` (MMSA since 2022-09)."""

    def embed(self, x_in: Tensor) -> Tensor:
        return x_in * math.sqrt(self.embed_dim)


@dataclass
class MulTOutput(ModelOutput):
    """MulT outputs. ``prediction (B, 1)``: score, or logit for binary tasks."""

    prediction: Tensor
    last_h: dict[str, Tensor]
    """``(B, 2d)`` last step of each mem transformer, keyed ``"text"``, ``"audio"``, ``"vision"``."""
    fused: Tensor
    """``(B, 6d)`` the concatenated last steps (l, a, v) that the head reads (MMSA ``Feature_f``)."""


class MulT(FoldedInferenceCache, MERModel):
    """MulT baseline; see the module docstring. Build it with ``create_model("mult", spec, **cfg)``."""

    name = "mult"

    def __init__(self, spec: DatasetSpec, config: MulTConfig) -> None:
        super().__init__(spec, config)
        cfg = config
        d = cfg.d_model
        self.text_model = build_text_encoder(cfg, spec, "MulT")
        dims = {m: spec.feature_dims[LONG_NAMES[m]] for m in MODS}
        if self.text_model is not None:
            dims["l"] = self.text_model.hidden_size
        self.in_dims = dims
        self.kernels = {"l": cfg.kernel_l, "a": cfg.kernel_a, "v": cfg.kernel_v}
        self.skip_proj = {m: dims[m] == d for m in MODS}  # MMSA feeds a d-wide input straight through
        self.proj = nn.ModuleDict(
            {m: nn.Conv1d(dims[m], d, self.kernels[m], padding=0, bias=False) for m in MODS if not self.skip_proj[m]}
        )
        encoder = GroupedMulTEncoder if cfg.position_embedding else _NoPositionEncoder
        # attention dropout by source modality; the mem transformers all use attn_dropout (MMSA get_network)
        self.crossmodal = encoder(6, d, cfg.num_heads, cfg.nlevels, **cfg.encoder_kwargs([s for _, s in CROSS_PAIRS]))
        self.mem = encoder(3, 2 * d, cfg.num_heads, cfg.mem_layers, **cfg.encoder_kwargs(["l"] * 3))
        self.proj1 = nn.Linear(6 * d, 6 * d)
        self.proj2 = nn.Linear(6 * d, 6 * d)
        self.out_layer = nn.Linear(6 * d, 1)

    def _inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Channel-first inputs ``(B, D_m, T_m)``, text through BERT and text dropout."""
        keys = {m: "text_bert" if m == "l" and self.text_model is not None else LONG_NAMES[m] for m in MODS}
        for m, key in keys.items():
            if key not in batch:
                raise KeyError(f"MulT batch lacks {key!r} (has {sorted(batch)})")
            x = batch[key]
            width = 3 if key == "text_bert" else self.in_dims[m]
            axis = 1 if key == "text_bert" else 2
            if x.dim() != 3 or x.shape[axis] != width:
                want = "(B, 3, T_l)" if key == "text_bert" else f"(B, T, {width})"
                raise ValueError(f"MulT batch[{key!r}]: expected shape {want}, found {tuple(x.shape)}")
            t = x.shape[2] if key == "text_bert" else x.shape[1]
            if not self.skip_proj[m] and t < self.kernels[m]:
                raise ValueError(f"MulT batch[{key!r}]: {t} time steps, fewer than kernel_{m}={self.kernels[m]}")
        text = self.text_model(batch["text_bert"]) if self.text_model is not None else batch["text"]  # (B, T_l, D_l)
        return {
            "l": fast_dropout(text.transpose(1, 2), self.config.text_dropout, self.training),  # (B, D_l, T_l)
            "a": batch["audio"].transpose(1, 2),  # (B, D_a, T_a)
            "v": batch["vision"].transpose(1, 2),  # (B, D_v, T_v)
        }

    def encode(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Last steps of the mem transformers per modality ``(B, 2d)`` and their concatenation ``(B, 6d)``."""
        x = self._inputs(batch)
        seq = {  # temporal projection, then time-major tokens for the transformers: (B, T'_m, d)
            m: (x[m] if self.skip_proj[m] else self.proj[m](x[m])).transpose(1, 2) for m in MODS
        }
        h = self.crossmodal([seq[t] for t, _ in CROSS_PAIRS], [seq[s] for _, s in CROSS_PAIRS])  # 6 x (B, T'_t, d)
        mem_in = [torch.cat([h[2 * i], h[2 * i + 1]], dim=-1) for i in range(3)]  # 3 x (B, T'_m, 2d)
        last = self.mem(mem_in, last_only=True)  # 3 x (B, 2d): the last time step only
        last_h = {LONG_NAMES[m]: last[i] for i, m in enumerate(MODS)}
        return last_h, torch.cat(last, dim=1)  # (B, 6d), order l, a, v

    def classify(self, fused: Tensor) -> Tensor:
        """Residual projection head: ``(B, 6d) -> (B, 1)``."""
        hidden = fast_dropout(torch.relu(self.proj1(fused)), self.config.output_dropout, self.training)
        return self.out_layer(self.proj2(hidden) + fused)

    def forward(self, batch: dict[str, Tensor]) -> MulTOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch with ``text`` ``(B, T_l, D_l)`` (or
                ``text_bert`` ``(B, 3, T_l)`` with a text encoder), ``audio`` ``(B, T_a, D_a)`` and
                ``vision`` ``(B, T_v, D_v)``; lengths may differ between modalities (unaligned data).

        Returns:
            :class:`MulTOutput` with ``prediction`` ``(B, 1)``.
        """
        last_h, fused = self.encode(batch)
        return MulTOutput(prediction=self.classify(fused), last_h=last_h, fused=fused)


@register_model("mult", "Multimodal Transformer (Tsai et al., ACL 2019), MMSA's MULT without CTC", config=MulTConfig)
def mult(spec: DatasetSpec, **cfg) -> MulT:
    """Build :class:`MulT` for ``spec`` from :class:`MulTConfig` keyword arguments."""
    return MulT(spec, MulTConfig(**cfg))
