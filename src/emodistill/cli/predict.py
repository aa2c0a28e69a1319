"""``emodistill predict``: the sentiment of new videos from one checkpoint
(:class:`emodistill.inference.predictor.Predictor`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emodistill.cli import common

DESCRIPTION = """\
Predict the sentiment of a video (or of every video in a folder) with a checkpoint trained on a data set
made by `emodistill extract` (or its `emodistill export` ONNX file); the checkpoint's extraction settings
are reused, so no other flag is needed. Prints JSON for one video; a folder gives CSV (one row per video;
a failed video gets an error column and the command exits 1).
"""
FORMATTER = argparse.RawDescriptionHelpFormatter
PARENTS = [common.device_option("cpu", devices="cpu, cuda, cuda:N"), common.verbose_option(common.VIDEO_VERBOSE_HELP)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file, or a folder of videos")
    p.add_argument("--checkpoint", required=True,
                   help="best.ckpt of a run trained on an extracted data set, or its `emodistill export` .onnx file")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="PyTorch or ONNX Runtime (needs the onnx extra); auto (default): ONNX Runtime for a .onnx "
                        "file, PyTorch for a checkpoint; onnx with a checkpoint exports it once into the cache")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: one per core)")
    p.add_argument("--workers", type=int, default=1,
                   help="for a folder: processes predicting videos at once, each loading the models once (default "
                        "1: one process, whose decoding and audio/text stages overlap the face model)")
    p.add_argument("--transcript", help="what is said: text, a .txt file, or an .srt/.json word-timing file "
                   "(default: a sidecar VIDEO.json/.srt/.txt, else speech recognition if the checkpoint's "
                   "extraction used it)")
    p.add_argument("-o", "--output", help="also write the JSON (one video) or CSV (folder) to this file; with "
                   "--segments, JSON or CSV by the file's extension")
    p.add_argument("--segments", metavar="auto|SECONDS",
                   help="a long video as a timeline: 'auto' splits it into utterances (sentence ends and pauses "
                        "in the words of the timing file, the speech recogniser, or the transcript), a number "
                        "into fixed windows of that many seconds; each segment is predicted, segments without "
                        "speech or face are marked, not scored")
    p.add_argument("--plot", help="with --segments: PNG of the score over time (default: next to -o, same stem)")


def run(args: argparse.Namespace) -> int:
    from emodistill.extract.errors import ExtractError
    from emodistill.extract.logs import configure_third_party_logs
    from emodistill.inference.predictor import Predictor, rows_to_csv
    from emodistill.inference.timeline import parse_segments
    from emodistill.io import atomic_write

    configure_third_party_logs(args.verbose)  # before anything imports mediapipe

    target = Path(args.video)
    segments = None if args.segments is None else parse_segments(args.segments)
    if args.workers < 1:
        raise ValueError(f"--workers: expected a number >= 1, found {args.workers}")
    if args.plot and segments is None:
        raise ValueError("--plot: draws a timeline; give --segments auto|SECONDS too")
    if segments is not None and target.is_dir():
        raise ValueError(f"--segments: expected one video file, found the folder {target}")
    with Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend,
                                   threads=args.threads) as predictor:
        if segments is not None:
            return _timeline(predictor, target, segments, args)
        if target.is_dir():
            rows = predictor.predict_folder(target, workers=args.workers)
            if not rows:
                raise FileNotFoundError(f"{target}: no video files")
            text = rows_to_csv(rows)
            failed = sum("error" in r for r in rows)
        else:
            try:
                result = predictor.predict_video(target, args.transcript)
            except ExtractError as e:  # its reasons name no file: the data-set builder lists them per video
                raise ExtractError(f"{target}: {e}") from e
            text = json.dumps(result, indent=2)
            failed = 0
    print(text, end="" if text.endswith("\n") else "\n")
    if args.output:
        atomic_write(Path(args.output), lambda tmp: tmp.write_text(text))
    if failed:
        print(f"emodistill predict: {failed} video(s) failed (see the error column)", file=sys.stderr)
        return 1
    return 0



def _timeline(predictor, video: Path, segments: str | float, args: argparse.Namespace) -> int:
    from emodistill.extract.errors import ExtractError
    from emodistill.inference.timeline import plot_timeline, timeline_csv
    from emodistill.io import atomic_write

    try:
        timeline = predictor.predict_timeline(video, segments, args.transcript)
    except ExtractError as e:
        raise ExtractError(f"{video}: {e}") from e
    text = json.dumps(timeline, indent=2) + "\n"
    print(text, end="")
    out = Path(args.output) if args.output else None
    if out is not None:
        body = timeline_csv(timeline) if out.suffix.lower() == ".csv" else text
        atomic_write(out, lambda tmp: tmp.write_text(body))
    plot = Path(args.plot) if args.plot else (out.with_suffix(".png") if out is not None else None)
    if plot is not None:
        plot_timeline(timeline, plot)
    done = sum(r["status"] == "ok" for r in timeline["segments"])
    print(f"timeline: {len(timeline['segments'])} segments, {done} scored" + (f"; plot {plot}" if plot else ""),
          file=sys.stderr)
    return 0
