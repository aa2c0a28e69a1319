"""Check emodistill's DMD against the official implementation, and time both.

Imports the official modules from a checkout *outside* this project (never copied here), builds the
official DMD with its official config (BERT stubbed: ``use_bert=False``, 768-d text features), converts
its weights with :func:`emodistill.models.dmd.official.convert_official_state_dict` and compares:

* eval mode: max |diff| of ``output_logit`` and of every other head / representation / feature;
* train mode with every dropout at 0: total loss, each loss term, GD edges and all gradients
  (the official trainer's loss is rebuilt here from its modules; its ``L_ort`` call, which crashes on
  PyTorch >= 1.10, is evaluated with PyTorch 1.9's kernel semantics inside this script only);
* ``--speed``: samples/s of a training step (forward, losses, backward, clip 0.6, Adam) at batch 16 and
  2 threads, official (with and without its margin loop and L_ort) vs ours, and 1-clip eval latency
  (ours also with the transformers' folded weights kept across clips, as the Predictor runs).

Usage::

    PYTHONPATH=src python benchmarks/compare_official.py --official-repo /path/to/DMD \\
        --dataset mosi --setting aligned [--speed]

The official code calls ``.cuda()``; it is monkeypatched to the identity (CPU run) for this process.

Gradient differences are float32 rounding: on MOSI unaligned (sequences of 371 and 496 steps) the
official float32 gradients differ from a float64 evaluation of the same math by ~1e-4 relative at worst
(ours by ~5e-5), which is the size of the official-vs-ours difference there.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

from emodistill.models import create_model
from emodistill.models.dmd.model import MODS
from emodistill.models.dmd.official import (
    bert_config_from_state_dict,
    convert_official_state_dict,
    official_config,
    official_spec,
)
from emodistill.models.layers.grouped_transformer import DROPOUT_FIELDS

_DROPOUTS = DROPOUT_FIELDS


class _Args(dict):
    """Attribute-and-item access, as the official ``config.py`` provides."""

    __getattr__ = dict.__getitem__


def load_official(repo: Path):
    """Import the official model, GD kernels and loss modules from ``repo`` (outside the project)."""
    repo = repo.resolve()
    project = Path(__file__).resolve().parents[1]
    if repo == project or project in repo.parents:
        raise SystemExit(f"--official-repo {repo} lies inside this project; use a checkout outside it")
    if not (repo / "trains/singleTask/model/dmd.py").is_file():
        raise SystemExit(f"{repo}: not an official DMD checkout (trains/singleTask/model/dmd.py missing)")
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official code hard-codes .cuda()
    sys.modules.setdefault("pynvml", types.ModuleType("pynvml"))  # GPU query lib imported, unused on CPU
    sys.path.insert(0, str(repo))
    from trains.singleTask.distillnets import get_distillation_kernel as het_mod
    from trains.singleTask.distillnets import get_distillation_kernel_homo as homo_mod
    from trains.singleTask.DMD import MSE
    from trains.singleTask.HingeLoss import HingeLoss
    from trains.singleTask.misc import softmax
    from trains.singleTask.model import dmd as dmd_mod

    return types.SimpleNamespace(
        DMD=dmd_mod.DMD,
        Homo=homo_mod.DistillationKernel,
        Het=het_mod.DistillationKernel,
        MSE=MSE,
        HingeLoss=HingeLoss,
        softmax=softmax,
    )


def official_args(dataset: str, setting: str, cfg: dict, spec=None, use_bert: bool = False) -> _Args:
    """The official ``args`` for DMD from our (official-valued) config; ``spec`` overrides the feature dims."""
    spec = spec or official_spec(dataset, setting)
    return _Args(
        use_bert=use_bert,
        use_finetune=True,
        transformers="bert",
        pretrained="(patched: see make_official_references.py)",
        dataset_name=dataset,
        need_data_aligned=setting == "aligned",
        feature_dims=(spec.feature_dims["text"], spec.feature_dims["audio"], spec.feature_dims["vision"]),
        dst_feature_dim_nheads=[cfg["d_model"], cfg["num_heads"]],
        nlevels=cfg["nlevels"],
        conv1d_kernel_size_l=cfg["kernel_l"],
        conv1d_kernel_size_a=cfg["kernel_a"],
        conv1d_kernel_size_v=cfg["kernel_v"],
        attn_mask=cfg["attn_mask"],
        **{k: cfg[k] for k in _DROPOUTS},
    )


def build_pair(
    off,
    dataset: str,
    setting: str,
    zero_dropout: bool,
    seed: int = 0,
    overrides: dict | None = None,
    spec=None,
    use_bert: bool = False,
):
    """Official (model, homo, hetero) and ours with identical weights.

    ``overrides`` replaces official hyper-parameters (applied after ``zero_dropout``), ``spec`` the
    official DatasetSpec (e.g. a text width matching a small BERT), ``use_bert`` builds the official
    ``BertTextEncoder`` (whose ``from_pretrained`` the caller must have patched) and ours from its config.
    """
    cfg = official_config(dataset)
    if zero_dropout:
        cfg.update({k: 0.0 for k in _DROPOUTS})
    cfg.update(overrides or {})
    spec = spec or official_spec(dataset, setting)
    torch.manual_seed(seed)
    args = official_args(dataset, setting, cfg, spec, use_bert)
    model = off.DMD(args)
    d = cfg["d_model"]
    homo = off.Homo(
        1, d, 64, [0, 1, 2], [0, 1, 2], off.softmax([0, 0, 1, 0, 1, 0], 0.25), 10, [1, 10], "l1", 1 / 8, args
    )
    het = off.Het(
        1,
        2 * d,
        32,
        [0, 1, 2],
        [0, 1, 2],
        off.softmax([0, 0, 1, 0, 1, 1], 0.25),
        10,
        [1, 10],
        "l1",
        1 / 8,
        args,
    )
    with torch.no_grad():  # non-trivial LayerNorm affines, so that their mapping is exercised
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    if use_bert:
        cfg["text_encoder_config"] = bert_config_from_state_dict(model.state_dict())
        cfg["text_encoder_config"].update(
            {k: getattr(model.text_model.model.config, k) for k in cfg["text_encoder_config"]}
        )
    ours = create_model("dmd", spec, **cfg)
    sd = convert_official_state_dict(
        model.state_dict(), spec, ours.config, gd_homo=homo.state_dict(), gd_hetero=het.state_dict()
    )
    ours.load_state_dict(sd, strict=True)
    return (model, homo, het), ours, spec


def make_batch(spec, bsz: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs with zero-padded tails (exercising the PE padding rule) and tied labels."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        k: torch.randn(bsz, spec.seq_lens[k], spec.feature_dims[k], generator=g)
        for k in ("text", "audio", "vision")
    }
    for k in ("audio", "vision"):
        t = spec.seq_lens[k]
        batch[k][: bsz // 2, t - t // 5 :] = 0.0  # padded frames in half the clips
    batch["labels"] = (torch.randn(bsz, generator=g) * 1.5).round() / 2  # many exact ties
    return batch


def official_losses(off, models, out, labels, margin_ort: bool = True):
    """The official trainer's combined loss (trains/singleTask/DMD.py) with L_ort in torch-1.9 semantics.

    ``margin_ort=False`` leaves out the margin loss (a Python loop over anchors) and L_ort, for timing.
    """
    model, homo, het = models
    y = labels.view(-1, 1)
    l1, mse = torch.nn.L1Loss(), off.MSE()
    stack = lambda key: torch.stack([out[f"{key.format(m)}"] for m in MODS])  # noqa: E731
    lh, rh = stack("logits_{}_homo"), stack("repr_{}_homo")
    lt, rt = stack("logits_{}_hetero"), stack("repr_{}_hetero")
    e_homo, _ = homo(lh, rh)
    e_het, _ = het(lt, rt)
    task = sum(
        l1(out[k], y)
        for k in ["output_logit", "logits_c"] + [f"logits_{m}_{b}" for m in MODS for b in ("homo", "hetero")]
    )
    rec = sum(mse(out[f"recon_{m}"], out[f"origin_{m}"]) for m in MODS)
    cyc = sum(mse(out[f"s_{m}"].permute(1, 2, 0), out[f"s_{m}_r"]) for m in MODS)

    def cel_torch19(a, b):  # ATen cosine_embedding_loss of PyTorch 1.9: sums over dim 1 for any rank
        cos = (a * b).sum(1) / ((a * a).sum(1) + 1e-12).mul((b * b).sum(1) + 1e-12).sqrt()
        return cos.clamp_min(0).mean()

    ort = mar = torch.zeros(())
    if margin_ort:
        ort = sum(cel_torch19(out[f"s_{m}"], out[f"c_{m}"]) for m in MODS)
        feats, ids = [], []
        for i in range(y.size(0)):
            for m in MODS:
                feats.append(out[f"c_{m}_sim"][i].view(1, -1))
                ids.append(y[i].view(1, -1))
        mar = off.HingeLoss()(torch.cat(ids), torch.cat(feats))
    reg_h, log_h, rep_h = homo.distillation_loss(lh, rh, e_homo)
    reg_t, log_t, rep_t = het.distillation_loss(lt, rt, e_het)
    total = (
        task + 0.05 * (log_h + reg_h) + 0.05 * (log_t + rep_t + reg_t) + (cyc + rec + (mar + ort) * 0.1) * 0.1
    )
    terms = dict(
        task=task,
        rec=rec,
        cyc=cyc,
        ort=ort,
        mar=mar,
        homo_reg=reg_h,
        homo_logit=log_h,
        homo_repr=rep_h,
        hetero_reg=reg_t,
        hetero_logit=log_t,
        hetero_repr=rep_t,
    )
    return total, terms, e_homo.t(), e_het.t()


def _diff(a, b) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def compare(off, dataset: str, setting: str, bsz: int = 8) -> dict[str, float]:
    """Eval-mode outputs and train-mode (dropout 0) losses, edges and gradients: max |diff| per item."""
    res: dict[str, float] = {}
    (model, homo, het), ours, spec = build_pair(off, dataset, setting, zero_dropout=False)
    batch = make_batch(spec, bsz)
    model.eval()
    ours.eval()
    with torch.no_grad():
        o = model(batch["text"], batch["audio"], batch["vision"])
        u = ours(batch)
    res["eval/prediction"] = _diff(o["output_logit"], u.prediction)
    res["eval/logits_c"] = _diff(o["logits_c"], u.logits_c)
    for i, m in enumerate(MODS):
        res[f"eval/logits_{m}_homo"] = _diff(o[f"logits_{m}_homo"], u.logits_homo[i])
        res[f"eval/logits_{m}_hetero"] = _diff(o[f"logits_{m}_hetero"], u.logits_hetero[i])
        res[f"eval/repr_{m}_homo"] = _diff(o[f"repr_{m}_homo"], u.reprs_homo[i])
        res[f"eval/repr_{m}_hetero"] = _diff(o[f"repr_{m}_hetero"], u.reprs_hetero[i])
        res[f"eval/last_h_{m}"] = _diff(o[f"last_h_{m}"], u.last_h[m])
        res[f"eval/c_{m}_sim"] = _diff(o[f"c_{m}_sim"], u.c_sim[m])
        res[f"eval/s_{m}"] = _diff(o[f"s_{m}"].permute(1, 2, 0), u.s[m])
        res[f"eval/c_{m}"] = _diff(o[f"c_{m}"].permute(1, 2, 0), u.c[m])
        res[f"eval/recon_{m}"] = _diff(o[f"recon_{m}"], u.recon[m])
        res[f"eval/s_{m}_r"] = _diff(o[f"s_{m}_r"], u.s_r[m])

    (model, homo, het), ours, spec = build_pair(off, dataset, setting, zero_dropout=True)
    for mod in (model, homo, het, ours):
        mod.train()
    out = model(batch["text"], batch["audio"], batch["vision"])
    total, terms, e_homo, e_het = official_losses(off, (model, homo, het), out, batch["labels"])
    total.backward()
    u = ours(batch)
    mine = ours.compute_losses(u, batch["labels"])
    mine["loss"].backward()
    res["train/loss"] = _diff(total, mine["loss"])
    for k, v in terms.items():
        res[f"train/{k}"] = _diff(torch.as_tensor(v), mine[k])
    res["train/edges_homo"] = _diff(e_homo, u.edges_homo)
    res["train/edges_hetero"] = _diff(e_het, u.edges_hetero)
    grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in model.named_parameters()}
    off_grads = convert_official_state_dict(
        grads,
        spec,
        ours.config,
        gd_homo={k: p.grad for k, p in homo.named_parameters()},
        gd_hetero={k: p.grad for k, p in het.named_parameters()},
    )
    ours_grads = {
        k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in ours.named_parameters()
    }
    scale = max(float(g.abs().max()) for g in off_grads.values())
    worst, worst_rel, worst_name = 0.0, 0.0, ""
    for k, g in ours_grads.items():
        d = _diff(off_grads[k], g)
        worst = max(worst, d)
        g_max = float(off_grads[k].abs().max())
        # relative to the tensor's own gradient size; skip tensors whose gradient is ~0 by construction
        # (e.g. key biases: softmax ignores a per-row constant) where only rounding noise is left
        if g_max >= 1e-3 * scale and d / g_max > worst_rel:
            worst_rel, worst_name = d / g_max, k
    res["train/grad_max_abs_diff"] = worst
    res["train/grad_max_rel_diff"] = worst_rel
    res["train/grad_max_abs"] = scale
    print(f"(largest relative gradient difference: {worst_name}; float32 rounding, see the module docstring)")
    return res


def _best_times(fns: dict, reps: int) -> dict[str, float]:
    """Best wall time (s) of each callable over ``reps`` rounds, interleaved so that load changes on a
    shared machine hit every variant alike (the minimum is the least noisy statistic)."""
    for fn in fns.values():  # warm-up
        fn()
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def speed(
    off, dataset: str, setting: str, bsz: int = 16, reps: int = 8, threads: int = 2
) -> dict[str, float]:
    """Training-step throughput (samples/s) and 1-clip eval latency (ms), official vs ours."""
    torch.set_num_threads(threads)
    (model, homo, het), ours, spec = build_pair(off, dataset, setting, zero_dropout=False)
    batch = make_batch(spec, bsz)
    params = [*model.parameters(), *homo.parameters(), *het.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    opt2 = torch.optim.Adam(ours.parameters(), lr=1e-4)

    def off_step(full: bool):
        def step():
            opt.zero_grad()
            out = model(batch["text"], batch["audio"], batch["vision"])
            total, *_ = official_losses(off, (model, homo, het), out, batch["labels"], margin_ort=full)
            total.backward()
            torch.nn.utils.clip_grad_value_(params, 0.6)
            opt.step()

        return step

    def our_step():
        opt2.zero_grad()
        loss = ours.compute_losses(ours(batch), batch["labels"])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_value_(ours.parameters(), 0.6)
        opt2.step()

    for mod in (model, homo, het, ours):
        mod.train()
    t = _best_times(
        {"official_full": off_step(True), "official_no_margin_ort": off_step(False), "ours": our_step}, reps
    )
    res = {f"{k}_samples_per_s": bsz / v for k, v in t.items()}
    one = {k: v[:1] for k, v in batch.items()}
    model.eval()
    ours.eval()
    folds: dict = {}  # kept across calls, as emodistill's Predictor keeps it

    def predict_kept_folds():
        with ours.inference_cache(folds):
            return ours.predict(one)

    with torch.no_grad():
        t = _best_times(
            {
                "official_1clip_ms": lambda: model(one["text"], one["audio"], one["vision"]),
                "ours_1clip_forward_ms": lambda: ours(one),  # every output
                "ours_1clip_predict_ms": lambda: ours.predict(one),  # the prediction only
                "ours_1clip_predict_kept_folds_ms": predict_kept_folds,
            },
            30,
        )
    res.update({k: 1e3 * v for k, v in t.items()})
    res["speedup_train"] = res["ours_samples_per_s"] / res["official_full_samples_per_s"]
    res["speedup_1clip_predict"] = res["official_1clip_ms"] / res["ours_1clip_predict_ms"]
    res["speedup_1clip_predict_kept_folds"] = res["official_1clip_ms"] / res["ours_1clip_predict_kept_folds_ms"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--official-repo", type=Path, required=True, help="official DMD checkout (outside this project)"
    )
    ap.add_argument("--dataset", choices=("mosi", "mosei"), default="mosi")
    ap.add_argument("--setting", choices=("aligned", "unaligned"), default="aligned")
    ap.add_argument("--batch-size", type=int, default=8, help="batch of the equivalence check")
    ap.add_argument("--speed", action="store_true", help="also time training steps and 1-clip inference")
    ap.add_argument("--speed-only", action="store_true", help="skip the equivalence check")
    ap.add_argument("--reps", type=int, default=8, help="timed rounds per variant (the best one counts)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads for the timing")
    ap.add_argument("--tol", type=float, default=1e-5, help="max |diff| allowed for the eval prediction")
    args = ap.parse_args(argv)
    off = load_official(args.official_repo)
    ok = True
    if not args.speed_only:
        print(f"# {args.dataset} {args.setting}: max |official - ours|")
        res = compare(off, args.dataset, args.setting, args.batch_size)
        for k, v in res.items():
            print(f"{k:32s} {v:.3e}")
        ok = res["eval/prediction"] <= args.tol
        print(
            "PASS" if ok else "FAIL", f"(eval prediction diff {res['eval/prediction']:.3e}, tol {args.tol:g})"
        )
    if args.speed or args.speed_only:
        print(
            f"# speed ({args.dataset} {args.setting}, batch 16, {args.threads} threads, best of {args.reps})"
        )
        for k, v in speed(off, args.dataset, args.setting, reps=args.reps, threads=args.threads).items():
            print(f"{k:40s} {v:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
