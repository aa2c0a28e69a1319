"""MMSA reader: schema, validation messages, non-finite handling, SHA-256 identification."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

from emodistill.data import (
    DataHashError,
    DataHashWarning,
    DataValidationError,
    hashes,
    load_dataset,
    load_mmsa,
)
from emodistill.data.check import describe, label_bins
from emodistill.metrics.scores import SIMS_CLASS_NAMES


def _set(split, key, fn):
    """mutate= helper: ``d[split][key] = fn(d[split][key])``."""

    def mutate(d):
        d[split][key] = fn(d[split][key])

    return mutate


def _setitem(split, key, index, value):
    def mutate(d):
        d[split][key][index] = value

    return mutate


def _delete(split, key):
    def mutate(d):
        del d[split][key]

    return mutate


# --- reading ---------------------------------------------------------------------------------------


def test_aligned_file_reads_shapes_from_the_arrays(aligned_pkl):
    data = load_mmsa(aligned_pkl)
    spec = data.spec
    assert spec.name == "mosi"  # inferred from audio/vision dims 5/20
    assert spec.aligned and spec.has_text_bert
    assert spec.feature_dims == {"text": 768, "audio": 5, "vision": 20}
    assert spec.seq_lens == {"text": 8, "audio": 8, "vision": 8}
    assert spec.label_range == (-3.0, 3.0)
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 12, "valid": 4, "test": 4}
    train = data.train
    assert train.audio_lengths is None and train.vision_lengths is None
    assert train.text.dtype == train.audio.dtype == train.labels.dtype == np.float32
    assert train.ids[0] == "vid000$_$0" and train.raw_text[0] == "clip 0 says something"
    assert data.valid.ids[0] == "vid004$_$0"  # 12 // 3
    assert data.hash_status == "unknown (not a published MMSA file)"
    assert data.sha256 == hashlib.sha256(aligned_pkl.read_bytes()).hexdigest()
    assert data.notes == []


def test_unaligned_custom_dims_and_lengths(mmsa_writer):
    path = mmsa_writer("u.pkl", aligned=False, dims=(16, 4, 6), lens=(8, 10, 12))
    data = load_mmsa(path)
    assert data.spec.name == "custom" and not data.spec.aligned
    assert data.spec.feature_dims == {"text": 16, "audio": 4, "vision": 6}
    assert data.spec.seq_lens == {"text": 8, "audio": 10, "vision": 12}
    lengths = data.train.audio_lengths
    assert lengths.dtype == np.int64 and lengths.min() >= 1 and lengths.max() <= 10
    # The fixture zero-pads beyond the true length; the reader must keep the data untouched.
    for i, n in enumerate(lengths):
        assert np.all(data.train.audio[i, n:] == 0) and np.any(data.train.audio[i, :n] != 0)


@pytest.mark.parametrize(
    ("dims", "name"), [((768, 5, 20), "mosi"), ((768, 74, 35), "mosei"), ((32, 7, 9), "custom")]
)
def test_dataset_inferred_from_dims(mmsa_writer, dims, name):
    assert load_mmsa(mmsa_writer(dims=dims)).spec.name == name


def test_explicit_dataset_overrides_inference(mmsa_writer):
    assert load_mmsa(mmsa_writer(dims=(16, 5, 20)), dataset="custom").spec.name == "custom"
    with pytest.raises(ValueError, match="dataset='imdb'"):
        load_mmsa(mmsa_writer(), dataset="imdb")


def test_sims_unimodal_labels_and_range(sims_pkl):
    data = load_mmsa(sims_pkl)
    assert data.spec.name == "sims" and data.spec.metric_family == "sims"
    assert data.spec.label_range == (-1.0, 1.0)
    assert set(data.train.unimodal_labels) == {"T", "A", "V"}
    for y in data.train.unimodal_labels.values():
        assert y.shape == (12,) and y.dtype == np.float32 and np.abs(y).max() <= 1
    assert "regression_labels_T" in describe(data)


def test_sims_labels_outside_minus1_1_rejected(mmsa_writer):
    path = mmsa_writer(
        sims=True, dims=(768, 33, 709), aligned=False, mutate=_setitem("train", "regression_labels_A", 5, 1.5)
    )
    with pytest.raises(DataValidationError) as info:
        load_mmsa(path)
    msg = str(info.value)
    assert all(
        s in msg for s in (str(path), "'train'", "regression_labels_A", "[-1, 1]", "found 1.5", "sample 5")
    )


@pytest.mark.filterwarnings("ignore::emodistill.data.hashes.DataHashWarning")  # dataset="sims" claims SIMS
def test_sims_without_unimodal_labels_rejected(mmsa_writer):
    path = mmsa_writer(aligned=False, mutate=lambda d: None)
    with pytest.raises(DataValidationError, match="regression_labels_T"):
        load_mmsa(path, dataset="sims")


def test_optional_keys_get_defaults_and_notes(mmsa_writer):
    def drop(d):
        for split in d.values():
            del split["id"], split["raw_text"], split["annotations"], split["classification_labels"]

    data = load_mmsa(mmsa_writer(mutate=drop))
    assert data.test.ids[:2] == ["test_00000", "test_00001"] and data.test.raw_text[0] == ""
    assert any("no 'id' key" in note for note in data.notes)


def test_labels_stored_as_column_are_flattened(mmsa_writer):
    data = load_mmsa(mmsa_writer(mutate=_set("train", "regression_labels", lambda y: y[:, None])))
    assert data.train.labels.shape == (12,)


# --- validation messages ------------------------------------------------------------------------------

CASES = {
    "missing split": (lambda d: d.pop("test"), ["missing split", "'test'", "found ['train', 'valid']"]),
    "missing key": (_delete("valid", "audio"), ["split 'valid'", "key 'audio'", "missing", "expected keys"]),
    "count mismatch": (
        _set("valid", "regression_labels", lambda y: y[:-1]),
        ["split 'valid'", "key 'regression_labels'", "expected 4 samples", "found 3"],
    ),
    "id count": (
        _set("train", "id", lambda a: a[:5]),
        ["split 'train'", "key 'id'", "expected 12", "found 5"],
    ),
    "wrong rank": (
        _set("train", "audio", lambda a: a[..., 0]),
        ["split 'train'", "key 'audio'", "expected rank 3", "found shape (12, 10)"],
    ),
    "dims differ": (
        _set("test", "vision", lambda a: a[..., :-1]),
        ["split 'test'", "key 'vision'", "expected feature dim 6", "found 5"],
    ),
    "seq len differs": (
        _set("test", "audio", lambda a: a[:, :-1]),
        ["split 'test'", "key 'audio'", "expected sequence length 10", "found 9"],
    ),
    "text_bert channels": (
        _set("train", "text_bert", lambda a: a[:, :2]),
        ["split 'train'", "key 'text_bert'", "expected shape (N, 3, 8)", "found (12, 2, 8)"],
    ),
    "text_bert T_l": (
        _set("train", "text_bert", lambda a: a[:, :, :-1]),
        ["key 'text_bert'", "expected shape (N, 3, 8)", "found (12, 3, 7)"],
    ),
    "length too long": (
        _setitem("train", "audio_lengths", 2, 11),
        ["split 'train'", "key 'audio_lengths'", "expected lengths in [0, 10]", "found 11", "sample 2"],
    ),
    "length negative": (
        _setitem("valid", "vision_lengths", 1, -1),
        ["split 'valid'", "key 'vision_lengths'", "[0, 12]", "found -1", "sample 1"],
    ),
    "length fractional": (
        _set("train", "audio_lengths", lambda a: a.astype(np.float64) + 0.5),
        ["key 'audio_lengths'", "expected whole numbers", "in sample 0"],
    ),
    "one lengths key": (
        _delete("train", "vision_lengths"),
        ["split 'train'", "key 'vision_lengths'", "missing", "expected both lengths or neither"],
    ),
    "alignment differs": (
        lambda d: (d["test"].pop("audio_lengths"), d["test"].pop("vision_lengths")),
        ["split 'test'", "key 'audio_lengths'", "expected *_lengths keys"],
    ),
    "label out of range": (
        _setitem("valid", "regression_labels", 1, 3.5),
        ["split 'valid'", "key 'regression_labels'", "expected labels in [-3, 3]", "found 3.5", "sample 1"],
    ),
    "text not numeric": (
        _set("train", "text", lambda a: np.array(["x"] * len(a), dtype=object)),
        ["split 'train'", "key 'text'", "expected a float32 array"],
    ),
    "text_bert only in train": (
        _delete("test", "text_bert"),
        ["split 'test'", "key 'text_bert'", "expected present"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_errors_name_file_split_key_expected_found(mmsa_writer, case):
    mutate, needles = CASES[case]
    path = mmsa_writer(aligned=False, dims=(16, 4, 6), lens=(8, 10, 12), mutate=mutate)
    with pytest.raises(DataValidationError) as info:
        load_mmsa(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_zero_length_is_accepted_and_noted(mmsa_writer):
    def zero(d):
        d["train"]["vision_lengths"][3] = 0
        d["train"]["vision"][3] = 0

    data = load_mmsa(mmsa_writer(aligned=False, mutate=zero))
    assert data.train.vision_lengths[3] == 0
    assert "train/vision_lengths: 1 samples have length 0 (no valid frames)" in data.notes


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope" / "aligned_50.pkl"
    with pytest.raises(FileNotFoundError, match="nope/aligned_50.pkl"):
        load_dataset(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_mmsa(missing)


# --- non-finite values ------------------------------------------------------------------------------


def test_audio_neg_inf_set_to_zero_like_mmsa(mmsa_writer):
    def poison(d):
        d["train"]["audio"][0, 0, 0] = -np.inf
        d["train"]["audio"][5, 1, 2] = -np.inf
        d["test"]["audio"][1, 0, 1] = -np.inf

    data = load_mmsa(mmsa_writer(mutate=poison))
    assert data.train.audio[0, 0, 0] == 0.0 and data.train.audio[5, 1, 2] == 0.0
    assert data.test.audio[1, 0, 1] == 0.0
    assert np.isfinite(data.train.audio).all()
    assert "train/audio: 2 -inf values set to 0 (as MMSA's loader does)" in data.notes
    assert "test/audio: 1 -inf values set to 0 (as MMSA's loader does)" in data.notes


@pytest.mark.parametrize(
    ("key", "value"), [("vision", np.nan), ("text", np.inf), ("audio", np.inf), ("vision", -np.inf)]
)
def test_other_nonfinite_is_an_error_unless_replaced(mmsa_writer, key, value):
    def poison(d):
        d["valid"][key][2, 0, 0] = value
        d["valid"][key][3, 0, 1] = value

    path = mmsa_writer(mutate=poison)
    with pytest.raises(DataValidationError) as info:
        load_mmsa(path)
    msg = str(info.value)
    for needle in (str(path), "split 'valid'", f"key '{key}'", "found 2 non-finite", "first in sample 2"):
        assert needle in msg

    data = load_mmsa(path, replace_nonfinite=True)
    arr = getattr(data.valid, key)
    assert arr[2, 0, 0] == 0.0 and arr[3, 0, 1] == 0.0 and np.isfinite(arr).all()
    assert any(note.startswith(f"valid/{key}: 2 non-finite values") for note in data.notes)


def test_nonfinite_label_is_never_replaced(mmsa_writer):
    path = mmsa_writer(mutate=_setitem("train", "regression_labels", 4, np.nan))
    with pytest.raises(DataValidationError, match="key 'regression_labels'.*non-finite, first in sample 4"):
        load_mmsa(path, replace_nonfinite=True)


# --- SHA-256 ----------------------------------------------------------------------------------------


def test_hash_match_identifies_file(mmsa_writer, monkeypatch):
    path = mmsa_writer("whatever_name.pkl", dims=(16, 4, 6))  # dims alone would say "custom"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(hashes.PUBLISHED_SHA256, "MOSEI/Processed/aligned_50.pkl", sha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mmsa(path)
    assert data.hash_status == "match (MOSEI/Processed/aligned_50.pkl)"
    assert data.spec.name == "mosei"
    assert data.sha256 == sha


def test_hash_match_names_mosi(mmsa_writer, monkeypatch):
    path = mmsa_writer("mine.pkl", dims=(16, 4, 6))
    monkeypatch.setitem(
        hashes.PUBLISHED_SHA256,
        "MOSI/Processed/aligned_50.pkl",
        hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    data = load_mmsa(path)
    assert data.spec.name == "mosi" and data.hash_status == "match (MOSI/Processed/aligned_50.pkl)"


def test_published_name_with_other_bytes_warns_or_raises(mmsa_writer):
    path = mmsa_writer("MOSI/Processed/aligned_50.pkl", dims=(16, 4, 6))  # the folder names the data set
    with pytest.warns(DataHashWarning, match="MOSI/Processed/aligned_50.pkl"):
        data = load_mmsa(path)
    assert data.hash_status.startswith("mismatch")
    with pytest.raises(DataHashError, match="differs from the published MOSI/Processed/aligned_50.pkl"):
        load_mmsa(path, strict_hash=True)


def test_explicit_dataset_claim_checks_hash(mmsa_writer):
    path = mmsa_writer("my_mosei.pkl", aligned=False, dims=(768, 74, 35))
    with pytest.warns(DataHashWarning, match="MOSEI/Processed/unaligned_50.pkl"):
        load_mmsa(path, dataset="mosei")


def test_unclaimed_file_is_unknown_without_warning(mmsa_writer):
    path = mmsa_writer("features.pkl", dims=(768, 5, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mmsa(path, strict_hash=True)
    assert data.hash_status == "unknown (not a published MMSA file)"


def test_file_is_hashed_once(aligned_pkl, monkeypatch):
    calls = []
    real = hashes.file_sha256

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr("emodistill.data.mmsa.file_sha256", counting)
    load_mmsa(aligned_pkl)
    assert len(calls) == 1


# --- check report -----------------------------------------------------------------------------------


def test_describe_reports_everything(unaligned_pkl):
    data = load_mmsa(unaligned_pkl)
    text = describe(data)
    for needle in (
        str(unaligned_pkl),
        data.sha256,
        "unknown (not a published MMSA file)",
        "mosi (unaligned)",
        "[train] 12 samples",
        "(12, 10, 5)",
        "float32",
        "length audio",
        "length text (mask)",
        "Acc-7 classes",
        "notes:     none",
    ):
        assert needle in text, needle
    names, counts = label_bins(data.train.labels, "mosi")
    assert names[0] == "-3" and counts.sum() == 12


def test_label_bins_follow_mmsa_rules():
    # MOSI: np.round half to even -> 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; -3.4 clips to -3.
    _, counts = label_bins(np.array([0.5, 1.5, 2.5, -3.4, 0.4]), "mosi")
    np.testing.assert_array_equal(counts, [1, 0, 0, 2, 0, 2, 0])
    # SIMS: (lo, hi] intervals -0.7 -> first bin, 0.1 -> neutral, 0.7 -> weak positive.
    _, counts = label_bins(np.array([-1.0, -0.7, -0.69, 0.1, 0.7, 0.71]), "sims")
    np.testing.assert_array_equal(counts, [2, 1, 1, 1, 1])
    # float32 labels (as loaded) are binned in float32 like the SIMS metric: 0.1f neutral, -0.7f negative.
    names, counts = label_bins(np.array([-1.0, -0.7, -0.69, 0.1, 0.7, 0.71], dtype=np.float32), "sims")
    np.testing.assert_array_equal(counts, [2, 1, 1, 1, 1])
    assert tuple(names) == SIMS_CLASS_NAMES
