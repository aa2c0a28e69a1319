"""Test media built offline: speech from espeak-ng, frames of a real face photograph, and mp4 files.

* Speech: the espeak-ng library and voice data that the ``espeakng-loader`` wheel ships, driven through
  its C API (``espeak_Synth`` with a synchronous callback), so no apt package is needed.
* Face: scikit-image's ``astronaut()`` photograph (Eileen Collins), moved slowly across the frames so
  consecutive frames differ the way a video's do.
* Video: written with PyAV (libx264 video, AAC audio), which bundles FFmpeg.
"""

from __future__ import annotations

import ctypes
import functools
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT enum in speak_lib.h
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _espeak() -> tuple[ctypes.CDLL, int]:
    import espeakng_loader

    lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    if lib.espeak_SetVoiceByName(b"en-us") != 0:
        raise RuntimeError("espeak-ng has no en-us voice")
    return lib, rate


@functools.lru_cache(maxsize=32)
def speech(text: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(S,) float32 mono speech of ``text`` in [-1, 1], synthesised by espeak-ng (en-us) and resampled
    to ``sample_rate`` by linear interpolation (plenty for feature tests)."""
    lib, rate = _espeak()
    chunks: list[np.ndarray] = []

    def collect(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)  # kept alive until synthesis returns
    lib.espeak_SetSynthCallback(callback)
    data = text.encode()
    if lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None) != 0:
        raise RuntimeError(f"espeak_Synth failed for {text!r}")
    lib.espeak_Synchronize()
    wav = np.concatenate(chunks).astype(np.float32) / 32768.0
    n_out = int(round(len(wav) * sample_rate / rate))
    out = np.interp(np.arange(n_out) * rate / sample_rate, np.arange(len(wav)), wav)
    return out.astype(np.float32)


def face_frames(n: int, size: int = 256, *, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB frames of the astronaut photograph with a slow zoom and pan."""
    from skimage import data, transform

    img = data.astronaut()  # (512, 512, 3), face around rows 60-170, columns 170-280
    rng = np.random.default_rng(seed)
    jitter = rng.integers(-4, 5, size=2)
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        t = i / max(n - 1, 1)
        crop = int(360 - 40 * t)  # zoom in
        top, left = 10 + int(10 * t) + jitter[0], 90 + int(15 * t) + jitter[1]
        patch = img[top : top + crop, left : left + crop]
        frames[i] = (transform.resize(patch, (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    return frames


def blank_frames(n: int, size: int = 256, *, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames with no face: smooth coloured noise."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, 8, 8, 3)).astype(np.uint8)
    return np.repeat(np.repeat(low, size // 8, axis=1), size // 8, axis=2)


def write_video(
    path: str | Path,
    frames: np.ndarray | None,
    *,
    fps: int = 15,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Write an mp4 with H.264 video (``frames`` (T, H, W, 3) uint8 RGB) and/or AAC audio (``audio``
    (S,) float32 mono). Either may be None to omit that stream."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if frames is not None:
            vstream = out.add_stream("libx264", rate=fps)
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = "yuv420p"
        if audio is not None:
            astream = out.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        if vstream is not None:
            for frame in frames:
                for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
        if astream is not None:
            samples = np.clip(audio, -1, 1).astype(np.float32)
            block = 1024
            for start in range(0, len(samples), block):
                chunk = samples[start : start + block][None, :]
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def write_y4m(path: str | Path, frames: np.ndarray, fps: int = 15) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 RGB as an uncompressed YUV4MPEG2 4:2:0 file, the format Chromium's
    ``--use-file-for-fake-video-capture`` plays (BT.601 full-range conversion; H and W even)."""
    path = Path(path)
    _, h, w, _ = frames.shape
    rgb = frames.astype(np.float32)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    u = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
    v = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]

    def half(c: np.ndarray) -> np.ndarray:  # (T, H, W) -> (T, H/2, W/2): 2x2 mean
        return c.reshape(len(c), h // 2, 2, w // 2, 2).mean(axis=(2, 4))

    planes = [np.clip(p, 0, 255).round().astype(np.uint8) for p in (y, half(u), half(v))]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(len(frames)):
            f.write(b"FRAME\n")
            for p in planes:
                f.write(p[t].tobytes())
    return path


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write (S,) float32 mono audio as 16-bit PCM WAV (Chromium's ``--use-file-for-fake-audio-capture``)."""
    import wave

    path = Path(path)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path
