"""The output directory of an experiment made of many runs (ablation grid, model comparison, search).

Its plan (configuration, seeds, the variants or models, ...) is written to ``<kind>.yaml`` when the
directory is created. Running the same plan again in the same directory continues it (every run inside
is a normal run directory, resumed or found finished); a directory that holds another plan, or other
files and no plan, is refused, so that two experiments never mix their runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from emodistill.io import dump_yaml, write_text
from emodistill.training.config import RunConfig
from emodistill.training.run_dir import default_run_dir


def open_plan_dir(
    root: str | Path,
    kind: str,
    plan: dict[str, Any],
    *,
    keys: Sequence[str] | None = None,
    marker: str | None = None,
) -> bool:
    """Create ``root`` with ``<kind>.yaml`` holding ``plan``, or check that it holds the same plan.

    Args:
        root: the experiment's directory.
        kind: names the plan file, ``<kind>.yaml`` (``ablation``, ``compare``, ``tune``).
        plan: what the experiment runs; written as YAML (the file is rewritten with it).
        keys: the plan entries that must match a saved plan (default: all); others may change between
            invocations (e.g. a search's budget).
        marker: a file that marks a directory without plan as this experiment's (a search's storage).

    Returns:
        True when the directory already held this plan (the experiment continues).

    Raises:
        ValueError: the directory holds another plan.
        FileExistsError: the directory is not empty and holds no plan.
    """
    root = Path(root)
    plan_file = root / f"{kind}.yaml"
    continuing = plan_file.is_file()
    if continuing:
        saved = yaml.safe_load(plan_file.read_text()) or {}
        now = yaml.safe_load(dump_yaml(plan))
        names = keys if keys is not None else list(dict.fromkeys([*now, *saved]))
        diff = [k for k in names if saved.get(k) != now.get(k)]
        if diff:
            raise ValueError(f"{plan_file}: this directory holds another {kind} (different "
                             f"{', '.join(diff)}); use a new --run-dir")
    elif root.exists() and any(root.iterdir()) and not (marker and (root / marker).exists()):
        raise FileExistsError(f"{root}: directory is not empty and holds no {kind}.yaml")
    root.mkdir(parents=True, exist_ok=True)
    write_text(plan_file, dump_yaml(plan))
    return continuing


def open_grid(
    kind: str, base: RunConfig, seeds: list[int], run_dir: str | Path | None = None, **items: Any
) -> tuple[Path, bool]:
    """The directory of a grid of runs over ``seeds`` (default ``runs/<kind>-<data>-<time>``), its plan
    being ``base``'s configuration, the seeds and ``items`` (e.g. ``variants=[...]``).

    Returns:
        ``(directory, continuing)``; see :func:`open_plan_dir`.
    """
    root = plan_root(kind, base, run_dir)
    return root, open_plan_dir(root, kind, {"config": base.to_dict(), "seeds": list(seeds), **items})


def plan_root(kind: str, base: RunConfig, run_dir: str | Path | None) -> Path:
    """``run_dir``, or the default ``runs/<kind>-<data>-<time>`` of an experiment of ``kind`` on ``base``'s data."""
    return Path(run_dir) if run_dir else default_run_dir(kind, base.data.source)
