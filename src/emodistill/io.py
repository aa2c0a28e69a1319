"""Writing files so that a failed step never leaves half a file behind, and the run-file helpers.

Every file the package writes (checkpoints, run files, tables, figures, extracted data sets) goes through
:func:`atomic_write`: the content is written to a temporary file in the same folder and renamed onto the
target, so a crash or an exception leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml


def atomic_write(path: str | Path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` then rename onto ``path``: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def plain(obj: Any) -> Any:
    """Tuples to lists, recursively, so that YAML/JSON writers accept config dicts."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)  # str subclasses such as torch's TorchVersion
    return obj


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``; a syntax error becomes a one-line ``ValueError`` naming the file, line
    and column (PyYAML's own text spans several lines)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: expected valid YAML, found a syntax error{where} ({problem})") from e


def dump_yaml(d: dict[str, Any]) -> str:
    return yaml.safe_dump(plain(d), sort_keys=False, default_flow_style=None)
