"""Decoding a video file with PyAV: frames sampled at a fixed rate, and the audio track as 16 kHz mono.

PyAV bundles FFmpeg, so no system ``ffmpeg`` is needed. Every way a file can be unusable becomes one
:class:`~emodistill.extract.errors.ExtractError` with a reason the errors file can show: unreadable or
corrupt (including truncated files), no video stream, no audio stream, no decodable frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodistill.extract.errors import ExtractError, require


@dataclass
class Media:
    """A decoded clip.

    Attributes:
        frames: (T_v, H, W, 3) uint8 RGB frames sampled at ``fps`` (scaled so the longer side is at most
            the requested ``max_side``).
        frame_times: (T_v,) presentation time of each kept frame, seconds from the clip start.
        audio: (S,) float32 mono waveform at ``sample_rate``, in [-1, 1].
        sample_rate: Hz of ``audio``.
        duration: seconds, the longer of the two streams.
    """

    frames: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray
    sample_rate: int
    duration: float


def decode(path: str | Path, *, fps: float, sample_rate: int = 16000, max_side: int = 480) -> Media:
    """Decode ``path`` into frames at ``fps`` and a mono waveform at ``sample_rate``.

    Frames are kept at the first decoded frame at or after each time ``k / fps`` (k = 0, 1, ...), so a
    source slower than ``fps`` keeps every frame and never duplicates one.

    Raises:
        ExtractError: the file is missing, unreadable, truncated, or lacks a video or audio stream or
            any decodable frame.
    """
    av = require("av", "video", "decoding video files")
    path = Path(path)
    if not path.is_file():
        raise ExtractError("file not found")
    if path.stat().st_size == 0:
        raise ExtractError("zero-length file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise ExtractError(f"unreadable or corrupt video file ({type(e).__name__}: {e})") from e
    with container:
        if not container.streams.video:
            raise ExtractError("no video stream")
        if not container.streams.audio:
            raise ExtractError("no audio stream (the audio modality cannot be extracted)")
        try:
            frames, times = _decode_frames(container, fps, max_side)
            container.seek(0)
            audio = _decode_audio(av, container, sample_rate)
        except av.error.FFmpegError as e:
            raise ExtractError(f"corrupt video data while decoding ({type(e).__name__}: {e})") from e
    if not frames:
        raise ExtractError("zero-length video (no decodable frames)")
    if audio.size == 0:
        raise ExtractError("zero-length audio track (no decodable samples)")
    stacked = np.stack(frames)  # (T_v, H, W, 3)
    frame_times = np.asarray(times, dtype=np.float64)
    duration = max(float(frame_times[-1]) + 1.0 / fps, audio.size / sample_rate)
    return Media(stacked, frame_times, audio, sample_rate, duration)


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes keep swscale on its fast path for yuv420p sources
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _decode_frames(container, fps: float, max_side: int) -> tuple[list[np.ndarray], list[float]]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
    frames: list[np.ndarray] = []
    times: list[float] = []
    next_t = 0.0
    start = None
    for frame in container.decode(stream):
        t = frame.time
        if t is None:  # no timestamps (raw streams): count frames at the stream's rate
            rate = float(stream.average_rate or fps)
            t = len(times) / rate if not times else times[-1] + 1.0 / rate
        if start is None:
            start = t
        t -= start
        if t + 1e-6 < next_t:
            continue
        width, height = _scaled_size(frame.width, frame.height, max_side)
        frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
        times.append(t)
        next_t = (int(t * fps + 1e-6) + 1) / fps
    return frames, times


def _decode_audio(av, container, sample_rate: int) -> np.ndarray:
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))  # (1, n) packed mono -> (n,)
    for out in resampler.resample(None):  # flush the resampler's delay line
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
