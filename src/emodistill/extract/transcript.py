"""Transcripts and word timings: from the labels CSV, an SRT or JSON timing file, or speech recognition.

Word timings are needed only for aligned output (audio and vision averaged over each word). Sources,
in order of preference:

1. a timing file: JSON ``[{"word": "hello", "start": 0.12, "end": 0.40}, ...]`` (also accepted: a dict
   with a ``"words"`` list, and ``"text"`` instead of ``"word"``), or SRT subtitles. SRT has only cue
   times, so each cue's words share its interval in proportion to their length in characters;
2. speech recognition (faster-whisper word timestamps) when it produced the transcript;
3. otherwise an approximation, recorded in the manifest as ``timing: "uniform"``: the words share the
   voiced span of the clip (first to last frame whose energy is within 40 dB of the loudest) in
   proportion to their length in characters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from emodistill.extract.asr import Word
from emodistill.extract.errors import ExtractError
from emodistill.extract.labels import sidecar

SIDECAR_EXTENSIONS = (".json", ".srt", ".txt")
"""Transcript files next to a video (``VIDEO.json`` ...), tried in this order when none is given."""

_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)")


def split_words(text: str) -> list[str]:
    """Whitespace-separated words of ``text`` (punctuation stays attached, as the tokenizer expects)."""
    return text.split()


def read_timing_file(path: str | Path) -> list[Word]:
    """Words with times from a ``.json`` or ``.srt`` file (see the module docstring for the formats).

    Raises:
        ExtractError: unreadable file, unknown extension, or a malformed entry (named by index).
    """
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"timing file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        return _read_json_words(text, path)
    if path.suffix.lower() == ".srt":
        return _read_srt_words(text, path)
    raise ExtractError(f"timing file {path}: expected a .json or .srt file")


def _read_json_words(text: str, path: Path) -> list[Word]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExtractError(f"timing file {path}: invalid JSON ({e})") from e
    if isinstance(data, dict):
        data = data.get("words")
    if not isinstance(data, list):
        raise ExtractError(f"timing file {path}: expected a list of {{word, start, end}} or {{'words': [...]}}")
    words = []
    for i, item in enumerate(data):
        try:
            token = item.get("word", item.get("text"))
            start, end = float(item["start"]), float(item["end"])
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ExtractError(f"timing file {path}: entry {i} needs word/start/end, found {item!r}") from e
        if token is None or not (0 <= start <= end):
            raise ExtractError(f"timing file {path}: entry {i} needs a word and 0 <= start <= end, found {item!r}")
        words.append(Word(str(token).strip(), start, end))
    return words


def _read_srt_words(text: str, path: Path) -> list[Word]:
    words: list[Word] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        times = [(i, _SRT_TIME.search(ln)) for i, ln in enumerate(lines)]
        hit = next(((i, m) for i, m in times if m), None)
        if hit is None:
            continue
        i, m = hit
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 10 ** len(m.group(4))
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 10 ** len(m.group(8))
        if end < start:
            raise ExtractError(f"timing file {path}: cue '{lines[i]}' ends before it starts")
        words.extend(spread_words(split_words(" ".join(lines[i + 1 :])), start, end))
    return words


def spread_words(words: list[str], start: float, end: float) -> list[Word]:
    """Share ``[start, end]`` among ``words`` in proportion to their lengths in characters."""
    if not words:
        return []
    weights = np.array([max(len(w), 1) for w in words], dtype=np.float64)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return [Word(w, float(edges[i]), float(edges[i + 1])) for i, w in enumerate(words)]


def frame_rms(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """``(rms, hop)``: RMS level of each whole 20-ms frame of ``audio`` (n,) and the frame length in samples."""
    hop = max(1, sample_rate // 50)
    n = len(audio) // hop
    return np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)), hop


def voiced_span(audio: np.ndarray, sample_rate: int, *, floor_db: float = 40.0) -> tuple[float, float]:
    """(start, end) seconds of the span from the first to the last 20-ms frame whose RMS energy is within
    ``floor_db`` of the loudest frame; the whole clip when it is silent."""
    rms, hop = frame_rms(audio, sample_rate)
    if len(rms) == 0:
        return 0.0, len(audio) / sample_rate
    if rms.max() <= 0:
        return 0.0, len(audio) / sample_rate
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-12) / rms.max()) > -floor_db)
    return loud[0] * hop / sample_rate, (loud[-1] + 1) * hop / sample_rate


def transcript_arg(transcript: str | Path | None) -> tuple[str | None, Path | None]:
    """``(text, timing file)`` from the ``--transcript`` value: text, a .txt file, or a .srt/.json file."""
    if transcript is None:
        return None, None
    path = Path(str(transcript))
    if path.suffix.lower() in (".srt", ".json") and path.is_file():
        return None, path
    if path.suffix.lower() == ".txt" and path.is_file():
        return path.read_text(encoding="utf-8").strip(), None
    if isinstance(transcript, Path):
        raise FileNotFoundError(f"transcript file not found: {transcript}")
    return str(transcript), None


def video_transcript(video: str | Path, transcript: str | Path | None) -> tuple[str | None, Path | None]:
    """:func:`transcript_arg` of ``transcript``, or, when it is None, of the sidecar ``VIDEO.json/.srt/.txt``
    next to ``video`` (:data:`SIDECAR_EXTENSIONS`) if there is one."""
    if transcript is None:
        transcript = sidecar(Path(video), SIDECAR_EXTENSIONS)
    return transcript_arg(transcript)
