"""The base class of the errors a user can cause, and the one-line form the CLI prints them in.

Library code raises :class:`UserError` (or a subclass mixing in the builtin type callers already catch,
e.g. ``class DeviceUnavailable(UserError, RuntimeError)``) when the input it was given is wrong: a file,
an option, a recipe, a device. ``emodistill.cli.main`` reports these as one line and exit status 2; see
its module docstring for the full rule.
"""

from __future__ import annotations

import os

DEBUG_ENV = "EMODISTILL_DEBUG"
"""Environment variable that asks for details: tracebacks of user errors, third-party log lines."""

MAX_MESSAGE = 300
"""The longest error line the CLI prints; the full text is shown with ``--verbose`` / ``EMODISTILL_DEBUG=1``."""


def debug_requested() -> bool:
    """True when :data:`DEBUG_ENV` is set to anything but "" or "0"."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class UserError(Exception):
    """The user's input is wrong; the message is one line naming the file or option, what was expected
    and what was found."""


class DeviceUnavailable(UserError, RuntimeError):
    """The requested device (e.g. ``cuda``) is not available on this machine."""


class NoOptimiserStep(UserError, RuntimeError):
    """An epoch ended without one optimiser step: the training split is too small for the batch settings."""


def one_line(err: BaseException, limit: int = MAX_MESSAGE) -> str:
    """``err``'s message as one line of at most ``limit`` characters.

    The first non-empty line is kept (torch, for one, explains a corrupt file over a dozen lines); a
    message that had to be cut ends with ``[...]`` and a pointer to ``--verbose``.
    """
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(err).__name__
    cut = len(lines) > 1 or len(line) > limit
    if cut:
        tail = " [...] (details: --verbose)"
        line = line[: limit - len(tail)].rstrip() + tail
    return line
