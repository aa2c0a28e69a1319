"""``emodistill compare``: several models over the same seeds, one table (:mod:`emodistill.experiments.compare`)."""

from __future__ import annotations

import argparse

from emodistill.cli import common

DESCRIPTION = (
    "Train each model with the same data, schedule and seeds; write compare.md/.csv (mean ± sample std, 95% "
    "t-interval per metric) and, in compare.md, every model's paired difference to --reference seed by seed; "
    "compare.json with every seed's metrics, and compare_seeds.png. Selection is on "
    "the validation split. The recipe (--config) is shared: its train/data sections apply to all models, its "
    "model section to the model it names; --recipes gives a model its own model and train sections. "
    "Re-running with the same --run-dir continues, also with other --models: a model's finished runs are "
    "reused while its --recipes entry is the same. Overrides as in `train` (--model.NAME VALUE applies to the "
    "recipe's model, default dmd)."
)
PARENTS = [*common.training_options("runs/compare-<data>-<time>"), common.jobs_option()]
OVERRIDES = True


def _names(text: str) -> list[str]:
    """argparse type: ``dmd,mult`` -> ``["dmd", "mult"]``."""
    return [m.strip() for m in text.split(",") if m.strip()]


def _recipes(text: str) -> dict[str, str]:
    """argparse type: ``mult=mult_mosi,misa=misa_mosi`` -> ``{"mult": "mult_mosi", "misa": "misa_mosi"}``."""
    pairs = [pair.split("=", 1) for pair in _names(text)]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected MODEL=RECIPE pairs such as mult=mult_mosi, got {text!r}")
    return dict(pairs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, type=_names,
                   help="comma-separated registered models, e.g. dmd,mult,self_mm")
    p.add_argument("--recipes", type=_recipes, default={},
                   help="per-model recipes for their model and train sections (data, seeds, device and threads stay "
                        "shared), e.g. mult=mult_mosi,misa=misa_mosi")
    p.add_argument("--seeds", type=int, nargs="+", default=[5],
                   help="one number N: seeds 1111..1110+N (default 5); several numbers: those seeds")
    p.add_argument("--reference", metavar="MODEL", help="the model every other is paired against, seed by "
                   "seed (mean difference, 95%% paired t-interval, seeds where it is better); default: the first "
                   "of --models")
    p.add_argument("--perturb", action="store_true", help="also robustness curves of every run (as `evaluate "
                   "--perturb`) and robustness.md / robustness_areas.png comparing the models")


def run(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from emodistill.experiments.compare import (
        check_reference,
        model_config,
        open_compare_dir,
        run_compare,
        seeds_from_arg,
    )
    from emodistill.models import list_models
    from emodistill.training.config import make_config

    cfg = make_config(args.config, data=args.data, overrides=overrides, max_epochs=args.epochs, device=args.device)
    seeds = seeds_from_arg(args.seeds)
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {sorted(list_models())}")
    check_reference(args.models, args.reference)
    # everything the user gave is checked before the directory exists: a mistake leaves no directory behind
    for model in args.models:
        model_config(cfg, model, args.recipes)
    data = cfg.data.load()
    root, continuing = open_compare_dir(cfg, seeds, args.models, args.recipes, args.run_dir)
    if continuing:
        print(f"continuing the compare in {root}")
    run_compare(cfg, data, root, args.models, seeds, recipes=args.recipes, quiet=args.quiet,
                perturb=args.perturb, reference=args.reference, jobs=args.jobs)
    print((root / "compare.md").read_text())
    if args.perturb:
        print((root / "robustness.md").read_text())
    print(f"comparison directory: {root} (compare.md/.csv/.json, compare_seeds.png, one run directory per model "
          "and seed)")
    return 0
