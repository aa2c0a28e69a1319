"""SHA-256 identification of MMSA's published feature files.

MMSA's README lists a SHA-256 for each processed file it distributes (docs/mmsa.md §3). A file
whose hash is in that table is identified exactly (data set and alignment); a file that *claims* to be
one of them (by its name and folder, or by an explicit ``dataset=``) but hashes differently is flagged,
because published numbers were measured on the published bytes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

PUBLISHED_SHA256: dict[str, str] = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    "SIMS/Processed/unaligned_39.pkl": "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}
"""Published file (``{DATASET}/Processed/{name}``) -> SHA-256, from MMSA's README (current master)."""

UNKNOWN_STATUS = "unknown (not a published MMSA file)"
_CHUNK = 1 << 20


class DataHashWarning(UserWarning):
    """A file presents itself as a published MMSA file but its bytes differ."""


class DataHashError(ValueError):
    """Raised instead of :class:`DataHashWarning` when ``strict_hash=True``."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of ``path``, read in 1 MiB chunks (MOSEI files are several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def published_key_for_hash(sha256: str) -> str | None:
    """The published file whose hash is ``sha256``, or None."""
    for key, value in PUBLISHED_SHA256.items():
        if value == sha256:
            return key
    return None


def family_of_key(key: str) -> str:
    """``"MOSI/Processed/aligned_50.pkl"`` -> ``"mosi"``."""
    return key.split("/", 1)[0].lower()


def claimed_key(path: Path, *, explicit: str | None, inferred: str, aligned: bool) -> str | None:
    """The published file ``path`` presents itself as, or None if it makes no such claim.

    A claim is made when the file name is a published one (``aligned_50.pkl``, ...) — its data set is
    then the explicit ``dataset=``, else a parent folder named MOSI/MOSEI/SIMS, else the one inferred
    from feature dims — or when ``dataset=`` names a published family explicitly (the published file
    of that family with the file's alignment).
    """
    published_names = {key.rsplit("/", 1)[1] for key in PUBLISHED_SHA256}
    families = {family_of_key(key) for key in PUBLISHED_SHA256}
    folder = next((p.name.lower() for p in path.resolve().parents if p.name.lower() in families), None)
    if path.name in published_names:
        family = explicit if explicit in families else folder or inferred
        key = f"{(family or '').upper()}/Processed/{path.name}"
        return key if key in PUBLISHED_SHA256 else None
    if explicit in families:
        matches = [
            key
            for key in PUBLISHED_SHA256
            if family_of_key(key) == explicit and key.rsplit("/", 1)[1].startswith("aligned") == aligned
        ]
        return matches[0] if len(matches) == 1 else None
    return None


def hash_status(path: Path, sha256: str, claim: str | None, *, strict: bool) -> str:
    """Status line for ``path``; warns (or raises if ``strict``) when a claimed file's hash differs."""
    match = published_key_for_hash(sha256)
    if match is not None:
        return f"match ({match})"
    if claim is None:
        return UNKNOWN_STATUS
    msg = (
        f"{path}: SHA-256 {sha256[:16]}... differs from the published {claim} "
        f"({PUBLISHED_SHA256[claim][:16]}...); results will not be comparable with published numbers "
        "(ignore this if it is your own extraction)"
    )
    if strict:
        raise DataHashError(msg)
    warnings.warn(msg, DataHashWarning, stacklevel=3)
    return f"mismatch (claims {claim}, hash differs)"
