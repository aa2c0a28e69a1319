"""Fast mini-batches over an in-memory split.

MMSA splits fit in memory (MOSEI text, the largest, is ~3.5 GB float32), so a torch ``Dataset`` with a
per-sample Python collate is pure overhead. :class:`BatchLoader` turns the split into tensors once
(zero-copy for CPU) and builds each batch with one ``index_select`` per key.

The shuffle order is a pure function of ``(seed, epoch)``, so a run resumed at epoch ``e`` sees the
same batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from emodistill.data.types import SplitData
from emodistill.spec import FRAME_MODALITIES


class BatchLoader:
    """Iterable of batch dicts over one split.

    Each batch (tensors on ``device``)::

        "text" (B, T_l, D_l) float32;  "text_bert" (B, 3, T_l) float32 [only if the split has it];
        "audio" (B, T_a, D_a);  "vision" (B, T_v, D_v);
        "audio_lengths", "vision_lengths" (B,) int64 [always; = T for aligned files];
        "labels" (B,) float32;  "labels_T"/"labels_A"/"labels_V" (B,) [SIMS only];
        "index" (B,) int64 row in the split (``split.ids[index]`` recovers the clip ids).

    Args:
        split: the data.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: permute the rows each epoch.
        seed: base seed of the permutation.
        device: where batches are delivered.
        drop_last: skip a final incomplete batch.
        keep_on_device: move the whole split to ``device`` once (fast on a GPU with room to spare);
            otherwise each batch is gathered on the CPU and transferred once.

        rank, world_size: this process's share under distributed training (see
            :mod:`emodistill.training.distributed`). With ``shuffle`` (training) every process walks the same
            global batches of ``batch_size`` rows and takes a contiguous share of each; a process whose
            share is empty gets the batch's first row, to be weighted 0 (:meth:`shard_weight`). Without
            ``shuffle`` (evaluation) the process takes every ``world_size``-th row from ``rank`` and batches
            them; gather the predictions to cover the split.

    Epochs: each ``iter()`` uses the current epoch and then advances it by one; :meth:`set_epoch`
    sets it explicitly (do that at the start of every epoch to make resumption exact).
    """

    def __init__(
        self,
        split: SplitData,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        keep_on_device: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size})")
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.epoch = 0
        self.n = len(split)
        # evaluation under distribution: this process's rows; training shards each global batch instead
        self._rows = np.arange(rank, self.n, world_size) if world_size > 1 and not shuffle else np.arange(self.n)
        self.tensors = self._to_tensors(split)
        if keep_on_device:
            self.tensors = {k: v.to(self.device) for k, v in self.tensors.items()}
        self._on_device = keep_on_device or self.device.type == "cpu"

    @staticmethod
    def _to_tensors(split: SplitData) -> dict[str, Tensor]:
        n = len(split)
        t = {
            "text": torch.from_numpy(split.text),
            "audio": torch.from_numpy(split.audio),
            "vision": torch.from_numpy(split.vision),
            "labels": torch.from_numpy(split.labels),
            "index": torch.arange(n, dtype=torch.int64),
        }
        if split.text_bert is not None:
            t["text_bert"] = torch.from_numpy(split.text_bert)
        for mod in FRAME_MODALITIES:
            lengths = getattr(split, f"{mod}_lengths")
            if lengths is None:  # aligned file: every step counts
                t[f"{mod}_lengths"] = torch.full((n,), getattr(split, mod).shape[1], dtype=torch.int64)
            else:
                t[f"{mod}_lengths"] = torch.from_numpy(lengths)
        for m, y in split.unimodal_labels.items():
            t[f"labels_{m}"] = torch.from_numpy(y)
        return t

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of ``epoch``."""
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray:
        """(N,) row order for ``epoch``: a permutation seeded by ``(seed, epoch)`` or ``arange``
        (this process's rows, in order, for distributed evaluation)."""
        if not self.shuffle:
            return self._rows
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __len__(self) -> int:
        n = len(self._rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_batch_size(self, b: int) -> int:
        """Rows of batch ``b`` over all processes (training) or of this process (evaluation)."""
        return min(self.batch_size, len(self._rows) - b * self.batch_size)

    def shard_weight(self, b: int) -> float:
        """Loss factor of this process's share of training batch ``b``: ``W * n_rank / n_global``, so that
        DDP's average of the processes' gradients is the gradient of the global batch mean (0 for the
        placeholder row of an empty share; exactly 1 when single-process)."""
        if self.world_size == 1 or not self.shuffle:
            return 1.0
        n_global = self.global_batch_size(b)
        start, stop = shard_bounds(n_global, self.world_size, self.rank)
        return self.world_size * (stop - start) / n_global

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = torch.from_numpy(self.order(self.epoch))
        self.epoch += 1
        first_device = next(iter(self.tensors.values())).device
        shard = self.world_size > 1 and self.shuffle
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]  # (B_global,)
            if shard:
                start, stop = shard_bounds(len(idx), self.world_size, self.rank)
                idx = idx[start:stop] if stop > start else idx[:1]  # (B_rank,); empty share: weight-0 row
            idx = idx.to(first_device)
            batch = {k: v.index_select(0, idx) for k, v in self.tensors.items()}
            if not self._on_device:
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            yield batch


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous share of ``n`` rows (the first ``n % W`` get one more)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
