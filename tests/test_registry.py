"""Every registered model through the same harness: forward, backward, shapes, finiteness, learning."""

from __future__ import annotations

import pytest
import torch

from emodistill.models import create_model, list_models
from emodistill.spec import DatasetSpec

SPEC = DatasetSpec("mosi", True, {"text": 16, "audio": 4, "vision": 6}, {"text": 8, "audio": 8, "vision": 8})
TINY: dict[str, dict] = {
    "dmd": dict(d_model=8, num_heads=2, nlevels=1, gd_size_homo=8, gd_size_hetero=4),
    "dhmd": dict(d_model=8, num_heads=2, nlevels=1, gd_size_homo=8, gd_size_hetero=4, dict_size=8),
    "late_fusion": dict(hidden=8),
    "ef_lstm": dict(hidden=8, num_layers=1),
    "lf_dnn": dict(text_hidden=8, audio_hidden=4, vision_hidden=8, text_out=8, post_fusion_dim=8),
    "tfn": dict(text_hidden=8, audio_hidden=4, vision_hidden=4, text_out=4, post_fusion_dim=8),
    "lmf": dict(text_hidden=8, audio_hidden=4, vision_hidden=8, text_out=4, rank=2),
    "mult": dict(d_model=8, num_heads=2, nlevels=1),
    "misa": dict(hidden_size=8, fusion_ff=16),
    "self_mm": dict(a_lstm_hidden_size=4, v_lstm_hidden_size=4, audio_out=4, video_out=4, post_fusion_dim=8,
                    post_text_dim=4, post_audio_dim=4, post_video_dim=4),
}


def test_every_registered_model_is_in_this_harness():
    assert set(TINY) == set(list_models())


def _batch(b: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.randn(b, 8, SPEC.feature_dims[m], generator=g) for m in ("text", "audio", "vision")}
    batch.update(audio_lengths=torch.full((b,), 8), vision_lengths=torch.full((b,), 8), index=torch.arange(b),
                 labels=(batch["text"][:, :, 0].mean(1) * 6).clamp(-3, 3))  # learnable from the text alone
    return batch


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_and_learning(name):
    torch.manual_seed(0)
    model = create_model(name, SPEC, **TINY[name])
    batch = _batch()
    out = model(batch)
    assert out.prediction.shape == (12, 1) and torch.isfinite(out.prediction).all()
    losses = model.compute_losses(out, batch["labels"])
    assert torch.isfinite(losses["loss"]) and losses["loss"].requires_grad
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    def eval_error() -> float:
        model.eval()
        with torch.no_grad():
            err = (model.predict(batch) - batch["labels"]).abs().mean().item()
        model.train()
        return err

    before = eval_error()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        model.compute_losses(model(batch), batch["labels"])["loss"].backward()
        opt.step()
    assert eval_error() < before  # the fit of the fixed batch improves
