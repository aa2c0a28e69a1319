"""MUStARD reader: fixtures written in the release's layout (JSON, BERT JSONL, pickle, HDF5)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from emodistill.data import DataValidationError, UnsafePickleError, load_dataset, reader_options
from emodistill.data.check import describe
from emodistill.data.mustard import VIDEO_FILE, load_mustard

h5py = pytest.importorskip("h5py")

D_T, D_A, D_V = 4, 3, 5
# id -> (show, sarcasm, BERT tokens, audio segments, video frames); the JSON order is the row order
UTTERANCES: dict[str, tuple[str, bool, int, int, int]] = {
    "1_60": ("BBT", True, 3, 2, 4),
    "1_70": ("FRIENDS", False, 5, 3, 10),
    "1_80": ("BBT", False, 2, 4, 3),
    "2_10": ("FRIENDS", True, 4, 2, 6),
    "2_20": ("GOLDENGIRLS", True, 3, 5, 5),
    "2_30": ("BBT", True, 6, 3, 2),
    "2_40": ("SARCASMOHOLICS", True, 2, 2, 7),
    "2_50": ("FRIENDS", False, 3, 4, 4),
    "2_60": ("BBT", False, 4, 3, 8),
}
FOLDS = [([1, 2, 3, 4, 5, 6, 7], [0, 8]), ([0, 2, 3, 4, 5, 6, 8], [1, 7]), ([0, 1, 4, 5, 6, 7, 8], [2, 3]),
         ([0, 1, 2, 3, 6, 7, 8], [4, 5]), ([0, 1, 2, 3, 4, 5, 7, 8], [6])]


def token(row: int, t: int, layer: int) -> list[float]:
    """BERT values of token t of utterance ``row`` in layer ``layer`` (0..1)."""
    return [row * 10 + t + layer * 0.5 + d * 0.25 for d in range(D_T)]


def token_mean(row: int, t: int) -> list[float]:
    """Mean of the fixture's two layers: the 0 and 0.5 offsets average to 0.25."""
    return [row * 10 + t + 0.25 + d * 0.25 for d in range(D_T)]


def audio(row: int, segments: int) -> np.ndarray:
    """(D_A, segments): the release stores features first."""
    return np.array([[row * 100 + f * 10 + s for s in range(segments)] for f in range(D_A)], dtype=np.float32)


def frames(row: int, n: int) -> np.ndarray:
    """(n, D_V): frame f of utterance ``row`` holds row * 1000 + f * 10 + d."""
    return np.array([[row * 1000 + f * 10 + d for d in range(D_V)] for f in range(n)], dtype=np.float32)


def write_release(root: Path, utterances=UTTERANCES, *, bert_lines=None, folds=FOLDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = {
        clip: {"utterance": f"utterance {clip}", "speaker": "SHELDON", "context": ["before"],
               "context_speakers": ["LEONARD"], "show": show, "sarcasm": label}
        for clip, (show, label, *_) in utterances.items()
    }
    (root / "sarcasm_data.json").write_text(json.dumps(meta))
    lines = []
    for row, (_, _, n_tok, _, _) in enumerate(utterances.values()):
        feats = [{"token": f"tok{t}", "layers": [{"index": -1 - layer, "values": token(row, t, layer)}
                                                 for layer in range(2)]} for t in range(n_tok)]
        lines.append(json.dumps({"linex_index": row, "features": feats}))
    (root / "bert-output.jsonl").write_text("\n".join(bert_lines if bert_lines is not None else lines) + "\n")
    feats = {clip: audio(row, u[3]) for row, (clip, u) in enumerate(utterances.items())}
    (root / "audio_features.p").write_bytes(pickle.dumps(feats, protocol=2))
    (root / VIDEO_FILE).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / VIDEO_FILE, "w") as f:
        for row, (clip, u) in enumerate(utterances.items()):
            f.create_dataset(clip, data=frames(row, u[4]))
    folds = [(np.array(tr, dtype=np.int64), np.array(te, dtype=np.int64)) for tr, te in folds]
    (root / "split_indices.p").write_bytes(pickle.dumps(folds, protocol=2))
    return root


@pytest.fixture
def mustard_dir(tmp_path: Path) -> Path:
    return write_release(tmp_path / "mustard")


IDS = list(UTTERANCES)


def rows_of(split) -> list[int]:
    return [IDS.index(c) for c in split.ids]


# --- reading -----------------------------------------------------------------------------------------


def test_speaker_independent_split_holds_out_friends(mustard_dir):
    data = load_mustard(mustard_dir, valid_fraction=0.25, seed=3)
    assert data.test.ids == ["1_70", "2_10", "2_50"]  # every FRIENDS utterance, in file order
    assert data.test.labels.tolist() == [0.0, 1.0, 0.0]
    pool = ["1_60", "1_80", "2_20", "2_30", "2_40", "2_60"]  # the other shows: labels 1, 0, 1, 1, 1, 0
    assert sorted(data.train.ids + data.valid.ids) == sorted(pool) and not set(data.train.ids) & set(data.valid.ids)
    # stratified carve-out: floor(0.25 * 4 + 1/2) = 1 of the four 1s, floor(0.25 * 2 + 1/2) = 1 of the two 0s
    assert sorted(data.valid.labels.tolist()) == [0.0, 1.0]
    assert data.train.ids == sorted(data.train.ids, key=IDS.index)  # file order kept
    again = load_mustard(mustard_dir, valid_fraction=0.25, seed=3)
    assert again.valid.ids == data.valid.ids
    seeds = {tuple(load_mustard(mustard_dir, valid_fraction=0.25, seed=s).valid.ids) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    spec = data.spec
    assert spec.name == "mustard" and spec.task == "binary" and not spec.aligned and not spec.has_text_bert
    assert spec.feature_dims == {"text": D_T, "audio": D_A, "vision": D_V}
    # text and audio: the longest utterance's token / segment count; vision: the default 100 frames
    assert spec.seq_lens == {"text": 6, "audio": 5, "vision": 100}
    assert spec.extra == {"reader": "mustard", "split": "speaker_independent", "test_show": "FRIENDS",
                          "valid_fraction": 0.25, "seed": 3, "text_len": 6, "audio_len": 5, "vision_len": 100}


def test_values_land_where_expected(mustard_dir):
    data = load_mustard(mustard_dir, valid_fraction=0.25, vision_len=None)  # None: the most frames (10)
    te = data.test  # rows 1 (1_70), 3 (2_10), 7 (2_50)
    assert te.text.shape == (3, 6, D_T) and te.audio.shape == (3, 5, D_A) and te.vision.shape == (3, 10, D_V)
    # text: one vector per token, the mean of the layers, zero-padded on the right
    np.testing.assert_allclose(te.text[0, :5], [token_mean(1, t) for t in range(5)])
    assert not te.text[0, 5:].any()
    # audio: the (D_A, S) array transposed to (S, D_A)
    np.testing.assert_array_equal(te.audio[1, :2], audio(3, 2).T)
    assert not te.audio[1, 2:].any()
    np.testing.assert_array_equal(te.vision[2, :4], frames(7, 4))
    assert te.audio_lengths.tolist() == [3, 2, 4] and te.vision_lengths.tolist() == [10, 6, 4]
    assert te.text_lengths().tolist() == [5, 4, 3]
    assert te.raw_text == ["utterance 1_70", "utterance 2_10", "utterance 2_50"]
    assert te.text.dtype == te.audio.dtype == te.vision.dtype == te.labels.dtype == np.float32


def test_fixed_lengths_shorten_text_by_head_and_frames_uniformly(mustard_dir):
    data = load_mustard(mustard_dir, valid_fraction=0.25, text_len=2, audio_len=2, vision_len=4)
    te = data.test
    np.testing.assert_allclose(te.text[0], [token_mean(1, 0), token_mean(1, 1)])  # first tokens
    # 10 frames -> 4: bin centres floor((j + 1/2) * 10 / 4) = 1, 3, 6, 8
    np.testing.assert_array_equal(te.vision[0], frames(1, 10)[[1, 3, 6, 8]])
    # 3 audio segments -> 2: floor(0.75) = 0, floor(2.25) = 2
    np.testing.assert_array_equal(te.audio[0], audio(1, 3).T[[0, 2]])
    assert te.vision_lengths.tolist() == [4, 4, 4] and te.audio_lengths.tolist() == [2, 2, 2]
    assert data.spec.seq_lens == {"text": 2, "audio": 2, "vision": 4}
    assert "vision: 5 utterances longer than 4 were shortened (uniform)" in data.notes  # 10, 6, 5, 7, 8


def test_fold_split_uses_split_indices(mustard_dir):
    data = load_mustard(mustard_dir, split="fold", fold=2, valid_fraction=0.3, seed=0)
    assert rows_of(data.test) == [1, 7]
    assert sorted(rows_of(data.train) + rows_of(data.valid)) == [0, 2, 3, 4, 5, 6, 8]
    # pool labels: rows 0, 3, 4, 5, 6 are 1 (5 -> floor(1.5 + .5) = 2 held out); rows 2, 8 are 0 (-> 1)
    assert sorted(data.valid.labels.tolist()) == [0.0, 1.0, 1.0]
    assert data.spec.extra["split"] == "fold" and data.spec.extra["fold"] == 2
    assert "test_show" not in data.spec.extra
    # the recorded options reload the same fold, carve-out and shapes (what evaluating a checkpoint needs)
    again = load_dataset(mustard_dir, options=reader_options(data.spec))
    assert again.spec == data.spec and again.valid.ids == data.valid.ids and again.test.ids == data.test.ids
    with pytest.raises(ValueError, match="fold=6; .*split_indices.p has folds 1-5"):
        load_mustard(mustard_dir, split="fold", fold=6)


def test_load_dataset_and_describe(mustard_dir):
    data = load_dataset(mustard_dir, options={"valid_fraction": 0.25, "vision_len": 4})
    assert data.spec.name == "mustard" and data.spec.seq_lens["vision"] == 4
    text = describe(data)
    assert "labels (binary 0/1):" in text and "task binary" in text
    assert "length audio" in text and "[test] 3 samples" in text


# --- validation -------------------------------------------------------------------------------------------


def test_missing_files_and_h5py_extra(tmp_path, mustard_dir, monkeypatch):
    (mustard_dir / VIDEO_FILE).unlink()
    (mustard_dir / "split_indices.p").unlink()
    with pytest.raises(FileNotFoundError, match="lacks features/utterances_final/resnet_pool5.hdf5 \\(ResNet"):
        load_mustard(mustard_dir)
    with pytest.raises(FileNotFoundError, match="split_indices.p \\(the 5 speaker-dependent folds"):
        load_mustard(mustard_dir, split="fold")
    root = write_release(tmp_path / "again")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"pip install emodistill\[mustard\]"):
        load_mustard(root)


def _edit_json(root: Path, edit) -> Path:
    meta = json.loads((root / "sarcasm_data.json").read_text())
    edit(meta)
    (root / "sarcasm_data.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m["2_20"].update(sarcasm="yes"),
         r"sarcasm_data.json: id '2_20' key 'sarcasm': expected a binary label .* found 'yes'"),
        (lambda m: m["2_20"].pop("show"), r"sarcasm_data.json: id '2_20' key 'show': missing"),
        (lambda m: m.update({"9_99": dict(m["2_20"])}),
         r"bert-output.jsonl: expected 10 lines \(one per utterance of sarcasm_data.json\), found 9"),
    ],
)
def test_malformed_metadata(mustard_dir, edit, match):
    with pytest.raises(DataValidationError, match=match):
        load_mustard(_edit_json(mustard_dir, edit))


def test_malformed_features(tmp_path):
    bad_index = [json.dumps({"linex_index": 5, "features": [{"token": "a", "layers": [{"values": [0.0] * D_T}]}]})]
    root = write_release(tmp_path / "a", bert_lines=bad_index * len(UTTERANCES))
    with pytest.raises(DataValidationError, match="bert-output.jsonl: id '1_60': line 1: expected linex_index 0"):
        load_mustard(root)

    root = write_release(tmp_path / "b")
    feats = pickle.loads((root / "audio_features.p").read_bytes())
    del feats["2_30"]
    feats["2_40"] = np.ones((D_A + 1, 2))
    (root / "audio_features.p").write_bytes(pickle.dumps(feats, protocol=2))
    with pytest.raises(DataValidationError, match="audio_features.p: 1 utterance ids of sarcasm_data.json are "
                       "missing: '2_30'"):
        load_mustard(root)
    feats["2_30"] = audio(5, 3)
    (root / "audio_features.p").write_bytes(pickle.dumps(feats, protocol=2))
    with pytest.raises(DataValidationError, match="audio_features.p: id '2_40': expected 3 features per step"):
        load_mustard(root)

    root = write_release(tmp_path / "c")
    with h5py.File(root / VIDEO_FILE, "a") as f:
        del f["2_50"]
        f.create_dataset("2_50", data=np.full((3, D_V), np.nan, dtype=np.float32))
    with pytest.raises(DataValidationError, match="id '2_50' key 'test/vision': expected finite values, found 15"):
        load_mustard(root, valid_fraction=0.25)
    data = load_mustard(root, valid_fraction=0.25, replace_nonfinite=True)
    assert not data.test.vision[2].any()
    assert "test/vision: 15 non-finite values (15 NaN, 0 inf) set to 0 (replace_nonfinite)" in data.notes


def test_split_options_are_checked(mustard_dir):
    with pytest.raises(ValueError, match="valid_fraction=0.1 leaves 6 train and 0 validation utterances out of 6"):
        load_mustard(mustard_dir)  # 10% of 4 and of 2 rounds to 0
    with pytest.raises(DataValidationError, match="expected utterances of test_show='SEINFELD', found shows"):
        load_mustard(mustard_dir, test_show="SEINFELD")
    with pytest.raises(ValueError, match="valid_fraction=0.0 must be in \\(0, 1\\)"):
        load_mustard(mustard_dir, valid_fraction=0.0)
    with pytest.raises(ValueError, match="split='random'"):
        load_mustard(mustard_dir, split="random")


def test_malicious_audio_pickle_is_refused(mustard_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (mustard_dir / "audio_features.p").write_bytes(pickle.dumps({"1_60": Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="audio_features.p: refused global"):
        load_mustard(mustard_dir)
    assert not marker.exists()


# --- end to end ----------------------------------------------------------------------------------------


def test_train_and_evaluate_binary_from_the_cli(mustard_dir, tmp_path, capsys):
    from emodistill.cli import main

    run = tmp_path / "run"
    tiny = {"d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 1, "kernel_a": 1, "kernel_v": 1,
            "gd_size_homo": 4, "gd_size_hetero": 4, "dict_size": 5}
    args = ["train", "--model", "dhmd", "--data", str(mustard_dir), "--epochs", "1", "--quiet", "--run-dir",
            str(run), "--train.batch_size", "4", "--train.update_every", "1", "--train.device", "cpu",
            "--data.options", "{split: fold, fold: 2, valid_fraction: 0.3}"]
    args += [x for k, v in tiny.items() for x in (f"--model.{k}", str(v))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "F1_weighted" in out and "Acc_2" in out and "Mult_acc_7" not in out
    results = json.loads((run / "results.json").read_text())
    assert set(results["test"]) >= {"Acc_2", "F1_weighted", "F1_macro", "AUC", "BCE", "loss"}
    assert results["test"]["loss"] == pytest.approx(results["test"]["BCE"])  # selection criterion = BCE
    # evaluate re-reads the directory with the checkpoint's options: the same 2 test rows of fold 2
    assert main(["evaluate", str(run / "best.ckpt"), "--data", str(mustard_dir), "--json", "--device", "cpu",
                 "--output", str(tmp_path / "pred.csv")]) == 0
    evaluated = json.loads(capsys.readouterr().out.split("predictions:")[0])
    assert evaluated["Acc_2"] == pytest.approx(results["test"]["Acc_2"])
    ids = [line.split(",")[0] for line in (tmp_path / "pred.csv").read_text().splitlines()[1:]]
    assert ids == ["1_70", "2_50"]  # fold 2's test rows 1 and 7
