"""What the models built on :class:`~emodistill.models.layers.grouped_transformer.GroupedMulTEncoder`
families share (DMD and DHMD, Li et al., CVPR 2023; MulT, Tsai et al., ACL 2019): the encoders'
hyper-parameters (:class:`GroupedEncoderConfig`, the base of ``DMDConfig`` and ``MulTConfig``), the
keyword arguments every family is built with (:meth:`GroupedEncoderConfig.encoder_kwargs`) and their
``inference_cache`` (:class:`FoldedInferenceCache`).

Kept apart from ``grouped_transformer`` (which it imports) so that the encoder module stays one concept:
the math of the encoder, not the configuration of the models around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from emodistill.models.layers.grouped_transformer import folded_weight_cache


@dataclass
class GroupedEncoderConfig:
    """Hyper-parameters of the grouped MulT encoders and of the inputs and heads around them: the first
    fields of ``DMDConfig`` and ``MulTConfig``, in this order. Defaults: the MOSI values of DMD's official
    ``config.json`` and of MMSA's ``config_regression.json`` (``mult``), which agree; a field's MOSEI value,
    the same in both, ends its description where it differs."""

    d_model: int = 50
    """Model width ``d`` of the projections and the self-attention / crossmodal encoders; the mem encoders
    use ``2d`` (``dst_feature_dim_nheads[0]``; MOSEI 30)."""
    num_heads: int = 10
    """Attention heads in every encoder (``dst_feature_dim_nheads[1]``; MOSEI 6)."""
    nlevels: int = 4
    """Layers per self-attention / crossmodal encoder; the mem encoders get ``max(nlevels, 3)``
    (``get_network(layers=3)``)."""
    kernel_l: int = 5
    """Temporal Conv1d kernel of the text projection, without padding: ``T' = T - k + 1``
    (``conv1d_kernel_size_l``)."""
    kernel_a: int = 5
    """Temporal Conv1d kernel of the audio projection (MOSEI 1)."""
    kernel_v: int = 5
    """Temporal Conv1d kernel of the vision projection (MOSEI 3)."""
    text_dropout: float = 0.5
    """Dropout on the text features (or the BERT output) before the projection (MOSEI 0.3)."""
    attn_dropout: float = 0.3
    """Attention-probability dropout of the text-sourced crossmodal encoders, of every mem encoder and
    (DMD) of the text self-attention encoder (MOSEI 0.4)."""
    attn_dropout_a: float = 0.2
    """Attention-probability dropout of the audio-sourced crossmodal encoders and (DMD) of the audio
    self-attention encoder (MOSEI 0)."""
    attn_dropout_v: float = 0.0
    """Attention-probability dropout of the vision-sourced crossmodal encoders and (DMD) of the vision
    self-attention encoder."""
    relu_dropout: float = 0.0
    """Dropout after the FFN ReLU in every encoder layer."""
    res_dropout: float = 0.0
    """Dropout on each encoder sublayer output before its residual add."""
    embed_dropout: float = 0.2
    """Dropout on the scaled (position-embedded) encoder inputs (MOSEI 0)."""
    output_dropout: float = 0.5
    """Dropout inside every residual FC head (DMD: homo, hetero, c and fusion heads; MulT: its projection
    head)."""
    attn_mask: bool = True
    """Causal masks ``triu(-inf, 1 + |T_k - T_q|)`` in every encoder (``attn_mask``)."""

    @property
    def mem_layers(self) -> int:
        """Layers of the mem encoders: ``max(nlevels, 3)`` (official and MMSA ``get_network(layers=3)``)."""
        return max(self.nlevels, 3)

    def encoder_kwargs(self, attn_sources: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments of a :class:`~emodistill.models.layers.grouped_transformer.GroupedMulTEncoder`
        family after ``(members, embed_dim, num_heads, num_layers)``.

        Args:
            attn_sources: per member, the one-letter modality its keys and values come from (``l``, ``a``,
                ``v``), which picks its attention dropout (``attn_dropout``, ``attn_dropout_a``,
                ``attn_dropout_v``), as the official / MMSA ``get_network`` does. The mem encoders use
                ``attn_dropout`` and so count as ``l``.

        Returns:
            ``attn_dropouts`` (one rate per member) and the rates and mask all members share.
        """
        by_source = {"l": self.attn_dropout, "a": self.attn_dropout_a, "v": self.attn_dropout_v}
        return dict(
            attn_dropouts=[by_source[m] for m in attn_sources],
            relu_dropout=self.relu_dropout,
            res_dropout=self.res_dropout,
            embed_dropout=self.embed_dropout,
            attn_mask=self.attn_mask,
        )


class FoldedInferenceCache:
    """Mixin of the models on grouped encoder families (``class DMD(FoldedInferenceCache, MERModel)``):
    their ``inference_cache`` folds the encoders' LayerNorms once per block."""

    def inference_cache(self, store: dict | None = None) -> AbstractContextManager[None]:
        """:func:`~emodistill.models.layers.grouped_transformer.folded_weight_cache`: the encoder families fold
        their LayerNorms once for the whole block, not once per call; see
        :meth:`~emodistill.models.base.MERModel.inference_cache`."""
        return folded_weight_cache(store)
