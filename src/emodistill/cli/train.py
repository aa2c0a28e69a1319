"""``emodistill train``: train a registered model; writes a run directory (see
:mod:`emodistill.training.run_dir`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emodistill.cli import common

DESCRIPTION = (
    "Train a registered model. " + common.OVERRIDES_HELP + " Distributed data-parallel: "
    "`torchrun --nproc_per_node N -m emodistill train ...` (NCCL on GPUs, one per process; gloo on CPU; "
    "multi-node with torchrun's --nnodes/--rdzv_endpoint): train.batch_size stays the global batch, and only "
    "rank 0 writes the run directory."
)
PARENTS = [common.model_option(), *common.training_options("runs/<model>-<data>-<time>")]
OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", help="one run per seed; several seeds add mean ± std")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last epoch")
    p.add_argument("--help-config", action="store_true",
                   help="list every field of the model's config (--model, else the model of --config, else dmd), "
                   "of train and of data, with type, default and description, and exit")


def run(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from emodistill.training.config import config_help, make_config, recipe_model

    if args.help_config:
        print(config_help(args.model or recipe_model(args.config)), end="")
        return 0

    from emodistill.metrics.scores import metrics_table
    from emodistill.training.distributed import init_from_env, on_main, shutdown
    from emodistill.training.fit import fit, fit_seeds
    from emodistill.training.run_dir import create_run_dir, discard_on_failure, read_run_dir

    if args.resume and (overrides or args.config or args.model or args.data):
        raise ValueError("--resume takes the run's own configuration; drop the other options")
    cfg = None if args.resume else make_config(args.config, model=args.model, data=args.data, overrides=overrides,
                                               max_epochs=args.epochs, device=args.device)
    # under torchrun every process runs this; rank 0 alone names, checks and creates the directory
    ctx = init_from_env(args.device or (cfg.train.device if cfg else "auto"))
    if args.resume:
        root = Path(args.resume)
        cfg, seeds = on_main(lambda: read_run_dir(root), ctx)
    else:
        seeds = args.seeds
        root = on_main(lambda: create_run_dir(cfg, args.run_dir, seeds=seeds), ctx)

    # a run that fails before its first epoch (e.g. bad data) leaves no directory behind
    with discard_on_failure(root, enabled=ctx.is_main and not args.resume):
        data = cfg.data.load()
        if seeds and len(seeds) > 1:
            fit_seeds(cfg, data, root, seeds, resume=bool(args.resume), quiet=args.quiet)
        else:
            if seeds:
                cfg.train.seed = seeds[0]
            results = fit(cfg, data, root, resume=bool(args.resume), quiet=args.quiet)
    if ctx.is_main and seeds and len(seeds) > 1:
        print((root / "summary.md").read_text())
    elif ctx.is_main:
        print(f"Test metrics ({cfg.model}, seed {results['seed']}, best epoch {results['best_epoch']}"
              f" of {results['epochs_run']}):")
        print(metrics_table(results["test"]))
    if ctx.is_main:
        print(f"run directory: {root}")
    shutdown()
    return 0
