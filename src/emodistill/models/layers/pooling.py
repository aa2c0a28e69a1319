"""Padded sequences to one vector per sample, over the valid steps only: a masked mean and an LSTM's last
hidden state at each sequence's own length (masks and lengths: :mod:`emodistill.models.layers.masking`)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, T, D) over the steps where ``mask`` (B, T) is true -> (B, D).

    A sample with no valid step gives zeros (not NaN).
    """
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)


def last_hidden(lstm: nn.LSTM, x: Tensor, lengths: Tensor | None) -> Tensor:
    """Final hidden state of the top layer of ``lstm`` over ``x`` (B, T, D) -> (B, H).

    With ``lengths`` (B,) each sequence stops at its own length (packed); without, the LSTM runs over all
    T steps, padding included (MMSA's behaviour).
    """
    if lengths is not None:
        # pack_padded_sequence wants the lengths on the CPU whatever the device of x
        x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, (h_n, _) = lstm(x)  # h_n (layers, B, H)
    return h_n[-1]  # (B, H)
