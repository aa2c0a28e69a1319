"""An Optuna study shared by several workers: its storage (SQLite, or PostgreSQL through psycopg 3), the
heartbeats of running trials, and the trials of workers that died (used by :mod:`emodistill.experiments.tune`).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emodistill.io import log

MAX_RETRY = 3
"""How many times a trial killed with its worker is re-queued with the same parameters."""


def require_optuna():
    """Import optuna, or raise an ImportError that names the extra to install."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError("emodistill tune needs optuna: pip install 'emodistill[tune]'") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the heartbeat and retry API is marked experimental; it is what makes shared studies safe, so say it once
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs -> ``postgresql+psycopg://`` (psycopg 3, the ``postgres``
    extra), whatever SQLAlchemy's default driver for the bare scheme is; other URLs unchanged."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def masked_url(url: str) -> str:
    """The storage URL with any password replaced by ``***`` (for files and logs)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_study(opts: Any, study_name: str | None = None):
    """Create or load the study (``load_if_exists``): TPE sampler, median pruner on validation loss,
    heartbeat-checked RDB storage whose stale trials are re-queued. ``opts`` is a
    :class:`~emodistill.experiments.tune.TuneOptions` (storage, heartbeat, startup_trials, pruner_warmup)."""
    optuna = require_optuna()
    from optuna.storages import RDBStorage

    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    kwargs: dict[str, Any] = dict(heartbeat_interval=opts.heartbeat, grace_period=3 * opts.heartbeat)
    if retry_cls is not None:  # optuna >= 4.9 renamed the callback and its argument
        kwargs["heartbeat_stale_trial_callback"] = retry_cls(max_retry=MAX_RETRY)
    else:
        kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
    storage = _retry(lambda: RDBStorage(opts.storage, **kwargs), "open the storage")
    return optuna.create_study(
        study_name=study_name or opts.study,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=None, n_startup_trials=opts.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=opts.startup_trials, n_warmup_steps=opts.pruner_warmup),
    )


def _retry(fn, what: str, attempts: int = 8):
    """``fn()``, retried after a short random pause when the database refuses it. Workers started together
    on a new PostgreSQL database all try to create Optuna's tables at once; all but one fail on a duplicate
    type or version row, and on the next attempt find the tables made."""
    import random

    import sqlalchemy.exc

    optuna = require_optuna()
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
            if attempt == attempts:
                raise
            log(f"tune: could not {what} (attempt {attempt}: {type(e).__name__}); retrying")
            time.sleep(random.uniform(0.2, 1.0))


@contextmanager
def heartbeat(storage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds in a thread while the block runs (what
    ``study.optimize`` does; this worker drives ``ask``/``tell`` itself)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as e:  # a lost connection must not kill training; the trial may go stale
                log(f"tune: heartbeat of trial id {trial_id} failed: {e}")
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_orphans(study, grace_s: float, seen: dict[int, float]) -> list[int]:
    """Fail RUNNING trials whose worker died between ``ask()`` and its first heartbeat.

    Optuna only ages trials that have a heartbeat, so such a trial would stay RUNNING forever and the other
    workers would wait for it. A trial gets its ``worker`` attribute right after its heartbeat thread has
    started; a RUNNING trial that this worker has seen without one for longer than ``grace_s`` (by its own
    monotonic clock, so machines' clocks need not agree) is an orphan. It has sampled no parameters yet, so
    failing it loses no work; the budget then lets another trial take its place.

    Args:
        seen: trial number -> when this worker first saw it without a ``worker`` (kept between calls).

    Returns:
        The numbers of the trials failed.
    """
    from optuna.trial import TrialState

    now = time.monotonic()
    bare = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if "worker" not in t.user_attrs}
    for number in list(seen):
        if number not in bare:
            del seen[number]
    orphans = []
    for number in sorted(bare):
        if now - seen.setdefault(number, now) > grace_s:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            log(f"tune: trial {number} was taken by a worker that died before its first heartbeat; failed it")
            orphans.append(number)
            del seen[number]
    return orphans
