"""Reader for MMSA's processed feature pickles (CMU-MOSI, CMU-MOSEI, CH-SIMS).

This is the only module that knows the pickle layout (docs/mmsa.md §2)::

    {"train" | "valid" | "test": {
        "text": (N, T_l, 768) BERT features,  "text_bert": (N, 3, T_l) [ids, mask, segments],
        "audio": (N, T_a, D_a),  "vision": (N, T_v, D_v),
        "audio_lengths", "vision_lengths": (N,)            # unaligned files only
        "regression_labels": (N,),  "regression_labels_{T,A,V}": (N,)   # the latter SIMS only
        "concepts": (N, C)                                  # ours, synth-concepts only (planted concepts)
        "id": (N,) "{video}$_${clip}",  "raw_text": (N,) str,
        "annotations", "classification_labels": ...}}     # deprecated by MMSA; read but ignored

Feature dims and sequence lengths are read from the arrays, never from constants, and become the
:class:`~emodistill.spec.DatasetSpec` models are sized from. Every violation raises a one-line
:class:`DataValidationError` naming the file, split, key, what was expected and what was found.

Conventions decided here:

* ``-inf`` in ``audio`` is set to 0, exactly as MMSA's ``MMDataset`` does (COVAREP writes ``-inf``
  for log-energies of silent frames); the count goes to ``MMSAData.notes``. Any other NaN/inf in a
  feature array is an error, unless ``replace_nonfinite=True`` (then set to 0 and noted). Non-finite
  labels are always an error: there is no safe value to put in their place.
* A length of 0 is accepted (a clip whose face or voice track is empty) and noted; models must treat
  it as "no valid frames". Lengths must be whole numbers in ``[0, T]``.
* ``id`` and ``raw_text`` are optional (custom files may lack them): ids default to
  ``"{split}_{i:05d}"``, transcripts to ``""``, both noted.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data.hashes import (
    DataHashWarning,
    claimed_key,
    family_of_key,
    file_sha256,
    hash_status,
    published_key_for_hash,
)
from emodistill.data.safe_pickle import safe_load
from emodistill.data.types import SPLITS, DataValidationError, MMSAData, SplitData
from emodistill.spec import FRAME_MODALITIES, LABEL_SUFFIXES, MODALITIES, DatasetSpec

DATASET_NAMES: tuple[str, ...] = ("mosi", "mosei", "sims", "synth", "custom")
LABEL_RANGES: dict[str, tuple[float, float]] = {"sims": (-1.0, 1.0)}  # every other name: (-3, 3)
# (D_a, D_v) -> data set, for files neither hash-identified nor named by the caller.
_DIMS_TO_NAME: dict[tuple[int, int], str] = {(5, 20): "mosi", (74, 35): "mosei", (33, 709): "sims"}
_REQUIRED = ("text", "audio", "vision", "regression_labels")
_FEATURES = ("text", "text_bert", "audio", "vision")
_UNIMODAL = tuple(LABEL_SUFFIXES[m] for m in MODALITIES)  # T, A, V
_LABEL_TOL = 1e-6  # labels are stored as float; allow rounding error at the range ends


def load_mmsa(
    path: str | Path,
    *,
    dataset: str | None = None,
    strict_hash: bool = False,
    replace_nonfinite: bool = False,
) -> MMSAData:
    """Read and validate an MMSA feature pickle.

    Args:
        path: the ``.pkl`` file (e.g. ``MOSI/Processed/unaligned_50.pkl``). It is opened with a
            restricted unpickler, so it cannot run code.
        dataset: ``mosi``, ``mosei``, ``sims``, ``synth`` or ``custom``; default: identified by the
            file's SHA-256, else inferred from the audio/vision dims (5/20 mosi, 74/35 mosei,
            33/709 sims, otherwise custom).
        strict_hash: raise :class:`~emodistill.data.hashes.DataHashError` instead of warning when a
            file that presents itself as a published MMSA file has a different SHA-256.
        replace_nonfinite: set NaN/inf in feature arrays to 0 (noted) instead of raising.

    Returns:
        The validated data, features as float32, lengths as int64.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataValidationError: the file breaks the schema (one line naming file/split/key/expected/found).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MMSA feature file not found: {path}")
    if dataset is not None and dataset not in DATASET_NAMES:
        raise ValueError(f"dataset={dataset!r} is not one of {list(DATASET_NAMES)}")
    sha256 = file_sha256(path)  # hashed once; the status below reuses it
    raw = safe_load(path)
    notes: list[str] = []
    _check_top_level(raw, path)
    splits = {
        name: _read_split(raw[name], path, name, replace_nonfinite=replace_nonfinite, notes=notes)
        for name in SPLITS
    }
    for name, split in splits.items():  # an empty split would train on, select by or report nothing
        if len(split) == 0:
            raise _fail(path, name, None, "expected at least one sample, found 0")
    aligned, dims, lens = _check_across_splits(splits, path)

    published = published_key_for_hash(sha256)
    inferred = _DIMS_TO_NAME.get((dims["audio"], dims["vision"]), "custom")
    if published is not None:
        name = family_of_key(published)
        if dataset is not None and dataset != name:
            warnings.warn(
                f"{path}: dataset={dataset!r} ignored, the SHA-256 identifies {published}",
                DataHashWarning,
                stacklevel=2,
            )
    else:
        name = dataset or inferred
    claim = claimed_key(path, explicit=dataset, inferred=inferred, aligned=aligned)
    status = hash_status(path, sha256, claim, strict=strict_hash)

    label_range = LABEL_RANGES.get(name, (-3.0, 3.0))
    for split in splits.values():
        _check_labels(split, path, name, label_range)
    spec = DatasetSpec(
        name=name,
        aligned=aligned,
        feature_dims=dims,
        seq_lens=lens,
        label_range=label_range,
        has_text_bert=splits["train"].text_bert is not None,
    )
    extract_config = _extraction_record(raw.get("config"), path, dims)
    return MMSAData(
        path=path,
        splits=splits,
        spec=spec,
        sha256=sha256,
        hash_status=status,
        notes=notes,
        extract_config=extract_config,
    )


def _extraction_record(record: Any, path: Path, dims: dict[str, int]) -> dict | None:
    """The ``"config"`` entry ``emodistill extract`` writes (other tools' entries, e.g. MMSA-FET's, are
    ignored): checked against the arrays, since ``predict`` re-extracts new videos by it."""
    if not (isinstance(record, dict) and str(record.get("format", "")).startswith("emodistill.extract/")):
        return None
    names = record.get("feature_names") or {}
    for m in FRAME_MODALITIES:
        if len(names.get(m, [])) != dims[m]:
            raise _fail(path, None, "config", f"the extraction record names {len(names.get(m, []))} {m} "
                        f"features, the arrays have {dims[m]}")
    if record.get("text_dim") != dims["text"]:
        raise _fail(path, None, "config", f"the extraction record says text_dim {record.get('text_dim')}, "
                    f"the arrays have {dims['text']}")
    return record


def _fail(path: Path, split: str | None, key: str | None, what: str) -> DataValidationError:
    where = " ".join(p for p in (f"split '{split}'" if split else "", f"key '{key}'" if key else "") if p)
    return DataValidationError(f"{path}: {where + ': ' if where else ''}{what}")


def _check_top_level(raw: Any, path: Path) -> None:
    if not isinstance(raw, dict):
        raise _fail(
            path, None, None, f"expected a dict with splits {list(SPLITS)}, found {type(raw).__name__}"
        )
    missing = [s for s in SPLITS if s not in raw]
    if missing:
        raise _fail(
            path, None, None, f"missing split(s) {missing}; expected {list(SPLITS)}, found {list(raw)}"
        )
    for s in SPLITS:
        if not isinstance(raw[s], dict):
            raise _fail(path, s, None, f"expected a dict of arrays, found {type(raw[s]).__name__}")


def _as_array(
    value: Any, path: Path, split: str, key: str, rank: int | tuple[int, ...], dtype=None
) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as err:
        want = f"a {np.dtype(dtype).name} array" if dtype is not None else "an array"
        raise _fail(path, split, key, f"expected {want}, found {type(value).__name__} ({err})") from None
    ranks = (rank,) if isinstance(rank, int) else rank
    if arr.ndim not in ranks:
        raise _fail(
            path, split, key, f"expected rank {' or '.join(map(str, ranks))}, found shape {arr.shape}"
        )
    return arr


def _read_split(d: dict, path: Path, split: str, *, replace_nonfinite: bool, notes: list[str]) -> SplitData:
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise _fail(path, split, missing[0], f"missing; expected keys {list(_REQUIRED)}, found {sorted(d)}")
    feats = {k: _as_array(d[k], path, split, k, 3, np.float32) for k in _FEATURES if k in d}
    n = feats["text"].shape[0]

    def count_ok(key: str, arr: np.ndarray | list) -> None:
        if len(arr) != n:
            raise _fail(path, split, key, f"expected {n} samples (as in 'text'), found {len(arr)}")

    for key, arr in feats.items():
        count_ok(key, arr)
    t_l = feats["text"].shape[1]
    if "text_bert" in feats and feats["text_bert"].shape[1:] != (3, t_l):
        raise _fail(
            path,
            split,
            "text_bert",
            f"expected shape (N, 3, {t_l}) matching text's T_l, found {feats['text_bert'].shape}",
        )
    for key, arr in feats.items():
        _check_finite(arr, path, split, key, replace_nonfinite, notes)

    has_len = [k for k in ("audio_lengths", "vision_lengths") if k in d]
    if len(has_len) == 1:
        other = ({"audio_lengths", "vision_lengths"} - set(has_len)).pop()
        raise _fail(path, split, other, f"missing; found '{has_len[0]}', expected both lengths or neither")
    lengths = {}
    for key in has_len:
        mod = key.split("_")[0]
        lengths[mod] = _read_lengths(d[key], path, split, key, feats[mod].shape[1], notes)
        count_ok(key, lengths[mod])

    labels = _as_array(d["regression_labels"], path, split, "regression_labels", (1, 2), np.float32)
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise _fail(path, split, "regression_labels", f"expected shape (N,) or (N, 1), found {labels.shape}")
    labels = labels.reshape(-1)
    count_ok("regression_labels", labels)
    unimodal = {}
    for m in _UNIMODAL:
        key = f"regression_labels_{m}"
        if key in d:
            unimodal[m] = _as_array(d[key], path, split, key, (1, 2), np.float32).reshape(-1)
            count_ok(key, unimodal[m])

    concepts = None
    if "concepts" in d:
        concepts = _as_array(d["concepts"], path, split, "concepts", 2, np.float32)
        count_ok("concepts", concepts)
        _check_finite(concepts, path, split, "concepts", False, notes)

    ids = _read_strings(d, "id", path, split, n, notes, default=lambda i: f"{split}_{i:05d}")
    raw_text = _read_strings(d, "raw_text", path, split, n, notes, default=lambda i: "")
    return SplitData(
        name=split,
        text=feats["text"],
        text_bert=feats.get("text_bert"),
        audio=feats["audio"],
        vision=feats["vision"],
        audio_lengths=lengths.get("audio"),
        vision_lengths=lengths.get("vision"),
        labels=labels,
        ids=ids,
        raw_text=raw_text,
        unimodal_labels=unimodal,
        concepts=concepts,
    )


def _check_finite(arr: np.ndarray, path: Path, split: str, key: str, replace: bool, notes: list[str]) -> None:
    # Fast exact test: a float64 sum of float32 values cannot overflow, so it is finite iff all are.
    if np.isfinite(arr.sum(dtype=np.float64)):
        return
    if key == "audio":
        neg_inf = np.isneginf(arr)
        arr[neg_inf] = 0.0  # MMSA: audio[audio == -np.inf] = 0
        notes.append(f"{split}/audio: {int(neg_inf.sum())} -inf values set to 0 (as MMSA's loader does)")
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count == 0:
        return
    first = int(np.argmax(bad.reshape(len(arr), -1).any(axis=1)))
    kinds = f"{int(np.isnan(arr).sum())} NaN, {count - int(np.isnan(arr).sum())} inf"
    if not replace:
        raise _fail(
            path,
            split,
            key,
            f"expected finite values, found {count} non-finite ({kinds}), first in "
            f"sample {first}; pass replace_nonfinite=True to set them to 0",
        )
    arr[bad] = 0.0
    notes.append(f"{split}/{key}: {count} non-finite values ({kinds}) set to 0 (replace_nonfinite)")


def _read_lengths(value: Any, path: Path, split: str, key: str, t: int, notes: list[str]) -> np.ndarray:
    arr = _as_array(value, path, split, key, 1)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
        raise _fail(path, split, key, f"expected whole numbers, found dtype {arr.dtype}")
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        first = int(np.argmax(arr != np.round(arr)))
        raise _fail(path, split, key, f"expected whole numbers, found {arr[first]} in sample {first}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr > t)
    if bad.any():
        first = int(np.argmax(bad))
        raise _fail(
            path,
            split,
            key,
            f"expected lengths in [0, {t}] (the padded T), found {arr[first]} "
            f"in sample {first} ({int(bad.sum())} out of range)",
        )
    zeros = int((arr == 0).sum())
    if zeros:
        notes.append(f"{split}/{key}: {zeros} samples have length 0 (no valid frames)")
    return arr


def _read_strings(d: dict, key: str, path: Path, split: str, n: int, notes: list[str], default) -> list[str]:
    if key not in d:
        notes.append(f"{split}: no '{key}' key; using defaults")
        return [default(i) for i in range(n)]
    arr = _as_array(d[key], path, split, key, 1)
    if len(arr) != n:
        raise _fail(path, split, key, f"expected {n} samples (as in 'text'), found {len(arr)}")
    return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.tolist()]


def _check_across_splits(splits: dict[str, SplitData], path: Path) -> tuple[bool, dict, dict]:
    ref = splits["train"]
    aligned = ref.audio_lengths is None
    dims = {m: int(getattr(ref, m).shape[2]) for m in MODALITIES}
    lens = {m: int(getattr(ref, m).shape[1]) for m in MODALITIES}
    for s in SPLITS[1:]:
        cur = splits[s]
        if (cur.audio_lengths is None) != aligned:
            want = (
                "no *_lengths keys (aligned, as train)" if aligned else "*_lengths keys (unaligned, as train)"
            )
            raise _fail(path, s, "audio_lengths", f"expected {want}, found the opposite")
        for m in MODALITIES:
            arr = getattr(cur, m)
            if arr.shape[2] != dims[m]:
                raise _fail(path, s, m, f"expected feature dim {dims[m]} (as in train), found {arr.shape[2]}")
            if arr.shape[1] != lens[m]:
                raise _fail(
                    path, s, m, f"expected sequence length {lens[m]} (as in train), found {arr.shape[1]}"
                )
        if (cur.text_bert is None) != (ref.text_bert is None):
            raise _fail(
                path,
                s,
                "text_bert",
                f"expected {'absent' if ref.text_bert is None else 'present'} "
                "(as in train), found the opposite",
            )
        if set(cur.unimodal_labels) != set(ref.unimodal_labels):
            raise _fail(
                path,
                s,
                "regression_labels_T",
                f"expected unimodal labels {sorted(ref.unimodal_labels)} "
                f"(as in train), found {sorted(cur.unimodal_labels)}",
            )
        ref_c = None if ref.concepts is None else ref.concepts.shape[1]
        cur_c = None if cur.concepts is None else cur.concepts.shape[1]
        if cur_c != ref_c:
            raise _fail(path, s, "concepts", f"expected {ref_c} concept columns (as in train), found {cur_c}")
    return aligned, dims, lens


def _check_labels(split: SplitData, path: Path, name: str, label_range: tuple[float, float]) -> None:
    if name == "sims" and set(split.unimodal_labels) != set(_UNIMODAL):
        missing = [f"regression_labels_{m}" for m in _UNIMODAL if m not in split.unimodal_labels]
        raise _fail(path, split.name, missing[0], "missing; SIMS files carry unimodal labels T/A/V")
    lo, hi = label_range
    named = {"regression_labels": split.labels}
    named.update({f"regression_labels_{m}": v for m, v in split.unimodal_labels.items()})
    for key, y in named.items():
        if not np.isfinite(y).all():
            first = int(np.argmax(~np.isfinite(y)))
            raise _fail(
                path,
                split.name,
                key,
                f"expected finite labels, found {int((~np.isfinite(y)).sum())} "
                f"non-finite, first in sample {first}",
            )
        bad = (y < lo - _LABEL_TOL) | (y > hi + _LABEL_TOL)
        if bad.any():
            first = int(np.argmax(bad))
            raise _fail(
                path,
                split.name,
                key,
                f"expected labels in [{lo:g}, {hi:g}] for dataset '{name}', "
                f"found {y[first]:g} in sample {first} ({int(bad.sum())} outside)",
            )
