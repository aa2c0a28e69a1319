"""Typed configuration fields: values converted to a dataclass field's type, and the fields' docstrings.

Every hyper-parameter is a field of a config dataclass (:class:`~emodistill.training.config.TrainConfig`,
:class:`~emodistill.training.config.DataConfig`, a model's config such as
:class:`~emodistill.models.dmd.config.DMDConfig`) with a type annotation and a docstring under it (the
litgpt convention). :func:`convert` turns a command-line string (``--train.lr 3e-4``) or a recipe value
into that type, with a one-line error naming where the value came from, the type expected and the value
found; :func:`field_docs` reads the docstrings back from the source for ``emodistill train --help-config``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from typing import Any

import yaml

from emodistill.io import plain

NULL_WORDS = ("null", "none", "~", "")
"""Command-line spellings of None for an optional field (case-insensitive)."""
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


class _Mismatch(Exception):
    """The value does not fit the type (turned into a ValueError with the context by :func:`convert`)."""


def type_name(tp: Any) -> str:
    """``int``, ``float | None``, ``tuple[str, ...]``: the annotation as it is written in the source."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, where: str, *, text: bool = False) -> Any:
    """``value`` as a value of type ``tp``.

    Args:
        value: the value; with ``text`` a command-line string, else a value read from YAML or given in
            Python (a string there is still parsed where ``tp`` is a number or a bool, e.g. YAML's
            ``1e-4``, which YAML reads as a string).
        tp: the field's resolved annotation (``typing.get_type_hints``).
        where: what to name in an error, e.g. ``--train.lr`` or ``recipe.yaml: train.lr``.
        text: parse ``value`` as command-line text: ``null``/``none`` is None for an optional field,
            ``true``/``false``/``yes``/``no``/``1``/``0`` a bool, lists and mappings are YAML
            (``'[rec, ort]'``, ``'{fold: 3}'``); a ``str`` field takes the text as it is.

    Raises:
        ValueError: ``"{where}: expected {type}, found {value!r}"``.
    """
    try:
        return _convert(value, tp, text)
    except _Mismatch:
        raise ValueError(f"{where}: expected {type_name(tp)}, found {value!r}") from None


def _is_null(value: Any, text: bool) -> bool:
    return value is None or (text and isinstance(value, str) and value.strip().lower() in NULL_WORDS)


def _convert(value: Any, tp: Any, text: bool) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return _yaml(value) if text and isinstance(value, str) else value
    if tp is type(None):
        if _is_null(value, text):
            return None
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and _is_null(value, text):
            return None
        for member in args:
            if member is not type(None):
                try:
                    return _convert(value, member, text)
                except _Mismatch:
                    continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        raise _Mismatch
    if tp in (int, float):
        # an int is a valid float, never the reverse; bool is an int to Python but not to a user
        if isinstance(value, int if tp is int else (int, float)) and not isinstance(value, bool):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    container = origin or tp
    if container in (tuple, list, dict):
        if isinstance(value, str):
            if not text:
                raise _Mismatch
            value = _yaml(value)
        if container is dict:
            if not isinstance(value, dict):
                raise _Mismatch
            key_tp, value_tp = args or (Any, Any)
            return {_convert(k, key_tp, False): _convert(v, value_tp, False) for k, v in value.items()}
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if container is list:
            return [_convert(v, args[0] if args else Any, False) for v in value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], False) for v in value)
        if args:  # fixed length, e.g. tuple[float, float]
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_convert(v, a, False) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Mismatch


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise _Mismatch from None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each annotated field of ``cls`` and of its base classes, by name
    (read from the source with :mod:`ast`; a field without one is absent)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # built in memory: no source to read
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def format_value(value: Any) -> str:
    """A default as it would be typed on the command line or in a recipe (YAML flow style)."""
    out = yaml.safe_dump(plain(value), default_flow_style=True, width=10_000).strip()
    return out.removesuffix("\n...").strip()


def describe_field(name: str, tp: Any, default: Any, doc: str | None, *, width: int = 100) -> str:
    """``name: type = default`` (no default: ``dataclasses.MISSING``) and the docstring below it, wrapped."""
    head = f"  {name}: {type_name(tp)}" + ("" if default is dataclasses.MISSING else f" = {format_value(default)}")
    if not doc:
        return head
    body = textwrap.fill(" ".join(doc.split()), width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return f"{head}\n{body}"
