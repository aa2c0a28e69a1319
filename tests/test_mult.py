"""MulT encoder pieces against hand-built expectations (docs/dmd-spec.md §3.9) and a plain reference encoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emodistill.models.layers.grouped_transformer import (
    GroupedMulTEncoder,
    fast_dropout,
    folded_weight_cache,
    future_mask,
    positional_embedding,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_formula():
    dim, n = 10, 7
    table = sinusoidal_table(n, dim)
    half = dim // 2
    for p in range(n):
        for j in range(half):
            f = math.exp(-j * math.log(10000) / (half - 1))
            want_sin = 0.0 if p == 0 else math.sin(p * f)
            want_cos = 0.0 if p == 0 else math.cos(p * f)
            assert table[p, j].item() == pytest.approx(want_sin, abs=1e-5)
            assert table[p, half + j].item() == pytest.approx(want_cos, abs=1e-5)


def test_sinusoidal_table_odd_dim_has_zero_last_column():
    table = sinusoidal_table(5, 9)
    assert table.shape == (5, 9)
    assert torch.all(table[:, -1] == 0)


def test_positional_embedding_zero_channel_rule():
    x = torch.randn(2, 6, 8)
    x[0, 4:, 0] = 0.0  # padded frames of clip 0 (channel 0 exactly zero)
    x[1, 2, 0] = 0.0  # an interior zero counts as padding too
    pe = positional_embedding(x)
    table = sinusoidal_table(7, 8)
    for b in range(2):
        for t in range(6):
            want = torch.zeros(8) if x[b, t, 0] == 0 else table[t + 1]
            assert torch.equal(pe[b, t], want)


@pytest.mark.parametrize("t_q,t_k", [(5, 5), (3, 6), (6, 3), (1, 4)])
def test_future_mask_formula(t_q, t_k):
    got = future_mask(t_q, t_k)
    want = torch.zeros(t_q, t_k)
    for i in range(t_q):
        for j in range(t_k):
            if j >= i + 1 + abs(t_k - t_q):
                want[i, j] = float("-inf")
    if torch.isinf(want).any():
        assert torch.equal(got, want)
    else:
        assert got is None  # nothing masked: the encoder skips the mask


# ---------------------------------------------------------------- reference encoder
def _ref_encoder(
    params: dict, x_in: torch.Tensor, kv_in: torch.Tensor | None, heads: int, causal: bool = True
) -> torch.Tensor:
    """Plain time-first MulT encoder from the spec's formulas; one member, no dropout.

    params: per-layer dicts with in_w (3E,E), in_b, out_w, out_b, fc1_w, fc1_b, fc2_w, fc2_b, ln0_w, ln0_b,
    ln1_w, ln1_b, plus norm_w, norm_b. x_in (T_q, B, E), kv_in (T_k, B, E) or None.
    """
    t_q, bsz, e = x_in.shape
    hd = e // heads

    def emb(z):
        half = e // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
        pos = torch.arange(1, z.shape[0] + 1, dtype=torch.float32)[:, None] * freqs[None]
        table = torch.cat([pos.sin(), pos.cos()], 1)  # (T, E)
        pe = torch.where((z[..., 0] != 0)[..., None], table[:, None, :], torch.zeros(()))
        return math.sqrt(e) * z + pe

    x = emb(x_in)
    kv = emb(kv_in) if kv_in is not None else None
    for lp in params["layers"]:
        res = x
        xn = F.layer_norm(x, (e,), lp["ln0_w"], lp["ln0_b"])
        src = xn if kv is None else F.layer_norm(kv, (e,), lp["ln0_w"], lp["ln0_b"])
        q = (xn @ lp["in_w"][:e].T + lp["in_b"][:e]) * hd**-0.5
        k = src @ lp["in_w"][e : 2 * e].T + lp["in_b"][e : 2 * e]
        v = src @ lp["in_w"][2 * e :].T + lp["in_b"][2 * e :]
        t_k = k.shape[0]
        out = torch.zeros_like(q)
        for b in range(bsz):
            for h in range(heads):
                sl = slice(h * hd, (h + 1) * hd)
                s = q[:, b, sl] @ k[:, b, sl].T  # (T_q, T_k)
                for i in range(t_q):
                    for j in range(t_k):
                        if causal and j >= i + 1 + abs(t_k - t_q):
                            s[i, j] = float("-inf")
                out[:, b, sl] = torch.softmax(s, -1) @ v[:, b, sl]
        x = res + (out @ lp["out_w"].T + lp["out_b"])
        hn = F.layer_norm(x, (e,), lp["ln1_w"], lp["ln1_b"])
        x = x + (torch.relu(hn @ lp["fc1_w"].T + lp["fc1_b"]) @ lp["fc2_w"].T + lp["fc2_b"])
    return F.layer_norm(x, (e,), params["norm_w"], params["norm_b"])


def _randomise(enc: GroupedMulTEncoder) -> None:
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.2 * torch.randn_like(p))


def _member_params(enc: GroupedMulTEncoder, g: int) -> dict:
    layers = []
    for i in range(enc.num_layers):
        layers.append(
            dict(
                in_w=enc.in_proj_weight[i, g],
                in_b=enc.in_proj_bias[i, g],
                out_w=enc.out_proj_weight[i, g],
                out_b=enc.out_proj_bias[i, g],
                fc1_w=enc.fc1_weight[i, g],
                fc1_b=enc.fc1_bias[i, g],
                fc2_w=enc.fc2_weight[i, g],
                fc2_b=enc.fc2_bias[i, g],
                ln0_w=enc.ln0_weight[i, g],
                ln0_b=enc.ln0_bias[i, g],
                ln1_w=enc.ln1_weight[i, g],
                ln1_b=enc.ln1_bias[i, g],
            )
        )
    return dict(layers=layers, norm_w=enc.norm_weight[g], norm_b=enc.norm_bias[g])


def test_self_attention_encoder_matches_reference():
    torch.manual_seed(0)
    enc = GroupedMulTEncoder(2, 8, 2, 2, [0.0, 0.0]).eval()
    _randomise(enc)
    x = torch.randn(2, 3, 5, 8)  # (G, B, T, E)
    x[0, 1, 3:, 0] = 0.0  # padding rule
    with torch.no_grad():
        y = enc(x)
        last = enc(x, last_only=True)
        for g in range(2):
            ref = _ref_encoder(_member_params(enc, g), x[g].transpose(0, 1), None, heads=2)
            torch.testing.assert_close(y[g], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(last[g], ref[-1], atol=1e-5, rtol=1e-5)


def test_crossmodal_encoder_unequal_lengths_matches_reference():
    torch.manual_seed(1)
    enc = GroupedMulTEncoder(3, 8, 4, 2, [0.0] * 3).eval()
    _randomise(enc)
    xs = [torch.randn(2, t, 8) for t in (4, 7, 4)]
    kvs = [torch.randn(2, t, 8) for t in (7, 4, 7)]  # members 0 and 2 share (T_q, T_k): batched
    with torch.no_grad():
        ys = enc(xs, kvs)
        for g in range(3):
            ref = _ref_encoder(_member_params(enc, g), xs[g].transpose(0, 1), kvs[g].transpose(0, 1), heads=4)
            torch.testing.assert_close(ys[g], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_close_lengths_run_padded_and_match_reference(causal):
    """Lengths within PAD_RATIO are zero-padded and batched; real rows must equal the unpadded math."""
    torch.manual_seed(5)
    selfatt = GroupedMulTEncoder(3, 8, 2, 2, [0.0] * 3, attn_mask=causal).eval()
    cross = GroupedMulTEncoder(3, 8, 2, 2, [0.0] * 3, attn_mask=causal).eval()
    _randomise(selfatt)
    _randomise(cross)
    xs = [torch.randn(2, t, 8) for t in (9, 10, 8)]
    kvs = [torch.randn(2, t, 8) for t in (8, 10, 9)]  # T_k < T_q, equal, > T_q
    xs[1][0, 7:, 0] = 0.0  # the padding rule still sees the real zero channel
    with torch.no_grad():
        full, last, crossed = selfatt(xs), selfatt(xs, last_only=True), cross(xs, kvs)
    for g in range(3):
        ref = _ref_encoder(_member_params(selfatt, g), xs[g].transpose(0, 1), None, 2, causal)
        torch.testing.assert_close(full[g], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last[g], ref[-1], atol=1e-5, rtol=1e-5)
        ref = _ref_encoder(_member_params(cross, g), xs[g].transpose(0, 1), kvs[g].transpose(0, 1), 2, causal)
        torch.testing.assert_close(crossed[g], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_grouped_and_bucketed_paths_agree_with_grads():
    """Members batched all together vs in shape buckets (gathered / sliced weights): same values and grads."""
    torch.manual_seed(2)
    enc = GroupedMulTEncoder(3, 8, 2, 2, [0.0] * 3).train()
    _randomise(enc)
    x = torch.randn(3, 2, 6, 8)
    kv = torch.randn(3, 2, 6, 8)
    y1 = enc(x, kv)
    (y1[0].square().sum() + y1[2].square().sum()).backward()
    g1 = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    # member 1 gets a shorter query: members 0 and 2 form one bucket (gathered weights), 1 runs alone
    y2 = enc([x[0], x[1][:, :5], x[2]], [kv[0], kv[1], kv[2]])
    (y2[0].square().sum() + y2[2].square().sum()).backward()
    torch.testing.assert_close(y2[0], y1[0])
    torch.testing.assert_close(y2[2], y1[2])
    for a, p in zip(g1, enc.parameters(), strict=True):
        m = (slice(None), [0, 2]) if p.dim() > 2 else ([0, 2],)  # (L, G, ...) or (G, E)
        o = (slice(None), 1) if p.dim() > 2 else (1,)
        torch.testing.assert_close(p.grad[m], a[m], atol=1e-5, rtol=1e-4)
        assert torch.all(p.grad[o] == 0)


def test_inference_sees_weights_edited_through_data():
    """No stale derived weights: an EMA-style ``.data`` edit (no version bump) changes the output."""
    torch.manual_seed(3)
    enc = GroupedMulTEncoder(2, 8, 2, 1, [0.0, 0.0]).eval()
    x = torch.randn(2, 2, 4, 8)
    with torch.no_grad():
        a = enc(x)
        enc.fc1_weight.data.mul_(1.5)
        b = enc(x)
    assert not torch.allclose(a, b)


class _FoldCounter:
    """Counts :meth:`GroupedMulTEncoder._fold` calls (the LayerNorm folding the cache saves)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        fold = GroupedMulTEncoder._fold

        def counted(enc, sel):
            self.calls += 1
            return fold(enc, sel)

        monkeypatch.setattr(GroupedMulTEncoder, "_fold", counted)


def test_folded_weight_cache_folds_once_and_changes_nothing(monkeypatch):
    torch.manual_seed(4)
    enc = GroupedMulTEncoder(2, 8, 2, 2, [0.0, 0.0]).eval()
    _randomise(enc)
    x, kv = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8)
    with torch.no_grad():
        plain = [enc(x, kv), enc(x[:, :1], kv[:, :1])]
    counter = _FoldCounter(monkeypatch)
    store: dict = {}
    with torch.no_grad():
        with folded_weight_cache(store):
            cached = [enc(x, kv), enc(x[:, :1], kv[:, :1])]
        with folded_weight_cache(store):  # a kept store carries the folded weights across blocks
            again = enc(x, kv)
    assert counter.calls == 1
    for a, b in zip(plain + [plain[0]], cached + [again], strict=True):
        assert torch.equal(a, b)  # the very same folded weights: bit-identical
    with torch.no_grad():  # outside any block nothing is reused
        enc(x, kv)
    assert counter.calls == 2


def test_folded_weight_cache_refolds_after_weight_updates(monkeypatch):
    torch.manual_seed(6)
    enc = GroupedMulTEncoder(2, 8, 2, 2, [0.0, 0.0]).eval()
    other = GroupedMulTEncoder(2, 8, 2, 2, [0.0, 0.0])
    _randomise(other)
    x = torch.randn(2, 3, 5, 8)
    opt = torch.optim.Adam(enc.parameters(), lr=0.1)
    counter = _FoldCounter(monkeypatch)
    with folded_weight_cache():
        with torch.no_grad():
            before = enc(x)
        with torch.enable_grad():  # an optimizer step (gradients on: the cache is not used here)
            enc(x).square().sum().backward()
        opt.step()
        with torch.no_grad():
            after_step = enc(x)
            enc.load_state_dict(other.state_dict())
            after_load = enc(x)
            enc.ln1_weight.mul_(2.0)  # in-place edit under no_grad bumps the version counter
            after_edit = enc(x)
    assert counter.calls == 5  # four no-grad calls, each after a change, plus the gradient call
    with torch.no_grad():
        fresh = enc(x)
    assert torch.equal(after_edit, fresh)
    assert not torch.equal(before, after_step) and not torch.equal(after_step, after_load)
    assert not torch.equal(after_load, after_edit)


def test_folded_weight_cache_is_not_used_in_training_or_with_grad(monkeypatch):
    torch.manual_seed(7)
    enc = GroupedMulTEncoder(2, 8, 2, 1, [0.0, 0.0])
    x = torch.randn(2, 2, 4, 8)
    counter = _FoldCounter(monkeypatch)
    store: dict = {}
    with folded_weight_cache(store):
        with torch.no_grad():
            enc.train()(x)
            enc(x)
        enc.eval()
        y = enc(x)
        y.sum().backward()  # the output still carries a graph to the weights
        enc(x)
    assert counter.calls == 4 and store == {}
    assert enc.fc1_weight.grad is not None


def test_per_member_attention_dropout_rates_are_honoured():
    torch.manual_seed(4)
    enc = GroupedMulTEncoder(2, 8, 2, 1, [0.0, 0.5])
    x = torch.randn(2, 4, 6, 8)
    with torch.no_grad():
        ref = enc.eval()(x)
        out = enc.train()(x)
    torch.testing.assert_close(out[0], ref[0])  # p = 0: no attention dropout in training either
    assert not torch.allclose(out[1], ref[1])


@pytest.mark.parametrize("last_only", [True, False])
def test_attention_dropout_with_a_batch_of_one_and_unequal_lengths(last_only):
    """A last training batch of one sample, members of different lengths: the dropout rescale must not
    assume a flat view of the per-head values (it raised before)."""
    torch.manual_seed(5)
    enc = GroupedMulTEncoder(3, 8, 2, 1, [0.2, 0.2, 0.2]).train()
    out = enc([torch.randn(1, t, 8) for t in (16, 5, 20)], last_only=last_only)
    assert [tuple(y.shape) for y in out] == ([(1, 8)] * 3 if last_only else [(1, 16, 8), (1, 5, 8), (1, 20, 8)])
    assert all(torch.isfinite(y).all() for y in out)


def test_fast_dropout_law_and_reproducibility():
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = fast_dropout(x, 0.3, True)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.7, abs=0.005)
    assert torch.allclose(y[y != 0], torch.full((), 1 / 0.7))
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    torch.manual_seed(0)
    assert torch.equal(fast_dropout(x, 0.3, True), y)  # torch.manual_seed fixes the mask
    assert fast_dropout(x, 0.3, False) is x


def test_encoder_rejects_bad_configuration():
    with pytest.raises(ValueError, match="divisible"):
        GroupedMulTEncoder(1, 10, 3, 1, [0.0])
    with pytest.raises(ValueError, match="one per member"):
        GroupedMulTEncoder(2, 8, 2, 1, [0.0])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        GroupedMulTEncoder(1, 8, 2, 1, [1.0])


def test_dmd_and_mult_configs_extend_the_grouped_encoder_config_first():
    """The shared fields come first, in one order, with one set of defaults (checkpoints store them by name)."""
    from dataclasses import asdict, fields

    from emodistill.models.dmd.config import DMDConfig
    from emodistill.models.dmd.dhmd import DHMDConfig
    from emodistill.models.layers.grouped_config import GroupedEncoderConfig
    from emodistill.models.mult import MulTConfig

    base = asdict(GroupedEncoderConfig())
    assert list(base)[0] == "d_model" and list(base)[-1] == "attn_mask" and len(base) == 15
    for cls in (DMDConfig, DHMDConfig, MulTConfig):
        assert [f.name for f in fields(cls)][: len(base)] == list(base)
        assert {k: v for k, v in asdict(cls()).items() if k in base} == base
    kw = MulTConfig(attn_dropout=0.1, attn_dropout_a=0.2, attn_dropout_v=0.3).encoder_kwargs(["v", "l", "a"])
    assert kw["attn_dropouts"] == [0.3, 0.1, 0.2]
