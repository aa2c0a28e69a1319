"""The run directory of ``emodistill train``: a new, empty folder with ``run.yaml``, or an existing one to resume.

``run.yaml`` records the configuration and seeds a run was started with, so that ``--resume RUN_DIR``
needs no other option. Beside it :func:`~emodistill.training.fit.fit` writes one run (``config.yaml``,
``best.ckpt``, ``results.json``, ...) or :func:`~emodistill.training.fit.fit_seeds` one ``seed-S/`` run
per seed.

A run that failed before its first epoch (bad data, a model that does not fit the data, ...) leaves nothing
worth keeping: :func:`discard_on_failure` removes its directory, so the corrected command works without
``--resume`` or a new ``--run-dir`` (the directory of a killed process is continued by ``--resume``, which
starts a run without ``last.ckpt`` afresh).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emodistill.io import dump_yaml, read_yaml, write_text
from emodistill.training.config import RunConfig

RUN_FILE = "run.yaml"
"""The file of a run directory that records how the run was started (:func:`create_run_dir`)."""
PRE_EPOCH_FILES = frozenset({RUN_FILE, "config.yaml", "metrics.jsonl"})
"""What a run writes before its first epoch ends; a directory holding nothing else has no result to lose."""


def is_unstarted(root: str | Path) -> bool:
    """Whether ``root`` is a run directory (or per-seed root) with no finished epoch: it holds only
    :data:`PRE_EPOCH_FILES` and ``seed-S`` folders that are themselves unstarted."""
    root = Path(root)
    if not root.is_dir():
        return False
    return all(p.name in PRE_EPOCH_FILES and p.is_file()
               or p.name.startswith("seed-") and is_unstarted(p) for p in root.iterdir())


@contextmanager
def discard_on_failure(root: str | Path, enabled: bool = True) -> Iterator[Path]:
    """Run the body; if it raises an ``Exception`` while ``root`` is still unstarted (:func:`is_unstarted`),
    remove ``root`` before re-raising. A ``KeyboardInterrupt`` keeps it (``--resume`` starts it afresh)."""
    root = Path(root)
    try:
        yield root
    except Exception:
        if enabled and is_unstarted(root):
            shutil.rmtree(root, ignore_errors=True)
        raise


def default_run_dir(name: str, source: str, parent: str | Path = "runs") -> Path:
    """``runs/<name>-<data file stem>-<YYYYmmdd-HHMMSS>``, e.g. ``runs/dmd-aligned_50-20250101-120000``."""
    return Path(parent) / f"{name}-{Path(source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(cfg: RunConfig, run_dir: str | Path | None = None, *, seeds: list[int] | None = None) -> Path:
    """Create the run directory of ``cfg`` (default :func:`default_run_dir`) and write its ``run.yaml``.

    Raises:
        FileExistsError: the directory exists and is not empty.
    """
    root = Path(run_dir) if run_dir else default_run_dir(cfg.model, cfg.data.source)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: run directory is not empty (use --resume {root} to continue it)")
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / RUN_FILE, dump_yaml({"config": cfg.to_dict(), "seeds": seeds}))
    return root


def read_run_dir(run_dir: str | Path) -> tuple[RunConfig, list[int] | None]:
    """The configuration and seeds a run directory was created with (its ``run.yaml``).

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``run.yaml``.
    """
    root = Path(run_dir)
    run_file = root / RUN_FILE
    if not run_file.is_file():
        raise FileNotFoundError(f"--resume: {run_file} not found; is {root} an emodistill run directory?")
    saved = read_yaml(run_file) or {}
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{run_file}: expected a mapping with a 'config' section, found {type(saved).__name__}")
    return RunConfig.from_dict(saved["config"], origin=str(run_file)), saved.get("seeds")

