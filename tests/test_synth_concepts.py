"""synth-concepts: determinism, the planted concepts in the pickle, the label as a function of the
concepts, and concepts recoverable from each modality alone by a linear probe (the task is solvable)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emodistill.data import load_dataset
from emodistill.data.synth_concepts import (
    CONCEPTS,
    VALENCE,
    ConceptSynthConfig,
    generate_synth_concepts,
    load_synth_concepts,
    write_synth_concepts,
)
from emodistill.data.types import DataValidationError

SMALL = ConceptSynthConfig(n_train=40, n_valid=8, n_test=12, text_len=14, audio_len=30, vision_len=40, text_dim=32)


@pytest.fixture(scope="module")
def full():
    """The shipped source's arrays (MOSI sizes), generated once for this module."""
    return generate_synth_concepts(ConceptSynthConfig())


@pytest.mark.parametrize("aligned", [True, False])
def test_same_seed_identical_other_seed_different(aligned):
    cfg = replace(SMALL, aligned=aligned)
    a, b, c = generate_synth_concepts(cfg), generate_synth_concepts(cfg), generate_synth_concepts(replace(cfg, seed=3))
    for split in a:
        assert a[split].keys() == b[split].keys()
        for key in a[split]:
            np.testing.assert_array_equal(a[split][key], b[split][key], err_msg=f"{split}/{key}")
        for key in ("text", "audio", "vision", "concepts"):
            assert not np.array_equal(a[split][key], c[split][key])


def test_pickle_carries_concepts_and_the_reader_keeps_them(tmp_path):
    data = load_synth_concepts(SMALL, cache_dir=tmp_path)
    for split in data.splits.values():
        c = split.concepts
        assert c.shape == (len(split), len(CONCEPTS))
        assert ((c > 0).sum(axis=1) >= 1).all() and ((c > 0).sum(axis=1) <= 2).all()  # primary (+ secondary)
        assert (c.max(axis=1) >= 0.6).all()  # the primary's intensity is in [0.6, 1]
    assert data.spec.label_range == (-3.0, 3.0)
    assert "concepts" in data.hash_status
    path = write_synth_concepts(tmp_path / "c.pkl", seed=0, n_train=40, n_valid=8, n_test=12, text_len=14,
                                text_dim=32)
    assert load_dataset(path).test.concepts.shape == (12, len(CONCEPTS))


def test_reader_checks_the_concepts_key(tmp_path):
    import pickle

    raw = generate_synth_concepts(SMALL)
    raw["valid"]["concepts"] = raw["valid"]["concepts"][:3]  # 3 rows for 8 clips
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(raw, protocol=4))
    with pytest.raises(DataValidationError, match=r"valid.*concepts.*expected 8 samples.*found 3"):
        load_dataset(path)


def test_label_is_a_function_of_the_concepts(full):
    for split in full.values():
        u = split["concepts"] @ VALENCE  # noise-free valence
        y = split["regression_labels"]
        assert np.corrcoef(u, y)[0, 1] > 0.95
        assert set(np.round(3 * y).astype(int)) <= set(range(-9, 10)) and np.abs(y).max() <= 3
    labels = np.concatenate([s["regression_labels"] for s in full.values()])
    counts = np.bincount(np.round(labels).astype(int) + 3, minlength=7)
    assert (counts > 0.02 * len(labels)).all()  # every Acc-7 class is populated


def _pooled(split: dict, key: str) -> np.ndarray:
    """(N, 2D) mean and max of a modality over its true length."""
    x = split[key]
    lengths = split.get(f"{key}_lengths", split["text_bert"][:, 1].sum(1).astype(int))
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]  # (N, T)
    mean = (x * valid[..., None]).sum(1) / lengths[:, None]
    return np.concatenate([mean, np.where(valid[..., None], x, -np.inf).max(1)], axis=1)


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_concepts_recoverable_from_each_modality_alone(full, modality):
    """A linear probe (ridge least squares on one-hot targets over pooled features) trained on train and
    scored on test finds the primary concept far above chance (1/12 = 0.083)."""
    tr, te = full["train"], full["test"]
    x_tr, x_te = _pooled(tr, modality), _pooled(te, modality)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    y = np.eye(len(CONCEPTS))[tr["concepts"].argmax(1)]
    w = np.linalg.solve(x_tr.T @ x_tr + 0.1 * len(x_tr) * np.eye(x_tr.shape[1]), x_tr.T @ (y - y.mean(0)))
    acc = ((x_te @ w).argmax(1) == te["concepts"].argmax(1)).mean()
    assert acc > 0.35, f"{modality}: probe accuracy {acc:.3f}"
