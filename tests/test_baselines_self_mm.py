"""self_mm baseline: shapes, objective, the ULGM against an independent computation of the paper's
formulas, memory isolation from eval passes, checkpoints, the BERT variant, and training through ``fit``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import emodistill.models.self_mm as self_mm_mod  # registers "self_mm"
from emodistill.checkpoint import read_checkpoint
from emodistill.data import load_dataset
from emodistill.models import create_model, list_models
from emodistill.models.registry import load_checkpoint
from emodistill.models.self_mm import HEADS, ULGM, SelfMM
from emodistill.spec import DatasetSpec
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit

SPEC = DatasetSpec("mosi", False, {"text": 12, "audio": 5, "vision": 7}, {"text": 6, "audio": 9, "vision": 8})
TINY = dict(a_lstm_hidden_size=4, v_lstm_hidden_size=6, audio_out=4, video_out=5, post_fusion_dim=8,
            post_text_dim=6, post_audio_dim=4, post_video_dim=5)


def make_batch(n: int = 6, seed: int = 0, index: list[int] | None = None, spec: DatasetSpec = SPEC) -> dict:
    g = torch.Generator().manual_seed(seed)
    t_l, t_a, t_v = spec.seq_lens["text"], spec.seq_lens["audio"], spec.seq_lens["vision"]
    len_l = torch.randint(2, t_l + 1, (n,), generator=g)
    mask = (torch.arange(t_l)[None] < len_l[:, None]).float()  # (n, T_l)
    len_a = torch.randint(1, t_a + 1, (n,), generator=g)
    len_v = torch.randint(1, t_v + 1, (n,), generator=g)
    audio = torch.randn(n, t_a, spec.feature_dims["audio"], generator=g)
    vision = torch.randn(n, t_v, spec.feature_dims["vision"], generator=g)
    audio = audio * (torch.arange(t_a)[None] < len_a[:, None])[..., None]
    vision = vision * (torch.arange(t_v)[None] < len_v[:, None])[..., None]
    ids = torch.randint(1, 90, (n, t_l), generator=g).float() * mask
    return {
        "text": torch.randn(n, t_l, spec.feature_dims["text"], generator=g) * mask[..., None],
        "text_bert": torch.stack([ids, mask, torch.zeros_like(mask)], dim=1),
        "audio": audio, "vision": vision, "audio_lengths": len_a, "vision_lengths": len_v,
        "labels": (torch.rand(n, generator=g) * 6 - 3).round(decimals=1),
        "index": torch.tensor(index if index is not None else list(range(n))),
    }


def train_steps(model: SelfMM, batch: dict, steps: int, lr: float = 1e-2) -> list[dict]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        opt.zero_grad()
        losses = model.compute_losses(model(batch), batch["labels"])
        losses["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


def memories(model: SelfMM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ulgm.")}


def test_registered_forward_backward_shapes():
    assert "self_mm" in list_models()
    torch.manual_seed(0)
    model = create_model("self_mm", SPEC, **TINY)
    assert isinstance(model, SelfMM) and model.config.label_clip == 3.0  # MMSA's H from the label range
    assert model.heads["fusion"].layer_1.in_features == 12 + 4 + 5  # text features + audio_out + video_out
    batch = make_batch()
    out = model(batch)
    assert out.prediction.shape == (6, 1) and out.training
    assert all(out.unimodal[s].shape == (6, 1) for s in ("text", "audio", "vision"))
    assert out.features["fusion"].shape == (6, 8) and out.features["vision"].shape == (6, 5)
    losses = model.compute_losses(out, batch["labels"])
    assert set(losses) == {"loss", "task", "uni_text", "uni_audio", "uni_vision"}
    assert all(torch.isfinite(v) for v in losses.values())
    # first epoch: generated labels equal the multimodal one, so the tanh weights are 0 (as in MMSA)
    assert all(float(losses[f"uni_{s}"]) == 0.0 for s in ("text", "audio", "vision"))
    torch.testing.assert_close(losses["loss"], losses["task"])
    losses["loss"].backward()
    assert model.audio_model.rnn.weight_ih_l0.grad.abs().sum() > 0
    # second visit: the loss still reads the labels of epoch 1 (they move only after it), as in MMSA
    losses = model.compute_losses(model(batch), batch["labels"])
    assert float(losses["uni_text"]) == 0.0
    # third visit: trained on the labels generated in epoch 2, so the unimodal heads get gradients too
    model.zero_grad()
    losses = model.compute_losses(model(batch), batch["labels"])
    losses["loss"].backward()
    assert float(losses["uni_text"]) > 0 and model.heads["text"].layer_3.weight.grad.abs().sum() > 0


def test_lstm_reads_only_the_valid_steps():
    model = create_model("self_mm", SPEC, **TINY).eval()
    batch = make_batch(4)
    noisy = dict(batch, audio=batch["audio"].clone(), vision=batch["vision"].clone())
    for i in range(4):  # garbage in the padding must not change anything
        noisy["audio"][i, batch["audio_lengths"][i]:] = 7.0
        noisy["vision"][i, batch["vision_lengths"][i]:] = -7.0
    torch.testing.assert_close(model(noisy).prediction, model(batch).prediction)


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = create_model("self_mm", SPEC, **TINY)
    hist = train_steps(model, make_batch(8), 20, lr=3e-2)
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert hist[-1]["task"] < 0.5 * hist[0]["task"]
    # the unimodal terms join at the third visit (see above); from there the total falls too
    assert hist[2]["uni_text"] > 0 and hist[-1]["loss"] < 0.6 * hist[3]["loss"]


# ----------------------------------------------------------------------- ULGM by hand
def reference_centres(feat: np.ndarray, lab: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paper eq. for C^p / C^n: mean features of the samples with label > 0 / < 0 (zero excluded)."""
    return feat[seen & (lab > 0)].mean(0), feat[seen & (lab < 0)].mean(0)


def reference_label(y_m, y_s_old, n, f_f, f_s, cf, cs, clip):
    """Paper §3.3 / MMSA update_labels for one sample, written out in float64."""
    eps = 1e-8
    delta_f = (np.linalg.norm(f_f - cf[1]) - np.linalg.norm(f_f - cf[0])) / (np.linalg.norm(f_f - cf[0]) + eps)
    delta_s = (np.linalg.norm(f_s - cs[1]) - np.linalg.norm(f_s - cs[0])) / (np.linalg.norm(f_s - cs[0]) + eps)
    y_ratio = y_m * delta_s / (delta_f + eps)  # y_s^(1): relative-distance ratio
    y_shift = y_m + delta_s - delta_f  # y_s^(2): shifted by the distance difference
    new = float(np.clip(0.5 * (y_ratio + y_shift), -clip, clip))
    return (n - 1) / (n + 1) * y_s_old + 2 / (n + 1) * new


def test_ulgm_matches_the_paper_formulas():
    dims = {"fusion": 3, "text": 2, "audio": 2, "vision": 4}
    ulgm = ULGM(dims, label_clip=2.0, exclude_zero=True, warmup_epochs=1)
    rng = np.random.default_rng(3)
    y = np.array([1.5, -2.0, 0.0, 2.5, -0.4])
    feats1 = {h: rng.normal(size=(5, d)) for h, d in dims.items()}
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731

    # visit 1 (epoch 1): labels initialised to y_m, memories filled, no label moves
    targets = ulgm.observe(torch.arange(5), t(y), {h: t(f) for h, f in feats1.items()})
    assert ulgm.size == 5 and ulgm.visits.tolist() == [1] * 5
    for h in HEADS:
        np.testing.assert_allclose(targets[h].numpy(), y, rtol=0, atol=1e-7)
        np.testing.assert_allclose(getattr(ulgm, f"label_{h}").numpy(), y, atol=1e-7)
        pos, neg = reference_centres(feats1[h], y, np.ones(5, bool))
        np.testing.assert_allclose(getattr(ulgm, f"centre_pos_{h}").numpy(), pos, atol=1e-6)
        np.testing.assert_allclose(getattr(ulgm, f"centre_neg_{h}").numpy(), neg, atol=1e-6)
    centres = {h: reference_centres(feats1[h], y, np.ones(5, bool)) for h in HEADS}

    # visit 2 of samples 3 and 0 (their epoch 2): labels move with n = 2, from the epoch-1 centres
    idx = [3, 0]
    feats2 = {h: rng.normal(size=(2, d)) * 2 for h, d in dims.items()}
    targets = ulgm.observe(torch.tensor(idx), t(y[idx]), {h: t(f) for h, f in feats2.items()})
    labels = {h: y.copy() for h in HEADS}
    for j, i in enumerate(idx):
        for s in ("text", "audio", "vision"):
            labels[s][i] = reference_label(y[i], y[i], 2, feats2["fusion"][j], feats2[s][j], centres["fusion"],
                                           centres[s], 2.0)
    for h in HEADS:
        np.testing.assert_allclose(targets[h].numpy(), y[idx], atol=1e-7)  # read before the update
        np.testing.assert_allclose(getattr(ulgm, f"label_{h}").numpy(), labels[h], rtol=1e-5, atol=1e-5)
    assert ulgm.visits.tolist() == [2, 1, 1, 2, 1]
    # centres now use the replaced features and each head's own (generated) labels
    feat_mem = {h: feats1[h].copy() for h in HEADS}
    for h in HEADS:
        feat_mem[h][idx] = feats2[h]
        pos, neg = reference_centres(feat_mem[h], labels[h], np.ones(5, bool))
        np.testing.assert_allclose(getattr(ulgm, f"centre_pos_{h}").numpy(), pos, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(getattr(ulgm, f"centre_neg_{h}").numpy(), neg, rtol=1e-5, atol=1e-6)
    moved = {s: labels[s][0] for s in ("text", "audio", "vision")}
    assert any(abs(v - y[0]) > 1e-3 for v in moved.values())

    # visit 3 of sample 0 (n = 3): momentum (n-1)/(n+1) on its previous generated label
    centres = {h: reference_centres(feat_mem[h], labels[h], np.ones(5, bool)) for h in HEADS}
    feats3 = {h: rng.normal(size=(1, d)) for h, d in dims.items()}
    targets = ulgm.observe(torch.tensor([0]), t(y[[0]]), {h: t(f) for h, f in feats3.items()})
    for s in ("text", "audio", "vision"):
        assert float(targets[s][0]) == pytest.approx(moved[s], abs=1e-5)
        want = reference_label(y[0], moved[s], 3, feats3["fusion"][0], feats3[s][0], centres["fusion"],
                               centres[s], 2.0)
        assert float(getattr(ulgm, f"label_{s}")[0]) == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert float(ulgm.label_fusion[0]) == pytest.approx(1.5)  # the multimodal label never moves


def test_unimodal_loss_weights_are_tanh_of_the_label_gap():
    torch.manual_seed(1)
    model = create_model("self_mm", SPEC, **TINY)
    batch = make_batch(5)
    train_steps(model, batch, 2)  # labels have moved once
    model.train()
    out = model(batch)
    before = model.ulgm.labels(batch["index"])
    losses = model.compute_losses(out, batch["labels"])
    for s in ("text", "audio", "vision"):
        w = torch.tanh((before[s] - before["fusion"]).abs())
        want = (w * (out.unimodal[s].view(-1) - before[s]).abs()).mean()
        torch.testing.assert_close(losses[f"uni_{s}"], want.detach())
    torch.testing.assert_close(losses["task"], (out.prediction.view(-1) - batch["labels"]).abs().mean().detach())


# ----------------------------------------------------------------------- memory isolation, checkpoints
def test_eval_passes_never_touch_the_memories():
    torch.manual_seed(0)
    model = create_model("self_mm", SPEC, **TINY)
    train_steps(model, make_batch(6), 3)
    saved = memories(model)
    model.eval()
    other = make_batch(6, seed=9)  # validation rows share indices 0..5 with different labels
    with torch.no_grad():
        losses = model.compute_losses(model(other), other["labels"])
        model.predict(other)
    assert set(losses) == {"loss", "task"}
    for k, v in memories(model).items():
        assert torch.equal(v, saved[k]), k
    # the same rows in training mode are refused: they would corrupt the training memories
    model.train()
    with pytest.raises(ValueError, match="training split"):
        model.compute_losses(model(other), other["labels"])


def test_memories_grow_with_the_largest_index():
    model = create_model("self_mm", SPEC, num_train=3, **TINY)
    assert model.ulgm.size == 3
    batch = make_batch(4, index=[0, 9, 2, 5])
    model.compute_losses(model(batch), batch["labels"])
    assert model.ulgm.size >= 10
    assert sorted(torch.nonzero(model.ulgm.visits).view(-1).tolist()) == [0, 2, 5, 9]


def test_state_dict_round_trip_is_strict_after_training():
    torch.manual_seed(0)
    model = create_model("self_mm", SPEC, **TINY)
    batch = make_batch(6, index=[4, 17, 3, 8, 0, 11])
    train_steps(model, batch, 3)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for start in (0, 64):  # smaller and larger initial memories both adopt the stored size
        again = create_model("self_mm", SPEC, num_train=start, **TINY)
        again.load_state_dict(sd, strict=True)
        for k, v in again.state_dict().items():
            assert torch.equal(v, sd[k]), k
        model.eval()
        again.eval()
        with torch.no_grad():
            torch.testing.assert_close(again(batch).prediction, model(batch).prediction)
        # training continues identically from the loaded memories
        torch.manual_seed(5)
        a = train_steps(model, batch, 1)
        torch.manual_seed(5)
        b = train_steps(again, batch, 1)
        assert a == b
        model.load_state_dict(sd)


def test_binary_tasks_are_refused():
    spec = DatasetSpec("mustard", False, SPEC.feature_dims, SPEC.seq_lens, (0.0, 1.0), task="binary")
    with pytest.raises(ValueError, match="regression only"):
        create_model("self_mm", spec, **TINY)


def test_config_validation():
    with pytest.raises(ValueError, match="text_pooling"):
        create_model("self_mm", SPEC, text_pooling="max")
    with pytest.raises(ValueError, match="post_text_dropout"):
        create_model("self_mm", SPEC, post_text_dropout=1.0)


def test_mean_pooling_and_aligned_lengths():
    spec = DatasetSpec("mosi", True, SPEC.feature_dims, {"text": 6, "audio": 6, "vision": 6})
    model = create_model("self_mm", spec, text_pooling="mean", **TINY).eval()
    batch = make_batch(3, spec=spec)
    mask = batch["text_bert"][:, 1]  # (B, T_l)
    want = (batch["text"] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(model._text(batch), want)
    # aligned data: audio/vision are packed by the text length, so steps beyond it are ignored
    noisy = dict(batch, audio=batch["audio"].clone())
    noisy["audio"][mask == 0] = 5.0
    with torch.no_grad():
        torch.testing.assert_close(model(noisy).prediction, model(batch).prediction)


def test_optimizer_groups_partition_the_parameters():
    model = create_model("self_mm", SPEC, **TINY)
    groups = model.optimizer_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert groups["bert_decay"] == [] and len(groups["audio"]) == 6  # LSTM (4) + linear (2)


# ----------------------------------------------------------------------- BERT variant
def test_tiny_bert_variant_fine_tunes_and_rebuilds(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert")
    torch.manual_seed(0)
    model = create_model("self_mm", SPEC, text_encoder=str(tmp_path / "bert"), **TINY)
    assert model.heads["text"].layer_1.in_features == 16  # BERT width, not the spec's text dim
    batch = make_batch(4)
    model.compute_losses(model(batch), batch["labels"])["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("text_model.") and "pooler" not in n]
    assert grads and all(g is not None for g in grads)
    groups = model.optimizer_groups()
    assert groups["bert_decay"] and groups["bert_no_decay"]
    # the checkpoint config rebuilds the encoder without the directory; strict load restores it
    conf = model.config_dict()
    conf["text_encoder"] = str(tmp_path / "gone")
    again = create_model("self_mm", SPEC, **conf)
    again.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(batch).prediction, model(batch).prediction)


# ----------------------------------------------------------------------- the real training loop
def _cfg(**train) -> RunConfig:
    base = {"batch_size": 8, "eval_batch_size": 4, "update_every": 2, "trailing_window": "step",
            "grad_clip_value": None, "scheduler": "none", "max_epochs": 2, "early_stop": 50, "device": "cpu"}
    return RunConfig.from_dict({"model": {"name": "self_mm", **TINY}, "train": {**base, **train}})


@pytest.fixture
def data(mmsa_writer):
    return load_dataset(str(mmsa_writer("tiny.pkl", n=(20, 6, 5), dims=(12, 5, 7), aligned=False)))


def test_trains_two_epochs_through_fit(data, tmp_path):
    results = fit(_cfg(), data, tmp_path / "run", quiet=True)
    assert results["epochs_run"] == 2 and np.isfinite(results["test"]["MAE"])
    epochs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the unimodal losses read labels generated in earlier epochs: zero until epoch 3, as in MMSA
    assert [e["train/uni_text"] for e in epochs] == [0.0, 0.0]
    last = read_checkpoint(tmp_path / "run" / "last.ckpt")["state_dict"]
    assert last["ulgm.visits"][:20].tolist() == [2] * 20  # every training sample seen once per epoch
    assert not torch.equal(last["ulgm.label_text"][:20], last["ulgm.label_fusion"][:20])  # moved in epoch 2
    model, ckpt = load_checkpoint(tmp_path / "run" / "best.ckpt")  # strict load of the grown memories
    assert isinstance(model, SelfMM) and ckpt["model_config"]["label_clip"] == 3.0


def test_resume_reproduces_uninterrupted_run(data, tmp_path):
    full = fit(_cfg(max_epochs=3), data, tmp_path / "full", quiet=True)

    class Interrupt(Exception):
        pass

    def stop(epoch, record):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_cfg(max_epochs=3), data, tmp_path / "cut", quiet=True, on_epoch_end=stop)
    resumed = fit(_cfg(max_epochs=3), data, tmp_path / "cut", resume=True, quiet=True)
    assert resumed["test"] == full["test"]
    a = read_checkpoint(tmp_path / "full" / "last.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.ckpt")["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_train(mmsa_writer, tmp_path):
    from emodistill.cli import main

    pkl = mmsa_writer("d.pkl", n=(16, 4, 4), dims=(12, 5, 7))  # aligned file
    run = tmp_path / "run"
    rc = main(["train", "--model", "self_mm", "--data", str(pkl), "--epochs", "2", "--quiet", "--run-dir", str(run),
               "--train.batch_size", "8", "--train.update_every=1", "--model.post_fusion_dim", "8",
               "--device", "cpu"])
    assert rc == 0 and json.loads((run / "results.json").read_text())["epochs_run"] == 2
    assert self_mm_mod.SelfMM.name == "self_mm"
