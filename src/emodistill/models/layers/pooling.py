"""Padded sequences to one vector per sample, over the valid steps only: a masked mean and an LSTM's last
hidden state at each sequence's own length (masks and lengths: :mod:`emodistill.models.layers.masking`)."""

from __future__ import annotations

import torch
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
    T steps, padding included (MMSA's behaviour). Under ``torch.export`` (ONNX export), which cannot trace
    packed sequences, the LSTM runs over the padded input and the top layer's output at step ``length - 1``
    is read instead: for a unidirectional LSTM that is the same state, since the padding comes after it.
    """
    if lengths is not None and torch.compiler.is_exporting():
        if lstm.bidirectional:  # its backward direction would start in the padding
            raise NotImplementedError("a bidirectional RNN over packed sequences has no export path")
        out, _ = lstm(x)  # (B, T, H): the top layer's hidden state at every step
        last = (lengths.to(torch.long).clamp(1, x.shape[1]) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)  # (B, H)
    if lengths is not None:
        # pack_padded_sequence wants the lengths on the CPU whatever the device of x
        x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, (h_n, _) = lstm(x)  # h_n (layers, B, H)
    return h_n[-1]  # (B, H)
