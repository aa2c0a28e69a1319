"""A training run on disk: resolved config, per-epoch metrics, checkpoints, test predictions, results.

Layout of a run directory (one per seed; ``--seeds`` puts them under ``seed-XXXX/`` and adds
``summary.{json,csv,md}`` beside them)::

    config.yaml             resolved configuration (model, train, data, seed, versions)
    metrics.jsonl           one JSON line per epoch: train loss terms, validation metrics, lr, time
    best.ckpt               the checkpoint selected on validation loss (self-describing)
    last.ckpt               the latest epoch, with optimiser/scheduler/RNG state for --resume
    test_predictions.csv    id, label, prediction on the test split (selected checkpoint)
    results.json            validation and test metrics of the selected checkpoint; for a model with
                            dictionaries (DHMD) also their atom usage on the test split (and, on
                            synth-concepts, the recovery of the planted concepts)

Every file is written atomically, so an interrupted run leaves no half-written file, and
``resume=True`` continues from ``last.ckpt`` to the same result as an uninterrupted run (CPU, same seed).
"""

from __future__ import annotations

import csv
import io
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodistill import __version__
from emodistill.checkpoint import build_checkpoint, read_checkpoint, save_checkpoint
from emodistill.data import MMSAData
from emodistill.data.loader import BatchLoader
from emodistill.io import dump_yaml, log, write_json, write_text
from emodistill.metrics.dictionary import dictionary_summary
from emodistill.metrics.scores import compute_metrics
from emodistill.metrics.stats import summarize, summary_csv, summary_markdown
from emodistill.models import create_model
from emodistill.training.config import RUN_ENVIRONMENT, RunConfig
from emodistill.training.distributed import (
    DistContext,
    gather_objects,
    init_from_env,
    on_main,
    process_device,
    wrap_model,
)
from emodistill.training.loop import (
    EarlyStopping,
    EpochCallback,
    Predictions,
    gather_predictions,
    make_optimizer,
    make_scheduler,
    predict,
    resolve_device,
    timed,
    train_one_epoch,
)
from emodistill.training.run_dir import is_unstarted


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False


def data_provenance(data: MMSAData, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "path": str(data.path) if data.path else None,
        "sha256": data.sha256,
        "hash_status": data.hash_status,
        "sizes": {k: len(v) for k, v in data.splits.items()},
    }


def environment() -> dict[str, str]:
    return {
        "emodistill": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _metrics_row(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def predictions_csv(pred: Predictions, ids: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "prediction"])
    for i, y, p in zip(pred.index, pred.label, pred.prediction, strict=True):
        w.writerow([ids[int(i)], f"{y:.6g}", f"{p:.6g}"])
    return buf.getvalue()


def fit(
    cfg: RunConfig,
    data: MMSAData,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    on_epoch_end: EpochCallback | None = None,
    evaluate_test: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.model`` on ``data``, select on validation loss, test once; write ``run_dir``.

    Args:
        cfg: resolved run configuration.
        data: loaded data set (train/valid/test splits).
        run_dir: output directory (created; must be empty unless ``resume``).
        resume: continue from ``run_dir/last.ckpt``.
        quiet: no progress bars; one log line per epoch.
        on_epoch_end: called as ``fn(epoch, record)`` after each epoch's files are written; an exception
            it raises (e.g. a pruned search trial) ends the run there and propagates.
        evaluate_test: evaluate the selected checkpoint on the test split. ``False`` (search trials) leaves
            the test split untouched: ``results["test"]`` is None and no ``test_predictions.csv`` is written.

    Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1), every process calls ``fit`` with the same
    arguments; the process group is joined here if the caller has not (see :mod:`.distributed` for the
    batch semantics). Only rank 0 reads and writes ``run_dir``; every process returns the results.

    Returns:
        The content of ``results.json``.
    """
    run_dir = Path(run_dir)
    tcfg = cfg.train
    ctx = init_from_env(tcfg.device)
    resolved = cfg.to_dict()
    resolved["seed"] = tcfg.seed
    resolved["spec"] = data.spec.to_dict()
    state_ckpt, finished = on_main(lambda: _open_run_dir(run_dir, resume, resolved), ctx)
    if finished is not None:
        return finished
    resume = state_ckpt is not None

    device = process_device(ctx, resolve_device(tcfg.device))
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    seed_everything(tcfg.seed, tcfg.deterministic)
    model = create_model(cfg.model, data.spec, **cfg.model_config).to(device)
    model_config = model.config_dict()
    resolved["model"] = {"name": cfg.model, **model_config}
    resolved["environment"] = environment()
    resolved["data_provenance"] = data_provenance(data, cfg.data.source)
    if ctx.enabled:
        resolved["distributed"] = {"world_size": ctx.world_size, "backend": torch.distributed.get_backend()}
        torch.manual_seed(tcfg.seed + _RANK_SEED_STRIDE * ctx.rank)  # own dropout stream per process

    shard = {"rank": ctx.rank, "world_size": ctx.world_size}
    train_loader = BatchLoader(data.splits["train"], tcfg.batch_size, shuffle=True, seed=tcfg.seed, device=device,
                               **shard)
    probe = next(iter(train_loader)) if ctx.enabled else None
    trained = wrap_model(model, ctx, device, probe)  # DDP wrapper, or the model itself
    valid_loader = BatchLoader(data.splits["valid"], tcfg.eval_batch_size, shuffle=False, device=device, **shard)
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg)
    stopper = EarlyStopping(tcfg.early_stop)
    history: list[dict[str, Any]] = []
    start_epoch = 1

    if resume:
        st = state_ckpt["training_state"]
        model.load_state_dict(state_ckpt["state_dict"])
        optimizer.load_state_dict(st["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(st["scheduler"])
        stopper = EarlyStopping(tcfg.early_stop, st["best"], st["best_epoch"])
        history = list(st["history"])
        start_epoch = st["epoch"] + 1
        _restore_rng(st, ctx, device)
        if ctx.is_main:
            log(f"resuming {run_dir} after epoch {st['epoch']} (best epoch {st['best_epoch']})")
    elif ctx.is_main:
        write_text(run_dir / "config.yaml", dump_yaml(resolved))
    if ctx.is_main:
        write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))

    family = data.spec.metric_family
    ckpt_meta = dict(
        train_config=resolved["train"], data=resolved["data_provenance"], extract_config=data.extract_config
    )
    epoch = start_epoch - 1
    stopped = "early_stop"
    t_start = time.perf_counter()
    while not (history and stopper.should_stop(epoch)):
        if tcfg.max_epochs is not None and epoch >= tcfg.max_epochs:
            stopped = "max_epochs"
            break
        epoch += 1
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_stats, t_train = timed(
            train_one_epoch, trained, train_loader, optimizer, tcfg, progress=not quiet and ctx.is_main,
            desc=f"epoch {epoch}", ctx=ctx,
        )
        val_pred, t_eval = timed(lambda: gather_predictions(predict(model, valid_loader, edges=True), ctx))
        val_loss = val_pred.loss
        edges = val_pred.edges  # {"homo": [6], "hetero": [6]} for DMD-like models
        dictionary = _epoch_dictionary(val_pred.activations, data.splits["valid"].concepts)
        val_metrics = compute_metrics(val_pred.prediction, val_pred.label, family)
        if scheduler is not None:
            scheduler.step(val_loss)
        improved = stopper.update(val_loss, epoch)
        record = {
            "epoch": epoch,
            "lr": lr,
            **_metrics_row("train", train_stats),
            "valid/loss": val_loss,
            **_metrics_row("valid", val_metrics),
            "best_epoch": stopper.best_epoch,
            **({"edges": edges} if edges else {}),
            **({"dictionary": dictionary} if dictionary else {}),
            "time_train_s": round(t_train, 3),
            "time_eval_s": round(t_eval, 3),
        }
        history.append(record)
        rng = _rng_states(ctx, device)  # a collective: every process takes part
        if ctx.is_main:  # the run directory is rank 0's
            if improved:
                best_ckpt = build_checkpoint(model, cfg.model, data.spec, model_config, **ckpt_meta)
                save_checkpoint(run_dir / "best.ckpt", best_ckpt)
            training_state = {
                "epoch": epoch,
                "best": stopper.best,
                "best_epoch": stopper.best_epoch,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                **rng,
            }
            last = build_checkpoint(model, cfg.model, data.spec, model_config, training_state=training_state,
                                    **ckpt_meta)
            save_checkpoint(run_dir / "last.ckpt", last)
            write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            mark = "*" if improved else " "
            if val_pred.is_binary:
                shown = f"valid BCE {val_loss:.4f}  Acc-2 {val_metrics.get('Acc_2', float('nan')):.4f}"
            else:
                shown = f"valid MAE {val_loss:.4f}  Acc-7 {val_metrics.get('Mult_acc_7', float('nan')):.4f}"
            msg = (
                f"epoch {epoch:3d}{mark} lr {lr:.2e}  train loss {train_stats['loss']:.4f}  {shown}  "
                f"({t_train:.1f}s + {t_eval:.1f}s)"
            )
            log(msg)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    best_record = next(r for r in history if r["epoch"] == stopper.best_epoch)
    results = {
        "model": cfg.model,
        "seed": tcfg.seed,
        "best_epoch": stopper.best_epoch,
        "epochs_run": epoch,
        "stopped_by": stopped,
        "valid": {k.split("/", 1)[1]: v for k, v in best_record.items() if k.startswith("valid/")},
        "test": None,
        "train_time_s": round(time.perf_counter() - t_start, 1),
        "run_dir": str(run_dir),
    }
    if evaluate_test:  # once, on the checkpoint selected on the validation split
        model.load_state_dict(on_main(lambda: read_checkpoint(run_dir / "best.ckpt")["state_dict"], ctx))
        test_loader = BatchLoader(data.splits["test"], tcfg.eval_batch_size, shuffle=False, device=device, **shard)
        test_pred = gather_predictions(predict(model, test_loader, edges=True), ctx)
        results["test"] = {"loss": test_pred.loss, **compute_metrics(test_pred.prediction, test_pred.label, family)}
        if test_pred.activations:  # DHMD: atom usage (and planted-concept recovery) on the test split
            results["dictionary"] = dictionary_summary(test_pred.activations, data.splits["test"].concepts)
        if ctx.is_main:
            write_text(run_dir / "test_predictions.csv", predictions_csv(test_pred, data.splits["test"].ids))
    if ctx.is_main:
        write_json(run_dir / "results.json", results)
    return results


def _epoch_dictionary(activations: dict, concepts: np.ndarray | None) -> dict:
    """The per-epoch dictionary record of ``metrics.jsonl``: ``{space: {m: {perplexity, atoms_used[, nmi]},
    agreement}}`` on the validation split (the full set of measures goes to ``results.json``)."""
    keep = ("perplexity", "atoms_used", "nmi")
    out = {}
    for space, entry in dictionary_summary(activations, concepts).items():
        out[space] = {m: ({k: v[k] for k in keep if k in v} if isinstance(v, dict) else v) for m, v in entry.items()}
    return out


_RANK_SEED_STRIDE = 1_000_003  # seeds of the processes' dropout streams: seed + stride * rank


def _open_run_dir(run_dir: Path, resume: bool, resolved: dict) -> tuple[dict | None, dict | None]:
    """Check ``run_dir`` and create it (rank 0). Returns ``(last checkpoint to resume from or None,
    results of an already finished run or None)``."""
    last_path = run_dir / "last.ckpt"
    if resume and last_path.is_file():  # without last.ckpt the run stopped before its first epoch: start afresh
        state_ckpt = read_checkpoint(last_path)
        _check_same_config(state_ckpt, resolved, last_path)
        if (run_dir / "results.json").is_file():  # written last: the run had finished
            log(f"{run_dir}: run already finished; results.json is up to date")
            finished = json.loads((run_dir / "results.json").read_text())
            # where the run is now: a directory moved or copied since (a merged compare) still continues
            finished["run_dir"] = str(run_dir)
            return None, finished
        return state_ckpt, None
    # create_run_dir may have written run.yaml into the new directory already; a run that failed before its
    # first epoch left only files this run rewrites
    if run_dir.exists() and not is_unstarted(run_dir) and not resume:
        raise FileExistsError(f"{run_dir}: run directory is not empty (use --resume to continue it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return None, None


def _rng_states(ctx: DistContext, device: torch.device) -> dict[str, Any]:
    """RNG states for ``last.ckpt``: rank 0's as ``rng_cpu``/``rng_cuda``, every process's when distributed."""
    cuda = device.type == "cuda"
    cpu = torch.get_rng_state()
    states = {"rng_cpu": cpu, "rng_cuda": torch.cuda.get_rng_state_all() if cuda else None}
    if ctx.enabled:
        mine = (cpu, torch.cuda.get_rng_state(device) if cuda else None)
        ranks = gather_objects(mine, ctx)
        states["rng_ranks"] = {"cpu": [r[0] for r in ranks], "cuda": [r[1] for r in ranks]}
    return states


def _restore_rng(st: dict, ctx: DistContext, device: torch.device) -> None:
    """Put back the RNG states of the interrupted run (this process's own when distributed)."""
    ranks = st.get("rng_ranks")
    if ctx.enabled and ranks is not None and len(ranks["cpu"]) == ctx.world_size:
        torch.set_rng_state(ranks["cpu"][ctx.rank])
        if device.type == "cuda" and ranks["cuda"][ctx.rank] is not None:
            torch.cuda.set_rng_state(ranks["cuda"][ctx.rank], device)
        return
    if ctx.enabled or ranks is not None:
        saved = len(ranks["cpu"]) if ranks is not None else 1
        if ctx.is_main:
            log(f"warning: resuming a run of {saved} process(es) with {ctx.world_size}: dropout streams and "
                "batch shares differ from the interrupted run, so the result will not be bit-identical")
        torch.manual_seed(int(st["epoch"]) * _RANK_SEED_STRIDE + ctx.rank)
        return
    torch.set_rng_state(st["rng_cpu"])
    if device.type == "cuda" and st.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all(st["rng_cuda"])


RESUME_MAY_CHANGE = frozenset({"max_epochs", *RUN_ENVIRONMENT} - {"seed", "deterministic"})
"""Train settings a run may continue with other values of: a longer schedule, or another place to run
(:data:`~emodistill.training.config.RUN_ENVIRONMENT` but the seed and determinism; an ``--jobs`` worker
trains with 1 thread, and its parent, which reuses the run, may have none set)."""


def _check_same_config(ckpt: dict, resolved: dict, path: Path) -> None:
    """Refuse to resume with settings that differ from the interrupted run (except
    :data:`RESUME_MAY_CHANGE`)."""
    saved_train = ckpt.get("train_config") or {}
    diffs = [k for k in saved_train if saved_train.get(k) != resolved["train"].get(k) and k not in RESUME_MAY_CHANGE]
    if ckpt["spec"] != resolved["spec"]:
        diffs.append("data spec")
    if ckpt["model_name"] != resolved["model"]["name"]:
        diffs.append("model")
    else:  # the model settings given now (the rest are defaults) against the checkpoint's resolved ones
        saved_model = json.loads(json.dumps(ckpt.get("model_config") or {}))  # tuples -> lists, as in YAML
        given = json.loads(json.dumps({k: v for k, v in resolved["model"].items() if k != "name"}))
        diffs += [f"model.{k}" for k in given if k in saved_model and given[k] != saved_model[k]]
    if diffs:
        raise ValueError(f"--resume: {path} was trained with different settings: {', '.join(diffs)}")


def fit_seeds(
    cfg: RunConfig,
    data: MMSAData,
    run_root: str | Path,
    seeds: list[int],
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run ``fit`` once per seed under ``run_root/seed-S`` and write mean ± sample std over seeds."""
    run_root = Path(run_root)
    ctx = init_from_env(cfg.train.device)
    per_seed = []
    for seed in seeds:
        cfg.train.seed = seed
        seed_dir = run_root / f"seed-{seed}"
        if ctx.is_main:
            log(f"--- seed {seed} -> {seed_dir}")
        res = fit(cfg, data, seed_dir, resume=resume, quiet=quiet)
        per_seed.append(res)
    summary = summarize([r["test"] for r in per_seed])
    out = {"model": cfg.model, "seeds": seeds, "test": summary, "runs": [r["run_dir"] for r in per_seed]}
    if not ctx.is_main:
        return out
    write_json(run_root / "summary.json", out)
    write_text(run_root / "summary.csv", summary_csv(summary))
    write_text(run_root / "summary.md", summary_markdown(summary, seeds))
    return out
