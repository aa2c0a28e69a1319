"""``emodistill report``: an HTML interpretability report of a run directory
(:func:`emodistill.report.write_reports`)."""

from __future__ import annotations

import argparse

from emodistill.cli import common

DESCRIPTION = ("Write RUN_DIR/report/index.html with PNG figures: training curves, GD-Unit edges, dictionary "
               "activations (DHMD), t-SNE of decoupled features, confusion matrix.")
PARENTS = [common.data_option(help="data source instead of the one in config.yaml (e.g. the .pkl moved)"),
           common.device_option("cpu"), common.batch_size_option("test batch size for the model pass")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `emodistill train`; for a multi-seed root, one report "
                   "per seed-*/ run")
    p.add_argument("-o", "--output", help="output folder (default RUN_DIR/report; for a multi-seed root, "
                   "OUTPUT/seed-S); an older report there is replaced")
    p.add_argument("--max-points", type=int, default=1500,
                   help="at most this many points per t-SNE panel (test samples x 3 modalities)")


def run(args: argparse.Namespace) -> int:
    """Write the report(s) and print where (a missing matplotlib is an ImportError, reported by ``main``)."""
    from emodistill.report import write_reports

    if args.max_points < 5:
        raise ValueError(f"--max-points={args.max_points} must be >= 5")
    outs = write_reports(args.run_dir, args.output, max_points=args.max_points, device=args.device,
                         data=args.data, batch_size=args.batch_size)
    for out in outs:
        print(f"report: {out / 'index.html'}")
    return 0
