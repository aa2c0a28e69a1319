"""DMD model: shapes, official sizes and sanity values (docs/dmd-spec.md §2.3, §3, §4.6, §12), objective wiring."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from emodistill.models import create_model, list_models
from emodistill.models.dmd.config import DMDConfig
from emodistill.models.dmd.gd_unit import prior_from_logits
from emodistill.models.dmd.model import DMD, MODS, DMDOutput
from emodistill.models.dmd.official import official_config
from emodistill.spec import DatasetSpec

SRC = Path(__file__).resolve().parents[1] / "src" / "emodistill" / "models"
TINY = dict(d_model=8, num_heads=2, nlevels=2, gd_size_homo=8, gd_size_hetero=4)


def spec_of(dims, lens, name="mosi", aligned=True) -> DatasetSpec:
    return DatasetSpec(
        name,
        aligned,
        dict(zip(("text", "audio", "vision"), dims, strict=True)),
        dict(zip(("text", "audio", "vision"), lens, strict=True)),
    )


MOSI_ALIGNED = spec_of((768, 5, 20), (50, 50, 50))
MOSEI_ALIGNED = spec_of((768, 74, 35), (50, 50, 50), name="mosei")
UNALIGNED_LIKE = spec_of((16, 4, 6), (12, 20, 16), aligned=False)


def make_batch(spec: DatasetSpec, bsz: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        k: torch.randn(bsz, spec.seq_lens[k], spec.feature_dims[k], generator=g)
        for k in ("text", "audio", "vision")
    }
    batch["labels"] = torch.tensor([0.5, -1.0, 0.5, 2.0, -1.0, 0.0, 1.2, 0.5][:bsz])
    return batch


def body_params(model: DMD) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("gd_"))


def check_shapes(model: DMD, out: DMDOutput, bsz: int) -> None:
    d = model.config.d_model
    assert out.prediction.shape == (bsz, 1)
    assert out.logits_homo.shape == out.logits_hetero.shape == (3, bsz, 1)
    assert out.reprs_homo.shape == (3, bsz, d)
    assert out.reprs_hetero.shape == (3, bsz, 2 * d)
    assert out.logits_c.shape == (bsz, 1)
    assert out.edges_homo.shape == out.edges_hetero.shape == (bsz, 6)
    for m in MODS:
        t = model.t_out[m]
        for field in (out.proj_x, out.recon, out.s, out.s_r, out.c):
            assert field[m].shape == (bsz, d, t)
        assert out.c_sim[m].shape == (bsz, d)
        assert out.last_h[m].shape == (bsz, 2 * d)


def test_registered_and_built_by_name():
    assert "dmd" in list_models()
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    assert isinstance(model, DMD) and model.config == DMDConfig(**TINY)


def test_mosi_aligned_shapes_and_official_parameter_count():
    model = create_model("dmd", MOSI_ALIGNED)
    assert model.t_out == {"l": 46, "v": 46, "a": 46}
    # official 4,743,658 minus the three never-trained proj_cosine layers (3 x (2300 * 50 + 50))
    assert body_params(model) == 4_743_658 - 3 * (2300 * 50 + 50) == 4_398_508
    assert sum(p.numel() for p in model.gd_homo.parameters()) == 3649
    assert sum(p.numel() for p in model.gd_hetero.parameters()) == 3425
    model.eval()
    with torch.no_grad():
        check_shapes(model, model(make_batch(MOSI_ALIGNED, 3)), 3)


def test_mosei_aligned_lengths_and_parameter_count():
    model = create_model("dmd", MOSEI_ALIGNED, **official_config("mosei"))
    assert model.t_out == {"l": 46, "v": 48, "a": 50}  # T' = T - k + 1 with kernels 5 / 3 / 1
    assert body_params(model) == 1_792_778 - 30 * (46 + 48 + 50) * 30 - 3 * 30 == 1_663_088
    assert sum(p.numel() for p in model.gd_homo.parameters()) == 2369
    out = model(make_batch(MOSEI_ALIGNED, 2))
    check_shapes(model, out, 2)


def test_unaligned_like_shapes_forward_backward():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    assert model.t_out == {"l": 8, "v": 12, "a": 16}
    batch = make_batch(UNALIGNED_LIKE, 4)
    out = model(batch)
    check_shapes(model, out, 4)
    losses = model.compute_losses(out, batch["labels"])
    losses["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_sanity_values_at_initialisation():
    torch.manual_seed(0)
    model = create_model("dmd", MOSI_ALIGNED)
    batch = make_batch(MOSI_ALIGNED, 8)
    out = model(batch)
    assert torch.allclose(out.edges_homo, torch.full_like(out.edges_homo, 1 / 6), atol=0.03)
    assert torch.allclose(out.edges_hetero, torch.full_like(out.edges_hetero, 1 / 6), atol=0.03)
    losses = model.compute_losses(out, batch["labels"])
    homo = 10 * sum((1 / 6 - p) ** 2 for p in prior_from_logits([0, 0, 1, 0, 1, 0], 0.25))
    het = 10 * sum((1 / 6 - p) ** 2 for p in prior_from_logits([0, 0, 1, 0, 1, 1], 0.25))
    assert losses["homo_reg"].item() == pytest.approx(homo, abs=0.05) and homo == pytest.approx(
        2.99, abs=0.01
    )
    assert losses["hetero_reg"].item() == pytest.approx(het, abs=0.05) and het == pytest.approx(
        1.55, abs=0.01
    )


def test_total_loss_is_the_official_combination():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    batch = make_batch(UNALIGNED_LIKE, 6)
    out = model(batch)
    t = model.compute_losses(out, batch["labels"])
    want = (
        t["task"]
        + 0.05 * (t["homo_logit"] + t["homo_reg"])
        + 0.05 * (t["hetero_logit"] + t["hetero_repr"] + t["hetero_reg"])
        + 0.1 * (t["cyc"] + t["rec"] + 0.1 * (t["mar"] + t["ort"]))
    )
    assert t["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    heads = [k for k in t if k.startswith("task_")]
    assert len(heads) == 8
    assert t["task"].item() == pytest.approx(sum(t[k].item() for k in heads), rel=1e-6)
    assert t["loss"].requires_grad and not any(v.requires_grad for k, v in t.items() if k != "loss")
    assert t["homo_repr"].item() > 0  # reported, not optimised


def test_eval_prediction_is_deterministic_and_train_mode_is_seeded():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    batch = make_batch(UNALIGNED_LIKE, 3)
    model.eval()
    with torch.no_grad():
        a, b = model(batch).prediction, model(batch).prediction
    assert torch.equal(a, b)
    torch.testing.assert_close(model.predict(batch), a.view(-1))
    model.train()
    torch.manual_seed(5)
    c = model(batch).prediction
    torch.manual_seed(5)
    d = model(batch).prediction
    torch.manual_seed(6)
    e = model(batch).prediction
    assert torch.equal(c, d) and not torch.equal(c, e)


def test_ort_semantics_selectable_and_recorded():
    batch = make_batch(UNALIGNED_LIKE, 4)
    torch.manual_seed(0)
    a = create_model("dmd", UNALIGNED_LIKE, **TINY)
    torch.manual_seed(0)
    b = create_model("dmd", UNALIGNED_LIKE, ort_semantics="per_sample", **TINY)
    assert a.config.ort_semantics == "torch19" and asdict(b.config)["ort_semantics"] == "per_sample"
    a.eval()
    b.eval()
    with torch.no_grad():
        la = a.compute_losses(a(batch), batch["labels"])
        lb = b.compute_losses(b(batch), batch["labels"])
    assert la["task"].item() == pytest.approx(lb["task"].item())
    assert la["ort"].item() != pytest.approx(lb["ort"].item())


def test_config_round_trip_rebuilds_same_model():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    again = create_model("dmd", UNALIGNED_LIKE, **model.config_dict())
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.config == model.config


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(d_model=50, num_heads=7), "divisible"),
        (dict(attn_dropout=1.0), "attn_dropout"),
        (dict(ort_semantics="torch2"), "ort_semantics"),
        (dict(gd_prior_logits_homo=(0, 1)), "6 entries"),
        (dict(kernel_a=0), "kernel_a"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        DMDConfig(**bad)


def test_sequence_shorter_than_kernel_is_rejected():
    with pytest.raises(ValueError, match="shorter than kernel"):
        create_model("dmd", spec_of((16, 4, 6), (12, 3, 16)), **TINY)


def test_batch_shape_errors_name_the_key():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    batch = make_batch(UNALIGNED_LIKE, 2)
    batch["audio"] = batch["audio"][:, :10]
    with pytest.raises(ValueError, match=r"audio.*\(B, 20, 4\)"):
        model(batch)


def test_projection_skipped_when_width_equals_d_as_official():
    spec = spec_of((16, 8, 6), (12, 10, 16))  # audio width == d_model: no temporal conv, T' = T
    model = create_model("dmd", spec, **TINY)
    assert model.t_out["a"] == 10
    check_shapes(model, model(make_batch(spec, 2)), 2)


def test_priors_are_device_following_buffers_not_state():
    model = create_model("dmd", UNALIGNED_LIKE, **TINY)
    assert "gd_homo.prior" not in model.state_dict()
    model = model.to(torch.float64)
    assert model.gd_homo.prior.dtype == torch.float64


def test_no_hard_coded_cuda_in_model_sources():
    sources = sorted(SRC.rglob("*.py"))  # every model file, DMD's and the shared layers included
    assert any(p.name == "gd_unit.py" for p in sources)
    for path in sources:
        text = path.read_text()
        assert not re.search(r"\.cuda\(", text), path


def test_evaluation_pass_folds_each_encoder_family_once(monkeypatch):
    """``loop.predict`` folds the transformers' LayerNorms once per pass, whatever the number of batches,
    and gives the scores of per-batch ``predict`` calls (which fold every time)."""
    from emodistill.models.layers.grouped_transformer import GroupedMulTEncoder
    from emodistill.training.loop import predict

    torch.manual_seed(0)
    model = create_model("dmd", UNALIGNED_LIKE, **TINY).eval()
    batches = []
    for i in range(3):
        b = make_batch(UNALIGNED_LIKE, 4, seed=i)
        b["index"] = torch.arange(4 * i, 4 * i + 4)
        batches.append(b)
    want = torch.cat([model.predict(b) for b in batches])
    calls = []
    fold = GroupedMulTEncoder._fold
    monkeypatch.setattr(GroupedMulTEncoder, "_fold", lambda enc, sel: calls.append(sel) or fold(enc, sel))
    got = predict(model, batches)
    assert torch.equal(torch.from_numpy(got.prediction).float(), want)
    folds_per_pass = len(calls)
    calls.clear()
    model.predict(batches[0])  # outside a pass: one fold per member group of each family, for one batch
    assert folds_per_pass == len(calls) >= 3
    calls.clear()
    predict(model, batches + batches)
    assert len(calls) == folds_per_pass  # twice the batches, no more folding


def _count_folds(monkeypatch) -> list:
    from emodistill.models.layers.grouped_transformer import GroupedMulTEncoder

    calls: list = []
    fold = GroupedMulTEncoder._fold
    monkeypatch.setattr(GroupedMulTEncoder, "_fold", lambda enc, sel: calls.append(sel) or fold(enc, sel))
    return calls


def test_default_inference_cache_is_a_no_op(monkeypatch):
    """``MERModel.inference_cache`` is a ``nullcontext``: it sets no fold cache and touches no store."""
    from contextlib import nullcontext

    from emodistill.models.base import MERModel
    from emodistill.models.layers.grouped_transformer import GroupedMulTEncoder

    model = create_model("late_fusion", UNALIGNED_LIKE).eval()
    assert type(model).inference_cache is MERModel.inference_cache
    store: dict = {}
    ctx = model.inference_cache(store)
    assert isinstance(ctx, nullcontext)
    enc = GroupedMulTEncoder(2, 8, 2, 1, [0.0, 0.0]).eval()
    x = torch.randn(2, 3, 4, 8)
    calls = _count_folds(monkeypatch)
    batch = make_batch(UNALIGNED_LIKE, 4)
    batch.update(audio_lengths=torch.full((4,), 20), vision_lengths=torch.full((4,), 16))
    with torch.no_grad():
        want = model.predict(batch)
        with ctx:
            assert torch.equal(model.predict(batch), want)
            enc(x)
            enc(x)
    assert len(calls) == 2 and store == {}  # an encoder inside the block still folds on every call


def test_dmd_inference_cache_folds_once_across_calls_and_blocks(monkeypatch):
    torch.manual_seed(0)
    model = create_model("dmd", UNALIGNED_LIKE, **TINY).eval()
    batches = [make_batch(UNALIGNED_LIKE, 4, seed=i) for i in range(3)]
    want = [model.predict(b) for b in batches]  # outside the hook: folds every call
    calls = _count_folds(monkeypatch)
    model.predict(batches[0])
    per_call = len(calls)
    assert per_call >= 3  # at least one fold per encoder family
    calls.clear()
    store: dict = {}
    with model.inference_cache(store):
        got = [model.predict(b) for b in batches]
    assert len(calls) == per_call  # three calls, one fold each
    with model.inference_cache(store):  # a kept store carries the folded weights to the next block
        again = model.predict(batches[0])
    assert len(calls) == per_call and store
    for a, b in zip(want + want[:1], got + [again], strict=True):
        assert torch.equal(a, b)
