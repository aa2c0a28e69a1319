"""Typed, validated in-memory form of an MMSA feature file (what the rest of the package sees)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emodistill.spec import DatasetSpec

SPLITS: tuple[str, str, str] = ("train", "valid", "test")


class DataValidationError(ValueError):
    """A feature file breaks the MMSA schema; the one-line message names file, split, key, expected
    and found."""


@dataclass
class SplitData:
    """One split of an MMSA file, features cast to float32.

    Attributes:
        name: ``"train"``, ``"valid"`` or ``"test"``.
        text: (N, T_l, D_l) BERT token features, zero-padded.
        text_bert: (N, 3, T_l) stacked ``[input_ids, input_mask, segment_ids]`` or None.
        audio: (N, T_a, D_a) acoustic frames.
        vision: (N, T_v, D_v) visual frames.
        audio_lengths: (N,) int64 true audio lengths, None for aligned files.
        vision_lengths: (N,) int64 true vision lengths, None for aligned files.
        labels: (N,) float32 ``regression_labels``.
        ids: N clip ids ``"{video_id}$_${clip_id}"``.
        raw_text: N transcripts.
        unimodal_labels: ``{"T", "A", "V"}`` -> (N,) float32 for SIMS, else empty.
        concepts: (N, C) float32 strength of each planted concept in each clip (the ``synth-concepts``
            generator's optional ``concepts`` key; 0 = absent), else None. Only the interpretability
            measures read it; no model sees it.
    """

    name: str
    text: np.ndarray
    text_bert: np.ndarray | None
    audio: np.ndarray
    vision: np.ndarray
    audio_lengths: np.ndarray | None
    vision_lengths: np.ndarray | None
    labels: np.ndarray
    ids: list[str]
    raw_text: list[str]
    unimodal_labels: dict[str, np.ndarray] = field(default_factory=dict)
    concepts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def text_lengths(self) -> np.ndarray:
        """(N,) int64 number of real text tokens: the ``text_bert`` mask row sum when present, else the
        count of non-zero rows of ``text``."""
        if self.text_bert is not None:
            return self.text_bert[:, 1].sum(axis=1).round().astype(np.int64)
        return np.any(self.text != 0, axis=2).sum(axis=1).astype(np.int64)


@dataclass
class MMSAData:
    """A loaded, validated MMSA-format data set.

    Attributes:
        path: the file read (None if built in memory).
        splits: ``{"train", "valid", "test"}`` -> :class:`SplitData`.
        spec: shapes and label conventions derived from the arrays.
        sha256: hex SHA-256 of the file (None if built in memory).
        hash_status: e.g. ``"match (MOSI/Processed/aligned_50.pkl)"`` or
            ``"unknown (not a published MMSA file)"``.
        notes: what the reader changed or noticed, e.g. ``"train/audio: 12 -inf values set to 0"``.
        extract_config: the record of ``emodistill extract`` (feature settings, names, normalisation) for a
            data set it made, else None; training stores it in checkpoints for ``predict``.
    """

    path: Path | None
    splits: dict[str, SplitData]
    spec: DatasetSpec
    sha256: str | None = None
    hash_status: str = "unknown (not a published MMSA file)"
    notes: list[str] = field(default_factory=list)
    extract_config: dict | None = None

    @property
    def train(self) -> SplitData:
        return self.splits["train"]

    @property
    def valid(self) -> SplitData:
        return self.splits["valid"]

    @property
    def test(self) -> SplitData:
        return self.splits["test"]
