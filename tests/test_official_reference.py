"""Faithfulness to the official DMD, checked without the official code.

``tests/data/official/*.npz`` hold what the OFFICIAL modules (commit in ``references.json``) computed on
seeded weights and inputs: written by ``scripts/make_official_references.py``, which runs them through
``benchmarks/compare_official.py``. Here our DMD is built with the same weights (already converted to our
names) and must reproduce the eval outputs, every loss term, the GD edges and every gradient, and place
each dropout where the official model does.

Tolerances: outputs, losses and edges 1e-5 times ``max(1, max |reference|)`` of each array (measured: at
most 7.7e-6 absolute on unaligned ``repr_v_hetero``, whose entries reach 2.2, i.e. 3.5e-6 at unit scale;
1.9e-6 on the losses; 1.5e-8 on the edges).
Gradients are float32 rounding: the measured max |diff| relative to the largest gradient entry of the case
is 4.4e-7 (aligned), 6.1e-7 (BERT), 2.2e-6 (unaligned: 375/500 steps), so ``GRAD_REL_TOL`` = 2e-5
relative to that scale (a safety factor of ~10 over the worst case).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emodistill.models import create_model
from emodistill.models.dmd.model import MODS
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS
from emodistill.spec import DatasetSpec

DATA = Path(__file__).parent / "data" / "official"
META = json.loads((DATA / "references.json").read_text())
OUT_TOL = 1e-5
GRAD_REL_TOL = 2e-5


def build(case: str, **overrides):
    """Our DMD with the case's official weights, and the case's batch and reference arrays."""
    ref = dict(np.load(DATA / f"{case}.npz"))
    info = META["cases"][case]
    s = info["spec"]
    spec = DatasetSpec(
        name="mosi",
        aligned=s["aligned"],
        feature_dims=s["feature_dims"],
        seq_lens=s["seq_lens"],
        has_text_bert=True,
    )
    cfg = {**info["config"], **overrides}
    model = create_model("dmd", spec, **cfg)
    sd = {k[2:]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("w/")}
    model.load_state_dict(sd, strict=True)
    batch = {k[3:]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("in/")}
    return model, batch, ref


def outputs(u) -> dict[str, torch.Tensor]:
    """Our DMDOutput under the reference names (see ``eval_outputs`` in the script)."""
    res = {"prediction": u.prediction, "logits_c": u.logits_c}
    for i, m in enumerate(MODS):
        res[f"logits_{m}_homo"] = u.logits_homo[i]
        res[f"logits_{m}_hetero"] = u.logits_hetero[i]
        res[f"repr_{m}_homo"] = u.reprs_homo[i]
        res[f"repr_{m}_hetero"] = u.reprs_hetero[i]
        res[f"last_h_{m}"] = u.last_h[m]
        res[f"c_sim_{m}"] = u.c_sim[m]
        res[f"s_{m}"] = u.s[m]
        res[f"c_{m}"] = u.c[m]
        res[f"recon_{m}"] = u.recon[m]
        res[f"s_r_{m}"] = u.s_r[m]
    return {k: v.detach() for k, v in res.items()}


def max_diff(a, b) -> float:
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def scaled_diff(a, ref) -> float:
    """Max |a - ref| over ``max(1, max |ref|)``: absolute below unit scale, relative above it."""
    return max_diff(a, ref) / max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("case", sorted(META["cases"]))
def test_matches_official(case):
    model, batch, ref = build(case)
    model.eval()
    with torch.no_grad():
        got = outputs(model(batch))
    names = {k[5:] for k in ref if k.startswith("eval/")}
    assert names == set(got)
    bad = {k: scaled_diff(got[k], ref[f"eval/{k}"]) for k in names}
    assert max(bad.values()) <= OUT_TOL, {k: v for k, v in bad.items() if v > OUT_TOL}

    model.train()
    u = model(batch)
    losses = model.compute_losses(u, batch["labels"])
    losses["loss"].backward()
    bad = {k[5:]: scaled_diff(losses[k[5:]].detach(), v) for k, v in ref.items() if k.startswith("loss/")}
    bad["edges_homo"] = scaled_diff(u.edges_homo.detach(), ref["edges/homo"])
    bad["edges_hetero"] = scaled_diff(u.edges_hetero.detach(), ref["edges/hetero"])
    assert len(bad) == 14  # total + 11 terms + 2 edge sets
    assert max(bad.values()) <= OUT_TOL, {k: v for k, v in bad.items() if v > OUT_TOL}

    grads = {k[5:]: v for k, v in ref.items() if k.startswith("grad/")}
    params = dict(model.named_parameters())
    assert set(grads) == set(params)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    bad = {
        k: max_diff(p.grad if p.grad is not None else torch.zeros_like(p), grads[k]) / scale
        for k, p in params.items()
    }
    assert max(bad.values()) <= GRAD_REL_TOL, {k: v for k, v in bad.items() if v > GRAD_REL_TOL}


def test_dropout_placement_matches_official():
    changes = META["dropout_changes"]
    assert set(changes) == set(DROPOUT_FIELDS)
    _, batch, _ = build("mosi_aligned")

    def run(**rates):
        model, _, _ = build("mosi_aligned", **rates)
        model.train()
        torch.manual_seed(META["seeds"]["dropout"])
        with torch.no_grad():
            return outputs(model(batch))

    base = run()
    found = {}
    for field in DROPOUT_FIELDS:
        out = run(**{field: META["dropout_rate"]})
        found[field] = sorted(k for k, v in out.items() if not torch.allclose(v, base[k], rtol=0, atol=1e-6))
    assert found == changes
