"""``emodistill extract`` and ``emodistill predict``: arguments and handlers (heavy imports inside)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXTRACT_DESCRIPTION = """\
Turn a folder of videos plus a labels CSV into an MMSA-schema pickle that `emodistill train` reads.

Labels CSV: columns video (file relative to VIDEOS_DIR), clip_id (optional), text, label, split
(train/valid/test), optional timing (SRT/JSON word-timing file); or MMSA's label.csv as it is
(video_id, clip_id, text, label, label_T/A/V, annotation, mode; files VIDEOS_DIR/video_id/clip_id.mp4).
Writes OUT.pkl, OUT.manifest.json, OUT.errors.csv (failed videos, with reasons) and OUT.cache/ (one
file per finished video: an interrupted or failed run resumes where it stopped). Exits 1 if a video
failed, unless --skip-failures.
"""

PREDICT_DESCRIPTION = """\
Predict the sentiment of a video (or of every video in a folder) with a checkpoint trained on a data set
made by `emodistill extract`; the checkpoint's extraction settings are reused, so no other flag is
needed. Prints JSON for one video; a folder gives CSV (one row per video; a failed video gets an error
column and the command exits 1).
"""


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos_dir", help="folder holding the videos (MMSA: the Raw folder or the data-set folder)")
    p.add_argument("--labels", required=True, help="labels CSV (our layout or MMSA's label.csv)")
    p.add_argument("-o", "--output", required=True, help="output pickle, e.g. mydata.pkl")
    p.add_argument("--config", help="extract.yaml with the feature settings (see the README; default: built-in)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--skip-failures", action="store_true",
                   help="write the data set without the videos that failed (they stay listed in OUT.errors.csv)")
    p.add_argument("--cache-dir", help="per-video cache (default OUT.cache next to the output)")
    p.add_argument("--aligned", action="store_true", help="word-aligned output (overrides the config's 'aligned')")
    p.add_argument("--text-model", help="text encoder: local directory, hub name, or bundled:all-MiniLM-L6-v2 "
                   "(overrides text.model; default bert-base-uncased)")
    p.add_argument("--asr-model", help="faster-whisper model directory or bundled:whisper-base, used for clips "
                   "without a transcript (overrides asr.model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file, or a folder of videos")
    p.add_argument("--checkpoint", required=True, help="best.ckpt of a run trained on an extracted data set")
    p.add_argument("--transcript", help="what is said: text, a .txt file, or an .srt/.json word-timing file "
                   "(default: a sidecar VIDEO.json/.srt/.txt, else speech recognition if the checkpoint's "
                   "extraction used it)")
    p.add_argument("-o", "--output", help="also write the JSON (one video) or CSV (folder) to this file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")


def cmd_extract(args: argparse.Namespace) -> int:
    from emodistill.extract.config import load_extract_config
    from emodistill.extract.dataset import ExtractionFailed, extract_dataset

    cfg = load_extract_config(args.config)
    if args.aligned:
        cfg.aligned = True
    if args.text_model:
        cfg.text.model = args.text_model
    if args.asr_model:
        cfg.asr.model = args.asr_model
    try:
        summary = extract_dataset(args.videos_dir, args.labels, args.output, cfg, workers=args.workers,
                                  skip_failures=args.skip_failures, cache_dir=args.cache_dir,
                                  progress=not args.quiet)
    except ExtractionFailed as e:
        print(f"emodistill extract: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{s} {n}" for s, n in summary.counts.items())
    print(f"wrote {summary.output} ({counts}; {summary.cached} from cache; {summary.seconds:.1f} s)")
    if summary.failed:
        print(f"left out {summary.failed} failed video(s), listed in {summary.errors_file}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from emodistill.predict import Predictor, rows_to_csv

    target = Path(args.video)
    with Predictor.from_checkpoint(args.checkpoint, device=args.device) as predictor:
        if target.is_dir():
            rows = predictor.predict_folder(target)
            if not rows:
                raise FileNotFoundError(f"{target}: no video files")
            text = rows_to_csv(rows)
            failed = sum("error" in r for r in rows)
        else:
            text = json.dumps(predictor.predict_video(target, args.transcript), indent=2)
            failed = 0
    print(text, end="" if text.endswith("\n") else "\n")
    if args.output:
        from emodistill.io import atomic_write

        atomic_write(Path(args.output), lambda tmp: tmp.write_text(text))
    if failed:
        print(f"emodistill predict: {failed} video(s) failed (see the error column)", file=sys.stderr)
        return 1
    return 0
