"""Training throughput and single-clip latency of DMD at MOSI-aligned shapes.

    python benchmarks/train_speed.py [--device cpu|cuda] [--batch-size 16] [--steps 30] [--threads N]

Prints samples/s of a full training step (forward, all DMD losses including the margin and
orthogonality terms, backward, value clipping, Adam step every mini-batch) at batch 16, and the
eval-mode latency of one clip (median over repeats; with the transformers' LayerNorm-folded weights kept
across clips, as the Predictor keeps them, and refolded per call), and what those mean in arithmetic: the FLOPs of a
training step and of one clip (torch's FlopCounterMode: matmuls and convolutions), the rate they were done
at, and that rate as a fraction of this device's dense-matmul peak (a 2048x2048 float32 matmul), the
ceiling for any implementation of the same math. Inputs: 768-d text features (50 steps), 5-d audio
and 20-d vision (50 steps each), as in MMSA's MOSI aligned_50.pkl, with the official MOSI
hyper-parameters. For the official implementation on the same machine, see
``benchmarks/compare_official.py --speed``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from emodistill.models import create_model
from emodistill.spec import DatasetSpec

MOSI_ALIGNED = DatasetSpec(
    "mosi", True, {"text": 768, "audio": 5, "vision": 20}, {"text": 50, "audio": 50, "vision": 50}
)


def random_batch(spec: DatasetSpec, b: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        m: torch.randn(b, spec.seq_lens[m], spec.feature_dims[m], generator=g) for m in ("text", "audio", "vision")
    }
    # MOSI labels are multiples of 1/3 in [-3, 3]; ties matter for the margin loss's positives.
    batch["labels"] = torch.randint(-9, 10, (b,), generator=g).float() / 3
    for m in ("audio", "vision"):
        batch[f"{m}_lengths"] = torch.full((b,), spec.seq_lens[m])
    batch["index"] = torch.arange(b)
    return {k: v.to(device) for k, v in batch.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(model, batch, steps: int, warmup: int, device) -> float:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    params = [p for p in model.parameters() if p.requires_grad]
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.compute_losses(model(batch), batch["labels"])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, 0.6)
        opt.step()
    sync(device)
    return steps * batch["labels"].shape[0] / (time.perf_counter() - t0)


@torch.no_grad()
def clip_latency_ms(model, clip, repeats: int, device, folds: dict | None = None) -> float:
    """Median eval latency of ``model.predict`` on one clip; with ``folds`` (a dict kept across calls, as
    emodistill's Predictor keeps it) the transformers' LayerNorm-folded weights are computed once."""
    model.eval()
    times = []
    for i in range(repeats + 5):
        sync(device)
        t0 = time.perf_counter()
        if folds is None:
            model.predict(clip)
        else:
            with model.inference_cache(folds):
                model.predict(clip)
        sync(device)
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def step_flops(model, batch) -> float:
    """FLOPs (matmuls, convolutions) of one training forward + backward on ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        model.compute_losses(model(batch), batch["labels"])["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def clip_flops(model, clip) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter:
        model.predict(clip)
    return float(counter.get_total_flops())


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Dense float32 matmul rate on ``device``: the practical ceiling for the model's arithmetic."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model("dmd", MOSI_ALIGNED).to(device)
    batch = random_batch(MOSI_ALIGNED, args.batch_size, device)
    clip = random_batch(MOSI_ALIGNED, 1, device, seed=1)
    sps = train_throughput(model, batch, args.steps, args.warmup, device)
    ms_refold = clip_latency_ms(model, clip, args.repeats, device)
    ms = clip_latency_ms(model, clip, args.repeats, device, folds={})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(f"DMD MOSI-aligned, batch {args.batch_size}: training {sps:.1f} samples/s; one clip (eval) {ms:.2f} ms "
          f"with the folded weights kept as the Predictor keeps them ({ms_refold:.2f} ms refolding them per call)")
    train_gf, clip_gf = step_flops(model, batch) / 1e9, clip_flops(model, clip) / 1e9
    peak = matmul_peak_gflops(device)
    train_rate = train_gf * sps / args.batch_size
    clip_rate = clip_gf / (ms / 1e3)
    print(f"arithmetic: {train_gf:.2f} GFLOP per training step, {clip_gf * 1e3:.0f} MFLOP per clip; dense-matmul peak "
          f"{peak:.0f} GFLOP/s")
    print(f"achieved: training {train_rate:.1f} GFLOP/s ({train_rate / peak:.0%} of peak), one clip "
          f"{clip_rate:.1f} GFLOP/s ({clip_rate / peak:.0%}); at peak: {peak / train_gf * args.batch_size:.0f} "
          f"samples/s, {clip_gf / peak * 1e3:.2f} ms per clip")


if __name__ == "__main__":
    main()
