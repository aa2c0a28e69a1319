"""Run under ``torchrun``: train, interrupt and resume through the Python API (tests/test_distributed.py).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py DATA.pkl OUT_DIR

Writes OUT_DIR/full (4 epochs uninterrupted) and OUT_DIR/cut (interrupted after epoch 2 on every
process, then resumed), and OUT_DIR/rank-R.json with what each process's ``fit`` returned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emodistill.data import load_dataset
from emodistill.training.config import RunConfig
from emodistill.training.distributed import current
from emodistill.training.fit import fit

MODEL = {"name": "dmd", "d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 3, "kernel_a": 3, "kernel_v": 3,
         "gd_size_homo": 4, "gd_size_hetero": 4}  # with its dropouts: each process draws its own masks


class Interrupt(Exception):
    pass


def stop_after_two(epoch: int, record: dict) -> None:
    if epoch == 2:
        raise Interrupt


def main(data_path: str, out: str) -> None:
    out_dir = Path(out)
    data = load_dataset(data_path)
    cfg = lambda: RunConfig.from_dict({"model": dict(MODEL), "train": {  # noqa: E731
        "batch_size": 8, "update_every": 2, "max_epochs": 4, "early_stop": 50, "eval_batch_size": 4, "lr": 1e-3}})
    full = fit(cfg(), data, out_dir / "full", quiet=True)
    try:
        fit(cfg(), data, out_dir / "cut", quiet=True, on_epoch_end=stop_after_two)
        raise SystemExit("the interrupted run did not stop")
    except Interrupt:
        pass
    resumed = fit(cfg(), data, out_dir / "cut", resume=True, quiet=True)
    ctx = current()
    (out_dir / f"rank-{ctx.rank}.json").write_text(json.dumps({"world_size": ctx.world_size, "full": full,
                                                               "resumed": resumed}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
