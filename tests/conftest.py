"""Shared fixtures: tiny MMSA-format pickles written to tmp_path, and a per-session synth cache."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SPLITS = ("train", "valid", "test")


def write_mmsa_pickle(
    path: str | Path,
    *,
    n: tuple[int, int, int] = (12, 4, 4),
    aligned: bool = True,
    dims: tuple[int, int, int] = (16, 4, 6),
    lens: tuple[int, int, int] = (8, 10, 12),
    sims: bool = False,
    seed: int = 0,
    mutate: Callable[[dict], None] | None = None,
    protocol: int = 4,
) -> Path:
    """Write a small file in MMSA's pickle schema (docs/mmsa.md §2) and return its path.

    Args:
        n: samples per split (train, valid, test).
        aligned: no ``*_lengths`` keys and T = ``lens[0]`` for every modality, as MMSA's aligned files.
        dims: feature dims (D_l, D_a, D_v); (768, 5, 20) looks like MOSI, (768, 33, 709) like SIMS.
        lens: padded lengths (T_l, T_a, T_v); audio/vision ignored when aligned.
        sims: labels in [-1, 1] plus ``regression_labels_{T,A,V}``.
        mutate: called with the dict before pickling, to break the schema on purpose.
    """
    rng = np.random.default_rng(seed)
    d_l, d_a, d_v = dims
    t_l, t_a, t_v = (lens[0],) * 3 if aligned else lens
    data, offset = {}, 0
    for split, count in zip(SPLITS, n, strict=True):
        l_t = rng.integers(3, t_l + 1, count)  # true token counts incl. [CLS]/[SEP]
        steps = np.arange(t_l)[None, :]
        mask = (steps < l_t[:, None]).astype(np.float32)  # (N, T_l)
        text = rng.standard_normal((count, t_l, d_l)).astype(np.float32) * mask[..., None]
        ids = np.where(mask > 0, rng.integers(1000, 2000, (count, t_l)), 0)
        text_bert = np.stack([ids, mask, np.zeros_like(mask)], axis=1).astype(np.float32)  # (N, 3, T_l)
        lo = -1.0 if sims else -3.0
        labels = np.round(rng.uniform(lo, -lo, count) * 3) / 3
        d = {
            "raw_text": np.array([f"clip {offset + i} says something" for i in range(count)], dtype=object),
            "text": text,
            "text_bert": text_bert,
            "id": np.array(
                [f"vid{(offset + i) // 3:03d}$_${(offset + i) % 3}" for i in range(count)], dtype=object
            ),
            "annotations": np.array(["Neutral"] * count, dtype=object),
            "classification_labels": np.ones(count, dtype=np.float32),
            "regression_labels": labels.astype(np.float32),
        }
        if aligned:
            # Aligned files put audio/vision on the word timeline: zero beyond the text length.
            d["audio"] = rng.standard_normal((count, t_l, d_a)).astype(np.float32) * mask[..., None]
            d["vision"] = rng.standard_normal((count, t_l, d_v)).astype(np.float32) * mask[..., None]
        else:
            for mod, t, dim in (("audio", t_a, d_a), ("vision", t_v, d_v)):
                length = rng.integers(1, t + 1, count)
                valid = (np.arange(t)[None, :] < length[:, None])[..., None]
                d[mod] = rng.standard_normal((count, t, dim)).astype(np.float32) * valid
                d[f"{mod}_lengths"] = length.astype(np.int64)
        if sims:
            for m in "TAV":
                d[f"regression_labels_{m}"] = (np.round(rng.uniform(-1, 1, count) * 5) / 5).astype(np.float32)
        data[split] = d
        offset += count
    if mutate is not None:
        mutate(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.fixture
def mmsa_writer(tmp_path: Path) -> Callable[..., Path]:
    """``mmsa_writer(name="x.pkl", **kw)`` writes ``tmp_path / name`` with :func:`write_mmsa_pickle`."""

    def write(name: str = "data.pkl", **kwargs) -> Path:
        return write_mmsa_pickle(tmp_path / name, **kwargs)

    return write


@pytest.fixture
def aligned_pkl(tmp_path: Path) -> Path:
    """MOSI-like aligned file (dims 768/5/20, T = 8 for every modality)."""
    return write_mmsa_pickle(tmp_path / "aligned.pkl", dims=(768, 5, 20), aligned=True)


@pytest.fixture
def unaligned_pkl(tmp_path: Path) -> Path:
    """MOSI-like unaligned file with true lengths (T_l 8, T_a 10, T_v 12)."""
    return write_mmsa_pickle(tmp_path / "unaligned.pkl", dims=(768, 5, 20), aligned=False)


@pytest.fixture
def sims_pkl(tmp_path: Path) -> Path:
    """SIMS-like unaligned file: dims 768/33/709, labels in [-1, 1], unimodal labels T/A/V."""
    return write_mmsa_pickle(tmp_path / "sims.pkl", dims=(768, 33, 709), aligned=False, sims=True)


@pytest.fixture(scope="session", autouse=True)
def emodistill_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``EMODISTILL_CACHE`` at a per-session dir: synthetic data are generated at most once per
    session, never written to the user's cache, and deleted afterwards (the default set is ~340 MB)."""
    cache = tmp_path_factory.mktemp("emodistill_cache")
    old = os.environ.get("EMODISTILL_CACHE")
    os.environ["EMODISTILL_CACHE"] = str(cache)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)
    if old is None:
        os.environ.pop("EMODISTILL_CACHE", None)
    else:
        os.environ["EMODISTILL_CACHE"] = old


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight short talking-face videos, bad videos and their labels (tests/video_clips.py)."""
    pytest.importorskip("av", reason="the video extra is part of the test set-up")
    from video_clips import build_media

    return build_media(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def extracted(media_dir: Path) -> Path:
    """The MMSA pickle ``emodistill extract`` makes of ``media_dir``'s clips."""
    from video_clips import extract_media

    return extract_media(media_dir)


@pytest.fixture(scope="session")
def trained(extracted: Path, media_dir: Path) -> Path:
    """``best.ckpt`` of a tiny DMD trained for 2 epochs on ``extracted``."""
    from video_clips import train_tiny

    return train_tiny(extracted, media_dir)
