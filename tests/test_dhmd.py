"""DHMD: sparse activations, activation distances, fine-grained distillation, switches, DMD reduction."""

from __future__ import annotations

import math

import pytest
import torch

from emodistill.models import create_model
from emodistill.models.dmd.dhmd import DHMDConfig, fine_distillation
from emodistill.models.dmd.dictionary import DictionarySpace, activation_distance, sparse_activation, sparsemax
from emodistill.models.dmd.gd_unit import EDGE_NAMES
from emodistill.spec import DatasetSpec

SPEC = DatasetSpec("synth", True, {"text": 12, "audio": 5, "vision": 7}, {"text": 9, "audio": 9, "vision": 9})
TINY = dict(d_model=8, num_heads=2, nlevels=1, kernel_l=3, kernel_a=3, kernel_v=3, gd_size_homo=4,
            gd_size_hetero=4, dict_size=6)


def _batch(b: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        m: torch.randn(b, SPEC.seq_lens[m], SPEC.feature_dims[m], generator=g) for m in ("text", "audio", "vision")
    }
    batch["labels"] = torch.tensor([-2.0, -1.0, 0.0, 1.0, 1.0, 2.0][:b])
    return batch


# ---------------------------------------------------------------- sparsemax
def test_sparsemax_hand_computed():
    # z = (1, .5, -1): support {0, 1}, tau = (1.5 - 1) / 2 = .25
    assert torch.allclose(sparsemax(torch.tensor([1.0, 0.5, -1.0])), torch.tensor([0.75, 0.25, 0.0]))
    # z = (2, 0): only the first survives (1 + 2*0 > 2 fails), tau = 1
    assert torch.allclose(sparsemax(torch.tensor([2.0, 0.0])), torch.tensor([1.0, 0.0]))
    # equal scores: uniform
    assert torch.allclose(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))
    # batched, along dim 0
    z = torch.tensor([[1.0, 2.0], [0.5, 0.0], [-1.0, 0.0]])
    assert torch.allclose(sparsemax(z, dim=0), torch.tensor([[0.75, 1.0], [0.25, 0.0], [0.0, 0.0]]))


def test_sparsemax_jacobian_is_the_closed_form():
    # J = diag(s) - s s^T / |S| with s the support indicator (Martins & Astudillo 2016, eq. 12)
    z = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(sparsemax, z)
    want = torch.tensor([[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(jac, want)


def test_topk_activation_keeps_k_atoms():
    a = sparse_activation(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), "topk", top_k=2)
    e3, e2 = math.exp(3), math.exp(2)
    assert torch.allclose(a, torch.tensor([[e3 / (e3 + e2), 0.0, e2 / (e3 + e2), 0.0]]))
    with pytest.raises(ValueError, match="dictionary activation"):
        sparse_activation(torch.zeros(1, 3), "entmax")


# ---------------------------------------------------------------- distances
def test_js_distance_hand_computed_and_finite_gradients():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    js = activation_distance(p, q, "js")
    # disjoint supports: log 2; second row: m = (.75, .25)
    kl_pm = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qm = math.log(1 / 0.75)
    assert torch.allclose(js, torch.tensor([math.log(2), 0.5 * (kl_pm + kl_qm)]), atol=1e-6)
    js.sum().backward()
    assert torch.isfinite(p.grad).all()  # zeros in sparse activations must not give NaN/inf gradients


def test_l1_and_smoothed_kl():
    p, q = torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(activation_distance(p, q, "l1"), torch.tensor([1.0]))
    eps, k = 1e-4, 3
    qs = [(v + eps) / (1 + k * eps) for v in (1.0, 0.0, 0.0)]  # teacher
    ps = [(v + eps) / (1 + k * eps) for v in (0.5, 0.5, 0.0)]  # student
    want = sum(a * math.log(a / b) for a, b in zip(qs, ps, strict=True))
    assert activation_distance(p, q, "kl").item() == pytest.approx(want, rel=1e-5)


def test_soft_distance_hand_computed():
    teacher = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    scores = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax: (1/4, 3/4) and (1/2, 1/2)
    got = activation_distance(torch.zeros(2, 2), teacher, "soft", student_scores=scores)
    assert torch.allclose(got, torch.tensor([math.log(4.0), 0.0]), atol=1e-6)  # KL(teacher || softmax)
    with pytest.raises(ValueError, match="pooled scores"):
        activation_distance(teacher, teacher, "soft")


def test_sparse_distances_give_no_gradient_on_disjoint_supports_and_soft_does():
    """Why ``soft`` exists: a student's sparsemax activation whose support misses the teacher's atoms gets a
    zero gradient on its scores from JS and L1 (sparsemax's Jacobian is zero off the support and removes
    constant vectors on it) and a negligible one from smoothed KL, while ``soft`` raises the teacher's atom."""
    teacher = torch.tensor([[0.0, 0.0, 1.0]])
    for kind in ("js", "l1", "kl"):
        z = torch.tensor([[2.0, 1.8, -1.0]], requires_grad=True)  # support {0, 1}, teacher's atom 2 outside
        activation_distance(sparsemax(z), teacher, kind).sum().backward()
        assert z.grad[0, 2] == 0, kind  # never towards the teacher's atom
        # JS, L1: exactly zero; smoothed KL: of the order of its smoothing (1e-4)
        assert z.grad.abs().max() < (1e-3 if kind == "kl" else 1e-12), kind
    z = torch.tensor([[2.0, 1.8, -1.0]], requires_grad=True)
    activation_distance(sparsemax(z), teacher, "soft", student_scores=z).sum().backward()
    assert z.grad[0, 2] < 0 and z.grad[0, 0] > 0  # descent raises atom 2's score, lowers the others


def test_soft_distance_through_the_model_in_training_and_evaluation():
    """``dict_distance: soft`` end to end: the fine terms enter the training loss and reach the dictionary;
    in eval mode (dropouts off: the same forward) compute_losses gives the same fine and usage terms and
    leaves the training-only commit and contrast terms out."""
    quiet = dict(output_dropout=0.0, embed_dropout=0.0, text_dropout=0.0, attn_dropout=0.0, attn_dropout_a=0.0)
    torch.manual_seed(0)
    model = create_model("dhmd", SPEC, **TINY, **quiet, dict_distance="soft")
    batch = _batch()
    train = model.compute_losses(model(batch), batch["labels"])
    train["loss"].backward()
    assert model.dictionaries["homo"].query["v"][1].weight.grad.abs().sum() > 0
    assert train["fine_homo"] > 0 and train["fine_hetero"] > 0
    model.eval()
    with torch.no_grad():
        ev = model.compute_losses(model(batch), batch["labels"])
    for name in ("fine_homo", "fine_hetero", "usage_homo", "usage_hetero"):
        assert ev[name].item() == pytest.approx(train[name].item(), rel=1e-5), name
    assert not any(k.startswith(("commit_", "contrast_")) for k in ev)


# ---------------------------------------------------------------- fine distillation
def test_fine_distillation_follows_the_gd_edges():
    acts = {"l": torch.tensor([[1.0, 0.0]]), "v": torch.tensor([[0.0, 1.0]]), "a": torch.tensor([[0.5, 0.5]])}
    edges = torch.tensor([[0.1, 0.2, 0.3, 0.1, 0.2, 0.1]])
    prior = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.5, 0.0])
    want = 0.0
    for x, name in enumerate(EDGE_NAMES):  # "T->S": teacher T distils into student S
        teacher, student = name.lower().split("->")
        w = edges[0, x] + prior[x]
        want += float(w) * activation_distance(acts[student], acts[teacher], "l1").item()
    assert fine_distillation(acts, edges, prior, "l1").item() == pytest.approx(want)
    # soft: the student side is the softmax of its pooled scores
    scores = {m: torch.tensor([[0.3 * i, -0.2 * i]]) for i, m in enumerate("lva")}
    want = 0.0
    for x, name in enumerate(EDGE_NAMES):
        teacher, student = name.lower().split("->")
        q = torch.softmax(scores[student], -1)
        pairs = zip(acts[teacher][0].tolist(), q[0].tolist(), strict=True)
        kl = sum(t * math.log(t / qq) for t, qq in pairs if t > 0)
        want += float(edges[0, x] + prior[x]) * kl
    assert fine_distillation(acts, edges, prior, "soft", scores).item() == pytest.approx(want, rel=1e-5)


def test_fine_distillation_detaches_the_teacher():
    acts = {m: torch.tensor([[0.7, 0.3]], requires_grad=True) for m in "lva"}
    acts["v"] = torch.tensor([[0.2, 0.8]], requires_grad=True)
    prior = torch.zeros(6)
    edges = torch.zeros(1, 6)
    edges[0, EDGE_NAMES.index("L->V")] = 1.0  # only L teaches V
    fine_distillation(acts, edges, prior, "js").backward()
    assert acts["l"].grad is None or torch.all(acts["l"].grad == 0)
    assert acts["v"].grad.abs().sum() > 0


# ---------------------------------------------------------------- model
def test_dictionary_space_shapes_and_simplex():
    torch.manual_seed(0)
    space = DictionarySpace(8, 5, ("l", "v"), temperature=0.1)
    feats, acts, _ = space({"l": torch.randn(3, 7, 8), "v": torch.randn(3, 4, 8)})
    assert feats["l"].shape == (3, 8) and acts["v"].shape == (3, 5)
    for a in acts.values():
        assert torch.allclose(a.sum(-1), torch.ones(3)) and (a >= 0).all()
    # the feature is the activation-weighted sum of the (unnormalised) atoms
    assert torch.allclose(feats["l"], acts["l"] @ space.atoms)


def test_dhmd_without_dictionaries_is_dmd():
    torch.manual_seed(3)
    dmd = create_model("dmd", SPEC, **{k: v for k, v in TINY.items() if k != "dict_size"})
    torch.manual_seed(3)
    dhmd = create_model("dhmd", SPEC, **TINY, dict_spaces=())
    assert not any(k.startswith("dictionaries") for k in dhmd.state_dict())
    dmd.load_state_dict(dhmd.state_dict())
    batch = _batch()
    torch.manual_seed(5)
    a = dmd.compute_losses(dmd(batch), batch["labels"])
    torch.manual_seed(5)
    b = dhmd.compute_losses(dhmd(batch), batch["labels"])
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_dhmd_forward_losses_and_predict():
    torch.manual_seed(0)
    # a high temperature keeps several atoms active: a one-hot sparsemax has a zero Jacobian, and then no
    # gradient reaches the query (by design of sparsemax, not a bug)
    model = create_model("dhmd", SPEC, **TINY, dict_temperature=2.0)
    batch = _batch()
    out = model(batch)
    assert set(out.activations) == {"homo", "hetero"}
    assert out.activations["hetero"]["l"].shape == (6, 6)
    losses = model.compute_losses(out, batch["labels"])
    assert {"fine_homo", "fine_hetero"} <= set(losses)
    losses["loss"].backward()
    for space in ("homo", "hetero"):
        assert model.dictionaries[space].atoms.grad.abs().sum() > 0
        assert model.dictionaries[space].query["a"][1].weight.grad.abs().sum() > 0
    model.eval()
    assert torch.allclose(model.predict(batch), model(batch).prediction.view(-1))
    named = model.interpret(batch)
    assert named["activations/homo/v"].shape == (6, 6) and named["edges/hetero"].shape == (6, 6)


def test_switches_remove_exactly_their_terms():
    torch.manual_seed(0)
    full = create_model("dhmd", SPEC, **TINY, output_dropout=0.0, embed_dropout=0.0, text_dropout=0.0,
                        attn_dropout=0.0, attn_dropout_a=0.0)
    torch.manual_seed(0)
    cut = create_model("dhmd", SPEC, **TINY, output_dropout=0.0, embed_dropout=0.0, text_dropout=0.0,
                       attn_dropout=0.0, attn_dropout_a=0.0, disabled_losses=("fine_homo", "rec", "task_c"))
    cut.load_state_dict(full.state_dict())
    batch = _batch()
    lf = full.compute_losses(full(batch), batch["labels"])
    lc = cut.compute_losses(cut(batch), batch["labels"])
    cfg = full.config
    removed = cfg.weight_fine * lf["fine_homo"] + cfg.weight_decouple * lf["rec"] + lf["task_c"]
    assert (lf["loss"] - lc["loss"]).item() == pytest.approx(removed.item(), rel=1e-5)
    assert torch.equal(lf["fine_homo"], lc["fine_homo"])  # still logged


def test_no_decouple_uses_projected_features_in_both_spaces():
    torch.manual_seed(0)
    model = create_model("dhmd", SPEC, **TINY, decouple=False)
    out = model(_batch())
    for m in "lva":
        assert torch.equal(out.s[m], out.proj_x[m]) and torch.equal(out.c[m], out.proj_x[m])
    losses = model.compute_losses(out, _batch()["labels"])
    task_only = losses["task"] + 0.05 * (losses["homo_logit"] + losses["homo_reg"]) + 0.05 * (
        losses["hetero_logit"] + losses["hetero_repr"] + losses["hetero_reg"]
    ) + 0.1 * (losses["fine_homo"] + losses["fine_hetero"]) + 0.1 * (losses["usage_homo"] + losses["usage_hetero"])
    assert losses["loss"].item() == pytest.approx(task_only.item(), rel=1e-5)  # no rec/cyc/ort/mar


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"dict_spaces": ("homo", "middle")}, "dict_spaces"),
        ({"dict_activation": "entmax"}, "dict_activation"),
        ({"dict_distance": "cosine"}, "dict_distance"),
        ({"disabled_losses": ("fine",)}, "disabled_losses"),
        ({"dict_size": 1}, "dict_size"),
        ({"dict_usage_weight": -0.1}, "dict_usage_weight"),
        ({"dict_commit_weight": -1.0}, "dict_commit_weight"),
        ({"dict_contrast_weight": -1.0}, "dict_contrast_weight"),
        ({"dict_contrast_temperature": 0.0}, "dict_contrast_temperature"),
    ],
)
def test_config_errors_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        DHMDConfig(**bad)


def test_binary_task_uses_bce_on_every_head():
    spec = DatasetSpec("urfunny", True, SPEC.feature_dims, SPEC.seq_lens, label_range=(0.0, 1.0), task="binary")
    torch.manual_seed(0)
    model = create_model("dhmd", spec, **TINY)
    batch = _batch()
    batch["labels"] = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    out = model(batch)
    losses = model.compute_losses(out, batch["labels"])
    z, y = out.prediction.view(-1).double(), batch["labels"].double()
    bce = torch.mean(torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs())))  # stable BCE by hand
    assert losses["task_fusion"].item() == pytest.approx(bce.item(), rel=1e-5)


# ---------------------------------------------------------------- anti-collapse terms
def test_usage_deficit_hand_computed():
    from emodistill.models.dmd.dictionary import usage_deficit

    assert usage_deficit(torch.full((3, 4), 0.25)).item() == pytest.approx(0.0, abs=1e-6)  # uniform use
    assert usage_deficit(torch.eye(4)).item() == pytest.approx(0.0, abs=1e-6)  # one clip per atom: even batch
    one_atom = torch.tensor([[1.0, 0, 0, 0]]).repeat(5, 1)
    assert usage_deficit(one_atom).item() == pytest.approx(1.0)  # collapse
    two_atoms = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])  # mean (.5, .5, 0, 0): 1 - log 2 / log 4
    assert usage_deficit(two_atoms).item() == pytest.approx(0.5)


def test_commitment_distances_hand_computed_and_their_gradients():
    from emodistill.models.dmd.dictionary import commitment_distances

    atoms = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    # two steps; step 1 scores (0.6, 0.8): atom 1 wins the clip, and step 1 is its winning step
    q = torch.tensor([[[0.0, -1.0], [0.6, 0.8]]], requires_grad=True)  # (B=1, T=2, 2), unit rows
    scores = q @ atoms.t()  # (1, 2, 2)
    acts = torch.tensor([[0.1, 0.9]])
    d = commitment_distances(q, scores, acts, atoms)
    assert torch.allclose(d, torch.tensor([[0.2, 0.2]]))  # 1 - cos = 1 - 0.8
    d[0, 0].backward(retain_graph=True)  # commitment side: only the query moves
    assert atoms.grad is None or atoms.grad.abs().sum() == 0
    assert torch.allclose(q.grad[0, 1], torch.tensor([0.0, -1.0])) and q.grad[0, 0].abs().sum() == 0
    q.grad = None
    d[0, 1].backward()  # codebook side: only the atom moves
    assert q.grad is None or q.grad.abs().sum() == 0
    assert torch.allclose(atoms.grad, torch.tensor([[0.0, 0.0], [-0.6, -0.8]]))


def test_anti_collapse_terms_enter_the_loss_with_their_weights():
    quiet = dict(output_dropout=0.0, embed_dropout=0.0, text_dropout=0.0, attn_dropout=0.0, attn_dropout_a=0.0)
    torch.manual_seed(0)
    off = create_model("dhmd", SPEC, **TINY, **quiet, dict_usage_weight=0.0, dict_commit_weight=0.0)
    on = create_model("dhmd", SPEC, **TINY, **quiet, dict_usage_weight=0.3, dict_commit_weight=0.2,
                      dict_contrast_weight=0.7)
    on.load_state_dict(off.state_dict())
    batch = _batch()
    lo = off.compute_losses(off(batch), batch["labels"])
    out_on = on(batch)
    ln = on.compute_losses(out_on, batch["labels"])
    added = sum(0.3 * ln[f"usage_{s}"] + 0.2 * ln[f"commit_{s}"] for s in ("homo", "hetero"))
    added = added + 0.7 * ln["contrast_homo"]  # the homo space only
    assert (ln["loss"] - lo["loss"]).item() == pytest.approx(added.item(), rel=1e-5)
    # the commitment term is beta * commitment side + codebook side; both sides are the same number
    d = torch.stack(list(out_on.dictionary_aux["homo"]["commit"].values())).mean(dim=(0, 1))
    assert ln["commit_homo"].item() == pytest.approx((0.25 * d[0] + d[1]).item(), rel=1e-6)
    assert 0.0 <= ln["usage_homo"].item() <= 1.0
    ln["loss"].backward()
    assert on.dictionaries["homo"].atoms.grad.abs().sum() > 0
    on.eval()  # inference computes no commitment and predicts exactly as before
    assert {space: set(aux) for space, aux in on(batch).dictionary_aux.items()} == {"homo": {"scores"},
                                                                                   "hetero": {"scores"}}
    assert torch.allclose(on.predict(batch), off.eval().predict(batch))


def test_cross_modal_contrast_hand_computed():
    from emodistill.models.dmd.dictionary import cross_modal_contrast

    eye = torch.eye(2)
    # matching profiles: each row's logits (1, 0) at temperature 1 -> CE = log(1 + e^-1), every pair and direction
    same = cross_modal_contrast({"l": eye, "v": 3 * eye, "a": eye}, temperature=1.0)  # scale is irrelevant
    assert same.item() == pytest.approx(math.log(1 + math.exp(-1)))
    # clips swapped in one modality: the positive has cosine 0, the negative 1 -> CE = log(1 + e^1) there
    swapped = cross_modal_contrast({"l": eye, "v": eye.flip(0)}, temperature=1.0)
    assert swapped.item() == pytest.approx(math.log(1 + math.e))
    assert cross_modal_contrast({"l": eye[:1], "v": eye[:1]}, 0.1).item() == 0.0  # one clip: no negatives


def test_a_shared_query_maps_equal_tokens_of_every_modality_to_equal_activations():
    space = DictionarySpace(8, 5, ("l", "v", "a"), temperature=0.5, shared_query=True)
    x = torch.randn(3, 4, 8)
    _, acts, _ = space({"l": x, "v": x.clone(), "a": x.clone()})
    assert torch.equal(acts["l"], acts["v"]) and torch.equal(acts["l"], acts["a"])
    assert list(space.query) == ["shared"]
    own = DictionarySpace(8, 5, ("l", "v"), temperature=0.5)  # one projection each: different activations
    _, acts, _ = own({"l": x, "v": x.clone()})
    assert not torch.equal(acts["l"], acts["v"])
    with pytest.raises(ValueError, match="dict_shared_query"):
        DHMDConfig(dict_shared_query=("middle",))
