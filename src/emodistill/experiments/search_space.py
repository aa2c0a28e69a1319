"""Hyper-parameter search spaces, declared in a recipe's ``search:`` section (used by ``emodistill tune``).

Keys are dotted paths into the run configuration; each value says how to sample it::

    search:
      train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}     # float (low/high floats; optional step)
      model.d_model: {low: 30, high: 60, step: 10}          # int (low/high ints; optional step or log)
      model.attn_dropout: {low: 0.0, high: 0.5}             # float
      train.batch_size: {choices: [16, 32]}                 # categorical (numbers, strings, booleans, null)
      train.param_groups.audio.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # one group's Adam setting

Sections are ``model`` (fields of the model's config) and ``train`` (fields of :class:`TrainConfig`); the
data are never searched. The space is kept free of optuna here (plain :class:`Param` records), so a recipe
can be validated without the ``tune`` extra; :func:`suggest` turns it into ``trial.suggest_*`` calls.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

from emodistill.training.config import TrainConfig

_PARAM_GROUP_KEYS = ("lr", "weight_decay")


@dataclass(frozen=True)
class Param:
    """One searched value: a float or int range, or a list of choices."""

    kind: str
    """"float", "int" or "categorical"."""
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """Short human-readable form for tables, e.g. ``float [1e-05, 0.001] log``."""
        if self.kind == "categorical":
            return f"one of {list(self.choices)}"
        extra = " log" if self.log else (f" step {self.step}" if self.step is not None else "")
        return f"{self.kind} [{self.low}, {self.high}]{extra}"

    def to_dict(self) -> dict[str, Any]:
        """The recipe form of this parameter (what :func:`parse_param` reads back)."""
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_param(spec: Any, where: str) -> Param:
    """Validate one ``{low, high, [step], [log]}`` or ``{choices: [...]}`` mapping.

    Args:
        spec: the YAML value of the key.
        where: ``"<recipe>: search.<key>"``, the prefix of every error message.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping {{low, high[, step][, log]}} or {{choices: [...]}}, "
                         f"got {spec!r}")
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise ValueError(f"{where}: 'choices' cannot be combined with {extra}")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ValueError(f"{where}: choices must be numbers, strings, booleans or null, got {bad!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise ValueError(f"{where}: 'choices' {choices!r} has duplicates")
        return Param("categorical", choices=tuple(choices))
    unknown = sorted(set(spec) - {"low", "high", "step", "log"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected low, high, step, log or choices")
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{where}: a range needs both 'low' and 'high' (or give 'choices')")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"{where}: low and high must be numbers, got low={low!r}, high={high!r}")
    if not isinstance(log, bool):
        raise ValueError(f"{where}: 'log' must be true or false, got {log!r}")
    if low >= high:
        raise ValueError(f"{where}: low={low} must be < high={high}")
    if step is not None and not (_is_number(step) and step > 0):
        raise ValueError(f"{where}: 'step' must be a positive number, got {step!r}")
    if log and step is not None:
        raise ValueError(f"{where}: 'log' and 'step' cannot be combined")
    if log and low <= 0:
        raise ValueError(f"{where}: log scale needs low > 0, got low={low}")
    # both bounds written as integers (and an integer step, if any): an int range; otherwise a float range
    kind = "int" if _is_int(low) and _is_int(high) and (step is None or _is_int(step)) else "float"
    return Param(kind, low, high, step, log)


def parse_search_space(
    raw: Any, origin: str, model_fields: set[str] | None = None
) -> dict[str, Param]:
    """Validate a recipe's ``search:`` section.

    Args:
        raw: the section as read from YAML (None or {} gives an empty space).
        origin: the recipe file, named in every error.
        model_fields: the model config's field names; None skips the check of ``model.*`` names (it needs
            the model built, see :func:`check_model_keys`).

    Returns:
        ``{dotted key: Param}`` in the recipe's order.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: 'search' must be a mapping of dotted keys (train.lr: {{low, high}}), "
                         f"got {type(raw).__name__}")
    train_fields = {f.name for f in fields(TrainConfig)}
    space: dict[str, Param] = {}
    for key, spec in raw.items():
        where = f"{origin}: search.{key}"
        parts = str(key).split(".")
        section, name = parts[0], parts[1] if len(parts) > 1 else ""
        if section not in ("model", "train") or not name:
            raise ValueError(f"{where}: unknown section {section!r}; keys look like train.NAME or model.NAME")
        if section == "train":
            if name not in train_fields:
                raise ValueError(f"{where}: {name!r} is not a TrainConfig field; expected one of "
                                 f"{sorted(train_fields)}")
            if name == "param_groups":
                if len(parts) != 4 or parts[3] not in _PARAM_GROUP_KEYS:
                    raise ValueError(f"{where}: expected train.param_groups.GROUP.lr or "
                                     "train.param_groups.GROUP.weight_decay")
            elif len(parts) != 2:
                raise ValueError(f"{where}: train.{name} is not a mapping; expected train.{name}")
        else:
            if len(parts) != 2:
                raise ValueError(f"{where}: expected model.NAME (one level)")
            if model_fields is not None and name not in model_fields:
                raise ValueError(f"{where}: {name!r} is not a field of the model's config; expected one of "
                                 f"{sorted(model_fields)}")
        space[str(key)] = parse_param(spec, where)
    return space


def check_model_keys(space: dict[str, Param], model_fields: set[str], origin: str) -> None:
    """Refuse ``model.*`` keys not in ``model_fields``, the field names of the model's registered config
    dataclass (``registry.model_config_class``)."""
    for key in space:
        section, _, name = key.partition(".")
        if section == "model" and name not in model_fields:
            raise ValueError(f"{origin}: search.{key}: {name!r} is not a field of the model's config; expected "
                             f"one of {sorted(model_fields)}")


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Sample every parameter with ``trial.suggest_*`` (optuna names them by their dotted keys)."""
    values: dict[str, Any] = {}
    for key, p in space.items():
        if p.kind == "categorical":
            values[key] = trial.suggest_categorical(key, list(p.choices))
        elif p.kind == "int":
            values[key] = trial.suggest_int(key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            values[key] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def apply_params(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` (the ``RunConfig.to_dict()`` form) with each dotted key set to its value.

    ``train.param_groups.GROUP.KEY`` creates the group's mapping if the base config has none.
    """
    out = copy.deepcopy(config)
    for key, value in params.items():
        parts = key.split(".")
        node = out.setdefault(parts[0], {})
        for part in parts[1:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out
