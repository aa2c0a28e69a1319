"""Uploaded videos on disk: a private directory per request (mode 0700, under the service's own 0700 root),
removed after the request whatever happened; the file inside has a fixed name, never the client's."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from emodistill.extract.errors import ExtractError, require
from emodistill.extract.labels import VIDEO_EXTENSIONS

COPY_CHUNK = 1 << 20


def make_root(parent: str | None) -> Path:
    """The service's private root for uploads, ``emodistill-serve-XXXX`` (0700) in ``parent``."""
    return Path(tempfile.mkdtemp(prefix="emodistill-serve-", dir=parent))


@contextmanager
def request_dir(root: Path) -> Iterator[Path]:
    """A fresh private directory under ``root`` for one request, deleted on exit."""
    path = Path(tempfile.mkdtemp(prefix="req-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def save_upload(source: BinaryIO, filename: str | None, directory: Path) -> tuple[Path, int]:
    """Copy the uploaded stream to ``directory/video<ext>``; the extension is kept only when it is one of the
    known video extensions (a hint for the demuxer), the client's name is never used otherwise.

    Returns:
        (path, bytes written).
    """
    ext = Path(filename or "").suffix.lower()
    path = directory / ("video" + (ext if ext in VIDEO_EXTENSIONS else ".bin"))
    size = 0
    with open(path, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            out.write(chunk)
            size += len(chunk)
    os.chmod(path, 0o600)
    return path, size


def save_text(text: str, directory: Path) -> Path:
    """The transcript field as ``transcript.txt``: the service never reads a path a client names."""
    path = directory / "transcript.txt"
    path.write_text(text, encoding="utf-8")
    return path


def video_seconds(path: Path) -> float:
    """The container's duration in seconds, from its header, else from its packets (nothing is decoded).

    Raises:
        ExtractError: not a file PyAV can open, or one without a video stream (the messages of
            :func:`emodistill.extract.decode.decode`).
    """
    av = require("av", "video", "decoding video files")
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises its own error types per FFmpeg error code
        raise ExtractError(f"unreadable or corrupt video file ({type(e).__name__}: {e})") from e
    with container:
        streams = container.streams.video
        if not streams:
            raise ExtractError("no video stream")
        if container.duration is not None:
            return container.duration / 1_000_000  # microseconds (av.time_base)
        stream = streams[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return _demuxed_seconds(container, stream)  # a WebM of MediaRecorder has no duration in its header


def _demuxed_seconds(container, stream) -> float:
    """The last packet's end time, from the packets alone (demuxing, not decoding)."""
    end = 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except Exception as e:  # a cut file: what was read so far is its length
        if end == 0.0:
            raise ExtractError(f"corrupt video data while reading ({type(e).__name__}: {e})") from e
    return end
