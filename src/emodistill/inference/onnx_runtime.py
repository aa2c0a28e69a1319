"""An exported graph (``emodistill export``) in ONNX Runtime, behind the interface the predictor uses.

:class:`OnnxModel` reads the file's ``emodistill`` metadata (model, spec, extraction record) and answers
:meth:`inference_outputs` with the same keys and shapes as the PyTorch model's
(:meth:`~emodistill.models.base.MERModel.inference_outputs`), so a :class:`~emodistill.inference.predictor.Predictor`
runs either backend unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emodistill.inference.export import read_metadata
from emodistill.spec import DatasetSpec


class OnnxModel:
    """ONNX Runtime session of an exported file.

    Args:
        path: the ``.onnx`` file written by :func:`~emodistill.inference.export.export_onnx`.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
        optimize: ONNX Runtime's graph optimisation level: ``all`` (default), ``basic`` or ``none``.
    """

    def __init__(self, path: str | Path, threads: int | None = None, optimize: str = "all") -> None:
        import onnxruntime as ort

        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimize not in levels:
            raise ValueError(f"ONNX Runtime optimisation {optimize!r}: expected one of {sorted(levels)}")
        self.path = Path(path)
        self.meta = read_metadata(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[optimize]
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output_keys = self.meta.get("output_keys") or ["prediction"]
        self.spec = DatasetSpec.from_dict(self.meta["spec"])

    def inference_outputs(self, batch: dict[str, Tensor], heads: bool = True) -> dict[str, Tensor]:
        """The graph's outputs for a batch of tensors keyed by data key (extra keys are ignored)."""
        missing = [n for n in self.inputs if n not in batch]
        if missing:
            raise KeyError(f"{self.path}: the batch lacks the graph input(s) {missing} (has {sorted(batch)})")
        feeds = {}
        for name in self.inputs:
            x = batch[name].detach().cpu().numpy()
            feeds[name] = x.astype(np.int64) if name.endswith("_lengths") else x.astype(np.float32, copy=False)
        got = self.session.run(None, feeds)
        out = {k: torch.from_numpy(v) for k, v in zip(self.output_keys, got, strict=True)}
        return out if heads else {"prediction": out["prediction"]}
