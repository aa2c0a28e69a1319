"""Training configuration and YAML recipes.

A recipe is a YAML file with up to three sections::

    model: {name: dmd, d_model: 50, ...}   # name + keyword arguments of create_model (its config's fields)
    train: {lr: 1.0e-4, ...}               # fields of TrainConfig
    data:  {source: synth, ...}            # fields of DataConfig

plus an optional ``search:`` section, the hyper-parameter ranges of ``emodistill tune``
(:mod:`emodistill.experiments.search_space`); training ignores it.

:func:`make_config` builds a :class:`RunConfig` from a recipe, a model name, a data source and
overrides such as ``("train.lr", "3e-4")`` or ``("model.d_model", "30")`` (on the command line
``--train.lr 3e-4 --model.d_model 30``); every value is converted to its field's type
(:mod:`emodistill.training.fields`), and the fully resolved result is written to ``config.yaml`` in the
run directory. :func:`config_help` lists every field with its type, default and docstring.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emodistill.io import read_yaml
from emodistill.training.fields import convert, describe_field, field_docs

if TYPE_CHECKING:
    from emodistill.data.types import MMSAData


@dataclass
class TrainConfig:
    """Optimisation and model selection. Defaults reproduce the official DMD recipe."""

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
    """Factor by which ReduceLROnPlateau multiplies the learning rate."""
    plateau_patience: int = 5
    """Epochs without a validation-loss improvement before ReduceLROnPlateau lowers the learning rate."""
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
    """"synth", "synth-unaligned", "synth-concepts", "synth-concepts-unaligned", the path of an MMSA processed
    pickle, or a UR-FUNNY v2 / MUStARD release directory."""
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

    def load(self) -> MMSAData:
        """Read the data set these settings describe (:func:`emodistill.data.load_dataset`)."""
        from emodistill.data import load_dataset

        return load_dataset(self.source, dataset=self.dataset, strict_hash=self.strict_hash,
                            replace_nonfinite=self.replace_nonfinite, options=self.options)


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
        for section in ("model", "train", "data"):
            if not isinstance(d.get(section) or {}, dict):
                raise ValueError(f"{origin}: section '{section}' must be a mapping (e.g. model: {{name: dmd}}), "
                                 f"found {d[section]!r}")
        model = dict(d.get("model") or {})
        name = model.pop("name", "dmd")
        return cls(
            model=name,
            model_config=model,
            train=_build(TrainConfig, d.get("train") or {}, f"{origin}: train"),
            data=_build(DataConfig, d.get("data") or {}, f"{origin}: data"),
        )


def _build(cls, values: dict[str, Any], origin: str):
    """``cls(**values)`` with every value converted to its field's type."""
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {sorted(unknown)}; expected some of {sorted(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: convert(v, hints[k], f"{origin}.{k}") for k, v in values.items()})


def recipe_dir() -> Path:
    """Folder of the YAML recipes shipped with the package."""
    return Path(str(resources.files("emodistill") / "recipes"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def _shipped_recipe(name: str) -> Path | None:
    """The shipped recipe called ``name`` (with or without ``.yaml``), or None."""
    shipped = recipe_dir() / f"{name.removesuffix('.yaml')}.yaml"
    return shipped if shipped.is_file() else None


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file path, or the name of a shipped recipe (e.g. ``dmd_mosi_aligned``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = _shipped_recipe(name_or_path)
    if shipped is not None:
        return shipped
    raise FileNotFoundError(f"{name_or_path}: no such recipe file; shipped recipes: {', '.join(list_recipes())}")


RUN_RECORD = ("seed", "spec", "environment", "data_provenance", "distributed")
"""Top-level keys a run's ``config.yaml`` adds to its recipe sections (written by ``fit``); a recipe read
from a run directory drops them, so a finished run's configuration can be trained again as it is."""


RECIPE_SECTIONS = ("model", "train", "data", "search")
"""The sections of a recipe file; ``extends`` merges them key by key."""


def load_recipe(name_or_path: str, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's sections ``{model, train, data[, search]}`` from a shipped name or a YAML path (also a
    run's ``config.yaml``: its :data:`RUN_RECORD` keys, which describe the run, are dropped).

    ``extends: OTHER`` (a file next to this one, with or without ``.yaml``, else a shipped recipe; never
    the working directory) starts from OTHER's sections; each key this file sets replaces OTHER's value of
    that key (a whole value: a mapping such as ``param_groups`` is not merged further), so a recipe states
    only what differs from a published one. A section set to null (``search: null``) drops OTHER's, and a
    model section naming another model starts empty instead of from OTHER's model settings.

    Raises:
        ValueError: not a mapping, an unknown top-level key, a section that is not a mapping, or an
            ``extends`` that names no recipe or makes a cycle.
        FileNotFoundError: no such recipe.
    """
    path = resolve_recipe(name_or_path)
    d = read_yaml(path) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a recipe must be a mapping with sections model/train/data, "
                         f"found a {type(d).__name__}")
    if "environment" in d or "spec" in d:  # a run's resolved configuration
        d = {k: v for k, v in d.items() if k not in RUN_RECORD}
    unknown = [k for k in d if k not in (*RECIPE_SECTIONS, "extends")]
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; expected some of "
                         f"{', '.join((*RECIPE_SECTIONS, 'extends'))}")
    for section in RECIPE_SECTIONS:
        if not isinstance(d.get(section) or {}, dict):
            raise ValueError(f"{path}: section '{section}' must be a mapping (e.g. model: {{name: dmd}}), "
                             f"found {d[section]!r}")
    if "extends" not in d:
        return d
    parent_path = _extended_recipe(path, d.pop("extends"))
    chain = (*_chain, path.resolve())
    if parent_path.resolve() in chain:
        raise ValueError(f"{path}: extends {parent_path.name!r} makes a cycle: "
                         + " -> ".join(p.name for p in (*chain, parent_path.resolve())))
    parent = load_recipe(str(parent_path), chain)
    own_model = (d.get("model") or {}).get("name")
    for section in RECIPE_SECTIONS:
        if section in d and d[section] is None:  # null: drop the parent's section
            d[section] = {}
        elif section == "model" and own_model not in (None, (parent.get("model") or {}).get("name", "dmd")):
            d[section] = dict(d["model"])  # another model: the parent's model settings are not its fields
        elif section in d or section in parent:
            d[section] = {**(parent.get(section) or {}), **(d.get(section) or {})}
    return {**parent, **d}


def _extended_recipe(path: Path, name: Any) -> Path:
    """The file ``extends: name`` in recipe ``path`` means: next to ``path`` (with or without ``.yaml``),
    else a shipped recipe."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: extends must name one recipe (a file next to it or a shipped name), "
                         f"found {name!r}")
    for candidate in (path.parent / name, path.parent / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = _shipped_recipe(name)
    if shipped is not None:
        return shipped
    raise ValueError(f"{path}: extends {name!r}, which is neither a file next to it nor a shipped recipe "
                     f"({', '.join(list_recipes())})")


def recipe_model(recipe: str | Path | None) -> str:
    """The model a recipe is for: its ``model.name``; dmd if it names none or there is no recipe."""
    section = (load_recipe(str(recipe)).get("model") or {}) if recipe else {}
    return section.get("name", "dmd")


RUN_ENVIRONMENT = ("seed", "device", "num_threads", "deterministic", "eval_batch_size")
"""Train fields that describe where and how reproducibly a run executes, not the recipe's schedule: a
per-model recipe (:func:`with_recipe`) keeps the caller's values of these."""


def with_recipe(base: RunConfig, recipe: str, model: str | None = None) -> RunConfig:
    """``base`` with a recipe's model and train sections (a per-model recipe of ``compare``/``ablate``).

    The data section and the :data:`RUN_ENVIRONMENT` fields stay ``base``'s, so every model sees the same
    data, seeds and device while training on its own schedule (its learning rate, batch, early stopping).

    Raises:
        ValueError: the recipe names another model than ``model``, or has a key its model lacks.
    """
    d = load_recipe(recipe)
    values = dict(d.get("model") or {})
    name = values.pop("name", model or "dmd")
    if model is not None and name != model:
        raise ValueError(f"recipe {recipe!r} is for model {name!r}, not {model!r}")
    train = _build(TrainConfig, d.get("train") or {}, f"{recipe}: train")
    for key in RUN_ENVIRONMENT:
        setattr(train, key, getattr(base.train, key))
    return RunConfig(model=name, model_config=check_model_config(name, values, f"{recipe}: model"), train=train,
                     data=copy.deepcopy(base.data))


SECTIONS = {"train": TrainConfig, "data": DataConfig}
"""The sections of a recipe that are dataclasses of this module (``model`` depends on the model)."""


def make_config(
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    model: str | None = None,
    data: str | None = None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    max_epochs: int | None = None,
    device: str | None = None,
    field_models: Sequence[str] | None = None,
) -> RunConfig:
    """The configuration of a run: a recipe, then ``model`` / ``data`` / ``max_epochs`` / ``device``, then
    ``overrides``, every value converted to and checked against its field's type.

    Args:
        recipe: a YAML path, a shipped recipe name (``emodistill recipes``) or a recipe dict; None: the
            defaults (model dmd on the synthetic data).
        model: registered model name; a recipe written for another model loses its model section.
        data: data source (``data.source``): ``synth``, a ``.pkl`` path or a data-set directory.
        overrides: ``{key: value}`` or ``(key, value)`` pairs such as ``("train.lr", "3e-4")`` or
            ``("model.d_model", 30)``; string values are command-line text (``--train.lr 3e-4``),
            converted to the field's type.
        max_epochs: ``train.max_epochs``.
        device: ``train.device``.
        field_models: other models whose fields ``model.*`` keys may also name (besides the configured
            model's); an ablation grid that trains several models passes them.

    Raises:
        ValueError: an unknown section or field, or a value of the wrong type (one line naming it).
    """
    if isinstance(recipe, dict):
        d, origin = copy.deepcopy(recipe), "recipe"
    else:
        d, origin = (load_recipe(str(recipe)), str(recipe)) if recipe else ({}, "command line")
    if model:
        d.setdefault("model", {})
        if (d["model"] or {}).get("name") not in (None, model):
            d["model"] = {}  # a recipe for another model: its hyper-parameters don't apply
        d["model"] = {**(d["model"] or {}), "name": model}
    if data:
        d["data"] = {**(d.get("data") or {}), "source": data}
    for key, value in (("max_epochs", max_epochs), ("device", device)):
        if value is not None:
            d["train"] = {**(d.get("train") or {}), key: value}
    d = apply_overrides(d, overrides, field_models=field_models)
    section = dict(d.get("model") or {})
    name = section.pop("name", "dmd")
    d["model"] = {"name": name, **check_model_config(name, section, f"{origin}: model", field_models=field_models)}
    return RunConfig.from_dict(d, origin=origin)


def apply_overrides(
    d: dict[str, Any],
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    field_models: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A copy of recipe dict ``d`` with ``("train.lr", "3e-4")``-style overrides applied, each value converted
    to its field's type (strings as command-line text; see :func:`~emodistill.training.fields.convert`)."""
    d = {k: dict(v or {}) for k, v in d.items()}
    overrides = list(overrides.items() if isinstance(overrides, Mapping) else overrides)
    for key, value in overrides:  # the model first: its name decides the valid model.* fields
        if key == "model.name":
            d.setdefault("model", {})["name"] = convert(value, str, "--model.name", text=isinstance(value, str))
    for key, value in overrides:
        section, _, name = key.partition(".")
        if section not in ("model", "train", "data") or not name:
            raise ValueError(f"override --{key}: expected --model.NAME, --train.NAME or --data.NAME")
        if key == "model.name":
            continue
        if section == "model":
            model = d.get("model", {}).get("name", "dmd")
            known = _model_fields(model, field_models)
            owner = "model " + ", ".join(dict.fromkeys([model, *(field_models or ())]))
        else:
            known = typing.get_type_hints(SECTIONS[section])
            owner = SECTIONS[section].__name__
        if name not in known:
            raise ValueError(f"--{key}: {owner} has no field {name!r}; valid names: {', '.join(sorted(known))}")
        d.setdefault(section, {})[name] = convert(value, known[name], f"--{key}", text=isinstance(value, str))
    return d


def _model_fields(name: str, field_models: Sequence[str] | None = None) -> dict[str, Any]:
    """``{field: type}`` of model ``name`` and of every model of ``field_models``."""
    from emodistill.models.registry import model_fields

    out: dict[str, Any] = {}
    for m in dict.fromkeys([name, *(field_models or ())]):
        try:
            found = model_fields(m)
        except KeyError as e:  # an unknown model name: a user error like any other value
            raise ValueError(e.args[0]) from None
        for f in found.values():
            out.setdefault(f.name, f.type)
    return out


def check_model_config(
    name: str, values: dict[str, Any], origin: str = "model", *, field_models: Sequence[str] | None = None
) -> dict[str, Any]:
    """``values`` (keyword arguments of model ``name``) converted to its fields' types.

    Raises:
        ValueError: a key that is not a field of the model (nor of one of ``field_models``), or a value
            of the wrong type.
    """
    known = _model_fields(name, field_models)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{origin}: {unknown} not field(s) of model {name!r}; valid names: {', '.join(sorted(known))}")
    return {k: convert(v, known[k], f"{origin}.{k}") for k, v in values.items()}


def config_help(model: str = "dmd") -> str:
    """Every field of ``model``'s config, of :class:`TrainConfig` and of :class:`DataConfig`: type, default
    and docstring (``emodistill train --help-config``)."""
    from emodistill.models.registry import model_config_class, model_fields

    try:
        config, found = model_config_class(model), model_fields(model)
    except KeyError as e:  # an unknown model name: a one-line error, as in _model_fields
        raise ValueError(e.args[0]) from None
    docs, stored = field_docs(config), {f.name for f in fields(config)}
    builder_only = f"keyword argument of the {model} builder (not stored in its config)"
    out = [f"--model.NAME VALUE: options of model {model} ({config.__name__})"]
    for f in found.values():
        doc = docs.get(f.name) if f.name in stored else builder_only
        out.append(describe_field(f.name, f.type, f.default, doc))
    for section, cls in SECTIONS.items():
        out += ["", f"--{section}.NAME VALUE: {cls.__name__}"]
        hints, doc = typing.get_type_hints(cls), field_docs(cls)
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out.append(describe_field(f.name, hints[f.name], default, doc.get(f.name)))
    return "\n".join(out) + "\n"
