"""emodistill: multimodal emotion recognition with decoupled multimodal distillation (DMD, DHMD).

The public API, importable from the package root::

    import emodistill as ed

    data = ed.load_dataset("synth")                                # an MMSA .pkl path, or synth
    cfg = ed.make_config("dmd_synth_demo", overrides={"train.max_epochs": 3})
    results = ed.fit(cfg, data, "runs/demo")                       # one run; ed.fit_seeds for several
    ev = ed.evaluate("runs/demo/best.ckpt", data, split="test")    # metrics and per-sample predictions
    model, ckpt = ed.load_checkpoint("runs/demo/best.ckpt")
    with ed.Predictor.from_checkpoint("runs/x/best.ckpt") as p:    # a model trained on extracted videos
        p.predict_video("clip.mp4", "I loved it")

Names are resolved on first use (PEP 562), so ``import emodistill`` and ``emodistill --help`` stay light:
torch and the models load when one of them is first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    # data
    "DatasetSpec": "emodistill.spec",
    "load_dataset": "emodistill.data",
    # models
    "create_model": "emodistill.models",
    "list_models": "emodistill.models",
    "load_checkpoint": "emodistill.models",
    # training
    "RunConfig": "emodistill.training.config",
    "make_config": "emodistill.training.config",
    "load_recipe": "emodistill.training.config",
    "list_recipes": "emodistill.training.config",
    "fit": "emodistill.training.fit",
    "fit_seeds": "emodistill.training.fit",
    # inference
    "evaluate": "emodistill.inference",
    "Evaluation": "emodistill.inference",
    "Predictor": "emodistill.inference",
    # raw video -> data set
    "extract_dataset": "emodistill.extract",
    "ExtractConfig": "emodistill.extract",
}

__all__ = [
    "__version__",
    "DatasetSpec", "load_dataset",
    "create_model", "list_models", "load_checkpoint",
    "RunConfig", "make_config", "load_recipe", "list_recipes", "fit", "fit_seeds",
    "evaluate", "Evaluation", "Predictor",
    "extract_dataset", "ExtractConfig",
]

if TYPE_CHECKING:
    from emodistill.data import load_dataset
    from emodistill.extract import ExtractConfig, extract_dataset
    from emodistill.inference import Evaluation, Predictor, evaluate
    from emodistill.models import create_model, list_models, load_checkpoint
    from emodistill.spec import DatasetSpec
    from emodistill.training.config import RunConfig, list_recipes, load_recipe, make_config
    from emodistill.training.fit import fit, fit_seeds


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'emodistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
