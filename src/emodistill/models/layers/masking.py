"""Which time steps of a padded batch hold data: per-modality masks ``(B, T)`` and lengths ``(B,)``.

Valid steps: text from the ``text_bert`` input mask (else the non-zero rows of ``text``); audio/vision
from ``*_lengths`` in unaligned data, and the text mask in aligned data, whose modalities share the word
timeline (MMSA sets ``audio_lengths = vision_lengths = text_bert[:, 1].sum()`` for aligned data,
``data_loader.py`` L98-100). :func:`nonzero_rows_mask` is the late-fusion baseline's older variant, kept
for its numbers: in aligned data it counts an audio/vision step only if that modality's own row is non-zero.
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


def nonzero_rows_mask(batch: dict[str, Tensor], modality: str, aligned: bool) -> Tensor:
    """(B, T) valid steps of ``modality`` as the late-fusion baseline counts them: text as :func:`text_mask`;
    audio/vision the steps within ``*_lengths`` and, in aligned data, only those whose own feature row is
    non-zero.

    It differs from :func:`modality_mask` in aligned data only, where that one takes the text mask for
    audio and vision: here an audio/vision row of zeros inside the text span does not count (nor would a
    non-zero row beyond it). :class:`~emodistill.models.late_fusion.LateFusion` has always pooled this way,
    and its trained weights and numbers depend on it, so it keeps this definition.
    """
    if modality == "text":
        return text_mask(batch)  # (B, T_l)
    x = batch[modality]  # (B, T, D)
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    mask = steps[None, :] < batch[f"{modality}_lengths"][:, None]  # (B, T)
    if aligned:
        # Aligned files carry no lengths (the loader reports T), yet they are zero-padded on the word
        # timeline; averaging the padding would shrink the features of short clips toward zero.
        mask = mask & (x != 0).any(-1)
    return mask


def mask_lengths(mask: Tensor) -> Tensor:
    """Valid steps per sample (B,) int64 of a prefix mask (B, T); at least 1, as an LSTM needs one step."""
    return mask.sum(1).clamp_min(1).long()  # (B,)
