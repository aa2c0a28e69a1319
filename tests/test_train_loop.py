"""The training loop's optimisation semantics, checked against a hand-written replay."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.training.config import TrainConfig
from emodistill.training.loop import EarlyStopping, train_one_epoch, usable_batches


@dataclass
class _LinCfg:
    dim: int = 3


class _Linear(MERModel):
    """Score = w·mean_t(audio) + b: small enough to replay by hand."""

    def __init__(self) -> None:
        super().__init__(spec=None, config=_LinCfg())
        self.lin = nn.Linear(3, 1)

    def forward(self, batch):
        return ModelOutput(self.lin(batch["audio"].mean(1)))


class _ListLoader:
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _batches(n_batches: int, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"audio": torch.randn(b, 5, 3, generator=g) * 3, "labels": torch.randn(b, generator=g) * 2}
        for _ in range(n_batches)
    ]


def _replay(model: nn.Module, batches, cfg: TrainConfig, n_use: int) -> nn.Module:
    """Official semantics written out: zero_grad at window start, summed grads, clamp after every
    backward, Adam step at window end; batches past n_use are never used."""
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for start in range(0, n_use, cfg.update_every):
        window = batches[start : min(start + cfg.update_every, n_use)]
        for p in model.parameters():
            p.grad = None
        for batch in window:
            pred = model.lin(batch["audio"].mean(1))
            loss = (pred - batch["labels"].view(-1, 1)).abs().mean()
            loss.backward()
            for p in model.parameters():
                p.grad.clamp_(-cfg.grad_clip_value, cfg.grad_clip_value)
        opt.step()
    return model


@pytest.mark.parametrize("trailing", ["discard", "step"])
def test_accumulation_clipping_and_trailing_window(trailing):
    torch.manual_seed(0)
    model = _Linear()
    batches = _batches(7)
    cfg = TrainConfig(lr=0.05, update_every=3, grad_clip_value=0.6, trailing_window=trailing)
    n_use = 6 if trailing == "discard" else 7
    assert usable_batches(7, cfg) == n_use
    expected = _replay(model, batches, cfg, n_use)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    stats = train_one_epoch(model, _ListLoader(batches), opt, cfg, progress=False)
    assert stats["steps"] == (2 if trailing == "discard" else 3)
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_clipping_changes_the_result():
    # Guard for the test above: with these inputs clamping is active, so a loop that
    # skipped it would fail the comparison. (Adam's first step is scale-free per entry, so
    # clamping shows only from the second step on: use several windows.)
    torch.manual_seed(0)
    model = _Linear()
    batches = _batches(9)
    clipped = _replay(model, batches, TrainConfig(lr=0.05, update_every=3, grad_clip_value=0.6), 9)
    loose = _replay(model, batches, TrainConfig(lr=0.05, update_every=3, grad_clip_value=1e6), 9)
    assert not torch.allclose(clipped.lin.weight, loose.lin.weight)


def test_no_step_is_an_error():
    model = _Linear()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(RuntimeError, match="update_every"):
        train_one_epoch(model, _ListLoader(_batches(2)), opt, TrainConfig(update_every=10), progress=False)


def test_early_stopping_threshold_and_patience():
    s = EarlyStopping(patience=2)
    assert s.update(1.0, 1)
    assert not s.update(1.0 - 5e-7, 2)  # below the official 1e-6 improvement threshold
    assert s.update(0.9, 3)
    assert not s.should_stop(4)
    assert s.should_stop(5)
    assert s.best_epoch == 3


def test_train_config_validation():
    with pytest.raises(ValueError, match="train.update_every"):
        TrainConfig(update_every=0)
    with pytest.raises(ValueError, match="trailing_window"):
        TrainConfig(trailing_window="keep")


def test_selection_loss_is_bce_of_logits_for_binary_tasks():
    from emodistill.training.loop import Predictions

    z, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 0.0, 0.0])
    pred = Predictions(prediction=z, label=y, index=np.arange(3), task="binary")
    want = (math.log(2) + (2 + math.log1p(math.exp(-2))) + math.log1p(math.exp(-1))) / 3
    assert pred.loss == pytest.approx(want)
    assert Predictions(prediction=z, label=y, index=np.arange(3)).loss == pytest.approx((1 + 2 + 1) / 3)  # MAE


def test_param_groups_give_named_groups_their_own_adam_settings():
    from torch import nn

    from emodistill.training.config import TrainConfig
    from emodistill.training.loop import make_optimizer

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 1)

        def optimizer_groups(self):
            return {"audio": list(self.a.parameters()), "other": list(self.b.parameters())}

    opt = make_optimizer(Two(), TrainConfig(lr=1e-3, weight_decay=0.0, param_groups={"audio": {"lr": 5e-3}}))
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [(5e-3, 0.0, 2),
                                                                                         (1e-3, 0.0, 2)]
    with pytest.raises(ValueError, match=r"unknown group\(s\) \['bert'\]"):
        make_optimizer(Two(), TrainConfig(param_groups={"bert": {"lr": 1e-5}}))
    with pytest.raises(ValueError, match="names no parameter groups"):
        make_optimizer(nn.Linear(2, 1), TrainConfig(param_groups={"audio": {"lr": 1e-5}}))
    with pytest.raises(ValueError, match="expected a mapping of lr / weight_decay"):
        TrainConfig(param_groups={"audio": {"momentum": 0.9}})
