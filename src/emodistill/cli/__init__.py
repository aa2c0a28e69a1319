"""Command line: ``emodistill <verb>``. A thin map from each verb to its module in this package, which
declares the verb's arguments (``add_arguments``) and calls the library (``run``); options shared by several
verbs are declared once, in :mod:`emodistill.cli.common`.

Nothing here imports torch until a verb runs, so ``emodistill --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from emodistill.cli import (
    ablate,
    common,
    compare,
    data,
    evaluate,
    extract,
    import_official,
    models,
    predict,
    report,
    train,
    tune,
)

DESCRIPTION = """\
emodistill: multimodal emotion recognition with decoupled multimodal distillation (DMD, DHMD).

  emodistill train --model dmd --data synth             train DMD on the embedded synthetic data set
  emodistill train --config dmd_mosi_aligned --data MOSI/Processed/aligned_50.pkl
  emodistill train --help-config --model mult           every option of a model, of training and of data
  emodistill evaluate runs/X/best.ckpt --data FILE.pkl  evaluate a checkpoint on a split (--perturb: robustness)
  emodistill data check FILE.pkl                       validate an MMSA pickle and describe it
  emodistill data synth -o synth.pkl                   write the synthetic data set as an MMSA pickle
  emodistill ablate --config dmd_synth_demo --seeds 1111 1112 1113   DMD/DHMD ablation table
  emodistill compare --models dmd,mult,self_mm --data synth --seeds 5   baselines over seeds, one table
  emodistill tune --model mult --data FILE.pkl --trials 50 [--storage postgresql://...]   Optuna search
  emodistill report runs/X                             HTML interpretability report of a run (-o DIR)
  emodistill models | recipes                          list registered models / shipped recipes
  emodistill import-official dmd.pth --dataset mosi --setting aligned -o model.ckpt
  emodistill extract videos/ --labels labels.csv -o mydata.pkl   raw videos -> MMSA pickle (needs [video])
  emodistill predict clip.mp4 --checkpoint runs/X/best.ckpt      sentiment of a new video, as JSON
"""

VERBS = {
    "train": (train, "train a model; writes a run directory"),
    "ablate": (ablate, "run the DMD/DHMD ablation grid over seeds; writes ablation.md/.csv"),
    "compare": (compare, "train several models over seeds; one table of test metrics"),
    "tune": (tune, "Optuna hyper-parameter search on the validation split; final test over seeds"),
    "evaluate": (evaluate, "evaluate a checkpoint on one split"),
    "data": (data, "check or generate data"),
    "models": (models, "list registered models"),
    "recipes": (models, "list shipped YAML recipes"),
    "report": (report, "write an HTML interpretability report of a run directory"),
    "extract": (extract, "extract features from raw videos into an MMSA pickle"),
    "predict": (predict, "predict the sentiment of new videos from one checkpoint"),
    "import-official": (import_official, "convert an official DMD state_dict into an emodistill checkpoint"),
}
"""Verb -> (module with ``add_arguments`` and ``run``, one-line help)."""

USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError, ImportError, OSError)
"""Reported as one line ``emodistill VERB: error: ...`` on stderr, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emodistill", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, help) in VERBS.items():
        verb = sub.add_parser(name, help=help, description=getattr(module, "DESCRIPTION", None),
                              parents=getattr(module, "PARENTS", []),
                              formatter_class=getattr(module, "FORMATTER", argparse.HelpFormatter))
        module.add_arguments(verb)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; set before CUDA init
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    module = VERBS[args.cmd][0]
    takes_overrides = getattr(module, "OVERRIDES", False)
    if extra and not takes_overrides:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    if args.cmd != "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error(f"`{args.cmd}` runs in one process; under torchrun only `train` is distributed")
    try:
        if takes_overrides:
            return module.run(args, common.parse_overrides(extra))
        return module.run(args)
    except USER_ERRORS as e:
        print(f"emodistill {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with `emodistill train --resume RUN_DIR`", file=sys.stderr)
        return 130
