"""The ablation grid: variant configs, the table files, resuming, and the CLI."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from emodistill.cli import main
from emodistill.experiments.ablate import ABLATIONS, ablation_csv, ablation_markdown, variant_config
from emodistill.metrics.stats import summarize
from emodistill.training.config import RunConfig

TINY = {"name": "dmd", "d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 3, "kernel_a": 3, "kernel_v": 3,
        "gd_size_homo": 4, "gd_size_hetero": 4, "disabled_losses": ["mar"]}


def _base() -> RunConfig:
    return RunConfig.from_dict({"model": dict(TINY), "train": {"batch_size": 8, "update_every": 1, "max_epochs": 1,
                                                               "device": "cpu"}})


def test_variant_configs():
    base = _base()
    dmd = variant_config(base, "dmd")
    assert dmd.model == "dmd" and dmd.model_config["d_model"] == 8
    dhmd = variant_config(base, "dhmd-no-homo-dict")
    assert dhmd.model == "dhmd" and dhmd.model_config["dict_spaces"] == ("hetero",)
    # the recipe's disabled terms and the variant's are combined
    nd = variant_config(base, "no-distill")
    assert set(nd.model_config["disabled_losses"]) == {"mar", "homo_logit", "homo_reg", "hetero_logit",
                                                       "hetero_repr", "hetero_reg"}
    # DHMD-only keys of a DHMD recipe do not reach the DMD rows
    base.model_config["dict_size"] = 16
    assert "dict_size" not in variant_config(base, "dmd").model_config
    assert variant_config(base, "dhmd").model_config["dict_size"] == 16
    assert base.model_config["disabled_losses"] == ["mar"]  # base untouched
    with pytest.raises(ValueError, match="unknown"):
        variant_config(base, "dhmd-no-everything")


def test_the_mult_row_uses_its_recipe_on_the_grid_environment():
    base = _base()
    base.train.seed, base.train.num_threads = 7, 1
    cfg = variant_config(base, "mult")
    assert cfg.model == "mult" and cfg.train.lr == 2e-3 and cfg.train.update_every == 8  # MMSA's schedule
    assert (cfg.train.seed, cfg.train.num_threads, cfg.train.device) == (7, 1, "cpu")  # the grid's environment
    old = variant_config(base, "dhmd-no-anticollapse")
    assert old.model_config["dict_usage_weight"] == 0.0 and old.model_config["dict_commit_weight"] == 0.0


def test_every_variant_builds(mmsa_writer):
    from emodistill.data import load_dataset
    from emodistill.models import create_model

    spec = load_dataset(str(mmsa_writer("s.pkl", n=(8, 4, 4)))).spec
    for name in ABLATIONS:
        cfg = variant_config(_base(), name)
        create_model(cfg.model, spec, **cfg.model_config)


def test_table_files_hand_computed():
    runs = {"dmd": [{"MAE": 1.0, "Corr": 0.2}, {"MAE": 2.0, "Corr": 0.4}, {"MAE": 3.0, "Corr": 0.6}],
            "dhmd": [{"MAE": 0.5, "Corr": 0.5}, {"MAE": 0.5, "Corr": 0.7}, {"MAE": 0.5, "Corr": 0.9}]}
    summaries = {k: summarize(v) for k, v in runs.items()}
    md = ablation_markdown(summaries, ["MAE", "Corr"], [1, 2, 3])
    # dmd MAE: mean 2, std 1, 95% t (df 2) = 4.302653 -> half width 4.302653 / sqrt(3) = 2.484138
    assert "| dmd | DMD (coarse distillation only) | 2.0000 ± 1.0000 [-0.4841, 4.4841] |" in md
    assert "0.5000 ± 0.0000 [0.5000, 0.5000]" in md
    rows = list(csv.DictReader(ablation_csv(summaries, ["MAE", "Corr"]).splitlines()))
    assert [r["variant"] for r in rows] == ["dmd", "dhmd"]
    assert float(rows[1]["Corr_mean"]) == pytest.approx(0.7)
    assert float(rows[0]["MAE_std"]) == pytest.approx(statistics.stdev([1.0, 2.0, 3.0]))
    assert rows[0]["n_seeds"] == "3"


def test_ablate_cli_runs_resumes_and_refuses_other_plans(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    root = tmp_path / "abl"
    args = ["ablate", "--data", str(pkl), "--seeds", "1", "2", "--variants", "dmd", "dhmd", "--run-dir", str(root),
            "--quiet", "--epochs", "1", "--train.batch_size", "8", "--train.update_every", "1", "--train.device",
            "cpu"]
    args += [x for k, v in TINY.items() if k not in ("name", "disabled_losses") for x in (f"--model.{k}", str(v))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| dhmd | DHMD, all components |" in out and "Non0_acc_2" in out
    for variant in ("dmd", "dhmd"):
        for seed in (1, 2):
            assert (root / variant / f"seed-{seed}" / "results.json").is_file()
    with open(root / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["dmd", "dhmd"]
    # the table is the summary of the per-seed results.json files
    maes = [json.loads((root / "dhmd" / f"seed-{s}" / "results.json").read_text())["test"]["MAE"] for s in (1, 2)]
    assert float(rows[1]["MAE_mean"]) == pytest.approx(statistics.mean(maes))
    res = {v: [json.loads((root / v / f"seed-{s}" / "results.json").read_text()) for s in (1, 2)]
           for v in ("dmd", "dhmd")}
    assert res["dhmd"][0]["model"] == "dhmd"
    # paired differences against dmd: the mean of the per-seed differences, seeds where lower MAE
    summary = json.loads((root / "ablation.json").read_text())
    d = [res["dhmd"][i]["test"]["MAE"] - res["dmd"][i]["test"]["MAE"] for i in range(2)]
    assert summary["reference"] == "dmd" and set(summary["paired"]) == {"dhmd"}
    assert summary["paired"]["dhmd"]["MAE"]["mean"] == pytest.approx(statistics.mean(d))
    assert summary["paired"]["dhmd"]["MAE"]["better"] == sum(x < 0 for x in d)
    assert "Paired differences, variant - dmd" in out
    # dictionary usage of the DHMD runs, summarised over seeds; DMD has no dictionary row
    assert set(summary["dictionary"]) == {"dhmd"}
    perp = [r["dictionary"]["homo"]["l"]["perplexity"] for r in res["dhmd"]]
    assert summary["dictionary"]["dhmd"]["homo/l/perplexity"]["mean"] == pytest.approx(statistics.mean(perp))
    assert 1.0 <= min(perp) and "| dhmd | homo |" in out
    # same plan again: every run is found finished, nothing retrains
    mtime = (root / "dmd" / "seed-1" / "best.ckpt").stat().st_mtime_ns
    assert main(args) == 0
    assert (root / "dmd" / "seed-1" / "best.ckpt").stat().st_mtime_ns == mtime
    assert "continuing the ablation" in capsys.readouterr().out
    # another plan in the same directory is refused
    assert main([*args[:-2], "--train.device", "auto"]) == 2
    assert "holds another ablation (different config)" in capsys.readouterr().err


def test_ablate_list(capsys):
    assert main(["ablate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ABLATIONS:
        assert name in out


def test_jobs_train_in_worker_processes_to_the_same_results(mmsa_writer, tmp_path, capsys):
    """--jobs 2 runs (variant, seed) pairs in two processes; every run equals its sequential twin."""
    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    common = ["--data", str(pkl), "--seeds", "1", "2", "--variants", "dmd", "dhmd", "--quiet", "--epochs", "1",
              "--train.batch_size", "8", "--train.update_every", "1", "--train.device", "cpu",
              "--train.num_threads", "1"]
    common += [x for k, v in TINY.items() if k not in ("name", "disabled_losses") for x in (f"--model.{k}", str(v))]
    assert main(["ablate", *common, "--run-dir", str(tmp_path / "seq")]) == 0
    assert main(["ablate", *common, "--run-dir", str(tmp_path / "par"), "--jobs", "2"]) == 0
    assert "4 runs in 2 processes" in capsys.readouterr().err
    for variant in ("dmd", "dhmd"):
        for seed in (1, 2):
            a, b = (json.loads((tmp_path / r / variant / f"seed-{seed}" / "results.json").read_text())
                    for r in ("seq", "par"))
            assert a["test"] == b["test"] and a["valid"] == b["valid"]
    with pytest.raises(SystemExit) as exit_:
        main(["ablate", *common, "--run-dir", str(tmp_path / "bad"), "--jobs", "0"])
    assert exit_.value.code == 2
    assert "argument --jobs: expected a number >= 1, found '0'" in capsys.readouterr().err
