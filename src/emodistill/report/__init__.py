"""Interpretability report of a training run: ``emodistill report RUN_DIR`` / :func:`write_report`.

One self-contained ``index.html`` with PNG figures beside it (default ``RUN_DIR/report/``):

* training curves (losses, validation metrics, loss terms, learning rate);
* GD-Unit edge matrices, homo and hetero (teacher rows, student columns; mean over the test set), and
  the edges per epoch (validation means logged in ``metrics.jsonl``), as in DMD's edge figure
  (Li et al., CVPR 2023);
* dictionary activation heatmaps per modality and space (models whose ``interpret`` reports
  ``activations/<space>/<m>``, i.e. DHMD);
* a t-SNE of the decoupled features per space, coloured by modality and by label class;
* the 7-class (SIMS: 5-class; binary: 2x2) test confusion matrix and predicted-vs-true scatter.

Figures that need the model's features are skipped, with the reason on the page, when the data or the
checkpoint cannot be loaded; the others need only the run files. Requires the ``report`` extra
(matplotlib, scikit-learn). ``write_report`` is imported lazily, so that importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emodistill.report.build import write_report, write_reports

__all__ = ["write_report", "write_reports"]


def __getattr__(name: str) -> Any:
    if name in ("write_report", "write_reports"):
        from emodistill.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'emodistill.report' has no attribute {name!r}")
