"""Helpers shared by the readers of raw feature releases (UR-FUNNY, MUStARD).

Those releases store one variable-length sequence per clip; DMD needs fixed lengths, so the readers
pad or shorten every sequence to a length T and record the true lengths. The rules live here so that
both readers (and their tests) use the same ones:

* padding is on the right with zeros (as MMSA's files; ``steps < length`` are the real ones);
* ``"head"`` shortening keeps the first T steps (BERT tokens, words);
* ``"uniform"`` shortening keeps T evenly spread steps: step ``floor((j + 1/2) n / T)`` for
  ``j = 0 .. T-1``, the centre of the j-th of T equal bins (video frames, audio segments), so the
  whole clip stays covered.

Errors are :class:`~emodistill.data.types.DataValidationError` with one line naming the file, the
clip id and the key, and what was expected and found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data.types import DataValidationError

SHORTEN_MODES: tuple[str, str] = ("head", "uniform")


def fail(path: Path | str, what: str, *, clip: Any = None, key: str | None = None) -> DataValidationError:
    """One-line validation error ``"{path}: id '{clip}' key '{key}': {what}"``."""
    where = " ".join(p for p in (f"id '{clip}'" if clip is not None else "", f"key '{key}'" if key else "") if p)
    return DataValidationError(f"{path}: {where + ': ' if where else ''}{what}")


def missing_files(root: Path, expected: dict[str, str]) -> list[str]:
    """``["name (what it holds)", ...]`` for each relative path of ``expected`` absent under ``root``."""
    return [f"{name} ({what})" for name, what in expected.items() if not (root / name).is_file()]


def preview(items: Iterable[Any], limit: int = 5) -> str:
    """``"'a', 'b', 'c' (and 7 more)"`` for error messages."""
    items = list(items)
    head = ", ".join(repr(str(x)) for x in items[:limit])
    return head + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def shorten_index(n: int, t: int, mode: str) -> np.ndarray:
    """Indices of the ``min(n, t)`` steps kept from a length-``n`` sequence (see module docstring)."""
    if mode not in SHORTEN_MODES:
        raise ValueError(f"shorten mode {mode!r}; expected one of {list(SHORTEN_MODES)}")
    if n <= t:
        return np.arange(n)
    if mode == "head":
        return np.arange(t)
    return ((np.arange(t) + 0.5) * n / t).astype(np.int64)  # floor of bin centres; strictly increasing


def fit_length(seq: np.ndarray, t: int, mode: str, out: np.ndarray) -> int:
    """Write ``seq`` (n, D), shortened to at most ``t`` steps by ``mode``, into ``out[:k]``, k = min(n, t).

    ``out`` (t, D) must already hold zeros (the padding). Returns k, the true length.
    """
    keep = shorten_index(len(seq), t, mode)
    out[: len(keep)] = seq[keep]
    return len(keep)


def as_matrix(value: Any, path: Path | str, clip: Any, key: str, dim: int | None = None) -> np.ndarray:
    """``value`` (a list of rows or an array) as float32 (n, D); an empty value is (0, dim or 0).

    Raises DataValidationError when it is not rectangular or its width differs from ``dim``.
    """
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise fail(path, f"expected a (words, features) number array, found {type(value).__name__} ({err})",
                   clip=clip, key=key) from None
    if arr.size == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if arr.ndim != 2:
        raise fail(path, f"expected a 2-D (steps, features) array, found shape {arr.shape}", clip=clip, key=key)
    if dim is not None and arr.shape[1] != dim:
        raise fail(path, f"expected {dim} features per step (as in the other clips), found {arr.shape[1]}",
                   clip=clip, key=key)
    return arr


def binary_label(value: Any, path: Path | str, clip: Any, key: str) -> float:
    """A 0/1 label from ``True``/``False``, 0/1 or 0.0/1.0 (numpy scalars too); anything else raises."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, str) or number not in (0.0, 1.0):
        raise fail(path, f"expected a binary label (0/1 or true/false), found {value!r}", clip=clip, key=key)
    return number


def check_finite(
    arr: np.ndarray, path: Path | str, key: str, ids: Sequence[str], *, replace: bool, notes: list[str],
    neg_inf_to_zero: bool = False,
) -> None:
    """Apply the MMSA reader's policy to (N, T, D) features, in place.

    ``-inf`` is set to 0 (and noted) when ``neg_inf_to_zero`` (COVAREP writes it for silent frames, and
    MMSA's loader zeroes it); other NaN/inf raise, naming the first clip, unless ``replace`` (then 0,
    noted).
    """
    if np.isfinite(arr.sum(dtype=np.float64)):  # exact: a float64 sum of float32 values cannot overflow
        return
    if neg_inf_to_zero:
        neg_inf = np.isneginf(arr)
        if neg_inf.any():
            arr[neg_inf] = 0.0
            notes.append(f"{key}: {int(neg_inf.sum())} -inf values set to 0 (as MMSA's loader does for audio)")
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count == 0:
        return
    nan = int(np.isnan(arr).sum())
    first = ids[int(np.argmax(bad.reshape(len(arr), -1).any(axis=1)))]
    if not replace:
        raise fail(path, f"expected finite values, found {count} non-finite ({nan} NaN, {count - nan} inf); "
                   "pass replace_nonfinite=True to set them to 0", clip=first, key=key)
    arr[bad] = 0.0
    notes.append(f"{key}: {count} non-finite values ({nan} NaN, {count - nan} inf) set to 0 (replace_nonfinite)")


def carve_validation(
    pool: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``pool`` (row indices) into (train, valid), stratified by label and seeded.

    For each class c (ascending), its members of ``pool`` are permuted by one
    ``np.random.default_rng(seed)`` stream and the first ``floor(fraction * n_c + 1/2)`` go to valid.
    Both outputs are sorted, so the result depends only on (pool, labels, fraction, seed).

    Args:
        pool: (P,) candidate row indices.
        labels: labels of all rows (indexed by ``pool``'s values).
        fraction: share of each class held out, in (0, 1).
        seed: seed of the permutation.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"valid_fraction={fraction} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        k = int(np.floor(fraction * len(members) + 0.5))
        valid.append(members[rng.permutation(len(members))[:k]])
    valid_idx = np.sort(np.concatenate(valid)) if valid else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(pool, valid_idx)  # sorted
    return train_idx.astype(np.int64), valid_idx.astype(np.int64)
