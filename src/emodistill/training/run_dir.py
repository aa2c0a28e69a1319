"""The run directory of ``emodistill train``: a new, empty folder with ``run.yaml``, or an existing one to resume.

``run.yaml`` records the configuration and seeds a run was started with, so that ``--resume RUN_DIR``
needs no other option. Beside it :func:`~emodistill.training.fit.fit` writes one run (``config.yaml``,
``best.ckpt``, ``results.json``, ...) or :func:`~emodistill.training.fit.fit_seeds` one ``seed-S/`` run
per seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from emodistill.io import dump_yaml, write_text
from emodistill.training.config import RunConfig

RUN_FILE = "run.yaml"
"""The file of a run directory that records how the run was started (:func:`create_run_dir`)."""


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
    saved = yaml.safe_load(run_file.read_text()) or {}
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{run_file}: expected a mapping with a 'config' section, found {type(saved).__name__}")
    return RunConfig.from_dict(saved["config"], origin=str(run_file)), saved.get("seeds")

