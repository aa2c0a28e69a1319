"""Whole training runs in worker processes of one machine (``ablate --jobs``, ``compare --jobs``).

Each worker is a fresh interpreter (spawn) that loads its data from the run's configuration and runs
:func:`~emodistill.training.fit.fit` with ``resume=True``, so a run trained here is the same as the
sequential one and the caller's :func:`~emodistill.training.fit.fit_seeds` then reuses it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from emodistill.io import log
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit


def fit_in_parallel(tasks: list[tuple[RunConfig, Path]], jobs: int) -> None:
    """Train every ``(config, run_dir)`` of ``tasks`` in ``jobs`` worker processes (``ablate/compare --jobs``).

    Each worker loads the data from ``config.data`` itself (a data set is not sent between processes) and
    runs :func:`fit` with ``resume=True``, so finished runs are skipped and interrupted ones continue; each
    run is the same as a sequential one (its own seed, its own run directory). A worker uses
    ``train.num_threads`` threads, 1 when unset, so that ``jobs`` workers share the cores instead of each
    taking all of them.

    Raises:
        The first error of any run, once every queued run has been tried (a failing run does not stop the
        others).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if jobs < 1:
        raise ValueError(f"--jobs: expected a number >= 1, found {jobs}")
    # spawn: a fresh interpreter per worker (fork would copy this process's torch thread pools)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_fit_task, cfg, Path(run_dir)) for cfg, run_dir in tasks]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err


def fit_grid_in_parallel(configs: dict[str, RunConfig], root: Path, seeds: list[int], jobs: int) -> None:
    """Train ``root/<name>/seed-<s>`` for every ``configs`` entry and seed with :func:`fit_in_parallel`,
    seed by seed (every entry's first seed before any second one), so that a grid stopped part-way holds
    whole seeds, which pair across entries."""
    tasks = []
    for seed in seeds:
        for name, cfg in configs.items():
            cfg = copy.deepcopy(cfg)
            cfg.train.seed = seed
            tasks.append((cfg, root / name / f"seed-{seed}"))
    log(f"=== {len(tasks)} runs in {jobs} processes")
    fit_in_parallel(tasks, jobs)


def _fit_task(cfg: RunConfig, run_dir: Path) -> None:
    cfg = copy.deepcopy(cfg)
    cfg.train.num_threads = cfg.train.num_threads or 1
    results = fit(cfg, cfg.data.load(), run_dir, resume=True, quiet=True)
    test = results.get("test") or {}
    log(f"finished {run_dir} (seed {cfg.train.seed}): " + "  ".join(
        f"{k} {test[k]:.4f}" for k in ("MAE", "Mult_acc_7", "Acc_2") if k in test))
