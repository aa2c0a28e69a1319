"""Which time steps of a padded batch hold data: per-modality masks ``(B, T)`` and lengths ``(B,)``.

Valid steps: text from the ``text_bert`` input mask (else the non-zero rows of ``text``); audio/vision
from ``*_lengths`` in unaligned data, and the text mask in aligned data, whose modalities share the word
timeline (MMSA sets ``audio_lengths = vision_lengths = text_bert[:, 1].sum()`` for aligned data,
``data_loader.py`` L98-100).
"""

from __future__ import annotations

import torch
from torch import Tensor


def text_mask(batch: dict[str, Tensor]) -> Tensor:
    """(B, T_l) True on real tokens: the ``text_bert`` input mask, else the non-zero rows of ``text``."""
    if "text_bert" in batch:
        return batch["text_bert"][:, 1] > 0.5  # (B, T_l)
    return (batch["text"] != 0).any(-1)  # (B, T_l)


def modality_mask(batch: dict[str, Tensor], modality: str, aligned: bool) -> Tensor:
    """(B, T) True on the valid steps of ``modality`` ("text", "audio" or "vision").

    Aligned data puts every modality on the word timeline, so audio/vision share the text mask (the
    loader reports ``*_lengths = T`` for aligned files, which would count the zero padding).
    """
    if modality == "text" or aligned:
        return text_mask(batch)
    x = batch[modality]  # (B, T, D)
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    return steps[None, :] < batch[f"{modality}_lengths"][:, None]  # (B, T)


def mask_lengths(mask: Tensor) -> Tensor:
    """Valid steps per sample (B,) int64 of a prefix mask (B, T); at least 1, as an LSTM needs one step."""
    return mask.sum(1).clamp_min(1).long()  # (B,)
