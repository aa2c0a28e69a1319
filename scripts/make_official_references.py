"""Write the official-DMD reference arrays that ``tests/test_official_reference.py`` checks us against.

Runs the OFFICIAL modules (imported from a checkout outside this project by
``benchmarks/compare_official.py``, whose builders and loss are reused here) on fixed seeded weights and
inputs, and writes one compressed ``.npz`` per case plus ``references.json``:

* ``w/<name>``: the official weights converted to OUR state_dict names (the test needs no official code);
* ``in/<key>``: the batch (padded frames included: the tails of half the audio/vision clips are zero);
* ``eval/<name>``: eval-mode outputs (prediction and every head / representation compare_official checks);
* ``loss/<term>``, ``edges/{homo,hetero}``, ``grad/<name>``: train mode with every dropout at 0;
* ``dropout.json`` data inside ``references.json``: for each dropout field, the outputs that change when
  that one rate is 0.5 (train mode) relative to all rates at 0 (official side).

Cases: MOSI aligned and unaligned (official lengths 50/375/500, small widths to keep the files small),
and MOSI aligned through the ``text_bert`` route with a tiny random BERT (2 layers, width 32) given to
both sides with identical weights.

Usage::

    PYTHONPATH=src python scripts/make_official_references.py --official-repo /path/to/DMD \\
        -o tests/data/official
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_official as co  # noqa: E402

from emodistill.models.dmd.model import MODS  # noqa: E402
from emodistill.models.dmd.official import convert_official_state_dict, official_spec  # noqa: E402
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS  # noqa: E402

SMALL = dict(d_model=8, num_heads=2)
"""Smaller-than-official widths (official args ``dst_feature_dim_nheads``). The GD-Unit widths stay
official (64 / 32), as ``compare_official.build_pair`` builds the official kernels with them."""
TEXT_DIM = 32
"""Text feature width (official: 768); also the tiny BERT's hidden size."""
BATCH = 4
SEED_WEIGHTS, SEED_BATCH, SEED_DROPOUT = 0, 1, 2
DROPOUT_RATE = 0.5  # DMDConfig accepts rates in [0, 1); any rate > 0 reveals the placement
TINY_BERT = dict(
    vocab_size=60,
    hidden_size=TEXT_DIM,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
CASES = {  # name: (setting, use_bert)
    "mosi_aligned": ("aligned", False),
    "mosi_unaligned": ("unaligned", False),
    "mosi_aligned_bert": ("aligned", True),
}


def patch_official_bert(off_dmd_cls) -> None:
    """Make the official ``BertTextEncoder`` build the tiny random BERT instead of downloading one."""
    import transformers

    glb = off_dmd_cls.__init__.__globals__["BertTextEncoder"].__init__.__globals__

    class TinyBert:
        @staticmethod
        def from_pretrained(_name):
            torch.manual_seed(SEED_WEIGHTS + 100)
            return transformers.BertModel(transformers.BertConfig(**TINY_BERT))

    class NoTokenizer:
        @staticmethod
        def from_pretrained(_name):
            return None

    glb["TRANSFORMERS_MAP"]["bert"] = (TinyBert, NoTokenizer)


def case_spec(setting: str, use_bert: bool):
    spec = official_spec("mosi", setting)
    spec.feature_dims["text"] = TEXT_DIM  # official args.feature_dims; 768 would dominate the file sizes
    return spec


def bert_tokens(bsz: int, t: int) -> torch.Tensor:
    """``(B, 3, T)`` rows: token ids, attention mask (padded tails), segment ids."""
    g = torch.Generator().manual_seed(SEED_BATCH + 10)
    ids = torch.randint(1, TINY_BERT["vocab_size"], (bsz, t), generator=g)
    lens = torch.tensor([t, t - 7, t // 2, 5][:bsz])
    mask = (torch.arange(t)[None] < lens[:, None]).float()
    seg = (torch.arange(t)[None] >= lens[:, None] // 2).long() * mask.long()
    return torch.stack([ids * mask.long(), mask, seg.float()], 1).float()


def eval_outputs(o: dict) -> dict[str, torch.Tensor]:
    """Official output dict -> arrays under our names (``s``/``c`` permuted to our ``(B, d, T')``)."""
    res = {"prediction": o["output_logit"], "logits_c": o["logits_c"]}
    for m in MODS:
        for k in (f"logits_{m}_homo", f"logits_{m}_hetero", f"repr_{m}_homo", f"repr_{m}_hetero"):
            res[k] = o[k]
        res[f"last_h_{m}"] = o[f"last_h_{m}"]
        res[f"c_sim_{m}"] = o[f"c_{m}_sim"]
        res[f"s_{m}"] = o[f"s_{m}"].permute(1, 2, 0)
        res[f"c_{m}"] = o[f"c_{m}"].permute(1, 2, 0)
        res[f"recon_{m}"] = o[f"recon_{m}"]
        res[f"s_r_{m}"] = o[f"s_{m}_r"]
    return {k: v.detach() for k, v in res.items()}


def run_case(off, setting: str, use_bert: bool, overrides: dict | None = None):
    """Official eval outputs, train losses/edges/grads (dropout 0), weights in our names and the config."""
    spec = case_spec(setting, use_bert)
    ov = {**SMALL, **(overrides or {})}
    models, ours, _ = co.build_pair(off, "mosi", setting, True, SEED_WEIGHTS, ov, spec, use_bert)
    model, homo, het = models
    batch = co.make_batch(spec, BATCH, SEED_BATCH)
    if use_bert:
        batch["text_bert"] = bert_tokens(BATCH, spec.seq_lens["text"])
        del batch["text"]
    text = batch["text_bert"] if use_bert else batch["text"]
    arrays = {f"w/{k}": v for k, v in ours.state_dict().items()}
    arrays.update({f"in/{k}": v for k, v in batch.items()})
    model.eval()
    with torch.no_grad():
        arrays.update({f"eval/{k}": v for k, v in eval_outputs(model(text, batch["audio"], batch["vision"])).items()})
    for mod in models:
        mod.train()
    out = model(text, batch["audio"], batch["vision"])
    total, terms, e_homo, e_het = co.official_losses(off, models, out, batch["labels"])
    total.backward()
    arrays["loss/loss"] = total.detach()
    arrays.update({f"loss/{k}": torch.as_tensor(v).detach() for k, v in terms.items()})
    arrays["edges/homo"], arrays["edges/hetero"] = e_homo.detach(), e_het.detach()
    zero = lambda named: {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in named}  # noqa: E731
    grads = convert_official_state_dict(
        zero(model.named_parameters()),
        spec,
        ours.config,
        gd_homo=zero(homo.named_parameters()),
        gd_hetero=zero(het.named_parameters()),
    )
    arrays.update({f"grad/{k}": v for k, v in grads.items()})
    cfg = dataclasses.asdict(ours.config)
    spec_d = dict(feature_dims=spec.feature_dims, seq_lens=spec.seq_lens, aligned=spec.aligned)
    return arrays, cfg, spec_d, models


def train_outputs(models, batch, use_bert: bool) -> dict[str, torch.Tensor]:
    model = models[0]
    text = batch["text_bert"] if use_bert else batch["text"]
    torch.manual_seed(SEED_DROPOUT)
    with torch.no_grad():
        return eval_outputs(model(text, batch["audio"], batch["vision"]))


def dropout_placement(off) -> dict[str, list[str]]:
    """Per dropout field: official outputs changed (train mode) by that rate alone at ``DROPOUT_RATE``."""
    spec = case_spec("aligned", False)
    batch = co.make_batch(spec, BATCH, SEED_BATCH)
    base = None
    res = {}
    for field in (None, *DROPOUT_FIELDS):
        ov = {**SMALL, **({field: DROPOUT_RATE} if field else {})}
        models, _, _ = co.build_pair(off, "mosi", "aligned", True, SEED_WEIGHTS, ov, spec)
        for mod in models:
            mod.train()
        out = train_outputs(models, batch, False)
        if field is None:
            base = out
            continue
        res[field] = sorted(k for k, v in out.items() if not torch.allclose(v, base[k], rtol=0, atol=1e-6))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-repo", type=Path, required=True, help="official DMD checkout (outside)")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "tests/data/official")
    args = ap.parse_args(argv)
    off = co.load_official(args.official_repo)
    patch_official_bert(off.DMD)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        commit = subprocess.run(
            ["git", "-C", str(args.official_repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    meta = dict(
        official_commit=commit or "516d4e116c22220e08873fa38df828d1a0d6f7e8 (given; checkout has no .git)",
        torch=torch.__version__,
        seeds=dict(weights=SEED_WEIGHTS, batch=SEED_BATCH, dropout=SEED_DROPOUT),
        batch_size=BATCH,
        command="PYTHONPATH=src .venv/bin/python scripts/make_official_references.py "
        "--official-repo /tmp/DMD -o tests/data/official",
        produced_by="scripts/make_official_references.py (official modules via benchmarks/compare_official.py)",
        tiny_bert=TINY_BERT,
        cases={},
    )
    for name, (setting, use_bert) in CASES.items():
        arrays, cfg, spec_d, _ = run_case(off, setting, use_bert)
        np.savez_compressed(args.out / f"{name}.npz", **{k: v.numpy() for k, v in arrays.items()})
        shapes = {k: list(v.shape) for k, v in arrays.items() if k.startswith(("in/", "eval/"))}
        meta["cases"][name] = dict(setting=setting, use_bert=use_bert, config=cfg, spec=spec_d, shapes=shapes)
        print(f"{name}: {len(arrays)} arrays, {(args.out / f'{name}.npz').stat().st_size / 1e6:.2f} MB")
    meta["dropout_rate"] = DROPOUT_RATE
    meta["dropout_changes"] = dropout_placement(off)
    (args.out / "references.json").write_text(json.dumps(meta, indent=1, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
