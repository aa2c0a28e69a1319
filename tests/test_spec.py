"""DatasetSpec: the task field, its validation, metric families and old-checkpoint compatibility."""

from __future__ import annotations

import pytest

from emodistill.spec import LABEL_SUFFIXES, LONG_NAMES, MODALITIES, SHORT_NAMES, DatasetSpec, is_binary_task

DIMS = {"text": 300, "audio": 81, "vision": 371}
LENS = {"text": 50, "audio": 50, "vision": 50}


def test_default_task_is_regression_and_families_are_unchanged():
    assert DatasetSpec("mosi", True, DIMS, LENS).task == "regression"
    assert DatasetSpec("mosi", True, DIMS, LENS).metric_family == "mosi"
    assert DatasetSpec("sims", False, DIMS, LENS, label_range=(-1.0, 1.0)).metric_family == "sims"


def test_binary_task_uses_the_binary_family_and_0_1_labels():
    spec = DatasetSpec("urfunny", True, DIMS, LENS, label_range=(0.0, 1.0), task="binary")
    assert spec.metric_family == "binary"
    with pytest.raises(ValueError, match=r"label_range=\(-3.0, 3.0\) for task 'binary'; expected \(0.0, 1.0\)"):
        DatasetSpec("urfunny", True, DIMS, LENS, task="binary")
    with pytest.raises(ValueError, match="task='multiclass'; expected one of \\['regression', 'binary'\\]"):
        DatasetSpec("x", True, DIMS, LENS, task="multiclass")


def test_is_binary_is_the_one_task_switch():
    assert DatasetSpec("urfunny", True, DIMS, LENS, label_range=(0.0, 1.0), task="binary").is_binary
    assert not DatasetSpec("mosi", True, DIMS, LENS).is_binary
    assert is_binary_task("binary") and not is_binary_task("regression")


def test_modality_name_maps_are_inverse_and_cover_every_modality():
    assert set(SHORT_NAMES) == set(LABEL_SUFFIXES) == set(MODALITIES)
    assert {LONG_NAMES[s]: s for s in LONG_NAMES} == SHORT_NAMES
    assert [SHORT_NAMES[m] for m in MODALITIES] == ["l", "a", "v"]
    assert [LABEL_SUFFIXES[m] for m in MODALITIES] == ["T", "A", "V"]


def test_round_trip_and_old_checkpoint_dicts():
    spec = DatasetSpec("mustard", False, DIMS, LENS, label_range=(0.0, 1.0), has_text_bert=False,
                       extra={"reader": "mustard", "fold": None}, task="binary")
    d = spec.to_dict()
    assert d["task"] == "binary" and d["label_range"] == [0.0, 1.0]
    assert DatasetSpec.from_dict(d) == spec
    # a spec saved before the task field existed (issue 2 checkpoints) loads as regression
    old = {"name": "mosi", "aligned": True, "feature_dims": DIMS, "seq_lens": LENS,
           "label_range": [-3.0, 3.0], "has_text_bert": True, "extra": {}}
    loaded = DatasetSpec.from_dict(old)
    assert loaded.task == "regression" and loaded.metric_family == "mosi" and loaded.label_range == (-3.0, 3.0)
