"""What the training loop expects of every registered model.

A model is a plain ``nn.Module`` built from a :class:`~emodistill.spec.DatasetSpec` and a config
dataclass (kept as ``model.config``), with two methods:

* ``forward(batch) -> output``: ``batch`` is the dict a :class:`~emodistill.data.loader.BatchLoader`
  yields; ``output`` is a dataclass with at least ``prediction`` of shape ``(B, 1)``.
* ``compute_losses(output, labels) -> dict[str, Tensor]``: ``labels`` is ``(B,)``; the dict holds the
  differentiable total under ``"loss"`` and any named terms (for logging) beside it.

Keeping the loss on the model (not in the loop) lets every architecture own its objective, as DMD's
eight heads, self-regression and graph distillation need, while the loop stays generic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from emodistill.spec import DatasetSpec


@dataclass
class ModelOutput:
    """Minimal output: the sentiment score per sample, shape ``(B, 1)``."""

    prediction: Tensor


class MERModel(nn.Module):
    """Base class: stores the spec and config, provides the default L1 objective."""

    fixed_seq_lens: bool = False
    """True if the architecture is sized for the training data's padded sequence lengths."""

    def __init__(self, spec: DatasetSpec, config) -> None:
        super().__init__()
        self.spec = spec
        self.config = config

    def config_dict(self) -> dict:
        return asdict(self.config)

    def compute_losses(self, output: ModelOutput, labels: Tensor) -> dict[str, Tensor]:
        y = labels.view(-1, 1)
        if getattr(self.spec, "task", "regression") == "binary":  # predictions are logits, labels 0/1
            loss = nn.functional.binary_cross_entropy_with_logits(output.prediction, y)
        else:
            loss = nn.functional.l1_loss(output.prediction, y)
        return {"loss": loss, "task": loss.detach()}

    @torch.no_grad()
    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Eval-mode scores ``(B,)`` for a batch (the caller sets ``eval()``)."""
        return self(batch).prediction.view(-1)

    @torch.no_grad()
    def interpret(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named per-sample quantities for reports (the caller sets ``eval()``); empty by default.

        Key conventions (each value's first dimension is the batch ``B``; modalities ``l``, ``v``, ``a``):

        * ``"edges/<space>"`` ``(B, 6)``: GD-Unit edge weights of space ``homo`` or ``hetero``, edge order
          :data:`emodistill.models.dmd.gd_unit.EDGE_NAMES` (teacher -> student);
        * ``"features/<space>/<m>"`` ``(B, F)``: decoupled features of modality ``m``, pooled over time;
        * ``"activations/<space>/<m>"`` ``(B, K)``: dictionary activations over ``K`` atoms (DHMD).

        A report draws what a model provides and skips the rest.
        """
        return {}

    @torch.no_grad()
    def predict_and_interpret(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`predict` and :meth:`interpret` of one batch; a model whose interpretation needs its full
        forward pass overrides this to run that pass once for both."""
        return self.predict(batch), self.interpret(batch)
