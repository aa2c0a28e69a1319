"""Where every figure of the package is created and saved.

The report, comparisons, robustness curves and search history all make their figures with
:func:`new_figure` on matplotlib's non-interactive Agg canvas (no display, no global pyplot state) and write
them with :func:`save_png`, atomically. matplotlib is the optional ``report`` extra, imported lazily.
"""

from __future__ import annotations

from pathlib import Path

from emodistill.io import atomic_write


def require_matplotlib(what: str = "`emodistill report`") -> None:
    """Raise an ImportError that names ``what`` needs it and the extra to install if matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{what} needs matplotlib: pip install 'emodistill[report]'") from e


def new_figure(width: float, height: float):
    """An empty ``Figure`` of ``width`` x ``height`` inches with constrained layout, on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` atomically (no half-written PNG if interrupted)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
