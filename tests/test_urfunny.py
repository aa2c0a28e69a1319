"""UR-FUNNY v2 reader: fixtures written in the release's pickle layout, values checked by hand."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from emodistill.data import DataValidationError, UnsafePickleError, load_dataset, reader_options
from emodistill.data.check import describe
from emodistill.data.loader import BatchLoader
from emodistill.data.urfunny import load_urfunny

D_L, D_A, D_V = 3, 2, 4
VOCAB = 9


def emb(w: int) -> list[float]:
    """Word vector of row w of the fixture's word_embedding_list: [w, 10 + w, 100 + w]."""
    return [float(w), 10.0 + w, 100.0 + w]


def audio_row(clip: int, sent: int, word: int) -> list[float]:
    """COVAREP row of word ``word`` of sentence ``sent`` (-1: punchline) of ``clip``."""
    return [clip * 100 + sent * 10 + word, -(clip * 100 + sent * 10 + word)]


def vision_row(clip: int, sent: int, word: int) -> list[float]:
    return [clip + 0.5, sent + 0.25, word, 7.0]


# clip id -> (context sentences as word-index lists, punchline word indexes, label)
CLIPS: dict[int, tuple[list[list[int]], list[int], int]] = {
    1: ([[1, 2], [3]], [4, 5, 6], 1),
    2: ([], [7, 8], 0),
    3: ([[2, 2, 2]], [1, 3, 5, 7], 1),
    4: ([[8]], [6], 0),
    5: ([], [0, 4], 1),
    9: ([], [1], 0),  # in the pickles but in no fold
}
FOLDS = {"train": [1, 2, 3], "dev": [4], "test": [5]}


def release(clips=CLIPS, folds=FOLDS) -> dict[str, object]:
    """The six v2 pickles' objects for ``clips``, as the README describes them."""
    lang, cov, of, labels = {}, {}, {}, {}
    for c, (ctx, punch, y) in clips.items():
        lang[c] = {
            "punchline_embedding_indexes": list(punch),
            "context_embedding_indexes": [list(s) for s in ctx],
            "punchline_sentence": f"punch {c}",
            "context_sentences": [f"ctx {c}.{s}" for s in range(len(ctx))],
            "punchline_intervals": [[0.1 * i, 0.1 * i + 0.1] for i in range(len(punch))],
            "context_intervals": [[[0.0, 0.1]] * len(s) for s in ctx],
        }
        cov[c] = {
            # numpy arrays (an empty sentence is a (0, D_A) array, pickled as bytes() by protocol 2)
            "punchline_features": np.array([audio_row(c, 9, w) for w in range(len(punch))], float).reshape(-1, D_A),
            "context_features": [np.array([audio_row(c, s, w) for w in range(len(ws))], float)
                                 for s, ws in enumerate(ctx)],
        }
        of[c] = {
            "punchline_features": [vision_row(c, 9, w) for w in range(len(punch))],  # lists, as the README shows
            "context_features": [[vision_row(c, s, w) for w in range(len(ws))] for s, ws in enumerate(ctx)],
        }
        labels[c] = y
    return {
        "data_folds.pkl": dict(folds),
        "language_sdk.pkl": lang,
        "word_embedding_list.pkl": [np.array(emb(w)) for w in range(VOCAB)],
        "covarep_features_sdk.pkl": cov,
        "openface_features_sdk.pkl": of,
        "humor_label_sdk.pkl": labels,
    }


def write(root: Path, objects: dict[str, object]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, obj in objects.items():
        (root / name).write_bytes(pickle.dumps(obj, protocol=2))  # protocol 2, as Python-2 era releases
    return root


@pytest.fixture
def urfunny_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "urfunny", release())


# --- reading -----------------------------------------------------------------------------------------


def test_punchline_only_values_lengths_and_splits(urfunny_dir):
    data = load_urfunny(urfunny_dir, max_len=4)
    assert {k: s.ids for k, s in data.splits.items()} == {"train": ["1", "2", "3"], "valid": ["4"], "test": ["5"]}
    tr = data.train
    assert tr.text.shape == (3, 4, D_L) and tr.audio.shape == (3, 4, D_A) and tr.vision.shape == (3, 4, D_V)
    assert tr.text.dtype == np.float32 and tr.labels.dtype == np.float32
    assert tr.audio_lengths.tolist() == [3, 2, 4] and tr.vision_lengths.tolist() == [3, 2, 4]
    assert tr.labels.tolist() == [1.0, 0.0, 1.0]
    # clip 1: punchline words 4, 5, 6 then one zero pad row
    np.testing.assert_array_equal(tr.text[0], [emb(4), emb(5), emb(6), [0, 0, 0]])
    np.testing.assert_array_equal(tr.audio[0], [[190, -190], [191, -191], [192, -192], [0, 0]])
    np.testing.assert_array_equal(tr.vision[1, :2], [vision_row(2, 9, 0), vision_row(2, 9, 1)])
    assert not tr.vision[1, 2:].any()
    assert tr.raw_text == ["punch 1", "punch 2", "punch 3"] and tr.text_bert is None
    assert data.valid.labels.tolist() == [0.0] and data.test.labels.tolist() == [1.0]
    spec = data.spec
    assert spec.name == "urfunny" and spec.task == "binary" and spec.metric_family == "binary"
    assert spec.aligned and not spec.has_text_bert and spec.label_range == (0.0, 1.0)
    assert spec.feature_dims == {"text": D_L, "audio": D_A, "vision": D_V}
    assert spec.seq_lens == {"text": 4, "audio": 4, "vision": 4}
    assert spec.extra == {"reader": "urfunny", "context_sentences": 0, "max_len": 4, "drop_mismatched": False}
    assert data.notes == ["humor_label_sdk.pkl: 1 clips in no fold of data_folds.pkl are ignored"]
    assert data.hash_status.startswith("not checked") and data.sha256 is None


def test_context_is_prepended_and_oldest_words_are_cut_first(urfunny_dir):
    data = load_urfunny(urfunny_dir, context_sentences=2, max_len=4)
    tr = data.train
    # clip 1: context [1, 2], [3] + punchline [4, 5, 6] = 6 words > 4: the two oldest go
    np.testing.assert_array_equal(tr.text[0], [emb(3), emb(4), emb(5), emb(6)])
    np.testing.assert_array_equal(tr.audio[0], [[110, -110], [190, -190], [191, -191], [192, -192]])
    np.testing.assert_array_equal(tr.vision[0, 0], vision_row(1, 1, 0))
    # clip 2 has no context: punchline only; clip 3's punchline alone fills T: its first 4 words
    np.testing.assert_array_equal(tr.text[1, :2], [emb(7), emb(8)])
    np.testing.assert_array_equal(tr.text[2], [emb(1), emb(3), emb(5), emb(7)])
    assert tr.audio_lengths.tolist() == [4, 2, 4]
    assert tr.raw_text[0] == "ctx 1.0 ctx 1.1 punch 1"
    # valid clip 4: context [8] + punchline [6]
    np.testing.assert_array_equal(data.valid.text[0, :2], [emb(8), emb(6)])
    assert data.valid.audio_lengths.tolist() == [2]
    assert "train: 2 clips longer than max_len=4 words were shortened" in data.notes


def test_context_sentences_keeps_the_last_ones(urfunny_dir):
    data = load_urfunny(urfunny_dir, context_sentences=1, max_len=6)
    # clip 1: last context sentence [3] + punchline [4, 5, 6]
    np.testing.assert_array_equal(data.train.text[0, :4], [emb(3), emb(4), emb(5), emb(6)])
    assert data.train.audio_lengths.tolist() == [4, 2, 7 - 1]  # clip 3: [2, 2, 2] + 4 words = 7 -> 6
    np.testing.assert_array_equal(data.train.text[2], [emb(2), emb(2), emb(1), emb(3), emb(5), emb(7)])


def test_punchline_longer_than_max_len_keeps_its_first_words(urfunny_dir):
    data = load_urfunny(urfunny_dir, max_len=2)
    np.testing.assert_array_equal(data.train.text[2], [emb(1), emb(3)])
    np.testing.assert_array_equal(data.train.audio[2], [[390, -390], [391, -391]])


def test_empty_punchline_is_length_zero_and_noted(tmp_path):
    clips = dict(CLIPS)
    clips[4] = ([], [], 0)
    data = load_urfunny(write(tmp_path / "u", release(clips)), max_len=3)
    assert data.valid.audio_lengths.tolist() == [0] and not data.valid.text.any()
    assert "valid: 1 clips have no words (length 0)" in data.notes


def test_batches_and_describe(urfunny_dir):
    data = load_urfunny(urfunny_dir, max_len=4)
    batch = next(iter(BatchLoader(data.train, 3, shuffle=False)))
    assert batch["audio_lengths"].tolist() == [3, 2, 4] and batch["labels"].tolist() == [1.0, 0.0, 1.0]
    text = describe(data)
    assert f"directory: {urfunny_dir}" in text and "task binary, metric family binary" in text
    assert "labels (binary 0/1):" in text and "reader:    reader=urfunny, context_sentences=0, max_len=4" in text
    assert "labels (0/1)" in text and "regression_labels" not in text
    # train holds labels 1, 0, 1: one 0 and two 1s
    assert any(line.strip().startswith("0 |") and line.rstrip().endswith("1 (33.3%)") for line in text.splitlines())
    assert any(line.strip().startswith("1 |") and line.rstrip().endswith("2 (66.7%)") for line in text.splitlines())


# --- dispatch ------------------------------------------------------------------------------------------


def test_load_dataset_detects_the_directory_and_passes_options(urfunny_dir):
    data = load_dataset(urfunny_dir, options={"context_sentences": 1, "max_len": 6})
    assert data.spec.name == "urfunny" and data.spec.seq_lens["text"] == 6
    assert reader_options(data.spec) == {"context_sentences": 1, "max_len": 6, "drop_mismatched": False}
    assert load_dataset(str(urfunny_dir), dataset="urfunny").spec.extra["max_len"] == 50
    with pytest.raises(ValueError, match="options for 'urfunny'.*unexpected keyword argument 'fold'"):
        load_dataset(urfunny_dir, options={"fold": 2})
    with pytest.raises(ValueError, match="must be one of \\['mustard', 'urfunny'\\]"):
        load_dataset(urfunny_dir, dataset="mosi")


def test_load_dataset_rejects_unknown_directories_and_misplaced_options(tmp_path, aligned_pkl):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a recognised data directory.*urfunny: data_folds.pkl"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="reader options \\['max_len'\\] apply only to directory data sets"):
        load_dataset(aligned_pkl, options={"max_len": 3})
    with pytest.raises(ValueError, match="is read from a directory of release files"):
        load_dataset(aligned_pkl, dataset="urfunny")
    mmsa = load_dataset(aligned_pkl)
    assert mmsa.spec.task == "regression" and reader_options(mmsa.spec) == {}  # MMSA files unchanged


# --- validation -------------------------------------------------------------------------------------------


def test_missing_files_are_listed_with_what_they_hold(tmp_path):
    objects = release()
    del objects["openface_features_sdk.pkl"], objects["humor_label_sdk.pkl"]
    root = write(tmp_path / "u", objects)
    with pytest.raises(FileNotFoundError, match="lacks openface_features_sdk.pkl \\(per clip: word-level OpenFace2"
                       ".*humor_label_sdk.pkl \\(per clip: humour label 0/1\\)"):
        load_urfunny(root)
    (root / "language_sdk.pkl").rename(root / "word_embedding_indexes_sdk.pkl")
    write(root, {k: release()[k] for k in ("openface_features_sdk.pkl", "humor_label_sdk.pkl")})
    with pytest.raises(FileNotFoundError, match="UR-FUNNY v1, which is not supported"):
        load_urfunny(root)


def _broken(tmp_path: Path, edit) -> Path:
    objects = release()
    edit(objects)
    return write(tmp_path / "broken", objects)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda o: o["covarep_features_sdk.pkl"].pop(3),
         r"covarep_features_sdk.pkl: 1 clip ids of data_folds.pkl are missing: '3'"),
        (lambda o: o["data_folds.pkl"].pop("dev"),
         r"data_folds.pkl: expected a dict with keys \['train', 'dev', 'test'\], found \['test', 'train'\]"),
        (lambda o: o["data_folds.pkl"].update(test=[5, 2]),
         r"data_folds.pkl: id '2' key 'test': expected each clip in one fold, found it in 'train' and 'test'"),
        (lambda o: o["openface_features_sdk.pkl"][2].update(punchline_features=[[1.0, 2, 3, 4]]),
         r"language_sdk.pkl: id '2' key 'punchline_features': expected one row per word in every modality, "
         r"punchline: word counts differ \{'words': 2, 'audio': 2, 'vision': 1\}"),
        (lambda o: o["covarep_features_sdk.pkl"][2].update(punchline_features=np.ones((2, 3))),
         r"covarep_features_sdk.pkl: id '2' key 'punchline_features': expected 2 features per step"),
        (lambda o: o["language_sdk.pkl"][5].update(punchline_embedding_indexes=[0, 9]),
         r"language_sdk.pkl: id '5' key 'punchline_embedding_indexes': expected whole-number word indexes in "
         r"\[0, 9\).*found 9"),
        (lambda o: o["language_sdk.pkl"][2].pop("punchline_sentence"),
         r"language_sdk.pkl: id '2' key 'punchline_sentence': missing"),
        (lambda o: o["humor_label_sdk.pkl"].update({4: 2}),
         r"humor_label_sdk.pkl: id '4' key 'label': expected a binary label \(0/1 or true/false\), found 2"),
        (lambda o: o["word_embedding_list.pkl"].append(np.ones(2)),
         r"word_embedding_list.pkl: expected a list of equal-length word vectors"),
    ],
)
def test_malformed_files_fail_with_one_line(tmp_path, edit, match):
    with pytest.raises(DataValidationError, match=match) as err:
        load_urfunny(_broken(tmp_path, edit), max_len=4)
    assert "\n" not in str(err.value)


def test_context_mismatch_only_matters_when_context_is_used(tmp_path):
    root = _broken(tmp_path, lambda o: o["covarep_features_sdk.pkl"][1]["context_features"].pop())
    assert len(load_urfunny(root).train) == 3  # punchline only: the context is never read
    with pytest.raises(DataValidationError, match="id '1' key 'context_features'.*context sentence counts differ"):
        load_urfunny(root, context_sentences=1)


def test_drop_mismatched_drops_and_notes(tmp_path):
    root = _broken(tmp_path, lambda o: o["openface_features_sdk.pkl"][2].update(punchline_features=[[1.0] * 4]))
    data = load_urfunny(root, drop_mismatched=True, max_len=4)
    assert data.train.ids == ["1", "3"]
    assert "1 clips whose word counts differ between modalities dropped (drop_mismatched): '2'" in data.notes
    root = _broken(tmp_path / "all", lambda o: o["openface_features_sdk.pkl"][4].update(punchline_features=[]))
    with pytest.raises(DataValidationError, match="key 'dev': every clip of this fold was dropped"):
        load_urfunny(root, drop_mismatched=True)


def test_nonfinite_policy(tmp_path):
    def edit(o):
        o["covarep_features_sdk.pkl"][2]["punchline_features"][1, 0] = -np.inf  # COVAREP silence
        o["openface_features_sdk.pkl"][3]["punchline_features"][2][1] = float("nan")

    root = _broken(tmp_path, edit)
    with pytest.raises(DataValidationError, match="id '3' key 'train/vision': expected finite values, found 1 "
                       "non-finite \\(1 NaN, 0 inf\\); pass replace_nonfinite=True"):
        load_urfunny(root, max_len=4)
    data = load_urfunny(root, max_len=4, replace_nonfinite=True)
    assert data.train.audio[1, 1, 0] == 0.0 and data.train.vision[2, 2, 1] == 0.0
    assert "train/audio: 1 -inf values set to 0 (as MMSA's loader does for audio)" in data.notes
    assert "train/vision: 1 non-finite values (1 NaN, 0 inf) set to 0 (replace_nonfinite)" in data.notes


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["humor_label_sdk.pkl", "word_embedding_list.pkl", "data_folds.pkl"])
def test_malicious_pickle_is_refused_without_running(tmp_path, name):
    marker = tmp_path / "pwned"
    root = write(tmp_path / "u", release())
    (root / name).write_bytes(pickle.dumps({1: _Exploit(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match=f"{name}: refused global"):
        load_urfunny(root)
    assert not marker.exists()
