"""``emodistill import-official``: convert an official DMD state_dict into an emodistill checkpoint."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="official .pth (a DMD state_dict, e.g. pt/mosi-aligned.pth)")
    p.add_argument("--dataset", required=True, choices=["mosi", "mosei"])
    p.add_argument("--setting", required=True, choices=["aligned", "unaligned"])
    p.add_argument("-o", "--output", required=True, help="the emodistill checkpoint to write")
    p.add_argument("--text-encoder", help="local BERT directory; default: rebuilt from the checkpoint's BERT weights")


def run(args: argparse.Namespace) -> int:
    from emodistill.models.dmd.official import import_official

    model = import_official(args.checkpoint, args.dataset, args.setting, args.output, text_encoder=args.text_encoder)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output} (dmd, {args.dataset} {args.setting}, {n:,} parameters)")
    return 0
