"""Errors of the extraction pipeline and the lazy import of optional libraries."""

from __future__ import annotations

import importlib
from types import ModuleType


class ExtractError(RuntimeError):
    """One video cannot be turned into features. The message is one line: what failed and why
    (e.g. ``"no audio stream"``, ``"no face detected in any of 150 sampled frames"``); the dataset
    layer prefixes the file name and writes it to the errors file."""


class MissingExtraError(ImportError):
    """An optional library is not installed; the message names the pip extra that provides it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    Args:
        module: import name, e.g. ``"av"`` or ``"mediapipe"``.
        extra: the emodistill extra that installs it, e.g. ``"video"``.
        purpose: what it is needed for, e.g. ``"decoding video files"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{purpose} needs the Python package '{module}', which is not installed "
            f"(install it with: pip install 'emodistill[{extra}]'; import error: {e})"
        ) from e
