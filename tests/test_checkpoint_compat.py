"""Checkpoints written before the package was reorganised still load and predict the same.

``tests/data/legacy/`` holds checkpoints written by commit 050218a (the old ``emodistill.train`` layout) and
the test-split predictions that code computed from them; ``make_legacy_checkpoints.py`` beside them says how.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_mmsa_pickle

import emodistill
from emodistill.data.loader import BatchLoader

LEGACY = Path(__file__).parent / "data" / "legacy"


MODELS = ["dmd", "dhmd", "mult", "late_fusion", "tfn", "lmf", "lf_dnn", "ef_lstm", "misa", "self_mm"]


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_written_before_the_move_loads_and_predicts_the_same(name, tmp_path):
    model, ckpt = emodistill.load_checkpoint(LEGACY / f"{name}.ckpt")
    assert ckpt["model_name"] == name and ckpt["package_version"] == "0.1.0"
    data = emodistill.load_dataset(str(write_mmsa_pickle(tmp_path / "tiny.pkl", dims=(16, 4, 6), aligned=True, seed=0)))
    batch = next(iter(BatchLoader(data.splits["test"], 64, shuffle=False)))
    with torch.no_grad():
        pred = model(batch).prediction.view(-1)
    expected = torch.tensor(json.loads((LEGACY / f"{name}.expected.json").read_text())["test_prediction"])
    # the same math as the writing code; only float32 rounding of another machine may differ
    torch.testing.assert_close(pred, expected, rtol=0, atol=1e-5)
