"""Read a run directory and, when its data can be found, run the selected model over the test split.

Everything here degrades instead of failing: a missing ``results.json`` (interrupted run), a missing
checkpoint, a data file that moved or a model without :meth:`~emodistill.models.base.MERModel.interpret`
each turn into a note that the report prints, and the figures that need only the run files are drawn.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from emodistill.spec import DatasetSpec

RUN_FILES = ("config.yaml", "metrics.jsonl")
"""Files that make a folder a run directory (written by :func:`emodistill.training.fit.fit` first)."""


@dataclass
class TestPredictions:
    """Test-split predictions in split order (``prediction`` is a logit for binary tasks)."""

    label: np.ndarray  # (N,)
    prediction: np.ndarray  # (N,)
    source: str
    """Where they come from, for the page (``test_predictions.csv`` or the checkpoint)."""


@dataclass
class RunFiles:
    """What a run directory holds, parsed; ``notes`` says what was missing."""

    run_dir: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    results: dict[str, Any] | None
    predictions: TestPredictions | None
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> DatasetSpec | None:
        """The recorded data-set spec (keys this version does not know are ignored)."""
        d = self.config.get("spec")
        if not d:
            return None
        known = {f.name for f in fields(DatasetSpec)}
        return DatasetSpec.from_dict({k: v for k, v in d.items() if k in known})

    @property
    def task(self) -> str:
        """``"regression"`` or ``"binary"`` (a spec without ``task`` predates binary tasks)."""
        return str((self.config.get("spec") or {}).get("task", "regression"))

    @property
    def family(self) -> str:
        return self.spec.metric_family if self.spec else "mosi"

    @property
    def model_name(self) -> str:
        return str((self.config.get("model") or {}).get("name", "?"))


def find_runs(path: str | Path) -> list[Path]:
    """``[path]`` for a run directory; its ``seed-*`` run directories for a multi-seed root.

    Raises:
        FileNotFoundError: ``path`` is neither.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such directory")
    if all((path / f).is_file() for f in RUN_FILES):
        return [path]
    seeds = sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith(("seed-", "seed_"))
                   and all((p / f).is_file() for f in RUN_FILES))
    if seeds:
        return seeds
    raise FileNotFoundError(
        f"{path}: not a run directory (expected {', '.join(RUN_FILES)}, written by `emodistill train`) "
        "and no seed-*/ run directories inside"
    )


def read_run(run_dir: str | Path) -> RunFiles:
    """Parse one run directory (not a multi-seed root: see :func:`find_runs`)."""
    run_dir = Path(run_dir)
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        found = find_runs(run_dir)  # raises with a clear message if it is no run at all
        raise ValueError(
            f"{run_dir}: a multi-seed root, not one run; report each seed ({', '.join(p.name for p in found)}) "
            "or use `emodistill report` on the root, which does that"
        )
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{run_dir / 'config.yaml'}: expected a mapping, found {type(config).__name__}")
    history = []
    for i, line in enumerate((run_dir / "metrics.jsonl").read_text().splitlines(), 1):
        if line.strip():
            try:
                history.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{run_dir / 'metrics.jsonl'}:{i}: not JSON ({e})") from e
    notes = []
    results = None
    if (run_dir / "results.json").is_file():
        results = json.loads((run_dir / "results.json").read_text())
    else:
        notes.append("results.json is missing (the run has not finished): no test metrics table.")
    predictions = None
    csv_path = run_dir / "test_predictions.csv"
    if csv_path.is_file():
        predictions = read_predictions(csv_path)
    return RunFiles(run_dir, config, history, results, predictions, notes)


def read_predictions(path: Path) -> TestPredictions:
    """``test_predictions.csv`` (columns id, label, prediction)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"label", "prediction"} <= set(rows[0]):
        raise ValueError(f"{path}: expected columns id, label, prediction; found {list(rows[0])}")
    return TestPredictions(
        label=np.array([float(r["label"]) for r in rows]),
        prediction=np.array([float(r["prediction"]) for r in rows]),
        source=path.name,
    )


def load_test_split(run: RunFiles, data_source: str | None = None):
    """The run's test split, reloaded from the recorded (or the given) data source.

    Returns:
        ``(split, note)``: the :class:`~emodistill.data.SplitData` or None, and a note for the page
        (why it was not loaded, or a hash warning) or None.
    """
    from emodistill.data import load_dataset

    dcfg = run.config.get("data") or {}
    source = data_source or dcfg.get("source")
    if not source:
        return None, "config.yaml records no data source; figures that need the model's features were skipped."
    try:
        data = load_dataset(source, dataset=dcfg.get("dataset"),
                            replace_nonfinite=bool(dcfg.get("replace_nonfinite", False)),
                            options=dcfg.get("options") or None)
    except (OSError, ValueError) as e:  # FileNotFoundError, DataValidationError, unsafe pickle ...
        return None, (f"test data could not be loaded from {source!r} ({e}); figures that need the model's "
                      "features were skipped (pass `--data PATH` if the file moved).")
    note = None
    recorded = (run.config.get("data_provenance") or {}).get("sha256")
    if recorded and data.sha256 and recorded != data.sha256:
        note = f"warning: {source} has SHA-256 {data.sha256[:12]}…, the run was trained on {recorded[:12]}…"
    return data.splits["test"], note


@torch.no_grad()
def collect_interpretation(model: torch.nn.Module, split, batch_size: int = 64,
                           device: str | torch.device = "cpu") -> tuple[dict[str, np.ndarray], TestPredictions]:
    """Run ``model.predict_and_interpret`` (one forward pass per batch) over ``split``, in split order.

    Returns:
        ``(named, predictions)``: ``named`` maps every key of ``interpret`` (see
        :meth:`~emodistill.models.base.MERModel.interpret`) to a float64 array whose first axis is the
        sample (N, ...); ``{}`` for a model without ``interpret``.
    """
    from emodistill.data.loader import BatchLoader

    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    preds, labels, index = [], [], []
    with torch.no_grad(), model.inference_cache():  # fixed weights: DMD/MulT fold their encoders once
        for batch in BatchLoader(split, batch_size, shuffle=False, device=device):
            if hasattr(model, "predict_and_interpret"):  # one forward pass for both
                scores, named = model.predict_and_interpret(batch)
                for k, v in named.items():
                    chunks.setdefault(k, []).append(v.detach().double().cpu())
            else:
                scores = model.predict(batch)
            preds.append(scores.reshape(-1).double().cpu())
            labels.append(batch["labels"].reshape(-1).double().cpu())
            index.append(batch["index"].cpu())
    order = torch.cat(index).argsort()  # (N,) back to split order
    named = {k: torch.cat(v)[order].numpy() for k, v in chunks.items()}
    pred = TestPredictions(torch.cat(labels)[order].numpy(), torch.cat(preds)[order].numpy(), "best.ckpt")
    return named, pred


def load_model(run: RunFiles, device: str | torch.device = "cpu"):
    """``(model, note)``: the selected checkpoint's model in eval mode, or None and why not."""
    from emodistill.models.registry import load_checkpoint

    path = run.run_dir / "best.ckpt"
    if not path.is_file():
        return None, "best.ckpt is missing: figures that need the model were skipped."
    try:
        model, _ = load_checkpoint(path, device)
    except (ValueError, KeyError, RuntimeError) as e:  # unknown model name, newer format, shape mismatch
        return None, f"best.ckpt could not be loaded ({e}); figures that need the model were skipped."
    return model, None
