"""Command line: ``emodistill <verb>``. Each verb is a thin wrapper over a public function."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DESCRIPTION = """\
emodistill: multimodal emotion recognition with decoupled multimodal distillation (DMD, DHMD).

  emodistill train --model dmd --data synth             train DMD on the embedded synthetic data set
  emodistill train --config dmd_mosi_aligned --data MOSI/Processed/aligned_50.pkl
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


def _parse_overrides(extra: list[str]) -> list[tuple[str, str]]:
    """``--train.lr 3e-4 --model.d=30`` -> [("train.lr", "3e-4"), ("model.d", "30")]."""
    out, i = [], 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or "." not in tok:
            raise SystemExit(f"emodistill train: unrecognised argument {tok!r} (overrides look like --train.lr 3e-4)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise SystemExit(f"emodistill train: override {tok} needs a value")
            value = extra[i + 1]
            i += 2
        out.append((key, value))
    return out


def _yaml_mapping(text: str) -> dict:
    """``--options '{split: fold, fold: 3}'`` -> dict (argparse type)."""
    import yaml

    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{split: fold}}', got {text!r}")
    return value


def _config_from_args(args: argparse.Namespace, overrides: list[tuple[str, str]]):
    """Recipe (``--config``), then ``--model`` / ``--data`` / ``--epochs`` / ``--device``, then overrides."""
    from emodistill.training.config import RunConfig, apply_overrides, load_recipe

    d = load_recipe(args.config) if args.config else {}
    model = getattr(args, "model", None)
    if model:
        d.setdefault("model", {})
        if d["model"].get("name") not in (None, model):
            d["model"] = {}  # a recipe for another model: its hyper-parameters don't apply
        d["model"]["name"] = model
    if args.data:
        d.setdefault("data", {})["source"] = args.data
    for key, value in (("max_epochs", args.epochs), ("device", args.device)):
        if value is not None:
            d.setdefault("train", {})[key] = value
    d = apply_overrides(d, overrides)
    return RunConfig.from_dict(d, origin=args.config or "command line")


def _load_data(cfg):
    from emodistill.data import load_dataset

    return load_dataset(
        cfg.data.source, dataset=cfg.data.dataset, strict_hash=cfg.data.strict_hash,
        replace_nonfinite=cfg.data.replace_nonfinite, options=cfg.data.options,
    )


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from emodistill.metrics.scores import metrics_table
    from emodistill.training.distributed import init_from_env, on_main
    from emodistill.training.fit import fit, fit_seeds

    overrides = _parse_overrides(extra)
    if args.resume and (overrides or args.config or args.model or args.data):
        raise SystemExit("--resume takes the run's own configuration; drop the other options")
    cfg = None if args.resume else _config_from_args(args, overrides)
    # under torchrun every process runs this; rank 0 alone names, checks and creates the directory
    ctx = init_from_env(args.device or (cfg.train.device if cfg else "auto"))
    cfg, seeds, root = on_main(lambda: _open_train_dir(args, cfg), ctx)

    data = _load_data(cfg)
    if seeds and len(seeds) > 1:
        fit_seeds(cfg, data, root, seeds, resume=bool(args.resume), quiet=args.quiet)
        if ctx.is_main:
            print((root / "summary.md").read_text())
    else:
        if seeds:
            cfg.train.seed = seeds[0]
        results = fit(cfg, data, root, resume=bool(args.resume), quiet=args.quiet)
        if ctx.is_main:
            print(f"Test metrics ({cfg.model}, seed {results['seed']}, best epoch {results['best_epoch']}"
                  f" of {results['epochs_run']}):")
            print(metrics_table(results["test"]))
    if ctx.is_main:
        print(f"run directory: {root}")
    return 0


def _open_train_dir(args: argparse.Namespace, cfg):
    """``(config, seeds, run root)``: a new, empty directory with ``run.yaml``, or ``--resume``'s."""
    import yaml

    from emodistill.io import dump_yaml, write_text
    from emodistill.training.config import RunConfig

    if args.resume:
        root = Path(args.resume)
        run_file = root / "run.yaml"
        if not run_file.is_file():
            raise FileNotFoundError(f"--resume: {run_file} not found; is {root} an emodistill run directory?")
        saved = yaml.safe_load(run_file.read_text())
        return RunConfig.from_dict(saved["config"], origin=str(run_file)), saved.get("seeds"), root
    name = f"{cfg.model}-{Path(cfg.data.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(args.run_dir) if args.run_dir else Path("runs") / name
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: run directory is not empty (use --resume {root} to continue it)")
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "run.yaml", dump_yaml({"config": cfg.to_dict(), "seeds": args.seeds}))
    return cfg, args.seeds, root


def cmd_ablate(args: argparse.Namespace, extra: list[str]) -> int:
    from emodistill.experiments.ablate import ABLATIONS, run_ablation

    if args.list:
        width = max(len(n) for n in ABLATIONS)
        for name, v in ABLATIONS.items():
            print(f"{name:<{width}}  {v.model:<5} {v.description}")
        return 0
    cfg = _config_from_args(args, _parse_overrides(extra))
    variants = args.variants or list(ABLATIONS)
    unknown = [v for v in variants if v not in ABLATIONS]
    if unknown:
        raise SystemExit(f"emodistill ablate: unknown variant(s) {unknown}; see `emodistill ablate --list`")
    root = _grid_root(args, cfg, "ablation", {"config": cfg.to_dict(), "seeds": args.seeds, "variants": variants})
    run_ablation(cfg, _load_data(cfg), root, args.seeds, variants, quiet=args.quiet)
    print((root / "ablation.md").read_text())
    print(f"ablation directory: {root} (ablation.md, ablation.csv, one run directory per variant and seed)")
    return 0


def _grid_root(args: argparse.Namespace, cfg, kind: str, plan: dict) -> Path:
    """The output directory of an ablation/comparison grid, with its plan in ``<kind>.yaml``: re-running
    with the same plan continues the grid, another plan in the same directory is refused."""
    import yaml

    from emodistill.io import dump_yaml, write_text

    name = f"{kind}-{Path(cfg.data.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(args.run_dir) if args.run_dir else Path("runs") / name
    plan_file = root / f"{kind}.yaml"
    if plan_file.is_file():
        if yaml.safe_load(plan_file.read_text()) != yaml.safe_load(dump_yaml(plan)):
            raise SystemExit(f"{plan_file}: this directory holds a {kind} with another configuration, seeds "
                             "or list; use a new --run-dir")
        print(f"continuing the {kind} in {root}")
    elif root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root}: directory is not empty and holds no {kind}.yaml")
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_text(plan_file, dump_yaml(plan))
    return root


def cmd_compare(args: argparse.Namespace, extra: list[str]) -> int:
    from emodistill.experiments.compare import run_compare, seeds_from_arg

    cfg = _config_from_args(args, _parse_overrides(extra))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    recipes = dict(pair.split("=", 1) for pair in args.recipes.split(",")) if args.recipes else {}
    seeds = seeds_from_arg(args.seeds)
    root = _grid_root(args, cfg, "compare", {"config": cfg.to_dict(), "seeds": seeds, "models": models,
                                             "recipes": recipes})
    run_compare(cfg, _load_data(cfg), root, models, seeds, recipes=recipes, quiet=args.quiet, perturb=args.perturb)
    print((root / "compare.md").read_text())
    if args.perturb:
        print((root / "robustness.md").read_text())
    print(f"comparison directory: {root} (compare.md/.csv/.json, compare_seeds.png, one run directory per model "
          "and seed)")
    return 0


def cmd_tune(args: argparse.Namespace, extra: list[str]) -> int:
    from emodistill.experiments.search_space import parse_search_space
    from emodistill.experiments.tune import TuneOptions, default_recipe, require_optuna, run_tune
    from emodistill.training.config import load_recipe

    require_optuna()
    overrides = _parse_overrides(extra)
    if not args.config and not args.model:
        raise SystemExit("emodistill tune: give --model NAME (its shipped recipe) or --config RECIPE")
    cfg = _config_from_args(args, overrides)
    data = _load_data(cfg)
    if not args.config:  # the model's shipped recipe for this data: its model/train/search sections
        args.config = default_recipe(args.model, data.spec)
        print(f"recipe: {args.config}")
        cfg = _config_from_args(args, [("data.dataset", cfg.data.dataset), *overrides])
    space = parse_search_space(load_recipe(args.config).get("search"), str(args.config))
    study = args.study or f"{cfg.model}-{Path(cfg.data.source).stem}"
    root = Path(args.run_dir or Path("runs") / f"tune-{study.replace('/', '-')}")
    seeds = [] if args.no_final or args.final_seeds == [0] else args.final_seeds
    opts = TuneOptions(trials=args.trials, study=study, final_seeds=seeds, quiet=args.quiet,
                       storage=args.storage or f"sqlite:///{(root / 'study.db').resolve()}",
                       pruner_warmup=args.pruner_warmup, startup_trials=args.startup_trials, heartbeat=args.heartbeat)
    out = run_tune(cfg, space, data, root, opts, origin=str(args.config))
    print((root / "tune.md").read_text())
    final = ", final/" if (root / "final" / "summary.json").is_file() else ""
    print(f"tune directory: {root} (tune.md, trials.csv, best.yaml, history.png, importance.png{final}); "
          f"this worker ran {out['ran']} trial(s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from emodistill.report import cmd_report as write

    return write(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emodistill.data import load_dataset, reader_options
    from emodistill.data.loader import BatchLoader
    from emodistill.evaluate import check_compatible
    from emodistill.io import write_text
    from emodistill.metrics.scores import compute_metrics, metrics_table
    from emodistill.models.registry import load_checkpoint
    from emodistill.training.fit import predictions_csv
    from emodistill.training.loop import predict, resolve_device

    device = resolve_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    # a directory data set is re-read with the checkpoint's reader options (same fold, lengths, context)
    options = args.options if args.options is not None else (
        reader_options(model.spec) if Path(args.data).is_dir() else {})
    data = load_dataset(args.data, dataset=args.dataset, strict_hash=args.strict_hash, options=options)
    check_compatible(model, data.spec, args.checkpoint, args.data)
    split = data.splits[args.split]
    pred = predict(model, BatchLoader(split, args.batch_size, shuffle=False, device=device))
    metrics = {"loss": pred.loss, **compute_metrics(pred.prediction, pred.label, data.spec.metric_family)}
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{ckpt['model_name']} on {args.data} [{args.split}, {len(split)} samples]:")
        print(metrics_table(metrics))
    if args.output:
        write_text(Path(args.output), predictions_csv(pred, split.ids))
        print(f"predictions: {args.output}")
    if args.perturb:
        from emodistill.experiments.robustness import write_robustness

        out_dir = Path(args.perturb_dir or Path(args.checkpoint).parent / f"robustness-{args.split}")
        print(write_robustness(model, split, data.spec, out_dir, seed=args.perturb_seed, device=device,
                               batch_size=args.batch_size, title=f"{ckpt['model_name']} ({args.split})"))
        print(f"robustness: {out_dir} (robustness.md/.csv/.json, curves and area plots)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from emodistill.data import load_dataset

    if args.data_cmd == "check":
        from emodistill.data.check import describe

        data = load_dataset(args.file, dataset=args.dataset, strict_hash=args.strict_hash,
                            replace_nonfinite=args.replace_nonfinite, options=args.options)
        print(describe(data))
        return 0
    from emodistill.data.synth import write_synth

    path = write_synth(args.output, seed=args.seed, aligned=not args.unaligned)
    print(f"synthetic data set ({'unaligned' if args.unaligned else 'aligned'}, seed {args.seed}): {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from emodistill.models import list_models

    for name, desc in list_models().items():
        print(f"{name:14s} {desc}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from emodistill.training.config import list_recipes, recipe_dir

    print(f"recipes in {recipe_dir()}:")
    for name in list_recipes():
        print(f"  {name}")
    return 0


def cmd_import_official(args: argparse.Namespace) -> int:
    from emodistill.models.dmd.official import import_official

    model = import_official(args.checkpoint, args.dataset, args.setting, args.output, text_encoder=args.text_encoder)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output} (dmd, {args.dataset} {args.setting}, {n:,} parameters)")
    return 0


def _extract_cmd(name: str):
    def run(args: argparse.Namespace) -> int:
        from emodistill.extract import command

        return getattr(command, name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emodistill", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a model; writes a run directory",
                       description="Train a registered model. Options not listed here override recipe "
                       "values as --train.NAME VALUE, --model.NAME VALUE or --data.NAME VALUE "
                       "(e.g. --train.lr 3e-4 --model.ort_semantics per_sample). Distributed data-parallel: "
                       "`torchrun --nproc_per_node N -m emodistill train ...` (NCCL on GPUs, one per process; "
                       "gloo on CPU; multi-node with torchrun's --nnodes/--rdzv_endpoint): train.batch_size stays "
                       "the global batch, and only rank 0 writes the run directory.")
    t.add_argument("--model", help="registered model name (see `emodistill models`); default dmd")
    t.add_argument("--data", help="'synth', 'synth-unaligned', an MMSA .pkl path or a UR-FUNNY/MUStARD "
                   "directory (reader options: --data.options '{split: fold, fold: 3}'); default synth")
    t.add_argument("--config", help="recipe: a YAML path or a shipped recipe name (see `emodistill recipes`)")
    t.add_argument("--seeds", type=int, nargs="+", help="one run per seed; several seeds add mean ± std")
    t.add_argument("--epochs", type=int, help="upper bound on epochs (train.max_epochs)")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (train.device)")
    t.add_argument("--run-dir", help="output directory (default runs/<model>-<data>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last epoch")
    t.add_argument("--quiet", action="store_true", help="no progress bars; one log line per epoch")

    a = sub.add_parser("ablate", help="run the DMD/DHMD ablation grid over seeds; writes ablation.md/.csv",
                       description="Train every ablation variant (see --list) with the same recipe, data and "
                       "seeds; write a table of test metrics (mean ± sample std, 95%% t-interval) as Markdown "
                       "and CSV. Selection is on the validation split. Re-running with the same --run-dir "
                       "continues an interrupted grid. Overrides as in `train` (--train.NAME VALUE, "
                       "--model.NAME VALUE applies to every variant).")
    a.add_argument("--data", help="'synth', 'synth-unaligned', an MMSA .pkl or a UR-FUNNY/MUStARD directory")
    a.add_argument("--config", help="recipe (YAML path or shipped name) whose model/train/data sections all "
                   "variants share (default: the official DMD settings; `--config dmd_synth_demo` is the quick "
                   "CPU schedule)")
    a.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113, 1114, 1115],
                   help="seeds per variant (default 1111-1115)")
    a.add_argument("--variants", nargs="+", help="subset of variants, in this order (default: all)")
    a.add_argument("--epochs", type=int, help="upper bound on epochs (train.max_epochs)")
    a.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (train.device)")
    a.add_argument("--run-dir", help="output directory (default runs/ablation-<data>-<time>)")
    a.add_argument("--quiet", action="store_true", help="no progress bars; one log line per epoch")
    a.add_argument("--list", action="store_true", help="list the variants and exit")

    cp = sub.add_parser("compare", help="train several models over seeds; one table of test metrics",
                        description="Train each model with the same data, schedule and seeds; write compare.md/.csv "
                        "(mean ± sample std, 95%% t-interval per metric), compare.json with every seed's metrics, "
                        "and compare_seeds.png. Selection is on the validation split. The recipe's train/data "
                        "sections apply to all models, its model section to the model it names; --recipes gives "
                        "other models theirs. Re-running with the same --run-dir continues. Overrides as in `train`.")
    cp.add_argument("--models", required=True, help="comma-separated registered models, e.g. dmd,mult,self_mm")
    cp.add_argument("--data", help="'synth', 'synth-unaligned', an MMSA .pkl or a UR-FUNNY/MUStARD directory")
    cp.add_argument("--config", help="recipe shared by all models (e.g. dmd_synth_demo)")
    cp.add_argument("--recipes", help="per-model recipes for their model section, e.g. mult=mult_mosi,misa=misa_mosi")
    cp.add_argument("--seeds", type=int, nargs="+", default=[5],
                    help="one number N: seeds 1111..1110+N (default 5); several numbers: those seeds")
    cp.add_argument("--epochs", type=int, help="upper bound on epochs (train.max_epochs)")
    cp.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (train.device)")
    cp.add_argument("--run-dir", help="output directory (default runs/compare-<data>-<time>)")
    cp.add_argument("--perturb", action="store_true", help="also robustness curves of every run (as `evaluate "
                    "--perturb`) and robustness.md / robustness_areas.png comparing the models")
    cp.add_argument("--quiet", action="store_true", help="no progress bars; one log line per epoch")

    tu = sub.add_parser("tune", help="Optuna hyper-parameter search on the validation split; final test over seeds",
                        description="Search the recipe's 'search' section with Optuna (TPE, median pruning on each "
                        "epoch's validation loss); trials never read the test split. Then the best configuration "
                        "is trained over the final seeds and tested once per seed. Start the same command on "
                        "several machines with one --storage postgresql://USER:PW@HOST/DB to share the study. "
                        "Overrides as in `train` (--train.NAME VALUE, --model.NAME VALUE) change the base config.")
    tu.add_argument("--model", help="registered model; without --config its shipped recipe for the data is used")
    tu.add_argument("--config", help="recipe with a 'search' section (YAML path or shipped name)")
    tu.add_argument("--data", help="'synth', 'synth-unaligned', an MMSA .pkl or a UR-FUNNY/MUStARD directory")
    tu.add_argument("--trials", type=int, required=True, help="finished trials of the study, across all workers")
    tu.add_argument("--storage", help="SQLAlchemy URL (default sqlite:///RUN_DIR/study.db); postgresql://... "
                    "(needs emodistill[postgres]) to share a study between machines")
    tu.add_argument("--study", help="study name (default <model>-<data file stem>)")
    tu.add_argument("--epochs", type=int, help="maximum epochs of each trial (train.max_epochs)")
    tu.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (train.device)")
    tu.add_argument("--final-seeds", type=int, nargs="+", default=[1111, 1112, 1113, 1114, 1115],
                    help="seeds of the final stage (default 1111-1115; 0: none)")
    tu.add_argument("--no-final", action="store_true", help="skip the final stage (a later run can do it)")
    tu.add_argument("--run-dir", help="this worker's output directory (default runs/tune-<study>)")
    tu.add_argument("--pruner-warmup", type=int, default=2, help="epochs before a trial may be pruned (default 2)")
    tu.add_argument("--startup-trials", type=int, default=5,
                    help="random trials before TPE, and finished trials before pruning (default 5)")
    tu.add_argument("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial; one "
                    "silent for 3 heartbeats is failed and re-queued (default 60)")
    tu.add_argument("--quiet", action="store_true", help="no progress bars; one log line per epoch")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on one split")
    e.add_argument("checkpoint")
    e.add_argument("--data", required=True,
                   help="'synth', 'synth-unaligned', an MMSA .pkl path or a UR-FUNNY/MUStARD directory")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--dataset", help="force the data-set family (mosi, mosei, sims, urfunny, mustard)")
    e.add_argument("--options", type=_yaml_mapping, help="reader options of a directory data set as YAML, e.g. "
                   "'{split: fold, fold: 3}' (default: those recorded in the checkpoint)")
    e.add_argument("--strict-hash", action="store_true")
    e.add_argument("--device", default="auto")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--output", help="write per-sample predictions (CSV: id, label, prediction)")
    e.add_argument("--json", action="store_true", help="print metrics as JSON")
    e.add_argument("--perturb", action="store_true", help="also compute seeded robustness curves per modality: "
                   "missing modality, random time steps dropped (0.1-0.9), Gaussian noise (0.1-2.0 feature sd); "
                   "no sample is dropped")
    e.add_argument("--perturb-seed", type=int, default=0, help="seed of every perturbation (default 0)")
    e.add_argument("--perturb-dir", help="where the robustness files go (default CKPT_DIR/robustness-SPLIT)")

    d = sub.add_parser("data", help="check or generate data")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("check", help="validate a data set; print splits, shapes, lengths, labels, hash")
    c.add_argument("file", help="MMSA .pkl path, a UR-FUNNY/MUStARD directory, or 'synth' / 'synth-unaligned'")
    c.add_argument("--dataset", help="force the data-set family (mosi, mosei, sims, urfunny, mustard)")
    c.add_argument("--options", type=_yaml_mapping, help="reader options of a directory data set as YAML")
    c.add_argument("--strict-hash", action="store_true", help="fail on a SHA-256 mismatch of a published file")
    c.add_argument("--replace-nonfinite", action="store_true", help="replace NaN/inf by 0 instead of failing")
    s = dsub.add_parser("synth", help="write the synthetic data set as an MMSA pickle")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--unaligned", action="store_true")

    sub.add_parser("models", help="list registered models")
    sub.add_parser("recipes", help="list shipped YAML recipes")

    from emodistill.report import add_report_arguments  # light: no torch or matplotlib import

    r = sub.add_parser("report", help="write an HTML interpretability report of a run directory",
                       description="Write RUN_DIR/report/index.html with PNG figures: training curves, GD-Unit "
                       "edges, dictionary activations (DHMD), t-SNE of decoupled features, confusion matrix.")
    add_report_arguments(r)

    from emodistill.extract.command import (
        EXTRACT_DESCRIPTION,
        PREDICT_DESCRIPTION,
        add_extract_arguments,
        add_predict_arguments,
    )

    x = sub.add_parser("extract", help="extract features from raw videos into an MMSA pickle",
                       description=EXTRACT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extract_arguments(x)
    pr = sub.add_parser("predict", help="predict the sentiment of new videos from one checkpoint",
                        description=PREDICT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predict_arguments(pr)

    i = sub.add_parser("import-official", help="convert an official DMD state_dict into an emodistill checkpoint")
    i.add_argument("checkpoint", help="official .pth (a DMD state_dict, e.g. pt/mosi-aligned.pth)")
    i.add_argument("--dataset", required=True, choices=["mosi", "mosei"])
    i.add_argument("--setting", required=True, choices=["aligned", "unaligned"])
    i.add_argument("-o", "--output", required=True)
    i.add_argument("--text-encoder", help="local BERT directory; default: rebuilt from the checkpoint's BERT weights")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; set before CUDA init
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.cmd not in ("train", "ablate", "compare", "tune"):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    if args.cmd != "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error(f"`{args.cmd}` runs in one process; under torchrun only `train` is distributed")
    try:
        if args.cmd == "train":
            return cmd_train(args, extra)
        if args.cmd == "ablate":
            return cmd_ablate(args, extra)
        if args.cmd == "compare":
            return cmd_compare(args, extra)
        if args.cmd == "tune":
            return cmd_tune(args, extra)
        handler = {
            "evaluate": cmd_evaluate, "data": cmd_data, "models": cmd_models,
            "recipes": cmd_recipes, "import-official": cmd_import_official, "report": cmd_report,
            "extract": _extract_cmd("cmd_extract"), "predict": _extract_cmd("cmd_predict"),
        }[args.cmd]
        return handler(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError, ImportError, OSError) as e:
        print(f"emodistill {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with `emodistill train --resume RUN_DIR`", file=sys.stderr)
        return 130
