"""Command line: ``emodistill <verb>``. A thin map from each verb to its module in this package, which
declares the verb's arguments (``add_arguments``) and calls the library (``run``); options shared by several
verbs are declared once, in :mod:`emodistill.cli.common`.

Nothing here imports torch until a verb runs, so ``emodistill --help`` stays fast.

Errors: :func:`main` is the one boundary between the library and the user. An exception that the user's input
caused ends as ONE line ``emodistill VERB: error: MESSAGE`` on stderr (at most
:data:`~emodistill.errors.MAX_MESSAGE` characters; longer or multi-line text is cut) and exit status 2. The rule
is by type (:func:`is_user_error`):

* user errors: :class:`~emodistill.errors.UserError` and its subclasses; ``ValueError`` (the library's way
  to refuse a value: bad option, recipe, data or checkpoint, incl. ``DataValidationError``, ``DataHashError``);
  ``OSError`` (missing, unreadable or existing files); ``pickle.UnpicklingError`` (incl. ``UnsafePickleError``:
  a refused pickle); ``yaml.YAMLError``; ``ImportError`` (a missing optional extra); and the extraction
  errors ``ExtractError``, ``ExtractionFailed``, ``WeightHashError``.
* everything else (``AssertionError``, ``TypeError``, ``IndexError``, a bare ``KeyError`` or
  ``RuntimeError``, ...) is a bug of ours, or torch's, and keeps its traceback.

``emodistill --verbose VERB ...`` (or ``VERB --verbose``, or ``EMODISTILL_DEBUG=1``) prints the traceback
of a user error too, and the full message.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from emodistill.cli import (
    ablate,
    common,
    compare,
    data,
    evaluate,
    export,
    extract,
    import_official,
    models,
    predict,
    report,
    serve,
    train,
    tune,
)
from emodistill.errors import debug_requested, one_line

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
  emodistill export runs/X/best.ckpt -o model.onnx     ONNX graph for ONNX Runtime (needs [onnx])
  emodistill serve --checkpoint runs/X/best.ckpt       HTTP API + web page on 127.0.0.1:8000 (needs [serve])
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
    "export": (export, "export a checkpoint to ONNX (verified against PyTorch; metadata inside)"),
    "serve": (serve, "HTTP service and web page of one checkpoint (needs [serve])"),
    "import-official": (import_official, "convert an official DMD state_dict into an emodistill checkpoint"),
}
"""Verb -> (module with ``add_arguments`` and ``run``, one-line help)."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is reported as one line and exit status 2 (the rule of this module's docstring)."""
    import pickle

    import yaml

    from emodistill.errors import UserError

    if isinstance(err, (UserError, ValueError, OSError, pickle.UnpicklingError, yaml.YAMLError, ImportError)):
        return True
    if not isinstance(err, RuntimeError):
        return False
    from emodistill.extract.dataset import ExtractionFailed
    from emodistill.extract.errors import ExtractError
    from emodistill.extract.weights import WeightHashError

    return isinstance(err, (ExtractError, ExtractionFailed, WeightHashError))


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False) or getattr(args, "verbose", False)
                or debug_requested())


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (the usage text is behind ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``VERB [SUBVERB] ... --verbose`` where the (leaf) parser did not declare its own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for leaf in (subs[0].choices.values() if subs else [parser]):
        if "--verbose" not in leaf._option_string_actions:
            leaf.add_argument("--verbose", action="store_true", help=common.VERBOSE_HELP)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="emodistill", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    # dest "debug": a verb's own --verbose (predict, extract: third-party logs too) keeps dest "verbose"
    p.add_argument("--verbose", dest="debug", action="store_true", help=common.VERBOSE_HELP)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, help) in VERBS.items():
        verb = sub.add_parser(name, help=help, description=getattr(module, "DESCRIPTION", None),
                              parents=getattr(module, "PARENTS", []),
                              formatter_class=getattr(module, "FORMATTER", argparse.HelpFormatter))
        module.add_arguments(verb)
        _add_verbose(verb)
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
    except KeyboardInterrupt:
        print("interrupted; resume with `emodistill train --resume RUN_DIR`", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_user_error(e):
            raise
        if _debug(args):
            traceback.print_exc()
            print(f"emodistill {args.cmd}: error: {e}", file=sys.stderr)
        else:
            print(f"emodistill {args.cmd}: error: {one_line(e)}", file=sys.stderr)
        return 2
