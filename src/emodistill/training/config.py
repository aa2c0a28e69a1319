"""Training configuration and YAML recipes.

A recipe is a YAML file with up to three sections::

    model: {name: dmd, d: 50, ...}      # name + keyword arguments of create_model
    train: {lr: 1.0e-4, ...}            # fields of TrainConfig
    data:  {source: synth, ...}         # fields of DataConfig

plus an optional ``search:`` section, the hyper-parameter ranges of ``emodistill tune``
(:mod:`emodistill.experiments.search_space`); training ignores it.

Values given on the command line as ``--train.lr 3e-4`` or ``--model.d 30`` override the recipe, and the
fully resolved result is written to ``config.yaml`` in the run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    """Optimisation and model selection. Defaults reproduce the official DMD recipe (dmd-spec §6)."""

    lr: float = 1e-4
    """Adam learning rate (one parameter group; a BERT text encoder shares it, as in the official code)."""
    weight_decay: float = 0.0
    """Adam weight decay. The official config lists 0.005/0.001, but its optimiser never uses it."""
    batch_size: int = 16
    """Training mini-batch size."""
    eval_batch_size: int = 64
    """Mini-batch size for validation and test (does not change any metric)."""
    update_every: int = 10
    """Gradient-accumulation window in mini-batches: gradients are summed (not averaged) over this many
    mini-batches before one Adam step (the official `update_epochs`)."""
    grad_clip_value: float | None = 0.6
    """Clamp every gradient entry to [-v, v] after each backward (on the running sum), or None."""
    trailing_window: str = "discard"
    """What happens to the last, incomplete accumulation window of an epoch: "discard" (official: its
    gradients are thrown away by the next zero_grad, so we skip computing them) or "step"."""
    scheduler: str = "plateau"
    """"plateau" (ReduceLROnPlateau on validation loss) or "none"."""
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    early_stop: int = 10
    """Stop after this many epochs without a validation-loss improvement of at least 1e-6."""
    max_epochs: int | None = None
    """Upper bound on epochs; None = until early stopping (official behaviour)."""
    seed: int = 1111
    """Seeds torch (weights, dropout) and the shuffle order."""
    device: str = "auto"
    """"auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", "mps"."""
    num_threads: int | None = None
    """torch intra-op threads on CPU (None: torch's default)."""
    deterministic: bool = True
    """Ask torch for deterministic kernels (CPU results are then bit-reproducible)."""
    param_groups: dict[str, dict[str, float]] | None = None
    """Per-group Adam settings for models that name their parameter groups (``optimizer_groups()``, e.g.
    Self-MM's ``bert_decay``, ``audio``, ...), e.g. ``{audio: {lr: 5.0e-3}, other: {lr: 1.0e-3}}``; groups
    not listed use ``lr`` and ``weight_decay``."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"train.lr={self.lr} must be > 0")
        for group, values in (self.param_groups or {}).items():
            bad = sorted(set(values) - {"lr", "weight_decay"}) if isinstance(values, dict) else values
            if bad:
                raise ValueError(f"train.param_groups.{group}: expected a mapping of lr / weight_decay, found {bad}")
        for name in ("batch_size", "eval_batch_size", "update_every", "early_stop"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)} must be >= 1")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"train.max_epochs={self.max_epochs} must be >= 1 or null")
        if self.grad_clip_value is not None and self.grad_clip_value <= 0:
            raise ValueError(f"train.grad_clip_value={self.grad_clip_value} must be > 0 or null")
        if self.trailing_window not in ("discard", "step"):
            raise ValueError(f"train.trailing_window={self.trailing_window!r}; expected 'discard' or 'step'")
        if self.scheduler not in ("plateau", "none"):
            raise ValueError(f"train.scheduler={self.scheduler!r}; expected 'plateau' or 'none'")


@dataclass
class DataConfig:
    """Which data to train on and how strictly to read it."""

    source: str = "synth"
    """"synth", "synth-unaligned", the path of an MMSA processed pickle, or a UR-FUNNY v2 / MUStARD
    release directory."""
    dataset: str | None = None
    """Force the data-set family (mosi, mosei, sims for files; urfunny, mustard for directories);
    default: from the file's hash or dims, or the directory's files."""
    options: dict[str, Any] = field(default_factory=dict)
    """Reader options of a directory data set, e.g. ``{split: fold, fold: 3}`` (MUStARD) or
    ``{context_sentences: 2, max_len: 60}`` (UR-FUNNY); see the README."""
    strict_hash: bool = False
    """Fail (instead of warn) when a published MMSA file's SHA-256 does not match."""
    replace_nonfinite: bool = False
    """Replace NaN/inf features by 0 instead of refusing the file (audio -inf is always set to 0)."""


@dataclass
class RunConfig:
    """Everything one training run needs: model name and arguments, training and data settings."""

    model: str = "dmd"
    model_config: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"name": self.model, **self.model_config},
            "train": dataclasses.asdict(self.train),
            "data": dataclasses.asdict(self.data),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> RunConfig:
        unknown = set(d) - {"model", "train", "data", "search"}  # search: read by `emodistill tune` only
        if unknown:
            raise ValueError(f"{origin}: unknown section(s) {sorted(unknown)}; expected model, train, data, search")
        model = dict(d.get("model") or {})
        name = model.pop("name", "dmd")
        return cls(
            model=name,
            model_config=model,
            train=_build(TrainConfig, d.get("train") or {}, f"{origin}: train"),
            data=_build(DataConfig, d.get("data") or {}, f"{origin}: data"),
        )


def _build(cls, values: dict[str, Any], origin: str):
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {sorted(unknown)}; expected some of {sorted(names)}")
    return cls(**values)


def recipe_dir() -> Path:
    """Folder of the YAML recipes shipped with the package."""
    return Path(str(resources.files("emodistill") / "recipes"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file path, or the name of a shipped recipe (e.g. ``dmd_mosi_aligned``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = recipe_dir() / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"{name_or_path}: no such recipe file; shipped recipes: {', '.join(list_recipes())}")


def load_recipe(name_or_path: str) -> dict[str, Any]:
    path = resolve_recipe(name_or_path)
    with open(path) as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a recipe must be a mapping with sections model/train/data")
    return d


def apply_overrides(d: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """Apply ``("train.lr", "3e-4")``-style overrides; values are parsed as YAML scalars/lists."""
    d = {k: dict(v or {}) for k, v in d.items()}
    for key, raw in overrides:
        section, _, name = key.partition(".")
        if section not in ("model", "train", "data") or not name:
            raise ValueError(f"override --{key}: expected --model.NAME, --train.NAME or --data.NAME")
        value = yaml.safe_load(raw) if isinstance(raw, str) else raw
        # YAML reads "1e-4" as a string; accept the float spelling people type.
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else value
            except ValueError:
                pass
        d.setdefault(section, {})[name] = value
    return d
