"""Early-fusion LSTM baseline, as benchmarked in MMSA (``src/MMSA/models/singleTask/EF_LSTM.py``; Williams
et al., "Recognizing Emotions in Video Using Multimodal DNN Feature Fusion", ACL-W 2018; Yu et al.,
CH-SIMS, ACL 2020).

The three modalities are concatenated at every time step (B, T, D_l + D_a + D_v), batch-normalised,
read by a stacked LSTM whose last hidden state goes through dropout, a ReLU layer, dropout and a linear
output. It needs aligned data (one word timeline, equal lengths): MMSA's benchmark runs it on the aligned
files (``need_data_aligned: true``); its average-pooling fallback for unaligned data is not used by the
published MOSI/MOSEI configs and is not reproduced here.

As in MMSA, the batch norm is ``BatchNorm1d(T)`` over the time axis: each time step gets its own
statistics (over the batch and all features). The model is therefore sized for the padded length of its
training data (``fixed_seq_lens``). MMSA's version reads the precomputed 768-d BERT ``text`` features;
no BERT fine-tuning is offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emodistill.models.base import MERModel, ModelOutput
from emodistill.models.layers.masking import mask_lengths, text_mask
from emodistill.models.layers.mmsa_subnets import check_no_text_encoder
from emodistill.models.layers.norms import BatchNorm
from emodistill.models.layers.pooling import last_hidden
from emodistill.models.registry import register_model
from emodistill.spec import MODALITIES, DatasetSpec


@dataclass
class EFLSTMConfig:
    """Hyper-parameters of :class:`EFLSTM`; defaults are MMSA's ``ef_lstm`` MOSI values
    (``config_regression.json``; MOSEI: hidden 256, 2 layers, dropout 0.4)."""

    hidden: int = 128
    """LSTM width and width of the ReLU layer (MMSA ``hidden_dims``)."""
    num_layers: int = 4
    """Stacked LSTM layers (MMSA ``num_layers``)."""
    dropout: float = 0.5
    """Dropout between LSTM layers, on the last hidden state and before the output (MMSA ``dropout``)."""
    use_lengths: bool = True
    """Stop the LSTM at each clip's text length (aligned data are zero-padded on the word timeline);
    False reproduces MMSA, whose LSTM runs over the padding."""

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.num_layers < 1:
            raise ValueError(f"EFLSTMConfig: hidden={self.hidden} and num_layers={self.num_layers} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EFLSTMConfig.dropout={self.dropout} must be in [0, 1)")


class EFLSTM(MERModel):
    """Early fusion: per-step concatenation -> BatchNorm over time steps -> LSTM -> MLP -> score (B, 1)."""

    name = "ef_lstm"
    fixed_seq_lens = True  # BatchNorm1d(T) has one channel per time step

    def __init__(self, spec: DatasetSpec, config: EFLSTMConfig) -> None:
        super().__init__(spec, config)
        lens = {m: spec.seq_lens[m] for m in MODALITIES}
        if not spec.aligned or len(set(lens.values())) != 1:
            raise ValueError(
                f"ef_lstm concatenates the modalities per time step and needs aligned data with equal "
                f"sequence lengths; got aligned={spec.aligned}, seq_lens={lens}. Use MMSA's aligned file "
                "(e.g. MOSI/Processed/aligned_50.pkl), as MMSA's benchmark does"
            )
        self.seq_len = lens["text"]
        in_dim = sum(spec.feature_dims[m] for m in MODALITIES)
        h = config.hidden
        self.norm = BatchNorm(self.seq_len)
        # nn.LSTM applies its dropout between layers only (and warns if there is one layer)
        self.lstm = nn.LSTM(
            in_dim, h, num_layers=config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(h, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, 1)
        )

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Last LSTM hidden state (B, H) of the fused sequence."""
        xs = [batch[m] for m in MODALITIES]  # (B, T, D_m) each
        if any(x.shape[1] != self.seq_len for x in xs):
            raise ValueError(
                f"ef_lstm was built for aligned sequences of length {self.seq_len}; got lengths "
                f"{ {m: x.shape[1] for m, x in zip(MODALITIES, xs, strict=True)} }"
            )
        x = torch.cat(xs, dim=-1)  # (B, T, D_l + D_a + D_v)
        x = self.norm(x)  # BatchNorm1d with channels = T: per-step statistics over (B, D), as MMSA
        lengths = mask_lengths(text_mask(batch)) if self.config.use_lengths else None
        return last_hidden(self.lstm, x, lengths)  # (B, H)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Score each clip.

        Args:
            batch: a :class:`~emodistill.data.loader.BatchLoader` batch of aligned data: ``text``
                (B, T, D_l), ``audio`` (B, T, D_a), ``vision`` (B, T, D_v), and ``text_bert`` (its mask gives
                the text length) if the file has it.

        Returns:
            ``ModelOutput`` with ``prediction`` (B, 1).
        """
        return ModelOutput(prediction=self.head(self.encode(batch)))  # (B, 1)


@register_model(
    "ef_lstm",
    "Early-fusion LSTM over per-step concatenated aligned modalities (MMSA baseline)",
    config=EFLSTMConfig,
)
def ef_lstm(spec: DatasetSpec, *, text_encoder: str | None = None, **cfg) -> EFLSTM:
    """Build :class:`EFLSTM` for an aligned ``spec``; ``cfg`` holds :class:`EFLSTMConfig` fields."""
    check_no_text_encoder("ef_lstm", text_encoder)
    return EFLSTM(spec, EFLSTMConfig(**cfg))
