"""Robustness perturbations (seeded, never dropping samples), curve areas, and `evaluate --perturb`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodistill.cli import main
from emodistill.data import load_dataset
from emodistill.experiments.robustness import LEVELS, curve_areas, perturb


@pytest.fixture
def split(mmsa_writer, tmp_path):
    pkl = mmsa_writer(tmp_path / "u.pkl", n=(40, 4, 4), aligned=False, dims=(16, 4, 6), lens=(8, 30, 40))
    return load_dataset(pkl).train


def test_missing_zeroes_one_modality_and_keeps_every_sample(split):
    out = perturb(split, "audio", "missing", 1.0, seed=0)
    assert len(out) == len(split) and np.all(out.audio == 0)
    np.testing.assert_array_equal(out.vision, split.vision)
    np.testing.assert_array_equal(out.text, split.text)
    assert np.any(split.audio != 0)  # the input is untouched
    text = perturb(split, "text", "missing", 1.0, seed=0)
    assert np.all(text.text_bert[:, 1, 1:] == 0) and np.all(text.text_bert[:, 1, 0] == 1)  # only [CLS] left


def test_drop_rate_is_the_level_on_valid_steps_only(split):
    out = perturb(split, "vision", "drop", 0.3, seed=1)
    valid = np.arange(split.vision.shape[1])[None, :] < split.vision_lengths[:, None]  # (N, T)
    was = np.any(split.vision != 0, axis=2)
    dropped = was & ~np.any(out.vision != 0, axis=2)
    assert dropped[valid].mean() == pytest.approx(0.3, abs=0.05)
    np.testing.assert_array_equal(out.vision[~valid], split.vision[~valid])  # padding untouched
    again = perturb(split, "vision", "drop", 0.3, seed=1)
    np.testing.assert_array_equal(out.vision, again.vision)  # seeded
    assert not np.array_equal(out.vision, perturb(split, "vision", "drop", 0.3, seed=2).vision)


def test_text_drop_keeps_cls_and_sep(split):
    out = perturb(split, "text", "drop", 0.9, seed=0)
    n_tok = split.text_bert[:, 1].sum(1).astype(int)
    rows = np.arange(len(split))
    assert np.all(out.text_bert[:, 1, 0] == 1) and np.all(out.text_bert[rows, 1, n_tok - 1] == 1)
    assert out.text_bert[:, 1].sum() < split.text_bert[:, 1].sum()


def test_noise_scale_is_level_times_feature_sd(split):
    level = 0.5
    out = perturb(split, "audio", "noise", level, seed=3)
    valid = np.arange(split.audio.shape[1])[None, :] < split.audio_lengths[:, None]
    sd = split.audio[valid].std(axis=0)  # (D,)
    added = (out.audio - split.audio)[valid]  # (n_valid, D)
    np.testing.assert_allclose(added.std(axis=0) / sd, level, rtol=0.1)
    assert np.all(out.audio[~valid] == split.audio[~valid])


def test_curve_area_is_the_mean_along_the_curve():
    rows = [{"modality": "all", "kind": "clean", "level": 0.0, "Acc": 1.0}]
    rows += [{"modality": "audio", "kind": "drop", "level": lv, "Acc": 1.0 - lv} for lv in LEVELS["drop"]]
    rows += [{"modality": "audio", "kind": "missing", "level": 1.0, "Acc": 0.5}]
    areas = curve_areas(rows, ("Acc",))
    # drop: Acc = 1 - level on [0, 0.9] rescaled to [0, 1] -> mean of a line from 1.0 to 0.1 = 0.55
    assert areas["audio/drop"]["Acc"] == pytest.approx(0.55)
    assert areas["audio/missing"]["Acc"] == pytest.approx(0.75)  # (1.0 + 0.5) / 2
    assert "text/drop" not in areas


def test_evaluate_perturb_writes_curves(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer(tmp_path / "d.pkl", n=(16, 6, 6))
    run = tmp_path / "run"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet", "--run-dir",
                 str(run), "--train.update_every", "1", "--model.hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.ckpt"), "--data", str(pkl), "--perturb", "--json"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[: printed.index("}") + 1])
    out = run / "robustness-test"
    result = json.loads((out / "robustness.json").read_text())
    clean = result["rows"][0]
    assert clean["kind"] == "clean" and clean["MAE"] == pytest.approx(metrics["MAE"])
    n_rows = 1 + 3 * sum(len(v) for v in LEVELS.values())
    assert len(result["rows"]) == n_rows and set(result["areas"]) == {f"{m}/{k}" for m in ("text", "audio", "vision")
                                                                      for k in LEVELS}
    assert (out / "robustness_areas.png").is_file() and (out / "robustness_MAE.png").is_file()
    assert "| audio/noise |" in (out / "robustness.md").read_text()
