"""MMSA fusion baselines ef_lstm, lf_dnn, tfn, lmf: registry, shapes, training signal, hand-checked fusion,
length handling, recipes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import write_mmsa_pickle

from emodistill.checkpoint import build_checkpoint, save_checkpoint
from emodistill.data import load_mmsa
from emodistill.data.loader import BatchLoader
from emodistill.models import ef_lstm as _ef_lstm  # noqa: F401  (registers the models under test)
from emodistill.models import lf_dnn as _lf_dnn  # noqa: F401
from emodistill.models import lmf as _lmf  # noqa: F401
from emodistill.models import tfn as _tfn  # noqa: F401
from emodistill.models.layers.masking import modality_mask, text_mask
from emodistill.models.layers.mmsa_subnets import UnimodalEncoders
from emodistill.models.layers.pooling import last_hidden
from emodistill.models.lmf import LMF, low_rank_fusion
from emodistill.models.registry import create_model, list_models, load_checkpoint
from emodistill.models.tfn import tensor_fusion
from emodistill.spec import DatasetSpec
from emodistill.training.config import RunConfig, load_recipe

NAMES = ("ef_lstm", "lf_dnn", "tfn", "lmf")
CASES = [("ef_lstm", True)] + [(n, a) for n in NAMES[1:] for a in (True, False)]
"""(model, aligned) pairs each model supports."""

TINY = {
    "ef_lstm": {"hidden": 8, "num_layers": 2},
    "lf_dnn": {"text_hidden": 8, "audio_hidden": 4, "vision_hidden": 6, "text_out": 5, "post_fusion_dim": 8},
    "tfn": {"text_hidden": 8, "audio_hidden": 3, "vision_hidden": 4, "text_out": 5, "post_fusion_dim": 8},
    "lmf": {"text_hidden": 8, "audio_hidden": 3, "vision_hidden": 4, "rank": 2},
}
NO_DROPOUT = {
    "ef_lstm": {"dropout": 0.0},
    "lf_dnn": {"audio_dropout": 0.0, "vision_dropout": 0.0, "post_fusion_dropout": 0.0},
    "tfn": {"audio_dropout": 0.0, "vision_dropout": 0.0, "post_fusion_dropout": 0.0},
    "lmf": {"audio_dropout": 0.0, "vision_dropout": 0.0},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny aligned (T = 8) and unaligned (T_l 8, T_a 10, T_v 12) files, dims 16/4/6, and a batch of 6."""
    root = tmp_path_factory.mktemp("baselines")
    out = {}
    for aligned in (True, False):
        d = load_mmsa(write_mmsa_pickle(root / f"{aligned}.pkl", dims=(16, 4, 6), aligned=aligned, seed=3))
        out[aligned] = (d.spec, next(iter(BatchLoader(d.train, 6, shuffle=False))))
    return out


def build(name, spec, **kw):
    torch.manual_seed(0)
    return create_model(name, spec, **{**TINY[name], **kw})


def test_registered_with_descriptions():
    models = list_models()
    for name in NAMES:
        assert name in models and models[name]


@pytest.mark.parametrize("name,aligned", CASES)
def test_forward_backward_shapes(name, aligned, data):
    spec, batch = data[aligned]
    model = build(name, spec).train()
    out = model(batch)
    assert out.prediction.shape == (6, 1) and torch.isfinite(out.prediction).all()
    losses = model.compute_losses(out, batch["labels"])
    torch.testing.assert_close(losses["loss"], (out.prediction.view(-1) - batch["labels"]).abs().mean())
    losses["loss"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable), [
        n for n, p in trainable if p.grad is None
    ]
    model.eval()
    assert model.predict(batch).shape == (6,)


@pytest.mark.parametrize("name,aligned", CASES)
def test_loss_decreases_on_a_fixed_batch(name, aligned, data):
    spec, batch = data[aligned]
    model = build(name, spec, **NO_DROPOUT[name]).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model.compute_losses(model(batch), batch["labels"])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_binary_task_gives_logits_and_bce(name, data):
    spec, batch = data[True]
    spec = replace(spec, task="binary", label_range=(0.0, 1.0))
    model = build(name, spec).eval()
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    out = model(batch)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.prediction.view(-1), labels)
    torch.testing.assert_close(model.compute_losses(out, labels)["loss"], expected)
    if name == "tfn":  # MMSA's sigmoid scaling is for regression only: a binary head gives the raw logit
        torch.testing.assert_close(out.prediction, model.post_fusion(model.encode(batch)))
        reg = build(name, data[True][0]).eval()
        raw = reg.post_fusion(reg.encode(batch))
        torch.testing.assert_close(reg(batch).prediction, torch.sigmoid(raw) * 6 - 3)  # MMSA: range 6, shift -3


@pytest.mark.parametrize("name,aligned", CASES)
def test_config_dict_and_checkpoint_rebuild(name, aligned, data, tmp_path):
    spec, batch = data[aligned]
    model = build(name, spec).eval()
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, build_checkpoint(model, name, spec, model.config_dict()))
    clone, _ = load_checkpoint(path)
    assert clone.config == model.config
    torch.testing.assert_close(clone(batch).prediction, model(batch).prediction)


# --- hand-checked fusion ------------------------------------------------------------------------------


def test_tensor_fusion_by_hand():
    # [1, 2] x [1, 3, 5] x [1, 7], row-major over (audio, vision, text)
    got = tensor_fusion(torch.tensor([[2.0]]), torch.tensor([[3.0, 5.0]]), torch.tensor([[7.0]]))
    expected = [1, 7, 3, 21, 5, 35, 2, 14, 6, 42, 10, 70]
    assert got.tolist() == [[float(v) for v in expected]]


def test_tfn_fuses_the_encoder_outputs_and_stays_in_label_range(data):
    spec, batch = data[False]
    model = build("tfn", spec).eval()
    h_l, h_a, h_v = model.encoders(batch)
    fused = model.encode(batch)
    assert fused.shape == (6, (3 + 1) * (4 + 1) * (5 + 1))
    # entry (i, j, k) of the tensor is [1; h_a]_i [1; h_v]_j [1; h_l]_k
    z = fused.view(6, 4, 5, 6)
    torch.testing.assert_close(z[:, 0, 0, 0], torch.ones(6))
    torch.testing.assert_close(z[:, 2, 0, 0], h_a[:, 1])
    torch.testing.assert_close(z[:, 1, 3, 5], h_a[:, 0] * h_v[:, 2] * h_l[:, 4])
    # MMSA's sigmoid scaling: even huge inputs give scores inside label_range [-3, 3]
    loud = {k: v * 1e3 if v.is_floating_point() and k in ("audio", "vision") else v for k, v in batch.items()}
    pred = model(loud).prediction
    assert (pred >= -3).all() and (pred <= 3).all() and pred.max() > 2.9  # saturates at the bound


def test_low_rank_fusion_rank_one_by_hand():
    zs = [torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, -1.0]])]
    factors = [torch.tensor([[[0.5], [1.0]]]), torch.tensor([[[1.0], [2.0]]]), torch.tensor([[[2.0], [1.0]]])]
    # 3 * (0.5 + 2) * (1 + 6) * (2 - 1) + 0.25
    got = low_rank_fusion(zs, factors, torch.tensor([[3.0]]), torch.tensor([[0.25]]))
    assert got.tolist() == [[52.75]]


def test_lmf_equals_a_tfn_output_layer_with_a_low_rank_weight(data):
    """LMF (paper Eq. 5-6) = linear map of the full TFN tensor whose weight is sum_i w_i W_a^i x W_v^i x W_l^i."""
    spec, batch = data[False]
    model: LMF = build("lmf", spec, rank=3).eval()
    h_l, h_a, h_v = model.encoders(batch)
    w = model.fusion_weights[0]  # (r,)
    full = torch.einsum(
        "r,ri,rj,rk->ijk", w, model.audio_factor[..., 0], model.vision_factor[..., 0], model.text_factor[..., 0]
    )  # (H_a + 1, H_v + 1, H_l + 1)
    expected = tensor_fusion(h_a, h_v, h_l) @ full.flatten()[:, None] + model.fusion_bias  # (B, 1)
    torch.testing.assert_close(model(batch).prediction, expected)
    assert model.text_factor.shape == (3, 8 // 2 + 1, 1)  # text_out = text_hidden // 2, as MMSA


def test_lmf_fusion_weights_frozen_like_mmsa_unless_asked(data):
    spec, batch = data[True]
    frozen = build("lmf", spec)
    assert not frozen.fusion_weights.requires_grad and not frozen.fusion_bias.requires_grad
    assert frozen.audio_factor.requires_grad
    trained = build("lmf", spec, train_fusion_weights=True)
    trained.compute_losses(trained(batch), batch["labels"])["loss"].backward()
    assert trained.fusion_weights.grad is not None and trained.fusion_bias.grad is not None


# --- lengths -----------------------------------------------------------------------------------------


def test_masks_follow_lengths_and_the_word_timeline():
    text = torch.zeros(2, 4, 3)
    text[0, :3], text[1, :1] = 1.0, 1.0
    batch = {
        "text": text,
        "audio": torch.zeros(2, 5, 2),
        "audio_lengths": torch.tensor([2, 5]),
        "text_bert": torch.stack(
            [torch.ones(2, 4), torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]]), torch.zeros(2, 4)], 1
        ),
    }
    assert text_mask(batch).tolist() == [[True, True, False, False], [True, True, True, True]]  # from text_bert
    no_ids = {k: v for k, v in batch.items() if k != "text_bert"}
    assert text_mask(no_ids).tolist() == [[True, True, True, False], [True, False, False, False]]  # non-zero rows
    assert modality_mask(batch, "audio", aligned=False).tolist() == [[True, True, False, False, False], [True] * 5]
    assert modality_mask(batch, "audio", aligned=True).tolist() == text_mask(batch).tolist()


def test_pooling_by_hand(data):
    spec, _ = data[False]
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 7.0], [9.0, 11.0], [-1.0, 0.0]]])
    batch = {"audio": x, "audio_lengths": torch.tensor([2, 3])}
    spec2 = replace(spec, feature_dims={**spec.feature_dims, "audio": 2})
    enc = UnimodalEncoders(spec2, create_model("tfn", spec2, **TINY["tfn"]).config)
    torch.testing.assert_close(enc.pool(batch, "audio"), torch.tensor([[2.0, 3.0], [13 / 3, 6.0]]))
    enc.use_lengths = False  # MMSA: mean over every padded step
    torch.testing.assert_close(enc.pool(batch, "audio"), torch.tensor([[104 / 3, 106 / 3], [13 / 3, 6.0]]))


def _pad_with_noise(batch, aligned):
    """Copy of ``batch`` with 1e3 on every padded step (beyond the lengths / the text mask)."""
    noisy = {k: v.clone() for k, v in batch.items()}
    tpad = noisy["text_bert"][:, 1] == 0  # (B, T_l)
    noisy["text"][tpad] = 1e3
    for mod in ("audio", "vision"):
        if aligned:
            noisy[mod][tpad] = 1e3
        else:
            beyond = torch.arange(noisy[mod].shape[1])[None, :] >= noisy[f"{mod}_lengths"][:, None]  # (B, T)
            noisy[mod][beyond] = 1e3
    return noisy


@pytest.mark.parametrize("name,aligned", CASES)
def test_padding_is_ignored_with_lengths_and_used_without(name, aligned, data):
    spec, batch = data[aligned]
    noisy = _pad_with_noise(batch, aligned)
    assert not torch.equal(noisy["audio"], batch["audio"])  # the fixture has padding to perturb
    model = build(name, spec).eval()
    torch.testing.assert_close(model(noisy).prediction, model(batch).prediction)
    mmsa = build(name, spec, use_lengths=False).eval()
    assert not torch.allclose(mmsa(noisy).prediction, mmsa(batch).prediction)


def test_last_hidden_is_the_top_layer_output_at_the_last_valid_step():
    """A causal LSTM's top-layer output at step L - 1 (run over the padding too) is the packed final state."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    seq, _ = lstm(x)  # (B, T, H) top layer
    expected = seq[torch.arange(3), lengths - 1]  # (B, H)
    torch.testing.assert_close(last_hidden(lstm, x, lengths), expected)
    torch.testing.assert_close(last_hidden(lstm, x, None), seq[:, -1])  # MMSA: over every padded step


# --- ef_lstm specifics -------------------------------------------------------------------------------


def test_ef_lstm_refuses_unaligned_data(data):
    spec, _ = data[False]
    with pytest.raises(ValueError, match=r"needs aligned data.*seq_lens=\{'text': 8, 'audio': 10, 'vision': 12\}"):
        create_model("ef_lstm", spec)
    # equal padded lengths are not enough: unaligned steps do not share a timeline
    same_lens = replace(spec, seq_lens={"text": 8, "audio": 8, "vision": 8})
    with pytest.raises(ValueError, match="aligned=False"):
        create_model("ef_lstm", same_lens)


def test_ef_lstm_batch_norm_is_per_time_step_and_length_checked(data):
    spec, batch = data[True]
    model = build("ef_lstm", spec)
    assert model.fixed_seq_lens and model.norm.num_features == 8  # MMSA: BatchNorm1d(seq_len)
    assert model.lstm.input_size == 16 + 4 + 6 and model.lstm.num_layers == 2
    short = {k: (v[:, :7] if k in ("text", "audio", "vision") else v) for k, v in batch.items()}
    with pytest.raises(ValueError, match="length 8"):
        model(short)


@pytest.mark.parametrize("name", NAMES)
def test_text_encoder_must_be_null(name, data):
    spec, _ = data[True]
    assert create_model(name, spec, text_encoder=None, **TINY[name]) is not None
    with pytest.raises(ValueError, match="precomputed 'text' features"):
        create_model(name, spec, text_encoder="bert-base-uncased")


@pytest.mark.parametrize("key,value", [("audio_dropout", 1.0), ("text_hidden", 0), ("text_out", 0)])
def test_config_validation_names_the_field(key, value, data):
    spec, _ = data[True]
    with pytest.raises(ValueError, match=key):
        create_model("tfn", spec, **{key: value})


# --- recipes -----------------------------------------------------------------------------------------

MOSI_DIMS, MOSEI_DIMS = (768, 5, 20), (768, 74, 35)


def _spec(family, aligned):
    dims = MOSI_DIMS if family == "mosi" else MOSEI_DIMS
    lens = (50, 50, 50) if aligned else ((50, 375, 500) if family == "mosi" else (50, 500, 500))
    return DatasetSpec(family, aligned, dict(zip(("text", "audio", "vision"), dims, strict=True)),
                       dict(zip(("text", "audio", "vision"), lens, strict=True)))  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("family", ["mosi", "mosei"])
def test_recipe_builds_with_mmsa_values(name, family):
    recipe = f"{name}_{family}"
    cfg = RunConfig.from_dict(load_recipe(recipe), origin=recipe)
    assert cfg.model == name and cfg.train.update_every == 1 and cfg.train.grad_clip_value is None
    assert cfg.train.scheduler == "none" and cfg.train.early_stop == 8
    for aligned in (True,) if name == "ef_lstm" else (True, False):
        model = create_model(name, _spec(family, aligned), **cfg.model_config).eval()
        spec = model.spec
        batch = {m: torch.randn(2, spec.seq_lens[m], spec.feature_dims[m]) for m in ("text", "audio", "vision")}
        batch.update({f"{m}_lengths": torch.tensor([spec.seq_lens[m], 3]) for m in ("audio", "vision")})
        assert model(batch).prediction.shape == (2, 1)
    # spot checks against MMSA's config_regression.json
    if recipe == "tfn_mosi":
        assert model.post_fusion[1].in_features == (32 + 1) * (128 + 1) * (32 + 1) and cfg.train.batch_size == 32
    if recipe == "lmf_mosei":
        assert model.audio_factor.shape == (4, 17, 1) and cfg.train.weight_decay == 0.001
    if recipe == "ef_lstm_mosi":
        assert model.lstm.input_size == 793 and model.lstm.num_layers == 4 and cfg.train.lr == 1e-3
    if recipe == "lf_dnn_mosei":
        assert model.post_fusion[1].in_features == 128 + 32 + 128 and cfg.train.lr == 2e-3
