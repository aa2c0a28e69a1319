"""The command line, run in-process through ``emodistill.cli.main``."""

from __future__ import annotations

import json

import pytest

from emodistill.cli import main
from emodistill.data import load_dataset
from emodistill.models import create_model
from emodistill.spec import DatasetSpec
from emodistill.training.config import RunConfig, list_recipes, load_recipe


def test_models_lists_dmd(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dmd" in out and "late_fusion" in out


@pytest.mark.parametrize("verb", [["train"], ["evaluate"], ["data", "check"], ["data", "synth"], ["import-official"]])
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    assert e.value.code == 0
    assert "usage: emodistill" in capsys.readouterr().out


def test_train_then_evaluate(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl", n=(24, 6, 6))
    run = tmp_path / "run"
    rc = main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "2", "--quiet",
               "--run-dir", str(run), "--train.batch_size", "8", "--train.update_every=1", "--model.hidden", "8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "Mult_acc_7" in out and "Non0_F1_score" in out
    results = json.loads((run / "results.json").read_text())
    assert main(["evaluate", str(run / "best.ckpt"), "--data", str(pkl), "--json", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for k in ("MAE", "Mult_acc_7", "Has0_acc_2"):
        assert evaluated[k] == pytest.approx(results["test"][k], abs=1e-9)


def test_train_refuses_unknown_override(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl")
    rc = main(["train", "--data", str(pkl), "--run-dir", str(tmp_path / "r"), "--train.learning_rate", "1"])
    assert rc == 2
    assert "learning_rate" in capsys.readouterr().err


def test_evaluate_refuses_mismatched_data(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl", n=(16, 4, 4))
    run = tmp_path / "run"
    main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet", "--run-dir", str(run),
          "--train.update_every", "1"])
    other = mmsa_writer("other.pkl", dims=(16, 7, 6))
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.ckpt"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.pkl" in err and "audio feature dim 7 != 4" in err


def test_data_check_and_errors(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl", aligned=False)
    assert main(["data", "check", str(pkl)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "audio_lengths" in out
    assert main(["data", "check", str(tmp_path / "missing.pkl")]) == 2
    assert "missing.pkl" in capsys.readouterr().err


def test_data_synth_writes_a_loadable_pickle(tmp_path, capsys):
    out = tmp_path / "s.pkl"
    assert main(["data", "synth", "-o", str(out), "--unaligned"]) == 0
    data = load_dataset(str(out))
    assert not data.spec.aligned
    assert data.spec.seq_lens == {"text": 50, "audio": 375, "vision": 500}
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [1284, 229, 686]


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_loads_and_builds(name):
    d = load_recipe(name)
    cfg = RunConfig.from_dict(d, origin=name)
    family = d.get("data", {}).get("dataset", "mosi")
    dims = {"mosi": (768, 5, 20), "mosei": (768, 74, 35)}.get(family, (768, 5, 20))
    aligned = "unaligned" not in name
    lens = (50, 50, 50) if aligned else ((50, 375, 500) if family == "mosi" else (50, 500, 500))
    spec = DatasetSpec(family, aligned, dict(zip(("text", "audio", "vision"), dims, strict=True)),
                       dict(zip(("text", "audio", "vision"), lens, strict=True)))
    model_cfg = {**cfg.model_config, "text_encoder": None}  # the BERT weights are not needed to check shapes
    model = create_model(cfg.model, spec, **model_cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_import_official_command(tmp_path, capsys):
    import torch
    from test_official_import import fake_official

    from emodistill.models.registry import load_checkpoint

    src, out = tmp_path / "dmd.pth", tmp_path / "mosi.ckpt"
    sd = fake_official("mosi", "aligned")
    torch.save(sd, src)
    assert main(["import-official", str(src), "--dataset", "mosi", "--setting", "aligned", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    model, ckpt = load_checkpoint(out)
    assert ckpt["model_name"] == "dmd" and ckpt["spec"]["seq_lens"] == {"text": 50, "audio": 50, "vision": 50}
    assert torch.equal(model.state_dict()["proj.l.weight"], sd["proj_l.weight"])  # text Conv1d (50, 768, 5)
    # An official file for the other setting is refused with the reason.
    assert main(["import-official", str(src), "--dataset", "mosi", "--setting", "unaligned", "-o", str(out)]) == 2
