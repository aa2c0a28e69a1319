"""Run directories: files, model selection, test-once, resume, multi-seed statistics."""

from __future__ import annotations

import csv
import json
import pickle
import statistics

import numpy as np
import pytest
import torch
import yaml

import emodistill.training.fit as run_mod
from emodistill.checkpoint import read_checkpoint, save_checkpoint
from emodistill.data import load_dataset
from emodistill.metrics.scores import compute_metrics
from emodistill.models.registry import load_checkpoint
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit, fit_seeds

N = (32, 7, 5)  # distinct split sizes so a loader can be told apart by its length
TINY_DMD = {"name": "dmd", "d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 3, "kernel_a": 3,
            "kernel_v": 3, "gd_size_homo": 4, "gd_size_hetero": 4}


@pytest.fixture
def data(mmsa_writer):
    return load_dataset(str(mmsa_writer("tiny.pkl", n=N, aligned=False, lens=(8, 10, 12))))


def _cfg(model: dict, **train) -> RunConfig:
    base = {"batch_size": 8, "eval_batch_size": 4, "update_every": 2, "max_epochs": 3, "device": "cpu"}
    return RunConfig.from_dict({"model": model, "train": {**base, **train}})


def test_run_directory_contents(data, tmp_path):
    cfg = _cfg({"name": "late_fusion", "hidden": 8}, max_epochs=3, early_stop=50)
    results = fit(cfg, data, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {
        "config.yaml", "metrics.jsonl", "best.ckpt", "last.ckpt", "test_predictions.csv", "results.json"}
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["name"] == "late_fusion" and resolved["model"]["hidden"] == 8
    assert resolved["train"]["update_every"] == 2 and resolved["seed"] == 1111
    assert resolved["spec"]["seq_lens"] == {"text": 8, "audio": 10, "vision": 12}
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    # The selected epoch is the one with the lowest validation loss.
    best = min(epochs, key=lambda e: (e["valid/loss"], e["epoch"]))
    assert results["best_epoch"] == best["epoch"]
    assert results["stopped_by"] == "max_epochs" and results["epochs_run"] == 3
    # Test predictions: every test id once; metrics recomputed from the CSV agree with results.json.
    rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert sorted(r["id"] for r in rows) == sorted(data.test.ids)
    p = np.array([float(r["prediction"]) for r in rows])
    y = np.array([float(r["label"]) for r in rows])
    recomputed = compute_metrics(p, y, "mosi")
    assert recomputed["MAE"] == pytest.approx(results["test"]["MAE"], abs=1e-5)
    assert recomputed["Mult_acc_7"] == results["test"]["Mult_acc_7"]


def test_test_split_is_evaluated_once_on_the_selected_checkpoint(data, tmp_path, monkeypatch):
    calls = []
    real = run_mod.predict

    def spy(model, loader, **kw):
        out = real(model, loader, **kw)
        calls.append((loader.n, {k: v.clone() for k, v in model.state_dict().items()}))
        return out

    monkeypatch.setattr(run_mod, "predict", spy)
    fit(_cfg({"name": "late_fusion", "hidden": 8}, max_epochs=4, early_stop=50), data, tmp_path / "r", quiet=True)
    test_calls = [c for c in calls if c[0] == N[2]]
    assert len(test_calls) == 1
    best = read_checkpoint(tmp_path / "r" / "best.ckpt")["state_dict"]
    for k, v in best.items():
        torch.testing.assert_close(test_calls[0][1][k], v)
    assert len([c for c in calls if c[0] == N[1]]) == 4  # validation once per epoch


def test_resume_reproduces_uninterrupted_run(data, tmp_path):
    cfg = _cfg(TINY_DMD, max_epochs=4, early_stop=50)
    full = fit(cfg, data, tmp_path / "full", quiet=True)

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_cfg(TINY_DMD, max_epochs=4, early_stop=50), data, tmp_path / "cut", quiet=True,
            on_epoch_end=stop_after_two)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = fit(_cfg(TINY_DMD, max_epochs=4, early_stop=50), data, tmp_path / "cut", resume=True, quiet=True)
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]
    a = read_checkpoint(tmp_path / "full" / "last.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.ckpt")["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines_full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lines_cut = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    strip = lambda ls: [{k: v for k, v in json.loads(x).items() if not k.startswith("time_")} for x in ls]  # noqa: E731
    assert strip(lines_full) == strip(lines_cut)


def test_resume_refuses_other_settings(data, tmp_path):
    fit(_cfg({"name": "late_fusion", "hidden": 8}, max_epochs=1), data, tmp_path / "r", quiet=True)
    with pytest.raises(ValueError, match="lr"):
        fit(_cfg({"name": "late_fusion", "hidden": 8}, max_epochs=2, lr=1e-3), data, tmp_path / "r", resume=True)
    # a model setting too: resuming (or reusing a finished run) with another width would mix two models
    with pytest.raises(ValueError, match=r"r/last.ckpt was trained with different settings: model.hidden$"):
        fit(_cfg({"name": "late_fusion", "hidden": 16}, max_epochs=1), data, tmp_path / "r", resume=True)
    assert fit(_cfg({"name": "late_fusion", "hidden": 8}, max_epochs=1), data, tmp_path / "r", resume=True)


def test_a_moved_finished_run_is_reused_where_it_is_now(data, tmp_path):
    """fit_seeds over a directory moved after training reuses its runs and points at their new place (the
    stored results.json still names the old one), so a moved or merged compare directory continues."""
    cfg = _cfg({"name": "late_fusion", "hidden": 8}, max_epochs=1)
    first = fit_seeds(cfg, data, tmp_path / "old", [1, 2], quiet=True)
    (tmp_path / "old").rename(tmp_path / "new")
    again = fit_seeds(cfg, data, tmp_path / "new", [1, 2], resume=True, quiet=True)
    assert again["runs"] == [str(tmp_path / "new" / f"seed-{s}") for s in (1, 2)]
    assert again["test"] == first["test"]


def test_non_empty_run_dir_is_refused(data, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        fit(_cfg({"name": "late_fusion", "hidden": 8}), data, tmp_path / "r", quiet=True)


def test_seeds_summary_is_mean_and_sample_std(data, tmp_path):
    out = fit_seeds(_cfg({"name": "late_fusion", "hidden": 8}, max_epochs=2), data, tmp_path / "s", [1, 2, 3],
                    quiet=True)
    per_seed = [json.loads((tmp_path / "s" / f"seed-{s}" / "results.json").read_text()) for s in (1, 2, 3)]
    assert [r["seed"] for r in per_seed] == [1, 2, 3]
    maes = [r["test"]["MAE"] for r in per_seed]
    assert out["test"]["MAE"]["mean"] == pytest.approx(sum(maes) / 3)
    assert out["test"]["MAE"]["std"] == pytest.approx(statistics.stdev(maes))  # ddof = 1
    assert len(set(maes)) == 3  # seeds really differ
    rows = list(csv.DictReader((tmp_path / "s" / "summary.csv").open()))
    assert {r["metric"] for r in rows} >= {"MAE", "Mult_acc_7", "Non0_acc_2"}
    assert "±" in (tmp_path / "s" / "summary.md").read_text()


def test_checkpoint_is_self_describing(data, tmp_path):
    fit(_cfg(TINY_DMD, max_epochs=1), data, tmp_path / "r", quiet=True)
    model, ckpt = load_checkpoint(tmp_path / "r" / "best.ckpt")
    assert ckpt["model_name"] == "dmd" and ckpt["model_config"]["d_model"] == 8
    assert ckpt["spec"]["feature_dims"] == data.spec.feature_dims
    assert ckpt["data"]["sha256"] == data.sha256
    assert ckpt["package_version"]
    assert not model.training


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.ckpt"
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_checkpoint(target, {"bad": lambda: 0})  # not picklable
    assert list(tmp_path.iterdir()) == []


def test_read_checkpoint_rejects_foreign_files(tmp_path):
    p = tmp_path / "sd.pth"
    torch.save({"proj_l.weight": torch.zeros(1)}, p)
    with pytest.raises(ValueError, match="import-official"):
        read_checkpoint(p)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        read_checkpoint(tmp_path / "junk.ckpt")
