"""Seconds from a 10-second video to a prediction, split by stage, on the CPU.

    python benchmarks/video_speed.py [--threads 2] [--repeats 3] [--width 640 --height 360 --fps 30]
                                     [--text-model bundled:all-MiniLM-L6-v2] [--asr]

Builds the clip itself (offline): 10 s of espeak-ng speech and the astronaut photograph moving across a
640x360 frame at 30 fps, H.264 + AAC. Then runs what ``emodistill predict`` runs: decode (PyAV), audio
features (librosa), face features (MediaPipe FaceMesh at the extraction frame rate), text features,
optionally speech recognition (faster-whisper base, int8), and DMD with the official MOSI sizes on the
resulting shapes (random weights: the cost does not depend on their values). Model loading is timed
separately and excluded from the total, as in the target (>= 5x faster than real time). Then a folder of
``--folder`` (8) different clips, predicted one by one and through the pipeline of
``Predictor.predict_videos`` (decoding, audio and text of the next clips overlapped with the face model),
in the same run: the throughput of both and the speed-up (target >= 1.7x on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/media.py builds the clip

from media import face_frames, speech, write_video  # noqa: E402

from emodistill.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from emodistill.extract.clip import ClipExtractor  # noqa: E402
from emodistill.extract.config import ExtractConfig  # noqa: E402
from emodistill.inference.predictor import Predictor  # noqa: E402
from emodistill.models import create_model  # noqa: E402
from emodistill.spec import DatasetSpec  # noqa: E402

TEXT = (
    "Honestly I did not expect much from this film. The first half drags a little, but the ending is "
    "wonderful and the acting is superb. I would happily watch it again with friends."
)


def make_clip(path: Path, seconds: float, width: int, height: int, fps: int, shift: int = 0) -> Path:
    wav = speech(TEXT)
    n_audio = int(seconds * 16000)
    wav = np.roll(np.tile(wav, int(np.ceil(n_audio / len(wav))))[:n_audio], 1600 * shift)  # clips differ
    face = face_frames(int(seconds * fps), size=height, seed=shift)  # (T, h, h, 3)
    frames = np.full((len(face), height, width, 3), 90, np.uint8)
    for i, f in enumerate(face):  # slide the face from left to right over a grey background
        x = int((width - height) * i / max(len(face) - 1, 1))
        frames[i, :, x : x + height] = f
    return write_video(path, frames, fps=fps, audio=wav)


def random_dmd(clip, cfg: ExtractConfig) -> tuple[torch.nn.Module, DatasetSpec, dict]:
    """DMD at the official MOSI sizes, random weights, on the shapes of ``clip`` (the ClipFeatures of one
    clip extracted with ``cfg``), and the extraction record a checkpoint of it needs."""
    dims = {"text": clip.text.shape[1], "audio": clip.audio.shape[1], "vision": clip.vision.shape[1]}
    lens = {"text": clip.text.shape[0], "audio": len(clip.audio), "vision": len(clip.vision)}
    spec = DatasetSpec("custom", False, dims, lens)
    record = {"format": "emodistill.extract/1", "extract": cfg.to_dict(), "text_dim": dims["text"],
              "feature_names": {"audio": clip.audio_names, "vision": clip.vision_names},
              "seq_lens": lens, "normalization": None}
    return create_model("dmd", spec).eval(), spec, record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--text-model", default="bundled:all-MiniLM-L6-v2")
    p.add_argument("--asr", action="store_true", help="transcribe with bundled Whisper base instead of a transcript")
    p.add_argument("--folder", type=int, default=8, help="clips in the folder measurement (default 8)")
    p.add_argument("--workers", type=int, default=2, help="worker processes in the folder measurement (default 2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = ExtractConfig()
    cfg.text.model = args.text_model
    if args.asr:
        cfg.asr.model, cfg.asr.use = "bundled:whisper-base", "always"
    with tempfile.TemporaryDirectory() as tmp:
        video = make_clip(Path(tmp) / "clip.mp4", args.seconds, args.width, args.height, args.fps)
        t0 = time.perf_counter()
        extractor = ClipExtractor(cfg)
        _ = extractor.audio, extractor.vision, extractor.text
        if args.asr:
            _ = extractor.asr
        first = extractor(video, transcript=None if args.asr else TEXT)  # also warms numba/mediapipe caches
        load_s = time.perf_counter() - t0

        model, spec, record = random_dmd(first, cfg)
        lens = spec.seq_lens
        predictor = Predictor(model, {"extract_config": record}, torch.device("cpu"), "benchmark")
        predictor.extractor.close()
        predictor.extractor = extractor  # the loaded models above

        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = predictor.predict_video(video, None if args.asr else TEXT)
            runs.append((time.perf_counter() - t0, out["seconds"]))

        # a folder of N different clips: one by one, then pipelined (Predictor.predict_videos), same run
        folder = [make_clip(Path(tmp) / f"f{i}.mp4", args.seconds, args.width, args.height, args.fps, shift=i)
                  for i in range(args.folder)]
        texts = [None if args.asr else TEXT] * len(folder)
        t0 = time.perf_counter()
        one_by_one = [predictor.predict_video(v, t)["score"] for v, t in zip(folder, texts, strict=True)]
        seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        piped = [r["score"] for r in predictor.predict_videos(folder, texts)]
        pipe_s = time.perf_counter() - t0
        extractor.close()
        # the same through worker processes (each loads the checkpoint and the models once: warmed up first)
        ckpt = Path(tmp) / "bench.ckpt"
        save_checkpoint(ckpt, build_checkpoint(model, "dmd", spec, {}, extract_config=record))
        with Predictor.from_checkpoint(ckpt) as multi:
            multi.predict_videos(folder[: args.workers], texts[: args.workers], workers=args.workers)
            t0 = time.perf_counter()
            in_workers = [r["score"] for r in multi.predict_videos(folder, texts, workers=args.workers)]
            workers_s = time.perf_counter() - t0

    total = statistics.median(r[0] for r in runs)
    stages = {k: statistics.median(r[1].get(k, 0.0) for r in runs) for k in runs[0][1]}
    print(f"clip: {args.seconds:.0f} s, {args.width}x{args.height} @ {args.fps} fps, speech; "
          f"{args.threads} threads; median of {args.repeats}")
    print(f"model loading (excluded): {load_s:.2f} s (includes the first, warm-up clip)")
    for k in ("decode", "audio", "vision", "asr", "text", "model"):
        print(f"  {k:7s} {stages.get(k, 0.0):7.3f} s")
    print(f"  total   {total:7.3f} s  -> {args.seconds / total:.1f}x faster than real time "
          f"(target >= 5x)  [frames: audio {lens['audio']}, vision {lens['vision']} at {cfg.vision.fps:g} fps]")
    n = len(folder)
    assert piped == one_by_one, "the pipeline must give the same scores in the same order"
    print(f"folder of {n} clips of {args.seconds:.0f} s: one by one {seq_s:.2f} s ({n * args.seconds / seq_s:.1f}x "
          f"real time); pipelined {pipe_s:.2f} s ({n * args.seconds / pipe_s:.1f}x real time); "
          f"speed-up x{seq_s / pipe_s:.2f} (target >= 1.7); same scores, same order")
    assert np.allclose(in_workers, one_by_one, atol=1e-5), "worker processes must give the same scores"
    print(f"  in {args.workers} worker processes ({max(1, args.threads // args.workers)} thread(s) each): "
          f"{workers_s:.2f} s ({n * args.seconds / workers_s:.1f}x real time); speed-up x{seq_s / workers_s:.2f}")


if __name__ == "__main__":
    main()
