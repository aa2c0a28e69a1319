"""MulT and MISA baselines: shapes, wiring, packing by true lengths, MISA's auxiliary losses checked
against independent small-case computations, training signal, tiny BERT variants and the recipes."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emodistill.models import misa as misa_mod
from emodistill.models import mult as mult_model
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS
from emodistill.models.misa import MISA, MISAConfig, UtteranceRNN, cmd_loss, diff_loss
from emodistill.models.mult import MulT, MulTConfig
from emodistill.models.registry import create_model, list_models
from emodistill.spec import DatasetSpec
from emodistill.training.config import RunConfig, TrainConfig, load_recipe

DIMS = {"text": 16, "audio": 4, "vision": 6}
MULT_TINY = dict(d_model=8, num_heads=2, nlevels=1, kernel_l=3, kernel_a=3, kernel_v=2)
MISA_TINY = dict(hidden_size=8, fusion_ff=16)
NO_DROPOUT_MULT = {name: 0.0 for name in DROPOUT_FIELDS}


def make_spec(aligned: bool, task: str = "regression", dims: dict | None = None) -> DatasetSpec:
    lens = (10, 10, 10) if aligned else (10, 14, 12)
    return DatasetSpec(
        "mosi" if task == "regression" else "urfunny",
        aligned,
        dict(dims or DIMS),
        dict(zip(("text", "audio", "vision"), lens, strict=True)),
        label_range=(-3.0, 3.0) if task == "regression" else (0.0, 1.0),
        task=task,
    )


def make_batch(spec: DatasetSpec, bsz: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """A BatchLoader-like batch: zero padding after each sample's true length, ``text_bert`` rows."""
    g = torch.Generator().manual_seed(seed)
    t = spec.seq_lens
    text_len = torch.tensor([t["text"], 3, 5, 7, 2, 9][:bsz])
    batch: dict[str, torch.Tensor] = {}
    for m in ("text", "audio", "vision"):
        if spec.aligned or m == "text":
            lengths = text_len if m == "text" else torch.full((bsz,), t[m], dtype=torch.int64)
            valid = text_len  # aligned: one timeline, zero rows after the text length
        else:
            lengths = valid = torch.tensor([t[m], 1, 4, t[m] - 2, 6, 3][:bsz])
        mask = (torch.arange(t[m])[None, :] < valid[:, None]).float()  # (B, T)
        batch[m] = torch.randn(bsz, t[m], spec.feature_dims[m], generator=g) * mask[..., None]
        if m != "text":
            batch[f"{m}_lengths"] = lengths
    mask = (torch.arange(t["text"])[None, :] < text_len[:, None]).float()
    ids = torch.randint(1, 100, (bsz, t["text"]), generator=g).float() * mask
    batch["text_bert"] = torch.stack([ids, mask, torch.zeros_like(mask)], dim=1)  # (B, 3, T_l)
    if spec.task == "binary":
        batch["labels"] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0][:bsz])
    else:
        batch["labels"] = torch.tensor([2.0, -1.0, 0.4, -2.6, 1.2, 0.0][:bsz])
    return batch


def assert_all_grads(model: torch.nn.Module, skip: str = "pooler") -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and skip not in n and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def train_steps(model, batch, steps: int = 20, lr: float = 3e-3) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.compute_losses(model(batch), batch["labels"])["loss"]
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return history


# ====================================================================== MulT
def test_both_registered():
    names = list_models()
    assert "mult" in names and "misa" in names


@pytest.mark.parametrize("aligned", [True, False])
def test_mult_forward_backward_shapes(aligned):
    torch.manual_seed(0)
    spec = make_spec(aligned)
    model = create_model("mult", spec, **MULT_TINY)
    assert isinstance(model, MulT) and not model.fixed_seq_lens
    batch = make_batch(spec)
    out = model(batch)
    assert out.prediction.shape == (6, 1)
    assert out.fused.shape == (6, 6 * 8)
    assert {k: tuple(v.shape) for k, v in out.last_h.items()} == {m: (6, 16) for m in ("text", "audio", "vision")}
    assert torch.isfinite(out.prediction).all()
    losses = model.compute_losses(out, batch["labels"])
    torch.testing.assert_close(losses["loss"], F.l1_loss(out.prediction, batch["labels"].view(-1, 1)))
    losses["loss"].backward()
    assert_all_grads(model)


def test_mult_structure_follows_mmsa():
    cfg = dict(MULT_TINY, nlevels=2, attn_dropout=0.1, attn_dropout_a=0.2, attn_dropout_v=0.3)
    model = create_model("mult", make_spec(False), **cfg)
    assert model.crossmodal.members == 6 and model.crossmodal.num_layers == 2
    assert model.crossmodal.embed_dim == 8
    # crossmodal attention dropout follows the source modality: pairs la, lv, al, av, vl, va
    assert model.crossmodal.attn_dropouts == (0.2, 0.3, 0.1, 0.3, 0.1, 0.2)
    assert model.mem.members == 3 and model.mem.embed_dim == 16
    assert model.mem.num_layers == 3  # max(nlevels, 3)
    assert model.mem.attn_dropouts == (0.1, 0.1, 0.1)
    assert model.proj["l"].kernel_size == (3,) and model.proj["v"].kernel_size == (2,)
    assert model.proj["a"].bias is None
    assert model.proj1.in_features == 48 and model.out_layer.out_features == 1


def test_mult_forward_equals_hand_wiring():
    """Eval-mode prediction = projections -> crossmodal (query target, key/value source) -> concatenation
    per target -> mem last step -> residual head, wired here by hand in MMSA's l, a, v order."""
    torch.manual_seed(1)
    spec = make_spec(False)
    model = create_model("mult", spec, **MULT_TINY).eval()
    batch = make_batch(spec)
    with torch.no_grad():
        x = {
            "l": model.proj["l"](batch["text"].transpose(1, 2)).transpose(1, 2),  # (B, 10 - 2, d)
            "a": model.proj["a"](batch["audio"].transpose(1, 2)).transpose(1, 2),  # (B, 14 - 2, d)
            "v": model.proj["v"](batch["vision"].transpose(1, 2)).transpose(1, 2),  # (B, 12 - 1, d)
        }
        assert [x[m].shape[1] for m in "lav"] == [8, 12, 11]
        h = model.crossmodal(
            [x["l"], x["l"], x["a"], x["a"], x["v"], x["v"]], [x["a"], x["v"], x["l"], x["v"], x["l"], x["a"]]
        )
        mem = model.mem([torch.cat(h[0:2], -1), torch.cat(h[2:4], -1), torch.cat(h[4:6], -1)])
        fused = torch.cat([mem[0][:, -1], mem[1][:, -1], mem[2][:, -1]], dim=1)  # (B, 6d)
        hidden = F.linear(
            torch.relu(F.linear(fused, model.proj1.weight, model.proj1.bias)), model.proj2.weight, model.proj2.bias
        )
        want = F.linear(hidden + fused, model.out_layer.weight, model.out_layer.bias)
        out = model(batch)
    torch.testing.assert_close(out.fused, fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.prediction, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.predict(batch), want.view(-1), rtol=1e-5, atol=1e-5)


def test_mult_skips_projection_when_width_is_d():
    spec = make_spec(True, dims={"text": 8, "audio": 4, "vision": 6})
    model = create_model("mult", spec, **MULT_TINY)
    assert model.skip_proj == {"l": True, "a": False, "v": False} and "l" not in model.proj
    assert model(make_batch(spec)).prediction.shape == (6, 1)


def test_mult_position_embedding_switch():
    torch.manual_seed(0)
    spec = make_spec(True)
    with_pe = create_model("mult", spec, **MULT_TINY).eval()
    without = create_model("mult", spec, position_embedding=False, **MULT_TINY).eval()
    without.load_state_dict(with_pe.state_dict())  # same parameters, only the embedding differs
    batch = make_batch(spec)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(without.crossmodal.embed(x), x * math.sqrt(8))
    assert not torch.allclose(with_pe.crossmodal.embed(x), x * math.sqrt(8))
    assert not torch.allclose(with_pe(batch).prediction, without(batch).prediction)


def test_mult_runs_on_lengths_other_than_the_spec():
    spec = make_spec(False)
    model = create_model("mult", spec, **MULT_TINY).eval()
    batch = make_batch(spec)
    batch["audio"] = torch.randn(6, 20, 4)  # another file's padding: MulT is not sized for T
    assert model(batch).prediction.shape == (6, 1)
    batch["vision"] = torch.randn(6, 1, 6)
    with pytest.raises(ValueError, match="fewer than kernel_v=2"):
        model(batch)
    with pytest.raises(ValueError, match=r"batch\['audio'\]: expected shape \(B, T, 4\)"):
        model(dict(make_batch(spec), audio=torch.randn(6, 14, 5)))


def test_mult_binary_task_uses_bce():
    spec = make_spec(False, task="binary")
    model = create_model("mult", spec, **MULT_TINY)
    batch = make_batch(spec)
    out = model(batch)
    want = F.binary_cross_entropy_with_logits(out.prediction, batch["labels"].view(-1, 1))
    torch.testing.assert_close(model.compute_losses(out, batch["labels"])["loss"], want)


def test_mult_inference_cache_folds_once_across_calls(monkeypatch):
    from emodistill.models.layers.grouped_transformer import GroupedMulTEncoder

    torch.manual_seed(0)
    spec = make_spec(False)
    model = create_model("mult", spec, **MULT_TINY).eval()
    batches = [make_batch(spec, seed=i) for i in range(3)]
    want = [model.predict(b) for b in batches]
    calls = []
    fold = GroupedMulTEncoder._fold
    monkeypatch.setattr(GroupedMulTEncoder, "_fold", lambda enc, sel: calls.append(sel) or fold(enc, sel))
    model.predict(batches[0])
    per_call = len(calls)
    calls.clear()
    with model.inference_cache():
        got = [model.predict(b) for b in batches]
    assert per_call >= 2 and len(calls) == per_call  # crossmodal and mem families, folded once for 3 calls
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("aligned", [True, False])
def test_mult_loss_decreases(aligned):
    torch.manual_seed(0)
    spec = make_spec(aligned)
    model = create_model("mult", spec, **MULT_TINY, **NO_DROPOUT_MULT)
    history = train_steps(model, make_batch(spec))
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.5 * history[0], history


def test_mult_config_validation_and_rebuild():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MulTConfig(d_model=10, num_heads=3)
    with pytest.raises(ValueError, match=r"MulTConfig.embed_dropout=1.0"):
        MulTConfig(embed_dropout=1.0)
    with pytest.raises(ValueError, match="kernel_a=0"):
        MulTConfig(kernel_a=0)
    spec = make_spec(True)
    model = create_model("mult", spec, **MULT_TINY)
    clone = create_model("mult", spec, **model.config_dict())
    clone.load_state_dict(model.state_dict())
    assert clone.config == model.config


# ====================================================================== MISA losses
def _cmd_numpy(x1: np.ndarray, x2: np.ndarray, k_max: int) -> float:
    """CMD from explicit per-feature loops (float64)."""
    total = 0.0
    for k in range(1, k_max + 1):
        sq = 0.0
        for j in range(x1.shape[1]):
            a, b = x1[:, j], x2[:, j]
            if k == 1:
                da = sum(a) / len(a) - sum(b) / len(b)
            else:
                ma, mb = sum(a) / len(a), sum(b) / len(b)
                da = sum((v - ma) ** k for v in a) / len(a) - sum((v - mb) ** k for v in b) / len(b)
            sq += da * da
        total += math.sqrt(sq)
    return total


def test_cmd_by_hand():
    # x1 = {0, 2}, x2 = {1, 1}: equal means; central moments of x1: 1, 0, 1 (k = 2, 3, 4), of x2: 0
    x1, x2 = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    assert float(cmd_loss(x1, x2, 1)) == 0.0
    assert float(cmd_loss(x1, x2, 2)) == pytest.approx(1.0)
    assert float(cmd_loss(x1, x2, 3)) == pytest.approx(1.0)
    assert float(cmd_loss(x1, x2, 4)) == pytest.approx(2.0)
    # a shift changes only the mean term: CMD(x, x + c) = ||c||
    x = torch.randn(7, 3, dtype=torch.float64)
    c = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    assert float(cmd_loss(x, x + c, 5)) == pytest.approx(float(c.norm()), rel=1e-9)


def test_cmd_matches_independent_loops_and_has_finite_gradient_at_zero():
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(5, 4)), rng.normal(size=(7, 4)) * 1.5 + 0.2
    got = cmd_loss(torch.from_numpy(x1), torch.from_numpy(x2), 5)
    assert float(got) == pytest.approx(_cmd_numpy(x1, x2, 5), rel=1e-10)
    x = torch.randn(4, 3, requires_grad=True)
    loss = cmd_loss(x, x.detach().clone(), 5)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(x.grad).all()


def _diff_numpy(x1: np.ndarray, x2: np.ndarray) -> float:
    """Soft orthogonality from explicit loops: centre columns, normalise rows, mean of squared dots."""

    def prep(x):
        x = x - x.mean(axis=0, keepdims=True)
        return np.stack([row / (math.sqrt(sum(v * v for v in row)) + 1e-6) for row in x])

    a, b = prep(x1), prep(x2)
    total = 0.0
    for i, j in itertools.product(range(a.shape[1]), range(b.shape[1])):
        total += sum(a[n, i] * b[n, j] for n in range(a.shape[0])) ** 2
    return total / (a.shape[1] * b.shape[1])


def test_diff_loss_by_hand():
    # rows +-e1 are already centred with unit norms; X^T X = [[2, 0], [0, 0]] -> mean of squares 4 / 4
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert float(diff_loss(x, x)) == pytest.approx(1.0 / (1 + 1e-6) ** 4, rel=1e-12)
    # a batch-constant second input centres to zero: no overlap
    assert float(diff_loss(x, torch.ones(2, 3, dtype=torch.float64))) == 0.0
    # (B, 2, 2) inputs are flattened to (B, 4)
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(6, 2, 2)), rng.normal(size=(6, 3))
    got = diff_loss(torch.from_numpy(x1), torch.from_numpy(x2))
    assert float(got) == pytest.approx(_diff_numpy(x1.reshape(6, 4), x2), rel=1e-10)


def test_diff_loss_gradient_treats_norms_as_constants():
    x1 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    diff_loss(x1, x2).backward()
    a0, b0 = x1.detach() - x1.detach().mean(0), x2.detach() - x2.detach().mean(0)
    na, nb = a0.norm(dim=1, keepdim=True) + 1e-6, b0.norm(dim=1, keepdim=True) + 1e-6  # plain constants
    y1, y2 = x1.detach().clone().requires_grad_(), x2.detach().clone().requires_grad_()
    a, b = (y1 - y1.mean(0)) / na, (y2 - y2.mean(0)) / nb
    ((a.t() @ b) ** 2).sum().div(12).backward()
    torch.testing.assert_close(x1.grad, y1.grad)
    torch.testing.assert_close(x2.grad, y2.grad)


# ====================================================================== MISA model
@pytest.mark.parametrize("aligned", [True, False])
def test_misa_forward_backward_shapes(aligned):
    torch.manual_seed(0)
    spec = make_spec(aligned)
    model = create_model("misa", spec, **MISA_TINY)
    assert isinstance(model, MISA) and set(model.rnn) == {"text", "vision", "audio"}
    batch = make_batch(spec)
    out = model(batch)
    assert out.prediction.shape == (6, 1) and torch.isfinite(out.prediction).all()
    for field in ("orig", "private", "shared", "recon"):
        assert {m: tuple(v.shape) for m, v in getattr(out, field).items()} == {
            m: (6, 8) for m in ("text", "vision", "audio")
        }
    losses = model.compute_losses(out, batch["labels"])
    assert set(losses) == {"loss", "task", "diff", "sim", "recon"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert_all_grads(model)


def test_misa_total_objective_from_independent_terms():
    torch.manual_seed(0)
    spec = make_spec(False)
    cfg = dict(MISA_TINY, diff_weight=0.3, sim_weight=0.8, recon_weight=0.5)
    model = create_model("misa", spec, **cfg)
    batch = make_batch(spec)
    out = model(batch)
    losses = model.compute_losses(out, batch["labels"])
    npy = {f: {m: v.detach().double().numpy() for m, v in getattr(out, f).items()} for f in ("shared", "private")}
    s, p = npy["shared"], npy["private"]
    diff = sum(
        _diff_numpy(u, v)
        for u, v in [
            (p["text"], s["text"]),
            (p["vision"], s["vision"]),
            (p["audio"], s["audio"]),
            (p["audio"], p["text"]),
            (p["audio"], p["vision"]),
            (p["text"], p["vision"]),
        ]
    )
    sim = (
        _cmd_numpy(s["text"], s["vision"], 5)
        + _cmd_numpy(s["text"], s["audio"], 5)
        + _cmd_numpy(s["audio"], s["vision"], 5)
    ) / 3
    recon = np.mean([np.mean((out.recon[m] - out.orig[m]).detach().double().numpy() ** 2) for m in out.orig])
    task = float(np.mean((out.prediction.detach().view(-1).double().numpy() - batch["labels"].double().numpy()) ** 2))
    assert float(losses["diff"]) == pytest.approx(diff, rel=1e-5)
    assert float(losses["sim"]) == pytest.approx(sim, rel=1e-5)
    assert float(losses["recon"]) == pytest.approx(recon, rel=1e-5)
    assert float(losses["task"]) == pytest.approx(task, rel=1e-5)
    assert float(losses["loss"].detach()) == pytest.approx(task + 0.3 * diff + 0.8 * sim + 0.5 * recon, rel=1e-5)
    l1 = create_model("misa", spec, task_loss="l1", **MISA_TINY).compute_losses(out, batch["labels"])["task"]
    torch.testing.assert_close(l1, F.l1_loss(out.prediction, batch["labels"].view(-1, 1)).detach())


def test_misa_binary_task_uses_bce():
    spec = make_spec(True, task="binary")
    model = create_model("misa", spec, **MISA_TINY)
    batch = make_batch(spec)
    out = model(batch)
    want = F.binary_cross_entropy_with_logits(out.prediction, batch["labels"].view(-1, 1))
    torch.testing.assert_close(model.compute_losses(out, batch["labels"])["task"], want.detach())


def test_utterance_rnn_packs_by_true_length():
    """Each sample's vector equals the two BiLSTM layers run on that sample alone, cut to its length."""
    torch.manual_seed(0)
    enc = UtteranceRNN(3, "lstm").eval()
    x, lengths = torch.randn(4, 7, 3), torch.tensor([7, 2, 5, 1])
    got = enc(x, lengths)  # (B, 12)
    assert got.shape == (4, 12)
    with torch.no_grad():
        for i, n in enumerate(lengths.tolist()):
            out1, (h1, _) = enc.rnn1(x[i : i + 1, :n])  # (1, n, 6), (2, 1, 3)
            _, (h2, _) = enc.rnn2(enc.norm(out1))
            want = torch.cat([h1[0, 0], h2[0, 0], h1[1, 0], h2[1, 0]])  # [h1_fw, h2_fw, h1_bw, h2_bw]
            torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-6)
    gru = UtteranceRNN(3, "gru")
    assert gru(x, lengths).shape == (4, 12)


def test_misa_ignores_frames_after_the_true_length():
    torch.manual_seed(0)
    spec = make_spec(False)
    model = create_model("misa", spec, **MISA_TINY).eval()
    batch = make_batch(spec)
    noisy = dict(batch)
    t = torch.arange(14)[None, :, None]
    noisy["audio"] = torch.where(t < batch["audio_lengths"][:, None, None], batch["audio"], 5.0)
    torch.testing.assert_close(model(noisy).prediction, model(batch).prediction)
    inside = dict(batch, audio=batch["audio"].clone())
    inside["audio"][2, 0] += 1.0  # a real frame does count
    assert not torch.allclose(model(inside).prediction[2], model(batch).prediction[2])


def test_misa_mmsa_lengths_pack_audio_by_text_length():
    torch.manual_seed(0)
    spec = make_spec(False)
    model = create_model("misa", spec, lengths="text", **MISA_TINY).eval()
    batch = make_batch(spec)
    text_len = batch["text_bert"][:, 1].sum(1).long()  # (B,) [10, 3, 5, 7, 2, 9]
    noisy = dict(batch)
    t = torch.arange(14)[None, :, None]
    noisy["audio"] = torch.where(t < text_len[:, None, None], batch["audio"], -3.0)
    torch.testing.assert_close(model(noisy).prediction, model(batch).prediction)


def test_misa_aligned_uses_text_length_and_no_text_bert_fallback():
    spec = make_spec(True)
    model = create_model("misa", spec, **MISA_TINY).eval()
    batch = make_batch(spec)
    lengths = model._lengths(batch)
    want = torch.tensor([10, 3, 5, 7, 2, 9])
    assert all(torch.equal(lengths[m], want) for m in ("text", "audio", "vision"))
    no_ids = {k: v for k, v in batch.items() if k != "text_bert"}
    assert torch.equal(model._lengths(no_ids)["text"], want)  # non-zero text rows
    torch.testing.assert_close(model(no_ids).prediction, model(batch).prediction)


@pytest.mark.parametrize("aligned", [True, False])
def test_misa_loss_decreases(aligned):
    torch.manual_seed(0)
    spec = make_spec(aligned)
    model = create_model("misa", spec, dropout=0.0, fusion_dropout=0.0, **MISA_TINY)
    history = train_steps(model, make_batch(spec))
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.5 * history[0], history


def test_misa_interpret_and_config():
    spec = make_spec(True)
    model = create_model("misa", spec, **MISA_TINY).eval()
    batch = make_batch(spec)
    pred, named = model.predict_and_interpret(batch)
    assert pred.shape == (6,)
    assert sorted(named) == sorted(f"features/{s}/{m}" for s in ("shared", "private") for m in "lva")
    assert named["features/shared/v"].shape == (6, 8)
    with pytest.raises(ValueError, match="multiple of fusion_heads"):
        MISAConfig(hidden_size=9)
    with pytest.raises(ValueError, match=r"MISAConfig.lengths='audio'"):
        MISAConfig(lengths="audio")
    with pytest.raises(ValueError, match=r"MISAConfig.rnncell"):
        MISAConfig(rnncell="rnn")
    clone = create_model("misa", spec, **model.config_dict())
    clone.load_state_dict(model.state_dict())


# ====================================================================== tiny BERT variants
TINY_BERT = dict(
    model_type="bert", vocab_size=100, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=16, max_position_embeddings=16,
)  # fmt: skip


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = {k: v for k, v in TINY_BERT.items() if k != "model_type"}
    path = tmp_path_factory.mktemp("tiny_bert_mult_misa")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**cfg)).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("name", ["mult", "misa"])
def test_tiny_bert_variant_fine_tunes(name, bert_dir):
    spec = make_spec(False)
    tiny = MULT_TINY if name == "mult" else MISA_TINY
    model = create_model(name, spec, text_encoder=bert_dir, finetune_text=True, **tiny)
    assert model.config.text_encoder_config["hidden_size"] == 12
    if name == "mult":
        assert model.proj["l"].in_channels == 12
    else:
        assert "text" not in model.rnn and model.project["text"][0].in_features == 12
    batch = make_batch(spec)
    batch.pop("text")  # the encoder reads the token ids only
    out = model(batch)
    assert out.prediction.shape == (6, 1) and torch.isfinite(out.prediction).all()
    model.compute_losses(out, batch["labels"])["loss"].backward()
    bert_grads = [p.grad for n, p in model.named_parameters() if n.startswith("text_model.") and "pooler" not in n]
    assert bert_grads and all(g is not None for g in bert_grads)
    # a checkpoint rebuilds the encoder from text_encoder_config alone (no directory needed)
    cfg = dict(model.config_dict(), text_encoder=None)
    clone = create_model(name, spec, **cfg).eval()
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(batch).prediction, model.eval()(batch).prediction)


def test_misa_bert_text_vector_is_masked_mean(bert_dir):
    spec = make_spec(True)
    model = create_model("misa", spec, text_encoder=bert_dir, **MISA_TINY).eval()
    batch = make_batch(spec)
    with torch.no_grad():
        hidden = model.text_model(batch["text_bert"])  # (B, T_l, 12)
        utt = model._utterances(batch)["text"]
    for i, n in enumerate([10, 3, 5, 7, 2, 9]):
        torch.testing.assert_close(utt[i], hidden[i, :n].mean(0))


def test_text_encoder_needs_text_bert():
    pytest.importorskip("transformers")
    spec = DatasetSpec("mosi", True, dict(DIMS), {"text": 10, "audio": 10, "vision": 10}, has_text_bert=False)
    for name in ("mult", "misa"):
        with pytest.raises(ValueError, match="needs `text_bert`"):
            create_model(name, spec, text_encoder_config=TINY_BERT)


# ====================================================================== recipes
RECIPE_SPECS = {
    "mosi": ({"text": 768, "audio": 5, "vision": 20}, {"text": 50, "audio": 375, "vision": 500}),
    "mosei": ({"text": 768, "audio": 74, "vision": 35}, {"text": 50, "audio": 500, "vision": 500}),
}
EXPECTED = {  # spot checks against MMSA config_regression.json
    "mult_mosi": (
        {"d_model": 50, "num_heads": 10, "kernel_a": 5, "embed_dropout": 0.2},
        {"lr": 2e-3, "batch_size": 16},
    ),
    "mult_mosei": ({"d_model": 30, "num_heads": 6, "kernel_a": 1, "kernel_v": 3}, {"lr": 5e-4, "batch_size": 4}),
    "misa_mosi": ({"hidden_size": 128, "dropout": 0.2, "diff_weight": 0.1, "sim_weight": 0.3}, {"batch_size": 16}),
    "misa_mosei": ({"dropout": 0.5, "diff_weight": 0.3, "sim_weight": 0.8}, {"batch_size": 64}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_builds_and_runs(name):
    d = load_recipe(name)
    run = RunConfig.from_dict(d, origin=name)
    assert isinstance(run.train, TrainConfig) and run.model == name.split("_")[0]
    model_want, train_want = EXPECTED[name]
    assert {k: run.model_config[k] for k in model_want} == model_want
    assert {k: getattr(run.train, k) for k in train_want} == train_want
    dims, lens = RECIPE_SPECS[run.data.dataset]
    spec = DatasetSpec(run.data.dataset, False, dims, lens)
    if run.model == "misa":
        pytest.importorskip("transformers")
        assert run.model_config["text_encoder"] == "bert-base-uncased"
        cfg = {**run.model_config, "text_encoder": None, "text_encoder_config": TINY_BERT}  # no download
    else:
        assert run.model_config["text_encoder"] is None
        cfg = run.model_config
    model = create_model(run.model, spec, **cfg).eval()
    short = DatasetSpec(spec.name, False, dims, {"text": 12, "audio": 16, "vision": 14})
    batch = make_batch(short, bsz=2)
    batch["text_bert"][:, 0] = batch["text_bert"][:, 0].clamp(max=99)  # tiny vocabulary
    assert model(batch).prediction.shape == (2, 1)


def test_modules_cite_their_sources():
    for mod in (mult_model, misa_mod):
        doc = mod.__doc__
        assert "MMSA" in doc and "singleTask" in doc
    assert asdict(MulTConfig())["d_model"] == 50 and asdict(MISAConfig())["hidden_size"] == 128


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_padded_equals_the_packed_run(cell, monkeypatch):
    """The export path of MISA's RNNs (no packed sequences) against PyTorch's packed run: final states of
    both directions and every real step's output, for lengths 1..T in one batch; and the whole utterance
    vector of UtteranceRNN under torch.export's flag equals its packed forward."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from emodistill.models.layers.pooling import bidirectional_padded

    torch.manual_seed(0)
    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(5, 4, bidirectional=True, batch_first=True)
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 1, 6])
    with torch.no_grad():
        packed_out, state = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h_ref = state[0] if cell == "lstm" else state  # (2, B, H)
        out_ref, _ = pad_packed_sequence(packed_out, batch_first=True)  # (B, 7, 8), zeros past each length
        out, h = bidirectional_padded(rnn, x, lengths)
    torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=0)
    real = (torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)  # (B, T, 1)
    torch.testing.assert_close(out * real, out_ref, atol=1e-6, rtol=0)
    # the backward direction matters: reversing the whole padded row instead would differ for short rows
    assert not torch.allclose(out[1, 0, 4:], rnn(x[1:2])[0][0, 0, 4:], atol=1e-4)

    utt = UtteranceRNN(5, cell).eval()
    with torch.no_grad():
        packed = utt(x, lengths)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)  # the flag torch.export sets
        padded = utt(x, lengths)
    torch.testing.assert_close(padded, packed, atol=1e-6, rtol=0)
