"""One video -> raw (unnormalised, unpadded) features of every modality.

:class:`ClipExtractor` holds the loaded audio, face, text and speech models, so a worker process loads
them once and then runs clip after clip. The data set builder and :class:`~emodistill.inference.predictor.Predictor`
both go through it, which is what makes a prediction see features made exactly as in training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emodistill.extract.asr import Word
from emodistill.extract.config import BUNDLED_WHISPER, ExtractConfig
from emodistill.extract.decode import Media, decode
from emodistill.extract.errors import ExtractError
from emodistill.extract.transcript import read_timing_file, split_words, spread_words, voiced_span
from emodistill.io import atomic_write

TIMING_SOURCES = ("file", "asr", "uniform")


@dataclass
class ClipFeatures:
    """Raw features of one clip.

    Attributes:
        audio: (T_a, D_a) acoustic frames; ``audio_times`` (T_a,) their centre times (s).
        vision: (T_v, D_v) facial features; ``vision_times`` (T_v,); ``face_present`` (T_v,) bool.
        text: (L, D_t) token features; ``text_bert`` (3, L); ``word_index`` (L,) word of each token (-1: none).
        audio_names, vision_names: the D_a and D_v column names.
        words: the timed words (timings from ``timing``: ``file``, ``asr`` or ``uniform``).
        transcript: the text encoded.
        duration: seconds.
        seconds: wall time per stage (decode, audio, vision, text, asr), for benchmarks.
    """

    audio: np.ndarray
    audio_times: np.ndarray
    vision: np.ndarray
    vision_times: np.ndarray
    face_present: np.ndarray
    text: np.ndarray
    text_bert: np.ndarray
    word_index: np.ndarray
    words: list[Word]
    transcript: str
    timing: str
    duration: float
    audio_names: list[str]
    vision_names: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def names(self, modality: str) -> list[str]:
        """The column names of ``audio`` or ``vision``."""
        return list(getattr(self, f"{modality}_names"))

    _ARRAYS = ("audio", "audio_times", "vision", "vision_times", "face_present", "text", "text_bert", "word_index")

    def save(self, path: Path) -> None:
        """Write to ``path`` (an ``.npz``), atomically: a crash leaves no half-written cache entry."""
        meta = {
            "words": [[w.text, w.start, w.end] for w in self.words],
            "transcript": self.transcript,
            "timing": self.timing,
            "duration": self.duration,
            "audio_names": self.audio_names,
            "vision_names": self.vision_names,
            "seconds": self.seconds,
        }
        arrays = {k: getattr(self, k) for k in self._ARRAYS}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
                np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> ClipFeatures:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in cls._ARRAYS}
        words = [Word(t, float(s), float(e)) for t, s, e in meta.pop("words")]
        return cls(**arrays, words=words, **meta)


@dataclass
class PreparedClip:
    """A clip after :meth:`ClipExtractor.prepare`: decoded media, audio and text features, timed words."""

    media: Media
    audio: np.ndarray
    audio_times: np.ndarray
    words: list[Word]
    timing: str
    transcript: str
    text_feats: np.ndarray
    text_bert: np.ndarray
    word_index: np.ndarray
    seconds: dict[str, float]


_DONE = object()

NO_TRANSCRIPT = ("no transcript: the labels file gives no text and no speech recognition model is set "
                 "(asr.model in the extract config, e.g. bundled:whisper-base)")
"""The error for a clip with no transcript, in ``emodistill extract``'s terms (the default)."""


class ClipExtractor:
    """Decode a video and extract audio, vision and text features with one :class:`ExtractConfig`.

    Models load lazily on first use; call :meth:`close` (or use ``with``) to release the face tracker.

    Args:
        cfg: the feature settings.
        no_transcript: the error message for a clip without transcript or speech recognition, in the
            caller's terms (``predict`` has no labels file); default :data:`NO_TRANSCRIPT`.
    """

    def __init__(self, cfg: ExtractConfig, *, no_transcript: str = NO_TRANSCRIPT) -> None:
        self.cfg = cfg
        self.no_transcript = no_transcript
        self._audio = self._vision = self._text = self._asr = None

    def __enter__(self) -> ClipExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._vision is not None:
            self._vision.close()
            self._vision = None

    @property
    def audio(self):
        if self._audio is None:
            from emodistill.extract.audio import AudioFeatureExtractor

            self._audio = AudioFeatureExtractor(self.cfg.audio)
        return self._audio

    @property
    def vision(self):
        if self._vision is None:
            from emodistill.extract.vision import FaceFeatureExtractor

            self._vision = FaceFeatureExtractor(self.cfg.vision)
        return self._vision

    @property
    def text(self):
        if self._text is None:
            from emodistill.extract.text import TextFeaturizer

            self._text = TextFeaturizer(self.cfg.text)
        return self._text

    @property
    def asr(self):
        if self._asr is None:
            from emodistill.extract.asr import Transcriber, bundled_whisper_base

            model = self.cfg.asr.model
            model_dir = bundled_whisper_base() if model == BUNDLED_WHISPER else Path(model)
            asr = self.cfg.asr
            self._asr = Transcriber(model_dir, language=asr.language, compute_type=asr.compute_type,
                                    vad_filter=asr.vad_filter)
        return self._asr

    def __call__(
        self, video: str | Path, *, transcript: str | None = None, timing_file: str | Path | None = None
    ) -> ClipFeatures:
        """Extract one clip: :meth:`prepare` then :meth:`finish`.

        Args:
            video: the video file.
            transcript: what is said; None or empty means "unknown" (speech recognition is then needed).
            timing_file: an SRT/JSON file with word timings; its words are then the transcript.

        Raises:
            ExtractError: the video cannot be decoded, has no face in any frame, or has no transcript and
                no speech recognition configured (or recognition found no words).
        """
        return self.finish(self.prepare(video, transcript=transcript, timing_file=timing_file))

    def prepare(
        self, video: str | Path, *, transcript: str | None = None, timing_file: str | Path | None = None
    ) -> PreparedClip:
        """Every stage before the face model: decode, audio features, words (speech recognition when
        needed) and text features. Thread-safe against :meth:`finish` of another clip (they share no
        model), which is what :meth:`iter_clips` overlaps."""
        t0 = time.perf_counter()
        media = self.decode(video)
        seconds = {"decode": time.perf_counter() - t0}
        t0 = time.perf_counter()
        words, timing, text = self.timed_words(media, transcript, timing_file)
        seconds["asr"] = time.perf_counter() - t0
        return self.prepare_media(media, words, timing, text, seconds)

    def decode(self, video: str | Path) -> Media:
        """The video's frames and waveform at the extraction's frame and sample rates."""
        return decode(video, fps=self.cfg.vision.fps, sample_rate=self.cfg.audio.sample_rate,
                      max_side=self.cfg.vision.max_side)

    def prepare_media(self, media: Media, words: list[Word], timing: str, transcript: str,
                      seconds: dict[str, float] | None = None) -> PreparedClip:
        """Audio and text features of already decoded media and its timed words (e.g. one utterance cut
        from a long video, :mod:`emodistill.inference.timeline`)."""
        seconds = dict(seconds or {})
        t0 = time.perf_counter()
        audio = self.audio(media.audio)  # (T_a, D_a)
        audio_times = self.audio.frame_times(len(audio))
        seconds["audio"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        text_feats, text_bert, word_index = self.text([w.text for w in words])
        seconds["text"] = time.perf_counter() - t0
        return PreparedClip(media, audio.astype(np.float32), np.asarray(audio_times, dtype=np.float64), words,
                            timing, transcript, text_feats, text_bert, word_index, seconds)

    def finish(self, clip: PreparedClip) -> ClipFeatures:
        """The face model on the prepared clip's frames, and the clip's features."""
        t0 = time.perf_counter()
        vision, present = self.vision(clip.media.frames)  # (T_v, D_v), (T_v,)
        clip.seconds["vision"] = time.perf_counter() - t0
        if not present.any():
            raise ExtractError(f"no face detected in any of {len(present)} sampled frames")
        return ClipFeatures(
            audio=clip.audio,
            audio_times=clip.audio_times,
            vision=vision.astype(np.float32),
            vision_times=clip.media.frame_times,
            face_present=present.astype(bool),
            text=clip.text_feats,
            text_bert=clip.text_bert,
            word_index=clip.word_index,
            words=clip.words,
            transcript=clip.transcript,
            timing=clip.timing,
            duration=clip.media.duration,
            audio_names=list(self.audio.feature_names),
            vision_names=list(self.vision.feature_names),
            seconds=clip.seconds,
        )

    def iter_clips(self, items: Iterable[tuple], ahead: int = 2) -> Iterator[ClipFeatures | ExtractError]:
        """Extract many clips as a pipeline, in input order.

        A background thread runs :meth:`prepare` (decoding, audio, speech recognition, text) up to ``ahead``
        clips in front of the face model, which runs here; decoding and the audio and text models release
        the GIL in their native code, so on two cores the stages overlap. Each item is ``(video,
        transcript, timing_file)``; a clip that fails yields its :class:`ExtractError` instead of
        features, and the others go on. Results equal :meth:`__call__`'s.
        """
        import queue
        import threading

        todo: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        stop = threading.Event()

        def producer() -> None:
            for video, transcript, timing_file in items:
                if stop.is_set():
                    return
                try:
                    out: PreparedClip | ExtractError = self.prepare(video, transcript=transcript,
                                                                    timing_file=timing_file)
                except ExtractError as e:
                    out = e
                except Exception as e:  # handed to the consumer, which re-raises it in order
                    out = e  # type: ignore[assignment]
                todo.put(out)
            todo.put(_DONE)

        thread = threading.Thread(target=producer, name="emodistill-prepare", daemon=True)
        thread.start()
        try:
            while (item := todo.get()) is not _DONE:
                if isinstance(item, ExtractError):
                    yield item
                elif isinstance(item, BaseException):
                    raise item
                else:
                    try:
                        yield self.finish(item)
                    except ExtractError as e:
                        yield e
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    todo.get_nowait()
                except queue.Empty:
                    thread.join(0.05)

    def timed_words(self, media: Media, transcript: str | None, timing_file) -> tuple[list[Word], str, str]:
        """(timed words, timing source, transcript) by the rules of :mod:`emodistill.extract.transcript`."""
        if timing_file is not None:
            words = [w for w in read_timing_file(timing_file) if w.text]
            if not words:
                raise ExtractError(f"timing file {timing_file} has no words")
            return words, "file", " ".join(w.text for w in words)
        transcript = (transcript or "").strip()
        use_asr = self.cfg.asr.model is not None and (self.cfg.asr.use == "always" or not transcript)
        if use_asr:
            words = [w for w in self.asr(media.audio, media.sample_rate) if w.text]
            if not words:
                raise ExtractError("speech recognition found no words in the audio track")
            return words, "asr", " ".join(w.text for w in words)
        if not transcript:
            raise ExtractError(self.no_transcript)
        start, end = voiced_span(media.audio, media.sample_rate)
        return spread_words(split_words(transcript), start, end), "uniform", transcript
