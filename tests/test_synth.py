"""Synthetic data set: determinism, MMSA schema, caching, and the multimodal-advantage property."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emodistill.data import load_dataset
from emodistill.data.loader import BatchLoader
from emodistill.data.synth import (
    GENERATOR_VERSION,
    SynthConfig,
    default_cache_dir,
    ensure_synth_file,
    generate_synth,
    load_synth,
)
from emodistill.models import create_model

SMALL = SynthConfig(n_train=24, n_valid=6, n_test=8, text_len=12, audio_len=30, vision_len=40, text_dim=32)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for split in a:
        assert a[split].keys() == b[split].keys()
        for key in a[split]:
            np.testing.assert_array_equal(a[split][key], b[split][key], err_msg=f"{split}/{key}")


@pytest.mark.parametrize("aligned", [True, False])
def test_same_seed_identical_other_seed_different(aligned):
    cfg = replace(SMALL, aligned=aligned)
    _assert_same(generate_synth(cfg), generate_synth(cfg))
    a, b = generate_synth(cfg), generate_synth(replace(cfg, seed=1))
    for key in ("text", "audio", "vision", "regression_labels"):
        assert not np.array_equal(a["train"][key], b["train"][key]), key


def test_test_split_does_not_depend_on_train_size():
    a = generate_synth(SMALL)["test"]
    b = generate_synth(replace(SMALL, n_train=50))["test"]
    for key in ("text", "audio", "regression_labels"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("aligned", [True, False])
def test_schema_shapes_lengths_and_padding(tmp_path, aligned):
    cfg = replace(SMALL, aligned=aligned)
    data = load_synth(cfg, cache_dir=tmp_path)
    spec = data.spec
    assert spec.name == "synth" and spec.aligned == aligned and spec.has_text_bert
    assert spec.feature_dims == {"text": 32, "audio": 5, "vision": 20}
    t_a, t_v = (12, 12) if aligned else (30, 40)
    assert spec.seq_lens == {"text": 12, "audio": t_a, "vision": t_v}
    assert data.notes == []
    all_ids = []
    for name, n in cfg.sizes.items():
        s = data.splits[name]
        assert s.text.shape == (n, 12, 32) and s.text_bert.shape == (n, 3, 12)
        assert s.audio.shape == (n, t_a, 5) and s.vision.shape == (n, t_v, 20)
        l_t = s.text_bert[:, 1].sum(1).astype(int)
        ids = s.text_bert[:, 0].astype(int)
        assert l_t.min() >= 3 and l_t.max() <= 12
        np.testing.assert_array_equal(s.text_bert[:, 2], 0)  # segments
        if aligned:
            assert s.audio_lengths is None
            l_a = l_v = l_t  # word timeline
        else:
            l_a, l_v = s.audio_lengths, s.vision_lengths
            assert 1 <= l_a.min() and l_a.max() <= t_a and 1 <= l_v.min() and l_v.max() <= t_v
        for i in range(n):
            assert ids[i, 0] == 101 and ids[i, l_t[i] - 1] == 102 and np.all(ids[i, l_t[i] :] == 0)
            assert np.all(s.text[i, l_t[i] :] == 0) and np.all(np.any(s.text[i, : l_t[i]] != 0, axis=-1))
            assert np.all(s.audio[i, l_a[i] :] == 0) and np.all(np.any(s.audio[i, : l_a[i]] != 0, axis=-1))
            assert np.all(s.vision[i, l_v[i] :] == 0) and np.all(np.any(s.vision[i, : l_v[i]] != 0, axis=-1))
            assert len(s.raw_text[i].split()) == l_t[i] - 2  # words between [CLS] and [SEP]
        assert np.abs(s.labels).max() <= 3
        np.testing.assert_allclose(s.labels * 3, np.round(s.labels * 3), atol=1e-5)  # 1/3 steps
        all_ids += s.ids
    assert len(set(all_ids)) == len(all_ids) and all_ids[0] == "synth_00000$_$0"


def test_cache_file_named_written_once_and_atomically(tmp_path):
    path = ensure_synth_file(SMALL, cache_dir=tmp_path)
    for part in (f"v{GENERATOR_VERSION}", "aligned", "seed0", "n24_6_8", "T12_30_40", "D32_5_20"):
        assert part in path.name
    stamp = path.stat().st_mtime_ns
    assert ensure_synth_file(SMALL, cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind
    assert ensure_synth_file(replace(SMALL, aligned=False), cache_dir=tmp_path).name != path.name


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EMODISTILL_CACHE", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("EMODISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "emodistill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "emodistill"


def test_token_ids_carry_the_language_cue():
    d = generate_synth(replace(SMALL, n_train=600, text_len=50, text_dim=8))["train"]
    ids = d["text_bert"][:, 0].astype(int)
    band = np.where(ids >= 10000, (ids - 10000) // 1000, np.nan)  # sentiment bands 0..5, NaN elsewhere
    assert np.all((band[~np.isnan(band)] >= 0) & (band[~np.isnan(band)] <= 5))
    mean_band = np.nanmean(band, axis=1)
    assert np.corrcoef(mean_band, d["regression_labels"])[0, 1] > 0.5


def test_config_validation():
    with pytest.raises(ValueError, match="text_len=2"):
        SynthConfig(text_len=2)
    with pytest.raises(ValueError, match="n_valid=0"):
        SynthConfig(n_valid=0)


# --- the property the synthetic data exist for ----------------------------------------------------


def _acc7(pred: np.ndarray, true: np.ndarray) -> float:
    """MMSA's Mult_acc_7: clip to [-3, 3], then np.round (half to even) and compare."""
    return float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(true, -3, 3))))


def _predict(model, split) -> np.ndarray:
    model.eval()
    out = torch.cat([model.predict(b) for b in BatchLoader(split, 512, shuffle=False)]).numpy()
    model.train()
    return out


def _train(data, modalities, epochs=6, seed=0):
    """Plain Adam loop; keeps the weights of the best validation L1 epoch (as MMSA selects models)."""
    torch.manual_seed(seed)
    model = create_model("late_fusion", data.spec, modalities=modalities)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = BatchLoader(data.train, 32, shuffle=True, seed=seed)
    val_l1, best = [], None
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = model.compute_losses(model(batch), batch["labels"])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_l1.append(float(np.abs(_predict(model, data.valid) - data.valid.labels).mean()))
        if val_l1[-1] == min(val_l1):
            best = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best)
    return _acc7(_predict(model, data.test), data.test.labels), val_l1


@pytest.fixture
def one_thread():
    """Tiny matmuls gain nothing from threads, and OpenMP spin-waits make a shared CPU crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_full_model_beats_every_single_modality(one_thread):
    data = load_dataset("synth")  # the default data set, cached for the session by conftest
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 1284, "valid": 229, "test": 686}

    full, val_l1 = _train(data, ["text", "audio", "vision"])
    constant = float(np.abs(np.median(data.train.labels) - data.valid.labels).mean())
    assert val_l1[2] < 0.7 * constant, f"no visible learning: val L1 {val_l1[:3]} vs constant {constant:.3f}"

    single = {m: _train(data, [m])[0] for m in ("text", "audio", "vision")}
    print(f"\nAcc-7 test: full {full:.3f}, " + ", ".join(f"{m} {a:.3f}" for m, a in single.items()))
    for modality, acc in single.items():
        assert full >= acc + 0.05, f"full {full:.3f} vs {modality} {acc:.3f}: margin below 5 points"
    assert single["text"] > single["audio"]  # language is the most reliable modality by design


def test_write_synth_matches_generator(tmp_path):
    from emodistill.data import load_mmsa
    from emodistill.data.synth import write_synth

    kw = dict(seed=3, aligned=False, n_train=5, n_valid=2, n_test=2, text_len=6, audio_len=9, vision_len=11,
              text_dim=4)
    path = write_synth(tmp_path / "out" / "synth.pkl", **kw)
    data = load_mmsa(path, dataset="synth")
    ref = generate_synth(replace(SMALL, **kw))
    np.testing.assert_array_equal(data.test.vision, ref["test"]["vision"])
    np.testing.assert_array_equal(data.train.audio_lengths, ref["train"]["audio_lengths"])
