"""Reader for the UR-FUNNY v2 feature release (multimodal humour detection, binary labels).

Hasan, Rahman, Bagher Zadeh, Zhong, Tanveer, Morency and Hoque, "UR-FUNNY: A Multimodal Language
Dataset for Understanding Humor", EMNLP-IJCNLP 2019, https://aclanthology.org/D19-1211.
Release and format: https://github.com/ROC-HCI/UR-FUNNY (README, "UR-FUNNY-V2", and the tutorial
``humor_dataloader.ipynb``). This module is the only place that knows the layout.

Expected files, all directly in one directory (the unzipped "Extracted Features" of v2)::

    data_folds.pkl             {"train" | "dev" | "test": [clip id, ...]}  (speaker-independent folds)
    language_sdk.pkl           {id: {"punchline_embedding_indexes": [w, ...],
                                     "context_embedding_indexes": [[w, ...], ...],   # one list per sentence
                                     "punchline_sentence": str, "context_sentences": [str, ...],
                                     "punchline_intervals", "context_intervals": word timings (unused)}}
    word_embedding_list.pkl    [GloVe 840B 300-d vector, ...]  indexed by the word indexes above
    covarep_features_sdk.pkl   {id: {"punchline_features": (n_words, 81),
                                     "context_features": [(n_words_s, 81), ...]}}   # COVAREP, word-averaged
    openface_features_sdk.pkl  {id: same keys, 371-d OpenFace2 features}
    humor_label_sdk.pkl        {id: 1 (humorous punchline) | 0}

Features are word-aligned: word i of a sentence has one GloVe vector, one COVAREP and one OpenFace row.
The v1 release (``word_embedding_indexes_sdk.pkl``) is not supported. Every pickle is opened with
:func:`~emodistill.data.safe_pickle.safe_load`, so a file cannot run code.

Conventions decided here (the release itself leaves them to the user):

* **Context.** A clip is the last ``context_sentences`` context sentences followed by the punchline,
  concatenated on the word timeline (default 0: punchline only, as MISA uses UR-FUNNY). There is no
  separator row between sentences.
* **Fixed length.** DMD needs one length T (``max_len``, default 50, MMSA's text length) for all
  three modalities. Too long a clip loses context words from the front first (the oldest); a
  punchline longer than T keeps its first T words, as the UR-FUNNY tutorial does. Padding is zeros on
  the right (the tutorial pads on the left; this package's models read ``steps < length`` as real),
  and pads are zero vectors, not ``word_embedding_list[0]``. The true word counts are kept as
  ``audio_lengths`` = ``vision_lengths``; the spec is ``aligned`` (one timeline).
* **Splits.** ``train`` / ``dev`` / ``test`` of ``data_folds.pkl`` become train / valid / test, in the
  fold's order. Ids are turned into strings (``SplitData.ids``); the pickles' keys may be ints.
* **Validation** as the MMSA reader: missing files, ids of a fold missing from a pickle, word counts
  that differ between modalities (or ``drop_mismatched=True`` drops those clips, as MISA does),
  wrong feature widths, word indexes outside the embedding list, labels other than 0/1 and
  non-finite values (COVAREP ``-inf`` is set to 0 and noted; other NaN/inf raise unless
  ``replace_nonfinite``) each raise a one-line error naming the file, id and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data.release import as_matrix, binary_label, check_finite, fail, missing_files, preview
from emodistill.data.safe_pickle import safe_load
from emodistill.data.types import SPLITS, MMSAData, SplitData
from emodistill.spec import BINARY_LABEL_RANGE, DatasetSpec

FILES: dict[str, str] = {
    "data_folds.pkl": "train/dev/test lists of clip ids",
    "language_sdk.pkl": "per clip: GloVe word indexes and sentences of punchline and context",
    "word_embedding_list.pkl": "GloVe vectors indexed by the word indexes",
    "covarep_features_sdk.pkl": "per clip: word-level COVAREP features",
    "openface_features_sdk.pkl": "per clip: word-level OpenFace2 features",
    "humor_label_sdk.pkl": "per clip: humour label 0/1",
}
"""The UR-FUNNY v2 release files this reader needs, with what each holds."""

_FOLD_OF_SPLIT = {"train": "train", "valid": "dev", "test": "test"}
_AV_FILES = {"audio": "covarep_features_sdk.pkl", "vision": "openface_features_sdk.pkl"}


def is_urfunny_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding the UR-FUNNY v2 fold and label pickles."""
    path = Path(path)
    return (path / "data_folds.pkl").is_file() and (path / "humor_label_sdk.pkl").is_file()


def load_urfunny(
    root: str | Path,
    *,
    context_sentences: int = 0,
    max_len: int = 50,
    drop_mismatched: bool = False,
    replace_nonfinite: bool = False,
) -> MMSAData:
    """Read and validate the UR-FUNNY v2 pickles in ``root``.

    Args:
        root: directory with the files of :data:`FILES`.
        context_sentences: how many of the last context sentences precede the punchline (0: none).
        max_len: the fixed length T of every modality (words).
        drop_mismatched: drop clips whose word counts differ between modalities (noted) instead of
            raising.
        replace_nonfinite: set NaN/inf features to 0 (noted) instead of raising.

    Returns:
        train/valid/test splits with text (N, T, 300) GloVe, audio (N, T, 81), vision (N, T, 371),
        true lengths, 0/1 labels, and a binary-task :class:`DatasetSpec` named ``urfunny``.

    Raises:
        FileNotFoundError: ``root`` is not a directory or lacks a release file.
        DataValidationError: a file breaks the layout (one line naming file, id, key, expected, found).
    """
    root = Path(root)
    if context_sentences < 0 or max_len < 1:
        raise ValueError(f"context_sentences={context_sentences} must be >= 0 and max_len={max_len} >= 1")
    if not root.is_dir():
        raise FileNotFoundError(f"UR-FUNNY: {root} is not a directory (expected the v2 feature pickles)")
    missing = missing_files(root, FILES)
    if missing:
        hint = " (word_embedding_indexes_sdk.pkl is UR-FUNNY v1, which is not supported)" if (
            root / "word_embedding_indexes_sdk.pkl").is_file() else ""
        raise FileNotFoundError(f"UR-FUNNY v2: {root} lacks {'; '.join(missing)}{hint}")

    folds = _read_folds(root / "data_folds.pkl")
    wanted = [clip for split in SPLITS for clip in folds[split]]
    sdk = {name: _read_id_dict(root / name, wanted) for name in FILES if name.endswith("_sdk.pkl")}
    embeddings = _read_embeddings(root / "word_embedding_list.pkl")
    notes: list[str] = []
    extra_ids = len(sdk["humor_label_sdk.pkl"]) - len(wanted)
    if extra_ids > 0:
        notes.append(f"humor_label_sdk.pkl: {extra_ids} clips in no fold of data_folds.pkl are ignored")

    clips, dims, dropped = {}, {}, []
    for clip in wanted:
        try:
            clips[clip] = _clip_sentences(root, sdk, clip, context_sentences, len(embeddings), dims)
        except _Mismatch as err:
            if not drop_mismatched:
                raise fail(root / "language_sdk.pkl", f"expected one row per word in every modality, {err.what} "
                           "(pass drop_mismatched=True to drop such clips)", clip=clip, key=err.key) from None
            dropped.append(clip)
    if dropped:
        notes.append(f"{len(dropped)} clips whose word counts differ between modalities dropped "
                     f"(drop_mismatched): {preview(dropped)}")
    for m, name in _AV_FILES.items():
        if m not in dims:
            raise fail(root / name, "expected word-level feature rows, found only empty sequences")

    splits = {}
    for split in SPLITS:
        ids = [c for c in folds[split] if c in clips]
        if not ids:
            raise fail(root / "data_folds.pkl", "every clip of this fold was dropped (drop_mismatched)",
                       key=_FOLD_OF_SPLIT[split])
        splits[split] = _build_split(root, split, ids, clips, embeddings, dims, max_len, replace_nonfinite, notes)
    spec = DatasetSpec(
        name="urfunny",
        aligned=True,
        feature_dims={"text": int(embeddings.shape[1]), "audio": dims["audio"], "vision": dims["vision"]},
        seq_lens={"text": max_len, "audio": max_len, "vision": max_len},
        label_range=BINARY_LABEL_RANGE,
        has_text_bert=False,
        extra={"reader": "urfunny", "context_sentences": context_sentences, "max_len": max_len,
               "drop_mismatched": drop_mismatched},
        task="binary",
    )
    return MMSAData(path=root, splits=splits, spec=spec, sha256=None,
                    hash_status="not checked (directory of release files; no published hashes)", notes=notes)


class _Mismatch(Exception):
    """A clip's word counts differ between modalities (raised or dropped by :func:`load_urfunny`)."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(what)
        self.key, self.what = key, what


def _read_folds(path: Path) -> dict[str, list[str]]:
    raw = safe_load(path)
    if not isinstance(raw, dict) or any(f not in raw for f in _FOLD_OF_SPLIT.values()):
        found = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise fail(path, f"expected a dict with keys ['train', 'dev', 'test'], found {found}")
    folds, seen = {}, {}
    for split, fold in _FOLD_OF_SPLIT.items():
        ids = raw[fold]
        if not isinstance(ids, (list, tuple, np.ndarray)):
            raise fail(path, f"expected a list of clip ids, found {type(ids).__name__}", key=fold)
        folds[split] = [str(c) for c in ids]
        for clip in folds[split]:
            if clip in seen:
                raise fail(path, f"expected each clip in one fold, found it in '{seen[clip]}' and '{fold}'",
                           clip=clip, key=fold)
            seen[clip] = fold
        if not folds[split]:
            raise fail(path, "expected at least one clip id, found an empty list", key=fold)
    return folds


def _read_id_dict(path: Path, wanted: list[str]) -> dict[str, Any]:
    """The pickle's ``{id: value}`` dict with string keys; every id of ``wanted`` must be present."""
    raw = safe_load(path)
    if not isinstance(raw, dict):
        raise fail(path, f"expected a dict keyed by clip id, found {type(raw).__name__}")
    by_str = {str(k): v for k, v in raw.items()}
    if len(by_str) != len(raw):
        raise fail(path, "expected distinct clip ids, found keys that differ only in type (e.g. 1 and '1')")
    absent = [c for c in wanted if c not in by_str]
    if absent:
        raise fail(path, f"{len(absent)} clip ids of data_folds.pkl are missing: {preview(absent)}")
    return by_str


def _read_embeddings(path: Path) -> np.ndarray:
    raw = safe_load(path)
    try:
        table = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise fail(path, f"expected a list of equal-length word vectors, found ragged or non-numeric data ({err})"
                   ) from None
    if table.ndim != 2 or table.shape[0] == 0:
        raise fail(path, f"expected a (words, dim) table of word vectors, found shape {table.shape}")
    if not np.isfinite(table).all():
        row = int(np.argmax(~np.isfinite(table).all(axis=1)))
        raise fail(path, f"expected finite word vectors, found NaN/inf in row {row}")
    return table


def _field(d: Any, path: Path, clip: str, key: str) -> Any:
    if not isinstance(d, dict):
        raise fail(path, f"expected a dict of features, found {type(d).__name__}", clip=clip)
    if key not in d:
        raise fail(path, f"missing; found keys {sorted(map(str, d))}", clip=clip, key=key)
    return d[key]


def _clip_sentences(root: Path, sdk: dict, clip: str, k: int, vocab: int, dims: dict[str, int]) -> dict:
    """Word indexes, audio and vision rows of the clip's last ``k`` context sentences and its punchline.

    Returns ``{"words": [(n_s,) int64], "audio": [(n_s, D_a)], "vision": [(n_s, D_v)], "text": [str],
    "label": float}``, one entry per sentence, the punchline last. ``dims`` records the audio/vision
    widths seen first; later clips must match them.

    Raises:
        _Mismatch: the sentence or word counts differ between the modalities.
        DataValidationError: any other layout error.
    """
    lang_path = root / "language_sdk.pkl"
    lang = sdk["language_sdk.pkl"][clip]
    words = [_field(lang, lang_path, clip, "punchline_embedding_indexes")]
    texts = [_field(lang, lang_path, clip, "punchline_sentence")]
    av = {m: [_field(sdk[f][clip], root / f, clip, "punchline_features")] for m, f in _AV_FILES.items()}
    if k > 0:
        ctx_words = list(_field(lang, lang_path, clip, "context_embedding_indexes"))
        ctx_av = {m: list(_field(sdk[f][clip], root / f, clip, "context_features")) for m, f in _AV_FILES.items()}
        counts = {"language_sdk.pkl": len(ctx_words), **{f: len(ctx_av[m]) for m, f in _AV_FILES.items()}}
        if len(set(counts.values())) != 1:
            raise _Mismatch("context_features", f"context sentence counts differ: {counts}")
        # [-k:] keeps the last k sentences (all of them when there are fewer)
        words = ctx_words[-k:] + words
        texts = list(_field(lang, lang_path, clip, "context_sentences"))[-k:] + texts
        for m in av:
            av[m] = ctx_av[m][-k:] + av[m]

    parts: dict[str, Any] = {"words": [], "audio": [], "vision": []}
    for s, idx in enumerate(words):
        sentence = "punchline" if s == len(words) - 1 else "context"
        w = _word_indexes(idx, lang_path, clip, f"{sentence}_embedding_indexes", vocab)
        parts["words"].append(w)
        for m, f in _AV_FILES.items():
            arr = as_matrix(av[m][s], root / f, clip, f"{sentence}_features", dims.get(m))
            if len(arr) and m not in dims:
                dims[m] = arr.shape[1]
            parts[m].append(arr)
        counts = {"words": len(w), "audio": len(parts["audio"][-1]), "vision": len(parts["vision"][-1])}
        if len(set(counts.values())) != 1:
            where = "punchline" if sentence == "punchline" else f"context sentence {s - len(words) + 1}"
            raise _Mismatch(f"{sentence}_features", f"{where}: word counts differ {counts}")
    parts["text"] = [t if isinstance(t, str) else " ".join(map(str, t)) for t in texts]
    parts["label"] = binary_label(sdk["humor_label_sdk.pkl"][clip], root / "humor_label_sdk.pkl", clip, "label")
    return parts


def _word_indexes(value: Any, path: Path, clip: str, key: str, vocab: int) -> np.ndarray:
    """(n,) int64 rows of ``word_embedding_list.pkl``; whole numbers in [0, vocab) or an error."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise fail(path, f"expected a list of word indexes, found {type(value).__name__} ({err})",
                   clip=clip, key=key) from None
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0) | (arr >= vocab)
    if bad.any():
        raise fail(path, f"expected whole-number word indexes in [0, {vocab}) (rows of word_embedding_list.pkl), "
                   f"found {arr[bad][0]:g}", clip=clip, key=key)
    return arr.astype(np.int64)


def _build_split(root: Path, split: str, ids: list[str], clips: dict, embeddings: np.ndarray,
                 dims: dict[str, int], t: int, replace_nonfinite: bool, notes: list[str]) -> SplitData:
    n = len(ids)
    text = np.zeros((n, t, embeddings.shape[1]), dtype=np.float32)
    audio = np.zeros((n, t, dims["audio"]), dtype=np.float32)
    vision = np.zeros((n, t, dims["vision"]), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    labels = np.zeros(n, dtype=np.float32)
    shortened = 0
    for i, clip in enumerate(ids):
        parts = clips[clip]
        w = np.concatenate(parts["words"])  # (n_words,) context words first, the punchline last
        a = np.concatenate([x.reshape(-1, dims["audio"]) for x in parts["audio"]])  # (n_words, D_a)
        v = np.concatenate([x.reshape(-1, dims["vision"]) for x in parts["vision"]])  # (n_words, D_v)
        n_punch = len(parts["words"][-1])
        if len(w) > t:
            shortened += 1
            # a punchline longer than T keeps its first T words; otherwise the oldest context words go
            start = len(w) - n_punch if n_punch >= t else len(w) - t
            keep = np.arange(start, start + t)
            w, a, v = w[keep], a[keep], v[keep]
        k = len(w)
        text[i, :k] = embeddings[w]  # (k, D_l)
        audio[i, :k], vision[i, :k] = a, v
        lengths[i], labels[i] = k, parts["label"]
    if shortened:
        notes.append(f"{split}: {shortened} clips longer than max_len={t} words were shortened")
    zeros = int((lengths == 0).sum())
    if zeros:
        notes.append(f"{split}: {zeros} clips have no words (length 0)")
    for key, arr in (("text", text), ("audio", audio), ("vision", vision)):
        check_finite(arr, root, f"{split}/{key}", ids, replace=replace_nonfinite, notes=notes,
                     neg_inf_to_zero=key == "audio")
    return SplitData(
        name=split, text=text, text_bert=None, audio=audio, vision=vision,
        audio_lengths=lengths, vision_lengths=lengths.copy(), labels=labels, ids=list(ids),
        raw_text=[" ".join(clips[c]["text"]) for c in ids], unimodal_labels={},
    )
