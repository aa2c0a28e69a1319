"""The grouped MulT encoder's eval-mode math in plain tensor operations, for graph export (ONNX).

:class:`~emodistill.models.layers.grouped_transformer.GroupedMulTEncoder` is organised for CPU speed:
LayerNorms folded into projections and cached across calls, chunked attention through a custom
autograd function, masks and sinusoid tables cached per shape in Python dictionaries. A graph exporter
(``torch.export``) cannot trace those caches, and the shapes they are keyed on must stay symbolic for
dynamic batch and sequence axes. This module computes the same function as the encoder in eval mode
(docs/dmd-spec.md §3.9: embedding with the zero-channel positional rule, pre-LN layers, causal mask
``triu(-inf, 1 + |T_k - T_q|)``, final LayerNorm), one member at a time, from the unfolded parameters,
with every mask and table built from ``arange`` on the input's own shape. It has no dropout: it is an
inference path. Results agree with the fast path to float32 rounding (tested to 1e-5).

:func:`plain_encoders` switches every grouped encoder of a model to it for the duration of a block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LN_EPS = 1e-5  # nn.LayerNorm's default, as the encoder uses


@contextmanager
def plain_encoders(model: nn.Module) -> Iterator[None]:
    """Inside the block, every module of ``model`` with a ``plain`` switch (the grouped MulT encoders) runs
    :func:`plain_forward`; the switches are restored afterwards."""
    switched = [m for m in model.modules() if hasattr(m, "plain")]
    old = [m.plain for m in switched]
    for m in switched:
        m.plain = True
    try:
        yield
    finally:
        for m, value in zip(switched, old, strict=True):
            m.plain = value


def plain_forward(
    enc: nn.Module, x_in: Tensor | Sequence[Tensor], kv_in: Tensor | Sequence[Tensor] | None, last_only: bool
) -> Tensor | list[Tensor]:
    """:meth:`GroupedMulTEncoder.forward` in eval mode, member by member; same inputs and outputs."""
    stacked = isinstance(x_in, Tensor)
    xs = list(x_in.unbind(0)) if stacked else list(x_in)
    kvs = None if kv_in is None else (list(kv_in.unbind(0)) if isinstance(kv_in, Tensor) else list(kv_in))
    # compared, not hashed: under torch.export the sizes are symbols, and hashing one would fix its value
    same = all(x.shape == xs[0].shape for x in xs) and (kvs is None or all(k.shape == kvs[0].shape for k in kvs))
    if same:  # every member on the same shapes (aligned data): all members in one set of batched products
        y = _members(enc, torch.stack(xs), None if kvs is None else torch.stack(kvs), last_only)
        return y if stacked else list(y.unbind(0))
    out = [_member(enc, g, xs[g], None if kvs is None else kvs[g], last_only) for g in range(len(xs))]
    return torch.stack(out) if stacked else out


def _members(enc: nn.Module, x_in: Tensor, kv_in: Tensor | None, last_only: bool) -> Tensor:
    """All ``G`` members at once on ``x_in (G, B, T_q, E)`` (and ``kv_in (G, B, T_k, E)``), each with its own
    weights through broadcast products: ``(G, B, T_q, E)`` or ``(G, B, E)``. Same math as :func:`_member`."""
    g, bsz, t_q, e = x_in.shape
    heads, scale = enc.num_heads, enc.head_dim**-0.5
    hd = e // heads

    def ln(x: Tensor, w: Tensor, b: Tensor) -> Tensor:  # per-member affine: w, b (G, E)
        return F.layer_norm(x, (e,), None, None, _LN_EPS) * w[:, None, None] + b[:, None, None]

    def lin(x: Tensor, w: Tensor, b: Tensor) -> Tensor:  # x (G, B, T, I), w (G, O, I), b (G, O)
        return torch.matmul(x, w.transpose(-1, -2).unsqueeze(1)) + b[:, None, None]

    def split_heads(x: Tensor) -> Tensor:  # (G, B, T, E) -> (G, B, h, T, hd)
        return x.reshape(g, bsz, x.shape[2], heads, hd).transpose(2, 3)

    x = x_in * math.sqrt(e) + _positional(x_in)
    kv = None if kv_in is None else kv_in * math.sqrt(e) + _positional(kv_in)
    t_k = t_q if kv is None else kv.shape[2]
    masked = None
    if enc.attn_mask:
        i = torch.arange(t_q, device=x.device).unsqueeze(1)
        j = torch.arange(t_k, device=x.device).unsqueeze(0)
        masked = (j - i) >= 1 + torch.abs(torch.tensor(t_k - t_q, device=x.device))  # (T_q, T_k)
    for layer in range(enc.num_layers):
        w_in, b_in = enc.in_proj_weight[layer], enc.in_proj_bias[layer]  # (G, 3E, E), (G, 3E)
        ln0 = (enc.ln0_weight[layer], enc.ln0_bias[layer])
        x_hat = ln(x, *ln0)
        src = x_hat if kv is None else ln(kv, *ln0)
        q = lin(x_hat, w_in[:, :e], b_in[:, :e]) * scale
        k = lin(src, w_in[:, e : 2 * e], b_in[:, e : 2 * e])
        v = lin(src, w_in[:, 2 * e :], b_in[:, 2 * e :])
        scores = split_heads(q) @ split_heads(k).transpose(-1, -2)  # (G, B, h, T_q, T_k)
        if masked is not None:
            scores = scores.masked_fill(masked, float("-inf"))
        attn = (torch.softmax(scores, dim=-1) @ split_heads(v)).transpose(2, 3).reshape(g, bsz, t_q, e)
        x = x + lin(attn, enc.out_proj_weight[layer], enc.out_proj_bias[layer])
        h = torch.relu(lin(ln(x, enc.ln1_weight[layer], enc.ln1_bias[layer]), enc.fc1_weight[layer],
                           enc.fc1_bias[layer]))
        x = x + lin(h, enc.fc2_weight[layer], enc.fc2_bias[layer])
    x = ln(x, enc.norm_weight, enc.norm_bias)
    return x[:, :, -1] if last_only else x


def _positional(x_in: Tensor) -> Tensor:
    """fairseq sinusoidal PE of ``(B, T, E)`` under the zero-channel rule (step ``t`` -> row ``t + 1`` where
    channel 0 is non-zero, the zero row elsewhere), built from the input's symbolic length."""
    t, e = x_in.shape[-2], x_in.shape[-1]
    half = e // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=x_in.device) * -step)  # (h,)
    pos = torch.arange(1, t + 1, dtype=torch.float32, device=x_in.device)  # (T,)
    angles = pos.unsqueeze(1) * freqs.unsqueeze(0)  # (T, h)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (T, 2h)
    if e % 2 == 1:
        table = F.pad(table, (0, 1))
    nonzero = (x_in[..., 0] != 0).unsqueeze(-1)  # (B, T, 1)
    return torch.where(nonzero, table.to(x_in.dtype), torch.zeros((), dtype=x_in.dtype, device=x_in.device))


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, _LN_EPS)


def _attention(q: Tensor, k: Tensor, v: Tensor, heads: int, causal: bool) -> Tensor:
    """Multi-head attention of ``q (B, T_q, E)`` (pre-scaled) on ``k, v (B, T_k, E)``; ``(B, T_q, E)``."""
    bsz, t_q, e = q.shape
    t_k = k.shape[1]
    hd = e // heads
    qh = q.reshape(bsz, t_q, heads, hd).transpose(1, 2)  # (B, h, T_q, hd)
    kh = k.reshape(bsz, t_k, heads, hd).transpose(1, 2)
    vh = v.reshape(bsz, t_k, heads, hd).transpose(1, 2)
    scores = qh @ kh.transpose(-1, -2)  # (B, h, T_q, T_k)
    if causal:  # query i sees keys j <= i + |T_k - T_q|
        i = torch.arange(t_q, device=q.device).unsqueeze(1)
        j = torch.arange(t_k, device=q.device).unsqueeze(0)
        masked = (j - i) >= 1 + torch.abs(torch.tensor(t_k - t_q, device=q.device))  # (T_q, T_k)
        scores = scores.masked_fill(masked, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return (probs @ vh).transpose(1, 2).reshape(bsz, t_q, e)


def _member(enc: nn.Module, g: int, x_in: Tensor, kv_in: Tensor | None, last_only: bool) -> Tensor:
    """Encoder member ``g`` on ``x_in (B, T_q, E)`` (and ``kv_in (B, T_k, E)``): ``(B, T_q, E)`` or ``(B, E)``."""
    e, heads, scale = enc.embed_dim, enc.num_heads, enc.head_dim**-0.5
    x = x_in * math.sqrt(e) + _positional(x_in)
    kv = None if kv_in is None else kv_in * math.sqrt(e) + _positional(kv_in)
    for layer in range(enc.num_layers):
        w_in, b_in = enc.in_proj_weight[layer, g], enc.in_proj_bias[layer, g]  # (3E, E), (3E,)
        ln0 = (enc.ln0_weight[layer, g], enc.ln0_bias[layer, g])
        x_hat = _layer_norm(x, *ln0)
        src = x_hat if kv is None else _layer_norm(kv, *ln0)  # LN0 is shared by query, key and value
        q = F.linear(x_hat, w_in[:e], b_in[:e]) * scale
        k = F.linear(src, w_in[e : 2 * e], b_in[e : 2 * e])
        v = F.linear(src, w_in[2 * e :], b_in[2 * e :])
        attn = _attention(q, k, v, heads, enc.attn_mask)
        x = x + F.linear(attn, enc.out_proj_weight[layer, g], enc.out_proj_bias[layer, g])
        h = _layer_norm(x, enc.ln1_weight[layer, g], enc.ln1_bias[layer, g])
        h = torch.relu(F.linear(h, enc.fc1_weight[layer, g], enc.fc1_bias[layer, g]))
        x = x + F.linear(h, enc.fc2_weight[layer, g], enc.fc2_bias[layer, g])
    x = _layer_norm(x, enc.norm_weight[g], enc.norm_bias[g])
    return x[:, -1] if last_only else x
