"""Cross-modal dictionary matching, the fine-grained stage of DHMD (our reconstruction; see ``dhmd.py``).

In one decoupled space, a dictionary of ``K`` learnable atoms is shared by the three modalities. Each
modality's token sequence is projected into query vectors, every time step is scored against every atom
(cosine similarity over a temperature), the scores are pooled over time, and a sparse activation over
the atoms is taken. The modality's *dictionary feature* is the activation-weighted sum of atoms. Because
all modalities express themselves in the same atoms, their activations are comparable distributions,
and a student modality can be pulled towards a teacher's (:func:`activation_distance`).

Activations (``activation``):

* ``sparsemax`` (default; Martins & Astudillo, ICML 2016): the Euclidean projection onto the simplex.
  It gives exact zeros, so each clip uses a handful of atoms (readable activation maps, the paper's
  "dictionary activations"), it has a closed form (sort + cumsum), and its only knob is the temperature.
  Its Jacobian is what autograd derives from the closed form, so no custom backward is needed.
* ``softmax``: dense, for comparison.
* ``topk``: softmax over the ``top_k`` largest scores, zeros elsewhere (FDT-style hard sparsity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("sparsemax", "softmax", "topk")
POOLINGS = ("max", "mean")
DISTANCES = ("js", "kl", "l1", "soft")
KL_SMOOTHING = 1e-4
"""Mass mixed into both distributions before a KL divergence, so that the sparse zeros stay finite."""
_TINY = 1e-12


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """Sparsemax of ``z`` along ``dim``: ``argmin_{p in simplex} ||p - z||^2``.

    With ``z`` sorted decreasingly, the support size is ``k = max{j : 1 + j z_(j) > sum_{i<=j} z_(i)}``,
    the threshold ``tau = (sum_{i<=k} z_(i) - 1) / k`` and ``p = max(z - tau, 0)``.
    """
    z = z.transpose(dim, -1)
    zs, _ = torch.sort(z, dim=-1, descending=True)
    cssv = zs.cumsum(-1)  # (..., K)
    j = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = (1 + j * zs) > cssv  # true for j = 1..k (a prefix)
    k = support.sum(-1, keepdim=True)  # (..., 1), >= 1
    tau = (cssv.gather(-1, k - 1) - 1) / k.to(z.dtype)
    return torch.clamp_min(z - tau, 0).transpose(dim, -1)


def sparse_activation(scores: Tensor, kind: str, top_k: int = 8) -> Tensor:
    """Distribution over atoms ``(..., K)`` from pooled scores ``(..., K)``; see the module docstring."""
    if kind == "sparsemax":
        return sparsemax(scores)
    if kind == "softmax":
        return torch.softmax(scores, dim=-1)
    if kind == "topk":
        k = min(top_k, scores.shape[-1])
        kth = scores.topk(k, dim=-1).values[..., -1:]  # (..., 1)
        return torch.softmax(scores.masked_fill(scores < kth, float("-inf")), dim=-1)
    raise ValueError(f"dictionary activation {kind!r} unknown; choose from {ACTIVATIONS}")


def _xlogy_ratio(p: Tensor, q: Tensor) -> Tensor:
    """``p * log(p / q)`` elementwise with ``0 log 0 = 0``, finite gradients at ``p = 0``."""
    safe = p > 0
    val = p * (p.clamp_min(_TINY).log() - q.clamp_min(_TINY).log())
    return torch.where(safe, val, torch.zeros_like(val))


def activation_distance(
    student: Tensor, teacher: Tensor, kind: str = "js", student_scores: Tensor | None = None
) -> Tensor:
    """Per-sample distance between activation distributions ``(B, K)`` -> ``(B,)``.

    The caller detaches ``teacher``. ``js``: Jensen-Shannon divergence (natural log, in [0, log 2]),
    finite when either side has zeros, which sparsemax produces; ``kl``: ``KL(teacher || student)`` after
    mixing :data:`KL_SMOOTHING` uniform mass into both; ``l1``: ``sum |student - teacher|`` (in [0, 2]);
    ``soft``: ``KL(teacher || softmax(student_scores))``, the teacher's sparse activation as the soft
    target of the student's dense distribution over its time-pooled scores ``(B, K)`` (Hinton et al.'s
    distillation). The first three compare two sparse distributions. When the supports are disjoint, JS
    and L1 sit at their maximum (``log 2``, ``2``) with a gradient that sparsemax turns into exactly zero on
    the student's scores (zero off its support, a constant removed on it); smoothed KL gives one of the
    order of :data:`KL_SMOOTHING`. So they cannot pull a student towards atoms it does not use yet;
    ``soft`` has a gradient on every atom.
    """
    if kind == "soft":
        if student_scores is None:
            raise ValueError("activation_distance(kind='soft') needs the student's pooled scores")
        log_q = torch.log_softmax(student_scores, dim=-1)
        return _xlogy_ratio(teacher, torch.ones_like(teacher)).sum(-1) - (teacher * log_q).sum(-1)
    if kind == "js":
        m = 0.5 * (student + teacher)
        return 0.5 * (_xlogy_ratio(student, m).sum(-1) + _xlogy_ratio(teacher, m).sum(-1))
    if kind == "kl":
        k = student.shape[-1]
        p = (teacher + KL_SMOOTHING) / (1 + k * KL_SMOOTHING)
        q = (student + KL_SMOOTHING) / (1 + k * KL_SMOOTHING)
        return _xlogy_ratio(p, q).sum(-1)
    if kind == "l1":
        return (student - teacher).abs().sum(-1)
    raise ValueError(f"dictionary distance {kind!r} unknown; choose from {DISTANCES}")


class DictionarySpace(nn.Module):
    """One space's shared dictionary and the per-modality query projections.

    Args:
        width: width of the space's tokens and atoms (``d`` homo, ``2d`` hetero).
        size: number of atoms ``K``.
        modalities: modality keys, e.g. ``("l", "v", "a")``.
        temperature: divides the cosine scores (in [-1, 1]); smaller = sparser activations.
        activation: one of :data:`ACTIVATIONS`.
        pool: temporal pooling of the scores, ``max`` (FDT) or ``mean``.
        top_k: atoms kept by the ``topk`` activation.
        shared_query: one query projection for every modality instead of one each.
    """

    def __init__(
        self,
        width: int,
        size: int,
        modalities: tuple[str, ...],
        temperature: float = 0.1,
        activation: str = "sparsemax",
        pool: str = "max",
        top_k: int = 8,
        shared_query: bool = False,
    ) -> None:
        super().__init__()
        self.temperature, self.activation, self.pool, self.top_k = temperature, activation, pool, top_k
        # |atom| ~ 1 at init, so a dictionary feature starts at the scale of one unit vector
        self.atoms = nn.Parameter(torch.randn(size, width) / math.sqrt(width))
        # LayerNorm then Linear: the encoders' outputs differ in scale per modality; the LN evens them out
        names = ("shared",) if shared_query else modalities
        self.query = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width)) for m in names})
        self.shared_query = shared_query

    def forward(
        self, tokens: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, dict[str, Tensor]]]:
        """Dictionary features, activations, and the pooled scores plus (training mode) what the
        anti-collapse terms need.

        Args:
            tokens: per modality ``(B, T_m, width)``.

        Returns:
            ``(features, activations, aux)``: per modality ``(B, width)`` and ``(B, K)`` (rows sum to 1);
            ``aux`` is ``{"scores": {m: (B, K)}}``, the time-pooled scores (the ``soft`` distance,
            :func:`cross_modal_contrast`), plus in training mode ``"commit": {m: (B, 2)}``, the cosine
            distances between the clip's winning query step and its top atom (:func:`commitment_distances`).
        """
        atoms = F.normalize(self.atoms, dim=-1)  # (K, width)
        feats, acts, commit, pooled_scores = {}, {}, {}, {}
        for m, x in tokens.items():
            q = F.normalize(self.query["shared" if self.shared_query else m](x), dim=-1)  # (B, T, width)
            scores = torch.matmul(q, atoms.t()) / self.temperature  # (B, T, K)
            pooled = scores.amax(dim=1) if self.pool == "max" else scores.mean(dim=1)  # (B, K)
            a = sparse_activation(pooled, self.activation, self.top_k)
            acts[m] = a
            feats[m] = a @ self.atoms  # (B, width): the un-normalised atoms carry the learnt scale
            pooled_scores[m] = pooled
            if self.training:  # training-only term: inference never pays for it
                commit[m] = commitment_distances(q, scores, a, atoms)
        aux = {"scores": pooled_scores, **({"commit": commit} if self.training else {})}
        return feats, acts, aux


def cross_modal_contrast(scores: dict[str, Tensor], temperature: float) -> Tensor:
    """Symmetric InfoNCE between every pair of modalities' atom-score profiles (CLIP, Radford et al. 2021;
    FDT aligns its dictionary features the same way).

    Clip ``i``'s profile in modality ``m`` (its time-pooled scores over the ``K`` atoms) must be closer,
    by cosine, to clip ``i``'s profile in modality ``n`` than to any other clip's in the batch. What the
    modalities of one clip share is what they say in common, so matching it needs atoms that stand for
    shared content; spreading clips apart also works against collapse.

    Args:
        scores: per modality ``(B, K)``.
        temperature: divides the cosine similarities.

    Returns:
        The mean over ordered modality pairs of the cross-entropy of the ``(B, B)`` similarity rows
        against the diagonal; ``0`` for a batch of one clip.
    """
    z = {m: F.normalize(s, dim=-1) for m, s in scores.items()}  # (B, K) unit rows
    mods = list(z)
    bsz = z[mods[0]].shape[0]
    if bsz < 2:
        return z[mods[0]].new_zeros(())
    target = torch.arange(bsz, device=z[mods[0]].device)
    terms = []
    for i, m in enumerate(mods):
        for n in mods[i + 1 :]:
            logits = z[m] @ z[n].t() / temperature  # (B, B): row = clip in m, column = clip in n
            terms += [F.cross_entropy(logits, target), F.cross_entropy(logits.t(), target)]
    return torch.stack(terms).mean()


def commitment_distances(queries: Tensor, scores: Tensor, acts: Tensor, atoms: Tensor) -> Tensor:
    """VQ-VAE's two distances (van den Oord et al., NeurIPS 2017), in cosine form, for the top atom.

    A clip's top atom ``k* = argmax a``; its *winning step* ``t*`` is the time step with the highest
    score for ``k*`` (with max pooling, the step that made ``k*`` win). Both are unit vectors, so
    ``1 - cos`` is half their squared distance.

    Args:
        queries: ``(B, T, width)`` unit query vectors.
        scores: ``(B, T, K)`` scores.
        acts: ``(B, K)`` activations.
        atoms: ``(K, width)`` unit atoms.

    Returns:
        ``(B, 2)``: ``[1 - cos(q_t*, stopgrad(atom_k*)), 1 - cos(stopgrad(q_t*), atom_k*)]``.
    """
    bsz = queries.shape[0]
    top = acts.argmax(dim=-1)  # (B,)
    t_star = scores.gather(2, top.view(bsz, 1, 1).expand(bsz, scores.shape[1], 1)).squeeze(2).argmax(1)  # (B,)
    q = queries[torch.arange(bsz, device=queries.device), t_star]  # (B, width)
    e = atoms[top]  # (B, width)
    return torch.stack([1 - (q * e.detach()).sum(-1), 1 - (q.detach() * e).sum(-1)], dim=1)


def usage_deficit(acts: Tensor) -> Tensor:
    """``1 - H(mean_b a[b]) / log K`` of one modality's batch activations ``(B, K)``: 0 when the batch
    spreads its mass evenly over the atoms, 1 when every clip uses the same single atom.

    The batch-level entropy of codebook usage, as wav2vec 2.0's diversity loss (Baevski et al., NeurIPS
    2020) maximises it: it penalises the batch's *mean* distribution only, so each clip may stay sparse.
    """
    k = acts.shape[-1]
    p = acts.mean(dim=0)  # (K,)
    h = -(p * p.clamp_min(_TINY).log()).sum()
    return 1 - h / math.log(k)
