"""The labels CSV of ``emodistill extract``: which videos, with what transcript, label and split.

Two layouts are read as they are:

* ours: ``video`` (file path relative to the videos folder), ``clip_id`` (optional; default: the file
  name without extension), ``text``, ``label``, ``split`` (``train``/``valid``/``test``), optional
  ``timing`` (an SRT/JSON word-timing file, relative to the videos folder);
* MMSA's ``label.csv``: ``video_id, clip_id, text, label, label_T, label_A, label_V, annotation, mode``,
  the file being ``{videos}/{video_id}/{clip_id}.mp4`` (``{videos}/Raw/...`` is also tried), ids
  ``"{video_id}$_${clip_id}"`` as in MMSA's pickles.

A sidecar ``{video}.srt`` or ``{video}.json`` next to a video is used as its timing file when the CSV
names none. Every problem is an error naming the CSV, the row (as numbered in a spreadsheet, header =
row 1) and the column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from emodistill.spec import LABEL_SUFFIXES

SPLIT_ALIASES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv")


@dataclass
class ClipJob:
    """One row of the labels CSV, resolved."""

    index: int
    clip_id: str
    video: Path
    transcript: str
    label: float
    split: str
    timing: Path | None = None
    unimodal: dict[str, float] = field(default_factory=dict)


def read_labels(csv_path: str | Path, videos_dir: str | Path) -> list[ClipJob]:
    """Parse and check the labels CSV (see the module docstring). Files are not opened here."""
    csv_path, videos_dir = Path(csv_path), Path(videos_dir)
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels file not found: {csv_path}")
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"videos folder not found: {videos_dir}")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    has_file = next((c for c in ("video", "file", "path") if c in columns), None)
    if has_file is None and not {"video_id", "clip_id"} <= set(columns):
        raise ValueError(
            f"{csv_path}: needs a 'video' column (file relative to {videos_dir}) or MMSA's 'video_id' and "
            f"'clip_id' columns; found {columns}"
        )
    split_col = next((c for c in ("split", "mode") if c in columns), None)
    for needed, present in (("label", "label" in columns), ("split (or MMSA's mode)", split_col is not None)):
        if not present:
            raise ValueError(f"{csv_path}: missing column '{needed}'; found {columns}")
    jobs: list[ClipJob] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        line = i + 2  # spreadsheet numbering: the header is row 1
        where = f"{csv_path}: row {line}"
        video, clip_id = _video_and_id(row, has_file, videos_dir, where)
        if clip_id in seen:
            raise ValueError(f"{where}: clip id '{clip_id}' repeats row {seen[clip_id]}")
        seen[clip_id] = line
        split = SPLIT_ALIASES.get(row[split_col].lower())
        if split is None:
            raise ValueError(f"{where}: column '{split_col}' must be train, valid or test, found {row[split_col]!r}")
        timing = videos_dir / row["timing"] if row.get("timing") else sidecar(video, (".json", ".srt"))
        jobs.append(
            ClipJob(
                index=i,
                clip_id=clip_id,
                video=video,
                transcript=row.get("text", row.get("transcript", "")),
                label=_number(row, "label", where),
                split=split,
                timing=timing,
                unimodal={
                    m: _number(row, f"label_{m}", where)
                    for m in LABEL_SUFFIXES.values()
                    if row.get(f"label_{m}", "") != ""
                },
            )
        )
    if not jobs:
        raise ValueError(f"{csv_path}: no rows")
    return jobs


def _video_and_id(row: dict[str, str], file_col: str | None, videos_dir: Path, where: str) -> tuple[Path, str]:
    if file_col is not None:
        if not row[file_col]:
            raise ValueError(f"{where}: column '{file_col}' is empty")
        video = videos_dir / row[file_col]
        return video, row.get("clip_id") or video.stem
    vid, cid = row["video_id"], row["clip_id"]
    if not vid or not cid:
        raise ValueError(f"{where}: columns 'video_id' and 'clip_id' must not be empty")
    for base in (videos_dir / vid, videos_dir / "Raw" / vid):
        for ext in VIDEO_EXTENSIONS:
            if (base / f"{cid}{ext}").is_file():
                return base / f"{cid}{ext}", f"{vid}$_${cid}"
    # not found: keep the expected path so the per-video error says "file not found" with it
    return videos_dir / vid / f"{cid}.mp4", f"{vid}$_${cid}"


def sidecar(video: Path, extensions: tuple[str, ...]) -> Path | None:
    """The first existing file next to ``video`` with the same stem and one of ``extensions``."""
    for ext in extensions:
        if video.with_suffix(ext).is_file():
            return video.with_suffix(ext)
    return None


def _number(row: dict[str, str], column: str, where: str) -> float:
    try:
        return float(row[column])
    except (KeyError, ValueError):
        raise ValueError(f"{where}: column '{column}' must be a number, found {row.get(column)!r}") from None
