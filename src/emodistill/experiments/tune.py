"""Hyper-parameter search with Optuna (``emodistill tune``): validation-only objective, shared studies,
exactly N finished trials, a final multi-seed test of the best configuration.

One *worker* is one ``emodistill tune`` process. Workers started with the same ``--storage`` URL and
``--study`` name (SQLite on one machine, PostgreSQL across machines) share one study:

* a trial = the base configuration + values sampled from the recipe's ``search:`` section
  (:mod:`emodistill.experiments.search_space`; TPE sampler), trained by :func:`emodistill.training.fit.fit` with
  ``evaluate_test=False``: the objective is the best validation loss and the test split is never read.
  Every trial uses the base seed, so trials differ only by their parameters. The validation loss of each
  epoch is reported to Optuna, and a trial worse than the median of earlier trials at the same epoch is
  pruned (after ``pruner_warmup`` epochs and ``startup_trials`` finished trials);
* budget: ``trials`` is the study's total of finished (COMPLETE + PRUNED) trials, whatever the number of
  workers. A worker asks for a trial only while finished + running + waiting < N; two workers that ask at
  the same moment can overshoot, so a trial whose rank among the study's non-failed trials is >= N is told
  FAIL (user attribute ``over_budget``) without being run;
* a killed worker: each running trial records a heartbeat; a live worker fails a trial whose heartbeat is
  older than the grace period (3 heartbeats) and Optuna's retry callback queues a copy with the same
  parameters (WAITING), which the next free worker runs. Workers therefore stay until no trial of the study
  is running or waiting;
* the final stage runs exactly once per study: the first worker to create the study ``<study>/final`` in
  the same storage (an atomic insert) trains the best configuration over the final seeds and evaluates
  each once on the test split (:func:`emodistill.training.fit.fit_seeds`); the others print the best trial.

How a study is stored and shared (storage URLs, heartbeats, orphaned trials) is in
:mod:`emodistill.experiments.study`.

Outputs of a worker in its run directory (see :mod:`emodistill.experiments.tune_report`): ``tune.yaml`` (the
plan), ``trials/<number>/`` (one run directory per trial), ``trials.csv``, ``best.yaml`` (loadable with
``emodistill train --config``), ``tune.md``, ``history.png``, ``importance.png`` and ``final/``.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from emodistill.data.types import MMSAData
from emodistill.experiments import tune_report
from emodistill.experiments.grid import open_plan_dir
from emodistill.experiments.search_space import Param, apply_params, check_model_keys, suggest
from emodistill.experiments.study import fail_orphans, heartbeat, masked_url, open_study, require_optuna, storage_url
from emodistill.experiments.tune_report import trial_counts
from emodistill.io import log
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit, fit_seeds

DEFAULT_FINAL_SEEDS = [1111, 1112, 1113, 1114, 1115]
STUDY_DB = "study.db"
"""The SQLite file of a study stored in its run directory (the default storage)."""


@dataclass
class TuneOptions:
    """How a worker searches; see ``emodistill tune --help``."""

    trials: int
    """Finished (COMPLETE + PRUNED) trials the study should reach, shared by all workers."""
    study: str | None = None
    """Name of the study in its storage; None: :func:`default_study` of the base configuration."""
    storage: str | None = None
    """SQLAlchemy URL of the study's storage (``sqlite:///...``, ``postgresql://user:pw@host/db``); None:
    :func:`default_storage` of the run directory."""
    final_seeds: list[int] = field(default_factory=lambda: list(DEFAULT_FINAL_SEEDS))
    """Seeds of the final stage; empty or ``[0]`` (``--final-seeds 0``): no final stage."""
    quiet: bool = False
    pruner_warmup: int = 2
    """Epochs reported before a trial may be pruned."""
    startup_trials: int = 5
    """Finished trials before TPE stops sampling at random and before the median pruner prunes."""
    heartbeat: int = 60
    """Seconds between a running trial's heartbeats; a trial silent for 3 heartbeats is failed and retried."""
    poll: float | None = None
    """Seconds between checks while waiting for other workers' trials (default: the heartbeat, at most 5)."""

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"--trials={self.trials} must be >= 1")
        if self.heartbeat < 1:
            raise ValueError(f"--heartbeat={self.heartbeat} must be >= 1 second")
        if self.pruner_warmup < 0 or self.startup_trials < 0:
            raise ValueError("--pruner-warmup and --startup-trials must be >= 0")
        if list(self.final_seeds) == [0]:
            self.final_seeds = []
        if self.storage is not None:
            self.storage = storage_url(self.storage)


def default_study(cfg: RunConfig) -> str:
    """``<model>-<data file stem>``, e.g. ``mult-aligned_50``: the study of ``cfg`` when none is named."""
    return f"{cfg.model}-{Path(cfg.data.source).stem}"


def default_tune_dir(study: str, parent: str | Path = "runs") -> Path:
    """``runs/tune-<study>`` (a ``/`` in the study name becomes ``-``)."""
    return Path(parent) / f"tune-{study.replace('/', '-')}"


def default_storage(run_dir: str | Path) -> str:
    """``sqlite:////abs/RUN_DIR/study.db``: a study of one machine, stored in its run directory."""
    return f"sqlite:///{(Path(run_dir) / STUDY_DB).resolve()}"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _identity(run_dir: Path) -> dict[str, Any]:
    """Who runs a trial or the final stage, and where its output goes (user attributes in the study)."""
    return {"worker": worker_name(), "hostname": socket.gethostname(), "pid": os.getpid(), "run_dir": str(run_dir)}


def _rank(study, number: int) -> int:
    """Position of trial ``number`` among the study's non-failed trials, by number."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL and t.number < number)


def run_trial(trial, base: dict[str, Any], space: dict[str, Param], data: MMSAData, run_dir: Path,
              quiet: bool) -> float:
    """Train one trial; the value is the best validation loss. Raises ``optuna.TrialPruned`` when the
    median pruner stops it."""
    optuna = require_optuna()
    params = suggest(trial, space)
    cfg = RunConfig.from_dict(apply_params(base, params), origin=f"trial {trial.number}")
    trial_dir = run_dir / "trials" / str(trial.number)
    for key, value in _identity(trial_dir).items():
        trial.set_user_attr(key, value)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    log(f"--- trial {trial.number}: {shown} -> {trial_dir}")

    def on_epoch_end(epoch: int, record: dict[str, Any]) -> None:
        trial.report(record["valid/loss"], epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"trial {trial.number} pruned at epoch {epoch}")

    results = fit(cfg, data, trial_dir, quiet=quiet, on_epoch_end=on_epoch_end, evaluate_test=False)
    trial.set_user_attr("best_epoch", results["best_epoch"])
    trial.set_user_attr("epochs_run", results["epochs_run"])
    trial.set_user_attr("valid", {k: float(v) for k, v in results["valid"].items()})
    return float(results["valid"]["loss"])


def search(study, base: dict[str, Any], space: dict[str, Param], data: MMSAData, run_dir: Path,
           opts: TuneOptions) -> int:
    """This worker's share of the search; returns once the study has ``opts.trials`` finished trials and
    none running or waiting. Returns the number of trials this worker ran."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    poll = opts.poll if opts.poll is not None else min(float(opts.heartbeat), 5.0)
    ran, waiting_since, bare_since = 0, None, {}
    while True:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial -> FAIL + a WAITING copy
        fail_orphans(study, 3 * opts.heartbeat, bare_since)
        c = trial_counts(study)
        finished, running, waiting = c.get("COMPLETE", 0) + c.get("PRUNED", 0), c.get("RUNNING", 0), c.get(
            "WAITING", 0)
        if not waiting and finished + running >= opts.trials:
            if not running:
                return ran
            if waiting_since is None:
                waiting_since = time.monotonic()
                log(f"tune: {finished}/{opts.trials} trials finished; waiting for {running} running trial(s) of "
                    f"other workers (a dead worker's trial is re-queued after {3 * opts.heartbeat} s)")
            time.sleep(poll)
            continue
        waiting_since = None
        with warnings.catch_warnings():  # the heartbeat is recorded here, not by Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = study.ask()
        with heartbeat(study._storage, trial._trial_id, opts.heartbeat):
            try:
                trial.set_user_attr("worker", worker_name())  # from here on the heartbeat speaks for the trial
            except optuna.exceptions.UpdateFinishedTrialError:  # taken for an orphan: it has no params yet
                continue
            if _rank(study, trial.number) >= opts.trials:  # another worker asked at the same moment
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            try:
                value = run_trial(trial, base, space, data, run_dir, opts.quiet)
                study.tell(trial, value)
            except optuna.TrialPruned as e:
                study.tell(trial, state=TrialState.PRUNED)
                log(f"tune: {e}")
            except optuna.exceptions.UpdateFinishedTrialError:
                # another worker saw no heartbeat for the grace period (a stalled machine), failed this trial
                # and queued a copy; the copy counts, this run does not
                log(f"tune: trial {trial.number} was failed by another worker (missed heartbeats); it is re-queued")
            except BaseException:  # a broken configuration or Ctrl-C: fail the trial and stop this worker
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
        ran += 1


def default_recipe(model: str, spec) -> str:
    """The shipped recipe of ``model`` for the data's family and alignment (``dmd_mosei_unaligned``,
    ``mult_mosi``); MOSI's for other data (synthetic, custom)."""
    from emodistill.training.config import list_recipes

    shipped = set(list_recipes())
    setting = "aligned" if spec.aligned else "unaligned"
    for family in dict.fromkeys((spec.name, "mosi")):
        for name in (f"{model}_{family}_{setting}", f"{model}_{family}", f"{model}_{family}_aligned"):
            if name in shipped:
                return name
    raise ValueError(f"no shipped recipe for model {model!r} (e.g. {model}_mosi); give one with --config RECIPE "
                     "that has a 'search' section")


def final_study_name(study_name: str, attempt: int = 1) -> str:
    """``<study>/final``, then ``<study>/final#2``... for the claims that follow a claimant's death."""
    return f"{study_name}/final" + ("" if attempt == 1 else f"#{attempt}")


def _died_here(record: dict[str, Any]) -> bool:
    """True if the final stage's claimant ran on this machine and its process is gone. (A claimant on
    another machine cannot be checked from here; its claim stands.)"""
    if record.get("done") or record.get("hostname") != socket.gethostname() or "pid" not in record:
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def claim_final(opts: TuneOptions, run_dir: Path) -> bool:
    """Create ``<study>/final`` in the study's storage: True for the one worker whose insert succeeded.
    If that claim's worker died on this machine before finishing, the next name is claimed the same way."""
    optuna = require_optuna()
    for attempt in range(1, 100):
        name = final_study_name(opts.study, attempt)
        try:
            final = optuna.create_study(study_name=name, storage=opts.storage, load_if_exists=False)
        except optuna.exceptions.DuplicatedStudyError:
            if _died_here(optuna.load_study(study_name=name, storage=opts.storage).user_attrs):
                log(f"tune: the final stage's claimant ({name}) died on this machine; taking over")
                continue
            return False
        for key, value in {**_identity(run_dir / "final"), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}.items():
            final.set_user_attr(key, value)
        return True
    return False


def final_status(opts: TuneOptions) -> tuple[str, dict[str, Any]] | None:
    """The latest claim of the final stage: its study name and record (worker, run_dir, done, test summary,
    seeds, best_trial), or None if nobody claimed it."""
    optuna = require_optuna()
    names = set(optuna.study.get_all_study_names(opts.storage))
    claims = [name for name in (final_study_name(opts.study, i) for i in range(1, 100)) if name in names]
    if not claims:
        return None
    return claims[-1], dict(optuna.load_study(study_name=claims[-1], storage=opts.storage).user_attrs)


def best_config(study, base: dict[str, Any]) -> RunConfig:
    """The base configuration with the best trial's parameters (same base seed as every trial)."""
    return RunConfig.from_dict(apply_params(base, study.best_trial.params), origin=f"best trial of {study.study_name}")


def run_tune(base_cfg: RunConfig, space: dict[str, Param], data: MMSAData, run_dir: str | Path | None,
             opts: TuneOptions, origin: str = "recipe") -> dict[str, Any]:
    """One worker of a search (see the module docstring). Safe to run on several machines at once.

    Args:
        base_cfg: the configuration every trial starts from (recipe + command-line overrides).
        space: the parsed ``search:`` section.
        data: the loaded data set (only its train and valid splits are used by trials).
        run_dir: this worker's output directory; None: :func:`default_tune_dir` of the study.
        opts: budget, storage, study, final seeds, pruning and heartbeat settings (a study or storage left
            None takes its default, :func:`default_study` and :func:`default_storage`).
        origin: the recipe's name, for error messages.

    Returns:
        ``{"best": {number, value, params}, "counts": {...}, "ran": n, "final": record or None,
        "run_dir": the output directory}``.
    """
    from emodistill.models.registry import model_config_class

    if not space:
        raise ValueError(f"{origin}: no 'search' section; add one (see `emodistill tune --help`)")
    opts = replace(opts, study=opts.study or default_study(base_cfg))
    run_dir = Path(run_dir) if run_dir else default_tune_dir(opts.study)
    opts = replace(opts, storage=opts.storage or default_storage(run_dir))
    base = base_cfg.to_dict()
    # model.* keys and the base values are checked against the model's config class before any trial is run
    config = model_config_class(base_cfg.model)
    known = {f.name for f in fields(config)}
    config(**{k: v for k, v in base_cfg.model_config.items() if k in known})
    check_model_keys(space, known, origin)
    plan = {"study": opts.study, "storage": masked_url(opts.storage), "trials": opts.trials,
            "final_seeds": opts.final_seeds, "config": base, "search": {k: p.to_dict() for k, p in space.items()}}
    # trials and final_seeds may change between invocations (e.g. to extend a study); the search may not
    open_plan_dir(run_dir, "tune", plan, keys=("config", "search", "study", "storage"), marker=STUDY_DB)
    study = open_study(opts)
    log(f"tune: study {opts.study!r} in {masked_url(opts.storage)}, worker {worker_name()}, target {opts.trials} "
        "finished trials")
    ran = search(study, base, space, data, run_dir, opts)
    counts = trial_counts(study)
    if not counts.get("COMPLETE"):
        tune_report.write_outputs(study, base, space, run_dir, None)
        raise RuntimeError(f"study {opts.study!r}: no trial completed (counts {counts}); nothing to select")
    best = {"number": study.best_trial.number, "value": study.best_value, "params": study.best_trial.params}
    log(f"tune: search done ({counts}); best trial {best['number']}: valid loss {best['value']:.4f}")
    claimed = final_status(opts)
    if opts.final_seeds and (claimed is None or not claimed[1].get("done")) and claim_final(opts, run_dir):
        log(f"tune: final stage: best configuration over seeds {opts.final_seeds} -> {run_dir / 'final'}")
        tune_report.write_outputs(study, base, space, run_dir, None)  # best.yaml before the long part
        out = fit_seeds(best_config(study, base), data, run_dir / "final", list(opts.final_seeds), resume=True,
                        quiet=opts.quiet)
        name, _ = final_status(opts)
        record = require_optuna().load_study(study_name=name, storage=opts.storage)
        for key, value in (("test", out["test"]), ("seeds", list(opts.final_seeds)), ("best_trial", best["number"]),
                           ("done", True)):  # "done" last: a reader that sees it sees the rest
            record.set_user_attr(key, value)
        claimed = final_status(opts)
    elif claimed is not None and not claimed[1].get("done"):
        log(f"tune: the final stage is being run by {claimed[1].get('worker')} ({claimed[1].get('run_dir')})")
    final = claimed[1] if claimed else None
    tune_report.write_outputs(study, base, space, run_dir, final)
    return {"best": best, "counts": trial_counts(study), "ran": ran, "final": final, "run_dir": run_dir}
