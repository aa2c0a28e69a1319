"""Dictionary usage, concept recovery and agreement (metrics/dictionary.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emodistill.metrics import dictionary as D


def _one_hot(idx, k):
    return np.eye(k)[np.asarray(idx)]


def test_usage_hand_computed():
    # top atoms 0, 0, 1, 2 of K = 5: shares (.5, .25, .25, 0, 0)
    acts = np.array([[0.7, 0.3, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0.6, 0.4, 0, 0], [0, 0, 1, 0, 0]], dtype=float)
    u = D.usage(acts)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert u["perplexity"] == pytest.approx(math.exp(h))
    assert u["atoms_used"] == 3
    mean = np.array([1.7, 0.9, 1.4, 0, 0]) / 4  # column means
    assert u["soft_perplexity"] == pytest.approx(math.exp(-sum(p * math.log(p) for p in mean if p > 0)))
    assert u["support"] == pytest.approx((2 + 1 + 2 + 1) / 4)


def test_collapse_has_perplexity_one_and_the_one_percent_rule():
    assert D.usage(_one_hot([3] * 50, 8))["perplexity"] == pytest.approx(1.0)
    # 199 clips on atom 0 and 1 on atom 1: atom 1 has 0.5 % of the clips, below the 1 % bar
    u = D.usage(_one_hot([0] * 199 + [1], 4))
    assert u["atoms_used"] == 1
    assert D.usage(_one_hot([0] * 99 + [1], 4))["atoms_used"] == 2  # exactly 1 %


def test_nmi_hand_computed_and_limits():
    # a = (0,0,0,1), b = (0,0,1,1): p(0,0)=.5, p(0,1)=.25, p(1,1)=.25; p_a=(.75,.25), p_b=(.5,.5)
    mi = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(0.25 / 0.125)
    ha = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    hb = math.log(2)
    assert D.normalized_mutual_info([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(mi / ((ha + hb) / 2))
    assert D.normalized_mutual_info([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)  # a relabeling
    assert D.normalized_mutual_info([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)  # independent
    assert D.normalized_mutual_info([2, 2, 2], [5, 5, 5]) == 1.0  # both constant
    assert D.normalized_mutual_info([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0)  # one atom for all


def test_purity_recovery_and_concept_atom_matrix():
    atoms = np.array([0, 0, 0, 1])
    concepts = np.array([0, 0, 1, 1])
    assert D.purity(atoms, concepts) == pytest.approx(3 / 4)  # atom 0: 2 of concept 0; atom 1: 1
    intens = _one_hot(concepts, 3) * 0.8 + _one_hot([1, 2, 0, 0], 3) * 0.3  # primary = argmax = concepts
    acts = _one_hot(atoms, 4)
    rec = D.concept_recovery(acts, intens)
    assert rec["purity"] == pytest.approx(3 / 4)
    assert rec["nmi"] == pytest.approx(D.normalized_mutual_info(atoms, concepts))
    m = D.concept_atom_matrix(acts, intens)  # (C=3, K=4): P(atom | concept)
    assert m.shape == (3, 4)
    assert np.allclose(m[0], [1, 0, 0, 0]) and np.allclose(m[1], [0.5, 0.5, 0, 0]) and np.allclose(m[2], 0)


def test_agreement_and_summary():
    acts = {"l": _one_hot([0, 1, 2, 3], 4), "v": _one_hot([0, 1, 3, 3], 4), "a": _one_hot([0, 2, 2, 3], 4)}
    assert D.agreement(acts) == pytest.approx(2 / 4)  # clips 0 and 3
    named = {f"activations/homo/{m}": a for m, a in acts.items()} | {"edges/homo": np.zeros((4, 6))}
    s = D.dictionary_summary(named, concepts=_one_hot([0, 1, 2, 3], 4))
    assert set(s) == {"homo"} and s["homo"]["agreement"] == pytest.approx(0.5)
    assert s["homo"]["l"]["nmi"] == pytest.approx(1.0) and s["homo"]["l"]["perplexity"] == pytest.approx(4.0)
    assert "nmi" not in D.dictionary_summary(named)["homo"]["v"]
    assert D.dictionary_summary({"edges/homo": np.zeros((4, 6))}) == {}
