"""GD-Unit edges and losses against loop references written from docs/dmd-spec.md §5."""

from __future__ import annotations

import math

import pytest
import torch

from emodistill.models.dmd.gd_unit import EDGE_NAMES, GDUnit, prior_from_logits
from emodistill.models.dmd.losses import gd_losses

PAIRS = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]  # (student j, teacher i) in the official loop order


def _softmax_list(xs, t):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def test_priors_are_the_official_softmaxes():
    homo = prior_from_logits([0, 0, 1, 0, 1, 0], 0.25)
    het = prior_from_logits([0, 0, 1, 0, 1, 1], 0.25)
    assert homo == pytest.approx(_softmax_list([0, 0, 1, 0, 1, 0], 0.25))
    assert het == pytest.approx(_softmax_list([0, 0, 1, 0, 1, 1], 0.25))
    assert homo[2] == pytest.approx(0.48233, abs=1e-5) and homo[0] == pytest.approx(0.00883, abs=1e-5)
    assert het[5] == pytest.approx(0.32734, abs=1e-5) and het[0] == pytest.approx(0.00600, abs=1e-5)
    assert EDGE_NAMES == ("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")


def test_parameter_counts_match_official_units():
    assert sum(p.numel() for p in GDUnit(50, 64, [1 / 6] * 6).parameters()) == 3649
    assert sum(p.numel() for p in GDUnit(100, 32, [1 / 6] * 6).parameters()) == 3425
    assert sum(p.numel() for p in GDUnit(30, 64, [1 / 6] * 6).parameters()) == 2369
    assert sum(p.numel() for p in GDUnit(60, 32, [1 / 6] * 6).parameters()) == 2145


def test_edges_match_loop_reference():
    torch.manual_seed(0)
    unit = GDUnit(12, 8, [1 / 6] * 6, alpha=1 / 8)
    with torch.no_grad():
        unit.W_edge.weight.mul_(50)  # make the edges clearly non-uniform
    logits, reprs = torch.randn(3, 5, 1), torch.randn(3, 5, 12)
    edges = unit(logits, reprs)
    z = torch.cat([unit.W_logit(logits), unit.W_repr(reprs)], -1)  # (3, B, 2g)
    raw = torch.stack([unit.W_edge(torch.cat([z[j], z[i]], -1)).squeeze(-1) for j, i in PAIRS], 1)  # (B, 6)
    ref = torch.softmax(raw / 8, dim=1)
    torch.testing.assert_close(edges, ref)
    torch.testing.assert_close(edges.sum(1), torch.ones(5))
    assert edges.std() > 1e-3


def test_edges_start_near_uniform():
    torch.manual_seed(1)
    edges = GDUnit(50, 64, [1 / 6] * 6)(torch.randn(3, 16, 1), torch.randn(3, 16, 50))
    assert torch.allclose(edges, torch.full_like(edges, 1 / 6), atol=0.02)


def _ref_gd(edges, prior, logits, reprs, gd_reg, w, metric):
    reg = gd_reg * sum((edges[:, x].mean() - prior[x]) ** 2 for x in range(6))
    loss_logit, loss_repr = 0.0, 0.0
    for x, (j, i) in enumerate(PAIRS):
        wx = edges[:, x] + prior[x]
        loss_logit = loss_logit + w[0] * ((logits[j] - logits[i].detach()).abs().sum(1) * wx).mean()
        if metric == "l1":
            loss_repr = loss_repr + w[1] * ((reprs[j] - reprs[i].detach()).abs().sum(1) * wx).mean()
        else:
            target = -torch.ones(reprs.shape[1])
            cel = torch.nn.functional.cosine_embedding_loss(reprs[j], reprs[i].detach(), target)
            loss_repr = loss_repr + w[1] * (cel * wx).mean()
    return reg, loss_logit, loss_repr


@pytest.mark.parametrize("metric", ["l1", "min_cosine"])
def test_gd_losses_match_loop_reference(metric):
    torch.manual_seed(2)
    edges = torch.softmax(torch.randn(7, 6), 1).requires_grad_()
    prior = torch.tensor(prior_from_logits([0, 0, 1, 0, 1, 1], 0.25), dtype=torch.float32)
    logits = torch.randn(3, 7, 1, requires_grad=True)
    reprs = torch.randn(3, 7, 10, requires_grad=True)
    got = gd_losses(edges, prior, logits, reprs, 10.0, (1.0, 10.0), metric)
    ref = _ref_gd(edges, prior, logits, reprs, 10.0, (1.0, 10.0), metric)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    # gradients (teachers detached) agree too
    ga = torch.autograd.grad(sum(got), (edges, logits, reprs))
    gb = torch.autograd.grad(sum(ref), (edges, logits, reprs))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b)


def test_regulariser_at_uniform_edges_is_the_sanity_value():
    edges = torch.full((16, 6), 1 / 6)
    for logits, want in (([0, 0, 1, 0, 1, 0], 2.99), ([0, 0, 1, 0, 1, 1], 1.55)):
        prior = torch.tensor(prior_from_logits(logits, 0.25))
        reg, _, _ = gd_losses(edges, prior, torch.zeros(3, 16, 1), torch.zeros(3, 16, 4), 10.0, (1, 10), "l1")
        assert reg.item() == pytest.approx(10 * sum((1 / 6 - p) ** 2 for p in prior.tolist()), rel=1e-5)
        assert reg.item() == pytest.approx(want, abs=0.01)
