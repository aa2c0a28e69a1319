"""Self-MM: self-supervised multi-task learning with generated unimodal labels (Yu, Xu, Yuan, Wu; "Learning
Modality-Specific Representations with Self-Supervised Multi-Task Learning for Multimodal Sentiment Analysis",
AAAI 2021). Follows MMSA's implementation (github.com/thuiar/MMSA ``src/MMSA/models/multiTask/SELF_MM.py``,
trainer ``src/MMSA/trains/multiTask/SELF_MM.py``, hyper-parameters ``src/MMSA/config/config_regression.json``).

Architecture (MMSA ``SELF_MM``):

1. text: the first token of a fine-tuned BERT (``text_encoder`` set, MMSA's setting), or of the file's
   precomputed ``text`` features (MMSA's processed files hold BERT token features with [CLS] first), or
   their mean over the valid tokens (``text_pooling="mean"``, for word-level features such as GloVe);
2. audio / vision: a unidirectional LSTM packed by the true lengths (on aligned data the text length, as
   MMSA), whose last-layer final hidden state goes through dropout and a linear layer;
3. four heads (fusion on the concatenation, and one per modality): dropout -> Linear -> ReLU, which is
   the head's *feature* ``F_s``, then Linear -> ReLU -> Linear to a score.

The Unimodal Label Generation Module (:class:`ULGM`, paper §3.3, MMSA trainer) keeps, per training sample,
the head features ``F_s`` and a generated label ``y_s`` for ``s`` in text/audio/vision (initialised to the
multimodal label ``y_m``). After each training batch it updates, in MMSA's order: the labels of the batch's
samples (from their second epoch on), their features, and the positive/negative class centres of every
head (means of the stored features whose label is > 0 / < 0). The new label of ``s`` is::

    d_p, d_n = ||F - C^p||, ||F - C^n||;   delta = (d_n - d_p) / (d_p + 1e-8)   (for s and for the fusion f)
    y_new = clip(0.5 * y_m * delta_s / (delta_f + 1e-8) + 0.5 * (y_m + delta_s - delta_f), -H, H)
    y_s <- (n - 1) / (n + 1) * y_s + 2 / (n + 1) * y_new          (n: the sample's epoch, 1-based)

The objective is ``L1(y_hat_m, y_m) + sum_s mean(tanh|y_s - y_m| * |y_hat_s - y_s|)`` with the labels read
before the update (as MMSA computes the loss first), so the unimodal terms are zero in epochs 1 and 2 (the
labels still equal ``y_m``) and train the unimodal heads from epoch 3 on, exactly as in MMSA.

How the model tracks epochs: every training-mode :meth:`SelfMM.compute_losses` counts a visit of each
sample in ``output.index``; a sample's epoch is its visit count. With the training loop's shuffled epochs
(each sample once per epoch) this equals MMSA's global epoch counter; a sample whose batch was skipped
(``trailing_window="discard"``) simply keeps its own count. Eval-mode outputs never touch the memories.

Deviations from MMSA: centres average only the samples seen so far (MMSA also averages the zero features of
samples not yet visited, during its first epoch, when no label update reads the centres); an empty class
keeps its previous centre instead of becoming NaN; the memories grow to the largest index seen (MMSA sizes
them from ``train_samples``). Regression only: ULGM needs signed scores, so binary tasks are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput, task_loss
from emodistill.models.layers.masking import text_mask
from emodistill.models.layers.pooling import last_hidden, masked_mean
from emodistill.models.layers.text_encoder import build_text_encoder
from emodistill.models.registry import register_model
from emodistill.spec import MODALITIES, DatasetSpec

HEADS = ("fusion", *MODALITIES)
"""The four output heads: ``fusion`` predicts the multimodal score; one head per modality
(:data:`~emodistill.spec.MODALITIES`) is trained on generated labels."""
_EPS = 1e-8  # MMSA's MIN in update_labels


@dataclass
class SelfMMConfig:
    """Self-MM hyper-parameters; defaults are MMSA's MOSI values (``config_regression.json``, ``self_mm``).

    MOSEI differs only in ``post_fusion_dropout=0.1`` and ``post_text_dropout=post_audio_dropout=0.0``.
    MMSA's ``text_out`` (768) is the text width, read here from the encoder or the features; its
    ``t_bert_dropout`` is never used by its model and is omitted.
    """

    text_encoder: str | None = None
    """Local Hugging Face directory (BERT-style) fine-tuned on ``text_bert`` (MMSA: bert-base-uncased);
    None reads the precomputed ``text`` features."""
    text_encoder_config: dict | None = None
    """Encoder architecture, filled in when ``text_encoder`` loads, so checkpoints rebuild it without the
    directory (random weights, then the checkpoint's)."""
    finetune_text: bool = True
    """Back-propagate into the text encoder (MMSA ``use_finetune``)."""
    text_pooling: str = "first"
    """``"first"``: the first token, BERT's [CLS] (MMSA); ``"mean"``: mean over the valid tokens."""
    a_lstm_hidden_size: int = 16
    v_lstm_hidden_size: int = 32
    a_lstm_layers: int = 1
    v_lstm_layers: int = 1
    a_lstm_dropout: float = 0.0
    """Dropout between LSTM layers and on the final hidden state (MMSA ``AuViSubNet``)."""
    v_lstm_dropout: float = 0.0
    audio_out: int = 16
    """Width of the audio representation (linear layer after the LSTM)."""
    video_out: int = 32
    post_fusion_dim: int = 128
    """Width of the fusion head; its first layer's output is the fusion feature ``F_f``."""
    post_text_dim: int = 32
    post_audio_dim: int = 16
    post_video_dim: int = 32
    post_fusion_dropout: float = 0.0
    post_text_dropout: float = 0.1
    post_audio_dropout: float = 0.1
    post_video_dropout: float = 0.0
    label_clip: float | None = None
    """MMSA's ``H``: generated labels are clipped to [-H, H]. None: the largest |bound| of the spec's label
    range (3.0 on MOSI/MOSEI, 1.0 on SIMS, MMSA's values); resolved when the model is built."""
    exclude_zero: bool = True
    """Positive centre over labels > 0 (MMSA ``excludeZero``); False: >= 0."""
    warmup_epochs: int = 1
    """Epochs before generated labels start moving (MMSA updates from epoch 2 on)."""
    num_train: int = 0
    """Initial size of the per-sample memories; they grow to the largest training index seen (MMSA
    ``train_samples``: 1284 MOSI, 16326 MOSEI)."""

    def __post_init__(self) -> None:
        if self.text_pooling not in ("first", "mean"):
            raise ValueError(f"SelfMMConfig.text_pooling={self.text_pooling!r}; expected 'first' or 'mean'")
        for name in ("a_lstm_hidden_size", "v_lstm_hidden_size", "a_lstm_layers", "v_lstm_layers", "audio_out",
                     "video_out", "post_fusion_dim", "post_text_dim", "post_audio_dim", "post_video_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SelfMMConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("a_lstm_dropout", "v_lstm_dropout", "post_fusion_dropout", "post_text_dropout",
                     "post_audio_dropout", "post_video_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"SelfMMConfig.{name}={getattr(self, name)} must lie in [0, 1)")
        if self.label_clip is not None and self.label_clip <= 0:
            raise ValueError(f"SelfMMConfig.label_clip={self.label_clip} must be > 0 or null")
        if self.warmup_epochs < 0 or self.num_train < 0:
            raise ValueError(
                f"SelfMMConfig.warmup_epochs={self.warmup_epochs} and num_train={self.num_train} must be >= 0"
            )


class ULGM(nn.Module):
    """Unimodal Label Generation Module: per-sample memories and class centres, all buffers.

    Buffers (``N`` = memory size, ``F_h`` = feature width of head ``h``): ``visits`` (N,) training visits
    per sample; ``label_<h>`` (N,) with ``label_fusion`` the multimodal label and the others generated;
    ``feature_<h>`` (N, F_h) the latest head features; ``centre_pos_<h>``, ``centre_neg_<h>`` (F_h,).
    Loading a state dict resizes the per-sample buffers to the stored size, so strict loading works
    whatever ``N`` the receiving module started with.

    Args:
        dims: feature width per head (keys :data:`HEADS`).
        label_clip: ``H``; new labels are clipped to [-H, H].
        exclude_zero: positive class is label > 0 (else >= 0).
        warmup_epochs: visits before a sample's generated labels are updated.
        size: initial ``N``.
    """

    def __init__(
        self, dims: dict[str, int], label_clip: float, exclude_zero: bool, warmup_epochs: int, size: int = 0
    ) -> None:
        super().__init__()
        self.label_clip, self.exclude_zero, self.warmup_epochs = label_clip, exclude_zero, warmup_epochs
        self.register_buffer("visits", torch.zeros(size, dtype=torch.int64))
        for h in HEADS:
            self.register_buffer(f"label_{h}", torch.zeros(size))
            self.register_buffer(f"feature_{h}", torch.zeros(size, dims[h]))
            self.register_buffer(f"centre_pos_{h}", torch.zeros(dims[h]))
            self.register_buffer(f"centre_neg_{h}", torch.zeros(dims[h]))

    def _per_sample(self) -> list[str]:
        return ["visits"] + [f"{kind}_{h}" for h in HEADS for kind in ("label", "feature")]

    @property
    def size(self) -> int:
        return self.visits.shape[0]

    def grow(self, n: int) -> None:
        """Make room for indices ``< n`` (at least doubling, so growth over an epoch costs O(N))."""
        if n <= self.size:
            return
        n = max(n, 2 * self.size)
        for name in self._per_sample():
            old = getattr(self, name)  # (N,) or (N, F_h)
            pad = old.new_zeros((n - old.shape[0], *old.shape[1:]))
            setattr(self, name, torch.cat([old, pad]))  # replaces the registered buffer

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # Resize to the checkpoint's N before the strict copy (it was grown during training).
        for name in self._per_sample():
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.shape != getattr(self, name).shape:
                buf = getattr(self, name)
                setattr(self, name, buf.new_zeros(stored.shape))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def labels(self, index: Tensor) -> dict[str, Tensor]:
        """Current labels ``(B,)`` per head of the samples ``index`` (B,)."""
        return {h: getattr(self, f"label_{h}")[index] for h in HEADS}

    @torch.no_grad()
    def observe(self, index: Tensor, labels: Tensor, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Record one training batch and return the labels it is trained on (read before the update).

        Args:
            index: (B,) training-split rows.
            labels: (B,) multimodal labels.
            features: per head, (B, F_h) features of this batch (detached here).

        Returns:
            Per head, (B,) labels as they stood before this batch's update (the new samples' initialised).
        """
        index, labels = index.long(), labels.float()
        self.grow(int(index.max()) + 1)
        seen = self.visits[index] > 0  # (B,)
        stored = self.label_fusion[index]
        if bool(((stored - labels).abs() > 1e-6)[seen].any()):
            raise ValueError(
                "self_mm ULGM: a training batch carries labels that differ from those remembered for the same "
                "`index`; training-mode outputs must come from the training split only (call model.eval() "
                "for validation/test)"
            )
        for h in HEADS:  # first visit: every label starts as the multimodal label (MMSA init_labels)
            lab = getattr(self, f"label_{h}")
            lab[index] = torch.where(seen, lab[index], labels)
        targets = {h: v.clone() for h, v in self.labels(index).items()}

        self.visits[index] += 1
        n = self.visits[index].float()  # (B,) the sample's epoch, 1-based
        feats = {h: features[h].detach().float() for h in HEADS}
        update = n > self.warmup_epochs  # (B,)
        if bool(update.any()):
            y_m = self.label_fusion[index]
            delta_f = self._delta("fusion", feats["fusion"])
            for s in MODALITIES:
                delta_s = self._delta(s, feats[s])
                alpha = delta_s / (delta_f + _EPS)
                new = 0.5 * alpha * y_m + 0.5 * (y_m + delta_s - delta_f)
                new = new.clamp(-self.label_clip, self.label_clip)
                lab = getattr(self, f"label_{s}")
                moved = (n - 1) / (n + 1) * lab[index] + 2 / (n + 1) * new  # momentum over epochs
                lab[index] = torch.where(update, moved, lab[index])
        for h in HEADS:
            getattr(self, f"feature_{h}")[index] = feats[h]
        self.update_centres()
        return targets

    def _delta(self, head: str, f: Tensor) -> Tensor:
        """``(d_n - d_p) / (d_p + eps)`` (B,) of features ``f`` (B, F_h) to the head's centres."""
        d_p = torch.linalg.vector_norm(f - getattr(self, f"centre_pos_{head}"), dim=-1)
        d_n = torch.linalg.vector_norm(f - getattr(self, f"centre_neg_{head}"), dim=-1)
        return (d_n - d_p) / (d_p + _EPS)

    @torch.no_grad()
    def update_centres(self) -> None:
        """Centres of every head: mean stored feature of the seen samples with label > 0 (>= 0 without
        ``exclude_zero``) and < 0, by that head's own (generated) labels, as MMSA ``update_centers``."""
        seen = self.visits > 0  # (N,)
        for h in HEADS:
            lab, feat = getattr(self, f"label_{h}"), getattr(self, f"feature_{h}")  # (N,), (N, F_h)
            pos = seen & ((lab > 0) if self.exclude_zero else (lab >= 0))
            for kind, mask in (("pos", pos), ("neg", seen & (lab < 0))):
                count = mask.sum()
                if int(count) > 0:  # an empty class keeps its previous centre (MMSA would give NaN)
                    total = mask.to(feat.dtype) @ feat  # (N,) @ (N, F_h) -> (F_h,)
                    getattr(self, f"centre_{kind}_{h}").copy_(total / count)


class SequenceEncoder(nn.Module):
    """LSTM over the valid steps -> final hidden state -> dropout -> Linear (MMSA ``AuViSubNet``).

    Maps (B, T, D) with lengths (B,) to (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                           batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        # packing needs lengths >= 1: an empty clip reads its first (zero) step
        lengths = lengths.detach().to(torch.int64).clamp(1, x.shape[1])
        return self.linear(self.dropout(last_hidden(self.rnn, x, lengths)))  # (B, out_dim)


class Head(nn.Module):
    """Dropout -> Linear -> ReLU (the feature ``F``) -> Linear -> ReLU -> Linear: (B, D) -> score (B, 1)."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layer_1, self.layer_2, self.layer_3 = nn.Linear(in_dim, dim), nn.Linear(dim, dim), nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature = F.relu(self.layer_1(self.dropout(x)))  # (B, dim)
        return self.layer_3(F.relu(self.layer_2(feature))), feature  # (B, 1), (B, dim)


@dataclass
class SelfMMOutput(ModelOutput):
    """Scores, head features and the sample rows the ULGM needs."""

    prediction: Tensor
    """(B, 1) fusion head score."""
    unimodal: dict[str, Tensor]
    """Per modality (text, audio, vision), the (B, 1) score of its head."""
    features: dict[str, Tensor]
    """Per head (fusion, text, audio, vision), the (B, F_h) feature after the first layer + ReLU."""
    index: Tensor | None
    """(B,) training-split rows (``batch["index"]``)."""
    training: bool
    """Produced in training mode: only then does :meth:`SelfMM.compute_losses` update the ULGM."""


class SelfMM(MERModel):
    """Self-MM; see the module docstring. Build it with ``create_model("self_mm", spec, **cfg)``."""

    name = "self_mm"
    supports_distributed = False
    distributed_reason = ("its ULGM keeps per-sample label memories that each process would update for its own "
                          "share of the batch only; train it with one process")

    def __init__(self, spec: DatasetSpec, config: SelfMMConfig) -> None:
        if spec.is_binary:
            raise ValueError(
                f"self_mm supports regression only (spec {spec.name!r} has task={spec.task!r}): its unimodal "
                "label generation moves signed sentiment scores"
            )
        super().__init__(spec, config)
        cfg = config
        self.text_model = build_text_encoder(cfg, spec, "self_mm")
        text_dim = self.text_model.hidden_size if self.text_model is not None else spec.feature_dims["text"]
        if cfg.label_clip is None:
            cfg.label_clip = float(max(abs(b) for b in spec.label_range))

        self.audio_model = SequenceEncoder(spec.feature_dims["audio"], cfg.a_lstm_hidden_size, cfg.audio_out,
                                           cfg.a_lstm_layers, cfg.a_lstm_dropout)
        self.video_model = SequenceEncoder(spec.feature_dims["vision"], cfg.v_lstm_hidden_size, cfg.video_out,
                                           cfg.v_lstm_layers, cfg.v_lstm_dropout)
        in_dims = {"fusion": text_dim + cfg.audio_out + cfg.video_out, "text": text_dim,
                   "audio": cfg.audio_out, "vision": cfg.video_out}
        dims = {"fusion": cfg.post_fusion_dim, "text": cfg.post_text_dim, "audio": cfg.post_audio_dim,
                "vision": cfg.post_video_dim}
        drops = {"fusion": cfg.post_fusion_dropout, "text": cfg.post_text_dropout,
                 "audio": cfg.post_audio_dropout, "vision": cfg.post_video_dropout}
        self.heads = nn.ModuleDict({h: Head(in_dims[h], dims[h], drops[h]) for h in HEADS})
        self.ulgm = ULGM(dims, cfg.label_clip, cfg.exclude_zero, cfg.warmup_epochs, cfg.num_train)

    def _text(self, batch: dict[str, Tensor]) -> Tensor:
        """Pooled text representation (B, D_l) or (B, H_bert)."""
        if self.text_model is not None:
            if "text_bert" not in batch:
                raise KeyError(f"self_mm with a text encoder needs batch['text_bert'] (has {sorted(batch)})")
            tokens = self.text_model(batch["text_bert"])  # (B, T_l, H)
        else:
            tokens = batch["text"]  # (B, T_l, D_l)
        if self.config.text_pooling == "first":
            return tokens[:, 0]  # (B, D): [CLS]
        return masked_mean(tokens, text_mask(batch))  # (B, D): mean over the real tokens

    def forward(self, batch: dict[str, Tensor]) -> SelfMMOutput:
        """Score each clip with the four heads.

        Args:
            batch: ``text`` (B, T_l, D_l) or ``text_bert`` (B, 3, T_l), ``audio`` (B, T_a, D_a), ``vision``
                (B, T_v, D_v), ``audio_lengths`` / ``vision_lengths`` (B,), ``index`` (B,).

        Returns:
            :class:`SelfMMOutput`; ``prediction`` (B, 1) is the fusion head.
        """
        text = self._text(batch)  # (B, D_t)
        if self.spec.aligned:  # aligned files pad audio/vision on the word timeline: MMSA packs by text length
            len_a = len_v = text_mask(batch).sum(1)  # (B,)
        else:
            len_a, len_v = batch["audio_lengths"], batch["vision_lengths"]
        audio = self.audio_model(batch["audio"], len_a)  # (B, audio_out)
        video = self.video_model(batch["vision"], len_v)  # (B, video_out)
        inputs = {"fusion": torch.cat([text, audio, video], dim=-1), "text": text, "audio": audio, "vision": video}
        scores, features = {}, {}
        for h in HEADS:
            scores[h], features[h] = self.heads[h](inputs[h])  # (B, 1), (B, F_h)
        return SelfMMOutput(
            prediction=scores["fusion"],
            unimodal={s: scores[s] for s in MODALITIES},
            features=features,
            index=batch.get("index"),
            training=self.training,
        )

    def compute_losses(self, output: SelfMMOutput, labels: Tensor) -> dict[str, Tensor]:
        """Fusion L1 plus the tanh-weighted L1 of each unimodal head to its generated label.

        A training-mode output also updates the ULGM (labels, features, centres) after reading the targets.
        An eval-mode output gives only the fusion L1 (MMSA's validation loss) and changes nothing.

        Returns:
            ``loss`` (differentiable total), ``task`` (fusion L1) and ``uni_<s>`` per modality (detached).
        """
        y = labels.view(-1).float()  # (B,)
        task = task_loss(output.prediction, y, self.spec.task)  # regression: the fusion L1
        if not output.training:
            return {"loss": task, "task": task.detach()}
        if output.index is None:
            raise KeyError("self_mm training needs batch['index'] (the row in the training split) for its ULGM")
        targets = self.ulgm.observe(output.index, y, output.features)
        loss, terms = task, {}
        for s in MODALITIES:
            weight = torch.tanh((targets[s] - targets["fusion"]).abs())  # (B,)
            terms[f"uni_{s}"] = (weight * (output.unimodal[s].view(-1) - targets[s]).abs()).mean()
            loss = loss + terms[f"uni_{s}"]
        return {"loss": loss, "task": task.detach(), **{k: v.detach() for k, v in terms.items()}}

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters split as MMSA's optimiser groups them (it gives each group its own lr and decay):
        ``bert_decay``, ``bert_no_decay`` (biases and LayerNorm), ``audio``, ``video``, ``other``."""
        groups: dict[str, list[nn.Parameter]] = {k: [] for k in ("bert_decay", "bert_no_decay", "audio", "video",
                                                                  "other")}
        for name, p in self.named_parameters():
            if name.startswith("text_model."):
                no_decay = "bias" in name or "LayerNorm" in name
                groups["bert_no_decay" if no_decay else "bert_decay"].append(p)
            elif name.startswith("audio_model."):
                groups["audio"].append(p)
            elif name.startswith("video_model."):
                groups["video"].append(p)
            else:
                groups["other"].append(p)
        return groups


@register_model(
    "self_mm",
    "Self-MM (Yu et al., AAAI 2021): multi-task learning with self-generated unimodal labels",
    config=SelfMMConfig,
)
def self_mm(spec: DatasetSpec, **cfg) -> SelfMM:
    """Build :class:`SelfMM` for ``spec`` from :class:`SelfMMConfig` keyword arguments."""
    return SelfMM(spec, SelfMMConfig(**cfg))
