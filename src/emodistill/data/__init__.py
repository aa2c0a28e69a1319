"""Data layer: safe reading and validation of MMSA feature files and of the UR-FUNNY / MUStARD feature
releases, the synthetic default data set, and fast batches.

Entry point::

    from emodistill.data import load_dataset
    data = load_dataset("synth")                         # or "synth-unaligned", "synth-concepts", a path
    data = load_dataset("MOSI/Processed/aligned_50.pkl")  # validated, SHA-256 checked
    data = load_dataset("UR-FUNNY/v2")                   # a directory: UR-FUNNY or MUStARD, by its files
    data = load_dataset("MUStARD/data", dataset="mustard", options={"split": "fold", "fold": 2})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from emodistill.data import mustard, urfunny
from emodistill.data.hashes import DataHashError, DataHashWarning
from emodistill.data.mmsa import load_mmsa
from emodistill.data.mustard import load_mustard
from emodistill.data.safe_pickle import UnsafePickleError, safe_load
from emodistill.data.synth import SynthConfig, load_synth
from emodistill.data.synth_concepts import ConceptSynthConfig, load_synth_concepts
from emodistill.data.types import DataValidationError, MMSAData, SplitData
from emodistill.data.urfunny import load_urfunny
from emodistill.spec import DatasetSpec

SYNTH_SOURCES: dict[str, SynthConfig] = {
    "synth": SynthConfig(aligned=True),
    "synth-unaligned": SynthConfig(aligned=False),
    "synth-concepts": ConceptSynthConfig(aligned=True),
    "synth-concepts-unaligned": ConceptSynthConfig(aligned=False),
}
"""Built-in data set names accepted by :func:`load_dataset` (MOSI-shaped, seed 0): ``synth`` (continuous
latent factors) and ``synth-concepts`` (12 planted discrete concepts, see
:mod:`~emodistill.data.synth_concepts`), each aligned or unaligned."""

DIRECTORY_READERS: dict[str, tuple[Callable[..., MMSAData], Callable[[Path], bool], dict[str, str]]] = {
    "urfunny": (load_urfunny, urfunny.is_urfunny_dir, urfunny.FILES),
    "mustard": (load_mustard, mustard.is_mustard_dir, mustard.FILES),
}
"""Data sets read from a directory of release files: name -> (reader, detector, expected files)."""


def load_dataset(
    source: str | Path,
    *,
    dataset: str | None = None,
    strict_hash: bool = False,
    replace_nonfinite: bool = False,
    cache_dir: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> MMSAData:
    """Load a data set by name or path.

    Args:
        source: a name of :data:`SYNTH_SOURCES` for a built-in synthetic data set (``"synth"``,
            ``"synth-unaligned"``, ``"synth-concepts"``, ``"synth-concepts-unaligned"``; generated once
            into ``cache_dir``), the path of an MMSA ``.pkl`` file, or a directory
            holding the UR-FUNNY v2 or MUStARD release files.
        dataset: for a file, its MMSA data-set family (see :func:`~emodistill.data.mmsa.load_mmsa`);
            for a directory, ``"urfunny"`` or ``"mustard"`` (default: recognised by its files:
            ``data_folds.pkl`` + ``humor_label_sdk.pkl``, or ``sarcasm_data.json``). Ignored for the
            synthetic sources.
        strict_hash: raise instead of warning on a published-file hash mismatch (MMSA files only).
        replace_nonfinite: set NaN/inf features to 0 instead of raising.
        cache_dir: where synthetic files are cached (default ``$EMODISTILL_CACHE``,
            ``$XDG_CACHE_HOME/emodistill`` or ``~/.cache/emodistill``).
        options: keyword arguments of the directory reader, e.g. ``{"context_sentences": 2}`` for
            :func:`~emodistill.data.urfunny.load_urfunny` or ``{"split": "fold", "fold": 3}`` for
            :func:`~emodistill.data.mustard.load_mustard`. Not accepted for files or synthetic sources.

    Raises:
        FileNotFoundError: ``source`` is neither a built-in name nor an existing file or directory,
            or a directory is not recognised.
        ValueError: ``dataset`` or ``options`` do not fit the source.
    """
    options = dict(options or {})
    if str(source) in SYNTH_SOURCES:
        _no_options(options, str(source))
        config = SYNTH_SOURCES[str(source)]
        if isinstance(config, ConceptSynthConfig):
            return load_synth_concepts(config, cache_dir=cache_dir)
        return load_synth(config, cache_dir=cache_dir)
    path = Path(source)
    if path.is_dir():
        name = dataset or _detect_directory(path)
        if name not in DIRECTORY_READERS:
            raise ValueError(f"{path} is a directory; dataset={name!r} must be one of {sorted(DIRECTORY_READERS)} "
                             "(MMSA data sets are single .pkl files)")
        reader = DIRECTORY_READERS[name][0]
        try:
            return reader(path, replace_nonfinite=replace_nonfinite, **options)
        except TypeError as err:
            if "unexpected keyword argument" not in str(err):
                raise
            raise ValueError(f"options for {name!r}: {err}") from None
    if not path.is_file():
        raise FileNotFoundError(
            f"data source {str(source)!r}: no such file or directory (built-in names: {sorted(SYNTH_SOURCES)})"
        )
    if dataset in DIRECTORY_READERS:
        raise ValueError(f"dataset={dataset!r} is read from a directory of release files, but {path} is a file")
    _no_options(options, str(path))
    return load_mmsa(path, dataset=dataset, strict_hash=strict_hash, replace_nonfinite=replace_nonfinite)


def reader_options(spec: DatasetSpec) -> dict[str, Any]:
    """The ``options`` of :func:`load_dataset` that rebuild the data ``spec`` was derived from.

    Directory readers record their keyword arguments in ``spec.extra`` (with lengths resolved), so
    evaluating a checkpoint on, say, MUStARD fold 3 can reload exactly that fold; MMSA files and
    synthetic data need none (``{}``).
    """
    if spec.extra.get("reader") not in DIRECTORY_READERS:
        return {}
    return {k: v for k, v in spec.extra.items() if k != "reader"}


def _no_options(options: dict[str, Any], source: str) -> None:
    if options:
        raise ValueError(f"{source}: reader options {sorted(options)} apply only to directory data sets "
                         f"({sorted(DIRECTORY_READERS)})")


def _detect_directory(path: Path) -> str:
    found = [name for name, (_, detect, _) in DIRECTORY_READERS.items() if detect(path)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{path} holds the files of several data sets {found}; pass dataset=")
    expected = "; ".join(f"{name}: {', '.join(files)}" for name, (_, _, files) in DIRECTORY_READERS.items())
    raise FileNotFoundError(f"{path}: not a recognised data directory; expected the release files of {expected}")


__all__ = [
    "DataHashError",
    "DataHashWarning",
    "DataValidationError",
    "MMSAData",
    "SplitData",
    "ConceptSynthConfig",
    "SynthConfig",
    "UnsafePickleError",
    "load_dataset",
    "load_mmsa",
    "load_mustard",
    "load_synth",
    "load_synth_concepts",
    "load_urfunny",
    "reader_options",
    "safe_load",
]
