"""``emodistill report``: argument definitions and the subcommand function (the CLI wires these in).

Kept free of heavy imports so that building the parser (``--help``) does not import torch or matplotlib.
"""

from __future__ import annotations

import argparse
import sys


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommand's arguments to ``parser``."""
    parser.add_argument("run_dir", help="run directory written by `emodistill train`; for a multi-seed root, "
                        "one report per seed-*/ run")
    parser.add_argument("-o", "--output", help="output folder (default RUN_DIR/report; for a multi-seed root, "
                        "OUTPUT/seed-S); an older report there is replaced")
    parser.add_argument("--data", help="data source instead of the one in config.yaml (e.g. the .pkl moved)")
    parser.add_argument("--max-points", type=int, default=1500,
                        help="at most this many points per t-SNE panel (test samples x 3 modalities)")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, auto, ... (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64, help="test batch size for the model pass")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report(s) and print where; 2 with a one-line message if matplotlib is missing."""
    from emodistill.report.build import write_reports

    if args.max_points < 5:
        raise ValueError(f"--max-points={args.max_points} must be >= 5")
    try:
        outs = write_reports(args.run_dir, args.output, max_points=args.max_points, device=args.device,
                             data=args.data, batch_size=args.batch_size)
    except ImportError as e:
        print(f"emodistill report: error: {e}", file=sys.stderr)
        return 2
    for out in outs:
        print(f"report: {out / 'index.html'}")
    return 0
