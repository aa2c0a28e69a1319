"""Normalisation layers shared by the MMSA-style baselines (``late_fusion``, ``ef_lstm`` and the subnets of
:mod:`emodistill.models.layers.mmsa_subnets`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a training batch of one sample with the running statistics
    (and leaves them unchanged) instead of raising, as a last incomplete batch of size 1 would make it.

    Same parameters and buffers as ``nn.BatchNorm1d``, so checkpoints load either way.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)
