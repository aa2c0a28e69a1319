"""Files that ``emodistill tune`` writes from a study: ``trials.csv``, ``best.yaml``, ``tune.md``,
``history.png`` and ``importance.png`` (all atomic; the figures need the ``report`` extra's matplotlib).

Everything is read back from the study's storage, so any worker of a shared study writes the same tables.
Parameter importance uses Optuna's default evaluator, PED-ANOVA (numpy only, no scikit-learn, offline); it
is computed on the COMPLETE trials and needs at least two of them and two searched parameters.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from emodistill.experiments.search_space import Param, apply_params
from emodistill.io import dump_yaml, log, write_text

TOP_TRIALS = 10


def trial_counts(study) -> dict[str, int]:
    """Number of trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _duration(t) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return round((t.datetime_complete - t.datetime_start).total_seconds(), 2)


def trials_csv(study, space: dict[str, Param]) -> str:
    """One row per trial: number, state, value, one column per searched key, best epoch, duration, worker,
    the trial it retries (a killed worker's trial) and whether it was refused as over budget."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", "value", *space, "best_epoch", "duration_s", "worker", "retry_of", "over_budget"])
    for t in study.get_trials(deepcopy=False):
        w.writerow([t.number, t.state.name, "" if t.value is None else repr(t.value),
                    *(t.params.get(k, "") for k in space), t.user_attrs.get("best_epoch", ""),
                    _duration(t) or "", t.user_attrs.get("worker", ""), t.system_attrs.get("failed_trial", ""),
                    t.user_attrs.get("over_budget", "")])
    return buf.getvalue()


def best_yaml(study, base: dict[str, Any]) -> str:
    """The best trial's full configuration (``emodistill train --config best.yaml`` retrains it with the same
    seed and validation loss), with the trial, its value and parameters in a comment header."""
    best = study.best_trial
    head = [f"# Best trial {best.number} of study {study.study_name!r}: valid loss {best.value!r}",
            "# searched parameters:"]
    head += [f"#   {k}: {v!r}" for k, v in best.params.items()]
    head.append("# retrain (same seed, same validation loss): emodistill train --config best.yaml")
    return "\n".join(head) + "\n" + dump_yaml(apply_params(base, best.params))


def tune_markdown(study, space: dict[str, Param], final: dict[str, Any] | None) -> str:
    """Search space, counts, best trial, top trials by validation loss, and the final stage's test table."""
    from optuna.trial import TrialState


    trials = study.get_trials(deepcopy=False)
    counts = trial_counts(study)
    lines = [f"# Study `{study.study_name}`", "",
             "Objective: best validation loss of a trial (test split untouched during the search).", "",
             "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), "",
             "| parameter | search space |", "|---|---|"]
    lines += [f"| {k} | {p.describe()} |" for k, p in space.items()]
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    if complete:
        best = complete[0]
        lines += ["", f"## Best trial: {best.number} (valid loss {best.value:.4f}, best epoch "
                      f"{best.user_attrs.get('best_epoch', '?')})", ""]
        lines += [f"- {k} = {_fmt(v)}" for k, v in best.params.items()]
        lines += ["", f"## Top {min(TOP_TRIALS, len(complete))} trials (validation loss)", "",
                  "| trial | valid loss | " + " | ".join(space) + " |",
                  "|---|---|" + "---|" * len(space)]
        for t in complete[:TOP_TRIALS]:
            lines.append(f"| {t.number} | {t.value:.4f} | " + " | ".join(_fmt(t.params.get(k, "")) for k in space)
                         + " |")
    lines += ["", "## Final stage", ""]
    if final is None:
        lines.append("Not run (no final seeds, or no worker has claimed it yet).")
    elif not final.get("done"):
        lines.append(f"Claimed by worker {final.get('worker')} at {final.get('started')}; not finished "
                     f"(its output: {final.get('run_dir')}).")
    else:
        lines += [f"Best trial {final.get('best_trial')} retrained over seeds {final.get('seeds')} by "
                  f"{final.get('worker')}; each seed's selected checkpoint evaluated once on the test split "
                  f"({final.get('run_dir')}).", "", "| test metric | mean ± std | 95% CI |", "|---|---|---|"]
        for k, s in final["test"].items():
            ci = "" if s.get("ci_low") is None or _nan(s["ci_low"]) else f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
            lines.append(f"| {k} | {s['mean']:.4f} ± {s['std']:.4f} | {ci} |")
    return "\n".join(lines) + "\n"


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def history_figure(study):
    """Validation loss per trial (COMPLETE dots; PRUNED crosses at their last reported value) and the best
    value so far."""
    from optuna.trial import TrialState

    from emodistill.plots import new_figure

    trials = study.get_trials(deepcopy=False)
    fig = new_figure(7, 4)
    ax = fig.subplots()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in done], [t.value for t in done], s=20, color="C0", label="complete", zorder=3)
    ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
               marker="x", color="0.5", label="pruned (last epoch reported)", zorder=2)
    best, xs, ys = math.inf, [], []
    for t in sorted(done, key=lambda t: t.number):
        best = min(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel="validation loss", title=f"Optimisation history: {study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def importance_figure(study, space: dict[str, Param]):
    """Horizontal bars of PED-ANOVA importances, or a figure that says why they cannot be computed."""
    from optuna.trial import TrialState

    from emodistill.plots import new_figure

    fig = new_figure(7, 0.6 + 0.45 * max(len(space), 2))
    ax = fig.subplots()
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    reason = None
    if len(space) < 2:
        reason = f"only {len(space)} searched parameter: importance needs at least 2"
    elif n_complete < 2:
        reason = f"{n_complete} complete trial(s): importance needs at least 2"
    else:
        import optuna

        try:
            imp = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as e:
            reason = f"importance could not be computed: {e}"
        else:
            if not imp or not all(math.isfinite(v) for v in imp.values()):
                reason = f"importance undefined with these {n_complete} complete trials"
    if reason is not None:
        ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return fig
    names = list(imp)[::-1]  # most important on top
    ax.barh(names, [imp[n] for n in names], color="C0")
    ax.set(xlabel="importance (PED-ANOVA, normalised)", title=f"Parameter importance ({n_complete} complete trials)")
    return fig


def write_outputs(study, base: dict[str, Any], space: dict[str, Param], run_dir: Path,
                  final: dict[str, Any] | None) -> None:
    """Write every summary file of the study into ``run_dir`` (figures skipped without matplotlib)."""
    import warnings

    write_text(run_dir / "trials.csv", trials_csv(study, space))
    has_best = any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    if has_best:
        write_text(run_dir / "best.yaml", best_yaml(study, base))
    write_text(run_dir / "tune.md", tune_markdown(study, space, final))
    try:
        from emodistill.plots import require_matplotlib, save_png

        require_matplotlib("the figures of `emodistill tune`")
        save_png(history_figure(study), run_dir / "history.png")
        with warnings.catch_warnings():  # PED-ANOVA warns on few trials; the figure says what it can
            warnings.simplefilter("ignore")
            save_png(importance_figure(study, space), run_dir / "importance.png")
    except ImportError as e:
        log(f"history.png / importance.png skipped: {e}")
