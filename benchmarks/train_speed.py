"""Training throughput and single-clip latency of DMD at MOSI-aligned shapes.

    python benchmarks/train_speed.py [--device cpu|cuda] [--batch-size 16] [--steps 30] [--threads N]

Prints samples/s of a full training step (forward, all DMD losses including the margin and
orthogonality terms, backward, value clipping, Adam step every mini-batch) at batch 16, and the
eval-mode latency of one clip (median over repeats). Inputs: 768-d text features (50 steps), 5-d audio
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
def clip_latency_ms(model, clip, repeats: int, device) -> float:
    model.eval()
    times = []
    for i in range(repeats + 5):
        sync(device)
        t0 = time.perf_counter()
        model.predict(clip)
        sync(device)
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


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
    ms = clip_latency_ms(model, clip, args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(f"DMD MOSI-aligned, batch {args.batch_size}: training {sps:.1f} samples/s; one clip (eval) {ms:.2f} ms")


if __name__ == "__main__":
    main()
