"""Self-describing, atomically written checkpoints.

A checkpoint is one ``torch.save``d dict::

    {"format_version": 1, "package_version": "0.1.0",
     "model_name": "dmd", "model_config": {...}, "spec": {...},     # enough to rebuild the model
     "train_config": {...} | None, "data": {...} | None,            # provenance
     "extract_config": {...} | None,                                # for prediction on raw video
     "state_dict": {...},                                          # the unwrapped model's weights
     "training_state": {...} | None}                               # optimiser, scheduler, RNG (last.ckpt)

It holds only tensors, numbers, strings, lists and dicts, so it loads with ``weights_only=True``:
opening a checkpoint never runs code from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from emodistill import __version__
from emodistill.io import atomic_write
from emodistill.spec import DatasetSpec

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "model_name", "model_config", "spec", "state_dict")


def build_checkpoint(
    model: nn.Module,
    model_name: str,
    spec: DatasetSpec,
    model_config: dict,
    *,
    train_config: dict | None = None,
    data: dict | None = None,
    extract_config: dict | None = None,
    training_state: dict | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict for ``model`` (unwrapped from DDP/compile by the caller)."""
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model_name": model_name,
        "model_config": model_config,
        "spec": spec.to_dict(),
        "train_config": train_config,
        "data": data,
        "extract_config": extract_config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "training_state": training_state,
    }


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the checkpoint dict at ``path`` (no code execution: ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign or corrupt files
        raise ValueError(f"{path}: not a readable emodistill checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path}: not an emodistill checkpoint, missing keys {missing} "
            "(an official DMD state_dict? convert it with `emodistill import-official`)"
        )
    if ckpt["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this emodistill "
            f"({__version__}, format {FORMAT_VERSION}); upgrade the package"
        )
    return ckpt
