"""Extraction pieces that need no media libraries: labels CSV, transcripts and timings, word alignment,
normalisation and padding, the extraction config."""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.extract.align import to_tokens, word_means
from emodistill.extract.asr import Word
from emodistill.extract.config import ExtractConfig, load_extract_config
from emodistill.extract.errors import ExtractError
from emodistill.extract.features import fit_normalization, normalize, pad
from emodistill.extract.labels import read_labels
from emodistill.extract.transcript import read_timing_file, spread_words, voiced_span


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --- labels CSV ------------------------------------------------------------------------------------------


def test_labels_our_layout_with_sidecar_timing(tmp_path):
    _touch(tmp_path / "v" / "a.mp4")
    _touch(tmp_path / "v" / "b.mp4")
    (tmp_path / "v" / "b.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    csv = tmp_path / "labels.csv"
    csv.write_text("video,text,label,split\na.mp4,good movie,1.5,train\nb.mp4,bad,-2,dev\n")
    jobs = read_labels(csv, tmp_path / "v")
    assert [(j.clip_id, j.split, j.label, j.transcript) for j in jobs] == [
        ("a", "train", 1.5, "good movie"),
        ("b", "valid", -2.0, "bad"),
    ]
    assert jobs[0].timing is None and jobs[1].timing == tmp_path / "v" / "b.srt"


def test_labels_mmsa_layout(tmp_path):
    _touch(tmp_path / "Raw" / "vidA" / "0001.mp4")
    csv = tmp_path / "label.csv"
    csv.write_text(
        "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
        "vidA,0001,so nice,0.8,1.0,0.6,0.4,Positive,test\n"
    )
    (job,) = read_labels(csv, tmp_path)  # the data-set folder: Raw/ is tried
    assert job.clip_id == "vidA$_$0001" and job.split == "test"
    assert job.video == tmp_path / "Raw" / "vidA" / "0001.mp4"
    assert job.unimodal == {"T": 1.0, "A": 0.6, "V": 0.4}


@pytest.mark.parametrize(
    "body, message",
    [
        ("video,text,label,split\na.mp4,x,high,train\n", "row 2: column 'label' must be a number, found 'high'"),
        ("video,text,label,split\na.mp4,x,1,holdout\n", "row 2: column 'split' must be train, valid or test"),
        ("video,text,label,split\na.mp4,x,1,train\na.mp4,y,2,test\n", "row 3: clip id 'a' repeats row 2"),
        ("video,text,split\na.mp4,x,train\n", "missing column 'label'"),
        ("name,label,split\na.mp4,1,train\n", "needs a 'video' column"),
    ],
)
def test_labels_errors_name_row_and_column(tmp_path, body, message):
    (tmp_path / "v").mkdir()
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        read_labels(csv, tmp_path / "v")
    assert str(csv) in str(e.value)


# --- transcripts and timings -----------------------------------------------------------------------------


def test_spread_words_shares_time_by_characters():
    words = spread_words(["a", "bcd"], 1.0, 3.0)  # 1 + 3 characters over 2 s -> 0.5 s and 1.5 s
    assert words == [Word("a", 1.0, 1.5), Word("bcd", 1.5, 3.0)]


def test_srt_and_json_timing_files(tmp_path):
    srt = tmp_path / "t.srt"
    srt.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nab cd\n\n2\n00:00:02,500 --> 00:00:03,100\nhello\n"
    )
    assert read_timing_file(srt) == [Word("ab", 1.0, 1.5), Word("cd", 1.5, 2.0), Word("hello", 2.5, 3.1)]
    js = tmp_path / "t.json"
    js.write_text('{"words": [{"word": " so ", "start": 0.1, "end": 0.3}, {"text": "good", "start": 0.3, "end": 0.8}]}')
    assert read_timing_file(js) == [Word("so", 0.1, 0.3), Word("good", 0.3, 0.8)]
    js.write_text('[{"word": "x", "start": 0.5, "end": 0.2}]')
    with pytest.raises(ExtractError, match="entry 0 needs a word and 0 <= start <= end"):
        read_timing_file(js)


def test_voiced_span_finds_the_loud_part():
    sr = 16000
    wav = np.zeros(sr * 2, np.float32)
    wav[int(0.5 * sr) : int(1.5 * sr)] = 0.5 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)
    start, end = voiced_span(wav, sr)
    assert start == pytest.approx(0.5, abs=0.02) and end == pytest.approx(1.5, abs=0.02)
    assert voiced_span(np.zeros(sr, np.float32), sr) == (0.0, 1.0)  # silence: the whole clip


# --- word alignment, normalisation, padding --------------------------------------------------------------


def test_word_means_and_token_mapping():
    frames = np.arange(10, dtype=np.float32).reshape(10, 1)  # value = frame index
    times = np.arange(10) * 0.1  # 10 fps
    words = [Word("a", 0.0, 0.3), Word("b", 0.32, 0.33), Word("c", 0.5, 1.0)]
    per_word = word_means(frames, times, words)
    # a: frames 0,1,2 -> 1; b: no frame inside, nearest to 0.325 is frame 3; c: frames 5..9 -> 7
    np.testing.assert_allclose(per_word[:, 0], [1.0, 3.0, 7.0])
    valid = np.ones(10, bool)
    valid[5:8] = False  # frames 5, 6, 7 without a face
    np.testing.assert_allclose(word_means(frames, times, words, valid)[:, 0], [1.0, 3.0, 8.5])
    tokens = to_tokens(per_word, np.array([-1, 0, 1, 1, 2, -1, -1]))  # [CLS] a b## b## c [SEP] pad
    np.testing.assert_allclose(tokens[:, 0], [0, 1, 3, 3, 7, 0, 0])


def test_normalization_uses_valid_rows_and_keeps_flags():
    a = np.array([[1.0, 10.0, 1.0], [3.0, 30.0, 1.0], [100.0, 100.0, 0.0]])
    valid = np.array([True, True, False])
    stats = fit_normalization([a], [valid], ["x", "y", "face_present"])
    assert stats["mean"] == [2.0, 20.0, 0.0] and stats["std"] == [1.0, 10.0, 1.0]
    out = normalize(a, valid, stats)
    np.testing.assert_allclose(out, [[-1, -1, 1], [1, 1, 1], [0, 0, 0]])  # invalid row: exactly 0


def test_constant_column_is_centred_not_divided_by_zero():
    stats = fit_normalization([np.full((4, 1), 5.0)], [np.ones(4, bool)], ["c"])
    assert stats == {"mean": [5.0], "std": [1.0]}


def test_pad_and_truncate():
    x = np.ones((3, 2), np.float32)
    padded, n = pad(x, 5)
    assert n == 3 and padded.shape == (5, 2) and padded[3:].sum() == 0
    cut, n = pad(x, 2)
    assert n == 2 and cut.shape == (2, 2)


# --- config ----------------------------------------------------------------------------------------------


def test_extract_config_yaml_roundtrip_and_errors(tmp_path):
    path = tmp_path / "extract.yaml"
    path.write_text("aligned: true\nvision: {fps: 10}\ntext: {model: bundled:all-MiniLM-L6-v2, max_length: 32}\n")
    cfg = load_extract_config(path)
    assert cfg.aligned and cfg.vision.fps == 10 and cfg.text.max_length == 32
    assert ExtractConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text("vision: {fsp: 10}\n")
    with pytest.raises(ValueError, match=r"extract.yaml: vision: unknown key\(s\) \['fsp'\]"):
        load_extract_config(path)
    with pytest.raises(ValueError, match="asr.use is 'always' but asr.model is not set"):
        ExtractConfig.from_dict({"asr": {"use": "always"}})
    with pytest.raises(ValueError, match="'normalize' must be true or false"):
        ExtractConfig.from_dict({"normalize": "yes"})


def test_fingerprint_ignores_dataset_level_settings():
    a, b = ExtractConfig(), ExtractConfig(normalize=False, audio_max_frames=100)
    assert a.fingerprint() == b.fingerprint()
    c = ExtractConfig()
    c.vision.fps = 10
    assert c.fingerprint() != a.fingerprint()
