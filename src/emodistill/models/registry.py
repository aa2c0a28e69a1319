"""Model registry: every architecture is built by name from a :class:`DatasetSpec` (timm's pattern)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emodistill.checkpoint import read_checkpoint
from emodistill.spec import DatasetSpec

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable:
    """Decorator that registers ``fn(spec, **cfg) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise KeyError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return wrap


def create_model(name: str, spec: DatasetSpec, **cfg) -> nn.Module:
    """Build the registered model ``name`` sized for ``spec``, with hyper-parameters ``cfg``."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(_BUILDERS)}")
    return _BUILDERS[name](spec, **cfg)


def list_models() -> dict[str, str]:
    """Registered model names with a one-line description each."""
    return dict(sorted(_DESCRIPTIONS.items()))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored at ``path`` with its weights (strict), in eval mode.

    Returns:
        ``(model, checkpoint_dict)``.
    """
    ckpt = read_checkpoint(path)
    spec = DatasetSpec.from_dict(ckpt["spec"])
    model = create_model(ckpt["model_name"], spec, **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.to(device).eval(), ckpt
