"""``emodistill evaluate``: score a checkpoint on one split (:func:`emodistill.inference.evaluation.evaluate`),
optionally with robustness curves (:func:`emodistill.experiments.robustness.write_robustness`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emodistill.cli import common

DESCRIPTION = ("Evaluate a checkpoint on one split of a data set: the metrics of training plus the "
               "model-selection loss; --perturb adds robustness curves per modality.")
PARENTS = [common.data_option(required=True), *common.reader_options("those recorded in the checkpoint"),
           common.device_option("auto"), common.batch_size_option()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by training (best.ckpt) or import-official")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--output", help="write per-sample predictions (CSV: id, label, prediction)")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.add_argument("--perturb", action="store_true", help="also compute seeded robustness curves per modality: "
                   "missing modality, random time steps dropped (0.1-0.9), Gaussian noise (0.1-2.0 feature sd); "
                   "no sample is dropped")
    p.add_argument("--perturb-seed", type=int, default=0, help="seed of every perturbation (default 0)")
    p.add_argument("--perturb-dir", help="where the robustness files go (default CKPT_DIR/robustness-SPLIT)")


def run(args: argparse.Namespace) -> int:
    from emodistill.inference.evaluation import evaluate
    from emodistill.io import write_text
    from emodistill.metrics.scores import metrics_table

    ev = evaluate(args.checkpoint, args.data, args.split, device=args.device, batch_size=args.batch_size,
                  dataset=args.dataset, options=args.options, strict_hash=args.strict_hash)
    if args.json:
        print(json.dumps(ev.metrics, indent=2))
    else:
        print(f"{ev.model_name} on {args.data} [{args.split}, {len(ev.samples)} samples]:")
        print(metrics_table(ev.metrics))
    if args.output:
        write_text(Path(args.output), ev.predictions_csv())
        print(f"predictions: {args.output}")
    if args.perturb:
        from emodistill.experiments.robustness import default_robustness_dir, write_robustness

        out_dir = Path(args.perturb_dir) if args.perturb_dir else default_robustness_dir(args.checkpoint, args.split)
        print(write_robustness(ev.model, ev.samples, ev.data.spec, out_dir, seed=args.perturb_seed, device=ev.device,
                               batch_size=args.batch_size, title=f"{ev.model_name} ({args.split})"))
        print(f"robustness: {out_dir} (robustness.md/.csv/.json, curves and area plots)")
    return 0
