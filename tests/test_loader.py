"""BatchLoader: batch contents, deterministic (seed, epoch) order, coverage, drop_last."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.data import load_mmsa
from emodistill.data.loader import BatchLoader


@pytest.fixture
def unaligned(mmsa_writer):
    return load_mmsa(mmsa_writer(n=(23, 4, 4), aligned=False, dims=(16, 4, 6), lens=(8, 10, 12)))


def _order(loader):
    return torch.cat([b["index"] for b in loader]).tolist()


def test_batch_keys_shapes_and_values(unaligned):
    split = unaligned.train
    loader = BatchLoader(split, 5, shuffle=True, seed=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 5  # ceil(23 / 5)
    b = batches[0]
    assert set(b) == {
        "text",
        "text_bert",
        "audio",
        "vision",
        "audio_lengths",
        "vision_lengths",
        "labels",
        "index",
    }
    assert b["text"].shape == (5, 8, 16) and b["text"].dtype == torch.float32
    assert b["text_bert"].shape == (5, 3, 8)
    assert b["audio"].shape == (5, 10, 4) and b["vision"].shape == (5, 12, 6)
    assert b["audio_lengths"].dtype == b["index"].dtype == torch.int64
    assert b["labels"].shape == (5,) and b["labels"].dtype == torch.float32
    idx = b["index"].numpy()
    np.testing.assert_array_equal(b["audio"].numpy(), split.audio[idx])
    np.testing.assert_array_equal(b["vision_lengths"].numpy(), split.vision_lengths[idx])
    np.testing.assert_array_equal(b["labels"].numpy(), split.labels[idx])
    assert batches[-1]["labels"].shape == (3,)


def test_same_seed_and_epoch_same_order_other_epoch_differs(unaligned):
    a = BatchLoader(unaligned.train, 4, shuffle=True, seed=7)
    b = BatchLoader(unaligned.train, 4, shuffle=True, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    order2 = _order(a)
    assert order2 == _order(b)
    a.set_epoch(3)
    assert _order(a) != order2
    other_seed = BatchLoader(unaligned.train, 4, shuffle=True, seed=8)
    other_seed.set_epoch(2)
    assert _order(other_seed) != order2
    for order in (order2, _order(a)):
        assert sorted(order) == list(range(23))  # every row exactly once


def test_iteration_advances_epoch_and_resume_matches(unaligned):
    run = BatchLoader(unaligned.train, 4, shuffle=True, seed=1)
    orders = [_order(run) for _ in range(3)]  # epochs 0, 1, 2
    resumed = BatchLoader(unaligned.train, 4, shuffle=True, seed=1)
    resumed.set_epoch(2)
    assert _order(resumed) == orders[2]
    assert orders[0] != orders[1]


def test_no_shuffle_and_drop_last(unaligned):
    loader = BatchLoader(unaligned.train, 5, shuffle=False, drop_last=True)
    assert len(loader) == 4
    assert _order(loader) == list(range(20))
    assert all(len(b["labels"]) == 5 for b in loader)


def test_aligned_lengths_are_full_T_and_sims_labels_included(aligned_pkl, sims_pkl):
    aligned = load_mmsa(aligned_pkl)
    b = next(iter(BatchLoader(aligned.train, 4, shuffle=False)))
    assert b["audio_lengths"].tolist() == [8] * 4 and b["vision_lengths"].tolist() == [8] * 4
    sims = load_mmsa(sims_pkl)
    b = next(iter(BatchLoader(sims.train, 4, shuffle=False)))
    np.testing.assert_array_equal(b["labels_V"].numpy(), sims.train.unimodal_labels["V"][:4])


def test_keep_on_device_gives_same_batches(unaligned):
    a = BatchLoader(unaligned.train, 6, shuffle=True, seed=0, device="cpu", keep_on_device=True)
    b = BatchLoader(unaligned.train, 6, shuffle=True, seed=0)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size=0"):
        BatchLoader(None, 0, shuffle=False)  # type: ignore[arg-type]
