"""DMD loss terms against references written from their definitions (docs/dmd-spec.md §4)."""

from __future__ import annotations

import math

import pytest
import torch

from emodistill.models.dmd.losses import (
    cel_cosine,
    dmd_margin_loss,
    margin_loss,
    mse,
    ort_loss,
    task_losses,
)


def _hinge_cos(x, y):
    nx = max(math.sqrt(float((x * x).sum()) + 1e-8), 1e-8)
    ny = max(math.sqrt(float((y * y).sum()) + 1e-8), 1e-8)
    return float((x * y).sum()) / (nx * ny)


def _margin_reference(feats: torch.Tensor, ids: torch.Tensor, scale: float = 0.15) -> float:
    """Straight loop over anchors from the spec's definition."""
    m = feats.shape[0]
    per_anchor = []
    for i in range(m):
        pos = [j for j in range(m) if j != i and ids[j] == ids[i]]
        neg = [j for j in range(m) if ids[j] != ids[i]]
        if not pos or not neg:
            continue
        vals = []
        for p in pos:
            for n in neg:
                margin = scale * abs(float(ids[i]) - float(ids[n]))
                vals.append(
                    max(0.0, margin - _hinge_cos(feats[i], feats[p]) + _hinge_cos(feats[i], feats[n]))
                )
        per_anchor.append(sum(vals) / len(vals))
    return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_margin_loss_matches_loop_reference_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(15, 6, generator=g)
    ids = torch.tensor([0.0, 0.0, 1.5, 1.5, 1.5, -2.0, 0.6, 0.6, 3.0, 0.0, -2.0, 1.5, 0.2, 0.2, 0.2])
    ids = ids[torch.randperm(15, generator=g)]
    assert margin_loss(feats, ids).item() == pytest.approx(_margin_reference(feats, ids), rel=1e-5, abs=1e-7)


def test_margin_loss_skips_anchors_without_positive_or_negative():
    feats = torch.randn(4, 3)
    # all labels equal: no negatives anywhere -> 0; all distinct: no positives -> 0
    assert margin_loss(feats, torch.zeros(4)).item() == 0.0
    assert margin_loss(feats, torch.arange(4.0)).item() == 0.0
    # only anchors 0 and 1 qualify (each other's positive); 2 and 3 have no positive
    ids = torch.tensor([1.0, 1.0, 2.0, 3.0])
    assert margin_loss(feats, ids).item() == pytest.approx(_margin_reference(feats, ids), rel=1e-5)


def test_margin_loss_uses_exact_float_equality():
    feats = torch.randn(4, 3)
    ids = torch.tensor([0.5, 0.5 + 1e-6, 0.5, 2.0])
    assert margin_loss(feats, ids).item() == pytest.approx(_margin_reference(feats, ids), rel=1e-5)


def test_dmd_margin_loss_builds_three_rows_per_sample():
    c = [torch.randn(4, 5) for _ in range(3)]
    labels = torch.tensor([1.0, -1.0, 1.0, 0.0])
    feats = torch.stack([torch.stack([c[0][i], c[1][i], c[2][i]]) for i in range(4)]).reshape(12, 5)
    ids = labels.repeat_interleave(3)
    assert dmd_margin_loss(c, labels).item() == pytest.approx(_margin_reference(feats, ids), rel=1e-5)


def test_margin_loss_gradient_is_finite():
    feats = torch.randn(9, 4, requires_grad=True)
    loss = margin_loss(feats, torch.tensor([0.0, 0.0, 1.0] * 3))
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_cel_cosine_matches_torch_cosine_embedding_loss():
    x, y = torch.randn(6, 7), torch.randn(6, 7)
    x[0] = 0.0  # the eps matters for a zero row
    ours = cel_cosine(x, y, dim=1).clamp_min(0).mean()
    ref = torch.nn.functional.cosine_embedding_loss(x, y, -torch.ones(6))
    torch.testing.assert_close(ours, ref)


def test_ort_torch19_semantics_by_hand():
    # s, c: (B=2, d=1, T=2). torch-1.9 CosineEmbeddingLoss on the official (T, B, d) tensors sums over B.
    s = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]])
    c = torch.tensor([[[2.0, 1.0]], [[1.0, 4.0]]])
    cos_t0 = (1 * 2 + 3 * 1) / math.sqrt((1 + 9 + 1e-12) * (4 + 1 + 1e-12))
    cos_t1 = (2 * 1 + -1 * 4) / math.sqrt((4 + 1 + 1e-12) * (1 + 16 + 1e-12))
    want = (max(cos_t0, 0) + max(cos_t1, 0)) / 2
    assert ort_loss(s, c, "torch19").item() == pytest.approx(want, rel=1e-6)


def test_ort_per_sample_semantics_by_hand():
    s = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]])
    c = torch.tensor([[[2.0, 1.0]], [[1.0, 4.0]]])
    cos_0 = (1 * 2 + 2 * 1) / math.sqrt((1 + 4) * (4 + 1))
    cos_1 = (3 * 1 + -1 * 4) / math.sqrt((9 + 1) * (1 + 16))
    want = (max(cos_0, 0) + max(cos_1, 0)) / 2
    assert ort_loss(s, c, "per_sample").item() == pytest.approx(want, rel=1e-6)


def test_ort_semantics_differ_and_unknown_rejected():
    s, c = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    assert ort_loss(s, c, "torch19").item() != pytest.approx(ort_loss(s, c, "per_sample").item())
    with pytest.raises(ValueError, match="torch19"):
        ort_loss(s, c, "torch21")


def test_mse_is_plain_mean():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert mse(a, b).item() == pytest.approx(float(((a - b) ** 2).sum() / 24), rel=1e-6)


def test_task_losses_are_mean_l1():
    pred = {"x": torch.tensor([[1.0], [2.0]])}
    assert task_losses(pred, torch.tensor([0.0, 4.0]))["x"].item() == pytest.approx(1.5)


def test_task_loss_switch():
    """``task_loss`` (every model's task term): BCE of logits for binary, L1 or MSE for regression."""
    from emodistill.models.base import task_loss

    pred, y = torch.tensor([[1.0], [-2.0], [0.5]]), torch.tensor([0.0, 1.0, 1.0])
    assert torch.equal(task_loss(pred, y, "regression"), torch.nn.functional.l1_loss(pred, y.view(-1, 1)))
    assert torch.equal(task_loss(pred, y, "regression", "mse"), torch.nn.functional.mse_loss(pred, y.view(-1, 1)))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, y.view(-1, 1))
    assert torch.equal(task_loss(pred, y, "binary", "mse"), bce)  # the regression choice does not apply
    assert torch.equal(task_losses({"x": pred}, y, "binary")["x"], bce)
    with pytest.raises(ValueError, match="task 'multiclass' unknown"):
        task_loss(pred, y, "multiclass")
    with pytest.raises(ValueError, match="regression loss 'huber' unknown"):
        task_loss(pred, y, "regression", "huber")
