"""One clip's stored features as a batch (emodistill.inference.arrays): padding as the data reader pads,
lengths, and one-line refusals naming the key, the expected and the found shape or value."""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.inference.arrays import FeatureShapeError, feature_split
from emodistill.spec import DatasetSpec

UNALIGNED = DatasetSpec("custom", False, {"text": 4, "audio": 3, "vision": 2}, {"text": 5, "audio": 6, "vision": 7})


def _arrays(n_words=3, t_a=4, t_v=5):
    rng = np.random.default_rng(0)
    ids = np.array([[101, 2000, 102], [1, 1, 1], [0, 0, 0]], dtype=float)[:, :n_words]
    return {"text": rng.normal(size=(n_words, 4)).tolist(), "text_bert": ids.tolist(),
            "audio": rng.normal(size=(t_a, 3)).tolist(), "vision": rng.normal(size=(t_v, 2)).tolist()}


def test_rows_are_zero_padded_to_the_trained_lengths_with_true_lengths():
    a = _arrays()
    split = feature_split(UNALIGNED, a)
    assert split.text.shape == (1, 5, 4) and split.audio.shape == (1, 6, 3) and split.vision.shape == (1, 7, 2)
    np.testing.assert_array_equal(split.audio[0, :4], np.asarray(a["audio"], np.float32))
    assert not split.audio[0, 4:].any() and not split.text[0, 3:].any() and not split.text_bert[0, :, 3:].any()
    assert split.audio_lengths.tolist() == [4] and split.vision_lengths.tolist() == [5]
    # a stored (padded) row with its lengths: the given lengths win
    split = feature_split(UNALIGNED, {**_arrays(t_a=6), "audio_lengths": [2]})
    assert split.audio_lengths.tolist() == [2]


@pytest.mark.parametrize(("change", "message"), [
    ({"audio": np.zeros((7, 3)).tolist()}, "audio: expected shape (T <= 6, 3), found (7, 3)"),
    ({"vision": np.zeros((5, 3)).tolist()}, "vision: expected shape (T <= 7, 2), found (5, 3)"),
    ({"text": np.zeros((6, 4)).tolist()}, "text: expected shape (L <= 5, 4), found (6, 4)"),
    ({"text_bert": [[101.5, 2000, 102], [1, 1, 1], [0, 0, 0]]}, "text_bert: row 0 (token ids) expected whole"),
    ({"text_bert": [[101, 2000, 102], [1, 2, 1], [0, 0, 0]]}, "text_bert: row 1 (attention mask) expected 0 or 1"),
    ({"text_bert": [[101, 2000, 102], [0, 0, 0], [0, 0, 0]]}, "text_bert: row 1 (attention mask) expected at least"),
    ({"text_bert": [[101, 2000], [1, 1], [0, 0]]}, "text_bert: expected shape (3, 3) (text has 3 rows), found (3, 2)"),
    ({"audio_lengths": 9}, "audio_lengths: expected a whole number in [1, 4] (the stored frames), found 9"),
    ({"audio": [[1.0, float("nan"), 0.0]] * 4}, "audio: expected finite numbers, found NaN or infinity"),
    ({"colour": [1]}, "colour: not a feature key"),
])
def test_wrong_arrays_are_refused_in_one_line(change, message):
    with pytest.raises(FeatureShapeError) as err:
        feature_split(UNALIGNED, {**_arrays(), **change})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_token_ids_past_the_text_models_vocabulary_are_refused():
    feature_split(UNALIGNED, _arrays(), vocab_size=2001)
    with pytest.raises(FeatureShapeError, match=r"expected ids < 2000 \(the text model's vocabulary\), found 2000"):
        feature_split(UNALIGNED, _arrays(), vocab_size=2000)
