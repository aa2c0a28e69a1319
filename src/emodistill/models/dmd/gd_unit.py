"""Graph Distillation Unit (GD-Unit) of DMD (Li et al., CVPR 2023; docs/dmd-spec.md §5).

One class serves both units: HomoGD (on the shared-space heads) and HeteroGD (on the crossmodal heads).
For every sample it scores the 6 directed edges between the three modalities from
``z_m = [W_logit(logit_m), W_repr(repr_m)]`` and normalises them with one softmax over all 6 edges at
temperature ``1 / alpha``. Modality index order is 0 = l, 1 = v, 2 = a; edge ``x`` distils teacher ``i``
into student ``j`` with ``(j, i)`` in the official loop order, so the edges are
``V->L, A->L, L->V, A->V, L->A, V->A``.

The official code builds ``W_edge([z_j, z_i])`` in a Python loop over edges; since ``W_edge`` is
linear, ``W_edge([z_j, z_i]) = u_j + w_i + b`` with ``u = z @ W_a^T``, ``w = z @ W_b^T`` and
``W_edge = [W_a | W_b]``, so all 6 edges come from one matmul.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

EDGE_STUDENT = (0, 0, 1, 1, 2, 2)
"""Student (target) modality ``j`` of edge ``x`` (0 = l, 1 = v, 2 = a)."""
EDGE_TEACHER = (1, 2, 0, 2, 0, 1)
"""Teacher (source) modality ``i`` of edge ``x``."""
EDGE_NAMES = ("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")
"""Human-readable edge names, teacher -> student, in edge order."""


def prior_from_logits(logits: Sequence[float], temperature: float) -> list[float]:
    """The official hand-set prior ``softmax(logits / temperature)`` (numpy float64, as ``misc.softmax``)."""
    w = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(w - w.max())
    return (e / e.sum()).tolist()


class GDUnit(nn.Module):
    """Edge scorer of one GD-Unit.

    Args:
        hidden_size: width of the representations it reads (``d`` homo, ``2d`` hetero).
        gd_size: width ``g`` of each projected logit/representation (official 64 homo, 32 hetero).
        prior: the 6 prior edge weights (kept as a non-persistent buffer; it comes from the config).
        alpha: softmax temperature factor (official 1/8).
        num_classes: logit width (1 for regression).
    """

    def __init__(
        self,
        hidden_size: int,
        gd_size: int,
        prior: Sequence[float],
        alpha: float = 1 / 8,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        if len(prior) != len(EDGE_STUDENT):
            raise ValueError(f"GDUnit prior has {len(prior)} entries, expected {len(EDGE_STUDENT)}")
        self.gd_size, self.alpha = gd_size, alpha
        self.W_logit = nn.Linear(num_classes, gd_size)
        self.W_repr = nn.Linear(hidden_size, gd_size)
        self.W_edge = nn.Linear(4 * gd_size, 1)
        self.register_buffer("prior", torch.tensor(prior, dtype=torch.float32), persistent=False)
        self.register_buffer("_student", torch.tensor(EDGE_STUDENT), persistent=False)
        self.register_buffer("_teacher", torch.tensor(EDGE_TEACHER), persistent=False)

    def forward(self, logits: Tensor, reprs: Tensor) -> Tensor:
        """Edge weights per sample.

        Args:
            logits: ``(3, B, C)`` stacked [l, v, a] logits.
            reprs: ``(3, B, H)`` stacked [l, v, a] representations.

        Returns:
            ``(B, 6)`` softmax-normalised edges (each row sums to 1), edge order as :data:`EDGE_NAMES`.
            Not detached: gradients reach the unit and the model's heads, as in the official code.
        """
        z = torch.cat([self.W_logit(logits), self.W_repr(reprs)], dim=-1)  # (3, B, 2g)
        w_ab = self.W_edge.weight.view(2, 2 * self.gd_size)  # rows: W_a (student half), W_b (teacher half)
        uw = torch.matmul(z, w_ab.t())  # (3, B, 2): [..., 0] = z_j W_a^T, [..., 1] = z_i W_b^T
        e = uw[self._student, :, 0] + uw[self._teacher, :, 1] + self.W_edge.bias  # (6, B)
        return torch.softmax(e.t() * self.alpha, dim=1)  # (B, 6)
