"""Distributed data-parallel training under ``torchrun``: process group, rank roles, collectives.

``torchrun --nproc_per_node N -m emodistill train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in their environment (multi-node: the same command on
every node with ``--nnodes``, ``--node_rank`` or ``--rdzv_endpoint``). :func:`init_from_env` joins the
process group: NCCL when the training device is CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on
the CPU. Without those variables everything here is a no-op and training is single-process.

Semantics, chosen so that a recipe means the same optimisation on 1 or N processes:

* ``train.batch_size`` is the *global* mini-batch. Every process draws the same seeded permutation and
  takes a contiguous share of each global batch (sizes differ by at most one row). Its loss is scaled
  by ``W * n_rank / n_global`` before the backward, so DDP's gradient average equals the gradient of the
  mean over the whole global batch. A process whose share of a short final batch is empty runs one row
  with weight 0, so every process takes part in every gradient all-reduce.
* Loss terms that are means over samples are therefore exactly those of a single process. Terms that
  couple the samples of a batch (DMD's margin loss, its ``torch19`` orthogonality loss, the GD-Unit
  regularisers; BatchNorm statistics) are computed over each process's share, as in any DDP training.
* Validation and test rows are split across processes and the predictions gathered, so every process
  computes the same metrics on the whole split and takes the same scheduler and early-stopping
  decisions. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes (``rank 0`` writes)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``torchrun``, ``srun`` wrappers...)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by the environment (idempotent); single-process without it.

    Args:
        device: the training device setting (``train.device``); ``auto``/``cuda*`` with CUDA present
            selects NCCL and pins this process to ``cuda:LOCAL_RANK``, otherwise gloo on the CPU.
        timeout_s: how long a collective waits for the other processes before failing.
    """
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {var} is not set; launch with torchrun")
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return current()


def shutdown() -> None:
    """End a distributed run: leave the process group once every process got here, then end this process
    with status 0 (a no-op when not distributed; the last call of ``emodistill train``). A process that
    exits while gloo's threads still serve the group can abort at interpreter exit ("terminate called
    without an active exception"), which fails a run that has finished its work."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        # Seen rarely under heavy load even after the barrier: a worker aborting in the interpreter's teardown
        # (gloo threads and static destructors). The work is done and every file was written atomically, so
        # the process leaves without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def current() -> DistContext:
    """This process's context: from the initialised process group, else single-process."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def process_device(ctx: DistContext, device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for distributed CUDA training, else ``device``."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device, probe_batch: dict | None = None) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model`` itself.

    Some configurations leave parameters without a gradient (a fine-tuned BERT's pooler, ablated
    branches); DDP must then be told to look for them (``find_unused_parameters``, an extra graph
    traversal per step), or it waits for their gradients forever. ``probe_batch`` settles it: one
    eval-mode forward and loss on it (no RNG drawn, no state changed) lists the parameters the loss
    does not reach. Without a probe batch the safe setting is used.
    """
    if not ctx.enabled:
        return model
    if not getattr(model, "supports_distributed", True):
        raise ValueError(f"{type(model).__name__} cannot be trained with several processes: "
                         f"{getattr(model, 'distributed_reason', 'it keeps per-sample state')}")
    find_unused = True if probe_batch is None else bool(unused_parameters(model, probe_batch))
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unused_parameters(model: nn.Module, batch: dict) -> list[str]:
    """Names of trainable parameters that the training loss of ``batch`` does not depend on."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        loss = model.compute_losses(model(batch), batch["labels"])["loss"]
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    finally:
        model.train(was_training)
    return [n for (n, _), g in zip(named, grads, strict=True) if g is None]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (its methods and state_dict names), or ``model``."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_sum(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """Element-wise sums over processes of same-keyed scalar tensors, all on this process's training device
    (which NCCL needs them on); returned unchanged when single."""
    if not ctx.enabled:
        return values
    keys = sorted(values)
    flat = torch.stack([values[k].detach().double().reshape(()) for k in keys])
    dist.all_reduce(flat)
    return {k: flat[i].cpu() for i, k in enumerate(keys)}


def gather_objects(obj: T, ctx: DistContext) -> list[T]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` when single)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, ctx: DistContext) -> T:
    """Rank 0's ``obj`` on every process."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every process; an exception on rank 0 is
    raised on every process (same type and message), so that no process waits for the others forever."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as e:  # re-raised below, on every rank
            error = e
    if ctx.enabled:
        result, error_info = broadcast((result, None if error is None else (type(error), str(error))), ctx)
        if error is None and error_info is not None:
            cls, msg = error_info
            try:
                error = cls(msg)
            except Exception:
                error = RuntimeError(msg)
    if error is not None:
        raise error
    return result
