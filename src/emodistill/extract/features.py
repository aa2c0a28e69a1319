"""From raw clip features to model-ready sequences: alignment, normalisation, padding.

Shared by the data set builder and the predictor, so a new video is turned into exactly what the
model saw in training.

Normalisation (``normalize: true``): every audio and vision column is z-scored with the mean and
standard deviation of the train split's *valid* rows (audio: every frame; vision: frames with a face;
aligned: rows of real tokens). The statistics are stored with the data set. Rows that carry no data
(vision frames without a face, padding, special tokens) stay exactly 0, which after z-scoring is the
training mean, and the ``face_present`` column (never normalised, like every 0/1 flag column) tells
them apart from a real average face.
"""

from __future__ import annotations

import numpy as np

from emodistill.extract.align import to_tokens, word_means
from emodistill.extract.clip import ClipFeatures

FLAG_COLUMNS = ("face_present", "voiced")
"""0/1 indicator columns: kept as they are by the normalisation."""


def sequences(clip: ClipFeatures, aligned: bool) -> dict[str, np.ndarray]:
    """The clip's audio/vision sequences and which rows carry data.

    Returns:
        ``{"audio": (T_a, D_a), "vision": (T_v, D_v), "audio_valid": (T_a,) bool, "vision_valid": (T_v,) bool}``;
        aligned: both have the text length L (one row per token).
    """
    if aligned:
        tokens = clip.word_index >= 0  # (L,)
        audio = to_tokens(word_means(clip.audio, clip.audio_times, clip.words), clip.word_index)
        vision_words = word_means(clip.vision, clip.vision_times, clip.words, valid=clip.face_present)
        vision = to_tokens(vision_words, clip.word_index)
        return {"audio": audio, "vision": vision, "audio_valid": tokens, "vision_valid": tokens & (vision != 0).any(1)}
    return {
        "audio": clip.audio,
        "vision": clip.vision,
        "audio_valid": np.ones(len(clip.audio), dtype=bool),
        "vision_valid": clip.face_present.copy(),
    }


def fit_normalization(rows: list[np.ndarray], valid: list[np.ndarray], names: list[str]) -> dict[str, list[float]]:
    """Mean and std per column over the valid rows of the train clips (flag columns: 0 and 1).

    Args:
        rows: per clip (T_i, D).
        valid: per clip (T_i,) bool.
        names: the D column names.
    """
    stacked = np.concatenate([r[v] for r, v in zip(rows, valid, strict=True)], axis=0).astype(np.float64)  # (ΣT, D)
    if len(stacked) == 0:
        mean, std = np.zeros(len(names)), np.ones(len(names))
    else:
        mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)  # constant columns: centred, not blown up
    for j, name in enumerate(names):
        if name in FLAG_COLUMNS:
            mean[j], std[j] = 0.0, 1.0
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}


def normalize(x: np.ndarray, valid: np.ndarray, stats: dict[str, list[float]] | None) -> np.ndarray:
    """(T, D) -> (T, D) float32: valid rows z-scored with ``stats`` (None: unchanged), other rows 0."""
    out = np.zeros_like(x, dtype=np.float32)
    if stats is None:
        out[valid] = x[valid]
        return out
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    if mean.shape[0] != x.shape[1]:
        raise ValueError(f"normalisation has {mean.shape[0]} columns, the features have {x.shape[1]}")
    out[valid] = ((x[valid] - mean) / std).astype(np.float32)
    return out


def pad(x: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """(T, D) -> ((length, D) zero-padded or truncated, the kept true length min(T, length))."""
    out = np.zeros((length, x.shape[1]), dtype=np.float32)
    n = min(len(x), length)
    out[:n] = x[:n]
    return out, n
