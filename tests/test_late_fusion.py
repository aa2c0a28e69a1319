"""late_fusion baseline: registry, config, masking, shapes, objective."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from emodistill.data import load_mmsa
from emodistill.data.loader import BatchLoader
from emodistill.models import create_model, list_models
from emodistill.models.late_fusion import LateFusion, LateFusionConfig
from emodistill.models.layers.pooling import masked_mean


def _batch(path, n=6):
    data = load_mmsa(path)
    return data, next(iter(BatchLoader(data.train, n, shuffle=False)))


def test_registered_and_built_from_spec(unaligned_pkl):
    assert "late_fusion" in list_models()
    data, batch = _batch(unaligned_pkl)
    model = create_model("late_fusion", data.spec, hidden=8)
    assert isinstance(model, LateFusion)
    assert model.subnets["text"].net[1].in_features == 768  # D_l from the spec
    assert model.subnets["vision"].net[1].in_features == 20
    out = model(batch)
    assert out.prediction.shape == (6, 1) and torch.isfinite(out.prediction).all()


def test_unimodal_variant_only_builds_and_reads_its_modality(unaligned_pkl):
    data, batch = _batch(unaligned_pkl)
    model = create_model("late_fusion", data.spec, modalities=["audio"], hidden=8).eval()
    assert list(model.subnets) == ["audio"] and model.config.modalities == ("audio",)
    audio_only = {k: v for k, v in batch.items() if k in ("audio", "audio_lengths")}
    torch.testing.assert_close(model(audio_only).prediction, model(batch).prediction)


def test_config_validation_names_choices(aligned_pkl):
    spec = load_mmsa(aligned_pkl).spec
    with pytest.raises(ValueError, match=r"choose one or more of \['text', 'audio', 'vision'\]"):
        create_model("late_fusion", spec, modalities=["speech"])
    with pytest.raises(ValueError, match="repeats"):
        LateFusionConfig(modalities=("text", "text"))
    with pytest.raises(ValueError, match="dropout"):
        LateFusionConfig(dropout=1.0)


def test_config_dict_rebuilds_the_model(aligned_pkl):
    spec = load_mmsa(aligned_pkl).spec
    model = create_model("late_fusion", spec, hidden=12, dropout=0.2, modalities=["text", "vision"])
    cfg = asdict(model.config)
    cfg["modalities"] = list(cfg["modalities"])  # as it comes back from YAML/JSON
    clone = create_model("late_fusion", spec, **cfg)
    clone.load_state_dict(model.state_dict())  # same parameter names and shapes
    assert clone.config == model.config


def test_masked_mean_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 7.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def test_padding_beyond_lengths_is_ignored(unaligned_pkl):
    data, batch = _batch(unaligned_pkl)
    model = create_model("late_fusion", data.spec, hidden=8).eval()
    ref = model(batch).prediction
    noisy = {k: v.clone() for k, v in batch.items()}
    for mod in ("audio", "vision"):
        t = noisy[mod].shape[1]
        beyond = torch.arange(t)[None, :] >= noisy[f"{mod}_lengths"][:, None]  # (B, T)
        noisy[mod][beyond] = 1e3
    text_pad = noisy["text_bert"][:, 1] == 0
    noisy["text"][text_pad] = 1e3
    torch.testing.assert_close(model(noisy).prediction, ref)


def test_text_mask_without_text_bert_uses_nonzero_rows(unaligned_pkl):
    data, batch = _batch(unaligned_pkl)
    model = create_model("late_fusion", data.spec, modalities=["text"], hidden=8).eval()
    no_ids = {k: v for k, v in batch.items() if k != "text_bert"}
    torch.testing.assert_close(model(no_ids).prediction, model(batch).prediction)


def test_aligned_files_average_only_nonzero_steps(aligned_pkl):
    # Aligned: lengths are T, so zero padding on the word timeline must not dilute the mean.
    data, batch = _batch(aligned_pkl)
    model = create_model("late_fusion", data.spec, modalities=["vision"], hidden=8).eval()
    mask = model.valid_mask(batch, "vision")
    torch.testing.assert_close(mask, batch["text_bert"][:, 1] > 0)  # fixture pads vision like text
    expected = batch["vision"].sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(masked_mean(batch["vision"], mask), expected)


def test_l1_objective_and_gradients(unaligned_pkl):
    data, batch = _batch(unaligned_pkl)
    model = create_model("late_fusion", data.spec, hidden=8)
    out = model(batch)
    losses = model.compute_losses(out, batch["labels"])
    expected = (out.prediction.view(-1) - batch["labels"]).abs().mean()
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_training_batch_of_one_sample_works(unaligned_pkl):
    data, batch = _batch(unaligned_pkl, n=1)
    model = create_model("late_fusion", data.spec, hidden=8).train()
    assert model(batch).prediction.shape == (1, 1)
