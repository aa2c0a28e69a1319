"""Quiet third-party logs: MediaPipe / TensorFlow Lite write native log lines (``W0000 ...
inference_feedback_manager.cc:114] ...``, ``INFO: Created TensorFlow Lite XNNPACK delegate``) straight to
file descriptor 2, from C++, where Python's logging cannot reach them.

By default :func:`quiet_third_party_logs` sets the log-level variables those libraries read (before they
are imported), and :func:`filtered_native_stderr` drops the remaining native log lines written during a
block while passing every other line through. ``EMODISTILL_DEBUG=1`` (what ``--verbose`` on ``predict``
and ``extract`` sets) turns both off.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from emodistill.errors import DEBUG_ENV, debug_requested

_NATIVE_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\]"  # glog / absl C++ prefix: "W0000 00:00:1796599683.5517  11632 x.cc:114]"
    r"|INFO: Created TensorFlow Lite"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
)


def verbose() -> bool:
    """True if third-party logs should be shown (``EMODISTILL_DEBUG`` set to anything but "" or "0")."""
    return debug_requested()


def set_verbose() -> None:
    """Show third-party logs in this process and in the worker processes it starts."""
    os.environ[DEBUG_ENV] = "1"


def quiet_third_party_logs() -> None:
    """Raise the log thresholds of glog, TensorFlow (Lite) and absl unless :func:`verbose`.

    Call it before mediapipe is imported: the native libraries read the variables once, at load time.
    A value the user has set already is kept.
    """
    if verbose():
        return
    os.environ.setdefault("GLOG_minloglevel", "2")  # glog: errors only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++: fatal only
    logging.getLogger("absl").setLevel(logging.ERROR)  # absl's Python logger (absl.logging uses it)


def configure_third_party_logs(show: bool) -> None:
    """What ``--verbose`` of ``predict`` / ``extract`` decides: show third-party logs (``show``, inherited by
    worker processes) or quiet them."""
    if show:
        set_verbose()
    quiet_third_party_logs()


@contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Drop native log lines that C++ code writes to fd 2 inside the block; pass every other line on.

    Does nothing when :func:`verbose`, or when fd 2 cannot be duplicated.
    """
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _NATIVE_LOG_LINE.match(line))
            if kept:
                os.write(2, kept.encode())
