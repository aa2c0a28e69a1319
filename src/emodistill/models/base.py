"""What the training loop expects of every registered model.

A model is a plain ``nn.Module`` built from a :class:`~emodistill.spec.DatasetSpec` and a config
dataclass (kept as ``model.config``), with two methods:

* ``forward(batch) -> output``: ``batch`` is the dict a :class:`~emodistill.data.loader.BatchLoader`
  yields; ``output`` is a dataclass with at least ``prediction`` of shape ``(B, 1)``.
* ``compute_losses(output, labels) -> dict[str, Tensor]``: ``labels`` is ``(B,)``; the dict holds the
  differentiable total under ``"loss"`` and any named terms (for logging) beside it. Every objective
  takes its task term from :func:`task_loss`, the one place where regression and binary tasks differ.

Inference code (evaluation passes, reports, the predictor) runs its forward passes inside
:meth:`MERModel.inference_cache`, which lets a model reuse work that depends on the weights only.

Keeping the loss on the model (not in the loop) lets every architecture own its objective, as DMD's
eight heads, self-regression and graph distillation need, while the loop stays generic.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emodistill.spec import TASKS, DatasetSpec, is_binary_task

REGRESSION_LOSSES: tuple[str, str] = ("l1", "mse")
"""Regression task losses :func:`task_loss` offers: mean absolute error (DMD, most MMSA models) or mean
squared error (MMSA's MISA trainer)."""


def task_loss(prediction: Tensor, labels: Tensor, task: str, regression: str = "l1") -> Tensor:
    """Task term of one head: the mean binary cross-entropy of logits for a binary task, else the mean
    L1 (or squared) error.

    Args:
        prediction: ``(B, 1)`` scores, or logits for a binary task.
        labels: ``(B,)`` or ``(B, 1)`` regression labels, or 0/1.
        task: the spec's task, one of :data:`~emodistill.spec.TASKS`.
        regression: ``"l1"`` or ``"mse"``, the regression loss (unused for a binary task).

    Returns:
        The scalar loss.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r} unknown; expected one of {list(TASKS)}")
    if regression not in REGRESSION_LOSSES:
        raise ValueError(f"regression loss {regression!r} unknown; expected one of {list(REGRESSION_LOSSES)}")
    y = labels.reshape(-1, 1)  # (B, 1)
    if is_binary_task(task):  # predictions are logits, labels 0/1
        return F.binary_cross_entropy_with_logits(prediction, y)
    return F.l1_loss(prediction, y) if regression == "l1" else F.mse_loss(prediction, y)


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
        """The :func:`task_loss` of ``output.prediction`` (L1 for regression) as ``loss`` and ``task``."""
        task = getattr(self.spec, "task", "regression")  # a model built without a spec counts as regression
        loss = task_loss(output.prediction, labels, task)
        return {"loss": loss, "task": loss.detach()}

    def inference_cache(self, store: dict | None = None) -> AbstractContextManager[None]:
        """A context for eval-mode, gradient-free forward passes with fixed weights, inside which the model may
        reuse weight-derived work across calls; a no-op here (``contextlib.nullcontext``).

        Models on :class:`~emodistill.models.layers.grouped_transformer.GroupedMulTEncoder` (DMD, DHMD,
        MulT; :class:`~emodistill.models.layers.grouped_config.FoldedInferenceCache`) return
        :func:`~emodistill.models.layers.grouped_transformer.folded_weight_cache`: the encoders
        fold their LayerNorms into the projections once per block instead of once per call.

        Args:
            store: a dict the caller keeps (initially empty) to carry the reusable work across blocks, as a
                predictor does for one clip at a time; None keeps it for this block only.

        Returns:
            A context manager; the caller wraps its forward passes in ``with model.inference_cache():``.
        """
        return nullcontext()

    @torch.no_grad()
    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Eval-mode scores ``(B,)`` for a batch (the caller sets ``eval()``)."""
        return self(batch).prediction.view(-1)

    def length_bound(self, heads: bool = True) -> bool:
        """True when :meth:`inference_outputs` (with ``heads``) only accepts the trained sequence lengths;
        an exported graph then has fixed sequence axes."""
        return self.fixed_seq_lens

    @torch.no_grad()
    def inference_outputs(self, batch: dict[str, Tensor], heads: bool = True) -> dict[str, Tensor]:
        """What a prediction reports, from one eval-mode pass (the caller sets ``eval()``); the exported
        ONNX graph computes exactly these outputs.

        Keys: ``"prediction"`` ``(B,)`` (the scores of :meth:`predict`) and, for models that have them and
        when ``heads`` is true, ``"heads/<space>"`` ``(B, 3)`` per-modality head outputs (order ``l``, ``v``,
        ``a``) and ``"edges/<space>"`` ``(B, 6)`` GD-Unit edge weights (DMD, DHMD). This default has the
        prediction only.
        """
        return {"prediction": self.predict(batch)}

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
