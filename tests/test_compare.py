"""`emodistill compare`: several models over the same seeds, one table, per-seed results kept."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from emodistill.cli import main
from emodistill.experiments.compare import model_config, open_compare_dir, seeds_from_arg
from emodistill.training.config import RunConfig, load_recipe

TINY = ["--epochs", "1", "--quiet", "--train.batch_size", "8", "--train.update_every", "1"]


def test_seeds_from_arg():
    assert seeds_from_arg([3]) == [1111, 1112, 1113]
    assert seeds_from_arg([7, 8]) == [7, 8]
    assert seeds_from_arg([2024]) == [2024]  # a single large number is a seed, not a count


def test_recipe_model_section_only_applies_to_its_model():
    base = RunConfig.from_dict(load_recipe("dmd_synth_demo"))
    assert model_config(base, "dmd").model_config == base.model_config
    other = model_config(base, "late_fusion")
    assert other.model == "late_fusion" and other.model_config == {} and other.train == base.train
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        model_config(base, "nope")


def test_recipes_model_sections_are_typed_and_checked(mmsa_writer, tmp_path, capsys):
    """A --recipes recipe goes through the same checks as --config: values converted, unknown keys refused."""
    base = RunConfig.from_dict(load_recipe("dmd_synth_demo"))
    recipe = tmp_path / "lf.yaml"
    recipe.write_text("model: {name: late_fusion, hidden: '8', modalities: [text, audio]}\n")
    cfg = model_config(base, "late_fusion", {"late_fusion": str(recipe)})
    assert cfg.model_config == {"hidden": 8, "modalities": ("text", "audio")}
    recipe.write_text("model: {name: late_fusion, hiden: 8}\n")
    pkl = mmsa_writer(tmp_path / "d.pkl", n=(16, 6, 6))
    assert main(["compare", "--models", "late_fusion", "--recipes", f"late_fusion={recipe}", "--data", str(pkl),
                 "--run-dir", str(tmp_path / "cmp"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emodistill compare: error: {recipe}: model: ['hiden'] not field(s) of model "
                          "'late_fusion'; valid names: dropout, hidden,") and err.count("\n") == 1
    assert not (tmp_path / "cmp").exists()  # refused before the comparison directory is made


def test_a_per_model_recipe_brings_its_schedule_but_not_the_run_environment():
    """--recipes mult=mult_mosi trains MulT at MMSA's schedule (lr 2e-3, 8-batch windows, patience 8) on the
    shared data, seed, device and threads."""
    base = RunConfig.from_dict(load_recipe("dmd_synth_demo"))
    base.train.seed, base.train.num_threads, base.train.device = 1113, 1, "cpu"
    cfg = model_config(base, "mult", {"mult": "mult_mosi"})
    assert (cfg.train.lr, cfg.train.update_every, cfg.train.early_stop, cfg.train.max_epochs) == (2e-3, 8, 8, None)
    assert (cfg.train.seed, cfg.train.num_threads, cfg.train.device) == (1113, 1, "cpu")
    assert cfg.data == base.data and cfg.model_config["position_embedding"] is True
    with pytest.raises(ValueError, match="recipe 'mult_mosi' is for model 'mult', not 'dmd'"):
        model_config(base, "dmd", {"dmd": "mult_mosi"})


def test_compare_table_is_the_seed_statistics(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer(tmp_path / "d.pkl", n=(16, 6, 6))
    root = tmp_path / "cmp"
    args = ["compare", "--models", "late_fusion,dmd", "--data", str(pkl), "--seeds", "2", "--run-dir", str(root),
            "--reference", "dmd", "--perturb", *TINY, "--model.d_model", "8", "--model.num_heads", "2",
            "--model.nlevels", "1"]
    # without --config the base model is dmd, so the --model.* overrides size DMD; late_fusion keeps its defaults
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| late_fusion |" in out and "| dmd |" in out
    summary = json.loads((root / "compare.json").read_text())
    assert summary["seeds"] == [1111, 1112]
    rows = {r["model"]: r for r in csv.DictReader((root / "compare.csv").open())}
    for model in ("late_fusion", "dmd"):
        per_seed = [json.loads((root / model / f"seed-{s}" / "results.json").read_text())["test"]["MAE"]
                    for s in (1111, 1112)]
        assert float(rows[model]["MAE_mean"]) == pytest.approx(np.mean(per_seed))
        assert float(rows[model]["MAE_std"]) == pytest.approx(np.std(per_seed, ddof=1))
        assert (root / model / "seed-1112" / "test_predictions.csv").is_file()  # every run's predictions kept
    # paired differences late_fusion - dmd, seed by seed, with a t-interval on 1 degree of freedom (t = 12.706)
    mae = {m: [json.loads((root / m / f"seed-{s}" / "results.json").read_text())["test"]["MAE"] for s in (1111, 1112)]
           for m in ("late_fusion", "dmd")}
    diffs = np.subtract(mae["late_fusion"], mae["dmd"])
    paired = summary["paired"]["late_fusion"]["MAE"]
    assert summary["reference"] == "dmd" and set(summary["paired"]) == {"late_fusion"}
    assert paired["mean"] == pytest.approx(diffs.mean())
    half = 12.7062 * np.std(diffs, ddof=1) / np.sqrt(2)
    assert (paired["ci_low"], paired["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half), rel=1e-4)
    assert paired["better"] == int((diffs < 0).sum())  # lower MAE is better
    assert "Paired differences, model - dmd, over seeds [1111, 1112]" in out and f"{diffs.mean():+.4f}" in out
    assert (root / "compare_seeds.png").stat().st_size > 1000
    assert (root / "late_fusion" / "seed-1111" / "robustness-test" / "robustness.json").is_file()
    areas = json.loads((root / "robustness.json").read_text())["areas"]
    assert set(areas) == {"late_fusion", "dmd"} and "audio/missing" in areas["dmd"]
    assert (root / "robustness_areas.png").is_file()
    # the same command continues (nothing retrained)
    assert main(args) == 0
    assert "continuing the compare" in capsys.readouterr().out


def test_compare_continues_with_other_models_and_keeps_each_model_s_recipe(mmsa_writer, tmp_path, capsys):
    """Another model list in a compare's directory reuses the finished runs of the models it shares (same
    recipe), trains only the new ones, and remembers every model; another recipe for a model already there,
    or another shared configuration, is refused before anything is trained."""
    pkl = mmsa_writer(tmp_path / "d.pkl", n=(16, 6, 6))
    root = tmp_path / "cmp"
    common = ["--data", str(pkl), "--seeds", "2", "--run-dir", str(root), *TINY]
    assert main(["compare", "--models", "late_fusion", *common]) == 0
    first = root / "late_fusion" / "seed-1111" / "results.json"
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()

    assert main(["compare", "--models", "late_fusion,tfn", "--recipes", "tfn=tfn_mosi", *common]) == 0
    out = capsys.readouterr().out
    assert "continuing the compare" in out and "| late_fusion |" in out and "| tfn |" in out
    assert first.stat().st_mtime_ns == stamp  # reused, not retrained
    assert (root / "tfn" / "seed-1112" / "results.json").is_file()
    plan = yaml.safe_load((root / "compare.yaml").read_text())
    assert plan["models"] == ["late_fusion", "tfn"] and plan["recipes"] == {"tfn": "tfn_mosi"}

    # a subset continues and tables only its models; the plan still holds both
    assert main(["compare", "--models", "tfn", "--recipes", "tfn=tfn_mosi", *common]) == 0
    assert json.loads((root / "compare.json").read_text())["models"] == ["tfn"]
    assert yaml.safe_load((root / "compare.yaml").read_text())["models"] == ["late_fusion", "tfn"]
    capsys.readouterr()

    # tfn without its recipe would not be the runs that are there
    assert main(["compare", "--models", "tfn", *common]) == 2
    err = capsys.readouterr().err
    assert "compare.yaml: this directory holds another compare (different recipe for tfn (tfn_mosi there, " \
           "the base recipe now))" in err
    assert main(["compare", "--models", "late_fusion", *common, "--reference", "dmd"]) == 2
    assert "--reference: 'dmd' is not one of --models ['late_fusion']" in capsys.readouterr().err
    assert main(["compare", "--models", "late_fusion", *common, "--train.lr", "0.01"]) == 2
    assert "holds another compare (different config)" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["late_fusion", "tfn"]


def test_a_model_without_a_trained_epoch_may_take_another_recipe(tmp_path):
    """A model whose first start failed before any epoch (an empty seed folder, as a missing BERT leaves)
    may come back with another recipe; once an epoch of it is there, another recipe is refused."""
    base = RunConfig.from_dict({"model": {"name": "dmd"}})
    root, continuing = open_compare_dir(base, [1111], ["tfn"], {"tfn": "tfn_mosi"}, tmp_path / "cmp")
    assert not continuing
    (root / "tfn" / "seed-1111").mkdir(parents=True)
    assert open_compare_dir(base, [1111], ["tfn"], {}, root) == (root, True)
    assert yaml.safe_load((root / "compare.yaml").read_text())["recipes"] == {}
    (root / "tfn" / "seed-1111" / "last.ckpt").write_bytes(b"an epoch")
    with pytest.raises(ValueError, match=r"different recipe for tfn \(the base recipe there, tfn_mosi now\)"):
        open_compare_dir(base, [1111], ["tfn"], {"tfn": "tfn_mosi"}, root)


def test_jobs_train_seed_by_seed_in_worker_processes_to_the_same_results(mmsa_writer, tmp_path, capsys, monkeypatch):
    """--jobs 2: the runs of a sequential compare, trained in two processes; the queue is seed-major, so a
    compare stopped part-way holds whole seeds of every model."""
    import emodistill.training.parallel as parallel

    pkl = mmsa_writer(tmp_path / "d.pkl", n=(16, 6, 6))
    common = ["compare", "--models", "late_fusion,tfn", "--data", str(pkl), "--seeds", "2", *TINY]
    assert main([*common, "--run-dir", str(tmp_path / "seq"), "--train.num_threads", "1"]) == 0
    # no --train.num_threads: each worker takes 1 thread, and the parent still reuses the workers' runs
    assert main([*common, "--run-dir", str(tmp_path / "par"), "--jobs", "2"]) == 0
    assert "4 runs in 2 processes" in capsys.readouterr().err
    for model in ("late_fusion", "tfn"):
        for seed in (1111, 1112):
            a, b = (json.loads((tmp_path / r / model / f"seed-{seed}" / "results.json").read_text())
                    for r in ("seq", "par"))
            assert a["test"] == b["test"] and a["valid"] == b["valid"]

    queued = []
    monkeypatch.setattr(parallel, "fit_in_parallel", lambda tasks, jobs: queued.extend(tasks))
    parallel.fit_grid_in_parallel({"a": RunConfig(), "b": RunConfig()}, tmp_path / "q", [1, 2], 2)
    assert [(str(d.relative_to(tmp_path / "q")), c.train.seed) for c, d in queued] == [
        ("a/seed-1", 1), ("b/seed-1", 1), ("a/seed-2", 2), ("b/seed-2", 2)]
