"""Word alignment: audio and vision frames averaged over each word interval and given to its tokens.

This is what MMSA's aligned files hold (CMU SDK word alignment, then one row per text position): every
sub-token of a word gets the mean of the frames inside the word's ``[start, end)``; ``[CLS]``, ``[SEP]``
and padding positions get zeros. A word shorter than a frame gets the frame nearest its midpoint.
"""

from __future__ import annotations

import numpy as np

from emodistill.extract.asr import Word


def word_means(
    frames: np.ndarray, times: np.ndarray, words: list[Word], valid: np.ndarray | None = None
) -> np.ndarray:
    """Mean frame per word.

    Args:
        frames: (T, D) features.
        times: (T,) frame centre times in seconds.
        words: timed words.
        valid: (T,) bool, frames that carry data (e.g. a face was found); None = all.

    Returns:
        (W, D) float32; a word with no valid frame inside (or nearest) gets zeros.
    """
    valid = np.ones(len(times), dtype=bool) if valid is None else valid
    out = np.zeros((len(words), frames.shape[1]), dtype=np.float32)
    if len(times) == 0:
        return out
    for i, w in enumerate(words):
        inside = (times >= w.start) & (times < w.end)
        if not inside.any():  # shorter than a frame: the nearest frame to the word's midpoint
            inside = np.zeros(len(times), dtype=bool)
            inside[np.argmin(np.abs(times - 0.5 * (w.start + w.end)))] = True
        use = inside & valid
        if use.any():
            out[i] = frames[use].mean(axis=0)
    return out


def to_tokens(per_word: np.ndarray, word_index: np.ndarray) -> np.ndarray:
    """(W, D) word rows -> (L, D) token rows via ``word_index`` (L,) (-1: special token or padding -> 0)."""
    out = np.zeros((len(word_index), per_word.shape[1]), dtype=np.float32)
    real = (word_index >= 0) & (word_index < len(per_word))
    out[real] = per_word[word_index[real]]
    return out
