"""``emodistill extract``: a folder of videos plus a labels CSV -> an MMSA-schema pickle ``train`` reads.

Output, beside ``OUT.pkl``::

    OUT.pkl              {"train"|"valid"|"test": MMSA split dict, "config": the extraction record}
    OUT.manifest.json    resolved config, library versions, counts, feature names, failures
    OUT.errors.csv       one row per video that failed, with its reason (only when some failed)
    OUT.cache/           one .npz per finished video, so an interrupted run resumes where it stopped

Sample order is the CSV's row order within each split, whatever the number of workers. A video that
fails is never dropped silently: it is listed in the errors file and the command fails (nothing is
written but the errors file and the cache) unless ``skip_failures`` is set, in which case the manifest
and the summary count what was left out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import pickle
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.extract.clip import ClipExtractor, ClipFeatures
from emodistill.extract.config import FORMAT, ExtractConfig
from emodistill.extract.errors import ExtractError, MissingExtraError
from emodistill.extract.features import fit_normalization, normalize, pad, sequences
from emodistill.extract.labels import ClipJob, read_labels
from emodistill.io import atomic_write
from emodistill.spec import FRAME_MODALITIES, LABEL_SUFFIXES

SPLITS = ("train", "valid", "test")
_VERSIONED = ("numpy", "torch", "av", "librosa", "mediapipe", "cv2", "transformers", "faster_whisper", "opensmile")


class ExtractionFailed(RuntimeError):
    """Some videos failed and failures were not to be skipped; the message names the errors file."""


@dataclass
class ExtractSummary:
    output: Path
    counts: dict[str, int]
    failed: int
    cached: int
    seconds: float
    errors_file: Path | None


def extract_dataset(
    videos_dir: str | Path,
    labels_csv: str | Path,
    output: str | Path,
    cfg: ExtractConfig | None = None,
    *,
    workers: int = 1,
    skip_failures: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every video in ``labels_csv`` and write the data set (see the module docstring).

    Raises:
        ExtractionFailed: a video failed and ``skip_failures`` is False (errors file written).
        ValueError / FileNotFoundError: a bad labels file or config (nothing written).
    """
    t_start = time.perf_counter()
    cfg = cfg or ExtractConfig()
    output = Path(output)
    jobs = read_labels(labels_csv, videos_dir)
    cache = Path(cache_dir) if cache_dir is not None else output.with_suffix(".cache")
    cache.mkdir(parents=True, exist_ok=True)
    keys = [_cache_key(job, cfg) for job in jobs]
    todo = [(job, cache / f"{key}.npz") for job, key in zip(jobs, keys, strict=True)]
    pending = [(job, path) for job, path in todo if not path.is_file()]
    errors: dict[int, str] = {}
    for index, reason in _run(pending, cfg, workers, progress, n_total=len(jobs)):
        errors[index] = reason
    errors_file = output.with_name(output.stem + ".errors.csv")
    if errors:
        _write_errors(errors_file, jobs, errors)
        if not skip_failures:
            raise ExtractionFailed(
                f"{len(errors)} of {len(jobs)} videos failed, see {errors_file}; finished videos are cached in "
                f"{cache}, so a re-run redoes only the failed ones (or pass --skip-failures to leave them out)"
            )
    else:
        errors_file.unlink(missing_ok=True)
    done = [(job, ClipFeatures.load(path)) for job, path in todo if job.index not in errors]
    data, record = assemble(done, cfg)
    record["manifest"] = {
        "labels": str(labels_csv),
        "labels_sha256": hashlib.sha256(Path(labels_csv).read_bytes()).hexdigest(),
        "failed": [{"clip_id": jobs[i].clip_id, "video": str(jobs[i].video), "reason": r} for i, r in errors.items()],
    }
    data["config"] = record
    atomic_write(output, lambda tmp: tmp.write_bytes(pickle.dumps(data, protocol=4)))
    manifest = {**record, "versions": library_versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "workers": workers, "cached": len(jobs) - len(pending)}
    manifest_text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(output.with_name(output.stem + ".manifest.json"), lambda tmp: tmp.write_text(manifest_text))
    return ExtractSummary(
        output=output,
        counts={s: sum(1 for job, _ in done if job.split == s) for s in SPLITS},
        failed=len(errors),
        cached=len(jobs) - len(pending),
        seconds=time.perf_counter() - t_start,
        errors_file=errors_file if errors else None,
    )


def assemble(done: list[tuple[ClipJob, ClipFeatures]], cfg: ExtractConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Normalise, pad and stack clips into MMSA split dicts; returns ``(splits, extraction record)``."""
    by_split = {s: [(j, c) for j, c in done if j.split == s] for s in SPLITS}
    empty = [s for s in SPLITS if not by_split[s]]
    if empty:
        raise ValueError(f"split(s) {empty} have no clips (after failures); train needs train, valid and test")
    seqs = {id(c): sequences(c, cfg.aligned) for _, c in done}
    stats = None
    if cfg.normalize:
        train = [seqs[id(c)] for _, c in by_split["train"]]
        stats = {m: fit_normalization([s[m] for s in train], [s[f"{m}_valid"] for s in train], done[0][1].names(m))
                 for m in FRAME_MODALITIES}
    first = done[0][1]
    L = first.text.shape[0]
    if cfg.aligned:
        lens = dict.fromkeys(FRAME_MODALITIES, L)
    else:
        lens = {m: getattr(cfg, f"{m}_max_frames") or max(len(seqs[id(c)][m]) for _, c in done)
                for m in FRAME_MODALITIES}
    splits = {s: _split_dict(by_split[s], seqs, stats, lens, cfg.aligned) for s in SPLITS}
    record = {
        "format": FORMAT,
        "extract": cfg.to_dict(),
        "feature_names": {m: first.names(m) for m in FRAME_MODALITIES},
        "text_dim": int(first.text.shape[1]),
        "seq_lens": {"text": int(L), **{m: int(n) for m, n in lens.items()}},
        "normalization": stats,
    }
    return splits, record


def _split_dict(items, seqs, stats, lens, aligned: bool) -> dict[str, Any]:
    out: dict[str, list] = {k: [] for m in FRAME_MODALITIES for k in (m, f"{m}_lengths")}
    for _, clip in items:
        s = seqs[id(clip)]
        for m in FRAME_MODALITIES:
            x = normalize(s[m], s[f"{m}_valid"], stats[m] if stats else None)
            padded, n = pad(x, lens[m])
            out[m].append(padded)
            out[f"{m}_lengths"].append(n)
    d: dict[str, Any] = {
        "id": np.array([j.clip_id for j, _ in items], dtype=object),
        "raw_text": np.array([c.transcript for _, c in items], dtype=object),
        "text": np.stack([c.text for _, c in items]).astype(np.float32),  # (N, L, D_t)
        "text_bert": np.stack([c.text_bert for _, c in items]).astype(np.float32),  # (N, 3, L)
        "audio": np.stack(out["audio"]),  # (N, T_a, D_a)
        "vision": np.stack(out["vision"]),  # (N, T_v, D_v)
        "regression_labels": np.array([j.label for j, _ in items], dtype=np.float32),
    }
    if not aligned:
        d["audio_lengths"] = np.array(out["audio_lengths"], dtype=np.int64)
        d["vision_lengths"] = np.array(out["vision_lengths"], dtype=np.int64)
    for m in LABEL_SUFFIXES.values():  # T, A, V
        if all(m in j.unimodal for j, _ in items):
            d[f"regression_labels_{m}"] = np.array([j.unimodal[m] for j, _ in items], dtype=np.float32)
    return d


def _cache_key(job: ClipJob, cfg: ExtractConfig) -> str:
    """Changes when the video file, its transcript or timing file, or a feature setting changes."""
    h = hashlib.sha256(cfg.fingerprint().encode())
    for path in (job.video, job.timing):
        if path is not None and path.is_file():
            st = path.stat()
            h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        else:
            h.update(f"{path}|missing".encode())
    h.update(job.transcript.encode())
    return h.hexdigest()[:32]


# --- running the clips: in-process or in a spawn pool; results land in the cache ---------------------

_WORKER: ClipExtractor | None = None


def _init_worker(cfg_dict: dict) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)  # N workers on N cores: one thread each, no oversubscription
    _WORKER = ClipExtractor(ExtractConfig.from_dict(cfg_dict))


def _extract_one(job: ClipJob, path: Path, extractor: ClipExtractor | None = None) -> tuple[int, str | None]:
    """(row index, None on success or the failure reason); the features go to ``path``."""
    extractor = extractor or _WORKER
    _warm(extractor)  # outside the per-video try: a model that cannot load stops the run, it is no video's fault
    try:
        clip = extractor(job.video, transcript=job.transcript, timing_file=job.timing)
    except ExtractError as e:
        return job.index, str(e)
    except MissingExtraError:
        raise  # a set-up problem, not a property of this video: stop everything
    except Exception as e:  # a library failing on one odd file must not end a long extraction
        return job.index, f"{type(e).__name__}: {e}"
    clip.save(path)
    return job.index, None


def _run(pending, cfg: ExtractConfig, workers: int, progress: bool, n_total: int):
    """Yield ``(row index, reason)`` for every failed video among ``pending``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=n_total, initial=n_total - len(pending), unit="video", disable=not progress, desc="extract")
    try:
        if workers <= 1 or len(pending) <= 1:
            with ClipExtractor(cfg) as extractor:
                _warm(extractor)
                for job, path in pending:
                    index, reason = _extract_one(job, path, extractor)
                    bar.update(1)
                    if reason is not None:
                        yield index, reason
            return
        ctx = multiprocessing.get_context("spawn")  # fork would copy torch/mediapipe thread state
        with ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(cfg.to_dict(),)) as pool:
            futures = [pool.submit(_extract_one, job, path) for job, path in pending]
            for future in as_completed(futures):
                index, reason = future.result()
                bar.update(1)
                if reason is not None:
                    yield index, reason
    finally:
        bar.close()


def _warm(extractor: ClipExtractor) -> None:
    """Load every model before the first clip, so a set-up error stops the run instead of failing each video."""
    _ = extractor.audio, extractor.vision, extractor.text
    if extractor.cfg.asr.model is not None:
        _ = extractor.asr


def _write_errors(path: Path, jobs: list[ClipJob], errors: dict[int, str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["clip_id", "video", "split", "reason"])
    for i in sorted(errors):
        writer.writerow([jobs[i].clip_id, jobs[i].video, jobs[i].split, errors[i]])
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))


def library_versions() -> dict[str, str]:
    """Versions of Python and of every feature library importable here (what the features depend on)."""
    from importlib import import_module

    out = {"python": platform.python_version()}
    try:
        from emodistill import __version__

        out["emodistill"] = __version__
    except ImportError:  # pragma: no cover
        pass
    for name in _VERSIONED:
        try:
            out[name] = str(getattr(import_module(name), "__version__", "unknown"))
        except ImportError:
            continue
    return out

