"""``emodistill tune``: Optuna hyper-parameter search on the validation split, then a final test over seeds
(:mod:`emodistill.experiments.tune`)."""

from __future__ import annotations

import argparse

from emodistill.cli import common

DESCRIPTION = (
    "Search the recipe's 'search' section (--config) with Optuna (TPE, median pruning on each epoch's "
    "validation loss); trials never read the test split. Then the best configuration is trained over the final "
    "seeds and tested once per seed. With --model and no --config, the model's shipped recipe for the data is "
    "used. Start the same command on several machines with one --storage postgresql://USER:PW@HOST/DB to share "
    "the study. Overrides as in `train` (--train.NAME VALUE, --model.NAME VALUE) change the base config."
)
PARENTS = [common.model_option("without --config, tune uses the model's shipped recipe for the data; "
                                "one of --model and --config is required"),
           *common.training_options("runs/tune-<study>")]
OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, required=True, help="finished trials of the study, across all workers")
    p.add_argument("--storage", help="SQLAlchemy URL (default sqlite:///RUN_DIR/study.db); postgresql://... "
                   "(needs emodistill[postgres]) to share a study between machines")
    p.add_argument("--study", help="study name (default <model>-<data file stem>)")
    p.add_argument("--final-seeds", type=int, nargs="+", default=[1111, 1112, 1113, 1114, 1115],
                   help="seeds of the final stage (default 1111-1115; 0: none)")
    p.add_argument("--no-final", action="store_true", help="skip the final stage (a later run can do it)")
    p.add_argument("--pruner-warmup", type=int, default=2, help="epochs before a trial may be pruned (default 2)")
    p.add_argument("--startup-trials", type=int, default=5,
                   help="random trials before TPE, and finished trials before pruning (default 5)")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial; one "
                   "silent for 3 heartbeats is failed and re-queued (default 60)")


def run(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from emodistill.experiments.search_space import parse_search_space
    from emodistill.experiments.tune import TuneOptions, default_recipe, require_optuna, run_tune
    from emodistill.training.config import load_recipe, make_config

    require_optuna()
    if not args.config and not args.model:
        raise ValueError("give --model NAME (its shipped recipe) or --config RECIPE")
    common_args = dict(model=args.model, data=args.data, max_epochs=args.epochs, device=args.device)
    cfg = make_config(args.config, overrides=overrides, **common_args)
    data = cfg.data.load()
    recipe = args.config
    if not recipe:  # the model's shipped recipe for this data: its model/train/search sections
        recipe = default_recipe(args.model, data.spec)
        print(f"recipe: {recipe}")
        cfg = make_config(recipe, overrides=[("data.dataset", cfg.data.dataset), *overrides], **common_args)
    space = parse_search_space(load_recipe(recipe).get("search"), str(recipe))
    opts = TuneOptions(trials=args.trials, study=args.study, storage=args.storage,
                       final_seeds=[] if args.no_final else args.final_seeds, quiet=args.quiet,
                       pruner_warmup=args.pruner_warmup, startup_trials=args.startup_trials, heartbeat=args.heartbeat)
    out = run_tune(cfg, space, data, args.run_dir, opts, origin=str(recipe))
    root = out["run_dir"]
    print((root / "tune.md").read_text())
    final = ", final/" if (root / "final" / "summary.json").is_file() else ""
    print(f"tune directory: {root} (tune.md, trials.csv, best.yaml, history.png, importance.png{final}); "
          f"this worker ran {out['ran']} trial(s)")
    return 0
