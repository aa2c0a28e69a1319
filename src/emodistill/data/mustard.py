"""Reader for MUStARD's released utterance features (multimodal sarcasm detection, binary labels).

Castro, Hazarika, Pérez-Rosas, Zimmermann, Mihalcea and Poria, "Towards Multimodal Sarcasm Detection
(An _Obviously_ Perfect Paper)", ACL 2019, https://aclanthology.org/P19-1455.
Release and format: https://github.com/soujanyaporia/MUStARD (README and ``data_loader.py``; the
feature files are hosted at https://huggingface.co/datasets/MichiganNLP/MUStARD). This module is the
only place that knows the layout.

Expected files, relative to one directory (MUStARD's ``data/`` folder)::

    sarcasm_data.json          {id: {"utterance": str, "speaker": str, "context": [str, ...],
                                     "context_speakers": [str, ...], "show": str, "sarcasm": bool}}
                               690 utterances; the file's key order is the row order of the others
    bert-output.jsonl          one JSON line per utterance, in that order, as written by BERT's
                               extract_features.py (BERT-base uncased, --layers=-1,-2,-3,-4):
                               {"linex_index": i, "features": [{"token": "[CLS]",
                                 "layers": [{"index": -1, "values": [768 floats]}, ...]}, ...]}
    audio_features.p           pickle {id: (283, S) float array}: librosa MFCC 13 + delta 13 + mel 128
                               + mel delta 128 + spectral centroid 1, averaged over S ~ 11 segments;
                               note the (features, segments) order
    features/utterances_final/resnet_pool5.hdf5
                               HDF5, one dataset per id: (frames, 2048) ResNet-152 pool5 features
    split_indices.p            pickle [(train_rows, test_rows)] * 5, the official 5 speaker-dependent
                               folds (rows of sarcasm_data.json); only read when ``split="fold"``

Context features (``bert-output-context.jsonl``, ``features/context_final``) are not read: the
release has no audio for the context, and MUStARD's own baselines default to the utterance alone.
Pickles are opened with :func:`~emodistill.data.safe_pickle.safe_load` (they cannot run code); h5py
(extra ``emodistill[mustard]``) is imported only here.

Conventions decided here:

* **Features.** Text is one 768-d vector per BERT token (``[CLS]`` and ``[SEP]`` included): the mean
  of the layers in the file, as ``data_loader.py`` averages them for its ``[CLS]`` vector. Audio is
  transposed to (S, 283). Every modality is right-padded with zeros to a fixed length; a longer
  sequence keeps its first ``text_len`` tokens, and ``audio_len`` / ``vision_len`` evenly spread
  segments / frames (see :mod:`emodistill.data.release`). A length of None means the longest clip of
  the whole data set (the same for every split and fold). True lengths are kept.
* **Splits.** MUStARD has no train/valid/test split. ``split="speaker_independent"`` (default) is
  the paper's speaker-independent setting as ``data_loader.py`` builds it: test = every utterance of
  the show ``test_show`` ("FRIENDS", 356 utterances), train = the other shows (334). (That function's
  docstring says the test show is TBBT; its code, which produced the published numbers, holds out
  FRIENDS.)
  ``split="fold"`` uses fold ``fold`` (1-5) of ``split_indices.p`` (speaker-dependent 5-fold CV).
  In both, ``valid_fraction`` of the training rows of each label, chosen by a permutation seeded with
  ``seed``, becomes the validation split (:func:`~emodistill.data.release.carve_validation`).
* **Validation** as the MMSA reader: missing files, ids missing from a modality, line counts,
  feature widths, labels other than true/false/0/1 and non-finite values (raise unless
  ``replace_nonfinite``) each raise a one-line error naming the file, id and key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data.release import (
    as_matrix,
    binary_label,
    carve_validation,
    check_finite,
    fail,
    fit_length,
    missing_files,
    preview,
)
from emodistill.data.safe_pickle import safe_load
from emodistill.data.types import SPLITS, MMSAData, SplitData
from emodistill.spec import BINARY_LABEL_RANGE, DatasetSpec

VIDEO_FILE = "features/utterances_final/resnet_pool5.hdf5"
FILES: dict[str, str] = {
    "sarcasm_data.json": "utterances, speakers, shows and sarcasm labels",
    "bert-output.jsonl": "BERT token features of each utterance (MUStARD's BERT_text_features.zip)",
    "audio_features.p": "librosa audio features of each utterance",
    VIDEO_FILE: "ResNet-152 pool5 frame features of each utterance (MUStARD's features/ folder)",
}
"""The MUStARD files this reader always needs, with what each holds."""
FOLDS_FILE = "split_indices.p"
SPLIT_MODES: tuple[str, str] = ("speaker_independent", "fold")
_SHORTEN = {"text": "head", "audio": "uniform", "vision": "uniform"}  # see emodistill.data.release


def is_mustard_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding MUStARD's ``sarcasm_data.json``."""
    return (Path(path) / "sarcasm_data.json").is_file()


def load_mustard(
    root: str | Path,
    *,
    split: str = "speaker_independent",
    fold: int = 1,
    test_show: str = "FRIENDS",
    valid_fraction: float = 0.1,
    seed: int = 0,
    text_len: int | None = None,
    audio_len: int | None = None,
    vision_len: int | None = 100,
    replace_nonfinite: bool = False,
) -> MMSAData:
    """Read and validate MUStARD's utterance features in ``root``.

    Args:
        root: MUStARD's ``data/`` directory (see the module docstring for the files).
        split: ``"speaker_independent"`` (test = show ``test_show``) or ``"fold"``.
        fold: which of the 5 folds of ``split_indices.p`` is the test split (1-5), for ``split="fold"``.
        test_show: the held-out show of the speaker-independent split.
        valid_fraction: share of each label's training rows held out for validation, in (0, 1).
        seed: seed of the validation carve-out.
        text_len: tokens kept per utterance (None: the longest utterance).
        audio_len: audio segments kept (None: the most of any utterance).
        vision_len: video frames kept, evenly spread (None: the most of any utterance).
        replace_nonfinite: set NaN/inf features to 0 (noted) instead of raising.

    Returns:
        train/valid/test splits: text (N, T_l, 768), audio (N, T_a, 283), vision (N, T_v, 2048), true
        lengths, 0/1 labels, and a binary-task :class:`DatasetSpec` named ``mustard``.

    Raises:
        FileNotFoundError: ``root`` is not a directory or lacks a file.
        ImportError: h5py is not installed.
        DataValidationError: a file breaks the layout (one line naming file, id, key, expected, found).
    """
    root = Path(root)
    if split not in SPLIT_MODES:
        raise ValueError(f"split={split!r}; expected one of {list(SPLIT_MODES)}")
    for name, value in (("text_len", text_len), ("audio_len", audio_len), ("vision_len", vision_len)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be >= 1 or None")
    if not root.is_dir():
        raise FileNotFoundError(f"MUStARD: {root} is not a directory (expected MUStARD's data/ folder)")
    needed = dict(FILES, **({FOLDS_FILE: "the 5 speaker-dependent folds (split='fold')"} if split == "fold" else {}))
    missing = missing_files(root, needed)
    if missing:
        raise FileNotFoundError(f"MUStARD: {root} lacks {'; '.join(missing)}")

    meta = _read_meta(root / "sarcasm_data.json")
    ids = list(meta)
    labels = np.array([binary_label(meta[c]["sarcasm"], root / "sarcasm_data.json", c, "sarcasm") for c in ids],
                      dtype=np.float32)
    seqs = {
        "text": _read_bert(root / "bert-output.jsonl", ids),
        "audio": _read_audio(root / "audio_features.p", ids),
        "vision": _read_video(root / VIDEO_FILE, ids),
    }
    train_rows, valid_rows, test_rows = _split_rows(root, meta, labels, split, fold, test_show, valid_fraction, seed)
    lens = {"text": text_len, "audio": audio_len, "vision": vision_len}
    lens = {m: int(t) if t is not None else max(len(x) for x in seqs[m]) for m, t in lens.items()}
    notes: list[str] = []
    splits = {
        name: _build_split(root, name, rows, ids, meta, labels, seqs, lens, replace_nonfinite, notes)
        for name, rows in zip(SPLITS, (train_rows, valid_rows, test_rows), strict=True)
    }
    for m in seqs:
        longer = sum(len(x) > lens[m] for x in seqs[m])
        if longer:
            notes.append(f"{m}: {longer} utterances longer than {lens[m]} were shortened ({_SHORTEN[m]})")
    spec = DatasetSpec(
        name="mustard",
        aligned=False,
        feature_dims={m: int(seqs[m][0].shape[1]) for m in seqs},
        seq_lens=lens,
        label_range=BINARY_LABEL_RANGE,
        has_text_bert=False,
        # exactly the keyword arguments that rebuild these splits and shapes (see data.reader_options)
        extra={"reader": "mustard", "split": split, **({"fold": fold} if split == "fold" else {"test_show": test_show}),
               "valid_fraction": valid_fraction, "seed": seed, **{f"{m}_len": t for m, t in lens.items()}},
        task="binary",
    )
    return MMSAData(path=root, splits=splits, spec=spec, sha256=None,
                    hash_status="not checked (directory of release files; no published hashes)", notes=notes)


def _split_rows(root: Path, meta: dict, labels: np.ndarray, split: str, fold: int, test_show: str,
                valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) row numbers of ``sarcasm_data.json`` (see the module docstring)."""
    if split == "speaker_independent":
        shows = np.array([entry["show"] for entry in meta.values()])
        if not (shows == test_show).any():
            raise fail(root / "sarcasm_data.json", f"expected utterances of test_show={test_show!r}, found shows "
                       f"{sorted(set(shows.tolist()))}", key="show")
        pool, test_rows = np.flatnonzero(shows != test_show), np.flatnonzero(shows == test_show)
    else:
        pool, test_rows = _read_fold(root / FOLDS_FILE, fold, len(meta))
    train_rows, valid_rows = carve_validation(pool, labels, valid_fraction, seed)
    if len(valid_rows) == 0 or len(train_rows) == 0:
        raise ValueError(f"valid_fraction={valid_fraction} leaves {len(train_rows)} train and {len(valid_rows)} "
                         f"validation utterances out of {len(pool)}; both must be non-empty")
    return train_rows, valid_rows, test_rows


def _build_split(root: Path, name: str, rows: np.ndarray, ids: list[str], meta: dict, labels: np.ndarray,
                 seqs: dict[str, list[np.ndarray]], lens: dict[str, int], replace_nonfinite: bool,
                 notes: list[str]) -> SplitData:
    arrays, lengths = {}, {}
    split_ids = [ids[r] for r in rows]
    for m, seq in seqs.items():
        arrays[m] = np.zeros((len(rows), lens[m], seq[0].shape[1]), dtype=np.float32)  # (N, T, D) zero padding
        lengths[m] = np.array([fit_length(seq[r], lens[m], _SHORTEN[m], arrays[m][i]) for i, r in enumerate(rows)],
                              dtype=np.int64)
        check_finite(arrays[m], root, f"{name}/{m}", split_ids, replace=replace_nonfinite, notes=notes)
        zeros = int((lengths[m] == 0).sum())
        if zeros:
            notes.append(f"{name}/{m}: {zeros} utterances have length 0")
    return SplitData(
        name=name, text=arrays["text"], text_bert=None, audio=arrays["audio"], vision=arrays["vision"],
        audio_lengths=lengths["audio"], vision_lengths=lengths["vision"], labels=labels[rows], ids=split_ids,
        raw_text=[meta[c]["utterance"] for c in split_ids], unimodal_labels={},
    )


def _read_meta(path: Path) -> dict[str, dict]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(path, f"expected JSON, found unreadable text ({err})") from None
    if not isinstance(raw, dict) or not raw:
        raise fail(path, f"expected a non-empty object keyed by utterance id, found {type(raw).__name__}")
    for clip, entry in raw.items():
        if not isinstance(entry, dict):
            raise fail(path, f"expected an object, found {type(entry).__name__}", clip=clip)
        for key, kind in (("utterance", str), ("show", str), ("sarcasm", object)):
            if key not in entry:
                raise fail(path, f"missing; found keys {sorted(entry)}", clip=clip, key=key)
            if not isinstance(entry[key], kind):
                raise fail(path, f"expected a string, found {type(entry[key]).__name__}", clip=clip, key=key)
    return raw


def _read_bert(path: Path, ids: list[str]) -> list[np.ndarray]:
    """One (tokens, 768) float32 array per utterance: per token, the mean over the file's layers."""
    out: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            if not line.strip():
                continue
            i = len(out)
            clip = ids[i] if i < len(ids) else None
            if clip is None:
                raise fail(path, f"expected {len(ids)} lines (one per utterance of sarcasm_data.json), found more")
            try:
                obj = json.loads(line)
                tokens = obj["features"]
                # (tokens, layers, D) -> mean over the layers -> (tokens, D)
                values = np.array([[layer["values"] for layer in tok["layers"]] for tok in tokens], dtype=np.float32)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise fail(path, f"line {line_no + 1}: expected extract_features.py output {{'features': "
                           f"[{{'token', 'layers': [{{'values'}}]}}]}}, found {type(err).__name__}: {err}",
                           clip=clip) from None
            if obj.get("linex_index", i) != i:
                raise fail(path, f"line {line_no + 1}: expected linex_index {i} (lines in sarcasm_data.json order), "
                           f"found {obj['linex_index']}", clip=clip)
            if values.ndim != 3 or values.shape[1] == 0:
                raise fail(path, f"line {line_no + 1}: expected (tokens, layers, dim) values, found shape "
                           f"{values.shape}", clip=clip)
            if dim is not None and values.shape[2] != dim:
                raise fail(path, f"line {line_no + 1}: expected {dim} values per layer, found {values.shape[2]}",
                           clip=clip)
            dim = values.shape[2]
            out.append(values.mean(axis=1))
    if len(out) != len(ids):
        raise fail(path, f"expected {len(ids)} lines (one per utterance of sarcasm_data.json), found {len(out)}")
    return _common_width(out, dim, path)


def _read_audio(path: Path, ids: list[str]) -> list[np.ndarray]:
    """One (segments, D_a) float32 array per utterance (the file stores (D_a, segments))."""
    raw = safe_load(path)
    if not isinstance(raw, dict):
        raise fail(path, f"expected a dict keyed by utterance id, found {type(raw).__name__}")
    absent = [c for c in ids if c not in raw]
    if absent:
        raise fail(path, f"{len(absent)} utterance ids of sarcasm_data.json are missing: {preview(absent)}")
    out, dim = [], None
    for clip in ids:
        value = np.asarray(raw[clip])
        if value.ndim != 2:
            raise fail(path, f"expected a 2-D (features, segments) array, found shape {value.shape}", clip=clip)
        arr = as_matrix(value.T, path, clip, "", dim)  # (segments, D_a)
        dim = dim or arr.shape[1] or None
        out.append(arr)
    return _common_width(out, dim, path)


def _common_width(seqs: list[np.ndarray], dim: int | None, path: Path) -> list[np.ndarray]:
    """Give empty sequences the width ``dim`` of the others: (0, D)."""
    if dim is None:
        raise fail(path, "expected feature rows, found only empty sequences")
    return [x if len(x) else np.zeros((0, dim), dtype=np.float32) for x in seqs]


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "reading MUStARD's video features (HDF5) needs h5py: pip install emodistill[mustard]"
        ) from err
    return h5py


def _read_video(path: Path, ids: list[str]) -> list[np.ndarray]:
    """One (frames, D_v) float32 array per utterance from the HDF5 file's per-id datasets."""
    h5py = _import_h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise fail(path, f"expected an HDF5 file, found an unreadable one ({err})") from None
    with f:
        absent = [c for c in ids if c not in f]
        if absent:
            raise fail(path, f"{len(absent)} utterance ids of sarcasm_data.json are missing: {preview(absent)}")
        out, dim = [], None
        for clip in ids:
            node = f[clip]
            if not isinstance(node, h5py.Dataset):
                raise fail(path, f"expected a dataset, found a {type(node).__name__}", clip=clip)
            arr = as_matrix(node[()], path, clip, "", dim)  # (frames, D_v)
            dim = dim or arr.shape[1] or None
            out.append(arr)
    return _common_width(out, dim, path)


def _read_fold(path: Path, fold: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, test_rows) of 1-based ``fold`` in ``split_indices.p``."""
    raw = safe_load(path)
    if not isinstance(raw, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in raw):
        raise fail(path, f"expected a list of (train_rows, test_rows) pairs, found {type(raw).__name__}")
    if not 1 <= fold <= len(raw):
        raise ValueError(f"fold={fold}; {path} has folds 1-{len(raw)}")
    rows = []
    for part, value in zip(("train", "test"), raw[fold - 1], strict=True):
        arr = np.asarray(value)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.size == 0 or arr.min() < 0 or arr.max() >= n:
            raise fail(path, f"fold {fold} {part}: expected row numbers in [0, {n}), found {arr.dtype} array "
                       f"of shape {arr.shape}" + (f" in [{arr.min()}, {arr.max()}]" if arr.size else ""))
        rows.append(np.unique(arr).astype(np.int64))
    overlap = np.intersect1d(*rows)
    if overlap.size:
        raise fail(path, f"fold {fold}: expected disjoint train and test rows, found {overlap.size} in both")
    return rows[0], rows[1]
