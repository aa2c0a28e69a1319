"""``emodistill export``: a checkpoint as a verified, self-describing ONNX graph
(:mod:`emodistill.inference.export`)."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = (
    "Export a checkpoint's inference path to ONNX: inputs named after the data keys (text or text_bert, "
    "audio, vision, and the *_lengths of unaligned data), outputs prediction plus, for DMD/DHMD, the "
    "per-modality heads and GD-Unit edges; dynamic batch axis, dynamic sequence axes unless an output is "
    "bound to the trained lengths (DMD/DHMD heads; --no-heads lifts that). The checkpoint's spec, "
    "extraction record and label convention are stored in the file's metadata. ONNX Runtime is checked "
    "against PyTorch before the file is written. Needs the onnx extra (onnx, onnxscript, onnxruntime)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by training (best.ckpt) or import-official")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--no-heads", dest="heads", action="store_false",
                   help="export the prediction only (DMD/DHMD: then the sequence axes are dynamic too)")
    p.add_argument("--no-check", dest="verify", action="store_false",
                   help="skip the ONNX Runtime vs PyTorch check (not recommended)")


def run(args: argparse.Namespace) -> int:
    from emodistill.inference.export import export_onnx

    meta = export_onnx(args.checkpoint, args.output, heads=args.heads, verify=args.verify)
    lengths = "dynamic" if meta["dynamic_lengths"] else "fixed to the checkpoint's"
    print(f"{args.output}: {meta['model_name']}, inputs {', '.join(meta['inputs'])}; outputs "
          f"{', '.join(meta['outputs'])}; batch axis dynamic, sequence axes {lengths}")
    if "check" in meta:
        print(f"ONNX Runtime vs PyTorch: max |difference| {meta['check']['max_abs_diff']:.2e} over "
              + json.dumps([(c["batch"], c["lengths"]) for c in meta["check"]["cases"]]))
    return 0
