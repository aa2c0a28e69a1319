"""MISA baseline: Modality-Invariant and -Specific Representations (Hazarika, Zimmermann, Poria; ACM MM 2020).

Written after MMSA's ``src/MMSA/models/singleTask/MISA.py`` and ``trains/singleTask/MISA.py``
(thuiar/MMSA @ a94e65d, derived from github.com/declare-lab/MISA):

1. utterance vectors: text = masked mean of a fine-tuned BERT's last hidden state (MMSA ``use_bert``), or,
   without a text encoder, the two-layer BiLSTM used for audio and vision (the original MISA's GloVe
   path); audio / vision: BiLSTM -> LayerNorm -> BiLSTM over the *packed* sequence, the utterance being
   the final hidden states of both layers and directions ``(B, 4 D_m)`` (LSTM width = input width ``D_m``);
2. per modality a projection ``Linear -> ReLU -> LayerNorm`` to width ``H``; private encoders
   ``sigmoid(Linear)`` (one per modality) and one shared encoder ``sigmoid(Linear)``;
3. reconstruction ``Linear(private + shared)`` of the projected vector;
4. fusion: a one-layer transformer encoder over the six vectors (private t, v, a, shared t, v, a), the
   six outputs concatenated ``(B, 6H)``, then ``Linear -> Dropout -> ReLU -> Linear`` to ``(B, 1)``.

Objective (:meth:`MISA.compute_losses`): ``task + diff_weight * L_diff + sim_weight * L_sim + recon_weight
* L_recon`` with L_sim the CMD between the shared vectors (MMSA ``use_cmd_sim=true``; :func:`cmd_loss`),
L_diff the soft-orthogonality loss between private/shared and across privates (:func:`diff_loss`), and
L_recon the MSE of the reconstructions. The task term is MSE for regression, as MMSA trains MISA.

Left out, as they change nothing in MMSA's published setting: the adversarial domain discriminator
(used only when ``use_cmd_sim`` is false, a path that fails in MMSA's trainer) and the shared/private
discriminator (its output enters no loss; ``sp_weight`` is never read).

Sequence lengths: aligned data has one word timeline, so every modality is packed by the text length
(as MMSA does). For unaligned data MMSA also packs audio and vision by the *text* length, which keeps
only their first ~20 frames; ``lengths="own"`` (default) packs each modality by its own true length,
``lengths="text"`` reproduces MMSA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emodistill.models.base import MERModel, ModelOutput, task_loss
from emodistill.models.layers.pooling import bidirectional_padded
from emodistill.models.layers.text_encoder import build_text_encoder
from emodistill.models.registry import register_model
from emodistill.spec import SHORT_NAMES, DatasetSpec

MODS = ("text", "vision", "audio")
"""MISA's modality order (t, v, a): the fusion transformer reads private t, v, a then shared t, v, a."""


@dataclass
class MISAConfig:
    """MISA hyper-parameters. Defaults: MMSA ``config_regression.json`` ``misa`` / ``mosi`` (MOSEI values in
    brackets, from the ``mosei`` section; see recipes ``misa_mosi.yaml`` / ``misa_mosei.yaml``)."""

    hidden_size: int = 128
    """Width ``H`` of the projected, private, shared and reconstructed vectors ([128])."""
    dropout: float = 0.2
    """Dropout in the prediction head ([0.5])."""
    rnncell: str = "lstm"
    """Recurrent cell of the utterance encoders, ``"lstm"`` or ``"gru"`` (MMSA ``rnncell``: lstm)."""
    diff_weight: float = 0.1
    """Weight of the difference (soft-orthogonality) loss ([0.3])."""
    sim_weight: float = 0.3
    """Weight of the similarity (CMD) loss ([0.8])."""
    recon_weight: float = 1.0
    """Weight of the reconstruction loss ([1.0])."""
    cmd_moments: int = 5
    """Moments matched by CMD (MMSA trainer: 5)."""
    fusion_heads: int = 2
    """Heads of the fusion transformer layer (MMSA: ``nn.TransformerEncoderLayer(nhead=2)``)."""
    fusion_ff: int = 2048
    """Feed-forward width of the fusion layer (PyTorch's default, which MMSA uses)."""
    fusion_dropout: float = 0.1
    """Dropout inside the fusion layer (PyTorch's default, which MMSA uses)."""
    fusion_layers: int = 1
    """Fusion transformer layers (MMSA: 1)."""
    task_loss: str = "mse"
    """Regression task term, ``"mse"`` (MMSA's MISA trainer) or ``"l1"``; binary tasks always use BCE."""
    lengths: str = "own"
    """Packing lengths of unaligned audio / vision: ``"own"`` (their true lengths) or ``"text"`` (MMSA)."""
    text_encoder: str | None = None
    """Local Hugging Face BERT-style directory fine-tuned on ``text_bert`` (MMSA: bert-base-uncased, set
    by the recipes); None runs the BiLSTM on the precomputed ``text`` features."""
    text_encoder_config: dict | None = None
    """Architecture of the text encoder, filled in when it is loaded so that checkpoints rebuild it
    without the directory (see :class:`~emodistill.models.layers.text_encoder.TextEncoder`)."""
    finetune_text: bool = True
    """Back-propagate into the text encoder (MMSA ``use_finetune``: true)."""

    def __post_init__(self) -> None:
        if self.hidden_size < 1 or self.fusion_heads < 1 or self.hidden_size % self.fusion_heads:
            raise ValueError(
                f"MISAConfig.hidden_size={self.hidden_size} must be a positive multiple of "
                f"fusion_heads={self.fusion_heads}"
            )
        for name in ("cmd_moments", "fusion_ff", "fusion_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"MISAConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("dropout", "fusion_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"MISAConfig.{name}={getattr(self, name)} must lie in [0, 1)")
        for name in ("diff_weight", "sim_weight", "recon_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"MISAConfig.{name}={getattr(self, name)} must be >= 0")
        for name, choices in (("rnncell", ("lstm", "gru")), ("task_loss", ("mse", "l1")), ("lengths", ("own", "text"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"MISAConfig.{name}={getattr(self, name)!r}; expected one of {list(choices)}")


# ---------------------------------------------------------------------- auxiliary losses
def cmd_loss(x1: Tensor, x2: Tensor, n_moments: int = 5) -> Tensor:
    """Central moment discrepancy (Zellinger et al., ICLR 2017) as MISA uses it (no interval scaling).

    ``||E[x1] - E[x2]||_2 + sum_{k=2..K} ||c_k(x1) - c_k(x2)||_2`` with ``c_k(x) = E[(x - E[x])^k]``, the
    expectations taken over the batch, per feature.

    Args:
        x1, x2: ``(B, H)`` samples of the two distributions (batch sizes may differ).
        n_moments: ``K``, the highest moment matched.

    Returns:
        Scalar tensor. ``vector_norm`` has a zero (sub)gradient at 0, unlike ``sqrt(sum(...))``.
    """
    m1, m2 = x1.mean(0), x2.mean(0)  # (H,)
    total = torch.linalg.vector_norm(m1 - m2)
    c1, c2 = x1 - m1, x2 - m2  # (B, H) centred
    for k in range(2, n_moments + 1):
        total = total + torch.linalg.vector_norm(c1.pow(k).mean(0) - c2.pow(k).mean(0))
    return total


def diff_loss(x1: Tensor, x2: Tensor) -> Tensor:
    """MISA's difference (soft orthogonality) loss between two sets of vectors, as MMSA computes it.

    Each input is centred over the batch and its rows divided by their (detached) L2 norms plus 1e-6;
    the loss is the mean over the ``H1 x H2`` entries of ``(X1^T X2)^2`` (the paper's squared Frobenius
    norm, divided by ``H1 * H2``).

    Args:
        x1, x2: ``(B, ...)`` flattened to ``(B, H1)`` and ``(B, H2)``.

    Returns:
        Scalar tensor.
    """
    bsz = x1.shape[0]
    a, b = x1.reshape(bsz, -1), x2.reshape(bsz, -1)
    a, b = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)  # (B, H1), (B, H2)
    # The norms are constants for the gradient, as in the reference implementation.
    a = a / (torch.linalg.vector_norm(a, dim=1, keepdim=True).detach() + 1e-6)
    b = b / (torch.linalg.vector_norm(b, dim=1, keepdim=True).detach() + 1e-6)
    return (a.t() @ b).pow(2).mean()  # (H1, H2) -> scalar


# ---------------------------------------------------------------------- model
class UtteranceRNN(nn.Module):
    """Two bidirectional RNN layers with a LayerNorm in between, over packed sequences (MISA
    ``extract_features``): ``(B, T, D) -> (B, 4D)`` final hidden states ``[h1_fw, h2_fw, h1_bw, h2_bw]``.
    Under ``torch.export`` the same states come from the padded input (:func:`bidirectional_padded`)."""

    def __init__(self, dim: int, cell: str) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn1 = rnn(dim, dim, bidirectional=True, batch_first=True)
        self.norm = nn.LayerNorm(2 * dim)
        self.rnn2 = rnn(2 * dim, dim, bidirectional=True, batch_first=True)

    @staticmethod
    def _final(out: tuple) -> Tensor:
        state = out[1]
        return state[0] if isinstance(state, tuple) else state  # LSTM (h, c) -> h: (2, B, D)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if torch.compiler.is_exporting():  # torch.export cannot trace packed sequences: the padded equivalent
            out1, h1 = bidirectional_padded(self.rnn1, x, lengths)  # (B, T, 2D), (2, B, D)
            _, h2 = bidirectional_padded(self.rnn2, self.norm(out1), lengths)
            return torch.cat([h1, h2], dim=2).permute(1, 0, 2).reshape(x.shape[0], -1)  # (B, 4D)
        lengths = lengths.cpu()  # pack_padded_sequence wants CPU lengths
        out1 = self.rnn1(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h1 = self._final(out1)  # (2, B, D); enforce_sorted=False returns states in batch order
        padded, _ = pad_packed_sequence(out1[0], batch_first=True)  # (B, max(lengths), 2D)
        packed2 = pack_padded_sequence(self.norm(padded), lengths, batch_first=True, enforce_sorted=False)
        h2 = self._final(self.rnn2(packed2))  # (2, B, D)
        return torch.cat([h1, h2], dim=2).permute(1, 0, 2).reshape(x.shape[0], -1)  # (B, 2, 2D) -> (B, 4D)


def _projection(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden))


@dataclass
class MISAOutput(ModelOutput):
    """MISA outputs; every dict is keyed ``"text"``, ``"vision"``, ``"audio"`` and holds ``(B, H)``."""

    prediction: Tensor
    """``(B, 1)`` score, or logit for binary tasks."""
    orig: dict[str, Tensor]
    """Projected utterance vectors (reconstruction targets, not detached, as MMSA)."""
    private: dict[str, Tensor]
    """Modality-specific vectors."""
    shared: dict[str, Tensor]
    """Modality-invariant vectors."""
    recon: dict[str, Tensor]
    """Reconstructions of ``orig`` from ``private + shared``."""


class MISA(MERModel):
    """MISA baseline; see the module docstring. Build it with ``create_model("misa", spec, **cfg)``."""

    name = "misa"

    def __init__(self, spec: DatasetSpec, config: MISAConfig) -> None:
        super().__init__(spec, config)
        cfg, h = config, config.hidden_size
        self.text_model = build_text_encoder(cfg, spec, "MISA")
        rnn_mods = MODS[1:] if self.text_model is not None else MODS
        self.rnn = nn.ModuleDict({m: UtteranceRNN(spec.feature_dims[m], cfg.rnncell) for m in rnn_mods})
        utt_dims = {m: 4 * spec.feature_dims[m] for m in rnn_mods}
        if self.text_model is not None:
            utt_dims["text"] = self.text_model.hidden_size
        self.project = nn.ModuleDict({m: _projection(utt_dims[m], h) for m in MODS})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(h, h), nn.Sigmoid()) for m in MODS})
        self.shared = nn.Sequential(nn.Linear(h, h), nn.Sigmoid())
        self.recon = nn.ModuleDict({m: nn.Linear(h, h) for m in MODS})
        layer = nn.TransformerEncoderLayer(h, cfg.fusion_heads, cfg.fusion_ff, cfg.fusion_dropout, batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, cfg.fusion_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(6 * h, 3 * h), nn.Dropout(cfg.dropout), nn.ReLU(), nn.Linear(3 * h, 1))

    # ------------------------------------------------------------------ forward
    def _lengths(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """True lengths ``(B,)`` int64 per modality, clamped to ``[1, T_m]`` (packing needs >= 1)."""
        if "text_bert" in batch:
            text_len = batch["text_bert"][:, 1].sum(1).round().long()  # BERT attention mask
        elif "text" in batch:
            text_len = (batch["text"] != 0).any(-1).sum(1)  # zero-padded rows are padding
        else:
            raise KeyError(f"MISA batch lacks 'text' and 'text_bert' (has {sorted(batch)})")
        out = {}
        for m in MODS:
            if m not in batch and not (m == "text" and self.text_model is not None):
                raise KeyError(f"MISA batch lacks {m!r} (has {sorted(batch)})")
            if m == "text" or self.spec.aligned or self.config.lengths == "text":
                length = text_len  # aligned files: one word timeline, padded rows carry no lengths
            else:
                length = batch[f"{m}_lengths"]
            t = batch["text_bert"].shape[2] if m == "text" and self.text_model is not None else batch[m].shape[1]
            out[m] = length.clamp(1, t)
        return out

    def _utterances(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Utterance vectors before projection: ``(B, 4 D_m)`` from the RNNs, ``(B, H_bert)`` from BERT."""
        lengths = self._lengths(batch)
        utt = {}
        for m in MODS:
            if m == "text" and self.text_model is not None:
                hidden = self.text_model(batch["text_bert"])  # (B, T_l, H_bert)
                mask = batch["text_bert"][:, 1].unsqueeze(-1)  # (B, T_l, 1)
                utt[m] = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # masked mean: (B, H_bert)
                continue
            x = batch[m]
            if x.dim() != 3 or x.shape[2] != self.spec.feature_dims[m]:
                raise ValueError(
                    f"MISA batch[{m!r}]: expected shape (B, T, {self.spec.feature_dims[m]}), found {tuple(x.shape)}"
                )
            utt[m] = self.rnn[m](x, lengths[m])  # (B, 4 D_m)
        return utt

    def forward(self, batch: dict[str, Tensor]) -> MISAOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch: ``text`` ``(B, T_l, D_l)`` or,
                with a text encoder, ``text_bert`` ``(B, 3, T_l)``; ``audio`` ``(B, T_a, D_a)``,
                ``vision`` ``(B, T_v, D_v)`` and their ``*_lengths`` ``(B,)``.

        Returns:
            :class:`MISAOutput`; ``prediction`` ``(B, 1)``.
        """
        utt = self._utterances(batch)
        orig = {m: self.project[m](utt[m]) for m in MODS}  # (B, H)
        private = {m: self.private[m](orig[m]) for m in MODS}
        shared = {m: self.shared(orig[m]) for m in MODS}  # one encoder for all modalities
        recon = {m: self.recon[m](private[m] + shared[m]) for m in MODS}
        tokens = torch.stack([private[m] for m in MODS] + [shared[m] for m in MODS], dim=1)  # (B, 6, H)
        fused = self.fusion(tokens).flatten(1)  # (B, 6H): token-major, as MMSA's cat of h[0..5]
        return MISAOutput(prediction=self.head(fused), orig=orig, private=private, shared=shared, recon=recon)

    @torch.no_grad()
    def interpret(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Shared and private vectors ``features/{shared,private}/<m>`` ``(B, H)``; see :meth:`MERModel.interpret`."""
        return self.predict_and_interpret(batch)[1]

    @torch.no_grad()
    def predict_and_interpret(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Scores ``(B,)`` and :meth:`interpret`'s quantities from one forward pass."""
        out = self(batch)
        named = {f"features/shared/{SHORT_NAMES[m]}": out.shared[m] for m in MODS}
        named.update({f"features/private/{SHORT_NAMES[m]}": out.private[m] for m in MODS})
        return out.prediction.view(-1), named

    # ------------------------------------------------------------------ objective
    def compute_losses(self, output: MISAOutput, labels: Tensor) -> dict[str, Tensor]:
        """``task + diff_weight * diff + sim_weight * sim + recon_weight * recon`` (MMSA's MISA trainer) and
        each term, detached."""
        cfg = self.config
        task = task_loss(output.prediction, labels, self.spec.task, cfg.task_loss)
        s, p = output.shared, output.private
        diff = (
            diff_loss(p["text"], s["text"])
            + diff_loss(p["vision"], s["vision"])
            + diff_loss(p["audio"], s["audio"])
            + diff_loss(p["audio"], p["text"])
            + diff_loss(p["audio"], p["vision"])
            + diff_loss(p["text"], p["vision"])
        )
        k = cfg.cmd_moments
        sim = (
            cmd_loss(s["text"], s["vision"], k)
            + cmd_loss(s["text"], s["audio"], k)
            + cmd_loss(s["audio"], s["vision"], k)
        ) / 3.0
        recon = sum(F.mse_loss(output.recon[m], output.orig[m]) for m in MODS) / 3.0
        loss = task + cfg.diff_weight * diff + cfg.sim_weight * sim + cfg.recon_weight * recon
        terms = {"task": task, "diff": diff, "sim": sim, "recon": recon}
        return {"loss": loss, **{name: v.detach() for name, v in terms.items()}}


@register_model("misa", "MISA (Hazarika et al., ACM MM 2020): shared/private subspaces, MMSA's MISA", config=MISAConfig)
def misa(spec: DatasetSpec, **cfg) -> MISA:
    """Build :class:`MISA` for ``spec`` from :class:`MISAConfig` keyword arguments."""
    return MISA(spec, MISAConfig(**cfg))
