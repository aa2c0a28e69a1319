"""``emodistill extract``: raw videos plus a labels CSV -> an MMSA pickle
(:func:`emodistill.extract.dataset.extract_dataset`; needs the ``video`` extra)."""

from __future__ import annotations

import argparse
import sys

from emodistill.cli import common

DESCRIPTION = """\
Turn a folder of videos plus a labels CSV into an MMSA-schema pickle that `emodistill train` reads.

Labels CSV: columns video (file relative to VIDEOS_DIR), clip_id (optional), text, label, split
(train/valid/test), optional timing (SRT/JSON word-timing file); or MMSA's label.csv as it is
(video_id, clip_id, text, label, label_T/A/V, annotation, mode; files VIDEOS_DIR/video_id/clip_id.mp4).
Writes OUT.pkl, OUT.manifest.json, OUT.errors.csv (failed videos, with reasons) and OUT.cache/ (one
file per finished video: an interrupted or failed run resumes where it stopped). Exits 1 if a video
failed, unless --skip-failures.
"""
FORMATTER = argparse.RawDescriptionHelpFormatter
PARENTS = [common.quiet_option("no progress bar"), common.verbose_option(common.VIDEO_VERBOSE_HELP)]


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from emodistill.extract.config import load_extract_config
    from emodistill.extract.dataset import ExtractionFailed, extract_dataset
    from emodistill.extract.logs import configure_third_party_logs

    configure_third_party_logs(args.verbose)  # before anything imports mediapipe

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
