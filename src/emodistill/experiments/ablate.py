"""Ablation grid: the components of DMD and DHMD switched off one at a time, over several seeds.

``emodistill ablate`` runs every variant of :data:`ABLATIONS` (or a chosen subset) with the same data,
recipe and seeds, under ``ROOT/<variant>/seed-<s>/`` (each a normal run directory, so an interrupted
grid resumes where it stopped), and writes ``ROOT/ablation.md`` and ``ROOT/ablation.csv``: test metrics
per variant as mean ± sample std over seeds with 95% Student-t intervals. Model selection is on the
validation split only, as in every run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodistill.data.types import MMSAData
from emodistill.io import log, write_json, write_text
from emodistill.metrics.scores import PRIMARY_METRICS
from emodistill.metrics.stats import grid_csv, grid_markdown
from emodistill.models.registry import model_fields
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit_seeds

GD_HOMO = ("homo_logit", "homo_reg")
GD_HETERO = ("hetero_logit", "hetero_repr", "hetero_reg")


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table: a registered model and the config values it changes."""

    model: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


ABLATIONS: dict[str, Variant] = {
    "no-distill": Variant("dmd", "DMD without distillation (both GD-Units' losses off)",
                          {"disabled_losses": GD_HOMO + GD_HETERO}),
    "dmd": Variant("dmd", "DMD (coarse distillation only)"),
    "dhmd": Variant("dhmd", "DHMD, all components"),
    "dhmd-no-decouple": Variant("dhmd", "no decoupling (s = c = projected features)", {"decouple": False}),
    "dhmd-no-homogd": Variant("dhmd", "HomoGD distillation off", {"disabled_losses": GD_HOMO}),
    "dhmd-no-heterogd": Variant("dhmd", "HeteroGD distillation off", {"disabled_losses": GD_HETERO}),
    "dhmd-no-homo-dict": Variant("dhmd", "no dictionary in the homo space", {"dict_spaces": ("hetero",)}),
    "dhmd-no-hetero-dict": Variant("dhmd", "no dictionary in the hetero space", {"dict_spaces": ("homo",)}),
    "dhmd-no-fine": Variant("dhmd", "dictionaries without fine-grained matching", {"weight_fine": 0.0}),
    "dhmd-no-rec": Variant("dhmd", "reconstruction loss off", {"disabled_losses": ("rec",)}),
    "dhmd-no-cyc": Variant("dhmd", "cycle (self-regression) loss off", {"disabled_losses": ("cyc",)}),
    "dhmd-no-ort": Variant("dhmd", "orthogonality loss off", {"disabled_losses": ("ort",)}),
    "dhmd-no-mar": Variant("dhmd", "margin loss off", {"disabled_losses": ("mar",)}),
    "dhmd-no-head-c": Variant("dhmd", "shared self-attention head loss off", {"disabled_losses": ("task_c",)}),
    "dhmd-no-heads-homo": Variant("dhmd", "homo per-modality head losses off", {"disabled_losses": ("task_homo",)}),
    "dhmd-no-heads-hetero": Variant("dhmd", "hetero per-modality head losses off",
                                    {"disabled_losses": ("task_hetero",)}),
}  # fmt: skip
"""Every ablation variant, in table order."""


def check_variants(names: list[str] | None = None) -> list[str]:
    """``names`` (default: every variant, in table order), refusing an unknown one."""
    names = list(ABLATIONS) if not names else list(names)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; expected some of {list(ABLATIONS)} "
                         "(`emodistill ablate --list`)")
    return names


def variant_config(base: RunConfig, name: str) -> RunConfig:
    """``base`` with the variant's model and overrides; recipe keys the variant's model lacks are dropped.

    The recipe's model section (e.g. the official MOSI hyper-parameters) applies to every variant, so
    DMD and DHMD rows share all the values they have in common.
    """
    v = ABLATIONS[check_variants([name])[0]]
    cfg = copy.deepcopy(base)
    known = model_fields(v.model)
    model_cfg = {k: val for k, val in cfg.model_config.items() if k in known}
    disabled = tuple(model_cfg.get("disabled_losses", ())) + tuple(v.overrides.get("disabled_losses", ()))
    model_cfg.update(v.overrides)
    if disabled:
        model_cfg["disabled_losses"] = tuple(dict.fromkeys(disabled))  # recipe's and variant's, de-duplicated
    cfg.model, cfg.model_config = v.model, model_cfg
    return cfg


def run_ablation(
    base: RunConfig,
    data: MMSAData,
    root: str | Path,
    seeds: list[int],
    variants: list[str] | None = None,
    *,
    quiet: bool = False,
) -> dict[str, dict]:
    """Run the grid and write ``ablation.{md,csv,json}`` under ``root``; returns ``{variant: summary}``."""
    root = Path(root)
    names = check_variants(variants)
    summaries: dict[str, dict] = {}
    for name in names:
        log(f"=== ablation variant {name}: {ABLATIONS[name].description}")
        out = fit_seeds(variant_config(base, name), data, root / name, seeds, resume=True, quiet=quiet)
        summaries[name] = out["test"]
    family = data.spec.metric_family
    keys = PRIMARY_METRICS[family]
    write_text(root / "ablation.md", ablation_markdown(summaries, keys, seeds))
    write_text(root / "ablation.csv", ablation_csv(summaries, keys))
    write_json(root / "ablation.json", {"seeds": seeds, "variants": {n: vars(ABLATIONS[n]) for n in names},
                                        "test": summaries})
    return summaries


def ablation_markdown(summaries: dict[str, dict], keys: list[str], seeds: list[int]) -> str:
    """Markdown table: one row per variant, ``mean ± std [95% CI]`` per metric."""
    rows = {name: (ABLATIONS[name].description, summary) for name, summary in summaries.items()}
    return grid_markdown("Ablation", "variant", rows, keys, seeds)


def ablation_csv(summaries: dict[str, dict], keys: list[str]) -> str:
    """CSV with ``variant, model, n_seeds`` and ``<metric>_{mean,std,ci95_low,ci95_high}`` columns."""
    rows = {name: (ABLATIONS[name].model, summary) for name, summary in summaries.items()}
    return grid_csv("variant", rows, keys)
