"""Inference latency of DMD per clip, every backend side by side in one run (MOSI aligned and unaligned shapes).

    python benchmarks/inference_speed.py [--official-repo /path/to/DMD] [--threads 2] [--checkpoint CKPT]

For MOSI-aligned (50/50/50 steps) and MOSI-unaligned (50 text, 375 audio, 500 vision steps) inputs with
the official MOSI hyper-parameters, at batch 1 and 16, prints milliseconds per clip of:

* ``official``: the official DMD's forward (``--official-repo``, a checkout outside this project; the
  same weights as ours, converted), the only inference path it has;
* ``forward``: ours, the full training-time forward pass (decoder, every head and loss input), which is
  what ``predict`` ran before :meth:`inference_outputs` existed;
* ``eager``: ours, :meth:`inference_outputs` (the prediction, per-modality heads and GD edges that
  ``predict`` reports) in PyTorch, the encoders' LayerNorms folded on every call;
* ``folded``: the same with the folded weights kept across calls (``inference_cache``, as the Predictor
  does);
* ``onnx``: the ``emodistill export`` graph of the same outputs in ONNX Runtime (fp32), graph optimisations
  on, ``--threads`` intra-op threads; ``onnx-basic``: basic optimisations only; ``onnx-1thread``;
* ``onnx-int8``: the graph after ONNX Runtime's dynamic int8 quantisation of its MatMul weights.

It also measures how far PyTorch's current kernels at these shapes allow (:func:`kernel_floor`): the GEMM,
convolution, softmax and LayerNorm calls that the folded path makes for one clip are recorded with their
real inputs and replayed back to back, without the Python, the views and the elementwise operations in
between. Their total, less the cost of calling that many kernels at all, is a floor for any backend that
runs the same float32 math through these kernels at these shapes (not for the arithmetic itself: larger
or fused GEMMs would change which kernels run).

Each figure is the best of ``--reps`` interleaved rounds (load changes hit every variant alike). Also
prints the largest difference of each backend's outputs from eager (fp32 must stay within 1e-5) and, with
``--checkpoint`` (a DMD/DHMD run trained on ``--data``, default synth), the test-split MAE and Acc-7 of
fp32 and int8. Ends with ``summary: aligned 1 clip X ms (BACKEND); unaligned 1 clip Y ms (BACKEND), eager
Z ms``, naming the fastest backend of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare_official import _best_times, build_pair, load_official  # noqa: E402
from train_speed import matmul_peak_gflops  # noqa: E402

from emodistill.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from emodistill.inference.export import export_onnx  # noqa: E402
from emodistill.inference.onnx_runtime import OnnxModel  # noqa: E402
from emodistill.models import create_model  # noqa: E402
from emodistill.models.dmd.official import official_config, official_spec  # noqa: E402


def quantize_int8(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic quantisation: int8 MatMul weights, activations quantised per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    _copy_metadata(src, dst)
    return dst


def _copy_metadata(src: Path, dst: Path) -> None:
    import onnx

    a, b = onnx.load(str(src)), onnx.load(str(dst))
    del b.metadata_props[:]
    b.metadata_props.extend(a.metadata_props)
    onnx.save(b, str(dst))


def _batch(spec, bsz: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {k: torch.randn(bsz, spec.seq_lens[k], spec.feature_dims[k], generator=g)
             for k in ("text", "audio", "vision")}
    if not spec.aligned:
        for k in ("audio", "vision"):
            batch[f"{k}_lengths"] = torch.full((bsz,), spec.seq_lens[k])
    return batch


KERNELS = {
    "GEMM": ("aten.mm.", "aten.bmm.", "aten.baddbmm.", "aten.addmm.", "aten.addbmm."),
    "convolution": ("aten.convolution.",),
    "softmax": ("aten._softmax.",),
    "LayerNorm": ("aten.native_layer_norm.",),
}
"""Kernel families replayed by :func:`kernel_floor`, by ATen op name prefix."""


def kernel_floor(fn, reps: int) -> dict[str, float]:
    """Milliseconds of the arithmetic kernels alone in one call of ``fn``, best of ``reps`` replays.

    Records every ATen call of ``fn()`` (a TorchDispatchMode sees them after autograd and composite
    decompositions), keeps those in :data:`KERNELS` with clones of their inputs, and times replaying them
    back to back. ``"dispatch"`` is what the same number of calls of a one-element ATen add costs (the
    price of calling a kernel at all, which the replay pays too). Returns ``{family: ms, ..., "total": ms,
    "dispatch": ms, "calls": n, "ops": all ATen calls, "gemm_gflop": the GEMMs' arithmetic}``.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    recorded: list[tuple[str, object, tuple, dict]] = []
    seen = [0]

    def family(func) -> str | None:
        name = str(func)
        return next((f for f, prefixes in KERNELS.items() if name.startswith(prefixes)), None)

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            seen[0] += 1
            fam = family(func)
            if fam is not None:
                clone = lambda a: a.clone() if isinstance(a, torch.Tensor) else a  # noqa: E731
                recorded.append((fam, func, tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()}))
            return func(*args, **kwargs)

    with torch.no_grad():
        with Record():
            fn()
        best = {f: float("inf") for f in (*KERNELS, "total", "dispatch")}
        one = torch.zeros(1)
        for _ in range(reps):
            spent = dict.fromkeys(KERNELS, 0.0)
            for fam, func, args, kwargs in recorded:
                t0 = time.perf_counter()
                func(*args, **kwargs)
                spent[fam] += time.perf_counter() - t0
            for f, s in spent.items():
                best[f] = min(best[f], 1e3 * s)
            best["total"] = min(best["total"], 1e3 * sum(spent.values()))
            empty = 0.0
            for _ in recorded:
                t0 = time.perf_counter()
                torch.ops.aten.add.Tensor(one, one)
                empty += time.perf_counter() - t0
            best["dispatch"] = min(best["dispatch"], 1e3 * empty)
    gemm = sum(_gemm_flops(args) for fam, _, args, _ in recorded if fam == "GEMM")
    return {**best, "calls": len(recorded), "ops": seen[0], "gemm_gflop": gemm / 1e9}


def _gemm_flops(args: tuple) -> int:
    """2 * M * K * N (times the batch) of a recorded mm/bmm/addmm/baddbmm call: its last two operands."""
    a, b = args[-2], args[-1]
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


def bench_setting(setting: str, off, threads: int, reps: int, tmp: Path) -> dict[str, dict]:
    spec = official_spec("mosi", setting)
    if off is not None:
        (official, _, _), ours, spec = build_pair(off, "mosi", setting, zero_dropout=False)
        official.eval()
    else:
        torch.manual_seed(0)
        official, ours = None, create_model("dmd", spec, **official_config("mosi"))
    ours.eval()
    ckpt = tmp / f"dmd-{setting}.ckpt"
    save_checkpoint(ckpt, build_checkpoint(ours, "dmd", spec, official_config("mosi")))
    export_onnx(ckpt, tmp / f"{setting}.onnx")
    sessions = {
        "onnx": OnnxModel(tmp / f"{setting}.onnx", threads=threads),
        "onnx-basic": OnnxModel(tmp / f"{setting}.onnx", threads=threads, optimize="basic"),
        "onnx-1thread": OnnxModel(tmp / f"{setting}.onnx", threads=1),
        "onnx-int8": OnnxModel(quantize_int8(tmp / f"{setting}.onnx", tmp / f"{setting}-int8.onnx"), threads=threads),
    }
    results = {}
    for bsz in (1, 16):
        x = _batch(spec, bsz)
        folds: dict = {}

        def folded(x=x, folds=folds):
            with ours.inference_cache(folds):
                return ours.inference_outputs(x)

        fns = {"forward": lambda x=x: ours(x), "eager": lambda x=x: ours.inference_outputs(x), "folded": folded}
        if official is not None:
            fns = {"official": lambda x=x: official(x["text"], x["audio"], x["vision"]), **fns}
        fns.update({name: (lambda s=s, x=x: s.inference_outputs(x)) for name, s in sessions.items()})
        with torch.no_grad():
            ref = ours.inference_outputs(x)
            times = _best_times(fns, reps if bsz == 1 else max(3, reps // 4))
        diffs = {name: max(float((s.inference_outputs(x)[k] - ref[k]).abs().max()) for k in ref)
                 for name, s in sessions.items()}
        results[bsz] = {"ms_per_clip": {k: 1e3 * v / bsz for k, v in times.items()}, "max_abs_diff": diffs}
        if bsz == 1:
            results[bsz]["kernels"] = kernel_floor(folded, reps)
    return results


def int8_accuracy(checkpoint: Path, data: str, tmp: Path) -> dict[str, dict[str, float]]:
    """Test-split MAE and Acc-7 of the checkpoint's fp32 and int8 graphs (the same batches)."""
    from emodistill.data import load_dataset
    from emodistill.data.loader import BatchLoader
    from emodistill.metrics.scores import compute_metrics

    fp32 = tmp / "trained.onnx"
    export_onnx(checkpoint, fp32)
    models = {"fp32": OnnxModel(fp32), "int8": OnnxModel(quantize_int8(fp32, tmp / "trained-int8.onnx"))}
    ds = load_dataset(data)
    out = {}
    for name, m in models.items():
        preds, labels = [], []
        for batch in BatchLoader(ds.test, 64, shuffle=False):
            preds.append(m.inference_outputs(batch)["prediction"].numpy())
            labels.append(batch["labels"].numpy())
        metrics = compute_metrics(np.concatenate(preds), np.concatenate(labels), ds.spec.metric_family)
        out[name] = {k: metrics[k] for k in ("MAE", "Mult_acc_7", "Non0_acc_2") if k in metrics}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-repo", type=Path, help="official DMD checkout (outside this project)")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default 2)")
    ap.add_argument("--reps", type=int, default=40, help="timing rounds at batch 1 (a quarter at batch 16)")
    ap.add_argument("--checkpoint", type=Path, help="a trained DMD/DHMD checkpoint: fp32 vs int8 test accuracy")
    ap.add_argument("--data", default="synth", help="its data set (default synth)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops(torch.device("cpu"))
    off = load_official(args.official_repo) if args.official_repo else None
    best = {}
    with tempfile.TemporaryDirectory(prefix="emodistill-bench-") as tmp:
        for setting in ("aligned", "unaligned"):
            res = bench_setting(setting, off, args.threads, args.reps, Path(tmp))
            print(f"\nMOSI {setting}, {args.threads} threads: ms per clip (best of rounds); ratio = eager / backend")
            for bsz, r in res.items():
                eager = r["ms_per_clip"]["eager"]
                print(f"  batch {bsz}:")
                for name, ms in r["ms_per_clip"].items():
                    diff = r["max_abs_diff"].get(name)
                    extra = f"   max |diff| vs eager {diff:.1e}" if diff is not None else ""
                    print(f"    {name:<13} {ms:9.2f} ms   x{eager / ms:5.2f}{extra}")
            k = res[1]["kernels"]
            parts = ", ".join(f"{f} {k[f]:.2f}" for f in KERNELS)
            rate = k["gemm_gflop"] / (k["GEMM"] / 1e3)
            print(f"  1 clip, folded path's kernels replayed alone: {k['total']:.2f} ms, "
                  f"{k['total'] - k['dispatch']:.2f} ms without the calling cost ({parts}, each its own best; "
                  f"{k['calls']} kernel calls of {k['ops']} ATen calls; calling {k['calls']} one-element adds "
                  f"costs {k['dispatch']:.2f} ms); its GEMMs: {1e3 * k['gemm_gflop']:.0f} MFLOP at {rate:.0f} GFLOP/s, "
                  f"{100 * rate / peak:.0f} % of this machine's {peak:.0f} GFLOP/s matmul peak")
            one = res[1]["ms_per_clip"]
            fastest = min((k for k in one if k not in ("official", "forward")), key=one.get)
            best[setting] = (one[fastest], fastest, one["eager"], one["forward"])
        if args.checkpoint:
            acc = int8_accuracy(args.checkpoint, args.data, Path(tmp))
            print(f"\nint8 vs fp32 on the {args.data} test split ({args.checkpoint}):")
            for name, m in acc.items():
                print(f"  {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()))
    (a_ms, a_name, _, _), (u_ms, u_name, u_eager, u_forward) = best["aligned"], best["unaligned"]
    print(f"\nsummary: aligned 1 clip {a_ms:.2f} ms ({a_name}); unaligned 1 clip {u_ms:.2f} ms ({u_name}), "
          f"eager {u_eager:.2f} ms (full forward {u_forward:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
