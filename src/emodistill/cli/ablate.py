"""``emodistill ablate``: the DMD/DHMD ablation grid over seeds (:mod:`emodistill.experiments.ablate`)."""

from __future__ import annotations

import argparse

from emodistill.cli import common

DESCRIPTION = (
    "Train every ablation variant (see --list) with the same recipe, data and seeds; write a table of test "
    "metrics (mean ± sample std, 95% t-interval), paired differences against --reference (95% paired "
    "t-interval, seeds better) and, for DHMD variants, dictionary usage and concept recovery, as Markdown, CSV "
    "and JSON. Selection is on the validation split. The recipe's model/train/data sections are shared by all "
    "variants (default: the official DMD settings; `--config dmd_synth_demo` is the quick CPU schedule), except "
    "the reference row `mult`, which trains at MMSA's MulT settings (recipe mult_mosi) on the same data and "
    "seeds. Re-running with the same --run-dir continues an interrupted grid. Overrides as in `train` "
    "(--train.NAME VALUE; --model.NAME VALUE applies to every variant whose model has that field)."
)
PARENTS = [*common.training_options("runs/ablation-<data>-<time>"), common.jobs_option()]
OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113, 1114, 1115],
                   help="seeds per variant (default 1111-1115)")
    p.add_argument("--variants", nargs="+", help="subset of variants, in this order (default: all)")
    p.add_argument("--reference", default="dmd",
                   help="variant the others are paired against, seed by seed (default dmd; skipped if not run)")
    p.add_argument("--list", action="store_true", help="list the variants and exit")


def run(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from emodistill.experiments.ablate import ABLATIONS, check_variants, run_ablation
    from emodistill.experiments.grid import open_grid
    from emodistill.training.config import make_config

    if args.list:
        width = max(len(n) for n in ABLATIONS)
        for name, v in ABLATIONS.items():
            print(f"{name:<{width}}  {v.model:<5} {v.description}" + (f" [recipe {v.recipe}]" if v.recipe else ""))
        return 0
    variants = check_variants(args.variants)
    if args.reference not in ABLATIONS:
        raise ValueError(f"--reference: expected one of the variants {list(ABLATIONS)}, found {args.reference!r}")
    cfg = make_config(args.config, data=args.data, overrides=overrides, max_epochs=args.epochs, device=args.device,
                      field_models=sorted({ABLATIONS[v].model for v in variants}))
    data = cfg.data.load()  # before the directory exists: bad data leaves no directory behind
    root, continuing = open_grid("ablation", cfg, args.seeds, args.run_dir, variants=variants)
    if continuing:
        print(f"continuing the ablation in {root}")
    run_ablation(cfg, data, root, args.seeds, variants, quiet=args.quiet, reference=args.reference, jobs=args.jobs)
    print((root / "ablation.md").read_text())
    print(f"ablation directory: {root} (ablation.md, ablation.csv, one run directory per variant and seed)")
    return 0
