"""MulT transformer encoders (Tsai et al., ACL 2019) exactly as DMD's official code computes them, grouped.

DMD (Li et al., CVPR 2023) runs twelve MulT encoders per forward pass: three self-attention encoders on
the shared features, six crossmodal encoders on the private features and three "mem" encoders. Members
of each family have identical parameter shapes, so one :class:`GroupedMulTEncoder` holds a family with
its weights stacked as ``(layers, members, ...)`` and runs all members with batched matmuls when their
sequence lengths agree (MOSI aligned) or nearly agree (zero-padded, exactly masked); otherwise it runs
each group of equal-length members on its own (unaligned data) with the members' weight slices. The
math is that of the official encoder (``trains/subNets/transformers_encoder``, docs/dmd-spec.md §3.9):

* embedding: ``x = sqrt(E) * x_in + PE(x_in)``, then embedding dropout; crossmodal keys and values are
  embedded once from the source sequence (each with its own dropout mask) and stay fixed across layers;
* fairseq sinusoidal PE, positions ``1..T`` where input channel 0 is non-zero, position 0 (a zero row)
  where it is exactly zero;
* pre-LN layers: ``x + MHA(LN0(x), LN0(k), LN0(v))`` (LN0 shared by query, key and value), then
  ``x + fc2(relu(fc1(LN1(x))))``; a final LayerNorm;
* MHA with packed in-projection, ``q`` scaled by ``head_dim ** -0.5``, additive ``-inf`` causal mask
  ``triu(-inf, 1 + |T_k - T_q|)``, float32 softmax, dropout on the attention probabilities (each
  member its own rate), then the out-projection. There is no key-padding mask.

Exact rewrites used for speed (they change rounding only, ~1e-7 relative); kernels in
:mod:`emodistill.models.layers.attention_kernels`:

* each LayerNorm's affine map is folded into the projection that follows it
  (``W (gamma * x_hat + beta) + b``), for all layers at once; the crossmodal keys/values are then
  normalised once instead of once per layer; the ``q`` scaling is folded into the query rows;
  inference with fixed weights folds once for many calls inside :func:`folded_weight_cache` (which the
  models on these encoders return from ``MERModel.inference_cache``);
* with ``last_only=True`` the last layer computes only the final query row, which is all DMD reads
  from the self-attention and mem encoders (the causal mask lets the last row see every key).

Tensors are batch-first inside the encoder: members ``(G, B, T, E)``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emodistill.models.layers.attention_kernels import fast_dropout, future_mask, member_masks, multihead_attention
from emodistill.models.layers.plain_encoder import plain_forward

__all__ = [
    "DROPOUT_FIELDS",
    "GroupedMulTEncoder",
    "fast_dropout",
    "folded_weight_cache",
    "future_mask",
    "positional_embedding",
    "sinusoidal_table",
]

DROPOUT_FIELDS = (
    "text_dropout",
    "attn_dropout",
    "attn_dropout_a",
    "attn_dropout_v",
    "relu_dropout",
    "res_dropout",
    "embed_dropout",
    "output_dropout",
)
"""Config fields of the eight dropout rates of a model built on these encoders, MulT's set, which DMD keeps:
text input, attention by source modality (``l``, ``a``, ``v``), FFN ReLU, residual, embedding, output head.
Each must lie in [0, 1)."""

_LN_EPS = 1e-5  # nn.LayerNorm default, as in the official encoder

_FOLD_CACHE: ContextVar[dict | None] = ContextVar("emodistill_fold_cache", default=None)


@contextmanager
def folded_weight_cache(store: dict | None = None) -> Iterator[None]:
    """Inside the block, encoders in eval mode with gradients off fold their LayerNorms into the projections
    once and reuse the folded weights across calls (inference over many batches or clips).

    Folding is a few dozen small ops per encoder family per call, about a quarter of one clip's latency.
    A reuse is checked against every parameter's version counter and storage, so optimizer steps,
    ``load_state_dict`` and in-place edits under ``torch.no_grad()`` refold; in-place edits through
    ``.data`` bypass version counters and must not happen inside the block. Training mode or enabled
    gradients never use the cache. It is dropped when the block ends, unless ``store`` (a dict the caller
    keeps, initially empty) holds it across blocks, as a predictor does for one clip at a time. Blocks
    may nest; the inner one uses its own store.
    """
    token = _FOLD_CACHE.set({} if store is None else store)
    try:
        yield
    finally:
        _FOLD_CACHE.reset(token)


@lru_cache(maxsize=128)
def sinusoidal_table(num_positions: int, dim: int, device: torch.device | None = None) -> Tensor:
    """fairseq sinusoidal embedding table, float32 ``(num_positions, dim)``; row 0 (padding) is zero.

    Row ``p`` is ``[sin(p * f_0..f_{h-1}), cos(p * f_0..f_{h-1})]`` (concatenated, not interleaved) with
    ``h = dim // 2`` and ``f_j = exp(-j * ln(10000) / (h - 1))``; an odd ``dim`` gets a zero last column.
    Cached per ``(num_positions, dim, device)``; callers must not modify the result.
    """
    half = dim // 2
    if half < 2:
        raise ValueError(f"sinusoidal_table: dim={dim} too small, need dim >= 4 (half - 1 divides)")
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)  # (h,)
    angles = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1) * freqs.unsqueeze(0)  # (P, h)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (P, 2h)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[0] = 0.0
    return table.to(device)


def positional_embedding(x_in: Tensor) -> Tensor:
    """PE of a batch-first input ``(..., T, E)`` under the zero-channel padding rule; same shape.

    Step ``t`` gets table row ``t + 1`` where ``x_in[..., t, 0] != 0`` and the zero row otherwise
    (fairseq ``make_positions`` with padding index 0 applied to input channel 0).
    """
    t, e = x_in.shape[-2:]
    table = sinusoidal_table(t + 1, e, x_in.device)[1:].to(x_in.dtype)  # (T, E)
    nonzero = (x_in[..., 0] != 0).unsqueeze(-1)  # (..., T, 1)
    return torch.where(nonzero, table, table.new_zeros(()))


PAD_RATIO = 1.25
"""Members whose lengths differ by at most this factor run batched on zero-padded sequences."""


def _close(lengths: Sequence[int]) -> bool:
    return max(lengths) <= PAD_RATIO * min(lengths)


def _normalize(x: Tensor) -> Tensor:
    """LayerNorm over the last axis without affine parameters."""
    return F.layer_norm(x, x.shape[-1:], eps=_LN_EPS)


def _fold(weight: Tensor, bias: Tensor, gamma: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Fold a LayerNorm affine into the next projection: ``W (gamma * x_hat + beta) + b = x_hat @ Wf^T + bf``.

    Shapes: weight ``(..., O, E)``, bias ``(..., O)``, gamma/beta ``(..., E)``; returns ``Wf^T (..., E, O)``
    and ``bf (..., 1, O)``.
    """
    w = weight * gamma.unsqueeze(-2)  # (..., O, E)
    b = bias.unsqueeze(-2) + torch.matmul(beta.unsqueeze(-2), weight.transpose(-1, -2))  # (..., 1, O)
    return w.transpose(-1, -2), b


def _proj(x: Tensor, w_t: Tensor, b: Tensor) -> Tensor:
    """Per-member affine map: x ``(g, B, T, E)``, w_t ``(g, E, O)``, b ``(g, 1, O)`` -> ``(g, B, T, O)``."""
    g, bsz, t, e = x.shape
    return torch.baddbmm(b, x.reshape(g, bsz * t, e), w_t).view(g, bsz, t, -1)


_PARAM_SHAPES = {  # name -> shape per (layer, member) in units of E; official name in the comment
    "in_proj_weight": (3, 1),  # self_attn.in_proj_weight, packed [W_q; W_k; W_v]
    "in_proj_bias": (3,),
    "out_proj_weight": (1, 1),  # self_attn.out_proj.weight
    "out_proj_bias": (1,),
    "fc1_weight": (4, 1),
    "fc1_bias": (4,),
    "fc2_weight": (1, 4),
    "fc2_bias": (1,),
    "ln0_weight": (1,),  # layer_norms.0
    "ln0_bias": (1,),
    "ln1_weight": (1,),  # layer_norms.1
    "ln1_bias": (1,),
}


class GroupedMulTEncoder(nn.Module):
    """``G`` structurally identical MulT encoders (self-attention or crossmodal) with stacked weights.

    Parameters are ``(L, G, ...)`` tensors named after the official per-layer parameters
    (``in_proj_weight (L, G, 3E, E)``, ``fc1_weight (L, G, 4E, E)``, ``ln0_weight (L, G, E)``, ...) plus
    the final LayerNorm ``norm_weight``/``norm_bias (G, E)``.

    Members run batched when their ``(T_q, T_k)`` agree; when lengths differ by at most
    :data:`PAD_RATIO` (MOSEI aligned: 46 / 48 / 50) they run batched on zero-padded sequences with
    per-member masks; otherwise (unaligned data) each group of equal-length members runs on its own.

    Args:
        members: number of encoders ``G``.
        embed_dim: model width ``E``.
        num_heads: attention heads ``h`` (``E % h == 0``).
        num_layers: layers ``L`` per encoder.
        attn_dropouts: attention-probability dropout per member (length ``G``).
        relu_dropout: dropout after the FFN ReLU (all members).
        res_dropout: dropout on each sublayer output before the residual add (all members).
        embed_dropout: dropout on the scaled, position-embedded inputs (all members).
        attn_mask: causal masks in every layer (DMD: True).
    """

    def __init__(
        self,
        members: int,
        embed_dim: int,
        num_heads: int,
        num_layers: int,
        attn_dropouts: Sequence[float],
        relu_dropout: float = 0.0,
        res_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        attn_mask: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if len(attn_dropouts) != members:
            raise ValueError(
                f"attn_dropouts has {len(attn_dropouts)} rates, expected one per member ({members})"
            )
        for p in (*attn_dropouts, relu_dropout, res_dropout, embed_dropout):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"dropout rate {p} outside [0, 1)")
        self.members, self.embed_dim = members, embed_dim
        self.num_heads, self.num_layers = num_heads, num_layers
        self.head_dim = embed_dim // num_heads
        self.attn_dropouts = tuple(float(p) for p in attn_dropouts)
        self.relu_dropout, self.res_dropout, self.embed_dropout = relu_dropout, res_dropout, embed_dropout
        self.attn_mask = attn_mask
        self.plain = False  # True: the exportable eval path (plain_encoder.plain_encoders switches it)
        for name, units in _PARAM_SHAPES.items():
            shape = (num_layers, members, *(u * embed_dim for u in units))
            self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self.norm_weight = nn.Parameter(torch.ones(members, embed_dim))  # final LayerNorm
        self.norm_bias = nn.Parameter(torch.zeros(members, embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: Xavier-uniform weights per (layer, member), zero biases, LayerNorm ones/zeros.

        The official out-projection is an ``nn.Linear`` that MHA re-initialises Xavier-uniform.
        """
        with torch.no_grad():
            for name in ("in_proj_weight", "out_proj_weight", "fc1_weight", "fc2_weight"):
                for w in getattr(self, name).flatten(0, 1):
                    nn.init.xavier_uniform_(w)
            for name in ("in_proj_bias", "out_proj_bias", "fc1_bias", "fc2_bias", "ln0_bias", "ln1_bias"):
                getattr(self, name).zero_()
            self.ln0_weight.fill_(1.0)
            self.ln1_weight.fill_(1.0)
            self.norm_weight.fill_(1.0)
            self.norm_bias.zero_()

    def embed(self, x_in: Tensor) -> Tensor:
        """``sqrt(E) * x_in + PE(x_in)`` without dropout; ``(..., T, E)`` -> same shape."""
        return x_in * math.sqrt(self.embed_dim) + positional_embedding(x_in)

    def forward(
        self,
        x_in: Tensor | Sequence[Tensor],
        kv_in: Tensor | Sequence[Tensor] | None = None,
        *,
        last_only: bool = False,
    ) -> Tensor | list[Tensor]:
        """Encode every member.

        Args:
            x_in: query-stream inputs, stacked ``(G, B, T_q, E)`` or a list of ``G`` tensors
                ``(B, T_q[g], E)`` (lengths may differ between members).
            kv_in: crossmodal key/value sources, same layout with ``T_k``; None for self-attention.
            last_only: return only the last time step (self-attention only); the last layer then
                computes just that row.

        Returns:
            Final-LayerNorm outputs in the input's layout: ``(G, B, T_q, E)`` / list of ``(B, T_q, E)``,
            or ``(G, B, E)`` / list of ``(B, E)`` with ``last_only``.
        """
        if last_only and kv_in is not None:
            raise ValueError("last_only is only supported for self-attention encoders")
        if self.plain:
            return plain_forward(self, x_in, kv_in, last_only)
        if isinstance(x_in, Tensor):
            return self._run(slice(None), x_in, kv_in, last_only, self.attn_dropouts)
        if len(x_in) != self.members or (kv_in is not None and len(kv_in) != self.members):
            raise ValueError(f"expected {self.members} member inputs")
        t_q = tuple(x.shape[1] for x in x_in)
        t_k = t_q if kv_in is None else tuple(kv.shape[1] for kv in kv_in)
        if len(set(zip(t_q, t_k, strict=True))) > 1 and _close(t_q) and _close(t_k):
            return self._run_padded(x_in, kv_in, t_q, t_k, last_only)
        # Batch the members whose (T_q, T_k) agree; run each such bucket on its own.
        buckets: dict[tuple, list[int]] = {}
        for g, x in enumerate(x_in):
            key = (tuple(x.shape), None if kv_in is None else tuple(kv_in[g].shape))
            buckets.setdefault(key, []).append(g)
        out: list[Tensor] = [x_in[0]] * self.members
        for idx in buckets.values():
            xq = torch.stack([x_in[g] for g in idx])
            xkv = None if kv_in is None else torch.stack([kv_in[g] for g in idx])
            if len(idx) == self.members:
                sel: slice | Tensor = slice(None)
            elif idx == list(range(idx[0], idx[-1] + 1)):  # contiguous members: weight views, no gather
                sel = slice(idx[0], idx[-1] + 1)
            else:
                sel = torch.tensor(idx, device=xq.device)
            y = self._run(sel, xq, xkv, last_only, [self.attn_dropouts[g] for g in idx])
            for j, g in enumerate(idx):
                out[g] = y[j]
        return out

    def _run_padded(
        self,
        x_in: Sequence[Tensor],
        kv_in: Sequence[Tensor] | None,
        t_q: tuple[int, ...],
        t_k: tuple[int, ...],
        last_only: bool,
    ) -> list[Tensor]:
        """All members batched with their sequences zero-padded at the end to a common length.

        Exact for the real rows: a per-member mask gives every real query exactly the keys the
        official mask gives it (and never a padded key); padded rows are computed and dropped.
        """
        pad_q, pad_k = max(t_q), max(t_k)
        xq = torch.stack([F.pad(x, (0, 0, 0, pad_q - x.shape[1])) for x in x_in])  # (G, B, T_q*, E)
        xkv = None if kv_in is None else torch.stack([F.pad(x, (0, 0, 0, pad_k - x.shape[1])) for x in kv_in])
        masks = member_masks(t_q, t_k, pad_q, pad_k, self.attn_mask, xq.device)  # (G, T_q*, T_k*)
        y = self._run(slice(None), xq, xkv, last_only, self.attn_dropouts, masks, t_q)
        return [y[g] if last_only else y[g, :, : t_q[g]] for g in range(self.members)]

    def _folded(self, sel: slice | Tensor) -> list[dict[str, Tensor]]:
        """:meth:`_fold` of members ``sel``, reused inside :func:`folded_weight_cache` while no parameter
        has changed (eval mode, gradients off)."""
        cache = _FOLD_CACHE.get()
        if cache is None or self.training or torch.is_grad_enabled():
            return self._fold(sel)
        members = (sel.start, sel.stop) if isinstance(sel, slice) else tuple(sel.tolist())
        state = tuple((p._version, p.data_ptr(), p.device, p.dtype) for p in self.parameters())
        key = (id(self), members)
        hit = cache.get(key)
        # the weak reference guards against a new encoder reusing a collected one's id()
        if hit is None or hit[0]() is not self or hit[1] != state:
            hit = cache[key] = (weakref.ref(self), state, self._fold(sel))
        return hit[2]

    def _fold(self, sel: slice | Tensor) -> list[dict[str, Tensor]]:
        """Per-layer weights of members ``sel``, LN0 folded into the in-projection and LN1 into fc1.

        Layer dicts hold ``in_w (g, E, 3E)`` / ``in_b (g, 1, 3E)`` (q columns pre-scaled) and its ``q`` /
        ``kv`` / ``k`` / ``v`` column parts, ``out``, ``fc1`` and ``fc2`` weights/biases (weights transposed
        for ``x @ W``), plus the final LayerNorm's ``norm_w`` / ``norm_b (g, E)`` in every dict. Parts come
        from ``unbind`` / ``split`` (not indexing) so that backward concatenates gradients instead of
        zero-filling a full-size gradient per use.
        """
        full = isinstance(sel, slice) and sel == slice(None)

        def take(p: Tensor, member_dim: int = 1) -> Tensor:
            return p if full else (p[:, sel] if member_dim == 1 else p[sel])

        e, scaling = self.embed_dim, self.head_dim**-0.5
        w_in, b_in = take(self.in_proj_weight), take(self.in_proj_bias)
        row_scale = torch.ones(3 * e, dtype=w_in.dtype, device=w_in.device)
        row_scale[:e] = scaling  # scaling the q rows of W and b scales q = W_q LN0(x) + b_q as a whole
        in_w, in_b = _fold(
            w_in * row_scale.unsqueeze(-1), b_in * row_scale, take(self.ln0_weight), take(self.ln0_bias)
        )  # (L, g, E, 3E), (L, g, 1, 3E)
        fc1_w, fc1_b = _fold(
            take(self.fc1_weight), take(self.fc1_bias), take(self.ln1_weight), take(self.ln1_bias)
        )
        stacked = dict(
            in_w=in_w,
            in_b=in_b,
            fc1_w=fc1_w,
            fc1_b=fc1_b,
            out_w=take(self.out_proj_weight).transpose(-1, -2),
            out_b=take(self.out_proj_bias).unsqueeze(-2),
            fc2_w=take(self.fc2_weight).transpose(-1, -2),
            fc2_b=take(self.fc2_bias).unsqueeze(-2),
        )
        layers = zip(*(t.unbind(0) for t in stacked.values()), strict=True)
        per_layer = [dict(zip(stacked, parts, strict=True)) for parts in layers]
        norm_w, norm_b = take(self.norm_weight, 0), take(self.norm_bias, 0)
        for w in per_layer:
            w["q_w"], w["kv_w"] = w["in_w"].split([e, 2 * e], dim=-1)
            w["q_b"], w["kv_b"] = w["in_b"].split([e, 2 * e], dim=-1)
            w["k_w"], w["v_w"] = w["kv_w"].split(e, dim=-1)
            w["k_b"], w["v_b"] = w["kv_b"].split(e, dim=-1)
            w["norm_w"], w["norm_b"] = norm_w, norm_b
        return per_layer

    def _run(
        self,
        sel: slice | Tensor,
        x_in: Tensor,
        kv_in: Tensor | None,
        last_only: bool,
        attn_p: Sequence[float],
        masks: Tensor | None = None,
        t_q: tuple[int, ...] | None = None,
    ) -> Tensor:
        """Encode the members ``sel`` on stacked inputs ``x_in (g, B, T_q, E)``, ``kv_in (g, B, T_k, E)``.

        ``masks (g, T_q, T_k)`` (padded inputs, see :meth:`_run_padded`) replaces the shared causal
        mask; then ``t_q`` gives each member's real length, whose last row ``last_only`` returns.
        """
        ws = self._folded(sel)
        e, tr = self.embed_dim, self.training
        x = fast_dropout(self.embed(x_in), self.embed_dropout, tr)  # (g, B, T_q, E)
        k_hat = v_hat = None
        if kv_in is not None:
            kv = self.embed(kv_in)  # (g, B, T_k, E)
            if tr and self.embed_dropout > 0:  # keys and values get independent dropout masks
                k_hat = _normalize(fast_dropout(kv, self.embed_dropout, True))
                v_hat = _normalize(fast_dropout(kv, self.embed_dropout, True))
            else:
                k_hat = _normalize(kv)  # keys and values share one (normalised) input
        for i, w_i in enumerate(ws):
            last = last_only and i == self.num_layers - 1
            x_hat = _normalize(x)  # LN0 without affine (folded into the projections)
            if kv_in is None and not last:  # self-attention: q, k, v all from LN0(x)
                q, k, v = _proj(x_hat, w_i["in_w"], w_i["in_b"]).split(e, dim=-1)
            elif kv_in is None:  # last self-attention layer: only the final query row is needed
                if t_q is None:
                    x_last, x = x_hat[:, :, -1:], x[:, :, -1:]
                else:  # each member's own last real row; its mask row keeps padded keys out
                    g_idx, rows = torch.arange(len(t_q)), torch.tensor(t_q) - 1
                    x_last, x = x_hat[g_idx, :, rows].unsqueeze(2), x[g_idx, :, rows].unsqueeze(2)
                    masks = masks[g_idx, rows].unsqueeze(1)  # (g, 1, T_k)
                q = _proj(x_last, w_i["q_w"], w_i["q_b"])
                k, v = _proj(x_hat, w_i["kv_w"], w_i["kv_b"]).split(e, dim=-1)
            else:  # crossmodal: q from the query stream, k/v from the fixed source embeddings
                q = _proj(x_hat, w_i["q_w"], w_i["q_b"])
                if v_hat is None:
                    k, v = _proj(k_hat, w_i["kv_w"], w_i["kv_b"]).split(e, dim=-1)
                else:
                    k, v = _proj(k_hat, w_i["k_w"], w_i["k_b"]), _proj(v_hat, w_i["v_w"], w_i["v_b"])
            causal = self.attn_mask and not last
            attn = multihead_attention(q, k, v, self.num_heads, attn_p, tr, causal, member_mask=masks)
            x = x + fast_dropout(_proj(attn, w_i["out_w"], w_i["out_b"]), self.res_dropout, tr)
            h = torch.relu(_proj(_normalize(x), w_i["fc1_w"], w_i["fc1_b"]))  # (g, B, T_q, 4E)
            h = _proj(fast_dropout(h, self.relu_dropout, tr), w_i["fc2_w"], w_i["fc2_b"])
            x = x + fast_dropout(h, self.res_dropout, tr)
        norm_w, norm_b = ws[-1]["norm_w"], ws[-1]["norm_b"]
        x = torch.addcmul(norm_b[:, None, None], _normalize(x), norm_w[:, None, None])  # final LN
        return x.squeeze(2) if last_only else x  # (g, B, T_q, E) or (g, B, E)
