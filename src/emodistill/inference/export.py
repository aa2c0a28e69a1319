"""``emodistill export``: a checkpoint's inference path as an ONNX graph, self-describing and verified.

The graph computes :meth:`~emodistill.models.base.MERModel.inference_outputs`: the prediction and, for
DMD and DHMD, the per-modality heads and the GD-Unit edges that ``predict`` reports. It is traced by
PyTorch's ``torch.export``-based ONNX exporter on the models' plain eval path
(:mod:`emodistill.models.layers.plain_encoder`), which uses none of the training-time kernels.

Inputs are named after the data keys: ``text`` (B, T_l, D_l) or ``text_bert`` (B, 3, T_l) for a model
with a text encoder, ``audio`` (B, T_a, D_a), ``vision`` (B, T_v, D_v), and for unaligned data
``audio_lengths`` / ``vision_lengths`` (B,) int64 (absent from the graph when the model ignores them).
Outputs: ``prediction`` (B,), and ``heads_homo`` / ``heads_hetero`` (B, 3, order language, vision,
audio) and ``edges_homo`` / ``edges_hetero`` (B, 6) where the model has them. The batch axis is
dynamic; sequence axes are dynamic too unless an output is bound to the trained lengths (DMD's HomoGD
heads flatten ``T' x d``: ``--no-heads`` exports the prediction alone with dynamic lengths).

The checkpoint's description travels inside the file as the ONNX metadata property ``emodistill`` (JSON:
model name and config, data spec, extraction record, label convention, inputs, outputs, the export's
own check), so an exported model can be served or inspected without the checkpoint
(:func:`read_metadata`). After export, ONNX Runtime is run on fresh inputs at two batch sizes (and at
other sequence lengths when those axes are dynamic) against the PyTorch eval outputs; a difference above
:data:`TOLERANCE` fails the export and leaves no file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from emodistill import __version__
from emodistill.io import atomic_write
from emodistill.models.layers.plain_encoder import plain_encoders
from emodistill.models.registry import load_checkpoint
from emodistill.spec import DatasetSpec

METADATA_KEY = "emodistill"
TOLERANCE = 1e-4
"""Largest absolute difference between ONNX Runtime and PyTorch accepted by the export's own check (float32
graphs agree to about 1e-6; the suite holds them to 1e-5)."""
OPSET = 18


class ExportError(ValueError):
    """The model cannot be expressed as an ONNX graph, or the graph does not reproduce it."""


def input_names(model: nn.Module, spec: DatasetSpec) -> list[str]:
    """The data keys the exported graph reads, in graph order."""
    text = "text_bert" if getattr(model, "text_model", None) is not None else "text"
    names = [text, "audio", "vision"]
    if not spec.aligned:
        names += ["audio_lengths", "vision_lengths"]
    return names


def example_inputs(spec: DatasetSpec, names: list[str], batch: int, lens: dict[str, int] | None = None,
                   seed: int = 0) -> dict[str, Tensor]:
    """Random inputs of the graph's shapes (``lens``: sequence lengths per modality, default the spec's)."""
    g = torch.Generator().manual_seed(seed)
    lens = dict(lens or spec.seq_lens)
    out: dict[str, Tensor] = {}
    for name in names:
        if name == "text_bert":
            ids = torch.randint(1000, 2000, (batch, lens["text"]), generator=g).float()
            ones = torch.ones(batch, lens["text"])
            out[name] = torch.stack([ids, ones, torch.zeros_like(ones)], dim=1)  # (B, 3, T)
        elif name.endswith("_lengths"):
            m = name.split("_")[0]
            out[name] = torch.randint(1, lens[m] + 1, (batch,), generator=g)
            out[name][0] = lens[m]
        else:
            dim = spec.feature_dims[name]
            out[name] = torch.randn(batch, lens[name], dim, generator=g)
    return out


class _Graph(nn.Module):
    """``inference_outputs`` with positional tensor inputs and a fixed output order (what the exporter
    traces)."""

    def __init__(self, model: nn.Module, names: list[str], heads: bool, outputs: list[str]) -> None:
        super().__init__()
        self.model, self.names, self.heads, self.outputs = model, names, heads, outputs

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        out = self.model.inference_outputs(dict(zip(self.names, tensors, strict=True)), heads=self.heads)
        return tuple(out[k] for k in self.outputs)


def _dynamic_shapes(names: list[str], spec: DatasetSpec, dynamic_lengths: bool) -> tuple[dict, ...]:
    dim = torch.export.Dim
    batch = dim("batch", min=1, max=4096)
    if spec.aligned:
        shared = dim("seq", min=2, max=4096)
        seq = dict.fromkeys(("text", "audio", "vision"), shared)
    else:
        seq = {m: dim(f"{m}_len", min=2, max=8192) for m in ("text", "audio", "vision")}
    shapes = []
    for name in names:
        axes = {0: batch}
        if dynamic_lengths and not name.endswith("_lengths"):
            m = "text" if name == "text_bert" else name
            axes[2 if name == "text_bert" else 1] = seq[m]
        shapes.append(axes)
    return tuple(shapes)


def export_onnx(checkpoint: str | Path, output: str | Path, *, heads: bool = True, verify: bool = True) -> dict:
    """Export ``checkpoint`` to ``output`` (see the module docstring).

    Returns:
        The metadata written into the file (``inputs``, ``outputs``, ``dynamic_lengths``, ``check``...).

    Raises:
        ExportError: the model cannot be traced or converted, or ONNX Runtime disagrees with PyTorch.
    """
    model, ckpt = load_checkpoint(checkpoint, device="cpu")
    spec = model.spec
    names = input_names(model, spec)
    dynamic_lengths = not model.length_bound(heads)
    example = example_inputs(spec, names, batch=2)
    with torch.no_grad():
        outputs = list(model.inference_outputs(example, heads=heads))
    graph = _Graph(model, names, heads, outputs).eval()
    onnx_names = [k.replace("/", "_") for k in outputs]
    meta = {
        "emodistill": __version__,
        "model_name": ckpt["model_name"],
        "model_config": ckpt["model_config"],
        "spec": ckpt["spec"],
        "extract_config": ckpt.get("extract_config"),
        "label_convention": _label_convention(spec),
        "inputs": names,
        "outputs": onnx_names,
        "output_keys": outputs,
        "dynamic_lengths": dynamic_lengths,
        "source_checkpoint": Path(checkpoint).name,
    }
    with tempfile.TemporaryDirectory(prefix="emodistill-export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            with plain_encoders(model), torch.no_grad():
                program = torch.onnx.export(
                    graph, tuple(example[n] for n in names), dynamo=True, opset_version=OPSET, input_names=names,
                    output_names=onnx_names, dynamic_shapes=(_dynamic_shapes(names, spec, dynamic_lengths),),
                    verbose=False,
                )
            program.save(str(raw))
        except Exception as e:
            raise ExportError(f"{checkpoint}: model {ckpt['model_name']!r} cannot be exported to ONNX: "
                              f"{_reason(e)}") from e
        meta["inputs"] = _graph_inputs(raw)  # the exporter drops inputs the model never reads
        if verify:
            meta["check"] = verify_onnx(raw, model, spec, names, outputs, heads, dynamic_lengths, label=str(checkpoint))
        proto = _with_metadata(raw, meta)
    atomic_write(output, lambda tmp: tmp.write_bytes(proto.SerializeToString()))
    return meta


def _reason(err: BaseException) -> str:
    """One line from the exporter's long message: its exception summary (``<class 'X'>: why``) if it has one,
    else the first line."""
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1].replace("<class '", "").replace("'>", "")[:300]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


def _label_convention(spec: DatasetSpec) -> str:
    if spec.is_binary:
        return "binary: the prediction is a logit; positive iff > 0"
    lo, hi = spec.label_range
    return f"regression on [{lo:g}, {hi:g}]; Acc-7 classes round(clip(score, -3, 3)); positive iff score >= 0"


def _with_metadata(path: Path, meta: dict) -> Any:
    import onnx

    proto = onnx.load(str(path), load_external_data=True)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    return proto


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [i.name for i in proto.graph.input]


def read_metadata(path: str | Path) -> dict:
    """The ``emodistill`` metadata of an exported file (raises ExportError when it has none)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise ExportError(f"{path}: not an emodistill export (no '{METADATA_KEY}' metadata property)")
    return json.loads(custom[METADATA_KEY])


def verify_onnx(path: Path, model: nn.Module, spec: DatasetSpec, names: list[str], outputs: list[str], heads: bool,
                dynamic_lengths: bool, label: str | None = None) -> dict:
    """ONNX Runtime against PyTorch eval on fresh inputs; returns ``{"max_abs_diff", "cases"}``. ``label``
    names the model in messages (default: ``path``)."""
    label = label or str(path)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    cases = [(1, None), (3, None)]
    if dynamic_lengths:
        cases.append((2, {m: max(2, t - 7) for m, t in spec.seq_lens.items()}))
    worst, done = 0.0, []
    for i, (batch, lens) in enumerate(cases):
        x = example_inputs(spec, names, batch, lens, seed=100 + i)
        with torch.no_grad():
            ref = model.inference_outputs(x, heads=heads)
        try:
            got = session.run(None, {n: x[n].numpy() for n in graph_inputs})
        except Exception as e:  # e.g. an axis the exporter fixed although it was declared dynamic
            raise ExportError(f"{label}: ONNX Runtime cannot run the graph at batch {batch}, lengths "
                              f"{lens or dict(spec.seq_lens)}: {str(e).splitlines()[0]}") from e
        diff = max(float(np.abs(g - ref[k].numpy()).max()) for g, k in zip(got, outputs, strict=True))
        worst = max(worst, diff)
        done.append({"batch": batch, "lengths": lens or dict(spec.seq_lens), "max_abs_diff": diff})
        if not diff <= TOLERANCE:
            raise ExportError(f"{label}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}) at batch "
                              f"{batch}, lengths {lens or dict(spec.seq_lens)}")
    return {"max_abs_diff": worst, "cases": done}
