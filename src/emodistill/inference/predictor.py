"""Prediction on new videos from one checkpoint: ``Predictor.from_checkpoint(path).predict_video(video)``.

A checkpoint trained on a data set made by ``emodistill extract`` carries that extraction record
(settings, feature names, train-split normalisation, padded lengths), so a new video is decoded and
featurised exactly as the training clips were, then padded to the lengths the model was trained with.
A checkpoint trained on features extraction cannot reproduce (the official MOSI/MOSEI/SIMS files:
COVAREP/FACET/OpenFace selections, docs/mmsa.md §6) is refused with an error, never answered.

Output of :meth:`Predictor.predict_video` (JSON-ready)::

    {"video", "transcript", "timing", "backend": "torch" | "onnx", "score",
     "label_7": -3..3 (round of the clipped score; MOSI/MOSEI convention), "label_7_name",
     "label_2": "positive" | "negative" (Has0 convention: score >= 0 is positive),
     "branches": {"homo": {"text", "audio", "vision"}, "hetero": {...}}   # per-modality heads (DMD/DHMD)
     "edges": {"homo": {"V->L": w, ...}, "hetero": {...}},                 # GD-Unit edge weights (DMD/DHMD)
     "frames": {"audio", "vision", "vision_with_face", "truncated": [...]},
     "seconds": {"decode", "audio", "vision", "asr", "text", "model"}}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodistill.data.types import SplitData
from emodistill.extract.clip import ClipExtractor, ClipFeatures
from emodistill.extract.config import ExtractConfig
from emodistill.extract.features import normalize, pad, sequences
from emodistill.extract.labels import VIDEO_EXTENSIONS
from emodistill.extract.transcript import video_transcript
from emodistill.inference.arrays import feature_split, one_row_batch, vocab_size
from emodistill.metrics.stats import records_csv
from emodistill.models.dmd.gd_unit import EDGE_NAMES
from emodistill.models.dmd.model import MODS as DMD_MODALITIES
from emodistill.models.registry import load_checkpoint
from emodistill.spec import FRAME_MODALITIES, LONG_NAMES

LABEL_7_NAMES = {
    -3: "strongly negative",
    -2: "negative",
    -1: "weakly negative",
    0: "neutral",
    1: "weakly positive",
    2: "positive",
    3: "strongly positive",
}
_BRANCH_MODALITIES = tuple(LONG_NAMES[m] for m in DMD_MODALITIES)  # DMD's stacked head order: text, vision, audio
NO_TRANSCRIPT = ("no transcript: give one with --transcript (text, or a .txt/.srt/.json file) or as a sidecar "
                 "VIDEO.txt/.srt/.json next to the video; the checkpoint's extraction has no speech recognition "
                 "model to fall back on")
"""The error for a video without transcript, in ``emodistill predict``'s terms (it has no labels file)."""


class CheckpointNotPredictable(ValueError):
    """The checkpoint's training features cannot be re-extracted from a video."""


BACKENDS = ("auto", "torch", "onnx")
"""Prediction backends: PyTorch eager, or ONNX Runtime on an exported graph; ``auto`` is ONNX Runtime for an
``.onnx`` file and PyTorch for a checkpoint (README, "Fast inference", has the measured speeds)."""


class Predictor:
    """A trained model plus the extraction that made its training data.

    Args:
        model: the model in eval mode, or an :class:`~emodistill.inference.onnx_runtime.OnnxModel`.
        checkpoint: its checkpoint dict, or an exported file's metadata (needs ``extract_config``).
        device: where the model runs.
        source: the checkpoint path (for messages).
    """

    def __init__(self, model: Any, checkpoint: dict[str, Any], device: torch.device, source: str,
                 videos: bool = True) -> None:
        record = checkpoint.get("extract_config")
        if not record and videos:
            raise CheckpointNotPredictable(not_predictable(source, checkpoint))
        self.model, self.checkpoint, self.device, self.source = model, checkpoint, device, source
        self.backend = "torch" if isinstance(model, torch.nn.Module) else "onnx"
        self._folds: dict = {}  # kept across clips by model.inference_cache (DMD/MulT: the folded weights)
        self._pool: tuple | None = None  # (workers, process pool) of predict_videos(workers > 1)
        self.record = record or None
        self.spec = model.spec
        self.cfg = ExtractConfig.from_dict(record["extract"], origin=f"{source}: extract_config") if record else None
        self.extractor = ClipExtractor(self.cfg, no_transcript=NO_TRANSCRIPT) if record else None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", backend: str = "auto", threads: int | None = None,
        videos: bool = True,
    ) -> Predictor:
        """Load ``path`` for prediction: a checkpoint (``best.ckpt``) or a file of ``emodistill export``.

        Args:
            videos: refuse (:class:`CheckpointNotPredictable`) a checkpoint whose features cannot be extracted
                from a video; with False it is loaded for :meth:`predict_arrays` only.
            backend: one of :data:`BACKENDS`. ``onnx`` with a checkpoint exports it once into the cache
                (``$EMODISTILL_CACHE/onnx/<checkpoint SHA-256>.onnx``) and runs that.
            threads: ONNX Runtime intra-op threads (default: one per core).
        """
        from emodistill.inference.onnx_runtime import OnnxModel

        if backend not in BACKENDS:
            raise ValueError(f"--backend: expected one of {list(BACKENDS)}, found {backend!r}")
        is_onnx = Path(path).suffix.lower() == ".onnx"
        if backend == "torch" and is_onnx:
            raise ValueError(f"{path}: an exported .onnx file runs on ONNX Runtime only (--backend onnx or auto); "
                             "give the checkpoint for --backend torch")
        if backend == "onnx" or is_onnx:
            if torch.device(device).type != "cpu":
                raise ValueError(f"--backend onnx runs on the CPU (CPUExecutionProvider); found --device {device}")
            onnx_path = Path(path) if is_onnx else cached_export(path)
            model = OnnxModel(onnx_path, threads=threads)
            return cls(model, model.meta, torch.device("cpu"), str(path), videos)
        device = torch.device(device)
        model, ckpt = load_checkpoint(path, device=device)
        return cls(model, ckpt, device, str(path), videos)

    @property
    def predicts_videos(self) -> bool:
        """Whether the checkpoint carries the extraction record that videos need (else arrays only)."""
        return self.extractor is not None

    def _need_videos(self) -> None:
        if self.extractor is None:
            raise CheckpointNotPredictable(not_predictable(self.source, self.checkpoint))

    def close(self) -> None:
        if self.extractor is not None:
            self.extractor.close()
        self._close_pool()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict_video(self, video: str | Path, transcript: str | Path | None = None) -> dict[str, Any]:
        """Predict one video.

        Args:
            video: the video file.
            transcript: what is said, as text, or a ``.txt`` file with it, or an ``.srt``/``.json``
                word-timing file; None uses a sidecar ``VIDEO.json/.srt/.txt`` if there is one, else speech
                recognition when the training extraction had a model for it (else an error says a
                transcript is needed).

        Raises:
            ExtractError: the video cannot be featurised (no audio stream, no face, corrupt, ...).
        """
        self._need_videos()
        text, timing = video_transcript(video, transcript)
        clip = self.extractor(video, transcript=text, timing_file=timing)
        out = self.predict_features(clip)
        return {"video": str(video), **out}

    def predict_features(self, clip: ClipFeatures) -> dict[str, Any]:
        """Predict from already extracted raw features of one clip."""
        names = self.record["feature_names"]
        for m in FRAME_MODALITIES:
            if list(getattr(clip, f"{m}_names")) != list(names[m]):
                raise ValueError(f"{self.source}: the clip's {m} features differ from the training features")
        batch, frames = self._batch(clip)
        result = self._result(batch, clip.seconds)
        result = {"transcript": clip.transcript, "timing": clip.timing, **result}
        result["frames"] = frames
        result["seconds"] = result.pop("seconds")  # last, as before
        return result

    def predict_arrays(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Predict from one clip's stored features (a row of its MMSA pickle: ``text``, ``audio``, ``vision``,
        ``text_bert``, lengths); see :mod:`emodistill.inference.arrays`. Works for every checkpoint.

        Raises:
            FeatureShapeError: a key is missing or has the wrong shape.
        """
        batch = one_row_batch(feature_split(self.spec, arrays, vocab_size(self.model)), self.device)
        return self._result(batch, {})

    def _result(self, batch: dict[str, torch.Tensor], seconds: dict[str, float]) -> dict[str, Any]:
        """backend, score and labels, branches, edges and seconds of one batch."""
        t0 = time.perf_counter()
        output = self.run(batch)
        seconds = {**seconds, "model": time.perf_counter() - t0}
        score = float(output["prediction"].view(-1)[0])
        result: dict[str, Any] = {"backend": self.backend}
        result.update(self._labels(score))
        branches = _branches(output)
        if branches:
            result["branches"] = branches
        edges = _edges(output)
        if edges:
            result["edges"] = edges
        result["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        return result

    def _predict_in_processes(self, videos: list, transcripts: list | None, workers: int) -> list[dict[str, Any]]:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        if not Path(self.source).is_file():
            raise ValueError(f"workers={workers}: worker processes load the model from a file; {self.source!r} "
                             "is not one (build the Predictor with Predictor.from_checkpoint)")
        if self._pool is None or self._pool[0] != workers:  # kept until close(): models load once per worker
            self._close_pool()
            threads = max(1, (os.cpu_count() or 1) // workers)
            args = (self.source, str(self.device), self.backend, threads)
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=args)
            self._pool = (workers, pool)
        transcripts = list(transcripts) if transcripts is not None else [None] * len(videos)
        return list(self._pool[1].map(_worker_predict, [str(v) for v in videos],
                                      [None if t is None else str(t) for t in transcripts]))

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool[1].shutdown()
            self._pool = None

    def predict_timeline(self, video: str | Path, segments: str | float = "auto",
                         transcript: str | Path | None = None) -> dict[str, Any]:
        """A long video as a timeline of scored utterances; see :mod:`emodistill.inference.timeline`."""
        from emodistill.inference.timeline import predict_timeline

        self._need_videos()
        return predict_timeline(self, video, segments, transcript)

    def run(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The backend's :meth:`~emodistill.models.base.MERModel.inference_outputs` of one batch."""
        if self.backend == "onnx":
            return self.model.inference_outputs(batch)
        with torch.no_grad(), self.model.inference_cache(self._folds):
            return self.model.inference_outputs(batch)

    def _labels(self, score: float) -> dict[str, Any]:
        if self.spec.is_binary:
            p = float(1.0 / (1.0 + np.exp(-score)))
            return {"score": score, "probability": p, "label_2": "positive" if p >= 0.5 else "negative"}
        out: dict[str, Any] = {"score": score}
        lo, hi = self.spec.label_range
        if (lo, hi) == (-3.0, 3.0):
            k = int(np.round(np.clip(score, -3.0, 3.0)))
            out.update(label_7=k, label_7_name=LABEL_7_NAMES[k])
        out["label_2"] = "positive" if score >= 0 else "negative"
        return out

    def _batch(self, clip: ClipFeatures) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """One-clip batch, normalised and padded as in training, through the training loader."""
        seqs = sequences(clip, self.cfg.aligned)
        lens = self.record["seq_lens"]
        stats = self.record.get("normalization")
        arrays, kept, truncated = {}, {}, []
        for m in FRAME_MODALITIES:
            x = normalize(seqs[m], seqs[f"{m}_valid"], stats[m] if stats else None)
            arrays[m], kept[m] = pad(x, lens[m])
            if len(x) > lens[m]:
                truncated.append(m)
        if int(clip.word_index.max(initial=-1)) + 1 < len(clip.words):  # words cut at text.max_length
            truncated.append("text")
        split = SplitData(
            name="predict",
            text=clip.text[None].astype(np.float32),  # (1, L, D_t)
            text_bert=clip.text_bert[None].astype(np.float32) if self.spec.has_text_bert else None,  # (1, 3, L)
            audio=arrays["audio"][None],  # (1, T_a, D_a)
            vision=arrays["vision"][None],  # (1, T_v, D_v)
            audio_lengths=None if self.cfg.aligned else np.array([kept["audio"]], dtype=np.int64),
            vision_lengths=None if self.cfg.aligned else np.array([kept["vision"]], dtype=np.int64),
            labels=np.zeros(1, dtype=np.float32),
            ids=["predict"],
            raw_text=[clip.transcript],
        )
        batch = one_row_batch(split, self.device)
        frames = {
            "audio": int(len(clip.audio)),
            "vision": int(len(clip.vision)),
            "vision_with_face": int(clip.face_present.sum()),
            "truncated": truncated,
        }
        return batch, frames

    def predict_folder(self, folder: str | Path, transcripts: dict[str, str] | None = None,
                       workers: int = 1) -> list[dict[str, Any]]:
        """Predict every video in ``folder`` (sorted by name); see :meth:`predict_videos`. ``transcripts`` maps
        file name (or stem) to text or a file; otherwise a sidecar file, else speech recognition."""
        videos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        given = [(transcripts or {}).get(v.name, (transcripts or {}).get(v.stem)) for v in videos]
        return self.predict_videos(videos, given, workers=workers)

    def predict_videos(self, videos: list[str | Path], transcripts: list[str | Path | None] | None = None,
                       ahead: int = 2, workers: int = 1) -> list[dict[str, Any]]:
        """Predict several videos, in order, as a pipeline: the next videos are decoded and their audio and
        text featurised while the face model and the network run on this one
        (:meth:`~emodistill.extract.clip.ClipExtractor.iter_clips`). Results equal :meth:`predict_video`'s.
        A video that fails gets an ``error`` row instead of stopping the others.

        Args:
            workers: with more than 1, that many processes (each loading the checkpoint and the extraction
                models once, with ``cores / workers`` threads) take the videos one at a time, so the face
                model, the slowest stage, runs on several cores at once. Needs a Predictor made by
                :meth:`from_checkpoint`.
        """
        self._need_videos()
        if workers > 1:
            return self._predict_in_processes(videos, transcripts, workers)
        transcripts = list(transcripts) if transcripts is not None else [None] * len(videos)
        items, failed = [], {}
        for i, (video, t) in enumerate(zip(videos, transcripts, strict=True)):
            try:
                text, timing = video_transcript(video, t)
                items.append((video, text, timing))
            except Exception as e:  # a transcript file that is missing: this row only
                failed[i] = e
        results = iter(self.extractor.iter_clips(items, ahead=ahead))
        rows = []
        for i, video in enumerate(videos):
            err: BaseException | None = failed.get(i)
            if err is None:
                clip = next(results)
                if isinstance(clip, BaseException):
                    err = clip
                else:
                    try:
                        rows.append({"video": str(video), **self.predict_features(clip)})
                        continue
                    except Exception as e:  # reported per row; the CLI exits non-zero if any row has an error
                        err = e
            rows.append({"video": str(video), "error": f"{type(err).__name__}: {err}"})
        return rows


def not_predictable(source: str, checkpoint: dict[str, Any]) -> str:
    """Why a checkpoint without an extraction record cannot predict videos."""
    data = checkpoint.get("data") or {}
    return (f"{source}: this checkpoint was trained on {data.get('dataset') or data.get('source') or 'a data set'} "
            "whose features were not made by `emodistill extract` (the official MOSI/MOSEI/SIMS features are "
            "COVAREP/FACET/OpenFace selections that cannot be re-extracted from a video), so a prediction "
            "on a new video would be wrong. Train on a data set made by `emodistill extract` instead.")


_WORKER: Predictor | None = None


def _init_worker(source: str, device: str, backend: str, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = Predictor.from_checkpoint(source, device=device, backend=backend, threads=threads)


def _worker_predict(video: str, transcript: str | None) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.predict_videos([video], [transcript], ahead=1)[0]


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """Flatten prediction dicts into CSV text (nested keys joined with '/')."""
    return records_csv([_flatten(r) for r in rows])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, list):
            out[key] = ";".join(map(str, v))
        else:
            out[key] = v
    return out


def _branches(output: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    out = {}
    for space in ("homo", "hetero"):
        heads = output.get(f"heads/{space}")  # (B, 3), order l, v, a
        if heads is not None:
            out[space] = {m: float(heads[0, i]) for i, m in enumerate(_BRANCH_MODALITIES)}
    return out


def _edges(output: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    out = {}
    for space in ("homo", "hetero"):
        edges = output.get(f"edges/{space}")  # (B, 6)
        if edges is not None:
            out[space] = {name: float(edges[0, j]) for j, name in enumerate(EDGE_NAMES)}
    return out


def cached_export(checkpoint: str | Path) -> Path:
    """The ONNX export of ``checkpoint`` in the cache (``<cache>/onnx/<SHA-256 of the file>.onnx``), made once."""
    import hashlib

    from emodistill.data.synth import default_cache_dir
    from emodistill.inference.export import export_onnx

    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    path = default_cache_dir() / "onnx" / f"{digest}.onnx"
    if not path.is_file():
        export_onnx(checkpoint, path)
    return path
