"""Pieces shared by the MMSA fusion baselines (``ef_lstm``, ``lf_dnn``, ``tfn``, ``lmf``).

* :class:`PooledSubNet`: MMSA's ``SubNet`` (``src/MMSA/models/subNets/FeatureNets.py``, from the TFN code of
  Zadeh et al., EMNLP 2017): batch norm, dropout and three ReLU layers on a time-averaged modality.
* :class:`TextSubNet`: MMSA's ``TextSubNet`` (same file): a one-layer LSTM over the text features whose
  final hidden state goes through a linear layer.
* :class:`UnimodalEncoders`: the three pre-fusion branches that LF-DNN, TFN and LMF share, with the
  masked time-average that MMSA's loader does for these models (``need_normalized``).
* :class:`SubNetConfig`: the hyper-parameters of those branches, with the names of MMSA's config keys.

How lengths are used. MMSA averages audio and vision over *every* padded step
(``data_loader.py`` ``__normalize``) and runs the text LSTM over the padding. With ``use_lengths=True``
(our default) the average covers only the valid steps and the LSTM stops at the true text length;
``use_lengths=False`` reproduces MMSA. Valid steps: text from the ``text_bert`` input mask (else the
non-zero rows of ``text``); audio/vision from ``*_lengths`` in unaligned data, and the text mask in
aligned data, whose modalities share the word timeline (MMSA sets ``audio_lengths = vision_lengths =
text_bert[:, 1].sum()`` for aligned data, ``data_loader.py`` L98-100). The masks are those of
:mod:`emodistill.models.layers.masking`, the pooling that of :mod:`emodistill.models.layers.pooling`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor, nn

from emodistill.models.layers.masking import mask_lengths, modality_mask, text_mask
from emodistill.models.layers.norms import BatchNorm
from emodistill.models.layers.pooling import last_hidden, masked_mean
from emodistill.spec import DatasetSpec


class PooledSubNet(nn.Module):
    """MMSA's ``SubNet``: pooled features (B, D) -> (B, H) by batch norm, dropout, three ReLU layers."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        # Batch norm standardises features whose scales differ by orders of magnitude (COVAREP, FACET);
        # BatchNorm falls back to running statistics for a training batch of one sample.
        self.norm = BatchNorm(in_dim)
        self.drop = nn.Dropout(dropout)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.drop(self.norm(x)))  # (B, H)


class TextSubNet(nn.Module):
    """MMSA's ``TextSubNet``: one-layer LSTM over (B, T_l, D_l), final hidden state -> linear -> (B, out).

    MMSA builds it with the text dropout of its config but sets the dropout to 0 for a one-layer LSTM
    (``if num_layers == 1: dropout = 0.0``), so no dropout is applied here.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.proj(last_hidden(self.rnn, x, lengths))  # (B, out)


@dataclass
class SubNetConfig:
    """Pre-fusion branches of LF-DNN, TFN and LMF. MMSA lists them as ``hidden_dims = [text, audio,
    video]`` and ``dropouts = [audio, video, text, post_fusion]`` (its ``text`` dropout has no effect, see
    :class:`TextSubNet`). Defaults: MMSA's TFN values for MOSI (``config_regression.json``)."""

    text_hidden: int = 128
    """LSTM width of the text branch (MMSA ``hidden_dims[0]``)."""
    audio_hidden: int = 32
    """Width of the audio subnet (MMSA ``hidden_dims[1]``)."""
    vision_hidden: int = 128
    """Width of the vision subnet (MMSA ``hidden_dims[2]``)."""
    text_out: int | None = 32
    """Output size of the text branch (MMSA ``text_out``); None = ``text_hidden // 2`` (MMSA's LMF rule)."""
    audio_dropout: float = 0.3
    """Dropout after the audio batch norm (MMSA ``dropouts[0]``)."""
    vision_dropout: float = 0.3
    """Dropout after the vision batch norm (MMSA ``dropouts[1]``)."""
    use_lengths: bool = True
    """Average audio/vision over valid steps and stop the text LSTM at the text length; False reproduces
    MMSA (average over all padded steps, LSTM over the padding)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("text_hidden", "audio_hidden", "vision_hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"{name}.{key}={getattr(self, key)} must be >= 1")
        if self.text_out is not None and self.text_out < 1:
            raise ValueError(f"{name}.text_out={self.text_out} must be >= 1 or null (text_hidden // 2)")
        if self.text_out is None and self.text_hidden < 2:
            raise ValueError(f"{name}.text_hidden={self.text_hidden} must be >= 2 when text_out is null")
        for f in fields(self):
            if f.name.endswith("dropout") and not 0.0 <= getattr(self, f.name) < 1.0:
                raise ValueError(f"{name}.{f.name}={getattr(self, f.name)} must be in [0, 1)")

    @property
    def text_out_dim(self) -> int:
        return self.text_out if self.text_out is not None else self.text_hidden // 2


class UnimodalEncoders(nn.Module):
    """The three pre-fusion branches: text LSTM, audio and vision subnets on time-averaged features."""

    def __init__(self, spec: DatasetSpec, config: SubNetConfig) -> None:
        super().__init__()
        self.aligned, self.use_lengths = spec.aligned, config.use_lengths
        dims = spec.feature_dims
        self.text = TextSubNet(dims["text"], config.text_hidden, config.text_out_dim)
        self.audio = PooledSubNet(dims["audio"], config.audio_hidden, config.audio_dropout)
        self.vision = PooledSubNet(dims["vision"], config.vision_hidden, config.vision_dropout)

    def pool(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """Time average (B, D) of ``batch[modality]`` (B, T, D), over valid steps if ``use_lengths``."""
        x = batch[modality]  # (B, T, D)
        if not self.use_lengths:
            return x.mean(1)  # (B, D), MMSA's need_normalized: padding included
        return masked_mean(x, modality_mask(batch, modality, self.aligned))  # (B, D)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a batch into ``(h_l (B, text_out), h_a (B, audio_hidden), h_v (B, vision_hidden))``."""
        lengths = mask_lengths(text_mask(batch)) if self.use_lengths else None
        h_l = self.text(batch["text"], lengths)  # (B, text_out)
        h_a = self.audio(self.pool(batch, "audio"))  # (B, audio_hidden)
        h_v = self.vision(self.pool(batch, "vision"))  # (B, vision_hidden)
        return h_l, h_a, h_v


def post_fusion_mlp(in_dim: int, width: int, dropout: float) -> nn.Sequential:
    """MMSA's post-fusion head of LF-DNN and TFN: dropout on the fused vector (B, in_dim), two ReLU layers
    of ``width``, then a linear score (B, 1)."""
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_dim, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 1),
    )  # fmt: skip


def check_no_text_encoder(model: str, text_encoder: str | None) -> None:
    """These baselines read the file's precomputed text features, as MMSA's do; refuse a BERT path."""
    if text_encoder is not None:
        raise ValueError(
            f"{model}: text_encoder={text_encoder!r}; this baseline uses the precomputed 'text' features "
            "(MMSA's version does not fine-tune BERT), so text_encoder must be null"
        )
