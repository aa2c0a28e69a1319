"""Pieces of the training loop: one epoch, eval-mode predictions, early stopping and the optimiser;
:func:`emodistill.training.fit.fit` runs them with model selection on the validation split.

By default it reproduces the official DMD recipe (docs/dmd-spec.md §6): Adam; gradients *summed* over
``update_every`` mini-batches before each step; every gradient entry clamped to ±0.6 after each
backward (on the running sum); ReduceLROnPlateau(0.5, patience 5) on the validation loss; early stop
after 10 epochs without improvement. Deviations, all deliberate:

* the validation loss is the exact mean L1 over samples (the official code averages per-batch means of
  shuffled batches, which depends on the shuffle order);
* the test split is evaluated once, on the selected checkpoint, never during training;
* the trailing incomplete accumulation window, whose gradients the official code computes and then
  throws away, is skipped (same parameter updates, less work), unless ``trailing_window="step"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from emodistill.data.loader import BatchLoader
from emodistill.errors import DeviceUnavailable, NoOptimiserStep
from emodistill.metrics.scores import binary_cross_entropy_with_logits
from emodistill.spec import is_binary_task
from emodistill.training.config import TrainConfig
from emodistill.training.distributed import DistContext, all_sum, gather_objects, unwrap

_IMPROVEMENT = 1e-6  # official: best <- val if val <= best - 1e-6


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's text lists every backend it knows; ours names the usual ones
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"train.device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the trainable parameters: one group, or the model's named groups with
    ``cfg.param_groups`` settings (groups not listed there use ``cfg.lr`` / ``cfg.weight_decay``)."""
    if not cfg.param_groups:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if not hasattr(model, "optimizer_groups"):
        raise ValueError(f"train.param_groups is set, but {type(model).__name__} names no parameter groups")
    named = model.optimizer_groups()
    unknown = sorted(set(cfg.param_groups) - set(named))
    if unknown:
        raise ValueError(f"train.param_groups: unknown group(s) {unknown}; {type(model).__name__} has {sorted(named)}")
    groups = []
    for name, params in named.items():
        params = [p for p in params if p.requires_grad]
        if params:
            settings = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **cfg.param_groups.get(name, {})}
            groups.append({"params": params, **settings})
    return torch.optim.Adam(groups)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )


def usable_batches(n_batches: int, cfg: TrainConfig) -> int:
    """Mini-batches per epoch that contribute to an optimiser step."""
    if cfg.trailing_window == "step":
        return n_batches
    return (n_batches // cfg.update_every) * cfg.update_every


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    desc: str = "train",
    ctx: DistContext | None = None,
) -> dict[str, float]:
    """One pass over the training split with windowed gradient accumulation.

    ``model`` may be wrapped in DistributedDataParallel (``ctx`` then describes the processes): each
    process's loss is scaled by ``loader.shard_weight(i)`` so that the all-reduced gradient is that of
    the global batch mean, and clipping acts on the synchronised running sum, as single-process.

    Returns:
        Sample-weighted means of every loss term the model reports (over all processes), plus ``"steps"``.
    """
    ctx = ctx or DistContext()
    model.train()
    net = unwrap(model)
    params = [p for p in model.parameters() if p.requires_grad]
    n_use = usable_batches(len(loader), cfg)
    sums: dict[str, Tensor] = {}
    n_samples, steps = 0, 0
    bar = tqdm(total=n_use, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for i, batch in enumerate(loader):
        if i >= n_use:
            break
        if i % cfg.update_every == 0:
            optimizer.zero_grad(set_to_none=True)
        out = model(batch)
        losses = net.compute_losses(out, batch["labels"])
        weight = loader.shard_weight(i) if ctx.enabled else 1.0
        (losses["loss"] * weight if ctx.enabled else losses["loss"]).backward()
        if cfg.grad_clip_value is not None:
            nn.utils.clip_grad_value_(params, cfg.grad_clip_value)
        if (i + 1) % cfg.update_every == 0 or i == n_use - 1:
            optimizer.step()
            steps += 1
        b = batch["labels"].shape[0] if weight > 0 else 0  # 0: the placeholder row of an empty share
        n_samples += b
        for k, v in losses.items():
            v = v.detach() * b
            sums[k] = sums[k] + v if k in sums else v
        if progress:
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss'].item():.4f}")
    bar.close()
    if steps == 0:
        raise NoOptimiserStep(
            f"no optimiser step this epoch: {len(loader)} training batches < train.update_every="
            f"{cfg.update_every} with trailing_window='discard'; lower update_every or use 'step'"
        )
    if ctx.enabled:
        device = sums["loss"].device
        totals = all_sum({**sums, "_n": torch.tensor(float(n_samples), device=device)}, ctx)
        n_samples = float(totals.pop("_n"))
        sums = totals
    result = {k: (v / n_samples).item() for k, v in sums.items()}
    result["steps"] = steps
    return result


@dataclass
class Predictions:
    """Eval-mode outputs over a whole split, in split order."""

    prediction: np.ndarray  # (N,) scores; logits for binary tasks
    label: np.ndarray  # (N,)
    index: np.ndarray  # (N,) row in the split
    task: str = "regression"
    edges: dict[str, list[float]] = field(default_factory=dict)
    """With ``predict(..., edges=True)``: split means of the GD edge weights, ``{space: [6 floats]}``."""
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    """With ``predict(..., edges=True)``: the model's dictionary activations in split order,
    ``{"activations/<space>/<m>": (N, K)}`` (DHMD; empty otherwise)."""

    @property
    def is_binary(self) -> bool:
        """True for a binary task: ``prediction`` holds logits, ``label`` 0/1."""
        return is_binary_task(self.task)

    @property
    def loss(self) -> float:
        """The model-selection criterion, averaged over samples: the absolute error (regression, as DMD)
        or the binary cross-entropy of the logits (binary tasks)."""
        if self.is_binary:
            return binary_cross_entropy_with_logits(self.prediction, self.label)
        return float(np.mean(np.abs(self.prediction - self.label)))


@torch.no_grad()
def predict(model: nn.Module, loader: BatchLoader, *, edges: bool = False) -> Predictions:
    """Eval-mode scores over a split; ``edges=True`` also averages the model's GD edge weights (``{}`` if
    it has none) and keeps its dictionary activations, from the same forward pass, so that a run can
    record how they evolve over epochs."""
    model.eval()
    preds, labels, index = [], [], []
    edge_sums: dict[str, Tensor] = {}
    acts: dict[str, list[Tensor]] = {}
    with model.inference_cache():  # the weights are fixed for the whole pass (DMD/MulT fold them once)
        for batch in loader:
            if edges and hasattr(model, "predict_and_interpret"):
                scores, named = model.predict_and_interpret(batch)
                for k, v in named.items():
                    if k.startswith("edges/"):
                        v = v.double().sum(dim=0).cpu()  # (6,)
                        edge_sums[k] = edge_sums[k] + v if k in edge_sums else v
                    elif k.startswith("activations/"):
                        acts.setdefault(k, []).append(v.float().cpu())  # (B, K)
            else:
                scores = model.predict(batch)
            preds.append(scores.reshape(-1).float().cpu())
            labels.append(batch["labels"].reshape(-1).float().cpu())
            index.append(batch["index"].reshape(-1).cpu())
    if not preds:  # a process's share of a split smaller than the number of processes
        preds, labels, index = [torch.zeros(0)], [torch.zeros(0)], [torch.zeros(0, dtype=torch.int64)]
    order = torch.cat(index).argsort()
    n = len(order)
    activations = {k: torch.cat(v)[order].numpy() for k, v in acts.items() if n}
    return Predictions(
        prediction=torch.cat(preds)[order].numpy().astype(np.float64),
        label=torch.cat(labels)[order].numpy().astype(np.float64),
        index=torch.cat(index)[order].numpy(),
        task=getattr(getattr(model, "spec", None), "task", "regression"),
        edges={k.split("/", 1)[1]: (v / n).tolist() for k, v in edge_sums.items()},
        activations=activations,
    )


def gather_predictions(pred: Predictions, ctx: DistContext) -> Predictions:
    """The whole split's predictions from every process's share (in split order), on every process."""
    if not ctx.enabled:
        return pred
    parts = gather_objects(pred, ctx)
    index = np.concatenate([p.index for p in parts])
    order = np.argsort(index, kind="stable")
    edges = {}
    for k in sorted(set().union(*(p.edges for p in parts))):  # split means from per-process means
        having = [p for p in parts if k in p.edges]
        total = sum(np.asarray(p.edges[k]) * len(p.index) for p in having)
        edges[k] = (total / sum(len(p.index) for p in having)).tolist()
    activations = {}  # a process with no samples has no activations: its share adds 0 rows
    for k in sorted(set().union(*(p.activations for p in parts))):
        rows = [p.activations[k] for p in parts if k in p.activations]
        if sum(len(r) for r in rows) == len(index):
            activations[k] = np.concatenate(rows)[order]
    return Predictions(
        prediction=np.concatenate([p.prediction for p in parts])[order],
        label=np.concatenate([p.label for p in parts])[order],
        index=index[order],
        task=pred.task,
        edges=edges,
        activations=activations,
    )


@dataclass
class EarlyStopping:
    """Model selection on validation loss with the official 1e-6 improvement threshold."""

    patience: int
    best: float = math.inf
    best_epoch: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; True if it is a new best."""
        if value <= self.best - _IMPROVEMENT:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch - self.best_epoch >= self.patience


EpochCallback = Callable[[int, dict], None]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
