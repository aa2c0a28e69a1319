"""Padded sequences to one vector per sample, over the valid steps only: a masked mean, an LSTM's last
hidden state at each sequence's own length, and a bidirectional RNN over padded input that equals its
packed run (masks and lengths: :mod:`emodistill.models.layers.masking`)."""

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


def _last_steps(lengths: Tensor, x: Tensor) -> Tensor:
    """Index of each sequence's last real step, ``lengths - 1`` with lengths clamped to ``[1, T]`` of ``x``
    ``(B, T, D)``: int64 ``(B,)`` on ``x``'s device."""
    return lengths.to(x.device, torch.long).clamp(1, x.shape[1]) - 1


def last_hidden(lstm: nn.LSTM, x: Tensor, lengths: Tensor | None) -> Tensor:
    """Final hidden state of the top layer of ``lstm`` over ``x`` (B, T, D) -> (B, H).

    With ``lengths`` (B,) each sequence stops at its own length (packed); without, the LSTM runs over all
    T steps, padding included (MMSA's behaviour). Under ``torch.export`` (ONNX export), which cannot trace
    packed sequences, the LSTM runs over the padded input and the top layer's output at step ``length - 1``
    is read instead: for a unidirectional LSTM that is the same state, since the padding comes after it.
    """
    if lengths is not None and torch.compiler.is_exporting():
        if lstm.bidirectional:  # its backward direction would start in the padding: bidirectional_padded
            raise NotImplementedError("last_hidden has no export path for a bidirectional RNN; "
                                      "use bidirectional_padded")
        out, _ = lstm(x)  # (B, T, H): the top layer's hidden state at every step
        last = _last_steps(lengths, x).view(-1, 1, 1).expand(-1, 1, out.shape[-1])  # (B, 1, H)
        return out.gather(1, last).squeeze(1)  # (B, H)
    if lengths is not None:
        # pack_padded_sequence wants the lengths on the CPU whatever the device of x
        x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, (h_n, _) = lstm(x)  # h_n (layers, B, H)
    return h_n[-1]  # (B, H)


def _direction(rnn: nn.LSTM | nn.GRU, x: Tensor, suffix: str) -> Tensor:
    """One direction of a one-layer ``rnn`` (``suffix`` "" forward, "_reverse" backward weights) run forward
    over batch-first ``x`` (B, T, D) from a zero state -> outputs (B, T, H)."""
    params = [getattr(rnn, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    h0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        return torch.lstm(x, (h0, h0), params, True, 1, 0.0, False, False, True)[0]
    return torch.gru(x, h0, params, True, 1, 0.0, False, False, True)[0]


def bidirectional_padded(rnn: nn.LSTM | nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """A one-layer bidirectional LSTM/GRU over padded ``x`` (B, T, D) as if each sequence were packed to its
    ``lengths`` (B,) (clamped to ``[1, T]``), without packed sequences (which ``torch.export`` cannot trace).

    The forward direction runs over the padded input; its state at step ``length - 1`` is the packed final
    state, since the padding comes after it. The backward direction runs forward over each sequence
    reversed *within its length* (step ``t`` reads ``x[length - 1 - t]``), so it starts at the last real
    step as the packed run does; its outputs are put back in time order with the same index map.

    Returns:
        ``(outputs (B, T, 2H), final hidden states (2, B, H))``: the outputs equal the packed run's at every
        step below the sequence's length (beyond it they are not zero, unlike ``pad_packed_sequence``);
        the states are ``h_n`` of the packed run, forward then backward.
    """
    if not (rnn.bidirectional and rnn.num_layers == 1 and rnn.batch_first and rnn.bias
            and getattr(rnn, "proj_size", 0) == 0):
        raise ValueError("bidirectional_padded needs a one-layer, batch-first, biased, bidirectional RNN "
                         "without projection")
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    last = _last_steps(lengths, x).view(-1, 1)  # (B, 1)
    rev = torch.where(t <= last, last - t, t)  # (B, T): an involution, the identity on the padding
    rows = torch.arange(x.shape[0], device=x.device)  # (B,)
    fw = _direction(rnn, x, "")  # (B, T, H)
    bw_rev = _direction(rnn, x[rows.unsqueeze(1), rev], "_reverse")  # (B, T, H)
    bw = bw_rev[rows.unsqueeze(1), rev]  # back to time order
    end = last.squeeze(1)  # (B,)
    h_n = torch.stack([fw[rows, end], bw_rev[rows, end]])  # (2, B, H)
    return torch.cat([fw, bw], dim=-1), h_n
