"""``emodistill data check | synth``: validate and describe a data set, or write the synthetic one."""

from __future__ import annotations

import argparse

from emodistill.cli import common

DESCRIPTION = "Check a data set (splits, shapes, lengths, labels, hash) or write the synthetic data set."


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", required=True)
    c = sub.add_parser("check", help="validate a data set; print splits, shapes, lengths, labels, hash",
                       parents=common.reader_options())
    c.add_argument("file", help="MMSA .pkl path, a UR-FUNNY/MUStARD directory, or a built-in name ('synth', "
                   "'synth-unaligned', 'synth-concepts', 'synth-concepts-unaligned')")
    c.add_argument("--replace-nonfinite", action="store_true", help="replace NaN/inf by 0 instead of failing")
    s = sub.add_parser("synth", help="write the synthetic data set as an MMSA pickle")
    s.add_argument("-o", "--output", required=True, help="the pickle to write")
    s.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    s.add_argument("--unaligned", action="store_true", help="unaligned sequence lengths (default aligned)")
    s.add_argument("--concepts", action="store_true",
                   help="the synth-concepts variant: 12 planted discrete concepts per data set, stored under the "
                        "pickle key 'concepts' (default: the synth data set)")


def run(args: argparse.Namespace) -> int:
    if args.data_cmd == "check":
        from emodistill.data import load_dataset
        from emodistill.data.check import describe

        data = load_dataset(args.file, dataset=args.dataset, strict_hash=args.strict_hash,
                            replace_nonfinite=args.replace_nonfinite, options=args.options)
        print(describe(data))
        return 0
    from emodistill.data.synth import write_synth
    from emodistill.data.synth_concepts import write_synth_concepts

    write = write_synth_concepts if args.concepts else write_synth
    path = write(args.output, seed=args.seed, aligned=not args.unaligned)
    name = "synth-concepts" if args.concepts else "synth"
    print(f"synthetic data set {name} ({'unaligned' if args.unaligned else 'aligned'}, seed {args.seed}): {path}")
    return 0
