"""Distributed data-parallel training: batch sharding (hand-checked), and 2 CPU processes with gloo under
torchrun against a single process on the same data.

Stated tolerance: with the same seed and the loss terms that are means over samples (dropout 0), two
processes reproduce the single-process run to 1e-5 in every loss and metric, epoch by epoch (only the
summation order of the gradient differs); the first test asserts exactly that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_mmsa_pickle

from emodistill.data import load_dataset
from emodistill.data.loader import BatchLoader, shard_bounds
from emodistill.models import create_model
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS
from emodistill.training.distributed import DistContext, wrap_model

TOL = 1e-5
NO_DROPOUT = {k: 0.0 for k in DROPOUT_FIELDS}  # DMD's and MulT's eight rates
TINY_DMD = {"name": "dmd", "d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 3, "kernel_a": 3, "kernel_v": 3,
            "gd_size_homo": 4, "gd_size_hetero": 4}
# 37 training rows in batches of 7 (5 x 7 + 2): every batch is shared unevenly (4 + 3, then 1 + 1) between two
# processes, and all 6 take part in the 3 accumulation windows of 2
TRAIN = {"batch_size": 7, "update_every": 2, "max_epochs": 3, "eval_batch_size": 4, "lr": 1.0e-3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_mmsa_pickle(tmp_path_factory.mktemp("ddp") / "tiny.pkl", n=(37, 11, 9), aligned=False)


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _train(*args: str, nproc: int) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "emodistill", "train", *args]
        return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
    return _torchrun("-m", "emodistill", "train", *args, nproc=nproc)


def _epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- sharding


def test_shard_bounds_split_evenly_and_cover():
    assert [shard_bounds(5, 2, r) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [shard_bounds(1, 3, r) for r in range(3)] == [(0, 1), (1, 1), (1, 1)]


def test_training_shards_partition_every_global_batch(tiny):
    split = load_dataset(str(tiny)).splits["train"]  # 37 rows
    single = BatchLoader(split, 8, shuffle=True, seed=3)
    shards = [BatchLoader(split, 8, shuffle=True, seed=3, rank=r, world_size=3) for r in range(3)]
    assert len(single) == 5 and all(len(s) == 5 for s in shards)
    for b, (whole, *parts) in enumerate(zip(single, *shards, strict=True)):
        joined = torch.cat([p["index"] for p in parts])
        assert joined.tolist() == whole["index"].tolist()  # the same rows, in the same order
        weights = [s.shard_weight(b) for s in shards]
        n = len(whole["index"])
        assert weights == pytest.approx([3 * len(p["index"]) / n for p in parts])
        assert sum(weights) == pytest.approx(3.0)  # DDP's mean of W weighted means = the global mean


def test_empty_share_gets_a_placeholder_row_of_weight_zero(tiny):
    split = load_dataset(str(tiny)).splits["train"]
    # 37 rows in batches of 12: the last global batch has 1 row, so ranks 1 and 2 have nothing
    loaders = [BatchLoader(split, 12, shuffle=True, seed=0, rank=r, world_size=3) for r in range(3)]
    last = [list(ld)[-1] for ld in loaders]
    assert [len(b["index"]) for b in last] == [1, 1, 1]
    assert [ld.shard_weight(3) for ld in loaders] == [3.0, 0.0, 0.0]


def test_evaluation_shares_are_strided_rows(tiny):
    split = load_dataset(str(tiny)).splits["valid"]  # 11 rows
    got = [torch.cat([b["index"] for b in BatchLoader(split, 4, shuffle=False, rank=r, world_size=2)]).tolist()
           for r in range(2)]
    assert got == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9]]


def test_models_with_per_sample_state_are_refused(tiny):
    spec = load_dataset(str(tiny)).spec
    model = create_model("self_mm", spec)
    with pytest.raises(ValueError, match="self_mm|SelfMM.*one process"):
        wrap_model(model, DistContext(rank=0, world_size=2), torch.device("cpu"))


# ---------------------------------------------------------------------------------------------- torchrun


@pytest.mark.parametrize("model", [
    {**TINY_DMD, **NO_DROPOUT, "ort_semantics": "per_sample", "disabled_losses": ["mar", "homo_reg", "hetero_reg",
                                                                                    "hetero_repr"]},
    {"name": "mult", "d_model": 8, "num_heads": 2, "nlevels": 1, **NO_DROPOUT},
], ids=["dmd-per-sample-terms", "mult"])
def test_two_gloo_processes_match_one_process(tiny, tmp_path, model):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": model, "train": TRAIN}))
    runs = {}
    for nproc in (1, 2):
        runs[nproc] = tmp_path / f"n{nproc}"
        proc = _train("--config", str(recipe), "--data", str(tiny), "--run-dir", str(runs[nproc]), "--quiet",
                      nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _epochs(runs[1]), _epochs(runs[2])
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        for key in ("train/loss", "valid/loss", "valid/MAE", "valid/Corr"):
            assert b[key] == pytest.approx(a[key], abs=TOL), (a["epoch"], key)
    res = [json.loads((runs[n] / "results.json").read_text()) for n in (1, 2)]
    assert res[1]["best_epoch"] == res[0]["best_epoch"]
    for key, value in res[0]["test"].items():
        assert res[1]["test"][key] == pytest.approx(value, abs=TOL), key
    # every test clip predicted once, from the gathered shares
    lines = (runs[2] / "test_predictions.csv").read_text().splitlines()[1:]
    assert len(lines) == 9 and len({line.split(",")[0] for line in lines}) == 9
    config = yaml.safe_load((runs[2] / "config.yaml").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "distributed" not in yaml.safe_load((runs[1] / "config.yaml").read_text())


def test_distributed_resume_reproduces_the_uninterrupted_run(tiny, tmp_path):
    """DMD with its dropouts (each process its own stream) and every loss term, through the Python API:
    interrupted after epoch 2 on both processes, then resumed, it ends where the uninterrupted run does."""
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = _torchrun(str(worker), str(tiny), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["full"]["test"] == ranks[1]["full"]["test"]  # every process returns the gathered metrics
    for r in ranks:
        assert r["resumed"]["test"] == r["full"]["test"]
    from emodistill.checkpoint import read_checkpoint

    a = read_checkpoint(tmp_path / "full" / "last.ckpt")
    b = read_checkpoint(tmp_path / "cut" / "last.ckpt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert len(a["training_state"]["rng_ranks"]["cpu"]) == 2  # each process's dropout stream is saved
    assert not torch.equal(*a["training_state"]["rng_ranks"]["cpu"])


def test_only_rank_zero_writes_and_errors_reach_every_process(tiny, tmp_path):
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "old.txt").write_text("x")
    proc = _train("--data", str(tiny), "--model", "late_fusion", "--run-dir", str(run_dir), "--epochs", "1",
                  nproc=2)
    assert proc.returncode != 0  # both processes stop (no hang waiting for rank 0)
    assert proc.stderr.count("run directory is not empty") == 2
    assert sorted(p.name for p in run_dir.iterdir()) == ["old.txt"]


def test_two_nodes_by_rendezvous_match_one_process(tiny, tmp_path):
    """Two torchrun launchers as two 'machines' (1 process each) meeting at a c10d rendezvous on loopback."""
    import socket

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "mult", "d_model": 8, "num_heads": 2, "nlevels": 1,
                                                **NO_DROPOUT}, "train": TRAIN}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    train = ["-m", "emodistill", "train", "--config", str(recipe), "--data", str(tiny), "--quiet"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=test",
                               *train, "--run-dir", str(tmp_path / "nodes")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    single = _train(*train[3:], "--run-dir", str(tmp_path / "one"), nproc=1)
    assert single.returncode == 0, single.stderr[-2000:]
    for a, b in zip(_epochs(tmp_path / "one"), _epochs(tmp_path / "nodes"), strict=True):
        assert b["valid/loss"] == pytest.approx(a["valid/loss"], abs=TOL)
    assert sum("run directory:" in o[0] for o in outs) == 1  # one node holds rank 0 and reports
