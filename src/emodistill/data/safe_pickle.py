"""Load feature pickles (MMSA, UR-FUNNY, MUStARD) without letting the file run code.

``pickle.load`` calls whatever global a file names (``os.system``, ``builtins.eval``, ...), so opening a
downloaded ``.pkl`` with it is running a stranger's program. MMSA's files only need numpy arrays
(float features, object arrays of ``str`` ids and transcripts), numpy scalars and builtin
containers. :class:`RestrictedUnpickler` resolves exactly those globals and refuses every other one
*before* it is called, so a malicious file fails with :class:`UnsafePickleError` and nothing in it
runs.

Both numpy spellings are admitted: ``numpy.core.*`` (files written with numpy < 2, such as every
published MMSA file) and ``numpy._core.*`` (numpy >= 2); each is mapped to whichever module the
installed numpy provides. Protocol-2 pickles written by Python 3 spell ``bytes`` as
``_codecs.encode(text, "latin1")`` or, when empty, ``bytes()``; both are admitted in those forms only.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list; nothing from the file was executed."""


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to latin-1: protocol-2 pickles written by Python 3 store ``bytes``
    (the raw buffer of every numpy array) as ``_codecs.encode(text, "latin1")``."""
    if encoding.replace("-", "").replace("_", "").lower() not in {"latin1", "iso88591"}:
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} refused (only latin1 needed)")
    return obj.encode("latin-1", errors)


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` limited to no arguments: protocol-2 pickles written by Python 3 store an empty
    ``bytes`` (the raw buffer of an empty numpy array, e.g. a UR-FUNNY sentence without words) as
    ``builtins.bytes()``."""
    if args:
        raise UnsafePickleError(f"bytes{args!r} refused (only the empty bytes() is needed)")
    return b""


# (module, name) pairs a numpy/builtin-container pickle needs; the "numpy.core" family is also
# accepted under its numpy-2 name "numpy._core" (see _resolve).
_NUMPY_CORE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("multiarray", "_reconstruct"),  # ndarray.__reduce__ for protocols 0-4
        ("multiarray", "scalar"),  # numpy scalars, e.g. np.str_ items inside object arrays
        ("numeric", "_frombuffer"),  # ndarray.__reduce_ex__ for protocol 5
    }
)
_PLAIN_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)
# How Python 3 writes ``bytes`` under protocol 2 (MUStARD's release code pickles with protocol=2), each
# replaced by a narrowed stand-in.
_PROTOCOL2_BYTES: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
}


def _numpy_core_candidates(module: str) -> list[str] | None:
    """Module spellings to try for ``numpy.core.X`` / ``numpy._core.X``; None if not that family."""
    for prefix in ("numpy.core.", "numpy._core."):
        if module.startswith(prefix):
            sub = module[len(prefix) :]
            new, old = f"numpy._core.{sub}", f"numpy.core.{sub}"
            # Prefer the spelling native to the installed numpy: numpy 2 warns on numpy.core, and
            # numpy 1.26's numpy._core is only a partial forward-compatibility stub.
            return [new, old] if int(np.__version__.split(".")[0]) >= 2 else [old, new]
    return None


def is_allowed(module: str, name: str) -> bool:
    """Whether the global ``module.name`` is on the allow-list."""
    if (module, name) in _PLAIN_GLOBALS or (module, name) in _PROTOCOL2_BYTES:
        return True
    if _numpy_core_candidates(module) is None:
        return False
    sub = module.split(".", 2)[2]
    return (sub, name) in _NUMPY_CORE_GLOBALS


def _resolve(module: str, name: str) -> Any:
    if (module, name) in _PROTOCOL2_BYTES:
        return _PROTOCOL2_BYTES[(module, name)]
    candidates = _numpy_core_candidates(module) or [module]
    last_error: Exception | None = None
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError) as err:
            last_error = err
    raise pickle.UnpicklingError(f"cannot resolve allowed global {module}.{name}: {last_error}")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the globals numpy arrays and builtin containers need.

    Args:
        file: binary file object positioned at the start of the pickle.
        source: name used in error messages (normally the file path).
    """

    def __init__(self, file: BinaryIO, *, source: str = "<pickle>") -> None:
        # latin1 lets numpy arrays pickled by Python 2 load; Python 3 pickles are unaffected.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 store Python 2 names (__builtin__.eval); check and report the Python 3 ones, as
        # pickle's own find_class translates them. The Python 2 names do not exist in Python 3, so
        # translating unconditionally changes nothing for newer protocols.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if not is_allowed(module, name):
            raise UnsafePickleError(
                f"{self.source}: refused global '{module}.{name}' (only numpy arrays, numpy scalars and "
                "builtin containers are allowed; the file was not executed)"
            )
        return _resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused persistent id {pid!r}")


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the file names a global outside the allow-list.
        pickle.UnpicklingError: the file is not a valid pickle (message names the file).
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, source=str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise pickle.UnpicklingError(
                f"{path}: not a readable pickle ({type(err).__name__}: {err})"
            ) from err
