"""DHMD: Decoupled Hierarchical Distillation (Li, Wang, Ding, Zhang, Lu, Guan; TPAMI 2026;
arXiv 2602.04260), **reconstructed**.

No code is public and only the abstract of the paper could be read (docs/dmd-spec.md §9). What the abstract
states, and this model does: DMD's decoupling (modality-irrelevant "homo" and modality-exclusive "hetero"
spaces) and its coarse-grained distillation through a GD-Unit per space; then a fine-grained stage, a
*cross-modal dictionary matching* in each space that "aligns semantic granularities across modalities",
with "dictionary activations" per modality and space. Everything else below is **our choice**, made to be
consistent with that text and with FDT (Chen et al., CVPR 2023), whose shared token dictionary the
abstract's wording mirrors:

* one dictionary per space, shared by l, v, a (:class:`~emodistill.models.dmd.dictionary.DictionarySpace`),
  ``dict_size = 64`` atoms of the space's width (``d`` homo, ``2d`` hetero);
* tokens: homo = the shared features ``c_m`` ``(B, T', d)``; hetero = the crossmodal outputs that feed
  modality ``m``'s mem encoder ``(B, T', 2d)``; per-modality query = LayerNorm + Linear;
* scores = cosine(query, atom) / ``dict_temperature`` (0.1), ``max``-pooled over time (FDT), then
  ``sparsemax`` (exact zeros: a few atoms per clip; see the dictionary module for the alternatives);
  padding steps are not masked, as DMD masks nothing;
* the dictionary feature ``f_m = a_m @ atoms`` is *added* to the space's head representations: the homo
  heads' bottleneck (the HomoGD representation), the shared self-attention summary that feeds ``logits_c``
  and the fusion, and, in the hetero space, the mem-encoder summary that feeds the hetero heads and the
  fusion. Addition keeps every DMD module and shape, so with no dictionary the model *is* DMD;
* fine-grained distillation along each directed edge ``i -> j`` of the space's GD-Unit:
  ``L_fine = sum_x mean_b w[b, x] * Dist(a_j[b], stopgrad(a_i[b]))`` with ``w = E + prior`` exactly as
  DMD's coarse logit term (the "hierarchy": both levels follow the same graph, and the edges learn from
  both); ``Dist`` = Jensen-Shannon (``dict_distance``; KL and L1 available), since JS stays finite on
  sparse supports. These compare two sparse activations: when a student's support misses the teacher's
  atoms (most clips, measured) JS and L1 give its scores no gradient at all and smoothed KL one of the
  order of its smoothing; ``soft`` instead takes the teacher's activation as the target of the student's
  softmax over its pooled scores (README, "DHMD");
* ``weight_fine = 0.1`` per space in the total loss (DMD weighs its GD terms 0.05 and its decoupling
  terms 0.1; with ``js`` each edge's distance is at most ``log 2`` per sample, so it cannot dominate;
  ``soft`` is a KL against a softmax over scores in ``[-1/T, 1/T]``, up to about ``2/T + log K`` per
  edge, and starts 4-5x larger than ``js`` at the same weight).

* against codebook collapse (without it, the homo-space language dictionary put every clip on one atom:
  usage perplexity 1.0 on synth's validation split), a batch-level *usage* term per space,
  ``dict_usage_weight * mean_m (1 - H(mean_b a_m[b]) / log K)`` (wav2vec 2.0's diversity loss), default
  0.1, chosen on the validation split of ``synth`` (README, "DHMD"); it only asks the batch to spread
  over atoms, so each clip stays sparse. A VQ-style commitment term (``dict_commit_weight``, off by
  default) is the alternative that was measured. Both are training-only: inference is unchanged.

Ablation switches: ``dict_spaces`` (which spaces get a dictionary), ``weight_fine = 0`` (dictionary
features without matching), and DMD's ``decouple`` and ``disabled_losses`` (now also ``fine_homo``,
``fine_hetero``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emodistill.models.dmd.config import LOSS_TERMS, DMDConfig
from emodistill.models.dmd.dictionary import (
    ACTIVATIONS,
    DISTANCES,
    POOLINGS,
    DictionarySpace,
    activation_distance,
    cross_modal_contrast,
    usage_deficit,
)
from emodistill.models.dmd.gd_unit import EDGE_STUDENT, EDGE_TEACHER
from emodistill.models.dmd.model import DMD, MODS, DMDOutput
from emodistill.models.registry import register_model
from emodistill.spec import DatasetSpec

SPACES = ("homo", "hetero")
COMMITMENT_BETA = 0.25
"""Weight of the commitment side against the codebook side, VQ-VAE's beta."""


@dataclass
class DHMDConfig(DMDConfig):
    """DMD's hyper-parameters plus the dictionary stage (defaults are ours; see the module docstring)."""

    dict_spaces: tuple[str, ...] = SPACES
    """Spaces with a dictionary: any of ``homo``, ``hetero`` (empty = DMD)."""
    dict_size: int = 64
    """Atoms ``K`` per dictionary."""
    dict_temperature: float = 0.1
    """Divides the cosine scores; smaller gives sparser activations."""
    dict_activation: str = "sparsemax"
    """``sparsemax``, ``softmax`` or ``topk``."""
    dict_top_k: int = 8
    """Atoms kept by the ``topk`` activation."""
    dict_pool: str = "max"
    """Temporal pooling of the atom scores: ``max`` or ``mean``."""
    dict_distance: str = "js"
    """Fine-grained distillation distance between activations: ``js``, ``kl``, ``l1`` or ``soft`` (the
    teacher's activation as the target of the student's softmax over its pooled scores)."""
    weight_fine: float = 0.1
    """Total-loss weight of each space's fine-grained distillation term."""
    dict_usage_weight: float = 0.1
    """Total-loss weight of each space's usage term (anti-collapse): the mean over modalities of
    ``1 - H(batch-mean activation) / log K`` (wav2vec 2.0's diversity loss); 0 = off (DHMD as first released)."""
    dict_commit_weight: float = 0.0
    """Total-loss weight of each space's VQ-style commitment term (anti-collapse): the codebook distance
    plus 0.25 x the commitment distance between a clip's winning query and its top atom; 0 = off."""

    dict_shared_query: tuple[str, ...] = ()
    """Spaces whose dictionary uses one query projection for all modalities (e.g. ``[homo]``: the
    modality-irrelevant space, where a shared map lets the modalities reach the same atoms)."""
    dict_contrast_weight: float = 0.0
    """Total-loss weight of the homo space's cross-modal contrastive matching (InfoNCE between the
    modalities' atom-score profiles of the same clip); the hetero space is modality-exclusive by design and
    gets none; 0 = off."""
    dict_contrast_temperature: float = 0.1
    """Divides the cosine similarities of the contrastive matching."""

    loss_terms = (*LOSS_TERMS, "fine_homo", "fine_hetero", "usage_homo", "usage_hetero", "commit_homo",
                  "commit_hetero", "contrast_homo")

    def __post_init__(self) -> None:
        self.dict_spaces = tuple(str(s) for s in self.dict_spaces)
        self.dict_shared_query = tuple(str(s) for s in self.dict_shared_query)
        super().__post_init__()
        for name in ("dict_spaces", "dict_shared_query"):
            bad = sorted(set(getattr(self, name)) - set(SPACES))
            if bad:
                raise ValueError(f"DHMDConfig.{name}: unknown spaces {bad}; expected any of {list(SPACES)}")
        for name, allowed in (
            ("dict_activation", ACTIVATIONS),
            ("dict_pool", POOLINGS),
            ("dict_distance", DISTANCES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"DHMDConfig.{name}={getattr(self, name)!r}; choose from {list(allowed)}")
        if self.dict_size < 2 or self.dict_top_k < 1:
            raise ValueError(f"DHMDConfig.dict_size={self.dict_size} must be >= 2 and dict_top_k >= 1")
        if self.dict_temperature <= 0 or self.weight_fine < 0:
            raise ValueError("DHMDConfig.dict_temperature must be > 0 and weight_fine >= 0")
        for name in ("dict_usage_weight", "dict_commit_weight", "dict_contrast_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"DHMDConfig.{name}={getattr(self, name)} must be >= 0")
        if self.dict_contrast_temperature <= 0:
            raise ValueError(f"DHMDConfig.dict_contrast_temperature={self.dict_contrast_temperature} must be > 0")


class DHMD(DMD):
    """DMD plus a shared dictionary per decoupled space and fine-grained activation distillation."""

    name = "dhmd"

    def __init__(self, spec: DatasetSpec, config: DHMDConfig) -> None:
        super().__init__(spec, config)
        width = {"homo": self.d, "hetero": 2 * self.d}
        self.dictionaries = torch.nn.ModuleDict(
            {
                space: DictionarySpace(
                    width[space],
                    config.dict_size,
                    MODS,
                    config.dict_temperature,
                    config.dict_activation,
                    config.dict_pool,
                    config.dict_top_k,
                    shared_query=space in config.dict_shared_query,
                )
                for space in config.dict_spaces
            }
        )

    def _dictionary(self, space: str, tokens: dict[str, Tensor]) -> tuple[dict, dict, dict] | None:
        if space not in self.dictionaries:
            return None
        return self.dictionaries[space](tokens)

    def compute_losses(self, output: DMDOutput, labels: Tensor) -> dict[str, Tensor]:
        """DMD's objective plus ``weight_fine * L_fine`` for each space with a dictionary."""
        losses = super().compute_losses(output, labels)
        cfg = self.config
        loss = losses["loss"]
        for space, edges, unit in (
            ("homo", output.edges_homo, self.gd_homo),
            ("hetero", output.edges_hetero, self.gd_hetero),
        ):
            if space not in output.activations:
                continue
            acts = output.activations[space]
            aux = output.dictionary_aux.get(space, {})
            fine = fine_distillation(acts, edges, unit.prior, cfg.dict_distance, aux.get("scores"))
            usage = torch.stack([usage_deficit(a) for a in acts.values()]).mean()
            terms = {f"fine_{space}": (cfg.weight_fine, fine), f"usage_{space}": (cfg.dict_usage_weight, usage)}
            if "commit" in aux:  # training mode only (eval aux holds the pooled scores alone): commit, contrast
                d = torch.stack(list(aux["commit"].values())).mean(dim=(0, 1))  # (2,)
                terms[f"commit_{space}"] = (cfg.dict_commit_weight, COMMITMENT_BETA * d[0] + d[1])
                if space == "homo":
                    terms["contrast_homo"] = (cfg.dict_contrast_weight,
                                              cross_modal_contrast(aux["scores"], cfg.dict_contrast_temperature))
            for name, (weight, value) in terms.items():
                if weight and name not in cfg.disabled_losses:
                    loss = loss + weight * value
                losses[name] = value.detach()
        losses["loss"] = loss
        return losses


def fine_distillation(
    acts: dict[str, Tensor], edges: Tensor, prior: Tensor, distance: str, scores: dict[str, Tensor] | None = None
) -> Tensor:
    """``sum_x mean_b (E[b, x] + prior[x]) * Dist(a_student, stopgrad(a_teacher))`` over the 6 GD edges.

    Args:
        acts: per modality ``(B, K)`` activations, keys ``l``, ``v``, ``a``.
        edges: ``(B, 6)`` GD-Unit edges (not detached: the edges learn from the fine level too).
        prior: ``(6,)`` prior edge weights.
        distance: see :func:`~emodistill.models.dmd.dictionary.activation_distance`.
        scores: per modality ``(B, K)`` time-pooled scores, the student side of the ``soft`` distance.
    """
    stacked = torch.stack([acts[m] for m in MODS])  # (3, B, K), GD index order l, v, a
    pooled = torch.stack([scores[m] for m in MODS]) if distance == "soft" and scores else None  # (3, B, K)
    dist = torch.stack(
        [
            activation_distance(stacked[j], stacked[i].detach(), distance, None if pooled is None else pooled[j])
            for j, i in zip(EDGE_STUDENT, EDGE_TEACHER, strict=True)
        ]
    )  # (6, B)
    w = edges.t() + prior.unsqueeze(1)  # (6, B)
    return (w * dist).mean(1).sum()


@register_model(
    "dhmd",
    "Decoupled Hierarchical Distillation (Li et al., TPAMI 2026), reconstructed: DMD + dictionary",
    config=DHMDConfig,
)
def dhmd(spec: DatasetSpec, **cfg) -> DHMD:
    """Build DHMD for ``spec`` from :class:`DHMDConfig` keyword arguments."""
    return DHMD(spec, DHMDConfig(**cfg))
