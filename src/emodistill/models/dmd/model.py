"""DMD: Decoupled Multimodal Distilling for emotion recognition (Li, Wang, Cui; CVPR 2023).

A re-implementation that computes what the official code (github.com/mdswyz/DMD) computes: on identical
weights and inputs it gives the same outputs, losses and gradients to float32 rounding
(``benchmarks/compare_official.py`` measures this). The forward pass (docs/dmd-spec.md §3):

1. temporal Conv1d projections (no bias, no padding) to width ``d``: ``proj_x_m (B, d, T'_m)``;
2. decoupling: private encoders ``s_m`` (one per modality), one shared encoder ``c_m``; a decoder per
   modality reconstructs ``proj_x_m`` from ``[s_m, c_m]`` and the private encoder re-encodes it (``s_r``);
3. HomoGD branch: FC heads on the time-major flattened shared features (post-ReLU representation);
4. self-attention encoders on ``c_m`` and a head on their last steps (``logits_c``);
5. HeteroGD branch: six MulT crossmodal encoders on the private features, three mem encoders, heads;
6. fusion: sigmoid(Linear) replacements of the mem outputs and ``c_fusion``, a residual MLP, the output;
7. the two GD-Units score the 6 directed edges per sample.

The twelve transformer encoders run as three :class:`GroupedMulTEncoder` families (stacked weights,
batched matmuls when the modalities' ``T'`` agree). The official ``proj_cosine_*`` layers are omitted:
their outputs (``proj_s_*``) enter no loss, so they never get gradients and change nothing.

Modality order inside DMD is ``l, v, a`` (text, vision, audio), as in the official GD code.
:meth:`DMD.predict` computes only the fused prediction (no decoder, side heads or GD-Units).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.dmd import losses as L
from emodistill.models.dmd.config import DMDConfig
from emodistill.models.dmd.gd_unit import GDUnit
from emodistill.models.layers.grouped_config import FoldedInferenceCache
from emodistill.models.layers.grouped_transformer import GroupedMulTEncoder, fast_dropout
from emodistill.models.layers.text_encoder import build_text_encoder
from emodistill.models.registry import register_model
from emodistill.spec import LONG_NAMES, SHORT_NAMES, DatasetSpec

MODS = (SHORT_NAMES["text"], SHORT_NAMES["vision"], SHORT_NAMES["audio"])
"""DMD's modality order ``l, v, a`` (GD index 0 = l, 1 = v, 2 = a); batch / spec keys: ``LONG_NAMES[m]``."""
CROSS_PAIRS = (("l", "a"), ("l", "v"), ("v", "l"), ("v", "a"), ("a", "l"), ("a", "v"))
"""Crossmodal encoder members as (target/query, source/key-value), grouped by target so that members
``2t`` and ``2t + 1`` feed target ``t``'s mem encoder (concatenated in this order, as official)."""


@dataclass
class DMDOutput(ModelOutput):
    """Everything DMD's losses and plots read. ``B`` batch, ``d`` width, ``T'_m`` projected length.

    Per-modality dicts are keyed ``"l"``, ``"v"``, ``"a"``; stacked tensors follow that order.
    """

    prediction: Tensor
    """``(B, 1)`` fused output (official ``output_logit``)."""
    logits_homo: Tensor
    """``(3, B, 1)`` HomoGD heads."""
    logits_hetero: Tensor
    """``(3, B, 1)`` HeteroGD heads."""
    reprs_homo: Tensor
    """``(3, B, d)`` post-ReLU ``proj1_*_low`` outputs."""
    reprs_hetero: Tensor
    """``(3, B, 2d)`` residual hetero-head outputs."""
    logits_c: Tensor
    """``(B, 1)`` head on the shared-feature self-attention outputs."""
    proj_x: dict[str, Tensor]
    """``(B, d, T'_m)`` temporal projections (reconstruction targets, not detached)."""
    recon: dict[str, Tensor]
    """``(B, d, T'_m)`` decoder outputs."""
    s: dict[str, Tensor]
    """``(B, d, T'_m)`` private features (channel-first; the official returns them time-first)."""
    s_r: dict[str, Tensor]
    """``(B, d, T'_m)`` private re-encodings of ``recon``."""
    c: dict[str, Tensor]
    """``(B, d, T'_m)`` shared features (channel-first)."""
    c_sim: dict[str, Tensor]
    """``(B, d)`` margin-loss embeddings (channel-major flatten of ``c``)."""
    last_h: dict[str, Tensor]
    """``(B, 2d)`` last step of each mem encoder (pre-sigmoid)."""
    edges_homo: Tensor
    """``(B, 6)`` HomoGD edges, order V->L, A->L, L->V, A->V, L->A, V->A."""
    edges_hetero: Tensor
    """``(B, 6)`` HeteroGD edges, same order."""
    activations: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    """DHMD only: ``{space: {m: (B, K)}}`` dictionary activations; empty for DMD."""
    dictionary_aux: dict[str, dict[str, dict[str, Tensor]]] = field(default_factory=dict)
    """DHMD only: ``{space: {"scores": {m: (B, K)}[, "commit": {m: (B, 2)}]}}``, the time-pooled scores and
    (training mode) the commitment distances, what the fine ``soft`` distance and the anti-collapse terms read."""


def _mdict(make) -> nn.ModuleDict:
    return nn.ModuleDict({m: make(m) for m in MODS})


class DMD(FoldedInferenceCache, MERModel):
    """DMD model; see the module docstring. Build it with ``create_model("dmd", spec, **cfg)``."""

    fixed_seq_lens = True
    """The HomoGD heads flatten ``T' x d``: data must have the sequence lengths the model was built for."""

    def length_bound(self, heads: bool = True) -> bool:
        """Only the HomoGD heads (and the edges they feed) are bound to the trained lengths; the prediction
        reads none of them."""
        return heads

    name = "dmd"

    def __init__(self, spec: DatasetSpec, config: DMDConfig) -> None:
        super().__init__(spec, config)
        cfg = config
        d = self.d = cfg.d_model
        self.text_model = build_text_encoder(cfg, spec, "DMD")
        dims = {m: spec.feature_dims[LONG_NAMES[m]] for m in MODS}
        if self.text_model is not None:
            dims["l"] = self.text_model.hidden_size
        kernels = {"l": cfg.kernel_l, "v": cfg.kernel_v, "a": cfg.kernel_a}
        # The official code skips the projection when the input width already equals d (then T' = T).
        self.skip_proj = {m: dims[m] == d for m in MODS}
        self.in_dims, self.seq_lens = dims, {m: spec.seq_lens[LONG_NAMES[m]] for m in MODS}
        self.t_out = {m: self.seq_lens[m] - (0 if self.skip_proj[m] else kernels[m] - 1) for m in MODS}
        for m in MODS:
            if self.t_out[m] < 1:
                raise ValueError(
                    f"{LONG_NAMES[m]}: sequence length {self.seq_lens[m]} is shorter than "
                    f"kernel_{m}={kernels[m]}"
                )
        t_out = self.t_out

        self.proj = _mdict(lambda m: nn.Conv1d(dims[m], d, kernels[m], padding=0, bias=False))
        self.encoder_s = _mdict(lambda m: nn.Conv1d(d, d, 1, bias=False))
        self.encoder_c = nn.Conv1d(d, d, 1, bias=False)
        self.decoder = _mdict(lambda m: nn.Conv1d(2 * d, d, 1, bias=False))
        self.align_c = _mdict(lambda m: nn.Linear(d * t_out[m], d))

        # self-attention member m attends to modality m; its attention dropout is that modality's
        self.self_attn_c = GroupedMulTEncoder(3, d, cfg.num_heads, cfg.nlevels, **cfg.encoder_kwargs(MODS))
        self.c_proj1 = nn.Linear(3 * d, 3 * d)
        self.c_proj2 = nn.Linear(3 * d, 3 * d)
        self.c_out = nn.Linear(3 * d, 1)
        # crossmodal attention dropout follows the source modality (official get_network)
        self.crossmodal = GroupedMulTEncoder(
            6, d, cfg.num_heads, cfg.nlevels, **cfg.encoder_kwargs([src for _, src in CROSS_PAIRS])
        )
        # the mem encoders all use attn_dropout, the text rate (official get_network)
        self.mem = GroupedMulTEncoder(3, 2 * d, cfg.num_heads, cfg.mem_layers, **cfg.encoder_kwargs(["l"] * 3))

        self.homo_proj1 = _mdict(lambda m: nn.Linear(d * t_out[m], d))
        self.homo_proj2 = _mdict(lambda m: nn.Linear(d, d * t_out[m]))
        self.homo_out = _mdict(lambda m: nn.Linear(d * t_out[m], 1))
        self.hetero_proj1 = _mdict(lambda m: nn.Linear(2 * d, 2 * d))
        self.hetero_proj2 = _mdict(lambda m: nn.Linear(2 * d, 2 * d))
        self.hetero_out = _mdict(lambda m: nn.Linear(2 * d, 1))

        self.fuse_in = _mdict(lambda m: nn.Linear(2 * d, 2 * d))
        self.fuse_in_c = nn.Linear(3 * d, 3 * d)
        self.fusion_proj1 = nn.Linear(9 * d, 9 * d)
        self.fusion_proj2 = nn.Linear(9 * d, 9 * d)
        self.fusion_out = nn.Linear(9 * d, 1)

        self.gd_homo = GDUnit(d, cfg.gd_size_homo, cfg.prior_homo, cfg.gd_alpha)
        self.gd_hetero = GDUnit(2 * d, cfg.gd_size_hetero, cfg.prior_hetero, cfg.gd_alpha)

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, batch: dict[str, Tensor], lengths: bool = True) -> None:
        keys = {m: "text_bert" if m == "l" and self.text_model is not None else LONG_NAMES[m] for m in MODS}
        for m in MODS:
            key = keys[m]
            if key not in batch:
                raise KeyError(f"DMD batch lacks {key!r} (has {sorted(batch)})")
            x = batch[key]
            if key == "text_bert":
                want = (3, self.seq_lens[m])
            else:
                want = (self.seq_lens[m], self.in_dims[m])
            if not lengths:  # the prediction path reads any length; only the feature width must match
                want = (3, x.shape[2]) if key == "text_bert" else (x.shape[1], self.in_dims[m])
            if x.dim() != 3 or tuple(x.shape[1:]) != want:
                raise ValueError(
                    f"DMD batch[{key!r}]: expected shape (B, {want[0]}, {want[1]}), found {tuple(x.shape)}"
                )

    def _features(
        self, batch: dict[str, Tensor], check_lengths: bool = True
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Temporal projections, private and shared features, each ``(B, d, T'_m)`` per modality."""
        if not torch.compiler.is_exporting():  # an exported graph has symbolic shapes; ONNX checks its inputs
            self._check_inputs(batch, check_lengths)
        text = self.text_model(batch["text_bert"]) if self.text_model is not None else batch["text"]
        x = {
            "l": fast_dropout(text.transpose(1, 2), self.config.text_dropout, self.training),  # (B, D_l, T_l)
            "v": batch["vision"].transpose(1, 2),  # (B, D_v, T_v)
            "a": batch["audio"].transpose(1, 2),  # (B, D_a, T_a)
        }
        proj_x = {m: x[m] if self.skip_proj[m] else self.proj[m](x[m]) for m in MODS}  # (B, d, T'_m)
        if not self.config.decouple:  # ablation: both spaces see the undecoupled features
            return proj_x, dict(proj_x), dict(proj_x)
        s = {m: self.encoder_s[m](proj_x[m]) for m in MODS}  # (B, d, T'_m)
        c = {m: self.encoder_c(proj_x[m]) for m in MODS}  # (B, d, T'_m), shared weights
        return proj_x, s, c

    def _c_fusion(self, c: dict[str, Tensor], dict_homo: tuple[dict, dict, dict] | None = None) -> Tensor:
        """Last steps of the shared-feature self-attention encoders, concatenated: ``(B, 3d)`` (plus the
        homo dictionary features, DHMD)."""
        c_att = self.self_attn_c([c[m].transpose(1, 2) for m in MODS], last_only=True)  # 3 x (B, d)
        return torch.cat(list(self._with_dict(dict(zip(MODS, c_att, strict=True)), dict_homo).values()), dim=1)

    @staticmethod
    def _with_dict(x: dict[str, Tensor], dictionary: tuple[dict, dict, dict] | None) -> dict[str, Tensor]:
        """``x[m] + features[m]`` per modality when a dictionary is present, else ``x`` unchanged."""
        return x if dictionary is None else {m: x[m] + dictionary[0][m] for m in MODS}

    def _crossmodal(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        """Crossmodal encoders (query = target, key/value = source), both sources of each target
        concatenated: the hetero-space token sequences ``(B, T'_m, 2d)`` that the mem encoders read."""
        s_seq = {m: s[m].transpose(1, 2) for m in MODS}  # (B, T'_m, d)
        h = self.crossmodal([s_seq[t] for t, _ in CROSS_PAIRS], [s_seq[src] for _, src in CROSS_PAIRS])
        return {m: torch.cat([h[2 * i], h[2 * i + 1]], dim=-1) for i, m in enumerate(MODS)}

    def _last_h(self, mem_in: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mem encoders on the hetero-space tokens: last steps ``(B, 2d)``."""
        return dict(zip(MODS, self.mem([mem_in[m] for m in MODS], last_only=True), strict=True))

    def _hetero_branch(self, s: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[dict, dict, dict] | None]:
        """Crossmodal and mem encoders on the private features: last steps ``(B, 2d)`` per modality (plus the
        hetero dictionary features, DHMD), and the hetero dictionary's output."""
        mem_in = self._crossmodal(s)
        dict_het = self._dictionary("hetero", mem_in)
        return self._with_dict(self._last_h(mem_in), dict_het), dict_het

    def _dictionary(self, space: str, tokens: dict[str, Tensor]) -> tuple[dict, dict, dict] | None:
        """Dictionary features and activations of one decoupled space (DHMD's hook; DMD has none).

        Args:
            space: ``"homo"`` or ``"hetero"``.
            tokens: per modality, the space's token sequence ``(B, T'_m, width)``.

        Returns:
            None, or ``(features, activations, aux)``: per modality ``(B, width)``, ``(B, K)``, and the
            extras of :meth:`~emodistill.models.dmd.dictionary.DictionarySpace.forward` (pooled scores;
            commitment distances in training mode).
        """
        return None

    def _fuse(self, last_h: dict[str, Tensor], c_fusion: Tensor) -> Tensor:
        """Fusion head: sigmoid(Linear) *replaces* each feature, then a residual MLP; ``(B, 1)``."""
        z = torch.cat(
            [torch.sigmoid(self.fuse_in[m](last_h[m])) for m in MODS]
            + [torch.sigmoid(self.fuse_in_c(c_fusion))],
            dim=1,
        )  # (B, 9d)
        p = self.config.output_dropout
        z_proj = self.fusion_proj2(fast_dropout(torch.relu(self.fusion_proj1(z)), p, self.training)) + z
        return self.fusion_out(z_proj)

    def _homo_heads(self, c: dict[str, Tensor], dict_homo: tuple | None) -> tuple[Tensor, Tensor]:
        """HomoGD heads on the time-major flattened shared features: logits ``(3, B, 1)`` and post-ReLU
        representations ``(3, B, d)`` (plus the homo dictionary features, DHMD)."""
        p, tr = self.config.output_dropout, self.training
        logits, reprs = [], []
        for m in MODS:
            hs = c[m].transpose(1, 2).flatten(1)  # (B, T'*d), index t*d + k
            rep = torch.relu(self.homo_proj1[m](hs))  # (B, d); official returns it post-ReLU (in-place)
            if dict_homo is not None:  # DHMD: the dictionary feature joins the head's representation
                rep = rep + dict_homo[0][m]
            hs_proj = self.homo_proj2[m](fast_dropout(rep, p, tr)) + hs
            logits.append(self.homo_out[m](hs_proj))
            reprs.append(rep)
        return torch.stack(logits), torch.stack(reprs)

    def _hetero_heads(self, last_h: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """HeteroGD heads: logits ``(3, B, 1)`` and the residual representations ``(3, B, 2d)``."""
        p, tr = self.config.output_dropout, self.training
        logits, reprs = [], []
        for m in MODS:
            hidden = fast_dropout(torch.relu(self.hetero_proj1[m](last_h[m])), p, tr)
            rep = self.hetero_proj2[m](hidden) + last_h[m]
            logits.append(self.hetero_out[m](rep))
            reprs.append(rep)
        return torch.stack(logits), torch.stack(reprs)

    @torch.no_grad()
    def inference_outputs(self, batch: dict[str, Tensor], heads: bool = True) -> dict[str, Tensor]:
        """What ``predict`` reports, computing nothing else (no decoder, no ``logits_c``, no margin
        embeddings); see :meth:`MERModel.inference_outputs`. Equal to the matching fields of ``forward`` in
        eval mode. ``heads=False`` gives the prediction alone, which reads no length-bound layer."""
        _, s, c = self._features(batch, check_lengths=heads)
        dict_homo = self._dictionary("homo", {m: c[m].transpose(1, 2) for m in MODS})
        last_h, _ = self._hetero_branch(s)
        out = {"prediction": self._fuse(last_h, self._c_fusion(c, dict_homo)).view(-1)}
        if heads:
            logits_homo, reprs_homo = self._homo_heads(c, dict_homo)
            logits_het, reprs_het = self._hetero_heads(last_h)
            out["heads/homo"] = logits_homo.squeeze(-1).t()  # (3, B, 1) -> (B, 3), order l, v, a
            out["heads/hetero"] = logits_het.squeeze(-1).t()
            out["edges/homo"] = self.gd_homo(logits_homo, reprs_homo)  # (B, 6)
            out["edges/hetero"] = self.gd_hetero(logits_het, reprs_het)
        return out

    def forward(self, batch: dict[str, Tensor]) -> DMDOutput:
        """Run DMD on a batch (``text`` or ``text_bert``, ``audio``, ``vision``); see :class:`DMDOutput`."""
        p, tr = self.config.output_dropout, self.training
        proj_x, s, c = self._features(batch)
        bsz = proj_x["l"].shape[0]
        dict_homo = self._dictionary("homo", {m: c[m].transpose(1, 2) for m in MODS})
        c_sim = {m: self.align_c[m](c[m].reshape(bsz, -1)) for m in MODS}  # channel-major flatten -> (B, d)
        recon = {m: self.decoder[m](torch.cat([s[m], c[m]], dim=1)) for m in MODS}  # (B, d, T'_m)
        s_r = {m: self.encoder_s[m](recon[m]) for m in MODS}

        logits_homo_t, reprs_homo_t = self._homo_heads(c, dict_homo)

        c_fusion = self._c_fusion(c, dict_homo)  # (B, 3d)
        c_proj = self.c_proj2(fast_dropout(torch.relu(self.c_proj1(c_fusion)), p, tr)) + c_fusion
        logits_c = self.c_out(c_proj)

        last_h, dict_het = self._hetero_branch(s)
        logits_het_t, reprs_het_t = self._hetero_heads(last_h)
        prediction = self._fuse(last_h, c_fusion)  # (B, 1)
        return DMDOutput(
            prediction=prediction,
            logits_homo=logits_homo_t,
            logits_hetero=logits_het_t,
            reprs_homo=reprs_homo_t,
            reprs_hetero=reprs_het_t,
            logits_c=logits_c,
            proj_x=proj_x,
            recon=recon,
            s=s,
            s_r=s_r,
            c=c,
            c_sim=c_sim,
            last_h=last_h,
            edges_homo=self.gd_homo(logits_homo_t, reprs_homo_t),
            edges_hetero=self.gd_hetero(logits_het_t, reprs_het_t),
            activations={
                space: d[1] for space, d in (("homo", dict_homo), ("hetero", dict_het)) if d is not None
            },
            dictionary_aux={
                space: d[2] for space, d in (("homo", dict_homo), ("hetero", dict_het)) if d is not None and d[2]
            },
        )

    @torch.no_grad()
    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores ``(B,)`` computing only what the fused output needs (no decoder, side heads or GD-Units).

        Equal to ``forward(batch).prediction`` in eval mode (the caller sets ``eval()``).
        """
        return self.inference_outputs(batch, heads=False)["prediction"]

    @torch.no_grad()
    def interpret(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """GD edges and time-pooled decoupled features (shared ``c`` = homo, private ``s`` = hetero);
        see :meth:`MERModel.interpret`."""
        return self.predict_and_interpret(batch)[1]

    @torch.no_grad()
    def predict_and_interpret(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Scores ``(B,)`` and :meth:`interpret`'s quantities from one full forward pass."""
        out = self(batch)
        named = {"edges/homo": out.edges_homo, "edges/hetero": out.edges_hetero}
        for m in MODS:
            named[f"features/homo/{m}"] = out.c[m].mean(dim=2)  # (B, d, T') -> (B, d)
            named[f"features/hetero/{m}"] = out.s[m].mean(dim=2)
        for space, acts in out.activations.items():
            for m, a in acts.items():
                named[f"activations/{space}/{m}"] = a
        return out.prediction.view(-1), named

    # ------------------------------------------------------------------ objective
    def compute_losses(self, output: DMDOutput, labels: Tensor) -> dict[str, Tensor]:
        """The official total objective (docs/dmd-spec.md §4.6) and every term, detached, for logging.

        ``loss = L_task + w_homo (L_logit^homo + L_reg^homo) + w_het (L_logit^het + L_repr^het + L_reg^het)
        + w_dec (L_cyc + L_rec + w_mo (L_mar + L_ort))``; ``homo_repr`` is reported but not optimised.
        """
        cfg = self.config
        off = set(cfg.disabled_losses)
        if not cfg.decouple:
            off |= {"rec", "cyc", "ort", "mar"}
        # x * 1.0 and x + 0.0 are exact, so with nothing disabled the total is bit-identical to the official one
        on = {name: 0.0 if name in off else 1.0 for name in cfg.loss_terms}
        heads = {"task_fusion": output.prediction, "task_c": output.logits_c}
        head_on = {"task_fusion": 1.0, "task_c": on["task_c"]}
        for i, m in enumerate(MODS):
            heads[f"task_{m}_homo"] = output.logits_homo[i]
            heads[f"task_{m}_hetero"] = output.logits_hetero[i]
            head_on[f"task_{m}_homo"], head_on[f"task_{m}_hetero"] = on["task_homo"], on["task_hetero"]
        task_terms = L.task_losses(heads, labels, self.spec.task)
        task = torch.stack([head_on[k] * v for k, v in task_terms.items()]).sum()
        rec = sum(L.mse(output.recon[m], output.proj_x[m]) for m in MODS)
        cyc = sum(L.mse(output.s[m], output.s_r[m]) for m in MODS)
        ort = sum(L.ort_loss(output.s[m], output.c[m], cfg.ort_semantics) for m in MODS)
        mar = L.dmd_margin_loss([output.c_sim[m] for m in MODS], labels, cfg.margin_scale)
        homo_reg, homo_logit, homo_repr = L.gd_losses(
            output.edges_homo,
            self.gd_homo.prior,
            output.logits_homo,
            output.reprs_homo,
            cfg.gd_reg,
            cfg.w_losses_homo,
            "l1",
        )
        het_reg, het_logit, het_repr = L.gd_losses(
            output.edges_hetero,
            self.gd_hetero.prior,
            output.logits_hetero,
            output.reprs_hetero,
            cfg.gd_reg,
            cfg.w_losses_hetero,
            "min_cosine",
        )
        loss = (
            task
            + cfg.weight_gd_homo * (on["homo_logit"] * homo_logit + on["homo_reg"] * homo_reg)
            + cfg.weight_gd_hetero
            * (on["hetero_logit"] * het_logit + on["hetero_repr"] * het_repr + on["hetero_reg"] * het_reg)
            + cfg.weight_decouple
            * (
                on["cyc"] * cyc
                + on["rec"] * rec
                + cfg.weight_margin_ort * (on["mar"] * mar + on["ort"] * ort)
            )
        )
        terms = {
            "task": task,
            **task_terms,
            "rec": rec,
            "cyc": cyc,
            "ort": ort,
            "mar": mar,
            "homo_reg": homo_reg,
            "homo_logit": homo_logit,
            "homo_repr": homo_repr,
            "hetero_reg": het_reg,
            "hetero_logit": het_logit,
            "hetero_repr": het_repr,
        }
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


@register_model(
    "dmd",
    "Decoupled Multimodal Distilling (Li et al., CVPR 2023), official-code equivalent",
    config=DMDConfig,
)
def dmd(spec: DatasetSpec, **cfg) -> DMD:
    """Build DMD for ``spec`` from :class:`DMDConfig` keyword arguments."""
    return DMD(spec, DMDConfig(**cfg))
