"""One clip's already-extracted features (the arrays of one row of an MMSA pickle) as a model batch.

For users who have features rather than videos: the MMSA releases (MOSI/MOSEI/SIMS) or a pickle made by
``emodistill extract``. The arrays are taken as they are stored in the data file (already normalised, no
extraction step runs) and zero-padded to the lengths the model was trained with, as the data reader pads:

* ``text``: (L, D_t) word features, L <= the trained text length;
* ``text_bert``: (3, L) ``[input_ids, input_mask, segment_ids]``, required when the model's data had it
  (models read the text length from its mask); its L must equal ``text``'s;
* ``audio`` (T_a, D_a) and ``vision`` (T_v, D_v), T <= the trained length; on unaligned data the true
  lengths are T, or ``audio_lengths`` / ``vision_lengths`` when given (MMSA rows are stored padded);
  on aligned data every sequence lies on the text's word timeline, so T_a = T_v = L.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emodistill.data.loader import BatchLoader
from emodistill.data.types import SplitData
from emodistill.spec import FRAME_MODALITIES, DatasetSpec


class FeatureShapeError(ValueError):
    """An array of the request has the wrong shape or type; the message names the key, expected and found."""


def feature_keys(spec: DatasetSpec) -> dict[str, str]:
    """Key -> expected shape, in words, for ``spec`` (for messages and the API's documentation)."""
    lens, dims = spec.seq_lens, spec.feature_dims
    keys = {"text": f"(L <= {lens['text']}, {dims['text']})"}
    if spec.has_text_bert:
        keys["text_bert"] = "(3, L)"
    for m in FRAME_MODALITIES:
        keys[m] = f"(T <= {lens[m]}, {dims[m]})" if not spec.aligned else f"(L, {dims[m]})"
    return keys


def _array(arrays: dict[str, Any], key: str, expected: str, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise FeatureShapeError(f"{key}: missing; expected an array of shape {expected}")
    try:
        x = np.asarray(arrays[key], dtype=np.float32)
    except (TypeError, ValueError):
        raise FeatureShapeError(f"{key}: expected a {ndim}-D array of numbers of shape {expected}, found a ragged "
                                "or non-numeric value") from None
    if x.ndim != ndim:
        raise FeatureShapeError(f"{key}: expected shape {expected}, found {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise FeatureShapeError(f"{key}: expected finite numbers, found NaN or infinity")
    return x


def _length(arrays: dict[str, Any], key: str, stored: int) -> int:
    if arrays.get(key) is None:
        return stored
    value = arrays[key]
    if isinstance(value, list) and len(value) == 1:  # a row of the pickle's (N,) array
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 1 <= int(value) <= stored:
        raise FeatureShapeError(f"{key}: expected a whole number in [1, {stored}] (the stored frames), found {value!r}")
    return int(value)


def _check_bert_rows(text_bert: np.ndarray, vocab_size: int | None) -> None:
    """Row 0 token ids (whole numbers in ``[0, vocab_size)``), row 1 the attention mask and row 2 segment ids
    (0/1), with at least one attended token: what a BERT text encoder can read."""
    ids, mask, segments = text_bert
    if (ids < 0).any() or (ids != np.round(ids)).any():
        raise FeatureShapeError("text_bert: row 0 (token ids) expected whole numbers >= 0, found others")
    if vocab_size is not None and ids.max(initial=0) >= vocab_size:
        raise FeatureShapeError(f"text_bert: row 0 (token ids) expected ids < {vocab_size} (the text model's "
                                f"vocabulary), found {int(ids.max())}")
    for name, row in (("1 (attention mask)", mask), ("2 (segment ids)", segments)):
        if not np.isin(row, (0.0, 1.0)).all():
            raise FeatureShapeError(f"text_bert: row {name} expected 0 or 1, found other values")
    if not mask.any():
        raise FeatureShapeError("text_bert: row 1 (attention mask) expected at least one 1, found none")


def _pad(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    width = [(0, 0)] * x.ndim
    width[axis] = (0, length - x.shape[axis])
    return np.pad(x, width)


def feature_split(spec: DatasetSpec, arrays: dict[str, Any], vocab_size: int | None = None) -> SplitData:
    """Validate ``arrays`` (key -> nested lists or arrays, see the module docstring) against ``spec`` and return
    them as a one-row split padded to the trained lengths; ``vocab_size`` bounds the ``text_bert`` ids (the
    model's text encoder, when it has one).

    Raises:
        FeatureShapeError: a key is missing, not numeric, or has the wrong shape (one line naming the key,
            the expected and the found shape).
    """
    unknown = sorted(set(arrays) - {"text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths"})
    if unknown:
        raise FeatureShapeError(f"{unknown[0]}: not a feature key; expected {sorted(feature_keys(spec))} "
                                "(and audio_lengths / vision_lengths on unaligned data)")
    expected = feature_keys(spec)
    lens, dims = spec.seq_lens, spec.feature_dims
    text = _array(arrays, "text", expected["text"], 2)  # (L, D_t)
    n_words = text.shape[0]
    if not 1 <= n_words <= lens["text"] or text.shape[1] != dims["text"]:
        raise FeatureShapeError(f"text: expected shape {expected['text']}, found {tuple(text.shape)}")
    text_bert = None
    if spec.has_text_bert:
        text_bert = _array(arrays, "text_bert", expected["text_bert"], 2)  # (3, L)
        if text_bert.shape != (3, n_words):
            raise FeatureShapeError(f"text_bert: expected shape (3, {n_words}) (text has {n_words} rows), "
                                    f"found {tuple(text_bert.shape)}")
        _check_bert_rows(text_bert, vocab_size)
        text_bert = _pad(text_bert, lens["text"], axis=1)
    frames, kept = {}, {}
    for m in FRAME_MODALITIES:
        x = _array(arrays, m, expected[m], 2)  # (T, D)
        limit = n_words if spec.aligned else lens[m]
        fits = x.shape[0] == n_words if spec.aligned else 1 <= x.shape[0] <= limit
        if not fits or x.shape[1] != dims[m]:
            want = f"({n_words}, {dims[m]}) (aligned: one row per word of text)" if spec.aligned else expected[m]
            raise FeatureShapeError(f"{m}: expected shape {want}, found {tuple(x.shape)}")
        kept[m] = x.shape[0] if spec.aligned else _length(arrays, f"{m}_lengths", x.shape[0])
        frames[m] = _pad(x, lens[m], axis=0)
    return SplitData(
        name="features",
        text=_pad(text, lens["text"], axis=0)[None],  # (1, T_l, D_t)
        text_bert=None if text_bert is None else text_bert[None],  # (1, 3, T_l)
        audio=frames["audio"][None],  # (1, T_a, D_a)
        vision=frames["vision"][None],  # (1, T_v, D_v)
        audio_lengths=None if spec.aligned else np.array([kept["audio"]], dtype=np.int64),
        vision_lengths=None if spec.aligned else np.array([kept["vision"]], dtype=np.int64),
        labels=np.zeros(1, dtype=np.float32),
        ids=["features"],
        raw_text=[""],
    )


def vocab_size(model: Any) -> int | None:
    """The vocabulary of ``model``'s Hugging Face text encoder (``model.text_model.model.config``), if any."""
    text_model = getattr(model, "text_model", None)
    config = getattr(getattr(text_model, "model", None), "config", None)
    return getattr(config, "vocab_size", None)


def one_row_batch(split: SplitData, device: torch.device) -> dict[str, torch.Tensor]:
    """The batch the training loader makes of a one-row split."""
    return next(iter(BatchLoader(split, 1, shuffle=False, device=device)))
