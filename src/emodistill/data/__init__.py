"""Data layer: safe reading and validation of MMSA feature files, the synthetic default data set, and
fast batches.

Entry point::

    from emodistill.data import load_dataset
    data = load_dataset("synth")                         # or "synth-unaligned", or a path
    data = load_dataset("MOSI/Processed/aligned_50.pkl")  # validated, SHA-256 checked
"""

from __future__ import annotations

from pathlib import Path

from emodistill.data.hashes import DataHashError, DataHashWarning
from emodistill.data.mmsa import load_mmsa
from emodistill.data.safe_pickle import UnsafePickleError, safe_load
from emodistill.data.synth import SynthConfig, load_synth
from emodistill.data.types import DataValidationError, MMSAData, SplitData

SYNTH_SOURCES: dict[str, SynthConfig] = {
    "synth": SynthConfig(aligned=True),
    "synth-unaligned": SynthConfig(aligned=False),
}
"""Built-in data set names accepted by :func:`load_dataset` (MOSI-shaped, seed 0)."""


def load_dataset(
    source: str | Path,
    *,
    dataset: str | None = None,
    strict_hash: bool = False,
    replace_nonfinite: bool = False,
    cache_dir: str | Path | None = None,
) -> MMSAData:
    """Load a data set by name or path.

    Args:
        source: ``"synth"`` (aligned) or ``"synth-unaligned"`` for the built-in synthetic data set
            (generated once into ``cache_dir``), otherwise the path of an MMSA ``.pkl`` file.
        dataset: data-set family of a file (see :func:`~emodistill.data.mmsa.load_mmsa`); ignored for
            the synthetic sources.
        strict_hash: raise instead of warning on a published-file hash mismatch.
        replace_nonfinite: set NaN/inf features to 0 instead of raising.
        cache_dir: where synthetic files are cached (default ``$EMODISTILL_CACHE``,
            ``$XDG_CACHE_HOME/emodistill`` or ``~/.cache/emodistill``).

    Raises:
        FileNotFoundError: ``source`` is neither a built-in name nor an existing file.
    """
    if str(source) in SYNTH_SOURCES:
        return load_synth(SYNTH_SOURCES[str(source)], cache_dir=cache_dir)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"data source {str(source)!r}: no such file (built-in names: {sorted(SYNTH_SOURCES)})"
        )
    return load_mmsa(path, dataset=dataset, strict_hash=strict_hash, replace_nonfinite=replace_nonfinite)


__all__ = [
    "DataHashError",
    "DataHashWarning",
    "DataValidationError",
    "MMSAData",
    "SplitData",
    "SynthConfig",
    "UnsafePickleError",
    "load_dataset",
    "load_mmsa",
    "load_synth",
    "safe_load",
]
