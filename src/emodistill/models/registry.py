"""Model registry: every architecture is built by name from a :class:`DatasetSpec` (timm's pattern).

Each builder is registered with its config dataclass, so that the valid hyper-parameters of a model, and
their types and defaults, are known without building it (:func:`model_fields`): the command line converts
``--model.X VALUE`` to the field's type and ``emodistill train --help-config`` lists them.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from emodistill.checkpoint import read_checkpoint
from emodistill.errors import UserError
from emodistill.spec import DatasetSpec

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_CONFIGS: dict[str, type] = {}


class UnknownModelError(UserError, KeyError):
    """No model is registered under the requested name."""


class ModelField(NamedTuple):
    """One keyword argument a registered model accepts."""

    name: str
    type: Any
    """The resolved annotation, e.g. ``int``, ``float | None``, ``tuple[str, ...]``."""
    default: Any
    """The default value (``dataclasses.MISSING`` if there is none)."""


def register_model(name: str, description: str = "", *, config: type) -> Callable:
    """Decorator that registers ``fn(spec, **cfg) -> nn.Module`` under ``name``.

    Args:
        name: the registry name (``create_model(name, ...)``, ``--model NAME``).
        description: one line for ``emodistill models`` (default: the builder's first docstring line).
        config: the model's config dataclass, whose fields are the builder's keyword arguments.
    """
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"register_model({name!r}): config={config!r} is not a dataclass")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise KeyError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().splitlines()[0]
        _CONFIGS[name] = config
        return fn

    return wrap


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise UnknownModelError(f"unknown model {name!r}; choose from {sorted(_BUILDERS)}")


def model_config_class(name: str) -> type:
    """The config dataclass registered with model ``name``."""
    _check_name(name)
    return _CONFIGS[name]


def model_fields(name: str) -> dict[str, ModelField]:
    """Every keyword argument model ``name`` accepts: its config's fields, then the builder's explicit
    keyword parameters that are not fields (e.g. ``text_encoder`` of the MMSA baselines)."""
    _check_name(name)
    out: dict[str, ModelField] = {}
    config = _CONFIGS[name]
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[f.name] = ModelField(f.name, hints[f.name], default)
    fn = _BUILDERS[name]
    hints = typing.get_type_hints(fn)
    for i, p in enumerate(inspect.signature(fn).parameters.values()):
        if i == 0 or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in out:
            continue  # the first parameter is the spec
        default = dataclasses.MISSING if p.default is p.empty else p.default
        out[p.name] = ModelField(p.name, hints.get(p.name, Any), default)
    return out


def create_model(name: str, spec: DatasetSpec, **cfg) -> nn.Module:
    """Build the registered model ``name`` sized for ``spec``, with hyper-parameters ``cfg``."""
    _check_name(name)
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
