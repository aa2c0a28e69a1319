"""Ablation grid: the components of DMD and DHMD switched off one at a time, over several seeds.

``emodistill ablate`` runs every variant of :data:`ABLATIONS` (or a chosen subset) with the same data,
recipe and seeds, under ``ROOT/<variant>/seed-<s>/`` (each a normal run directory, so an interrupted
grid resumes where it stopped), and writes ``ROOT/ablation.md``, ``ablation.csv`` and ``ablation.json``:

* test metrics per variant as mean ± sample std over seeds with 95% Student-t intervals;
* paired differences against a reference variant (default ``dmd``): per seed ``variant - reference``,
  mean with its 95 % paired t-interval and the number of seeds where the variant is better;
* for variants with dictionaries, their usage on the test split (atom-usage perplexity, atoms used by at
  least 1 % of clips, cross-modal agreement) and, on ``synth-concepts``, the recovery of the planted
  concepts (NMI), mean ± std over seeds (:mod:`emodistill.metrics.dictionary`).

A variant with a ``recipe`` (the ``mult`` reference row) trains with that recipe's model and train
sections (its published schedule) on the same data and seeds (:func:`~emodistill.training.config.with_recipe`);
every other variant uses the grid's recipe. Model selection is on the validation split only, as in every run.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodistill.data.types import MMSAData
from emodistill.io import log, write_json, write_text
from emodistill.metrics.scores import LOWER_IS_BETTER, PRIMARY_METRICS
from emodistill.metrics.stats import grid_csv, grid_markdown, paired_differences, paired_markdown, summarize
from emodistill.models.registry import model_fields
from emodistill.training.config import RunConfig, with_recipe
from emodistill.training.fit import fit_seeds
from emodistill.training.parallel import fit_grid_in_parallel

GD_HOMO = ("homo_logit", "homo_reg")
GD_HETERO = ("hetero_logit", "hetero_repr", "hetero_reg")


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table: a registered model and the config values it changes."""

    model: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    """A recipe whose model and train sections this variant uses instead of the grid's."""


ABLATIONS: dict[str, Variant] = {
    "no-distill": Variant("dmd", "DMD without distillation (both GD-Units' losses off)",
                          {"disabled_losses": GD_HOMO + GD_HETERO}),
    "dmd": Variant("dmd", "DMD (coarse distillation only)"),
    "dhmd": Variant("dhmd", "DHMD, all components"),
    "dhmd-no-anticollapse": Variant("dhmd", "DHMD without the anti-collapse term (the model as first released)",
                                    {"dict_usage_weight": 0.0, "dict_commit_weight": 0.0}),
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
    "mult": Variant("mult", "MulT at MMSA's MOSI settings (reference row)", recipe="mult_mosi"),
}  # fmt: skip
"""Every ablation variant, in table order."""
DEFAULT_REFERENCE = "dmd"


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
    if v.recipe is not None:
        cfg = with_recipe(base, v.recipe, v.model)
        cfg.model_config.update(v.overrides)
        return cfg
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
    reference: str | None = DEFAULT_REFERENCE,
    jobs: int = 1,
) -> dict[str, dict]:
    """Run the grid and write ``ablation.{md,csv,json}`` under ``root``; returns ``{variant: summary}``.

    Args:
        reference: the variant the others are paired against (skipped when it is not in the grid).
        jobs: runs trained at once, in worker processes, seed by seed
            (:func:`~emodistill.training.parallel.fit_grid_in_parallel`); each worker loads the data from
            ``base.data``, so with ``jobs > 1``, ``data`` must be what it loads.
    """
    root = Path(root)
    names = check_variants(variants)
    configs = {name: variant_config(base, name) for name in names}  # every recipe checked before training
    if jobs > 1:
        fit_grid_in_parallel(configs, root, seeds, jobs)
    summaries: dict[str, dict] = {}
    results: dict[str, list[dict]] = {}
    for name in names:
        log(f"=== ablation variant {name}: {ABLATIONS[name].description}")
        out = fit_seeds(configs[name], data, root / name, seeds, resume=True, quiet=quiet)
        summaries[name] = out["test"]
        results[name] = [json.loads((Path(d) / "results.json").read_text()) for d in out["runs"]]
    keys = PRIMARY_METRICS[data.spec.metric_family]
    paired = {}
    if reference in results:
        ref = [r["test"] for r in results[reference]]
        paired = {n: paired_differences([r["test"] for r in results[n]], ref, keys, LOWER_IS_BETTER)
                  for n in names if n != reference}
    dictionary = dictionary_table(results)
    md = ablation_markdown(summaries, keys, seeds)
    if paired:
        md += "\n" + paired_markdown("variant", paired, keys, reference, seeds)
    if dictionary:
        md += "\n" + dictionary_markdown(dictionary)
    write_text(root / "ablation.md", md)
    write_text(root / "ablation.csv", ablation_csv(summaries, keys))
    write_json(root / "ablation.json", {
        "seeds": seeds, "variants": {n: vars(ABLATIONS[n]) for n in names}, "test": summaries,
        "reference": reference if paired else None, "paired": paired, "dictionary": dictionary,
        "runs": {n: [r["run_dir"] for r in results[n]] for n in names},
    })
    return summaries


def ablation_markdown(summaries: dict[str, dict], keys: list[str], seeds: list[int]) -> str:
    """Markdown table: one row per variant, ``mean ± std [95% CI]`` per metric."""
    rows = {name: (_described(name), summary) for name, summary in summaries.items()}
    return grid_markdown("Ablation", "variant", rows, keys, seeds)


def _described(name: str) -> str:
    v = ABLATIONS[name]
    return v.description + (f" [recipe {v.recipe}]" if v.recipe else "")


DICTIONARY_MEASURES = ("perplexity", "atoms_used", "nmi")


def dictionary_table(results: dict[str, list[dict]]) -> dict[str, dict]:
    """``{variant: {"<space>/<m>/<measure>" | "<space>/agreement": summary over seeds}}`` of the test-split
    dictionary measures in each run's ``results.json`` (variants without dictionaries are left out)."""
    out = {}
    for name, runs in results.items():
        flat = []
        for r in runs:
            row = {}
            for space, entry in (r.get("dictionary") or {}).items():
                row[f"{space}/agreement"] = entry["agreement"]
                for m, measures in entry.items():
                    if isinstance(measures, dict):
                        row.update({f"{space}/{m}/{k}": measures[k] for k in DICTIONARY_MEASURES if k in measures})
            flat.append(row)
        if flat and all(flat):
            out[name] = summarize(flat)
    return out


def dictionary_markdown(table: dict[str, dict]) -> str:
    """One row per variant and space: per modality ``perplexity / atoms used [/ NMI]``, and agreement."""
    lines = ["Dictionaries on the test split (mean ± std over seeds): per modality atom-usage perplexity, atoms "
             "used by >= 1 % of clips and, with planted concepts, concept NMI; cross-modal agreement = clips whose "
             "top atom is the same in every modality.", "",
             "| variant | space | language | vision | audio | agreement |", "|---|---|---|---|---|---|"]
    for name, summary in table.items():
        for space in sorted({k.split("/")[0] for k in summary}, key=lambda s: (s != "homo", s)):
            cells = []
            for m in ("l", "v", "a"):
                parts = [f"{k} {summary[key]['mean']:.2f} ± {summary[key]['std']:.2f}".replace("nan", "-")
                         for k in DICTIONARY_MEASURES if (key := f"{space}/{m}/{k}") in summary]
                cells.append("; ".join(parts) or "n/a")
            agree = summary.get(f"{space}/agreement")
            agree_cell = f"{agree['mean']:.2f} ± {agree['std']:.2f}" if agree else "n/a"
            lines.append(f"| {name} | {space} | " + " | ".join(cells) + f" | {agree_cell} |")
    return "\n".join(lines) + "\n"


def ablation_csv(summaries: dict[str, dict], keys: list[str]) -> str:
    """CSV with ``variant, model, n_seeds`` and ``<metric>_{mean,std,ci95_low,ci95_high}`` columns."""
    rows = {name: (ABLATIONS[name].model, summary) for name, summary in summaries.items()}
    return grid_csv("variant", rows, keys)
