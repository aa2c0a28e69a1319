"""Long videos as a timeline of utterances: split, predict each, report and draw.

MER models are trained on single utterances (a MOSI clip is one opinion sentence of a few seconds), so a
long video (an interview, a vlog) is scored utterance by utterance. The video is decoded once; its words
come from a timing file (SRT/JSON), from speech recognition, or, for a plain transcript, spread over the
voiced span (the rules of :meth:`~emodistill.extract.clip.ClipExtractor.timed_words`). Segments:

* ``auto``: utterances from the words and the audio: a segment ends after a word ending in ``.``, ``!``
  or ``?``, where the next word starts more than :data:`MAX_GAP_S` after this one ends, or where a pause
  of the audio (at least :data:`MIN_PAUSE_S` below :data:`PAUSE_DB` of the loudest 20-ms frame) begins
  between the two words' starts (word timings from speech recognition often stretch a word over the
  pause after it, or start the next word inside it). Its span runs from its first word's start to its
  last word's end, both trimmed to the pauses;
* a number of seconds: fixed windows ``[k s, (k + 1) s)`` over the whole video, each holding the words
  whose midpoint falls inside it.

Each segment is cut from the decoded media (frames and samples inside its span) and featurised as a
clip, exactly as ``emodistill predict`` featurises a clip. A segment with no words, or whose audio stays
below the :data:`SILENCE_DB` floor, is reported as ``no speech``; one without a face in any frame as
``no face``; neither is scored (never a silent "neutral").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.extract.asr import Word
from emodistill.extract.decode import Media
from emodistill.extract.errors import ExtractError
from emodistill.extract.transcript import frame_rms, video_transcript

MAX_GAP_S = 0.8
"""A gap longer than this between two words' timings ends an utterance (``auto`` segments)."""
MIN_PAUSE_S = 0.5
"""A stretch of audio this long below :data:`PAUSE_DB` between two words ends an utterance."""
PAUSE_DB = -40.0
"""Pause level, relative to the loudest 20-ms frame of the video (the voiced-span floor of extraction)."""
SILENCE_DB = -50.0
"""A segment whose loudest 20-ms frame is below this level (dBFS) has no speech."""
_SENTENCE_END = (".", "!", "?")


@dataclass
class Segment:
    """One stretch of the video: ``[start, end)`` seconds and the words inside it."""

    start: float
    end: float
    words: list[Word]

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)


def utterances(words: list[Word], pauses: list[tuple[float, float]] = (), max_gap: float = MAX_GAP_S) -> list[Segment]:
    """``auto`` segments: split ``words`` after sentence-final punctuation, a timing gap over ``max_gap``, or a
    pause of the audio (``pauses``: silent ``(start, end)`` runs, see :func:`pauses_of`)."""
    segments: list[Segment] = []
    current: list[Word] = []
    start = None
    for i, w in enumerate(words):
        if not current:
            # a recogniser's start deep inside a pause moves to its end (0.1 s: the 20-ms frames' granularity)
            start = max([w.start] + [e for s, e in pauses if s <= w.start < e - 0.1])
        current.append(w)
        nxt = words[i + 1] if i + 1 < len(words) else None
        pause = None if nxt is None else next((p for p in pauses if w.start < p[0] < nxt.start), None)
        if nxt is None or pause or w.text.rstrip("\"')]").endswith(_SENTENCE_END) or nxt.start - w.end > max_gap:
            # a recogniser's end stretched deep into the pause moves back to its start (0.1 s, as for starts)
            end = pause[0] if pause and w.end > pause[0] + 0.1 else w.end
            segments.append(Segment(start, max(end, start), current))
            current = []
    return segments


def pauses_of(audio: np.ndarray, sample_rate: int, min_len: float = MIN_PAUSE_S,
              floor_db: float = PAUSE_DB) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of every run of 20-ms frames at least ``min_len`` long whose RMS level is more
    than ``-floor_db`` dB below the loudest frame."""
    rms, hop = frame_rms(audio, sample_rate)  # (n,)
    if len(rms) == 0:
        return []
    if rms.max() <= 0:
        return [(0.0, len(audio) / sample_rate)]
    quiet = 20 * np.log10(np.maximum(rms, 1e-12) / rms.max()) < floor_db  # (n,)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))  # run starts and ends
    runs = [(a * hop / sample_rate, b * hop / sample_rate) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [(a, b) for a, b in runs if b - a >= min_len]


TAIL_FRACTION = 0.05


def parse_segments(value: str, option: str = "--segments", minimum: float | None = None) -> str | float:
    """``auto`` or a window length in seconds (> 0, or >= ``minimum``) from the text of ``option``.

    Raises:
        ValueError: one line naming ``option``, what was expected and the value found.
    """
    if value == "auto":
        return value
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{option}: expected 'auto' or a number of seconds, found {value!r}") from None
    if minimum is not None and not seconds >= minimum:
        raise ValueError(f"{option}: expected a window of at least {minimum:g} s, found {value!r}")
    if not seconds > 0:
        raise ValueError(f"{option}: expected a window length > 0 seconds, found {value!r}")
    return seconds


def windows(duration: float, seconds: float, words: list[Word]) -> list[Segment]:
    """Fixed ``seconds``-long windows over ``[0, duration)``, each with the words whose midpoint is inside. A
    remainder shorter than :data:`TAIL_FRACTION` of a window (the few ms of encoder padding a container adds)
    joins the last window instead of becoming a window of its own."""
    if not seconds > 0:
        raise ValueError(f"--segments: a window length must be > 0 seconds, found {seconds}")
    n = max(1, int(np.ceil(duration / seconds - TAIL_FRACTION)))
    out = []
    for k in range(n):
        last = k == n - 1  # the last window runs to the end and also takes words that end past the duration
        start, end = k * seconds, (duration if last else (k + 1) * seconds)
        inside = [w for w in words if start <= (w.start + w.end) / 2 and ((w.start + w.end) / 2 < end or last)]
        out.append(Segment(start, end, inside))
    return out


def cut(media: Media, segment: Segment) -> tuple[Media, list[Word]]:
    """The frames and samples of ``segment`` as a clip of its own (times from 0), and its words shifted."""
    t0, t1 = segment.start, segment.end
    keep = (media.frame_times >= t0) & (media.frame_times < t1)
    a0, a1 = int(round(t0 * media.sample_rate)), int(round(t1 * media.sample_rate))
    clip = replace(media, frames=media.frames[keep], frame_times=media.frame_times[keep] - t0,
                   audio=media.audio[a0:a1], duration=t1 - t0)
    words = [Word(w.text, max(0.0, w.start - t0), max(0.0, min(w.end, t1) - t0)) for w in segment.words]
    return clip, words


def loudest_db(audio: np.ndarray, sample_rate: int) -> float:
    """Level (dBFS) of the loudest 20-ms frame of ``audio``; ``-inf`` for silence or no samples."""
    rms, _ = frame_rms(audio, sample_rate)
    loudest = rms.max(initial=0.0)
    return float(20 * np.log10(loudest)) if loudest > 0 else float("-inf")


def predict_timeline(predictor, video: str | Path, segments: str | float = "auto",
                     transcript: str | Path | None = None) -> dict[str, Any]:
    """The timeline of ``video`` (see the module docstring) with ``predictor``'s model.

    Returns:
        ``{"video", "duration", "segmentation", "timing", "backend", "segments": [{"index", "start", "end",
        "transcript", "status", and for scored segments "score", "label_7", "label_7_name", "label_2",
        "branches"}]}``; ``status`` is ``ok``, ``no speech`` or ``no face``.
    """
    extractor = predictor.extractor
    media = extractor.decode(video)
    text, timing_file = video_transcript(video, transcript)
    words, timing, _ = extractor.timed_words(media, text, timing_file)
    if segments == "auto":
        parts = utterances(words, pauses_of(media.audio, media.sample_rate))
    else:
        parts = windows(media.duration, float(segments), words)
    rows = []
    for i, seg in enumerate(parts):
        row: dict[str, Any] = {"index": i, "start": round(seg.start, 3), "end": round(seg.end, 3),
                               "transcript": seg.transcript}
        clip_media, clip_words = cut(media, seg)
        if not clip_words or loudest_db(clip_media.audio, clip_media.sample_rate) < SILENCE_DB:
            row["status"] = "no speech"
        elif len(clip_media.frames) == 0:
            row["status"] = "no face"
        else:
            try:
                clip = extractor.finish(extractor.prepare_media(clip_media, clip_words, timing, seg.transcript))
            except ExtractError as e:
                if "no face" not in str(e):
                    raise
                row["status"] = "no face"
            else:
                out = predictor.predict_features(clip)
                row["status"] = "ok"
                row.update({k: out[k] for k in ("score", "label_7", "label_7_name", "label_2", "probability",
                                                "branches") if k in out})
        rows.append(row)
    return {"video": str(video), "duration": round(float(media.duration), 3),
            "segmentation": "auto" if segments == "auto" else f"{float(segments):g} s windows", "timing": timing,
            "backend": predictor.backend, "segments": rows}


def timeline_csv(timeline: dict[str, Any]) -> str:
    """One row per segment: index, start, end, status, score, labels, per-modality heads, transcript."""
    heads = [f"{s}/{m}" for s in ("homo", "hetero") for m in ("text", "vision", "audio")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "start", "end", "status", "score", "label_7", "label_2", *heads, "transcript"])
    for r in timeline["segments"]:
        b = r.get("branches") or {}
        w.writerow([r["index"], r["start"], r["end"], r["status"], r.get("score", ""), r.get("label_7", ""),
                    r.get("label_2", ""), *[b.get(h.split("/")[0], {}).get(h.split("/")[1], "") for h in heads],
                    r["transcript"]])
    return buf.getvalue()


def plot_timeline(timeline: dict[str, Any], path: Path) -> None:
    """PNG of the score over time: one bar per scored utterance over its span (green positive, red negative),
    grey spans for segments without speech or face, the 0 line, and each utterance's index."""
    from emodistill.plots import new_figure, save_png

    fig = new_figure(max(8.0, min(24.0, timeline["duration"] / 5)), 3.6)
    ax = fig.subplots()
    for r in timeline["segments"]:
        width = max(r["end"] - r["start"], 0.05)
        if r["status"] == "ok":
            colour = "tab:green" if r["score"] >= 0 else "tab:red"
            ax.bar(r["start"], r["score"], width=width, align="edge", color=colour, alpha=0.75, edgecolor="k", lw=0.5)
            ax.text(r["start"] + width / 2, r["score"], str(r["index"]), ha="center",
                    va="bottom" if r["score"] >= 0 else "top", fontsize=7)
        else:
            ax.axvspan(r["start"], r["start"] + width, color="0.85", zorder=0)
            ax.text(r["start"] + width / 2, 0, r["status"], ha="center", va="center", rotation=90, fontsize=7,
                    color="0.4")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlim=(0, timeline["duration"]), ylim=(-3.2, 3.2), xlabel="time (s)", ylabel="sentiment score",
           title=f"{Path(timeline['video']).name}: {timeline['segmentation']} segments ({timeline['timing']} timing)")
    save_png(fig, path)
