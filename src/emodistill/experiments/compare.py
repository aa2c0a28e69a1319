"""Several registered models, trained over the same seeds on the same data, in one table.

``emodistill compare --models dmd,mult,self_mm --data synth --seeds 5`` trains every model under
``ROOT/<model>/seed-<s>/`` (normal run directories with per-sample test predictions; an interrupted
comparison resumes where it stopped) and writes:

    ROOT/compare.md, compare.csv   test metrics per model: mean ± sample std [95% t-interval]; compare.md
                                   also pairs every model with a reference model (default: the first) seed
                                   by seed: mean difference [95% paired t-interval] (seeds where it is better)
    ROOT/compare.json              the same, plus the reference, the paired differences, and every seed's
                                   test metrics and run directory
    ROOT/compare_seeds.png         each seed's value per model for the main metrics (needs matplotlib)
    ROOT/robustness.md, .json, robustness_areas.png   with ``perturb``: area under each robustness curve
                                   per model (mean over seeds; :mod:`emodistill.experiments.robustness`)

Re-running in the same directory with the same recipe, data and seeds continues it, also with another model
list: the runs of a model already there are reused if that model's ``--recipes`` entry is the same, so a
model can be added to a finished comparison, or two processes with disjoint model lists can fill one
directory, and a last run with every model writes the whole table (:func:`open_compare_dir`).

Every model is selected on the validation split only. Hyper-parameters: the recipe's ``train`` and
``data`` sections apply to all models; its ``model`` section applies only to the model it names, and
``recipes={"mult": "mult_mosi"}`` gives a model its own recipe's model *and* train sections (its
published or tuned schedule; the data, seeds and device stay the shared ones); otherwise a model uses
its registered defaults.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from emodistill.data.types import MMSAData
from emodistill.experiments.grid import open_plan_dir, plan_root
from emodistill.io import log, write_json, write_text
from emodistill.metrics.scores import HEADLINE_METRICS, LOWER_IS_BETTER, PRIMARY_METRICS
from emodistill.metrics.stats import grid_csv, grid_markdown, paired_differences, paired_markdown
from emodistill.models import list_models
from emodistill.training.config import RunConfig, check_model_config, with_recipe
from emodistill.training.fit import fit_seeds
from emodistill.training.parallel import fit_grid_in_parallel
from emodistill.training.run_dir import is_unstarted


def seeds_from_arg(values: list[int]) -> list[int]:
    """``[5]`` -> five seeds 1111..1115 (MMSA's convention); several values are the seeds themselves."""
    if len(values) == 1 and 1 <= values[0] <= 100:
        return [1111 + i for i in range(values[0])]
    return list(values)


def model_config(base: RunConfig, model: str, recipes: dict[str, str] | None = None) -> RunConfig:
    """``base`` for ``model``: its own recipe's model and train sections if given (:func:`with_recipe`; data,
    seeds and device stay ``base``'s), else the base recipe's model section if it names this model, else the
    model's defaults; checked and typed as every configuration (``check_model_config``).

    Raises:
        ValueError: an unregistered model, a recipe for another model, or a recipe key that is not a field
            of the model (or of the wrong type).
    """
    if recipes and model in recipes:
        return with_recipe(base, recipes[model], model)
    cfg = copy.deepcopy(base)
    values = cfg.model_config if cfg.model == model else {}
    cfg.model, cfg.model_config = model, check_model_config(model, values, "model")
    return cfg


def open_compare_dir(
    base: RunConfig, seeds: list[int], models: list[str], recipes: dict[str, str], run_dir: str | Path | None = None
) -> tuple[Path, bool]:
    """The comparison's directory (default ``runs/compare-<data>-<time>``) with its plan ``compare.yaml``.

    A directory that already holds a comparison continues when the shared configuration and the seeds are
    the same and every model it already has runs of keeps its recipe (``recipes.get(model)``, None: the
    base recipe; a model without a trained epoch there may change it); the plan then lists the models of
    every invocation, with their recipes, so that a later subset is checked against all of them.

    Returns:
        ``(directory, continuing)``.

    Raises:
        ValueError: another configuration or seeds, or another recipe for a model the directory has runs of.
        FileExistsError: the directory is not empty and holds no ``compare.yaml``.
    """
    root = plan_root("compare", base, run_dir)
    plan_file = root / "compare.yaml"
    saved = (yaml.safe_load(plan_file.read_text()) or {}) if plan_file.is_file() else {}
    saved_models = list(saved.get("models") or [])
    saved_recipes = {m: r for m, r in (saved.get("recipes") or {}).items() if m in saved_models}
    # a model with no trained epoch there (e.g. its first start failed) may still take another recipe
    trained = [m for m in saved_models if (root / m).is_dir() and not is_unstarted(root / m)]
    changed = [f"{m} ({saved_recipes.get(m) or 'the base recipe'} there, {recipes.get(m) or 'the base recipe'} now)"
               for m in models if m in trained and saved_recipes.get(m) != recipes.get(m)]
    if changed:
        raise ValueError(f"{plan_file}: this directory holds another compare (different recipe for "
                         f"{', '.join(changed)}); use a new --run-dir")
    all_models = saved_models + [m for m in models if m not in saved_models]
    merged = {**{m: r for m, r in saved_recipes.items() if m not in models},
              **{m: r for m, r in recipes.items() if m in models}}  # this invocation's models: its recipes
    plan = {"config": base.to_dict(), "seeds": list(seeds), "models": all_models,
            "recipes": {m: merged[m] for m in all_models if m in merged}}
    return root, open_plan_dir(root, "compare", plan, keys=("config", "seeds"))


def run_compare(
    base: RunConfig,
    data: MMSAData,
    root: str | Path,
    models: list[str],
    seeds: list[int],
    *,
    recipes: dict[str, str] | None = None,
    quiet: bool = False,
    perturb: bool = False,
    reference: str | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train every model over ``seeds`` and write the comparison files (see the module docstring); with
    ``perturb``, also the robustness curves of every run and their cross-model summary.

    Args:
        reference: the model the others are paired against, seed by seed (default: ``models[0]``).
        jobs: runs trained at once, in worker processes, seed by seed: every model's first seed before any
            second one (:func:`~emodistill.training.parallel.fit_grid_in_parallel`). Each worker loads the data
            from ``base.data``, not from ``data``: with ``jobs > 1``, ``data`` must be what it loads.

    Raises:
        ValueError: ``reference`` is not one of ``models``.
    """
    root = Path(root)
    reference = check_reference(models, reference)
    configs = {m: model_config(base, m, recipes) for m in models}  # fail on a bad name before training
    if jobs > 1:
        fit_grid_in_parallel(configs, root, seeds, jobs)
    summaries, per_seed = {}, {}
    for m in models:
        log(f"=== compare: {m}")
        out = fit_seeds(configs[m], data, root / m, seeds, resume=True, quiet=quiet)
        summaries[m] = out["test"]
        per_seed[m] = [
            {"seed": s, "run_dir": str(d), "test": json.loads((Path(d) / "results.json").read_text())["test"]}
            for s, d in zip(seeds, out["runs"], strict=True)
        ]
    family = data.spec.metric_family
    keys = PRIMARY_METRICS[family]
    descriptions = list_models()
    md = grid_markdown("Comparison", "model", {m: (descriptions[m], summaries[m]) for m in models}, keys, seeds)
    ref = [r["test"] for r in per_seed[reference]]
    paired = {m: paired_differences([r["test"] for r in per_seed[m]], ref, keys, LOWER_IS_BETTER)
              for m in models if m != reference}
    if paired:
        md += "\n" + paired_markdown("model", paired, keys, reference, seeds)
    write_text(root / "compare.md", md)
    write_text(root / "compare.csv", grid_csv("model", {m: (m, summaries[m]) for m in models}, keys))
    write_json(root / "compare.json", {"seeds": seeds, "models": models, "test": summaries, "reference": reference,
                                       "paired": paired, "runs": per_seed})
    try:
        plot_seed_spread(per_seed, list(HEADLINE_METRICS[family]), root / "compare_seeds.png")
    except ImportError as e:  # matplotlib is the optional `report` extra
        log(f"compare_seeds.png skipped: {e}")
    if perturb:
        compare_robustness(data, root, per_seed)
    return {"test": summaries, "runs": per_seed}


def check_reference(models: list[str], reference: str | None) -> str:
    """The model the others are paired against: ``reference``, or the first of ``models`` when None.

    Raises:
        ValueError: ``reference`` is not one of ``models``.
    """
    if reference is None:
        return models[0]
    if reference not in models:
        raise ValueError(f"--reference: {reference!r} is not one of --models {models}")
    return reference


def compare_robustness(data: MMSAData, root: Path, per_seed: dict[str, list[dict]], *, seed: int = 0) -> str:
    """Robustness curves of every run's selected checkpoint (test split, the same seeded perturbations for
    every model), then ``ROOT/robustness.{md,json}`` and ``robustness_areas.png``: the area under each
    curve, averaged over seeds, per model."""
    import numpy as np

    from emodistill.experiments.robustness import areas_markdown, default_robustness_dir, plot_areas, write_robustness
    from emodistill.models.registry import load_checkpoint

    metrics = HEADLINE_METRICS[data.spec.metric_family]
    mean_areas: dict[str, dict[str, dict[str, float]]] = {}
    for model_name, runs in per_seed.items():
        per_run = []
        for run in runs:
            ckpt = Path(run["run_dir"]) / "best.ckpt"
            out_dir = default_robustness_dir(ckpt, "test")
            if not (out_dir / "robustness.json").is_file():  # resumable like the training grid
                model, _ = load_checkpoint(ckpt)
                write_robustness(model, data.test, data.spec, out_dir, seed=seed, title=f"{model_name} seed "
                                 f"{run['seed']}")
            per_run.append(json.loads((out_dir / "robustness.json").read_text())["areas"])
        mean_areas[model_name] = {
            curve: {k: float(np.mean([a[curve][k] for a in per_run])) for k in per_run[0][curve]}
            for curve in per_run[0]
        }
    md = "".join(areas_markdown(mean_areas[m], metrics, f"{m} (mean over seeds)") + "\n" for m in mean_areas)
    write_text(root / "robustness.md", md)
    write_json(root / "robustness.json", {"perturbation_seed": seed, "areas": mean_areas})
    try:
        plot_areas(mean_areas, metrics[0], root / "robustness_areas.png")
    except ImportError as e:
        log(f"robustness_areas.png skipped: {e}")
    return md


def plot_seed_spread(per_seed: dict[str, list[dict]], metrics: list[str], path: Path) -> None:
    """One panel per metric: every seed's test value per model (dots) and the mean (bar)."""
    from emodistill.plots import new_figure, save_png

    models = list(per_seed)
    fig = new_figure(3.2 * len(metrics) + 1, 3.6)
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        for i, m in enumerate(models):
            values = [r["test"][metric] for r in per_seed[m] if metric in r["test"]]
            if not values:
                continue
            jitter = [i + 0.08 * (j - (len(values) - 1) / 2) for j in range(len(values))]
            ax.scatter(jitter, values, s=18, color="C0", zorder=3)
            ax.hlines(sum(values) / len(values), i - 0.3, i + 0.3, color="C3", lw=2, zorder=2)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Test metric per seed (dots) and mean (bar); selection on validation")
    save_png(fig, path)
