"""How a dictionary is used and what its atoms mean: usage, concept recovery, cross-modal agreement.

Inputs are dictionary activations ``(N, K)`` (each row a distribution over ``K`` atoms, as DHMD's
``interpret()`` reports them under ``activations/<space>/<m>``) and, on ``synth-concepts``, the
planted concept intensities ``(N, C)``. A clip's *top atom* is the argmax of its activation row (the
first one on ties); a clip's *concept* is its primary (strongest) planted concept.

* **Usage** (codebook usage as VQ work reports it, e.g. van den Oord et al. 2017; Baevski et al.
  2020): ``share[k]`` = fraction of clips whose top atom is ``k``; ``perplexity = exp(H(share))``
  (natural log; 1 = every clip on one atom, K = uniform use); ``atoms_used`` = atoms that are the
  top atom of at least :data:`USED_SHARE` of the clips; ``soft_perplexity = exp(H(mean_n a[n]))``,
  the same on the mean activation; ``support`` = mean number of non-zero atoms per clip.
* **Concept recovery**: normalised mutual information between top atom and concept,
  ``NMI = I(A; C) / ((H(A) + H(C)) / 2)`` (arithmetic normalisation, scikit-learn's default; 1 when
  both labelings are constant), and purity = ``sum_k max_c n[k, c] / N``.
* **Cross-modal agreement**: fraction of clips whose top atoms are the same in every modality.
"""

from __future__ import annotations

import math

import numpy as np

USED_SHARE = 0.01
"""An atom is *used* when it is the top atom of at least this fraction of the clips."""


def _entropy(p: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution ``p`` (zeros allowed)."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def top_atoms(acts: np.ndarray) -> np.ndarray:
    """(N,) index of each clip's largest activation from ``acts`` (N, K)."""
    return np.asarray(acts).argmax(axis=1)


def usage(acts: np.ndarray) -> dict[str, float]:
    """Usage statistics of one modality's activations ``(N, K)``; see the module docstring."""
    acts = np.asarray(acts, dtype=np.float64)
    n, k = acts.shape
    share = np.bincount(top_atoms(acts), minlength=k) / n  # (K,)
    mean = acts.mean(axis=0)  # (K,)
    return {
        "perplexity": math.exp(_entropy(share)),
        "atoms_used": int((share >= USED_SHARE).sum()),
        "soft_perplexity": math.exp(_entropy(mean / mean.sum())),
        "support": float((acts > 0).sum(axis=1).mean()),
    }


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(max(a)+1, max(b)+1)`` counts ``n[i, j]`` of clips with ``a == i`` and ``b == j``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    return table


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """NMI of two labelings of the same clips, ``I / mean(H(a), H(b))``; 1.0 when both are constant."""
    table = contingency(a, b).astype(np.float64)
    p = table / table.sum()
    pa, pb = p.sum(1), p.sum(0)
    ha, hb = _entropy(pa), _entropy(pb)
    if ha == 0 and hb == 0:
        return 1.0
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    return max(0.0, mi / (0.5 * (ha + hb)))


def purity(atoms: np.ndarray, concepts: np.ndarray) -> float:
    """``sum_k max_c n[k, c] / N``: each atom's clips counted under its majority concept."""
    table = contingency(atoms, concepts)
    return float(table.max(axis=1).sum() / table.sum())


def concept_recovery(acts: np.ndarray, concepts: np.ndarray) -> dict[str, float]:
    """NMI and purity between the top atoms of ``acts`` (N, K) and the primary concepts of ``concepts``
    (N, C)."""
    atoms, primary = top_atoms(acts), np.asarray(concepts).argmax(axis=1)
    return {"nmi": normalized_mutual_info(atoms, primary), "purity": purity(atoms, primary)}


def concept_atom_matrix(acts: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """(C, K) ``P(top atom = k | primary concept = c)``; rows of absent concepts are 0."""
    k, c = np.asarray(acts).shape[1], np.asarray(concepts).shape[1]
    table = np.zeros((c, k))
    np.add.at(table, (np.asarray(concepts).argmax(axis=1), top_atoms(acts)), 1)
    rows = table.sum(axis=1, keepdims=True)
    return np.divide(table, rows, out=np.zeros_like(table), where=rows > 0)


def agreement(acts: dict[str, np.ndarray]) -> float:
    """Fraction of clips whose top atom is the same in every modality of ``acts`` ``{m: (N, K)}``."""
    tops = np.stack([top_atoms(a) for a in acts.values()])  # (M, N)
    return float((tops == tops[:1]).all(axis=0).mean())


def dictionary_summary(named: dict[str, np.ndarray], concepts: np.ndarray | None = None) -> dict[str, dict]:
    """Every measure above for ``named`` activations ``{"activations/<space>/<m>": (N, K)}``.

    Returns:
        ``{space: {m: {usage... [, nmi, purity]}, "agreement": float}}``; concept measures only when
        ``concepts`` (N, C) is given. ``{}`` when ``named`` holds no activations.
    """
    spaces: dict[str, dict[str, np.ndarray]] = {}
    for key, value in named.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "activations":
            spaces.setdefault(parts[1], {})[parts[2]] = np.asarray(value)
    out: dict[str, dict] = {}
    for space, per_mod in spaces.items():
        entry: dict = {}
        for m, a in per_mod.items():
            entry[m] = usage(a)
            if concepts is not None:
                entry[m].update(concept_recovery(a, concepts))
        entry["agreement"] = agreement(per_mod)
        out[space] = entry
    return out
