"""DMD's training objective, term by term, as the official trainer computes it (docs/dmd-spec.md §4-§5).

Every function is vectorised: the official margin loss loops over anchors in Python and the GD-Unit
losses loop over edges; here both are single tensor expressions with the same values.

Cosine conventions (they differ between terms, as in the official code):

* margin loss (``HingeLoss.compute_cosine``):
  ``sum(x*y) / (max(sqrt(sum x^2 + 1e-8), 1e-8) * max(sqrt(sum y^2 + 1e-8), 1e-8))``;
* ``nn.CosineEmbeddingLoss`` (orthogonality and hetero min-cosine terms), ATen's formula:
  ``sum(x*y) / sqrt((sum x^2 + 1e-12) * (sum y^2 + 1e-12))``; with target -1 and margin 0 the loss is
  ``max(0, cos)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from emodistill.models.base import task_loss
from emodistill.models.dmd.gd_unit import EDGE_STUDENT, EDGE_TEACHER

CEL_EPS = 1e-12
"""ATen's ``EPSILON`` in ``cosine_embedding_loss`` (unchanged since PyTorch 1.0)."""
HINGE_EPS = 1e-8
"""The eps of the official ``HingeLoss.compute_cosine``."""
ORT_SEMANTICS = ("torch19", "per_sample")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """The official ``MSE``: ``sum((target - pred)^2) / numel`` (a plain mean); neither side detached."""
    return (target - pred).pow(2).sum() / pred.numel()


def cel_cosine(x: Tensor, y: Tensor, dim: int) -> Tensor:
    """``nn.CosineEmbeddingLoss``'s cosine along ``dim`` (eps 1e-12 inside the square root)."""
    prod = (x * y).sum(dim)
    denom = (((x * x).sum(dim) + CEL_EPS) * ((y * y).sum(dim) + CEL_EPS)).sqrt()
    return prod / denom


def ort_loss(s: Tensor, c: Tensor, semantics: str = "torch19") -> Tensor:
    """Orthogonality loss between private ``s`` and shared ``c`` features of one modality.

    Args:
        s: ``(B, d, T')`` private features.
        c: ``(B, d, T')`` shared features.
        semantics: ``"torch19"`` reproduces ``CosineEmbeddingLoss(s, c, -1)`` on the official time-first
            3-D tensors under PyTorch 1.9 (the authors' version), which summed over dim 1 = the batch:
            a cosine *across the batch* for every (time step, channel), clamped at 0 and averaged over
            (t, k). ``"per_sample"`` is the per-sample cosine over the flattened ``T'*d`` features,
            clamped at 0 and averaged over the batch (the usual community fix).

    Returns:
        Scalar loss.
    """
    if semantics == "torch19":
        return cel_cosine(s, c, dim=0).clamp_min(0).mean()  # cos over B for every (k, t): (d, T')
    if semantics == "per_sample":
        b = s.shape[0]
        return cel_cosine(s.reshape(b, -1), c.reshape(b, -1), dim=1).clamp_min(0).mean()
    raise ValueError(f"ort semantics {semantics!r} unknown; choose from {ORT_SEMANTICS}")


def hinge_cosine_matrix(feats: Tensor) -> Tensor:
    """All-pairs cosine ``(M, M)`` of ``feats (M, F)`` with the official HingeLoss norms."""
    norm = (feats.pow(2).sum(1) + HINGE_EPS).sqrt().clamp_min(HINGE_EPS)  # (M,)
    return (feats @ feats.t()) / (norm.unsqueeze(1) * norm.unsqueeze(0))


def margin_loss(feats: Tensor, ids: Tensor, margin_scale: float = 0.15) -> Tensor:
    """The official adaptive-margin hinge loss, vectorised over anchors (docs/dmd-spec.md §4.3).

    For anchor ``i`` with positives ``P`` (other rows whose id is exactly equal) and negatives ``N``
    (rows with a different id), ``loss_i = mean_{p in P, n in N} max(0, margin_scale * |id_i - id_n|
    - cos(i, p) + cos(i, n))``. Anchors without a positive or without a negative are skipped; the
    result is the mean over the remaining anchors, or 0 if there are none.

    Args:
        feats: ``(M, F)`` embeddings.
        ids: ``(M,)`` float labels (compared by exact equality).
        margin_scale: factor of the label distance (official 0.15; its ``margin=0.1`` is unused).

    Returns:
        Scalar loss.
    """
    m = feats.shape[0]
    ids = ids.reshape(m)
    cos = hinge_cosine_matrix(feats)  # (M, M)
    eye = torch.eye(m, dtype=torch.bool, device=feats.device)
    same = ids.unsqueeze(1) == ids.unsqueeze(0)  # (M, M)
    pos = same & ~eye  # positives of anchor i (row)
    neg = ~same
    margin = margin_scale * (ids.unsqueeze(1) - ids.unsqueeze(0)).abs()  # (M, M): anchor i, negative n
    # triplet values (i, p, n) = margin[i, n] - cos[i, p] + cos[i, n], in the official operand order
    trip = margin.unsqueeze(1) - cos.unsqueeze(2) + cos.unsqueeze(1)  # (M, M_p, M_n)
    valid = pos.unsqueeze(2) & neg.unsqueeze(1)
    n_pairs = pos.sum(1) * neg.sum(1)  # (M,)
    per_anchor = torch.where(valid, trip.clamp_min(0), trip.new_zeros(())).sum((1, 2))
    anchors = n_pairs > 0
    if not bool(anchors.any()):
        return feats.sum() * 0.0  # keeps the graph (and the device) while contributing nothing
    return (per_anchor[anchors] / n_pairs[anchors].to(feats.dtype)).mean()


def dmd_margin_loss(c_sim: Sequence[Tensor], labels: Tensor, margin_scale: float = 0.15) -> Tensor:
    """Margin loss on the shared-space embeddings ``c_sim = [c_l_sim, c_v_sim, c_a_sim]`` (each ``(B, d)``).

    Rows are ordered as the official trainer builds them: sample-major, modalities l, v, a inside.
    """
    feats = torch.stack(list(c_sim), dim=1).reshape(-1, c_sim[0].shape[-1])  # (3B, d)
    ids = labels.reshape(-1).repeat_interleave(len(c_sim))  # (3B,)
    return margin_loss(feats, ids, margin_scale)


def gd_losses(
    edges: Tensor,
    prior: Tensor,
    logits: Tensor,
    reprs: Tensor,
    gd_reg: float,
    w_losses: Sequence[float],
    repr_metric: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """GD-Unit losses of one unit, vectorised over the 6 edges (docs/dmd-spec.md §5.2).

    Args:
        edges: ``(B, 6)`` softmax edges.
        prior: ``(6,)`` prior edge weights.
        logits: ``(3, B, C)`` [l, v, a] logits.
        reprs: ``(3, B, H)`` [l, v, a] representations.
        gd_reg: regulariser weight (official 10).
        w_losses: ``[w_logit, w_repr]`` (official ``[1, 10]``).
        repr_metric: ``"l1"`` (HomoGD) or ``"min_cosine"`` (HeteroGD).

    Returns:
        ``(reg, logit, repr)``: ``reg = gd_reg * sum_x (mean_n E[n, x] - prior[x])^2``;
        ``logit = w_logit * sum_x mean_n(w[n, x] * |l_j - sg(l_i)|_1)`` with ``w = E + prior``;
        ``repr`` is ``w_repr * sum_x mean_n(w * |r_j - sg(r_i)|_1)`` for ``"l1"`` and
        ``w_repr * sum_x mean_n(max(0, cos(r_j, sg(r_i)))) * mean_n(w[:, x])`` for ``"min_cosine"``.
    """
    student = torch.as_tensor(EDGE_STUDENT, device=logits.device)
    teacher = torch.as_tensor(EDGE_TEACHER, device=logits.device)
    reg = gd_reg * (edges.mean(0) - prior).pow(2).sum()
    w = edges.t() + prior.unsqueeze(1)  # (6, B)
    l_dist = (logits[student] - logits[teacher].detach()).abs().sum(-1)  # (6, B)
    loss_logit = w_losses[0] * (l_dist * w).mean(1).sum()
    r_s, r_t = reprs[student], reprs[teacher].detach()  # (6, B, H)
    if repr_metric == "l1":
        loss_repr = w_losses[1] * ((r_s - r_t).abs().sum(-1) * w).mean(1).sum()
    elif repr_metric == "min_cosine":
        cos = cel_cosine(r_s, r_t, dim=-1).clamp_min(0)  # (6, B)
        loss_repr = w_losses[1] * (cos.mean(1) * w.mean(1)).sum()
    else:
        raise ValueError(f"repr_metric {repr_metric!r} unknown; choose 'l1' or 'min_cosine'")
    return reg, loss_logit, loss_repr


def task_losses(predictions: dict[str, Tensor], labels: Tensor, task: str = "regression") -> dict[str, Tensor]:
    """Per-head task loss of every ``(B, 1)`` head against ``labels`` (``(B,)`` or ``(B, 1)``).

    ``task="regression"``: mean L1 (official DMD). ``task="binary"``: heads are logits and labels 0/1;
    mean binary cross-entropy with logits (UR-FUNNY, MUStARD). Each term is
    :func:`~emodistill.models.base.task_loss`.
    """
    return {name: task_loss(pred, labels, task) for name, pred in predictions.items()}
