"""Numerical kernels of the grouped MulT encoder: dropout sampling and chunked causal attention.

They compute exactly what the official MulT code computes (docs/dmd-spec.md §3.9), organised for speed on CPU:

* **dropout** draws 32-bit integers (two per 64-bit word) and keeps an entry iff its integer is at or
  above ``p * 2**32 - 2**31``: Bernoulli(1 - p) at 2**-32 resolution (float uniforms give 2**-24).
  On CPU the words come from numpy's SFC64 (about 2.5x faster than torch's Mersenne Twister), seeded
  with a draw from torch's default generator, so ``torch.manual_seed`` still fixes every mask;
* masks are float 0/1 tensors written directly by the comparison (``torch.ge(..., out=float)``):
  multiplying by them is several times faster than ``where`` / ``masked_fill`` with bool masks;
  attention-probability dropout moves the ``1 / (1 - p)`` rescale onto ``v`` (the product is linear
  in the probabilities), so the large probability tensor is touched once;
* **chunks**: score tensors ``(rows, T_q, T_k)`` are processed in row chunks of at most
  :data:`SCORE_CHUNK` scores, which keeps them cache-sized;
* **row blocks**: under a causal mask, query rows ``r0:r1`` only need keys ``0:k_len``; computing each
  block on its key prefix skips fully masked columns (their probabilities are exactly 0);
* **GEMM orientation**: with ``head_dim`` 5, batched products whose output has only ``head_dim`` columns
  are ~3x slower than their transposes, so :class:`_AttentionCore` computes every product (forward and
  its hand-written backward) in the fast orientation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SCORE_CHUNK = 1 << 21
"""Most attention scores (float32: 8 MiB) materialised at once."""
ROW_BLOCK_ROWS = 24
"""Target query rows per causal row block (see :func:`row_blocks`)."""
ROW_BLOCKS_MAX = 4
"""Most row blocks per attention call."""
ROW_BLOCK_MIN_SCORES = 1 << 17
"""Below this many scores per call, row blocks cost more in per-op overhead than they save."""


@lru_cache(maxsize=128)
def future_mask(t_q: int, t_k: int, device: torch.device | None = None) -> Tensor | None:
    """Additive causal mask ``triu(full(-inf, (T_q, T_k)), 1 + |T_k - T_q|)`` or None if nothing is masked.

    Query ``i`` sees keys ``0 .. i + |T_k - T_q|``; the last query always sees every key. Cached per
    ``(T_q, T_k, device)``; callers must not modify the result.
    """
    diagonal = 1 + abs(t_k - t_q)
    if diagonal >= t_k:  # row 0 would already see every key: no entry is masked
        return None
    return torch.triu(torch.full((t_q, t_k), float("-inf")), diagonal).to(device)


@lru_cache(maxsize=64)
def member_masks(
    t_q: tuple[int, ...], t_k: tuple[int, ...], pad_q: int, pad_k: int, causal: bool, device: torch.device
) -> Tensor:
    """Additive masks ``(G, pad_q, pad_k)`` for members zero-padded at the end to common lengths.

    Member ``g`` (real lengths ``t_q[g]``, ``t_k[g]``) masks padded keys ``j >= t_k[g]`` and, if
    ``causal``, its own :func:`future_mask` entries ``j >= i + 1 + |t_k[g] - t_q[g]|``; key 0 stays
    visible to every row, so no row is fully masked.
    """
    i = torch.arange(pad_q).view(1, -1, 1)
    j = torch.arange(pad_k).view(1, 1, -1)
    tq, tk = torch.tensor(t_q).view(-1, 1, 1), torch.tensor(t_k).view(-1, 1, 1)
    hidden = j >= tk
    if causal:
        hidden = hidden | (j >= i + 1 + (tk - tq).abs())
    return torch.zeros(len(t_q), pad_q, pad_k).masked_fill(hidden, float("-inf")).to(device)


@lru_cache(maxsize=256)
def row_blocks(t_q: int, t_k: int, causal: bool) -> tuple[tuple[int, int, int], ...]:
    """Query-row blocks ``(r0, r1, k_len)``: under the causal mask rows ``r0:r1`` see only keys ``0:k_len``.

    Two blocks skip ~25% of the score work, four ~37%.
    """
    if not causal:
        return ((0, t_q, t_k),)
    diag = 1 + abs(t_k - t_q)
    nb = min(ROW_BLOCKS_MAX, max(1, round(t_q / ROW_BLOCK_ROWS)))
    bounds = [round(i * t_q / nb) for i in range(nb + 1)]
    blocks = tuple((r0, r1, min(t_k, r1 - 1 + diag)) for r0, r1 in pairwise(bounds) if r1 > r0)
    if all(kl == t_k for _, _, kl in blocks):
        return ((0, t_q, t_k),)
    return blocks


def int32_threshold(p: float) -> int:
    """Integer ``t`` with P(uniform int32 >= t) = 1 - p, to 2**-32 resolution."""
    return min(round(p * 2**32) - 2**31, 2**31 - 1)


def uniform_int32(numel: int, device: torch.device) -> Tensor:
    """``(numel,)`` int32 uniform over the whole int32 range (for dropout masks); see the module notes."""
    if device.type == "cpu":
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        raw = np.random.SFC64(seed).random_raw((numel + 1) // 2)  # uint64: two int32 words each
        return torch.from_numpy(raw.view(np.int32)[:numel])
    return torch.randint(-(2**31), 2**31, (numel,), dtype=torch.int32, device=device)


def keep_mask(
    shape: tuple[int, ...], threshold: int | Tensor, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Float mask of ``shape``: 1 where a fresh uniform int32 is ``>= threshold`` (kept), else 0.

    ``threshold`` is an :func:`int32_threshold` or an int32 tensor broadcasting against ``shape``. Float
    0/1 masks multiply several times faster than bool masks select (``where`` / ``masked_fill``).
    """
    r = uniform_int32(math.prod(shape), device).view(shape)
    return torch.ge(r, threshold, out=torch.empty(shape, dtype=dtype, device=device))


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` (keep w.p. ``1 - p``, rescale ``1/(1-p)``) with the cheaper CPU sampler."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * keep_mask(tuple(x.shape), int32_threshold(p), x.device, x.dtype).mul_(1.0 / (1.0 - p))


class _AttentionCore(torch.autograd.Function):
    """``(softmax(q k^T + mask) * keep) @ v`` for one chunk, every product in the fast orientation.

    Shapes: q ``(c, T_q, hd)`` (pre-scaled), k/v ``(c, T_k, hd)``, mask ``(T_q, T_k)`` additive or None,
    keep ``(c, T_q, T_k)`` float 0/1 dropout keep-mask or None. Returns ``(c, T_q, hd)``.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, keep: Tensor | None) -> Tensor:
        kt = k.transpose(1, 2)
        scores = torch.bmm(q, kt) if mask is None else torch.baddbmm(mask, q, kt)  # (c, T_q, T_k)
        probs = torch.softmax(scores, dim=-1)
        dropped = probs if keep is None else probs * keep
        ctx.save_for_backward(q, k, v, probs, dropped, keep)
        return torch.bmm(v.transpose(1, 2), dropped.transpose(1, 2)).transpose(1, 2)  # = dropped @ v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out: Tensor):
        q, k, v, probs, dropped, keep = ctx.saved_tensors
        d_probs = torch.bmm(d_out, v.transpose(1, 2))  # (c, T_q, T_k)
        if keep is not None:
            d_probs.mul_(keep)
        d_scores = torch._softmax_backward_data(d_probs, probs, -1, probs.dtype)
        d_q = torch.bmm(k.transpose(1, 2), d_scores.transpose(1, 2)).transpose(1, 2)  # = d_scores @ k
        d_k = torch.bmm(q.transpose(1, 2), d_scores).transpose(1, 2)  # = d_scores^T @ q
        d_v = torch.bmm(d_out.transpose(1, 2), dropped).transpose(1, 2)  # = dropped^T @ d_out
        return d_q, d_k, d_v, None, None


def attention_core(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, keep: Tensor | None) -> Tensor:
    """Masked softmax attention of one chunk; half-precision inputs get a float32 softmax (official)."""
    if q.dtype in (torch.float32, torch.float64):
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return _AttentionCore.apply(q, k, v, mask, keep)
        kt = k.transpose(1, 2)
        probs = torch.softmax(torch.bmm(q, kt) if mask is None else torch.baddbmm(mask, q, kt), dim=-1)
        if keep is not None:
            probs = probs.mul_(keep)
        return torch.bmm(v.transpose(1, 2), probs.transpose(1, 2)).transpose(1, 2)
    scores = torch.bmm(q, k.transpose(1, 2)) if mask is None else torch.baddbmm(mask, q, k.transpose(1, 2))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.bmm(probs if keep is None else probs * keep, v)


def multihead_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_heads: int,
    attn_p: Sequence[float],
    training: bool,
    causal: bool,
    member_mask: Tensor | None = None,
) -> Tensor:
    """Attention of ``g`` members with per-member probability dropout ``attn_p``.

    Args:
        q: ``(g, B, T_q, E)`` queries, already scaled by ``head_dim ** -0.5``.
        k: ``(g, B, T_k, E)`` keys.
        v: ``(g, B, T_k, E)`` values.
        num_heads: heads ``h`` (``E % h == 0``).
        attn_p: dropout rate per member.
        training: apply the dropout.
        causal: add the causal mask :func:`future_mask` (ignored with ``member_mask``).
        member_mask: optional additive mask per member ``(g, T_q, T_k)`` (see :func:`member_masks`).

    Returns:
        ``(g, B, T_q, E)`` head outputs, concatenated over heads (before the out-projection).
    """
    g, bsz, t_q, e = q.shape
    t_k, h = k.shape[2], num_heads
    hd, rows = e // h, g * bsz * h

    def heads(t: Tensor) -> Tensor:  # (g, B, T, E) -> (g*B*h, T, hd), member-major rows
        return t.view(g, bsz, -1, h, hd).transpose(2, 3).reshape(rows, -1, hd)

    qh, kh, vh = heads(q), heads(k), heads(v)
    drop = training and any(p > 0 for p in attn_p)
    if drop:  # dropout's 1/(1-p) rescale moves onto v: the product is linear in the probabilities
        scale = torch.tensor([1.0 / (1.0 - p) for p in attn_p], dtype=vh.dtype, device=vh.device)
        # reshape, not view: with one sample, heads() can return a view whose strides no flat view fits
        vh = (vh.reshape(g, -1) * scale.unsqueeze(1)).view_as(vh)
    if member_mask is None:
        mask = future_mask(t_q, t_k, q.device) if causal else None
        blocks = row_blocks(t_q, t_k, mask is not None)
        if rows * t_q * t_k < ROW_BLOCK_MIN_SCORES:
            blocks = ((0, t_q, t_k),)
        thr = None
        if drop:
            thr = torch.tensor([int32_threshold(p) for p in attn_p], dtype=torch.int32, device=q.device)
            thr = thr.repeat_interleave(bsz * h).view(rows, 1, 1)  # member-major rows
        out = _chunked_attention(qh, kh, vh, mask, blocks, thr)
    else:  # one member at a time, each with its own mask
        per = bsz * h
        outs = []
        for m in range(g):
            sl = slice(m * per, (m + 1) * per)
            thr = int32_threshold(attn_p[m]) if drop and attn_p[m] > 0 else None
            mask = member_mask[m].to(qh.dtype)
            outs.append(_chunked_attention(qh[sl], kh[sl], vh[sl], mask, ((0, t_q, t_k),), thr))
        out = torch.cat(outs)
    return out.view(g, bsz, h, t_q, hd).transpose(2, 3).reshape(g, bsz, t_q, e)


def _chunked_attention(
    qh: Tensor,
    kh: Tensor,
    vh: Tensor,
    mask: Tensor | None,
    blocks: tuple[tuple[int, int, int], ...],
    thr: Tensor | int | None,
) -> Tensor:
    """Attention of ``(rows, T, hd)`` heads in row chunks and causal row blocks; ``thr`` = dropout threshold
    (an int, or int32 ``(rows, 1, 1)``), None for no dropout. Returns ``(rows, T_q, hd)``."""
    rows, t_q, _ = qh.shape
    t_k = kh.shape[1]
    if mask is not None:
        mask = mask.to(qh.dtype)
    step = max(1, SCORE_CHUNK // (t_q * t_k))
    # split (not slicing) so that backward concatenates chunk gradients instead of zero-filling per chunk
    thr_chunks = thr.split(step) if isinstance(thr, Tensor) else [thr] * rows
    outs = []
    for qc, kc, vc, tc in zip(qh.split(step), kh.split(step), vh.split(step), thr_chunks, strict=False):
        parts = []
        for (r0, r1, kl), qb in zip(blocks, qc.split([r1 - r0 for r0, r1, _ in blocks], dim=1), strict=True):
            mb = None if mask is None else mask[r0:r1, :kl]
            keep = None if tc is None else keep_mask((qb.shape[0], r1 - r0, kl), tc, qh.device, qb.dtype)
            kb, vb = (kc, vc) if kl == t_k else (kc[:, :kl], vc[:, :kl])
            parts.append(attention_core(qb, kb, vb, mb, keep))  # (c, r1 - r0, hd)
        outs.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))  # (c, T_q, hd)
    return outs[0] if len(outs) == 1 else torch.cat(outs)
